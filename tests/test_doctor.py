"""`romkit.doctor` checks driven by hand-written system facts (one per setup problem)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from romkit.doctor import (
    CheckResult,
    PortFact,
    SystemFacts,
    UdevMatch,
    parse_requirement,
    parse_version,
    run_checks,
    scan_udev_rules,
    udev_rule,
    version_at_least,
)

GIB = 1024**3
MM_IGNORE_RULE = 'ATTRS{idVendor}=="0e8d", ENV{ID_MM_DEVICE_IGNORE}="1"'
GROUP_RULE = 'SUBSYSTEM=="tty", ATTRS{idVendor}=="0e8d", GROUP="plugdev", MODE="0660"'


def linux(**changes: Any) -> SystemFacts:
    """A healthy Linux desktop user with no phone plugged in; tests change one thing."""
    base: dict[str, Any] = {
        "os_name": "linux",
        "os_release": "6.8.0-45-generic",
        "python_version": "3.11.7",
        "python_required": ">=3.11",
        "requirements": {"typer": "0.12", "numpy": "1.26", "pyserial": "3.5"},
        "packages": {"typer": "0.12.3", "numpy": "1.26.4", "pyserial": "3.5"},
        "ports": [PortFact(device="/dev/ttyS0", description="n/a", accessible=True)],
        "username": "alice",
        "is_root": False,
        "groups": ["alice", "dialout"],
        "group_members": {"dialout": ["alice"]},
        "udev_dirs": ["/etc/udev/rules.d", "/lib/udev/rules.d"],
        "udev_rules": [UdevMatch(path="/etc/udev/rules.d/51-mtk.rules", line_no=1,
                                 line=MM_IGNORE_RULE)],
        "processes": ["bash", "systemd", "sshd"],
        "cache_dir": "/home/alice/.cache/romkit",
        "disk_path": "/home/alice/.cache",
        "disk_free": 50 * GIB,
    }
    base.update(changes)
    return SystemFacts(**base)


def macos(**changes: Any) -> SystemFacts:
    base: dict[str, Any] = {
        "os_name": "darwin", "os_release": "23.4.0", "python_version": "3.12.2",
        "python_required": ">=3.11", "requirements": {"typer": "0.12"},
        "packages": {"typer": "0.15.1"},
        "ports": [PortFact(device="/dev/cu.Bluetooth-Incoming-Port", accessible=True)],
        "username": "carol", "pty_available": True,
        "cache_dir": "/Users/carol/Library/Caches/romkit", "disk_free": 80 * GIB,
    }
    base.update(changes)
    return SystemFacts(**base)


def windows(**changes: Any) -> SystemFacts:
    base: dict[str, Any] = {
        "os_name": "windows", "os_release": "10", "python_version": "3.12.1",
        "python_required": ">=3.11", "requirements": {"typer": "0.12"},
        "packages": {"typer": "0.15.1"}, "ports": [], "username": "bob",
        "windows_drivers": "Published Name: oem3.inf\nOriginal Name: rtwlane.inf\n"
                           "Provider Name: Realtek\n", "pty_available": False,
        "cache_dir": r"C:\Users\bob\AppData\Local\romkit\Cache", "disk_free": 80 * GIB,
    }
    base.update(changes)
    return SystemFacts(**base)


def by_name(facts: SystemFacts) -> dict[str, CheckResult]:
    results = run_checks(facts)
    names = [r.name for r in results]
    assert len(names) == len(set(names)), names
    return {r.name: r for r in results}


# -- the healthy baseline ----------------------------------------------------------------------


def test_healthy_linux_has_no_failure_and_every_linux_check() -> None:
    checks = by_name(linux())
    assert set(checks) == {"python", "typer", "numpy", "pyserial", "serial-ports",
                           "mediatek-port", "serial-access", "udev-rule", "modemmanager",
                           "root", "disk-space"}
    assert not any(c.status == "fail" for c in checks.values())
    assert checks["python"].summary == "python 3.11.7"
    assert checks["mediatek-port"].status == "warn"  # no phone plugged in: a note, not a failure
    for check in checks.values():
        assert (check.fix is None) == (check.status == "ok"), check


def test_windows_runs_windows_checks_only() -> None:
    names = set(by_name(windows()))
    assert {"vcom-driver", "driver-signature"} <= names
    assert not names & {"modemmanager", "udev-rule", "serial-access"}


# -- one problem each --------------------------------------------------------------------------


def test_modemmanager_running_fails() -> None:
    check = by_name(linux(processes=["bash", "ModemManager"], udev_rules=[]))["modemmanager"]
    assert check.status == "fail"
    assert "sudo systemctl stop ModemManager" in check.fix
    assert "ID_MM_DEVICE_IGNORE" in check.fix


def test_modemmanager_running_but_told_to_ignore_mediatek_is_ok() -> None:
    check = by_name(linux(processes=["ModemManager"]))["modemmanager"]
    assert check.status == "ok"
    assert "51-mtk.rules" in check.summary


def test_process_list_unavailable_warns() -> None:
    assert by_name(linux(processes=None))["modemmanager"].status == "warn"


def test_not_in_dialout_without_rule_fails() -> None:
    facts = linux(groups=["alice"], group_members={"dialout": ["carol"]}, udev_rules=[])
    check = by_name(facts)["serial-access"]
    assert check.status == "fail"
    assert "sudo usermod -aG dialout alice" in check.fix


def test_not_in_uucp_on_arch_names_uucp() -> None:
    facts = linux(groups=["alice", "wheel"], group_members={"uucp": []}, udev_rules=[])
    check = by_name(facts)["serial-access"]
    assert check.status == "fail"
    assert "usermod -aG uucp alice" in check.fix


def test_in_uucp_is_ok() -> None:
    facts = linux(groups=["alice", "uucp"], group_members={"uucp": ["alice"]})
    assert by_name(facts)["serial-access"].status == "ok"


def test_added_to_dialout_but_not_logged_in_again_warns() -> None:
    facts = linux(groups=["alice"], group_members={"dialout": ["carol", "alice"]}, udev_rules=[])
    check = by_name(facts)["serial-access"]
    assert check.status == "warn"
    assert "log out" in check.fix


def test_udev_rule_granting_group_access_replaces_dialout() -> None:
    rule = UdevMatch(path="/etc/udev/rules.d/52-x.rules", line_no=3, line=GROUP_RULE)
    assert by_name(linux(groups=["alice", "plugdev"], group_members={},
                         udev_rules=[rule]))["serial-access"].status == "ok"
    # the same rule does not help a user outside plugdev
    assert by_name(linux(groups=["alice"], group_members={},
                         udev_rules=[rule]))["serial-access"].status == "fail"


def test_no_udev_rule_warns_with_install_command() -> None:
    check = by_name(linux(udev_rules=[]))["udev-rule"]
    assert check.status == "warn"
    assert "romkit doctor --udev-rule" in check.fix
    assert "/etc/udev/rules.d/" in check.fix


def test_no_udev_at_all_warns() -> None:
    check = by_name(linux(udev_dirs=[], udev_rules=[]))["udev-rule"]
    assert check.status == "warn"
    assert "no udev rules folders" in check.summary


def test_root_warns() -> None:
    checks = by_name(linux(is_root=True, groups=["root"], username="root"))
    assert checks["root"].status == "warn"
    assert "own user" in checks["root"].fix
    assert checks["serial-access"].status == "ok"


@pytest.mark.parametrize(("pid", "status", "words"), [
    (0x2000, "ok", "preloader"),
    (0x0003, "ok", "boot ROM"),
    (0x2001, "warn", "interrupted flash"),
    (0x200A, "warn", "not a download port"),
])
def test_mediatek_port_present(pid: int, status: str, words: str) -> None:
    ports = [PortFact(device="/dev/ttyS0"),
             PortFact(device="/dev/ttyACM0", vid=0x0E8D, pid=pid, description="MT65xx Preloader",
                      accessible=True)]
    checks = by_name(linux(ports=ports))
    check = checks["mediatek-port"]
    assert check.status == status
    assert "/dev/ttyACM0" in check.summary
    assert f"0E8D:{pid:04X}" in check.summary
    assert words in check.summary
    assert checks["serial-ports"].summary.startswith("2 serial port(s)")


def test_mediatek_port_that_cannot_be_opened_fails() -> None:
    port = PortFact(device="/dev/ttyACM0", vid=0x0E8D, pid=0x2000, accessible=False)
    check = by_name(linux(ports=[port]))["mediatek-port"]
    assert check.status == "fail"
    assert "dialout" in check.fix and "--udev-rule" in check.fix


def test_non_mediatek_usb_serial_is_not_the_phone() -> None:
    port = PortFact(device="/dev/ttyUSB0", vid=0x1A86, pid=0x7523, accessible=True)
    assert by_name(linux(ports=[port]))["mediatek-port"].status == "warn"


def test_port_listing_failure_warns() -> None:
    assert by_name(linux(ports=None))["serial-ports"].status == "warn"


def test_windows_without_vcom_driver_fails_and_warns_about_signatures() -> None:
    checks = by_name(windows())
    assert checks["vcom-driver"].status == "fail"
    assert "usbvcom.inf" in checks["vcom-driver"].fix
    sig = checks["driver-signature"]
    assert sig.status == "warn"
    assert "The third party INF does not contain digital signature information" in sig.summary
    assert "driver signature enforcement" in sig.fix


@pytest.mark.parametrize("release", ["8", "8.1", "10", "11"])
def test_signature_hint_for_windows_8_and_later(release: str) -> None:
    assert by_name(windows(os_release=release))["driver-signature"].status == "warn"


def test_windows_7_needs_no_signature_hint() -> None:
    assert by_name(windows(os_release="7"))["driver-signature"].status == "ok"


@pytest.mark.parametrize("text", [
    "Original Name: usbvcom.inf\nProvider Name: MediaTek Inc.\n",
    "oem12.inf  Driver package provider : MediaTek Inc.\n",
])
def test_windows_with_vcom_driver_is_ok(text: str) -> None:
    checks = by_name(windows(windows_drivers=text))
    assert checks["vcom-driver"].status == "ok"
    assert checks["driver-signature"].status == "ok"


def test_windows_port_through_inbox_driver_only_warns() -> None:
    port = PortFact(device="COM5", vid=0x0E8D, pid=0x2000, description="USB Serial Device")
    checks = by_name(windows(ports=[port]))
    assert checks["vcom-driver"].status == "warn"
    assert checks["mediatek-port"].status == "ok"


def test_windows_vcom_fix_names_pnputil_for_old_and_new_windows() -> None:
    fix = by_name(windows())["vcom-driver"].fix
    assert "pnputil /add-driver usbvcom.inf /install" in fix
    assert "pnputil -i -a usbvcom.inf" in fix


def test_windows_with_vcom_and_phone_names_its_com_port() -> None:
    port = PortFact(device="COM7", vid=0x0E8D, pid=0x2000,
                    description="MediaTek PreLoader USB VCOM Port (COM7)")
    checks = by_name(windows(ports=[port], windows_drivers="Original Name: usbvcom.inf\n"))
    assert checks["vcom-driver"].status == "ok"
    assert "--port COM7" in checks["vcom-driver"].summary
    assert "COM7" in checks["mediatek-port"].summary


def test_windows_has_no_pty_so_the_sim_uses_tcp() -> None:
    check = by_name(windows())["sim-link"]
    assert check.status == "ok"
    assert "--link tcp" in check.summary and "socket://127.0.0.1:" in check.summary


def test_posix_sim_link_is_the_pty_and_unknown_is_not_reported() -> None:
    assert "pseudo-terminal" in by_name(macos())["sim-link"].summary
    assert "sim-link" not in by_name(linux())  # the fact was not gathered


def test_macos_runs_its_checks_and_none_of_linux_or_windows() -> None:
    checks = by_name(macos())
    assert {"macos-port", "root", "sim-link"} <= set(checks)
    assert not set(checks) & {"modemmanager", "udev-rule", "serial-access", "vcom-driver",
                              "driver-signature"}
    assert checks["macos-port"].status == "ok"
    assert "/dev/cu.usbmodem" in checks["macos-port"].summary


def test_macos_phone_on_the_call_out_node_is_ok() -> None:
    port = PortFact(device="/dev/cu.usbmodem14101", vid=0x0E8D, pid=0x0003, accessible=True)
    check = by_name(macos(ports=[port]))["macos-port"]
    assert check.status == "ok" and "--port /dev/cu.usbmodem14101" in check.summary


def test_macos_phone_on_the_dial_in_node_warns_with_the_cu_name() -> None:
    port = PortFact(device="/dev/tty.usbmodem14101", vid=0x0E8D, pid=0x2000, accessible=True)
    check = by_name(macos(ports=[port]))["macos-port"]
    assert check.status == "warn"
    assert "--port /dev/cu.usbmodem14101" in check.fix


def test_unopenable_port_off_linux_gets_no_dialout_advice() -> None:
    port = PortFact(device="/dev/cu.usbmodem1", vid=0x0E8D, pid=0x2000, accessible=False)
    check = by_name(macos(ports=[port]))["mediatek-port"]
    assert check.status == "fail" and "dialout" not in check.fix


def test_windows_driver_list_unavailable_warns() -> None:
    assert by_name(windows(windows_drivers=None))["vcom-driver"].status == "warn"


@pytest.mark.parametrize(("free", "status"), [
    (100 * GIB, "ok"),
    (2 * GIB, "ok"),
    (2 * GIB - 1, "warn"),
    (711 * 10**6, "warn"),
    (711 * 10**6 - 1, "fail"),
    (0, "fail"),
])
def test_disk_space(free: int, status: str) -> None:
    check = by_name(linux(disk_free=free))["disk-space"]
    assert check.status == status
    if status != "ok":
        assert "ROMKIT_HOME" in check.fix
        assert "/home/alice/.cache" in check.summary


def test_disk_unmeasurable_warns() -> None:
    assert by_name(linux(disk_free=None))["disk-space"].status == "warn"


@pytest.mark.parametrize(("installed", "status"), [
    ("0.9.4", "fail"),
    ("0.12.0rc1", "fail"),
    ("0.11.99", "fail"),
    ("0.12", "ok"),
    ("0.12.0", "ok"),
    ("1.0.0", "ok"),
    ("0.12.post1", "ok"),
    ("unknown", "warn"),
])
def test_old_dependency(installed: str, status: str) -> None:
    facts = linux(packages={"typer": installed, "numpy": "2.0", "pyserial": "3.5"})
    check = by_name(facts)["typer"]
    assert check.status == status
    if status != "ok":
        assert check.fix == "pip install --upgrade 'typer>=0.12'"


def test_missing_dependency_fails() -> None:
    check = by_name(linux(packages={"typer": "0.12.3", "numpy": "1.26.4", "pyserial": None}))
    assert check["pyserial"].status == "fail"
    assert "not installed" in check["pyserial"].summary


def test_romkit_not_installed_warns_once() -> None:
    checks = by_name(linux(requirements_source=None, requirements={}, packages={}))
    assert checks["dependencies"].status == "warn"
    assert "typer" not in checks


@pytest.mark.parametrize(("version", "status"), [
    ("3.10.12", "fail"), ("3.11.0", "ok"), ("3.13.0", "ok"), ("3.11.0rc1", "fail")])
def test_python_version(version: str, status: str) -> None:
    assert by_name(linux(python_version=version))["python"].status == status


# -- parsers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "expected"), [
    ("typer>=0.12", ("typer", "0.12")),
    ("py7zr>=0.20", ("py7zr", "0.20")),
    ("Foo_Bar.baz[extra1,extra2] >=1.2, <2", ("foo-bar-baz", "1.2")),
    ("requests (>=2.31)", ("requests", "2.31")),
    ("six", ("six", None)),
    ("pinned==1.0.3", ("pinned", "1.0.3")),
    ("pytest>=8; extra == 'test'", None),
    ('colorama>=0.4; sys_platform == "win32"', ("colorama", "0.4")),
    (">=1.0", None),
])
def test_parse_requirement(line: str, expected: tuple[str, str | None] | None) -> None:
    assert parse_requirement(line) == expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("1.26.4", "1.26", True), ("1.25.9", "1.26", False), ("2.0", "1.26", True),
    ("4.0", "4.0", True), ("4", "4.0.0", True), ("1.0rc1", "1.0", False),
    ("1.0.dev3", "0.9", True), ("v3.5", "3.5", True), ("abc", "1.0", None), ("1.0", "", None),
])
def test_version_at_least(a: str, b: str, expected: bool | None) -> None:
    assert version_at_least(a, b) is expected


@given(st.text(max_size=300))
def test_parsers_never_raise(text: str) -> None:
    parse_version(text)
    parse_requirement(text)
    version_at_least(text, text)


_texts = st.text(max_size=40)
_ports = st.lists(st.builds(
    PortFact, device=_texts, vid=st.none() | st.integers(0, 0xFFFF),
    pid=st.none() | st.integers(0, 0xFFFF), description=_texts,
    accessible=st.none() | st.booleans()), max_size=4)


@settings(max_examples=150, deadline=None)
@given(st.builds(
    SystemFacts,
    os_name=st.sampled_from(["linux", "windows", "darwin", "freebsd", ""]),
    os_release=_texts, python_version=_texts, python_required=st.none() | _texts,
    requirements_source=st.none() | _texts,
    requirements=st.dictionaries(_texts, st.none() | _texts, max_size=3),
    packages=st.dictionaries(_texts, st.none() | _texts, max_size=3),
    ports=st.none() | _ports, username=_texts, is_root=st.booleans(),
    groups=st.lists(_texts, max_size=3),
    group_members=st.dictionaries(st.sampled_from(["dialout", "uucp", "x"]),
                                  st.lists(_texts, max_size=3), max_size=2),
    udev_dirs=st.lists(_texts, max_size=2),
    udev_rules=st.lists(st.builds(UdevMatch, path=_texts, line_no=st.integers(0, 10**6),
                                  line=st.text(max_size=200)), max_size=3),
    processes=st.none() | st.lists(_texts, max_size=4),
    windows_drivers=st.none() | st.text(max_size=200),
    cache_dir=_texts, disk_path=st.none() | _texts,
    disk_free=st.none() | st.integers(0, 2**63)))
def test_run_checks_total_on_arbitrary_facts(facts: SystemFacts) -> None:
    results = run_checks(facts)
    assert results and results[0].name == "python" and results[-1].name == "disk-space"
    for r in results:
        assert r.status in ("ok", "warn", "fail")
        assert r.summary
        assert (r.fix is not None) == (r.status != "ok")


# -- the printed udev rule, through real rule files --------------------------------------------


def test_printed_udev_rule_is_found_and_fixes_access_and_modemmanager(tmp_path: Path) -> None:
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    etc.mkdir()
    lib.mkdir()
    text = udev_rule()
    (etc / "51-romkit-mediatek.rules").write_text(text)
    (lib / "60-other.rules").write_text('SUBSYSTEM=="block", ATTRS{idVendor}=="18d1"\n')
    (lib / "61-commented.rules").write_text('# ATTRS{idVendor}=="0e8d", MODE="0666"\n')
    (lib / "notes.txt").write_text('ATTRS{idVendor}=="0e8d"\n')
    present, matches = scan_udev_rules([etc, lib, tmp_path / "missing", etc])
    assert present == [str(etc), str(lib)]
    rule_lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert [m.line for m in matches] == rule_lines
    assert all(m.path == str(etc / "51-romkit-mediatek.rules") for m in matches)
    assert all('"0e8d"' in ln and 'ENV{ID_MM_DEVICE_IGNORE}="1"' in ln for ln in rule_lines)

    facts = linux(groups=["alice"], group_members={"dialout": []}, processes=["ModemManager"],
                  udev_dirs=present, udev_rules=matches)
    checks = by_name(facts)
    assert checks["udev-rule"].status == "ok"
    assert checks["serial-access"].status == "ok"  # uaccess / MODE grant access without dialout
    assert checks["modemmanager"].status == "ok"  # ID_MM_DEVICE_IGNORE keeps it off the port


def test_scan_skips_unreadable_and_caps_huge_files(tmp_path: Path) -> None:
    rules = tmp_path / "rules.d"
    rules.mkdir()
    (rules / "10-dir.rules").mkdir()  # a folder named like a rules file
    big = rules / "20-big.rules"
    big.write_bytes(b"x" * (2 << 20) + b'\nATTRS{idVendor}=="0e8d"\n')
    (rules / "30-binary.rules").write_bytes(b'\xff\xfe ATTRS{idVendor}=="0E8D" \x00\n')
    present, matches = scan_udev_rules([rules])
    assert present == [str(rules)]
    assert [(Path(m.path).name, m.line_no) for m in matches] == [("30-binary.rules", 1)]
