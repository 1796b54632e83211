"""Wire-protocol constants shared by the flash engine and the virtual phone.

Only numbers live here (both sides import them); behaviour is written separately on each side.
The reading of ambiguous points of the reference is fixed in docs/PROTOCOL.md. All multi-byte
values on the wire are big-endian unless a name says LE.
"""

from __future__ import annotations

# -- USB identities (VID, PID) -----------------------------------------------------------------
MTK_VID = 0x0E8D
USB_BROM = (0x0E8D, 0x0003)
USB_PRELOADER = (0x0E8D, 0x2000)
USB_DA_VCOM = (0x0E8D, 0x2001)
USB_OTHER_PRELOADER = ((0x0E8D, 0x20FF), (0x0E8D, 0x3000), (0x0E8D, 0x6000))
USB_VENDOR_REBADGED = ((0x1004, 0x6000), (0x22D9, 0x0006))

# -- BROM / preloader --------------------------------------------------------------------------
HANDSHAKE = bytes([0xA0, 0x0A, 0x50, 0x05])
HANDSHAKE_REPLY = bytes(b ^ 0xFF for b in HANDSHAKE)  # 5F F5 AF FA

BROM_READ16 = 0xD0
BROM_READ32 = 0xD1
BROM_WRITE16 = 0xD2
BROM_WRITE32 = 0xD4
BROM_JUMP_DA = 0xD5
BROM_SEND_DA = 0xD7
BROM_GET_TARGET_CONFIG = 0xD8
BROM_UART1_LOG_EN = 0xDB
BROM_PWR_INIT = 0xC4
BROM_PWR_DEINIT = 0xC5
BROM_PWR_READ16 = 0xC6
BROM_PWR_WRITE16 = 0xC7
BROM_GET_ME_ID = 0xE1
BROM_GET_PL_CAP = 0xFB
BROM_GET_HW_SW_VER = 0xFC
BROM_GET_HW_CODE = 0xFD
BROM_GET_BL_VER = 0xFE
BROM_GET_VERSION = 0xFF

BROM_STATUS_OK = 0x0000
BROM_STATUS_UNSUPPORTED = 0x0001  # romkit's sim answers unknown requests so [our reading]
BROM_STATUS_SLA_REQUIRED = 0x1D0D
BROM_STATUS_NO_AUTH_NEEDED = 0x1D0C

TARGET_CONFIG_SBC = 1 << 0
TARGET_CONFIG_SLA = 1 << 1
TARGET_CONFIG_DAA = 1 << 2

# -- MT6589 (reports hw code 0x6583) ---------------------------------------------------------
MT6589_HW_CODE = 0x6583
MT6589_HW_VER = 0xCA00
MT6589_SW_VER = 0x0000
MT6589_WATCHDOG = 0x10000000
MT6589_WATCHDOG_OFF = 0x22002224  # SP Flash Tool's value (0x22 key, enable bit clear)
MT6589_EMI_GENA = 0x10203070
MT6589_UART1 = 0x11006000
# PMIC charger setup SP Flash Tool sends to an MT6589 in BROM mode, in order: PWR_INIT's two
# parameters, then (register, value) pairs each read, written and read back, then PWR_DEINIT
# [capture: arzam16/empty-sixty-five brom-dump/spft-replay/src/platform.py, MT6589.init_pmic].
MT6589_PWR_INIT_ARGS = (0x80000000, 0x00000000)
MT6589_PMIC_CHARGER = (
    (0x000E, 0x1001),  # CHR_CON7 (a real phone reads 0x1001)
    (0x000C, 0x0049),  # CHR_CON6 (reads 0x0041)
    (0x0008, 0x000C),  # CHR_CON4 (reads 0x000F)
    (0x001A, 0x0000),  # CHR_CON13 (reads 0x0010)
    (0x0000, 0x007B),  # CHR_CON0 (reads 0x0063)
    (0x0020, 0x0009),  # CHR_CON16 (reads 0x0001)
)
MT6589_DA1_ADDR = 0x12000000  # DA stage 1, SRAM
MT6589_DA2_ADDR = 0x82038000  # DA stage 2, DRAM
MT6589_SRAM = (0x12000000, 0x12040000)  # [start, end) accepted for stage 1 (256 KiB)
MT6589_DRAM_BASE = 0x80000000
MT6589_USER_OFFSET = 0x600000  # user-area physical = linear - this (old-format scatter)

# -- Legacy DA ---------------------------------------------------------------------------------
ACK = 0x5A
NACK = 0xA5
CONT = 0x69
STOP = 0x96
SYNC_CHAR = 0xC0
SOC_OK = 0xC1
SOC_FAIL = 0xCF
UNKNOWN_CMD = 0xBB

DRAM_NOT_NEEDED = 0x0000
DRAM_NEEDED = 0x0BC3
DRAM_NAND_IDS = 0x0BC4
DA_ENABLE_DRAM = 0xE8
EMI_DONE_MAGIC = 0x80000001
EMI_VERSION_UNKNOWN = 0xFFFFFFFF
EMI_ENTRY_SIZE_V10 = 0xB8
RAM_TYPE_DRAM = 2

DA_STAGE2_PACKET = 0x1000

DA_SWITCH_PART = 0x60
DA_WRITE_DATA = 0x62
DA_USB_SET_SPEED = 0x70
DA_USB_CHECK_STATUS = 0x72
DA_READ_REG32 = 0x7A
DA_WRITE_REG32 = 0x7B
DA_READ_PMT = 0xA5
DA_FORMAT = 0xD4
DA_READ = 0xD6
DA_FINISH = 0xD9

STORAGE_EMMC_WRITE = 0x01  # legacy write sends 0x01 (see docs/PROTOCOL.md)
STORAGE_EMMC = 0x02  # read and format send 0x02
HOST_OS_LINUX = 0x0C
HOST_OS_WINDOWS = 0x0B
DA_PACKET_DEFAULT = 0x100000
SECTOR = 512

PART_BOOT1 = 1
PART_BOOT2 = 2
PART_RPMB = 3
PART_GP1 = 4
PART_USER = 8

FINISH_NORMAL = 0
FINISH_HOME = 1
FINISH_FASTBOOT = 2

# Flash-info block sizes read after stage 2, in order.
INFO_NOR_LEN = 0x1C
INFO_NAND_FIXED_LEN = 0x11 + 9  # plus 2 bytes per NAND id reported in the storage report
INFO_EMMC_LEN = 0x5C
INFO_SDC_LEN = 0x1C
INFO_RAM_LEN = 0x26
INFO_PASS_LEN = 0x0A

# -- PMT as stored in the PMT partition and returned by DA_READ_PMT -------------------------
PMT_MAGIC = b"PTv1"
PMT_ENTRY_FORMAT = "<64sQQQ"  # name, size, linear offset, mask_flags (little-endian)
PMT_ENTRY_SIZE = 88
PMT_HEADER_FORMAT = "<4sI"  # magic, entry count (on-disk header only)
PMT_HEADER_SIZE = 8
