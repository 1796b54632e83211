"""User catalog files, mirror lists, merge rules and the errors for malformed files."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from romkit import paths
from romkit.catalog import (
    Build,
    Catalog,
    CatalogConflictError,
    CatalogFormatError,
    Resource,
    add_user_mirror,
    builtin_documents,
    import_catalog_file,
    parse_catalog_document,
    user_catalog_dir,
    user_mirrors_path,
)
from romkit.errors import CatalogError, RomkitError, UsageError

DEMO_BYTES = b"synthetic demo firmware archive\n" * 64
DEMO_SHA256 = hashlib.sha256(DEMO_BYTES).hexdigest()
DEMO_MD5 = hashlib.md5(DEMO_BYTES).hexdigest()

DEMO_CATALOG = f"""
schema = 1

[[device]]
id = "demo-s820"
names = ["Demo S820"]
soc = "MT6589"
hw_code = 0x6583
storage = "eMMC"
usb_ids = [{{ vid = 0x0E8D, pid = 0x0003, mode = "BROM" }}]

[device.memory_by_year.2014]
preloader = "DEMO_PRELOADER_2014"

[[build]]
id = "DEMO_S820_ROW_S124"
aliases = ["DEMO_S124"]
device = "demo-s820"
region = "ROW"
kind = "full"
android = "4.2.1"
file_name = "DEMO_S820_ROW_S124.zip"
size = {len(DEMO_BYTES)}
hashes = {{ sha256 = "{DEMO_SHA256.upper()}", md5 = "{DEMO_MD5}" }}
mirrors = ["http://127.0.0.1:8765/DEMO_S820_ROW_S124.zip",
           {{ url = "file:///tmp/demo/DEMO_S820_ROW_S124.zip", label = "local" }}]
scatter = "target_bin/MT6589_Android_scatter_emmc.txt"
sources = [{{ about = "everything", ref = "synthetic demo", confidence = "verified" }}]

[[resource]]
id = "DEMO_PRELOADER_2014"
device = "Demo S820"
kind = "preloader"
device_years = [2014]
file_name = "preloader_demo.bin"
size = 1024
hashes = {{ sha256 = "{"ab" * 32}" }}
mirrors = ["http://127.0.0.1:8765/preloader_demo.bin"]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_with(*texts: str) -> Catalog:
    docs = builtin_documents()
    docs += [parse_catalog_document(t, f"extra{i}.toml", "user") for i, t in enumerate(texts)]
    return Catalog.from_documents(docs)


# -- a whole new device + build + resource (what the demo does) ----------------------------------


def test_import_new_device_build_and_resource(tmp_path: Path) -> None:
    src = write(tmp_path / "demo.toml", DEMO_CATALOG)
    result = import_catalog_file(src)
    target = user_catalog_dir() / "demo.toml"
    assert target.read_bytes() == src.read_bytes()
    assert result.added["build"] == ["DEMO_S820_ROW_S124"]
    assert result.added["device"] == ["demo-s820"]
    assert result.added["resource"] == ["DEMO_PRELOADER_2014"]
    assert not result.replaced

    cat = Catalog.load()
    b = cat.resolve("demo_s124", kind="build")
    assert isinstance(b, Build)
    assert b.hashes.sha256 == DEMO_SHA256 and b.hashes.md5 == DEMO_MD5
    assert b.size == len(DEMO_BYTES)
    assert [m.url for m in b.mirrors] == ["http://127.0.0.1:8765/DEMO_S820_ROW_S124.zip",
                                          "file:///tmp/demo/DEMO_S820_ROW_S124.zip"]
    assert {m.source for m in b.mirrors} == {"user"}
    pre = cat.resource_for("Demo S820", "preloader", 2014)
    assert isinstance(pre, Resource) and pre.device == "demo-s820"
    # the built-in catalog is untouched
    assert cat.resolve("S124").id == "S820_ROW_S124_140404"


def test_import_dry_run_writes_nothing(tmp_path: Path) -> None:
    src = write(tmp_path / "demo.toml", DEMO_CATALOG)
    result = import_catalog_file(src, dry_run=True)
    assert result.dry_run and result.added["build"] == ["DEMO_S820_ROW_S124"]
    assert not (user_catalog_dir() / "demo.toml").exists()
    with pytest.raises(CatalogError):
        Catalog.load().resolve("DEMO_S124")


def test_reimport_replaces_the_earlier_copy(tmp_path: Path) -> None:
    src = write(tmp_path / "demo.toml", DEMO_CATALOG)
    import_catalog_file(src)
    write(src, DEMO_CATALOG.replace('aliases = ["DEMO_S124"]', 'aliases = ["DEMO_S124", "D124"]'))
    result = import_catalog_file(src)  # not a duplicate of itself
    assert result.replaced
    assert Catalog.load().resolve("d124").id == "DEMO_S820_ROW_S124"


def test_import_refuses_bad_files_and_copies_nothing(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", DEMO_CATALOG.replace('region = "ROW"', 'region = "EU"'))
    with pytest.raises(CatalogFormatError) as err:
        import_catalog_file(bad)
    assert "bad.toml" in err.value.message and "region" in err.value.message
    assert err.value.exit_code == 3
    assert not user_catalog_dir().exists() or not any(user_catalog_dir().iterdir())
    with pytest.raises(UsageError):
        import_catalog_file(write(tmp_path / "demo.txt", DEMO_CATALOG))
    with pytest.raises(UsageError):
        import_catalog_file(tmp_path / "missing.toml")
    with pytest.raises(CatalogFormatError, match="holds no"):
        import_catalog_file(write(tmp_path / "empty.toml", "schema = 1\n"))


def test_json_catalog_file_is_accepted(tmp_path: Path) -> None:
    doc = tomllib.loads(DEMO_CATALOG)
    src = write(tmp_path / "demo.json", json.dumps(doc, default=str))
    import_catalog_file(src)
    assert Catalog.load().resolve("DEMO_S124").hashes.sha256 == DEMO_SHA256


# -- merge rules ---------------------------------------------------------------------------------


def test_user_file_adds_mirror_and_hash_to_builtin_build() -> None:
    sha = "0f" * 32
    cat = load_with(f"""
[[build]]
id = "S820_ROW_S124"
hashes = {{ sha256 = "{sha}" }}
size = 745537000
mirrors = ["https://shop.example/S124.7z"]
""")
    b = cat.resolve("S124")
    assert b.hashes.sha256 == sha and b.size == 745537000
    assert [m.url for m in b.mirrors] == ["https://shop.example/S124.7z"]
    assert b.android == "4.2.1"  # untouched facts stay
    assert cat.origins(b)[-1] == "extra0.toml"


def test_conflicting_hash_names_both_files() -> None:
    first = '[[build]]\nid = "S820_ROW_S124_140404"\nhashes = { md5 = "' + "1" * 32 + '" }\n'
    second = '\n[[build]]\nid = "S124"\nhashes = { md5 = "' + "2" * 32 + '" }\n'
    with pytest.raises(CatalogConflictError) as err:
        load_with(first, second)
    assert "extra0.toml" in err.value.message and "extra1.toml:3" in err.value.message
    assert "hashes.md5" in err.value.message
    # the same hash again is fine (equal facts are no conflict)
    load_with(first, first.replace('"S820_ROW_S124_140404"', '"S124"'))


def test_known_facts_cannot_be_changed() -> None:
    with pytest.raises(CatalogConflictError) as err:
        load_with('[[build]]\nid = "S124"\nandroid = "4.4.2"\n')
    assert "lenovo-s820.toml" in err.value.message and "android" in err.value.message
    with pytest.raises(CatalogConflictError):
        load_with('[[device]]\nid = "S820"\nhw_code = 0x6589\n')
    with pytest.raises(CatalogConflictError, match=r"memory_by_year\.2014"):
        load_with('[[device]]\nid = "S820"\n[device.memory_by_year.2014]\nparts = ["X"]\n')
    # filling an unknown fact and adding a year/name is allowed
    cat = load_with('[[device]]\nid = "S820"\nnames = ["Lenovo IdeaPhone S820"]\n'
                    '[device.memory_by_year.2015]\nnotes = ["n"]\n'
                    '\n[[build]]\nid = "S119"\nandroid = "4.2.1"\n')
    assert cat.device("lenovo ideaphone s820").memory_by_year[2015].notes == ["n"]
    assert cat.resolve("S119").android == "4.2.1"


def test_mirror_order_user_then_remote_then_builtin() -> None:
    builtin = parse_catalog_document(DEMO_CATALOG, "shipped.toml", "builtin")
    remote = parse_catalog_document(
        '[[build]]\nid = "DEMO_S124"\nmirrors = ["https://remote.example/a.zip"]\n',
        "https://index.example/catalog.toml", "remote")
    user_file = parse_catalog_document(
        '[[build]]\nid = "DEMO_S124"\nmirrors = ["https://user.example/a.zip"]\n',
        "mine.toml", "user")
    user_list = parse_catalog_document(
        '[[mirror]]\nid = "DEMO_S124"\nurl = "https://list.example/a.zip"\n',
        "mirrors.toml", "user")
    cat = Catalog.from_documents([*builtin_documents(), builtin, remote, user_file, user_list])
    mirrors = cat.resolve("DEMO_S124").mirrors
    assert [(m.source, m.url.split("/")[2]) for m in mirrors] == [
        ("user", "user.example"), ("user", "list.example"), ("remote", "remote.example"),
        ("builtin", "127.0.0.1:8765"), ("builtin", "")]


# -- malformed files -----------------------------------------------------------------------------

BAD_FILES = {
    "bad toml": ('[[build]]\nid = "X1"\ndevice = "S820"\nsize = = 3\n', r"bad\.toml.*line 4"),
    "unknown field": ('[[build]]\nid = "X1"\ndevice = "S820"\ncolour = "red"\n',
                      r"bad\.toml:2: build X1: colour: unknown field"),
    "duplicate id": ('[[build]]\nid = "X1"\ndevice = "S820"\n\n[[build]]\nid = "x1"\n'
                     'device = "S820"\n', r"bad\.toml:6: duplicate build id"),
    "duplicate alias": ('[[build]]\nid = "X1"\ndevice = "S820"\naliases = ["S124"]\n',
                        r"'S124' is used by both S820_ROW_S124_140404 .*lenovo-s820\.toml.*X1 "
                        r"\(.*bad\.toml\)"),
    "short hash": ('[[build]]\nid = "X1"\ndevice = "S820"\nhashes = { sha256 = "abc" }\n',
                   r"bad\.toml:2: build X1: hashes\.sha256: must be 64 hex digits"),
    "non-hex hash": ('[[build]]\nid = "X1"\ndevice = "S820"\nhashes = { md5 = "'
                     + "z" * 32 + '" }\n', r"hashes\.md5: must be 32 hex digits"),
    "unknown device": ('[[build]]\nid = "X1"\ndevice = "S999"\n', r"device 'S999' is not defined"),
    "missing device": ('[[build]]\nid = "X1"\n', r"device: required field is missing"),
    "bad date": ('[[build]]\nid = "X_140404"\ndevice = "S820"\ndate = 2014-05-04\n',
                 r"disagrees with the name suffix"),
    "bad url": ('[[build]]\nid = "X1"\ndevice = "S820"\nmirrors = ["ftp://a/b"]\n',
                r"mirrors\[0\]\.url: must start with http"),
    "absurd size": ('[[build]]\nid = "X1"\ndevice = "S820"\nsize = 99999999999999999\n',
                    r"size"),
    "bad section": ('[[firmware]]\nid = "X1"\n', r"unknown top-level key 'firmware'"),
    "not a table": ('build = 3\n', r"`build` must be an array of tables"),
    "no id": ('[[build]]\ndevice = "S820"\n', r"build #1: missing string `id`"),
    "bad id": ('[[build]]\nid = "../etc"\ndevice = "S820"\n', r"id: must be"),
    "schema": ('schema = 2\n', r"schema = 2 is not supported"),
    "dangling preloader": ('[[device]]\nid = "d1"\n[device.memory_by_year.2014]\n'
                           'preloader = "S124"\n', r"not a preloader resource"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_files_are_rejected_with_file_and_field(tmp_path: Path, case: str) -> None:
    text, pattern = BAD_FILES[case]
    bad = write(tmp_path / "bad.toml", text)
    with pytest.raises(CatalogFormatError, match=pattern) as err:
        import_catalog_file(bad, dry_run=True)
    assert err.value.exit_code == 3 and err.value.hint


def test_broken_user_file_is_reported_by_load(romkit_home: Path) -> None:
    write(user_catalog_dir() / "hand-edited.toml", '[[build]]\nid = "X1"\ndevice = "S820"\n'
          'hashes = { sha256 = "12" }\n')
    with pytest.raises(CatalogFormatError, match=r"hand-edited\.toml:2"):
        Catalog.load()


def test_non_utf8_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogFormatError, match="not UTF-8"):
        parse_catalog_document(b"\xff\xfe[[build]]", "x.toml")
    big = write(tmp_path / "big.toml", "# " + "x" * (9 * 1024 * 1024))
    with pytest.raises(CatalogFormatError, match="too large"):
        import_catalog_file(big)


# -- user mirrors --------------------------------------------------------------------------------


def test_add_user_mirror_then_show_reflects_it() -> None:
    res = add_user_mirror("s124", "https://mirror.example/S820_ROW_S124_140404.7z", "shop")
    assert res.added and res.id == "S820_ROW_S124_140404"
    stored = tomllib.loads(user_mirrors_path().read_text(encoding="utf-8"))
    assert stored["mirror"] == [{"id": "S820_ROW_S124_140404",
                                 "url": "https://mirror.example/S820_ROW_S124_140404.7z",
                                 "label": "shop"}]
    second = add_user_mirror("S124", "http://other.example/a.7z")
    assert second.added
    again = add_user_mirror("S820_ROW_S124", "http://other.example/a.7z")
    assert not again.added
    mirrors = Catalog.load().resolve("S124").mirrors
    assert [m.url for m in mirrors] == ["https://mirror.example/S820_ROW_S124_140404.7z",
                                        "http://other.example/a.7z"]
    assert mirrors[0].label == "shop" and mirrors[0].source == "user"


def test_add_user_mirror_dry_run_and_errors() -> None:
    res = add_user_mirror("preloader-2014", "https://x.example/p.bin", dry_run=True)
    assert res.added and res.dry_run and res.entry_type == "resource"
    assert not user_mirrors_path().exists()
    with pytest.raises(UsageError, match="url"):
        add_user_mirror("S124", "not a url")
    with pytest.raises(CatalogError, match="did you mean"):
        add_user_mirror("S1244", "https://x.example/a")
    label = 'odd "label" \\ with\ttab'
    add_user_mirror("S124", "https://x.example/a", label)
    assert Catalog.load().resolve("S124").mirrors[0].label == label


def test_mirror_list_for_unknown_id_warns_and_is_skipped() -> None:
    write(user_mirrors_path(), '[[mirror]]\nid = "GONE"\nurl = "https://x.example/g"\n')
    events = []
    cat = Catalog.load(on_progress=events.append)
    assert any(e.kind == "warning" and "GONE" in e.label for e in events)
    assert cat.resolve("S124").mirrors == []
    write(user_mirrors_path(), '[[build]]\nid = "S124"\n')
    with pytest.raises(CatalogFormatError, match="only hold"):
        Catalog.load()


def test_config_dir_is_under_romkit_home(romkit_home: Path) -> None:
    assert user_catalog_dir().is_relative_to(romkit_home)
    assert paths.config_dir() == romkit_home / "config"


# -- hostile input -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=4),
    max_leaves=12,
)
FIELDS = ["id", "device", "aliases", "hashes", "size", "mirrors", "date", "region", "kind",
          "languages", "upgrade_path", "memory_by_year", "usb_ids", "hw_code", "sources",
          "device_years", "file_name", "scatter", "names", "url"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_raise_only_catalog_errors(data: bytes) -> None:
    try:
        doc = parse_catalog_document(data, "fuzz.toml")
        Catalog.from_documents([*builtin_documents(), doc])
    except RomkitError as exc:
        assert isinstance(exc, CatalogError)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["device", "build", "resource", "mirror"]),
       st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
       st.sampled_from(["S124", "NEW_ONE", "lenovo-s820", "preloader-2014"]))
def test_arbitrary_entries_raise_only_catalog_errors(section: str, entry: dict[str, object],
                                                     entry_id: str) -> None:
    entry = {"id": entry_id, **{k: v for k, v in entry.items() if k != "id"}}
    text = json.dumps({section: [entry]})
    try:
        doc = parse_catalog_document(text, "fuzz.json")
        Catalog.from_documents([*builtin_documents(), doc])
    except RomkitError as exc:
        assert isinstance(exc, CatalogError)
