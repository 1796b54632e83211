"""`romkit inspect`, `romkit verify`, `romkit checksum`: look at a firmware folder before flashing.

Thin shells: options → pydantic model → one library call → text or JSON.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from romkit.cli.output import JsonOpt, human_size, out, table
from romkit.errors import UsageError, ValidationError
from romkit.firmware.checksum import (
    ChecksumResult,
    ChecksumWrite,
    verify_checksums,
    write_checksum_ini,
)
from romkit.firmware.package import (
    FolderInspection,
    PartitionRow,
    ValidationReport,
    inspect_folder,
    verify_folder,
)
from romkit.workspace import resolve_firmware_dir

FILE_INSPECTOR = "romkit.firmware.inspect_file"
_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

PathArg = Annotated[Path | None, typer.Argument(
    metavar="DIR",
    help="Firmware folder (holding *_scatter*.txt); default: current or last fetched.")]
InspectArg = Annotated[Path | None, typer.Argument(
    metavar="PATH",
    help="Firmware folder, scatter file, or a preloader/DA file; default: current or last "
         "fetched folder.")]


StorageOpt = Annotated[str | None, typer.Option(
    "--storage", metavar="KIND",
    help="V2.x scatter: which storage layout to use (EMMC or UFS; default EMMC).")]


class InspectOptions(BaseModel):
    path: Path | None = None
    storage: str | None = None


class FolderOptions(BaseModel):
    folder: Path | None = None
    storage: str | None = None


class ChecksumOptions(BaseModel):
    folder: Path | None = None
    write: bool = False
    dry_run: bool = False


# -- rendering helpers --------------------------------------------------------------------------


def _hex(value: int | None) -> str:
    return "-" if value is None else f"0x{value:X}"


def layout_bar(rows: list[PartitionRow], width: int = 72) -> str:
    """One line, one segment per partition (its index in base 36), lengths ∝ size.

    The open-ended last partition ("rest of the device") has no size; it gets a fixed share
    and ends in '>'. Every partition gets at least one character so none disappears.
    """
    real = [r for r in rows if not r.is_marker]
    if not real:
        return "|" + "|"
    known = sum(r.size or 0 for r in real) or 1
    open_ended = [r for r in real if r.size is None]
    avail = max(len(real), width - 6 * len(open_ended))
    widths = [max(1, round((r.size or 0) / known * avail)) if r.size is not None else 6
              for r in real]
    excess = sum(widths) - width
    if excess > 0:
        big = max(range(len(real)), key=lambda i: widths[i])
        widths[big] = max(1, widths[big] - excess)
    parts = []
    for r, w in zip(real, widths, strict=True):
        ch = _BASE36[r.index % 36]
        parts.append(ch * (w - 1) + ">" if r.size is None and w > 1 else ch * w)
    return "|" + "".join(parts) + "|"


def _image_cell(row: PartitionRow) -> str:
    if row.is_marker:
        return "(marker)"
    if not row.is_download:
        return ""
    if row.image is None:
        return "(no rule)" if row.image_rule == "no-image-rule" else "(missing)"
    return row.image


def _size_cell(row: PartitionRow) -> str:
    if row.image_size is None:
        return ""
    if row.sparse:
        return f"{human_size(row.image_size)} (sparse {human_size(row.expanded_size)})"
    return human_size(row.image_size)


def _checksum_cell(row: PartitionRow) -> str:
    if row.checksum == "no-image" and row.checksum_expected is not None:
        return "not in this folder"
    return {"ok": "ok", "mismatch": "MISMATCH", "missing-key": "no entry",
            "no-ini": "no ini", "no-image": "", None: ""}.get(row.checksum, row.checksum or "")


def _render_findings(report: ValidationReport) -> None:
    if not report.findings:
        out.line("findings: none")
        return
    out.line("findings:")
    for f in report.findings:
        code = f"[{f.spft_code}]" if f.spft_code else ""
        out.line(f"  {f.severity:<7} {f.code:<22} {code:<6} {f.message}")


def _render_inspection(r: FolderInspection) -> None:
    out.line(f"folder:   {r.folder}")
    out.line(f"scatter:  {r.scatter.name} ({r.platform or 'platform unknown'}, "
             f"{r.format} format, {len(r.partitions)} entries)")
    if r.chip is not None:
        emi = "/".join(f"v{v:02d}" for v in r.chip.emi_versions) or "unknown"
        out.line(f"chip:     {r.chip.name} (hw code 0x{r.chip.hw_code:04X}, EMI table {emi}, "
                 f"DA {r.chip.da_family})")
    if r.storages:
        blocks = ", ".join(f"{k} {n} partitions" + (" (shown)" if k == r.storage_type else "")
                           for k, n in r.storages.items())
        out.line(f"storage:  {blocks}")
    out.line(f"checksum: {r.checksum_file.name if r.checksum_file else 'none'}")
    if r.flash_tool_dir:
        out.line(f"tool dir: {r.flash_tool_dir}")
    rows = []
    for p in r.partitions:
        region = p.region.replace("EMMC_", "")
        size = "rest" if p.size is None and not p.is_marker else (
            "" if p.is_marker else human_size(p.size))
        fill = f"{p.fill_percent:.1f}%" if p.fill_percent is not None else ""
        rows.append([_BASE36[p.index % 36] if p.index < 36 else str(p.index), p.name, region,
                     _hex(p.linear_start), _hex(p.physical_start), size, _image_cell(p),
                     _size_cell(p), fill, "marker" if p.is_marker else
                     ("yes" if p.is_download else "no"), _checksum_cell(p)])
    out.line(table(rows, ["#", "name", "region", "linear", "physical", "size", "image",
                          "image size", "fill", "download", "checksum"]))
    out.line()
    out.line("layout " + layout_bar(r.partitions))
    out.line()
    _render_findings(r.report)


def _refuse(report: ValidationReport) -> ValidationError:
    errors = report.errors
    codes = sorted({f.spft_code for f in errors if f.spft_code})
    return ValidationError(
        f"{len(errors)} error(s) in {report.folder}: " + "; ".join(f.message for f in errors[:3])
        + (" …" if len(errors) > 3 else ""),
        hint="see the findings above; `romkit explain CODE` describes each SP Flash Tool code",
        spft_code=codes[0] if len(codes) == 1 else None, findings=report.findings)


def _file_inspector(path: Path) -> Any:
    """The preloader/DA file inspector, if that part of romkit is installed."""
    try:
        return importlib.import_module(FILE_INSPECTOR)
    except ModuleNotFoundError as exc:
        if exc.name != FILE_INSPECTOR:
            raise
        raise UsageError(f"not a firmware folder: {path}",
                         hint="pass the folder holding *_scatter*.txt") from exc


# -- commands -----------------------------------------------------------------------------------


def inspect_cmd(path: InspectArg = None, storage: StorageOpt = None,
                json_: JsonOpt = False) -> None:
    """Show a firmware folder, or one preloader, EMI table or DA file.

    A folder shows its partitions, images, fill, checksums and a layout bar.

    Example: romkit inspect ./S820_ROW_S124_140404/target_bin
    """
    opts = InspectOptions(path=path, storage=storage)
    out.use_json(json_)
    target = opts.path
    if target is not None and target.is_file() and not (
            "scatter" in target.name.lower() and target.name.lower().endswith(".txt")):
        module = _file_inspector(target)
        result = module.inspect_file(target)
        render = getattr(module, "render_text", None)
        out.result(result, lambda: out.line(render(result) if render else str(result)))
        return
    folder = resolve_firmware_dir(target)
    inspection = inspect_folder(folder, on_progress=out.progress, storage=opts.storage)
    out.result(inspection, lambda: _render_inspection(inspection))


def verify_cmd(folder: PathArg = None, storage: StorageOpt = None,
               json_: JsonOpt = False) -> None:
    """Validate a firmware folder (images, sizes, layout, preloader, checksums); exit 3 on error.

    Example: romkit verify ./S820_ROW_S124_140404/target_bin
    """
    opts = FolderOptions(folder=folder, storage=storage)
    out.use_json(json_)
    report = verify_folder(resolve_firmware_dir(opts.folder), on_progress=out.progress,
                           storage=opts.storage)
    if not report.ok:
        if not out.json:
            _render_verify(report)
        raise _refuse(report)
    out.result(report, lambda: _render_verify(report))


def _render_verify(report: ValidationReport) -> None:
    out.line(f"folder:    {report.folder}")
    counts: dict[str, int] = {}
    for r in report.checksums:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    out.line(f"checksums: {summary or 'no images'}")
    _render_findings(report)
    verdict = "OK" if report.ok else "REFUSED"
    out.line(f"result:    {verdict} ({len(report.errors)} error(s), "
             f"{len(report.warnings)} warning(s))")


def _render_checksums(results: list[ChecksumResult]) -> None:
    def status(r: ChecksumResult) -> str:
        if r.status == "no-image" and r.expected is not None:
            return "not in this folder"
        return r.status

    rows = [[r.partition, r.path.name if r.path else "-", _hex(r.expected),
             _hex(r.actual), status(r)] for r in results]
    out.line(table(rows, ["partition", "image", "checksum.ini", "actual", "status"]))


def _render_write(w: ChecksumWrite) -> None:
    if w.unchanged:
        out.line(f"{w.path}: already up to date, nothing written")
        return
    if w.dry_run:
        out.line(w.diff.rstrip("\n") or "(no difference)")
        out.line(f"dry run: {w.path} not written")
        return
    out.line(f"wrote {w.path} ({len(w.values)} entries)")
    if w.kept_absent:
        out.line("kept (image not in this folder): " + ", ".join(w.kept_absent))
    if w.backup:
        out.line(f"backup of the old file: {w.backup}")


def checksum_cmd(
    folder: PathArg = None,
    write: Annotated[bool, typer.Option("--write", help="Regenerate checksum.ini.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="With --write: show the diff, write nothing.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Check images against checksum.ini, or regenerate it with --write (old one backed up).

    Example: romkit checksum --write --dry-run
    """
    opts = ChecksumOptions(folder=folder, write=write or dry_run, dry_run=dry_run)
    out.use_json(json_)
    target = resolve_firmware_dir(opts.folder)
    if opts.write:
        result = write_checksum_ini(target, dry_run=opts.dry_run, on_progress=out.progress)
        out.result(result, lambda: _render_write(result))
        return
    results = verify_checksums(target, on_progress=out.progress)
    bad = [r for r in results if r.status in ("mismatch", "missing-key")]
    if bad:
        if not out.json:
            _render_checksums(results)
        raise ValidationError(
            f"{len(bad)} image(s) do not match checksum.ini: "
            + ", ".join(r.partition for r in bad),
            hint="re-download the firmware, or if you replaced an image on purpose run "
                 "`romkit checksum --write`", spft_code=8416, findings=results)
    out.result(results, lambda: _render_checksums(results))


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_cmd)
    app.command("verify")(verify_cmd)
    app.command("checksum")(checksum_cmd)
