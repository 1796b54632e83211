"""Byte traces of a USB/serial session, in one documented text format (docs/TRACE.md).

Why: romkit's protocol readings have only been checked against captures of other people's
phones. An owner of a real S820 who hits a problem can run `romkit flash --trace FILE` and
send the file; `romkit sim --trace FILE` records the same format from the phone's side, so
the two can be compared line by line. The format is plain text so a person can read it and
`diff` two of them:

    # romkit-trace 1
    # side=host port=/dev/ttyACM0 tool=romkit 0.1.0 started=2026-11-30T12:00:00.000000Z
    0.000000 > a0
    0.000310 < 5f
    0.412000 ! reopen /dev/ttyACM1

Each data line is `SECONDS DIR HEX`: seconds since the start (6 decimals), `>` for bytes from
the host to the phone and `<` for bytes from the phone to the host (the same meaning on both
sides), then the bytes as lower-case hex without spaces. `!` lines are link events (open,
close, reopen, timeout) with free text. A file whose name ends in `.gz` is gzip-compressed.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal, TextIO, cast

from romkit.errors import UsageError

MAGIC = "# romkit-trace 1"
TO_PHONE: Final = ">"
TO_HOST: Final = "<"
EVENT: Final = "!"
Direction = Literal[">", "<", "!"]
_LINE_BYTES = 4096  # longer chunks are split so no line is unreasonably long


@dataclass(frozen=True)
class TraceRecord:
    """One line of a trace: `data` is set for `>`/`<`, `text` for `!` events."""

    seconds: float
    direction: Direction
    data: bytes = b""
    text: str = ""


def _open_text(path: Path, mode: Literal["r", "w"]) -> TextIO:
    if path.suffix == ".gz":
        return cast(TextIO, gzip.open(path, mode + "t", encoding="ascii", newline="\n"))
    return path.open(mode, encoding="ascii", newline="\n")


class TraceWriter:
    """Appends records to a trace file; safe to call from several threads.

    Data is flushed on every event and on close, not on every chunk: a trace of a 1 GiB flash
    is written at disk speed. Timestamps use a monotonic clock.
    """

    def __init__(self, path: Path | str, *, side: Literal["host", "phone"], **meta: str) -> None:
        self.path = Path(path)
        try:
            self._fh = _open_text(self.path, "w")
        except OSError as exc:
            raise UsageError(f"cannot write the trace file {self.path}: {exc.strerror}",
                             hint="choose a writable path for --trace") from exc
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        fields = " ".join(f"{k}={v}" for k, v in {"side": side, **meta,
                                                     "started": started}.items())
        self._fh.write(f"{MAGIC}\n# {fields}\n")
        self.closed = False

    def _stamp(self) -> str:
        return f"{time.monotonic() - self._t0:.6f}"

    def data(self, direction: Literal[">", "<"], chunk: bytes | bytearray | memoryview) -> None:
        if not chunk or self.closed:
            return
        raw = bytes(chunk)
        with self._lock:
            stamp = self._stamp()
            for i in range(0, len(raw), _LINE_BYTES):
                self._fh.write(f"{stamp} {direction} {raw[i:i + _LINE_BYTES].hex()}\n")

    def event(self, text: str) -> None:
        if self.closed:
            return
        with self._lock:
            self._fh.write(f"{self._stamp()} {EVENT} {' '.join(text.split())}\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._fh.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_trace(path: Path | str) -> Iterator[TraceRecord]:
    """Records of a trace file, in order; a malformed line is a UsageError naming it."""
    path = Path(path)
    with _open_text(path, "r") as fh:
        first = fh.readline().rstrip("\n")
        if first != MAGIC:
            raise UsageError(f"{path} is not a romkit trace (first line {first[:40]!r})",
                             hint="record one with --trace FILE")
        for number, line in enumerate(fh, start=2):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split(" ", 2)
            try:
                seconds = float(parts[0])
                direction = parts[1]
                rest = parts[2] if len(parts) > 2 else ""
                if direction == EVENT:
                    yield TraceRecord(seconds, EVENT, text=rest)
                elif direction in (TO_PHONE, TO_HOST):
                    yield TraceRecord(seconds, direction, data=bytes.fromhex(rest))  # type: ignore[arg-type]
                else:
                    raise ValueError(direction)
            except (ValueError, IndexError):
                raise UsageError(f"{path}:{number}: not a trace line: {line[:60]!r}",
                                 hint="see docs/TRACE.md for the format") from None


def stream(path: Path | str, direction: Literal[">", "<"]) -> bytes:
    """All bytes that went one way, concatenated (what a transcript test compares)."""
    return b"".join(r.data for r in read_trace(path) if r.direction == direction)
