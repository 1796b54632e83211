"""The modem set inside a system image: find it, show it, and replace it keeping attributes.

Why: the modem firmware a phone runs lives in the system partition
(`/system/etc/firmware/modem*.img`, `catcher_filter*.bin`, `/system/etc/mddb/BPLGUInfo*`,
`DbgInfo*`); swapping it means rewriting system.img. The names the build expects are read
from the image itself: a Jelly Bean build has `modem.img`, a KitKat MT6589 build
`modem_1_3g_n.img` (Fairphone FP1 4.4.2 build script, MT6589), MT6572/MT6582 KitKat builds
`modem_1_wg_n.img` (public vendor blob lists, e.g. the Gamma GA-TAB7V3G MT6572 tree), so a
set is replaced under whatever `_X_YY_Z` suffix the build uses.

Every change is made on a working copy (the image is never edited in place): raw images
are copied, sparse ones expanded (`romkit.sysimg.sparse`), e2fsprogs changes the copy, the
result is checked (`e2fsck -fn`, each file read back by `debugfs cat`, attributes compared)
and packed back into the original form.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from romkit.bytesum import byte_sum
from romkit.errors import DiskError, FirmwareFormatError, UsageError, ValidationError
from romkit.firmware import modem as md
from romkit.fsutil import atomic_copy
from romkit.progress import ProgressCallback, Reporter
from romkit.sysimg import sparse as sp
from romkit.sysimg.ext4 import DirEntry, Ext4Image, FsSpace, Inode, Replacement, require_tools

FIRMWARE_DIR = "/etc/firmware"
MDDB_DIR = "/etc/mddb"
DIR_OF_KIND: dict[str, str] = {"modem": FIRMWARE_DIR, "catcher_filter": FIRMWARE_DIR,
                               "bplguinfo": MDDB_DIR, "dbginfo": MDDB_DIR}
EXT4_MAGIC_OFFSET = 1080  # superblock at 1024, s_magic at +56 (ext4 on-disk format)
EXT4_MAGIC = 0xEF53
COPY_CHUNK = 4 * 1024 * 1024
KERNEL_COPY_STEP = 64 * 1024 * 1024
SPACE_MARGIN = 64 * 1024 * 1024  # slack so a filesystem at 99% is not filled to the brim

ImageForm = Literal["raw", "sparse"]


class ModemFileInfo(BaseModel):
    """One modem file as found (in an image, a folder or alone)."""

    kind: str
    name: str
    location: str  # "/etc/firmware" in an image, the folder otherwise
    size: int
    sha256: str | None = None
    mode: str | None = None  # "0100644"
    uid: int | None = None
    gid: int | None = None
    mtime: int | None = None
    xattrs: dict[str, str] = Field(default_factory=dict)  # name → printable value


class ModemSetInfo(BaseModel):
    """What `romkit modem show` reports: the set, its naming, version strings and sizes."""

    source: str
    form: Literal["system-image", "sparse-system-image", "folder", "modem-image"]
    naming: str | None = None  # "plain", "1_3g_n", … (None: no modem image found)
    header: md.ModemHeader | None = None
    files: list[ModemFileInfo] = Field(default_factory=list)
    other_sets: list[str] = Field(default_factory=list)  # further namings in the same image
    ignored: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class InstalledFile(BaseModel):
    kind: str
    directory: str
    removed: list[str]
    name: str
    source: str
    size: int
    sha256: str
    kept: list[str]  # the attributes carried over from the replaced file


class ModemInstall(BaseModel):
    """What installing a modem set into a system image did (or, dry run, would do)."""

    image: str
    form: ImageForm
    naming: str
    how: str
    header: md.ModemHeader
    files: list[InstalledFile] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)  # new files the build has no place for
    warnings: list[str] = Field(default_factory=list)
    free_before: int = 0  # bytes free in the filesystem
    free_after: int | None = None
    fsck: str = ""
    dry_run: bool = False
    unchanged: bool = False  # the image already holds exactly this set under these names
    output: str | None = None
    output_size: int | None = None
    output_sha256: str | None = None
    output_sum16: int | None = None  # the checksum.ini value of the output (16-bit byte sum)


# -- image forms ---------------------------------------------------------------------------
def image_form(path: Path) -> ImageForm | None:
    """`sparse`, `raw` (ext2/3/4 superblock magic) or None (not a filesystem image)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(EXT4_MAGIC_OFFSET + 2)
    except OSError as exc:
        raise DiskError(f"cannot read {path}: {exc.strerror or exc}",
                        hint="check the path and its permissions") from exc
    if len(head) >= 4 and struct.unpack_from("<I", head)[0] == sp.SPARSE_MAGIC:
        return "sparse"
    if len(head) == EXT4_MAGIC_OFFSET + 2 and \
            struct.unpack_from("<H", head, EXT4_MAGIC_OFFSET)[0] == EXT4_MAGIC:
        return "raw"
    return None


def _sparse_layout(path: Path) -> sp.SparseLayout:
    with path.open("rb") as fh:
        return sp.read_header(fh, path.name)


def work_space_needed(path: Path) -> int:
    """Bytes of scratch space an install needs next to the image (working copy + result)."""
    form = image_form(path)
    size = path.stat().st_size
    if form == "sparse":
        return _sparse_layout(path).expanded_size + size
    return size


def check_free(where: Path, need: int, what: str) -> None:
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        raise DiskError(f"cannot measure free space at {where}: {exc.strerror or exc}",
                        hint="check the folder exists and is writable") from exc
    if free < need + SPACE_MARGIN:
        raise DiskError(f"{what} needs {mib(need + SPACE_MARGIN)} free at {where}; only "
                        f"{mib(free)} is free", hint="free some disk space (or move the "
                        "firmware folder to a bigger disk) and run the command again")


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _copy(src: Path, dst: Path, rep: Reporter, task: str) -> None:
    """Copy in the kernel (copy_file_range: no bytes through Python, reflinks where the
    filesystem has them), falling back to chunked read/write; progress per step."""
    size = src.stat().st_size
    rep.start(task, f"copying {src.name}", total=size)
    done = 0
    with src.open("rb") as fi, dst.open("wb") as fo:
        fast = hasattr(os, "copy_file_range")
        while done < size:
            n = 0
            if fast:
                try:
                    n = os.copy_file_range(fi.fileno(), fo.fileno(), KERNEL_COPY_STEP)
                except OSError:
                    fast = False  # e.g. EXDEV on older kernels: plain copy from here
                    fi.seek(done)
                    fo.seek(done)
            if not fast:
                chunk = fi.read(COPY_CHUNK)
                fo.write(chunk)
                n = len(chunk)
            if n == 0:
                break
            done += n
            rep.update(task, done)
    rep.end(task)


@contextlib.contextmanager
def raw_working_copy(image: Path, work: Path, rep: Reporter
                     ) -> Iterator[tuple[Path, ImageForm, sp.SparseLayout | None]]:
    """A raw ext4 copy of `image` inside `work` (deleted afterwards unless moved away)."""
    form = image_form(image)
    if form is None:
        raise FirmwareFormatError(f"{image.name} is neither an ext4 image nor an Android "
                                  "sparse image", hint="pass the build's system.img")
    raw = work / "system.raw"
    layout: sp.SparseLayout | None = None
    try:
        if form == "sparse":
            layout = sp.unsparse(image, raw, rep)
            if image_form(raw) != "raw":
                raise FirmwareFormatError(f"{image.name} is a sparse image but holds no "
                                          "ext4 filesystem", hint="pass the build's system.img")
        else:
            try:
                _copy(image, raw, rep, "copy")
            except OSError as exc:
                raise DiskError(f"cannot copy {image} to {work}: {exc.strerror or exc}",
                                hint="check free disk space") from exc
        yield raw, form, layout
    finally:
        raw.unlink(missing_ok=True)


@contextlib.contextmanager
def _view(image: Path, work: Path, rep: Reporter, read_only: bool
          ) -> Iterator[tuple[Path, ImageForm, sp.SparseLayout | None]]:
    """The raw filesystem to work on: a raw image itself when only reading (debugfs without
    -w and e2fsck -n never write), else a working copy."""
    if read_only and image_form(image) == "raw":
        yield image, "raw", None
        return
    with raw_working_copy(image, work, rep) as view:
        yield view


@contextlib.contextmanager
def _work_dir(near: Path, given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    try:
        tmp = tempfile.TemporaryDirectory(prefix=".romkit-modem-", dir=near)
    except OSError:
        tmp = tempfile.TemporaryDirectory(prefix="romkit-modem-")
    with tmp as d:
        yield Path(d)


# -- finding sets ----------------------------------------------------------------------------
class _Found(BaseModel):
    kind: str
    directory: str
    entry: DirEntry


def _image_sets(img: Ext4Image) -> tuple[dict[str, list[_Found]], bool]:
    """naming label → files of that naming in /etc/firmware and /etc/mddb; and whether
    /etc/firmware exists at all."""
    groups: dict[str, list[_Found]] = {}
    fw_dir = False
    for directory in (FIRMWARE_DIR, MDDB_DIR):
        entries = img.list_dir(directory)
        if entries is None:
            continue
        fw_dir = fw_dir or directory == FIRMWARE_DIR
        for e in entries:
            parsed = md.classify(e.name)
            if parsed is None or not e.is_file or DIR_OF_KIND[parsed.kind] != directory:
                continue
            label = md.naming_label(parsed.suffix)
            groups.setdefault(label, []).append(_Found(
                kind=parsed.kind, directory=directory, entry=e))
    return {k: v for k, v in groups.items() if any(f.kind == "modem" for f in v)}, fw_dir


def _choose(groups: dict[str, list[_Found]], header: md.ModemHeader | None,
            naming: str | None, image: str) -> tuple[str, str]:
    """(naming label, how it was chosen) of the set to replace."""
    if naming is not None:
        label = md.naming_label(md.parse_suffix(naming))
        if label not in groups:
            raise UsageError(f"{image} holds no modem set named {label} (it has: "
                             f"{', '.join(sorted(groups)) or 'none'})",
                             hint="leave --modem-naming at auto: the build's own names are used")
        return label, "--modem-naming, found in " + image
    if len(groups) == 1:
        label = next(iter(groups))
        return label, f"{image} holds {_modem_name(groups[label])}"
    fits = []
    for label in groups:
        sfx = md.parse_suffix(label)
        if header is not None and sfx is not None and sfx.image_type == \
                header.image_type_name and (header.bind_sys_id in (None, sfx.md)):
            fits.append(label)
    if len(fits) == 1:
        return fits[0], (f"{image} holds several modem sets; {_modem_name(groups[fits[0]])} "
                         "fits the new modem's type")
    raise UsageError(f"{image} holds several modem sets ({', '.join(sorted(groups))}) and "
                     "which one to replace cannot be told", hint="pass --modem-naming with one "
                                                                 "of them")


def _modem_name(files: list[_Found]) -> str:
    return next(f"{f.directory}/{f.entry.name}" for f in files if f.kind == "modem")


def _folder_files(folder: Path) -> tuple[list[tuple[md.ModemFileName, Path]], list[str]]:
    found: list[tuple[md.ModemFileName, Path]] = []
    ignored: list[str] = []
    if not folder.is_dir():
        raise UsageError(f"modem folder not found: {folder}",
                         hint="pass the folder holding modem.img, catcher_filter.bin, "
                              "BPLGUInfo* and DbgInfo*")
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        parsed = md.classify(p.name)
        if parsed is None:
            ignored.append(p.name)
        else:
            found.append((parsed, p))
    return found, ignored


def _tail(path: Path, n: int = md.TRAILER_SEARCH) -> bytes:
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(max(0, size - n))
        return fh.read(n)


def _sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(COPY_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _sha_and_sum16(path: Path) -> tuple[str, int]:
    """sha256 and checksum.ini's 16-bit byte sum in one pass over a (large) file."""
    h = hashlib.sha256()
    total = 0
    with path.open("rb") as fh:
        while chunk := fh.read(COPY_CHUNK):
            h.update(chunk)
            total += byte_sum(chunk)
    return h.hexdigest(), total & 0xFFFF


def _printable(value: bytes) -> str:
    text = value.rstrip(b"\x00")
    if text and all(0x20 <= b < 0x7F for b in text):
        return text.decode("ascii")
    return "0x" + value.hex()


# -- show ------------------------------------------------------------------------------------
def show_modem(target: Path, *, work_dir: Path | None = None,
               on_progress: ProgressCallback | None = None) -> ModemSetInfo:
    """The modem set of a system image (raw or sparse), a folder, or one modem image."""
    rep = Reporter(on_progress)
    target = Path(target)
    if target.is_dir():
        folder_info = _show_folder(target)
        system = target / "system.img"
        if folder_info.files or not system.is_file():
            return folder_info
        target = system  # a firmware folder: its system image holds the set
    if not target.is_file():
        raise UsageError(f"not found: {target}",
                         hint="pass a system.img, a modem folder or a modem.img")
    form = image_form(target)
    if form is None:
        header = md.read_modem_header(target)
        parsed = md.classify(target.name)
        info = ModemSetInfo(source=str(target), form="modem-image", header=header,
                            naming=md.naming_label(parsed.suffix) if parsed else None)
        info.files.append(ModemFileInfo(kind="modem", name=target.name,
                                        location=str(target.parent),
                                        size=target.stat().st_size,
                                        sha256=_sha_file(target)))
        if header is None:
            info.warnings.append(f"{target.name} has no CHECK_HEADER trailer: not a modem "
                                 "image romkit recognises")
        return info
    require_tools()
    if form == "raw":  # debugfs without -w opens read-only: no copy needed to look
        return _show_image(Ext4Image(target), target, form)
    with _work_dir(target.parent, work_dir) as work:
        check_free(work, work_space_needed(target), f"expanding {target.name}")
        with raw_working_copy(target, work, rep) as (raw, _form, _layout):
            return _show_image(Ext4Image(raw), target, form)


def _show_folder(folder: Path) -> ModemSetInfo:
    found, ignored = _folder_files(folder)
    info = ModemSetInfo(source=str(folder), form="folder", ignored=ignored)
    labels = sorted({md.naming_label(p.suffix) for p, _ in found})
    if len(labels) > 1:
        info.warnings.append("the folder mixes namings: " + ", ".join(labels))
    info.naming = labels[0] if len(labels) == 1 else None
    for parsed, path in found:
        info.files.append(ModemFileInfo(kind=parsed.kind, name=path.name, location=str(folder),
                                        size=path.stat().st_size, sha256=_sha_file(path)))
        if parsed.kind == "modem":
            info.header = md.parse_modem_trailer(_tail(path))
    kinds = {f.kind for f in info.files}
    missing = [md.KIND_LABELS[k] for k in md.PHONE_DIRS if k not in kinds]
    if missing:
        info.warnings.append("the set lacks: " + ", ".join(missing))
    return info


def _show_image(img: Ext4Image, target: Path, form: ImageForm) -> ModemSetInfo:
    groups, _fw = _image_sets(img)
    info = ModemSetInfo(source=str(target),
                        form="sparse-system-image" if form == "sparse" else "system-image")
    if not groups:
        info.warnings.append(f"no modem image in {FIRMWARE_DIR} of {target.name}")
        return info
    label = sorted(groups)[0] if len(groups) > 1 else next(iter(groups))
    info.naming = label
    info.other_sets = sorted(set(groups) - {label})
    for f in sorted(groups[label], key=lambda x: (x.directory, x.entry.name)):
        path = f"{f.directory}/{f.entry.name}"
        ino = img.stat(path)
        sha, size, tail = img.read(path, tail=md.TRAILER_SEARCH if f.kind == "modem" else 0)
        if f.kind == "modem":
            info.header = md.parse_modem_trailer(tail)
        info.files.append(ModemFileInfo(
            kind=f.kind, name=f.entry.name, location=f.directory, size=size, sha256=sha,
            mode=f"0{ino.mode:o}", uid=ino.uid, gid=ino.gid,
            mtime=ino.times.get("mtime", (None, 0))[0],
            xattrs={k: _printable(v) for k, v in ino.xattrs.items()}))
    return info


# -- install ---------------------------------------------------------------------------------
def install_modem(system_img: Path, modem_dir: Path, output: Path | None = None, *,
                  platform: str | None = None, naming: str | None = None,
                  work_dir: Path | None = None, dry_run: bool = False,
                  on_progress: ProgressCallback | None = None) -> ModemInstall:
    """Replace the modem set inside `system_img` with the files of `modem_dir`.

    The result goes to `output` in the image's own form (raw or sparse); `output=None`
    replaces `system_img` itself atomically (the library call a demo or script makes; the
    prepare command passes an output and keeps a backup for undo). Refuses (nothing
    written) an incomplete or foreign modem set, an image whose filesystem is already
    damaged, and a filesystem without room. `naming` forces which set of the image is
    replaced (e.g. "1_3g_n"); by default the image's own set is found.
    """
    rep = Reporter(on_progress)
    system_img, modem_dir = Path(system_img), Path(modem_dir)
    require_tools()
    found, _ignored = _folder_files(modem_dir)
    if not found:
        raise UsageError(f"{modem_dir} holds no modem files",
                         hint="expected modem.img, catcher_filter.bin, BPLGUInfo*, DbgInfo*")
    kinds: dict[str, tuple[md.ModemFileName, Path]] = {}
    for parsed, path in found:
        if parsed.kind in kinds:
            raise ValidationError(f"{modem_dir} holds two {md.KIND_LABELS[parsed.kind]} files "
                                  f"({kinds[parsed.kind][1].name}, {path.name})",
                                  hint="keep exactly one file of each kind in the folder")
        kinds[parsed.kind] = (parsed, path)
    if "modem" not in kinds:
        raise ValidationError(f"{modem_dir} holds no modem image (modem*.img)",
                              hint="the set must include its modem.img")
    modem_path = kinds["modem"][1]
    header = md.verify_modem_image(_tail(modem_path), modem_path.stat().st_size,
                                   modem_path.name)
    md.check_modem_platform(header, platform, modem_path.name)
    out_path = Path(output) if output is not None else system_img
    if image_form(system_img) == "raw":
        Ext4Image(system_img).space()  # read-only probe: NotExt4Error before any copy
    with _work_dir(out_path.parent, work_dir) as work:
        if not (dry_run and image_form(system_img) == "raw"):
            check_free(work, work_space_needed(system_img), f"changing {system_img.name}")
        with _view(system_img, work, rep, dry_run) as (raw, form, layout):
            img = Ext4Image(raw)
            img.space()  # NotExt4Error for a sparse image that holds no ext4 filesystem
            rep.info(f"checking the filesystem of {system_img.name}")
            clean, report = img.fsck()
            if not clean:
                raise FirmwareFormatError(
                    f"{system_img.name} has filesystem errors before any change: "
                    f"{report.splitlines()[-1] if report else 'e2fsck failed'}",
                    hint="re-extract the firmware archive; romkit does not repair images")
            groups, fw_dir = _image_sets(img)
            if not groups:
                raise FirmwareFormatError(
                    f"{system_img.name} holds no modem image in {FIRMWARE_DIR}"
                    + ("" if fw_dir else f" (no {FIRMWARE_DIR} at all)"),
                    hint="this does not look like an MT65xx system image; pass the build's "
                         "own system.img")
            label, how = _choose(groups, header, naming, system_img.name)
            suffix = md.parse_suffix(label)
            group = groups[label]
            required = {f.kind for f in group}
            files = [md.SetFile(kind=k, name=p.name, size=p.stat().st_size)
                     for k, (_parsed, p) in kinds.items()]
            result = ModemInstall(image=str(system_img), form=form, naming=label, how=how,
                                  header=header, dry_run=dry_run)
            result.warnings += md.check_modem_set(files, header, required=sorted(required),
                                                  suffix=suffix)
            items, olds = _replacements(img, group, kinds, suffix, result)
            if _already(img, items):
                result.unchanged = True
                return result
            space = img.space()
            result.free_before = space.free_blocks * space.block_size
            _check_fs_space(space, items, olds, system_img.name)
            if dry_run:
                result.files = [_planned(kind, it, _sha_file(it.source), it.source.stat().st_size)
                                for kind, it in items]
                return result
            rep.info(f"writing {len(items)} modem files into {system_img.name}")
            img.replace([it for _kind, it in items])
            _verify(img, items, result)
            space = img.space()
            result.free_after = space.free_blocks * space.block_size
            rep.info(f"packing {out_path.name}")
            tmp_out = work / (out_path.name + ".new")
            if form == "sparse":
                assert layout is not None
                keep = _dont_care(img, layout, space.block_size)
                raw_sha = hashlib.sha256()
                sp.resparse(raw, tmp_out, layout.block_size, keep, rep, digest=raw_sha)
                if sp.expanded_sha256(tmp_out) != raw_sha.hexdigest():
                    raise FirmwareFormatError("the packed sparse image does not expand to the "
                                              "changed filesystem",
                                              hint="report this; nothing was changed")
            else:
                raw.replace(tmp_out)
            result.output_sha256, result.output_sum16 = _sha_and_sum16(tmp_out)
            result.output_size = tmp_out.stat().st_size
            _put_in_place(tmp_out, out_path)
            result.output = str(out_path)
            return result


def _put_in_place(tmp: Path, dest: Path) -> None:
    """fsync the finished image, then rename it over `dest` (a copy across filesystems):
    a crash leaves the old image or the new one, never a mix."""
    try:
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        try:
            tmp.replace(dest)
        except OSError:
            atomic_copy(tmp, dest)
            tmp.unlink(missing_ok=True)
            return
        if hasattr(os, "O_DIRECTORY"):
            fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise DiskError(f"cannot put the new image at {dest}: {exc.strerror or exc}",
                        hint="check free disk space and permissions") from exc


def _replacements(img: Ext4Image, group: list[_Found],
                  kinds: dict[str, tuple[md.ModemFileName, Path]], suffix: md.ModemSuffix | None,
                  result: ModemInstall) -> tuple[list[tuple[str, Replacement]], list[Inode]]:
    """(kind, replacement) per new file, taking the attributes of the file it replaces;
    and the stat of every file that goes away (their blocks are freed)."""
    items: list[tuple[str, Replacement]] = []
    olds: list[Inode] = []
    by_kind: dict[str, list[_Found]] = {}
    for f in group:
        by_kind.setdefault(f.kind, []).append(f)
    for kind, (parsed, path) in sorted(kinds.items()):
        old = by_kind.get(kind)
        if not old:
            result.skipped.append(path.name)
            result.warnings.append(f"{path.name}: the build carries no "
                                   f"{md.KIND_LABELS[kind]}, so it is not installed")
            continue
        first = sorted(old, key=lambda f: f.entry.name)[0]
        attrs = img.stat(f"{first.directory}/{first.entry.name}")
        olds.append(attrs)
        for other in old[1:]:
            olds.append(img.stat(f"{other.directory}/{other.entry.name}"))
        new_name = parsed.render(suffix)
        items.append((kind, Replacement(directory=first.directory, name=new_name, source=path,
                                        attrs=attrs, remove=sorted(f.entry.name for f in old))))
    return items, olds


def _already(img: Ext4Image, items: list[tuple[str, Replacement]]) -> bool:
    """Whether every file is already in place under its name with the same bytes."""
    for _kind, it in items:
        if it.remove != [it.name]:
            return False
        sha, _size, _ = img.read(f"{it.directory}/{it.name}")
        if sha != _sha_file(it.source):
            return False
    return True


def _check_fs_space(space: FsSpace, items: list[tuple[str, Replacement]], olds: list[Inode],
                    image: str) -> None:
    """Refuse before writing when the new files cannot fit in free + freed blocks."""
    bs = space.block_size
    need = 0
    for _kind, it in items:
        blocks = -(-it.source.stat().st_size // bs)
        need += blocks + blocks // 340 + 2  # data + extent tree blocks + slack
    freed = sum(o.blocks_512 * 512 // bs for o in olds)
    if need > space.free_blocks + freed:
        short = (need - space.free_blocks - freed) * bs
        raise ValidationError(f"the filesystem in {image} lacks space for the new modem set "
                              f"({short / 1024:.0f} KiB short)",
                              hint="use a modem set of the build's size, or a system.img with "
                                   "more free space")


def _verify(img: Ext4Image, items: list[tuple[str, Replacement]], result: ModemInstall) -> None:
    """Independent read-back: e2fsck, the bytes by `debugfs cat`, the attributes by stat."""
    clean, report = img.fsck()
    if not clean:
        raise FirmwareFormatError(f"e2fsck finds errors after the change: "
                                  f"{report.splitlines()[-1] if report else '?'}",
                                  hint="nothing was changed in your folder; report this")
    last = report.splitlines()[-1] if report else ""
    result.fsck = "clean" + (f" ({last.split(': ', 1)[-1]})" if last else "")
    for kind, it in items:
        path = f"{it.directory}/{it.name}"
        want = _sha_file(it.source)
        sha, size, _ = img.read(path)
        if sha != want:
            raise FirmwareFormatError(f"{path} does not read back as {it.source.name}",
                                      hint="nothing was changed in your folder; report this")
        now = img.stat(path)
        diff = now.same_attributes(it.attrs)
        if diff:
            raise FirmwareFormatError(f"{path} lost attributes: {', '.join(diff)}",
                                      hint="nothing was changed in your folder; check the "
                                           "e2fsprogs version (1.43 or later)")
        listing = {e.name for e in img.list_dir(it.directory) or []}
        stale = [n for n in it.remove if n != it.name and n in listing]
        if stale:
            raise FirmwareFormatError(f"{', '.join(stale)} still in {it.directory}",
                                      hint="nothing was changed in your folder; report this")
        result.files.append(_planned(kind, it, sha, size))


def _planned(kind: str, it: Replacement, sha: str, size: int) -> InstalledFile:
    kept = [f"mode 0{it.attrs.mode & 0o7777:o}", f"owner {it.attrs.uid}:{it.attrs.gid}",
            *sorted(it.attrs.times), *sorted(it.attrs.xattrs)]
    return InstalledFile(kind=kind, directory=it.directory, removed=it.remove, name=it.name,
                         source=it.source.name, size=size, sha256=sha, kept=kept)


def _dont_care(img: Ext4Image, layout: sp.SparseLayout, fs_block: int) -> sp.Ranges:
    """Sparse blocks that may stay DONT_CARE: DONT_CARE before and free in the new bitmap."""
    sbs = layout.block_size
    free: sp.Ranges = []
    for a, b in img.free_ranges():
        lo = -(-(a * fs_block) // sbs)
        hi = (b * fs_block) // sbs
        if lo < hi:
            free.append((lo, hi))
    return sp.intersect(layout.dont_care, free)
