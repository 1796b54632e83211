"""Facts of the *synthetic* S820 shared by the virtual phone, the sample firmware and the demo.

Real S820 memory part numbers and its exact partition layout are not known to us (see
../shared/reference/spft-formats.md §6: "Not found: the actual memory part numbers"). So the
virtual phone uses clearly synthetic memory parts (product names "SIM13S" / "SIM14H") and a
layout modelled on the real Lenovo S960 (MT6589) scatter in tests/fixtures. Nothing here
should ever be mistaken for real-device data.
"""

from __future__ import annotations

from dataclasses import dataclass


def crc7(data: bytes) -> int:
    """JEDEC eMMC CRC7 (polynomial x^7 + x^3 + 1, initial 0) over `data`."""
    crc = 0
    for byte in data:
        for bit in range(7, -1, -1):
            top = (crc >> 6) & 1
            crc = (crc << 1) & 0x7F
            if ((byte >> bit) & 1) ^ top:
                crc ^= 0x09
    return crc


def jedec_cid(first15: bytes) -> bytes:
    """A 16-byte CID whose last byte is CRC7(first 15 bytes) << 1 | 1, as on a real eMMC."""
    if len(first15) != 15:
        raise ValueError("a CID has 15 bytes before its CRC")
    return first15 + bytes([(crc7(first15) << 1) | 1])


@dataclass(frozen=True)
class MemoryPart:
    """An eMMC+LPDDR2 MCP as the phone reports it: the 16-byte eMMC CID."""

    label: str
    cid: bytes  # 16 bytes: MID, CBX(0x01 = BGA), OID, PNM[6], PRV, PSN[4], MDT, CRC7<<1|1

    @property
    def manufacturer_id(self) -> int:
        return self.cid[0]

    @property
    def product(self) -> str:
        return self.cid[3:9].decode("ascii", "replace")


# 2013 units: Samsung-style MID 0x15, synthetic product name, valid CRC7.
PART_2013 = MemoryPart(
    label="synthetic Samsung eMMC+LPDDR2 'SIM13S' (2013 units)",
    cid=jedec_cid(bytes([0x15, 0x01, 0x00]) + b"SIM13S" + bytes([0x10, 0x13, 0x57, 0x9B, 0xDF,
                                                                 0xA3])),
)
# 2014 units: Hynix-style MID 0x90, synthetic product name; not listed by the 2013 preloader.
PART_2014 = MemoryPart(
    label="synthetic Hynix eMMC+LPDDR2 'SIM14H' (2014 units)",
    cid=jedec_cid(bytes([0x90, 0x01, 0x4A]) + b"SIM14H" + bytes([0x20, 0x24, 0x68, 0xAC, 0xE0,
                                                                 0xB4])),
)
# The CID of a real MT6589's eMMC (Samsung "M8G1WA"), as its DA's UART log printed it:
# arzam16/empty-sixty-five brom-dump/README.md ("1501004D, 38473157, 41022557, 1844608F").
# `--memory-id capture` makes the virtual phone report it.
CAPTURED_CID = bytes.fromhex("1501004D38473157410225571844608F")
PARTS_BY_YEAR = {2013: PART_2013, 2014: PART_2014}

EMI_ID_LENGTH = 9  # MID, CBX, OID and the 6-byte product name

# eMMC geometry of the virtual phone.
BOOT_SIZE = 4 * 1024 * 1024
RPMB_SIZE = 512 * 1024
USER_SIZE = {"4G": 0xE9000000, "8G": 0x1D2000000}

# Old-format MT6589 scatter regions of the synthetic S820 (names as written in the scatter,
# linear start addresses), modelled on the Lenovo S960 scatter fixture.
LAYOUT: tuple[tuple[str, int], ...] = (
    ("PRELOADER", 0x0),
    ("MBR", 0x600000),
    ("EBR1", 0x680000),
    ("__NODL_PMT", 0x700000),
    ("__NODL_PRO_INFO", 0xB00000),
    ("__NODL_NVRAM", 0xE00000),
    ("__NODL_PROTECT_F", 0x1300000),
    ("__NODL_PROTECT_S", 0x1D00000),
    ("__NODL_SECCFG", 0x2700000),
    ("UBOOT", 0x2720000),
    ("BOOTIMG", 0x2780000),
    ("RECOVERY", 0x2D80000),
    ("SEC_RO", 0x3980000),
    ("__NODL_MISC", 0x3F80000),
    ("LOGO", 0x4000000),
    ("EBR2", 0x4300000),
    ("__NODL_EXPDB", 0x4380000),
    ("PRELOAD", 0x4D80000),
    ("ANDROID", 0x17980000),
    ("CACHE", 0x75580000),
    ("USRDATA", 0x8CF80000),
    ("__NODL_BMTPOOL", 0xFFFF00A8),
)

# Partitions whose loss costs the user their IMEI / calibration.
CALIBRATION = ("PRO_INFO", "NVRAM", "PROTECT_F", "PROTECT_S", "SECCFG")

SYNTHETIC_IMEI = ("356789010000001", "356789010000019")
