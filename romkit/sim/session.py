"""What one virtual-phone session is configured with and what the host did during it.

`PhoneConfig` is the phone's hardware (chip, memory part, storage, boot mode, link speed);
`SessionLog` is the record a test inspects afterwards ("did the host back up NVRAM before it
formatted?", "which fault fired?") without parsing any wire traffic itself.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from romkit.device import protocol as p
from romkit.errors import ProtocolError, UsageError
from romkit.sim import s820
from romkit.sim.dialects import DEFAULT_DIALECT, DIALECTS, Dialect
from romkit.sim.link import Link

Boot = Literal["brom", "preloader"]
CID_LEN = 16


class HostViolation(ProtocolError):
    """The host sent something the protocol does not allow at this point."""

    default_hint = "the host side is out of step with the phone; reconnect and start again"


def parse_memory_id(value: bytes | str | None, year: int) -> bytes:
    """The 16-byte eMMC CID the phone reports: explicit ID bytes, else the year's part."""
    if value is None:
        if year not in s820.PARTS_BY_YEAR:
            raise UsageError(f"no memory part is known for year {year}",
                             hint=f"use one of {', '.join(map(str, s820.PARTS_BY_YEAR))}")
        return s820.PARTS_BY_YEAR[year].cid
    if isinstance(value, str) and value.strip().lower() == "capture":
        return s820.CAPTURED_CID
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0x").replace(" ", "").replace(":", "")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise UsageError(f"memory ID {value!r} is not hex bytes",
                             hint="e.g. --memory-id 150100534d31335300") from None
    else:
        raw = bytes(value)
    if not 1 <= len(raw) <= CID_LEN:
        raise UsageError(f"memory ID must be 1 to {CID_LEN} bytes, got {len(raw)}",
                         hint="give the eMMC CID prefix the EMI table lists (9 bytes usually)")
    return raw.ljust(CID_LEN, b"\x00")


@dataclass(frozen=True)
class PhoneConfig:
    """The virtual phone's hardware."""

    cid: bytes
    year: int = 2013
    storage: str = "4G"
    boot: Boot = "brom"
    dialect: Dialect = DIALECTS[DEFAULT_DIALECT]
    ram_size: int = 0x40000000  # 1 GiB LPDDR2
    packet_timeout: float = 0.5  # how long the DA waits for the rest of a packet


@dataclass
class EmiResult:
    """The DRAM step as the phone saw it."""

    version: int
    entries: list[str] = field(default_factory=list)  # hex of each entry's ID[:id_length]
    matched: int | None = None  # index of the entry that fits this phone's part
    ext_ram_ret: int = 0
    blob_len: int = 0


@dataclass
class TransferRecord:
    """One WRITE / READ / FORMAT command."""

    op: str
    part: int
    offset: int
    length: int
    packets: int = 0
    retries: int = 0
    ok: bool = False


@dataclass
class SessionLog:
    """Everything a test may want to know about one session, in order of events."""

    index: int
    port: str
    boot: str
    started: float = field(default_factory=time.time)
    ended: float | None = None
    outcome: str = "running"
    handshake: bool = False
    commands: list[str] = field(default_factory=list)
    registers: dict[str, int] = field(default_factory=dict)
    da_loads: list[dict[str, int]] = field(default_factory=list)
    da_started: bool = False
    da_name: str | None = None  # which recognised DA the phone ran
    stage2: dict[str, int] | None = None
    emi: EmiResult | None = None
    transfers: list[TransferRecord] = field(default_factory=list)
    bytes_written: int = 0
    bytes_read: int = 0
    faults_fired: list[str] = field(default_factory=list)
    finish_mode: int | None = None
    violation: str | None = None
    ports: list[str] = field(default_factory=list)  # every port this session spoke on

    @property
    def writes(self) -> list[TransferRecord]:
        return [t for t in self.transfers if t.op == "write"]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["registers"] = {k: f"{v:#x}" for k, v in self.registers.items()}
        return d


class Wire:
    """Big-endian framing helpers over the link, shared by the BROM and DA stages.

    `reenumerate(pid)` is the phone's USB controller: it drops the current port, appears on
    a new one with that USB PID and returns the new link, which the wire uses from then on.
    """

    def __init__(self, link: Link, log: SessionLog,
                 reenumerate: Callable[[int], Link] | None = None) -> None:
        self.link = link
        self.log = log
        self._reenumerate = reenumerate
        log.ports.append(link.path)

    def reenumerate(self, pid: int) -> None:
        """Re-enumerate on a new port (USB speed switch); the session goes on there."""
        if self._reenumerate is None:
            raise ProtocolError("this phone cannot re-enumerate",
                                hint="start it through VirtualPhone")
        self.link = self._reenumerate(pid)
        self.log.ports.append(self.link.path)

    def send(self, data: bytes) -> None:
        self.link.write(data)

    def byte(self, value: int) -> None:
        self.link.write(bytes([value]))

    def u16(self, value: int) -> None:
        self.link.write(struct.pack(">H", value & 0xFFFF))

    def u32(self, value: int) -> None:
        self.link.write(struct.pack(">I", value & 0xFFFFFFFF))

    def read(self, n: int, timeout: float | None = None) -> bytes:
        return self.link.read(n, timeout)

    def read_byte(self) -> int:
        return self.link.read_byte()

    def read_u16(self) -> int:
        return int(struct.unpack(">H", self.link.read(2))[0])

    def read_u32(self) -> int:
        return int(struct.unpack(">I", self.link.read(4))[0])

    def read_u64(self) -> int:
        return int(struct.unpack(">Q", self.link.read(8))[0])

    def expect(self, value: int, what: str) -> None:
        got = self.link.read_byte()
        if got != value:
            raise HostViolation(f"expected {value:#04x} ({what}) from the host, got {got:#04x}")

    def ack(self) -> None:
        self.byte(p.ACK)

    def nack(self) -> None:
        self.byte(p.NACK)
