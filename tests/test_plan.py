"""Flash plan: offline pre-flight refusals and the device checks, on real sample folders."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from romkit.errors import LayoutChangedError, UsageError, ValidationError
from romkit.firmware.package import Firmware
from romkit.firmware.preloader import to_boot1_image
from romkit.flash.plan import (
    DeviceFacts,
    PlanOptions,
    PmtRow,
    build_plan,
    check_device,
)
from romkit.sim import s820
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.sample_firmware import build_s820_folder

USER = s820.USER_SIZE["4G"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_s820_folder(tmp_path_factory.mktemp("fw"), preloader=preloader_s820(2013),
                             da=da_s820())


def _scatter_pmt(folder: Path) -> list[PmtRow]:
    """The PMT a phone flashed with this scatter holds, computed from the scatter text."""
    text = next(folder.glob("*_scatter*.txt")).read_text()
    regions = [(m.group(1), int(m.group(2), 16))
               for m in re.finditer(r"^(\S+) (0x[0-9a-fA-F]+)$", text, re.M)]
    real = [(n.removeprefix("__NODL_"), a) for n, a in regions if "BMTPOOL" not in n]
    rows = []
    for i, (name, addr) in enumerate(real):
        size = real[i + 1][1] - addr if i + 1 < len(real) else 0
        rows.append(PmtRow(name=name, offset=addr, size=size))
    return rows


def _facts(folder: Path, **kw: object) -> DeviceFacts:
    base = dict(hw_code=0x6583, cid=s820.PART_2013.cid.hex(), boot1_size=s820.BOOT_SIZE,
                user_size=USER, pmt=_scatter_pmt(folder))
    base.update(kw)
    return DeviceFacts(**base)  # type: ignore[arg-type]


def test_download_only_plan_matches_folder(folder: Path) -> None:
    plan = build_plan(Firmware.load(folder), PlanOptions())
    writes = {o.partition: o for o in plan.operations if o.kind == "write"}
    assert set(writes) == {"PRELOADER", "MBR", "EBR1", "UBOOT", "BOOTIMG", "RECOVERY",
                           "SEC_RO", "LOGO", "EBR2", "ANDROID", "CACHE", "USRDATA"}
    boot = (folder / "boot.img").read_bytes()
    assert writes["BOOTIMG"].sha256 == hashlib.sha256(boot).hexdigest()
    assert writes["BOOTIMG"].sum16 == sum(boot) & 0xFFFF
    assert writes["BOOTIMG"].offset == 0x2780000 - 0x600000
    pre = to_boot1_image((folder / "preloader_s820.bin").read_bytes())
    assert writes["PRELOADER"].region == "EMMC_BOOT_1" and writes["PRELOADER"].boot1
    assert writes["PRELOADER"].sha256 == hashlib.sha256(pre).hexdigest()
    kinds = [o.kind for o in plan.operations]
    assert kinds[:5] == ["backup"] * 5  # calibration first, before any write
    assert {o.partition for o in plan.operations if o.kind == "backup"} == {
        "NVRAM", "PROTECT_F", "PROTECT_S", "PRO_INFO", "SECCFG"}
    assert "format" not in kinds and "pmt" not in kinds
    # every write is followed by its verify
    for i, o in enumerate(plan.operations):
        if o.kind == "write":
            assert plan.operations[i + 1].kind == "verify"
            assert plan.operations[i + 1].partition == o.partition
    assert any("PRELOAD" in w for w in plan.warnings)


def test_only_skip_and_aliases(folder: Path) -> None:
    fw = Firmware.load(folder)
    plan = build_plan(fw, PlanOptions(only=["boot,recovery"], verify=False, backup=False))
    assert [o.partition for o in plan.operations] == ["BOOTIMG", "RECOVERY"]
    assert any("--no-backup" in w for w in plan.warnings)
    plan = build_plan(fw, PlanOptions(skip=["userdata", "system.img"]))
    names = {o.partition for o in plan.operations if o.kind == "write"}
    assert "USRDATA" not in names and "ANDROID" not in names and "BOOTIMG" in names
    with pytest.raises(UsageError):
        build_plan(fw, PlanOptions(only=["nosuchpart"]))
    with pytest.raises(UsageError):
        build_plan(fw, PlanOptions(only=["NVRAM"]))


def test_missing_and_oversized_and_checksum(tmp_path: Path) -> None:
    folder = build_s820_folder(tmp_path, preloader=preloader_s820(2013))
    (folder / "recovery.img").unlink()
    logo = folder / "logo.bin"
    logo.write_bytes(logo.read_bytes()[:-1] + b"\x00")  # checksum.ini now disagrees
    big = folder / "secro.img"  # SEC_RO is 0x600000 bytes in the scatter
    big.write_bytes(b"\x01" * (0x600000 + 512))
    with pytest.raises(ValidationError) as ei:
        build_plan(Firmware.load(folder), PlanOptions())
    codes = {(f.partition, f.code) for f in ei.value.findings}
    assert ("RECOVERY", 5007) in codes
    assert ("SEC_RO", 5016) in codes
    assert ("LOGO", 8416) in codes
    assert ei.value.exit_code == 3


def test_format_all_without_backup_needs_explicit_consent(folder: Path) -> None:
    fw = Firmware.load(folder)
    with pytest.raises(ValidationError):
        build_plan(fw, PlanOptions(mode="format-all", backup=False))
    plan = build_plan(fw, PlanOptions(mode="format-all", backup=False,
                                      erase_calibration_ok=True))
    assert plan.operations[0].kind == "format" and plan.operations[0].length is None
    plan = check_device(plan, _facts(folder))
    assert plan.operations[0].length == USER
    assert plan.operations[-1].kind == "pmt"


def test_device_checks(folder: Path) -> None:
    fw = Firmware.load(folder)
    ok = check_device(build_plan(fw, PlanOptions()), _facts(folder))
    assert ok.device is not None and ok.operations[0].kind == "backup"

    with pytest.raises(ValidationError) as ei:
        check_device(build_plan(fw, PlanOptions()), _facts(folder, hw_code=0x6582))
    assert ei.value.spft_code == 8200

    with pytest.raises(ValidationError) as ei:
        check_device(build_plan(fw, PlanOptions()), _facts(folder, user_size=0x40000000))
    assert ei.value.spft_code == 5069

    with pytest.raises(ValidationError) as ei:
        check_device(build_plan(fw, PlanOptions()), _facts(folder, boot1_size=4096))
    assert ei.value.spft_code == 5016 and ei.value.findings[0].partition == "PRELOADER"


def test_layout_changed(folder: Path) -> None:
    fw = Firmware.load(folder)
    moved = _scatter_pmt(folder)
    i = next(k for k, r in enumerate(moved) if r.name == "CACHE")
    moved[i] = PmtRow(name="CACHE", offset=moved[i].offset + 0x100000, size=moved[i].size)
    with pytest.raises(LayoutChangedError) as ei:
        check_device(build_plan(fw, PlanOptions()), _facts(folder, pmt=moved))
    assert ei.value.spft_code == 8038 and "8502" in ei.value.message
    assert "firmware-upgrade" in ei.value.hint
    assert ei.value.exit_code == 4

    plan = check_device(build_plan(fw, PlanOptions(mode="firmware-upgrade")),
                        _facts(folder, pmt=moved))
    kinds = [o.kind for o in plan.operations]
    assert kinds.index("backup") < kinds.index("format") < kinds.index("write")
    assert kinds.index("write") < kinds.index("pmt") < kinds.index("restore")
    assert kinds[-1] == "restore"

    with pytest.raises(LayoutChangedError) as ei:
        check_device(build_plan(fw, PlanOptions()), _facts(folder, pmt=[]))
    assert ei.value.spft_code == 8503


def test_calibration_ranges_follow_the_phone(folder: Path) -> None:
    """Backups read where the phone's PMT says calibration lives, not where the scatter does."""
    pmt = _scatter_pmt(folder)
    k = next(i for i, r in enumerate(pmt) if r.name == "NVRAM")
    pmt[k] = PmtRow(name="NVRAM", offset=0xE00000, size=0x400000)
    plan = check_device(build_plan(Firmware.load(folder), PlanOptions(mode="firmware-upgrade")),
                        _facts(folder, pmt=pmt))
    nv = next(o for o in plan.operations if o.kind == "backup" and o.partition == "NVRAM")
    assert (nv.offset, nv.length) == (0xE00000 - 0x600000, 0x400000)
    rs = next(o for o in plan.operations if o.kind == "restore" and o.partition == "NVRAM")
    assert rs.length == 0x400000


def test_calibration_that_would_not_fit_is_refused(folder: Path) -> None:
    pmt = _scatter_pmt(folder)
    k = next(i for i, r in enumerate(pmt) if r.name == "NVRAM")
    pmt[k] = PmtRow(name="NVRAM", offset=0xE00000, size=0x600000)  # 6 MiB > the scatter's 5
    with pytest.raises(ValidationError) as ei:
        check_device(build_plan(Firmware.load(folder), PlanOptions(mode="firmware-upgrade")),
                     _facts(folder, pmt=pmt))
    assert ei.value.findings[0].partition == "NVRAM"


def test_firmware_upgrade_plan_leaves_preload_alone(folder: Path) -> None:
    """The sample folder has no PRELOAD image (as on Lenovo's own packages): no operation
    of any kind touches it, in any mode short of format-all's whole-area erase."""
    for mode in ("download-only", "firmware-upgrade"):
        plan = check_device(build_plan(Firmware.load(folder), PlanOptions(mode=mode)),
                            _facts(folder))
        assert not [o for o in plan.operations if o.partition == "PRELOAD"], mode
    upgrade = check_device(build_plan(Firmware.load(folder),
                                      PlanOptions(mode="firmware-upgrade")), _facts(folder))
    formatted = {o.partition for o in upgrade.operations if o.kind == "format"}
    assert {"NVRAM", "MISC", "EXPDB"} <= formatted  # the others are still formatted


def test_an_upgrade_romkit_interrupted_goes_on_without_a_pmt(folder: Path) -> None:
    fw = Firmware.load(folder)
    with pytest.raises(LayoutChangedError) as ei:
        check_device(build_plan(fw, PlanOptions(mode="firmware-upgrade")), _facts(folder, pmt=[]))
    assert ei.value.spft_code == 8503
    plan = check_device(build_plan(fw, PlanOptions(mode="firmware-upgrade")),
                        _facts(folder, pmt=[]), layout_erased_by_romkit=True)
    kinds = [o.kind for o in plan.operations]
    assert "pmt" in kinds and kinds[-1] == "restore"
    assert any("erased" in w for w in plan.warnings)
    with pytest.raises(LayoutChangedError):  # download-only still needs the table
        check_device(build_plan(fw, PlanOptions()), _facts(folder, pmt=[]),
                     layout_erased_by_romkit=True)
