"""Byte pipe to the phone, and finding the phone's port.

Everything above this module speaks in "exactly n bytes or an error": the BROM and DA protocols
have no framing, so a short read is never useful data — it means the phone went silent (a
`DeviceTimeout`) or went away (a `TransportError`). Keeping that rule here lets the protocol
layers stay straight-line code. `SerialTransport` goes through pyserial's `serial_for_url`, so
the same code drives a real MediaTek VCOM port, a pty of the virtual phone, or any other
pyserial URL.

Port discovery is by USB VID:PID because the preloader port lives only a few seconds after the
battery goes in: the host must already be polling when it appears.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import serial
import serial.tools.list_ports
from serial.tools.list_ports_common import ListPortInfo
from serial.urlhandler.protocol_socket import Serial as SocketSerial

from romkit import virtualports
from romkit.device import protocol as P
from romkit.errors import DeviceTimeout, TransportError
from romkit.progress import ProgressCallback, ProgressEvent, Reporter
from romkit.trace import TraceWriter

DOCTOR_HINT = (
    "Check that no other program holds the port (ModemManager grabs /dev/ttyACM* on Linux), "
    "that you may open it (dialout group / udev rule), that the MediaTek VCOM driver is "
    "installed on Windows, and run `romkit doctor`."
)
DISCONNECT_HINT = (
    "Check the USB cable and port, then restart: power off the phone, reinsert the battery and "
    "connect it again."
)
IO_CHUNK = 64 * 1024  # largest piece handed to pyserial at once (see read/write)
# SP Flash Tool's "no USB port found" (low battery, bad cable, hub or driver).
FT_FIND_USB_ERROR = 8100
CONNECT_PROMPT = (
    "Power off the phone, remove the battery for a few seconds, put it back and connect the "
    "USB cable (hold Volume- if it does not show up)."
)


class Transport(ABC):
    """A bidirectional byte pipe to the phone.

    `read` returns exactly `n` bytes or raises; that single rule keeps the protocol code free of
    partial-read handling. The big-endian helpers exist because every integer on the BROM and
    legacy-DA wire is big-endian.
    """

    @abstractmethod
    def read(self, n: int, timeout: float | None = None) -> bytes:
        """Exactly `n` bytes, or DeviceTimeout (silence) / TransportError (gone)."""

    @abstractmethod
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of `data` or raise TransportError / DeviceTimeout."""

    @abstractmethod
    def close(self) -> None:
        """Release the port; safe to call twice."""

    @abstractmethod
    def flush_input(self) -> None:
        """Drop bytes already received but not read (used when restarting a handshake)."""

    # -- big-endian helpers ---------------------------------------------------------------------
    def read_u8(self, timeout: float | None = None) -> int:
        return self.read(1, timeout)[0]

    def read_u16(self, timeout: float | None = None) -> int:
        return int(struct.unpack(">H", self.read(2, timeout))[0])

    def read_u32(self, timeout: float | None = None) -> int:
        return int(struct.unpack(">I", self.read(4, timeout))[0])

    def read_u64(self, timeout: float | None = None) -> int:
        return int(struct.unpack(">Q", self.read(8, timeout))[0])

    def write_u8(self, value: int) -> None:
        self.write(struct.pack(">B", value))

    def write_u16(self, value: int) -> None:
        self.write(struct.pack(">H", value))

    def write_u32(self, value: int) -> None:
        self.write(struct.pack(">I", value))

    def write_u64(self, value: int) -> None:
        self.write(struct.pack(">Q", value))

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_socket_port(ser: Any) -> bool:
    """Close a `socket://` port without pyserial's pause; False if `ser` is no such port.

    pyserial's socket close() shuts the connection down and then sleeps 0.3 s "in case of
    quick reconnects, give the server some time" (serial/urlhandler/protocol_socket.py). On a
    TCP-linked phone (`romkit sim --link tcp`, issue 20) that pause was paid twice per session
    — at the speed switch's re-enumeration and at the end — while the phone side accepts the
    next connection at once (it listens with a backlog). The connection ends exactly as
    pyserial ends it (shutdown both ways, close); only the sleep is left out.
    """
    if not isinstance(ser, SocketSerial):
        return False
    sock = getattr(ser, "_socket", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the phone already closed its end
        sock.close()
        ser._socket = None
    ser.is_open = False
    return True


def _disconnected(exc: BaseException | None = None) -> TransportError:
    details = {"cause": str(exc)} if exc is not None else None
    return TransportError("phone disconnected", hint=DISCONNECT_HINT, details=details)


class SerialTransport(Transport):
    """pyserial-backed transport: a COM/tty port, a pty path, or any pyserial URL.

    The read timeout is changed only when a call asks for a different one, because pyserial
    re-applies the whole termios state on every change. With a `trace` every byte that
    crosses the port is recorded where it crosses it (bytes of a read that then times out,
    and stale bytes dropped by `flush_input`, included), plus open/close/timeout events.
    """

    def __init__(self, url: str, baudrate: int = 115200, timeout: float = 5.0,
                 write_timeout: float = 30.0, trace: TraceWriter | None = None) -> None:
        self.url = url
        self.default_timeout = timeout
        self.trace = trace
        try:
            # exclusive: flock on POSIX ttys, so two romkit processes never share one phone's
            # port (a station, a second terminal); Windows opens COM ports exclusively anyway.
            self._ser: Any = serial.serial_for_url(
                url, baudrate=baudrate, timeout=timeout, write_timeout=write_timeout,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            if trace is not None:
                trace.event(f"open-failed {url} {exc}")
            if "exclusively lock" in str(exc):
                raise TransportError(
                    f"port {url} is in use by another program (another romkit run?)",
                    hint="wait for that program to finish or stop it; a phone's port must "
                         "have one user at a time",
                    spft_code=1013, details={"port": url}) from None
            raise TransportError(
                f"cannot open port {url}: {exc}",
                hint=DOCTOR_HINT,
                spft_code=1013,
                details={"port": url},
            ) from None
        self._timeout = timeout
        self._closed = False
        if trace is not None:
            trace.event(f"open {url}")

    def read(self, n: int, timeout: float | None = None) -> bytes:
        """Exactly n bytes; `timeout` bounds each IO_CHUNK-sized piece (a stall, not a total).

        Large reads go in IO_CHUNK pieces because pyserial allocates the whole remaining size
        for every os.read() it makes, which turns a 4 MiB packet into gigabytes of allocation.
        """
        if n <= 0:
            return b""
        wanted = self.default_timeout if timeout is None else timeout
        ser = self._ser
        buf = bytearray()
        try:
            if wanted != self._timeout:
                ser.timeout = wanted
                self._timeout = wanted
            while len(buf) < n:
                want = min(IO_CHUNK, n - len(buf))
                piece = ser.read(want)
                buf += piece
                if len(piece) != want:
                    break
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            # TypeError/AttributeError: pyserial's own state after a close() from another thread.
            if self.trace is not None:
                self.trace.data("<", buf)
                self.trace.event(f"gone {self.url} {exc}")
            raise _disconnected(exc) from None
        if self.trace is not None:
            self.trace.data("<", buf)
        if len(buf) != n:
            if self.trace is not None:
                self.trace.event(f"timeout {len(buf)} of {n} bytes within {wanted:g} s")
            raise DeviceTimeout(
                f"phone did not answer: got {len(buf)} of {n} bytes within {wanted:g} s",
                hint="The phone stopped talking; reconnect it and start again.",
                details={"expected": n, "got": len(buf), "received": bytes(buf[:32]).hex()},
            )
        return bytes(buf)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send everything, in IO_CHUNK pieces: pyserial re-slices (copies) the remainder after
        every partial os.write(), which is quadratic for multi-MiB packets on a pty."""
        view = memoryview(data).cast("B")
        try:
            for pos in range(0, len(view), IO_CHUNK):
                piece = view[pos : pos + IO_CHUNK]
                self._ser.write(piece)
                if self.trace is not None:
                    self.trace.data(">", piece)
        except serial.SerialTimeoutException:
            if self.trace is not None:
                self.trace.event("timeout the phone stopped accepting data")
            raise DeviceTimeout(
                "phone stopped accepting data",
                hint="The phone froze or the cable is bad; reconnect it and start again.",
            ) from None
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            if self.trace is not None:
                self.trace.event(f"gone {self.url} {exc}")
            raise _disconnected(exc) from None

    def flush_input(self) -> None:
        try:
            if self.trace is not None:
                # Record what is dropped: a trace must show every byte the phone sent.
                waiting = self._ser.in_waiting
                if waiting:
                    self.trace.data("<", self._ser.read(waiting))
                self.trace.event("flush input")
            self._ser.reset_input_buffer()
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            raise _disconnected(exc) from None

    def close(self) -> None:
        try:
            if not _close_socket_port(self._ser):
                self._ser.close()
        except (serial.SerialException, OSError):
            pass  # closing a port whose device vanished: nothing left to release
        if self.trace is not None and not self._closed:
            self.trace.event(f"close {self.url}")
        self._closed = True


# -- port discovery ---------------------------------------------------------------------------
_MODES: dict[tuple[int, int], str] = {
    P.USB_BROM: "brom",
    P.USB_PRELOADER: "preloader",
    P.USB_DA_VCOM: "da",
    **{ids: "preloader" for ids in P.USB_OTHER_PRELOADER},
    **{ids: "vendor" for ids in P.USB_VENDOR_REBADGED},
}
# Which port to take when several MediaTek ports are present: a download-mode port first.
_PREFERENCE = {"brom": 0, "preloader": 1, "vendor": 2, "da": 3}


@dataclass(frozen=True)
class PortInfo:
    """A MediaTek-looking serial port and which boot stage its USB id says it belongs to."""

    device: str
    vid: int
    pid: int
    mode: str  # "brom" | "preloader" | "da" | "vendor"
    description: str = ""
    serial_number: str | None = None
    virtual: bool = False  # announced by a running virtual phone (`romkit sim`), not USB

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X}"


def port_mode(vid: int, pid: int) -> str | None:
    """Boot stage a USB VID:PID stands for, or None if it is not a MediaTek download port."""
    return _MODES.get((vid, pid))


def find_mtk_ports(ports: Iterable[ListPortInfo] | None = None, *,
                   virtual: bool = True) -> list[PortInfo]:
    """MediaTek download ports, best candidate first: the system's USB ports (or `ports`)
    and, with `virtual`, the ports live virtual phones announce (romkit.virtualports), so a
    running `romkit sim` is found like a phone on USB."""
    found: list[PortInfo] = []
    for p in serial.tools.list_ports.comports() if ports is None else ports:
        if p.vid is None or p.pid is None:
            continue
        mode = port_mode(p.vid, p.pid)
        if mode is None:
            continue
        found.append(PortInfo(p.device, p.vid, p.pid, mode, p.description or "",
                              p.serial_number))
    if virtual and ports is None:
        for entry in virtualports.list_ports():
            mode = port_mode(entry.vid, entry.pid)
            if mode is not None:
                found.append(PortInfo(entry.port, entry.vid, entry.pid, mode,
                                      entry.description, entry.phone_id, virtual=True))
    found.sort(key=lambda info: (_PREFERENCE[info.mode], info.device))
    return found


def _is_url(port: str) -> bool:
    return "://" in port


def _may_appear_later(port: str) -> bool:
    """Whether a missing explicit port is worth waiting for: a USB serial node (`/dev/tty…`,
    a udev symlink under /dev, a Windows COM name) appears when the phone is plugged in; any
    other path (a typo, a pty of a virtual phone that is not running) never will."""
    if port.upper().startswith("COM") or port.startswith("\\\\.\\"):
        return True
    return port.startswith("/dev/") and not port.startswith("/dev/pts/")


def wait_for_port(port: str | None, timeout: float, poll: float = 0.05,
                  on_progress: ProgressCallback | None = None) -> str:
    """Poll until the phone's port exists and return its path.

    With `port=None` any MediaTek download port will do (USB by VID:PID, or a virtual
    phone's announced port); with an explicit path we wait for that path to exist if it can
    appear on plug-in (see `_may_appear_later`) or a virtual phone announces it, and fail at
    once otherwise; pyserial URLs (`socket://…`) are returned as they are. The prompt goes
    out once, before the first poll, so the user knows to plug in.
    """
    rep = Reporter(on_progress)
    if port is not None and virtualports.lookup(port) is None:
        moved = virtualports.follow(port)
        if moved is not None:  # a virtual phone re-enumerated since this port was named
            rep.info(f"the virtual phone that was on {port} is on {moved.port} now",
                     port=moved.port, former=port)
            port = moved.port
    if port is not None and _is_url(port):
        return port
    if port is not None and not os.path.exists(port) and not _may_appear_later(port) \
            and virtualports.lookup(port) is None:
        raise TransportError(
            f"port {port} does not exist",
            hint="Check the --port path (a typo?), or leave --port out to wait for the phone "
                 "on USB or for a running `romkit sim`.",
            spft_code=FT_FIND_USB_ERROR,
            details={"port": port},
        )
    t0 = time.monotonic()
    deadline = t0 + timeout
    target = port if port is not None else "a MediaTek USB port"
    rep.info(CONNECT_PROMPT, waiting_for=target, timeout=timeout)
    shown = -1  # the seconds-left figure on the live line; -1: no line drawn yet

    def done(label: str, path: str, **data: Any) -> str:
        """End the wait: the live line (if one was drawn) turns into `label`."""
        if shown >= 0:
            rep.end(WAIT_TASK, label, **data)
        elif label:
            rep.info(label, **data)
        return path

    while True:
        if port is not None:
            if os.path.exists(port):
                # a named port that is there at once needs no line; one waited for does
                virtual = virtualports.lookup(port)
                found = (f"found virtual phone {virtual.phone_id} on {port} (a running "
                         "`romkit sim`)" if virtual is not None else f"found port {port}")
                return done(found if shown >= 0 else "", port, port=port,
                            virtual=virtual is not None)
        else:
            ports = find_mtk_ports()
            if ports:
                best = ports[0]
                what = (f"virtual phone {best.serial_number} (a running `romkit sim`) on"
                        if best.virtual else f"{best.mode} port")
                return done(f"found {what} {best.device} ({best.usb_id}, {best.mode})",
                            best.device, port=best.device, mode=best.mode,
                            usb_id=best.usb_id, virtual=best.virtual)
        now = time.monotonic()
        if now >= deadline:
            if shown >= 0:
                rep.end(WAIT_TASK)
            raise TransportError(
                f"no phone appeared on {target} within {timeout:g} s",
                hint=CONNECT_PROMPT + " " + DOCTOR_HINT,
                spft_code=FT_FIND_USB_ERROR,
                details={"port": port, "timeout": timeout},
            )
        left = int(deadline - now + 0.999)
        if left != shown:  # the live line changes once a second: seconds left, ports seen
            seen = ports_seen()
            line = _waiting_line(left, seen)
            if shown < 0:
                rep.start(WAIT_TASK, line, total=max(int(timeout), 1), unit="s")
            shown = left
            rep.emit(ProgressEvent("update", WAIT_TASK, line, int(now - t0),
                                   max(int(timeout), 1), "s",
                                   {"seconds_left": left, "ports_seen": seen}))
        time.sleep(poll)


WAIT_TASK = "wait-for-phone"


def _waiting_line(left: float, seen: list[str]) -> str:
    return (f"waiting for the phone… {left:.0f} s left; ports seen: "
            + (", ".join(seen) if seen else "none"))


def ports_seen() -> list[str]:
    """Every serial port present now, with its USB id: a phone that shows up under an
    unexpected id (a rebadged preloader, a charging-only cable showing nothing) is spotted
    on the waiting line instead of after the timeout."""
    seen = []
    for p in serial.tools.list_ports.comports():
        usb = f" {p.vid:04X}:{p.pid:04X}" if p.vid is not None and p.pid is not None else ""
        seen.append(f"{p.device}{usb}")
    seen += [f"{v.port} (virtual phone {v.phone_id})" for v in virtualports.list_ports()]
    return seen
