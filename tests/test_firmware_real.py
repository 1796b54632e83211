"""Property tests over the real public files in tests/fixtures/real (SOURCES.md there).

Expected values come from the test's own reading of the files (regexes, struct), never from
romkit.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from realfiles import (
    EMI_TABLES,
    PRELOADERS,
    REAL_PRELOADER_FOR,
    SCATTERS,
    emi_table,
    emi_version_of,
    read_text,
    scatter_items,
    stock_folder,
    storage_blocks,
    wrap_in_gfh,
)

from romkit.firmware import chips
from romkit.firmware.package import Firmware, verify_folder
from romkit.firmware.preloader import MANUFACTURERS, load_preloader
from romkit.firmware.scatter import parse_scatter, parse_scatter_text, write_scatter


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_corpus_is_there_and_small() -> None:
    assert len(SCATTERS) >= 20 and len(EMI_TABLES) >= 25 and len(PRELOADERS) >= 3
    total = sum(p.stat().st_size for p in (*SCATTERS, *EMI_TABLES, *PRELOADERS))
    assert total < 10 * 1024 * 1024


@pytest.mark.parametrize("path", SCATTERS, ids=_ids(SCATTERS))
def test_real_scatter_parses_with_every_partition(path: Path) -> None:
    text = read_text(path)
    layout = parse_scatter(path)
    assert len(layout.all_partitions) == text.count("partition_name:")
    blocks = storage_blocks(text)
    if blocks:  # V2.x: each storage block counted on its own
        assert layout.format == "v2"
        assert {st.storage_type: len(st.partitions) for st in layout.storages} == {
            kind: body.count("partition_name:") for kind, body in blocks.items()}
        assert layout.storage_type == "EMMC"
        assert len(layout.partitions) == blocks["EMMC"].count("partition_name:")
    names = [item["partition_name"] for item in scatter_items(text)]
    assert [p.raw_name for p in layout.all_partitions] == names


@pytest.mark.parametrize("path", SCATTERS, ids=_ids(SCATTERS))
def test_real_scatter_round_trips(path: Path) -> None:
    text = read_text(path)
    layout = parse_scatter(path)
    written = write_scatter(layout)
    # Entry by entry, key by key, by the test's own reading.
    assert scatter_items(written) == scatter_items(text)
    again = parse_scatter_text(written, str(path))
    assert again.model_dump() == layout.model_dump()


# Stock folders across generations: (scatter, EMI version of the placeholder preloader, or
# None when the corpus has the real preloader of that very dump).
STOCK = [
    ("MT6572_Android_scatter.txt", 11),
    ("MT6580_Android_scatter.txt", 21),
    ("MT6735_Android_scatter.txt", 20),
    ("MT6737T_Android_scatter.txt", 20),
    ("MT6739_Android_scatter.leagoo-m11.txt", None),
    ("MT6755_Android_scatter.txt", 22),
    ("MT6757_Android_scatter.txt", 25),
    ("MT6763_Android_scatter.txt", 30),
    ("MT6765_Android_scatter.txt", 35),
    ("MT6768_Android_scatter.txt", 40),
    ("MT6771_Android_scatter.umidigi-f1.txt", None),
    ("MT6771T_Android_scatter.android9.txt", 36),
    ("MT6785_Android_scatter.txt", 45),
    ("MT6833_Android_scatter.txt", 52),
]


@pytest.mark.parametrize(("scatter", "emi"), STOCK, ids=[s for s, _ in STOCK])
def test_stock_folder_verifies(tmp_path: Path, scatter: str, emi: int | None) -> None:
    """A real scatter + a file for every image it downloads verifies with no error.

    The image files are placeholders this test creates (the corpus holds no whole
    firmware); the preloader is the dump's real one, or a GFH placeholder around the
    corpus's real EMI table of that chip's version.
    """
    path = next(p for p in SCATTERS if p.name == scatter)
    pre = None if emi is None else wrap_in_gfh(emi_table(emi))
    assert (emi is None) == (scatter in REAL_PRELOADER_FOR)
    folder = stock_folder(path, tmp_path / "fw", preloader=pre)
    report = verify_folder(folder)
    assert [f.message for f in report.errors] == []
    assert report.ok
    codes = {f.code for f in report.findings}
    assert not codes & {"layout-overlap", "layout-unordered", "preloader-platform"}
    fw = Firmware.load(folder)
    assert fw.preloader_path is not None and fw.preloader_path.name.lower().startswith(
        "preloader")


def test_six_chips_across_generations_verify() -> None:
    names = {chips.by_name(parse_scatter(next(p for p in SCATTERS if p.name == s)).platform)
             .name for s, _ in STOCK}  # type: ignore[union-attr]
    assert len(names) >= 6
    assert {"MT6572", "MT6580", "MT6735", "MT6771", "MT6833"} <= names


def _entries_by_hand(data: bytes) -> tuple[int, int]:
    """(claimed count, offset of the entry array), read with struct from the raw block."""
    at = data.find(b"MTK_BLOADER_INFO_v")
    mtk_bin = data.find(b"MTK_BIN\0", at)
    return struct.unpack_from("<I", data, mtk_bin + 8)[0], mtk_bin + 12


@pytest.mark.parametrize("path", EMI_TABLES, ids=_ids(EMI_TABLES))
def test_real_emi_table_decodes_to_plausible_ids(path: Path) -> None:
    data = path.read_bytes()
    info = load_preloader(path)
    assert info.form == "emi" and info.emi_version == emi_version_of(data)
    count, _array = _entries_by_hand(data)
    assert info.emi_count == count
    assert info.entries, info.emi_note
    if len(info.entries) < count:  # a table cut short in the file: said so
        assert "cut short" in info.emi_note
    else:
        assert info.emi_note == ""
    for e in info.active_entries():
        assert e.type_name and not e.type_name.startswith("unknown"), e.type
        if e.is_fallback:
            assert e.is_discrete and e.id == b""
            continue
        assert 1 <= e.id_length <= 16 and len(e.id) == e.id_length
        if e.is_ufs:  # UFS product names are ASCII
            assert all(0x20 <= b < 0x7F for b in e.id.rstrip(b"\0 ")), e.id
        elif (e.type & 0x0F00) == 0x0200:  # eMMC CID: a known maker, CBX/OID bytes
            assert e.id[0] in MANUFACTURERS, e.id.hex()
            assert e.id_length >= 6
        # The ID is found in the entry bytes exactly where the file holds it.
        assert e.id in e.raw


@pytest.mark.parametrize("path", PRELOADERS, ids=_ids(PRELOADERS))
def test_real_preloader_decodes_and_names_its_chip(path: Path) -> None:
    info = load_preloader(path)
    data = path.read_bytes()
    assert info.emi_version == emi_version_of(data) and info.entries and not info.emi_note
    assert chips.by_emi_version(info.emi_version)  # the chip table knows the version
    # The table the preloader carries is byte-identical to the one the file holds.
    at = data.find(b"MTK_BLOADER_INFO_v")
    assert data[at:at + 0x70].startswith(b"MTK_BLOADER_INFO_v")
    assert info.emi_blob in data


def test_every_emi_version_in_the_corpus_has_a_chip() -> None:
    versions = {emi_version_of(p.read_bytes()) for p in EMI_TABLES}
    assert {8, 10, 11, 14, 20, 36, 46, 52} <= versions
    assert all(chips.by_emi_version(v) for v in versions)


def _bytes_summing_to(value: int) -> bytes:
    """A few bytes whose 16-bit byte sum is `value` (the test's own arithmetic)."""
    return b"\xff" * (value // 255) + bytes([value % 255])


def test_stock_folder_with_its_real_checksum_ini_verifies(tmp_path: Path) -> None:
    """MT8167 (gohj99/GongChengROM): the real scatter, the real Checksum.ini and the real
    lk image it was made for. The other images are placeholders this test builds so that
    their byte sums are the file's values; the preloader is a GFH placeholder around the
    corpus's real MT8167 (v28) EMI table, padded to the file's `preloader` value."""
    fix = Path(__file__).parent / "fixtures"
    scatter = next(p for p in SCATTERS if p.name == "MT8167_Android_scatter.gongcheng.txt")
    ini_text = (fix / "checksum-mt8167" / "Checksum.ini").read_text()
    values = {k: int(v, 16) for k, v in
              (ln.split("=", 1) for ln in ini_text.split("[CheckSum]")[1].split())}
    folder = tmp_path / "fw"
    folder.mkdir()
    (folder / "MT8167_Android_scatter.txt").write_bytes(scatter.read_bytes())
    (folder / "Checksum.ini").write_text(ini_text)
    by_name = {item["partition_name"]: item["file_name"] for item in
               scatter_items(read_text(scatter)) if item.get("is_download") == "true"}
    assert set(by_name) == set(values)
    for name, file_name in by_name.items():
        target = folder / file_name
        if name == "lk_a":  # the real image: the file's lk_a value is its byte sum
            target.write_bytes((fix / "checksum-mt8167" / "lk-verified.img").read_bytes())
        elif name == "preloader":
            pre = wrap_in_gfh(emi_table(28))
            target.write_bytes(pre + _bytes_summing_to((values[name] - sum(pre)) % 65536))
        else:
            target.write_bytes(_bytes_summing_to(values[name]))
    report = verify_folder(folder)
    assert [f.message for f in report.errors] == [] and report.ok
    assert {r.partition: r.status for r in report.checksums} == {k: "ok" for k in values}
    assert parse_scatter(folder / "MT8167_Android_scatter.txt").platform == "MT8167"
