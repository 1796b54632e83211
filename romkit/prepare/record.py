"""The prepare record on disk: `<DIR>/.romkit/prepare/<timestamp>/` with its backups and
`manifest.json`. Holds the manifest models and their hostile-input-safe parser, the walk over
complete records, restoring one step from its backup, and marking a record undone.

A record is also the journal of its prepare: the manifest is written with `state:
"applying"` before the first file changes and rewritten as `"done"` after the last one. A
record still "applying" (and not undone) therefore means the process died mid-way; the next
prepare or undo rolls it back first (see `undo.rollback_interrupted`), so no run ever builds
on a half-applied folder and one undo always reaches the state before the first attempt.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Literal

import pydantic
from pydantic import BaseModel, Field

from romkit.errors import FirmwareFormatError
from romkit.fsutil import atomic_copy, atomic_write_text, remove_file
from romkit.prepare.files import _os_error
from romkit.prepare.models import Action, StepKind

RECORD_DIR = ".romkit/prepare"
MANIFEST = "manifest.json"
MANIFEST_FORMAT: Literal["romkit-prepare-record"] = "romkit-prepare-record"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


class RecordStep(BaseModel):
    """A step as written in a record's manifest (with where its backup is)."""

    kind: StepKind
    action: Action
    path: str = Field(max_length=1024)
    reason: str = Field(default="", max_length=2000)
    before_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    before_size: int | None = Field(default=None, ge=0)
    after_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    after_size: int | None = Field(default=None, ge=0)
    backup: str | None = Field(default=None, max_length=1024)
    before_mode: int | None = Field(default=None, ge=0, le=0o7777)

    @pydantic.field_validator("path", "backup")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None:
            _check_rel(value)
        return value


class RecordManifest(BaseModel):
    format: Literal["romkit-prepare-record"] = MANIFEST_FORMAT
    version: Literal[1] = 1
    created: str = Field(max_length=64)
    folder: str = Field(max_length=4096)
    steps: list[RecordStep] = Field(max_length=10000)
    created_dirs: list[str] = Field(default_factory=list, max_length=100)
    notes: list[str] = Field(default_factory=list, max_length=1000)
    undone: str | None = None
    # Records written before this field existed were only ever written complete: "done".
    state: Literal["applying", "done"] = "done"

    @pydantic.field_validator("created_dirs")
    @classmethod
    def _dirs(cls, value: list[str]) -> list[str]:
        for item in value:
            _check_rel(item)
        return value


def _check_rel(value: str) -> None:
    """A manifest path must stay inside its folder: relative, no `..`, no drive letters."""
    p = PurePosixPath(value)
    if (value in ("", ".") or value.startswith("/") or "\\" in value or "\x00" in value
            or re.match(r"^[A-Za-z]:", value) or ".." in p.parts or value != p.as_posix()):
        raise ValueError(f"{value!r} is not a plain relative path")


def parse_manifest(data: bytes | str, source: str = MANIFEST) -> RecordManifest:
    """Parse a record manifest; anything malformed or hostile is a FirmwareFormatError."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise FirmwareFormatError(f"{source}: far too large for a prepare record manifest",
                                  hint="remove that record folder; it is not romkit's")
    try:
        return RecordManifest.model_validate_json(data)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "document"
        raise FirmwareFormatError(
            f"{source}: damaged prepare record ({where}: {err.get('msg', 'invalid')})",
            hint="remove that record folder (the files it backed up are lost for undo)"
        ) from exc


def _records(folder: Path) -> Iterator[tuple[Path, RecordManifest]]:
    """Complete records, oldest first (a folder without a manifest is incomplete)."""
    base = folder / RECORD_DIR
    if not base.is_dir():
        return
    for rec in sorted(p for p in base.iterdir() if p.is_dir()):
        man = rec / MANIFEST
        if not man.is_file():
            continue
        try:
            data = man.read_bytes()
        except OSError as exc:
            raise _os_error(exc, man, "read") from exc
        yield rec, parse_manifest(data, str(man))


def _restore_step(folder: Path, rec: Path, step: RecordStep) -> None:
    """Put one file back as it was: removed if the step created it, else copied back from its
    backup with its old permission bits, in one atomic rename."""
    path = folder / step.path
    if step.before_sha256 is None:
        remove_file(path)
        return
    assert step.backup is not None
    atomic_copy(rec / step.backup, path, perms=step.before_mode)


def _write_manifest(rec: Path, manifest: RecordManifest) -> None:
    atomic_write_text(rec / MANIFEST, manifest.model_dump_json(indent=2) + "\n")


def _mark_undone(rec: Path, manifest: RecordManifest) -> None:
    manifest.undone = datetime.now(UTC).isoformat(timespec="seconds")
    _write_manifest(rec, manifest)
