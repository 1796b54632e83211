"""How fast is `romkit checksum` compared with md5sum and with just reading the bytes?

Writes ~1 GiB of image files (page cache warm), then times, best of N runs each:
  romkit  — romkit.firmware.checksum.compute_checksums (16-bit byte sums, numpy, chunked)
  md5sum  — coreutils md5sum on the same files
  cat     — `cat FILES > /dev/null`, the floor: reading the bytes and nothing else
and prints throughputs and ratios. Not a test: it prints numbers; the last line is a summary.

    .venv/bin/python bench/checksum_bench.py [--mib 1024] [--files 4] [--runs 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from romkit.firmware.checksum import compute_checksums

WRITE_CHUNK = 64 * 1024 * 1024


def make_images(folder: Path, total_mib: int, files: int) -> list[Path]:
    rng = np.random.default_rng(0x5820)
    per_file = total_mib * 1024 * 1024 // files
    paths = []
    for i in range(files):
        path = folder / f"image{i}.img"
        with path.open("wb") as fh:
            left = per_file
            while left:
                n = min(WRITE_CHUNK, left)
                fh.write(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
                left -= n
        paths.append(path)
    return paths


def best_of(runs: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024, help="total size of the images")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where to write the images")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="romkit-cksum-bench-", dir=args.dir))
    try:
        paths = make_images(tmp, args.mib, args.files)
        names = [str(p) for p in paths]
        total = sum(p.stat().st_size for p in paths)
        subprocess.run(["cat", *names], stdout=subprocess.DEVNULL, check=True)  # warm cache

        images = {p.name: p for p in paths}
        t_romkit = best_of(args.runs, lambda: compute_checksums(images))
        t_md5 = best_of(args.runs, lambda: subprocess.run(
            ["md5sum", *names], stdout=subprocess.DEVNULL, check=True))
        t_cat = best_of(args.runs, lambda: subprocess.run(
            ["cat", *names], stdout=subprocess.DEVNULL, check=True))

        sums = compute_checksums(images)
        first = paths[0]
        check = int(np.fromfile(first, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFF
        assert sums[first.name] == check, "romkit's sum disagrees with a whole-file numpy sum"

        mib = total / (1024 * 1024)
        print(f"data: {mib:.0f} MiB in {len(paths)} files (page cache warm), best of "
              f"{args.runs}")
        for label, t in (("romkit checksum", t_romkit), ("md5sum", t_md5),
                         ("cat > /dev/null", t_cat)):
            print(f"  {label:<16} {t:7.3f} s  {mib / t:8.0f} MiB/s")
        print(f"romkit vs md5sum: {t_md5 / t_romkit:.2f}x faster; "
              f"romkit vs cat: {t_romkit / t_cat:.2f}x the time of just reading")
        print(f"summary: romkit checksum {mib / t_romkit:.0f} MiB/s = "
              f"{t_md5 / t_romkit:.2f}x md5sum, {t_cat / t_romkit:.2f}x cat speed "
              f"({mib:.0f} MiB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
