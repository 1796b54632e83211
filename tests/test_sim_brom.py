"""The virtual phone's BROM / preloader stage, driven over its pty with hand-built bytes."""

from __future__ import annotations

import os
import random
import select
import struct
import termios
from pathlib import Path

import pytest
from sim_helpers import DA1_ADDR, HANDSHAKE, Host, da_stage1, xor16

from romkit.sim.phone import VirtualPhone
from tests.conftest import pty_only


@pytest.fixture
def phone(tmp_path: Path):
    with VirtualPhone(tmp_path / "state") as ph:
        yield ph


def _nothing_pending(host: Host, wait: float = 0.15) -> bool:
    host.s.timeout = wait
    data = host.s.read(1)
    host.s.timeout = 5
    return data == b""


@pty_only
def test_slave_is_raw_and_handshake_answers_complements(phone: VirtualPhone) -> None:
    fd = os.open(phone.port, os.O_RDWR | os.O_NOCTTY)
    try:
        lflag = termios.tcgetattr(fd)[3]
        assert not lflag & (termios.ECHO | termios.ICANON | termios.ISIG)
        # A CR must pass unchanged (no CR/LF translation) and nothing is echoed back.
        os.write(fd, b"\r")
        assert select.select([fd], [], [], 0.15)[0] == []
        replies = b""
        for b in HANDSHAKE:
            os.write(fd, bytes([b]))
            select.select([fd], [], [], 2)
            replies += os.read(fd, 1)
        assert replies == bytes([0x5F, 0xF5, 0xAF, 0xFA])
    finally:
        os.close(fd)


def test_wrong_byte_restarts_handshake_and_lone_a0_is_harmless(phone: VirtualPhone) -> None:
    host = Host(phone.port)
    host.w(0xA0)
    assert host.byte() == 0x5F
    host.w(0x0A)
    assert host.byte() == 0xF5
    host.w(0x51)  # wrong: no answer, back to the start
    assert _nothing_pending(host)
    host.w(0x50)  # would be right only after A0 0A
    assert _nothing_pending(host)
    host.w(0xA0)  # the lone extra A0 of a preloader port
    assert host.byte() == 0x5F
    host.handshake()
    host.echo(b"\xfd")
    assert (host.u16(), host.u16()) == (0x6583, 0)
    host.close()


@pytest.mark.parametrize(("boot", "bl_ver"), [("brom", 0xFE), ("preloader", 0x01)])
def test_identity_commands(tmp_path: Path, boot: str, bl_ver: int) -> None:
    with VirtualPhone(tmp_path / "s", boot=boot) as phone:
        host = Host(phone.port)
        host.handshake()
        host.echo(b"\xfd")
        assert (host.u16(), host.u16()) == (0x6583, 0)
        host.echo(b"\xfc")
        _sub, hw_ver, sw_ver, status = struct.unpack(">4H", host.r(8))
        assert (hw_ver, sw_ver, status) == (0xCA00, 0, 0)
        host.w(0xFE)  # GET_BL_VER: not echoed
        assert host.byte() == bl_ver
        host.w(0xFF)  # GET_VERSION: not echoed
        assert host.byte() == 0x05
        host.echo(b"\xd8")
        assert (host.u32(), host.u16()) == (0, 0)
        host.echo(b"\xdb")  # UART1_LOG_EN
        assert host.u16() == 0
        host.close()


def test_registers_pmic_and_unknown_opcode(phone: VirtualPhone) -> None:
    host = Host(phone.port)
    host.handshake()
    # WRITE32 watchdog off, then READ32 it back (SP Flash Tool's sequence).
    host.echo(b"\xd4")
    host.echo(struct.pack(">I", 0x10000000))
    host.echo(struct.pack(">I", 1))
    assert host.u16() == 0
    host.echo(struct.pack(">I", 0x22002224))
    assert host.u16() == 0
    host.echo(b"\xd1")
    host.echo(struct.pack(">I", 0x10000000))
    host.echo(struct.pack(">I", 7))
    assert host.u16() == 0
    values = struct.unpack(">7I", host.r(28))
    assert values[0] == 0x002224  # the 0x22 key is not stored (our reading)
    assert host.u16() == 0
    # An absurd count is refused with a status, not a crash.
    host.echo(b"\xd1")
    host.echo(struct.pack(">I", 0x10000000))
    host.echo(struct.pack(">I", 0xFFFFFFFF))
    assert host.u16() == 0x0001
    # PMIC (spft-replay src/brom.py): C4 two echoed u32 + status; C7 echoed reg and value +
    # two statuses; C6 echoed reg + status, status, value.
    host.echo(b"\xc4")
    host.echo(struct.pack(">I", 0x80000000))
    host.echo(struct.pack(">I", 0))
    assert host.u16() == 0
    host.echo(b"\xc7")
    host.echo(struct.pack(">H", 0x0A))
    host.echo(struct.pack(">H", 0x1234))
    assert (host.u16(), host.u16()) == (0, 0)
    host.echo(b"\xc6")
    host.echo(struct.pack(">H", 0x0A))
    assert (host.u16(), host.u16(), host.u16()) == (0, 0, 0x1234)
    # Unknown opcode: echoed, status 0x0001, and the phone still listens.
    host.echo(b"\x42")
    assert host.u16() == 0x0001
    host.echo(b"\xfd")
    assert (host.u16(), host.u16()) == (0x6583, 0)
    host.close()
    log = phone.wait_finished(5)
    assert log.registers["0x10000000"] == 0x22002224  # what the host wrote
    assert log.registers["pmic:0x000a"] == 0x1234


def test_send_da_checksum_and_jump_rules(phone: VirtualPhone) -> None:
    host = Host(phone.port)
    host.handshake()
    # Refused before the body: address outside SRAM.
    assert host.send_da(0x00100000, b"\x00" * 64) == (-1, 0x0001)
    # A body of odd length: XOR of LE 16-bit words over the zero-padded body.
    body = random.Random(7).randbytes(0x2001)
    expected = 0
    padded = body + b"\x00"
    for i in range(0, len(padded), 2):
        expected ^= padded[i] | (padded[i + 1] << 8)
    assert expected == xor16(body)
    checksum, status = host.send_da(DA1_ADDR, body, 0x100)
    assert (checksum, status) == (expected, 0)
    # Jumping anywhere but where the DA was loaded is refused.
    assert host.jump_da(DA1_ADDR + 0x1000) != 0
    # Random bytes are no DA: the BROM jumps (status 0) and the phone never speaks again,
    # whatever the host sends (issue 14 item 12).
    assert host.jump_da(DA1_ADDR) == 0
    host.w(b"\x5a" * 8 + b"\xa0")
    assert _nothing_pending(host, 0.3)
    host.close()
    log = phone.wait_finished(5)
    assert log.outcome == "da-crashed" and not log.da_started
    assert log.da_loads == [{"addr": DA1_ADDR, "length": 0x2001, "sig_len": 0x100,
                             "checksum": expected}]
    # The port stays: the next host finds a phone in BROM mode again.
    host = Host(phone.port)
    host.to_da()  # the synthetic DA's real stage 1 does start (SYNC 0xC0)
    host.close()
    log = phone.wait_finished(5)
    assert log.da_started and log.da_name is not None and "synthetic" in log.da_name


def test_a_truncated_or_moved_da_stage1_never_syncs(phone: VirtualPhone) -> None:
    _addr, body, sig_len = da_stage1()
    for blob, addr in ((body[:-2], DA1_ADDR), (body[:-1] + bytes([body[-1] ^ 1]), DA1_ADDR),
                       (body, DA1_ADDR + 0x10000)):
        host = Host(phone.port)
        host.handshake()
        assert host.send_da(addr, blob, sig_len)[1] == 0
        assert host.jump_da(addr) == 0
        assert _nothing_pending(host, 0.2)
        host.close()
        assert phone.wait_finished(5).outcome == "da-crashed"


def test_random_garbage_never_crashes_the_phone(tmp_path: Path) -> None:
    """Hostile hosts: random streams after the handshake end in a defined outcome."""
    for seed in range(4):
        with VirtualPhone(tmp_path / f"s{seed}", once=True) as phone:
            host = Host(phone.port, timeout=0.3)
            host.handshake()
            host.w(random.Random(seed).randbytes(3000))
            host.s.read(100000)
            host.close()
            log = phone.wait_finished(5)
            assert phone.error is None
            assert log.outcome in {"host-closed", "protocol-violation", "finish"}
