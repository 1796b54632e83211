"""Legacy DA session against a hand-scripted phone on a real pty (docs/PROTOCOL.md bytes)."""

from __future__ import annotations

import io
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_transport import Peer, PtyPhone, be16, be32, be64

from romkit.device.layout import parse_pmt
from romkit.device.legacy_da import DaSession, describe_memory_part
from romkit.device.transport import SerialTransport
from romkit.errors import (
    DeviceTimeout,
    DiskError,
    DramInitError,
    ProtocolError,
    RomkitError,
    StorageError,
    UsageError,
)

# A made-up Hynix-style part: MID 0x90, BGA, OID 0x4A, product name "H9TQ17".
CID = bytes([0x90, 0x01, 0x4A]) + b"H9TQ17" + bytes([0x21, 0x12, 0x34, 0x56, 0x78, 0x9A, 0x01])
NAND_ID = 0xECD3
USER_SIZE = 0xE9000000
EMI_BLOB = bytes(range(256)) + bytes(range(2 * 0xB8 - 256))  # 2 entries' worth
EMI_ASKED = 2 * 0xB8 + 0x10  # the DA asks for more than the blob: host zero-pads
STAGE2 = os.urandom(3 * 0x1000 + 123)

# Stage-2 config for bromver 5 / blver 0xFE, hand-written from the field table.
CONFIG_BYTES = bytes.fromhex("05 fe 0008 00 7007ffff 01 00000000 01 00 02 00 00000000")


def run(script: Callable[[Peer], None], body: Callable[[DaSession], Any],
        timeout: float = 2.0) -> Any:
    with PtyPhone(script, autostart=False) as phone:
        t = SerialTransport(phone.path, timeout=timeout)
        phone.start()
        try:
            return body(DaSession(t, timeout=timeout))
        finally:
            t.close()


# -- phone-side pieces (also used by test_legacy_da_connect) ------------------------------------
def phone_sync_and_report(p: Peer, cid: bytes = CID) -> None:
    p.write(b"\xc0")
    p.write(be32(0) + be16(1) + be16(NAND_ID) + be32(0) + cid)
    p.expect(b"\x5a")
    p.write(bytes([3, 1, 2]))


def phone_config(p: Peer, config: bytes = CONFIG_BYTES) -> None:
    p.expect(config)
    p.write(be32(0x0BC3))


def phone_dram_until_enable(p: Peer, cid: bytes = CID) -> None:
    p.write(be32(16) + cid)
    p.write(be32(0x0BC4) + be16(1) + be16(NAND_ID))
    p.expect(b"\xe8" + be32(10))


def phone_dram(p: Peer, ret: int = 0, cid: bytes = CID) -> None:
    phone_dram_until_enable(p, cid)
    p.write(b"\x5a")
    p.write(b"RAM-Info" + bytes(8))
    p.write(be32(EMI_ASKED))
    p.expect(b"\x5a")
    emi = p.read(EMI_ASKED)
    assert emi == EMI_BLOB + bytes(EMI_ASKED - len(EMI_BLOB))
    p.write(be16(sum(emi) & 0xFFFF))
    p.expect(b"\x5a")
    p.expect(be32(0x80000001))
    p.write(be32(ret) + b"\x02\x00" + be64(1 << 30))


def phone_stage2(p: Peer, data: bytes = STAGE2, addr: int = 0x82038000) -> None:
    p.expect(be32(addr) + be32(len(data)) + be32(0x1000))
    p.write(b"\x5a")
    got = bytearray()
    while len(got) < len(data):
        got += p.read(min(0x1000, len(data) - len(got)))
        p.write(b"\x5a")
    p.expect(b"\x5a")
    p.write(b"\x5a")
    assert bytes(got) == data


def phone_flash_info(p: Peer, emmc_ret: int = 0, cid: bytes = CID) -> None:
    p.write(bytes(0x1C))  # NOR
    p.write(bytes(0x11 + 2 + 9))  # NAND with one id
    p.write(be32(emmc_ret) + be64(4 << 20) + be64(4 << 20) + be64(512 << 10)
            + be64(0) + be64(0) + be64(0) + be64(1 << 20) + be64(USER_SIZE) + cid + b"FW000001")
    p.write(bytes(0x1C))  # SD
    p.write(bytes(0x26))  # RAM
    p.write(b"\x5a" + be32(0) + be32(1) + b"\xc1")


def phone_speed(p: Peer, speed: int = 0) -> None:
    p.expect(b"\x72")
    p.write(b"\x5a" + bytes([speed]))
    if speed == 0:
        p.expect(b"\x70\x01")
        p.write(b"\x5a")


def host_bring_up(s: DaSession) -> dict[str, Any]:
    s.sync()
    report = s.read_storage_report()
    needed = s.send_config(5, 0xFE)
    dram = s.init_dram(EMI_BLOB, 10)
    s.upload_stage2(0x82038000, STAGE2)
    flash = s.read_flash_info()
    speed = s.check_speed()
    return {"report": report, "needed": needed, "dram": dram, "flash": flash, "speed": speed}


# -- bring-up ---------------------------------------------------------------------------------
def test_bring_up_sequence() -> None:
    def script(p: Peer) -> None:
        phone_sync_and_report(p)
        phone_config(p)
        phone_dram(p)
        phone_stage2(p)
        phone_flash_info(p)
        phone_speed(p, 0)

    got = run(script, host_bring_up)
    report, dram, flash = got["report"], got["dram"], got["flash"]
    assert report.cid == CID and report.nand_ids == (NAND_ID,) and report.da_version == (3, 1, 2)
    assert got["needed"] is True
    assert dram.flash_id == CID and dram.emi_length == EMI_ASKED
    assert (dram.ram_type, dram.ram_size) == (2, 1 << 30)
    assert flash.user == USER_SIZE and flash.boot1 == 4 << 20 and flash.rpmb == 512 << 10
    assert flash.gp == (0, 0, 0, 1 << 20) and flash.cid == CID and flash.fw_version == b"FW000001"
    assert flash.size_of(8) == USER_SIZE and flash.size_of(7) == 1 << 20
    assert got["speed"] == 1


def test_dram_rejection_names_the_memory_part() -> None:
    def script(p: Peer) -> None:
        phone_dram(p, ret=0x0000_0BBD)

    def body(s: DaSession) -> None:
        with pytest.raises(DramInitError) as ei:
            s.init_dram(EMI_BLOB, 10)
        err = ei.value
        assert err.spft_code == 4032
        assert "Hynix" in err.message and "H9TQ17" in err.message and "0x90" in err.message
        assert err.details["m_ext_ram_ret"] == 0xBBD
        assert "preloader" in err.hint

    run(script, body)


def test_dram_nack_after_enable_is_4032() -> None:
    def script(p: Peer) -> None:
        phone_dram_until_enable(p)
        p.write(b"\xa5")

    def body(s: DaSession) -> None:
        with pytest.raises(DramInitError) as ei:
            s.init_dram(EMI_BLOB, 10)
        assert ei.value.spft_code == 4032

    run(script, body)


def test_emi_checksum_mismatch_is_caught() -> None:
    def script(p: Peer) -> None:
        phone_dram_until_enable(p)
        p.write(b"\x5a" + b"RAM-Info" + bytes(8) + be32(0xB8))
        p.expect(b"\x5a")
        emi = p.read(0xB8)
        p.write(be16((sum(emi) + 7) & 0xFFFF))

    def body(s: DaSession) -> None:
        with pytest.raises(DramInitError) as ei:
            s.init_dram(EMI_BLOB, 10)
        assert "checksum" in ei.value.message

    run(script, body)


def test_sync_errors() -> None:
    def script(p: Peer) -> None:
        p.write(b"\x00")

    def body(s: DaSession) -> None:
        with pytest.raises(ProtocolError) as ei:
            s.sync()
        assert ei.value.spft_code == 4002
        with pytest.raises(DeviceTimeout) as ei2:
            s.sync(timeout=0.1)
        assert ei2.value.spft_code == 4001

    run(script, body)


def test_config_answer_other_than_bc3_or_0() -> None:
    def script(p: Peer) -> None:
        p.expect(CONFIG_BYTES)
        p.write(be32(0x12345678))

    def body(s: DaSession) -> None:
        with pytest.raises(ProtocolError):
            s.send_config(5, 0xFE)

    run(script, body)


def test_flash_info_without_emmc_is_a_storage_error() -> None:
    def script(p: Peer) -> None:
        phone_sync_and_report(p)
        phone_flash_info(p, emmc_ret=0xC0050005)

    def body(s: DaSession) -> None:
        s.sync()
        s.read_storage_report()
        with pytest.raises(StorageError) as ei:
            s.read_flash_info()
        assert ei.value.spft_code == 3149

    run(script, body)


# -- write ------------------------------------------------------------------------------------
WRITE_DATA = os.urandom(2 * 1024 + 300)
WRITE_PADDED = 2 * 1024 + 512  # the header announces whole sectors (mtkclient's reading)


def phone_settle(p: Peer, trailing_acks: int, delay: float = 0.0, speed: int = 1,
                 knows_0x72: bool = True) -> None:
    """The end of a WRITE/FORMAT: the DA's optional trailing ACKs (sent `delay` s late), then
    the host's USB_CHECK_STATUS (0x72) and its answer (BB from a DA that lacks it)."""
    if delay:
        time.sleep(delay)
    p.write(b"\x5a" * trailing_acks)
    p.expect(b"\x72")
    p.write(b"\x5a" + bytes([speed]) if knows_0x72 else b"\xbb")


@pytest.mark.parametrize(("final_ack", "delay", "knows_0x72"),
                         [(0, 0.0, True), (1, 0.0, True), (1, 0.3, True), (0, 0.0, False),
                          (1, 0.0, False)],
                         ids=["no-final-ack", "final-ack", "late-final-ack", "no-ack-no-0x72",
                              "final-ack-no-0x72"])
def test_write_resends_a_nacked_packet(final_ack: int, delay: float, knows_0x72: bool) -> None:
    seen: dict[str, Any] = {"nacked": None, "resent": None}

    def script(p: Peer) -> None:
        p.expect(b"\x62\x01\x08" + be64(0x800000) + be64(WRITE_PADDED) + be32(1024))
        p.write(b"\x5a")
        out = bytearray()
        for idx, n in enumerate((1024, 1024, 512)):
            first = True
            while True:
                pkt = p.read(1 + n + 2)
                body, cs = pkt[1 : 1 + n], int.from_bytes(pkt[-2:], "big")
                assert pkt[0] == 0x5A
                assert cs == sum(body) & 0xFFFF
                if idx == 1 and first:
                    first = False
                    seen["nacked"] = pkt
                    p.write(b"\xa5")
                    continue
                if idx == 1:
                    seen["resent"] = pkt
                p.write(b"\x69")
                out += body
                break
        phone_settle(p, final_ack, delay, knows_0x72=knows_0x72)
        assert bytes(out) == WRITE_DATA + bytes(WRITE_PADDED - len(WRITE_DATA))

    progress: list[tuple[int, int]] = []

    def body(s: DaSession) -> int:
        return s.write(8, 0x800000, io.BytesIO(WRITE_DATA), len(WRITE_DATA), packet_size=1024,
                       on_packet=lambda d, t: progress.append((d, t)))

    assert run(script, body) == sum(WRITE_DATA) & 0xFFFF
    assert seen["nacked"] is not None and seen["nacked"] == seen["resent"]
    total = len(WRITE_DATA)
    assert progress == [(1024, total), (2048, total), (total, total)]


def test_write_gives_up_after_max_retries() -> None:
    tries: list[int] = []

    def script(p: Peer) -> None:
        p.expect(b"\x62\x01\x08" + be64(0x800000) + be64(WRITE_PADDED) + be32(1024))
        p.write(b"\x5a")
        p.read(1 + 1024 + 2)
        p.write(b"\x69")
        for _ in range(3):  # max_retries=2 → 3 attempts
            p.read(1 + 1024 + 2)
            tries.append(1)
            p.write(b"\xa5")
        assert p.silent(0.2)

    def body(s: DaSession) -> None:
        with pytest.raises(StorageError) as ei:
            s.write(8, 0x800000, io.BytesIO(WRITE_DATA), len(WRITE_DATA), packet_size=1024,
                    max_retries=2)
        assert ei.value.spft_code == 3149
        assert "0x800400" in ei.value.message and "USER" in ei.value.message
        assert ei.value.details["offset"] == 0x800400

    run(script, body)
    assert len(tries) == 3


def test_write_refused_range() -> None:
    def script(p: Peer) -> None:
        p.read(1 + 1 + 1 + 8 + 8 + 4)
        p.write(b"\xa5")

    def body(s: DaSession) -> None:
        with pytest.raises(StorageError) as ei:
            s.write(1, 0, io.BytesIO(b"x" * 512), 512)
        assert "BOOT1" in ei.value.message

    run(script, body)


def test_write_padding_never_crosses_the_partition_end() -> None:
    def body(s: DaSession) -> None:
        # 0x201 bytes at 0xE00 need 0x400 bytes of whole sectors: past a 0x1000 limit.
        with pytest.raises(StorageError) as ei:
            s.write(8, 0xE00, io.BytesIO(b"x" * 0x201), 0x201, limit=0x1000)
        assert ei.value.details["limit"] == 0x1000 and "cross" in ei.value.message

    def script(p: Peer) -> None:
        assert p.silent(0.3)  # refused before a single byte went out

    run(script, body)


def test_write_with_a_mis_stepped_end_is_caught() -> None:
    """A DA that sends something other than ACKs and a speed byte after the last CONT."""
    def script(p: Peer) -> None:
        p.read(1 + 1 + 1 + 8 + 8 + 4)
        p.write(b"\x5a")
        p.read(1 + 512 + 2)
        p.write(b"\x69")
        p.expect(b"\x72")
        p.write(b"\x69\x69")

    def body(s: DaSession) -> None:
        with pytest.raises(ProtocolError):
            s.write(8, 0, io.BytesIO(b"y" * 512), 512)

    run(script, body)


def test_write_short_source_is_a_disk_error() -> None:
    def script(p: Peer) -> None:
        p.read(1 + 1 + 1 + 8 + 8 + 4)
        p.write(b"\x5a")

    def body(s: DaSession) -> None:
        with pytest.raises(DiskError):
            s.write(8, 0, io.BytesIO(b"x" * 100), 512)

    run(script, body)


def test_bad_packet_size_is_refused_locally() -> None:
    def body(s: DaSession) -> None:
        for size in (0, 1000, 32 << 20):
            with pytest.raises(UsageError):
                s.write(8, 0, io.BytesIO(b""), 10, packet_size=size)

    run(lambda p: None, body)


# -- read -------------------------------------------------------------------------------------
READ_DATA = os.urandom(3 * 1024 + 17)


def _phone_read_header(p: Peer, part: int, addr: int, length: int, packet: int) -> None:
    p.expect(b"\x60")
    p.write(b"\x5a")
    p.expect(bytes([part]))
    p.write(b"\x5a")
    p.expect(b"\xd6\x0c\x02" + be64(addr) + be64(length) + be32(packet))


def test_read_asks_again_for_a_bad_packet() -> None:
    def script(p: Peer) -> None:
        _phone_read_header(p, 8, 0x800000, len(READ_DATA), 1024)
        p.write(b"\x5a")
        for idx, pos in enumerate(range(0, len(READ_DATA), 1024)):
            chunk = READ_DATA[pos : pos + 1024]
            if idx == 1:
                p.write(chunk + be16((sum(chunk) + 1) & 0xFFFF))
                p.expect(b"\xa5")
            p.write(chunk + be16(sum(chunk) & 0xFFFF))
            p.expect(b"\x5a")

    sink = io.BytesIO()
    total = run(script, lambda s: s.read(8, 0x800000, len(READ_DATA), sink, packet_size=1024))
    assert sink.getvalue() == READ_DATA
    assert total == sum(READ_DATA) & 0xFFFF


def test_read_gives_up_after_max_retries() -> None:
    def script(p: Peer) -> None:
        _phone_read_header(p, 2, 0, 512, 512)
        p.write(b"\x5a")
        p.write(bytes(512) + be16(1))  # wrong: the sum of 512 zero bytes is 0
        p.expect(b"\xa5")
        p.write(bytes(512) + be16(1))
        assert p.silent(0.2), "host answered a packet it should have given up on"

    def body(s: DaSession) -> None:
        with pytest.raises(StorageError) as ei:
            s.read(2, 0, 512, io.BytesIO(), packet_size=512, max_retries=1)
        assert ei.value.spft_code == 4009 and "BOOT2" in ei.value.message

    run(script, body)


def test_read_refused_reports_the_da_error() -> None:
    def script(p: Peer) -> None:
        _phone_read_header(p, 8, 0xFFFF0000, 0x20000, 0x100000)
        p.write(b"\xa5")
        p.expect(b"\xa5")
        p.write(struct.pack("<I", 0xC0040003))

    def body(s: DaSession) -> None:
        with pytest.raises(StorageError) as ei:
            s.read(8, 0xFFFF0000, 0x20000, io.BytesIO())
        assert ei.value.details["da_error"] == 0xC0040003
        assert "C0040003" in ei.value.message

    run(script, body)


def test_switch_part_refused() -> None:
    def script(p: Peer) -> None:
        p.expect(b"\x60")
        p.write(b"\x5a")
        p.expect(b"\x03")
        p.write(b"\xa5")

    def body(s: DaSession) -> None:
        with pytest.raises(StorageError) as ei:
            s.switch_part(3)
        assert "RPMB" in ei.value.message

    run(script, body)


# -- format, PMT, finish, speed ----------------------------------------------------------------
@pytest.mark.parametrize(("first_acks", "record_acks", "end_acks"),
                         [(2, 1, 1), (2, 2, 2), (2, 2, 1), (2, 1, 2), (1, 1, 1)],
                         ids=["old-romkit", "mtkclient-reference", "mixed-2-1", "mixed-1-2",
                              "one-everywhere"])
def test_format_follows_percent_reports(first_acks: int, record_acks: int,
                                        end_acks: int) -> None:
    """One or two ACKs per progress record and at the end: romkit's first reading (a header
    ACK, then one per record), mtkclient's formatflash and the shared reference (two per
    record, two at the end), and a DA with a single ACK everywhere."""
    def script(p: Peer) -> None:
        p.expect(b"\x60")
        p.write(b"\x5a")
        p.expect(b"\x08")
        p.write(b"\x5a")
        p.expect(b"\xd4\x02\x00\x00\x00" + be64(0x3380000) + be64(0x600000))
        for i, pct in enumerate((0, 50, 100)):
            acks = first_acks if i == 0 else record_acks
            p.write(b"\x5a" * acks + be32(0) + bytes([pct]))
            p.expect(b"\x5a")
        phone_settle(p, end_acks)

    seen: list[int] = []
    run(script, lambda s: s.format(8, 0x3380000, 0x600000, on_percent=seen.append))
    assert seen == [0, 50, 100]


def test_format_error_status() -> None:
    def script(p: Peer) -> None:
        p.expect(b"\x60")
        p.write(b"\x5a")
        p.expect(b"\x08")
        p.write(b"\x5a")
        p.read(1 + 4 + 16)
        p.write(b"\x5a" + b"\x5a" + be32(0xC52) + b"\x10")

    def body(s: DaSession) -> None:
        with pytest.raises(StorageError):
            s.format(8, 0, 0x1000)

    run(script, body)


def test_read_pmt_and_finish() -> None:
    entries = (struct.pack("<64sQQQ", b"PRELOADER", 0x600000, 0, 0)
               + struct.pack("<64sQQQ", b"NVRAM", 0x500000, 0xE00000, 0))

    def script(p: Peer) -> None:
        p.expect(b"\xa5")
        p.write(b"\x5a" + be32(len(entries)))
        p.expect(b"\x5a")
        p.write(entries)
        p.expect(b"\x5a")
        p.expect(b"\xd9")
        p.write(b"\x5a")
        p.expect(be32(0))
        p.write(b"\x5a")

    def body(s: DaSession) -> bytes:
        raw = s.read_pmt()
        s.finish()
        return raw

    raw = run(script, body)
    assert raw == entries
    assert [(e.name, e.offset) for e in parse_pmt(raw)] == [("PRELOADER", 0), ("NVRAM", 0xE00000)]


def test_unknown_command_answer() -> None:
    def script(p: Peer) -> None:
        p.expect(b"\xa5")
        p.write(b"\xbb")
        p.expect(b"\x72")
        p.write(b"\xbb")

    def body(s: DaSession) -> None:
        with pytest.raises(ProtocolError) as ei:
            s.read_pmt()
        assert "does not know" in ei.value.message
        # A DA without USB_CHECK_STATUS cannot switch speed either: nothing to do.
        assert s.check_speed() == 1

    run(script, body)


def test_describe_memory_part() -> None:
    assert describe_memory_part(bytes([0x15, 1, 0]) + b"KJS00M" + bytes(7)) == \
        "Samsung (0x15) 'KJS00M'"
    assert "unknown maker" in describe_memory_part(bytes([0x42, 1, 0, 0xFF, 0, 0, 0, 0, 0]))
    assert describe_memory_part(b"") == "unknown memory part"


# -- hostile phone ----------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120),
       st.sampled_from(["bringup", "write", "read", "format", "pmt", "finish", "speed"]))
def test_garbage_from_the_da_raises_only_romkit_errors(reply: bytes, op: str) -> None:
    stop = threading.Event()

    def script(p: Peer) -> None:
        p.read(1)
        p.write(reply)
        p.drain(stop)

    def body(s: DaSession) -> None:
        s.t.write(b"\x00")  # wake the scripted peer: it answers only after the port is open
        ops: dict[str, Callable[[], object]] = {
            "bringup": lambda: host_bring_up(s),
            "write": lambda: s.write(8, 0, io.BytesIO(bytes(3000)), 3000, packet_size=1024),
            "read": lambda: s.read(8, 0, 3000, io.BytesIO(), packet_size=1024),
            "format": lambda: s.format(8, 0, 4096),
            "pmt": s.read_pmt,
            "finish": s.finish,
            "speed": s.check_speed,
        }
        try:
            ops[op]()
        except RomkitError:
            pass
        finally:
            stop.set()

    run(script, body, timeout=0.05)
