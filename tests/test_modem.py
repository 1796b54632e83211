"""Modem naming rules, the CHECK_HEADER trailer reader and the synthetic modem builder."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from romkit.errors import RomkitError, UsageError, ValidationError
from romkit.firmware import modem as md
from romkit.sim.artifacts_modem import (
    MODEM_MARKER,
    build_modem_folder,
    modem_file_names,
    modem_files,
    modem_image,
)

BPL = "BPLGUInfoCustomAppSrcP_MT6589_S00_MOLY_WR8_W1248_MD_WG_MP_V9_F1_P2"
DBG = "DbgInfo_MT6589_S00_MOLY_WR8_W1248_MD_WG_MP_V9_F1_P2"


def hand_trailer(platform: bytes, image_type: int, build: bytes = b"MOLY.TEST",
                 bind: int = 1) -> bytes:
    """The CHECK_HEADER layout packed field by field, independently of the builder."""
    out = bytearray()
    out += b"CHECK_HEADER"
    out += (1).to_bytes(4, "little") + (2).to_bytes(4, "little")
    out += image_type.to_bytes(4, "little")
    out += platform.ljust(16, b"\0")
    out += b"build time".ljust(64, b"\0")
    out += build.ljust(64, b"\0")
    out += bytes([bind, 0, 0, 0])
    out += bytes(12)
    out += (len(out) + 4).to_bytes(4, "little")
    return bytes(out)


@pytest.mark.parametrize(("plain", "kitkat"), [
    ("modem.img", "modem_1_3g_n.img"),
    ("catcher_filter.bin", "catcher_filter_1_3g_n.bin"),
    (BPL, BPL + "_1_3g_n"),
    (DBG, DBG + "_1_3g_n"),
])
def test_names_both_ways(plain: str, kitkat: str) -> None:
    assert md.target_name(plain, "1_3g_n") == kitkat
    assert md.target_name(kitkat, "plain") == plain
    assert md.target_name(plain, "plain") == plain
    assert md.target_name(kitkat, "1_3g_n") == kitkat


@pytest.mark.parametrize("name", ["modem_E1.img", "modem_sys2.img", "DSP_ROM", "boot.img",
                                  "README.txt", "DbgInfo_", "catcher_filter_x.bin",
                                  "sub/modem.img"])
def test_other_files_are_not_modem_files(name: str) -> None:
    assert md.classify(name) is None
    assert md.target_name(name, "1_3g_n") is None


def test_classify_reads_the_suffix_parts() -> None:
    parsed = md.classify("modem_2_wg_n.img")
    assert parsed is not None
    assert parsed.kind == "modem"
    assert parsed.suffix == md.ModemSuffix(2, "wg", "n")
    assert parsed.render(None) == "modem.img"
    # A version tail like _F1_P2 is not mistaken for a suffix.
    assert md.classify(BPL).suffix is None  # type: ignore[union-attr]


def test_phone_dirs() -> None:
    assert md.classify("modem.img").phone_dir == "/system/etc/firmware/"  # type: ignore[union-attr]
    assert md.classify("catcher_filter.bin").phone_dir == "/system/etc/firmware/"  # type: ignore[union-attr]
    assert md.classify(BPL).phone_dir == "/system/etc/mddb/"  # type: ignore[union-attr]
    assert md.classify(DBG).phone_dir == "/system/etc/mddb/"  # type: ignore[union-attr]


def test_rename_plan_is_consistent_and_lists_the_rest() -> None:
    names = ["modem.img", "catcher_filter.bin", BPL, DBG, "notes.txt"]
    renames, ignored = md.rename_plan(names, "1_3g_n")
    assert ignored == ["notes.txt"]
    assert {r.target for r in renames} == {"modem_1_3g_n.img", "catcher_filter_1_3g_n.bin",
                                           BPL + "_1_3g_n", DBG + "_1_3g_n"}
    assert all(r.target.endswith(("_1_3g_n", "_1_3g_n.img", "_1_3g_n.bin")) for r in renames)


def test_rename_plan_refuses_two_files_for_one_name() -> None:
    with pytest.raises(UsageError, match="would both become modem.img"):
        md.rename_plan(["modem.img", "modem_1_3g_n.img"], "plain")


def test_unknown_naming() -> None:
    with pytest.raises(UsageError):
        md.target_name("modem.img", "2g")  # type: ignore[arg-type]


@pytest.mark.parametrize(("version", "naming"), [
    ("4.2.1", "plain"), ("4.2", "plain"), ("4.3", "plain"), ("2.3.6", "plain"),
    ("4.4.2", "1_3g_n"), ("4.4", "1_3g_n"), ("5.0", "1_3g_n"), ("garbage", None), ("", None),
])
def test_naming_for_android(version: str, naming: str | None) -> None:
    assert md.naming_for_android(version) == naming


def test_trailer_read_from_hand_packed_bytes() -> None:
    image = b"\x11" * 4000 + hand_trailer(b"MT6589_S00", 2, b"MOLY.WR8.W1248")
    header = md.parse_modem_trailer(image)
    assert header is not None
    assert header.check_header
    assert (header.platform, header.chip) == ("MT6589_S00", "MT6589")
    assert (header.image_type, header.image_type_name) == (2, "3g")
    assert header.build_ver == "MOLY.WR8.W1248"
    assert header.bind_sys_id == 1
    assert header.header_version == 1


def test_trailer_garbage_fields_left_unknown() -> None:
    tail = bytearray(hand_trailer(b"MT6582_S01", 99, b"\xff\xfe"))
    header = md.parse_modem_trailer(bytes(tail))
    assert header is not None
    assert header.platform == "MT6582_S01"
    assert header.image_type is None and header.build_ver is None


def test_platform_string_without_magic_still_counts() -> None:
    header = md.parse_modem_trailer(b"\0" * 100 + b"for MT6577_S01 only" + b"\0" * 50)
    assert header is not None and not header.check_header
    assert header.chip == "MT6577"


def test_no_trailer_is_none() -> None:
    assert md.parse_modem_trailer(bytes(1024)) is None
    assert md.parse_modem_trailer(b"") is None


def test_builder_image_parses_and_says_synthetic(tmp_path: Path) -> None:
    data = modem_image("MT6589_S00", 2, size=8192)
    assert len(data) == 8192
    assert data.startswith(MODEM_MARKER)
    # The builder's trailer equals the hand-packed layout field for field (except texts).
    tail = data[-188:]
    assert tail[:12] == b"CHECK_HEADER"
    assert struct.unpack_from("<I", tail, 20)[0] == 2
    assert tail[24:34] == b"MT6589_S00"
    assert struct.unpack_from("<I", tail, 184)[0] == 188
    path = tmp_path / "modem.img"
    path.write_bytes(data)
    header = md.read_modem_header(path)
    assert header is not None and header.platform == "MT6589_S00"


def test_builder_folder_names_both_eras(tmp_path: Path) -> None:
    plain = build_modem_folder(tmp_path / "jb")
    kk = build_modem_folder(tmp_path / "kk", naming="1_3g_n")
    assert sorted(p.name for p in plain.iterdir()) == sorted(
        ["modem.img", "catcher_filter.bin", BPL, DBG])
    assert sorted(p.name for p in kk.iterdir()) == sorted(
        ["modem_1_3g_n.img", "catcher_filter_1_3g_n.bin", BPL + "_1_3g_n", DBG + "_1_3g_n"])
    assert set(modem_file_names().values()) == {"modem.img", "catcher_filter.bin", BPL, DBG}
    assert all(MODEM_MARKER in (plain / n).read_bytes() for n in modem_files())


def test_platform_check() -> None:
    mt6582 = md.parse_modem_trailer(hand_trailer(b"MT6582_S00", 2))
    mt6589 = md.parse_modem_trailer(hand_trailer(b"MT6589_S00", 2))
    with pytest.raises(ValidationError, match="MT6582_S00"):
        md.check_modem_platform(mt6582, "MT6589", "modem.img")
    md.check_modem_platform(mt6589, "MT6589", "modem.img")
    md.check_modem_platform(mt6582, None, "modem.img")
    md.check_modem_platform(None, "MT6589", "modem.img")


def test_readme_names_where_files_go() -> None:
    renames, _ = md.rename_plan(["modem.img", BPL], "1_3g_n")
    text = md.readme_text(renames, "1_3g_n")
    assert "modem_1_3g_n.img -> /system/etc/firmware/" in text
    assert f"{BPL}_1_3g_n -> /system/etc/mddb/" in text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200))
def test_trailer_parser_never_crashes(data: bytes) -> None:
    header = md.parse_modem_trailer(data)
    if header is not None and header.chip is not None:
        assert header.chip.startswith("MT")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([b"CHECK_HEADER", b"MT6589_S00", b""]))
def test_trailer_parser_with_magic_never_crashes(noise: bytes, magic: bytes) -> None:
    md.parse_modem_trailer(noise[:300] + magic + noise[300:])


# The four modem file stems with their extension; the BPLGUInfo / DbgInfo build part is drawn
# in upper case + digits so it can never look like a (lower-case) `_X_YY_Z` suffix itself.
_MODEM_STEMS = st.one_of(
    st.tuples(st.sampled_from(["modem", "Modem", "MODEM"]), st.sampled_from([".img", ".IMG"])),
    st.tuples(st.sampled_from(["catcher_filter", "CATCHER_FILTER"]),
              st.sampled_from([".bin", ".Bin"])),
    st.tuples(st.sampled_from(["BPLGUInfoCustomAppSrcP_", "bplguinfocustomappsrcp_",
                               "DbgInfo_", "DBGINFO_"])
              .flatmap(lambda head: st.lists(
                  st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=8),
                  min_size=1, max_size=6).map(lambda parts: head + "_".join(parts))),
              st.just("")),
)
_IMAGE_TYPES = ("2g", "3g", "wg", "tg", "lwg", "ltg", "sglte", "ultg", "ulwg", "ulwtg",
                "ulwcg", "ulwctg")
_SUFFIXES = st.one_of(st.just(""), st.builds(
    lambda m, t, v: f"_{m}_{t}_{v}", st.integers(1, 5), st.sampled_from(_IMAGE_TYPES),
    st.sampled_from("ns")))


@settings(max_examples=300, deadline=None)
@given(_MODEM_STEMS, _SUFFIXES, st.sampled_from(["plain", "1_3g_n"]))
def test_modem_names_rename_to_the_naming(stem_ext: tuple[str, str], suffix: str,
                                          naming: str) -> None:
    """Any modem / catcher_filter / BPLGUInfo / DbgInfo name, with or without a suffix,
    renames to stem + the naming's suffix + extension (spelling kept)."""
    stem, ext = stem_ext
    name = stem + suffix + ext
    want = stem + ("_1_3g_n" if naming == "1_3g_n" else "") + ext
    assert md.target_name(name, naming) == want  # type: ignore[arg-type]


_NAME_PARTS = st.one_of(
    st.builds(lambda se, sfx: se[0] + sfx + se[1], _MODEM_STEMS, _SUFFIXES),
    st.sampled_from(["modem", "catcher_filter", "DbgInfo_", "BPLGUInfoCustomAppSrcP_", "_",
                     ".img", ".bin", "_1_3g_n", "_2_wg_s", "_9_3g_n", "/", "\\", "E1", "sys2"]),
    st.text(max_size=10),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_NAME_PARTS, min_size=1, max_size=3).map("".join),
       st.sampled_from(["plain", "1_3g_n"]))
def test_names_never_crash_and_round_trip(name: str, naming: str) -> None:
    try:
        target = md.target_name(name, naming)  # type: ignore[arg-type]
    except RomkitError:
        return
    if target is not None:
        other = "plain" if naming == "1_3g_n" else "1_3g_n"
        back = md.target_name(target, other)  # type: ignore[arg-type]
        assert back is not None
        assert md.target_name(back, naming) == target  # type: ignore[arg-type]


def test_double_suffix_is_not_guessed() -> None:
    # found by fuzzing: renaming it back and forth did not round-trip
    assert md.classify("BPLGUInfoCustomAppSrcP_0_1_2g_n_1_3g_n") is None
    assert md.target_name("modem_1_2g_n_1_3g_n.img", "plain") is None
