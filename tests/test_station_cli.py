"""The station through its command lines only: `romkit sim --phones N` in one subprocess,
`romkit flash --station --count N` in another, exactly as a shop would run them.

Every check reads the phones' eMMC straight from their state folders (after the simulator
process has exited) and compares it with the image files on disk; CIDs are checked with a
CRC7 written here from the polynomial; nothing is taken from the station's own report except
to find the row of a phone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from romkit.sim import s820
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.phone import VirtualPhone
from romkit.sim.sample_firmware import build_s820_folder
from tests.clitools import run_cli
from tests.conftest import pty_only
from tests.test_flash_engine import NVRAM_SIZE, NVRAM_USER, assert_images_on_phone
from tests.test_station import crc7


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_s820_folder(tmp_path_factory.mktemp("fw-small"), preloader=preloader_s820(2013),
                             da=da_s820(), image_scale=0.2)


class Sim:
    """`romkit sim --phones N --json` running in a child process."""

    def __init__(self, state: Path, *args: str) -> None:
        self.state = state
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "romkit", "sim", "--json", "--state", str(state), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        self.ports: list[dict[str, Any]] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            doc = json.loads(line)
            if doc["event"] == "ready":
                break
            if doc["event"] == "port" and doc["generation"] == 0:
                self.ports.append(doc)
        else:
            raise AssertionError(f"the simulator ended early: {self.proc.stderr.read()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM unplugs every phone cleanly
        self.proc.wait(timeout=20)

    def phone(self, index: int) -> VirtualPhone:
        """Phone `index`'s eMMC, reopened from its state folder (call after stop())."""
        doc = self.ports[index - 1]
        return VirtualPhone(Path(doc["state_dir"]), year=doc["year"])


@pytest.fixture
def sims() -> Iterator[list[Sim]]:
    started: list[Sim] = []
    yield started
    for sim in started:
        sim.stop()


def _nvram(phone: VirtualPhone) -> bytes:
    return bytes(phone.storage.read(8, NVRAM_USER, NVRAM_SIZE))


@pty_only
def test_sim_phones_json_one_line_per_phone_distinct_valid_cids(tmp_path: Path,
                                                                sims: list[Sim]) -> None:
    sim = Sim(tmp_path / "fleet", "--phones", "5", "--years", "2013,2014")
    sims.append(sim)
    assert [d["phone"] for d in sim.ports] == [1, 2, 3, 4, 5]
    assert [d["year"] for d in sim.ports] == [2013, 2014, 2013, 2014, 2013]
    cids = [bytes.fromhex(d["cid"]) for d in sim.ports]
    assert len(set(cids)) == 5 and len({d["port"] for d in sim.ports}) == 5
    for doc, cid in zip(sim.ports, cids, strict=True):
        assert len(cid) == 16 and cid[15] == (crc7(cid[:15]) << 1) | 1
        # the part the preloader's EMI table matches is the year's part
        assert cid[:9] == s820.PARTS_BY_YEAR[doc["year"]].cid[:9]
        assert os.path.exists(doc["port"])
        assert Path(doc["state_dir"]).parent == tmp_path / "fleet"
    assert len({d["state_dir"] for d in sim.ports}) == 5


def test_sim_phones_refuses_one_phone_options(tmp_path: Path) -> None:
    proc = run_cli("sim", "--phones", "2", "--memory-id", "capture", "--state",
                   str(tmp_path / "x"), timeout=60)
    assert proc.returncode != 0 and proc.stderr.startswith("error: ")
    assert "hint:" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("sim", "--phones", "2", "--years", "2013,2015", "--dry-run", timeout=60)
    assert proc.returncode != 0 and "2015" in proc.stderr
    proc = run_cli("sim", "--phones", "2", "--fault", "3:disconnect@0", "--dry-run", timeout=60)
    assert proc.returncode == 2 and "phone 3" in proc.stderr and "hint:" in proc.stderr
    proc = run_cli("sim", "--phones", "3", "--fault", "2:nack@1", "--dry-run", "--json",
                   "--state", str(tmp_path / "f"), timeout=60)
    rows = json.loads(proc.stdout)["phones"]
    assert [bool(r["faults"]) for r in rows] == [False, True, False]


def _station(folder: Path, count: int) -> subprocess.CompletedProcess[str]:
    return run_cli("--json", "flash", str(folder), "--station", "--count", str(count),
                   "--wait", "15", timeout=300)


def test_station_cli_flashes_four_phones_from_sim_phones(small_folder: Path, tmp_path: Path,
                                                        romkit_home: Path,
                                                        sims: list[Sim]) -> None:
    sim = Sim(tmp_path / "fleet", "--phones", "4")
    sims.append(sim)
    t0 = time.monotonic()
    proc = _station(small_folder, 4)
    seconds = time.monotonic() - t0
    sim.stop()
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert sorted(r["result"] for r in doc["phones"]) == ["ok"] * 4
    backups = romkit_home / "data" / "backups"
    for index in range(1, 5):
        phone = sim.phone(index)
        try:
            assert_images_on_phone(phone, small_folder)
            cid = sim.ports[index - 1]["cid"]
            sets = [s for s in (backups / cid).iterdir() if s.is_dir()]
            assert len(sets) == 1, f"phone {index}: {sets}"
            nvram = _nvram(phone)
            assert nvram.startswith(b"ROMKIT-SIM NVRAM")
            assert any(f.read_bytes() == nvram for f in sets[0].iterdir() if f.is_file())
        finally:
            phone.storage.close()
    assert len([d for d in backups.iterdir() if d.is_dir()]) == 4
    # the station's events say which phone they are about
    events = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    tagged = {(e.get("data") or {}).get("cid") for e in events} - {None}
    assert {d["cid"].upper() for d in sim.ports} <= {str(c).upper() for c in tagged}
    assert seconds < 240


@pytest.mark.parametrize("fault", ["disconnect", "4032"])
def test_station_cli_one_faulty_phone_leaves_three_finished(fault: str, small_folder: Path,
                                                            tmp_path: Path, romkit_home: Path,
                                                            sims: list[Sim]) -> None:
    args = (["--fault", "2:disconnect@300000"] if fault == "disconnect"
            else ["--years", "2013,2014,2013,2013"])  # a 2014 unit vs the 2013 preloader
    sim = Sim(tmp_path / "fleet", "--phones", "4", *args)
    sims.append(sim)
    before = [_nvram_of(sim, i) for i in range(1, 5)]
    proc = _station(small_folder, 4)
    sim.stop()
    assert proc.returncode == 4, proc.stderr[-3000:]  # one phone failed: DeviceError's code
    error = json.loads(proc.stdout)  # one document: the error, carrying every phone's row
    assert error["error"] == "DeviceError" and "1 of 4 phones failed" in error["message"]
    doc = error["details"]
    by_cid = {str(r["cid"]).upper(): r for r in doc["phones"] if r["cid"]}
    bad = sim.ports[1]
    row = by_cid.get(bad["cid"].upper()) or next(r for r in doc["phones"]
                                                 if r["result"] != "ok")
    assert row["result"] == "failed"
    if fault == "4032":
        assert row["spft_code"] == 4032
    assert sum(r["result"] == "ok" for r in doc["phones"]) == 3
    for index in (1, 3, 4):
        phone = sim.phone(index)
        try:
            assert_images_on_phone(phone, small_folder)
            assert _nvram(phone) == before[index - 1]
        finally:
            phone.storage.close()
    if fault == "4032":  # nothing at all was written on the 2014 unit
        phone = sim.phone(2)
        try:
            with pytest.raises(AssertionError):
                assert_images_on_phone(phone, small_folder)
        finally:
            phone.storage.close()


def _nvram_of(sim: Sim, index: int) -> bytes:
    """Read a running phone's NVRAM from its sparse files (read-only, not through the DA)."""
    path = Path(sim.ports[index - 1]["state_dir"])
    with (path / "user.img").open("rb") as fh:  # romkit/sim/storage.py PART_FILES
        fh.seek(NVRAM_USER)
        return fh.read(NVRAM_SIZE)


@pty_only
@pytest.mark.parametrize("cols", [120, 80])
def test_live_table_on_a_terminal(cols: int, small_folder: Path, tmp_path: Path,
                                  romkit_home: Path, sims: list[Sim]) -> None:
    """On a real pty (read through pyte, an independent VT100 emulator): while the station
    runs, a table with one row per phone; after it, nothing of it left but the final plain
    table and the summary line."""
    import pyte

    from tests.test_cli_shell import on_terminal

    sim = Sim(tmp_path / "fleet", "--phones", "3", "--years", "2013,2014,2013")
    sims.append(sim)
    ports = {d["port"] for d in sim.ports}
    code, raw, lines = on_terminal([sys.executable, "-m", "romkit", "flash", str(small_folder),
                                    "--station", "--count", "3", "--yes"],
                                   {"ROMKIT_HOME": str(romkit_home)}, cols=cols, rows=30)
    assert code == 4, "\n".join(lines)  # the 2014 unit failed: the station's exit says so
    # while it ran: the live table's title and one row per phone, each on its own line
    screen = pyte.Screen(cols, 30)
    screen.set_mode(pyte.modes.LNM)
    stream = pyte.ByteStream(screen)
    live_seen = False
    for at in range(0, len(raw), 512):
        stream.feed(raw[at:at + 512])
        shown = [ln.rstrip() for ln in screen.display if ln.strip()]
        title = next((i for i, ln in enumerate(shown) if ln.startswith("romkit station: ")),
                     None)
        if title is not None and \
                sum(any(ln.startswith(p + " ") for p in ports) for ln in shown) == 3:
            heads = ["port", "phone", "stage", "done", "speed", "result", "note"]
            cols_shown = shown[title + 1].split()
            assert cols_shown == heads[:len(cols_shown)]  # a narrow one: no note
            assert len(cols_shown) >= 6
            assert all(len(ln) <= cols for ln in shown)  # nothing wraps into the next row
            live_seen = True
            break
    assert live_seen, "\n".join(ln.rstrip() for ln in screen.display if ln.strip())
    # at the end: no box drawing, no title left behind; the plain table, then the summary
    assert not any(ln.startswith(("romkit station: ", "waiting for phones")) for ln in lines)
    head = next(i for i, ln in enumerate(lines) if ln.startswith("port "))
    assert lines[head].split() == ["port", "phone", "stage", "done", "speed", "result", "note"]
    assert all(len(ln) < cols for ln in lines[head:head + 5])  # the final rows fit too
    rows = lines[head + 2:head + 5]
    assert sorted(r.split()[0] for r in rows) == sorted(ports)
    by_port = {r.split()[0]: r for r in rows}
    late = next(d for d in sim.ports if d["year"] == 2014)
    assert "failed [4032]" in by_port[late["port"]]
    assert "SIM14H #" + late["cid"][20:28].upper() in by_port[late["port"]]
    assert sum(" ok " in r for r in rows) == 2
    assert lines[head + 5].startswith("station: 2 ok, 1 failed, 0 skipped in ")
    assert lines[head + 6].startswith("logs: ")
    assert "error: 1 of 3 phones failed" in lines[head + 7:]
    assert sum(ln.startswith("port ") for ln in lines) == 1


def test_ctrl_c_stops_every_phone_and_says_how_to_resume(small_folder: Path, tmp_path: Path,
                                                         romkit_home: Path,
                                                         sims: list[Sim]) -> None:
    import signal

    sim = Sim(tmp_path / "fleet", "--phones", "2")
    sims.append(sim)
    station = subprocess.Popen([sys.executable, "-m", "romkit", "flash", str(small_folder),
                                "--station"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ), start_new_session=True)
    time.sleep(1.5)  # the children are connecting or writing
    os.killpg(station.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _out, err = station.communicate(timeout=60)
    assert station.returncode == 130, err[-2000:]
    lines = err.strip().splitlines()
    assert lines[-2].startswith("interrupted:")
    assert lines[-1] == f"hint: resume with: romkit flash {small_folder} --station"
    deadline = time.monotonic() + 15  # no child, fork server or fork of it is left behind
    while True:
        try:
            os.killpg(station.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "processes of the station outlived it"
        time.sleep(0.2)


def test_station_asks_once_on_a_terminal_and_no_flashes_nothing(
        small_folder: Path, tmp_path: Path, romkit_home: Path, sims: list[Sim]) -> None:
    from tests.test_cli_shell import on_terminal

    sim = Sim(tmp_path / "fleet", "--phones", "1")
    sims.append(sim)
    code, _raw, lines = on_terminal([sys.executable, "-m", "romkit", "flash", str(small_folder),
                                     "--station", "--count", "1"],
                                    {"ROMKIT_HOME": str(romkit_home)}, typed=b"n\n")
    screen = "\n".join(lines)
    assert code == 1, screen
    assert sum("to every phone that appears?" in ln for ln in lines) == 1, screen
    assert "error: not flashed: the answer was no" in screen
    assert not (romkit_home / "data" / "station").exists()  # no phone was started
