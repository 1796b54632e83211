"""A repair-shop station: flash several phones at once, none of them hurting another.

Why one child process per phone: each phone gets its own `romkit flash` process (its own
port, DA session, 4032 check, calibration backup, journal and verify — the exact code path a
single flash uses, so nothing is re-implemented here). A crash, a hang, an unplug or a 4032
in one process cannot touch the others; the kernel releases that process's port and phone
locks when it dies; and the two cores of a small shop PC are both used (one Python process
would share one interpreter lock). The children speak `--json`: progress events on stderr,
one result or error document on stdout. On POSIX each child is forked from a fork server
that has the flash stack imported already (a fresh interpreter's imports cost ~0.25 s of CPU
per phone, a third of a small flash's host CPU); elsewhere it is a fresh `python -m romkit`.
Either way it is a separate process running exactly `romkit --json flash …`. This module
reads them, keeps one row per phone, writes a log file per phone and reports rows through the
usual progress callback; it never prints.

A phone is known by its eMMC CID once its child has connected. A phone already flashed in
this station run is not flashed again (the child is told the CIDs that are done and stops
before writing) unless `reflash` is set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from romkit import paths, virtualports
from romkit.errors import UsageError
from romkit.progress import ProgressCallback, ProgressEvent, Reporter

Result = Literal["waiting", "running", "ok", "failed", "skipped"]
SKIP_ERROR = "AlreadyFlashedError"  # what a child raises for a CID done in this run
ROWS_INTERVAL = 0.25  # seconds between two table reports while nothing finishes


class StationRequest(BaseModel):
    """What `romkit flash --port A --port B …` or `romkit flash --station` asked for."""

    ports: list[str] = Field(default_factory=list)
    watch: bool = False  # --station: keep discovering ports
    count: int | None = Field(default=None, ge=1)  # stop after this many phones finished
    flash_args: list[str] = Field(default_factory=list)  # passed to every child `romkit flash`
    wait: float = Field(default=30.0, gt=0)  # per child: seconds to wait for its port
    reflash: bool = False
    log_dir: Path | None = None
    poll: float = Field(default=0.25, gt=0)
    idle_exit: float | None = Field(default=None, gt=0)  # watch mode: stop after this much idle
    # how each phone's child starts: forked from a fork server with the flash stack already
    # imported (POSIX), or a fresh `python -m romkit` (everywhere; "auto" picks the first)
    launcher: Literal["auto", "forkserver", "exec"] = "auto"


class PhoneRow(BaseModel):
    """One phone as the station's table shows it."""

    port: str
    cid: str | None = None
    memory: str | None = None
    stage: str = "starting"
    done: int = 0
    total: int | None = None
    bytes_per_s: float = 0.0
    result: Result = "running"
    message: str = ""
    spft_code: int | None = None
    exit_code: int | None = None
    backup_set: str | None = None
    log: Path | None = None
    seconds: float = 0.0
    cpu_seconds: float | None = None  # the child's CPU time, where it reports it


class StationResult(BaseModel):
    phones: list[PhoneRow]
    seconds: float
    log_dir: Path

    @property
    def ok(self) -> int:
        return sum(r.result == "ok" for r in self.phones)

    @property
    def failed(self) -> int:
        return sum(r.result == "failed" for r in self.phones)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_") or "port"


def child_command(port: str, req: StationRequest, done_cids: list[str]) -> list[str]:
    """The `romkit flash` command line of one phone."""
    cmd = [sys.executable, "-m", "romkit", "--json", "flash", *req.flash_args,
           "--port", port, "--wait", f"{req.wait:g}"]
    if not req.reflash:
        for cid in done_cids:
            cmd += ["--skip-cid", cid]
    return cmd


# What a `romkit flash` child imports before it can do anything (~0.25 s of CPU per process
# measured with `python -X importtime`, a third of a small flash's host CPU). The fork server
# imports it once; each phone's child is a fork of it that starts flashing at once.
PRELOAD = ["romkit.cli.app", "romkit.cli.flash", "romkit.flash.engine", "serial"]


def _forkserver() -> Any:
    """The multiprocessing fork-server context with the flash stack preloaded (POSIX only).

    Why a fork server and not a plain fork of this process: the station runs threads (log
    readers, the live table) and forking a threaded process can copy a held lock into the
    child; the fork server is a separate single-threaded process, started by exec, that only
    imports and forks.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _launcher(req: StationRequest) -> str:
    if req.launcher != "auto":
        return req.launcher
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "exec"


def _forked_main(argv: list[str], env: dict[str, str], out_w: Any, err_w: Any) -> None:
    """Body of a forked child: exactly `romkit ARGV` with the station's environment, its
    stdout/stderr on the pipes the station reads."""
    os.environ.clear()
    os.environ.update(env)
    os.dup2(out_w.fileno(), 1)
    os.dup2(err_w.fileno(), 2)
    out_w.close()
    err_w.close()
    sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
    import resource  # POSIX only, as the fork server is

    from romkit.cli.app import main

    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sys.stderr.write(json.dumps({"event": "info", "task": "station", "label": "",
                                 "data": {"cpu_seconds": usage.ru_utime + usage.ru_stime}})
                     + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no multiprocessing clean-up of state the fork inherited


class _Forked:
    """A fork-server child behind the part of `subprocess.Popen` the station uses."""

    def __init__(self, argv: list[str]) -> None:
        ctx = _forkserver()
        out_r, out_w = ctx.Pipe(duplex=False)
        err_r, err_w = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_forked_main, args=(argv, dict(os.environ), out_w,
                                                             err_w))
        self._proc.start()
        out_w.close()  # only the child writes: its exit closes the pipes
        err_w.close()
        self.stdout = open(os.dup(out_r.fileno()), encoding="utf-8")  # noqa: SIM115
        self.stderr = open(os.dup(err_r.fileno()), encoding="utf-8")  # noqa: SIM115
        out_r.close()
        err_r.close()
        self.pid = self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.exitcode

    def poll(self) -> int | None:
        return self._proc.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._proc.join(timeout)
        if self._proc.exitcode is None:
            raise subprocess.TimeoutExpired("romkit flash", timeout or 0)
        return self._proc.exitcode

    def terminate(self) -> None:
        self._proc.terminate()

    def kill(self) -> None:
        self._proc.kill()


class _Phone:
    """One child process and the row it feeds; its reader threads own the row's updates."""

    def __init__(self, port: str, cmd: list[str], log: Path, changed: Callable[[], None],
                 forward: ProgressCallback, ended: threading.Event, launcher: str = "exec"):
        self.row = PhoneRow(port=port, log=log)
        self._changed = changed
        self._forward = forward
        self._ended = ended  # set when the child's stdout closes: the station looks at once
        self._t0 = time.monotonic()
        self._last: tuple[float, int] = (self._t0, 0)
        self._log = log.open("w", encoding="utf-8")
        self._log.write("$ " + " ".join(cmd) + "\n")
        self._lock = threading.Lock()
        self.proc: subprocess.Popen[str] | _Forked = self._launch(cmd, launcher)
        self._stdout: list[str] = []
        self._threads = [threading.Thread(target=self._read_events, daemon=True),
                         threading.Thread(target=self._read_result, daemon=True)]
        for t in self._threads:
            t.start()

    def _launch(self, cmd: list[str], launcher: str) -> subprocess.Popen[str] | _Forked:
        if launcher == "forkserver":
            try:
                forked = _Forked(cmd[3:])  # cmd = [python, -m, romkit, ARGV...]
                self._log.write("(forked from the station's fork server)\n")
                return forked
            except (OSError, EOFError, RuntimeError) as exc:  # no fork server: a fresh python
                self._log.write(f"(fork server unavailable: {exc}; started afresh)\n")
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1)

    def _write_log(self, prefix: str, line: str) -> None:
        with self._lock:
            self._log.write(f"{time.monotonic() - self._t0:9.3f} {prefix} {line}")
            if not line.endswith("\n"):
                self._log.write("\n")
            self._log.flush()

    def _read_events(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._write_log("E", line)
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a stray non-JSON line (e.g. a Python warning): logged only
            if isinstance(event, dict):
                self._on_event(event)

    def _read_result(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._write_log("O", line)
            self._stdout.append(line)
        self._ended.set()

    def _on_event(self, ev: dict[str, Any]) -> None:
        row = self.row
        data = ev.get("data") or {}
        if ev.get("task") == "station" and isinstance(data, dict):
            row.cpu_seconds = data.get("cpu_seconds")  # the forked child's own account
            return
        plan = data.get("plan") if isinstance(data, dict) else None
        if isinstance(plan, dict) and isinstance(plan.get("device"), dict):
            dev = plan["device"]
            row.cid = dev.get("cid") or row.cid
            row.memory = dev.get("memory_part") or dev.get("memory") or row.memory
            row.stage = "plan"
        if ev.get("event") == "start" and ev.get("task") != "flash":
            label = str(ev.get("label") or ev.get("task") or row.stage)
            row.stage = label.split(" -> ")[0]  # "backup calibration -> /long/path": the what
        if ev.get("task") == "flash" and ev.get("event") in ("start", "update"):
            now = time.monotonic()
            done = int(ev.get("done") or 0)
            row.total = ev.get("total") or row.total
            t_last, d_last = self._last
            if now - t_last >= 0.5 and done >= d_last:
                row.bytes_per_s = (done - d_last) / (now - t_last)
                self._last = (now, done)
            row.done = done
        if ev.get("event") in ("info", "warning") and isinstance(data, dict):
            if data.get("backup_set"):
                row.backup_set = str(data["backup_set"])
            if data.get("cid") and not row.cid:
                row.cid = str(data["cid"])
        row.seconds = time.monotonic() - self._t0
        self._forward(ProgressEvent(
            ev.get("event", "info"), f"{row.port}:{ev.get('task') or ''}",
            str(ev.get("label") or ""), int(ev.get("done") or 0), ev.get("total"),
            str(ev.get("unit") or "B"),
            {**(data if isinstance(data, dict) else {}), "port": row.port, "cid": row.cid}))
        self._changed()

    def finish(self) -> PhoneRow:
        """Collect the child's outcome (call once the process has exited)."""
        for t in self._threads:
            t.join(timeout=5)
        row = self.row
        row.exit_code = self.proc.returncode
        row.seconds = time.monotonic() - self._t0
        doc: dict[str, Any] = {}
        try:
            parsed = json.loads("".join(self._stdout)) if self._stdout else {}
            doc = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            doc = {}
        if row.exit_code == 0:
            row.result = "ok"
            row.stage = "done"
            row.cid = doc.get("cid") or row.cid
            row.backup_set = doc.get("backup_set") or row.backup_set
            row.message = f"{len(doc.get('partitions') or [])} partitions verified"
        elif doc.get("error") == SKIP_ERROR:
            row.result = "skipped"
            row.stage = "skipped"
            row.message = str(doc.get("message") or "already flashed in this station run")
        else:
            row.result = "failed"
            row.stage = "failed"
            row.message = str(doc.get("message") or f"romkit flash exited with "
                                                    f"{row.exit_code}")
            row.spft_code = doc.get("spft_code")
            details = doc.get("details") or {}
            if isinstance(details, dict) and details.get("cid") and not row.cid:
                row.cid = str(details["cid"])
        with self._lock:
            self._log.write(f"result: {row.model_dump_json()}\n")
            self._log.close()
        return row

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def discover_ports() -> list[tuple[str, str]]:
    """(port, identity) of every MediaTek download port and announced virtual phone.

    The identity says when a port is a *new* appearance: a real USB port is new each time it
    appears; a virtual phone is the same phone across its re-enumerations (its phone_id).
    """
    from romkit.device.transport import find_mtk_ports  # pyserial only when discovering

    found = [(p.device, f"usb:{p.device}") for p in find_mtk_ports(virtual=False)]
    found += [(v.port, f"virtual:{v.phone_id}") for v in virtualports.list_ports()]
    return found


def run_station(req: StationRequest, on_progress: ProgressCallback | None = None,
                discover: Callable[[], list[tuple[str, str]]] = discover_ports,
                stop: threading.Event | None = None) -> StationResult:
    """Flash every phone of `req` in parallel; returns when all are finished.

    Explicit `ports` all start at once. With `watch`, ports are discovered every `poll`
    seconds and each new appearance gets a child; the run ends after `count` phones finished
    (ok or failed), after `idle_exit` seconds with nothing running, or when `stop` is set.
    """
    if not req.ports and not req.watch:
        raise UsageError("no phones to flash", hint="give --port several times, or --station")
    rep = Reporter(on_progress)
    t0 = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    log_dir = req.log_dir or paths.data_dir() / "station" / stamp
    paths.ensure_dir(log_dir)
    stop = stop or threading.Event()
    running: dict[str, _Phone] = {}
    finished: list[PhoneRow] = []
    spent: set[str] = set()  # identities whose child ran (a real port must vanish first)
    done_cids: list[str] = []
    lock = threading.Lock()
    ended = threading.Event()  # a child closed its output: reap it now, not at the next poll
    launcher = _launcher(req)
    if launcher == "forkserver":
        try:  # started now, it imports while the station looks for phones
            _forkserver()
            from multiprocessing import forkserver

            forkserver.ensure_running()
        except (OSError, RuntimeError):
            launcher = "exec"

    def snapshot() -> list[PhoneRow]:
        return [*finished, *(p.row for p in running.values())]

    last_rows = [0.0]

    def changed(force: bool = False) -> None:
        """Report the table: at most a few times a second, always when a result changes."""
        now = time.monotonic()
        with lock:
            if not force and now - last_rows[0] < ROWS_INTERVAL:
                return
            last_rows[0] = now
            rows = [r.model_dump(mode="json") for r in snapshot()]
        rep.info("station", rows=rows)

    def forward(event: ProgressEvent) -> None:
        rep.emit(event)

    def start(port: str, ident: str) -> None:
        log = log_dir / f"{len(finished) + len(running) + 1:02d}-{_safe(port)}.log"
        with lock:
            running[ident] = _Phone(port, child_command(port, req, done_cids), log, changed,
                                    forward, ended, launcher)
        rep.info(f"{port}: flashing started", port=port, log=str(log))

    def counted() -> int:
        return sum(r.result in ("ok", "failed") for r in finished)

    if not req.watch:
        for port in dict.fromkeys(req.ports):
            start(port, f"port:{port}")
    idle_since = time.monotonic()
    try:
        while True:
            for ident, phone in list(running.items()):
                if phone.proc.poll() is not None:
                    row = phone.finish()
                    with lock:
                        del running[ident]
                        finished.append(row)
                        if row.result == "ok" and row.cid and row.cid not in done_cids:
                            done_cids.append(row.cid)
                    spent.add(ident)
                    rep.info(f"{row.port}: {row.result} {row.message}", port=row.port,
                             cid=row.cid, result=row.result, spft_code=row.spft_code)
                    changed(force=True)
            if running:
                idle_since = time.monotonic()
            if not req.watch and not running:
                break
            if req.watch:
                if req.count is not None and counted() >= req.count and not running:
                    break
                if stop.is_set() and not running:
                    break
                if (req.idle_exit is not None and not running
                        and time.monotonic() - idle_since >= req.idle_exit):
                    break
                present = discover() if not stop.is_set() else []
                idents = {ident for _port, ident in present}
                # a USB port that vanished and came back is a new phone; a virtual phone keeps
                # its identity across re-enumerations, so it is started once per run
                spent = {i for i in spent if i.startswith("virtual:") or i in idents}
                budget = None if req.count is None else req.count - counted() - len(running)
                for port, ident in present:
                    if budget is not None and budget <= 0:
                        break
                    if ident in running or ident in spent:
                        continue
                    start(port, ident)
                    if budget is not None:
                        budget -= 1
            if ended.wait(req.poll):
                ended.clear()
                time.sleep(0.01)  # its stdout closed as it exits: let the exit land
    except KeyboardInterrupt:
        for phone in running.values():
            phone.stop()
        raise
    finally:
        for ident, phone in list(running.items()):
            phone.stop()
            finished.append(phone.finish())
            del running[ident]
    return StationResult(phones=finished, seconds=time.monotonic() - t0, log_dir=log_dir)


def phone_label(cid: str | None) -> str:
    """A phone as a person tells it apart on the bench: its memory part's product name and
    the part's serial number (eMMC CID bytes 3..8 and 10..13, JEDEC JESD84 CID register).
    Phones of one model share the CID's first bytes, so a CID prefix would not do."""
    if not cid:
        return "?"
    try:
        raw = bytes.fromhex(cid)
    except ValueError:
        return cid[:16]
    if len(raw) != 16:
        return cid[:16]
    name = "".join(chr(b) if 0x20 < b < 0x7F else "." for b in raw[3:9])
    return f"{name} #{raw[10:14].hex().upper()}"


def table_rows(rows: list[PhoneRow]) -> list[list[str]]:
    """The station table as text cells (port, phone, stage, progress, speed, result)."""
    out: list[list[str]] = []
    for r in rows:
        pct = f"{100 * r.done / r.total:3.0f}%" if r.total else "-"
        speed = f"{r.bytes_per_s / 1e6:.1f} MB/s" if r.result == "running" and r.bytes_per_s \
            else "-"
        phone = phone_label(r.cid) + (f" {r.memory}" if r.memory else "")
        result = r.result + (f" [{r.spft_code}]" if r.spft_code else "")
        out.append([r.port, phone, r.stage[:28], pct, speed, result, r.message[:48]])
    return out


TABLE_HEADERS = ["port", "phone", "stage", "done", "speed", "result", "note"]
