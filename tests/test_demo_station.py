"""`romkit demo --station`: three phones, one station run, in a subprocess; judged here by
reading the kept workspace's phone storage, not by the demo's own verdict."""

from __future__ import annotations

import json
from pathlib import Path

from romkit.sim.phone import VirtualPhone
from tests.clitools import run_cli
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
