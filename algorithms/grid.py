"""grid: every point of a finite grid exactly once, in a seeded shuffled order.

The order is a fixed permutation of the grid (an affine map i -> (a*i + c) mod n with a coprime
to n), seeded by `random_state` or the experiment name, so that a prefix of the order spreads
over the whole grid and every request, retry or restart agrees on it. Points whose only trials
FAILED are retried once no untried point is left, the least-failed first.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

from katib_services.numbers import quote

from .base import Algorithm, Proposal, Reply, Request, derive_seed
from .errors import Exhausted, Problems
from .experiment import Experiment
from .limits import Limits
from .history import Condition
from .settings import RANDOM_STATE, Schema


class GridSearch(Algorithm):
    name = "grid"
    summary = "Every point of the grid once, in a seeded shuffled order; needs a step on every DOUBLE."
    schema = Schema(RANDOM_STATE)

    def check(self, experiment: Experiment, settings: dict[str, Any], problems: Problems, limits: Limits) -> None:
        space = experiment.space
        for i, p in enumerate(space.parameters):
            if not p.finite:
                problems.add(
                    f"spec.parameters[{i}] ({quote(p.name)}).feasibleSpace.step",
                    'is missing; grid needs a step for every double parameter, for example step: "0.1"',
                )
        if space.size is None:
            return
        n, limit = space.size, experiment.max_trial_count
        if limit > n:
            problems.add(
                "spec.maxTrialCount",
                f"({limit}) is larger than the grid, which has {n} points; lower maxTrialCount to at "
                f"most {n}, or refine the grid with smaller steps or more values",
            )
        elif limit == 0 and n > limits.grid_points:
            problems.add(
                "spec.maxTrialCount",
                f"is unset and the grid has {n:,} points (more than {limits.grid_points:,}, --max-grid-points); "
                "set maxTrialCount to the number of trials to run, or coarsen the grid",
            )

    def suggest(self, request: Request) -> Reply:
        space = request.experiment.space
        n = space.size
        order = _Order(n, derive_seed(request.experiment.name, request.settings["random_state"]))
        done: set[int] = set()
        failures: Counter[int] = Counter()
        for trial in request.history.trials:
            if trial.rank is None:
                continue
            if trial.condition is Condition.FAILED:
                failures[trial.rank] += 1
            else:
                done.add(trial.rank)
        picks: list[int] = []
        i = 0
        while len(picks) < request.count and i < n:
            rank = order.at(i)
            if rank not in done and rank not in failures:
                picks.append(rank)
            i += 1
        if len(picks) < request.count:
            retry = sorted((r for r in failures if r not in done), key=lambda r: (failures[r], order.position(r)))
            picks += retry[: request.count - len(picks)]
        if len(picks) < request.count:
            raise Exhausted(
                f"the grid is exhausted: all {n} of its points already have trials and "
                f"{len(picks)} failed point(s) are left to retry, so {request.count} new assignment(s) "
                f"cannot be made without repeating a point; set spec.maxTrialCount to at most {n}, "
                "or refine the grid with smaller steps or more values"
            )
        return Reply([Proposal(space.format(space.point(r))) for r in picks])


class _Order:
    """A seeded permutation of range(n): position i holds point (a*i + c) mod n."""

    def __init__(self, n: int, seed: int):
        rng = random.Random(seed)
        self.n = n
        self.a = 1
        if n > 2:
            self.a = rng.randrange(1, n)
            while math.gcd(self.a, n) != 1:
                self.a = rng.randrange(1, n)
        self.c = rng.randrange(n)
        self.a_inverse = pow(self.a, -1, n) if n > 1 else 0

    def at(self, i: int) -> int:
        return (self.a * i + self.c) % self.n

    def position(self, rank: int) -> int:
        return (rank - self.c) * self.a_inverse % self.n
