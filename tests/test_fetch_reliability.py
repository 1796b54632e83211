"""Downloads that must not lose or mix data (issue 15, case 6), against the real 127.0.0.1
server of romkit.fetch.localserver: a file that changes on the server, a hash that differs
from the first one seen, sources without a size, a mirror dripping a byte at a time, a
symlink planted at the .part path, --force over a good cached archive."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fetch_testlib import firmware_files, make_zip

from romkit import paths
from romkit.errors import DiskError, DownloadError, IntegrityError
from romkit.fetch.download import Candidate, DownloadOptions, DownloadTarget, download
from romkit.fetch.localserver import Fault, LocalServer

PIECE = 64 * 1024
FAST = DownloadOptions(piece_size=PIECE, backoff=0.01, backoff_max=0.05, connections=2,
                       state_interval=0.05)


def _data(n: int, seed: int) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "little")).digest(n)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cache() -> Path:
    return paths.cache_dir() / "downloads"


def _recorded(key: str) -> str | None:
    store = paths.data_dir() / "observed-hashes.json"
    if not store.is_file():
        return None
    return json.loads(store.read_text()).get(key, {}).get("sha256")


def _interrupted_first_run(srv: LocalServer, name: str, target: DownloadTarget,
                           cut: int) -> None:
    """A first run that stops at `cut` (the mirror fails from there), leaving a .part whose
    state claims [0, cut)."""
    srv.add_fault(name, Fault("status", status=404, times=None, min_offset=cut))
    opts = FAST.model_copy(update={"connections": 1, "retries": 0})
    with pytest.raises(DownloadError):
        download(target, [Candidate(url=srv.url(name))], options=opts)
    state = json.loads((_cache() / f"{target.file_name}.part.json").read_text())
    assert state["ranges"] == [[0, cut]]
    srv.clear_faults()


# -- If-Range: a file changed on the server is never spliced -----------------------------------


@pytest.mark.parametrize("validators", ["etag", "last-modified", "none"])
def test_file_changed_between_runs_starts_over(validators: str) -> None:
    """Interrupted, the mirror then publishes another file of the same size: the resumed run
    must deliver the new file whole (not old head + new tail), and only that verified file's
    sha256 is recorded as the first-seen one."""
    old, new = _data(400_000, 1), _data(400_000, 2)
    target = DownloadTarget(file_name="fw.zip", key="ADHOC_1")  # no published size or hash
    with LocalServer({"fw.zip": old}, validators=validators) as srv:  # type: ignore[arg-type]
        _interrupted_first_run(srv, "fw.zip", target, cut=3 * PIECE)
        srv.add("fw.zip", new)
        events: list = []
        res = download(target, [Candidate(url=srv.url("fw.zip"))], options=FAST,
                       on_progress=events.append)
    assert res.path.read_bytes() == new
    assert _recorded("ADHOC_1") == _sha(new)
    assert any("starting over" in e.label for e in events)


def test_file_changed_during_the_download_restarts_cleanly() -> None:
    """The mirror swaps the file between two piece requests: If-Range makes it answer with
    the whole new file, and the download starts over instead of failing or mixing."""
    old, new = _data(600_000, 3), _data(600_000, 4)
    target = DownloadTarget(file_name="fw.zip", key="ADHOC_2")
    opts = FAST.model_copy(update={"connections": 1})
    with LocalServer({"fw.zip": old}) as srv:
        srv.add_fault("fw.zip", Fault("change", data=new, min_offset=4 * PIECE))
        events: list = []
        res = download(target, [Candidate(url=srv.url("fw.zip"))], options=opts,
                       on_progress=events.append)
        assert srv.wait_idle()
        restarts = [s for s in srv.served if s.start == 0 and s.end > 1 and s.ranged]
        whole = [s for s in srv.served if s.status == 200]
    assert res.path.read_bytes() == new
    assert _recorded("ADHOC_2") == _sha(new)
    assert any("changed on" in e.label for e in events if e.kind == "warning")
    assert len(restarts) == 2  # the first pass and the clean second one
    assert len(whole) == 1  # the If-Range answer: the new file, not a piece of it


def test_published_hash_resumes_across_mirrors_but_not_a_changed_file() -> None:
    """With a published sha256, a part may resume from any mirror (the hash check guards it);
    the same mirror with a new ETag still means start over rather than fetch a bad mix."""
    data = _data(400_000, 5)
    target = DownloadTarget(file_name="fw.7z", size=len(data), sha256=_sha(data))
    with LocalServer({"a.7z": data, "b.7z": data}) as srv:
        _interrupted_first_run(srv, "a.7z", target, cut=2 * PIECE)
        srv.reset_stats()
        res = download(target, [Candidate(url=srv.url("b.7z"))], options=FAST)
        assert srv.wait_idle()
        body = [s for s in srv.served if s.end > 1]
    assert res.path.read_bytes() == data
    assert sum(s.sent for s in body) == len(data) - 2 * PIECE


# -- trust on first use: a different hash is refused --------------------------------------------


def test_cli_refuses_a_hash_other_than_the_first_seen(tmp_path: Path,
                                                      fixtures_dir: Path) -> None:
    one = make_zip(tmp_path / "one.zip", firmware_files(fixtures_dir, seed=1)).read_bytes()
    two = make_zip(tmp_path / "two.zip", firmware_files(fixtures_dir, seed=2)).read_bytes()
    env = dict(os.environ)

    def fetch(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "romkit", "fetch", "MYROM", "--url",
                               srv.url("rom.zip"), "--dest", str(tmp_path / "d"), *extra],
                              capture_output=True, text=True, env=env, timeout=60)

    with LocalServer({"rom.zip": one}) as srv:
        first = fetch()
        assert first.returncode == 0, first.stderr
        srv.add("rom.zip", two)
        refused = fetch("--force")
        assert refused.returncode == 3, refused.stderr
        assert "error:" in refused.stderr and "differs from" in refused.stderr
        assert "hint:" in refused.stderr and "--accept-new-hash" in refused.stderr
        assert _recorded("MYROM") == _sha(one)
        assert (_cache() / "MYROM.zip").read_bytes() == one  # the good archive stays
        accepted = fetch("--force", "--accept-new-hash")
        assert accepted.returncode == 0, accepted.stderr
    assert _recorded("MYROM") == _sha(two)
    assert (_cache() / "MYROM.zip").read_bytes() == two


# -- every source is bounded --------------------------------------------------------------------


def _limit_file_size() -> None:  # pragma: no cover - runs in the child before exec
    limit = 64 * 1024 * 1024  # if the bound fails, the child dies instead of filling the disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_dev_zero_from_a_remote_catalog_index_stops(tmp_path: Path) -> None:
    """A remote index naming file:///dev/zero for a build without a size: refused at once,
    nothing written beyond the bound."""
    index = b"""schema = 1
[[build]]
id = "EVIL_S001_140101"
device = "lenovo-s820"
file_name = "evil.zip"
mirrors = ["file:///dev/zero"]
"""
    with LocalServer({"index.toml": index}) as srv:
        run = subprocess.run([sys.executable, "-m", "romkit", "fetch", "EVIL_S001_140101",
                              "--catalog", srv.url("index.toml"), "--max-size", "1M",
                              "--dest", str(tmp_path / "d")],
                             capture_output=True, text=True, env=dict(os.environ), timeout=60,
                             preexec_fn=_limit_file_size)
    assert run.returncode == 1, run.stderr
    assert "not a regular file" in run.stderr and "hint:" in run.stderr
    assert not (tmp_path / "d").exists()
    part = _cache() / "evil.zip.part"
    assert not part.exists() or part.stat().st_size <= 1024 * 1024


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_source_larger_than_max_size_is_refused(tmp_path: Path, scheme: str) -> None:
    data = _data(300_000, 6)
    src = tmp_path / "big.zip"
    src.write_bytes(data)
    target = DownloadTarget(file_name="big.zip")
    opts = FAST.model_copy(update={"max_size": 100_000})
    with LocalServer({"big.zip": data}, ranges=scheme == "file") as srv:
        url = src.as_uri() if scheme == "file" else srv.url("big.zip")
        with pytest.raises(DownloadError, match="max-size"):
            download(target, [Candidate(url=url)], options=opts)
        assert srv.wait_idle()
        sent = srv.bytes_served()
    part = _cache() / "big.zip.part"
    assert not (_cache() / "big.zip").exists()
    assert not part.exists() or part.stat().st_size <= 100_000
    assert sent <= 100_000 + 1 + 256 * 1024  # stopped within one read of the bound


# -- a mirror that drips ------------------------------------------------------------------------


def test_dripping_mirror_fails_over_within_the_low_speed_time() -> None:
    """A server sending one byte every 0.3 s never trips a read timeout; the speed floor
    moves to the next mirror, which resumes the pieces already done."""
    data = _data(512 * 1024, 7)
    target = DownloadTarget(file_name="fw.7z", size=len(data), sha256=_sha(data))
    opts = FAST.model_copy(update={"low_speed_limit": 4096, "low_speed_time": 1.0,
                                   "read_timeout": 30.0})
    box: dict[str, object] = {}
    with LocalServer({"slow.7z": data, "good.7z": data}) as srv:
        srv.add_fault("slow.7z", Fault("drip", after=1000, delay=0.3, times=None,
                                       min_offset=1))

        def run() -> None:
            box["result"] = download(target, [Candidate(url=srv.url("slow.7z")),
                                              Candidate(url=srv.url("good.7z"))],
                                     options=opts)

        t0 = time.monotonic()
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(timeout=20)
        took = time.monotonic() - t0
        assert not worker.is_alive(), "the dripping mirror was never given up"
    res = box["result"]
    assert res.path.read_bytes() == data  # type: ignore[attr-defined]
    assert [a.outcome for a in res.attempts] == ["failed", "ok"]  # type: ignore[attr-defined]
    assert "too slow" in res.attempts[0].detail  # type: ignore[attr-defined]
    assert took < 8


# -- the .part path -----------------------------------------------------------------------------


def test_symlink_at_the_part_path_is_refused(tmp_path: Path) -> None:
    data = _data(200_000, 8)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    cache = _cache()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "fw.7z.part").symlink_to(victim)
    target = DownloadTarget(file_name="fw.7z", size=len(data), sha256=_sha(data))
    with (LocalServer({"fw.7z": data}) as srv,
          pytest.raises(DiskError, match="symbolic link") as err):
        download(target, [Candidate(url=srv.url("fw.7z"))], options=FAST)
    assert err.value.hint
    assert victim.read_bytes() == b"precious"


# -- --force keeps the cached archive until the new one verifies -------------------------------


@pytest.mark.parametrize("fault", ["status", "corrupt"])
def test_force_keeps_the_good_archive_when_the_new_download_fails(fault: str) -> None:
    data = _data(300_000, 9)
    target = DownloadTarget(file_name="fw.7z", size=len(data), sha256=_sha(data))
    forced = FAST.model_copy(update={"force": True, "retries": 1})
    with LocalServer({"fw.7z": data}) as srv:
        download(target, [Candidate(url=srv.url("fw.7z"))], options=FAST)
        srv.add_fault("fw.7z", Fault(fault, status=500, times=None))  # type: ignore[arg-type]
        with pytest.raises(DownloadError):  # IntegrityError is a DownloadError too
            download(target, [Candidate(url=srv.url("fw.7z"))], options=forced)
    assert (_cache() / "fw.7z").read_bytes() == data


def test_force_replaces_the_archive_once_the_new_one_verifies() -> None:
    data = _data(300_000, 10)
    target = DownloadTarget(file_name="fw.7z", size=len(data), sha256=_sha(data))
    with LocalServer({"fw.7z": data}) as srv:
        download(target, [Candidate(url=srv.url("fw.7z"))], options=FAST)
        srv.reset_stats()
        again = download(target, [Candidate(url=srv.url("fw.7z"))],
                         options=FAST.model_copy(update={"force": True}))
        assert srv.wait_idle()
        assert srv.bytes_served() >= len(data)
    assert not again.cached and again.path.read_bytes() == data
    assert not (_cache() / "fw.7z.part").exists()


def test_integrity_error_is_exit_3() -> None:
    assert IntegrityError("x").exit_code == 3


# -- the retry policy and the per-file lock -----------------------------------------------------


def test_retry_after_is_honoured_and_the_budget_is_the_policy_s() -> None:
    """A 503 with Retry-After: 1 makes the next try wait about a second (not the 10 ms
    backoff); a mirror failing every time is given up after exactly `retries` retries."""
    data = _data(100_000, 11)
    target = DownloadTarget(file_name="fw.7z", size=len(data), sha256=_sha(data))
    with LocalServer({"fw.7z": data, "dead.7z": data}) as srv:
        srv.add_fault("fw.7z", Fault("status", status=503, retry_after=1, times=1))
        t0 = time.monotonic()
        res = download(target, [Candidate(url=srv.url("fw.7z"))], options=FAST)
        took = time.monotonic() - t0
        srv.add_fault("dead.7z", Fault("status", status=500, times=None))
        srv.reset_stats()
        opts = FAST.model_copy(update={"retries": 3, "max_size": 10**6})
        with pytest.raises(DownloadError, match="after 3 retries"):
            download(DownloadTarget(file_name="dead.7z"), [Candidate(url=srv.url("dead.7z"))],
                     options=opts)
        assert srv.wait_idle()
        asked = [s for s in srv.served if s.name == "dead.7z"]
    assert res.path.read_bytes() == data
    assert took >= 0.9
    assert len(asked) == 4  # the first try and 3 retries


def test_a_second_romkit_on_the_same_file_stops_at_once() -> None:
    import fcntl

    cache = _cache()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".fw.7z.lock").open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DownloadError, match="already downloading"):
            download(DownloadTarget(file_name="fw.7z"),
                     [Candidate(url="http://127.0.0.1:9/fw.7z")], options=FAST)
