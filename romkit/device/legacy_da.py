"""Host side of the legacy (SP Flash Tool v3/v5 era) download agent protocol.

Implements docs/PROTOCOL.md "Legacy DA stage" and "Commands"; every rule there carries its
evidence tag. The DA has no framing and no resynchronisation, so every byte we expect is
checked and named in the error: after one misread byte the two ends disagree about everything
that follows, and the only honest thing to do is stop with a message that says where it
happened.

Where the outside evidence is contested (the end of a WRITE, FORMAT's ACK count, the NAND
flash-info length, the CID byte order, the USB speed switch) the host accepts every plausible
reading, and it never *guesses* whether an optional byte is still coming: it asks the DA an
idempotent question (USB_CHECK_STATUS, 0x72) whose answer cannot be confused with the optional
byte, so a late byte is consumed in order instead of being mistaken for the next reply.

Bulk transfers (`write`, `read`) stream packet by packet from/to file objects, so flashing a
1 GiB system image costs one packet of memory; each packet carries a 16-bit byte sum and a bad
packet is re-sent a few times before we give up with the partition and offset in the error.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from romkit import bytesum
from romkit.device import protocol as P
from romkit.device.cid import decode_cid
from romkit.device.transport import Transport
from romkit.errors import (
    DeviceError,
    DeviceTimeout,
    DiskError,
    DramInitError,
    ProtocolError,
    StorageError,
    TransportError,
    UsageError,
)

PacketCallback = Callable[[int, int], None]  # (bytes done, total bytes)
PercentCallback = Callable[[int], None]

MAX_NAND_IDS = 64
MAX_FLASH_ID_LEN = 64
MAX_EMI_LEN = 4 * 1024 * 1024
MAX_PMT_LEN = 1024 * P.PMT_ENTRY_SIZE
MAX_PACKET = 16 * 1024 * 1024
SUPPORTED_EMI_VERSIONS = (10, 11)  # the "RAM-Info" handshake of MTK_BLOADER_INFO v10/v11
DRAM_TIMEOUT = 10.0  # DRAM calibration takes a moment on the phone
DA_START_TIMEOUT = 10.0  # JUMP_DA → SYNC: 4 ms on the captured MT6589; 10 s is generous
STAGE2_CHUNK = P.DA_STAGE2_PACKET
# Bytes after the NAND block of the flash info: eMMC, SD, RAM and pass-info blocks.
FLASH_INFO_REST = P.INFO_EMMC_LEN + P.INFO_SDC_LEN + P.INFO_RAM_LEN + P.INFO_PASS_LEN
NAND_INFO_HEAD = 0x11  # u32 info, u8 cs, u16 id, u64 size, u16 id count (mtkclient NandInfo64)
NAND_INFO_TAIL = 9  # page size, spare size, pages/block, io, addr cycle, bmt (NandInfo2)
MAX_SETTLE_ACKS = 3  # optional trailing ACKs we absorb before the answer to 0x72

PART_NAMES = {P.PART_BOOT1: "BOOT1", P.PART_BOOT2: "BOOT2", P.PART_RPMB: "RPMB",
              P.PART_USER: "USER", 4: "GP1", 5: "GP2", 6: "GP3", 7: "GP4"}
MANUFACTURERS = {0x15: "Samsung", 0x90: "Hynix", 0x45: "SanDisk", 0x70: "Kingston",
                 0x11: "Toshiba", 0xFE: "Micron"}

RECONNECT_HINT = "Reconnect the phone (battery out and in) and start again."
WRITE_HINT = (
    "The phone kept rejecting data: try another USB cable or port (no hub); if it persists "
    "the eMMC may be failing."
)


def part_name(part: int) -> str:
    return PART_NAMES.get(part, f"partition {part}")


def describe_memory_part(cid: bytes) -> str:
    """Human name of an eMMC/MCP part from its CID: manufacturer byte + product name (3–8)."""
    if not cid:
        return "unknown memory part"
    maker = MANUFACTURERS.get(cid[0], "unknown maker")
    raw = cid[3:9]
    product = raw.decode("ascii") if raw and all(0x20 <= b < 0x7F for b in raw) else raw.hex()
    return f"{maker} (0x{cid[0]:02X}) '{product}'"


@dataclass(frozen=True)
class StorageReport:
    """What the DA finds right after it starts: flash chip ids and the eMMC CID.

    `cid` is decoded (romkit.device.cid); `cid_raw` is what came over the wire and
    `cid_order` which reading won. `da_version` is recorded, never checked: SP Flash Tool's
    MT6589 DA sends 03 02 86 (capture, empty-sixty-five brom-dump-008.png).
    """

    nand_status: int
    nand_ids: tuple[int, ...]
    emmc_status: int
    cid: bytes
    da_version: tuple[int, int, int]
    cid_raw: bytes = b""
    cid_order: str = "natural"


@dataclass(frozen=True)
class DramResult:
    """Outcome of the EMI upload: the memory part the DA saw and the DRAM it brought up."""

    flash_id: bytes
    nand_ids: tuple[int, ...]
    ram_info: bytes
    emi_length: int
    ram_type: int
    chip_select: int
    ram_size: int
    flash_id_raw: bytes = b""


@dataclass(frozen=True)
class RamInfo:
    """The flash-info RAM block, field by field as mtkclient reads it
    (bkerler/mtkclient `mtkclient/Library/DA/legacy/dalegacy_flash_param.py`, Legacy_ConfigInfo):
    u32 int_sram_ret, u32 int_sram_size, u32 ext_ram_ret, u8 type, u8 chip select,
    u64 size, 16-byte random id. Informational only: nothing is decided on it."""

    int_sram_ret: int
    int_sram_size: int
    ext_ram_ret: int
    ext_ram_type: int
    ext_ram_chip_select: int
    ext_ram_size: int
    random_id: bytes

    @classmethod
    def parse(cls, block: bytes) -> RamInfo:
        a, b, c, typ, cs, size, rid = struct.unpack(">IIIBBQ16s", block)
        return cls(a, b, c, typ, cs, size, rid)


@dataclass(frozen=True)
class FlashInfo:
    """eMMC geometry from the DA's flash-info block (sizes in bytes)."""

    boot1: int
    boot2: int
    rpmb: int
    gp: tuple[int, int, int, int]
    user: int
    cid: bytes
    fw_version: bytes
    download_status: int
    boot_style: int
    nand_ids: tuple[int, ...] = ()
    ram: RamInfo | None = None
    cid_raw: bytes = b""

    def size_of(self, part: int) -> int:
        """Size of an eMMC hardware partition by its SWITCH_PART id."""
        sizes = {P.PART_BOOT1: self.boot1, P.PART_BOOT2: self.boot2, P.PART_RPMB: self.rpmb,
                 P.PART_USER: self.user, 4: self.gp[0], 5: self.gp[1], 6: self.gp[2],
                 7: self.gp[3]}
        if part not in sizes:
            raise UsageError(f"unknown eMMC partition id {part}",
                             hint="Use 1 (BOOT1), 2 (BOOT2), 3 (RPMB), 4–7 (GP1–4) or 8 (USER).")
        return sizes[part]


def _check_packet_size(packet_size: int) -> None:
    if packet_size <= 0 or packet_size % P.SECTOR or packet_size > MAX_PACKET:
        raise UsageError(
            f"packet size {packet_size} is not allowed",
            hint="Use a multiple of 512 bytes between 512 B and 16 MiB (default 1 MiB).",
        )


def _read_source(source: BinaryIO, n: int, where: str) -> bytes:
    """Exactly n bytes from a local file object (short reads are legal for raw streams)."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        try:
            chunk = source.read(n - got)
        except OSError as exc:
            raise DiskError(f"cannot read the image for {where}: {exc}",
                            hint="Check that the firmware file is readable.") from None
        if not chunk:
            raise DiskError(
                f"the image for {where} ended {n - got} bytes early",
                hint="The file changed or is truncated; re-download or re-unpack the firmware.",
            )
        parts.append(chunk)
        got += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class DaSession:
    """One conversation with a running legacy DA, from SYNC to FINISH."""

    def __init__(self, transport: Transport, *, timeout: float = 10.0) -> None:
        self.t = transport
        self.timeout = timeout
        self.report: StorageReport | None = None
        self.flash: FlashInfo | None = None

    # -- low level ------------------------------------------------------------------------------
    def _read(self, n: int, what: str, timeout: float | None = None) -> bytes:
        try:
            return self.t.read(n, self.timeout if timeout is None else timeout)
        except DeviceTimeout as exc:
            raise DeviceTimeout(
                f"DA did not send {what}",
                hint="The phone stopped answering; " + RECONNECT_HINT,
                spft_code=4001,
                details=exc.details,
            ) from None

    def _u8(self, what: str, timeout: float | None = None) -> int:
        return self._read(1, what, timeout)[0]

    def _u16(self, what: str) -> int:
        return int.from_bytes(self._read(2, what), "big")

    def _u32(self, what: str, timeout: float | None = None) -> int:
        return int.from_bytes(self._read(4, what, timeout), "big")

    def _u64(self, what: str) -> int:
        return int.from_bytes(self._read(8, what), "big")

    def _data_timeout(self, n: int) -> float:
        # generous for a slow full-speed USB link: base timeout + 2 s per MiB
        return self.timeout + 2.0 * n / (1024 * 1024)

    def _unexpected(self, what: str, got: int, expected: int) -> ProtocolError:
        if got == P.UNKNOWN_CMD:
            return ProtocolError(
                f"DA does not know the command ({what})",
                hint="The DA file does not match this protocol; use the MT6589 legacy DA.",
                details={"got": got},
            )
        return ProtocolError(
            f"DA sent 0x{got:02X} instead of 0x{expected:02X} ({what})",
            hint="The phone and romkit lost step; " + RECONNECT_HINT,
            details={"got": got, "expected": expected},
        )

    def _expect(self, byte: int, what: str, timeout: float | None = None) -> None:
        got = self._u8(what, timeout)
        if got != byte:
            raise self._unexpected(what, got, byte)

    def _ack_or_nack(self, what: str, timeout: float | None = None) -> bool:
        """True on ACK, False on NACK; anything else is a protocol error."""
        got = self._u8(what, timeout)
        if got == P.ACK:
            return True
        if got == P.NACK:
            return False
        raise self._unexpected(what, got, P.ACK)

    def _nand_ids(self, what: str) -> tuple[int, ...]:
        count = self._u16(f"the NAND id count ({what})")
        if count > MAX_NAND_IDS:
            raise ProtocolError(f"DA reported {count} NAND ids ({what})",
                                hint="The phone sent garbage; " + RECONNECT_HINT)
        raw = self._read(2 * count, f"the NAND ids ({what})")
        return tuple(int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2))

    # -- bring-up -------------------------------------------------------------------------------
    def sync(self, timeout: float | None = None) -> None:
        """Wait for the DA's first byte (0xC0) after JUMP_DA.

        A real phone runs whatever was uploaded: a DA for another chip, or a corrupted one,
        never says anything, so silence gets its own message (SP Flash Tool's 4001,
        S_FT_DA_NO_RESPONSE) instead of a generic timeout.
        """
        wait = DA_START_TIMEOUT if timeout is None else timeout
        try:
            got = self.t.read(1, wait)[0]
        except DeviceTimeout:
            raise DeviceTimeout(
                f"the phone did not start the Download Agent (no SYNC 0xC0 within {wait:g} s "
                "of JUMP_DA)",
                hint="The DA file does not run on this phone (wrong chip, damaged or not an "
                "MT6589 legacy DA): use MTK_AllInOne_DA.bin from the firmware's SP Flash Tool "
                "(v3/v5), then reconnect the phone (battery out and in) and start again.",
                spft_code=4001,
                details={"timeout": wait},
            ) from None
        if got != P.SYNC_CHAR:
            raise ProtocolError(
                f"DA started with 0x{got:02X} instead of SYNC 0xC0",
                hint="The DA did not start correctly; " + RECONNECT_HINT,
                spft_code=4002,
                details={"got": got},
            )

    def read_storage_report(self) -> StorageReport:
        """Read the NAND/eMMC detection report and the DA version that follows our ACK.

        Layout [capture: empty-sixty-five brom-dump-002.png frames 869–877]: u32 NAND status
        (0x0BC4 = none), u16 NAND-id count, the ids, u32 eMMC status, 16 bytes CID.
        """
        nand_status = self._u32("the NAND status")
        nand_ids = self._nand_ids("storage report")
        emmc_status = self._u32("the eMMC status")
        cid = decode_cid(self._read(16, "the eMMC CID"))
        self.t.write(bytes([P.ACK]))
        ver = self._read(3, "its version")
        self.report = StorageReport(nand_status, nand_ids, emmc_status, cid.cid,
                                    (ver[0], ver[1], ver[2]), cid.raw, cid.order)
        return self.report

    def send_config(self, brom_ver: int, bl_ver: int, *, reset_key: int = 0,
                    force_charge: int = 1) -> bool:
        """Send the stage-2 config; True if the DA then asks for DRAM setup (0x0BC3).

        reset_key is 0 for MT6589 (hw code 0x6583), the only chip romkit targets.
        """
        cfg = struct.pack(
            ">BBHBIBIBBBBI",
            brom_ver & 0xFF, bl_ver & 0xFF, 0x0008, 0, 0x7007FFFF, 1, 0,
            force_charge, reset_key, 0x02, 0, 0,
        )
        self.t.write(cfg)
        answer = self._u32("its answer to the stage-2 config")
        if answer == P.DRAM_NEEDED:
            return True
        if answer == P.DRAM_NOT_NEEDED:
            return False
        raise ProtocolError(
            f"DA answered the config with 0x{answer:08X}",
            hint="The DA rejected its configuration; " + RECONNECT_HINT,
            spft_code=3002,
            details={"answer": answer},
        )

    def init_dram(self, emi_blob: bytes, emi_version: int) -> DramResult:
        """Upload the preloader's EMI settings so the DA can bring up DRAM.

        A NACK or a non-zero m_ext_ram_ret means none of the EMI entries fits this phone's
        memory chip — SP Flash Tool's 4032 — so the error names the part the DA reported.
        """
        flash_id_len = self._u32("the flash id length")
        if flash_id_len > MAX_FLASH_ID_LEN:
            raise ProtocolError(f"DA announced a {flash_id_len}-byte flash id",
                                hint="The phone sent garbage; " + RECONNECT_HINT)
        flash_id_raw = self._read(flash_id_len, "the flash id")
        # The same CID in the same word order as the storage report (mtkclient tries both
        # orders of it when it looks for a preloader: dalegacy_lib.py set_stage2_config).
        flash_id = decode_cid(flash_id_raw).cid
        part = describe_memory_part(flash_id)
        marker = self._u32("the NAND id marker")
        if marker != P.DRAM_NAND_IDS:
            raise ProtocolError(f"DA sent 0x{marker:08X} where 0x00000BC4 was expected",
                                hint="The phone and romkit lost step; " + RECONNECT_HINT)
        nand_ids = self._nand_ids("DRAM setup")
        if emi_version not in SUPPORTED_EMI_VERSIONS:
            raise DramInitError(
                f"EMI table version v{emi_version} is not supported (MT6589 uses v10)",
                hint="Use the preloader of an MT6589 firmware (MTK_BLOADER_INFO_v10).",
                spft_code=4032,
            )
        self.t.write(bytes([P.DA_ENABLE_DRAM]) + struct.pack(">I", emi_version))
        if not self._ack_or_nack("its answer to ENABLE_DRAM"):
            raise DramInitError(
                f"the DA refused EMI table version v{emi_version}",
                hint="The preloader does not match this DA; use the firmware's own "
                "preloader and DA.",
                spft_code=4032,
                details={"memory_part": part, "flash_id": flash_id.hex()},
            )
        ram_info = self._read(16, "the RAM-Info block")
        emi_len = self._u32("the EMI length")
        if not 0 < emi_len <= MAX_EMI_LEN:
            raise ProtocolError(f"DA asked for {emi_len} bytes of EMI settings",
                                hint="The phone sent garbage; " + RECONNECT_HINT)
        self.t.write(bytes([P.ACK]))
        # Exactly the announced length, cut or zero-padded [our reading]: a DA that reads L
        # bytes would take any surplus as commands. mtkclient sends its whole table here
        # (dalegacy_lib.py, EMI v10/v11 branch) and MT6572 phones hang at this step
        # (mtkclient issue #318); SP Flash Tool's own length is not captured yet.
        payload = emi_blob[:emi_len].ljust(emi_len, b"\x00")
        self.t.write(payload)
        got = self._u16("the EMI checksum")
        expected = bytesum.byte_sum16(payload)
        if got != expected:
            raise DramInitError(
                f"EMI upload corrupted: DA checksum 0x{got:04X}, expected 0x{expected:04X}",
                hint="Bytes were lost on the way; try another cable or USB port.",
                spft_code=4032,
            )
        self.t.write(bytes([P.ACK]) + struct.pack(">I", P.EMI_DONE_MAGIC))
        ret = self._u32("the DRAM result", timeout=max(self.timeout, DRAM_TIMEOUT))
        ram_type = self._u8("the RAM type")
        chip_select = self._u8("the RAM chip select")
        ram_size = self._u64("the RAM size")
        if ret != 0:
            raise DramInitError(
                f"DRAM init failed: the preloader has no EMI entry for this phone's memory "
                f"part {part}",
                hint="This phone has a memory chip the firmware's preloader does not know "
                "(typical of 2014 units): use a preloader that lists it — `romkit prepare` "
                "swaps in the newer one — or the firmware for this hardware revision.",
                spft_code=4032,
                details={"m_ext_ram_ret": ret, "memory_part": part, "flash_id": flash_id.hex()},
            )
        return DramResult(flash_id, nand_ids, ram_info, emi_len, ram_type, chip_select, ram_size,
                          flash_id_raw)

    def upload_stage2(self, addr: int, data: bytes,
                      on_packet: PacketCallback | None = None) -> None:
        """Send DA stage 2 into DRAM in 4 KiB packets, each acknowledged."""
        self.t.write(struct.pack(">III", addr, len(data), STAGE2_CHUNK))
        if not self._ack_or_nack("its answer to the stage-2 header"):
            raise DeviceError(
                f"DA refused stage 2 at 0x{addr:08X} ({len(data)} bytes)",
                hint="DRAM is not up or the DA file does not fit this phone; use the DA of "
                "the firmware package.",
                spft_code=3002,
            )
        view = memoryview(data)
        for pos in range(0, len(data), STAGE2_CHUNK):
            self.t.write(view[pos : pos + STAGE2_CHUNK])
            self._expect(P.ACK, f"the ACK for stage-2 packet at +0x{pos:X}")
            if on_packet is not None:
                on_packet(min(pos + STAGE2_CHUNK, len(data)), len(data))
        self.t.write(bytes([P.ACK]))
        self._expect(P.ACK, "the end-of-stage-2 ACK")

    def read_flash_info(self) -> FlashInfo:
        """Read the NOR/NAND/eMMC/SD/RAM/pass info blocks stage 2 sends after starting.

        The NAND block is 0x11 bytes, 2 bytes per NAND id, then 9 bytes. Which count sizes it
        is contested: mtkclient takes the count inside the block (u16 at +15; if 0, its
        32-bit layout's count at +11) (dalegacy_lib.py read_flash_info); romkit's first
        virtual phone used the storage report's count with a 0 in the block. The DA sends all
        blocks in one go without waiting, so we try the candidate lengths shortest first,
        reading only as far as each needs, and keep the first whose pass-info block is well
        formed (ACK first, SOC byte last). A wrong shorter reading is rejected before a single
        byte of the next command's answer could be touched.
        """
        self._read(P.INFO_NOR_LEN, "the NOR info")
        head = self._read(NAND_INFO_HEAD, "the NAND info")
        count64 = int.from_bytes(head[15:17], "big")
        count32 = int.from_bytes(head[11:13], "big")
        tails: set[int] = set()
        if count64 <= MAX_NAND_IDS:
            tails.add(2 * count64 + NAND_INFO_TAIL)
        if count64 == 0 and 2 <= count32 <= MAX_NAND_IDS:
            tails.add(2 * count32 - 4 + NAND_INFO_TAIL)
        if self.report is not None:
            tails.add(2 * len(self.report.nand_ids) + NAND_INFO_TAIL)
        buf = bytearray()
        chosen: int | None = None
        for tail in sorted(tails):
            need = tail + FLASH_INFO_REST
            if len(buf) < need:
                buf += self._read(need - len(buf), "the flash info")
            passinfo = bytes(buf[need - P.INFO_PASS_LEN : need])
            if passinfo[0] == P.ACK and passinfo[-1] in (P.SOC_OK, P.SOC_FAIL):
                chosen = tail
                break
        if chosen is None:
            raise ProtocolError(
                "the DA's flash info does not match any known layout",
                hint="The phone sent garbage or an unknown DA is running; " + RECONNECT_HINT,
                details={"nand_head": head.hex(), "tried": sorted(tails)},
            )
        nand_tail = bytes(buf[:chosen])
        rest = bytes(buf[chosen : chosen + FLASH_INFO_REST])
        nand_block = head + nand_tail
        if count64 == 0 and count32 >= 2 and chosen == 2 * count32 - 4 + NAND_INFO_TAIL:
            ids_raw = nand_block[13 : 13 + 2 * count32]  # mtkclient's 32-bit layout
        else:
            ids_raw = nand_block[NAND_INFO_HEAD : NAND_INFO_HEAD + chosen - NAND_INFO_TAIL]
        nand_ids = tuple(int.from_bytes(ids_raw[i : i + 2], "big")
                         for i in range(0, len(ids_raw) - 1, 2))
        emmc = rest[: P.INFO_EMMC_LEN]
        ram_block = rest[P.INFO_EMMC_LEN + P.INFO_SDC_LEN :
                         P.INFO_EMMC_LEN + P.INFO_SDC_LEN + P.INFO_RAM_LEN]
        passinfo = rest[-P.INFO_PASS_LEN :]
        ret, boot1, boot2, rpmb, gp1, gp2, gp3, gp4, user, cid_raw, fw = struct.unpack(
            ">I8Q16s8s", emmc
        )
        _ack, dl_status, boot_style, soc = struct.unpack(">BIIB", passinfo)
        if soc != P.SOC_OK:
            raise DeviceError(
                f"DA reports the SoC check failed (0x{soc:02X})",
                hint="The DA does not run correctly on this phone; " + RECONNECT_HINT,
                details={"soc": soc},
            )
        if ret != 0 or user == 0:
            raise StorageError(
                f"DA found no usable eMMC (status 0x{ret:08X}, user area {user} bytes)",
                hint="The eMMC did not initialise; reconnect and retry. If it persists the "
                "eMMC may be dead.",
                spft_code=3149,
                details={"emmc_ret": ret},
            )
        cid = decode_cid(cid_raw)
        self.flash = FlashInfo(boot1, boot2, rpmb, (gp1, gp2, gp3, gp4), user, cid.cid, fw,
                               dl_status, boot_style, nand_ids, RamInfo.parse(ram_block),
                               cid.raw)
        return self.flash

    def usb_status(self, timeout: float | None = None) -> int:
        """USB_CHECK_STATUS (0x72): ACK, then the speed byte (0 full, 1 high speed).

        A DA that does not know 0x72 answers BB [reference]; it cannot switch speed either,
        so that counts as "high speed, nothing to do" rather than an error.
        """
        self.t.write(bytes([P.DA_USB_CHECK_STATUS]))
        got = self._u8("the ACK for USB_CHECK_STATUS", timeout)
        if got == P.UNKNOWN_CMD:
            return 1
        if got != P.ACK:
            raise self._unexpected("the ACK for USB_CHECK_STATUS", got, P.ACK)
        return self._u8("the USB speed", timeout)

    def request_high_speed(self) -> None:
        """USB_SET_SPEED (0x70 0x01): the DA answers ACK, then (on real USB) re-enumerates
        [outside: mtkclient dalegacy_lib.py upload_da1 closes the port and reconnects]."""
        self.t.write(bytes([P.DA_USB_SET_SPEED, 0x01]))
        self._expect(P.ACK, "the ACK for USB_SET_SPEED")

    def check_speed(self, follow: Callable[[DaSession], int] | None = None) -> int:
        """Ask for high speed if the link reports full speed; returns the speed in use.

        `follow` is called after the DA acknowledged the switch: it must find the phone again
        (same port, or the new one it re-enumerated on), point `self.t` at it and return the
        speed the DA reports there. Without it the port is assumed to stay (old behaviour).
        """
        speed = self.usb_status()
        if speed != 0:
            return speed
        try:
            self.request_high_speed()
        except TransportError:
            # The port vanished with (or before) the ACK: the DA is already re-enumerating,
            # and a pty or USB hang-up may drop the last bytes in flight. `follow` finds it.
            if follow is None:
                raise
        if follow is None:
            return 1
        return follow(self)

    def _settle(self, what: str, min_acks: int = 1, max_acks: int = 2) -> None:
        """Absorb optional trailing ACKs, in order, by asking USB_CHECK_STATUS.

        The DA is single-threaded: any ACK it still owes for the command that just ended is
        on the wire before its answer to 0x72 (ACK, speed 0/1/2). So we read ACKs until the
        first byte that is not one; that byte is the speed. `min_acks`/`max_acks` count the
        0x72 ACK too. A NACK in the run means the DA reports a failure of `what`; a DA that
        does not know 0x72 answers BB instead of ACK + speed, which ends the run just as well.
        """
        self.t.write(bytes([P.DA_USB_CHECK_STATUS]))
        slow = max(self.timeout, DRAM_TIMEOUT)
        acks = 0
        while True:
            got = self._u8(f"the end of {what}", slow)
            if got == P.ACK and acks < MAX_SETTLE_ACKS:
                acks += 1
                continue
            if got == P.NACK:
                raise StorageError(f"the phone reports a failure at the end of {what}",
                                   hint=WRITE_HINT, spft_code=3149)
            break
        if got == P.UNKNOWN_CMD:  # a DA without 0x72: its BB still marks the end, in order
            acks += 1
        if not min_acks <= acks <= max_acks or got > 2 and got != P.UNKNOWN_CMD:
            raise ProtocolError(
                f"DA sent {acks} ACKs then 0x{got:02X} at the end of {what}",
                hint="The phone and romkit lost step; " + RECONNECT_HINT,
                details={"acks": acks, "last": got},
            )

    # -- commands -------------------------------------------------------------------------------
    def switch_part(self, part: int) -> None:
        """Select the eMMC hardware partition for the next READ / FORMAT."""
        self.t.write(bytes([P.DA_SWITCH_PART]))
        self._expect(P.ACK, "the ACK for SWITCH_PART")
        self.t.write(bytes([part & 0xFF]))
        if not self._ack_or_nack(f"its answer to SWITCH_PART {part_name(part)}"):
            raise StorageError(
                f"phone refused to switch to {part_name(part)}",
                hint="This phone's eMMC has no such partition; check the scatter file.",
                details={"partition": part},
            )

    def write(self, part: int, address: int, source: BinaryIO, length: int, *,
              packet_size: int = P.DA_PACKET_DEFAULT, on_packet: PacketCallback | None = None,
              max_retries: int = 3, limit: int | None = None) -> int:
        """Stream `length` bytes from `source` to `part` at byte `address`.

        The header announces the length rounded up to whole 512-byte sectors and the tail is
        zero-padded: mtkclient rounds the header length up (dalegacy_lib.py
        sdmmc_write_data), romkit's first reading sent it unpadded with padded packets, and
        with a sector-multiple length both readings write the same bytes. The padding lands
        inside the target; if it would cross `limit` (the end of the partition being written,
        default the end of the eMMC hardware partition) nothing is sent.

        After the last packet's CONT (0x69) some readings send a final ACK and some none
        (mtkclient and the shared reference: none): `_settle` absorbs either, in order.
        Returns the 16-bit byte sum of the image bytes (the checksum.ini value; the zero
        padding adds nothing to it). A NACKed packet is re-sent up to `max_retries` times.
        """
        _check_packet_size(packet_size)
        if length <= 0:
            return 0
        where = f"{part_name(part)} at 0x{address:X}"
        padded = -(-length // P.SECTOR) * P.SECTOR
        if limit is None and self.flash is not None:
            limit = self.flash.size_of(part)
        if limit is not None and address + padded > limit:
            raise StorageError(
                f"writing 0x{length:X} bytes to {where} needs 0x{padded:X} bytes (whole "
                f"512-byte sectors), which would cross the end of the partition at "
                f"0x{limit:X}",
                hint="The image does not fit its partition once rounded up to whole sectors; "
                "check that the scatter file matches the firmware.",
                spft_code=4008,
                details={"partition": part, "address": address, "length": length,
                         "limit": limit},
            )
        self.t.write(bytes([P.DA_WRITE_DATA]) + struct.pack(
            ">BBQQI", P.STORAGE_EMMC_WRITE, part & 0xFF, address, padded, packet_size))
        if not self._ack_or_nack(f"its answer to WRITE {where}"):
            raise StorageError(
                f"phone refused to write 0x{length:X} bytes to {where}",
                hint="The range does not fit this phone's eMMC: the scatter file does not "
                "match this phone.",
                spft_code=4008,
                details={"partition": part, "address": address, "length": length},
            )
        done = 0
        total = 0
        while done < padded:
            n = min(packet_size, padded - done)
            real = max(0, min(n, length - done))
            data = _read_source(source, real, where) if real else b""
            csum = bytesum.byte_sum16(data)
            packet = b"".join((bytes([P.ACK]), data, bytes(n - real), struct.pack(">H", csum)))
            offset = address + done
            for attempt in range(max_retries + 1):
                self.t.write(packet)
                got = self._u8(f"its answer to the packet at 0x{offset:X}",
                               self._data_timeout(n))
                if got == P.CONT:
                    break
                if got != P.NACK:
                    raise self._unexpected(f"packet at 0x{offset:X}", got, P.CONT)
                if attempt == max_retries:
                    raise StorageError(
                        f"write to {part_name(part)} failed at offset 0x{offset:X}: packet "
                        f"rejected {max_retries + 1} times",
                        hint=WRITE_HINT,
                        spft_code=3149,
                        details={"partition": part, "offset": offset, "spft_detail": 4008},
                    )
            done += n
            total = (total + csum) & 0xFFFF
            if on_packet is not None:
                on_packet(min(done, length), length)
        self._settle(f"the write to {where}", min_acks=1, max_acks=2)
        return total

    def read(self, part: int, address: int, length: int, sink: BinaryIO, *,
             packet_size: int = P.DA_PACKET_DEFAULT, on_packet: PacketCallback | None = None,
             max_retries: int = 3) -> int:
        """Read `length` bytes of `part` at `address` into `sink`; returns their 16-bit sum.

        Each packet's checksum is verified; a bad packet is asked for again (host NACK).
        """
        _check_packet_size(packet_size)
        if length <= 0:
            return 0
        where = f"{part_name(part)} at 0x{address:X}"
        self.switch_part(part)
        self.t.write(bytes([P.DA_READ]) + struct.pack(
            ">BBQQI", P.HOST_OS_LINUX, P.STORAGE_EMMC, address, length, packet_size))
        if not self._ack_or_nack(f"its answer to READ {where}"):
            self.t.write(bytes([P.NACK]))
            code = int.from_bytes(self._read(4, "the READ error code"), "little")
            raise StorageError(
                f"phone refused to read 0x{length:X} bytes of {where} (DA error 0x{code:08X})",
                hint="The range does not fit this phone's eMMC; check the scatter file.",
                spft_code=4009,
                details={"partition": part, "address": address, "length": length,
                         "da_error": code},
            )
        done = 0
        total = 0
        while done < length:
            n = min(packet_size, length - done)
            offset = address + done
            for attempt in range(max_retries + 1):
                data = self._read(n, f"the data at 0x{offset:X}", self._data_timeout(n))
                csum = self._u16(f"the checksum of the data at 0x{offset:X}")
                if bytesum.byte_sum16(data) == csum:
                    break
                if attempt == max_retries:
                    raise StorageError(
                        f"read of {part_name(part)} failed at offset 0x{offset:X}: checksum "
                        f"wrong {max_retries + 1} times",
                        hint="The link keeps corrupting data: try another USB cable or port.",
                        spft_code=4009,
                        details={"partition": part, "offset": offset},
                    )
                self.t.write(bytes([P.NACK]))
            try:
                sink.write(data)
            except OSError as exc:
                raise DiskError(f"cannot store the data read from {where}: {exc}",
                                hint="Free disk space or choose another output folder.") from None
            self.t.write(bytes([P.ACK]))
            done += n
            total = (total + csum) & 0xFFFF
            if on_packet is not None:
                on_packet(done, length)
        return total

    def format(self, part: int, address: int, length: int,
               on_percent: PercentCallback | None = None) -> None:
        """Erase (write zeros over) a range of `part`, following the DA's percent reports."""
        where = f"{part_name(part)} at 0x{address:X}"
        self.switch_part(part)
        self.t.write(bytes([P.DA_FORMAT]) + struct.pack(
            ">BBBBQQ", P.STORAGE_EMMC, 0, 0, 0, address, length))
        if not self._ack_or_nack(f"its answer to FORMAT {where}"):
            raise StorageError(
                f"phone refused to format 0x{length:X} bytes of {where}",
                hint="The range does not fit this phone's eMMC; check the scatter file.",
                spft_code=4008,
                details={"partition": part, "address": address, "length": length},
            )
        last = -1
        slow = max(self.timeout, DRAM_TIMEOUT)
        while True:
            # One or two ACKs open each progress record (romkit's first reading: one;
            # mtkclient formatflash and the shared reference: two). The u32 status that
            # follows starts with 0x00 (S_DONE = 0, every legacy DA code is < 0x01000000),
            # so extra ACKs are told apart from it byte by byte.
            acks = 0
            first = self._u8(f"the FORMAT progress of {where}", slow)
            while first == P.ACK and acks < MAX_SETTLE_ACKS:
                acks += 1
                first = self._u8(f"the FORMAT progress of {where}", slow)
            if acks == 0 and last >= 0:  # the first record may own just the header's ACK
                raise self._unexpected(f"the FORMAT progress of {where}", first, P.ACK)
            status = int.from_bytes(bytes([first]) + self._read(3, f"the FORMAT status of "
                                                                   f"{where}"), "big")
            percent = self._u8(f"the FORMAT percent of {where}")
            if status != 0:
                raise StorageError(
                    f"format of {where} failed (DA status 0x{status:08X})",
                    hint="The eMMC refused to erase; reconnect and retry. If it persists the "
                    "eMMC may be failing.",
                    spft_code=3149,
                    details={"partition": part, "status": status},
                )
            if percent > 100 or percent < last:
                raise ProtocolError(f"DA reported format progress {percent}% after {last}%",
                                    hint="The phone sent garbage; " + RECONNECT_HINT)
            last = percent
            self.t.write(bytes([P.ACK]))
            if on_percent is not None:
                on_percent(percent)
            if percent == 100:
                break
        # The end: one ACK (romkit's first reading) or two (mtkclient, the reference).
        self._settle(f"FORMAT {where}", min_acks=2, max_acks=3)

    def read_pmt(self) -> bytes:
        """The PMT entries the DA reads from the PMT partition (b"" = no valid PMT)."""
        self.t.write(bytes([P.DA_READ_PMT]))
        self._expect(P.ACK, "the ACK for READ_PMT")
        length = self._u32("the PMT length")
        if length > MAX_PMT_LEN:
            raise ProtocolError(f"DA announced a {length}-byte PMT",
                                hint="The phone sent garbage; " + RECONNECT_HINT)
        self.t.write(bytes([P.ACK]))
        data = self._read(length, "the PMT entries") if length else b""
        self.t.write(bytes([P.ACK]))
        return data

    def finish(self, mode: int = P.FINISH_NORMAL) -> None:
        """End the session; the phone then reboots (mode 0 normal, 1 home, 2 fastboot)."""
        self.t.write(bytes([P.DA_FINISH]))
        self._expect(P.ACK, "the ACK for FINISH")
        self.t.write(struct.pack(">I", mode))
        self._expect(P.ACK, "the final ACK of FINISH")
