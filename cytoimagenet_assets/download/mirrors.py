"""Mirrors: download URLs redirected by prefix to another server — an institution's cache, a local
copy of a source, or a loopback server in tests and rehearsals.

Set them in ``CYTOIMAGENET_MIRRORS`` (``<prefix>=<replacement>`` pairs separated by commas or
newlines) or in a catalog's ``mirrors:`` block (a mapping); the environment wins for a prefix both
name. Every HTTP request of the download package goes through :class:`MirroredSession`, so HTTPS
files, zip members read by Range, IDR's mirror and folder listings, Kaggle's API and the weekly
HEAD check all follow them; the logical URL (records, fingerprints, messages) stays the original,
and messages add the mirror's URL. A prefix matches at a ``/`` boundary only (``…/bb`` does not take
``…/bbbc/x``), a trailing ``/`` on either side is ignored, and the longest matching prefix wins; a
prefix named twice, or a URL with a space, a query, a fragment, ``;`` or ``=`` (two pairs joined by
something other than a comma) is refused, naming the entry. Credentials go to the mirror
a user configured, and never further: a redirect to another host drops the Authorization header
(requests' rule, tested).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

import requests

from cytoimagenet_assets.catalog import mirror_url_problem

MIRRORS_ENV = "CYTOIMAGENET_MIRRORS"


@dataclass(frozen=True)
class Mirrors:
    """(prefix, replacement) pairs, longest prefix first."""

    pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, mapping: Mapping[str, str] | Iterable[tuple[str, str]], where: str = "mirrors") -> "Mirrors":
        """Validated pairs (a mapping, or the pairs in the order given, so a repeated prefix is seen)."""
        pairs: dict[str, str] = {}
        for prefix, replacement in mapping.items() if isinstance(mapping, Mapping) else mapping:
            for url in (str(prefix), str(replacement)):
                if problem := mirror_url_problem(url):
                    raise ValueError(f"{where}: {url!r} in {prefix}={replacement} {problem}")
            key = str(prefix).rstrip("/")  # `…/bbbc/` and `…/bbbc` are one prefix, and no `//` is made
            if key in pairs:
                raise ValueError(f"{where}: prefix {key!r} is named twice ({key}={pairs[key]} and {prefix}={replacement})")
            pairs[key] = str(replacement).rstrip("/")
        return cls(tuple(sorted(pairs.items(), key=lambda pair: -len(pair[0]))))

    @classmethod
    def parse(cls, text: str, where: str = MIRRORS_ENV) -> "Mirrors":
        """``prefix=replacement`` pairs separated by commas or newlines."""
        pairs = []
        for entry in filter(None, (e.strip() for e in re.split(r"[,\n]", text or ""))):
            prefix, sep, replacement = entry.partition("=")
            if not sep or not prefix.strip() or not replacement.strip():
                raise ValueError(f"{where}: {entry!r} is not <prefix>=<replacement>")
            pairs.append((prefix.strip(), replacement.strip()))
        return cls.of(pairs, where)

    def merged(self, other: "Mirrors") -> "Mirrors":
        """These mirrors with ``other``'s added; ``other`` wins for a prefix both name."""
        return Mirrors.of({**dict(self.pairs), **dict(other.pairs)})

    def rewrite(self, url: str) -> str:
        for prefix, replacement in self.pairs:
            if url.startswith(prefix) and url[len(prefix) : len(prefix) + 1] in ("", "/", "?", "#"):
                return replacement + url[len(prefix) :]
        return url


def mirrors_from_env() -> Mirrors:
    return Mirrors.parse(os.environ.get(MIRRORS_ENV, ""))


def configured_mirrors(catalog_mirrors: Mapping[str, str]) -> Mirrors:
    """A catalog's ``mirrors:`` with CYTOIMAGENET_MIRRORS over them."""
    return Mirrors.of(catalog_mirrors, "catalog mirrors").merged(mirrors_from_env())


class MirroredSession(requests.Session):
    """A session that sends each request to its mirror (redirects the server answers are followed as given)."""

    def __init__(self, mirrors: Mirrors | None = None):
        super().__init__()
        self.mirrors = mirrors if mirrors is not None else mirrors_from_env()

    def request(self, method: str, url: str, *args, **kwargs) -> requests.Response:
        return super().request(method, self.mirrors.rewrite(url), *args, **kwargs)
