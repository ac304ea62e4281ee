"""Optuna samplers driven by the request alone.

An in-memory Optuna study mirrors the request's trials in the unit-cube encoding
(`algorithms.model.Encoder`): observed trials (SUCCEEDED, and EARLYSTOPPED at their partial
value) are COMPLETE, CREATED and RUNNING trials are RUNNING (so a constant-liar sampler pushes
new proposals away from them), and every other trial is FAIL (ignored by the model; never
proposed again because its point is taken).

The study is a cache: it is kept per experiment and brought in step with each request (new
trials added, pending ones completed). Whenever the request contradicts it (a trial missing or
changed after it finished), it is rebuilt from the request. The sampler is created anew for each
request with the request's seed, so a repeated request gets the same reply from a warm or a
restarted server. Proposals asked from the study are failed once the reply is built: they come
back by name, as trials, in the next request.
"""

from __future__ import annotations

import random
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from .base import Proposal, Reply, Request
from .history import OBSERVED, PENDING, Trial
from .model import Encoder, draw_new
from .space import ParamType

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# Katib's tpe settings gamma and prior_weight map to TPESampler arguments deprecated since Optuna
# 4.9 (removed in 6, which pyproject.toml excludes); they still work.
warnings.filterwarnings("ignore", message=r"`(gamma|prior_weight)` has been deprecated", category=FutureWarning)

_RETRIES = 8  # asks per proposal before falling back to a random unused point


def _state(trial: Trial) -> TrialState:
    if trial.condition in OBSERVED and trial.value is not None:
        return TrialState.COMPLETE
    if trial.condition in PENDING:
        return TrialState.RUNNING
    return TrialState.FAIL


class _Mirror:
    """One experiment's study and the state it holds for each named trial."""

    def __init__(self, encoder: Encoder):
        self.encoder = encoder
        self.names = [p.name for p in encoder.space.parameters]
        self.distributions = {
            p.name: CategoricalDistribution(tuple(range(p.size))) if p.type is ParamType.CATEGORICAL else FloatDistribution(0.0, 1.0)
            for p in encoder.space.parameters
        }
        self.study = optuna.create_study(direction="minimize")
        self.known: dict[str, tuple[int, TrialState, float | None]] = {}  # name -> (number, state, value)
        self.size = 0  # trials in the study (counted here: study.trials deep-copies them all)

    def sync(self, trials: list[Trial]) -> bool:
        """Brings the study in step with the request; False when it must be rebuilt instead."""
        seen = set()
        new = []
        for trial in trials:
            if trial.point is None:
                continue
            seen.add(trial.name)
            state = _state(trial)
            value = trial.value if state is TrialState.COMPLETE else None
            known = self.known.get(trial.name)
            if known is None:
                new.append((trial, state, value))
            elif (known[1], known[2]) != (state, value):
                if known[1] is not TrialState.RUNNING:
                    return False  # a finished trial changed
                self.study.tell(known[0], value, state=state)
                self.known[trial.name] = (known[0], state, value)
        if set(self.known) - seen:
            return False  # a trial disappeared from the request
        start = self.size
        self.study.add_trials(
            [
                create_trial(
                    state=state,
                    value=value,
                    params=dict(zip(self.names, self.encoder.encode(trial.point))),
                    distributions=self.distributions,
                )
                for trial, state, value in new
            ]
        )
        for offset, (trial, state, value) in enumerate(new):
            self.known[trial.name] = (start + offset, state, value)
        self.size += len(new)
        return True

    def ask(self) -> optuna.Trial:
        self.size += 1
        return self.study.ask(self.distributions)


class StudyCache:
    def __init__(self, experiments: int = 4):
        self._mirrors: OrderedDict[tuple, _Mirror] = OrderedDict()
        self._experiments = experiments
        self.lock = threading.Lock()  # one request at a time per algorithm: the study is shared

    def mirror(self, request: Request) -> _Mirror:
        space = request.experiment.space
        key = (request.experiment.name, repr(space.parameters))
        mirror = self._mirrors.pop(key, None)
        if mirror is None or not mirror.sync(request.history.trials):
            mirror = _Mirror(Encoder(space))
            mirror.sync(request.history.trials)
        self._mirrors[key] = mirror
        while len(self._mirrors) > self._experiments:
            self._mirrors.popitem(last=False)
        return mirror


def suggest_with(cache: StudyCache, request: Request, sampler: optuna.samplers.BaseSampler) -> Reply:
    """`request.count` distinct proposals asked from `sampler` over the request's trials."""
    space = request.experiment.space
    rng = random.Random(request.seed)
    taken = request.history.points()
    with cache.lock:
        mirror = cache.mirror(request)
        study = mirror.study
        study.sampler = sampler
        asked = []
        proposals = []
        for _ in range(request.count):
            point = None
            for _ in range(_RETRIES):
                trial = mirror.ask()
                asked.append(trial)
                candidate = mirror.encoder.decode([trial.params[name] for name in mirror.names])
                if candidate not in taken:
                    point = candidate
                    break
            if point is None:
                point = draw_new(space, rng, taken)
            taken.add(point)
            proposals.append(Proposal(space.format(point)))
        for trial in asked:
            study.tell(trial, state=TrialState.FAIL)
    return Reply(proposals)


def gamma_from_hyperopt(gamma: float) -> Callable[[int], int]:
    """Hyperopt's meaning of `gamma` (Katib's tpe setting): ceil(gamma * sqrt(n)) good trials, at most 25."""
    return lambda n: min(int(-(-gamma * n**0.5 // 1)), 25)
