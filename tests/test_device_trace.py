"""`--trace FILE`: every byte of a session against the virtual phone, both ways, in order.

The expected bytes are checked independently of the engine: the handshake and its
complements are the reference's constants typed in here, the readback's data is read from the
phone's own storage, and the READ header is packed here from the scatter address.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from clitools import run_cli, run_main

from romkit.device import protocol as P
from romkit.sim import s820
from romkit.sim.artifacts import da_s820, preloader_s820
from romkit.sim.phone import VirtualPhone
from romkit.sim.sample_firmware import build_s820_folder
from romkit.trace import read_trace, stream

SCATTER = dict((n.removeprefix("__NODL_"), a) for n, a in s820.LAYOUT)


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[VirtualPhone]:
    vp = VirtualPhone(tmp_path / "phone", year=2013)
    vp.start()
    try:
        yield vp
    finally:
        vp.stop()


def test_readback_trace_holds_every_byte(phone: VirtualPhone, tmp_path: Path) -> None:
    folder = build_s820_folder(tmp_path / "fw", preloader=preloader_s820(2013), da=da_s820())
    trace = tmp_path / "session.trace.gz"
    out = tmp_path / "dump"
    res = run_cli("readback", "LOGO", str(out), "--port", str(phone.port), "--firmware",
                  str(folder), "--wait", "5", "--trace", str(trace))
    assert res.returncode == 0, res.stderr

    to_phone, to_host = stream(trace, ">"), stream(trace, "<")
    # Handshake A0 0A 50 05, each answered by its complement, then GET_HW_CODE (FD) echoed
    # and answered 0x6583 with status 0 (reference §2).
    assert to_phone.startswith(bytes.fromhex("a00a5005fd"))
    assert to_host.startswith(bytes.fromhex("5ff5affafd65830000"))
    # The READ command for LOGO, packed here from the scatter (user offset = linear − 6 MiB).
    logo = (out / "LOGO.bin").read_bytes()
    header = bytes([0xD6, 0x0C, 0x02]) + struct.pack(
        ">QQ", SCATTER["LOGO"] - 0x600000, len(logo))
    assert header in to_phone
    on_phone = phone.storage.read(P.PART_USER, SCATTER["LOGO"] - 0x600000, len(logo))
    assert on_phone in to_host  # the data as the phone sent it, byte for byte
    # The session ends with FINISH (D9) and its mode, and the port is closed at the end.
    assert to_phone.endswith(b"\xd9" + bytes(4))
    events = [r.text for r in read_trace(trace) if r.direction == "!"]
    assert events[0].startswith("open ") and events[-1].startswith("close ")


@pytest.mark.parametrize("command", ["flash", "readback", "backup", "restore"])
def test_every_phone_command_offers_trace(command: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run_main(capsys, command, "--help")
    assert code == 0 and "--trace" in out


def test_trace_to_an_unwritable_place_is_a_usage_error(tmp_path: Path) -> None:
    folder = build_s820_folder(tmp_path / "fw", preloader=preloader_s820(2013), da=da_s820())
    res = run_cli("backup", "--port", str(tmp_path / "nophone"), "--firmware", str(folder),
                  "--trace", str(tmp_path / "no" / "dir" / "t"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "error: cannot write the trace file" in res.stderr and "hint:" in res.stderr
