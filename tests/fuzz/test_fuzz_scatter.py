"""Structure-aware fuzzing of scatter files (old MT6589 format, V1.1.x and V2.x).

Valid scatters — the two real fixtures and the synthetic S820 layout written in both formats —
get a few line edits each (numbers replaced by absurd ones, lines duplicated, swapped, cut,
values replaced by junk). Parsing may only raise RomkitError, and whatever parses must survive
being written back: writing may only raise RomkitError, and the rewritten text must parse to
the same partitions.
"""

from __future__ import annotations

from pathlib import Path

from fuzzlib import fuzz_settings, mutated_text, only_romkit_errors
from hypothesis import given

from romkit.firmware.scatter import Layout, parse_scatter_text, write_scatter
from romkit.sim.sample_firmware import SCATTER_NAME, scatter_text

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "scatter"
OLD = (FIX / "MT6589_Android_scatter_emmc.lenovo-s960.txt").read_text()
V1 = (FIX / "MT6582_Android_scatter.micromax-q340.txt").read_text()
REAL = FIX.parent / "real" / "scatter"
# A real V2.x file (EMMC + UFS blocks), cut to its first items of each block to keep the
# edits dense, and a real V1.1.2 file with reserved 0xFFFF… entries.
_V2_FULL = (REAL / "MT6771T_Android_scatter.android9.txt").read_text()
_EMMC, _UFS = _V2_FULL.split("- storage_type: UFS")
V2 = ("\n  - partition_index:".join(_EMMC.split("\n  - partition_index:")[:6]) +
      "\n- storage_type: UFS" +
      "\n  - partition_index:".join(_UFS.split("\n  - partition_index:")[:4]))
V1_RESERVED = (REAL / "MT6580_Android_scatter.txt").read_text()
S820_OLD = write_scatter(parse_scatter_text(scatter_text(), SCATTER_NAME), "old")
S820_V1 = write_scatter(parse_scatter_text(scatter_text(), SCATTER_NAME), "v1")
VALID = (OLD, V1, S820_OLD, S820_V1, V2, V1_RESERVED)
FUZZ = fuzz_settings(150)


def _parts(layout: Layout) -> list[dict[str, object]]:
    return [p.model_dump() for p in layout.partitions]


def test_seeds_are_valid() -> None:
    """The starting points parse, so the edits (not the seeds) are what is being tested."""
    for text in VALID:
        assert parse_scatter_text(text, "MT6589_Android_scatter.txt").partitions


@FUZZ
@given(mutated_text(VALID))
def test_mutated_scatter_raises_only_romkit_errors(text: str) -> None:
    layout = only_romkit_errors(parse_scatter_text, text, "MT6589_Android_scatter.txt")
    if layout is None:
        return
    again = only_romkit_errors(write_scatter, layout)
    if again is not None:
        reread = parse_scatter_text(again, "MT6589_Android_scatter.txt")
        assert _parts(reread) == _parts(layout), "write_scatter changed the partitions"
    for fmt in ("old", "v1", "v2"):
        only_romkit_errors(write_scatter, layout, fmt)
    for part in layout.all_partitions:
        _ = (part.end, part.marker_blocks, part.is_placeholder, part.in_boot_region)
    _ = (layout.download_partitions, layout.real_partitions, layout.skipped)
    for st in layout.storages:
        _ = only_romkit_errors(layout.for_storage, st.storage_type).partitions
