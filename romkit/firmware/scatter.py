"""Scatter files: where every partition of the phone lives, in both formats SP Flash Tool reads.

Two formats exist (reference: spft-formats.md §1):

* the old MT6589-era format — `NAME 0xADDR` followed by a `{ }` block, no sizes, no file
  names, `__NODL_` marking partitions that are never downloaded, and a `__NODL_BMTPOOL
  0xFFFF00a8` marker that is not an address at all;
* the YAML-like V1.1.x format — one `- partition_index:` item per partition with all
  fields spelled out (newer tools add keys; we keep the ones we do not know);
* the V2.x format (MT6771 on Android 9 and later: MT6781, MT6785, MT6833 …) — the same
  partition items, nested under one `- storage_type: EMMC|UFS` block per storage kind, each
  with a `description:` header (`MTK_STORAGE_CFG`: storage, boot channel, block size).
  Regions become `EMMC_BOOT1_BOOT2` / `EMMC_USER` and UFS logical units (`UFS_LU0_LU1`,
  `UFS_LU2`).

All parse into one `Layout` model; a V2 file's blocks are kept in `Layout.storages` and
`Layout.partitions` is the block of the storage being used (eMMC unless asked otherwise).

On top of what the file says we compute, for every
partition, the eMMC region (BOOT1 vs USER) and the physical offset inside that region,
because the flash engine addresses the eMMC by region + offset while the scatter speaks in
"linear" addresses. Writing the old format reproduces the file's exact shape so a rewritten
scatter diffs cleanly against the original.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from romkit.device.protocol import MT6589_USER_OFFSET
from romkit.errors import FirmwareFormatError, UsageError

NODL = "__NODL_"
REGION_BOOT1 = "EMMC_BOOT_1"
REGION_USER = "EMMC_USER"
MARKER_NAMES = frozenset({"BMTPOOL", "RSV_BMTPOOL"})
# Boot regions (hardware boot partitions / boot LUs) of every generation: the preloader
# lives there, outside the user area's linear address space (scatter files of MT6589 …
# MT6833; see docs/FORMATS.md §1).
BOOT_REGIONS = frozenset({"EMMC_BOOT_1", "EMMC_BOOT1", "EMMC_BOOT_2", "EMMC_BOOT2",
                          "EMMC_BOOT1_BOOT2", "UFS_LU0", "UFS_LU1", "UFS_LU0_LU1"})
# Reserved entries (flashinfo, sgpt, otp …) carry 0xFFFFxxxx pseudo-addresses counted back
# from the end of the device; they are not linear addresses.
PLACEHOLDER_FLOOR = 0xFFFF0000
MAX_SCATTER_BYTES = 4 * 1024 * 1024  # real scatters are a few KiB; more is not a scatter
MAX_PARTITIONS = 1024
MAX_ADDRESS = (1 << 64) - 1

_HINT = "use the scatter file shipped with the firmware; re-download it if it was edited"

# Old-format files say nothing but names; these are the V1.1 roles the same names carry.
_OLD_OPERATION = {
    "PRELOADER": "BOOTLOADERS",
    "NVRAM": "BINREGION",
    "PRO_INFO": "PROTECTED",
    "PROTECT_F": "PROTECTED",
    "PROTECT_S": "PROTECTED",
    "BMTPOOL": "RESERVED",
    "RSV_BMTPOOL": "RESERVED",
}

_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}"
_OLD_REGION_RE = re.compile(rf"^\s*({_NAME})\s+(0[xX][0-9A-Fa-f]+)\s*(\{{.*)?$")
_V1_LINE_RE = re.compile(r"^(\s*)(-\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*?)\s*$")
_PLATFORM_RE = re.compile(r"(MT\d{4}[A-Z]?)", re.IGNORECASE)
_INDEX_RE = re.compile(r"^([A-Za-z]{0,8})(\d{1,4})$")
_HEX_RE = re.compile(r"^0[xX][0-9A-Fa-f]+$")


class Partition(BaseModel):
    """One scatter entry with both what the file says and what we derived from it."""

    name: str  # without the __NODL_ prefix
    raw_name: str  # as written in the file
    index: int
    linear_start: int
    size: int | None  # None = runs to the end of the device (last partition, old format)
    is_download: bool
    is_marker: bool = False  # BMTPOOL: a pool-size marker, not a real region
    region: str = REGION_USER
    physical_start: int | None = None  # offset inside `region`; None for markers
    file_name: str | None = None
    type: str = "NONE"
    operation_type: str = "UPDATE"
    storage: str = "HW_STORAGE_EMMC"
    boundary_check: bool = True
    is_reserved: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)  # unknown keys / old-format block body
    # How the file spelled its numbers (case, padding), so a rewrite diffs cleanly. Not part
    # of the partition's identity: excluded from dumps and from equality.
    spelling: dict[str, str] = Field(default_factory=dict, repr=False, exclude=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Partition):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]  # mutable model: not hashable

    @property
    def end(self) -> int | None:
        """First linear address after the partition (None when open-ended or a marker)."""
        if self.size is None or self.is_marker:
            return None
        return self.linear_start + self.size

    @property
    def is_placeholder(self) -> bool:
        """Not a real place on the storage: a marker, or a reserved entry whose address is
        an 0xFFFFxxxx placeholder. SP Flash Tool never checks these against neighbours."""
        return self.is_marker or (self.is_reserved and self.linear_start >= PLACEHOLDER_FLOOR)

    @property
    def in_boot_region(self) -> bool:
        return self.region.upper() in BOOT_REGIONS

    @property
    def marker_blocks(self) -> int | None:
        """BMTPOOL's pool size in blocks (the low 16 bits of its pseudo-address)."""
        return self.linear_start & 0xFFFF if self.is_marker else None


class StorageLayout(BaseModel):
    """One `- storage_type:` block of a V2.x scatter: its header and its partitions."""

    storage_type: str  # EMMC | UFS | NAND …
    general: dict[str, str] = Field(default_factory=dict)  # MTK_STORAGE_CFG keys, in order
    partitions: list[Partition]
    physical_in_file: bool = True


class Layout(BaseModel):
    """A parsed scatter file: platform, format and the partitions in file order."""

    platform: str | None
    format: Literal["old", "v1", "v2"]
    partitions: list[Partition]
    storages: list[StorageLayout] = Field(default_factory=list)  # V2: every storage block
    storage_type: str | None = None  # V2: the block `partitions` comes from
    skipped: list[str] = Field(default_factory=list)  # odd items left out, with the reason
    source: str = ""
    general: dict[str, str] = Field(default_factory=dict)  # V1 `general`/`info` keys, in order
    physical_in_file: bool = True  # V1: False when the file left physical_start_addr at 0
    preamble: str = ""  # old format: raw text before the first region (comments)
    trailer: str = ""  # old format: raw text after the last block (usually blank lines)
    newline: str = "\n"

    def get(self, name: str) -> Partition | None:
        """Partition by name, case-insensitive, with or without the `__NODL_` prefix."""
        key = _strip_nodl(name).upper()
        for part in self.partitions:
            if part.name.upper() == key:
                return part
        return None

    @property
    def all_partitions(self) -> list[Partition]:
        """Partitions of every storage block (V2), else the same as `partitions`."""
        if not self.storages:
            return list(self.partitions)
        return [p for st in self.storages for p in st.partitions]

    def for_storage(self, storage_type: str) -> Layout:
        """The same layout with `partitions` taken from another V2 storage block."""
        for st in self.storages:
            if st.storage_type.upper() == storage_type.upper():
                return self.model_copy(update={"partitions": st.partitions,
                                               "storage_type": st.storage_type,
                                               "physical_in_file": st.physical_in_file})
        have = ", ".join(st.storage_type for st in self.storages) or "none (not a V2 file)"
        raise UsageError(f"the scatter has no {storage_type} layout (it has: {have})",
                         hint="pick one of the storage types the scatter lists")

    @property
    def real_partitions(self) -> list[Partition]:
        """Partitions that occupy storage (everything except markers such as BMTPOOL)."""
        return [p for p in self.partitions if not p.is_marker]

    @property
    def download_partitions(self) -> list[Partition]:
        return [p for p in self.partitions if p.is_download and not p.is_marker]


def _strip_nodl(name: str) -> str:
    return name[len(NODL):] if name.upper().startswith(NODL) else name


def _bad(source: str, line: int | None, message: str) -> FirmwareFormatError:
    where = f"{source or '<scatter>'}" + (f":{line}" if line else "")
    return FirmwareFormatError(f"{where}: {message}", hint=_HINT,
                               details={"file": source, "line": line})


def platform_from_name(filename: str) -> str | None:
    """`MT6589_Android_scatter_emmc.txt` → "MT6589" (old files carry no header)."""
    m = _PLATFORM_RE.search(Path(filename).name)
    return m.group(1).upper() if m else None


def _parse_int(text: str, source: str, line: int, what: str) -> int:
    if not _HEX_RE.match(text):
        raise _bad(source, line, f"{what} {text!r} is not a 0x hex number")
    value = int(text, 16)
    if value > MAX_ADDRESS:
        raise _bad(source, line, f"{what} {text} overflows 64 bits")
    return value


def _num_text(value: int, spelled: str | None) -> str:
    """Keep the file's own spelling (case, zero padding) while the value is unchanged."""
    if spelled is not None and _HEX_RE.match(spelled) and int(spelled, 16) == value:
        return spelled
    return f"0x{value:x}"


# -- old format --------------------------------------------------------------------------------


def _parse_old(text: str, source: str) -> Layout:
    lines = text.splitlines(keepends=True)
    entries: list[tuple[str, int, str, list[str], int]] = []  # raw, addr, addr text, body, line
    preamble_end = 0
    last_block_end = 0
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith(("#", "//", ";")):
            if not entries:
                preamble_end = i + 1
            i += 1
            continue
        m = _OLD_REGION_RE.match(stripped)
        if not m:
            raise _bad(source, i + 1, f"expected 'NAME 0xADDRESS', got {stripped[:60]!r}")
        raw, addr_text, rest = m.group(1), m.group(2), m.group(3)
        addr = _parse_int(addr_text, source, i + 1, "address")
        start_line = i + 1
        if rest is None:  # the usual shape: '{' on the next non-blank line
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            if i >= len(lines) or not lines[i].strip().startswith("{"):
                raise _bad(source, start_line, f"region {raw} has no '{{' block")
            rest = lines[i].strip()
        body, i = _read_block(lines, i, rest, source, start_line, raw)
        entries.append((raw, addr, addr_text, body, start_line))
        last_block_end = i
        if len(entries) > MAX_PARTITIONS:
            raise _bad(source, start_line, f"more than {MAX_PARTITIONS} regions")
    if not entries:
        raise _bad(source, None, "no partitions found (empty or not a scatter file)")
    newline = "\r\n" if "\r\n" in text else "\n"
    partitions = _old_partitions(entries, source)
    return Layout(
        platform=platform_from_name(source),
        format="old",
        partitions=partitions,
        source=source,
        preamble="".join(lines[:preamble_end]),
        trailer="".join(lines[last_block_end:]),
        newline=newline,
    )


def _read_block(lines: list[str], i: int, first: str, source: str, start_line: int,
                raw: str) -> tuple[list[str], int]:
    """Skip a `{ … }` block (possibly nested) opening on line i; return body and next line.

    Android scatters leave the body empty; feature-phone ones put content inside, which we
    keep verbatim so that writing the file back does not lose it.
    """
    body: list[str] = []
    depth = 1
    segment = first.split("{", 1)[1]
    while True:
        for pos, ch in enumerate(segment):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    if segment[:pos].strip():
                        body.append(segment[:pos].strip())
                    if segment[pos + 1:].strip():
                        raise _bad(source, i + 1, f"region {raw}: text after the closing '}}'")
                    return body, i + 1
        if segment.strip():
            body.append(segment.rstrip("\r\n"))
        i += 1
        if i >= len(lines):
            raise _bad(source, start_line, f"region {raw}: block not closed with '}}'")
        segment = lines[i]


def _old_partitions(entries: list[tuple[str, int, str, list[str], int]],
                    source: str) -> list[Partition]:
    seen: dict[str, int] = {}
    for raw, _addr, _t, _b, line in entries:
        key = _strip_nodl(raw).upper()
        if key in seen:
            raise _bad(source, line, f"duplicate partition {raw} (first at line {seen[key]})")
        seen[key] = line
    markers = [_strip_nodl(raw).upper() in MARKER_NAMES for raw, *_ in entries]
    real = [e for e, mk in zip(entries, markers, strict=True) if not mk]
    user_base = MT6589_USER_OFFSET
    if len(real) >= 2 and _strip_nodl(real[0][0]).upper() == "PRELOADER" and real[0][1] == 0:
        user_base = real[1][1]
    # Sizes are implicit: a region runs up to the next real region's start (reference §1a).
    real_idx = [k for k, mk in enumerate(markers) if not mk]
    next_start: dict[int, int | None] = {
        k: entries[real_idx[j + 1]][1] if j + 1 < len(real_idx) else None
        for j, k in enumerate(real_idx)}
    parts: list[Partition] = []
    for idx, (entry, marker) in enumerate(zip(entries, markers, strict=True)):
        raw, addr, addr_text, body, _line = entry
        name = _strip_nodl(raw)
        upper = name.upper()
        download = not raw.upper().startswith(NODL)
        size: int | None = None
        region = REGION_USER
        physical: int | None = None
        if not marker:
            nxt = next_start[idx]
            size = None if nxt is None else max(0, nxt - addr)
            if addr < user_base:
                region, physical = REGION_BOOT1, addr
            else:
                physical = addr - user_base
        if upper == "PRELOADER":
            ptype = "SV5_BL_BIN"
        elif download:
            ptype = "NORMAL_ROM"
        else:
            ptype = "NONE"
        op = _OLD_OPERATION.get(upper, "UPDATE" if download else "INVISIBLE")
        parts.append(Partition(
            name=name, raw_name=raw, index=idx, linear_start=addr, size=size,
            is_download=download and not marker, is_marker=marker, region=region,
            physical_start=physical, type=ptype, operation_type=op,
            boundary_check=not marker, is_reserved=marker,
            extra={"body": body} if body else {},
            spelling={"linear_start_addr": addr_text},
        ))
    return parts


def _write_old(layout: Layout) -> str:
    nl = layout.newline
    out: list[str] = []
    for part in layout.partitions:
        raw = part.raw_name
        if _strip_nodl(raw) != part.name or raw.upper().startswith(NODL) == part.is_download:
            raw = part.name if part.is_download else NODL + part.name
        addr = _num_text(part.linear_start, part.spelling.get("linear_start_addr"))
        out.append(f"{raw} {addr}")
        out.append("{")
        out.extend(str(b) for b in part.extra.get("body", []))
        out.append("}")
    return layout.preamble + nl.join(out) + nl + layout.trailer


# -- V1.1.x YAML-like format ------------------------------------------------------------------

_V1_KNOWN = (
    "partition_index", "partition_name", "file_name", "is_download", "type",
    "linear_start_addr", "physical_start_addr", "partition_size", "region", "storage",
    "boundary_check", "is_reserved", "operation_type",
)


def _parse_bool(text: str, source: str, line: int, key: str) -> bool:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    raise _bad(source, line, f"{key} must be true or false, got {text[:40]!r}")


_Item = dict[str, tuple[str, int]]


class _Block:
    """A storage block while reading: its header keys and its partition items."""

    def __init__(self, storage_type: str | None, line: int) -> None:
        self.storage_type = storage_type
        self.line = line
        self.general: dict[str, str] = {}
        self.items: list[tuple[int, _Item]] = []


def _parse_v1(text: str, source: str, storage: str | None = None) -> Layout:
    """V1.1.x and V2.x: the same `key: value` items, V2 nests them under storage blocks."""
    general: dict[str, str] = {}
    blocks: list[_Block] = [_Block(None, 0)]
    current: _Item | None = None
    mode = "none"  # general | storage-header | items
    total = 0
    for n, raw_line in enumerate(text.splitlines(), start=1):
        stripped = raw_line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _V1_LINE_RE.match(raw_line)
        if not m:
            raise _bad(source, n, f"expected 'key: value', got {stripped[:60]!r}")
        indent, dash, key, value = m.group(1), m.group(2), m.group(3), m.group(4)
        if dash and not indent:  # a new top-level item
            current = None
            if key == "general":
                mode = "general"
                general["general"] = value
                continue
            if key == "storage_type":
                if not value:
                    raise _bad(source, n, "storage_type without a value")
                if blocks[-1].storage_type is None and not blocks[-1].items:
                    blocks.pop()
                elif blocks[-1].storage_type is None:
                    raise _bad(source, n, "storage_type block after partitions outside any")
                if any(b.storage_type == value.upper() for b in blocks):
                    raise _bad(source, n, f"second storage_type {value} block")
                blocks.append(_Block(value.upper(), n))
                mode = "storage-header"
                continue
            if key != "partition_index":
                raise _bad(source, n, f"unknown top-level item {key!r}")
        if mode == "general" and not (dash and key == "partition_index"):
            if key != "info" or value:
                if key in general:
                    raise _bad(source, n, f"duplicate general key {key!r}")
                general[key] = value
            continue
        block = blocks[-1]
        if key == "partition_index" and dash:
            mode = "items"
            current = {}
            block.items.append((n, current))
            total += 1
            if total > MAX_PARTITIONS:
                raise _bad(source, n, f"more than {MAX_PARTITIONS} partitions")
        elif mode == "storage-header":
            if key in ("description", "info") and not value:
                continue
            if key in block.general:
                raise _bad(source, n, f"duplicate storage key {key!r}")
            block.general[key] = value
            continue
        if current is None:
            raise _bad(source, n, f"{key!r} outside any partition item")
        if dash and key != "partition_index":
            raise _bad(source, n, f"unknown item {key!r} inside a storage block")
        if key in current:
            raise _bad(source, n, f"duplicate key {key!r} in this partition")
        current[key] = (value, n)
    skipped: list[str] = []
    built: list[StorageLayout] = []
    for block in blocks:
        parts: list[Partition] = []
        lines: list[int] = []
        for line, item in block.items:
            part = _v1_partition(item, line, source, skipped)
            if part is not None:
                parts.append(part)
                lines.append(line)
        _check_unique(parts, lines, source)
        built.append(StorageLayout(storage_type=block.storage_type or "",
                                   general=block.general, partitions=parts,
                                   physical_in_file=_v1_physical(parts)))
    if not any(st.partitions for st in built):
        raise _bad(source, None, "no partitions found (empty or not a scatter file)")
    platform = general.get("platform") or platform_from_name(source)
    newline = "\r\n" if "\r\n" in text else "\n"
    if blocks[0].storage_type is None:  # V1.1.x: one unnamed block
        _only_storage(general.get("storage") or "EMMC", storage)
        return Layout(platform=platform.upper() if platform else None, format="v1",
                      partitions=built[0].partitions, source=source, general=general,
                      physical_in_file=built[0].physical_in_file, newline=newline,
                      skipped=skipped)
    layout = Layout(platform=platform.upper() if platform else None, format="v2",
                    partitions=[], storages=built, source=source, general=general,
                    newline=newline, skipped=skipped)
    want = storage or ("EMMC" if any(st.storage_type == "EMMC" for st in built)
                       else built[0].storage_type)
    return layout.for_storage(want)


def _only_storage(have: str, want: str | None) -> None:
    """A one-layout file asked for another storage's layout: say so, never ignore it."""
    if want is not None and want.upper() != have.upper():
        raise UsageError(f"the scatter has no {want.upper()} layout (it has: {have.upper()}; "
                         "only V2.x files carry several)",
                         hint="drop --storage, or use a V2.x scatter that has that layout")


def _v1_partition(item: _Item, line: int, source: str, skipped: list[str]) -> Partition | None:
    """One partition item; None (and a note in `skipped`) for an item SP Flash Tool would
    not show either (an empty partition_name), so one odd item does not block the file."""
    def need(key: str) -> tuple[str, int]:
        if key not in item:
            raise _bad(source, line, f"partition item lacks {key!r}")
        return item[key]

    idx_text, idx_line = need("partition_index")
    m = _INDEX_RE.match(idx_text)
    if not m:
        raise _bad(source, idx_line, f"partition_index {idx_text[:40]!r} is not SYS<n>")
    name, name_line = item.get("partition_name", ("", line))
    if not name:
        skipped.append(f"line {line}: item {idx_text} has no partition_name; left out")
        return None
    if not re.fullmatch(_NAME, name):
        raise _bad(source, name_line, f"bad partition_name {name[:40]!r}")
    start_text, start_line = need("linear_start_addr")
    start = _parse_int(start_text, source, start_line, "linear_start_addr")
    size_text, size_line = need("partition_size")
    size = _parse_int(size_text, source, size_line, "partition_size")
    marker = _strip_nodl(name).upper() in MARKER_NAMES
    if not marker and start + size > MAX_ADDRESS + 1:
        raise _bad(source, size_line, f"{name}: start + size overflows 64 bits")
    spelling = {"linear_start_addr": start_text, "partition_size": size_text,
                "partition_index": m.group(1)}
    phys = 0
    if "physical_start_addr" in item:
        ptext, pline = item["physical_start_addr"]
        phys = _parse_int(ptext, source, pline, "physical_start_addr")
        spelling["physical_start_addr"] = ptext
    file_name: str | None = None
    if "file_name" in item:
        fn, fline = item["file_name"]
        if fn and fn.upper() != "NONE":
            if "/" in fn or "\\" in fn or fn in (".", "..") or "\x00" in fn:
                raise _bad(source, fline, f"file_name {fn[:40]!r} is not a plain file name")
            file_name = fn
    flags = {}
    for key, default in (("is_download", file_name is not None), ("boundary_check", True),
                         ("is_reserved", False)):
        flags[key] = (_parse_bool(item[key][0], source, item[key][1], key)
                      if key in item else default)
    extra = {k: v for k, (v, _) in item.items() if k not in _V1_KNOWN}
    return Partition(
        name=_strip_nodl(name), raw_name=name, index=int(m.group(2)), linear_start=start,
        size=size, is_download=flags["is_download"] and not marker, is_marker=marker,
        region=item.get("region", (REGION_USER, 0))[0] or REGION_USER,
        physical_start=None if marker else phys, file_name=file_name,
        type=item.get("type", ("NONE", 0))[0] or "NONE",
        operation_type=item.get("operation_type", ("UPDATE", 0))[0] or "UPDATE",
        storage=item.get("storage", ("HW_STORAGE_EMMC", 0))[0] or "HW_STORAGE_EMMC",
        boundary_check=flags["boundary_check"], is_reserved=flags["is_reserved"],
        extra=extra, spelling=spelling,
    )


def _check_unique(parts: list[Partition], lines: list[int], source: str) -> None:
    seen: dict[str, int] = {}
    for part, line in zip(parts, lines, strict=True):
        key = part.name.upper()
        if key in seen:
            raise _bad(source, line, f"duplicate partition {part.raw_name} "
                                     f"(first at line {seen[key]})")
        seen[key] = line


def _v1_physical(parts: list[Partition]) -> bool:
    """Fill `physical_start`; return whether the file's own physical addresses were used.

    Early V1.1 files (the MT6582 sample) leave physical_start_addr at 0 everywhere; then the
    offset is the linear address minus the first linear address of the same region.
    """
    by_region: dict[str, list[Partition]] = {}
    for part in parts:
        if not part.is_marker:
            by_region.setdefault(part.region, []).append(part)
    zeros = any(len(ps) > 1 and all(p.physical_start == 0 for p in ps)
                for ps in by_region.values())
    if not zeros:
        return True
    for ps in by_region.values():
        base = min(p.linear_start for p in ps)
        for p in ps:
            p.physical_start = p.linear_start - base
    return False


def _item_fields(part: Partition, physical_in_file: bool) -> list[tuple[str, str]]:
    sp = part.spelling
    phys = part.physical_start if physical_in_file else 0
    return [
        ("partition_index", f"{sp.get('partition_index', 'SYS')}{part.index}"),
        ("partition_name", part.raw_name if _strip_nodl(part.raw_name) == part.name
         else part.name),
        ("file_name", part.file_name or "NONE"),
        ("is_download", "true" if part.is_download else "false"),
        ("type", part.type),
        ("linear_start_addr", _num_text(part.linear_start, sp.get("linear_start_addr"))),
        ("physical_start_addr", _num_text(phys or 0, sp.get("physical_start_addr"))),
        ("partition_size", _num_text(part.size or 0, sp.get("partition_size"))),
        ("region", part.region),
        ("storage", part.storage),
        ("boundary_check", "true" if part.boundary_check else "false"),
        ("is_reserved", "true" if part.is_reserved else "false"),
        ("operation_type", part.operation_type),
        *[(k, str(v)) for k, v in part.extra.items() if k != "body"],
    ]


_BAR = "#" * 108


def _banner(title: str) -> list[str]:
    return [_BAR, "#", f"#  {title}", "#", _BAR]


def _general_lines(general: dict[str, str], default: str, pad: str) -> list[str]:
    out = [f"{pad}- general: {general.get('general', default)}", f"{pad}  info: "]
    info = [(k, v) for k, v in general.items() if k != "general"]
    for k, (key, value) in enumerate(info):
        out.append(f"{pad}{'    - ' if k == 0 else '      '}{key}: {value}")
    return out


def _write_v1(layout: Layout) -> str:
    nl = layout.newline
    general = dict(layout.general)
    if not general and layout.format == "old":  # converting: write the usual header
        general = {"general": "MTK_PLATFORM_CFG", "config_version": "V1.1.1",
                   **({"platform": layout.platform} if layout.platform else {}),
                   "storage": "EMMC"}
    out: list[str] = []
    if general:
        out += _banner("General Setting") + _general_lines(general, "MTK_PLATFORM_CFG", "")
    out += _banner("Layout Setting")
    for part in layout.partitions:
        fields = _item_fields(part, layout.physical_in_file)
        out.append(f"- {fields[0][0]}: {fields[0][1]}")
        out.extend(f"  {k}: {v}" for k, v in fields[1:])
        out.append("")
    return nl.join(out) + nl


def _write_v2(layout: Layout) -> str:
    """V2.x text: the general block, then one storage block each (the one in use taken from
    `layout.partitions`, so edits to it are written)."""
    nl = layout.newline
    out = _banner("General Setting") + _general_lines(layout.general, "MTK_PLATFORM_CFG", "")
    for st in layout.storages:
        parts = layout.partitions if st.storage_type == layout.storage_type else st.partitions
        physical = (layout.physical_in_file if st.storage_type == layout.storage_type
                    else st.physical_in_file)
        out += _banner(f"{st.storage_type} Layout Setting")
        out += [f"- storage_type: {st.storage_type}", "  description: "]
        if st.general:
            out += _general_lines(st.general, "MTK_STORAGE_CFG", "  ")
        out.append("")
        for part in parts:
            fields = _item_fields(part, physical)
            out.append(f"  - {fields[0][0]}: {fields[0][1]}")
            out.extend(f"    {k}: {v}" for k, v in fields[1:])
            out.append("")
    return nl.join(out) + nl


# -- public entry points ----------------------------------------------------------------------


def parse_scatter_text(text: str, filename: str = "", *, storage: str | None = None
                       ) -> Layout:
    """Parse scatter text of any format; `filename` names it in errors and gives the platform.

    `storage` picks the block of a V2.x file that `partitions` holds (default: EMMC, else
    the first). Only `FirmwareFormatError` (and `UsageError` for an absent `storage`)
    escapes, whatever the input.
    """
    if len(text) > MAX_SCATTER_BYTES:
        raise _bad(filename, None, f"{len(text)} characters is far too large for a scatter file")
    if "\x00" in text:
        raise _bad(filename, None, "contains NUL bytes: this is a binary file, not a scatter")
    text = text.lstrip("\ufeff")
    head = next((ln.strip() for ln in text.splitlines()
                 if ln.strip() and not ln.strip().startswith("#")), "")
    if head.startswith("- "):
        return _parse_v1(text, filename, storage)
    _only_storage("EMMC", storage)
    return _parse_old(text, filename)


def parse_scatter(path: Path | str, *, storage: str | None = None) -> Layout:
    """Read and parse a scatter file from disk (`storage`: see `parse_scatter_text`)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_SCATTER_BYTES:
            raise _bad(str(p), None, f"{size} bytes is far too large for a scatter file")
        data = p.read_bytes()
    except OSError as exc:
        raise FirmwareFormatError(f"cannot read scatter file {p}: {exc.strerror or exc}",
                                  hint="check the path and permissions", spft_code=5044) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return parse_scatter_text(text, str(p), storage=storage)


def write_scatter(layout: Layout, format: Literal["old", "v1", "v2"] | None = None) -> str:
    """Scatter text for `layout` in its own format (or the one asked for; a V2 file written
    as V1 keeps only the storage block in use)."""
    fmt = format or layout.format
    if fmt == "old":
        return _write_old(layout)
    if fmt == "v2":
        if not layout.storages:
            raise UsageError("only a V2.x scatter can be written as V2.x",
                             hint="write it in its own format, or as v1")
        return _write_v2(layout)
    return _write_v1(layout)


def find_scatter(folder: Path | str) -> Path:
    """The scatter file of a firmware folder (`*_scatter*.txt`, case-insensitive)."""
    d = Path(folder)
    try:
        found = sorted(p for p in d.iterdir()
                       if p.is_file() and "scatter" in p.name.lower()
                       and p.name.lower().endswith(".txt"))
    except OSError as exc:
        raise UsageError(f"cannot list {d}: {exc.strerror or exc}",
                         hint="pass the firmware folder (the one holding *_scatter*.txt)") from exc
    if not found:
        raise UsageError(f"no scatter file in {d}",
                         hint="pass the firmware folder (the one holding *_scatter*.txt)")
    if len(found) > 1:
        android = [p for p in found if "android_scatter" in p.name.lower()]
        if len(android) == 1:
            return android[0]
        names = ", ".join(p.name for p in found)
        raise UsageError(f"several scatter files in {d}: {names}",
                         hint="keep only the scatter of the build you want to flash")
    return found[0]
