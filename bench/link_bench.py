"""How fast does `romkit flash` write over each of the virtual phone's links (issue 20)?

The same system.img (N MiB of random bytes) is flashed to the virtual S820 over its pty and
over its TCP link (`romkit sim --link tcp`, reached as `socket://127.0.0.1:N`) by
`romkit flash --only system --no-backup --packet-size P` in a child process (the phone runs in
this process, as `romkit sim` would in its own), once without and once with the read-back
verify. Prints per link, best of `--runs`: write MB/s (the partition's bytes / its time, from
the engine's JSON), write+verify MB/s (the same with the read-back), the whole command's wall
time (start-up, handshake, DA and the re-enumeration included), and the tcp/pty ratios.

Not a test: it prints numbers; the last line is a summary.

    .venv/bin/python bench/link_bench.py [--mib 128] [--packet 1048576] [--runs 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MIB = 1024 * 1024
LINKS = ("pty", "tcp")


def write_random(path: Path, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())


def run_flash(folder: Path, port: str, env: dict[str, str], extra: list[str]) -> dict:
    """`romkit flash --json` as a child process; returns its JSON result."""
    cmd = [sys.executable, "-m", "romkit", "flash", str(folder), "--port", port, "--wait", "10",
           "--json", "--only", "system", "--no-backup", *extra]
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"romkit flash over {port} failed ({proc.returncode}): "
                         f"{proc.stderr[-2000:]!r}")
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=128, help="size of the image flashed")
    ap.add_argument("--packet", type=int, default=1024 * 1024, help="DA packet size")
    ap.add_argument("--runs", type=int, default=2, help="best of this many runs each")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    args = ap.parse_args()

    from romkit.firmware.checksum import write_checksum_ini
    from romkit.sim.artifacts import da_s820, preloader_s820
    from romkit.sim.phone import VirtualPhone
    from romkit.sim.sample_firmware import build_s820_folder

    work = Path(tempfile.mkdtemp(prefix="romkit-link-bench-", dir=args.dir))
    env = {**os.environ, "ROMKIT_HOME": str(work / "home")}
    os.environ["ROMKIT_HOME"] = env["ROMKIT_HOME"]  # the phone announces its ports there
    try:
        folder = build_s820_folder(work / "fw", preloader=preloader_s820(2013), da=da_s820())
        nbytes = args.mib * MIB
        write_random(folder / "system.img", nbytes, 0x5820)
        write_checksum_ini(folder)
        print(f"system.img {args.mib} MiB, packet {args.packet}, best of {args.runs}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'link':>5}  {'write MB/s':>10}  {'write+verify MB/s':>17}  {'whole flash s':>13}")
        rates: dict[str, tuple[float, float, float]] = {}
        for link in LINKS:
            phone = VirtualPhone(work / f"phone-{link}", year=2013, link=link)
            phone.start()
            try:
                write = both = 0.0
                wall = float("inf")
                for _ in range(args.runs):
                    port = phone.wait_port(10)
                    assert port is not None
                    doc = run_flash(folder, port, env, ["--no-verify", "--packet-size",
                                                        str(args.packet)])
                    phone.wait_finished(30)
                    row = next(p for p in doc["partitions"] if p["partition"] == "ANDROID")
                    write = max(write, row["bytes"] / row["seconds"])
                    port = phone.wait_port(10)
                    assert port is not None
                    t0 = time.perf_counter()
                    doc = run_flash(folder, port, env, ["--packet-size", str(args.packet)])
                    wall = min(wall, time.perf_counter() - t0)
                    phone.wait_finished(30)
                    row = next(p for p in doc["partitions"] if p["partition"] == "ANDROID")
                    assert row["verified"], row
                    both = max(both, row["bytes"] / row["seconds"])  # written and read back
                rates[link] = (write, both, wall)
            finally:
                phone.stop()
            print(f"{link:>5}  {write / 1e6:>10.1f}  {both / 1e6:>17.1f}  {wall:>13.2f}")
        (pw, pb, _), (tw, tb, _) = rates["pty"], rates["tcp"]
        print(f"summary: write {pw / 1e6:.0f} MB/s over pty, {tw / 1e6:.0f} MB/s over tcp "
              f"(tcp/pty {tw / pw:.2f}); write+verify {pb / 1e6:.0f} vs {tb / 1e6:.0f} MB/s "
              f"(tcp/pty {tb / pb:.2f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
