"""Structure-aware fuzzing of preloaders: valid GFH images with a mutated EMI block.

Preloaders are built from random EMI tables (part IDs, memory types, ID lengths, fallback
entries, other EMI versions) by the synthetic builder, then the MTK_BLOADER_INFO block, the
GFH header or the trailer that points at the block is edited. Only RomkitError may escape —
also from what the flash path does next with a parsed preloader (CID matching, comparison,
BOOT1 wrapping and unwrapping).
"""

from __future__ import annotations

from pathlib import Path

from fuzzlib import fuzz_settings, mutated_bytes, only_romkit_errors
from hypothesis import given
from hypothesis import strategies as st

from romkit.firmware.preloader import (
    compare_preloaders,
    from_boot1_image,
    parse_emi_table,
    parse_preloader,
    to_boot1_image,
)
from romkit.sim.artifacts import EmiSpec, build_preloader, preloader_s820
from romkit.sim.s820 import PART_2013, PART_2014

FUZZ = fuzz_settings(200)
REFERENCE = parse_preloader(preloader_s820(2014))
CIDS = (PART_2013.cid, PART_2014.cid, bytes(16), b"\xff" * 16)

emi_specs = st.lists(
    st.one_of(
        st.builds(EmiSpec, st.binary(max_size=16),
                  st.sampled_from((0x0002, 0x0202, 0x0203, 0x0000, 0xFFFF)),
                  st.none() | st.integers(0, 16)),
        st.just(EmiSpec.fallback()),
    ),
    min_size=0, max_size=5,
)


@st.composite
def preloader_image(draw: st.DrawFn) -> bytes:
    specs = draw(emi_specs)
    version = draw(st.sampled_from((10, 10, 10, 9, 11, 0, 99)))
    size = draw(st.sampled_from((0xB8, 0xB8, 0x20, 0x2C, 0x40)))
    return build_preloader(specs, emi_version=version, entry_size=size)


def _hot(image: bytes) -> list[tuple[int, int]]:
    """Header fields, the MTK_BLOADER_INFO block and the length trailer + signature."""
    start = image.find(b"MTK_BLOADER_INFO_v")
    return [(0x14, 0x44), (start, start + 0x70), (start + 0x64, len(image) - 0x24),
            (len(image) - 0x28, len(image))]


def _use(info: object) -> None:
    """What `flash`, `preloader check` and `prepare` do with a parsed preloader."""
    for cid in CIDS:
        only_romkit_errors(info.supports, cid)  # type: ignore[attr-defined]
    only_romkit_errors(compare_preloaders, info, REFERENCE)
    _ = info.to_dict()  # type: ignore[attr-defined]


@FUZZ
@given(st.data())
def test_mutated_emi_block_raises_only_romkit_errors(data: st.DataObject) -> None:
    image = data.draw(preloader_image())
    mutated = data.draw(mutated_bytes([image], _hot(image)))
    info = only_romkit_errors(parse_preloader, mutated)
    if info is None:
        return
    _use(info)
    boot1 = only_romkit_errors(to_boot1_image, mutated)
    if boot1 is not None:
        assert from_boot1_image(boot1) == mutated[:info.file_len]
        assert parse_preloader(boot1).entries == info.entries


@FUZZ
@given(st.data())
def test_mutated_boot1_wrapper_raises_only_romkit_errors(data: st.DataObject) -> None:
    boot1 = to_boot1_image(data.draw(preloader_image()))
    hot = [(0, 0x20), (0x200, 0x240), (0x800, 0x860)]
    mutated = data.draw(mutated_bytes([boot1], hot))
    info = only_romkit_errors(parse_preloader, mutated)
    if info is not None:
        _use(info)


@FUZZ
@given(emi_specs)
def test_unmutated_tables_read_back_as_built(specs: list[EmiSpec]) -> None:
    """Independent check of the generator: a valid v10 table reads back entry for entry."""
    info = parse_preloader(build_preloader(specs))
    assert [(e.type, e.id_length, e.id) for e in info.entries] == \
        [(s.type, s.length, s.part_id.ljust(16, b"\x00")[:s.length]) for s in specs]


# Real bare EMI tables, one per layout family (tests/fixtures/real/emi, SOURCES.md there).
_EMI = Path(__file__).resolve().parent.parent / "fixtures" / "real" / "emi"
BARE = tuple(next(_EMI.glob(f"v{v:02d}_*")).read_bytes() for v in (8, 10, 11, 14, 25, 36, 52))


@FUZZ
@given(mutated_bytes(BARE, [(0, 0x70), (0x64, 0x78), (0x70, 0x200)]))
def test_mutated_bare_emi_table_raises_only_romkit_errors(data: bytes) -> None:
    info = only_romkit_errors(parse_emi_table, data)
    if info is None:
        return
    assert info.form == "emi"
    _use(info)
    assert parse_preloader(data).entries == info.entries
