"""Issue 18's papercuts, each through the real CLI: the question before flashing (on a real
pty, read back through pyte), the live waiting line, backup pruning, restore of a set that
does not exist, readback's space check, archive unpacking without a doubled folder, the
download size in `fetch --dry-run`, and one line per calibration backup."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from test_cli_shell import on_terminal


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
