"""The flash plan: every operation a run will perform, decided and checked before any write.

Bricked phones in forum threads share a pattern: a tool started writing and only then found
that an image did not fit, the layout had changed or the preloader could not bring up DRAM.
romkit decides everything first. `build_plan` needs no phone (firmware + options: selection,
missing/oversized images, checksum.ini, the preloader's EMI table, calibration safety);
`check_device` adds what only the phone can tell (hw code, storage size, its PMT) and
produces the final ordered operations. Both refuse with a `ValidationError` listing every
finding at once (with its SP Flash Tool code), so the user fixes everything in one go.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from romkit.device import protocol as P
from romkit.errors import (
    DiskError,
    FirmwareFormatError,
    LayoutChangedError,
    UsageError,
    ValidationError,
)
from romkit.firmware.checksum import read_checksum_ini
from romkit.firmware.chips import require_flash_support
from romkit.firmware.preloader import load_preloader, to_boot1_image
from romkit.firmware.scatter import REGION_BOOT1, REGION_USER, Layout, Partition
from romkit.flash.backup import CALIBRATION_PARTS, StorageRange
from romkit.flash.streams import digest_bytes, digest_file, digest_sparse
from romkit.progress import Reporter

Mode = Literal["download-only", "firmware-upgrade", "format-all"]
MODES: tuple[str, ...] = get_args(Mode)
OpKind = Literal["backup", "format", "write", "verify", "pmt", "restore"]

# hw code the BROM reports for each scatter platform (MT6589 famously reports 0x6583).
PLATFORM_HW_CODES: dict[str, int] = {
    "MT6589": 0x6583, "MT6583": 0x6583, "MT6582": 0x6582, "MT6572": 0x6572,
    "MT6577": 0x6577, "MT6575": 0x6575, "MT6592": 0x6592, "MT6580": 0x6580,
    "MT6571": 0x6571, "MT6595": 0x6595, "MT6735": 0x0321, "MT6752": 0x0337,
    "MT8127": 0x8127, "MT8163": 0x8163, "MT8167": 0x8167,
}

SPFT_FILE_NOT_LOADED = 5007
SPFT_REGION_OVERLAP = 5016
SPFT_PMT_NO_SPACE = 5069
SPFT_CHECKSUM_FAIL = 8416
SPFT_PLATFORM_ERROR = 8200
SPFT_LAYOUT_CHANGED_V3 = 8038
SPFT_ROM_MUST_ENABLE = 8502
SPFT_PMT_UNAVAILABLE = 8503

# Friendly names users type for --only/--skip, besides partition names and image stems.
ALIASES: dict[str, str] = {
    "boot": "BOOTIMG", "system": "ANDROID", "userdata": "USRDATA", "data": "USRDATA",
    "lk": "UBOOT", "uboot": "UBOOT", "secro": "SEC_RO", "preloader": "PRELOADER",
}


class PlanOptions(BaseModel):
    """What the user asked for (the CLI's options, minus how to reach the phone)."""

    mode: Mode = "download-only"
    only: list[str] = Field(default_factory=list)
    skip: list[str] = Field(default_factory=list)
    verify: bool = True
    backup: bool = True
    erase_calibration_ok: bool = False


class Finding(BaseModel):
    """One reason to refuse, with the SP Flash Tool code a user would search for."""

    code: int | None = None
    partition: str | None = None
    message: str


class Slot(BaseModel):
    """A scatter partition reduced to what planning needs (name, place, role)."""

    name: str
    region: str
    offset: int  # physical offset inside `region`
    linear: int
    size: int | None  # None: runs to the end of the user area
    download: bool
    operation_type: str = "UPDATE"


class PmtRow(BaseModel):
    name: str
    offset: int  # linear (scatter) address
    size: int


class ImageInfo(BaseModel):
    """A selected image: where it goes and the digest of exactly the bytes to be written."""

    partition: str
    source: str
    region: str
    offset: int
    length: int
    sha256: str
    sum16: int
    boot1: bool = False  # raw preloader, wrapped by to_boot1_image before writing
    # An Android sparse image: `length`, `sha256` and `sum16` are of the *expanded* bytes (what
    # the phone gets and the read-back must equal); `stored_size` is the file's own size.
    sparse: bool = False
    stored_size: int | None = None


class Operation(BaseModel):
    kind: OpKind
    partition: str
    region: str
    offset: int
    length: int | None  # None only offline: "to the end of the user area"
    source: str | None = None
    sha256: str | None = None
    sum16: int | None = None
    boot1: bool = False
    sparse: bool = False  # source is an Android sparse image, expanded while streaming
    stored_size: int | None = None  # the sparse file's size (length is the expanded size)
    note: str = ""


class DeviceFacts(BaseModel):
    """What the connected phone told us; `pmt` None = not read, [] = no valid PMT."""

    hw_code: int
    cid: str
    boot1_size: int
    user_size: int
    pmt: list[PmtRow] | None = None


class FlashPlan(BaseModel):
    firmware_dir: str
    scatter: str
    platform: str | None
    preloader: str
    options: PlanOptions
    slots: list[Slot]
    images: list[ImageInfo]
    calibration: list[StorageRange]
    operations: list[Operation]
    device: DeviceFacts | None = None
    warnings: list[str] = Field(default_factory=list)
    # rows SP Flash Tool leaves unticked (no image, no file rule: Lenovo's PRELOAD): no
    # mode writes or formats them — README: "romkit never writes PRELOAD unless you choose
    # an image"
    untouched: list[str] = Field(default_factory=list)

    @property
    def mode(self) -> str:
        return self.options.mode

    @property
    def write_bytes(self) -> int:
        return sum(i.length for i in self.images)

    def slot(self, name: str) -> Slot | None:
        key = name.upper()
        return next((s for s in self.slots if s.name.upper() == key), None)

    def expected_pmt(self) -> list[PmtRow]:
        """The PMT this layout implies (docs/PROTOCOL.md "PMT on eMMC"): last size 0."""
        rows = [PmtRow(name=s.name, offset=s.linear, size=s.size or 0) for s in self.slots]
        if rows:
            rows[-1] = PmtRow(name=rows[-1].name, offset=rows[-1].offset, size=0)
        return rows


# -- helpers ----------------------------------------------------------------------------------
def _slots(layout: Layout) -> list[Slot]:
    out: list[Slot] = []
    for p in layout.real_partitions:
        out.append(Slot(name=p.name, region=p.region, offset=p.physical_start or 0,
                        linear=p.linear_start, size=p.size, download=p.is_download,
                        operation_type=p.operation_type))
    return out


def _resolve_names(names: Iterable[str], layout: Layout,
                   images: dict[str, Path]) -> tuple[set[str], list[str]]:
    """Map what the user typed (partition, image stem or alias) to partition names."""
    by_key: dict[str, str] = {}
    for p in layout.real_partitions:
        by_key[p.name.lower()] = p.name
    for name, path in images.items():
        by_key.setdefault(Path(path).stem.lower(), name)
        by_key.setdefault(Path(path).name.lower(), name)
    for alias, target in ALIASES.items():
        part = layout.get(target)
        if part is not None:
            by_key.setdefault(alias, part.name)
    found: set[str] = set()
    unknown: list[str] = []
    for raw in names:
        for item in raw.split(","):
            key = item.strip().lower()
            if not key:
                continue
            if key in by_key:
                found.add(by_key[key])
            else:
                unknown.append(item.strip())
    return found, unknown


def _select(fw: Any, opts: PlanOptions) -> list[Partition]:
    layout: Layout = fw.layout
    candidates = layout.download_partitions
    only, bad_only = _resolve_names(opts.only, layout, fw.images)
    skip, bad_skip = _resolve_names(opts.skip, layout, fw.images)
    if bad_only or bad_skip:
        valid = ", ".join(p.name for p in candidates)
        raise UsageError(f"unknown partition name(s): {', '.join(bad_only + bad_skip)}",
                         hint=f"use scatter names or image names; downloadable: {valid}")
    not_dl = sorted(n for n in only if not any(p.name == n for p in candidates))
    if not_dl:
        raise UsageError(f"{', '.join(not_dl)} cannot be downloaded (marked __NODL_ in the "
                         "scatter)", hint="calibration partitions are handled by "
                         "`romkit backup` / `romkit restore`")
    chosen = [p for p in candidates if (not only or p.name in only) and p.name not in skip
              and (p.name in only or not _optional_without_image(fw, p))]
    if not chosen:
        raise UsageError("nothing selected to flash",
                         hint="check --only / --skip against the scatter's partitions")
    return chosen


def _optional_without_image(fw: Any, part: Partition) -> bool:
    """A row SP Flash Tool leaves unticked: no file rule (e.g. PRELOAD) or file_name NONE."""
    if part.name in fw.images:
        return False
    binding = fw.binding(part.name) if hasattr(fw, "binding") else None
    if binding is None:
        return False
    return binding.rule == "no-image-rule" or (binding.rule == "file_name"
                                               and binding.partition.file_name is None)


def _calibration_from_slots(slots: list[Slot]) -> list[StorageRange]:
    out: list[StorageRange] = []
    for name in CALIBRATION_PARTS:
        s = next((x for x in slots if x.name.upper() == name), None)
        if s is not None and s.size:
            out.append(StorageRange(name=s.name, region=s.region, offset=s.offset,
                                    length=s.size))
    return out


def _calibration_from_pmt(pmt: list[PmtRow]) -> list[StorageRange]:
    out: list[StorageRange] = []
    for name in CALIBRATION_PARTS:
        row = next((r for r in pmt if r.name.upper() == name), None)
        if row is not None and row.size and row.offset >= P.MT6589_USER_OFFSET:
            out.append(StorageRange(name=row.name, region=REGION_USER,
                                    offset=row.offset - P.MT6589_USER_OFFSET, length=row.size))
    return out


def _checksum_findings(fw: Any, images: list[ImageInfo], file_sums: dict[str, int],
                       warnings: list[str]) -> list[Finding]:
    """checksum.ini rows for the images we write must match the files (SP Flash Tool 8416).

    Like SP Flash Tool v5: no file or CHECKSUM_SWITCH=0 skips the check; a missing key fails.
    """
    path = getattr(fw, "checksum_path", None)
    if path is None:
        warnings.append("no checksum.ini in the folder: images checked by sha256 only")
        return []
    ini = read_checksum_ini(path)
    if not ini.enabled:
        warnings.append("checksum.ini has CHECKSUM_SWITCH=0: its values were not checked")
        return []
    out: list[Finding] = []
    for img in images:
        hit = ini.lookup(img.partition)
        got = file_sums[img.partition]
        if hit is None:
            out.append(Finding(code=SPFT_CHECKSUM_FAIL, partition=img.partition,
                               message=f"checksum.ini has no entry for {img.partition}"))
        elif hit[1] & 0xFFFF != got:
            out.append(Finding(code=SPFT_CHECKSUM_FAIL, partition=img.partition,
                               message=f"{Path(img.source).name}: checksum.ini says "
                                       f"0x{hit[1]:04X}, the file sums to 0x{got:04X}"))
    return out


def _refuse(findings: list[Finding], what: str) -> ValidationError:
    codes = [f.code for f in findings if f.code is not None]
    first = findings[0]
    hints = {
        SPFT_FILE_NOT_LOADED: "put the missing image in the folder or leave it out with "
                              "--skip NAME",
        SPFT_REGION_OVERLAP: "the image does not fit its partition: use the scatter file "
                             "that belongs to these images",
        SPFT_CHECKSUM_FAIL: "images differ from checksum.ini: re-unpack the firmware, or "
                            "if you replaced a file on purpose run `romkit prepare` to "
                            "regenerate checksum.ini",
        SPFT_PLATFORM_ERROR: "this firmware is for another chip: use the firmware for this "
                             "phone",
        SPFT_PMT_NO_SPACE: "the layout needs more storage than this phone has: use the "
                           "firmware for this phone's storage size",
    }
    hint = hints.get(codes[0], "fix the findings listed and run again") if codes else (
        "fix the findings listed and run again")
    more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
    return ValidationError(f"{what}: {first.message}{more}", hint=hint,
                           spft_code=codes[0] if codes else None, findings=findings)


# -- offline part -----------------------------------------------------------------------------
def build_plan(fw: Any, opts: PlanOptions, on_progress: Reporter | None = None) -> FlashPlan:
    """Plan a run from the firmware folder alone (no phone needed)."""
    rep = on_progress or Reporter()
    layout: Layout = fw.layout
    require_flash_support(layout.platform)  # a V5/V6-DA chip: refuse before anything else
    chosen = _select(fw, opts)
    findings: list[Finding] = []
    warnings: list[str] = []

    pre_path = getattr(fw, "preloader_path", None)
    if pre_path is None:
        findings.append(Finding(code=SPFT_FILE_NOT_LOADED, partition="PRELOADER",
                                message="no preloader file in the folder: its EMI table is "
                                        "needed to bring up DRAM even if PRELOADER is not "
                                        "flashed"))
    else:
        info = load_preloader(pre_path)  # FirmwareFormatError when unusable
        if not info.emi_blob:
            raise FirmwareFormatError(f"{Path(pre_path).name} carries no EMI table",
                                      hint="use the preloader of the firmware for this phone",
                                      spft_code=5054)

    images: list[ImageInfo] = []
    file_sums: dict[str, int] = {}
    total = sum(_file_size(fw.images[p.name]) for p in chosen if p.name in fw.images)
    rep.start("hash", "checking images", total)
    hashed = 0
    for part in chosen:
        path = fw.images.get(part.name)
        if path is None or not Path(path).is_file():
            findings.append(Finding(code=SPFT_FILE_NOT_LOADED, partition=part.name,
                                    message=f"{part.name} is selected but has no image file"))
            continue
        path = Path(path)
        img_info = fw.image_info(part.name) if hasattr(fw, "image_info") else None
        boot1 = part.region == REGION_BOOT1 and part.name.upper() == "PRELOADER"
        sparse = img_info is not None and img_info.sparse is not None
        stored: int | None = None
        if sparse and boot1:
            findings.append(Finding(code=SPFT_FILE_NOT_LOADED, partition=part.name,
                                    message=f"{path.name} is an Android sparse image, not a "
                                            "preloader"))
            continue
        expands = img_info.expanded_size if img_info is not None and sparse else 0
        if part.size is not None and expands > part.size:
            # refused from the header alone: walking gigabytes of DONT_CARE to hash zeros
            # would only delay the answer
            words = _size_words(expands, _file_size(path))
            findings.append(Finding(code=SPFT_REGION_OVERLAP, partition=part.name,
                                    message=f"{path.name} {words}, larger than {part.name} "
                                            f"({part.size} bytes)"))
            continue
        if sparse:
            # The MT6589 legacy DA writes the bytes it is sent, so romkit expands the image
            # on the fly (engine); planning walks every chunk once, so a damaged file is
            # refused here, and digests the expanded stream the read-back must equal.
            # checksum.ini sums the file as stored (spft-formats.md §2b) — same pass.
            (sha, s16, length), (_fsha, file_s16, stored) = digest_sparse(path)
            file_sums[part.name] = file_s16
            hashed += stored
        else:
            sha, s16, length = digest_file(path)
            file_sums[part.name] = s16
            hashed += length
        rep.update("hash", hashed, total)
        if boot1:
            try:
                wrapped = to_boot1_image(path.read_bytes())
            except OSError as exc:
                raise DiskError(f"cannot read {path}: {exc.strerror or exc}",
                                hint="check the file's permissions") from exc
            sha, _s, length = digest_bytes(wrapped)
            s16 = _s
        if part.size is not None and length > part.size:
            findings.append(Finding(code=SPFT_REGION_OVERLAP, partition=part.name,
                                    message=f"{path.name} {_size_words(length, stored)}, "
                                            f"larger than {part.name} ({part.size} bytes)"))
        images.append(ImageInfo(partition=part.name, source=str(path), region=part.region,
                                offset=part.physical_start or 0, length=length, sha256=sha,
                                sum16=s16, boot1=boot1, sparse=sparse, stored_size=stored))
    rep.end("hash")
    findings += _checksum_findings(fw, images, file_sums, warnings)

    if opts.mode != "download-only" and not opts.backup and not opts.erase_calibration_ok:
        findings.append(Finding(
            partition="NVRAM",
            message=f"--mode {opts.mode} with --no-backup would erase IMEI/calibration with "
                    "no copy: drop --no-backup, or add --i-understand-this-erases-calibration"))
    if not opts.backup:
        warnings.append("--no-backup: calibration (NVRAM/PROTECT_F/PROTECT_S/PRO_INFO) will "
                        "NOT be saved before writing")
    if opts.mode != "download-only" and (opts.only or opts.skip):
        left = [p.name for p in layout.download_partitions if p not in chosen]
        if left:
            warnings.append(f"--mode {opts.mode} formats the phone: {', '.join(left)} will "
                            "be left empty")
    unticked = [p.name for p in layout.download_partitions
                if _optional_without_image(fw, p) and p not in chosen]
    if unticked:
        warnings.append(f"no image for {', '.join(unticked)} (SP Flash Tool has no file rule "
                        "for it): not written")
    if findings:
        raise _refuse(findings, "pre-flight check refused")

    slots = _slots(layout)
    plan = FlashPlan(
        firmware_dir=str(getattr(fw, "folder", "")), scatter=str(layout.source),
        platform=layout.platform, preloader=str(pre_path), options=opts, slots=slots,
        images=images, calibration=_calibration_from_slots(slots), operations=[],
        warnings=warnings, untouched=unticked)
    plan.operations = assemble(plan)
    return plan


def _size_words(length: int, stored: int | None) -> str:
    """"is N bytes", or for a sparse image "expands to N bytes (sparse file of M)": the
    expanded size is what must fit, and the user sees a much smaller file on disk."""
    if stored is None:
        return f"is {length} bytes"
    return f"expands to {length} bytes (Android sparse image, {stored} bytes as stored)"


def _file_size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


# -- device part ------------------------------------------------------------------------------
def _layout_diff(expected: list[PmtRow], device: list[PmtRow]) -> list[str]:
    """Differences between the scatter's user-area partitions and the phone's PMT."""
    def user(rows: list[PmtRow]) -> dict[str, PmtRow]:
        return {r.name.upper(): r for r in rows if r.offset >= P.MT6589_USER_OFFSET}

    want, have = user(expected), user(device)
    diffs: list[str] = []
    for name, row in want.items():
        got = have.get(name)
        if got is None:
            diffs.append(f"{row.name} is not on the phone")
        elif (got.offset, got.size) != (row.offset, row.size):
            diffs.append(f"{row.name}: phone 0x{got.offset:X}+0x{got.size:X}, scatter "
                         f"0x{row.offset:X}+0x{row.size:X}")
    diffs += [f"{have[n].name} is on the phone but not in the scatter" for n in have
              if n not in want]
    return diffs


def check_device(plan: FlashPlan, facts: DeviceFacts, *,
                 layout_erased_by_romkit: bool = False) -> FlashPlan:
    """Check the plan against the connected phone; return the final plan or refuse.

    `layout_erased_by_romkit`: the phone's journal says an unfinished format-mode run of
    romkit erased its PMT. A firmware upgrade then goes on with the scatter's layout (it
    writes the PMT anyway) instead of stopping with 8503 — that stop was a dead end, since the
    calibration it told the user to back up was already erased.
    """
    findings: list[Finding] = []
    want_hw = PLATFORM_HW_CODES.get((plan.platform or "").upper())
    if want_hw is not None and want_hw != facts.hw_code:
        findings.append(Finding(code=SPFT_PLATFORM_ERROR,
                                message=f"the scatter is for {plan.platform} (hw code "
                                        f"0x{want_hw:04X}) but the phone reports hw code "
                                        f"0x{facts.hw_code:04X}"))
    elif want_hw is None:
        plan.warnings.append(f"unknown platform {plan.platform!r}: hw code not checked")

    for s in plan.slots:
        if s.region != REGION_USER:
            continue
        end = s.offset + (s.size if s.size is not None else 1)
        if end > facts.user_size:
            findings.append(Finding(code=SPFT_PMT_NO_SPACE, partition=s.name,
                                    message=f"{s.name} ends at user offset 0x{end:X} but the "
                                            f"phone's user area is 0x{facts.user_size:X} bytes"))
            break
    for img in plan.images:
        limit = _room(plan, img, facts)
        if limit is not None and img.length > limit:
            findings.append(Finding(code=SPFT_REGION_OVERLAP, partition=img.partition,
                                    message=f"{Path(img.source).name} "
                                            f"{_size_words(img.length, img.stored_size)}, "
                                            f"{img.partition} has room for {limit} on this "
                                            "phone"))
    if findings:
        raise _refuse(findings, "the phone does not fit this firmware")

    mode = plan.options.mode
    if mode != "format-all":
        if facts.pmt is not None and not facts.pmt:
            if mode == "firmware-upgrade" and layout_erased_by_romkit:
                plan.warnings.append("no partition table on the phone: the interrupted run "
                                     "erased it; continuing with the scatter's layout")
            else:
                raise LayoutChangedError(
                    "the phone has no valid partition table (PMT)",
                    hint="a blank or damaged phone needs `--mode format-all`, then `romkit "
                         "restore` (it picks the newest backup set whose calibration is not "
                         "blank; `romkit restore --list` shows them)",
                    spft_code=SPFT_PMT_UNAVAILABLE)
        if mode == "download-only" and facts.pmt:
            diffs = _layout_diff(plan.expected_pmt(), facts.pmt)
            if diffs:
                raise LayoutChangedError(
                    f"the phone's partition layout differs from the scatter ({diffs[0]}"
                    f"{f'; +{len(diffs) - 1} more' if len(diffs) > 1 else ''}); download-only "
                    f"would corrupt it (SP Flash Tool v5: {SPFT_ROM_MUST_ENABLE})",
                    hint="use `--mode firmware-upgrade`: it backs up calibration, rewrites "
                         "the layout and restores calibration",
                    spft_code=SPFT_LAYOUT_CHANGED_V3, details={"differences": diffs})
    if facts.pmt:
        plan.calibration = _calibration_from_pmt(facts.pmt) or plan.calibration
    plan.device = facts
    plan.operations = assemble(plan)
    if mode == "firmware-upgrade" and plan.options.backup:
        _check_restore_fits(plan)
    return plan


def _room(plan: FlashPlan, img: ImageInfo, facts: DeviceFacts) -> int | None:
    if img.region == REGION_BOOT1:
        return facts.boot1_size - img.offset
    slot = plan.slot(img.partition)
    if slot is not None and slot.size is None:
        return max(0, facts.user_size - slot.offset)
    return None


def _check_restore_fits(plan: FlashPlan) -> None:
    """A calibration backup must fit where the new layout puts its partition."""
    findings: list[Finding] = []
    for op in plan.operations:
        if op.kind != "restore":
            continue
        slot = plan.slot(op.partition)
        room = _slot_length(plan, slot) if slot is not None else 0
        if room is None or room < (op.length or 0):
            findings.append(Finding(code=SPFT_REGION_OVERLAP, partition=op.partition,
                                    message=f"{op.partition} shrinks in the new layout: its "
                                            "calibration backup would not fit"))
    if findings:
        raise _refuse(findings, "calibration cannot be carried over")


# -- operations -------------------------------------------------------------------------------
def _end_of_user(plan: FlashPlan) -> int | None:
    return plan.device.user_size if plan.device is not None else None


def _slot_length(plan: FlashPlan, s: Slot) -> int | None:
    if s.size is not None:
        return s.size
    end = _end_of_user(plan)
    return None if end is None else max(0, end - s.offset)


def pmt_table_length(plan: FlashPlan) -> int:
    return P.PMT_HEADER_SIZE + len(plan.expected_pmt()) * P.PMT_ENTRY_SIZE


def _image_op(kind: OpKind, img: ImageInfo, note: str) -> Operation:
    if img.sparse and kind == "write":
        note = (f"Android sparse image ({img.stored_size} bytes as stored) expanded while "
                "writing; DONT_CARE blocks written as zeros")
    return Operation(kind=kind, partition=img.partition, region=img.region, offset=img.offset,
                     length=img.length, source=img.source, sha256=img.sha256, sum16=img.sum16,
                     boot1=img.boot1, sparse=img.sparse, stored_size=img.stored_size,
                     note=note)


def assemble(plan: FlashPlan) -> list[Operation]:
    """Ordered operations for the plan's mode (see module doc and spft-formats.md §4)."""
    opts = plan.options
    ops: list[Operation] = []
    if opts.backup:
        ops += [Operation(kind="backup", partition=c.name, region=c.region, offset=c.offset,
                          length=c.length, note="calibration backup") for c in plan.calibration]
    written = {i.partition for i in plan.images}
    if opts.mode == "format-all":
        ops.append(Operation(kind="format", partition="(user area)", region=REGION_USER,
                             offset=0, length=_end_of_user(plan),
                             note="whole user area, calibration included"))
    elif opts.mode == "firmware-upgrade":
        for s in plan.slots:
            if (s.region == REGION_USER and s.name not in written
                    and s.name not in plan.untouched):
                ops.append(Operation(kind="format", partition=s.name, region=s.region,
                                     offset=s.offset, length=_slot_length(plan, s)))
    for img in plan.images:
        ops.append(_image_op("write", img, "preloader with EMMC_BOOT/BRLYT header"
                             if img.boot1 else ""))
        if opts.verify:
            ops.append(_image_op("verify", img, "read back: sum16 + sha256"))
    if opts.mode != "download-only":
        pmt = plan.slot("PMT")
        if pmt is not None:
            ops.append(Operation(kind="pmt", partition=pmt.name, region=pmt.region,
                                 offset=pmt.offset, length=pmt_table_length(plan),
                                 note="new partition table from the scatter"))
    if opts.mode == "firmware-upgrade" and opts.backup:
        for c in plan.calibration:
            target = plan.slot(c.name)
            if target is not None:
                ops.append(Operation(kind="restore", partition=c.name, region=target.region,
                                     offset=target.offset, length=c.length,
                                     note="from this run's backup, verified by readback"))
    return ops
