"""A small, misbehaving-on-demand HTTP file server on 127.0.0.1.

Tests, `romkit demo` and the benches need a real server whose faults they control: Range
support that can be switched off, a per-connection rate cap (to model the 25-hour forum
mirror), connections that die mid-body, 500s, wrong bytes and slow answers, plus a record of
exactly which byte ranges were sent so a test can prove a resume did not fetch anything
twice. It is a library module (no prints) so the demo can use it at run time.
"""

from __future__ import annotations

import http.server
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

import numpy as np

FaultKind = Literal["drop", "status", "corrupt", "delay"]
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_SEND_CHUNK = 64 * 1024


@dataclass
class Fault:
    """One injected misbehaviour for GET requests of one file.

    kind: "drop" cuts the connection after `after` body bytes; "status" answers `status`
    instead of the file; "corrupt" flips every body byte from `after` on (XOR 0xFF); "delay"
    sleeps `delay` seconds before answering. `times` is how many matching requests it hits
    (None: all). `min_offset`: only requests whose range starts at or after this offset.
    """

    kind: FaultKind
    after: int = 0
    status: int = 500
    delay: float = 0.0
    times: int | None = 1
    min_offset: int = 0


@dataclass(frozen=True)
class Served:
    """What one GET answered: file, requested range [start, end), status and body bytes sent."""

    name: str
    start: int
    end: int
    status: int
    sent: int
    ranged: bool


@dataclass
class _State:
    files: dict[str, bytes | Path] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    served: list[Served] = field(default_factory=list)
    active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _QuietServer(http.server.ThreadingHTTPServer):
    """Clients hanging up mid-transfer is normal here (that is what tests do): no stderr."""

    def handle_error(self, request: object, client_address: object) -> None:
        return None


class LocalServer:
    """Threaded HTTP/1.1 server serving files from a dict of bytes and/or a folder.

    Use as a context manager (or start()/stop()). `url(name)` gives the address of a file.
    `ranges=False` makes it ignore Range headers (answers 200 with the whole file), `rate` caps
    each connection at that many bytes per second.
    """

    def __init__(self, files: Mapping[str, bytes | Path] | None = None, *,
                 root: Path | None = None, ranges: bool = True,
                 rate: float | None = None) -> None:
        self.ranges = ranges
        self.rate = rate
        self.root = root
        self._state = _State(files=dict(files or {}))
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> LocalServer:
        handler = _make_handler(self)
        httpd = _QuietServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="localserver",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{quote(name)}"

    # -- content and faults -------------------------------------------------------------------
    def add(self, name: str, data: bytes | Path) -> str:
        """Serve `data` (bytes, or a file read lazily) as `/name`; returns its URL."""
        with self._state.lock:
            self._state.files[name] = data
        return self.url(name)

    def add_fault(self, name: str, fault: Fault) -> None:
        with self._state.lock:
            self._state.faults.setdefault(name, []).append(fault)

    def clear_faults(self) -> None:
        with self._state.lock:
            self._state.faults.clear()

    # -- accounting ---------------------------------------------------------------------------
    @property
    def served(self) -> list[Served]:
        with self._state.lock:
            return list(self._state.served)

    def bytes_served(self, name: str | None = None) -> int:
        return sum(s.sent for s in self.served if name is None or s.name == name)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being answered (e.g. after killing a client, whose
        half-sent responses are still being recorded); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._state.lock:
                if self._state.active == 0:
                    return True
            time.sleep(0.01)
        return False

    def reset_stats(self) -> None:
        with self._state.lock:
            self._state.served.clear()

    # -- used by the handler ------------------------------------------------------------------
    def _lookup(self, name: str) -> bytes | Path | None:
        with self._state.lock:
            entry = self._state.files.get(name)
        if entry is not None:
            return entry
        if self.root is None or not name or any(p in ("", ".", "..") for p in name.split("/")):
            return None
        candidate = self.root / name
        return candidate if candidate.is_file() else None

    def _take_fault(self, name: str, start: int) -> Fault | None:
        with self._state.lock:
            for fault in self._state.faults.get(name, []):
                if fault.times is not None and fault.times <= 0:
                    continue
                if start < fault.min_offset:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None

    def _record(self, served: Served) -> None:
        with self._state.lock:
            self._state.served.append(served)


def _size_of(entry: bytes | Path) -> int:
    return len(entry) if isinstance(entry, bytes) else entry.stat().st_size


def _read(entry: bytes | Path, start: int, length: int) -> bytes:
    if isinstance(entry, bytes):
        return entry[start:start + length]
    with entry.open("rb") as fh:
        fh.seek(start)
        return fh.read(length)


def _flip(data: bytes) -> bytes:
    return (np.frombuffer(data, dtype=np.uint8) ^ np.uint8(0xFF)).tobytes()


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None | Literal["bad"]:
    """Single byte range → [start, end) clipped to the file; None when absent; "bad" if
    unsatisfiable or malformed (multi-range requests are answered as unsatisfiable too)."""
    if header is None:
        return None
    m = _RANGE_RE.match(header.strip())
    if m is None:
        return "bad"
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return "bad"
    if first == "":
        n = int(last)
        if n == 0:
            return "bad"
        return max(0, size - n), size
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if start >= size or end <= start:
        return "bad"
    return start, end


def _make_handler(server: LocalServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return None

        def do_HEAD(self) -> None:
            self._counted(head=True)

        def do_GET(self) -> None:
            self._counted(head=False)

        def _counted(self, *, head: bool) -> None:
            with server._state.lock:
                server._state.active += 1
            try:
                self._serve(head=head)
            finally:
                with server._state.lock:
                    server._state.active -= 1

        def _serve(self, *, head: bool) -> None:
            name = unquote(urlsplit(self.path).path).lstrip("/")
            entry = server._lookup(name)
            if entry is None:
                self._plain(404, b"not found\n")
                return
            size = _size_of(entry)
            rng = _parse_range(self.headers.get("Range"), size) if server.ranges else None
            if rng == "bad":
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = rng if isinstance(rng, tuple) else (0, size)
            fault = None if head else server._take_fault(name, start)
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.delay)
            if fault is not None and fault.kind == "status":
                self._plain(fault.status, b"injected failure\n")
                server._record(Served(name, start, end, fault.status, 0, rng is not None))
                return
            status = 206 if isinstance(rng, tuple) else 200
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start))
            if server.ranges:
                self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            if head:
                return
            sent = self._body(entry, start, end, fault)
            server._record(Served(name, start, end, status, sent, status == 206))

        def _body(self, entry: bytes | Path, start: int, end: int, fault: Fault | None) -> int:
            limit = end - start
            if fault is not None and fault.kind == "drop":
                limit = min(limit, fault.after)
            chunk = _SEND_CHUNK
            if server.rate:
                chunk = max(1024, min(chunk, int(server.rate / 20)))
            sent = 0
            began = time.monotonic()
            try:
                while sent < limit:
                    n = min(chunk, limit - sent)
                    data = _read(entry, start + sent, n)
                    if fault is not None and fault.kind == "corrupt" and sent + n > fault.after:
                        cut = max(0, fault.after - sent)
                        data = data[:cut] + _flip(data[cut:])
                    self.wfile.write(data)
                    sent += n
                    if server.rate:
                        ahead = sent / server.rate - (time.monotonic() - began)
                        if ahead > 0:
                            time.sleep(ahead)
            except OSError:
                self.close_connection = True
                return sent
            if sent < end - start:
                self.close_connection = True
                self.wfile.flush()
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return sent

        def _plain(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
