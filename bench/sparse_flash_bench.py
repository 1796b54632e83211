"""Does flashing an Android sparse image keep memory flat, and what does expanding cost?

`romkit flash --only system --no-backup` (with verify; a subprocess, the virtual S820 runs in
this process) is run three times and its peak RSS (`ru_maxrss` of the child) and speed are
printed:

1. a small sparse system.img (16 MiB expanded),
2. a big sparse system.img (--mib MiB expanded: 1/4 random RAW data, 1/4 FILL runs, 1/2
   DONT_CARE runs, in 4 MiB runs — the shape of a vendor system.img),
3. the big image's raw expansion, flashed as a raw file (the baseline: same bytes on the wire).

Flat memory means (2) stays near (1) and (3). The phone's ANDROID partition is checked after
(2) against the sha256 of the expansion computed while the sparse file was written (not by
romkit). The sparse file is written directly from the format facts (AOSP libsparse
sparse_format.h), never expanded on disk by romkit.

Not a test: it prints numbers; the last line is a summary.

    .venv/bin/python bench/sparse_flash_bench.py [--mib 384] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MIB = 1024 * 1024
BLOCK = 4096
RUN = 4 * MIB  # bytes per run of one chunk kind


def write_sparse(path: Path, raw_out: Path | None, mib: int, seed: int) -> str:
    """A sparse image of `mib` MiB expanded; returns the expansion's sha256. With `raw_out`
    the expansion is also written there (the raw baseline)."""
    rng = np.random.default_rng(seed)
    runs = mib * MIB // RUN
    blocks = RUN // BLOCK
    sha = hashlib.sha256()
    chunks = 0
    raw = raw_out.open("wb") if raw_out is not None else None
    with path.open("wb") as fh:
        fh.write(bytes(28))
        for i in range(runs):
            kind = ("raw", "fill", "skip", "skip")[i % 4]
            if kind == "raw":
                data = rng.integers(0, 256, RUN, dtype=np.uint8).tobytes()
                fh.write(struct.pack("<HHII", 0xCAC1, 0, blocks, 12 + RUN) + data)
            elif kind == "fill":
                word = struct.pack("<I", 0x1000 + i)
                fh.write(struct.pack("<HHII", 0xCAC2, 0, blocks, 16) + word)
                data = word * (RUN // 4)
            else:
                fh.write(struct.pack("<HHII", 0xCAC3, 0, blocks, 12))
                data = bytes(RUN)
            sha.update(data)
            if raw is not None:
                raw.write(data)
            chunks += 1
        fh.seek(0)
        fh.write(struct.pack("<IHHHHIIII", 0xED26FF3A, 1, 0, 28, 12, BLOCK, runs * blocks,
                             chunks, 0))
    if raw is not None:
        raw.close()
    return sha.hexdigest()


def run_flash(folder: Path, port: str, env: dict[str, str]) -> tuple[dict, int, float]:
    """`romkit flash --only system --no-backup --json` as a child: (result, peak RSS KiB, s)."""
    cmd = [sys.executable, "-m", "romkit", "flash", str(folder), "--port", port, "--wait", "10",
           "--json", "--only", "system", "--no-backup"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"romkit flash failed: {out[-2000:]!r}")
    return json.loads(out), usage.ru_maxrss, wall


def phone_sha(phone: object, at: int, length: int) -> str:
    """sha256 of the phone's bytes, read from the simulator's storage in 4 MiB steps."""
    from romkit.device import protocol as P

    h = hashlib.sha256()
    done = 0
    while done < length:
        n = min(RUN, length - done)
        h.update(phone.storage.read(P.PART_USER, at + done, n))  # type: ignore[attr-defined]
        done += n
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=384, help="expanded size of the big image")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    args = ap.parse_args()
    mib = max(16, args.mib // 16 * 16)

    from romkit.device import protocol as P
    from romkit.firmware.checksum import write_checksum_ini
    from romkit.sim import s820
    from romkit.sim.artifacts import da_s820, preloader_s820
    from romkit.sim.phone import VirtualPhone
    from romkit.sim.sample_firmware import build_s820_folder

    work = Path(tempfile.mkdtemp(prefix="romkit-sparse-bench-", dir=args.dir))
    env = {**os.environ, "ROMKIT_HOME": str(work / "home")}
    os.environ["ROMKIT_HOME"] = env["ROMKIT_HOME"]
    at = dict((n.removeprefix("__NODL_"), a) for n, a in s820.LAYOUT)["ANDROID"] \
        - P.MT6589_USER_OFFSET
    try:
        folder = build_s820_folder(work / "fw", preloader=preloader_s820(2013), da=da_s820())
        system = folder / "system.img"
        phone = VirtualPhone(work / "phone", year=2013)
        phone.start()
        rows = []
        for label, size, raw in (("sparse small", 16, False), ("sparse big", mib, False),
                                 ("raw big", mib, True)):
            raw_path = work / "expanded.raw"
            want = write_sparse(system if not raw else work / "unused.simg",
                                raw_path if raw else None, size, 0x5820)
            if raw:
                os.replace(raw_path, system)
            write_checksum_ini(folder)
            stored = system.stat().st_size
            doc, rss, wall = run_flash(folder, phone.port, env)
            phone.wait_finished(10)  # the phone reboots: phone.port names its next port
            row = next(p for p in doc["partitions"] if p["partition"] == "ANDROID")
            assert row["verified"] and row["bytes"] == size * MIB, row
            assert row["sha256"] == want, "romkit's digest differs from the writer's"
            if label == "sparse big":
                assert phone_sha(phone, at, size * MIB) == want, "phone holds other bytes"
            rate = 2 * size * MIB / row["seconds"] / 1e6  # written + read back
            rows.append((label, size, stored, rss, wall, rate))
        phone.stop()
        print(f"{'image':<13} {'expanded':>9} {'file':>9} {'peak RSS':>9} {'wall s':>7} "
              f"{'MB/s w+v':>8}")
        for label, size, stored, rss, wall, rate in rows:
            print(f"{label:<13} {size:>5} MiB {stored / MIB:>5.0f} MiB {rss / 1024:>5.0f} MiB "
                  f"{wall:>7.1f} {rate:>8.1f}")
        small, big, base = rows
        print(f"summary: sparse {mib} MiB expanded: peak RSS {big[3] / 1024:.0f} MiB vs "
              f"{small[3] / 1024:.0f} MiB for 16 MiB and {base[3] / 1024:.0f} MiB for the same "
              f"bytes raw; write+verify {big[5]:.0f} MB/s vs {base[5]:.0f} MB/s raw")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
