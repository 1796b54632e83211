"""Replay SP Flash Tool's MT6589 command sequence (empty-sixty-five spft-replay) against
`romkit sim --boot brom`, unmodified except for its transport.

spft-replay only has a USB transport (pyusb; its spft-replay.py says a UART transport "shouldn't
be hard to implement using pyserial"). This script supplies exactly that: a pyserial class
implementing spft-replay's own ``AbstractTransport`` interface (start/stop/read/write), then
runs spft-replay's ``BromProtocol.handshake`` and ``DeviceManager.replay`` — its protocol and
MT6589 platform code as published — with the sim's DA stage 1 as the payload.

Usage (see README.md):
    PYTHONPATH=/path/to/romkit /work/venv/bin/python bench/oracle/run_spft_replay.py \
        --spft-replay /work/oracle/empty-sixty-five/brom-dump/spft-replay \
        [--python /work/venv-oracle/bin/python] [--dialect NAME]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from simctl import Sim, client_env  # noqa: E402

# Runs inside the client's interpreter, with spft-replay's folder as the working directory.
CLIENT = r'''
import logging, sys, time
import serial
sys.path.insert(0, ".")
from src.transport import AbstractTransport
from src.common import to_bytes
from src.brom import BromProtocol
from src.manager import DeviceManager

class SerialTransport(AbstractTransport):
    """pyserial in place of pyusb: same start/stop/read/write contract as UsbTransport
    (read returns what arrived before the timeout; write takes bytes or an int + size)."""
    TIMEOUT = 3.0  # UsbTransport.BROM_TIMEOUT is 3 s

    def __init__(self, port):
        self.port = port
        self.s = None

    def start(self):
        self.s = serial.Serial(self.port, 115200, timeout=self.TIMEOUT)

    def stop(self):
        self.s.close()

    def read(self, size=1, timeout=-1):
        self.s.timeout = timeout / 1000 if timeout > 0 else self.TIMEOUT
        data = self.s.read(size)
        logging.brom_io(f"<- {data.hex().upper()}")
        return data

    def write(self, data, size=1, timeout=-1):
        if type(data) != bytes:
            data = to_bytes(data, size)
        logging.brom_io(f"-> {data[:32].hex().upper()}")
        self.s.write(data)

# spft-replay.py's init_logging(), which defines the REPLAY/BROM levels its code logs at
import importlib.util
spec = importlib.util.spec_from_file_location("spft_main", "spft-replay.py")
spft_main = importlib.util.module_from_spec(spec)
spec.loader.exec_module(spft_main)
class A: log_level = logging.DEBUG - 1
spft_main.init_logging(A)

port, payload_path = sys.argv[1], sys.argv[2]
t = SerialTransport(port)
t.start()
brom = BromProtocol(t)
brom.handshake()
manager = DeviceManager(brom)
manager.replay(open(payload_path, "rb").read(), simple_mode=False, skip_remaining_data=False)
t.stop()
print("SPFT-REPLAY DONE")
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spft-replay", type=Path, required=True,
                    help="the brom-dump/spft-replay folder of an empty-sixty-five checkout")
    ap.add_argument("--python", default=sys.executable, help="python with pyserial")
    ap.add_argument("--dialect", default=None)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--memory-id", default=None,
                    help="CID for the sim (e.g. the capture's 1501004D38473157410225571844608F)")
    args = ap.parse_args()

    from romkit.sim import artifacts

    work = args.workdir or Path(tempfile.mkdtemp(prefix="oracle-spft-"))
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "conformance"))
    from harness import parse_da_regions  # the reference §5 parser of the conformance tests

    payload = work / "da-stage1.bin"
    payload.write_bytes(parse_da_regions(artifacts.da_s820())[1])
    client = work / "client.py"
    client.write_text(CLIENT)
    sim = Sim(work / "sim", dialect=args.dialect,
              extra=["--memory-id", args.memory_id] if args.memory_id else None)
    try:
        p = subprocess.run([args.python, str(client), sim.link, str(payload)],
                           cwd=args.spft_replay, capture_output=True, text=True, timeout=120,
                           env=client_env(sim.link))
    finally:
        sim.stop()
    out = p.stdout + p.stderr
    (work / "spft-replay.log").write_text(out)
    stages = [
        ("handshake", "Handshake completed!"),
        ("GET_HW_CODE 0x6583", "HW code: 6583"),
        ("GET_HW_SW_VER + UART1_LOG_EN", "SW version:"),
        ("PWR_INIT/PWR_READ16/PWR_WRITE16 charger setup", "Disable watchdog"),
        ("PMIC values as on a real phone", None),
        ("watchdog + GET_BL_VER + TOPRGU reads", "Initialize RTC"),
        ("GET_VERSION/GET_BL_VER", "Initialize external memory interface"),
        ("EMI_GENA read + write", "set to 00000002"),
        ("SEND_DA", "Received DA checksum"),
        ("UART1_LOG_EN + JUMP_DA", "Wait for remaining data"),
        ("DA first report (C0, NAND, eMMC CID) + ACK", "-> DA: (OK) 5A"),
    ]
    failed = 0
    for name, marker in stages:
        if marker is None:
            bad = [ln for ln in out.splitlines()
                   if "non-reference value" in ln or "Could not set PMIC" in ln]
            ok = "Disable watchdog" in out and not bad
            why = bad[0].split("> ")[-1] if bad else "no warnings"
        else:
            ok = marker in out
            why = ""
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {name:48s} {why}")
    cid = [ln for ln in out.splitlines() if "(EMMC CID)" in ln]
    if cid:
        print(f"      DA report: {cid[0].split('> ')[-1]}")
    if failed:
        tail = [ln for ln in out.strip().splitlines() if ln.strip()][-3:]
        print("      last lines: " + " | ".join(t[:140] for t in tail))
    print(f"log: {work / 'spft-replay.log'}; sim log: {work / 'sim' / 'sim.log'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
