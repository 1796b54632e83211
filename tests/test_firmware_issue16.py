"""Issue 16, item by item: each test failed on the code before the fix (checked against the
tree at 9b77197 with these tests and tests/fixtures/real copied in)."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
from clitools import run_main
from realfiles import REAL, SCATTERS, emi_table, read_text, stock_folder, wrap_in_gfh

from romkit.firmware.checksum import read_checksum_ini, verify_checksums, write_checksum_ini
from romkit.firmware.package import Firmware, inspect_folder, verify_folder
from romkit.firmware.preloader import (
    compare_preloaders,
    load_preloader,
    parse_preloader,
    product_name,
)
from romkit.firmware.scatter import parse_scatter_text
from romkit.prepare.checksum_ini import update_checksum_text
from romkit.sim.artifacts import preloader_s820
from romkit.sim.sample_firmware import build_s820_folder


def _scatter(name: str) -> Path:
    return next(p for p in SCATTERS if p.name == name)


def _real_folder(tmp_path: Path, name: str, emi: int) -> Path:
    return stock_folder(_scatter(name), tmp_path / "fw", preloader=wrap_in_gfh(emi_table(emi)))


# 1 ---------------------------------------------------------------------------------------------
def test_1_gpt_era_scatter_is_not_refused_for_cross_region_or_placeholder_addresses(
        tmp_path: Path) -> None:
    text = read_text(_scatter("MT6580_Android_scatter.txt"))
    # The file itself has preloader at 0 of EMMC_BOOT_1, pgpt at 0 of EMMC_USER and reserved
    # 0xFFFF… entries with boundary_check: false (the test's own reading).
    assert "region: EMMC_BOOT_1" in text and "linear_start_addr: 0xFFFF" in text
    assert "boundary_check: false" in text
    report = verify_folder(_real_folder(tmp_path, "MT6580_Android_scatter.txt", 21))
    assert not [f for f in report.findings if f.code.startswith("layout-")]
    assert report.ok


def test_1_overlap_inside_one_region_is_still_an_error() -> None:
    text = ("- partition_index: SYS0\n  partition_name: a\n  file_name: NONE\n"
            "  is_download: false\n  linear_start_addr: 0x0\n  partition_size: 0x2000\n"
            "  region: EMMC_USER\n"
            "- partition_index: SYS1\n  partition_name: b\n  file_name: NONE\n"
            "  is_download: false\n  linear_start_addr: 0x1000\n  partition_size: 0x1000\n"
            "  region: EMMC_USER\n"
            "- partition_index: SYS2\n  partition_name: c\n  file_name: NONE\n"
            "  is_download: false\n  linear_start_addr: 0x0\n  partition_size: 0x1000\n"
            "  region: EMMC_BOOT_1\n")
    layout = parse_scatter_text(text, "MT6580_Android_scatter.txt")
    from romkit.firmware.package import Finding, _check_order

    found: list[Finding] = []
    _check_order(layout, found.append)
    assert [(f.code, f.partition) for f in found] == [("layout-overlap", "b")]


# 2 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["MT6771T_Android_scatter.android9.txt",
                                  "MT6781_Android_scatter.txt", "MT6785_Android_scatter.txt",
                                  "MT6833_Android_scatter.txt",
                                  "MT6789_Android_scatter.lenovo-tb350fu.txt"])
def test_2_v2_scatter_inspects_with_the_right_partition_count(tmp_path: Path, capsys:
                                                             pytest.CaptureFixture[str],
                                                             name: str) -> None:
    text = read_text(_scatter(name))
    emmc = text.split("- storage_type: UFS")[0]
    folder = stock_folder(_scatter(name), tmp_path / "fw")
    code, out, err = run_main(capsys, "inspect", str(folder), "--json")
    assert code in (0, 3), err  # placeholder preloader: findings, but the file is read
    doc = json.loads(out)
    assert doc["format"] == "v2"
    assert len(doc["partitions"]) == emmc.count("partition_name:")
    assert doc["storages"] == {"EMMC": emmc.count("partition_name:"),
                               "UFS": text.count("partition_name:") - emmc.count(
                                   "partition_name:")}
    # Boot regions as the file names them (EMMC_BOOT1_BOOT2, or EMMC_BOOT1 + EMMC_BOOT2).
    boot = {r["region"] for r in doc["partitions"] if r["region"].startswith("EMMC_BOOT")}
    assert boot and boot <= {"EMMC_BOOT1_BOOT2", "EMMC_BOOT1", "EMMC_BOOT2"}
    assert f"region: {sorted(boot)[0]}" in emmc
    ufs = inspect_folder(folder, storage="UFS")
    regions = {r.region for r in ufs.partitions}
    assert "UFS_LU2" in regions and any(r.startswith("UFS_LU0") for r in regions)


# 3 ---------------------------------------------------------------------------------------------
def _v11_by_hand(data: bytes) -> list[tuple[int, bytes]]:
    """(type, ID) of each v11 entry: type at +0, ID[16] at +4, id_length at +0x14, 0xA8."""
    mtk_bin = data.find(b"MTK_BIN\0")
    count = struct.unpack_from("<I", data, mtk_bin + 8)[0]
    out = []
    for i in range(count):
        off = mtk_bin + 12 + i * 0xA8
        etype, = struct.unpack_from("<I", data, off)
        id_len, = struct.unpack_from("<I", data, off + 0x14)
        out.append((etype, data[off + 4:off + 4 + id_len]))
    return out


@pytest.mark.parametrize("version", [8, 11, 14])
def test_3_old_emi_versions_decode_in_a_preloader(version: int) -> None:
    block = emi_table(version)
    # Inside a (placeholder) GFH preloader; the corpus's v08 table is cut short in its
    # file, so that one is read bare.
    info = (load_preloader(next((REAL / "emi").glob("v08_*"))) if version == 8
            else parse_preloader(wrap_in_gfh(block)))
    assert info.emi_version == version and info.entries
    if version == 11:
        assert [(e.type, e.id) for e in info.entries] == _v11_by_hand(block)
    if version == 14:  # NAND MCP entries of MT6571: a 5-byte NAND ID, maker 0xAD / 0xEC
        assert {e.type for e in info.entries} == {0x0101}
        assert [e.id[0] for e in info.entries[:2]] == [0xAD, 0xEC]
        assert all(e.id_length == 5 for e in info.entries)
    if version == 8:  # Hynix eMMC CID 90 01 4a … in the first entry
        assert info.entries[0].id.startswith(bytes.fromhex("90014a"))
        assert info.entries[0].id_length == 9


# 4 ---------------------------------------------------------------------------------------------
def test_4_bare_emi_table_is_accepted_by_inspect_and_preloader_show(
        capsys: pytest.CaptureFixture[str]) -> None:
    path = next((REAL / "emi").glob("v11_*"))
    code, out, err = run_main(capsys, "inspect", str(path))
    assert code == 0, err
    assert "MTK_BLOADER_INFO_v11" in out and "MT6572" in out
    code, out, err = run_main(capsys, "preloader", "show", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["emi_count"] == 8


# 5 ---------------------------------------------------------------------------------------------
def test_5_discrete_entries_agree_between_listing_cid_and_compare(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Real tables with discrete LPDDR3 entries (id_length 0), inside placeholder preloaders
    # (so this item does not depend on bare tables being read, item 4).
    path, other = tmp_path / "a.bin", tmp_path / "b.bin"
    path.write_bytes(wrap_in_gfh(emi_table(27)))
    other.write_bytes(wrap_in_gfh(emi_table(0)))
    code, out, err = run_main(capsys, "preloader", "show", str(path), "--cid",
                              "150100514531334d42", "--json")
    assert code == 0, err
    doc = json.loads(out)
    first = doc["entries"][0]
    assert (first["type"], first["id_length"]) == (0x0003, 0)
    assert first["type_name"] == "discrete LPDDR3"
    assert first["fallback"] is True and doc["cid_check"]["supported"] is True
    assert doc["cid_check"]["fallback"] is True
    # Two tables whose discrete entries differ are not the same parts.
    a = load_preloader(path)
    b = load_preloader(other)
    cmp = compare_preloaders(a, b)
    assert not cmp.same_parts and cmp.only_a and cmp.only_b
    # Distinct discrete rows of one table stay distinct.
    assert len({e.raw for e in a.active_entries()}) == len(cmp.only_a) + len(cmp.both)


# 6 ---------------------------------------------------------------------------------------------
def test_6_lowercase_preloader_gets_every_preloader_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _real_folder(tmp_path, "MT6765_Android_scatter.txt", 35)
    text = read_text(_scatter("MT6765_Android_scatter.txt"))
    assert "partition_name: preloader\n" in text.replace("\r", "")
    file_name = re.search(r"file_name:\s*(preloader\S*)", text).group(1)  # type: ignore[union-attr]
    code, out, err = run_main(capsys, "inspect", str(folder), "--json")
    assert code == 0, err
    assert json.loads(out)["preloader"].endswith(file_name)
    # … and a bad one is caught.
    (folder / file_name).write_bytes(b"EMMC_BOOT" + bytes(600))
    assert "preloader-invalid" in {f.code for f in verify_folder(folder).errors}


# 7 ---------------------------------------------------------------------------------------------
def test_7_preloader_of_another_chip_is_an_error_naming_both(tmp_path: Path) -> None:
    folder = build_s820_folder(tmp_path / "s820", preloader=preloader_s820(2013))
    (folder / "preloader_s820.bin").write_bytes(wrap_in_gfh(emi_table(20)))  # MT6735 family
    report = Firmware.load(folder).validate()
    bad = [f for f in report.errors if f.code == "preloader-platform"]
    assert len(bad) == 1 and not report.ok
    assert "MT6589" in bad[0].message and "MT6735" in bad[0].message


# 8 ---------------------------------------------------------------------------------------------
def test_8_one_item_with_an_empty_name_does_not_block_the_scatter(tmp_path: Path) -> None:
    text = read_text(_scatter("MT6735_Android_scatter.txt"))
    odd = text.replace("partition_name: flashinfo", "partition_name: ", 1)
    assert odd != text
    layout = parse_scatter_text(odd, "MT6735_Android_scatter.txt")
    assert len(layout.partitions) == text.count("partition_name:") - 1
    assert layout.skipped and "no partition_name" in layout.skipped[0]
    folder = _real_folder(tmp_path, "MT6735_Android_scatter.txt", 20)
    (folder / "MT6735_Android_scatter.txt").write_text(odd)
    report = verify_folder(folder)
    assert report.ok and "scatter-item-skipped" in {f.code for f in report.warnings}


# 9 ---------------------------------------------------------------------------------------------
def test_9_absent_images_keep_their_keys_and_comments_survive(tmp_path: Path) -> None:
    folder = _real_folder(tmp_path, "MT6580_Android_scatter.txt", 21)
    (folder / "Checksum.ini").write_text(
        "; made by CheckSum_Gen\n[VERSION]\nVERSION=V1\n[IsEnableChecksum]\n"
        "CHECKSUM_SWITCH=1\n[CheckSum]\n; userdata is shipped separately\n"
        "userdata=0x1234\nrecovery=0x0000\n")
    userdata = folder / "userdata.img"
    userdata.unlink()  # the image is simply not in this folder
    results = verify_checksums(folder)
    row = next(r for r in results if r.partition == "userdata")
    assert (row.status, row.expected) == ("no-image", 0x1234)
    report = verify_folder(folder)
    assert "checksum-unknown-key" not in {f.code for f in report.findings}
    written = write_checksum_ini(folder)
    text = written.path.read_text()
    assert "; made by CheckSum_Gen" in text and "; userdata is shipped separately" in text
    assert "userdata=0x1234" in text and written.kept_absent == ["userdata"]
    assert read_checksum_ini(written.path).values["userdata"] == 0x1234


def test_9_bom_file_is_read_alike_by_verify_and_prepare() -> None:
    text = "\ufeff[CheckSum]\nlk=0x0001\n"
    assert update_checksum_text(text, {"LK": ("lk", 0x2CB4)}) == "\ufeff[CheckSum]\nlk=0x2CB4\n"


# 10 --------------------------------------------------------------------------------------------
def test_10_product_name_with_one_unprintable_byte_shows_both() -> None:
    cid = bytes.fromhex("90014a48414734640400000000000000")
    assert product_name(cid) == "HAG4d (484147346404)"
    assert product_name(bytes.fromhex("150100514531334d42")) == "QE13MB"


def test_2_storage_choice_on_a_one_layout_file_is_refused_not_ignored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = stock_folder(_scatter("MT6580_Android_scatter.txt"), tmp_path / "fw")
    code, _out, err = run_main(capsys, "inspect", str(folder), "--storage", "UFS")
    assert code == 2 and "no UFS layout" in err and "Traceback" not in err
