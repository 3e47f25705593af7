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
