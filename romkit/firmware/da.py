"""`MTK_AllInOne_DA.bin`: the Download Agent file and the choice of the entry for one chip.

The flash engine must upload the DA code that matches the phone (hw code / hw version /
sw version reported by the BROM): region[1] is stage 1 (SRAM), region[2] stage 2 (DRAM).
A wrong or damaged DA file is the source of confusing device-side failures, so this parser
checks every region against the file before anything is sent.

Layout facts: ../shared/reference/mtk-protocol.md §5 (all fields little-endian):
header "MTK_DOWNLOAD_AGENT" (32 bytes), ID string (64 bytes), u32 (observed 4), u32 magic
0x22668899, u32 entry count, entries from 0x6C. Entries are 0xDC bytes, or 0xD8 in old files
that lack sw_version and the reserved u16 after it. Each entry ends with 10 regions of
20 bytes: file offset, length (signature included), load address, start offset, sig_len.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from romkit.errors import FirmwareFormatError
from romkit.firmware.preloader import read_limited

DA_MAGIC = b"MTK_DOWNLOAD_AGENT"
DA_ID_OFFSET = 0x20
DA_ID_SIZE = 0x40
DA_HEADER_VERSION_OFFSET = 0x60
DA_HEADER_VERSION = 4  # the value observed in real files; written by romkit's builder
DA_FILE_MAGIC = 0x22668899
DA_FILE_MAGIC_OFFSET = 0x64
DA_COUNT_OFFSET = 0x68
DA_ENTRIES_OFFSET = 0x6C
DA_XML_PREFIX = "MTK_DA_v6"

ENTRY_MAGIC = 0xDADA
ENTRY_SIZE = 0xDC
ENTRY_SIZE_OLD = 0xD8
ENTRY_FIELDS = "<10H"  # magic, hw_code, hw_sub_code, hw_ver, sw_ver, rsv, page, rsv, idx, count
ENTRY_FIELDS_OLD = "<8H"  # magic, hw_code, hw_sub_code, hw_ver, page, rsv, idx, count
MAX_REGIONS = 10
REGION_FORMAT = "<5I"
REGION_SIZE = 20

STAGE1_REGION = 1
STAGE2_REGION = 2

MAX_DA_FILE = 64 * 1024 * 1024
_MAX_ENTRIES = 1024

SPFT_INVALID_DA = 5002  # S_INVALID_DA_FILE
_HINT_DA = "use the MTK_AllInOne_DA.bin that came with SP Flash Tool (v3/v5) for MT6589"


def _bad(message: str, hint: str = _HINT_DA, **details: Any) -> FirmwareFormatError:
    return FirmwareFormatError(message, hint=hint, spft_code=SPFT_INVALID_DA, details=details)


@dataclass(frozen=True)
class DaRegion:
    """One code region of a DA entry: where its bytes are in the file and where they load."""

    offset: int
    length: int  # signature included
    load_addr: int
    start_offset: int
    sig_len: int

    def to_dict(self) -> dict[str, int]:
        return {"offset": self.offset, "length": self.length, "load_addr": self.load_addr,
                "start_offset": self.start_offset, "sig_len": self.sig_len}


@dataclass(frozen=True)
class DaEntry:
    """One chip's DA: identity fields and its regions (only the first region_count)."""

    index: int
    hw_code: int
    hw_sub_code: int
    hw_version: int
    sw_version: int
    page_size: int
    region_index: int
    regions: tuple[DaRegion, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "hw_code": self.hw_code, "hw_sub_code": self.hw_sub_code,
                "hw_version": self.hw_version, "sw_version": self.sw_version,
                "page_size": self.page_size, "region_index": self.region_index,
                "regions": [r.to_dict() for r in self.regions]}


@dataclass(frozen=True)
class DaFile:
    """A parsed DA file; keeps the bytes so regions can be cut out later."""

    id_string: str
    header_version: int
    entry_size: int
    entries: tuple[DaEntry, ...]
    data: bytes = field(repr=False)

    @property
    def synthetic(self) -> bool:
        return "ROMKIT_SYNTHETIC" in self.id_string

    @property
    def is_xml(self) -> bool:
        """A V6 (XML protocol) DA: same container, a protocol romkit does not speak."""
        return self.id_string.startswith(DA_XML_PREFIX)

    def select(self, hw_code: int, hw_ver: int = 0, sw_ver: int = 0) -> DaEntry:
        """The entry for this chip: same hw code, then the first whose hw/sw versions do not
        exceed the device's (a device value of 0 accepts any)."""
        same_chip = [e for e in self.entries if e.hw_code == hw_code]
        for entry in same_chip:
            hw_ok = hw_ver == 0 or entry.hw_version <= hw_ver
            sw_ok = sw_ver == 0 or entry.sw_version <= sw_ver
            if hw_ok and sw_ok:
                return entry
        codes = ", ".join(sorted({f"0x{e.hw_code:04X}" for e in self.entries}))
        if same_chip:
            msg = (f"DA file has entries for hw code 0x{hw_code:04X} but none for hw version "
                   f"0x{hw_ver:04X} / sw version 0x{sw_ver:04X}")
        else:
            msg = f"DA file has no entry for hw code 0x{hw_code:04X} (it has {codes})"
        raise FirmwareFormatError(msg, hint="use a DA file made for this phone's chip "
                                  "(MT6589 reports hw code 0x6583)",
                                  details={"hw_code": hw_code, "available": codes})

    def region_bytes(self, entry: DaEntry, index: int) -> bytes:
        """The bytes of region `index` of `entry` (code followed by its signature)."""
        if not 0 <= index < len(entry.regions):
            raise _bad(f"DA entry for hw code 0x{entry.hw_code:04X} has no region {index} "
                       f"(it has {len(entry.regions)})")
        r = entry.regions[index]
        return self.data[r.offset:r.offset + r.length]

    def to_dict(self) -> dict[str, Any]:
        return {"id_string": self.id_string, "header_version": self.header_version,
                "entry_size": self.entry_size, "file_size": len(self.data),
                "protocol": "v6-xml" if self.is_xml else "legacy",
                "synthetic": self.synthetic, "entries": [e.to_dict() for e in self.entries]}


def _entry_fields(data: bytes, off: int, size: int) -> tuple[int, ...]:
    """(magic, hw_code, hw_sub_code, hw_ver, sw_ver, page, region_index, region_count)."""
    if size == ENTRY_SIZE:
        m, code, sub, hw, sw, _r1, page, _r2, idx, cnt = struct.unpack_from(ENTRY_FIELDS,
                                                                            data, off)
        return m, code, sub, hw, sw, page, idx, cnt
    m, code, sub, hw, page, _r, idx, cnt = struct.unpack_from(ENTRY_FIELDS_OLD, data, off)
    return m, code, sub, hw, 0, page, idx, cnt


def _parse_entries(data: bytes, count: int, size: int) -> tuple[DaEntry, ...]:
    head = struct.calcsize(ENTRY_FIELDS if size == ENTRY_SIZE else ENTRY_FIELDS_OLD)
    entries: list[DaEntry] = []
    for i in range(count):
        off = DA_ENTRIES_OFFSET + i * size
        magic, code, sub, hw, sw, page, idx, n = _entry_fields(data, off, size)
        if magic != ENTRY_MAGIC:
            raise _bad(f"DA entry {i} is damaged: magic 0x{magic:04X}, expected 0xDADA")
        if n > MAX_REGIONS:
            raise _bad(f"DA entry {i} claims {n} regions (at most {MAX_REGIONS})")
        regions: list[DaRegion] = []
        for j in range(n):
            r = DaRegion(*struct.unpack_from(REGION_FORMAT, data, off + head + j * REGION_SIZE))
            if r.offset + r.length > len(data):
                raise _bad(f"DA file truncated or damaged: entry {i} region {j} points outside "
                           f"the file (0x{r.offset:X} + "
                           f"0x{r.length:X} > 0x{len(data):X})",
                           hint="the DA file is truncated or damaged; get it again")
            if r.sig_len > r.length:
                raise _bad(f"DA entry {i} region {j}: signature length 0x{r.sig_len:X} exceeds "
                           f"the region length 0x{r.length:X}")
            regions.append(r)
        entries.append(DaEntry(i, code, sub, hw, sw, page, idx, tuple(regions)))
    return tuple(entries)


def _entry_size(data: bytes, count: int) -> tuple[int, tuple[DaEntry, ...]]:
    """0xDC or the old 0xD8: the size at which every entry starts with 0xDADA.

    With one entry both sizes pass the magic test; then the reading whose entries parse and
    actually have regions wins (the newer size when both do). A reading that finds regions
    pointing outside the file beats one that finds no regions at all: that file is damaged.
    """
    errors: list[FirmwareFormatError] = []
    parsed: list[tuple[int, tuple[DaEntry, ...]]] = []
    for size in (ENTRY_SIZE, ENTRY_SIZE_OLD):
        if DA_ENTRIES_OFFSET + count * size > len(data):
            continue
        starts = (DA_ENTRIES_OFFSET + i * size for i in range(count))
        if all(int.from_bytes(data[o:o + 2], "little") == ENTRY_MAGIC for o in starts):
            try:
                parsed.append((size, _parse_entries(data, count, size)))
            except FirmwareFormatError as exc:
                errors.append(exc)
    for size, entries in parsed:
        if any(e.regions for e in entries):
            return size, entries
    if errors:
        raise errors[0]
    if parsed:
        return parsed[0]
    if DA_ENTRIES_OFFSET + count * ENTRY_SIZE_OLD > len(data):
        raise _bad(f"DA file is truncated: {count} entries do not fit in {len(data)} bytes",
                   hint="the DA file is truncated; get it again")
    raise _bad("DA file entries are damaged: no entry table of 0xDC or 0xD8-byte entries "
               "starting with 0xDADA")


def parse_da(data: bytes, *, any_protocol: bool = False) -> DaFile:
    """Parse an `MTK_AllInOne_DA.bin` (legacy layout).

    V6 (XML) DAs use the same container (header, 0xDADA entry table, regions) but a
    protocol the flash engine does not speak: refused unless `any_protocol` (inspect and
    verify only look at them; tests/fixtures/real/da/DA_BR.bin is one).
    """
    data = bytes(data)
    if not data.startswith(DA_MAGIC):
        raise _bad("not an MTK Download Agent file: no MTK_DOWNLOAD_AGENT header")
    if len(data) < DA_ENTRIES_OFFSET:
        raise _bad(f"DA file is truncated: {len(data)} bytes, the header alone needs "
                   f"{DA_ENTRIES_OFFSET}", hint="the DA file is truncated; get it again")
    raw_id = data[DA_ID_OFFSET:DA_ID_OFFSET + DA_ID_SIZE].split(b"\x00", 1)[0]
    id_string = raw_id.decode("ascii", "backslashreplace")
    if id_string.startswith(DA_XML_PREFIX) and not any_protocol:
        raise _bad(f"{id_string} is an XML (V6) Download Agent, which MT6589 does not use",
                   hint="use a legacy MTK_AllInOne_DA.bin (SP Flash Tool v3/v5) for MT6589")
    header_version, magic, count = struct.unpack_from("<III", data, DA_HEADER_VERSION_OFFSET)
    if magic != DA_FILE_MAGIC:
        raise _bad(f"DA file header magic is 0x{magic:08X}, expected 0x{DA_FILE_MAGIC:08X}")
    if count == 0 or count > _MAX_ENTRIES:
        raise _bad(f"DA file claims {count} entries")
    size, entries = _entry_size(data, count)
    return DaFile(id_string=id_string, header_version=header_version, entry_size=size,
                  entries=entries, data=data)


def load_da(path: Path | str, *, any_protocol: bool = False) -> DaFile:
    """Parse a DA file from disk (`any_protocol`: see `parse_da`)."""
    return parse_da(read_limited(path, MAX_DA_FILE), any_protocol=any_protocol)
