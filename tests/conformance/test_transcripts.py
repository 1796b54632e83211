"""Conformance: every transcript's phone side against romkit's engine, its host side against
the virtual phone. Expected bytes come only from the transcripts (public evidence).

These tests are meant to fail where romkit disagrees with the outside world; they are not
marked xfail. See README.md for the transcript list and the reading → sim dialect mapping.
"""

from __future__ import annotations

import os
from pathlib import Path

import harness
import pytest
from player import TRANSCRIPTS, Mismatch, Player, Transcript, load

from tests.conftest import pty_only

# the player speaks byte-exact transcripts over a real pty, and so does the sim it judges
pytestmark = pty_only

ALL = sorted(p.stem for p in TRANSCRIPTS.glob("*.txt"))


def _t(name: str) -> Transcript:
    return load(f"{name}.txt")


def _knobs(t: Transcript) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for item in t.meta.get("sim-knobs", "").split():
        k, _, v = item.partition("=")
        out[k] = set(v.split("|"))
    return out


def _sim_cases() -> list[tuple[str, str | None]]:
    if not harness.sim_supports_dialects():
        return [(n, None) for n in ALL if _t(n).meta.get("sim-default") == "yes"]
    from romkit.sim.dialects import DIALECTS

    cases: list[tuple[str, str | None]] = []
    for n in ALL:
        need = _knobs(_t(n))
        for name, d in DIALECTS.items():
            knobs = {k: str(v) for k, v in d.knobs().items()}
            if all(knobs.get(k) in vs for k, vs in need.items()):
                cases.append((n, name))
    return cases


def test_every_transcript_names_its_sources_and_items() -> None:
    for n in ALL:
        t = _t(n)
        assert t.sources, n
        assert t.meta.get("covers"), f"{n}: no '# covers:' line"
        assert t.meta.get("engine", "").split()[0] in ("yes", "no", "connect"), n


def test_items_1_to_12_are_covered() -> None:
    covered: set[int] = set()
    for n in ALL:
        for tok in _t(n).meta["covers"].replace(",", " ").split():
            if tok.isdigit():
                covered.add(int(tok))
    assert set(range(1, 13)) <= covered, sorted(set(range(1, 13)) - covered)


def test_player_reports_step_source_and_bytes(tmp_path: Path) -> None:
    """The player itself can fail: a wrong byte names the step, both byte strings and the
    source line."""
    f = tmp_path / "t.txt"
    f.write_text("# source: test line\nH a0\nP 5f\n")
    t = load(f)

    class Loop(harness.Wire):
        def __init__(self) -> None:
            self.buf = b""

        def write(self, data: bytes) -> None:
            self.buf += bytes([data[0] ^ 0xFE])  # a wrong complement

        def read(self, n: int, timeout: float) -> bytes:
            out, self.buf = self.buf[:n], self.buf[n:]
            return out

        def close(self) -> None:
            pass

    with pytest.raises(Mismatch) as err:
        Player(t, "host", Loop()).run()
    text = str(err.value)
    assert "step 2" in text and "expected 5f" in text and "received 5e" in text
    assert "source: test line" in text


@pytest.mark.parametrize("name", [n for n in ALL if _t(n).meta["engine"].startswith("yes")])
def test_engine_against_phone_side(name: str) -> None:
    run = harness.run_engine(_t(name))
    if name == "spft_mt6589_brom" and "pwr_read16" not in run.skipped:
        reads = dict(run.results["pmic"][:1])
        assert reads == {0x000E: 0x1001}, "CHR_CON7 reads 0x1001 on a real phone"


def test_engine_follows_reenumeration() -> None:
    """Item 10, reading "re-enumerate": after 70 01 the port disappears and the phone comes
    back on a new one (mtkclient upload_da1 reconnects); the engine must find it and carry on.
    Played through romkit.device.connect, where the engine follows the phone."""
    harness.run_engine_connect(_t("usb_speed_reenumerate"))


@pytest.mark.parametrize(("name", "dialect"), _sim_cases())
def test_sim_against_host_side(name: str, dialect: str | None, tmp_path: Path) -> None:
    da = None
    if name == "da_garbage_silent":
        da1 = os.urandom(0x4000)
        da = (da1, b"")
    harness.run_sim(_t(name), tmp_path / "phone", dialect=dialect, da=da,
                    full_speed=name.startswith("usb_speed"))

