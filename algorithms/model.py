"""What model-based algorithms share: one encoding of the space and distinct proposals.

Encoding: every numeric parameter (INT, DOUBLE, DISCRETE) is modelled as its quantile in [0, 1]
under its distribution (`Parameter.to_unit`), so LOG_UNIFORM, NORMAL, LOG_NORMAL and `step`
mean the same to every model: a model searching uniformly in the unit cube searches the declared
distribution. CATEGORICAL parameters are modelled as unordered choices (their list index), and
each algorithm says how it handles them.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from .space import ParamType, SearchSpace

_ATTEMPTS = 64  # draws from the distribution before falling back to a scan for a free point


class Encoder:
    """Model vectors back to points; `SearchSpace.encode` is the other way (a trial's encoding is
    kept as `Trial.unit`)."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.categorical = [i for i, p in enumerate(space.parameters) if p.type is ParamType.CATEGORICAL]
        self.numeric = [i for i, p in enumerate(space.parameters) if p.type is not ParamType.CATEGORICAL]

    def decode(self, vector: Sequence[float]) -> tuple:
        return tuple(
            min(max(int(round(v)), 0), p.size - 1) if p.type is ParamType.CATEGORICAL else p.from_unit(v)
            for p, v in zip(self.space.parameters, vector)
        )


class Taken:
    """Points not to propose: those of the request's trials (avoided while any other point is free)
    and those of the batch being built (never repeated: the service refuses a batch larger than the
    space before any algorithm runs)."""

    def __init__(self, trials: Iterable[tuple] = ()):
        self.points = set(trials)
        self.batch: set[tuple] = set()

    def __contains__(self, point: object) -> bool:
        return point in self.points

    def __len__(self) -> int:
        return len(self.points)

    def add(self, point: tuple) -> None:
        """Records a member of the batch."""
        self.points.add(point)
        self.batch.add(point)

    def avoid(self, count: int) -> set[tuple]:
        """The points not to propose in a space of `count` points: every taken point while any
        point is free, else only the batch."""
        return self.batch if len(self.points) >= count else self.points


def draw_new(space: SearchSpace, rng: random.Random, taken: Taken) -> tuple:
    """A random draw not in `taken`; when every point of the space is taken, a point of an old
    trial that is not yet in the batch.

    Draws follow the distributions; when they keep hitting used points (a small or nearly full
    space, or a continuous range holding few doubles), the points are scanned from a random start
    for a free one. The scan passes at most len(taken) used points.
    """
    for _ in range(_ATTEMPTS):
        point = space.random_point(rng)
        if point not in taken:
            return point
    return next_free(space, rng, taken)


def next_free(space: SearchSpace, rng: random.Random, taken: Taken) -> tuple:
    """The first point not in `taken` (or, when every point of the space is taken, not in the
    batch) from a random start, in the order of `space.point`; passes at most len(taken) points."""
    used = taken.avoid(space.count)
    start = rng.randrange(space.count)
    for offset in range(min(space.count, len(used) + 1)):
        candidate = space.point((start + offset) % space.count)
        if candidate not in used:
            return candidate
    raise AssertionError("the batch is larger than the space")  # the service checks this first
