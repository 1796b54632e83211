"""Soak: flash the virtual S820 over a real pty with random link faults, run after run.

Each iteration gives a fresh virtual phone a seeded random fault plan (corrupted bytes,
dropped bytes, NACKed packets, sometimes a disconnect mid-write, sometimes a short stall) and
a mode (download-only, or format-all, which erases calibration), then runs `flash` until it
succeeds (at most MAX_RUNS runs). Checked, independently of what the engine reports:

* every run ends verified or with a RomkitError carrying a message and a hint;
* after a failed run, every partition the journal lists as verified holds exactly its image
  bytes on the phone's eMMC (read straight from the simulator's storage);
* in every run, when the first format/write starts, a complete backup set holding the
  phone's *factory* calibration is on disk (checked from inside the progress callback), and
  the phone itself saw the calibration ranges read before its first format/write;
* the run that succeeds leaves every image on the phone, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from soaklib import seeded

from romkit import paths
from romkit.device import protocol as P
from romkit.errors import RomkitError
from romkit.firmware.preloader import to_boot1_image
from romkit.flash import journal as jr
from romkit.flash.engine import FlashRequest, flash
from romkit.flash.plan import PlanOptions
from romkit.flash.tools import RestoreRequest, restore_phone
from romkit.progress import ProgressEvent
from romkit.sim import s820
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.faults import FaultPlan
from romkit.sim.phone import VirtualPhone
from romkit.sim.sample_firmware import IMAGES, PRELOADER_NAME, build_s820_folder

pytestmark = pytest.mark.soak

MAX_RUNS = 4
PACKET = 64 * 1024
USER_BASE = P.MT6589_USER_OFFSET
ADDR = {n.removeprefix("__NODL_"): a for n, a in s820.LAYOUT}
FILES = {part: file for file, part, _ in IMAGES} | {"MBR": "MBR", "EBR1": "EBR1",
                                                     "EBR2": "EBR2"}
ORDER = [n.removeprefix("__NODL_") for n, _ in s820.LAYOUT]
CALIBRATION = {name: (ADDR[name] - USER_BASE, ADDR[ORDER[ORDER.index(name) + 1]] - ADDR[name])
               for name in s820.CALIBRATION}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_s820_folder(tmp_path_factory.mktemp("soak-fw"), preloader=preloader_s820(2013),
                             da=da_s820(), image_scale=0.5)


def _expected(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """partition -> (eMMC part, offset, bytes) computed from the files and the layout."""
    out = {part: (P.PART_USER, ADDR[part] - USER_BASE, (folder / file).read_bytes())
           for part, file in FILES.items()}
    out["PRELOADER"] = (P.PART_BOOT1, 0, to_boot1_image((folder / PRELOADER_NAME).read_bytes()))
    return out


def _on_phone(phone: VirtualPhone, expected: tuple[int, int, bytes]) -> bool:
    part, offset, data = expected
    return phone.storage.read(part, offset, len(data)) == data


def _calibration(phone: VirtualPhone) -> dict[str, bytes]:
    return {n: phone.storage.read(P.PART_USER, off, size)
            for n, (off, size) in CALIBRATION.items()}


def _complete_sets(cid: bytes | None) -> list[Path]:
    """Complete sets of the phone with `cid`, or of every phone (None)."""
    root = paths.data_dir() / "backups"
    if cid is not None:
        root = root / cid.hex()
    pattern = "*/manifest.json" if cid is not None else "*/*/manifest.json"
    return sorted(p.parent for p in root.glob(pattern)) if root.is_dir() else []


def _holds(set_dir: Path, calibration: dict[str, bytes]) -> bool:
    """Does this backup set hold exactly these calibration bytes (files checked against the
    manifest's sha256 too, so a damaged set does not count)?"""
    manifest = json.loads((set_dir / "manifest.json").read_text())
    entries = {e["name"]: e for e in manifest["entries"]}
    for name, data in calibration.items():
        entry = entries.get(name)
        if entry is None:
            return False
        stored = (set_dir / entry["file"]).read_bytes()
        if stored != data or hashlib.sha256(stored).hexdigest() != entry["sha256"]:
            return False
    return True


class _Watch:
    """Progress callback: at the first format/write of a run, look at the backup store."""

    def __init__(self, cid: bytes, factory: dict[str, bytes]) -> None:
        self.cid, self.factory = cid, factory
        self.first_change: str | None = None
        self.backup_ok: bool | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if self.first_change is not None or event.kind != "start":
            return
        if event.task.startswith(("format:", "write:")):
            self.first_change = event.task
            self.backup_ok = any(_holds(s, self.factory) for s in _complete_sets(self.cid))


def _fault_plan(rng: random.Random, stream: int) -> FaultPlan:
    plan = FaultPlan(corrupt=sorted(rng.sample(range(stream), rng.randint(0, 3))),
                     drop=sorted(rng.sample(range(stream), rng.randint(0, 2))),
                     nack=sorted(rng.sample(range(1, stream // PACKET), rng.randint(0, 2))))
    if rng.random() < 0.6:
        plan.disconnect = rng.randrange(stream)
    if rng.random() < 0.2:
        plan.stall.append((rng.randrange(stream), 0.1))
    return plan


def _reads_before_first_change(log: object) -> set[str]:
    """Calibration partitions the phone saw read before its first write/format."""
    seen: set[str] = set()
    for t in log.transfers:  # type: ignore[attr-defined]
        if t.op in ("write", "format"):
            break
        if t.op == "read" and t.part == P.PART_USER:
            for name, (off, size) in CALIBRATION.items():
                if t.offset <= off and off + size <= t.offset + t.length:
                    seen.add(name)
    return seen


def test_flash_with_random_faults(soak_seed: int, folder: Path, tmp_path: Path) -> None:
    rng = random.Random(soak_seed)
    expected = _expected(folder)
    stream = sum(len(d) for _, _, d in expected.values())
    plan = _fault_plan(rng, stream)
    mode = rng.choice(("download-only", "download-only", "format-all"))
    cid = s820.PART_2013.cid
    phone = VirtualPhone(tmp_path / "phone", year=2013, faults=plan)
    phone.start()
    outcomes: list[str] = []
    try:
        with seeded(soak_seed, f"flash {mode} faults={plan.describe()}"):
            factory = _calibration(phone)
            for run in range(MAX_RUNS):
                before = _calibration(phone)
                watch = _Watch(cid, factory)
                request = FlashRequest(firmware_dir=folder, port=phone.port, wait=10,
                                       packet_size=PACKET, options=PlanOptions(
                                           mode=mode, erase_calibration_ok=True))
                try:
                    result = flash(request, watch)
                except RomkitError as exc:
                    outcomes.append(f"run {run}: {type(exc).__name__}: {exc.message}")
                    assert exc.message.strip() and exc.hint.strip(), "an error without a hint"
                    result = None
                log = phone.wait_finished(10)
                if watch.first_change is not None:
                    assert watch.backup_ok, f"run {run}: no backup of the factory " \
                                            f"calibration on disk at {watch.first_change}"
                    if before == factory:  # calibration still on the phone: read it first
                        assert _reads_before_first_change(log) == set(CALIBRATION), \
                            f"run {run}: the phone saw a write before all calibration reads"
                if result is not None:
                    outcomes.append(f"run {run}: ok")
                    assert all(p.verified for p in result.partitions)
                    break
                journal = jr.load_journal(cid)
                for v in journal.verified if journal else []:
                    assert _on_phone(phone, expected[v.partition]), \
                        f"run {run}: {v.partition} is journalled as verified but differs"
            else:
                pytest.fail(f"no success in {MAX_RUNS} runs: {outcomes}")
            print(f"seed={soak_seed} mode={mode} faults={plan.describe()} -> {outcomes}")
            bad = [name for name, exp in expected.items() if not _on_phone(phone, exp)]
            assert not bad, f"after {outcomes}: differs on the phone: {bad}"
            if mode == "download-only":
                assert _calibration(phone) == factory, "download-only changed calibration"
    finally:
        phone.stop()


# -- issue 15: every mode, every cut point, always back to images + factory calibration -------
#
# Three kinds of interruption per mode, each followed by re-running the same command (and,
# where the run's own hint says so, `romkit restore` with no set named):
#   cut      the phone drops off the bus at a random byte of the write stream, spread over
#            the image writes, the partition-table write and the calibration restore;
#   kill     `kill -9` of a real `python -m romkit flash` process at a random progress event
#            of a randomly chosen phase (backup, format, write, verify, PMT, restore);
#   reflash  a cut, then "another tool" puts old content back on the virtual eMMC (factory
#            tables and calibration, other bytes in every image range) before the rerun.
# Checked by reading the simulator's storage: every image byte-exact, every calibration
# partition equal to the bytes the phone had at the factory; after every failed run a backup
# set holding the factory calibration exists; backup sets are never deleted.
# Short form: one iteration per (mode, kind); `--soak`: 20.
MODES = ("download-only", "firmware-upgrade", "format-all")
PHASES = {"download-only": ("backup", "write:", "verify:"),
          "firmware-upgrade": ("backup", "format:", "write:", "verify:", "partition table:",
                               "calibration:"),
          "format-all": ("backup", "format:", "write:", "verify:", "partition table:")}
PMT_MIN = P.PMT_HEADER_SIZE + 5 * P.PMT_ENTRY_SIZE  # the table written is at least this long


def _iterations(config: pytest.Config) -> int:
    return 20 if config.getoption("--soak") else 1


def _request(folder: Path, phone: VirtualPhone, mode: str) -> FlashRequest:
    return FlashRequest(firmware_dir=folder, port=phone.port, wait=10, packet_size=PACKET,
                        options=PlanOptions(mode=mode))  # type: ignore[arg-type]


def _cut_position(rng: random.Random, mode: str, expected: dict[str, tuple[int, int, bytes]]
                  ) -> int:
    """A byte of the write stream: images, then the PMT, then the calibration restore."""
    images = sum(len(d) for _, _, d in expected.values())
    phases = ["images"] + (["pmt"] if mode != "download-only" else []) + (
        ["restore"] if mode == "firmware-upgrade" else [])
    phase = rng.choice(phases)
    if phase == "images":
        return rng.randrange(images)
    if phase == "pmt":
        return images + rng.randrange(PMT_MIN)
    return images + PMT_MIN + 4096 + rng.randrange(sum(s for _, s in CALIBRATION.values()))


def _all_set_dirs() -> set[Path]:
    """Every backup set folder, complete or not, of every phone."""
    root = paths.data_dir() / "backups"
    return {p for p in root.glob("*/*") if p.is_dir()} if root.is_dir() else set()


class _Story:
    """One phone's life through interruptions, reruns and the final checks."""

    def __init__(self, tmp: Path, folder: Path, mode: str, faults: FaultPlan) -> None:
        self.folder, self.mode, self.state = folder, mode, tmp
        self.expected = _expected(folder)
        self.phone = VirtualPhone(tmp, year=2013, faults=faults)
        self.phone.start()
        # one phone per data dir: sets are looked up for every CID, so the checks do not
        # depend on how the engine decodes the CID bytes
        self.factory = _calibration(self.phone)
        self.outcomes: list[str] = []
        self.sets_seen: set[Path] = set()
        self.factory_pmt = b""

    def check_safety_net(self, what: str) -> None:
        """After any interruption: whenever the phone's calibration is not the factory one, a
        set holding the factory calibration exists; no set ever vanished."""
        now = _all_set_dirs()
        assert self.sets_seen <= now, f"{what}: backup sets were deleted: {self.sets_seen - now}"
        self.sets_seen = now
        if _calibration(self.phone) != self.factory:  # erased or half-restored: must be kept
            assert any(_holds(s, self.factory) for s in _complete_sets(None)), \
                f"{what}: no backup set holds the factory calibration"

    def run_inprocess(self) -> bool:
        try:
            result = flash(_request(self.folder, self.phone, self.mode))
        except RomkitError as exc:
            assert exc.message.strip() and exc.hint.strip(), "an error without a hint"
            self.outcomes.append(f"{type(exc).__name__}: {exc.message[:80]}")
            self.phone.wait_finished(10)
            return False
        self.outcomes.append("ok")
        self.phone.wait_finished(10)
        if any("romkit restore" in w for w in result.warnings):
            res = restore_phone(RestoreRequest(port=self.phone.port, firmware_dir=self.folder,
                                               wait=10, packet_size=PACKET))
            self.outcomes.append(f"restore {res.set_name}")
            self.phone.wait_finished(10)
        return True

    def finish(self) -> None:
        for _ in range(3):
            if self.run_inprocess():
                break
            self.check_safety_net("rerun")
        else:
            pytest.fail(f"no successful rerun: {self.outcomes}")
        bad = [name for name, exp in self.expected.items() if not _on_phone(self.phone, exp)]
        assert not bad, f"after {self.outcomes}: differs on the phone: {bad}"
        got = _calibration(self.phone)
        assert got == self.factory, f"after {self.outcomes}: calibration differs: " \
            f"{[n for n in got if got[n] != self.factory[n]]}"
        self.check_safety_net("end")

    def replug(self) -> None:
        """Unplug and plug the phone back in (same eMMC). After `kill -9` of the host a real
        phone may sit in the DA mid-transfer until it is re-plugged; so does the virtual one."""
        self.phone.stop()
        self.phone = VirtualPhone(self.state, year=2013)
        self.phone.start()

    def stop(self) -> None:
        self.phone.stop()


def _put_old_content_back(story: _Story, rng: random.Random) -> None:
    """Another tool on another PC: factory tables and calibration, other images."""
    phone = story.phone
    for name, (off, _size) in CALIBRATION.items():
        phone.storage.write(P.PART_USER, off, story.factory[name])
    for part, (emmc, off, data) in story.expected.items():
        if part in ("MBR", "EBR1", "EBR2"):
            continue
        phone.storage.write(emmc, off, rng.randbytes(len(data)))
    phone.storage.write(P.PART_USER, ADDR["PMT"] - USER_BASE, story.factory_pmt)


@pytest.mark.parametrize("mode", MODES)
def test_cut_then_rerun(mode: str, folder: Path, tmp_path: Path,
                        request: pytest.FixtureRequest) -> None:
    expected = _expected(folder)
    for i in range(_iterations(request.config)):
        seed = 0xC07 + i
        rng = random.Random(seed)
        pos = _cut_position(rng, mode, expected)
        story = _Story(tmp_path / f"cut{i}", folder, mode,
                       FaultPlan(disconnect=pos))
        try:
            with seeded(seed, f"{mode} cut disconnect@{pos}"):
                if story.run_inprocess():
                    pytest.fail(f"disconnect@{pos} did not interrupt the run")
                story.check_safety_net("after the cut")
                story.finish()
        finally:
            story.stop()
        _reset_home()


@pytest.mark.parametrize("mode", MODES)
def test_reflashed_between_runs(mode: str, folder: Path, tmp_path: Path,
                                request: pytest.FixtureRequest) -> None:
    expected = _expected(folder)
    for i in range(_iterations(request.config)):
        seed = 0x2EF1 + i
        rng = random.Random(seed)
        pos = _cut_position(rng, mode, expected)
        story = _Story(tmp_path / f"reflash{i}", folder, mode, FaultPlan(disconnect=pos))
        story.factory_pmt = story.phone.storage.read(P.PART_USER, ADDR["PMT"] - USER_BASE,
                                                     0x10000)
        try:
            with seeded(seed, f"{mode} reflash after disconnect@{pos}"):
                assert not story.run_inprocess()
                _put_old_content_back(story, rng)
                story.finish()
        finally:
            story.stop()
        _reset_home()


@pytest.mark.parametrize("mode", MODES)
def test_host_killed_then_rerun(mode: str, folder: Path, tmp_path: Path,
                                request: pytest.FixtureRequest) -> None:
    for i in range(_iterations(request.config)):
        seed = 0x4B1 + i
        rng = random.Random(seed)
        phase = PHASES[mode][i % len(PHASES[mode])] if i else rng.choice(PHASES[mode])
        nth = rng.randrange(4)
        story = _Story(tmp_path / f"kill{i}", folder, mode, FaultPlan())
        try:
            with seeded(seed, f"{mode} kill -9 at event {nth} of {phase!r}"):
                killed = _kill_at(story, phase, nth)
                story.outcomes.append(f"killed at {killed}")
                story.replug()
                story.check_safety_net("after kill -9")
                story.finish()
        finally:
            story.stop()
        _reset_home()


def _kill_at(story: _Story, phase: str, nth: int) -> str:
    """Run `romkit flash` in a child and SIGKILL it at the nth progress event of `phase`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "romkit", "flash", str(story.folder), "--port",
         str(story.phone.port), "--mode", story.mode, "--wait", "10", "--packet-size",
         str(PACKET), "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ))
    assert proc.stderr is not None
    seen = 0
    where = "the end (the run finished first)"
    try:
        for line in proc.stderr:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if str(ev.get("task", "")).startswith(phase) and ev.get("event") in ("start",
                                                                                "update"):
                if seen == nth:
                    proc.send_signal(signal.SIGKILL)
                    where = f"{ev['task']} {ev.get('done')}"
                    break
                seen += 1
    finally:
        proc.wait(30)
        proc.stderr.close()
    return where


def _reset_home() -> None:
    """Each iteration is another phone history: forget journals and backup sets."""
    shutil.rmtree(paths.data_dir(), ignore_errors=True)
