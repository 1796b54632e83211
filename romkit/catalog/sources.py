"""Where local catalog documents come from: the built-in files and the user's own files.

Built-in files are `paths.builtin_catalog_dir()/*.toml` (the top-level `catalog/` data folder);
user files are `config_dir()/catalogs/*.toml|*.json` (put there by `romkit catalog import`)
followed by the user mirror list `config_dir()/mirrors.toml` (written by `add-mirror`), which may
hold only `[[mirror]]` tables.
"""

from __future__ import annotations

from pathlib import Path

from romkit import paths
from romkit.catalog.document import CatalogDocument, read_catalog_file
from romkit.catalog.errors import CatalogFormatError
from romkit.catalog.models import _SECTIONS

USER_CATALOG_DIR = "catalogs"
USER_MIRRORS_FILE = "mirrors.toml"


def builtin_documents() -> list[CatalogDocument]:
    folder = paths.builtin_catalog_dir()
    return [read_catalog_file(p, "builtin") for p in sorted(folder.glob("*.toml"))]


def user_catalog_dir() -> Path:
    return paths.config_dir() / USER_CATALOG_DIR


def user_mirrors_path() -> Path:
    return paths.config_dir() / USER_MIRRORS_FILE


def _user_catalog_files(exclude: str | None = None) -> list[Path]:
    folder = user_catalog_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in (".toml", ".json") and p.is_file()
                  and not p.name.startswith(".") and p.name != exclude)


def _user_mirror_documents() -> list[CatalogDocument]:
    mirrors = user_mirrors_path()
    if not mirrors.is_file():
        return []
    doc = read_catalog_file(mirrors, "user")
    if any(doc.sections.get(s) for s in _SECTIONS):
        raise CatalogFormatError(f"{mirrors}: a mirror list may only hold [[mirror]] tables",
                                 hint="put builds/resources/devices in a catalog file and "
                                      "use `romkit catalog import`")
    return [doc]


def user_documents(exclude: str | None = None) -> list[CatalogDocument]:
    """User catalog files, then the user mirror list (so its mirrors see every entry)."""
    docs = [read_catalog_file(p, "user") for p in _user_catalog_files(exclude)]
    return docs + _user_mirror_documents()

