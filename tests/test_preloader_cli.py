"""`romkit preloader show|compare` and `inspect_file`, run through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from romkit.cli.app import main
from romkit.errors import FirmwareFormatError
from romkit.firmware.inspect_file import inspect_file, render_inspect_file
from romkit.firmware.preloader import to_boot1_image
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.s820 import PART_2013, PART_2014


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"p13": tmp_path / "preloader_2013.bin", "p14": tmp_path / "preloader_2014.bin",
             "boot1": tmp_path / "boot1.img", "da": tmp_path / "MTK_AllInOne_DA.bin",
             "junk": tmp_path / "system.img"}
    paths["p13"].write_bytes(preloader_s820(2013))
    paths["p14"].write_bytes(preloader_s820(2014))
    paths["boot1"].write_bytes(to_boot1_image(preloader_s820(2014)))
    paths["da"].write_bytes(da_s820())
    paths["junk"].write_bytes(b"\x00" * 4096)
    return paths


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    cap = capsys.readouterr()
    return int(exc.value.code or 0), cap.out, cap.err


def test_show_text_with_cid(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    code, out, _ = run(capsys, "preloader", "show", str(files["p13"]),
                       "--cid", PART_2014.cid.hex())
    assert code == 0
    assert "MTK_BLOADER_INFO_v10" in out and "Samsung SIM13S" in out
    assert "15 01 00 53 49 4d 31 33 53" in out  # PART_2013's first 9 CID bytes
    assert "SYNTHETIC" in out
    assert "Hynix SIM14H" in out and "NOT supported" in out and "4032" in out


def test_show_json_boot1(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    cid = ":".join(f"{b:02x}" for b in PART_2014.cid)
    code, out, _ = run(capsys, "preloader", "show", str(files["boot1"]), "--cid", cid, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["form"] == "boot1" and doc["emi_version"] == 10
    assert [e["id"] for e in doc["entries"]] == [PART_2013.cid[:9].hex(), PART_2014.cid[:9].hex()]
    assert doc["cid_check"] == {"cid": PART_2014.cid.hex(), "part": "Hynix SIM14H",
                                "supported": True, "entry": 1, "fallback": False}


def test_compare(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    code, out, _ = run(capsys, "preloader", "compare", str(files["p13"]), str(files["p14"]))
    assert code == 0
    assert "Only B supports: Hynix SIM14H" in out and "Only A" not in out
    code, out, _ = run(capsys, "--json", "preloader", "compare", str(files["p14"]),
                       str(files["p13"]), "--cid", PART_2014.cid.hex())
    doc = json.loads(out)
    assert [p["part"] for p in doc["only_a"]] == ["Hynix SIM14H"] and doc["only_b"] == []
    assert [p["id"] for p in doc["both"]] == [PART_2013.cid[:9].hex()]
    assert doc["cid_check"]["a"]["supported"] and not doc["cid_check"]["b"]["supported"]


@pytest.mark.parametrize("args, code, text", [
    (("show", "{da}"), 3, "not a preloader"),
    (("show", "{junk}"), 3, "neither a preloader, an EMI table nor"),
    (("show", "{p13}", "--cid", "xyz"), 2, "not an eMMC CID"),
    (("compare", "{p13}", "{missing}"), 1, "cannot read"),
])
def test_errors(capsys: pytest.CaptureFixture[str], files: dict[str, Path], args: tuple[str, ...],
                code: int, text: str) -> None:
    fmt = {k: str(v) for k, v in files.items()} | {"missing": str(files["p13"]) + ".nope"}
    got, _, err = run(capsys, "preloader", *(a.format(**fmt) for a in args))
    assert got == code
    assert text in err and "hint:" in err and "Traceback" not in err


def test_inspect_file_kinds(files: dict[str, Path]) -> None:
    da = inspect_file(files["da"])
    assert da["kind"] == "da" and da["entries"][da["mt6589_entry"]]["hw_code"] == 0x6583
    text = render_inspect_file(da)
    assert "0x82038000" in text and "stage 2" in text and "MT6589 uses this" in text
    pre = inspect_file(files["p14"])
    assert pre["kind"] == "preloader" and pre["form"] == "raw"
    assert "Hynix SIM14H" in render_inspect_file(pre)
    with pytest.raises(FirmwareFormatError):
        inspect_file(files["junk"])
    with pytest.raises(FirmwareFormatError, match="not a Download Agent"):
        inspect_file(files["p13"], expect="da")


def test_real_entry_point(files: dict[str, Path]) -> None:
    res = subprocess.run([sys.executable, "-m", "romkit", "preloader", "show", str(files["p14"])],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "Hynix SIM14H" in res.stdout
