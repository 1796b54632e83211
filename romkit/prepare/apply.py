"""Applying a plan: check the folder still matches it, back up and write the record (manifest
last), change the files atomically, put everything back if a step fails, then validate.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from romkit.errors import DiskError, RomkitError, UsageError
from romkit.firmware.package import Firmware
from romkit.fsutil import atomic_copy, atomic_write_bytes, file_mode, remove_file, sha256_file
from romkit.prepare.files import _os_error, _rel, _sha
from romkit.prepare.models import PlanStep, PrepareConflictError, PreparePlan, PrepareResult
from romkit.prepare.record import (
    RECORD_DIR,
    RecordManifest,
    RecordStep,
    _restore_step,
    _write_manifest,
)
from romkit.progress import ProgressCallback, Reporter


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _check_fresh(plan: PreparePlan) -> None:
    """The folder must still hold exactly what the plan saw."""
    for step in plan.steps:
        path = plan.folder / step.path
        now = _sha(path)
        if now != step.before_sha256:
            raise PrepareConflictError(f"{step.path} changed since the plan was made")


def _make_dirs(folder: Path, rel: str, created: list[Path]) -> Path:
    """mkdir -p that remembers which folders it made (so a failure can remove them)."""
    target = folder / rel
    missing: list[Path] = []
    probe = target
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except OSError as exc:
            raise _os_error(exc, d, "create") from exc
        created.append(d)
    if not target.is_dir():
        raise DiskError(f"cannot create {target}: a file of that name is in the way",
                        hint=f"move {probe} aside and run the command again")
    return target


def _remove_dirs(dirs: list[Path]) -> None:
    for d in reversed(dirs):
        try:
            d.rmdir()
        except OSError:
            continue


def _write_step(folder: Path, step: PlanStep) -> None:
    path = folder / step.path
    if step.action == "remove":
        remove_file(path)
        return
    if step._data is not None:
        atomic_write_bytes(path, step._data)
    elif step._source_path is not None:
        atomic_copy(step._source_path, path)
    else:
        raise UsageError(f"the plan holds no content for {step.path}",
                         hint="plans cannot be applied after a JSON round trip; plan again")
    if sha256_file(path) != step.after_sha256:
        raise PrepareConflictError(f"{step.path} does not hold the planned bytes after writing "
                                   f"(its source {step.source} changed since the plan?)")


def apply_plan(plan: PreparePlan, on_progress: ProgressCallback | None = None) -> PrepareResult:
    """Back up, record, then change the files of `plan`; validate the folder afterwards."""
    rep = Reporter(on_progress)
    result = PrepareResult(folder=plan.folder, dry_run=plan.dry_run, plan=plan)
    if plan.dry_run or not plan.steps:
        return result
    _check_fresh(plan)
    created: list[Path] = []
    rec_dir: Path | None = None
    try:
        base = _make_dirs(plan.folder, RECORD_DIR, created)
        stamp = _stamp()
        rec_dir = base / stamp
        n = 1
        while rec_dir.exists():
            rec_dir = base / f"{stamp}-{n}"
            n += 1
        _make_dirs(plan.folder, _rel(plan.folder, rec_dir), created)
        entries: list[RecordStep] = []
        for i, step in enumerate(plan.steps):
            backup = None
            if step.before_sha256 is not None:
                backup = f"files/{i:03d}-{PurePosixPath(step.path).name}"
                atomic_copy(plan.folder / step.path, rec_dir / backup)
                if sha256_file(rec_dir / backup) != step.before_sha256:
                    raise PrepareConflictError(f"{step.path} changed while it was backed up")
            entries.append(RecordStep(**step.model_dump(include=set(RecordStep.model_fields)),
                                      backup=backup,
                                      before_mode=file_mode(plan.folder / step.path)))
        # "applying" until the last file is changed: a record left in that state tells the
        # next run that this prepare died mid-way and must be rolled back first.
        manifest = RecordManifest(created=stamp, folder=str(plan.folder), steps=entries,
                                  created_dirs=plan.created_dirs,
                                  notes=[*plan.notes, *plan.warnings], state="applying")
        _write_manifest(rec_dir, manifest)
    except BaseException:
        if rec_dir is not None and rec_dir.exists() and rec_dir not in created:
            shutil.rmtree(rec_dir, ignore_errors=True)
        for d in reversed(created):
            shutil.rmtree(d, ignore_errors=True)
        raise
    done: list[int] = []
    made: list[Path] = []
    try:
        for i, step in enumerate(plan.steps):
            parent = str(PurePosixPath(step.path).parent)
            if parent != ".":
                _make_dirs(plan.folder, parent, made)
            rep.info(f"{step.action} {step.path}")
            done.append(i)  # before writing: a step that fails half-way is put back too
            _write_step(plan.folder, step)
        manifest.state = "done"
        _write_manifest(rec_dir, manifest)
    except BaseException:
        for i in reversed(done):
            try:
                _restore_step(plan.folder, rec_dir, entries[i])
            except RomkitError:
                continue
        _remove_dirs(made)
        shutil.rmtree(rec_dir, ignore_errors=True)
        for d in reversed(created):
            shutil.rmtree(d, ignore_errors=True)
        raise
    result.applied = True
    result.record = rec_dir
    result.validation = Firmware.load(plan.folder).validate(on_progress=on_progress)
    return result
