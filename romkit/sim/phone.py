"""`VirtualPhone`: a Lenovo S820-like MT6589 in download mode, on a real pseudo-terminal.

One thread plays the phone: it waits for the BROM handshake, serves the BROM commands, runs
the DA the host uploaded, and keeps its eMMC in sparse files in a state folder. Tests and the
demo talk to it through the pty path exactly as they would talk to hardware.

Sessions and the port ("reconnect" rules):
- After FINISH the phone reboots into download mode on the *same* pty path (the host simply
  closes and reopens the port). With `once=True` it closes the pty instead (host sees EOF)
  and stops.
- If the host closes the port after the handshake, the session ends ("host-closed") and a new
  one starts on the same path — like replugging the cable. Opening and closing the port
  before the handshake is ignored.
- A `disconnect` fault, a closed preloader `window`, a protocol violation by the host or a
  storage failure unplug the phone: the pty is closed (host sees EOF / I/O error) and the
  next session gets a fresh pty, whose path is reported through `on_port` / `port` (Linux
  usually hands out the same /dev/pts number again, but do not rely on it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from romkit import paths
from romkit.device import protocol as p
from romkit.errors import DeviceTimeout, RomkitError, StorageError, UsageError
from romkit.sim import s820
from romkit.sim.brom_stage import BromStage, WindowClosed
from romkit.sim.da_stage import DaStage, DisconnectFault
from romkit.sim.factory import factory_contents
from romkit.sim.faults import FaultPlan, FaultTracker
from romkit.sim.pty_link import HostGone, PhoneStopped, PtyLink
from romkit.sim.session import HostViolation, PhoneConfig, SessionLog, Wire, parse_memory_id
from romkit.sim.storage import EmmcStorage, part_sizes

BOOT_MODES = ("brom", "preloader")


def default_state_dir(storage: str = "4G") -> Path:
    """Where the phone keeps its eMMC unless told otherwise (under romkit's data dir)."""
    return paths.data_dir() / "sim" / f"s820-{storage.lower()}"


class VirtualPhone:
    """The virtual MT6589 phone. Use as a context manager or call `start()` / `stop()`."""

    def __init__(self, state_dir: Path | str | None = None, *, year: int = 2013,
                 memory_id: bytes | str | None = None, storage: str = "4G",
                 boot: str = "preloader", faults: FaultPlan | None = None, once: bool = False,
                 usb_speed: int = 1, packet_timeout: float = 0.5, reset: bool = False,
                 on_port: Callable[[str], None] | None = None) -> None:
        if year not in s820.PARTS_BY_YEAR:
            years = " or ".join(map(str, s820.PARTS_BY_YEAR))
            raise UsageError(f"the virtual S820 is built in {years}, not {year}",
                             hint="use --year 2013 or --year 2014")
        if boot not in BOOT_MODES:
            raise UsageError(f"unknown boot mode {boot!r}", hint="use brom or preloader")
        part_sizes(storage)  # validates the variant
        self.config = PhoneConfig(cid=parse_memory_id(memory_id, year), year=year,
                                  storage=storage, boot=boot,  # type: ignore[arg-type]
                                  usb_speed=usb_speed, packet_timeout=packet_timeout)
        self.custom_memory = memory_id is not None
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir(storage)
        self.storage = EmmcStorage(self.state_dir, storage)
        self.faults = FaultTracker(faults)
        self.once = once
        self.on_port = on_port
        self.port: str | None = None
        self.sessions: list[SessionLog] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._link: PtyLink | None = None
        self._returned = 0
        self._prepare_state(reset)

    # -- state -------------------------------------------------------------------------------
    def _prepare_state(self, reset: bool) -> None:
        if reset:
            self.reset_factory()
            return
        if self.storage.exists():
            self.storage.check_compatible()
            return
        if self.state_dir.is_dir() and any(self.state_dir.iterdir()):
            raise StorageError(f"{self.state_dir} is not empty and holds no virtual phone",
                               hint="choose an empty or new --state folder")
        self.reset_factory()

    def reset_factory(self) -> str:
        """Restore the factory eMMC (tables, calibration, preloader); returns BOOT1's kind."""
        contents, boot1_kind = factory_contents(self.storage.sizes[p.PART_USER],
                                                self.config.year)
        self.storage.create_blank({"year": self.config.year, "boot1": boot1_kind})
        for part, pieces in contents.items():
            for offset, data in pieces:
                self.storage.write(part, offset, data)
        return boot1_kind

    # -- facts -------------------------------------------------------------------------------
    @property
    def memory_label(self) -> str:
        if self.custom_memory:
            return "custom memory ID"
        return s820.PARTS_BY_YEAR[self.config.year].label

    def info(self) -> dict[str, Any]:
        """What `romkit sim --json` prints: the port and the phone's identity."""
        return {
            "port": self.port,
            "hw_code": f"{p.MT6589_HW_CODE:#06x}",
            "soc": "MT6589",
            "year": self.config.year,
            "memory_id": self.config.cid.hex(),
            "memory_part": self.memory_label,
            "storage": self.config.storage,
            "user_size": self.storage.sizes[p.PART_USER],
            "boot": self.config.boot,
            "faults": self.faults.plan.describe(),
            "state_dir": str(self.state_dir),
        }

    @property
    def session_log(self) -> SessionLog | None:
        """The current (or last) session's log."""
        return self.sessions[-1] if self.sessions else None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> str:
        """Plug the phone in: open the pty, start the phone thread, return the port path."""
        if self._thread is not None:
            raise UsageError("this virtual phone is already started",
                             hint="create a new VirtualPhone for a second run")
        port = self._open_link().path
        self._thread = threading.Thread(target=self._run, name="virtual-s820", daemon=True)
        self._thread.start()
        return port

    def _open_link(self) -> PtyLink:
        try:
            link = PtyLink(self._stop, self.faults.plan.rate)
        except OSError as exc:
            raise StorageError(f"cannot open a pseudo-terminal: {exc.strerror}",
                               hint="the system may be out of ptys; close other sessions"
                               ) from exc
        self._link = link
        self.port = link.path
        if self.on_port is not None:
            self.on_port(link.path)
        return link

    def stop(self, timeout: float = 5.0) -> None:
        """Unplug: end the session, close the pty, release the storage files."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._link is not None:
            self._link.close()
            self._link = None
        self.storage.close()
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> VirtualPhone:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def next_session(self, timeout: float) -> SessionLog | None:
        """The next ended session not yet returned, or None after `timeout` / when stopped."""
        def ready() -> bool:
            return self._ended() > self._returned or not self.running

        with self._cond:
            self._cond.wait_for(ready, timeout)
            if self.error is not None:
                raise self.error
            if self._ended() > self._returned:
                log = [s for s in self.sessions if s.ended is not None][self._returned]
                self._returned += 1
                return log
        return None

    def wait_finished(self, timeout: float = 30.0) -> SessionLog:
        """Block until a session ends (FINISH, unplug, host gone…) and return its log."""
        log = self.next_session(timeout)
        if log is None:
            raise DeviceTimeout(f"no virtual-phone session ended within {timeout:g} s",
                                hint="the host did not finish; check its log")
        return log

    def _ended(self) -> int:
        return sum(1 for s in self.sessions if s.ended is not None)

    # -- the phone thread --------------------------------------------------------------------
    def _run(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                link = self._link if self._link is not None else self._open_link()
                log = SessionLog(index=index, port=link.path, boot=self.config.boot)
                index += 1
                with self._cond:
                    self.sessions.append(log)
                outcome, unplug = self._session(link, log)
                if unplug or self.once:
                    if outcome == "finish":
                        link.drain(1.0)
                    link.close()
                    self._link = None
                with self._cond:
                    log.outcome = outcome
                    log.ended = time.time()
                    self._cond.notify_all()
                if self.once or outcome == "stopped":
                    break
        except BaseException as exc:  # noqa: BLE001 - a bug in the phone: surfaced to the test
            self.error = exc
        finally:
            with self._cond:
                self._cond.notify_all()

    def _session(self, link: PtyLink, log: SessionLog) -> tuple[str, bool]:
        """Run one session; returns (outcome, whether to unplug the pty)."""
        wire = Wire(link, log)
        try:
            BromStage(wire, self.config, self.faults.plan.window).run()
            DaStage(wire, self.config, self.storage, self.faults).run()
            return "finish", False
        except WindowClosed:
            log.faults_fired.append(f"window={self.faults.plan.window:g}")
            return "window-closed", True
        except DisconnectFault:
            return "disconnect-fault", True
        except PhoneStopped:
            return "stopped", True
        except HostGone:
            return "host-closed", False
        except HostViolation as exc:
            log.violation = exc.message
            return "protocol-violation", True
        except RomkitError as exc:
            log.violation = exc.message
            return "error", True


def serve(phone: VirtualPhone,
          on_session: Callable[[SessionLog], None] | None = None) -> list[SessionLog]:
    """Run the phone until it stops: after one session with `once`, else until interrupted.

    The caller's Ctrl-C (KeyboardInterrupt) unplugs the phone cleanly on its way out.
    """
    if not phone.running:
        phone.start()
    ended: list[SessionLog] = []
    try:
        while True:
            log = phone.next_session(0.25)
            if log is not None:
                ended.append(log)
                if on_session is not None:
                    on_session(log)
                if phone.once:
                    break
            elif not phone.running:
                break
    finally:
        phone.stop()
    return ended


def state_action(state_dir: Path, storage: str, reset: bool) -> str:
    """What starting a phone on `state_dir` would do to it (for `--dry-run`)."""
    store = EmmcStorage(state_dir, storage)
    if reset:
        return "reset to factory state"
    if store.exists():
        store.check_compatible()
        return "reuse existing state"
    return "create factory state"
