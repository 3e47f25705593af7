"""The one translation of a library error into the failure the UI shows."""

from contextlib import contextmanager
from typing import Iterator

import dagster as dg

from cytoimagenet_assets.defs.metadata import as_metadata
from cytoimagenet_assets.errors import StepFailed


@contextmanager
def step_failures(metadata: dict | None = None) -> Iterator[None]:
    """A :class:`StepFailed` (or a missing file: an upstream result not materialized yet) raised inside
    becomes a ``dg.Failure`` with its message and ``metadata``, retried by the asset's retry policy only
    when the error says a retry can help."""
    try:
        yield
    except (StepFailed, FileNotFoundError) as exc:
        retry = isinstance(exc, StepFailed) and exc.retry
        raise dg.Failure(description=str(exc), metadata=as_metadata(metadata or {}), allow_retries=retry) from exc
