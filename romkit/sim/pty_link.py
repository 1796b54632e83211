"""The virtual phone's USB cable: the master side of a pseudo-terminal.

The host opens the slave path (`/dev/pts/N`) exactly as it would open a real VCOM port, so
every byte crosses the kernel as on hardware.

Listening and the host's presence. While the phone waits for a host to speak (`listen()`,
at the start of every session and after every re-enumeration) it holds the slave open
itself: poll() on the master then sleeps until the host's first byte and wakes at once, so
the first handshake byte is answered within microseconds, as a real boot ROM does (issue 14
item 11: a 20 ms idle sleep here made clients that read without waiting fall a byte behind).
`listen()` also puts the slave back in raw mode with the receiver on (CS8|CREAD|CLOCAL,
115200): settings survive on a pty between sessions, and MediaTek's own bootrom-tool leaves
CREAD cleared, after which the next client's tcsetattr fails. As soon as the host's first
byte arrives the phone lets go of the slave, so that from then on the kernel tells it when
the host lets go of the port (reads on the master fail with EIO), which is how a phone
notices a host that went away. The pty — and therefore its path — survives until the phone
closes the master (an "unplug": the host then sees EOF / an I/O error).

Bulk data moves in big chunks with poll(); the master is non-blocking so that a host that
stops reading can never wedge the phone thread, and `stop()` is honoured within ~50 ms.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import select
import termios
import threading
import time

from romkit.errors import DeviceError, DeviceTimeout, TransportError
from romkit.trace import TraceWriter

_CHUNK = 1 << 20
_TICK_MS = 50


class HostGone(TransportError):
    """The host closed its side of the port (or never opened it yet)."""

    default_hint = "open the port printed by `romkit sim` and start again"


class LinkTimeout(DeviceTimeout):
    """The host sent nothing within the time the phone allows for this step."""

    default_hint = "the host stopped sending in the middle of a transfer"


class PhoneStopped(DeviceError):
    """The virtual phone was asked to stop (unplugged by the user)."""

    default_hint = "start `romkit sim` again"


def reset_termios(fd: int) -> None:
    """Raw 8N1 at 115200 with the receiver on: what a VCOM port looks like when plugged in."""
    attrs = termios.tcgetattr(fd)
    attrs[0] = 0  # iflag: no translation, no flow control
    attrs[1] = 0  # oflag: no post-processing
    attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL  # cflag
    attrs[3] = 0  # lflag: no echo, no canonical mode, no signals
    attrs[4] = attrs[5] = termios.B115200
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class PtyLink:
    """One pseudo-terminal pair; the phone reads and writes the master side."""

    kind = "pty"

    def __init__(self, stop: threading.Event, rate: int | None = None,
                 trace: TraceWriter | None = None) -> None:
        master, slave = os.openpty()
        try:
            reset_termios(slave)
            self.path = os.ttyname(slave)
        except OSError:
            os.close(master)
            os.close(slave)
            raise
        os.set_blocking(master, False)
        self._slave: int | None = slave  # held while listening (see module doc)
        self._trace = trace
        self._fd: int | None = master
        self._stop = stop
        self._rate = rate
        self._next_free = 0.0
        self._buf = bytearray()
        self._poll = select.poll()
        self._poll.register(master, select.POLLIN)
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def closed(self) -> bool:
        return self._fd is None

    def listen(self) -> None:
        """Wait for a (new) host: hold the slave and restore its settings (module doc)."""
        if self._fd is None:
            return
        if self._slave is None:
            try:
                self._slave = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            except OSError:
                return
        try:
            reset_termios(self._slave)
        except OSError:
            pass  # the host may be changing them right now; its own settings win

    def _release(self) -> None:
        slave, self._slave = self._slave, None
        if slave is not None:
            os.close(slave)

    def _master(self) -> int:
        if self._fd is None:
            raise HostGone("the virtual port is closed")
        return self._fd

    # -- reading -----------------------------------------------------------------------------
    def read(self, n: int, timeout: float | None = None) -> bytes:
        """Exactly `n` bytes from the host; waits forever unless `timeout` is given."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._buf) < n:
            self._fill(deadline)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def read_byte(self, timeout: float | None = None) -> int:
        return self.read(1, timeout)[0]

    def pending(self) -> int:
        """Bytes already received and not yet consumed."""
        return len(self._buf)

    def check_stop(self) -> None:
        """Raise `PhoneStopped` if the phone was asked to stop."""
        if self._stop.is_set():
            raise PhoneStopped("the virtual phone was stopped")

    def _fill(self, deadline: float | None) -> None:
        self.check_stop()
        fd = self._master()
        wait = _TICK_MS
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkTimeout("the host sent nothing in time")
            wait = max(1, min(wait, int(left * 1000) + 1))
        if not self._poll.poll(wait):
            return
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no host has the slave open
                raise HostGone("the host closed the port") from None
            raise HostGone(f"the virtual port failed: {exc.strerror}") from None
        if not chunk:
            raise HostGone("the host closed the port")
        if self._slave is not None:
            self._release()  # the host is here: from now on notice when it leaves
        self.bytes_in += len(chunk)
        if self._trace is not None:
            self._trace.data(">", chunk)
        self._buf += chunk

    def discard_input(self) -> None:
        self._buf.clear()

    # -- writing -----------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send everything, paced by the `rate` fault if one is set."""
        view = memoryview(data).cast("B")
        step = _CHUNK if self._rate is None else max(64, min(_CHUNK, self._rate // 50))
        off = 0
        while off < len(view):
            if self._stop.is_set():
                raise PhoneStopped("the virtual phone was stopped")
            fd = self._master()
            if self._rate is not None:
                now = time.monotonic()
                if self._next_free > now:
                    time.sleep(min(self._next_free - now, _TICK_MS / 1000))
                    continue
            try:
                sent = os.write(fd, view[off:off + step])
            except BlockingIOError:
                select.select([], [fd], [], _TICK_MS / 1000)
                continue
            except OSError as exc:
                raise HostGone(f"the host is gone ({exc.strerror})") from None
            if self._rate is not None:
                self._next_free = max(time.monotonic(), self._next_free) + sent / self._rate
            if self._trace is not None:
                self._trace.data("<", view[off:off + sent])
            off += sent
            self.bytes_out += sent

    def drain(self, timeout: float) -> None:
        """Wait (up to `timeout`) until the host has read everything the phone sent.

        Closing the master discards what the host has not read yet, so before a clean
        unplug (after FINISH) the phone peeks at the slave's input queue.
        """
        if self._fd is None:
            return
        # What the phone wrote reaches the slave's queue through the kernel's flip-buffer
        # worker, so give it a moment before trusting an empty queue.
        time.sleep(0.02)
        if any(ev & select.POLLHUP for _fd, ev in self._poll.poll(0)):
            return  # the host already let go of the port
        try:
            slave = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            deadline = time.monotonic() + timeout
            pending = array.array("i", [0])
            while time.monotonic() < deadline and not self._stop.is_set():
                fcntl.ioctl(slave, termios.FIONREAD, pending, True)
                if pending[0] == 0:
                    return
                time.sleep(0.005)
        finally:
            os.close(slave)

    def close(self) -> None:
        """Unplug: the pty disappears and the host sees EOF / an I/O error."""
        self._release()
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                self._poll.unregister(fd)
            except (KeyError, ValueError):
                pass
            os.close(fd)
        self._buf.clear()
