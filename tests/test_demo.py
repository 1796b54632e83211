"""`romkit demo`: the whole story end to end in a subprocess, plus its refusals and hygiene."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clitools import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from romkit.demo import (
    DemoRequest,
    _checksum_entry,
    _compare_emmc,
    _demo_environment,
    _PhoneReader,
    _StoryFailed,
    run_demo,
)
from romkit.firmware.preloader import to_boot1_image
from romkit.sim import s820
from romkit.sim.artifacts import preloader_s820
from romkit.sim.phone import VirtualPhone
from romkit.sim.sample_firmware import build_s820_folder


def _events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_demo_end_to_end(tmp_path: Path, romkit_home: Path) -> None:
    ws = tmp_path / "ws"
    before_home = _files(romkit_home)
    res = run_cli("demo", "--json", "--keep", "--workdir", str(ws))
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)
    assert doc["ok"] is True and doc["emmc_matches"] is True

    # 4032 first, then a verified flash: in the summary and in the events as they happened.
    ids = [s["id"] for s in doc["steps"]]
    refused = ids.index("flash-refused")
    flashed = ids.index("flash")
    assert refused < ids.index("prepare") < flashed
    assert doc["steps"][refused]["status"] == "expected-error"
    assert doc["steps"][refused]["data"]["spft_code"] == 4032 == doc["first_error_code"]
    assert doc["steps"][flashed]["status"] == "ok" and doc["verified_partitions"]
    done = [(e["data"]["step"], e["data"]["status"]) for e in _events(res.stderr)
            if e.get("data", {}).get("phase") == "done"]
    assert done.index(("flash-refused", "expected-error")) < done.index(("flash", "ok"))
    assert [d[1] for d in done].count("failed") == 0
    commands = {s["id"]: s["command"] for s in doc["steps"]}
    assert commands["fetch"] == "romkit fetch S820_ROW_S124"
    assert commands["prepare"] == "romkit prepare --device-year 2014"

    # Independent checks on what the kept workspace holds.
    preloader = ws / "firmware" / "target_bin" / "preloader_s820.bin"
    assert preloader.read_bytes() == preloader_s820(2014)
    backup = Path(doc["backup_path"])
    assert backup.is_dir() and ws.resolve() in backup.resolve().parents
    texts = [f.read_bytes()[:4096] for f in backup.iterdir() if f.is_file()]
    imei = s820.SYNTHETIC_IMEI[0].encode()
    assert any(t.startswith(b"ROMKIT-SIM NVRAM") and imei in t for t in texts)
    # The user's (here: the test's) romkit home was never touched.
    assert _files(romkit_home) == before_home


def test_workdir_not_empty_is_refused(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("mine")
    res = run_cli("demo", "--workdir", str(tmp_path), timeout=60)
    assert res.returncode == 2
    assert "not empty" in res.stderr
    assert precious.read_text() == "mine" and sorted(tmp_path.iterdir()) == [precious]


def test_dry_run_lists_the_story_and_builds_nothing(tmp_path: Path) -> None:
    events = []
    result = run_demo(DemoRequest(workdir=tmp_path / "ws", dry_run=True), events.append)
    assert result.ok and result.dry_run and not (tmp_path / "ws").exists()
    commands = [s.command for s in result.steps]
    assert commands.index("romkit fetch S820_ROW_S124") < commands.index("romkit flash")
    assert commands.count("romkit flash") == 2
    assert "romkit prepare --device-year 2014" in commands
    assert [e.data["step"] for e in events] == [s.id for s in result.steps]


def test_environment_is_private_and_restored(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROMKIT_HOME", "/somewhere/real")
    monkeypatch.setenv("ROMKIT_CATALOG_URL", "https://example.invalid/index.toml")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setenv("no_proxy", "corp.example")
    with _demo_environment(tmp_path / "home"):
        assert os.environ["ROMKIT_HOME"] == str(tmp_path / "home")
        assert "ROMKIT_CATALOG_URL" not in os.environ
        assert "127.0.0.1" in os.environ["NO_PROXY"].split(",")
        assert os.environ["no_proxy"].split(",")[-1] == "corp.example"
    assert os.environ["ROMKIT_HOME"] == "/somewhere/real"
    assert os.environ["ROMKIT_CATALOG_URL"] == "https://example.invalid/index.toml"
    assert "NO_PROXY" not in os.environ and os.environ["no_proxy"] == "corp.example"


def test_emmc_check_catches_a_single_wrong_byte(tmp_path: Path) -> None:
    """The demo's final check reads the phone's storage itself: it must notice one bad byte."""
    folder = build_s820_folder(tmp_path / "fw", preloader=preloader_s820(2014))
    phone = VirtualPhone(tmp_path / "phone", year=2014)
    try:
        reader = _PhoneReader(phone)
        with pytest.raises(_StoryFailed):  # factory state: nothing of this build on it yet
            _compare_emmc(reader, folder, folder / "preloader_s820.bin")
        starts = dict(s820.LAYOUT)
        files = {"MBR": "MBR", "EBR1": "EBR1", "EBR2": "EBR2", "lk.bin": "UBOOT",
                 "boot.img": "BOOTIMG", "recovery.img": "RECOVERY", "secro.img": "SEC_RO",
                 "logo.bin": "LOGO", "system.img": "ANDROID", "cache.img": "CACHE",
                 "userdata.img": "USRDATA"}
        for file, part in files.items():  # what a good flash leaves: user offset = linear-6 MiB
            phone.storage.write("user", starts[part] - 0x600000, (folder / file).read_bytes())
        phone.storage.write("boot1", 0, to_boot1_image(preloader_s820(2014)))
        assert len(_compare_emmc(reader, folder, folder / "preloader_s820.bin")) == 12
        offset = starts["BOOTIMG"] - 0x600000 + 4096
        phone.storage.write("user", offset, bytes([phone.storage.read("user", offset, 1)[0] ^ 1]))
        with pytest.raises(_StoryFailed, match="BOOTIMG"):
            _compare_emmc(reader, folder, folder / "preloader_s820.bin")
    finally:
        phone.stop()


@pytest.fixture(scope="module")
def spare_phone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualPhone]:
    phone = VirtualPhone(tmp_path_factory.mktemp("phone"), year=2014)
    yield phone
    phone.stop()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(brlyt=st.integers(0, 2**32 - 1), start=st.integers(0, 2**32 - 1),
       file_len=st.integers(0, 2**32 - 1), junk=st.binary(max_size=64))
def test_boot1_reader_survives_hostile_headers(spare_phone: VirtualPhone, brlyt: int,
                                               start: int, file_len: int, junk: bytes) -> None:
    """Whatever BOOT1 holds, reading "the preloader" from it returns bytes, never crashes."""
    store = spare_phone.storage
    store.write("boot1", 0, (b"EMMC_BOOT\0\0\0" + struct.pack("<II", 1, brlyt) + junk)
                .ljust(0x200, b"\0"))
    if brlyt + 0x20 <= s820.BOOT_SIZE:
        store.write("boot1", brlyt, b"BRLYT\0\0\0" + struct.pack("<II", 1, start))
    if start + 0x38 <= s820.BOOT_SIZE:
        store.write("boot1", start, b"MMM\x01".ljust(0x20, b"\0") + struct.pack("<I", file_len))
    got = _PhoneReader(spare_phone).preloader()
    assert isinstance(got, bytes) and len(got) <= s820.BOOT_SIZE


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=400))
def test_checksum_entry_survives_garbage(tmp_path: Path, text: str) -> None:
    (tmp_path / "Checksum.ini").write_text(text, encoding="utf-8", errors="replace")
    value = _checksum_entry(tmp_path, "PRELOADER")
    assert value is None or isinstance(value, int)
    good = tmp_path / "checksum.ini"
    good.write_text("[CheckSum]\nPRELOADER=0x1A2b\n", encoding="utf-8")
    (tmp_path / "Checksum.ini").unlink()
    assert _checksum_entry(tmp_path, "PRELOADER") == 0x1A2B
    good.unlink()
