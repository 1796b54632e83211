"""Issue 15, flash half: nothing lost when a flash, backup or restore is interrupted.

Each test reproduces one case of the issue against the virtual S820 over a real pty and
checks the outcome by reading the simulator's storage directly (expected bytes come from the
image files and from the phone's factory content read before the run, never from what the
engine reports). Every test here failed on the code before the fix:

1. a firmware upgrade cut after its format dead-ended with 8503, and `restore` then picked
   a blank set;
2. a rerun skipped partitions the journal called verified although the phone held other
   bytes, and `--only boot` after an interrupted run wrote nothing;
3. `restore` wrote a partition at its backup offset although the phone's layout moved it
   or no longer had it;
7. `--mode firmware-upgrade` formatted PRELOAD;
8. Ctrl-C was silent (click's "Aborted!", exit 1).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clitools import run_main

from romkit import paths
from romkit.device import protocol as P
from romkit.errors import DeviceError, LayoutChangedError, UsageError, ValidationError
from romkit.flash import journal as jr
from romkit.flash.backup import list_sets
from romkit.flash.engine import FlashRequest, flash
from romkit.flash.plan import PlanOptions
from romkit.flash.tools import BackupRequest, RestoreRequest, backup_phone, restore_phone
from romkit.sim import s820
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.faults import FaultPlan
from romkit.sim.phone import VirtualPhone
from romkit.sim.sample_firmware import IMAGES, PRELOADER_NAME, build_s820_folder

USER_BASE = P.MT6589_USER_OFFSET
ADDR = {n.removeprefix("__NODL_"): a for n, a in s820.LAYOUT}
ORDER = [n.removeprefix("__NODL_") for n, _ in s820.LAYOUT]
FILES = {part: file for file, part, _ in IMAGES} | {"MBR": "MBR", "EBR1": "EBR1",
                                                     "EBR2": "EBR2"}
CALIBRATION = {name: (ADDR[name] - USER_BASE, ADDR[ORDER[ORDER.index(name) + 1]] - ADDR[name])
               for name in s820.CALIBRATION}
PMT_AT = ADDR["PMT"] - USER_BASE
# The write stream of a download-only run: PRELOADER, MBR, EBR1, UBOOT (~140 KiB), then
# BOOTIMG (1 MiB), RECOVERY (1 MiB), …
IN_BOOTIMG = 600_000
IN_RECOVERY = 1_900_000


def _cid() -> bytes:
    """The phone's CID as the engine keyed its journal / backups (each test has its own data
    dir holding one phone), so these tests do not depend on how the CID bytes are decoded."""
    data = paths.data_dir()
    names = {p.stem for p in (data / "journal").glob("*.json")}
    names |= {p.name for p in (data / "backups").glob("*") if p.is_dir()}
    assert len(names) == 1, names
    return bytes.fromhex(names.pop())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_s820_folder(tmp_path_factory.mktemp("fw15"), preloader=preloader_s820(2013),
                             da=da_s820())


def _start(tmp_path: Path, *faults: str, name: str = "phone") -> VirtualPhone:
    phone = VirtualPhone(tmp_path / name, year=2013, faults=FaultPlan.parse(list(faults)))
    phone.start()
    return phone


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[list[VirtualPhone]]:
    started: list[VirtualPhone] = []
    yield started
    for p in started:
        p.stop()


def _req(folder: Path, phone: VirtualPhone, fresh: bool = False, **opts: object
         ) -> FlashRequest:
    return FlashRequest(firmware_dir=folder, port=phone.port, wait=5, fresh=fresh,
                        options=PlanOptions(**opts))  # type: ignore[arg-type]


def _interrupted_flash(folder: Path, phone: VirtualPhone, **opts: object) -> None:
    """A flash the phone's fault cuts off (DeviceError), then the phone's session is over."""
    with pytest.raises(DeviceError):
        flash(_req(folder, phone, **opts))  # type: ignore[arg-type]
    phone.wait_finished(5)


def _calibration(phone: VirtualPhone) -> dict[str, bytes]:
    return {n: phone.storage.read(P.PART_USER, off, size)
            for n, (off, size) in CALIBRATION.items()}


def _image_differs(phone: VirtualPhone, folder: Path) -> list[str]:
    bad = [part for part, file in FILES.items()
           if phone.storage.read(P.PART_USER, ADDR[part] - USER_BASE,
                                 (folder / file).stat().st_size) != (folder / file).read_bytes()]
    raw = (folder / PRELOADER_NAME).read_bytes()
    if phone.storage.read(P.PART_BOOT1, 0x800, len(raw)) != raw:  # BRLYT boot region at 0x800
        bad.append("PRELOADER")
    return bad


def _pmt_rows(phone: VirtualPhone) -> list[tuple[int, str, int, int]]:
    """(byte position, name, size, offset) of each PTv1 entry, parsed by hand."""
    raw = phone.storage.read(P.PART_USER, PMT_AT, 8 + 128 * 88)
    magic, count = struct.unpack_from("<4sI", raw)
    assert magic == b"PTv1"
    rows = []
    for i in range(count):
        name, size, offset, _mask = struct.unpack_from("<64sQQQ", raw, 8 + 88 * i)
        rows.append((8 + 88 * i, name.rstrip(b"\0").decode(), size, offset))
    return rows


# -- case 1 ----------------------------------------------------------------------------------
def test_firmware_upgrade_cut_after_the_format_resumes_and_keeps_the_imei(
        tmp_path: Path, folder: Path, phones: list[VirtualPhone]) -> None:
    phone = _start(tmp_path, f"disconnect@{IN_BOOTIMG}")
    phones.append(phone)
    factory = _calibration(phone)
    _interrupted_flash(folder, phone, mode="firmware-upgrade")
    assert _calibration(phone)["NVRAM"] == bytes(CALIBRATION["NVRAM"][1])  # erased by the cut run

    result = flash(_req(folder, phone, mode="firmware-upgrade"))  # was: 8503, a dead end
    assert not _image_differs(phone, folder)
    assert _calibration(phone) == factory
    assert set(result.restored) == set(s820.CALIBRATION)
    assert jr.load_journal(_cid()) is None  # complete


def test_the_issue_chain_restores_the_pre_format_set_not_the_blank_one(
        tmp_path: Path, folder: Path, phones: list[VirtualPhone],
        capsys: pytest.CaptureFixture[str]) -> None:
    """cut after format → `backup` (blank) → format-all → `restore`: IMEI back."""
    phone = _start(tmp_path, f"disconnect@{IN_BOOTIMG}")
    phones.append(phone)
    factory = _calibration(phone)
    _interrupted_flash(folder, phone, mode="firmware-upgrade")
    events: list[dict] = []
    blank = backup_phone(BackupRequest(port=phone.port, firmware_dir=folder, wait=5),
                         lambda e: events.append(e.to_dict()))
    phone.wait_finished(5)
    flash(_req(folder, phone, mode="format-all"))
    phone.wait_finished(5)
    res = restore_phone(RestoreRequest(port=phone.port, firmware_dir=folder, wait=5))
    assert _calibration(phone) == factory  # was: the newest set, the all-zero one

    # the blank set really holds zeros (checked on the file), and says so
    assert set((Path(blank.path) / "NVRAM.bin").read_bytes()) <= {0}
    assert res.set_name != blank.set_name and res.verdict == "good"
    assert blank.verdict == "blank" and "NVRAM" in blank.blank
    assert blank.when == "after-format"
    loud = [e["label"] for e in events if e["event"] == "warning"]
    assert any("BLANK CALIBRATION" in w for w in loud), loud
    # `restore --list` shows the marks and which set is the default
    code, stdout, _err = run_main(capsys, "restore", "--list", "--json")
    listed = {d["name"]: d for d in json.loads(stdout)}
    assert code == 0 and listed[blank.set_name]["verdict"] == "blank"
    assert not listed[blank.set_name]["default"] and listed[res.set_name]["default"]
    code, stdout, _err = run_main(capsys, "restore", "--list")
    row = next(ln for ln in stdout.splitlines() if ln.startswith(blank.set_name))
    assert "BLANK" in row and "after-format" in row


def test_restore_without_a_good_set_refuses_to_pick_a_blank_one(
        tmp_path: Path, folder: Path, phones: list[VirtualPhone]) -> None:
    phone = _start(tmp_path)
    phones.append(phone)
    for off, size in CALIBRATION.values():  # a phone someone else already wiped
        phone.storage.write(P.PART_USER, off, bytes(size))
    backup_phone(BackupRequest(port=phone.port, firmware_dir=folder, wait=5))
    phone.wait_finished(5)
    with pytest.raises(UsageError) as ei:
        restore_phone(RestoreRequest(dry_run=True))
    assert "no good calibration backup" in ei.value.message
    assert [s.verdict for s in list_sets(None)] == ["blank"]


# -- case 2 ----------------------------------------------------------------------------------
def test_rerun_rewrites_what_another_tool_put_back(tmp_path: Path, folder: Path,
                                                  phones: list[VirtualPhone]) -> None:
    phone = _start(tmp_path, f"disconnect@{IN_BOOTIMG}")
    phones.append(phone)
    old = {p: phone.storage.read(P.PART_USER, ADDR[p] - USER_BASE, 4096)
           for p in ("MBR", "EBR1", "UBOOT")}
    _interrupted_flash(folder, phone)
    journal = jr.load_journal(_cid())
    assert journal is not None and {"MBR", "UBOOT"} <= {v.partition for v in journal.verified}
    for part, data in old.items():  # another PC puts the old content back
        phone.storage.write(P.PART_USER, ADDR[part] - USER_BASE, data)
    result = flash(_req(folder, phone))
    assert not _image_differs(phone, folder)
    resumed = {p.partition for p in result.partitions if p.resumed}
    assert not resumed & set(old) and "PRELOADER" in resumed


def test_only_boot_after_an_interrupted_run_writes_boot(tmp_path: Path, folder: Path,
                                                       phones: list[VirtualPhone]) -> None:
    phone = _start(tmp_path, f"disconnect@{IN_RECOVERY}")
    phones.append(phone)
    _interrupted_flash(folder, phone)
    journal = jr.load_journal(_cid())
    assert journal is not None and "BOOTIMG" in {v.partition for v in journal.verified}
    boot_at = ADDR["BOOTIMG"] - USER_BASE
    phone.storage.write(P.PART_USER, boot_at, b"OLD!" * 1024)  # another tool wrote boot
    result = flash(_req(folder, phone, only=["boot"], backup=False))
    log = phone.wait_finished(5)
    boot = (folder / "boot.img").read_bytes()
    assert [(p.partition, p.resumed) for p in result.partitions] == [("BOOTIMG", False)]
    assert log.bytes_written >= len(boot)
    assert phone.storage.read(P.PART_USER, boot_at, len(boot)) == boot


def test_fresh_ignores_the_journal(tmp_path: Path, folder: Path,
                                   phones: list[VirtualPhone]) -> None:
    phone = _start(tmp_path, f"disconnect@{IN_BOOTIMG}")
    phones.append(phone)
    _interrupted_flash(folder, phone)
    result = flash(_req(folder, phone, fresh=True))
    assert not any(p.resumed for p in result.partitions)
    assert not _image_differs(phone, folder)


# -- case 3 ----------------------------------------------------------------------------------
def test_restore_refuses_a_partition_the_layout_moved_or_lost(
        tmp_path: Path, folder: Path, phones: list[VirtualPhone]) -> None:
    phone = _start(tmp_path)
    phones.append(phone)
    factory = _calibration(phone)
    made = backup_phone(BackupRequest(port=phone.port, firmware_dir=folder, wait=5))
    phone.wait_finished(5)
    rows = {name: (pos, size, off) for pos, name, size, off in _pmt_rows(phone)}
    pmt_before = phone.storage.read(P.PART_USER, PMT_AT, 8 + 88 * len(rows))

    # the phone's table no longer has PROTECT_S (renamed in place, as another layout would)
    pos = rows["PROTECT_S"][0]
    phone.storage.write(P.PART_USER, PMT_AT + pos, b"PROTECT_X".ljust(64, b"\0"))
    wiped = {n: bytes(size) for n, (_off, size) in CALIBRATION.items()}
    for n, (off, _size) in CALIBRATION.items():
        phone.storage.write(P.PART_USER, off, wiped[n])
    with pytest.raises(ValidationError) as ei:
        restore_phone(RestoreRequest(set_ref=made.set_name, port=phone.port,
                                     firmware_dir=folder, wait=5))
    assert "PROTECT_S" in ei.value.message and "--allow-layout-mismatch" in ei.value.hint
    assert phone.wait_finished(5).bytes_written == 0
    assert _calibration(phone) == wiped

    # NVRAM moved 1 MiB up: refused too
    phone.storage.write(P.PART_USER, PMT_AT, pmt_before)
    pos, size, off = rows["NVRAM"]
    phone.storage.write(P.PART_USER, PMT_AT + pos + 64, struct.pack("<QQ", size,
                                                                    off + 0x100000))
    with pytest.raises(ValidationError) as ei:
        restore_phone(RestoreRequest(set_ref=made.set_name, port=phone.port,
                                     firmware_dir=folder, wait=5))
    assert "NVRAM moved" in ei.value.message
    assert phone.wait_finished(5).bytes_written == 0
    assert _calibration(phone) == wiped

    # the explicit override restores NVRAM at its current place
    res = restore_phone(RestoreRequest(set_ref=made.set_name, port=phone.port,
                                       firmware_dir=folder, wait=5,
                                       allow_layout_mismatch=True))
    assert "NVRAM" in res.verified
    nv_off, nv_size = CALIBRATION["NVRAM"]
    keep = nv_size - 0x100000  # its last MiB now overlaps PROTECT_F, restored after it
    assert phone.storage.read(P.PART_USER, nv_off + 0x100000, keep) == factory["NVRAM"][:keep]


# -- case 7 ----------------------------------------------------------------------------------
def test_firmware_upgrade_leaves_preload_alone(tmp_path: Path, folder: Path,
                                               phones: list[VirtualPhone]) -> None:
    phone = _start(tmp_path)
    phones.append(phone)
    at = ADDR["PRELOAD"] - USER_BASE
    marker = b"lenovo preload apps " * 200
    phone.storage.write(P.PART_USER, at, marker)
    result = flash(_req(folder, phone, mode="firmware-upgrade"))
    assert "PRELOAD" not in result.formatted
    assert phone.storage.read(P.PART_USER, at, len(marker)) == marker
    assert not _image_differs(phone, folder)


def test_firmware_upgrade_without_a_journal_still_refuses_a_blank_phone(
        tmp_path: Path, folder: Path, phones: list[VirtualPhone]) -> None:
    """No romkit run erased the table (no journal): 8503, with a hint that is no dead end."""
    phone = _start(tmp_path)
    phones.append(phone)
    phone.storage.write(P.PART_USER, PMT_AT, bytes(4096))
    with pytest.raises(LayoutChangedError) as ei:
        flash(_req(folder, phone, mode="firmware-upgrade"))
    assert ei.value.spft_code == 8503
    assert "romkit restore" in ei.value.hint and "take `romkit backup`" not in ei.value.hint


# -- case 8 ----------------------------------------------------------------------------------
def _popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "romkit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def _interrupt_when(proc: subprocess.Popen[str], task: str, delay: float = 0.3
                    ) -> tuple[str, str]:
    """Wait for the JSON progress event starting `task`, then SIGINT; (stdout, stderr)."""
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "start" and ev.get("task") == task:
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            break
    else:
        proc.kill()
    out, err = proc.communicate(timeout=60)
    return out, "".join(seen) + err


def _resume_argv(stderr: str) -> list[str]:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("interrupted:")]
    assert len(lines) == 1, stderr
    hints = [ln for ln in stderr.splitlines() if ln.startswith("hint: resume with: ")]
    assert len(hints) == 1, stderr
    cmd = shlex.split(hints[0].removeprefix("hint: resume with: "))
    assert cmd[0] == "romkit"
    return cmd[1:]


def test_ctrl_c_during_flash_says_what_was_left_and_how_to_resume(
        tmp_path: Path, folder: Path, phones: list[VirtualPhone]) -> None:
    # the phone stalls inside BOOTIMG's write: SIGINT lands while the host waits for it
    phone = _start(tmp_path, f"stall@{IN_BOOTIMG}:2")
    phones.append(phone)
    proc = _popen("flash", str(folder), "--port", str(phone.port), "--wait", "5", "--json")
    _out, err = _interrupt_when(proc, "write:BOOTIMG")
    assert proc.returncode == 130, err[-2000:]
    line = next(ln for ln in err.splitlines() if ln.startswith("interrupted:"))
    print(line)
    assert "writing BOOTIMG" in line and str(jr.journal_path(_cid())) in line
    assert "Aborted" not in err and "Traceback" not in err
    journal = jr.load_journal(_cid())
    assert journal is not None and "UBOOT" in {v.partition for v in journal.verified}
    phone.wait_finished(10)

    argv = _resume_argv(err)
    assert argv[0] == "flash" and "--port" in argv and "--json" in argv
    res = subprocess.run([sys.executable, "-m", "romkit", *argv], capture_output=True,
                         text=True, env=dict(os.environ), timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not _image_differs(phone, folder)


def test_ctrl_c_during_restore_names_the_set_in_the_resume_command(
        tmp_path: Path, folder: Path, phones: list[VirtualPhone]) -> None:
    phone = _start(tmp_path, "stall@1000:2")
    phones.append(phone)
    factory = _calibration(phone)
    made = backup_phone(BackupRequest(port=phone.port, firmware_dir=folder, wait=5))
    phone.wait_finished(5)
    proc = _popen("restore", "--port", str(phone.port), "--firmware", str(folder), "--wait",
                  "5", "--json")
    _out, err = _interrupt_when(proc, "restore")
    assert proc.returncode == 130, err[-2000:]
    line = next(ln for ln in err.splitlines() if ln.startswith("interrupted:"))
    assert "restoring NVRAM" in line and made.path in line
    phone.wait_finished(10)
    argv = _resume_argv(err)
    assert made.set_name in argv
    res = subprocess.run([sys.executable, "-m", "romkit", *argv], capture_output=True,
                         text=True, env=dict(os.environ), timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert _calibration(phone) == factory


def test_ctrl_c_during_backup_and_readback(tmp_path: Path, folder: Path,
                                           phones: list[VirtualPhone]) -> None:
    """Reads are slowed to 200 kB/s (sim `rate=`) so SIGINT lands mid-read."""
    phone = _start(tmp_path, "rate=200000")
    phones.append(phone)
    proc = _popen("backup", "--port", str(phone.port), "--firmware", str(folder), "--wait",
                  "5", "--json")
    _out, err = _interrupt_when(proc, "backup")
    assert proc.returncode == 130, err[-2000:]
    argv = _resume_argv(err)
    assert argv[0] == "backup" and str(folder) in argv
    line = next(ln for ln in err.splitlines() if ln.startswith("interrupted:"))
    assert "no backup set was completed" in line
    assert list_sets(None) == []  # the partial set is never listed

    phone.stop()  # replug: the DA of a real phone may still be mid-transfer too
    phone = _start(tmp_path, "rate=200000", name="phone")
    phones.append(phone)
    dump = tmp_path / "dump"
    proc = _popen("readback", "NVRAM", str(dump), "--port", str(phone.port), "--firmware",
                  str(folder), "--wait", "5", "--json")
    _out, err = _interrupt_when(proc, "readback")
    assert proc.returncode == 130, err[-2000:]
    line = next(ln for ln in err.splitlines() if ln.startswith("interrupted:"))
    assert "reading NVRAM" in line
    assert not dump.exists() or not any(dump.iterdir())  # no partial file, no temp file
    assert _resume_argv(err)[:3] == ["readback", "NVRAM", str(dump)]
