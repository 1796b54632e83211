"""Safe unpacking: real 7z/zip archives, benign and hostile."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import py7zr
import pytest
from fetch_testlib import (
    BUILD,
    CHARDEV_MODE,
    SCATTER,
    SYMLINK_MODE,
    firmware_files,
    make_7z,
    make_zip,
    patch_7z_name,
    zip_raw_name,
    zip_with_mode,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from romkit.errors import ArchiveError, DiskError, RomkitError, UsageError
from romkit.fetch.archive import ExtractLimits, detect_format, extract, find_firmware

SCATTER_OK = {"fw/MT6589_Android_scatter_emmc.txt": b"partition_index: SYS0\n"}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file()}


def _only_dest_written(parent: Path, allowed: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} <= allowed


@pytest.mark.parametrize("kind", ["7z", "zip"])
def test_extract_real_archive(tmp_path: Path, fixtures_dir: Path, kind: str) -> None:
    """The package's single top folder is named like DEST (`romkit fetch BUILD` unpacks into
    ./BUILD): its content goes straight into DEST, not into DEST/BUILD/ (issue 18)."""
    files = firmware_files(fixtures_dir)
    arc = tmp_path / f"fw.{kind}"
    (make_7z if kind == "7z" else make_zip)(arc, files)
    dest = tmp_path / "out" / BUILD
    events: list = []
    res = extract(arc, dest, on_progress=events.append)
    assert _tree(dest) == {k.removeprefix(f"{BUILD}/"): v for k, v in files.items()}
    assert res.firmware_folder == (dest / "target_bin").resolve()
    assert (res.firmware_folder / SCATTER).is_file()
    assert res.flash_tool_folder == (dest / "SP_Flash_Tool_v3.1316").resolve()
    assert res.files == len(files)
    assert res.bytes == sum(len(v) for v in files.values())
    assert any(e.kind == "end" and e.task == "unpack" for e in events)
    _only_dest_written(dest.parent, {BUILD})


@pytest.mark.parametrize("kind", ["7z", "zip"])
def test_top_folder_named_like_the_archive_is_not_doubled(tmp_path: Path, fixtures_dir: Path,
                                                          kind: str) -> None:
    files = firmware_files(fixtures_dir)
    arc = tmp_path / f"{BUILD}.{kind}"
    (make_7z if kind == "7z" else make_zip)(arc, files)
    dest = tmp_path / "work" / "fw"  # --dest with another name: the archive's name decides
    res = extract(arc, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["SP_Flash_Tool_v3.1316", "target_bin"]
    assert res.firmware_folder == (dest / "target_bin").resolve()
    _only_dest_written(dest.parent, {"fw"})
    # a top folder with another name is kept: it may be all the user knows the package by
    other = tmp_path / "other.zip"
    make_zip(other, {f"Lenovo_S820/{k}": v for k, v in files.items()})
    kept = extract(other, tmp_path / "x")
    assert kept.firmware_folder == (tmp_path / "x" / "Lenovo_S820" / BUILD / "target_bin"
                                    ).resolve()


def test_existing_dest_is_reused_then_replaced_with_force(tmp_path: Path,
                                                          fixtures_dir: Path) -> None:
    files = firmware_files(fixtures_dir, tool=False)
    arc = make_zip(tmp_path / "fw.zip", files)
    dest = tmp_path / "dest"
    extract(arc, dest)
    marker = dest / BUILD / "target_bin" / "boot.img"
    marker.write_bytes(b"prepared by the user")
    again = extract(arc, dest)
    assert again.reused and marker.read_bytes() == b"prepared by the user"
    forced = extract(arc, dest, force=True)
    assert not forced.reused and marker.read_bytes() == files[f"{BUILD}/target_bin/boot.img"]
    _only_dest_written(tmp_path, {"fw.zip", "dest"})


def test_non_firmware_dest_is_refused(tmp_path: Path) -> None:
    arc = make_zip(tmp_path / "fw.zip", SCATTER_OK)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    with pytest.raises(UsageError):
        extract(arc, dest)
    assert (dest / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize("name", ["/abs/evil.txt", "../evil.txt", "fw/../../evil.txt",
                                  "C:/evil.txt", "..\\evil.txt"])
def test_zip_hostile_names_refused(tmp_path: Path, name: str) -> None:
    arc = zip_raw_name(tmp_path / "bad.zip", name, b"evil", extra=SCATTER_OK)
    with pytest.raises(ArchiveError):
        extract(arc, tmp_path / "out" / "dest")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("mode,word", [(SYMLINK_MODE, "symlink"), (CHARDEV_MODE, "device")])
def test_zip_links_and_devices_refused(tmp_path: Path, mode: int, word: str) -> None:
    arc = zip_with_mode(tmp_path / "bad.zip", "fw/link", b"/etc/passwd", mode,
                        extra=SCATTER_OK)
    with pytest.raises(ArchiveError, match=word):
        extract(arc, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_7z_symlink_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.symlink("/etc/passwd", src / "link")
    (src / "scatter.txt").write_bytes(b"partition_index: SYS0\n")
    arc = tmp_path / "bad.7z"
    with py7zr.SevenZipFile(arc, "w") as sz:
        sz.write(src / "scatter.txt", "fw/MT6589_Android_scatter_emmc.txt")
        sz.write(src / "link", "fw/link")
    with pytest.raises(ArchiveError, match="symlink"):
        extract(arc, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("old,new", [("XX/evil.txt", "../evil.txt"),
                                     ("XXXXevil.txt", "/tmpevil.txt")])
def test_7z_hostile_names_refused(tmp_path: Path, old: str, new: str) -> None:
    arc = make_7z(tmp_path / "bad.7z", {**SCATTER_OK, old: b"evil"}, plain_header=True)
    patch_7z_name(arc, old, new)
    with pytest.raises(ArchiveError):
        extract(arc, tmp_path / "out" / "dest")
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmpevil.txt").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("kind", ["7z", "zip"])
def test_bomb_refused_by_ratio(tmp_path: Path, kind: str) -> None:
    files = {**SCATTER_OK, "fw/zero.img": bytes(8 * 1024 * 1024)}
    arc = tmp_path / f"bomb.{kind}"
    (make_7z if kind == "7z" else make_zip)(arc, files)
    ratio = 8 * 1024 * 1024 / arc.stat().st_size
    assert ratio > 50  # independent check that this archive really is a small bomb
    with pytest.raises(ArchiveError, match="expand"):
        extract(arc, tmp_path / "dest", limits=ExtractLimits(ratio_floor=0, max_ratio=20))
    assert not (tmp_path / "dest").exists()
    _only_dest_written(tmp_path, {arc.name})


def test_bomb_refused_by_total(tmp_path: Path) -> None:
    arc = make_zip(tmp_path / "big.zip", {**SCATTER_OK, "fw/a.img": bytes(2 * 1024 * 1024)})
    with pytest.raises(ArchiveError, match="unpack to"):
        extract(arc, tmp_path / "dest", limits=ExtractLimits(max_total=1024 * 1024))


def test_not_enough_space(tmp_path: Path) -> None:
    arc = make_zip(tmp_path / "fw.zip", SCATTER_OK)
    with pytest.raises(DiskError, match="free space"):
        extract(arc, tmp_path / "dest", limits=ExtractLimits(free_margin=1 << 60))


def test_lying_sizes_leave_nothing(tmp_path: Path) -> None:
    """A zip whose central directory understates a member: refused, no folder left."""
    arc = make_zip(tmp_path / "lie.zip", {**SCATTER_OK, "fw/a.img": os.urandom(100_000)})
    raw = bytearray(arc.read_bytes())
    cd = raw.rfind(b"PK\x01\x02")  # central entry of the last member (fw/a.img)
    raw[cd + 24:cd + 28] = (1000).to_bytes(4, "little")  # uncompressed size field
    arc.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError):
        extract(arc, tmp_path / "dest")
    _only_dest_written(tmp_path, {"lie.zip"})


def test_rar_and_unknown_refused(tmp_path: Path) -> None:
    rar = tmp_path / "fw.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x01\x00" + bytes(100))
    with pytest.raises(ArchiveError, match="RAR") as info:
        detect_format(rar)
    assert "--from DIR" in info.value.hint
    junk = tmp_path / "fw.7z"
    junk.write_bytes(b"hello world")
    with pytest.raises(ArchiveError, match="not a 7z or zip"):
        detect_format(junk)


def test_ambiguous_and_missing_scatter(tmp_path: Path) -> None:
    two = make_zip(tmp_path / "two.zip", {"a/MT6589_Android_scatter.txt": b"x",
                                          "b/MT6589_Android_scatter.txt": b"y"})
    with pytest.raises(ArchiveError, match="a, b"):
        extract(two, tmp_path / "d1")
    none = make_zip(tmp_path / "none.zip", {"readme.txt": b"x"})
    with pytest.raises(ArchiveError, match="no firmware folder"):
        extract(none, tmp_path / "d2")
    assert not (tmp_path / "d1").exists() and not (tmp_path / "d2").exists()


def test_duplicate_and_file_dir_clash(tmp_path: Path) -> None:
    arc = tmp_path / "dup.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("fw/MT6589_Android_scatter.txt", b"x")
        zf.writestr("fw/a", b"1")
        with pytest.warns(UserWarning):
            zf.writestr("fw/a", b"2")
    with pytest.raises(ArchiveError, match="twice"):
        extract(arc, tmp_path / "d")
    clash = make_zip(tmp_path / "clash.zip", {"fw/MT6589_Android_scatter.txt": b"x",
                                              "fw/a": b"1", "fw/a/b": b"2"})
    with pytest.raises(ArchiveError, match="both"):
        extract(clash, tmp_path / "d")


def test_leftover_temp_dirs_are_cleared(tmp_path: Path) -> None:
    stale = tmp_path / ".dest.unpacking-abc"
    stale.mkdir()
    (stale / "half.img").write_bytes(b"x")
    extract(make_zip(tmp_path / "fw.zip", SCATTER_OK), tmp_path / "dest")
    assert not stale.exists()


def test_find_firmware_in_folder(tmp_path: Path, fixtures_dir: Path) -> None:
    for name, data in firmware_files(fixtures_dir).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    fw, tool = find_firmware(tmp_path)
    assert fw == (tmp_path / BUILD / "target_bin").resolve()
    assert tool is not None and (tool / "MTK_AllInOne_DA.bin").is_file()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600), cut=st.integers(min_value=0, max_value=2000),
       kind=st.sampled_from(["7z", "zip"]), flip=st.integers(min_value=0, max_value=2000))
def test_garbage_and_truncated_raise_only_romkit_errors(
        tmp_path_factory: pytest.TempPathFactory, data: bytes, cut: int, kind: str,
        flip: int) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    arc = tmp / f"a.{kind}"
    (make_7z if kind == "7z" else make_zip)(arc, {**SCATTER_OK, "fw/x.bin": data})
    raw = bytearray(arc.read_bytes())
    if flip < len(raw):
        raw[flip] ^= 0x5A
    arc.write_bytes(bytes(raw[:max(1, len(raw) - cut % len(raw))]) if cut else bytes(raw))
    try:
        res = extract(arc, tmp / "dest")
    except RomkitError:
        assert not (tmp / "dest").exists()
    else:
        assert (res.firmware_folder / "MT6589_Android_scatter_emmc.txt").is_file()
    assert {p.name for p in tmp.iterdir()} <= {arc.name, "dest"}


def test_7z_member_named_only_dots_is_refused_as_hostile(tmp_path: Path) -> None:
    from fetch_testlib import make_7z, patch_7z_name

    from romkit.errors import ArchiveError
    from romkit.fetch.archive import extract

    src = make_7z(tmp_path / "fw.7z", {"target_bin/MT6589_Android_scatter_emmc.txt": b"s",
                                       "dots": b"x"}, plain_header=True)
    patch_7z_name(src, "dots", "././")
    with pytest.raises(ArchiveError) as ei:
        extract(src, tmp_path / "out")
    assert "only '.' parts" in ei.value.message
    assert not (tmp_path / "out").exists()


def test_drive_path_hidden_behind_dot_is_refused(tmp_path: Path) -> None:
    # found by fuzzing: "./C:" cleaned to "C:", which py7zr then refused as "corrupt"
    from romkit.errors import ArchiveError
    from romkit.fetch.archive import clean_name

    with pytest.raises(ArchiveError, match="absolute path"):
        clean_name("./C:")
    with pytest.raises(ArchiveError, match="absolute path"):
        clean_name("./D:/x.img")
    assert clean_name("./fw/C_x.img") == "fw/C_x.img"
