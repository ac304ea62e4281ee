"""Early-stopping rules: thresholds computed from the metric logs of completed trials.

A rule is what Katib's metrics collector applies to a running trial: `name` (the objective
metric), `value`, `comparison` and `start_step`. Both rules here look at the same number for
every SUCCEEDED trial: the mean of the first `start_step` values of its objective-metric log, in
time order (values that are missing, NaN or not numbers are skipped; a trial with no usable value
does not contribute). No rule is returned until `min_trials_required` trials contributed.

* `medianstop`: the value is the median of those means (Katib computes their mean, which is not
  a median; with an even count the median is the mean of the two middle values). A running trial
  is stopped when its best value so far, after `start_step` reports, is worse than that median:
  comparison LESS when maximizing, GREATER when minimizing.
* `percentilestop` (new): the same, with the threshold at a chosen percentile of the means, from
  the good side: `percentile` 25 keeps trials that are in the best quarter so far, like Optuna's
  PercentilePruner. Use it to prune harder (25) or more gently (75) than the median does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from katib_services.algorithms.settings import Schema, Setting
from katib_services.numbers import parse_float

MIN_TRIALS = Setting("min_trials_required", int, 3, "Succeeded trials needed before any rule is returned.", low=1, high=100_000)
START_STEP = Setting(
    "start_step", int, 4, "Reports of the objective averaged per trial, and reports before a rule applies.", low=1, high=2**31 - 1
)


@dataclass(frozen=True)
class Rule:
    name: str
    value: float
    comparison: str  # "LESS", "GREATER" or "EQUAL": stop when the trial's value compares so to `value`
    start_step: int

    def holds(self, value: float) -> bool:
        """Whether a trial's value satisfies the rule (what the metrics collector checks)."""
        if self.comparison == "LESS":
            return value < self.value
        if self.comparison == "GREATER":
            return value > self.value
        return value == self.value


def early_mean(values: Sequence[str], start_step: int) -> float | None:
    """The mean of the first `start_step` usable values, or None when there is none."""
    usable = []
    for value in values:
        number = parse_float(value)
        if number is not None:
            usable.append(number)
            if len(usable) == start_step:
                break
    return sum(x / len(usable) for x in usable) if usable else None  # no overflow near 1e308


class StoppingRule:
    """One early-stopping algorithm: a settings schema and the threshold it computes."""

    name: ClassVar[str]
    summary: ClassVar[str]
    schema: ClassVar[Schema]

    def threshold(self, means: list[float], maximize: bool, settings: dict[str, Any]) -> float:
        raise NotImplementedError

    def rule(self, metric: str, maximize: bool, means: list[float], settings: dict[str, Any]) -> Rule | None:
        if len(means) < settings["min_trials_required"]:
            return None
        return Rule(metric, self.threshold(means, maximize, settings), "LESS" if maximize else "GREATER", settings["start_step"])


class MedianStop(StoppingRule):
    name = "medianstop"
    summary = "Stop a trial whose best value so far is worse than the median of completed trials' early means."
    schema = Schema(MIN_TRIALS, START_STEP)

    def threshold(self, means, maximize, settings):
        return _percentile(sorted(means), 50.0)


class PercentileStop(StoppingRule):
    name = "percentilestop"
    summary = "Like medianstop, with the threshold at a percentile counted from the best trials."
    schema = Schema(
        Setting("percentile", float, 25.0, "Trials must be in this best share (percent) of completed trials to go on.", low=0, high=100, low_open=True, high_open=True),
        MIN_TRIALS,
        START_STEP,
    )

    def threshold(self, means, maximize, settings):
        return _percentile(sorted(means, reverse=maximize), settings["percentile"])  # best first


def _percentile(ordered: list[float], percent: float) -> float:
    """The value `percent` percent of the way along `ordered` (linear between neighbours, as
    numpy's default percentile); 50 on ascending values is the median."""
    position = percent / 100 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    weight = position - low
    return ordered[low] * (1 - weight) + ordered[high] * weight  # no difference that could overflow


RULES: dict[str, StoppingRule] = {rule.name: rule for rule in (MedianStop(), PercentileStop())}
