"""The one call the CLI and the demo make: `prepare` plans and applies a request, shows it
only (dry run), or undoes the last prepare. Either way an interrupted earlier prepare is
rolled back first, so the plan is made from the folder as it was before that attempt.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from romkit.firmware.package import Firmware
from romkit.prepare.apply import apply_plan
from romkit.prepare.context import _load_folder
from romkit.prepare.models import PrepareConflictError, PrepareRequest, PrepareResult
from romkit.prepare.modem import discard_work
from romkit.prepare.plan import plan_prepare
from romkit.prepare.undo import rollback_interrupted, undo_last
from romkit.progress import ProgressCallback

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, one prepare at a time
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def _folder_lock(root: Path) -> Iterator[None]:
    """One prepare or undo per folder at a time: a second one would take the first one's
    record, still "applying", for an interrupted prepare and roll it back under its feet.
    The lock is on the folder itself, so nothing is created in it."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(root, os.O_RDONLY)
    except OSError:
        yield  # unreadable folder: loading it already failed or will fail with a clear error
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise PrepareConflictError(f"another romkit prepare is working on {root}",
                                       hint="wait for it to finish, then run again") from exc
        yield
    finally:
        os.close(fd)


def prepare(request: PrepareRequest, on_progress: ProgressCallback | None = None
            ) -> PrepareResult:
    """Plan and apply (or only show, with dry_run; or undo the last prepare, with undo).

    A prepare that died mid-way (kill -9, power cut) is put back first. With `undo` that
    rollback *is* the undo: the folder is then as before the interrupted prepare, and the
    record of an older, complete prepare stays for a later `--undo`.
    """
    root = _load_folder(request.folder).folder
    with _folder_lock(root):
        return _prepare_locked(root, request, on_progress)


def _prepare_locked(root: Path, request: PrepareRequest,
                    on_progress: ProgressCallback | None) -> PrepareResult:
    recovered = rollback_interrupted(root, dry_run=request.dry_run, on_progress=on_progress)
    if request.undo:
        if recovered is not None:
            if not request.dry_run:
                recovered.validation = Firmware.load(root).validate(on_progress=on_progress)
            return PrepareResult(folder=root, dry_run=request.dry_run,
                                 applied=not request.dry_run, undo=recovered,
                                 validation=recovered.validation)
        undo = undo_last(root, dry_run=request.dry_run, on_progress=on_progress)
        return PrepareResult(folder=undo.folder, dry_run=request.dry_run,
                             applied=not request.dry_run, undo=undo,
                             validation=undo.validation)
    plan = plan_prepare(request.model_copy(update={"folder": root}), on_progress)
    try:
        if recovered is not None and request.dry_run:
            plan.warnings.append(f"the prepare of {recovered.created} was interrupted: the "
                                 "real run first puts its files back, then applies a fresh plan")
        result = apply_plan(plan, on_progress)
    finally:
        discard_work(plan.folder)  # the new system.img was copied in (or not wanted)
    result.recovered = recovered
    return result
