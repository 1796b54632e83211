"""USB speed switch (0x70 0x01): the engine finds the phone again, wherever it comes back.

On real USB the DA re-enumerates after acknowledging the switch (bkerler/mtkclient
dalegacy_lib.py upload_da1 closes the port, waits, reconnects and sends 0x72 again). The
phone here is hand-scripted on real ptys; the three ways it can come back are the old "same
port" reading, a virtual phone re-announcing itself on a new pty (romkit.virtualports), and
the same port name leading to a new node (a udev symlink).
"""

from __future__ import annotations

import os
import threading
import tty
from pathlib import Path
from typing import Any

import pytest
from test_legacy_da import (
    CONFIG_BYTES,
    EMI_BLOB,
    phone_config,
    phone_dram,
    phone_flash_info,
    phone_stage2,
    phone_sync_and_report,
)
from test_legacy_da_connect import hand_packed_da, phone_brom
from test_transport import Peer, PtyPhone

from romkit import virtualports
from romkit.device.connect import connect
from romkit.errors import DeviceTimeout
from romkit.firmware.da import parse_da
from romkit.trace import read_trace


class SecondPort:
    """The pty the phone re-enumerates on; its script answers the host's 0x72."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            p = Peer(self.master)
            p.expect(b"\x72", timeout=10)
            p.write(b"\x5a\x01")
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc

    def close(self) -> None:
        self.thread.join(5)
        os.close(self.master)
        os.close(self.slave)
        if self.error is not None:
            raise self.error


def phone_until_switch(p: Peer) -> None:
    phone_brom(p)
    phone_sync_and_report(p)
    phone_config(p, CONFIG_BYTES)
    phone_dram(p)
    phone_stage2(p)
    phone_flash_info(p)
    p.expect(b"\x72")
    p.write(b"\x5a\x00")  # full speed
    p.expect(b"\x70\x01")
    p.write(b"\x5a")


def connect_to(port: str, trace: Path | None = None, **kw: Any) -> Any:
    return connect(port, da=parse_da(hand_packed_da()), emi=EMI_BLOB, emi_version=10,
                   wait_timeout=2, handshake_timeout=3, timeout=2, trace=trace,
                   reenum_timeout=5, **kw)


def test_same_port_after_the_switch_old_reading(tmp_path: Path) -> None:
    def script(p: Peer) -> None:
        phone_until_switch(p)
        p.expect(b"\x72")
        p.write(b"\x5a\x01")

    with PtyPhone(script) as phone:
        dev = connect_to(phone.path, trace=tmp_path / "t.trace")
        try:
            assert dev.usb_speed == 1 and dev.port == phone.path
        finally:
            dev.close()


def test_virtual_phone_reannounced_on_a_new_pty() -> None:
    second = SecondPort()
    holder: dict[str, PtyPhone] = {}

    def script(p: Peer) -> None:
        phone_until_switch(p)
        second.thread.start()
        virtualports.announce(virtualports.VirtualPort(
            phone_id="s820-x", port=second.path, pid=0x2001, owner_pid=os.getpid(),
            generation=1))
        holder["phone"].hangup()  # the old pty disappears, as the USB port would

    phone = PtyPhone(script)
    holder["phone"] = phone
    virtualports.announce(virtualports.VirtualPort(phone_id="s820-x", port=phone.path,
                                                   pid=0x0003, owner_pid=os.getpid()))
    with phone:
        dev = connect_to(phone.path)
        try:
            assert dev.port == second.path and dev.usb_speed == 1
        finally:
            dev.close()
    second.close()


def test_same_name_new_node_udev_symlink(tmp_path: Path) -> None:
    second = SecondPort()
    link = tmp_path / "mtk-phone"
    holder: dict[str, PtyPhone] = {}

    def script(p: Peer) -> None:
        phone_until_switch(p)
        second.thread.start()
        holder["phone"].hangup()
        tmp = tmp_path / "mtk-phone.new"
        tmp.symlink_to(second.path)
        os.replace(tmp, link)  # the name now leads to the re-enumerated port

    phone = PtyPhone(script)
    holder["phone"] = phone
    link.symlink_to(phone.path)
    with phone:
        dev = connect_to(str(link), trace=tmp_path / "t.trace")
        try:
            assert dev.port == str(link) and dev.usb_speed == 1
        finally:
            dev.close()
    second.close()
    events = [r.text for r in read_trace(tmp_path / "t.trace") if r.direction == "!"]
    assert any(e.startswith("reopen ") for e in events)
    assert sum(e.startswith("open ") for e in events) == 2


def test_a_da_that_never_starts_stops_the_bring_up() -> None:
    """A real phone runs what it got: garbage never answers SYNC (issue 14, item 12)."""
    def script(p: Peer) -> None:
        phone_brom(p)
        assert p.silent(1.0)

    with PtyPhone(script) as phone, pytest.raises(DeviceTimeout) as ei:
        connect_to(phone.path, da_start_timeout=0.4)
    assert "did not start the Download Agent" in ei.value.message
    assert ei.value.spft_code == 4001
