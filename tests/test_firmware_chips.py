"""The chip table (romkit/firmware/chips.json) against facts read independently from the
real corpus, and its use by inspect/verify/flash."""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import pytest
from realfiles import EMI_TABLES, SCATTERS, emi_version_of, read_text, stock_folder

from romkit.errors import UsageError
from romkit.firmware import chips
from romkit.firmware.package import Firmware
from romkit.flash.plan import PlanOptions, build_plan


def test_every_row_is_well_formed_and_sourced() -> None:
    raw = json.loads((Path(chips.__file__).parent / "chips.json").read_text())
    names: set[str] = set()
    codes: set[str] = set()
    for row in raw["chips"]:
        assert re.fullmatch(r"MT\d{4}[A-Z]?", row["name"]), row["name"]
        assert re.fullmatch(r"0x[0-9A-F]{4}", row["hw_code"]), row["hw_code"]
        assert row["da_family"] in ("legacy", "v5-xflash", "v6-xml")
        assert row["sources"], row["name"]
        assert set(row["storage"]) <= {"emmc", "ufs", "nand"}
        for n in (row["name"], *row["aliases"]):
            assert n not in names, n  # one name, one chip
            names.add(n)
        assert row["hw_code"] not in codes
        codes.add(row["hw_code"])
    assert len(raw["chips"]) >= 40


def test_mt6589_facts_match_the_project_reference() -> None:
    chip = chips.by_name("MT6589")
    assert chip is not None and chip.hw_code == 0x6583 and chip.emi_versions == [10]
    assert chips.by_name("mt6583") is chip and chips.by_hw_code(0x6583) is chip
    assert chip.da_family == "legacy"


def test_every_scatter_platform_of_the_corpus_is_in_the_table() -> None:
    for path in SCATTERS:
        m = re.search(r"platform:\s*(MT\w+)", read_text(path))
        assert m is not None
        chip = chips.by_name(m.group(1))
        assert chip is not None, m.group(1)
        # The boot region the scatter uses is one the table lists for that chip.
        regions = set(re.findall(r"region:\s*((?:EMMC_BOOT|UFS_LU0|UFS_LU1)\w*)",
                                 read_text(path)))
        assert regions and regions <= set(chip.boot_regions), (chip.name, regions)


def test_emi_versions_of_the_corpus_name_the_chip_in_the_file_name() -> None:
    # mtkclient's corpus names most tables after the project, which often holds the chip
    # number (…6572…, …8163…): where it does, the table agrees.
    checked = 0
    for path in EMI_TABLES:
        m = re.search(r"(65\d\d|67\d\d|68\d\d|81\d\d)", path.name)
        if m is None:
            continue
        owners = chips.by_emi_version(emi_version_of(path.read_bytes()))
        assert any(m.group(1) in "/".join(c.names) for c in owners), (path.name, owners)
        checked += 1
    assert checked >= 8


def test_mismatch_sentence_names_both_chips() -> None:
    text = chips.emi_mismatch("MT6589", 20)
    assert text is not None and "MT6589" in text and "MT6735" in text and "v20" in text
    assert chips.emi_mismatch("MT6589", 10) is None
    assert chips.emi_mismatch("MT9999", 20) is None  # unknown platform: nothing to say


def test_flash_refuses_a_chip_whose_da_protocol_romkit_does_not_speak(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="MT6833") as exc:
        chips.require_flash_support("MT6833")
    assert "V5 (XFlash)" in exc.value.message and exc.value.hint
    with pytest.raises(UsageError, match="V6 \\(XML\\)"):
        chips.require_flash_support("MT6789")
    assert chips.require_flash_support("MT6589") is chips.by_name("MT6589")
    assert chips.require_flash_support(None) is None
    # The flash plan asks before anything else.
    scatter = next(p for p in SCATTERS if p.name == "MT6833_Android_scatter.txt")
    fw = Firmware.load(stock_folder(scatter, tmp_path / "fw"))
    with pytest.raises(UsageError, match="cannot flash MT6833"):
        build_plan(fw, PlanOptions())


REAL_DA = Path(__file__).parent / "fixtures" / "real" / "da" / "MTK_AllInOne_DA.bin"


def _da_codes_by_hand() -> set[int]:
    """hw codes of the real DA's entries, read with struct: u32 entry count at 0x68, entries
    of 0xDC bytes from 0x6C, hw_code the u16 after the entry's u16 magic (MP §5)."""
    data = REAL_DA.read_bytes()
    (count,) = struct.unpack_from("<I", data, 0x68)
    return {struct.unpack_from("<H", data, 0x6C + i * 0xDC + 2)[0] for i in range(count)}


def test_real_legacy_da_is_checked_against_the_scatter_chip(tmp_path: Path) -> None:
    codes = _da_codes_by_hand()
    assert {0x6583, 0x6580, 0x6735} <= codes and 0x0766 not in codes
    for name, bad in (("MT6580_Android_scatter.txt", False), ("MT6735_Android_scatter.txt", False),
                      ("MT6765_Android_scatter.txt", True)):
        scatter = next(p for p in SCATTERS if p.name == name)
        folder = stock_folder(scatter, tmp_path / name)
        shutil.copy(REAL_DA, folder / "MTK_AllInOne_DA.bin")
        found = [f for f in Firmware.load(folder).validate().findings if f.code == "da-platform"]
        assert bool(found) == bad, (name, found)
        if bad:
            assert "MT6765" in found[0].message and found[0].severity == "error"


def test_inspect_names_the_chip_of_each_real_da_entry() -> None:
    from romkit.firmware.inspect_file import inspect_file

    info = inspect_file(REAL_DA)
    by_code = {e["hw_code"]: e["chip"] for e in info["entries"]}
    assert set(by_code) == _da_codes_by_hand()
    assert (by_code[0x6583], by_code[0x6580], by_code[0x6735]) == ("MT6589", "MT6580", "MT6735")
    assert info["mt6589_entry"] is not None


def test_a_real_v6_da_is_shown_and_refused_for_flashing() -> None:
    from romkit.errors import FirmwareFormatError
    from romkit.firmware.da import load_da
    from romkit.firmware.inspect_file import inspect_file

    path = REAL_DA.parent / "DA_BR.bin"
    data = path.read_bytes()
    assert data[0x20:0x29] == b"MTK_DA_v6"
    (count,) = struct.unpack_from("<I", data, 0x68)
    (code,) = struct.unpack_from("<H", data, 0x6C + 2)
    info = inspect_file(path)
    assert info["protocol"] == "v6-xml" and len(info["entries"]) == count == 1
    assert info["entries"][0]["hw_code"] == code and info["entries"][0]["chip"] == "MT6895"
    with pytest.raises(FirmwareFormatError, match="XML"):
        load_da(path)  # what the flash path calls
