"""Bring a phone from "USB plugged in" to "DA stage 2 running, eMMC known".

The order of requests is SP Flash Tool's for MT6589 (reference §2 "What SP Flash Tool sends to
MT6589 before the DA", then §4's connection sequence): phones and their preloaders were only
ever tested against that order, so we do not improvise. Every stage reports progress so the
CLI can show where a bring-up stopped, and any failure closes the port before it propagates.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from romkit import __version__, virtualports
from romkit.device import protocol as P
from romkit.device.brom import Brom, TargetConfig
from romkit.device.legacy_da import (
    DA_START_TIMEOUT,
    DaSession,
    DramResult,
    FlashInfo,
    StorageReport,
)
from romkit.device.transport import (
    CONNECT_PROMPT,
    FT_FIND_USB_ERROR,
    SerialTransport,
    Transport,
    find_mtk_ports,
    wait_for_port,
)
from romkit.errors import DeviceError, DeviceTimeout, ProtocolError, TransportError
from romkit.firmware.da import STAGE1_REGION, STAGE2_REGION, DaFile
from romkit.progress import ProgressCallback, Reporter
from romkit.trace import TraceWriter

EMI_GENA_VALUE = 2  # SP Flash Tool writes EMI_GENA ← 2 before uploading the DA
OPEN_GRACE = 1.0  # seconds to keep retrying to open a port that just appeared
BROM_BL_VER = 0xFE  # GET_BL_VER answers this in the BROM itself; a preloader answers its version
REENUM_TIMEOUT = 20.0  # speed switch → DA back on USB (mtkclient waits 1 s, then polls)
SAME_PORT_PROBE = 1.0  # how long the old port may take to answer 0x72 after the switch


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
    trace: TraceWriter | None = None
    pmic: dict[int, int] = field(default_factory=dict)  # register → value read before writing

    @property
    def cid(self) -> bytes:
        """The decoded eMMC CID (romkit.device.cid): names the part, keys backups."""
        return self.report.cid

    @property
    def in_brom(self) -> bool:
        """True when we talked to the mask ROM itself rather than to a preloader."""
        return self.bl_ver == BROM_BL_VER

    def close(self) -> None:
        self.session.t.close()
        if self.transport is not self.session.t:
            self.transport.close()
        if self.trace is not None:
            self.trace.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(port: str | None, *, da: DaFile, emi: bytes, emi_version: int,
            wait_timeout: float = 30, on_progress: ProgressCallback | None = None,
            handshake_timeout: float = 10.0, timeout: float = 5.0,
            expected_hw_code: int | None = None, trace: Path | str | None = None,
            da_start_timeout: float = DA_START_TIMEOUT,
            reenum_timeout: float = REENUM_TIMEOUT) -> Device:
    """Wait for the phone, talk it into running our DA, and return the open `Device`.

    `emi` is the preloader's EMI_SETTINGS table (`PreloaderInfo.emi_blob`) and `emi_version`
    its MTK_BLOADER_INFO version; the DA needs them to bring up DRAM before stage 2.
    `expected_hw_code` (from the scatter's platform) is checked right after GET_HW_CODE, so
    firmware for another chip is refused as SP Flash Tool does (8200) before any DA is sent.
    `trace` records every byte both ways into that file (romkit.trace format); the file is
    closed with the `Device` (or at once if the bring-up fails).
    """
    rep = Reporter(on_progress)
    writer = (TraceWriter(trace, side="host", tool="romkit", version=__version__,
                          port=port or "auto") if trace is not None else None)
    try:
        path = wait_for_port(port, wait_timeout, on_progress=on_progress)
        transport = _open(path, timeout, writer)
    except BaseException:
        if writer is not None:
            writer.close()
        raise
    try:
        dev = _bring_up(transport, path, da, emi, emi_version, rep, handshake_timeout,
                        expected_hw_code, da_start_timeout, reenum_timeout, timeout, writer)
    except BaseException:
        transport.close()
        if writer is not None:
            writer.close()
        raise
    dev.trace = writer
    return dev


def _open(path: str, timeout: float, trace: TraceWriter | None = None) -> SerialTransport:
    """Open the port, retrying briefly: a fresh /dev/ttyACM* node exists a few tens of ms
    before udev has given it its permissions, and the preloader will not wait for us."""
    deadline = time.monotonic() + OPEN_GRACE
    while True:
        try:
            return SerialTransport(path, timeout=timeout, trace=trace)
        except TransportError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _pmic_charger_setup(brom: Brom, rep: Reporter) -> dict[int, int]:
    """SP Flash Tool's MT6589 charger setup, as captured (protocol.MT6589_PMIC_CHARGER).

    Sent only to the boot ROM: there nothing has set the charger up yet, while a preloader
    already has (that is its job) and may not implement the PWR commands at all. Each
    register is read, written and read back as SP Flash Tool does; a read-back that differs
    is reported, not fatal (SP Flash Tool only logs it too).
    """
    brom.pmic_init(*P.MT6589_PWR_INIT_ARGS)
    before: dict[int, int] = {}
    for reg, value in P.MT6589_PMIC_CHARGER:
        before[reg] = brom.pmic_read16(reg)
        brom.pmic_write16(reg, value)
        now = brom.pmic_read16(reg)
        if now != value:
            rep.warning(f"PMIC register 0x{reg:04X} reads 0x{now:04X} after writing "
                        f"0x{value:04X}", register=reg, value=value, read=now)
    brom.pmic_deinit()
    return before


def _bring_up(t: Transport, path: str, da: DaFile, emi: bytes, emi_version: int,
              rep: Reporter, handshake_timeout: float,
              expected_hw_code: int | None = None, da_start_timeout: float = DA_START_TIMEOUT,
              reenum_timeout: float = REENUM_TIMEOUT, timeout: float = 5.0,
              trace: TraceWriter | None = None) -> Device:
    virtual = virtualports.lookup(path)  # who this port belongs to, before it can move
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
    bl_ver = brom.get_bl_ver()
    pmic: dict[int, int] = {}
    if bl_ver == BROM_BL_VER:
        pmic = _pmic_charger_setup(brom, rep)
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
    session.sync(da_start_timeout)
    report = session.read_storage_report()
    rep.info(f"DA {'.'.join(str(v) for v in report.da_version)} running; eMMC CID "
             f"{report.cid.hex()} ({report.cid_order} order)", da_version=report.da_version,
             cid=report.cid.hex(), cid_raw=report.cid_raw.hex(), cid_order=report.cid_order)
    dram: DramResult | None = None
    if session.send_config(brom_ver, bl_ver, reset_key=0 if hw_code == P.MT6589_HW_CODE else 1):
        dram = session.init_dram(emi, emi_version)
        rep.info(f"DRAM up: {dram.ram_size // (1024 * 1024)} MiB", ram_size=dram.ram_size)
    rep.start("stage2", "uploading DA stage 2", total=len(stage2_data))
    session.upload_stage2(stage2.load_addr, stage2_data,
                          on_packet=lambda done, total: rep.update("stage2", done, total))
    rep.end("stage2")
    flash = session.read_flash_info()

    where = [path]  # the port the DA is on now (the speed switch may move it)
    # USB ports present before any speed switch: the DA's next port is one not among them.
    old_ports = {p.device for p in find_mtk_ports(virtual=False)}

    def follow(s: DaSession) -> int:
        new_t, where[0], speed = _follow_reenumeration(s, path, virtual, old_ports,
                                                       reenum_timeout, timeout, trace, rep)
        s.t = new_t
        return speed

    speed = session.check_speed(follow)
    rep.info(f"eMMC user area {flash.user // (1024 * 1024)} MiB", user=flash.user,
             cid=report.cid.hex())
    return Device(session.t, session, where[0], hw_code, hs.hw_ver, hs.sw_ver,
                  bl_ver, brom_ver, config, report, dram, flash, speed, pmic=pmic)


def _follow_reenumeration(s: DaSession, path: str, virtual: virtualports.VirtualPort | None,
                          old_ports: set[str], reenum_timeout: float, timeout: float,
                          trace: TraceWriter | None, rep: Reporter
                          ) -> tuple[Transport, str, int]:
    """After USB_SET_SPEED's ACK: find the DA again and return (transport, port, speed).

    On real USB the DA re-enumerates: the port vanishes and a DA VCOM port (0E8D:2001)
    appears, often under another name [outside: mtkclient dalegacy_lib.py upload_da1 closes
    the port, waits and reconnects; the reference §4 step 8]. A virtual phone re-announces
    itself with the same phone_id, a new port and a higher generation (romkit.virtualports).
    Romkit's first virtual phone stayed on the same port [our old reading], so that is tried
    first, with one USB_CHECK_STATUS (0x72) and a short timeout: a DA that re-enumerates never
    reads it (its endpoints reset, or the pty is gone), so it cannot put the two ends out of
    step; then the old port is closed and we wait for the phone's next one.
    """
    if trace is not None:
        trace.event("usb speed switch: looking for the phone")
    node = os.path.realpath(path)  # what the port name points at before the switch
    vanished = False
    try:
        speed = s.usb_status(SAME_PORT_PROBE)
        rep.info("USB high speed on the same port", port=path)
        return s.t, path, speed
    except TransportError:
        vanished = True  # the port is gone: the DA is re-enumerating
    except (DeviceTimeout, ProtocolError):
        pass
    s.t.close()
    deadline = time.monotonic() + reenum_timeout
    rep.info("waiting for the phone to come back at high speed", port=path)
    while True:
        vanished = vanished or not os.path.exists(path)
        target = _next_port(path, node, virtual, old_ports, vanished)
        if target is not None:
            break
        if time.monotonic() >= deadline:
            raise TransportError(
                f"the phone did not come back within {reenum_timeout:g} s after switching to "
                "USB high speed",
                hint=CONNECT_PROMPT + " If it keeps happening, connect through a USB 2.0 "
                "port without a hub.",
                spft_code=FT_FIND_USB_ERROR,
                details={"port": path},
            )
        time.sleep(0.05)
    if trace is not None:
        trace.event(f"reopen {target}")
    new_t = _open(target, timeout, trace)
    s.t = new_t
    try:
        speed = s.usb_status()
    except BaseException:
        new_t.close()
        raise
    rep.info(f"phone back on {target} at USB speed {speed}", port=target, speed=speed)
    return new_t, target, speed


def _next_port(path: str, node: str, virtual: virtualports.VirtualPort | None,
               old_ports: set[str], vanished: bool) -> str | None:
    """Where the re-enumerated DA is now, or None while it is not back yet.

    A virtual phone: its re-announcement (same phone_id, higher generation). Otherwise a
    MediaTek USB port that was not there before (the DA VCOM, 0E8D:2001, sorts last but is
    the usual one), or the old name once it vanished or now leads to another node (a udev
    symlink, or a reused /dev/ttyACM name).
    """
    if virtual is not None:
        entry = virtualports.find(virtual.phone_id)
        if entry is None or entry.generation <= virtual.generation:
            return None
        return entry.port if "://" in entry.port or os.path.exists(entry.port) else None
    fresh = [p for p in find_mtk_ports(virtual=False)
             if p.device not in old_ports or (p.device == path and vanished)]
    if fresh:  # the DA VCOM (0E8D:2001) is what a re-enumerated DA shows up as
        return min(fresh, key=lambda p: p.mode != "da").device
    if path.startswith("/dev/pts/"):
        # a pty number is reused by the system: after it vanished, the same name may be any
        # other program's terminal. Only a virtual phone's announcement can lead back to it.
        return None
    if os.path.exists(path) and (vanished or os.path.realpath(path) != node):
        return path
    return None
