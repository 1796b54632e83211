"""Fuzzing a whole firmware folder: the synthetic S820 package with a mutated scatter,
checksum.ini or preloader, loaded, validated and planned exactly as `romkit flash` would.

This reaches the code *behind* the parsers (image binding, overlap and size checks, checksum
verification, EMI checks in the flash plan), which only sees near-valid input.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fuzzlib import fuzz_settings, mutated_bytes, mutated_text
from hypothesis import given
from hypothesis import strategies as st

from romkit.errors import RomkitError
from romkit.firmware.checksum import verify_checksums
from romkit.firmware.package import Firmware
from romkit.flash.plan import PlanOptions, build_plan
from romkit.sim.artifacts import preloader_s820
from romkit.sim.sample_firmware import PRELOADER_NAME, SCATTER_NAME, build_s820_folder

FUZZ = fuzz_settings(60)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_s820_folder(tmp_path_factory.mktemp("s820"), preloader=preloader_s820(2014),
                             image_scale=0.02)


def _exercise(folder: Path) -> None:
    try:
        fw = Firmware.load(folder)
        fw.validate()
        verify_checksums(fw)
        for mode in ("download-only", "firmware-upgrade", "format-all"):
            build_plan(fw, PlanOptions(mode=mode, erase_calibration_ok=True))
    except RomkitError as exc:
        assert exc.message.strip()


def _fresh(pristine: Path, work: Path) -> Path:
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(pristine, work)
    return work


def test_pristine_folder_plans(pristine: Path) -> None:
    fw = Firmware.load(pristine)
    assert fw.validate().ok
    assert build_plan(fw, PlanOptions()).operations


@FUZZ
@given(which=st.sampled_from(["scatter", "ini"]), data=st.data())
def test_mutated_text_files(pristine: Path, tmp_path: Path, which: str,
                            data: st.DataObject) -> None:
    folder = _fresh(pristine, tmp_path / "fw")
    name = SCATTER_NAME if which == "scatter" else "Checksum.ini"
    valid = (folder / name).read_text()
    (folder / name).write_text(data.draw(mutated_text([valid])))
    _exercise(folder)


@FUZZ
@given(data=st.data())
def test_mutated_preloader(pristine: Path, tmp_path: Path, data: st.DataObject) -> None:
    folder = _fresh(pristine, tmp_path / "fw")
    valid = (folder / PRELOADER_NAME).read_bytes()
    bloader = valid.find(b"MTK_BLOADER_INFO_v")
    hot = [(0, 0x60), (bloader, bloader + 0x80), (len(valid) - 0x40, len(valid))]
    (folder / PRELOADER_NAME).write_bytes(data.draw(mutated_bytes([valid], hot)))
    _exercise(folder)
