"""The modem step: deciding whether the build expects plain or `_1_3g_n` modem names (catalog,
build.prop, file listings, the system image), checking the modem against the chip, and
planning the renamed copies, the removal of stale ones and the README saying where each goes.
"""

from __future__ import annotations

from pathlib import Path

from romkit.errors import UsageError
from romkit.firmware import modem as md
from romkit.fsutil import sha256_file
from romkit.prepare.context import _Context, _display
from romkit.prepare.files import _hash_bytes, _rel, _sha, _size
from romkit.prepare.models import ModemChange, PlanStep, PreparePlan

MODEM_DIR = "modem"
MODEM_README = "README.txt"
SEARCH_CHUNK = 16 * 1024 * 1024
_KITKAT_MARKER = b"modem_1_3g_n.img"
_LISTING_FILES = ("installed-files.txt",)


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


def _plan_modem(ctx: _Context, plan: PreparePlan) -> list[PlanStep]:
    req, fw = ctx.request, ctx.fw
    src = req.modem
    if src is None:
        return []
    if not src.is_dir():
        raise UsageError(f"modem folder not found: {src}",
                         hint="pass the folder holding modem.img, catcher_filter.bin, "
                              "BPLGUInfo* and DbgInfo*")
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
        change.header = md.read_modem_header(src / image.source)
        md.check_modem_platform(change.header, fw.layout.platform, image.source)
        if change.header is None or not change.header.check_header:
            plan.warnings.append(f"{image.source} has no CHECK_HEADER trailer: its platform "
                                 "could not be checked")
        elif (naming == "1_3g_n" and change.header.image_type_name
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
