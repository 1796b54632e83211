"""Android sparse images ↔ raw images, streamed in constant memory.

Why: MediaTek KitKat packages often ship system.img as an Android sparse image; e2fsprogs
edits only raw ext4. romkit expands the image into a (hole-punched) raw temp file, lets
e2fsprogs change it, and packs it back, so a 700 MB image never sits in memory.

Format facts (AOSP system/core libsparse/sparse_format.h, public): a 28-byte file header
`<I magic 0xED26FF3A, H major 1, H minor 0, H file_hdr_sz 28, H chunk_hdr_sz 12, I blk_sz,
I total_blks, I total_chunks, I image_checksum>`, then chunks with a 12-byte header
`<H type, H reserved, I chunk_sz (blocks), I total_sz (bytes incl. header)>`. Types:
0xCAC1 RAW (chunk_sz blocks of data follow), 0xCAC2 FILL (a 4-byte pattern repeated),
0xCAC3 DONT_CARE (nothing follows: a device-side unsparser such as fastboot's leaves those
blocks alone), 0xCAC4 CRC32 (4 bytes; libsparse writes none by default and we neither write
nor check them).

The flash engine writes sparse images through `iter_expanded`: the expanded bytes in
bounded pieces, DONT_CARE as zeros (what `simg2img` puts in a fresh file), so the phone gets
exactly the raw image simg2img would have produced and the read-back compares all of it.

Re-packing keeps the original's meaning: a block becomes DONT_CARE only if it was DONT_CARE
in the original *and* the filesystem says it is free now (so no block e2fsprogs wrote can be
skipped by the flasher); a block repeating one 32-bit word becomes FILL; the rest RAW.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from romkit.errors import DiskError, FirmwareFormatError
from romkit.progress import Reporter

SPARSE_MAGIC = 0xED26FF3A
FILE_HEADER = struct.Struct("<IHHHHIIII")
CHUNK_HEADER = struct.Struct("<HHII")
CHUNK_RAW = 0xCAC1
CHUNK_FILL = 0xCAC2
CHUNK_DONT_CARE = 0xCAC3
CHUNK_CRC32 = 0xCAC4
KERNEL_STEP = 64 * 1024 * 1024
IO_BLOCKS = 256  # blocks per read/write (1 MiB at 4 KiB blocks): constant memory
MAX_BLOCK_SIZE = 1 << 20
MAX_EXPANDED = 1 << 40  # 1 TiB: far beyond any phone partition; refuses hostile headers
_HINT = "the sparse image is damaged or not an Android sparse image; re-extract the firmware"

Ranges = list[tuple[int, int]]  # [start, end) in blocks


@dataclass
class SparseLayout:
    """What an unpacked sparse image looked like: enough to pack it back the same way."""

    block_size: int
    total_blocks: int
    chunks: int = 0
    dont_care: Ranges = field(default_factory=list)
    chunk_header_size: int = CHUNK_HEADER.size

    @property
    def expanded_size(self) -> int:
        return self.block_size * self.total_blocks


def _bad(source: str, message: str) -> FirmwareFormatError:
    return FirmwareFormatError(f"{source}: {message}", hint=_HINT)


def read_header(fh: BinaryIO, source: str) -> SparseLayout:
    """Parse and sanity-check the file header; leaves `fh` at the first chunk."""
    head = fh.read(FILE_HEADER.size)
    if len(head) < FILE_HEADER.size:
        raise _bad(source, "truncated sparse header")
    magic, major, _minor, hdr_sz, chunk_hdr_sz, blk, total, chunks, _crc = \
        FILE_HEADER.unpack(head)
    if magic != SPARSE_MAGIC:
        raise _bad(source, "no sparse magic")
    if (major != 1 or hdr_sz < FILE_HEADER.size or chunk_hdr_sz < CHUNK_HEADER.size
            or blk == 0 or blk % 4 or blk > MAX_BLOCK_SIZE or blk * total > MAX_EXPANDED):
        raise _bad(source, f"unsupported sparse header (version {major}, header {hdr_sz}, "
                           f"chunk header {chunk_hdr_sz}, block size {blk}, blocks {total})")
    fh.seek(hdr_sz - FILE_HEADER.size, 1)
    return SparseLayout(block_size=blk, total_blocks=total, chunks=chunks,
                        chunk_header_size=chunk_hdr_sz)


def _copy_exact(src: BinaryIO, dst: BinaryIO, n: int, source: str) -> None:
    """Copy `n` bytes from `src`'s position to `dst`'s: in the kernel where it can
    (copy_file_range with explicit offsets), else through a bounded buffer."""
    if hasattr(os, "copy_file_range"):
        dst.flush()
        s_off, d_off = src.tell(), dst.tell()
        try:
            while n:
                k = os.copy_file_range(src.fileno(), dst.fileno(), min(n, KERNEL_STEP),
                                       s_off, d_off)
                if k == 0:
                    raise _bad(source, "truncated: a RAW chunk ends early")
                s_off, d_off, n = s_off + k, d_off + k, n - k
        except OSError:
            pass  # not supported here: the rest goes through Python below
        src.seek(s_off)
        dst.seek(d_off)
    while n:
        data = src.read(min(n, 4 * 1024 * 1024))
        if not data:
            raise _bad(source, "truncated: a RAW chunk ends early")
        dst.write(data)
        n -= len(data)


def _chunks(fh: BinaryIO, layout: SparseLayout, name: str
            ) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, first block, block count, FILL pattern) per chunk, every size checked.

    For RAW chunks the caller must read exactly count × block size bytes before the next.
    """
    chdr = layout.chunk_header_size
    blk = layout.block_size
    pos = 0
    for _ in range(layout.chunks):
        raw = fh.read(chdr)
        if len(raw) < chdr:
            raise _bad(name, "truncated chunk header")
        ctype, _res, csz, total_sz = CHUNK_HEADER.unpack_from(raw)
        if pos + csz > layout.total_blocks:
            raise _bad(name, "chunks hold more blocks than the header says")
        body = total_sz - chdr
        pattern = b""
        if ctype == CHUNK_RAW:
            if body != csz * blk:
                raise _bad(name, "RAW chunk size does not match its block count")
        elif ctype == CHUNK_FILL:
            if body != 4:
                raise _bad(name, "FILL chunk without a 4-byte pattern")
            pattern = fh.read(4)
            if len(pattern) < 4:
                raise _bad(name, "truncated FILL chunk")
        elif ctype == CHUNK_DONT_CARE:
            if body != 0:
                raise _bad(name, "DONT_CARE chunk with a body")
        elif ctype == CHUNK_CRC32:
            if body != 4 or csz != 0:
                raise _bad(name, "malformed CRC32 chunk")
            fh.read(4)
        else:
            raise _bad(name, f"unknown chunk type 0x{ctype:04X}")
        yield ctype, pos, csz, pattern
        pos += csz
    if pos != layout.total_blocks:
        raise _bad(name, f"chunks cover {pos} of {layout.total_blocks} blocks")


def _fill_unit(pattern: bytes, blk: int, blocks: int = IO_BLOCKS) -> bytes:
    """`pattern` repeated over min(blocks, IO_BLOCKS) blocks: one reusable piece per chunk,
    never more than 1 MiB at 4 KiB blocks (a 1-block FILL gets a 1-block piece)."""
    return pattern * (blk * min(blocks, IO_BLOCKS) // 4)


def unsparse(src: Path, dst: Path, reporter: Reporter | None = None) -> SparseLayout:
    """Expand sparse `src` into raw `dst`; DONT_CARE runs and zero FILLs become holes
    (zeros when read, no disk used).

    Every chunk is checked against its declared sizes and the block total, so a hostile
    file is refused before it can make us write past the image's expanded size.
    """
    rep = reporter or Reporter()
    name = src.name
    try:
        with src.open("rb") as fh, dst.open("wb") as out:
            layout = read_header(fh, name)
            blk = layout.block_size
            rep.start("unsparse", f"expanding {name}", total=layout.expanded_size)
            for ctype, pos, csz, pattern in _chunks(fh, layout, name):
                if ctype == CHUNK_RAW:
                    out.seek(pos * blk)
                    _copy_exact(fh, out, csz * blk, name)
                elif ctype == CHUNK_FILL and pattern == b"\x00\x00\x00\x00":
                    pass  # a hole in the fresh file reads as zeros
                elif ctype == CHUNK_FILL:
                    out.seek(pos * blk)
                    unit = _fill_unit(pattern, blk)
                    left = csz
                    while left:
                        n = min(left, IO_BLOCKS)
                        out.write(unit[:n * blk])
                        left -= n
                elif ctype == CHUNK_DONT_CARE and csz:
                    if layout.dont_care and layout.dont_care[-1][1] == pos:
                        layout.dont_care[-1] = (layout.dont_care[-1][0], pos + csz)
                    else:
                        layout.dont_care.append((pos, pos + csz))
                rep.update("unsparse", (pos + csz) * blk)
            out.truncate(layout.expanded_size)
            rep.end("unsparse")
    except OSError as exc:
        raise DiskError(f"cannot expand {src} into {dst}: {exc.strerror or exc}",
                        hint="check free disk space and permissions") from exc
    return layout


def _in_ranges(ranges: Ranges, start: int, n: int) -> np.ndarray:
    """Boolean mask over blocks start..start+n: inside one of the sorted `ranges`."""
    mask = np.zeros(n, dtype=bool)
    for a, b in ranges:
        if b <= start:
            continue
        if a >= start + n:
            break
        mask[max(a, start) - start:min(b, start + n) - start] = True
    return mask


def intersect(a: Ranges, b: Ranges) -> Ranges:
    """Intersection of two sorted lists of [start, end) ranges."""
    out: Ranges = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


class _ChunkWriter:
    """Appends chunks, merging runs of one kind; RAW headers are patched when a run ends."""

    def __init__(self, out: BinaryIO, blk: int) -> None:
        self.out = out
        self.blk = blk
        self.chunks = 0
        self.kind: int | None = None
        self.fill: bytes = b""
        self.run = 0
        self.raw_header_at = 0

    def _close(self) -> None:
        if self.kind is None or self.run == 0:
            self.kind = None
            return
        if self.kind == CHUNK_RAW:
            end = self.out.tell()
            self.out.seek(self.raw_header_at)
            self.out.write(CHUNK_HEADER.pack(CHUNK_RAW, 0, self.run,
                                             CHUNK_HEADER.size + self.run * self.blk))
            self.out.seek(end)
        elif self.kind == CHUNK_FILL:
            self.out.write(CHUNK_HEADER.pack(CHUNK_FILL, 0, self.run, CHUNK_HEADER.size + 4)
                           + self.fill)
        else:
            self.out.write(CHUNK_HEADER.pack(CHUNK_DONT_CARE, 0, self.run, CHUNK_HEADER.size))
        self.chunks += 1
        self.kind = None
        self.run = 0

    def add(self, kind: int, blocks: int, data: memoryview | bytes = b"",
            fill: bytes = b"") -> None:
        """`blocks` blocks of `kind` (`data` holds them for RAW, `fill` the FILL word)."""
        if kind != self.kind or (kind == CHUNK_FILL and fill != self.fill):
            self._close()
            self.kind, self.fill = kind, fill
            if kind == CHUNK_RAW:
                self.raw_header_at = self.out.tell()
                self.out.write(b"\x00" * CHUNK_HEADER.size)
        if kind == CHUNK_RAW:
            self.out.write(data)
        self.run += blocks

    def finish(self) -> int:
        self._close()
        return self.chunks


def resparse(src: Path, dst: Path, block_size: int, dont_care: Ranges | None = None,
             reporter: Reporter | None = None, digest: hashlib._Hash | None = None) -> int:
    """Pack raw `src` into sparse `dst`; returns the chunk count.

    `dont_care`: block ranges that may be left out (the caller passes original DONT_CARE ∩
    free now). The raw size must be a whole number of blocks. `digest` (e.g. a sha256) is fed
    every raw byte read, so a caller can check the packed file without reading `src` again.
    Blocks are classified with numpy per 1 MiB and written as runs.
    """
    rep = reporter or Reporter()
    skip = dont_care or []
    words = block_size // 4
    try:
        size = src.stat().st_size
        if size % block_size:
            raise FirmwareFormatError(f"{src.name} is {size} bytes: not a whole number of "
                                      f"{block_size}-byte blocks",
                                      hint="this raw image cannot be packed as sparse")
        total = size // block_size
        rep.start("resparse", f"packing {dst.name}", total=size)
        with src.open("rb") as fh, dst.open("wb") as out:
            out.write(b"\x00" * FILE_HEADER.size)
            writer = _ChunkWriter(out, block_size)
            buf = bytearray(IO_BLOCKS * block_size)
            view = memoryview(buf)
            pos = 0
            while pos < total:
                n = min(IO_BLOCKS, total - pos)
                got = fh.readinto(view[:n * block_size])
                if got != n * block_size:
                    raise DiskError(f"{src} shrank while being packed",
                                    hint="do not change the image while romkit works on it")
                arr = np.frombuffer(buf, dtype="<u4", count=n * words).reshape(n, words)
                uniform = (arr == arr[:, :1]).all(axis=1)
                skipped = _in_ranges(skip, pos, n)
                fills = arr[:, 0]
                kinds = np.where(skipped & uniform & (fills == 0), CHUNK_DONT_CARE,
                                 np.where(uniform, CHUNK_FILL, CHUNK_RAW))
                change = np.ones(n, dtype=bool)  # a new run starts: kind or FILL word changes
                change[1:] = (kinds[1:] != kinds[:-1]) | (
                    (kinds[1:] == CHUNK_FILL) & (fills[1:] != fills[:-1]))
                starts = np.flatnonzero(change).tolist()
                for a, b in zip(starts, [*starts[1:], n], strict=True):
                    kind = int(kinds[a])
                    writer.add(kind, b - a, view[a * block_size:b * block_size]
                               if kind == CHUNK_RAW else b"",
                               struct.pack("<I", int(fills[a])) if kind == CHUNK_FILL else b"")
                if digest is not None:
                    digest.update(view[:n * block_size])
                pos += n
                rep.update("resparse", pos * block_size)
            chunks = writer.finish()
            out.seek(0)
            out.write(FILE_HEADER.pack(SPARSE_MAGIC, 1, 0, FILE_HEADER.size, CHUNK_HEADER.size,
                                       block_size, total, chunks, 0))
        rep.end("resparse")
    except OSError as exc:
        raise DiskError(f"cannot pack {src} into {dst}: {exc.strerror or exc}",
                        hint="check free disk space and permissions") from exc
    return chunks


def iter_expanded(fh: BinaryIO, name: str) -> Iterator[bytes]:
    """The expanded bytes of the sparse image open in `fh` (at its start), in pieces of at
    most IO_BLOCKS blocks: RAW data as stored, FILL as its pattern, DONT_CARE as zeros.

    Constant memory whatever the image: one piece at a time, the zero and FILL pieces built
    once per chunk. Every chunk is checked by the same walk `unsparse` uses, so the bytes
    yielded always add up to exactly the header's expanded size or a FirmwareFormatError is
    raised; the caller reads `fh` through this generator only.
    """
    layout = read_header(fh, name)
    blk = layout.block_size
    zeros = b""
    for ctype, _pos, csz, pattern in _chunks(fh, layout, name):
        if ctype == CHUNK_RAW:
            left = csz * blk
            while left:
                data = fh.read(min(left, IO_BLOCKS * blk))
                if not data:
                    raise _bad(name, "truncated: a RAW chunk ends early")
                left -= len(data)
                yield data
            continue
        if not csz:
            continue
        if ctype == CHUNK_FILL and pattern != b"\x00\x00\x00\x00":
            unit = _fill_unit(pattern, blk, csz)
        else:  # DONT_CARE and zero FILL: zeros, one shared piece
            if len(zeros) < min(csz, IO_BLOCKS) * blk:
                zeros = bytes(min(csz, IO_BLOCKS) * blk)
            unit = zeros
        per = len(unit) // blk
        left = csz
        while left:
            n = min(left, per)
            yield unit if n == per else unit[:n * blk]
            left -= n


def expanded_sha256(path: Path) -> str:
    """sha256 of what a sparse image writes (DONT_CARE read as zeros), in constant memory.

    Used to check a packed image against the raw one it came from without a second file.
    """
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for piece in iter_expanded(fh, path.name):
                h.update(piece)
    except OSError as exc:
        raise DiskError(f"cannot read {path}: {exc.strerror or exc}",
                        hint="check the file and its permissions") from exc
    return h.hexdigest()
