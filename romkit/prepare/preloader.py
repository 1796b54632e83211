"""The preloader step: reading a preloader from a file, BOOT1 dump or zip/7z, refusing one
made for another chip, finding the build's own preloader in an earlier record (for
`--device-year 2013`), fetching the catalog's 2014 preloader, and planning the swap with the
memory parts it adds or drops.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path, PurePosixPath

import py7zr
from py7zr.io import BytesIOFactory

from romkit.errors import (
    ArchiveError,
    DiskError,
    FirmwareFormatError,
    RomkitError,
    UsageError,
    ValidationError,
)
from romkit.fetch import archive
from romkit.firmware.package import PLATFORM_EMI_VERSION, Firmware
from romkit.firmware.preloader import (
    EMMC_BOOT_MAGIC,
    GFH_MAGIC,
    MAX_PRELOADER_FILE,
    PreloaderInfo,
    compare_preloaders,
    from_boot1_image,
    parse_preloader,
    read_limited,
)
from romkit.prepare.context import _Context
from romkit.prepare.files import _hash_bytes, _rel, _sha, _size
from romkit.prepare.models import (
    PartInfo,
    PlanStep,
    PreloaderChange,
    PrepareConflictError,
    PreparePlan,
)
from romkit.prepare.record import _records

_CHIP_RE = re.compile(r"MT\d{4}", re.IGNORECASE)


def _preloader_from_archive(path: Path) -> tuple[bytes, str]:
    """The one `preloader*.bin` inside a zip/7z, read with the archive module's checks."""
    fmt, members = archive.list_members(path)
    found = [m for m in members if not m.is_dir
             and PurePosixPath(m.name).name.lower().startswith("preloader")
             and m.name.lower().endswith(".bin")]
    if not found:
        raise ArchiveError(f"{path.name} holds no preloader*.bin",
                           hint="pass the preloader file itself with --preloader")
    if len(found) > 1:
        names = ", ".join(m.name for m in found[:5])
        raise UsageError(f"{path.name} holds several preloaders: {names}",
                         hint="extract the one for your phone and pass it with --preloader")
    member = found[0]
    if member.size > MAX_PRELOADER_FILE:
        raise FirmwareFormatError(f"{member.name} in {path.name} is {member.size} bytes: far "
                                  "too large for a preloader", spft_code=5066,
                                  hint="check you passed the right archive")
    try:
        if fmt == "zip":
            with zipfile.ZipFile(path) as zf:
                info = next(i for i in zf.infolist()
                            if archive.clean_name(i.filename) == member.name)
                with zf.open(info) as fh:
                    data = fh.read(MAX_PRELOADER_FILE + 1)
        else:
            with py7zr.SevenZipFile(path, mode="r") as sz:
                original = next(f.filename for f in sz.files
                                if archive.clean_name(f.filename) == member.name)
                factory = BytesIOFactory(MAX_PRELOADER_FILE + 1)
                sz.extract(targets=[original], factory=factory)
                product = factory.get(original)
                product.seek(0)
                data = product.read()
    except RomkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile archives break decoders in many ways
        raise ArchiveError(f"{path.name} is corrupt or unreadable ({type(exc).__name__})",
                           hint="get the archive again, or extract the preloader yourself"
                           ) from exc
    if len(data) != member.size:
        raise ArchiveError(f"{member.name} in {path.name} is not the size the archive says",
                           hint="the archive is corrupt or hostile; get another copy")
    return data, f"{path.name}:{member.name}"


def load_preloader_source(path: Path) -> tuple[bytes, PreloaderInfo, str]:
    """(raw preloader bytes, parsed info, description) from a preloader file, a BOOT1 dump,
    or a zip/7z holding one. A BOOT1 dump is unwrapped: firmware folders hold the raw form."""
    if not path.is_file():
        raise UsageError(f"preloader file not found: {path}",
                         hint="pass the 2014 preloader (.bin, or the .zip/.7z it came in)")
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise DiskError(f"cannot read {path}: {exc.strerror or exc}",
                        hint="check the path and its permissions") from exc
    if head.startswith((GFH_MAGIC, EMMC_BOOT_MAGIC)):
        data, what = read_limited(path, MAX_PRELOADER_FILE), path.name
    else:
        try:
            archive.detect_format(path)
        except ArchiveError as exc:
            raise FirmwareFormatError(
                f"{path.name} is not a preloader: no GFH header (and not a zip/7z holding one)",
                spft_code=5066,
                hint="pass the preloader_<project>.bin file, or the archive it came in") from exc
        data, what = _preloader_from_archive(path)
    info = parse_preloader(data)
    if info.form == "boot1":
        data = from_boot1_image(data)
        info = parse_preloader(data)
        what += " (unwrapped from a BOOT1 image)"
    return data, info, what


def _check_preloader_platform(info: PreloaderInfo, platform: str | None, name: str) -> None:
    """Refuse a preloader that says it belongs to another chip than the scatter's."""
    if info.emi_version is None:
        raise FirmwareFormatError(
            f"{name} has no MTK_BLOADER_INFO (EMI) table: the memory parts it can start are "
            "unknown", spft_code=5054, hint="use a complete preloader made for this phone")
    if platform is None:
        return
    want = PLATFORM_EMI_VERSION.get(platform.upper())
    if want is not None and info.emi_version != want:
        raise ValidationError(
            f"{name} carries EMI table v{info.emi_version}; {platform} preloaders carry v{want}"
            " - it is for another chip",
            hint="use the preloader made for this phone (e.g. the catalog's preloader-2014)")
    m = _CHIP_RE.search(info.project)
    if m and m.group(0).upper() != platform.upper():
        raise ValidationError(
            f"{name} is a preloader for {m.group(0).upper()} (project {info.project}), but this "
            f"firmware is for {platform}", hint="use the preloader made for this phone")


def _parts(info: PreloaderInfo) -> list[PartInfo]:
    return [PartInfo.of(e) for e in info.active_entries()]


def _preloader_target(fw: Firmware, new_project: str) -> Path:
    """Where the preloader goes: the file the scatter binds now (its name is kept)."""
    if fw.preloader_path is not None:
        return fw.preloader_path
    part = fw.layout.get("PRELOADER")
    if part is None:
        raise UsageError("this scatter has no PRELOADER partition",
                         hint="check the folder holds an MT6589 phone firmware")
    if part.file_name:
        return fw.folder / part.file_name
    name = PurePosixPath(new_project).name
    ok = name.lower().startswith("preloader") and name.lower().endswith(".bin")
    return fw.folder / (name if ok else "preloader.bin")


def _original_preloader(folder: Path, rel: str) -> tuple[bytes, str] | None:
    """The build's own preloader: the first backup a (not undone) record took of it."""
    for rec, man in _records(folder):
        if man.undone:
            continue
        for step in man.steps:
            if step.path == rel and step.before_sha256 and step.backup:
                data = (rec / step.backup).read_bytes()
                if _hash_bytes(data) != step.before_sha256:
                    raise PrepareConflictError(
                        f"the backup of {rel} in {rec.name} does not match its manifest",
                        hint="the record is damaged; restore the preloader from the archive")
                return data, rec.name
    return None


def _plan_preloader(ctx: _Context, plan: PreparePlan) -> tuple[PlanStep | None, str | None]:
    """The preloader step (None if nothing to do) and the PRELOADER checksum key to update."""
    req, fw, rep = ctx.request, ctx.fw, ctx.rep
    if req.device_year == 2013:
        current = fw.preloader_path
        if current is None:
            plan.notes.append("--device-year 2013: the folder has no preloader file to keep")
            return None, None
        rel = _rel(fw.folder, current)
        original = _original_preloader(fw.folder, rel)
        if original is None:
            plan.notes.append(f"--device-year 2013: {rel} is the build's own preloader "
                              "(no prepare record replaced it); nothing to do")
            return None, None
        data, record = original
        info = parse_preloader(data)
        source = f"the build's own preloader (backup in prepare record {record})"
    elif req.preloader is not None or req.device_year == 2014:
        path = req.preloader if req.preloader is not None else _download_2014(ctx)
        data, info, source = load_preloader_source(path)
        _check_preloader_platform(info, fw.layout.platform, source)
    else:
        return None, None
    target = _preloader_target(fw, info.project)
    rel = _rel(fw.folder, target)
    before = _sha(target)
    after = _hash_bytes(data)
    change = PreloaderChange(file=rel, source=source, new_parts=_parts(info),
                             new_project=info.project, new_emi_version=info.emi_version,
                             unchanged=before == after)
    if target.is_file():
        try:
            cur = parse_preloader(read_limited(target, MAX_PRELOADER_FILE))
            cmp = compare_preloaders(cur, info)
            change.current_parts = _parts(cur)
            change.added = [PartInfo.of(e) for e in cmp.only_b]
            change.dropped = [PartInfo.of(e) for e in cmp.only_a]
        except RomkitError as exc:
            change.current_note = f"current {rel} is unreadable: {exc.message}"
    else:
        change.current_note = f"{rel} does not exist yet"
    plan.preloader = change
    binding = fw.binding("PRELOADER")
    others = [p.name for p in (binding.alternatives if binding else []) if p != target]
    if others:
        plan.warnings.append(f"the folder also holds {', '.join(others)}: SP Flash Tool may "
                             f"load one of those instead of {rel}; move them out of the folder")
    if change.dropped:
        names = ", ".join(p.part for p in change.dropped)
        plan.warnings.append(f"the new preloader drops memory parts the current one supports: "
                             f"{names} (phones with those parts would not start)")
    if change.unchanged:
        plan.notes.append(f"{rel} already is this preloader; nothing to swap")
        return None, None
    rep.info(f"preloader: {rel} <- {source}")
    step = PlanStep(kind="preloader", action="replace" if before else "create", path=rel,
                    reason="swap the preloader for one that lists this phone's memory part"
                    if req.device_year != 2013 else "restore the build's own preloader",
                    source=source, before_sha256=before, before_size=_size(target),
                    after_sha256=after, after_size=len(data))
    step._data = data
    part = fw.layout.get("PRELOADER")
    return step, part.raw_name if part is not None else "PRELOADER"


def _download_2014(ctx: _Context) -> Path:
    """The catalog's 2014 preloader for this device, through the verified download path."""
    from romkit.fetch.service import download_resource

    device = ctx.device()
    resource = ctx.catalog.resource_for(device.id, "preloader", 2014)
    if resource is None:
        raise UsageError(f"the catalog knows no 2014 preloader for {device.id}",
                         hint="pass the preloader file with --preloader FILE")
    if not resource.mirrors:
        raise UsageError(
            f"the catalog has no download address for {resource.id}",
            hint=f"pass the file with --preloader FILE, or add a mirror: "
                 f"`romkit catalog add-mirror {resource.id} URL`")
    ctx.rep.info(f"fetching {resource.id} for {device.id} (units made in 2014)")
    return download_resource(resource, on_progress=ctx.rep.callback)
