"""Schema-compatible synthetic rows, used only when no dataset file is configured.

Each dataset module writes raw rows in its own published schema (so the same loader code maps them), with
class-dependent log-normal traffic statistics and categorical fields whose value only leans towards the
class (:func:`class_choice`), so that no single field separates benign from attack rows (``qesif ids
audit`` finds no suspect field in a generator's output; a test checks it). The per-class profile is fixed
per dataset (a generator seeded by a constant derived from the dataset name), the rows come from the
caller's generator. These rows are not measurements: every flow table built from them has
``attrs["synthetic"] = True`` and every output that used them says so.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np


def draw_classes(
    names: tuple[str, ...], weights: tuple[float, ...], n: int, rng: np.random.Generator
) -> np.ndarray:
    """Class index per row (0 = benign) with the given class weights."""
    p = np.asarray(weights, dtype=np.float64)
    return rng.choice(len(names), size=n, p=p / p.sum())


@dataclass(frozen=True)
class ClassProfile:
    """Log-normal location and scale of each column for each class."""

    columns: tuple[str, ...]
    mu: np.ndarray  # classes x columns
    sigma: np.ndarray

    def sample(self, classes: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        noise = rng.standard_normal((len(classes), len(self.columns)))
        values = np.exp(self.mu[classes] + self.sigma[classes] * noise)
        return {c: values[:, i] for i, c in enumerate(self.columns)}


def class_profile(dataset: str, classes: tuple[str, ...], columns: tuple[str, ...]) -> ClassProfile:
    """The fixed per-class profile of a dataset (same for every run; the rows still come from the caller)."""
    profile_rng = np.random.default_rng(zlib.crc32(dataset.encode()))
    mu = profile_rng.uniform(3.0, 5.0, (len(classes), len(columns)))
    sigma = profile_rng.uniform(0.8, 1.6, (len(classes), len(columns)))
    return ClassProfile(columns, mu, sigma)


def class_choice(
    values: tuple[str, ...], classes: np.ndarray, rng: np.random.Generator, lean: float = 0.5
) -> np.ndarray:
    """A categorical field that leans towards the class: class c takes ``values[c % len(values)]`` with
    probability ``lean`` and otherwise a value drawn uniformly, so every value occurs in every class."""
    choices = np.asarray(values, dtype=object)
    own = choices[classes % len(choices)]
    other = choices[rng.integers(0, len(choices), len(classes))]
    return np.where(rng.random(len(classes)) < lean, own, other)
