"""sobol: a scrambled, seeded Sobol' sequence over the unit-cube encoding of the space.

The sequence is fixed by `random_state` (or the experiment name). Each proposal carries its
position in the sequence as the label `sobol-index`, and a request continues after the highest
position among the request's trials, so calls, retries and restarts walk one sequence without
gaps or repeats. Positions whose point is already taken (possible on small finite spaces) are
skipped; when a finite space runs out of points, the last resort is a random unused point.

Labels are input: a `sobol-index` that is not a plain number, or lies beyond what the trials of
the request can have used (each proposal advances at most `_SKIPS_PER_PROPOSAL` positions) or
beyond the 2^30 points of the sequence, makes its trial foreign for the bookkeeping.
"""

from __future__ import annotations

import random
import warnings

from scipy.stats import qmc

from .base import Algorithm, Proposal, Reply, Request, derive_seed
from .history import label_index
from .model import draw_new
from .settings import RANDOM_STATE, Schema

LABEL = "sobol-index"
_SKIPS_PER_PROPOSAL = 64  # sequence positions tried before falling back to a random unused point
_SEQUENCE = 2**30  # points of scipy's Sobol' sequence

# scipy warns when a draw is not a power of two: irrelevant to a sequence walked a few points at a time.
warnings.filterwarnings("ignore", message=".*balance properties of Sobol' points", category=UserWarning)


class Sobol(Algorithm):
    name = "sobol"
    summary = "Scrambled Sobol' quasi-random sequence; the position is kept in trial labels."
    schema = Schema(RANDOM_STATE)

    def suggest(self, request: Request) -> Reply:
        space = request.experiment.space
        history = request.history
        seed = derive_seed(request.experiment.name, request.settings["random_state"])
        engine = qmc.Sobol(d=len(space), scramble=True, seed=seed % 2**32)
        credible = min((len(history.trials) + 1) * _SKIPS_PER_PROPOSAL, _SEQUENCE - request.count * _SKIPS_PER_PROPOSAL)
        position = 1 + max((i for i in map(_index, history.trials) if i < credible), default=-1)
        if position:
            engine.fast_forward(position)
        taken = history.taken()
        rng = random.Random(request.seed)
        proposals = []
        for _ in range(request.count):
            request.check()
            for _ in range(_SKIPS_PER_PROPOSAL):
                point = space.from_unit(engine.random(1)[0])
                position += 1
                if point not in taken:
                    break
            else:
                point = draw_new(space, rng, taken)
            taken.add(point)
            # The label records how far the sequence was walked, also for a random fallback.
            proposals.append(Proposal(space.format(point), labels={LABEL: str(position - 1)}))
        return Reply(proposals)


def _index(trial) -> int:
    """The sequence position in a trial's labels; -1 when absent or not a plain number."""
    index = label_index(trial.labels.get(LABEL)) if trial.point is not None else None
    return -1 if index is None else index
