"""Benchmark of `romkit fetch`'s parts (prints numbers; not a test).

Download: a local server caps every connection at --rate-kib KiB/s (the slow forum mirror);
romkit with 1, 4 and 8 connections is timed against `curl` (one connection) and
`aria2c -x8` when they are installed. Unpack: romkit's safe extraction of a synthetic 7z is
timed against `7z x` when installed. A missing baseline is skipped and said so.

    .venv/bin/python bench/fetch_bench.py [--size-mb 32] [--rate-kib 4096] [--unpack-mb 128]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import py7zr

from romkit.fetch.archive import extract
from romkit.fetch.download import Candidate, DownloadOptions, DownloadTarget, download
from romkit.fetch.localserver import LocalServer


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _synthetic(path: Path, size: int, random_share: float, seed: int = 1) -> None:
    """Firmware-like bytes: random blocks (compressed code) between zero runs (padding)."""
    rng = np.random.default_rng(seed)
    block = 1024 * 1024
    with path.open("wb") as fh:
        for i in range(0, size, block):
            n = min(block, size - i)
            if rng.random() < random_share:
                fh.write(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
            else:
                fh.write(bytes(n))


def bench_download(work: Path, size_mb: int, rate_kib: int) -> list[tuple[str, float]]:
    src = work / "serve"
    src.mkdir()
    _synthetic(src / "fw.7z", size_mb * 1024 * 1024, 1.0)
    size = (src / "fw.7z").stat().st_size
    rows: list[tuple[str, float]] = []
    with LocalServer(root=src, rate=rate_kib * 1024) as srv:
        url = srv.url("fw.7z")
        target = DownloadTarget(file_name="fw.7z", size=size)
        for n in (1, 4, 8):
            opts = DownloadOptions(connections=n, force=True, piece_size=1024 * 1024)
            rows.append((f"romkit x{n}", _timed(lambda o=opts: download(  # type: ignore[misc]
                target, [Candidate(url=url)], options=o, cache=work / "cache"))))
        if shutil.which("curl"):
            out = work / "curl.out"
            rows.append(("curl", _timed(lambda: subprocess.run(
                ["curl", "-sS", "-o", str(out), url], check=True))))
        else:
            print("curl not installed: baseline skipped")
        if shutil.which("aria2c"):
            rows.append(("aria2c -x8", _timed(lambda: subprocess.run(
                ["aria2c", "-q", "-x8", "-s8", "-k1M", "--allow-overwrite=true", "-d", str(work),
                 "-o", "aria.out", url], check=True))))
        else:
            print("aria2c not installed: baseline skipped")
    print(f"\ndownload of {size / 2**20:.0f} MiB, each connection capped at {rate_kib} KiB/s")
    for name, secs in rows:
        print(f"  {name:<12} {secs:7.2f} s  {size / secs / 2**20:7.2f} MiB/s")
    return rows


def bench_unpack(work: Path, unpack_mb: int) -> list[tuple[str, float]]:
    tree = work / "tree" / "S820_ROW_S124_140404" / "target_bin"
    tree.mkdir(parents=True)
    (tree / "MT6589_Android_scatter_emmc.txt").write_text("partition_index: SYS0\n")
    per = unpack_mb * 1024 * 1024 // 4
    for i, name in enumerate(("system.img", "userdata.img", "cache.img", "boot.img")):
        _synthetic(tree / name, per, 0.35, seed=i)
    arc = work / "fw.7z"
    t0 = time.perf_counter()
    fast = [{"id": py7zr.FILTER_LZMA2, "preset": 1}]
    with py7zr.SevenZipFile(arc, "w", filters=fast) as sz:
        sz.writeall(tree.parent, arcname=tree.parent.name)
    print(f"\n(built a {arc.stat().st_size / 2**20:.0f} MiB 7z of {unpack_mb} MiB in "
          f"{time.perf_counter() - t0:.1f} s)")
    rows = [("romkit", _timed(lambda: extract(arc, work / "out-romkit")))]
    seven = shutil.which("7z") or shutil.which("7za")
    if seven:
        rows.append(("7z x", _timed(lambda: subprocess.run(
            [seven, "x", "-y", f"-o{work / 'out-7z'}", str(arc)], check=True,
            stdout=subprocess.DEVNULL))))
    else:
        print("7z not installed: baseline skipped")
    print(f"unpack of {unpack_mb} MiB")
    for name, secs in rows:
        print(f"  {name:<12} {secs:7.2f} s  {unpack_mb / secs:7.1f} MiB/s")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=32, help="download size (MiB)")
    ap.add_argument("--rate-kib", type=int, default=4096, help="per-connection cap (KiB/s)")
    ap.add_argument("--unpack-mb", type=int, default=128, help="unpacked size of the 7z (MiB)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="romkit-bench-") as tmp:
        work = Path(tmp)
        os.environ["ROMKIT_HOME"] = str(work / "home")
        dl = dict(bench_download(work, args.size_mb, args.rate_kib))
        up = dict(bench_unpack(work, args.unpack_mb))
    parts = [f"x8/x1 {dl['romkit x1'] / dl['romkit x8']:.1f}x faster"]
    if "curl" in dl:
        parts.append(f"x4 vs curl {dl['curl'] / dl['romkit x4']:.1f}x")
    if "aria2c -x8" in dl:
        parts.append(f"x8 vs aria2c -x8 {dl['aria2c -x8'] / dl['romkit x8']:.2f}x")
    if "7z x" in up:
        parts.append(f"unpack vs 7z x {up['7z x'] / up['romkit']:.2f}x")
    else:
        parts.append(f"unpack {args.unpack_mb / up['romkit']:.0f} MiB/s (no 7z baseline)")
    print("\nsummary: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
