"""Trial history: every trial of the request, parsed once against the search space.

Katib lists trials in no fixed order (from its informer cache), so `History` sorts them
canonically, by name and then by everything else a trial carries, before any algorithm sees
them: the same set of trials gives the same history, whatever their order in the request.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from katib_services.numbers import parse_float

from .experiment import Experiment
from .model import Taken


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


LABEL_DIGITS = 9  # a label number longer than this is garbage


def label_index(text: str | None) -> int | None:
    """A bookkeeping number in a trial label: plain ASCII digits, at most LABEL_DIGITS; else None."""
    if text is None or not 0 < len(text) <= LABEL_DIGITS or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def metric_value(text: str | None) -> float | None:
    """A metric string as a finite float; None for missing, non-numeric, NaN or infinite values."""
    return None if text is None else parse_float(text)


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
    unit: tuple[float, ...] | None = None  # the point in the models' encoding (SearchSpace.encode)
    order: tuple = ()  # the canonical sort key (History)

    @property
    def observed(self) -> bool:
        """SUCCEEDED or EARLYSTOPPED, with an objective value and a point (History.observed)."""
        return self.condition in OBSERVED and self.value is not None and self.point is not None


class History:
    """The trials of one request."""

    def __init__(self, experiment: Experiment, trials: Iterable[Trial]):
        self.experiment = experiment
        self.trials = sorted(trials, key=_order)

    def points(self) -> set[tuple]:
        """The points of every trial that belongs to this space, in any condition."""
        return {t.point for t in self.trials if t.point is not None}

    def taken(self) -> Taken:
        """The points not to propose again, to which a batch adds its members."""
        return Taken(self.points())

    def observed(self) -> list[Trial]:
        """Trials that train a model: SUCCEEDED, and EARLYSTOPPED taken at the value they had when
        stopped (a partial, pessimistic result), each with an objective value and a point."""
        return [t for t in self.trials if t.observed]

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
    oriented = None if value is None else experiment.objective.oriented(value)
    return Trial(
        name=name,
        condition=state,
        assignment=assignment,
        labels=labels,
        point=point,
        rank=None if point is None or space.size is None else space.rank(point),
        value=oriented,
        unit=None if point is None else space.encode(point),
        order=(
            name,
            int(state),
            tuple(sorted(assignment.items())),
            tuple(sorted(labels.items())),
            () if oriented is None else (oriented,),
        ),
    )


def _order(trial: Trial) -> tuple:
    return trial.order
