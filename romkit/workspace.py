"""The "current firmware": which folder `prepare`, `flash`, `inspect` use with no argument.

`fetch` records the folder it unpacked. Commands then take an explicit path, else the current
directory if it holds a scatter file, else the recorded folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from romkit import paths
from romkit.errors import UsageError
from romkit.fsutil import atomic_write_text

_STATE = "current.json"


def has_scatter(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob("*_scatter*.txt"))


def record_current_firmware(folder: Path, build_id: str | None = None) -> None:
    """Remember the folder (and which catalog build it holds) for commands run without one."""
    state = paths.ensure_dir(paths.data_dir()) / _STATE
    record = {"firmware": str(folder.resolve()), "build": build_id}
    atomic_write_text(state, json.dumps(record, indent=2))


def _record() -> dict[str, object]:
    try:
        value = json.loads((paths.data_dir() / _STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def current_firmware() -> Path | None:
    value = _record().get("firmware")
    return Path(value) if isinstance(value, str) else None


def recorded_build(folder: Path) -> str | None:
    """The build id `fetch` recorded for `folder`, if it is the recorded current firmware."""
    record = _record()
    build, firmware = record.get("build"), record.get("firmware")
    if not isinstance(build, str) or not isinstance(firmware, str):
        return None
    return build if Path(firmware) == folder.resolve() else None


def resolve_firmware_dir(arg: Path | None) -> Path:
    """The folder a firmware command works on, or a UsageError saying how to name one."""
    if arg is not None:
        if not arg.exists():
            raise UsageError(f"folder not found: {arg}",
                             hint="pass the firmware folder (the one holding *_scatter*.txt)")
        return arg
    cwd = Path.cwd()
    if has_scatter(cwd):
        return cwd
    recorded = current_firmware()
    if recorded is not None and recorded.is_dir():
        return recorded
    raise UsageError(
        "no firmware folder given and none recorded",
        hint="pass the folder holding *_scatter*.txt, or run `romkit fetch BUILD` first",
    )
