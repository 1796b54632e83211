"""The engine's real flows against every reading of the protocol, over both cables.

Why: the phone's contested behaviours (romkit/sim/dialects.py, docs/SIM.md) are the places
where a real S820 may not do what we guessed; the engine must succeed whichever reading the
phone follows (issue 14), and over the pty and the TCP link alike (issue 20). So every flow a
user runs — `flash` in each mode, `readback`, `backup` + `restore` — runs against the virtual
phone for every dialect in `DIALECTS` (a new dialect is covered without touching this file)
and for both links.

Independent checks only: the phone's eMMC is read directly (not through the engine), images
are compared with the files on disk (`assert_images_on_phone`), calibration with the bytes the
phone had before the first flow, and each session must end with FINISH and no protocol
violation in the phone's own log. One phone per (dialect, link) serves all its flows, in a
fixed order, like a technician working on one handset; the images are small (scale 0.1) —
the calibration partitions keep their real ~29 MiB, which is what dominates the run time:
about 300 MB cross the link per combo (backups, restores and their read-back verification),
and the pty moves them through the kernel's tty layer in pieces of 4 KiB.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from test_flash_engine import SCATTER, assert_images_on_phone

from romkit.device import protocol as P
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
from romkit.sim.dialects import DIALECTS
from romkit.sim.phone import VirtualPhone
from romkit.sim.sample_firmware import build_s820_folder

LINKS = ("pty", "tcp")
COMBOS = [(dialect, link) for dialect in DIALECTS for link in LINKS]
USER_BASE = 0x600000  # linear scatter address → user-area offset (mtk-protocol.md §9)
CALIBRATION = tuple(s820.CALIBRATION)
T = TypeVar("T")


def _user(name: str) -> int:
    return SCATTER[name] - USER_BASE


def _span(name: str) -> tuple[int, int]:
    """(user-area offset, size) of a partition of the synthetic layout, from the scatter."""
    names = [n.removeprefix("__NODL_") for n, _ in s820.LAYOUT]
    nxt = names[names.index(name) + 1]
    return _user(name), SCATTER[nxt] - SCATTER[name]


def calibration(phone: VirtualPhone) -> dict[str, bytes]:
    """The phone's calibration partitions, read straight from its eMMC."""
    return {name: phone.storage.read(P.PART_USER, *_span(name)) for name in CALIBRATION}


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two builds of the same layout whose images differ byte for byte: each flash changes
    what is on the phone, so the image check can fail."""
    pre, da = preloader_s820(2013), da_s820()
    a = build_s820_folder(tmp_path_factory.mktemp("fw-a"), preloader=pre, da=da,
                          image_scale=0.1)
    b = build_s820_folder(tmp_path_factory.mktemp("fw-b"), preloader=pre, da=da,
                          build_id="DEMO_S820_ROW_S125", image_scale=0.1)
    assert (a / "boot.img").read_bytes() != (b / "boot.img").read_bytes()
    return a, b


class Handset:
    """One virtual phone and what it held at the factory, shared by one combo's flows."""

    def __init__(self, phone: VirtualPhone, dialect: str, link: str, home: Path) -> None:
        self.phone = phone
        self.home = home
        self.dialect = DIALECTS[dialect]
        self.link = link
        self.factory = calibration(phone)
        imei = f"IMEI1={s820.SYNTHETIC_IMEI[0]}".encode()
        assert imei in self.factory["NVRAM"], "the factory NVRAM holds no IMEI"

    @property
    def port(self) -> str:
        port = self.phone.wait_port(5)
        assert port is not None, "the virtual phone is not plugged in"
        return port

    def run(self, flow: Callable[[str], T]) -> T:
        """Run one flow on the phone's current port; the phone must see a clean session."""
        result = flow(self.port)
        log = self.phone.wait_finished(10)
        assert log.outcome == "finish" and log.violation is None, (log.outcome, log.violation)
        # one entry per port the session spoke on (a pty number may be reused, so the names
        # can repeat); FINISH arrived, so after a re-enumeration it came on the new port
        if self.dialect.usb_speed == "full-reenumerate":
            assert len(log.ports) == 2, f"no re-enumeration in the session: {log.ports}"
        else:
            assert len(log.ports) == 1, log.ports
        return result

    def assert_factory_calibration(self) -> None:
        now = calibration(self.phone)
        for name in CALIBRATION:
            assert now[name] == self.factory[name], f"{name} differs from the factory bytes"


@pytest.fixture(scope="module", params=COMBOS, ids=[f"{d}-{link}" for d, link in COMBOS])
def handset(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Handset]:
    """One phone per combo, with its own ROMKIT_HOME for as long as it lives: the phone
    announces its ports (romkit/virtualports.py) where the engine looks for them, so both
    must see the same home; and one combo's backups and journals never meet another's."""
    dialect, link = request.param
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp(f"home-{dialect}-{link}")
        mp.setenv("ROMKIT_HOME", str(home))
        mp.delenv("ROMKIT_CATALOG_URL", raising=False)
        phone = VirtualPhone(home / "phone", year=2013, dialect=dialect, link=link)
        phone.start()
        try:
            yield Handset(phone, dialect, link, home)
        finally:
            phone.stop()


@pytest.fixture(autouse=True)
def romkit_home(handset: Handset) -> Path:
    """Overrides conftest's per-test home: a combo's flows share its phone's home."""
    return handset.home


def _flash(folder: Path, port: str, **opts: object) -> object:
    return flash(FlashRequest(firmware_dir=folder, port=port, wait=5,
                              options=PlanOptions(**opts)))  # type: ignore[arg-type]


def test_download_only(handset: Handset, firmware: tuple[Path, Path]) -> None:
    folder, _ = firmware
    result = handset.run(lambda port: _flash(folder, port))
    assert_images_on_phone(handset.phone, folder)
    handset.assert_factory_calibration()
    assert result.backup_set  # type: ignore[attr-defined]


def test_readback(handset: Handset, firmware: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = firmware
    out = tmp_path / "dump"
    result = handset.run(lambda port: readback(ReadbackRequest(
        names=["NVRAM,PRELOADER,UBOOT"], out_dir=out, port=port, firmware_dir=folder,
        wait=5)))
    phone = handset.phone
    nvram = (out / "NVRAM.bin").read_bytes()
    assert nvram == handset.factory["NVRAM"]
    pre = (out / "PRELOADER.bin").read_bytes()
    assert pre == phone.storage.read(P.PART_BOOT1, 0, s820.BOOT_SIZE)
    lk = (out / "UBOOT.bin").read_bytes()  # a partition the first flow wrote
    assert lk == phone.storage.read(P.PART_USER, *_span("UBOOT"))
    image = (folder / "lk.bin").read_bytes()
    assert lk[:len(image)] == image
    hashes = {r.name: r.sha256 for r in result.ranges}
    assert hashes["NVRAM"] == hashlib.sha256(nvram).hexdigest()


def test_backup_then_restore(handset: Handset, firmware: tuple[Path, Path]) -> None:
    folder, _ = firmware
    phone = handset.phone
    b = handset.run(lambda port: backup_phone(BackupRequest(port=port, firmware_dir=folder,
                                                            wait=5)))
    for name in CALIBRATION:
        assert (Path(b.path) / f"{name}.bin").read_bytes() == handset.factory[name], name
    # the world damages the phone between two sessions: restore must bring it all back
    for name in CALIBRATION:
        offset, size = _span(name)
        phone.storage.write(P.PART_USER, offset, b"\xee" * min(size, 0x20000))
    assert calibration(phone)["NVRAM"] != handset.factory["NVRAM"]
    res = handset.run(lambda port: restore_phone(RestoreRequest(
        set_ref=b.set_name, port=port, firmware_dir=folder, wait=5)))
    assert set(res.verified) == set(CALIBRATION)
    handset.assert_factory_calibration()


def test_firmware_upgrade(handset: Handset, firmware: tuple[Path, Path]) -> None:
    _, newer = firmware
    result = handset.run(lambda port: _flash(newer, port, mode="firmware-upgrade"))
    assert_images_on_phone(handset.phone, newer)
    assert set(result.restored) == set(CALIBRATION)  # type: ignore[attr-defined]
    handset.assert_factory_calibration()  # formatted, then put back


def test_format_all_then_restore(handset: Handset, firmware: tuple[Path, Path]) -> None:
    folder, _ = firmware
    phone = handset.phone
    result = handset.run(lambda port: _flash(folder, port, mode="format-all"))
    assert_images_on_phone(phone, folder)
    offset, size = _span("NVRAM")
    assert phone.storage.read(P.PART_USER, offset, size) == bytes(size)  # erased, as asked
    res = handset.run(lambda port: restore_phone(RestoreRequest(
        set_ref=result.backup_set, port=port, firmware_dir=folder,  # type: ignore[attr-defined]
        wait=5)))
    assert set(res.verified) == set(CALIBRATION)
    handset.assert_factory_calibration()
