"""On-demand phone operations besides flashing: calibration backup, restore, and readback.

They share the flash engine's bring-up (DA + the preloader's EMI table) and its rules: every
byte read from the phone is hashed as it streams to an atomic file, and every byte written back
is proved by reading it again.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from romkit.device import protocol as P
from romkit.device.connect import Device
from romkit.errors import StorageError, UsageError, ValidationError
from romkit.firmware.package import Firmware
from romkit.firmware.scatter import REGION_BOOT1, REGION_USER
from romkit.flash.backup import (
    CALIBRATION_PARTS,
    BackupEntry,
    BackupSet,
    StorageRange,
    find_set,
    list_sets,
    take_backup,
)
from romkit.flash.link import (
    RangeIO,
    load_link_files,
    open_device,
    read_device_pmt,
    resolve_da,
)
from romkit.flash.plan import PLATFORM_HW_CODES, PmtRow
from romkit.flash.streams import DigestSink
from romkit.fsutil import atomic_open
from romkit.progress import ProgressCallback, Reporter
from romkit.workspace import resolve_firmware_dir


class PhoneRequest(BaseModel):
    """How to reach the phone: port, DA, and where the EMI table comes from."""

    port: str | None = None
    da: Path | None = None
    preloader: Path | None = None  # default: the firmware folder's preloader
    firmware_dir: Path | None = None  # default: the current firmware
    wait: float = 30.0
    packet_size: int = P.DA_PACKET_DEFAULT
    trace: Path | None = None  # record every byte to/from the phone (docs/TRACE.md)


class BackupRequest(PhoneRequest):
    pass


class RestoreRequest(PhoneRequest):
    set_ref: str | None = None  # path, <cid>/<timestamp>, timestamp; None = newest
    dry_run: bool = False


class ReadbackRequest(PhoneRequest):
    names: list[str] = Field(default_factory=list)
    all: bool = False
    out_dir: Path


class RangeResult(BaseModel):
    name: str
    region: str
    offset: int
    length: int
    sha256: str
    file: str | None = None


class BackupResult(BaseModel):
    set_name: str
    path: str
    cid: str
    ranges: list[RangeResult]


class RestoreResult(BaseModel):
    set_name: str
    dry_run: bool
    cid: str | None
    ranges: list[RangeResult]
    verified: list[str] = Field(default_factory=list)


class ReadbackResult(BaseModel):
    out_dir: str
    cid: str
    ranges: list[RangeResult]


# -- shared bring-up -------------------------------------------------------------------------
def _firmware(req: PhoneRequest) -> Firmware | None:
    if req.firmware_dir is None and req.preloader is not None and req.da is not None:
        return None
    try:
        return Firmware.load(resolve_firmware_dir(req.firmware_dir))
    except UsageError:
        if req.preloader is not None and req.da is not None:
            return None
        raise UsageError(
            "no firmware folder to take the DA and the preloader's EMI table from",
            hint="pass --firmware DIR, or both --da FILE and --preloader FILE",
        ) from None


def _connect(req: PhoneRequest, rep: Reporter) -> tuple[Device, Firmware | None]:
    fw = _firmware(req)
    pre_path = req.preloader or (fw.preloader_path if fw is not None else None)
    if pre_path is None:
        raise UsageError("no preloader to take the EMI (DRAM) table from",
                         hint="pass --preloader FILE (the firmware's preloader_*.bin)")
    da_path = resolve_da(req.da, fw.flash_tool_dir if fw is not None else None)
    da, pre = load_link_files(da_path, pre_path)
    platform = (fw.layout.platform or "").upper() if fw is not None else ""
    return open_device(req.port, da, pre, pre_path, wait=req.wait, rep=rep,
                       expected_hw_code=PLATFORM_HW_CODES.get(platform), trace=req.trace), fw


def _user_range(name: str, row_offset: int, size: int) -> StorageRange:
    return StorageRange(name=name, region=REGION_USER,
                        offset=row_offset - P.MT6589_USER_OFFSET, length=size)


def _phone_layout(dev: Device, fw: Firmware | None, rep: Reporter) -> list[StorageRange]:
    """Every partition's place on this phone: its PMT first, the scatter as a fallback."""
    pmt: list[PmtRow] = read_device_pmt(dev, rep)
    out = [StorageRange(name="PRELOADER", region=REGION_BOOT1, offset=0,
                        length=dev.flash.boot1)]
    if pmt:
        for row in pmt:
            if row.offset < P.MT6589_USER_OFFSET or row.name.upper() == "PRELOADER":
                continue
            size = row.size or max(0, dev.flash.user - (row.offset - P.MT6589_USER_OFFSET))
            out.append(_user_range(row.name, row.offset, size))
        return out
    if fw is None:
        raise StorageError("the phone has no partition table and no scatter file was given",
                           hint="pass --firmware DIR so partition places come from its scatter")
    rep.warning("the phone has no partition table; using the scatter file's layout")
    for p in fw.layout.real_partitions:
        if p.region != REGION_USER or p.name.upper() == "PRELOADER":
            continue
        start = p.physical_start or 0
        size = p.size if p.size is not None else max(0, dev.flash.user - start)
        out.append(StorageRange(name=p.name, region=REGION_USER, offset=start, length=size))
    return out


def _calibration(layout: list[StorageRange]) -> list[StorageRange]:
    by = {r.name.upper(): r for r in layout}
    return [by[n] for n in CALIBRATION_PARTS if n in by and by[n].length > 0]


# -- backup ----------------------------------------------------------------------------------
def backup_phone(req: BackupRequest, on_progress: ProgressCallback | None = None
                 ) -> BackupResult:
    """Read the calibration partitions into a new backup set."""
    rep = Reporter(on_progress)
    dev, fw = _connect(req, rep)
    try:
        ranges = _calibration(_phone_layout(dev, fw, rep))
        if not ranges:
            raise StorageError("no calibration partitions (NVRAM, PROTECT_F, …) found",
                               hint="check that this is an MT6589 phone with a partition table")
        rio = RangeIO(dev, req.packet_size)
        bset = take_backup(dev.cid, ranges, rio.backup_reader(), hw_code=dev.hw_code,
                           reason="romkit backup", on_progress=rep)
        dev.session.finish(P.FINISH_NORMAL)
    finally:
        dev.close()
    return BackupResult(set_name=bset.name, path=str(bset.path), cid=dev.cid.hex(),
                        ranges=[_from_entry(e) for e in bset.manifest.entries])


def _from_entry(e: BackupEntry) -> RangeResult:
    return RangeResult(name=e.name, region=e.region, offset=e.offset, length=e.length,
                       sha256=e.sha256, file=e.file)


# -- restore ---------------------------------------------------------------------------------
def list_backups(cid_hex: str | None = None) -> list[BackupSet]:
    return list_sets(bytes.fromhex(cid_hex) if cid_hex else None)


def restore_phone(req: RestoreRequest, on_progress: ProgressCallback | None = None
                  ) -> RestoreResult:
    """Write a backup set back to the phone it came from and verify it by readback."""
    rep = Reporter(on_progress)
    if req.dry_run and req.port is None:
        bset = find_set(req.set_ref, None)
        bset.verify()
        return RestoreResult(set_name=bset.name, dry_run=True, cid=bset.manifest.cid,
                             ranges=[_from_entry(e) for e in bset.manifest.entries])
    dev, fw = _connect(req, rep)
    try:
        bset = find_set(req.set_ref, dev.cid)
        bset.verify()
        if bset.manifest.cid != dev.cid.hex():
            raise ValidationError(
                f"backup set {bset.name} belongs to phone {bset.manifest.cid}, this phone is "
                f"{dev.cid.hex()}",
                hint="restore a phone's own calibration only (IMEI and RF calibration are "
                     "per unit); list this phone's sets with `romkit restore --list`")
        places = {r.name.upper(): r for r in _phone_layout(dev, fw, rep)}
        plan: list[tuple[RangeResult, Path]] = []
        for e in bset.manifest.entries:
            target = places.get(e.name.upper())
            offset = target.offset if target is not None else e.offset
            if target is not None and target.length < e.length:
                raise ValidationError(
                    f"{e.name} on the phone ({target.length} bytes) is smaller than its backup "
                    f"({e.length} bytes)",
                    hint="flash the firmware whose layout the backup was taken with first")
            if target is not None and target.offset != e.offset:
                rep.warning(f"{e.name} moved since the backup (0x{e.offset:X} → "
                            f"0x{offset:X}); restoring at its current place")
            plan.append((RangeResult(name=e.name, region=e.region, offset=offset,
                                     length=e.length, sha256=e.sha256, file=e.file),
                         bset.file_of(e)))
        result = RestoreResult(set_name=bset.name, dry_run=req.dry_run, cid=dev.cid.hex(),
                               ranges=[r for r, _ in plan])
        if not req.dry_run:
            rio = RangeIO(dev, req.packet_size)
            total = sum(r.length for r, _ in plan)
            rep.start("restore", f"restore {bset.name}", total)
            base = 0
            for rng, path in plan:
                _restore_one(rio, rng, path, rep, base, total)
                base += rng.length
                result.verified.append(rng.name)
            rep.end("restore", f"restored and verified {len(plan)} partitions")
        dev.session.finish(P.FINISH_NORMAL)
    finally:
        dev.close()
    return result


def _restore_one(rio: RangeIO, rng: RangeResult, path: Path, rep: Reporter, base: int,
                 total: int) -> None:
    data = path.read_bytes()
    rio.write(rng.region, rng.offset, io.BytesIO(data), len(data),
              _offset_updates(rep, "restore", base, total))
    back = DigestSink()
    rio.read(StorageRange(name=rng.name, region=rng.region, offset=rng.offset,
                          length=rng.length), back)
    if back.sha256 != rng.sha256:
        raise StorageError(f"{rng.name} reads back different from its backup after restore",
                           hint="try another USB cable or port and run `romkit restore` again",
                           spft_code=4008, details={"partition": rng.name})
    rep.info(f"restored {rng.name}: verified sha256 {rng.sha256[:16]}…")


def _offset_updates(rep: Reporter, task: str, base: int, total: int) -> Callable[[int], None]:
    """Per-range cumulative bytes → one task's progress over several ranges."""
    def cb(done: int) -> None:
        rep.update(task, base + done, total)
    return cb


# -- readback --------------------------------------------------------------------------------
def readback(req: ReadbackRequest, on_progress: ProgressCallback | None = None
             ) -> ReadbackResult:
    """Dump partitions to OUT_DIR/<NAME>.bin (atomic files, sha256 of each)."""
    rep = Reporter(on_progress)
    if not req.all and not req.names:
        raise UsageError("name the partitions to read back, or pass --all",
                         hint="e.g. `romkit readback NVRAM ./dump` or `romkit readback --all "
                              "./dump`")
    dev, fw = _connect(req, rep)
    try:
        layout = _phone_layout(dev, fw, rep)
        if req.all:
            chosen = layout
        else:
            by = {r.name.upper(): r for r in layout}
            wanted = [n.strip() for raw in req.names for n in raw.split(",") if n.strip()]
            unknown = [n for n in wanted if n.upper() not in by]
            if unknown:
                raise UsageError(f"not on this phone: {', '.join(unknown)}",
                                 hint="known: " + ", ".join(r.name for r in layout))
            chosen = [by[n.upper()] for n in wanted]
        rio = RangeIO(dev, req.packet_size)
        total = sum(r.length for r in chosen)
        rep.start("readback", f"read back {len(chosen)} partition(s)", total)
        results: list[RangeResult] = []
        base = 0
        for rng in chosen:
            dest = req.out_dir / f"{rng.name}.bin"
            with atomic_open(dest, "wb") as fh:
                sink = DigestSink(fh)
                rio.read(rng, sink, _offset_updates(rep, "readback", base, total))
            base += rng.length
            results.append(RangeResult(name=rng.name, region=rng.region, offset=rng.offset,
                                       length=rng.length, sha256=sink.sha256, file=str(dest)))
            rep.info(f"{rng.name}: {rng.length} bytes, sha256 {sink.sha256}")
        rep.end("readback")
        dev.session.finish(P.FINISH_NORMAL)
    finally:
        dev.close()
    return ReadbackResult(out_dir=str(req.out_dir), cid=dev.cid.hex(), ranges=results)
