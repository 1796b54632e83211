"""Soak-test plumbing: how many iterations, one fixed seed per iteration.

Every soak test takes a `soak_seed` argument; it is parametrised here with 3 seeds by default
(so the normal suite stays quick) and 20 with `pytest --soak`. Each iteration is its own test
id (`[seed=24301]`), so a failure found in a long run can be replayed alone with `-k`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SHORT_ITERATIONS = 3
LONG_ITERATIONS = 20
BASE_SEED = 0x5EED

# fetch_testlib lives one level up and this folder is not a package.
_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "soak_seed" in metafunc.fixturenames:
        n = LONG_ITERATIONS if metafunc.config.getoption("--soak") else SHORT_ITERATIONS
        seeds = [BASE_SEED + i for i in range(n)]
        metafunc.parametrize("soak_seed", seeds, ids=[f"seed={s}" for s in seeds])
