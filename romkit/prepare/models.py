"""What `romkit prepare` is asked, plans and reports: the request, the plan and its steps,
the preloader/modem change summaries, the prepare and undo results, and the conflict error
raised when the folder no longer matches a plan or record. Pure data, imported by every other
module of the package and importing none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, Field, PrivateAttr, computed_field, model_validator

from romkit.errors import EXIT_REFUSED, RomkitError, UsageError
from romkit.firmware import modem as md
from romkit.firmware.package import ValidationReport
from romkit.firmware.preloader import EmiEntry
from romkit.sysimg.modemset import ModemInstall

StepKind = Literal["preloader", "checksum", "modem", "readme"]
Action = Literal["create", "replace", "remove"]


class PrepareConflictError(RomkitError):
    """The folder (or a source file) changed between planning and doing, or since a record."""

    exit_code = EXIT_REFUSED
    default_hint = "run `romkit prepare` again so the plan matches the folder as it is now"



class PrepareRequest(BaseModel):
    """Everything `romkit prepare` was asked to do."""

    folder: Path | None = None
    device_year: Literal[2013, 2014] | None = None
    preloader: Path | None = None
    modem: Path | None = None
    modem_naming: Literal["auto", "plain", "1_3g_n"] = "auto"
    drop_checksum: bool = False
    dry_run: bool = False
    undo: bool = False
    build: str | None = None
    device: str | None = None

    @classmethod
    def from_options(cls, **options: object) -> PrepareRequest:
        """Build a request from command-line values; a bad combination is a UsageError."""
        try:
            return cls.model_validate(options)
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(x) for x in err.get("loc", ()))
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            raise UsageError(f"{field + ': ' if field else ''}{msg}",
                             hint="see `romkit prepare --help`") from exc

    @model_validator(mode="after")
    def _consistent(self) -> PrepareRequest:
        if self.undo and (self.device_year or self.preloader or self.modem
                          or self.drop_checksum or self.modem_naming != "auto"):
            raise ValueError("--undo restores the last record and takes no other change")
        if self.device_year == 2013 and self.preloader is not None:
            raise ValueError("--device-year 2013 keeps the build's own preloader; "
                             "do not pass --preloader with it")
        return self


class PartInfo(BaseModel):
    """One memory part a preloader lists."""

    part: str
    id: str
    type_name: str
    fallback: bool

    @classmethod
    def of(cls, entry: EmiEntry) -> PartInfo:
        return cls(part=entry.part, id=entry.id.hex(), type_name=entry.type_name,
                   fallback=entry.is_fallback)


class PreloaderChange(BaseModel):
    """What swapping the preloader means for the memory parts the phone can boot with."""

    file: str
    source: str
    current_parts: list[PartInfo] | None = None  # None: the current file is missing/unreadable
    current_note: str | None = None
    new_parts: list[PartInfo] = Field(default_factory=list)
    added: list[PartInfo] = Field(default_factory=list)
    dropped: list[PartInfo] = Field(default_factory=list)
    new_project: str = ""
    new_emi_version: int | None = None
    unchanged: bool = False


class ModemChange(BaseModel):
    """How a modem set is named for the target build, and how that naming was chosen."""

    source_dir: str
    output_dir: str
    naming: str
    how: str
    header: md.ModemHeader | None = None
    files: list[md.Rename] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)
    install: ModemInstall | None = None  # set when the files went into the system image


class PlanStep(BaseModel):
    """One file change: create, replace or remove `path` (relative to the folder)."""

    kind: StepKind
    action: Action
    path: str
    reason: str
    source: str | None = None
    before_sha256: str | None = None
    before_size: int | None = None
    after_sha256: str | None = None
    after_size: int | None = None
    _data: bytes | None = PrivateAttr(default=None)
    _source_path: Path | None = PrivateAttr(default=None)


class PreparePlan(BaseModel):
    folder: Path
    scatter: Path
    platform: str | None
    dry_run: bool = False
    steps: list[PlanStep] = Field(default_factory=list)
    preloader: PreloaderChange | None = None
    modem: ModemChange | None = None
    checksum_file: str | None = None
    created_dirs: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    request: PrepareRequest

    @computed_field  # type: ignore[prop-decorator]
    @property
    def nothing_to_do(self) -> bool:
        return not self.steps


class RestoredFile(BaseModel):
    path: str
    action: Literal["restored", "removed", "already"]
    sha256: str | None = None


class UndoResult(BaseModel):
    folder: Path
    record: Path
    created: str
    dry_run: bool
    files: list[RestoredFile] = Field(default_factory=list)
    removed_dirs: list[str] = Field(default_factory=list)
    validation: ValidationReport | None = None
    interrupted: bool = False  # the record's prepare had died mid-way (rolled back)


class PrepareResult(BaseModel):
    folder: Path
    dry_run: bool
    applied: bool = False
    plan: PreparePlan | None = None
    record: Path | None = None
    validation: ValidationReport | None = None
    undo: UndoResult | None = None
    recovered: UndoResult | None = None  # an interrupted prepare put back before this one
