"""The phone side of the legacy download agent: DRAM bring-up, stage 2, eMMC commands.

Written from ../shared/reference/mtk-protocol.md §4, mtkclient's legacy-DA host code
(`mtkclient/Library/DA/legacy/dalegacy_lib.py`, `dalegacy_flash_param.py`: facts only) and
the real MT6589 capture in arzam16/empty-sixty-five (`brom-dump/README.md`,
`images/brom-dump-002.png`), not from the host engine. Where those sources disagree the
phone follows its dialect (romkit/sim/dialects.py). The phone checks what a real DA would
check — the EMI table against its own memory part, ranges against its partitions, every
packet's checksum — and answers hostile or malformed requests by the protocol (NACK /
unknown-command) instead of failing. Error numbers are SP Flash Tool v3 (the MT6589 era)
`S_DA_*` codes.
"""

from __future__ import annotations

import struct
import time

from romkit import bytesum
from romkit.device import protocol as p
from romkit.errors import TransportError
from romkit.sim.factory import pmt_location
from romkit.sim.faults import FaultTracker
from romkit.sim.link import LinkTimeout
from romkit.sim.session import EmiResult, HostViolation, PhoneConfig, TransferRecord, Wire
from romkit.sim.storage import EmmcStorage

# After the host's ACK of the storage report the DA sends three bytes; with SP Flash Tool's
# MT6589 DA they are 03 02 86 (capture, brom-dump-002.png frame 881 onwards; issue 14 item 8).
DA_VERSION = bytes([0x03, 0x02, 0x86])
# The storage report of the capture: NAND status 0x00000BC4, five NAND-ID slots, all zero.
NAND_IDS = 5
S_DA_SETUP_DRAM_FAIL = 0x0BBA
S_DA_INVALID_RANGE = 0x0BDC
S_DA_NOR_FLASH_NOT_FOUND = 0x0BC3
S_DA_NAND_FLASH_NOT_FOUND = 0x0BC4
S_DA_SDMMC_FLASH_NOT_FOUND = 0x0C4A
EMI_VERSION_V10 = 10
EMI_READ_LEN = p.EMI_ENTRY_SIZE_V10 * 16  # the DA reads room for 16 v10 entries
EMI_TYPE_DISCRETE_LPDDR2 = 0x0002
STAGE2_MAX = 16 * 1024 * 1024
PACKET_MAX = 16 * 1024 * 1024
# docs/PROTOCOL.md step 3: the stage-2 config fields add up to 22 bytes.
STAGE2_CONFIG_LEN = 22
RAM_INFO = b"RAM-Info\x00\x00\x00\x02\x00\x00\x00\x01"  # informative only
# `as-sent` EMI upload: the host has finished when it pauses this long. On USB the DA needs
# no guess: the host's table arrives as one bulk transfer whose short last packet ends it, and
# the host reads the checksum at once: mtkclient reads it with its shortest serial timeout,
# 20 ms (mtkclient/Library/Connection/seriallib.py usbread: `timeout < 0.02` → 0.02, an empty
# read ends the read) and gives up when it is late. A pty or TCP link has no transfer
# boundaries, so a short pause stands in for the short packet: far below 20 ms, far above the
# gap inside one host write on a local link (one write syscall, sub-millisecond). With
# 0.15 s mtkclient failed at DRAM setup; with 0.005 s it passed every stage (CONFORMANCE.md).
EMI_AS_SENT_IDLE = 0.005
EMI_AS_SENT_MAX = 64 * 1024
INT_SRAM_SIZE = p.MT6589_SRAM[1] - p.MT6589_SRAM[0]
RAM_RANDOM_ID = bytes.fromhex("5349d0c5a1b2c3d40f1e2d3c4b5a6978")  # synthetic, stable
USB_FULL_SPEED, USB_HIGH_SPEED = 0, 1  # USB_CHECK_STATUS answer (mtkclient: 1 = high speed)
USB_PID_DA = 0x2001  # the DA's VCOM after a speed switch (shared reference §1)
FORMAT_STEPS = 10
KNOWN_PARTS = (p.PART_BOOT1, p.PART_BOOT2, p.PART_RPMB, p.PART_USER)


class DisconnectFault(TransportError):
    """The disconnect fault fired: the phone pulls the cable."""

    default_hint = "reconnect to the phone and resume"


def cid_words_le(cid: bytes) -> bytes:
    """The CID as the DA sends it: four u32 words, each little-endian.

    Capture (empty-sixty-five brom-dump-002.png frame 877): wire `4d000115 57314738 57250241
    8f604418` for the CID the DA's UART log prints as words 1501004D 38473157 41022557
    1844608F (issue 14 item 7). Used for the storage report, the DRAM step's flash ID and the
    eMMC flash-info block alike (the DA keeps the CID as u32 words).
    """
    return b"".join(cid[i:i + 4][::-1] for i in range(0, 16, 4))


def parse_emi_entries(blob: bytes) -> list[tuple[int, int, bytes]]:
    """(type, id_length, ID[16]) of each v10 EMI entry, up to the first with type 0."""
    size = p.EMI_ENTRY_SIZE_V10
    entries = []
    for off in range(0, len(blob) - size + 1, size):
        etype, id_len = struct.unpack_from("<II", blob, off + 4)
        if etype == 0:
            break
        entries.append((etype, id_len, blob[off + 0x10:off + 0x20]))
    return entries


def match_emi(entries: list[tuple[int, int, bytes]], cid: bytes) -> int | None:
    """Index of the first entry that fits the phone's part (ID prefix, or discrete fallback)."""
    for i, (etype, id_len, ident) in enumerate(entries):
        if 0 < id_len <= len(ident) and ident[:id_len] == cid[:id_len]:
            return i
        if id_len == 0 and etype == EMI_TYPE_DISCRETE_LPDDR2:
            return i
    return None


class DaStage:
    """One DA run, from SYNC to FINISH. `run()` returns the FINISH mode."""

    def __init__(self, wire: Wire, config: PhoneConfig, storage: EmmcStorage,
                 faults: FaultTracker) -> None:
        self.w = wire
        self.cfg = config
        self.storage = storage
        self.faults = faults
        self.log = wire.log
        self.dram_up = False
        self.part = p.PART_USER
        self.stream_pos = 0  # data bytes of all WRITE commands accepted in this session
        self.packet_no = 0
        self.dialect = config.dialect
        self.speed = USB_HIGH_SPEED if self.dialect.usb_speed == "high" else USB_FULL_SPEED

    # -- setup -------------------------------------------------------------------------------
    def run(self) -> int:
        w = self.w
        self.log.da_started = True
        w.byte(p.SYNC_CHAR)
        w.send(struct.pack(">IH", S_DA_NAND_FLASH_NOT_FOUND, NAND_IDS) + bytes(2 * NAND_IDS))
        w.send(struct.pack(">I", 0) + cid_words_le(self.cfg.cid))
        w.expect(p.ACK, "storage report ACK")
        w.send(DA_VERSION)
        self.log.commands.append(f"DA:CONFIG {w.read(STAGE2_CONFIG_LEN).hex()}")
        w.u32(p.DRAM_NEEDED)
        if self._dram() and self._stage2():
            self._flash_info()
            return self._commands()
        return self._dead()

    def _dram(self) -> bool:
        w = self.w
        w.u32(len(self.cfg.cid))
        w.send(self._info_cid())
        w.send(struct.pack(">IH", p.DRAM_NAND_IDS, NAND_IDS) + bytes(2 * NAND_IDS))
        op = w.read_byte()
        if op != p.DA_ENABLE_DRAM:
            raise HostViolation(f"expected ENABLE_DRAM (0xe8) from the host, got {op:#04x}")
        version = w.read_u32()
        emi = EmiResult(version=version)
        self.log.emi = emi
        self.log.commands.append("DA:ENABLE_DRAM")
        if version != EMI_VERSION_V10:
            emi.ext_ram_ret = S_DA_SETUP_DRAM_FAIL
            w.nack()
            return False
        w.ack()
        w.send(RAM_INFO)
        w.u32(EMI_READ_LEN)
        w.expect(p.ACK, "ACK before the EMI table")
        blob = self._emi_blob()
        emi.blob_len = len(blob)
        w.u16(bytesum.byte_sum16(blob))
        w.expect(p.ACK, "ACK of the EMI checksum")
        magic = w.read_u32()
        if magic != p.EMI_DONE_MAGIC:
            raise HostViolation(f"expected {p.EMI_DONE_MAGIC:#x} after the EMI table, "
                                f"got {magic:#x}")
        entries = parse_emi_entries(blob)
        emi.entries = [ident[:min(id_len, 16)].hex() for _t, id_len, ident in entries]
        emi.matched = match_emi(entries, self.cfg.cid)
        emi.ext_ram_ret = 0 if emi.matched is not None else S_DA_SETUP_DRAM_FAIL
        self.dram_up = emi.matched is not None
        w.u32(emi.ext_ram_ret)
        w.byte(p.RAM_TYPE_DRAM)
        w.byte(0)  # chip select
        w.send(struct.pack(">Q", self.cfg.ram_size if self.dram_up else 0))
        return self.dram_up

    def _info_cid(self) -> bytes:
        """The CID for the DRAM step and flash info, as the dialect's `info_cid` says."""
        if self.dialect.info_cid == "natural":
            return self.cfg.cid
        return cid_words_le(self.cfg.cid)

    def _emi_blob(self) -> bytes:
        """The EMI table as the dialect reads it: the announced length, or what was sent."""
        if self.dialect.emi_upload == "announced":
            return self.w.read(EMI_READ_LEN)
        blob = bytearray(self.w.read(1))
        while len(blob) < EMI_AS_SENT_MAX:
            try:
                blob += self.w.read(1, timeout=EMI_AS_SENT_IDLE)
            except LinkTimeout:
                break
        return bytes(blob)

    def _stage2(self) -> bool:
        w = self.w
        addr, size, packet = w.read_u32(), w.read_u32(), w.read_u32()
        base = p.MT6589_DRAM_BASE
        if not (base <= addr and 0 < size <= STAGE2_MAX and addr + size <= base
                + self.cfg.ram_size and 0 < packet <= PACKET_MAX):
            w.nack()
            return False
        w.ack()
        done = 0
        while done < size:
            n = min(packet, size - done)
            chunk = w.read(n)
            done += len(chunk)
            w.ack()
        w.expect(p.ACK, "ACK after stage 2")
        w.ack()
        self.log.stage2 = {"addr": addr, "size": size, "packet": packet}
        self.log.commands.append("DA:STAGE2")
        return True

    def _flash_info(self) -> None:
        """NOR, NAND, eMMC, SD, RAM and pass-info blocks, laid out as mtkclient's
        dalegacy_flash_param.py reads them (Legacy_NorInfo … PassInfo)."""
        s = self.storage.sizes
        nor = struct.pack(">I", S_DA_NOR_FLASH_NOT_FOUND).ljust(p.INFO_NOR_LEN, b"\0")
        # NAND (Legacy_NandInfo64): ret, chip select, flash id, u64 size, id count — the same
        # five empty slots the storage report announced — the ids, then 9 bytes of geometry.
        nand = (struct.pack(">IBHQH", S_DA_NAND_FLASH_NOT_FOUND, 0, 0, 0, NAND_IDS)
                + bytes(2 * NAND_IDS) + bytes(9))
        emmc = struct.pack(">IQQQQQQQQ", 0, s[p.PART_BOOT1], s[p.PART_BOOT2], s[p.PART_RPMB],
                           0, 0, 0, 0, s[p.PART_USER]) + self._info_cid() + b"SIMFW001"
        sdc = struct.pack(">I", S_DA_SDMMC_FLASH_NOT_FOUND).ljust(p.INFO_SDC_LEN, b"\0")
        # RAM (Legacy_ConfigInfo): int_sram_ret, int_sram_size, ext_ram_ret, type, chip
        # select, u64 size, 16-byte random id = 0x26 bytes.
        ram = struct.pack(">IIIBBQ", 0, INT_SRAM_SIZE, 0 if self.dram_up else
                          S_DA_SETUP_DRAM_FAIL, p.RAM_TYPE_DRAM, 0,
                          self.cfg.ram_size) + RAM_RANDOM_ID
        passinfo = struct.pack(">BIIB", p.ACK, 0, 0, p.SOC_OK)
        blocks = (nor, nand, emmc, sdc, ram, passinfo)
        assert [len(b) for b in blocks] == [p.INFO_NOR_LEN, 0x11 + 2 * NAND_IDS + 9,
                                            p.INFO_EMMC_LEN, p.INFO_SDC_LEN, p.INFO_RAM_LEN,
                                            p.INFO_PASS_LEN]
        self.w.send(b"".join(blocks))

    # -- command loops -----------------------------------------------------------------------
    def _dead(self) -> int:
        """After a failed DRAM step the DA accepts nothing but FINISH."""
        while True:
            op = self.w.read_byte()
            if op == p.DA_FINISH:
                return self._finish()
            self.w.nack()

    def _commands(self) -> int:
        handlers = {
            p.DA_SWITCH_PART: self._switch_part,
            p.DA_WRITE_DATA: self._write,
            p.DA_READ: self._read,
            p.DA_FORMAT: self._format,
            p.DA_READ_PMT: self._read_pmt,
            p.DA_USB_CHECK_STATUS: self._usb_status,
            p.DA_USB_SET_SPEED: self._usb_speed,
        }
        while True:
            op = self.w.read_byte()
            if op == p.DA_FINISH:
                return self._finish()
            handler = handlers.get(op)
            if handler is None:
                self.log.commands.append(f"DA:unknown {op:#04x}")
                self.w.byte(p.UNKNOWN_CMD)
                continue
            handler()

    def _finish(self) -> int:
        self.log.commands.append("DA:FINISH")
        self.w.ack()
        mode = self.w.read_u32()
        self.w.ack()
        self.log.finish_mode = mode
        return mode

    def _usb_status(self) -> None:
        self.log.commands.append("DA:USB_CHECK_STATUS")
        self.w.ack()
        self.w.byte(self.speed)

    def _usb_speed(self) -> None:
        """70 XX: ACK, then switch to high speed as the dialect says (see dialects.py)."""
        self.log.commands.append("DA:USB_SET_SPEED")
        wanted = self.w.read_byte()
        self.w.ack()
        if wanted != USB_HIGH_SPEED or self.speed == USB_HIGH_SPEED:
            return
        self.speed = USB_HIGH_SPEED
        if self.dialect.usb_speed == "full-reenumerate":
            self.w.link.drain(1.0)  # the ACK reaches the host before the port goes away
            self.w.reenumerate(USB_PID_DA)
            self.log.commands.append(f"DA:REENUMERATED {self.w.link.path}")

    def _switch_part(self) -> None:
        self.log.commands.append("DA:SWITCH_PART")
        self.w.ack()
        part = self.w.read_byte()
        if part in KNOWN_PARTS:
            self.part = part
            self.w.ack()
        else:
            self.w.nack()

    def _range_ok(self, part: int, offset: int, length: int, packet: int | None) -> bool:
        if part not in KNOWN_PARTS or length <= 0:
            return False
        if not self.storage.in_range(part, offset, length):
            return False
        return packet is None or (0 < packet <= PACKET_MAX and packet % p.SECTOR == 0)

    # -- WRITE -------------------------------------------------------------------------------
    def _write(self) -> None:
        w = self.w
        self.log.commands.append("DA:WRITE")
        storage_type, part = w.read_byte(), w.read_byte()
        offset, length, packet = w.read_u64(), w.read_u64(), w.read_u32()
        rec = TransferRecord("write", part, offset, length)
        self.log.transfers.append(rec)
        if storage_type not in (p.STORAGE_EMMC_WRITE, p.STORAGE_EMMC) or \
                not self._range_ok(part, offset, length, packet) or \
                (self.dialect.write_length == "sector" and length % p.SECTOR):
            w.nack()
            return
        w.ack()
        done = 0
        while done < length:
            n = min(packet, length - done)
            self.packet_no += 1
            first = True
            while True:
                data = self._receive_packet(n, first)
                first = False
                if data is None:
                    rec.retries += 1
                    w.nack()
                    continue
                self.storage.write(part, offset + done, data)
                self.stream_pos += n
                self.log.bytes_written += n
                rec.packets += 1
                w.byte(p.CONT)
                break
            done += n
        if self.dialect.write_end == "ack":
            w.ack()
        rec.ok = True

    def _receive_packet(self, n: int, first: bool) -> bytes | None:
        """One packet's true bytes, or None if the phone must NACK it."""
        w = self.w
        w.expect(p.ACK, "ACK before a write packet")
        padded = -(-n // p.SECTOR) * p.SECTOR
        raw = bytearray(w.read(padded + 2))
        pf = self.faults.for_packet(self.stream_pos, n, self.packet_no, first)
        self.log.faults_fired += pf.fired
        if pf.disconnect:
            raise DisconnectFault(f"disconnect fault at write-stream offset {self.stream_pos}")
        if pf.stall:
            self._sleep(pf.stall)
        for i in pf.corrupt:
            raw[i] ^= 0xFF
        if pf.drop is not None:
            del raw[pf.drop]
            try:  # the host thinks it sent everything: nothing more comes, the DA times out
                raw += w.read(1, timeout=self.cfg.packet_timeout)
            except LinkTimeout:
                return None
        checksum = int.from_bytes(raw[padded:padded + 2], "big")
        if pf.nack or bytesum.byte_sum16(memoryview(raw)[:padded]) != checksum:
            return None
        return bytes(raw[:n])

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.w.link.closed:
                return
            self.w.link.check_stop()
            time.sleep(min(left, 0.05))

    # -- READ --------------------------------------------------------------------------------
    def _read(self) -> None:
        w = self.w
        self.log.commands.append("DA:READ")
        w.read_byte()  # host OS: informative
        storage_type = w.read_byte()
        offset, length, packet = w.read_u64(), w.read_u64(), w.read_u32()
        rec = TransferRecord("read", self.part, offset, length)
        self.log.transfers.append(rec)
        if storage_type not in (p.STORAGE_EMMC_WRITE, p.STORAGE_EMMC) or \
                not self._range_ok(self.part, offset, length, packet):
            w.nack()
            w.expect(p.NACK, "NACK after a refused READ")
            w.send(struct.pack("<I", S_DA_INVALID_RANGE))
            return
        w.ack()
        done = 0
        while done < length:
            n = min(packet, length - done)
            data = self.storage.read(self.part, offset + done, n)
            checksum = bytesum.byte_sum16(data)
            while True:
                w.send(data)
                w.u16(checksum)
                answer = w.read_byte()
                if answer == p.ACK:
                    break
                if answer != p.NACK:
                    raise HostViolation(f"expected ACK/NACK after a read packet, "
                                        f"got {answer:#04x}")
                rec.retries += 1
            rec.packets += 1
            done += n
            self.log.bytes_read += n
        rec.ok = True

    # -- FORMAT ------------------------------------------------------------------------------
    def _format(self) -> None:
        w = self.w
        self.log.commands.append("DA:FORMAT")
        storage_type, _erase, _validate, _logical = w.read(4)
        offset, length = w.read_u64(), w.read_u64()
        rec = TransferRecord("format", self.part, offset, length)
        self.log.transfers.append(rec)
        if storage_type not in (p.STORAGE_EMMC_WRITE, p.STORAGE_EMMC) or \
                not self._range_ok(self.part, offset, length, None):
            w.nack()
            return
        # format_acks=2 (mtkclient formatflash, shared reference): every progress record and
        # the end are two ACKs. format_acks=1: one ACK accepts, one per record, one at the end.
        acks = bytes([p.ACK]) * self.dialect.format_acks
        if self.dialect.format_acks == 1:
            w.ack()
        step = -(-length // FORMAT_STEPS)
        done = 0
        while done < length:
            n = min(step, length - done)
            self.storage.zero(self.part, offset + done, n)
            done += n
            w.send(acks + struct.pack(">IB", 0, done * 100 // length))
            w.expect(p.ACK, "ACK of a format progress report")
            rec.packets += 1
        w.send(acks)
        rec.ok = True

    # -- READ_PMT ----------------------------------------------------------------------------
    def _read_pmt(self) -> None:
        w = self.w
        self.log.commands.append("DA:READ_PMT")
        body = self.pmt_entries()
        w.ack()
        w.u32(len(body))
        w.expect(p.ACK, "ACK of the PMT length")
        w.send(body)
        w.expect(p.ACK, "ACK of the PMT")

    def pmt_entries(self) -> bytes:
        """The entries of the PMT partition as stored (empty if the magic is missing)."""
        pmt_at, region = pmt_location()
        header = self.storage.read(p.PART_USER, pmt_at, p.PMT_HEADER_SIZE)
        magic, count = struct.unpack(p.PMT_HEADER_FORMAT, header)
        if magic != p.PMT_MAGIC or count * p.PMT_ENTRY_SIZE > region - p.PMT_HEADER_SIZE:
            return b""
        return self.storage.read(p.PART_USER, pmt_at + p.PMT_HEADER_SIZE,
                                 count * p.PMT_ENTRY_SIZE)
