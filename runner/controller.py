"""The experiment loop of Katib's controller, over real gRPC to the suggestion, early-stopping and
DB manager services. Trials are run by an `Executor`: local processes for `katib-local`, plain
functions for the benchmarks.

What it does, as Katib does:

* validates the algorithm and early-stopping settings before any trial;
* keeps up to `parallelTrialCount` trials running, asking for exactly the missing number of
  assignments; each request carries every trial with its latest condition and observation
  (except MetricsUnavailable trials and EarlyStopped trials without an observation, which Katib
  leaves out), `current_request_number` and `total_request_number`;
* honours the reply's `trial_name` (a Kubernetes object name, unique in the experiment: anything
  else ends the run, naming the reply), `labels` and `algorithm` settings, which are merged by name
  and sent back in every later request; a reply of the wrong size ends the experiment;
* gets early-stopping rules for each new batch of trials;
* computes a finished trial's observation from its logs in the DB manager, by metric strategy;
* ends on the goal, on `maxTrialCount` completed trials, or once `maxFailedTrialCount` trials
  failed (then the experiment Failed), as Katib's controller does.

Completed trials are those that ended, except trials the runner stopped because the run itself was
interrupted: `--resume` runs those again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from katib_services.earlystopping.rules import Rule
from katib_services.services.client import experiment_pb, trial_pb
from katib_services.services.pb import api_pb2, api_pb2_grpc

from katib_services.numbers import parse_float, quote
from katib_services.obslog import now_rfc3339

from .collector import TrialCollector, rule_from_pb
from .metrics import MetricParser
from .spec import ExperimentConfig
from .state import INTERRUPTED, PENDING, RESULTS, State, TrialRecord

SUGGESTION_DEADLINE_SECONDS = 60.0  # Katib's deadline for GetSuggestions
CALL_DEADLINE_SECONDS = 10.0
STOP_SECONDS = 30.0  # how long stopping waits for the trials' ends (their processes get 5 s, then SIGKILL)
STRATEGY = {"min": min, "max": max}
# A Trial is a Kubernetes object and its name a path component here: a lowercase DNS-1123 label.
TRIAL_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)


class ExperimentError(RuntimeError):
    """The experiment cannot go on (a service refused it, or answered wrongly)."""


def _call(what: str, method: Callable, request, timeout: float = CALL_DEADLINE_SECONDS):
    """A service call whose gRPC error ends the experiment with `what`, the status code and details."""
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as error:
        raise ExperimentError(f"{what} failed: {error.code().name}: {error.details()}") from None


@dataclass
class Finished:
    """A trial's process (or function) has ended."""

    name: str
    exit_code: int | None = 0
    early_stopped: bool = False
    killed: bool = False
    error: bool = False  # the trial could not be run or its metrics collected: Failed with `message`
    message: str = ""


class Executor(Protocol):
    def start(self, trial: TrialRecord, collector: TrialCollector) -> None: ...

    def wait(self, timeout: float) -> list[Finished]:
        """Trials that ended since the last call; blocks up to `timeout` s for the first one."""

    def stop_all(self) -> None:
        """Kills every running trial; each is then reported by `wait` with killed=True."""


@dataclass
class Endpoints:
    suggestion: grpc.Channel
    dbmanager: grpc.Channel
    dbmanager_address: str
    earlystopping: grpc.Channel | None = None


@dataclass
class Outcome:
    status: str  # Succeeded, Failed or Interrupted
    reason: str
    message: str
    best: TrialRecord | None = None
    trials: list[TrialRecord] = field(default_factory=list)


class Controller:
    def __init__(
        self,
        config: ExperimentConfig,
        endpoints: Endpoints,
        executor: Executor,
        state: State,
        on_change: Callable[[Controller, TrialRecord], None] = lambda controller, trial: None,
    ):
        self.config = config
        self.endpoints = endpoints
        self.executor = executor
        self.state = state
        self.on_change = on_change
        self.suggestion = api_pb2_grpc.SuggestionStub(endpoints.suggestion)
        self.earlystopping = api_pb2_grpc.EarlyStoppingStub(endpoints.earlystopping) if endpoints.earlystopping else None
        self.dbmanager = api_pb2_grpc.DBManagerStub(endpoints.dbmanager)
        self.parser = MetricParser(config.metric_names, config.collector.filters, config.collector.format)
        self.trials = state.trials()
        self.settings: dict[str, str] = state.get("settings") or {
            s["name"]: str(s.get("value", "")) for s in config.spec["algorithm"].get("algorithmSettings") or []
        }
        self.total_requested: int = state.get("total_requested", 0)

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> Outcome:
        try:
            self.validate()
            self._restart_unfinished()
            while True:
                outcome = self._ending()
                if outcome:
                    self._stop_running()
                    return outcome
                self._create_trials()
                if not any(t.condition in PENDING for t in self.trials):
                    raise ExperimentError("no trial is running and none can be created")
                for finished in self.executor.wait(timeout=0.5):
                    self._finish(finished)
        except KeyboardInterrupt as interrupt:  # Ctrl-C, or a signal katib-local turns into one
            self._stop_running(INTERRUPTED)
            why = str(interrupt) or "Ctrl-C"
            return self._outcome("Interrupted", "Interrupted", f"stopped by {why}; run again with --resume to continue")
        except ExperimentError as error:
            self._stop_running()
            return self._outcome("Failed", "ExperimentError", str(error))

    def validate(self) -> None:
        experiment = self.experiment()
        request = api_pb2.ValidateAlgorithmSettingsRequest(experiment=experiment)
        _call("validation", self.suggestion.ValidateAlgorithmSettings, request)
        if self.earlystopping is not None:
            _call(
                "validation",
                self.earlystopping.ValidateEarlyStoppingSettings,
                api_pb2.ValidateEarlyStoppingSettingsRequest(early_stopping=experiment.spec.early_stopping),
            )

    def experiment(self) -> api_pb2.Experiment:
        """The Experiment message, with the algorithm settings merged from earlier replies."""
        spec = dict(self.config.spec)
        spec["algorithm"] = dict(
            spec["algorithm"], algorithmSettings=[{"name": k, "value": v} for k, v in self.settings.items()]
        )
        return experiment_pb(self.config.name, spec)

    def request_trials(self) -> list[api_pb2.Trial]:
        """Every trial as Katib sends it: latest condition and observation, labels included."""
        return [
            trial_pb(t.name, t.assignment, t.condition, t.observation, t.labels)
            for t in self.trials
            if not (t.condition == "MetricsUnavailable" or (t.condition == "EarlyStopped" and not t.observation))
        ]

    def best(self) -> TrialRecord | None:
        best = None
        for trial in self.trials:
            value = trial.objective(self.config.objective_metric)
            if trial.condition in RESULTS and value is not None:
                if best is None or self.config.better(value, best.objective(self.config.objective_metric)):
                    best = trial
        return best

    def count(self, *conditions: str) -> int:
        return sum(t.condition in conditions for t in self.trials)

    def completed(self) -> int:
        """Trials that ended, less those stopped by an interruption (a resumed run reruns them)."""
        return sum(t.finished and not (t.condition == "Killed" and t.message == INTERRUPTED) for t in self.trials)

    # -- steps ----------------------------------------------------------------------------------

    def _ending(self) -> Outcome | None:
        config = self.config
        best = self.best()
        if best is not None and config.goal_reached(best.objective(config.objective_metric)):
            return self._outcome("Succeeded", "GoalReached", f"the objective goal {config.goal:g} was reached")
        failed = self.count("Failed")
        if config.max_failed_trials is not None and failed and failed >= config.max_failed_trials:
            return self._outcome(
                "Failed", "MaxFailedTrialsReached", f"{failed} trials failed (maxFailedTrialCount {config.max_failed_trials})"
            )
        completed = self.completed()
        if config.max_trials is not None and completed >= config.max_trials:
            return self._outcome("Succeeded", "MaxTrialsReached", f"{completed} trials completed (maxTrialCount {config.max_trials})")
        return None

    def _outcome(self, status: str, reason: str, message: str) -> Outcome:
        if status != "Interrupted" and self.trials and not any(t.objective(self.config.objective_metric) is not None for t in self.trials):
            message += f"; no trial reported {self.config.objective_metric}: {self.config.collector_hint()}"
        self.state.put("outcome", {"status": status, "reason": reason, "message": message})
        return Outcome(status, reason, message, self.best(), list(self.trials))

    def _create_trials(self) -> None:
        active = self.count(*PENDING)
        count = self.config.parallel_trials - active
        if self.config.max_trials is not None:
            count = min(count, self.config.max_trials - len(self.trials))
        if count <= 0:
            return
        experiment = self.experiment()
        request = api_pb2.GetSuggestionsRequest(
            experiment=experiment,
            trials=self.request_trials(),
            current_request_number=count,
            total_request_number=self.total_requested + count,
        )
        reply = _call("GetSuggestions", self.suggestion.GetSuggestions, request, SUGGESTION_DEADLINE_SECONDS)
        if len(reply.parameter_assignments) != count:
            raise ExperimentError(
                f"the suggestion service returned {len(reply.parameter_assignments)} assignments for a request "
                f"of {count}; Katib would retry such a reply forever, so the experiment stops here"
            )
        names = self._trial_names(reply)
        self.total_requested += count
        self.state.put("total_requested", self.total_requested)
        for setting in reply.algorithm.algorithm_settings:
            self.settings[setting.name] = setting.value
        self.state.put("settings", self.settings)
        rules = self._early_stopping_rules(experiment)
        for name, item in zip(names, reply.parameter_assignments):
            trial = TrialRecord(name, {a.name: a.value for a in item.assignments}, dict(item.labels))
            self.trials.append(trial)
            self._launch(trial, rules)

    def _trial_names(self, reply: api_pb2.GetSuggestionsReply) -> list[str]:
        """The names of the reply's trials: the service's, checked as Katib's API server would, or
        `<experiment>-<number>` with a fixed width."""
        taken = {t.name for t in self.trials}
        names = []
        for i, item in enumerate(reply.parameter_assignments):
            name = item.trial_name or self.config.trial_name(len(self.trials) + len(names) + 1)
            where = f"the suggestion service's reply, parameter_assignments[{i}].trial_name {quote(name, 80)}"
            if not TRIAL_NAME.fullmatch(name):
                raise ExperimentError(f"{where} is not a Kubernetes object name (a lowercase DNS-1123 label of at most 63 characters)")
            if name in taken:
                raise ExperimentError(f"{where} is already the name of a trial of this experiment")
            taken.add(name)
            names.append(name)
        return names

    def _early_stopping_rules(self, experiment: api_pb2.Experiment) -> list[Rule]:
        if self.earlystopping is None:
            return []
        request = api_pb2.GetEarlyStoppingRulesRequest(
            experiment=experiment, trials=self.request_trials(), db_manager_address=self.endpoints.dbmanager_address
        )
        reply = _call("GetEarlyStoppingRules", self.earlystopping.GetEarlyStoppingRules, request, SUGGESTION_DEADLINE_SECONDS)
        return [rule_from_pb(rule) for rule in reply.early_stopping_rules]

    def _launch(self, trial: TrialRecord, rules: list[Rule]) -> None:
        collector = TrialCollector(
            trial.name,
            self.parser,
            self.endpoints.dbmanager,
            rules,
            self.config.objective_metric,
            self.config.objective_type == "maximize",
        )
        trial.condition, trial.start_time = "Running", now_rfc3339()
        self.state.save(trial)
        self.executor.start(trial, collector)
        self.on_change(self, trial)

    def _finish(self, finished: Finished, stopping: bool = False) -> None:
        """Records a trial's end. Without the DB manager the trial still ends (Failed, with the
        reason) before the run does; while the run is stopping it just has no observation."""
        trial = next(t for t in self.trials if t.name == finished.name)
        trial.completion_time = now_rfc3339()
        trial.message = finished.message
        try:
            trial.observation = self._observation(trial.name)
        except ExperimentError as error:
            if not stopping:
                trial.condition = "Failed" if not finished.killed else "Killed"
                trial.message = "; ".join(m for m in (finished.message, str(error)) if m)
                self.state.save(trial)
                self.on_change(self, trial)
                raise
        if finished.error:
            trial.condition = "Failed"
        elif finished.killed:
            trial.condition = "Killed"
        elif finished.early_stopped:
            trial.condition = "EarlyStopped"
            self._report_early_stopped(trial.name)
        elif finished.exit_code != 0:
            trial.condition = "Failed"
            trial.message = finished.message or f"exit code {finished.exit_code}"
        elif trial.objective(self.config.objective_metric) is not None:
            trial.condition = "Succeeded"
        else:
            trial.condition = "MetricsUnavailable"
            trial.message = finished.message or f"no {self.config.objective_metric} value was reported"
        self.state.save(trial)
        self.on_change(self, trial)

    def _report_early_stopped(self, name: str) -> None:
        """What the sidecar does after stopping a trial: SetTrialStatus on the early-stopping service."""
        if self.earlystopping is None:
            return
        try:
            _call("SetTrialStatus", self.earlystopping.SetTrialStatus, api_pb2.SetTrialStatusRequest(trial_name=name))
        except ExperimentError as error:  # the trial stays EarlyStopped, with the reason in its message
            trial = next(t for t in self.trials if t.name == name)
            trial.message = str(error)

    def _observation(self, name: str) -> dict[str, str]:
        """Each metric's value by its strategy (min, max or latest) over the trial's logs."""
        reply = _call("GetObservationLog", self.dbmanager.GetObservationLog, api_pb2.GetObservationLogRequest(trial_name=name))
        values: dict[str, list[str]] = {}
        for log in reply.observation_log.metric_logs:
            values.setdefault(log.metric.name, []).append(log.metric.value)
        observation = {}
        for metric, strategy in self.config.metric_strategies.items():
            reported = values.get(metric)
            if not reported:
                continue
            numbers = [n for n in map(parse_float, reported) if n is not None]
            pick = STRATEGY.get(strategy)
            observation[metric] = repr(pick(numbers)) if pick and numbers else reported[-1]
        return observation

    def _restart_unfinished(self) -> None:
        """On resume: trials that were running when the run stopped start again from scratch."""
        unfinished = [t for t in self.trials if t.condition in PENDING or (t.condition == "Killed" and t.message == INTERRUPTED)]
        if not unfinished:
            return
        rules = self._early_stopping_rules(self.experiment())
        for trial in unfinished:
            request = api_pb2.DeleteObservationLogRequest(trial_name=trial.name)
            _call("DeleteObservationLog", self.dbmanager.DeleteObservationLog, request)
            trial.condition, trial.observation, trial.message = "Created", {}, ""
            self._launch(trial, rules)

    def _stop_running(self, message: str = "the experiment ended") -> None:
        """Stops every running trial and records it Killed with `message`. A trial whose end the
        executor does not report within STOP_SECONDS is recorded Killed without it."""
        if not any(t.condition in PENDING for t in self.trials):
            return
        self.executor.stop_all()
        deadline = time.monotonic() + STOP_SECONDS
        while any(t.condition in PENDING for t in self.trials) and time.monotonic() < deadline:
            for finished in self.executor.wait(timeout=1.0):
                if finished.killed:  # a trial that ended on its own just before keeps its own ending
                    finished.error, finished.message = False, message
                self._finish(finished, stopping=True)
        for trial in self.trials:
            if trial.condition in PENDING:
                trial.condition, trial.message, trial.completion_time = "Killed", message, now_rfc3339()
                self.state.save(trial)
