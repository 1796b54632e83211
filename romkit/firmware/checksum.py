"""checksum.ini: read both generations, verify, regenerate — SP Flash Tool's image check.

The value for each image is the 16-bit sum of all its bytes (reference §2b, checked on the
real `lk-verified.img` / `lk_a=0x2CB4` pair), keyed by the scatter's partition name. SP Flash
Tool refuses a whole download on one mismatch (8416), which is why forum guides say "delete
checksum.ini" after swapping the preloader; romkit regenerates the entries instead.

Summing runs at memory speed: files are streamed in large chunks into one reused buffer and
summed by numpy, so memory stays constant whatever the image size.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from romkit import __version__
from romkit.bytesum import byte_sum
from romkit.bytesum import byte_sum16 as byte_sum16  # the checksum.ini value of a buffer
from romkit.errors import FirmwareFormatError
from romkit.firmware.ini import tokenize as ini_tokenize
from romkit.fsutil import atomic_copy, atomic_write_text
from romkit.progress import ProgressCallback, Reporter

if TYPE_CHECKING:
    from romkit.firmware.package import Firmware

SUM_CHUNK = 4 * 1024 * 1024  # fits L2/L3 well; larger chunks measured slower
MAX_INI_BYTES = 1024 * 1024
CHECKSUM_NAMES = ("Checksum.ini", "checksum.ini", "Checksum.INI", "CHECKSUM.INI")
_HINT = "regenerate it with `romkit checksum --write`, or delete it (SP Flash Tool then skips)"

Status = Literal["ok", "mismatch", "missing-key", "no-image", "no-ini"]


def byte_sum16_file(path: Path | str, *, reporter: Reporter | None = None, task: str = "",
                    done_before: int = 0, chunk: int = SUM_CHUNK) -> int:
    """16-bit byte sum of a file, streamed through one reused buffer (constant memory).

    `reporter`/`task`/`done_before` let a caller summing several files drive one progress bar.
    `chunk` is the buffer size; tests pass small odd sizes to cross chunk boundaries.
    """
    p = Path(path)
    buf = np.empty(max(1, chunk), dtype=np.uint8)
    view = buf.data  # the array's own buffer, as a writable memoryview
    total = 0
    done = done_before
    try:
        with p.open("rb", buffering=0) as fh:
            while n := fh.readinto(view):
                total += byte_sum(buf[:n])
                done += n
                if reporter is not None:
                    reporter.update(task, done)
    except OSError as exc:
        raise FirmwareFormatError(f"cannot read image {p}: {exc.strerror or exc}",
                                  hint="check the file's permissions", spft_code=5007) from exc
    return total & 0xFFFF


class ChecksumIni(BaseModel):
    """A checksum.ini as SP Flash Tool reads it."""

    path: str = ""
    flavour: Literal["v3", "v5"]  # v5 files carry a [VERSION] section
    switch: int | None = None  # CHECKSUM_SWITCH; None = no [IsEnableChecksum] section
    version: dict[str, str] = Field(default_factory=dict)
    values: dict[str, int] = Field(default_factory=dict)  # key as spelled → value

    @property
    def enabled(self) -> bool:
        """Whether SP Flash Tool would check at all (a switch of 0 turns the check off)."""
        return self.switch != 0

    def lookup(self, name: str) -> tuple[str, int] | None:
        """(key, value) for a partition name; exact spelling first, then case-insensitive."""
        if name in self.values:
            return name, self.values[name]
        folded = [k for k in self.values if k.lower() == name.lower()]
        return (folded[0], self.values[folded[0]]) if folded else None


def _bad(source: str, line: int | None, message: str) -> FirmwareFormatError:
    where = (source or "checksum.ini") + (f":{line}" if line else "")
    return FirmwareFormatError(f"{where}: {message}", hint=_HINT,
                               details={"file": source, "line": line})


_V3_VALUE = re.compile(r"^(?:0[xX])?[0-9A-Fa-f]{1,16}$")
_V5_HEX = re.compile(r"^0[xX][0-9A-Fa-f]{1,16}$")
_V5_OCT = re.compile(r"^0[0-7]{0,22}$")
_V5_DEC = re.compile(r"^[1-9][0-9]{0,19}$")


def _parse_value(text: str, flavour: str, source: str, line: int) -> int:
    """v3 reads with strtoul(…, 16); v5 with QString::toUInt(&ok, 0) (0x hex, 0 octal)."""
    t = text.strip()
    if flavour == "v3" and _V3_VALUE.match(t):
        value = int(t[2:] if t[:2].lower() == "0x" else t, 16)
    elif flavour == "v5" and _V5_HEX.match(t):
        value = int(t[2:], 16)
    elif flavour == "v5" and _V5_OCT.match(t):
        value = int(t, 8)
    elif flavour == "v5" and _V5_DEC.match(t):
        value = int(t)
    else:
        raise _bad(source, line, f"checksum value {t[:40]!r} is not a number")
    if value > 0xFFFFFFFF:
        raise _bad(source, line, f"checksum value {t[:40]!r} does not fit 32 bits")
    return value


def parse_checksum_ini_text(text: str, filename: str = "") -> ChecksumIni:
    """Parse checksum.ini text; junk lines are errors naming the file and line.

    Reads through the one tokenizer (romkit/firmware/ini.py) that `prepare` and
    `checksum --write` also use, so all three agree on BOMs, comments and spelling.
    """
    if len(text) > MAX_INI_BYTES:
        raise _bad(filename, None, "far too large for a checksum.ini")
    if "\x00" in text:
        raise _bad(filename, None, "contains NUL bytes: not a text file")
    doc = ini_tokenize(text)
    for line in doc.lines:
        if line.kind == "junk":
            raise _bad(filename, line.number, "expected 'KEY = VALUE' or '[SECTION]', got "
                                              f"{line.text.strip()[:60]!r}")
        if line.kind == "key" and line.section is None:
            raise _bad(filename, line.number, f"{line.key!r} appears before any [SECTION]")
    sections = doc.sections()
    if "checksum" not in sections:
        raise _bad(filename, None, "no [CheckSum] section")
    flavour: Literal["v3", "v5"] = "v5" if "version" in sections else "v3"
    ini = ChecksumIni(path=filename, flavour=flavour,
                      version={ln.key or "": ln.value or "" for ln in doc.items("version")})
    for ln in doc.items("isenablechecksum"):
        if (ln.key or "").upper() == "CHECKSUM_SWITCH":
            ini.switch = _parse_value(ln.value or "", flavour, filename, ln.number)
    for ln in doc.items("checksum"):
        key = ln.key or ""
        if key in ini.values:
            raise _bad(filename, ln.number, f"duplicate key {key!r}")
        ini.values[key] = _parse_value(ln.value or "", flavour, filename, ln.number)
    return ini


def decode_ini_bytes(data: bytes) -> str:
    """checksum.ini bytes as text: UTF-8 (BOM kept, the tokenizer handles it), else Latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_checksum_ini(path: Path | str) -> ChecksumIni:
    p = Path(path)
    try:
        if p.stat().st_size > MAX_INI_BYTES:
            raise _bad(str(p), None, "far too large for a checksum.ini")
        data = p.read_bytes()
    except OSError as exc:
        raise FirmwareFormatError(f"cannot read {p}: {exc.strerror or exc}",
                                  hint="check the file's permissions") from exc
    return parse_checksum_ini_text(decode_ini_bytes(data), str(p))


def find_checksum_ini(folder: Path) -> Path | None:
    """checksum.ini of a firmware folder, any capitalisation (SPFT5 looks only there)."""
    try:
        names = {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_file()}
    except OSError:
        return None
    return names.get("checksum.ini")


# -- verify / generate -------------------------------------------------------------------------


class ChecksumResult(BaseModel):
    partition: str
    path: Path | None
    key: str | None = None
    expected: int | None = None
    actual: int | None = None
    status: Status


def compute_checksums(images: Mapping[str, Path], *,
                      on_progress: ProgressCallback | None = None) -> dict[str, int]:
    """16-bit byte sums of several images with one progress bar over all their bytes."""
    rep = Reporter(on_progress)
    sizes = {name: file_size(path) for name, path in images.items()}
    total = sum(sizes.values())
    rep.start("checksum", "summing images", total=total)
    out: dict[str, int] = {}
    done = 0
    for name, path in images.items():
        out[name] = byte_sum16_file(path, reporter=rep, task="checksum", done_before=done)
        done += sizes[name]
    rep.end("checksum")
    return out


def file_size(path: Path) -> int:
    """Size of an image file, as a RomkitError (5007: image not loadable) when unreadable."""
    try:
        return path.stat().st_size
    except OSError as exc:
        raise FirmwareFormatError(f"cannot read image {path}: {exc.strerror or exc}",
                                  hint="check the file's permissions", spft_code=5007) from exc


def _firmware(firmware_or_folder: Firmware | Path | str) -> Firmware:
    from romkit.firmware.package import Firmware

    if isinstance(firmware_or_folder, Firmware):
        return firmware_or_folder
    return Firmware.load(Path(firmware_or_folder))


def verify_checksums(firmware_or_folder: Firmware | Path | str, *,
                     sums: Mapping[str, int] | None = None,
                     on_progress: ProgressCallback | None = None) -> list[ChecksumResult]:
    """One result per downloadable partition, in scatter order (SPFT5 checks only those)."""
    fw = _firmware(firmware_or_folder)
    ini = read_checksum_ini(fw.checksum_path) if fw.checksum_path else None
    actual = dict(sums) if sums is not None else compute_checksums(fw.images,
                                                                   on_progress=on_progress)
    results: list[ChecksumResult] = []
    for part in fw.layout.download_partitions:
        path = fw.images.get(part.name)
        if path is None:
            # Not in this folder: the key (if any) is shown and kept, never reported stale.
            hit = ini.lookup(part.name) if ini is not None else None
            results.append(ChecksumResult(partition=part.name, path=None,
                                          key=hit[0] if hit else None,
                                          expected=hit[1] if hit else None, status="no-image"))
            continue
        value = actual.get(part.name)
        if value is None:
            value = byte_sum16_file(path)
        if ini is None:
            results.append(ChecksumResult(partition=part.name, path=path, actual=value,
                                          status="no-ini"))
            continue
        hit = ini.lookup(part.name)
        if hit is None:
            results.append(ChecksumResult(partition=part.name, path=path, actual=value,
                                          status="missing-key"))
            continue
        key, expected = hit
        results.append(ChecksumResult(partition=part.name, path=path, key=key,
                                      expected=expected, actual=value,
                                      status="ok" if expected == value else "mismatch"))
    return results


def render_checksum_ini(values: Mapping[str, int], *, switch: int = 1,
                        change_id: int | None = None, comment: str | None = None) -> str:
    """checksum.ini text in CheckSum_Gen's v5 shape; values always written `0x%04X`."""
    lines = [f"; {comment}"] if comment else []
    cid = int(time.time()) if change_id is None else change_id
    lines += ["[VERSION]", "VERSION=V1", f"TOOL=romkit {__version__}", f"Change_ID={cid}",
              "[IsEnableChecksum]", f"CHECKSUM_SWITCH={switch}", "[CheckSum]"]
    lines += [f"{name}=0x{value & 0xFFFF:04X}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def generate_checksum_ini(firmware_or_folder: Firmware | Path | str, *,
                          change_id: int | None = None, comment: str | None = None,
                          on_progress: ProgressCallback | None = None) -> str:
    """checksum.ini text for every downloadable partition that has an image.

    With an existing, readable file this is that file edited in place (see
    `update_checksum_text`): comments, key order and the keys of images that are not in
    this folder stay; without one it is a fresh file in CheckSum_Gen's v5 shape.
    """
    fw = _firmware(firmware_or_folder)
    images = {p.name: fw.images[p.name] for p in fw.layout.download_partitions
              if p.name in fw.images}
    sums = compute_checksums(images, on_progress=on_progress)
    old_text = _existing_text(fw)
    if old_text is not None:
        return update_checksum_text(old_text, sums)
    return render_checksum_ini(sums, change_id=change_id, comment=comment)


def update_checksum_text(text: str, sums: Mapping[str, int]) -> str:
    """`text` with the [CheckSum] values of `sums` set, every other line kept as written.

    Keys are matched case-insensitively (SP Flash Tool compares partition names that way);
    a value already equal to the sum keeps its spelling; missing keys are appended to the
    section. Keys whose image is not in the folder are left alone: the partition is still
    downloadable and SP Flash Tool fails with 8416 once that image is added without them.
    """
    doc = ini_tokenize(text)
    present = {(ln.key or "").lower(): ln for ln in doc.items("checksum")}
    for name, value in sums.items():
        line = present.get(name.lower())
        spelled = f"0x{value & 0xFFFF:04X}"
        if line is None:
            doc.append_value("checksum", name, spelled)
            continue
        try:
            same = _parse_value(line.value or "", "v5", "", line.number) == value & 0xFFFF
        except FirmwareFormatError:
            same = False
        if not same:
            doc.set_value("checksum", line.key or name, spelled)
    return doc.render()


def _existing_text(fw: Firmware) -> str | None:
    """The current checksum.ini text when it parses (a junk file is replaced whole)."""
    if fw.checksum_path is None:
        return None
    try:
        data = fw.checksum_path.read_bytes()
        text = decode_ini_bytes(data)
        parse_checksum_ini_text(text, str(fw.checksum_path))
    except (OSError, FirmwareFormatError):
        return None
    return text


def _existing(fw: Firmware) -> ChecksumIni | None:
    """The folder's current checksum.ini, or None if absent or junk (it is being replaced)."""
    if fw.checksum_path is None:
        return None
    try:
        return read_checksum_ini(fw.checksum_path)
    except FirmwareFormatError:
        return None


class ChecksumWrite(BaseModel):
    """What `write_checksum_ini` did (or, with dry_run, would do)."""

    path: Path
    backup: Path | None = None
    written: bool
    unchanged: bool  # the existing file already held exactly these values
    dry_run: bool
    diff: str
    values: dict[str, int]
    # keys kept although their image is not in this folder (the partition is still
    # downloadable; SP Flash Tool needs the key once the image is added)
    kept_absent: list[str] = Field(default_factory=list)


def _backup_name(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}.{stamp}.bak")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.{stamp}-{n}.bak")
        n += 1
    return candidate


def write_checksum_ini(firmware_or_folder: Firmware | Path | str, *, dry_run: bool = False,
                       change_id: int | None = None,
                       on_progress: ProgressCallback | None = None) -> ChecksumWrite:
    """Regenerate checksum.ini atomically, keeping a timestamped backup of the old one."""
    fw = _firmware(firmware_or_folder)
    target = fw.checksum_path or fw.folder / CHECKSUM_NAMES[0]
    new_text = generate_checksum_ini(fw, change_id=change_id, on_progress=on_progress)
    new = parse_checksum_ini_text(new_text, str(target))
    old_text = ""
    unchanged = False
    if fw.checksum_path is not None:
        try:
            old_text = fw.checksum_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise FirmwareFormatError(f"cannot read {fw.checksum_path}: {exc.strerror or exc}",
                                      hint="check the file's permissions") from exc
        old = _existing(fw)
        unchanged = old_text == new_text or (
            old is not None and old.values == new.values and old.switch == new.switch)
    diff = "".join(difflib.unified_diff(
        old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
        fromfile=f"{target.name} (current)" if old_text else "/dev/null",
        tofile=f"{target.name} (new)"))
    imaged = {name.lower() for name in fw.images}
    kept = [k for k in new.values if k.lower() not in imaged]
    result = ChecksumWrite(path=target, written=False, unchanged=unchanged, dry_run=dry_run,
                           diff=diff, values=new.values, kept_absent=kept)
    if dry_run or unchanged:
        return result
    if fw.checksum_path is not None:
        result.backup = _backup_name(fw.checksum_path)
        atomic_copy(fw.checksum_path, result.backup)
    atomic_write_text(target, new_text)
    result.written = True
    return result
