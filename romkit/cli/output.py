"""How results, errors and progress reach the user.

One `Output` object per process holds the global `--json` / `--debug` choice. Commands render
their result through it; library progress events come in through `out.progress` (a callback)
and become tqdm bars on a terminal, or JSON lines on stderr with `--json` so that stdout
stays one valid JSON document.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any

import typer
from tqdm import tqdm

from romkit.errors import RomkitError
from romkit.progress import ProgressEvent

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


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


class Output:
    def __init__(self) -> None:
        self.json = False
        self.debug = False
        self._bars: dict[str, tqdm] = {}

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

    def note(self, text: str) -> None:
        """A side remark on stderr, shown in both modes."""
        typer.echo(text, err=True)

    def result(self, payload: Any, render: Callable[[], None]) -> None:
        """Print `payload` as JSON with --json, else call `render` for the human form."""
        if self.json:
            self.emit_json(payload)
        else:
            render()

    # -- errors ------------------------------------------------------------------------------
    def error(self, exc: RomkitError) -> None:
        self.close_bars()
        if self.json:
            sys.stdout.write(json.dumps(exc.to_dict(), indent=2, default=_default) + "\n")
        code = f" [SP Flash Tool {exc.spft_code}]" if exc.spft_code is not None else ""
        typer.echo(f"error: {exc.message}{code}", err=True)
        if exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
        if exc.spft_code is not None:
            typer.echo(f"more: romkit explain {exc.spft_code}", err=True)
        if self.debug:
            traceback.print_exception(exc, file=sys.stderr)

    # -- progress ----------------------------------------------------------------------------
    def progress(self, event: ProgressEvent) -> None:
        if self.json:
            sys.stderr.write(json.dumps(event.to_dict(), default=_default) + "\n")
            sys.stderr.flush()
            return
        if event.kind in ("info", "warning"):
            prefix = "warning: " if event.kind == "warning" else ""
            msg = f"{prefix}{event.label}"
            if self._bars:
                tqdm.write(msg, file=sys.stderr)
            else:
                typer.echo(msg, err=True)
            return
        if event.kind == "start":
            old = self._bars.pop(event.task, None)
            if old is not None:
                old.close()
            scale = event.unit == "B"
            self._bars[event.task] = tqdm(
                total=event.total, desc=event.label or event.task, unit=event.unit,
                unit_scale=scale, unit_divisor=1024 if scale else 1000,
                file=sys.stderr, leave=True, dynamic_ncols=True,
                disable=not sys.stderr.isatty() and not self.debug,
            )
            return
        bar = self._bars.get(event.task)
        if bar is None:
            return
        if event.kind == "update":
            if event.total is not None and bar.total != event.total:
                bar.total = event.total
            bar.update(max(0, event.done - bar.n))
        elif event.kind == "end":
            bar.close()
            self._bars.pop(event.task, None)
            if event.label:
                typer.echo(event.label, err=True)

    def close_bars(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


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
