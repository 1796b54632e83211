"""The flash engine against the virtual S820 over a real pty: whole runs, byte-exact checks.

Expected bytes always come from the image files on disk (and, for the preloader, from its
BOOT1 wrapping), never from what the engine reports; the phone's storage is read directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from romkit import paths
from romkit.device import protocol as P
from romkit.errors import DeviceError, DramInitError, LayoutChangedError, ValidationError
from romkit.flash import journal as jr
from romkit.flash.backup import find_set
from romkit.flash.engine import FlashRequest, flash
from romkit.flash.plan import PlanOptions
from romkit.flash.tools import (
    BackupRequest,
    ReadbackRequest,
    RestoreRequest,
    backup_phone,
    readback,
    restore_phone,
)
from romkit.sim import s820
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.faults import FaultPlan
from romkit.sim.phone import VirtualPhone
from romkit.sim.sample_firmware import IMAGES, PRELOADER_NAME, build_s820_folder

SCATTER = dict((n.removeprefix("__NODL_"), a) for n, a in s820.LAYOUT)
FILES = {part: file for file, part, _ in IMAGES} | {"MBR": "MBR", "EBR1": "EBR1",
                                                     "EBR2": "EBR2"}
NVRAM_USER = SCATTER["NVRAM"] - 0x600000
NVRAM_SIZE = SCATTER["PROTECT_F"] - SCATTER["NVRAM"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_s820_folder(tmp_path_factory.mktemp("fw13"), preloader=preloader_s820(2013),
                             da=da_s820())


def _phone(tmp_path: Path, **kw: object) -> Iterator[VirtualPhone]:
    phone = VirtualPhone(tmp_path / "phone", **kw)  # type: ignore[arg-type]
    phone.start()
    try:
        yield phone
    finally:
        phone.stop()


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[VirtualPhone]:
    yield from _phone(tmp_path, year=2013)


def _req(folder: Path, phone: VirtualPhone, **opts: object) -> FlashRequest:
    return FlashRequest(firmware_dir=folder, port=phone.port, wait=5,
                        options=PlanOptions(**opts))  # type: ignore[arg-type]


def _user(scatter: dict[str, int], name: str) -> int:
    return scatter[name] - 0x600000


def assert_images_on_phone(phone: VirtualPhone, folder: Path,
                           scatter: dict[str, int] = SCATTER,
                           names: list[str] | None = None) -> None:
    """Every image file equals the phone's bytes at its scatter address."""
    for part, file in FILES.items():
        if names is not None and part not in names:
            continue
        want = (folder / file).read_bytes()
        got = phone.storage.read(P.PART_USER, _user(scatter, part), len(want))
        assert got == want, f"{part} differs on the phone"
    if names is None or "PRELOADER" in names:
        # BOOT1 layout checked field by field (as test_preloader does), not by re-running
        # the to_boot1_image the engine itself uses: EMMC_BOOT at 0 pointing at BRLYT at
        # 0x200, whose boot region is 0x800, where the raw preloader sits.
        raw = (folder / PRELOADER_NAME).read_bytes()
        boot1 = phone.storage.read(P.PART_BOOT1, 0, 0x800 + len(raw))
        assert boot1[:9] == b"EMMC_BOOT" and struct.unpack_from("<I", boot1, 0x10)[0] == 0x200
        assert boot1[0x200:0x205] == b"BRLYT"
        assert struct.unpack_from("<I", boot1, 0x20C)[0] == 0x800
        assert boot1[0x800:] == raw, "PRELOADER differs on the phone"


def _calibration(phone: VirtualPhone) -> bytes:
    return phone.storage.read(P.PART_USER, NVRAM_USER, NVRAM_SIZE)


def test_download_only_full_run(phone: VirtualPhone, folder: Path) -> None:
    nvram_before = _calibration(phone)
    assert b"IMEI1=" + s820.SYNTHETIC_IMEI[0].encode() in nvram_before
    events: list[dict] = []
    result = flash(_req(folder, phone), lambda e: events.append(e.to_dict()))
    assert_images_on_phone(phone, folder)
    assert _calibration(phone) == nvram_before
    assert {p.partition for p in result.partitions} == set(FILES) | {"PRELOADER"}
    assert all(p.verified and not p.resumed for p in result.partitions)
    boot = (folder / "boot.img").read_bytes()
    row = next(p for p in result.partitions if p.partition == "BOOTIMG")
    assert row.sha256 == hashlib.sha256(boot).hexdigest() and row.sum16 == sum(boot) & 0xFFFF
    # calibration backup taken first, holding the phone's own NVRAM
    bset = find_set(result.backup_set, s820.PART_2013.cid)
    assert bset.file_of(bset.entry("NVRAM")).read_bytes() == nvram_before  # type: ignore[arg-type]
    kinds = [e["label"] for e in events if e["event"] == "info"]
    assert kinds.index("plan") < next(i for i, k in enumerate(kinds) if "calibration saved" in k)
    assert any(e["task"] == "flash" and e["event"] == "update" and "mb_per_s" in e.get("data", {})
               for e in events)
    journal = json.loads(jr.journal_path(s820.PART_2013.cid).read_text())
    assert journal["complete"] is True
    log = phone.wait_finished(5)
    assert log.finish_mode == 0


def test_2014_phone_with_2013_preloader_is_refused_before_any_write(
        tmp_path: Path, folder: Path) -> None:
    # a 2014 preloader in the cache: the hint should point at it
    cached = paths.cache_dir() / "downloads" / "preloader_s820_2014.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(preloader_s820(2014))
    gen = _phone(tmp_path, year=2014)
    phone = next(gen)
    try:
        boot1 = phone.storage.read(P.PART_BOOT1, 0, 64 * 1024)
        with pytest.raises(DramInitError) as ei:
            flash(_req(folder, phone))
        exc = ei.value
        assert exc.spft_code == 4032 and exc.exit_code == 4
        assert "SIM14H" in exc.hint and "romkit prepare --device-year 2014" in exc.hint
        assert str(cached) in exc.hint
        log = phone.wait_finished(5)
        assert log.bytes_written == 0 and not log.transfers
        assert phone.storage.read(P.PART_BOOT1, 0, 64 * 1024) == boot1
        assert not (paths.data_dir() / "backups").exists()

        # the same through the CLI: exit 4, code and hint on stderr
        res = subprocess.run([sys.executable, "-m", "romkit", "flash", str(folder), "--port",
                              str(phone.port), "--wait", "5"], capture_output=True, text=True,
                             env=dict(os.environ), timeout=60)
        assert res.returncode == 4, res.stderr
        assert "4032" in res.stderr and "--device-year 2014" in res.stderr
    finally:
        gen.close()


@pytest.fixture(scope="module")
def moved_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The sample firmware with CACHE moved 1 MiB up: a changed layout."""
    folder = build_s820_folder(tmp_path_factory.mktemp("fwmoved"),
                               preloader=preloader_s820(2013), da=da_s820())
    scatter = next(folder.glob("*_scatter*.txt"))
    old = f"CACHE 0x{SCATTER['CACHE']:x}"
    text = scatter.read_text()
    assert old in text
    scatter.write_text(text.replace(old, f"CACHE 0x{SCATTER['CACHE'] + 0x100000:x}"))
    return folder, {**SCATTER, "CACHE": SCATTER["CACHE"] + 0x100000}


def test_layout_changed_refused_then_firmware_upgrade(
        phone: VirtualPhone, moved_folder: tuple[Path, dict[str, int]]) -> None:
    folder, layout = moved_folder
    nvram_before = _calibration(phone)
    with pytest.raises(LayoutChangedError) as ei:
        flash(_req(folder, phone))
    assert ei.value.spft_code == 8038 and "8502" in ei.value.message
    assert "--mode firmware-upgrade" in ei.value.hint
    log = phone.wait_finished(5)
    assert log.bytes_written == 0

    result = flash(_req(folder, phone, mode="firmware-upgrade"))
    assert_images_on_phone(phone, folder, layout)
    assert result.pmt_written and result.backup_set
    assert set(result.restored) == {"NVRAM", "PROTECT_F", "PROTECT_S", "PRO_INFO", "SECCFG"}
    assert _calibration(phone) == nvram_before  # IMEI survived the format
    # the phone's PMT now describes the new layout (parsed here by hand)
    raw = phone.storage.read(P.PART_USER, 0x100000, 8 + 64 * 88)
    magic, count = struct.unpack_from("<4sI", raw)
    assert magic == b"PTv1"
    rows = {struct.unpack_from("<64sQQQ", raw, 8 + 88 * i)[0].rstrip(b"\0").decode():
            struct.unpack_from("<64sQQQ", raw, 8 + 88 * i)[1:3] for i in range(count)}
    assert rows["CACHE"][1] == layout["CACHE"]
    assert rows["ANDROID"] == (layout["CACHE"] - layout["ANDROID"], layout["ANDROID"])
    # and a download-only run is accepted again
    phone.wait_finished(5)
    again = flash(_req(folder, phone, only=["boot"], backup=False))
    assert [p.partition for p in again.partitions] == ["BOOTIMG"]


def test_format_all_with_backup_then_restore(phone: VirtualPhone, folder: Path,
                                             tmp_path: Path) -> None:
    nvram_before = _calibration(phone)
    protect_f = phone.storage.read(P.PART_USER, _user(SCATTER, "PROTECT_F"), 4096)
    result = flash(_req(folder, phone, mode="format-all"))
    assert result.formatted == ["(user area)"] and result.backup_set
    assert any("romkit restore" in w for w in result.warnings)
    assert_images_on_phone(phone, folder)
    assert _calibration(phone) == bytes(NVRAM_SIZE)  # erased, as the mode says
    phone.wait_finished(5)

    dry = restore_phone(RestoreRequest(set_ref=result.backup_set, dry_run=True))
    assert dry.dry_run and {r.name for r in dry.ranges} >= {"NVRAM", "PRO_INFO"}
    assert _calibration(phone) == bytes(NVRAM_SIZE)

    res = restore_phone(RestoreRequest(set_ref=result.backup_set, port=phone.port,
                                       firmware_dir=folder, wait=5))
    assert set(res.verified) == {"NVRAM", "PROTECT_F", "PROTECT_S", "PRO_INFO", "SECCFG"}
    assert _calibration(phone) == nvram_before
    assert phone.storage.read(P.PART_USER, _user(SCATTER, "PROTECT_F"), 4096) == protect_f


def test_backup_and_readback_commands(phone: VirtualPhone, folder: Path,
                                      tmp_path: Path) -> None:
    b = backup_phone(BackupRequest(port=phone.port, firmware_dir=folder, wait=5))
    assert {r.name for r in b.ranges} == {"NVRAM", "PROTECT_F", "PROTECT_S", "PRO_INFO",
                                          "SECCFG"}
    nv = Path(b.path) / "NVRAM.bin"
    assert nv.read_bytes() == _calibration(phone)
    phone.wait_finished(5)

    out = tmp_path / "dump"
    r = readback(ReadbackRequest(names=["NVRAM,PRELOADER"], out_dir=out, port=phone.port,
                                 firmware_dir=folder, wait=5))
    nv_dump = (out / "NVRAM.bin").read_bytes()
    assert nv_dump == _calibration(phone)
    assert r.ranges[0].sha256 == hashlib.sha256(nv_dump).hexdigest()
    pre = (out / "PRELOADER.bin").read_bytes()
    assert len(pre) == s820.BOOT_SIZE
    assert pre == phone.storage.read(P.PART_BOOT1, 0, s820.BOOT_SIZE)


def test_restore_refuses_another_phones_set(tmp_path: Path, folder: Path) -> None:
    gen = _phone(tmp_path / "a", year=2013)
    phone = next(gen)
    try:
        b = backup_phone(BackupRequest(port=phone.port, firmware_dir=folder, wait=5))
    finally:
        gen.close()
    other = bytes(s820.PART_2013.cid[:9]) + b"\x77" * 7  # same part, another unit
    gen = _phone(tmp_path / "b", year=2013, memory_id=other)
    phone = next(gen)
    try:
        before = _calibration(phone)
        with pytest.raises(ValidationError):
            restore_phone(RestoreRequest(set_ref=b.set_name, port=phone.port,
                                         firmware_dir=folder, wait=5))
        assert _calibration(phone) == before
    finally:
        gen.close()


@pytest.mark.parametrize("fault", ["corrupt@200000", "nack@3", "drop@150000",
                                   "stall@300000:0.3"])
def test_link_faults_are_retried_to_success(tmp_path: Path, folder: Path, fault: str) -> None:
    gen = _phone(tmp_path, year=2013, faults=FaultPlan.parse([fault]))
    phone = next(gen)
    try:
        result = flash(_req(folder, phone, backup=False))
        assert_images_on_phone(phone, folder)
        assert all(p.verified for p in result.partitions)
        log = phone.wait_finished(5)
        assert log.faults_fired == [fault]
        assert sum(t.retries for t in log.transfers) >= (0 if fault.startswith("stall") else 1)
    finally:
        gen.close()


def test_disconnect_mid_write_then_rerun_resumes(tmp_path: Path, folder: Path) -> None:
    # the write stream: PRELOADER, MBR, EBR1, UBOOT (~140 KiB), then BOOTIMG (1 MiB)
    gen = _phone(tmp_path, year=2013, faults=FaultPlan.parse(["disconnect@600000"]))
    phone = next(gen)
    try:
        with pytest.raises(DeviceError) as ei:
            flash(_req(folder, phone))
        err = ei.value
        assert "BOOTIMG" in err.message and err.details["partition"] == "BOOTIMG"
        assert "re-run" in err.hint
        done = ["PRELOADER", "MBR", "EBR1", "UBOOT"]
        assert_images_on_phone(phone, folder, names=done)  # verified ones are intact
        journal = jr.load_journal(s820.PART_2013.cid)
        assert journal is not None and [v.partition for v in journal.verified] == done
        phone.wait_finished(5)

        result = flash(_req(folder, phone))
        resumed = [p.partition for p in result.partitions if p.resumed]
        assert resumed == done
        assert_images_on_phone(phone, folder)
        assert jr.load_journal(s820.PART_2013.cid) is None  # complete now
    finally:
        gen.close()


def test_cli_flash_json(phone: VirtualPhone, folder: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "romkit", "flash", str(folder), "--port",
                          str(phone.port), "--wait", "5", "--only", "boot,lk", "--json"],
                         capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert sorted(p["partition"] for p in doc["partitions"]) == ["BOOTIMG", "UBOOT"]
    assert all(p["verified"] for p in doc["partitions"])
    assert_images_on_phone(phone, folder, names=["BOOTIMG", "UBOOT"])


class _BadCells:
    """Flips a stored byte each time a write of `target` ends: an eMMC that stores wrong data
    after acknowledging it. Runs from the progress callback, i.e. between write and verify."""

    def __init__(self, phone: VirtualPhone, target: str, offset: int, times: int) -> None:
        self.phone, self.target, self.offset, self.left = phone, target, offset, times

    def __call__(self, event: object) -> None:
        ev = event.to_dict()  # type: ignore[attr-defined]
        if ev["event"] == "end" and ev["task"] == f"write:{self.target}" and self.left:
            self.left -= 1
            where = _user(SCATTER, self.target) + self.offset
            old = self.phone.storage.read(P.PART_USER, where, 1)
            self.phone.storage.write(P.PART_USER, where, bytes([old[0] ^ 0x40]))


def test_verify_catches_silent_corruption_and_rewrites(phone: VirtualPhone,
                                                       folder: Path) -> None:
    result = flash(_req(folder, phone, only=["boot", "recovery"], backup=False),
                   _BadCells(phone, "BOOTIMG", 0x1234, times=1))
    row = next(p for p in result.partitions if p.partition == "BOOTIMG")
    assert row.verified and row.rewrites == 1
    assert_images_on_phone(phone, folder, names=["BOOTIMG", "RECOVERY"])


def test_persistent_verify_failure_stops_with_the_offset(phone: VirtualPhone,
                                                         folder: Path) -> None:
    with pytest.raises(DeviceError) as ei:
        flash(_req(folder, phone, only=["lk", "boot", "recovery"], backup=False),
              _BadCells(phone, "BOOTIMG", 0x1234, times=5))
    err = ei.value
    where = _user(SCATTER, "BOOTIMG") + 0x1234
    assert f"0x{where:X}" in err.message and err.details["offset"] == where
    assert "BOOTIMG" in err.message
    assert_images_on_phone(phone, folder, names=["UBOOT"])  # the verified one is intact
    journal = jr.load_journal(s820.PART_2013.cid)
    assert journal is not None and [v.partition for v in journal.verified] == ["UBOOT"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "romkit", *args], capture_output=True,
                          text=True, env=dict(os.environ), timeout=60)


def test_cli_backup_restore_readback(phone: VirtualPhone, folder: Path, tmp_path: Path) -> None:
    res = _cli("backup", "--port", str(phone.port), "--firmware", str(folder), "--wait", "5",
               "--json")
    assert res.returncode == 0, res.stderr
    made = json.loads(res.stdout)
    nv = next(r for r in made["ranges"] if r["name"] == "NVRAM")
    assert nv["sha256"] == hashlib.sha256(_calibration(phone)).hexdigest()
    phone.wait_finished(5)

    res = _cli("restore", "--list", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)[0]["name"] == made["set_name"]

    phone.storage.write(P.PART_USER, NVRAM_USER, b"\x00" * 64)  # damage the IMEI line
    res = _cli("restore", "--port", str(phone.port), "--firmware", str(folder), "--wait", "5")
    assert res.returncode == 0, res.stderr
    assert f"restored {made['set_name']}" in res.stdout
    assert hashlib.sha256(_calibration(phone)).hexdigest() == nv["sha256"]
    phone.wait_finished(5)

    out = tmp_path / "dump"
    res = _cli("readback", "LOGO", str(out), "--port", str(phone.port), "--firmware",
               str(folder), "--wait", "5")
    assert res.returncode == 0, res.stderr
    logo = (out / "LOGO.bin").read_bytes()
    assert logo == phone.storage.read(P.PART_USER, _user(SCATTER, "LOGO"), len(logo))
    assert hashlib.sha256(logo).hexdigest() in res.stdout
    res = _cli("readback", str(out), "--port", str(phone.port))
    assert res.returncode == 2


def test_dry_run_with_port_checks_the_phone_and_writes_nothing(phone: VirtualPhone,
                                                               folder: Path) -> None:
    req = _req(folder, phone, mode="firmware-upgrade")
    req.dry_run = True
    result = flash(req)
    assert result.dry_run and result.plan.device is not None
    assert result.plan.device.cid == s820.PART_2013.cid.hex()
    assert [o.kind for o in result.plan.operations][-1] == "restore"
    log = phone.wait_finished(5)
    assert log.bytes_written == 0 and log.finish_mode == 0
    assert not (paths.data_dir() / "backups").exists()


def test_firmware_for_another_chip_is_refused_before_the_da_is_sent(
        tmp_path: Path, folder: Path, phone: VirtualPhone) -> None:
    # an old-format scatter names its platform only in the file name: make it an MT6582 load
    shutil.copytree(folder.parent, tmp_path / "pkg")
    other = tmp_path / "pkg" / folder.name
    scatter = other / "MT6589_Android_scatter_emmc.txt"
    scatter.rename(other / "MT6582_Android_scatter_emmc.txt")
    with pytest.raises(DeviceError) as ei:
        flash(_req(other, phone))
    assert ei.value.spft_code == 8200 and ei.value.exit_code == 4
    assert "0x6582" in ei.value.message and "0x6583" in ei.value.message
    log = phone.wait_finished(5)
    assert not log.da_loads and log.bytes_written == 0
