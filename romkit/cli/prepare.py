"""`romkit prepare`: preloader swap, modem rename and checksum regeneration as one plan.

Thin shell over `romkit.prepare`: options become a `PrepareRequest`, `prepare()` plans and
applies (or only shows, or undoes), and the result is rendered as text or `--json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from romkit.cli.output import JsonOpt, human_size, out, table
from romkit.firmware.package import ValidationReport
from romkit.prepare import (
    PartInfo,
    PreparePlan,
    PrepareRequest,
    PrepareResult,
    UndoResult,
    prepare,
)
from romkit.progress import ProgressEvent
from romkit.sysimg import ModemInstall


def _progress(event: ProgressEvent) -> None:
    """Bars and warnings as they happen; each planned action is shown once, in the plan table
    printed with the result, not also as it is applied."""
    if event.kind == "info" and not out.json:
        return
    out.progress(event)


def _parts(parts: list[PartInfo] | None) -> str:
    if parts is None:
        return "unknown"
    return ", ".join(p.part for p in parts) or "none"


def _render_plan(plan: PreparePlan) -> None:
    out.line(f"firmware: {plan.folder} ({plan.platform or 'platform unknown'})")
    pre = plan.preloader
    if pre is not None:
        out.line(f"preloader: {pre.file} <- {pre.source}")
        if pre.current_note:
            out.line(f"  current: {pre.current_note}")
        else:
            out.line(f"  current supports: {_parts(pre.current_parts)}")
        out.line(f"  new supports:     {_parts(pre.new_parts)} "
                 f"(EMI v{pre.new_emi_version}, {pre.new_project or 'no project name'})")
        if pre.current_parts is not None:
            out.line(f"  adds: {_parts(pre.added)}; drops: {_parts(pre.dropped)}")
    mod = plan.modem
    if mod is not None and mod.install is not None:
        _render_install(mod.source_dir, mod.install)
    elif mod is not None:
        out.line(f"modem: {mod.source_dir} -> {mod.output_dir}/ as {mod.naming} names "
                 f"({mod.how})")
        if mod.header is not None:
            out.line(f"  modem image: {mod.header.describe()}")
        for r in mod.files:
            name = r.source if r.source == r.target else f"{r.source} -> {r.target}"
            out.line(f"  {name}  (phone: {r.phone_dir})")
        if mod.ignored:
            out.line(f"  ignored (not modem files): {', '.join(mod.ignored)}")
    if plan.steps:
        rows = [[s.action, s.path, human_size(s.after_size) if s.after_size is not None
                 else "-", s.reason] for s in plan.steps]
        out.line(f"plan ({len(plan.steps)} step{'s' if len(plan.steps) != 1 else ''}):")
        out.line(table(rows, ["ACTION", "FILE", "SIZE", "WHY"]))
    else:
        out.line("nothing to do")
    for note in plan.notes:
        out.line(f"note: {note}")
    for warning in plan.warnings:
        out.line(f"warning: {warning}")


def _render_install(source: str, inst: ModemInstall) -> None:
    """The modem set going into system.img: which file replaces which, what is kept."""
    out.line(f"modem: {source} -> {Path(inst.image).name} ({inst.form} ext4) as "
             f"{inst.naming} names ({inst.how})")
    out.line(f"  modem image: {inst.header.describe()}")
    if inst.unchanged:
        out.line("  the image already holds exactly this set")
    for f in inst.files:
        old = ", ".join(f.removed)
        out.line(f"  {f.source} -> /system{f.directory}/{f.name} (replaces {old}; keeps "
                 f"{', '.join(k for k in f.kept if not k.endswith('time'))}, timestamps)")
    for name in inst.skipped:
        out.line(f"  not installed: {name}")
    free = f"{human_size(inst.free_before)} free in the filesystem"
    if inst.free_after is not None:
        free += f", {human_size(inst.free_after)} after"
    out.line(f"  {free}" + (f"; e2fsck: {inst.fsck}" if inst.fsck else ""))


def _render_validation(report: ValidationReport | None) -> None:
    if report is None:
        return
    errors, warnings = len(report.errors), len(report.warnings)
    state = "ok" if report.ok else "PROBLEMS"
    out.line(f"folder check: {state} ({errors} error(s), {warnings} warning(s))")
    for f in report.findings:
        if f.severity == "info":
            continue
        code = f" [SP Flash Tool {f.spft_code}]" if f.spft_code else ""
        out.line(f"  {f.severity}: {f.message}{code}")


def _render_undo(undo: UndoResult) -> None:
    verb = "would restore" if undo.dry_run else "restored"
    what = "interrupted prepare" if undo.interrupted else "prepare"
    out.line(f"undo of {what} record {undo.record.name} in {undo.folder}:")
    for f in undo.files:
        what = {"restored": verb, "removed": "would remove" if undo.dry_run else "removed",
                "already": "already as before:"}[f.action]
        out.line(f"  {what} {f.path}")
    for d in undo.removed_dirs:
        out.line(f"  {'would remove' if undo.dry_run else 'removed'} empty folder {d}/")
    if undo.dry_run:
        out.line("dry run: nothing changed")
    _render_validation(undo.validation)


def _render(result: PrepareResult) -> None:
    if result.undo is not None:
        _render_undo(result.undo)
        return
    assert result.plan is not None
    if result.recovered is not None:
        back = sum(1 for f in result.recovered.files if f.action != "already")
        out.line(f"rolled back the interrupted prepare of {result.recovered.created} "
                 f"({back} file(s) put back) before planning again")
    _render_plan(result.plan)
    if result.dry_run:
        if result.plan.steps:
            out.line("dry run: nothing changed")
        return
    if result.applied:
        out.line(f"done; backups and manifest in {result.record} (undo: romkit prepare "
                 "--undo)")
    _render_validation(result.validation)


def register(app: typer.Typer) -> None:
    @app.command("prepare")
    def prepare_cmd(
        folder: Annotated[Path | None, typer.Argument(
            help="Firmware folder (holding *_scatter*.txt); default: current/recorded one.")
        ] = None,
        device_year: Annotated[int | None, typer.Option(
            "--device-year", metavar="2013|2014",
            help="Production year of the phone: 2014 swaps in the catalog's 2014 preloader; "
                 "2013 keeps/restores the build's own.")] = None,
        preloader: Annotated[Path | None, typer.Option(
            "--preloader", metavar="FILE",
            help="Preloader to swap in (.bin, BOOT1 dump, or a .zip/.7z holding one).")
        ] = None,
        modem: Annotated[Path | None, typer.Option(
            "--modem", metavar="DIR",
            help="Folder of modem files to install into system.img under the build's own "
                 "names (attributes kept; undo with --undo).")
        ] = None,
        modem_naming: Annotated[str, typer.Option(
            "--modem-naming", metavar="auto|plain|1_3g_n",
            help="auto: the names of system.img's own modem set (without an ext4 "
                 "system.img: from the Android version); plain / 1_3g_n to choose.")
        ] = "auto",
        drop_checksum: Annotated[bool, typer.Option(
            "--drop-checksum",
            help="Remove checksum.ini instead of regenerating its entries.")] = False,
        build: Annotated[str | None, typer.Option(
            "--build", metavar="NAME", help="Catalog build the folder holds (default: guessed "
                                            "from folder names / build info).")] = None,
        device: Annotated[str | None, typer.Option(
            "--device", metavar="ID", help="Catalog device (default: from the build).")
        ] = None,
        dry_run: Annotated[bool, typer.Option(
            "--dry-run", help="Show the plan; change nothing.")] = False,
        undo: Annotated[bool, typer.Option(
            "--undo", help="Restore the files of the last prepare (checked by hash).")
        ] = False,
        json_: JsonOpt = False,
    ) -> None:
        """Swap the preloader (2014 units), install a modem set into system.img, fix checksum.ini.

        Every change is shown as a plan first (--dry-run), backed up in
        DIR/.romkit/prepare/<time>/ and can be undone with --undo.

        Example: romkit prepare --device-year 2014 --dry-run
        """
        out.use_json(json_)
        request = PrepareRequest.from_options(
            folder=folder, device_year=device_year, preloader=preloader, modem=modem,
            modem_naming=modem_naming, drop_checksum=drop_checksum, build=build,
            device=device, dry_run=dry_run, undo=undo)
        result = prepare(request, on_progress=_progress)
        out.result(result, lambda: _render(result))
