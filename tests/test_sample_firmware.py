"""The synthetic S820 package: shape, realistic headers, synthetic labels, determinism."""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import pytest

from romkit.errors import UsageError
from romkit.sim import s820
from romkit.sim.artifacts import preloader_s820
from romkit.sim.sample_firmware import build_s820_folder

PRELOADER = preloader_s820(2013)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_and_build_specific(tmp_path: Path) -> None:
    a = build_s820_folder(tmp_path / "a", preloader=PRELOADER, da=b"DA!", image_scale=0.1)
    build_s820_folder(tmp_path / "b", preloader=PRELOADER, da=b"DA!", image_scale=0.1)
    assert a == tmp_path / "a" / "target_bin"
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    c = build_s820_folder(tmp_path / "c", preloader=PRELOADER, build_id="OTHER",
                          image_scale=0.1)
    assert (c / "boot.img").read_bytes() != (a / "boot.img").read_bytes()


def test_files_and_labels(tmp_path: Path) -> None:
    folder = build_s820_folder(tmp_path, preloader=PRELOADER, da=b"synthetic DA bytes")
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["MT6589_Android_scatter_emmc.txt", "preloader_s820.bin", "MBR",
                            "EBR1", "EBR2", "lk.bin", "boot.img", "recovery.img",
                            "secro.img", "logo.bin", "system.img", "cache.img",
                            "userdata.img", "Checksum.ini", "build_info.txt"])
    assert (folder / "preloader_s820.bin").read_bytes() == PRELOADER
    da = tmp_path / "SP_Flash_Tool_v3.1316" / "MTK_AllInOne_DA.bin"
    assert da.read_bytes() == b"synthetic DA bytes"
    for p in folder.iterdir():
        data = p.read_bytes()
        assert b"ROMKIT SYNTHETIC" in data, p.name
        assert data.count(0) < len(data), p.name
    info = (folder / "build_info.txt").read_text()
    assert "ro.build.display.id=DEMO_S820_ROW_S124\n" in info
    assert "ro.build.version.release=4.2.1\n" in info
    total = sum(p.stat().st_size for p in folder.iterdir())
    assert 2 * 1024 * 1024 < total < 16 * 1024 * 1024


def test_scatter_is_exactly_the_s820_layout(tmp_path: Path) -> None:
    folder = build_s820_folder(tmp_path, preloader=PRELOADER, image_scale=0.1)
    text = (folder / "MT6589_Android_scatter_emmc.txt").read_text()
    found = [(m.group(1), int(m.group(2), 16))
             for m in re.finditer(r"^(\S+) (0x[0-9A-Fa-f]+)\n\{\n\}$", text, re.MULTILINE)]
    assert tuple(found) == s820.LAYOUT


def test_realistic_headers(tmp_path: Path) -> None:
    folder = build_s820_folder(tmp_path, preloader=PRELOADER, image_scale=0.5)
    for name in ("MBR", "EBR1", "EBR2"):
        data = (folder / name).read_bytes()
        assert len(data) == 512 and data[510:] == b"\x55\xaa"
    mbr = (folder / "MBR").read_bytes()
    entries = [struct.unpack_from("<B3sB3sII", mbr, 446 + 16 * i) for i in range(4)]
    starts = dict(s820.LAYOUT)
    assert [e[2] for e in entries] == [0x83, 0x83, 0x83, 0x05]
    assert entries[0][4] == (starts["ANDROID"] - 0x600000) // 512
    assert entries[0][5] == (starts["CACHE"] - starts["ANDROID"]) // 512
    assert entries[3][4] == (starts["EBR1"] - 0x600000) // 512
    for name in ("boot.img", "recovery.img"):
        data = (folder / name).read_bytes()
        assert data[:8] == b"ANDROID!"
        ksize, _, rsize, _, _, _, _, page = struct.unpack_from("<8I", data, 8)
        assert page == 2048
        assert (1 + -(-ksize // page) + -(-rsize // page)) * page == len(data)
        assert struct.unpack_from("<I", data, page)[0] == 0x58881688  # MTK kernel header
    for name in ("lk.bin", "logo.bin"):
        data = (folder / name).read_bytes()
        magic, dsize = struct.unpack_from("<II", data)
        assert magic == 0x58881688 and dsize == len(data) - 512
    for name in ("system.img", "cache.img", "userdata.img"):
        data = (folder / name).read_bytes()
        assert struct.unpack_from("<H", data, 1024 + 0x38)[0] == 0xEF53


def test_scale_limits(tmp_path: Path) -> None:
    small = build_s820_folder(tmp_path / "s", preloader=PRELOADER, image_scale=0.001)
    assert (small / "boot.img").stat().st_size == 8192
    assert (small / "lk.bin").stat().st_size == 4096
    big = build_s820_folder(tmp_path / "b", preloader=PRELOADER, image_scale=4)
    assert (big / "lk.bin").stat().st_size == 0x60000  # capped at the UBOOT partition
    with pytest.raises(UsageError):
        build_s820_folder(tmp_path / "x", preloader=PRELOADER, image_scale=0)
