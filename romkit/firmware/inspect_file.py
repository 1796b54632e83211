"""Inspect one firmware file: preloader (raw or BOOT1 form) or Download Agent.

`romkit inspect FILE` and `romkit preloader show/compare` share this: detect the kind from
the first bytes (never from the name - users rename files), parse, and return a plain dict
that is both the `--json` document and the input of the text renderers below. The renderers
return strings; printing is the CLI's business.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from romkit.errors import DiskError, FirmwareFormatError, UsageError
from romkit.firmware import chips
from romkit.firmware import da as da_mod
from romkit.firmware import preloader as pl
from romkit.firmware.preloader import read_limited

_SNIFF = 64
MT6589_HW_CODE = 0x6583
MT6589_HW_VER = 0xCA00


def _sniff(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF)
    except IsADirectoryError as exc:
        raise UsageError(f"{path} is a folder", hint="pass a single file here") from exc
    except OSError as exc:
        raise DiskError(f"cannot read {path}: {exc.strerror or exc}",
                        hint="check the path and its permissions") from exc
    if head.startswith((pl.EMMC_BOOT_MAGIC, pl.GFH_MAGIC, pl.BLOADER_MAGIC)):
        return "preloader"  # a bare MTK_BLOADER_INFO block is read as a preloader's table
    if head.startswith(da_mod.DA_MAGIC):
        return "da"
    raise FirmwareFormatError(
        f"{path.name} is neither a preloader, an EMI table nor a Download Agent file",
        hint="pass a preloader_*.bin, a BOOT1 dump, an extracted MTK_BLOADER_INFO table or "
             "MTK_AllInOne_DA.bin (or a firmware folder to `romkit inspect`)",
        details={"path": str(path)})


def parse_cid(text: str) -> bytes:
    """An eMMC CID typed by a user: hex, with optional spaces, colons or dashes (as in
    /sys/block/mmcblk0/device/cid or `romkit preloader show` output)."""
    cleaned = "".join(ch for ch in text.strip() if ch not in " :-_")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        cid = bytes.fromhex(cleaned)
    except ValueError:
        cid = b""
    if not 3 <= len(cid) <= 16:
        raise UsageError(f"{text!r} is not an eMMC CID",
                         hint="give 3 to 16 bytes in hex, e.g. 90014a53494d313448")
    return cid


def _cid_check(info: pl.PreloaderInfo, cid: bytes) -> dict[str, Any]:
    entry = info.matching_entry(cid)
    return {"cid": cid.hex(), "part": pl.describe_part(cid), "supported": entry is not None,
            "entry": None if entry is None else entry.index,
            "fallback": bool(entry is not None and entry.is_fallback)}


def _file_facts(path: Path, data: bytes, kind: str) -> dict[str, Any]:
    return {"path": str(path), "name": path.name, "kind": kind, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def inspect_file(path: Path, *, expect: str | None = None,
                 cid: bytes | None = None) -> dict[str, Any]:
    """Describe a preloader or DA file; `expect` ("preloader" | "da") refuses the other kind,
    `cid` adds whether the preloader supports that memory part."""
    path = Path(path)
    kind = _sniff(path)
    if expect is not None and kind != expect:
        wanted = "a preloader" if expect == "preloader" else "a Download Agent file"
        raise FirmwareFormatError(f"{path.name} is not {wanted} (it looks like a "
                                  f"{'preloader' if kind == 'preloader' else 'DA file'})",
                                  hint="check which file you passed")
    if kind == "preloader":
        data = read_limited(path, pl.MAX_PRELOADER_FILE)
        info = pl.parse_preloader(data)
        result = {**_file_facts(path, data, kind), **info.to_dict()}
        owners = chips.by_emi_version(info.emi_version) if info.emi_version is not None else []
        result["chips"] = [c.name for c in owners]
        if cid is not None:
            result["cid_check"] = _cid_check(info, cid)
        return result
    data = read_limited(path, da_mod.MAX_DA_FILE)
    da = da_mod.parse_da(data, any_protocol=True)
    result = {**_file_facts(path, data, kind), **da.to_dict()}
    try:
        result["mt6589_entry"] = da.select(MT6589_HW_CODE, MT6589_HW_VER).index
    except FirmwareFormatError:
        result["mt6589_entry"] = None
    for entry in result["entries"]:
        chip = chips.by_da_code(entry["hw_code"])
        entry["chip"] = chip.name if chip is not None else None
    return result


def compare_preloader_files(a: Path, b: Path, cid: bytes | None = None) -> dict[str, Any]:
    """Which memory parts preloaders `a` and `b` support, and which only one of them does."""
    info_a = pl.load_preloader(a)
    info_b = pl.load_preloader(b)
    cmp = pl.compare_preloaders(info_a, info_b)
    result: dict[str, Any] = {
        "a": {"path": str(a), "name": Path(a).name, "project": info_a.project,
              "emi_version": info_a.emi_version, "form": info_a.form,
              "synthetic": info_a.synthetic},
        "b": {"path": str(b), "name": Path(b).name, "project": info_b.project,
              "emi_version": info_b.emi_version, "form": info_b.form,
              "synthetic": info_b.synthetic},
        **cmp.to_dict(),
    }
    if cid is not None:
        result["cid_check"] = {"a": _cid_check(info_a, cid), "b": _cid_check(info_b, cid)}
    return result


# -- text rendering --------------------------------------------------------------------------
def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _table(rows: list[list[str]], headers: list[str], indent: str = "  ") -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return [indent + line.rstrip() for line in lines]


def _spaced_hex(hexstr: str) -> str:
    return " ".join(hexstr[i:i + 2] for i in range(0, len(hexstr), 2)) or "(none)"


def _render_cid_check(check: dict[str, Any], who: str = "") -> str:
    subject = f"CID {check['cid']} ({check['part']})"
    if check["supported"]:
        how = "fallback entry" if check["fallback"] else "entry"
        return f"{who}{subject}: supported ({how} {check['entry']})"
    return (f"{who}{subject}: NOT supported - flashing would fail with SP Flash Tool 4032 "
            "and the phone would not boot with this preloader")


def _render_preloader(info: dict[str, Any]) -> list[str]:
    tag = "  [ROMKIT SYNTHETIC test artifact]" if info["synthetic"] else ""
    if info["form"] == "emi":
        lines = [f"{info['name']}: MediaTek EMI table (a bare MTK_BLOADER_INFO block, as "
                 f"extracted from a preloader), {_size(info['size'])}{tag}"]
    else:
        form = ("BOOT1 image (EMMC_BOOT/BRLYT + GFH)" if info["form"] == "boot1"
                else "raw GFH image")
        lines = [f"{info['name']}: MediaTek preloader, {form}, {_size(info['size'])}{tag}",
                 f"  load address   0x{info['load_addr']:08X}   jump offset "
                 f"0x{info['jump_offset']:X}",
                 f"  file length    0x{info['file_len']:X} bytes (signature "
                 f"0x{info['sig_len']:X})",
                 "  GFH blocks     " + (", ".join(b["name"] for b in info["gfh_blocks"]) or "-")]
    if info["emi_version"] is None:
        lines.append("  EMI table      none found (supported memory parts unknown)")
        return lines
    count = info["emi_count"]
    lines.append(f"  EMI table      MTK_BLOADER_INFO_v{info['emi_version']:02d}, project "
                 f"{info['project'] or '-'}, "
                 f"{'?' if count is None else count} entr{'y' if count == 1 else 'ies'}")
    if info.get("chips"):
        lines.append(f"  chip           {'/'.join(info['chips'])} (by EMI table version)")
    if info["emi_note"]:
        lines.append(f"  note           {info['emi_note']}")
    rows = [[str(e["index"]), e["type_name"], str(e["id_length"]), _spaced_hex(e["id"]),
             e["part"]] for e in info["entries"]]
    if rows:
        lines.append("")
        lines += _table(rows, ["#", "memory type", "ID len", "ID bytes", "part"])
    if "cid_check" in info:
        lines += ["", "  " + _render_cid_check(info["cid_check"])]
    return lines


def _render_da(info: dict[str, Any]) -> list[str]:
    tag = "  [ROMKIT SYNTHETIC test artifact]" if info["synthetic"] else ""
    n = len(info["entries"])
    if info.get("protocol") == "v6-xml":
        tag += ("\n  V6 (XML) protocol: shown here, but romkit's engine speaks only the legacy "
                "DA protocol")
    lines = [f"{info['name']}: MediaTek Download Agent \"{info['id_string']}\", {n} "
             f"entr{'y' if n == 1 else 'ies'} of 0x{info['entry_size']:X} bytes, "
             f"{_size(info['size'])}{tag}"]
    pick = info.get("mt6589_entry")
    rows = [[str(e["index"]), f"0x{e['hw_code']:04X}", e.get("chip") or "?",
             f"0x{e['hw_sub_code']:04X}", f"0x{e['hw_version']:04X}",
             f"0x{e['sw_version']:04X}", str(len(e["regions"])),
             "MT6589 uses this" if e["index"] == pick else ""] for e in info["entries"]]
    lines += [""] + _table(rows, ["#", "hw code", "chip", "sub code", "hw ver", "sw ver",
                                  "regions", "note"])
    if pick is None:
        lines += ["", "  no entry for MT6589 (hw code 0x6583): this DA cannot flash an S820"]
        return lines
    entry = info["entries"][pick]
    roles = {1: "stage 1 (SRAM)", 2: "stage 2 (DRAM)"}
    rrows = [[str(i), f"0x{r['offset']:X}", _size(r["length"]), f"0x{r['load_addr']:08X}",
              f"0x{r['sig_len']:X}", roles.get(i, "")] for i, r in enumerate(entry["regions"])]
    lines += ["", f"  regions of entry {pick} (MT6589):"]
    lines += _table(rrows, ["region", "file offset", "length", "load addr", "sig len",
                            "role"], indent="    ")
    return lines


def render_inspect_file(info: dict[str, Any]) -> str:
    """Readable text for the dict `inspect_file` returned."""
    lines = _render_preloader(info) if info["kind"] == "preloader" else _render_da(info)
    return "\n".join(lines)


# `romkit inspect FILE` (romkit/cli/firmware.py) looks the renderer up under this name.
render_text = render_inspect_file


def render_comparison(result: dict[str, Any]) -> str:
    """Readable text for the dict `compare_preloader_files` returned."""
    a, b = result["a"], result["b"]

    def head(tag: str, f: dict[str, Any]) -> str:
        syn = "  [synthetic]" if f["synthetic"] else ""
        return (f"{tag}: {f['name']}  (MTK_BLOADER_INFO_v{f['emi_version']:02d}, project "
                f"{f['project'] or '-'}, {f['form']}){syn}")

    rows = [[p["part"], _spaced_hex(p["id"]), "yes", "yes"] for p in result["both"]]
    rows += [[p["part"], _spaced_hex(p["id"]), "yes", "-"] for p in result["only_a"]]
    rows += [[p["part"], _spaced_hex(p["id"]), "-", "yes"] for p in result["only_b"]]
    lines = [head("A", a), head("B", b), ""]
    lines += _table(rows, ["memory part", "ID bytes", "A", "B"], indent="")
    lines.append("")
    if result["same_parts"]:
        lines.append("Both preloaders support the same memory parts.")
    for key, tag in (("only_a", "A"), ("only_b", "B")):
        if result[key]:
            names = ", ".join(p["part"] for p in result[key])
            lines.append(f"Only {tag} supports: {names}")
    if "cid_check" in result:
        lines += ["", _render_cid_check(result["cid_check"]["a"], "A: "),
                  _render_cid_check(result["cid_check"]["b"], "B: ")]
    return "\n".join(lines)
