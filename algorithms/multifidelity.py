"""What hyperband and asha share: the resource ladder and its validation (`MultiFidelity`), the
configuration space, the outcome of a trial in its rung, and the batch that new configurations
and promotions go into.

A trial's *resource* (epochs, steps, a data fraction) is one int or double parameter of the
experiment, named by the setting `resource_name`. The algorithm sets it: its feasibleSpace is not
sampled (Katib's own hyperband example has `num-epochs` from 1 to 1 with `r_l: 2`). Its values are
the rungs of a *ladder*: level j of K + 1 levels has the resource `top / eta^(K - j)`, so the top
level is `top` (hyperband's `r_l`, asha's `max_resource`) and each level below has 1/eta of the
resource of the one above. An int resource is rounded to an integer of at least 1; a double is
written as a plain decimal ("0.333...", never "3e-05"). Validation refuses a ladder of more than
`MAX_LEVELS` levels, and an int ladder whose levels round to the same integer.

`ladder_space` replaces the resource parameter by a discrete list of the ladder's values. That is
the algorithm's space (`Algorithm.space`): the service parses trials against it, so a trial whose
resource is not a level of the ladder is foreign, and it verifies every reply against it, so a
proposal's resource is always one of the ladder's values.

A *configuration* is a point of the other parameters (`Fidelity.configs`). A promotion is a new
trial with the same configuration at a higher level: it never repeats a trial, while two
promotions of one configuration to one level would.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from decimal import Decimal
from collections.abc import Iterable, Iterator
from typing import Any

from katib_services.numbers import quote

from .base import Algorithm, Proposal, Request
from .errors import Problems
from .experiment import Experiment
from .history import PENDING, Condition, Trial, label_index
from .limits import Limits
from .model import Taken, draw_new
from .settings import FIELD, Setting
from .space import Parameter, ParamType, SearchSpace, plain_double

MAX_LEVELS = 64  # levels of a ladder (hyperband: brackets), which bounds every loop over them
_TOLERANCE = 1e-12  # relative: far above float error (9 / 3^2 is a whole level), far below a schedule's steps

RESOURCE_NAME = Setting(
    "resource_name",
    str,
    None,
    "The int or double parameter that is the trial's resource (epochs, steps...); it takes the rung's value and "
    "its feasibleSpace is not sampled.",
    required=True,
)
ETA = Setting(
    "eta",
    float,
    3.0,
    "Reduction factor: a rung promotes its best 1/eta to the next rung, which has eta times the resource.",
    low=1,
    low_open=True,
    high=1000,
)
SAMPLER = Setting(
    "sampler",
    str,
    "random",
    "New configurations: random, or tpe (BOHB-style: a multivariate TPE fitted on the highest rung with more results "
    "than parameters besides the resource; random until then).",
    choices=("random", "tpe"),
)


def level_count(top: float, bottom: float, eta: float) -> int:
    """K: how many times `top` can be divided by `eta` staying at least `bottom` (at most MAX_LEVELS + 1)."""
    k = 0
    while k <= MAX_LEVELS and top / eta ** (k + 1) >= bottom * (1 - _TOLERANCE):
        k += 1
    return k


@dataclass(frozen=True)
class Ladder:
    """The resources of the levels, lowest first, as the strings trials get."""

    texts: tuple[str, ...]

    @classmethod
    def build(cls, top: float, bottom: float, eta: float, kind: ParamType) -> tuple[Ladder, str | None]:
        """The ladder from `top` down by factors of eta while at least `bottom`, and why it is
        unusable (None when it is fine)."""
        levels = level_count(top, bottom, eta) + 1
        if levels > MAX_LEVELS:
            return cls(()), (
                f"the schedule would have more than {MAX_LEVELS} rungs from the top resource down; raise eta or narrow the resources"
            )
        texts = tuple(_format(top / eta ** (levels - 1 - j), kind) for j in range(levels))
        for low, high in zip(texts, texts[1:]):
            if low == high:
                return cls(texts), (
                    f"with an int resource, two rungs round to the same value ({low}); raise eta or the top resource, "
                    "or make the resource a double parameter"
                )
        return cls(texts), None

    def __len__(self) -> int:
        return len(self.texts)


def _format(value: float, kind: ParamType) -> str:
    if kind is ParamType.INT:
        return str(max(1, math.floor(value + 0.5)))
    return plain_double(Decimal(repr(value)))


class MultiFidelity(Algorithm):
    """hyperband and asha: validation of the resource and its ladder, and the algorithm's space."""

    def ladder(self, settings: dict[str, Any], kind: ParamType) -> tuple[Ladder, str | None]:
        """The ladder the settings give a resource of type `kind`, and why it is unusable."""
        raise NotImplementedError

    def check(self, experiment: Experiment, settings: dict[str, Any], problems: Problems, limits: Limits) -> None:
        self.checked_ladder(experiment, settings, problems)

    def checked_ladder(self, experiment: Experiment, settings: dict[str, Any], problems: Problems) -> Ladder | None:
        """The ladder, or None with the problems (of the resource parameter or of the ladder) recorded."""
        parameter = resource_parameter(experiment, settings, problems)
        if parameter is None:
            return None
        ladder, error = self.ladder(settings, parameter.type)
        if error:
            problems.add(f'{FIELD}["eta"]', error)
            return None
        return ladder

    def space(self, experiment: Experiment, settings: dict[str, Any]) -> SearchSpace:
        name = settings["resource_name"]
        parameter = next(p for p in experiment.space.parameters if p.name == name)
        return ladder_space(experiment.space, name, self.ladder(settings, parameter.type)[0])


def resource_parameter(experiment: Experiment, settings: dict[str, Any], problems: Problems) -> Parameter | None:
    """The parameter `resource_name` names, or None with the problem recorded."""
    name = settings["resource_name"]
    where = f'{FIELD}["resource_name"]'
    parameter = next((p for p in experiment.space.parameters if p.name == name), None)
    if parameter is None:
        problems.add(where, f"{quote(name)} is not in spec.parameters; name the int or double parameter that is the trial's resource (epochs, steps)")
    elif parameter.type not in (ParamType.INT, ParamType.DOUBLE):
        problems.add(where, f"{quote(name)} is a {parameter.type.name.lower()} parameter; the resource must be an int or double parameter")
    elif len(experiment.space) == 1:
        problems.add("spec.parameters", f"has only the resource {quote(name)}; add the parameters to tune")
    else:
        return parameter
    return None


def ladder_space(space: SearchSpace, resource: str, ladder: Ladder) -> SearchSpace:
    """The space with the resource parameter replaced by the ladder's values (a discrete list)."""
    level = Parameter.listed(resource, ParamType.DISCRETE, ladder.texts)
    return SearchSpace([level if p.name == resource else p for p in space.parameters])


class Fidelity:
    """A point of the algorithm's space as (configuration, level)."""

    def __init__(self, space: SearchSpace, resource: str):
        self.space = space
        self.index = space.names.index(resource)
        self.resource = space.parameters[self.index]  # the ladder, a discrete list (ladder_space)
        self.top = self.resource.size - 1  # the highest level
        self.configs = SearchSpace([p for i, p in enumerate(space.parameters) if i != self.index])

    def config(self, point: tuple) -> tuple:
        return point[: self.index] + point[self.index + 1 :]

    def level(self, point: tuple) -> int:
        return point[self.index]

    def point(self, config: tuple, level: int) -> tuple:
        return config[: self.index] + (level,) + config[self.index :]


def placed(trial: Trial, keys: tuple[str, ...]) -> tuple[int, ...] | None:
    """The numbers the labels `keys` give a trial with a point, or None when one is missing or not a plain number."""
    if trial.point is None or not trial.labels:
        return None
    numbers = tuple(label_index(trial.labels.get(key)) for key in keys)
    return None if None in numbers else numbers  # type: ignore[return-value]


def place_labels(keys: tuple[str, ...], numbers: tuple[int, ...]) -> dict[str, str]:
    """The labels that `placed` reads back as `numbers`."""
    return {key: str(n) for key, n in zip(keys, numbers)}


def free_numbers(taken: Iterable[int], size: int) -> Iterator[int]:
    """Configuration numbers below `size` that are not `taken`, lowest first (in time linear in
    the numbers taken and the numbers drawn, whatever `size`)."""
    c = 0
    for held in sorted(taken):
        while c < held:
            yield c
            c += 1
        c = held + 1
    while c < size:
        yield c
        c += 1


def finished(trial: Trial) -> bool:
    return trial.condition not in PENDING


def outcome(trial: Trial) -> float | None:
    """A finished trial's value in its rung: None, the worst, unless it SUCCEEDED with a value
    (FAILED, KILLED, METRICSUNAVAILABLE and EARLYSTOPPED trials are never promoted)."""
    return trial.value if trial.condition is Condition.SUCCEEDED else None


def ranked(members: dict[int, Trial]) -> list[tuple[float | None, int]]:
    """(outcome, configuration id) of finished members, best first; ties go to the lower id."""
    scored = [(outcome(t), c) for c, t in members.items() if finished(t)]
    return sorted(scored, key=lambda pair: (pair[0] is None, pair[0] or 0.0, pair[1]))


def whole(x: float) -> int:
    """floor(x), forgiving float error: 3 / (1/3) is 9."""
    return math.floor(x + _TOLERANCE * max(1.0, abs(x)))


def ceiling(x: float) -> int:
    """ceil(x), forgiving float error: 1.1^2 * 100 is 121."""
    return math.ceil(x - _TOLERANCE * max(1.0, abs(x)))


class Batch:
    """The proposals of one reply: promotions and new configurations, all different.

    New configurations differ from every configuration of the request's trials (at any level)
    while the configuration space has unused points, and from the batch's configurations always.
    When the batch has as many configurations as the configuration space holds, a slot gets an
    `extra`: a random unused point of the whole space, labelled `extra_labels`, which the schedule
    ignores (only a configuration space smaller than the batch gets there).
    """

    def __init__(self, request: Request, fidelity: Fidelity, extra_labels: dict[str, str]):
        self.request = request
        self.fidelity = fidelity
        self.extra_labels = extra_labels
        self.points = request.history.taken()
        self.configs = Taken(fidelity.config(t.point) for t in request.history.trials if t.point is not None)
        self.rng = random.Random(request.seed)
        self.proposals: list[Proposal] = []
        self._asker: Any = None
        self._fitted = False

    @property
    def full(self) -> bool:
        return len(self.proposals) >= self.request.count

    def promote(self, config: tuple, level: int, labels: dict[str, str]) -> bool:
        """Adds a promotion; False (nothing added) when its point is already in the batch, which
        only a configuration space smaller than the schedule allows."""
        point = self.fidelity.point(config, level)
        if point in self.points.batch:
            return False
        self._add(point, labels)
        return True

    def new(self, level: int, labels: dict[str, str]) -> bool:
        """Adds a new configuration at `level` (True), or an extra (False)."""
        self.request.check()
        if len(self.configs.batch) >= self.fidelity.configs.count:
            point = draw_new(self.fidelity.space, self.rng, self.points)
            self._add(point, self.extra_labels)
            return False
        asker = self._model()
        if asker is None:
            config = draw_new(self.fidelity.configs, self.rng, self.configs)
        else:
            config = asker.ask(self.configs, self.rng, self.request.check)
        self._add(self.fidelity.point(config, level), labels)
        return True

    def _add(self, point: tuple, labels: dict[str, str]) -> None:
        self.points.add(point)
        self.configs.add(self.fidelity.config(point))
        self.proposals.append(Proposal(self.fidelity.space.format(point), labels=dict(labels)))

    def _model(self) -> Any:
        """With `sampler: tpe`, a TPE of the configurations at the highest level with more results
        than configuration parameters (BOHB's rule); None for random draws."""
        if self._fitted or self.request.settings.get("sampler") != "tpe":
            return self._asker
        self._fitted = True
        fidelity = self.fidelity
        counts: dict[int, int] = {}
        for t in self.request.history.trials:
            if t.point is not None and _observed(t):
                counts[fidelity.level(t.point)] = counts.get(fidelity.level(t.point), 0) + 1
        enough = [level for level, count in counts.items() if count > len(fidelity.configs)]
        if not enough:
            return None
        level = max(enough)
        trials = [
            replace(t, point=fidelity.config(t.point), unit=fidelity.config(t.unit), rank=None)
            for t in self.request.history.trials
            if t.point is not None and fidelity.level(t.point) == level and (_observed(t) or t.condition in PENDING)
        ]
        from optuna.samplers import TPESampler

        from . import _optuna  # Optuna is loaded only by the servers that use the model

        seed = self.request.seed % 2**32
        self._asker = _optuna.Asker(
            fidelity.configs,
            trials,
            lambda count: TPESampler(
                seed=seed, multivariate=True, constant_liar=True, n_startup_trials=0, n_ei_candidates=_optuna.ei_candidates(24, count)
            ),
        )
        return self._asker


def _observed(trial: Trial) -> bool:
    """A result the model learns from: a SUCCEEDED trial with a value (a stopped trial's value is partial)."""
    return trial.condition is Condition.SUCCEEDED and trial.value is not None
