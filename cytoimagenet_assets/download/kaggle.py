"""Kaggle datasets and competition archives through Kaggle's public REST API, with plain requests.

The ``kaggle`` package authenticates when it is imported (and fails without a token), which would
break every import of the pipeline on machines that never touch Kaggle; its REST endpoints are all
we need. Credentials travel only as HTTP basic auth: they are never part of a URL, a message, a
repr or a progress line. The download goes through :func:`fetch_file`, so resume, verification and
progress apply.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import requests
from requests.auth import HTTPBasicAuth

from cytoimagenet_assets.download.http import DownloadError, FetchResult, Progress, fetch_file

KAGGLE_API = "https://www.kaggle.com/api/v1"
CREDENTIALS_HINT = "check KAGGLE_USERNAME and KAGGLE_KEY (create an API token under Settings at https://www.kaggle.com/settings)"


class KaggleAuth(HTTPBasicAuth):
    """HTTP basic auth whose repr does not show the key."""

    def __repr__(self) -> str:
        return "KaggleAuth(<credentials hidden>)"


def kaggle_dataset_url(slug: str, api: str = KAGGLE_API) -> str:
    """The archive of the dataset ``owner/dataset``."""
    owner, _, dataset = slug.partition("/")
    if not owner or not dataset or "/" in dataset:
        raise ValueError(f"a Kaggle dataset slug is owner/dataset, got {slug!r}")
    return f"{api.rstrip('/')}/datasets/download/{quote(owner, safe='')}/{quote(dataset, safe='')}"


def kaggle_competition_url(competition: str, api: str = KAGGLE_API) -> str:
    """The archive of all files of ``competition``."""
    if not competition or "/" in competition:
        raise ValueError(f"a Kaggle competition is named by one slug, got {competition!r}")
    return f"{api.rstrip('/')}/competitions/data/download-all/{quote(competition, safe='')}"


def fetch_kaggle_dataset(
    slug: str,
    dest: Path,
    *,
    label: str,
    username: str,
    key: str,
    api: str = KAGGLE_API,
    session: requests.Session | None = None,
    progress: Callable[[Progress], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Download the dataset ``owner/dataset`` as one zip to ``dest``."""
    url = kaggle_dataset_url(slug, api)
    return _fetch(
        url,
        dest,
        label=label,
        username=username,
        key=key,
        session=session,
        progress=progress,
        sleep=sleep,
        forbidden=f"your Kaggle account may not download the dataset {slug}",
    )


def fetch_kaggle_competition(
    competition: str,
    dest: Path,
    *,
    label: str,
    username: str,
    key: str,
    api: str = KAGGLE_API,
    session: requests.Session | None = None,
    progress: Callable[[Progress], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Download all files of ``competition`` as one zip to ``dest`` (its rules must have been accepted)."""
    url = kaggle_competition_url(competition, api)
    return _fetch(
        url,
        dest,
        label=label,
        username=username,
        key=key,
        session=session,
        progress=progress,
        sleep=sleep,
        forbidden=f"accept the competition rules at https://www.kaggle.com/c/{competition}/rules with the account of KAGGLE_USERNAME",
    )


def _fetch(
    url: str,
    dest: Path,
    *,
    label: str,
    username: str,
    key: str,
    session: requests.Session | None,
    progress: Callable[[Progress], None] | None,
    sleep: Callable[[float], None],
    forbidden: str,
) -> FetchResult:
    if not username or not key:
        raise DownloadError(f"{label}: {url} needs Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY")
    try:
        return fetch_file(url, dest, label=label, session=session, progress=progress, auth=KaggleAuth(username, key), sleep=sleep)
    except DownloadError as exc:
        hint = {401: CREDENTIALS_HINT, 403: forbidden}.get(exc.status)
        if hint is None:
            raise
        raise DownloadError(f"{exc}: {hint}", status=exc.status) from None
