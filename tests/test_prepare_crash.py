"""`romkit prepare` killed at every file change: a rerun finishes, one undo restores.

Each run is a forked child process that dies by `os._exit` (no cleanup, no `finally`, no
flush: what `kill -9` leaves) at the N-th crash point of `romkit.fsutil` (before and after
every temp-file rename and every removal), for N = 1, 2, … until a run gets through. After
each crash the folder is rerun (sometimes crashing again), checked independently (the new
preloader's bytes, checksum.ini's PRELOADER entry = our own 16-bit byte sum, the folder
check romkit verify runs), then undone (sometimes crashing inside the undo too) and compared
with the original: every file's bytes and permission bits, and no stray temp file.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from romkit import fsutil
from romkit.firmware.package import Firmware
from romkit.prepare import PrepareRequest, prepare
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.artifacts_modem import build_modem_folder

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

Snapshot = dict[str, tuple[str, int]]


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def pristine(tmp_path: Path) -> Path:
    """A small S820 folder whose files carry deliberately unusual modes."""
    from romkit.sim.sample_firmware import build_s820_folder

    folder = build_s820_folder(tmp_path / "pristine", preloader=preloader_s820(2013),
                               da=da_s820(), android="4.2.1", image_scale=0.02)
    os.chmod(folder / "preloader_s820.bin", 0o640)
    os.chmod(folder / "Checksum.ini", 0o604)
    os.chmod(folder / "boot.img", 0o755)
    return folder


def snapshot(folder: Path) -> Snapshot:
    """(sha256-free but exact) bytes and mode of every file and folder, records excluded."""
    out: Snapshot = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if rel == ".romkit" or rel.startswith(".romkit/"):
            continue
        st = p.lstat()
        kind = "dir" if p.is_dir() else p.read_bytes().hex() if p.is_file() else "other"
        out[rel] = (kind, stat.S_IMODE(st.st_mode))
    return out


def forked(action: Callable[[], object], crash_after: int | None) -> int:
    """Run `action` in a child process that dies at crash point `crash_after`; its exit code
    (fsutil.CRASH_EXIT when it died there, 0 when it finished, 1 on an exception)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            if crash_after is not None:
                os.environ[fsutil.CRASH_ENV] = str(crash_after)
            fsutil._crash_count = 0
            action()
            code = 0
        except BaseException:  # noqa: BLE001 - the parent only needs the exit code
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def checksum_value(folder: Path, key: str) -> int:
    text = (folder / "Checksum.ini").read_text(encoding="utf-8")
    m = re.search(rf"^{key}\s*=\s*0x([0-9A-Fa-f]+)\s*$", text, re.MULTILINE)
    assert m, f"{key} missing from Checksum.ini"
    return int(m.group(1), 16)


def check_prepared(folder: Path, new_preloader: bytes, *, checksum: bool) -> None:
    assert (folder / "preloader_s820.bin").read_bytes() == new_preloader
    if checksum:
        assert checksum_value(folder, "PRELOADER") == sum(new_preloader) & 0xFFFF
    else:
        assert not (folder / "Checksum.ini").exists()
    report = Firmware.load(folder).validate()
    assert report.ok, [f.message for f in report.errors]
    # the swapped file kept its mode; no temp file of a killed write is left beside it
    assert stat.S_IMODE((folder / "preloader_s820.bin").stat().st_mode) == 0o640
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


SCENARIOS = {
    "swap": {},
    "swap+drop-checksum": {"drop_checksum": True},
    "swap+modem": {"modem": True},
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_kill_at_every_step_then_rerun_and_undo(pristine: Path, tmp_path: Path,
                                                 scenario: str) -> None:
    new_pl = preloader_s820(2014)
    pl_file = tmp_path / "preloader_2014.bin"
    pl_file.write_bytes(new_pl)
    opts: dict[str, object] = {"preloader": pl_file}
    if SCENARIOS[scenario].get("drop_checksum"):
        opts["drop_checksum"] = True
    if SCENARIOS[scenario].get("modem"):
        opts["modem"] = build_modem_folder(tmp_path / "modem-src")
        opts["modem_naming"] = "plain"
    original = snapshot(pristine)
    work = tmp_path / "work"
    crash_points = 0
    for k in range(1, 200):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work)

        def run() -> None:
            prepare(PrepareRequest(folder=work, **opts))  # type: ignore[arg-type]

        def undo() -> None:
            prepare(PrepareRequest(folder=work, undo=True))

        code = forked(run, k)
        if code == 0:
            break
        assert code == fsutil.CRASH_EXIT, f"crash point {k}: the child failed ({code})"
        crash_points = k
        # a rerun that may itself be killed (at a point that varies with k), then a clean one
        second = forked(run, 1 + (k * 5) % 7)
        assert second in (0, fsutil.CRASH_EXIT), f"crash point {k}: rerun failed ({second})"
        result = prepare(PrepareRequest(folder=work, **opts))  # type: ignore[arg-type]
        assert result.validation is None or result.validation.ok
        check_prepared(work, new_pl, checksum="drop_checksum" not in opts)
        # whatever prepare created (the modem set, its folder) has the umask's modes
        for rel, (kind, mode) in snapshot(work).items():
            if rel not in original:
                assert mode == (0o755 if kind == "dir" else 0o644), (rel, oct(mode))
        # an undo that may be killed, then a clean one: back to the original, bytes and modes
        killed_undo = forked(undo, 1 + (k * 3) % 4)
        assert killed_undo in (0, fsutil.CRASH_EXIT)
        if killed_undo != 0:
            prepare(PrepareRequest(folder=work, undo=True))
        assert snapshot(work) == original, f"crash point {k}: undo did not restore"
    assert crash_points >= 8, "the crash hook never fired: is ROMKIT_TEST_CRASH_AFTER wired?"


def test_kill_at_every_step_then_undo_directly(pristine: Path, tmp_path: Path) -> None:
    """Killed, then `--undo` at once (no rerun): back to the original at every point."""
    pl_file = tmp_path / "preloader_2014.bin"
    pl_file.write_bytes(preloader_s820(2014))
    original = snapshot(pristine)
    work = tmp_path / "work"
    for k in range(1, 200):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work)
        code = forked(lambda: prepare(PrepareRequest(folder=work, preloader=pl_file)), k)
        if code == 0:
            break
        assert code == fsutil.CRASH_EXIT
        if (work / ".romkit").exists() and any(
                (r / "manifest.json").is_file() for r in (work / ".romkit/prepare").iterdir()):
            prepare(PrepareRequest(folder=work, undo=True))
        assert snapshot(work) == original, f"crash point {k}"
    else:
        pytest.fail("the prepare never got through")


def test_cli_killed_between_preloader_and_checksum(pristine: Path, tmp_path: Path) -> None:
    """The issue's case through the real CLI: `romkit prepare` dies right after the preloader
    rename (before checksum.ini is rewritten); the rerun must not say "nothing to do", `romkit
    verify` must then pass, and one `--undo` must give back the original folder."""
    from clitools import run_cli

    pl_file = tmp_path / "preloader_2014.bin"
    pl_file.write_bytes(preloader_s820(2014))
    original = snapshot(pristine)
    # crash points of this prepare: 2 per backup (2 files) + 2 for the manifest, then
    # "rename over preloader_s820.bin" (7) and "renamed over preloader_s820.bin" (8)
    killed = run_cli("prepare", str(pristine), "--preloader", str(pl_file),
                     env={fsutil.CRASH_ENV: "8"})
    assert killed.returncode == fsutil.CRASH_EXIT, killed.stderr
    assert "renamed over preloader_s820.bin" in killed.stderr
    assert (pristine / "preloader_s820.bin").read_bytes() == pl_file.read_bytes()
    assert checksum_value(pristine, "PRELOADER") != sum(pl_file.read_bytes()) & 0xFFFF
    rerun = run_cli("prepare", str(pristine), "--preloader", str(pl_file))
    assert rerun.returncode == 0, rerun.stderr
    assert "nothing to do" not in rerun.stdout
    assert "interrupted" in rerun.stdout + rerun.stderr
    verify = run_cli("verify", str(pristine))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert checksum_value(pristine, "PRELOADER") == sum(pl_file.read_bytes()) & 0xFFFF
    undo = run_cli("prepare", str(pristine), "--undo")
    assert undo.returncode == 0, undo.stderr
    assert snapshot(pristine) == original


def test_undo_gives_back_modes_without_any_crash(pristine: Path, tmp_path: Path) -> None:
    """A removed checksum.ini comes back 0604 and the swapped preloader stays 0640."""
    pl_file = tmp_path / "preloader_2014.bin"
    pl_file.write_bytes(preloader_s820(2014))
    original = snapshot(pristine)
    prepare(PrepareRequest(folder=pristine, preloader=pl_file, drop_checksum=True))
    assert stat.S_IMODE((pristine / "preloader_s820.bin").stat().st_mode) == 0o640
    assert not (pristine / "Checksum.ini").exists()
    prepare(PrepareRequest(folder=pristine, undo=True))
    assert snapshot(pristine) == original


def test_a_second_prepare_on_the_same_folder_is_refused(pristine: Path, tmp_path: Path) -> None:
    """While one prepare works on a folder its record says "applying"; a second prepare must
    not take that for a crash and roll it back."""
    import fcntl

    from romkit.prepare import PrepareConflictError

    pl_file = tmp_path / "preloader_2014.bin"
    pl_file.write_bytes(preloader_s820(2014))
    fd = os.open(pristine, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(PrepareConflictError, match="another romkit prepare"):
            prepare(PrepareRequest(folder=pristine, preloader=pl_file))
    finally:
        os.close(fd)
    assert not (pristine / ".romkit").exists()


def test_dry_run_after_a_crash_changes_nothing_and_says_so(pristine: Path,
                                                         tmp_path: Path) -> None:
    pl_file = tmp_path / "preloader_2014.bin"
    pl_file.write_bytes(preloader_s820(2014))
    # crash point 8: right after the preloader rename (see the CLI test above)
    assert forked(lambda: prepare(PrepareRequest(folder=pristine, preloader=pl_file)),
                  8) == fsutil.CRASH_EXIT
    after_crash = snapshot(pristine)
    records = sorted((pristine / ".romkit/prepare").iterdir())
    manifests = [(r / "manifest.json").read_bytes() for r in records]
    events: list = []
    result = prepare(PrepareRequest(folder=pristine, preloader=pl_file, dry_run=True),
                     on_progress=events.append)
    assert snapshot(pristine) == after_crash
    assert [(r / "manifest.json").read_bytes() for r in records] == manifests
    assert result.plan is not None
    assert any("interrupted" in w for w in result.plan.warnings)
    assert any("interrupted" in e.label for e in events if e.kind == "warning")
