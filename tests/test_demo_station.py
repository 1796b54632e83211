"""`romkit demo --station`: three phones, one station run, in a subprocess; judged here by
reading the kept workspace's phone storage, not by the demo's own verdict."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from romkit.sim import s820
from romkit.sim.phone import VirtualPhone
from tests.clitools import pasted, run_cli
from tests.test_flash_engine import assert_images_on_phone


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_demo_station_two_flashed_one_4032(tmp_path: Path, romkit_home: Path) -> None:
    ws = tmp_path / "ws"
    before_home = _files(romkit_home)
    res = run_cli("demo", "--station", "--json", "--keep", "--workdir", str(ws), timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)
    assert doc["ok"] is True
    assert [s["id"] for s in doc["steps"]] == ["build", "phones", "station", "check"]
    assert sorted(r["result"] for r in doc["phones"]) == ["failed", "ok", "ok"]
    assert [r["spft_code"] for r in doc["phones"] if r["result"] == "failed"] == [4032]
    folder = ws / "firmware" / "target_bin"
    fresh = VirtualPhone(tmp_path / "fresh2014", year=2014)  # factory state, never flashed
    try:
        for name, year in (("phone01", 2013), ("phone02", 2014), ("phone03", 2013)):
            phone = VirtualPhone(ws / "phones" / name, year=year)
            try:
                if year == 2013:
                    assert_images_on_phone(phone, folder)
                else:  # the 4032 unit: its eMMC is still the factory's
                    for part, length in ((1, 1 << 20), (8, 16 << 20)):
                        assert phone.storage.read(part, 0, length) == \
                            fresh.storage.read(part, 0, length)
            finally:
                phone.storage.close()
    finally:
        fresh.storage.close()
    # two backup sets (one per flashed phone), inside the workspace's own home
    backups = ws / "home" / "data" / "backups"
    assert len([d for d in backups.iterdir() if d.is_dir()]) == 2
    logs = list((ws / "station-logs").glob("*.log"))
    assert len(logs) == 3
    assert _files(romkit_home) == before_home
    _replay_by_hand(ws, doc)


def _replay_by_hand(ws: Path, doc: dict[str, Any]) -> None:
    """The demo's `$` lines, pasted verbatim on the kept workspace, run the bench again: one
    byte of phone 1's BOOTIMG is flipped first, so the station must really write it again;
    the 2014 unit must stop with 4032 again. Judged on the phones' storage."""
    env = {**os.environ, **doc["env"]}
    cmd = {s["id"]: s["command"] for s in doc["steps"]}
    assert env["ROMKIT_HOME"] == str(ws / "home") and cmd["build"] is None
    folder = ws / "firmware" / "target_bin"
    bootimg = dict(s820.LAYOUT)["BOOTIMG"] - 0x600000 + 4096
    phone = VirtualPhone(ws / "phones" / "phone01", year=2013)
    flipped = bytes([phone.storage.read("user", bootimg, 1)[0] ^ 0xFF])
    phone.storage.write("user", bootimg, flipped)
    phone.storage.close()
    bench = subprocess.Popen(pasted(cmd["phones"]), env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        assert bench.stdout is not None
        seen = [bench.stdout.readline() for _ in range(4)]
        assert "Ctrl-C to unplug" in seen[-1], seen
        station = subprocess.run(pasted(cmd["station"]), env=env, capture_output=True,
                                 text=True, timeout=180)
    finally:
        bench.send_signal(signal.SIGINT)
        bench.wait(timeout=30)
    assert station.returncode != 0 and "4032" in station.stdout + station.stderr
    for name in ("phone01", "phone03"):
        phone = VirtualPhone(ws / "phones" / name, year=2013)
        try:
            assert_images_on_phone(phone, folder)
        finally:
            phone.storage.close()
    backups = ws / "home" / "data" / "backups"
    assert sum(len(list(d.iterdir())) for d in backups.iterdir()) == 4  # two more sets


def test_demo_station_text_shows_table_and_summary(tmp_path: Path) -> None:
    res = run_cli("demo", "--station", timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    head = next(i for i, x in enumerate(lines) if x.startswith("port "))
    rows = lines[head + 2:head + 5]
    assert len(rows) == 3 and sum("failed [4032]" in r for r in rows) == 1
    assert sum(" ok " in r for r in rows) == 2
    assert any(x.startswith("summary: 2 phones flashed and verified, 1 stopped with 4032")
               for x in lines)


def test_demo_station_dry_run(tmp_path: Path) -> None:
    res = run_cli("demo", "--station", "--dry-run", timeout=60)
    assert res.returncode == 0, res.stderr
    assert "romkit flash --station --count 3" in res.stdout
    assert "romkit sim --phones 3 --years 2013,2014,2013" in res.stdout
