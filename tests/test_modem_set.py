"""The strict checks a modem set passes before it goes into system.img (pure; hand-packed).

Trailers are packed field by field here (as in test_modem.py), not by the synthetic builder.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_modem import hand_trailer

from romkit.errors import RomkitError, UsageError, ValidationError
from romkit.firmware import modem as md

BUILD = b"MOLY.WR8.W1315.MD.WG.MP.V19"
TAG = "MOLY_WR8_W1315_MD_WG_MP_V19"


def image(trailer: bytes, size: int = 64 * 1024) -> tuple[bytes, int]:
    return (b"\x5a" * (size - len(trailer)) + trailer)[-md.TRAILER_SEARCH:], size


def good_set(**names: str) -> list[md.SetFile]:
    files = {"modem": "modem.img", "catcher_filter": "catcher_filter.bin",
             "bplguinfo": f"BPLGUInfoCustomAppSrcP_MT6589_S00_{TAG}",
             "dbginfo": f"DbgInfo_S820_{TAG}_2014_04_04"}
    files.update(names)
    sizes = {"modem": 64 * 1024, "catcher_filter": 3000, "bplguinfo": 5000, "dbginfo": 7000}
    return [md.SetFile(kind=k, name=n, size=sizes[k]) for k, n in files.items() if n]


def header(image_type: int = 2, platform: bytes = b"MT6589_S00", bind: int = 1
           ) -> md.ModemHeader:
    tail, size = image(hand_trailer(platform, image_type, BUILD, bind))
    return md.verify_modem_image(tail, size, "modem.img")


def test_hand_packed_trailer_is_a_modem_image() -> None:
    h = header()
    assert (h.platform, h.image_type_name, h.build_ver) == ("MT6589_S00", "3g", BUILD.decode())


@pytest.mark.parametrize("tail, size, words", [
    (b"\x00" * 512, 64 * 1024, "no CHECK_HEADER"),
    (hand_trailer(b"MT6589_S00", 2, BUILD) + b"\x00" * 16, 64 * 1024, "does not end the file"),
    (hand_trailer(b"MT6589_S00", 2, BUILD)[:-40] + hand_trailer(b"", 2)[-4:], 64 * 1024,
     "does not end the file"),
    (hand_trailer(b"MT6589_S00", 2, BUILD), 1000, "not the size"),
    (hand_trailer(b"MT6589_S00", 2, BUILD), 300 * 1024 * 1024, "not the size"),
    (hand_trailer(b"????", 2, BUILD), 64 * 1024, "unreadable"),
    (hand_trailer(b"MT6589_S00", 77, BUILD), 64 * 1024, "unreadable"),
])
def test_not_a_modem_image(tail: bytes, size: int, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        md.verify_modem_image(tail, size, "modem.img")


@settings(max_examples=200, deadline=None)
@given(noise=st.binary(max_size=600), size=st.integers(0, 1 << 30))
def test_verify_never_crashes(noise: bytes, size: int) -> None:
    try:
        md.verify_modem_image(noise, size, "x")
    except RomkitError:
        pass


def test_complete_matching_set_passes() -> None:
    assert md.check_modem_set(good_set(), header(), suffix=md.parse_suffix("1_3g_n")) == []


@pytest.mark.parametrize("change, words", [
    ({"dbginfo": ""}, "incomplete: no DbgInfo"),
    ({"bplguinfo": f"BPLGUInfoCustomAppSrcP_MT6582_S00_{TAG}"}, "is for MT6582_S00"),
    ({"dbginfo": "DbgInfo_S820_MOLY_WR8_W1315_MD_WG_MP_V1_2014"}, "does not belong"),
    ({"dbginfo": f"DbgInfo_S820_{TAG}9_2014"}, "does not belong"),  # V199 is not V19
])
def test_mismatched_sets_are_refused(change: dict[str, str], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        md.check_modem_set(good_set(**change), header())


def test_version_not_in_names_is_only_a_warning() -> None:
    files = good_set(bplguinfo="BPLGUInfoCustomAppSrcP_MT6589_S00_S820_V101",
                     dbginfo="DbgInfo_S820_V101")
    warnings = md.check_modem_set(files, header())
    assert any("unchecked" in w for w in warnings)


def test_required_follows_the_build() -> None:
    files = good_set(bplguinfo="", dbginfo="")
    assert md.check_modem_set(files, header(), required=["modem", "catcher_filter"]) == []


def test_empty_side_file_and_duplicates_are_refused() -> None:
    files = good_set()
    files[1] = md.SetFile(kind="catcher_filter", name="catcher_filter.bin", size=0)
    with pytest.raises(ValidationError, match="not a plausible catcher filter"):
        md.check_modem_set(files, header())
    with pytest.raises(ValidationError, match="two modem image"):
        md.check_modem_set([*good_set(), md.SetFile(kind="modem", name="m2.img", size=1)],
                           header())


@pytest.mark.parametrize("suffix, hdr, words", [
    ("1_3g_n", {"image_type": 1}, "2G modem"),
    ("1_wg_n", {"image_type": 2}, "WG one"),
    ("2_3g_n", {"bind": 1}, "modem system 1"),
])
def test_suffix_must_fit_the_modem(suffix: str, hdr: dict[str, int], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        md.check_modem_set(good_set(), header(**hdr), suffix=md.parse_suffix(suffix))


def test_suffix_labels() -> None:
    assert md.parse_suffix("plain") is None
    assert str(md.parse_suffix("1_wg_n")) == "_1_wg_n"
    assert str(md.parse_suffix("_1_3g_n")) == "_1_3g_n"
    assert md.naming_label(md.parse_suffix("2_2g_n")) == "2_2g_n"
    assert md.naming_label(None) == "plain"
    with pytest.raises(UsageError):
        md.parse_suffix("3g")
