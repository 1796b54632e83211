"""`romkit explain` run as a real subprocess: output, sources, JSON and exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import clitools
import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return clitools.run_cli(*args, env={"COLUMNS": "120"})


def fixture_names(fixtures_dir: Path, code: int) -> dict[str, set[str]]:
    """file name → names of `code` in it, straight from the fixture text."""
    found: dict[str, set[str]] = {}
    for path in sorted((fixtures_dir / "error-codes").glob("codes_v*.txt")):
        for line in path.read_text().splitlines():
            dec, _, name = line.split()
            if int(dec) & 0xFFFFFFFF == code:
                found.setdefault(path.name, set()).add(name)
    return found


def test_explain_4032_text(fixtures_dir: Path) -> None:
    res = run_cli("explain", "4032")
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert text.startswith("Code 4032 (0xFC0)")
    names = fixture_names(fixtures_dir, 4032)
    assert set().union(*names.values()) == {"S_FT_ENABLE_DRAM_FAIL"}
    assert "S_FT_ENABLE_DRAM_FAIL" in text
    for file in names:  # every table that defines it is cited, by its tool version
        assert file.removeprefix("codes_").removesuffix(".txt").replace("_", ".") in text
    assert "romkit prepare --device-year 2014" in text
    assert "Cause:" in text and "Fix:" in text
    sources = text.split("\nSources:\n", 1)[1]
    assert "romkit/knowledge/codes.json" in sources and "github.com/bkerler/mtkclient" in sources
    assert ".md" not in sources


def test_status_code_hex_and_bare_negative_give_the_same_answer(fixtures_dir: Path) -> None:
    by_hex = run_cli("explain", "0xC0030001")
    by_neg = run_cli("explain", "-1073545215")
    by_sep = run_cli("explain", "--", "-1073545215")
    assert by_hex.returncode == by_neg.returncode == by_sep.returncode == 0, by_neg.stderr
    assert by_hex.stdout == by_neg.stdout == by_sep.stdout
    names = fixture_names(fixtures_dir, 0xC0030001)
    assert sorted(names) == ["codes_v5_1648.txt", "codes_v5_1952.txt", "codes_v5_2052.txt"]
    assert "STATUS_SCATTER_FILE_INVALID" in by_hex.stdout
    assert "-1073545215" in by_hex.stdout and "romkit inspect" in by_hex.stdout
    assert "not defined in: v3.1113, v5.1540" in by_hex.stdout


def test_explain_3149_both_meanings_then_narrowed(fixtures_dir: Path) -> None:
    names = fixture_names(fixtures_dir, 3149)
    v3 = names.pop("codes_v3_1113.txt")
    v5 = set().union(*names.values())
    assert v3 != v5
    res = run_cli("explain", "3149")
    assert res.returncode == 0
    for name in v3 | v5:
        assert name in res.stdout
    assert "v3.1113" in res.stdout and "v5.1540–v5.2052" in res.stdout
    assert "--tool-version" in res.stdout  # says the numbering differs

    narrowed = run_cli("explain", "3149", "--tool-version", "v3")
    assert narrowed.returncode == 0
    assert all(n in narrowed.stdout for n in v3)
    assert not any(n in narrowed.stdout for n in v5)


def test_global_json_for_an_application_code() -> None:
    res = run_cli("--json", "explain", "8038")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["code"] == 8038 and doc["hex"] == "0x1F66" and doc["kind"] == "application"
    assert [(n["name"], n["versions"]) for n in doc["names"]] == [
        ("FT_DOWNLOAD_LAYOUT_CHANGED", ["v3"])]
    assert doc["advice"][0]["romkit_command"] == "romkit flash --mode firmware-upgrade"
    assert any("SP Flash Tool's own error texts" in s for s in doc["sources"])


def test_unknown_code_exits_2_with_one_error_line() -> None:
    res = run_cli("explain", "99999")
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert lines[0] == "error: unknown SP Flash Tool code 99999 (0x1869F)"
    assert all(line.startswith(("error:", "hint:")) for line in lines)
    assert "Traceback" not in res.stderr and "more: romkit explain" not in res.stderr

    as_json = run_cli("explain", "99999", "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"] == "UsageError"


@pytest.mark.parametrize("args", [
    ("explain",), ("explain", "abc"), ("explain", "8038", "-t", "v5"),
    ("explain", "4032", "-t", "v9"), ("explain", "--bogus"),
])
def test_usage_errors_exit_2_without_traceback(args: tuple[str, ...]) -> None:
    res = run_cli(*args)
    assert res.returncode == 2, res
    assert res.stderr.startswith("error:") and "Traceback" not in res.stderr


def test_search_by_word(fixtures_dir: Path) -> None:
    res = run_cli("explain", "--search", "DRAM", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    codes = [h["code"] for h in doc["hits"]]
    curated = [h["code"] for h in doc["hits"] if h["curated"]]
    assert codes[:len(curated)] == sorted(curated)  # curated first, in numeric order
    assert {3002, 4032, 5054} <= set(curated)
    assert fixture_names(fixtures_dir, 2030)["codes_v3_1113.txt"] == {
        "S_BROM_EXTERNAL_DRAM_DETECTION_FAIL"}
    assert 2030 in codes

    text = run_cli("explain", "-s", "enable dram")
    assert text.returncode == 0
    assert "4032" in text.stdout and "[EMI] Enable DRAM failed" in text.stdout
