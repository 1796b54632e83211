"""Builders of real firmware-like archives (benign and hostile) for the fetch tests."""

from __future__ import annotations

import hashlib
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import py7zr

BUILD = "S820_ROW_S124_140404"
SCATTER = "MT6589_Android_scatter_emmc.txt"


def firmware_files(fixtures_dir: Path, *, tool: bool = True, seed: int = 1,
                   image_kib: int = 256) -> dict[str, bytes]:
    """A small S820-shaped package: target_bin/ with a real scatter text and a few images,
    plus an SP_Flash_Tool folder holding a DA file."""
    rng = np.random.default_rng(seed)
    scatter = (fixtures_dir / "scatter" / "MT6589_Android_scatter_emmc.lenovo-s960.txt"
               ).read_bytes()
    base = f"{BUILD}/target_bin"
    files = {
        f"{base}/{SCATTER}": scatter,
        f"{base}/preloader_s820.bin": rng.integers(0, 256, 12 * 1024, dtype=np.uint8).tobytes(),
        f"{base}/boot.img": rng.integers(0, 256, image_kib * 1024, dtype=np.uint8).tobytes(),
        f"{base}/userdata.img": bytes(image_kib * 1024),
        f"{base}/Checksum.ini": b"[VERSION]\r\n",
    }
    if tool:
        files[f"{BUILD}/SP_Flash_Tool_v3.1316/MTK_AllInOne_DA.bin"] = (
            rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return files


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_7z(path: Path, files: dict[str, bytes], *, plain_header: bool = False) -> Path:
    sz = py7zr.SevenZipFile(path, "w")
    if plain_header:
        sz.set_encoded_header_mode(False)
    for name, data in files.items():
        sz.writestr(data, name)
    sz.close()
    return path


def zip_with_mode(path: Path, name: str, data: bytes, mode: int,
                  extra: dict[str, bytes] | None = None) -> Path:
    """A zip holding `name` with unix mode `mode` (symlink, device …) plus `extra` files."""
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in (extra or {}).items():
            zf.writestr(n, d)
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = (mode & 0xFFFF) << 16
        zf.writestr(info, data)
    return path


def zip_raw_name(path: Path, name: str, data: bytes,
                 extra: dict[str, bytes] | None = None) -> Path:
    """zipfile.writestr keeps the name as given, so hostile names go in verbatim."""
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in (extra or {}).items():
            zf.writestr(n, d)
        zf.writestr(zipfile.ZipInfo(name), data)
    return path


def patch_7z_name(path: Path, old: str, new: str) -> None:
    """Rewrite a member name in a 7z with a plain header and fix both CRCs, so hostile names
    py7zr would refuse to write can still be tested. 7z stores names as NUL-terminated
    UTF-16-LE, so `old` and `new` must have the same *encoded* length (a non-BMP character is
    two UTF-16 units) and `new` cannot hold a NUL."""
    old_raw, new_raw = old.encode("utf-16-le"), new.encode("utf-16-le")
    assert len(old_raw) == len(new_raw), "stand-in must match the UTF-16 length of the name"
    assert "\x00" not in new, "a 7z member name cannot hold NUL (it ends the name)"
    raw = bytearray(path.read_bytes())
    off, size, _crc = struct.unpack("<QQI", raw[12:32])
    # Search the header only (packed data may hold any short byte run), for the name with a
    # NUL before it (external flag or the previous name's terminator) and its own terminator.
    start, end = 32 + off, 32 + off + size
    needle = b"\x00" + old_raw + b"\x00\x00"
    i = raw.find(needle, start, end)
    assert i >= 0, "write the archive with plain_header=True"
    assert raw.find(needle, i + 1, end) < 0, f"stand-in {old!r} is not unique in the header"
    raw[i + 1:i + 1 + len(old_raw)] = new_raw
    header = bytes(raw[32 + off:32 + off + size])
    raw[28:32] = struct.pack("<I", zlib.crc32(header))
    raw[8:12] = struct.pack("<I", zlib.crc32(bytes(raw[12:32])))
    path.write_bytes(bytes(raw))


SYMLINK_MODE = stat.S_IFLNK | 0o777
CHARDEV_MODE = stat.S_IFCHR | 0o600


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
