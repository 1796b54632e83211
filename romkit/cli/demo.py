"""`romkit demo`: the whole story on a virtual phone, each step shown as it completes.

Thin shell over `romkit.demo.run_demo`. Step events ("info" events whose data carries
`step` / `phase`) are rendered here as numbered lines, each with the command that does the
step by hand in the demo's workspace (after the one `export ROMKIT_HOME=…` line shown first);
the real-phone commands follow the summary. The progress of the libraries the demo drives goes
to the usual progress output (stderr).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from romkit.cli.output import JsonOpt, out, table
from romkit.demo import WORKSPACE_PLACEHOLDER, DemoRequest, DemoResult, env_line, run_demo
from romkit.errors import EXIT_FAILURE, UsageError
from romkit.progress import ProgressEvent

if TYPE_CHECKING:
    from romkit.demo_station import StationDemoResult

_INDENT = "      "
_driven = out.indented(f"{_INDENT}| ")
_REAL_BENCH = "a real bench (phones switched off, plugged in one by one)"
_STATUS_WORDS = {"ok": "ok", "expected-error": "refused, as expected", "failed": "FAILED",
                 "planned": "planned"}


def _render_step_done(data: dict[str, Any]) -> None:
    record = data.get("record") or {}
    status = str(record.get("status", data.get("status", "")))
    out.line(f"{_INDENT}{_STATUS_WORDS.get(status, status)}: {record.get('detail', '')}")
    extra = record.get("data") or {}
    if record.get("id") == "flash-refused" and extra.get("hint"):
        out.line(f"{_INDENT}hint: {extra['hint']}")
    if record.get("id") == "explain":
        for key in ("cause", "fix"):
            if extra.get(key):
                out.line(f"{_INDENT}{key}: {extra[key]}")


def _render_step_start(event: ProgressEvent, banner: str) -> None:
    """A step's title and its `$` line; before the first step the banner and the shell line
    that points the `$` lines at the demo's private data dir."""
    data = dict(event.data)
    if data.get("index") == 1:
        out.line(banner)
        for name, value in (data.get("env") or {}).items():
            out.line("every $ line below does its step by hand; paste them after:")
            out.line(f"{_INDENT}$ {env_line(name, value)}")
            if WORKSPACE_PLACEHOLDER in value:
                out.line(f"{_INDENT}({WORKSPACE_PLACEHOLDER} is the temp folder a run makes; "
                         "choose it with --workdir)")
        out.line()
    out.line(event.label)
    if data.get("command"):
        out.line(f"{_INDENT}$ {data['command']}")


def _render_commands(result: DemoResult | StationDemoResult, real: str) -> None:
    """Where the `$` lines can be run again, and the same story's commands for real phones."""
    if result.dry_run:
        pass
    elif result.kept:
        out.line(f"workspace kept:     {result.workdir}")
        out.line(f"{_INDENT}the $ lines above work on it again: the export line first, "
                 "`romkit sim …` in a terminal of its own")
    else:
        out.line(f"workspace {result.workdir} removed; with --keep the $ lines above can be "
                 "run again on it")
    commands = [s.real_command for s in result.steps if s.real_command]
    if commands:
        out.line(f"on {real}:")
        for command in commands:
            out.line(f"{_INDENT}$ {command}")


def _progress(event: ProgressEvent) -> None:
    data = dict(event.data)
    is_step = event.kind == "info" and "step" in data and "phase" in data
    if out.json:
        # One JSON line per event on stderr; per-packet byte counts would only bury the steps.
        if event.kind != "update":
            out.progress(event)
        return
    if is_step:
        if data["phase"] in ("start", "planned"):
            _render_step_start(event, "romkit demo: the whole story on a virtual Lenovo S820 "
                                      "(SYNTHETIC firmware, no network beyond 127.0.0.1)")
        else:
            _render_step_done(data)
        return
    if event.kind == "info" and event.label == "plan" and "plan" in data:
        return  # the flash plan table belongs to `romkit flash`, not to the story
    # what the driven commands say (messages, finished items), indented under their step
    _driven(event)


def _not_green(result: DemoResult | StationDemoResult, story: str) -> None:
    failed = next((s for s in result.steps if s.status == "failed"), None)
    where = f" at step '{failed.id}'" if failed else ""
    out.line(f"summary: the {story} did NOT end green{where}")


def _dry_run_end(result: DemoResult | StationDemoResult, verb: str, real: str) -> bool:
    """After a blank line: a dry run's last lines (what was not done, the real commands);
    True when the result was a dry run and nothing more is to be said."""
    out.line()
    if not result.dry_run:
        return False
    out.line(f"dry run: nothing was built, {verb} or flashed")
    _render_commands(result, real)
    return True


def _render(result: DemoResult) -> None:
    if _dry_run_end(result, "served", "a real S820"):
        return
    if result.ok:
        out.line(f"summary: error {result.first_error_code} first (nothing written), then "
                 f"{len(result.verified_partitions)} partitions flashed and verified; the "
                 "virtual eMMC equals the images byte for byte")
    else:
        _not_green(result, "story")
    if result.backup_set:
        out.line(f"calibration backup: {result.backup_set}")
        out.line(f"stored in:          {result.backup_path}")
    out.line(f"time: {result.seconds:.1f} s")
    _render_commands(result, "a real S820 (switched off, USB plugged in)")


def _station_progress(event: ProgressEvent) -> None:
    """The station demo: the steps, one line per phone as it starts and ends (the table of
    every phone comes with the result); the children's bars would only interleave."""
    data = dict(event.data)
    if "step" in data and "phase" in data:
        if out.json:
            out.progress(event)
        elif data["phase"] in ("start", "planned"):
            _render_step_start(event, "romkit demo --station: three virtual S820s on one "
                                      "bench, one station run (SYNTHETIC firmware)")
        else:
            _render_step_done(data)
    elif out.json:
        if event.kind not in ("update",) and event.label != "station":
            out.progress(event)
    elif event.kind == "info" and "result" in data or "flashing started" in event.label:
        _driven(event)


def _render_station(result: StationDemoResult) -> None:
    from romkit.station import TABLE_HEADERS, phone_label, table_rows

    if _dry_run_end(result, "plugged in", _REAL_BENCH):
        return
    if result.phones:
        out.line(table(table_rows(result.phones), TABLE_HEADERS))
        out.line()
    for c in result.checks:
        out.line(f"phone {c.index} ({c.year}, {phone_label(c.cid)}): "
                 f"{'as expected' if c.ok else 'NOT as expected'} — {c.detail}")
    ok = sum(r.result == "ok" for r in result.phones)
    refused = sum(c.spft_code == 4032 for c in result.checks)
    if result.ok:
        out.line(f"summary: {ok} phones flashed and verified, {refused} stopped with 4032 "
                 "before writing; no phone was held up by another")
    else:
        _not_green(result, "station story")
    if result.log_dir and result.kept:
        out.line(f"station logs:       {result.log_dir}")
    out.line(f"time: {result.seconds:.1f} s")
    _render_commands(result, _REAL_BENCH)


def _demo_cmd(
    keep: Annotated[bool, typer.Option(
        "--keep", help="Leave the workspace (firmware, phone storage, backup) for inspection."
    )] = False,
    workdir: Annotated[Path | None, typer.Option(
        "--workdir", help="Workspace folder (new, empty, or an earlier demo's); default: a "
                          "temp folder.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List the steps and their commands; build and run nothing.")
    ] = False,
    wait: Annotated[float, typer.Option(
        "--wait", min=1.0, max=300.0, help="Seconds to wait for the virtual phone.")] = 20.0,
    link: Annotated[str | None, typer.Option(
        "--link", metavar="pty|tcp", help="The virtual phone's cable: a pseudo-terminal "
        "(default where the system has them) or a TCP port on 127.0.0.1.")] = None,
    station: Annotated[bool, typer.Option(
        "--station", help="The repair-shop story instead: three phones (one a 2014 unit that "
                          "stops with 4032) flashed by one station run.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Run the whole story on a virtual S820 built in 2014: fetch, 4032, prepare, flash, verify.

    Needs no phone and no network (a local mirror on 127.0.0.1); touches none of your romkit
    folders (ROMKIT_HOME points into the workspace while it runs).

    Example: romkit demo --keep
    """
    out.use_json(json_)
    if link is not None and link.lower() not in ("pty", "tcp"):
        raise UsageError(f"--link {link!r} is not a cable the demo knows",
                         hint="use --link pty or --link tcp")
    req = DemoRequest.model_validate({"workdir": workdir, "keep": keep, "dry_run": dry_run,
                                      "wait": wait, "link": link.lower() if link else None})
    result: DemoResult | StationDemoResult
    if station:
        from romkit.demo_station import run_station_demo  # the station loads only when asked

        result = run_station_demo(req, _station_progress)
        station_result = result
        out.result(result, lambda: _render_station(station_result))
    else:
        result = run_demo(req, _progress)
        demo_result = result
        out.result(result, lambda: _render(demo_result))
    if not result.ok:
        error = result.error or {}
        out.note("error: the demo did not end green" + (
            f": {error['message']}" if error.get("message") else ""))
        hints = [str(error["hint"])] if error.get("hint") else []
        if not result.kept:
            hints.append("run `romkit demo --keep` to inspect the workspace of a failed run")
        if hints:
            out.note("hint: " + "; ".join(hints))  # one hint line, as every error has
        raise typer.Exit(int(error.get("exit_code") or EXIT_FAILURE))


def register(app: typer.Typer) -> None:
    app.command("demo")(_demo_cmd)
