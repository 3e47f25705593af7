"""Mirrors: download URLs redirected by prefix (CYTOIMAGENET_MIRRORS or a catalog's mirrors:), for
every downloader, with the original URL kept as the file's identity and credentials never passed on."""

import pytest

from cytoimagenet_assets.catalog import CatalogError, parse_catalog
from cytoimagenet_assets.defs.resources import DownloadsResource
from cytoimagenet_assets.download import DownloadError, fetch_file, fetch_kaggle_dataset, idr_file_url, list_idr_folder
from cytoimagenet_assets.download.fingerprint import remote_fingerprint
from cytoimagenet_assets.download.http import record_path
from cytoimagenet_assets.download.mirrors import MIRRORS_ENV, Mirrors, configured_mirrors
from cytoimagenet_assets_tests.loopback import Remote, serve
from cytoimagenet_assets_tests.test_download import APACHE_INDEX, build_zip, payload

BROAD = "https://data.broadinstitute.org/bbbc"


def test_the_longest_prefix_wins_and_a_bad_entry_is_named():
    mirrors = Mirrors.parse(f"{BROAD}=http://cache/bbbc, {BROAD}/BBBC021=http://fast/021\nhttps://x.org=http://y.org")
    assert mirrors.rewrite(f"{BROAD}/BBBC021/a.zip") == "http://fast/021/a.zip"
    assert mirrors.rewrite(f"{BROAD}/BBBC022/a.zip") == "http://cache/bbbc/BBBC022/a.zip"
    assert mirrors.rewrite("https://elsewhere.org/a.zip") == "https://elsewhere.org/a.zip"
    with pytest.raises(ValueError, match=rf"{MIRRORS_ENV}: 'https://x.org' is not <prefix>=<replacement>"):
        Mirrors.parse("https://x.org")
    with pytest.raises(ValueError, match=r"'cache/bbbc' in .* is not an http\(s\)/ftp URL"):
        Mirrors.parse(f"{BROAD}=cache/bbbc")


def test_a_prefix_matches_whole_segments_and_a_malformed_entry_is_refused():
    """A prefix cut mid-name would send another folder to the wrong host; a pair joined by ';' or
    carrying a query would download from a URL nobody meant."""
    mirrors = Mirrors.parse(f"{BROAD}/bb=http://a, {BROAD}/BBBC021/=http://fast/021, https://x.org=http://y.org/cache/")
    assert mirrors.rewrite(f"{BROAD}/bbbc/x.zip") == f"{BROAD}/bbbc/x.zip"
    assert mirrors.rewrite(f"{BROAD}/bb/x.zip") == "http://a/x.zip"
    assert mirrors.rewrite(f"{BROAD}/BBBC021/a.zip") == "http://fast/021/a.zip"  # no '//' either way round
    assert mirrors.rewrite("https://x.org/a.zip") == "http://y.org/cache/a.zip"
    for text, problem in (
        (f"{BROAD}=http://cache/bb bc", rf"'http://cache/bb bc' in {BROAD}=http://cache/bb bc contains a space"),
        (f"{BROAD}=http://cache/?token=1", r"'http://cache/\?token=1' in .* has a query"),
        (f"{BROAD}=http://cache;https://x.org=http://y", r"'http://cache;https://x.org=http://y' in .* contains ';' or '='"),
        (f"{BROAD}=http://a, {BROAD}/=http://b", rf"prefix '{BROAD}' is named twice \({BROAD}=http://a and {BROAD}/=http://b\)"),
    ):
        with pytest.raises(ValueError, match=rf"{MIRRORS_ENV}: {problem}"):
            Mirrors.parse(text)


def test_a_download_goes_to_its_mirror_and_keeps_its_own_url(remote, tmp_path, monkeypatch):
    body = payload(50_000)
    remote.put("/cache/bbbc/BBBC021/images.zip", body)
    monkeypatch.setenv(MIRRORS_ENV, f"{BROAD}={remote.base}/cache/bbbc")
    result = fetch_file(f"{BROAD}/BBBC021/images.zip", tmp_path / "images.zip", label="bbbc021")
    assert (tmp_path / "images.zip").read_bytes() == body and result.bytes_downloaded == len(body)
    assert [(e.path, e.status) for e in remote.gets()] == [("/cache/bbbc/BBBC021/images.zip", 200)]
    assert f'"url": "{BROAD}/BBBC021/images.zip"' in record_path(tmp_path / "images.zip").read_text()  # the logical URL
    with pytest.raises(
        DownloadError, match=rf"bbbc021: {BROAD}/BBBC021/gone.zip \(mirror {remote.base}/cache/bbbc/BBBC021/gone.zip\) returned 404"
    ):
        fetch_file(f"{BROAD}/BBBC021/gone.zip", tmp_path / "gone.zip", label="bbbc021")


def test_kaggle_credentials_reach_the_mirror_but_not_the_host_it_redirects_to(remote, tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    archive = build_zip({"leukemia/a.bmp": (b"bmp", 0)})
    for storage in serve(Remote()):
        storage.put("/signed/dataset.zip", archive)
        elsewhere = storage.base.replace("127.0.0.1", "localhost")  # another host name: requests drops credentials
        remote.auth = ("me", "secret")
        remote.redirects["/kaggle/api/v1/datasets/download/andrewmvd/leukemia-classification"] = f"{elsewhere}/signed/dataset.zip"
        monkeypatch.setenv(MIRRORS_ENV, f"https://www.kaggle.com/api/v1={remote.base}/kaggle/api/v1")
        fetch_kaggle_dataset("andrewmvd/leukemia-classification", tmp_path / "d.zip", label="kag_leukemia", username="me", key="secret")
        assert (tmp_path / "d.zip").read_bytes() == archive
        assert [(e.path, e.status, e.authorization) for e in remote.gets()] == [
            ("/kaggle/api/v1/datasets/download/andrewmvd/leukemia-classification", 302, True)
        ]
        assert [(e.path, e.status, e.authorization) for e in storage.gets()] == [("/signed/dataset.zip", 200, False)]


def test_the_idr_mirror_and_the_weekly_check_follow_mirrors_too(remote, monkeypatch):
    idr = "https://ftp.ebi.ac.uk/pub/databases/IDR"
    remote.put("/idr/idr0016-wawer-bioactivecompoundprofiling/", APACHE_INDEX.encode(), etag='"v1"')
    mirrors = Mirrors.of({idr: f"{remote.base}/idr"})
    monkeypatch.setenv(MIRRORS_ENV, f"{idr}={remote.base}/idr")
    entries = list_idr_folder(idr_file_url("idr0016-wawer-bioactivecompoundprofiling", ""), label="idr0016")
    assert ("idr0016-screenA-annotation.csv.gz", False) in entries
    monkeypatch.delenv(MIRRORS_ENV)
    url = f"{idr}/idr0016-wawer-bioactivecompoundprofiling/"
    assert remote_fingerprint([url], "idr0016", mirrors)[url].startswith('"v1"|')


def test_a_catalog_names_its_mirrors_and_the_environment_wins(monkeypatch):
    base = {"name": "mine", "sources": []}
    catalog = parse_catalog({**base, "mirrors": {BROAD: "http://cache/bbbc", "https://x.org": "http://y.org"}})
    monkeypatch.setenv(MIRRORS_ENV, f"{BROAD}=http://closer/bbbc")
    assert configured_mirrors(catalog.mirrors).rewrite(f"{BROAD}/a.zip") == "http://closer/bbbc/a.zip"
    assert DownloadsResource(mirrors=dict(catalog.mirrors)).fetching(print).mirrors.rewrite("https://x.org/a") == "http://y.org/a"
    with pytest.raises(CatalogError, match=r"field 'mirrors': .*'cache' in \S+=cache is not an http\(s\)/ftp URL"):
        parse_catalog({**base, "mirrors": {BROAD: "cache"}})
    with pytest.raises(CatalogError, match=r"field 'mirrors': .*has a query"):  # checked as the environment's mirrors are
        parse_catalog({**base, "mirrors": {BROAD: "http://cache/bbbc?x=1"}})
