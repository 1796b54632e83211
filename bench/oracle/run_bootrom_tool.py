"""Run MediaTek's own boot-ROM uploader (`bootrom-tool` from the `genio-bootrom` package on
PyPI) against `romkit sim --boot brom`.

bootrom-tool has no port option: it asks libudev for a tty whose USB parent is 0E8D:0003 and
opens its /dev node. So the tool runs in a private mount namespace (root, `unshare -m`) where
/sys holds one fake USB device (0E8D:0003 with a ttyACM0 child) and /dev/ttyACM0 is the sim's
pty; fakesysfs.c (LD_PRELOAD, built here with cc) makes libudev accept that /sys, which it
otherwise rejects for not being sysfs. Nothing outside the namespace sees any of it; the tool
itself is unmodified.

Usage (root; see README.md):
    PYTHONPATH=/path/to/romkit /work/venv/bin/python bench/oracle/run_bootrom_tool.py \
        [--bootrom-tool PATH] [--dialect NAME]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from simctl import Sim  # noqa: E402

# Runs as root inside `unshare --mount --propagation private`; $PTY is the sim's pty,
# $WORK a scratch folder, $TOOL the binary, then the tool's arguments.
NAMESPACE = r'''
set -e
mkdir -p "$WORK/realdev"
mount --rbind /dev "$WORK/realdev"
mount -t tmpfs tmpfs /sys
d=/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1
mkdir -p /sys/bus/usb /sys/class/tty "$d/1-1:1.0/tty/ttyACM0"
printf 'DEVTYPE=usb_device\nPRODUCT=e8d/3/100\nDEVNAME=bus/usb/001/002\n' > "$d/uevent"
echo 0e8d > "$d/idVendor"; echo 0003 > "$d/idProduct"; echo ROMKITSIM > "$d/serial"
ln -s /sys/bus/usb "$d/subsystem"
printf 'DEVTYPE=usb_interface\nINTERFACE=2/2/1\n' > "$d/1-1:1.0/uevent"
ln -s /sys/bus/usb "$d/1-1:1.0/subsystem"
t="$d/1-1:1.0/tty/ttyACM0"
printf 'MAJOR=166\nMINOR=0\nDEVNAME=ttyACM0\n' > "$t/uevent"; echo 166:0 > "$t/dev"
ln -s /sys/class/tty "$t/subsystem"
ln -s "$t" /sys/class/tty/ttyACM0
mount -t tmpfs tmpfs /dev
for n in null zero urandom random tty ptmx; do
  touch "/dev/$n"; mount --bind "$WORK/realdev/$n" "/dev/$n"
done
mkdir /dev/pts; mount --rbind "$WORK/realdev/pts" /dev/pts
touch /dev/ttyACM0; mount --bind "$PTY" /dev/ttyACM0
cd "$WORK"
LD_PRELOAD="$SHIM" exec "$TOOL" "$@"
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootrom-tool", default=None,
                    help="path of bootrom-tool (default: the one in the genio-bootrom package "
                         "of /work/venv-oracle)")
    ap.add_argument("--oracle-python", default="/work/venv-oracle/bin/python")
    ap.add_argument("--dialect", default=None)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    tool = args.bootrom_tool
    if tool is None:
        pkg = subprocess.run([args.oracle_python, "-c", "import aiot_bootrom, os; "
                              "print(os.path.dirname(aiot_bootrom.__file__))"],
                             capture_output=True, text=True, check=True).stdout.strip()
        tool = f"{pkg}/bin/x86_64/linux/bootrom-tool"
    if shutil.which("unshare") is None:
        print("FAIL  unshare(1) is needed (util-linux)")
        return 1

    from romkit.sim import artifacts

    work = args.workdir or Path(tempfile.mkdtemp(prefix="oracle-bootrom-"))
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "conformance"))
    from harness import parse_da_regions

    shim = work / "fakesysfs.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(shim),
                    str(Path(__file__).parent / "fakesysfs.c"), "-ldl"], check=True)
    stage1 = work / "da-stage1.bin"
    stage1.write_bytes(parse_da_regions(artifacts.da_s820())[1])
    results: list[tuple[str, bool, str]] = []
    # One phone for all runs, as on a desk: the second run reuses the pty the first one left
    # with its termios settings (bootrom-tool clears CREAD, issue 14 item 11).
    runs = [
        ("info (handshake, hw code, target config)", ["-i"]),
        ("info again on the same port (reused pty settings)", ["-i"]),
        ("upload + jump (SEND_DA, JUMP_DA at 0x12000000, aarch32)",
         ["-b", str(stage1), "-a", "0x12000000", "-m", "aarch32"]),
    ]
    sim = Sim(work / "sim", dialect=args.dialect, link=str(work / "unused"))
    try:
        for name, targs in runs:
            try:
                p = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash",
                                    "-c", NAMESPACE, "bootrom-ns", *targs],
                                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                        "PTY": sim.port or "", "WORK": str(work), "TOOL": tool,
                                        "SHIM": str(shim)},
                                   capture_output=True, text=True, timeout=30)
                out, rc = p.stdout + p.stderr, p.returncode
            except subprocess.TimeoutExpired as exc:
                out, rc = str(exc.stdout or "") + "\n[timeout]", -1
            log = work / f"bootrom-tool-{len(results)}.log"
            log.write_text(out)
            bad = [w for w in ("rror", "ailed", "[timeout]", "EINVAL", "Invalid") if w in out]
            ok = rc == 0 and not bad
            results.append((name, ok, f"rc={rc} {' '.join(bad)}".strip()))
            print(f"{'PASS' if ok else 'FAIL'}  {name:58s} {results[-1][2]}")
            for line in out.strip().splitlines()[-3:]:
                print(f"      | {line[:150]}")
            time.sleep(0.5)  # let the phone notice the host left and start a new session
    finally:
        sim.stop()
    print(f"sim log: {work / 'sim' / 'sim.log'}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
