"""`romkit fetch NAME`: download (resumable, verified), unpack safely, record the folder.

Thin shell over `romkit.fetch.service.fetch`: options become a `FetchRequest`, one call does the
work, the `FetchResult` is rendered as text or `--json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from romkit.cli.output import JsonOpt, human_size, out, table
from romkit.fetch.service import FetchRequest, FetchResult, fetch


def _render(res: FetchResult) -> None:
    if res.dry_run:
        out.line(f"dry run: would fetch {res.build_id} ({res.entry_type}); nothing changed")
        if res.candidates:
            out.line(table([[str(i + 1), c.source, c.url] for i, c in enumerate(res.candidates)],
                           ["#", "source", "url"]))
        else:
            out.line("no download URL known (pass --url URL or --from FILE)")
        out.line(f"archive:     {res.archive_path}")
        if res.cached:
            out.line("             already in the cache (it will be verified, not downloaded)")
        elif res.partial_bytes:
            out.line(f"             {human_size(res.partial_bytes)} already downloaded "
                     "(will resume)")
        if not res.cached:
            out.line(f"to download: {human_size(res.would_download)}")
        if res.dest is not None:
            out.line(f"destination: {res.dest}")
        return
    for attempt in res.mirrors:
        mark = "ok" if attempt.outcome == "ok" else f"failed: {attempt.detail}"
        out.line(f"mirror {attempt.url}: {mark}")
    if res.archive_path is not None:
        how = "cached" if res.cached else f"{human_size(res.bytes_downloaded)} downloaded"
        out.line(f"archive:     {res.archive_path} ({human_size(res.size)}, {how})")
        out.line(f"sha256:      {res.sha256}")
    if res.firmware_folder is not None:
        if res.flash_tool_folder is not None:
            out.line(f"flash tool:  {res.flash_tool_folder}")
        out.line(f"firmware:    {res.firmware_folder}")
        out.line("recorded as the current firmware; next: romkit prepare")


def register(app: typer.Typer) -> None:
    @app.command("fetch")
    def fetch_cmd(
        name: Annotated[str, typer.Argument(help="Build or resource id/alias from the catalog "
                                                 "(e.g. S820_ROW_S124).")],
        url: Annotated[list[str] | None, typer.Option(
            "--url", metavar="URL", help="Download from URL first (repeatable).")] = None,
        connections: Annotated[int, typer.Option(
            "--connections", "-c", min=1, max=32,
            help="Parallel connections per mirror.")] = 4,
        dest: Annotated[Path | None, typer.Option(
            "--dest", metavar="DIR", help="Unpack here (default ./<BUILD_ID>/).")] = None,
        from_path: Annotated[Path | None, typer.Option(
            "--from", metavar="FILE_OR_DIR",
            help="Use an archive or unpacked folder you already have.")] = None,
        force: Annotated[bool, typer.Option(
            "--force", help="Download and unpack again even if done before.")] = False,
        keep_bad: Annotated[bool, typer.Option(
            "--keep-bad", help="Quarantine a file that fails verification instead of "
                               "deleting it.")] = False,
        dry_run: Annotated[bool, typer.Option(
            "--dry-run", help="Show candidates, destination and size; change nothing.")] = False,
        catalog_url: Annotated[str | None, typer.Option(
            "--catalog", metavar="URL",
            help="Remote catalog index; default $ROMKIT_CATALOG_URL.")] = None,
        json_: JsonOpt = False,
    ) -> None:
        """Download, verify and unpack a firmware build; record it as the current firmware.

        Example: romkit fetch S820_ROW_S124 --dry-run
        """
        out.use_json(json_)
        request = FetchRequest(name=name, urls=url or [], connections=connections, dest=dest,
                               from_path=from_path, force=force, keep_bad=keep_bad,
                               dry_run=dry_run, catalog_url=catalog_url, debug=out.debug)
        result = fetch(request, on_progress=out.progress)
        out.result(result.model_dump(mode="json"), lambda: _render(result))
