"""The one way romkit changes files: write a temp file beside the target, fsync, rename.

A crash, Ctrl-C or power loss therefore leaves either the old file or the new one, never a
half-written mix. The new file keeps the permission bits of the file it replaces (a new file
gets what the user's umask allows, as `open()` would), because a rewrite that silently turns
a 0644 image into 0600 breaks the next tool that reads it. Hashing helpers live here too
because every verifier needs them.

Crash injection: with `ROMKIT_TEST_CRASH_AFTER=N` in the environment the process dies
(`os._exit(CRASH_EXIT)`, no cleanup, like `kill -9`) at the N-th `crash_point` it passes.
Every temp-file rename and removal here is such a point (before and after), so a test can
kill a command at each of its file changes in turn and check that a rerun and an undo
recover. Unset, a crash point costs one environment lookup.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from romkit.errors import DiskError

CHUNK = 4 * 1024 * 1024
CRASH_ENV = "ROMKIT_TEST_CRASH_AFTER"
CRASH_EXIT = 86
_crash_count = 0


def crash_point(label: str) -> None:
    """Die here, like `kill -9`, if this is the crash point `ROMKIT_TEST_CRASH_AFTER` names.

    Used only by tests: the label goes to stderr so a failing run says where it died."""
    global _crash_count
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    _crash_count += 1
    if str(_crash_count) == wanted.strip():
        sys.stderr.write(f"romkit: injected crash #{_crash_count} at {label}\n")
        sys.stderr.flush()
        os._exit(CRASH_EXIT)


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def new_file_mode() -> int:
    """The mode `open(path, "w")` would give a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def new_dir_mode() -> int:
    """The mode `mkdir` would give a new folder: 0777 less the umask."""
    return 0o777 & ~current_umask()


def file_mode(path: Path | str) -> int | None:
    """Permission bits of an existing regular file (not following a symlink), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None


def set_mode(path: Path | str, mode: int) -> None:
    """chmod with romkit's error: used by undo to give a restored file its old mode back."""
    p = Path(path)
    try:
        os.chmod(p, mode)
    except OSError as exc:
        raise _disk_error(exc, p, "set the permissions of") from exc


def remove_file(path: Path | str) -> None:
    """Delete a file (a missing one is fine), fsync its folder; a crash point on each side."""
    p = Path(path)
    crash_point(f"remove {p.name}")
    try:
        p.unlink(missing_ok=True)
    except OSError as exc:
        raise _disk_error(exc, p, "remove") from exc
    _fsync_dir(p.parent)
    crash_point(f"removed {p.name}")


def stale_temps(path: Path | str) -> list[Path]:
    """Temp files `atomic_open` left beside `path` when killed before its rename."""
    target = Path(path)
    try:
        return sorted(target.parent.glob(f".{glob_escape(target.name)}.*.tmp"))
    except OSError:
        return []


def glob_escape(name: str) -> str:
    """`name` with glob metacharacters bracketed, so it matches only itself."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _disk_error(exc: OSError, path: Path, action: str) -> DiskError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "check the folder's permissions or choose a writable location"
    elif exc.errno == errno.ENOSPC:
        hint = "free some disk space and run the command again"
    else:
        hint = "check the path and try again"
    return DiskError(f"cannot {action} {path}: {exc.strerror or exc}", hint=hint)


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "wb", *, perms: int | None = None,
                **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temp file next to `path`; on clean exit fsync it and rename it over `path`.

    The new file gets `perms` if given, else the mode of the file it replaces, else the
    umask's default (mkstemp alone would make every file 0600)."""
    target = Path(path)
    if "w" not in mode:
        raise ValueError("atomic_open is for writing")
    if perms is None:
        perms = file_mode(target)
    if perms is None:
        perms = new_file_mode()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=target.parent)
    except OSError as exc:
        raise _disk_error(exc, target, "write") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), perms)
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        crash_point(f"rename over {target.name}")
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        crash_point(f"renamed over {target.name}")
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _disk_error(exc, target, "write") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    with atomic_open(path, "w", encoding=encoding, newline="") as fh:
        fh.write(text)


def atomic_copy(src: Path | str, dst: Path | str, *, perms: int | None = None) -> None:
    """Copy `src` to `dst` through a temp file so `dst` is never seen half-copied.

    `dst` keeps its own mode (or gets `perms`, or the umask's default when new)."""
    src_path = Path(src)
    try:
        with src_path.open("rb") as fin, atomic_open(dst, "wb", perms=perms) as fout:
            while chunk := fin.read(CHUNK):
                fout.write(chunk)
    except OSError as exc:
        raise _disk_error(exc, src_path, "read") from exc


def hash_file(path: Path | str, algorithms: Sequence[str] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file for each named hashlib algorithm, in one pass."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    p = Path(path)
    try:
        with p.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                for h in hashers.values():
                    h.update(chunk)
    except OSError as exc:
        raise _disk_error(exc, p, "read") from exc
    return {name: h.hexdigest() for name, h in hashers.items()}


def sha256_file(path: Path | str) -> str:
    return hash_file(path)["sha256"]
