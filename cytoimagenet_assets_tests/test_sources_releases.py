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
from cytoimagenet_assets.sources.table import ParseError, missing_files

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


def test_rxrx1_kaggle_test_wells_are_found_under_test_and_the_metadata_split_decides_too(tmp_path):
    """Kaggle unpacks the competition into ``train/<experiment>/`` and ``test/<experiment>/`` (test
    experiments such as HEPG2-08 are never in train): each row's images are looked for under its
    split's folder, the split taken from the table's name, or from metadata.csv's ``dataset``."""
    _integer_release(tmp_path)
    wells = {"train": [("HEPG2-01", 1, w) for w in ("B02", "B03", "B04", "C03")]}
    wells["test"] = [("HEPG2-08", 1, "B02"), ("HEPG2-08", 1, "B03"), ("HEPG2-08", 1, "C03"), ("U2OS-04", 2, "B03")]
    for split, located in wells.items():
        for experiment, plate, well in located:
            for site, channel in ((s, c) for s in (1, 2) for c in range(1, 7)):
                _write(tmp_path / split / experiment / f"Plate{plate}" / f"{well}_s{site}_w{channel}.png", "")
    table = parse_source(CATALOG.source("rec_rxrx1"), tmp_path).table
    assert len(table) == 16 and missing_files(table, tmp_path).empty
    first = table["channel_paths"].map(lambda paths: paths[0])
    test_tables = table["source_file"].str.startswith("test")
    assert first[test_tables].str.startswith("test/").all() and first[~test_tables].str.startswith("train/").all()
    assert "test/U2OS-04/Plate2/B03_s2_w1.png" in set(first)

    _write(
        tmp_path / "metadata.csv",
        "site_id,well_id,cell_type,dataset,experiment,plate,well,site,well_type,sirna,sirna_id\n"
        "HEPG2-01_1_B03_1,HEPG2-01_1_B03,HEPG2,train,HEPG2-01,1,B03,1,treatment,s21721,513\n"
        "HEPG2-08_1_B03_2,HEPG2-08_1_B03,HEPG2,test,HEPG2-08,1,B03,2,treatment,s21721,513\n",
    )
    table = parse_source(CATALOG.source("rec_rxrx1"), tmp_path).table
    assert [paths[0] for paths in table["channel_paths"]] == ["train/HEPG2-01/Plate1/B03_s1_w1.png", "test/HEPG2-08/Plate1/B03_s2_w1.png"]


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


# --- IDR: older experiment annotations name each image's file ----------------------------------

IDR0041_MARCH_2018 = (
    "Dataset Name,Image Name,Source Name,Characteristics [Organism],Term Source 1 REF,Term Source 1 Accession,"
    "Characteristics [Cell Line],Term Source 2 REF,Term Source 2 Accession,Protocol REF,Protocol REF.1,Protocol REF.2,"
    "Assay Name,Experimental Condition [ # fill in],Comment [Gene Identifier],Comment [Gene Symbol],"
    "Comment [Gene Annotation Comments],Image File,Comment [Image File Path],Comment [Image File Comments],"
    "Comment [Image File Type],Channels,Protocol REF.3,Processed Data File\n"
) + "".join(
    f"140411_KIF11_MitoSys1_{kind},{image},KIF11,Homo sapiens,NCBITaxon,9606,HeLa,EFO,,growth protocol,treatment protocol,"
    "image acquisition and feature extraction protocol,140411_KIF11_MitoSys1,Genome-edited cell,ENSG00000138160,KIF11,"
    f'"Gene identifiers and symbols from GRCh38.p10, Ensembl release 89, May 2017.",{image}.tif,'
    f"mitotic_cell_atlas/140411_KIF11_MitoSys1/{cell}/{kind}tif,,{label},"
    "490-552:GFP; 587-621:mCherry | 622-695:SiR-DNA; 622-695:Dy-481XL,FCS-calibrated imaging,\n"
    for kind, image, cell, label in [
        ("raw", "TR1_W0001_P0007_T0001", "cell0003_R0028", "original images"),
        ("raw", "TR1_W0001_P0007_T0002", "cell0003_R0028", "original images"),
        ("mask", "TR1_W0001_P0007_T0001", "cell0003_R0028", "segmentation masks"),
        ("raw", "TR1_W0001_P0004_T0001", "cell0007_R0009", "original images"),
    ]
)


def test_idr_older_experiment_annotation_names_its_files_by_image_file_path(tmp_path):
    """idr0041's annotation of March 2018 (IDR/idr0041-cai-mitoticatlas at 51a4029: rows 1, 2, 41
    and 121, verbatim) names each file by ``Comment [Image File Path]`` (its upload folder) and
    ``Image File``; the catalog's ``image_path`` is built for the later renamed layout. Files named
    so are used, below whatever batch folder holds them (``20180306-ftp`` is illustrative); a row
    whose file is not there keeps the catalog's path (counted missing)."""
    _write(tmp_path / "idr0041-experimentA-annotation.csv", IDR0041_MARCH_2018)
    cell = "20180306-ftp/mitotic_cell_atlas/140411_KIF11_MitoSys1/cell0003_R0028/rawtif"
    for name in (f"{cell}/TR1_W0001_P0007_T0001.tif", f"{cell}/TR1_W0001_P0007_T0002.tif"):
        _write(tmp_path / name, "")
    _write(tmp_path / "20180306-ftp/mitotic_cell_atlas/140411_KIF11_MitoSys1/cell0001_R0001/rawtif/TR1_W0001_P0007_T0001.tif", "")
    parsed = parse_source(CATALOG.source("idr0041"), tmp_path)
    table = parsed.table
    assert [list(paths) for paths in table["channel_paths"]] == [
        [f"{cell}/TR1_W0001_P0007_T0001.tif"],
        [f"{cell}/TR1_W0001_P0007_T0002.tif"],
        ["20180710-ftp/140411_KIF11_MitoSys1_raw/TR1_W0001_P0004_T0001.tif"],
    ]
    assert missing_files(table, tmp_path)["path"].tolist() == ["20180710-ftp/140411_KIF11_MitoSys1_raw/TR1_W0001_P0004_T0001.tif"]
    assert parsed.rejects["source_row"].tolist() == [3] and set(table["gene"]) == {"kif11 targeted"}


def test_idr_annotation_whose_file_path_holds_the_file_name(tmp_path):
    """idr0043's annotation (IDR/idr0043-uhlen-humanproteinatlas, experimentA/hpa_run_01, its first two
    rows verbatim; its ``Image Name`` header appears twice) has the file's whole path in ``Comment
    [Image File Path]`` and no ``Image File``. Read with idr0067's entry and no file options: the row
    whose file is there gets it, below its batch folder (``20180624-ftp``, illustrative); the other
    keeps the path as written (counted missing), never no file at all."""
    header = (
        "Dataset Name,Image Name,Source Name,Characteristics [Organism],Characteristics [Organism Part],Term Source 2 REF,"
        "Term Source 2 Accession,Characteristics [Sex],Characteristics [Age],Characteristics [Individual],Assay Name,"
        "Antibody identifier,Antibody dilution,Image Name,Retrieval method,Human Protein Atlas version,"
        "Comment [Gene Identifier] 1,Comment [Gene Symbol] 1,Analysis Gene Annotation Build,Comment [Image File Path],"
        "Comment [Image File Type]\n"
    )
    rows = "".join(
        f"hpa_run_01,156348_A_1_{n}.tif,72942/156348_A_1_{n},Homo Sapiens,colorectal cancer,SNOMED,,Male,77,2931,HPA072942,"
        f"HPA072942,1:2300,156348_A_1_{n}.tif,HIER pH6,v18,ENSG00000196503,ARL9,Ensembl version 88.38,72942/156348_A_1_{n}.tif,raw\n"
        for n in (1, 2)
    )
    _write(tmp_path / "idr0043-experimentA-annotation.csv", header + rows)
    _write(tmp_path / "20180624-ftp/72942/156348_A_1_1.tif", "")
    source = CATALOG.source("idr0067")
    options = {"annotation": "idr0043-experimentA-annotation.csv", "columns": {"gene": "Comment [Gene Symbol] 1"}}
    table = parse_source(source.model_copy(update={"parser_options": options}), tmp_path).table
    assert [list(paths) for paths in table["channel_paths"]] == [["20180624-ftp/72942/156348_A_1_1.tif"], ["72942/156348_A_1_2.tif"]]
    assert set(table["gene"]) == {"arl9 targeted"}


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


def test_long_broad_ids_join_the_moa_table_by_compound_and_misses_are_counted(real, tmp_path):
    """BBBC022's real MOA table (short Broad ids, ``BRD-A01078468``) joined to an image table in the
    CellProfiler layout whose compound ids are long-form (``BRD-A01078468-001-14-8``: salt, batch,
    check digit) for some rows: every batch joins its compound and is labelled as it; a compound the
    table lacks is counted once, over its batches (illustrative rows; BRD-K99999999 is no compound)."""
    (tmp_path / "BBBC022_MOA_MATCHES_official.csv").write_bytes((real / "bbbc022" / "BBBC022_MOA_MATCHES_official.csv").read_bytes())
    source = CATALOG.source("bbbc022")
    spec = source.parser_options["annotations"][0]
    key_column = next(iter(spec["join"]))
    ids = ["BRD-A01078468", "BRD-A01078468-001-14-8", "BRD-A01078468-003-01-5", "BRD-K99999999-001-01-1", "BRD-K99999999-002-01-9"]
    source = _bbbc022_image_table(tmp_path, [("plate1", {key_column: i}) for i in ids])
    parsed = parse_source(source, tmp_path)
    table = parsed.table
    assert table["compound"].tolist() == ["brd-a01078468"] * 3 + ["brd-k99999999"] * 2
    assert table["phenotype"].tolist()[:3] == ["synthetic estrogen"] * 3 and table["phenotype"][3:].isna().all()
    assert parsed.join_misses.to_dict("records") == [{"table": spec["table"], "key": f"{key_column}='BRD-K99999999'", "rows": 2}]
    assert parsed.report(tmp_path)["annotation_join_misses"] == 2  # the rows stay, without the annotation's label


def test_an_absolute_image_path_fails_the_source_naming_file_and_row(tmp_path):
    """An image table in the CellProfiler layout whose second row's PathName is absolute (as a
    CellProfiler run on the submitter's machine writes it): an error, never made relative."""
    source = _bbbc022_image_table(tmp_path, [("plate1", {}), ("/data/bbbc022/plate1", {})])
    _write(tmp_path / "BBBC022_MOA_MATCHES_official.csv", "Var1,Metadata_moa.x\nBRD-A01078468,synthetic estrogen\n")
    with pytest.raises(ParseError, match=r"bbbc022: BBBC022_v1_image.csv row 2: image path '/data/bbbc022/plate1'"):
        parse_source(source, tmp_path)
