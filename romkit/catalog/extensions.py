"""User extensions to the catalog: `add-mirror` (the user mirror list) and `import` (a file).

Both validate against everything already known before writing, so a bad mirror or a file that
conflicts with a known build is refused before it can break later commands; both write only
through `romkit.fsutil` and honour `dry_run`.
"""

from __future__ import annotations

from pathlib import Path

import pydantic
from pydantic import BaseModel

from romkit.catalog.builder import _Builder
from romkit.catalog.document import _validation_error, read_catalog_file
from romkit.catalog.errors import CatalogFormatError
from romkit.catalog.models import _SECTIONS, _MirrorLine
from romkit.catalog.query import Catalog
from romkit.catalog.sources import (
    _user_catalog_files,
    _user_mirror_documents,
    builtin_documents,
    user_catalog_dir,
    user_mirrors_path,
)
from romkit.errors import UsageError
from romkit.fsutil import atomic_copy, atomic_write_text


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
