"""A tiny scripted host for the virtual-phone tests, written by hand from the protocol text.

Deliberately independent of romkit's flash engine and of the simulator's code: every byte
is struct-packed here from ../shared/reference/mtk-protocol.md, the empty-sixty-five capture
and mtkclient's legacy-DA host (facts only), and checksums are computed with plain Python.
The only things taken from romkit.sim are data: the synthetic DA file (its stage-1 region is
cut out here by hand) and the memory parts' CIDs. Dialect-dependent steps take the expected
behaviour as arguments (`write_end_ack`, `format_acks`, `follow`).
"""

from __future__ import annotations

import struct
import time

import serial

from romkit import virtualports
from romkit.sim import s820

HANDSHAKE = bytes([0xA0, 0x0A, 0x50, 0x05])
ACK, NACK, CONT = 0x5A, 0xA5, 0x69
DA1_ADDR = 0x12000000
DA2_ADDR = 0x82038000
EMI_ENTRY = 0xB8


def cid_from_words(wire: bytes) -> bytes:
    """The CID from the DA's four little-endian u32 words (capture frame 877)."""
    return b"".join(wire[i:i + 4][::-1] for i in range(0, 16, 4))


def da_stage1(hw_code: int = 0x6583) -> tuple[int, bytes, int]:
    """(load address, bytes, sig_len) of region 1 of the synthetic DA's entry for `hw_code`,
    cut out by hand from the MTK_AllInOne_DA layout (header 0x6C, 0xDC-byte entries)."""
    from romkit.sim.artifacts import da_s820

    da = da_s820()
    (count,) = struct.unpack_from("<I", da, 0x68)
    for i in range(count):
        at = 0x6C + 0xDC * i
        if struct.unpack_from("<H", da, at + 2)[0] == hw_code:
            buf, length, addr, _start, sig_len = struct.unpack_from("<5I", da, at + 0x14 + 20)
            return addr, da[buf:buf + length], sig_len
    raise LookupError(hw_code)


def follow(phone_id: str, after: int, timeout: float = 5.0) -> virtualports.VirtualPort:
    """Wait for the phone's announcement of a generation newer than `after` (re-enumeration)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = virtualports.find(phone_id)
        if entry is not None and entry.generation > after:
            return entry
        time.sleep(0.01)
    raise TimeoutError(f"{phone_id} did not re-enumerate")


def xor16(body: bytes) -> int:
    if len(body) % 2:
        body += b"\x00"
    acc = 0
    for (word,) in struct.iter_unpack("<H", body):
        acc ^= word
    return acc


def bsum(data: bytes) -> int:
    return sum(data) & 0xFFFF


def emi_entry(cid_prefix: bytes, etype: int = 0x0202) -> bytes:
    """One v10 EMI_SETTINGS entry: sub_version, type, id_length, fw_id_length, ID[16], …"""
    head = struct.pack("<IIII", 1, etype, len(cid_prefix), 0) + cid_prefix.ljust(16, b"\x00")
    return head.ljust(EMI_ENTRY, b"\x11")


def emi_table(*years: int) -> bytes:
    return b"".join(emi_entry(s820.PARTS_BY_YEAR[y].cid[:9]) for y in years)


class Host:
    """Blocking host over pyserial, with assertions on every fixed byte."""

    def __init__(self, port: str, timeout: float = 5.0, *, write_end_ack: bool = False,
                 format_acks: int = 2, info_cid_words: bool = True) -> None:
        self.s = serial.serial_for_url(port, timeout=timeout)
        self.timeout = timeout
        self.write_end_ack = write_end_ack
        self.format_acks = format_acks
        self.info_cid_words = info_cid_words  # DRAM flash ID / flash-info CID as LE words
        self.cid_wire = b""

    def reopen(self, port: str) -> None:
        """Open the phone's new port after a re-enumeration."""
        self.s.close()
        self.s = serial.serial_for_url(port, timeout=self.timeout)

    def close(self) -> None:
        self.s.close()

    # framing
    def w(self, data: bytes | int) -> None:
        self.s.write(bytes([data]) if isinstance(data, int) else data)

    def r(self, n: int) -> bytes:
        data = self.s.read(n)
        assert len(data) == n, f"wanted {n} bytes, got {len(data)}: {data[:32].hex()}"
        return data

    def byte(self) -> int:
        return self.r(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.r(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.r(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self.r(8))[0]

    def echo(self, data: bytes) -> None:
        self.w(data)
        assert self.r(len(data)) == data

    # BROM
    def handshake(self) -> None:
        for b in HANDSHAKE:
            self.w(b)
            assert self.byte() == b ^ 0xFF

    def send_da(self, addr: int, body: bytes, sig_len: int = 0) -> tuple[int, int]:
        self.echo(b"\xd7")
        self.echo(struct.pack(">I", addr))
        self.echo(struct.pack(">I", len(body)))
        self.echo(struct.pack(">I", sig_len))
        status = self.u16()
        if status:
            return -1, status
        self.w(body)
        return self.u16(), self.u16()

    def jump_da(self, addr: int) -> int:
        self.echo(b"\xd5")
        self.echo(struct.pack(">I", addr))
        return self.u16()

    def to_da(self) -> None:
        """Handshake, upload the synthetic DA's stage 1, jump; leaves the host after SYNC."""
        self.handshake()
        addr, body, sig_len = da_stage1()
        assert addr == DA1_ADDR
        checksum, status = self.send_da(addr, body, sig_len)
        assert (checksum, status) == (xor16(body), 0)
        assert self.jump_da(addr) == 0
        assert self.byte() == 0xC0

    # legacy DA setup
    def storage_report(self) -> bytes:
        """The DA's first report (capture frames 867–881); returns the CID in JEDEC order."""
        assert self.u32() == 0x0BC4  # NAND status: no NAND
        n = self.u16()
        assert n == 5 and self.r(2 * n) == bytes(10)
        assert self.u32() == 0
        self.cid_wire = self.r(16)
        self.w(ACK)
        assert self.r(3) == bytes([0x03, 0x02, 0x86])  # DA version bytes of the capture
        return cid_from_words(self.cid_wire)

    def send_config(self) -> int:
        cfg = struct.pack(">BBHBIBIBBBBI", 5, 1, 0x0008, 0, 0x7007FFFF, 1, 0, 1, 0, 2, 0, 0)
        assert len(cfg) == 22
        self.w(cfg)
        return self.u32()

    def dram(self, emi: bytes, version: int = 10) -> dict[str, int | bytes]:
        """The DRAM step; returns what the DA reported. Stops early on an A5."""
        assert self.u32() == 16
        flash_id = self._info_cid(self.r(16))
        assert self.u32() == 0x0BC4
        self.r(2 * self.u16())
        self.w(0xE8)
        self.w(struct.pack(">I", version))
        answer = self.byte()
        if answer != ACK:
            return {"answer": answer, "flash_id": flash_id}
        self.r(16)
        length = self.u32()
        self.w(ACK)
        blob = emi[:length].ljust(length, b"\x00")
        self.w(blob)
        assert self.u16() == bsum(blob)
        self.w(ACK)
        self.w(struct.pack(">I", 0x80000001))
        ret = self.u32()
        ram_type, _cs, size = self.byte(), self.byte(), self.u64()
        return {"answer": answer, "flash_id": flash_id, "ret": ret, "ram_type": ram_type,
                "ram_size": size}

    def stage2(self, body: bytes, packet: int = 0x1000) -> None:
        self.w(struct.pack(">III", DA2_ADDR, len(body), packet))
        assert self.byte() == ACK
        for off in range(0, len(body), packet):
            self.w(body[off:off + packet])
            assert self.byte() == ACK
        self.w(ACK)
        assert self.byte() == ACK

    def _info_cid(self, wire: bytes) -> bytes:
        return cid_from_words(wire) if self.info_cid_words else wire

    def flash_info(self) -> dict[str, int | bytes]:
        """NOR, NAND, eMMC, SD, RAM, pass info (mtkclient dalegacy_flash_param.py layout)."""
        self.r(0x1C)
        nand = self.r(0x11)  # ret, cs, id, u64 size, u16 id count
        nand_count = struct.unpack_from(">H", nand, 15)[0]
        nand_ids = self.r(2 * nand_count)
        self.r(9)  # page size, spare size, pages per block, io, addr cycle, bmt
        emmc = self.r(0x5C)
        ret, boot1, boot2, rpmb, g1, g2, g3, g4, user = struct.unpack_from(">I8Q", emmc)
        self.r(0x1C)
        ram = self.r(0x26)
        sram_ret, sram_size, ext_ret, ram_type, _cs, ram_size = struct.unpack_from(">IIIBBQ",
                                                                                    ram)
        passinfo = self.r(0x0A)
        assert passinfo[0] == ACK and passinfo[-1] == 0xC1
        return {"ret": ret, "boot1": boot1, "boot2": boot2, "rpmb": rpmb,
                "gp": g1 + g2 + g3 + g4, "user": user, "cid": self._info_cid(emmc[0x44:0x54]),
                "nand_status": struct.unpack_from(">I", nand)[0], "nand_count": nand_count,
                "nand_ids": nand_ids, "sram_ret": sram_ret, "sram_size": sram_size,
                "ext_ram_ret": ext_ret, "ram_type": ram_type, "ram_size": ram_size,
                "random_id": ram[0x16:0x26]}

    def full_setup(self, emi: bytes, follow_id: str | None = None) -> dict[str, int | bytes]:
        """Up to a DA that runs at high speed. At full speed the host sends 70 01 (mtkclient
        upload_da1); with `follow_id` it expects the phone to re-enumerate and follows it to
        its next announced port (romkit/virtualports.py), as a host follows a USB phone."""
        before = -1
        if follow_id is not None:
            entry = virtualports.find(follow_id)
            assert entry is not None, "the phone is not announced"
            before = entry.generation
        self.to_da()
        self.storage_report()
        assert self.send_config() == 0x0BC3
        dram = self.dram(emi)
        assert dram["ret"] == 0, dram
        self.stage2(b"\x00\x01\x02\x03" * 0x900)
        info = self.flash_info()
        info["speed"] = self.usb_speed()
        if info["speed"] == 0:
            self.w(bytes([0x70, 0x01]))
            assert self.byte() == ACK
            if follow_id is not None:
                self.reopen(follow(follow_id, before).port)
            assert self.usb_speed() == 1
        return info

    def usb_speed(self) -> int:
        self.w(0x72)
        assert self.byte() == ACK
        return self.byte()

    # flash commands
    def switch(self, part: int) -> int:
        self.w(0x60)
        assert self.byte() == ACK
        self.w(part)
        return self.byte()

    def write(self, part: int, addr: int, data: bytes, packet: int = 0x1000,
              spoil_first: bool = False) -> list[int]:
        """WRITE; returns the per-packet answers seen (A5s included)."""
        self.w(0x62)
        self.w(struct.pack(">BBQQI", 1, part, addr, len(data), packet))
        answer = self.byte()
        if answer != ACK:
            return [answer]
        seen = []
        spoil = spoil_first
        for off in range(0, len(data), packet):
            chunk = data[off:off + packet]
            padded = chunk.ljust(-(-len(chunk) // 512) * 512, b"\x00")
            while True:
                checksum = (bsum(padded) + (1 if spoil else 0)) & 0xFFFF
                spoil = False
                self.w(bytes([ACK]) + padded + struct.pack(">H", checksum))
                answer = self.byte()
                seen.append(answer)
                if answer == CONT:
                    break
                assert answer == NACK
        if self.write_end_ack:
            assert self.byte() == ACK
        return seen

    def read(self, addr: int, length: int, packet: int = 0x100000) -> bytes:
        self.w(0xD6)
        self.w(struct.pack(">BBQQI", 0x0C, 0x02, addr, length, packet))
        answer = self.byte()
        if answer != ACK:
            self.w(NACK)
            code = struct.unpack("<I", self.r(4))[0]
            raise LookupError(f"read refused: {code:#x}")
        out = bytearray()
        while len(out) < length:
            n = min(packet, length - len(out))
            chunk = self.r(n)
            assert self.u16() == bsum(chunk)
            self.w(ACK)
            out += chunk
        return bytes(out)

    def format(self, addr: int, length: int) -> list[int]:
        """FORMAT: with format_acks=2 every record and the end are 5A 5A (mtkclient
        formatflash); with 1, one 5A accepts, one starts each record, one ends."""
        self.w(0xD4)
        self.w(struct.pack(">BBBBQQ", 2, 0, 0, 0, addr, length))
        if self.format_acks == 1:
            assert self.byte() == ACK
        percents = []
        while True:
            assert self.r(self.format_acks) == bytes([ACK]) * self.format_acks
            assert self.u32() == 0
            percents.append(self.byte())
            self.w(ACK)
            if percents[-1] == 100:
                break
        assert self.r(self.format_acks) == bytes([ACK]) * self.format_acks
        return percents

    def read_pmt(self) -> bytes:
        self.w(0xA5)
        assert self.byte() == ACK
        length = self.u32()
        self.w(ACK)
        body = self.r(length)
        self.w(ACK)
        return body

    def finish(self, mode: int = 0) -> None:
        self.w(0xD9)
        assert self.byte() == ACK
        self.w(struct.pack(">I", mode))
        assert self.byte() == ACK
