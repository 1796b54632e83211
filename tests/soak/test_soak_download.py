"""Soak: a download killed (SIGKILL) at random points, again and again, then resumed.

Each iteration serves a seeded file from a rate-capped local server that also drops some
connections mid-body, starts the downloader in a child process and kills it with SIGKILL at a
random moment, several times. After every kill the state file's claimed ranges are checked
against the bytes really in the `.part` file, and every later request the server answers is
checked not to touch a range that was already claimed finished. The last run (not killed)
must produce the exact file (sha256 computed from the source bytes here) having fetched
exactly the bytes no earlier run had finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from soaklib import covered, overlap, seeded

from romkit import paths
from romkit.fetch.download import Candidate, DownloadOptions, DownloadTarget, download
from romkit.fetch.localserver import Fault, LocalServer

pytestmark = pytest.mark.soak

NAME = "fw.7z"
PIECE = 64 * 1024
SIZE = 1_200_000
RATE = 350_000  # bytes/s per connection: a whole run takes about 1.7 s

CHILD = """
import sys
from romkit.fetch.download import Candidate, DownloadOptions, DownloadTarget, download
download(DownloadTarget(file_name=sys.argv[2], size=int(sys.argv[3]), sha256=sys.argv[4]),
         [Candidate(url=sys.argv[1])],
         options=DownloadOptions(piece_size=int(sys.argv[5]), connections=2, backoff=0.01,
                                 backoff_max=0.05, state_interval=0.05))
"""

Range = tuple[int, int]


def _claimed(state: Path) -> list[Range]:
    """Ranges the state file says are on disk ([] when there is no usable state yet)."""
    try:
        return [(int(s), int(e)) for s, e in json.loads(state.read_text())["ranges"]]
    except (OSError, ValueError, KeyError):
        return []


def _is_probe(start: int, end: int) -> bool:
    return start == 0 and end == 1


def test_download_killed_at_random_points_then_resumed(soak_seed: int) -> None:
    rng = random.Random(soak_seed)
    data = hashlib.shake_256(f"soak-{soak_seed}".encode()).digest(SIZE)
    sha = hashlib.sha256(data).hexdigest()
    cache = paths.cache_dir() / "downloads"
    part, state, final = cache / f"{NAME}.part", cache / f"{NAME}.part.json", cache / NAME
    kills = rng.randint(2, 4)
    # (ranges claimed finished at a kill, index of the first request answered after it)
    checkpoints: list[tuple[list[Range], int]] = []
    with seeded(soak_seed, "download kill/resume"), \
            LocalServer({NAME: data}, rate=RATE) as srv:
        srv.add_fault(NAME, Fault("drop", after=rng.randint(1, PIECE - 1), times=rng.randint(0, 3),
                                  min_offset=rng.randrange(0, SIZE // 2)))
        url = srv.url(NAME)
        finished_early = False
        for k in range(kills):
            proc = subprocess.Popen([sys.executable, "-c", CHILD, url, NAME, str(SIZE), sha,
                                     str(PIECE)], env=dict(os.environ))
            delay = rng.uniform(0.1, 1.2)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            rc = proc.wait(timeout=10)
            assert srv.wait_idle(), "server still busy after the child died"
            if rc == 0:  # finished before the kill landed: nothing left to resume
                assert final.read_bytes() == data
                finished_early = True
                break
            assert rc == -signal.SIGKILL, f"child {k} failed on its own (rc {rc})"
            claimed = _claimed(state)
            if claimed:
                on_disk = part.read_bytes()
                for s, e in claimed:
                    assert on_disk[s:e] == data[s:e], f"kill {k}: state claims {s}-{e} " \
                                                      "but the part file holds other bytes"
            if checkpoints:
                before = checkpoints[-1][0]
                assert covered(before + claimed) == covered(claimed), \
                    f"kill {k}: finished ranges were forgotten ({before} -> {claimed})"
            checkpoints.append((claimed, len(srv.served)))

        srv.rate = None
        last_run_from = len(srv.served)
        res = download(DownloadTarget(file_name=NAME, size=SIZE, sha256=sha),
                       [Candidate(url=url)],
                       options=DownloadOptions(piece_size=PIECE, backoff=0.01, backoff_max=0.05))
        assert srv.wait_idle()
        served = srv.served

    assert res.sha256 == sha
    assert hashlib.sha256(final.read_bytes()).hexdigest() == sha
    assert not part.exists() and not state.exists()
    for k, (claimed, first) in enumerate(checkpoints):
        for s in served[first:]:
            if _is_probe(s.start, s.end):
                continue
            got = (s.start, s.start + s.sent)
            twice = sum(overlap(got, r) for r in claimed)
            assert twice == 0, f"bytes {got} were fetched again although kill {k} had " \
                               f"them recorded as finished"
    last = [s for s in served[last_run_from:] if not _is_probe(s.start, s.end)]
    if finished_early:
        assert res.cached and not last
    else:
        have = covered(checkpoints[-1][0]) if checkpoints else 0
        assert sum(s.sent for s in last) == SIZE - have, \
            "the final run fetched more (or less) than what was missing"


CHILD_NO_HASH = """
import sys
from romkit.fetch.download import Candidate, DownloadOptions, DownloadTarget, download
download(DownloadTarget(file_name=sys.argv[2], key="SOAK_ADHOC"), [Candidate(url=sys.argv[1])],
         options=DownloadOptions(piece_size=int(sys.argv[3]), connections=2, backoff=0.01,
                                 backoff_max=0.05, state_interval=0.05))
"""


def test_file_changing_on_the_server_between_kills_is_never_spliced(soak_seed: int) -> None:
    """No published size or hash; the mirror publishes a new version of the file (same size)
    after a random kill, sometimes with ETag only, Last-Modified only or no validator. The
    file that finally lands is exactly one version (never old head + new tail), and the
    sha256 recorded as first-seen is that file's."""
    rng = random.Random(soak_seed)
    versions = [hashlib.shake_256(f"soak-v{i}-{soak_seed}".encode()).digest(SIZE)
                for i in range(3)]
    cache = paths.cache_dir() / "downloads"
    final = cache / NAME
    validators = rng.choice(["both", "etag", "last-modified", "none"])
    current = 0
    with seeded(soak_seed, f"download changed between kills ({validators})"), \
            LocalServer({NAME: versions[0]}, rate=RATE,
                        validators=validators) as srv:  # type: ignore[arg-type]
        url = srv.url(NAME)
        for k in range(rng.randint(2, 4)):
            proc = subprocess.Popen([sys.executable, "-c", CHILD_NO_HASH, url, NAME,
                                     str(PIECE)], env=dict(os.environ))
            try:
                proc.wait(timeout=rng.uniform(0.2, 1.2))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            rc = proc.wait(timeout=10)
            assert srv.wait_idle()
            assert rc in (0, -signal.SIGKILL), f"child {k} failed on its own (rc {rc})"
            # A kill can land after the download was renamed into place (a busy machine
            # delays the child's exit): then it finished too, and must be one whole version.
            if final.exists():
                assert final.read_bytes() == versions[current]
                final.unlink()  # download again, as after a `--force`
                (paths.data_dir() / "observed-hashes.json").unlink(missing_ok=True)
            if rng.random() < 0.6 and current + 1 < len(versions):
                current += 1
                srv.add(NAME, versions[current])
        srv.rate = None
        res = download(DownloadTarget(file_name=NAME, key="SOAK_ADHOC"), [Candidate(url=url)],
                       options=DownloadOptions(piece_size=PIECE, backoff=0.01,
                                               backoff_max=0.05))
    assert final.read_bytes() == versions[current], "the landed file mixes two versions"
    recorded = json.loads((paths.data_dir() / "observed-hashes.json").read_text())
    assert recorded["SOAK_ADHOC"]["sha256"] == res.sha256 == hashlib.sha256(
        versions[current]).hexdigest()
