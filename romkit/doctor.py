"""`romkit doctor`: find the setup problems that make flashing fail before the phone is touched.

Most "handshake failed" / "COM port open failed" reports are not about the phone at all: the
user may not open the port (no `dialout`, no udev rule), ModemManager grabs the port the moment
it appears, Windows has no MediaTek VCOM driver, the disk is too small for the package, or a
dependency is older than romkit needs. The doctor is split in two so the logic can be tested
without touching the real machine: `gather_facts()` reads the system into a plain
`SystemFacts` model (and never fails: what it cannot read becomes a note), and
`run_checks(facts)` is a pure function from those facts to ok / warn / fail results, each with
a one-line fix. Tests build `SystemFacts` by hand for every problem.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import serial.tools.list_ports
from pydantic import BaseModel, Field

from romkit.device import protocol as P
from romkit.device.transport import port_mode
from romkit.paths import cache_dir
from romkit.sysimg.ext4 import TOOLS as E2FS_TOOLS
from romkit.sysimg.ext4 import install_command as e2fs_install_command
from romkit.sysimg.ext4 import tool_versions as e2fs_versions

Status = Literal["ok", "warn", "fail"]

#: Where udev looks for rules (both the admin's and the distribution's; merged-/usr systems
#: have the second and third as the same folder, which is scanned once).
UDEV_DIRS: tuple[Path, ...] = (
    Path("/etc/udev/rules.d"), Path("/lib/udev/rules.d"), Path("/usr/lib/udev/rules.d"))
SERIAL_GROUPS = ("dialout", "uucp")  # Debian/Ubuntu/Fedora use dialout; Arch uses uucp
MODEMMANAGER = "ModemManager"
#: The S820 package is 711 MB packed and more once unpacked; below this the download alone fails.
PACKAGE_BYTES = 711 * 1000 * 1000
LOW_DISK_BYTES = 2 * 1024**3
UDEV_RULE_PATH = "/etc/udev/rules.d/51-romkit-mediatek.rules"
#: pyproject.toml of a source checkout (absent in an installed wheel).
SOURCE_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
_MTK_VID_TEXT = f"{P.MTK_VID:04x}"  # "0e8d", as udev writes it
_RULE_READ_LIMIT = 1 << 20  # rules files are a few KiB; never slurp a hostile huge file


# -- facts ------------------------------------------------------------------------------------


class PortFact(BaseModel):
    """One serial port the OS lists, and whether this process may open it."""

    device: str
    vid: int | None = None
    pid: int | None = None
    description: str = ""
    accessible: bool | None = None  # os.access read+write; None where that means nothing


class UdevMatch(BaseModel):
    """A non-comment udev rule line that mentions the MediaTek vendor id."""

    path: str
    line_no: int
    line: str


class SystemFacts(BaseModel):
    """Everything the checks look at, read once from the machine (or written by a test)."""

    os_name: str  # platform.system().lower(): "linux", "windows", "darwin", …
    os_release: str = ""  # platform.release(): "10", "8.1", "6.8.0-45-generic", …
    python_version: str
    python_required: str | None = None  # Requires-Python of the installed romkit, ">=3.11"
    requirements_source: str | None = "installed metadata"  # or a pyproject.toml; None: unknown
    requirements: dict[str, str | None] = Field(default_factory=dict)  # dep → minimum version
    packages: dict[str, str | None] = Field(default_factory=dict)  # dep → installed (None: none)
    ports: list[PortFact] | None = Field(default_factory=list)  # None: could not enumerate
    username: str = ""
    is_root: bool = False
    groups: list[str] = Field(default_factory=list)  # groups this process has right now
    group_members: dict[str, list[str]] = Field(default_factory=dict)  # dialout/uucp → members
    udev_dirs: list[str] = Field(default_factory=list)  # rule folders that exist
    udev_rules: list[UdevMatch] = Field(default_factory=list)
    processes: list[str] | None = None  # running process names; None: could not list
    windows_drivers: str | None = None  # `pnputil` output (Windows only)
    cache_dir: str = ""
    disk_path: str | None = None  # nearest existing folder of cache_dir, where space was measured
    disk_free: int | None = None
    notes: list[str] = Field(default_factory=list)  # what could not be gathered, and why
    # e2fsprogs tool → version line (None: missing); None: not looked for
    e2fsprogs: dict[str, str | None] | None = None
    # os.openpty exists (POSIX): `romkit sim` / `demo` can use a pty; None: not looked for
    pty_available: bool | None = None


class CheckResult(BaseModel):
    """One line of the report: what was checked, how it stands, and what to do about it."""

    name: str
    status: Status
    summary: str
    fix: str | None = None


class DoctorReport(BaseModel):
    facts: SystemFacts
    checks: list[CheckResult]

    @property
    def failed(self) -> bool:
        """Any failing check makes the command exit 1; warnings do not."""
        return any(c.status == "fail" for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in ("ok", "warn", "fail")}


# -- small parsers ----------------------------------------------------------------------------

_VERSION_RE = re.compile(r"\s*v?(\d+(?:\.\d+)*)(.*)", re.ASCII | re.DOTALL)
_PRE_RE = re.compile(r"[.\-_]?(a|b|c|rc|alpha|beta|pre|preview|dev)\d*", re.ASCII | re.IGNORECASE)
_REQ_RE = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*\(?([^;)]*)\)?\s*(;.*)?",
                     re.ASCII | re.DOTALL)


def parse_version(text: str) -> tuple[tuple[int, ...], bool] | None:
    """(release numbers, is-final) of a PEP 440-ish version, or None if it has no numbers.

    Only ordering against a `>=` minimum matters here, so local labels and post releases are
    ignored and any pre/dev release sorts just below its final release (0.12rc1 < 0.12).
    """
    m = _VERSION_RE.fullmatch(text)
    if m is None or len(m.group(1)) > 200:
        return None
    release = tuple(int(part) for part in m.group(1).split("."))
    return release, _PRE_RE.match(m.group(2)) is None


def version_at_least(installed: str, minimum: str) -> bool | None:
    """installed >= minimum, or None when either cannot be read as a version."""
    a, b = parse_version(installed), parse_version(minimum)
    if a is None or b is None:
        return None
    width = max(len(a[0]), len(b[0]))
    pad_a = a[0] + (0,) * (width - len(a[0]))
    pad_b = b[0] + (0,) * (width - len(b[0]))
    return (pad_a, a[1]) >= (pad_b, b[1])


def parse_requirement(text: str) -> tuple[str, str | None] | None:
    """(normalised name, minimum version) of a runtime requirement line; None for extras.

    `typer>=0.12` → ("typer", "0.12"); `pytest>=8; extra == 'test'` → None (only needed for
    tests); a requirement without a lower bound → (name, None). `==`/`~=` pins count as the
    minimum too.
    """
    m = _REQ_RE.fullmatch(text)
    if m is None:
        return None
    name, _extras, specs, marker = m.groups()
    if marker and "extra" in marker:
        return None
    minimum = None
    for spec in specs.split(","):
        spec = spec.strip()
        for op in (">=", "~=", "=="):
            if spec.startswith(op) and spec[len(op):].strip():
                minimum = spec[len(op):].strip()
    return normalise_name(name), minimum


def normalise_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _minimum_of(specifier: str | None) -> str | None:
    """The bound of `>=3.11` (Requires-Python), or None."""
    if not specifier:
        return None
    for part in specifier.split(","):
        part = part.strip()
        if part.startswith(">="):
            return part[2:].strip() or None
    return None


# -- gathering --------------------------------------------------------------------------------


def scan_udev_rules(dirs: Iterable[Path] = UDEV_DIRS) -> tuple[list[str], list[UdevMatch]]:
    """(existing rule folders, rule lines mentioning VID 0e8d) from `*.rules` in `dirs`.

    Comment lines are skipped (a commented-out rule does nothing). A folder reached twice
    through a symlink (/lib → /usr/lib) is read once.
    """
    seen: set[Path] = set()
    present: list[str] = []
    matches: list[UdevMatch] = []
    for folder in dirs:
        try:
            real = folder.resolve()
            if real in seen or not folder.is_dir():
                continue
            seen.add(real)
            present.append(str(folder))
            files = sorted(p for p in folder.iterdir() if p.name.endswith(".rules"))
        except OSError:
            continue
        for path in files:
            try:
                with path.open("rb") as fh:
                    text = fh.read(_RULE_READ_LIMIT).decode("utf-8", errors="replace")
            except OSError:
                continue
            for no, line in enumerate(text.splitlines(), start=1):
                stripped = line.strip()
                if stripped and not stripped.startswith("#") and _MTK_VID_TEXT in stripped.lower():
                    matches.append(UdevMatch(path=str(path), line_no=no, line=stripped[:500]))
    return present, matches


def running_processes(proc: Path = Path("/proc")) -> list[str] | None:
    """Names of running processes from `<proc>/<pid>/comm`; None where there is no procfs."""
    if not proc.is_dir():
        return None
    names: set[str] = set()
    try:
        entries = list(proc.iterdir())
    except OSError:
        return None
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            names.add((entry / "comm").read_text(errors="replace").strip())
        except OSError:
            continue  # the process ended while we looked, or it is not ours to read
    names.discard("")
    return sorted(names)


def nearest_existing(path: Path) -> Path:
    """`path` or its closest existing parent: where a not-yet-created cache would live."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def _declared_requirements(pyproject: Path | None,
                           notes: list[str]) -> tuple[str, str | None, list[str]] | None:
    """(where from, Requires-Python, requirement lines) romkit declares, or None if unknown.

    In a source checkout (also an editable install) pyproject.toml is the truth: the installed
    metadata is only refreshed by reinstalling, so it lags behind an edited pyproject. An
    installed wheel has no pyproject.toml next to the package and uses its metadata.
    """
    if pyproject is not None and pyproject.is_file():
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            notes.append(f"could not read {pyproject}: {exc}")
            project = None
        if isinstance(project, dict) and project.get("name") == "romkit":
            deps = project.get("dependencies")
            python = project.get("requires-python")
            lines = [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else []
            return str(pyproject), python if isinstance(python, str) else None, lines
    try:
        lines = metadata.requires("romkit") or []
        python = metadata.metadata("romkit").json.get("requires_python")
    except metadata.PackageNotFoundError:
        notes.append("romkit is not installed as a package: dependency minimums unknown")
        return None
    return "installed metadata", python if isinstance(python, str) else None, lines


def _packages(pyproject: Path | None, notes: list[str]) -> tuple[
        str | None, str | None, dict[str, str | None], dict[str, str | None]]:
    declared = _declared_requirements(pyproject, notes)
    if declared is None:
        return None, None, {}, {}
    source, python_required, lines = declared
    requirements: dict[str, str | None] = {}
    for line in lines:
        parsed = parse_requirement(line)
        if parsed is not None:
            requirements[parsed[0]] = parsed[1]
    installed: dict[str, str | None] = {}
    for name in requirements:
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed[name] = None
    return source, python_required, requirements, installed


def _ports(os_name: str, notes: list[str]) -> list[PortFact] | None:
    try:
        listed = serial.tools.list_ports.comports()
    except OSError as exc:
        notes.append(f"could not list serial ports: {exc}")
        return None
    ports = []
    for p in listed:
        accessible = (os.access(p.device, os.R_OK | os.W_OK)
                      if os_name != "windows" else None)
        ports.append(PortFact(device=p.device, vid=p.vid, pid=p.pid,
                              description=p.description or "", accessible=accessible))
    return sorted(ports, key=lambda port: port.device)


def _user_and_groups(notes: list[str]) -> tuple[str, bool, list[str], dict[str, list[str]]]:
    """Username, root?, this process's group names, and dialout/uucp members from /etc/group."""
    try:
        import grp
        import pwd
    except ImportError:  # Windows: no POSIX user database
        return os.environ.get("USERNAME", ""), False, [], {}
    uid = os.geteuid()
    try:
        username = pwd.getpwuid(uid).pw_name
    except KeyError:
        username = str(uid)
    names: list[str] = []
    for gid in sorted({os.getegid(), *os.getgroups()}):
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            names.append(str(gid))
    members: dict[str, list[str]] = {}
    for group in SERIAL_GROUPS:
        try:
            members[group] = list(grp.getgrnam(group).gr_mem)
        except KeyError:
            continue
    if not members:
        notes.append("neither a dialout nor a uucp group exists on this system")
    return username, uid == 0, names, members


def _windows_drivers(notes: list[str]) -> str | None:
    """`pnputil /enum-drivers` (Windows 10+), else the older `pnputil -e`."""
    for args in (["pnputil", "/enum-drivers"], ["pnputil", "-e"]):
        try:
            done = subprocess.run(args, capture_output=True, text=True, errors="replace",
                                  timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            notes.append(f"{' '.join(args)} failed: {exc}")
            continue
        if done.returncode == 0:
            return done.stdout
        notes.append(f"{' '.join(args)} exited {done.returncode}")
    return None


def _disk(cache: Path, notes: list[str]) -> tuple[str | None, int | None]:
    where = nearest_existing(cache)
    try:
        return str(where), shutil.disk_usage(where).free
    except OSError as exc:
        notes.append(f"could not measure free space at {where}: {exc}")
        return str(where), None


def gather_facts(udev_dirs: Sequence[Path] = UDEV_DIRS, proc_dir: Path = Path("/proc"),
                 pyproject: Path | None = SOURCE_PYPROJECT) -> SystemFacts:
    """Read this machine into `SystemFacts`; never raises — gaps become `notes`.

    The paths are parameters so a test can point them at real files of its own.
    """
    notes: list[str] = []
    os_name = platform.system().lower()
    source, python_required, requirements, packages = _packages(pyproject, notes)
    username, is_root, groups, members = _user_and_groups(notes)
    linux = os_name == "linux"
    present, matches = scan_udev_rules(udev_dirs) if linux else ([], [])
    cache = cache_dir()
    disk_path, free = _disk(cache, notes)
    return SystemFacts(
        os_name=os_name,
        os_release=platform.release(),
        python_version=platform.python_version(),
        python_required=python_required,
        requirements_source=source,
        requirements=requirements,
        packages=packages,
        ports=_ports(os_name, notes),
        username=username,
        is_root=is_root,
        groups=groups,
        group_members=members,
        udev_dirs=present,
        udev_rules=matches,
        processes=running_processes(proc_dir) if linux else None,
        windows_drivers=_windows_drivers(notes) if os_name == "windows" else None,
        cache_dir=str(cache),
        disk_path=disk_path,
        disk_free=free,
        notes=notes,
        e2fsprogs=e2fs_versions(),
        pty_available=hasattr(os, "openpty"),
    )


# -- checks -----------------------------------------------------------------------------------


def _ok(name: str, summary: str) -> CheckResult:
    return CheckResult(name=name, status="ok", summary=summary)


def _warn(name: str, summary: str, fix: str) -> CheckResult:
    return CheckResult(name=name, status="warn", summary=summary, fix=fix)


def _fail(name: str, summary: str, fix: str) -> CheckResult:
    return CheckResult(name=name, status="fail", summary=summary, fix=fix)


def check_python(f: SystemFacts) -> list[CheckResult]:
    minimum = _minimum_of(f.python_required) or "3.11"
    ok = version_at_least(f.python_version, minimum)
    if ok is None:
        return [_warn("python", f"python {f.python_version[:40]}: version not understood",
                      f"run romkit with Python {minimum} or newer")]
    if not ok:
        return [_fail("python", f"python {f.python_version} is older than the {minimum} romkit "
                                "needs", f"install Python {minimum} or newer and reinstall romkit "
                                         "with it (`python3.11 -m pip install romkit`)")]
    return [_ok("python", f"python {f.python_version}")]


def check_packages(f: SystemFacts) -> list[CheckResult]:
    if f.requirements_source is None:
        return [_warn("dependencies", "romkit is not installed as a package, so its dependency "
                      "minimums are unknown", "install it: `pip install -e .` in the source "
                      "folder, or `pip install romkit`")]
    results = []
    for name, minimum in sorted(f.requirements.items()):
        have = f.packages.get(name)
        want = f">={minimum}" if minimum else ""
        fix = f"pip install --upgrade '{name}{want}'"
        if have is None:
            results.append(_fail(name, f"{name} is not installed (romkit needs {name}{want})",
                                 fix))
            continue
        ok = version_at_least(have, minimum) if minimum else True
        if ok is None:
            results.append(_warn(name, f"{name} {have[:40]}: version not understood "
                                       f"(need {want})", fix))
        elif not ok:
            results.append(_fail(name, f"{name} {have} is older than the {minimum} romkit needs",
                                 fix))
        else:
            results.append(_ok(name, f"{name} {have}" + (f" (needs {want})" if want else "")))
    return results


def _mtk_ports(f: SystemFacts) -> list[tuple[PortFact, str]]:
    found = []
    for port in f.ports or []:
        if port.vid is None or port.pid is None:
            continue
        mode = port_mode(port.vid, port.pid)
        if mode is not None or port.vid == P.MTK_VID:
            found.append((port, mode or "other"))
    return found


def check_ports(f: SystemFacts) -> list[CheckResult]:
    if f.ports is None:
        return [_warn("serial-ports", "could not list serial ports",
                      "check that pyserial is installed and that /sys (Linux) is readable")]
    if not f.ports:
        return [_ok("serial-ports", "no serial ports visible right now")]
    names = ", ".join(p.device for p in f.ports[:8]) + (" …" if len(f.ports) > 8 else "")
    return [_ok("serial-ports", f"{len(f.ports)} serial port(s) visible: {names}")]


_MODE_TEXT = {
    "brom": "boot ROM (download mode)",
    "preloader": "preloader (download mode)",
    "da": "download agent — left over from an interrupted flash",
    "vendor": "vendor download mode",
    "other": "not a download port (phone booted normally?)",
}


def check_mediatek_port(f: SystemFacts) -> list[CheckResult]:
    found = _mtk_ports(f)
    if not found:
        return [_warn("mediatek-port", "no MediaTek port connected right now",
                      "normal without a phone: power it off, pull the battery, reconnect USB "
                      "and run `romkit doctor` again — `romkit flash` waits for the port itself")]
    port, mode = found[0]
    what = (f"MediaTek port {port.device} ({port.vid:04X}:{port.pid:04X}, "
            f"{_MODE_TEXT[mode]})")
    if port.accessible is False:
        fix = ("join the dialout group (`sudo usermod -aG dialout $USER`, then log in again) "
               "or install the udev rule (`romkit doctor --udev-rule`)"
               if f.os_name == "linux" else
               "close any other program that has the port open (a serial terminal, SP Flash "
               "Tool) and reconnect the phone")
        return [_fail("mediatek-port", f"{what} cannot be opened by this user", fix)]
    if mode == "da":
        return [_warn("mediatek-port", what, "unplug the phone, pull the battery for a few "
                      "seconds and connect it again so it starts from the preloader")]
    if mode == "other":
        return [_warn("mediatek-port", what, "power the phone off and reconnect it (hold "
                      "Volume- if needed) so it comes up in preloader or BROM mode")]
    return [_ok("mediatek-port", what)]


def _rule_grants_access(f: SystemFacts) -> UdevMatch | None:
    for match in f.udev_rules:
        line = match.line
        if "uaccess" in line or re.search(r'MODE\s*:?=\s*"0?[0-7][0-7][67]"', line):
            return match
        group = re.search(r'GROUP\s*:?=\s*"([^"]+)"', line)
        if group and (group.group(1) in f.groups or f.is_root):
            return match
    return None


def _rule_ignores_mm(f: SystemFacts) -> UdevMatch | None:
    for match in f.udev_rules:
        if re.search(r'ID_MM_DEVICE_IGNORE\}\s*=\s*"1"', match.line):
            return match
    return None


def _serial_group(f: SystemFacts) -> str:
    for group in SERIAL_GROUPS:
        if group in f.group_members:
            return group
    return SERIAL_GROUPS[0]


def check_serial_access(f: SystemFacts) -> list[CheckResult]:
    name = "serial-access"
    who = f.username or "this user"
    if f.is_root:
        return [_ok(name, "running as root: every serial port can be opened")]
    joined = [g for g in SERIAL_GROUPS if g in f.groups]
    if joined:
        return [_ok(name, f"user {who} is in the {joined[0]} group")]
    pending = [g for g in SERIAL_GROUPS if f.username and f.username in f.group_members.get(g, [])]
    if pending:
        return [_warn(name, f"user {who} was added to {pending[0]}, but this login session "
                            "does not have it yet",
                      f"log out and back in (or run `newgrp {pending[0]}`)")]
    rule = _rule_grants_access(f)
    if rule is not None:
        return [_ok(name, f"user {who} is not in {'/'.join(SERIAL_GROUPS)}, but the udev rule "
                          f"in {rule.path} grants access")]
    group = _serial_group(f)
    return [_fail(name, f"user {who} is not in the {group} group: the phone's port cannot be "
                        "opened", f"sudo usermod -aG {group} {f.username or '$USER'}, then log "
                              "out and back in (or install `romkit doctor --udev-rule`)")]


def check_udev(f: SystemFacts) -> list[CheckResult]:
    install = (f"romkit doctor --udev-rule | sudo tee {UDEV_RULE_PATH} && "
               "sudo udevadm control --reload")
    if not f.udev_dirs:
        return [_warn("udev-rule", "no udev rules folders on this system (container?)",
                      "flash from a host system with udev, or make sure the port is passed in")]
    if not f.udev_rules:
        return [_warn("udev-rule", f"no udev rule for MediaTek (VID {_MTK_VID_TEXT})", install)]
    first = f.udev_rules[0]
    return [_ok("udev-rule", f"udev rule for VID {_MTK_VID_TEXT}: {first.path}:{first.line_no}")]


def check_modemmanager(f: SystemFacts) -> list[CheckResult]:
    name = "modemmanager"
    if f.processes is None:
        return [_warn(name, "could not list running processes to look for ModemManager",
                      "if flashing fails at the handshake: sudo systemctl stop ModemManager")]
    if MODEMMANAGER not in f.processes:
        return [_ok(name, "ModemManager is not running")]
    rule = _rule_ignores_mm(f)
    if rule is not None:
        return [_ok(name, f"ModemManager is running but ignores MediaTek ports ({rule.path})")]
    return [_fail(name, "ModemManager is running: it grabs the phone's ttyACM port and the "
                        "handshake fails",
                  "sudo systemctl stop ModemManager (for this session), or install the udev "
                  "rule with ENV{ID_MM_DEVICE_IGNORE}=\"1\": `romkit doctor --udev-rule`")]


def check_root(f: SystemFacts) -> list[CheckResult]:
    if f.is_root:
        return [_warn("root", "running as root: downloads and backups will belong to root",
                      "run romkit as your own user; grant port access with the dialout group "
                      "or `romkit doctor --udev-rule` instead")]
    return [_ok("root", f"running as user {f.username or '?'}")]


def _has_vcom(f: SystemFacts) -> bool:
    text = (f.windows_drivers or "").lower()
    return "mediatek" in text or "usbvcom" in text


#: Installing the VCOM driver's INF from an administrator prompt: `/add-driver … /install`
#: is pnputil's syntax on Windows 10 and later, `-i -a` the older one (7, 8, 8.1).
PNPUTIL_INSTALL = ("from an administrator prompt in the driver folder: `pnputil /add-driver "
                   "usbvcom.inf /install` (Windows 10/11) or `pnputil -i -a usbvcom.inf` "
                   "(Windows 7/8.1)")


def _com_hint(f: SystemFacts) -> str:
    """`--port COMn` for the MediaTek port Windows gave the phone, if one is plugged in."""
    found = _mtk_ports(f)
    if not found:
        return ""
    device = found[0][0].device
    return f"; the phone is on {device}: `romkit flash --port {device}`"


def check_vcom_driver(f: SystemFacts) -> list[CheckResult]:
    name = "vcom-driver"
    if f.windows_drivers is None:
        return [_warn(name, "could not list installed drivers (pnputil failed)",
                      "check Device Manager: the phone must show as 'MediaTek PreLoader USB "
                      "VCOM Port (COMn)' under Ports (COM & LPT)")]
    if _has_vcom(f):
        return [_ok(name, "MediaTek USB VCOM driver is installed" + _com_hint(f))]
    if _mtk_ports(f):
        return [_warn(name, "no MediaTek VCOM driver, but a MediaTek port works through "
                            "another driver (usbser)",
                      "if BROM mode or the handshake fails, install the MediaTek USB VCOM "
                      "driver (usbvcom.inf)")]
    return [_fail(name, "MediaTek USB VCOM driver is not installed: Windows cannot give the "
                        "phone a COM port",
                  "install the MediaTek USB VCOM driver (usbvcom.inf): Device Manager → "
                  "phone → Update driver → Browse → the driver folder, or "
                  + PNPUTIL_INSTALL)]


def _needs_signed_drivers(release: str) -> bool:
    version = parse_version(release)
    return version is not None and version[0] >= (8,)


def check_driver_signature(f: SystemFacts) -> list[CheckResult]:
    name = "driver-signature"
    if not _needs_signed_drivers(f.os_release):
        return [_ok(name, f"Windows {f.os_release or '?'} does not enforce driver signatures")]
    if _has_vcom(f):
        return [_ok(name, "VCOM driver already installed: signature enforcement is not in "
                          "the way")]
    return [_warn(name, f"Windows {f.os_release} refuses unsigned drivers: installing VCOM may "
                        "fail with 'The third party INF does not contain digital signature "
                        "information' (in Device Manager and in pnputil alike)",
                  "disable driver signature enforcement for one boot (Shift+Restart → "
                  "Troubleshoot → Advanced options → Startup Settings → 7), then install")]


def check_macos_port(f: SystemFacts) -> list[CheckResult]:
    """macOS binds the phone's CDC ACM interface with its own driver (nothing to install) and
    makes two nodes per port: /dev/tty.* waits for carrier detect when opened, /dev/cu.* (the
    call-out device) does not — a phone has no carrier, so only cu.* is usable. Our reading
    of Apple's serial driver model; no Mac has run romkit against a phone yet."""
    name = "macos-port"
    found = _mtk_ports(f)
    if not found:
        return [_ok(name, "no driver needed on macOS: the phone appears as "
                          "/dev/cu.usbmodem* once connected")]
    device = found[0][0].device
    if device.startswith("/dev/tty."):
        cu = "/dev/cu." + device.removeprefix("/dev/tty.")
        return [_warn(name, f"{device} is the dial-in node: opening it waits for a carrier "
                            "the phone never raises", f"use the call-out node: "
                                                      f"`romkit flash --port {cu}`")]
    return [_ok(name, f"the phone is on {device}: `romkit flash --port {device}`")]


def check_sim_link(f: SystemFacts) -> list[CheckResult]:
    """Which cable the virtual phone (`romkit sim`, `romkit demo`) uses here (issue 20)."""
    name = "sim-link"
    if f.pty_available is None:
        return []
    if f.pty_available:
        return [_ok(name, "`romkit sim` and `romkit demo` use a pseudo-terminal (--link tcp "
                          "works too)")]
    return [_ok(name, "no pseudo-terminals here: `romkit sim` and `romkit demo` use TCP "
                      "(--link tcp); flash it with `romkit flash --port socket://127.0.0.1:N`")]


def check_disk(f: SystemFacts) -> list[CheckResult]:
    name = "disk-space"
    if f.disk_free is None:
        return [_warn(name, f"could not measure free space for the cache ({f.cache_dir})",
                      "make sure the cache folder is on a writable disk (or set ROMKIT_HOME)")]
    where = f.disk_path or f.cache_dir
    free = _gib(f.disk_free)
    fix = ("free some space or move the cache to a bigger disk with ROMKIT_HOME=/path; "
           "`romkit` needs ~2 GiB for an S820 package and its unpacked folder")
    if f.disk_free < PACKAGE_BYTES:
        return [_fail(name, f"only {free} free at {where}: a 711 MB package does not fit", fix)]
    if f.disk_free < LOW_DISK_BYTES:
        return [_warn(name, f"only {free} free at {where}: tight for a package plus its "
                            "unpacked folder", fix)]
    return [_ok(name, f"{free} free for the cache at {where}")]


def check_e2fsprogs(f: SystemFacts) -> list[CheckResult]:
    """e2fsprogs writes the modem set into system.img (`prepare --modem`); only a warning:
    everything else works without it."""
    if f.e2fsprogs is None:
        return []
    name = "e2fsprogs"
    missing = [t for t in E2FS_TOOLS if f.e2fsprogs.get(t) is None]
    if missing:
        return [_warn(name, f"{', '.join(missing)} not found: `romkit prepare --modem` cannot "
                            "install modem files into system.img",
                      e2fs_install_command(f.os_name))]
    version = next((v for v in f.e2fsprogs.values() if v), "")
    return [_ok(name, f"{version} ({', '.join(E2FS_TOOLS)})")]


def _gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"


_COMMON: tuple[Callable[[SystemFacts], list[CheckResult]], ...] = (
    check_python, check_packages, check_ports, check_mediatek_port)
_BY_OS: dict[str, tuple[Callable[[SystemFacts], list[CheckResult]], ...]] = {
    "linux": (check_serial_access, check_udev, check_modemmanager, check_root),
    "darwin": (check_macos_port, check_root),
    "windows": (check_vcom_driver, check_driver_signature),
}


def run_checks(facts: SystemFacts) -> list[CheckResult]:
    """Every check that applies to `facts.os_name`, in report order. Pure: reads only facts."""
    checks = (*_COMMON, *_BY_OS.get(facts.os_name, ()), check_e2fsprogs, check_sim_link,
              check_disk)
    return [result for check in checks for result in check(facts)]


def diagnose() -> DoctorReport:
    """Gather this machine's facts and check them: what `romkit doctor` shows."""
    facts = gather_facts()
    return DoctorReport(facts=facts, checks=run_checks(facts))


def udev_rule() -> str:
    """A udev rule that opens MediaTek ports to the logged-in user and hides them from MM.

    Numbered 51 so it runs before 73-seat-late (which turns the uaccess tag into an ACL) and
    before ModemManager's 77-mm-* rules read ID_MM_DEVICE_IGNORE.
    """
    vid = _MTK_VID_TEXT
    attrs = 'MODE="0666", TAG+="uaccess", ENV{ID_MM_DEVICE_IGNORE}="1"'
    return (
        f"# {UDEV_RULE_PATH} — from `romkit doctor --udev-rule`\n"
        f"# MediaTek download ports (BROM {P.USB_BROM[0]:04X}:{P.USB_BROM[1]:04X}, preloader "
        f"{P.USB_PRELOADER[0]:04X}:{P.USB_PRELOADER[1]:04X}): let the logged-in user open "
        "them and keep ModemManager away.\n"
        f'SUBSYSTEM=="usb", ATTR{{idVendor}}=="{vid}", {attrs}\n'
        f'SUBSYSTEM=="tty", ATTRS{{idVendor}}=="{vid}", {attrs}\n'
    )

