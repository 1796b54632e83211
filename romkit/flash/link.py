"""The flash layer's side of a connected phone: which DA and EMI to use, and range I/O.

Every command that touches a phone (flash, backup, restore, readback) needs the same three
things: a Download Agent file, the EMI table of a preloader that suits this phone's memory
chip, and byte-range reads/writes addressed by (region, offset). They live here once, so the
4032 explanation — the one error 2014 S820 owners actually meet — is written once too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from romkit import paths
from romkit.device import protocol as P
from romkit.device.connect import Device, connect
from romkit.device.layout import parse_pmt
from romkit.errors import DramInitError, FirmwareFormatError, RomkitError, UsageError
from romkit.firmware.da import DaFile, load_da
from romkit.firmware.preloader import (
    MAX_PRELOADER_FILE,
    PreloaderInfo,
    describe_part,
    load_preloader,
)
from romkit.firmware.scatter import REGION_BOOT1, REGION_USER
from romkit.flash.backup import RangeReader, StorageRange
from romkit.flash.plan import DeviceFacts, PmtRow
from romkit.flash.streams import Sink
from romkit.progress import Reporter

DA_FILE_NAME = "MTK_AllInOne_DA.bin"
MAX_PRELOADER_SCAN = 200  # known-preloader search: enough for any cache, cheap to parse
REGION_PART_IDS: dict[str, int] = {REGION_BOOT1: P.PART_BOOT1, "EMMC_BOOT_2": P.PART_BOOT2,
                                   REGION_USER: P.PART_USER}

ByteCallback = Callable[[int], None]


def resolve_da(explicit: Path | None, flash_tool_dir: Path | None) -> Path:
    """`--da FILE`, else the firmware's flash-tool folder, else the configured default."""
    if explicit is not None:
        if not explicit.is_file():
            raise UsageError(f"DA file not found: {explicit}",
                             hint="pass the MTK_AllInOne_DA.bin of SP Flash Tool with --da")
        return explicit
    if flash_tool_dir is not None:
        for cand in (flash_tool_dir / DA_FILE_NAME, *sorted(flash_tool_dir.glob("*DA*.bin"))):
            if cand.is_file():
                return cand
    cfg = paths.config_dir() / "da"
    if cfg.is_dir():
        for cand in (cfg / DA_FILE_NAME, *sorted(cfg.glob("*.bin"))):
            if cand.is_file():
                return cand
    raise UsageError(
        "no Download Agent (MTK_AllInOne_DA.bin) found",
        hint=f"pass --da FILE, or put {DA_FILE_NAME} in the firmware's flash-tool folder or "
             f"in {cfg}",
    )


def load_link_files(da_path: Path, preloader_path: Path) -> tuple[DaFile, PreloaderInfo]:
    """Parse the DA and the preloader; the preloader must carry an EMI table."""
    da = load_da(da_path)
    pre = load_preloader(preloader_path)
    if not pre.emi_blob or pre.emi_version is None:
        raise FirmwareFormatError(f"{preloader_path.name} carries no EMI table",
                                  hint="use the preloader of the firmware for this phone",
                                  spft_code=5054)
    return da, pre


def _known_preloaders_for(cid: bytes, skip: Path | None) -> list[Path]:
    """Preloader files in romkit's cache/data dirs that list this memory part."""
    found: list[Path] = []
    seen = 0
    for root in (paths.cache_dir(), paths.data_dir()):
        if not root.is_dir():
            continue
        for cand in sorted(root.rglob("preloader*.bin")):
            if seen >= MAX_PRELOADER_SCAN:
                return found
            seen += 1
            try:
                if (skip is not None and cand.resolve() == skip.resolve()) or (
                        cand.stat().st_size > MAX_PRELOADER_FILE):
                    continue
                if load_preloader(cand).supports(cid):
                    found.append(cand)
            except (RomkitError, OSError):
                continue
    return found


def explain_dram_failure(exc: DramInitError, pre: PreloaderInfo,
                         preloader_path: Path) -> DramInitError:
    """Rebuild a 4032 with a hint naming the phone's memory part and a way out."""
    cid_hex = str(exc.details.get("flash_id") or "")
    try:
        cid = bytes.fromhex(cid_hex)
    except ValueError:
        cid = b""
    part = describe_part(cid) if cid else str(exc.details.get("memory_part") or "unknown")
    listed = ", ".join(e.part for e in pre.active_entries()) or "none"
    parts = [f"This phone's memory part is {part}; {preloader_path.name} lists only: {listed}."]
    if cid:
        known = _known_preloaders_for(cid, preloader_path)
        if known:
            parts.append("Preloaders that list it: " + ", ".join(str(k) for k in known[:3]) + ".")
        else:
            parts.append("No preloader in romkit's cache or data folder lists it.")
    parts.append("Run `romkit prepare --device-year 2014` to swap in the 2014 preloader "
                 "(it lists the newer memory parts), then flash again. Nothing was written.")
    details = {**exc.details, "memory_part": part, "preloader": str(preloader_path)}
    return DramInitError(exc.message, hint=" ".join(parts), spft_code=4032, details=details)


def open_device(port: str | None, da: DaFile, pre: PreloaderInfo, preloader_path: Path, *,
                wait: float, rep: Reporter, expected_hw_code: int | None = None,
                trace: Path | None = None) -> Device:
    """Connect and start the DA; a DRAM failure becomes an explained 4032. `trace` records
    every byte of the session into that file (romkit.trace format, docs/TRACE.md)."""
    try:
        return connect(port, da=da, emi=pre.emi_blob, emi_version=pre.emi_version or 0,
                       wait_timeout=wait, on_progress=rep.callback,
                       expected_hw_code=expected_hw_code, trace=trace)
    except DramInitError as exc:
        raise explain_dram_failure(exc, pre, preloader_path) from exc


def read_device_pmt(dev: Device, rep: Reporter) -> list[PmtRow]:
    """The phone's PMT ([] if none or unreadable: such a table describes nothing usable)."""
    raw = dev.session.read_pmt()
    if not raw:
        return []
    try:
        entries = parse_pmt(raw)
    except FirmwareFormatError as exc:
        rep.warning(f"the phone's partition table is damaged ({exc.message}); treated as "
                    "missing")
        return []
    return [PmtRow(name=e.name, offset=e.offset, size=e.size) for e in entries]


def device_facts(dev: Device, pmt: list[PmtRow] | None) -> DeviceFacts:
    return DeviceFacts(hw_code=dev.hw_code, cid=dev.cid.hex(), boot1_size=dev.flash.boot1,
                       user_size=dev.flash.user, pmt=pmt)


def finish_quietly(dev: Device) -> None:
    """End the DA session if the link is still in step; then release the port."""
    try:
        dev.session.finish(P.FINISH_NORMAL)
    except RomkitError:
        pass
    finally:
        dev.close()


@dataclass
class RangeIO:
    """Reads and writes by (region, offset) on an open DA session."""

    dev: Device
    packet_size: int = P.DA_PACKET_DEFAULT
    max_retries: int = 3

    def read(self, rng: StorageRange, sink: Sink, on_bytes: ByteCallback | None = None
             ) -> int:
        cb = None if on_bytes is None else (lambda done, _total: on_bytes(done))
        return self.dev.session.read(REGION_PART_IDS[rng.region], rng.offset, rng.length,
                                     cast(BinaryIO, sink),
                                     packet_size=self.packet_size, on_packet=cb,
                                     max_retries=self.max_retries)

    def write(self, region: str, offset: int, source: BinaryIO, length: int,
              on_bytes: ByteCallback | None = None, limit: int | None = None) -> int:
        """Write `length` image bytes; the DA gets whole 512-byte sectors (zero tail), which
        must end by `limit` (the partition's end; default the eMMC hardware partition's)."""
        cb = None if on_bytes is None else (lambda done, _total: on_bytes(done))
        return self.dev.session.write(REGION_PART_IDS[region], offset, source, length,
                                      packet_size=self.packet_size, on_packet=cb,
                                      max_retries=self.max_retries, limit=limit)

    def format(self, region: str, offset: int, length: int,
               on_percent: Callable[[int], None] | None = None) -> None:
        self.dev.session.format(REGION_PART_IDS[region], offset, length, on_percent=on_percent)

    def backup_reader(self, overall: ByteCallback | None = None) -> RangeReader:
        """A `RangeReader` for backup.take_backup that also feeds an overall counter."""
        def reader(rng: StorageRange, sink: Sink, on_bytes: ByteCallback | None = None
                   ) -> None:
            def both(done: int) -> None:
                if on_bytes is not None:
                    on_bytes(done)
                if overall is not None:
                    overall(done)
            self.read(rng, sink, both)
        return reader
