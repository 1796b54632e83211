"""The virtual phone's cable as a TCP port: for systems without pseudo-terminals (issue 20).

The phone listens on HOST:PORT (default 127.0.0.1 and a port the OS chooses) and serves one
host connection at a time; the host opens `socket://HOST:PORT` with pyserial, which is how
romkit's engine opens any port. The link behaves like the pty where the engine can tell:
- the host "opens the port" by connecting and "closes" it by closing the connection; the
  phone then reports `HostGone` exactly as for a pty whose slave was closed, and waits for the
  next connection (a host that connects and leaves before the handshake changes nothing);
- unplug closes the listening socket and the connection (the host's reads fail: pyserial
  reports a disconnected socket); a re-enumeration is a new link on a new port (the OS picks
  it), announced like a new pty;
- before an unplug, `drain()` waits until the host's TCP stack has acknowledged everything the
  phone sent, discards unread input and sends FIN, so a final ACK is not lost to a reset.
"""

from __future__ import annotations

import array
import select
import socket
import sys
import threading
import time

from romkit.sim.link import CHUNK, TICK_MS, HostGone, Link
from romkit.trace import TraceWriter

if sys.platform != "win32":  # unacknowledged bytes in the send queue (Linux, macOS)
    import fcntl
    import termios

    _TIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None)
else:
    _TIOCOUTQ = None


class TcpLink(Link):
    """A listening socket plus at most one host connection."""

    kind = "tcp"

    def __init__(self, stop: threading.Event, rate: int | None = None,
                 trace: TraceWriter | None = None, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(stop, rate, trace)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        srv = socket.socket(family, socket.SOCK_STREAM)
        try:
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind((host, port))
            srv.listen(1)
        except OSError:
            srv.close()
            raise
        srv.setblocking(False)
        self._srv: socket.socket | None = srv
        self._conn: socket.socket | None = None
        self.host, self.port = srv.getsockname()[:2]
        where = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self.path = f"socket://{where}:{self.port}"

    @property
    def closed(self) -> bool:
        return self._srv is None

    def listen(self) -> None:
        """Nothing to reset on a socket: the next connection is the next host."""

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _receive(self, wait_ms: int) -> bytes | None:
        if self._srv is None:
            raise HostGone("the virtual port is closed")
        if self._conn is None:
            if not select.select([self._srv], [], [], wait_ms / 1000)[0]:
                return None
            try:
                conn, _addr = self._srv.accept()
            except BlockingIOError:
                return None
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
            if self._trace is not None:
                self._trace.event(f"connect {self.path}")
            wait_ms = 0
        if not select.select([self._conn], [], [], wait_ms / 1000)[0]:
            return None
        try:
            chunk = self._conn.recv(CHUNK)
        except BlockingIOError:
            return None
        except OSError as exc:
            self._drop()
            raise HostGone(f"the host's connection failed: {exc.strerror}") from None
        if not chunk:
            self._drop()
            raise HostGone("the host closed the connection")
        return chunk

    def _send(self, data: memoryview) -> int | None:
        conn = self._conn
        if conn is None:
            raise HostGone("no host is connected")
        try:
            return conn.send(data)
        except BlockingIOError:
            select.select([], [conn], [], TICK_MS / 1000)
            return None
        except OSError as exc:
            self._drop()
            raise HostGone(f"the host is gone ({exc.strerror})") from None

    def drain(self, timeout: float) -> None:
        """Wait until the host acknowledged what was sent, then end the stream with FIN."""
        conn = self._conn
        if conn is None:
            return
        deadline = time.monotonic() + timeout
        if _TIOCOUTQ is not None:
            queued = array.array("i", [0])
            while time.monotonic() < deadline and not self._stop.is_set():
                try:
                    fcntl.ioctl(conn.fileno(), _TIOCOUTQ, queued, True)
                except OSError:
                    break
                if queued[0] == 0:
                    break
                time.sleep(0.005)
        try:  # unread input would turn the close into a reset that can drop our last bytes
            while select.select([conn], [], [], 0)[0] and conn.recv(CHUNK):
                pass
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        """Unplug: no more connections; the host's connection ends."""
        self._drop()
        srv, self._srv = self._srv, None
        if srv is not None:
            srv.close()
        self._buf.clear()
