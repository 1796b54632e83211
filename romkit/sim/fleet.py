"""Several virtual phones in one process: the bench of a repair-shop station (`sim --phones`).

Why: the station (romkit/station.py) is tested, demonstrated and benchmarked against many
phones at once, each a different unit — its own eMMC CID (the station recognises phones by
it, and backups are keyed by it), its own state folder, and a memory part of its build year
(2013 or 2014; a 2014 unit meets a 2013 preloader with SP Flash Tool's 4032). One process
with N `VirtualPhone` threads is cheaper to start than N `romkit sim` processes; a benchmark
that wants each phone's CPU separate still starts one process per phone.

A phone's CID is its year's memory part with the product serial number (PSN, CID bytes
10..13) replaced by `SERIAL_BASE + index`, and the CRC7 byte recomputed (JEDEC JESD84 CID
register; `romkit.sim.s820.jedec_cid`), so it decodes cleanly on the host and stays the same
for the same index across runs (a re-used state folder is the same phone). The first nine
bytes — what the preloader's EMI table matches — stay those of the year's part.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from romkit.errors import UsageError
from romkit.sim import s820
from romkit.sim.faults import FaultPlan
from romkit.sim.phone import VirtualPhone
from romkit.sim.session import SessionLog

MAX_PHONES = 32  # ptys and threads are cheap, but a bench beyond a 32-port hub says nothing
SERIAL_BASE = 0x53540000  # "ST" + index: recognisably a station phone in a hex dump
_TARGETED = re.compile(r"^(\d+):(.+)$")  # "3:disconnect@0x100000" = phone 3 only


def phone_cid(year: int, index: int) -> bytes:
    """The CID of phone `index` (1-based) built in `year`: distinct per index, valid CRC7."""
    if year not in s820.PARTS_BY_YEAR:
        raise UsageError(f"no memory part is known for year {year}",
                         hint=f"use years from {', '.join(map(str, s820.PARTS_BY_YEAR))}")
    base = bytearray(s820.PARTS_BY_YEAR[year].cid[:15])
    base[10:14] = (SERIAL_BASE + index).to_bytes(4, "big")
    return s820.jedec_cid(bytes(base))


def parse_years(text: str, count: int) -> list[int]:
    """`2013,2014` → the build year of each of `count` phones, the list repeated in turn."""
    try:
        years = [int(y) for y in text.replace(" ", "").split(",") if y]
    except ValueError:
        raise UsageError(f"--years {text!r} is not a list of years",
                         hint="e.g. --years 2013,2013,2014") from None
    bad = [y for y in years if y not in s820.PARTS_BY_YEAR]
    if not years or bad:
        raise UsageError(f"--years {text!r}: the virtual S820 is built in "
                         f"{' or '.join(map(str, s820.PARTS_BY_YEAR))}",
                         hint="e.g. --years 2013,2013,2014")
    return [years[i % len(years)] for i in range(count)]


def split_faults(specs: list[str], count: int) -> list[FaultPlan]:
    """One fault plan per phone: `SPEC` goes to every phone, `N:SPEC` to phone N only."""
    per_phone: list[list[str]] = [[] for _ in range(count)]
    for spec in specs:
        m = _TARGETED.match(spec.strip())
        if m is None:
            for mine in per_phone:
                mine.append(spec)
            continue
        index = int(m.group(1))
        if not 1 <= index <= count:
            raise UsageError(f"fault {spec!r} names phone {index}, but there are {count}",
                             hint=f"number phones 1 to {count}: --fault 2:disconnect@0x100000")
        per_phone[index - 1].append(m.group(2))
    return [FaultPlan.parse(mine) for mine in per_phone]


@dataclass
class FleetSpec:
    """What `romkit sim --phones N` builds: N phones under one state folder."""

    count: int
    root: Path
    years: list[int]
    storage: str = "4G"
    boot: str = "brom"
    dialect: str | None = None
    link: str | None = None
    faults: list[FaultPlan] = field(default_factory=list)
    once: bool = False
    reset: bool = False

    def state_dir(self, index: int) -> Path:
        return self.root / f"phone{index:02d}"


def check_count(count: int) -> int:
    if not 1 <= count <= MAX_PHONES:
        raise UsageError(f"--phones {count} is out of range",
                         hint=f"give 1 to {MAX_PHONES} phones")
    return count


def build_fleet(spec: FleetSpec,
                on_port: Callable[[VirtualPhone, str], None] | None = None) -> list[VirtualPhone]:
    """Create (not start) the phones of `spec`, each with its state folder, CID and faults."""
    check_count(spec.count)
    phones: list[VirtualPhone] = []
    for i in range(1, spec.count + 1):
        holder: list[VirtualPhone] = []

        def announce(port: str, holder: list[VirtualPhone] = holder) -> None:
            if on_port is not None and holder:
                on_port(holder[0], port)

        phone = VirtualPhone(spec.state_dir(i), year=spec.years[i - 1],
                             memory_id=phone_cid(spec.years[i - 1], i), storage=spec.storage,
                             boot=spec.boot, faults=spec.faults[i - 1] if spec.faults else None,
                             once=spec.once, dialect=spec.dialect, reset=spec.reset,
                             on_port=announce, link=spec.link)
        holder.append(phone)
        phones.append(phone)
    return phones


def serve_fleet(phones: list[VirtualPhone],
                on_session: Callable[[VirtualPhone, SessionLog], None] | None = None,
                on_started: Callable[[], None] | None = None) -> None:
    """Run every phone until all have stopped (with `once`: after one session each) or until
    interrupted; every phone is unplugged cleanly on the way out."""
    try:
        for phone in phones:
            phone.start()
        if on_started is not None:
            on_started()
        live = list(phones)
        while live:
            for phone in list(live):
                log = phone.next_session(0)  # no waiting per phone: one sleep per round
                if log is not None and on_session is not None:
                    on_session(phone, log)
                if (log is not None and phone.once) or (log is None and not phone.running):
                    live.remove(phone)
            time.sleep(0.1)
    finally:
        for phone in phones:
            phone.stop()
