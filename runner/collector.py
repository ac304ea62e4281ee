"""The metrics-collector sidecar of one trial: report metric logs, apply early-stopping rules.

As in Katib, every metric log goes to the DB manager (here as soon as it appears), and the rules
from the early-stopping service are applied to the trial's values: the objective metric is
compared by its best value so far, any other metric by its latest value. A rule applies once its
metric has been reported `start_step` times, and holds from the first report that satisfies it
(Katib's collector checks only the `start_step`-th report, which misses later improvements).
When every rule holds, the trial is to be stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import grpc

from katib_services.earlystopping.rules import Rule
from katib_services.services.pb import api_pb2, api_pb2_grpc

from .metrics import MetricLog, MetricParser

DB_DEADLINE_SECONDS = 10.0


def rule_from_pb(rule: api_pb2.EarlyStoppingRule) -> Rule:
    return Rule(rule.name, float(rule.value), api_pb2.ComparisonType.Name(rule.comparison), rule.start_step)


class TrialCollector:
    def __init__(
        self,
        trial_name: str,
        parser: MetricParser,
        dbmanager: grpc.Channel,
        rules: Iterable[Rule] = (),
        objective_metric: str = "",
        maximize: bool = True,
    ):
        self.trial_name = trial_name
        self.parser = parser
        self.db = api_pb2_grpc.DBManagerStub(dbmanager)
        self.pending = list(rules)
        self.has_rules = bool(self.pending)
        self.objective_metric = objective_metric
        self.maximize = maximize
        self.counts: dict[str, int] = {}
        self.best: float | None = None
        self.lock = threading.Lock()
        self.stop = False  # every rule held: the trial is to be early-stopped

    def feed_text(self, text: str) -> bool:
        """Parses lines of trial output; returns True once the trial should be stopped."""
        return self.feed(self.parser.parse_text(text))

    def feed(self, logs: list[MetricLog]) -> bool:
        """Reports metric logs to the DB manager and applies the rules to them."""
        if not logs:
            return self.stop
        request = api_pb2.ReportObservationLogRequest(trial_name=self.trial_name)
        request.observation_log.metric_logs.extend(
            api_pb2.MetricLog(time_stamp=log.time_stamp, metric=api_pb2.Metric(name=log.name, value=log.value))
            for log in logs
        )
        self.db.ReportObservationLog(request, timeout=DB_DEADLINE_SECONDS)
        with self.lock:
            for log in logs:
                self._apply(log.name, float(log.value))
            self.stop = self.has_rules and not self.pending
        return self.stop

    def _apply(self, name: str, value: float) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        if name == self.objective_metric:
            if self.best is None or (value > self.best if self.maximize else value < self.best):
                self.best = value
            value = self.best
        self.pending = [
            rule
            for rule in self.pending
            if not (rule.name == name and self.counts[name] >= max(rule.start_step, 1) and rule.holds(value))
        ]
