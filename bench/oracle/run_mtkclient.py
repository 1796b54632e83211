"""Drive an unmodified mtkclient checkout against `romkit sim --boot brom`, stage by stage.

Usage (see README.md):
    PYTHONPATH=/path/to/romkit /work/venv/bin/python bench/oracle/run_mtkclient.py \
        --mtkclient /work/oracle/mtkclient --python /work/venv-oracle/bin/python \
        [--dialect NAME] [--workdir DIR] [--only STAGE]

Each stage is one mtkclient run over its serial path (``--serialport``), so each is a whole
session: handshake, DA upload, DRAM setup, flash info, then the command. Prints one
``PASS``/``FAIL`` line per stage and exits non-zero if any stage failed. Fetches nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from simctl import Sim, client_env, write_artifacts  # noqa: E402

# An address in the user area away from the partition tables and calibration (the ANDROID
# region of the common MT6589 layout, reference §9: linear 0x4780000 - 0x600000).
SCRATCH = 0x4180000
WDATA = bytes((i * 7 + 3) & 0xFF for i in range(0x300))  # not a multiple of 512 on purpose


@dataclass
class Stage:
    name: str
    command: list[str]
    check: str  # what a pass means, printed with the result


def stages(work: Path) -> list[Stage]:
    w = work / "write.bin"
    w.write_bytes(WDATA)
    return [
        Stage("handshake+DA+DRAM+flash info+partition table", ["printgpt"],
              "exit 0, no traceback, a partition listing"),
        Stage("read (MBR sector)", ["ro", "0x0", "0x200", str(work / "mbr.bin")],
              "512 bytes ending in 55AA"),
        Stage("write", ["wo", hex(SCRATCH), hex(len(WDATA)), str(w)], "exit 0, no traceback"),
        Stage("write-then-read, one session",
              ["multi", f"wo {hex(SCRATCH)} {hex(len(WDATA))} {w};"
                        f"ro {hex(SCRATCH)} {hex(len(WDATA))} {work / 'readback.bin'}"],
              "the bytes read back equal the bytes written"),
        Stage("erase user sectors (mtkclient ess: writes zeros)", ["ess", hex(SCRATCH // 512),
              "2048"], "exit 0 (mtkclient prints 'Failed to format' when its write succeeds)"),
        Stage("read after erase", ["ro", hex(SCRATCH), "0x200", str(work / "erased.bin")],
              "512 bytes, none of the written pattern left"),
        Stage("FORMAT 0xD4 (BOOT2: write, format, read in one session)",
              ["multi", f"wo 0x0 {hex(len(WDATA))} {w} --parttype boot2;"
                        f"ess 0x0 0x800 --parttype boot2;"
                        f"ro 0x0 0x200 {work / 'formatted.bin'} --parttype boot2"],
              "'Formatted sector', the pattern gone from BOOT2"),
    ]


def judge(stage: Stage, rc: int, out: str, work: Path) -> tuple[bool, str]:
    markers = ["Traceback", "Sync error", "Error on", "error:", "[timeout]"]
    if not stage.name.startswith("erase user"):  # mtkclient's ess message is inverted there
        markers.append("Failed")
    bad = [m for m in markers if m in out]
    if rc != 0 or bad:
        return False, f"rc={rc} {' '.join(repr(b) for b in bad)}"
    if stage.name.startswith("read (MBR"):
        data = (work / "mbr.bin").read_bytes() if (work / "mbr.bin").exists() else b""
        return len(data) == 512 and data[-2:] == b"\x55\xaa", f"{len(data)} bytes"
    if stage.name.startswith("write-then-read"):
        p = work / "readback.bin"
        data = p.read_bytes() if p.exists() else b""
        return data == WDATA, f"{len(data)} bytes read back"
    if stage.name.startswith("FORMAT"):
        p = work / "formatted.bin"
        data = p.read_bytes() if p.exists() else b""
        return ("Formatted sector" in out and len(data) == 512 and data != WDATA[:512],
                f"{len(data)} bytes read after the format")
    if stage.name.startswith("read after"):
        p = work / "erased.bin"
        data = p.read_bytes() if p.exists() else b""
        return len(data) == 512 and data != WDATA[:512], f"{len(data)} bytes"
    if stage.name.startswith("handshake"):
        return "Offset" in out or "GPT" in out or "Partition" in out, "listing printed"
    return True, ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mtkclient", type=Path, required=True, help="an mtkclient checkout")
    ap.add_argument("--python", default=sys.executable, help="python with mtkclient's deps")
    ap.add_argument("--dialect", default=None, help="romkit sim --dialect NAME, if supported")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per stage")
    ap.add_argument("--only", default=None, help="run only stages whose name contains this")
    ap.add_argument("--sim-arg", action="append", default=[],
                    help="extra argument for romkit sim (repeat), e.g. --sim-arg=--trace "
                         "--sim-arg=/tmp/sim.trace")
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="oracle-mtkclient-"))
    work.mkdir(parents=True, exist_ok=True)
    da, pl = write_artifacts(work / "artifacts")
    sim = Sim(work / "sim", dialect=args.dialect, extra=args.sim_arg)
    link = sim.link
    failed = 0
    try:
        for index, st in enumerate(stages(work), 1):
            if args.only and args.only not in st.name:
                continue
            opts = ["--serialport", link, "--loader", str(da), "--preloader", str(pl)]
            # mtkclient's subcommands repeat the connection options (their defaults would
            # override options given before the command), except `multi`, which has none
            cmd = [args.python, str(args.mtkclient / "mtk.py")] + (
                opts + st.command if st.command[0] == "multi" else st.command + opts)
            t0 = time.monotonic()
            try:
                p = subprocess.run(cmd, cwd=args.mtkclient, capture_output=True, text=True,
                                   timeout=args.timeout, env=client_env(link))
                rc, out = p.returncode, p.stdout + p.stderr
            except subprocess.TimeoutExpired as exc:
                rc = -1
                out = (exc.stdout or b"").decode(errors="replace") if isinstance(
                    exc.stdout, bytes) else (exc.stdout or "")
                out += "\n[timeout]"
            log = work / f"stage-{index}.log"
            log.write_text(out)
            ok, why = judge(st, rc, out, work)
            failed += not ok
            last = [ln for ln in out.strip().splitlines() if ln.strip()][-1:] or [""]
            print(f"{'PASS' if ok else 'FAIL'}  {st.name:48s} {time.monotonic() - t0:6.1f}s  "
                  f"{why}  ({st.check})" + ("" if ok else f"\n      last line: {last[0][:160]}"
                                            f"\n      log: {log}"), flush=True)
    finally:
        sim.stop()
    print(f"sim ports used: {' -> '.join(sim.ports)}; sim log: {work / 'sim' / 'sim.log'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
