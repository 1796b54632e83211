"""The one INI tokenizer (romkit/firmware/ini.py) shared by verify, checksum --write and
prepare: lines, comments, BOM, key order and spacing survive; edits touch values only."""

from __future__ import annotations

from pathlib import Path

from romkit.firmware.checksum import parse_checksum_ini_text
from romkit.firmware.ini import tokenize

REAL = (Path(__file__).parent / "fixtures" / "checksum-mt8167" / "Checksum.ini").read_text()


def test_real_file_renders_back_unchanged() -> None:
    doc = tokenize(REAL)
    assert doc.render() == REAL
    assert doc.sections() == ["version", "isenablechecksum", "checksum"]
    assert [ln.key for ln in doc.items("CheckSum")][:2] == ["preloader", "lk_a"]


def test_bom_crlf_comments_and_spacing_survive_an_edit() -> None:
    text = "\ufeff; made by hand\r\n[CheckSum]\r\n  lk_a = 0x0001  \r\n# other\r\nboot=0x2\r\n"
    doc = tokenize(text)
    assert doc.bom and doc.newline == "\r\n"
    assert [ln.kind for ln in doc.lines] == ["comment", "section", "key", "comment", "key"]
    assert doc.set_value("checksum", "LK_A", "0x2CB4")
    doc.append_value("checksum", "tee_a", "0x0003")
    assert doc.render() == ("\ufeff; made by hand\r\n[CheckSum]\r\n  lk_a = 0x2CB4  \r\n"
                            "# other\r\nboot=0x2\r\ntee_a=0x0003\r\n")
    assert parse_checksum_ini_text(doc.render()).values == {"lk_a": 0x2CB4, "boot": 2,
                                                            "tee_a": 3}


def test_append_to_a_file_without_final_newline_and_junk_is_typed() -> None:
    doc = tokenize("[CheckSum]\nlk=1")
    doc.append_value("checksum", "boot", "2")
    assert doc.render() == "[CheckSum]\nlk=1\nboot=2\n"
    assert [ln.kind for ln in tokenize("[a]\nnot a key\n=x\n").lines] == [
        "section", "junk", "junk"]
    assert not tokenize("[a]\n").set_value("a", "missing", "1")
