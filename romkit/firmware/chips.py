"""The chip table (romkit/firmware/chips.json): which scatter, preloader and DA belong together.

Why: a preloader built for another SoC flashed into an MT6589 phone bricks it, and nothing in
a firmware folder says so except facts that differ per chip — the EMI table version the
preloader carries, the hw code a DA entry is built for, the boot-region names of the
scatter. The facts live in a JSON data file, one row per chip with its public sources, so a
new chip is a data change, not a code change.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, Field

from romkit.errors import UsageError

DaFamily = Literal["legacy", "v5-xflash", "v6-xml"]
SUPPORTED_DA_FAMILIES: frozenset[str] = frozenset({"legacy"})  # what romkit/device speaks
_DA_NEEDS = {
    "v5-xflash": "the V5 (XFlash) Download Agent protocol",
    "v6-xml": "the V6 (XML) Download Agent protocol",
}


class Chip(BaseModel):
    """One row of the chip table."""

    name: str
    hw_code: int
    emi_versions: list[int] = Field(default_factory=list)
    da_family: DaFamily
    storage: list[str] = Field(default_factory=list)
    boot_regions: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [self.name, *self.aliases]

    @property
    def da_codes(self) -> set[int]:
        """hw codes a DA entry for this chip may carry: the BROM's (MT6589 → 0x6583) or the
        chip number read as hex (the real MTK_AllInOne_DA v7.1504 has 0x6735 and 0x6752
        entries although those BROMs report 0x0321 / 0x6752; tests/fixtures/real/da)."""
        codes = {self.hw_code}
        for name in self.names:
            digits = name[2:6]
            if len(digits) == 4 and digits.isdigit():
                codes.add(int(digits, 16))
        return codes


@cache
def chips() -> tuple[Chip, ...]:
    """Every row of the table, in file order."""
    raw = json.loads(resources.files("romkit.firmware").joinpath("chips.json")
                     .read_text(encoding="utf-8"))
    return tuple(Chip(**{**row, "hw_code": int(row["hw_code"], 16)}) for row in raw["chips"])


def _norm(name: str) -> str:
    return name.strip().upper()


def by_name(name: str | None) -> Chip | None:
    """The chip a scatter `platform:` (or a file-name prefix) names, aliases included."""
    if not name:
        return None
    key = _norm(name)
    for chip in chips():
        if key in (_norm(n) for n in chip.names):
            return chip
    return None


def by_hw_code(hw_code: int) -> Chip | None:
    """The chip whose BROM reports `hw_code`."""
    return next((c for c in chips() if c.hw_code == hw_code), None)


def by_da_code(code: int) -> Chip | None:
    """The chip a DA entry's hw code is for (BROM code first, then the chip number)."""
    return by_hw_code(code) or next((c for c in chips() if code in c.da_codes), None)


def by_emi_version(version: int) -> list[Chip]:
    """Chips whose preloaders carry MTK_BLOADER_INFO_v`version` (often a family)."""
    return [c for c in chips() if version in c.emi_versions]


def family_label(chips_: list[Chip]) -> str:
    """"MT6735/MT6735M/MT6753" for a list of chips (or "an unknown chip")."""
    return "/".join(c.name for c in chips_) if chips_ else "an unknown chip"


def emi_mismatch(platform: str | None, emi_version: int | None) -> str | None:
    """A sentence naming both chips when a preloader's EMI version is not the platform's;
    None when they agree or either side is unknown (nothing to say)."""
    chip = by_name(platform)
    if chip is None or emi_version is None or not chip.emi_versions:
        return None
    if emi_version in chip.emi_versions:
        return None
    owners = by_emi_version(emi_version)
    want = "/".join(f"v{v:02d}" for v in chip.emi_versions)
    return (f"the preloader carries EMI table v{emi_version:02d}, which is "
            f"{family_label(owners)}'s; {chip.name} preloaders carry {want}")


def require_flash_support(platform: str | None) -> Chip | None:
    """Refuse a chip whose Download Agent protocol romkit does not speak.

    Returns the chip row (None for a platform the table does not know: the device check
    then decides by hw code). Raises UsageError naming the chip and what would be needed.
    """
    chip = by_name(platform)
    if chip is None or chip.da_family in SUPPORTED_DA_FAMILIES:
        return chip
    raise UsageError(
        f"romkit cannot flash {chip.name} (hw code 0x{chip.hw_code:04X}): its Download Agent "
        f"speaks {_DA_NEEDS.get(chip.da_family, chip.da_family)}, and romkit's engine speaks "
        "only the legacy DA protocol (MT65xx era)",
        hint=f"use a tool that implements {_DA_NEEDS.get(chip.da_family, chip.da_family)} "
             "for this phone; `romkit inspect` and `romkit verify` still work on its firmware")
