"""Bring a phone from "USB plugged in" to "DA stage 2 running, eMMC known".

The order of requests is SP Flash Tool's for MT6589 (reference §2 "What SP Flash Tool sends to
MT6589 before the DA", then §4's connection sequence): phones and their preloaders were only
ever tested against that order, so we do not improvise. Every stage reports progress so the
CLI can show where a bring-up stopped, and any failure closes the port before it propagates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from romkit.device import protocol as P
from romkit.device.brom import Brom, TargetConfig
from romkit.device.legacy_da import DaSession, DramResult, FlashInfo, StorageReport
from romkit.device.transport import SerialTransport, Transport, wait_for_port
from romkit.errors import DeviceError, TransportError
from romkit.firmware.da import STAGE1_REGION, STAGE2_REGION, DaFile
from romkit.progress import ProgressCallback, Reporter

EMI_GENA_VALUE = 2  # SP Flash Tool writes EMI_GENA ← 2 before uploading the DA
OPEN_GRACE = 1.0  # seconds to keep retrying to open a port that just appeared
BROM_BL_VER = 0xFE  # GET_BL_VER answers this in the BROM itself; a preloader answers its version


@dataclass
class Device:
    """A connected phone with a running DA: everything the flash layer needs to know."""

    transport: Transport
    session: DaSession
    port: str
    hw_code: int
    hw_ver: int
    sw_ver: int
    bl_ver: int
    brom_ver: int
    target_config: TargetConfig
    report: StorageReport
    dram: DramResult | None
    flash: FlashInfo
    usb_speed: int

    @property
    def cid(self) -> bytes:
        return self.report.cid

    @property
    def in_brom(self) -> bool:
        """True when we talked to the mask ROM itself rather than to a preloader."""
        return self.bl_ver == BROM_BL_VER

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(port: str | None, *, da: DaFile, emi: bytes, emi_version: int,
            wait_timeout: float = 30, on_progress: ProgressCallback | None = None,
            handshake_timeout: float = 10.0, timeout: float = 5.0,
            expected_hw_code: int | None = None) -> Device:
    """Wait for the phone, talk it into running our DA, and return the open `Device`.

    `emi` is the preloader's EMI_SETTINGS table (`PreloaderInfo.emi_blob`) and `emi_version`
    its MTK_BLOADER_INFO version; the DA needs them to bring up DRAM before stage 2.
    `expected_hw_code` (from the scatter's platform) is checked right after GET_HW_CODE, so
    firmware for another chip is refused as SP Flash Tool does (8200) before any DA is sent.
    """
    rep = Reporter(on_progress)
    path = wait_for_port(port, wait_timeout, on_progress=on_progress)
    transport = _open(path, timeout)
    try:
        return _bring_up(transport, path, da, emi, emi_version, rep, handshake_timeout,
                         expected_hw_code)
    except BaseException:
        transport.close()
        raise


def _open(path: str, timeout: float) -> SerialTransport:
    """Open the port, retrying briefly: a fresh /dev/ttyACM* node exists a few tens of ms
    before udev has given it its permissions, and the preloader will not wait for us."""
    deadline = time.monotonic() + OPEN_GRACE
    while True:
        try:
            return SerialTransport(path, timeout=timeout)
        except TransportError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _bring_up(t: Transport, path: str, da: DaFile, emi: bytes, emi_version: int,
              rep: Reporter, handshake_timeout: float,
              expected_hw_code: int | None = None) -> Device:
    brom = Brom(t)
    rep.info(f"handshaking with {path}", port=path)
    brom.handshake(handshake_timeout)
    hw_code = brom.get_hw_code()
    if expected_hw_code is not None and hw_code != expected_hw_code:
        raise DeviceError(
            f"the firmware is for hw code 0x{expected_hw_code:04X} but the phone reports "
            f"0x{hw_code:04X}: load and target are inconsistent",
            hint="use firmware made for this phone's chip (a fake or different model reports "
                 "another hw code); nothing was sent to the phone",
            spft_code=8200, details={"hw_code": hw_code, "expected": expected_hw_code})
    hs = brom.get_hw_sw_ver()
    entry = da.select(hw_code, hs.hw_ver, hs.sw_ver)
    rep.info(f"chip 0x{hw_code:04X} hw 0x{hs.hw_ver:04X} sw 0x{hs.sw_ver:04X}",
             hw_code=hw_code, hw_ver=hs.hw_ver, sw_ver=hs.sw_ver)
    config = brom.get_target_config()
    if config.sla or config.daa:
        raise DeviceError(
            "the phone requires secure-boot authentication (SLA/DAA), which romkit does not "
            "support",
            hint="This is not a stock MT6589 S820 setup; use the vendor's authorised tool.",
            details={"target_config": config.raw},
        )
    brom.uart1_log_enable()
    brom.disable_watchdog()
    brom_ver = brom.get_version()
    bl_ver = brom.get_bl_ver()
    brom.write32(P.MT6589_EMI_GENA, [EMI_GENA_VALUE])

    stage1_data = da.region_bytes(entry, STAGE1_REGION)  # raises if the entry lacks it
    stage2_data = da.region_bytes(entry, STAGE2_REGION)
    stage1 = entry.regions[STAGE1_REGION]
    stage2 = entry.regions[STAGE2_REGION]
    brom.send_da(stage1.load_addr, stage1_data, stage1.sig_len, on_progress=rep.callback)
    brom.uart1_log_enable()
    brom.jump_da(stage1.load_addr)
    rep.info(f"DA stage 1 started at 0x{stage1.load_addr:08X}")

    session = DaSession(t)
    session.sync()
    report = session.read_storage_report()
    dram: DramResult | None = None
    if session.send_config(brom_ver, bl_ver, reset_key=0 if hw_code == P.MT6589_HW_CODE else 1):
        dram = session.init_dram(emi, emi_version)
        rep.info(f"DRAM up: {dram.ram_size // (1024 * 1024)} MiB", ram_size=dram.ram_size)
    rep.start("stage2", "uploading DA stage 2", total=len(stage2_data))
    session.upload_stage2(stage2.load_addr, stage2_data,
                          on_packet=lambda done, total: rep.update("stage2", done, total))
    rep.end("stage2")
    flash = session.read_flash_info()
    speed = session.check_speed()
    rep.info(f"eMMC user area {flash.user // (1024 * 1024)} MiB", user=flash.user,
             cid=report.cid.hex())
    return Device(t, session, path, hw_code, hs.hw_ver, hs.sw_ver, bl_ver, brom_ver, config,
                  report, dram, flash, speed)
