"""The download transport against an in-process loopback HTTP server (no network beyond 127.0.0.1)."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import zipfile
from collections import namedtuple
from pathlib import Path

import pytest

from cytoimagenet_assets.download import (
    ArchiveError,
    DownloadError,
    Progress,
    aspera_command,
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
    safe_extract,
)
from cytoimagenet_assets.download import idr as idr_module
from cytoimagenet_assets.download.http import part_path, record_path
from cytoimagenet_assets.download.kaggle import KaggleAuth
from cytoimagenet_assets_tests.loopback import md5, payload


class Sleeps(list):
    """A fake ``sleep`` that records the delays asked for."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# ---------------------------------------------------------------- fetch_file


def test_full_download_is_verified_and_reported(remote, tmp_path):
    body = payload(3 << 20)
    url = remote.put("/rxrx/rxrx1-metadata.zip", body)
    reports: list[Progress] = []
    dest = tmp_path / "raw" / "rxrx1-metadata.zip"
    result = fetch_file(url, dest, label="rec_rxrx1", size=len(body), md5=md5(body), progress=reports.append, chunk_size=1 << 16)
    assert dest.read_bytes() == body
    assert (result.path, result.bytes_downloaded, result.bytes_total, result.reused, result.resumed_from, result.md5) == (
        dest,
        len(body),
        len(body),
        False,
        0,
        md5(body),
    )
    assert [(e.method, e.range, e.status) for e in remote.log] == [("GET", None, 200)]
    assert not part_path(dest).exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == [".download", "rxrx1-metadata.zip"]
    assert (reports[-1].done, reports[-1].total, reports[-1].eta_s) == (len(body), len(body), 0.0)
    assert str(reports[-1]).startswith("rec_rxrx1 rxrx1-metadata.zip: 3.0 MiB / 3.0 MiB (100%), ")


def test_progress_line_reads_like_a_log():
    line = Progress(
        "rec_rxrx1", "https://storage.googleapis.com/rxrx/rxrx1/rxrx1-metadata.zip", 512 << 20, int(1.2 * (1 << 30)), 85.3 * (1 << 20), 9.2
    )
    assert str(line) == "rec_rxrx1 rxrx1-metadata.zip: 512.0 MiB / 1.2 GiB (41%), 85.3 MiB/s, ETA 9 s"
    assert Progress("x", "https://h/a/b%20c.tif", 100, None, 0.0, None).format() == "x b c.tif: 100 B, 0 B/s"


def test_verified_file_is_not_fetched_again(remote, tmp_path):
    body = payload(200_000)
    url = remote.put("/f.bin", body)
    dest = tmp_path / "f.bin"
    fetch_file(url, dest, label="src", md5=md5(body))
    remote.log.clear()
    again = fetch_file(url, dest, label="src", md5=md5(body))
    assert again.reused and again.bytes_downloaded == 0 and again.md5 == md5(body)
    assert remote.log == []  # known md5, recorded for this very file: not even a HEAD


def test_without_checksums_a_record_and_a_head_decide(remote, tmp_path):
    body = payload(100_000)
    url = remote.put("/g.bin", body)
    dest = tmp_path / "g.bin"
    fetch_file(url, dest, label="src")
    remote.log.clear()
    assert fetch_file(url, dest, label="src").reused
    assert [e.method for e in remote.log] == ["HEAD"]
    changed = payload(100_000, seed=1)  # same size, new content: only the ETag tells
    remote.put("/g.bin", changed)
    remote.log.clear()
    result = fetch_file(url, dest, label="src")
    assert not result.reused and dest.read_bytes() == changed
    assert [e.method for e in remote.log] == ["HEAD", "GET"]


CUT = 24 * (1 << 14)  # on a chunk boundary: a chunk the cut splits never reaches the client, so the .part ends at the cut


def test_cut_connection_resumes_from_the_cut(remote, tmp_path):
    body = payload(1 << 20)
    url = remote.put("/big.bin", body)
    remote.cut_first_get["/big.bin"] = CUT
    sleeps = Sleeps()
    dest = tmp_path / "big.bin"
    result = fetch_file(url, dest, label="src", md5=md5(body), sleep=sleeps, backoff_s=0.5, chunk_size=1 << 14)
    assert dest.read_bytes() == body
    gets = remote.gets()
    assert [(g.status, g.sent, g.range, g.if_range) for g in gets] == [
        (200, CUT, None, None),
        (206, len(body) - CUT, f"bytes={CUT}-", remote.etags["/big.bin"]),
    ]
    assert (result.resumed_from, result.bytes_downloaded) == (CUT, len(body))
    assert sleeps == [0.5]


@pytest.mark.parametrize("how", ["etag_changed", "ranges_ignored"])
def test_resume_restarts_from_zero_when_it_cannot_continue(remote, tmp_path, how):
    old, new = payload(500_000, seed=1), payload(600_000, seed=2)
    url = remote.put("/c.bin", old)
    remote.cut_first_get["/c.bin"] = CUT
    dest = tmp_path / "c.bin"
    with pytest.raises(DownloadError, match="failed after 1 attempt: connection broke"):
        fetch_file(url, dest, label="src", retries=0, chunk_size=1 << 14)
    assert part_path(dest).stat().st_size == CUT and not dest.exists()
    old_etag = remote.etags["/c.bin"]
    if how == "etag_changed":
        remote.put("/c.bin", new)
    else:
        new = old
        remote.honour_range = False
    result = fetch_file(url, dest, label="src", sleep=Sleeps())
    assert [(g.range, g.if_range, g.status) for g in remote.gets()[1:]] == [(f"bytes={CUT}-", old_etag, 200)]
    assert dest.read_bytes() == new
    assert (result.resumed_from, result.bytes_downloaded, result.bytes_total) == (0, len(new), len(new))


def test_checksum_mismatch_leaves_nothing_behind(remote, tmp_path):
    body = payload(50_000)
    url = remote.put("/m.bin", body)
    dest = tmp_path / "m.bin"
    wrong = "0" * 32
    with pytest.raises(DownloadError) as caught:
        fetch_file(url, dest, label="src", md5=wrong)
    assert str(caught.value) == f"src: {url} failed verification: expected md5 {wrong}, got {md5(body)}"
    assert not dest.exists() and not part_path(dest).exists() and not record_path(dest).exists()


def test_size_differing_from_the_catalog_fails_before_downloading(remote, tmp_path):
    body = payload(50_000)
    url = remote.put("/s.bin", body)
    dest = tmp_path / "s.bin"
    with pytest.raises(DownloadError, match=f"is {len(body)} bytes on the server, expected {len(body) + 1}"):
        fetch_file(url, dest, label="src", size=len(body) + 1)
    assert not dest.exists() and not part_path(dest).exists()


def test_404_names_the_url_and_the_label_without_retrying(remote, tmp_path):
    sleeps = Sleeps()
    url = remote.base + "/missing.zip"
    with pytest.raises(DownloadError) as caught:
        fetch_file(url, tmp_path / "missing.zip", label="bbbc021", sleep=sleeps)
    assert str(caught.value) == f"bbbc021: {url} returned 404 Not Found"
    assert caught.value.status == 404 and sleeps == [] and len(remote.log) == 1


def test_server_errors_are_retried_with_backoff(remote, tmp_path):
    body = payload(10_000)
    url = remote.put("/flaky.bin", body)
    remote.fail["/flaky.bin"] = [503, 429, 500]
    sleeps = Sleeps()
    result = fetch_file(url, tmp_path / "flaky.bin", label="src", sleep=sleeps, backoff_s=1.0)
    assert (tmp_path / "flaky.bin").read_bytes() == body and result.bytes_downloaded == len(body)
    assert sleeps == [1.0, 7.0, 4.0]  # exponential, except where Retry-After says otherwise
    assert [e.status for e in remote.log] == [503, 429, 500, 200]


def test_retries_run_out(remote, tmp_path):
    url = remote.put("/down.bin", b"x")
    remote.fail["/down.bin"] = [502] * 10
    sleeps = Sleeps()
    with pytest.raises(DownloadError, match=r"^src: .*/down.bin failed after 3 attempts in a row: returned 502 Bad Gateway$"):
        fetch_file(url, tmp_path / "down.bin", label="src", retries=2, sleep=sleeps)
    assert sleeps == [1.0, 2.0] and len(remote.log) == 3


def test_too_little_disk_space_is_refused(remote, tmp_path, monkeypatch):
    url = remote.put("/huge.bin", payload(3 << 20))
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda folder: Usage(10 << 30, 10 << 30, 1000))
    with pytest.raises(DownloadError) as caught:
        fetch_file(url, tmp_path / "huge.bin", label="rec_rxrx1")
    assert str(caught.value) == (f"rec_rxrx1: {url} needs 3.0 MiB (+ 64.0 MiB margin) in {tmp_path}, but only 1000 B is free")
    assert list(tmp_path.iterdir()) == []


def test_head_reports_size_and_validators(remote):
    url = remote.put("/h.bin", payload(1234))
    info = head(url, label="src")
    assert (info.size, info.etag, info.accepts_ranges) == (1234, remote.etags["/h.bin"], True)


# ---------------------------------------------------------------- remote zips


def build_zip(members: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, (data, method) in members.items():
            zf.writestr(name, data, compress_type=method)
    return buf.getvalue()


CSV = b"site_id,well_id,cell_type,sirna\n" + b"".join(f"HUVEC-1_1_B{i:02d}_1,HUVEC-1_1_B{i:02d},HUVEC,s{i}\n".encode() for i in range(5000))
ZIP_MEMBERS = {
    "rxrx1/images/big.bin": (payload(2 << 20), zipfile.ZIP_STORED),
    "rxrx1/metadata.csv": (CSV, zipfile.ZIP_DEFLATED),
    "rxrx1/README.txt": (b"RxRx1\n", zipfile.ZIP_STORED),
}


def test_list_members_matches_zipfile_and_one_member_is_fetched_by_range(remote, tmp_path):
    archive = build_zip(ZIP_MEMBERS)
    url = remote.put("/rxrx1-images.zip", archive)
    members = list_members(url, label="rec_rxrx1")
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        expected = [(i.filename, i.header_offset, i.compress_size, i.file_size, i.compress_type, i.CRC) for i in zf.infolist()]
    assert [(m.name, m.header_offset, m.compressed_size, m.file_size, m.compress_type, m.crc32) for m in members] == expected
    listing_bytes = sum(e.sent for e in remote.log)
    meta = next(m for m in members if m.name == "rxrx1/metadata.csv")
    dest = tmp_path / "rxrx1" / "metadata.csv"
    transferred = fetch_member(url, meta, dest, label="rec_rxrx1")
    assert dest.read_bytes() == CSV
    assert transferred == remote.log[-1].sent < meta.compressed_size + 2048
    assert listing_bytes + transferred < len(archive) / 10
    assert all(e.range and e.status == 206 for e in remote.log)
    stored = next(m for m in members if m.name == "rxrx1/README.txt")
    fetch_member(url, stored, tmp_path / "README.txt", label="rec_rxrx1")
    assert (tmp_path / "README.txt").read_bytes() == b"RxRx1\n"


def test_zip64_sizes_offsets_and_end_records_are_read(remote, tmp_path, monkeypatch):
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)  # every size and offset above 1000 bytes goes into ZIP64 fields
    members = {f"plate/{i}.png": (payload(3000 + i, seed=i), zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED) for i in range(5)}
    archive = build_zip(members)
    monkeypatch.undo()
    assert b"PK\x06\x06" in archive and b"PK\x06\x07" in archive
    url = remote.put("/zip64.zip", archive)
    listed = list_members(url, label="rec_rxrx1")
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert [(m.name, m.header_offset, m.compressed_size, m.file_size) for m in listed] == [
            (i.filename, i.header_offset, i.compress_size, i.file_size) for i in zf.infolist()
        ]
    assert listed[-1].header_offset > 1000
    fetch_member(url, listed[-1], tmp_path / "4.png", label="rec_rxrx1")
    assert (tmp_path / "4.png").read_bytes() == members["plate/4.png"][0]


def test_zip64_with_more_than_65535_members(remote, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(65_537):
            zf.writestr(f"f/{i}", str(i).encode())
    url = remote.put("/many.zip", buf.getvalue())
    listed = list_members(url, label="many")
    assert len(listed) == 65_537 and listed[-1].name == "f/65536"
    fetch_member(url, listed[-1], tmp_path / "last", label="many")
    assert (tmp_path / "last").read_bytes() == b"65536"


def test_fetch_members_by_range_then_already_present(remote, tmp_path):
    url = remote.put("/rxrx1-images.zip", build_zip(ZIP_MEMBERS))
    names = ["rxrx1/metadata.csv", "rxrx1/README.txt"]
    raw = tmp_path / "raw"
    result = fetch_members(url, names, raw, label="rec_rxrx1", archive_cache_dir=tmp_path / "cache")
    assert result.method == "range" and result.paths == [raw / n for n in names]
    assert [p.read_bytes() for p in result.paths] == [CSV, b"RxRx1\n"]
    assert result.bytes_transferred == sum(e.sent for e in remote.log) < 200_000
    assert not (tmp_path / "cache").exists()
    remote.log.clear()
    again = fetch_members(url, names, raw, label="rec_rxrx1", archive_cache_dir=tmp_path / "cache")
    assert (again.method, again.already_present) == ("range", 2)
    assert len(remote.log) == 1  # the tail (with the central directory in it), no member


def test_fetch_members_falls_back_to_the_whole_archive_when_ranges_are_ignored(remote, tmp_path):
    archive = build_zip(ZIP_MEMBERS)
    url = remote.put("/rxrx1-images.zip", archive)
    remote.honour_range = False
    raw, cache = tmp_path / "raw", tmp_path / "cache"
    result = fetch_members(url, ["rxrx1/metadata.csv"], raw, label="rec_rxrx1", archive_cache_dir=cache)
    assert result.method == "whole_archive" and result.bytes_transferred >= len(archive)
    assert (raw / "rxrx1" / "metadata.csv").read_bytes() == CSV
    assert sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file()) == ["rxrx1/metadata.csv"]
    assert (cache / "rxrx1-images.zip").read_bytes() == archive
    assert [(e.range, e.status) for e in remote.gets()] == [(f"bytes=-{65535 + 42}", 200), (None, 200)]


def test_fetch_members_falls_back_for_compression_it_cannot_inflate(remote, tmp_path):
    archive = build_zip({"a.txt": (b"a" * 5000, zipfile.ZIP_BZIP2), "b.txt": (b"b", zipfile.ZIP_STORED)})
    url = remote.put("/bz.zip", archive)
    with pytest.raises(DownloadError, match=r"compression method 12 \(bzip2\)"):
        fetch_member(url, list_members(url, label="x")[0], tmp_path / "a.txt", label="x")
    result = fetch_members(url, ["a.txt"], tmp_path / "raw", label="x", archive_cache_dir=tmp_path / "cache")
    assert result.method == "whole_archive" and (tmp_path / "raw" / "a.txt").read_bytes() == b"a" * 5000


# ---------------------------------------------------------------- archives


def build_tar(entries: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tf.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size, info.mtime = len(entry[1]), 1_600_000_000
                tf.addfile(info, io.BytesIO(entry[1]))
    return buf.getvalue()


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_safe_extract_zip_and_tar_is_idempotent(tmp_path):
    zipped = tmp_path / "a.zip"
    zipped.write_bytes(
        build_zip({"d/": (b"", zipfile.ZIP_STORED), "d/x.txt": (b"x" * 1000, zipfile.ZIP_DEFLATED), "y.txt": (b"y", zipfile.ZIP_STORED)})
    )
    tarred = tmp_path / "b.tar.gz"
    tarred.write_bytes(build_tar([("p/1.tif", b"one"), ("p/2.tif", b"two"), link("p/latest.tif", "2.tif")]))
    target = tmp_path / "out"
    assert safe_extract(zipped, target, label="bbbc") == ["d/x.txt", "y.txt"]
    assert safe_extract(tarred, target, label="bbbc") == ["p/1.tif", "p/2.tif", "p/latest.tif"]
    snapshot = {p.relative_to(target).as_posix(): (p.read_bytes(), p.stat().st_mtime) for p in target.rglob("*") if p.is_file()}
    assert safe_extract(tarred, target, label="bbbc") == ["p/1.tif", "p/2.tif", "p/latest.tif"]
    assert safe_extract(zipped, target, label="bbbc") == ["d/x.txt", "y.txt"]
    assert {p.relative_to(target).as_posix(): (p.read_bytes(), p.stat().st_mtime) for p in target.rglob("*") if p.is_file()} == snapshot
    assert sorted(snapshot) == ["d/x.txt", "p/1.tif", "p/2.tif", "p/latest.tif", "y.txt"]
    assert snapshot["p/1.tif"] == (b"one", 1_600_000_000)
    assert os.readlink(target / "p" / "latest.tif") == "2.tif"
    assert sorted(p.name for p in target.iterdir()) == ["d", "p", "y.txt"]  # no staging left


def test_members_restricts_extraction(tmp_path):
    tarred = tmp_path / "b.tar"
    tarred.write_bytes(build_tar([("p/1.tif", b"one"), ("p/2.tif", b"two")], mode="w"))
    assert safe_extract(tarred, tmp_path / "out", label="x", members=["p/2.tif"]) == ["p/2.tif"]
    assert [p.name for p in (tmp_path / "out" / "p").iterdir()] == ["2.tif"]
    with pytest.raises(ArchiveError, match=r"x: archive b.tar has no member 'p/3.tif'"):
        safe_extract(tarred, tmp_path / "out", label="x", members=["p/3.tif"])


@pytest.mark.parametrize(
    "kind, entries, offending",
    [
        ("zip", {"ok.txt": b"fine", "../evil.txt": b"x"}, "'../evil.txt' has a '..' component"),
        ("zip", {"/abs.txt": b"x"}, "'/abs.txt' has an absolute path"),
        ("zip", {"C:/win.txt": b"x"}, "'C:/win.txt' has an absolute path"),
        ("tar", [("a/../../evil.txt", b"x")], "'a/../../evil.txt' has a '..' component"),
        ("tar", [("/etc/evil", b"x")], "'/etc/evil' has an absolute path"),
        ("tar", [link("up", "../../outside")], "'up' is a symlink to '../../outside', outside the target"),
        ("tar", [link("abs", "/etc/passwd")], "'abs' is a symlink to the absolute path '/etc/passwd'"),
        (
            "tar",
            [link("deep/l1", ".."), link("l2", "deep/l1/..")],
            "'l2' is a symlink that resolves outside the target through other links",
        ),
        ("tar", [link("sub", "."), ("sub/x", b"x")], "'sub/x' lies below a symlink of the same archive"),
        ("tar", [("t.txt", b"x"), link("hard", "../t.txt", tarfile.LNKTYPE)], "'../t.txt' has a '..' component"),
        ("tar", [link("dev", "", tarfile.CHRTYPE)], "'dev' is a device, fifo or other special file"),
        ("tar", [link("fifo", "", tarfile.FIFOTYPE)], "'fifo' is a device, fifo or other special file"),
    ],
)
def test_unsafe_archives_are_refused_and_nothing_lands(tmp_path, kind, entries, offending):
    work = tmp_path / "work"
    work.mkdir()
    archive = work / ("evil.zip" if kind == "zip" else "evil.tar.gz")
    if kind == "zip":
        archive.write_bytes(build_zip({name: (data, zipfile.ZIP_STORED) for name, data in entries.items()}))
    else:
        archive.write_bytes(build_tar(entries))
    target = work / "target"
    with pytest.raises(ArchiveError) as caught:
        safe_extract(archive, target, label="bbbc041")
    assert str(caught.value).startswith(f"bbbc041: archive {archive.name}: member ")
    assert offending in str(caught.value)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file() or p.is_symlink()) == [
        f"work/{archive.name}"
    ]


def test_size_bound_refuses_big_archives(tmp_path):
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(build_zip({"zeros.bin": (bytes(10_000_000), zipfile.ZIP_DEFLATED)}))
    assert archive.stat().st_size < 20_000
    with pytest.raises(ArchiveError, match="bomb.zip declares 10000000 bytes uncompressed, more than the bound of 1000000"):
        safe_extract(archive, tmp_path / "out", label="x", max_bytes=1_000_000)
    assert not (tmp_path / "out").exists()
    assert safe_extract(archive, tmp_path / "out", label="x", max_bytes=10_000_000) == ["zeros.bin"]


# ---------------------------------------------------------------- Kaggle

USER, KEY = "kaggle-user-7f3", "s3cr3t-kaggle-key-0123456789"


def test_kaggle_dataset_and_competition_with_basic_auth(remote, tmp_path):
    dataset, competition = build_zip({"leukemia/a.bmp": (b"bmp", 0)}), build_zip({"train.csv": (b"Id,Target\n", 8)})
    remote.put("/storage/dataset.zip", dataset)
    remote.put("/storage/competition.zip", competition)
    remote.redirects["/api/v1/datasets/download/andrewmvd/leukemia-classification"] = "/storage/dataset.zip"
    remote.redirects["/api/v1/competitions/data/download-all/human-protein-atlas-image-classification"] = "/storage/competition.zip"
    remote.auth = (USER, KEY)
    api = remote.base + "/api/v1"
    lines: list[str] = []
    got = fetch_kaggle_dataset(
        "andrewmvd/leukemia-classification",
        tmp_path / "leukemia.zip",
        label="kag_leukemia",
        username=USER,
        key=KEY,
        api=api,
        progress=lambda p: lines.append(str(p)),
    )
    assert (tmp_path / "leukemia.zip").read_bytes() == dataset and not got.reused
    fetch_kaggle_competition(
        "human-protein-atlas-image-classification", tmp_path / "hpa.zip", label="kag_hpa", username=USER, key=KEY, api=api
    )
    assert (tmp_path / "hpa.zip").read_bytes() == competition
    assert [(e.path, e.status) for e in remote.gets()] == [
        ("/api/v1/datasets/download/andrewmvd/leukemia-classification", 302),
        ("/storage/dataset.zip", 200),
        ("/api/v1/competitions/data/download-all/human-protein-atlas-image-classification", 302),
        ("/storage/competition.zip", 200),
    ]
    remote.log.clear()
    assert fetch_kaggle_dataset(
        "andrewmvd/leukemia-classification", tmp_path / "leukemia.zip", label="kag_leukemia", username=USER, key=KEY, api=api
    ).reused
    assert [e.method for e in remote.log] == ["HEAD", "HEAD"]  # the API's redirect, then the file
    assert lines and not any(USER in line or KEY in line for line in lines)
    assert USER not in repr(KaggleAuth(USER, KEY)) and KEY not in repr(KaggleAuth(USER, KEY))


def test_kaggle_refusals_say_what_to_do_without_credentials(remote, tmp_path):
    remote.auth = (USER, KEY)
    api = remote.base + "/api/v1"
    with pytest.raises(DownloadError) as unauthorized:
        fetch_kaggle_dataset("owner/data", tmp_path / "d.zip", label="kag_x", username=USER, key="wrong-" + KEY, api=api)
    assert str(unauthorized.value) == (
        f"kag_x: {api}/datasets/download/owner/data returned 401 Unauthorized: check KAGGLE_USERNAME "
        "and KAGGLE_KEY (create an API token under Settings at https://www.kaggle.com/settings)"
    )
    remote.forbidden.add("/api/v1/competitions/data/download-all/hpa-single-cell-image-classification")
    with pytest.raises(DownloadError) as forbidden:
        fetch_kaggle_competition(
            "hpa-single-cell-image-classification", tmp_path / "c.zip", label="kag_hpa_single", username=USER, key=KEY, api=api
        )
    assert (
        "returned 403 Forbidden: accept the competition rules at https://www.kaggle.com/c/hpa-single-cell-image-classification/rules"
        in str(forbidden.value)
    )
    for exc in (unauthorized.value, forbidden.value):
        for text in (str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)):
            assert USER not in text and KEY not in text
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- IDR

APACHE_INDEX = """<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html>
 <head>
  <title>Index of /pub/databases/IDR/idr0016-wawer-bioactivecompoundprofiling</title>
 </head>
 <body>
<h1>Index of /pub/databases/IDR/idr0016-wawer-bioactivecompoundprofiling</h1>
<pre><img src="/icons/blank.gif" alt="Icon "> <a href="?C=N;O=D">Name</a>                    <a href="?C=M;O=A">Last modified</a>      <a href="?C=S;O=A">Size</a>  <a href="?C=D;O=A">Description</a><hr><img src="/icons/back.gif" alt="[PARENTDIR]"> <a href="/pub/databases/IDR/">Parent Directory</a>                             -
<img src="/icons/folder.gif" alt="[DIR]"> <a href="2016-01-19-screens-bbbc/">2016-01-19-screens-bbbc/</a>  2019-01-22 13:27    -
<img src="/icons/folder.gif" alt="[DIR]"> <a href="Plate%2024277/">Plate 24277/</a>  2019-01-22 13:27    -
<img src="/icons/text.gif" alt="[TXT]"> <a href="README.txt">README.txt</a>              2020-03-05 10:02  2.1K
<img src="/icons/unknown.gif" alt="[   ]"> <a href="idr0016-screenA-annotation.csv.gz">idr0016-screenA-annotation.csv.gz</a> 2018-06-11 09:41   12M
<hr></pre>
<address>Apache Server at ftp.ebi.ac.uk Port 443</address>
</body></html>
"""


def test_idr_file_url_quotes_each_segment():
    assert idr_file_url("idr0080-way-perturbation", "20190430-ftp/A - 1(fld 1 wv DAPI - DAPI).tif") == (
        "https://ftp.ebi.ac.uk/pub/databases/IDR/idr0080-way-perturbation/20190430-ftp/A%20-%201%28fld%201%20wv%20DAPI%20-%20DAPI%29.tif"
    )
    assert idr_file_url("idr0016-wawer", "plates/", mirror="http://m/IDR/") == "http://m/IDR/idr0016-wawer/plates/"
    for bad in ("../secret", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError, match="not a path inside an IDR study"):
            idr_file_url("idr0016-wawer", bad)


def test_list_idr_folder_parses_the_apache_index(remote):
    folder = "/pub/databases/IDR/idr0016-wawer-bioactivecompoundprofiling/"
    remote.put(folder, APACHE_INDEX.encode())
    entries = list_idr_folder(remote.base + folder.rstrip("/"), label="idr0016")
    assert entries == [
        ("2016-01-19-screens-bbbc", True),
        ("Plate 24277", True),
        ("README.txt", False),
        ("idr0016-screenA-annotation.csv.gz", False),
    ]


def test_aspera_command_follows_the_idr_instructions(tmp_path):
    assert aspera_command(
        "idr0016-wawer-bioactivecompoundprofiling",
        "2016-01-19-screens-bbbc/24277/a b.tif",
        tmp_path,
        key=Path("/keys/asperaweb_id_dsa.openssh"),
    ) == [
        "ascp",
        "-T",
        "-Q",
        "-l",
        "40m",
        "-P",
        "33001",
        "-k",
        "1",
        "-i",
        "/keys/asperaweb_id_dsa.openssh",
        "idr0016@fasp.ebi.ac.uk:2016-01-19-screens-bbbc/24277/a b.tif",
        f"{tmp_path}/",
    ]
    with pytest.raises(ValueError):
        aspera_command("idr0016-wawer", "../x", tmp_path, key=Path("k"))


def test_fetch_idr_file_uses_aspera_when_set_up_and_falls_back_to_https(remote, tmp_path, monkeypatch):
    body = b"tiff bytes"
    mirror = remote.base + "/IDR"
    remote.put("/IDR/idr0016-wawer/plates/x.tif", body)
    monkeypatch.setattr(idr_module.shutil, "which", lambda name: "/opt/aspera/bin/ascp" if name == "ascp" else None)
    monkeypatch.setenv("ASPERA_KEY", "/keys/asperaweb_id_dsa.openssh")
    calls = []

    def fake_ascp(command, **kwargs):
        calls.append(command)
        if len(calls) == 1:
            (Path(command[-1]) / "x.tif").write_bytes(body)
            return subprocess.CompletedProcess(command, 0, None, "")
        return subprocess.CompletedProcess(command, 1, None, "Session Stop (Error: failed to authenticate)")

    monkeypatch.setattr(idr_module.subprocess, "run", fake_ascp)
    by_aspera = fetch_idr_file("idr0016-wawer", "plates/x.tif", tmp_path / "a" / "x.tif", label="idr0016", mirror=mirror, md5=md5(body))
    assert (by_aspera.transport, (tmp_path / "a" / "x.tif").read_bytes(), remote.log) == ("aspera", body, [])
    assert calls[0][-2:] == ["idr0016@fasp.ebi.ac.uk:plates/x.tif", f"{tmp_path / 'a' / '.download' / 'aspera'}/"]
    by_https = fetch_idr_file("idr0016-wawer", "plates/x.tif", tmp_path / "b" / "x.tif", label="idr0016", mirror=mirror)
    assert by_https.transport == "https" and (tmp_path / "b" / "x.tif").read_bytes() == body
    assert by_https.notes == (
        "Aspera failed, used HTTPS: idr0016: ascp idr0016@fasp.ebi.ac.uk:plates/x.tif exited with 1: "
        "Session Stop (Error: failed to authenticate)",
    )
    with pytest.raises(DownloadError, match="exited with 1"):
        fetch_idr_file("idr0016-wawer", "plates/x.tif", tmp_path / "c" / "x.tif", label="idr0016", mirror=mirror, use_aspera=True)
    assert (
        fetch_idr_file(
            "idr0016-wawer", "plates/x.tif", tmp_path / "d" / "x.tif", label="idr0016", mirror=mirror, use_aspera=False
        ).transport
        == "https"
    )
    assert len(calls) == 3


def test_restarting_from_zero_again_and_again_is_not_progress(remote, tmp_path):
    """A server that ignores Range and cuts every transfer halfway never lets the file grow past
    half: the retries run out instead of looping forever."""
    body = payload(1 << 20)
    url = remote.put("/flaky.bin", body)
    remote.honour_range = False
    remote.cut_every_get["/flaky.bin"] = len(body) // 2
    sleeps = Sleeps()
    with pytest.raises(DownloadError, match="failed after 4 attempts in a row"):
        fetch_file(url, tmp_path / "flaky.bin", label="src", retries=3, sleep=sleeps, chunk_size=1 << 16)
    assert len(remote.gets("/flaky.bin")) == 4 and not (tmp_path / "flaky.bin").exists()


def test_a_completed_download_is_kept_when_its_server_cannot_be_reached(remote, tmp_path):
    body = payload(10_000)
    url = remote.put("/meta.csv", body)
    dest = tmp_path / "meta.csv"
    fetch_file(url, dest, label="src")
    remote.fail["/meta.csv"] = [503] * 10  # the node is offline now, as far as this file is concerned
    again = fetch_file(url, dest, label="src", retries=2, sleep=Sleeps())
    assert again.reused and again.bytes_downloaded == 0 and dest.read_bytes() == body
    assert "could not re-check it on the server" in again.notes[0]
    assert len(remote.gets("/meta.csv")) == 1  # no new download


def test_a_link_that_breaks_before_every_chunk_boundary_still_completes(remote, tmp_path):
    """With 1 MiB chunks, a server that cuts every GET after 300 kB (a flaky link, Range honoured):
    what arrived before each cut is kept, so every attempt advances the .part and the file
    completes, verified, in as many attempts as it takes — an advancing attempt is no failure."""
    body = payload(2 << 20)
    url = remote.put("/flaky.bin", body)
    remote.cut_every_get["/flaky.bin"] = 300_000
    result = fetch_file(url, tmp_path / "flaky.bin", label="src", md5=md5(body), retries=2, sleep=Sleeps())
    assert (tmp_path / "flaky.bin").read_bytes() == body and result.md5 == md5(body)
    assert len(remote.gets("/flaky.bin")) == -(-len(body) // 300_000)  # one GET per 300 kB: nothing fetched twice
