"""Synthetic preloader / DA builders: S820 presets read back at literal reference offsets."""

from __future__ import annotations

import hashlib
import struct

import pytest

from romkit.errors import UsageError
from romkit.sim.artifacts import (
    DaEntrySpec,
    DaRegionSpec,
    EmiSpec,
    build_da,
    build_preloader,
    da_s820,
    preloader_s820,
)
from romkit.sim.s820 import PART_2013, PART_2014


def _emi_entries_by_hand(data: bytes) -> tuple[bytes, list[bytes]]:
    """Follow GFH file_len/sig_len and the block-length trailer by hand (reference §6)."""
    assert data[:8] == b"MMM\x01\x38\x00\x00\x00"
    file_len, _max, _content, sig_len = struct.unpack_from("<IIII", data, 0x20)
    assert file_len == len(data)
    body = data[:file_len - sig_len]
    (blk_len,) = struct.unpack_from("<I", body, len(body) - 4)
    blk = body[len(body) - 4 - blk_len:len(body) - 4]
    assert blk[0x64:0x6C] == b"MTK_BIN\x00"
    (count,) = struct.unpack_from("<I", blk, 0x6C)
    return blk, [blk[0x70 + i * 0xB8:0x70 + (i + 1) * 0xB8] for i in range(count)]


@pytest.mark.parametrize("year, parts", [(2013, [PART_2013]), (2014, [PART_2013, PART_2014])])
def test_s820_preloader_tables(year: int, parts: list) -> None:  # type: ignore[type-arg]
    data = preloader_s820(year)
    blk, entries = _emi_entries_by_hand(data)
    assert blk[:20] == b"MTK_BLOADER_INFO_v10"
    assert blk[0x1B:0x1B + 19] == b"preloader_s820.bin\x00"
    assert len(entries) == len(parts)
    for raw, part in zip(entries, parts, strict=True):
        etype, id_len = struct.unpack_from("<II", raw, 4)
        assert (etype, id_len) == (0x0202, 9)
        assert raw[0x10:0x19] == part.cid[:9]
    assert b"ROMKIT SYNTHETIC" in data
    sig_len = struct.unpack_from("<I", data, 0x2C)[0]
    assert data[-sig_len:] == hashlib.sha256(data[:-sig_len]).digest()
    assert preloader_s820(year) == data


def test_s820_years_differ_and_unknown_year_refused() -> None:
    assert preloader_s820(2013) != preloader_s820(2014)
    with pytest.raises(UsageError, match="2015"):
        preloader_s820(2015)


def test_builder_options() -> None:
    data = build_preloader([EmiSpec(b"\x15\x01\x00ABCDEF")], project="p.bin", emi_version=11)
    blk, entries = _emi_entries_by_hand(data)
    assert blk.startswith(b"MTK_BLOADER_INFO_v11") and len(entries) == 1
    with pytest.raises(UsageError):
        build_preloader([EmiSpec(bytes(17))])
    with pytest.raises(UsageError):
        build_preloader([], emi_version=100)
    with pytest.raises(UsageError):
        build_da([])
    with pytest.raises(UsageError):
        build_da([DaEntrySpec(1, 2, (DaRegionSpec(0, b"x"),) * 11)])


def test_da_s820_is_labelled_and_sized() -> None:
    data = da_s820()
    assert data[0x20:0x20 + 19] == b"ROMKIT_SYNTHETIC_DA"
    assert 100 * 1024 < len(data) < 1024 * 1024
