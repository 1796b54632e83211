"""Issue 18's papercuts, each through the real CLI: the question before flashing (on a real
pty, read back through pyte), the live waiting line, backup pruning, restore of a set that
does not exist, readback's space check, archive unpacking without a doubled folder, the
download size in `fetch --dry-run`, and one line per calibration backup."""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from clitools import run_main
from test_cli_shell import on_terminal

from romkit.sim.phone import VirtualPhone


def _tree_digest(root: Path) -> str:
    """The virtual phone's storage where a flash writes first: boot1 (PRELOADER) and BOOTIMG
    in the user area (0x2180000 in the S820 layout), plus the user area's allocated blocks
    (its image is a 3.9 GB sparse file; a write anywhere allocates blocks)."""
    h = hashlib.sha256((root / "boot1.img").read_bytes())
    with (root / "user.img").open("rb") as fh:
        fh.seek(0x2180000)
        h.update(fh.read(0x20000))
    h.update(str((root / "user.img").stat().st_blocks).encode())
    return h.hexdigest()


@contextmanager
def running_sim(tmp_path: Path, env: dict[str, str], *extra: str) -> Iterator[str]:
    """A `romkit sim --once` in another process; yields its port."""
    sim = subprocess.Popen([sys.executable, "-m", "romkit", "sim", "--once", "--json",
                            "--state", str(tmp_path / "phone"), *extra],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, **env})
    try:
        assert sim.stdout is not None
        yield json.loads(sim.stdout.readline())["port"]
    finally:
        sim.kill()
        sim.communicate(timeout=30)


def _folder(tmp_path: Path) -> Path:
    from romkit.sim.artifacts import da_s820, preloader_s820
    from romkit.sim.sample_firmware import build_s820_folder

    return build_s820_folder(tmp_path / "fw", preloader=preloader_s820(2013), da=da_s820(),
                             image_scale=0.1)


# -- 1. the question before writing -------------------------------------------------------------


def test_flash_asks_on_a_terminal_and_no_writes_nothing(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    home = tmp_path / "home"
    env = {"ROMKIT_HOME": str(home)}
    with running_sim(tmp_path, env) as port:
        before = _tree_digest(tmp_path / "phone")
        code, _, lines = on_terminal([sys.executable, "-m", "romkit", "flash", str(folder),
                                      "--port", port], env, typed=b"n\n")
    screen = "\n".join(lines)
    assert code == 1, screen
    assert f"firmware: {folder}" in screen
    assert "build:    not recorded" in screen
    assert "mode:     download-only on phone " in screen
    assert "writes:   12 partition(s)" in screen and "PRELOADER" in screen
    assert any(ln.startswith(f"Flash 12 partition(s) from {folder.name} to this phone? [y/N]")
               for ln in lines), screen
    assert "error: not flashed: the answer was no" in screen  # (the typed "n" is not echoed)
    assert any(ln.startswith("hint: ") and "--yes" in ln for ln in lines)
    # nothing read or written: no backup set, no run journal, the phone's storage unchanged
    assert not (home / "data" / "backups").exists() or not any(
        (home / "data" / "backups").rglob("manifest.json"))
    assert _tree_digest(tmp_path / "phone") == before


def test_flash_yes_and_json_never_ask_on_a_terminal(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    env = {"ROMKIT_HOME": str(tmp_path / "home")}
    for flags in (["--yes"], ["-y"], ["--json"]):
        with running_sim(tmp_path / flags[0].strip("-"), env) as port:
            # nothing typed: a question would wait for input until the phone timed out
            code, _, lines = on_terminal([sys.executable, "-m", "romkit", "flash",
                                          str(folder), "--port", port, *flags], env)
        screen = "\n".join(lines)
        assert code == 0, screen
        assert "[y/N]" not in screen


def test_flash_without_a_terminal_does_not_ask(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    env = {"ROMKIT_HOME": str(tmp_path / "home")}
    with running_sim(tmp_path, env) as port:
        res = subprocess.run([sys.executable, "-m", "romkit", "flash", str(folder), "--port",
                              port], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             env={**os.environ, **env}, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "[y/N]" not in res.stdout + res.stderr
    # 5. one progress line for the one calibration backup this flash took (it was two:
    # "calibration backup complete: …" and "calibration saved: …")
    sets = list((tmp_path / "home").rglob("manifest.json"))
    assert len(sets) == 1
    stamp = sets[0].parent.name
    assert len([ln for ln in res.stderr.splitlines() if stamp in ln]) == 1, res.stderr


# -- 2. the live waiting line -------------------------------------------------------------------


def test_waiting_line_counts_down_and_names_the_virtual_phone_it_picks() -> None:
    import threading

    from romkit import virtualports
    from romkit.device.transport import wait_for_port
    from romkit.progress import ProgressEvent

    master, slave = os.openpty()
    events: list[ProgressEvent] = []
    pty = os.ttyname(slave)
    plug = threading.Timer(1.3, lambda: virtualports.announce(virtualports.VirtualPort(
        phone_id="sim-w", port=pty, pid=0x2000, owner_pid=os.getpid())))
    plug.start()
    try:
        assert wait_for_port(None, timeout=5, poll=0.02, on_progress=events.append) == pty
    finally:
        plug.join()
        virtualports.withdraw("sim-w")
        os.close(master)
        os.close(slave)
    lines = [e.label for e in events if e.kind == "update"]
    assert lines[0].startswith("waiting for the phone… 5 s left; ports seen: ")
    assert any(ln.startswith("waiting for the phone… 4 s left") for ln in lines), lines
    ends = [e for e in events if e.kind == "end"]
    assert len(ends) == 1 and ends[0].label.startswith(
        f"found virtual phone sim-w (a running `romkit sim`) on {pty}")
    assert ends[0].data["virtual"] is True


def test_waiting_line_is_live_on_a_terminal_and_gone_afterwards(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    code, raw, lines = on_terminal([sys.executable, "-m", "romkit", "flash", str(folder),
                                    "--wait", "2.5"], {"ROMKIT_HOME": str(tmp_path / "home")})
    assert code == 4, "\n".join(lines)  # no phone: DeviceError after the wait
    text = raw.decode("utf-8", "replace")
    assert "waiting for the phone… 3 s left; ports seen: " in text
    assert "waiting for the phone… 1 s left" in text  # redrawn in place as it counts down
    assert not any("waiting for the phone…" in ln for ln in lines)  # and erased at the end
    assert any(ln.startswith("error: no phone appeared") for ln in lines)


# -- 4. restore of a set that does not exist; readback's space check ----------------------------


def test_restore_of_a_missing_set_fails_before_touching_the_phone(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The "phone" is a pty we hold the other end of: had romkit connected, its first BROM
    handshake byte (0xA0) would be waiting there."""
    master, slave = os.openpty()
    try:
        code, _, err = run_main(capsys, "restore", "20990101T000000_000000Z", "--port",
                                os.ttyname(slave), "--wait", "1")
        ready, _, _ = select.select([master], [], [], 0.3)
    finally:
        os.close(master)
        os.close(slave)
    assert code == 2, err
    assert err.splitlines()[0] == "error: no complete backup set named '20990101T000000_000000Z'"
    assert err.splitlines()[1].startswith("hint: list sets with `romkit restore --list`")
    assert ready == []  # not a byte was sent to the phone


@pytest.fixture
def sim_phone(tmp_path: Path) -> Iterator[VirtualPhone]:
    phone = VirtualPhone(tmp_path / "phone", year=2013)
    phone.start()
    try:
        yield phone
    finally:
        phone.stop()


@pytest.mark.parametrize("which", [["--all"], ["NVRAM,ANDROID"]])
def test_readback_refuses_a_dump_that_does_not_fit(
        which: list[str], sim_phone: VirtualPhone, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Free space is the operating system's figure (shutil.disk_usage); it is made small here
    because no test can fill the disk. The needed bytes are the phone's own partition sizes:
    the virtual S820's PMT (romkit/sim/s820.py), summed independently below."""
    from romkit.sim import s820

    out = tmp_path / "dump"
    real = shutil.disk_usage
    free = 1 << 20
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: real(p)._replace(free=free))
    code, _, err = run_main(capsys, "readback", *which, str(out), "--port",
                            str(sim_phone.port), "--wait", "5", "--firmware",
                            str(_folder(tmp_path)))
    assert code == 1, err
    first = err.splitlines()[-2]
    assert first.startswith(f"error: not enough space in {out}: "), err
    assert f"{free} bytes (0.00 GiB) are free; nothing was read" in first
    needed = int(first.split(" need ")[1].split(" bytes")[0])
    if which == ["NVRAM,ANDROID"]:
        starts = [start for _, start in s820.LAYOUT]
        size = {name.removeprefix("__NODL_"): nxt - start
                for (name, start), nxt in zip(s820.LAYOUT, starts[1:], strict=False)}
        assert needed == size["NVRAM"] + size["ANDROID"] == 0x500000 + 0x5DC00000
    else:
        assert needed > 3 * 2**30  # every partition of a 4 GB phone
    assert err.splitlines()[-1].startswith("hint: free space or choose another OUT_DIR")
    assert not out.exists() or list(out.iterdir()) == []


# -- 4. fetch --dry-run asks the server for the size --------------------------------------------


@pytest.mark.parametrize("server,said,body_bytes", [
    ({}, "to download: 300.0 KiB (size from the server)", 0),  # HEAD answers
    ({"head": False}, "to download: 300.0 KiB (size from the server)", 1),  # 405: 0-0 Range
    ({"sizes": False}, "to download: unknown (the server does not say)", None),
])
def test_fetch_dry_run_asks_the_server_for_the_size(
        tmp_path: Path, server: dict[str, bool], said: str, body_bytes: int | None) -> None:
    from romkit.fetch.localserver import LocalServer

    data = os.urandom(300 * 1024)  # not in any catalog: only the server can know its size
    with LocalServer({"fw-unknown.zip": data}, **server) as srv:
        res = subprocess.run([sys.executable, "-m", "romkit", "fetch", "fw-unknown.zip",
                              "--url", srv.url("fw-unknown.zip"), "--dry-run", "--dest",
                              str(tmp_path / "d")], capture_output=True, text=True,
                             env={**os.environ, "ROMKIT_HOME": str(tmp_path / "h")}, timeout=60)
        served = srv.served
    assert res.returncode == 0, res.stderr
    assert said in res.stdout.splitlines(), res.stdout
    if body_bytes is not None:
        assert sum(s.sent for s in served) == body_bytes  # a size question, not a download
    assert not (tmp_path / "d").exists()


def test_fetch_dry_run_with_a_dead_server_says_unknown_quickly(tmp_path: Path) -> None:
    import time

    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "romkit", "fetch", "fw-unknown.zip", "--url",
                          "http://127.0.0.1:9/fw-unknown.zip", "--dry-run"],
                         capture_output=True, text=True,
                         env={**os.environ, "ROMKIT_HOME": str(tmp_path / "h")}, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "to download: unknown (no server answered)" in res.stdout.splitlines()
    assert time.monotonic() - start < 15
