"""The checksum.ini step: regenerate the [CheckSum] entries of the images a plan replaces
(keeping the file's spelling, spacing, line endings and encoding), or remove the file with
`--drop-checksum`.
"""

from __future__ import annotations

import re

from romkit.errors import FirmwareFormatError
from romkit.firmware import checksum as ck
from romkit.firmware.preloader import read_limited
from romkit.prepare.context import _Context
from romkit.prepare.files import _hash_bytes, _rel, _sha, _size
from romkit.prepare.models import PlanStep, PreparePlan

_KEY_LINE = re.compile(r"^(?P<lead>[ \t]*)(?P<key>[^=\s][^=]*?)(?P<sep>[ \t]*=[ \t]*)"
                       r"(?P<value>[^\r\n]*?)"
                       r"(?P<eol>\r\n|\n|\r)?$")

_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def update_checksum_text(text: str, updates: dict[str, tuple[str, int]]) -> str:
    """`text` with the [CheckSum] values of some keys replaced, everything else kept.

    `updates` maps an upper-case partition name to (key spelling for a new line, value).
    Existing keys keep their spelling, spacing and line ending; missing ones are added at the
    end of the [CheckSum] section in the style of the line before. Values are `0x%04X`.
    """
    # Split on CR/LF only: str.splitlines() also breaks on \x1e, \u2028 … and a rewritten
    # line would lose those characters.
    lines = _LINES.findall(text)
    pending = dict(updates)
    section = ""
    last_key: int | None = None
    header: int | None = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip().lower()
            if section == "checksum" and header is None:
                header = i
            continue
        if section != "checksum" or not stripped or stripped.startswith((";", "#")):
            continue
        m = _KEY_LINE.match(line)
        if m is None:
            continue
        last_key = i
        name = m["key"].strip().upper()
        if name in pending:
            _, value = pending.pop(name)
            lines[i] = f"{m['lead']}{m['key']}{m['sep']}0x{value & 0xFFFF:04X}{m['eol'] or ''}"
    if pending:
        if header is None:
            raise FirmwareFormatError("checksum.ini has no [CheckSum] section",
                                      hint="use --drop-checksum, or `romkit checksum --write`")
        anchor = last_key if last_key is not None else header
        ref = _KEY_LINE.match(lines[anchor]) if last_key is not None else None
        sep = ref["sep"] if ref else "="
        eol = next((m.group(0) for m in (re.search(r"\r\n|\n|\r$", ln) for ln in lines) if m),
                   "\n")
        if not lines[anchor].endswith(("\n", "\r")):
            lines[anchor] += eol
        new = [f"{key}{sep}0x{value & 0xFFFF:04X}{eol}" for key, value in pending.values()]
        lines[anchor + 1:anchor + 1] = new
    return "".join(lines)


def _plan_checksum(ctx: _Context, plan: PreparePlan, changed: dict[str, tuple[str, bytes]]
                   ) -> PlanStep | None:
    """Regenerate the entries of changed images (or drop the file with --drop-checksum)."""
    fw = ctx.fw
    path = fw.checksum_path
    if path is not None:
        plan.checksum_file = _rel(fw.folder, path)
    if ctx.request.drop_checksum:
        if path is None:
            plan.notes.append("--drop-checksum: there is no checksum.ini to remove")
            return None
        return PlanStep(kind="checksum", action="remove", path=_rel(fw.folder, path),
                        reason="--drop-checksum: SP Flash Tool then skips the image check "
                               "(the forum workaround; regenerating is safer)",
                        before_sha256=_sha(path), before_size=_size(path))
    if not changed:
        return None
    if path is None:
        plan.notes.append("no checksum.ini in the folder: SP Flash Tool skips the check; "
                          "nothing to regenerate")
        return None
    raw = read_limited(path, ck.MAX_INI_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    ini = ck.parse_checksum_ini_text(text, path.name)
    updates: dict[str, tuple[str, int]] = {}
    for name, (key, data) in changed.items():
        value = ck.byte_sum16(data)
        hit = ini.lookup(name)
        if hit is None or hit[1] != value:
            updates[name.upper()] = (key, value)
            old = f"0x{hit[1]:04X}" if hit else "missing"
            plan.notes.append(f"checksum.ini {hit[0] if hit else key}: {old} -> 0x{value:04X}")
    if not updates:
        return None
    new_text = update_checksum_text(text, updates)
    data = new_text.encode("utf-8") if _is_utf8(raw) else new_text.encode("latin-1")
    step = PlanStep(kind="checksum", action="replace", path=_rel(fw.folder, path),
                    reason="regenerate the entries of the replaced images (16-bit byte sum), "
                           "keeping the file's format and other entries",
                    source="computed", before_sha256=_hash_bytes(raw), before_size=len(raw),
                    after_sha256=_hash_bytes(data), after_size=len(data))
    step._data = data
    return step


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
