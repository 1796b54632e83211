"""How does a station scale with the number of phones on one (2-core) computer?

For N = 1, 2, 4, 8 virtual phones (each a separate `romkit sim` process with its own CID, so
the phones' CPU is real and separate), one `run_station` flashes the same firmware to all of
them (each phone by its own `romkit flash` child). Printed per N:
- wall time, aggregate throughput (image bytes written and verified per second, all phones
  together) and the ratio of the wall time to N=1's (goal: ≤ 2.5 at N=4 on 2 cores);
- CPU seconds per phone, split into the host side (`romkit flash` child), the phone side
  (its `romkit sim` process, from /proc before it exits) and the station parent itself;
- utilisation: all that CPU over wall × cores — near 100 % the host is saturated and more
  phones only queue;
- the median phone's timeline from its station log (seconds since its child started):
  start-up (interpreter + imports, to the first event), pre-flight hashing of the images,
  bring-up (BROM handshake, DA, DRAM, speed switch — to the plan), calibration backup, and
  write + verify.

Bytecode: the children run with .pyc files (PYTHONDONTWRITEBYTECODE is dropped and the
modules are imported once first), as an installed romkit does; without them every child
would compile romkit's sources (~0.1 s more each).

Not a test: it prints numbers; the last line is a summary.

    .venv/bin/python bench/station_bench.py [--phones 1,2,4,8] [--scale 8] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.fleet import phone_cid
from romkit.sim.sample_firmware import build_s820_folder
from romkit.station import StationRequest, run_station

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def start_sims(n: int, root: Path, first: int) -> tuple[list[subprocess.Popen[str]], list[str]]:
    """N `romkit sim` processes (one phone each, so each phone's CPU is its own process's)."""
    procs, ports = [], []
    for i in range(n):
        proc = subprocess.Popen(
            [sys.executable, "-m", "romkit", "sim", "--json", "--state", str(root / f"s{i}"),
             "--memory-id", phone_cid(2013, first + i).hex(), "--reset"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(proc)
    for proc in procs:
        assert proc.stdout is not None
        ports.append(json.loads(proc.stdout.readline())["port"])
    return procs, ports


def proc_cpu(pid: int) -> float:
    """utime + stime of a live process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def timeline(log: Path) -> dict[str, float]:
    """Seconds since the child started at which its phases ended, from its station log."""
    marks: dict[str, float] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or parts[1] != "E":
            continue
        try:
            t, ev = float(parts[0]), json.loads(parts[2])
        except ValueError:
            continue
        marks.setdefault("first", t)
        task, kind = ev.get("task") or "", ev.get("event")
        if task == "hash" and kind == "end":
            marks["hashed"] = t
        if kind == "info" and ev.get("label") == "plan":
            marks.setdefault("plan", t)
        if task == "backup" and kind == "end":
            marks["backup"] = t
        if task.startswith("verify:") and kind == "end":
            marks["verified"] = t
    return marks


def phases(marks: dict[str, float]) -> dict[str, float]:
    first = marks.get("first", 0.0)
    hashed = marks.get("hashed", first)
    plan = marks.get("plan", hashed)
    backup = marks.get("backup", plan)
    return {"start-up": first, "hash": hashed - first, "bring-up": plan - hashed,
            "backup": backup - plan, "write+verify": marks.get("verified", backup) - backup}


def warm_bytecode() -> None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", "import romkit.cli.app, romkit.cli.flash, "
                    "romkit.cli.sim, romkit.flash.engine, romkit.sim.phone"], check=True)


def forkserver_cpu() -> float:
    """CPU of the multiprocessing fork server so far (its imports are paid once per run)."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    return proc_cpu(pid) if pid else 0.0


def curve(launcher: str, counts: list[int], root: Path, folder: Path, image_bytes: int,
          cores: int, serial: int, repeat: int) -> tuple[int, str]:
    """One scaling curve; returns the next free phone serial and the summary fragment."""
    print(f"\nlauncher {launcher}:")
    print(f"{'phones':>6} {'ok':>5} {'wall s':>7} {'MB/s':>6} {'x 1':>5} "
          f"{'cpu/phone':>9} {'host':>5} {'phone':>5} {'parent':>6} {'util':>5}   "
          "median phone: start-up / hash / bring-up / backup / write+verify s")
    base: float | None = None
    ratios = []
    rates: list[tuple[int, float]] = []
    for n in counts:
        best: tuple[float, str] | None = None
        for _ in range(repeat):
            serial, wall, line = one_run(launcher, n, root, folder, image_bytes, cores, serial)
            if best is None or wall < best[0]:
                best = (wall, line)
        assert best is not None
        base = base or best[0]
        print(best[1].replace("RATIO", f"{best[0] / base:5.2f}"))
        ratios.append(f"{n}:{best[0] / base:.2f}x")
        rates.append((n, n * image_bytes / best[0] / 1e6))
    top = max(rate for _n, rate in rates)
    knee = next(n for n, rate in rates if rate >= 0.9 * top)
    print(f"host saturates at {knee} phones: aggregate {top:.1f} MB/s of images at best, "
          f"within 10% of it from {knee} phones on")
    return serial, f"{launcher} " + ", ".join(ratios) + f" (saturated at {knee})"


def one_run(launcher: str, n: int, root: Path, folder: Path, image_bytes: int, cores: int,
            serial: int) -> tuple[int, float, str]:
    """One station run of n phones; (next serial, wall seconds, the printed row)."""
    stop = getattr(getattr(forkserver_module(), "_forkserver", None), "_stop", None)
    if stop is not None:
        stop()  # every run pays the fork server's start (its imports), as a real run does
    sims, ports = start_sims(n, root / f"{launcher}{n}-{serial}", serial)
    serial += n
    kids0, self0 = cpu(resource.RUSAGE_CHILDREN), cpu(resource.RUSAGE_SELF)
    fs0 = forkserver_cpu()
    t0 = time.monotonic()
    try:
        res = run_station(StationRequest(
            ports=ports, flash_args=[str(folder)], wait=30,
            log_dir=root / f"logs-{launcher}{n}", launcher=launcher))  # type: ignore[arg-type]
        wall = time.monotonic() - t0
        phone_cpu = sum(proc_cpu(p.pid) for p in sims)
        fs_cpu = forkserver_cpu() - fs0
    finally:
        for p in sims:
            p.terminate()
        for p in sims:
            p.wait()
    reported = [r.cpu_seconds for r in res.phones]
    if launcher == "forkserver" and all(c is not None for c in reported):
        host_cpu = sum(c or 0.0 for c in reported) + fs_cpu  # forked children self-report
    else:
        host_cpu = cpu(resource.RUSAGE_CHILDREN) - kids0 - phone_cpu
    parent_cpu = cpu(resource.RUSAGE_SELF) - self0
    ok = sum(r.result == "ok" for r in res.phones)
    rate = ok * image_bytes / wall / 1e6
    total = host_cpu + phone_cpu + parent_cpu
    ph = [phases(timeline(r.log)) for r in res.phones if r.log is not None]
    med = {k: statistics.median(p[k] for p in ph) for k in ph[0]} if ph else {}
    line = (f"{n:>6} {ok:>2}/{n:<2} {wall:>7.2f} {rate:>6.1f} RATIO "
            f"{total / n:>9.2f} {host_cpu / n:>5.2f} {phone_cpu / n:>5.2f} "
            f"{parent_cpu / n:>6.2f} {100 * total / (wall * cores):>4.0f}%   "
            + " / ".join(f"{v:.2f}" for v in med.values()))
    return serial, wall, line


def forkserver_module() -> object:
    from multiprocessing import forkserver

    return forkserver


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--phones", default="1,2,4,8")
    ap.add_argument("--scale", type=float, default=8.0, help="image size factor (1 ≈ 5 MiB)")
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per point; the fastest is shown (other load on the machine "
                         "only ever slows a run down)")
    ap.add_argument("--launcher", default="forkserver,exec",
                    help="how children start, one curve each: forkserver (POSIX default: "
                         "forked with the flash stack imported) and/or exec (fresh python)")
    args = ap.parse_args()
    warm_bytecode()
    root = Path(tempfile.mkdtemp(prefix="romkit-station-bench-", dir=args.dir))
    os.environ["ROMKIT_HOME"] = str(root / "home")  # logs, locks, journals: not the user's
    cores = os.cpu_count() or 1
    try:
        folder = build_s820_folder(root / "fw", preloader=preloader_s820(2013), da=da_s820(),
                                   image_scale=args.scale)
        image_bytes = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()
                          and f.suffix in (".img", ".bin") and "DA" not in f.name)
        print(f"firmware: {image_bytes / 1e6:.1f} MB of images per phone (scale "
              f"{args.scale:g}); {cores} cores; python {sys.version.split()[0]}")
        summary = []
        serial = 1
        for launcher in args.launcher.split(","):
            serial, line = curve(launcher, [int(x) for x in args.phones.split(",")], root,
                                 folder, image_bytes, cores, serial, args.repeat)
            summary.append(line)
        print("summary: wall time relative to one phone: " + "; ".join(summary)
              + " (goal: 4 phones <= 2.5x)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
