"""Transfer evaluation (methods: "Evaluation (Transfer Tasks)"); no Dagster here.

``knn.py`` exact, vectorized k-NN; ``protocols.py`` BBBC021 NSC/NSCB, COOS-7 and CyCLoPs with
their readers; ``benchmarks.py`` the registry of benchmarks; ``run.py`` the whole evaluation, with the
features ``model.inference`` extracts; ``settings.py`` what it is asked, readable without torch.
"""

from cytoimagenet_assets.catalog.settings import EvaluationSettings
from cytoimagenet_assets.evaluation.benchmarks import catalog_benchmarks

__all__ = ["EvaluationSettings", "catalog_benchmarks", "evaluate_catalog"]


def __getattr__(name: str):
    """``evaluate_catalog`` imports torch: loaded on first use, not by the code server that reads the settings."""
    if name == "evaluate_catalog":
        from cytoimagenet_assets.evaluation.run import evaluate_catalog

        return evaluate_catalog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
