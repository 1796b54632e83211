"""The repair-shop station: several virtual phones flashed at once by child `romkit flash`
processes over real ptys. Every check reads the phones' storage directly and compares it with
the image files on disk; nothing is taken from the station's own report."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from romkit.errors import DeviceError
from romkit.locks import PhoneBusyError, phone_lock
from romkit.sim import s820
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.faults import FaultPlan
from romkit.sim.phone import VirtualPhone
from romkit.sim.sample_firmware import build_s820_folder
from romkit.station import StationRequest, run_station
from tests.clitools import run_cli
from tests.conftest import pty_only
from tests.test_flash_engine import assert_images_on_phone


def crc7(data: bytes) -> int:
    """JEDEC CRC7 (x^7 + x^3 + 1), written here from the polynomial, for valid test CIDs."""
    crc = 0
    for byte in data:
        for bit in range(7, -1, -1):
            top = ((byte >> bit) & 1) ^ ((crc >> 6) & 1)
            crc = (crc << 1) & 0x7F
            if top:
                crc ^= 0x09
    return crc


def cid_variant(year: int, serial: int) -> bytes:
    """The year's memory part with another product serial number (bytes 10..13), CRC fixed."""
    base = bytearray(s820.PARTS_BY_YEAR[year].cid)
    base[10:14] = serial.to_bytes(4, "big")
    return bytes(base[:15]) + bytes([(crc7(bytes(base[:15])) << 1) | 1])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_s820_folder(tmp_path_factory.mktemp("fw13"), preloader=preloader_s820(2013),
                             da=da_s820())


class Phones:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.phones: list[VirtualPhone] = []

    def add(self, year: int = 2013, serial: int = 1, **kw: object) -> VirtualPhone:
        phone = VirtualPhone(self.root / f"phone{len(self.phones)}", year=year,
                             memory_id=cid_variant(year, serial), **kw)  # type: ignore[arg-type]
        phone.start()
        self.phones.append(phone)
        return phone


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[Phones]:
    bench = Phones(tmp_path)
    yield bench
    for phone in bench.phones:
        phone.stop()


def _nvram(phone: VirtualPhone) -> bytes:
    from tests.test_flash_engine import NVRAM_SIZE, NVRAM_USER
    return phone.storage.read(8, NVRAM_USER, NVRAM_SIZE)


def test_four_phones_in_parallel_one_disconnect_one_4032(phones: Phones, folder: Path,
                                                         romkit_home: Path) -> None:
    good = [phones.add(serial=n) for n in (11, 12)]
    cut = phones.add(serial=13, faults=FaultPlan.parse(["disconnect@600000"]))
    late = phones.add(year=2014, serial=14)  # 2014 memory part, 2013 preloader: 4032
    ports = {id(p): p.port for p in phones.phones}  # a phone that unplugs comes back elsewhere
    factory = {p.port: _nvram(p) for p in phones.phones}
    late_before = late.storage.read(8, 0, 4 << 20)
    result = run_station(StationRequest(ports=[p.port for p in phones.phones],  # type: ignore[misc]
                                        flash_args=[str(folder)], wait=10))
    rows = {r.port: r for r in result.phones}
    for phone in good:
        row = rows[ports[id(phone)]]
        assert row.result == "ok", row.message
        assert_images_on_phone(phone, folder)
        assert _nvram(phone) == factory[ports[id(phone)]]
        assert row.cid.upper() == phone.config.cid.hex().upper()
    assert rows[ports[id(cut)]].result == "failed" and rows[ports[id(cut)]].exit_code == 4
    assert rows[ports[id(late)]].result == "failed" and rows[ports[id(late)]].spft_code == 4032
    assert late.storage.read(8, 0, 4 << 20) == late_before  # nothing written on the 2014 unit
    # one backup set per phone that got as far as the backup, keyed by its own CID
    backups = romkit_home / "data" / "backups"
    keyed = {p.name.upper() for p in backups.iterdir()}
    assert {p.config.cid.hex().upper() for p in good} <= keyed
    assert late.config.cid.hex().upper() not in keyed
    for row in result.phones:  # a log per phone, naming its own port
        assert row.log is not None and row.port in row.log.read_text()


def test_station_watches_virtual_ports_and_skips_a_phone_it_already_did(
        phones: Phones, folder: Path) -> None:
    a, b = phones.add(serial=21), phones.add(serial=22)
    stop = threading.Event()
    seen: list[str] = []
    replugged: list[VirtualPhone] = []

    def on_event(event) -> None:  # type: ignore[no-untyped-def]
        result = event.data.get("result")
        if result:
            seen.append(result)
        if seen.count("ok") == 2 and not replugged:
            # both done: phone a is unplugged and plugged in again (same eMMC, new USB
            # appearance), as a technician might do by mistake
            a.stop()
            again = VirtualPhone(a.state_dir, year=2013, memory_id=a.config.cid)
            again.start()
            phones.phones.append(again)
            replugged.append(again)
        if result == "skipped":
            stop.set()

    result = run_station(StationRequest(watch=True, flash_args=[str(folder)], wait=10,
                                        poll=0.1, idle_exit=20), on_event, stop=stop)
    rows = sorted(result.phones, key=lambda r: r.result)
    assert [r.result for r in rows] == ["ok", "ok", "skipped"]
    assert rows[2].cid is None or rows[2].cid.upper() == a.config.cid.hex().upper()
    assert_images_on_phone(b, folder)
    assert_images_on_phone(replugged[0], folder)  # still the images of the first run
    # the replugged phone's session wrote nothing: it stopped right after identifying itself
    first = replugged[0].next_session(10)  # the phone records the end after its reboot
    assert first is not None and first.outcome == "finish" and first.transfers == []


def test_skip_cid_refuses_before_writing(phones: Phones, folder: Path) -> None:
    phone = phones.add(serial=31)
    before = phone.storage.read(8, 0, 8 << 20)
    proc = run_cli("--json", "flash", str(folder), "--port", phone.port, "--wait", "10",
                   "--skip-cid", phone.config.cid.hex().upper())
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["error"] == "AlreadyFlashedError"
    assert phone.storage.read(8, 0, 8 << 20) == before


def test_cli_two_ports_json(phones: Phones, folder: Path) -> None:
    a, b = phones.add(serial=41), phones.add(serial=42)
    port_a, port_b = a.port, b.port  # each phone reboots onto a new pty after its FINISH
    proc = run_cli("--json", "flash", str(folder), "--port", port_a, "--port", port_b,
                   "--wait", "10", timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert sorted(p["port"] for p in doc["phones"]) == sorted([port_a, port_b])
    assert all(p["result"] == "ok" for p in doc["phones"])
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    tagged = [e for e in events if (e.get("data") or {}).get("port") == port_a]
    assert tagged and any((e.get("data") or {}).get("cid") for e in tagged)
    for phone in (a, b):
        assert_images_on_phone(phone, folder)


@pty_only
def test_port_is_never_opened_twice(phones: Phones, folder: Path) -> None:
    phone = phones.add(serial=51)
    from romkit.device.transport import SerialTransport
    holder = SerialTransport(phone.port)
    try:
        with pytest.raises(DeviceError, match="in use by another program"):
            SerialTransport(phone.port)
    finally:
        holder.close()


def test_phone_lock_is_exclusive_and_dies_with_its_holder(tmp_path: Path) -> None:
    code = ("import sys, time; from romkit.locks import phone_lock\n"
            "with phone_lock('ABCD', 'test'):\n    print('held', flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(PhoneBusyError, match=f"process {child.pid}"), phone_lock("abcd"):
            pass
    finally:
        child.kill()
        child.wait()
    with phone_lock("ABCD"):  # the kernel released the dead holder's lock
        pass


@pytest.mark.parametrize("launcher", ["exec", "forkserver"])
def test_both_launchers_flash_and_report(launcher: str, phones: Phones, folder: Path) -> None:
    """A fresh interpreter per phone (Windows, and the fallback) and a fork of the fork server
    (POSIX default) are the same `romkit --json flash`: both flash, verify and exit 0."""
    a, b = phones.add(serial=61), phones.add(serial=62)
    result = run_station(StationRequest(ports=[a.port, b.port],  # type: ignore[misc]
                                        flash_args=[str(folder)], wait=10, launcher=launcher))
    assert [r.result for r in result.phones] == ["ok", "ok"]
    assert all(r.exit_code == 0 for r in result.phones)
    for phone in (a, b):
        assert_images_on_phone(phone, folder)
    for row in result.phones:
        assert row.log is not None
        forked = "(forked from the station's fork server)" in row.log.read_text()
        assert forked == (launcher == "forkserver")
        # a forked child reports its own CPU time; a fresh interpreter's is not known here
        assert (row.cpu_seconds is not None and row.cpu_seconds > 0) == forked
