"""Per-phone run journal: what an interrupted flash already finished, so a re-run can resume.

A flash over a flaky cable may stop half-way. The journal (one JSON file per phone CID in the
data dir, rewritten atomically after every verified partition) tells the next run of the
same command which partitions were already verified — matched by partition, place and image
sha256 — and, after an interrupted firmware upgrade or format, that the phone's calibration
and partition table are erased and which backup set (taken *before* the format) holds them.

The journal is a hint, never proof: another tool may have written the phone since. A
partition the journal lists is read back from the phone and compared before it is skipped;
formats are always redone. Rules that keep it honest: an entry is dropped (and the journal
saved) before any write or format touches its range; entries are only used by a re-run of
the same selection (`selection`); a run that completes marks the journal complete, after
which it no longer affects the next run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError

from romkit import paths
from romkit.fsutil import atomic_write_text


class VerifiedWrite(BaseModel):
    partition: str
    region: str
    offset: int = Field(ge=0)
    length: int = Field(ge=0)
    sha256: str
    verified_at: str = ""

    def overlaps(self, region: str, offset: int, length: int) -> bool:
        return (self.region == region and offset < self.offset + self.length
                and self.offset < offset + length)


class RunJournal(BaseModel):
    cid: str
    mode: str = ""
    selection: str = ""  # mode + chosen partitions: which command these entries belong to
    started: str = ""
    complete: bool = False
    backup_set: str | None = None
    calibration_erased: bool = False
    formatted: list[str] = Field(default_factory=list)  # "region:offset:length" keys done
    verified: list[VerifiedWrite] = Field(default_factory=list)

    # -- queries -----------------------------------------------------------------------------
    def is_verified(self, partition: str, region: str, offset: int, length: int,
                    sha256: str) -> bool:
        return any(v.partition == partition and v.region == region and v.offset == offset
                   and v.length == length and v.sha256 == sha256 for v in self.verified)

    # -- changes (each followed by save() in the engine) --------------------------------------
    def invalidate(self, region: str, offset: int, length: int) -> bool:
        """Forget entries overlapping a range about to be written; True if any was dropped."""
        keep = [v for v in self.verified if not v.overlaps(region, offset, length)]
        dropped = len(keep) != len(self.verified)
        self.verified = keep
        return dropped

    def record(self, partition: str, region: str, offset: int, length: int,
               sha256: str) -> None:
        self.invalidate(region, offset, length)
        self.verified.append(VerifiedWrite(
            partition=partition, region=region, offset=offset, length=length, sha256=sha256,
            verified_at=datetime.now(UTC).isoformat(timespec="seconds")))


def journal_path(cid: bytes) -> Path:
    return paths.data_dir() / "journal" / f"{cid.hex()}.json"


def load_journal(cid: bytes) -> RunJournal | None:
    """The unfinished journal of this phone, or None (no file, complete, or unreadable).

    An unreadable journal is treated as absent: the worst case is re-writing partitions that
    were already good, never skipping one that is not.
    """
    p = journal_path(cid)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        j = RunJournal.model_validate(data)
    except (OSError, ValueError, TypeError, RecursionError, PydanticValidationError):
        return None
    if j.complete or j.cid != cid.hex():
        return None
    return j


def new_journal(cid: bytes, mode: str) -> RunJournal:
    return RunJournal(cid=cid.hex(), mode=mode,
                      started=datetime.now(UTC).isoformat(timespec="seconds"))


def save_journal(j: RunJournal) -> None:
    p = paths.ensure_dir(paths.data_dir() / "journal") / f"{j.cid}.json"
    atomic_write_text(p, j.model_dump_json(indent=2))
