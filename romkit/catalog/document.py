"""Parsing one catalog file (TOML or JSON) into a `CatalogDocument`, with file:line errors.

Only what can be checked in a file alone is checked here (syntax, size, encoding, schema
version, known top-level keys, an `id` per entry, no duplicate id in the file); field values
are validated when documents are merged, and `_validation_error` turns a pydantic error into a
one-line `CatalogFormatError` that points at the file and line of the entry.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic

from romkit.catalog.errors import CatalogFormatError
from romkit.catalog.models import _SECTIONS, Origin
from romkit.errors import CatalogError

SCHEMA_VERSION = 1
MAX_CATALOG_BYTES = 8 * 1024 * 1024  # a catalog is text; anything bigger is not one


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
