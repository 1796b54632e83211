"""`romkit demo --station`: a repair-shop bench of three phones flashed by one station run.

Why a second story: the station's promise is that phones do not hurt each other. Three
virtual S820s are plugged in at once (two built in 2013, one in 2014), and one station run
(`romkit flash --station`, one `romkit flash` child process per phone) flashes the firmware
as downloaded, which ships the 2013 preloader: the 2014 unit must stop with SP Flash Tool's
4032 before anything is written, while the other two back up their calibration, write and
verify — untouched by their neighbour's failure.

As in the single-phone demo (romkit/demo.py, whose workspace, environment and independent
eMMC checks are reused here), the story is judged green only by checks made here: every
phone's storage is read directly from the simulator (not through the DA) and compared with
the image files (the 2013 units) or with its own snapshot from before the run (the 2014
unit), and each 2013 unit's backup set must hold its NVRAM.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from romkit.demo import (
    FIRMWARE_DEST,
    FIRMWARE_SUBDIR,
    NVRAM_TEXT,
    SPFT_DRAM_FAIL,
    USER_BASE,
    DemoRequest,
    DemoStep,
    StepStatus,
    _compare_emmc,
    _layout_sizes,
    _PhoneReader,
    _StoryFailed,
    _Workspace,
    demo_env,
    link_args,
    run_step,
    run_story,
    shell_line,
    workspace_root,
)
from romkit.progress import ProgressCallback, Reporter
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.sample_firmware import PRELOADER_NAME, build_s820_folder
from romkit.station import PhoneRow, StationRequest, phone_label, run_station

YEARS = (2013, 2014, 2013)  # the middle phone is the 2014 unit that must stop with 4032
# (id, title, command for a real bench; None where there is none). What each step does by
# hand against the demo's workspace is `_by_hand`.
STATION_STEPS: tuple[tuple[str, str, str | None], ...] = (
    ("build", "Build a synthetic S820 firmware folder (ships the 2013 preloader)", None),
    ("phones", "Plug three phones into the hub: built 2013, 2014 and 2013", None),
    ("station", "Flash them all with one station run (one process per phone)",
     "romkit flash --station --count 3"),
    ("check", "Read each phone's eMMC back and judge it on its own", None),
)
PHONES_DIR = "phones"  # `romkit sim --phones N --state DIR` keeps phone NN's eMMC below it


def _by_hand(step_id: str, root: Path, link: str | None) -> str | None:
    """The command that does what step `step_id` does, against the workspace at `root` (with
    the demo's ROMKIT_HOME); None for building the folder and for the demo's own check."""
    firmware = root / FIRMWARE_DEST / FIRMWARE_SUBDIR
    words: dict[str, list[str | os.PathLike[str]]] = {
        "phones": ["romkit", "sim", "--phones", str(len(YEARS)), "--years",
                   ",".join(map(str, YEARS)), "--state", root / PHONES_DIR, *link_args(link)],
        "station": ["romkit", "flash", firmware, "--station", "--count", str(len(YEARS))],
    }
    return shell_line(words[step_id]) if step_id in words else None


class PhoneCheck(BaseModel):
    """One phone as judged by the demo's own reading of its storage."""

    index: int
    year: int
    cid: str
    port: str
    expected: str  # "flashed" or "refused with 4032, nothing written"
    result: str = ""  # the station's row result
    spft_code: int | None = None
    ok: bool = False
    detail: str = ""


class StationDemoResult(BaseModel):
    ok: bool
    dry_run: bool = False
    workdir: str | None
    kept: bool
    steps: list[DemoStep]
    env: dict[str, str] = Field(default_factory=dict)  # what the step commands need
    phones: list[PhoneRow] = Field(default_factory=list)
    checks: list[PhoneCheck] = Field(default_factory=list)
    log_dir: str | None = None
    seconds: float = 0.0
    error: dict[str, Any] | None = None


class _StationStory:
    def __init__(self, req: DemoRequest, ws: _Workspace, rep: Reporter) -> None:
        self.req = req
        self.ws = ws
        self.rep = rep
        self.stack = contextlib.ExitStack()
        self.result = StationDemoResult(ok=False, workdir=str(ws.root), kept=req.keep, steps=[],
                                        env=demo_env(ws.root))
        self.firmware: Path | None = None
        self.phones: list[Any] = []  # VirtualPhone (the simulator loads only when a demo runs)
        self.before: list[dict[str, str]] = []

    def run(self) -> StationDemoResult:
        handlers: dict[str, Callable[[], tuple[StepStatus, str, dict[str, Any]]]] = {
            "build": self._build, "phones": self._phones, "station": self._station,
            "check": self._check}
        with self.stack:
            for index, (step_id, title, real_command) in enumerate(STATION_STEPS, start=1):
                command = _by_hand(step_id, self.ws.root, self.req.link)
                if not run_step(self.rep, self.result, len(STATION_STEPS), index, step_id,
                                title, command, handlers[step_id], real_command):
                    return self.result
        self.result.ok = bool(self.result.checks) and all(c.ok for c in self.result.checks)
        return self.result

    def _build(self) -> tuple[StepStatus, str, dict[str, Any]]:
        self.firmware = build_s820_folder(self.ws.path(FIRMWARE_DEST),
                                          preloader=preloader_s820(2013), da=da_s820())
        size = sum(f.stat().st_size for f in self.firmware.rglob("*") if f.is_file())
        return "ok", f"{self.firmware}: {size} bytes of SYNTHETIC images", {
            "folder": str(self.firmware), "bytes": size}

    def _phones(self) -> tuple[StepStatus, str, dict[str, Any]]:
        from romkit.sim.fleet import FleetSpec, build_fleet

        assert self.firmware is not None
        spec = FleetSpec(count=len(YEARS), root=self.ws.path(PHONES_DIR), years=list(YEARS),
                         link=self.req.link)
        for phone in build_fleet(spec):
            phone.start()
            self.stack.callback(phone.stop)
            self.phones.append(phone)
            self.before.append(_PhoneReader(phone).snapshot(self.firmware))
        rows = [{"index": i, "year": ph.config.year, "cid": ph.config.cid.hex(),
                 "port": ph.port} for i, ph in enumerate(self.phones, start=1)]
        return "ok", "; ".join(f"{r['port']} ({r['year']}, {phone_label(str(r['cid']))})"
                               for r in rows), {"phones": rows}

    def _station(self) -> tuple[StepStatus, str, dict[str, Any]]:
        assert self.firmware is not None
        res = run_station(StationRequest(ports=[ph.port for ph in self.phones],
                                         flash_args=[str(self.firmware)], wait=self.req.wait,
                                         log_dir=self.ws.path("station-logs")),
                          self.rep.callback)
        self.result.phones = res.phones
        self.result.log_dir = str(res.log_dir)
        ok = sum(r.result == "ok" for r in res.phones)
        return "ok", (f"{ok} ok, {sum(r.result == 'failed' for r in res.phones)} failed in "
                      f"{res.seconds:.1f} s; a log per phone in {res.log_dir}"), {
            "seconds": res.seconds, "log_dir": str(res.log_dir)}

    def _row(self, phone: Any) -> PhoneRow | None:
        cid = phone.config.cid.hex().upper()
        return next((r for r in self.result.phones if (r.cid or "").upper() == cid), None)

    def _check(self) -> tuple[StepStatus, str, dict[str, Any]]:
        assert self.firmware is not None
        checks: list[PhoneCheck] = []
        for i, (phone, before) in enumerate(zip(self.phones, self.before, strict=True), 1):
            late = phone.config.year == 2014
            row = self._row(phone)
            check = PhoneCheck(index=i, year=phone.config.year, cid=phone.config.cid.hex(),
                               port=row.port if row else "",
                               expected=f"refused with {SPFT_DRAM_FAIL}, nothing written"
                               if late else "flashed, verified, calibration backed up",
                               result=row.result if row else "missing",
                               spft_code=row.spft_code if row else None)
            reader = _PhoneReader(phone)
            try:
                if late:
                    if check.spft_code != SPFT_DRAM_FAIL:
                        raise _StoryFailed(f"the 2014 unit ended {check.result} with code "
                                           f"{check.spft_code}, not {SPFT_DRAM_FAIL}")
                    if reader.snapshot(self.firmware) != before:
                        raise _StoryFailed("the refused flash changed the phone's storage")
                    check.detail = f"stopped with {SPFT_DRAM_FAIL}; its eMMC is unchanged"
                else:
                    if row is None or row.result != "ok":
                        raise _StoryFailed(f"the station reports {check.result}")
                    parts = _compare_emmc(reader, self.firmware,
                                          self.firmware / PRELOADER_NAME)
                    self._check_backup(reader, row)
                    check.detail = (f"eMMC equals the images ({len(parts)} partitions); the "
                                    "backup holds its NVRAM")
                check.ok = True
            except _StoryFailed as exc:
                check.detail = str(exc)
            checks.append(check)
        self.result.checks = checks
        bad = [c for c in checks if not c.ok]
        if bad:
            raise _StoryFailed("; ".join(f"phone {c.index}: {c.detail}" for c in bad))
        return "ok", "every phone is as it should be, each judged on its own storage", {
            "checks": [c.model_dump(mode="json") for c in checks]}

    def _check_backup(self, reader: _PhoneReader, row: PhoneRow) -> None:
        from romkit.flash.backup import find_set

        if not row.backup_set:
            raise _StoryFailed("the flash took no calibration backup")
        backup = find_set(row.backup_set, bytes.fromhex(row.cid) if row.cid else None)
        start, size = _layout_sizes()["NVRAM"]
        nvram = reader.read("user", start - USER_BASE, size)
        saved = [f for f in Path(backup.path).iterdir() if f.is_file()]
        if not nvram.startswith(NVRAM_TEXT) or not any(f.read_bytes() == nvram for f in saved):
            raise _StoryFailed("its calibration backup does not hold its NVRAM")


def planned_station(request: DemoRequest) -> StationDemoResult:
    root = workspace_root(request)
    steps = [DemoStep(id=i, title=t, command=_by_hand(i, root, request.link), real_command=c,
                      status="planned") for i, t, c in STATION_STEPS]
    return StationDemoResult(ok=True, dry_run=True, workdir=None, kept=False, steps=steps,
                             env=demo_env(root))


def run_station_demo(request: DemoRequest,
                     on_progress: ProgressCallback | None = None) -> StationDemoResult:
    """Run the three-phone story in a private workspace (ROMKIT_HOME inside it)."""
    result: StationDemoResult = run_story(
        request, Reporter(on_progress), lambda: planned_station(request),
        lambda ws, rep: _StationStory(request, ws, rep).run())
    return result
