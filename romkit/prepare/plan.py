"""Planning: `plan_prepare` loads the folder and asks the preloader, checksum.ini and modem
steps for their file changes, without touching the folder.
"""

from __future__ import annotations

from romkit.errors import UsageError
from romkit.prepare.checksum_ini import _plan_checksum
from romkit.prepare.context import _Context, _load_folder
from romkit.prepare.models import PlanStep, PreparePlan, PrepareRequest
from romkit.prepare.modem import _plan_modem, merge_checksum
from romkit.prepare.preloader import _plan_preloader
from romkit.progress import ProgressCallback, Reporter


def plan_prepare(request: PrepareRequest, on_progress: ProgressCallback | None = None
                 ) -> PreparePlan:
    """Work out every file change the request needs; nothing in the folder is touched.

    (With `--device-year 2014` the catalog's preloader is downloaded into the cache so the
    plan can show which memory parts it supports.)
    """
    rep = Reporter(on_progress)
    fw = _load_folder(request.folder)
    plan = PreparePlan(folder=fw.folder, scatter=fw.scatter_path, platform=fw.layout.platform,
                       dry_run=request.dry_run, request=request)
    if request.undo:
        raise UsageError("plan_prepare does not plan an undo", hint="call undo_last(folder)")
    ctx = _Context(fw, request, rep)
    if fw.layout.platform is None:
        plan.warnings.append("the scatter names no platform: the preloader and modem cannot "
                             "be checked against the chip")
    steps: list[PlanStep] = []
    pre_step, pre_key = _plan_preloader(ctx, plan)
    changed: dict[str, tuple[str, bytes]] = {}
    if pre_step is not None and pre_key is not None and pre_step._data is not None:
        steps.append(pre_step)
        changed["PRELOADER"] = (pre_key, pre_step._data)
    modem_steps, system_sum = _plan_modem(ctx, plan)
    ck_step = _plan_checksum(ctx, plan, changed)
    if system_sum is not None:  # a 700 MB system.img is summed by streaming, not passed in
        ck_step = merge_checksum(ctx, plan, ck_step, system_sum)
    if ck_step is not None:
        steps.append(ck_step)
    steps += modem_steps
    plan.steps = steps
    if not (request.device_year or request.preloader or request.modem
            or request.drop_checksum):
        plan.notes.append("nothing was asked: pass --device-year, --preloader, --modem or "
                          "--drop-checksum")
    return plan
