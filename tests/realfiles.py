"""The real-file corpus (tests/fixtures/real, sources in its SOURCES.md) and folder builders.

Everything here reads the corpus with the test's own means (regexes, struct) so that what
romkit says can be checked against an independent reading.
"""

from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

REAL = Path(__file__).parent / "fixtures" / "real"
SCATTERS = sorted((REAL / "scatter").glob("*.txt"))
EMI_TABLES = sorted((REAL / "emi").glob("*.bin"))
PRELOADERS = sorted((REAL / "preloader").glob("*.bin"))

# A full, real preloader for a scatter of the corpus (same firmware dump).
REAL_PRELOADER_FOR = {
    "MT6739_Android_scatter.leagoo-m11.txt": "preloader_c767_otd_l6202l_39_o1.bin",
    "MT6771_Android_scatter.umidigi-f1.txt": "preloader_g38v71c2k_kw_f1_play_eea.bin",
}


def read_text(path: Path) -> str:
    return path.read_bytes().decode("latin-1")


def scatter_items(text: str) -> list[dict[str, str]]:
    """Every partition item of a V1.1/V2.x scatter as {key: value}, read line by line."""
    items: list[dict[str, str]] = []
    for line in text.splitlines():
        m = re.match(r"^\s*(-\s+)?([A-Za-z_]\w*)\s*:\s*(.*?)\s*$", line)
        if not m:
            continue
        key, value = m.group(2), m.group(3)
        if key == "partition_index":
            items.append({})
        if items and key not in ("storage_type", "description", "general", "info"):
            items[-1][key] = value
    return items


def storage_blocks(text: str) -> dict[str, str]:
    """V2.x: the text of each `- storage_type: X` block, by X."""
    parts = re.split(r"^- storage_type:\s*(\S+)\s*$", text, flags=re.MULTILINE)
    return {parts[i].upper(): parts[i + 1] for i in range(1, len(parts), 2)}


def emi_version_of(data: bytes) -> int:
    at = data.find(b"MTK_BLOADER_INFO_v")
    return int(data[at + 18:at + 20])


def wrap_in_gfh(block: bytes, sig_len: int = 0x20) -> bytes:
    """A placeholder raw preloader around a real EMI block: GFH FILE_INFO header, filler
    marked ROMKIT SYNTHETIC, the block, its u32 length, a fake signature. Only the EMI
    table inside is real."""
    body = bytearray(0x100)
    body[0:8] = b"MMM\x01\x38\x00\x00\x00"
    body[8:20] = b"FILE_INFO".ljust(12, b"\0")
    body += b"ROMKIT SYNTHETIC placeholder around a real EMI table".ljust(0x80, b"\0")
    body += block + struct.pack("<I", len(block))
    file_len = len(body) + sig_len
    struct.pack_into("<IHBBIIIIIII", body, 0x14, 1, 0, 5, 1, 0x201000, file_len, 0x40000,
                     0x100, sig_len, 0x104, 0)
    return bytes(body) + b"\xEE" * sig_len


def emi_table(version: int) -> bytes:
    """The corpus's real EMI table of `version`."""
    return next(p for p in EMI_TABLES if p.name.startswith(f"v{version:02d}_")).read_bytes()


def stock_folder(scatter: Path, dest: Path, *, preloader: bytes | None = None) -> Path:
    """A folder holding a real scatter and a file for every image it downloads.

    Images are placeholders (16 zero bytes) — the corpus keeps scatters, not whole
    firmware. The preloader is `preloader` when given, else the real one of the same dump
    when the corpus has it; the caller decides otherwise.
    """
    dest.mkdir(parents=True, exist_ok=True)
    name = scatter.name.split(".")[0] + ".txt"
    shutil.copy(scatter, dest / name)
    items = scatter_items(read_text(scatter))
    real = REAL_PRELOADER_FOR.get(scatter.name)
    for item in items:
        file_name = item.get("file_name", "NONE")
        if item.get("is_download") != "true" or file_name.upper() == "NONE":
            continue
        target = dest / file_name
        if target.exists():
            continue
        if item.get("partition_name", "").lower() == "preloader":
            if preloader is not None:
                target.write_bytes(preloader)
                continue
            if real is not None:
                shutil.copy(REAL / "preloader" / real, target)
                continue
        target.write_bytes(bytes(16))
    return dest
