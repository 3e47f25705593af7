"""What a catalog holds, validated as it loads (pydantic): the sources, how each is downloaded and
parsed, the embed targets and the steps' settings. A bad entry is a :class:`CatalogError` naming the
entry and field."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cytoimagenet_assets.catalog.settings import EvaluationSettings, LabelSettings, Method, TrainSettings
from cytoimagenet_assets.errors import StepFailed

CATALOG_ENV = "CYTOIMAGENET_CATALOG"
BUILTIN_DIR = Path(__file__).parent
BUILTIN = ("demo", "cytoimagenet")

DIR_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
# The parsers a catalog entry can name, each with its module in cytoimagenet_assets.sources (imported
# there by name, so the catalog stays below the parsers). Source-specific formats: an .xls join, DSB
# image folders, JSON bounding boxes, montage crops, a group table.
PARSER_MODULES = {
    "cellprofiler": "cellprofiler",
    "rxrx": "rxrx",
    "hpa": "hpa",
    "idr": "idr",
    "file_pattern": "file_pattern",
    "bbbc017_xls": "bbbc017",
    "bbbc038_dsb": "bbbc038",
    "bbbc041_boxes": "bbbc041",
    "bbbc045_montages": "bbbc045",
    "cil_kinome": "cil",
}


URL_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")  # a {Column} of a URL filled from a table (RemoteFile.values_from)


MIRROR_URL = re.compile(r"^(https?|ftp)://[^/\s]+")


def mirror_url_problem(url: str) -> str | None:
    """What is wrong with a mirror's prefix or replacement URL, or None (the catalog's and the
    environment's mirrors are checked alike: ``download.mirrors``)."""
    if not MIRROR_URL.match(url):
        return "is not an http(s)/ftp URL"
    for characters, problem in (
        (" \t", "contains a space"),
        ("?", "has a query (?)"),
        ("#", "has a fragment (#)"),
        (";=", "contains ';' or '=' (separate mirror pairs with commas or newlines)"),
    ):
        if any(c in url for c in characters):
            return problem
    return None


class CatalogError(StepFailed, ValueError):
    """A catalog file that cannot be used; the message names the file, entry and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RemoteFile(_Strict):
    """One downloadable file. ``metadata`` files are fetched first, whole (tables, annotations,
    small archives of them); ``images`` archives are indexed remotely and only the members the
    class table needs are fetched (see cytoimagenet_assets/download/plan.py)."""

    url: str
    size: int | None = None
    md5: str | None = None
    role: Literal["metadata", "images"] = "images"
    metadata_members: tuple[str, ...] = ()  # glob patterns of an image zip's members that hold metadata (BBBC041's JSON)
    extract_to: str = ""  # a folder of the raw folder the archive unpacks into, where the metadata expects its files
    # A metadata table of the source (its name in the raw folder) whose columns fill the url's
    # ``{Column}`` placeholders: one file per distinct value, read once that table is downloaded
    # (BBBC022's images_{Image_Metadata_PlateID}w1.zip: its image table names the plates).
    values_from: str = ""

    @field_validator("extract_to")
    @classmethod
    def _inside(cls, value: str) -> str:
        value = value.strip("/")
        if value.startswith("~") or ".." in value.split("/") or "\\" in value:
            raise ValueError(f"extract_to must be a folder inside the source's raw folder, got {value!r}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^(https?|ftp)://", value):
            raise ValueError(f"not an http(s)/ftp URL: {value!r}")
        return value

    @model_validator(mode="after")
    def _template(self) -> "RemoteFile":
        if bool(self.placeholders) != bool(self.values_from):
            raise ValueError(f"{self.url}: a url with {{Column}} placeholders needs values_from (the table that fills them), and only it")
        if self.values_from and (self.role != "images" or self.size is not None or self.md5 is not None):
            raise ValueError(f"{self.url}: a url filled from a table stands for several image files: role images, no size or md5")
        return self

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The ``{Column}`` names in the url, in order."""
        return tuple(URL_PLACEHOLDER.findall(self.url))

    @property
    def indexed_remotely(self) -> bool:
        """Whether metadata-first downloading leaves this file on its server, read by range: image zips only."""
        return self.role == "images" and self.url.lower().endswith(".zip")


class DownloadSpec(_Strict):
    """How a source is obtained. ``demo`` sources are written by the package's generator."""

    method: Literal["https", "idr", "kaggle_dataset", "kaggle_competition", "manual", "demo"]
    files: tuple[RemoteFile, ...] = ()
    slug: str | None = None  # Kaggle owner/dataset or competition name
    accession: str | None = None  # IDR study name on the FTP mirror, e.g. idr0037-vigilante-hipsci
    # Folders of other IDR studies that hold some of this study's plates, as its plates.tsv says
    # (``<accession>/<plate folder>``): listed and fetched too, under ``<raw folder>/<accession>/``.
    filesets: tuple[str, ...] = ()
    generator: str | None = None  # demo generator name
    generator_options: dict[str, Any] = Field(default_factory=dict)
    notes: str | None = None

    @field_validator("filesets")
    @classmethod
    def _folders(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(f.strip("/") for f in value)

    @model_validator(mode="after")
    def _consistent(self) -> "DownloadSpec":
        needs = {"https": "files", "kaggle_dataset": "slug", "kaggle_competition": "slug", "idr": "accession", "demo": "generator"}
        if self.method == "idr" and any(f.role == "images" for f in self.files):
            raise ValueError("an IDR source lists only its metadata files (role: metadata); images come from the IDR mirror")
        if self.filesets and self.method != "idr":
            raise ValueError("filesets name other IDR studies' folders: only an IDR source (method: idr) has them")
        for fileset in self.filesets:
            if not re.fullmatch(r"idr\d{4}-[\w.-]+(/[^/]+)*", fileset) or ".." in fileset.split("/"):
                raise ValueError(f"a fileset is '<IDR accession>[/<folder>]' on the IDR mirror, got {fileset!r}")
            if fileset.split("/", 1)[0] == self.accession:
                raise ValueError(f"fileset {fileset!r} is in the study itself, whose files are listed anyway")
            if self.filesets.count(fileset) > 1 or any(fileset.startswith(f + "/") for f in self.filesets):
                raise ValueError(f"fileset {fileset!r} is listed twice, or inside another listed one")
        field = needs.get(self.method)
        if field and not getattr(self, field):
            raise ValueError(f"method {self.method!r} needs {field!r}")
        return self

    def instructions(self) -> str:
        """What a user must fetch, from where, to provide this source by hand."""
        if self.method == "https":
            tables = sorted({f.values_from for f in self.files if f.values_from})
            filled = f" (a {{Column}} in a URL: each value of that column in {', '.join(tables)})" if tables else ""
            return "download " + ", ".join(f.url for f in self.files) + filled + " and extract the archives"
        if self.method == "idr":
            return (
                f"download the IDR study {self.accession} from https://ftp.ebi.ac.uk/pub/databases/IDR/{self.accession}/ "
                f"(or Aspera: ascp -TQ -l40m -P 33001 {self.accession.split('-')[0]}@fasp.ebi.ac.uk:.), "
                f"with its annotation files from https://github.com/IDR/{self.accession}"
                + "".join(
                    f"; and https://ftp.ebi.ac.uk/pub/databases/IDR/{f}/ into its folder {f}/ (plates filed there)" for f in self.filesets
                )
            )
        if self.method == "kaggle_dataset":
            return f"run `kaggle datasets download -d {self.slug}` and unzip it"
        if self.method == "kaggle_competition":
            return (
                f"accept the rules of https://www.kaggle.com/c/{self.slug}, run `kaggle competitions download -c {self.slug}` and unzip it"
            )
        if self.method == "demo":
            return f"materialize it: the demo generator {self.generator!r} writes it"
        return self.notes or "obtain the files by hand (see the landing page)"


class Defaults(_Strict):
    """Metadata values given to every row unless the source's own metadata says otherwise."""

    organism: str | None = None
    cell_type: str | None = None
    cell_visible: str | None = None
    microscopy: Literal["fluorescence", "brightfield", "darkfield", "confocal", "super_resolution", "light", "em"] = "fluorescence"


class Channel(_Strict):
    """One channel of a multi-channel field of view: what it shows and how its files are named."""

    name: str  # what it stains, in label vocabulary (nucleus, actin, ...)
    key: str  # how the source names it: w1, DAPI, red, ch1, ...
    microscopy: Literal["fluorescence", "brightfield", "darkfield"] = "fluorescence"


class Source(_Strict):
    dir_name: str
    name: str
    database: str
    landing_page: str
    download: DownloadSpec
    license: str
    defaults: Defaults = Defaults()
    channels: tuple[Channel, ...] = ()
    parser: str | None  # None only for evaluation sets read by their protocol directly (HDF5)
    parser_options: dict[str, Any] = Field(default_factory=dict)
    approx_size_gb: float = Field(ge=0)
    evaluation_only: bool = False
    overlaps: tuple[str, ...] = ()  # dir_names of sources holding the same images
    notes: str | None = None

    @field_validator("dir_name")
    @classmethod
    def _dir_name(cls, value: str) -> str:
        if not DIR_NAME.match(value):
            raise ValueError(f"{value!r} must be lowercase letters, digits and underscores (it names folders and asset keys)")
        return value

    @field_validator("landing_page")
    @classmethod
    def _landing(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value

    @field_validator("parser")
    @classmethod
    def _parser(cls, value: str | None) -> str | None:
        if value is not None and value not in PARSER_MODULES:
            raise ValueError(f"unknown parser {value!r}; known: {', '.join(sorted(PARSER_MODULES))}")
        return value

    @model_validator(mode="after")
    def _parser_or_evaluation(self) -> "Source":
        if self.parser is None and not self.evaluation_only:
            raise ValueError("a pretraining source needs a parser")
        return self


class EmbedTarget(_Strict):
    """A folder (or CSV of channel paths) the ``embeddings`` asset featurizes with the latest model:
    ``path`` (absolute, or relative to CYTOIMAGENET_HOME) or ``source`` (a catalog source's raw
    folder), ``glob`` for a folder's files, ``channels`` for a CSV's channel columns."""

    name: str
    path: str | None = None
    source: str | None = None
    glob: str = "**/*"
    channels: tuple[str, ...] | None = None
    method: Method = "concat_normalized"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not DIR_NAME.match(value):
            raise ValueError(f"{value!r}: use lower-case letters, digits and _ (it names the output folder)")
        return value

    @model_validator(mode="after")
    def _one_input(self) -> "EmbedTarget":
        if (self.path is None) == (self.source is None):
            raise ValueError(f"embed target {self.name!r}: give exactly one of path and source")
        return self


class Catalog(_Strict):
    name: str
    description: str = ""
    seed: int = 0  # every random choice (demo images, sampling, training) flows from it
    labels: LabelSettings = LabelSettings()
    training: TrainSettings = TrainSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    sources: tuple[Source, ...]
    embed: tuple[EmbedTarget, ...] = ()  # folders of users' images featurized by the `embeddings` asset
    mirrors: dict[str, str] = {}  # download URL prefix -> another server's (download/mirrors.py); CYTOIMAGENET_MIRRORS wins
    path: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _seed_everywhere(cls, raw: Any) -> Any:
        """The catalog's seed is each step's unless a step's block sets its own."""
        if isinstance(raw, dict):
            seed = raw.get("seed", cls.model_fields["seed"].default)
            for block in ("labels", "training", "evaluation"):
                if raw.get(block) is None or isinstance(raw[block], dict):
                    raw = {**raw, block: {"seed": seed, **(raw.get(block) or {})}}
        return raw

    @model_validator(mode="after")
    def _unique(self) -> "Catalog":
        seen: set[str] = set()
        for source in self.sources:
            if source.dir_name in seen:
                raise ValueError(f"dir_name {source.dir_name!r} appears twice")
            seen.add(source.dir_name)
        for source in self.sources:
            for other in source.overlaps:
                if other not in seen:
                    raise ValueError(f"source {source.dir_name!r}: overlaps names unknown source {other!r}")
        for target in self.embed:
            if target.source is not None and target.source not in seen:
                raise ValueError(f"embed target {target.name!r}: source {target.source!r} is not in the catalog")
        if len({t.name for t in self.embed}) != len(self.embed):
            raise ValueError("embed target names must be unique")
        return self

    @field_validator("mirrors")
    @classmethod
    def _mirrors(cls, value: dict[str, str]) -> dict[str, str]:
        for prefix, replacement in value.items():
            for url in (prefix, replacement):
                if problem := mirror_url_problem(url):
                    raise ValueError(f"{url!r} in {prefix}={replacement} {problem}")
        return value

    @cached_property
    def by_dir_name(self) -> dict[str, Source]:
        return {s.dir_name: s for s in self.sources}

    def source(self, dir_name: str) -> Source:
        try:
            return self.by_dir_name[dir_name]
        except KeyError:
            raise KeyError(f"catalog {self.name!r} has no source {dir_name!r}; it has: {', '.join(self.by_dir_name)}") from None

    @property
    def pretraining_sources(self) -> tuple[Source, ...]:
        """Sources whose images may enter the pretraining set (never the evaluation sets)."""
        return tuple(s for s in self.sources if not s.evaluation_only)
