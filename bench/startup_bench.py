"""How long does the `romkit` process take, start-up included, next to a bare typer app?

Part 1, start-up: runs each command line as a fresh process (best and median of N), next to a
bare typer app written to a temp folder and measured in the same run:
  bare typer app --version / --help   (one command, one eager --version option)
  romkit --version, romkit --help, romkit explain 4032
Goal (issue 18): each romkit line within 2x the bare app's start-up.

Part 2, whole process on ~1 GiB of images (page cache warm), start-up included:
  romkit checksum DIR   vs  md5sum IMAGES     goal >= 3x md5sum
  romkit verify DIR     vs  md5sum IMAGES     goal >= 2x md5sum
The folder is the synthetic S820 package of romkit.sim.sample_firmware with system.img and
userdata.img replaced by random data (within their partitions) and checksum.ini regenerated.

Times are wall-clock of the child and CPU (user+sys of the child from getrusage); ratios use
the best run. Not a test: it prints numbers; the last line is a summary.

    python bench/startup_bench.py [--runs 15] [--mib 1024] [--big-runs 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BARE_APP = '''
import typer

app = typer.Typer()


def _version(value: bool) -> None:
    if value:
        typer.echo("bare 1.0")
        raise typer.Exit()


@app.command()
def main(code: str = typer.Argument("x", help="A value."),
         version: bool = typer.Option(False, "--version", callback=_version, is_eager=True)
         ) -> None:
    """A bare typer app: the floor for any typer CLI's start-up."""
    typer.echo(code)


if __name__ == "__main__":
    app()
'''


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, child CPU seconds) of one run; output discarded, exit code checked."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): "
                         f"{done.stderr.decode(errors='replace')[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(argv: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = timed(argv, env)
        walls.append(wall)
        cpus.append(cpu)
    return {"wall": min(walls), "wall_med": statistics.median(walls), "cpu": min(cpus),
            "cpu_med": statistics.median(cpus)}


def build_big_folder(work: Path, mib: int, env: dict[str, str]) -> tuple[Path, list[Path]]:
    """The synthetic S820 package with ~`mib` MiB of random system/userdata images."""
    sys.path.insert(0, str(ROOT))
    from romkit.firmware.scatter import parse_scatter
    from romkit.sim.artifacts import preloader_s820
    from romkit.sim.sample_firmware import build_s820_folder

    folder = build_s820_folder(work / "fw", preloader=preloader_s820(2013))
    scatter = next(folder.glob("*_scatter*.txt"))
    layout = parse_scatter(scatter)
    sizes = {p.name: p.size for p in layout.partitions}
    want = mib * 1024 * 1024
    plan = [("system.img", "ANDROID"), ("userdata.img", "USRDATA")]
    chunk = 16 * 1024 * 1024
    for name, part in plan:
        size = min(want // len(plan), sizes[part] or want)
        size -= size % chunk
        with (folder / name).open("wb") as fh:
            for _ in range(size // chunk):
                fh.write(os.urandom(chunk))
    subprocess.run([sys.executable, "-m", "romkit", "checksum", str(folder), "--write"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    images = [p for p in folder.iterdir() if p.is_file() and p.suffix in (".img", ".bin")
              or p.name in ("MBR", "EBR1", "EBR2")]
    return folder, sorted(images)


def line(label: str, m: dict[str, float], base: dict[str, float] | None) -> str:
    ratio = f"  {m['cpu'] / base['cpu']:4.2f}x bare CPU, {m['wall'] / base['wall']:4.2f}x " \
            "bare wall" if base else ""
    return (f"  {label:<24} wall {m['wall'] * 1000:6.0f} ms (median {m['wall_med'] * 1000:5.0f})"
            f"  CPU {m['cpu'] * 1000:6.0f} ms (median {m['cpu_med'] * 1000:5.0f}){ratio}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="runs per start-up command line")
    ap.add_argument("--mib", type=int, default=1024, help="image data for checksum/verify")
    ap.add_argument("--big-runs", type=int, default=3, help="runs per 1 GiB command line")
    ap.add_argument("--dir", type=Path, default=None, help="where to write the images")
    ap.add_argument("--skip-big", action="store_true", help="start-up only")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="romkit-startup-bench-", dir=args.dir))
    env = {**os.environ, "ROMKIT_HOME": str(work / "home"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get(
               "PYTHONPATH")]))}
    py = sys.executable
    try:
        bare = work / "bare.py"
        bare.write_text(BARE_APP)
        rk = [py, "-m", "romkit"]
        cases = [("bare typer --version", [py, str(bare), "--version"]),
                 ("bare typer --help", [py, str(bare), "--help"]),
                 ("bare typer 4032", [py, str(bare), "4032"]),
                 ("romkit --version", [*rk, "--version"]),
                 ("romkit --help", [*rk, "--help"]),
                 ("romkit explain 4032", [*rk, "explain", "4032"])]
        # each romkit line next to the bare app doing the same kind of thing
        same_kind = {"romkit --version": "bare typer --version",
                     "romkit --help": "bare typer --help",
                     "romkit explain 4032": "bare typer 4032"}
        for _label, argv in cases:  # warm the file cache and .pyc files
            timed(argv, env)
        results = {label: measure(argv, env, args.runs) for label, argv in cases}
        floor = results["bare typer --version"]
        print(f"start-up, best and median of {args.runs} runs (python {sys.version.split()[0]})")
        for label, m in results.items():
            if label.startswith("bare"):
                print(line(label, m, None))
                continue
            print(line(label, m, results[same_kind[label]]) + " (same kind)")
            print(f"  {'':<24} {m['cpu'] / floor['cpu']:4.2f}x the bare app's --version CPU")
        worst = max(results[k]["cpu"] / results[b]["cpu"] for k, b in same_kind.items())
        worst_floor = max(results[k]["cpu"] / floor["cpu"] for k in same_kind)
        summary = [f"start-up worst {worst:.2f}x a bare typer app doing the same "
                   f"({worst_floor:.2f}x its --version) in CPU (goal <= 2x)"]

        if not args.skip_big:
            folder, images = build_big_folder(work, args.mib, env)
            names = [str(p) for p in images]
            total = sum(p.stat().st_size for p in images) / 1024**2
            subprocess.run(["cat", *names], stdout=subprocess.DEVNULL, check=True)
            md5 = measure(["md5sum", *names], env, args.big_runs)
            checksum = measure([*rk, "checksum", str(folder)], env, args.big_runs)
            verify = measure([*rk, "verify", str(folder)], env, args.big_runs)
            print(f"whole process on {total:.0f} MiB in {len(images)} files (cache warm), best "
                  f"and median of {args.big_runs}")
            print(line("md5sum FILES", md5, None))
            for label, m in (("romkit checksum DIR", checksum), ("romkit verify DIR", verify)):
                print(line(label, m, None) + f"  = {md5['wall'] / m['wall']:.2f}x md5sum "
                      f"(wall), {md5['cpu'] / m['cpu']:.2f}x (CPU)")
            for label, m, goal in (("checksum", checksum, 3), ("verify", verify, 2)):
                summary.append(f"{label} {md5['cpu'] / m['cpu']:.2f}x md5sum CPU, "
                               f"{md5['wall'] / m['wall']:.2f}x wall (goal >= {goal}x)")
        print("summary: " + "; ".join(summary))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
