"""A raw ext4 image read and changed through e2fsprogs (`debugfs`, `e2fsck`, `dumpe2fs`).

Why e2fsprogs: it is the reference ext4 implementation (the same code as the kernel's
on-disk format, maintained by the ext4 maintainer), on every Linux and installable on
macOS; no maintained Python package writes ext4. romkit only drives it: every change is
a `debugfs -w` command file, and every result is checked afterwards by reading the image
again (`ls -p`, `stat`, `ea_get`, `cat`) and by `e2fsck -fn`.

Facts used (e2fsprogs 1.42-1.47 man pages and output, our reading): `ls -p` prints
`/inode/mode(octal)/uid/gid/name/size/` per entry; `stat` prints `ctime: 0xSECONDS:EXTRA`
for each timestamp (EXTRA = nanoseconds << 2 | epoch bits); `set_inode_field` accepts
`mode`, `uid`, `gid` (with their high halves), `atime|ctime|mtime|crtime` and `*_extra`
as raw numbers; debugfs reports command errors on stderr and still exits 0, so stderr is
the error channel; `e2fsck -fn` exits 0 only for a clean filesystem.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, Field

from romkit.errors import EXIT_FAILURE, FirmwareFormatError, RomkitError, UsageError

TOOLS = ("debugfs", "e2fsck", "dumpe2fs")
_EXTRA_DIRS = ("/sbin", "/usr/sbin", "/usr/local/sbin", "/opt/homebrew/opt/e2fsprogs/sbin",
               "/usr/local/opt/e2fsprogs/sbin")
_BANNER = re.compile(r"^(debugfs|e2fsck|dumpe2fs) \d+\.\d+")
_TIMES = ("atime", "ctime", "mtime", "crtime")
_TIME_RE = re.compile(r"^\s*(atime|ctime|mtime|crtime):\s+0x([0-9a-fA-F]+)(?::([0-9a-fA-F]+))?",
                      re.MULTILINE)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._+\-]{1,255}$")
TIMEOUT = 600.0
MIN_VERSION = (1, 43, 0)  # debugfs gained ea_get / ea_set in 1.43 (e2fsprogs release notes)
READ_CHUNK = 1024 * 1024


class ToolMissingError(RomkitError):
    """e2fsprogs (debugfs / e2fsck / dumpe2fs) is not installed."""

    exit_code = EXIT_FAILURE
    default_hint = "install e2fsprogs"


def install_command(os_name: str | None = None) -> str:
    """How to install e2fsprogs on this OS (what `romkit doctor` and the error say)."""
    name = (os_name or platform.system()).lower()
    if name == "darwin":
        return "brew install e2fsprogs (its tools land in $(brew --prefix e2fsprogs)/sbin)"
    if name == "windows":
        return "run romkit inside WSL (wsl --install), then: sudo apt-get install e2fsprogs"
    return ("sudo apt-get install e2fsprogs (Debian/Ubuntu), sudo dnf install e2fsprogs "
            "(Fedora), sudo pacman -S e2fsprogs (Arch)")


def find_tool(name: str) -> str | None:
    """Path of an e2fsprogs tool: PATH first, then the sbin folders a user's PATH may lack."""
    found = shutil.which(name)
    if found:
        return found
    for d in _EXTRA_DIRS:
        cand = Path(d) / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def tool_versions() -> dict[str, str | None]:
    """tool → its version line (None: missing); for `romkit doctor`."""
    out: dict[str, str | None] = {}
    for name in TOOLS:
        path = find_tool(name)
        if path is None:
            out[name] = None
            continue
        try:
            proc = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=20,
                                  env=_env())
            line = (proc.stderr or proc.stdout).strip().splitlines()
            out[name] = line[0] if line else "unknown version"
        except (OSError, subprocess.SubprocessError):
            out[name] = "unknown version"
    return out


def require_tools() -> dict[str, str]:
    """name → path of every e2fsprogs tool romkit uses, or ToolMissingError naming them."""
    paths = {name: find_tool(name) for name in TOOLS}
    missing = [n for n, p in paths.items() if p is None]
    if missing:
        raise ToolMissingError(f"{', '.join(missing)} not found: changing system.img needs "
                               "e2fsprogs", hint=install_command())
    found = {n: p for n, p in paths.items() if p is not None}
    version = _version_of(found["debugfs"])
    if version is not None and version < MIN_VERSION:
        raise ToolMissingError(
            f"e2fsprogs {'.'.join(map(str, version))} is too old: romkit needs "
            f"{'.'.join(map(str, MIN_VERSION))} or later (debugfs ea_get/ea_set)",
            hint=install_command())
    return found


@functools.lru_cache(maxsize=8)
def _version_of(debugfs: str) -> tuple[int, ...] | None:
    """debugfs's version (`debugfs 1.47.0 (5-Feb-2023)` on stderr of `-V`), None if unknown."""
    try:
        proc = subprocess.run([debugfs, "-V"], capture_output=True, text=True, timeout=20,
                              env=_env())
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"debugfs (\d+)\.(\d+)(?:\.(\d+))?", proc.stderr + proc.stdout)
    return tuple(int(x or 0) for x in m.groups()) if m else None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"  # stable, parseable output
    return env


class NotExt4Error(FirmwareFormatError):
    """e2fsprogs cannot open the filesystem at all (no ext2/3/4 superblock it accepts)."""

    default_hint = "pass the build's own system.img (an ext4 image, raw or Android sparse)"


class Inode(BaseModel):
    """The attributes of a file that a replacement must keep."""

    path: str
    inode: int
    mode: int  # full st_mode: type bits and permissions
    uid: int
    gid: int
    size: int
    blocks_512: int = 0  # i_blocks in 512-byte units (what the file occupies)
    xattr_block: int = 0  # i_file_acl: the external extended-attribute block (0: none)
    times: dict[str, tuple[int, int]] = Field(default_factory=dict)  # name → (seconds, extra)
    xattrs: dict[str, bytes] = Field(default_factory=dict)

    def same_attributes(self, other: Inode) -> list[str]:
        """Names of the attributes that differ (empty: all kept)."""
        diff = [k for k in ("mode", "uid", "gid") if getattr(self, k) != getattr(other, k)]
        diff += [f"{t}" for t in _TIMES if self.times.get(t) != other.times.get(t)]
        diff += [f"xattr {n}" for n in sorted(set(self.xattrs) | set(other.xattrs))
                 if self.xattrs.get(n) != other.xattrs.get(n)]
        return diff


class DirEntry(BaseModel):
    name: str
    inode: int
    mode: int
    uid: int
    gid: int
    size: int

    @property
    def is_file(self) -> bool:
        return (self.mode & 0o170000) == 0o100000


class FsSpace(BaseModel):
    block_size: int
    block_count: int
    free_blocks: int
    free_inodes: int


class Replacement(BaseModel):
    """Put host file `source` into directory `directory` as `name`, with `attrs`' attributes,
    after removing the entries in `remove` (names in the same directory)."""

    directory: str
    name: str
    source: Path
    attrs: Inode
    remove: list[str] = Field(default_factory=list)


def _quote(text: str) -> str:
    if '"' in text or "\n" in text or "\r" in text:
        raise UsageError(f"cannot pass {text!r} to debugfs (quote or line break in the path)",
                         hint="move the files to a folder whose path has no quotes")
    return f'"{text}"'


def check_name(name: str) -> str:
    """A file name romkit will put into or look up in an image: plain, no separators."""
    if not _SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise UsageError(f"{name!r} is not a file name romkit writes into a system image",
                         hint="modem files are named with letters, digits, '.', '_' and '-'")
    return name


class Ext4Image:
    """One raw ext4 image file, read and written through e2fsprogs."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tools = require_tools()

    # -- running the tools --------------------------------------------------------------------
    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT,
                                  env=_env(), errors="replace")
        except (OSError, subprocess.SubprocessError) as exc:
            raise FirmwareFormatError(f"{Path(args[0]).name} failed on {self.path.name}: "
                                      f"{exc}", hint="check the image file and e2fsprogs"
                                      ) from exc
        if check and proc.returncode != 0:
            raise FirmwareFormatError(
                f"{Path(args[0]).name} cannot read {self.path.name}: "
                f"{_errors(proc.stderr)[:1] or proc.returncode}",
                hint="system.img is not an ext4 image or is damaged")
        return proc

    def debugfs(self, commands: Iterable[str], *, write: bool = False) -> tuple[str, list[str]]:
        """Run debugfs commands from a command file: (stdout, error lines from stderr)."""
        with tempfile.NamedTemporaryFile("w", suffix=".debugfs", delete=False) as fh:
            fh.write("\n".join(commands) + "\n")
            cmd_file = fh.name
        try:
            args = [self.tools["debugfs"], *(["-w"] if write else []), "-f", cmd_file,
                    str(self.path)]
            proc = self._run(args, check=False)
        finally:
            os.unlink(cmd_file)
        return proc.stdout, _errors(proc.stderr)

    # -- reading -------------------------------------------------------------------------------
    def list_dir(self, directory: str) -> list[DirEntry] | None:
        """Entries of `directory` (None: no such directory)."""
        out, errs = self.debugfs([f"ls -p {_quote(directory)}"])
        if errs:
            return None
        entries: list[DirEntry] = []
        for line in out.splitlines():
            parts = line.split("/")
            if len(parts) < 7 or parts[0] != "" or not parts[1].isdigit():
                continue
            name = "/".join(parts[5:-2])
            if name in (".", ".."):
                continue
            try:
                entries.append(DirEntry(name=name, inode=int(parts[1]), mode=int(parts[2], 8),
                                        uid=int(parts[3]), gid=int(parts[4]),
                                        size=int(parts[-2] or 0)))
            except ValueError:
                continue
        return entries

    def stat(self, path: str) -> Inode:
        """Mode, owner, times and extended attributes of `path` (raw, as stored)."""
        out, errs = self.debugfs([f"stat {_quote(path)}", f"ea_list {_quote(path)}"])
        if errs:
            raise FirmwareFormatError(f"{self.path.name}: cannot stat {path}: {errs[0]}",
                                      hint="the system image is damaged")
        m_ino = re.search(r"Inode:\s+(\d+)", out)
        m_user = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", out)
        m_size = re.search(r"Size:\s+(\d+)", out)
        m_blocks = re.search(r"Blockcount:\s+(\d+)", out)
        m_acl = re.search(r"File ACL:\s+(\d+)", out)
        if not (m_ino and m_user and m_size):
            raise FirmwareFormatError(f"{self.path.name}: unreadable stat of {path}",
                                      hint="check the e2fsprogs version (1.42 or later)")
        times = {t: (int(s, 16), int(e or "0", 16)) for t, s, e in _TIME_RE.findall(out)}
        mode = self._mode(path)
        names = _xattr_names(out)
        return Inode(path=path, inode=int(m_ino[1]), mode=mode, uid=int(m_user[1]),
                     gid=int(m_user[2]), size=int(m_size[1]),
                     blocks_512=int(m_blocks[1]) if m_blocks else 0, times=times,
                     xattr_block=int(m_acl[1]) if m_acl else 0,
                     xattrs=self._xattrs(path, names))

    def _mode(self, path: str) -> int:
        p = PurePosixPath(path)
        for e in self.list_dir(str(p.parent)) or []:
            if e.name == p.name:
                return e.mode
        raise FirmwareFormatError(f"{self.path.name}: {path} vanished", hint="retry")

    def _xattrs(self, path: str, names: list[str]) -> dict[str, bytes]:
        if not names:
            return {}
        with tempfile.TemporaryDirectory(prefix="romkit-ea-") as tmp:
            cmds = [f"ea_get -f {_quote(str(Path(tmp) / str(i)))} {_quote(path)} {_quote(n)}"
                    for i, n in enumerate(names)]
            _out, errs = self.debugfs(cmds)
            if errs:
                raise FirmwareFormatError(f"{self.path.name}: cannot read the extended "
                                          f"attributes of {path}: {errs[0]}",
                                          hint="the system image is damaged")
            return {n: (Path(tmp) / str(i)).read_bytes() for i, n in enumerate(names)}

    def read(self, path: str, tail: int = 0) -> tuple[str, int, bytes]:
        """(sha256, size, last `tail` bytes) of a file, streamed out by `debugfs cat`."""
        h = hashlib.sha256()
        size = 0
        last = b""
        try:
            with subprocess.Popen([self.tools["debugfs"], "-R", f"cat {_quote(path)}",
                                   str(self.path)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=_env()) as proc, \
                    _watchdog(proc):
                assert proc.stdout is not None and proc.stderr is not None
                while chunk := proc.stdout.read(READ_CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    if tail:
                        last = (last + chunk)[-tail:]
                errs = _errors(proc.stderr.read().decode("utf-8", "replace"))
            if proc.returncode < 0:
                errs = [f"debugfs was stopped after {TIMEOUT:.0f} s"]
        except OSError as exc:
            raise FirmwareFormatError(f"cannot run debugfs: {exc}",
                                      hint=install_command()) from exc
        if errs:
            raise FirmwareFormatError(f"{self.path.name}: cannot read {path}: {errs[0]}",
                                      hint="the system image is damaged")
        return h.hexdigest(), size, last

    def space(self) -> FsSpace:
        """Block size, counts and free blocks/inodes (`dumpe2fs -h`); NotExt4Error when
        e2fsprogs cannot open the filesystem."""
        proc = self._run([self.tools["dumpe2fs"], "-h", str(self.path)], check=False)
        if proc.returncode != 0:
            errs = _errors(proc.stderr)
            raise NotExt4Error(f"{self.path.name}: e2fsprogs cannot open the filesystem"
                               f"{': ' + errs[-1] if errs else ''}")
        fields: dict[str, int] = {}
        for key in ("Block size", "Block count", "Free blocks", "Free inodes"):
            m = re.search(rf"^{key}:\s+(\d+)", proc.stdout, re.MULTILINE)
            if m is None:
                raise FirmwareFormatError(f"{self.path.name}: dumpe2fs shows no {key}",
                                          hint="system.img is not an ext4 image")
            fields[key] = int(m[1])
        return FsSpace(block_size=fields["Block size"], block_count=fields["Block count"],
                       free_blocks=fields["Free blocks"], free_inodes=fields["Free inodes"])

    def free_ranges(self) -> list[tuple[int, int]]:
        """Free block ranges [start, end) from the block bitmaps (`dumpe2fs`), streamed."""
        ranges: list[tuple[int, int]] = []
        try:
            with subprocess.Popen([self.tools["dumpe2fs"], str(self.path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, env=_env()) as proc, _watchdog(proc):
                assert proc.stdout is not None
                for line in proc.stdout:
                    m = re.match(r"^\s+Free blocks: (.*)$", line)
                    if m is None:
                        continue
                    for item in m[1].split(","):
                        item = item.strip()
                        if not item:
                            continue
                        a, _, b = item.partition("-")
                        start, end = int(a), int(b or a) + 1
                        if ranges and ranges[-1][1] == start:
                            ranges[-1] = (ranges[-1][0], end)
                        else:
                            ranges.append((start, end))
        except (OSError, ValueError) as exc:
            raise FirmwareFormatError(f"cannot read the free blocks of {self.path.name}: "
                                      f"{exc}", hint="the system image is damaged") from exc
        if proc.returncode != 0:
            raise FirmwareFormatError(f"dumpe2fs could not list the free blocks of "
                                      f"{self.path.name} (exit {proc.returncode})",
                                      hint="the system image is damaged")
        return sorted(ranges)

    def fsck(self) -> tuple[bool, str]:
        """(clean, report) from `e2fsck -fn` (forced, read-only: never changes the image)."""
        proc = self._run([self.tools["e2fsck"], "-fn", str(self.path)], check=False)
        text = "\n".join(x for x in (proc.stdout + proc.stderr).splitlines()
                         if not _BANNER.match(x))
        return proc.returncode == 0, text.strip()

    # -- writing -------------------------------------------------------------------------------
    def replace(self, items: list[Replacement]) -> None:
        """Remove the old entries, write the new files and give them the old attributes.

        The caller works on a copy; any debugfs error line aborts. Three sessions:
        1. detach the replaced file's external xattr block (`file_acl 0`), `rm` the old
           entries, `write` the new files. debugfs's `rm` does not release an xattr block
           (e2fsck then finds a leaked block; e2fsprogs 1.47), so the block is moved over
           instead of freed: its attributes are exactly the ones to keep, and its
           reference count stays right (one inode lets go, one takes it).
        2. attach that block to the new inode, adding it to i_blocks as the kernel does.
        3. set the in-inode attributes that still differ, then mode, owner and timestamps
           last, so that nothing touches the inode after them.
        """
        for it in items:
            name = PurePosixPath(it.attrs.path).name
            for old in it.remove:
                if old != name and self.stat(f"{it.directory.rstrip('/')}/{old}").xattr_block:
                    raise FirmwareFormatError(
                        f"{old} keeps its extended attributes in a block of their own; "
                        "romkit can only remove such a file when a new one takes its place",
                        hint="remove the extra copy from the modem set in the image by hand")
        cmds: list[str] = []
        for it in items:
            cmds.append(f"cd {_quote(it.directory)}")
            source_name = PurePosixPath(it.attrs.path).name
            for old in it.remove:
                if old == source_name and it.attrs.xattr_block:
                    cmds.append(f"set_inode_field {_quote(check_name(old))} file_acl 0")
                cmds.append(f"rm {_quote(check_name(old))}")
            cmds.append(f"write {_quote(str(it.source))} {_quote(check_name(it.name))}")
        self._must(cmds)
        attach: list[str] = []
        block_units = 0
        for it in items:
            if not it.attrs.xattr_block:
                continue
            if not block_units:
                block_units = self.space().block_size // 512
            path = _quote(f"{it.directory.rstrip('/')}/{it.name}")
            now = self.stat(f"{it.directory.rstrip('/')}/{it.name}")
            attach += [f"set_inode_field {path} file_acl {it.attrs.xattr_block}",
                       f"set_inode_field {path} blocks {now.blocks_512 + block_units}"]
        if attach:
            self._must(attach)
        with tempfile.TemporaryDirectory(prefix="romkit-ea-") as tmp:
            cmds = []
            for i, it in enumerate(items):
                full = f"{it.directory.rstrip('/')}/{it.name}"
                path = _quote(full)
                have = self.stat(full).xattrs if it.attrs.xattr_block else {}
                for j, (xname, value) in enumerate(sorted(it.attrs.xattrs.items())):
                    if have.get(xname) == value:
                        continue
                    vfile = Path(tmp) / f"{i}-{j}"
                    vfile.write_bytes(value)
                    cmds.append(f"ea_set -f {_quote(str(vfile))} {path} {_quote(xname)}")
                a = it.attrs
                cmds += [f"set_inode_field {path} mode 0{a.mode:o}",
                         f"set_inode_field {path} uid {a.uid}",
                         f"set_inode_field {path} gid {a.gid}"]
                for t, (sec, extra) in sorted(a.times.items()):
                    cmds.append(f"set_inode_field {path} {t} 0x{sec:x}")
                    cmds.append(f"set_inode_field {path} {t}_extra 0x{extra:x}")
            self._must(cmds)

    def _must(self, cmds: list[str]) -> None:
        _out, errs = self.debugfs(cmds, write=True)
        if errs:
            raise FirmwareFormatError(f"debugfs could not change {self.path.name}: {errs[0]}",
                                      hint="nothing was changed in your folder; check the "
                                           "system image with `e2fsck -fn`")


@contextlib.contextmanager
def _watchdog(proc: subprocess.Popen[Any]) -> Iterator[None]:
    """Kill a streaming e2fsprogs child after TIMEOUT: a hostile image must not hang us."""
    timer = threading.Timer(TIMEOUT, proc.kill)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _errors(stderr: str) -> list[str]:
    return [ln.strip() for ln in stderr.splitlines() if ln.strip() and not _BANNER.match(ln)]


def _xattr_names(stat_out: str) -> list[str]:
    """Attribute names from `ea_list` / `stat` output: lines `  name (length) = value`."""
    names: list[str] = []
    for m in re.finditer(r"^  ([A-Za-z0-9_.\-]+) \((\d+)\)", stat_out, re.MULTILINE):
        if m[1] not in names and not m[1].startswith("system.data"):
            names.append(m[1])
    return names
