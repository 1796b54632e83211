"""Safe unpacking of firmware archives (7z via py7zr, zip via the stdlib).

Firmware archives come from forums and file lockers, so every archive is treated as hostile:
the member list is checked *before* a byte is written (only plain files and folders with
relative names are accepted; absolute paths, `..`, links, device files, duplicates and
absurd sizes are refused), free disk space is checked, and bytes are counted while writing so
an archive that lies about its sizes is stopped too. Everything is unpacked into a temp folder
beside the destination that is renamed into place only at the end, so a crash never leaves a
half-unpacked folder that looks complete.

The firmware folder (the one holding `*_scatter*.txt`) is located from the member names
before extracting, so an archive that is not a firmware package is refused without writing.

Knows nothing about HTTP or the catalog.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

import py7zr
from py7zr.io import Py7zIO, WriterFactory
from pydantic import BaseModel, Field

from romkit.errors import ArchiveError, DiskError, RomkitError, UsageError
from romkit.fsutil import new_dir_mode
from romkit.progress import ProgressCallback, Reporter

ArchiveFormat = Literal["7z", "zip"]
SCATTER_GLOB = "*_scatter*.txt"
FLASH_TOOL_GLOB = "sp_flash_tool*"
_MAGIC_7Z = b"7z\xbc\xaf\x27\x1c"
_MAGIC_ZIP = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_MAGIC_RAR = b"Rar!\x1a\x07"
_COPY_CHUNK = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


class ExtractLimits(BaseModel):
    """Bounds that stop decompression bombs.

    The ratio limit only applies above `ratio_floor` bytes: small archives of padding-filled
    images legitimately compress a thousandfold, but a bomb has to be big to hurt.
    """

    max_total: int = Field(default=32 * 1024**3, gt=0)
    max_ratio: float = Field(default=100.0, gt=1)
    ratio_floor: int = Field(default=256 * 1024**2, ge=0)
    max_members: int = Field(default=100_000, gt=0)
    free_margin: int = Field(default=64 * 1024**2, ge=0)


class ExtractResult(BaseModel):
    dest: Path
    firmware_folder: Path
    flash_tool_folder: Path | None = None
    files: int = 0
    bytes: int = 0
    reused: bool = False


@dataclass(frozen=True)
class Member:
    """One archive entry after validation: a clean relative POSIX name, a kind, a size."""

    name: str
    is_dir: bool
    size: int


# ------------------------------------------------------------------------------ detection --
def detect_format(path: Path) -> ArchiveFormat:
    """7z or zip by magic bytes (the extension can lie); RAR and others are refused."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror or exc}",
                           hint="check the path") from exc
    if head.startswith(_MAGIC_7Z):
        return "7z"
    if head.startswith(_MAGIC_ZIP):
        return "zip"
    if head.startswith(_MAGIC_RAR) or path.suffix.lower() == ".rar":
        raise ArchiveError(f"{path.name}: RAR archives are unsupported",
                           hint="unpack it yourself and use `romkit fetch NAME --from DIR`")
    raise ArchiveError(f"{path.name} is not a 7z or zip archive",
                       hint="check the file; if it is another format, unpack it yourself and "
                            "use --from DIR")


def clean_name(raw: str) -> str:
    """The member name as a relative POSIX path, or ArchiveError when it could escape."""
    name = raw.replace("\\", "/")
    if any(ord(c) < 32 for c in name):
        raise ArchiveError(f"refusing member with control characters in its name: {raw!r}",
                           hint="the archive is damaged or hostile; get it from another mirror")
    if name.startswith("/") or _DRIVE.match(name):
        raise ArchiveError(f"refusing member with an absolute path: {raw!r}",
                           hint="the archive is hostile or broken; get it from another mirror")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"refusing member that climbs out of the folder: {raw!r}",
                           hint="the archive is hostile or broken; get it from another mirror")
    cleaned = "/".join(parts)
    if _DRIVE.match(cleaned):  # "./C:x" is still a drive path on Windows
        raise ArchiveError(f"refusing member with an absolute path: {raw!r}",
                           hint="the archive is hostile or broken; get it from another mirror")
    return cleaned


def _refuse_kind(name: str, kind: str) -> ArchiveError:
    return ArchiveError(f"refusing {kind} in archive: {name!r}",
                        hint="firmware archives hold only plain files; get the archive from "
                             "another mirror, or unpack it yourself and use --from DIR")


def _mode_kind(mode: int) -> str | None:
    """None for a regular file/folder, else what the entry really is."""
    fmt = stat.S_IFMT(mode)
    if fmt in (0, stat.S_IFREG, stat.S_IFDIR):
        return None
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def _zip_members(zf: zipfile.ZipFile) -> list[Member]:
    members = []
    for info in zf.infolist():
        name = clean_name(info.filename)
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{info.filename!r} is password-protected",
                               hint="unpack it yourself and use --from DIR")
        if info.create_system == 3:
            kind = _mode_kind(info.external_attr >> 16)
            if kind is not None:
                raise _refuse_kind(info.filename, kind)
        if not name:
            continue
        members.append(Member(name, info.is_dir(), 0 if info.is_dir() else info.file_size))
    return members


def _7z_members(sz: py7zr.SevenZipFile) -> list[Member]:
    if sz.needs_password():
        raise ArchiveError("the 7z archive is password-protected",
                           hint="unpack it yourself and use --from DIR")
    members = []
    for f in sz.files:
        name = clean_name(f.filename)
        if f.is_symlink:
            raise _refuse_kind(f.filename, "symlink")
        if f.is_junction:
            raise _refuse_kind(f.filename, "junction")
        fmt = f.st_fmt
        if fmt is not None and _mode_kind(fmt) is not None:
            raise _refuse_kind(f.filename, _mode_kind(fmt) or "special file")
        if not name:
            # py7zr refuses to extract such a member itself; say why instead of "corrupt"
            raise ArchiveError(f"refusing member whose name is only '.' parts: {f.filename!r}",
                               hint="the archive is hostile or broken; get it from another "
                                    "mirror")
        size = 0 if f.is_directory else int(f.uncompressed or 0)
        members.append(Member(name, f.is_directory, size))
    return members


def _check_tree(members: list[Member]) -> None:
    """No duplicates, and no file that is also used as a folder (a classic overwrite trick)."""
    files: set[str] = set()
    dirs: set[str] = set()
    for m in members:
        if m.is_dir:
            dirs.add(m.name)
        elif m.name in files:
            raise ArchiveError(f"archive holds {m.name!r} twice",
                               hint="the archive is broken or hostile; get another copy")
        else:
            files.add(m.name)
        for parent in PurePosixPath(m.name).parents:
            if str(parent) != ".":
                dirs.add(str(parent))
    clash = sorted(files & dirs)
    if clash:
        raise ArchiveError(f"archive uses {clash[0]!r} both as a file and as a folder",
                           hint="the archive is broken or hostile; get another copy")


def list_members(path: Path) -> tuple[ArchiveFormat, list[Member]]:
    """Validated member list of an archive (nothing is extracted)."""
    fmt = detect_format(path)
    try:
        if fmt == "zip":
            with zipfile.ZipFile(path) as zf:
                members = _zip_members(zf)
        else:
            with py7zr.SevenZipFile(path, mode="r") as sz:
                members = _7z_members(sz)
    except RomkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile input may break the parser any way
        raise _corrupt(path, exc) from exc
    _check_tree(members)
    return fmt, members


def _corrupt(path: Path, exc: BaseException) -> ArchiveError:
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return ArchiveError(f"{path.name} is corrupt or unreadable ({detail})",
                        hint="download it again (romkit fetch --force) or from another mirror")


# ---------------------------------------------------------------------- firmware location --
def _is_scatter(name: str) -> bool:
    return fnmatch.fnmatchcase(PurePosixPath(name).name, SCATTER_GLOB)


def _is_flash_tool(part: str) -> bool:
    return fnmatch.fnmatchcase(part.lower(), FLASH_TOOL_GLOB)


def locate(names: Iterable[tuple[str, bool]]) -> tuple[str, str | None]:
    """(firmware folder, flash-tool folder or None) from relative (name, is_dir) pairs.

    The firmware folder is the one folder holding `*_scatter*.txt`; none or several is an
    ArchiveError (several are listed so the user can pick one with --from DIR).
    """
    scatter_dirs: set[str] = set()
    tools: set[str] = set()
    for name, is_dir in names:
        path = PurePosixPath(name)
        if not is_dir and _is_scatter(name):
            scatter_dirs.add(str(path.parent))
        parts = path.parts if is_dir else path.parts[:-1]
        for i, part in enumerate(parts):
            if _is_flash_tool(part):
                tools.add("/".join(parts[:i + 1]))
                break
    if not scatter_dirs:
        raise ArchiveError("no firmware folder found: nothing named *_scatter*.txt",
                           hint="this does not look like an SP Flash Tool firmware package")
    if len(scatter_dirs) > 1:
        listing = ", ".join(sorted(d if d != "." else "(top level)" for d in scatter_dirs))
        raise ArchiveError(f"several folders hold a scatter file: {listing}",
                           hint="unpack the archive yourself and pass the right folder with "
                                "--from DIR")
    tool = min(tools, key=lambda t: (t.count("/"), t)) if tools else None
    return scatter_dirs.pop(), tool


def find_firmware(root: Path) -> tuple[Path, Path | None]:
    """Firmware and flash-tool folders inside an already unpacked tree (`--from DIR`)."""
    if not root.is_dir():
        raise ArchiveError(f"not a folder: {root}", hint="pass the unpacked firmware folder")
    entries: list[tuple[str, bool]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        entries += [((rel / d).as_posix(), True) for d in dirnames]
        entries += [((rel / f).as_posix(), False) for f in filenames]
    firmware, tool = locate(entries)
    return (root / firmware).resolve(), (root / tool).resolve() if tool else None


# ------------------------------------------------------------------------------ extraction --
class _Budget:
    """Counts bytes actually written across all members (and threads) against the limits."""

    def __init__(self, limit: int, total: int, rep: Reporter) -> None:
        self.limit = limit
        self.total = total
        self.written = 0
        self.rep = rep
        self._lock = threading.Lock()
        self._last = 0.0

    def add(self, n: int) -> None:
        with self._lock:
            self.written += n
            written = self.written
            now = time.monotonic()
            report = now - self._last >= 0.1
            if report:
                self._last = now
        if written > self.limit:
            raise ArchiveError(f"archive expands beyond {self.limit} bytes while unpacking",
                               hint="the archive is a decompression bomb or corrupt; "
                                    "nothing was kept")
        if report:
            self.rep.update("unpack", written, self.total)


class _Sink(Py7zIO):
    """Where py7zr writes one member: a file in the temp folder, size-checked as it grows."""

    def __init__(self, path: Path, declared: int, budget: _Budget, name: str) -> None:
        self.declared = declared
        self.budget = budget
        self.name = name
        self.count = 0
        try:
            self.fh = path.open("wb")
        except OSError as exc:
            raise _disk(exc, path) from exc

    def write(self, s: bytes | bytearray) -> int:
        self.count += len(s)
        if self.count > self.declared:
            raise ArchiveError(f"{self.name!r} is bigger than the archive says",
                               hint="the archive is corrupt or hostile; nothing was kept")
        self.budget.add(len(s))
        try:
            return self.fh.write(s)
        except OSError as exc:
            raise _disk(exc, Path(self.fh.name)) from exc

    def read(self, size: int | None = None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.count

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        self.fh.flush()

    def size(self) -> int:
        return self.count

    def close(self) -> None:
        self.fh.close()


class _SinkFactory(WriterFactory):
    def __init__(self, root: Path, sizes: dict[str, int], budget: _Budget) -> None:
        self.root = root
        self.sizes = sizes
        self.budget = budget
        self.sinks: list[_Sink] = []
        self._lock = threading.Lock()

    def create(self, filename: str) -> Py7zIO:
        name = clean_name(filename)
        if name not in self.sizes:
            raise ArchiveError(f"py7zr asked to write an unlisted member {filename!r}",
                               hint="the archive is corrupt; get another copy")
        sink = _Sink(self.root / name, self.sizes[name], self.budget, name)
        with self._lock:
            self.sinks.append(sink)
        return sink


def _disk(exc: OSError, path: Path) -> DiskError | ArchiveError:
    """A write failure while unpacking: a member name the file system cannot hold is the
    archive's fault; anything else (space, permissions) is the destination's."""
    if exc.errno == errno.ENAMETOOLONG:
        return ArchiveError(f"archive member path is too long for this file system: "
                            f"{str(path)[:80]}…",
                            hint="this is not a normal firmware package; unpack it by hand "
                                 "and use `--from DIR` if you trust it")
    hint = ("free some disk space or choose another --dest" if exc.errno == errno.ENOSPC
            else "check that the destination folder is writable, or choose another --dest")
    return DiskError(f"cannot write {path}: {exc.strerror or exc}", hint=hint)


def _check_limits(path: Path, members: list[Member], limits: ExtractLimits,
                  where: Path) -> int:
    total = sum(m.size for m in members)
    if len(members) > limits.max_members:
        raise ArchiveError(f"archive lists {len(members)} entries (limit {limits.max_members})",
                           hint="this is not a firmware package, or it is hostile")
    if total > limits.max_total:
        raise ArchiveError(f"archive would unpack to {total} bytes (limit {limits.max_total})",
                           hint="this is not a firmware package, or it is a decompression bomb")
    packed = max(1, path.stat().st_size)
    if total > limits.ratio_floor and total / packed > limits.max_ratio:
        raise ArchiveError(f"archive would expand {total / packed:.0f}-fold "
                           f"({packed} → {total} bytes)",
                           hint="refusing a likely decompression bomb; if you trust it, unpack "
                                "it yourself and use --from DIR")
    free = shutil.disk_usage(where).free
    if free < total + limits.free_margin:
        raise DiskError(f"not enough free space in {where}: need {total + limits.free_margin} "
                        f"bytes, {free} free",
                        hint="free some space or pick another folder with --dest")
    return total


def _extract_zip(path: Path, root: Path, members: list[Member], budget: _Budget) -> None:
    sizes = {m.name: m.size for m in members if not m.is_dir}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = clean_name(info.filename)
            if not name or name not in sizes or info.is_dir():
                continue
            target = root / name
            count = 0
            with zf.open(info) as src, _open_out(target) as dst:
                while chunk := src.read(_COPY_CHUNK):
                    count += len(chunk)
                    if count > sizes[name]:
                        raise ArchiveError(f"{name!r} is bigger than the archive says",
                                           hint="the archive is corrupt or hostile")
                    budget.add(len(chunk))
                    dst.write(chunk)


def _open_out(target: Path) -> BinaryIO:
    try:
        return target.open("wb")
    except OSError as exc:
        raise _disk(exc, target) from exc


def _extract_7z(path: Path, root: Path, members: list[Member], budget: _Budget) -> None:
    sizes = {m.name: m.size for m in members if not m.is_dir}
    factory = _SinkFactory(root, sizes, budget)
    try:
        with py7zr.SevenZipFile(path, mode="r") as sz:
            sz.extractall(factory=factory)
    finally:
        for sink in factory.sinks:
            sink.close()
    missing = [n for n in sizes if not (root / n).is_file()]
    if missing:
        raise ArchiveError(f"{len(missing)} members were not unpacked (first: {missing[0]!r})",
                           hint="the archive is corrupt; download it again")


def _clear_leftovers(dest: Path) -> None:
    """Temp folders of an earlier run that was killed mid-unpack (named by us, safe to drop)."""
    for old in dest.parent.glob(f".{dest.name}.unpacking-*"):
        shutil.rmtree(old, ignore_errors=True)
    for old in dest.parent.glob(f".{dest.name}.old-*"):
        shutil.rmtree(old, ignore_errors=True)


def extract(archive: Path, dest: Path, *, force: bool = False,
            limits: ExtractLimits | None = None,
            on_progress: ProgressCallback | None = None) -> ExtractResult:
    """Unpack `archive` into `dest` (created) and locate the firmware folder in it.

    An existing non-empty `dest` that already holds a firmware folder is reused as is (it may
    have been prepared since); with `force` it is replaced. Nothing outside `dest` and its
    temp sibling is ever written.
    """
    lim = limits or ExtractLimits()
    rep = Reporter(on_progress)
    dest = dest.absolute()
    fmt, members = list_members(archive)
    firmware_rel, tool_rel = locate((m.name, m.is_dir) for m in members)
    top = own_name_folder(archive, dest, members)
    if top is not None:  # DEST/<name>/… would double the name: DEST is that folder
        firmware_rel = _below(firmware_rel, top)
        tool_rel = _below(tool_rel, top) if tool_rel else None
    if dest.exists() and not force:
        if dest.is_dir() and any(dest.iterdir()):
            try:
                firmware, tool = find_firmware(dest)
            except ArchiveError as exc:
                raise UsageError(f"{dest} exists and is not an unpacked firmware folder",
                                 hint="choose another --dest, or --force to replace it"
                                 ) from exc
            rep.info(f"{dest} is already unpacked; reusing it (--force unpacks again)")
            return ExtractResult(dest=dest, firmware_folder=firmware, flash_tool_folder=tool,
                                 reused=True)
        if not dest.is_dir():
            raise UsageError(f"{dest} exists and is not a folder",
                             hint="choose another --dest")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk(exc, dest.parent) from exc
    _clear_leftovers(dest)
    total = _check_limits(archive, members, lim, dest.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpacking-", dir=dest.parent))
        # mkdtemp makes 0700; the folder becomes DEST, which should look like any folder the
        # user makes (0755 under the usual umask), or other tools and users cannot read it.
        tmp.chmod(new_dir_mode())
    except OSError as exc:
        raise _disk(exc, dest.parent) from exc
    budget = _Budget(min(lim.max_total, total), total, rep)
    rep.start("unpack", f"unpack {archive.name}", total=total)
    try:
        try:
            for d in sorted({m.name for m in members if m.is_dir}
                            | {str(PurePosixPath(m.name).parent) for m in members}):
                (tmp / d).mkdir(parents=True, exist_ok=True)
            if fmt == "zip":
                _extract_zip(archive, tmp, members, budget)
            else:
                _extract_7z(archive, tmp, members, budget)
        except RomkitError:
            raise
        except OSError as exc:
            if exc.filename is not None and str(exc.filename).startswith(str(tmp)):
                raise _disk(exc, Path(exc.filename)) from exc
            raise _corrupt(archive, exc) from exc
        except Exception as exc:  # noqa: BLE001 - third-party decoders fail in many ways
            raise _corrupt(archive, exc) from exc
        _swap_into_place(tmp / top if top is not None else tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if top is not None:
        shutil.rmtree(tmp, ignore_errors=True)  # the emptied wrapper
    rep.update("unpack", budget.written, total)
    rep.end("unpack")
    files = sum(1 for m in members if not m.is_dir)
    return ExtractResult(dest=dest, firmware_folder=(dest / firmware_rel).resolve(),
                         flash_tool_folder=(dest / tool_rel).resolve() if tool_rel else None,
                         files=files, bytes=budget.written)


def own_name_folder(archive: Path, dest: Path, members: list[Member]) -> str | None:
    """The archive's single top-level folder, when it bears the archive's own name (or
    DEST's): `S820_ROW_S124_140404.zip` holding `S820_ROW_S124_140404/target_bin/…`. Its
    content then goes straight into DEST, instead of DEST/S820_ROW_S124_140404/…."""
    tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    if len(tops) != 1:
        return None
    (top,) = tops
    if not all(m.is_dir or len(PurePosixPath(m.name).parts) > 1 for m in members):
        return None  # a single *file* at the top: nothing to unwrap
    stem = archive.name
    for suffix in (".zip", ".7z"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return top if top.casefold() in (stem.casefold(), dest.name.casefold()) else None


def _below(rel: str, top: str) -> str:
    """`rel` (a member path inside the archive) relative to its top folder `top`."""
    parts = PurePosixPath(rel).parts
    return str(PurePosixPath(*parts[1:])) if len(parts) > 1 and parts[0] == top else "."


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename the finished temp folder to `dest`; an existing `dest` is moved aside first and
    removed only after the new one is in place."""
    old: Path | None = None
    try:
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / "previous")
        os.replace(tmp, dest)
    except OSError as exc:
        if old is not None and not dest.exists() and (old / "previous").exists():
            os.replace(old / "previous", dest)
        raise _disk(exc, dest) from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
