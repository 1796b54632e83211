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
stops reading can never wedge the phone thread, and `stop()` is honoured within ~50 ms
(the shared behaviour lives in romkit/sim/link.py).
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

from romkit.sim.link import CHUNK, TICK_MS, HostGone, Link, LinkTimeout, PhoneStopped
from romkit.trace import TraceWriter

__all__ = ["HostGone", "LinkTimeout", "PhoneStopped", "PtyLink", "reset_termios"]


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


class PtyLink(Link):
    """One pseudo-terminal pair; the phone reads and writes the master side."""

    kind = "pty"

    def __init__(self, stop: threading.Event, rate: int | None = None,
                 trace: TraceWriter | None = None) -> None:
        super().__init__(stop, rate, trace)
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
        self._fd: int | None = master
        self._poll = select.poll()
        self._poll.register(master, select.POLLIN)

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

    def _receive(self, wait_ms: int) -> bytes | None:
        fd = self._master()
        if not self._poll.poll(wait_ms):
            return None
        try:
            chunk = os.read(fd, CHUNK)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno == errno.EIO:  # no host has the slave open
                raise HostGone("the host closed the port") from None
            raise HostGone(f"the virtual port failed: {exc.strerror}") from None
        if not chunk:
            raise HostGone("the host closed the port")
        if self._slave is not None:
            self._release()  # the host is here: from now on notice when it leaves
        return chunk

    def _send(self, data: memoryview) -> int | None:
        fd = self._master()
        try:
            return os.write(fd, data)
        except BlockingIOError:
            select.select([], [fd], [], TICK_MS / 1000)
            return None
        except OSError as exc:
            raise HostGone(f"the host is gone ({exc.strerror})") from None

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
        if self._slave is None and any(ev & select.POLLHUP
                                       for _fd, ev in self._poll.poll(0)):
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
