"""Installing a modem set into a 700 MB system.img: time and peak memory against `cp`.

Builds a real ext4 system.img with `mke2fs -d` (a KitKat `_1_3g_n` modem set plus ~75% of the
filesystem in incompressible filler files), its Android sparse form, and a firmware folder
around it; then, each in a fresh child process so peak RSS is its own:
  cp       — `cp system.img copy.img` (best of 3): a kernel copy, the floor
  sha256sum — one user-space read and hash of every byte: what one "pass" costs
  raw      — romkit.sysimg.install_modem on the raw image (copy, debugfs, e2fsck, read back)
  sparse   — the same on the sparse form (expand, change, check, pack, re-hash)
  prepare  — `romkit prepare --modem` on the folder (plan + checksum + backup + apply)
  undo     — `romkit prepare --undo` (restore from the record, checked by hash)
and prints seconds, the ratio to `cp`, the Python process's peak RSS (VmHWM: its own pages
only) and the largest child's ru_maxrss (cp / debugfs / e2fsck; an upper bound, since Linux
carries the forking Python's RSS into a child's maxrss across exec). Not a test: numbers
only; the goal is ≤ 150 MB RSS (streaming). Linux only (reads /proc).

    .venv/bin/python bench/modem_bench.py [--mib 700] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from romkit.firmware.checksum import write_checksum_ini
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.artifacts_modem import modem_image
from romkit.sim.sample_firmware import build_s820_folder
from romkit.sysimg.sparse import resparse

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
mode, a, b, c = sys.argv[1:5]
start = time.perf_counter()
if mode == "cp":
    import subprocess
    subprocess.run(["cp", a, b], check=True)
elif mode == "sha256sum":
    import subprocess
    subprocess.run(["sha256sum", a], check=True, capture_output=True)
elif mode == "install":
    from romkit.sysimg import install_modem
    install_modem(Path(a), Path(b), Path(c), platform="MT6589")
elif mode == "prepare":
    from romkit.prepare import PrepareRequest, prepare
    prepare(PrepareRequest(folder=Path(a), modem=Path(b)))
elif mode == "undo":
    from romkit.prepare import PrepareRequest, prepare
    prepare(PrepareRequest(folder=Path(a), undo=True))
took = time.perf_counter() - start
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
print(json.dumps({"seconds": took, "self_kb": hwm,
                  "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def modem_set(folder: Path, build: str, suffix: str, seed: int, size: int) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    tag = build.replace(".", "_")
    return {
        f"modem{suffix}.img": modem_image(size=size, build_ver=build),
        f"catcher_filter{suffix}.bin": rng.integers(0, 256, 40_000, dtype=np.uint8).tobytes(),
        f"BPLGUInfoCustomAppSrcP_MT6589_S00_{tag}{suffix}":
            rng.integers(0, 256, 900_000, dtype=np.uint8).tobytes(),
        f"DbgInfo_S820_{tag}_2014_04_04{suffix}":
            rng.integers(0, 256, 1_500_000, dtype=np.uint8).tobytes(),
    }


def build(work: Path, mib: int) -> tuple[Path, Path, Path, Path]:
    root = work / "root"
    for sub in ("etc/firmware", "etc/mddb", "app"):
        (root / sub).mkdir(parents=True)
    old = modem_set(root, "MOLY.WR8.W1248.MD.WG.MP.V9", "_1_3g_n", 1, 14 * 2**20)
    for name, data in old.items():
        sub = "etc/firmware" if name.startswith(("modem", "catcher")) else "etc/mddb"
        (root / sub / name).write_bytes(data)
    rng = np.random.default_rng(0x5820)
    filler = max(0, int(mib * 2**20 * 0.75) - 20 * 2**20)  # the modem sets take ~20 MB
    for i in range(0, filler, 32 * 2**20):
        n = min(32 * 2**20, filler - i)
        (root / "app" / f"blob{i // 2**20:05d}.apk").write_bytes(
            rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    raw = work / "system.raw.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", str(root),
                    str(raw), f"{mib}M"], check=True)
    shutil.rmtree(root)
    sparse = work / "system.sparse.img"
    if shutil.which("img2simg"):
        subprocess.run(["img2simg", str(raw), str(sparse)], check=True)
    else:
        resparse(raw, sparse, 4096)
    new = work / "v51"
    new.mkdir()
    for name, data in modem_set(new, "MOLY.WR8.W1315.MD.WG.MP.V19", "", 2,
                                15 * 2**20).items():
        (new / name).write_bytes(data)
    folder = build_s820_folder(work / "pkg", preloader=preloader_s820(2013), da=da_s820(),
                               android="4.4.2", image_scale=0.1)
    shutil.copyfile(raw, folder / "system.img")
    write_checksum_ini(folder)
    return raw, sparse, new, folder


def child(*args: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", CHILD, *args, "", "", ""][:7],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=700, help="size of system.img")
    ap.add_argument("--dir", type=Path, default=None, help="where to build (needs ~5x --mib)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="modem-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        raw, sparse, new, folder = build(work, args.mib)
        print(f"built {raw.stat().st_size / 2**20:.0f} MiB raw, "
              f"{sparse.stat().st_size / 2**20:.0f} MiB sparse in "
              f"{time.perf_counter() - t0:.1f} s")
        cps = [child("cp", str(raw), str(work / "copy.img")) for _ in range(3)]
        rows = [
            ("cp", min(cps, key=lambda r: r["seconds"])),  # best of 3: page cache warm
            ("sha256sum", child("sha256sum", str(raw))),
            ("raw", child("install", str(raw), str(new), str(work / "out.raw.img"))),
            ("sparse", child("install", str(sparse), str(new), str(work / "out.sparse.img"))),
            ("prepare", child("prepare", str(folder), str(new))),
            ("undo", child("undo", str(folder))),
        ]
        base = rows[0][1]["seconds"]
        one_pass = rows[1][1]["seconds"]
        print(f"{'run':9} {'seconds':>8} {'x cp':>6} {'x sha256sum':>11} {'python RSS':>11} "
              f"{'child RSS':>10}")
        for name, r in rows:
            print(f"{name:9} {r['seconds']:8.2f} {r['seconds'] / base:6.1f} "
                  f"{r['seconds'] / one_pass:11.1f} "
                  f"{r['self_kb'] / 1024:8.0f} MB {r['children_kb'] / 1024:7.0f} MB")
        worst = max(max(r["self_kb"], r["children_kb"]) for n, r in rows
                    if n not in ("cp", "sha256sum")) / 1024
        prep = dict(rows)["prepare"]["seconds"]
        print(f"summary: {args.mib} MiB system.img, peak RSS {worst:.0f} MB (goal <= 150 MB), "
              f"prepare = {prep / base:.1f} x cp = {prep / one_pass:.1f} x sha256sum")


if __name__ == "__main__":
    main()
