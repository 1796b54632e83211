"""The CLI shell: error rendering, exit codes, atomic writes, where files live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clitools import run_cli

from romkit import paths
from romkit.errors import (
    DeviceError,
    DramInitError,
    FirmwareFormatError,
    RomkitError,
    UsageError,
    ValidationError,
    exit_code_for,
)
from romkit.fsutil import atomic_open, atomic_write_bytes, hash_file


def test_version_and_module_entry() -> None:
    res = run_cli("--version")
    assert res.returncode == 0
    assert res.stdout.strip().startswith("romkit ")


def test_exit_codes_follow_the_tree() -> None:
    assert exit_code_for(UsageError("x")) == 2
    assert exit_code_for(ValidationError("x")) == 3
    assert exit_code_for(FirmwareFormatError("x")) == 3
    assert exit_code_for(DramInitError("x", spft_code=4032)) == 4
    assert issubclass(DramInitError, DeviceError)
    assert exit_code_for(RomkitError("x")) == 1
    assert exit_code_for(ValueError("x")) == 1


def test_unknown_command_is_a_usage_error() -> None:
    res = run_cli("no-such-command")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write(b"new-partial")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_hash_file_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(5 * 1024 * 1024 + 7)
    f = tmp_path / "x"
    f.write_bytes(data)
    got = hash_file(f, ("sha256", "md5"))
    assert got == {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}


def test_romkit_home_moves_all_dirs(romkit_home: Path) -> None:
    assert paths.cache_dir().is_relative_to(romkit_home)
    assert paths.data_dir().is_relative_to(romkit_home)
    assert paths.config_dir().is_relative_to(romkit_home)


def test_recorded_build_only_for_the_recorded_folder(tmp_path: Path) -> None:
    from romkit.workspace import current_firmware, record_current_firmware, recorded_build

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert current_firmware() is None and recorded_build(a) is None
    record_current_firmware(a, "S820_ROW_S124_140404")
    assert current_firmware() == a.resolve()
    assert recorded_build(a) == "S820_ROW_S124_140404"
    assert recorded_build(b) is None
    record_current_firmware(b)
    assert recorded_build(b) is None and recorded_build(a) is None
