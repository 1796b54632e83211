"""A synthetic Lenovo S820-like SP Flash Tool package, for tests, the flash engine and the demo.

Real S820 firmware is 711 MB of vendor files we can neither ship nor use in tests, so this
builds a folder with the same *shape*: an old-format MT6589 scatter with exactly the
`romkit.sim.s820.LAYOUT` regions, the caller's preloader, small images whose first bytes look
like the real thing where that is cheap (MBR/EBR partition tables, MTK image headers, Android
boot image headers, ext4 superblocks), a valid checksum.ini and a build-info file.

Every file says "ROMKIT SYNTHETIC" in its own bytes so nobody mistakes it for real firmware,
and the output is deterministic: the same arguments give byte-identical files (content is
SHAKE-256 of a seed made from the build id, android version and file name).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from romkit.errors import UsageError
from romkit.firmware.checksum import CHECKSUM_NAMES, compute_checksums, render_checksum_ini
from romkit.firmware.images import SPARSE_HEADER, SPARSE_MAGIC
from romkit.firmware.scatter import Layout, parse_scatter_text, write_scatter
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


def _filler(seed: bytes, name: str, n: int) -> bytes:
    """Deterministic pseudo-random bytes (never all zeros) for one file."""
    return hashlib.shake_256(seed + b"|" + name.encode()).digest(n) if n > 0 else b""


def _notice(what: str) -> bytes:
    return f"{NOTICE} :: {what}".encode()


def _layout() -> Layout:
    text = f"# {NOTICE}\n" + "".join(f"{name} 0x{addr:x}\n{{\n}}\n" for name, addr in s820.LAYOUT)
    return parse_scatter_text(text, SCATTER_NAME)


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


def _tables(layout: Layout) -> dict[str, bytes]:
    """MBR / EBR1 / EBR2 with entries computed from the layout (LBAs in 512-byte sectors)."""
    def part(name: str) -> tuple[int, int]:
        p = layout.get(name)
        assert p is not None and p.physical_start is not None
        size = p.size if p.size is not None else s820.USER_SIZE["4G"] - p.physical_start
        return p.physical_start // SECTOR, size // SECTOR

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
    chunks = [struct.pack("<HHII", 0xCAC1, 0, raw_blocks, 12 + len(padded)) + padded]
    if total > raw_blocks:
        chunks.append(struct.pack("<HHII", 0xCAC3, 0, total - raw_blocks, 12))
    header = SPARSE_HEADER.pack(SPARSE_MAGIC, 1, 0, SPARSE_HEADER.size, 12, BLOCK, total,
                                len(chunks), 0)
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
    layout = _layout()
    target = Path(dest) / "target_bin"
    seed = hashlib.sha256(f"romkit-s820|{build_id}|{android}".encode()).digest()
    files: dict[str, bytes] = {
        PRELOADER_NAME: bytes(preloader),
        **_tables(layout),
    }
    for file, part, base in IMAGES:
        p = layout.get(part)
        assert p is not None
        minimum = 4 * PAGE if file in ("boot.img", "recovery.img") else BLOCK
        size = _size(base, image_scale, minimum, p.size)
        data = _image(file, part, size, seed)
        if file == "system.img" and sparse_system:
            data = _sparse(data, _size(SPARSE_EXPANDED, image_scale, size, p.size))
        files[file] = data
    atomic_write_text(target / SCATTER_NAME, write_scatter(layout))
    for name, data in files.items():
        atomic_write_bytes(target / name, data)
    info = [f"# {NOTICE}", f"ro.build.display.id={build_id}",
            f"ro.build.version.release={android}", "ro.product.model=Lenovo S820 (synthetic)",
            "ro.product.device=S820_ROW", "ro.board.platform=mt6589",
            "ro.romkit.synthetic=true"]
    atomic_write_text(target / "build_info.txt", "\n".join(info) + "\n")
    sums = compute_checksums({p.name: target / _file_for(p.name) for p in
                              layout.download_partitions if _file_for(p.name)})
    atomic_write_text(target / CHECKSUM_NAMES[0],
                      render_checksum_ini(sums, change_id=CHANGE_ID, comment=NOTICE))
    if da is not None:
        atomic_write_bytes(Path(dest) / FLASH_TOOL_DIR / DA_NAME, bytes(da))
    return target


def _file_for(partition: str) -> str:
    """The file this builder writes for a downloadable partition ('' for PRELOAD: none)."""
    fixed = {"PRELOADER": PRELOADER_NAME, "MBR": "MBR", "EBR1": "EBR1", "EBR2": "EBR2"}
    if partition in fixed:
        return fixed[partition]
    return next((f for f, p, _ in IMAGES if p == partition), "")
