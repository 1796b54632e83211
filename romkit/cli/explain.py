"""`romkit explain CODE` and `romkit explain --search TEXT`: SP Flash Tool error codes.

The command accepts the code exactly as SP Flash Tool printed it, including the negative
decimal form of STATUS codes (``romkit explain -1073545215``): the command ignores unknown
options so that a leading ``-`` followed by digits reaches the CODE argument instead of being
rejected as an option.
"""

from __future__ import annotations

import re
import textwrap
from typing import Annotated

import typer
from pydantic import BaseModel

from romkit.cli.output import JsonOpt, out, table
from romkit.errors import UsageError
from romkit.knowledge import TABLE_DIR, Explanation, SearchHit, lookup, search

_WIDTH = 100
_SIGNED_RE = re.compile(r"^-[0-9]+$", re.ASCII)


class ExplainRequest(BaseModel):
    """What the user asked: one code, or a word search (exactly one of the two)."""

    code: str | None = None
    search: str | None = None
    tool_version: str | None = None

    def check(self) -> None:
        if (self.code is None) == (self.search is None):
            raise UsageError("give either a CODE or --search TEXT",
                             hint="e.g. `romkit explain 4032` or `romkit explain --search DRAM`")
        if self.code is not None and self.code.startswith("-") and not _SIGNED_RE.match(
                self.code.strip()):
            raise UsageError(f"no such option: {self.code[:40]}",
                             hint="see `romkit explain --help`")


def _wrap(label: str, text: str, indent: int = 2) -> str:
    lead = " " * indent + f"{label:<8}"
    return textwrap.fill(text, width=_WIDTH, initial_indent=lead,
                         subsequent_indent=" " * len(lead), break_on_hyphens=False)


def _render_explanation(exp: Explanation) -> None:
    signed = f"; shown as {exp.signed} by the tool" if exp.signed is not None else ""
    scope = f" — SP Flash Tool {exp.tool_version}" if exp.tool_version else ""
    out.line(f"Code {exp.code} ({exp.hex}{signed}){scope}")
    kind = " (application code, not in the library tables)" if exp.kind == "application" else ""
    out.line(f"Name{'s' if len(exp.names) > 1 else ''}{kind}:")
    width = max(len(u.name) for u in exp.names)
    for use in exp.names:
        extra = "  (range marker)" if use.marker else ""
        moved = "; ".join(f"{r.code} ({r.hex}) in {', '.join(r.versions)}" for r in use.elsewhere)
        if moved:
            extra += f"  — same name is {moved}"
        out.line(f"  {use.name:<{width}}  {use.versions_label}{extra}")
    if exp.not_in:
        out.line(f"  not defined in: {', '.join(exp.not_in)}")
    if exp.version_note:
        out.line(_wrap("Note:", exp.version_note, indent=0))
    for adv in exp.advice:
        about = [adv.name] if adv.name and len(exp.names) > 1 else []
        about += [", ".join(adv.versions)] if adv.versions and len(exp.advice) > 1 else []
        out.line("")
        out.line(f"{adv.title}" + (f"  [{' · '.join(about)}]" if about else ""))
        out.line(_wrap("Cause:", adv.cause + (" (inferred)" if adv.inferred else "")))
        out.line(_wrap("Fix:", adv.fix))
        if adv.romkit_command:
            out.line(_wrap("romkit:", adv.romkit_command))
    if not exp.advice:
        out.line("")
        out.line("No curated cause / fix for this code: the tables give only its name.")
    out.line("")
    prefix = f"{TABLE_DIR}: SP Flash Tool "
    tables = [s.removeprefix(prefix).split()[0] for s in exp.sources if s.startswith(prefix)]
    lines = [f"SP Flash Tool status-code tables of {', '.join(tables)} ({TABLE_DIR})"
             ] if tables else []
    lines += [s for s in exp.sources if not s.startswith(prefix)]
    out.line(f"Source{'s' if len(lines) > 1 else ''}:")
    for line in lines:
        out.line(textwrap.fill(line, width=_WIDTH, initial_indent="  ", subsequent_indent="    "))


def _hit_names(hit: SearchHit) -> str:
    real = [u for u in hit.names if not u.marker] or hit.names
    if len(real) == 1:
        return real[0].name
    return " / ".join(f"{u.name} ({u.versions_label})" for u in real)


def _render_hits(query: str, hits: list[SearchHit]) -> None:
    if not hits:
        out.line(f"no code matches {query!r}; try fewer or shorter words")
        return
    rows = [[str(h.code), h.hex, _hit_names(h), h.title or ""] for h in hits]
    out.line(table(rows, ["code", "hex", "name", "curated title"]))
    out.line("")
    curated = sum(h.curated for h in hits)
    out.line(f"{len(hits)} codes ({curated} with curated advice); "
             "`romkit explain CODE` for details")


def run(request: ExplainRequest) -> None:
    """Validate, call the library, render (text or JSON)."""
    request.check()
    if request.search is not None:
        hits = search(request.search, request.tool_version)
        payload = {"query": request.search, "tool_version": request.tool_version,
                   "hits": [h.model_dump(mode="json") for h in hits]}
        out.result(payload, lambda: _render_hits(request.search or "", hits))
        return
    exp = lookup(request.code or "", request.tool_version)
    out.result(exp, lambda: _render_explanation(exp))


def register(app: typer.Typer) -> None:
    @app.command("explain", context_settings={"ignore_unknown_options": True})
    def explain(
        code: Annotated[str | None, typer.Argument(
            help="Code as SP Flash Tool showed it: 4032, 0xFC0 or -1073545215.",
            show_default=False)] = None,
        tool_version: Annotated[str | None, typer.Option(
            "--tool-version", "-t", help="Narrow to one tool version: v3, v5 or e.g. v5.1648.",
            show_default=False)] = None,
        search_text: Annotated[str | None, typer.Option(
            "--search", "-s", help="Find codes by words in names and curated text.",
            show_default=False)] = None,
        json_: JsonOpt = False,
    ) -> None:
        """Explain an SP Flash Tool / BROM / DA error code: names per version, cause, fix.

        Example: romkit explain 4032   (or: romkit explain --search DRAM)
        """
        out.use_json(json_)
        run(ExplainRequest(code=code, search=search_text, tool_version=tool_version))
