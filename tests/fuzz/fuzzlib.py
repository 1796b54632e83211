"""Structure-aware hypothesis strategies: near-valid files, not random bytes.

Random bytes die at the first magic check and never reach the interesting code. These
strategies start from a *valid* document (a real scatter, a generated checksum.ini, a
synthetic preloader …) and apply a few targeted edits — a number replaced by an absurd one,
a line duplicated, deleted, swapped or cut, a value replaced by junk, a binary field
overwritten — so the parsers are driven deep into their field handling.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from romkit.errors import RomkitError

SCALE = float(os.environ.get("ROMKIT_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    """Modest example counts for the suite; `ROMKIT_FUZZ_SCALE=50` for a long campaign."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])


# Values that have broken parsers before: empty, signs, overflow, other bases, non-ASCII,
# structure characters of the formats under test, whitespace oddities.
JUNK_TOKENS: tuple[str, ...] = (
    "", " ", "0x", "0X", "-1", "-0x1", "0x-1", "+5", "1e9", "0b101", "0o17", "08", "0777",
    "0x" + "F" * 16, "0x1" + "0" * 16, "0x" + "f" * 200, str(2**64), str(2**32), "NaN", "inf",
    "true", "false", "yes", "null", "~", "{", "}", "{}", "[", "]", "=", ":", "- ", "#", ";",
    "\t", "\u00a0", "\ufeff", "\u2028", "é", "💥", "SYS", "SYS99999", "__NODL_", "..", "/",
    "a" * 300, "0x0 0x0", "'quoted'", '"quoted"',
)

junk_value = st.one_of(
    st.sampled_from(JUNK_TOKENS),
    st.integers(-(2**70), 2**70).map(lambda n: hex(n) if n >= 0 else f"-{hex(-n)}"),
    st.integers(0, 2**66).map(str),
    st.text(max_size=24),
)

_NUMBER = re.compile(r"0[xX][0-9A-Fa-f]+|\b\d+\b")


@st.composite
def mutated_text(draw: st.DrawFn, valid: Sequence[str], max_edits: int = 4) -> str:
    """One of `valid`, with 1..max_edits line-level edits."""
    text = draw(st.sampled_from(list(valid)))
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, max_edits))):
        if not lines:
            lines.append(draw(junk_value))
            continue
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(("number", "number", "value", "value", "delete", "duplicate",
                                   "swap", "insert", "cut", "indent", "case")))
        line = lines[i]
        if op == "number":
            spans = [m.span() for m in _NUMBER.finditer(line)]
            if spans:
                a, b = draw(st.sampled_from(spans))
                lines[i] = line[:a] + draw(junk_value) + line[b:]
                continue
            op = "value"
        if op == "value":
            sep = max(line.rfind(":"), line.rfind("="))
            if sep >= 0:
                lines[i] = line[:sep + 1] + " " + draw(junk_value)
            else:
                lines[i] = draw(junk_value)
        elif op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            lines.insert(i, draw(junk_value))
        elif op == "cut":
            lines[i] = line[:draw(st.integers(0, len(line)))]
        elif op == "indent":
            lines[i] = draw(st.sampled_from(("", " ", "  ", "    ", "\t"))) + line.lstrip()
        elif op == "case":
            lines[i] = line.swapcase()
    if draw(st.booleans()):
        return newline.join(lines) + newline
    return newline.join(lines)


@st.composite
def mutated_bytes(draw: st.DrawFn, valid: Sequence[bytes],
                  hot: Sequence[tuple[int, int]] = (), max_edits: int = 4) -> bytes:
    """One of `valid` with a few binary edits, biased to the `hot` [start, end) spans
    (header fields, tables) where a parser makes its decisions."""
    data = bytearray(draw(st.sampled_from(list(valid))))
    for _ in range(draw(st.integers(1, max_edits))):
        if not data:
            break
        op = draw(st.sampled_from(("u32", "u32", "u16", "byte", "truncate", "zero", "insert")))
        if hot and draw(st.booleans()):
            lo, hi = draw(st.sampled_from(list(hot)))
            lo, hi = max(0, min(lo, len(data) - 1)), max(1, min(hi, len(data)))
        else:
            lo, hi = 0, len(data)
        at = draw(st.integers(lo, max(lo, hi - 1)))
        if op == "u32" and at + 4 <= len(data):
            data[at:at + 4] = struct.pack("<I", draw(st.sampled_from(
                (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, len(data), len(data) + 1))
                | st.integers(0, 0xFFFFFFFF)))
        elif op == "u16" and at + 2 <= len(data):
            data[at:at + 2] = struct.pack("<H", draw(st.integers(0, 0xFFFF)))
        elif op == "byte":
            data[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "zero":
            n = draw(st.integers(1, 64))
            data[at:at + n] = bytes(len(data[at:at + n]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def only_romkit_errors(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `fn`; a RomkitError is an accepted outcome (returns None), anything else escapes
    and fails the test with its own traceback."""
    try:
        return fn(*args, **kwargs)
    except RomkitError as exc:
        assert exc.message and exc.message.strip(), "a RomkitError without a message"
        return None
