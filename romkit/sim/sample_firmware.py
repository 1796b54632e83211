"""A synthetic Lenovo S820-like SP Flash Tool package, for tests, the flash engine and the demo.

Real S820 firmware is 711 MB of vendor files we can neither ship nor use in tests, so this
builds a folder with the same *shape*: an old-format MT6589 scatter with exactly the
`romkit.sim.s820.LAYOUT` regions, the caller's preloader, small images whose first bytes look
like the real thing where that is cheap (MBR/EBR partition tables, MTK image headers, Android
boot image headers, ext4 superblocks), a valid checksum.ini and a build-info file.

Every file says "ROMKIT SYNTHETIC" in its own bytes so nobody mistakes it for real firmware,
and the output is deterministic: the same arguments give byte-identical files (content is
SHAKE-256 of a seed made from the build id, android version and file name).

Independence (issue 14): everything here — the scatter text, the checksum.ini, the sparse
image — is written by this module from the public format facts (../shared/reference/
spft-formats.md §1–2, AOSP's sparse_format.h), never with romkit.firmware. romkit's parsers
then read these files as they would read a vendor package, so the two implementations check
each other.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from romkit import __version__, bytesum
from romkit.errors import UsageError
from romkit.fsutil import atomic_write_bytes, atomic_write_text
from romkit.sim import s820

MARKER = b"ROMKIT SYNTHETIC"
NOTICE = "ROMKIT SYNTHETIC sample firmware - not real Lenovo firmware"
SCATTER_NAME = "MT6589_Android_scatter_emmc.txt"
PRELOADER_NAME = "preloader_s820.bin"
FLASH_TOOL_DIR = "SP_Flash_Tool_v3.1316"
DA_NAME = "MTK_AllInOne_DA.bin"
CHANGE_ID = 1396569600  # 2014-04-04 00:00 UTC, the S124_140404 build date; fixed for determinism
SECTOR = 512
PAGE = 2048  # Android boot image page size on MT6589
BLOCK = 4096
MTK_IMAGE_MAGIC = 0x58881688  # MediaTek image header on lk / logo / kernel / ramdisk
ANDROID_MAGIC = b"ANDROID!"
EXT4_MAGIC = 0xEF53

# (file, partition, base size in bytes at image_scale 1.0)
IMAGES: tuple[tuple[str, str, int], ...] = (
    ("lk.bin", "UBOOT", 128 * 1024),
    ("boot.img", "BOOTIMG", 1024 * 1024),
    ("recovery.img", "RECOVERY", 1024 * 1024),
    ("secro.img", "SEC_RO", 64 * 1024),
    ("logo.bin", "LOGO", 128 * 1024),
    ("system.img", "ANDROID", 2 * 1024 * 1024),
    ("cache.img", "CACHE", 256 * 1024),
    ("userdata.img", "USRDATA", 256 * 1024),
)
SPARSE_EXPANDED = 64 * 1024 * 1024  # system.img's expanded size when built sparse
# Android sparse image (AOSP libsparse sparse_format.h): magic, major 1, minor 0, 28-byte file
# header, 12-byte chunk headers; chunk types RAW 0xCAC1, DONT_CARE 0xCAC3.
SPARSE_MAGIC = 0xED26FF3A
SPARSE_FILE_HEADER = struct.Struct("<IHHHHIIII")
CHUNK_RAW, CHUNK_DONT_CARE = 0xCAC1, 0xCAC3
# checksum.ini in CheckSum_Gen's v5 shape (spft-formats.md §2 (B)): SP Flash Tool looks for it
# as Checksum.ini; values are 16-bit byte sums of the image files.
CHECKSUM_INI = "Checksum.ini"
NODL = "__NODL_"
MARKERS = ("BMTPOOL",)  # scatter entries that are sentinels, not partitions
USER_OFFSET = 0x600000  # linear → user-area physical (mtk-protocol.md §9)


@dataclass(frozen=True)
class Region:
    """One scatter entry of the synthetic layout, as this builder needs it."""

    name: str  # without __NODL_
    linear: int
    size: int | None  # None: up to the end of the user area (the last real partition)
    download: bool  # has an image in the package (not __NODL_, not a marker)

    @property
    def physical(self) -> int:
        """Offset in its hardware partition: PRELOADER is BOOT1 at 0, the rest the user area."""
        return 0 if self.name == "PRELOADER" else self.linear - USER_OFFSET


def _filler(seed: bytes, name: str, n: int) -> bytes:
    """Deterministic pseudo-random bytes (never all zeros) for one file."""
    return hashlib.shake_256(seed + b"|" + name.encode()).digest(n) if n > 0 else b""


def _notice(what: str) -> bytes:
    return f"{NOTICE} :: {what}".encode()


def scatter_text() -> str:
    """The old-format MT6589 scatter ("NAME 0xADDR" then "{" "}", as in the Lenovo S960
    fixture): one entry per s820.LAYOUT region, after a comment saying it is synthetic."""
    return f"# {NOTICE}\n" + "".join(f"{name} 0x{addr:x}\n{{\n}}\n"
                                      for name, addr in s820.LAYOUT)


def regions() -> dict[str, Region]:
    """The layout's regions by name; a size runs to the next entry's start."""
    out: dict[str, Region] = {}
    entries = list(s820.LAYOUT)
    for i, (raw, linear) in enumerate(entries):
        name = raw.removeprefix(NODL)
        if name in MARKERS:
            continue
        nxt = entries[i + 1] if i + 1 < len(entries) else None
        size = None if nxt is None or nxt[0].removeprefix(NODL) in MARKERS else nxt[1] - linear
        out[name] = Region(name, linear, size, not raw.startswith(NODL))
    return out


def _size(base: int, scale: float, minimum: int, limit: int | None) -> int:
    size = max(minimum, -(-int(base * scale) // BLOCK) * BLOCK)
    return min(size, limit) if limit is not None else size


# -- image makers --------------------------------------------------------------------------------


def _mbr_entry(ptype: int, lba: int, sectors: int) -> bytes:
    return struct.pack("<B3sB3sII", 0, b"\0\0\0", ptype, b"\0\0\0", lba, sectors)


def _partition_table(what: str, entries: list[bytes]) -> bytes:
    boot = _notice(what).ljust(446, b"\0")[:446]
    table = b"".join(entries).ljust(64, b"\0")
    return boot + table + b"\x55\xaa"


def _tables(layout: dict[str, Region]) -> dict[str, bytes]:
    """MBR / EBR1 / EBR2 with entries computed from the layout (LBAs in 512-byte sectors)."""
    def part(name: str) -> tuple[int, int]:
        p = layout[name]
        size = p.size if p.size is not None else s820.USER_SIZE["4G"] - p.physical
        return p.physical // SECTOR, size // SECTOR

    ebr1_lba, _ = part("EBR1")
    ebr2_lba, _ = part("EBR2")
    preload_lba, preload_len = part("PRELOAD")
    mbr = [_mbr_entry(0x83, *part(n)) for n in ("ANDROID", "CACHE", "USRDATA")]
    mbr.append(_mbr_entry(0x05, ebr1_lba, 0xFFFFFFFF - ebr1_lba))
    ebr1 = [_mbr_entry(0x83, preload_lba - ebr1_lba, preload_len),
            _mbr_entry(0x05, ebr2_lba - ebr1_lba, 1)]
    return {"MBR": _partition_table("MBR", mbr), "EBR1": _partition_table("EBR1", ebr1),
            "EBR2": _partition_table("EBR2", [])}


def _mtk_image(name: str, size: int, seed: bytes, file: str) -> bytes:
    """MediaTek image: 512-byte header (magic, payload size, name, 0xFF fill) + payload."""
    header = struct.pack("<II32sI", MTK_IMAGE_MAGIC, size - SECTOR,
                         name.encode().ljust(32, b"\0"), 0xFFFFFFFF)
    header = header.ljust(SECTOR, b"\xff")
    payload = _notice(file) + _filler(seed, file, size - SECTOR)
    return header + payload[: size - SECTOR]


def _boot_image(file: str, size: int, seed: bytes, label: str) -> bytes:
    """Android boot image v0: header page, MTK-wrapped kernel, MTK-wrapped ramdisk."""
    pages = size // PAGE - 1
    kernel_pages = max(1, pages // 2)
    ramdisk_pages = pages - kernel_pages
    kernel = _mtk_image("KERNEL", kernel_pages * PAGE, seed, file + ":kernel")
    ramdisk = _mtk_image("ROOTFS", ramdisk_pages * PAGE, seed, file + ":ramdisk")
    body_id = hashlib.sha256(kernel + ramdisk).digest()
    header = ANDROID_MAGIC + struct.pack(
        "<10I16s512s32s", len(kernel), 0x10008000, len(ramdisk), 0x11000000, 0, 0x10F00000,
        0x10000100, PAGE, 0, 0, label.encode()[:16], _notice(file)[:512], body_id)
    return header.ljust(PAGE, b"\0") + kernel + ramdisk


def _ext4_image(file: str, size: int, seed: bytes, volume: str) -> bytes:
    """Pseudo-random blocks with an ext4 superblock (magic 0xEF53) at byte 1024."""
    data = bytearray(_filler(seed, file, size))
    boot = _notice(file).ljust(1024, b"\0")
    data[:1024] = boot
    sb = bytearray(1024)
    struct.pack_into("<II", sb, 0, 16 * (size // BLOCK), size // BLOCK)  # inodes, blocks
    struct.pack_into("<I", sb, 0x18, 2)  # log block size: 1024 << 2 = 4096
    struct.pack_into("<H", sb, 0x38, EXT4_MAGIC)
    sb[0x78:0x88] = volume.encode().ljust(16, b"\0")
    data[1024:2048] = sb
    return bytes(data)


def _sparse(raw: bytes, expanded: int) -> bytes:
    """Wrap `raw` as an Android sparse image: one RAW chunk, one DONT_CARE chunk."""
    raw_blocks = -(-len(raw) // BLOCK)
    total = max(raw_blocks, expanded // BLOCK)
    padded = raw.ljust(raw_blocks * BLOCK, b"\0")
    chunks = [struct.pack("<HHII", CHUNK_RAW, 0, raw_blocks, 12 + len(padded)) + padded]
    if total > raw_blocks:
        chunks.append(struct.pack("<HHII", CHUNK_DONT_CARE, 0, total - raw_blocks, 12))
    header = SPARSE_FILE_HEADER.pack(SPARSE_MAGIC, 1, 0, SPARSE_FILE_HEADER.size, 12, BLOCK,
                                     total, len(chunks), 0)
    return header + b"".join(chunks)


def _image(file: str, part: str, size: int, seed: bytes) -> bytes:
    if file == "lk.bin":
        return _mtk_image("LK", size, seed, file)
    if file == "logo.bin":
        return _mtk_image("LOGO", size, seed, file)
    if file in ("boot.img", "recovery.img"):
        return _boot_image(file, size, seed, "S820 SYNTH " + part[:5])
    if file == "secro.img":
        return (_notice(file) + _filler(seed, file, size))[:size]
    volume = {"system.img": "system", "cache.img": "cache", "userdata.img": "data"}[file]
    return _ext4_image(file, size, seed, volume)


def build_s820_folder(dest: Path, *, preloader: bytes, da: bytes | None = None,
                      build_id: str = "DEMO_S820_ROW_S124", android: str = "4.2.1",
                      image_scale: float = 1.0, sparse_system: bool = False) -> Path:
    """Write a synthetic S820 firmware package under `dest`; return its `target_bin` folder.

    `image_scale` multiplies the image sizes (about 5 MiB at 1.0; never beyond a partition);
    `sparse_system` stores system.img as an Android sparse image (64 MiB expanded × scale).
    """
    if not image_scale > 0 or image_scale > 64:
        raise UsageError(f"image_scale {image_scale} is out of range",
                         hint="use a positive factor up to 64")
    layout = regions()
    target = Path(dest) / "target_bin"
    seed = hashlib.sha256(f"romkit-s820|{build_id}|{android}".encode()).digest()
    files: dict[str, bytes] = {
        PRELOADER_NAME: bytes(preloader),
        **_tables(layout),
    }
    for file, part, base in IMAGES:
        p = layout[part]
        minimum = 4 * PAGE if file in ("boot.img", "recovery.img") else BLOCK
        size = _size(base, image_scale, minimum, p.size)
        data = _image(file, part, size, seed)
        if file == "system.img" and sparse_system:
            data = _sparse(data, _size(SPARSE_EXPANDED, image_scale, size, p.size))
        files[file] = data
    atomic_write_text(target / SCATTER_NAME, scatter_text())
    for name, data in files.items():
        atomic_write_bytes(target / name, data)
    info = [f"# {NOTICE}", f"ro.build.display.id={build_id}",
            f"ro.build.version.release={android}", "ro.product.model=Lenovo S820 (synthetic)",
            "ro.product.device=S820_ROW", "ro.board.platform=mt6589",
            "ro.romkit.synthetic=true"]
    atomic_write_text(target / "build_info.txt", "\n".join(info) + "\n")
    sums = {r.name: bytesum.byte_sum16(files[_file_for(r.name)])
            for r in layout.values() if r.download and _file_for(r.name)}
    atomic_write_text(target / CHECKSUM_INI, checksum_ini_text(sums))
    if da is not None:
        atomic_write_bytes(Path(dest) / FLASH_TOOL_DIR / DA_NAME, bytes(da))
    return target


def checksum_ini_text(sums: dict[str, int]) -> str:
    """checksum.ini in CheckSum_Gen's v5 shape: [VERSION], [IsEnableChecksum], [CheckSum]
    with one `NAME=0x<4 hex digits>` line per image, in scatter order (spft-formats.md §2 (B))."""
    lines = [f"; {NOTICE}", "[VERSION]", "VERSION=V1", f"TOOL=romkit {__version__}",
             f"Change_ID={CHANGE_ID}", "[IsEnableChecksum]", "CHECKSUM_SWITCH=1", "[CheckSum]"]
    lines += [f"{name}=0x{value & 0xFFFF:04X}" for name, value in sums.items()]
    return "\n".join(lines) + "\n"


def _file_for(partition: str) -> str:
    """The file this builder writes for a downloadable partition ('' for PRELOAD: none)."""
    fixed = {"PRELOADER": PRELOADER_NAME, "MBR": "MBR", "EBR1": "EBR1", "EBR2": "EBR2"}
    if partition in fixed:
        return fixed[partition]
    return next((f for f, p, _ in IMAGES if p == partition), "")
