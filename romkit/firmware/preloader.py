"""MediaTek preloader images: GFH header, BOOT1 wrapping and the EMI (memory chip) table.

Why this exists: a preloader can only bring up the DRAM of memory parts listed in its
`MTK_BLOADER_INFO` EMI table, and the flash engine uploads that same table to the DA. A 2014
Lenovo S820 carries a part that 2013 preloaders do not list, which is SP Flash Tool error
4032 and a phone that will not boot. This module makes that visible: it reads the table,
names the parts, and answers "does this preloader support the chip with this CID?".

Layout facts: ../shared/reference/mtk-protocol.md §6. Two on-disk forms are accepted:

* raw - `preloader_<project>.bin` as shipped in firmware, starting with the GFH FILE_INFO
  block (`MMM\\x01\\x38\\x00\\x00\\x00`);
* boot1 - what lands on eMMC BOOT1: `EMMC_BOOT` header at 0, `BRLYT` layout block (at 0x200
  in romkit's images), the raw image at the BRLYT boot region address (0x800).

All multi-byte fields in these structures are little-endian.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from romkit.errors import DiskError, FirmwareFormatError

# -- GFH ------------------------------------------------------------------------------------
GFH_MAGIC = b"MMM"
GFH_FILE_INFO_SIG = b"MMM\x01\x38\x00\x00\x00"  # magic, version 1, size 0x38, type 0
GFH_FILE_INFO_SIZE = 0x38
GFH_FILE_INFO_ID = b"FILE_INFO"
GFH_TYPE_NAMES = {0x0000: "FILE_INFO", 0x0001: "BL_INFO"}
_GFH_MAX_BLOCKS = 32

# -- BOOT1 wrapping (positions used by romkit when it builds a BOOT1 image) -------------------
EMMC_BOOT_MAGIC = b"EMMC_BOOT"
BRLYT_MAGIC = b"BRLYT"
BOOT1_BRLYT_OFFSET = 0x200
BOOT1_GFH_OFFSET = 0x800
BOOT1_HEADER_VERSION = 1
BRLYT_VERSION = 1
BRLYT_DESC_MAGIC = b"BBBB"
BRLYT_DESC_COUNT = 8
BRLYT_DESC_SIZE = 20
BRLYT_DEV_EMMC = 0x0005  # [I] boot device code written in romkit's descriptor 0
BRLYT_TYPE_BL = 0x0001  # [I] descriptor type "bootloader"
SECTOR = 512

# -- MTK_BLOADER_INFO / EMI table -------------------------------------------------------------
BLOADER_MAGIC = b"MTK_BLOADER_INFO_v"
BLOADER_ID_SIZE = 27
BLOADER_FILENAME_OFFSET = 0x1B
BLOADER_FILENAME_SIZE = 61
BLOADER_VERSION_TAG_OFFSET = 0x58  # "V116"
BLOADER_SEED_OFFSET = 0x5C  # checksum seed 0x33448822
BLOADER_START_ADDR_OFFSET = 0x60
BLOADER_MTK_BIN_OFFSET = 0x64
MTK_BIN_MAGIC = b"MTK_BIN\x00"
EMI_COUNT_OFFSET_FROM_MTK_BIN = 0x08
EMI_ARRAY_OFFSET_FROM_MTK_BIN = 0x0C
BLOADER_TAIL_SKIP = 0x800  # a zero length trailer means: skip this much and read again
EMI_ID_FIELD_SIZE = 16
EMI_MIN_ENTRY_SIZE = 0x20  # sub_version, type, id_length, fw_id_length, ID[16]
_MAX_EMI_ENTRIES = 256


@dataclass(frozen=True)
class EmiLayout:
    """Where the fields of one EMI_SETTINGS entry sit, for one MTK_BLOADER_INFO version.

    Strides and offsets are our reading of real tables (tests/fixtures/real/emi, one per
    version, from bkerler/mtkclient's preloader corpus), cross-checked against the struct
    lengths of a public Qt EMI parser (structures.h: `emi_len[N]` = stride / 4) and
    MediaTek's emi.h field order (sub_version, type, id_length, fw_id_length, ID[16],
    fw_id[8], EMI_CONA …). docs/FORMATS.md §3 has the table.
    """

    strides: tuple[int, ...]
    type_off: int
    id_off: int
    id_size: int
    id_length_off: int
    sub_version_off: int | None = None
    fw_id_length_off: int | None = None
    cona_off: int | None = None


_STD = {"type_off": 0x04, "id_off": 0x10, "id_size": 16, "id_length_off": 0x08,
        "sub_version_off": 0x00, "fw_id_length_off": 0x0C, "cona_off": 0x28}
# v08 (MT6575/77): type, ID[12], … id_length at +0x6C. v11 (MT6572) and v14 (MT6571):
# type, ID[16], id_length at +0x14. v49/v52 (MT6853/MT6833, UFS): type, id_length, ID[16].
EMI_LAYOUTS: dict[int, EmiLayout] = {
    0: EmiLayout((0x8C,), **_STD),
    8: EmiLayout((0x88,), type_off=0, id_off=4, id_size=12, id_length_off=0x6C,
                 cona_off=0x10),
    10: EmiLayout((0xB8,), **_STD),
    11: EmiLayout((0xA8,), type_off=0, id_off=4, id_size=16, id_length_off=0x14),
    12: EmiLayout((0xBC,), **_STD),
    13: EmiLayout((0xBC,), **_STD),
    14: EmiLayout((0xA8,), type_off=0, id_off=4, id_size=16, id_length_off=0x14),
    15: EmiLayout((0xB0,), **_STD),
    16: EmiLayout((0xBC,), **_STD),
    17: EmiLayout((0xB0,), **_STD),
    20: EmiLayout((0xBC,), **_STD),
    21: EmiLayout((0xBC,), **_STD),
    22: EmiLayout((0xB0,), **_STD),
    24: EmiLayout((0xA4,), **_STD),
    25: EmiLayout((0xA0, 0x90), **_STD),
    27: EmiLayout((0xBC,), **_STD),
    28: EmiLayout((0x90,), **_STD),
    **{v: EmiLayout((0xA0,), **_STD) for v in (30, 31, 35, 36, 38, 39, 40, 45, 46, 47)},
    32: EmiLayout((0xBC,), **_STD),
    49: EmiLayout((0x54,), type_off=0, id_off=8, id_size=16, id_length_off=4),
    52: EmiLayout((0x54,), type_off=0, id_off=8, id_size=16, id_length_off=4),
}
EMI_ENTRY_SIZES = {v: lay.strides[0] for v, lay in EMI_LAYOUTS.items()}

# Memory types: MediaTek emi.h (e.g. svoboda18/preloader platform/mt6763/src/drivers/inc/
# emi.h: 0x0001 … 0x0006, 0x01xx NAND MCP, 0x02xx eMMC MCP); 0x0205/0x0206/0x0306/0x0308
# as named by a public Qt EMI parser (preloader_parser.cpp get_dram_type).
EMI_TYPE_LPDDR2 = 0x0002
EMI_TYPE_MCP_LPDDR2 = 0x0202
EMI_TYPE_MCP_LPDDR3 = 0x0203
EMI_TYPE_NAMES = {
    0x0000: "none (end of table)",
    0x0001: "discrete DDR1",
    EMI_TYPE_LPDDR2: "discrete LPDDR2",
    0x0003: "discrete LPDDR3",
    0x0004: "discrete PCDDR3",
    0x0005: "discrete LPDDR4",
    0x0006: "discrete LPDDR4X",
    0x0101: "NAND+DDR1 MCP",
    0x0102: "NAND+LPDDR2 MCP",
    0x0103: "NAND+LPDDR3 MCP",
    0x0104: "NAND+PCDDR3 MCP",
    0x0201: "eMMC+DDR1 MCP",
    EMI_TYPE_MCP_LPDDR2: "eMMC+LPDDR2 MCP",
    EMI_TYPE_MCP_LPDDR3: "eMMC+LPDDR3 MCP",
    0x0204: "eMMC+PCDDR3 MCP",
    0x0205: "eMMC+LPDDR4 MCP",
    0x0206: "eMMC+LPDDR4X MCP",
    0x0306: "eUFS+LPDDR4X uMCP",
    0x0308: "eUFS+LPDDR5 uMCP",
}


def is_discrete_type(etype: int) -> bool:
    """Discrete DRAM (type 0x00xx): emi.c picks such entries by the DRAM's own mode
    registers (vendor ID, density), never by the eMMC/NAND ID."""
    return etype != 0 and (etype & 0x0F00) == 0


def is_ufs_type(etype: int) -> bool:
    """uMCP (eUFS + DRAM): the ID is the UFS product name in ASCII, not an eMMC CID."""
    return (etype & 0x0F00) == 0x0300


# eMMC CID manufacturer IDs (JEDEC; the same names a public Qt EMI parser prints).
MANUFACTURERS = {
    0x02: "SanDisk",
    0x11: "Toshiba",
    0x13: "Micron",
    0x15: "Samsung",
    0x45: "SanDisk",
    0x70: "Kingston",
    0x74: "Transcend",
    0x88: "Foresee",
    0x8F: "UNIC",
    0x90: "Hynix",
    0xF4: "Biwin",
    0xFE: "Micron",
}

SYNTHETIC_MARKER = b"ROMKIT SYNTHETIC"
MAX_PRELOADER_FILE = 64 * 1024 * 1024  # BOOT1 dumps are a few MiB; anything bigger is not ours

SPFT_BAD_GFH = 5066  # S_DL_PC_BL_INVALID_GFH_FILE_INFO
SPFT_UNSUPPORTED_EMI = 1036  # S_UNSUPPORTED_VER_OF_EMI_INFO

_HINT_NOT_PRELOADER = (
    "pass the preloader_<project>.bin from the firmware folder or a BOOT1 dump of the phone"
)


def _bad(message: str, hint: str = _HINT_NOT_PRELOADER, **details: Any) -> FirmwareFormatError:
    return FirmwareFormatError(message, hint=hint, spft_code=SPFT_BAD_GFH, details=details)


def _u16(buf: bytes, off: int, what: str) -> int:
    if off < 0 or off + 2 > len(buf):
        raise _bad(f"preloader is truncated: {what} at 0x{off:X} lies past the end")
    return int.from_bytes(buf[off:off + 2], "little")


def _u32(buf: bytes, off: int, what: str) -> int:
    if off < 0 or off + 4 > len(buf):
        raise _bad(f"preloader is truncated: {what} at 0x{off:X} lies past the end")
    return int.from_bytes(buf[off:off + 4], "little")


def _cstr(raw: bytes) -> str:
    """A NUL-terminated ASCII field as text (non-ASCII bytes shown as escapes, not dropped)."""
    return raw.split(b"\x00", 1)[0].decode("ascii", "backslashreplace")


# -- memory part naming ----------------------------------------------------------------------
def manufacturer_name(mid: int) -> str:
    """Name of the eMMC manufacturer ID (CID byte 0)."""
    return MANUFACTURERS.get(mid, f"manufacturer 0x{mid:02X}")


def product_name(cid_or_id: bytes) -> str:
    """The ASCII product name (CID bytes 3..8).

    A name with an unprintable byte shows its printable characters and then the hex of all
    six bytes ("H8G4u (483847347592)"), so neither the readable part nor the exact bytes
    are lost; a name with nothing printable is hex only.
    """
    name = cid_or_id[3:9].rstrip(b"\x00")
    if name and all(0x20 <= b < 0x7F for b in name):
        return name.decode("ascii")
    printable = "".join(chr(b) for b in name if 0x20 <= b < 0x7F).strip()
    return f"{printable} ({name.hex()})" if printable else name.hex()


# NAND maker codes (JEDEC ID byte 0), for NAND MCP entries (types 0x01xx).
NAND_MAKERS = {0x2C: "Micron", 0x98: "Toshiba", 0xAD: "Hynix", 0xC2: "Macronix",
               0xC8: "GigaDevice", 0xEC: "Samsung"}


def ufs_name(part_id: bytes) -> str:
    """A UFS product ID as text ("H9HQ16AFAMMDAR"); hex when it is not printable ASCII."""
    name = part_id.rstrip(b"\x00 ")
    if name and all(0x20 <= b < 0x7F for b in name):
        return name.decode("ascii")
    return name.hex()


def describe_part(cid_or_id: bytes) -> str:
    """Human name of a memory part from its CID or EMI ID bytes, e.g. "Hynix SIM14H"."""
    if not cid_or_id:
        return "any part (fallback entry)"
    product = product_name(cid_or_id)
    maker = manufacturer_name(cid_or_id[0])
    return f"{maker} {product}" if product else maker


# -- data model ------------------------------------------------------------------------------
@dataclass(frozen=True)
class GfhBlock:
    """One GFH block header found in the chain at the start of the image."""

    offset: int
    type: int
    size: int
    version: int

    @property
    def name(self) -> str:
        return GFH_TYPE_NAMES.get(self.type, f"0x{self.type:04X}")


@dataclass(frozen=True)
class EmiEntry:
    """One EMI_SETTINGS entry: a memory part (by ID prefix) with its DRAM settings."""

    index: int
    type: int
    id_length: int
    id: bytes  # the id_length bytes the phone's CID must start with
    raw: bytes = field(repr=False)
    sub_version: int = 0
    fw_id_length: int = 0
    emi_cona: int | None = None

    @property
    def type_name(self) -> str:
        return EMI_TYPE_NAMES.get(self.type, f"unknown type 0x{self.type:04X}")

    @property
    def is_fallback(self) -> bool:
        """A discrete-DRAM entry (types 0x0001 … 0x0006) with id_length 0 fits any eMMC part.

        That is what emi.c does with discrete DRAM: it never looks at the eMMC ID and picks
        the entry by the DRAM's own vendor ID (docs/PROTOCOL.md step 4 states it for 0x0002,
        the only discrete type of MT6589). An MCP entry (0x01xx/0x02xx/0x03xx) with
        id_length 0 names no part and fits none. `--cid`, the listing and `compare` all use
        this one rule (docs/FORMATS.md §3).
        """
        return self.id_length == 0 and self.is_discrete

    @property
    def is_discrete(self) -> bool:
        return is_discrete_type(self.type)

    @property
    def is_ufs(self) -> bool:
        return is_ufs_type(self.type)

    @property
    def manufacturer(self) -> str:
        if not self.id:
            return "any"
        if self.is_ufs:
            return "UFS"
        if (self.type & 0x0F00) == 0x0100:
            return NAND_MAKERS.get(self.id[0], f"maker 0x{self.id[0]:02X}")
        return manufacturer_name(self.id[0])

    @property
    def product(self) -> str:
        if not self.id:
            return ""
        return ufs_name(self.id) if self.is_ufs else product_name(self.id)

    @property
    def part(self) -> str:
        if self.is_fallback:
            # Told apart by their DRAM settings: a short digest of the entry's bytes.
            digest = hashlib.sha256(self.raw).hexdigest()[:8]
            return f"any eMMC part ({self.type_name} settings {digest}, picked by DRAM ID)"
        if not self.id:
            return "no part (an MCP entry with no ID)"
        if self.is_ufs:
            return f"UFS {ufs_name(self.id)}"
        if (self.type & 0x0F00) == 0x0100:
            maker = NAND_MAKERS.get(self.id[0], f"maker 0x{self.id[0]:02X}")
            return f"NAND {maker} {self.id.hex()}"
        return describe_part(self.id)

    def matches(self, cid: bytes) -> bool:
        """The first id_length CID bytes equal the entry's ID; an entry with no ID (see
        `is_fallback`) matches every CID when it is discrete DRAM. An end-of-table entry
        (type 0) matches none."""
        if self.type == 0:
            return False
        if self.id_length == 0:
            return self.is_fallback
        return len(cid) >= self.id_length and cid[: self.id_length] == self.id

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "type": self.type,
            "type_name": self.type_name,
            "id_length": self.id_length,
            "id": self.id.hex(),
            "manufacturer": self.manufacturer,
            "product": self.product,
            "part": self.part,
            "fallback": self.is_fallback,
            "sub_version": self.sub_version,
            "fw_id_length": self.fw_id_length,
            "emi_cona": self.emi_cona,
            "raw": self.raw.hex(),
        }


@dataclass(frozen=True)
class PreloaderInfo:
    """What romkit knows about one preloader file (either form)."""

    form: str  # "raw" | "boot1" | "emi" (a bare MTK_BLOADER_INFO block)
    load_addr: int
    file_len: int
    sig_len: int
    jump_offset: int
    max_size: int
    content_offset: int
    file_ver: int
    file_type: int
    flash_dev: int
    sig_type: int
    attr: int
    gfh_blocks: tuple[GfhBlock, ...]
    emi_version: int | None
    project: str
    entries: tuple[EmiEntry, ...]
    emi_count: int | None
    emi_note: str  # empty when the EMI table was fully decoded
    bloader_offset: int | None
    emi_blob: bytes = field(repr=False)
    gfh: bytes = field(repr=False)

    @property
    def synthetic(self) -> bool:
        """True for romkit's own test/demo preloaders (they say so in their body)."""
        return SYNTHETIC_MARKER in self.gfh

    @property
    def emi_decoded(self) -> bool:
        return self.emi_version is not None and not self.emi_note

    def _require_table(self) -> None:
        if self.emi_version is None:
            raise FirmwareFormatError(
                "preloader has no MTK_BLOADER_INFO block, so its supported memory parts are "
                "unknown", hint="use a preloader from a complete firmware for this phone",
                spft_code=5054)
        if not self.entries and self.emi_note:
            raise FirmwareFormatError(
                f"unsupported EMI version {self.emi_version}: {self.emi_note}",
                hint="romkit decodes the EMI tables of MTK_BLOADER_INFO v00, v08 … v52 "
                     "(docs/FORMATS.md §3); check the preloader belongs to this phone's chip",
                spft_code=SPFT_UNSUPPORTED_EMI)

    def active_entries(self) -> tuple[EmiEntry, ...]:
        """Entries the DA considers: it stops at the first entry whose type is 0."""
        out: list[EmiEntry] = []
        for entry in self.entries:
            if entry.type == 0:
                break
            out.append(entry)
        return tuple(out)

    def matching_entry(self, cid: bytes) -> EmiEntry | None:
        """The entry DRAM would be set up from for this CID: an exact ID match first, else
        a fallback entry, else None (SP Flash Tool would fail with 4032)."""
        self._require_table()
        active = self.active_entries()
        for entry in active:
            if entry.id_length and entry.matches(cid):
                return entry
        for entry in active:
            if entry.is_fallback:
                return entry
        return None

    def supports(self, cid: bytes) -> bool:
        """Can this preloader bring up the memory part whose eMMC CID is `cid`?"""
        return self.matching_entry(cid) is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": self.form,
            "load_addr": self.load_addr,
            "file_len": self.file_len,
            "sig_len": self.sig_len,
            "jump_offset": self.jump_offset,
            "max_size": self.max_size,
            "content_offset": self.content_offset,
            "file_ver": self.file_ver,
            "file_type": self.file_type,
            "flash_dev": self.flash_dev,
            "sig_type": self.sig_type,
            "attr": self.attr,
            "gfh_blocks": [{"offset": b.offset, "type": b.type, "name": b.name,
                            "size": b.size} for b in self.gfh_blocks],
            "emi_version": self.emi_version,
            "project": self.project,
            "emi_count": self.emi_count,
            "emi_note": self.emi_note or None,
            "emi_blob_len": len(self.emi_blob),
            "synthetic": self.synthetic,
            "entries": [e.to_dict() for e in self.entries],
        }


# -- GFH -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _FileInfo:
    file_ver: int
    file_type: int
    flash_dev: int
    sig_type: int
    load_addr: int
    file_len: int
    max_size: int
    content_offset: int
    sig_len: int
    jump_offset: int
    attr: int


def _read_file_info(data: bytes) -> _FileInfo:
    if len(data) < GFH_FILE_INFO_SIZE:
        raise _bad(f"preloader is truncated: {len(data)} bytes, the GFH header alone needs "
                   f"{GFH_FILE_INFO_SIZE}")
    if data[:8] != GFH_FILE_INFO_SIG or data[8:8 + len(GFH_FILE_INFO_ID)] != GFH_FILE_INFO_ID:
        raise _bad("not a preloader: no GFH FILE_INFO header at the start of the file")
    (file_ver, file_type, flash_dev, sig_type, load_addr, file_len, max_size, content_offset,
     sig_len, jump_offset, attr) = struct.unpack_from("<IHBBIIIIIII", data, 0x14)
    if file_len < GFH_FILE_INFO_SIZE:
        raise _bad(f"GFH file length 0x{file_len:X} is smaller than the GFH header itself")
    if file_len > len(data):
        raise _bad(f"preloader is truncated: GFH says 0x{file_len:X} bytes, file has "
                   f"0x{len(data):X}", hint="download or dump the preloader again")
    if sig_len > file_len - GFH_FILE_INFO_SIZE:
        raise _bad(f"GFH signature length 0x{sig_len:X} does not fit in file length "
                   f"0x{file_len:X}")
    if jump_offset >= file_len or content_offset > file_len:
        raise _bad(f"GFH jump offset 0x{jump_offset:X} / content offset 0x{content_offset:X} "
                   f"lie outside the 0x{file_len:X}-byte image")
    return _FileInfo(file_ver, file_type, flash_dev, sig_type, load_addr, file_len, max_size,
                     content_offset, sig_len, jump_offset, attr)


def _gfh_chain(image: bytes) -> tuple[GfhBlock, ...]:
    """Walk the GFH blocks at the start of the image (each: MMM, ver, u16 size, u16 type)."""
    blocks: list[GfhBlock] = []
    off = 0
    while off + 8 <= len(image) and image[off:off + 3] == GFH_MAGIC:
        size = _u16(image, off + 4, "GFH block size")
        if size < 8 or off + size > len(image) or len(blocks) >= _GFH_MAX_BLOCKS:
            break
        blocks.append(GfhBlock(off, _u16(image, off + 6, "GFH block type"), size,
                               image[off + 3]))
        off += size
    return tuple(blocks)


# -- EMI table -------------------------------------------------------------------------------
def _locate_bloader(body: bytes) -> tuple[int, int] | None:
    """(start, end) of MTK_BLOADER_INFO within `body` (the image minus its signature).

    The last u32 of the body is the block's length and the block sits right before it; a zero
    length means 0x800 bytes of padding follow, so skip them and read again. If the trailer
    does not point at the magic, fall back to searching for it.
    """
    end = len(body)
    for _attempt in range(2):
        if end < 4:
            break
        length = int.from_bytes(body[end - 4:end], "little")
        if length == 0:
            end -= BLOADER_TAIL_SKIP
            continue
        start = end - 4 - length
        if start >= 0 and body[start:start + len(BLOADER_MAGIC)] == BLOADER_MAGIC:
            return start, end - 4
        break
    found = body.rfind(BLOADER_MAGIC)
    if found < 0:
        return None
    return found, len(body)


def _parse_entry(raw: bytes, index: int, size: int, lay: EmiLayout | None) -> EmiEntry:
    def u32(off: int | None) -> int:
        return int.from_bytes(raw[off:off + 4], "little") if off is not None else 0

    if lay is None:  # unknown version whose stride was inferred: assume emi.h's order
        lay = EmiLayout((size,), **_STD)
    etype, id_length = u32(lay.type_off), u32(lay.id_length_off)
    if id_length > lay.id_size:
        raise _bad(f"EMI entry {index} claims an ID of {id_length} bytes (at most "
                   f"{lay.id_size})", hint="the preloader is damaged; use another copy")
    part_id = raw[lay.id_off:lay.id_off + id_length]
    cona = u32(lay.cona_off) if lay.cona_off is not None and size >= lay.cona_off + 4 \
        else None
    return EmiEntry(index=index, type=etype, id_length=id_length, id=part_id, raw=raw,
                    sub_version=u32(lay.sub_version_off),
                    fw_id_length=u32(lay.fw_id_length_off), emi_cona=cona)


@dataclass(frozen=True)
class _EmiTable:
    version: int | None
    project: str
    count: int | None
    entries: tuple[EmiEntry, ...]
    blob: bytes
    note: str
    offset: int | None


def _stride(lay: EmiLayout | None, count: int, room: int, version: int) -> tuple[int, str]:
    """The entry stride and a note (empty when the version's layout is known)."""
    if lay is not None:
        exact = [s for s in lay.strides if count * s == room]
        return (exact or [s for s in lay.strides if count * s <= room] or
                [lay.strides[0]])[0], ""
    if 0 < count <= _MAX_EMI_ENTRIES and room % count == 0 \
            and room // count >= EMI_MIN_ENTRY_SIZE:
        size = room // count
        return size, (f"EMI version {version} is not fully supported: entry size 0x{size:X} "
                      "inferred from the block length; only type and IDs are decoded")
    return 0, f"unsupported EMI version {version}: entry layout unknown"


def _parse_block(block: bytes, start: int, *, bare: bool) -> _EmiTable:
    """Decode one MTK_BLOADER_INFO block. `bare`: a block on its own (as public tools
    extract them), where a table cut short decodes the whole entries present, with a note."""
    digits = block[len(BLOADER_MAGIC):len(BLOADER_MAGIC) + 2]
    if len(digits) != 2 or not digits.isdigit():
        raise _bad(f"MTK_BLOADER_INFO version {digits!r} is not a two-digit number",
                   hint="the preloader is damaged; use another copy")
    version = int(digits)
    project = _cstr(block[BLOADER_FILENAME_OFFSET:BLOADER_FILENAME_OFFSET + BLOADER_FILENAME_SIZE])
    mtk_bin = block.find(MTK_BIN_MAGIC)
    if mtk_bin < 0:
        return _EmiTable(version, project, None, (), b"", f"unsupported EMI version {version}: "
                         "no MTK_BIN marker in MTK_BLOADER_INFO", start)
    count = _u32(block, mtk_bin + EMI_COUNT_OFFSET_FROM_MTK_BIN, "EMI entry count")
    array = block[mtk_bin + EMI_ARRAY_OFFSET_FROM_MTK_BIN:]
    lay = EMI_LAYOUTS.get(version)
    size, note = _stride(lay, count, len(array), version)
    if size == 0:
        return _EmiTable(version, project, count, (), array, note, start)
    if count > _MAX_EMI_ENTRIES:
        raise _bad(f"EMI table claims {count} entries (at most {_MAX_EMI_ENTRIES})",
                   hint="the preloader is damaged or truncated")
    present = count
    if count * size > len(array):
        if not bare:
            raise _bad(f"EMI table claims {count} entries of 0x{size:X} bytes but only "
                       f"0x{len(array):X} bytes follow",
                       hint="the preloader is damaged or truncated")
        present = len(array) // size
        note = (f"the table is cut short: it claims {count} entries, {present} are complete "
                "in this file")
    blob = array[:present * size]
    try:
        entries = tuple(_parse_entry(blob[i * size:(i + 1) * size], i, size, lay)
                        for i in range(present))
    except FirmwareFormatError as exc:
        # The bytes do not follow this version's entry layout: say so rather than guess.
        return _EmiTable(version, project, count, (), blob,
                         f"unsupported EMI version {version}: the entries do not follow the "
                         f"v{version:02d} layout ({exc.message})", start)
    return _EmiTable(version, project, count, entries, blob, note, start)


def _parse_emi(body: bytes) -> _EmiTable:
    where = _locate_bloader(body)
    if where is None:
        return _EmiTable(None, "", None, (), b"", "no MTK_BLOADER_INFO block found", None)
    start, end = where
    return _parse_block(body[start:end], start, bare=False)


# -- public parsing --------------------------------------------------------------------------
def parse_preloader(data: bytes) -> PreloaderInfo:
    """Parse a preloader in raw (GFH) or BOOT1 (EMMC_BOOT/BRLYT) form."""
    data = bytes(data)
    if data.startswith(BLOADER_MAGIC):
        return parse_emi_table(data)
    if data.startswith(EMMC_BOOT_MAGIC):
        form, image = "boot1", from_boot1_image(data)
    elif data.startswith(GFH_MAGIC):
        form, image = "raw", data
    else:
        raise _bad("not a preloader: neither a GFH header (MMM), an EMMC_BOOT header nor an "
                   "MTK_BLOADER_INFO block at the start of the file")
    fi = _read_file_info(image)
    image = image[:fi.file_len]
    emi = _parse_emi(image[:fi.file_len - fi.sig_len])
    return PreloaderInfo(
        form=form, load_addr=fi.load_addr, file_len=fi.file_len, sig_len=fi.sig_len,
        jump_offset=fi.jump_offset, max_size=fi.max_size, content_offset=fi.content_offset,
        file_ver=fi.file_ver, file_type=fi.file_type, flash_dev=fi.flash_dev,
        sig_type=fi.sig_type, attr=fi.attr, gfh_blocks=_gfh_chain(image),
        emi_version=emi.version, project=emi.project, entries=emi.entries,
        emi_count=emi.count, emi_note=emi.note, bloader_offset=emi.offset,
        emi_blob=emi.blob, gfh=image)


def parse_emi_table(data: bytes) -> PreloaderInfo:
    """A bare EMI table: an MTK_BLOADER_INFO block on its own, as public tools extract it
    from a preloader. GFH fields are 0 (there is no GFH); form is "emi"."""
    data = bytes(data)
    if not data.startswith(BLOADER_MAGIC):
        raise _bad("not an EMI table: no MTK_BLOADER_INFO_v at the start of the file")
    emi = _parse_block(data, 0, bare=True)
    return PreloaderInfo(
        form="emi", load_addr=0, file_len=len(data), sig_len=0, jump_offset=0, max_size=0,
        content_offset=0, file_ver=0, file_type=0, flash_dev=0, sig_type=0, attr=0,
        gfh_blocks=(), emi_version=emi.version, project=emi.project, entries=emi.entries,
        emi_count=emi.count, emi_note=emi.note, bloader_offset=0, emi_blob=emi.blob, gfh=b"")


def read_limited(path: Path | str, limit: int) -> bytes:
    """Read a whole (small) firmware file, refusing absurd sizes before reading them."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > limit:
            raise FirmwareFormatError(
                f"{p.name} is {size} bytes, too large for this kind of file (limit {limit})",
                hint="check you passed the right file", details={"path": str(p)})
        return p.read_bytes()
    except OSError as exc:
        raise DiskError(f"cannot read {p}: {exc.strerror or exc}",
                        hint="check the path and its permissions") from exc


def load_preloader(path: Path | str) -> PreloaderInfo:
    """Parse a preloader file from disk."""
    return parse_preloader(read_limited(path, MAX_PRELOADER_FILE))


# -- BOOT1 form ------------------------------------------------------------------------------
def _align(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def to_boot1_image(raw: bytes) -> bytes:
    """Wrap a raw preloader in the EMMC_BOOT + BRLYT header that eMMC BOOT1 needs.

    Layout: EMMC_BOOT header at 0 (u32 version at 0xC, u32 BRLYT offset at 0x10), BRLYT at
    0x200 (u32 version, u32 boot_region_addr = 0x800, u32 main_region_addr, 8 descriptors),
    the raw image at 0x800, zero padding to a whole sector.
    """
    raw = bytes(raw)
    if raw.startswith(EMMC_BOOT_MAGIC):
        raise FirmwareFormatError("this preloader is already a BOOT1 image",
                                  hint="pass the raw preloader_<project>.bin instead")
    fi = _read_file_info(raw)
    image = raw[:fi.file_len]
    main_region = BOOT1_GFH_OFFSET + _align(len(image), SECTOR)
    out = bytearray(main_region)
    out[0:len(EMMC_BOOT_MAGIC)] = EMMC_BOOT_MAGIC
    struct.pack_into("<II", out, 0x0C, BOOT1_HEADER_VERSION, BOOT1_BRLYT_OFFSET)
    b = BOOT1_BRLYT_OFFSET
    out[b:b + len(BRLYT_MAGIC)] = BRLYT_MAGIC
    struct.pack_into("<III", out, b + 0x08, BRLYT_VERSION, BOOT1_GFH_OFFSET, main_region)
    struct.pack_into("<4sHHIII", out, b + 0x14, BRLYT_DESC_MAGIC, BRLYT_DEV_EMMC, BRLYT_TYPE_BL,
                     BOOT1_GFH_OFFSET, main_region, 1)
    out[BOOT1_GFH_OFFSET:BOOT1_GFH_OFFSET + len(image)] = image
    return bytes(out)


def from_boot1_image(data: bytes) -> bytes:
    """The raw preloader (exactly GFH file_len bytes) inside a BOOT1 image or dump.

    Follows EMMC_BOOT's BRLYT offset, then BRLYT's boot_region_addr. The address is read as
    a byte offset; if nothing is there but it makes sense as a sector number, that is used.
    """
    data = bytes(data)
    if not data.startswith(EMMC_BOOT_MAGIC):
        raise _bad("not a BOOT1 image: no EMMC_BOOT header at the start")
    brlyt = _u32(data, 0x10, "BRLYT offset")
    if data[brlyt:brlyt + len(BRLYT_MAGIC)] != BRLYT_MAGIC:
        raise _bad(f"BOOT1 image is damaged: no BRLYT block at 0x{brlyt:X}",
                   hint="dump BOOT1 again or use the raw preloader from the firmware")
    boot = _u32(data, brlyt + 0x0C, "BRLYT boot region address")
    candidates = [boot] + ([boot * SECTOR] if boot * SECTOR < len(data) else [])
    for start in candidates:
        if data[start:start + len(GFH_FILE_INFO_SIG)] == GFH_FILE_INFO_SIG:
            fi = _read_file_info(data[start:])
            return data[start:start + fi.file_len]
    raise _bad(f"BOOT1 image: the BRLYT boot region (0x{boot:X}) holds no GFH preloader",
               hint="dump BOOT1 again or use the raw preloader from the firmware")


# -- comparison ------------------------------------------------------------------------------
def _part_key(entry: EmiEntry) -> tuple[int, int, bytes, bytes]:
    """What makes two rows the same memory part: type and ID; entries without an ID are
    told apart by their DRAM settings too (two discrete LPDDR3 entries for different DRAM
    vendors are different rows, never merged)."""
    settings = entry.raw if entry.is_fallback else b""
    return (entry.type, entry.id_length, entry.id, settings)


@dataclass(frozen=True)
class PreloaderComparison:
    """Which memory parts two preloaders support, and which only one of them does."""

    a: PreloaderInfo
    b: PreloaderInfo
    both: tuple[EmiEntry, ...]
    only_a: tuple[EmiEntry, ...]
    only_b: tuple[EmiEntry, ...]

    @property
    def same_parts(self) -> bool:
        return not self.only_a and not self.only_b

    def to_dict(self) -> dict[str, Any]:
        def parts(entries: tuple[EmiEntry, ...]) -> list[dict[str, Any]]:
            return [{"part": e.part, "id": e.id.hex(), "type_name": e.type_name,
                     "fallback": e.is_fallback} for e in entries]

        return {"both": parts(self.both), "only_a": parts(self.only_a),
                "only_b": parts(self.only_b), "same_parts": self.same_parts}


def compare_preloaders(a: PreloaderInfo, b: PreloaderInfo) -> PreloaderComparison:
    """Set comparison of the memory parts (ID prefixes) listed by two preloaders."""
    a._require_table()
    b._require_table()
    keys_a = {_part_key(e): e for e in a.active_entries()}
    keys_b = {_part_key(e): e for e in b.active_entries()}
    return PreloaderComparison(
        a=a, b=b,
        both=tuple(e for k, e in keys_a.items() if k in keys_b),
        only_a=tuple(e for k, e in keys_a.items() if k not in keys_b),
        only_b=tuple(e for k, e in keys_b.items() if k not in keys_a),
    )
