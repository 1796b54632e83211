"""Calibration backup store and run journal, on real files (a file stands in for the eMMC)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from romkit import paths
from romkit.errors import IntegrityError, RomkitError, UsageError
from romkit.flash import journal as jr
from romkit.flash.backup import (
    MANIFEST,
    StorageRange,
    find_set,
    good_set,
    list_sets,
    load_set,
    parse_manifest,
    take_backup,
)
from romkit.progress import Reporter

CID = bytes.fromhex("150100" + b"SIM13S".hex() + "10" + "13579bdf" + "a3" + "01")


def _file_reader(image: Path) -> Callable[..., None]:
    """A RangeReader over a plain file: reads in 4 KiB steps and reports bytes done."""
    def read(rng: StorageRange, sink: BinaryIO, on_bytes: Callable[[int], None] | None = None
             ) -> None:
        with image.open("rb") as fh:
            fh.seek(rng.offset)
            done = 0
            while done < rng.length:
                chunk = fh.read(min(4096, rng.length - done))
                sink.write(chunk)
                done += len(chunk)
                if on_bytes:
                    on_bytes(done)
    return read


@pytest.fixture
def emmc(tmp_path: Path) -> Path:
    p = tmp_path / "emmc.bin"
    p.write_bytes(os.urandom(64 * 1024))
    return p


RANGES = [StorageRange(name="NVRAM", region="EMMC_USER", offset=4096, length=10000),
          StorageRange(name="PRO_INFO", region="EMMC_USER", offset=32768, length=512)]


def test_backup_set_roundtrip(emmc: Path) -> None:
    events: list[str] = []
    from romkit.progress import Reporter
    bset = take_backup(CID, RANGES, _file_reader(emmc), hw_code=0x6583, reason="test",
                       on_progress=Reporter(lambda e: events.append(e.kind)))
    raw = emmc.read_bytes()
    assert bset.path.parent == paths.data_dir() / "backups" / CID.hex()
    for rng in RANGES:
        want = raw[rng.offset:rng.offset + rng.length]
        entry = bset.entry(rng.name)
        assert entry is not None
        assert bset.file_of(entry).read_bytes() == want
        assert entry.sha256 == hashlib.sha256(want).hexdigest()
        assert entry.sum16 == sum(want) & 0xFFFF
    manifest = json.loads((bset.path / MANIFEST).read_text())
    assert manifest["cid"] == CID.hex() and len(manifest["entries"]) == 2
    assert events[0] == "start" and events[-1] == "end"
    # found again, newest first, and verified
    again = find_set(None, CID)
    assert again.path == bset.path
    again.verify()
    assert find_set(bset.name, None).path == bset.path
    assert find_set(str(bset.path), None).path == bset.path


def test_damaged_or_incomplete_sets_are_refused(emmc: Path) -> None:
    bset = take_backup(CID, RANGES, _file_reader(emmc))
    f = bset.path / "NVRAM.bin"
    data = f.read_bytes()
    f.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])  # always a change (random content)
    with pytest.raises(IntegrityError):
        load_set(bset.path).verify()
    (bset.path / MANIFEST).unlink()  # an interrupted backup has no manifest
    assert list_sets(CID) == []
    with pytest.raises(UsageError):
        find_set(None, CID)
    with pytest.raises(IntegrityError):
        load_set(bset.path)


def test_interrupted_backup_leaves_no_complete_set(emmc: Path) -> None:
    def failing(rng: StorageRange, sink: BinaryIO, on_bytes: object = None) -> None:
        sink.write(b"x" * 100)
        raise RomkitError("cable pulled")

    with pytest.raises(RomkitError):
        take_backup(CID, RANGES, failing)
    assert list_sets(CID) == []
    set_dirs = list((paths.data_dir() / "backups" / CID.hex()).iterdir())
    assert len(set_dirs) == 1
    assert [p.name for p in set_dirs[0].iterdir()] == []  # temp file cleaned up, no manifest


def test_short_read_is_an_integrity_error(emmc: Path) -> None:
    def short(rng: StorageRange, sink: BinaryIO, on_bytes: object = None) -> None:
        sink.write(b"x" * (rng.length - 1))

    with pytest.raises(IntegrityError):
        take_backup(CID, RANGES, short)


def test_manifest_rejects_path_escape() -> None:
    bad = {"format": 1, "cid": CID.hex(), "created": "now", "entries": [
        {"name": "NVRAM", "region": "EMMC_USER", "offset": 0, "length": 1,
         "file": "../../etc/passwd", "sha256": "0" * 64, "sum16": 0}]}
    with pytest.raises(IntegrityError):
        parse_manifest(json.dumps(bad))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                              lambda c: st.lists(c, max_size=4)
                              | st.dictionaries(st.text(max_size=8), c, max_size=4),
                              max_leaves=20).map(json.dumps)))
def test_manifest_parser_only_raises_integrity_errors(data: str | bytes) -> None:
    try:
        parse_manifest(data)
    except IntegrityError:
        pass


def test_journal_resume_rules() -> None:
    assert jr.load_journal(CID) is None
    j = jr.new_journal(CID, "download-only")
    j.record("BOOTIMG", "EMMC_USER", 0x1000, 0x2000, "a" * 64)
    j.record("RECOVERY", "EMMC_USER", 0x4000, 0x1000, "b" * 64)
    jr.save_journal(j)
    back = jr.load_journal(CID)
    assert back is not None
    assert back.is_verified("BOOTIMG", "EMMC_USER", 0x1000, 0x2000, "a" * 64)
    assert not back.is_verified("BOOTIMG", "EMMC_USER", 0x1000, 0x2000, "c" * 64)
    # a write overlapping RECOVERY's last byte drops it, BOOTIMG stays
    assert back.invalidate("EMMC_USER", 0x4FFF, 1)
    assert not back.is_verified("RECOVERY", "EMMC_USER", 0x4000, 0x1000, "b" * 64)
    assert back.is_verified("BOOTIMG", "EMMC_USER", 0x1000, 0x2000, "a" * 64)
    assert not back.invalidate("EMMC_BOOT_1", 0x1000, 0x2000)  # other region: untouched
    back.complete = True
    jr.save_journal(back)
    assert jr.load_journal(CID) is None  # a finished run does not influence the next


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_garbage_journal_is_ignored(data: bytes) -> None:
    p = jr.journal_path(CID)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    assert jr.load_journal(CID) is None or isinstance(jr.load_journal(CID), jr.RunJournal)


# -- backup sets carry their truth (issue 15) -------------------------------------------------
def _emmc_with(tmp_path: Path, name: str, nvram: bytes) -> Path:
    """A 64 KiB "eMMC" whose NVRAM range (4096 + 10000 bytes) holds `nvram` (repeated)."""
    data = bytearray(os.urandom(64 * 1024))
    data[4096:4096 + 10000] = (nvram * (10000 // len(nvram) + 1))[:10000]
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return p


@pytest.mark.parametrize("fill,blank", [(b"\x00", True), (b"\xff", True),
                                        (b"\x00\xff\xff\x00", True),
                                        (b"\x00" * 9999 + b"\x01", False)])
def test_blank_calibration_is_marked_and_warned(tmp_path: Path, fill: bytes, blank: bool) -> None:
    warnings: list[str] = []
    rep = Reporter(lambda e: warnings.append(e.label) if e.kind == "warning" else None)
    bset = take_backup(CID, RANGES, _file_reader(_emmc_with(tmp_path, "e.bin", fill)),
                       when="manual", on_progress=rep)
    assert bset.calibration_blank is blank
    assert (bset.verdict == "blank") is blank
    assert bool([w for w in warnings if "BLANK CALIBRATION" in w]) is blank
    manifest = json.loads((bset.path / MANIFEST).read_text())
    nvram = next(e for e in manifest["entries"] if e["name"] == "NVRAM")
    assert nvram["blank"] is blank and manifest["when"] == "manual"


def test_default_is_the_newest_good_set(tmp_path: Path) -> None:
    good_old = take_backup(CID, RANGES, _file_reader(_emmc_with(tmp_path, "a", b"IMEI")),
                           when="before-format")
    blank_new = take_backup(CID, RANGES, _file_reader(_emmc_with(tmp_path, "b", b"\x00")),
                            when="after-format")
    after_fmt = take_backup(CID, RANGES, _file_reader(_emmc_with(tmp_path, "c", b"junk")),
                            when="after-format")
    assert [s.path for s in list_sets(CID)] == [after_fmt.path, blank_new.path, good_old.path]
    assert after_fmt.verdict == "after-format" and blank_new.verdict == "blank"
    assert find_set(None, CID).path == good_old.path
    assert good_set(CID).path == good_old.path  # type: ignore[union-attr]
    assert find_set(blank_new.name, CID).path == blank_new.path  # named: the user's choice


def test_old_manifest_without_marks_is_judged_by_its_bytes(tmp_path: Path) -> None:
    bset = take_backup(CID, RANGES, _file_reader(_emmc_with(tmp_path, "z", b"\x00")))
    doc = json.loads((bset.path / MANIFEST).read_text())
    del doc["when"]
    for e in doc["entries"]:
        del e["blank"], e["structure"]
    (bset.path / MANIFEST).write_text(json.dumps(doc))
    again = load_set(bset.path)
    assert again.manifest.when == "unknown" and again.verdict == "blank"
    with pytest.raises(UsageError, match="no good calibration backup"):
        find_set(None, CID)


def test_ext4_structure_is_recognised(tmp_path: Path) -> None:
    """PROTECT_F/S are ext4 volumes on real MT65xx phones: magic 0xEF53 at byte 0x438."""
    data = bytearray(os.urandom(64 * 1024))
    data[32768:32768 + 4096] = bytes(4096)
    data[32768 + 0x438:32768 + 0x43A] = b"\x53\xef"
    p = tmp_path / "ext4.bin"
    p.write_bytes(bytes(data))
    rng = [StorageRange(name="PROTECT_F", region="EMMC_USER", offset=32768, length=4096)]
    bset = take_backup(CID, rng, _file_reader(p))
    entry = bset.entry("PROTECT_F")
    assert entry is not None and entry.structure == "ext4" and entry.blank is False



def test_backup_files_are_private(emmc: Path) -> None:
    """Calibration holds the IMEI: a set's partition files are readable by the owner only."""
    os.umask(0o022)
    bset = take_backup(CID, RANGES, _file_reader(emmc), hw_code=0x6583, reason="test")
    for rng in RANGES:
        entry = bset.entry(rng.name)
        assert entry is not None
        assert bset.file_of(entry).stat().st_mode & 0o777 == 0o600


# -- retention: `romkit backup --prune` (issue 18) -----------------------------------------------
OTHER = bytes.fromhex("150100" + b"SIM14S".hex() + "10" + "2468ace0" + "b4" + "01")


def _du(path: Path) -> int:
    """Bytes under `path`, as `du -b` counts them."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _history(tmp_path: Path, cid: bytes, kinds: str) -> list[Path]:
    """Real sets of one phone, oldest first: g = good, b = blank, a = read after a format."""
    made = []
    for i, k in enumerate(kinds):
        fill = b"\x00" if k == "b" else b"IMEI%d" % i
        bset = take_backup(cid, RANGES, _file_reader(_emmc_with(tmp_path, f"{cid.hex()}{i}",
                                                                fill)),
                           when="after-format" if k == "a" else "manual")
        made.append(bset.path)
    return made


def test_prune_keeps_first_good_newest_good_and_newest_n(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clitools import run_main

    a = _history(tmp_path, CID, "bgaggaaa")  # 0 blank, 1 first good, 4 newest good
    b = _history(tmp_path, OTHER, "gbbbb")  # the only good set is the oldest
    expect_gone = {a[0], a[2], a[3], b[1]}
    before = {p: sorted(f.name for f in p.iterdir()) for p in a + b}
    size = {p: _du(p) for p in a + b}
    assert all(s > sum(r.length for r in RANGES) for s in size.values())  # + the manifest
    freed = sum(size[p] for p in expect_gone)

    code, out, err = run_main(capsys, "backup", "--prune", "--dry-run")
    assert code == 0, err
    would = [ln.split()[0] for ln in out.splitlines() if ln.endswith("would delete")]
    assert sorted(would) == sorted(f"{p.parent.name}/{p.name}" for p in expect_gone)
    assert f"would delete 4 set(s), {freed / 1024:.1f} KiB" in out
    assert {p: sorted(f.name for f in p.iterdir()) for p in a + b} == before  # nothing gone
    for p in a + b:
        line = next(ln for ln in out.splitlines() if ln.startswith(f"{p.parent.name}/{p.name}"))
        assert f"{size[p] / 1024:.1f} KiB" in line  # each set's size

    code, out, err = run_main(capsys, "--json", "backup", "--prune")
    doc = json.loads(out)
    assert code == 0 and doc["freed"] == freed and not doc["dry_run"]
    assert {p for p in a + b if p.exists()} == set(a + b) - expect_gone
    reasons = {e["name"].split("/")[1]: e["reason"] for e in doc["sets"] if e["keep"]}
    assert reasons[a[1].name] == "first good set"
    assert reasons[a[4].name].startswith("newest good set")
    assert reasons[b[0].name] == "first good set"  # the only good set survives 4 newer ones
    # restore's default did not change, and --list shows sizes and the total
    assert find_set(None, CID).path == a[4] and find_set(None, OTHER).path == b[0]
    code, out, _ = run_main(capsys, "restore", "--list")
    assert code == 0
    rows = [ln for ln in out.splitlines() if ln[:32] in (CID.hex(), OTHER.hex())]
    kept = [p for p in a + b if p not in expect_gone]
    assert len(rows) == 9 and all(f"{size[p] / 1024:.1f} KiB" in r
                                  for p in kept for r in rows if r.startswith(p.parent.name
                                                                              + "/" + p.name))
    total = sum(size[p] for p in kept)
    assert out.splitlines()[-1].startswith(f"9 set(s), {total / 1024:.1f} KiB in ")

    code, out, _ = run_main(capsys, "backup", "--prune", "--keep", "1")
    assert code == 0 and a[5].exists() is False and a[7].exists() and b[4].exists()


def test_prune_options_need_prune(capsys: pytest.CaptureFixture[str]) -> None:
    from clitools import run_main

    code, _, err = run_main(capsys, "backup", "--keep", "2")
    assert code == 2 and err.startswith("error: --keep and --dry-run belong to --prune")
    code, _, err = run_main(capsys, "backup", "--prune", "--keep", "0")
    assert code == 2 and "hint:" in err
