"""Merging catalog documents, in order, into one `Catalog` (the merge rules live here).

A later file may add entries, and for a known id add mirrors, aliases, notes and sources or fill
unknown facts; a known fact that differs is a `CatalogConflictError` naming both files. After
all documents, `_Builder.finish()` checks cross-references (devices, aliases, preloaders,
upgrade paths) and applies user mirror lists, user mirrors first, then remote, then built-in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pydantic
from pydantic import BaseModel

from romkit.catalog.document import CatalogDocument, _validation_error
from romkit.catalog.errors import CatalogConflictError, CatalogFormatError
from romkit.catalog.models import (
    _SECTIONS,
    Build,
    Device,
    Downloadable,
    Entry,
    Mirror,
    Resource,
    _Any,
    _MirrorLine,
)
from romkit.catalog.query import Catalog

_ORIGIN_RANK = {"user": 0, "remote": 1, "builtin": 2}
_ADDITIVE = frozenset({"aliases", "notes", "sources", "names"})


@dataclass
class _Stats:
    added: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in _SECTIONS})
    updated: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in _SECTIONS})


class _Builder:
    """Accumulates documents in merge order; `finish()` checks cross-references."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, _Any]] = {s: {} for s in _SECTIONS}
        self.origins: dict[str, list[str]] = {}
        self.field_origin: dict[tuple[str, str, str], str] = {}
        self.stats: dict[str, _Stats] = {}
        self.mirror_docs: list[CatalogDocument] = []
        self.warnings: list[str] = []

    def add(self, doc: CatalogDocument) -> None:
        stats = self.stats.setdefault(doc.label, _Stats())
        for section, cls in _SECTIONS.items():
            table = self.entries[section]
            for raw in doc.sections.get(section, []):
                entry_id = str(raw["id"]).strip()
                key = self._lookup(section, entry_id)
                base = table.get(key)
                model, given = self._validate(doc, section, cls, raw, base)
                if isinstance(model, Downloadable):
                    for m in model.mirrors:
                        m.source = doc.origin
                if base is None:
                    table[key] = model
                    self.origins[f"{section}:{key}"] = [doc.label]
                    for name in model.model_fields_set:
                        self._note_origin(section, key, name, model, doc.label)
                    stats.added[section].append(model.id)
                else:
                    table[key] = self._merge(doc, section, key, base, model, given, entry_id)
                    self.origins[f"{section}:{key}"].append(doc.label)
                    stats.updated[section].append(base.id)
        if doc.sections.get("mirror"):
            self.mirror_docs.append(doc)

    def _lookup(self, section: str, entry_id: str) -> str:
        """Key of the known entry called `entry_id` (id, alias or device name), else a new key.

        A later file may name an existing entry by any of its names ("S124" for
        S820_ROW_S124_140404) to add mirrors or hashes to it.
        """
        wanted = entry_id.casefold()
        table = self.entries[section]
        if wanted in table:
            return wanted
        for key, model in table.items():
            names = model.names if isinstance(model, Device) else model.aliases
            if any(n.casefold() == wanted for n in names):
                return key
        return wanted

    def _note_origin(self, section: str, key: str, name: str, model: _Any,
                     label: str) -> None:
        if name == "hashes" and isinstance(model, Downloadable):
            for algo in model.hashes.known():
                self.field_origin[(section, key, f"hashes.{algo}")] = label
        else:
            self.field_origin[(section, key, name)] = label

    @staticmethod
    def _validate(doc: CatalogDocument, section: str, cls: type[_Any], raw: dict[str, Any],
                  base: _Any | None) -> tuple[_Any, set[str]]:
        data = dict(raw)
        filled: set[str] = set()
        if base is not None:  # a patch need not repeat required facts it does not change
            for name, info in cls.model_fields.items():
                if info.is_required() and name not in data:
                    data[name] = getattr(base, name)
                    filled.add(name)
        try:
            model = cls.model_validate(data)
        except pydantic.ValidationError as exc:
            raise _validation_error(doc, section, str(raw["id"]), exc) from exc
        return model, set(model.model_fields_set) - filled - {"id"}

    def _conflict(self, doc: CatalogDocument, section: str, key: str, written_id: str,
                  name: str, old: Any, new: Any) -> CatalogConflictError:
        other = self.field_origin.get((section, key, name)) or self.origins[f"{section}:{key}"][0]
        entry_id = self.entries[section][key].id
        return CatalogConflictError(
            f"{doc.where(written_id)}: {section} {entry_id}: {name} = {_short(new)} "
            f"conflicts with {_short(old)} in {other}")

    def _merge(self, doc: CatalogDocument, section: str, key: str, base: _Any,
               patch: _Any, given: set[str], written_id: str) -> _Any:
        update: dict[str, Any] = {}
        for name in sorted(given):
            old, new = getattr(base, name), getattr(patch, name)
            if name == "mirrors":
                known = {m.url for m in old}
                update[name] = [*old, *(m for m in new if m.url not in known)]
            elif name == "hashes":
                merged = old.model_copy()
                for algo, value in new.known().items():
                    current = getattr(old, algo)
                    if current is None:
                        setattr(merged, algo, value)
                        self.field_origin[(section, key, f"hashes.{algo}")] = doc.label
                    elif current != value:
                        raise self._conflict(doc, section, key, written_id,
                                             f"hashes.{algo}", current, value)
                update[name] = merged
            elif name in _ADDITIVE:
                update[name] = [*old, *(v for v in new if v not in old)]
            elif name == "memory_by_year":
                merged_years = dict(old)
                for year, variant in new.items():
                    if year in merged_years and merged_years[year] != variant:
                        raise self._conflict(doc, section, key, written_id,
                                             f"memory_by_year.{year}", merged_years[year],
                                             variant)
                    merged_years[year] = variant
                update[name] = merged_years
            elif old is None or old == [] or old == {}:
                update[name] = new
                self.field_origin[(section, key, name)] = doc.label
            elif old != new:
                raise self._conflict(doc, section, key, written_id, name, old, new)
        return base.model_copy(update=update)

    # -- after all documents ---------------------------------------------------------------
    def finish(self) -> Catalog:
        devices = {k: v for k, v in self.entries["device"].items() if isinstance(v, Device)}
        device_keys: dict[str, str] = {}
        for key, dev in devices.items():
            for name in [dev.id, *dev.names]:
                k = name.casefold()
                if k in device_keys and device_keys[k] != key:
                    raise CatalogFormatError(
                        f"device name {name!r} is used by both {devices[device_keys[k]].id} "
                        f"({self._first('device', device_keys[k])}) and {dev.id} "
                        f"({self._first('device', key)})")
                device_keys[k] = key
        names: dict[str, tuple[str, str]] = {}
        entries: list[Entry] = []
        for section in ("build", "resource"):
            for key, entry in self.entries[section].items():
                if not isinstance(entry, Build | Resource):
                    continue
                dev_key = device_keys.get(entry.device.casefold())
                if dev_key is None:
                    raise CatalogFormatError(
                        f"{self._first(section, key)}: {section} {entry.id}: device "
                        f"{entry.device!r} is not defined in any catalog file",
                        hint="add a [[device]] table with that id, or use a known device id")
                entry.device = devices[dev_key].id
                entry.mirrors.sort(key=lambda m: _ORIGIN_RANK[m.source])
                for name in entry.names():
                    k = name.casefold()
                    if k in names and names[k] != (section, key):
                        o_section, o_key = names[k]
                        other = self.entries[o_section][o_key]
                        raise CatalogFormatError(
                            f"name {name!r} is used by both {other.id} "
                            f"({self._first(o_section, o_key)}) and {entry.id} "
                            f"({self._first(section, key)})",
                            hint="ids and aliases must be unique (case-insensitive): rename one")
                    names[k] = (section, key)
                entries.append(entry)
        catalog = Catalog(list(devices.values()), entries, dict(self.origins))
        self._check_references(catalog)
        for doc in self.mirror_docs:
            self._apply_mirrors(catalog, doc)
        return catalog

    def _first(self, section: str, key: str) -> str:
        return self.origins[f"{section}:{key}"][0]

    def _check_references(self, catalog: Catalog) -> None:
        for dev in catalog.devices:
            for year, variant in dev.memory_by_year.items():
                if variant.preloader is not None:
                    res = catalog.find(variant.preloader)
                    if not isinstance(res, Resource) or res.kind != "preloader":
                        raise CatalogFormatError(
                            f"{self._first('device', dev.id.casefold())}: device {dev.id}: "
                            f"memory_by_year.{year}.preloader {variant.preloader!r} is not a "
                            f"preloader resource in the catalog")
        for build in catalog.builds:
            for step in build.upgrade_path:
                if step.to is not None and not isinstance(catalog.find(step.to), Build):
                    raise CatalogFormatError(
                        f"{self._first('build', build.id.casefold())}: build {build.id}: "
                        f"upgrade_path.to {step.to!r} is not a build in the catalog")

    def _apply_mirrors(self, catalog: Catalog, doc: CatalogDocument) -> None:
        for raw in doc.sections.get("mirror", []):
            entry_id = str(raw["id"]).strip()
            try:
                item = _MirrorLine.model_validate(raw)
            except pydantic.ValidationError as exc:
                raise _validation_error(doc, "mirror", entry_id, exc) from exc
            target = catalog.find(item.id)
            if target is None:
                self.warnings.append(f"{doc.label}: mirror for unknown id {item.id!r} ignored")
                continue
            if any(m.url == item.url for m in target.mirrors):
                continue
            mirror = Mirror(url=item.url, label=item.label, source=doc.origin)
            rank = _ORIGIN_RANK[doc.origin]
            pos = next((i for i, m in enumerate(target.mirrors)
                        if _ORIGIN_RANK[m.source] > rank), len(target.mirrors))
            target.mirrors.insert(pos, mirror)


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"

