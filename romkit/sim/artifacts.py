"""Builders for format-valid, clearly synthetic preloader and Download-Agent files.

Tests, the virtual phone and the demo need files that parse exactly like the real ones
(GFH header, MTK_BLOADER_INFO_v10 EMI table, MTK_AllInOne_DA layout) without shipping any
vendor binary. Everything made here says so in its own bytes - "ROMKIT SYNTHETIC" in the
preloader body, "ROMKIT_SYNTHETIC_DA" as the DA id string and at the start of every DA
region - so nothing built here can be mistaken for, or flashed as, real firmware by accident.
Content is deterministic: the same call always returns the same bytes.

Layout facts: ../shared/reference/mtk-protocol.md §5-§6. The builders write the structures
from their own constants; the parsers in romkit/firmware read them independently, and the
tests check both against hand-packed bytes.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from romkit.device import protocol as p
from romkit.errors import UsageError
from romkit.sim.s820 import EMI_ID_LENGTH, PART_2013, PART_2014

# -- preloader -------------------------------------------------------------------------------
EMI_TYPE_LPDDR2 = 0x0002
EMI_TYPE_MCP_LPDDR2 = 0x0202
EMI_TYPE_MCP_LPDDR3 = 0x0203
EMI_ENTRY_SIZE = 0xB8  # MTK_BLOADER_INFO_v10

PRELOADER_MARKER = b"ROMKIT SYNTHETIC PRELOADER - test artifact, not bootable"
PRELOADER_LOAD_ADDR = 0x12000800  # synthetic; SRAM just above the BROM's area
PRELOADER_MAX_SIZE = 0x40000
PRELOADER_CODE_SIZE = 0x2000
PRELOADER_SIG_LEN = 0x20  # romkit writes SHA-256 of the signed part as the "signature"
_GFH_FILE_INFO_LEN = 0x38
_GFH_BL_INFO_LEN = 0x0C
_BLOADER_SEED = 0x33448822
_BLOADER_START = bytes([0x90, 0x00, 0x70, 0x00])
_EMI_CONA = 0x0002A052  # placeholder register value, same for every synthetic part


@dataclass(frozen=True)
class EmiSpec:
    """One EMI table entry to build: the part's ID bytes, memory type and ID length."""

    part_id: bytes
    type: int = EMI_TYPE_MCP_LPDDR2
    id_length: int | None = None  # default: len(part_id)

    @classmethod
    def fallback(cls) -> EmiSpec:
        """A discrete LPDDR2 entry with id_length 0: fits any memory part."""
        return cls(b"", EMI_TYPE_LPDDR2, 0)

    @property
    def length(self) -> int:
        return len(self.part_id) if self.id_length is None else self.id_length


def _filler(seed: bytes, n: int) -> bytes:
    """Deterministic placeholder bytes (stable across Python/numpy versions)."""
    return hashlib.shake_256(seed).digest(n) if n > 0 else b""


def _emi_entry(spec: EmiSpec, entry_size: int) -> bytes:
    if len(spec.part_id) > 16 or not 0 <= spec.length <= 16:
        raise UsageError("an EMI part ID is at most 16 bytes", hint="shorten the ID")
    head = struct.pack("<IIII16s8sI", 1, spec.type, spec.length, 0,
                       spec.part_id.ljust(16, b"\x00"), b"\x00" * 8, _EMI_CONA)
    tail = _filler(b"romkit-emi-timing" + spec.part_id + bytes([spec.type & 0xFF]),
                   entry_size - len(head))
    return (head + tail)[:entry_size]


def _bloader_block(entries: Sequence[EmiSpec], project: str, emi_version: int,
                   entry_size: int) -> bytes:
    ident = f"MTK_BLOADER_INFO_v{emi_version:02d}".encode().ljust(27, b"\x00")
    name = project.encode("ascii")[:60].ljust(61, b"\x00")
    header = ident + name + b"V116" + struct.pack("<I", _BLOADER_SEED) + _BLOADER_START
    table = b"MTK_BIN\x00" + struct.pack("<I", len(entries))
    return header + table + b"".join(_emi_entry(e, entry_size) for e in entries)


def build_preloader(entries: Sequence[EmiSpec], project: str = "preloader_romkit.bin",
                    emi_version: int = 10, *, entry_size: int = EMI_ENTRY_SIZE,
                    label: str = "") -> bytes:
    """A raw (GFH) preloader whose MTK_BLOADER_INFO lists `entries` in this order.

    Layout: GFH FILE_INFO (0x38) + GFH BL_INFO (0x0C), placeholder code starting with the
    synthetic marker, MTK_BLOADER_INFO block, u32 block length, 0x20-byte signature.
    """
    if not 0 <= emi_version <= 99:
        raise UsageError(f"EMI version {emi_version} is not a two-digit number")
    content_offset = _GFH_FILE_INFO_LEN + _GFH_BL_INFO_LEN
    marker = PRELOADER_MARKER + (b" - " + label.encode("ascii") if label else b"") + b"\x00"
    code = marker + _filler(b"romkit-preloader-code" + marker,
                            PRELOADER_CODE_SIZE - len(marker))
    block = _bloader_block(entries, project, emi_version, entry_size)
    signed_len = content_offset + len(code) + len(block) + 4
    file_len = signed_len + PRELOADER_SIG_LEN
    file_info = (b"MMM\x01" + struct.pack("<HH", _GFH_FILE_INFO_LEN, 0)
                 + b"FILE_INFO".ljust(12, b"\x00")
                 + struct.pack("<IHBBIIIIIII", 1, 0x0001, 0x05, 0x01, PRELOADER_LOAD_ADDR,
                               file_len, PRELOADER_MAX_SIZE, content_offset, PRELOADER_SIG_LEN,
                               content_offset, 0x1))
    bl_info = b"MMM\x01" + struct.pack("<HHI", _GFH_BL_INFO_LEN, 0x0001, 1)
    signed = file_info + bl_info + code + block + struct.pack("<I", len(block))
    return signed + hashlib.sha256(signed).digest()


def preloader_s820(year: int) -> bytes:
    """The synthetic S820 preloader of a production year: 2013 lists only the 2013 memory
    part; 2014 lists both (which is why 2014 phones need the 2014 preloader)."""
    parts = {2013: (PART_2013,), 2014: (PART_2013, PART_2014)}.get(year)
    if parts is None:
        raise UsageError(f"no synthetic S820 preloader for {year}", hint="use 2013 or 2014")
    specs = [EmiSpec(part.cid[:EMI_ID_LENGTH], EMI_TYPE_MCP_LPDDR2, EMI_ID_LENGTH)
             for part in parts]
    return build_preloader(specs, project="preloader_s820.bin", emi_version=10,
                           label=f"S820 {year} memory table")


# -- Download Agent --------------------------------------------------------------------------
DA_ID_STRING = "ROMKIT_SYNTHETIC_DA"
DA_REGION_MARKER = b"ROMKIT_SYNTHETIC_DA"
_DA_HEADER = b"MTK_DOWNLOAD_AGENT"
_DA_FILE_MAGIC = 0x22668899
_DA_ENTRIES_OFFSET = 0x6C
_DA_REGION_ALIGN = 0x10


@dataclass(frozen=True)
class DaRegionSpec:
    """One region to place in the file: code bytes, then signature bytes."""

    load_addr: int
    code: bytes
    signature: bytes = b""
    start_offset: int = 0


@dataclass(frozen=True)
class DaEntrySpec:
    """One chip's entry: identity fields and up to 10 regions."""

    hw_code: int
    hw_version: int
    regions: tuple[DaRegionSpec, ...]
    hw_sub_code: int = 0
    sw_version: int = 0
    page_size: int = 0
    region_index: int = 0


def build_da(entries: Sequence[DaEntrySpec], id_string: str = DA_ID_STRING, *,
             old_layout: bool = False) -> bytes:
    """An MTK_AllInOne_DA-layout file; `old_layout` writes 0xD8-byte entries (no sw_version)."""
    if not entries or any(len(e.regions) > 10 for e in entries):
        raise UsageError("a DA needs at least one entry and at most 10 regions per entry")
    entry_size = 0xD8 if old_layout else 0xDC
    header = (_DA_HEADER.ljust(0x20, b"\x00") + id_string.encode("ascii")[:63].ljust(0x40, b"\0")
              + struct.pack("<III", 4, _DA_FILE_MAGIC, len(entries)))
    cursor = _DA_ENTRIES_OFFSET + entry_size * len(entries)
    table = bytearray()
    payload = bytearray()
    for e in entries:
        if old_layout:
            head = struct.pack("<8H", 0xDADA, e.hw_code, e.hw_sub_code, e.hw_version,
                               e.page_size, 0, e.region_index, len(e.regions))
        else:
            head = struct.pack("<10H", 0xDADA, e.hw_code, e.hw_sub_code, e.hw_version,
                               e.sw_version, 0, e.page_size, 0, e.region_index, len(e.regions))
        regions = bytearray()
        for r in e.regions:
            pad = -cursor % _DA_REGION_ALIGN
            payload += b"\x00" * pad
            cursor += pad
            body = r.code + r.signature
            regions += struct.pack("<5I", cursor, len(body), r.load_addr, r.start_offset,
                                   len(r.signature))
            payload += body
            cursor += len(body)
        table += head + bytes(regions).ljust(entry_size - len(head), b"\x00")
    return header + bytes(table) + bytes(payload)


def _da_region(hw_code: int, index: int, load_addr: int, size: int, sig_len: int) -> DaRegionSpec:
    tag = DA_REGION_MARKER + f" hw 0x{hw_code:04X} region {index} (placeholder)\0".encode()
    code = tag + _filler(b"romkit-da-code" + tag, size - len(tag))
    return DaRegionSpec(load_addr, code, _filler(b"romkit-da-sig" + tag, sig_len))


def s820_da_regions() -> tuple[DaRegionSpec, ...]:
    """The MT6589 entry's regions of the synthetic DA: [0] at 0x12020000, [1] stage 1 at
    0x12000000 (SRAM), [2] stage 2 at 0x82038000 (DRAM). The virtual phone runs stage 1 only
    if it receives exactly region 1's bytes (romkit/sim/known_da.py)."""
    return (
        _da_region(p.MT6589_HW_CODE, 0, 0x12020000, 0x1000, 0),
        _da_region(p.MT6589_HW_CODE, 1, p.MT6589_DA1_ADDR, 0xA000, 0x100),
        _da_region(p.MT6589_HW_CODE, 2, p.MT6589_DA2_ADDR, 0x18000, 0x100),
    )


def da_s820() -> bytes:
    """The synthetic DA: an MT6589 entry (hw code 0x6583, hw_ver 0xCA00) with the regions of
    `s820_da_regions`, plus a small second chip entry so that entry selection is exercised."""
    mt6589 = DaEntrySpec(
        hw_code=p.MT6589_HW_CODE, hw_version=p.MT6589_HW_VER, sw_version=p.MT6589_SW_VER,
        hw_sub_code=0x8A00, regions=s820_da_regions(),
    )
    other = DaEntrySpec(
        hw_code=0x6572, hw_version=0xCA00, hw_sub_code=0x8A00,
        regions=(
            _da_region(0x6572, 0, 0x00200000, 0x200, 0),
            _da_region(0x6572, 1, 0x00201000, 0x400, 0x100),
            _da_region(0x6572, 2, 0x80000000, 0x400, 0x100),
        ),
    )
    return build_da([other, mt6589])
