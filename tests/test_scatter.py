"""Scatter parsing/writing, checked against values read from the fixture text independently."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from romkit.errors import FirmwareFormatError, RomkitError, UsageError
from romkit.firmware.scatter import (
    Layout,
    find_scatter,
    parse_scatter,
    parse_scatter_text,
    write_scatter,
)

OLD = "scatter/MT6589_Android_scatter_emmc.lenovo-s960.txt"
V1 = "scatter/MT6582_Android_scatter.micromax-q340.txt"


def _old_entries(text: str) -> list[tuple[str, int]]:
    """Independent reading: every 'NAME 0xADDR' line of the fixture."""
    return [(m.group(1), int(m.group(2), 16))
            for m in re.finditer(r"^(\S+) (0x[0-9A-Fa-f]+)$", text, re.MULTILINE)]


def _v1_entries(text: str) -> list[dict[str, str]]:
    """Independent reading: split on '- partition_index' and read 'key: value' pairs."""
    out = []
    for block in text.split("- partition_index:")[1:]:
        lines = block.strip().splitlines()
        item = {"partition_index": lines[0].strip()}
        for line in lines[1:]:
            if ":" in line and not line.strip().startswith("#"):
                k, v = line.split(":", 1)
                item[k.strip()] = v.strip()
        out.append(item)
    return out


def _same(a: Layout, b: Layout) -> bool:
    """Same layout; `skipped` (what the parser left out, with the reason) is a diagnostic of
    the text read, not content: a rewritten file no longer holds the odd item."""
    ignore = {"source", "skipped"}
    return a.model_dump(exclude=ignore) == b.model_dump(exclude=ignore)


def test_old_fixture_partitions(fixtures_dir: Path) -> None:
    path = fixtures_dir / OLD
    text = path.read_text()
    entries = _old_entries(text)
    layout = parse_scatter(path)
    assert layout.format == "old"
    assert layout.platform == "MT6589"
    assert len(layout.partitions) == len(entries) == 22
    real = [(n, a) for n, a in entries if "BMTPOOL" not in n]
    for k, (raw, addr) in enumerate(entries):
        part = layout.partitions[k]
        assert part.raw_name == raw
        assert part.name == raw.removeprefix("__NODL_")
        assert part.linear_start == addr
        assert part.is_download == (not raw.startswith("__NODL_") and "BMTPOOL" not in raw)
        if "BMTPOOL" in raw:
            assert part.is_marker and part.physical_start is None
            assert part.marker_blocks == addr & 0xFFFF == 0xA8
            continue
        pos = [n for n, _ in real].index(raw)
        expected_size = real[pos + 1][1] - addr if pos + 1 < len(real) else None
        assert part.size == expected_size
        if addr < 0x600000:
            assert (part.region, part.physical_start) == ("EMMC_BOOT_1", addr)
        else:
            assert (part.region, part.physical_start) == ("EMMC_USER", addr - 0x600000)
    assert layout.get("usrdata").size is None  # type: ignore[union-attr]
    assert layout.get("__NODL_nvram") is layout.get("NVRAM") is not None
    assert layout.get("PRELOAD") is not layout.get("PRELOADER")
    assert layout.get("nope") is None


def test_old_fixture_round_trip_keeps_exact_shape(fixtures_dir: Path) -> None:
    path = fixtures_dir / OLD
    layout = parse_scatter(path)
    written = write_scatter(layout)
    assert written == path.read_text()
    assert _same(parse_scatter_text(written, path.name), layout)


def test_v1_fixture_partitions(fixtures_dir: Path) -> None:
    path = fixtures_dir / V1
    text = path.read_text()
    entries = _v1_entries(text)
    layout = parse_scatter(path)
    assert layout.format == "v1"
    assert layout.platform == "MT6582"
    assert layout.general["config_version"] == "V1.1.1"
    assert len(layout.partitions) == len(entries) == 19
    user_base = min(int(e["linear_start_addr"], 16) for e in entries
                    if e["region"] == "EMMC_USER" and e["partition_name"] != "BMTPOOL")
    for part, e in zip(layout.partitions, entries, strict=True):
        assert part.name == e["partition_name"]
        assert part.index == int(e["partition_index"][3:])
        assert part.linear_start == int(e["linear_start_addr"], 16)
        assert part.size == int(e["partition_size"], 16)
        assert part.region == e["region"]
        assert part.type == e["type"]
        assert part.operation_type == e["operation_type"]
        assert part.file_name == (None if e["file_name"] == "NONE" else e["file_name"])
        assert part.extra == {"reserve": e["reserve"]}
        if part.name == "BMTPOOL":
            assert part.is_marker and not part.is_download
        else:
            assert part.is_download == (e["is_download"] == "true")
            # The file leaves physical_start_addr at 0: offsets are derived per region.
            base = 0 if e["region"] == "EMMC_BOOT_1" else user_base
            assert part.physical_start == int(e["linear_start_addr"], 16) - base
    assert layout.physical_in_file is False


def _v1_general(text: str) -> dict[str, str]:
    """Independent reading of the `general` block: its 'key: value' lines."""
    head = text.split("- partition_index:")[0]
    return dict(m.groups() for m in re.finditer(r"^\s*-?\s*(\w+): *(\S.*?)\s*$", head,
                                                re.MULTILINE))


def test_v1_round_trip(fixtures_dir: Path) -> None:
    path = fixtures_dir / V1
    text = path.read_text()
    layout = parse_scatter(path)
    written = write_scatter(layout)
    # Read back by the test's own reading, entry by entry and key by key, against the fixture.
    assert _v1_entries(written) == _v1_entries(text)
    assert _v1_general(written) == _v1_general(text)
    assert _v1_general(text)["platform"] == "MT6582"
    assert _same(parse_scatter_text(written, path.name), layout)


def test_v1_unknown_keys_are_preserved(fixtures_dir: Path) -> None:
    text = (fixtures_dir / V1).read_text().replace(
        "  operation_type: BOOTLOADERS\n",
        "  operation_type: BOOTLOADERS\n  d_type: LOW_PAGE\n  slc_percentage: 50\n", 1)
    layout = parse_scatter_text(text, "MT6582_Android_scatter.txt")
    pre = layout.get("PRELOADER")
    assert pre is not None
    assert pre.extra["d_type"] == "LOW_PAGE" and pre.extra["slc_percentage"] == "50"
    written = write_scatter(layout)
    assert "  d_type: LOW_PAGE\n" in written and "  slc_percentage: 50\n" in written
    got = _v1_entries(written)
    assert got == _v1_entries(text)
    assert got[0]["d_type"] == "LOW_PAGE" and got[0]["slc_percentage"] == "50"
    assert _same(parse_scatter_text(written, "MT6582_Android_scatter.txt"), layout)


def test_v1_with_physical_addresses_uses_them() -> None:
    text = (
        "- general: MTK_PLATFORM_CFG\n  info:\n    - config_version: V1.1.2\n"
        "      platform: MT6592\n"
        "- partition_index: SYS0\n  partition_name: preloader\n  file_name: pl.bin\n"
        "  is_download: true\n  linear_start_addr: 0x0\n  physical_start_addr: 0x0\n"
        "  partition_size: 0x40000\n  region: EMMC_BOOT_1\n"
        "- partition_index: SYS1\n  partition_name: proinfo\n  file_name: NONE\n"
        "  is_download: false\n  linear_start_addr: 0x80000\n"
        "  physical_start_addr: 0x80000\n  partition_size: 0x300000\n  region: EMMC_USER\n"
        "- partition_index: SYS2\n  partition_name: nvram\n  file_name: NONE\n"
        "  is_download: false\n  linear_start_addr: 0x380000\n"
        "  physical_start_addr: 0x380000\n  partition_size: 0x500000\n  region: EMMC_USER\n"
    )
    layout = parse_scatter_text(text)
    assert layout.platform == "MT6592" and layout.physical_in_file
    assert [p.physical_start for p in layout.partitions] == [0, 0x80000, 0x380000]


def test_old_format_converts_to_v1(fixtures_dir: Path) -> None:
    layout = parse_scatter(fixtures_dir / OLD)
    v1 = parse_scatter_text(write_scatter(layout, "v1"), "MT6589_Android_scatter.txt")
    assert v1.format == "v1"
    assert [(p.name, p.linear_start, p.is_download, p.region) for p in v1.partitions] == \
        [(p.name, p.linear_start, p.is_download, p.region) for p in layout.partitions]


@pytest.mark.parametrize(("text", "needle"), [
    ("A 0x0\n{\n}\nB 0x100\n{\n}\na 0x200\n{\n}\n", ":7: duplicate partition a"),
    ("A 0x0\n{\n}\nB 0x1FFFFFFFFFFFFFFFF\n{\n}\n", ":4: address"),
    ("A 0x0\n{\n}\nB 0x100\n{\n", ":4: region B: block not closed"),
    ("A 0x0\n}\n", ":1: region A has no '{' block"),
    ("hello world\n", ":1: expected 'NAME 0xADDRESS'"),
    ("A 0xZZ\n{\n}\n", ":1: expected"),
    ("", "no partitions"),
    ("\x00\x01binary", "NUL"),
    ("A 0x0\n{\n}\n} trailing\n", ":4: expected"),
    ("- partition_index: SYS0\n  partition_name: A\n  linear_start_addr: 0x0\n"
     "  partition_size: 0x10\n  is_download: maybe\n", ":5: is_download"),
    ("- partition_index: SYS0\n  partition_name: A\n  file_name: ../../etc/passwd\n"
     "  linear_start_addr: 0x0\n  partition_size: 0x10\n", ":3: file_name"),
    ("- partition_index: SYS0\n  partition_name: A\n  linear_start_addr: 0x0\n", ":1: "
     "partition item lacks 'partition_size'"),
    ("- partition_index: SYS0\n  partition_name: A\n  linear_start_addr: 0xFFFFFFFFFFFFFFF0\n"
     "  partition_size: 0x100\n", ":4: A: start + size overflows"),
    ("- partition_index: SYS0\n  partition_name: A\n  partition_name: B\n", ":3: duplicate key"),
    ("- partition_index: SYS0\n  partition_name: A\n  linear_start_addr: 0x0\n"
     "  partition_size: 0x10\n- partition_index: SYS1\n  partition_name: a\n"
     "  linear_start_addr: 0x10\n  partition_size: 0x10\n", ":5: duplicate partition a"),
    ("- weird: thing\n", ":1: unknown top-level item"),
])
def test_hostile_scatter_text(text: str, needle: str) -> None:
    with pytest.raises(FirmwareFormatError) as info:
        parse_scatter_text(text, "bad_scatter.txt")
    assert needle in info.value.message
    assert info.value.message.startswith("bad_scatter.txt")
    assert info.value.hint


def test_scatter_too_large(tmp_path: Path) -> None:
    big = tmp_path / "MT6589_Android_scatter.txt"
    big.write_bytes(b"A" * (5 * 1024 * 1024))
    with pytest.raises(FirmwareFormatError, match="too large"):
        parse_scatter(big)


def test_find_scatter(tmp_path: Path, fixtures_dir: Path) -> None:
    with pytest.raises(UsageError):
        find_scatter(tmp_path)
    src = (fixtures_dir / OLD).read_text()
    (tmp_path / "MT6589_Android_scatter_emmc.txt").write_text(src)
    assert find_scatter(tmp_path).name == "MT6589_Android_scatter_emmc.txt"
    (tmp_path / "other_scatter.txt").write_text(src)
    assert find_scatter(tmp_path).name == "MT6589_Android_scatter_emmc.txt"
    (tmp_path / "MT6589_Android_scatter_2.txt").write_text(src)
    with pytest.raises(UsageError, match="several scatter files"):
        find_scatter(tmp_path)


# -- property tests ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_raises_only_romkit_errors(text: str) -> None:
    try:
        parse_scatter_text(text, "fuzz_scatter.txt")
    except RomkitError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([OLD, V1]), st.integers(0, 10_000), st.integers(0, 400),
       st.text(max_size=30))
def test_mutated_fixtures_raise_only_romkit_errors(name: str, at: int, cut: int,
                                                   junk: str) -> None:
    text = (Path(__file__).parent / "fixtures" / name).read_text()
    at %= len(text)
    mutated = text[:at] + junk + text[at + cut:]
    try:
        layout = parse_scatter_text(mutated, name)
    except RomkitError:
        return
    assert _same(parse_scatter_text(write_scatter(layout), name), layout)


_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_names, st.integers(1, 1 << 30), st.booleans()), min_size=1,
                max_size=20, unique_by=lambda t: t[0].upper()))
def test_old_format_round_trip_property(entries: list[tuple[str, int, bool]]) -> None:
    addr = 0
    lines = []
    for name, step, nodl in entries:
        if name.startswith("__NODL_") or name.upper() in ("BMTPOOL", "RSV_BMTPOOL"):
            continue
        lines.append(f"{'__NODL_' if nodl else ''}{name} 0x{addr:x}\n{{\n}}\n")
        addr += step
    if not lines:
        return
    text = "".join(lines)
    layout = parse_scatter_text(text, "MT6589_Android_scatter.txt")
    assert write_scatter(layout) == text
    assert _same(parse_scatter_text(write_scatter(layout), "MT6589_Android_scatter.txt"), layout)
