"""The catalog: turns the names people use ("S820_ROW_S124", "preloader-2014") into facts.

Users know a phone and a build name from a forum post, not URLs, hashes or scatter paths. The
catalog is data (TOML files, one per device family, in the top-level `catalog/` folder) plus
user extensions, and this package is the one place that loads, validates, merges and queries it.
Its modules, bottom to top: `errors`, `models`, `document` (parsing one file), `sources`
(built-in and user files), `query` (the `Catalog` class), `builder` (merging), `remote` (the
remote index), `extensions` (add-mirror, import). This module re-exports the public names, so
callers import from `romkit.catalog` only.

Where entries come from, in merge order:
  1. built-in files (`paths.builtin_catalog_dir()/*.toml`),
  2. a remote index (`ROMKIT_CATALOG_URL` or `remote_url`, TOML or JSON over HTTP, cached),
  3. user catalog files (`config_dir()/catalogs/*.toml|*.json`, put there by `import`),
  4. the user mirror list (`config_dir()/mirrors.toml`, written by `add-mirror`).

Merging rules (why: a shop must be able to add its mirrors, but no file may quietly alter what
another file says a build *is*):
  - a later file may add devices, builds and resources;
  - for an id already known it may add mirrors, aliases, notes and sources, and fill facts that
    are still unknown (hashes, size, file name ...); a fact that is known and differs is a
    `CatalogConflictError` naming both files;
  - mirrors are tried user first, then remote index, then built-in.

Unknown facts are absent (None / empty), never guessed; each entry records where its facts come
from in `sources` with a confidence (verified / reported / inferred / from-name).
"""

from __future__ import annotations

from romkit.catalog.document import (
    MAX_CATALOG_BYTES,
    SCHEMA_VERSION,
    CatalogDocument,
    parse_catalog_document,
    read_catalog_file,
)
from romkit.catalog.errors import CatalogConflictError, CatalogFormatError
from romkit.catalog.extensions import (
    ImportResult,
    MirrorAdded,
    add_user_mirror,
    import_catalog_file,
)
from romkit.catalog.models import (
    BUILD_KINDS,
    KIND_LABELS,
    MAX_SIZE,
    RESOURCE_KINDS,
    Build,
    BuildKind,
    Confidence,
    Device,
    Downloadable,
    Entry,
    Hashes,
    MemoryVariant,
    Mirror,
    Origin,
    Resource,
    ResourceKind,
    Source,
    UpgradeStep,
    UsbId,
    date_from_name,
)
from romkit.catalog.query import Catalog
from romkit.catalog.remote import CATALOG_URL_ENV, REMOTE_TIMEOUT, fetch_remote_index
from romkit.catalog.sources import (
    USER_CATALOG_DIR,
    USER_MIRRORS_FILE,
    builtin_documents,
    user_catalog_dir,
    user_documents,
    user_mirrors_path,
)

__all__ = [
    "BUILD_KINDS",
    "CATALOG_URL_ENV",
    "KIND_LABELS",
    "MAX_CATALOG_BYTES",
    "MAX_SIZE",
    "REMOTE_TIMEOUT",
    "RESOURCE_KINDS",
    "SCHEMA_VERSION",
    "USER_CATALOG_DIR",
    "USER_MIRRORS_FILE",
    "Build",
    "BuildKind",
    "Catalog",
    "CatalogConflictError",
    "CatalogDocument",
    "CatalogFormatError",
    "Confidence",
    "Device",
    "Downloadable",
    "Entry",
    "Hashes",
    "ImportResult",
    "MemoryVariant",
    "Mirror",
    "MirrorAdded",
    "Origin",
    "Resource",
    "ResourceKind",
    "Source",
    "UpgradeStep",
    "UsbId",
    "add_user_mirror",
    "builtin_documents",
    "date_from_name",
    "fetch_remote_index",
    "import_catalog_file",
    "parse_catalog_document",
    "read_catalog_file",
    "user_catalog_dir",
    "user_documents",
    "user_mirrors_path",
]
