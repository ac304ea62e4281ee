"""Trial history: every trial of the request, parsed once against the search space."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .experiment import Experiment


class Condition(enum.IntEnum):
    """A trial's latest condition; numbers shared with the wire enum TrialConditionType."""

    CREATED = 0
    RUNNING = 1
    SUCCEEDED = 2
    KILLED = 3
    FAILED = 4
    METRICSUNAVAILABLE = 5
    EARLYSTOPPED = 6
    UNKNOWN = 7


PENDING = frozenset({Condition.CREATED, Condition.RUNNING})
OBSERVED = frozenset({Condition.SUCCEEDED, Condition.EARLYSTOPPED})


def metric_value(text: str | None) -> float | None:
    """A metric string as a finite float; None for missing, non-numeric, NaN or infinite values."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True, eq=False, slots=True)
class Trial:
    """One trial. `point` is None when its assignment is not a point of this space (for example a
    trial of another experiment that shares the name); `value` is the objective oriented for
    minimization, None when there is no usable observation."""

    name: str
    condition: Condition
    assignment: Mapping[str, str]
    labels: Mapping[str, str] = field(default_factory=dict)
    point: tuple | None = None
    rank: int | None = None  # the point's number in a finite space (SearchSpace.rank)
    value: float | None = None


class History:
    """The trials of one request."""

    def __init__(self, experiment: Experiment, trials: Iterable[Trial]):
        self.experiment = experiment
        self.trials = list(trials)

    def points(self) -> set[tuple]:
        """The points of every trial that belongs to this space, in any condition."""
        return {t.point for t in self.trials if t.point is not None}

    def observed(self) -> list[Trial]:
        """Trials that train a model: SUCCEEDED, and EARLYSTOPPED taken at the value they had when
        stopped (a partial, pessimistic result), each with an objective value and a point."""
        return [t for t in self.trials if t.condition in OBSERVED and t.value is not None and t.point is not None]

    def pending(self) -> list[Trial]:
        """CREATED and RUNNING trials: not to be proposed again, and to push new proposals apart."""
        return [t for t in self.trials if t.condition in PENDING and t.point is not None]


def parse_trial(
    experiment: Experiment,
    name: str,
    condition: int,
    assignment: Mapping[str, str],
    labels: Mapping[str, str],
    metrics: Mapping[str, str],
) -> Trial:
    """One trial, parsed against the experiment; never rejects a trial."""
    try:
        state = Condition(condition)
    except ValueError:
        state = Condition.UNKNOWN
    value = metric_value(metrics.get(experiment.objective.metric))
    space = experiment.space
    point = space.key_of(assignment)
    return Trial(
        name=name,
        condition=state,
        assignment=assignment,
        labels=labels,
        point=point,
        rank=None if point is None or space.size is None else space.rank(point),
        value=None if value is None else experiment.objective.oriented(value),
    )
