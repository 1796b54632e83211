"""Structure-aware fuzzing of MTK_AllInOne_DA.bin: valid files with a mutated entry table.

DA files are built from random entries (chip codes, versions, 0..10 regions of random sizes,
both the 0xDC and the old 0xD8 entry layout), then the header, entry table or region records
are edited. Only RomkitError may escape from parsing, entry selection or cutting a region out
— the three things the flash engine does before a byte goes to the phone.
"""

from __future__ import annotations

from fuzzlib import fuzz_settings, mutated_bytes, only_romkit_errors
from hypothesis import given
from hypothesis import strategies as st

from romkit.firmware.da import parse_da
from romkit.sim.artifacts import DaEntrySpec, DaRegionSpec, build_da, da_s820

FUZZ = fuzz_settings(200)
CODES = (0x6583, 0x6589, 0x6572, 0x0000, 0xFFFF)

regions = st.lists(st.builds(DaRegionSpec, st.integers(0, 0xFFFFFFFF), st.binary(max_size=64),
                             st.binary(max_size=16), st.integers(0, 0xFFFF)), max_size=10)
entries = st.lists(st.builds(DaEntrySpec, st.sampled_from(CODES), st.integers(0, 0xFFFF),
                             regions, sw_version=st.integers(0, 0xFFFF)),
                   min_size=1, max_size=4)


@st.composite
def da_file(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return da_s820()
    return build_da(draw(entries), old_layout=draw(st.booleans()))


def _hot(n_entries: int, entry_size: int) -> list[tuple[int, int]]:
    table_end = 0x6C + n_entries * entry_size
    return [(0x00, 0x20), (0x60, 0x6C), (0x6C, 0x6C + 0x20), (0x6C, table_end)]


@FUZZ
@given(st.data())
def test_mutated_da_raises_only_romkit_errors(data: st.DataObject) -> None:
    raw = data.draw(da_file())
    n = int.from_bytes(raw[0x68:0x6C], "little")
    mutated = data.draw(mutated_bytes([raw], _hot(n, 0xDC)))
    da = only_romkit_errors(parse_da, mutated)
    if da is None:
        return
    for code in CODES:
        entry = only_romkit_errors(da.select, code, data.draw(st.integers(0, 0xFFFF)),
                                   data.draw(st.integers(0, 0xFFFF)))
        if entry is None:
            continue
        for index in range(-1, len(entry.regions) + 1):
            blob = only_romkit_errors(da.region_bytes, entry, index)
            if blob is not None:
                r = entry.regions[index]
                assert len(blob) == r.length and r.offset + r.length <= len(mutated)
    _ = da.to_dict()


@FUZZ
@given(entries, st.booleans())
def test_unmutated_files_read_back_as_built(specs: list[DaEntrySpec], old: bool) -> None:
    """Independent check of the generator: every region's bytes come back exactly."""
    raw = build_da(specs, old_layout=old)
    da = parse_da(raw)
    assert len(da.entries) == len(specs)
    for entry, spec in zip(da.entries, specs, strict=True):
        assert entry.hw_code == spec.hw_code
        got = [da.region_bytes(entry, i) for i in range(len(entry.regions))]
        assert got == [r.code + r.signature for r in spec.regions]
