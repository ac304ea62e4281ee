"""Optuna samplers driven by the request alone.

Each request builds an in-memory Optuna study holding the request's trials, in the history's
canonical order, in the unit-cube encoding (`algorithms.model.Encoder`): observed trials
(SUCCEEDED, and EARLYSTOPPED at their partial value) are COMPLETE, CREATED and RUNNING trials
are RUNNING (so a constant-liar sampler pushes new proposals away from them), and every other
trial is FAIL (ignored by the model; never proposed again because its point is taken). The
sampler is created anew for each request with the request's seed. The reply is therefore a
function of the request: a warm server, a fresh one and a retried request agree, and nothing
grows from call to call, because the study is thrown away with the reply.

Building the study through `Study.add_trials` validates and copies every trial (about 0.1 s at
1,000 trials), so the trials are put into the in-memory storage directly (about 7 ms at 1,000).
That uses InMemoryStorage's private layout, which pyproject.toml pins to Optuna 5;
tests/test_tpe_sobol.py compares the result with Optuna's own `add_trials` path (built by
bench/tpe_optuna.py, which also compares whole experiments over gRPC).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import InMemoryStorage
from optuna.trial import FrozenTrial, TrialState

from .base import Proposal, Reply, Request
from .history import OBSERVED, PENDING, Trial
from .model import Encoder, Taken, draw_new
from .space import ParamType, SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# Katib's tpe settings gamma and prior_weight map to TPESampler arguments deprecated since Optuna
# 4.9 (removed in 6, which pyproject.toml excludes); they still work.
warnings.filterwarnings("ignore", message=r"`(gamma|prior_weight)` has been deprecated", category=FutureWarning)

_RETRIES = 8  # asks per proposal before falling back to a random unused point
CANDIDATE_CELLS = 2_000_000  # n_ei_candidates x (trials + 1): the size of TPE's largest arrays


def ei_candidates(setting: int, trials: int) -> int:
    """The n_ei_candidates used: the setting, bounded so that one call's arrays stay small."""
    return min(setting, max(24, CANDIDATE_CELLS // (trials + 1)))


def _state(trial: Trial) -> TrialState:
    if trial.condition in OBSERVED and trial.value is not None:
        return TrialState.COMPLETE
    if trial.condition in PENDING:
        return TrialState.RUNNING
    return TrialState.FAIL


def distributions(encoder: Encoder) -> dict:
    return {
        p.name: CategoricalDistribution(tuple(range(p.size))) if p.type is ParamType.CATEGORICAL else FloatDistribution(0.0, 1.0)
        for p in encoder.space.parameters
    }


def frozen_trials(encoder: Encoder, trials: list[Trial], dists: dict) -> list[FrozenTrial]:
    """The trials of this space as Optuna trials (with `distributions(encoder)`), numbered in
    the given order."""
    names = encoder.space.names
    out = []
    for trial in trials:
        if trial.point is None:
            continue
        state = _state(trial)
        number = len(out)
        out.append(
            FrozenTrial(
                number=number,
                state=state,
                value=trial.value if state is TrialState.COMPLETE else None,
                values=None,
                datetime_start=None,
                datetime_complete=None,
                params=dict(zip(names, trial.unit)),
                distributions=dists,
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=number,
            )
        )
    return out


def study_of(trials: list[FrozenTrial], dists: dict) -> optuna.Study:
    """A minimizing in-memory study holding `trials` (numbered 0..n-1) as they are."""
    storage = InMemoryStorage()
    study = optuna.create_study(storage=storage, direction="minimize")
    study_id = study._study_id
    info = storage._studies[study_id]
    info.trials.extend(trials)
    info.param_distribution.update(dists)
    storage._trial_id_to_study_id_and_number.update((t._trial_id, (study_id, t.number)) for t in trials)
    storage._max_trial_id = len(trials) - 1
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    if complete:  # what InMemoryStorage._update_cache would find: the first trial with the least value
        info.best_trial_id = min(complete, key=lambda t: t.value)._trial_id
    return study


class Asker:
    """Asks a sampler for new points of `space`, given the trials of that space (each with its
    `point` and `unit` in it); asked points stay RUNNING in the study, so a constant-liar sampler
    keeps later asks away from them."""

    def __init__(self, space: SearchSpace, trials: list[Trial], make_sampler: Callable[[int], optuna.samplers.BaseSampler]):
        self.space = space
        self.encoder = Encoder(space)
        self.dists = distributions(self.encoder)
        frozen = frozen_trials(self.encoder, trials, self.dists)
        self.study = study_of(frozen, self.dists)
        self.study.sampler = make_sampler(len(frozen))

    def ask(self, taken: Taken, rng: random.Random, check: Callable[[], None]) -> tuple:
        """A point not in `taken` (a random unused one after `_RETRIES` asks that were all taken);
        the caller adds it to `taken`."""
        for _ in range(_RETRIES):
            check()
            trial = self.study.ask(self.dists)
            candidate = self.encoder.decode([trial.params[name] for name in self.space.names])
            if candidate not in taken:
                return candidate
        return draw_new(self.space, rng, taken)


def suggest_with(request: Request, make_sampler: Callable[[int], optuna.samplers.BaseSampler]) -> Reply:
    """`request.count` distinct proposals asked from the sampler `make_sampler(trial count)` over
    the request's trials."""
    space = request.experiment.space
    asker = Asker(space, request.history.trials, make_sampler)
    rng = random.Random(request.seed)
    taken = request.history.taken()
    proposals = []
    for _ in range(request.count):
        point = asker.ask(taken, rng, request.check)
        taken.add(point)
        proposals.append(Proposal(space.format(point)))
    return Reply(proposals)


def gamma_from_hyperopt(gamma: float) -> Callable[[int], int]:
    """Hyperopt's meaning of `gamma` (Katib's tpe setting): ceil(gamma * sqrt(n)) good trials, at most 25."""
    return lambda n: min(int(-(-gamma * n**0.5 // 1)), 25)
