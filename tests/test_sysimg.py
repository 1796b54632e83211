"""Android sparse ↔ raw: against hand-packed chunks and against AOSP's simg2img / img2simg.

The hand-packed files follow AOSP libsparse's sparse_format.h (28-byte file header, 12-byte
chunk headers, RAW 0xCAC1 / FILL 0xCAC2 / DONT_CARE 0xCAC3 / CRC32 0xCAC4); the expected raw
bytes are written out by the test itself. simg2img / img2simg (Debian package
android-sdk-libsparse-utils) are an independent implementation; those tests skip without them.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from romkit.doctor import SystemFacts, gather_facts, run_checks
from romkit.errors import FirmwareFormatError, RomkitError
from romkit.sysimg import sparse as sp

BLK = 4096
needs_libsparse = pytest.mark.skipif(
    shutil.which("simg2img") is None or shutil.which("img2simg") is None,
    reason="simg2img/img2simg not installed (apt-get install android-sdk-libsparse-utils)")


def header(total_blocks: int, chunks: int, blk: int = BLK) -> bytes:
    return struct.pack("<IHHHHIIII", 0xED26FF3A, 1, 0, 28, 12, blk, total_blocks, chunks, 0)


def chunk(ctype: int, blocks: int, body: bytes = b"") -> bytes:
    return struct.pack("<HHII", ctype, 0, blocks, 12 + len(body)) + body


def mixed_raw(blocks: int = 40) -> bytes:
    """Random blocks, zero runs and one repeated-word run, in a fixed order."""
    parts = []
    for i in range(blocks):
        if i % 7 == 3:
            parts.append(b"\x00" * BLK)
        elif i % 11 == 5:
            parts.append(b"\xde\xad\xbe\xef" * (BLK // 4))
        else:
            parts.append(hashlib.shake_256(f"blk{i}".encode()).digest(BLK))
    return b"".join(parts)


def test_hand_packed_chunks_expand(tmp_path: Path) -> None:
    data = hashlib.shake_256(b"raw").digest(2 * BLK)
    packed = (header(6, 4) + chunk(0xCAC1, 2, data) + chunk(0xCAC2, 1, b"\x01\x02\x03\x04")
              + chunk(0xCAC4, 0, b"\x00\x00\x00\x00") + chunk(0xCAC3, 3))
    src = tmp_path / "s.img"
    src.write_bytes(packed)
    layout = sp.unsparse(src, tmp_path / "r.img")
    expected = data + b"\x01\x02\x03\x04" * (BLK // 4) + b"\x00" * (3 * BLK)
    assert (tmp_path / "r.img").read_bytes() == expected
    assert layout.dont_care == [(3, 6)] and layout.total_blocks == 6
    assert sp.expanded_sha256(src) == hashlib.sha256(expected).hexdigest()


def test_packed_chunks_read_by_hand(tmp_path: Path) -> None:
    raw = tmp_path / "r.img"
    raw.write_bytes(b"\x00" * BLK * 2 + b"\x07\x00\x00\x00" * (BLK // 4) + b"\x09" * 5
                    + b"\x00" * (BLK - 5))
    out = tmp_path / "s.img"
    chunks = sp.resparse(raw, out, BLK, dont_care=[(1, 2)])
    blob = out.read_bytes()
    magic, major, _mi, hs, cs, blk, total, nchunks, _crc = struct.unpack_from("<IHHHHIIII",
                                                                              blob)
    assert (magic, major, hs, cs, blk, total, nchunks) == (0xED26FF3A, 1, 28, 12, BLK, 4, 4)
    assert chunks == 4
    pos, seen = 28, []
    while pos < len(blob):
        ctype, _r, n, size = struct.unpack_from("<HHII", blob, pos)
        seen.append((ctype, n, size))
        pos += size
    # block 0: zero but not allowed to be skipped → FILL 0; block 1: DONT_CARE;
    # block 2: FILL 7; block 3: RAW.
    assert seen == [(0xCAC2, 1, 16), (0xCAC3, 1, 12), (0xCAC2, 1, 16), (0xCAC1, 1, 12 + BLK)]


@needs_libsparse
def test_our_sparse_expands_with_simg2img(tmp_path: Path) -> None:
    raw = tmp_path / "r.img"
    raw.write_bytes(mixed_raw())
    sp.resparse(raw, tmp_path / "s.img", BLK, dont_care=[(3, 4), (10, 11)])
    subprocess.run(["simg2img", str(tmp_path / "s.img"), str(tmp_path / "back.img")],
                   check=True)
    assert (tmp_path / "back.img").read_bytes() == raw.read_bytes()


@needs_libsparse
def test_img2simg_output_expands_with_ours(tmp_path: Path) -> None:
    raw = tmp_path / "r.img"
    raw.write_bytes(mixed_raw(64))
    subprocess.run(["img2simg", str(raw), str(tmp_path / "s.img")], check=True)
    sp.unsparse(tmp_path / "s.img", tmp_path / "back.img")
    assert (tmp_path / "back.img").read_bytes() == raw.read_bytes()
    assert sp.expanded_sha256(tmp_path / "s.img") == hashlib.sha256(raw.read_bytes()).hexdigest()


@pytest.mark.parametrize("blob, words", [
    (header(2, 1) + chunk(0xCAC1, 2, b"x" * BLK), "RAW chunk size"),
    (header(2, 1) + struct.pack("<HHII", 0xCAC1, 0, 2, 12 + 2 * BLK) + b"x" * 100, "ends early"),
    (header(1, 1) + chunk(0xCAC1, 2, b"x" * 2 * BLK), "more blocks"),
    (header(2, 1) + chunk(0xCAC1, 1, b"x" * BLK), "cover 1 of 2"),
    (header(1, 1) + chunk(0xCAC2, 1, b"ab"), "FILL"),
    (header(1, 1) + chunk(0xCAC3, 1, b"junk"), "DONT_CARE"),
    (header(1, 1) + chunk(0xBEEF, 1), "unknown chunk type"),
    (header(1, 2) + chunk(0xCAC3, 1), "truncated chunk header"),
    (header(1, 1, blk=4097) + chunk(0xCAC3, 1), "unsupported"),
    (header(1 << 31, 1, blk=1 << 20), "unsupported"),
    (b"\x3a\xff\x26\xed" + b"\x00" * 8, "truncated"),
])
def test_hostile_sparse_is_refused(tmp_path: Path, blob: bytes, words: str) -> None:
    src = tmp_path / "bad.img"
    src.write_bytes(blob)
    with pytest.raises(FirmwareFormatError, match=words):
        sp.unsparse(src, tmp_path / "out.img")
    with pytest.raises(FirmwareFormatError):
        sp.expanded_sha256(src)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200), blocks=st.integers(0, 64), chunks=st.integers(0, 8))
def test_sparse_reader_only_raises_romkit_errors(tmp_path: Path, body: bytes, blocks: int,
                                                 chunks: int) -> None:
    src = tmp_path / "fuzz.img"
    src.write_bytes(header(blocks, chunks, blk=64) + body)
    try:
        sp.unsparse(src, tmp_path / "fuzz.raw")
    except RomkitError:
        pass
    assert not (tmp_path / "fuzz.raw").exists() or \
        (tmp_path / "fuzz.raw").stat().st_size <= blocks * 64 + 64 * 64


def test_ranges_intersect() -> None:
    assert sp.intersect([(0, 10), (20, 30)], [(5, 25)]) == [(5, 10), (20, 25)]
    assert sp.intersect([(0, 4)], [(4, 8)]) == []


# -- romkit doctor: the e2fsprogs check -----------------------------------------------------
def _facts(os_name: str, tools: dict[str, str | None] | None) -> SystemFacts:
    return SystemFacts(os_name=os_name, python_version="3.12.1", e2fsprogs=tools)


@pytest.mark.parametrize("os_name, words", [("linux", "apt-get install e2fsprogs"),
                                            ("darwin", "brew install e2fsprogs"),
                                            ("windows", "WSL")])
def test_doctor_warns_without_e2fsprogs(os_name: str, words: str) -> None:
    tools = {"debugfs": None, "e2fsck": "e2fsck 1.47.0 (5-Feb-2023)", "dumpe2fs": None}
    check = next(c for c in run_checks(_facts(os_name, tools)) if c.name == "e2fsprogs")
    assert check.status == "warn" and "debugfs, dumpe2fs" in check.summary
    assert words in (check.fix or "")


def test_doctor_with_e2fsprogs_is_ok_and_gathered_here() -> None:
    line = "debugfs 1.47.0 (5-Feb-2023)"
    check = next(c for c in run_checks(_facts("linux", dict.fromkeys(
        ("debugfs", "e2fsck", "dumpe2fs"), line))) if c.name == "e2fsprogs")
    assert check.status == "ok" and "1.47.0" in check.summary
    assert not [c for c in run_checks(_facts("linux", None)) if c.name == "e2fsprogs"]
    if shutil.which("debugfs"):
        gathered = gather_facts().e2fsprogs
        assert gathered is not None and gathered["debugfs"] is not None


def test_too_old_debugfs_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A debugfs reporting 1.42.9 (before ea_get/ea_set) is refused with the install hint."""
    from romkit.sysimg import ext4

    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("debugfs", "e2fsck", "dumpe2fs"):
        tool = fake / name
        tool.write_text("#!/bin/sh\necho '" + name + " 1.42.9 (28-Dec-2013)' >&2\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    monkeypatch.setattr(ext4, "_EXTRA_DIRS", ())
    with pytest.raises(ext4.ToolMissingError, match="1.42.9 is too old") as info:
        ext4.require_tools()
    assert "e2fsprogs" in (info.value.hint or "")


def test_sparse_bomb_is_refused_before_expanding(tmp_path: Path) -> None:
    """A 40-byte file claiming a 1 TiB FILL: refused for disk space, nothing written."""
    from romkit.errors import DiskError
    from romkit.sysimg import show_modem

    bomb = tmp_path / "system.img"
    bomb.write_bytes(header(1 << 28, 1) + chunk(0xCAC2, 1 << 28, b"\xab\xab\xab\xab"))
    with pytest.raises(DiskError, match="needs"):
        show_modem(bomb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["system.img"]


def test_zero_fill_becomes_a_hole(tmp_path: Path) -> None:
    src = tmp_path / "s.img"
    src.write_bytes(header(3, 2) + chunk(0xCAC2, 2, b"\x00" * 4) + chunk(0xCAC1, 1, b"z" * BLK))
    sp.unsparse(src, tmp_path / "r.img")
    assert (tmp_path / "r.img").read_bytes() == b"\x00" * 2 * BLK + b"z" * BLK


@pytest.mark.parametrize("kernel", [True, False], ids=["copy_file_range", "read-write"])
def test_working_copy_is_byte_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    kernel: bool) -> None:
    import os

    from romkit.progress import Reporter
    from romkit.sysimg import modemset

    if not kernel and hasattr(os, "copy_file_range"):
        def refuse(*_a: object) -> int:
            raise OSError(18, "Invalid cross-device link")
        monkeypatch.setattr(os, "copy_file_range", refuse)
    monkeypatch.setattr(modemset, "KERNEL_COPY_STEP", 3 * BLK + 5)  # odd steps
    monkeypatch.setattr(modemset, "COPY_CHUNK", 2 * BLK + 3)
    src = tmp_path / "a.img"
    src.write_bytes(mixed_raw(23))
    modemset._copy(src, tmp_path / "b.img", Reporter(), "copy")
    assert (tmp_path / "b.img").read_bytes() == src.read_bytes()
