"""The experiment as an algorithm sees it: search space, objective, algorithm and limits."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import Problems
from .limits import DEFAULT, Limits
from .space import RawParameter, SearchSpace


class Goal(enum.IntEnum):
    """Objective direction; numbers shared with the wire enum ObjectiveType."""

    UNKNOWN = 0
    MINIMIZE = 1
    MAXIMIZE = 2


@dataclass(frozen=True)
class Objective:
    goal: Goal
    metric: str
    target: float | None = None
    additional_metrics: tuple[str, ...] = ()

    def oriented(self, value: float) -> float:
        """The value to minimize: the metric itself, or its negation when maximizing."""
        return -value if self.goal is Goal.MAXIMIZE else value


@dataclass(frozen=True)
class Experiment:
    name: str
    space: SearchSpace
    objective: Objective
    algorithm: str
    settings: tuple[tuple[str, str], ...] = ()
    max_trial_count: int = 0
    parallel_trial_count: int = 0

    @classmethod
    def parse(
        cls,
        *,
        name: str,
        parameters: Sequence[RawParameter],
        objective_type: int,
        objective_metric: str,
        goal: float | None = None,
        additional_metrics: Sequence[str] = (),
        algorithm: str = "",
        settings: Sequence[tuple[str, str]] = (),
        max_trial_count: int = 0,
        parallel_trial_count: int = 0,
        problems: Problems | None = None,
        limits: Limits = DEFAULT,
    ) -> Experiment:
        """Validates an experiment spec. Raises InvalidSpec listing every problem found.

        Pass `problems` to keep collecting (for example algorithm-specific checks) before raising.
        """
        own = problems is None
        problems = problems or Problems()
        space = SearchSpace.parse(parameters, problems, max_parameters=limits.parameters, max_values=limits.list_values)
        try:
            direction = Goal(objective_type)
        except ValueError:
            direction = Goal.UNKNOWN
        if direction is Goal.UNKNOWN:
            problems.add("spec.objective.type", f"is unknown ({objective_type}); use minimize or maximize")
        if not objective_metric:
            problems.add("spec.objective.objectiveMetricName", "is empty; name the metric to optimize")
        for field_name, value in (("maxTrialCount", max_trial_count), ("parallelTrialCount", parallel_trial_count)):
            if value < 0:
                problems.add(f"spec.{field_name}", f"({value}) must not be negative")
        if own:
            problems.raise_if_any()
        return cls(
            name=name,
            space=space,
            objective=Objective(direction, objective_metric, goal, tuple(additional_metrics)),
            algorithm=algorithm,
            settings=tuple(settings),
            max_trial_count=max_trial_count,
            parallel_trial_count=parallel_trial_count,
        )
