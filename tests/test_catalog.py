"""The shipped catalog: valid, complete for the known builds, and honest about unknowns."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path

import pytest

from romkit import paths
from romkit.catalog import Build, Catalog, CatalogFormatError, Resource, date_from_name
from romkit.errors import CatalogError, UsageError

SHIPPED = paths.builtin_catalog_dir() / "lenovo-s820.toml"
EXPECTED_BUILDS = {
    "S820_ROW_S119_130922", "S820_ROW_S124_140404", "S820_ROW_S220_140722",
    "S820_ROW_S221_140730", "S820_ROW_8G_S222_141121", "S820_ROW_S223_150119",
    "VIBEUI_V2.0_1443_ST_S820", "VIBEROM_V1.0_1340_3_ST_820",
}
S124_LANGUAGES = ["Russian", "Ukrainian", "English", "Arabic", "Spanish", "French", "Chinese",
                  "Vietnamese", "Indonesian", "Malaysian", "Thai"]


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return Catalog.from_files([SHIPPED])


def test_shipped_catalog_validates_and_holds_every_build(shipped: Catalog) -> None:
    assert {b.id for b in shipped.builds} == EXPECTED_BUILDS
    assert {r.id for r in shipped.resources} == {
        "preloader-2014", "modem-v51", "sp-flash-tool-v3.1316", "mtk-usb-vcom-driver"}
    # Catalog.load() (the built-in folder, no user files yet) sees the same file.
    assert {b.id for b in Catalog.load().builds} == EXPECTED_BUILDS


def test_device_facts(shipped: Catalog) -> None:
    dev = shipped.device("S820")
    assert dev is shipped.device("lenovo-s820") is shipped.device("lenovo s820")
    assert (dev.soc, dev.hw_code, dev.storage) == ("MT6589", 0x6583, "eMMC")
    assert {(u.vid, u.pid) for u in dev.usb_ids} >= {(0x0E8D, 0x0003), (0x0E8D, 0x2000)}
    assert dev.memory_by_year[2014].preloader == "preloader-2014"
    assert dev.memory_by_year[2013].preloader is None


def test_s124_facts_match_the_issue(shipped: Catalog) -> None:
    b = shipped.resolve("S820_ROW_S124")
    assert isinstance(b, Build)
    assert b.id == "S820_ROW_S124_140404"
    assert b.date == dt.date(2014, 4, 4)
    assert (b.android, b.android_codename, b.kind, b.region) == ("4.2.1", "Jelly Bean", "full",
                                                                 "ROW")
    assert b.languages == S124_LANGUAGES
    assert b.google_play is True and b.rooted is False
    assert b.scatter == "target_bin/MT6589_Android_scatter_emmc.txt"
    assert b.size_text == "711 MB"
    assert b.size is None  # the exact byte count is unknown: never invented
    assert b.upgrade_path and b.upgrade_path[0].kind == "ota"
    assert b.mirrors == []


def test_nothing_invented(shipped: Catalog) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    assert "://" not in text  # no URLs are known
    raw = tomllib.loads(text)
    for entry in raw["build"] + raw["resource"]:
        assert entry.get("mirrors", []) == []
        assert "hashes" not in entry and "size" not in entry and "file_name" not in entry
        assert entry.get("sources"), f"{entry['id']} has no sources"
    # Only S124 and S222 have a stated Android version; the rest stay unknown.
    with_android = {b.id for b in shipped.builds if b.android}
    assert with_android == {"S820_ROW_S124_140404", "S820_ROW_8G_S222_141121"}


def test_dates_come_from_the_name_suffix(shipped: Catalog) -> None:
    for b in shipped.builds:
        m = re.search(r"_(\d\d)(\d\d)(\d\d)$", b.id)
        if m:
            assert b.date == dt.date(2000 + int(m[1]), int(m[2]), int(m[3])), b.id
        else:
            assert b.date is None, b.id  # VIBE names carry no _YYMMDD date
    assert date_from_name("S820_ROW_S223_150119") == dt.date(2015, 1, 19)
    assert date_from_name("VIBEUI_V2.0_1443_ST_S820") is None
    assert date_from_name("X_991399") is None


def test_other_build_facts(shipped: Catalog) -> None:
    s220 = shipped.resolve("S220")
    assert isinstance(s220, Build) and s220.problem_years == [2014]
    assert any("2014" in n and "problematic" in n for n in s220.notes)
    s222 = shipped.resolve("S222")
    assert isinstance(s222, Build)
    assert (s222.android, s222.android_codename, s222.storage_variants) == ("4.4.2", "KitKat",
                                                                            ["8GB"])
    for name in ("VIBEUI_V2.0_1443_ST_S820", "VIBEROM_V1.0_1340_3_ST_820"):
        cn = shipped.resolve(name)
        assert isinstance(cn, Build) and cn.region == "CN" and cn.google_play is False
        assert any("modem" in n for n in cn.notes)


def test_resolution_rules(shipped: Catalog) -> None:
    assert shipped.resolve("s124").id == "S820_ROW_S124_140404"
    assert shipped.resolve("  s820_row_s124_140404 ").id == "S820_ROW_S124_140404"
    with pytest.raises(CatalogError) as amb:
        shipped.resolve("S22")
    assert sorted(amb.value.details["candidates"]) == [
        "S820_ROW_8G_S222_141121", "S820_ROW_S220_140722", "S820_ROW_S221_140730",
        "S820_ROW_S223_150119"]
    assert "ambiguous" in amb.value.message
    with pytest.raises(CatalogError) as near:
        shipped.resolve("S820_ROW_S124_140405")
    assert "did you mean" in near.value.message and "S820_ROW_S124_140404" in near.value.message
    with pytest.raises(CatalogError, match="unknown"):
        shipped.resolve("nothing-like-this")
    with pytest.raises(CatalogError, match="is a resource"):
        shipped.resolve("preloader-2014", kind="build")
    assert isinstance(shipped.resolve("preloader_2014", kind="resource"), Resource)


def test_resource_for_years(shipped: Catalog) -> None:
    pre = shipped.resource_for("S820", "preloader", 2014)
    assert pre is not None and pre.id == "preloader-2014"
    assert shipped.resource_for("S820", "preloader", 2013) is None
    assert shipped.resource_for("S820", "preloader") is None
    modem = shipped.resource_for("lenovo-s820", "modem", 2014)
    assert modem is not None and modem.id == "modem-v51"
    driver = shipped.resource_for("lenovo-s820", "driver")
    assert driver is not None and driver.platform == "Windows"
    with pytest.raises(CatalogError, match="unknown device"):
        shipped.resource_for("S8200", "modem")


def test_search_and_select(shipped: Catalog) -> None:
    assert [e.id for e in shipped.search("thai")] == ["S820_ROW_S124_140404"]
    assert {e.id for e in shipped.search("jelly bean")} == {"S820_ROW_S124_140404",
                                                        "S820_ROW_S119_130922"}  # note: inferred
    assert {e.id for e in shipped.search("4.2.1 russian")} == {"S820_ROW_S124_140404"}
    assert {e.id for e in shipped.search("google")} >= {"VIBEUI_V2.0_1443_ST_S820"}
    assert [e.id for e in shipped.search("windows driver")] == ["mtk-usb-vcom-driver"]
    assert shipped.search("no-such-word-anywhere") == []
    cn = shipped.select(region="cn")
    assert {e.id for e in cn} == {"VIBEUI_V2.0_1443_ST_S820", "VIBEROM_V1.0_1340_3_ST_820"}
    assert [e.id for e in shipped.select(kind="preloader")] == ["preloader-2014"]
    assert [e.id for e in shipped.select(kind="full")] == ["S820_ROW_S124_140404"]
    assert len(shipped.select(device="S820", kind="build")) == len(EXPECTED_BUILDS)
    with pytest.raises(UsageError):
        shipped.select(region="EU")
    with pytest.raises(UsageError):
        shipped.select(kind="firmware")


def test_origins_name_the_file(shipped: Catalog) -> None:
    assert shipped.origins(shipped.resolve("S124")) == [str(SHIPPED)]


def test_builtin_folder_with_a_broken_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text('[[build]]\nid = "X"\ndevice = \n', encoding="utf-8")
    with pytest.raises(CatalogFormatError, match=r"broken\.toml.*line 3"):
        Catalog.from_files([SHIPPED, bad])
