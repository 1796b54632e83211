"""Fault injection for the virtual phone: what can go wrong on a real USB link, on demand.

A flash engine is only as good as its behaviour when the link misbehaves, and real cables
misbehave rarely and never on cue. A `FaultPlan` says which faults the phone injects; the
`FaultTracker` fires each positional fault once per phone (not once per session), so that a
host that reconnects after a fault can finish the job — exactly the recovery path we want to
test. Positions are counted over the *data* bytes of all WRITE commands of a session
(padding and retransmissions excluded), i.e. over the byte stream that lands on storage.

Spec syntax (CLI `--fault`, repeatable): `corrupt@N`, `drop@N`, `disconnect@N`,
`stall@N:SECONDS`, `nack@K` (K = 1-based index of a write packet), `rate=BYTES_PER_S`,
`window=SECONDS`. Numbers accept `0x` hex and `_` separators.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from romkit.errors import UsageError

_HINT = ("use corrupt@N, drop@N, disconnect@N, stall@N:SECONDS, nack@K, rate=BYTES_PER_S "
         "or window=SECONDS")


@dataclass
class FaultPlan:
    """Which faults to inject. Empty lists / None mean "behave like a healthy phone"."""

    corrupt: list[int] = field(default_factory=list)
    drop: list[int] = field(default_factory=list)
    stall: list[tuple[int, float]] = field(default_factory=list)
    nack: list[int] = field(default_factory=list)
    disconnect: int | None = None
    rate: int | None = None
    window: float | None = None

    @classmethod
    def parse(cls, specs: Iterable[str]) -> FaultPlan:
        """Build a plan from CLI-style specs; any malformed spec is a `UsageError`."""
        plan = cls()
        for spec in specs:
            plan.add(spec)
        return plan

    def add(self, spec: str) -> None:
        text = spec.strip().lower()
        if "@" in text:
            kind, _, arg = text.partition("@")
            if kind == "stall":
                pos_text, sep, secs_text = arg.partition(":")
                if not sep:
                    raise UsageError(f"fault {spec!r} needs a duration", hint="e.g. stall@0:2.5")
                self.stall.append((_offset(pos_text, spec), _seconds(secs_text, spec)))
            elif kind == "corrupt":
                self.corrupt.append(_offset(arg, spec))
            elif kind == "drop":
                self.drop.append(_offset(arg, spec))
            elif kind == "disconnect":
                self.disconnect = _offset(arg, spec)
            elif kind == "nack":
                k = _offset(arg, spec)
                if k < 1:
                    raise UsageError(f"fault {spec!r}: packets are counted from 1", hint=_HINT)
                self.nack.append(k)
            else:
                raise UsageError(f"unknown fault {spec!r}", hint=_HINT)
        elif "=" in text:
            kind, _, arg = text.partition("=")
            if kind == "rate":
                rate = _offset(arg, spec)
                if rate < 1:
                    raise UsageError(f"fault {spec!r}: the rate must be at least 1 byte/s",
                                     hint="e.g. rate=2000000")
                self.rate = rate
            elif kind == "window":
                self.window = _seconds(arg, spec)
            else:
                raise UsageError(f"unknown fault {spec!r}", hint=_HINT)
        else:
            raise UsageError(f"unknown fault {spec!r}", hint=_HINT)

    def describe(self) -> list[str]:
        """The plan back in spec syntax (for logs and `--json`)."""
        items = [f"corrupt@{n}" for n in self.corrupt] + [f"drop@{n}" for n in self.drop]
        items += [f"stall@{n}:{t:g}" for n, t in self.stall] + [f"nack@{k}" for k in self.nack]
        if self.disconnect is not None:
            items.append(f"disconnect@{self.disconnect}")
        if self.rate is not None:
            items.append(f"rate={self.rate}")
        if self.window is not None:
            items.append(f"window={self.window:g}")
        return items


def _offset(text: str, spec: str) -> int:
    try:
        value = int(text.replace("_", ""), 0)
    except ValueError:
        raise UsageError(f"fault {spec!r}: {text!r} is not a whole number", hint=_HINT) from None
    if value < 0:
        raise UsageError(f"fault {spec!r}: offsets cannot be negative", hint=_HINT)
    return value


def _seconds(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"fault {spec!r}: {text!r} is not a number of seconds",
                         hint=_HINT) from None
    if not math.isfinite(value) or value < 0 or value > 3600:
        raise UsageError(f"fault {spec!r}: seconds must be between 0 and 3600", hint=_HINT)
    return value


@dataclass
class PacketFaults:
    """What the tracker decided for one write packet."""

    disconnect: bool = False
    stall: float = 0.0
    corrupt: list[int] = field(default_factory=list)  # indexes within the packet's data
    drop: int | None = None  # index within the packet's data
    nack: bool = False
    fired: list[str] = field(default_factory=list)


class FaultTracker:
    """Fires the plan's positional faults, each once for the phone's lifetime."""

    def __init__(self, plan: FaultPlan | None) -> None:
        self.plan = plan or FaultPlan()
        self._fired: set[str] = set()

    def _take(self, key: str) -> bool:
        if key in self._fired:
            return False
        self._fired.add(key)
        return True

    def for_packet(self, stream_pos: int, length: int, packet_no: int,
                   first_attempt: bool) -> PacketFaults:
        """Faults for the packet holding stream bytes [stream_pos, stream_pos + length)."""
        end = stream_pos + length
        pf = PacketFaults()
        plan = self.plan
        if (plan.disconnect is not None and plan.disconnect < end
                and self._take(f"disconnect@{plan.disconnect}")):
            pf.disconnect = True
            pf.fired.append(f"disconnect@{plan.disconnect}")
            return pf
        for pos, secs in plan.stall:
            if stream_pos <= pos < end and self._take(f"stall@{pos}:{secs:g}"):
                pf.stall += secs
                pf.fired.append(f"stall@{pos}:{secs:g}")
        for pos in plan.corrupt:
            if stream_pos <= pos < end and self._take(f"corrupt@{pos}"):
                pf.corrupt.append(pos - stream_pos)
                pf.fired.append(f"corrupt@{pos}")
        for pos in plan.drop:
            if stream_pos <= pos < end and pf.drop is None and self._take(f"drop@{pos}"):
                pf.drop = pos - stream_pos
                pf.fired.append(f"drop@{pos}")
        if first_attempt and packet_no in plan.nack and self._take(f"nack@{packet_no}"):
            pf.nack = True
            pf.fired.append(f"nack@{packet_no}")
        return pf
