"""bench/run_all.py: a partial run (--only, or benches it does not know) never drops what the
previous docs/PERFORMANCE.md held — the shipped report is the previous report here."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "bench" / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _headings(text: str) -> list[str]:
    inside = False
    found = []
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside and line.startswith("## "):
            found.append(line[3:])
    return found


def test_partial_run_keeps_every_other_section_verbatim() -> None:
    ra = _run_all()
    previous = (ROOT / "docs" / "PERFORMANCE.md").read_text(encoding="utf-8")
    bench = next(b for b in ra.BENCHES if b.name == "startup_bench")
    fresh = ra.Outcome(bench, "ok", ["python", "bench/startup_bench.py"], 1.0,
                       "NEW NUMBERS\nsummary: new figures\n", "")
    report = ra.render([fresh], [("CPU", "test")], False, dt.datetime.now(dt.UTC), 1.0)
    merged = ra.merge_kept(report, previous)

    assert _headings(merged)[:3] == ["Machine", "Summary", bench.title]
    assert sorted(_headings(merged)) == sorted(_headings(previous))
    assert "NEW NUMBERS" in merged and "summary: start-up worst" not in merged
    old_sections = previous.split("\n## ")
    for section in old_sections[1:]:
        title, _, body = section.partition("\n")
        if title in ("Machine", "Summary", bench.title):
            continue
        kept = merged.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
        assert kept.lstrip("\n").startswith(ra.KEPT_NOTE)
        assert kept.replace(ra.KEPT_NOTE, "").strip() == body.strip()
    summary = merged.split("\n## Summary\n", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in summary.splitlines() if ln.startswith("| ") and "Benchmark" not in ln]
    titles = [ln.split("|")[1].strip() for ln in rows]
    assert titles[0] == bench.title and len(titles) == len(set(titles))
    assert "Checksum throughput vs md5sum and cat" in titles  # an old row, kept
    # merging again marks nothing twice
    again = ra.merge_kept(report, merged)
    assert again.count(ra.KEPT_NOTE) == merged.count(ra.KEPT_NOTE)
    assert ra.merge_kept(report, None) == report
