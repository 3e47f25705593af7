"""Metadata first, images on demand: fetch_source / fetch_missing against the loopback server."""

import io
import zipfile

import pytest

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.download import DownloadError
from cytoimagenet_assets.download.idr import study_location
from cytoimagenet_assets.download.plan import Fetching, fetch_missing, fetch_source
from cytoimagenet_assets.sources import ParseError, parse_source
from cytoimagenet_assets.sources.common import source_files
from cytoimagenet_assets.storage import REMOTE_INDEX
from cytoimagenet_assets_tests.loopback import payload

IMAGES = {
    f"Week1_22123/Week1_150607_{w}_s1_w{c}.tif": payload(40_000, seed=i * 3 + c)
    for i, w in enumerate(("B02", "B03", "C02"))
    for c in (1, 2)
}


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _source(download: dict, **extra) -> Source:
    return Source.model_validate(
        {
            "dir_name": "bbbc_test",
            "name": "Test",
            "database": "Broad Bioimage Benchmark Collection",
            "landing_page": "https://example.org",
            "license": "CC0",
            "approx_size_gb": 0,
            "download": download,
            "channels": [{"name": "nucleus", "key": "w1"}, {"name": "actin", "key": "w2"}],
            "parser": "file_pattern",
            "parser_options": {"pattern": r"_(?P<well>[A-P]\d{2})_s(?P<field>\d)_(?P<channel>w[12])\.tif$"},
            **extra,
        }
    )


@pytest.fixture
def bbbc(remote):
    """A BBBC-like source: a metadata table and an image zip whose members carry the metadata in their names."""
    table = b"plate,well\nWeek1_22123,B02\n"
    archive = _zip(IMAGES)
    source = _source(
        {
            "method": "https",
            "files": [
                {"url": remote.put("/bbbc/BBBC_test_metadata.csv", table), "role": "metadata"},
                {"url": remote.put("/bbbc/BBBC_test_images.zip", archive)},
            ],
        }
    )
    return source, archive


def test_metadata_first_downloads_tables_and_indexes_image_zips(bbbc, remote, tmp_path):
    source, archive = bbbc
    raw = tmp_path / "raw" / source.dir_name
    report = fetch_source(source, raw)
    assert (raw / "BBBC_test_metadata.csv").read_bytes() == b"plate,well\nWeek1_22123,B02\n"
    assert not (raw / "Week1_22123").exists()  # no image fetched
    assert source_files(raw) == sorted(["BBBC_test_metadata.csv", *IMAGES])
    assert report.files_indexed == len(IMAGES) and report.files_fetched == 1
    assert report.bytes_downloaded < len(archive) / 4  # the table plus the zip's directory, not its images
    # The parser reads the image names from the index: one row per field, before any image is on disk.
    table = parse_source(source, raw).table
    assert sorted(table["well"]) == ["B02", "B03", "C02"]
    assert all(len(paths) == 2 for paths in table["channel_paths"])


def test_metadata_inside_an_image_zip_is_fetched_with_the_metadata(remote, tmp_path):
    boxes = b'[{"image": {"pathname": "/images/a.png"}, "objects": []}]'
    archive = _zip({"malaria/training.json": boxes, **{f"malaria/images/{i}.png": payload(30_000, seed=i) for i in range(4)}})
    source = _source({"method": "https", "files": [{"url": remote.put("/malaria.zip", archive), "metadata_members": ["malaria/*.json"]}]})
    raw = tmp_path / "raw" / source.dir_name
    report = fetch_source(source, raw)
    assert (raw / "malaria/training.json").read_bytes() == boxes
    assert not (raw / "malaria/images").exists() and report.files_indexed == 5
    assert fetch_source(source, raw).files_fetched == 0  # present: not fetched again


def test_missing_files_are_fetched_by_range_once(bbbc, remote, tmp_path):
    source, archive = bbbc
    raw = tmp_path / "raw" / source.dir_name
    fetch_source(source, raw)
    wanted = ["Week1_22123/Week1_150607_B03_s1_w1.tif", "Week1_22123/Week1_150607_B03_s1_w2.tif"]
    before = len(remote.gets())
    report = fetch_missing(source, raw, wanted)
    assert [(raw / p).read_bytes() == IMAGES[p] for p in wanted] == [True, True]
    assert not (raw / "Week1_22123/Week1_150607_B02_s1_w1.tif").exists()
    assert report.files_fetched == 2 and report.transports == {"range": 2}
    assert [e.range is not None for e in remote.gets()[before:]] == [True, True]
    assert 80_000 <= report.bytes_downloaded < len(archive) / 2
    again = fetch_missing(source, raw, wanted)
    assert (again.files_fetched, again.bytes_downloaded) == (0, 0)


def test_a_server_ignoring_range_gets_the_whole_archive_downloaded(bbbc, remote, tmp_path):
    source, archive = bbbc
    remote.honour_range = False
    raw = tmp_path / "raw" / source.dir_name
    report = fetch_source(source, raw)
    assert all((raw / p).read_bytes() == data for p, data in IMAGES.items())
    assert not (raw / REMOTE_INDEX).exists() and report.files_indexed == 0
    assert any("ignores Range" in note for note in report.notes)
    assert fetch_missing(source, raw, list(IMAGES)).files_fetched == 0


def test_full_mode_downloads_and_extracts_everything(bbbc, remote, tmp_path):
    source, _ = bbbc
    raw = tmp_path / "raw" / source.dir_name
    report = fetch_source(source, raw, full=True)
    assert all((raw / p).read_bytes() == data for p, data in IMAGES.items())
    assert report.files_extracted == len(IMAGES) and not (raw / REMOTE_INDEX).exists()
    requests_so_far = len(remote.log)
    rerun = fetch_source(source, raw, full=True)  # verified copies: nothing downloaded, nothing extracted again
    assert (rerun.bytes_downloaded, rerun.files_extracted) == (0, 0)
    assert all(e.method == "HEAD" for e in remote.log[requests_so_far:])


def test_a_folder_filled_by_hand_is_used_without_network(bbbc, remote, tmp_path):
    source, _ = bbbc
    raw = tmp_path / "raw" / source.dir_name
    (raw / "Week1_22123").mkdir(parents=True)
    (raw / "Week1_22123" / "Week1_150607_B02_s1_w1.tif").write_bytes(b"by hand")
    report = fetch_source(source, raw)
    assert remote.log == [] and "filled by hand" in report.notes[0]
    missing = fetch_missing(source, raw, ["Week1_22123/Week1_150607_B02_s1_w1.tif", "Week1_22123/Week1_150607_B02_s1_w2.tif"])
    assert remote.log == [] and missing.unavailable == ["Week1_22123/Week1_150607_B02_s1_w2.tif"]


def test_files_no_remote_holds_are_reported_not_fatal(bbbc, remote, tmp_path):
    source, _ = bbbc
    raw = tmp_path / "raw" / source.dir_name
    fetch_source(source, raw)
    report = fetch_missing(source, raw, ["plate9/x.tif", "Week1_22123/Week1_150607_C02_s1_w1.tif"])
    assert report.unavailable == ["plate9/x.tif"] and report.files_fetched == 1
    assert "1 file(s) are neither under" in report.notes[0] and "(plate9/x.tif)" in report.notes[0]
    outside = fetch_missing(source, raw, ["../elsewhere.tif"])
    assert outside.unavailable == ["../elsewhere.tif"] and not (tmp_path / "raw" / "elsewhere.tif").exists()


def test_files_put_by_hand_after_a_failed_download_are_used(remote, tmp_path):
    source = _source({"method": "https", "files": [{"url": f"{remote.base}/gone.zip"}]})
    raw = tmp_path / "raw" / source.dir_name
    with pytest.raises(DownloadError, match="404"):
        fetch_source(source, raw)
    (raw / "plate1").mkdir(parents=True)
    (raw / "plate1" / "a_A01_s1_w1.tif").write_bytes(b"by hand")
    requests_so_far = len(remote.log)
    assert "filled by hand" in fetch_source(source, raw).notes[0] and len(remote.log) == requests_so_far


def test_hand_filled_folders_may_link_to_other_disks(bbbc, remote, tmp_path):
    source, _ = bbbc
    elsewhere = tmp_path / "disk2" / "plate1"
    elsewhere.mkdir(parents=True)
    (elsewhere / "a.tif").write_bytes(b"x")
    raw = tmp_path / "raw" / source.dir_name
    raw.mkdir(parents=True)
    (raw / "plate1").symlink_to(elsewhere)
    report = fetch_missing(source, raw, ["plate1/a.tif", "plate1/b.tif"])
    assert report.unavailable == ["plate1/b.tif"] and remote.log == []


def test_an_index_entry_escaping_the_raw_folder_is_refused(remote, tmp_path):
    source = _source({"method": "https", "files": [{"url": remote.put("/evil.zip", _zip({"../../escape.tif": b"x"}))}]})
    with pytest.raises(ValueError, match="points outside"):
        fetch_source(source, tmp_path / "raw" / source.dir_name)
    assert not (tmp_path / "escape.tif").exists()


def test_manual_sources_say_what_to_put_where(tmp_path):
    source = _source({"method": "manual", "notes": "request the files from the authors"})
    with pytest.raises(
        DownloadError, match=r"bbbc_test: cannot be downloaded automatically; request the files from the authors, into .*raw/bbbc_test"
    ):
        fetch_source(source, tmp_path / "raw" / "bbbc_test")


def test_kaggle_needs_credentials_and_never_shows_them(remote, tmp_path):
    source = _source({"method": "kaggle_dataset", "slug": "owner/cells"})
    raw = tmp_path / "raw" / source.dir_name
    with pytest.raises(DownloadError, match="KAGGLE_USERNAME and KAGGLE_KEY"):
        fetch_source(source, raw)
    remote.auth = ("alice", "s3cret-key")
    remote.put("/api/v1/datasets/download/owner/cells", _zip(IMAGES))
    fetching = Fetching(kaggle_username="alice", kaggle_key="s3cret-key", kaggle_api=remote.base + "/api/v1")
    report = fetch_source(source, raw, fetching=fetching)
    assert all((raw / p).read_bytes() == data for p, data in IMAGES.items())
    assert report.files_extracted == len(IMAGES)
    wrong = Fetching(kaggle_username="alice", kaggle_key="wrong-key", kaggle_api=remote.base + "/api/v1")
    with pytest.raises(DownloadError) as failure:
        fetch_source(source, tmp_path / "other" / source.dir_name, fetching=wrong)
    assert "wrong-key" not in str(failure.value) and "s3cret" not in str(failure.value) and "401" in str(failure.value)


def _index_page(*names: str) -> bytes:
    links = "".join(f'<a href="{n}">{n}</a>\n' for n in ("../", *names))
    return f"<html><body><h1>Index</h1><pre>{links}</pre></body></html>".encode()


def test_an_idr_screen_is_indexed_on_the_mirror_parsed_and_fetched_file_by_file(remote, tmp_path):
    study, other = "/idr/idr0099-test-study", "/idr/idr0098-other-study"
    annotation = b"Plate,Well,Gene Symbol\nP1,A1,TP53\nP1,A2,KRAS\nP2,A1,MYC\n"
    plates = b"P1\t/uod/idr/filesets/idr0099-test-study/plates/P1\nP2\t/uod/idr/filesets/idr0098-other-study/2017/P2\n"
    images = {f"plates/P1/r01c0{c}f01p01-ch{ch}sk1fk1fl1.tiff": payload(5_000, seed=10 * c + ch) for c in (1, 2) for ch in (1, 2)}
    elsewhere = {f"idr0098-other-study/2017/P2/r01c01f01p01-ch{ch}sk1fk1fl1.tiff": payload(3_000, seed=ch) for ch in (1, 2)}
    remote.put(study + "/", _index_page("plates/"))
    remote.put(study + "/plates/", _index_page("P1/"))
    remote.put(study + "/plates/P1/", _index_page(*(name.rsplit("/", 1)[1] for name in images)))
    remote.put(other + "/2017/", _index_page("P2/"))  # the other study's folder: a plate of this screen is filed there
    remote.put(other + "/2017/P2/", _index_page(*(name.rsplit("/", 1)[1] for name in elsewhere)))
    for name, data in images.items():
        remote.put(f"{study}/{name}", data)
    for name, data in elsewhere.items():
        remote.put(f"/idr/{name}", data)
    source = Source.model_validate(
        {
            "dir_name": "idr0099",
            "name": "Test screen",
            "database": "Image Data Resource",
            "landing_page": "https://idr.openmicroscopy.org",
            "license": "CC BY 4.0",
            "approx_size_gb": 0,
            "channels": [{"name": "nucleus", "key": "1"}, {"name": "actin", "key": "2"}],
            "download": {
                "method": "idr",
                "accession": "idr0099-test-study",
                "filesets": ["idr0098-other-study/2017"],
                "files": [
                    {"url": remote.put("/github/idr0099-screenA-annotation.csv", annotation), "role": "metadata"},
                    {"url": remote.put("/github/idr0099-screenA-plates.tsv", plates), "role": "metadata"},
                ],
            },
            "parser": "idr",
            "parser_options": {
                "annotation": "idr0099-screenA-annotation.csv",
                "plates": "idr0099-screenA-plates.tsv",
                "layout": "operetta",
                "columns": {"gene": "Gene Symbol"},
            },
        }
    )
    raw = tmp_path / "raw" / source.dir_name
    fetching = Fetching(idr_mirror=remote.base + "/idr")
    report = fetch_source(source, raw, fetching=fetching)
    assert (raw / "idr0099-screenA-annotation.csv").read_bytes() == annotation
    assert report.files_indexed == len(images) + len(elsewhere) and not (raw / "plates").exists()
    # The Operetta layout is read from the index: fields with their channel files, before any image is here.
    table = parse_source(source, raw).table
    assert table["gene"].tolist() == ["tp53 targeted", "kras targeted", "myc targeted"]
    assert table["channel_paths"].map(list).tolist() == [
        sorted(n for n in images if "c01" in n),
        sorted(n for n in images if "c02" in n),
        sorted(elsewhere),  # under a folder named after the study it is filed in
    ]
    wanted = [*table["channel_paths"][0], *table["channel_paths"][2]]
    fetched = fetch_missing(source, raw, wanted, fetching=fetching)
    assert all((raw / n).read_bytes() == {**images, **elsewhere}[n] for n in wanted) and not (raw / table["channel_paths"][1][0]).exists()
    assert (fetched.files_fetched, fetched.bytes_downloaded, fetched.transports) == (4, 16_000, {"https": 4})
    # A file the listing lacks is not asked for; one the mirror no longer has (404) is dropped, not fatal.
    del remote.files[f"{study}/{table['channel_paths'][1][0]}"]
    gone = fetch_missing(source, raw, [*table["channel_paths"][1], "plates/P1/not-listed.tiff"], fetching=fetching)
    assert gone.unavailable == ["plates/P1/not-listed.tiff", table["channel_paths"][1][0]] and gone.files_fetched == 1
    # A plate in a study the catalog does not list is an error naming the line, not a plate without images.
    elsewhere_folder = source.model_copy(
        update={"download": source.download.model_copy(update={"filesets": ("idr0098-other-study/2018",)})}
    )
    with pytest.raises(ParseError, match="download.filesets does not list: idr0098-other-study/2017/P2"):
        parse_source(elsewhere_folder, raw)
    unlisted = source.model_copy(update={"download": source.download.model_copy(update={"filesets": ()})})
    with pytest.raises(ParseError, match="idr0099-screenA-plates.tsv line 2: plate 'P2' lies in idr0098-other-study/, outside"):
        parse_source(unlisted, raw)


def test_image_zips_named_by_the_metadata_table_are_each_indexed_and_fetched(remote, tmp_path):
    """BBBC022's 100 zips: images_<plate>w<k>.zip, the plates those of the downloaded image table."""
    plates = {"Week1_22123": dict(list(IMAGES.items())[:2]), "Week1_22141": dict(list(IMAGES.items())[2:4])}
    for plate, members in plates.items():
        remote.put(f"/bbbc/{plate}_images.zip", _zip(members))
    table = b"plate,well\nWeek1_22123,B02\nWeek1_22141,B03\nWeek1_22123,B03\nWeek1_99999,C02\n"  # no zip for the last plate
    template = {"url": remote.base + "/bbbc/{plate}_images.zip", "values_from": "BBBC_test_metadata.csv"}
    source = _source(
        {"method": "https", "files": [{"url": remote.put("/bbbc/BBBC_test_metadata.csv", table), "role": "metadata"}, template]}
    )
    raw = tmp_path / "raw" / source.dir_name
    report = fetch_source(source, raw)
    assert report.files_indexed == 4 and not (raw / "Week1_22123").exists()
    assert any("Week1_99999_images.zip, named by BBBC_test_metadata.csv, is not on the server" in n for n in report.notes)
    wanted = [*plates["Week1_22141"], next(iter(plates["Week1_22123"]))]
    report = fetch_missing(source, raw, wanted)
    assert report.files_fetched == 3 and all((raw / p).read_bytes() == IMAGES[p] for p in wanted)
    # A server that stops honouring Range: the whole zip, found through the URL it was filled into.
    remote.honour_range = False
    (raw / wanted[0]).unlink()
    assert fetch_missing(source, raw, wanted).files_fetched == 1 and (raw / wanted[0]).read_bytes() == IMAGES[wanted[0]]
    # A value that cannot be part of a URL is an error naming the table, the row and the column.
    remote.put("/bbbc/BBBC_test_metadata.csv", b"plate,well\nWeek1_22123,B02\n../../etc,B03\n")
    with pytest.raises(DownloadError, match=r"bbbc_test: BBBC_test_metadata.csv data row 2: plate '../../etc' cannot be part of"):
        fetch_source(source, tmp_path / "raw2" / source.dir_name)
    missing_column = template | {"url": remote.base + "/bbbc/{Plate_ID}_images.zip"}
    source = _source(
        {"method": "https", "files": [{"url": remote.put("/bbbc/BBBC_test_metadata.csv", table), "role": "metadata"}, missing_column]}
    )
    with pytest.raises(DownloadError, match=r"bbbc_test: BBBC_test_metadata.csv cannot fill .*\{Plate_ID\}_images.zip"):
        fetch_source(source, tmp_path / "raw3" / source.dir_name)


@pytest.mark.parametrize(
    "remote_file, message",
    [
        ({"url": "https://example.org/{plate}.zip"}, "needs values_from"),
        ({"url": "https://example.org/a.zip", "values_from": "t.csv"}, "needs values_from .* and only it"),
        ({"url": "https://example.org/{plate}.zip", "values_from": "t.csv", "md5": "0" * 32}, "no size or md5"),
        ({"url": "https://example.org/{plate}.csv", "values_from": "t.csv", "role": "metadata"}, "role images"),
    ],
)
def test_a_url_filled_from_a_table_is_checked_when_the_catalog_loads(remote_file, message):
    with pytest.raises(ValueError, match=message):
        _source({"method": "https", "files": [remote_file]})


def test_an_idr_source_lists_only_metadata_files():
    with pytest.raises(ValueError, match="lists only its metadata files"):
        _source({"method": "idr", "accession": "idr0099-x", "files": [{"url": "https://example.org/a.zip"}]})


@pytest.mark.parametrize(
    "download, message",
    [
        ({"method": "https", "files": [{"url": "https://example.org/a.csv"}], "filesets": ["idr0098-x"]}, "only an IDR source"),
        ({"method": "idr", "accession": "idr0099-x", "filesets": ["../idr0098-x"]}, "'<IDR accession>"),
        ({"method": "idr", "accession": "idr0099-x", "filesets": ["idr0098-x/../../etc"]}, "'<IDR accession>"),
        ({"method": "idr", "accession": "idr0099-x", "filesets": ["idr0099-x/plates"]}, "in the study itself"),
        ({"method": "idr", "accession": "idr0099-x", "filesets": ["idr0098-x/a", "/idr0098-x/a/"]}, "listed twice"),
        ({"method": "idr", "accession": "idr0099-x", "filesets": ["idr0098-x", "idr0098-x/a"]}, "inside another"),
    ],
)
def test_filesets_are_other_idr_studies_folders(download, message):
    with pytest.raises(ValueError, match=message):
        _source(download)


def test_a_file_of_another_study_is_found_in_the_folder_named_after_it():
    filesets = ("idr0034-kilpinen-hipsci/20170421-original/Oli/Exp 2",)
    assert _source({"method": "idr", "accession": "idr0037-x", "filesets": ["/idr0034-y/a/"]}).download.filesets == ("idr0034-y/a",)
    assert study_location("idr0037-x", filesets, "idr0034-kilpinen-hipsci/20170421-original/Oli/Exp 2/Images/r01.tiff") == (
        "idr0034-kilpinen-hipsci",
        "20170421-original/Oli/Exp 2/Images/r01.tiff",
    )
    assert study_location("idr0037-x", filesets, "idr0034-kilpinen-hipsci/") == ("idr0034-kilpinen-hipsci", "")  # its folder listing
    assert study_location("idr0037-x", filesets, "images/r01.tiff") == ("idr0037-x", "images/r01.tiff")
    assert study_location("idr0037-x", filesets, "idr0034-kilpinen-hipsci") == ("idr0037-x", "idr0034-kilpinen-hipsci")  # a file
    assert study_location("idr0037-x", (), "idr0034-kilpinen-hipsci/a.tiff") == ("idr0037-x", "idr0034-kilpinen-hipsci/a.tiff")


def test_a_member_failing_its_crc_is_dropped_with_its_reason_and_the_others_fetched(bbbc, remote, tmp_path):
    source, archive = bbbc
    raw = tmp_path / "raw" / source.dir_name
    fetch_source(source, raw)
    bad, good = "Week1_22123/Week1_150607_B03_s1_w1.tif", "Week1_22123/Week1_150607_B03_s1_w2.tif"
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(bad)
    damaged = bytearray(archive)
    damaged[info.header_offset + 30 + len(bad) + info.compress_size // 2] ^= 0xFF  # inside the member's deflate data
    remote.put("/bbbc/BBBC_test_images.zip", bytes(damaged))
    report = fetch_missing(source, raw, [bad, good])
    assert report.unavailable == [bad] and not (raw / bad).exists()
    assert (raw / good).read_bytes() == IMAGES[good] and report.files_fetched == 1
    assert any(bad in note and "BBBC_test_images.zip" in note for note in report.notes), report.notes
    assert len([e for e in remote.gets("/bbbc/BBBC_test_images.zip") if e.range]) >= 3  # the bad member read twice, then the good


def test_an_archive_extracts_into_the_folder_its_metadata_expects(remote, tmp_path):
    """BBBC021's plate zips unpack to Week1_22123/, while image.csv says Week1/Week1_22123: extract_to."""
    members = {"Week1_22123/B02_s1_w1.tif": payload(20_000, 1), "Week1_22123/B02_s1_w2.tif": payload(20_000, 2)}
    url = remote.put("/bbbc/BBBC021_v1_images_Week1_22123.zip", _zip(members))
    source = _source({"method": "https", "files": [{"url": url, "extract_to": "Week1"}]})
    raw = tmp_path / "indexed" / source.dir_name
    fetch_source(source, raw)
    assert source_files(raw) == sorted(f"Week1/{m}" for m in members)
    report = fetch_missing(source, raw, ["Week1/Week1_22123/B02_s1_w1.tif"])
    assert report.files_fetched == 1 and (raw / "Week1/Week1_22123/B02_s1_w1.tif").read_bytes() == members["Week1_22123/B02_s1_w1.tif"]
    whole = tmp_path / "whole" / source.dir_name
    fetch_source(source, whole, full=True)
    assert sorted(str(p.relative_to(whole)) for p in whole.rglob("*.tif")) == sorted(f"Week1/{m}" for m in members)
    with pytest.raises(ValueError, match="extract_to"):
        _source({"method": "https", "files": [{"url": url, "extract_to": "../elsewhere"}]})
