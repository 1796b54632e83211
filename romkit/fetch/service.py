"""`romkit fetch`: catalog name → verified archive in the cache → unpacked firmware folder.

This is the only fetch module that knows the catalog: it turns a build into download
candidates (command-line URLs first, then the catalog's mirrors, which the catalog already
orders user → remote → built-in), hands them to `download`, unpacks with `archive`, and
records the firmware folder as the current one so `prepare` / `flash` find it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from romkit.catalog import Build, Catalog, Resource
from romkit.errors import CatalogError, DownloadError, UsageError
from romkit.fetch import archive, download
from romkit.fetch.download import (
    DEFAULT_LOW_SPEED_LIMIT,
    DEFAULT_LOW_SPEED_TIME,
    DEFAULT_MAX_SIZE,
    Candidate,
    DownloadInterrupted,
    DownloadOptions,
    DownloadTarget,
    MirrorAttempt,
)
from romkit.fsutil import atomic_copy
from romkit.progress import ProgressCallback, Reporter
from romkit.workspace import record_current_firmware


class FetchRequest(BaseModel):
    """Everything `romkit fetch` was asked to do."""

    name: str = Field(min_length=1)
    urls: list[str] = Field(default_factory=list)
    connections: int = Field(default=4, ge=1, le=32)
    dest: Path | None = None
    from_path: Path | None = None
    force: bool = False
    keep_bad: bool = False
    dry_run: bool = False
    catalog_url: str | None = None
    max_size: int = Field(default=DEFAULT_MAX_SIZE, ge=1)
    low_speed_limit: int = Field(default=DEFAULT_LOW_SPEED_LIMIT, ge=0)
    low_speed_time: float = Field(default=DEFAULT_LOW_SPEED_TIME, gt=0)
    accept_new_hash: bool = False
    debug: bool = False


class FetchInterrupted(KeyboardInterrupt):
    """Ctrl-C during `fetch`, with one sentence on what is left on disk (the CLI adds the
    command that resumes). A KeyboardInterrupt still, for callers that do not care."""

    def __init__(self, left: str) -> None:
        super().__init__(left)
        self.left = left


class FetchResult(BaseModel):
    build_id: str
    entry_type: Literal["build", "resource", "adhoc"]
    archive_path: Path | None = None
    sha256: str | None = None
    size: int | None = None
    bytes_downloaded: int = 0
    cached: bool = False
    dest: Path | None = None
    firmware_folder: Path | None = None
    flash_tool_folder: Path | None = None
    unpacked: bool = False
    mirrors: list[MirrorAttempt] = Field(default_factory=list)
    hash_note: str | None = None
    dry_run: bool = False
    candidates: list[Candidate] = Field(default_factory=list)
    would_download: int | None = None
    # where would_download comes from: "catalog", "server" (HEAD / a 0-0 Range GET), "cache";
    # None = nobody says (no URL, or the server states no size)
    size_source: str | None = None
    partial_bytes: int = 0


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file"
                                                          and not parts.hostname):
        raise UsageError(f"not a usable download URL: {url!r}",
                         hint="give a full http://, https:// or file:// URL")
    return url


def _candidates(urls: list[str], entry: Build | Resource | None) -> list[Candidate]:
    found: list[Candidate] = [Candidate(url=_check_url(u), source="cli") for u in urls]
    if entry is not None:
        found += [Candidate(url=m.url, source=m.source) for m in entry.mirrors]
    seen: set[str] = set()
    unique = []
    for c in found:
        if c.url not in seen:
            seen.add(c.url)
            unique.append(c)
    return unique


def _cache_name(entry_id: str, file_name: str | None, candidates: list[Candidate]) -> str:
    """The catalog's file name, else `<id><extension of the first URL>`: the same on every
    mirror, so a download interrupted on one resumes from another."""
    if file_name:
        return download.check_file_name(file_name)
    suffix = ""
    if candidates:
        tail = download.file_name_from_url(candidates[0].url)
        suffix = Path(tail).suffix if len(Path(tail).suffix) <= 8 else ""
    return download.check_file_name(f"{entry_id}{suffix}")


def _target(entry: Build | Resource, candidates: list[Candidate]) -> DownloadTarget:
    return DownloadTarget(file_name=_cache_name(entry.id, entry.file_name, candidates),
                          size=entry.size, sha256=entry.hashes.sha256, md5=entry.hashes.md5,
                          key=entry.id)


def _resolve(request: FetchRequest, rep: Reporter) -> Build | Resource | None:
    """The catalog entry, or None for an unknown name given with --url/--from (ad hoc)."""
    catalog = Catalog.load(request.catalog_url, rep.callback)
    try:
        return catalog.resolve(request.name)
    except CatalogError:
        if not (request.urls or request.from_path):
            raise
        rep.warning(f"{request.name} is not in the catalog: fetching it as given, with no "
                    "known size or hash")
        return None


def fetch(request: FetchRequest, on_progress: ProgressCallback | None = None) -> FetchResult:
    """Resolve, download (or import), verify, unpack and record one build.

    Ctrl-C becomes FetchInterrupted saying what was left: the .part file and how much of it
    is done, or that unpacking stopped with the verified archive in the cache and DEST
    untouched.
    """
    stage = {"now": "starting"}
    try:
        return _fetch(request, on_progress, stage)
    except DownloadInterrupted as exc:
        total = f" of {exc.total}" if exc.total is not None else ""
        how = ("the next run resumes from there" if exc.resumable else
               "this mirror cannot resume, the next run starts again from byte 0")
        raise FetchInterrupted(
            f"download of {exc.file_name} stopped with {exc.done}{total} bytes on disk, kept "
            f"in {exc.part} ({how})") from exc
    except KeyboardInterrupt as exc:
        if stage["now"] == "unpacking":
            raise FetchInterrupted(
                f"unpacking stopped; the verified archive stays in the cache "
                f"({stage.get('archive')}) and {stage.get('dest')} was not changed") from exc
        raise FetchInterrupted(f"stopped while {stage['now']}; nothing was half-written"
                               ) from exc


def _fetch(request: FetchRequest, on_progress: ProgressCallback | None,
           stage: dict[str, str]) -> FetchResult:
    rep = Reporter(on_progress)
    stage["now"] = "loading the catalog"
    entry = _resolve(request, rep)
    entry_id = entry.id if entry is not None else download.check_file_name(request.name)
    kind: Literal["build", "resource", "adhoc"] = (
        "adhoc" if entry is None else "build" if isinstance(entry, Build) else "resource")
    candidates = _candidates(request.urls, entry)
    if entry is not None:
        target = _target(entry, candidates)
    else:
        target = DownloadTarget(file_name=_cache_name(entry_id, None, candidates), key=entry_id)
    dest = (request.dest or Path.cwd() / entry_id).absolute()
    unpack = kind != "resource"
    base = FetchResult(build_id=entry_id, entry_type=kind, candidates=candidates,
                       dest=dest if unpack else None, dry_run=request.dry_run)

    if request.dry_run:
        return _dry_run(request, target, candidates, base)
    if request.from_path is not None and request.from_path.is_dir():
        firmware, tool = archive.find_firmware(request.from_path)
        record_current_firmware(firmware, entry_id)
        rep.info(f"using the unpacked folder {request.from_path} as it is (nothing to verify "
                 "without the archive)")
        return base.model_copy(update={"dest": request.from_path.absolute(),
                                       "firmware_folder": firmware, "flash_tool_folder": tool})
    if request.from_path is not None:
        if unpack:
            archive.detect_format(request.from_path)  # refuse a RAR before recording its hash
        stage["now"] = f"verifying {request.from_path}"
        got = download.import_file(request.from_path, target,
                                   accept_new_hash=request.accept_new_hash,
                                   on_progress=on_progress)
    else:
        opts = DownloadOptions(connections=request.connections, force=request.force,
                               keep_bad=request.keep_bad, debug=request.debug,
                               max_size=request.max_size,
                               low_speed_limit=request.low_speed_limit,
                               low_speed_time=request.low_speed_time,
                               accept_new_hash=request.accept_new_hash)
        stage["now"] = "downloading"
        got = download.download(target, candidates, options=opts, on_progress=on_progress)
    result = base.model_copy(update={
        "archive_path": got.path, "sha256": got.sha256, "size": got.size,
        "bytes_downloaded": got.bytes_downloaded, "cached": got.cached,
        "mirrors": got.attempts, "hash_note": got.hash_note})
    if not unpack:
        return result
    stage.update(now="unpacking", archive=str(got.path), dest=str(dest))
    unpacked = archive.extract(got.path, dest, force=request.force, on_progress=on_progress)
    record_current_firmware(unpacked.firmware_folder, entry_id)
    return result.model_copy(update={
        "dest": unpacked.dest, "firmware_folder": unpacked.firmware_folder,
        "flash_tool_folder": unpacked.flash_tool_folder, "unpacked": not unpacked.reused})


def _dry_run(request: FetchRequest, target: DownloadTarget, candidates: list[Candidate],
             base: FetchResult) -> FetchResult:
    if request.from_path is not None:
        if not request.from_path.exists():
            raise UsageError(f"not found: {request.from_path}",
                             hint="pass the archive or unpacked folder you have")
        return base.model_copy(update={"archive_path": request.from_path.absolute(),
                                       "would_download": 0})
    plan = download.plan(target, candidates, force=request.force)
    to_download, source = plan.to_download, "catalog" if plan.to_download is not None else None
    if to_download is None and not plan.cached:
        answered = False
        for cand in candidates:  # the catalog does not know the size: the server may
            try:
                size = download.remote_size(cand.url)
            except DownloadError:
                continue
            answered = True
            if size is not None:
                to_download, source = max(size - plan.partial_bytes, 0), "server"
                break
        if to_download is None and candidates and not answered:
            source = "no answer"
    if plan.cached:
        source = "cache"
    return base.model_copy(update={"archive_path": plan.cache_path, "cached": plan.cached,
                                   "would_download": to_download, "size_source": source,
                                   "partial_bytes": plan.partial_bytes})


def download_resource(resource: Resource | Build, dest_dir: Path | None = None,
                      on_progress: ProgressCallback | None = None,
                      urls: tuple[str, ...] | list[str] = (), *,
                      connections: int = 4) -> Path:
    """Download a catalog entry (e.g. the 2014 preloader) through the same verified path.

    The verified file stays in the cache; with `dest_dir` a copy is placed there (atomically)
    and that copy's path is returned.
    """
    candidates = _candidates(list(urls), resource)
    got = download.download(_target(resource, candidates), candidates,
                            options=DownloadOptions(connections=connections),
                            on_progress=on_progress)
    if dest_dir is None:
        return got.path
    target = dest_dir / got.path.name
    atomic_copy(got.path, target)
    return target
