"""The one INI tokenizer for checksum.ini (verify, `checksum --write` and `prepare` share it).

Why one: two readers used to disagree (a UTF-8 BOM passed `verify` and was refused by
`prepare`), and a rewrite that re-rendered the file lost its `;` comments and the keys of
images that were simply not in the folder. This tokenizer keeps every line as written —
BOM, comments, blank lines, key order, spacing around `=`, line endings — so an edit
changes only the values it means to change.

Lines are split on CR, LF and CRLF only (`str.splitlines` would also split on \\x1e,
\\u2028 … and a rewritten line would lose them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

BOM = "\ufeff"
LineKind = Literal["blank", "comment", "section", "key", "junk"]

_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
_SECTION = re.compile(r"^\s*\[([^\]]*)\]\s*$")
_KEY = re.compile(r"^(?P<lead>[ \t]*)(?P<key>[^=\s][^=]*?)(?P<sep>[ \t]*=[ \t]*)"
                  r"(?P<value>.*?)(?P<trail>[ \t]*)$")


@dataclass
class IniLine:
    """One physical line: its text without the line ending, the ending, and what it is."""

    text: str
    eol: str
    number: int  # 1-based line number in the file
    kind: LineKind
    section: str | None = None  # the section it belongs to, lower-case (None: before any)
    key: str | None = None  # as spelled (stripped)
    value: str | None = None  # as spelled (stripped)


@dataclass
class IniDocument:
    """A tokenized INI file that renders back byte-for-byte (as text) until edited."""

    lines: list[IniLine] = field(default_factory=list)
    bom: bool = False

    def render(self) -> str:
        """The file text, BOM included when the original had one."""
        return (BOM if self.bom else "") + "".join(ln.text + ln.eol for ln in self.lines)

    @property
    def newline(self) -> str:
        """The file's own line ending (the first one used; LF for a one-line file)."""
        return next((ln.eol for ln in self.lines if ln.eol), "\n")

    def sections(self) -> list[str]:
        """Section names (lower-case) in file order, each once."""
        out: list[str] = []
        for ln in self.lines:
            if ln.kind == "section" and ln.section is not None and ln.section not in out:
                out.append(ln.section)
        return out

    def items(self, section: str) -> list[IniLine]:
        """Key lines of a section (any capitalisation of the section name), in file order."""
        want = section.lower()
        return [ln for ln in self.lines if ln.kind == "key" and ln.section == want]

    def junk(self) -> list[IniLine]:
        """Lines that are neither blank, comment, section nor `key = value`."""
        return [ln for ln in self.lines if ln.kind == "junk"]

    def set_value(self, section: str, key: str, value: str) -> bool:
        """Replace the value of `key` (case-insensitive) in `section`, keeping the line's
        spelling and spacing; False when the key is not there."""
        for ln in self.items(section):
            if ln.key is not None and ln.key.lower() == key.lower():
                m = _KEY.match(ln.text)
                assert m is not None  # a key line matched this pattern when tokenized
                ln.text = f"{m['lead']}{m['key']}{m['sep']}{value}{m['trail']}"
                ln.value = value
                return True
        return False

    def append_value(self, section: str, key: str, value: str) -> None:
        """Add `key=value` after the last key of `section` (after its header when it has
        none), with the separator of the key line before it; the section must exist."""
        want = section.lower()
        header = next((i for i, ln in enumerate(self.lines)
                       if ln.kind == "section" and ln.section == want), None)
        if header is None:
            raise KeyError(section)
        anchor = header
        for i, ln in enumerate(self.lines):
            if ln.section == want and ln.kind == "key":
                anchor = i
        sep = "="
        if self.lines[anchor].kind == "key":
            m = _KEY.match(self.lines[anchor].text)
            if m is not None:
                sep = m["sep"]
        eol = self.newline
        if not self.lines[anchor].eol:
            self.lines[anchor].eol = eol
        new = IniLine(text=f"{key}{sep}{value}", eol=eol, number=0, kind="key",
                      section=want, key=key, value=value)
        self.lines.insert(anchor + 1, new)


def tokenize(text: str) -> IniDocument:
    """Split INI text into typed lines; never fails (junk lines are typed "junk")."""
    doc = IniDocument(bom=text.startswith(BOM))
    if doc.bom:
        text = text[len(BOM):]
    section: str | None = None
    for n, chunk in enumerate(_LINES.findall(text), start=1):
        body = chunk.rstrip("\r\n")
        eol = chunk[len(body):]
        stripped = body.strip()
        if not stripped:
            doc.lines.append(IniLine(body, eol, n, "blank", section))
        elif stripped.startswith((";", "#")):
            doc.lines.append(IniLine(body, eol, n, "comment", section))
        elif m := _SECTION.match(body):
            section = m.group(1).strip().lower()
            doc.lines.append(IniLine(body, eol, n, "section", section))
        elif (m := _KEY.match(body)) is not None and m["key"].strip():
            doc.lines.append(IniLine(body, eol, n, "key", section, m["key"].strip(),
                                     m["value"].strip()))
        else:
            doc.lines.append(IniLine(body, eol, n, "junk", section))
    return doc
