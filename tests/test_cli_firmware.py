"""`romkit inspect / verify / checksum` end to end, as a user runs them (real subprocess)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from romkit.cli.firmware import layout_bar
from romkit.firmware.package import inspect_folder
from romkit.sim.artifacts import preloader_s820
from romkit.sim.sample_firmware import build_s820_folder


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "romkit", *args], capture_output=True,
                          text=True, cwd=cwd, env=dict(os.environ), timeout=120)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return build_s820_folder(tmp_path / "pkg", preloader=preloader_s820(2013), image_scale=0.1)


def test_inspect_json_and_text(sample: Path) -> None:
    res = run("inspect", str(sample), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["platform"] == "MT6589" and doc["format"] == "old"
    rows = {r["name"]: r for r in doc["partitions"]}
    assert len(rows) == 22
    lk = rows["UBOOT"]
    size = (sample / "lk.bin").stat().st_size
    assert lk["image"] == "lk.bin" and lk["image_size"] == size
    assert lk["checksum"] == "ok"
    assert lk["checksum_actual"] == sum((sample / "lk.bin").read_bytes()) & 0xFFFF
    assert lk["fill_percent"] == round(100 * size / 0x60000, 2)
    assert rows["USRDATA"]["size"] is None and rows["BMTPOOL"]["is_marker"]
    assert doc["report"]["ok"] is True

    text = run("inspect", cwd=sample)  # no PATH: the current folder holds a scatter
    assert text.returncode == 0, text.stderr
    assert "layout |" in text.stdout and "preloader_s820.bin" in text.stdout
    assert "PRELOAD" in text.stdout and "(no rule)" in text.stdout


def test_layout_bar_is_proportional(sample: Path) -> None:
    rows = inspect_folder(sample).partitions
    bar = layout_bar(rows, width=72)
    assert bar.startswith("|") and bar.endswith(">|")
    inner = bar[1:-1]
    assert len(inner) == 72
    # ANDROID (index 18 → 'I') is by far the largest sized partition: the most characters.
    counts = {ch: inner.count(ch) for ch in set(inner) - {">"}}
    assert max(counts, key=counts.__getitem__) == "I"
    assert all(ch in inner for ch in "0123456789ABCDEFGHIJK")


def test_inspect_a_plain_file(sample: Path) -> None:
    """A file path goes to the preloader/DA inspector when installed, else a usage error."""
    if importlib.util.find_spec("romkit.firmware.inspect_file") is None:
        res = run("inspect", str(sample / "boot.img"))
        assert res.returncode == 2
        assert "not a firmware folder" in res.stderr
        return
    res = run("inspect", str(sample / "preloader_s820.bin"), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["kind"] == "preloader" and doc["name"] == "preloader_s820.bin"
    # A scatter file is not handed over: it means its folder.
    res = run("inspect", str(sample / "MT6589_Android_scatter_emmc.txt"), "--json")
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["partitions"]) == 22


def test_verify_ok_then_refused(sample: Path) -> None:
    res = run("verify", str(sample))
    assert res.returncode == 0, res.stderr
    assert "result:    OK" in res.stdout
    boot = sample / "boot.img"
    boot.write_bytes(boot.read_bytes()[:-1] + b"\x42")
    res = run("verify", str(sample))
    assert res.returncode == 3
    assert "checksum-mismatch" in res.stdout and "[SP Flash Tool 8416]" in res.stderr
    res = run("--json", "verify", str(sample))
    assert res.returncode == 3
    doc = json.loads(res.stdout)
    assert doc["error"] == "ValidationError" and doc["spft_code"] == 8416
    assert any(f["code"] == "checksum-mismatch" and f["partition"] == "BOOTIMG"
               for f in doc["findings"])


def test_checksum_dry_run_then_write(sample: Path) -> None:
    logo = sample / "logo.bin"
    logo.write_bytes(b"\x03" * 5000)
    ini = sample / "Checksum.ini"
    before = hashlib.sha256(ini.read_bytes()).hexdigest()
    res = run("checksum", str(sample))
    assert res.returncode == 3 and "LOGO" in res.stderr
    res = run("checksum", str(sample), "--write", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert f"+LOGO=0x{(3 * 5000) & 0xFFFF:04X}" in res.stdout
    assert hashlib.sha256(ini.read_bytes()).hexdigest() == before
    res = run("checksum", str(sample), "--write", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["written"] and Path(doc["backup"]).is_file()
    assert hashlib.sha256(Path(doc["backup"]).read_bytes()).hexdigest() == before
    assert run("verify", str(sample)).returncode == 0
