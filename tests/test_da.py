"""MTK_AllInOne_DA.bin parsing and entry selection.

DA files here are packed by hand from the reference table (mtk-protocol.md §5), independently
of romkit's builder; the builder's output is read back at literal offsets too.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from romkit.errors import DiskError, FirmwareFormatError
from romkit.firmware.da import load_da, parse_da
from romkit.sim.artifacts import DaEntrySpec, DaRegionSpec, build_da, da_s820


def _blob(tag: str, n: int) -> bytes:
    return hashlib.shake_128(tag.encode()).digest(n)


def hand_da(entries: list[dict], *, old: bool = False, id_string: bytes = b"MTK_AllInOne_DA_v3",
            count: int | None = None) -> tuple[bytes, dict[tuple[int, int], bytes]]:
    """entries: dicts with hw_code, sub, hw_ver, sw_ver, regions [(load, size, sig_len)].
    Returns the file and {(entry, region): expected region bytes}."""
    size = 0xD8 if old else 0xDC
    head = bytearray(0x6C)
    head[0:18] = b"MTK_DOWNLOAD_AGENT"
    head[0x20:0x20 + len(id_string)] = id_string
    struct.pack_into("<I", head, 0x60, 4)
    head[0x64:0x68] = bytes([0x99, 0x88, 0x66, 0x22])
    struct.pack_into("<I", head, 0x68, len(entries) if count is None else count)
    table = bytearray(size * len(entries))
    payload = bytearray()
    cursor = 0x6C + len(table) + 0x40  # leave a gap: offsets must be honoured, not assumed
    payload += b"\xAB" * 0x40
    expected: dict[tuple[int, int], bytes] = {}
    for i, e in enumerate(entries):
        o = i * size
        if old:
            struct.pack_into("<8H", table, o, 0xDADA, e["hw_code"], e["sub"], e["hw_ver"],
                             0x800, 0, 0, len(e["regions"]))
            ro = o + 16
        else:
            struct.pack_into("<10H", table, o, 0xDADA, e["hw_code"], e["sub"], e["hw_ver"],
                             e["sw_ver"], 0, 0x800, 0, 0, len(e["regions"]))
            ro = o + 20
        for j, (load, n, sig) in enumerate(e["regions"]):
            body = _blob(f"{i}-{j}", n)
            struct.pack_into("<5I", table, ro + 20 * j, cursor, n, load, 0, sig)
            expected[(i, j)] = body
            payload += body
            cursor += n
    return bytes(head) + bytes(table) + bytes(payload), expected


MT6589 = {"hw_code": 0x6583, "sub": 0x8A00, "hw_ver": 0xCA00, "sw_ver": 0,
          "regions": [(0x12020000, 0x300, 0), (0x12000000, 0x900, 0x100),
                      (0x82038000, 0x1200, 0x100)]}
MT6572 = {"hw_code": 0x6572, "sub": 0x8A00, "hw_ver": 0xCA00, "sw_ver": 0,
          "regions": [(0x200000, 0x100, 0), (0x201000, 0x180, 0x100)]}


@pytest.mark.parametrize("old", [False, True])
def test_hand_made_da_parses(old: bool) -> None:
    data, expected = hand_da([MT6572, MT6589], old=old)
    da = parse_da(data)
    assert da.id_string == "MTK_AllInOne_DA_v3" and da.header_version == 4
    assert da.entry_size == (0xD8 if old else 0xDC)
    assert [e.hw_code for e in da.entries] == [0x6572, 0x6583]
    e = da.select(0x6583, 0xCA00, 0)
    assert (e.hw_sub_code, e.hw_version, e.sw_version, e.page_size) == (0x8A00, 0xCA00, 0, 0x800)
    assert [r.load_addr for r in e.regions] == [0x12020000, 0x12000000, 0x82038000]
    assert [r.length for r in e.regions] == [0x300, 0x900, 0x1200]
    assert [r.sig_len for r in e.regions] == [0, 0x100, 0x100]
    assert da.region_bytes(e, 1) == expected[(1, 1)]
    assert da.region_bytes(e, 2) == expected[(1, 2)]
    assert da.region_bytes(da.entries[0], 1) == expected[(0, 1)]
    assert not da.synthetic


@pytest.mark.parametrize("old", [False, True])
def test_single_entry_layout_is_detected(old: bool) -> None:
    data, expected = hand_da([MT6589], old=old)
    da = parse_da(data)
    assert da.entry_size == (0xD8 if old else 0xDC)
    e = da.select(0x6583)
    assert da.region_bytes(e, 2) == expected[(0, 2)]


def test_selection_by_versions() -> None:
    newer = {**MT6589, "hw_ver": 0xCB00}
    sw1 = {**MT6589, "sw_ver": 0x0001}
    data, _ = hand_da([newer, sw1, MT6589])
    da = parse_da(data)
    assert da.select(0x6583, 0xCA00, 0).index == 1  # sw_ver 0 on the device accepts any
    assert da.select(0x6583, 0xCA00, 0x0000).index == 1
    assert da.select(0x6583, 0xCB00, 0).index == 0
    assert da.select(0x6583).index == 0  # hw_ver 0: first entry of the chip
    with pytest.raises(FirmwareFormatError, match="none for hw version 0x0100"):
        da.select(0x6583, 0x0100)
    with pytest.raises(FirmwareFormatError, match=r"no entry for hw code 0x6592.*0x6583"):
        da.select(0x6592)


def _with(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, *values)
    return bytes(buf)


@pytest.mark.parametrize("make, match", [
    (lambda d: d[:0x50], "truncated"),
    (lambda d: d[:0x6C + 0x100], "truncated"),
    (lambda d: d[:-1], "outside the file"),
    (lambda d: b"NOT_A_DOWNLOAD_AGENT" + d[20:], "not an MTK Download Agent"),
    (lambda d: _with(d, 0x64, "<I", 0x12345678), "magic"),
    (lambda d: _with(d, 0x68, "<I", 0), "claims 0 entries"),
    (lambda d: _with(d, 0x6C, "<H", 0xBEEF), "damaged"),
    (lambda d: _with(d, 0x6C + 18, "<H", 11), "claims 11 regions|damaged"),
    (lambda d: _with(d, 0x6C + 20 + 16, "<I", 0x10000), "exceeds"),
    (lambda d: _with(d, 0x6C + 20, "<I", 0xFFFFFF00), "outside the file"),
])
def test_malformed_da_raises(make, match) -> None:  # type: ignore[no-untyped-def]
    data, _ = hand_da([MT6589])
    with pytest.raises(FirmwareFormatError, match=match) as exc:
        parse_da(make(data))
    assert exc.value.hint and exc.value.spft_code == 5002


def test_xml_da_is_refused_clearly() -> None:
    data, _ = hand_da([MT6589], id_string=b"MTK_DA_v6")
    with pytest.raises(FirmwareFormatError, match="XML"):
        parse_da(data)


def test_region_index_out_of_range() -> None:
    da = parse_da(hand_da([MT6572])[0])
    with pytest.raises(FirmwareFormatError, match="no region 2"):
        da.region_bytes(da.entries[0], 2)


# -- builder ---------------------------------------------------------------------------------
def test_da_s820_read_at_literal_offsets() -> None:
    data = da_s820()
    assert data[:18] == b"MTK_DOWNLOAD_AGENT"
    assert data[0x20:0x33] == b"ROMKIT_SYNTHETIC_DA"
    assert data[0x64:0x68] == bytes([0x99, 0x88, 0x66, 0x22])
    count = struct.unpack_from("<I", data, 0x68)[0]
    found = None
    for i in range(count):
        o = 0x6C + i * 0xDC
        magic, hw_code, _sub, hw_ver = struct.unpack_from("<4H", data, o)
        assert magic == 0xDADA
        if hw_code == 0x6583:
            found = o
            assert hw_ver == 0xCA00
    assert found is not None
    n_regions = struct.unpack_from("<H", data, found + 18)[0]
    regions = [struct.unpack_from("<5I", data, found + 20 + 20 * j) for j in range(n_regions)]
    assert [r[2] for r in regions[:3]] == [0x12020000, 0x12000000, 0x82038000]
    for off, length, _load, _start, sig in regions:
        assert data[off:off + 19] == b"ROMKIT_SYNTHETIC_DA"
        assert 0x400 <= length <= 100 * 1024 + 0x100 and sig <= length
    stage1 = regions[1]
    assert 0x12000000 + stage1[1] <= 0x12020000  # stage 1 fits SRAM below region 0
    da = parse_da(data)
    e = da.select(0x6583, 0xCA00, 0)
    off, length = regions[2][0], regions[2][1]
    assert da.region_bytes(e, 2) == data[off:off + length]
    assert da.synthetic
    assert da_s820() == data  # deterministic


@pytest.mark.parametrize("old", [False, True])
def test_build_da_round_trip(old: bool) -> None:
    specs = [
        DaEntrySpec(0x6589, 0xCA00, (DaRegionSpec(0x1000, b"A" * 33, b"S" * 7),),
                    hw_sub_code=1, sw_version=0 if old else 3),
        DaEntrySpec(0x6583, 0xCB00, tuple(DaRegionSpec(0x2000 * k, bytes([k]) * (50 + k))
                                          for k in range(10))),
    ]
    da = parse_da(build_da(specs, "ROMKIT_SYNTHETIC_DA_rt", old_layout=old))
    assert da.id_string == "ROMKIT_SYNTHETIC_DA_rt"
    assert da.entry_size == (0xD8 if old else 0xDC)
    assert [(e.hw_code, e.hw_version, e.sw_version, e.hw_sub_code) for e in da.entries] == [
        (0x6589, 0xCA00, 0 if old else 3, 1), (0x6583, 0xCB00, 0, 0)]
    assert da.region_bytes(da.entries[0], 0) == b"A" * 33 + b"S" * 7
    assert da.entries[0].regions[0].sig_len == 7
    assert [da.region_bytes(da.entries[1], k) for k in range(10)] == [
        bytes([k]) * (50 + k) for k in range(10)]


def test_load_da(tmp_path: Path) -> None:
    f = tmp_path / "MTK_AllInOne_DA.bin"
    f.write_bytes(da_s820())
    assert load_da(f).select(0x6583).hw_version == 0xCA00
    with pytest.raises(DiskError):
        load_da(tmp_path / "nope.bin")


# -- fuzzing ---------------------------------------------------------------------------------
def _survives(data: bytes) -> None:
    try:
        da = parse_da(data)
    except FirmwareFormatError:
        return
    for e in da.entries:
        for k in range(len(e.regions)):
            assert len(da.region_bytes(e, k)) == e.regions[k].length
    try:
        da.select(0x6583, 0xCA00)
    except FirmwareFormatError:
        pass


_FUZZ = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
_VALID = [hand_da([MT6572, MT6589])[0], hand_da([MT6589], old=True)[0],
          build_da([DaEntrySpec(0x6583, 0xCA00,
                                (DaRegionSpec(0x12000000, b"x" * 64, b"s" * 8),) * 3)])]


@_FUZZ
@given(st.binary(max_size=1024))
def test_fuzz_arbitrary(data: bytes) -> None:
    _survives(data)
    _survives(b"MTK_DOWNLOAD_AGENT" + data)
    _survives(_VALID[0][:0x6C] + data)


@_FUZZ
@given(st.sampled_from(range(len(_VALID))),
       st.lists(st.tuples(st.integers(0, 0x300), st.integers(0, 255)), max_size=10),
       st.integers(0, 1 << 14))
def test_fuzz_mutated(which: int, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_VALID[which])
    for pos, val in edits:
        data[pos % len(data)] = val  # the header and entry table live in the first 0x300
    _survives(bytes(data))
    _survives(bytes(data[:cut % (len(data) + 1)]))
