"""`romkit prepare`: the forum's hand edits to a firmware folder as one safe, reversible plan.

What people do by hand - "put the 2014 preloader in the ROM folder and delete checksum.ini",
"rename modem.img to modem_1_3g_n.img" - is easy to get subtly wrong (wrong chip's
preloader, half-renamed modem set, a checksum.ini that no longer matches) and impossible to
take back. Here every change is first a `PreparePlan` of steps (which file, from which bytes
to which, why), shown by `--dry-run`. Applying it:

1. rolls back a prepare that died mid-way (its record still says "applying"), so the plan is
   made from the folder as it was before that attempt,
2. checks the folder still is what the plan saw (hashes),
3. copies every file it will replace or remove into a prepare record
   `<DIR>/.romkit/prepare/<timestamp>/files/`,
4. writes the record's `manifest.json` (sha256 and mode of everything before, sha256 after)
   atomically with state "applying" - a record without a manifest is incomplete and ignored,
5. changes the files, each through `romkit.fsutil` (temp file + rename, mode kept); if one
   step fails, the steps already done are put back and the record is dropped,
6. rewrites the manifest as "done", then validates the folder (`Firmware.validate()`).
`undo_last` restores the newest record byte for byte and mode for mode (checked by hash) and
marks it undone. A plan whose files already hold the wanted bytes is empty, so preparing twice
is a no-op - but never after a crash, since step 1 undoes the half-done attempt first.
"""

from romkit.prepare.apply import apply_plan
from romkit.prepare.checksum_ini import update_checksum_text
from romkit.prepare.models import (
    Action,
    ModemChange,
    PartInfo,
    PlanStep,
    PreloaderChange,
    PrepareConflictError,
    PreparePlan,
    PrepareRequest,
    PrepareResult,
    RestoredFile,
    StepKind,
    UndoResult,
)
from romkit.prepare.modem import MODEM_DIR, MODEM_README, SEARCH_CHUNK, decide_naming
from romkit.prepare.plan import plan_prepare
from romkit.prepare.preloader import load_preloader_source
from romkit.prepare.record import (
    MANIFEST,
    MANIFEST_FORMAT,
    MAX_MANIFEST_BYTES,
    RECORD_DIR,
    RecordManifest,
    RecordStep,
    parse_manifest,
)
from romkit.prepare.run import prepare
from romkit.prepare.undo import undo_last

__all__ = [
    "MANIFEST",
    "MANIFEST_FORMAT",
    "MAX_MANIFEST_BYTES",
    "MODEM_DIR",
    "MODEM_README",
    "RECORD_DIR",
    "SEARCH_CHUNK",
    "Action",
    "ModemChange",
    "PartInfo",
    "PlanStep",
    "PreloaderChange",
    "PrepareConflictError",
    "PreparePlan",
    "PrepareRequest",
    "PrepareResult",
    "RecordManifest",
    "RecordStep",
    "RestoredFile",
    "StepKind",
    "UndoResult",
    "apply_plan",
    "decide_naming",
    "load_preloader_source",
    "parse_manifest",
    "plan_prepare",
    "prepare",
    "undo_last",
    "update_checksum_text",
]
