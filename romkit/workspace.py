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


def record_current_firmware(folder: Path) -> None:
    state = paths.ensure_dir(paths.data_dir()) / _STATE
    atomic_write_text(state, json.dumps({"firmware": str(folder.resolve())}, indent=2))


def current_firmware() -> Path | None:
    state = paths.data_dir() / _STATE
    try:
        value = json.loads(state.read_text(encoding="utf-8")).get("firmware")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(value) if isinstance(value, str) else None


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
