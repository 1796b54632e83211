"""eMMC CID byte order: the real MT6589 capture decodes to the CID its DA prints on UART.

Source of the bytes: arzam16/empty-sixty-five, brom-dump/README.md (UART log line
`1501004D, 38473157, 41022557, 1844608F,`) and images/brom-dump-002.png frame 877 (the USB
bytes `4d00011557314738572502418f604418`). Both were typed in from those pages, not produced
by romkit.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from romkit.device.cid import crc7, crc_ok, decode_cid, reorder
from romkit.device.legacy_da import describe_memory_part

CAPTURE_WIRE = bytes.fromhex("4d000115" "57314738" "57250241" "8f604418")
CAPTURE_CID = bytes.fromhex("1501004D" "38473157" "41022557" "1844608F")  # the DA's UART log


def test_the_capture_decodes_to_the_uart_log_cid_named_samsung() -> None:
    got = decode_cid(CAPTURE_WIRE)
    assert got.cid == CAPTURE_CID
    assert got.cid.hex().upper() == "1501004D38473157410225571844608F"
    assert got.order == "le32" and got.crc_ok and got.raw == CAPTURE_WIRE
    name = describe_memory_part(got.cid)
    assert name.startswith("Samsung (0x15)") and "M8G1WA" in name


def test_crc7_of_the_capture_matches_its_last_byte() -> None:
    # JEDEC: CID[0] = CRC7(CID[127:8]) << 1 | 1; 0x8F >> 1 = 0x47 for this part.
    assert crc7(CAPTURE_CID[:15]) == 0x47
    assert crc_ok(CAPTURE_CID) and not crc_ok(CAPTURE_WIRE)


def test_a_da_that_sends_natural_order_is_decoded_too() -> None:
    got = decode_cid(CAPTURE_CID)
    assert got.cid == CAPTURE_CID and got.order == "natural" and got.crc_ok


def test_mtkclient_u64_reading_is_one_of_the_orders() -> None:
    # mtkclient repacks the flash-info CID as two little-endian u64 (Legacy_EmmcInfo).
    wire = CAPTURE_CID[:8][::-1] + CAPTURE_CID[8:][::-1]
    got = decode_cid(wire)
    assert got.cid == CAPTURE_CID and got.order == "le64"


def test_without_a_valid_crc_the_order_that_looks_like_a_cid_wins() -> None:
    # romkit's first virtual phone: natural order, CRC byte 0x01.
    sim = bytes([0x15, 0x01, 0x00]) + b"SIM13S" + bytes([0x10, 0x13, 0x57, 0x9B, 0xDF, 0xA3, 1])
    assert decode_cid(sim).cid == sim
    assert decode_cid(reorder(sim, "le32")).cid == sim


def test_nothing_recognisable_falls_back_to_the_capture_order() -> None:
    raw = bytes(range(0xF0, 0x100))
    got = decode_cid(raw)
    assert got.order == "le32" and got.cid == bytes.fromhex(
        "f3f2f1f0f7f6f5f4fbfaf9f8fffefdfc")


@given(st.binary(min_size=0, max_size=40))
def test_any_bytes_decode_without_error(raw: bytes) -> None:
    got = decode_cid(raw)
    assert len(got.cid) == len(raw)


@pytest.mark.parametrize("order", ["natural", "le32", "le64"])
def test_a_valid_cid_survives_every_wire_order(order: str) -> None:
    body = bytes([0x90, 0x01, 0x4A]) + b"H4G1d\x00" + bytes([0x21, 1, 2, 3, 4, 0x9A])
    cid = body + bytes([(crc7(body) << 1) | 1])
    assert decode_cid(reorder(cid, order)).cid == cid  # type: ignore[arg-type]
