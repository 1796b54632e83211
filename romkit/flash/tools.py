"""On-demand phone operations besides flashing: calibration backup, restore, and readback.

They share the flash engine's bring-up (DA + the preloader's EMI table) and its rules: every
byte read from the phone is hashed as it streams to an atomic file, and every byte written back
is proved by reading it again. `restore` writes a partition only where the phone's current
layout has it, at the offset the backup recorded, unless the user explicitly allows a
mismatch: a backup offset that now belongs to another partition would overwrite it.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from romkit.device import protocol as P
from romkit.device.connect import Device
from romkit.errors import DiskError, StorageError, UsageError, ValidationError
from romkit.firmware.package import Firmware
from romkit.firmware.scatter import REGION_BOOT1, REGION_USER
from romkit.flash import journal as jr
from romkit.flash.backup import (
    CALIBRATION_PARTS,
    BackupEntry,
    BackupSet,
    StorageRange,
    When,
    find_set,
    list_sets,
    require_set,
    take_backup,
)
from romkit.flash.interrupt import Interrupted
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
    set_ref: str | None = None  # path, <cid>/<timestamp>, timestamp; None = newest good set
    dry_run: bool = False
    # restore a partition the phone's layout moved at its current place, and one it no
    # longer has at the offset recorded in the backup (overwriting whatever lives there)
    allow_layout_mismatch: bool = False


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
    when: str = "manual"
    verdict: str = "good"  # good | blank | after-format (see backup.BackupSet.verdict)
    blank: list[str] = Field(default_factory=list)


class RestoreResult(BaseModel):
    set_name: str
    dry_run: bool
    cid: str | None
    ranges: list[RangeResult]
    verified: list[str] = Field(default_factory=list)
    verdict: str = "good"


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


def _interruptible_connect(req: PhoneRequest, rep: Reporter) -> tuple[Device, Firmware | None]:
    try:
        return _connect(req, rep)
    except KeyboardInterrupt:
        raise Interrupted("stopped while connecting to the phone; nothing was read or "
                          "written") from None


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
    dev, fw = _interruptible_connect(req, rep)
    try:
        ranges = _calibration(_phone_layout(dev, fw, rep))
        if not ranges:
            raise StorageError("no calibration partitions (NVRAM, PROTECT_F, …) found",
                               hint="check that this is an MT6589 phone with a partition table")
        prev = jr.load_journal(dev.cid)
        when: When = ("manual" if prev is None else
                      "after-format" if prev.calibration_erased else "unfinished-run")
        if when == "after-format":
            rep.warning("an unfinished romkit flash of this phone erased its calibration: "
                        "this backup is marked after-format and is never restored by default")
        rio = RangeIO(dev, req.packet_size)
        try:
            bset = take_backup(dev.cid, ranges, rio.backup_reader(), hw_code=dev.hw_code,
                               reason="romkit backup", when=when, on_progress=rep)
        except KeyboardInterrupt:
            raise Interrupted("stopped while reading the calibration backup; only read from "
                              "the phone, no backup set was completed (its folder without "
                              "manifest is never used)") from None
        dev.session.finish(P.FINISH_NORMAL)
    finally:
        dev.close()
    return BackupResult(set_name=bset.name, path=str(bset.path), cid=dev.cid.hex(),
                        ranges=[_from_entry(e) for e in bset.manifest.entries],
                        when=bset.manifest.when, verdict=bset.verdict,
                        blank=bset.blank_parts)


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
        _warn_not_good(bset, rep)
        return RestoreResult(set_name=bset.name, dry_run=True, cid=bset.manifest.cid,
                             ranges=[_from_entry(e) for e in bset.manifest.entries],
                             verdict=bset.verdict)
    require_set(req.set_ref)  # a mistyped set fails here, before the phone's DRAM comes up
    dev, fw = _interruptible_connect(req, rep)
    try:
        bset = find_set(req.set_ref, dev.cid)
        bset.verify()
        _warn_not_good(bset, rep)
        if bset.manifest.cid != dev.cid.hex():
            raise ValidationError(
                f"backup set {bset.name} belongs to phone {bset.manifest.cid}, this phone is "
                f"{dev.cid.hex()}",
                hint="restore a phone's own calibration only (IMEI and RF calibration are "
                     "per unit); list this phone's sets with `romkit restore --list`")
        plan = _restore_places(bset, _phone_layout(dev, fw, rep), req.allow_layout_mismatch,
                               rep)
        result = RestoreResult(set_name=bset.name, dry_run=req.dry_run, cid=dev.cid.hex(),
                               ranges=[r for r, _ in plan], verdict=bset.verdict)
        if not req.dry_run:
            rio = RangeIO(dev, req.packet_size)
            total = sum(r.length for r, _ in plan)
            rep.start("restore", f"restore {bset.name}", total)
            base = 0
            for rng, path in plan:
                try:
                    _restore_one(rio, rng, path, rep, base, total)
                except KeyboardInterrupt:
                    raise Interrupted(
                        f"stopped while restoring {rng.name} ({rng.region} 0x{rng.offset:X}): "
                        f"it may be half written on the phone; restored and verified so far: "
                        f"{', '.join(result.verified) or 'none'}; backup set kept: "
                        f"{bset.path}", set_name=bset.name) from None
                base += rng.length
                result.verified.append(rng.name)
            rep.end("restore", f"restored and verified {len(plan)} partitions")
        dev.session.finish(P.FINISH_NORMAL)
    except KeyboardInterrupt as exc:
        if isinstance(exc, Interrupted):
            raise
        raise Interrupted("stopped before the restore wrote anything", set_name=req.set_ref
                          ) from None
    finally:
        dev.close()
    return result


def _warn_not_good(bset: BackupSet, rep: Reporter) -> None:
    if not bset.good:
        rep.warning(f"backup set {bset.name} is marked {bset.verdict.upper()} "
                    f"({', '.join(bset.blank_parts) or 'taken after a format'}): restoring it "
                    "does not bring an IMEI back")


def _restore_places(bset: BackupSet, layout: list[StorageRange], allow_mismatch: bool,
                    rep: Reporter) -> list[tuple[RangeResult, Path]]:
    """Where each backed-up partition goes: its place in the phone's *current* layout.

    A partition the layout no longer has, or has at another offset or region, is refused
    unless `allow_mismatch`: the recorded offset may now belong to another partition.
    """
    places = {r.name.upper(): r for r in layout}
    plan: list[tuple[RangeResult, Path]] = []
    problems: list[str] = []
    for e in bset.manifest.entries:
        target = places.get(e.name.upper())
        if target is None:
            if not allow_mismatch:
                problems.append(f"{e.name} is not in the phone's current partition layout")
                continue
            rep.warning(f"{e.name} is not in the phone's layout; writing it at its backup "
                        f"offset {e.region} 0x{e.offset:X} as --allow-layout-mismatch asks")
            region, offset = e.region, e.offset
        else:
            region, offset = target.region, target.offset
            if (region, offset) != (e.region, e.offset):
                if not allow_mismatch:
                    problems.append(f"{e.name} moved since the backup ({e.region} "
                                    f"0x{e.offset:X} → {region} 0x{offset:X})")
                    continue
                rep.warning(f"{e.name} moved since the backup (0x{e.offset:X} → "
                            f"0x{offset:X}); restoring at its current place")
            if target.length < e.length:
                raise ValidationError(
                    f"{e.name} on the phone ({target.length} bytes) is smaller than its backup "
                    f"({e.length} bytes)",
                    hint="flash the firmware whose layout the backup was taken with first")
        plan.append((RangeResult(name=e.name, region=region, offset=offset, length=e.length,
                                 sha256=e.sha256, file=e.file), bset.file_of(e)))
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValidationError(
            f"the phone's layout does not match backup set {bset.name}: {problems[0]}{more}; "
            "nothing was written",
            hint="flash the firmware the backup was taken with (its scatter), then restore; "
                 "or, if you are sure, pass --allow-layout-mismatch (moved partitions go to "
                 "their current place, missing ones to the backup's offset)",
            findings=problems)
    return plan


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
def _check_space(out_dir: Path, needed: int, count: int) -> None:
    """Refuse a dump that cannot fit before the first read: `--all` is ~3.7 GB on an S820,
    and running out of space after an hour of reading helps nobody. The sizes come from the
    phone's own partition table, so this runs after connecting and before reading."""
    probe = out_dir.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return  # cannot tell (exotic file system): the atomic writes still fail cleanly
    if needed > free:
        raise DiskError(
            f"not enough space in {out_dir}: {count} partition(s) need {needed} bytes "
            f"({needed / 2**30:.2f} GiB), {free} bytes ({free / 2**30:.2f} GiB) are free; "
            "nothing was read",
            hint="free space or choose another OUT_DIR (or read fewer partitions: "
                 "`romkit readback NAME,NAME OUT_DIR`)",
            details={"needed": needed, "free": free, "out_dir": str(out_dir)})



def readback(req: ReadbackRequest, on_progress: ProgressCallback | None = None
             ) -> ReadbackResult:
    """Dump partitions to OUT_DIR/<NAME>.bin (atomic files, sha256 of each)."""
    rep = Reporter(on_progress)
    if not req.all and not req.names:
        raise UsageError("name the partitions to read back, or pass --all",
                         hint="e.g. `romkit readback NVRAM ./dump` or `romkit readback --all "
                              "./dump`")
    dev, fw = _interruptible_connect(req, rep)
    results: list[RangeResult] = []
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
        total = sum(r.length for r in chosen)
        _check_space(req.out_dir, total, len(chosen))
        rio = RangeIO(dev, req.packet_size)
        rep.start("readback", f"read back {len(chosen)} partition(s)", total)
        base = 0
        for rng in chosen:
            dest = req.out_dir / f"{rng.name}.bin"
            try:
                with atomic_open(dest, "wb") as fh:
                    sink = DigestSink(fh)
                    rio.read(rng, sink, _offset_updates(rep, "readback", base, total))
            except KeyboardInterrupt:
                done = ", ".join(r.name for r in results) or "none"
                raise Interrupted(f"stopped while reading {rng.name} (only read from the "
                                  f"phone; no partial {dest.name} is left); complete in "
                                  f"{req.out_dir}: {done}") from None
            base += rng.length
            results.append(RangeResult(name=rng.name, region=rng.region, offset=rng.offset,
                                       length=rng.length, sha256=sink.sha256, file=str(dest)))
            rep.info(f"{rng.name}: {rng.length} bytes, sha256 {sink.sha256}")
        rep.end("readback")
        dev.session.finish(P.FINISH_NORMAL)
    finally:
        dev.close()
    return ReadbackResult(out_dir=str(req.out_dir), cid=dev.cid.hex(), ranges=results)
