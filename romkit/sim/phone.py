"""`VirtualPhone`: a Lenovo S820-like MT6589 in download mode, on a pty or a TCP port.

One thread plays the phone: it waits for the BROM handshake, serves the BROM commands, runs
the DA the host uploaded, and keeps its eMMC in sparse files in a state folder. Tests and the
demo talk to it through its port (a real pseudo-terminal, or `socket://127.0.0.1:N` with
`link="tcp"`; romkit/sim/link.py) exactly as they would talk to hardware. Where the public
evidence is contested the phone follows its dialect (romkit/sim/dialects.py).

Sessions and the port follow the real USB life cycle (docs/SIM.md):
- Every port the phone appears on is announced in romkit/virtualports.py with a stable
  `phone_id`, the USB PID of its stage (0x0003 BROM, 0x2000 preloader, 0x2001 DA after a
  speed switch) and a `generation` that grows by one on every re-enumeration; `on_port` /
  `port` report it too. Stopping the phone withdraws the announcement.
- Wherever a real phone resets, its USB port disappears and a new one comes: after FINISH,
  after a watchdog software reset, and (in the `full-reenumerate` dialect) when the DA
  switches to high speed — then the session goes on, in the DA, on the new port. The old
  pty is closed (the host sees EOF / an I/O error). With `once=True` the phone stops after
  the first session instead of coming back.
- If the host closes the port after the handshake, the session ends ("host-closed") and a new
  one starts on the same path — like replugging the cable. Opening and closing the port
  before the handshake is ignored.
- JUMP_DA into bytes that are no DA the phone knows crashes it: it goes silent until the
  host closes the port ("da-crashed"), then starts over on the same port.
- A `disconnect` fault, a closed preloader `window`, a protocol violation by the host or a
  storage failure unplug the phone: the pty is closed and the next session gets a new port.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from romkit import paths, virtualports
from romkit.device import protocol as p
from romkit.errors import DeviceTimeout, RomkitError, StorageError, UsageError
from romkit.sim import s820
from romkit.sim.brom_stage import BromStage, DaCrashed, PhoneReset, WindowClosed
from romkit.sim.da_stage import DaStage, DisconnectFault
from romkit.sim.dialects import Dialect, resolve
from romkit.sim.factory import factory_contents
from romkit.sim.faults import FaultPlan, FaultTracker
from romkit.sim.link import HostGone, Link, PhoneStopped, open_link, parse_link
from romkit.sim.session import HostViolation, PhoneConfig, SessionLog, Wire, parse_memory_id
from romkit.sim.storage import EmmcStorage, part_sizes
from romkit.trace import TraceWriter

# The default is BROM mode: SP Flash Tool-style clients (spft-replay, bootrom-tool) expect the
# boot ROM (GET_BL_VER answered 0xFE, USB PID 0x0003); an S820 whose preloader is broken
# (the bootloop users bring us) only has the BROM left. `preloader` stays available.
BOOT_MODES = ("brom", "preloader")
DEFAULT_BOOT: Final = "brom"
USB_PID = {"brom": 0x0003, "preloader": 0x2000}
_PHONE_NUMBERS = itertools.count(1)


def default_state_dir(storage: str = "4G") -> Path:
    """Where the phone keeps its eMMC unless told otherwise (under romkit's data dir)."""
    return paths.data_dir() / "sim" / f"s820-{storage.lower()}"


class VirtualPhone:
    """The virtual MT6589 phone. Use as a context manager or call `start()` / `stop()`."""

    def __init__(self, state_dir: Path | str | None = None, *, year: int = 2013,
                 memory_id: bytes | str | None = None, storage: str = "4G",
                 boot: str = DEFAULT_BOOT, faults: FaultPlan | None = None, once: bool = False,
                 dialect: str | Dialect | None = None, packet_timeout: float = 0.5,
                 reset: bool = False, on_port: Callable[[str], None] | None = None,
                 trace: Path | str | None = None, phone_id: str | None = None,
                 link: str | None = None) -> None:
        if year not in s820.PARTS_BY_YEAR:
            years = " or ".join(map(str, s820.PARTS_BY_YEAR))
            raise UsageError(f"the virtual S820 is built in {years}, not {year}",
                             hint="use --year 2013 or --year 2014")
        if boot not in BOOT_MODES:
            raise UsageError(f"unknown boot mode {boot!r}", hint="use brom or preloader")
        part_sizes(storage)  # validates the variant
        self.link_spec = parse_link(link)
        self.config = PhoneConfig(cid=parse_memory_id(memory_id, year), year=year,
                                  storage=storage, boot=boot,  # type: ignore[arg-type]
                                  dialect=resolve(dialect), packet_timeout=packet_timeout)
        self.custom_memory = memory_id is not None
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir(storage)
        self.storage = EmmcStorage(self.state_dir, storage)
        self.faults = FaultTracker(faults)
        self.once = once
        self.on_port = on_port
        self.phone_id = phone_id or f"romkit-sim-{os.getpid()}-{next(_PHONE_NUMBERS)}"
        self.generation = -1
        self.usb_pid = USB_PID[boot]
        self.trace_path = Path(trace) if trace is not None else None
        self._trace: TraceWriter | None = None
        self.port: str | None = None
        self.sessions: list[SessionLog] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._link: Link | None = None
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
        part = s820.PARTS_BY_YEAR[self.config.year]
        if self.custom_memory and self.config.cid[:s820.EMI_ID_LENGTH] != \
                part.cid[:s820.EMI_ID_LENGTH]:
            return "custom memory ID"
        return part.label  # another unit of the year's part (e.g. `sim --phones`' serials)

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
            "link": self.link_spec[0],
            "dialect": self.config.dialect.name,
            "knobs": self.config.dialect.knobs(),
            "phone_id": self.phone_id,
            "generation": self.generation,
            "usb_pid": f"{self.usb_pid:#06x}",
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
        """Plug the phone in: open its port, start the phone thread, return the port."""
        if self._thread is not None:
            raise UsageError("this virtual phone is already started",
                             hint="create a new VirtualPhone for a second run")
        if self.trace_path is not None:
            self._trace = TraceWriter(self.trace_path, side="phone", phone_id=self.phone_id,
                                      dialect=self.config.dialect.name, boot=self.config.boot)
        port = self._open_link(USB_PID[self.config.boot]).path
        self._thread = threading.Thread(target=self._run, name="virtual-s820", daemon=True)
        self._thread.start()
        return port

    def _open_link(self, pid: int) -> Link:
        """Enumerate: a new port with USB PID `pid`, announced as the next generation."""
        try:
            link = open_link(self.link_spec, self._stop, self.faults.plan.rate, self._trace,
                             first=self.generation < 0)
        except OSError as exc:
            if self.link_spec[0] == "tcp":
                raise UsageError(f"cannot listen on {self.link_spec[1]}:{self.link_spec[2]}: "
                                 f"{exc.strerror}", hint="use another port, or --link tcp "
                                 "to let the system choose one") from exc
            raise StorageError(f"cannot open a pseudo-terminal: {exc.strerror}",
                               hint="the system may be out of ptys; close other sessions"
                               ) from exc
        # announced before it becomes `self.port`: whoever sees the new port can already look
        # it up in the registry (a host that follows the phone's re-enumerations needs that)
        virtualports.announce(virtualports.VirtualPort(
            phone_id=self.phone_id, port=link.path, pid=pid, owner_pid=os.getpid(),
            generation=self.generation + 1))
        self.generation += 1
        self.usb_pid = pid
        self.port = link.path
        self._link = link
        if self._trace is not None:
            self._trace.event(f"open {link.path} pid={pid:#06x} generation={self.generation}")
        if self.on_port is not None:
            self.on_port(link.path)
        with self._cond:
            self._cond.notify_all()
        return link

    def _close_link(self, why: str) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()
            if self._trace is not None:
                self._trace.event(f"close {link.path} ({why})")

    def _reenumerate(self, pid: int) -> Link:
        """The USB controller re-enumerates: the old port goes, a new one comes (listening)."""
        self._close_link("re-enumeration")
        link = self._open_link(pid)
        link.listen()
        return link

    def stop(self, timeout: float = 5.0) -> None:
        """Unplug: end the session, close the port, withdraw it, release the storage files."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close_link("unplugged")
        virtualports.withdraw(self.phone_id)
        self.storage.close()
        if self._trace is not None:
            self._trace.close()
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
        """Block until a session ends (FINISH, unplug, host gone…) and return its log.

        A phone that reboots after the session (its port goes away) is also waited for until
        it is plugged in again, so `self.port` names the port of the next session, not the
        one that just vanished.
        """
        log = self.next_session(timeout)
        if log is None:
            raise DeviceTimeout(f"no virtual-phone session ended within {timeout:g} s",
                                hint="the host did not finish; check its log")
        self.wait_port(timeout)
        return log

    def wait_port(self, timeout: float = 10.0) -> str | None:
        """The port of the next session once the phone is plugged in (None if it stopped)."""
        with self._cond:
            self._cond.wait_for(lambda: self._link is not None or not self.running
                                or self.once, timeout)
            return self.port if self._link is not None else None

    def _ended(self) -> int:
        return sum(1 for s in self.sessions if s.ended is not None)

    # -- the phone thread --------------------------------------------------------------------
    def _run(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                link = self._link if self._link is not None else self._open_link(
                    USB_PID[self.config.boot])
                link.listen()
                log = SessionLog(index=index, port=link.path, boot=self.config.boot)
                index += 1
                with self._cond:
                    self.sessions.append(log)
                if self._trace is not None:
                    self._trace.event(f"session {log.index} on {link.path}")
                outcome, unplug = self._session(link, log)
                if unplug or self.once:
                    if outcome in ("finish", "reset") and self._link is not None:
                        self._link.drain(1.0)
                    self._close_link(outcome)
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

    def _session(self, link: Link, log: SessionLog) -> tuple[str, bool]:
        """Run one session; returns (outcome, whether to unplug the pty)."""
        wire = Wire(link, log, self._reenumerate)
        try:
            BromStage(wire, self.config, self.faults.plan.window).run()
            DaStage(wire, self.config, self.storage, self.faults).run()
            return "finish", True  # the phone reboots: its port goes away
        except PhoneReset:
            return "reset", True
        except DaCrashed:
            return ("da-crashed", False) if self._silent(wire) else ("stopped", True)
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


    def _silent(self, wire: Wire) -> bool:
        """A crashed DA: ignore everything until the host lets go of the port (True) or the
        phone is stopped (False)."""
        try:
            while True:
                wire.read(1)
                wire.link.discard_input()
        except HostGone:
            return True
        except PhoneStopped:
            return False


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
