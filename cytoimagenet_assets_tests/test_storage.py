import sqlite3

import numpy as np
import pandas as pd
import pytest

from cytoimagenet_assets.storage import DataHome, atomic_path, contained, write_parquet, write_sql_table


def test_atomic_file_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "t.parquet"
    write_parquet(pd.DataFrame({"a": [1]}), target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as stage:
            stage.write_bytes(b"half")
            raise RuntimeError("killed")
    assert pd.read_parquet(target)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_atomic_dir_replaces_whole(tmp_path):
    target = tmp_path / "d"
    with atomic_path(target, is_dir=True) as stage:
        (stage / "old.txt").write_text("1")
    with atomic_path(target, is_dir=True) as stage:
        (stage / "new.txt").write_text("2")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


@pytest.mark.parametrize("name", ["..", "a/b", "", ".", "../../etc"])
def test_paths_never_leave_the_data_home(tmp_path, name):
    home = DataHome(tmp_path)
    for make in (home.raw_dir, home.class_dir, home.report_dir, home.table_path):
        with pytest.raises(ValueError, match="unsafe path component"):
            make(name)


def test_contained_refuses_names_that_resolve_outside_the_root(tmp_path):
    root = tmp_path / "raw"
    (root / "plate").mkdir(parents=True)
    (root / "escape").symlink_to(tmp_path)
    assert contained(root, "plate/a.tif") == (root / "plate" / "a.tif").resolve()
    for name in ("../x", "/etc/passwd", "plate/../../x", "escape/secret", "."):
        with pytest.raises(ValueError, match="points outside"):
            contained(root, name)


def test_sql_table_replaced_in_one_transaction_with_lists_as_json(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    write_sql_table(pd.DataFrame({"idx": ["a-0"], "paths": [["x.tif", "y.tif"]]}), "t", url)
    write_sql_table(
        pd.DataFrame({"idx": ["a-0", "a-1"], "paths": [np.array(["z.tif"]), np.array([], dtype=object)]}), "t", url
    )  # as read from Parquet
    with sqlite3.connect(tmp_path / "c.db") as db:
        assert db.execute("select idx, paths from t order by idx").fetchall() == [("a-0", '["z.tif"]'), ("a-1", "[]")]
        assert [r[0] for r in db.execute("select name from sqlite_master where type='table'")] == ["t"]


def test_a_failed_directory_swap_puts_the_old_result_back(tmp_path, monkeypatch):
    from pathlib import Path

    target = tmp_path / "d"
    with atomic_path(target, is_dir=True) as stage:
        (stage / "old.txt").write_text("1")
    real_rename = Path.rename

    def failing(self, to):
        if self.name.endswith(".partial"):
            raise OSError("disk trouble")
        return real_rename(self, to)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError, match="disk trouble"):
        with atomic_path(target, is_dir=True) as stage:
            (stage / "new.txt").write_text("2")
    monkeypatch.undo()
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_compressed_tsv_is_read_as_tab_separated(tmp_path):
    import gzip

    from cytoimagenet_assets.catalog import load_catalog
    from cytoimagenet_assets.sources.common import read_table

    with gzip.open(tmp_path / "plates.tsv.gz", "wt") as f:
        f.write("Plate\tWell\np1\tA1\n")
    table = read_table(load_catalog("demo").sources[0], tmp_path / "plates.tsv.gz")
    assert list(table.columns) == ["Plate", "Well"] and table.iloc[0].tolist() == ["p1", "A1"]


def test_an_empty_table_with_string_columns_is_written_to_sql(tmp_path):
    """A class table with no class (a catalog where no label reaches the threshold) still writes."""
    empty = pd.DataFrame({"idx": pd.Series([], dtype="string"), "channel_paths": pd.Series([], dtype=object)})
    assert write_sql_table(empty, "cytoimagenet_labels", f"sqlite:///{tmp_path / 'catalog.db'}") == 0
