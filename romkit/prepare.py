"""`romkit prepare`: the forum's hand edits to a firmware folder as one safe, reversible plan.

What people do by hand - "put the 2014 preloader in the ROM folder and delete checksum.ini",
"rename modem.img to modem_1_3g_n.img" - is easy to get subtly wrong (wrong chip's
preloader, half-renamed modem set, a checksum.ini that no longer matches) and impossible to
take back. Here every change is first a `PreparePlan` of steps (which file, from which bytes
to which, why), shown by `--dry-run`. Applying it:

1. checks the folder still is what the plan saw (hashes),
2. copies every file it will replace or remove into a prepare record
   `<DIR>/.romkit/prepare/<timestamp>/files/`,
3. writes the record's `manifest.json` (sha256 of everything before and after) last and
   atomically, so a record without a manifest is incomplete and ignored,
4. changes the files, each through `romkit.fsutil` (temp file + rename); if one step fails,
   the steps already done are put back and the record is dropped,
5. validates the folder (`Firmware.validate()`).

`undo_last` restores the newest record byte for byte (checked by hash) and marks it undone.
A plan whose files already hold the wanted bytes is empty, so preparing twice is a no-op.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Literal

import py7zr
import pydantic
from py7zr.io import BytesIOFactory
from pydantic import BaseModel, Field, PrivateAttr, computed_field, model_validator

from romkit.catalog import Build, Catalog, Device
from romkit.errors import (
    EXIT_REFUSED,
    ArchiveError,
    CatalogError,
    DiskError,
    FirmwareFormatError,
    RomkitError,
    UsageError,
    ValidationError,
)
from romkit.fetch import archive
from romkit.firmware import checksum as ck
from romkit.firmware import modem as md
from romkit.firmware.package import PLATFORM_EMI_VERSION, Firmware, ValidationReport
from romkit.firmware.preloader import (
    EMMC_BOOT_MAGIC,
    GFH_MAGIC,
    MAX_PRELOADER_FILE,
    EmiEntry,
    PreloaderInfo,
    compare_preloaders,
    from_boot1_image,
    parse_preloader,
    read_limited,
)
from romkit.fsutil import atomic_copy, atomic_write_bytes, atomic_write_text, sha256_file
from romkit.progress import ProgressCallback, Reporter
from romkit.workspace import recorded_build, resolve_firmware_dir

RECORD_DIR = ".romkit/prepare"
MANIFEST = "manifest.json"
MANIFEST_FORMAT: Literal["romkit-prepare-record"] = "romkit-prepare-record"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MODEM_DIR = "modem"
MODEM_README = "README.txt"
SEARCH_CHUNK = 16 * 1024 * 1024
_KITKAT_MARKER = b"modem_1_3g_n.img"
_PROP_FILES = ("build_info.txt", "build.prop", "system/build.prop")
_LISTING_FILES = ("installed-files.txt",)
_CHIP_RE = re.compile(r"MT\d{4}", re.IGNORECASE)

StepKind = Literal["preloader", "checksum", "modem", "readme"]
Action = Literal["create", "replace", "remove"]


class PrepareConflictError(RomkitError):
    """The folder (or a source file) changed between planning and doing, or since a record."""

    exit_code = EXIT_REFUSED
    default_hint = "run `romkit prepare` again so the plan matches the folder as it is now"


# ---------------------------------------------------------------------------------------------
# models


class PrepareRequest(BaseModel):
    """Everything `romkit prepare` was asked to do."""

    folder: Path | None = None
    device_year: Literal[2013, 2014] | None = None
    preloader: Path | None = None
    modem: Path | None = None
    modem_naming: Literal["auto", "plain", "1_3g_n"] = "auto"
    drop_checksum: bool = False
    dry_run: bool = False
    undo: bool = False
    build: str | None = None
    device: str | None = None

    @classmethod
    def from_options(cls, **options: object) -> PrepareRequest:
        """Build a request from command-line values; a bad combination is a UsageError."""
        try:
            return cls.model_validate(options)
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(x) for x in err.get("loc", ()))
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            raise UsageError(f"{field + ': ' if field else ''}{msg}",
                             hint="see `romkit prepare --help`") from exc

    @model_validator(mode="after")
    def _consistent(self) -> PrepareRequest:
        if self.undo and (self.device_year or self.preloader or self.modem
                          or self.drop_checksum or self.modem_naming != "auto"):
            raise ValueError("--undo restores the last record and takes no other change")
        if self.device_year == 2013 and self.preloader is not None:
            raise ValueError("--device-year 2013 keeps the build's own preloader; "
                             "do not pass --preloader with it")
        return self


class PartInfo(BaseModel):
    """One memory part a preloader lists."""

    part: str
    id: str
    type_name: str
    fallback: bool

    @classmethod
    def of(cls, entry: EmiEntry) -> PartInfo:
        return cls(part=entry.part, id=entry.id.hex(), type_name=entry.type_name,
                   fallback=entry.is_fallback)


class PreloaderChange(BaseModel):
    """What swapping the preloader means for the memory parts the phone can boot with."""

    file: str
    source: str
    current_parts: list[PartInfo] | None = None  # None: the current file is missing/unreadable
    current_note: str | None = None
    new_parts: list[PartInfo] = Field(default_factory=list)
    added: list[PartInfo] = Field(default_factory=list)
    dropped: list[PartInfo] = Field(default_factory=list)
    new_project: str = ""
    new_emi_version: int | None = None
    unchanged: bool = False


class ModemChange(BaseModel):
    """How a modem set is named for the target build, and how that naming was chosen."""

    source_dir: str
    output_dir: str
    naming: str
    how: str
    header: md.ModemHeader | None = None
    files: list[md.Rename] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)


class PlanStep(BaseModel):
    """One file change: create, replace or remove `path` (relative to the folder)."""

    kind: StepKind
    action: Action
    path: str
    reason: str
    source: str | None = None
    before_sha256: str | None = None
    before_size: int | None = None
    after_sha256: str | None = None
    after_size: int | None = None
    _data: bytes | None = PrivateAttr(default=None)
    _source_path: Path | None = PrivateAttr(default=None)


class PreparePlan(BaseModel):
    folder: Path
    scatter: Path
    platform: str | None
    dry_run: bool = False
    steps: list[PlanStep] = Field(default_factory=list)
    preloader: PreloaderChange | None = None
    modem: ModemChange | None = None
    checksum_file: str | None = None
    created_dirs: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    request: PrepareRequest

    @computed_field  # type: ignore[prop-decorator]
    @property
    def nothing_to_do(self) -> bool:
        return not self.steps


class RestoredFile(BaseModel):
    path: str
    action: Literal["restored", "removed", "already"]
    sha256: str | None = None


class UndoResult(BaseModel):
    folder: Path
    record: Path
    created: str
    dry_run: bool
    files: list[RestoredFile] = Field(default_factory=list)
    removed_dirs: list[str] = Field(default_factory=list)
    validation: ValidationReport | None = None


class PrepareResult(BaseModel):
    folder: Path
    dry_run: bool
    applied: bool = False
    plan: PreparePlan | None = None
    record: Path | None = None
    validation: ValidationReport | None = None
    undo: UndoResult | None = None


class RecordStep(BaseModel):
    """A step as written in a record's manifest (with where its backup is)."""

    kind: StepKind
    action: Action
    path: str = Field(max_length=1024)
    reason: str = Field(default="", max_length=2000)
    before_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    before_size: int | None = Field(default=None, ge=0)
    after_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    after_size: int | None = Field(default=None, ge=0)
    backup: str | None = Field(default=None, max_length=1024)

    @pydantic.field_validator("path", "backup")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None:
            _check_rel(value)
        return value


class RecordManifest(BaseModel):
    format: Literal["romkit-prepare-record"] = MANIFEST_FORMAT
    version: Literal[1] = 1
    created: str = Field(max_length=64)
    folder: str = Field(max_length=4096)
    steps: list[RecordStep] = Field(max_length=10000)
    created_dirs: list[str] = Field(default_factory=list, max_length=100)
    notes: list[str] = Field(default_factory=list, max_length=1000)
    undone: str | None = None

    @pydantic.field_validator("created_dirs")
    @classmethod
    def _dirs(cls, value: list[str]) -> list[str]:
        for item in value:
            _check_rel(item)
        return value


def _check_rel(value: str) -> None:
    """A manifest path must stay inside its folder: relative, no `..`, no drive letters."""
    p = PurePosixPath(value)
    if (value in ("", ".") or value.startswith("/") or "\\" in value or "\x00" in value
            or re.match(r"^[A-Za-z]:", value) or ".." in p.parts or value != p.as_posix()):
        raise ValueError(f"{value!r} is not a plain relative path")


def parse_manifest(data: bytes | str, source: str = MANIFEST) -> RecordManifest:
    """Parse a record manifest; anything malformed or hostile is a FirmwareFormatError."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise FirmwareFormatError(f"{source}: far too large for a prepare record manifest",
                                  hint="remove that record folder; it is not romkit's")
    try:
        return RecordManifest.model_validate_json(data)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "document"
        raise FirmwareFormatError(
            f"{source}: damaged prepare record ({where}: {err.get('msg', 'invalid')})",
            hint="remove that record folder (the files it backed up are lost for undo)"
        ) from exc


# ---------------------------------------------------------------------------------------------
# small helpers


def _sha(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def _hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rel(folder: Path, path: Path) -> str:
    return path.relative_to(folder).as_posix()


def _os_error(exc: OSError, path: Path, action: str) -> DiskError:
    return DiskError(f"cannot {action} {path}: {exc.strerror or exc}",
                     hint="check the folder is writable (and not on a read-only medium)")


def _read_props(folder: Path) -> tuple[dict[str, str], str | None]:
    """build.prop-style keys from the build's own files, and which file gave them."""
    for name in _PROP_FILES:
        for base in (folder, folder.parent):
            path = base / name
            try:
                if not path.is_file() or path.stat().st_size > 1024 * 1024:
                    continue
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            props: dict[str, str] = {}
            for line in text.splitlines():
                key, sep, value = line.partition("=")
                if sep and not key.lstrip().startswith("#"):
                    props[key.strip()] = value.strip()
            if props:
                return props, _display(folder, path)
    return {}, None


def _display(folder: Path, path: Path) -> str:
    try:
        return path.relative_to(folder.parent).as_posix()
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# the build and device a folder belongs to


class _Context:
    """Facts about the folder that several steps need, loaded lazily (catalog, build, …)."""

    def __init__(self, fw: Firmware, request: PrepareRequest, rep: Reporter) -> None:
        self.fw = fw
        self.request = request
        self.rep = rep
        self._catalog: Catalog | None = None
        self._build: Build | None | bool = False  # False = not looked up yet
        self.props, self.props_file = _read_props(fw.folder)

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog.load(on_progress=self.rep.callback)
        return self._catalog

    def build(self) -> Build | None:
        """The catalog build this folder holds: --build, else the build `fetch` recorded for it,
    its folder names or its build id."""
        if self._build is not False:
            return self._build if isinstance(self._build, Build) else None
        found: Build | None = None
        if self.request.build:
            named = self.catalog.resolve(self.request.build, "build")
            found = named if isinstance(named, Build) else None
        else:
            folder = self.fw.folder.resolve()
            names = [recorded_build(folder) or "", folder.name, folder.parent.name,
                     folder.parent.parent.name, self.props.get("ro.build.display.id", "")]
            for name in filter(None, names):
                entry = self.catalog.find(name)
                if isinstance(entry, Build):
                    found = entry
                    break
        self._build = found
        return found

    def device(self) -> Device:
        """The device the folder is for: --device, the build's, build.prop's, or the only
        catalog device with the scatter's SoC."""
        if self.request.device:
            return self.catalog.device(self.request.device)
        build = self.build()
        if build is not None:
            return self.catalog.device(build.device)
        for key in ("ro.product.device", "ro.product.model"):
            value = self.props.get(key)
            if value:
                try:
                    return self.catalog.device(value)
                except CatalogError:
                    continue
        platform = (self.fw.layout.platform or "").upper()
        same_soc = [d for d in self.catalog.devices if (d.soc or "").upper() == platform]
        if platform and len(same_soc) == 1:
            return same_soc[0]
        raise UsageError("cannot tell which phone this firmware folder is for",
                         hint="pass --device (e.g. --device lenovo-s820) or --preloader FILE")


# ---------------------------------------------------------------------------------------------
# preloader


def _preloader_from_archive(path: Path) -> tuple[bytes, str]:
    """The one `preloader*.bin` inside a zip/7z, read with the archive module's checks."""
    fmt, members = archive.list_members(path)
    found = [m for m in members if not m.is_dir
             and PurePosixPath(m.name).name.lower().startswith("preloader")
             and m.name.lower().endswith(".bin")]
    if not found:
        raise ArchiveError(f"{path.name} holds no preloader*.bin",
                           hint="pass the preloader file itself with --preloader")
    if len(found) > 1:
        names = ", ".join(m.name for m in found[:5])
        raise UsageError(f"{path.name} holds several preloaders: {names}",
                         hint="extract the one for your phone and pass it with --preloader")
    member = found[0]
    if member.size > MAX_PRELOADER_FILE:
        raise FirmwareFormatError(f"{member.name} in {path.name} is {member.size} bytes: far "
                                  "too large for a preloader", spft_code=5066,
                                  hint="check you passed the right archive")
    try:
        if fmt == "zip":
            with zipfile.ZipFile(path) as zf:
                info = next(i for i in zf.infolist()
                            if archive.clean_name(i.filename) == member.name)
                with zf.open(info) as fh:
                    data = fh.read(MAX_PRELOADER_FILE + 1)
        else:
            with py7zr.SevenZipFile(path, mode="r") as sz:
                original = next(f.filename for f in sz.files
                                if archive.clean_name(f.filename) == member.name)
                factory = BytesIOFactory(MAX_PRELOADER_FILE + 1)
                sz.extract(targets=[original], factory=factory)
                product = factory.get(original)
                product.seek(0)
                data = product.read()
    except RomkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile archives break decoders in many ways
        raise ArchiveError(f"{path.name} is corrupt or unreadable ({type(exc).__name__})",
                           hint="get the archive again, or extract the preloader yourself"
                           ) from exc
    if len(data) != member.size:
        raise ArchiveError(f"{member.name} in {path.name} is not the size the archive says",
                           hint="the archive is corrupt or hostile; get another copy")
    return data, f"{path.name}:{member.name}"


def load_preloader_source(path: Path) -> tuple[bytes, PreloaderInfo, str]:
    """(raw preloader bytes, parsed info, description) from a preloader file, a BOOT1 dump,
    or a zip/7z holding one. A BOOT1 dump is unwrapped: firmware folders hold the raw form."""
    if not path.is_file():
        raise UsageError(f"preloader file not found: {path}",
                         hint="pass the 2014 preloader (.bin, or the .zip/.7z it came in)")
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise DiskError(f"cannot read {path}: {exc.strerror or exc}",
                        hint="check the path and its permissions") from exc
    if head.startswith((GFH_MAGIC, EMMC_BOOT_MAGIC)):
        data, what = read_limited(path, MAX_PRELOADER_FILE), path.name
    else:
        try:
            archive.detect_format(path)
        except ArchiveError as exc:
            raise FirmwareFormatError(
                f"{path.name} is not a preloader: no GFH header (and not a zip/7z holding one)",
                spft_code=5066,
                hint="pass the preloader_<project>.bin file, or the archive it came in") from exc
        data, what = _preloader_from_archive(path)
    info = parse_preloader(data)
    if info.form == "boot1":
        data = from_boot1_image(data)
        info = parse_preloader(data)
        what += " (unwrapped from a BOOT1 image)"
    return data, info, what


def _check_preloader_platform(info: PreloaderInfo, platform: str | None, name: str) -> None:
    """Refuse a preloader that says it belongs to another chip than the scatter's."""
    if info.emi_version is None:
        raise FirmwareFormatError(
            f"{name} has no MTK_BLOADER_INFO (EMI) table: the memory parts it can start are "
            "unknown", spft_code=5054, hint="use a complete preloader made for this phone")
    if platform is None:
        return
    want = PLATFORM_EMI_VERSION.get(platform.upper())
    if want is not None and info.emi_version != want:
        raise ValidationError(
            f"{name} carries EMI table v{info.emi_version}; {platform} preloaders carry v{want}"
            " - it is for another chip",
            hint="use the preloader made for this phone (e.g. the catalog's preloader-2014)")
    m = _CHIP_RE.search(info.project)
    if m and m.group(0).upper() != platform.upper():
        raise ValidationError(
            f"{name} is a preloader for {m.group(0).upper()} (project {info.project}), but this "
            f"firmware is for {platform}", hint="use the preloader made for this phone")


def _parts(info: PreloaderInfo) -> list[PartInfo]:
    return [PartInfo.of(e) for e in info.active_entries()]


def _preloader_target(fw: Firmware, new_project: str) -> Path:
    """Where the preloader goes: the file the scatter binds now (its name is kept)."""
    if fw.preloader_path is not None:
        return fw.preloader_path
    part = fw.layout.get("PRELOADER")
    if part is None:
        raise UsageError("this scatter has no PRELOADER partition",
                         hint="check the folder holds an MT6589 phone firmware")
    if part.file_name:
        return fw.folder / part.file_name
    name = PurePosixPath(new_project).name
    ok = name.lower().startswith("preloader") and name.lower().endswith(".bin")
    return fw.folder / (name if ok else "preloader.bin")


def _records(folder: Path) -> Iterator[tuple[Path, RecordManifest]]:
    """Complete records, oldest first (a folder without a manifest is incomplete)."""
    base = folder / RECORD_DIR
    if not base.is_dir():
        return
    for rec in sorted(p for p in base.iterdir() if p.is_dir()):
        man = rec / MANIFEST
        if not man.is_file():
            continue
        try:
            data = man.read_bytes()
        except OSError as exc:
            raise _os_error(exc, man, "read") from exc
        yield rec, parse_manifest(data, str(man))


def _original_preloader(folder: Path, rel: str) -> tuple[bytes, str] | None:
    """The build's own preloader: the first backup a (not undone) record took of it."""
    for rec, man in _records(folder):
        if man.undone:
            continue
        for step in man.steps:
            if step.path == rel and step.before_sha256 and step.backup:
                data = (rec / step.backup).read_bytes()
                if _hash_bytes(data) != step.before_sha256:
                    raise PrepareConflictError(
                        f"the backup of {rel} in {rec.name} does not match its manifest",
                        hint="the record is damaged; restore the preloader from the archive")
                return data, rec.name
    return None


def _plan_preloader(ctx: _Context, plan: PreparePlan) -> tuple[PlanStep | None, str | None]:
    """The preloader step (None if nothing to do) and the PRELOADER checksum key to update."""
    req, fw, rep = ctx.request, ctx.fw, ctx.rep
    if req.device_year == 2013:
        current = fw.preloader_path
        if current is None:
            plan.notes.append("--device-year 2013: the folder has no preloader file to keep")
            return None, None
        rel = _rel(fw.folder, current)
        original = _original_preloader(fw.folder, rel)
        if original is None:
            plan.notes.append(f"--device-year 2013: {rel} is the build's own preloader "
                              "(no prepare record replaced it); nothing to do")
            return None, None
        data, record = original
        info = parse_preloader(data)
        source = f"the build's own preloader (backup in prepare record {record})"
    elif req.preloader is not None or req.device_year == 2014:
        path = req.preloader if req.preloader is not None else _download_2014(ctx)
        data, info, source = load_preloader_source(path)
        _check_preloader_platform(info, fw.layout.platform, source)
    else:
        return None, None
    target = _preloader_target(fw, info.project)
    rel = _rel(fw.folder, target)
    before = _sha(target)
    after = _hash_bytes(data)
    change = PreloaderChange(file=rel, source=source, new_parts=_parts(info),
                             new_project=info.project, new_emi_version=info.emi_version,
                             unchanged=before == after)
    if target.is_file():
        try:
            cur = parse_preloader(read_limited(target, MAX_PRELOADER_FILE))
            cmp = compare_preloaders(cur, info)
            change.current_parts = _parts(cur)
            change.added = [PartInfo.of(e) for e in cmp.only_b]
            change.dropped = [PartInfo.of(e) for e in cmp.only_a]
        except RomkitError as exc:
            change.current_note = f"current {rel} is unreadable: {exc.message}"
    else:
        change.current_note = f"{rel} does not exist yet"
    plan.preloader = change
    binding = fw.binding("PRELOADER")
    others = [p.name for p in (binding.alternatives if binding else []) if p != target]
    if others:
        plan.warnings.append(f"the folder also holds {', '.join(others)}: SP Flash Tool may "
                             f"load one of those instead of {rel}; move them out of the folder")
    if change.dropped:
        names = ", ".join(p.part for p in change.dropped)
        plan.warnings.append(f"the new preloader drops memory parts the current one supports: "
                             f"{names} (phones with those parts would not start)")
    if change.unchanged:
        plan.notes.append(f"{rel} already is this preloader; nothing to swap")
        return None, None
    rep.info(f"preloader: {rel} <- {source}")
    step = PlanStep(kind="preloader", action="replace" if before else "create", path=rel,
                    reason="swap the preloader for one that lists this phone's memory part"
                    if req.device_year != 2013 else "restore the build's own preloader",
                    source=source, before_sha256=before, before_size=_size(target),
                    after_sha256=after, after_size=len(data))
    step._data = data
    part = fw.layout.get("PRELOADER")
    return step, part.raw_name if part is not None else "PRELOADER"


def _download_2014(ctx: _Context) -> Path:
    """The catalog's 2014 preloader for this device, through the verified download path."""
    from romkit.fetch.service import download_resource

    device = ctx.device()
    resource = ctx.catalog.resource_for(device.id, "preloader", 2014)
    if resource is None:
        raise UsageError(f"the catalog knows no 2014 preloader for {device.id}",
                         hint="pass the preloader file with --preloader FILE")
    if not resource.mirrors:
        raise UsageError(
            f"the catalog has no download address for {resource.id}",
            hint=f"pass the file with --preloader FILE, or add a mirror: "
                 f"`romkit catalog add-mirror {resource.id} URL`")
    ctx.rep.info(f"fetching {resource.id} for {device.id} (units made in 2014)")
    return download_resource(resource, on_progress=ctx.rep.callback)


# ---------------------------------------------------------------------------------------------
# checksum.ini


_KEY_LINE = re.compile(r"^(?P<lead>\s*)(?P<key>[^=\s][^=]*?)(?P<sep>\s*=\s*)(?P<value>[^\r\n]*?)"
                       r"(?P<eol>\r\n|\n|\r)?$")


def update_checksum_text(text: str, updates: dict[str, tuple[str, int]]) -> str:
    """`text` with the [CheckSum] values of some keys replaced, everything else kept.

    `updates` maps an upper-case partition name to (key spelling for a new line, value).
    Existing keys keep their spelling, spacing and line ending; missing ones are added at the
    end of the [CheckSum] section in the style of the line before. Values are `0x%04X`.
    """
    lines = text.splitlines(keepends=True)
    pending = dict(updates)
    section = ""
    last_key: int | None = None
    header: int | None = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip().lower()
            if section == "checksum" and header is None:
                header = i
            continue
        if section != "checksum" or not stripped or stripped.startswith((";", "#")):
            continue
        m = _KEY_LINE.match(line)
        if m is None:
            continue
        last_key = i
        name = m["key"].strip().upper()
        if name in pending:
            _, value = pending.pop(name)
            lines[i] = f"{m['lead']}{m['key']}{m['sep']}0x{value & 0xFFFF:04X}{m['eol'] or ''}"
    if pending:
        if header is None:
            raise FirmwareFormatError("checksum.ini has no [CheckSum] section",
                                      hint="use --drop-checksum, or `romkit checksum --write`")
        anchor = last_key if last_key is not None else header
        ref = _KEY_LINE.match(lines[anchor]) if last_key is not None else None
        sep = ref["sep"] if ref else "="
        eol = next((m.group(0) for m in (re.search(r"\r\n|\n|\r$", ln) for ln in lines) if m),
                   "\n")
        if not lines[anchor].endswith(("\n", "\r")):
            lines[anchor] += eol
        new = [f"{key}{sep}0x{value & 0xFFFF:04X}{eol}" for key, value in pending.values()]
        lines[anchor + 1:anchor + 1] = new
    return "".join(lines)


def _plan_checksum(ctx: _Context, plan: PreparePlan, changed: dict[str, tuple[str, bytes]]
                   ) -> PlanStep | None:
    """Regenerate the entries of changed images (or drop the file with --drop-checksum)."""
    fw = ctx.fw
    path = fw.checksum_path
    if path is not None:
        plan.checksum_file = _rel(fw.folder, path)
    if ctx.request.drop_checksum:
        if path is None:
            plan.notes.append("--drop-checksum: there is no checksum.ini to remove")
            return None
        return PlanStep(kind="checksum", action="remove", path=_rel(fw.folder, path),
                        reason="--drop-checksum: SP Flash Tool then skips the image check "
                               "(the forum workaround; regenerating is safer)",
                        before_sha256=_sha(path), before_size=_size(path))
    if not changed:
        return None
    if path is None:
        plan.notes.append("no checksum.ini in the folder: SP Flash Tool skips the check; "
                          "nothing to regenerate")
        return None
    raw = read_limited(path, ck.MAX_INI_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    ini = ck.parse_checksum_ini_text(text, path.name)
    updates: dict[str, tuple[str, int]] = {}
    for name, (key, data) in changed.items():
        value = ck.byte_sum16(data)
        hit = ini.lookup(name)
        if hit is None or hit[1] != value:
            updates[name.upper()] = (key, value)
            old = f"0x{hit[1]:04X}" if hit else "missing"
            plan.notes.append(f"checksum.ini {hit[0] if hit else key}: {old} -> 0x{value:04X}")
    if not updates:
        return None
    new_text = update_checksum_text(text, updates)
    data = new_text.encode("utf-8") if _is_utf8(raw) else new_text.encode("latin-1")
    step = PlanStep(kind="checksum", action="replace", path=_rel(fw.folder, path),
                    reason="regenerate the entries of the replaced images (16-bit byte sum), "
                           "keeping the file's format and other entries",
                    source="computed", before_sha256=_hash_bytes(raw), before_size=len(raw),
                    after_sha256=_hash_bytes(data), after_size=len(data))
    step._data = data
    return step


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# modem


def _search_file(path: Path, needle: bytes) -> bool:
    """Whether `needle` occurs in a (possibly huge) file: chunked, overlapping, C-speed find."""
    overlap = len(needle) - 1
    prev = b""
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(SEARCH_CHUNK):
                if needle in prev + chunk:
                    return True
                prev = chunk[-overlap:]
    except OSError:
        return False
    return False


def decide_naming(ctx: _Context) -> tuple[md.Naming, str]:
    """(naming, how it was decided) for `--modem-naming auto`."""
    build = ctx.build()
    if build is not None and build.android:
        naming = md.naming_for_android(build.android)
        if naming is not None:
            return naming, (f"catalog: {build.id} is Android {build.android}"
                            f" ({'KitKat or later' if naming == '1_3g_n' else 'before KitKat'})")
    release = ctx.props.get("ro.build.version.release")
    if release:
        naming = md.naming_for_android(release)
        if naming is not None:
            return naming, f"{ctx.props_file} says ro.build.version.release={release}"
    fw = ctx.fw
    for name in _LISTING_FILES:
        for base in (fw.folder, fw.folder.parent):
            listing = base / name
            if listing.is_file() and _search_file(listing, _KITKAT_MARKER):
                return "1_3g_n", f"{_display(fw.folder, listing)} lists modem_1_3g_n.img"
    firmware_dir = fw.folder / "system" / "etc" / "firmware"
    if (firmware_dir / "modem_1_3g_n.img").is_file():
        return "1_3g_n", "system/etc/firmware/ holds modem_1_3g_n.img"
    system = fw.images.get("ANDROID") or fw.images.get("SYSTEM")
    if system is not None and _search_file(system, _KITKAT_MARKER):
        return "1_3g_n", f"{system.name} contains modem_1_3g_n.img"
    raise UsageError("cannot tell which modem naming this build expects",
                     hint="pass --modem-naming plain (Jelly Bean builds) or 1_3g_n (KitKat)")


def _plan_modem(ctx: _Context, plan: PreparePlan) -> list[PlanStep]:
    req, fw = ctx.request, ctx.fw
    src = req.modem
    if src is None:
        return []
    if not src.is_dir():
        raise UsageError(f"modem folder not found: {src}",
                         hint="pass the folder holding modem.img, catcher_filter.bin, "
                              "BPLGUInfo* and DbgInfo*")
    if req.modem_naming == "auto":
        naming, how = decide_naming(ctx)
    else:
        naming, how = req.modem_naming, "--modem-naming"
    names = [p.name for p in sorted(src.iterdir()) if p.is_file() and not p.name.startswith(".")]
    renames, ignored = md.rename_plan(names, naming)
    if not renames:
        raise UsageError(f"{src} holds no modem files",
                         hint="expected modem.img, catcher_filter.bin, BPLGUInfo*, DbgInfo*")
    out_dir = fw.folder / MODEM_DIR
    change = ModemChange(source_dir=str(src), output_dir=_rel(fw.folder, out_dir),
                         naming=naming, how=how, files=renames, ignored=ignored)
    plan.modem = change
    ctx.rep.info(f"modem naming: {naming} ({how})")
    image = next((r for r in renames if r.kind == "modem"), None)
    if image is None:
        plan.warnings.append("the modem folder holds no modem.img; only the other files are "
                             "renamed")
    else:
        change.header = md.read_modem_header(src / image.source)
        md.check_modem_platform(change.header, fw.layout.platform, image.source)
        if change.header is None or not change.header.check_header:
            plan.warnings.append(f"{image.source} has no CHECK_HEADER trailer: its platform "
                                 "could not be checked")
        elif (naming == "1_3g_n" and change.header.image_type_name
              and change.header.image_type_name != "3g"):
            plan.warnings.append(f"{image.source} says it is a "
                                 f"{change.header.image_type_name.upper()} modem; the _1_3g_n "
                                 "names are for a 3G modem")
    kinds = {r.kind for r in renames}
    missing = [md.KIND_LABELS[k] for k in md.PHONE_DIRS if k not in kinds]
    if missing:
        plan.warnings.append("the modem set lacks: " + ", ".join(missing))
    if not out_dir.is_dir():
        plan.created_dirs.append(change.output_dir)
    steps: list[PlanStep] = []
    targets = {r.target for r in renames}
    for r in renames:
        source = src / r.source
        dest = out_dir / r.target
        after, before = sha256_file(source), _sha(dest)
        if after == before:
            continue
        step = PlanStep(kind="modem", action="replace" if before else "create",
                        path=_rel(fw.folder, dest), source=str(source),
                        reason=f"{md.KIND_LABELS[r.kind]} named for {naming} builds "
                               f"(goes to {r.phone_dir} on the phone)",
                        before_sha256=before, before_size=_size(dest), after_sha256=after,
                        after_size=_size(source))
        step._source_path = source
        steps.append(step)
    if out_dir.is_dir():
        for old in sorted(out_dir.iterdir()):
            if old.is_file() and md.classify(old.name) and old.name not in targets:
                steps.append(PlanStep(
                    kind="modem", action="remove", path=_rel(fw.folder, old),
                    reason=f"not part of the {naming}-named set (a stale or other-naming copy "
                           "would be picked up by mistake)",
                    before_sha256=sha256_file(old), before_size=_size(old)))
    readme = md.readme_text(renames, naming).encode("utf-8")
    readme_path = out_dir / MODEM_README
    if _sha(readme_path) != _hash_bytes(readme):
        step = PlanStep(kind="readme", action="replace" if readme_path.exists() else "create",
                        path=_rel(fw.folder, readme_path), source="generated",
                        reason="where each modem file goes on the phone",
                        before_sha256=_sha(readme_path), before_size=_size(readme_path),
                        after_sha256=_hash_bytes(readme), after_size=len(readme))
        step._data = readme
        steps.append(step)
    return steps


# ---------------------------------------------------------------------------------------------
# plan


def _load_folder(folder: Path | None) -> Firmware:
    """The firmware folder: given (folder, a folder above it, or its scatter file), else the
    current directory, else the one `romkit fetch` recorded."""
    return Firmware.load(resolve_firmware_dir(folder))


def plan_prepare(request: PrepareRequest, on_progress: ProgressCallback | None = None
                 ) -> PreparePlan:
    """Work out every file change the request needs; nothing in the folder is touched.

    (With `--device-year 2014` the catalog's preloader is downloaded into the cache so the
    plan can show which memory parts it supports.)
    """
    rep = Reporter(on_progress)
    fw = _load_folder(request.folder)
    plan = PreparePlan(folder=fw.folder, scatter=fw.scatter_path, platform=fw.layout.platform,
                       dry_run=request.dry_run, request=request)
    if request.undo:
        raise UsageError("plan_prepare does not plan an undo", hint="call undo_last(folder)")
    ctx = _Context(fw, request, rep)
    if fw.layout.platform is None:
        plan.warnings.append("the scatter names no platform: the preloader and modem cannot "
                             "be checked against the chip")
    steps: list[PlanStep] = []
    pre_step, pre_key = _plan_preloader(ctx, plan)
    changed: dict[str, tuple[str, bytes]] = {}
    if pre_step is not None and pre_key is not None and pre_step._data is not None:
        steps.append(pre_step)
        changed["PRELOADER"] = (pre_key, pre_step._data)
    ck_step = _plan_checksum(ctx, plan, changed)
    if ck_step is not None:
        steps.append(ck_step)
    steps += _plan_modem(ctx, plan)
    plan.steps = steps
    if not (request.device_year or request.preloader or request.modem
            or request.drop_checksum):
        plan.notes.append("nothing was asked: pass --device-year, --preloader, --modem or "
                          "--drop-checksum")
    return plan


# ---------------------------------------------------------------------------------------------
# apply


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _check_fresh(plan: PreparePlan) -> None:
    """The folder must still hold exactly what the plan saw."""
    for step in plan.steps:
        path = plan.folder / step.path
        now = _sha(path)
        if now != step.before_sha256:
            raise PrepareConflictError(f"{step.path} changed since the plan was made")


def _make_dirs(folder: Path, rel: str, created: list[Path]) -> Path:
    """mkdir -p that remembers which folders it made (so a failure can remove them)."""
    target = folder / rel
    missing: list[Path] = []
    probe = target
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except OSError as exc:
            raise _os_error(exc, d, "create") from exc
        created.append(d)
    if not target.is_dir():
        raise DiskError(f"cannot create {target}: a file of that name is in the way",
                        hint=f"move {probe} aside and run the command again")
    return target


def _remove_dirs(dirs: list[Path]) -> None:
    for d in reversed(dirs):
        try:
            d.rmdir()
        except OSError:
            continue


def _write_step(folder: Path, step: PlanStep) -> None:
    path = folder / step.path
    if step.action == "remove":
        try:
            path.unlink()
        except OSError as exc:
            raise _os_error(exc, path, "remove") from exc
        return
    if step._data is not None:
        atomic_write_bytes(path, step._data)
    elif step._source_path is not None:
        atomic_copy(step._source_path, path)
    else:
        raise UsageError(f"the plan holds no content for {step.path}",
                         hint="plans cannot be applied after a JSON round trip; plan again")
    if sha256_file(path) != step.after_sha256:
        raise PrepareConflictError(f"{step.path} does not hold the planned bytes after writing "
                                   f"(its source {step.source} changed since the plan?)")


def _restore_step(folder: Path, rec: Path, step: RecordStep) -> None:
    path = folder / step.path
    if step.before_sha256 is None:
        path.unlink(missing_ok=True)
        return
    assert step.backup is not None
    atomic_copy(rec / step.backup, path)


def apply_plan(plan: PreparePlan, on_progress: ProgressCallback | None = None) -> PrepareResult:
    """Back up, record, then change the files of `plan`; validate the folder afterwards."""
    rep = Reporter(on_progress)
    result = PrepareResult(folder=plan.folder, dry_run=plan.dry_run, plan=plan)
    if plan.dry_run or not plan.steps:
        return result
    _check_fresh(plan)
    created: list[Path] = []
    rec_dir: Path | None = None
    try:
        base = _make_dirs(plan.folder, RECORD_DIR, created)
        stamp = _stamp()
        rec_dir = base / stamp
        n = 1
        while rec_dir.exists():
            rec_dir = base / f"{stamp}-{n}"
            n += 1
        _make_dirs(plan.folder, _rel(plan.folder, rec_dir), created)
        entries: list[RecordStep] = []
        for i, step in enumerate(plan.steps):
            backup = None
            if step.before_sha256 is not None:
                backup = f"files/{i:03d}-{PurePosixPath(step.path).name}"
                atomic_copy(plan.folder / step.path, rec_dir / backup)
                if sha256_file(rec_dir / backup) != step.before_sha256:
                    raise PrepareConflictError(f"{step.path} changed while it was backed up")
            entries.append(RecordStep(**step.model_dump(include=set(RecordStep.model_fields)),
                                      backup=backup))
        manifest = RecordManifest(created=stamp, folder=str(plan.folder), steps=entries,
                                  created_dirs=plan.created_dirs,
                                  notes=[*plan.notes, *plan.warnings])
        atomic_write_text(rec_dir / MANIFEST, manifest.model_dump_json(indent=2) + "\n")
    except BaseException:
        if rec_dir is not None and rec_dir.exists() and rec_dir not in created:
            shutil.rmtree(rec_dir, ignore_errors=True)
        for d in reversed(created):
            shutil.rmtree(d, ignore_errors=True)
        raise
    done: list[int] = []
    made: list[Path] = []
    try:
        for i, step in enumerate(plan.steps):
            parent = str(PurePosixPath(step.path).parent)
            if parent != ".":
                _make_dirs(plan.folder, parent, made)
            rep.info(f"{step.action} {step.path}")
            done.append(i)  # before writing: a step that fails half-way is put back too
            _write_step(plan.folder, step)
    except BaseException:
        for i in reversed(done):
            try:
                _restore_step(plan.folder, rec_dir, entries[i])
            except RomkitError:
                continue
        _remove_dirs(made)
        shutil.rmtree(rec_dir, ignore_errors=True)
        for d in reversed(created):
            shutil.rmtree(d, ignore_errors=True)
        raise
    result.applied = True
    result.record = rec_dir
    result.validation = Firmware.load(plan.folder).validate(on_progress=on_progress)
    return result


# ---------------------------------------------------------------------------------------------
# undo


def _mark_undone(rec: Path, manifest: RecordManifest) -> None:
    manifest.undone = datetime.now(UTC).isoformat(timespec="seconds")
    atomic_write_text(rec / MANIFEST, manifest.model_dump_json(indent=2) + "\n")


def undo_last(folder: Path | str | None, *, dry_run: bool = False,
              on_progress: ProgressCallback | None = None) -> UndoResult:
    """Put back the files of the newest record that is not undone yet, checked by hash.

    Refused (nothing changed) when a file was edited after that prepare: undoing would lose
    the edit, so the user decides.
    """
    rep = Reporter(on_progress)
    root = _load_folder(Path(folder) if folder is not None else None).folder
    live = [(rec, man) for rec, man in _records(root) if man.undone is None]
    if not live:
        raise UsageError(f"no prepare to undo in {root}",
                         hint="`romkit prepare` keeps records in .romkit/prepare/; "
                              "there is none that is not undone")
    rec, man = live[-1]
    result = UndoResult(folder=root, record=rec, created=man.created, dry_run=dry_run)
    plan: list[tuple[RecordStep, str]] = []
    for step in reversed(man.steps):
        path = root / step.path
        now = _sha(path)
        if now == step.before_sha256:
            result.files.append(RestoredFile(path=step.path, action="already", sha256=now))
            continue
        if now != step.after_sha256:
            raise PrepareConflictError(
                f"{step.path} was changed after the prepare of {man.created}; undo would lose "
                "that change", hint="put the file back as prepare left it, or restore it by hand "
                f"from {rec / 'files'}")
        if step.before_sha256 is not None:
            if step.backup is None or _sha(rec / step.backup) != step.before_sha256:
                raise PrepareConflictError(
                    f"the backup of {step.path} in {rec.name} is missing or damaged",
                    hint="restore the file from the firmware archive")
            plan.append((step, "restored"))
        else:
            plan.append((step, "removed"))
    for step, action in plan:
        if not dry_run:
            rep.info(f"undo: {action} {step.path}")
            try:
                _restore_step(root, rec, step)
            except OSError as exc:
                raise _os_error(exc, root / step.path, "restore") from exc
            if _sha(root / step.path) != step.before_sha256:
                raise PrepareConflictError(f"{step.path} does not match its backup after "
                                           "restoring", hint="check the disk; restore by hand "
                                                             f"from {rec / 'files'}")
        result.files.append(RestoredFile(path=step.path, action=action,  # type: ignore[arg-type]
                                         sha256=step.before_sha256))
    removed = {root / step.path for step, action in plan if action == "removed"}
    for rel in reversed(man.created_dirs):
        d = root / rel
        if not d.is_dir():
            continue
        if dry_run:
            if not set(d.rglob("*")) - removed:
                result.removed_dirs.append(rel)
            continue
        try:
            d.rmdir()
        except OSError:
            continue  # not empty: the user put files of their own there; keep them
        result.removed_dirs.append(rel)
    if dry_run:
        return result
    _mark_undone(rec, man)
    result.validation = Firmware.load(root).validate(on_progress=on_progress)
    return result


# ---------------------------------------------------------------------------------------------
# one call for the CLI


def prepare(request: PrepareRequest, on_progress: ProgressCallback | None = None
            ) -> PrepareResult:
    """Plan and apply (or only show, with dry_run; or undo the last prepare, with undo)."""
    if request.undo:
        undo = undo_last(request.folder, dry_run=request.dry_run, on_progress=on_progress)
        return PrepareResult(folder=undo.folder, dry_run=request.dry_run,
                             applied=not request.dry_run, undo=undo,
                             validation=undo.validation)
    plan = plan_prepare(request, on_progress)
    return apply_plan(plan, on_progress)
