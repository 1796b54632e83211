"""Calibration backup store: the IMEI-bearing partitions, kept safe before anything is written.

Forum bricks that cost an IMEI almost always come from a format that ran before anyone saved
NVRAM / PROTECT_F / PROTECT_S / PRO_INFO. romkit reads them (and SECCFG) into
`data_dir()/backups/<cid-hex>/<timestamp>/` before the first write of every run. Each file is
written atomically and hashed while it streams; `manifest.json` is written last, so a set is
complete exactly when its manifest exists — an interrupted backup never looks usable.

A set also records its own truth, because the newest set is not always the right one: a
backup read *after* a format (an interrupted firmware upgrade, a format-all) holds erased
calibration, and restoring it would make the IMEI loss permanent. Each manifest says when the
set was taken (`when`) and which partitions read back blank (only 0x00 / 0xFF bytes); the
default restore source is the newest *good* set — calibration not blank, not taken after a
format. Sets are never deleted automatically; `romkit backup --prune` applies the retention
rule of `prune_sets` when asked.

This module knows nothing about the wire: it is handed a `RangeReader` (the engine wraps the
DA session in one), which keeps it testable on plain files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError

from romkit import paths
from romkit.errors import DiskError, IntegrityError, UsageError
from romkit.flash.streams import CHUNK, DigestSink, Sink, digest_file, is_erased
from romkit.fsutil import atomic_open, atomic_write_text
from romkit.progress import Reporter

MANIFEST = "manifest.json"
FORMAT_VERSION = 1

# The partitions whose loss costs the user their IMEI or calibration, in backup order.
CALIBRATION_PARTS: tuple[str, ...] = ("NVRAM", "PROTECT_F", "PROTECT_S", "PRO_INFO", "SECCFG")

# When a set was taken, relative to the phone's history (see module doc):
#   before-format  `flash` in a format mode, before its first format: the phone's own data
#   before-write   `flash --mode download-only`, before its first write
#   manual         `romkit backup` with no unfinished flash of this phone
#   unfinished-run `romkit backup` while a flash of this phone is unfinished but has not
#                  erased calibration yet (still the phone's own data)
#   after-format   read while a journal says an unfinished run had erased calibration:
#                  never a default restore source, whatever it holds
#   unknown        a manifest written before sets carried this field
When = Literal["before-format", "before-write", "manual", "unfinished-run", "after-format",
               "unknown"]

# ext4 superblock magic 0xEF53 at byte 0x438 (superblock at 1024, s_magic at +0x38): the
# PROTECT_F/S partitions of MT65xx phones are small ext4 volumes (reference
# spft-formats.md "IMEI and calibration"). Recorded as a structure note, not used to call a
# partition blank: blank means erased bytes only.
EXT4_MAGIC_AT = 0x438
EXT4_MAGIC = b"\x53\xef"


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
    blank: bool | None = None  # only 0x00/0xFF bytes; None: older manifest, computed on load
    structure: str | None = None  # e.g. "ext4" when a known structure was recognised


class BackupManifest(BaseModel):
    format: int = FORMAT_VERSION
    cid: str = Field(pattern=r"^[0-9a-f]{32}$")
    hw_code: int | None = None
    created: str
    reason: str = ""
    when: When = "unknown"
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

    @property
    def blank_parts(self) -> list[str]:
        return [e.name for e in self.manifest.entries if e.blank]

    @property
    def calibration_blank(self) -> bool:
        """NVRAM (where the IMEI lives) read back erased — or, in a set without NVRAM,
        every partition did. Such a set cannot bring an IMEI back."""
        nvram = next((e for e in self.manifest.entries if e.name.upper() == "NVRAM"), None)
        if nvram is not None:
            return bool(nvram.blank)
        return all(e.blank for e in self.manifest.entries)

    @property
    def verdict(self) -> str:
        """"good", "blank" or "after-format": what `restore --list` shows."""
        if self.calibration_blank:
            return "blank"
        if self.manifest.when == "after-format":
            return "after-format"
        return "good"

    @property
    def good(self) -> bool:
        """A set `restore` may pick by itself."""
        return self.verdict == "good"

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
    when: When = "manual",
    on_progress: Reporter | None = None,
) -> BackupSet:
    """Read `ranges` from the phone into a new backup set and seal it with its manifest.

    A set whose calibration reads blank is still written (it is the truth about the phone
    at that moment) but marked, and a loud warning names the newest good set instead."""
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
        # 0600: calibration holds the phone's IMEI; other users of the computer need not read it
        with atomic_open(set_dir / fname, "wb", perms=0o600) as fh:
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
                                   sum16=sink.sum16, blank=sink.erased_only,
                                   structure=_structure(set_dir / fname)))
    manifest = BackupManifest(cid=cid.hex(), hw_code=hw_code,
                              created=datetime.now(UTC).isoformat(timespec="seconds"),
                              reason=reason, when=when, entries=entries)
    atomic_write_text(set_dir / MANIFEST, manifest.model_dump_json(indent=2))
    # no end line here: the caller says it once (flash: "calibration saved: …", backup: its
    # result), with the set's name; a second line would repeat the same fact
    rep.end("backup", path=str(set_dir))
    bset = BackupSet(path=set_dir, manifest=manifest)
    if bset.calibration_blank:
        good = good_set(cid)
        rep.warning(
            f"BLANK CALIBRATION: {', '.join(bset.blank_parts)} read back as erased bytes only "
            f"— backup set {bset.name} holds no IMEI and will never be restored by default; "
            + (f"the newest good set of this phone is {good.name}" if good is not None else
               "no good backup set of this phone exists on this computer"))
    return bset


def _structure(path: Path) -> str | None:
    """A recognisable structure at the start of a backed-up partition (informational)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(EXT4_MAGIC_AT + 2)
    except OSError:
        return None
    if head[EXT4_MAGIC_AT:EXT4_MAGIC_AT + 2] == EXT4_MAGIC:
        return "ext4"
    return None


def _file_erased(path: Path) -> bool:
    """Blank check of a stored file (for manifests written before the `blank` field)."""
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                if not is_erased(chunk):
                    return False
    except OSError:
        return False
    return True


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
    manifest = parse_manifest(text, str(mpath))
    for e in manifest.entries:
        if e.blank is None:
            e.blank = _file_erased(path / e.file)
    return BackupSet(path=path, manifest=manifest)


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


def good_set(cid: bytes | None) -> BackupSet | None:
    """The newest good set (of the phone with `cid`, or of any phone), or None."""
    return next((s for s in list_sets(cid) if s.good), None)


def require_set(ref: str | None) -> None:
    """Refuse, before any phone is touched, a restore that cannot find its set anyway: a named
    set no phone's folder holds, or no set at all. Which phone's set is the right one is
    decided after connecting (`find_set` with the phone's CID)."""
    if ref:
        root = backups_root()
        candidates = [Path(ref).expanduser(), root / ref]
        if root.is_dir():
            candidates += [d / ref for d in root.iterdir() if d.is_dir()]
        if not any((c / MANIFEST).is_file() for c in candidates):
            raise UsageError(f"no complete backup set named {ref!r}",
                             hint="list sets with `romkit restore --list`; nothing was sent "
                                  "to the phone")
    elif not list_sets(None):
        raise UsageError("no calibration backup found on this computer",
                         hint="take one with `romkit backup` (flash takes one automatically)")


def find_set(ref: str | None, cid: bytes | None) -> BackupSet:
    """Resolve what the user named: a path, `<cid>/<timestamp>`, a timestamp, or — when
    nothing is named — the newest *good* set (never a blank or after-format one)."""
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
    who = f"phone {cid.hex()}" if cid is not None else "any phone"
    if not sets:
        raise UsageError(f"no calibration backup found for {who}",
                         hint="take one with `romkit backup` (flash takes one automatically)")
    good = next((s for s in sets if s.good), None)
    if good is None:
        raise UsageError(
            f"no good calibration backup for {who}: all {len(sets)} set(s) hold blank "
            "calibration or were read after a format",
            hint="see `romkit restore --list`; name a set explicitly (`romkit restore SET`) "
                 "only if you know it holds this phone's calibration")
    return good


# -- retention -------------------------------------------------------------------------------
DEFAULT_KEEP = 3


class PruneEntry(BaseModel):
    """One set and what retention decided for it (`reason` says why it stays)."""

    name: str
    path: Path
    cid: str
    created: str
    verdict: str
    size: int
    keep: bool
    reason: str = ""


class PruneResult(BaseModel):
    keep_newest: int
    dry_run: bool
    sets: list[PruneEntry] = Field(default_factory=list)  # every set, newest first per phone
    skipped_phones: list[str] = Field(default_factory=list)  # busy (being flashed): untouched

    @property
    def deleted(self) -> list[PruneEntry]:
        return [e for e in self.sets if not e.keep]

    @property
    def freed(self) -> int:
        return sum(e.size for e in self.deleted)


def set_size(path: Path) -> int:
    """Bytes the set's files take (what pruning it frees)."""
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def retention(sets: list[BackupSet], keep: int, in_use: set[Path]) -> dict[Path, str]:
    """Which of one phone's sets (newest first) stay, and why.

    Kept: the newest `keep`; the first (oldest) good set — the phone's calibration as it came
    in, before anyone's flash; the newest good set — what `romkit restore` picks by default,
    so pruning never changes what a restore writes and never deletes the only good set; and
    any set a run journal still names (an interrupted flash restores from it)."""
    reasons: dict[Path, str] = {}
    for s in sets[:keep]:
        reasons[s.path] = f"newest {keep}"
    good = [s for s in sets if s.good]
    if good:
        reasons.setdefault(good[-1].path, "first good set")
        reasons.setdefault(good[0].path, "newest good set (restore's default)")
    for s in sets:
        if s.path.resolve() in in_use:
            reasons.setdefault(s.path, "named by an unfinished flash")
    return reasons


def _remove_set(path: Path) -> None:
    try:
        (path / MANIFEST).unlink()  # first: from here on it is no longer a complete set
        shutil.rmtree(path)
    except OSError as exc:
        raise DiskError(f"cannot delete backup set {path}: {exc.strerror or exc}",
                        hint="check the folder's permissions; nothing else was changed by "
                             "this set's removal") from exc


def prune_sets(keep: int = DEFAULT_KEEP, *, dry_run: bool = False,
               on_progress: Reporter | None = None) -> PruneResult:
    """Apply the retention rule to every phone's sets (see `retention`).

    A set is removed manifest first, so a crash half-way leaves a folder that is never taken
    for a complete set. A phone being flashed right now (its write lock held) is skipped.
    Folders without a manifest (interrupted backups) and unreadable manifests are left alone:
    they are not sets, and a person should look at them.
    """
    from romkit.flash import journal as jr
    from romkit.locks import PhoneBusyError, phone_lock

    rep = on_progress or Reporter()
    if keep < 1:
        raise UsageError(f"--keep must be at least 1, got {keep}",
                         hint="the newest set is always kept: use --keep 1 or more")
    result = PruneResult(keep_newest=keep, dry_run=dry_run)
    by_phone: dict[str, list[BackupSet]] = {}
    for s in list_sets(None):
        by_phone.setdefault(s.manifest.cid, []).append(s)
    for cid, sets in sorted(by_phone.items()):
        journal = jr.load_journal(bytes.fromhex(cid)) if len(cid) == 32 else None
        in_use = ({Path(journal.backup_set).resolve()} if journal is not None
                  and journal.backup_set else set())
        reasons = retention(sets, keep, in_use)
        entries = [PruneEntry(name=s.name, path=s.path, cid=cid, created=s.manifest.created,
                              verdict=s.verdict, size=set_size(s.path),
                              keep=s.path in reasons, reason=reasons.get(s.path, ""))
                   for s in sets]
        if not dry_run and any(not e.keep for e in entries):
            try:
                with phone_lock(cid, "prune backups"):
                    for e in entries:
                        if not e.keep:
                            _remove_set(e.path)
            except PhoneBusyError as exc:  # being flashed: its sets are not ours to touch now
                rep.warning(f"phone {cid}: {exc.message}; its sets were left as they are")
                result.skipped_phones.append(cid)
                for e in entries:
                    e.keep, e.reason = True, e.reason or "phone busy"
        result.sets += entries
    return result
