"""SP Flash Tool / BROM / DA error codes: what a number means, per tool version, and the fix.

Forum advice is keyed by SP Flash Tool numbers, and romkit's own errors carry the number SP
Flash Tool would have shown (`RomkitError.spft_code`), so both lead here. The numbering is
not stable: the DA codes (3xxx) moved between tool versions and the STATUS codes changed
scheme twice, so an answer is always "this name in these versions". The tables are compiled
into ``codes.json`` (see `romkit.knowledge.build`); the cause / fix text for the common codes
is in `romkit.knowledge.curated`. The data is loaded once per process.

Public API: `parse_code`, `lookup`, `search`, `describe`, `tool_versions`, and the pydantic
result models `Explanation`, `NameUse`, `Advice`, `Renumbered`, `SearchHit`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel

from romkit.errors import RomkitError, UsageError
from romkit.knowledge.curated import CURATED, Curated

__all__ = [
    "Advice", "Explanation", "NameUse", "Renumbered", "SearchHit",
    "describe", "lookup", "parse_code", "search", "tool_versions",
]

TABLE_DIR = "romkit/knowledge/codes.json"
"""Where the numeric tables ship; a table source reads `romkit/knowledge/codes.json: SP Flash
Tool v5.1648 status codes` (the tool's public library headers, one table per version)."""

_U32 = 0xFFFFFFFF
_DEC_RE = re.compile(r"^[+-]?[0-9]{1,20}$", re.ASCII)
_HEX_RE = re.compile(r"^0[xX][0-9A-Fa-f]{1,16}$", re.ASCII)
_TOOL_VERSION_RE = re.compile(r"^[vV]?([0-9]{1,3})(?:\.([0-9]{1,6}))?(?:\.[0-9]{1,6})*$", re.ASCII)
_MARKER_RE = re.compile(r"(_ERROR_BEGIN|_ERROR_END)$|^S_MAX_STATUS_WIDTH$")
_MAX_QUERY = 200


# -- result models -------------------------------------------------------------------------------
class Renumbered(BaseModel):
    """The same name under another number in other tool versions."""

    code: int
    hex: str
    versions: list[str]


class NameUse(BaseModel):
    """One symbolic name of a code and the tool versions whose tables give it that name."""

    name: str
    versions: list[str]
    versions_label: str
    marker: bool = False
    """A range marker (`S_DA_ERROR_BEGIN` …) sharing the number with a real code."""
    elsewhere: list[Renumbered] = []


class Advice(BaseModel):
    """Curated cause and fix, written for the versions listed (all of them when empty)."""

    name: str | None
    versions: list[str]
    title: str
    cause: str
    fix: str
    romkit_command: str | None
    inferred: bool
    source: str


class Explanation(BaseModel):
    """Everything romkit knows about one code, narrowed to a tool version if one was given."""

    code: int
    hex: str
    signed: int | None
    """The negative form SP Flash Tool prints for codes ≥ 0x80000000 (STATUS codes)."""
    kind: Literal["library", "application"]
    tool_version: str | None
    names: list[NameUse]
    not_in: list[str]
    """Table versions (within the narrowing) that do not define this number at all."""
    advice: list[Advice]
    version_note: str | None
    sources: list[str]


class SearchHit(BaseModel):
    code: int
    hex: str
    names: list[NameUse]
    title: str | None
    curated: bool


# -- data ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Db:
    versions: tuple[str, ...]
    files: dict[str, str]
    codes: dict[int, tuple[tuple[str, tuple[str, ...]], ...]]
    by_name: dict[str, dict[int, tuple[str, ...]]]
    curated: dict[int, tuple[Curated, ...]]
    haystacks: dict[int, str]


def _generation(version: str) -> str:
    return version.split(".", 1)[0]


def _damaged(detail: str) -> RomkitError:
    return RomkitError(f"romkit's error-code data file is damaged ({detail})",
                       hint="reinstall romkit, or rebuild the file with "
                            "`python -m romkit.knowledge.build SRC_DIR`")


@cache
def _db() -> _Db:
    """Load codes.json and index it; cached so every error formatter can afford to call it."""
    try:
        raw = resources.files(__name__).joinpath("codes.json").read_text(encoding="utf-8")
        doc = json.loads(raw)
        tables = doc["tables"]
        versions = tuple(str(t["version"]) for t in tables)
        files = {str(t["version"]): str(t["file"]) for t in tables}
        codes = {int(k): tuple((str(n), tuple(str(v) for v in vs)) for n, vs in entries)
                 for k, entries in doc["codes"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _damaged(type(exc).__name__) from exc
    by_name: dict[str, dict[int, tuple[str, ...]]] = {}
    for code, entries in codes.items():
        for name, vs in entries:
            by_name.setdefault(name, {})[code] = vs
    curated: dict[int, list[Curated]] = {}
    for entry in CURATED:
        curated.setdefault(entry.code, []).append(entry)
    haystacks: dict[int, str] = {}
    for code in set(codes) | set(curated):
        words = [n for n, _ in codes.get(code, ())]
        for entry in curated.get(code, ()):
            words += [entry.name or "", entry.title, entry.cause, entry.fix, entry.command or ""]
        text = " ".join(words).lower()
        haystacks[code] = f"{text} {text.replace('_', ' ')}"
    return _Db(versions=versions, files=files, codes=codes, by_name=by_name,
               curated={k: tuple(v) for k, v in curated.items()}, haystacks=haystacks)


def tool_versions() -> list[str]:
    """The table versions romkit has, oldest first (e.g. ``['v3.1113', 'v5.1540', …]``)."""
    return list(_db().versions)


# -- parsing -------------------------------------------------------------------------------------
def parse_code(text: str | int) -> int:
    """A code as SP Flash Tool shows it → the unsigned 32-bit value.

    Accepts decimal (``4032``), hex (``0xFC0``) and the negative decimal that newer tools print
    for STATUS codes (``-1073545215`` = ``0xC0030001``): they are signed 32-bit in the tool.
    """
    if isinstance(text, bool):
        raise UsageError(f"{text!r} is not an error code", hint="give a number such as 4032")
    if isinstance(text, int):
        value = text
        shown = str(text)
    else:
        shown = text.strip()
        hint = ("give the number as shown by SP Flash Tool: 4032, 0xFC0 or -1073545215; "
                "to find a code by words use `romkit explain --search WORD`")
        if _DEC_RE.match(shown):
            value = int(shown, 10)
        elif _HEX_RE.match(shown):
            value = int(shown, 16)
        else:
            raise UsageError(f"{shown[:40]!r} is not an error code number", hint=hint)
    if -(2**31) <= value < 0:
        return value + 2**32
    if value < 0 or value > _U32:
        raise UsageError(f"{shown[:40]} is outside the 32-bit range of SP Flash Tool codes",
                         hint="give the number as shown by SP Flash Tool, e.g. 4032 or 0xFC0")
    return value


def _normalize_tool_version(text: str) -> tuple[str, str | None]:
    """'v5', '5', 'v5.1648', '5.1648.00' → a filter label, plus a note when no exact table."""
    db = _db()
    generations = sorted({_generation(v) for v in db.versions})
    known = ", ".join(generations + list(db.versions))
    m = _TOOL_VERSION_RE.match(text.strip())
    if m is None:
        raise UsageError(f"{text.strip()[:40]!r} is not an SP Flash Tool version",
                         hint=f"use v3 or v5, or one of: {known}")
    generation = f"v{int(m.group(1))}"
    if generation not in generations:
        raise UsageError(f"romkit has no error table for SP Flash Tool {generation}",
                         hint=f"use one of: {known}")
    if m.group(2) is None:
        return generation, None
    exact = f"{generation}.{int(m.group(2))}"
    if exact in db.versions:
        return exact, None
    have = ", ".join(v for v in db.versions if _generation(v) == generation)
    return generation, (f"romkit has no table for {exact}; showing its generation "
                        f"{generation} ({have})")


def _matches(version: str, filt: str | None) -> bool:
    """Does a table label ('v5.1648') or generation ('v5') fall under the filter?"""
    if filt is None or version == filt:
        return True
    if "." not in filt:
        return _generation(version) == filt
    return "." not in version and _generation(filt) == version


def _versions_label(versions: list[str]) -> str:
    """Readable version list: whole generations as ranges, e.g. ``v3.1113, v5.1540–v5.2052``."""
    db = _db()
    if len(db.versions) > 1 and set(versions) == set(db.versions):
        return f"all versions ({db.versions[0]}–{db.versions[-1]})"
    parts: list[str] = []
    for gen in dict.fromkeys(_generation(v) for v in versions):
        members = [v for v in versions if _generation(v) == gen]
        in_gen = [v for v in db.versions if _generation(v) == gen]
        if len(in_gen) > 1 and set(members) == set(in_gen):
            parts.append(f"{in_gen[0]}–{in_gen[-1]}")
        else:
            parts.extend(members)
    return ", ".join(parts)


def _short_label(versions: list[str]) -> str:
    """Generations when whole ones are covered (``v3``, ``v5``), else the version list."""
    db = _db()
    gens = list(dict.fromkeys(_generation(v) for v in versions))
    def covers(gen: str) -> bool:
        members = {v for v in versions if _generation(v) == gen}
        return gen in members or members == {v for v in db.versions if _generation(v) == gen}

    whole = all(covers(g) for g in gens)
    return ", ".join(gens) if whole else _versions_label(versions)


def _hex(code: int) -> str:
    return f"0x{code:X}"


# -- lookup --------------------------------------------------------------------------------------
def _table_names(code: int, filt: str | None) -> list[NameUse]:
    db = _db()
    uses: list[NameUse] = []
    for name, versions in db.codes.get(code, ()):
        kept = [v for v in versions if _matches(v, filt)]
        if not kept:
            continue
        elsewhere: list[Renumbered] = []
        for other, other_versions in sorted(db.by_name[name].items()):
            ov = [v for v in other_versions if _matches(v, filt)]
            if other != code and ov:
                elsewhere.append(Renumbered(code=other, hex=_hex(other), versions=ov))
        uses.append(NameUse(name=name, versions=kept, versions_label=_versions_label(kept),
                            marker=bool(_MARKER_RE.search(name)), elsewhere=elsewhere))
    uses.sort(key=lambda u: (u.marker, db.versions.index(u.versions[0])))
    return uses


def _advice(entry: Curated, name: str | None, versions: list[str]) -> Advice:
    return Advice(name=name, versions=versions, title=entry.title, cause=entry.cause,
                  fix=entry.fix, romkit_command=entry.command, inferred=entry.inferred,
                  source=entry.source)


def _unknown(code: int, shown: str, filt: str | None) -> UsageError:
    db = _db()
    if filt is not None:
        known_in = {v for _, vs in db.codes.get(code, ()) for v in vs}
        known_in |= {v for e in db.curated.get(code, ()) if e.name for v in e.versions}
        if known_in:
            label = ", ".join(v for v in (*db.versions, "v3", "v5") if v in known_in)
            return UsageError(f"code {shown} ({_hex(code)}) is not used by SP Flash Tool {filt}",
                              hint=f"it is used by {label}; drop --tool-version to see it")
    return UsageError(
        f"unknown SP Flash Tool code {shown} ({_hex(code)})",
        hint=f"romkit knows the codes of SP Flash Tool {', '.join(db.versions)} and the "
             "application codes 8xxx; check the number or search: romkit explain --search WORD")


def lookup(code: int | str, tool_version: str | None = None) -> Explanation:
    """Explain one code: names per tool version, curated cause / fix, and where that is from.

    Raises `UsageError` for text that is not a code number and for numbers no table (within
    `tool_version`, when given) and no curated entry knows.
    """
    value = parse_code(code)
    shown = code.strip() if isinstance(code, str) else str(code)
    filt, note = _normalize_tool_version(tool_version) if tool_version else (None, None)
    db = _db()
    names = _table_names(value, filt)
    advice: list[Advice] = []
    app_entries = [e for e in db.curated.get(value, ()) if e.name]
    for entry in app_entries:
        vs = [v for v in entry.versions if _matches(v, filt)]
        if vs:
            names.append(NameUse(name=entry.name or "", versions=vs,
                                 versions_label=_versions_label(vs)))
            advice.append(_advice(entry, entry.name, vs))
    if not names:
        raise _unknown(value, shown[:40], filt)
    table_versions = [v for v in db.versions if any(v in u.versions for u in names)]
    for entry in db.curated.get(value, ()):
        if entry.name:
            continue
        scope = [v for v in table_versions
                 if not entry.versions or any(_matches(v, g) for g in entry.versions)]
        if not scope:
            continue
        named = [u.name for u in names if not u.marker and set(u.versions) & set(scope)]
        which = named[0] if entry.versions and len(named) == 1 else None
        advice.append(_advice(entry, which, list(entry.versions)))
    kind: Literal["library", "application"] = "application" if app_entries else "library"
    not_in = ([v for v in db.versions if _matches(v, filt) and v not in table_versions]
              if kind == "library" else [])
    real = [u for u in names if not u.marker]
    notes = []
    if len({tuple(u.versions) for u in real}) > 1:
        notes.append("This number has different names in different SP Flash Tool versions: "
                     "read the one for the version that showed it (Help → About), or pass "
                     "--tool-version v3|v5.")
    if note:
        notes.append(note)
    sources = [f"{TABLE_DIR}: SP Flash Tool {v} status codes" for v in table_versions]
    sources += list(dict.fromkeys(a.source for a in advice))
    return Explanation(
        code=value, hex=_hex(value), signed=value - 2**32 if value >= 2**31 else None,
        kind=kind, tool_version=filt, names=names, not_in=not_in, advice=advice,
        version_note=" ".join(notes) or None, sources=sources)


def describe(code: int, tool_version: str | None = None) -> str:
    """One line for error messages, e.g. ``S_FT_ENABLE_DRAM_FAIL: [EMI] Enable DRAM failed``.

    Never raises: a formatter must not fail while reporting another failure.
    """
    try:
        exp = lookup(code, tool_version)
    except RomkitError:
        return f"SP Flash Tool code {code}: not in romkit's tables"
    real = [u for u in exp.names if not u.marker] or exp.names
    shared = next((a.title for a in exp.advice if a.name is None), None)
    titles = [next((a.title for a in exp.advice if a.name == u.name), shared) for u in real]
    tags = [f"{u.name} ({_short_label(u.versions)})" if len(real) > 1 else u.name for u in real]
    if len(set(titles)) == 1:
        head = " / ".join(tags)
        return f"{head}: {titles[0]}" if titles[0] else head
    return "; ".join(f"{tag}: {t}" if t else tag for tag, t in zip(tags, titles, strict=True))


# -- search --------------------------------------------------------------------------------------
def search(text: str, tool_version: str | None = None) -> list[SearchHit]:
    """Codes whose names or curated text contain every word of `text` (case-insensitive).

    Underscores count as spaces, so ``enable dram`` finds ``S_FT_ENABLE_DRAM_FAIL``. Curated
    codes come first (they are the ones people meet), then by number.
    """
    words = text.lower().split()
    if not words or len(text) > _MAX_QUERY:
        raise UsageError("give one or more words to search for (at most 200 characters)",
                         hint="e.g. romkit explain --search DRAM")
    if tool_version:
        _normalize_tool_version(tool_version)
    db = _db()
    hits: list[SearchHit] = []
    for code, hay in db.haystacks.items():
        if not all(w in hay for w in words):
            continue
        try:
            exp = lookup(code, tool_version)
        except UsageError:
            continue
        narrowed = " ".join([u.name for u in exp.names]
                            + [f"{a.title} {a.cause} {a.fix} {a.romkit_command or ''}"
                               for a in exp.advice]).lower()
        narrowed = f"{narrowed} {narrowed.replace('_', ' ')}"
        if not all(w in narrowed for w in words):
            continue
        hits.append(SearchHit(code=code, hex=exp.hex, names=exp.names,
                              title=exp.advice[0].title if exp.advice else None,
                              curated=bool(exp.advice)))
    hits.sort(key=lambda h: (not h.curated, h.code))
    return hits
