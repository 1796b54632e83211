"""`romkit fetch` end to end: catalog → local HTTP server → verified archive → firmware folder."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fetch_testlib import BUILD, SCATTER, firmware_files, make_7z, make_zip, zip_raw_name

from romkit import paths, workspace
from romkit.catalog import add_user_mirror, user_catalog_dir
from romkit.errors import ArchiveError, CatalogError, RomkitError
from romkit.fetch.localserver import Fault, LocalServer
from romkit.fetch.service import FetchRequest, download_resource, fetch

ARCHIVE = f"{BUILD}.7z"


@pytest.fixture
def package(tmp_path: Path, fixtures_dir: Path) -> tuple[Path, dict[str, bytes]]:
    files = firmware_files(fixtures_dir)
    return make_7z(tmp_path / ARCHIVE, files), files


def _user_catalog(text: str) -> None:
    d = user_catalog_dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / "test.toml").write_text("schema = 1\n" + text)


def test_cli_fetch_downloads_verifies_unpacks_and_records(
        tmp_path: Path, package: tuple[Path, dict[str, bytes]]) -> None:
    arc, files = package
    dest = tmp_path / "work" / "fw"
    with LocalServer({ARCHIVE: arc.read_bytes()}) as srv:
        run = subprocess.run([sys.executable, "-m", "romkit", "fetch", "S820_ROW_S124",
                              "--url", srv.url(ARCHIVE), "--dest", str(dest),
                              "--connections", "3"],
                             capture_output=True, text=True, env=dict(os.environ), timeout=60)
        assert run.returncode == 0, run.stderr
        # the archive's own top folder ({BUILD}/) is not repeated inside DEST (issue 18)
        firmware = dest / "target_bin"
        assert f"firmware:    {firmware.resolve()}" in run.stdout
        assert "first download" in run.stderr
        assert workspace.current_firmware() == firmware.resolve()
        for name, data in files.items():
            assert (dest / name.removeprefix(f"{BUILD}/")).read_bytes() == data
        again = subprocess.run([sys.executable, "-m", "romkit", "--json", "fetch",
                                "S820_ROW_S124", "--url", srv.url(ARCHIVE), "--dest",
                                str(dest)], capture_output=True, text=True,
                               env=dict(os.environ), timeout=60)
    doc = json.loads(again.stdout)
    assert doc["cached"] and doc["sha256"] == hashlib.sha256(arc.read_bytes()).hexdigest()
    assert doc["firmware_folder"] == str(firmware.resolve())


def test_cli_integrity_failure_exit_code(tmp_path: Path, package: tuple[Path, dict]) -> None:
    arc, _ = package
    data = arc.read_bytes()
    with LocalServer({ARCHIVE: data}) as srv:
        _user_catalog(f"""
[[build]]
id = "TESTROM_S001_140101"
device = "lenovo-s820"
file_name = "{ARCHIVE}"
size = {len(data)}
hashes = {{ sha256 = "{'ab' * 32}" }}
mirrors = ["{srv.url(ARCHIVE)}"]
""")
        run = subprocess.run([sys.executable, "-m", "romkit", "fetch", "TESTROM_S001_140101",
                              "--dest", str(tmp_path / "d")], capture_output=True, text=True,
                             env=dict(os.environ), timeout=60)
    assert run.returncode == 3
    assert "error:" in run.stderr and "hint:" in run.stderr and "sha256" in run.stderr
    assert not (tmp_path / "d").exists()


def test_catalog_mirrors_come_after_cli_urls(tmp_path: Path,
                                             package: tuple[Path, dict]) -> None:
    arc, _ = package
    with LocalServer({ARCHIVE: arc.read_bytes()}) as srv:
        add_user_mirror("S820_ROW_S124", srv.url(ARCHIVE))
        dry = fetch(FetchRequest(name="S124", urls=[srv.url("gone.7z")], dry_run=True,
                                 dest=tmp_path / "d"))
        assert [(c.source, c.url) for c in dry.candidates] == [
            ("cli", srv.url("gone.7z")), ("user", srv.url(ARCHIVE))]
        assert not paths.cache_dir().exists() and not (tmp_path / "d").exists()
        res = fetch(FetchRequest(name="S124", urls=[srv.url("gone.7z")], dest=tmp_path / "d"))
    assert [(m.source, m.outcome) for m in res.mirrors] == [("cli", "failed"), ("user", "ok")]
    assert (res.firmware_folder / SCATTER).is_file()
    assert res.build_id == BUILD and res.unpacked


def test_interrupted_download_resumes_through_fetch(tmp_path: Path,
                                                    package: tuple[Path, dict]) -> None:
    arc, _ = package
    data = arc.read_bytes()
    with LocalServer({ARCHIVE: data}) as srv:
        # the probe and then the first body are cut after 100 kB; the retry is refused (404)
        srv.add_fault(ARCHIVE, Fault("drop", after=100_000, times=2))
        srv.add_fault(ARCHIVE, Fault("status", status=404, times=None, min_offset=1))
        req = FetchRequest(name="S820_ROW_S124", urls=[srv.url(ARCHIVE)], dest=tmp_path / "d")
        with pytest.raises(RomkitError) as info:
            fetch(req)
        assert "resumes" in info.value.hint
        state = json.loads((paths.cache_dir() / "downloads" / f"{ARCHIVE}.part.json"
                            ).read_text())
        have = sum(e - s for s, e in state["ranges"])
        assert 0 < have <= 100_000
        srv.clear_faults()
        srv.reset_stats()
        res = fetch(req)
        fresh = sum(s.sent for s in srv.served)
    assert res.firmware_folder is not None
    assert fresh == len(data) - have + 1  # only the missing bytes (+ the 1-byte probe)


def test_from_file_and_from_dir(tmp_path: Path, fixtures_dir: Path) -> None:
    files = firmware_files(fixtures_dir, tool=False)
    arc = make_zip(tmp_path / "mine.zip", files)
    res = fetch(FetchRequest(name="S820_ROW_S124", from_path=arc, dest=tmp_path / "d"))
    assert res.archive_path == arc and res.flash_tool_folder is None
    assert (res.firmware_folder / "boot.img").read_bytes() == files[f"{BUILD}/target_bin/boot.img"]
    again = fetch(FetchRequest(name="S820_ROW_S124", from_path=tmp_path / "d"))
    assert again.firmware_folder == res.firmware_folder
    assert workspace.current_firmware() == res.firmware_folder


def test_hostile_archive_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    arc = zip_raw_name(tmp_path / "evil.zip", "../../evil.txt", b"x",
                       extra={f"{BUILD}/target_bin/{SCATTER}": b"x"})
    with LocalServer({"evil.zip": arc.read_bytes()}) as srv, pytest.raises(ArchiveError):
        fetch(FetchRequest(name="S820_ROW_S124", urls=[srv.url("evil.zip")],
                           dest=tmp_path / "out" / "d"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "evil.txt").exists()
    assert workspace.current_firmware() is None


def test_unknown_name(tmp_path: Path, package: tuple[Path, dict]) -> None:
    with pytest.raises(CatalogError):
        fetch(FetchRequest(name="NO_SUCH_BUILD_999"))
    arc, _ = package
    with LocalServer({"x.7z": arc.read_bytes()}) as srv:
        res = fetch(FetchRequest(name="MY_OWN_ROM", urls=[srv.url("x.7z")],
                                 dest=tmp_path / "mine"))
    assert res.entry_type == "adhoc" and res.archive_path.name == "MY_OWN_ROM.7z"
    assert (res.firmware_folder / SCATTER).is_file()


def test_download_resource_places_a_verified_copy(tmp_path: Path) -> None:
    blob = hashlib.shake_256(b"preloader").digest(50_000)
    with LocalServer({"pl.bin": blob}) as srv:
        _user_catalog(f"""
[[resource]]
id = "preloader-2014"
device = "lenovo-s820"
kind = "preloader"
file_name = "preloader_s820_2014.bin"
size = {len(blob)}
hashes = {{ sha256 = "{hashlib.sha256(blob).hexdigest()}" }}
mirrors = ["{srv.url('pl.bin')}"]
""")
        from romkit.catalog import Catalog

        res = Catalog.load().resolve("preloader-2014")
        got = download_resource(res, tmp_path / "work")
    assert got == tmp_path / "work" / "preloader_s820_2014.bin"
    assert got.read_bytes() == blob


def test_cli_dry_run_changes_nothing(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "romkit", "fetch", "S124", "--url",
                          "http://127.0.0.1:9/S820_ROW_S124_140404.7z", "--dry-run",
                          "--dest", str(tmp_path / "d")],
                         capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert run.returncode == 0, run.stderr
    assert "http://127.0.0.1:9/S820_ROW_S124_140404.7z" in run.stdout
    assert str(tmp_path / "d") in run.stdout
    assert not (tmp_path / "d").exists() and not paths.cache_dir().exists()


def test_ctrl_c_stops_at_once_and_the_next_run_resumes(tmp_path: Path, fixtures_dir: Path
                                                       ) -> None:
    files = firmware_files(fixtures_dir, image_kib=1024)
    arc = make_zip(tmp_path / ARCHIVE, files)
    data = arc.read_bytes()
    state = paths.cache_dir() / "downloads" / f"{ARCHIVE}.part.json"
    with LocalServer({ARCHIVE: data}, rate=150_000) as srv:
        proc = subprocess.Popen([sys.executable, "-m", "romkit", "fetch", "S124", "--url",
                                 srv.url(ARCHIVE), "--dest", str(tmp_path / "d")],
                                env=dict(os.environ), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        have = 0
        deadline = time.monotonic() + 20
        while have < 100_000 and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                have = sum(e - s for s, e in json.loads(state.read_text())["ranges"])
            except (OSError, ValueError, KeyError):
                have = 0
        proc.send_signal(signal.SIGINT)
        # "at once" without a wall-clock bound (a 3 s bound was flaky on a loaded machine): a
        # fetch that ignored Ctrl-C would finish the download and exit 0, and the saved ranges
        # checked below would cover the whole archive.
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert err.splitlines()[-2].startswith("interrupted:"), err
        assert not (tmp_path / "d").exists()
        saved = sum(e - s for s, e in json.loads(state.read_text())["ranges"])
        assert 100_000 <= saved < len(data)
        # one line says what is left and the exact command that resumes
        lines = [ln for ln in err.splitlines() if ln.startswith("interrupted:")]
        assert len(lines) == 1, err
        assert f"{saved} of {len(data)} bytes" in lines[0]
        assert str(state.with_suffix("")) in lines[0]
        assert "Traceback" not in err and "Aborted" not in err
        hints = [ln for ln in err.splitlines() if ln.startswith("hint: resume with: ")]
        assert len(hints) == 1, err
        command = hints[0].split("resume with: ", 1)[1]
        argv = shlex.split(command)
        assert argv[:3] == ["romkit", "fetch", "S124"]
        assert srv.wait_idle()
        srv.rate = None
        srv.reset_stats()
        again = subprocess.run([sys.executable, "-m", "romkit", "--json", *argv[1:]],
                               capture_output=True, text=True, env=dict(os.environ),
                               timeout=60)
        assert again.returncode == 0, again.stderr
        fresh = sum(s.sent for s in srv.served)
    assert fresh == len(data) - saved + 1
    doc = json.loads(again.stdout)
    assert doc["sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["dest"] == str(tmp_path / "d")
