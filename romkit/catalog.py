"""The catalog: turns the names people use ("S820_ROW_S124", "preloader-2014") into facts.

Users know a phone and a build name from a forum post, not URLs, hashes or scatter paths. The
catalog is data (TOML files, one per device family, in `catalog/`) plus user extensions, and
this module is the one place that loads, validates, merges and queries it.

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

import datetime as dt
import difflib
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import pydantic
import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from romkit import paths
from romkit.errors import EXIT_REFUSED, CatalogError, UsageError
from romkit.fsutil import atomic_copy, atomic_write_text
from romkit.progress import ProgressCallback, Reporter

SCHEMA_VERSION = 1
MAX_CATALOG_BYTES = 8 * 1024 * 1024  # a catalog is text; anything bigger is not one
MAX_SIZE = 1 << 40  # 1 TiB: no phone firmware download is bigger
REMOTE_TIMEOUT = 15.0
CATALOG_URL_ENV = "ROMKIT_CATALOG_URL"
USER_CATALOG_DIR = "catalogs"
USER_MIRRORS_FILE = "mirrors.toml"

Origin = Literal["user", "remote", "builtin"]
Confidence = Literal["verified", "reported", "inferred", "from-name"]
BuildKind = Literal["full", "ota"]
ResourceKind = Literal["preloader", "modem", "flash-tool", "driver"]
BUILD_KINDS: tuple[str, ...] = ("full", "ota")
RESOURCE_KINDS: tuple[str, ...] = ("preloader", "modem", "flash-tool", "driver")
KIND_LABELS = {
    "full": "full SP Flash Tool package",
    "ota": "OTA update",
    "preloader": "preloader",
    "modem": "modem files",
    "flash-tool": "flash tool",
    "driver": "USB driver",
}
_ORIGIN_RANK = {"user": 0, "remote": 1, "builtin": 2}
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_DATE_SUFFIX_RE = re.compile(r"_(\d{2})(\d{2})(\d{2})$")
_HASH_LENGTHS = {"sha256": 64, "md5": 32}


class CatalogFormatError(CatalogError):
    """A catalog file (built-in, imported, remote or the mirror list) is malformed."""

    exit_code = EXIT_REFUSED
    default_hint = "fix the file (format: docs/commands/catalog.md) or remove it"


class CatalogConflictError(CatalogFormatError):
    """Two catalog files state different values for the same fact of the same entry."""

    default_hint = ("a catalog file may add mirrors/hashes or fill unknown facts, never change "
                    "known ones: correct or remove one of the two files")


# ---------------------------------------------------------------------------------------------
# models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _check_id(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError("must be 1-128 characters: letters, digits and . _ + - "
                         "(starting with a letter or digit)")
    return value


def _check_years(values: list[int]) -> list[int]:
    for year in values:
        if not 1990 <= year <= 2100:
            raise ValueError(f"{year} is not a plausible production year")
    return values


class Source(_Model):
    """Where a group of facts comes from, and how sure we are of it."""

    about: str = Field(max_length=300)
    ref: str = Field(max_length=500)
    confidence: Confidence


def _check_url(value: str) -> str:
    if not value.isascii() or any(c.isspace() or ord(c) < 0x21 or ord(c) == 0x7F
                                  for c in value):
        raise ValueError("must be printable ASCII without spaces (percent-encode the rest)")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https", "file"):
        raise ValueError("must start with http://, https:// or file://")
    if parts.scheme != "file" and not parts.hostname:
        raise ValueError("has no host name")
    return value


def _check_label(value: str | None) -> str | None:
    if value is not None:
        value.encode("utf-8")  # lone surrogates (from a mangled command line) are refused
    return value


class Mirror(_Model):
    """One URL a file can be downloaded from; `source` is set by the loader, not the file."""

    url: str = Field(max_length=2048)
    label: str | None = Field(default=None, max_length=200)
    source: Origin = "builtin"

    _url = field_validator("url")(staticmethod(_check_url))
    _label = field_validator("label")(staticmethod(_check_label))


class Hashes(_Model):
    """Expected digests of a download, lower-case hex; unknown ones are None."""

    sha256: str | None = None
    md5: str | None = None

    @field_validator("sha256", "md5")
    @classmethod
    def _hex(cls, value: str | None, info: pydantic.ValidationInfo) -> str | None:
        if value is None:
            return None
        want = _HASH_LENGTHS[info.field_name or ""]
        if len(value) != want or re.fullmatch(r"[0-9A-Fa-f]+", value) is None:
            raise ValueError(f"must be {want} hex digits (got {len(value)} characters)")
        return value.lower()

    def known(self) -> dict[str, str]:
        return {k: v for k, v in (("sha256", self.sha256), ("md5", self.md5)) if v}


class UsbId(_Model):
    """A USB identity the phone shows in one of its modes (BROM, preloader, DA)."""

    vid: int = Field(ge=0, le=0xFFFF)
    pid: int = Field(ge=0, le=0xFFFF)
    mode: str = Field(max_length=40)

    def __str__(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X} ({self.mode})"


class MemoryVariant(_Model):
    """Memory fitted to units of one production year, and the preloader they need."""

    parts: list[str] = Field(default_factory=list)
    preloader: str | None = None  # resource id; None = the preloader shipped in the build
    notes: list[str] = Field(default_factory=list)


class Device(_Model):
    id: str
    names: list[str] = Field(default_factory=list)
    vendor: str | None = None
    soc: str | None = None
    hw_code: int | None = Field(default=None, ge=0, le=0xFFFF)
    storage: str | None = None
    usb_ids: list[UsbId] = Field(default_factory=list)
    memory_by_year: dict[int, MemoryVariant] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)

    _id = field_validator("id")(staticmethod(_check_id))

    @field_validator("memory_by_year")
    @classmethod
    def _years(cls, value: dict[int, MemoryVariant]) -> dict[int, MemoryVariant]:
        _check_years(list(value))
        return value


class UpgradeStep(_Model):
    """One step from this build to a later one (`to` is a catalog id when known)."""

    kind: BuildKind | None = None
    to: str | None = None
    note: str | None = None


class Downloadable(_Model):
    """What the downloader needs from a build or a resource: a name, bytes to expect, URLs."""

    id: str
    aliases: list[str] = Field(default_factory=list)
    device: str
    title: str | None = None
    file_name: str | None = Field(default=None, max_length=255)
    size: int | None = Field(default=None, ge=1, le=MAX_SIZE)
    size_text: str | None = None  # a reported, approximate size ("711 MB"); never for checks
    hashes: Hashes = Field(default_factory=Hashes)
    mirrors: list[Mirror] = Field(default_factory=list)
    device_years: list[int] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)

    entry_type: ClassVar[str] = "entry"

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return _check_id(value)

    @field_validator("aliases")
    @classmethod
    def _valid_aliases(cls, value: list[str]) -> list[str]:
        return [_check_id(v) for v in value]

    @field_validator("device_years")
    @classmethod
    def _valid_years(cls, value: list[int]) -> list[int]:
        return _check_years(value)

    @field_validator("file_name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or "\\" in value
                                  or value in (".", "..") or "\x00" in value):
            raise ValueError("must be a plain file name (no folders)")
        return value

    @field_validator("mirrors", mode="before")
    @classmethod
    def _mirror_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"url": v} if isinstance(v, str) else v for v in value]
        return value

    def names(self) -> list[str]:
        return [self.id, *self.aliases]


class Build(Downloadable):
    """A firmware build for a device (full SP Flash Tool package or OTA)."""

    region: Literal["ROW", "CN"] | None = None
    android: str | None = None
    android_codename: str | None = None
    date: dt.date | None = None
    languages: list[str] = Field(default_factory=list)
    kind: BuildKind | None = None
    google_play: bool | None = None
    rooted: bool | None = None
    scatter: str | None = None
    storage_variants: list[str] = Field(default_factory=list)
    problem_years: list[int] = Field(default_factory=list)
    upgrade_path: list[UpgradeStep] = Field(default_factory=list)

    entry_type: ClassVar[str] = "build"

    @field_validator("problem_years")
    @classmethod
    def _valid_problem_years(cls, value: list[int]) -> list[int]:
        return _check_years(value)

    @field_validator("scatter")
    @classmethod
    def _relative_scatter(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith(("/", "\\")) or ".." in value.split("/")):
            raise ValueError("must be a path relative to the unpacked firmware folder")
        return value

    @model_validator(mode="after")
    def _date_matches_name(self) -> Build:
        """The `_YYMMDD` suffix of a build name is a fact; a stated date must agree with it."""
        named = date_from_name(self.id)
        if named is not None and self.date is not None and named != self.date:
            raise ValueError(f"date {self.date} disagrees with the name suffix ({named})")
        return self


class Resource(Downloadable):
    """A non-build download for a device: preloader, modem files, flash tool, driver."""

    kind: ResourceKind
    version: str | None = None
    platform: str | None = None

    entry_type: ClassVar[str] = "resource"


Entry = Build | Resource
_Any = Device | Build | Resource
_SECTIONS: dict[str, type[_Any]] = {"device": Device, "build": Build, "resource": Resource}


# ---------------------------------------------------------------------------------------------
# parsing one document


@dataclass
class CatalogDocument:
    """One parsed catalog file: raw tables per section, plus what is needed for messages."""

    label: str
    origin: Origin
    sections: dict[str, list[dict[str, Any]]]
    text: str = ""

    def line_of(self, entry_id: str, last: bool = False) -> int | None:
        """Line where `id = "entry_id"` is written (TOML or JSON), for error messages."""
        pattern = re.compile(r"""["']?id["']?\s*[=:]\s*["']""" + re.escape(entry_id) + r"""["']""",
                             re.IGNORECASE)
        found = [n for n, line in enumerate(self.text.splitlines(), start=1)
                 if pattern.search(line)]
        if not found:
            return None
        return found[-1] if last else found[0]

    def where(self, entry_id: str, last: bool = False) -> str:
        line = self.line_of(entry_id, last)
        return f"{self.label}:{line}" if line else self.label


def _decode(data: bytes | str, label: str) -> str:
    if isinstance(data, str):
        return data
    if len(data) > MAX_CATALOG_BYTES:
        raise CatalogFormatError(f"{label}: {len(data)} bytes is too large for a catalog file",
                                 hint="a catalog file is a small TOML/JSON text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogFormatError(f"{label}: not UTF-8 text (byte {exc.start})") from exc


def _guess_format(label: str, text: str) -> Literal["toml", "json"]:
    if label.lower().split("?")[0].endswith(".json"):
        return "json"
    if label.lower().split("?")[0].endswith(".toml"):
        return "toml"
    return "json" if text.lstrip().startswith("{") else "toml"


def parse_catalog_document(data: bytes | str, label: str, origin: Origin = "user",
                           fmt: Literal["toml", "json"] | None = None) -> CatalogDocument:
    """Parse TOML/JSON text into a `CatalogDocument`, checking only the document's shape.

    Field-level validation happens when entries are merged (a later file may name an existing
    id with only the fields it adds), so this checks what can be checked alone: syntax, known
    top-level keys, arrays of tables, an `id` per entry and no duplicate id inside the file.
    """
    text = _decode(data, label)
    if len(text) > MAX_CATALOG_BYTES:
        raise CatalogFormatError(f"{label}: too large for a catalog file")
    fmt = fmt or _guess_format(label, text)
    try:
        raw: Any = json.loads(text) if fmt == "json" else tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogFormatError(f"{label}: invalid TOML: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise CatalogFormatError(f"{label}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    except (RecursionError, ValueError) as exc:
        raise CatalogFormatError(f"{label}: unreadable {fmt.upper()}: {exc}") from exc
    if not isinstance(raw, dict):
        raise CatalogFormatError(f"{label}: the top level must be a table/object")
    schema = raw.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        raise CatalogFormatError(f"{label}: schema = {schema!r} is not supported "
                                 f"(this romkit reads schema {SCHEMA_VERSION})",
                                 hint="update romkit or ask for a schema-1 file")
    unknown = sorted(set(raw) - {"schema", *_SECTIONS, "mirror"})
    if unknown:
        raise CatalogFormatError(f"{label}: unknown top-level key {unknown[0]!r} "
                                 f"(expected: device, build, resource, mirror, schema)")
    doc = CatalogDocument(label=label, origin=origin, sections={}, text=text)
    for section in (*_SECTIONS, "mirror"):
        entries = raw.get(section, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise CatalogFormatError(f"{label}: `{section}` must be an array of tables "
                                     f"([[{section}]])")
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            entry_id = entry.get("id")
            if not isinstance(entry_id, str) or not entry_id.strip():
                raise CatalogFormatError(f"{label}: {section} #{index + 1}: missing string `id`")
            key = entry_id.strip().casefold()
            if section != "mirror" and key in seen:
                raise CatalogFormatError(f"{doc.where(entry_id, last=True)}: duplicate "
                                         f"{section} id {entry_id!r} in the same file")
            seen.add(key)
        doc.sections[section] = entries
    return doc


def read_catalog_file(path: Path, origin: Origin = "user") -> CatalogDocument:
    try:
        size = path.stat().st_size
        if size > MAX_CATALOG_BYTES:
            raise CatalogFormatError(f"{path}: {size} bytes is too large for a catalog file")
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog file {path}: {exc.strerror or exc}",
                           hint="check the path and its permissions") from exc
    return parse_catalog_document(data, str(path), origin)


def _validation_error(doc: CatalogDocument, section: str, entry_id: str,
                      exc: pydantic.ValidationError) -> CatalogFormatError:
    first = exc.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "missing":
        msg = "required field is missing"
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    where = f"{loc}: " if loc else ""
    return CatalogFormatError(f"{doc.where(entry_id)}: {section} {entry_id}: {where}{msg}{more}")


# ---------------------------------------------------------------------------------------------
# merging


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


class _MirrorLine(_Model):
    """One `[[mirror]]` line of a mirror list: which entry, which URL."""

    id: str
    url: str = Field(max_length=2048)
    label: str | None = Field(default=None, max_length=200)

    _url = field_validator("url")(staticmethod(_check_url))
    _label = field_validator("label")(staticmethod(_check_label))


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# the catalog


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


# ---------------------------------------------------------------------------------------------
# where documents come from


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


# ---------------------------------------------------------------------------------------------
# user extensions


class MirrorAdded(BaseModel):
    """Result of `add_user_mirror`."""

    id: str
    entry_type: str
    url: str
    label: str | None
    mirrors_file: str
    added: bool
    dry_run: bool


def _toml_string(value: str) -> str:
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _render_mirror_list(lines: list[_MirrorLine]) -> str:
    text = ["# romkit user mirrors: tried before remote-index and built-in mirrors.",
            "# Written by `romkit catalog add-mirror`; safe to edit by hand.", ""]
    for line in lines:
        text += ["[[mirror]]", f"id = {_toml_string(line.id)}", f"url = {_toml_string(line.url)}"]
        if line.label:
            text.append(f"label = {_toml_string(line.label)}")
        text.append("")
    return "\n".join(text)


def add_user_mirror(build_id: str, url: str, label: str | None = None, *, dry_run: bool = False,
                    catalog: Catalog | None = None) -> MirrorAdded:
    """Record a user mirror for a build or resource (first in line when downloading)."""
    catalog = catalog or Catalog.load()
    entry = catalog.resolve(build_id)
    try:
        line = _MirrorLine(id=entry.id, url=url.strip(), label=label or None)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        raise UsageError(f"bad mirror: {err['loc'][0]}: "
                         f"{err['msg'].removeprefix('Value error, ')}",
                         hint="give a full http://, https:// or file:// URL") from exc
    path = user_mirrors_path()
    existing: list[_MirrorLine] = []
    if path.is_file():
        doc = read_catalog_file(path, "user")
        for raw in doc.sections.get("mirror", []):
            try:
                existing.append(_MirrorLine.model_validate(raw))
            except pydantic.ValidationError as exc:
                raise _validation_error(doc, "mirror", str(raw["id"]), exc) from exc
    added = not any(m.url == line.url for m in entry.mirrors) and not any(
        m.id == line.id and m.url == line.url for m in existing)
    if added and not dry_run:
        atomic_write_text(path, _render_mirror_list([*existing, line]))
    return MirrorAdded(id=entry.id, entry_type=entry.entry_type, url=line.url, label=line.label,
                       mirrors_file=str(path), added=added, dry_run=dry_run)


class ImportResult(BaseModel):
    """Result of `import_catalog_file`: what the file adds and where it was copied."""

    source: str
    target: str
    replaced: bool
    dry_run: bool
    added: dict[str, list[str]]
    updated: dict[str, list[str]]


def import_catalog_file(path: Path | str, dry_run: bool = False) -> ImportResult:
    """Validate a catalog file against everything already known, then copy it atomically.

    Validation runs the full merge (built-in + other user files + this file + user mirrors),
    so a file that conflicts with a known build, duplicates an alias or names a device that
    does not exist is refused before it can break later commands. Re-importing a file of the
    same name replaces the earlier copy.
    """
    src = Path(path)
    if src.suffix.lower() not in (".toml", ".json"):
        raise UsageError(f"{src}: a catalog file must end in .toml or .json",
                         hint="rename the file or convert it")
    if not src.is_file():
        raise UsageError(f"catalog file not found: {src}", hint="check the path")
    doc = read_catalog_file(src, "user")
    if not any(doc.sections.get(s) for s in _SECTIONS) and not doc.sections.get("mirror"):
        raise CatalogFormatError(f"{src}: holds no device, build, resource or mirror",
                                 hint="see docs/commands/catalog.md for the format")
    target = user_catalog_dir() / src.name
    others = [read_catalog_file(p, "user") for p in _user_catalog_files(exclude=src.name)]
    builder = _Builder()
    for d in [*builtin_documents(), *others, doc, *_user_mirror_documents()]:
        builder.add(d)
    builder.finish()
    stats = builder.stats[doc.label]
    replaced = target.exists()
    if not dry_run:
        atomic_copy(src, target)
    return ImportResult(source=str(src), target=str(target), replaced=replaced, dry_run=dry_run,
                        added=stats.added, updated=stats.updated)


def date_from_name(name: str) -> dt.date | None:
    """The date encoded in a build name's `_YYMMDD` suffix (a fact of the name), if any."""
    m = _DATE_SUFFIX_RE.search(name)
    if not m:
        return None
    try:
        return dt.date(2000 + int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None
