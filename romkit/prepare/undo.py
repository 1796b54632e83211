"""Undo: `undo_last` restores the newest record that is not undone yet, byte for byte and
checked by hash, refusing when a file was edited after that prepare.
"""

from __future__ import annotations

from pathlib import Path

from romkit.errors import UsageError
from romkit.firmware.package import Firmware
from romkit.prepare.context import _load_folder
from romkit.prepare.files import _os_error, _sha
from romkit.prepare.models import PrepareConflictError, RestoredFile, UndoResult
from romkit.prepare.record import RecordStep, _mark_undone, _records, _restore_step
from romkit.progress import ProgressCallback, Reporter


def undo_last(folder: Path | str | None, *, dry_run: bool = False,
              on_progress: ProgressCallback | None = None) -> UndoResult:
    """Put back the files of the newest record that is not undone yet, checked by hash.

    Refused (nothing changed) when a file was edited after that prepare: undoing would lose
    the edit, so the user decides.
    """
    rep = Reporter(on_progress)
    root = _load_folder(Path(folder) if folder is not None else None).folder
    live = [(rec, man) for rec, man in _records(root) if man.undone is None]
    if not live:
        raise UsageError(f"no prepare to undo in {root}",
                         hint="`romkit prepare` keeps records in .romkit/prepare/; "
                              "there is none that is not undone")
    rec, man = live[-1]
    result = UndoResult(folder=root, record=rec, created=man.created, dry_run=dry_run)
    plan: list[tuple[RecordStep, str]] = []
    for step in reversed(man.steps):
        path = root / step.path
        now = _sha(path)
        if now == step.before_sha256:
            result.files.append(RestoredFile(path=step.path, action="already", sha256=now))
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
    if dry_run:
        return result
    _mark_undone(rec, man)
    result.validation = Firmware.load(root).validate(on_progress=on_progress)
    return result
