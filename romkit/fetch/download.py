"""Resumable, segmented, mirror-failover HTTP download with verification.

Why it looks like this: forum users lose a day on one slow mirror and end with a corrupt
archive. So the file is split into pieces (8 MiB by default, many more than connections) that
N threads fetch over HTTP Range into a preallocated `.part` file; a small JSON state file,
rewritten atomically about once a second *after* the part file is fsynced, says which byte
ranges are on disk. Ctrl-C, kill -9 or a power cut therefore lose at most a second of work,
and the next run resumes. Nothing is renamed into place before its size and every known hash
match; a file that fails is deleted or quarantined.

Never splicing two versions of a file: the state remembers each mirror's validator (strong
ETag, else Last-Modified) and every range request carries it in `If-Range`, so a server whose
file changed answers with the whole new file instead of a piece of it, and the download
starts over cleanly. Bytes already on disk are only resumed when that is provably safe: the
catalog publishes a sha256 (the final check catches any mix), or the same mirror still
reports the same validator. With no published hash, the sha256 seen first is remembered only
once the file is complete and verified; a later download with another hash is refused unless
the user accepts it (`accept_new_hash`).

Bounded: every source (HTTP or file://) is read to at most the catalog size, or `max_size`
when the catalog gives none; a connection slower than `low_speed_limit` bytes/s for
`low_speed_time` seconds fails over to the next mirror; a `.part` that is a symlink is refused.
Retries (connection errors, drops mid-body, HTTP 429/5xx, with Retry-After) follow urllib3's
`Retry` policy, in one place (`_Transfer._retrying`).

The `.part` file is this module's "temp file beside the target": it is written with positional
writes (several connections at once, so `romkit.fsutil.atomic_open` cannot stream it) and only
renamed over the final name once verified (so `force` keeps the old archive until then).
Everything else (state, hash records) goes through `romkit.fsutil`.

Knows nothing about the catalog or archives: callers pass a `DownloadTarget` and candidates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import requests
import urllib3
from pydantic import BaseModel, Field
from urllib3.exceptions import MaxRetryError
from urllib3.util import Retry

from romkit import paths
from romkit.errors import DiskError, DownloadError, IntegrityError
from romkit.fsutil import atomic_write_text, hash_file
from romkit.progress import ProgressCallback, Reporter

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl; locking is then skipped
    fcntl = None  # type: ignore[assignment]

PIECE_SIZE = 8 * 1024 * 1024
DEFAULT_MAX_SIZE = 8 * 1024 ** 3  # far above any MT6589 firmware archive (~0.5-2 GiB)
DEFAULT_LOW_SPEED_LIMIT = 1024
DEFAULT_LOW_SPEED_TIME = 60.0
_READ_CHUNK = 256 * 1024
_STATE_VERSION = 1
_OBSERVED = "observed-hashes.json"
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_SAFE_NAME = re.compile(r"^[^/\\\x00-\x1f]+$")
_USER_AGENT = "romkit-fetch/0.1"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_RETRY_AFTER_MAX = 120.0  # a server asking for a longer pause is treated as down for now
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_T = TypeVar("_T")


# ---------------------------------------------------------------------------------- models --
class Candidate(BaseModel):
    """One place the file may be fetched from; `source` says who named it (cli/user/remote/…)."""

    url: str
    source: str = "cli"


class DownloadTarget(BaseModel):
    """What the bytes must be. `key` names the build for the observed-hash record."""

    file_name: str
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = None
    md5: str | None = None
    key: str | None = None

    @property
    def record_key(self) -> str:
        return self.key or self.file_name


class DownloadOptions(BaseModel):
    """Knobs of one download; defaults are what the CLI uses."""

    connections: int = Field(default=4, ge=1, le=32)
    piece_size: int = Field(default=PIECE_SIZE, ge=64 * 1024)
    retries: int = Field(default=5, ge=0)
    backoff: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=30.0, ge=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    state_interval: float = Field(default=1.0, gt=0)
    max_size: int = Field(default=DEFAULT_MAX_SIZE, ge=1)
    low_speed_limit: int = Field(default=DEFAULT_LOW_SPEED_LIMIT, ge=0)
    low_speed_time: float = Field(default=DEFAULT_LOW_SPEED_TIME, gt=0)
    accept_new_hash: bool = False
    force: bool = False
    keep_bad: bool = False
    debug: bool = False


class MirrorAttempt(BaseModel):
    url: str
    source: str
    outcome: Literal["ok", "failed"]
    detail: str = ""
    bytes: int = 0


class DownloadResult(BaseModel):
    path: Path
    size: int
    sha256: str
    md5: str | None = None
    bytes_downloaded: int = 0
    cached: bool = False
    attempts: list[MirrorAttempt] = Field(default_factory=list)
    hash_note: str | None = None


class DownloadPlan(BaseModel):
    """What `download` would do (for --dry-run): nothing is touched to compute it."""

    cache_path: Path
    cached: bool
    partial_bytes: int
    to_download: int | None
    candidates: list[Candidate]


class DownloadInterrupted(KeyboardInterrupt):
    """Ctrl-C during a download, with what was left on disk (the CLI says it and how to go
    on). Still a KeyboardInterrupt, so callers that do not care see the usual one."""

    def __init__(self, file_name: str, part: Path, done: int, total: int | None,
                 resumable: bool = True) -> None:
        super().__init__(f"download of {file_name} interrupted")
        self.file_name = file_name
        self.part = part
        self.done = done
        self.total = total
        self.resumable = resumable


# ------------------------------------------------------------------------------ public API --
def cache_downloads_dir() -> Path:
    return paths.cache_dir() / "downloads"


def check_file_name(name: str) -> str:
    """A download lands in the cache under this name, so it must be one plain file name."""
    if not name or name in (".", "..") or not _SAFE_NAME.match(name) or len(name) > 255:
        raise DownloadError(f"refusing unsafe download file name {name!r}",
                            hint="the catalog entry or URL must name a plain file")
    return name


def file_name_from_url(url: str) -> str:
    tail = unquote(urlsplit(url).path).rstrip("/").rsplit("/", 1)[-1]
    return check_file_name(tail)


def plan(target: DownloadTarget, candidates: Sequence[Candidate], *,
         cache: Path | None = None, force: bool = False) -> DownloadPlan:
    base = cache or cache_downloads_dir()
    name = check_file_name(target.file_name)
    final = base / name
    state = _load_state(_state_path(base / f"{name}.part"))
    partial = sum(e - s for s, e in state.ranges) if state is not None else 0
    cached = final.is_file() and not force
    to_download = 0 if cached else (None if target.size is None else target.size - partial)
    return DownloadPlan(cache_path=final, cached=cached, partial_bytes=partial,
                        to_download=to_download, candidates=list(candidates))


SIZE_PROBE_TIMEOUT = 5.0  # a dry run should answer quickly, even with a dead mirror


def remote_size(url: str, timeout: float = SIZE_PROBE_TIMEOUT) -> int | None:
    """The file's size as the server states it, or None when it does not say; DownloadError
    when it does not answer within `timeout`. HEAD first; a server that refuses HEAD (405,
    403, …) or leaves out Content-Length is asked for byte 0 only (`Range: bytes=0-0`): a
    206's Content-Range carries the total. Nothing is downloaded beyond that one byte."""

    session = requests.Session()
    session.headers["User-Agent"] = _USER_AGENT
    session.headers["Accept-Encoding"] = "identity"
    try:
        try:
            head = session.head(url, allow_redirects=True, timeout=timeout)
            length = head.headers.get("Content-Length", "")
            if head.status_code == 200 and length.isdigit():
                return int(length)
        except requests.RequestException:
            pass  # try the GET: some hosts drop HEAD requests
        try:
            with session.get(url, headers={"Range": "bytes=0-0"}, stream=True,
                             timeout=timeout) as resp:
                if resp.status_code == 206:
                    m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                    return int(m.group(3)) if m is not None and m.group(3) != "*" else None
                length = resp.headers.get("Content-Length", "")
                if resp.status_code == 200 and length.isdigit():
                    return int(length)  # the whole file would come: closed unread
        except requests.RequestException as exc:
            raise DownloadError(f"no answer from {url}: {_describe(exc)}",
                                hint="check the URL and the network") from exc
        return None
    finally:
        session.close()


def download(target: DownloadTarget, candidates: Sequence[Candidate], *,
             options: DownloadOptions | None = None, cache: Path | None = None,
             on_progress: ProgressCallback | None = None) -> DownloadResult:
    """Fetch `target` from the first candidate that delivers the right bytes.

    Candidates are tried in order; each failure (HTTP error, wrong size, hash mismatch, too
    slow) is reported as a warning and recorded in the result. Raises IntegrityError if only
    wrong bytes were found (or the sha256 differs from the one seen first), DownloadError if
    nothing could be fetched at all, DownloadInterrupted on Ctrl-C. With `force` a cached
    archive is not reused, but it stays in place until the new one is verified.
    """
    opts = options or DownloadOptions()
    rep = Reporter(on_progress)
    base = cache or cache_downloads_dir()
    name = check_file_name(target.file_name)
    _mkdir(base)
    final = base / name
    part = base / f"{name}.part"
    with _lock(base / f".{name}.lock"):
        if final.is_file() and not opts.force:
            cached = _reuse_cached(final, target, opts, rep)
            if cached is not None:
                return cached
        if not candidates:
            raise DownloadError(f"no URL known for {name}",
                                hint="pass --url URL, or add a mirror to the catalog")
        try:
            return _try_candidates(target, candidates, final, part, opts, rep)
        except KeyboardInterrupt as exc:
            state = _load_state(_state_path(part))
            done = sum(e - s for s, e in state.ranges) if state is not None else 0
            total = state.size if state is not None else target.size
            resumable = state is not None and state.resumable
            raise DownloadInterrupted(name, part, done, total, resumable) from exc


def import_file(path: Path, target: DownloadTarget, *, accept_new_hash: bool = False,
                on_progress: ProgressCallback | None = None) -> DownloadResult:
    """Verify a file the user already has (`--from FILE`) exactly like a download.

    The user's file is never deleted or moved, even when it does not match.
    """
    rep = Reporter(on_progress)
    if not path.is_file():
        raise DownloadError(f"not a file: {path}", hint="pass the archive you downloaded")
    rep.info(f"verifying {path} …")
    digests, problem = _verify(path, target)
    if problem is not None:
        raise IntegrityError(f"{path.name}: {problem}",
                             hint="this is not the expected file; download it again or use "
                                  "`romkit fetch` without --from")
    size = path.stat().st_size
    note = _check_observed(target, digests["sha256"], accept_new_hash, rep, kept=path)
    note = _record_observed(target, digests["sha256"], size, rep) or note
    return DownloadResult(path=path, size=size, sha256=digests["sha256"],
                          md5=digests.get("md5"), hash_note=note)


# -------------------------------------------------------------------------- verification --
def _verify(path: Path, target: DownloadTarget) -> tuple[dict[str, str], str | None]:
    """Digests of `path` and the first mismatch against `target` (None when all match)."""
    size = path.stat().st_size
    if target.size is not None and size != target.size:
        return {"sha256": ""}, f"size is {size} bytes, expected {target.size}"
    algos = ["sha256"] + (["md5"] if target.md5 else [])
    digests = hash_file(path, algos)
    if target.sha256 and digests["sha256"].lower() != target.sha256.lower():
        return digests, f"sha256 is {digests['sha256']}, expected {target.sha256.lower()}"
    if target.md5 and digests["md5"].lower() != target.md5.lower():
        return digests, f"md5 is {digests['md5']}, expected {target.md5.lower()}"
    return digests, None


def _reuse_cached(final: Path, target: DownloadTarget, opts: DownloadOptions,
                  rep: Reporter) -> DownloadResult | None:
    digests, problem = _verify(final, target)
    if problem is None:
        rep.info(f"{final.name} already downloaded and verified ({final})")
        size = final.stat().st_size
        note = _check_observed(target, digests["sha256"], opts.accept_new_hash, rep,
                               kept=final)
        note = _record_observed(target, digests["sha256"], size, rep) or note
        return DownloadResult(path=final, size=size, sha256=digests["sha256"],
                              md5=digests.get("md5"), cached=True, hash_note=note)
    where = _discard(final, opts.keep_bad)
    rep.warning(f"cached {final.name} is bad ({problem}); {where}; downloading again")
    return None


def _discard(path: Path, keep_bad: bool) -> str:
    """Delete a bad file, or move it to quarantine/ with --keep-bad; say which."""
    if not keep_bad:
        _unlink(path)
        return "deleted"
    qdir = path.parent / "quarantine"
    _mkdir(qdir)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    dest = qdir / f"{path.name.removesuffix('.part')}.{stamp}.bad"
    try:
        os.replace(path, dest)
    except OSError as exc:
        raise DiskError(f"cannot quarantine {path}: {exc.strerror or exc}",
                        hint="check the cache folder's permissions") from exc
    return f"kept in {dest}"


def _observed_records() -> dict[str, Any]:
    try:
        records = json.loads((paths.data_dir() / _OBSERVED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


def _check_observed(target: DownloadTarget, sha256: str, accept: bool, rep: Reporter, *,
                    kept: Path) -> str | None:
    """With no published sha256, compare with the one seen first (trust on first use).

    A different hash means the published file changed or one copy is bad: refused (exit 3)
    unless the user accepts it, because the first copy may already be flashed to phones.
    Returns the note to show; raises IntegrityError on an unaccepted difference.
    """
    if target.sha256:
        return None
    old = _observed_records().get(target.record_key)
    if not (isinstance(old, dict) and isinstance(old.get("sha256"), str)):
        return None
    when = old.get("recorded", "?")
    if old["sha256"] == sha256:
        note = f"sha256 {sha256} matches the one recorded on {when}"
        rep.info(note)
        return note
    if accept:
        note = (f"sha256 {sha256} differs from {old['sha256']} recorded on {when}; "
                "accepted (--accept-new-hash) and recorded instead")
        rep.warning(note)
        return note
    raise IntegrityError(
        f"{target.file_name}: sha256 {sha256} differs from {old['sha256']} recorded for "
        f"{target.record_key} on {when} (the published file changed, or one copy is bad)",
        hint=f"the file is kept as {kept}; if the new file is right, run again with "
             "--accept-new-hash; otherwise try another mirror with --url",
        details={"sha256": sha256, "recorded_sha256": old["sha256"], "kept": str(kept)})


def _record_observed(target: DownloadTarget, sha256: str, size: int,
                     rep: Reporter) -> str | None:
    """Remember the sha256 of a complete, verified file (no published hash) unless it is the
    one already recorded; returns the note to show when something was recorded."""
    if target.sha256:
        return None
    records = _observed_records()
    key = target.record_key
    old = records.get(key)
    if isinstance(old, dict) and old.get("sha256") == sha256:
        return None
    entry: dict[str, Any] = {"file_name": target.file_name, "size": size, "sha256": sha256,
                             "recorded": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if isinstance(old, dict) and isinstance(old.get("sha256"), str):
        entry["replaces"] = old["sha256"]
    records[key] = entry
    atomic_write_text(paths.data_dir() / _OBSERVED,
                      json.dumps(records, indent=2, sort_keys=True))
    if "replaces" in entry:
        return None
    note = f"first download of {key}, sha256 {sha256}, recorded"
    rep.info(note)
    return note


# ------------------------------------------------------------------------------ failover --
class _MirrorFailed(Exception):
    """One candidate did not deliver; the message says why (shown to the user)."""

    def __init__(self, message: str, *, integrity: bool = False) -> None:
        super().__init__(message)
        self.integrity = integrity


class _Changed(Exception):
    """The mirror's file is not the one the part file holds pieces of: start over."""


def _try_candidates(target: DownloadTarget, candidates: Sequence[Candidate], final: Path,
                    part: Path, opts: DownloadOptions, rep: Reporter) -> DownloadResult:
    attempts: list[MirrorAttempt] = []
    bad_bytes = False
    for cand in candidates:
        fresh_retry = False
        while True:
            transfer = _Transfer(cand, target, part, opts, rep)
            try:
                got = transfer.run()
            except _Changed as exc:
                _unlink(part)
                _unlink(_state_path(part))
                if fresh_retry:
                    attempts.append(MirrorAttempt(url=cand.url, source=cand.source,
                                                  outcome="failed", detail=str(exc),
                                                  bytes=transfer.fetched))
                    rep.warning(f"mirror {cand.url} failed: {exc}, twice")
                    break
                rep.warning(f"{exc}: the partial download is discarded and starts over")
                fresh_retry = True
                continue
            except _MirrorFailed as exc:
                bad_bytes = bad_bytes or exc.integrity
                attempts.append(MirrorAttempt(url=cand.url, source=cand.source, outcome="failed",
                                              detail=str(exc), bytes=transfer.fetched))
                rep.warning(f"mirror {cand.url} failed: {exc}")
                break
            rep.info(f"verifying {target.file_name} …")
            digests, problem = _verify(part, target)
            if problem is None:
                # A hash other than the first-seen one is refused here, before the file
                # takes the final name; the complete .part stays for --accept-new-hash.
                note = _check_observed(target, digests["sha256"], opts.accept_new_hash, rep,
                                       kept=part)
                _replace(part, final)
                _unlink(_state_path(part))
                note = _record_observed(target, digests["sha256"], got, rep) or note
                attempts.append(MirrorAttempt(url=cand.url, source=cand.source, outcome="ok",
                                              bytes=transfer.fetched))
                return DownloadResult(path=final, size=got, sha256=digests["sha256"],
                                      md5=digests.get("md5"),
                                      bytes_downloaded=sum(a.bytes for a in attempts),
                                      attempts=attempts, hash_note=note)
            where = _discard(part, opts.keep_bad)
            _unlink(_state_path(part))
            if transfer.resumed_bytes and not fresh_retry:
                # Pieces from an earlier run or mirror may be the bad ones: give this mirror
                # one clean try before blaming it.
                rep.warning(f"{target.file_name}: {problem} after resuming; {where}; "
                            f"downloading again from {cand.url}")
                fresh_retry = True
                continue
            bad_bytes = True
            attempts.append(MirrorAttempt(url=cand.url, source=cand.source, outcome="failed",
                                          detail=problem, bytes=transfer.fetched))
            rep.warning(f"mirror {cand.url} delivered a bad file ({problem}); {where}")
            break
    summary = "; ".join(f"{a.url}: {a.detail}" for a in attempts)
    details: dict[str, Any] = {"attempts": [a.model_dump() for a in attempts]}
    if bad_bytes:
        raise IntegrityError(f"no mirror delivered a valid {target.file_name} ({summary})",
                             hint="try another mirror with --url, or --keep-bad to inspect "
                                  "the bad copy", details=details)
    raise DownloadError(f"could not download {target.file_name} ({summary})",
                        hint="check your connection or pass another mirror with --url; "
                             "finished pieces are kept and the next run resumes",
                        details=details)


# ------------------------------------------------------------------------------- transfer --
@dataclass(frozen=True)
class _Validator:
    """What identifies one version of a file on one server (RFC 9110 §8.8): a strong ETag,
    else Last-Modified. Weak ETags (W/…) cannot be used with If-Range, so they are ignored."""

    etag: str | None = None
    last_modified: str | None = None

    @classmethod
    def of(cls, resp: requests.Response) -> _Validator | None:
        etag = resp.headers.get("ETag")
        if etag is not None and (etag.startswith("W/") or not etag.strip()):
            etag = None
        modified = resp.headers.get("Last-Modified") or None
        return cls(etag, modified) if etag or modified else None

    @property
    def if_range(self) -> str:
        return self.etag or self.last_modified or ""

    def as_dict(self) -> dict[str, str | None]:
        return {"etag": self.etag, "last_modified": self.last_modified}

    @classmethod
    def from_dict(cls, raw: object) -> _Validator | None:
        if not isinstance(raw, dict):
            return None
        etag, modified = raw.get("etag"), raw.get("last_modified")
        etag = etag if isinstance(etag, str) and etag else None
        modified = modified if isinstance(modified, str) and modified else None
        return cls(etag, modified) if etag or modified else None

    def describe(self) -> str:
        return f"ETag {self.etag}" if self.etag else f"Last-Modified {self.last_modified}"

    def matches(self, other: _Validator | None) -> bool | None:
        """Same version of the file? By ETag when both have one, else by Last-Modified when
        both have it; None when the two cannot be compared."""
        if other is None:
            return None
        if self.etag and other.etag:
            return self.etag == other.etag
        if self.last_modified and other.last_modified:
            return self.last_modified == other.last_modified
        return None


@dataclass
class _State:
    size: int
    sha256: str | None
    ranges: list[tuple[int, int]]
    validators: dict[str, _Validator] = field(default_factory=dict)
    resumable: bool = True  # False: written by a single stream, which restarts from 0


def _state_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _load_state(path: Path) -> _State | None:
    """The state file, or None if absent or unusable (it is only an optimisation)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        size = raw["size"]
        if raw.get("version") != _STATE_VERSION or not isinstance(size, int) or size < 0:
            return None
        ranges = [(int(s), int(e)) for s, e in raw["ranges"]]
        sha = raw.get("sha256")
        if any(not (0 <= s < e <= size) for s, e in ranges):
            return None
        validators: dict[str, _Validator] = {}
        found = raw.get("validators")
        if isinstance(found, dict):
            for url, v in found.items():
                parsed = _Validator.from_dict(v)
                if isinstance(url, str) and parsed is not None:
                    validators[url] = parsed
        return _State(size=size, sha256=sha if isinstance(sha, str) else None,
                      ranges=_merge(ranges), validators=validators,
                      resumable=raw.get("resumable", True) is not False)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(r for r in ranges if r[1] > r[0]):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


@dataclass
class _Piece:
    start: int
    end: int
    done: int = 0

    @property
    def remaining(self) -> int:
        return self.end - self.start - self.done


class _SpeedFloor:
    """curl's LOW_SPEED_LIMIT/LOW_SPEED_TIME: fail when fewer than `limit` bytes/s arrived
    over a whole window of `seconds`. A server dripping a byte every few seconds never trips
    a read timeout, so this is what moves on to the next mirror."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._t0 = time.monotonic()
        self._b0 = 0

    def check(self, total_bytes: int) -> None:
        if self.limit <= 0:
            return
        now = time.monotonic()
        span = now - self._t0
        if span < self.seconds:
            return
        got = total_bytes - self._b0
        if got < self.limit * span:
            raise _MirrorFailed(f"too slow: {got / span:.0f} B/s over the last {span:.0f} s, "
                                f"below the {self.limit} B/s floor (--low-speed-limit/"
                                "--low-speed-time)")
        self._t0, self._b0 = now, total_bytes


class _Transfer:
    """One attempt at fetching the part file from one candidate."""

    def __init__(self, cand: Candidate, target: DownloadTarget, part: Path,
                 opts: DownloadOptions, rep: Reporter) -> None:
        self.cand = cand
        self.target = target
        self.part = part
        self.opts = opts
        self.rep = rep
        self.fetched = 0
        self.resumed_bytes = 0
        self.pieces: list[_Piece] = []
        self.total: int | None = None
        self.bound = target.size if target.size is not None else opts.max_size
        self.validator: _Validator | None = None
        self.validators: dict[str, _Validator] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._fd = -1
        self.detached = False
        self.single = False
        self.task = "download"

    # -- entry ------------------------------------------------------------------------------
    def run(self) -> int:
        """Fill the part file; return its size. Raises _MirrorFailed, _Changed, DiskError."""
        if urlsplit(self.cand.url).scheme == "file":
            return self._local()
        probe, ranged, total = self._probe()
        if self.target.size is not None and total is not None and total != self.target.size:
            probe.close()
            raise _MirrorFailed(f"wrong size: server has {total} bytes, "
                                f"expected {self.target.size}", integrity=True)
        if total is not None and total > self.bound:
            probe.close()
            raise _MirrorFailed(f"server offers {total} bytes, more than the {self.bound} "
                                "allowed (--max-size)")
        self.total = total if total is not None else self.target.size
        if not ranged:
            self.rep.info(f"{self.cand.url} does not support ranges: one stream, "
                          "an interruption restarts from the beginning")
            return self._single(probe)
        probe.close()
        assert total is not None
        self._prepare_part(total)
        try:
            self._parallel(total)
        finally:
            self._save_state()
            if not self.detached:
                os.close(self._fd)
        return total

    def _local(self) -> int:
        """A file:// mirror (a USB stick, a NAS mount): copied in, then verified the same way.

        Read to the same bound as any mirror: a device such as /dev/zero has no size."""
        src = Path(url2pathname(urlsplit(self.cand.url).path))
        try:
            st = src.stat()
        except OSError as exc:
            raise _MirrorFailed(f"cannot read {src}: {exc.strerror or exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise _MirrorFailed(f"{src} is not a regular file")
        size = st.st_size
        if self.target.size is not None and size != self.target.size:
            raise _MirrorFailed(f"wrong size: {src} has {size} bytes, "
                                f"expected {self.target.size}", integrity=True)
        if size > self.bound:
            raise _MirrorFailed(f"{src} has {size} bytes, more than the {self.bound} allowed "
                                "(--max-size)")
        try:
            fin = src.open("rb")
        except OSError as exc:
            raise _MirrorFailed(f"cannot read {src}: {exc.strerror or exc}") from exc
        self.total = size
        self.pieces = [_Piece(0, size)]
        try:
            self._fd = self._open_part(os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        except BaseException:
            fin.close()
            raise
        self.rep.start(self.task, self.target.file_name, total=size, url=self.cand.url)
        piece = self.pieces[0]
        try:
            with fin:
                while chunk := fin.read(min(_READ_CHUNK * 4, self.bound + 1 - piece.done)):
                    if piece.done + len(chunk) > self.bound:
                        raise _MirrorFailed(f"{src} grew past the {self.bound} bytes allowed "
                                            "while being read (--max-size)")
                    self._pwrite(chunk, piece.done)
                    piece.done += len(chunk)
                    self.fetched += len(chunk)
                    self.rep.update(self.task, piece.done, size)
        except OSError as exc:
            raise _MirrorFailed(f"cannot read {src}: {exc.strerror or exc}") from exc
        finally:
            os.close(self._fd)
            self._fd = -1
        self.rep.end(self.task)
        return piece.done

    # -- retry policy -----------------------------------------------------------------------
    def _policy(self) -> Retry:
        """urllib3's Retry: the retry budget, exponential backoff, which HTTP statuses are
        worth retrying and how to read Retry-After - the one policy for every request."""
        return Retry(total=self.opts.retries, backoff_factor=self.opts.backoff,
                     backoff_max=self.opts.backoff_max, status_forcelist=_RETRY_STATUS,
                     respect_retry_after_header=True)

    def _retrying(self, attempt: Callable[[], _T],
                  progress: Callable[[], int] | None = None) -> _T:
        """Run `attempt` until it returns; each _Retryable it raises costs one retry of the
        policy and waits its backoff (or the server's Retry-After, up to two minutes).
        With `progress`, an attempt that moved it forward starts a fresh budget: a flaky
        link that keeps delivering is not a dead mirror."""
        policy = self._policy()
        while True:
            mark = progress() if progress is not None else 0
            try:
                return attempt()
            except _Retryable as exc:
                if progress is not None and progress() > mark:
                    policy = self._policy()
                try:
                    policy = policy.increment(method="GET", url=self.cand.url, error=exc)
                except MaxRetryError:
                    raise _MirrorFailed(f"{exc} (after {self.opts.retries} retries)") from exc
                wait = policy.get_backoff_time()
                if exc.retry_after is not None:
                    if exc.retry_after > _RETRY_AFTER_MAX:
                        raise _MirrorFailed(f"{exc}, asking to retry after "
                                            f"{exc.retry_after:.0f} s") from exc
                    wait = exc.retry_after
                if self.stop.wait(wait):
                    raise _Stopped() from exc

    def _status_failure(self, resp: requests.Response) -> Exception:
        """The exception for an unexpected status: retryable per the policy, else fatal."""
        code, reason = resp.status_code, resp.reason
        policy = self._policy()
        if policy.is_retry("GET", code, has_retry_after="Retry-After" in resp.headers):
            after = policy.get_retry_after(resp.raw) if resp.raw is not None else None
            resp.close()
            return _Retryable(f"HTTP {code} {reason}", retry_after=after)
        resp.close()
        return _MirrorFailed(f"HTTP {code} {reason}")

    # -- HTTP -------------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        s = requests.Session()
        s.headers["User-Agent"] = _USER_AGENT
        s.headers["Accept-Encoding"] = "identity"
        return s

    def _get(self, session: requests.Session, start: int | None,
             end: int | None = None, *, if_range: bool = False) -> requests.Response:
        headers = {}
        if start is not None:
            headers["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
            if if_range and self.validator is not None:
                headers["If-Range"] = self.validator.if_range
        try:
            return session.get(self.cand.url, headers=headers, stream=True,
                               timeout=(self.opts.connect_timeout, self.opts.read_timeout))
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            raise _MirrorFailed(f"unusable URL: {exc}") from exc
        except requests.RequestException as exc:
            raise _Retryable(_describe(exc)) from exc

    def _probe(self) -> tuple[requests.Response, bool, int | None]:
        """Ask for byte 0 only: a 206 proves Range support and gives the size and the
        validator; a 200 is the whole file in one stream (kept open and used as such)."""
        session = self._session()

        def attempt() -> tuple[requests.Response, bool, int | None]:
            resp = self._get(session, 0, 1)
            if resp.status_code == 206:
                m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                if m is None or m.group(3) == "*" or int(m.group(1)) != 0:
                    resp.close()
                    raise _MirrorFailed("server sent an unusable Content-Range header")
                self.validator = _Validator.of(resp)
                return resp, True, int(m.group(3))
            if resp.status_code == 200:
                length = resp.headers.get("Content-Length")
                self.validator = _Validator.of(resp)
                return resp, False, int(length) if length and length.isdigit() else None
            raise self._status_failure(resp)

        return self._retrying(attempt)

    # -- part file and state ----------------------------------------------------------------
    def _open_part(self, flags: int) -> int:
        """Open the .part file, never through a symlink: the cache may be shared or synced,
        and a link planted there must not make romkit overwrite the file it points to."""
        try:
            fd = os.open(self.part, flags | _NOFOLLOW, 0o666)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK) or self.part.is_symlink():
                raise DiskError(f"refusing to write {self.part}: it is a symbolic link",
                                hint="romkit never makes links in its cache; remove it and "
                                     "run again") from exc
            raise DiskError(f"cannot open {self.part}: {exc.strerror or exc}",
                            hint="check the cache folder's permissions") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise DiskError(f"refusing to write {self.part}: it is not a regular file",
                            hint="remove it and run again")
        return fd

    def _resumable(self, state: _State | None, total: int) -> list[tuple[int, int]]:
        """The recorded ranges if they provably belong to the file this mirror serves now."""
        if state is None or not state.ranges:
            return []
        try:
            st = os.lstat(self.part)
        except OSError:
            return []
        want = (self.target.sha256 or "").lower()
        same_hash = not want or not state.sha256 or state.sha256.lower() == want
        if not (stat.S_ISREG(st.st_mode) and state.size == total and st.st_size == total
                and same_hash):
            self.rep.info(f"partial {self.part.name} belongs to another version of the "
                          "file; starting over")
            return []
        before = state.validators.get(self.cand.url)
        same = before.matches(self.validator) if before is not None else None
        if before is not None and self.validator is not None and same is False:
            self.rep.warning(f"{self.target.file_name} changed on {self.cand.url} since the "
                             f"partial download ({before.describe()} -> "
                             f"{self.validator.describe()}); starting over")
            return []
        if self.target.sha256:
            return state.ranges  # the final sha256 check catches any mix of versions
        if same:
            return state.ranges
        self.rep.info(f"partial {self.part.name} cannot be proven to be the same version "
                      f"of the file as {self.cand.url} serves (no published sha256 and no "
                      "matching ETag/Last-Modified from this mirror); starting over")
        return []

    def _prepare_part(self, total: int) -> None:
        state = _load_state(_state_path(self.part))
        ranges = self._resumable(state, total)
        if ranges and state is not None:
            self.validators = dict(state.validators)
        if self.validator is not None:
            self.validators[self.cand.url] = self.validator
        fd = self._open_part(os.O_RDWR | os.O_CREAT)
        self._fd = fd
        try:
            if not ranges:
                os.ftruncate(fd, 0)
            _preallocate(fd, total)
        except OSError as exc:
            os.close(fd)
            raise DiskError(f"cannot reserve {total} bytes for {self.part}: "
                            f"{exc.strerror or exc}",
                            hint="free some disk space (or set ROMKIT_HOME to a larger disk)"
                            ) from exc
        self.pieces = _split(total, self.opts.piece_size, ranges)
        self.resumed_bytes = sum(p.done for p in self.pieces)
        if self.resumed_bytes:
            self.rep.info(f"resuming {self.part.name}: {self.resumed_bytes} of {total} bytes "
                          "already on disk")

    def _save_state(self) -> None:
        """fsync first, then claim: the state never lists bytes that are not durable."""
        with self._lock:
            ranges = [(p.start, p.start + p.done) for p in self.pieces if p.done]
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
        doc = {"version": _STATE_VERSION, "file_name": self.target.file_name,
               "size": self.total, "sha256": self.target.sha256 or None,
               "ranges": [list(r) for r in _merge(ranges)],
               "validators": {url: v.as_dict() for url, v in self.validators.items()},
               "resumable": not self.single}
        atomic_write_text(_state_path(self.part), json.dumps(doc))

    # -- segmented --------------------------------------------------------------------------
    def _parallel(self, total: int) -> None:
        """Run the connections as daemon threads and watch them from this one.

        Daemon threads because a connection stalled in a socket read must not keep Ctrl-C
        waiting for the read timeout: on KeyboardInterrupt the state is saved and the
        exception goes up at once (the part file stays open for the stragglers, whose late
        bytes the state file does not claim). On a mirror failure (including a transfer
        below the speed floor) the others are stopped and joined before the next mirror
        touches the part file.
        """
        pending = [p for p in self.pieces if p.remaining > 0]
        queue_lock = threading.Lock()
        workers = max(1, min(self.opts.connections, len(pending)))
        errors: list[BaseException] = []
        wake = threading.Event()

        def next_piece() -> _Piece | None:
            with queue_lock:
                return pending.pop(0) if pending else None

        def guarded(conn: int) -> None:
            try:
                self._worker(conn, next_piece)
            except _Stopped:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the watching thread
                errors.append(exc)
            finally:
                wake.set()

        self.rep.start(self.task, self.target.file_name, total=total, url=self.cand.url,
                       connections=workers)
        began = time.monotonic()
        floor = _SpeedFloor(self.opts.low_speed_limit, self.opts.low_speed_time)
        threads = [threading.Thread(target=guarded, args=(k,), daemon=True,
                                    name=f"romkit-dl-{k}") for k in range(workers)]
        for t in threads:
            t.start()
        last_state = time.monotonic()
        try:
            while any(t.is_alive() for t in threads):
                wake.wait(0.1)
                wake.clear()
                self._report(total, began)
                if time.monotonic() - last_state >= self.opts.state_interval:
                    self._save_state()
                    last_state = time.monotonic()
                if errors:
                    break
                if any(t.is_alive() for t in threads):
                    with self._lock:
                        fetched = self.fetched
                    try:
                        floor.check(fetched)
                    except _MirrorFailed as exc:
                        errors.append(exc)
                        break
        except KeyboardInterrupt:
            self.stop.set()
            self.detached = True
            raise
        if errors:
            self.stop.set()
            for t in threads:
                t.join()
            raise errors[0]
        self._report(total, began)
        self.rep.end(self.task)

    def _report(self, total: int, began: float) -> None:
        with self._lock:
            have = sum(p.done for p in self.pieces)
            fetched = self.fetched
        elapsed = max(1e-6, time.monotonic() - began)
        rate = fetched / elapsed
        eta = (total - have) / rate if rate > 0 else None
        self.rep.update(self.task, have, total, rate=round(rate), eta=eta)

    def _worker(self, conn: int, next_piece: Any) -> None:
        session = self._session()
        try:
            while not self.stop.is_set():
                piece = next_piece()
                if piece is None:
                    return
                t0 = time.monotonic()
                before = piece.done
                self._fetch_piece(session, piece)
                if self.opts.debug:
                    took = max(1e-6, time.monotonic() - t0)
                    got = piece.done - before
                    self.rep.info(f"conn {conn}: bytes {piece.start}-{piece.end - 1} done "
                                  f"({got / took / 1024:.0f} KiB/s)", conn=conn,
                                  start=piece.start, end=piece.end, seconds=round(took, 3))
        finally:
            session.close()

    def _fetch_piece(self, session: requests.Session, piece: _Piece) -> None:
        """Stream one piece to its end; a piece that moved forward keeps its retry budget
        fresh (see `_retrying`)."""

        def attempt() -> None:
            self._stream_piece(session, piece)

        def progress() -> int:
            return piece.done

        self._retrying(attempt, progress=progress)

    def _stream_piece(self, session: requests.Session, piece: _Piece) -> None:
        if self.stop.is_set():
            raise _Stopped()
        offset = piece.start + piece.done
        resp = self._get(session, offset, piece.end, if_range=True)
        with resp:
            if resp.status_code == 200:
                resp.close()
                if self.validator is not None:
                    raise _Changed(f"{self.target.file_name} changed on {self.cand.url} "
                                   f"during the download (its {self.validator.describe()} "
                                   "no longer matches)")
                raise _MirrorFailed("server stopped honouring Range requests")
            if resp.status_code != 206:
                raise self._status_failure(resp)
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if m is None or int(m.group(1)) != offset:
                raise _MirrorFailed("server answered a different byte range than asked")
            now = _Validator.of(resp)
            if (m.group(3) != "*" and int(m.group(3)) != self.total) or (
                    now is not None and now.matches(self.validator) is False):
                raise _Changed(f"{self.target.file_name} changed on {self.cand.url} during "
                               "the download (the server ignored If-Range)")
            for chunk in _iter_body(resp):
                if self.stop.is_set():
                    raise _Stopped()
                take = chunk[:piece.remaining]
                self._pwrite(take, piece.start + piece.done)
                with self._lock:
                    piece.done += len(take)
                    self.fetched += len(take)
                if piece.remaining == 0:
                    return
        if piece.remaining > 0:
            raise _Retryable(f"connection closed early ({piece.remaining} bytes missing)")

    def _pwrite(self, data: bytes, offset: int) -> None:
        try:
            view = memoryview(data)
            while view:
                n = os.pwrite(self._fd, view, offset)
                view = view[n:]
                offset += n
        except OSError as exc:
            hint = ("free some disk space and run again; the download resumes"
                    if exc.errno == errno.ENOSPC else "check the cache folder")
            raise DiskError(f"cannot write {self.part}: {exc.strerror or exc}",
                            hint=hint) from exc

    # -- single stream ----------------------------------------------------------------------
    def _single(self, resp: requests.Response) -> int:
        """No Range support: stream from byte 0 (a retry starts again from 0)."""
        total = self.total
        self.single = True
        self.pieces = [_Piece(0, total if total is not None else 0)]
        try:
            self._fd = self._open_part(os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        except BaseException:
            resp.close()
            raise
        self.rep.start(self.task, self.target.file_name, total=total, url=self.cand.url,
                       connections=1)
        began = time.monotonic()
        session = self._session()
        first: list[requests.Response] = [resp]

        def attempt() -> int:
            current = first.pop() if first else self._get(session, None)
            with self._lock:
                self.pieces[0].done = 0
            if current.status_code != 200:
                raise self._status_failure(current)
            return self._stream_all(current, total, began)

        try:
            got = self._retrying(attempt)
            os.ftruncate(self._fd, got)
            self.total = got
        finally:
            for leftover in first:
                leftover.close()
            session.close()
            self._save_state()
            os.close(self._fd)
        self.rep.end(self.task)
        return got

    def _stream_all(self, resp: requests.Response, total: int | None, began: float) -> int:
        piece = self.pieces[0]
        last = 0.0
        last_state = time.monotonic()
        floor = _SpeedFloor(self.opts.low_speed_limit, self.opts.low_speed_time)
        with resp:
            for chunk in _iter_body(resp):
                if total is not None:
                    chunk = chunk[:total - piece.done]
                if piece.done + len(chunk) > self.bound:
                    raise _MirrorFailed(f"the server sent more than the {self.bound} bytes "
                                        "allowed (--max-size)")
                self._pwrite(chunk, piece.done)
                with self._lock:
                    piece.done += len(chunk)
                    self.fetched += len(chunk)
                now = time.monotonic()
                if now - last >= 0.1:
                    elapsed = max(1e-6, now - began)
                    self.rep.update(self.task, piece.done, total,
                                    rate=round(self.fetched / elapsed))
                    last = now
                if now - last_state >= self.opts.state_interval:
                    self._save_state()
                    last_state = now
                floor.check(self.fetched)
                if total is not None and piece.done >= total:
                    break
        if total is not None and piece.done < total:
            raise _Retryable(f"connection closed early ({total - piece.done} bytes missing)")
        self.rep.update(self.task, piece.done, total)
        return piece.done


class _Retryable(Exception):
    """A transient failure worth retrying after a backoff (or the server's Retry-After)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Stopped(Exception):
    """Another connection failed or the user interrupted: stop quietly."""


def _iter_body(resp: requests.Response) -> Iterator[bytes]:
    """Body bytes as they arrive. `read1` hands over whatever is buffered, so a connection
    that drops mid-chunk loses nothing already received (iter_content would discard up to a
    whole chunk per drop, which adds up on a flaky link)."""
    raw = resp.raw
    try:
        while chunk := raw.read1(_READ_CHUNK, decode_content=False):
            yield chunk
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise _Retryable(_describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout | urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed or dropped"
    return type(exc).__name__


def _split(total: int, piece_size: int, ranges: list[tuple[int, int]]) -> list[_Piece]:
    """Cut [0, total) into pieces; each starts with the contiguous recorded prefix as done."""
    pieces = []
    for start in range(0, total, piece_size):
        end = min(total, start + piece_size)
        done = 0
        for s, e in ranges:
            if s <= start < e:
                done = min(e, end) - start
                break
        pieces.append(_Piece(start, end, done))
    return pieces


def _preallocate(fd: int, size: int) -> None:
    """Reserve the space now so a full disk is found before hours of downloading."""
    if os.fstat(fd).st_size != size:
        os.ftruncate(fd, size)
    if size and hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
            # file systems without fallocate: the sparse truncate above stands


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DiskError(f"cannot create {path}: {exc.strerror or exc}",
                        hint="check permissions or set ROMKIT_HOME") from exc


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise DiskError(f"cannot remove {path}: {exc.strerror or exc}",
                        hint="check the cache folder's permissions") from exc


def _replace(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        raise DiskError(f"cannot rename {src} to {dst}: {exc.strerror or exc}",
                        hint="check the cache folder's permissions") from exc


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """One romkit per cached file: two processes filling the same .part would corrupt it."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)
    except OSError as exc:
        raise DiskError(f"cannot create {path}: {exc.strerror or exc}",
                        hint="check the cache folder's permissions (a link there is refused)"
                        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise DownloadError(f"another romkit is already downloading {path.name[1:-5]}",
                                hint="wait for it to finish, then run again") from exc
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


__all__ = [
    "DEFAULT_LOW_SPEED_LIMIT", "DEFAULT_LOW_SPEED_TIME", "DEFAULT_MAX_SIZE", "PIECE_SIZE",
    "Candidate", "DownloadInterrupted", "DownloadOptions", "DownloadPlan", "DownloadResult",
    "DownloadTarget", "MirrorAttempt", "cache_downloads_dir", "check_file_name",
    "download", "file_name_from_url", "import_file", "plan",
]
