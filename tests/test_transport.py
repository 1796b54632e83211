"""Transport over a real pty pair, port discovery and waiting for the port.

Also home of `PtyPhone`, the tiny scripted far end used by the BROM / DA tests: a thread on the
master side of `os.openpty()` that plays the phone's bytes exactly as a test writes them.
"""

from __future__ import annotations

import os
import select
import struct
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import pytest
from serial.tools.list_ports_common import ListPortInfo

from romkit import virtualports
from romkit.device.transport import SerialTransport, find_mtk_ports, port_mode, wait_for_port
from romkit.errors import DeviceTimeout, TransportError
from romkit.progress import ProgressEvent


def be16(v: int) -> bytes:
    return struct.pack(">H", v)


def be32(v: int) -> bytes:
    return struct.pack(">I", v)


def be64(v: int) -> bytes:
    return struct.pack(">Q", v)


class Peer:
    """The phone's side of the wire: exact reads with a deadline, whole writes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.received = bytearray()

    def read(self, n: int, timeout: float = 5.0) -> bytes:
        buf = bytearray()
        deadline = time.monotonic() + timeout
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"peer: host sent {len(buf)} of {n} bytes: {bytes(buf)!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, n - len(buf))
                if not chunk:
                    raise AssertionError("peer: host closed the port")
                buf.extend(chunk)
        self.received.extend(buf)
        return bytes(buf)

    def expect(self, data: bytes, timeout: float = 5.0) -> None:
        got = self.read(len(data), timeout)
        assert got == data, f"peer expected {data.hex()} got {got.hex()}"

    def silent(self, timeout: float = 0.2) -> bool:
        """True if the host sends nothing for `timeout` seconds."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return not ready

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def drain(self, stop: threading.Event) -> None:
        """Swallow whatever the host sends until told to stop (or the host goes away)."""
        while not stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.01)
            if ready:
                try:
                    if not os.read(self.fd, 65536):
                        return
                except OSError:
                    return


class PtyPhone:
    """A pty whose master end runs `script(peer)` in a thread; re-raises the script's failure."""

    def __init__(self, script: Callable[[Peer], None], *, autostart: bool = True) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # raw before any byte moves: no echo, no CR/LF translation
        self.path = os.ttyname(self.slave)
        self.peer = Peer(self.master)
        self.error: BaseException | None = None
        self._script = script
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._closed = False
        self._autostart = autostart

    def _run(self) -> None:
        try:
            self._script(self.peer)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.error = exc

    def __enter__(self) -> PtyPhone:
        if self._autostart:
            self._thread.start()
        return self

    def start(self) -> None:
        """Start the script; call it after the host opened the port when the phone speaks
        first (pyserial drops pending input when it opens a port)."""
        self._thread.start()

    def join(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive() and self._thread.ident is None:
            return  # never started (the test failed before start())
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "peer script did not finish"
        if self.error is not None:
            raise self.error

    def hangup(self) -> None:
        """Close both ends we hold, as a phone vanishing from USB would."""
        if not self._closed:
            self._closed = True
            os.close(self.master)
            os.close(self.slave)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if et is None:
                self.join()
        finally:
            if self._thread.ident is not None:
                self._thread.join(2)
            if ev is not None and self.error is not None:
                ev.add_note(f"peer script failed: {self.error!r}")
            self.hangup()


# -- tests --------------------------------------------------------------------------------------
def test_open_failure_is_1013_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(TransportError) as ei:
        SerialTransport(str(tmp_path / "no-such-tty"))
    assert ei.value.spft_code == 1013
    assert "doctor" in ei.value.hint
    assert "no-such-tty" in ei.value.message


def test_read_returns_exactly_n_bytes_across_fragments() -> None:
    payload = bytes(range(200)) * 3

    def script(p: Peer) -> None:
        p.expect(b"go")
        for i in range(0, len(payload), 97):
            p.write(payload[i : i + 97])
            time.sleep(0.005)

    with PtyPhone(script) as phone:
        t = SerialTransport(phone.path, timeout=2)
        t.write(b"go")
        assert t.read(len(payload)) == payload
        t.close()


def test_big_endian_helpers_match_struct() -> None:
    def script(p: Peer) -> None:
        p.expect(bytes([0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0]))
        p.expect(bytes([0xAB]))
        p.write(bytes([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]))

    with PtyPhone(script) as phone:
        t = SerialTransport(phone.path, timeout=2)
        t.write_u32(0x12345678)
        t.write_u16(0x9ABC)
        t.write_u16(0xDEF0)
        t.write_u8(0xAB)
        assert t.read_u8() == 0x01
        assert t.read_u16() == 0x0203
        assert t.read_u32() == 0x04050607
        t.close()


def test_short_answer_is_a_timeout() -> None:
    def script(p: Peer) -> None:
        p.expect(b"?")
        p.write(b"\x01\x02")

    with PtyPhone(script) as phone:
        t = SerialTransport(phone.path, timeout=2)
        t.write(b"?")
        start = time.monotonic()
        with pytest.raises(DeviceTimeout) as ei:
            t.read(4, timeout=0.3)
        assert 0.25 <= time.monotonic() - start < 2
        assert ei.value.details["got"] == 2
        t.close()


def test_phone_vanishing_is_a_clean_transport_error() -> None:
    def script(p: Peer) -> None:
        p.expect(b"hi")

    with PtyPhone(script) as phone:
        t = SerialTransport(phone.path, timeout=2)
        t.write(b"hi")
        phone.join()
        phone.hangup()
        with pytest.raises(TransportError) as ei:
            t.read(1)
        assert ei.value.message == "phone disconnected"
        with pytest.raises(TransportError):
            t.write(b"x" * 10)
        t.close()
        t.close()  # twice is fine


def test_flush_input_drops_stale_bytes() -> None:
    def script(p: Peer) -> None:
        p.expect(b"?")
        p.write(b"stale")
        p.expect(b"A")
        p.write(b"fresh")

    with PtyPhone(script) as phone:
        t = SerialTransport(phone.path, timeout=2)
        t.write(b"?")
        time.sleep(0.1)  # the stale bytes are now waiting in the port
        t.flush_input()
        t.write(b"A")
        assert t.read(5) == b"fresh"
        t.close()


def _port(device: str, vid: int | None, pid: int | None, desc: str = "") -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.description = vid, pid, desc
    return info


def test_find_mtk_ports_filters_by_usb_id_and_prefers_brom() -> None:
    ports = [
        _port("/dev/ttyUSB0", 0x0403, 0x6001, "FTDI"),
        _port("/dev/ttyACM3", 0x0E8D, 0x2000, "MT65xx Preloader"),
        _port("/dev/ttyS0", None, None),
        _port("/dev/ttyACM1", 0x0E8D, 0x0003, "MediaTek USB Port"),
        _port("/dev/ttyACM2", 0x0E8D, 0x2001, "DA"),
    ]
    found = find_mtk_ports(ports)
    assert [(p.device, p.mode) for p in found] == [
        ("/dev/ttyACM1", "brom"), ("/dev/ttyACM3", "preloader"), ("/dev/ttyACM2", "da")]
    assert found[0].usb_id == "0E8D:0003"
    assert port_mode(0x0E8D, 0x20FF) == "preloader"
    assert port_mode(0x1234, 0x5678) is None


def test_wait_for_port_waits_for_an_explicit_path(tmp_path: Path) -> None:
    """A path a virtual phone has announced is waited for, like a USB node on plug-in."""
    master, slave = os.openpty()
    link = tmp_path / "phone-tty"
    virtualports.announce(virtualports.VirtualPort(phone_id="t1", port=str(link),
                                                   owner_pid=os.getpid()))
    events: list[ProgressEvent] = []
    timer = threading.Timer(0.25, lambda: link.symlink_to(os.ttyname(slave)))
    timer.start()
    try:
        start = time.monotonic()
        got = wait_for_port(str(link), timeout=3, poll=0.02, on_progress=events.append)
        assert got == str(link)
        assert 0.2 <= time.monotonic() - start < 2
        assert sum(1 for e in events if "battery" in e.label) == 1
        t = SerialTransport(got)  # the symlink really leads to a usable port
        t.close()
    finally:
        timer.join()
        os.close(master)
        os.close(slave)


def test_wait_for_port_fails_at_once_for_a_path_that_cannot_appear(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(TransportError) as ei:
        wait_for_port(str(tmp_path / "typo"), timeout=30)
    assert time.monotonic() - start < 1
    assert "does not exist" in ei.value.message and ei.value.hint


def test_wait_for_port_times_out_with_a_prompt() -> None:
    events: list[ProgressEvent] = []
    with pytest.raises(TransportError) as ei:
        wait_for_port("/dev/ttyACM-romkit-never", timeout=0.15, poll=0.02,
                      on_progress=events.append)
    assert "within" in ei.value.message
    assert ei.value.spft_code == 8100  # SP Flash Tool's FT_FIND_USB_ERROR
    assert events and events[0].kind == "info" and "USB" in events[0].label


def test_wait_for_port_without_a_path_finds_a_running_virtual_phone() -> None:
    master, slave = os.openpty()
    try:
        pty = os.ttyname(slave)
        virtualports.announce(virtualports.VirtualPort(phone_id="sim-a", port=pty, pid=0x2000,
                                                       owner_pid=os.getpid()))
        assert wait_for_port(None, timeout=2, poll=0.02) == pty
    finally:
        os.close(master)
        os.close(slave)


def test_wait_for_port_passes_urls_through() -> None:
    assert wait_for_port("socket://127.0.0.1:1", timeout=0) == "socket://127.0.0.1:1"


def test_multi_mebibyte_transfers_arrive_intact() -> None:
    blob = os.urandom(3 * 1024 * 1024 + 1)

    def script(p: Peer) -> None:
        got = p.read(len(blob))
        assert got == blob
        p.write(got[::-1])

    with PtyPhone(script) as phone:
        t = SerialTransport(phone.path, timeout=5)
        t.write(memoryview(blob))
        assert t.read(len(blob)) == blob[::-1]
        t.close()


def test_socket_port_closes_at_once_and_the_phone_sees_the_end() -> None:
    """pyserial's socket:// close() sleeps 0.3 s after shutting down; the transport ends the
    connection the same way without the pause, and the far end reads EOF."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        port = srv.getsockname()[1]
        t = SerialTransport(f"socket://127.0.0.1:{port}", timeout=1.0)
        conn, _ = srv.accept()
        with conn:
            conn.sendall(b"\x5f")
            assert t.read(1) == b"\x5f"
            t.write(b"\xa0")
            assert conn.recv(1) == b"\xa0"
            started = time.monotonic()
            t.close()
            assert time.monotonic() - started < 0.2
            conn.settimeout(2.0)
            assert conn.recv(1) == b""  # the phone side sees the connection end
            t.close()  # twice is fine
    finally:
        srv.close()
