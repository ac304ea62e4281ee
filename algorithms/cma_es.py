"""cmaes: CMA-ES (the `cmaes` library) rebuilt from the request on every call, with IPOP / BIPOP.

Search space. Every INT, DOUBLE and DISCRETE parameter is one dimension of CMA-ES, in the unit
encoding of `algorithms.model.Encoder` (the quantile of the value under its distribution), with
bounds [0, 1]; so LOG_UNIFORM, NORMAL and `step` mean what they mean everywhere else. Finite
parameters whose points are evenly spaced in that encoding (INT and stepped DOUBLE with the UNIFORM
distribution, and DISCRETE lists) are integer dimensions of `cmaes.CMAwM`, CMA-ES with margin, which
keeps some probability of leaving the current point so the search does not stall on a plateau.
Finite parameters with a non-uniform distribution, or with more than 10,000 points, are searched
as continuous quantiles and snapped to the nearest point. CATEGORICAL parameters are not modelled: each proposal draws them uniformly,
from a seed of (experiment seed, run, generation, member).

The request is the only state. Each CMA-ES proposal carries labels:

    cmaes-run         restart number (0 for the first run)
    cmaes-generation  generation within the run
    cmaes-member      index of the sample within the generation
    cmaes-late        (only when not empty) members of the previous generation that were still
                      pending when it was told, as "3.7"; they are left out of that generation
                      forever, so a late finisher never changes a distribution already used

Every request rebuilds the optimizer from `derive_seed(experiment name, random_state)` and replays
the labelled trials generation by generation. The sampler is reseeded from (seed, run, generation)
at the start of each generation, so member m of generation g is always the (m + 1)-th sample of
that generation: replay reproduces the issued vectors exactly, whatever other members exist. Once
at least `popsize` members of generation g are finished, replay tells the first `popsize` of them
(lowest member index first, minus the late ones) paired with the replayed vectors. Finished means
SUCCEEDED and EARLYSTOPPED (at their, possibly partial, value) and FAILED, KILLED and
METRICSUNAVAILABLE, which count as the worst value told in their generation (a large finite penalty
when none of them has a value); a SUCCEEDED trial without a usable metric counts as failed. The
first generation not complete is the current one: new proposals take its next unissued member
indices, asking beyond `popsize` when members are still running. A member whose point equals an
existing trial or an earlier proposal is skipped (never issued); after `_SKIPS` skips in a row the
proposal is a random draw labelled `cmaes-member: random`, which replay ignores. Trials without
valid labels (foreign trials, garbage labels, points outside the space) are ignored by the replay
but never proposed again.

Restarts (`restart_strategy`), checked after each tell with the optimizer's `should_stop()`:

* none: one run, as Katib's Optuna service (CMA-ES keeps sampling after it converges).
* ipop: run r has popsize `popsize * 2**r` (Auger & Hansen 2005).
* bipop: Hansen 2009. Run 0 belongs to the large regime. Before each restart, the regime that has
  spent fewer evaluations (popsize x generations told) runs next: a large run doubles the large
  popsize (`popsize * 2**k` after k large restarts) and starts at `sigma`; a small run draws u in
  [0, 1) and uses popsize `floor(popsize * (large popsize / (2 * popsize)) ** (u * u))` (at least
  2) and step size `sigma * 10 ** (-2 * u)`.

Every restart starts from a mean drawn uniformly in the bounds (run 0 starts at the centre), with
its own seed; all draws are seeded from the experiment seed and the run number.

Labels are input. A member index is credible only below `_SKIPS` times the number of trials
labelled with its run and generation (each proposal uses at most `_SKIPS` member indices), so
replay asks at most `_SKIPS` samples per trial: its cost is linear in the number of trials, and a
crafted label only makes its trial foreign.

Cache. A full replay costs time in proportion to the generations told (about 0.15 s at 1,000
trials). The state at the start of the current generation is kept in the server's state store
(`Request.store`), with the inputs (members and values told, late sets) of every generation before
it; a request whose labelled trials give the same inputs resumes from an exact copy (not a pickle,
which would round the covariance matrix), so the reply is the one a full replay gives and a steady
experiment pays only for its new generations. A new pod replays in full once.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cmaes import CMA, CMAwM

from katib_services.statestore import StoreView

from .base import Algorithm, Proposal, Reply, Request, derive_seed
from .errors import Problems
from .experiment import Experiment
from .limits import Limits
from .history import Condition, Trial, label_index
from .model import Encoder, draw_new
from .settings import RANDOM_STATE, Schema, Setting
from .space import Distribution, ParamType, SearchSpace

RUN, GENERATION, MEMBER, LATE = "cmaes-run", "cmaes-generation", "cmaes-member", "cmaes-late"
OUTSIDE = "random"  # the cmaes-member of a proposal drawn outside CMA-ES (a valid label value)

_SKIPS = 32  # members skipped in a row (their point is taken) before a proposal is drawn at random
_MAX_MARGIN_POINTS = 10_000  # finite parameters with more points are searched as continuous quantiles
_PENALTY = 1e12  # told for a generation whose told members all lack a value
_MIN_SIGMA = 1e-10  # sigma 0 is valid in Katib; Optuna floors it at this value too
_MAX_TOLD = 1e6  # CMAwM tells raw samples; cmaes rejects values beyond 1e32
_LABEL_MAX = 63  # a Kubernetes label value holds at most 63 characters

_FINISHED = frozenset(
    {Condition.SUCCEEDED, Condition.EARLYSTOPPED, Condition.FAILED, Condition.KILLED, Condition.METRICSUNAVAILABLE}
)
_VALUED = frozenset({Condition.SUCCEEDED, Condition.EARLYSTOPPED})

Optimizer = CMA | CMAwM


class CmaEs(Algorithm):
    name = "cmaes"
    summary = (
        "CMA-ES (cmaes library) on the unit-encoded numeric parameters, replayed from trial labels; "
        "optional IPOP/BIPOP restarts; categorical parameters are drawn at random."
    )
    schema = Schema(
        RANDOM_STATE,
        Setting(
            "sigma",
            float,
            None,
            "Initial step size, in the unit cube where each numeric parameter is its quantile in [0, 1]; "
            "unset means 1/6 (Optuna's min_range / 6 on that cube); 0 is raised to 1e-10 as in Optuna.",
            low=0,
            high=1000,
        ),
        Setting(
            "restart_strategy",
            str,
            "none",
            "Restart when CMA-ES converges: none, ipop (double the popsize at each restart) or bipop "
            "(alternate doubling large runs and small runs with a smaller step size, Hansen 2009).",
            choices=("none", "ipop", "bipop"),
            ignore_case=True,  # Katib accepts "None"
        ),
        Setting(
            "popsize",
            int,
            None,
            "Population size of the first run; unset means 4 + floor(3 ln n) for n numeric parameters.",
            low=2,
            high=1000,
        ),
    )

    def check(self, experiment: Experiment, settings: dict[str, Any], problems: Problems, limits: Limits) -> None:
        numeric = [p for p in experiment.space.parameters if p.type in (ParamType.INT, ParamType.DOUBLE)]
        if len(numeric) < 2:
            problems.add(
                "spec.parameters",
                f"cmaes needs at least two int or double parameters and this experiment has {len(numeric)}; "
                "CMA-ES only supports a search space of two or more numeric dimensions: add a parameter, "
                "or use random, tpe or bayesianoptimization",
            )

    def suggest(self, request: Request) -> Reply:
        space = request.experiment.space
        taken = request.history.taken()
        if request.count <= 0:
            return Reply([])
        layout = _Layout(space, request.settings, request.experiment.name)
        if layout.dim == 0:  # cannot pass check(); kept so that suggest never fails
            rng = random.Random(request.seed)
            points = []
            for _ in range(request.count):
                points.append(draw_new(space, rng, taken))
                taken.add(points[-1])
            return Reply([Proposal(space.format(p), labels={MEMBER: OUTSIDE}) for p in points])

        state = _replay(layout, request.history.trials, request.store, request.check)
        run, generation = state.run.index, state.optimizer.generation
        member = state.asked
        fallback: random.Random | None = None
        proposals = []
        for _ in range(request.count):
            point = None
            for _ in range(_SKIPS):
                x_eval, _ = _ask(state.optimizer)
                candidate = layout.point(x_eval, run, generation, member)
                member += 1
                if candidate not in taken:
                    point = candidate
                    break
            if point is None:
                fallback = fallback or random.Random(request.seed)
                point = draw_new(space, fallback, taken)
                labels = {RUN: str(run), GENERATION: str(generation), MEMBER: OUTSIDE}
            else:
                labels = {RUN: str(run), GENERATION: str(generation), MEMBER: str(member - 1)}
                if state.late:
                    labels[LATE] = _format_late(state.late)
            taken.add(point)
            proposals.append(Proposal(space.format(point), labels=labels))
        return Reply(proposals)


class _Layout:
    """The CMA-ES view of a search space, and the fixed configuration of one experiment."""

    def __init__(self, space: SearchSpace, settings: Mapping[str, Any], experiment_name: str):
        self.space = space
        self.encoder = Encoder(space)
        self.numeric = self.encoder.numeric
        self.categorical = self.encoder.categorical
        self.dim = len(self.numeric)
        bounds, steps = [], []
        for i in self.numeric:
            p = space.parameters[i]
            if p.finite and 2 <= p.size <= _MAX_MARGIN_POINTS and (p.choices or p.distribution is Distribution.UNIFORM):
                # Point k sits at quantile (k + 0.5) / size: an evenly spaced integer dimension.
                half = 0.5 / p.size
                bounds.append((half, 1.0 - half))
                steps.append(1.0 / p.size)
            else:
                bounds.append((0.0, 1.0))
                steps.append(0.0)
        self.bounds = np.array(bounds, dtype=float).reshape(-1, 2)
        self.steps = np.array(steps, dtype=float)
        self.margin = bool(np.any(self.steps > 0))
        popsize = settings.get("popsize")
        self.popsize = int(popsize) if popsize else 4 + math.floor(3 * math.log(max(self.dim, 1)))
        sigma = settings.get("sigma")
        self.sigma = max(float(sigma), _MIN_SIGMA) if sigma is not None else 1.0 / 6.0
        self.strategy = str(settings.get("restart_strategy") or "none")
        self.seed = derive_seed(experiment_name, settings.get("random_state"))
        # Everything the replay depends on: the key of the replay cache.
        self.key = (
            experiment_name,
            settings.get("random_state"),
            self.popsize,
            self.sigma,
            self.strategy,
            tuple((p.name, p.type, p.distribution, p.low, p.high, p.dmin, p.dstep, p.choices) for p in space.parameters),
        )

    def point(self, x_eval: np.ndarray, run: int, generation: int, member: int) -> tuple:
        """The point of a sampled vector; categorical values are seeded draws for this member."""
        vector = [0.0] * len(self.space)
        for j, i in enumerate(self.numeric):
            vector[i] = float(x_eval[j])
        if self.categorical:
            rng = random.Random(derive_seed(self.seed, "categorical", run, generation, member))
            for i in self.categorical:
                vector[i] = float(rng.randrange(self.space.parameters[i].size))
        return self.encoder.decode(vector)

    def reseed(self, optimizer: Optimizer, run: int, generation: int) -> None:
        """Member m of a generation is the (m + 1)-th sample after this: it depends neither on how
        many members earlier generations issued nor on members that show up after a tell."""
        optimizer.reseed_rng(derive_seed(self.seed, "generation", run, generation) % (2**32 - 1))

    def optimizer(self, run: _Run) -> Optimizer:
        seed = derive_seed(self.seed, "cma", run.index) % (2**32 - 1)
        resampling = 10 * self.dim
        with np.errstate(divide="ignore"):  # popsize 2: cmaes divides by a zero learning rate, harmlessly
            return self._optimizer(run, seed, resampling)

    def _optimizer(self, run: _Run, seed: int, resampling: int) -> Optimizer:
        if self.margin:
            return CMAwM(
                mean=run.mean.copy(),
                sigma=run.sigma,
                bounds=self.bounds,
                steps=self.steps,
                n_max_resampling=resampling,
                seed=seed,
                population_size=run.popsize,
            )
        return CMA(
            mean=run.mean.copy(),
            sigma=run.sigma,
            bounds=self.bounds,
            n_max_resampling=resampling,
            seed=seed,
            population_size=run.popsize,
        )


@dataclass(frozen=True)
class _Run:
    index: int
    popsize: int
    sigma: float
    mean: np.ndarray
    large: bool = True


class _Restarts:
    """Plans run after run (IPOP or BIPOP); every draw is seeded by the experiment and the run."""

    def __init__(self, layout: _Layout):
        self.layout = layout
        self.large_restarts = 0
        self.spent = {True: 0, False: 0}  # evaluations told, by regime (large: True)

    def copy(self) -> _Restarts:
        other = _Restarts(self.layout)
        other.large_restarts, other.spent = self.large_restarts, dict(self.spent)
        return other

    def first(self) -> _Run:
        return _Run(0, self.layout.popsize, self.layout.sigma, np.full(self.layout.dim, 0.5))

    def next(self, previous: _Run, generations: int) -> _Run:
        layout = self.layout
        self.spent[previous.large] += previous.popsize * generations
        index = previous.index + 1
        rng = random.Random(derive_seed(layout.seed, "restart", index))
        low, high = layout.bounds[:, 0], layout.bounds[:, 1]
        mean = low + np.array([rng.random() for _ in range(layout.dim)]) * (high - low)
        base = layout.popsize
        if layout.strategy == "bipop" and self.spent[False] < self.spent[True]:
            u = rng.random()
            large = base * 2**self.large_restarts
            popsize = max(2, math.floor(base * (large / (2 * base)) ** (u * u)))
            return _Run(index, popsize, layout.sigma * 10 ** (-2 * u), mean, large=False)
        self.large_restarts += 1
        popsize = base * 2 ** (self.large_restarts if layout.strategy == "bipop" else index)
        return _Run(index, popsize, layout.sigma, mean)


@dataclass
class _State:
    run: _Run
    optimizer: Optimizer
    asked: int  # members of the current generation asked so far (the issued ones)
    late: tuple[int, ...]  # late members of the generation before the current one


def _ask(optimizer: Optimizer) -> tuple[np.ndarray, np.ndarray]:
    """(vector to evaluate, vector to tell)."""
    if isinstance(optimizer, CMAwM):
        return optimizer.ask()
    x = optimizer.ask()
    return x, x


def _format_late(late: Sequence[int]) -> str:
    return ".".join(str(m) for m in late)


def _parse_late(text: str) -> tuple[int, ...] | None:
    if not text:
        return ()
    parts = [label_index(part) for part in text.split(".")]
    return None if None in parts else tuple(parts)  # type: ignore[return-value]


Groups = dict[tuple[int, int], dict[int, Trial]]


def _groups(trials: Sequence[Trial]) -> Groups:
    """The labelled trials of this space by (run, generation) and member; foreign trials dropped.

    A member index is credible below `_SKIPS` times the number of trials labelled with its run and
    generation (random fallbacks included), so that garbage labels cannot make replay ask more
    than `_SKIPS` samples per trial. When two trials claim the same member (a deleted experiment
    of the same name, Katib #2578), the first in the history's canonical order (by name) wins.
    """
    labelled: dict[tuple[int, int], list[tuple[int | None, Trial]]] = {}
    for t in trials:
        if t.point is None or not t.labels:
            continue
        run, generation = label_index(t.labels.get(RUN)), label_index(t.labels.get(GENERATION))
        if run is not None and generation is not None:
            labelled.setdefault((run, generation), []).append((label_index(t.labels.get(MEMBER)), t))
    groups: Groups = {}
    for key, entries in labelled.items():
        limit = _SKIPS * len(entries)
        slot = groups.setdefault(key, {})
        for member, t in entries:
            if member is not None and member < limit:
                slot.setdefault(member, t)
    return groups


def _told(
    members: dict[int, Trial], following: dict[int, Trial] | None, popsize: int
) -> tuple[list[int], tuple[int, ...]] | None:
    """The members to tell and the late ones, or None while the generation is not complete.

    Once the next generation has members, the late set is the one they carry: it was fixed by
    the request that completed this generation.
    """
    finished = sorted(m for m, t in members.items() if t.condition in _FINISHED)
    if following:
        late = _parse_late(following[min(following)].labels.get(LATE, ""))
        if late is not None:
            excluded = set(late)
            told = [m for m in finished if m not in excluded][:popsize]
            return (told, late) if len(told) == popsize else None
    told = finished[:popsize]
    if len(told) < popsize:
        return None
    done = set(finished)
    late = tuple(m for m in sorted(members) if m < told[-1] and m not in done)
    if len(_format_late(late)) > _LABEL_MAX:
        return None  # wait until fewer members are pending: the late set must fit in a label
    return told, late


def _replay(layout: _Layout, trials: Sequence[Trial], store: StoreView, check: Callable[[], None]) -> _State:
    """Rebuilds the optimizer from the labelled trials; returns the state of the current generation.

    The state at the start of the last request's current generation is cached with the inputs of
    every generation told before it; a request whose labelled trials give the same inputs resumes
    from a copy of it, which is exactly the state a full replay would reach.
    """
    groups = _groups(trials)
    cached = store.get(layout.key)
    if cached is not None and all(_inputs(layout, groups, step[0], step[1], step[2]) == step for step in cached.steps):
        steps, restarts, run, optimizer, late = cached.resume()
    else:
        steps, restarts = [], _Restarts(layout)
        run = restarts.first()
        optimizer, late = layout.optimizer(run), ()
    while True:
        generation = optimizer.generation
        step = _inputs(layout, groups, run.index, generation, optimizer.population_size)
        if step is None:
            checkpoint = _Checkpoint(steps, restarts, run, optimizer, late)
            store.put(layout.key, checkpoint, checkpoint.nbytes())
            members = groups.get((run.index, generation), {})
            issued = max(members) + 1 if members else 0
            layout.reseed(optimizer, run.index, generation)
            for _ in range(issued):
                _ask(optimizer)
            return _State(run, optimizer, issued, late)
        check()
        _, _, _, told, late = step
        layout.reseed(optimizer, run.index, generation)
        asked = [np.clip(_ask(optimizer)[1], -_MAX_TOLD, _MAX_TOLD) for _ in range(told[-1][0] + 1)]
        optimizer.tell([(asked[m], value) for m, value in told])
        steps.append(step)
        if layout.strategy != "none" and optimizer.should_stop():
            run = restarts.next(run, optimizer.generation)
            optimizer = layout.optimizer(run)


Step = tuple[int, int, int, tuple[tuple[int, float], ...], tuple[int, ...]]


def _inputs(layout: _Layout, groups: Groups, run: int, generation: int, popsize: int) -> Step | None:
    """What the replay of one generation uses: (run, generation, popsize, the told members with the
    values told, the late members), or None when the generation is not complete."""
    members = groups.get((run, generation), {})
    following = groups.get((run, generation + 1))
    if not following and layout.strategy != "none":
        following = groups.get((run + 1, 0))
    outcome = _told(members, following, popsize)
    if outcome is None:
        return None
    told, late = outcome
    values = [members[m].value if members[m].condition in _VALUED else None for m in told]
    known = [v for v in values if v is not None]
    worst = max(known) if known else _PENALTY
    told_values = tuple((m, worst if v is None else v) for m, v in zip(told, values))
    return run, generation, popsize, told_values, late


def _clone(optimizer: Any) -> Any:
    """An exact copy of a CMA or CMAwM (pickling would drop the generator and round the matrix)."""
    copy_ = object.__new__(type(optimizer))
    for name, value in vars(optimizer).items():
        setattr(copy_, name, _clone(value) if isinstance(value, (CMA, CMAwM)) else copy.deepcopy(value))
    return copy_


class _Checkpoint:
    """The replay state at the start of a current generation, and the steps that led to it."""

    def __init__(self, steps: list[Step], restarts: _Restarts, run: _Run, optimizer: Optimizer, late: tuple[int, ...]):
        self.steps = list(steps)
        self.restarts = restarts.copy()
        self.run = run
        self.optimizer = _clone(optimizer)
        self.late = late

    def resume(self) -> tuple[list[Step], _Restarts, _Run, Optimizer, tuple[int, ...]]:
        return list(self.steps), self.restarts.copy(), self.run, _clone(self.optimizer), self.late

    def nbytes(self) -> int:
        """An estimate: the told values of every step, and the optimizer's matrices."""
        dim = len(self.run.mean)
        return 4096 + sum(120 + 90 * len(step[3]) for step in self.steps) + 80 * dim * dim
