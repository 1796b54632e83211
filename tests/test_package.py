"""Firmware.load / validate: each SP Flash Tool refusal reproduced on a real folder on disk."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from romkit.errors import FirmwareFormatError, RomkitError, UsageError
from romkit.firmware.images import map_images, parse_sparse_header
from romkit.firmware.package import Firmware, ValidationReport
from romkit.firmware.scatter import parse_scatter, parse_scatter_text
from romkit.sim.artifacts import preloader_s820
from romkit.sim.sample_firmware import build_s820_folder


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return build_s820_folder(tmp_path / "pkg", preloader=preloader_s820(2013), da=b"DA" * 64,
                             image_scale=0.25)


def _codes(report: ValidationReport, severity: str | None = None) -> list[str]:
    return [f.code for f in report.findings if severity is None or f.severity == severity]


def _finding(report: ValidationReport, code: str):  # type: ignore[no-untyped-def]
    return next(f for f in report.findings if f.code == code)


def test_sample_folder_loads_and_is_valid(sample: Path) -> None:
    fw = Firmware.load(sample)
    assert fw.folder == sample and fw.scatter_path.name == "MT6589_Android_scatter_emmc.txt"
    assert fw.checksum_path == sample / "Checksum.ini"
    assert fw.preloader_path == sample / "preloader_s820.bin"
    assert fw.flash_tool_dir == sample.parent / "SP_Flash_Tool_v3.1316"
    assert fw.images["UBOOT"] == sample / "lk.bin"
    assert fw.image_size("boot") is None  # no partition called BOOT in this layout
    assert fw.image_size("BOOTIMG") == (sample / "boot.img").stat().st_size
    report = fw.validate()
    assert report.ok
    assert _codes(report, "error") == []
    assert _codes(report, "warning") == ["no-image-rule"]
    assert _finding(report, "no-image-rule").partition == "PRELOAD"


def test_load_from_parent_or_scatter_file(sample: Path) -> None:
    assert Firmware.load(sample.parent).folder == sample
    scatter = sample / "MT6589_Android_scatter_emmc.txt"
    assert Firmware.load(scatter).scatter_path == scatter
    with pytest.raises(UsageError, match="not a firmware folder"):
        Firmware.load(sample / "boot.img")
    with pytest.raises(UsageError, match="not found"):
        Firmware.load(sample / "nope")


def test_several_folders_below_is_a_usage_error(sample: Path) -> None:
    shutil.copytree(sample, sample.parent / "copy")
    with pytest.raises(UsageError, match="several firmware folders"):
        Firmware.load(sample.parent)


def test_missing_image_is_5007(sample: Path) -> None:
    (sample / "recovery.img").unlink()
    report = Firmware.load(sample).validate()
    f = _finding(report, "missing-image")
    assert (f.severity, f.partition, f.spft_code) == ("error", "RECOVERY", 5007)
    assert not report.ok


def test_image_larger_than_partition_is_5016_and_not_truncated(sample: Path) -> None:
    layout = parse_scatter(sample / "MT6589_Android_scatter_emmc.txt")
    uboot = layout.get("UBOOT")
    assert uboot is not None and uboot.size == 0x2780000 - 0x2720000  # from s820.LAYOUT
    (sample / "lk.bin").write_bytes(b"\x11" * (uboot.size + 1))
    report = Firmware.load(sample).validate()
    f = _finding(report, "image-too-large")
    assert (f.partition, f.spft_code) == ("UBOOT", 5016)
    assert (sample / "lk.bin").stat().st_size == uboot.size + 1


def _sparse_header(block: int, blocks: int) -> bytes:
    return struct.pack("<IHHHHIIII", 0xED26FF3A, 1, 0, 28, 12, block, blocks, 1, 0)


def test_sparse_image_expanded_size_must_fit(sample: Path) -> None:
    body = b"\x5a" * 4096
    (sample / "cache.img").write_bytes(_sparse_header(4096, 1) + body)
    fw = Firmware.load(sample)
    assert fw.image_size("CACHE") == 4096
    report = fw.validate()
    assert _finding(report, "sparse-image").partition == "CACHE"
    assert "image-too-large" not in _codes(report)
    cache = fw.layout.get("CACHE")
    assert cache is not None and cache.size is not None
    blocks = cache.size // 4096 + 1  # one block more than the partition
    (sample / "cache.img").write_bytes(_sparse_header(4096, blocks) + body)
    report = Firmware.load(sample).validate()
    assert _finding(report, "image-too-large").partition == "CACHE"


def test_sample_sparse_system(tmp_path: Path) -> None:
    folder = build_s820_folder(tmp_path / "s", preloader=preloader_s820(2013),
                               image_scale=0.25, sparse_system=True)
    head = (folder / "system.img").read_bytes()[:28]
    magic, _, _, _, _, blk, total, _, _ = struct.unpack("<IHHHHIIII", head)
    assert magic == 0xED26FF3A
    fw = Firmware.load(folder)
    assert fw.image_size("ANDROID") == blk * total == 16 * 1024 * 1024
    assert fw.validate().ok


def test_broken_sparse_header_is_reported(sample: Path) -> None:
    (sample / "cache.img").write_bytes(struct.pack("<I", 0xED26FF3A) + b"\0" * 10)
    report = Firmware.load(sample).validate()
    assert _finding(report, "image-unreadable").partition == "CACHE"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_sparse_header_parser_raises_only_romkit_errors(data: bytes) -> None:
    try:
        parse_sparse_header(struct.pack("<I", 0xED26FF3A) + data)
        parse_sparse_header(data)
    except RomkitError:
        pass


def test_checksum_findings(sample: Path) -> None:
    logo = sample / "logo.bin"
    logo.write_bytes(logo.read_bytes()[:-1] + b"\x00\x07")
    report = Firmware.load(sample).validate()
    f = _finding(report, "checksum-mismatch")
    assert (f.severity, f.partition, f.spft_code) == ("error", "LOGO", 8416)

    ini = sample / "Checksum.ini"
    ini.write_text(ini.read_text().replace("CHECKSUM_SWITCH=1", "CHECKSUM_SWITCH=0"))
    report = Firmware.load(sample).validate()
    assert report.ok
    assert _finding(report, "checksum-mismatch").severity == "warning"
    assert "checksum-disabled" in _codes(report, "info")

    lines = [ln for ln in ini.read_text().splitlines() if not ln.startswith("LOGO=")]
    ini.write_text("\n".join(lines + ["CHECKSUM_SWITCH_X=1", "odd=0x1"]).replace(
        "CHECKSUM_SWITCH=0", "CHECKSUM_SWITCH=1") + "\n")
    report = Firmware.load(sample).validate()
    assert _finding(report, "checksum-missing-key").partition == "LOGO"
    assert {f.message.split("'")[1] for f in report.findings
            if f.code == "checksum-unknown-key"} == {"CHECKSUM_SWITCH_X", "odd"}

    ini.write_text("garbage\n")
    report = Firmware.load(sample).validate()
    assert _finding(report, "checksum-ini-invalid").severity == "error"

    ini.unlink()
    report = Firmware.load(sample).validate()
    assert report.ok and _finding(report, "checksum-missing").severity == "warning"


@pytest.mark.parametrize(("content", "needle"), [
    (b"\x7fELF" + b"\0" * 200, "no GFH FILE_INFO header"),
    (b"EMMC_BOOT\0" + b"\0" * 600, "BOOT1 dump"),
    (b"MMM\x01\x38\x00\x00\x00FILE_INFO" + b"\0" * 10, "truncated"),
])
def test_bad_preloader_is_5066(sample: Path, content: bytes, needle: str) -> None:
    (sample / "preloader_s820.bin").write_bytes(content)
    report = Firmware.load(sample).validate()
    f = _finding(report, "preloader-invalid")
    assert (f.spft_code, f.partition) == (5066, "PRELOADER")
    assert needle in f.message


def _write_scatter(folder: Path, text: str, name: str = "MT6589_Android_scatter.txt") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_layout_unordered_and_overlap(tmp_path: Path) -> None:
    _write_scatter(tmp_path / "a", "PRELOADER 0x0\n{\n}\nMBR 0x600000\n{\n}\n"
                                   "EBR1 0x500000\n{\n}\n")
    report = Firmware.load(tmp_path / "a").validate()
    assert _finding(report, "layout-unordered").partition == "EBR1"
    v1 = ("- partition_index: SYS0\n  partition_name: A\n  file_name: NONE\n"
          "  is_download: false\n  linear_start_addr: 0x0\n  partition_size: 0x2000\n"
          "- partition_index: SYS1\n  partition_name: B\n  file_name: NONE\n"
          "  is_download: false\n  linear_start_addr: 0x1000\n  partition_size: 0x1000\n")
    _write_scatter(tmp_path / "b", v1)
    report = Firmware.load(tmp_path / "b").validate()
    f = _finding(report, "layout-overlap")
    assert (f.partition, f.spft_code) == ("B", 5016)


def test_v1_fixture_folder_binds_by_file_name(tmp_path: Path, fixtures_dir: Path) -> None:
    src = fixtures_dir / "scatter" / "MT6582_Android_scatter.micromax-q340.txt"
    folder = tmp_path / "fw"
    folder.mkdir()
    shutil.copy(src, folder / "MT6582_Android_scatter.txt")
    (folder / "LK.BIN").write_bytes(b"lk")
    (folder / "boot.img").write_bytes(b"boot")
    fw = Firmware.load(folder)
    assert fw.images == {"UBOOT": folder / "LK.BIN", "BOOTIMG": folder / "boot.img"}
    report = fw.validate()
    missing = {f.partition for f in report.findings if f.code == "missing-image"}
    expected = {p.name for p in fw.layout.download_partitions} - {"UBOOT", "BOOTIMG"}
    assert missing == expected and len(missing) == 9
    assert all(f.spft_code == 5007 for f in report.findings if f.code == "missing-image")


def test_prefix_rules(tmp_path: Path, fixtures_dir: Path) -> None:
    layout = parse_scatter(fixtures_dir / "scatter" / "MT6589_Android_scatter_emmc.lenovo-s960.txt")
    for name in ("preloader_s960.bin", "preloader_s960_2014.bin", "MBR", "ebr1", "EBR2",
                 "uboot.bin", "lk.bin", "boot.img", "boot-nonsecure.img", "Recovery.IMG",
                 "secro.img", "logo.bin", "system.img", "cache.img", "userdata.img",
                 "notes.txt", "boot.img.bak"):
        (tmp_path / name).write_bytes(b"x")
    bindings = {b.partition.name: b for b in map_images(tmp_path, layout)}
    got = {n: (b.path.name if b.path else None) for n, b in bindings.items()}
    assert got["PRELOADER"] == "preloader_s960.bin"
    assert [p.name for p in bindings["PRELOADER"].alternatives] == ["preloader_s960_2014.bin"]
    assert got["EBR1"] == "ebr1" and got["UBOOT"] == "lk.bin"
    assert got["BOOTIMG"] == "boot.img"
    assert [p.name for p in bindings["BOOTIMG"].alternatives] == []  # nonsecure, .bak skipped
    assert got["RECOVERY"] == "Recovery.IMG" and got["ANDROID"] == "system.img"
    assert got["USRDATA"] == "userdata.img" and got["SEC_RO"] == "secro.img"
    assert got["PRELOAD"] is None and bindings["PRELOAD"].rule == "no-image-rule"
    assert got["NVRAM"] is None and bindings["NVRAM"].rule == "not-downloaded"
    assert bindings["BMTPOOL"].rule == "marker"


def test_hostile_scatter_in_folder_is_a_format_error(tmp_path: Path) -> None:
    _write_scatter(tmp_path, "PRELOADER 0x0\n{\n")
    with pytest.raises(FirmwareFormatError, match=":1: region PRELOADER: block not closed"):
        Firmware.load(tmp_path)


def test_platform_unknown_warning(tmp_path: Path) -> None:
    _write_scatter(tmp_path, "PRELOADER 0x0\n{\n}\n", name="Android_scatter.txt")
    report = Firmware.load(tmp_path).validate()
    assert "platform-unknown" in _codes(report, "warning")
    assert parse_scatter_text("A 0x0\n{\n}\n").platform is None
