"""Streaming sinks that hash what passes through them.

Every byte romkit reads back from a phone goes through one of these so that a backup file, a
readback dump or a verify pass gets its sha256 and 16-bit byte sum in the same single pass,
in constant memory, without ever holding a partition in RAM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from romkit.errors import DiskError

CHUNK = 1024 * 1024


class Sink(Protocol):
    """Anything bytes can be written to (a file, a hashing sink)."""

    def write(self, data: bytes, /) -> int: ...


def sum16_update(total: int, data: bytes | bytearray | memoryview) -> int:
    """Add `data`'s bytes to a running 16-bit byte sum (vectorised)."""
    if not len(data):
        return total
    return (total + int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64))) & 0xFFFF


def is_erased(data: bytes | bytearray | memoryview) -> bool:
    """True if every byte is 0x00 or 0xFF: what an erased or trimmed eMMC range reads as
    (0x00 after a DA format or TRIM, 0xFF on parts that erase to ones). Real calibration
    always holds other bytes, so such a range carries no IMEI or calibration."""
    a = np.frombuffer(data, dtype=np.uint8)
    return not bool(np.any((a != 0x00) & (a != 0xFF)))


class DigestSink:
    """A write-only stream that records sha256, byte sum and length, optionally teeing to `out`."""

    def __init__(self, out: Sink | None = None) -> None:
        self._out = out
        self._sha = hashlib.sha256()
        self.sum16 = 0
        self.length = 0
        self.erased_only = True  # no byte other than 0x00 / 0xFF seen so far

    def write(self, data: bytes, /) -> int:
        self._sha.update(data)
        self.sum16 = sum16_update(self.sum16, data)
        self.length += len(data)
        if self.erased_only and len(data):
            self.erased_only = is_erased(data)
        if self._out is not None:
            self._out.write(data)
        return len(data)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


class CompareSink(DigestSink):
    """Digest a read-back stream and compare it, chunk by chunk, with the expected source.

    The first differing byte offset is kept so that a failed verify can name the exact place
    on the phone, not just "checksum mismatch".
    """

    def __init__(self, expected: BinaryIO) -> None:
        super().__init__(None)
        self._expected = expected
        self.first_mismatch: int | None = None

    def write(self, data: bytes, /) -> int:
        start = self.length
        n = super().write(data)
        if self.first_mismatch is None:
            want = self._expected.read(n)
            got = np.frombuffer(data, dtype=np.uint8)
            ref = np.frombuffer(want, dtype=np.uint8)
            if len(ref) != len(got):
                common = min(len(ref), len(got))
                diff = np.flatnonzero(got[:common] != ref[:common])
                self.first_mismatch = start + (int(diff[0]) if len(diff) else common)
            else:
                diff = np.flatnonzero(got != ref)
                if len(diff):
                    self.first_mismatch = start + int(diff[0])
        return n


def digest_file(path: Path, length: int | None = None) -> tuple[str, int, int]:
    """(sha256, sum16, length) of a file's first `length` bytes (all of it when None)."""
    sink = DigestSink()
    remaining = length
    try:
        with path.open("rb") as fh:
            while remaining is None or remaining > 0:
                want = CHUNK if remaining is None else min(CHUNK, remaining)
                chunk = fh.read(want)
                if not chunk:
                    break
                sink.write(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
    except OSError as exc:
        raise DiskError(f"cannot read {path}: {exc.strerror or exc}",
                        hint="check that the file exists and is readable") from exc
    return sink.sha256, sink.sum16, sink.length


class IterReader:
    """A read()-only stream over an iterator of byte pieces.

    Why: the DA write loop and the read-back compare both pull fixed-size slices from a
    "source file"; for an Android sparse image that source is the expanded stream of
    `romkit.sysimg.sparse.iter_expanded`, produced piece by piece and never stored. Holds at
    most one piece (≤ 1 MiB) plus what a read asked for.
    """

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._piece = b""
        self._off = 0

    def read(self, n: int = -1, /) -> bytes:
        out: list[bytes] = []
        want = n if n is not None and n >= 0 else None
        while want is None or want > 0:
            left = len(self._piece) - self._off
            if not left:
                piece = next(self._pieces, None)
                if piece is None:
                    break
                self._piece, self._off = piece, 0
                continue
            take = left if want is None else min(want, left)
            if self._off == 0 and take == len(self._piece):
                out.append(self._piece)  # a whole piece: no copy
            else:
                out.append(self._piece[self._off:self._off + take])
            self._off += take
            if want is not None:
                want -= take
        return out[0] if len(out) == 1 else b"".join(out)


class _TeeReader:
    """Reads from a file and digests every byte read (the file as stored), so the sparse
    walk and the checksum.ini sum of the same file share one pass over the disk."""

    def __init__(self, fh: BinaryIO, sink: DigestSink) -> None:
        self._fh = fh
        self._sink = sink

    def read(self, n: int = -1, /) -> bytes:
        data = self._fh.read(n)
        self._sink.write(data)
        return data

    def seek(self, offset: int, whence: int = 0, /) -> int:
        """Only forward skips relative to here (the sparse header's extra bytes), read so
        they are summed too."""
        if whence != 1 or offset < 0:
            raise ValueError("a tee reader only skips forward")
        self.read(offset)
        return offset


def open_expanded(fh: BinaryIO, name: str) -> IterReader:
    """The expanded bytes of the sparse image open in `fh`, as a readable stream."""
    from romkit.sysimg.sparse import iter_expanded  # the package pulls in ext4: only when used

    return IterReader(iter_expanded(fh, name))


def digest_sparse(path: Path) -> tuple[tuple[str, int, int], tuple[str, int, int]]:
    """((sha256, sum16, length) of the expanded image, (sha256, sum16, length) of the file
    as stored) in one pass: the first is what the phone gets and the read-back must equal,
    the second is what checksum.ini sums (SP Flash Tool sums the file it loaded).

    The whole chunk walk runs here, so a damaged sparse image is refused while planning,
    before anything is written.
    """
    from romkit.sysimg.sparse import iter_expanded  # the package pulls in ext4: only when used

    expanded, stored = DigestSink(), DigestSink()
    try:
        with path.open("rb") as fh:
            tee = _TeeReader(fh, stored)
            for piece in iter_expanded(tee, path.name):  # type: ignore[arg-type]
                expanded.write(piece)
            while tee.read(CHUNK):  # bytes after the last chunk still count for checksum.ini
                pass
    except OSError as exc:
        raise DiskError(f"cannot read {path}: {exc.strerror or exc}",
                        hint="check that the file exists and is readable") from exc
    return ((expanded.sha256, expanded.sum16, expanded.length),
            (stored.sha256, stored.sum16, stored.length))


def digest_bytes(data: bytes) -> tuple[str, int, int]:
    """(sha256, sum16, length) of an in-memory blob."""
    sink = DigestSink()
    sink.write(data)
    return sink.sha256, sink.sum16, sink.length
