"""Atomic writes keep the permission bits of what they replace; new files and unpacked
folders follow the umask like any file the user makes (mkstemp/mkdtemp alone give 0600/0700).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fetch_testlib import firmware_files, make_7z, make_zip

from romkit.fetch.archive import extract
from romkit.fsutil import atomic_copy, atomic_write_bytes, atomic_write_text


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


@pytest.mark.parametrize("existing", [0o644, 0o755, 0o640, 0o600, 0o444])
def test_rewrite_keeps_the_mode_of_the_replaced_file(tmp_path: Path, umask: int,
                                                     existing: int) -> None:
    target = tmp_path / "Checksum.ini"
    target.write_bytes(b"old")
    os.chmod(target, existing)
    atomic_write_text(target, "new")
    assert target.read_bytes() == b"new"
    assert mode(target) == existing
    src = tmp_path / "src.bin"
    src.write_bytes(b"copied")
    os.chmod(src, 0o600)
    atomic_copy(src, target)
    assert target.read_bytes() == b"copied"
    assert mode(target) == existing  # the destination's mode, not the source's


def test_new_file_follows_the_umask(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "new.bin"
    atomic_write_bytes(target, b"x")
    # what open() would have made, computed independently of romkit
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    assert mode(target) == mode(plain) == 0o666 & ~umask


@pytest.mark.parametrize("kind", ["7z", "zip"])
def test_unpacked_folder_follows_the_umask(tmp_path: Path, fixtures_dir: Path,
                                           kind: str) -> None:
    old = os.umask(0o022)
    try:
        arc = tmp_path / f"fw.{kind}"
        (make_7z if kind == "7z" else make_zip)(arc, firmware_files(fixtures_dir))
        dest = tmp_path / "out" / "S820"
        extract(arc, dest)
        plain = tmp_path / "plain-dir"
        plain.mkdir()
        assert mode(dest) == mode(plain) == 0o755
        for p in dest.rglob("*"):
            assert mode(p) == (0o755 if p.is_dir() else 0o644), p
    finally:
        os.umask(old)
