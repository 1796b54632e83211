"""`romkit demo`: the whole story end to end in a subprocess, plus its refusals and hygiene."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import struct
import subprocess
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clitools import pasted, run_cli
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
from tests.test_flash_engine import assert_images_on_phone


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
    real = {s["id"]: s["real_command"] for s in doc["steps"]}
    assert real["fetch"] == "romkit fetch S820_ROW_S124"
    assert real["prepare"] == "romkit prepare --device-year 2014"

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
    _check_kept_mirror_folder(ws)
    _replay_by_hand(ws, doc)


def _replay_by_hand(ws: Path, doc: dict[str, Any]) -> None:
    """The demo's `$` lines, pasted verbatim after it (--keep), replay the whole story on the
    kept workspace: the unpacked firmware is deleted first (so fetch must really unpack the
    2013 build again, and the first flash must be refused again) and one byte of the phone's
    BOOTIMG is flipped (so the final flash must really write). Judged on the files and the
    phone's storage, not on what the commands print."""
    env = {**os.environ, **doc["env"]}
    assert env["ROMKIT_HOME"] == str(ws / "home")
    cmd = {s["id"]: s["command"] for s in doc["steps"]}
    assert cmd["build"] is None and cmd["check"] is None  # no command does these
    assert all("--port" not in c for c in cmd.values() if c)
    folder = ws / "firmware" / "target_bin"

    def run(step: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(pasted(cmd[step]), env=env, capture_output=True, text=True,
                              timeout=120)

    shutil.rmtree(ws / "firmware")
    assert run("mirror").returncode == 0
    fetched = run("fetch")
    assert fetched.returncode == 0, fetched.stderr
    assert (folder / "preloader_s820.bin").read_bytes() == preloader_s820(2013)
    bootimg = dict(s820.LAYOUT)["BOOTIMG"] - 0x600000 + 4096
    phone = VirtualPhone(ws / "phone", year=2014)
    flipped = bytes([phone.storage.read("user", bootimg, 1)[0] ^ 0xFF])
    phone.storage.write("user", bootimg, flipped)
    phone.storage.close()
    sim = subprocess.Popen(pasted(cmd["phone"]), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        assert sim.stdout is not None
        assert "Ctrl-C to unplug" in sim.stdout.readline() + sim.stdout.readline() + \
            sim.stdout.readline()
        refused = run("flash-refused")
        assert refused.returncode not in (0, 1) and "4032" in refused.stderr, refused.stderr
        explained = run("explain")
        assert explained.returncode == 0 and "4032" in explained.stdout
        prepared = run("prepare")
        assert prepared.returncode == 0, prepared.stderr
        assert (folder / "preloader_s820.bin").read_bytes() == preloader_s820(2014)
        flashed = run("flash")
        assert flashed.returncode == 0, flashed.stderr
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(timeout=30)
    phone = VirtualPhone(ws / "phone", year=2014)
    try:
        assert phone.storage.read("user", bootimg, 1) != flipped
        assert_images_on_phone(phone, folder)
    finally:
        phone.storage.close()
    cid_dirs = list((ws / "home" / "data" / "backups").iterdir())
    assert len(cid_dirs) == 1 and len([d for d in cid_dirs[0].iterdir() if d.is_dir()]) == 2


def _check_kept_mirror_folder(ws: Path) -> None:
    """After the demo its HTTP mirror is gone; the catalog's second mirror is the kept folder
    (file://), holding exactly the published bytes, so a copied `romkit fetch --force` works."""
    doc = tomllib.loads((ws / "romkit-demo.toml").read_text())
    for entry in (doc["build"][0], doc["resource"][0]):
        urls = [m["url"] for m in entry["mirrors"]]
        assert urls[0].startswith("http://127.0.0.1:") and urls[1].startswith("file://")
        kept = Path(urllib.request.url2pathname(urllib.parse.urlsplit(urls[1]).path))
        assert kept.parent == ws / "mirror"
        assert hashlib.sha256(kept.read_bytes()).hexdigest() == entry["hashes"]["sha256"]
        assert kept.stat().st_size == entry["size"]


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
    real = [s.real_command for s in result.steps]
    assert real.index("romkit fetch S820_ROW_S124") < real.index("romkit flash")
    assert real.count("romkit flash") == 2
    assert "romkit prepare --device-year 2014" in real
    assert [e.data["step"] for e in events] == [s.id for s in result.steps]
    # by hand: the workspace the run would use, named in every command that needs a path
    ws = str(tmp_path / "ws")
    by_hand = {s.id: s.command for s in result.steps}
    assert shlex.split(by_hand["flash"]) == ["romkit", "flash", f"{ws}/firmware/target_bin"]
    assert shlex.split(by_hand["fetch"])[-2:] == ["--dest", f"{ws}/firmware"]
    assert result.env == {"ROMKIT_HOME": f"{ws}/home"}
    placeholder = run_demo(DemoRequest(dry_run=True))
    assert placeholder.env == {"ROMKIT_HOME": "WORKSPACE/home"}
    assert "WORKSPACE/phone" in (placeholder.steps[3].command or "")


def test_demo_text_names_the_data_dir_first_and_real_commands_last(tmp_path: Path) -> None:
    """On screen: the export line before any step, each step's $ line as in --json, and the
    real-phone commands after the summary."""
    ws = tmp_path / "a dir with spaces"
    text = run_cli("demo", "--dry-run", "--workdir", str(ws), timeout=60)
    doc = json.loads(run_cli("demo", "--dry-run", "--json", "--workdir", str(ws),
                             timeout=60).stdout)
    assert text.returncode == 0, text.stderr
    lines = [ln.strip() for ln in text.stdout.splitlines()]
    export = lines.index("$ export ROMKIT_HOME=" + shlex.quote(f"{ws}/home"))
    assert export < min(i for i, ln in enumerate(lines) if ln.startswith("[1/9]"))
    shown = [ln[2:] for ln in lines[export + 1:] if ln.startswith("$ ")]
    by_hand = [s["command"] for s in doc["steps"] if s["command"]]
    real = [s["real_command"] for s in doc["steps"] if s["real_command"]]
    assert shown == by_hand + real
    assert shlex.split(by_hand[0])[-1] == f"{ws}/romkit-demo.toml"  # quoted: one argument


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


def test_shell_lines_survive_hostile_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """A workspace path with spaces, quotes or `$` pastes as one argument: POSIX shells
    (judged by shlex, the POSIX splitting rules) and, on Windows, PowerShell's '…' literal."""
    from romkit import demo

    hostile = "/tmp/it's a $HOME `dir`"
    line = demo.shell_line(["romkit", "flash", Path(hostile)])
    assert shlex.split(line) == ["romkit", "flash", hostile]
    assert shlex.split(demo.env_line("ROMKIT_HOME", hostile))[1] == f"ROMKIT_HOME={hostile}"
    monkeypatch.setattr(demo.os, "name", "nt")
    assert demo.env_line("ROMKIT_HOME", r"C:\it's here") == \
        r"$env:ROMKIT_HOME = 'C:\it''s here'"
