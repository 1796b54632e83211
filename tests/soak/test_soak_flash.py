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
import random
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


def _complete_sets(cid: bytes) -> list[Path]:
    root = paths.data_dir() / "backups" / cid.hex()
    return sorted(p.parent for p in root.glob("*/manifest.json")) if root.is_dir() else []


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
