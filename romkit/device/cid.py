"""Decoding the eMMC CID the Download Agent sends, whatever byte order it uses.

Why: a real MT6589 DA sends the 16-byte CID as four little-endian u32 words (capture:
arzam16/empty-sixty-five `brom-dump/README.md` and `images/brom-dump-002.png`, frame 877:
wire `4d000115 57314738 57250241 8f604418` for the CID the DA's own UART log prints as
`1501004D 38473157 41022557 1844608F`), while romkit's first virtual phone, and any DA that
copies the register bytes as they are, sends the natural order. mtkclient reads the flash-info
CID as two big-endian u64 and repacks them little-endian
(bkerler/mtkclient `mtkclient/Library/DA/legacy/dalegacy_flash_param.py`, Legacy_EmmcInfo)
and tries both the raw and the dword-swapped flash id when it looks for a preloader
(`dalegacy_lib.py`, set_stage2_config). The CID names the memory part (wrong order = "maker
0x4D"), selects the preloader suggestion and keys the backup folders, so guessing is not
good enough.

The rule [our reading, built on JEDEC JESD84 (eMMC CID register: the last byte is
CRC7(bytes 0–14) << 1 | 1)]:
1. decode every plausible order (natural, u32 words little-endian, u64 halves little-endian)
   and take the first whose CRC7 checks;
2. if none checks (a DA that zeroes the CRC byte, or a synthetic part), take the one order
   that looks like a CID: device type byte ≤ 2 and a printable 6-byte product name;
3. otherwise the capture's reading, u32 words little-endian.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CID_LEN = 16
Order = Literal["natural", "le32", "le64"]
ORDERS: tuple[Order, ...] = ("natural", "le32", "le64")
FALLBACK: Order = "le32"  # the order of the real MT6589 capture


def crc7(data: bytes) -> int:
    """CRC-7 (polynomial x^7 + x^3 + 1, initial 0) as used by MMC/SD command and CID."""
    crc = 0
    for byte in data:
        for bit in range(7, -1, -1):
            top = (crc >> 6) & 1
            crc = (crc << 1) & 0x7F
            if ((byte >> bit) & 1) ^ top:
                crc ^= 0x09
    return crc


def crc_ok(cid: bytes) -> bool:
    """True when the last byte is CRC7 of the first 15, shifted, with the end bit set."""
    return len(cid) == CID_LEN and cid[15] == ((crc7(cid[:15]) << 1) | 1)


def reorder(raw: bytes, order: Order) -> bytes:
    """`raw` as received, put into CID byte order under one reading of the wire."""
    if order == "natural":
        return bytes(raw)
    step = 4 if order == "le32" else 8
    return b"".join(raw[i : i + step][::-1] for i in range(0, len(raw), step))


def _looks_like_cid(cid: bytes) -> bool:
    product = cid[3:9]
    return cid[1] <= 2 and all(0x20 <= b < 0x7F for b in product)


@dataclass(frozen=True)
class CidReading:
    """A decoded CID, the bytes as they came, and how we decided."""

    cid: bytes
    raw: bytes
    order: Order
    crc_ok: bool


def decode_cid(raw: bytes) -> CidReading:
    """Decode 16 CID bytes from the DA (see the module docstring for the rule).

    Anything that is not 16 bytes long is returned unchanged: it cannot be a CID, and the
    caller still wants to show it.
    """
    raw = bytes(raw)
    if len(raw) != CID_LEN:
        return CidReading(raw, raw, "natural", False)
    candidates = [(order, reorder(raw, order)) for order in ORDERS]
    for order, cid in candidates:
        if crc_ok(cid):
            return CidReading(cid, raw, order, True)
    plausible = [(order, cid) for order, cid in candidates if _looks_like_cid(cid)]
    distinct = {cid for _, cid in plausible}
    if len(distinct) == 1:
        order, cid = plausible[0]
        return CidReading(cid, raw, order, False)
    return CidReading(reorder(raw, FALLBACK), raw, FALLBACK, False)
