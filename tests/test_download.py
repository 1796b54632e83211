"""The downloader against a real, fault-injecting HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from romkit import paths
from romkit.errors import DownloadError, IntegrityError
from romkit.fetch.download import (
    Candidate,
    DownloadOptions,
    DownloadTarget,
    download,
    import_file,
    plan,
)
from romkit.fetch.localserver import Fault, LocalServer

PIECE = 64 * 1024
FAST = DownloadOptions(piece_size=PIECE, backoff=0.01, backoff_max=0.05, connections=4,
                       state_interval=0.05)


def _data(n: int, seed: int = 7) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "little")).digest(n)


def _target(data: bytes, name: str = "fw.7z", **kw: object) -> DownloadTarget:
    return DownloadTarget(file_name=name, size=len(data),
                          sha256=hashlib.sha256(data).hexdigest(), **kw)


def _cache() -> Path:
    return paths.cache_dir() / "downloads"


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def test_segmented_download_fetches_each_byte_once() -> None:
    data = _data(1_000_000)
    with LocalServer({"fw.7z": data}) as srv:
        res = download(_target(data), [Candidate(url=srv.url("fw.7z"))], options=FAST)
        body = [s for s in srv.served if not (s.start == 0 and s.end == 1)]
    assert res.path.read_bytes() == data
    assert res.sha256 == hashlib.sha256(data).hexdigest()
    assert len(body) == -(-len(data) // PIECE)
    covered = sorted((s.start, s.start + s.sent) for s in body)
    assert covered[0][0] == 0 and covered[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:], strict=False))
    assert not list(_cache().glob("*.part*"))


def test_drops_and_500s_are_retried() -> None:
    data = _data(700_000)
    drop = Fault("drop", after=10_000, times=3, min_offset=1)
    unavailable = Fault("status", status=503, times=2, min_offset=1)
    with LocalServer({"fw.7z": data}) as srv:
        srv.add_fault("fw.7z", drop)
        srv.add_fault("fw.7z", unavailable)
        res = download(_target(data), [Candidate(url=srv.url("fw.7z"))], options=FAST)
        srv.wait_idle()
        served = srv.served
    assert hashlib.sha256(res.path.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert res.attempts[0].outcome == "ok"
    # The faults really fired: all uses spent, and the server log shows them.
    assert (drop.times, unavailable.times) == (0, 0)
    assert sum(s.status == 503 and s.sent == 0 for s in served) == 2
    assert sum(s.status == 206 and s.sent == 10_000 < s.end - s.start for s in served) == 3


def test_failover_on_http_error_wrong_size_and_bad_bytes() -> None:
    data = _data(300_000)
    events: list = []
    with LocalServer({"good.7z": data, "short.7z": data[:-1], "bad.7z": data}) as srv:
        srv.add_fault("bad.7z", Fault("corrupt", after=1000, times=None))
        cands = [Candidate(url=srv.url("missing.7z"), source="cli"),
                 Candidate(url=srv.url("short.7z"), source="user"),
                 Candidate(url=srv.url("bad.7z"), source="remote"),
                 Candidate(url=srv.url("good.7z"), source="builtin")]
        res = download(_target(data), cands, options=FAST, on_progress=events.append)
    assert res.path.read_bytes() == data
    outcomes = [(a.source, a.outcome) for a in res.attempts]
    assert outcomes == [("cli", "failed"), ("user", "failed"), ("remote", "failed"),
                        ("builtin", "ok")]
    assert "404" in res.attempts[0].detail
    assert "size" in res.attempts[1].detail
    assert "sha256" in res.attempts[2].detail
    assert sum(e.kind == "warning" for e in events) == 3


def test_all_bad_raises_integrity_and_keep_bad_quarantines() -> None:
    data = _data(200_000)
    with LocalServer({"fw.7z": data}) as srv:
        srv.add_fault("fw.7z", Fault("corrupt", after=0, times=None))
        with pytest.raises(IntegrityError) as info:
            download(_target(data), [Candidate(url=srv.url("fw.7z"))],
                     options=FAST.model_copy(update={"keep_bad": True}))
    assert "sha256" in info.value.message and info.value.hint
    assert not (_cache() / "fw.7z").exists()
    bad = list((_cache() / "quarantine").iterdir())
    assert len(bad) == 1
    flipped = bytes(b ^ 0xFF for b in data[:1000])
    assert bad[0].read_bytes()[1:1000] == flipped[1:1000]  # byte 0 came from the clean probe


def test_only_http_errors_raise_download_error() -> None:
    with LocalServer({}) as srv, pytest.raises(DownloadError) as info:
        download(DownloadTarget(file_name="x.7z"), [Candidate(url=srv.url("x.7z"))],
                 options=FAST)
    assert not isinstance(info.value, IntegrityError)
    with pytest.raises(DownloadError, match="no URL"):
        download(DownloadTarget(file_name="x.7z"), [], options=FAST)
    with pytest.raises(DownloadError, match="unsafe"):
        download(DownloadTarget(file_name="../x.7z"), [], options=FAST)


def test_no_range_server_falls_back_to_one_stream() -> None:
    data = _data(400_000)
    events: list = []
    drop = Fault("drop", after=50_000, times=1, min_offset=0)
    with LocalServer({"fw.7z": data}, ranges=False) as srv:
        srv.add_fault("fw.7z", drop)
        res = download(_target(data), [Candidate(url=srv.url("fw.7z"))], options=FAST,
                       on_progress=events.append)
        srv.wait_idle()
        served = srv.served
    assert all(not s.ranged for s in served)
    assert drop.times == 0
    assert [s.sent for s in served if s.sent < s.end - s.start] == [50_000]
    assert res.path.read_bytes() == data
    assert any("does not support ranges" in e.label for e in events)


def test_cache_is_reused_and_force_downloads_again() -> None:
    data = _data(150_000)
    with LocalServer({"fw.7z": data}) as srv:
        cand = [Candidate(url=srv.url("fw.7z"))]
        download(_target(data), cand, options=FAST)
        served = srv.bytes_served()
        again = download(_target(data), cand, options=FAST)
        assert again.cached and srv.bytes_served() == served
        forced = download(_target(data), cand, options=FAST.model_copy(update={"force": True}))
        assert not forced.cached and srv.bytes_served() >= served + len(data)
    (_cache() / "fw.7z").write_bytes(b"tampered")
    with LocalServer({"fw.7z": data}) as srv:
        fixed = download(_target(data), [Candidate(url=srv.url("fw.7z"))], options=FAST)
    assert fixed.path.read_bytes() == data and not fixed.cached


def test_unknown_hash_is_recorded_then_a_different_one_is_refused() -> None:
    """Trust on first use: the first verified sha256 is recorded; a later file with another
    one is refused (exit 3) - the cached archive stays - until the user accepts it."""
    first, second = _data(100_000, 1), _data(100_000, 2)
    target = DownloadTarget(file_name="fw.zip", key="S820_X")
    store = paths.data_dir() / "observed-hashes.json"
    with LocalServer({"a.zip": first, "b.zip": second}) as srv:
        res = download(target, [Candidate(url=srv.url("a.zip"))], options=FAST)
        assert res.hash_note and "recorded" in res.hash_note
        assert json.loads(store.read_text())["S820_X"]["sha256"] == (
            hashlib.sha256(first).hexdigest())
        forced = FAST.model_copy(update={"force": True})
        with pytest.raises(IntegrityError, match="differs from") as err:
            download(target, [Candidate(url=srv.url("b.zip"))], options=forced)
        assert err.value.exit_code == 3 and "--accept-new-hash" in (err.value.hint or "")
        # nothing recorded, and the verified old archive is still the cached one
        assert json.loads(store.read_text())["S820_X"]["sha256"] == (
            hashlib.sha256(first).hexdigest())
        assert (_cache() / "fw.zip").read_bytes() == first
        assert srv.wait_idle()
        served = srv.bytes_served("b.zip")
        accepted = download(target, [Candidate(url=srv.url("b.zip"))],
                            options=forced.model_copy(update={"accept_new_hash": True}))
        # the refused file was kept complete: accepting it fetches nothing again
        assert srv.wait_idle()
        assert srv.bytes_served("b.zip") - served <= 1
    assert accepted.path.read_bytes() == second
    doc = json.loads(store.read_text())["S820_X"]
    assert doc["sha256"] == hashlib.sha256(second).hexdigest()
    assert doc["replaces"] == hashlib.sha256(first).hexdigest()


def test_resume_from_another_mirror_skips_finished_ranges() -> None:
    data = _data(640_000)
    cut = 5 * PIECE
    opts = FAST.model_copy(update={"connections": 1, "retries": 1})
    with LocalServer({"a.7z": data, "b.7z": data}) as srv:
        srv.add_fault("a.7z", Fault("status", status=500, times=None, min_offset=cut))
        res = download(_target(data), [Candidate(url=srv.url("a.7z")),
                                       Candidate(url=srv.url("b.7z"))], options=opts)
        from_b = [s for s in srv.served if s.name == "b.7z" and s.end > 1]
    assert res.path.read_bytes() == data
    assert [a.outcome for a in res.attempts] == ["failed", "ok"]
    assert from_b and all(_overlap((s.start, s.start + s.sent), (0, cut)) == 0 for s in from_b)
    assert sum(s.sent for s in from_b) == len(data) - cut


KILL_SCRIPT = """
import sys
from romkit.fetch.download import Candidate, DownloadOptions, DownloadTarget, download
download(DownloadTarget(file_name="fw.7z", size=int(sys.argv[2]), sha256=sys.argv[3]),
         [Candidate(url=sys.argv[1])],
         options=DownloadOptions(piece_size=65536, connections=2, state_interval=0.05))
"""


def test_kill_9_then_resume_does_not_refetch(tmp_path: Path) -> None:
    data = _data(2_000_000)
    sha = hashlib.sha256(data).hexdigest()
    state = _cache() / "fw.7z.part.json"
    with LocalServer({"fw.7z": data}, rate=400_000) as srv:
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, srv.url("fw.7z"),
                                 str(len(data)), sha], env=dict(os.environ))
        deadline = time.monotonic() + 20
        recorded = 0
        while time.monotonic() < deadline and recorded < 500_000:
            time.sleep(0.05)
            try:
                recorded = sum(e - s for s, e in json.loads(state.read_text())["ranges"])
            except (OSError, ValueError, KeyError):
                recorded = 0
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert srv.wait_idle()
        assert recorded >= 500_000, "the child never recorded progress"
        done = [tuple(r) for r in json.loads(state.read_text())["ranges"]]
        have = sum(e - s for s, e in done)
        assert have < len(data)
        assert plan(_target(data), []).partial_bytes == have
        srv.rate = None
        srv.reset_stats()
        res = download(_target(data), [Candidate(url=srv.url("fw.7z"))], options=FAST)
        body = [s for s in srv.served if not (s.start == 0 and s.end == 1)]
    assert res.path.read_bytes() == data
    assert all(_overlap((s.start, s.start + s.sent), r) == 0 for s in body for r in done)
    assert sum(s.sent for s in body) == len(data) - have


def test_file_url_mirror_and_import(tmp_path: Path) -> None:
    data = _data(120_000)
    src = tmp_path / "fw.7z"
    src.write_bytes(data)
    res = download(_target(data), [Candidate(url=src.as_uri(), source="user")], options=FAST)
    assert res.path.read_bytes() == data
    imported = import_file(src, _target(data))
    assert imported.sha256 == hashlib.sha256(data).hexdigest() and imported.path == src
    wrong = DownloadTarget(file_name="fw.7z", sha256="0" * 64)
    with pytest.raises(IntegrityError):
        import_file(src, wrong)
    assert src.read_bytes() == data  # the user's file is never touched


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(
    st.binary(max_size=200),
    st.fixed_dictionaries({
        "version": st.sampled_from([1, 2, "1"]),
        "size": st.sampled_from([200_000, 5, -1, "x"]),
        "sha256": st.none(),
        "ranges": st.lists(st.tuples(st.integers(-5, 250_000), st.integers(-5, 250_000)),
                           max_size=5)}).map(lambda d: json.dumps(d).encode())))
def test_garbage_state_file_never_breaks_the_result(doc: bytes) -> None:
    """A state file claiming bytes that are not there costs a re-download, never bad data."""
    data = _data(200_000, 3)
    cache = _cache()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "fw.7z").unlink(missing_ok=True)
    (cache / "fw.7z.part").write_bytes(bytes(len(data)))
    (cache / "fw.7z.part.json").write_bytes(doc)
    with LocalServer({"fw.7z": data}) as srv:
        res = download(_target(data), [Candidate(url=srv.url("fw.7z"))], options=FAST)
    assert res.path.read_bytes() == data


def test_lying_state_file_costs_one_clean_retry() -> None:
    data = _data(300_000, 4)
    cache = _cache()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "fw.7z.part").write_bytes(bytes(len(data)))
    (cache / "fw.7z.part.json").write_text(json.dumps(
        {"version": 1, "size": len(data), "sha256": None, "ranges": [[0, 2 * PIECE]]}))
    events: list = []
    with LocalServer({"fw.7z": data}) as srv:
        res = download(_target(data), [Candidate(url=srv.url("fw.7z"))],
                       options=FAST.model_copy(update={"debug": True}),
                       on_progress=events.append)
    assert res.path.read_bytes() == data
    assert any("after resuming" in e.label for e in events if e.kind == "warning")
    assert any(e.data.get("conn") is not None for e in events if e.kind == "info")
