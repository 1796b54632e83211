"""Which uploaded bytes the virtual phone can run as a Download Agent.

A real phone runs whatever SEND_DA put in SRAM: a real DA answers 0xC0, anything else
crashes and the phone never speaks again (issue 14 item 12). The virtual phone cannot execute
ARM code, so it recognises the DAs whose behaviour it plays, by content it can check:

- its own synthetic DA (romkit/sim/artifacts.py): stage 1 must be byte-identical to region 1
  of the MT6589 entry, compared by SHA-256;
- SP Flash Tool v5.1648's MT6589 DA stage 1 as seen in a real capture (arzam16/
  empty-sixty-five, brom-dump/README.md and images/brom-dump-001.png / -002.png: SEND_DA to
  0x12000000, length 0x226D4, sig_len 0x100; the phone answered XOR-16 checksum 0x77D9). We do
  not hold that file, so it is recognised by these three numbers plus the checksum, which a
  random or truncated upload does not match.

Everything else is junk: JUMP_DA answers status 0 (the BROM did jump) and then silence.
"""

from __future__ import annotations

import hashlib
from functools import cache

from romkit import bytesum
from romkit.device import protocol as p

SYNTHETIC_DA = "romkit synthetic DA (MT6589 stage 1)"
SPFT_5_1648_DA = "SP Flash Tool v5.1648 MT6589 DA stage 1 (capture fingerprint)"
_SPFT_FINGERPRINT = (p.MT6589_DA1_ADDR, 0x226D4, 0x100, 0x77D9)  # addr, length, sig_len, xor16


@cache
def _synthetic_stage1() -> tuple[int, str]:
    from romkit.sim.artifacts import s820_da_regions

    region = s820_da_regions()[1]
    return region.load_addr, hashlib.sha256(region.code + region.signature).hexdigest()


def recognise_da(addr: int, body: bytes, sig_len: int) -> str | None:
    """The name of the DA these uploaded bytes are, or None for bytes no DA would run."""
    load_addr, digest = _synthetic_stage1()
    if addr == load_addr and hashlib.sha256(body).hexdigest() == digest:
        return SYNTHETIC_DA
    if (addr, len(body), sig_len, bytesum.xor16_le(body)) == _SPFT_FINGERPRINT:
        return SPFT_5_1648_DA
    return None
