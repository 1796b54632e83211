"""Structure-aware fuzzing of archive extraction: real zip and 7z firmware packages with
hostile member names (`..`, absolute, drive letters, backslashes, very long, NUL, control
characters, file-vs-folder clashes) and hostile member kinds (symlinks, device files).

Property, whatever the archive: `extract` either unpacks every file *inside* the destination,
or raises a RomkitError leaving nothing behind — no destination, no temp folder, and not a
single new path anywhere else in the sandbox.
"""

from __future__ import annotations

import os
import uuid
import zipfile
from pathlib import Path

import pytest
from fetch_testlib import CHARDEV_MODE, SYMLINK_MODE, make_7z, patch_7z_name
from fuzzlib import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from romkit.errors import RomkitError
from romkit.fetch.archive import extract

pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
FUZZ = fuzz_settings(70)
SCATTER = "fw/target_bin/MT6589_Android_scatter_emmc.txt"
BASE = {SCATTER: b"PRELOADER 0x0\n{\n}\n", "fw/target_bin/boot.img": b"\x01" * 1000}

component = st.one_of(
    st.sampled_from(("a", "b", "fw", "target_bin", "sub", "boot.img",
                     "MT6589_Android_scatter_emmc.txt")),
    st.sampled_from(("..", ".", "", "C:", "con", " ", "...", "é", "💥")),
    st.sampled_from(("x\x00y", "x\ny", "x\x1by", "\x7f")),
    st.sampled_from(("c" * 255, "a" * 256, "b" * 1000)),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
            min_size=1, max_size=12),
)


@st.composite
def member_name(draw: st.DrawFn) -> str:
    parts = draw(st.lists(component, min_size=1, max_size=5))
    sep = draw(st.sampled_from(("/", "/", "\\")))
    lead = draw(st.sampled_from(("", "", "", "/", "\\", "C:/", "C:\\", "./", "fw/")))
    return lead + sep.join(parts)


def _tree(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def _zip(path: Path, hostile: list[tuple[str, int | None]]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in BASE.items():
            zf.writestr(name, data)
        for i, (name, mode) in enumerate(hostile):
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.create_system = 3
                info.external_attr = (mode & 0xFFFF) << 16
            zf.writestr(info, f"hostile {i}".encode())


def _utf16_units(name: str) -> int:
    return len(name.encode("utf-16-le")) // 2


def _7z(path: Path, hostile: list[tuple[str, int | None]]) -> None:
    """py7zr refuses to *write* bad names, so write ASCII placeholders of the same UTF-16
    length and patch the real names into the (plain) header afterwards. Member kinds are
    varied in zip only. Names a 7z cannot hold at all (empty, or with NUL, which ends a 7z
    name) are left out; zip covers them."""
    files = dict(BASE)
    swaps = []
    for i, (name, _mode) in enumerate(hostile):
        units = _utf16_units(name)
        if units == 0 or "\x00" in name:
            continue
        stand_in = (f"Q{i}" + "q" * units)[:units] if units >= 2 else f"{i}"
        assert _utf16_units(stand_in) == units
        if stand_in in files:
            continue
        files[stand_in] = f"hostile {i}".encode()
        swaps.append((stand_in, name))
    make_7z(path, files, plain_header=True)
    for stand_in, name in swaps:
        patch_7z_name(path, stand_in, name)


def _check(sandbox: Path, archive: Path, fmt: str, names: list[str]) -> None:
    dest = sandbox / "out"
    before = _tree(sandbox)
    try:
        result = extract(archive, dest)
    except RomkitError as exc:
        assert exc.message.strip()
        # The archives are well-formed (only names and kinds are hostile): a "corrupt"
        # refusal means the archive was built wrong or the reader mis-parsed it.
        assert "corrupt or unreadable" not in exc.message, f"{fmt}: {exc.message}"
        assert not dest.exists(), f"{fmt}: refused ({exc.message}) but left {dest}"
        assert _tree(sandbox) == before, f"{fmt}: refused but left files behind"
        return
    after = _tree(sandbox)
    outside = {p for p in after - before if not p.startswith("out")}
    assert not outside, f"{fmt}: wrote outside the destination: {sorted(outside)[:3]}"
    real_dest = dest.resolve()
    for p in dest.rglob("*"):
        assert not p.is_symlink(), f"{fmt}: extracted a symlink {p}"
        assert real_dest in p.resolve().parents, f"{fmt}: {p} escapes {dest}"
    for name, data in BASE.items():
        assert (dest / name).read_bytes() == data, f"{fmt}: {name} unpacked wrong"
    assert result.firmware_folder == (dest / SCATTER).parent.resolve()


hostile_members = st.lists(
    st.tuples(member_name(),
              st.sampled_from((None, None, None, None, None, SYMLINK_MODE, CHARDEV_MODE))),
    min_size=1, max_size=3)


@FUZZ
@given(hostile=hostile_members)
def test_zip_with_hostile_members(tmp_path: Path, hostile: list[tuple[str, int | None]]) -> None:
    sandbox = tmp_path / uuid.uuid4().hex
    sandbox.mkdir()
    archive = sandbox / "pkg.zip"  # not "fw": its top folder is not unwrapped (issue 18)
    _zip(archive, hostile)
    _check(sandbox, archive, "zip", [n for n, _ in hostile])


@FUZZ
@given(hostile=hostile_members)
def test_7z_with_hostile_members(tmp_path: Path, hostile: list[tuple[str, int | None]]) -> None:
    sandbox = tmp_path / uuid.uuid4().hex
    sandbox.mkdir()
    archive = sandbox / "pkg.7z"
    _7z(archive, hostile)
    _check(sandbox, archive, "7z", [n for n, _ in hostile])


@pytest.mark.parametrize("fmt", ["zip", "7z"])
def test_regression_overlong_folder_name(tmp_path: Path, fmt: str) -> None:
    """Found by this fuzzer: a member folder name over 255 bytes used to escape as a raw
    OSError (ENAMETOOLONG) from the folder creation in `extract`."""
    archive = tmp_path / f"pkg.{fmt}"
    (_zip if fmt == "zip" else _7z)(archive, [("fw/" + "a" * 300 + "/x.img", None)])
    _check(tmp_path, archive, fmt, [])
