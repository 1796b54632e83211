"""Ctrl-C that says what it left behind.

A technician who presses Ctrl-C in the middle of a flash needs two facts before unplugging:
what state the phone and the files are in, and what to run to finish. The engine and the
phone tools catch KeyboardInterrupt at the point where they know those facts and re-raise it
as `Interrupted`, still a KeyboardInterrupt (so nothing treats it as an ordinary error and
every `finally` still runs); the CLI prints `state` on one `interrupted:` line together with
the command that resumes, and exits with 130 (128 + SIGINT, the shell convention).
"""

from __future__ import annotations

from romkit import errors


class Interrupted(errors.Interrupted):
    """A Ctrl-C with a one-line account of what was left (partition, journal, backup set);
    the CLI adds the resume command, which only it can rebuild from the parsed options."""

    def __init__(self, state: str, *, set_name: str | None = None) -> None:
        super().__init__(state)
        self.state = state
        self.set_name = set_name  # a backup set the resuming command should name explicitly
