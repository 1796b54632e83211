"""Where running virtual phones announce their ports, so the host finds them like USB phones.

Why: a real MediaTek phone shows up as a USB serial port with VID 0E8D and a PID that says its
boot stage, and it *re-enumerates* (vanishes and comes back, often under another name) when
its USB speed changes or it resets. A virtual phone on a pty or a TCP socket has no USB
descriptor, so without this registry the host could find it only through `--port`, and could
never follow it to its next port. Each running `romkit sim` writes one small JSON file per
virtual phone into `ports_dir()`; the file is replaced (atomically) whenever the phone's port
changes and removed when it unplugs. The host reads these files next to pyserial's list of
real ports.

This module is neutral ground: the virtual phone writes entries and the engine reads them; it
holds no protocol logic. Entries of processes that died are ignored and cleaned up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ValidationError

from romkit import paths
from romkit.fsutil import atomic_write_text


class VirtualPort(BaseModel):
    """One virtual phone's current USB-like identity.

    `phone_id` stays the same across re-enumerations (like a USB location on a hub); `port`
    is what pyserial opens now (a pty path or a `socket://` URL); `vid`/`pid` say the boot
    stage exactly as on real USB (0003 BROM, 2000 preloader, 2001 DA).
    """

    phone_id: str
    port: str
    vid: int = 0x0E8D
    pid: int = 0x0003
    owner_pid: int
    generation: int = 0  # bumped on every re-enumeration
    description: str = "romkit virtual MT6589"
    former_ports: list[str] = []  # where it was before, newest first (kept by announce())


def ports_dir() -> Path:
    """Folder of announcements (under the data dir, so ROMKIT_HOME isolates tests)."""
    return paths.data_dir() / "virtual-ports"


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (so its announcements are not stale).

    POSIX: signal 0 probes without delivering anything. Windows has no such probe: there
    os.kill(pid, 0) would *terminate* the process, so the process handle is asked instead.
    """
    if pid == os.getpid():
        return True
    if os.name == "nt":  # pragma: no cover - exercised on Windows only
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _alive_windows(pid: int) -> bool:  # pragma: no cover - Windows only
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    query_limited_information, still_active = 0x1000, 259
    handle = kernel32.OpenProcess(query_limited_information, False, pid)
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return False
        return code.value == still_active
    finally:
        kernel32.CloseHandle(handle)


def _path(phone_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in phone_id)
    return ports_dir() / f"{safe}.json"


FORMER_KEPT = 16


def announce(entry: VirtualPort) -> Path:
    """Publish (or replace) a phone's entry; returns the file written.

    A replaced entry's port is remembered in `former_ports`, so a host given a port the phone
    has since left (a resume command printed before it re-enumerated) can still follow it.
    """
    target = _path(entry.phone_id)
    paths.ensure_dir(target.parent)
    old = next((e for p, e in _entries() if p == target and e is not None), None)
    if old is not None and old.port != entry.port:
        former = [old.port, *old.former_ports, *entry.former_ports]
        entry = entry.model_copy(update={"former_ports": [
            p for p in dict.fromkeys(former) if p != entry.port][:FORMER_KEPT]})
    atomic_write_text(target, entry.model_dump_json(indent=1) + "\n")
    return target


def withdraw(phone_id: str) -> None:
    """Remove a phone's entry (unplug). Missing entries are fine."""
    try:
        _path(phone_id).unlink()
    except FileNotFoundError:
        pass


def _entries() -> Iterator[tuple[Path, VirtualPort | None]]:
    folder = ports_dir()
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        try:
            yield path, VirtualPort.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, ValidationError):
            yield path, None


def list_ports() -> list[VirtualPort]:
    """Live announcements, oldest phone id first. Stale files of dead processes are removed."""
    live: list[VirtualPort] = []
    for path, entry in _entries():
        if entry is None or not _alive(entry.owner_pid):
            try:
                path.unlink()
            except OSError:
                pass
            continue
        live.append(entry)
    return live


def lookup(port: str) -> VirtualPort | None:
    """The live entry whose current port is `port`, if a virtual phone owns it."""
    return next((e for e in list_ports() if e.port == port), None)


def follow(port: str) -> VirtualPort | None:
    """The live phone that is on `port` now or, failing that, most recently left it.

    A pty number is reused by the system, so a port that some phone left may now be another
    program's terminal: a phone's current port always wins over a former one.
    """
    live = list_ports()
    current = next((e for e in live if e.port == port), None)
    if current is not None:
        return current
    moved = [(e.former_ports.index(port), e) for e in live if port in e.former_ports]
    return min(moved, key=lambda m: m[0])[1] if moved else None


def find(phone_id: str) -> VirtualPort | None:
    """The live entry of one phone, wherever it is now."""
    return next((e for e in list_ports() if e.phone_id == phone_id), None)
