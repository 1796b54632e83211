"""Dialects: the readings of the legacy-DA protocol that the outside evidence leaves open.

Why: where public captures and outside implementations disagree (or say nothing), a real
MT6589 does *one* of the plausible things and we do not know which. A host that works against
only one reading could brick the first real S820 it meets. So the virtual phone can speak each
reading, one switch ("knob") per contested behaviour, and the suite runs the engine against
every named dialect. The default dialect is the best-evidenced reading of each knob; docs/SIM.md
lists each knob with its values and sources.

Knobs (the value first named is the default's):
- `write_end`: after the last WRITE packet's 0x69 the DA sends nothing more (`none`) or a
  final 0x5A (`ack`). none: mtkclient `mtkclient/Library/DA/legacy/dalegacy_lib.py`
  (sdmmc_write_data reads only 0x69 per packet) and ../shared/reference/mtk-protocol.md §4
  (0x62 row has no final ACK). ack: romkit's first reading (docs/PROTOCOL.md before issue 14).
- `write_length`: the WRITE header's length must be a whole number of 512-byte sectors
  (`sector`, else NACK) or may be anything (`any`). sector: mtkclient rounds the length up to
  a multiple of 512 before sending the header (same file, sdmmc_write_data); the eMMC writes
  whole sectors. any: our reading of the per-packet padding rule.
- `format_acks`: FORMAT progress records start with two ACKs and FORMAT ends with two ACKs
  (`2`), or one each plus an ACK that accepts the command (`1`). 2: mtkclient `formatflash`
  and the shared reference §4 (FORMAT row). 1: romkit's first reading.
- `emi_upload`: the DA reads exactly the EMI length it announced (`announced`) or whatever
  the host sends until it pauses (`as-sent`). announced: a DA that announces a length reads
  it (mtkclient cuts the blob to the announced length for v12/v13); real MT6572 phones hang
  when a host sends its whole table instead (mtkclient issue #318). as-sent: what mtkclient's
  v10/v11 branch assumes (it sends its whole table).
- `usb_speed`: the DA reports full speed and, on `70 01`, re-enumerates on a new port as
  PID 0x2001 (`full-reenumerate`); or switches on the same port (`full-same-port`); or reports
  high speed from the start (`high`). full-reenumerate: mtkclient closes the port after
  `70 01` and waits for the phone to come back (dalegacy_lib.py upload_da1), and the shared
  reference §1 lists 0E8D:2001 as the DA's VCOM after a speed switch. high / same port: our
  readings (romkit's first one was `high`).
- `info_cid`: the CID in the DRAM step's flash ID and in the eMMC flash-info block travels as
  four little-endian u32 words like the storage report (`le-words`), or in JEDEC byte order
  (`natural`). le-words: the capture shows the storage report so (empty-sixty-five
  brom-dump-002.png frame 877) and the DA keeps the CID as words; mtkclient searches its
  preloaders for the flash ID both raw and word-swapped, so these two places are not proven.
  natural: romkit's first reading. The storage report itself always follows the capture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

from romkit.errors import UsageError

WriteEnd = Literal["none", "ack"]
WriteLength = Literal["sector", "any"]
EmiUpload = Literal["announced", "as-sent"]
UsbSpeed = Literal["full-reenumerate", "full-same-port", "high"]
InfoCid = Literal["le-words", "natural"]

KNOB_VALUES: dict[str, tuple[object, ...]] = {
    "write_end": ("none", "ack"),
    "write_length": ("sector", "any"),
    "format_acks": (2, 1),
    "emi_upload": ("announced", "as-sent"),
    "usb_speed": ("full-reenumerate", "full-same-port", "high"),
    "info_cid": ("le-words", "natural"),
}


@dataclass(frozen=True)
class Dialect:
    """One complete reading of the contested points, with where it comes from."""

    name: str
    description: str
    source: str
    write_end: WriteEnd = "none"
    write_length: WriteLength = "sector"
    format_acks: Literal[1, 2] = 2
    emi_upload: EmiUpload = "announced"
    usb_speed: UsbSpeed = "full-reenumerate"
    info_cid: InfoCid = "le-words"

    def knobs(self) -> dict[str, object]:
        """Knob name → value (no name / description / source)."""
        d = asdict(self)
        return {k: d[k] for k in KNOB_VALUES}

    def describe(self) -> str:
        """`name: knob=value …` on one line (for logs, --json and `--dialect list`)."""
        return " ".join(f"{k}={v}" for k, v in self.knobs().items())


DEFAULT_DIALECT = "evidence"

DIALECTS: dict[str, Dialect] = {d.name: d for d in (
    Dialect("evidence", "the best-evidenced reading of every knob",
            "capture (empty-sixty-five brom-dump), mtkclient dalegacy_lib.py, "
            "shared reference mtk-protocol.md §4"),
    Dialect("mtkclient", "what mtkclient's legacy-DA host code expects, EMI table read as sent",
            "bkerler/mtkclient mtkclient/Library/DA/legacy/dalegacy_lib.py",
            emi_upload="as-sent"),
    Dialect("romkit-v1", "romkit's first reading (final write ACK, one format ACK, any "
            "length, high speed, CID in byte order after the storage report)",
            "docs/PROTOCOL.md before issue 14 (our reading)",
            write_end="ack", write_length="any", format_acks=1, usb_speed="high",
            info_cid="natural"),
    Dialect("same-port", "evidence, but the speed switch keeps the port (no re-enumeration)",
            "our reading of mtk-protocol.md §4 step 8", usb_speed="full-same-port"),
    Dialect("lenient", "takes any write length and the EMI table as sent, reports high speed",
            "our reading", write_length="any", emi_upload="as-sent", usb_speed="high"),
)}


def _coerce(knob: str, text: str) -> object:
    allowed = KNOB_VALUES[knob]
    for value in allowed:
        if str(value) == text:
            return value
    raise UsageError(f"dialect knob {knob} cannot be {text!r}",
                     hint=f"use one of: {', '.join(map(str, allowed))}")


def resolve(spec: str | Dialect | None) -> Dialect:
    """A dialect from `NAME` or `NAME,knob=value,…` (None → the default).

    Overrides make a one-off reading without a new name, e.g. `evidence,write_end=ack`.
    """
    if isinstance(spec, Dialect):
        return spec
    text = (spec or DEFAULT_DIALECT).strip()
    name, *overrides = [part.strip() for part in text.split(",")]
    if name not in DIALECTS:
        raise UsageError(f"unknown dialect {name!r}",
                         hint=f"use one of: {', '.join(DIALECTS)} (see `romkit sim "
                              f"--dialect list`)")
    dialect = DIALECTS[name]
    changes: dict[str, object] = {}
    for item in overrides:
        knob, sep, value = item.partition("=")
        knob = knob.strip().replace("-", "_")
        if not sep or knob not in KNOB_VALUES:
            raise UsageError(f"dialect override {item!r} is not knob=value",
                             hint=f"knobs: {', '.join(KNOB_VALUES)}")
        changes[knob] = _coerce(knob, value.strip())
    if changes:
        label = ",".join([name] + [f"{k}={v}" for k, v in changes.items()])
        dialect = replace(dialect, name=label, **changes)  # type: ignore[arg-type]
    return dialect


def listing() -> list[dict[str, object]]:
    """Every named dialect with its description, source and knobs (for `--dialect list`)."""
    return [{"name": d.name, "description": d.description, "source": d.source,
             "default": d.name == DEFAULT_DIALECT, **d.knobs()} for d in DIALECTS.values()]


assert {f.name for f in fields(Dialect)} >= set(KNOB_VALUES)
