"""The rehearsal's mirror server, driven through the production download clients: what they send
must be answered as the real servers answer, and each injected fault must surface as production
handles it (resume, retry, a verification error naming the file)."""

from __future__ import annotations

import http.client
import io
import os
import re
import socket
import subprocess
import sys
import threading
import time
import zipfile
from contextlib import contextmanager
from email.utils import formatdate
from pathlib import Path

import pytest
import requests

from cytoimagenet_assets.download import (
    DownloadError,
    fetch_file,
    fetch_idr_file,
    fetch_kaggle_competition,
    fetch_kaggle_dataset,
    fetch_member,
    fetch_members,
    head,
    idr_file_url,
    list_idr_folder,
    list_members,
)
from cytoimagenet_assets.download.fingerprint import remote_fingerprint
from cytoimagenet_assets.download.kaggle import CREDENTIALS_HINT, kaggle_dataset_url
from cytoimagenet_assets.download.mirrors import MIRRORS_ENV, Mirrors
from cytoimagenet_assets.rehearsal.server import Faults, MirrorServer, RangeNotSatisfiable, byte_range, bytes_on_server
from cytoimagenet_assets_tests.loopback import md5, payload

HOSTS = ["data.broadinstitute.org", "ftp.ebi.ac.uk", "storage.googleapis.com", "www.kaggle.com", "http://spidey.ccbr.utoronto.ca"]
BBBC = "https://data.broadinstitute.org/bbbc"
LEUKEMIA = "andrewmvd/leukemia-classification"
HPA = "hpa-single-cell-image-classification"


def no_sleep(seconds: float) -> None:
    pass


def put(root: Path, url: str, body: bytes) -> Path:
    """Where the mirror folder keeps the file production fetches from ``url``."""
    path = root / url.split("://", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    (tmp_path / "mirror").mkdir()
    return tmp_path / "mirror"


@pytest.fixture
def serving(root, monkeypatch):
    """Starts a server on ``root`` and points CYTOIMAGENET_MIRRORS at it, as a rehearsal does."""

    @contextmanager
    def start(**options):
        with MirrorServer(root, **options) as server:
            monkeypatch.setenv(MIRRORS_ENV, server.mirrors(HOSTS))
            yield server

    return start


def test_byte_ranges_as_rfc_9110_reads_them():
    assert byte_range("bytes=0-0", 10) == (0, 0)
    assert byte_range("bytes=4-", 10) == (4, 9)
    assert byte_range("bytes=4-99", 10) == (4, 9)
    assert byte_range("bytes=-3", 10) == (7, 9)
    assert byte_range("bytes=-30", 10) == (0, 9)
    for ignored in (None, "", "bytes=5-3", "bytes=0-1,4-5", "items=0-1", "bytes=-", "bytes=x-1"):
        assert byte_range(ignored, 10) is None
    for past_the_end in ("bytes=10-", "bytes=-0", "bytes=10-20"):
        with pytest.raises(RangeNotSatisfiable):
            byte_range(past_the_end, 10)


def test_a_cut_connection_is_resumed_by_range_and_verified(root, serving, tmp_path):
    body = payload(400_000)
    put(root, f"{BBBC}/BBBC021/images.zip", body)
    with serving(faults=Faults(cut={"data.broadinstitute.org/bbbc": 150_000})) as server:
        result = fetch_file(f"{BBBC}/BBBC021/images.zip", tmp_path / "a" / "images.zip", label="bbbc021", md5=md5(body), sleep=no_sleep)
        assert (tmp_path / "a" / "images.zip").read_bytes() == body
        assert (result.resumed_from, result.bytes_downloaded, result.md5) == (150_000, 400_000, md5(body))
        again = fetch_file(f"{BBBC}/BBBC021/images.zip", tmp_path / "b" / "images.zip", label="bbbc021", md5=md5(body))
        assert again.resumed_from == 0  # only a file's first GET is cut
        stats = server.stats
    assert (stats.requests, stats.by_status, stats.faults) == (3, {200: 2, 206: 1}, {"cut": 1})
    assert stats.bytes_sent == stats.bytes_by_host["data.broadinstitute.org"] == 800_000
    assert bytes_on_server(root) == 400_000


def test_a_burst_of_500s_is_retried_and_a_server_that_always_fails_is_named(root, serving, tmp_path):
    put(root, f"{BBBC}/BBBC021/a.zip", b"a" * 1000)
    put(root, f"{BBBC}/BBBC022/b.zip", b"b" * 1000)
    with serving(faults=Faults(errors={"/data.broadinstitute.org/bbbc/BBBC021/": 3})) as server:
        fetch_file(f"{BBBC}/BBBC021/a.zip", tmp_path / "a.zip", label="bbbc021", sleep=no_sleep)
        assert (tmp_path / "a.zip").read_bytes() == b"a" * 1000
        server.faults.update(errors={"data.broadinstitute.org": -1})
        with pytest.raises(
            DownloadError,
            match=rf"^bbbc022: {BBBC}/BBBC022/b.zip \(mirror {server.url}/data\.broadinstitute\.org/bbbc/BBBC022/b\.zip\) "
            "failed after 6 attempts in a row: returned 500",
        ):
            fetch_file(f"{BBBC}/BBBC022/b.zip", tmp_path / "b.zip", label="bbbc022", sleep=no_sleep)
        server.faults.clear()
        fetch_file(f"{BBBC}/BBBC022/b.zip", tmp_path / "b.zip", label="bbbc022")
    assert server.stats.by_status == {500: 9, 200: 2} and server.stats.faults == {"error": 9}


def test_a_corrupt_body_fails_verification_naming_the_file_and_leaves_others_fine(root, serving, tmp_path):
    good, bad = payload(70_000, seed=1), payload(70_000, seed=2)
    put(root, f"{BBBC}/BBBC021/good.zip", good)
    put(root, f"{BBBC}/BBBC021/bad.zip", bad)
    with serving() as server:
        etag = head(f"{BBBC}/BBBC021/bad.zip", label="bbbc021").etag
        server.faults.update(corrupt={"data.broadinstitute.org/bbbc/BBBC021/bad.zip"})
        assert head(f"{BBBC}/BBBC021/bad.zip", label="bbbc021").etag == etag  # the server still claims the same file
        with pytest.raises(DownloadError, match=rf"bbbc021: {BBBC}/BBBC021/bad.zip failed verification: expected md5 {md5(bad)}, got "):
            fetch_file(f"{BBBC}/BBBC021/bad.zip", tmp_path / "bad.zip", label="bbbc021", md5=md5(bad))
        assert not (tmp_path / "bad.zip").exists() and not (tmp_path / ".bad.zip.part").exists()
        fetch_file(f"{BBBC}/BBBC021/good.zip", tmp_path / "good.zip", label="bbbc021", md5=md5(good))
        assert (tmp_path / "good.zip").read_bytes() == good
    assert server.stats.faults == {"corrupt": 1}


def test_zip_members_are_read_by_range(root, serving, tmp_path):
    members = {
        "rxrx1/metadata.csv": (b"site,well\n" * 5000, zipfile.ZIP_DEFLATED),
        "rxrx1/images/a.png": (payload(30_000), zipfile.ZIP_STORED),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, (data, method) in members.items():
            zf.writestr(name, data, compress_type=method)
    url = "https://storage.googleapis.com/rxrx/rxrx1/rxrx1-images.zip"
    put(root, url, buffer.getvalue())
    with serving() as server:
        listing = {m.name: m for m in list_members(url, label="rxrx1")}
        assert set(listing) == set(members)
        fetch_member(url, listing["rxrx1/metadata.csv"], tmp_path / "metadata.csv", label="rxrx1")
        assert (tmp_path / "metadata.csv").read_bytes() == members["rxrx1/metadata.csv"][0]
        result = fetch_members(url, ["rxrx1/images/a.png"], tmp_path / "raw", label="rxrx1", archive_cache_dir=tmp_path / "cache")
        assert result.method == "range" and (tmp_path / "raw/rxrx1/images/a.png").read_bytes() == members["rxrx1/images/a.png"][0]
    assert set(server.stats.by_status) == {206}  # never the whole archive


def test_folders_are_listed_as_ebi_lists_them(root, serving, tmp_path):
    study = root / "ftp.ebi.ac.uk/pub/databases/IDR/idr0016-wawer"
    for folder in ("Plate 24277", "2016-01-19-screens-bbbc", ".download"):
        (study / folder).mkdir(parents=True)
    (study / "README.txt").write_text("IDR")
    (study / "a b&c #1.csv").write_text("x")
    (study / "Plate 24277/A - 1(fld 1).tif").write_bytes(b"tif")
    with serving() as server:
        assert list_idr_folder(idr_file_url("idr0016-wawer", ""), label="idr0016") == [
            ("2016-01-19-screens-bbbc", True),
            ("Plate 24277", True),
            ("README.txt", False),
            ("a b&c #1.csv", False),
        ]
        assert list_idr_folder(idr_file_url("idr0016-wawer", "Plate 24277/"), label="idr0016") == [("A - 1(fld 1).tif", False)]
        fetch_idr_file("idr0016-wawer", "Plate 24277/A - 1(fld 1).tif", tmp_path / "a.tif", label="idr0016", use_aspera=False)
        assert (tmp_path / "a.tif").read_bytes() == b"tif"
        page = requests.get(f"{server.url}/ftp.ebi.ac.uk/pub/databases/IDR/idr0016-wawer/").text
        assert '<a href="?C=N;O=D">Name</a>' in page and '<a href="/ftp.ebi.ac.uk/pub/databases/IDR/">Parent Directory</a>' in page
        assert '<a href="Plate%2024277/">Plate 24277/</a>' in page and '<a href="a%20b%26c%20%231.csv">a b&amp;c #1.csv</a>' in page
        redirect = requests.get(f"{server.url}/ftp.ebi.ac.uk/pub/databases/IDR/idr0016-wawer", allow_redirects=False)
        assert (redirect.status_code, redirect.headers["Location"]) == (301, "/ftp.ebi.ac.uk/pub/databases/IDR/idr0016-wawer/")


def test_kaggle_answers_credentials_and_rules_and_redirects_to_signed_storage(root, serving, tmp_path):
    archive = payload(50_000)
    put(root, kaggle_dataset_url(LEUKEMIA), archive)
    put(root, f"https://www.kaggle.com/api/v1/competitions/data/download-all/{HPA}", b"hpa")
    forbidden = [f"www.kaggle.com/api/v1/competitions/data/download-all/{HPA}"]
    with serving(kaggle_auth=("me", "secret"), kaggle_forbidden=forbidden) as server:
        result = fetch_kaggle_dataset(LEUKEMIA, tmp_path / "d.zip", label="kag_leukemia", username="me", key="secret")
        assert (tmp_path / "d.zip").read_bytes() == archive and not result.reused
        # recognised again: HEAD follows the redirect, the signed URL refuses HEAD, a one-byte GET answers instead
        assert fetch_kaggle_dataset(LEUKEMIA, tmp_path / "d.zip", label="kag_leukemia", username="me", key="secret").reused
        with pytest.raises(DownloadError, match=rf"kag_leukemia: .* returned 401 Unauthorized: {re.escape(CREDENTIALS_HINT)}"):
            fetch_kaggle_dataset(LEUKEMIA, tmp_path / "e.zip", label="kag_leukemia", username="me", key="wrong")
        with pytest.raises(DownloadError, match=rf"returned 403 Forbidden: accept the competition rules at .*/c/{HPA}/rules"):
            fetch_kaggle_competition(HPA, tmp_path / "hpa.zip", label="kag_hpa", username="me", key="secret")
        api = requests.get(f"{server.url}/{kaggle_dataset_url(LEUKEMIA).split('://')[1]}", auth=("me", "secret"), allow_redirects=False)
        assert api.status_code == 302
        assert re.fullmatch(
            rf"{server.url}/storage.googleapis.com/kaggle-downloads/datasets/download/{LEUKEMIA}\?.*X-Goog-Signature=\w+",
            api.headers["Location"],
        )
        assert requests.get(api.headers["Location"]).content == archive  # the signed URL needs no credentials
    assert server.stats.by_status[302] >= 3 and server.stats.by_status[403] == 2


def test_head_and_conditional_requests_serve_the_weekly_check(root, serving):
    body = payload(1000)
    file = put(root, f"{BBBC}/BBBC021/images.zip", body)
    url = f"{BBBC}/BBBC021/images.zip"
    with serving() as server:
        etag, last_modified, size = remote_fingerprint([url], "bbbc021")[url].split("|")
        assert etag.startswith('"') and last_modified.endswith(" GMT") and size == "1000"
        mirrored = f"{server.url}/data.broadinstitute.org/bbbc/BBBC021/images.zip"
        headed = requests.head(mirrored)
        assert (headed.headers["Content-Length"], headed.headers["Accept-Ranges"], headed.content) == ("1000", "bytes", b"")
        assert requests.get(mirrored, headers={"If-None-Match": f'W/"x", {etag}'}).status_code == 304
        assert requests.get(mirrored, headers={"If-Modified-Since": last_modified}).status_code == 304
        assert requests.get(mirrored, headers={"If-Modified-Since": formatdate(0, usegmt=True)}).content == body
        suffix = requests.get(mirrored, headers={"Range": "bytes=-10"})
        assert (suffix.status_code, suffix.headers["Content-Range"], suffix.content) == (206, "bytes 990-999/1000", body[-10:])
        assert requests.get(mirrored, headers={"Range": "bytes=600-"}).content == body[600:]
        assert requests.get(mirrored, headers={"Range": "bytes=600-", "If-Range": last_modified}).content == body[600:]
        assert requests.get(mirrored, headers={"Range": "bytes=600-", "If-Range": '"changed"'}).content == body  # whole, 200
        past = requests.get(mirrored, headers={"Range": "bytes=1000-"})
        assert (past.status_code, past.headers["Content-Range"]) == (416, "bytes */1000")
        os.utime(file, (time.time() + 5, time.time() + 5))
        assert remote_fingerprint([url], "bbbc021")[url] != f"{etag}|{last_modified}|{size}"


def test_the_server_stops_when_idle_or_at_the_end_of_its_lifetime_but_not_mid_transfer(root, monkeypatch):
    put(root, f"{BBBC}/a.bin", payload(12_000))
    server = MirrorServer(root, idle_timeout_s=0.3, faults=Faults(slow={"data.broadinstitute.org": 20_000}))
    started = time.monotonic()
    assert len(requests.get(f"{server.url}/data.broadinstitute.org/bbbc/a.bin").content) == 12_000  # 0.6 s at 20 kB/s
    assert server.wait(5) and time.monotonic() - started >= 0.9
    assert server.stats.faults == {"slow": 1}
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/data.broadinstitute.org/bbbc/a.bin", timeout=2)
    started = time.monotonic()
    assert MirrorServer(root, idle_timeout_s=60, lifetime_s=0.3).wait(5) and time.monotonic() - started < 2


def test_connections_are_bounded(root, serving, tmp_path):
    for i in range(5):
        put(root, f"{BBBC}/f{i}.bin", payload(20_000, seed=i))
    with serving(max_connections=2, queue_wait_s=0.3, faults=Faults(slow={"data.broadinstitute.org": 200_000})) as server:
        held = [socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) for _ in range(2)]
        time.sleep(0.1)
        busy = requests.get(f"{server.url}/data.broadinstitute.org/bbbc/f0.bin")
        assert (busy.status_code, busy.headers["Retry-After"]) == (503, "1")
        for connection in held:
            connection.close()
        server.queue_wait_s = 10
        fetched = []
        workers = [
            threading.Thread(target=lambda i=i: fetched.append(fetch_file(f"{BBBC}/f{i}.bin", tmp_path / f"f{i}.bin", label="bbbc")))
            for i in range(5)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(20)
    assert len(fetched) == 5 and all((tmp_path / f"f{i}.bin").read_bytes() == payload(20_000, seed=i) for i in range(5))
    assert server.stats.peak_connections == 2 and server.stats.by_status == {503: 1, 200: 5}


def test_paths_out_of_the_folder_are_refused(root, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    (root / "data.broadinstitute.org").mkdir()
    (root / "data.broadinstitute.org/inside.txt").write_text("inside")
    (root / "data.broadinstitute.org/out").symlink_to(tmp_path / "secret.txt")
    (root / "data.broadinstitute.org/outdir").symlink_to(tmp_path)
    (root / "data.broadinstitute.org/alias").symlink_to(root / "data.broadinstitute.org/inside.txt")
    with MirrorServer(root) as server:
        connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=5)

        def status(path: str) -> int:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            return response.status

        assert status("/data.broadinstitute.org/alias") == 200  # a link inside the folder is fine
        for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/data.broadinstitute.org/out", "/data.broadinstitute.org/outdir/secret.txt"):
            assert status(path) == 403, path
        assert status("/data.broadinstitute.org/missing.txt") == 404
        assert status("/data.broadinstitute.org/inside.txt/") == 404
        listing = requests.get(f"{server.url}/data.broadinstitute.org/").text
        assert "alias" in listing and "inside.txt" in listing and "out" not in listing.split("Parent Directory", 1)[1]


def test_mirrors_and_the_command_line(root):
    put(root, f"{BBBC}/a.bin", b"abc")
    with MirrorServer(root) as server:
        text = server.mirrors(["data.broadinstitute.org", "http://spidey.ccbr.utoronto.ca"])
        assert Mirrors.parse(text).rewrite(f"{BBBC}/a.bin") == f"{server.url}/data.broadinstitute.org/bbbc/a.bin"
        assert Mirrors.parse(text).rewrite("http://spidey.ccbr.utoronto.ca/x") == f"{server.url}/spidey.ccbr.utoronto.ca/x"
    command = [
        sys.executable,
        "-m",
        "cytoimagenet_assets.rehearsal.server",
        "--root",
        str(root),
        "--idle-timeout",
        "1",
        "--error",
        "x.org=2",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "NO_PROXY": "127.0.0.1"}) as cli:
        url, mirrors = cli.stdout.readline().strip(), cli.stdout.readline().strip()
        assert mirrors == f"{MIRRORS_ENV}=https://data.broadinstitute.org={url}/data.broadinstitute.org"
        assert requests.get(f"{url}/data.broadinstitute.org/bbbc/a.bin").content == b"abc"
        report = cli.stdout.read()
    assert cli.returncode == 0 and "requests: 1 (200: 1)" in report and "bytes on server: 3 B" in report
