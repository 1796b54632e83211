"""`prepare --modem` installs the set into system.img: the done-when, checked outside romkit.

The system image is a real ext4 filesystem made by `mke2fs -d` holding a KitKat `_1_3g_n` set,
with owner, mode, timestamps and an SELinux label set by `debugfs` (the way the build's
make_ext4fs leaves them). Every check reads the result with e2fsprogs or simg2img directly:
`debugfs cat` for the bytes, `debugfs stat` / `ea_get` for the attributes, `e2fsck -fn` for the
filesystem, sha256 of the whole file for undo, and a numpy byte sum for checksum.ini.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from clitools import run_main

from romkit.errors import DiskError, RomkitError, UsageError, ValidationError
from romkit.firmware.checksum import verify_checksums, write_checksum_ini
from romkit.prepare import PrepareRequest, prepare
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.artifacts_modem import modem_image
from romkit.sim.sample_firmware import build_s820_folder
from romkit.sysimg import ext4, install_modem, show_modem

pytestmark = pytest.mark.skipif(shutil.which("debugfs") is None and not Path(
    "/sbin/debugfs").exists(), reason="e2fsprogs not installed")

OLD_BUILD = "MOLY.WR8.W1248.MD.WG.MP.V9"
NEW_BUILD = "MOLY.WR8.W1315.MD.WG.MP.V19"
LABEL = b"u:object_r:system_file:s0"  # KitKat's label for /system files
MTIME = 0x533DF600  # 2014-04-04 00:00 UTC
MTIME_EXTRA = 0x3039 << 2  # some nanoseconds, epoch bits 0


def tool(name: str) -> str:
    found = shutil.which(name) or f"/sbin/{name}"
    return found


def mddb_names(build: str, suffix: str = "") -> tuple[str, str]:
    tag = build.replace(".", "_")
    return (f"BPLGUInfoCustomAppSrcP_MT6589_S00_{tag}{suffix}",
            f"DbgInfo_WR8.W1315.MD.WG.MP_S820_{tag}_2014_04_04_00_00{suffix}")


def modem_set(build: str, suffix: str, seed: str) -> dict[str, bytes]:
    bpl, dbg = mddb_names(build, suffix)
    filt = hashlib.shake_256(f"filter{seed}".encode()).digest(3000)
    return {
        f"modem{suffix}.img": modem_image(size=200_000 + len(seed) * 4096, build_ver=build),
        f"catcher_filter{suffix}.bin": filt,
        bpl: hashlib.shake_256(f"bpl{seed}".encode()).digest(5000),
        dbg: hashlib.shake_256(f"dbg{seed}".encode()).digest(7000),
    }


def debugfs(image: Path, *commands: str, write: bool = False) -> str:
    script = image.parent / "cmds.debugfs"
    script.write_text("\n".join(commands) + "\n")
    proc = subprocess.run([tool("debugfs"), *(["-w"] if write else []), "-f", str(script),
                           str(image)], capture_output=True, text=True, check=True)
    script.unlink()
    return proc.stdout


def cat(image: Path, path: str) -> bytes:
    return subprocess.run([tool("debugfs"), "-R", f"cat {path}", str(image)],
                          capture_output=True, check=True).stdout


def listing(image: Path, directory: str) -> set[str]:
    out = debugfs(image, f"ls -p {directory}")
    return {line.split("/")[5] for line in out.splitlines() if line.startswith("/")} - {
        ".", ".."}


def attributes(image: Path, path: str) -> dict[str, object]:
    out = debugfs(image, f"stat {path}")
    label = image.parent / "label.bin"
    debugfs(image, f"ea_get -f {label} {path} security.selinux")
    user = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", out)
    mode = re.search(r"Mode:\s+(\d+)", out)
    mtime = re.search(r"mtime: (0x[0-9a-f]+)(?::([0-9a-f]+))?", out)
    assert user and mode and mtime
    return {"uid": int(user[1]), "gid": int(user[2]), "mode": mode[1],
            "mtime": (int(mtime[1], 16), int(mtime[2] or "0", 16)), "label": label.read_bytes()}


def fsck_clean(image: Path) -> bool:
    return subprocess.run([tool("e2fsck"), "-fn", str(image)], capture_output=True).returncode \
        == 0


def byte_sum16(path: Path) -> int:
    return int(np.fromfile(path, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFF


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_system_image(dest: Path, files: dict[str, bytes], size_mb: int = 24,
                       inode_size: int = 256) -> Path:
    root = dest.parent / "sysroot"
    for name, data in files.items():
        sub = "etc/firmware" if name.startswith(("modem", "catcher")) else "etc/mddb"
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / name).write_bytes(data)
    (root / "etc/firmware/WMT_SOC.cfg").write_text("wifi firmware config\n")
    (root / "build.prop").write_text("ro.build.version.release=4.4.2\n")
    subprocess.run([tool("mke2fs"), "-q", "-F", "-t", "ext4", "-b", "4096", "-I",
                    str(inode_size), "-d", str(root), str(dest), f"{size_mb}M"], check=True,
                   capture_output=True)
    cmds = []
    for name in files:
        sub = "/etc/firmware" if name.startswith(("modem", "catcher")) else "/etc/mddb"
        path = f"{sub}/{name}"
        cmds += [f"ea_set {path} security.selinux {LABEL.decode()}",
                 f"set_inode_field {path} uid 0", f"set_inode_field {path} gid 2000",
                 f"set_inode_field {path} mode 0100640",
                 f"set_inode_field {path} mtime 0x{MTIME:x}"]
        if inode_size > 128:
            cmds.append(f"set_inode_field {path} mtime_extra 0x{MTIME_EXTRA:x}")
    debugfs(dest, *cmds, write=True)
    shutil.rmtree(root)
    return dest


@pytest.fixture
def old_set() -> dict[str, bytes]:
    return modem_set(OLD_BUILD, "_1_3g_n", "old")


@pytest.fixture
def new_dir(tmp_path: Path) -> Path:
    d = tmp_path / "v51"
    d.mkdir()
    for name, data in modem_set(NEW_BUILD, "", "new-set").items():
        (d / name).write_bytes(data)
    return d


def make_package(tmp_path: Path, old_set: dict[str, bytes], *, sparse: bool) -> Path:
    folder = build_s820_folder(tmp_path / "pkg", preloader=preloader_s820(2013), da=da_s820(),
                               android="4.4.2", image_scale=0.1)
    system = folder / "system.img"
    raw = build_system_image(tmp_path / "system.raw", old_set)
    if sparse:
        if shutil.which("img2simg"):
            subprocess.run(["img2simg", str(raw), str(system)], check=True)
        else:
            from romkit.sysimg.sparse import resparse

            resparse(raw, system, 4096)
    else:
        shutil.copyfile(raw, system)
    raw.unlink()
    write_checksum_ini(folder)
    return folder


def raw_view(system: Path, tmp_path: Path) -> Path:
    """The filesystem inside system.img as a raw file, unpacked by simg2img when sparse."""
    if system.read_bytes()[:4] != b"\x3a\xff\x26\xed":
        return system
    out = tmp_path / "view.raw"
    if shutil.which("simg2img"):
        subprocess.run(["simg2img", str(system), str(out)], check=True)
    else:
        from romkit.sysimg.sparse import unsparse

        unsparse(system, out)
    return out


@pytest.mark.parametrize("sparse", [False, True], ids=["raw", "sparse"])
def test_prepare_modem_installs_keeps_attributes_and_undoes(
        tmp_path: Path, old_set: dict[str, bytes], new_dir: Path, sparse: bool) -> None:
    folder = make_package(tmp_path, old_set, sparse=sparse)
    system = folder / "system.img"
    original = sha(system)
    view = raw_view(system, tmp_path)
    before = attributes(view, "/etc/firmware/modem_1_3g_n.img")
    before_bpl = attributes(view, f"/etc/mddb/{mddb_names(OLD_BUILD, '_1_3g_n')[0]}")

    result = prepare(PrepareRequest(folder=folder, modem=new_dir))

    assert result.applied and result.plan is not None and result.plan.modem is not None
    assert result.plan.modem.naming == "1_3g_n"
    assert (system.read_bytes()[:4] == b"\x3a\xff\x26\xed") == sparse  # form kept
    view = raw_view(system, tmp_path)
    assert fsck_clean(view)
    new_modem = (new_dir / "modem.img").read_bytes()
    assert cat(view, "/etc/firmware/modem_1_3g_n.img") == new_modem
    assert cat(view, "/etc/firmware/catcher_filter_1_3g_n.bin") == \
        (new_dir / "catcher_filter.bin").read_bytes()
    bpl, dbg = mddb_names(NEW_BUILD)
    assert listing(view, "/etc/mddb") == {f"{bpl}_1_3g_n", f"{dbg}_1_3g_n"}
    assert cat(view, f"/etc/mddb/{bpl}_1_3g_n") == (new_dir / bpl).read_bytes()
    assert listing(view, "/etc/firmware") == {"modem_1_3g_n.img", "catcher_filter_1_3g_n.bin",
                                              "WMT_SOC.cfg"}
    assert attributes(view, "/etc/firmware/modem_1_3g_n.img") == before
    assert attributes(view, f"/etc/mddb/{bpl}_1_3g_n") == before_bpl
    assert before == {"uid": 0, "gid": 2000, "mode": "0640", "mtime": (MTIME, MTIME_EXTRA),
                      "label": LABEL}
    ini = (folder / "Checksum.ini").read_text()
    m = re.search(r"^ANDROID\s*=\s*0x([0-9A-Fa-f]+)", ini, re.MULTILINE)
    assert m and int(m[1], 16) == byte_sum16(system)
    assert {r.status for r in verify_checksums(folder)} <= {"ok", "no-image"}
    assert not (folder / ".romkit" / "modem-work").exists()

    again = prepare(PrepareRequest(folder=folder, modem=new_dir))
    assert again.plan is not None and not again.plan.steps  # already installed: a no-op

    undo = prepare(PrepareRequest(folder=folder, undo=True))
    assert undo.applied
    assert sha(system) == original


def test_dry_run_changes_nothing_and_names_the_space(tmp_path: Path, old_set: dict[str, bytes],
                                                    new_dir: Path) -> None:
    folder = make_package(tmp_path, old_set, sparse=False)
    before = {p.name: sha(p) for p in folder.iterdir() if p.is_file()}
    result = prepare(PrepareRequest(folder=folder, modem=new_dir, dry_run=True))
    assert result.plan is not None and [s.path for s in result.plan.steps] == ["system.img"]
    assert any("needs about" in n and "MiB" in n for n in result.plan.notes)
    assert {p.name: sha(p) for p in folder.iterdir() if p.is_file()} == before
    assert not (folder / ".romkit").exists()


def refused(tmp_path: Path, folder: Path, src: Path, error: type[RomkitError], words: str
            ) -> None:
    before = {p.name: sha(p) for p in folder.iterdir() if p.is_file()}
    with pytest.raises(error, match=words):
        prepare(PrepareRequest(folder=folder, modem=src))
    assert {p.name: sha(p) for p in folder.iterdir() if p.is_file()} == before
    assert not (folder / ".romkit").exists()


def test_random_bytes_are_not_a_modem_image(tmp_path: Path, old_set: dict[str, bytes],
                                            new_dir: Path) -> None:
    folder = make_package(tmp_path, old_set, sparse=False)
    (new_dir / "modem.img").write_bytes(hashlib.shake_256(b"noise").digest(300_000))
    refused(tmp_path, folder, new_dir, ValidationError, "no CHECK_HEADER")


def test_truncated_modem_image_is_refused(tmp_path: Path, old_set: dict[str, bytes],
                                          new_dir: Path) -> None:
    folder = make_package(tmp_path, old_set, sparse=False)
    data = (new_dir / "modem.img").read_bytes()
    (new_dir / "modem.img").write_bytes(data[:-20])
    refused(tmp_path, folder, new_dir, ValidationError, "does not end the file")


def test_incomplete_set_is_refused(tmp_path: Path, old_set: dict[str, bytes],
                                   new_dir: Path) -> None:
    folder = make_package(tmp_path, old_set, sparse=False)
    (new_dir / mddb_names(NEW_BUILD)[1]).unlink()
    refused(tmp_path, folder, new_dir, ValidationError, "incomplete: no DbgInfo")


def test_mddb_of_another_modem_build_is_refused(tmp_path: Path, old_set: dict[str, bytes],
                                                new_dir: Path) -> None:
    folder = make_package(tmp_path, old_set, sparse=False)
    bpl = mddb_names(NEW_BUILD)[0]
    (new_dir / bpl).rename(new_dir / mddb_names(OLD_BUILD)[0])
    refused(tmp_path, folder, new_dir, ValidationError, "does not belong to modem build")


def test_2g_modem_for_a_3g_build_is_refused(tmp_path: Path, old_set: dict[str, bytes],
                                            new_dir: Path) -> None:
    folder = make_package(tmp_path, old_set, sparse=False)
    (new_dir / "modem.img").write_bytes(modem_image(image_type=1, size=200_000,
                                                    build_ver=NEW_BUILD))
    refused(tmp_path, folder, new_dir, ValidationError, "2G modem")


def test_filesystem_without_room_is_refused(tmp_path: Path, new_dir: Path) -> None:
    small = modem_set(OLD_BUILD, "_1_3g_n", "old")
    folder = make_package(tmp_path, small, sparse=False)
    system = folder / "system.img"
    view_free = subprocess.run([tool("dumpe2fs"), "-h", str(system)], capture_output=True,
                               text=True).stdout
    free = int(re.search(r"^Free blocks:\s+(\d+)", view_free, re.MULTILINE)[1]) * 4096
    big = modem_image(size=free + 1024 * 1024, build_ver=NEW_BUILD)
    (new_dir / "modem.img").write_bytes(big)
    refused(tmp_path, folder, new_dir, ValidationError, "lacks space")


def test_missing_e2fsprogs_says_how_to_install(tmp_path: Path, old_set: dict[str, bytes],
                                               new_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_package(tmp_path, old_set, sparse=False)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(ext4, "_EXTRA_DIRS", ())
    with pytest.raises(ext4.ToolMissingError, match="e2fsprogs") as info:
        prepare(PrepareRequest(folder=folder, modem=new_dir))
    assert "apt-get install e2fsprogs" in (info.value.hint or "")


def test_library_call_replaces_in_place_and_show_reads_it(tmp_path: Path,
                                                          old_set: dict[str, bytes],
                                                          new_dir: Path) -> None:
    image = build_system_image(tmp_path / "system.img", old_set)
    shown = show_modem(image)
    assert shown.naming == "1_3g_n" and shown.header is not None
    assert shown.header.build_ver == OLD_BUILD
    assert {f.name for f in shown.files} == set(old_set)
    assert all(f.xattrs.get("security.selinux") == LABEL.decode() for f in shown.files)
    result = install_modem(image, new_dir, platform="MT6589")
    assert result.output == str(image) and fsck_clean(image)
    assert cat(image, "/etc/firmware/modem_1_3g_n.img") == (new_dir / "modem.img").read_bytes()
    assert show_modem(image).header.build_ver == NEW_BUILD  # type: ignore[union-attr]


def test_forced_naming_must_exist_in_the_image(tmp_path: Path, old_set: dict[str, bytes],
                                               new_dir: Path) -> None:
    image = build_system_image(tmp_path / "system.img", old_set)
    with pytest.raises(UsageError, match="no modem set named plain"):
        install_modem(image, new_dir, tmp_path / "out.img", naming="plain")


def test_work_space_is_checked(tmp_path: Path, old_set: dict[str, bytes], new_dir: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    image = build_system_image(tmp_path / "system.img", old_set)
    from romkit.sysimg import modemset

    monkeypatch.setattr(modemset, "SPACE_MARGIN", 1 << 50)  # no disk has this much free
    with pytest.raises(DiskError, match="needs .* MiB free"):
        install_modem(image, new_dir, tmp_path / "out.img")


def test_cli_show_and_prepare_json(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   old_set: dict[str, bytes], new_dir: Path) -> None:
    folder = make_package(tmp_path, old_set, sparse=True)
    code, text, _ = run_main(capsys, "modem", "show", str(folder / "system.img"))
    assert code == 0, text
    assert "modem_1_3g_n.img" in text and "1_3g_n" in text and OLD_BUILD in text
    code, text, _ = run_main(capsys, "modem", "show", str(new_dir), "--json")
    doc = json.loads(text)
    assert code == 0 and doc["naming"] == "plain" and doc["header"]["build_ver"] == NEW_BUILD
    code, text, err = run_main(capsys, "prepare", str(folder), "--modem", str(new_dir),
                               "--json")
    assert code == 0, err
    doc = json.loads(text)
    install = doc["plan"]["modem"]["install"]
    assert install["naming"] == "1_3g_n" and install["form"] == "sparse"
    assert {f["name"] for f in install["files"]} >= {"modem_1_3g_n.img"}
    code, text, err = run_main(capsys, "modem", "show", str(tmp_path / "nothing-here"))
    assert code != 0 and "error:" in err and "hint:" in err and "Traceback" not in err


def free_blocks(image: Path) -> set[int]:
    """Free blocks by dumpe2fs's per-group lists (parsed here, not by romkit)."""
    out = subprocess.run([tool("dumpe2fs"), str(image)], capture_output=True, text=True).stdout
    free: set[int] = set()
    for m in re.finditer(r"^\s+Free blocks: (.+)$", out, re.MULTILINE):
        for item in m[1].split(","):
            a, _, b = item.strip().partition("-")
            free.update(range(int(a), int(b or a) + 1))
    return free


def dont_care_blocks(sparse: Path) -> set[int]:
    blob = sparse.read_bytes()
    nchunks = int.from_bytes(blob[20:24], "little")
    pos, block, out = 28, 0, set()
    for _ in range(nchunks):
        ctype = int.from_bytes(blob[pos:pos + 2], "little")
        n = int.from_bytes(blob[pos + 4:pos + 8], "little")
        size = int.from_bytes(blob[pos + 8:pos + 12], "little")
        if ctype == 0xCAC3:
            out.update(range(block, block + n))
        block += n
        pos += size
    return out


def test_sparse_dont_care_only_over_free_blocks(tmp_path: Path, old_set: dict[str, bytes],
                                                new_dir: Path) -> None:
    """A make_ext4fs-style image (free space as DONT_CARE) keeps DONT_CARE only where the
    changed filesystem has free blocks: no block debugfs wrote can be skipped by the flasher."""
    from romkit.sysimg.sparse import resparse

    raw = build_system_image(tmp_path / "orig.raw", old_set)
    free = free_blocks(raw)
    runs, start = [], None
    for b in range(max(free) + 2):
        if b in free and start is None:
            start = b
        elif b not in free and start is not None:
            runs.append((start, b))
            start = None
    image = tmp_path / "system.img"
    resparse(raw, image, 4096, dont_care=runs)
    assert dont_care_blocks(image)  # the input really has DONT_CARE chunks
    out = tmp_path / "new.img"
    install_modem(image, new_dir, out)
    skipped = dont_care_blocks(out)
    view = raw_view(out, tmp_path)
    assert skipped and skipped <= free_blocks(view)
    assert fsck_clean(view)
    assert cat(view, "/etc/firmware/modem_1_3g_n.img") == (new_dir / "modem.img").read_bytes()


def test_preloader_swap_and_modem_share_one_checksum_step(tmp_path: Path,
                                                          old_set: dict[str, bytes],
                                                          new_dir: Path) -> None:
    folder = make_package(tmp_path, old_set, sparse=False)
    pl = tmp_path / "pl2014.bin"
    pl.write_bytes(preloader_s820(2014))
    result = prepare(PrepareRequest(folder=folder, modem=new_dir, preloader=pl))
    assert result.plan is not None
    assert [s.kind for s in result.plan.steps].count("checksum") == 1
    ini = (folder / "Checksum.ini").read_text()
    for key, path in (("ANDROID", folder / "system.img"),
                      ("PRELOADER", folder / "preloader_s820.bin")):
        m = re.search(rf"^{key}\s*=\s*0x([0-9A-Fa-f]+)", ini, re.MULTILINE)
        assert m and int(m[1], 16) == byte_sum16(path), key


@pytest.mark.parametrize("sparse", [False, True], ids=["raw", "sparse"])
def test_flashed_phone_holds_the_new_modem(tmp_path: Path, old_set: dict[str, bytes],
                                           new_dir: Path, sparse: bool) -> None:
    """prepare --modem, then the ordinary flash: the virtual phone's ANDROID partition, read
    straight from its storage, is an ext4 filesystem holding the new modem under the old name.

    Sparse: the package's system.img is Android sparse (img2simg when installed), stays sparse
    through prepare, and the flash writes its expansion; the dump is as long as simg2img's
    (or romkit's unsparse when simg2img is missing) expansion of the prepared file and equal
    to it."""
    from romkit.device import protocol as P
    from romkit.flash.engine import FlashRequest, flash
    from romkit.flash.plan import PlanOptions
    from romkit.sim import s820
    from romkit.sim.phone import VirtualPhone

    folder = make_package(tmp_path, old_set, sparse=sparse)
    prepare(PrepareRequest(folder=folder, modem=new_dir))
    system = folder / "system.img"
    assert (system.read_bytes()[:4] == b"\x3a\xff\x26\xed") == sparse  # form kept
    view = raw_view(system, tmp_path)  # the expansion, by simg2img when sparse
    phone = VirtualPhone(tmp_path / "phone", year=2013)  # type: ignore[arg-type]
    phone.start()
    try:
        flash(FlashRequest(firmware_dir=folder, port=phone.port, wait=5,
                           options=PlanOptions(only=["ANDROID"])))
        start = dict((n.removeprefix("__NODL_"), a) for n, a in s820.LAYOUT)["ANDROID"]
        dump = tmp_path / "android.bin"
        dump.write_bytes(phone.storage.read(P.PART_USER, start - 0x600000,
                                            view.stat().st_size))
    finally:
        phone.stop()
    assert sha(dump) == sha(view)
    assert fsck_clean(dump)
    assert cat(dump, "/etc/firmware/modem_1_3g_n.img") == (new_dir / "modem.img").read_bytes()
    assert attributes(dump, "/etc/firmware/modem_1_3g_n.img")["label"] == LABEL


def test_small_inodes_as_make_ext4fs_wrote_them(tmp_path: Path, old_set: dict[str, bytes],
                                                new_dir: Path) -> None:
    """128-byte inodes (no nanoseconds, labels in an xattr block), as older build tools made."""
    image = build_system_image(tmp_path / "system.img", old_set, inode_size=128)
    before = attributes(image, "/etc/firmware/modem_1_3g_n.img")
    install_modem(image, new_dir, platform="MT6589")
    assert fsck_clean(image)
    assert attributes(image, "/etc/firmware/modem_1_3g_n.img") == before
    assert before["mtime"] == (MTIME, 0) and before["label"] == LABEL
    assert cat(image, "/etc/firmware/modem_1_3g_n.img") == (new_dir / "modem.img").read_bytes()


def test_random_bytes_refused_without_an_ext4_system_image_too(tmp_path: Path,
                                                               new_dir: Path) -> None:
    """The fallback (files only named into modem/) refuses what the install refuses."""
    folder = build_s820_folder(tmp_path / "pkg", preloader=preloader_s820(2013), da=da_s820(),
                               android="4.4.2", image_scale=0.1)  # its system.img is no ext4
    (new_dir / "modem.img").write_bytes(hashlib.shake_256(b"noise").digest(300_000))
    with pytest.raises(ValidationError, match="no CHECK_HEADER"):
        prepare(PrepareRequest(folder=folder, modem=new_dir, modem_naming="1_3g_n"))
    assert not (folder / "modem").exists()
    (new_dir / "modem.img").write_bytes(modem_image(size=200_000, build_ver=NEW_BUILD))
    result = prepare(PrepareRequest(folder=folder, modem=new_dir, modem_naming="1_3g_n"))
    assert result.plan is not None
    assert any("NOT installed" in w for w in result.plan.warnings)
    assert (folder / "modem" / "modem_1_3g_n.img").read_bytes() == \
        (new_dir / "modem.img").read_bytes()
