"""Shared test setup: every test runs with its own ROMKIT_HOME so nothing touches real dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="run the long form of soak tests")


@pytest.fixture(autouse=True)
def romkit_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("romkit-home")
    monkeypatch.setenv("ROMKIT_HOME", str(home))
    monkeypatch.delenv("ROMKIT_CATALOG_URL", raising=False)
    return home


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


def _default_link() -> str:
    from romkit.sim.link import DEFAULT_LINK

    return DEFAULT_LINK


# Tests that check something only a pty has (a device path, flock exclusivity, the width of
# /dev/pts names in a table); skipped when ROMKIT_SIM_LINK=tcp runs the suite over TCP.
pty_only = pytest.mark.skipif(_default_link() != "pty",
                              reason="checks pty-specific behaviour (ROMKIT_SIM_LINK=tcp)")
