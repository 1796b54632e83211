"""Undo: `undo_last` restores the newest record that is not undone yet, byte for byte and
checked by hash (and with each file's old permission bits), refusing when a file was edited
after that prepare. `rollback_interrupted` does the same for a record whose prepare died
mid-way (its manifest still says "applying"); every prepare and undo calls it first.
"""

from __future__ import annotations

from pathlib import Path

from romkit.errors import UsageError
from romkit.firmware.package import Firmware
from romkit.fsutil import file_mode, remove_file, set_mode, stale_temps
from romkit.prepare.context import _load_folder
from romkit.prepare.files import _os_error, _sha
from romkit.prepare.models import PrepareConflictError, RestoredFile, UndoResult
from romkit.prepare.record import (
    RecordManifest,
    RecordStep,
    _mark_undone,
    _records,
    _restore_step,
)
from romkit.progress import ProgressCallback, Reporter


def undo_last(folder: Path | str | None, *, dry_run: bool = False,
              on_progress: ProgressCallback | None = None) -> UndoResult:
    """Put back the files of the newest record that is not undone yet, checked by hash.

    An interrupted prepare is the newest such record, so after a crash one undo returns the
    folder to where it was before that prepare. Refused (nothing changed) when a file was
    edited after that prepare: undoing would lose the edit, so the user decides.
    """
    root = _load_folder(Path(folder) if folder is not None else None).folder
    live = [(rec, man) for rec, man in _records(root) if man.undone is None]
    if not live:
        raise UsageError(f"no prepare to undo in {root}",
                         hint="`romkit prepare` keeps records in .romkit/prepare/; "
                              "there is none that is not undone")
    rec, man = live[-1]
    result = _undo_record(root, rec, man, dry_run=dry_run, rep=Reporter(on_progress))
    if not dry_run:
        result.validation = Firmware.load(root).validate(on_progress=on_progress)
    return result


def rollback_interrupted(root: Path, *, dry_run: bool = False,
                         on_progress: ProgressCallback | None = None) -> UndoResult | None:
    """Roll back the prepare that died mid-way (a record still "applying"), if there is one.

    Rolling back rather than finishing it: the backups to go back are on disk, while the new
    bytes (a downloaded preloader, a regenerated checksum.ini) would have to be produced
    again, and the rerun may ask for something else. The caller then plans from the original
    folder, so a rerun never sees "nothing to do" in a half-prepared folder.
    """
    live = [(rec, man) for rec, man in _records(root) if man.undone is None]
    if not live or live[-1][1].state != "applying":
        return None
    rec, man = live[-1]
    rep = Reporter(on_progress)
    rep.warning(f"the prepare of {man.created} was interrupted; "
                f"{'would put' if dry_run else 'putting'} its files back first")
    return _undo_record(root, rec, man, dry_run=dry_run, rep=rep, interrupted=True)


def _undo_record(root: Path, rec: Path, man: RecordManifest, *, dry_run: bool, rep: Reporter,
                 interrupted: bool = False) -> UndoResult:
    result = UndoResult(folder=root, record=rec, created=man.created, dry_run=dry_run,
                        interrupted=interrupted)
    plan: list[tuple[RecordStep, str]] = []
    for step in reversed(man.steps):
        path = root / step.path
        now = _sha(path)
        if now == step.before_sha256:
            result.files.append(RestoredFile(path=step.path, action="already", sha256=now))
            if (not dry_run and now is not None and step.before_mode is not None
                    and file_mode(path) != step.before_mode):
                set_mode(path, step.before_mode)
            continue
        if now != step.after_sha256:
            raise PrepareConflictError(
                f"{step.path} was changed after the prepare of {man.created}; undo would lose "
                "that change", hint="put the file back as prepare left it, or restore it by hand "
                f"from {rec / 'files'}")
        if step.before_sha256 is not None:
            if step.backup is None or _sha(rec / step.backup) != step.before_sha256:
                raise PrepareConflictError(
                    f"the backup of {step.path} in {rec.name} is missing or damaged",
                    hint="restore the file from the firmware archive")
            plan.append((step, "restored"))
        else:
            plan.append((step, "removed"))
    for step, action in plan:
        if not dry_run:
            rep.info(f"undo: {action} {step.path}")
            try:
                _restore_step(root, rec, step)
            except OSError as exc:
                raise _os_error(exc, root / step.path, "restore") from exc
            if _sha(root / step.path) != step.before_sha256:
                raise PrepareConflictError(f"{step.path} does not match its backup after "
                                           "restoring", hint="check the disk; restore by hand "
                                                             f"from {rec / 'files'}")
        result.files.append(RestoredFile(path=step.path, action=action,  # type: ignore[arg-type]
                                         sha256=step.before_sha256))
    if not dry_run:
        # A kill inside an atomic write (of the prepare or of an undo) leaves its temp file
        # beside the target.
        for step in man.steps:
            for tmp in stale_temps(root / step.path):
                remove_file(tmp)
    removed = {root / step.path for step, action in plan if action == "removed"}
    for rel in reversed(man.created_dirs):
        d = root / rel
        if not d.is_dir():
            continue
        if dry_run:
            if not set(d.rglob("*")) - removed:
                result.removed_dirs.append(rel)
            continue
        try:
            d.rmdir()
        except OSError:
            continue  # not empty: the user put files of their own there; keep them
        result.removed_dirs.append(rel)
    if not dry_run:
        _mark_undone(rec, man)
    return result
