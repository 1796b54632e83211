"""`romkit sim` as a subprocess, and the simulator's small parsers under hypothesis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sim_helpers import Host

from romkit.errors import UsageError
from romkit.sim import s820
from romkit.sim.da_stage import match_emi, parse_emi_entries
from romkit.sim.session import parse_memory_id


def _romkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "romkit", *args]


def test_cli_once_json_reports_port_and_identity(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _romkit("sim", "--once", "--json", "--year", "2014", "--storage", "8G",
                "--state", str(tmp_path / "s")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        info = json.loads(proc.stdout.readline())
        assert info["hw_code"] == "0x6583"
        assert info["memory_id"] == s820.PART_2014.cid.hex()
        assert info["user_size"] == 0x1D2000000 and info["storage"] == "8G"
        host = Host(info["port"])
        host.handshake()
        host.echo(b"\xfd")
        assert host.u16() == 0x6583
        host.close()  # the host lets go after the handshake: the one session ends
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["event"] == "session" and summary["outcome"] == "host-closed"


def test_cli_dry_run_touches_nothing(tmp_path: Path) -> None:
    state = tmp_path / "never"
    res = subprocess.run(_romkit("sim", "--dry-run", "--json", "--state", str(state),
                                 "--memory-id", "90014a53494d313448", "--fault", "nack@2"),
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    payload = json.loads(res.stdout)
    assert payload["state"] == "create factory state" and payload["faults"] == ["nack@2"]
    assert payload["memory_id"].startswith("90014a53494d313448")
    assert not state.exists()


def test_cli_bad_options_are_usage_errors(tmp_path: Path) -> None:
    for args in (["--fault", "explode@1"], ["--year", "2015"], ["--memory-id", "zz"]):
        res = subprocess.run(_romkit("sim", "--dry-run", "--state", str(tmp_path), *args),
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 2, (args, res.stderr)
        assert "error:" in res.stderr and "hint:" in res.stderr


_ID_FORMS = ("plain", "upper", "0x", "0X", "spaced", "colons", "padded", "odd", "junk")


def _id_text(raw: bytes, form: str) -> str:
    """`raw` written as a user might type it; "odd" and "junk" are near-misses."""
    h = raw.hex()
    return {"plain": h, "upper": h.upper(), "0x": "0x" + h, "0X": "0X" + h.upper(),
            "spaced": " ".join(f"{b:02x}" for b in raw),
            "colons": ":".join(f"{b:02X}" for b in raw), "padded": f"  {h}\n",
            "odd": h[:-1], "junk": h + "g"}[form]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40).map(lambda t: (t, None)),
                 st.tuples(st.binary(max_size=20) | st.binary(min_size=15, max_size=18),
                           st.sampled_from(_ID_FORMS))
                 .map(lambda rf: (_id_text(*rf), rf[0] if rf[1] not in ("odd", "junk")
                                  else None))))
def test_memory_id_parser_raises_only_usage_errors(case: tuple[str, bytes | None]) -> None:
    """Hex IDs of 1..16 bytes in any usual spelling give those bytes, zero-padded to the
    16-byte CID; too long, empty, odd-length or non-hex input raises UsageError."""
    text, raw = case
    try:
        cid = parse_memory_id(text, 2013)
    except UsageError:
        assert raw is None or not 1 <= len(raw) <= 16
        return
    assert len(cid) == 16
    if raw is not None:
        assert cid == raw + bytes(16 - len(raw))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=0xB8 * 5), st.binary(min_size=16, max_size=16))
def test_emi_parser_accepts_any_bytes(blob: bytes, cid: bytes) -> None:
    entries = parse_emi_entries(blob)
    assert len(entries) <= len(blob) // 0xB8
    index = match_emi(entries, cid)
    assert index is None or 0 <= index < len(entries)
