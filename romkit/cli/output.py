"""How results, errors and progress reach the user.

One `Output` object per process (`out`) holds the global `--json` / `--debug` choice. Command
modules use this API and nothing else to print:

- `out.result(payload, render)`: the JSON document with `--json`, else `render()` (which calls
  `out.line` / `out.table`).
- `out.line(text)`: a line of the human result on stdout (nothing with `--json`).
- `out.table(rows, headers)`: a final summary table (plain text, copy-paste friendly).
- `out.note(text)` / `out.warn(text)`: side remarks on stderr, in both modes.
- `out.progress`: the `ProgressCallback` to hand to library code. On a terminal each task is a
  live bar (rich) that disappears when the task ends and is replaced by the task's end label:
  one line per finished item, no bar fragments left on screen. Without a terminal there are no
  bars, only the end labels; with `--json` each event is a JSON line on stderr, so stdout stays
  one valid JSON document.
- `out.error(exc)` / `out.interrupted(exc)` / `out.internal_error(exc)`: the `error:` + `hint:`
  lines on stderr (and with `--json` the error document on stdout); app.main() calls them.

Colour comes from rich, only on a terminal and never when NO_COLOR is set (https://no-color.org)
or TERM=dumb. rich is imported only when something is actually drawn on a terminal, so
`romkit --version` and piped runs do not pay for it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from romkit.errors import Interrupted, RomkitError
from romkit.progress import ProgressEvent

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

_GOOD = ("verified", "ok", "done", "written", "resumed", "saved", "restored")
_BAD = ("FAILED", "failed", "MISMATCH", "refused")


def _default(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    return str(obj)


def use_colour(stream: IO[str]) -> bool:
    """Colour only for a person: a terminal, NO_COLOR unset (or empty), TERM not dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Output:
    """The process-wide printer (see the module docstring for the API)."""

    def __init__(self) -> None:
        self.json = False
        self.debug = False
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._plain_tasks: set[str] = set()
        self._consoles: dict[int, Console] = {}
        self._warned: set[str] = set()

    def reset(self, *, json: bool = False, debug: bool = False) -> None:
        """A fresh start for one command line (main() may run several times in one process)."""
        self.close_bars()
        self.json = json
        self.debug = debug
        self._warned.clear()

    def use_json(self, flag: bool) -> bool:
        """Per-command `--json` adds to the global one."""
        self.json = self.json or flag
        return self.json

    # -- results -----------------------------------------------------------------------------
    def emit_json(self, payload: Any) -> None:
        sys.stdout.write(json.dumps(payload, indent=2, default=_default) + "\n")
        sys.stdout.flush()

    def line(self, text: str = "") -> None:
        """A line of human output (suppressed with --json, where only the document is printed)."""
        if not self.json:
            typer.echo(text)

    def table(self, rows: list[list[str]], headers: list[str]) -> None:
        """A summary table on stdout (human mode only); see `table()`."""
        self.line(table(rows, headers))

    def note(self, text: str) -> None:
        """A side remark on stderr, shown in both modes."""
        self._err(text)

    def warn(self, text: str) -> None:
        """`warning: text` on stderr, in colour on a terminal."""
        self._warned.add(text)
        self._err(f"warning: {text}", prefix_style="yellow")

    def warned(self, text: str) -> bool:
        """Whether `text` was already shown as a warning (results then need not repeat it)."""
        return text in self._warned

    def result(self, payload: Any, render: Callable[[], None]) -> None:
        """Print `payload` as JSON with --json, else call `render` for the human form."""
        if self.json:
            self.emit_json(payload)
        else:
            render()

    # -- errors ------------------------------------------------------------------------------
    def error(self, exc: RomkitError) -> None:
        """`error: …` + `hint: …` (+ `more: romkit explain N`), and the JSON document."""
        self.close_bars()
        if self.json:
            self.emit_json(exc.to_dict())
        code = f" [SP Flash Tool {exc.spft_code}]" if exc.spft_code is not None else ""
        self._err(f"error: {exc.message}{code}", prefix_style="bold red")
        if exc.hint:
            self._err(f"hint: {exc.hint}", prefix_style="yellow")
        if exc.spft_code is not None:
            self._err(f"more: romkit explain {exc.spft_code}", prefix_style="dim")
        if self.debug:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)

    def interrupted(self, exc: Interrupted) -> None:
        """One `interrupted:` line (what was left, if known) and the resume command as hint."""
        self.close_bars()
        if self.json:
            self.emit_json(exc.to_dict())
        left = f"; left: {exc.left}" if exc.left else ""
        self._err(f"interrupted: {exc.message}{left}", prefix_style="bold yellow")
        if exc.resume:
            self._err(f"hint: resume with: {exc.resume}", prefix_style="yellow")

    def internal_error(self, exc: BaseException) -> None:
        """A bug: one line, and with --json a document like every other error."""
        self.close_bars()
        message = f"internal error: {type(exc).__name__}: {exc}".splitlines()[0]
        hint = "run again with --debug and report the traceback"
        if self.json:
            self.emit_json({"error": "InternalError", "message": message, "hint": hint,
                            "spft_code": None, "exit_code": 1, "details": None})
        self._err(f"error: {message}", prefix_style="bold red")
        if not self.debug:
            self._err(f"hint: {hint}", prefix_style="yellow")

    # -- progress ----------------------------------------------------------------------------
    def progress(self, event: ProgressEvent) -> None:
        """The `ProgressCallback` for library code (bars on a terminal, JSON lines with --json)."""
        if self.json:
            sys.stderr.write(json.dumps(event.to_dict(), default=_default) + "\n")
            sys.stderr.flush()
            return
        if event.kind in ("info", "warning"):
            if event.label:
                if event.kind == "warning":
                    self.warn(event.label)
                else:
                    self._err(event.label)
            return
        if event.kind == "start":
            self._start(event)
        elif event.kind == "update":
            self._update(event)
        elif event.kind == "end":
            self._end(event)

    def indented(self, prefix: str) -> Callable[[ProgressEvent], None]:
        """A progress callback whose lines (messages, end labels) start with `prefix`.

        For commands that drive other commands' libraries (the demo): what the driven step says
        sits indented under the step, and its bars still vanish into one line per item.
        """

        def callback(event: ProgressEvent) -> None:
            if self.json or event.kind in ("start", "update") or not event.label:
                self.progress(event)
                return
            head = "warning: " if event.kind == "warning" else ""
            self.progress(replace(event, kind="info" if event.kind == "warning" else event.kind,
                                  label=f"{prefix}{head}{event.label}"))

        return callback

    def _bars_wanted(self) -> bool:
        """Live bars need a terminal (NO_COLOR turns off colour, not the bars)."""
        return _isatty(sys.stderr) and os.environ.get("TERM") != "dumb"

    def _start(self, event: ProgressEvent) -> None:
        self._finish_task(event.task)
        if not self._bars_wanted():
            self._plain_tasks.add(event.task)
            return
        progress = self._live()
        total = event.total if event.total else None
        self._tasks[event.task] = progress.add_task(
            event.label or event.task, total=total, unit=event.unit)

    def _update(self, event: ProgressEvent) -> None:
        task = self._tasks.get(event.task)
        if task is None or self._progress is None:
            return
        if event.label:  # a live line that says more than a count (waiting for the phone)
            self._progress.update(task, description=event.label)
        if event.total:
            self._progress.update(task, total=event.total, completed=event.done)
        else:
            self._progress.update(task, completed=event.done)

    def _end(self, event: ProgressEvent) -> None:
        known = event.task in self._tasks or event.task in self._plain_tasks
        self._finish_task(event.task)
        if known and event.label:
            self._err(event.label, word_styles=True)

    def _finish_task(self, name: str) -> None:
        self._plain_tasks.discard(name)
        task = self._tasks.pop(name, None)
        if task is not None and self._progress is not None:
            self._progress.remove_task(task)
            if not self._tasks:
                self._stop_live()

    def _live(self) -> Progress:
        if self._progress is None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                _size_column(DownloadColumn()), TimeRemainingColumn(),
                console=self._console(sys.stderr), transient=True,
                # results printed meanwhile go above the bars on the same terminal, but a
                # redirected stdout (`romkit flash > plan.txt`) must keep receiving them
                redirect_stdout=_isatty(sys.stdout), redirect_stderr=True)
            self._progress.start()
        return self._progress

    def _stop_live(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def close_bars(self) -> None:
        """Remove every live bar (on errors, Ctrl-C and at exit) so none is left half-drawn."""
        self._tasks.clear()
        self._plain_tasks.clear()
        self._stop_live()

    # -- writing -----------------------------------------------------------------------------
    def _console(self, stream: IO[str]) -> Console:
        key = id(stream)
        if key not in self._consoles:
            from rich.console import Console

            self._consoles[key] = Console(file=stream, highlight=False, soft_wrap=True,
                                          no_color=not use_colour(stream))
        return self._consoles[key]

    def _err(self, text: str, *, prefix_style: str | None = None,
             word_styles: bool = False) -> None:
        """A line on stderr; above the live bars if any; first word coloured on a terminal."""
        style = prefix_style
        if word_styles:
            first = text.split(" ", 1)[0].rstrip(":")
            style = "green" if first in _GOOD else ("bold red" if first in _BAD else None)
        if self._progress is None and (style is None or not use_colour(sys.stderr)):
            typer.echo(text, err=True)
            return
        from rich.text import Text

        line = Text(text)
        if style:
            head = text.split(" ", 1)[0]
            line.stylize(style, 0, len(head))
        console = self._progress.console if self._progress is not None else self._console(
            sys.stderr)
        console.print(line)


def _size_column(bytes_column: Any) -> Any:
    """Byte counts for byte tasks; `3/12 files` for tasks counted in other units."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class SizeColumn(ProgressColumn):
        def render(self, task: Any) -> Any:
            unit = task.fields.get("unit", "B")
            if unit == "B":
                return bytes_column.render(task)
            total = f"/{int(task.total)}" if task.total else ""
            return Text(f"{int(task.completed)}{total} {unit}")

    return SizeColumn()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


out = Output()


def human_size(n: int | None) -> str:
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain left-aligned text table (no dependency, copy-paste friendly)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
