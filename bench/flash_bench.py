"""How close does `romkit flash` get to the raw speed of the pty it talks over, and how much
memory does it need for a big image?

1. Raw floor: N MiB pushed through a fresh pty (host writes the slave side, a thread drains
   the master side — the virtual phone's topology), for each packet size.
2. Flash: the same N MiB as system.img written to the virtual S820 by `romkit flash --only
   system --no-backup --no-verify --packet-size P` (a subprocess; the phone runs in this
   process), for each packet size; the ratio flash/raw is printed.
3. Memory: peak RSS (ru_maxrss of the flash subprocess) while flashing — with verify — a
   small image and an --rss-mib image; constant memory means the two barely differ.

Not a test: it prints numbers; the last line is a summary.

    .venv/bin/python bench/flash_bench.py [--mib 256] [--packets 262144,1048576,4194304]
                                          [--rss-mib 1024] [--runs 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import shutil
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path

import numpy as np

WRITE_CHUNK = 64 * 1024 * 1024
MIB = 1024 * 1024


def write_random(path: Path, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(WRITE_CHUNK, left)
            fh.write(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
            left -= n


_WRITER = """
import os, sys
path, nbytes, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
view = memoryview(bytes(chunk))
sent = 0
while sent < nbytes:
    n = min(chunk, nbytes - sent)
    off = 0
    while off < n:
        off += os.write(fd, view[off:n])
    sent += n
os.close(fd)
"""


def raw_pty_rate(nbytes: int, chunk: int, runs: int = 3) -> float:
    """Bytes/s of a bare pty, best of `runs`: a child process writes the slave side in
    `chunk`-sized writes (as the flash host does), this process drains the master side (as
    the virtual phone does)."""
    best = 0.0
    for _ in range(runs):
        master, slave = pty.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        child = subprocess.Popen([sys.executable, "-c", _WRITER, os.ttyname(slave),
                                  str(nbytes), str(chunk)])
        got = len(os.read(master, 1 << 20))
        t0 = time.perf_counter()  # from the first byte: interpreter start-up is not the pty
        while got < nbytes:
            data = os.read(master, 1 << 20)
            if not data:
                break
            got += len(data)
        dt = time.perf_counter() - t0
        child.wait()
        os.close(slave)
        os.close(master)
        best = max(best, got / dt)
    return best


def run_flash(folder: Path, port: str, env: dict[str, str], extra: list[str]
              ) -> tuple[dict, int, float]:
    """Run `romkit flash` as a child; return (JSON result, peak RSS KiB, wall seconds)."""
    cmd = [sys.executable, "-m", "romkit", "flash", str(folder), "--port", port, "--wait", "10",
           "--json", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"romkit flash failed ({proc.returncode}): {out[-2000:]!r}")
    return json.loads(out), usage.ru_maxrss, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="bytes written per throughput run")
    ap.add_argument("--packets", default="262144,1048576,4194304",
                    help="comma list of DA packet sizes to compare")
    ap.add_argument("--rss-mib", type=int, default=1024,
                    help="image size for the peak-RSS run (0 = skip)")
    ap.add_argument("--runs", type=int, default=2, help="best of this many runs each")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    args = ap.parse_args()
    packets = [int(p, 0) for p in args.packets.split(",") if p.strip()]

    from romkit.firmware.checksum import write_checksum_ini
    from romkit.sim.artifacts import da_s820, preloader_s820
    from romkit.sim.phone import VirtualPhone
    from romkit.sim.sample_firmware import build_s820_folder

    work = Path(tempfile.mkdtemp(prefix="romkit-flash-bench-", dir=args.dir))
    env = {**os.environ, "ROMKIT_HOME": str(work / "home")}
    os.environ["ROMKIT_HOME"] = env["ROMKIT_HOME"]
    try:
        folder = build_s820_folder(work / "fw", preloader=preloader_s820(2013), da=da_s820())
        system = folder / "system.img"
        nbytes = args.mib * MIB
        write_random(system, nbytes, 0x5820)
        write_checksum_ini(folder)
        phone = VirtualPhone(work / "phone", year=2013)
        port = phone.start()
        print(f"virtual S820 on {port}; {args.mib} MiB per run")
        print(f"{'packet':>10}  {'raw pty MB/s':>12}  {'flash MB/s':>10}  {'ratio':>6}")
        ratios = []
        for packet in packets:
            raw = raw_pty_rate(nbytes, packet, args.runs)
            rate = 0.0
            for _ in range(args.runs):
                doc, _rss, _wall = run_flash(folder, port, env, [
                    "--only", "system", "--no-backup", "--no-verify", "--packet-size",
                    str(packet)])
                phone.wait_finished(10)
                row = next(p for p in doc["partitions"] if p["partition"] == "ANDROID")
                rate = max(rate, row["bytes"] / row["seconds"])
            ratios.append(rate / raw)
            print(f"{packet:>10}  {raw / 1e6:>12.1f}  {rate / 1e6:>10.1f}  {rate / raw:>6.2f}")
        best = max(range(len(packets)), key=lambda i: ratios[i])

        rss_line = "peak RSS: skipped"
        if args.rss_mib:
            doc, rss_small, _w = run_flash(folder, port, env, ["--only", "boot", "--no-backup"])
            phone.wait_finished(10)
            write_random(system, args.rss_mib * MIB, 0x6589)
            write_checksum_ini(folder)
            doc, rss_big, wall = run_flash(folder, port, env, ["--only", "system",
                                                               "--no-backup"])
            phone.wait_finished(10)
            row = next(p for p in doc["partitions"] if p["partition"] == "ANDROID")
            assert row["verified"], row
            print(f"peak RSS flashing boot.img (1 MiB): {rss_small / 1024:.1f} MiB; "
                  f"system.img {args.rss_mib} MiB with verify: {rss_big / 1024:.1f} MiB "
                  f"({wall:.1f} s)")
            rss_line = (f"peak RSS {rss_big / 1024:.0f} MiB for {args.rss_mib} MiB vs "
                        f"{rss_small / 1024:.0f} MiB for 1 MiB")
        phone.stop()
        print(f"summary: best flash/raw ratio {ratios[best]:.2f} at packet {packets[best]}; "
              f"{rss_line}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
