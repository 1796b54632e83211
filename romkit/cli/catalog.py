"""`romkit catalog …`: list, show and search known builds/resources; add mirrors and files.

Thin shell over `romkit.catalog`: options become a pydantic request, one library call does the
work, and the result is rendered as text or `--json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from romkit.catalog import (
    KIND_LABELS,
    Build,
    Catalog,
    Entry,
    ImportResult,
    MirrorAdded,
    Resource,
    add_user_mirror,
    import_catalog_file,
)
from romkit.cli.output import JsonOpt, human_size, out, table

CatalogUrlOpt = Annotated[
    str | None,
    typer.Option("--catalog", metavar="URL",
                 help="Remote catalog index (TOML/JSON over HTTP); default $ROMKIT_CATALOG_URL."),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Check and report; change nothing.")]

UNKNOWN = "unknown"

catalog_app = typer.Typer(help="Known firmware builds and resources (catalog).\n\n"
                               "Example: romkit catalog list", no_args_is_help=True)


class ListRequest(BaseModel):
    device: str | None = None
    region: str | None = None
    kind: str | None = None
    catalog_url: str | None = None


class ShowRequest(BaseModel):
    name: str
    catalog_url: str | None = None


class SearchRequest(BaseModel):
    text: str
    catalog_url: str | None = None


class AddMirrorRequest(BaseModel):
    build: str
    url: str
    label: str | None = None
    dry_run: bool = False
    catalog_url: str | None = None


class ImportRequest(BaseModel):
    path: Path
    dry_run: bool = False


# ---------------------------------------------------------------------------------------------
# rendering helpers


def _val(value: Any) -> str:
    if value is None or value == [] or value == "":
        return UNKNOWN
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _size(entry: Entry) -> str:
    if entry.size is not None:
        return f"{human_size(entry.size)} ({entry.size} bytes)"
    return f"{UNKNOWN} (reported: {entry.size_text})" if entry.size_text else UNKNOWN


def _short_size(entry: Entry) -> str:
    if entry.size is not None:
        return human_size(entry.size)
    return f"~{entry.size_text}" if entry.size_text else UNKNOWN


def _entry_json(catalog: Catalog, entry: Entry) -> dict[str, Any]:
    data = entry.model_dump(mode="json")
    data["type"] = entry.entry_type
    data["defined_in"] = catalog.origins(entry)
    return data


def _print_tables(entries: list[Entry]) -> None:
    builds = [e for e in entries if isinstance(e, Build)]
    resources = [e for e in entries if isinstance(e, Resource)]
    if not entries:
        out.line("no matching builds or resources")
        return
    if builds:
        out.line(table(
            [[b.id, _val(b.region), " ".join(filter(None, [b.android, b.android_codename]))
              or UNKNOWN, _val(b.date), _val(b.kind), _short_size(b), str(len(b.mirrors))]
             for b in builds],
            ["BUILD", "REGION", "ANDROID", "DATE", "KIND", "SIZE", "MIRRORS"]))
    if builds and resources:
        out.line()
    if resources:
        out.line(table(
            [[r.id, r.kind, _val(r.version), ", ".join(map(str, r.device_years)) or "all",
              _short_size(r), str(len(r.mirrors))] for r in resources],
            ["RESOURCE", "KIND", "VERSION", "UNITS", "SIZE", "MIRRORS"]))


def _show(catalog: Catalog, entry: Entry) -> None:
    dev = catalog.device(entry.device)
    dev_text = ", ".join(filter(None, [" / ".join(dev.names), dev.soc, dev.storage]))
    rows: list[tuple[str, str]] = [
        ("type", entry.entry_type),
        ("title", _val(entry.title)),
        ("aliases", _val(entry.aliases)),
        ("device", f"{dev.id} ({dev_text})" if dev_text else dev.id),
    ]
    if isinstance(entry, Build):
        android = " ".join(filter(None, [entry.android, entry.android_codename]))
        rows += [
            ("region", _val(entry.region)),
            ("android", android or UNKNOWN),
            ("date", _val(entry.date)),
            ("kind", KIND_LABELS[entry.kind] if entry.kind else UNKNOWN),
            ("languages", _val(entry.languages)),
            ("google play", _val(entry.google_play)),
            ("rooted", _val(entry.rooted)),
            ("scatter", _val(entry.scatter)),
            ("device years", _val(entry.device_years)),
            ("problem years", _val(entry.problem_years)),
            ("storage variants", _val(entry.storage_variants)),
        ]
    else:
        rows += [
            ("kind", KIND_LABELS[entry.kind]),
            ("version", _val(entry.version)),
            ("platform", _val(entry.platform)),
            ("device years", ", ".join(map(str, entry.device_years)) or "all"),
        ]
    rows += [
        ("file name", _val(entry.file_name)),
        ("size", _size(entry)),
        ("sha256", _val(entry.hashes.sha256)),
        ("md5", _val(entry.hashes.md5)),
    ]
    width = max(len(k) for k, _ in rows) + 2
    out.line(entry.id)
    for key, value in rows:
        out.line(f"  {key + ':':<{width}}{value}")
    if isinstance(entry, Build):
        _block("upgrade path", [
            " ".join(filter(None, [f"[{KIND_LABELS[s.kind]}]" if s.kind else None,
                                   f"-> {s.to}" if s.to else None, s.note])) or UNKNOWN
            for s in entry.upgrade_path], UNKNOWN)
    _block("mirrors", [f"[{m.source}] {m.url}" + (f"  ({m.label})" if m.label else "")
                       for m in entry.mirrors], "none known")
    _block("notes", entry.notes, "none")
    _block("sources", [f"[{s.confidence}] {s.about} -- {s.ref}" for s in entry.sources],
           UNKNOWN)
    _block("defined in", catalog.origins(entry), UNKNOWN)


def _block(title: str, items: list[str], empty: str) -> None:
    if not items:
        out.line(f"  {title}: {empty}")
        return
    out.line(f"  {title}:")
    for item in items:
        out.line(f"    - {item}")


# ---------------------------------------------------------------------------------------------
# commands


@catalog_app.command("list")
def list_cmd(
    device: Annotated[str | None, typer.Option("--device", help="Device id or name (S820).")]
    = None,
    region: Annotated[str | None, typer.Option("--region", help="ROW or CN.")] = None,
    kind: Annotated[str | None, typer.Option(
        "--kind", help="build, resource, full, ota, preloader, modem, flash-tool, driver.")]
    = None,
    catalog_url: CatalogUrlOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List known builds and resources.

    Example: romkit catalog list --device S820 --kind full
    """
    out.use_json(json_)
    req = ListRequest(device=device, region=region, kind=kind, catalog_url=catalog_url)
    catalog = Catalog.load(req.catalog_url, on_progress=out.progress)
    entries = catalog.select(device=req.device, region=req.region, kind=req.kind)
    payload = {
        "builds": [_entry_json(catalog, e) for e in entries if isinstance(e, Build)],
        "resources": [_entry_json(catalog, e) for e in entries if isinstance(e, Resource)],
    }
    out.result(payload, lambda: _print_tables(entries))


@catalog_app.command("show")
def show_cmd(
    name: Annotated[str, typer.Argument(help="Build or resource id or alias (S820_ROW_S124).")],
    catalog_url: CatalogUrlOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Show every known fact of a build or resource; unknown facts print as "unknown".

    Example: romkit catalog show S820_ROW_S124
    """
    out.use_json(json_)
    req = ShowRequest(name=name, catalog_url=catalog_url)
    catalog = Catalog.load(req.catalog_url, on_progress=out.progress)
    entry = catalog.resolve(req.name)
    out.result(_entry_json(catalog, entry), lambda: _show(catalog, entry))


@catalog_app.command("search")
def search_cmd(
    text: Annotated[str, typer.Argument(help="Words to look for (all must match).")],
    catalog_url: CatalogUrlOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Find builds/resources whose names, facts or notes contain every word.

    Example: romkit catalog search kitkat ROW
    """
    out.use_json(json_)
    req = SearchRequest(text=text, catalog_url=catalog_url)
    catalog = Catalog.load(req.catalog_url, on_progress=out.progress)
    found = catalog.search(req.text)
    out.result({"query": req.text, "results": [_entry_json(catalog, e) for e in found]},
               lambda: _print_tables(found))


@catalog_app.command("add-mirror")
def add_mirror_cmd(
    build: Annotated[str, typer.Argument(help="Build or resource id or alias.")],
    url: Annotated[str, typer.Argument(help="http://, https:// or file:// URL of the file.")],
    label: Annotated[str | None, typer.Option("--label", help="A short name for the mirror.")]
    = None,
    dry_run: DryRunOpt = False,
    catalog_url: CatalogUrlOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Add your own download URL for a build; it is tried before all others.

    Example: romkit catalog add-mirror S820_ROW_S124 https://example.org/S820_ROW_S124_140404.7z
    """
    out.use_json(json_)
    req = AddMirrorRequest(build=build, url=url, label=label, dry_run=dry_run,
                           catalog_url=catalog_url)
    catalog = Catalog.load(req.catalog_url, on_progress=out.progress)
    result = add_user_mirror(req.build, req.url, req.label, dry_run=req.dry_run, catalog=catalog)
    out.result(result, lambda: _render_mirror(result))


def _render_mirror(result: MirrorAdded) -> None:
    if not result.added:
        out.line(f"{result.id} already has mirror {result.url}; nothing to do")
    elif result.dry_run:
        out.line(f"would add mirror {result.url} to {result.id} in {result.mirrors_file}")
    else:
        out.line(f"added mirror {result.url} to {result.id} ({result.mirrors_file})")


@catalog_app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="Catalog file (.toml or .json) to add.")],
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Validate a catalog file and copy it into your config folder.

    Example: romkit catalog import my-builds.toml --dry-run
    """
    out.use_json(json_)
    req = ImportRequest(path=path, dry_run=dry_run)
    result = import_catalog_file(req.path, dry_run=req.dry_run)
    out.result(result, lambda: _render_import(result))


def _render_import(result: ImportResult) -> None:
    verb = "would import" if result.dry_run else "imported"
    action = "replacing" if result.replaced else "as"
    out.line(f"{verb} {result.source} {action} {result.target}")
    for section in ("device", "build", "resource"):
        for entry_id in result.added.get(section, []):
            out.line(f"  new {section}: {entry_id}")
        for entry_id in result.updated.get(section, []):
            out.line(f"  extends {section}: {entry_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")
