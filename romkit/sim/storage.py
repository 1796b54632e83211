"""The virtual phone's eMMC: one sparse file per hardware partition in a state folder.

A 4–8 GB user area must cost almost nothing on disk, so files are created with `truncate`
(holes read as zeros) and "format" punches holes instead of writing zeros. Writes land in
place — this is emulated flash, not a document, so the temp-file-and-rename rule for romkit's
own files does not apply to the image contents; the small `state.json` beside them does use
`atomic_write_text`. State survives a phone "reboot" or a new `VirtualPhone` on the same
folder, which is what lets a test flash, reconnect and verify.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from romkit.device import protocol as p
from romkit.errors import StorageError, UsageError
from romkit.fsutil import atomic_write_text
from romkit.sim import s820

STATE_FORMAT = 1
PART_FILES = {p.PART_BOOT1: "boot1.img", p.PART_BOOT2: "boot2.img", p.PART_RPMB: "rpmb.img",
              p.PART_USER: "user.img"}
PART_BY_NAME = {"BOOT1": p.PART_BOOT1, "BOOT2": p.PART_BOOT2, "RPMB": p.PART_RPMB,
                "USER": p.PART_USER}
_ZERO_CHUNK = 4 * 1024 * 1024
_FALLOC_PUNCH = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE


def _libc_fallocate() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.fallocate
    except (OSError, AttributeError, TypeError):  # TypeError: no CDLL(None) on Windows
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_FALLOCATE = _libc_fallocate()
_SEEK_DATA = getattr(os, "SEEK_DATA", None)  # sparse-file extents (Linux, macOS)
_SEEK_HOLE = getattr(os, "SEEK_HOLE", None)
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def _pread(fd: int, n: int, offset: int) -> bytes:
    """os.pread where it exists; else seek + read (callers hold the storage lock)."""
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, n)


def _pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
    """os.pwrite where it exists; else seek + write (callers hold the storage lock)."""
    if hasattr(os, "pwrite"):
        return os.pwrite(fd, data, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.write(fd, data)


def part_sizes(storage: str) -> dict[int, int]:
    """Byte sizes of the hardware partitions for a storage variant ("4G" / "8G")."""
    if storage not in s820.USER_SIZE:
        raise UsageError(f"unknown storage size {storage!r}",
                         hint=f"use one of {', '.join(s820.USER_SIZE)}")
    return {p.PART_BOOT1: s820.BOOT_SIZE, p.PART_BOOT2: s820.BOOT_SIZE,
            p.PART_RPMB: s820.RPMB_SIZE, p.PART_USER: s820.USER_SIZE[storage]}


def resolve_part(part: int | str) -> int:
    """Partition id from an id (1, 2, 3, 8) or a name ("BOOT1", "user", …)."""
    if isinstance(part, str):
        key = part.strip().upper()
        if key not in PART_BY_NAME:
            raise UsageError(f"unknown eMMC partition {part!r}",
                             hint="use BOOT1, BOOT2, RPMB or USER")
        return PART_BY_NAME[key]
    if part not in PART_FILES:
        raise UsageError(f"unknown eMMC partition id {part}", hint="use 1, 2, 3 or 8")
    return part


class EmmcStorage:
    """Random access to the phone's BOOT1 / BOOT2 / RPMB / USER areas."""

    def __init__(self, state_dir: Path, storage: str = "4G") -> None:
        self.state_dir = Path(state_dir)
        self.storage = storage
        self.sizes = part_sizes(storage)
        self._fds: dict[int, int] = {}
        self._lock = threading.RLock()

    # -- state folder ------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def exists(self) -> bool:
        """True if the folder already holds a phone (of any size)."""
        return self.state_file.is_file() and all(
            (self.state_dir / name).is_file() for name in PART_FILES.values())

    def check_compatible(self) -> None:
        """Refuse to reuse a folder made for the other storage variant."""
        try:
            meta = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StorageError(f"cannot read the virtual phone state {self.state_file}: {exc}",
                               hint="run `romkit sim --reset` to recreate it") from exc
        if not isinstance(meta, dict) or meta.get("storage") != self.storage:
            have = meta.get("storage") if isinstance(meta, dict) else None
            raise UsageError(
                f"the state folder {self.state_dir} holds a {have} phone, not {self.storage}",
                hint=f"use --storage {have}, another --state folder, or --reset")
        for part, name in PART_FILES.items():
            if (self.state_dir / name).stat().st_size != self.sizes[part]:
                raise StorageError(f"{name} in {self.state_dir} has the wrong size",
                                   hint="run `romkit sim --reset` to recreate the state")

    def create_blank(self, meta: dict[str, object]) -> None:
        """(Re)create all partitions as holes and record `meta` in state.json."""
        with self._lock:
            self.close()
            try:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                for part, name in PART_FILES.items():
                    tmp = self.state_dir / f".{name}.new"
                    with tmp.open("wb") as fh:
                        fh.truncate(self.sizes[part])
                    os.replace(tmp, self.state_dir / name)
            except OSError as exc:
                raise StorageError(f"cannot create the virtual eMMC in {self.state_dir}: "
                                   f"{exc.strerror}",
                                   hint="choose a writable --state folder") from exc
            atomic_write_text(self.state_file, json.dumps(
                {"format": STATE_FORMAT, "storage": self.storage, **meta}, indent=2) + "\n")

    def _fd(self, part: int) -> int:
        fd = self._fds.get(part)
        if fd is None:
            path = self.state_dir / PART_FILES[part]
            try:
                fd = os.open(path, os.O_RDWR | _O_BINARY)
            except OSError as exc:
                raise StorageError(f"cannot open {path}: {exc.strerror}",
                                   hint="run `romkit sim --reset` to recreate the state") from exc
            self._fds[part] = fd
        return fd

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    # -- data --------------------------------------------------------------------------------
    def size(self, part: int | str) -> int:
        return self.sizes[resolve_part(part)]

    def in_range(self, part: int, offset: int, length: int) -> bool:
        return part in self.sizes and offset >= 0 and length >= 0 and \
            offset + length <= self.sizes[part]

    def _check(self, part: int | str, offset: int, length: int) -> int:
        pid = resolve_part(part)
        if not self.in_range(pid, offset, length):
            raise StorageError(
                f"range {offset:#x}+{length:#x} is outside partition {pid} "
                f"({self.sizes[pid]:#x} bytes)", hint="check the offset and length")
        return pid

    def read(self, part: int | str, offset: int, length: int) -> bytes:
        """Bytes as the phone would read them (holes read as zeros)."""
        pid = self._check(part, offset, length)
        with self._lock:
            fd = self._fd(pid)
            chunks = []
            done = 0
            while done < length:
                chunk = _pread(fd, min(length - done, 1 << 26), offset + done)
                if not chunk:  # past EOF cannot happen for a correctly sized file
                    chunk = bytes(length - done)
                chunks.append(chunk)
                done += len(chunk)
            return b"".join(chunks)

    def write(self, part: int | str, offset: int, data: bytes | bytearray | memoryview) -> None:
        pid = self._check(part, offset, len(data))
        view = memoryview(data).cast("B")
        with self._lock:
            fd = self._fd(pid)
            done = 0
            try:
                while done < len(view):
                    done += _pwrite(fd, view[done:], offset + done)
            except OSError as exc:
                raise StorageError(f"the virtual eMMC could not be written: {exc.strerror}",
                                   hint="free disk space in the --state folder") from exc

    def zero(self, part: int | str, offset: int, length: int) -> None:
        """Make a range read as zeros, touching only the extents that hold data."""
        pid = self._check(part, offset, length)
        end = offset + length
        with self._lock:
            fd = self._fd(pid)
            pos = offset
            while pos < end:
                if _SEEK_DATA is None or _SEEK_HOLE is None:  # no extent map: all is data
                    self._zero_extent(fd, pos, end - pos)
                    return
                try:
                    data_at = os.lseek(fd, pos, _SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # only holes from here on
                        return
                    data_at = pos  # SEEK_DATA unsupported: treat everything as data
                if data_at >= end:
                    return
                try:
                    hole_at = min(os.lseek(fd, data_at, _SEEK_HOLE), end)
                except OSError:
                    hole_at = end
                self._zero_extent(fd, data_at, hole_at - data_at)
                pos = hole_at

    def _zero_extent(self, fd: int, offset: int, length: int) -> None:
        if _FALLOCATE is not None and _FALLOCATE(fd, _FALLOC_PUNCH, offset, length) == 0:
            return
        zeros = bytes(min(length, _ZERO_CHUNK))
        done = 0
        while done < length:
            n = min(len(zeros), length - done)
            done += _pwrite(fd, zeros[:n], offset + done)

    def allocated_bytes(self, part: int | str) -> int:
        """Bytes the partition's file really occupies on disk (sparse-ness checks)."""
        pid = resolve_part(part)
        return os.stat(self.state_dir / PART_FILES[pid]).st_blocks * 512
