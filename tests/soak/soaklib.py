"""Helpers shared by the soak tests (not a test module)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def seeded(seed: int, what: str) -> Iterator[None]:
    """Re-raise any failure with the seed in front and print how to replay it."""
    try:
        yield
    except BaseException as exc:
        print(f"\nSOAK FAILURE in {what}: seed={seed} "
              f"(replay: pytest tests/soak -k 'seed={seed}')", file=sys.stderr)
        if isinstance(exc, AssertionError):
            raise AssertionError(f"[{what} seed={seed}] {exc}") from exc
        raise


def overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    """Bytes two half-open ranges share."""
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def covered(ranges: list[tuple[int, int]]) -> int:
    """Bytes covered by a list of (possibly overlapping) half-open ranges."""
    total = 0
    end = -1
    for s, e in sorted(ranges):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total
