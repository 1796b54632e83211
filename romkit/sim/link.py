"""The virtual phone's cable, whatever it is made of: one abstraction, two implementations.

Why: a real phone speaks over a USB serial port. On Linux and macOS the virtual phone offers
a pseudo-terminal (`PtyLink`, romkit/sim/pty_link.py), which the host opens exactly like a VCOM
port; Windows has no ptys, so the same phone can also listen on a TCP port (`TcpLink`,
romkit/sim/tcp_link.py) that pyserial reaches as `socket://127.0.0.1:N` (issue 20). The
protocol stages never see the difference: they read and write a `Link`.

What every link guarantees (the engine relies on it on both):
- `read(n, timeout)` returns exactly n bytes or raises `LinkTimeout` (timeout given),
  `HostGone` (the host let go of the port) or `PhoneStopped` (the phone was unplugged);
- `write()` sends everything, paced by the `rate` fault, and never wedges on a host that stops
  reading; `stop()` is honoured within ~50 ms;
- `listen()` waits for a (new) host: the first byte is answered at once;
- `drain()` lets the host receive what was sent before the port goes away; `close()` unplugs
  (the host sees EOF / a closed connection);
- every byte both ways, and open/close events, go to the trace if one is set.
A re-enumeration is a new link (a new pty or a new listening port), never a reused one.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod

from romkit.errors import DeviceError, DeviceTimeout, TransportError, UsageError
from romkit.trace import TraceWriter

CHUNK = 1 << 20
TICK_MS = 50
LINK_KINDS = ("pty", "tcp")


class HostGone(TransportError):
    """The host closed its side of the port (or never opened it yet)."""

    default_hint = "open the port printed by `romkit sim` and start again"


class LinkTimeout(DeviceTimeout):
    """The host sent nothing within the time the phone allows for this step."""

    default_hint = "the host stopped sending in the middle of a transfer"


class PhoneStopped(DeviceError):
    """The virtual phone was asked to stop (unplugged by the user)."""

    default_hint = "start `romkit sim` again"


class Link(ABC):
    """Buffered, paced, traced byte pipe to the host; subclasses move the bytes."""

    kind = ""
    path = ""  # what the host opens: a pty path or a socket:// URL

    def __init__(self, stop: threading.Event, rate: int | None,
                 trace: TraceWriter | None) -> None:
        self._stop = stop
        self._rate = rate
        self._trace = trace
        self._next_free = 0.0
        self._buf = bytearray()
        self.bytes_in = 0
        self.bytes_out = 0

    # -- what a cable must do ----------------------------------------------------------------
    @property
    @abstractmethod
    def closed(self) -> bool:
        """True once unplugged."""

    @abstractmethod
    def listen(self) -> None:
        """Wait for a (new) host on this port."""

    @abstractmethod
    def _receive(self, wait_ms: int) -> bytes | None:
        """Up to CHUNK bytes from the host, None if nothing came within `wait_ms`; raises
        HostGone when the host let go."""

    @abstractmethod
    def _send(self, data: memoryview) -> int | None:
        """Send a prefix of `data`; the count sent, or None if the host cannot take more now
        (after waiting up to one tick). Raises HostGone when the host is gone."""

    @abstractmethod
    def drain(self, timeout: float) -> None:
        """Wait (up to `timeout`) until the host has everything the phone sent."""

    @abstractmethod
    def close(self) -> None:
        """Unplug: the port disappears."""

    # -- shared behaviour --------------------------------------------------------------------
    def check_stop(self) -> None:
        """Raise `PhoneStopped` if the phone was asked to stop."""
        if self._stop.is_set():
            raise PhoneStopped("the virtual phone was stopped")

    def read(self, n: int, timeout: float | None = None) -> bytes:
        """Exactly `n` bytes from the host; waits forever unless `timeout` is given."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._buf) < n:
            self.check_stop()
            if self.closed:
                raise HostGone("the virtual port is closed")
            wait = TICK_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LinkTimeout("the host sent nothing in time")
                wait = max(1, min(wait, int(left * 1000) + 1))
            chunk = self._receive(wait)
            if chunk:
                self.bytes_in += len(chunk)
                if self._trace is not None:
                    self._trace.data(">", chunk)
                self._buf += chunk
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def read_byte(self, timeout: float | None = None) -> int:
        return self.read(1, timeout)[0]

    def pending(self) -> int:
        """Bytes already received and not yet consumed."""
        return len(self._buf)

    def discard_input(self) -> None:
        self._buf.clear()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send everything, paced by the `rate` fault if one is set."""
        view = memoryview(data).cast("B")
        step = CHUNK if self._rate is None else max(64, min(CHUNK, self._rate // 50))
        off = 0
        while off < len(view):
            self.check_stop()
            if self.closed:
                raise HostGone("the virtual port is closed")
            if self._rate is not None:
                now = time.monotonic()
                if self._next_free > now:
                    time.sleep(min(self._next_free - now, TICK_MS / 1000))
                    continue
            sent = self._send(view[off:off + step])
            if not sent:
                continue
            if self._rate is not None:
                self._next_free = max(time.monotonic(), self._next_free) + sent / self._rate
            if self._trace is not None:
                self._trace.data("<", view[off:off + sent])
            off += sent
            self.bytes_out += sent


# ROMKIT_SIM_LINK=tcp makes TCP the default where a pty exists too (to run the whole test
# suite's end-to-end flows over the TCP link, as a Windows machine would)
DEFAULT_LINK = (os.environ.get("ROMKIT_SIM_LINK", "").strip().lower()
                or ("pty" if hasattr(os, "openpty") else "tcp"))


def parse_link(spec: str | None) -> tuple[str, str, int]:
    """`pty`, `tcp` or `tcp:HOST:PORT` → (kind, host, port); port 0 lets the OS choose."""
    text = (spec or DEFAULT_LINK).strip()
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    hint = "use --link pty, --link tcp or --link tcp:127.0.0.1:PORT"
    if kind == "pty" and not rest:
        if not hasattr(os, "openpty"):
            raise UsageError("this system has no pseudo-terminals", hint="use --link tcp")
        return "pty", "", 0
    if kind != "tcp":
        raise UsageError(f"unknown link {text!r}", hint=hint)
    if not rest:
        return "tcp", "127.0.0.1", 0
    host, sep, port_text = rest.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not 0 <= port <= 65535:
        raise UsageError(f"link {text!r}: {port_text!r} is not a TCP port", hint=hint)
    return "tcp", host, port


def open_link(spec: tuple[str, str, int], stop: threading.Event, rate: int | None,
              trace: TraceWriter | None, *, first: bool) -> Link:
    """A new cable of that kind. A fixed TCP port is used for the first plug-in only: a
    re-enumerated phone always gets a new port (the OS picks it), like a new USB device."""
    kind, host, port = spec
    if kind == "tcp":
        from romkit.sim.tcp_link import TcpLink

        return TcpLink(stop, rate, trace, host=host, port=port if first else 0)
    from romkit.sim.pty_link import PtyLink

    return PtyLink(stop, rate, trace)
