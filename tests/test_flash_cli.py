"""`romkit flash --dry-run` and the CLI's refusals, without a phone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clitools import run_cli

from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.sample_firmware import build_s820_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_s820_folder(tmp_path_factory.mktemp("fw"), preloader=preloader_s820(2013),
                             da=da_s820())


def test_dry_run_json_plan(folder: Path) -> None:
    res = run_cli("flash", str(folder), "--dry-run", "--json", "--only", "boot,lk")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["dry_run"] is True
    ops = [(o["kind"], o["partition"]) for o in doc["plan"]["operations"]]
    assert ("write", "BOOTIMG") in ops and ("verify", "UBOOT") in ops
    assert not any(k == "write" and p not in ("BOOTIMG", "UBOOT") for k, p in ops)
    # progress events are JSON lines on stderr, one of them the plan
    events = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    assert any(e["label"] == "plan" for e in events)


def test_dry_run_text_shows_plan(folder: Path) -> None:
    res = run_cli("flash", str(folder), "--dry-run", "--mode", "format-all")
    assert res.returncode == 0, res.stderr
    assert "plan: format-all" in res.stdout and "(user area)" in res.stdout
    assert "nothing was written" in res.stdout


def test_refusals_exit_codes(folder: Path, tmp_path: Path) -> None:
    res = run_cli("flash", str(folder), "--dry-run", "--mode", "sideways")
    assert res.returncode == 2 and "unknown mode" in res.stderr
    res = run_cli("flash", str(folder), "--dry-run", "--mode", "format-all", "--no-backup")
    assert res.returncode == 3 and "calibration" in res.stderr
    broken = build_s820_folder(tmp_path, preloader=preloader_s820(2013))
    (broken / "boot.img").write_bytes(b"changed")
    res = run_cli("flash", str(broken), "--dry-run")
    assert res.returncode == 3 and "8416" in res.stderr
