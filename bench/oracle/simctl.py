"""Start `romkit sim` for an outside client and keep a USB-like device name pointing at it.

Why: outside clients find a MediaTek phone the way they find real USB serial ports. mtkclient's
serial path only accepts ports that pyserial lists and whose name contains ``ttyACM``/``ttyUSB``
(its mtkclient/Library/Connection/seriallib.py ``detectdevices``), and it reopens the *same
name* after the USB speed switch. On real USB, udev gives the re-enumerated phone a node again;
here a private symlink (``<workdir>/ttyACM-romkit``) plays udev's part and is re-pointed
whenever the virtual phone announces a new port (romkit.virtualports, the neutral registry),
and portshim/sitecustomize.py lists it to the client process. Nothing of the client's protocol
code is touched. Manual tool: not part of the test suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

PORTSHIM = str(Path(__file__).parent / "portshim")


def client_env(link: str) -> dict[str, str]:
    """Environment for an outside client: the port shim on PYTHONPATH, the link listed."""
    path = os.environ.get("PYTHONPATH_CLIENT", "")
    return dict({k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                PYTHONPATH=PORTSHIM + (":" + path if path else ""),
                ROMKIT_ORACLE_PORTS=link)


PORT_LINE = re.compile(r" on (/dev/pts/\d+|socket://\S+)")


class Sim:
    """`python -m romkit sim --boot brom` in a subprocess, with its own ROMKIT_HOME."""

    def __init__(self, workdir: Path, *, dialect: str | None = None, year: int = 2013,
                 link: str | None = None, extra: list[str] | None = None,
                 nice: int = -10) -> None:
        self.workdir = workdir
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        # a private name containing "ttyACM" (never under /dev: every program on the machine
        # would see it), listed to the client by portshim/sitecustomize.py
        self.link = link or str(workdir / "ttyACM-romkit")
        args = [sys.executable, "-m", "romkit", "sim", "--boot", "brom", "--year", str(year),
                "--state", str(workdir / "state"), "--reset"]
        if dialect:
            args += ["--dialect", dialect]
        args += extra or []
        env = dict(os.environ, ROMKIT_HOME=str(self.home), PYTHONUNBUFFERED="1")
        self.log = (workdir / "sim.log").open("w")
        # mtkclient's serial path reads with a 20 ms timeout (seriallib.py usbread); a real
        # boot ROM answers in microseconds, so on a loaded machine the virtual phone is given
        # priority rather than the client being changed (root only; ignored otherwise)
        def raise_priority() -> None:
            try:
                os.nice(nice)
            except OSError:
                pass

        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, text=True, preexec_fn=raise_priority)
        self.port: str | None = None
        self.ports: list[str] = []
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 20
        while self.port is None and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.02)
        if self.port is None:
            self.stop()
            raise RuntimeError(f"romkit sim did not report a port; see {workdir / 'sim.log'}")
        self._follower = threading.Thread(target=self._follow, daemon=True)
        self._follower.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            m = PORT_LINE.search(line)
            if m:
                self._moved(m.group(1))

    def _moved(self, port: str) -> None:
        if port == self.port:
            return
        self.port = port
        self.ports.append(port)
        if self.link:
            tmp = f"{self.link}.new"
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            os.symlink(port, tmp)
            os.replace(tmp, self.link)

    def _follow(self) -> None:
        """Follow re-announcements in the neutral registry (a sim that re-enumerates writes
        them; its console line may not change)."""
        os.environ["ROMKIT_HOME"] = str(self.home)
        try:
            from romkit import virtualports
        except ImportError:
            return
        seen = -1
        while not self._stop.is_set():
            try:
                entries = virtualports.list_ports()
            except Exception:  # noqa: BLE001 - an older romkit without the registry
                return
            for e in entries:
                if e.owner_pid == self.proc.pid and e.generation > seen:
                    seen = e.generation
                    self._moved(e.port)
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.link and os.path.islink(self.link):
            os.unlink(self.link)
        self.log.close()


def write_artifacts(folder: Path, year: int = 2013) -> tuple[Path, Path]:
    """The sim's own DA and preloader (the phone's vendor files, as a user would have them).

    mtkclient keeps 0x65xx DA entries only from a file whose name contains "mt6590"
    (mtkclient/Library/DA/daconfig.py), hence the name."""
    from romkit.sim import artifacts

    folder.mkdir(parents=True, exist_ok=True)
    da = folder / "MTK_AllInOne_DA_mt6590_romkit_sim.bin"
    pl = folder / f"preloader_romkit_sim_{year}.bin"
    da.write_bytes(artifacts.da_s820())
    pl.write_bytes(artifacts.preloader_s820(year))
    return da, pl
