"""Running the real `romkit` CLI from tests: as a subprocess, or in-process through main()."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from romkit.cli.app import main
from romkit.cli.output import out


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m romkit ARGS` in a child process (ROMKIT_HOME etc. inherited)."""
    return subprocess.run([sys.executable, "-m", "romkit", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


def pasted(command: str) -> list[str]:
    """A `romkit …` line as romkit prints it for users to paste, as the argv that runs it here
    (POSIX shell splitting, `romkit` → this interpreter's `python -m romkit`)."""
    words = shlex.split(command)
    assert words[0] == "romkit", command
    return [sys.executable, "-m", "romkit", *words[1:]]


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """romkit's main() in this process: (exit code, stdout, stderr)."""
    out.json = False
    out.debug = False
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err
