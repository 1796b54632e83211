"""`romkit prepare` through the real entry point: text and --json output, exit codes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from clitools import run_main

from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.artifacts_modem import build_modem_folder
from romkit.sim.sample_firmware import build_s820_folder

run = run_main


def files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()
            and not p.relative_to(folder).as_posix().startswith(".romkit")}


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    return build_s820_folder(tmp_path / "pkg", preloader=preloader_s820(2013), da=da_s820(),
                             image_scale=0.1)


def test_dry_run_apply_noop_undo(capsys: pytest.CaptureFixture[str], pkg: Path,
                                 tmp_path: Path) -> None:
    pl = tmp_path / "pl2014.bin"
    pl.write_bytes(preloader_s820(2014))
    before = files(pkg)
    code, text, _ = run(capsys, "prepare", str(pkg), "--preloader", str(pl), "--dry-run")
    assert code == 0
    assert "replace  preloader_s820.bin" in text and "dry run: nothing changed" in text
    assert "adds: Hynix SIM14H" in text
    assert files(pkg) == before

    code, text, _ = run(capsys, "prepare", str(pkg), "--preloader", str(pl))
    assert code == 0 and "folder check: ok" in text
    assert (pkg / "preloader_s820.bin").read_bytes() == pl.read_bytes()

    code, text, _ = run(capsys, "prepare", str(pkg), "--preloader", str(pl))
    assert code == 0 and "nothing to do" in text

    code, text, _ = run(capsys, "prepare", str(pkg), "--undo", "--json")
    assert code == 0
    doc = json.loads(text)
    assert {f["path"] for f in doc["undo"]["files"]} == {"preloader_s820.bin", "Checksum.ini"}
    assert files(pkg) == before


def test_json_plan(capsys: pytest.CaptureFixture[str], pkg: Path, tmp_path: Path) -> None:
    src = build_modem_folder(tmp_path / "modem")
    code, text, _ = run(capsys, "prepare", str(pkg), "--modem", str(src), "--modem-naming",
                        "1_3g_n", "--dry-run", "--json")
    assert code == 0
    doc = json.loads(text)
    targets = {s["path"] for s in doc["plan"]["steps"]}
    assert "modem/modem_1_3g_n.img" in targets and "modem/README.txt" in targets
    assert doc["plan"]["modem"]["how"] == "--modem-naming"
    assert doc["applied"] is False


def test_errors_and_exit_codes(capsys: pytest.CaptureFixture[str], pkg: Path,
                               tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 300)
    before = files(pkg)
    code, _, err = run(capsys, "prepare", str(pkg), "--preloader", str(junk))
    assert code == 3 and "5066" in err and "hint:" in err
    code, _, err = run(capsys, "prepare", str(tmp_path / "missing"), "--drop-checksum")
    assert code == 2 and "not found" in err
    code, _, err = run(capsys, "prepare", str(pkg), "--device-year", "2015")
    assert code == 2 and "--device-year (2015)" in err and "device_year" not in err
    code, _, err = run(capsys, "prepare", str(pkg), "--device-year", "2014")
    assert code == 2 and "add-mirror" in err
    code, _, err = run(capsys, "prepare", str(pkg), "--undo")
    assert code == 2 and "no prepare to undo" in err
    assert files(pkg) == before
