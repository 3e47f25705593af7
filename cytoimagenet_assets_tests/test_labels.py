"""Weak-label assignment: hand-made tables with known answers, and properties on generated tables."""

import dataclasses
import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.catalog.settings import LABEL_CATEGORIES, LabelSettings
from cytoimagenet_assets.definitions import build_definitions
from cytoimagenet_assets.defs.keys import CANDIDATES_KEY, LABELS_KEY
from cytoimagenet_assets.download.plan import obtainable_files
from cytoimagenet_assets.labels.assign import (
    assign_labels,
    class_key,
    class_summary,
    label_counts_table,
    membership_changes,
    stratified_sample,
    water_fill,
    with_class_keys,
)
from cytoimagenet_assets.labels.availability import NO_FILES, NOT_OBTAINABLE, unavailable_reasons, unavailable_summary
from cytoimagenet_assets.storage import FETCHED_MARK, REMOTE_INDEX, DataHome, read_parquet, write_parquet


def table(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    df = pd.DataFrame({c: [None] * n for c in ("dir_name", "database", *LABEL_CATEGORIES)} | columns)
    df["idx"] = [f"t-{i}" for i in range(n)]
    df["dir_name"] = df["dir_name"].fillna("t")
    df["database"] = df["database"].fillna("db")
    return df


def generated(rows: int = 6000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    zipf = lambda prefix, n, a: np.array([f"{prefix}{i}" for i in range(n)], dtype=object)[np.minimum(rng.zipf(a, rows) - 1, n - 1)]
    df = table(
        organism=rng.choice(["human", "mouse", "yeast"], rows, p=[0.7, 0.2, 0.1]),
        cell_type=zipf("line ", 12, 1.6),
        cell_visible=rng.choice(["nucleus", "nucleus|actin", "actin|er", "f-actin", "er|nucleus|mitochondria"], rows),
        compound=np.where(rng.random(rows) < 0.5, zipf("cpd ", 40, 1.3), None),
        phenotype=np.where(rng.random(rows) < 0.3, zipf("moa ", 8, 1.5), None),
        sirna=np.where(rng.random(rows) < 0.2, zipf("si ", 30, 1.4), None),
    )
    df["dir_name"] = rng.choice([f"ds{i}" for i in range(6)], rows)
    return df


CONFIG = LabelSettings(threshold=30, target=60, cap=200, seed=3)


def test_hand_made_table_least_frequent_first_and_no_reuse():
    # 'rare' (35 rows) is claimed before 'human' (all 100 rows): human keeps only the other 65 rows,
    # which is more than target 50, so it is sampled down to exactly 50.
    df = table(organism=["human"] * 100, compound=["rare"] * 35 + [None] * 65)
    out = assign_labels(df, LabelSettings(threshold=30, target=50, cap=1000))
    rare = out[out["label"] == "rare"]
    human = out[out["label"] == "human"]
    assert list(out["label"].unique()) == ["rare", "human"]
    assert set(rare["idx"]) == {f"t-{i}" for i in range(35)}
    assert len(human) == 50 and not set(human["idx"]) & set(rare["idx"])


def test_a_candidate_left_with_too_few_free_rows_is_skipped():
    # 'a' (40) goes first and takes rows 0-39; 'b' (45 rows, 10..54) keeps only 15 free rows < 30.
    df = table(compound=["a"] * 40 + [None] * 60, phenotype=[None] * 10 + ["b"] * 45 + [None] * 45)
    out = assign_labels(df, LabelSettings(threshold=30, target=100, cap=1000))
    assert out.groupby("label").size().to_dict() == {"a": 40}


def test_labels_match_whole_tokens_not_substrings():
    df = table(cell_visible=["actin"] * 30 + ["f-actin"] * 30 + ["nucleus|actin"] * 5)
    out = assign_labels(df, LabelSettings(threshold=30, target=100, cap=1000))
    sizes = out.groupby("label").size().to_dict()
    assert sizes == {"actin": 35, "f-actin": 30}  # a substring match would give actin all 65 rows; nucleus has 5 < 30


def test_ties_are_broken_by_category_then_label():
    df = table(compound=["x"] * 30 + [None] * 30, phenotype=["x"] * 30 + ["y"] * 30)
    out = assign_labels(df, LabelSettings(threshold=30, target=100, cap=1000))
    # (30, compound, x) < (30, phenotype, x) < (30, phenotype, y); phenotype x then has 0 free rows.
    assert out.drop_duplicates(["category", "label"])[["category", "label"]].values.tolist() == [["compound", "x"], ["phenotype", "y"]]


def test_properties_on_a_generated_table():
    df = generated()
    out = assign_labels(df, CONFIG)
    assert out["idx"].is_unique  # no image in two classes
    sizes = out.groupby(["category", "label"], sort=False).size()
    assert sizes.between(CONFIG.threshold, CONFIG.target).all()
    # Classes were formed in order of their candidate counts (least frequent first).
    counts = label_counts_table(df).set_index(["category", "label"])["count"]
    order = [counts[key] for key in sizes.index]
    assert order == sorted(order)
    # Every assigned row really holds its label as a whole token.
    merged = out.merge(df, on="idx")
    assert all(
        label in str(row[category]).split("|")
        for label, category, row in zip(merged["label"], merged["category"], merged.to_dict("records"))
    )
    # Determinism for a seed; another seed samples differently.
    assert assign_labels(df, CONFIG).equals(out)
    other = assign_labels(df, LabelSettings(**{**CONFIG.__dict__, "seed": 4}))
    assert not other.equals(out)


def test_big_classes_are_capped_then_sampled_to_target(monkeypatch):
    from cytoimagenet_assets.labels import assign

    draws = []
    real = assign.stratified_sample

    def recording(rows, strata, total, rng):
        draws.append((len(rows), total))
        return real(rows, strata, total, rng)

    monkeypatch.setattr(assign, "stratified_sample", recording)
    df = generated(rows=4000)
    out = assign_labels(df, CONFIG)
    assert len(out[out["label"] == "human"]) == CONFIG.target
    # Candidates above the cap went through both stages: down to the cap, then from it to the target.
    capped = [i for i, (n, total) in enumerate(draws) if total == CONFIG.cap]
    assert capped and all(draws[i][0] > CONFIG.cap and draws[i + 1] == (CONFIG.cap, CONFIG.target) for i in capped)


def _entropy(labels) -> float:
    p = pd.Series(labels).value_counts(normalize=True).to_numpy()
    return float(-(p * np.log(p)).sum())


def test_water_filling_is_at_least_as_even_as_random_sampling():
    rng = np.random.default_rng(0)
    strata = np.repeat(np.arange(8), [2000, 900, 300, 120, 60, 25, 10, 3])
    rows = np.arange(len(strata))
    chosen = stratified_sample(rows, strata, 200, np.random.default_rng(1))
    assert len(chosen) == 200 and len(np.unique(chosen)) == 200
    random_entropy = np.mean([_entropy(strata[rng.choice(rows, 200, replace=False)]) for _ in range(50)])
    assert _entropy(strata[chosen]) >= random_entropy
    # Small strata are taken whole; the rest share the remainder evenly.
    taken = np.bincount(strata[chosen], minlength=8)
    assert taken.tolist()[-3:] == [25, 10, 3]
    assert taken[:5].max() - taken[:5].min() <= 1


@pytest.mark.parametrize(
    ("sizes", "total", "expected"),
    [
        ([10, 10, 10], 9, [3, 3, 3]),
        ([1, 100, 100], 51, [1, 25, 25]),
        ([5, 5], 20, [5, 5]),
        ([0, 7, 2], 6, [0, 4, 2]),
    ],
)
def test_water_fill_allocations(sizes, total, expected):
    assert water_fill(np.array(sizes), total, np.random.default_rng(0)).tolist() == expected


def test_water_fill_spreads_the_remainder_one_each():
    alloc = water_fill(np.array([10, 10, 10, 10]), 10, np.random.default_rng(0))
    assert alloc.sum() == 10 and sorted(alloc.tolist()) == [2, 2, 3, 3]


def test_stratification_leaves_out_the_labels_own_category_and_sirna_for_compounds():
    # A compound label over 2 cell types: 200 rows of 'a', 20 of 'b'. Water-filling takes all 20 'b'.
    df = table(compound=["c"] * 220, cell_type=["a"] * 200 + ["b"] * 20, sirna=[f"s{i}" for i in range(220)])
    out = assign_labels(df, LabelSettings(threshold=30, target=60, cap=1000))
    chosen = df.set_index("idx").loc[out["idx"], "cell_type"]
    assert (chosen == "b").sum() == 20  # had sirna (unique per row) been a stratum, every row would be its own stratum


@pytest.mark.parametrize("label", ["actin", "nucleus|actin", "a/b, c", "α-tubulin", "x" * 300, "..", "ünïcödé / 日本"])
def test_class_keys_are_safe_stable_and_unique(label):
    key = class_key("cell_visible", label)
    assert key == class_key("cell_visible", label)
    assert len(key) <= 80 and all(c.isascii() and (c.isalnum() or c == "-") for c in key)
    assert key != class_key("phenotype", label) and key != class_key("cell_visible", label + " ")


def test_summary_and_membership_changes():
    df = generated()
    before = with_class_keys(assign_labels(df, CONFIG))
    summary = class_summary(before, df, CONFIG)
    assert summary["images"].sum() == len(before) and summary["class_key"].is_unique
    assert (summary["needs_upsampling"] == (summary["images"] < CONFIG.target)).all()
    assert set(summary["databases"]) == {"db"}
    assert membership_changes(before, before).empty
    first = membership_changes(None, before)
    assert set(first["status"]) == {"added"} and first["added"].sum() == len(before)
    fewer = df.iloc[:-1500]  # a source shrank
    after = with_class_keys(assign_labels(fewer, CONFIG))
    changes = membership_changes(before, after).set_index("class_key")
    for key, row in changes.iterrows():
        old = set(before.loc[before["class_key"] == key, "idx"])
        new = set(after.loc[after["class_key"] == key, "idx"])
        assert (row["added"], row["removed"]) == (len(new - old), len(old - new))


def test_config_is_validated():
    with pytest.raises(ValueError, match="threshold <= target <= cap"):
        LabelSettings(threshold=100, target=10)
    with pytest.raises(ValueError, match="unknown label categories"):
        LabelSettings(categories=("colour",))
    with pytest.raises(ValueError, match="lacks column"):
        assign_labels(pd.DataFrame({"idx": ["a"]}))


def test_rows_without_obtainable_images_are_left_out_with_their_reason():
    merged = table(compound=["x"] * 5).assign(
        channel_paths=[["a.png"], [], ["gone.png"], ["b.png", "c.png"], ["z.tif"]], dir_name=["s", "s", "s", "s", "idr"]
    )
    reasons = unavailable_reasons(merged, {"s": {"a.png", "b.png", "c.png"}, "idr": None})  # None: an unlisted IDR mirror
    assert reasons.isna().tolist() == [True, False, False, True, True]
    assert reasons[1] == NO_FILES and reasons[2] == NOT_OBTAINABLE
    assert unavailable_summary(merged, reasons).values.tolist() == [["s", NOT_OBTAINABLE, 1], ["s", NO_FILES, 1]]  # by reason
    assert unavailable_reasons(merged, {}).notna().sum() == 5  # a source nobody can provide


def test_obtainable_files_are_those_on_disk_or_indexed_and_any_for_an_unlisted_idr_mirror(tmp_path):
    catalog = load_catalog("cytoimagenet")
    zipped = next(s for s in catalog.sources if s.download.method == "https")
    raw = tmp_path / zipped.dir_name
    (raw / "images").mkdir(parents=True)
    (raw / "images" / "a.tif").write_bytes(b"x")
    (raw / FETCHED_MARK).parent.mkdir(parents=True)
    (raw / FETCHED_MARK).write_text("")
    write_parquet(pd.DataFrame({"path": ["images/b.tif"]}), raw / REMOTE_INDEX)
    assert obtainable_files(zipped, raw) == {"images/a.tif", "images/b.tif"}
    study = next(s for s in catalog.sources if s.download.method == "idr")
    assert obtainable_files(study, tmp_path / study.dir_name) is None
    write_parquet(pd.DataFrame({"path": ["plate/x.tif"]}), tmp_path / study.dir_name / REMOTE_INDEX)
    assert obtainable_files(study, tmp_path / study.dir_name) == {"plate/x.tif"}


def test_label_assets_count_and_assign_only_rows_that_can_become_images(tmp_path):
    """Two metadata-only rows would lift 'y' over the threshold and a missing file would add an image
    to 'x'; neither may count."""
    catalog = load_catalog("demo")
    catalog = catalog.model_copy(update={"labels": dataclasses.replace(catalog.labels, threshold=3, target=5, cap=10)})
    home = DataHome(tmp_path)
    raw = home.raw_dir("demo_hpa")
    raw.mkdir(parents=True)
    for name in ("x0", "x1", "x2", "x3", "y0", "y1"):
        (raw / f"{name}.png").write_bytes(b"png")
    paths = [["x0.png"], ["x1.png"], ["x2.png"], ["x3.png"], ["gone.png"], ["y0.png"], ["y1.png"], [], []]
    merged = table(compound=["x"] * 5 + ["y"] * 4).assign(channel_paths=paths, dir_name="demo_hpa")
    write_parquet(merged, home.table_path("merged_metadata"))
    defs = build_definitions(catalog, data_home=str(tmp_path))
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
        selection=[CANDIDATES_KEY, LABELS_KEY],
        raise_on_error=False,
    )
    assert result.success
    candidates = read_parquet(home.table_path("label_candidates")).set_index("label")
    assert candidates.loc["x", "count"] == 4 and candidates.loc["y", "count"] == 2 and not candidates.loc["y", "candidate"]
    labels = read_parquet(home.table_path("cytoimagenet_labels"))
    assert sorted(labels["idx"]) == ["t-0", "t-1", "t-2", "t-3"]
    for key in (CANDIDATES_KEY, LABELS_KEY):
        metadata = result.asset_materializations_for_node(key.path[-1])[0].metadata
        assert metadata["rows_without_images"].value == 3
        shown = metadata["rows_without_images_per_source"].value
        assert f"| demo_hpa | {NO_FILES} | 2 |" in shown and f"| demo_hpa | {NOT_OBTAINABLE} | 1 |" in shown
    shutil.rmtree(raw)  # nothing left that can become an image: a clear failure, not an empty class table
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
        selection=[LABELS_KEY],
        raise_on_error=False,
    )
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no row of merged_metadata can become an image (9 rows left out: demo_hpa: 7 " in failure.event_specific_data.error.message


def test_membership_changes_of_a_first_class_table_without_classes():
    """No previous table and no class at all (a catalog where no label reaches the threshold): nothing changed."""
    empty = pd.DataFrame({"idx": pd.Series([], dtype="string"), "class_key": pd.Series([], dtype="string")})
    assert membership_changes(None, empty).empty
