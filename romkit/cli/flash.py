"""`romkit flash`, `romkit backup`, `romkit restore`, `romkit readback`: the phone-writing half.

Thin shells: options → pydantic request → one library call → text or JSON. The plan is shown
before anything is written: the engine reports it as a "plan" progress event, rendered here.
Ctrl-C in any of them prints one `interrupted:` line (what was left, and the command that
resumes) and exits with 130 — typer would otherwise exit 130 without a word.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from romkit.cli.output import JsonOpt, human_size, out, table
from romkit.device import protocol as P
from romkit.errors import DeviceError, Interrupted, UsageError
from romkit.flash.backup import DEFAULT_KEEP, PruneResult, backups_root, prune_sets, set_size
from romkit.flash.engine import FlashRequest, FlashResult, flash
from romkit.flash.interrupt import Interrupted as FlashInterrupted
from romkit.flash.plan import MODES, FlashPlan, Mode, PlanOptions
from romkit.flash.tools import (
    BackupRequest,
    BackupResult,
    ReadbackRequest,
    ReadbackResult,
    RestoreRequest,
    RestoreResult,
    backup_phone,
    list_backups,
    readback,
    restore_phone,
)
from romkit.progress import ProgressEvent, Reporter
from romkit.workspace import recorded_build, resolve_firmware_dir

if TYPE_CHECKING:  # the station loads only in a station run, not in each phone's child
    from romkit.station import PhoneRow, StationRequest, StationResult

PortOpt = Annotated[str | None, typer.Option(
    "--port", help="Serial port of the phone (default: wait for a MediaTek USB port).")]
DaOpt = Annotated[Path | None, typer.Option(
    "--da", help="MTK_AllInOne_DA.bin (default: the firmware's flash-tool folder, then the "
                 "config dir's da/).")]
WaitOpt = Annotated[float, typer.Option("--wait", help="Seconds to wait for the phone.")]
PreloaderOpt = Annotated[Path | None, typer.Option(
    "--preloader", help="Preloader whose EMI table brings up DRAM (default: the firmware's).")]
FirmwareOpt = Annotated[Path | None, typer.Option(
    "--firmware", help="Firmware folder for the DA/preloader (default: current or last "
                       "fetched).")]
PacketOpt = Annotated[int, typer.Option("--packet-size", help="Bytes per DA packet.")]
TraceOpt = Annotated[Path | None, typer.Option(
    "--trace", help="Record every byte to and from the phone in FILE (docs/TRACE.md; .gz "
                    "compresses): attach it to a bug report.")]


def _hex(n: int | None) -> str:
    return "-" if n is None else f"0x{n:X}"


def render_plan(plan: dict[str, Any]) -> None:
    """The ordered operations, as a table on stderr-free stdout (text mode only)."""
    opts = plan.get("options", {})
    dev = plan.get("device")
    where = f" on phone {dev['cid']}" if dev else " (phone not checked yet)"
    out.line(f"plan: {opts.get('mode')}{where}")
    rows = []
    for i, op in enumerate(plan.get("operations", []), start=1):
        src = Path(op["source"]).name if op.get("source") else op.get("note", "")
        if op.get("sparse") and op["kind"] == "write":  # bytes column: the expanded size
            src += f" (sparse file, {human_size(op.get('stored_size') or 0)})"
        rows.append([str(i), op["kind"], op["partition"], op["region"].replace("EMMC_", ""),
                     _hex(op["offset"]),
                     human_size(op["length"]) if op.get("length") is not None else "to end",
                     src, (op.get("sha256") or "")[:16]])
    out.line(table(rows, ["#", "op", "partition", "region", "offset", "bytes", "source",
                          "sha256"]))
    out.line()


def _progress(event: ProgressEvent) -> None:
    if (event.kind == "info" and event.label == "plan" and "plan" in event.data
            and not out.json):
        render_plan(dict(event.data["plan"]))
        return
    out.progress(event)


def flash_summary(plan: FlashPlan) -> list[str]:
    """What is about to happen, in the words a technician checks before saying yes: which
    folder and build (the "current firmware" changes with every fetch), which mode, on which
    phone, and what gets written and erased."""
    folder = Path(plan.firmware_dir)
    build = recorded_build(folder) or "not recorded (folder not unpacked by `romkit fetch`)"
    writes = [o for o in plan.operations if o.kind == "write"]
    formats = [o.partition for o in plan.operations if o.kind == "format"]
    size = human_size(sum(o.length or 0 for o in writes))
    phone = f"phone {plan.device.cid}" if plan.device else "the phone"
    lines = [f"firmware: {folder}",
             f"build:    {build}",
             f"mode:     {plan.mode} on {phone}",
             f"writes:   {len(writes)} partition(s), {size}: "
             + ", ".join(o.partition for o in writes)]
    if formats:
        lines.append(f"erases:   {', '.join(formats)}")
    return lines


def ask_before_writing(plan: FlashPlan) -> bool:
    """The question before the first write (only on a terminal; see `_flash_cmd`)."""
    out.close_bars()
    for line in flash_summary(plan):
        out.note(line)
    n = sum(o.kind == "write" for o in plan.operations)
    return typer.confirm(f"Flash {n} partition(s) from {Path(plan.firmware_dir).name} to this "
                         "phone?", default=False, err=True)


def _render_flash(r: FlashResult) -> None:
    if r.dry_run:
        out.line("dry run: nothing was written")
        return
    # Each partition already got its "verified …" line as its bar ended; the summary counts
    # them instead of listing them again (`--json` has every partition's sha256 and speed).
    written = [p for p in r.partitions if not p.resumed]
    rate = human_size(int(r.bytes_written / r.seconds)) + "/s" if r.seconds > 0 else "-"
    out.table([[str(len(written)), str(sum(p.verified for p in written)),
                str(len(r.partitions) - len(written)), str(sum(p.rewrites for p in written)),
                human_size(r.bytes_written), f"{r.seconds:.1f} s", rate]],
              ["written", "verified", "resumed", "rewrites", "bytes", "time", "speed"])
    if r.backup_set:
        out.line(f"calibration backup: {r.backup_set}")
    if r.formatted:
        out.line(f"formatted: {', '.join(r.formatted)}")
    if r.pmt_written:
        out.line("partition table (PMT) written and verified")
    if r.restored:
        out.line(f"calibration restored and verified: {', '.join(r.restored)}")
    for w in r.warnings:
        if not out.warned(w):  # plan warnings were already shown before the first write
            out.line(f"note: {w}")
    out.line(f"done: {r.mode} on phone {r.cid}")


def resume_command(ctx: typer.Context, drop: tuple[str, ...] = (),
                   set_ref: str | None = None) -> str:
    """The running command rebuilt from its parsed parameters (so it is exact whatever the
    user typed, in a form a shell accepts), minus the options in `drop`; `set_ref` replaces
    restore's SET argument so a resumed restore writes the same set."""
    head = ["romkit"]
    if ctx.parent is not None and ctx.parent.params.get("json_"):
        head.append("--json")
    head.append(ctx.info_name or "")
    positional: list[str] = []
    words: list[str] = []
    for p in ctx.command.params:
        value = ctx.params.get(p.name or "")
        if p.name in drop:
            continue
        if p.name == "set_ref" and set_ref is not None:
            value = set_ref
        if p.param_type_name == "argument":
            if isinstance(value, list | tuple):
                positional += [str(v) for v in value]
            elif value is not None:
                positional.append(str(value))
            continue
        if value is None or value is False or value == p.default or value in ([], ()):
            continue
        opt = p.opts[0]
        if getattr(p, "is_flag", False):
            words.append(opt)
        elif isinstance(value, list | tuple):
            for v in value:
                words += [opt, str(v)]
        else:
            words += [opt, str(value)]
    return shlex.join(head + positional + words)


@contextmanager
def reporting_interrupts(ctx: typer.Context, drop: tuple[str, ...] = ()) -> Iterator[None]:
    """Ctrl-C becomes the shell's one `interrupted:` line (what was left) with the exact
    command that resumes as its hint (see romkit.errors.Interrupted)."""
    try:
        yield
    except KeyboardInterrupt as exc:
        state = exc.state if isinstance(exc, FlashInterrupted) else "stopped"
        set_ref = exc.set_name if isinstance(exc, FlashInterrupted) else None
        raise Interrupted(state, resume=resume_command(ctx, drop, set_ref)) from None


def _csv(values: list[str] | None) -> list[str]:
    return [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]


def _flash_cmd(
    ctx: typer.Context,
    folder: Annotated[Path | None, typer.Argument(
        help="Firmware folder (holding *_scatter*.txt); default: current or last fetched.")
    ] = None,
    port: Annotated[list[str] | None, typer.Option(
        "--port", help="Serial port of the phone (default: wait for a MediaTek USB port). "
                       "Repeat it to flash several phones in parallel.")] = None,
    station: Annotated[bool, typer.Option(
        "--station", help="Repair-shop station: keep waiting for phones and flash each one "
                          "that appears, in parallel.")] = False,
    count: Annotated[int | None, typer.Option(
        "--count", min=1, help="With --station: stop after this many phones.")] = None,
    reflash: Annotated[bool, typer.Option(
        "--reflash", help="With --station: flash a phone again if it comes back.")] = False,
    skip_cid: Annotated[list[str] | None, typer.Option(
        "--skip-cid", hidden=True,
        help="Refuse phones with this eMMC CID (used by the station).")] = None,
    da: DaOpt = None,
    mode: Annotated[str, typer.Option(
        "--mode", help="download-only | firmware-upgrade | format-all")] = "download-only",
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Only these partitions (comma list or repeated).")] = None,
    skip: Annotated[list[str] | None, typer.Option(
        "--skip", help="Leave these partitions out (comma list or repeated).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Show the plan; write nothing (checks the phone if --port).")
    ] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Do not ask before writing (never asked under --json or when "
                            "stdin is not a terminal).")] = False,
    no_verify: Annotated[bool, typer.Option(
        "--no-verify", help="Skip the read-back verification.")] = False,
    no_backup: Annotated[bool, typer.Option(
        "--no-backup", help="Do not save calibration first (loud; not recommended).")] = False,
    erase_ok: Annotated[bool, typer.Option(
        "--i-understand-this-erases-calibration",
        help="Allow format-all / firmware-upgrade without a calibration backup.")] = False,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="Ignore what an interrupted run verified: write and verify every "
                        "partition again.")] = False,
    wait: WaitOpt = 30.0,
    packet_size: PacketOpt = P.DA_PACKET_DEFAULT,
    trace: TraceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Flash a firmware folder to the phone, verify it, keep calibration safe.

    On a terminal it shows the firmware folder, build, mode and what will be written, then
    asks "Flash … to this phone? [y/N]" once the phone is connected; --yes skips the
    question. Under --json or with stdin not a terminal (scripts, the station) it never asks.

    Example: romkit flash --dry-run   (then: romkit flash)
    """
    out.use_json(json_)
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
    ports = list(dict.fromkeys(port or []))
    if station or len(ports) > 1:
        if trace is not None:
            raise UsageError("--trace records one phone's session",
                             hint="trace one phone at a time: give a single --port")
        child = [str(resolve_firmware_dir(folder)), "--mode", mode, "--packet-size",
                 str(packet_size)]
        child += ["--da", str(da.resolve())] if da else []
        child += [f"--only={v}" for v in _csv(only)] + [f"--skip={v}" for v in _csv(skip)]
        child += [flag for flag, on in (("--dry-run", dry_run), ("--no-verify", no_verify),
                                        ("--no-backup", no_backup), ("--fresh", fresh),
                                        ("--i-understand-this-erases-calibration", erase_ok))
                  if on]
        child.append("--yes")  # the one question is asked here, never by each phone
        if not (yes or dry_run or out.json) and _stdin_is_terminal():
            where = "every phone that appears" if station else f"{len(ports)} phones"
            if not typer.confirm(f"Flash {child[0]} ({mode}) to {where}?", default=False,
                                 err=True):
                from romkit.flash.engine import NotConfirmedError

                raise NotConfirmedError("not flashed: the answer was no",
                                        hint="run it again and answer y, or add --yes")
        from romkit.station import StationRequest

        # Ctrl-C: the same command again resumes every phone after its verified partitions
        with reporting_interrupts(ctx, drop=("fresh",)):
            _run_station(StationRequest(ports=[] if station else ports, watch=station,
                                        count=count, flash_args=child, wait=wait,
                                        reflash=reflash))
        return
    if count is not None or reflash:
        raise UsageError("--count and --reflash belong to a station run",
                         hint="add --station, or give --port several times")
    req = FlashRequest(
        firmware_dir=folder, port=ports[0] if ports else None, da=da, dry_run=dry_run,
        wait=wait, packet_size=packet_size, trace=trace, fresh=fresh, skip_cids=_csv(skip_cid),
        options=PlanOptions(mode=cast(Mode, mode), only=_csv(only), skip=_csv(skip),
                            verify=not no_verify, backup=not no_backup,
                            erase_calibration_ok=erase_ok))
    # Ask only a person: a script or the station (stdin not a terminal) and --json callers
    # proceed as they always did, so nothing that ran unattended starts to hang on a prompt.
    ask = not (yes or dry_run or out.json) and _stdin_is_terminal()
    with reporting_interrupts(ctx, drop=("fresh",)):
        result = flash(req, _progress, confirm=ask_before_writing if ask else None)
    out.result(result, lambda: _render_flash(result))


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _run_station(req: StationRequest) -> None:
    """Run a station and show it: a live table on a terminal, result lines otherwise."""
    from romkit.station import PhoneRow, run_station

    live = None
    if not out.json and sys.stdout.isatty():
        from rich.console import Console
        from rich.live import Live

        console = Console()  # transient: erased at the end, the final table is printed plainly
        live = Live(_live_table([], req.watch, console.width), console=console,
                    auto_refresh=False, transient=True)
        live.start(refresh=True)

    def show(event: ProgressEvent) -> None:
        if out.json:
            out.progress(event)
        elif event.kind == "info" and event.label == "station" and live is not None:
            rows = [PhoneRow.model_validate(r) for r in event.data["rows"]]
            live.update(_live_table(rows, req.watch, live.console.width), refresh=True)
        elif event.kind == "info" and "result" in event.data and live is None:
            out.line(event.label)

    try:
        result = run_station(req, show)
    finally:
        if live is not None:
            live.stop()
    payload = result.model_dump(mode="json")
    if result.failed:
        # one document on stdout, as for every command: the error, carrying every row
        if not out.json:
            _render_station(result)
        raise DeviceError(f"{result.failed} of {len(result.phones)} phones failed",
                          hint=f"see each phone's log in {result.log_dir}",
                          details=payload | {"log_dir": str(result.log_dir)})
    out.result(payload, lambda: _render_station(result))


_RESULT_STYLE = {"ok": "bold green", "failed": "bold red", "skipped": "yellow"}
_RIGHT = {"done", "speed"}


def fit_table(rows: list[list[str]], headers: list[str], width: int) -> list[list[str]]:
    """Header + rows with every cell padded to its column and the last column (the note)
    cut to what the terminal has left: a line never wraps, so the live redraw leaves no
    garbage. Columns are two spaces apart, as in the final plain table."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    fixed = sum(widths[:-1]) + 2 * (len(headers) - 1)
    widths[-1] = max(0, min(widths[-1], width - fixed))
    out: list[list[str]] = []
    for row in [headers, *rows]:
        out.append([(c.rjust(w) if h in _RIGHT else c.ljust(w))[:w]
                    for c, w, h in zip(row, widths, headers, strict=True)])
    return out


def _live_table(rows: list[PhoneRow], watching: bool, width: int) -> Any:
    """The live station table: a title with the counts, then one row per phone coloured by
    its result (read from across a bench); the same cells as the final plain table."""
    from rich.text import Text

    from romkit.station import TABLE_HEADERS, table_rows

    running = sum(r.result == "running" for r in rows)
    done = {k: sum(r.result == k for r in rows) for k in ("ok", "failed", "skipped")}
    text = Text(no_wrap=True, overflow="crop")
    text.append(f"romkit station: {running} running, {done['ok']} ok, {done['failed']} "
                f"failed, {done['skipped']} skipped"[:width] + "\n", style="bold")
    fitted = fit_table(table_rows(rows), TABLE_HEADERS, width)
    text.append("  ".join(fitted[0]).rstrip()[:width] + "\n", style="bold underline")
    for row, cells in zip(rows, fitted[1:], strict=True):
        text.append("  ".join(cells).rstrip()[:width] + "\n",
                    style=_RESULT_STYLE.get(row.result, ""))
    if watching:
        text.append("waiting for phones… (Ctrl-C to stop)"[:width], style="dim")
    return text


def _render_station(r: StationResult) -> None:
    import shutil

    from romkit.station import TABLE_HEADERS, table_rows

    cells = table_rows(r.phones)
    if sys.stdout.isatty():  # a note never wraps into the next row on a narrow terminal
        fitted = fit_table(cells, TABLE_HEADERS, shutil.get_terminal_size().columns - 1)
        rule = ["-" * len(c) for c in fitted[0]]
        out.line("\n".join("  ".join(x).rstrip() for x in [fitted[0], rule, *fitted[1:]]))
    else:
        out.line(table(cells, TABLE_HEADERS))
    out.line(f"station: {r.ok} ok, {r.failed} failed, "
             f"{sum(p.result == 'skipped' for p in r.phones)} skipped in {r.seconds:.1f} s")
    out.line(f"logs: {r.log_dir}")


def _backup_cmd(ctx: typer.Context, port: PortOpt = None, da: DaOpt = None,
                preloader: PreloaderOpt = None, firmware: FirmwareOpt = None, wait: WaitOpt = 30.0,
                trace: TraceOpt = None,
                prune: Annotated[bool, typer.Option(
                    "--prune", help="Delete old sets instead (no phone): per phone keep the "
                                    "first good set, the newest good set and the newest N.")
                ] = False,
                keep: Annotated[int | None, typer.Option(
                    "--keep", metavar="N", help=f"With --prune: how many of each phone's "
                                                f"newest sets stay (default {DEFAULT_KEEP}).")
                ] = None,
                dry_run: Annotated[bool, typer.Option(
                    "--dry-run", help="With --prune: list what would be deleted.")] = False,
                json_: JsonOpt = False) -> None:
    """Save NVRAM, PROTECT_F/S, PRO_INFO and SECCFG (IMEI, calibration) to the data dir.

    Sets are never deleted automatically (28 MB each on an S820): `--prune` applies the
    retention rule when you ask, `--prune --dry-run` shows it first.

    Example: romkit backup --port /dev/ttyACM0   (cleanup: romkit backup --prune --dry-run)
    """
    out.use_json(json_)
    if not prune and (keep is not None or dry_run):
        raise UsageError("--keep and --dry-run belong to --prune",
                         hint="romkit backup --prune --keep 3 --dry-run")
    if prune:
        pruned = prune_sets(DEFAULT_KEEP if keep is None else keep, dry_run=dry_run,
                            on_progress=Reporter(_progress))
        payload = {**pruned.model_dump(mode="json"), "freed": pruned.freed,
                   "deleted": [e.name for e in pruned.deleted], "backups_dir": str(backups_root())}
        out.result(payload, lambda: _render_prune(pruned))
        return
    req = BackupRequest(port=port, da=da, preloader=preloader, firmware_dir=firmware, wait=wait,
                        trace=trace)
    with reporting_interrupts(ctx):
        result = backup_phone(req, _progress)
    out.result(result, lambda: _render_backup(result))


def _render_prune(r: PruneResult) -> None:
    if not r.sets:
        out.line(f"no backup sets in {backups_root()}")
        return
    gone = "would delete" if r.dry_run else "deleted"
    out.table([[e.name, e.created, e.verdict, human_size(e.size),
                f"keep ({e.reason})" if e.keep else gone] for e in r.sets],
              ["set", "created", "calibration", "size", "action"])
    kept = [e for e in r.sets if e.keep]
    out.line(f"{'dry run: ' if r.dry_run else ''}{gone} {len(r.deleted)} set(s), "
             f"{human_size(r.freed)}; kept {len(kept)} set(s), "
             f"{human_size(sum(e.size for e in kept))} in {backups_root()}")


def _render_backup(r: BackupResult) -> None:
    rows = [[x.name, _hex(x.offset), human_size(x.length), x.sha256,
             "BLANK" if x.name in r.blank else ""] for x in r.ranges]
    out.line(table(rows, ["partition", "offset", "bytes", "sha256", ""]))
    out.line(f"backup set: {r.set_name} ({r.verdict}, taken {r.when})")
    out.line(f"stored in:  {r.path}")


def _restore_cmd(
    ctx: typer.Context,
    set_ref: Annotated[str | None, typer.Argument(
        help="Backup set: path, <cid>/<timestamp> or timestamp (default: the phone's newest "
             "good set).")] = None,
    port: PortOpt = None, da: DaOpt = None, preloader: PreloaderOpt = None,
    firmware: FirmwareOpt = None, wait: WaitOpt = 30.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be written.")
                       ] = False,
    list_: Annotated[bool, typer.Option("--list", help="List backup sets and exit.")] = False,
    trace: TraceOpt = None,
    allow_layout_mismatch: Annotated[bool, typer.Option(
        "--allow-layout-mismatch",
        help="Restore a partition the phone's layout moved at its current place, and one it "
             "no longer has at the backup's offset (overwrites what lives there).")] = False,
    json_: JsonOpt = False,
) -> None:
    """Write a calibration backup back to its phone and verify it by readback.

    Without SET: the newest good set of the phone (calibration not blank, not read after a
    format); `--list` marks which sets those are.

    Example: romkit restore --list   (then: romkit restore SET --dry-run)
    """
    out.use_json(json_)
    if list_:
        sets = list_backups()
        sizes = {s.name: set_size(s.path) for s in sets}
        firsts: dict[str, str] = {}
        for s in sets:  # newest first: the first good set per phone is its default
            if s.good:
                firsts.setdefault(s.manifest.cid, s.name)
        defaults = set(firsts.values())
        payload: list[dict[str, Any]] = [
            {"name": s.name, "path": str(s.path), "created": s.manifest.created,
             "reason": s.manifest.reason, "when": s.manifest.when, "verdict": s.verdict,
             "blank": s.blank_parts, "default": s.name in defaults, "size": sizes[s.name],
             "partitions": [e.name for e in s.manifest.entries]}
            for s in sets]
        out.result(payload, lambda: _render_list(payload))  # JSON: a list, as before (+size)
        return
    req = RestoreRequest(set_ref=set_ref, port=port, da=da, preloader=preloader,
                         firmware_dir=firmware, wait=wait, dry_run=dry_run, trace=trace,
                         allow_layout_mismatch=allow_layout_mismatch)
    with reporting_interrupts(ctx):
        result = restore_phone(req, _progress)
    out.result(result, lambda: _render_restore(result))


def _render_list(payload: list[dict[str, Any]]) -> None:
    if not payload:
        out.line(f"no backup sets in {backups_root()}")
        return
    out.line(table(
        [[p["name"] + (" *" if p["default"] else ""), p["created"], p["verdict"].upper()
          if p["verdict"] != "good" else "good", p["when"], human_size(p["size"]),
          ",".join(p["partitions"]), p["reason"]] for p in payload],
        ["set (* = default)", "created", "calibration", "taken", "size", "partitions",
         "reason"]))
    out.line(f"{len(payload)} set(s), {human_size(sum(p['size'] for p in payload))} in "
             f"{backups_root()}  (prune: romkit backup --prune --dry-run)")


def _render_restore(r: RestoreResult) -> None:
    rows = [[x.name, x.region.replace("EMMC_", ""), _hex(x.offset), human_size(x.length),
             x.sha256[:16], "verified" if x.name in r.verified else "-"] for x in r.ranges]
    out.line(table(rows, ["partition", "region", "offset", "bytes", "sha256", "status"]))
    out.line(f"dry run: nothing written (set {r.set_name})" if r.dry_run
             else f"restored {r.set_name} to phone {r.cid}")


def _readback_cmd(
    ctx: typer.Context,
    args: Annotated[list[str], typer.Argument(help="NAME... OUT_DIR (or --all OUT_DIR)")],
    all_: Annotated[bool, typer.Option("--all", help="Every partition on the phone.")] = False,
    port: PortOpt = None, da: DaOpt = None, preloader: PreloaderOpt = None,
    firmware: FirmwareOpt = None, wait: WaitOpt = 30.0,
    packet_size: PacketOpt = P.DA_PACKET_DEFAULT, trace: TraceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Dump partitions from the phone into OUT_DIR (one NAME.bin each, sha256 printed).

    Example: romkit readback NVRAM,PRO_INFO ./dump
    """
    out.use_json(json_)
    if all_ and len(args) != 1:
        raise UsageError("with --all give only OUT_DIR", hint="romkit readback --all ./dump")
    if not all_ and len(args) < 2:
        raise UsageError("give partition names and OUT_DIR",
                         hint="romkit readback NVRAM,PRO_INFO ./dump  (or --all ./dump)")
    req = ReadbackRequest(names=args[:-1], all=all_, out_dir=Path(args[-1]), port=port, da=da,
                          preloader=preloader, firmware_dir=firmware, wait=wait,
                          packet_size=packet_size, trace=trace)
    with reporting_interrupts(ctx):
        result = readback(req, _progress)
    out.result(result, lambda: _render_readback(result))


def _render_readback(r: ReadbackResult) -> None:
    for x in r.ranges:
        out.line(f"{x.sha256}  {x.file}  ({human_size(x.length)})")


def register(app: typer.Typer) -> None:
    app.command("flash")(_flash_cmd)
    app.command("backup")(_backup_cmd)
    app.command("restore")(_restore_cmd)
    app.command("readback")(_readback_cmd)
