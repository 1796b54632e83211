"""connect(): the whole SP Flash Tool-ordered bring-up against a hand-scripted phone on a pty."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

import pytest
from test_brom import answer_handshake, xor16_independent
from test_legacy_da import (
    CID,
    CONFIG_BYTES,
    EMI_BLOB,
    STAGE2,
    USER_SIZE,
    phone_config,
    phone_dram,
    phone_flash_info,
    phone_speed,
    phone_stage2,
    phone_sync_and_report,
)
from test_transport import Peer, PtyPhone, be16, be32

from romkit.device.connect import connect
from romkit.errors import DeviceError, DramInitError
from romkit.firmware.da import parse_da
from romkit.progress import ProgressEvent

STAGE1 = os.urandom(0x9001)  # odd length: exercises the XOR-16 padding
SIG_LEN = 0x100


def hand_packed_da() -> bytes:
    """A one-entry MTK_AllInOne_DA.bin laid out by hand from reference §5."""
    region0 = b"\x00" * 0x40
    data_at = 0x200
    offsets = [data_at, data_at + len(region0), data_at + len(region0) + len(STAGE1)]
    regions = [(offsets[0], len(region0), 0x12020000, 0, 0),
               (offsets[1], len(STAGE1), 0x12000000, 0, SIG_LEN),
               (offsets[2], len(STAGE2), 0x82038000, 0, 0)]
    head = b"MTK_DOWNLOAD_AGENT".ljust(32, b"\x00") + b"MTK_AllInOne_DA_test".ljust(64, b"\x00")
    head += struct.pack("<III", 4, 0x22668899, 1)
    entry = struct.pack("<10H", 0xDADA, 0x6583, 0x8A00, 0xCA00, 0, 0, 0x800, 0, 0, 3)
    for r in regions:
        entry += struct.pack("<5I", *r)
    entry += bytes(20 * (10 - len(regions)))
    assert len(entry) == 0xDC
    blob = (head + entry).ljust(data_at, b"\x00")
    return blob + region0 + STAGE1 + STAGE2


def echo(p: Peer, data: bytes) -> None:
    p.expect(data)
    p.write(data)


# SP Flash Tool's MT6589 PMIC charger setup as the replay of its USB capture sends it
# (arzam16/empty-sixty-five brom-dump/spft-replay/src/platform.py MT6589.init_pmic):
# register, value read on a real phone, value written.
PMIC_STEPS = [(0x000E, 0x1001, 0x1001), (0x000C, 0x0041, 0x0049), (0x0008, 0x000F, 0x000C),
              (0x001A, 0x0010, 0x0000), (0x0000, 0x0063, 0x007B), (0x0020, 0x0001, 0x0009)]


def phone_pmic(p: Peer) -> None:
    """PWR_INIT/READ16/WRITE16/DEINIT framed as spft-replay src/brom.py sends them."""
    echo(p, b"\xc4")
    echo(p, be32(0x80000000))
    echo(p, be32(0))
    p.write(be16(0))
    for reg, before, after in PMIC_STEPS:
        for cmd, value in ((b"\xc6", before), (b"\xc7", None), (b"\xc6", after)):
            echo(p, cmd)
            echo(p, be16(reg))
            if value is None:
                echo(p, be16(after))
                p.write(be16(0) + be16(0))
            else:
                p.write(be16(0) + be16(0) + be16(value))
    echo(p, b"\xc5")
    p.write(be16(0))


def phone_brom(p: Peer, target_config: int = 0, bl_ver: int = 0xFE) -> None:
    """BROM side in SP Flash Tool's order, as reference §2 lists it."""
    answer_handshake(p)
    echo(p, b"\xfd")
    p.write(be16(0x6583) + be16(0))
    echo(p, b"\xfc")
    p.write(be16(0x8A00) + be16(0xCA00) + be16(0) + be16(0))
    echo(p, b"\xd8")
    p.write(be32(target_config) + be16(0))
    if target_config:
        return
    echo(p, b"\xdb")
    p.write(be16(0))
    p.expect(b"\xfe")
    p.write(bytes([bl_ver]))
    if bl_ver == 0xFE:  # only the boot ROM gets SP Flash Tool's charger setup
        phone_pmic(p)
    echo(p, b"\xd4")  # watchdog
    echo(p, be32(0x10000000))
    echo(p, be32(1))
    p.write(be16(0))
    echo(p, be32(0x22002224))
    p.write(be16(0))
    p.expect(b"\xff")
    p.write(b"\x05")
    p.expect(b"\xfe")
    p.write(bytes([bl_ver]))
    echo(p, b"\xd4")  # EMI_GENA
    echo(p, be32(0x10203070))
    echo(p, be32(1))
    p.write(be16(0))
    echo(p, be32(2))
    p.write(be16(0))
    echo(p, b"\xd7")
    echo(p, be32(0x12000000))
    echo(p, be32(len(STAGE1)))
    echo(p, be32(SIG_LEN))
    p.write(be16(0))
    body = p.read(len(STAGE1))
    assert body == STAGE1
    p.write(be16(xor16_independent(body)) + be16(0))
    echo(p, b"\xdb")
    p.write(be16(0))
    echo(p, b"\xd5")
    echo(p, be32(0x12000000))
    p.write(be16(0))


def bring_up(script: Callable[[Peer], None], **kw: object) -> object:
    events: list[ProgressEvent] = []
    with PtyPhone(script) as phone:
        da = parse_da(hand_packed_da())
        dev = connect(phone.path, da=da, emi=EMI_BLOB, emi_version=10, wait_timeout=2,
                      on_progress=events.append, handshake_timeout=3, timeout=2, **kw)
        return dev, events


def phone_whole_bring_up(p: Peer, bl_ver: int = 0xFE, config: bytes = CONFIG_BYTES) -> None:
    """The phone's side of a whole bring-up: BROM, DA sync, config, DRAM, stage 2, flash
    info, speed check."""
    phone_brom(p, bl_ver=bl_ver)
    phone_sync_and_report(p)
    phone_config(p, config)
    phone_dram(p)
    phone_stage2(p)
    phone_flash_info(p)
    phone_speed(p, 1)


def test_connect_runs_the_whole_bring_up() -> None:
    dev, events = bring_up(phone_whole_bring_up)  # type: ignore[misc]
    try:
        assert (dev.hw_code, dev.hw_ver, dev.sw_ver) == (0x6583, 0xCA00, 0)
        assert dev.bl_ver == 0xFE and dev.in_brom and dev.brom_ver == 0x05
        assert dev.cid == CID and dev.flash.user == USER_SIZE
        assert dev.dram is not None and dev.dram.ram_size == 1 << 30
        assert dev.usb_speed == 1
        labels = [e.label for e in events]
        assert any("battery" in label for label in labels)
        assert any(e.task == "stage2" and e.kind == "end" for e in events)
    finally:
        dev.close()


def test_connect_refuses_secure_boot_and_closes_the_port() -> None:
    def script(p: Peer) -> None:
        phone_brom(p, target_config=0x6)  # SLA + DAA

    fds_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(DeviceError) as ei:
        bring_up(script)
    assert "SLA" in ei.value.message
    assert len(os.listdir("/proc/self/fd")) == fds_before  # the serial port was closed


def test_connect_dram_rejection_is_4032() -> None:
    def script(p: Peer) -> None:
        phone_brom(p)
        phone_sync_and_report(p)
        phone_config(p, CONFIG_BYTES)
        phone_dram(p, ret=1)

    with pytest.raises(DramInitError) as ei:
        bring_up(script)
    assert ei.value.spft_code == 4032 and "H9TQ17" in ei.value.message


def test_connect_in_preloader_mode_skips_the_pmic_setup() -> None:
    """The charger setup goes to the boot ROM only: a preloader has done it already."""
    def script(p: Peer) -> None:
        # the phone side fails if a C4 arrives instead of D4
        phone_whole_bring_up(p, bl_ver=0x01, config=bytes.fromhex(
            "05 01 0008 00 7007ffff 01 00000000 01 00 02 00 00000000"))

    dev, _events = bring_up(script)  # type: ignore[misc]
    try:
        assert dev.bl_ver == 0x01 and not dev.in_brom and dev.pmic == {}
    finally:
        dev.close()


def test_connect_in_brom_mode_records_the_pmic_values_it_found() -> None:
    dev, _events = bring_up(phone_whole_bring_up)  # type: ignore[misc]
    try:
        assert dev.pmic == {reg: before for reg, before, _after in PMIC_STEPS}
    finally:
        dev.close()
