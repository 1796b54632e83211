"""The same virtual phone over both cables: a pseudo-terminal and a TCP port (issue 20).

Everything the engine relies on must hold on both: a whole session, the host closing and
coming back, re-enumeration onto a new port, unplug, faults and timeouts.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import serial
from sim_helpers import ACK, CONT, Host, emi_table, follow

from romkit import virtualports
from romkit.errors import UsageError
from romkit.sim.faults import FaultPlan
from romkit.sim.link import parse_link
from romkit.sim.phone import VirtualPhone

USER = 8
LINKS = ["pty", "tcp"]


def _is_url(port: str, link: str) -> bool:
    return port.startswith("socket://127.0.0.1:") if link == "tcp" else port.startswith("/dev/")


@pytest.mark.parametrize("link", LINKS)
def test_full_session_with_re_enumeration(tmp_path: Path, link: str) -> None:
    with VirtualPhone(tmp_path / "s", link=link) as phone:
        first = phone.port
        assert first is not None and _is_url(first, link)
        host = Host(first)
        host.full_setup(emi_table(2013), phone.phone_id)  # evidence: 70 01 → a new port
        assert host.s.port != first and _is_url(host.s.port, link)
        assert host.switch(USER) == ACK
        data = bytes(range(256)) * 64
        assert host.write(USER, 0x200000, data, packet=0x1000) == [CONT] * 4
        assert host.read(0x200000, len(data)) == data
        assert host.format(0x200000, 0x4000)[-1] == 100
        generation = phone.generation
        host.finish()
        assert phone.wait_finished(5).outcome == "finish"
        back = follow(phone.phone_id, generation)  # the rebooted phone, on yet another port
        host.close()
        host = Host(back.port)
        host.handshake()
        host.close()
        assert phone.wait_finished(5).outcome == "host-closed"
    assert virtualports.find(phone.phone_id) is None


@pytest.mark.parametrize("link", LINKS)
def test_host_leaves_and_comes_back_on_the_same_port(tmp_path: Path, link: str) -> None:
    with VirtualPhone(tmp_path / "s", link=link) as phone:
        port = phone.port
        assert port is not None
        for _ in range(2):
            Host(port).close()  # open and close before any byte: ignored
        host = Host(port)
        host.handshake()
        host.echo(b"\xfd")
        assert (host.u16(), host.u16()) == (0x6583, 0)
        host.close()
        assert phone.wait_finished(5).outcome == "host-closed"
        host = Host(port)  # the same port serves the next host
        host.handshake()
        host.close()
        assert phone.wait_finished(5).outcome == "host-closed"
        assert phone.port == port and phone.generation == 0


@pytest.mark.parametrize("link", LINKS)
def test_disconnect_fault_unplugs_and_comes_back(tmp_path: Path, link: str) -> None:
    plan = FaultPlan.parse(["disconnect@0"])
    with VirtualPhone(tmp_path / "s", link=link, faults=plan, dialect="lenient") as phone:
        host = Host(phone.port)
        host.full_setup(emi_table(2013))
        assert host.switch(USER) == ACK
        with pytest.raises((serial.SerialException, OSError, AssertionError)):
            host.write(USER, 0, bytes(0x1000))
            host.byte()
        host.close()
        assert phone.wait_finished(5).outcome == "disconnect-fault"
        again = follow(phone.phone_id, 0)
        host = Host(again.port)
        host.handshake()
        host.close()


@pytest.mark.parametrize("link", LINKS)
def test_window_times_out_without_a_host(tmp_path: Path, link: str) -> None:
    plan = FaultPlan.parse(["window=0.3"])
    with VirtualPhone(tmp_path / "s", link=link, faults=plan, once=True) as phone:
        started = time.monotonic()
        log = phone.wait_finished(5)
    assert log.outcome == "window-closed" and time.monotonic() - started >= 0.25


@pytest.mark.parametrize("link", LINKS)
def test_packet_timeout_on_a_dropped_byte(tmp_path: Path, link: str) -> None:
    plan = FaultPlan.parse(["drop@10"])
    with VirtualPhone(tmp_path / "s", link=link, faults=plan, dialect="lenient",
                      packet_timeout=0.2) as phone:
        host = Host(phone.port)
        host.full_setup(emi_table(2013))
        assert host.switch(USER) == ACK
        assert host.write(USER, 0, bytes(range(256)) * 16) == [0xA5, CONT]
        host.finish()
        host.close()


def test_fixed_tcp_port_then_a_new_one_on_re_enumeration(tmp_path: Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    free = probe.getsockname()[1]
    probe.close()
    with VirtualPhone(tmp_path / "s", link=f"tcp:127.0.0.1:{free}") as phone:
        assert phone.port == f"socket://127.0.0.1:{free}"
        host = Host(phone.port)
        host.full_setup(emi_table(2013), phone.phone_id)
        assert host.s.port != phone.port or phone.generation == 1
        assert virtualports.find(phone.phone_id).port != f"socket://127.0.0.1:{free}"
        host.close()
        with pytest.raises(UsageError, match="cannot listen"):
            VirtualPhone(tmp_path / "t", link=phone.port.replace("socket://", "tcp:")).start()


@pytest.mark.parametrize("spec", ["usb", "tcp:localhost", "tcp:127.0.0.1:70000", "pty:1"])
def test_bad_link_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_link(spec)


def test_cli_link_tcp_json(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "romkit", "sim", "--link", "tcp", "--once",
                             "--json", "--state", str(tmp_path / "s")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        info = json.loads(proc.stdout.readline())
        assert info["link"] == "tcp" and info["port"].startswith("socket://127.0.0.1:")
        assert virtualports.find(info["phone_id"]).port == info["port"]
        host = Host(info["port"])
        host.handshake()
        host.close()
        _out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
