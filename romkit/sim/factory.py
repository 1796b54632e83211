"""The factory contents of the virtual S820's eMMC: partition tables and calibration data.

A flash engine reads the phone's own tables (MBR/EBR, PMT) to detect a changed layout and
backs up NVRAM / PROTECT_F / PROTECT_S / PRO_INFO before formatting. So the virtual phone
must come out of the box with a realistic, self-consistent layout (modelled on
`romkit.sim.s820.LAYOUT`) and recognisable calibration records whose loss a test can see.

Table conventions (documented for the host-side parser):
- MBR at user LBA 0: slot 1 EBR1 (type 0x05, extended, from EBR1 to the end of the user area),
  slots 2–4 PROTECT_F, PROTECT_S, SEC_RO (type 0x83). LBAs are absolute user-area sectors.
- EBR1 (first sector of the EBR1 region): ANDROID, CACHE (0x83, start relative to EBR1's own
  LBA) and a 0x05 link to EBR2 (start relative to the extended partition = EBR1's LBA).
- EBR2: USRDATA (0x83, start relative to EBR2's LBA), running to the end of the user area.
- PMT at user 0x100000: `PTv1`, count, entries (docs/PROTOCOL.md "PMT on eMMC").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from romkit.device import protocol as p
from romkit.sim import s820

SECTOR = p.SECTOR
TYPE_EXTENDED = 0x05
TYPE_LINUX = 0x83
PRO_INFO_SERIAL = "S820SIM000001"


@dataclass(frozen=True)
class Region:
    """One scatter region of the factory layout in linear (scatter) addresses."""

    name: str  # without __NODL_
    linear: int
    size: int  # bytes; the last region runs to the end of the user area

    @property
    def user_offset(self) -> int:
        return self.linear - p.MT6589_USER_OFFSET


def factory_regions(user_size: int) -> list[Region]:
    """The synthetic S820 layout with sizes; the BMTPOOL marker is not a region."""
    rows = [(name.removeprefix("__NODL_"), addr) for name, addr in s820.LAYOUT]
    rows = [(name, addr) for name, addr in rows if name != "BMTPOOL"]
    end = user_size + p.MT6589_USER_OFFSET
    regions = []
    for i, (name, addr) in enumerate(rows):
        nxt = rows[i + 1][1] if i + 1 < len(rows) else end
        regions.append(Region(name, addr, nxt - addr))
    return regions


def pmt_location() -> tuple[int, int]:
    """User-area offset and size of the PMT partition (fixed: the phone's boot code knows it)."""
    regions = factory_regions(s820.USER_SIZE["4G"])
    pmt = next(r for r in regions if r.name == "PMT")
    return pmt.user_offset, pmt.size


def _entry(ptype: int, start_lba: int, sectors: int) -> bytes:
    # status, CHS first (unused: FE FF FF = "use LBA"), type, CHS last, LBA start, sectors.
    return struct.pack("<B3sB3sII", 0, b"\xfe\xff\xff", ptype, b"\xfe\xff\xff",
                       start_lba, sectors)


def _table_sector(entries: list[bytes]) -> bytes:
    sector = bytearray(SECTOR)
    for i, entry in enumerate(entries):
        sector[0x1BE + 16 * i:0x1BE + 16 * (i + 1)] = entry
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def build_pmt(regions: list[Region]) -> bytes:
    """The PMT partition's table: header + entries; the last region has size 0."""
    body = bytearray(struct.pack(p.PMT_HEADER_FORMAT, p.PMT_MAGIC, len(regions)))
    for i, reg in enumerate(regions):
        size = 0 if i == len(regions) - 1 else reg.size
        body += struct.pack(p.PMT_ENTRY_FORMAT, reg.name.encode("ascii"), size, reg.linear, 0)
    return bytes(body)


def build_tables(regions: list[Region], user_size: int) -> dict[str, bytes]:
    """MBR, EBR1 and EBR2 sectors for the layout."""
    by = {r.name: r for r in regions}
    user_sectors = user_size // SECTOR

    def lba(name: str) -> int:
        return by[name].user_offset // SECTOR

    def sectors(name: str) -> int:
        return by[name].size // SECTOR

    ebr1, ebr2 = lba("EBR1"), lba("EBR2")
    mbr = _table_sector([
        _entry(TYPE_EXTENDED, ebr1, user_sectors - ebr1),
        _entry(TYPE_LINUX, lba("PROTECT_F"), sectors("PROTECT_F")),
        _entry(TYPE_LINUX, lba("PROTECT_S"), sectors("PROTECT_S")),
        _entry(TYPE_LINUX, lba("SEC_RO"), sectors("SEC_RO")),
    ])
    ebr1_sector = _table_sector([
        _entry(TYPE_LINUX, lba("ANDROID") - ebr1, sectors("ANDROID")),
        _entry(TYPE_LINUX, lba("CACHE") - ebr1, sectors("CACHE")),
        _entry(TYPE_EXTENDED, ebr2 - ebr1, user_sectors - ebr2),
    ])
    ebr2_sector = _table_sector([
        _entry(TYPE_LINUX, lba("USRDATA") - ebr2, user_sectors - lba("USRDATA")),
    ])
    return {"MBR": mbr, "EBR1": ebr1_sector, "EBR2": ebr2_sector}


def nvram_image() -> bytes:
    """Synthetic NVRAM: a readable IMEI line, an LD0B_001 record, then calibration noise."""
    imei1, imei2 = s820.SYNTHETIC_IMEI
    head = f"ROMKIT-SIM NVRAM (synthetic) IMEI1={imei1} IMEI2={imei2}\n".encode("ascii")
    record_body = imei1.encode("ascii") + b"\x00" + imei2.encode("ascii") + b"\x00"
    record = b"LD0B_001" + struct.pack("<HH", 1, len(record_body)) + record_body
    noise = np.random.default_rng(0x6589).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes()
    return head + record + noise


def text_header(name: str) -> bytes:
    imei1, imei2 = s820.SYNTHETIC_IMEI
    extra = f"SN={PRO_INFO_SERIAL}" if name == "PRO_INFO" else f"IMEI1={imei1} IMEI2={imei2}"
    return f"ROMKIT-SIM {name} (synthetic) {extra}\n".encode("ascii")


# BOOT1 header of an eMMC MediaTek boot (../shared/reference/mtk-protocol.md §6):
# "EMMC_BOOT" (12-byte field), u32 version at 0xC, u32 BRLYT offset at 0x10; "BRLYT" (8-byte
# field), u32 version, u32 boot_region_addr (where the GFH image starts), u32
# main_region_addr, 8 descriptors of 20 bytes ("BBBB", u16 dev, u16 type, u32 begin, u32
# boundary, u32 attr). Offsets 0 / 0x200 / 0x800 are the reference's typical layout; the
# device and type codes of descriptor 0 are our reading.
BOOT1_BRLYT_AT = 0x200
BOOT1_IMAGE_AT = 0x800
BRLYT_DEV_EMMC = 0x0005
BRLYT_TYPE_BOOTLOADER = 0x0001
GFH_FILE_LEN_AT = 0x20  # u32 file_len in the GFH FILE_INFO block (reference §6)


def boot1_form(raw: bytes) -> bytes:
    """The raw (GFH) preloader wrapped as eMMC BOOT1 holds it, padded to whole sectors."""
    (file_len,) = struct.unpack_from("<I", raw, GFH_FILE_LEN_AT)
    image = raw[:file_len]
    main_region = BOOT1_IMAGE_AT + -(-len(image) // p.SECTOR) * p.SECTOR
    out = bytearray(main_region)
    out[0:12] = b"EMMC_BOOT".ljust(12, b"\x00")
    struct.pack_into("<II", out, 0x0C, 1, BOOT1_BRLYT_AT)
    b = BOOT1_BRLYT_AT
    out[b:b + 8] = b"BRLYT".ljust(8, b"\x00")
    struct.pack_into("<III", out, b + 0x08, 1, BOOT1_IMAGE_AT, main_region)
    struct.pack_into("<4sHHIII", out, b + 0x14, b"BBBB", BRLYT_DEV_EMMC, BRLYT_TYPE_BOOTLOADER,
                     BOOT1_IMAGE_AT, main_region, 1)
    out[BOOT1_IMAGE_AT:BOOT1_IMAGE_AT + len(image)] = image
    return bytes(out)


def boot1_image(year: int) -> tuple[bytes, str]:
    """BOOT1 contents: the BOOT1 form of the synthetic preloader of that build year."""
    from romkit.sim.artifacts import preloader_s820

    return boot1_form(preloader_s820(year)), f"preloader {year}"


def factory_contents(user_size: int, year: int) -> tuple[dict[int, list[tuple[int, bytes]]],
                                                         str]:
    """What to write where (partition id → [(offset, bytes)]) and what BOOT1 holds."""
    regions = factory_regions(user_size)
    by = {r.name: r for r in regions}
    tables = build_tables(regions, user_size)
    user: list[tuple[int, bytes]] = [
        (by["MBR"].user_offset, tables["MBR"]),
        (by["EBR1"].user_offset, tables["EBR1"]),
        (by["EBR2"].user_offset, tables["EBR2"]),
        (by["PMT"].user_offset, build_pmt(regions)),
        (by["NVRAM"].user_offset, nvram_image()),
    ]
    for name in ("PRO_INFO", "PROTECT_F", "PROTECT_S"):
        user.append((by[name].user_offset, text_header(name)))
    boot1, boot1_kind = boot1_image(year)
    return {p.PART_BOOT1: [(0, boot1)], p.PART_USER: user}, boot1_kind
