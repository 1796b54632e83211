"""Where romkit keeps things on disk.

Downloads live in the cache dir, backups and prepare/flash records in the data dir, user
catalogs and mirror lists in the config dir (platformdirs locations). `ROMKIT_HOME` moves all
three under one folder, which is what tests and the demo use so they never touch the user's
real directories.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "romkit"


def _home() -> Path | None:
    value = os.environ.get("ROMKIT_HOME")
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    home = _home()
    return home / "cache" if home else Path(platformdirs.user_cache_dir(APP))


def data_dir() -> Path:
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP))


def config_dir() -> Path:
    home = _home()
    return home / "config" if home else Path(platformdirs.user_config_dir(APP))


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def builtin_catalog_dir() -> Path:
    """The catalog shipped with romkit.

    In a wheel it is packaged as `romkit/_catalog`; in a source checkout (editable install)
    it is the top-level `catalog/` folder next to the package.
    """
    packaged = Path(__file__).resolve().parent / "_catalog"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "catalog"
