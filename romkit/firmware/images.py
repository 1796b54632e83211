"""Which file of a firmware folder feeds which partition, the way SP Flash Tool decides it.

V1.1 scatters name the file (`file_name`). Old MT6589 scatters name nothing: SP Flash Tool
auto-loads files from the scatter's folder by a fixed table of name prefixes
(SPFT3 `image_map.xml`, reference §1a). We apply the same table, case-insensitively, and
refuse to guess for partitions outside it (Lenovo's `PRELOAD`): those are reported as
"no image rule" so a human decides, exactly as SP Flash Tool leaves their row empty.

Also here: Android sparse image detection, because what must fit a partition is the
*expanded* size, not the size of the file on disk.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from romkit.errors import FirmwareFormatError
from romkit.firmware.scatter import Layout, Partition

SPARSE_MAGIC = 0xED26FF3A
SPARSE_HEADER = struct.Struct("<IHHHHIIII")  # magic, major, minor, hdr sz, chunk hdr sz, blk …

# (partition names, file name prefixes) — SPFT3 output/image_map.xml.
PREFIX_RULES: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = (
    (frozenset({"PRELOADER"}), ("preloader",)),
    (frozenset({"MBR"}), ("MBR",)),
    (frozenset({"EBR1"}), ("EBR1",)),
    (frozenset({"EBR2"}), ("EBR2",)),
    (frozenset({"UBOOT", "LK"}), ("lk", "uboot", "u-boot")),
    (frozenset({"BOOTIMG", "BOOT"}), ("boot",)),
    (frozenset({"RECOVERY"}), ("recovery",)),
    (frozenset({"SEC_RO", "SECRO"}), ("secro",)),
    (frozenset({"LOGO"}), ("logo",)),
    (frozenset({"ANDROID", "SYSTEM"}), ("system",)),
    (frozenset({"CACHE"}), ("cache",)),
    (frozenset({"USRDATA", "USERDATA"}), ("userdata",)),
    (frozenset({"FAT"}), ("fat",)),
    (frozenset({"DSP_BL"}), ("DSP_BL",)),
    *((frozenset({f"CUSTPACK{n}"}), (f"custpack{n}",)) for n in range(1, 5)),
)
_SKIP_NONSECURE = frozenset({"BOOTIMG", "BOOT", "RECOVERY"})
# Files that sit in firmware folders but are never partition images.
_NOT_IMAGES = (".txt", ".ini", ".xml", ".bak", ".orig", ".log", ".md5", ".sha1", ".sha256",
               ".zip", ".7z", ".rar", ".pdf", ".htm", ".html", ".exe", ".dll", ".tmp", ".json")

RuleKind = Literal["file_name", "prefix", "no-image-rule", "not-downloaded", "marker"]


class ImageBinding(BaseModel):
    """The image chosen for one partition, or why there is none."""

    partition: Partition
    path: Path | None
    rule: RuleKind
    reason: str
    alternatives: list[Path] = Field(default_factory=list)  # other files the rule matched


class SparseHeader(BaseModel):
    """Android sparse image header (only what romkit needs: the expanded size)."""

    major: int
    minor: int
    block_size: int
    total_blocks: int
    total_chunks: int

    @property
    def expanded_size(self) -> int:
        return self.block_size * self.total_blocks


class ImageInfo(BaseModel):
    path: Path
    stored_size: int
    sparse: SparseHeader | None = None

    @property
    def expanded_size(self) -> int:
        """Bytes the image occupies once written: what must fit the partition."""
        return self.sparse.expanded_size if self.sparse else self.stored_size


def parse_sparse_header(data: bytes, source: str = "") -> SparseHeader | None:
    """The sparse header at the start of `data`, None if it is not a sparse image.

    A file that has the magic but a broken header is an error rather than "not sparse": writing
    it raw would put a corrupt sparse stream on the phone.
    """
    if len(data) < 4 or struct.unpack_from("<I", data)[0] != SPARSE_MAGIC:
        return None
    hint = "the sparse image is damaged; re-extract the firmware archive"
    if len(data) < SPARSE_HEADER.size:
        raise FirmwareFormatError(f"{source or 'image'}: truncated sparse image header",
                                  hint=hint)
    _m, major, minor, hdr, chunk_hdr, blk, total, chunks, _crc = SPARSE_HEADER.unpack_from(data)
    if major != 1 or hdr < SPARSE_HEADER.size or chunk_hdr < 12 or blk == 0 or blk % 4:
        raise FirmwareFormatError(
            f"{source or 'image'}: bad sparse header (version {major}.{minor}, "
            f"header {hdr}, chunk header {chunk_hdr}, block size {blk})", hint=hint)
    return SparseHeader(major=major, minor=minor, block_size=blk, total_blocks=total,
                        total_chunks=chunks)


def read_image_info(path: Path) -> ImageInfo:
    """Size on disk and, for sparse images, the header giving the expanded size."""
    try:
        with path.open("rb") as fh:
            head = fh.read(SPARSE_HEADER.size)
        size = path.stat().st_size
    except OSError as exc:
        raise FirmwareFormatError(f"cannot read image {path}: {exc.strerror or exc}",
                                  hint="check the file's permissions", spft_code=5007) from exc
    return ImageInfo(path=path, stored_size=size, sparse=parse_sparse_header(head, str(path)))


def rule_for(name: str) -> tuple[str, ...] | None:
    """File-name prefixes SP Flash Tool loads for an old-format partition, None if none."""
    upper = name.upper()
    for names, prefixes in PREFIX_RULES:
        if upper in names:
            return prefixes
    return None


def _candidates(folder: Path, exclude: set[str]) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [p for p in entries
            if p.is_file() and not p.name.startswith(".") and p.name not in exclude
            and not p.name.lower().endswith(_NOT_IMAGES)]


def _by_prefix(part: Partition, files: list[Path]) -> ImageBinding:
    prefixes = rule_for(part.name)
    if prefixes is None:
        return ImageBinding(partition=part, path=None, rule="no-image-rule",
                            reason=f"SP Flash Tool has no file rule for {part.name}; "
                                   "it is not written unless an image is chosen by hand")
    low = tuple(p.lower() for p in prefixes)
    hits = [f for f in files if f.name.lower().startswith(low)]
    if part.name.upper() in _SKIP_NONSECURE:
        hits = [f for f in hits if not f.stem.lower().endswith("nonsecure")]
    if not hits:
        return ImageBinding(partition=part, path=None, rule="prefix",
                            reason=f"no file starting with {' / '.join(prefixes)}")
    # Prefer the plain name (boot.img over boot-debug.img), then the shortest.
    hits.sort(key=lambda f: (f.stem.lower() not in low, len(f.name), f.name))
    return ImageBinding(partition=part, path=hits[0], rule="prefix",
                        reason=f"SP Flash Tool prefix rule: {' / '.join(prefixes)}",
                        alternatives=hits[1:])


def _by_file_name(part: Partition, folder: Path, files: list[Path]) -> ImageBinding:
    if part.file_name is None:
        return ImageBinding(partition=part, path=None, rule="file_name",
                            reason="the scatter names no file (file_name: NONE)")
    exact = folder / part.file_name
    if exact.is_file():
        return ImageBinding(partition=part, path=exact, rule="file_name",
                            reason=f"file_name: {part.file_name}")
    folded = [f for f in files if f.name.lower() == part.file_name.lower()]
    if len(folded) == 1:
        return ImageBinding(partition=part, path=folded[0], rule="file_name",
                            reason=f"file_name: {part.file_name} (case differs)")
    return ImageBinding(partition=part, path=None, rule="file_name",
                        reason=f"{part.file_name} is not in the folder")


def map_images(folder: Path, layout: Layout, *, exclude: set[str] | None = None
               ) -> list[ImageBinding]:
    """One binding per partition, in scatter order."""
    skip = set(exclude or ())
    if layout.source:
        skip.add(Path(layout.source).name)
    files = _candidates(folder, skip)
    out: list[ImageBinding] = []
    for part in layout.partitions:
        if part.is_marker:
            out.append(ImageBinding(partition=part, path=None, rule="marker",
                                    reason="pool-size marker, not a partition"))
        elif not part.is_download:
            out.append(ImageBinding(partition=part, path=None, rule="not-downloaded",
                                    reason="never downloaded (__NODL_ / is_download: false)"))
        elif layout.format != "old":
            out.append(_by_file_name(part, folder, files))
        else:
            out.append(_by_prefix(part, files))
    return out
