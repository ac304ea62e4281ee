"""The experiment as an algorithm sees it: search space, objective, algorithm and limits.

A neural architecture search (NAS) experiment declares `spec.nasConfig` instead of
`spec.parameters`; it is validated here as well (`algorithms.nas`), and the NAS algorithm turns it
into the search space its trials are points of (`Algorithm.space`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import Problems
from katib_services.numbers import quote

from .limits import DEFAULT, Limits
from .nas import NasConfig, RawNasConfig
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
    nas: NasConfig | None = None  # spec.nasConfig, for a NAS algorithm

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
        nas_config: RawNasConfig | None = None,
        architecture_search: bool = False,
        problems: Problems | None = None,
        limits: Limits = DEFAULT,
    ) -> Experiment:
        """Validates an experiment spec. Raises InvalidSpec listing every problem found.

        `architecture_search` says that the algorithm searches architectures: the experiment must
        declare `nas_config` and no parameters; otherwise the reverse. Pass `problems` to keep
        collecting (for example algorithm-specific checks) before raising.
        """
        own = problems is None
        problems = problems or Problems()
        nas = None
        if architecture_search:
            space = SearchSpace([])
            if parameters:
                problems.add("spec.parameters", f"is not used by algorithm {quote(algorithm)}; declare its search space in spec.nasConfig")
            if nas_config is None:
                problems.add("spec.nasConfig", f"is missing; algorithm {quote(algorithm)} searches neural architectures: declare graphConfig and operations")
            else:
                nas = NasConfig.parse(nas_config, problems, limits)
        else:
            if nas_config is not None:
                problems.add(
                    "spec.nasConfig",
                    f"is not used by algorithm {quote(algorithm)}, which tunes spec.parameters; "
                    "use a neural architecture search algorithm (enas, darts), or remove nasConfig",
                )
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
            nas=nas,
        )
