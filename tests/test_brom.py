"""BROM commands against a hand-scripted phone on a real pty (bytes from reference §2)."""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_transport import Peer, PtyPhone, be16, be32

from romkit.device.brom import Brom
from romkit.device.transport import SerialTransport
from romkit.errors import DeviceError, HandshakeError, ProtocolError, RomkitError


def answer_handshake(p: Peer) -> None:
    for sent, reply in ((0xA0, 0x5F), (0x0A, 0xF5), (0x50, 0xAF), (0x05, 0xFA)):
        p.expect(bytes([sent]))
        p.write(bytes([reply]))


def run(script, body, timeout: float = 2.0):  # type: ignore[no-untyped-def]
    with PtyPhone(script, autostart=False) as phone:
        t = SerialTransport(phone.path, timeout=timeout)
        phone.start()
        try:
            return body(Brom(t, timeout=timeout))
        finally:
            t.close()


def test_handshake_restarts_after_a_wrong_byte() -> None:
    def script(p: Peer) -> None:
        p.expect(b"\xa0")
        p.write(b"\x00")  # wrong: should have been 5F
        answer_handshake(p)
        assert bytes(p.received) == bytes([0xA0, 0xA0, 0x0A, 0x50, 0x05])

    run(script, lambda b: b.handshake(timeout=3))


def test_handshake_restarts_midway() -> None:
    def script(p: Peer) -> None:
        p.expect(b"\xa0")
        p.write(b"\x5f")
        p.expect(b"\x0a")
        p.write(b"\x0a")  # echo instead of complement
        answer_handshake(p)

    run(script, lambda b: b.handshake(timeout=3))


def test_handshake_silence_is_2006() -> None:
    stop = threading.Event()

    def script(p: Peer) -> None:
        p.drain(stop)

    def body(b: Brom) -> None:
        try:
            with pytest.raises(HandshakeError) as ei:
                b.handshake(timeout=0.4, byte_timeout=0.05)
            assert ei.value.spft_code == 2006
            assert ei.value.hint
        finally:
            stop.set()

    run(script, body)


def test_handshake_wrong_answers_are_2005() -> None:
    stop = threading.Event()

    def script(p: Peer) -> None:
        while not stop.is_set():
            if not p.silent(0.01):
                os.read(p.fd, 1)
                p.write(b"\x00")

    def body(b: Brom) -> None:
        try:
            with pytest.raises(HandshakeError) as ei:
                b.handshake(timeout=0.3, byte_timeout=0.05)
            assert ei.value.spft_code == 2005
        finally:
            stop.set()

    run(script, body)


def test_identity_commands() -> None:
    def script(p: Peer) -> None:
        p.expect(b"\xfd")
        p.write(b"\xfd" + be16(0x6583) + be16(0))
        p.expect(b"\xfc")
        p.write(b"\xfc" + be16(0x8A00) + be16(0xCA00) + be16(0x0000) + be16(0))
        p.expect(b"\xfe")  # not echoed
        p.write(b"\xfe")
        p.expect(b"\xff")
        p.write(b"\x05")
        p.expect(b"\xd8")
        p.write(b"\xd8" + be32(0x00000001) + be16(0))
        p.expect(b"\xdb")
        p.write(b"\xdb" + be16(0))

    def body(b: Brom) -> None:
        assert b.get_hw_code() == 0x6583
        hs = b.get_hw_sw_ver()
        assert (hs.hw_subcode, hs.hw_ver, hs.sw_ver) == (0x8A00, 0xCA00, 0)
        assert b.get_bl_ver() == 0xFE
        assert b.get_version() == 0x05
        cfg = b.get_target_config()
        assert cfg.sbc and not cfg.sla and not cfg.daa
        b.uart1_log_enable()

    run(script, body)


def test_wrong_echo_names_the_opcode() -> None:
    def script(p: Peer) -> None:
        p.expect(b"\xfd")
        p.write(b"\xfc")

    def body(b: Brom) -> None:
        with pytest.raises(ProtocolError) as ei:
            b.get_hw_code()
        assert "GET_HW_CODE" in ei.value.message

    run(script, body)


def test_bad_status_is_reported() -> None:
    def script(p: Peer) -> None:
        p.expect(b"\xd8")
        p.write(b"\xd8" + be32(0) + be16(0x1D0D))

    def body(b: Brom) -> None:
        with pytest.raises(ProtocolError) as ei:
            b.get_target_config()
        assert "0x1D0D" in ei.value.message and "SLA" in ei.value.hint

    run(script, body)


def test_read32_and_watchdog_write32() -> None:
    def script(p: Peer) -> None:
        p.expect(b"\xd1")
        p.write(b"\xd1")
        for v in (0x10000000, 2):
            p.expect(be32(v))
            p.write(be32(v))
        p.write(be16(0) + be32(0x22000064) + be32(0xDEADBEEF) + be16(0))
        # disable_watchdog: WRITE32 0x10000000 <- 0x22002224, every word echoed
        p.expect(b"\xd4")
        p.write(b"\xd4")
        p.expect(bytes.fromhex("10000000"))
        p.write(bytes.fromhex("10000000"))
        p.expect(bytes.fromhex("00000001"))
        p.write(bytes.fromhex("00000001") + be16(1))  # argument check: <= 3 is accepted
        p.expect(bytes.fromhex("22002224"))
        p.write(bytes.fromhex("22002224") + be16(0))
        # a WRITE32 whose argument check says 4: refused
        p.expect(b"\xd4")
        p.write(b"\xd4")
        p.expect(be32(0x10203070))
        p.write(be32(0x10203070))
        p.expect(be32(1))
        p.write(be32(1) + be16(4))
        assert p.silent(0.2), "host sent a value after the refusal"

    def body(b: Brom) -> None:
        assert b.read32(0x10000000, 2) == [0x22000064, 0xDEADBEEF]
        b.disable_watchdog()
        with pytest.raises(ProtocolError) as ei:
            b.write32(0x10203070, [2])
        assert "WRITE32" in ei.value.message and "0x0004" in ei.value.message

    run(script, body)


def test_write32_echo_mismatch() -> None:
    def script(p: Peer) -> None:
        p.expect(b"\xd4")
        p.write(b"\xd4")
        p.expect(be32(0x10203070))
        p.write(be32(0x10203071))

    def body(b: Brom) -> None:
        with pytest.raises(ProtocolError) as ei:
            b.write32(0x10203070, [2])
        assert "WRITE32" in ei.value.message and "10203070" in ei.value.message

    run(script, body)


def xor16_independent(body: bytes) -> int:
    if len(body) % 2:
        body += b"\x00"
    cs = 0
    for i in range(0, len(body), 2):
        cs ^= body[i] | (body[i + 1] << 8)
    return cs


DA_BODY = os.urandom(150_001)  # odd length, bigger than one 64 KiB write


def _send_da_script(checksum_delta: int):  # type: ignore[no-untyped-def]
    def script(p: Peer) -> None:
        p.expect(b"\xd7")
        p.write(b"\xd7")
        for v in (0x12000000, len(DA_BODY), 0x100):
            p.expect(be32(v))
            p.write(be32(v))
        p.write(be16(0))
        body = p.read(len(DA_BODY))
        assert body == DA_BODY
        p.write(be16(xor16_independent(body) ^ checksum_delta) + be16(0))
        if checksum_delta:
            return  # the host must stop here
        p.expect(b"\xd5")
        p.write(b"\xd5")
        p.expect(be32(0x12000000))
        p.write(be32(0x12000000) + be16(0))

    return script


def test_send_da_verifies_the_xor16_checksum() -> None:
    events = []

    def body(b: Brom) -> None:
        got = b.send_da(0x12000000, DA_BODY, 0x100, on_progress=events.append)
        assert got == xor16_independent(DA_BODY)
        b.jump_da(0x12000000)

    run(_send_da_script(0), body)
    assert events[0].kind == "start" and events[-1].kind == "end"
    assert max(e.done for e in events) == len(DA_BODY)


def test_send_da_checksum_mismatch_is_2004() -> None:
    def body(b: Brom) -> None:
        with pytest.raises(DeviceError) as ei:
            b.send_da(0x12000000, DA_BODY, 0x100)
        assert ei.value.spft_code == 2004
        assert "checksum" in ei.value.message

    run(_send_da_script(0x0100), body)


def test_send_da_refused_before_body_sends_nothing() -> None:
    def script(p: Peer) -> None:
        p.expect(b"\xd7")
        p.write(b"\xd7")
        for v in (0x00000010, 4, 0):
            p.expect(be32(v))
            p.write(be32(v))
        p.write(be16(0x0001))
        assert p.silent(0.3), "host sent the DA body after a refusal"

    def body(b: Brom) -> None:
        with pytest.raises(DeviceError) as ei:
            b.send_da(0x10, b"abcd", 0)
        assert ei.value.spft_code == 2004

    run(script, body)


def test_jump_da_refused_is_2035() -> None:
    def script(p: Peer) -> None:
        p.expect(b"\xd5")
        p.write(b"\xd5")
        p.expect(be32(0x12000000))
        p.write(be32(0x12000000) + be16(0x0001))

    def body(b: Brom) -> None:
        with pytest.raises(DeviceError) as ei:
            b.jump_da(0x12000000)
        assert ei.value.spft_code == 2035

    run(script, body)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=40), st.sampled_from(["hw", "ver", "cfg", "r32", "w32", "da", "jump"]))
def test_garbage_from_the_phone_raises_only_romkit_errors(reply: bytes, cmd: str) -> None:
    stop = threading.Event()

    def script(p: Peer) -> None:
        p.read(1)  # after the port is open (pyserial flushes input on open)
        p.write(reply)
        p.drain(stop)

    def body(b: Brom) -> None:
        calls = {
            "hw": b.get_hw_code,
            "ver": b.get_hw_sw_ver,
            "cfg": b.get_target_config,
            "r32": lambda: b.read32(0x10000000, 3),
            "w32": lambda: b.write32(0x10000000, [1, 2]),
            "da": lambda: b.send_da(0x12000000, b"\x01\x02\x03", 0),
            "jump": lambda: b.jump_da(0x12000000),
        }
        try:
            calls[cmd]()
        except RomkitError:
            pass
        finally:
            stop.set()

    run(script, body, timeout=0.05)
