"""The remote catalog index: fetched over HTTP, validated, cached, and the cache as fallback.

A shop hosts one index (`ROMKIT_CATALOG_URL` or `--catalog`, TOML or JSON) for its clients. It
is validated against the built-in catalog before it is cached, and a failed fetch falls back to
the last good cached copy so a network hiccup does not stop anyone working.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import requests

from romkit import paths
from romkit.catalog.document import MAX_CATALOG_BYTES, CatalogDocument, parse_catalog_document
from romkit.catalog.errors import CatalogConflictError, CatalogFormatError
from romkit.catalog.query import Catalog
from romkit.catalog.sources import builtin_documents
from romkit.errors import UsageError
from romkit.fsutil import atomic_write_text
from romkit.progress import Reporter

REMOTE_TIMEOUT = 15.0
CATALOG_URL_ENV = "ROMKIT_CATALOG_URL"


def _remote_cache_path(url: str) -> Path:
    digest = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return paths.cache_dir() / "catalog" / f"remote-{digest}.txt"


def fetch_remote_index(url: str, rep: Reporter) -> CatalogDocument | None:
    """Fetch, validate and cache a remote catalog index; fall back to the cached copy.

    A shop hosts one index for all its clients, so a network hiccup must not stop anyone
    working: a failed fetch uses the last good copy with a warning (or, with none cached, goes
    on without the index). A *malformed* index with no good copy cached is an error.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"remote catalog URL must be http:// or https://: {url!r}",
                         hint=f"check --catalog / ${CATALOG_URL_ENV}")
    cache = _remote_cache_path(url)
    fmt: Literal["toml", "json"] | None = None
    try:
        data, fmt = _download_index(url)
        doc = parse_catalog_document(data, url, "remote", fmt)
        Catalog.from_documents([*builtin_documents(), doc])  # validate before caching
    except _FetchFailed as exc:
        return _cached_index(url, cache, f"cannot fetch remote catalog {url}: {exc}", rep, None)
    except CatalogFormatError as exc:
        if isinstance(exc, CatalogConflictError):
            raise
        return _cached_index(url, cache, f"remote catalog is malformed: {exc.message}", rep, exc)
    atomic_write_text(cache, json.dumps({"url": url, "format": fmt, "text": doc.text}))
    rep.info(f"remote catalog {url}: {sum(len(v) for v in doc.sections.values())} entries")
    return doc


class _FetchFailed(Exception):
    pass


def _download_index(url: str) -> tuple[bytes, Literal["toml", "json"] | None]:
    try:
        with requests.get(url, timeout=REMOTE_TIMEOUT, stream=True) as resp:
            if resp.status_code != 200:
                raise _FetchFailed(f"HTTP {resp.status_code}")
            chunks: list[bytes] = []
            total = 0
            for chunk in resp.iter_content(64 * 1024):
                total += len(chunk)
                if total > MAX_CATALOG_BYTES:
                    raise CatalogFormatError(f"{url}: larger than {MAX_CATALOG_BYTES} bytes, "
                                             "not a catalog index")
                chunks.append(chunk)
            ctype = resp.headers.get("Content-Type", "").lower()
    except requests.RequestException as exc:
        raise _FetchFailed(type(exc).__name__ + (f": {exc}" if str(exc) else "")) from exc
    fmt: Literal["toml", "json"] | None = "json" if "json" in ctype else (
        "toml" if "toml" in ctype else None)
    return b"".join(chunks), fmt


def _cached_index(url: str, cache: Path, problem: str, rep: Reporter,
                  error: CatalogFormatError | None) -> CatalogDocument | None:
    try:
        stored = json.loads(cache.read_text(encoding="utf-8"))
        text, fmt = stored["text"], stored.get("format")
        if not isinstance(text, str) or fmt not in ("toml", "json", None):
            raise ValueError("bad cache record")
    except (OSError, ValueError, KeyError, TypeError):
        if error is not None:
            raise error from None
        rep.warning(f"{problem}; no cached copy, continuing without it")
        return None
    rep.warning(f"{problem}; using the cached copy")
    return parse_catalog_document(text, f"{url} (cached)", "remote", fmt)

