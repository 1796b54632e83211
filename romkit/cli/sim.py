"""`romkit sim`: plug in a virtual Lenovo S820 (MT6589) on a pseudo-terminal or a TCP port.

Lets users rehearse a flash, and tests drive the real engine, without risking a phone.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Literal

import typer
from pydantic import BaseModel, ValidationError

from romkit.cli.output import JsonOpt, human_size, out
from romkit.errors import UsageError
from romkit.sim.dialects import DEFAULT_DIALECT, KNOB_VALUES, listing, resolve
from romkit.sim.faults import FaultPlan
from romkit.sim.fleet import (
    FleetSpec,
    build_fleet,
    check_count,
    parse_years,
    phone_cid,
    serve_fleet,
    split_faults,
)
from romkit.sim.link import DEFAULT_LINK, parse_link
from romkit.sim.phone import DEFAULT_BOOT, VirtualPhone, default_state_dir, serve, state_action
from romkit.sim.session import SessionLog, parse_memory_id


class SimOptions(BaseModel):
    """The options of `romkit sim`, validated."""

    year: Literal[2013, 2014] = 2013
    memory_id: str | None = None
    storage: Literal["4G", "8G"] = "4G"
    state: Path | None = None
    boot: Literal["brom", "preloader"] = DEFAULT_BOOT
    dialect: str = DEFAULT_DIALECT
    link: str = DEFAULT_LINK
    trace: Path | None = None
    faults: list[str] = []
    once: bool = False
    reset: bool = False
    dry_run: bool = False


def _emit_line(payload: dict[str, object]) -> None:
    """One compact JSON document per line, flushed at once (tests read it from a pipe)."""
    typer.echo(json.dumps(payload, default=str))


def _session_summary(log: SessionLog) -> dict[str, object]:
    return {"event": "session", "index": log.index, "outcome": log.outcome,
            "bytes_written": log.bytes_written, "bytes_read": log.bytes_read,
            "emi_ret": log.emi.ext_ram_ret if log.emi else None, "ports": log.ports,
            "faults_fired": log.faults_fired, "violation": log.violation}


def sim_command(
    year: int = typer.Option(2013, "--year", help="Build year: picks the memory part (2013|2014)."),
    memory_id: str | None = typer.Option(None, "--memory-id", metavar="HEX",
                                         help="eMMC CID bytes to report (overrides --year)."),
    storage: str = typer.Option("4G", "--storage", help="eMMC size: 4G or 8G."),
    state: Path | None = typer.Option(None, "--state", metavar="DIR",
                                      help="Folder holding the phone's eMMC (sparse files)."),
    boot: str = typer.Option(DEFAULT_BOOT, "--boot",
                             help="Download mode: brom (default, USB PID 0003) or preloader "
                                  "(PID 2000)."),
    dialect: str = typer.Option(DEFAULT_DIALECT, "--dialect", metavar="NAME[,KNOB=VALUE]",
                                help="Reading of the contested protocol points; "
                                     "`--dialect list` shows them."),
    link: str = typer.Option(DEFAULT_LINK, "--link", metavar="pty|tcp[:HOST:PORT]",
                             help="The cable: a pseudo-terminal, or a TCP port that pyserial "
                                  "opens as socket://HOST:PORT (default port: chosen by the "
                                  "system)."),
    trace: Path | None = typer.Option(None, "--trace", metavar="FILE",
                                      help="Record every byte both ways (romkit trace format, "
                                           "side=phone; .gz compresses)."),
    fault: list[str] = typer.Option([], "--fault", metavar="SPEC",  # noqa: B006
                                    help="Inject a fault (repeatable): corrupt@N, drop@N, "
                                         "disconnect@N, stall@N:SECS, nack@K, rate=BPS, "
                                         "window=SECS; with --phones, K:SPEC for phone K "
                                         "only."),
    phones: int | None = typer.Option(None, "--phones", metavar="N",
                                      help="Plug in N virtual phones at once (a station's "
                                           "bench): each has its own CID and a state folder "
                                           "phoneNN under --state."),
    years: str | None = typer.Option(None, "--years", metavar="Y,Y,...",
                                     help="With --phones: the build year of each phone, "
                                          "repeated in turn (e.g. 2013,2013,2014)."),
    once: bool = typer.Option(False, "--once", help="Exit after one session."),
    reset: bool = typer.Option(False, "--reset", help="Restore the factory eMMC state first."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Validate the options and say what would happen."),
    json_: JsonOpt = False,
) -> None:
    """Plug in a virtual S820 in download mode on a pty or TCP port (Ctrl-C to unplug).

    Example: romkit sim --year 2014 --state ./phone
    """
    out.use_json(json_)
    if dialect.strip().lower() == "list":
        _list_dialects()
        return
    try:
        opts = SimOptions.model_validate({
            "year": year, "memory_id": memory_id, "storage": storage.upper(), "state": state,
            "boot": boot.lower(), "dialect": dialect, "link": link, "trace": trace, "faults": fault,
            "once": once, "reset": reset, "dry_run": dry_run})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]).replace("_", "-")
        raise UsageError(f"--{where}: {first['msg']}",
                         hint="see `romkit sim --help` for the accepted values") from None
    if phones is not None or years is not None:
        _fleet(opts, phones or 1, years or str(opts.year), memory_given=memory_id is not None)
        return
    plan = FaultPlan.parse(opts.faults)
    chosen = resolve(opts.dialect)
    link_kind, link_host, link_port = parse_link(opts.link)
    state_dir = opts.state or default_state_dir(opts.storage)

    if opts.dry_run:
        cid = parse_memory_id(opts.memory_id, opts.year)
        payload = {"dry_run": True, "state_dir": str(state_dir), "memory_id": cid.hex(),
                   "storage": opts.storage, "boot": opts.boot, "dialect": chosen.name,
                   "link": link_kind if link_kind == "pty" else
                   f"tcp:{link_host}:{link_port or 'auto'}",
                   "knobs": chosen.knobs(), "faults": plan.describe(),
                   "state": state_action(state_dir, opts.storage, opts.reset)}
        out.result(payload, lambda: out.line(
            f"would plug in a virtual S820 ({opts.storage}, built {opts.year}, memory ID "
            f"{cid.hex()}, {opts.boot} mode, dialect {chosen.name}) and {payload['state']} "
            f"in {state_dir}"))
        return

    phone: VirtualPhone

    def on_port(port: str) -> None:
        if out.json:
            _emit_line({"event": "port"} | phone.info() | {"port": port})
        elif phone.generation == 0:
            typer.echo(f"virtual S820 (MT6589, built {opts.year}) on {port} — Ctrl-C to unplug")
        else:
            typer.echo(f"re-enumerated (USB PID {phone.usb_pid:04x}, generation "
                       f"{phone.generation}) on {port}")

    def on_session(log: SessionLog) -> None:
        if out.json:
            _emit_line(_session_summary(log))
            return
        faults = f"; faults: {', '.join(log.faults_fired)}" if log.faults_fired else ""
        why = f"; {log.violation}" if log.violation else ""
        typer.echo(f"session {log.index + 1} ended: {log.outcome} (written "
                   f"{human_size(log.bytes_written)}, read {human_size(log.bytes_read)}"
                   f"{faults}{why})")

    phone = VirtualPhone(state_dir, year=opts.year, memory_id=opts.memory_id,
                         storage=opts.storage, boot=opts.boot, faults=plan, once=opts.once,
                         reset=opts.reset, on_port=on_port, dialect=chosen, trace=opts.trace,
                         link=opts.link)
    if not out.json:
        typer.echo(f"memory part: {phone.memory_label} (ID {phone.config.cid.hex()}); "
                   f"eMMC {opts.storage}; state in {state_dir}")
        typer.echo(f"{opts.boot} mode; dialect {chosen.name}: {chosen.describe()}")
    _unplug_on_signals()
    try:
        serve(phone, on_session)
    except KeyboardInterrupt:
        out.note("unplugged")


def _fleet(opts: SimOptions, count: int, years: str, memory_given: bool) -> None:
    """`--phones N`: N phones in this process, one JSON line (or text line) per port."""
    if memory_given or opts.trace is not None:
        raise UsageError("--memory-id and --trace describe one phone",
                         hint="drop them with --phones (each phone gets its own CID)")
    spec = FleetSpec(count=check_count(count), years=parse_years(years, count),
                     root=opts.state or default_state_dir(opts.storage).parent
                     / f"fleet-{opts.storage.lower()}", storage=opts.storage, boot=opts.boot,
                     dialect=opts.dialect, link=opts.link,
                     faults=split_faults(opts.faults, count), once=opts.once, reset=opts.reset)
    if opts.dry_run:
        rows = [{"phone": i, "year": spec.years[i - 1],
                 "cid": phone_cid(spec.years[i - 1], i).hex(),
                 "state_dir": str(spec.state_dir(i)),
                 "state": state_action(spec.state_dir(i), opts.storage, opts.reset),
                 "faults": spec.faults[i - 1].describe()} for i in range(1, count + 1)]

        def show() -> None:
            for r in rows:
                out.line(f"would plug in phone {r['phone']}: virtual S820 built {r['year']}, "
                         f"CID {r['cid']}, {r['state']} in {r['state_dir']}")

        out.result({"dry_run": True, "phones": rows}, show)
        return
    index: dict[int, int] = {}

    def on_port(phone: VirtualPhone, port: str) -> None:
        n = index[id(phone)]
        if out.json:
            _emit_line({"event": "port", "phone": n, "cid": phone.config.cid.hex()}
                       | phone.info() | {"port": port})
        elif phone.generation == 0:
            typer.echo(f"phone {n}: virtual S820 built {phone.config.year} ({phone.memory_label},"
                       f" CID {phone.config.cid.hex()}) on {port}")
        else:
            typer.echo(f"phone {n}: re-enumerated (USB PID {phone.usb_pid:04x}) on {port}")

    def on_session(phone: VirtualPhone, log: SessionLog) -> None:
        n = index[id(phone)]
        if out.json:
            _emit_line(_session_summary(log) | {"phone": n, "cid": phone.config.cid.hex()})
        else:
            typer.echo(f"phone {n}: session {log.index + 1} ended: {log.outcome} (written "
                       f"{human_size(log.bytes_written)})")

    def on_started() -> None:
        if out.json:
            _emit_line({"event": "ready", "phones": count, "state": str(spec.root)})
        else:
            typer.echo(f"{count} virtual phones plugged in; state in {spec.root} — Ctrl-C to "
                       "unplug them all")

    fleet = build_fleet(spec, on_port)
    index.update({id(phone): n for n, phone in enumerate(fleet, start=1)})
    _unplug_on_signals()
    try:
        serve_fleet(fleet, on_session, on_started)
    except KeyboardInterrupt:
        out.note("unplugged")


def _list_dialects() -> None:
    rows = listing()
    if out.json:
        _emit_line({"dialects": rows, "default": DEFAULT_DIALECT})
        return
    for row in rows:
        mark = " (default)" if row["default"] else ""
        typer.echo(f"{row['name']}{mark}: {row['description']} [source: {row['source']}]")
        knobs = " ".join(f"{k}={row[k]}" for k in KNOB_VALUES)
        typer.echo(f"    {knobs}")


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _unplug_on_signals() -> None:
    """Ctrl-C and `kill` both unplug the phone cleanly (pty closed, state flushed).

    A shell starts background jobs with SIGINT ignored, so `romkit sim &` would otherwise
    ignore Ctrl-C / `kill -INT`; SIGTERM would kill it without closing the pty.
    """
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)


def register(app: typer.Typer) -> None:
    app.command("sim")(sim_command)
