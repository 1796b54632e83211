"""Every fault knob of the virtual phone, one test each, plus the spec parser."""

from __future__ import annotations

import os
import random
import struct
import time
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import ACK, CONT, NACK, Host, bsum, emi_table

from romkit.errors import UsageError
from romkit.sim.faults import FaultPlan
from romkit.sim.phone import VirtualPhone
from tests.conftest import pty_only

USER = 8
PACKET = 0x1000


def _flashing_phone(tmp_path: Path, *specs: str, **kw) -> tuple[VirtualPhone, Host]:
    phone = VirtualPhone(tmp_path / "s", faults=FaultPlan.parse(specs), **kw)
    phone.start()
    host = Host(phone.port)
    host.full_setup(emi_table(2013), phone.phone_id)
    assert host.switch(USER) == ACK
    return phone, host


def _finish(phone: VirtualPhone, host: Host):
    host.finish()
    host.close()
    log = phone.wait_finished(5)
    phone.stop()
    return log


def test_corrupt_byte_is_nacked_then_resent(tmp_path: Path) -> None:
    phone, host = _flashing_phone(tmp_path, "corrupt@5000")
    data = random.Random(2).randbytes(3 * PACKET)
    answers = host.write(USER, 0x10000, data)
    assert answers == [CONT, NACK, CONT, CONT]  # byte 5000 lives in packet 2
    assert host.read(0x10000, len(data)) == data
    log = _finish(phone, host)
    assert log.faults_fired == ["corrupt@5000"]
    assert log.writes[0].retries == 1


def test_dropped_byte_times_out_the_packet_then_resent(tmp_path: Path) -> None:
    phone, host = _flashing_phone(tmp_path, "drop@100", packet_timeout=0.2)
    data = random.Random(3).randbytes(2 * PACKET)
    started = time.monotonic()
    assert host.write(USER, 0x10000, data) == [NACK, CONT, CONT]
    assert time.monotonic() - started >= 0.2
    assert phone.storage.read(USER, 0x10000, len(data)) == data
    assert _finish(phone, host).faults_fired == ["drop@100"]


def test_nack_of_the_kth_packet_once(tmp_path: Path) -> None:
    phone, host = _flashing_phone(tmp_path, "nack@3")
    data = random.Random(4).randbytes(2 * PACKET)
    assert host.write(USER, 0, data) == [CONT, CONT]
    # Packets are counted over the session: the 3rd is the first of the next WRITE.
    assert host.write(USER, 0x8000, data) == [NACK, CONT, CONT]
    assert host.write(USER, 0x10000, data) == [CONT, CONT]
    assert phone.storage.read(USER, 0x8000, len(data)) == data
    assert _finish(phone, host).faults_fired == ["nack@3"]


def test_stall_delays_the_answer(tmp_path: Path) -> None:
    phone, host = _flashing_phone(tmp_path, "stall@0:0.6")
    host.s.timeout = 0.3
    host.w(0x62)
    host.w(struct.pack(">BBQQI", 1, USER, 0, PACKET, PACKET))
    assert host.byte() == ACK
    packet = bytes(PACKET)
    host.w(bytes([ACK]) + packet + struct.pack(">H", bsum(packet)))
    assert host.s.read(1) == b""  # a host with a 0.3 s timeout sees nothing …
    host.s.timeout = 2
    assert host.byte() == CONT  # … but the phone answers after the stall (no final ACK)
    assert _finish(phone, host).faults_fired == ["stall@0:0.6"]


def test_disconnect_closes_the_port_then_reconnects_on_new_pty(tmp_path: Path) -> None:
    phone, host = _flashing_phone(tmp_path, "disconnect@8192")
    data = random.Random(5).randbytes(4 * PACKET)
    with pytest.raises((serial.SerialException, OSError)):
        host.write(USER, 0x10000, data)
        host.byte()
    host.close()
    log = phone.wait_finished(5)
    assert log.outcome == "disconnect-fault"
    assert log.faults_fired == ["disconnect@8192"]
    # Bytes before the fault landed, the packet holding it did not.
    assert phone.storage.read(USER, 0x10000, 2 * PACKET) == data[:2 * PACKET]
    assert phone.storage.read(USER, 0x10000 + 2 * PACKET, PACKET) == bytes(PACKET)
    # The phone comes back on a fresh pty and the fault does not fire again.
    deadline = time.monotonic() + 5
    while phone.session_log is log and time.monotonic() < deadline:
        time.sleep(0.01)
    host = Host(phone.port)
    host.full_setup(emi_table(2013), phone.phone_id)
    assert host.switch(USER) == ACK
    assert host.write(USER, 0x10000, data) == [CONT] * 4
    assert _finish(phone, host).faults_fired == []


def test_rate_caps_what_the_phone_sends(tmp_path: Path) -> None:
    rate = 200_000
    phone, host = _flashing_phone(tmp_path, f"rate={rate}")
    size = 100_000
    started = time.monotonic()
    host.read(0, size, packet=0x10000)
    elapsed = time.monotonic() - started
    assert elapsed >= size / rate * 0.9
    _finish(phone, host)


@pty_only
def test_window_closes_without_handshake(tmp_path: Path) -> None:
    plan = FaultPlan.parse(["window=0.3"])
    with VirtualPhone(tmp_path / "s", faults=plan, once=True) as phone:
        fd = os.open(phone.port, os.O_RDWR | os.O_NOCTTY)
        log = phone.wait_finished(3)
        assert log.outcome == "window-closed" and log.faults_fired == ["window=0.3"]
        assert time.time() - log.started >= 0.3
        try:  # the port is gone: EOF or an I/O error
            assert os.read(fd, 1) == b""
        except OSError:
            pass
        finally:
            os.close(fd)


def test_window_is_harmless_when_handshake_comes_in_time(tmp_path: Path) -> None:
    plan = FaultPlan.parse(["window=2"])
    with VirtualPhone(tmp_path / "s", faults=plan, once=True) as phone:
        host = Host(phone.port)
        host.handshake()
        time.sleep(0.1)
        host.echo(b"\xfd")
        assert host.u16() == 0x6583
        host.close()


def test_fault_specs_parse() -> None:
    plan = FaultPlan.parse(["corrupt@1048576", "drop@0x1000", "disconnect@200_000",
                            "stall@0:2.5", "nack@3", "rate=2000000", "window=3"])
    assert plan.corrupt == [1048576] and plan.drop == [4096]
    assert plan.disconnect == 200000 and plan.stall == [(0, 2.5)] and plan.nack == [3]
    assert plan.rate == 2000000 and plan.window == 3.0
    assert FaultPlan.parse(plan.describe()) == plan


@pytest.mark.parametrize("spec", ["corrupt", "corrupt@x", "stall@5", "nack@0", "rate=0",
                                  "window=-1", "window=nan", "boom@3", "speed=9", "drop@-4"])
def test_bad_fault_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        FaultPlan.parse([spec])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_fault_parser_raises_only_usage_errors(spec: str) -> None:
    try:
        FaultPlan.parse([spec])
    except UsageError:
        pass
