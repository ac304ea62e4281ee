"""sobol: a scrambled, seeded Sobol' sequence over the unit-cube encoding of the space.

The sequence is fixed by `random_state` (or the experiment name). Each proposal carries its
position in the sequence as the label `sobol-index`, and a request continues after the highest
position among the request's trials, so calls, retries and restarts walk one sequence without
gaps or repeats. Positions whose point is already taken (possible on small finite spaces) are
skipped; when a finite space runs out of points, the last resort is a random unused point.
"""

from __future__ import annotations

import random
import warnings

from scipy.stats import qmc

from .base import Algorithm, Proposal, Reply, Request, derive_seed
from .model import draw_new
from .settings import RANDOM_STATE, Schema

LABEL = "sobol-index"
_SKIPS_PER_PROPOSAL = 64  # sequence positions tried before falling back to a random unused point


class Sobol(Algorithm):
    name = "sobol"
    summary = "Scrambled Sobol' quasi-random sequence; the position is kept in trial labels."
    schema = Schema(RANDOM_STATE)

    def suggest(self, request: Request) -> Reply:
        space = request.experiment.space
        history = request.history
        seed = derive_seed(request.experiment.name, request.settings["random_state"])
        engine = qmc.Sobol(d=len(space), scramble=True, seed=seed % 2**32)
        position = 1 + max((_index(t.labels) for t in history.trials), default=-1)
        if position:
            engine.fast_forward(position)
        taken = history.points()
        rng = random.Random(request.seed)
        proposals = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns when n is not a power of two
            for _ in range(request.count):
                for _ in range(_SKIPS_PER_PROPOSAL):
                    point = space.from_unit(engine.random(1)[0])
                    position += 1
                    if point not in taken:
                        break
                else:
                    point = draw_new(space, rng, taken)
                taken.add(point)
                proposals.append(Proposal(space.format(point), labels={LABEL: str(position - 1)}))
        return Reply(proposals)


def _index(labels) -> int:
    """The sequence position in a trial's labels; -1 when absent or not a sane position."""
    try:
        index = int(labels.get(LABEL, -1))
    except ValueError:
        return -1
    return index if 0 <= index < 2**30 else -1
