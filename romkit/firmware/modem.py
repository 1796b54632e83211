"""MT6589 modem files: which names a build expects, and what a modem image says it is for.

Why: forum guides tell people to rename `modem.img` to `modem_1_3g_n.img` by hand, and to keep
the other three files "matching". MediaTek's own modem script (reference spft-formats.md §5)
uses suffix-less names for Jelly Bean-era (ALPS.JB/JB2) builds and `_X_YY_Z` names for KitKat
and later: X = modem system (1 = MD1), YY = image type from the modem header (3g for the
MT6589 W-CDMA modem), Z = `n`. The logger and META tools find catcher_filter / BPLGUInfo /
DbgInfo by name, so the suffix must go on all four kinds of file or on none.

The MT6589 kernel also reads a "CHECK_HEADER" trailer at the end of the modem image and
refuses an image whose platform string (`MT6589_S00`) or 2G/3G type does not fit. romkit reads
that trailer to refuse a modem built for another chip before it is put in a firmware folder.

Everything here is pure: names in, names out; bytes in, a header out.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from romkit.errors import DiskError, UsageError, ValidationError

ModemKind = Literal["modem", "catcher_filter", "bplguinfo", "dbginfo"]
Naming = Literal["plain", "1_3g_n"]
NAMINGS: tuple[str, ...] = ("plain", "1_3g_n")

# Image type numbers of the modem header and the YY part of the suffix (§5, mtk_modem.pm).
IMAGE_TYPES: dict[int, str] = {
    1: "2g", 2: "3g", 3: "wg", 4: "tg", 5: "lwg", 6: "ltg", 7: "sglte", 8: "ultg", 9: "ulwg",
    10: "ulwtg", 11: "ulwcg", 12: "ulwctg",
}
_SUFFIX_RE = re.compile(
    r"_(?P<md>[1-5])_(?P<type>" + "|".join(sorted(IMAGE_TYPES.values(), key=len, reverse=True))
    + r")_(?P<variant>[ns])$")

# Where each kind of file lives on the phone.
PHONE_DIRS: dict[str, str] = {
    "modem": "/system/etc/firmware/",
    "catcher_filter": "/system/etc/firmware/",
    "bplguinfo": "/system/etc/mddb/",
    "dbginfo": "/system/etc/mddb/",
}
KIND_LABELS: dict[str, str] = {
    "modem": "modem image",
    "catcher_filter": "catcher filter",
    "bplguinfo": "BPLGUInfo database",
    "dbginfo": "DbgInfo database",
}

# CHECK_HEADER trailer, romkit's reading of the MT6589 kernel's MD_CHECK_HEADER [I]:
# char magic[12] "CHECK_HEADER"; u32 header_verno; u32 product_ver; u32 image_type;
# char platform[16]; char build_time[64]; char build_ver[64]; u8 bind_sys_id; u8 ext_attr;
# u8 reserved[2]; u32 mem_size; u32 md_img_size; u32 reserved_info; u32 size (little-endian).
CHECK_HEADER_MAGIC = b"CHECK_HEADER"
CHECK_HEADER = struct.Struct("<12sIII16s64s64sBB2sIIII")
TRAILER_SEARCH = 512  # the trailer sits in the image's last bytes
_PLATFORM_RE = re.compile(rb"MT\d{4}(?:_S\d{2})?")
_CHIP_RE = re.compile(r"MT\d{4}", re.IGNORECASE)
MAX_MODEM_IMAGE = 256 * 1024 * 1024  # MT6589 modem images are ~10-20 MB


@dataclass(frozen=True)
class ModemSuffix:
    """The `_X_YY_Z` part of a KitKat-era modem file name."""

    md: int = 1
    image_type: str = "3g"
    variant: str = "n"

    def __str__(self) -> str:
        return f"_{self.md}_{self.image_type}_{self.variant}"


KITKAT_SUFFIX = ModemSuffix(1, "3g", "n")
_BY_NAMING: dict[str, ModemSuffix | None] = {"plain": None, "1_3g_n": KITKAT_SUFFIX}


@dataclass(frozen=True)
class ModemFileName:
    """A modem-related file name split into kind, stem, optional suffix and extension."""

    name: str
    kind: ModemKind
    stem: str  # "modem", "catcher_filter", "BPLGUInfoCustomAppSrcP_MT6589_S00_…"
    ext: str  # ".img", ".bin" or "" (BPLGUInfo / DbgInfo have none)
    suffix: ModemSuffix | None

    def render(self, suffix: ModemSuffix | None) -> str:
        """This file's name with `suffix` (None = the plain Jelly Bean name)."""
        return f"{self.stem}{suffix or ''}{self.ext}"

    @property
    def phone_dir(self) -> str:
        return PHONE_DIRS[self.kind]


def _split_suffix(base: str) -> tuple[str, ModemSuffix | None]:
    m = _SUFFIX_RE.search(base)
    if m is None:
        return base, None
    return base[:m.start()], ModemSuffix(int(m["md"]), m["type"], m["variant"])


def classify(name: str) -> ModemFileName | None:
    """Which of the four kinds of modem file `name` is, or None for anything else."""
    low = name.lower()
    if "/" in name or "\\" in name:
        return None
    kind: ModemKind
    if low.startswith("bplguinfocustomappsrcp_"):
        kind, ext, base = "bplguinfo", "", name
    elif low.startswith("dbginfo_"):
        kind, ext, base = "dbginfo", "", name
    elif low.endswith(".img") and low.startswith("modem"):
        kind, ext, base = "modem", name[-4:], name[:-4]
    elif low.endswith(".bin") and low.startswith("catcher_filter"):
        kind, ext, base = "catcher_filter", name[-4:], name[:-4]
    else:
        return None
    stem, suffix = _split_suffix(base)
    if suffix is not None and _SUFFIX_RE.search(stem):
        return None  # "…_1_2g_n_1_3g_n": two suffixes, which one is meant is anyone's guess
    if kind == "modem" and stem.lower() != "modem":
        return None  # modem_E1.img (MD1 by chip revision), modem_sys2.img (MD2): not handled
    if kind == "catcher_filter" and stem.lower() != "catcher_filter":
        return None
    if kind in ("bplguinfo", "dbginfo") and len(stem) <= len(stem.split("_", 1)[0]) + 1:
        return None  # a bare "DbgInfo_" names no modem build
    return ModemFileName(name=name, kind=kind, stem=stem, ext=ext, suffix=suffix)


def suffix_for(naming: Naming) -> ModemSuffix | None:
    if naming not in _BY_NAMING:
        raise UsageError(f"unknown modem naming {naming!r}", hint="use plain or 1_3g_n")
    return _BY_NAMING[naming]


def target_name(name: str, naming: Naming) -> str | None:
    """The name `name` must have under `naming`, None if it is not a modem file."""
    parsed = classify(name)
    return parsed.render(suffix_for(naming)) if parsed is not None else None


def naming_for_android(version: str) -> Naming | None:
    """plain for Android before 4.4 (Jelly Bean and older), 1_3g_n from KitKat (4.4) on."""
    m = re.match(r"^\s*(\d{1,2})(?:\.(\d{1,2}))?", version)
    if m is None:
        return None
    major, minor = int(m[1]), int(m[2] or 0)
    return "1_3g_n" if (major, minor) >= (4, 4) else "plain"


class Rename(BaseModel):
    """One file of a modem set: its current name and the name the target build expects."""

    source: str
    target: str
    kind: str
    phone_dir: str


def rename_plan(names: Iterable[str], naming: Naming) -> tuple[list[Rename], list[str]]:
    """(renames for every modem file among `names`, names that are not modem files).

    Two files that would end up with the same name (e.g. `modem.img` next to
    `modem_1_3g_n.img`) are a UsageError: which one the user meant cannot be guessed.
    """
    suffix = suffix_for(naming)
    renames: list[Rename] = []
    ignored: list[str] = []
    by_target: dict[str, str] = {}
    for name in sorted(names):
        parsed = classify(name)
        if parsed is None:
            ignored.append(name)
            continue
        target = parsed.render(suffix)
        if target.lower() in by_target:
            raise UsageError(f"{by_target[target.lower()]} and {name} would both become "
                             f"{target}",
                             hint="keep only one copy of each modem file in the folder")
        by_target[target.lower()] = name
        renames.append(Rename(source=name, target=target, kind=parsed.kind,
                              phone_dir=parsed.phone_dir))
    return renames, ignored


def readme_text(renames: Iterable[Rename], naming: Naming) -> str:
    """The README put next to the renamed files: where each one goes on the phone.

    It depends only on the file set and the naming, so preparing twice writes it once.
    """
    items = list(renames)
    lines = [f"Modem files named for this build ({naming} naming).",
             "Copy them to the phone: modem image and catcher filter to /system/etc/firmware/, "
             "BPLGUInfo* and DbgInfo* to /system/etc/mddb/.", ""]
    lines += [f"{r.target} -> {r.phone_dir}" for r in sorted(items, key=lambda r: r.target)]
    return "\n".join(lines) + "\n"


# -- modem image header ----------------------------------------------------------------------
class ModemHeader(BaseModel):
    """What the modem image's trailer says about the image."""

    check_header: bool  # the CHECK_HEADER magic was found
    platform: str | None = None  # "MT6589_S00"
    chip: str | None = None  # "MT6589"
    image_type: int | None = None
    image_type_name: str | None = None  # "3g"
    header_version: int | None = None
    build_ver: str | None = None
    bind_sys_id: int | None = None

    def describe(self) -> str:
        bits = [self.platform or "platform unknown"]
        if self.image_type_name:
            bits.append(f"{self.image_type_name.upper()} modem")
        if self.build_ver:
            bits.append(self.build_ver)
        return ", ".join(bits)


def _ascii(raw: bytes) -> str | None:
    text = raw.split(b"\x00", 1)[0]
    if not text or not all(0x20 <= b < 0x7F for b in text):
        return None
    return text.decode("ascii")


def parse_modem_trailer(tail: bytes) -> ModemHeader | None:
    """The header found in the last bytes of a modem image, None if there is no trace of one.

    Tolerant on purpose: a field outside its known range is left unknown rather than trusted,
    and a platform string anywhere in the tail counts even without the CHECK_HEADER magic.
    """
    tail = bytes(tail[-TRAILER_SEARCH:])
    pos = tail.rfind(CHECK_HEADER_MAGIC)
    header = ModemHeader(check_header=pos >= 0)
    if pos >= 0 and len(tail) - pos >= CHECK_HEADER.size:
        (_magic, verno, _product, itype, platform, _time, build_ver, bind, _ext, _res,
         *_sizes) = CHECK_HEADER.unpack_from(tail, pos)
        header.header_version = verno if verno < 0x100 else None
        if itype in IMAGE_TYPES:
            header.image_type, header.image_type_name = itype, IMAGE_TYPES[itype]
        plat = _ascii(platform)
        if plat and _PLATFORM_RE.fullmatch(plat.encode()):
            header.platform = plat
        header.build_ver = _ascii(build_ver)
        header.bind_sys_id = bind if 1 <= bind <= 5 else None
    if header.platform is None:
        found = _PLATFORM_RE.findall(tail)
        if found:
            header.platform = found[-1].decode("ascii")
    if header.platform is not None:
        header.chip = header.platform[:6].upper()
    if not header.check_header and header.platform is None:
        return None
    return header


def read_modem_header(path: Path) -> ModemHeader | None:
    """Read only the image's last bytes (images are tens of MB) and parse the trailer."""
    try:
        size = path.stat().st_size
        if size > MAX_MODEM_IMAGE:
            raise UsageError(f"{path.name} is {size} bytes: far too large for an MT6589 modem "
                             "image", hint="check the modem folder you passed")
        with path.open("rb") as fh:
            fh.seek(max(0, size - TRAILER_SEARCH))
            tail = fh.read(TRAILER_SEARCH)
    except OSError as exc:
        raise DiskError(f"cannot read {path}: {exc.strerror or exc}",
                        hint="check the path and its permissions") from exc
    return parse_modem_trailer(tail)


def check_modem_platform(header: ModemHeader | None, platform: str | None, name: str) -> None:
    """Refuse a modem image whose header names another chip than the firmware's scatter."""
    if header is None or header.chip is None or platform is None:
        return
    m = _CHIP_RE.search(platform)
    want = m.group(0).upper() if m else platform.upper()
    if header.chip != want:
        raise ValidationError(
            f"{name} is a modem for {header.platform}, but this firmware is for {want}",
            hint="use the modem files made for this phone's chip; the kernel refuses a modem "
                 "whose CHECK_HEADER platform does not match",
            details={"modem_platform": header.platform, "firmware_platform": want})


# -- strict checks before a modem set goes into a system image -------------------------------
MIN_MODEM_IMAGE = 16 * 1024  # a trailer plus code; real MT6589 images are ~10-20 MB
MAX_SIDE_FILE = 64 * 1024 * 1024  # catcher filter / mddb files are KB to a few MB
_MDDB_PLATFORM_RE = re.compile(r"MT\d{4}_S\d{2}", re.IGNORECASE)


def parse_suffix(text: str) -> ModemSuffix | None:
    """`plain` → None; `1_3g_n` / `_1_wg_n` → the suffix; anything else is a UsageError."""
    if text == "plain":
        return None
    m = _SUFFIX_RE.fullmatch("_" + text.lstrip("_"))
    if m is None:
        raise UsageError(f"unknown modem naming {text!r}",
                         hint="use plain or a suffix such as 1_3g_n or 1_wg_n")
    return ModemSuffix(int(m["md"]), m["type"], m["variant"])


def naming_label(suffix: ModemSuffix | None) -> str:
    """How a naming is shown: `plain` or the suffix without its leading underscore."""
    return "plain" if suffix is None else str(suffix)[1:]


def verify_modem_image(tail: bytes, size: int, name: str) -> ModemHeader:
    """The header of a modem image that is going onto a phone, or a ValidationError.

    Stricter than `parse_modem_trailer`: the CHECK_HEADER must be there and end the file,
    its own size field (the image's last u32) must equal the trailer's length, and the image
    type and platform must be readable. Random bytes or a truncated download fail here
    instead of making the phone lose its radio. Source of the field meaning: MediaTek's
    public ccci kernel headers (`struct md_check_header`, last member `u32 size` = "the size
    of this structure", header versions 1 and 2; the v2 struct is longer, hence `>=`).
    """
    hint = ("this is not an MT65xx modem image (or it is damaged); use the modem.img of a "
            "modem set made for this phone")
    if size < MIN_MODEM_IMAGE or size > MAX_MODEM_IMAGE:
        raise ValidationError(f"{name} is {size} bytes: not the size of a modem image "
                              f"({MIN_MODEM_IMAGE} B to {MAX_MODEM_IMAGE // 2**20} MiB)",
                              hint=hint)
    tail = bytes(tail[-TRAILER_SEARCH:])
    pos = tail.rfind(CHECK_HEADER_MAGIC)
    if pos < 0 or len(tail) < 4:
        raise ValidationError(f"{name} has no CHECK_HEADER trailer", hint=hint)
    (declared,) = struct.unpack_from("<I", tail, len(tail) - 4)
    if declared != len(tail) - pos or declared < CHECK_HEADER.size:
        raise ValidationError(f"{name}: the CHECK_HEADER trailer does not end the file "
                              f"(size field {declared}, found {len(tail) - pos} bytes from "
                              "the end)", hint=hint)
    header = parse_modem_trailer(tail)
    if header is None or header.image_type is None or header.platform is None \
            or header.header_version is None:
        raise ValidationError(f"{name}: the CHECK_HEADER trailer is unreadable (image type, "
                              "platform or version missing)", hint=hint)
    return header


class SetFile(BaseModel):
    """One file of a modem set as the checks see it."""

    kind: str
    name: str
    size: int


def check_modem_set(files: list[SetFile], header: ModemHeader, *,
                    required: Iterable[str] = tuple(PHONE_DIRS),
                    suffix: ModemSuffix | None = None) -> list[str]:
    """Refuse an incomplete or mismatched set; return warnings for what cannot be checked.

    Checks (our reading of how the kernel and the META/logging tools use the files): one
    file per kind, every `required` kind present, side files of plausible size and not a
    modem image themselves, the BPLGUInfo/DbgInfo databases naming the modem's platform and
    - where their names carry it - the modem's build version, and the image type of the
    modem fitting the `_X_YY_Z` suffix it will be installed under.
    """
    warnings: list[str] = []
    by_kind: dict[str, SetFile] = {}
    for f in files:
        if f.kind in by_kind:
            raise ValidationError(f"the modem set holds two {KIND_LABELS[f.kind]} files "
                                  f"({by_kind[f.kind].name}, {f.name})",
                                  hint="keep exactly one file of each kind in the folder")
        by_kind[f.kind] = f
    missing = [KIND_LABELS[k] for k in required if k not in by_kind]
    if missing:
        raise ValidationError("the modem set is incomplete: no " + ", ".join(missing),
                              hint="the build carries these files; a partial set leaves the "
                                   "old ones next to a new modem. Add the missing files")
    for f in by_kind.values():
        if f.kind == "modem":
            continue
        if f.size == 0 or f.size > MAX_SIDE_FILE:
            raise ValidationError(f"{f.name} is {f.size} bytes: not a plausible "
                                  f"{KIND_LABELS[f.kind]}", hint="check the modem folder")
    modem = by_kind.get("modem")
    for f in by_kind.values():
        if f.kind != "modem" and modem is not None and f.size == modem.size:
            warnings.append(f"{f.name} has the same size as {modem.name}: is it a copy?")
    want = (header.platform or "").upper()
    versions = _version_token(header.build_ver)
    carried: dict[str, bool] = {}
    for mddb in (by_kind.get("bplguinfo"), by_kind.get("dbginfo")):
        if mddb is None:
            continue
        f = mddb
        plat = _MDDB_PLATFORM_RE.search(f.name)
        if plat and want and plat.group(0).upper() != want:
            raise ValidationError(f"{f.name} is for {plat.group(0)}, but the modem image "
                                  f"is for {header.platform}",
                                  hint="use the BPLGUInfo/DbgInfo files that came with this "
                                       "modem.img")
        if versions:
            carried[f.name] = f"_{versions}_" in f"_{_norm(f.name)}_"
    if carried and any(carried.values()) and not all(carried.values()):
        odd = ", ".join(n for n, ok in carried.items() if not ok)
        raise ValidationError(f"{odd} does not belong to modem build {header.build_ver}",
                              hint="use the BPLGUInfo/DbgInfo files that came with this "
                                   "modem.img")
    if carried and not any(carried.values()):
        warnings.append(f"the mddb file names do not carry the modem build "
                        f"({header.build_ver}); their pairing with modem.img is unchecked")
    if suffix is not None and header.image_type_name and header.image_type_name != \
            suffix.image_type:
        raise ValidationError(f"the modem image is a {header.image_type_name.upper()} modem, "
                              f"but this build expects a {suffix.image_type.upper()} one "
                              f"(names end in {suffix})",
                              hint="use a modem set of the same type as the build's own")
    if suffix is not None and header.bind_sys_id and header.bind_sys_id != suffix.md:
        raise ValidationError(f"the modem image is for modem system {header.bind_sys_id}, "
                              f"but the build names it for MD{suffix.md} ({suffix})",
                              hint="use a modem set for the same modem system")
    return warnings


def _norm(text: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", text.upper())


def _version_token(build_ver: str | None) -> str:
    """`MOLY.WR8.W1248.MD.WG.MP.V9` → `MOLY_WR8_W1248_MD_WG_MP_V9` (how mddb names carry it)."""
    if not build_ver:
        return ""
    token = _norm(build_ver).strip("_")
    return token if len(token) >= 6 else ""
