"""The trace format (docs/TRACE.md) and the virtual-port registry: neutral modules."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import pytest

from romkit import trace, virtualports
from romkit.errors import UsageError


@pytest.mark.parametrize("name", ["t.trace", "t.trace.gz"])
def test_trace_lines_follow_the_documented_format(tmp_path, name):
    path = tmp_path / name
    with trace.TraceWriter(path, side="host", port="/dev/pts/9") as tw:
        tw.data(">", b"\xa0")
        tw.data("<", bytes(range(256)) * 20)  # longer than one line
        tw.event("reopen   /dev/pts/10")
    data = path.read_bytes()
    raw = (gzip.decompress(data) if name.endswith(".gz") else data).decode().splitlines()
    assert raw[0] == "# romkit-trace 1"
    assert raw[1].startswith("# side=host port=/dev/pts/9 started=")
    # parsed by hand, independently of read_trace
    stamp, direction, hexbytes = raw[2].split(" ")
    assert float(stamp) >= 0 and direction == ">" and hexbytes == "a0"
    phone = "".join(line.split(" ")[2] for line in raw if line.split(" ")[1:2] == ["<"])
    assert bytes.fromhex(phone) == bytes(range(256)) * 20
    assert raw[-1].split(" ", 2)[1:] == ["!", "reopen /dev/pts/10"]
    assert trace.stream(path, "<") == bytes(range(256)) * 20
    assert [r.text for r in trace.read_trace(path) if r.direction == "!"] == ["reopen /dev/pts/10"]


def test_trace_reader_rejects_other_files(tmp_path):
    bad = tmp_path / "x.trace"
    bad.write_text("hello\n")
    with pytest.raises(UsageError, match="not a romkit trace"):
        list(trace.read_trace(bad))
    bad.write_text("# romkit-trace 1\n0.1 ? zz\n")
    with pytest.raises(UsageError, match=":2: not a trace line"):
        list(trace.read_trace(bad))


def test_registry_announce_move_withdraw(tmp_path, monkeypatch):
    monkeypatch.setenv("ROMKIT_HOME", str(tmp_path))
    entry = virtualports.VirtualPort(phone_id="sim-a", port="/dev/pts/3", owner_pid=os.getpid())
    virtualports.announce(entry)
    assert virtualports.lookup("/dev/pts/3").phone_id == "sim-a"
    virtualports.announce(entry.model_copy(update={"port": "/dev/pts/4", "generation": 1}))
    assert virtualports.lookup("/dev/pts/3") is None
    assert virtualports.find("sim-a").port == "/dev/pts/4"
    virtualports.withdraw("sim-a")
    assert virtualports.list_ports() == []


def test_registry_forgets_dead_owners(tmp_path, monkeypatch):
    monkeypatch.setenv("ROMKIT_HOME", str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    virtualports.announce(virtualports.VirtualPort(phone_id="gone", port="/dev/pts/1",
                                                   owner_pid=child.pid))
    (virtualports.ports_dir() / "junk.json").write_text("{not json")
    assert virtualports.list_ports() == []
    assert list(virtualports.ports_dir().iterdir()) == []


def test_registry_follows_a_phone_from_a_port_it_left(tmp_path, monkeypatch):
    monkeypatch.setenv("ROMKIT_HOME", str(tmp_path))
    me = os.getpid()
    virtualports.announce(virtualports.VirtualPort(phone_id="a", port="/dev/pts/3", owner_pid=me))
    virtualports.announce(virtualports.VirtualPort(phone_id="a", port="/dev/pts/5", owner_pid=me,
                                                   generation=1))
    virtualports.announce(virtualports.VirtualPort(phone_id="a", port="/dev/pts/6", owner_pid=me,
                                                   generation=2))
    assert virtualports.find("a").former_ports == ["/dev/pts/5", "/dev/pts/3"]
    assert virtualports.follow("/dev/pts/3").port == "/dev/pts/6"
    # another phone now owns a reused pty number: its current port wins over a former one
    virtualports.announce(virtualports.VirtualPort(phone_id="b", port="/dev/pts/5", owner_pid=me))
    assert virtualports.follow("/dev/pts/5").phone_id == "b"
    assert virtualports.follow("/dev/pts/9") is None
