"""What model-based algorithms share: one encoding of the space and distinct proposals.

Encoding: every numeric parameter (INT, DOUBLE, DISCRETE) is modelled as its quantile in [0, 1]
under its distribution (`Parameter.to_unit`), so LOG_UNIFORM, NORMAL, LOG_NORMAL and `step`
mean the same to every model: a model searching uniformly in the unit cube searches the declared
distribution. CATEGORICAL parameters are modelled as unordered choices (their list index), and
each algorithm says how it handles them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .space import ParamType, SearchSpace

_ATTEMPTS = 64  # draws from the distribution before falling back to a scan for a free point


class Encoder:
    def __init__(self, space: SearchSpace):
        self.space = space
        self.categorical = [i for i, p in enumerate(space.parameters) if p.type is ParamType.CATEGORICAL]
        self.numeric = [i for i, p in enumerate(space.parameters) if p.type is not ParamType.CATEGORICAL]

    def encode(self, point: Sequence) -> list[float]:
        """Quantiles for numeric parameters, list indices for categorical ones, in space order."""
        return [
            float(k) if p.type is ParamType.CATEGORICAL else p.to_unit(k) for p, k in zip(self.space.parameters, point)
        ]

    def decode(self, vector: Sequence[float]) -> tuple:
        return tuple(
            min(max(int(round(v)), 0), p.size - 1) if p.type is ParamType.CATEGORICAL else p.from_unit(v)
            for p, v in zip(self.space.parameters, vector)
        )


def draw_new(space: SearchSpace, rng: random.Random, taken: set[tuple]) -> tuple:
    """A random draw not in `taken`; a repeat only when every point of a finite space is taken."""
    for _ in range(_ATTEMPTS):
        point = space.from_unit([rng.random() for _ in range(len(space))])
        if point not in taken:
            return point
    if space.size is not None and len(taken) < space.size:
        # The distribution keeps hitting used points (a small or nearly full space): scan the
        # points from a random start for a free one.
        start = rng.randrange(space.size)
        for offset in range(space.size):
            candidate = space.point((start + offset) % space.size)
            if candidate not in taken:
                return candidate
    return point
