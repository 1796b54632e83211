"""Flashing Android sparse images: the phone gets the expanded image, byte for byte.

The sparse files come from two writers — romkit's own packer and AOSP's `img2simg` (Debian
`android-sdk-libsparse-utils`, skipped when missing) — and the expected bytes from a second
reader: the small expander below, written from the format facts (AOSP libsparse
`sparse_format.h`: 28-byte file header `<IHHHHIIII>`, 12-byte chunk headers `<HHII>`, RAW
0xCAC1 / FILL 0xCAC2 / DONT_CARE 0xCAC3 / CRC32 0xCAC4), itself checked against `simg2img`
when installed. The phone's ANDROID partition is read straight from the simulator's storage
and is filled with 0xA5 first, so a DONT_CARE range the engine skipped instead of zeroing, or
a byte written past the expanded size, shows up.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from romkit import paths
from romkit.device import protocol as P
from romkit.errors import DeviceError, ValidationError
from romkit.firmware.checksum import write_checksum_ini
from romkit.flash.engine import FlashRequest, flash
from romkit.flash.plan import PlanOptions
from romkit.sim import s820
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.faults import FaultPlan
from romkit.sim.phone import VirtualPhone
from romkit.sim.sample_firmware import build_s820_folder
from romkit.sysimg.sparse import resparse

BLOCK = 4096
ADDR = {n.removeprefix("__NODL_"): a for n, a in s820.LAYOUT}
ANDROID_AT = ADDR["ANDROID"] - P.MT6589_USER_OFFSET
ANDROID_SIZE = ADDR["CACHE"] - ADDR["ANDROID"]
CACHE_AT = ADDR["CACHE"] - P.MT6589_USER_OFFSET
FILLER = 0xA5
SLACK = 64 * 1024  # bytes after the expanded image that must stay untouched
StartPhone = Callable[..., VirtualPhone]  # start(*fault_specs) -> a running phone


def expand(path: Path) -> bytes:
    """Independent sparse expander (format facts only); DONT_CARE reads as zeros."""
    data = path.read_bytes()
    magic, major, _minor, hdr, chdr, blk, total, chunks, _crc = struct.unpack_from(
        "<IHHHHIIII", data)
    assert magic == 0xED26FF3A and major == 1
    out = bytearray()
    pos = hdr
    for _ in range(chunks):
        kind, _res, blocks, size = struct.unpack_from("<HHII", data, pos)
        body = data[pos + chdr:pos + size]
        pos += size
        if kind == 0xCAC1:
            assert len(body) == blocks * blk
            out += body
        elif kind == 0xCAC2:
            out += body[:4] * (blocks * blk // 4)
        elif kind == 0xCAC3:
            out += bytes(blocks * blk)
    assert len(out) == total * blk
    return bytes(out)


def raw_image(path: Path) -> Path:
    """~3 MiB with every kind of run: random data, a repeated word, zeros, a lone odd block."""
    rng = np.random.default_rng(17)
    parts = [rng.integers(0, 256, 40 * BLOCK, dtype=np.uint8).tobytes(),
             b"\xef\xbe\xad\xde" * (30 * BLOCK // 4),
             bytes(300 * BLOCK),
             rng.integers(0, 256, 3 * BLOCK, dtype=np.uint8).tobytes(),
             b"\x01\x00\x00\x00" * (BLOCK // 4),
             bytes(360 * BLOCK),
             rng.integers(0, 256, 20 * BLOCK, dtype=np.uint8).tobytes()]
    path.write_bytes(b"".join(parts))
    return path


def make_sparse(raw: Path, out: Path, writer: str) -> Path:
    if writer == "img2simg":
        subprocess.run(["img2simg", str(raw), str(out)], check=True, capture_output=True)
    else:
        # the zero runs may be skipped: DONT_CARE chunks, as in a vendor system.img
        resparse(raw, out, BLOCK, dont_care=[(70, 370), (374, 734)])
    return out


# romkit's packer (RAW, FILL, DONT_CARE), img2simg (RAW and FILL: it writes zero runs as FILL),
# and the simulator's sample-firmware writer (one RAW chunk, then DONT_CARE up to 6.4 MiB)
WRITERS = ["romkit", pytest.param("img2simg", marks=pytest.mark.skipif(
    shutil.which("img2simg") is None, reason="img2simg not installed")), "sample"]


def chunk_kinds(path: Path) -> set[int]:
    data = path.read_bytes()
    hdr, chunks = struct.unpack_from("<H", data, 8)[0], struct.unpack_from("<I", data, 20)[0]
    kinds, pos = set(), hdr
    for _ in range(chunks):
        kind, _r, _b, size = struct.unpack_from("<HHII", data, pos)
        kinds.add(kind)
        pos += size
    return kinds


def package(tmp_path: Path, system: Path) -> Path:
    folder = build_s820_folder(tmp_path / "pkg", preloader=preloader_s820(2013), da=da_s820(),
                               image_scale=0.1)
    shutil.copyfile(system, folder / "system.img")
    write_checksum_ini(folder)
    return folder


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[StartPhone]:
    started: list[VirtualPhone] = []

    def start(*faults: str) -> VirtualPhone:
        p = VirtualPhone(tmp_path / f"phone{len(started)}", year=2013,
                         faults=FaultPlan.parse(list(faults)))
        p.start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def prefill(phone: VirtualPhone, length: int) -> None:
    phone.storage.write(P.PART_USER, ANDROID_AT, bytes([FILLER]) * (length + SLACK))


def android(phone: VirtualPhone, length: int) -> bytes:
    return phone.storage.read(P.PART_USER, ANDROID_AT, length)


def _req(folder: Path, phone: VirtualPhone, *only: str) -> FlashRequest:
    return FlashRequest(firmware_dir=folder, port=phone.port, wait=5,
                        options=PlanOptions(only=list(only or ["ANDROID"]), backup=False))


@pytest.mark.parametrize("writer", WRITERS)
def test_sparse_system_img_lands_expanded(tmp_path: Path, phone: StartPhone,
                                          writer: str) -> None:
    if writer == "sample":
        sparse = build_s820_folder(tmp_path / "sample", preloader=preloader_s820(2013),
                                   image_scale=0.1, sparse_system=True) / "system.img"
        want = expand(sparse)
        assert want.rstrip(b"\0")[1080:1082] == b"\x53\xef"  # the ext4 magic, then zeros
    else:
        raw = raw_image(tmp_path / "system.raw")
        sparse = make_sparse(raw, tmp_path / "system.img", writer)
        want = expand(sparse)
        assert want == raw.read_bytes()  # the expander and the writer agree
    if shutil.which("simg2img"):
        subprocess.run(["simg2img", str(sparse), str(tmp_path / "check.raw")], check=True)
        assert (tmp_path / "check.raw").read_bytes() == want
    assert len(sparse.read_bytes()) < len(want) // 3
    assert {"romkit": {0xCAC1, 0xCAC2, 0xCAC3}, "img2simg": {0xCAC1, 0xCAC2},
            "sample": {0xCAC1, 0xCAC3}}[writer] <= chunk_kinds(sparse)
    folder = package(tmp_path, sparse)
    p = phone()
    prefill(p, len(want))
    events: list[dict] = []
    result = flash(_req(folder, p), lambda e: events.append(e.to_dict()))

    assert android(p, len(want)) == want
    tail = p.storage.read(P.PART_USER, ANDROID_AT + len(want), SLACK)
    assert tail == bytes([FILLER]) * SLACK  # nothing past the expanded image
    row = next(r for r in result.partitions if r.partition == "ANDROID")
    assert row.verified and row.bytes == len(want)
    assert row.sha256 == hashlib.sha256(want).hexdigest()
    assert row.sum16 == int(np.frombuffer(want, np.uint8).sum(dtype=np.uint64)) & 0xFFFF
    # the plan says it is sparse and shows the expanded size, the file's own size too
    plan = next(e for e in events if e["event"] == "info" and e["label"] == "plan")
    op = next(o for o in plan["data"]["plan"]["operations"] if o["kind"] == "write")
    assert op["sparse"] and op["length"] == len(want)
    assert op["stored_size"] == sparse.stat().st_size


def test_disconnect_mid_sparse_write_resumes_equal(tmp_path: Path,
                                                   phone: StartPhone) -> None:
    sparse = make_sparse(raw_image(tmp_path / "system.raw"), tmp_path / "system.img", "romkit")
    want = expand(sparse)
    folder = package(tmp_path, sparse)
    p = phone(f"disconnect@{len(want) // 2}")
    prefill(p, len(want))
    with pytest.raises(DeviceError):
        flash(_req(folder, p))
    p.wait_finished(5)
    assert android(p, len(want)) != want  # really cut halfway
    result = flash(_req(folder, p))
    assert android(p, len(want)) == want
    assert [r.partition for r in result.partitions if r.verified] == ["ANDROID"]


def test_verified_sparse_partition_is_read_back_and_skipped_on_rerun(
        tmp_path: Path, phone: StartPhone) -> None:
    """Cut in CACHE, after ANDROID (sparse) was verified: the rerun proves ANDROID by reading
    it back against a fresh expansion and skips it."""
    sparse = make_sparse(raw_image(tmp_path / "system.raw"), tmp_path / "system.img", "romkit")
    want = expand(sparse)
    folder = package(tmp_path, sparse)
    p = phone(f"disconnect@{len(want) + 1000}")  # write stream: ANDROID, then CACHE
    prefill(p, len(want))
    with pytest.raises(DeviceError):
        flash(_req(folder, p, "ANDROID", "CACHE"))
    p.wait_finished(5)
    result = flash(_req(folder, p, "ANDROID", "CACHE"))
    rows = {r.partition: r for r in result.partitions}
    assert rows["ANDROID"].resumed and not rows["CACHE"].resumed
    assert android(p, len(want)) == want
    cache = (folder / "cache.img").read_bytes()
    assert p.storage.read(P.PART_USER, CACHE_AT, len(cache)) == cache


def test_expanded_size_beyond_the_partition_is_refused_before_any_write(
        tmp_path: Path, phone: StartPhone) -> None:
    """A 9 KiB file that expands past ANDROID (one RAW block, then DONT_CARE): refused with
    the size-check code before the phone is touched."""
    blocks = ANDROID_SIZE // BLOCK + 1
    body = struct.pack("<HHII", 0xCAC1, 0, 1, 12 + BLOCK) + b"\x5a" * BLOCK
    body += struct.pack("<HHII", 0xCAC3, 0, blocks - 1, 12)
    big = tmp_path / "system.img"
    big.write_bytes(struct.pack("<IHHHHIIII", 0xED26FF3A, 1, 0, 28, 12, BLOCK, blocks, 2, 0)
                    + body)
    folder = package(tmp_path, big)
    p = phone()
    before = p.storage.read(P.PART_USER, ANDROID_AT, 1 << 20)
    with pytest.raises(ValidationError) as err:
        flash(_req(folder, p))
    assert err.value.spft_code == 5016
    assert "expands to" in err.value.message and str(blocks * BLOCK) in err.value.message
    assert p.storage.read(P.PART_USER, ANDROID_AT, 1 << 20) == before
    assert not (paths.data_dir() / "journal").exists() or not any(
        (paths.data_dir() / "journal").iterdir())
