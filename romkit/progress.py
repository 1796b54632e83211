"""Progress reporting from library code without printing.

Library functions accept `on_progress: ProgressCallback | None` and report through a
`Reporter`; the CLI turns the events into progress bars on a terminal or JSON lines with `--json`.
Keeping this a plain callback means tests can record events and the library never decides
how (or whether) anything is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["start", "update", "end", "info", "warning"]


@dataclass(frozen=True)
class ProgressEvent:
    """One thing that happened: a task started/advanced/ended, or a message worth showing."""

    kind: EventKind
    task: str = ""
    label: str = ""
    done: int = 0
    total: int | None = None
    unit: str = "B"
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "task": self.task,
            "label": self.label,
            "done": self.done,
            "total": self.total,
            "unit": self.unit,
            **({"data": dict(self.data)} if self.data else {}),
        }


ProgressCallback = Callable[[ProgressEvent], None]


def _ignore(_event: ProgressEvent) -> None:
    return None


class Reporter:
    """Small convenience wrapper so library code reads `rep.update("write:BOOT", n)`."""

    def __init__(self, callback: ProgressCallback | None = None) -> None:
        self._cb: ProgressCallback = callback or _ignore

    @property
    def callback(self) -> ProgressCallback:
        return self._cb

    def emit(self, event: ProgressEvent) -> None:
        self._cb(event)

    def start(self, task: str, label: str, total: int | None = None, unit: str = "B",
              **data: Any) -> None:
        self._cb(ProgressEvent("start", task, label, 0, total, unit, data))

    def update(self, task: str, done: int, total: int | None = None, unit: str = "B",
               **data: Any) -> None:
        self._cb(ProgressEvent("update", task, "", done, total, unit, data))

    def end(self, task: str, label: str = "", **data: Any) -> None:
        self._cb(ProgressEvent("end", task, label, data=data))

    def info(self, message: str, **data: Any) -> None:
        self._cb(ProgressEvent("info", label=message, data=data))

    def warning(self, message: str, **data: Any) -> None:
        self._cb(ProgressEvent("warning", label=message, data=data))
