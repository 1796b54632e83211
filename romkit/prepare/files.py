"""Small file facts the steps share: sha256 and size of a file that may be missing, the hash
of planned bytes, a path relative to the firmware folder, and the DiskError for a failed OS
call on one of those files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from romkit.errors import DiskError
from romkit.fsutil import sha256_file


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
