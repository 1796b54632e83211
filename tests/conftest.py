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
