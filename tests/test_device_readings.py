"""The engine against each plausible reading of the contested legacy-DA points.

Every phone side here is written by hand from an outside source (named per test), over a real
pty; for each contested point there is one test per reading and the engine must succeed with
all of them, and stay in step afterwards (the next command's answer is read correctly).
"""

from __future__ import annotations

import io
import os
import struct
from typing import Any

import pytest
from test_legacy_da import (
    EMI_BLOB,
    phone_dram,
    phone_speed,
    run,
)
from test_transport import Peer, be16, be32, be64

from romkit.device.legacy_da import DaSession
from romkit.errors import DeviceTimeout, DramInitError

# arzam16/empty-sixty-five images/brom-dump-002.png and -008.png (frames 867–887): what a real
# MT6589 DA (SP Flash Tool v5.1648's) sends after JUMP_DA, and the host's answers.
CAPTURE_SYNC = bytes.fromhex("c0")
CAPTURE_REPORT = bytes.fromhex(
    "00000bc4" "0005" "00000000000000000000" "00000000" "4d00011557314738572502418f604418")
CAPTURE_VERSION = bytes.fromhex("030286")
CAPTURE_CID = bytes.fromhex("1501004D38473157410225571844608F")  # the DA's UART log
USER = 0x3A3E00000  # a 15 GiB-class user area


def test_capture_storage_report_and_version() -> None:
    def script(p: Peer) -> None:
        p.write(CAPTURE_SYNC + CAPTURE_REPORT)
        p.expect(b"\x5a")  # frame 879
        p.write(CAPTURE_VERSION)
        p.expect(b"\x05", timeout=5)  # frame 887: the host's next byte, bromver of the config

    def body(s: DaSession) -> Any:
        s.sync()
        report = s.read_storage_report()
        s.t.write(b"\x05")
        return report

    report = run(script, body)
    assert report.nand_status == 0x0BC4 and report.nand_ids == (0, 0, 0, 0, 0)
    assert report.emmc_status == 0
    assert report.cid == CAPTURE_CID and report.cid_order == "le32"
    assert report.cid_raw == bytes.fromhex("4d00011557314738572502418f604418")
    assert report.da_version == (0x03, 0x02, 0x86)


def test_dram_flash_id_in_capture_order_names_samsung() -> None:
    wire_cid = bytes.fromhex("4d00011557314738572502418f604418")

    def script(p: Peer) -> None:
        phone_dram(p, ret=0x0BBD, cid=wire_cid)

    def body(s: DaSession) -> None:
        with pytest.raises(DramInitError) as ei:
            s.init_dram(EMI_BLOB, 10)
        assert "Samsung (0x15)" in ei.value.message and "M8G1WA" in ei.value.message
        assert ei.value.details["flash_id"] == CAPTURE_CID.hex()

    run(script, body)


# -- flash info: the NAND block's length and the RAM block ----------------------------------
def emmc_block(cid_wire: bytes) -> bytes:
    return (be32(0) + be64(4 << 20) + be64(4 << 20) + be64(4 << 20) + be64(0) * 4
            + be64(USER) + cid_wire + b"FWV00001")


# mtkclient Legacy_ConfigInfo: int_sram_ret, int_sram_size, ext_ram_ret, type, cs, size, id.
RAM_BLOCK = (be32(0) + be32(0x20000) + be32(0) + b"\x02\x00" + be64(1 << 30)
             + bytes.fromhex("00112233445566778899aabbccddeeff"))
PASS = b"\x5a" + be32(0) + be32(1) + b"\xc1"


def nand_mtkclient(ids: list[int]) -> bytes:
    """mtkclient NandInfo64: u32 info, u8 cs, u16 id, u64 size, u16 count; ids; 9 bytes."""
    return (be32(0x0BC4) + b"\x00" + be16(0) + be64(0) + be16(len(ids))
            + b"".join(be16(i) for i in ids) + bytes(9))


def nand_old_romkit(report_count: int) -> bytes:
    """romkit's first sim: status, then zeros sized by the storage report's id count."""
    return be32(0x0BC4).ljust(0x11 + 2 * report_count + 9, b"\x00")


def nand_mtkclient_32bit(ids: list[int]) -> bytes:
    """mtkclient NandInfo32 (its fallback when the u64 layout's count is 0): u32 info, u8 cs,
    u16 id, u32 size, u16 count; ids; 9 bytes. The second id must be 0 for that fallback."""
    return (be32(0x0BC4) + b"\x00" + be16(0) + be32(0) + be16(len(ids))
            + b"".join(be16(i) for i in ids) + bytes(9))


READINGS = {
    "mtkclient-5-ids": (5, nand_mtkclient([0] * 5), (0,) * 5),
    "mtkclient-no-ids": (0, nand_mtkclient([]), ()),
    "old-romkit-sim": (5, nand_old_romkit(5), (0,) * 5),
    "mtkclient-32bit": (3, nand_mtkclient_32bit([0x1234, 0, 0x5678]), (0x1234, 0, 0x5678)),
}


@pytest.mark.parametrize("reading", list(READINGS))
@pytest.mark.parametrize("cid_order", ["le32", "natural"])
def test_flash_info_readings_stay_in_step(reading: str, cid_order: str) -> None:
    report_count, nand, ids = READINGS[reading]
    cid_wire = (bytes.fromhex("4d00011557314738572502418f604418") if cid_order == "le32"
                else CAPTURE_CID)

    def script(p: Peer) -> None:
        p.write(b"\xc0" + be32(0x0BC4) + be16(report_count) + bytes(2 * report_count)
                + be32(0) + cid_wire)
        p.expect(b"\x5a")
        p.write(CAPTURE_VERSION)
        p.write(bytes(0x1C) + nand + emmc_block(cid_wire) + bytes(0x1C) + RAM_BLOCK + PASS)
        phone_speed(p, 1)  # the next command: answered only if nothing was over/under-read

    def body(s: DaSession) -> Any:
        s.sync()
        s.read_storage_report()
        info = s.read_flash_info()
        return info, s.check_speed()

    info, speed = run(script, body)
    assert speed == 1
    assert info.user == USER and info.cid == CAPTURE_CID and info.fw_version == b"FWV00001"
    assert info.nand_ids == ids
    assert info.ram is not None
    assert (info.ram.int_sram_size, info.ram.ext_ram_type, info.ram.ext_ram_size) == (
        0x20000, 2, 1 << 30)
    assert info.ram.random_id.hex() == "00112233445566778899aabbccddeeff"


# -- the DA never starts -----------------------------------------------------------------------
def test_a_da_that_never_syncs_is_4001_with_a_hint() -> None:
    def body(s: DaSession) -> None:
        with pytest.raises(DeviceTimeout) as ei:
            s.sync(timeout=0.3)
        assert "did not start the Download Agent" in ei.value.message
        assert ei.value.spft_code == 4001 and "DA" in ei.value.hint

    run(lambda p: None, body)


def test_write_of_a_whole_sector_image_sends_it_unchanged() -> None:
    """No padding when the image is already whole sectors: the header length is the image's."""
    data = os.urandom(1024)

    def script(p: Peer) -> None:
        p.expect(b"\x62\x01\x08" + be64(0) + be64(1024) + be32(0x100000))
        p.write(b"\x5a")
        pkt = p.read(1 + 1024 + 2)
        assert pkt[1:-2] == data and struct.unpack(">H", pkt[-2:])[0] == sum(data) & 0xFFFF
        p.write(b"\x69")
        p.expect(b"\x72")
        p.write(b"\x5a\x01")

    run(script, lambda s: s.write(8, 0, io.BytesIO(data), 1024))
