"""Preloader parsing: GFH, BOOT1 wrapping, MTK_BLOADER_INFO EMI table, memory-part matching.

Expected values are packed by hand here from the reference tables
(../shared/reference/mtk-protocol.md §6) with a layout deliberately different from romkit's
builder (no BL_INFO block, other offsets), so builder and parser cannot share one mistake.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from romkit.errors import DiskError, FirmwareFormatError
from romkit.firmware.preloader import (
    compare_preloaders,
    describe_part,
    from_boot1_image,
    load_preloader,
    parse_preloader,
    to_boot1_image,
)
from romkit.sim.artifacts import EmiSpec, build_preloader, preloader_s820
from romkit.sim.s820 import PART_2013, PART_2014

SAMSUNG = bytes([0x15, 0x01, 0x00]) + b"KJS00M"
SANDISK = bytes([0x45, 0x01, 0x00]) + b"SEM04G"
HYNIX = bytes([0x90, 0x01, 0x4A]) + b"H4G1d"


# -- hand packers (reference offsets, written out literally) ---------------------------------
def hand_entry(etype: int, id_length: int, ident: bytes, size: int = 0xB8) -> bytes:
    e = bytearray(size)
    struct.pack_into("<I", e, 0x00, 1)  # sub_version
    struct.pack_into("<I", e, 0x04, etype)
    struct.pack_into("<I", e, 0x08, id_length)
    e[0x10:0x10 + len(ident)] = ident
    struct.pack_into("<I", e, 0x28, 0x0000CAFE)  # EMI_CONA
    e[0x2C:] = bytes((i * 7 + 3) & 0xFF for i in range(size - 0x2C))
    return bytes(e)


def hand_bloader(version: int, project: bytes, entries: list[bytes],
                 count: int | None = None) -> bytes:
    blk = bytearray(0x70)
    blk[0:27] = f"MTK_BLOADER_INFO_v{version:02d}".encode().ljust(27, b"\0")
    blk[0x1B:0x1B + 61] = project.ljust(61, b"\0")
    blk[0x58:0x5C] = b"V116"
    struct.pack_into("<I", blk, 0x5C, 0x33448822)
    blk[0x60:0x64] = bytes([0x90, 0x00, 0x70, 0x00])
    blk[0x64:0x6C] = b"MTK_BIN\0"
    struct.pack_into("<I", blk, 0x6C, len(entries) if count is None else count)
    return bytes(blk) + b"".join(entries)


def hand_preloader(bloader: bytes, *, sig_len: int = 0x40, trailer: int | None = None,
                   tail_pad: bytes = b"", load_addr: int = 0x12345678) -> bytes:
    body = bytearray(0x100)
    body[0:8] = b"MMM\x01\x38\x00\x00\x00"
    body[8:20] = b"FILE_INFO".ljust(12, b"\0")
    body += b"hand-made preloader code".ljust(0x80, b"\x11")
    body += bloader
    body += struct.pack("<I", len(bloader) if trailer is None else trailer)
    body += tail_pad
    file_len = len(body) + sig_len
    struct.pack_into("<I", body, 0x14, 2)  # file_ver
    struct.pack_into("<I", body, 0x1C, load_addr)
    struct.pack_into("<I", body, 0x20, file_len)
    struct.pack_into("<I", body, 0x24, 0x30000)  # max_size
    struct.pack_into("<I", body, 0x28, 0x100)  # content_offset
    struct.pack_into("<I", body, 0x2C, sig_len)
    struct.pack_into("<I", body, 0x30, 0x104)  # jump_offset
    return bytes(body) + b"\xEE" * sig_len


def three_part_preloader() -> tuple[bytes, list[bytes]]:
    entries = [hand_entry(0x0202, 9, SAMSUNG), hand_entry(0x0203, 9, SANDISK),
               hand_entry(0x0202, 8, HYNIX)]
    return hand_preloader(hand_bloader(10, b"preloader_huawei89_we_jb2.bin", entries)), entries


# -- parsing ---------------------------------------------------------------------------------
def test_hand_made_v10_preloader_fields() -> None:
    data, entries = three_part_preloader()
    info = parse_preloader(data)
    assert info.form == "raw"
    assert info.load_addr == 0x12345678
    assert info.file_len == len(data)
    assert info.sig_len == 0x40
    assert info.jump_offset == 0x104
    assert info.content_offset == 0x100
    assert info.file_ver == 2
    assert info.emi_version == 10
    assert info.project == "preloader_huawei89_we_jb2.bin"
    assert info.emi_count == 3 and info.emi_note == ""
    assert [e.type for e in info.entries] == [0x0202, 0x0203, 0x0202]
    assert [e.type_name for e in info.entries] == [
        "eMMC+LPDDR2 MCP", "eMMC+LPDDR3 MCP", "eMMC+LPDDR2 MCP"]
    assert [e.id for e in info.entries] == [SAMSUNG, SANDISK, HYNIX[:8]]
    assert [e.manufacturer for e in info.entries] == ["Samsung", "SanDisk", "Hynix"]
    assert [e.product for e in info.entries] == ["KJS00M", "SEM04G", "H4G1d"]
    assert [e.raw for e in info.entries] == entries
    assert all(e.emi_cona == 0xCAFE for e in info.entries)
    bl = data.find(b"MTK_BLOADER_INFO_v")
    assert info.bloader_offset == bl
    assert info.emi_blob == data[bl + 0x70: bl + 0x70 + 3 * 0xB8] == b"".join(entries)
    assert info.gfh == data
    assert not info.synthetic


def test_supports_matching_non_matching_and_prefix_rule() -> None:
    info = parse_preloader(three_part_preloader()[0])
    samsung_cid = SAMSUNG + bytes([0x10, 1, 2, 3, 4, 0x5A, 0x01])
    assert info.supports(samsung_cid)
    assert info.matching_entry(samsung_cid).index == 0  # type: ignore[union-attr]
    # Hynix entry has id_length 8: only the first 8 bytes must match.
    assert info.matching_entry(HYNIX[:8] + b"Z" * 8).index == 2  # type: ignore[union-attr]
    other = bytes([0x70, 0x01, 0x00]) + b"KNG08G" + bytes(7)
    assert not info.supports(other)
    assert info.matching_entry(other) is None
    assert not info.supports(SAMSUNG[:5])  # a CID shorter than id_length never matches
    assert not info.supports(b"")


def test_fallback_entry_matches_anything_but_exact_match_wins() -> None:
    entries = [hand_entry(0x0002, 0, b""), hand_entry(0x0202, 9, SAMSUNG)]
    info = parse_preloader(hand_preloader(hand_bloader(10, b"pl.bin", entries)))
    assert info.entries[0].is_fallback and info.entries[0].id == b""
    assert info.entries[0].manufacturer == "any"
    assert info.matching_entry(SAMSUNG + bytes(7)).index == 1  # type: ignore[union-attr]
    assert info.matching_entry(HYNIX + bytes(7)).index == 0  # type: ignore[union-attr]
    # id_length 0 on an MCP entry is not a fallback.
    mcp0 = parse_preloader(hand_preloader(hand_bloader(10, b"x", [hand_entry(0x0202, 0, b"")])))
    assert not mcp0.supports(HYNIX + bytes(7))


def test_type_zero_entry_ends_the_table_for_matching() -> None:
    entries = [hand_entry(0x0202, 9, SAMSUNG), hand_entry(0, 0, b""),
               hand_entry(0x0202, 9, SANDISK)]
    info = parse_preloader(hand_preloader(hand_bloader(10, b"x", entries)))
    assert len(info.entries) == 3
    assert info.supports(SAMSUNG)
    assert not info.supports(SANDISK)  # the DA stops reading at the type-0 entry


def test_zero_trailer_skips_0x800_and_garbage_trailer_falls_back_to_search() -> None:
    entries = [hand_entry(0x0202, 9, HYNIX + b"\x00")]
    bl = hand_bloader(10, b"pad.bin", entries)
    padded = parse_preloader(hand_preloader(bl, tail_pad=bytes(0x800)))
    assert padded.entries[0].id == HYNIX + b"\x00"
    garbage = parse_preloader(hand_preloader(bl, trailer=0xDEADBEEF))
    assert garbage.emi_version == 10 and garbage.entries[0].raw == entries[0]


def test_no_emi_block_is_reported_and_supports_refuses() -> None:
    data = hand_preloader(b"", trailer=0)
    info = parse_preloader(data)
    assert info.emi_version is None and info.entries == ()
    with pytest.raises(FirmwareFormatError) as exc:
        info.supports(SAMSUNG)
    assert exc.value.hint


def test_other_versions_inferred_or_unsupported() -> None:
    # v23 and v26 appear in no table romkit knows (docs/FORMATS.md §3): inferred or refused.
    v23 = parse_preloader(hand_preloader(hand_bloader(
        23, b"preloader_x.bin", [hand_entry(0x0202, 9, SAMSUNG, 0xC0)] * 2)))
    assert v23.emi_version == 23 and v23.project == "preloader_x.bin"
    assert "not fully supported" in v23.emi_note and "0xC0" in v23.emi_note
    assert [e.id for e in v23.entries] == [SAMSUNG, SAMSUNG]
    assert v23.supports(SAMSUNG)
    # 0x70-byte header + 3 entries of 0xC0 + 5 stray bytes: no whole entry size fits.
    bl = hand_bloader(26, b"preloader_y.bin",
                      [hand_entry(0x0202, 9, SAMSUNG, 0xC0)] * 3) + b"\x01" * 5
    v26 = parse_preloader(hand_preloader(bl))
    assert v26.emi_version == 26 and v26.emi_count == 3 and v26.entries == ()
    assert v26.emi_note.startswith("unsupported EMI version 26")
    with pytest.raises(FirmwareFormatError, match="unsupported EMI version 26") as exc:
        v26.supports(SAMSUNG)
    assert exc.value.spft_code == 1036


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d[:0x30], "truncated"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: b"XYZ" + d[3:], "not a preloader"),
    (lambda d: d[:8] + b"NOT_INFO" + d[16:], "not a preloader"),
    (lambda d: d[:0x2C] + struct.pack("<I", 0xFFFFFF) + d[0x30:], "signature length"),
    (lambda d: d[:0x30] + struct.pack("<I", len(d) + 5) + d[0x34:], "jump offset"),
])
def test_malformed_headers_raise_firmware_format_error(mutate, match) -> None:  # type: ignore[no-untyped-def]
    data = three_part_preloader()[0]
    with pytest.raises(FirmwareFormatError, match=match) as exc:
        parse_preloader(mutate(data))
    assert exc.value.hint and exc.value.spft_code == 5066


def test_absurd_emi_fields_raise() -> None:
    too_long_id = hand_entry(0x0202, 17, SAMSUNG)
    # The file still reads; its table is refused when used (the entries do not follow v10).
    info = parse_preloader(hand_preloader(hand_bloader(10, b"x", [too_long_id])))
    assert info.entries == () and "ID of 17 bytes" in info.emi_note
    with pytest.raises(FirmwareFormatError, match="ID of 17 bytes"):
        info.supports(SAMSUNG)
    with pytest.raises(FirmwareFormatError, match="claims 9 entries"):
        parse_preloader(hand_preloader(hand_bloader(10, b"x", [hand_entry(2, 0, b"")],
                                                    count=9)))
    bad_version = hand_bloader(10, b"x", []).replace(b"_v10", b"_vXY")
    with pytest.raises(FirmwareFormatError, match="two-digit"):
        parse_preloader(hand_preloader(bad_version))


# -- builder round trips ---------------------------------------------------------------------
def test_build_parse_round_trip_several_entries() -> None:
    specs = [EmiSpec(SAMSUNG), EmiSpec(SANDISK, 0x0203), EmiSpec(HYNIX + b"\x00", id_length=6),
             EmiSpec.fallback()]
    data = build_preloader(specs, project="preloader_roundtrip.bin")
    info = parse_preloader(data)
    assert info.project == "preloader_roundtrip.bin" and info.emi_version == 10
    assert [(e.type, e.id_length, e.id) for e in info.entries] == [
        (0x0202, 9, SAMSUNG), (0x0203, 9, SANDISK), (0x0202, 6, HYNIX[:6]), (0x0002, 0, b"")]
    assert info.entries[3].is_fallback
    # Independent reading of the builder's bytes at the reference offsets.
    assert data[:8] == b"MMM\x01\x38\x00\x00\x00" and data[8:17] == b"FILE_INFO"
    assert struct.unpack_from("<I", data, 0x20)[0] == len(data) == info.file_len
    sig_len = struct.unpack_from("<I", data, 0x2C)[0]
    body = data[:len(data) - sig_len]
    blk_len = struct.unpack_from("<I", body, len(body) - 4)[0]
    blk = body[len(body) - 4 - blk_len: len(body) - 4]
    assert blk.startswith(b"MTK_BLOADER_INFO_v10") and blk[0x64:0x6C] == b"MTK_BIN\0"
    assert struct.unpack_from("<I", blk, 0x6C)[0] == 4
    assert info.emi_blob == blk[0x70:0x70 + 4 * 0xB8]
    for i, spec in enumerate(specs):
        raw = blk[0x70 + i * 0xB8: 0x70 + (i + 1) * 0xB8]
        assert struct.unpack_from("<II", raw, 4) == (spec.type, spec.length)
        assert raw[0x10:0x10 + spec.length] == spec.part_id[:spec.length]
    assert info.synthetic


def test_s820_presets_answer_the_2014_question() -> None:
    old, new = parse_preloader(preloader_s820(2013)), parse_preloader(preloader_s820(2014))
    assert old.supports(PART_2013.cid) and not old.supports(PART_2014.cid)
    assert new.supports(PART_2013.cid) and new.supports(PART_2014.cid)
    assert new.matching_entry(PART_2014.cid).part == "Hynix SIM14H"  # type: ignore[union-attr]
    cmp = compare_preloaders(old, new)
    assert [e.id for e in cmp.both] == [PART_2013.cid[:9]]
    assert cmp.only_a == () and [e.id for e in cmp.only_b] == [PART_2014.cid[:9]]
    assert not cmp.same_parts
    assert compare_preloaders(new, new).same_parts


# -- BOOT1 form ------------------------------------------------------------------------------
def test_boot1_image_layout_and_reverse() -> None:
    raw = three_part_preloader()[0]
    img = to_boot1_image(raw)
    assert img[:9] == b"EMMC_BOOT"
    assert struct.unpack_from("<I", img, 0x10)[0] == 0x200
    assert img[0x200:0x205] == b"BRLYT"
    assert struct.unpack_from("<I", img, 0x20C)[0] == 0x800
    assert img[0x800:0x800 + len(raw)] == raw
    assert len(img) % 512 == 0 and not any(img[0x800 + len(raw):])
    assert from_boot1_image(img) == raw
    info = parse_preloader(img)
    assert info.form == "boot1" and info.gfh == raw
    assert info.entries == parse_preloader(raw).entries
    # A dump is padded to the BOOT1 size: the tail must not matter.
    assert from_boot1_image(img + bytes(0x10000)) == raw


def hand_boot1(raw: bytes, brlyt: int, boot_field: int, gfh_at: int) -> bytes:
    img = bytearray(gfh_at + len(raw) + 0x400)
    img[0:12] = b"EMMC_BOOT".ljust(12, b"\0")
    struct.pack_into("<II", img, 0x0C, 1, brlyt)
    img[brlyt:brlyt + 8] = b"BRLYT".ljust(8, b"\0")
    struct.pack_into("<II", img, brlyt + 8, 1, boot_field)
    img[gfh_at:gfh_at + len(raw)] = raw
    return bytes(img)


def test_from_boot1_follows_the_pointers() -> None:
    raw = three_part_preloader()[0]
    assert from_boot1_image(hand_boot1(raw, 0x400, 0x1000, 0x1000)) == raw
    assert from_boot1_image(hand_boot1(raw, 0x200, 4, 0x800)) == raw  # sector units
    with pytest.raises(FirmwareFormatError, match="no BRLYT"):
        from_boot1_image(hand_boot1(raw, 0x400, 0x1000, 0x1000)[:0x400])
    with pytest.raises(FirmwareFormatError, match="holds no GFH"):
        from_boot1_image(hand_boot1(raw, 0x200, 0x900, 0x800))
    with pytest.raises(FirmwareFormatError, match="already a BOOT1"):
        to_boot1_image(to_boot1_image(raw))
    with pytest.raises(FirmwareFormatError):
        to_boot1_image(b"not a preloader at all" * 4)


# -- naming, files ---------------------------------------------------------------------------
def test_describe_part() -> None:
    assert describe_part(PART_2014.cid) == "Hynix SIM14H"
    assert describe_part(PART_2013.cid[:9]) == "Samsung SIM13S"
    assert describe_part(bytes([0xFE, 1, 0]) + b"MT29E" + b"\0") == "Micron MT29E"
    assert describe_part(bytes([0x11, 1, 0]) + b"\x01\x02\x03\x04\x05\x06") == \
        "Toshiba 010203040506"
    assert describe_part(bytes([0x70, 1, 0])) == "Kingston"
    assert describe_part(bytes([0x42, 1, 0]) + b"ABCDEF").startswith("manufacturer 0x42")
    assert describe_part(b"") == "any part (fallback entry)"


def test_load_preloader_from_disk(tmp_path: Path) -> None:
    f = tmp_path / "preloader_s820.bin"
    f.write_bytes(preloader_s820(2014))
    assert load_preloader(f).supports(PART_2014.cid)
    with pytest.raises(DiskError):
        load_preloader(tmp_path / "missing.bin")


# -- fuzzing: only FirmwareFormatError may escape -------------------------------------------
def _parse_survives(data: bytes) -> None:
    try:
        info = parse_preloader(data)
    except FirmwareFormatError:
        return
    for cid in (PART_2013.cid, PART_2014.cid, b""):
        try:
            info.supports(cid)
        except FirmwareFormatError:
            pass
    info.to_dict()


_VALID = [three_part_preloader()[0], preloader_s820(2014)]
_VALID.append(to_boot1_image(_VALID[1]))
_FUZZ = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _parse_survives(data)
    _parse_survives(b"MMM\x01\x38\x00\x00\x00FILE_INFO\0\0\0" + data)
    _parse_survives(b"EMMC_BOOT\0\0\0" + data)
    try:
        from_boot1_image(b"EMMC_BOOT\0\0\0" + data)
    except FirmwareFormatError:
        pass


def _hot_spots(data: bytes) -> list[int]:
    """Offsets worth mutating: the headers and the whole EMI block (tail of the image)."""
    bl = data.rfind(b"MTK_BLOADER_INFO_v")
    return [*range(0x40), *range(0x200, 0x220), *range(bl - 8, len(data))]


_HOT = [_hot_spots(d) for d in _VALID]


@_FUZZ
@given(st.sampled_from(range(len(_VALID))),
       st.lists(st.tuples(st.booleans(), st.integers(0, 1 << 16), st.integers(0, 255)),
                max_size=12),
       st.integers(0, 1 << 16))
def test_fuzz_mutated_valid_files(which: int, edits: list[tuple[bool, int, int]],
                                  cut: int) -> None:
    data = bytearray(_VALID[which])
    hot = _HOT[which]
    for in_hot, pos, val in edits:
        data[hot[pos % len(hot)] if in_hot else pos % len(data)] = val
    _parse_survives(bytes(data))
    _parse_survives(bytes(data[:cut % (len(data) + 1)]))


@_FUZZ
@given(st.sampled_from([0x10, 0x20, 0x2C, 0x30]), st.integers(0, 0xFFFFFFFF))
def test_fuzz_header_words(offset: int, value: int) -> None:
    data = bytearray(_VALID[0])
    struct.pack_into("<I", data, offset, value)
    _parse_survives(bytes(data))
