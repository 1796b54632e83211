"""PMT and MBR/EBR parsing against hand-packed tables; hostile input raises only RomkitError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from romkit.device.layout import (
    MbrPartition,
    PmtEntry,
    build_pmt_region,
    parse_mbr,
    parse_mbr_chain,
    parse_pmt,
    parse_pmt_region,
)
from romkit.errors import FirmwareFormatError, RomkitError


def pmt_record(name: bytes, size: int, offset: int, mask: int = 0) -> bytes:
    """One pt_resident record packed by hand: name[64], then three u64 little-endian."""
    return (name.ljust(64, b"\x00") + size.to_bytes(8, "little") + offset.to_bytes(8, "little")
            + mask.to_bytes(8, "little"))


RECORDS = [
    (b"PRELOADER", 0x600000, 0x0),
    (b"MBR", 0x80000, 0x600000),
    (b"NVRAM", 0x500000, 0xE00000),
    (b"USRDATA", 0, 0x8CF80000),
]


def test_parse_pmt_entries() -> None:
    raw = b"".join(pmt_record(*r) for r in RECORDS)
    entries = parse_pmt(raw)
    assert [(e.name, e.size, e.offset) for e in entries] == [
        (n.decode(), s, o) for n, s, o in RECORDS]
    assert parse_pmt(b"") == []


def test_pmt_region_round_trip_matches_hand_packing() -> None:
    entries = [PmtEntry(n.decode(), s, o, 0) for n, s, o in RECORDS]
    region = build_pmt_region(entries)
    expected = b"PTv1" + len(RECORDS).to_bytes(4, "little") + b"".join(
        pmt_record(*r) for r in RECORDS)
    assert region == expected
    assert parse_pmt_region(region + bytes(4096)) == entries  # trailing partition space ignored


def test_pmt_region_without_magic_is_none() -> None:
    assert parse_pmt_region(bytes(4096)) is None
    assert parse_pmt_region(b"PT") is None


@pytest.mark.parametrize("raw, why", [
    (pmt_record(b"A", 1, 0)[:-1], "multiple"),
    (pmt_record(b"", 1, 0), "name"),
    (pmt_record(b"BAD NAME", 1, 0), "name"),
    (pmt_record(b"X", 1, 0) + pmt_record(b"X", 1, 8), "twice"),
    (pmt_record(b"X", 2, (1 << 64) - 1), "end"),
])
def test_malformed_pmt(raw: bytes, why: str) -> None:
    with pytest.raises(FirmwareFormatError) as ei:
        parse_pmt(raw)
    assert why in ei.value.message


def test_truncated_pmt_region() -> None:
    region = b"PTv1" + (3).to_bytes(4, "little") + pmt_record(b"A", 1, 0)
    with pytest.raises(FirmwareFormatError, match="truncated"):
        parse_pmt_region(region)
    with pytest.raises(FirmwareFormatError):
        parse_pmt_region(b"PTv1" + (100000).to_bytes(4, "little"))


def test_build_refuses_unstorable_names() -> None:
    with pytest.raises(FirmwareFormatError):
        build_pmt_region([PmtEntry("X" * 64, 1, 0)])
    with pytest.raises(FirmwareFormatError):
        build_pmt_region([PmtEntry("A", -1, 0)])


# -- MBR / EBR --------------------------------------------------------------------------------
def table(*slots: tuple[int, int, int, int]) -> bytes:
    """A partition-table sector packed by hand: (status, type, lba, sectors) per slot."""
    sec = bytearray(512)
    for i, (status, ptype, lba, count) in enumerate(slots):
        off = 446 + 16 * i
        sec[off] = status
        sec[off + 4] = ptype
        sec[off + 8 : off + 12] = lba.to_bytes(4, "little")
        sec[off + 12 : off + 16] = count.to_bytes(4, "little")
    sec[510:512] = b"\x55\xaa"
    return bytes(sec)


EXT = 0x400  # EBR1 LBA
DISK_SLOTS: dict[int, list[tuple[int, int, int, int]]] = {
    0: [(0, 0x05, EXT, 0x100000), (0, 0x83, 0x6800, 0x5000), (0x80, 0x83, 0xB800, 0x5000),
        (0, 0x83, 0x10800, 0x3000)],
    # MediaTek-style EBR1: three logical partitions and a link to EBR2 in the last slot
    EXT: [(0, 0x83, 0x200, 0x40000), (0, 0x83, 0x40200, 0x20000), (0, 0x83, 0x60200, 0x8000),
          (0, 0x05, 0x70000, 0x10000)],
    EXT + 0x70000: [(0, 0x0B, 0x10, 0xFFF0)],
}
DISK = {lba: table(*slots) for lba, slots in DISK_SLOTS.items()}


def test_mbr_chain_numbers_partitions_like_linux() -> None:
    reads: list[int] = []

    def read_sector(lba: int) -> bytes:
        reads.append(lba)
        return DISK[lba]

    parts = parse_mbr_chain(read_sector)
    assert parts == [
        MbrPartition(2, 0x83, 0x6800, 0x5000),
        MbrPartition(3, 0x83, 0xB800, 0x5000),
        MbrPartition(4, 0x83, 0x10800, 0x3000),
        MbrPartition(5, 0x83, EXT + 0x200, 0x40000),
        MbrPartition(6, 0x83, EXT + 0x40200, 0x20000),
        MbrPartition(7, 0x83, EXT + 0x60200, 0x8000),
        MbrPartition(8, 0x0B, EXT + 0x70000 + 0x10, 0xFFF0),
    ]
    assert reads == [0, EXT, EXT + 0x70000]
    assert parts[0].offset == 0x6800 * 512 and parts[0].size == 0x5000 * 512


def test_parse_mbr_slots() -> None:
    entries = parse_mbr(DISK[0])
    assert [(e.slot, e.type, e.bootable, e.extended) for e in entries] == [
        (0, 0x05, False, True), (1, 0x83, False, False), (2, 0x83, True, False),
        (3, 0x83, False, False)]


def test_mbr_errors() -> None:
    with pytest.raises(FirmwareFormatError, match="0x55AA"):
        parse_mbr(bytes(512))
    with pytest.raises(FirmwareFormatError):
        parse_mbr(b"\x55\xaa")
    with pytest.raises(FirmwareFormatError, match="status"):
        parse_mbr(table((0x12, 0x83, 1, 1)))


def test_ebr_loop_is_detected() -> None:
    disk = {0: table((0, 0x05, 0x10, 0x100)), 0x10: table((0, 0x83, 1, 1), (0, 0x05, 0, 0x100))}
    with pytest.raises(FirmwareFormatError, match="loops"):
        parse_mbr_chain(lambda lba: disk[lba])


# -- hostile input ----------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_parse_pmt_only_raises_romkit_errors(raw: bytes) -> None:
    for fn in (parse_pmt, parse_pmt_region):
        try:
            fn(raw)
        except RomkitError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 5), st.binary(min_size=0, max_size=5 * 88))
def test_parse_pmt_region_with_magic_only_raises_romkit_errors(count: int, body: bytes) -> None:
    try:
        parse_pmt_region(b"PTv1" + count.to_bytes(4, "little") + body)
    except RomkitError:
        pass


names = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                max_size=63)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(names, st.integers(0, 2**40), st.integers(0, 2**40)), max_size=8,
                unique_by=lambda t: t[0]))
def test_pmt_build_parse_round_trip(items: list[tuple[str, int, int]]) -> None:
    entries = [PmtEntry(n, s, o, 0) for n, s, o in items]
    assert parse_pmt_region(build_pmt_region(entries)) == entries




@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=520), st.booleans())
def test_parse_mbr_only_raises_romkit_errors(raw: bytes, sign: bool) -> None:
    if sign and len(raw) >= 512:
        raw = raw[:510] + b"\x55\xaa" + raw[512:]
    try:
        parse_mbr(raw)
    except RomkitError:
        pass


@st.composite
def mutated_disk(draw: st.DrawFn) -> dict[int, list[tuple[int, int, int, int]]]:
    """The valid DISK chain with a few edits to its slots: links re-pointed (to another
    EBR, itself, nowhere), types, status bytes, starts and sizes changed, slots cleared."""
    disk = {lba: list(slots) for lba, slots in DISK_SLOTS.items()}
    ebr_offsets = [lba - EXT for lba in disk if lba >= EXT] + [0, 0x70000, 0x1000]
    for _ in range(draw(st.integers(0, 4))):
        lba = draw(st.sampled_from(sorted(disk)))
        slots = disk[lba]
        i = draw(st.integers(0, 3))
        while len(slots) <= i:
            slots.append((0, 0, 0, 0))
        status, ptype, start, count = slots[i]
        field = draw(st.sampled_from(["link", "link", "type", "status", "start", "size",
                                      "clear"]))
        if field == "link":
            ptype, start = draw(st.sampled_from([0x05, 0x0F])), draw(st.sampled_from(ebr_offsets))
            if lba != 0 and draw(st.booleans()):
                disk.setdefault(EXT + start, [(0, 0x83, 0x20, draw(st.integers(0, 2**32 - 1)))])
        elif field == "type":
            ptype = draw(st.sampled_from([0, 0x05, 0x0F, 0x83, 0x0B]))
        elif field == "status":
            status = draw(st.sampled_from([0, 0x80, 0x01]))
        elif field == "start":
            start = draw(st.integers(0, 2**32 - 1))
        elif field == "size":
            count = draw(st.sampled_from([0, 1, 2**32 - 1]) | st.integers(0, 2**32 - 1))
        else:
            status, ptype, start, count = 0, 0, 0, 0
        slots[i] = (status, ptype, start, count)
    return disk


@settings(max_examples=150, deadline=None)
@given(mutated_disk())
def test_parse_mbr_chain_only_raises_romkit_errors(
        disk: dict[int, list[tuple[int, int, int, int]]]) -> None:
    def read_sector(lba: int) -> bytes:
        return table(*disk[lba]) if lba in disk else bytes(512)

    try:
        parts = parse_mbr_chain(read_sector)
    except RomkitError:
        return
    numbers = [p.number for p in parts]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    # p1..p4 are the MBR's own data slots; logical ones count on from 5 without gaps, and
    # each is a data slot of some EBR, its start taken relative to that EBR.
    primary = {(i + 1, t, lba, n) for i, (_s, t, lba, n) in enumerate(disk[0])
               if t not in (0, 0x05, 0x0F)}
    assert {(p.number, p.type, p.start_lba, p.sectors) for p in parts if p.number <= 4} \
        == primary
    logical = [p for p in parts if p.number > 4]
    assert [p.number for p in logical] == list(range(5, 5 + len(logical)))
    for p in logical:
        assert any((p.type, p.start_lba - ebr, p.sectors) == (t, lba, n)
                   for ebr, slots in disk.items() if ebr
                   for _s, t, lba, n in slots if t not in (0, 0x05, 0x0F)), p
