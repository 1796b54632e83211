"""Run every romkit benchmark and write docs/PERFORMANCE.md from what they print.

Each bench script runs as its own subprocess (so one crash or leak cannot skew another) with
modest sizes — a few minutes in all, `--quick` for well under one. Their full output and their
last `summary:` line are collected into a Markdown report together with the machine it ran on
(CPU model, cores, RAM, Python, numpy, baseline tools found) and the date. A script that is
missing, fails or times out is reported as such in the document, never silently dropped.
The report is written atomically (temp file + rename), so an interrupted run leaves the
previous report intact. Nothing in the previous report is lost by a partial run: sections this
run did not regenerate (other benches under --only, and hand-written sections such as the
modem, sparse and station analyses) are carried over verbatim, marked as kept, with their rows
of the summary table.

    .venv/bin/python bench/run_all.py [--quick] [--only NAME,…] [--out docs/PERFORMANCE.md]
                                      [--timeout SECONDS] [--dry-run]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DEFAULT_OUT = ROOT / "docs" / "PERFORMANCE.md"
BASELINE_TOOLS = ("md5sum", "cat", "curl", "aria2c", "7z")
TAIL_LINES = 25


@dataclass(frozen=True)
class Bench:
    """One benchmark script and the arguments it gets in a normal and a --quick run."""

    script: str
    title: str
    normal: tuple[str, ...]
    quick: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.script.removesuffix(".py")


BENCHES: tuple[Bench, ...] = (
    Bench("checksum_bench.py", "Checksum throughput vs md5sum and cat",
          ("--mib", "1024", "--runs", "3"), ("--mib", "64", "--runs", "2")),
    Bench("fetch_bench.py", "Download vs curl / aria2c -x8 (capped local server); unpack vs 7z x",
          ("--size-mb", "32", "--unpack-mb", "512"),
          ("--size-mb", "8", "--unpack-mb", "32")),
    Bench("flash_bench.py", "Flash to the virtual phone vs raw pty throughput; peak RSS",
          ("--mib", "256", "--rss-mib", "1024"),
          ("--mib", "32", "--rss-mib", "128", "--runs", "1")),
    Bench("link_bench.py", "Flash over the pty vs over the TCP link (romkit sim --link tcp)",
          ("--mib", "128", "--runs", "3"), ("--mib", "16", "--runs", "1")),
    Bench("profile_flash.py", "CPU profile of the flash path (cProfile, top 5)",
          ("--scale", "8"), ("--scale", "2")),
    Bench("startup_bench.py", "CLI start-up vs a bare typer app; whole-process checksum/verify "
          "vs md5sum", ("--runs", "15", "--mib", "1024", "--big-runs", "3"),
          ("--runs", "5", "--mib", "128", "--big-runs", "1")),
)


@dataclass
class Outcome:
    bench: Bench
    status: str  # "ok", "missing", "failed (exit N)", "timed out after N s"
    command: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stdout: str = ""
    stderr: str = ""

    @property
    def summary(self) -> str:
        """The script's last `summary:` line (its ratios), or what went wrong."""
        for line in reversed(self.stdout.splitlines()):
            if line.strip().lower().startswith("summary:"):
                return line.strip()[len("summary:"):].strip()
        return "(no summary line)" if self.status == "ok" else self.status


# -- machine facts -----------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _ram_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _numpy_version() -> str:
    try:
        import numpy
    except ImportError:
        return "not installed"
    return numpy.__version__


def _git_commit() -> str:
    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return res.stdout.strip() if res.returncode == 0 else "unknown"


def machine_facts() -> list[tuple[str, str]]:
    ram = _ram_bytes()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = f"{os.cpu_count()} logical" + (f" ({affinity} usable)" if affinity else "")
    tools = ", ".join(f"{t} {'yes' if shutil.which(t) else 'no'}" for t in BASELINE_TOOLS)
    return [
        ("CPU", _cpu_model()),
        ("Cores", cores),
        ("RAM", f"{ram / 2**30:.1f} GiB" if ram else "unknown"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("numpy", _numpy_version()),
        ("Baseline tools", tools),
        ("romkit commit", _git_commit()),
    ]


# -- running -----------------------------------------------------------------------------------
def run_bench(bench: Bench, quick: bool, timeout: float) -> Outcome:
    path = BENCH / bench.script
    if not path.is_file():
        return Outcome(bench, "missing", stderr=f"{path.relative_to(ROOT)} does not exist")
    cmd = [sys.executable, str(path), *(bench.quick if quick else bench.normal)]
    shown = ["python", f"bench/{bench.script}", *cmd[2:]]
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix=f"romkit-{bench.name}-") as home:
        env["ROMKIT_HOME"] = home  # never the user's real cache / data / config
        t0 = time.monotonic()
        try:
            res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return Outcome(bench, f"timed out after {timeout:g} s", shown,
                           time.monotonic() - t0, _text(exc.stdout), _text(exc.stderr))
        seconds = time.monotonic() - t0
    status = "ok" if res.returncode == 0 else f"failed (exit {res.returncode})"
    return Outcome(bench, status, shown, seconds, res.stdout, res.stderr)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


# -- the report --------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fenced(text: str) -> list[str]:
    body = text.rstrip("\n") or "(no output)"
    fence = "```"
    while fence in body:
        fence += "`"
    return [fence + "text", body, fence]


def render(outcomes: list[Outcome], facts: list[tuple[str, str]], quick: bool,
           started: dt.datetime, total: float) -> str:
    flag = " --quick" if quick else ""
    ok = sum(o.status == "ok" for o in outcomes)
    lines = [
        "# romkit performance",
        "",
        f"Generated by `bench/run_all.py{flag}` on {started:%Y-%m-%d %H:%M} UTC in "
        f"{total:.0f} s; {ok} of {len(outcomes)} benchmarks ran. Every number below was "
        "measured on the machine described here, against a baseline measured in the same run; "
        "re-run the command to reproduce them on yours.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {_cell(v)} |" for k, v in facts],
        "",
        "## Summary",
        "",
        "| Benchmark | Status | Time | Result (the script's summary line) |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        took = f"{o.seconds:.0f} s" if o.command else "-"
        lines.append(f"| {o.bench.title} | {_cell(o.status)} | {took} | {_cell(o.summary)} |")
    for o in outcomes:
        lines += ["", f"## {o.bench.title}", ""]
        if o.status == "missing":
            lines.append(f"**Not run:** `bench/{o.bench.script}` is missing from this tree.")
            continue
        lines += [f"Command: `{' '.join(o.command)}` — {o.status}, {o.seconds:.1f} s.", ""]
        lines += _fenced(o.stdout)
        if o.status != "ok":
            tail = "\n".join(o.stderr.rstrip().splitlines()[-TAIL_LINES:])
            lines += ["", f"**{o.status.capitalize()}.** Last lines of its error output:", ""]
            lines += _fenced(tail)
    return "\n".join(lines) + "\n"


KEPT_NOTE = "*(Kept from an earlier report: not re-run by the `bench/run_all.py` run above.)*"


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading title, its lines including the heading) of each `## ` section, in order;
    headings inside fenced blocks are bench output, not sections."""
    out: list[tuple[str, list[str]]] = []
    fence = ""
    for line in text.splitlines():
        stripped = line.strip()
        if fence and stripped.startswith(fence) and stripped.strip("`") == "":
            fence = ""
        elif not fence and stripped.startswith("```"):
            fence = stripped[:len(stripped) - len(stripped.lstrip("`"))]
        elif not fence and line.startswith("## "):
            out.append((line[3:].strip(), [line]))
            continue
        if out:
            out[-1][1].append(line)
    return out


def merge_kept(report: str, previous: str | None) -> str:
    """`report` plus what `previous` holds that this run did not regenerate: its other
    sections verbatim (marked as kept) and their rows of the summary table."""
    if not previous:
        return report
    new = _sections(report)
    done = {title for title, _ in new}
    old = _sections(previous)
    kept = [(t, body) for t, body in old if t not in done]
    old_summary = next((body for t, body in old if t == "Summary"), [])
    rows = [ln for ln in old_summary if ln.startswith("| ") and not ln.startswith("| Benchmark")
            and ln.split("|")[1].strip() not in done]
    if not kept and not rows:
        return report
    head = report.split("\n## ", 1)[0].rstrip("\n").splitlines()
    lines = list(head)
    for title, body in new:
        body = list(body)
        if title == "Summary" and rows:
            end = max(i for i, ln in enumerate(body) if ln.startswith("|")) + 1
            body[end:end] = rows
        lines += [""] + _trim(body)
    for _title, body in kept:
        body = _trim(body)
        if KEPT_NOTE not in body:
            body[1:1] = ["", KEPT_NOTE]
        lines += [""] + body
    return "\n".join(lines) + "\n"


def _trim(body: list[str]) -> list[str]:
    while body and not body[-1].strip():
        body = body[:-1]
    return body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: well under a minute")
    ap.add_argument("--only", default="", help="comma-separated bench names to run")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report to write")
    ap.add_argument("--timeout", type=float, default=None,
                    help="per-script limit in seconds (default 300 quick, 1200 normal)")
    ap.add_argument("--dry-run", action="store_true",
                    help="run the benchmarks and print the report instead of writing it")
    args = ap.parse_args(argv)
    wanted = {n.strip().removesuffix(".py") for n in args.only.split(",") if n.strip()}
    unknown = wanted - {b.name for b in BENCHES}
    if unknown:
        ap.error(f"unknown bench {sorted(unknown)[0]!r}; known: "
                 + ", ".join(b.name for b in BENCHES))
    timeout = args.timeout or (300.0 if args.quick else 1200.0)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    outcomes = []
    for bench in BENCHES:
        if wanted and bench.name not in wanted:
            continue
        print(f"== {bench.script} …", file=sys.stderr, flush=True)
        outcome = run_bench(bench, args.quick, timeout)
        print(outcome.stdout.rstrip() or "(no output)", flush=True)
        print(f"== {bench.script}: {outcome.status} ({outcome.seconds:.1f} s)", file=sys.stderr,
              flush=True)
        outcomes.append(outcome)
    report = render(outcomes, machine_facts(), args.quick, started, time.monotonic() - t0)
    report = merge_kept(report, args.out.read_text(encoding="utf-8")
                        if args.out.is_file() else None)
    if args.dry_run:
        print(report)
    else:
        from romkit.fsutil import atomic_write_text

        atomic_write_text(args.out, report)
        print(f"wrote {args.out}", file=sys.stderr)
    ok = sum(o.status == "ok" for o in outcomes)
    print(f"summary: {ok} of {len(outcomes)} benchmarks ok; " + "; ".join(
        f"{o.bench.name}: {o.status if o.status != 'ok' else o.summary}" for o in outcomes))
    return 0 if ok == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
