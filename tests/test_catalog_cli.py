"""`romkit catalog …` end to end: the real entry point, text and --json output, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from clitools import run_main

from romkit import paths
from romkit.catalog import user_catalog_dir, user_mirrors_path

SHIPPED = paths.builtin_catalog_dir() / "lenovo-s820.toml"


run = run_main


def shipped_ids(section: str) -> set[str]:
    raw = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    return {e["id"] for e in raw[section]}


def test_show_s124_through_the_real_entry_point() -> None:
    res = subprocess.run([sys.executable, "-m", "romkit", "catalog", "show", "S820_ROW_S124"],
                         capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert text.splitlines()[0] == "S820_ROW_S124_140404"
    for fact in ("2014-04-04", "4.2.1 Jelly Bean", "full SP Flash Tool package", "711 MB",
                 "Russian, Ukrainian, English, Arabic, Spanish, French, Chinese, Vietnamese, "
                 "Indonesian, Malaysian, Thai", "target_bin/MT6589_Android_scatter_emmc.txt"):
        assert fact in text, fact
    lines = {ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip()
             for ln in text.splitlines() if ":" in ln and not ln.startswith("    ")}
    assert lines["google play"] == "yes" and lines["rooted"] == "no"
    assert lines["sha256"] == "unknown" and lines["md5"] == "unknown"
    assert lines["file name"] == "unknown"
    assert lines["mirrors"] == "none known"


def test_list_json_has_every_build(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(capsys, "catalog", "list", "--json")
    assert code == 0
    doc = json.loads(stdout)
    assert {b["id"] for b in doc["builds"]} == shipped_ids("build")
    assert {r["id"] for r in doc["resources"]} == shipped_ids("resource")
    s124 = next(b for b in doc["builds"] if b["id"] == "S820_ROW_S124_140404")
    assert s124["date"] == "2014-04-04" and s124["hashes"] == {"sha256": None, "md5": None}


def test_list_filters_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(capsys, "catalog", "list", "--region", "CN")
    assert code == 0
    assert "VIBEUI_V2.0_1443_ST_S820" in stdout and "S820_ROW_S124_140404" not in stdout
    code, stdout, _ = run(capsys, "--json", "catalog", "list", "--kind", "driver")
    assert [r["id"] for r in json.loads(stdout)["resources"]] == ["mtk-usb-vcom-driver"]
    assert json.loads(stdout)["builds"] == []
    code, _, stderr = run(capsys, "catalog", "list", "--device", "S9200")
    assert code == 2 and "unknown device" in stderr and "hint:" in stderr


def test_show_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run(capsys, "catalog", "show", "S22")
    assert code == 2
    for candidate in ("S820_ROW_S220_140722", "S820_ROW_S221_140730",
                      "S820_ROW_8G_S222_141121", "S820_ROW_S223_150119"):
        assert candidate in stderr
    code, stdout, stderr = run(capsys, "catalog", "show", "S820_ROW_S124_14040", "--json")
    assert code == 2 and "did you mean S820_ROW_S124_140404" in stderr
    assert json.loads(stdout)["error"] == "CatalogError"


def test_search(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(capsys, "catalog", "search", "vietnamese", "--json")
    assert code == 0
    assert [r["id"] for r in json.loads(stdout)["results"]] == ["S820_ROW_S124_140404"]
    code, stdout, _ = run(capsys, "catalog", "search", "zzzz-nothing")
    assert code == 0 and "no matching" in stdout


def test_import_and_add_mirror_show_up_in_show(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "shop.toml"
    src.write_text('[[build]]\nid = "SHOP_S820_ROW_S124_REPACK"\ndevice = "S820"\n'
                   'region = "ROW"\nsize = 1234\n'
                   'hashes = { md5 = "' + "ab" * 16 + '" }\n'
                   'mirrors = ["https://shop.example/repack.7z"]\n', encoding="utf-8")
    code, stdout, _ = run(capsys, "catalog", "import", str(src), "--dry-run")
    assert code == 0 and "would import" in stdout and "SHOP_S820_ROW_S124_REPACK" in stdout
    assert not (user_catalog_dir() / "shop.toml").exists()
    code, stdout, _ = run(capsys, "catalog", "import", str(src), "--json")
    assert code == 0 and json.loads(stdout)["added"]["build"] == ["SHOP_S820_ROW_S124_REPACK"]
    assert (user_catalog_dir() / "shop.toml").read_bytes() == src.read_bytes()

    code, stdout, _ = run(capsys, "catalog", "add-mirror", "S124", "https://m.example/s124.7z",
                          "--dry-run")
    assert code == 0 and "would add" in stdout and not user_mirrors_path().exists()
    code, stdout, _ = run(capsys, "catalog", "add-mirror", "S124", "https://m.example/s124.7z",
                          "--label", "mine")
    assert code == 0 and user_mirrors_path().exists()

    code, stdout, _ = run(capsys, "catalog", "show", "S124")
    assert "[user] https://m.example/s124.7z  (mine)" in stdout
    code, stdout, _ = run(capsys, "catalog", "show", "SHOP_S820_ROW_S124_REPACK", "--json")
    shown = json.loads(stdout)
    assert shown["size"] == 1234 and shown["hashes"]["md5"] == "ab" * 16
    assert shown["mirrors"][0]["url"] == "https://shop.example/repack.7z"
    assert shown["defined_in"] == [str(user_catalog_dir() / "shop.toml")]


def test_import_of_malformed_file_exits_3(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "bad.toml"
    src.write_text('[[build]]\nid = "X1"\ndevice = "S820"\nhashes = { sha256 = "00" }\n',
                   encoding="utf-8")
    code, _, stderr = run(capsys, "catalog", "import", str(src))
    assert code == 3
    assert "bad.toml:2" in stderr and "hashes.sha256" in stderr and "hint:" in stderr
    code, _, stderr = run(capsys, "catalog", "add-mirror", "S124", "gopher://x")
    assert code == 2 and "http" in stderr


def test_unreachable_remote_index_keeps_json_output_valid(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run(capsys, "catalog", "list", "--json",
                               "--catalog", "http://127.0.0.1:9/index.toml")
    assert code == 0
    assert {b["id"] for b in json.loads(stdout)["builds"]} == shipped_ids("build")
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "warning" and "no cached copy" in e["label"] for e in events)
    code, _, stderr = run(capsys, "catalog", "show", "S124", "--catalog", "ftp://x/y")
    assert code == 2 and "http" in stderr
