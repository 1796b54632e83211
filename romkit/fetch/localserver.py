"""A small, misbehaving-on-demand HTTP file server on 127.0.0.1.

Tests, `romkit demo` and the benches need a real server whose faults they control: Range
support that can be switched off, a per-connection rate cap (to model the 25-hour forum
mirror), connections that die mid-body, 500s, wrong bytes, slow answers, a body dripped a
byte at a time, a file that changes between two requests, plus a record of exactly which
byte ranges were sent so a test can prove a resume did not fetch anything twice. Like nginx
or Apache it sends a strong ETag and Last-Modified and honours If-Range (RFC 9110 §13.1.5:
a range only if the validator still matches, else the whole new file with 200); both can be
switched off. It is a library module (no prints) so the demo can use it at run time.
"""

from __future__ import annotations

import email.utils
import hashlib
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

FaultKind = Literal["drop", "status", "corrupt", "delay", "drip", "change"]
Validators = Literal["both", "etag", "last-modified", "none"]
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_SEND_CHUNK = 64 * 1024


@dataclass
class Fault:
    """One injected misbehaviour for GET requests of one file.

    kind: "drop" cuts the connection after `after` body bytes; "status" answers `status`
    instead of the file; "corrupt" flips every body byte from `after` on (XOR 0xFF); "delay"
    sleeps `delay` seconds before answering; "drip" sends `after` bytes at full speed, then
    one byte every `delay` seconds (never tripping a read timeout); "change" replaces the
    file by `data` (new ETag and Last-Modified) just before answering, as a mirror updating
    its file between two requests would. `times` is how many matching requests it hits
    (None: all). `min_offset`: only requests whose range starts at or after this offset.
    """

    kind: FaultKind
    after: int = 0
    status: int = 500
    delay: float = 0.0
    times: int | None = 1
    min_offset: int = 0
    data: bytes = b""
    retry_after: int | None = None  # "status": also send Retry-After with this many seconds


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
    versions: dict[str, tuple[str, float]] = field(default_factory=dict)  # name -> ETag, mtime
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
    each connection at that many bytes per second, `validators` says which of ETag and
    Last-Modified it sends (and honours in If-Range). `head=False` answers HEAD with 405 (as
    some download hosts do); `sizes=False` never tells a size (no Content-Length, no ranges:
    the body streams until the connection closes).
    """

    def __init__(self, files: Mapping[str, bytes | Path] | None = None, *,
                 root: Path | None = None, ranges: bool = True,
                 rate: float | None = None, validators: Validators = "both",
                 head: bool = True, sizes: bool = True) -> None:
        self.head = head
        self.sizes = sizes
        ranges = ranges and sizes
        self.ranges = ranges
        self.rate = rate
        self.root = root
        self.validators = validators
        self._state = _State()
        for name, data in (files or {}).items():
            self._put(name, data, None)
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
    def add(self, name: str, data: bytes | Path, *, mtime: float | None = None) -> str:
        """Serve `data` (bytes, or a file read lazily) as `/name`; returns its URL. Adding
        again under the same name is the file changing on the server: new ETag, and
        Last-Modified `mtime` (default now, but always later than the previous version)."""
        with self._state.lock:
            self._put(name, data, mtime)
        return self.url(name)

    def _put(self, name: str, data: bytes | Path, mtime: float | None) -> None:
        """Store a file version (caller holds the lock)."""
        old = self._state.versions.get(name)
        when = time.time() if mtime is None else mtime
        if mtime is None and old is not None and when < old[1] + 1:
            when = old[1] + 1  # HTTP dates have 1 s resolution: keep versions apart
        if isinstance(data, bytes):
            etag = f'"{hashlib.sha1(data).hexdigest()[:20]}"'  # noqa: S324 - an ETag, no secret
        else:
            st = data.stat()
            etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
            when = st.st_mtime if mtime is None else when
        self._state.files[name] = data
        self._state.versions[name] = (etag, when)

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
                if fault.kind == "change":
                    self._put(name, fault.data, None)
                return fault
        return None

    def _validators(self, name: str, entry: bytes | Path) -> tuple[str | None, str | None]:
        """(ETag, Last-Modified) of the current version, as configured to be sent."""
        with self._state.lock:
            version = self._state.versions.get(name)
        etag: str | None
        if version is not None:
            etag, when = version
        elif isinstance(entry, Path):  # a file found under `root`
            st = entry.stat()
            etag, when = f'"{st.st_size:x}-{st.st_mtime_ns:x}"', st.st_mtime
        else:
            etag, when = None, time.time()
        modified = email.utils.formatdate(when, usegmt=True)
        return (etag if self.validators in ("both", "etag") else None,
                modified if self.validators in ("both", "last-modified") else None)

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
            if not server.head:
                self._plain(405, b"", {"Allow": "GET"})
                return
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
            fault = None
            if not head:
                size = _size_of(entry)
                asked = _parse_range(self.headers.get("Range"), size) if server.ranges else None
                fault = server._take_fault(name, asked[0] if isinstance(asked, tuple) else 0)
                if fault is not None and fault.kind == "change":
                    entry = server._lookup(name) or entry
            size = _size_of(entry)
            etag, modified = server._validators(name, entry)
            rng = _parse_range(self.headers.get("Range"), size) if server.ranges else None
            if_range = self.headers.get("If-Range")
            if isinstance(rng, tuple) and if_range is not None and if_range not in (
                    etag, modified):
                rng = None  # the file is not the version the client has pieces of
            if rng == "bad":
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = rng if isinstance(rng, tuple) else (0, size)
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.delay)
            if fault is not None and fault.kind == "status":
                extra = ({"Retry-After": str(fault.retry_after)}
                         if fault.retry_after is not None else {})
                self._plain(fault.status, b"injected failure\n", extra)
                server._record(Served(name, start, end, fault.status, 0, rng is not None))
                return
            status = 206 if isinstance(rng, tuple) else 200
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            if server.sizes:
                self.send_header("Content-Length", str(end - start))
            else:  # the body's end is the connection's end
                self.send_header("Connection", "close")
                self.close_connection = True
            if server.ranges:
                self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            if etag:
                self.send_header("ETag", etag)
            if modified:
                self.send_header("Last-Modified", modified)
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
            if fault is not None and fault.kind == "drip":
                return self._drip(entry, start, end, fault)
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

        def _drip(self, entry: bytes | Path, start: int, end: int, fault: Fault) -> int:
            sent = 0
            try:
                while sent < end - start:
                    n = min(end - start - sent, fault.after - sent) if sent < fault.after else 1
                    self.wfile.write(_read(entry, start + sent, n))
                    self.wfile.flush()
                    sent += n
                    if sent >= fault.after:
                        time.sleep(fault.delay)
            except OSError:
                self.close_connection = True
            return sent

        def _plain(self, status: int, body: bytes,
                   extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
