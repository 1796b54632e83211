"""Remote catalog index over a real http.server on 127.0.0.1: fetch, cache, fall back."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from romkit.catalog import Catalog, CatalogConflictError, CatalogFormatError
from romkit.errors import UsageError
from romkit.progress import ProgressEvent

INDEX_TOML = """
schema = 1
[[build]]
id = "S124"
mirrors = [{ url = "https://shop.example/S820_ROW_S124_140404.7z", label = "shop" }]

[[build]]
id = "SHOP_S820_CUSTOM_1"
device = "S820"
region = "ROW"
"""
INDEX_JSON = json.dumps({"build": [{"id": "S124", "mirrors": ["https://json.example/a.7z"]}]})


@dataclass
class Site:
    routes: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    base: str = ""


@pytest.fixture
def site() -> Iterator[Site]:
    state = Site()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            state.hits.append(self.path)
            status, ctype, body = state.routes.get(self.path, (404, "text/plain", b"missing"))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_remote_toml_index_adds_build_and_mirror(site: Site) -> None:
    site.routes["/index"] = (200, "application/toml", INDEX_TOML.encode())
    events: list[ProgressEvent] = []
    cat = Catalog.load(site.base + "/index", on_progress=events.append)
    s124 = cat.resolve("S820_ROW_S124")
    assert [(m.url, m.source, m.label) for m in s124.mirrors] == [
        ("https://shop.example/S820_ROW_S124_140404.7z", "remote", "shop")]
    assert cat.resolve("SHOP_S820_CUSTOM_1").device == "lenovo-s820"
    assert site.hits == ["/index"]
    assert not any(e.kind == "warning" for e in events)


def test_env_variable_and_json_index(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.routes["/catalog.json"] = (200, "application/json", INDEX_JSON.encode())
    monkeypatch.setenv("ROMKIT_CATALOG_URL", site.base + "/catalog.json")
    cat = Catalog.load()
    assert [m.url for m in cat.resolve("S124").mirrors] == ["https://json.example/a.7z"]


def test_fetch_failure_falls_back_to_cached_copy(site: Site) -> None:
    url = site.base + "/index"
    site.routes["/index"] = (200, "text/plain", INDEX_TOML.encode())
    Catalog.load(url)
    site.routes["/index"] = (503, "text/plain", b"down for maintenance")
    events: list[ProgressEvent] = []
    cat = Catalog.load(url, on_progress=events.append)
    assert cat.resolve("SHOP_S820_CUSTOM_1").region == "ROW"
    warnings = [e.label for e in events if e.kind == "warning"]
    assert len(warnings) == 1 and "HTTP 503" in warnings[0] and "cached copy" in warnings[0]


def test_malformed_index_falls_back_to_cache_or_fails(site: Site) -> None:
    url = site.base + "/index"
    site.routes["/index"] = (200, "text/plain", b"[[build]]\nid = 'BROKEN'\nsize = -1\n")
    with pytest.raises(CatalogFormatError, match="BROKEN"):
        Catalog.load(url)  # nothing cached yet: the error is the user's to see
    site.routes["/index"] = (200, "text/plain", INDEX_TOML.encode())
    Catalog.load(url)
    site.routes["/index"] = (200, "text/plain", b"\x00garbage")
    events: list[ProgressEvent] = []
    cat = Catalog.load(url, on_progress=events.append)
    assert cat.resolve("SHOP_S820_CUSTOM_1")
    assert any(e.kind == "warning" and "malformed" in e.label for e in events)


def test_unreachable_index_without_cache_warns_and_goes_on(site: Site) -> None:
    dead = site.base.rsplit(":", 1)[0] + ":9"  # discard port: connection refused
    events: list[ProgressEvent] = []
    cat = Catalog.load(dead + "/index", on_progress=events.append)
    assert cat.resolve("S124").mirrors == []
    assert any(e.kind == "warning" and "no cached copy" in e.label for e in events)


def test_conflicting_remote_index_is_an_error(site: Site) -> None:
    site.routes["/index"] = (200, "text/plain", b'[[build]]\nid = "S124"\nandroid = "5.0"\n')
    with pytest.raises(CatalogConflictError, match=r"android.*lenovo-s820\.toml"):
        Catalog.load(site.base + "/index")


def test_remote_url_must_be_http() -> None:
    with pytest.raises(UsageError):
        Catalog.load("ftp://example.com/index.toml")
