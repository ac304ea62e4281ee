"""Trials as Python functions: the executor the benchmarks use in place of processes.

Each trial calls `objective(assignment)`, which returns {metric name: value}; the values go
through the same collector (DB manager report, early-stopping rules) as a process's output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .collector import TrialCollector
from .controller import Finished
from .metrics import MetricLog
from katib_services.obslog import now_rfc3339
from .state import TrialRecord

Objective = Callable[[Mapping[str, str]], Mapping[str, float]]


class FunctionExecutor:
    def __init__(self, objective: Objective):
        self.objective = objective
        self.finished: list[Finished] = []

    def start(self, trial: TrialRecord, collector: TrialCollector) -> None:
        try:
            values = self.objective(trial.assignment)
        except Exception as error:  # a failing objective is a Failed trial, as a crashing process is
            self.finished.append(Finished(trial.name, exit_code=1, message=f"{type(error).__name__}: {error}"))
            return
        stamp = now_rfc3339()
        early = collector.feed([MetricLog(stamp, name, repr(float(value))) for name, value in values.items()])
        self.finished.append(Finished(trial.name, early_stopped=early))

    def wait(self, timeout: float) -> list[Finished]:
        done, self.finished = self.finished, []
        return done

    def stop_all(self) -> None:
        """Function trials finish inside start(); nothing is ever left running."""
