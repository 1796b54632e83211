"""Partition tables as the phone stores them: MediaTek PMT and DOS MBR/EBR.

The flash layer compares these with the scatter file before it writes anything: a phone whose
PMT differs from the scatter needs a full "firmware upgrade" (SP Flash Tool 8038/8502), and
the MBR/EBR chain says where the Android partitions really are. Both come straight off the
device and may be garbage (erased eMMC, half-written table), so every parser here checks
bounds and raises `FirmwareFormatError` rather than returning nonsense.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from romkit.device import protocol as P
from romkit.errors import FirmwareFormatError

MAX_PMT_ENTRIES = 128
PMT_NAME_LEN = 64
SECTOR = P.SECTOR
MBR_SIGNATURE = b"\x55\xaa"
MBR_TABLE_OFFSET = 0x1BE
EXTENDED_TYPES = frozenset({0x05, 0x0F, 0x85})
MAX_EBRS = 64
_U64 = 1 << 64


@dataclass(frozen=True)
class PmtEntry:
    """One `pt_resident` record: a partition's name, size and linear (scatter) offset."""

    name: str
    size: int
    offset: int
    mask_flags: int = 0


@dataclass(frozen=True)
class MbrEntry:
    """One used slot of a DOS partition table (LBAs relative to that table's base)."""

    slot: int
    type: int
    bootable: bool
    lba: int
    sectors: int

    @property
    def extended(self) -> bool:
        return self.type in EXTENDED_TYPES


@dataclass(frozen=True)
class MbrPartition:
    """A data partition found by walking MBR + EBRs, numbered as Linux does (p1…p4, p5…)."""

    number: int
    type: int
    start_lba: int  # absolute, in user-area sectors
    sectors: int

    @property
    def offset(self) -> int:
        return self.start_lba * SECTOR

    @property
    def size(self) -> int:
        return self.sectors * SECTOR


def _bad(message: str, hint: str = "The partition table on the phone is damaged or was "
         "never written; flash with `--mode upgrade` to rewrite it.") -> FirmwareFormatError:
    return FirmwareFormatError(message, hint=hint)


# -- PMT --------------------------------------------------------------------------------------
def _parse_name(raw: bytes, index: int) -> str:
    name = raw.split(b"\x00", 1)[0]
    if not name or not all(0x21 <= b < 0x7F for b in name):
        raise _bad(f"PMT entry {index} has an invalid name {name[:16]!r}")
    return name.decode("ascii")


def parse_pmt(entries_bytes: bytes) -> list[PmtEntry]:
    """Entries as returned by DA READ_PMT (a whole number of 88-byte `<64sQQQ` records)."""
    if len(entries_bytes) % P.PMT_ENTRY_SIZE:
        raise _bad(f"PMT data is {len(entries_bytes)} bytes, not a multiple of "
                   f"{P.PMT_ENTRY_SIZE}")
    count = len(entries_bytes) // P.PMT_ENTRY_SIZE
    if count > MAX_PMT_ENTRIES:
        raise _bad(f"PMT lists {count} partitions (at most {MAX_PMT_ENTRIES} are possible)")
    entries: list[PmtEntry] = []
    seen: set[str] = set()
    for i, (raw_name, size, offset, mask) in enumerate(
        struct.iter_unpack(P.PMT_ENTRY_FORMAT, entries_bytes)
    ):
        name = _parse_name(raw_name, i)
        if name in seen:
            raise _bad(f"PMT lists partition {name} twice")
        if offset + size >= _U64:
            raise _bad(f"PMT entry {name} runs past the end of the address space")
        seen.add(name)
        entries.append(PmtEntry(name, size, offset, mask))
    return entries


def parse_pmt_region(region: bytes) -> list[PmtEntry] | None:
    """The table at the start of the PMT partition (header + entries); None if not "PTv1"."""
    if len(region) < P.PMT_HEADER_SIZE:
        return None
    magic, count = struct.unpack_from(P.PMT_HEADER_FORMAT, region)
    if magic != P.PMT_MAGIC:
        return None
    if count > MAX_PMT_ENTRIES:
        raise _bad(f"PMT header announces {count} partitions")
    end = P.PMT_HEADER_SIZE + count * P.PMT_ENTRY_SIZE
    if len(region) < end:
        raise _bad(f"PMT is truncated: {count} entries need {end} bytes, have {len(region)}")
    return parse_pmt(region[P.PMT_HEADER_SIZE:end])


def build_pmt_region(entries: Iterable[PmtEntry]) -> bytes:
    """Header + entries exactly as stored at the start of the PMT partition."""
    items = list(entries)
    if len(items) > MAX_PMT_ENTRIES:
        raise _bad(f"{len(items)} partitions do not fit a PMT", hint="Check the scatter file.")
    out = [struct.pack(P.PMT_HEADER_FORMAT, P.PMT_MAGIC, len(items))]
    for e in items:
        raw = e.name.encode("ascii", "replace")
        if not raw or len(raw) >= PMT_NAME_LEN or not all(0x21 <= b < 0x7F for b in raw):
            raise _bad(f"partition name {e.name!r} cannot be stored in a PMT",
                       hint="Names must be 1–63 printable ASCII characters; check the scatter.")
        if not (0 <= e.size < _U64 and 0 <= e.offset < _U64 and 0 <= e.mask_flags < _U64):
            raise _bad(f"partition {e.name} has an out-of-range size/offset",
                       hint="Check the scatter file.")
        out.append(struct.pack(P.PMT_ENTRY_FORMAT, raw, e.size, e.offset, e.mask_flags))
    return b"".join(out)


# -- MBR / EBR --------------------------------------------------------------------------------
def parse_mbr(sector: bytes) -> list[MbrEntry]:
    """The used slots of one MBR or EBR sector (empty slots, type 0, are left out)."""
    if len(sector) < SECTOR:
        raise _bad(f"partition table sector is {len(sector)} bytes, expected {SECTOR}")
    if sector[510:512] != MBR_SIGNATURE:
        raise _bad("no 0x55AA signature: this sector holds no partition table")
    entries: list[MbrEntry] = []
    for slot in range(4):
        status, ptype, lba, count = struct.unpack_from(
            "<B3xB3xII", sector, MBR_TABLE_OFFSET + 16 * slot
        )
        if ptype == 0:
            continue
        if status not in (0x00, 0x80):
            raise _bad(f"partition slot {slot + 1} has an invalid status byte 0x{status:02X}")
        entries.append(MbrEntry(slot, ptype, status == 0x80, lba, count))
    return entries


def parse_mbr_chain(read_sector_fn: Callable[[int], bytes]) -> list[MbrPartition]:
    """Walk the MBR at LBA 0 and every EBR it leads to; data partitions in Linux order.

    Standard DOS rules: a logical partition's start is relative to its own EBR, a link to the
    next EBR is relative to the first extended partition. MediaTek EBRs may hold several
    logical entries plus a link, so every non-extended slot of an EBR counts as a partition.
    """
    parts: list[MbrPartition] = []
    ext_base: int | None = None
    for e in parse_mbr(read_sector_fn(0)):
        if e.extended:
            if ext_base is None:
                ext_base = e.lba
            continue
        parts.append(MbrPartition(e.slot + 1, e.type, e.lba, e.sectors))
    number = 5
    ebr = ext_base
    visited: set[int] = set()
    while ebr is not None:
        if ebr in visited or len(visited) >= MAX_EBRS:
            raise _bad(f"EBR chain loops or is too long (at LBA {ebr})")
        visited.add(ebr)
        following: int | None = None
        for e in parse_mbr(read_sector_fn(ebr)):
            if e.extended:
                if following is None and ext_base is not None:
                    following = ext_base + e.lba
                continue
            parts.append(MbrPartition(number, e.type, ebr + e.lba, e.sectors))
            number += 1
        ebr = following
    return parts
