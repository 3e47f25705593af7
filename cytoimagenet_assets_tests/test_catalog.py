import re
from pathlib import Path

import pytest
import yaml

from cytoimagenet_assets.catalog import BUILTIN_DIR, CatalogError, load_catalog, parse_catalog

# The 40 sources of the methods file's "Sources of Data", by the original's dir_names (SOURCES.md).
ORIGINAL_40 = {
    "bbbc005",
    "bbbc006",
    "bbbc010",
    "bbbc011",
    "bbbc012",
    "bbbc013",
    "bbbc014",
    "bbbc015",
    "bbbc017",
    "bbbc020",
    "bbbc022",
    "bbbc025",
    "bbbc026",
    "bbbc038",
    "bbbc041",
    "bbbc045",
    "bbbc048",
    "bbbc051",
    "cil_kinome",
    "idr0003",
    "idr0009",
    "idr0016",
    "idr0017",
    "idr0021",
    "idr0037",
    "idr0041",
    "idr0067",
    "idr0072",
    "idr0080",
    "idr0081",
    "idr0088",
    "idr0093",
    "kag_cell_cycle",
    "kag_hpa_single",
    "kag_hpa",
    "kag_leukemia",
    "rec_rxrx1",
    "rec_rxrx19a",
    "rec_rxrx19b",
    "rec_rxrx2",
}


def _demo_raw() -> dict:
    return yaml.safe_load((BUILTIN_DIR / "demo.yaml").read_text())


def test_cytoimagenet_catalog_lists_the_40_sources_and_the_evaluation_sets():
    catalog = load_catalog("cytoimagenet")
    assert {s.dir_name for s in catalog.pretraining_sources} == ORIGINAL_40
    evaluation = {s.dir_name for s in catalog.sources if s.evaluation_only}
    assert evaluation == {"bbbc021", "coos7", "cyclops"}
    databases = {s.database for s in catalog.pretraining_sources}
    assert databases == {"Broad Bioimage Benchmark Collection", "Cell Image Library", "Image Data Resource", "Kaggle", "Recursion"}
    assert (catalog.labels.threshold, catalog.labels.target, catalog.labels.cap) == (287, 1000, 10_000)
    assert catalog.source("idr0016").overlaps == ("bbbc022",)
    rxrx1 = catalog.source("rec_rxrx1")
    assert rxrx1.download.files[0].md5 == "f75ffa93b917e8a82e27e0c3a2b3425f"
    assert [c.key for c in rxrx1.channels] == ["w1", "w2", "w3", "w4", "w5", "w6"]


def test_every_file_pattern_in_the_catalogs_compiles():
    for name in ("demo", "cytoimagenet"):
        for source in load_catalog(name).sources:
            if source.parser == "file_pattern":
                re.compile(source.parser_options["pattern"])


def test_demo_is_the_default_and_a_path_selects_a_users_catalog(monkeypatch, tmp_path):
    monkeypatch.delenv("CYTOIMAGENET_CATALOG", raising=False)
    assert load_catalog().name == "demo"
    mine = _demo_raw() | {"name": "mine"}
    mine["sources"] = mine["sources"][:1]
    mine.pop("embed")  # its folder is a source left out here
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(mine))
    monkeypatch.setenv("CYTOIMAGENET_CATALOG", str(path))
    catalog = load_catalog()
    assert catalog.name == "mine" and [s.dir_name for s in catalog.sources] == ["demo_rxrx1"]


def test_unknown_catalog_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CYTOIMAGENET_CATALOG", "no-such-catalog")
    with pytest.raises(CatalogError, match="neither a built-in catalog"):
        load_catalog()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(dir_name="Bad Name"), r"source 'Bad Name' \(entry 1\), field 'dir_name'"),
        (lambda s: s.update(parser="nonsense"), r"source 'demo_rxrx1' \(entry 1\), field 'parser': .*unknown parser 'nonsense'"),
        (lambda s: s.pop("license"), r"source 'demo_rxrx1' \(entry 1\), field 'license': Field required"),
        (lambda s: s.update(landing_page="ftp:/x"), r"field 'landing_page'.*not an http"),
        (lambda s: s.update(download={"method": "https"}), r"field 'download'.*method 'https' needs 'files'"),
        (lambda s: s["defaults"].update(microscopy="telepathy"), r"field 'defaults.microscopy'"),
        (lambda s: s.update(colour="red"), r"field 'colour': Extra inputs are not permitted"),
        (lambda s: s.update(approx_size_gb=-1), r"field 'approx_size_gb'"),
    ],
)
def test_a_bad_entry_names_the_entry_and_field(change, message):
    raw = _demo_raw()
    change(raw["sources"][0])
    with pytest.raises(CatalogError, match=message):
        parse_catalog(raw)


def test_catalog_level_errors():
    raw = _demo_raw()
    raw["sources"].append(dict(raw["sources"][0]))
    with pytest.raises(CatalogError, match="dir_name 'demo_rxrx1' appears twice"):
        parse_catalog(raw)
    raw = _demo_raw()
    raw["sources"][0]["overlaps"] = ["nowhere"]
    with pytest.raises(CatalogError, match="overlaps names unknown source 'nowhere'"):
        parse_catalog(raw)
    raw = _demo_raw()
    raw["labels"] = {"threshold": 500, "target": 100, "cap": 1000}
    with pytest.raises(CatalogError, match="threshold <= target <= cap"):
        parse_catalog(raw)
    with pytest.raises(CatalogError, match="expected a mapping"):
        parse_catalog(["not", "a", "catalog"])


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("sources: [a, b\n")
    with pytest.raises(CatalogError, match="broken.yaml: not valid YAML"):
        load_catalog(path)


def test_the_sources_page_is_generated_from_the_catalog(tmp_path):
    """docs/sources.md is what the catalog says; after editing the catalog run
    `python -m cytoimagenet_assets.catalog docs` and commit the page."""
    from cytoimagenet_assets.catalog.__main__ import main
    from cytoimagenet_assets.catalog.docs import sources_page

    committed = Path(__file__).resolve().parents[1] / "docs" / "sources.md"
    catalog = load_catalog("cytoimagenet")
    assert committed.read_text() == sources_page(catalog), "docs/sources.md is stale: python -m cytoimagenet_assets.catalog docs"
    page = sources_page(catalog)
    for source in catalog.sources:
        assert f"## {source.dir_name}: " in page and f"raw/{source.dir_name}/" in page
    assert "indexed through HTTP Range" in page and "through the Kaggle API" in page and "IDR mirror" in page
    main(["docs", "--catalog", "demo", "--out", str(tmp_path / "demo.md")])
    assert (tmp_path / "demo.md").read_text() == sources_page(load_catalog("demo"))
