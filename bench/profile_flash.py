"""Where does the host spend its time while flashing? cProfile of one `flash` run.

Builds the synthetic S820 firmware folder (`--scale` multiplies its ~5 MiB of images),
starts the virtual phone on a real pty in this process, and profiles `romkit.flash.engine.flash`
— backup, write and read-back verify of every partition — in the calling thread only: the
phone runs in its own thread, which cProfile does not see, so the numbers are the host's.
Prints the top functions by cumulative time and by own (total) time. Not a test; the last
line is a summary.

    .venv/bin/python bench/profile_flash.py [--scale 4] [--top 5] [--packet-size 1048576]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

Key = tuple[str, int, str]
Row = tuple[Key, int, float, float]  # key, calls, total (own) time, cumulative time


def where(key: Key) -> str:
    """`romkit/flash/engine.py:123(run)` — repo-relative, or the module tail for libraries."""
    file, line, func = key
    if file == "~":
        return func  # built-in: "{method 'read' of ...}"
    path = Path(file)
    try:
        shown = str(path.resolve().relative_to(ROOT))
    except ValueError:
        parts = path.parts
        shown = "/".join(parts[-2:]) if len(parts) >= 2 else file
    return f"{shown}:{line}({func})"


def rows(profile: cProfile.Profile) -> list[Row]:
    stats = pstats.Stats(profile)
    raw = stats.stats  # type: ignore[attr-defined]
    return [(key, nc, tt, ct) for key, (_cc, nc, tt, ct, _callers) in raw.items()]


def table(title: str, picked: list[Row], wall: float) -> list[str]:
    lines = [title, f"  {'#':>2}  {'calls':>9}  {'own s':>8}  {'cum s':>8}  {'cum %':>6}  "
                    "function"]
    for i, (key, calls, own, cum) in enumerate(picked, 1):
        lines.append(f"  {i:>2}  {calls:>9}  {own:>8.3f}  {cum:>8.3f}  "
                     f"{100 * cum / wall:>5.1f}%  {where(key)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=4.0,
                    help="image size factor of the synthetic firmware (1.0 ≈ 5 MiB)")
    ap.add_argument("--top", type=int, default=5, help="rows per table")
    ap.add_argument("--packet-size", type=int, default=None,
                    help="DA write packet size (default: the engine's)")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="romkit-profile-"))
    os.environ["ROMKIT_HOME"] = str(work / "home")
    # imported after ROMKIT_HOME is set so nothing can touch the user's real folders
    from romkit.flash.engine import FlashRequest, flash
    from romkit.flash.plan import PlanOptions
    from romkit.sim.artifacts import da_s820, preloader_s820
    from romkit.sim.phone import VirtualPhone
    from romkit.sim.sample_firmware import build_s820_folder

    try:
        folder = build_s820_folder(work / "fw", preloader=preloader_s820(2013), da=da_s820(),
                                   image_scale=args.scale)
        phone = VirtualPhone(work / "phone", year=2013)
        port = phone.start()
        try:
            extra = {} if args.packet_size is None else {"packet_size": args.packet_size}
            request = FlashRequest(firmware_dir=folder, port=port, wait=20,
                                   options=PlanOptions(), **extra)
            profile = cProfile.Profile()
            t0 = time.perf_counter()
            profile.enable()
            result = flash(request)
            profile.disable()
            wall = time.perf_counter() - t0
            phone.wait_finished(20)
        finally:
            phone.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    written = sum(p.bytes for p in result.partitions)
    if not all(p.verified for p in result.partitions):
        print("flash finished but not every partition verified", file=sys.stderr)
        return 1
    data = rows(profile)
    profiled = max((ct for _k, _n, _t, ct in data), default=wall) or wall
    by_cum = sorted(data, key=lambda r: r[3], reverse=True)
    # Below the entry point itself, the cumulative ranking says which *stage* costs.
    inner = [r for r in by_cum if r[0][2] != "flash" and "disable" not in r[0][2]]
    by_own = sorted(data, key=lambda r: r[2], reverse=True)
    print(f"flash of the synthetic S820 (scale {args.scale:g}): {len(result.partitions)} "
          f"partitions, {written / 2**20:.1f} MiB written and read back, backup "
          f"{result.backup_set or 'none'}; {wall:.2f} s wall under cProfile "
          f"({written / wall / 1e6:.1f} MB/s written); host thread only")
    for line in table(f"top {args.top} by cumulative time (below flash())",
                      inner[:args.top], profiled):
        print(line)
    for line in table(f"top {args.top} by own (total) time", by_own[:args.top], profiled):
        print(line)
    own_share = sum(r[2] for r in by_own[:args.top]) / profiled
    # wrappers (run loop, entry points) hold ~all the time; name the first real stage instead
    stage = next((r for r in inner if r[3] < 0.9 * profiled), None)
    stage_text = f"{where(stage[0])} ({100 * stage[3] / profiled:.0f}%)" if stage else "-"
    print(f"summary: profiled flash {written / 2**20:.1f} MiB in {wall:.2f} s; costliest stage "
          f"{stage_text}; top own time {where(by_own[0][0])} "
          f"({100 * by_own[0][2] / profiled:.0f}%); top {args.top} own = "
          f"{100 * own_share:.0f}% of the run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
