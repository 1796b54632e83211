"""checksum.ini: the byte-sum against the real fixture, both ini generations, verify and write."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from romkit.errors import FirmwareFormatError, RomkitError
from romkit.firmware import checksum as ck
from romkit.firmware.checksum import (
    byte_sum16,
    byte_sum16_file,
    parse_checksum_ini_text,
    read_checksum_ini,
    verify_checksums,
    write_checksum_ini,
)
from romkit.sim.artifacts import preloader_s820
from romkit.sim.sample_firmware import build_s820_folder


def _sum16(path: Path) -> int:
    return sum(path.read_bytes()) & 0xFFFF  # independent: plain Python


def test_fixture_lk_matches_real_checksum_ini(fixtures_dir: Path) -> None:
    img = fixtures_dir / "checksum-mt8167" / "lk-verified.img"
    ini = read_checksum_ini(fixtures_dir / "checksum-mt8167" / "Checksum.ini")
    assert ini.flavour == "v5" and ini.switch == 1 and ini.enabled
    assert ini.version["TOOL"] == "v5.1832.00"
    assert len(ini.values) == 10
    assert ini.values["lk_a"] == 0x2CB4 == _sum16(img)
    assert ini.values["system_a"] == 0x886
    assert byte_sum16_file(img) == 0x2CB4
    assert ini.lookup("LK_A") == ("lk_a", 0x2CB4)


def test_chunked_sum_matches_across_chunk_boundaries(tmp_path: Path) -> None:
    data = hashlib.shake_256(b"chunks").digest(10_007) + b"\xff" * 70_001
    path = tmp_path / "img"
    path.write_bytes(data)
    for chunk in (511, 4093, 3 * 4096 + 5, 1 << 20):
        assert byte_sum16_file(path, chunk=chunk) == sum(data) & 0xFFFF
    assert byte_sum16_file(path) == sum(data) & 0xFFFF
    assert byte_sum16(data) == sum(data) & 0xFFFF
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert byte_sum16_file(empty) == 0


def test_v3_ini_reads_hex_and_switch() -> None:
    ini = parse_checksum_ini_text(
        "[IsEnableChecksum]\nCHECKSUM_SWITCH = 0\n[CheckSum]\nPRELOADER = 0x0000003\n"
        "UBOOT = 0x104A60E\nANDROID = 10\n", "Checksum.INI")
    assert ini.flavour == "v3" and ini.switch == 0 and not ini.enabled
    assert ini.values == {"PRELOADER": 3, "UBOOT": 0x104A60E, "ANDROID": 0x10}


def test_v5_ini_reads_like_qt_touint() -> None:
    ini = parse_checksum_ini_text(
        "; comment\n[VERSION]\nVERSION=V1\n[IsEnableChecksum]\nCHECKSUM_SWITCH=1\n"
        "[CheckSum]\na=0x1F\nb=010\nc=10\nd=0\n")
    assert ini.values == {"a": 0x1F, "b": 8, "c": 10, "d": 0}


@pytest.mark.parametrize(("text", "needle"), [
    ("[CheckSum]\nlk=0x1\njunk line\n", ":3: expected 'KEY = VALUE'"),
    ("lk=0x1\n[CheckSum]\n", ":1: 'lk' appears before any [SECTION]"),
    ("[VERSION]\n[CheckSum]\nlk=0xZZ\n", ":3: checksum value '0xZZ' is not a number"),
    ("[VERSION]\n[CheckSum]\nlk=0x1\nlk=0x2\n", ":4: duplicate key 'lk'"),
    ("[CheckSum]\nlk=0x1FFFFFFFF\n", ":2: checksum value"),
    ("[VERSION]\nVERSION=V1\n", "no [CheckSum] section"),
    ("[CheckSum]\n\x00\x00", "NUL"),
])
def test_junk_ini_is_a_format_error_with_line(text: str, needle: str) -> None:
    with pytest.raises(FirmwareFormatError) as info:
        parse_checksum_ini_text(text, "Checksum.ini")
    assert needle in info.value.message
    assert info.value.hint


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_ini_raises_only_romkit_errors(text: str) -> None:
    try:
        parse_checksum_ini_text(text, "fuzz.ini")
    except RomkitError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
                       st.integers(0, 0xFFFF), max_size=12))
def test_rendered_ini_reads_back(values: dict[str, int]) -> None:
    text = ck.render_checksum_ini(values, change_id=1, comment="test")
    ini = parse_checksum_ini_text(text)
    assert ini.values == values and ini.switch == 1 and ini.flavour == "v5"
    for key, value in values.items():
        assert f"{key}=0x{value:04X}\n" in text


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return build_s820_folder(tmp_path / "pkg", preloader=preloader_s820(2013), image_scale=0.25)


def test_sample_folder_verifies(sample: Path) -> None:
    results = verify_checksums(sample)
    with_image = [r for r in results if r.path is not None]
    assert len(with_image) == 12
    for r in with_image:
        assert r.status == "ok"
        assert r.actual == r.expected == _sum16(r.path)  # type: ignore[arg-type]
    assert [r.partition for r in results if r.path is None] == ["PRELOAD"]


def test_tampered_image_is_a_mismatch(sample: Path) -> None:
    boot = sample / "boot.img"
    data = bytearray(boot.read_bytes())
    data[5000] = (data[5000] + 1) % 256
    boot.write_bytes(bytes(data))
    r = next(r for r in verify_checksums(sample) if r.partition == "BOOTIMG")
    assert r.status == "mismatch"
    assert r.actual == sum(data) & 0xFFFF != r.expected


def test_write_backs_up_and_is_idempotent(sample: Path) -> None:
    ini = sample / "Checksum.ini"
    (sample / "logo.bin").write_bytes(b"\x01\x02" * 999)
    before = ini.read_bytes()
    dry = write_checksum_ini(sample, dry_run=True)
    assert dry.dry_run and not dry.written and not dry.unchanged
    assert "-LOGO=" in dry.diff and f"+LOGO=0x{(3 * 999) & 0xFFFF:04X}" in dry.diff
    assert ini.read_bytes() == before
    assert sorted(p.name for p in sample.glob("Checksum.ini*")) == ["Checksum.ini"]

    done = write_checksum_ini(sample, change_id=42)
    assert done.written and done.backup is not None
    assert done.backup.read_bytes() == before
    new = read_checksum_ini(ini)
    assert new.values["LOGO"] == (3 * 999) & 0xFFFF
    assert all(r.status == "ok" for r in verify_checksums(sample) if r.path is not None)

    again = write_checksum_ini(sample)
    assert again.unchanged and not again.written
    assert len(list(sample.glob("Checksum.ini.*.bak"))) == 1


def test_write_replaces_junk_and_creates_missing(sample: Path) -> None:
    ini = sample / "Checksum.ini"
    ini.write_text("this is junk\n")
    res = write_checksum_ini(sample)
    assert res.written and res.backup is not None and res.backup.read_text() == "this is junk\n"
    ini.unlink()
    res = write_checksum_ini(sample)
    assert res.written and res.backup is None and ini.is_file()
    assert read_checksum_ini(ini).values["UBOOT"] == _sum16(sample / "lk.bin")


def test_switch_is_kept_when_regenerating(sample: Path) -> None:
    ini = sample / "Checksum.ini"
    ini.write_text(ini.read_text().replace("CHECKSUM_SWITCH=1", "CHECKSUM_SWITCH=0"))
    write_checksum_ini(sample)
    assert read_checksum_ini(ini).switch == 0


def test_no_ini_reports_sums(sample: Path) -> None:
    (sample / "Checksum.ini").unlink()
    results = verify_checksums(sample)
    assert {r.status for r in results} == {"no-ini", "no-image"}
    mbr = next(r for r in results if r.partition == "MBR")
    assert mbr.actual == _sum16(sample / "MBR")
