"""The checksum.ini step: regenerate the [CheckSum] entries of the images a plan replaces
(keeping the file's spelling, spacing, line endings and encoding), or remove the file with
`--drop-checksum`.
"""

from __future__ import annotations

from romkit.errors import FirmwareFormatError
from romkit.firmware import checksum as ck
from romkit.firmware.ini import tokenize
from romkit.firmware.preloader import read_limited
from romkit.prepare.context import _Context
from romkit.prepare.files import _hash_bytes, _rel, _sha, _size
from romkit.prepare.models import PlanStep, PreparePlan


def update_checksum_text(text: str, updates: dict[str, tuple[str, int]]) -> str:
    """`text` with the [CheckSum] values of some keys replaced, everything else kept.

    `updates` maps an upper-case partition name to (key spelling for a new line, value).
    Existing keys keep their spelling, spacing and line ending; missing ones are added at the
    end of the [CheckSum] section with the separator of the key before. Values are
    `0x%04X`. The text goes through the same tokenizer as `verify` and `checksum --write`
    (romkit/firmware/ini.py), so a BOM, comments and odd line endings survive.
    """
    doc = tokenize(text)
    if "checksum" not in doc.sections():
        raise FirmwareFormatError("checksum.ini has no [CheckSum] section",
                                  hint="use --drop-checksum, or `romkit checksum --write`")
    for name, (key, value) in updates.items():
        spelled = f"0x{value & 0xFFFF:04X}"
        if not doc.set_value("checksum", name, spelled):
            doc.append_value("checksum", key, spelled)
    return doc.render()


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
    text = ck.decode_ini_bytes(raw)
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
