"""The package's shape: README's layout matches the tree, the steps' packages import one another
without cycles and without Dagster, and only the data home assembles paths under it."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cytoimagenet_assets"
DAGSTER_LAYER = {"defs", "definitions", "build", "cluster"}


def _layout_block() -> str:
    section = (ROOT / "README.md").read_text().split("## Package layout", 1)[1]
    return section.split("```", 2)[1]


def _imports(path: Path) -> set[str]:
    """The cytoimagenet_assets modules ``path`` imports (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "cytoimagenet_assets" or name.split(".")[0].startswith("dagster")}


def _top(path: Path) -> str:
    """The first-level part of the package a file belongs to: 'labels' for labels/assign.py, 'storage' for storage.py."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_the_readme_layout_lists_every_module_and_names_only_modules_that_exist():
    block = _layout_block()
    modules = sorted(p for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py",) and "__pycache__" not in p.parts)
    unlisted = [str(p.relative_to(PACKAGE)) for p in modules if p.name != "__main__.py" and p.name not in block]
    assert not unlisted, f"modules README's package layout does not mention: {unlisted}"
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert all(f"  {folder}/" in block for folder in folders), folders
    named = set(re.findall(r"\b([a-z_]+\.py)\b", block))
    existing = {p.name for p in PACKAGE.rglob("*.py")} | {p.name for p in (ROOT / "benchmarks").glob("*.py")}
    existing |= {p.name for p in (ROOT / "cytoimagenet_assets_tests").glob("*.py")}
    assert named <= existing, f"README names modules that do not exist: {sorted(named - existing)}"


def test_the_steps_import_one_another_without_cycles_and_without_dagster():
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        top = _top(path)
        for module in _imports(path):
            if module.split(".")[0].startswith("dagster"):
                assert top in DAGSTER_LAYER, f"{path.relative_to(ROOT)} imports Dagster outside the Dagster layer"
                continue
            parts = module.split(".")
            if len(parts) > 1 and parts[1] != top:
                graph.setdefault(top, set()).add(parts[1])
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in trail:
                cycles.append(trail[trail.index(nxt) :] + [nxt])
            elif len(trail) < len(graph) + 1:
                visit(nxt, trail + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, f"import cycles between packages: {sorted({' -> '.join(c) for c in cycles})}"


HOME_FOLDERS = "raw|tables|dataset|release|shards|models|embeddings|reports|state|catalog\\.db|\\.remote|\\.download|\\.archives"


@pytest.mark.parametrize("pattern", [r"\bhome\.root\b", rf"/\s*[\"']({HOME_FOLDERS})[\"'/]", rf"Path\([\"']({HOME_FOLDERS})[\"'/]"])
def test_only_the_data_home_assembles_paths_under_it(pattern):
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in PACKAGE.rglob("*.py")
        if p.name != "storage.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(pattern, line)
    ]
    assert not offenders, offenders


@pytest.mark.parametrize("step", ["model"])
def test_training_stands_apart_from_the_images_and_the_release(step):
    """model/ trains on the packed array or the release's shards through storage, and the release and
    the images stand on it: an import the other way would make a cycle and tie training to export."""
    offenders = [
        f"{p.relative_to(ROOT)}: {module}"
        for p in (PACKAGE / step).rglob("*.py")
        for module in _imports(p)
        if module.split(".")[1:2] in (["images"], ["release"], ["evaluation"], ["embed"])
    ]
    assert not offenders, offenders


MODEL_RUN_FILES = r"model\.pt|last\.pt|history\.csv|model_card\.json|model_card\.md"


def test_only_the_model_run_map_spells_a_runs_file_names():
    """A run folder's files are joined to a folder only in model/run_folder.py (ModelRun)."""
    pattern = rf"/\s*[\"']({MODEL_RUN_FILES})[\"']|[\"']checkpoints[\"']\s*/\s*[\"']last\.pt"
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
        if p.name != "run_folder.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(pattern, line)
    ]
    assert not offenders, offenders


STEP_PACKAGES = ["sources", "labels", "images", "model", "release", "embed", "evaluation"]


@pytest.mark.parametrize("step", STEP_PACKAGES)
def test_each_step_package_exports_its_entry_points(step):
    """``from cytoimagenet_assets.<step> import <entry point>``: each step's __init__ lists what a user or
    the Dagster layer calls (``__all__``), and each name resolves (lazily where it would import torch)."""
    import importlib

    package = importlib.import_module(f"cytoimagenet_assets.{step}")
    assert getattr(package, "__all__", None), f"cytoimagenet_assets/{step}/__init__.py has no __all__"
    for name in package.__all__:
        assert callable(getattr(package, name)), f"cytoimagenet_assets.{step}.{name}"


def test_nothing_outside_the_rehearsal_imports_it():
    """The rehearsal ships in the package for operators and tests, but the build never depends on it:
    a step, the Dagster layer or the CLI importing the fake world would tie the real build to it."""
    offenders = [
        f"{p.relative_to(ROOT)}: {module}"
        for p in PACKAGE.rglob("*.py")
        if _top(p) != "rehearsal"
        for module in _imports(p)
        if module.split(".")[1:2] == ["rehearsal"]
    ]
    assert not offenders, offenders
