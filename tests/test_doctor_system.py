"""`romkit doctor` on this real machine: fact gathering, and the CLI as a subprocess."""

from __future__ import annotations

import grp
import importlib.metadata
import json
import os
import platform
import pwd
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy
import pytest
import serial
import serial.tools.list_ports
from clitools import run_cli

from romkit.doctor import gather_facts, run_checks, scan_udev_rules, udev_rule

pytestmark = pytest.mark.skipif(platform.system() != "Linux", reason="Linux facts")

ROOT = Path(__file__).resolve().parent.parent
LINUX_CHECKS = {"python", "serial-ports", "mediatek-port", "serial-access", "udev-rule",
                "modemmanager", "root", "e2fsprogs", "sim-link", "disk-space"}


def pyproject_minimums() -> dict[str, str]:
    """Runtime dependency → minimum, read straight from pyproject.toml."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    found = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", dep)
        assert m, dep
        found[m.group(1).lower()] = m.group(2)
    return found



@contextmanager
def named_process(folder: Path, name: str) -> Iterator[int]:
    """A real running process that /proc lists under `name` (a renamed copy of `sleep`)."""
    sleep = shutil.which("sleep")
    assert sleep
    exe = folder / name
    shutil.copy2(sleep, exe)
    proc = subprocess.Popen([str(exe), "60"])
    comm = Path(f"/proc/{proc.pid}/comm")
    deadline = time.monotonic() + 5
    while comm.read_text().strip() != name and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_gather_facts_on_this_box(romkit_home: Path, tmp_path: Path) -> None:
    free_before = shutil.disk_usage(romkit_home).free
    with named_process(tmp_path, "rkdoctorprobe"):
        facts = gather_facts()
    free_after = shutil.disk_usage(romkit_home).free
    assert facts.os_name == "linux"
    assert facts.python_version == "{}.{}.{}".format(*sys.version_info[:3])
    assert facts.python_required == ">=3.11"
    assert facts.requirements == pyproject_minimums()
    assert facts.requirements_source == str(ROOT / "pyproject.toml")
    assert set(facts.packages) == set(pyproject_minimums())
    assert facts.packages["numpy"] == numpy.__version__
    assert facts.packages["pyserial"] == serial.__version__
    assert facts.ports is not None
    assert [p.device for p in facts.ports] == sorted(
        p.device for p in serial.tools.list_ports.comports())
    assert facts.username == pwd.getpwuid(os.geteuid()).pw_name
    assert facts.is_root == (os.geteuid() == 0)
    assert grp.getgrgid(os.getegid()).gr_name in facts.groups
    assert facts.processes is not None and "rkdoctorprobe" in facts.processes
    assert facts.cache_dir == str(romkit_home / "cache")
    assert facts.disk_path == str(romkit_home)  # the cache folder does not exist yet
    assert facts.disk_free is not None
    assert facts.pty_available is True  # Linux: the virtual phone can use a pty
    # other processes write while this runs: the fact lies between the two measurements
    slack = 64 * 1024**2
    assert min(free_before, free_after) - slack <= facts.disk_free
    assert facts.disk_free <= max(free_before, free_after) + slack
    names = {c.name for c in run_checks(facts)}
    assert names == LINUX_CHECKS | set(pyproject_minimums())


def test_gather_facts_with_own_proc_and_udev_folders(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid, comm in (("42", "ModemManager\n"), ("43", None), ("44", ""), ("self", "bash\n"),
                      ("45", "bash\n")):
        (proc / pid).mkdir(parents=True)
        if comm is not None:
            (proc / pid / "comm").write_text(comm)
    facts = gather_facts(udev_dirs=[tmp_path / "no-udev"], proc_dir=proc)
    assert facts.processes == ["ModemManager", "bash"]
    assert facts.udev_dirs == [] and facts.udev_rules == []
    checks = {c.name: c for c in run_checks(facts)}
    assert checks["modemmanager"].status == "fail"
    assert checks["udev-rule"].status == "warn"


def test_minimums_come_from_the_given_pyproject(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "romkit"\nrequires-python = ">=3.99"\n'
                         'dependencies = ["numpy>=999.0", "rk-no-such-package>=1", "typer"]\n'
                         '[project.optional-dependencies]\ntest = ["pytest>=8"]\n')
    facts = gather_facts(pyproject=pyproject)
    assert facts.requirements_source == str(pyproject)
    assert facts.requirements == {"numpy": "999.0", "rk-no-such-package": "1", "typer": None}
    checks = {c.name: c for c in run_checks(facts)}
    assert checks["python"].status == "fail"
    assert checks["numpy"].status == "fail"
    assert checks["numpy"].fix == "pip install --upgrade 'numpy>=999.0'"
    assert checks["rk-no-such-package"].status == "fail"
    assert checks["typer"].status == "ok"
    assert "pytest" not in checks


@pytest.mark.parametrize("text", [None, "not [toml", '[project]\nname = "other"\n'])
def test_without_usable_pyproject_minimums_come_from_installed_metadata(
        tmp_path: Path, text: str | None) -> None:
    pyproject = tmp_path / "pyproject.toml"
    if text is not None:
        pyproject.write_text(text)
    facts = gather_facts(pyproject=pyproject)
    assert facts.requirements_source == "installed metadata"
    expected = {}
    for line in importlib.metadata.requires("romkit") or []:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", line)
        if m:
            expected[m.group(1).lower()] = m.group(2)
    assert facts.requirements == expected
    if text == "not [toml":
        assert any(str(pyproject) in note for note in facts.notes)


def test_disk_measured_at_nearest_existing_parent(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROMKIT_HOME", str(tmp_path / "a" / "b"))
    facts = gather_facts()
    assert facts.cache_dir == str(tmp_path / "a" / "b" / "cache")
    assert facts.disk_path == str(tmp_path)


def test_cli_json_lists_every_check() -> None:
    res = run_cli("--json", "doctor")
    doc = json.loads(res.stdout)
    statuses = {c["name"]: c["status"] for c in doc["checks"]}
    assert set(statuses) == LINUX_CHECKS | set(pyproject_minimums())
    failed = "fail" in statuses.values()
    assert res.returncode == (1 if failed else 0), res.stderr
    assert doc["ok"] is (not failed)
    assert doc["counts"] == {s: list(statuses.values()).count(s) for s in ("ok", "warn", "fail")}
    assert doc["facts"]["python_version"] == "{}.{}.{}".format(*sys.version_info[:3])
    for check in doc["checks"]:
        assert (check["fix"] is None) == (check["status"] == "ok")


def _steady(text: str) -> str:
    """A report line with its numbers masked: free disk space (and any other live count) moves
    between two runs on a busy machine; the wording, order and status must not."""
    return re.sub(r"\d+(\.\d+)?", "N", text)


def test_cli_human_report_matches_json() -> None:
    doc = json.loads(run_cli("doctor", "--json").stdout)
    res = run_cli("doctor")
    lines = [_steady(ln) for ln in res.stdout.splitlines()]
    label = {"ok": "ok   ", "warn": "warn ", "fail": "FAIL "}
    for check in doc["checks"]:
        line = _steady(label[check["status"]] + check["summary"])
        assert line in lines
        if check["fix"]:
            assert lines[lines.index(line) + 1] == _steady("     fix: " + check["fix"])
    assert lines[0] == _steady("ok   python {}.{}.{}".format(*sys.version_info[:3]))
    assert lines[-1].endswith("failure(s)")


def test_cli_fails_when_modemmanager_runs(tmp_path: Path) -> None:
    _, rules = scan_udev_rules()
    if any("ID_MM_DEVICE_IGNORE" in m.line for m in rules):
        pytest.skip("this machine tells ModemManager to ignore MediaTek ports")
    with named_process(tmp_path, "ModemManager"):
        res = run_cli("doctor")
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.startswith("FAIL ModemManager is running"))
    assert lines[i + 1].startswith("     fix: sudo systemctl stop ModemManager")
    fails = sum(ln.startswith("FAIL ") for ln in lines)
    assert lines[-1].endswith(f", {fails} failure(s)")


def test_cli_prints_udev_rule() -> None:
    res = run_cli("doctor", "--udev-rule")
    assert res.returncode == 0
    assert res.stdout == udev_rule()
    doc = json.loads(run_cli("--json", "doctor", "--udev-rule").stdout)
    assert doc == {"path": "/etc/udev/rules.d/51-romkit-mediatek.rules", "rule": udev_rule()}
