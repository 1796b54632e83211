"""Inter-process locks that die with their holder: one writer per phone.

Why: in a repair shop several romkit processes run at once (a station flashing many phones,
a technician's second terminal). Two sessions writing one phone would interleave partition
writes and journal updates; the phone's eMMC CID is the only identity that survives a
re-plug onto another USB port, so the lock is keyed by CID. The lock is an OS file lock on
an open descriptor (flock on POSIX, msvcrt.locking on Windows): it is released by the kernel
when the holder exits or is killed, so a crashed run never leaves a stale lock behind.

Ports need no lock file: `SerialTransport` opens ports with pyserial's `exclusive=True`
(flock on the tty on POSIX; Windows opens COM ports exclusively by itself).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from romkit import paths
from romkit.errors import DeviceError

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True


class PhoneBusyError(DeviceError):
    """Another romkit process is writing this phone right now."""


def locks_dir() -> Path:
    return paths.data_dir() / "locks"


def _lock_path(key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
    return locks_dir() / f"{safe}.lock"


def holder(key: str) -> dict[str, object] | None:
    """Who holds the lock for `key` (pid, what), if someone does; for messages only."""
    path = _lock_path(key)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            return None  # nobody holds it (our probe lock is released by the close below)
        try:
            raw = path.read_text(encoding="utf-8").strip()
            return dict(json.loads(raw)) if raw else {}
        except (OSError, ValueError, TypeError):
            return {}
    finally:
        os.close(fd)


@contextmanager
def phone_lock(cid: str, what: str = "flash") -> Iterator[Path]:
    """Hold the write lock of the phone with eMMC CID `cid` for the duration of the block.

    Raises PhoneBusyError at once (no waiting: the other session may run for minutes and the
    user should know now) naming the process that holds it.
    """
    path = _lock_path(f"phone-{cid.upper()}")
    paths.ensure_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            info = holder(f"phone-{cid.upper()}") or {}
            who = f"process {info.get('pid')} ({info.get('what')})" if info.get("pid") else \
                "another romkit process"
            raise PhoneBusyError(
                f"phone {cid} is being written by {who}",
                hint="wait for that run to finish (or stop it); two sessions must never write "
                     "one phone at the same time",
                details={"cid": cid, "holder": info})
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps({"pid": os.getpid(), "what": what}).encode())
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a waiter)
