"""A tiny scripted host for the virtual-phone tests, written by hand from the protocol text.

Deliberately independent of romkit's flash engine and of the simulator's code: every byte
is struct-packed here from docs/PROTOCOL.md, and checksums are computed with plain Python.
"""

from __future__ import annotations

import struct

import serial

from romkit.sim import s820

HANDSHAKE = bytes([0xA0, 0x0A, 0x50, 0x05])
ACK, NACK, CONT = 0x5A, 0xA5, 0x69
DA1_ADDR = 0x12000000
DA2_ADDR = 0x82038000
EMI_ENTRY = 0xB8


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

    def __init__(self, port: str, timeout: float = 5.0) -> None:
        self.s = serial.serial_for_url(port, timeout=timeout)

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
        """Handshake, upload a DA stage 1, jump; leaves the host right after SYNC."""
        self.handshake()
        body = bytes(range(256)) * 16 + b"SIG!" * 64
        checksum, status = self.send_da(DA1_ADDR, body, 256)
        assert (checksum, status) == (xor16(body), 0)
        assert self.jump_da(DA1_ADDR) == 0
        assert self.byte() == 0xC0

    # legacy DA setup
    def storage_report(self) -> bytes:
        self.u32()  # NAND status
        n = self.u16()
        self.r(2 * n)
        assert self.u32() == 0
        cid = self.r(16)
        self.w(ACK)
        self.r(3)  # DA version
        return cid

    def send_config(self) -> int:
        cfg = struct.pack(">BBHBIBIBBBBI", 5, 1, 0x0008, 0, 0x7007FFFF, 1, 0, 1, 0, 2, 0, 0)
        assert len(cfg) == 22
        self.w(cfg)
        return self.u32()

    def dram(self, emi: bytes, version: int = 10) -> dict[str, int | bytes]:
        """The DRAM step; returns what the DA reported. Stops early on an A5."""
        assert self.u32() == 16
        flash_id = self.r(16)
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

    def flash_info(self, nand_ids: int = 5) -> dict[str, int | bytes]:
        self.r(0x1C)
        self.r(0x11 + 2 * nand_ids + 9)
        emmc = self.r(0x5C)
        ret, boot1, boot2, rpmb, g1, g2, g3, g4, user = struct.unpack_from(">I8Q", emmc)
        self.r(0x1C)
        self.r(0x26)
        passinfo = self.r(0x0A)
        assert passinfo[0] == ACK and passinfo[-1] == 0xC1
        return {"ret": ret, "boot1": boot1, "boot2": boot2, "rpmb": rpmb,
                "gp": g1 + g2 + g3 + g4, "user": user, "cid": emmc[0x44:0x54]}

    def full_setup(self, emi: bytes) -> dict[str, int | bytes]:
        self.to_da()
        self.storage_report()
        assert self.send_config() == 0x0BC3
        dram = self.dram(emi)
        assert dram["ret"] == 0, dram
        self.stage2(b"\x00\x01\x02\x03" * 0x900)
        info = self.flash_info()
        self.w(0x72)
        assert self.byte() == ACK
        assert self.byte() == 1
        return info

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
        self.w(0xD4)
        self.w(struct.pack(">BBBBQQ", 2, 0, 0, 0, addr, length))
        assert self.byte() == ACK
        percents = []
        while True:
            assert self.byte() == ACK
            assert self.u32() == 0
            percents.append(self.byte())
            self.w(ACK)
            if percents[-1] == 100:
                break
        assert self.byte() == ACK
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
