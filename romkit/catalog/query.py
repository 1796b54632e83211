"""The merged `Catalog`: its loading entry points and its read-only queries.

`Catalog.load` gathers documents in merge order (built-in, remote index, user files, user
mirror list) and `from_documents` merges them; `find`, `resolve`, `device`, `resource_for`,
`select` and `search` answer questions about the result. The builder and the remote index
module construct and use `Catalog`, so the two loading classmethods import them when called
rather than at module import (that keeps the package free of import cycles).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from romkit.catalog.document import CatalogDocument, read_catalog_file
from romkit.catalog.models import (
    BUILD_KINDS,
    KIND_LABELS,
    RESOURCE_KINDS,
    Build,
    Device,
    Entry,
    Origin,
    Resource,
)
from romkit.catalog.sources import builtin_documents, user_documents
from romkit.errors import CatalogError, UsageError
from romkit.progress import ProgressCallback, Reporter


class Catalog:
    """All known devices, builds and resources after merging; read-only queries."""

    def __init__(self, devices: list[Device], entries: list[Entry],
                 origins: dict[str, list[str]] | None = None,
                 warnings: list[str] | None = None) -> None:
        self.devices: list[Device] = devices
        self.builds: list[Build] = [e for e in entries if isinstance(e, Build)]
        self.resources: list[Resource] = [e for e in entries if isinstance(e, Resource)]
        self.warnings: list[str] = list(warnings or [])
        self._origins = origins or {}
        self._names: dict[str, Entry] = {}
        for entry in entries:
            for name in entry.names():
                self._names.setdefault(name.casefold(), entry)
        self._devices: dict[str, Device] = {}
        for dev in devices:
            for name in [dev.id, *dev.names]:
                self._devices.setdefault(name.casefold(), dev)

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, remote_url: str | None = None, on_progress: ProgressCallback | None = None,
             *, include_user: bool = True) -> Catalog:
        """Built-in catalog + remote index (`remote_url` or $ROMKIT_CATALOG_URL) + user files."""
        from romkit.catalog.remote import CATALOG_URL_ENV, fetch_remote_index  # uses Catalog

        rep = Reporter(on_progress)
        docs = builtin_documents()
        url = remote_url or os.environ.get(CATALOG_URL_ENV) or None
        if url:
            remote = fetch_remote_index(url, rep)
            if remote is not None:
                docs.append(remote)
        if include_user:
            docs += user_documents()
        catalog = cls.from_documents(docs)
        for message in catalog.warnings:
            rep.warning(message)
        return catalog

    @classmethod
    def from_documents(cls, docs: Iterable[CatalogDocument]) -> Catalog:
        from romkit.catalog.builder import _Builder  # the builder constructs Catalog

        builder = _Builder()
        for doc in docs:
            builder.add(doc)
        catalog = builder.finish()
        catalog.warnings = builder.warnings
        return catalog

    @classmethod
    def from_files(cls, files: Sequence[Path], origin: Origin = "builtin") -> Catalog:
        return cls.from_documents(read_catalog_file(Path(p), origin) for p in files)

    # -- queries ---------------------------------------------------------------------------
    @property
    def entries(self) -> list[Entry]:
        return [*self.builds, *self.resources]

    def origins(self, entry: Entry | Device) -> list[str]:
        """The files that defined (first) and extended an entry."""
        section = "device" if isinstance(entry, Device) else entry.entry_type
        return list(self._origins.get(f"{section}:{entry.id.casefold()}", []))

    def find(self, name: str) -> Entry | None:
        """Exact id or alias (case-insensitive), or None."""
        return self._names.get(name.strip().casefold())

    def resolve(self, name: str, kind: Literal["build", "resource"] | None = None) -> Entry:
        """The build/resource called `name`; CatalogError with candidates otherwise.

        Only exact ids and aliases resolve: a prefix that fits several entries is reported as
        ambiguous with the candidates, and a near miss as "did you mean", because flashing the
        wrong build on a guess is worse than asking.
        """
        wanted = name.strip()
        pool = [e for e in self.entries if kind is None or e.entry_type == kind]
        what = kind or "build or resource"
        entry = self.find(wanted)
        if entry is not None and (kind is None or entry.entry_type == kind):
            return entry
        if entry is not None:
            raise CatalogError(f"{wanted!r} is a {entry.entry_type}, not a {what}",
                               hint=f"`romkit catalog show {entry.id}` shows what it is")
        folded = wanted.casefold()
        prefixed = {e.id: e for e in pool
                    for n in e.names() if folded and n.casefold().startswith(folded)}
        if len(prefixed) > 1:
            ids = sorted(prefixed)
            raise CatalogError(f"{wanted!r} is ambiguous: it could be {', '.join(ids)}",
                               hint="use one of the full ids listed",
                               details={"candidates": ids})
        names = {n.casefold(): e.id for e in pool for n in e.names()}
        close = list(prefixed) or [names[m] for m in difflib.get_close_matches(
            folded, list(names), n=5, cutoff=0.6)]
        close = list(dict.fromkeys(close))[:3]
        if close:
            raise CatalogError(f"unknown {what} {wanted!r}; did you mean {' or '.join(close)}?",
                               hint="`romkit catalog list` shows every known name",
                               details={"candidates": close})
        raise CatalogError(f"unknown {what} {wanted!r}",
                           hint="`romkit catalog list` or `romkit catalog search TEXT` shows "
                                "known names; `romkit catalog import` adds your own")

    def device(self, id_or_name: str) -> Device:
        dev = self._devices.get(id_or_name.strip().casefold())
        if dev is not None:
            return dev
        close = difflib.get_close_matches(id_or_name.strip().casefold(), list(self._devices),
                                          n=3, cutoff=0.6)
        ids = list(dict.fromkeys(self._devices[c].id for c in close))
        suffix = f"; did you mean {' or '.join(ids)}?" if ids else ""
        raise CatalogError(f"unknown device {id_or_name!r}{suffix}",
                           hint="known devices: " + ", ".join(d.id for d in self.devices))

    def resource_for(self, device_id: str, kind: str, year: int | None = None) -> Resource | None:
        """The resource of `kind` for a device (and production year, when it matters).

        A resource restricted to some production years (e.g. the 2014 preloader) is only
        returned for those years; with no year, only unrestricted resources qualify.
        """
        dev = self.device(device_id)
        candidates = [r for r in self.resources if r.device == dev.id and r.kind == kind]
        if year is not None:
            for r in candidates:
                if year in r.device_years:
                    return r
        return next((r for r in candidates if not r.device_years), None)

    def select(self, device: str | None = None, region: str | None = None,
               kind: str | None = None) -> list[Entry]:
        """Entries filtered the way `catalog list` filters them."""
        result = self.entries
        if device:
            dev_id = self.device(device).id
            result = [e for e in result if e.device == dev_id]
        if region:
            reg = region.strip().upper()
            if reg not in ("ROW", "CN"):
                raise UsageError(f"unknown region {region!r}", hint="use ROW or CN")
            result = [e for e in result if isinstance(e, Build) and e.region == reg]
        if kind:
            k = kind.strip().lower()
            if k == "build":
                result = [e for e in result if isinstance(e, Build)]
            elif k == "resource":
                result = [e for e in result if isinstance(e, Resource)]
            elif k in BUILD_KINDS or k in RESOURCE_KINDS:
                result = [e for e in result if e.kind == k]
            else:
                raise UsageError(f"unknown kind {kind!r}",
                                 hint="use one of: build, resource, "
                                      + ", ".join((*BUILD_KINDS, *RESOURCE_KINDS)))
        return result

    def search(self, text: str) -> list[Entry]:
        """Entries whose names, facts or notes contain every word of `text` (any case)."""
        words = text.casefold().split()
        return [e for e in self.entries if all(w in self._haystack(e) for w in words)]

    def _haystack(self, entry: Entry) -> str:
        dev = self._devices.get(entry.device.casefold())
        parts: list[str] = [*entry.names(), entry.title or "", entry.file_name or "",
                            *entry.notes, entry.kind or "", KIND_LABELS.get(entry.kind or "", "")]
        if dev is not None:
            parts += [dev.id, *dev.names]
        if isinstance(entry, Build):
            parts += [entry.region or "", entry.android or "", entry.android_codename or "",
                      entry.date.isoformat() if entry.date else "", *entry.languages,
                      *entry.storage_variants]
        else:
            parts += [entry.version or "", entry.platform or ""]
        return "\n".join(parts).casefold()

