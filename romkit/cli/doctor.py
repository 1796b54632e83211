"""`romkit doctor [--udev-rule] [--json]`: check this machine's setup before touching the phone.

Thin shell over `romkit.doctor`: `diagnose()` gathers the facts and runs the checks; this
module only renders them and turns "any check failed" into exit code 1 (warnings do not fail,
so a machine that is merely waiting for the phone to be plugged in exits 0).
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import BaseModel

from romkit.cli.output import JsonOpt, out
from romkit.doctor import UDEV_RULE_PATH, CheckResult, DoctorReport, diagnose, udev_rule
from romkit.errors import EXIT_FAILURE

_LABEL = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


class DoctorRequest(BaseModel):
    udev_rule: bool = False


def _render_check(check: CheckResult) -> None:
    out.line(f"{_LABEL[check.status]:<5}{check.summary}")
    if check.fix:
        out.line(f"     fix: {check.fix}")


def _render_report(report: DoctorReport) -> None:
    for check in report.checks:
        _render_check(check)
    for note in report.facts.notes:
        out.line(f"note {note}")
    counts = report.counts()
    out.line("")
    out.line(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s)")


def _render_rule(text: str) -> None:
    typer.echo(text, nl=False)


def doctor(
    udev_rule_: Annotated[bool, typer.Option(
        "--udev-rule", help=f"Print a udev rule for MediaTek ports (for {UDEV_RULE_PATH}) "
                            "instead of checking.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Check Python, dependencies, serial ports, permissions, ModemManager, drivers and disk.

    Example: romkit doctor --json
    """
    request = DoctorRequest(udev_rule=udev_rule_)
    out.use_json(json_)
    if request.udev_rule:
        text = udev_rule()
        out.result({"path": UDEV_RULE_PATH, "rule": text}, lambda: _render_rule(text))
        return
    report = diagnose()
    payload = {
        "ok": not report.failed,
        "counts": report.counts(),
        "checks": [c.model_dump(mode="json") for c in report.checks],
        "facts": report.facts.model_dump(mode="json"),
    }
    out.result(payload, lambda: _render_report(report))
    if report.failed:
        raise typer.Exit(EXIT_FAILURE)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
