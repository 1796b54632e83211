"""The one way romkit changes files: write a temp file beside the target, fsync, rename.

A crash, Ctrl-C or power loss therefore leaves either the old file or the new one, never a
half-written mix. Hashing helpers live here too because every verifier needs them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from romkit.errors import DiskError

CHUNK = 4 * 1024 * 1024


def _disk_error(exc: OSError, path: Path, action: str) -> DiskError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "check the folder's permissions or choose a writable location"
    elif exc.errno == errno.ENOSPC:
        hint = "free some disk space and run the command again"
    else:
        hint = "check the path and try again"
    return DiskError(f"cannot {action} {path}: {exc.strerror or exc}", hint=hint)


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temp file next to `path`; on clean exit fsync it and rename it over `path`."""
    target = Path(path)
    if "w" not in mode:
        raise ValueError("atomic_open is for writing")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=target.parent)
    except OSError as exc:
        raise _disk_error(exc, target, "write") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
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


def atomic_copy(src: Path | str, dst: Path | str) -> None:
    """Copy `src` to `dst` through a temp file so `dst` is never seen half-copied."""
    src_path = Path(src)
    try:
        with src_path.open("rb") as fin, atomic_open(dst, "wb") as fout:
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
