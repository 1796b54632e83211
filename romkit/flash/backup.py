"""Calibration backup store: the IMEI-bearing partitions, kept safe before anything is written.

Forum bricks that cost an IMEI almost always come from a format that ran before anyone saved
NVRAM / PROTECT_F / PROTECT_S / PRO_INFO. romkit reads them (and SECCFG) into
`data_dir()/backups/<cid-hex>/<timestamp>/` before the first write of every run. Each file is
written atomically and hashed while it streams; `manifest.json` is written last, so a set is
complete exactly when its manifest exists — an interrupted backup never looks usable.

This module knows nothing about the wire: it is handed a `RangeReader` (the engine wraps the
DA session in one), which keeps it testable on plain files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError

from romkit import paths
from romkit.errors import IntegrityError, UsageError
from romkit.flash.streams import DigestSink, Sink, digest_file
from romkit.fsutil import atomic_open, atomic_write_text
from romkit.progress import Reporter

MANIFEST = "manifest.json"
FORMAT_VERSION = 1

# The partitions whose loss costs the user their IMEI or calibration, in backup order.
CALIBRATION_PARTS: tuple[str, ...] = ("NVRAM", "PROTECT_F", "PROTECT_S", "PRO_INFO", "SECCFG")


class StorageRange(BaseModel):
    """A named byte range on the phone: region (EMMC_BOOT_1 / EMMC_USER), offset, length."""

    name: str
    region: str
    offset: int = Field(ge=0)
    length: int = Field(ge=0)


class BackupEntry(StorageRange):
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    sum16: int = Field(ge=0, le=0xFFFF)


class BackupManifest(BaseModel):
    format: int = FORMAT_VERSION
    cid: str = Field(pattern=r"^[0-9a-f]{32}$")
    hw_code: int | None = None
    created: str
    reason: str = ""
    entries: list[BackupEntry]


class BackupSet(BaseModel):
    """A complete backup set on disk (its manifest exists)."""

    path: Path
    manifest: BackupManifest

    @property
    def name(self) -> str:
        """`<cid-hex>/<timestamp>`: what `romkit restore SET` accepts."""
        return f"{self.path.parent.name}/{self.path.name}"

    def entry(self, name: str) -> BackupEntry | None:
        return next((e for e in self.manifest.entries if e.name == name), None)

    def file_of(self, entry: BackupEntry) -> Path:
        return self.path / entry.file

    def verify(self) -> None:
        """Re-hash every file; a damaged set must never be written back to a phone."""
        for entry in self.manifest.entries:
            f = self.file_of(entry)
            if not f.is_file():
                raise IntegrityError(
                    f"backup set {self.name} is missing {entry.file}",
                    hint="use another backup set (`romkit restore --list`) or take a new one",
                )
            sha, _sum, length = digest_file(f)
            if sha != entry.sha256 or length != entry.length:
                raise IntegrityError(
                    f"backup set {self.name}: {entry.file} does not match its manifest sha256",
                    hint="the file was changed or damaged; use another backup set",
                )


class RangeReader(Protocol):
    """Reads `length` bytes of `region` at `offset` into `sink`, reporting bytes done."""

    def __call__(self, rng: StorageRange, sink: Sink,
                 on_bytes: Callable[[int], None] | None = None) -> None: ...


def backups_root() -> Path:
    return paths.data_dir() / "backups"


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S_%fZ")


def _new_set_dir(cid: bytes) -> Path:
    parent = paths.ensure_dir(backups_root() / cid.hex())
    base = _timestamp()
    candidate = parent / base
    n = 1
    while candidate.exists():
        candidate = parent / f"{base}-{n}"
        n += 1
    candidate.mkdir()
    return candidate


def take_backup(
    cid: bytes,
    ranges: list[StorageRange],
    reader: RangeReader,
    *,
    hw_code: int | None = None,
    reason: str = "",
    on_progress: Reporter | None = None,
) -> BackupSet:
    """Read `ranges` from the phone into a new backup set and seal it with its manifest."""
    rep = on_progress or Reporter()
    if len(cid) != 16:
        raise UsageError(f"a backup needs the phone's 16-byte eMMC CID, got {len(cid)} bytes",
                         hint="reconnect the phone; the DA reports the CID when it starts")
    set_dir = _new_set_dir(cid)
    total = sum(r.length for r in ranges)
    rep.start("backup", f"backup calibration -> {set_dir}", total)
    done_before = 0
    entries: list[BackupEntry] = []
    for rng in ranges:
        fname = f"{rng.name}.bin"
        with atomic_open(set_dir / fname, "wb") as fh:
            sink = DigestSink(fh)
            base = done_before

            def report(done: int, base: int = base) -> None:
                rep.update("backup", base + done, total)

            reader(rng, sink, report)
        if sink.length != rng.length:
            raise IntegrityError(
                f"backup of {rng.name} returned {sink.length} bytes, expected {rng.length}",
                hint="reconnect the phone and run the backup again",
            )
        done_before += rng.length
        entries.append(BackupEntry(**rng.model_dump(), file=fname, sha256=sink.sha256,
                                   sum16=sink.sum16))
    manifest = BackupManifest(cid=cid.hex(), hw_code=hw_code,
                              created=datetime.now(UTC).isoformat(timespec="seconds"),
                              reason=reason, entries=entries)
    atomic_write_text(set_dir / MANIFEST, manifest.model_dump_json(indent=2))
    rep.end("backup", f"calibration backup complete: {set_dir}")
    return BackupSet(path=set_dir, manifest=manifest)


def parse_manifest(text: str | bytes, where: str = "manifest") -> BackupManifest:
    """Parse a manifest; anything malformed is an IntegrityError (never a raw exception)."""
    try:
        data = json.loads(text)
        manifest = BackupManifest.model_validate(data)
    except (ValueError, TypeError, RecursionError, PydanticValidationError) as exc:
        raise IntegrityError(f"backup manifest {where} is malformed",
                             hint="use another backup set or take a new backup") from exc
    if manifest.format != FORMAT_VERSION:
        raise IntegrityError(f"backup manifest {where} has unknown format {manifest.format}",
                             hint="restore it with the romkit version that wrote it")
    for e in manifest.entries:
        if "/" in e.file or "\\" in e.file or e.file in ("", ".", ".."):
            raise IntegrityError(f"backup manifest {where} names an unsafe file {e.file!r}",
                                 hint="use another backup set or take a new backup")
    return manifest


def load_set(path: Path) -> BackupSet:
    mpath = path / MANIFEST
    try:
        text = mpath.read_bytes()
    except OSError as exc:
        raise IntegrityError(f"{path} is not a complete backup set (no {MANIFEST})",
                             hint="an interrupted backup leaves no manifest; use another set"
                             ) from exc
    return BackupSet(path=path, manifest=parse_manifest(text, str(mpath)))


def list_sets(cid: bytes | None = None) -> list[BackupSet]:
    """Complete backup sets, newest first (all phones, or the one with `cid`)."""
    root = backups_root()
    if not root.is_dir():
        return []
    dirs = [root / cid.hex()] if cid is not None else sorted(p for p in root.iterdir()
                                                              if p.is_dir())
    sets: list[BackupSet] = []
    for d in dirs:
        if not d.is_dir():
            continue
        for s in d.iterdir():
            if (s / MANIFEST).is_file():
                try:
                    sets.append(load_set(s))
                except IntegrityError:
                    continue
    sets.sort(key=lambda s: (s.manifest.created, s.path.name), reverse=True)
    return sets


def find_set(ref: str | None, cid: bytes | None) -> BackupSet:
    """Resolve what the user named: a path, `<cid>/<timestamp>`, a timestamp, or the newest."""
    if ref:
        as_path = Path(ref).expanduser()
        candidates = [as_path, backups_root() / ref]
        if cid is not None:
            candidates.append(backups_root() / cid.hex() / ref)
        for c in candidates:
            if (c / MANIFEST).is_file():
                return load_set(c)
        raise UsageError(f"no complete backup set named {ref!r}",
                         hint="list sets with `romkit restore --list`")
    sets = list_sets(cid)
    if not sets:
        who = f"phone {cid.hex()}" if cid is not None else "any phone"
        raise UsageError(f"no calibration backup found for {who}",
                         hint="take one with `romkit backup` (flash takes one automatically)")
    return sets[0]
