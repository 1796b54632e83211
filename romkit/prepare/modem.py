"""The modem step: installing a modem set into the build's system.img (ext4, raw or Android
sparse), with the names the image's own set has and the attributes of the files it replaces;
its checksum.ini entry regenerated and the old image kept in the prepare record for --undo.

A folder whose system image is not ext4 (or that has none) keeps the older behaviour: the
files are named for the build (catalog, build.prop, listings) into `modem/` with a README, and
a warning says that nothing was installed.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from romkit.errors import UsageError
from romkit.firmware import checksum as ck
from romkit.firmware import modem as md
from romkit.firmware.preloader import read_limited
from romkit.fsutil import sha256_file
from romkit.prepare.checksum_ini import update_checksum_text
from romkit.prepare.context import _Context, _display
from romkit.prepare.files import _hash_bytes, _rel, _sha, _size
from romkit.prepare.models import ModemChange, PlanStep, PreparePlan
from romkit.sysimg import modemset as ms
from romkit.sysimg.ext4 import NotExt4Error

MODEM_DIR = "modem"
MODEM_README = "README.txt"
SEARCH_CHUNK = 16 * 1024 * 1024
_KITKAT_MARKER = b"modem_1_3g_n.img"
_LISTING_FILES = ("installed-files.txt",)
WORK_DIR = ".romkit/modem-work"  # the new system.img waits here until apply copies it in
SystemSum = tuple[str, str, int]  # (partition, checksum.ini key for a new line, 16-bit sum)


def _search_file(path: Path, needle: bytes) -> bool:
    """Whether `needle` occurs in a (possibly huge) file: chunked, overlapping, C-speed find."""
    overlap = len(needle) - 1
    prev = b""
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(SEARCH_CHUNK):
                if needle in prev + chunk:
                    return True
                prev = chunk[-overlap:]
    except OSError:
        return False
    return False


def decide_naming(ctx: _Context) -> tuple[md.Naming, str]:
    """(naming, how it was decided) for `--modem-naming auto`."""
    build = ctx.build()
    if build is not None and build.android:
        naming = md.naming_for_android(build.android)
        if naming is not None:
            return naming, (f"catalog: {build.id} is Android {build.android}"
                            f" ({'KitKat or later' if naming == '1_3g_n' else 'before KitKat'})")
    release = ctx.props.get("ro.build.version.release")
    if release:
        naming = md.naming_for_android(release)
        if naming is not None:
            return naming, f"{ctx.props_file} says ro.build.version.release={release}"
    fw = ctx.fw
    for name in _LISTING_FILES:
        for base in (fw.folder, fw.folder.parent):
            listing = base / name
            if listing.is_file() and _search_file(listing, _KITKAT_MARKER):
                return "1_3g_n", f"{_display(fw.folder, listing)} lists modem_1_3g_n.img"
    firmware_dir = fw.folder / "system" / "etc" / "firmware"
    if (firmware_dir / "modem_1_3g_n.img").is_file():
        return "1_3g_n", "system/etc/firmware/ holds modem_1_3g_n.img"
    system = fw.images.get("ANDROID") or fw.images.get("SYSTEM")
    if system is not None and _search_file(system, _KITKAT_MARKER):
        return "1_3g_n", f"{system.name} contains modem_1_3g_n.img"
    raise UsageError("cannot tell which modem naming this build expects",
                     hint="pass --modem-naming plain (Jelly Bean builds) or 1_3g_n (KitKat)")


def discard_work(folder: Path) -> None:
    """Remove the scratch copy of a new system.img (after apply, or left by a crash)."""
    shutil.rmtree(folder / WORK_DIR, ignore_errors=True)
    try:
        (folder / WORK_DIR).parent.rmdir()  # .romkit/ itself, if nothing else is in it
    except OSError:
        pass


def _system_image(ctx: _Context) -> tuple[str, Path] | None:
    """(partition, path) of the folder's system image when it is ext4 (raw or sparse)."""
    for part in ("ANDROID", "SYSTEM"):
        path = ctx.fw.images.get(part)
        if path is not None and path.is_file() and ms.image_form(path) is not None:
            return part, path
    return None


def _plan_modem(ctx: _Context, plan: PreparePlan) -> tuple[list[PlanStep], SystemSum | None]:
    """The modem steps, and the new checksum of system.img when the set is installed there."""
    req = ctx.request
    src = req.modem
    if src is None:
        return [], None
    if not src.is_dir():
        raise UsageError(f"modem folder not found: {src}",
                         hint="pass the folder holding modem.img, catcher_filter.bin, "
                              "BPLGUInfo* and DbgInfo*")
    system = _system_image(ctx)
    if system is not None:
        try:
            return _plan_install(ctx, plan, src, *system)
        except NotExt4Error as exc:
            discard_work(ctx.fw.folder)
            plan.warnings.append(f"{exc.message}: the modem files were NOT installed, only "
                                 "named into modem/; copy them to the phone by hand")
            return _plan_rename(ctx, plan, src), None
    plan.warnings.append("the folder has no ext4 system image: the modem files were NOT "
                         "installed, only named into modem/; copy them to the phone by hand")
    return _plan_rename(ctx, plan, src), None


def _plan_install(ctx: _Context, plan: PreparePlan, src: Path, part: str, image: Path
                  ) -> tuple[list[PlanStep], SystemSum | None]:
    """Install the set into system.img: the new image is built now (so the plan knows its
    hash and checksum), kept in .romkit/modem-work/ and copied in by apply."""
    req, fw = ctx.request, ctx.fw
    naming = None if req.modem_naming == "auto" else req.modem_naming
    size = image.stat().st_size
    # Build: working copy + result; apply: result + record backup + atomic copy's temp file.
    need = max(ms.work_space_needed(image), 3 * size)
    ms.check_free(fw.folder, need, f"installing the modem set into {image.name} (working "
                                   "copy, backup for --undo, atomic replace)")
    plan.notes.append(f"disk: needs about {ms.mib(need)} free in the firmware folder while "
                      "it runs; the backup for --undo keeps "
                      f"{ms.mib(size)} in .romkit/prepare/")
    rel = _rel(fw.folder, image)
    if req.dry_run:
        result = ms.install_modem(image, src, None, platform=fw.layout.platform,
                                  naming=naming, dry_run=True, on_progress=ctx.rep.callback)
        step = PlanStep(kind="modem", action="replace", path=rel, source=str(src),
                        reason=_install_reason(result), before_size=size)
        _describe(plan, src, result)
        if result.unchanged:
            return [], None
        if fw.checksum_path is not None and not req.drop_checksum:
            plan.notes.append(f"checksum.ini: the {part} entry will be regenerated")
        return [step], None
    discard_work(fw.folder)
    work = fw.folder / WORK_DIR / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    out = work / image.name
    try:
        before = sha256_file(image)
        result = ms.install_modem(image, src, out, platform=fw.layout.platform, naming=naming,
                                  on_progress=ctx.rep.callback)
    except BaseException:
        discard_work(fw.folder)
        raise
    _describe(plan, src, result)
    if result.unchanged:
        discard_work(fw.folder)
        return [], None
    step = PlanStep(kind="modem", action="replace", path=rel, source=str(src),
                    reason=_install_reason(result), before_sha256=before, before_size=size,
                    after_sha256=result.output_sha256, after_size=result.output_size)
    step._source_path = out
    entry = fw.layout.get(part)
    assert result.output_sum16 is not None
    return [step], (part, entry.raw_name if entry is not None else part, result.output_sum16)


def _install_reason(result: ms.ModemInstall) -> str:
    return (f"modem set installed as {result.naming} names in /etc/firmware and /etc/mddb "
            "(owner, mode, times and SELinux labels of the replaced files kept)")


def _describe(plan: PreparePlan, src: Path, result: ms.ModemInstall) -> None:
    renames = [md.Rename(source=f.source, target=f.name, kind=f.kind,
                         phone_dir="/system" + f.directory + "/")
               for f in result.files]
    plan.modem = ModemChange(source_dir=str(src), output_dir=Path(result.image).name,
                             naming=result.naming, how=result.how, header=result.header,
                             files=renames, install=result)
    plan.warnings += result.warnings


def merge_checksum(ctx: _Context, plan: PreparePlan, ck_step: PlanStep | None,
                   system: SystemSum) -> PlanStep | None:
    """Add system.img's new value to checksum.ini, on top of the checksum step (if any)."""
    part, key, value = system
    fw = ctx.fw
    path = fw.checksum_path
    if ctx.request.drop_checksum:
        return ck_step
    if path is None:
        plan.notes.append("no checksum.ini in the folder: SP Flash Tool skips the check; "
                          "nothing to regenerate")
        return ck_step
    raw = ck_step._data if ck_step is not None and ck_step._data is not None else \
        read_limited(path, ck.MAX_INI_BYTES)
    try:
        text, utf8 = raw.decode("utf-8"), True
    except UnicodeDecodeError:
        text, utf8 = raw.decode("latin-1"), False
    ini = ck.parse_checksum_ini_text(text, path.name)
    hit = ini.lookup(part)
    if hit is not None and hit[1] == value:
        return ck_step
    new_text = update_checksum_text(text, {part.upper(): (key, value)})
    data = new_text.encode("utf-8" if utf8 else "latin-1")
    old = f"0x{hit[1]:04X}" if hit else "missing"
    plan.notes.append(f"checksum.ini {hit[0] if hit else key}: {old} -> 0x{value:04X}")
    if ck_step is None:
        ck_step = PlanStep(kind="checksum", action="replace", path=_rel(fw.folder, path),
                           reason="regenerate the entries of the replaced images (16-bit byte "
                                  "sum), keeping the file's format and other entries",
                           source="computed", before_sha256=_hash_bytes(raw),
                           before_size=len(raw))
    ck_step.after_sha256, ck_step.after_size = _hash_bytes(data), len(data)
    ck_step._data = data
    return ck_step


def _plan_rename(ctx: _Context, plan: PreparePlan, src: Path) -> list[PlanStep]:
    """No ext4 system image: name the files for the build into modem/ (older behaviour)."""
    req, fw = ctx.request, ctx.fw
    if req.modem_naming == "auto":
        naming, how = decide_naming(ctx)
    else:
        naming, how = req.modem_naming, "--modem-naming"
    names = [p.name for p in sorted(src.iterdir()) if p.is_file() and not p.name.startswith(".")]
    renames, ignored = md.rename_plan(names, naming)
    if not renames:
        raise UsageError(f"{src} holds no modem files",
                         hint="expected modem.img, catcher_filter.bin, BPLGUInfo*, DbgInfo*")
    out_dir = fw.folder / MODEM_DIR
    change = ModemChange(source_dir=str(src), output_dir=_rel(fw.folder, out_dir),
                         naming=naming, how=how, files=renames, ignored=ignored)
    plan.modem = change
    ctx.rep.info(f"modem naming: {naming} ({how})")
    image = next((r for r in renames if r.kind == "modem"), None)
    if image is None:
        plan.warnings.append("the modem folder holds no modem.img; only the other files are "
                             "renamed")
    else:
        path = src / image.source
        md.read_modem_header(path)  # size limit and readable, as a RomkitError
        with path.open("rb") as fh:  # random bytes are not a modem image, here either
            fh.seek(max(0, path.stat().st_size - md.TRAILER_SEARCH))
            change.header = md.verify_modem_image(fh.read(), path.stat().st_size,
                                                  image.source)
        md.check_modem_platform(change.header, fw.layout.platform, image.source)
        if (naming == "1_3g_n" and change.header.image_type_name
              and change.header.image_type_name != "3g"):
            plan.warnings.append(f"{image.source} says it is a "
                                 f"{change.header.image_type_name.upper()} modem; the _1_3g_n "
                                 "names are for a 3G modem")
    kinds = {r.kind for r in renames}
    missing = [md.KIND_LABELS[k] for k in md.PHONE_DIRS if k not in kinds]
    if missing:
        plan.warnings.append("the modem set lacks: " + ", ".join(missing))
    if not out_dir.is_dir():
        plan.created_dirs.append(change.output_dir)
    steps: list[PlanStep] = []
    targets = {r.target for r in renames}
    for r in renames:
        source = src / r.source
        dest = out_dir / r.target
        after, before = sha256_file(source), _sha(dest)
        if after == before:
            continue
        step = PlanStep(kind="modem", action="replace" if before else "create",
                        path=_rel(fw.folder, dest), source=str(source),
                        reason=f"{md.KIND_LABELS[r.kind]} named for {naming} builds "
                               f"(goes to {r.phone_dir} on the phone)",
                        before_sha256=before, before_size=_size(dest), after_sha256=after,
                        after_size=_size(source))
        step._source_path = source
        steps.append(step)
    if out_dir.is_dir():
        for old in sorted(out_dir.iterdir()):
            if old.is_file() and md.classify(old.name) and old.name not in targets:
                steps.append(PlanStep(
                    kind="modem", action="remove", path=_rel(fw.folder, old),
                    reason=f"not part of the {naming}-named set (a stale or other-naming copy "
                           "would be picked up by mistake)",
                    before_sha256=sha256_file(old), before_size=_size(old)))
    readme = md.readme_text(renames, naming).encode("utf-8")
    readme_path = out_dir / MODEM_README
    if _sha(readme_path) != _hash_bytes(readme):
        step = PlanStep(kind="readme", action="replace" if readme_path.exists() else "create",
                        path=_rel(fw.folder, readme_path), source="generated",
                        reason="where each modem file goes on the phone",
                        before_sha256=_sha(readme_path), before_size=_size(readme_path),
                        after_sha256=_hash_bytes(readme), after_size=len(readme))
        step._data = readme
        steps.append(step)
    return steps
