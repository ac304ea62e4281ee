"""random: independent draws from each parameter's distribution, never repeating a point."""

from __future__ import annotations

import random

from .base import Algorithm, Proposal, Reply, Request
from .model import draw_new
from .settings import RANDOM_STATE, Schema


class RandomSearch(Algorithm):
    name = "random"
    summary = "Independent draws from each parameter's distribution; no point is proposed twice."
    schema = Schema(RANDOM_STATE)

    def suggest(self, request: Request) -> Reply:
        space = request.experiment.space
        rng = random.Random(request.seed)
        taken = request.history.taken()
        proposals = []
        for _ in range(request.count):
            request.check()
            point = draw_new(space, rng, taken)
            taken.add(point)
            proposals.append(Proposal(space.format(point)))
        return Reply(proposals)

