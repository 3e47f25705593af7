"""The dataset as WebDataset shards: read back by webdataset and by Hugging Face datasets, offline."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cytoimagenet_assets.images.build_class import RELEASE_COLUMNS
from cytoimagenet_assets.release.webdataset import verify_release, write_release
from cytoimagenet_assets.storage import DamagedRelease, DataHome

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """Three classes of 6 PNGs (with crops and a missing gene) in the release layout."""
    root = tmp_path_factory.mktemp("dataset")
    rng = np.random.default_rng(0)
    rows = []
    for c, (category, label) in enumerate((("compound", "taxol"), ("phenotype", "mitosis"), ("organism", "yeast"))):
        key = f"{category}-{label}-000000000{c}"
        (root / key).mkdir()
        for i in range(6):
            name = f"{key}-{i + 1:08d}.png"
            Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(root / key / name)
            rows.append(
                {
                    "label": label,
                    "category": category,
                    "database": "db",
                    "name": "Source",
                    "dir_name": f"src{c % 2}",
                    "path": key,
                    "filename": name,
                    "idx": f"src{c % 2}-{c}-{i // 2}",
                    "organism": "human",
                    "cell_type": None,
                    "cell_visible": None,
                    "phenotype": None,
                    "compound": None,
                    "sirna": None,
                    "gene": None,
                    "microscopy": "fluorescence",
                    "crop": bool(i % 2),
                    "scaling": 0.5 if i % 2 else 1.0,
                    **({"compound": "taxol", "phenotype": "mitosis"} if c else {}),  # null in the first class only
                    "x_min": 0,
                    "x_max": 48,
                    "y_min": 0,
                    "y_max": 48,
                }
            )
    metadata = pd.DataFrame(rows)[RELEASE_COLUMNS]
    metadata.to_csv(root / "metadata.csv", index=False)
    return root, pd.read_csv(root / "metadata.csv")


LICENSES = {"src0": ("Source zero", "CC0 1.0"), "src1": ("Source one", "CC BY 4.0")}


@pytest.fixture
def offline(offline, monkeypatch, tmp_path):
    """No network (conftest's) and a fresh datasets cache, with datasets told it is offline."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # read from the environment on import: too late to set it
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")


def test_shards_hold_every_image_once_with_its_label_and_are_deterministic(dataset, tmp_path):
    import webdataset as wds

    root, metadata = dataset
    release = write_release(metadata, root, tmp_path / "release", LICENSES, "test", shard_bytes=20_000)
    assert release.samples == len(metadata) and len(release.shards) >= 3  # small shards: several
    urls = [str(tmp_path / "release" / name) for name in release.shards["shard"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode().to_tuple("__key__", "png", "json", "cls"))  # PNGs stay bytes
    assert [k for k, *_ in samples] == [Path(f).stem for f in metadata.sort_values(["path", "filename"])["filename"]]
    by_key = metadata.assign(key=metadata["filename"].str[:-4]).set_index("key")
    classes = json.loads((tmp_path / "release" / "classes.json").read_text())
    for key, png, meta, cls in samples:
        assert classes[cls]["class_key"] == by_key.loc[key, "path"] and meta["label"] == by_key.loc[key, "label"]
        assert png == (root / by_key.loc[key, "path"] / f"{key}.png").read_bytes()  # the published PNG, byte for byte
        assert meta["crop"] == bool(by_key.loc[key, "crop"]) and meta["gene"] == ""  # a missing label: empty, never null
    index = pd.read_parquet(tmp_path / "release" / "index.parquet")
    assert index.groupby("shard").size().to_dict() == dict(zip(release.shards["shard"], release.shards["samples"]))
    assert verify_release(tmp_path / "release") == []
    again = write_release(metadata, root, tmp_path / "again", LICENSES, "test", shard_bytes=20_000)
    assert again.shards["sha256"].tolist() == release.shards["sha256"].tolist()  # same dataset, same bytes
    first = tmp_path / "release" / release.shards["shard"][0]
    first.write_bytes(first.read_bytes()[:-10] + b"0123456789")
    assert verify_release(tmp_path / "release") == [first.name]


def test_a_malformed_sha256sums_line_is_named(dataset, tmp_path):
    """SHA256SUMS is what training trusts: a line it cannot read is an error naming it, not a skipped check."""
    root, metadata = dataset
    write_release(metadata, root, tmp_path / "release", LICENSES, "test", shard_bytes=20_000)
    sums = tmp_path / "release" / "SHA256SUMS"
    first = sums.read_text().splitlines()[0]
    sums.write_text(first.replace("  ", " *") + "\n")  # sha256sum --binary's form reads too
    assert verify_release(tmp_path / "release") == []
    sums.write_text(f"{first}\n{first.split()[0]}\n")
    with pytest.raises(DamagedRelease, match=rf"SHA256SUMS line 2: '{first.split()[0]}' is not '<sha256>  <shard>'"):
        verify_release(tmp_path / "release")


def test_hugging_face_datasets_loads_the_shards_offline_and_the_card_has_the_hub_header(dataset, tmp_path, offline):
    import yaml
    from datasets import load_dataset

    root, metadata = dataset
    write_release(metadata, root, tmp_path / "release", LICENSES, "test", shard_bytes=20_000)
    hub = load_dataset(str(tmp_path / "release"), split="train", cache_dir=str(tmp_path / "cache"))  # the card's config and features
    assert len(hub) == len(metadata)
    assert sorted(hub["cls"]) == sorted(metadata["path"].map({k: i for i, k in enumerate(sorted(metadata["path"].unique()))}))
    assert hub[0]["png"].mode == "L" and hub[0]["json"]["label"] in set(metadata["label"])
    assert hub[0]["json"]["compound"] == "" and hub[len(hub) - 1]["json"]["compound"] == "taxol"
    card = (tmp_path / "release" / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["configs"][0]["data_files"][0]["path"] == "cytoimagenet-train-*.tar"
    assert "| src1 | Source one | CC BY 4.0 | 6 |" in card and "arXiv:2111.11646" in card


def test_the_readme_snippet_for_the_dataset_runs(dataset, tmp_path, monkeypatch, offline):
    root, metadata = dataset
    write_release(metadata, root, DataHome(tmp_path).webdataset_dir(), LICENSES, "test", shard_bytes=20_000)
    section = README.read_text().split("## Using the dataset", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.setenv("CYTOIMAGENET_HOME", str(tmp_path))
    namespace: dict = {}
    exec(code, namespace)
    assert namespace["images"] == len(metadata) and namespace["image"].size == (48, 48) and namespace["label"] in (0, 1, 2)
    assert namespace["image"].mode == "L" and sum(1 for _ in namespace["stream"]) == len(metadata)  # gray, as written


def test_the_release_loads_as_its_card_says_with_datasets_and_webdataset(dataset, tmp_path, monkeypatch, offline):
    """The card's snippet, run in the release folder, as users load a release: the folder with its card,
    load_dataset("webdataset") on the folder (it reads every file unless names hold a split) and on the
    bare tars (typed from the first samples, where a label may be missing), and the webdataset stream;
    all give every sample, the same types and gray (mode L) images."""
    root, metadata = dataset
    write_release(metadata, root, tmp_path / "release", LICENSES, "test", shard_bytes=20_000)
    card = (tmp_path / "release" / "README.md").read_text()
    assert card.split("---\n", 2)[2].index("```python") < 200  # how to load it: the card's first lines
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    monkeypatch.chdir(tmp_path / "release")
    namespace: dict = {}
    exec(code, namespace)
    hub, folder, tars = namespace["hub"], namespace["folder"], namespace["tars"]
    class_of = {k: i for i, k in enumerate(sorted(metadata["path"].unique()))}
    for loaded in (hub, folder, tars):
        assert len(loaded) == len(metadata) and {c: loaded.features[c] for c in ("png", "json", "cls")} == hub.features
        assert sorted(loaded["cls"]) == sorted(metadata["path"].map(class_of))
        assert [loaded[i]["json"]["compound"] for i in (0, len(loaded) - 1)] == ["", "taxol"]  # null in the first class only
        assert loaded[0]["png"].mode == "L" and (loaded[0]["json"]["label"], loaded[0]["cls"]) == ("taxol", 0)
    assert namespace["image"].mode == "L" and namespace["image"].size == (48, 48) and namespace["label"] == 0
    streamed = list(namespace["stream"])
    assert len(streamed) == len(metadata) and {image.mode for image, _ in streamed} == {"L"}
    assert sorted(label for _, label in streamed) == sorted(metadata["path"].map(class_of))


def _class(raw: Path, out: Path, key: str, names: list[str], n: int, seed: int) -> pd.DataFrame:
    """A class of ``n`` source images of len(names) channels, built with channels: preserved."""
    import tifffile

    from cytoimagenet_assets.images.build_class import build_class

    rng, rows = np.random.default_rng(seed), []
    for i in range(n):
        paths = []
        for c in range(len(names)):
            image = (rng.random((160, 160)) * 3000).astype(np.uint16)
            image[40:80, 40 + 10 * c : 90] += 900
            tifffile.imwrite(raw / f"{key}{i}_w{c}.tif", image)
            paths.append(f"{key}{i}_w{c}.tif")
        labels = dict.fromkeys(["organism", "cell_type", "cell_visible", "phenotype", "sirna", "gene"])
        rows.append({"idx": f"s-{key}{i}", "dir_name": "s", "channel_paths": paths, "channel_names": names, "database": "db", "name": "n"})
        rows[-1] |= {**labels, "compound": key, "microscopy": "fluorescence"}
    built = build_class(
        key, key, "compound", pd.DataFrame(rows), {"s": raw}, out / key, target=2 * n, threshold=2, seed=seed, channels="preserved"
    )
    return built.metadata


def test_the_channel_release_holds_each_sample_s_channels_named_and_its_readme_loaders_run(tmp_path, monkeypatch):
    """channels: preserved → release/webdataset-channels: the merged release's samples with one PNG per channel, their
    names as the sources give them and in the shared vocabulary (channels.json), and the card's PyTorch loaders give
    (C, H, W) tensors with stain names and pick channels by name."""
    from cytoimagenet_assets.release.channels import write_channel_release

    raw, dataset = tmp_path / "raw", tmp_path / "dataset"
    raw.mkdir()
    metadata = pd.concat(
        [_class(raw, dataset, "two", ["dapi", "actin"], 3, 0), _class(raw, dataset, "three", ["nucleus", "er", "actin"], 3, 1)]
    )
    metadata.to_csv(dataset / "metadata.csv", index=False)
    release = write_channel_release(pd.read_csv(dataset / "metadata.csv"), dataset, tmp_path / "release", "test")
    index = pd.read_parquet(release.folder / "index.parquet")
    assert release.samples == len(metadata) == len(index)
    assert {k: list(v) for k, v in zip(index["key"], index["channels"])} == {
        Path(f).stem: (["dapi", "actin"] if p == "two" else ["nucleus", "er", "actin"])
        for p, f in zip(metadata["path"], metadata["filename"])
    }
    assert all(list(s) == ["nucleus", "actin"] for s in index.loc[index["key"].str.startswith("two"), "stains"])
    vocabulary = json.loads((release.folder / "channels.json").read_text())
    assert vocabulary["stains"] == ["actin", "er", "nucleus"]
    assert next(s for s in vocabulary["by_stain"] if s["stain"] == "nucleus")["names"] == ["dapi", "nucleus"]
    assert verify_release(release.folder) == []

    card = (release.folder / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", card, re.S)[1]
    monkeypatch.chdir(release.folder)
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102 - the card's own example, run as a user would
    image, stains = scope["image"], scope["stains"]
    assert tuple(image.shape)[0] == len(stains) and image.dtype == scope["torch"].uint8
    picked = list(scope["nuclei_and_actin"])
    assert len(picked) == len(metadata) and all(s == ["nucleus", "actin"] and tuple(x.shape)[0] == 2 for x, s in picked)
    section = README.read_text().split("### Keeping the channels", 1)[1].split("\n## ", 1)[0]
    readme: dict = {}
    exec(re.search(r"```python\n(.*?)```", section, re.S)[1], readme)  # noqa: S102 - README's example, in the release folder
    assert tuple(readme["image"].shape)[0] == len(readme["stains"]) and readme["stains"][0] in ("nucleus", "actin", "er")
    assert sum(1 for _ in readme["nuclei_and_actin"]) == len(metadata)
    first = metadata.sort_values(["path", "filename"]).iloc[0]
    with Image.open(dataset / first["path"] / "channels" / f"{Path(first['filename']).stem}.c0.png") as png:
        assert np.array_equal(
            scope["chw"](next(iter(scope["wds"].WebDataset(scope["shards"], shardshuffle=False))))[0][0].numpy(), np.asarray(png)
        )
