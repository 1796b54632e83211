"""`Firmware`: one SP Flash Tool folder — scatter + images + checksum.ini + preloader.

`validate()` answers "would SP Flash Tool accept this folder, and would the result boot?"
before anything touches a phone. Each finding carries the SP Flash Tool error number a user
would otherwise have met (5007 missing image, 5016 image too large / overlap, 8416 checksum,
5066 bad preloader), so `romkit explain` and forum searches lead to the same place.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from romkit.errors import FirmwareFormatError, UsageError
from romkit.firmware import checksum as ck
from romkit.firmware import chips as chips_mod
from romkit.firmware.images import ImageBinding, ImageInfo, map_images, read_image_info
from romkit.firmware.scatter import Layout, Partition, find_scatter, parse_scatter
from romkit.progress import ProgressCallback

Severity = Literal["error", "warning", "info"]
GFH_FILE_INFO_MAGIC = b"MMM\x01\x38\x00"
MAX_PRELOADER_BYTES = 64 * 1024 * 1024
SEARCH_DEPTH = 3  # how deep below a given folder we look for the one holding the scatter
# EMI table version each platform's preloader carries, from the chip table (chips.json;
# docs/PROTOCOL.md: MT6589 → v10). Only chips with one known version are listed.
PLATFORM_EMI_VERSION: dict[str, int] = {
    name.upper(): chip.emi_versions[0]
    for chip in chips_mod.chips() if len(chip.emi_versions) == 1 for name in chip.names}
DA_FILE_NAMES = ("MTK_AllInOne_DA.bin", "DA_PL.bin", "DA_SWSEC.bin", "MTK_DA_V5.bin")


class NameMap(dict[str, Path]):
    """Images by partition name; lookups fall back to any capitalisation, because SP Flash
    Tool compares partition names case-insensitively (MT67xx scatters say `preloader`)."""

    def _fold(self, key: object) -> str | None:
        if isinstance(key, str):
            low = key.lower()
            return next((k for k in self.keys() if k.lower() == low), None)
        return None

    def __getitem__(self, key: str) -> Path:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        folded = self._fold(key)
        if folded is None:
            raise KeyError(key)
        return dict.__getitem__(self, folded)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or self._fold(key) is not None

    def get(self, key: str, default: Path | None = None) -> Path | None:  # type: ignore[override]
        try:
            return self[key]
        except KeyError:
            return default


class Finding(BaseModel):
    severity: Severity
    code: str  # short slug, stable for scripts: "missing-image", "checksum-mismatch", …
    message: str
    partition: str | None = None
    spft_code: int | None = None
    hint: str = ""


AddFinding = Callable[[Finding], None]


class ValidationReport(BaseModel):
    folder: Path
    scatter: Path
    findings: list[Finding] = Field(default_factory=list)
    checksums: list[ck.ChecksumResult] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]


def _is_scatter_name(path: Path) -> bool:
    low = path.name.lower()
    return "scatter" in low and low.endswith(".txt")


def locate_firmware_folder(path: Path) -> tuple[Path, Path]:
    """(folder, scatter) for a firmware folder, a scatter file, or a folder above one.

    People point at the unpacked archive root more often than at `target_bin/`; when exactly
    one folder below (up to three levels) holds a scatter, that is the one meant.
    """
    if not path.exists():
        raise UsageError(f"not found: {path}",
                         hint="pass the firmware folder (the one holding *_scatter*.txt)")
    if path.is_file():
        if _is_scatter_name(path):
            return path.parent, path
        raise UsageError(f"not a firmware folder: {path}",
                         hint="pass the folder holding *_scatter*.txt")
    try:
        return path, find_scatter(path)
    except UsageError as exc:
        if "several scatter files" in exc.message:
            raise
        found: list[Path] = []
        level = [path]
        for _ in range(SEARCH_DEPTH):
            nxt: list[Path] = []
            for d in level:
                try:
                    subdirs = sorted(p for p in d.iterdir() if p.is_dir()
                                     and not p.name.startswith("."))
                except OSError:
                    continue
                for sub in subdirs:
                    if any(_is_scatter_name(f) for f in sub.iterdir() if f.is_file()):
                        found.append(sub)
                    else:
                        nxt.append(sub)
            level = nxt
        if len(found) == 1:
            return found[0], find_scatter(found[0])
        if len(found) > 1:
            names = ", ".join(str(f.relative_to(path)) for f in found[:5])
            raise UsageError(f"several firmware folders below {path}: {names}",
                             hint="pass the one you mean") from exc
        raise


def _flash_tool_dir(folder: Path) -> Path | None:
    """A `SP_Flash_Tool*` folder next to or above the firmware (its DA lives there)."""
    for d in (folder, *list(folder.resolve().parents)[:2]):
        if d.name.lower().startswith("sp_flash_tool"):
            return d
        try:
            hits = sorted(p for p in d.iterdir()
                          if p.is_dir() and p.name.lower().startswith("sp_flash_tool"))
        except OSError:
            continue
        if hits:
            return hits[0]
    return None


class Firmware:
    """A loaded firmware folder; cheap to load (no image is read until asked)."""

    def __init__(self, folder: Path, scatter_path: Path, layout: Layout,
                 bindings: list[ImageBinding], checksum_path: Path | None,
                 flash_tool_dir: Path | None) -> None:
        self.folder = folder
        self.scatter_path = scatter_path
        self.layout = layout
        self.bindings = bindings
        self.checksum_path = checksum_path
        self.flash_tool_dir = flash_tool_dir
        self.images: NameMap = NameMap({b.partition.name: b.path for b in bindings
                                        if b.path is not None})
        self._info: dict[str, ImageInfo] = {}

    @classmethod
    def load(cls, folder: Path | str, *, scatter: Path | str | None = None,
             storage: str | None = None) -> Firmware:
        """Load a folder (or the one folder below it holding a scatter, or a scatter file);
        `storage` picks the layout of a V2.x scatter (EMMC by default)."""
        if scatter is not None:
            scatter_path = Path(scatter)
            base = Path(folder)
        else:
            base, scatter_path = locate_firmware_folder(Path(folder))
        layout = parse_scatter(scatter_path, storage=storage)
        checksum_path = ck.find_checksum_ini(base)
        bindings = map_images(base, layout, exclude={scatter_path.name})
        return cls(base, scatter_path, layout, bindings, checksum_path, _flash_tool_dir(base))

    @property
    def preloader_path(self) -> Path | None:
        part = self.layout.get("PRELOADER")  # `preloader` in MT67xx scatters
        return self.images.get(part.name) if part is not None else None

    def binding(self, name: str) -> ImageBinding | None:
        part = self.layout.get(name)
        if part is None:
            return None
        return next((b for b in self.bindings if b.partition.name == part.name), None)

    def image_info(self, name: str) -> ImageInfo | None:
        """Stored size and sparse header of a partition's image (None if it has none)."""
        part = self.layout.get(name)
        if part is None or part.name not in self.images:
            return None
        if part.name not in self._info:
            self._info[part.name] = read_image_info(self.images[part.name])
        return self._info[part.name]

    def image_size(self, name: str) -> int | None:
        """Bytes the image occupies once written (expanded size for sparse images)."""
        info = self.image_info(name)
        return info.expanded_size if info else None

    def validate(self, *, on_progress: ProgressCallback | None = None) -> ValidationReport:
        """Everything SP Flash Tool (and a booting phone) would object to, as findings."""
        report = ValidationReport(folder=self.folder, scatter=self.scatter_path)
        add = report.findings.append
        if self.layout.platform is None:
            add(Finding(severity="warning", code="platform-unknown",
                        message="the scatter names no platform (file name nor header)",
                        hint="rename it like MT6589_Android_scatter_emmc.txt"))
        for note in self.layout.skipped:
            add(Finding(severity="warning", code="scatter-item-skipped",
                        message=f"{self.scatter_path.name} {note}",
                        hint="SP Flash Tool shows no row for it either; nothing to do"))
        _check_order(self.layout, add)
        self._check_images(add)
        self._check_preloader(add)
        self._check_da(add)
        report.checksums = self._check_checksums(add, on_progress)
        return report

    # -- validation parts ---------------------------------------------------------------------
    def _check_images(self, add: AddFinding) -> None:
        for b in self.bindings:
            part = b.partition
            if b.rule in ("marker", "not-downloaded"):
                continue
            if b.path is None:
                if b.rule == "no-image-rule":
                    add(Finding(severity="warning", code="no-image-rule", partition=part.name,
                                message=b.reason,
                                hint="flash it separately if you have its image"))
                else:
                    add(Finding(severity="error", code="missing-image", partition=part.name,
                                spft_code=5007, message=f"no image for {part.name}: {b.reason}",
                                hint="re-extract the firmware archive; a file is missing"))
                continue
            if b.alternatives:
                others = ", ".join(p.name for p in b.alternatives)
                add(Finding(severity="info", code="image-alternatives", partition=part.name,
                            message=f"{part.name} uses {b.path.name}; also matching: {others}",
                            hint="remove the files you do not want flashed"))
            try:
                info = self.image_info(part.name)
            except FirmwareFormatError as exc:
                add(Finding(severity="error", code="image-unreadable", partition=part.name,
                            message=exc.message, hint=exc.hint, spft_code=exc.spft_code))
                continue
            assert info is not None
            if info.sparse is not None:
                add(Finding(severity="info", code="sparse-image", partition=part.name,
                            message=f"{b.path.name} is an Android sparse image: "
                                    f"{info.stored_size} bytes stored, "
                                    f"{info.expanded_size} bytes expanded"))
            if part.size is not None and info.expanded_size > part.size:
                add(Finding(severity="error", code="image-too-large", partition=part.name,
                            spft_code=5016,
                            message=f"{b.path.name} needs {info.expanded_size} bytes but "
                                    f"{part.name} holds {part.size}",
                            hint="this image belongs to another build or layout; "
                                 "romkit never truncates an image"))

    def _check_preloader(self, add: AddFinding) -> None:
        path = self.preloader_path
        if path is None:
            return
        try:
            size = path.stat().st_size
            if size > MAX_PRELOADER_BYTES:
                raise FirmwareFormatError(f"{path.name} is {size} bytes: far too large for a "
                                          "preloader")
            data = path.read_bytes()
        except (OSError, FirmwareFormatError) as exc:
            msg = exc.message if isinstance(exc, FirmwareFormatError) else str(exc)
            add(Finding(severity="error", code="preloader-invalid", partition="PRELOADER",
                        spft_code=5066, message=msg, hint="use the preloader of this build"))
            return
        if not data.startswith(GFH_FILE_INFO_MAGIC):
            what = ("a BOOT1 dump (EMMC_BOOT header), not a preloader file"
                    if data.startswith(b"EMMC_BOOT") else "no GFH FILE_INFO header at offset 0")
            add(Finding(severity="error", code="preloader-invalid", partition="PRELOADER",
                        spft_code=5066, message=f"{path.name} is not a preloader: {what}",
                        hint="use preloader_<project>.bin from a complete firmware package"))
            return
        from romkit.firmware.preloader import parse_preloader

        part = self.layout.get("PRELOADER")
        part_name = part.name if part is not None else "PRELOADER"

        try:
            info = parse_preloader(data)
        except FirmwareFormatError as exc:
            add(Finding(severity="error", code="preloader-invalid", partition="PRELOADER",
                        spft_code=exc.spft_code or 5066, message=f"{path.name}: {exc.message}",
                        hint=exc.hint))
            return
        mismatch = chips_mod.emi_mismatch(self.layout.platform, info.emi_version)
        if mismatch is not None:
            # No SP Flash Tool number: SPFT does not look at the EMI table before it talks to
            # a phone; the phone then fails to boot.
            add(Finding(severity="error", code="preloader-platform", partition=part_name,
                        message=f"{path.name} is not a preloader for {self.layout.platform}: "
                                f"{mismatch}",
                        hint="flashing it would leave the phone unable to boot; use the "
                             f"preloader made for this {self.layout.platform} phone"))

    def _da_path(self) -> Path | None:
        where = [self.folder] + ([self.flash_tool_dir] if self.flash_tool_dir else [])
        for d in where:
            for name in DA_FILE_NAMES:
                if (d / name).is_file():
                    return d / name
        return None

    def _check_da(self, add: AddFinding) -> None:
        """The DA next to the firmware must have an entry for the scatter's chip."""
        chip = chips_mod.by_name(self.layout.platform)
        path = self._da_path()
        if chip is None or path is None:
            return
        from romkit.firmware.da import load_da

        try:
            da = load_da(path, any_protocol=True)
        except (FirmwareFormatError, OSError) as exc:
            add(Finding(severity="info", code="da-unreadable", message=f"{path.name}: {exc}",
                        hint="use the MTK_AllInOne_DA.bin of the flash tool"))
            return
        if not any(e.hw_code in chip.da_codes for e in da.entries):
            codes = ", ".join(sorted({f"0x{e.hw_code:04X}" for e in da.entries}))
            # 3087 S_DA_UNSUPPORTED_BBCHIP: what SP Flash Tool says with this DA.
            add(Finding(severity="error", code="da-platform", spft_code=3087,
                        message=f"{path.name} has no entry for {chip.name} (hw code "
                                f"0x{chip.hw_code:04X}); it has {codes}",
                        hint=f"use a Download Agent that supports {chip.name}"))

    def _check_checksums(self, add: AddFinding, on_progress: ProgressCallback | None
                         ) -> list[ck.ChecksumResult]:
        readable = {}
        for name, path in self.images.items():
            try:
                ck.file_size(path)
            except FirmwareFormatError:
                continue
            readable[name] = path
        sums = ck.compute_checksums(readable, on_progress=on_progress)
        if self.checksum_path is None:
            add(Finding(severity="warning", code="checksum-missing",
                        message="no checksum.ini: SP Flash Tool would not check the images",
                        hint="run `romkit checksum --write` to create one"))
            ini = None
        else:
            try:
                ini = ck.read_checksum_ini(self.checksum_path)
            except FirmwareFormatError as exc:
                add(Finding(severity="error", code="checksum-ini-invalid", spft_code=8416,
                            message=exc.message, hint=exc.hint))
                ini = None
        results = ck.verify_checksums(self, sums=sums) if ini is not None else [
            ck.ChecksumResult(partition=p.name, path=self.images.get(p.name),
                              actual=sums.get(p.name),
                              status="no-ini" if p.name in sums else "no-image")
            for p in self.layout.download_partitions]
        if ini is None:
            return results
        if not ini.enabled:
            add(Finding(severity="info", code="checksum-disabled",
                        message=f"{self.checksum_path.name if self.checksum_path else ''} has "
                                "CHECKSUM_SWITCH=0: SP Flash Tool skips the check"))
        severity: Severity = "error" if ini.enabled else "warning"
        hint = "re-download the firmware, or if you replaced an image on purpose run " \
               "`romkit checksum --write`"
        for r in results:
            if r.status == "mismatch":
                add(Finding(severity=severity, code="checksum-mismatch", partition=r.partition,
                            spft_code=8416, hint=hint,
                            message=f"{r.partition}: checksum.ini says 0x{r.expected or 0:04X}, "
                                    f"the image sums to 0x{r.actual or 0:04X}"))
            elif r.status == "missing-key":
                add(Finding(severity=severity, code="checksum-missing-key",
                            partition=r.partition, spft_code=8416, hint=hint,
                            message=f"{r.partition} has an image but no checksum.ini entry "
                                    "(SP Flash Tool compares it against 0)"))
        known = {r.key.lower() for r in results if r.key}
        names = {p.name.lower() for p in self.layout.all_partitions}
        for key in ini.values:
            low = key.lower()
            if low in known:
                continue
            if low in names:
                # The partition exists in this scatter; its image is just not in this folder.
                # Normal (a partial package, or a partition flashed separately): the key
                # stays, and SP Flash Tool needs it once the image is added.
                add(Finding(severity="info", code="checksum-image-absent", partition=key,
                            message=f"checksum.ini has an entry for {key}, whose image is not "
                                    "in this folder",
                            hint="nothing to do; the entry is kept for when the image is "
                                 "added"))
            else:
                add(Finding(severity="warning", code="checksum-unknown-key",
                            message=f"checksum.ini has an entry {key!r} that matches no "
                                    "partition of this scatter",
                            hint="the file may belong to another build"))
        return results


def _check_order(layout: Layout, add: AddFinding) -> None:
    """Order and overlap, per region, the way SP Flash Tool checks them.

    In V1.1/V2.x files linear addresses restart in every region (the preloader at 0 of
    EMMC_BOOT_1, pgpt at 0 of EMMC_USER), so only partitions of one region are compared.
    Placeholders (markers, reserved 0xFFFFxxxx entries) and `boundary_check: false` entries
    are not places on the storage and are never compared.
    """
    prev: dict[str, Partition] = {}
    for part in layout.real_partitions:
        if part.is_placeholder or not part.boundary_check:
            continue
        # Old-format files use one linear address space for BOOT1 and USER alike.
        key = "linear" if layout.format == "old" else part.region.upper()
        before = prev.get(key)
        prev[key] = part
        if before is None:
            continue
        if part.linear_start < before.linear_start:
            add(Finding(severity="error", code="layout-unordered", partition=part.name,
                        message=f"{part.name} (0x{part.linear_start:X}) starts before "
                                f"{before.name} (0x{before.linear_start:X}) in {part.region}",
                        hint="the scatter file is damaged or hand-edited"))
        elif before.end is not None and before.end > part.linear_start:
            add(Finding(severity="error", code="layout-overlap", partition=part.name,
                        spft_code=5016,
                        message=f"{before.name} (ends 0x{before.end:X}) overlaps {part.name} "
                                f"(starts 0x{part.linear_start:X}) in {part.region}",
                        hint="the scatter file is damaged or hand-edited"))


# -- folder reports used by `romkit inspect` / `romkit verify` -------------------------------


class PartitionRow(BaseModel):
    """One line of `romkit inspect`: the partition, its image and its checksum state."""

    index: int
    name: str
    raw_name: str
    region: str
    linear_start: int
    physical_start: int | None
    size: int | None
    is_download: bool
    is_marker: bool
    image: str | None = None
    image_rule: str
    image_note: str = ""
    image_size: int | None = None  # bytes on disk
    expanded_size: int | None = None  # bytes once written (differs for sparse images)
    sparse: bool = False
    fill_percent: float | None = None
    checksum: str | None = None  # ChecksumResult.status for downloadable partitions
    checksum_expected: int | None = None
    checksum_actual: int | None = None


class ChipFacts(BaseModel):
    """The chip-table row of the scatter's platform, as `inspect` shows it."""

    name: str
    hw_code: int
    emi_versions: list[int]
    da_family: str


class FolderInspection(BaseModel):
    folder: Path
    scatter: Path
    platform: str | None
    format: str
    chip: ChipFacts | None = None
    storage_type: str | None = None  # V2.x: the storage block shown
    storages: dict[str, int] = Field(default_factory=dict)  # V2.x: partitions per block
    checksum_file: Path | None
    flash_tool_dir: Path | None
    preloader: Path | None
    partitions: list[PartitionRow]
    report: ValidationReport


def verify_folder(folder: Path, *, on_progress: ProgressCallback | None = None,
                  storage: str | None = None) -> ValidationReport:
    """Load a firmware folder and validate it (what `romkit verify` runs)."""
    return Firmware.load(folder, storage=storage).validate(on_progress=on_progress)


def inspect_folder(folder: Path, *, on_progress: ProgressCallback | None = None,
                   storage: str | None = None) -> FolderInspection:
    """Partition table + images + checksums + findings of one folder (`romkit inspect`)."""
    fw = Firmware.load(folder, storage=storage)
    report = fw.validate(on_progress=on_progress)
    sums = {r.partition: r for r in report.checksums}
    rows: list[PartitionRow] = []
    for b in fw.bindings:
        p = b.partition
        row = PartitionRow(index=p.index, name=p.name, raw_name=p.raw_name, region=p.region,
                           linear_start=p.linear_start, physical_start=p.physical_start,
                           size=p.size, is_download=p.is_download, is_marker=p.is_marker,
                           image=b.path.name if b.path else None, image_rule=b.rule,
                           image_note=b.reason)
        try:
            info = fw.image_info(p.name)
        except FirmwareFormatError:
            info = None
        if info is not None:
            row.image_size, row.expanded_size = info.stored_size, info.expanded_size
            row.sparse = info.sparse is not None
            if p.size:
                row.fill_percent = round(100.0 * info.expanded_size / p.size, 2)
        if p.name in sums and p.is_download:
            r = sums[p.name]
            row.checksum, row.checksum_expected, row.checksum_actual = (
                r.status, r.expected, r.actual)
        rows.append(row)
    chip = chips_mod.by_name(fw.layout.platform)
    return FolderInspection(folder=fw.folder, scatter=fw.scatter_path,
                            platform=fw.layout.platform, format=fw.layout.format,
                            chip=None if chip is None else ChipFacts(
                                name=chip.name, hw_code=chip.hw_code,
                                emi_versions=chip.emi_versions, da_family=chip.da_family),
                            storage_type=fw.layout.storage_type,
                            storages={st.storage_type: len(st.partitions)
                                      for st in fw.layout.storages},
                            checksum_file=fw.checksum_path, flash_tool_dir=fw.flash_tool_dir,
                            preloader=fw.preloader_path, partitions=rows, report=report)
