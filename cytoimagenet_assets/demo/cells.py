"""Synthetic fluorescence microscopy whose look depends on its labels.

Every label (a compound's mechanism, an siRNA, a cell line, a localization ...) maps, through a
stable hash, to a change in cell morphology: nuclear size and shape, cell size and density,
intensities, texture, and where each stain sits. Images of the same label therefore resemble each
other and differ from other labels, so a model can learn the classes and a mechanism-of-action
evaluation on the demo means something. Pure numpy; deterministic for a given generator.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

# How each stain is drawn in a cell.
PATTERNS = {
    "nucleus": "nucleus",
    "nucleoli": "nucleoli",
    "actin": "filaments",
    "microtubules": "filaments",
    "er": "reticulum",
    "golgi": "perinuclear",
    "mitochondria": "puncta",
    "cell membrane": "membrane",
    "cytoplasm": "cytoplasm",
    "cell body": "cytoplasm",
    "protein": "cytoplasm",
    "rna": "nucleoli",
    "proliferation": "nucleus",
    "intestine": "cytoplasm",
    "pharynx": "puncta",
    "actin|golgi": "filaments",
}
LOCALIZATION_PATTERNS = ("nucleus", "cytoplasm", "membrane", "puncta", "perinuclear", "nucleoli", "reticulum", "filaments")


def stable_hash(*parts: object) -> int:
    """A hash of the parts that is the same in every process and Python version."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def keyed_rng(seed: int, *key: object) -> np.random.Generator:
    """A generator of its own for each key (an image, a source): the draws do not depend on what was drawn before."""
    return np.random.default_rng([seed, stable_hash(*key)])


@dataclass(frozen=True)
class Morphology:
    nucleus_radius: float = 9.0
    elongation: float = 1.2  # major / minor axis of the nucleus
    cell_scale: float = 2.2  # cell radius / nucleus radius
    density: float = 1.0  # cells per (48 px)^2
    brightness: float = 1.0
    texture: float = 0.25
    puncta: int = 12
    filament_period: float = 6.0
    protein_pattern: str = "cytoplasm"  # where a "protein" channel's signal sits

    def perturbed(self, *labels: object, strength: float = 1.0) -> "Morphology":
        """This morphology shifted by each label, deterministically (strength scales the shift)."""
        m = self
        for label in labels:
            if label is None:
                continue
            u = np.random.default_rng(stable_hash("morphology", label)).uniform(-1, 1, 8) * strength
            m = replace(
                m,
                nucleus_radius=float(np.clip(m.nucleus_radius * (1 + 0.35 * u[0]), 5, 16)),
                elongation=float(np.clip(m.elongation + 0.5 * u[1], 1.0, 2.4)),
                cell_scale=float(np.clip(m.cell_scale + 0.6 * u[2], 1.5, 3.2)),
                density=float(np.clip(m.density * (1 + 0.5 * u[3]), 0.4, 2.0)),
                brightness=float(np.clip(m.brightness * (1 + 0.4 * u[4]), 0.4, 1.8)),
                texture=float(np.clip(m.texture + 0.2 * u[5], 0.02, 0.6)),
                puncta=int(np.clip(m.puncta + 10 * u[6], 3, 30)),
                filament_period=float(np.clip(m.filament_period + 3 * u[7], 3, 10)),
            )
        return m

    def localized(self, localization: str) -> "Morphology":
        """The protein channel shows the compartment this localization label hashes to."""
        return replace(self, protein_pattern=LOCALIZATION_PATTERNS[stable_hash("localization", localization) % len(LOCALIZATION_PATTERNS)])


def render_field(rng: np.random.Generator, morphology: Morphology, stains: list[str], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """One field of view: a float32 image in [0, 1] per stain, with cells, blur, background and noise."""
    h, w = shape
    m = morphology
    n_cells = max(1, int(rng.poisson(m.density * h * w / 48**2)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = {s: np.zeros(shape, np.float32) for s in stains}
    for _ in range(n_cells):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        angle = rng.uniform(0, np.pi)
        r_minor = m.nucleus_radius * rng.uniform(0.85, 1.15) / np.sqrt(m.elongation)
        r_major = r_minor * m.elongation
        cell_r = m.nucleus_radius * m.cell_scale * rng.uniform(0.85, 1.15)
        span = int(cell_r * 1.3) + 2
        y0, y1, x0, x1 = max(0, int(cy) - span), min(h, int(cy) + span), max(0, int(cx) - span), min(w, int(cx) + span)
        if y0 >= y1 or x0 >= x1:
            continue
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        nuc = ((u / r_major) ** 2 + (v / r_minor) ** 2) <= 1.0
        dist = np.sqrt(dx**2 + dy**2)
        cell = dist <= cell_r
        cyto = cell & ~nuc
        for stain in stains:
            pattern = PATTERNS.get(stain, "cytoplasm")
            if stain == "protein":
                pattern = m.protein_pattern
            layer = _pattern(rng, pattern, m, nuc, cyto, cell, dist, cell_r, u, v)
            out[stain][y0:y1, x0:x1] += layer * m.brightness * rng.uniform(0.7, 1.3)
    for stain, image in out.items():
        image = ndimage.gaussian_filter(image, 1.0)
        image += 0.04 + rng.normal(0, 0.015, shape).astype(np.float32)
        out[stain] = np.clip(image / 2.0, 0, 1)
    return out


def _pattern(rng, pattern, m, nuc, cyto, cell, dist, cell_r, u, v) -> np.ndarray:
    texture = 1 + m.texture * rng.standard_normal(nuc.shape).astype(np.float32)
    if pattern == "nucleus":
        return nuc * texture * 1.2
    if pattern == "nucleoli":
        layer = np.zeros(nuc.shape, np.float32)
        ys, xs = np.nonzero(nuc)
        if len(ys):
            for k in rng.integers(0, len(ys), size=max(1, m.puncta // 4)):
                layer += np.exp(-((u - u[ys[k], xs[k]]) ** 2 + (v - v[ys[k], xs[k]]) ** 2) / 3.0)
        return layer * nuc * 1.5
    if pattern == "membrane":
        return np.exp(-((dist - cell_r) ** 2) / 4.0) * texture
    if pattern == "filaments":
        phase = rng.uniform(0, 2 * np.pi)
        return cyto * (0.5 + 0.5 * np.sin(u * 2 * np.pi / m.filament_period + phase)) * texture
    if pattern == "reticulum":
        return cyto * np.clip(texture, 0, None) * np.exp(-dist / cell_r)
    if pattern in ("puncta", "perinuclear"):
        layer = np.zeros(nuc.shape, np.float32)
        ys, xs = np.nonzero(cyto)
        if len(ys):
            if pattern == "perinuclear":  # golgi: puncta hugging the nucleus
                near = dist[ys, xs] < np.percentile(dist[ys, xs], 35)
                ys, xs = ys[near], xs[near]
            for k in rng.integers(0, len(ys), size=m.puncta):
                layer += np.exp(-((u - u[ys[k], xs[k]]) ** 2 + (v - v[ys[k], xs[k]]) ** 2) / 2.5)
        return layer * 1.3
    return cyto * texture * 0.8  # cytoplasm


def to_uint(image: np.ndarray, bits: int) -> np.ndarray:
    """A [0, 1] float image as the integer type of a ``bits``-bit camera (12-bit data sits in uint16)."""
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.round(image * (2**bits - 1)).astype(dtype)


def to_rgb(gray: np.ndarray, tint: tuple[float, float, float]) -> np.ndarray:
    """A brightfield-style stained RGB image (dark stain on a light background), uint8."""
    stain = np.clip(gray * 2.2, 0, 1)[..., None]
    background = np.array([0.93, 0.9, 0.92], np.float32)
    rgb = background * (1 - stain) + np.asarray(tint, np.float32) * stain
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
