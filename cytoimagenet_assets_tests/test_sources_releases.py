"""Parsers on public files of the same datasets that ../shared/fixtures does not hold — other label
releases, other lists, other studies' plates.tsv — and on damaged copies (issue 16).

Where ../shared has the real file it is read from there (skipping when absent). Otherwise each test
writes a few rows in the exact published layout (columns, order, separators); where the rows
themselves are illustrative rather than copied, the docstring says so.
"""

import gzip
import warnings

import pandas as pd
import pytest

from cytoimagenet_assets.catalog import load_catalog
from cytoimagenet_assets.sources import parse_source
from cytoimagenet_assets.sources.common import EmptyTableWarning, read_table
from cytoimagenet_assets.sources.idr import read_plates
from cytoimagenet_assets.sources.table import ParseError

CATALOG = load_catalog("cytoimagenet")


# --- RxRx1: the label releases -----------------------------------------------------------------


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _integer_release(folder):
    """The original Kaggle "Recursion Cellular Image Classification" release (June 2019): train.csv
    ``id_code,experiment,plate,well,sirna`` with integer ids 0-1107; train_controls.csv and
    test_controls.csv add ``well_type``, with 1108-1137 the positive controls and 1138 the untreated
    negative control; test.csv ``id_code,experiment,plate,well`` (no siRNA). Columns as published on
    Kaggle; the ids in these rows are illustrative."""
    _write(
        folder / "train.csv", "id_code,experiment,plate,well,sirna\nHEPG2-01_1_B03,HEPG2-01,1,B03,513\nHEPG2-01_1_B04,HEPG2-01,1,B04,840\n"
    )
    _write(
        folder / "train_controls.csv",
        "id_code,experiment,plate,well,sirna,well_type\n"
        "HEPG2-01_1_B02,HEPG2-01,1,B02,1138,negative_control\nHEPG2-01_1_C03,HEPG2-01,1,C03,1109,positive_control\n",
    )
    _write(folder / "test.csv", "id_code,experiment,plate,well\nHEPG2-08_1_B03,HEPG2-08,1,B03\nU2OS-04_2_B03,U2OS-04,2,B03\n")
    _write(
        folder / "test_controls.csv",
        "id_code,experiment,plate,well,sirna,well_type\n"
        "HEPG2-08_1_B02,HEPG2-08,1,B02,1138,negative_control\nHEPG2-08_1_C03,HEPG2-08,1,C03,1124,positive_control\n",
    )


def _sirna(table, plate, well):
    values = table[(table["plate"] == plate) & (table["well"] == well)]["sirna"]
    assert len(values) == 2  # two sites per well
    return values.iloc[0]


def test_rxrx1_integer_release_keeps_its_ids_apart_and_its_negative_control_is_no_sirna(tmp_path):
    _integer_release(tmp_path)
    table = parse_source(CATALOG.source("rec_rxrx1"), tmp_path).table
    assert _sirna(table, "HEPG2-01_1", "B03") == "kaggle sirna 513"  # a distinct form, never a bare '513'
    assert pd.isna(_sirna(table, "HEPG2-01_1", "B02"))  # 1138: untreated, not a 1138 class
    assert pd.isna(_sirna(table, "HEPG2-08_1", "B02"))
    assert _sirna(table, "HEPG2-01_1", "C03") == "kaggle sirna 1109"  # a positive control is a real siRNA
    assert not table["sirna"].dropna().str.fullmatch(r"\d+").any()
    # test.csv has no siRNA column; its wells still give rows with their cell type.
    test_rows = table[table["source_file"] == "test.csv"]
    assert len(test_rows) == 4 and test_rows["sirna"].isna().all()
    assert sorted(set(test_rows["cell_type"])) == ["hepg2", "u2os"]
    assert len(table) == 2 * 8


def test_rxrx1_named_release_from_shared_with_a_test_table(real, tmp_path):
    """The later Kaggle copy in ../shared (``sirna_250``, ``UNTREATED``), with test.csv in the
    published test layout beside it: its negative controls stay null, test wells add rows."""
    folder = tmp_path / "rxrx1"
    folder.mkdir()
    for name in ("train.csv", "train_controls.csv"):
        (folder / name).write_bytes((real / "rxrx1" / name).read_bytes())
    _write(folder / "test.csv", "id_code,experiment,plate,well\nHUVEC-17_1_B03,HUVEC-17,1,B03\n")
    table = parse_source(CATALOG.source("rec_rxrx1"), folder).table
    assert pd.isna(_sirna(table, "HEPG2-01_1", "B02"))
    assert _sirna(table, "HEPG2-01_1", "B03") == "sirna_250"
    assert list(table.loc[table["source_file"] == "test.csv", "cell_type"]) == ["huvec", "huvec"]


def test_rxrx1_integer_and_named_ids_in_one_source_are_an_error_naming_both_files(tmp_path):
    _integer_release(tmp_path)
    _write(tmp_path / "train.csv", "id_code,experiment,plate,well,sirna\nHEPG2-01_1_B03,HEPG2-01,1,B03,sirna_250\n")
    with pytest.raises(ParseError, match=r"rec_rxrx1: integer siRNA ids \(train_controls.csv row 1: '1138'.*train.csv row 1: 'sirna_250'"):
        parse_source(CATALOG.source("rec_rxrx1"), tmp_path)


def test_rxrx1_metadata_csv_negative_controls_are_no_sirna(tmp_path):
    """RxRx1's metadata.csv (rxrx.ai; schema in recursionpharma/rxrx-datasets rxrx1/README.md):
    site_id, well_id, cell_type, dataset, experiment, plate, well, site, well_type, sirna, sirna_id.
    Rows illustrative (sirna = ThermoFisher id; the negative control's name here is a placeholder)."""
    _write(
        tmp_path / "metadata.csv",
        "site_id,well_id,cell_type,dataset,experiment,plate,well,site,well_type,sirna,sirna_id\n"
        "HEPG2-01_1_B02_1,HEPG2-01_1_B02,HEPG2,train,HEPG2-01,1,B02,1,negative_control,EMPTY,1138\n"
        "HEPG2-01_1_B03_1,HEPG2-01_1_B03,HEPG2,train,HEPG2-01,1,B03,1,treatment,s21721,513\n"
        "HEPG2-01_1_B04_1,HEPG2-01_1_B04,HEPG2,train,HEPG2-01,1,B04,1,negative_control,s0000,1138\n",
    )
    table = parse_source(CATALOG.source("rec_rxrx1"), tmp_path).table
    assert table["sirna"].tolist()[1] == "s21721" and table["sirna"].isna().tolist() == [True, False, True]


# --- HPA: cell lines from the row --------------------------------------------------------------


def test_hpa_list_with_cell_lines_labels_each_row(tmp_path):
    """The HPA v18 external image list (the 2018 competition's extra data; ``HPAv18RBGY_wodpl.csv``
    has ``Id,Target``, the extended list also the image's cell line). Columns ``Id,Target,CellLine``
    as in that list; the rows are illustrative, among them the mouse NIH 3T3 line."""
    _write(
        tmp_path / "train.csv", "Id,Target,CellLine\n10580_1610_C1_1,13 25 0 2 21,A-431\n10163_612_B1_1,0,NIH 3T3\n10158_1520_D1_2,16,\n"
    )
    table = parse_source(CATALOG.source("kag_hpa"), tmp_path).table
    by_row = table.groupby("source_row")[["cell_type", "organism"]].first()
    assert by_row.loc[1].tolist() == ["a-431", "human"]
    assert by_row.loc[2].tolist() == ["nih 3t3", "mouse"]
    assert by_row.loc[3].tolist() == ["u2os", "human"]  # no cell line in the file: the catalog's default
    assert table.groupby("source_row")["cell_type"].nunique().eq(1).all()


# --- damaged and empty tables ------------------------------------------------------------------


def test_a_truncated_gz_table_names_source_file_and_position(tmp_path):
    text = "id_code,experiment,plate,well,sirna\n" + "".join(f"HEPG2-01_1_B{i:02d},HEPG2-01,1,B{i:02d},sirna_{i}\n" for i in range(2000))
    packed = gzip.compress(text.encode())
    path = tmp_path / "train.csv.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ParseError, match=r"rec_rxrx1: cannot read .*train.csv.gz after byte [\d,]+ of the text \(line \d+\): EOFError"):
        read_table(CATALOG.source("rec_rxrx1"), path)


def test_an_undecodable_table_names_the_byte(tmp_path):
    path = _write(tmp_path / "train.csv", "Id,Target\n")
    path.write_bytes(b"Id,Target\nabc,1\n\xff\xfe,2\n")
    with pytest.raises(ParseError, match=r"kag_hpa: cannot read .*train.csv at byte \d+ of the text: UnicodeDecodeError"):
        read_table(CATALOG.source("kag_hpa"), path)


def test_a_header_only_table_is_a_warning_naming_the_file(tmp_path):
    _write(tmp_path / "train.csv", "Id,Target\n")
    with pytest.warns(EmptyTableWarning, match=r"kag_hpa: .*train.csv has a header \(2 columns\) and no rows"):
        parsed = parse_source(CATALOG.source("kag_hpa"), tmp_path)
    assert parsed.table.empty
    _write(tmp_path / "train.csv", "Id,Target\nabc,1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyTableWarning)
        read_table(CATALOG.source("kag_hpa"), tmp_path / "train.csv")


# --- smaller gaps ------------------------------------------------------------------------------


def test_idr_plates_tsv_in_any_order(real, tmp_path):
    """idr0037's real plates.tsv (``<plate>\\t<path>``), the same lines path first, and a path alone
    as in IDR/idr0081-georgi-adenovirus ``screenA/idr0081-screenA-plates.tsv``."""
    source = CATALOG.source("idr0037")
    plate_first = read_plates(source, real / "idr0037" / "idr0037-screenA-plates.tsv")
    lines = (real / "idr0037" / "idr0037-screenA-plates.tsv").read_text().splitlines()
    swapped = _write(tmp_path / "swapped-plates.tsv", "".join("\t".join(reversed(line.split("\t"))) + "\n" for line in lines))
    assert read_plates(source, swapped) == plate_first
    alone = _write(
        tmp_path / "idr0081-screenA-plates.tsv",
        "/uod/idr/filesets/idr0081-georgi-adenovirus/20200324-owncloud/ScreenA/1-prePlates/Data_UZH/preScreen/HAdV-pre.HTD\n",
    )
    assert read_plates(CATALOG.source("idr0081"), alone) == {"HAdV-pre": "20200324-owncloud/ScreenA/1-prePlates/Data_UZH/preScreen"}


def _bbbc022_image_table(folder, rows):
    source = CATALOG.source("bbbc022")
    channels = [c.key for c in source.channels]
    header = [f"Image_{k}_{c}" for c in channels for k in ("FileName", "PathName")]
    columns = list(source.parser_options.get("columns", {}).values())
    lines = [",".join(header + columns)]
    for i, (path, values) in enumerate(rows):
        lines.append(",".join([v for c in channels for v in (f"f{i}_{c}.tif", path)] + [values.get(c, "") for c in columns]))
    _write(folder / source.parser_options["image_table"], "\n".join(lines) + "\n")
    return source


def test_join_misses_are_counted_and_listed(real, tmp_path):
    """BBBC022's real MOA table (short Broad ids, ``BRD-A01078468``) joined to an image table in the
    CellProfiler layout whose compound ids are long-form (``BRD-A01078468-001-14-8``) for one row."""
    (tmp_path / "BBBC022_MOA_MATCHES_official.csv").write_bytes((real / "bbbc022" / "BBBC022_MOA_MATCHES_official.csv").read_bytes())
    source = CATALOG.source("bbbc022")
    spec = source.parser_options["annotations"][0]
    key_column = next(iter(spec["join"]))
    source = _bbbc022_image_table(
        tmp_path,
        [
            ("plate1", {key_column: "BRD-A01078468"}),
            ("plate1", {key_column: "BRD-A01078468-001-14-8"}),
            ("plate1", {key_column: "BRD-A01078468-001-14-8"}),
        ],
    )
    parsed = parse_source(source, tmp_path)
    assert parsed.join_misses.to_dict("records") == [{"table": spec["table"], "key": f"{key_column}='BRD-A01078468-001-14-8'", "rows": 2}]
    assert len(parsed.table) == 3  # the rows stay, without the annotation's label


def test_an_absolute_image_path_fails_the_source_naming_file_and_row(tmp_path):
    """An image table in the CellProfiler layout whose second row's PathName is absolute (as a
    CellProfiler run on the submitter's machine writes it): an error, never made relative."""
    source = _bbbc022_image_table(tmp_path, [("plate1", {}), ("/data/bbbc022/plate1", {})])
    _write(tmp_path / "BBBC022_MOA_MATCHES_official.csv", "Var1,Metadata_moa.x\nBRD-A01078468,synthetic estrogen\n")
    with pytest.raises(ParseError, match=r"bbbc022: BBBC022_v1_image.csv row 2: image path '/data/bbbc022/plate1'"):
        parse_source(source, tmp_path)
