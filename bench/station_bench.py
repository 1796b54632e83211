"""How does a station scale with the number of phones on one (2-core) computer?

For N = 1, 2, 4, 8 virtual phones (each a separate `romkit sim` process with its own CID, so
the phones' CPU is real and separate), one `run_station` flashes the same firmware to all of
them (each phone by its own `romkit flash` child). Printed per N: wall time, aggregate
throughput (image bytes written and verified per second, all phones together), the ratio of
the wall time to N=1's, and CPU seconds per phone (host + phone processes, from
RUSAGE_CHILDREN deltas). The same machine's baseline is N=1 of the same run.

Not a test: it prints numbers; the last line is a summary.

    .venv/bin/python bench/station_bench.py [--phones 1,2,4,8] [--scale 8] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from romkit.sim import s820
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.sample_firmware import build_s820_folder
from romkit.station import StationRequest, run_station


def cid(serial: int) -> str:
    base = bytearray(s820.PARTS_BY_YEAR[2013].cid)
    base[10:14] = serial.to_bytes(4, "big")
    crc = 0
    for byte in bytes(base[:15]):
        for bit in range(7, -1, -1):
            top = ((byte >> bit) & 1) ^ ((crc >> 6) & 1)
            crc = (crc << 1) & 0x7F
            if top:
                crc ^= 0x09
    return (bytes(base[:15]) + bytes([(crc << 1) | 1])).hex()


def start_sims(n: int, root: Path) -> tuple[list[subprocess.Popen[str]], list[str]]:
    procs, ports = [], []
    for i in range(n):
        proc = subprocess.Popen(
            [sys.executable, "-m", "romkit", "sim", "--json", "--state", str(root / f"s{i}"),
             "--memory-id", cid(1000 + i), "--reset"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        ports.append(json.loads(proc.stdout.readline())["port"])
        procs.append(proc)
    return procs, ports


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phones", default="1,2,4,8")
    ap.add_argument("--scale", type=float, default=8.0, help="image size factor (1 ≈ 5 MiB)")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="romkit-station-bench-", dir=args.dir))
    try:
        folder = build_s820_folder(root / "fw", preloader=preloader_s820(2013), da=da_s820(),
                                   image_scale=args.scale)
        image_bytes = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()
                          and f.suffix in (".img", ".bin") and "DA" not in f.name)
        print(f"firmware: {image_bytes / 1e6:.1f} MB of images per phone "
              f"(scale {args.scale:g}); python {sys.version.split()[0]}")
        base = None
        summary = []
        for n in (int(x) for x in args.phones.split(",")):
            sims, ports = start_sims(n, root / f"n{n}")
            cpu0 = cpu_children()
            t0 = time.monotonic()
            try:
                res = run_station(StationRequest(ports=ports, flash_args=[str(folder),
                                                 "--no-backup"], wait=20))
            finally:
                for p in sims:
                    p.terminate()
                for p in sims:
                    p.wait()
            wall = time.monotonic() - t0
            cpu = cpu_children() - cpu0
            ok = sum(r.result == "ok" for r in res.phones)
            base = base or wall
            rate = ok * image_bytes / wall / 1e6
            print(f"phones {n}: {ok}/{n} ok, wall {wall:6.2f} s, aggregate {rate:6.1f} MB/s, "
                  f"time vs 1 phone {wall / base:4.2f}x, cpu/phone {cpu / n:5.2f} s")
            summary.append(f"{n}:{wall / base:.2f}x")
        print("summary (wall time relative to one phone): " + ", ".join(summary))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
