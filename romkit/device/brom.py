"""BROM / preloader download-mode commands (reference §2, docs/PROTOCOL.md "BROM stage").

This is the part of the conversation that happens before any of our code runs on the phone:
the mask ROM (or the preloader, which imitates it) answers a handful of register and upload
commands. Every opcode and 4-byte parameter is echoed and every answer ends in a u16 status;
we check each one, because a silently wrong byte here means uploading a DA to the wrong
address, and the phone gives no second chance before the preloader port disappears.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from romkit import bytesum
from romkit.device import protocol as P
from romkit.device.transport import Transport
from romkit.errors import DeviceError, DeviceTimeout, HandshakeError, ProtocolError
from romkit.progress import ProgressCallback, Reporter

OPCODE_NAMES: dict[int, str] = {
    P.BROM_READ16: "READ16",
    P.BROM_READ32: "READ32",
    P.BROM_WRITE16: "WRITE16",
    P.BROM_WRITE32: "WRITE32",
    P.BROM_JUMP_DA: "JUMP_DA",
    P.BROM_SEND_DA: "SEND_DA",
    P.BROM_GET_TARGET_CONFIG: "GET_TARGET_CONFIG",
    P.BROM_UART1_LOG_EN: "UART1_LOG_EN",
    P.BROM_GET_HW_SW_VER: "GET_HW_SW_VER",
    P.BROM_GET_HW_CODE: "GET_HW_CODE",
    P.BROM_GET_BL_VER: "GET_BL_VER",
    P.BROM_GET_VERSION: "GET_VERSION",
    P.BROM_PWR_INIT: "PWR_INIT",
    P.BROM_PWR_DEINIT: "PWR_DEINIT",
    P.BROM_PWR_READ16: "PWR_READ16",
    P.BROM_PWR_WRITE16: "PWR_WRITE16",
}

HANDSHAKE_HINT = (
    "Power off the phone, remove the battery for a few seconds, put it back and connect USB "
    "again; if it keeps failing try another cable or USB port (no hub)."
)
DA_UPLOAD_CHUNK = 64 * 1024  # bytes per write() while streaming the DA body
MAX_READ32_COUNT = 0x400
WRITE_ARG_CHECK_MAX = 3  # a sanity bound; the host never asks for more registers at once


@dataclass(frozen=True)
class HwSwVer:
    """Answer of GET_HW_SW_VER: the chip revision numbers used to pick a DA entry."""

    hw_subcode: int
    hw_ver: int
    sw_ver: int


@dataclass(frozen=True)
class TargetConfig:
    """GET_TARGET_CONFIG bits: whether the chip demands signed DAs or authentication."""

    raw: int

    @property
    def sbc(self) -> bool:
        return bool(self.raw & P.TARGET_CONFIG_SBC)

    @property
    def sla(self) -> bool:
        return bool(self.raw & P.TARGET_CONFIG_SLA)

    @property
    def daa(self) -> bool:
        return bool(self.raw & P.TARGET_CONFIG_DAA)


def _name(op: int) -> str:
    return OPCODE_NAMES.get(op, f"0x{op:02X}")


class Brom:
    """Host side of the BROM/preloader command set over one `Transport`."""

    def __init__(self, transport: Transport, *, timeout: float = 2.0) -> None:
        self.t = transport
        self.timeout = timeout

    # -- handshake ------------------------------------------------------------------------------
    def handshake(self, timeout: float = 10.0, *, byte_timeout: float = 0.1) -> None:
        """Send A0 0A 50 05 until each byte is answered with its complement.

        A wrong answer restarts from the first byte (after dropping stale input): the BROM
        does the same on its side, so both ends resynchronise. Silence is retried too, since
        the preloader opens its port before it starts listening. Never any answer → 2006
        (START CMD timeout); answers that never complete the sequence → 2005 (START CMD fail).
        """
        deadline = time.monotonic() + timeout
        heard: bytearray = bytearray()
        i = 0
        while i < len(P.HANDSHAKE):
            if time.monotonic() >= deadline:
                if heard:
                    raise HandshakeError(
                        "phone answered the start handshake with wrong bytes",
                        hint=HANDSHAKE_HINT,
                        spft_code=2005,
                        details={"last_bytes": bytes(heard[-16:]).hex()},
                    )
                raise HandshakeError(
                    f"no answer to the start handshake within {timeout:g} s",
                    hint=HANDSHAKE_HINT,
                    spft_code=2006,
                )
            self.t.write(P.HANDSHAKE[i : i + 1])
            try:
                reply = self.t.read(1, byte_timeout)[0]
            except DeviceTimeout:
                i = 0
                continue
            heard.append(reply)
            del heard[:-16]
            if reply == P.HANDSHAKE_REPLY[i]:
                i += 1
            else:
                i = 0
                self.t.flush_input()

    # -- framing helpers ------------------------------------------------------------------------
    def _read(self, n: int, op: int, what: str, timeout: float | None = None) -> bytes:
        try:
            return self.t.read(n, self.timeout if timeout is None else timeout)
        except DeviceTimeout as exc:
            raise DeviceTimeout(
                f"{_name(op)}: phone did not send {what}",
                hint="The phone stopped answering; reconnect it and start again.",
                details=exc.details,
            ) from None

    def _u16(self, op: int, what: str, timeout: float | None = None) -> int:
        return int.from_bytes(self._read(2, op, what, timeout), "big")

    def _u32(self, op: int, what: str) -> int:
        return int.from_bytes(self._read(4, op, what), "big")

    def _command(self, op: int) -> None:
        self.t.write(bytes([op]))
        echo = self._read(1, op, "the opcode echo")[0]
        if echo != op:
            raise ProtocolError(
                f"{_name(op)}: phone echoed 0x{echo:02X} instead of the opcode 0x{op:02X}",
                hint="The phone is not in download mode or the link is noisy; reconnect it.",
                details={"opcode": op, "echo": echo},
            )

    def _param(self, op: int, value: int, size: int = 4) -> None:
        raw = value.to_bytes(size, "big")
        self.t.write(raw)
        echo = self._read(size, op, "the parameter echo")
        if echo != raw:
            raise ProtocolError(
                f"{_name(op)}: parameter 0x{value:0{size * 2}X} echoed as 0x{echo.hex().upper()}",
                hint="The link corrupted a byte; reconnect the phone and start again.",
                details={"opcode": op, "sent": raw.hex(), "echo": echo.hex()},
            )

    def _status(self, op: int, what: str = "status", timeout: float | None = None,
                accept: int = P.BROM_STATUS_OK) -> None:
        status = self._u16(op, what, timeout)
        if status > accept:
            raise ProtocolError(
                f"{_name(op)}: phone answered status 0x{status:04X}",
                hint=_status_hint(status),
                details={"opcode": op, "status": status},
            )

    # -- identity -------------------------------------------------------------------------------
    def get_hw_code(self) -> int:
        """The chip id (MT6589 reports 0x6583)."""
        op = P.BROM_GET_HW_CODE
        self._command(op)
        code = self._u16(op, "the hw code")
        self._status(op)
        return code

    def get_hw_sw_ver(self) -> HwSwVer:
        op = P.BROM_GET_HW_SW_VER
        self._command(op)
        sub = self._u16(op, "the hw subcode")
        hw = self._u16(op, "the hw version")
        sw = self._u16(op, "the sw version")
        self._status(op)
        return HwSwVer(sub, hw, sw)

    def get_bl_ver(self) -> int:
        """0xFE from the BROM itself; anything else is the preloader's version (not echoed)."""
        self.t.write(bytes([P.BROM_GET_BL_VER]))
        return self._read(1, P.BROM_GET_BL_VER, "the bootloader version")[0]

    def get_version(self) -> int:
        """The BROM version byte (not echoed)."""
        self.t.write(bytes([P.BROM_GET_VERSION]))
        return self._read(1, P.BROM_GET_VERSION, "the BROM version")[0]

    def get_target_config(self) -> TargetConfig:
        op = P.BROM_GET_TARGET_CONFIG
        self._command(op)
        raw = self._u32(op, "the target config")
        self._status(op)
        return TargetConfig(raw)

    # -- registers ------------------------------------------------------------------------------
    def read32(self, addr: int, count: int = 1) -> list[int]:
        if not 0 < count <= MAX_READ32_COUNT:
            raise ProtocolError(f"READ32: refusing to read {count} registers at once",
                                hint="Read at most 1024 registers per call.")
        op = P.BROM_READ32
        self._command(op)
        self._param(op, addr)
        self._param(op, count)
        self._status(op)
        raw = self._read(4 * count, op, f"{count} register values")
        self._status(op)
        return [int.from_bytes(raw[i : i + 4], "big") for i in range(0, len(raw), 4)]

    def write32(self, addr: int, values: Sequence[int]) -> None:
        if not values:
            return
        op = P.BROM_WRITE32
        self._command(op)
        self._param(op, addr)
        self._param(op, len(values))
        # The argument check answers a small non-zero status on some BROMs; ≤3 means accepted.
        self._status(op, "the argument check", accept=WRITE_ARG_CHECK_MAX)
        for value in values:
            self._param(op, value)
        self._status(op)

    def uart1_log_enable(self) -> None:
        op = P.BROM_UART1_LOG_EN
        self._command(op)
        self._status(op)

    # -- PMIC (framings from arzam16/empty-sixty-five brom-dump/spft-replay/src/brom.py, a
    # replay of SP Flash Tool's USB capture of a real MT6589) ------------------------------
    def pmic_init(self, arg0: int, arg1: int) -> None:
        """PWR_INIT (0xC4): two u32 parameters, each echoed, then a u16 status."""
        op = P.BROM_PWR_INIT
        self._command(op)
        self._param(op, arg0)
        self._param(op, arg1)
        self._status(op)

    def pmic_deinit(self) -> None:
        """PWR_DEINIT (0xC5): no parameter, a u16 status."""
        op = P.BROM_PWR_DEINIT
        self._command(op)
        self._status(op)

    def pmic_read16(self, reg: int) -> int:
        """PWR_READ16 (0xC6): u16 register (echoed) → u16 status, u16 status, u16 value."""
        op = P.BROM_PWR_READ16
        self._command(op)
        self._param(op, reg, 2)
        self._status(op, "the PMIC read acknowledgement")
        self._status(op, "the PMIC read status")
        return self._u16(op, "the PMIC register value")

    def pmic_write16(self, reg: int, value: int) -> None:
        """PWR_WRITE16 (0xC7): u16 register, u16 value (each echoed) → two u16 statuses."""
        op = P.BROM_PWR_WRITE16
        self._command(op)
        self._param(op, reg, 2)
        self._param(op, value, 2)
        self._status(op, "the PMIC write acknowledgement")
        self._status(op, "the PMIC write status")

    def disable_watchdog(self) -> None:
        """Stop the TOPRGU watchdog, which would otherwise reset the phone mid-download."""
        self.write32(P.MT6589_WATCHDOG, [P.MT6589_WATCHDOG_OFF])

    # -- download agent -------------------------------------------------------------------------
    def send_da(self, addr: int, data: bytes, sig_len: int,
                on_progress: ProgressCallback | None = None) -> int:
        """Upload a DA stage (code + signature) to `addr`; returns the verified checksum.

        The phone answers with the XOR-16 of what it received; comparing it with our own is
        the only evidence that every byte arrived, so a mismatch is fatal (spft 2004).
        """
        op = P.BROM_SEND_DA
        rep = Reporter(on_progress)
        self._command(op)
        self._param(op, addr)
        self._param(op, len(data))
        self._param(op, sig_len)
        status = self._u16(op, "the SEND_DA status")
        if status != P.BROM_STATUS_OK:
            raise DeviceError(
                f"SEND_DA: phone refused a {len(data)}-byte DA at 0x{addr:08X} "
                f"(status 0x{status:04X})",
                hint="The DA file does not fit this chip; use the MT6589 DA from the firmware "
                "package or SP Flash Tool v3/v5.",
                spft_code=2004,
                details={"status": status, "addr": addr, "length": len(data)},
            )
        expected = bytesum.xor16_le(data)
        view = memoryview(data)
        rep.start("send_da", "uploading download agent", total=len(data))
        for pos in range(0, len(data), DA_UPLOAD_CHUNK):
            self.t.write(view[pos : pos + DA_UPLOAD_CHUNK])
            rep.update("send_da", min(pos + DA_UPLOAD_CHUNK, len(data)), len(data))
        rep.end("send_da")
        got = self._u16(op, "the DA checksum", timeout=max(self.timeout, 5.0))
        status = self._u16(op, "the final SEND_DA status")
        if got != expected:
            raise DeviceError(
                f"SEND_DA: phone computed checksum 0x{got:04X}, expected 0x{expected:04X}",
                hint="Bytes were lost on the way (cable or USB port); reconnect and retry.",
                spft_code=2004,
                details={"expected": expected, "got": got, "spft_detail": 2034},
            )
        if status != P.BROM_STATUS_OK:
            raise DeviceError(
                f"SEND_DA: phone rejected the uploaded DA (status 0x{status:04X})",
                hint=_status_hint(status),
                spft_code=2004,
                details={"status": status},
            )
        return got

    def jump_da(self, addr: int) -> None:
        op = P.BROM_JUMP_DA
        self._command(op)
        self._param(op, addr)
        status = self._u16(op, "the JUMP_DA status")
        if status != P.BROM_STATUS_OK:
            raise DeviceError(
                f"JUMP_DA: phone refused to start the DA at 0x{addr:08X} (status 0x{status:04X})",
                hint="The DA was not loaded at that address; reconnect and start again.",
                spft_code=2035,
                details={"status": status, "addr": addr},
            )


def _status_hint(status: int) -> str:
    if status == P.BROM_STATUS_SLA_REQUIRED:
        return "The phone requires SLA authentication (secure boot), which romkit cannot do."
    if status == P.BROM_STATUS_UNSUPPORTED:
        return "The phone does not support this request in its current mode; reconnect it."
    return "The phone refused the request; reconnect it and start again."
