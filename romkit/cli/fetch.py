"""`romkit fetch NAME`: download (resumable, verified), unpack safely, record the folder.

Thin shell over `romkit.fetch.service.fetch`: options become a `FetchRequest`, one call does the
work, the `FetchResult` is rendered as text or `--json`.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated

import typer

from romkit.cli.output import JsonOpt, human_size, out, table
from romkit.errors import Interrupted, UsageError
from romkit.fetch.download import (
    DEFAULT_LOW_SPEED_LIMIT,
    DEFAULT_LOW_SPEED_TIME,
    DEFAULT_MAX_SIZE,
)
from romkit.fetch.service import FetchInterrupted, FetchRequest, FetchResult, fetch

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """"4G", "512M", "1500000" → bytes (binary units: 1K = 1024)."""
    m = _SIZE.match(text)
    if m is None or int(m.group(1)) <= 0:
        raise UsageError(f"not a size: {text!r}", hint="give bytes, or a number with K, M, G "
                                                       "or T (e.g. --max-size 4G)")
    return int(m.group(1)) * 1024 ** " KMGT".index((m.group(2) or " ").upper())


def _resume_command(req: FetchRequest) -> str:
    """The command that continues where an interrupted `romkit fetch` stopped: the same
    request, spelled out (paths absolute, defaults left out)."""
    args = ["romkit", "fetch", req.name]
    for url in req.urls:
        args += ["--url", url]
    if req.connections != 4:
        args += ["--connections", str(req.connections)]
    if req.dest is not None:
        args += ["--dest", str(req.dest.absolute())]
    if req.from_path is not None:
        args += ["--from", str(req.from_path.absolute())]
    if req.catalog_url:
        args += ["--catalog", req.catalog_url]
    if req.max_size != DEFAULT_MAX_SIZE:
        args += ["--max-size", str(req.max_size)]
    if req.low_speed_limit != DEFAULT_LOW_SPEED_LIMIT:
        args += ["--low-speed-limit", str(req.low_speed_limit)]
    if req.low_speed_time != DEFAULT_LOW_SPEED_TIME:
        args += ["--low-speed-time", f"{req.low_speed_time:g}"]
    for flag, on in (("--force", req.force), ("--keep-bad", req.keep_bad),
                     ("--accept-new-hash", req.accept_new_hash)):
        if on:
            args.append(flag)
    return shlex.join(args)


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
            if res.would_download is not None:
                said = " (size from the server)" if res.size_source == "server" else ""
                out.line(f"to download: {human_size(res.would_download)}{said}")
            else:
                why = ("no URL to ask" if not res.candidates else "no server answered"
                       if res.size_source == "no answer" else "the server does not say")
                out.line(f"to download: unknown ({why})")
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
        max_size: Annotated[str, typer.Option(
            "--max-size", metavar="SIZE",
            help="Largest download accepted when the catalog gives no size (bytes, or "
                 "with K/M/G/T), for every mirror including file:// ones.")] = "8G",
        low_speed_limit: Annotated[int, typer.Option(
            "--low-speed-limit", metavar="BYTES_PER_S", min=0,
            help="A mirror slower than this for --low-speed-time seconds is given up for "
                 "the next one (0: never).")] = DEFAULT_LOW_SPEED_LIMIT,
        low_speed_time: Annotated[float, typer.Option(
            "--low-speed-time", metavar="SECONDS", min=0.1,
            help="How long a mirror may stay below --low-speed-limit.")
        ] = DEFAULT_LOW_SPEED_TIME,
        accept_new_hash: Annotated[bool, typer.Option(
            "--accept-new-hash",
            help="Accept (and record) a sha256 that differs from the one recorded at the "
                 "first download of a build the catalog publishes no hash for.")] = False,
        json_: JsonOpt = False,
    ) -> None:
        """Download, verify and unpack a firmware build; record it as the current firmware.

        Example: romkit fetch S820_ROW_S124 --dry-run
        """
        out.use_json(json_)
        request = FetchRequest(name=name, urls=url or [], connections=connections, dest=dest,
                               from_path=from_path, force=force, keep_bad=keep_bad,
                               dry_run=dry_run, catalog_url=catalog_url,
                               max_size=parse_size(max_size), low_speed_limit=low_speed_limit,
                               low_speed_time=low_speed_time, accept_new_hash=accept_new_hash,
                               debug=out.debug)
        try:
            result = fetch(request, on_progress=out.progress)
        except FetchInterrupted as exc:
            raise Interrupted("download stopped", left=exc.left,
                              resume=_resume_command(request)) from None
        out.result(result.model_dump(mode="json"), lambda: _render(result))
