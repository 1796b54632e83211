"""The one call the CLI and the demo make: `prepare` plans and applies a request, shows it
only (dry run), or undoes the last prepare.
"""

from __future__ import annotations

from romkit.prepare.apply import apply_plan
from romkit.prepare.models import PrepareRequest, PrepareResult
from romkit.prepare.modem import discard_work
from romkit.prepare.plan import plan_prepare
from romkit.prepare.undo import undo_last
from romkit.progress import ProgressCallback


def prepare(request: PrepareRequest, on_progress: ProgressCallback | None = None
            ) -> PrepareResult:
    """Plan and apply (or only show, with dry_run; or undo the last prepare, with undo)."""
    if request.undo:
        undo = undo_last(request.folder, dry_run=request.dry_run, on_progress=on_progress)
        return PrepareResult(folder=undo.folder, dry_run=request.dry_run,
                             applied=not request.dry_run, undo=undo,
                             validation=undo.validation)
    plan = plan_prepare(request, on_progress)
    try:
        return apply_plan(plan, on_progress)
    finally:
        discard_work(plan.folder)  # the new system.img was copied in (or not wanted)
