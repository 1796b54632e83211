"""The phone's boot ROM / preloader download mode: handshake, registers, PMIC, SEND_DA, JUMP_DA.

Behaviour follows ../shared/reference/mtk-protocol.md §2–3 and SP Flash Tool's real MT6589
sequence as replayed from USB captures by arzam16/empty-sixty-five
(`brom-dump/spft-replay/src/brom.py` for the framings, `src/platform.py` class MT6589 for the
order and the PMIC values); it is the phone's firmware, written without looking at the host
engine. Whatever the host sends, the phone answers by the protocol and never crashes. An
unknown opcode is echoed and answered with status 0x0001 (our reading: no capture shows a
real BROM's answer; the echo keeps a client that checks echoes in step).

JUMP_DA runs what was uploaded: only bytes the phone recognises as a DA it can play (see
`known_da`) start the DA; anything else "crashes" and the phone goes silent, as a real CPU
that jumps into garbage does (issue 14 item 12).
"""

from __future__ import annotations

import time

from romkit import bytesum
from romkit.device import protocol as p
from romkit.errors import DeviceError
from romkit.sim.known_da import recognise_da
from romkit.sim.link import HostGone, LinkTimeout
from romkit.sim.session import PhoneConfig, Wire

SIM_BROM_VERSION = 0x05
SIM_PRELOADER_VERSION = 0x01
SIM_HW_SUBCODE = 0x8A00
MAX_REG_COUNT = 0x100  # READ/WRITE16/32 refuse longer runs (status 0x0001)
ME_ID = bytes.fromhex("5349d0c5a1b2c3d4e5f6071829304152")  # synthetic, stable

# MT6589 TOPRGU (watchdog) at 0x10000000 (shared reference §2). SWRST at +0x14 with key
# 0x1209 resets the SoC (public MT6589 kernel tree, mt_wdt: MTK_WDT_SWRST / _KEY; our reading
# of what a BROM-mode write does). MODE writes need the 0x22 key in the top byte.
TOPRGU_SWRST = p.MT6589_WATCHDOG + 0x14
TOPRGU_SWRST_KEY = 0x1209
TOPRGU_MODE_KEY = 0x22

# PMIC (MT6320) charger registers and the values a real MT6589 reads before SP Flash Tool
# writes them: empty-sixty-five spft-replay src/platform.py, MT6589.init_pmic (reference
# values from the author's Wireshark dump).
PMIC_CHR_CON0 = 0x0000
PMIC_CHR_CON4 = 0x0008
PMIC_CHR_CON6 = 0x000C
PMIC_CHR_CON7 = 0x000E
PMIC_CHR_CON13 = 0x001A
PMIC_CHR_CON16 = 0x0020
PMIC_RESET_VALUES = {
    PMIC_CHR_CON7: 0x1001, PMIC_CHR_CON6: 0x0041, PMIC_CHR_CON4: 0x000F,
    PMIC_CHR_CON13: 0x0010, PMIC_CHR_CON0: 0x0063, PMIC_CHR_CON16: 0x0001,
}


class PhoneReset(DeviceError):
    """The SoC reset (watchdog software reset): the USB port goes away and comes back."""

    default_hint = "the phone re-enumerates; open its new port"


class DaCrashed(DeviceError):
    """JUMP_DA went into bytes that are no DA the phone can run: it never answers again."""

    default_hint = "upload the DA region for this chip (MT6589: region 1 at 0x12000000)"


class WindowClosed(DeviceError):
    """No handshake came before the preloader's download window closed."""

    default_hint = "start the handshake within the window (or drop the window= fault)"


class BromStage:
    """Runs until the host has jumped to a loaded DA; returns that DA's address."""

    def __init__(self, wire: Wire, config: PhoneConfig, window: float | None) -> None:
        self.w = wire
        self.cfg = config
        self.window = window
        self.loaded: dict[int, str | None] = {}  # load address → recognised DA (None: junk)
        self.registers: dict[int, int] = {
            p.MT6589_WATCHDOG: 0x00000065,  # enabled, as after reset
            p.MT6589_WATCHDOG + 0x4: 0x00007FE0,
            p.MT6589_WATCHDOG + 0x8: 0x00000000,
            p.MT6589_WATCHDOG + 0xC: 0x00000000,
            p.MT6589_WATCHDOG + 0x10: 0x00000000,
            p.MT6589_WATCHDOG + 0x14: 0x00000000,
            p.MT6589_WATCHDOG + 0x18: 0x00000000,
            p.MT6589_EMI_GENA: 0x00000000,
        }
        self.pmic: dict[int, int] = dict(PMIC_RESET_VALUES)

    # -- handshake ---------------------------------------------------------------------------
    def handshake(self) -> None:
        """A0 0A 50 05, each byte answered with its complement; a wrong byte restarts."""
        deadline = None if self.window is None else time.monotonic() + self.window
        i = 0
        while i < len(p.HANDSHAKE):
            timeout = None
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    raise WindowClosed("the preloader window closed before a handshake")
            try:
                b = self.w.link.read_byte(timeout)
            except LinkTimeout:
                raise WindowClosed("the preloader window closed before a handshake") from None
            except HostGone:
                self.w.link.listen()  # nobody on the port (any more): wait for the next host
                i = 0
                continue
            if b == p.HANDSHAKE[i]:
                self.w.byte(b ^ 0xFF)
                i += 1
            elif b == p.HANDSHAKE[0]:
                self.w.byte(b ^ 0xFF)
                i = 1
            else:
                i = 0
        self.w.log.handshake = True

    # -- command loop ------------------------------------------------------------------------
    def run(self) -> int:
        self.handshake()
        handlers = {
            p.BROM_GET_HW_CODE: self._hw_code,
            p.BROM_GET_HW_SW_VER: self._hw_sw_ver,
            p.BROM_GET_TARGET_CONFIG: self._target_config,
            p.BROM_READ16: lambda: self._read_regs(2),
            p.BROM_READ32: lambda: self._read_regs(4),
            p.BROM_WRITE16: lambda: self._write_regs(2),
            p.BROM_WRITE32: lambda: self._write_regs(4),
            p.BROM_UART1_LOG_EN: self._status_only,
            p.BROM_PWR_INIT: self._pwr_init,
            p.BROM_PWR_DEINIT: self._status_only,
            p.BROM_PWR_READ16: self._pwr_read,
            p.BROM_PWR_WRITE16: self._pwr_write,
            p.BROM_GET_ME_ID: self._me_id,
            p.BROM_SEND_DA: self._send_da,
        }
        if self.cfg.boot == "preloader":
            handlers[p.BROM_GET_PL_CAP] = self._pl_cap
        while True:
            op = self.w.read_byte()
            if op == p.BROM_GET_BL_VER:  # not echoed
                self.w.log.commands.append("BROM:GET_BL_VER")
                self.w.byte(p.BROM_GET_BL_VER if self.cfg.boot == "brom"
                            else SIM_PRELOADER_VERSION)
                continue
            if op == p.BROM_GET_VERSION:  # not echoed
                self.w.log.commands.append("BROM:GET_VERSION")
                self.w.byte(SIM_BROM_VERSION)
                continue
            self.w.byte(op)  # echo
            if op == p.BROM_JUMP_DA:
                self.w.log.commands.append("BROM:JUMP_DA")
                addr = self._param32()
                if addr not in self.loaded:
                    self.w.u16(p.BROM_STATUS_UNSUPPORTED)
                    continue
                self.w.u16(p.BROM_STATUS_OK)  # the BROM jumps: from here on the code runs
                if self.loaded[addr] is None:
                    raise DaCrashed(f"JUMP_DA {addr:#x}: the uploaded bytes are no DA")
                self.w.log.da_name = self.loaded[addr]
                return addr
            handler = handlers.get(op)
            self.w.log.commands.append(f"BROM:{_NAMES.get(op, f'{op:#04x}')}")
            if handler is None:
                self.w.u16(p.BROM_STATUS_UNSUPPORTED)
            else:
                handler()

    def _param32(self) -> int:
        raw = self.w.read(4)
        self.w.send(raw)
        return int.from_bytes(raw, "big")

    def _param16(self) -> int:
        raw = self.w.read(2)
        self.w.send(raw)
        return int.from_bytes(raw, "big")

    def _hw_code(self) -> None:
        self.w.u16(p.MT6589_HW_CODE)
        self.w.u16(p.BROM_STATUS_OK)

    def _hw_sw_ver(self) -> None:
        self.w.u16(SIM_HW_SUBCODE)
        self.w.u16(p.MT6589_HW_VER)
        self.w.u16(p.MT6589_SW_VER)
        self.w.u16(p.BROM_STATUS_OK)

    def _target_config(self) -> None:
        self.w.u32(0)  # no SBC / SLA / DAA on a 2013 MT6589
        self.w.u16(p.BROM_STATUS_OK)

    def _status_only(self) -> None:
        self.w.u16(p.BROM_STATUS_OK)

    def _pl_cap(self) -> None:
        self.w.u32(0)
        self.w.u32(0)

    def _me_id(self) -> None:
        self.w.u32(len(ME_ID))
        self.w.send(ME_ID)
        self.w.u16(p.BROM_STATUS_OK)

    def _reg_request(self, width: int) -> tuple[int, int] | None:
        """Address and count of a READ/WRITE16/32 (both echoed), answered with the first
        status; None (after a refusal status) for a count or alignment the ROM rejects."""
        addr = self._param32()
        count = self._param32()
        if not 1 <= count <= MAX_REG_COUNT or addr % width:
            self.w.u16(p.BROM_STATUS_UNSUPPORTED)
            return None
        self.w.u16(p.BROM_STATUS_OK)
        return addr, count

    def _read_regs(self, width: int) -> None:
        req = self._reg_request(width)
        if req is None:
            return
        addr, count = req
        mask = (1 << (8 * width)) - 1
        values = b"".join(
            (self.registers.get(addr + i * width, 0) & mask).to_bytes(width, "big")
            for i in range(count))
        self.w.send(values)
        self.w.u16(p.BROM_STATUS_OK)

    def _write_regs(self, width: int) -> None:
        req = self._reg_request(width)
        if req is None:
            return
        addr, count = req
        for i in range(count):
            raw = self.w.read(width)
            self.w.send(raw)
            value = int.from_bytes(raw, "big")
            where = addr + i * width
            self.w.log.registers[f"{where:#010x}"] = value
            if where == TOPRGU_SWRST and width == 4 and value == TOPRGU_SWRST_KEY:
                raise PhoneReset("watchdog software reset (TOPRGU SWRST)")
            if where == p.MT6589_WATCHDOG and width == 4:
                if value >> 24 == TOPRGU_MODE_KEY:  # keyless writes are ignored
                    self.registers[where] = value & 0x00FFFFFF
                continue
            self.registers[where] = value
        self.w.u16(p.BROM_STATUS_OK)

    # -- PMIC: framings of spft-replay src/brom.py (power_init / power_read16 / power_write16)
    def _pwr_init(self) -> None:
        """C4: two u32 parameters, each echoed, then a status."""
        self._param32()
        self._param32()
        self.w.u16(p.BROM_STATUS_OK)

    def _pwr_read(self) -> None:
        """C6: u16 register (echoed); status of the command, status of the read, value."""
        reg = self._param16()
        self.w.u16(p.BROM_STATUS_OK)
        self.w.u16(p.BROM_STATUS_OK)
        self.w.u16(self.pmic.get(reg, 0))

    def _pwr_write(self) -> None:
        """C7: u16 register and u16 value (each echoed); status of the command and the write."""
        reg = self._param16()
        value = self._param16()
        self.pmic[reg] = value
        self.w.log.registers[f"pmic:{reg:#06x}"] = value
        self.w.u16(p.BROM_STATUS_OK)
        self.w.u16(p.BROM_STATUS_OK)

    def _send_da(self) -> None:
        addr = self._param32()
        length = self._param32()
        sig_len = self._param32()
        lo, hi = p.MT6589_SRAM
        if not (lo <= addr and length > 0 and addr + length <= hi and sig_len <= length):
            self.w.u16(p.BROM_STATUS_UNSUPPORTED)
            return
        self.w.u16(p.BROM_STATUS_OK)
        body = self.w.read(length)
        checksum = bytesum.xor16_le(body)
        self.w.u16(checksum)
        self.w.u16(p.BROM_STATUS_OK)
        self.loaded[addr] = recognise_da(addr, body, sig_len)
        self.w.log.da_loads.append({"addr": addr, "length": length, "sig_len": sig_len,
                                    "checksum": checksum})


_NAMES = {
    p.BROM_GET_HW_CODE: "GET_HW_CODE", p.BROM_GET_HW_SW_VER: "GET_HW_SW_VER",
    p.BROM_GET_TARGET_CONFIG: "GET_TARGET_CONFIG", p.BROM_READ16: "READ16",
    p.BROM_READ32: "READ32", p.BROM_WRITE16: "WRITE16", p.BROM_WRITE32: "WRITE32",
    p.BROM_UART1_LOG_EN: "UART1_LOG_EN", p.BROM_PWR_INIT: "PWR_INIT",
    p.BROM_PWR_DEINIT: "PWR_DEINIT", p.BROM_PWR_READ16: "PWR_READ16",
    p.BROM_PWR_WRITE16: "PWR_WRITE16", p.BROM_GET_ME_ID: "GET_ME_ID",
    p.BROM_SEND_DA: "SEND_DA", p.BROM_GET_PL_CAP: "GET_PL_CAP",
}
