"""`romkit.prepare` on real synthetic firmware folders: plan, apply, records, undo, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path

import py7zr
import pytest
from fuzz.fuzzlib import mutated_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from romkit.catalog import add_user_mirror
from romkit.errors import (
    ArchiveError,
    DiskError,
    FirmwareFormatError,
    RomkitError,
    UsageError,
    ValidationError,
)
from romkit.fetch.localserver import LocalServer
from romkit.firmware.preloader import to_boot1_image
from romkit.prepare import (
    PrepareConflictError,
    PrepareRequest,
    apply_plan,
    load_preloader_source,
    parse_manifest,
    plan_prepare,
    prepare,
    undo_last,
    update_checksum_text,
)
from romkit.sim.artifacts import EmiSpec, build_preloader, da_s820, preloader_s820
from romkit.sim.artifacts_modem import build_modem_folder, modem_files
from romkit.sim.s820 import PART_2013

BPL = "BPLGUInfoCustomAppSrcP_MT6589_S00_MOLY_WR8_W1248_MD_WG_MP_V9_F1_P2"
DBG = "DbgInfo_MT6589_S00_MOLY_WR8_W1248_MD_WG_MP_V9_F1_P2"
PLAIN = {"modem.img", "catcher_filter.bin", BPL, DBG}
KITKAT = {"modem_1_3g_n.img", "catcher_filter_1_3g_n.bin", f"{BPL}_1_3g_n", f"{DBG}_1_3g_n"}


# -- helpers --------------------------------------------------------------------------------------


def make_folder(base: Path, android: str = "4.2.1") -> Path:
    from romkit.sim.sample_firmware import build_s820_folder

    return build_s820_folder(base, preloader=preloader_s820(2013), da=da_s820(),
                             android=android, image_scale=0.1)


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "pkg")


@pytest.fixture
def pl2014(tmp_path: Path) -> Path:
    path = tmp_path / "preloader_2014.bin"
    path.write_bytes(preloader_s820(2014))
    return path


def snapshot(folder: Path, *, records: bool = True) -> dict[str, str]:
    """sha256 of every file below `folder` (relative path → hex), optionally without records."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if not records and rel.startswith(".romkit"):
            continue
        if p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir() and not any(p.iterdir()):
            out[rel + "/"] = "empty dir"
    return out


def byte_sum(data: bytes) -> int:
    return sum(data) & 0xFFFF


def ini_value(text: str, key: str) -> int:
    m = re.search(rf"^{key}\s*=\s*0x([0-9A-Fa-f]+)\s*$", text, re.MULTILINE)
    assert m, f"{key} not in checksum.ini"
    return int(m.group(1), 16)


def req(folder: Path, **kw: object) -> PrepareRequest:
    return PrepareRequest.from_options(folder=folder, **kw)


# -- the main story: dry run, swap, no-op, undo ---------------------------------------------------


def test_dry_run_shows_plan_and_changes_nothing(pkg: Path, pl2014: Path) -> None:
    before = snapshot(pkg)
    result = prepare(req(pkg, preloader=pl2014, dry_run=True))
    assert snapshot(pkg) == before
    assert not result.applied and result.record is None
    plan = result.plan
    assert plan is not None
    assert [(s.kind, s.action, s.path) for s in plan.steps] == [
        ("preloader", "replace", "preloader_s820.bin"), ("checksum", "replace", "Checksum.ini")]
    assert plan.preloader is not None
    assert [p.part for p in plan.preloader.current_parts or []] == ["Samsung SIM13S"]
    assert [p.part for p in plan.preloader.new_parts] == ["Samsung SIM13S", "Hynix SIM14H"]
    assert [p.part for p in plan.preloader.added] == ["Hynix SIM14H"]
    assert plan.preloader.dropped == []
    assert plan.steps[0].after_sha256 == hashlib.sha256(pl2014.read_bytes()).hexdigest()


def test_swap_checksum_noop_and_undo(pkg: Path, pl2014: Path) -> None:
    before = snapshot(pkg)
    old_ini = (pkg / "Checksum.ini").read_text()
    result = prepare(req(pkg, preloader=pl2014))
    assert result.applied and result.record is not None

    new_pre = (pkg / "preloader_s820.bin").read_bytes()
    assert new_pre == pl2014.read_bytes()
    new_ini = (pkg / "Checksum.ini").read_text()
    assert ini_value(new_ini, "PRELOADER") == byte_sum(new_pre)
    assert ini_value(old_ini, "PRELOADER") != byte_sum(new_pre)
    # Every other line (version, Change_ID, other entries) is kept as it was.
    changed = [(a, b) for a, b in zip(old_ini.splitlines(), new_ini.splitlines(), strict=True)
               if a != b]
    assert [a.split("=")[0] for a, _ in changed] == ["PRELOADER"]
    assert result.validation is not None and result.validation.ok
    assert not [f for f in result.validation.findings if f.code.startswith("checksum")]

    # The record: backups byte-identical to the old files, manifest hashes independent.
    manifest = json.loads((result.record / "manifest.json").read_text())
    for step in manifest["steps"]:
        backup = (result.record / step["backup"]).read_bytes()
        assert hashlib.sha256(backup).hexdigest() == before[step["path"]]
        assert step["after_sha256"] == hashlib.sha256((pkg / step["path"]).read_bytes()
                                                      ).hexdigest()

    after = snapshot(pkg)
    again = prepare(req(pkg, preloader=pl2014))
    assert again.plan is not None and again.plan.nothing_to_do and not again.applied
    assert snapshot(pkg) == after

    undone = prepare(req(pkg, undo=True))
    assert undone.undo is not None
    assert snapshot(pkg, records=False) == {k: v for k, v in before.items()}
    manifest = json.loads((result.record / "manifest.json").read_text())
    assert manifest["undone"]
    with pytest.raises(UsageError, match="no prepare to undo"):
        undo_last(pkg)


def test_undo_dry_run_changes_nothing(pkg: Path, pl2014: Path) -> None:
    prepare(req(pkg, preloader=pl2014))
    after = snapshot(pkg)
    res = undo_last(pkg, dry_run=True)
    assert {f.path for f in res.files} == {"preloader_s820.bin", "Checksum.ini"}
    assert snapshot(pkg) == after


@pytest.mark.parametrize("kind", ["zip", "7z"])
def test_preloader_from_an_archive(pkg: Path, tmp_path: Path, kind: str) -> None:
    data = preloader_s820(2014)
    path = tmp_path / f"preloader_2014.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("S820 preloader 2014/readme.txt", "flash me")
            zf.writestr("S820 preloader 2014/preloader_s820.bin", data)
    else:
        with py7zr.SevenZipFile(path, "w") as sz:
            sz.writestr(b"flash me", "readme.txt")
            sz.writestr(data, "preloader_s820.bin")
    prepare(req(pkg, preloader=path))
    assert (pkg / "preloader_s820.bin").read_bytes() == data


def test_boot1_dump_is_unwrapped(pkg: Path, tmp_path: Path) -> None:
    raw = preloader_s820(2014)
    dump = tmp_path / "boot1.bin"
    dump.write_bytes(to_boot1_image(raw))
    result = prepare(req(pkg, preloader=dump))
    assert (pkg / "preloader_s820.bin").read_bytes() == raw
    assert result.validation is not None and result.validation.ok


# -- refusals leave the folder untouched ----------------------------------------------------------


def test_non_preloader_is_refused(pkg: Path, tmp_path: Path) -> None:
    before = snapshot(pkg)
    junk = tmp_path / "preloader_2014.bin"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(FirmwareFormatError) as exc:
        prepare(req(pkg, preloader=junk))
    assert exc.value.spft_code == 5066
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(preloader_s820(2014)[:100])
    with pytest.raises(FirmwareFormatError):
        prepare(req(pkg, preloader=truncated))
    empty_zip = tmp_path / "no_preloader.zip"
    with zipfile.ZipFile(empty_zip, "w") as zf:
        zf.writestr("readme.txt", "nothing here")
    with pytest.raises(ArchiveError, match="no preloader"):
        prepare(req(pkg, preloader=empty_zip))
    with pytest.raises(UsageError, match="not found"):
        prepare(req(pkg, preloader=tmp_path / "missing.bin"))
    assert snapshot(pkg) == before


@pytest.mark.parametrize(("project", "emi_version", "match"), [
    ("preloader_mt6582_evb.bin", 10, "MT6582"),
    ("preloader_s820.bin", 11, "v11"),
])
def test_preloader_for_another_chip_is_refused(pkg: Path, tmp_path: Path, project: str,
                                               emi_version: int, match: str) -> None:
    before = snapshot(pkg)
    other = tmp_path / "other.bin"
    other.write_bytes(build_preloader([EmiSpec(PART_2013.cid[:9])], project=project,
                                      emi_version=emi_version))
    with pytest.raises(ValidationError, match=match):
        prepare(req(pkg, preloader=other))
    assert snapshot(pkg) == before


def test_wrong_platform_modem_is_refused(pkg: Path, tmp_path: Path) -> None:
    before = snapshot(pkg)
    src = build_modem_folder(tmp_path / "mt6582", platform="MT6582_S00")
    with pytest.raises(ValidationError, match="MT6582_S00"):
        prepare(req(pkg, modem=src))
    assert snapshot(pkg) == before


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        prepare(req(tmp_path / "nope", drop_checksum=True))
    with pytest.raises(UsageError):
        undo_last(tmp_path / "nope")


def test_unwritable_record_location(pkg: Path, pl2014: Path) -> None:
    """The record folder cannot be made (a file is in the way): nothing else is touched."""
    (pkg / ".romkit").write_text("in the way")
    before = snapshot(pkg)
    with pytest.raises(DiskError):
        prepare(req(pkg, preloader=pl2014))
    assert snapshot(pkg) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_folder(pkg: Path, pl2014: Path) -> None:
    before = snapshot(pkg)
    pkg.chmod(0o555)
    try:
        with pytest.raises(DiskError):
            prepare(req(pkg, preloader=pl2014))
    finally:
        pkg.chmod(0o755)
    assert snapshot(pkg) == before


def test_stale_plan_is_refused(pkg: Path, pl2014: Path) -> None:
    plan = plan_prepare(req(pkg, preloader=pl2014))
    (pkg / "preloader_s820.bin").write_bytes(preloader_s820(2013) + b"edited")
    before = snapshot(pkg)
    with pytest.raises(PrepareConflictError, match="changed since the plan"):
        apply_plan(plan)
    assert snapshot(pkg) == before


def test_failed_step_rolls_back_everything(pkg: Path, pl2014: Path, tmp_path: Path) -> None:
    """The modem source changes after planning: the preloader swap already done is undone."""
    src = build_modem_folder(tmp_path / "modem")
    plan = plan_prepare(req(pkg, preloader=pl2014, modem=src, modem_naming="plain"))
    assert [s.kind for s in plan.steps][:2] == ["preloader", "checksum"]
    before = snapshot(pkg)
    (src / "modem.img").write_bytes(b"changed after planning")
    with pytest.raises(PrepareConflictError):
        apply_plan(plan)
    assert snapshot(pkg) == before
    assert not (pkg / ".romkit").exists() and not (pkg / "modem").exists()


def test_undo_refuses_after_a_hand_edit(pkg: Path, pl2014: Path) -> None:
    prepare(req(pkg, preloader=pl2014))
    (pkg / "Checksum.ini").write_text("[CheckSum]\nPRELOADER=0x1234\n")
    edited = snapshot(pkg)
    with pytest.raises(PrepareConflictError, match="Checksum.ini"):
        undo_last(pkg)
    assert snapshot(pkg) == edited


def test_request_combinations_are_checked(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="undo"):
        PrepareRequest.from_options(undo=True, drop_checksum=True)
    with pytest.raises(UsageError, match="2013"):
        PrepareRequest.from_options(device_year=2013, preloader=tmp_path / "x.bin")
    with pytest.raises(UsageError, match="device_year"):
        PrepareRequest.from_options(device_year=2015)
    with pytest.raises(UsageError, match="modem_naming"):
        PrepareRequest.from_options(modem_naming="3g")


def test_nothing_asked(pkg: Path) -> None:
    before = snapshot(pkg)
    result = prepare(req(pkg))
    assert result.plan is not None and result.plan.nothing_to_do
    assert any("nothing was asked" in n for n in result.plan.notes)
    assert snapshot(pkg) == before


# -- device year through the catalog --------------------------------------------------------------


def test_device_year_2014_downloads_from_a_user_mirror(pkg: Path) -> None:
    data = preloader_s820(2014)
    with LocalServer({"preloader_2014.bin": data}) as srv:
        add_user_mirror("preloader-2014", srv.url("preloader_2014.bin"))
        result = prepare(req(pkg, device_year=2014))
        assert srv.bytes_served("preloader_2014.bin") >= len(data)
    assert (pkg / "preloader_s820.bin").read_bytes() == data
    assert ini_value((pkg / "Checksum.ini").read_text(), "PRELOADER") == byte_sum(data)
    assert result.validation is not None and result.validation.ok
    assert result.plan is not None and result.plan.preloader is not None
    assert "Hynix SIM14H" in [p.part for p in result.plan.preloader.added]


def test_device_year_2014_without_a_mirror(pkg: Path) -> None:
    before = snapshot(pkg)
    with pytest.raises(UsageError) as exc:
        prepare(req(pkg, device_year=2014))
    assert "--preloader" in exc.value.hint and "add-mirror" in exc.value.hint
    assert snapshot(pkg) == before


def test_device_year_2013_keeps_or_restores_the_build_preloader(pkg: Path, pl2014: Path
                                                                ) -> None:
    before = snapshot(pkg)
    fresh = prepare(req(pkg, device_year=2013))
    assert fresh.plan is not None and fresh.plan.nothing_to_do
    prepare(req(pkg, preloader=pl2014))
    back = prepare(req(pkg, device_year=2013))
    assert back.applied
    assert snapshot(pkg, records=False) == before
    assert back.plan is not None and [p.part for p in back.plan.preloader.dropped] == [
        "Hynix SIM14H"]  # type: ignore[union-attr]
    again = prepare(req(pkg, device_year=2013))
    assert again.plan is not None and again.plan.nothing_to_do


# -- checksum.ini ---------------------------------------------------------------------------------


def test_drop_checksum_and_undo(pkg: Path, pl2014: Path) -> None:
    before = snapshot(pkg)
    result = prepare(req(pkg, preloader=pl2014, drop_checksum=True))
    assert not (pkg / "Checksum.ini").exists()
    assert (pkg / "preloader_s820.bin").read_bytes() == pl2014.read_bytes()
    assert result.validation is not None
    assert "checksum-missing" in {f.code for f in result.validation.findings}
    undo_last(pkg)
    assert snapshot(pkg, records=False) == before


def test_v3_checksum_file_keeps_its_format(pkg: Path, pl2014: Path) -> None:
    ini = pkg / "Checksum.ini"
    ini.unlink()
    v3 = pkg / "Checksum.INI"
    text = "[IsEnableChecksum]\r\nCHECKSUM_SWITCH = 0\r\n[CheckSum]\r\nUBOOT = 0x104A60E\r\n"
    v3.write_bytes(text.encode())
    prepare(req(pkg, preloader=pl2014))
    new = v3.read_bytes().decode()
    want = byte_sum(pl2014.read_bytes())
    assert new == text + f"PRELOADER = 0x{want:04X}\r\n"


def test_update_checksum_text_replaces_and_adds() -> None:
    text = "; c\n[VERSION]\nVERSION=V1\n[CheckSum]\npreloader=0x7EAD\nlk=0x5FFB\n"
    got = update_checksum_text(text, {"PRELOADER": ("PRELOADER", 0x1234),
                                      "BOOT": ("boot", 0xBEEF)})
    assert got == "; c\n[VERSION]\nVERSION=V1\n[CheckSum]\npreloader=0x1234\nlk=0x5FFB\n" \
                  "boot=0xBEEF\n"
    with pytest.raises(FirmwareFormatError):
        update_checksum_text("[VERSION]\nX=1\n", {"PRELOADER": ("PRELOADER", 1)})


def test_update_checksum_text_empty_value_and_odd_line_breaks() -> None:
    """Found by the fuzz below: an empty `PRELOADER=` must get its value on its own line
    (not on the next one, glued to UBOOT), and characters Python's splitlines() treats as
    line breaks (\x1e, \u2028) are plain text in an INI file, not line ends."""
    got = update_checksum_text("[CheckSum]\r\nPRELOADER= \r\nUBOOT=0x1F00\r\n",
                               {"PRELOADER": ("PRELOADER", 0x1234)})
    assert got == "[CheckSum]\r\nPRELOADER= 0x1234\r\nUBOOT=0x1F00\r\n"
    got = update_checksum_text("[CheckSum]\nlk=0x1\x1e2\npreloader=0x5\n",
                               {"PRELOADER": ("PRELOADER", 0x1234)})
    assert got == "[CheckSum]\nlk=0x1\x1e2\npreloader=0x1234\n"


_INI_SEEDS = (
    (Path(__file__).parent / "fixtures" / "checksum-mt8167" / "Checksum.ini").read_text(),
    "[IsEnableChecksum]\r\nCHECKSUM_SWITCH=1\r\n[CheckSum]\r\nPRELOADER=5a3c\r\n"
    "UBOOT=0x1F00\r\nBOOTIMG=ffff\r\n",
    "; c\n[VERSION]\nVERSION=V1\n[CheckSum]\nlk = 0x5FFB\nboot = 0x0001\n",
    "[CheckSum]\n  preloader  =  0x7EAD\n",
)


_INI_LINES = re.compile(r"\r\n|\r|\n")  # what ends a line for SP Flash Tool; not \x1e, \u2028 …


def _first_preloader(lines: list[str]) -> int | None:
    """Index of the first `preloader = …` line inside a [CheckSum] section, read the plain
    INI way (independent of romkit's key regex)."""
    section = ""
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1].strip().lower()
        elif (section == "checksum" and not s.startswith((";", "#")) and "=" in s
              and s.split("=", 1)[0].strip().upper() == "PRELOADER"):
            return i
    return None


@settings(max_examples=200, deadline=None)
@given(mutated_text(_INI_SEEDS, max_edits=3), st.integers(0, 0xFFFFFFFF))
def test_update_checksum_text_fuzz(text: str, value: int) -> None:
    """Near-valid checksum.ini texts: the first PRELOADER entry of [CheckSum] gets the 16-bit
    value (added when missing), and every other line is kept."""
    try:
        got = update_checksum_text(text, {"PRELOADER": ("PRELOADER", value)})
    except RomkitError:
        assert not any(ln.strip().lower() == "[checksum]" for ln in text.splitlines())
        return
    before, after = _INI_LINES.split(text), _INI_LINES.split(got)
    at = _first_preloader(after)
    assert at is not None
    assert after[at].split("=", 1)[1].strip() == f"0x{value % 0x10000:04X}"
    old_at = _first_preloader(before)
    if old_at is not None:
        del before[old_at]
    del after[at]
    while after and after[-1] == "" and (not before or before[-1] != ""):
        after.pop()  # an entry added at the very end brings its own line ending
    assert after == before


# -- modem ----------------------------------------------------------------------------------------


def test_modem_plain_for_jelly_bean(pkg: Path, tmp_path: Path) -> None:
    src = build_modem_folder(tmp_path / "modem", naming="1_3g_n")
    result = prepare(req(pkg, modem=src))
    out = pkg / "modem"
    assert {p.name for p in out.iterdir()} == PLAIN | {"README.txt"}
    for name, data in modem_files(naming="1_3g_n").items():
        plain = name.replace("_1_3g_n", "")
        assert (out / plain).read_bytes() == data
    readme = (out / "README.txt").read_text()
    assert "modem.img -> /system/etc/firmware/" in readme
    assert f"{BPL} -> /system/etc/mddb/" in readme
    assert result.plan is not None and result.plan.modem is not None
    assert "build_info.txt" in result.plan.modem.how and "4.2.1" in result.plan.modem.how
    assert result.plan.modem.header is not None
    assert result.plan.modem.header.platform == "MT6589_S00"
    again = prepare(req(pkg, modem=src))
    assert again.plan is not None and again.plan.nothing_to_do


def test_modem_suffixed_for_kitkat(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pkg", android="4.4.2")
    src = build_modem_folder(tmp_path / "modem")
    result = prepare(req(folder, modem=src))
    assert {p.name for p in (folder / "modem").iterdir()} == KITKAT | {"README.txt"}
    assert result.plan is not None and result.plan.modem is not None
    assert result.plan.modem.naming == "1_3g_n"


def test_modem_naming_from_the_catalog_build(tmp_path: Path) -> None:
    """A folder unpacked by fetch sits under the build's id: the catalog's Android version
    (4.2.1 for S124) wins over what the folder's own files claim."""
    folder = make_folder(tmp_path / "S820_ROW_S124_140404", android="4.4.2")
    src = build_modem_folder(tmp_path / "modem")
    result = prepare(req(folder, modem=src))
    assert result.plan is not None and result.plan.modem is not None
    assert result.plan.modem.naming == "plain"
    assert "catalog" in result.plan.modem.how and "S820_ROW_S124_140404" in result.plan.modem.how


def test_modem_naming_from_the_system_image(pkg: Path, tmp_path: Path) -> None:
    (pkg / "build_info.txt").unlink()
    src = build_modem_folder(tmp_path / "modem")
    with pytest.raises(UsageError, match="modem naming"):
        prepare(req(pkg, modem=src))
    with (pkg / "system.img").open("r+b") as fh:
        fh.seek(5000)
        fh.write(b"\x00modem_1_3g_n.img\x00")
    plan = plan_prepare(req(pkg, modem=src))
    assert plan.modem is not None and plan.modem.naming == "1_3g_n"
    assert "system.img" in plan.modem.how


def test_modem_rename_in_place_and_undo(pkg: Path) -> None:
    out = build_modem_folder(pkg / "modem", naming="1_3g_n")
    before = snapshot(pkg)
    result = prepare(req(pkg, modem=out, modem_naming="plain"))
    assert {p.name for p in out.iterdir()} == PLAIN | {"README.txt"}
    removed = {s.path for s in result.plan.steps if s.action == "remove"}  # type: ignore[union-attr]
    assert removed == {f"modem/{n}" for n in KITKAT}
    undo_last(pkg)
    assert snapshot(pkg, records=False) == before


def test_modem_folder_without_modem_files(pkg: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hi")
    with pytest.raises(UsageError, match="no modem files"):
        prepare(req(pkg, modem=empty, modem_naming="plain"))
    with pytest.raises(UsageError, match="not found"):
        prepare(req(pkg, modem=tmp_path / "missing", modem_naming="plain"))


# -- record manifests are parsed defensively ------------------------------------------------------


def test_manifest_refuses_paths_that_escape() -> None:
    good = {"created": "x", "folder": "/f", "steps": [
        {"kind": "preloader", "action": "remove", "path": "preloader.bin",
         "before_sha256": "0" * 64, "backup": "files/000-preloader.bin"}]}
    assert parse_manifest(json.dumps(good)).steps[0].path == "preloader.bin"
    for bad in ("../etc/passwd", "/etc/passwd", "a/../../b", "C:evil", "a\\b", ""):
        doc = json.loads(json.dumps(good))
        doc["steps"][0]["path"] = bad
        with pytest.raises(FirmwareFormatError):
            parse_manifest(json.dumps(doc))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=20).map(lambda v: json.dumps(v).encode())))
def test_manifest_parser_fuzz(data: bytes) -> None:
    try:
        parse_manifest(data)
    except FirmwareFormatError:
        pass


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.sampled_from([b"PK\x03\x04", b"7z\xbc\xaf\x27\x1c", b"MMM\x01\x38\x00\x00\x00",
                        b"EMMC_BOOT", b""]), st.binary(max_size=600))
def test_preloader_source_fuzz(tmp_path: Path, magic: bytes, body: bytes) -> None:
    """Any file passed as --preloader either loads or fails with a RomkitError."""
    path = tmp_path / "fuzz.bin"
    path.write_bytes(magic + body)
    try:
        load_preloader_source(path)
    except RomkitError:
        pass
