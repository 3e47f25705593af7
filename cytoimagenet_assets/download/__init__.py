"""Getting source files onto disk: resumable, verified HTTP downloads, safe archive extraction,
single members of remote zips by Range requests, Kaggle's REST API and IDR's mirror (or Aspera).

Pure transport: no Dagster here. Every error is a :class:`DownloadError` or :class:`ArchiveError`
whose message names the source label and the URL or archive, never a credential.
"""

from cytoimagenet_assets.download.archives import ArchiveError, member_path, safe_extract
from cytoimagenet_assets.download.http import DownloadError, FetchResult, Progress, RemoteInfo, fetch_file, head
from cytoimagenet_assets.download.idr import (
    IDR_MIRROR,
    FolderEntry,
    aspera_command,
    fetch_idr_file,
    idr_file_url,
    list_idr_folder,
)
from cytoimagenet_assets.download.kaggle import (
    KAGGLE_API,
    fetch_kaggle_competition,
    fetch_kaggle_dataset,
    kaggle_competition_url,
    kaggle_dataset_url,
)
from cytoimagenet_assets.download.remote_zip import (
    FetchMembersResult,
    RangesNotSupported,
    ZipMember,
    fetch_member,
    fetch_members,
    list_members,
)

__all__ = [
    "ArchiveError",
    "DownloadError",
    "FetchMembersResult",
    "FetchResult",
    "FolderEntry",
    "IDR_MIRROR",
    "KAGGLE_API",
    "Progress",
    "RangesNotSupported",
    "RemoteInfo",
    "ZipMember",
    "aspera_command",
    "fetch_file",
    "fetch_idr_file",
    "fetch_kaggle_competition",
    "fetch_kaggle_dataset",
    "fetch_member",
    "fetch_members",
    "head",
    "idr_file_url",
    "kaggle_competition_url",
    "kaggle_dataset_url",
    "list_idr_folder",
    "list_members",
    "member_path",
    "safe_extract",
]
