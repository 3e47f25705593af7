"""Launchpad overrides of a step's settings: a Dagster config class with each field of the step's
settings object, unset by default, and one helper that lays the fields set over the catalog's."""

from __future__ import annotations

import collections.abc
import dataclasses
import typing
from typing import Any, Literal, Optional

import dagster as dg
from pydantic import create_model


def overrides_of(settings_type: type, name: str, doc: str, **extra: tuple[Any, Any]) -> type[dg.Config]:
    """A ``dg.Config`` named ``name`` whose fields are those of the settings dataclass, all optional
    (None: the catalog's value), plus ``extra`` fields (``name=(type, default)``) of the asset itself."""
    hints = typing.get_type_hints(settings_type)
    fields = {f.name: (Optional[_launchpad_type(hints[f.name])], None) for f in dataclasses.fields(settings_type)}
    config = create_model(name, __base__=dg.Config, __doc__=doc, **fields, **extra)
    config.__module__ = __name__
    return config


def with_overrides(settings, config: dg.Config):
    """``settings`` with the fields ``config`` sets (not None) replaced; the result is validated as
    the catalog's own settings are."""
    names = {f.name for f in dataclasses.fields(settings)}
    changes = {k: v for k, v in config.model_dump().items() if k in names and v is not None}
    return dataclasses.replace(settings, **{k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()})


def _launchpad_type(annotation):
    """The type the launchpad edits: lists for tuples, plain strings for a choice (checked by the settings)."""
    origin = typing.get_origin(annotation)
    if origin in (tuple, list, collections.abc.Sequence):
        return list[typing.get_args(annotation)[0]]
    if origin is Literal:
        return str
    return annotation
