"""The error-code knowledge base against the shared tables (read directly here, not via romkit)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import romkit.knowledge as kb
from romkit.errors import RomkitError, UsageError
from romkit.knowledge import build as kbuild
from romkit.knowledge.curated import CURATED

PACKAGE_JSON = Path(kb.__file__).with_name("codes.json")
COMMON_CODES = [1013, 2004, 2005, 3012, 3149, 4001, 4008, 4009, 4010, 4032, 4050, 5007, 5016,
                5054, 5066, 5069, 6012, 8038, 8045, 8100, 8200, 8406, 8416, 8417, 8502, 8503,
                0xC0030001]


def fixture_tables(fixtures_dir: Path) -> dict[str, dict[int, set[str]]]:
    """version label (v5.1648) → code → names, parsed with str.split (independent of romkit)."""
    tables: dict[str, dict[int, set[str]]] = {}
    for path in sorted((fixtures_dir / "error-codes").glob("codes_v*_*.txt")):
        _, major, build = path.stem.split("_")
        rows: dict[int, set[str]] = {}
        for line in path.read_text().splitlines():
            if line.strip():
                dec, hexs, name = line.split()
                assert int(dec) == int(hexs, 16)
                rows.setdefault(int(dec), set()).add(name)
        tables[f"{major}.{build}"] = rows
    return tables


@pytest.fixture(scope="module")
def tables() -> dict[str, dict[int, set[str]]]:
    return fixture_tables(Path(__file__).parent / "fixtures")


def names_by_version(exp: kb.Explanation) -> dict[str, set[str]]:
    got: dict[str, set[str]] = {}
    for use in exp.names:
        for v in use.versions:
            got.setdefault(v, set()).add(use.name)
    return got


# -- the shipped data file ------------------------------------------------------------------------
def test_shipped_json_is_the_build_of_the_tables(fixtures_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "codes.json"
    res = subprocess.run([sys.executable, "-m", "romkit.knowledge.build",
                          str(fixtures_dir / "error-codes"), "--out", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "913 codes" in res.stdout
    assert out.read_bytes() == PACKAGE_JSON.read_bytes()


def test_shipped_json_holds_every_row_of_every_table(tables: dict) -> None:
    doc = json.loads(PACKAGE_JSON.read_text())
    assert [t["version"] for t in doc["tables"]] == [
        "v3.1113", "v5.1540", "v5.1648", "v5.1952", "v5.2052"]
    got: dict[str, dict[int, set[str]]] = {}
    for code, entries in doc["codes"].items():
        for name, versions in entries:
            for v in versions:
                got.setdefault(v, {}).setdefault(int(code), set()).add(name)
    assert got == tables


@pytest.mark.parametrize("version,code", [
    ("v3.1113", 3149), ("v3.1113", 3012), ("v3.1113", 3144), ("v3.1113", 4032),
    ("v5.1540", 3149), ("v5.1540", 0x12000), ("v5.1540", 0x8001), ("v5.1540", 5069),
    ("v5.1648", 0xC0030001), ("v5.1648", 3154), ("v5.1648", 0xC0060001),
    ("v5.1952", 0x40040006), ("v5.1952", 0xC004000A),
    ("v5.2052", 0xC003001E), ("v5.2052", 0x40040002), ("v5.2052", 1013), ("v5.2052", 0),
])
def test_lookup_spot_checks_against_fixture_text(tables: dict, version: str, code: int) -> None:
    exp = kb.lookup(code)
    assert names_by_version(exp)[version] == tables[version][code]
    narrowed = kb.lookup(code, version)
    assert set(names_by_version(narrowed)) == {version}
    assert f"romkit/knowledge/codes.json: SP Flash Tool {version} status codes" in exp.sources
    assert exp.hex == hex(code).upper().replace("0X", "0x")
    missing = [v for v, rows in tables.items() if code not in rows]
    assert exp.not_in == missing


# -- version-dependent meanings -------------------------------------------------------------------
def test_3149_shows_both_meanings_and_narrows(tables: dict) -> None:
    exp = kb.lookup("3149")
    by_version = names_by_version(exp)
    assert by_version["v3.1113"] == tables["v3.1113"][3149] == {"S_DA_SDMMC_WRITE_FAILED"}
    for v in ("v5.1540", "v5.1648", "v5.1952", "v5.2052"):
        assert by_version[v] == tables[v][3149] == {"S_DA_EMMC_FLASH_NOT_FOUND"}
    assert exp.version_note and "--tool-version" in exp.version_note
    assert {a.name for a in exp.advice} == {"S_DA_SDMMC_WRITE_FAILED", "S_DA_EMMC_FLASH_NOT_FOUND"}
    # the v3 write failure is 3154 in v5: found from the tables, not from curated text
    v3 = next(u for u in exp.names if u.name == "S_DA_SDMMC_WRITE_FAILED")
    v5_code = next(c for c, n in tables["v5.1648"].items() if "S_DA_SDMMC_WRITE_FAILED" in n)
    assert [r.code for r in v3.elsewhere] == [v5_code] == [3154]

    only_v3 = kb.lookup(3149, "v3")
    assert [u.name for u in only_v3.names] == ["S_DA_SDMMC_WRITE_FAILED"]
    assert [a.title for a in only_v3.advice] == ["eMMC write failed"]
    assert only_v3.version_note is None
    for tv in ("v5", "5", "v5.1648", "V5.1952.00"):
        only_v5 = kb.lookup(3149, tv)
        assert [u.name for u in only_v5.names] == ["S_DA_EMMC_FLASH_NOT_FOUND"]
        assert [a.romkit_command for a in only_v5.advice] == ["romkit inspect"]


def test_unknown_build_of_a_known_generation_falls_back_with_a_note() -> None:
    exp = kb.lookup(3149, "v5.1804")
    assert exp.tool_version == "v5"
    assert exp.version_note and "v5.1804" in exp.version_note


@pytest.mark.parametrize("bad", ["v9", "x5", "", "v5.x", "5..1"])
def test_bad_tool_version_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError):
        kb.lookup(4032, bad or " ")


def test_status_code_three_spellings_are_one_code() -> None:
    neg = kb.lookup("-1073545215")
    hexed = kb.lookup("0xC0030001")
    dec = kb.lookup(3221422081)
    assert neg == hexed == dec
    assert neg.code == (-1073545215) & 0xFFFFFFFF == int("C0030001", 16)
    assert neg.signed == -1073545215
    assert [u.name for u in neg.names] == ["STATUS_SCATTER_FILE_INVALID"]
    assert neg.not_in == ["v3.1113", "v5.1540"]
    # v5.1540 numbered the same status 0x12000
    assert [(r.code, r.versions) for r in neg.names[0].elsewhere] == [(0x12000, ["v5.1540"])]


# -- curated entries ------------------------------------------------------------------------------
@pytest.mark.parametrize("code", COMMON_CODES)
def test_common_codes_have_curated_sourced_advice(code: int) -> None:
    exp = kb.lookup(code)
    assert exp.advice, code
    for adv in exp.advice:
        assert adv.cause and adv.fix and adv.title
        assert adv.romkit_command and adv.romkit_command.startswith("romkit ")
        assert adv.source.startswith("romkit's reading of SP Flash Tool's own error texts")
        assert adv.source in exp.sources


@pytest.mark.parametrize("code,command", [
    (4032, "romkit prepare --device-year 2014"), (5054, "romkit prepare --device-year 2014"),
    (8038, "romkit flash --mode firmware-upgrade"), (8502, "romkit flash --mode firmware-upgrade"),
    (1013, "romkit doctor"), (8416, "romkit checksum --write"), (5007, "romkit verify"),
])
def test_codes_point_at_the_romkit_command_that_fixes_them(code: int, command: str) -> None:
    assert [a.romkit_command for a in kb.lookup(code).advice] == [command]


def test_4032_advice_names_the_2014_preloader_and_the_memory_table() -> None:
    adv = kb.lookup(4032).advice[0]
    assert "2014" in adv.cause and "memory" in adv.cause and "preloader" in adv.cause
    assert "github.com/bkerler/mtkclient" in adv.source


def test_curated_entries_agree_with_the_tables(tables: dict) -> None:
    all_codes = set().union(*(rows.keys() for rows in tables.values()))
    for entry in CURATED:
        if entry.name is None:
            assert entry.code in all_codes, entry
            gens = {v.split(".")[0] for v in entry.versions}
            for gen in gens:
                assert any(v.startswith(gen + ".") and entry.code in rows
                           for v, rows in tables.items()), entry
        else:
            assert entry.code not in all_codes, entry
            assert entry.versions and set(entry.versions) <= {"v3", "v5"}
    application = {e.code: e for e in CURATED if e.name}
    assert application[8038].versions == ("v3",) and application[8045].versions == ("v3",)
    assert application[8502].versions == ("v5",) and application[8416].versions == ("v5",)
    assert set(application[8100].versions) == {"v3", "v5"}


def test_application_codes_and_their_versions() -> None:
    exp = kb.lookup(8038)
    assert exp.kind == "application"
    assert [(u.name, u.versions) for u in exp.names] == [("FT_DOWNLOAD_LAYOUT_CHANGED", ["v3"])]
    assert exp.not_in == []
    assert kb.lookup(8502, "v5.1648").names[0].name == "ERROR_ROM_MUST_ENABLE"
    with pytest.raises(UsageError, match="not used by SP Flash Tool v5") as info:
        kb.lookup(8038, "v5")
    assert "v3" in info.value.hint


# -- describe / parse / unknown -------------------------------------------------------------------
def test_describe_one_liners() -> None:
    assert kb.describe(4032) == "S_FT_ENABLE_DRAM_FAIL: [EMI] Enable DRAM failed"
    assert kb.describe(3149) == ("S_DA_SDMMC_WRITE_FAILED (v3): eMMC write failed; "
                                 "S_DA_EMMC_FLASH_NOT_FOUND (v5): eMMC not found")
    assert kb.describe(3149, "v5") == "S_DA_EMMC_FLASH_NOT_FOUND: eMMC not found"
    assert kb.describe(1000) == "S_STOP"  # the range marker sharing the number is left out
    assert kb.describe(99999) == "SP Flash Tool code 99999: not in romkit's tables"
    assert "\n" not in kb.describe(0)


@pytest.mark.parametrize("text,value", [
    ("4032", 4032), (" 4032 ", 4032), ("0xFC0", 0xFC0), ("0XfC0", 4032), ("+12", 12),
    ("-1073545215", 0xC0030001), ("-1", 0xFFFFFFFF), ("-2147483648", 0x80000000),
    ("4294967295", 0xFFFFFFFF), (-1073545215, 0xC0030001), (0, 0),
])
def test_parse_code_accepts(text: str | int, value: int) -> None:
    assert kb.parse_code(text) == value


@pytest.mark.parametrize("text", ["", "abc", "0x", "1e3", "4294967296", "-2147483649",
                                  "\u0664\u0660\u0663\u0662", "0x1FFFFFFFF", "4032h", "- 1",
                                  "9" * 5000, True])
def test_parse_code_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        kb.parse_code(text)


def test_unknown_code_is_a_usage_error_with_a_hint() -> None:
    with pytest.raises(UsageError) as info:
        kb.lookup(99999)
    assert "99999" in info.value.message and "0x1869F" in info.value.message
    assert "--search" in info.value.hint
    assert info.value.exit_code == 2 and info.value.spft_code is None


# -- search ---------------------------------------------------------------------------------------
def test_search_dram_finds_every_dram_name_and_curated_first(tables: dict) -> None:
    hits = kb.search("DRAM")
    codes = [h.code for h in hits]
    expected = {c for rows in tables.values() for c, names in rows.items()
                if any("DRAM" in n for n in names)}
    assert expected <= set(codes)
    assert {4032, 5054} <= set(codes)
    curated = [h.curated for h in hits]
    assert curated == sorted(curated, reverse=True)
    assert kb.search("enable dram")[0].code == 4032


def test_search_respects_tool_version(tables: dict) -> None:
    v3 = {h.code for h in kb.search("sdmmc write", "v3")}
    v3_expected = {c for c, n in tables["v3.1113"].items() if "S_DA_SDMMC_WRITE_FAILED" in n}
    assert v3_expected == {3149} and 3149 in v3 and 3154 not in v3
    v5 = {h.code for h in kb.search("S_DA_SDMMC_WRITE_FAILED", "v5")}
    assert v5 == {3154}


def test_search_without_words_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        kb.search("   ")
    assert kb.search("no-such-word-anywhere") == []


# -- build script ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text,needle", [
    ("4032 0xfc1 S_X\n", "disagree"),
    ("4032 0xfc0\n", "3 columns"),
    ("4032 0xfc0 9BAD\n", "symbolic"),
    ("forty 0xfc0 S_X\n", "decimal"),
    ("99999999999 0x174876e7ff S_X\n", "32 bits"),
    ("\n# only a comment\n", "no codes"),
])
def test_parse_table_rejects_malformed_rows(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        kbuild.parse_table(text, "t.txt")


def test_parse_table_accepts_signed_decimal() -> None:
    assert kbuild.parse_table("-1073545215 0xC0030001 STATUS_X\n") == [(0xC0030001, "STATUS_X")]


def test_build_cli_reports_bad_input(tmp_path: Path) -> None:
    (tmp_path / "codes_v3_1.txt").write_text("1 0x2 S_BAD\n")
    (tmp_path / "notes.txt").write_text("ignored")
    res = subprocess.run([sys.executable, "-m", "romkit.knowledge.build", str(tmp_path),
                          "--out", str(tmp_path / "o.json")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.startswith("error: codes_v3_1.txt:1: decimal 1 and hex 0x2 disagree")
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "o.json").exists()
    with pytest.raises(UsageError, match="not a folder"):
        kbuild.build_codes(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no codes_v"):
        kbuild.build_codes(tmp_path / "empty")


def test_build_orders_tables_by_version_and_merges_names(tmp_path: Path) -> None:
    (tmp_path / "codes_v5_900.txt").write_text("7 0x7 S_A\n7 0x7 S_A_ALIAS\n")
    (tmp_path / "codes_v10_1.txt").write_text("7 0x7 S_A\n")
    (tmp_path / "codes_v3_50.txt").write_text("7 0x7 S_OLD\n")
    doc = kbuild.build_codes(tmp_path)
    assert [t["version"] for t in doc["tables"]] == ["v3.50", "v5.900", "v10.1"]
    assert doc["codes"] == {"7": [["S_OLD", ["v3.50"]], ["S_A", ["v5.900", "v10.1"]],
                                  ["S_A_ALIAS", ["v5.900"]]]}
    assert json.loads(kbuild.dumps(doc)) == doc


# -- hostile input --------------------------------------------------------------------------------
def _code_text(n: int, form: str) -> str:
    """`n` written the ways SP Flash Tool logs and users do (and some they should not)."""
    if form == "hex" and n >= 0:
        return hex(n)
    if form == "HEX" and n >= 0:
        return f"0X{n:08X}"
    if form == "neghex":
        return f"-{hex(abs(n))}"
    if form == "plus" and n >= 0:
        return f"+{n}"
    if form == "zeros" and n >= 0:
        return f"{n:012d}"
    if form == "spaced":
        return f"  {n}\t"
    return str(n)


_code_texts = st.one_of(
    st.text(max_size=60),
    st.builds(_code_text,
              st.one_of(st.integers(-(2**31), 2**32 - 1), st.integers(-(2**40), 2**40),
                        st.sampled_from([0, 2**31 - 1, 2**31, 2**32 - 1, 2**32, -(2**31),
                                         -(2**31) - 1, -1])),
              st.sampled_from(["dec", "hex", "HEX", "neghex", "plus", "zeros", "spaced"])),
)


@settings(max_examples=300, deadline=None)
@given(_code_texts)
def test_parse_code_fuzz_raises_only_usage_errors(text: str) -> None:
    """Accepted texts give the signed-32-bit reading of the number written; others, and
    numbers outside [-2^31, 2^32), raise UsageError."""
    s = text.strip()
    try:
        number = int(s, 16) if s[:2].lower() == "0x" else int(s, 10)
    except ValueError:
        number = None
    try:
        value = kb.parse_code(text)
    except UsageError:
        assert number is None or not -(2**31) <= number <= 0xFFFFFFFF or not s.isascii() \
            or "_" in s or s.startswith("-0")
        return
    assert number is not None and -(2**31) <= number <= 0xFFFFFFFF
    assert value == number & 0xFFFFFFFF


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(2**40), max_value=2**40),
       st.sampled_from([None, "v3", "v5", "v5.1648", "v5.1804"]))
def test_lookup_and_describe_fuzz(code: int, tool_version: str | None) -> None:
    try:
        exp = kb.lookup(code, tool_version)
    except UsageError:
        pass
    else:
        assert exp.names and exp.sources
    assert isinstance(kb.describe(code, tool_version), str)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_tool_version_fuzz(tool_version: str) -> None:
    try:
        kb.lookup(4032, tool_version or None)
    except UsageError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=300),
    st.lists(st.tuples(st.integers(-(2**33), 2**33), st.integers(0, 2**36),
                       st.from_regex(r"[A-Za-z_0-9]{0,12}", fullmatch=True)),
             max_size=6).map(lambda rows: "\n".join(f"{d} {hex(h)} {n}" for d, h, n in rows)),
))
def test_parse_table_fuzz_raises_only_romkit_errors(text: str) -> None:
    try:
        rows = kbuild.parse_table(text)
    except RomkitError:
        return
    assert rows and all(0 <= c <= 0xFFFFFFFF for c, _ in rows)


def test_sources_cite_only_public_material_or_files_that_ship() -> None:
    """Users have neither the project's reference notes nor its issue tracker."""
    internal = re.compile(r"\.md\b|issue|reference|error-codes/|codes_v\d")
    for entry in CURATED:
        assert not internal.search(entry.source), entry
    for code in (4032, 3149, 8038, 0xC0030001):
        for source in kb.lookup(code).sources:
            assert not internal.search(source), source
