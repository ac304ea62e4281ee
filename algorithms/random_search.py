"""random: independent draws from each parameter's distribution, never repeating a point."""

from __future__ import annotations

import random

from .base import Algorithm, Proposal, Reply, Request
from .settings import RANDOM_STATE, Schema
from .space import SearchSpace

_ATTEMPTS = 64  # draws from the distribution before falling back to a scan for a free point


class RandomSearch(Algorithm):
    name = "random"
    summary = "Independent draws from each parameter's distribution; no point is proposed twice."
    schema = Schema(RANDOM_STATE)

    def suggest(self, request: Request) -> Reply:
        space = request.experiment.space
        rng = random.Random(request.seed)
        taken = request.history.points()
        proposals = []
        for _ in range(request.count):
            point = _draw_new(space, rng, taken)
            taken.add(point)
            proposals.append(Proposal(space.format(point)))
        return Reply(proposals)


def _draw_new(space: SearchSpace, rng: random.Random, taken: set[tuple]) -> tuple:
    """A draw not in `taken`; a repeat only when every point of a finite space is taken."""
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
