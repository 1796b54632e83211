"""Structure-aware fuzzing of checksum.ini (SP Flash Tool v3 and v5 shapes).

Starting from valid files — the real MT8167 Checksum.ini, a v3-style file (no [VERSION],
strtoul hex) and one rendered by romkit — values are replaced by junk (signs, overflow,
octal/decimal/hex edge cases, non-ASCII), lines duplicated, moved or cut. Only RomkitError
may escape, and anything accepted must hold values a 32-bit SP Flash Tool field can hold.
"""

from __future__ import annotations

from pathlib import Path

from fuzzlib import fuzz_settings, mutated_text, only_romkit_errors
from hypothesis import given

from romkit.firmware.checksum import parse_checksum_ini_text, render_checksum_ini
from romkit.firmware.ini import tokenize
from romkit.prepare.checksum_ini import update_checksum_text

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "checksum-mt8167" / "Checksum.ini"
REAL_V5 = FIX.read_text()
V3 = ("[IsEnableChecksum]\r\nCHECKSUM_SWITCH=1\r\n[CheckSum]\r\nPRELOADER=5a3c\r\n"
      "UBOOT=0x1F00\r\nBOOTIMG=ffff\r\nRECOVERY=0\r\n")
RENDERED = render_checksum_ini({"PRELOADER": 0x1234, "UBOOT": 0xABCD, "BOOTIMG": 0,
                                "ANDROID": 0xFFFF}, change_id=1, comment="fuzz seed")
COMMENTED = "\ufeff; CheckSum_Gen output\r\n[VERSION]\r\nVERSION=V1\r\n[CheckSum]\r\n; note\r\n" \
    "lk_a = 0x2CB4\r\nboot=0x0001"
VALID = (REAL_V5, V3, RENDERED, COMMENTED)
FUZZ = fuzz_settings(200)


def test_seeds_are_valid() -> None:
    for text in VALID:
        assert parse_checksum_ini_text(text, "Checksum.ini").values


@FUZZ
@given(mutated_text(VALID))
def test_mutated_ini_raises_only_romkit_errors(text: str) -> None:
    ini = only_romkit_errors(parse_checksum_ini_text, text, "Checksum.ini")
    if ini is None:
        return
    assert all(0 <= v <= 0xFFFFFFFF for v in ini.values.values())
    assert ini.switch is None or 0 <= ini.switch <= 0xFFFFFFFF
    for key, value in ini.values.items():
        assert ini.lookup(key) == (key, value)
        assert ini.lookup(key.lower()) is not None
    _ = ini.enabled


@FUZZ
@given(mutated_text(VALID))
def test_tokenizer_renders_any_text_back_and_edits_only_values(text: str) -> None:
    """The one INI tokenizer (verify, checksum --write, prepare) never loses a line."""
    doc = tokenize(text)
    assert doc.render() == text
    ini = only_romkit_errors(parse_checksum_ini_text, text, "Checksum.ini")
    if ini is None:
        return
    new = only_romkit_errors(update_checksum_text, text, {"NEWKEY": ("NewKey", 0x1234)})
    if new is None:
        return
    after = tokenize(new)
    kept = [ln.text for ln in doc.lines if ln.kind != "key"]
    assert [ln.text for ln in after.lines if ln.kind != "key"] == kept
    assert parse_checksum_ini_text(new, "Checksum.ini").lookup("newkey") == ("NewKey", 0x1234)
