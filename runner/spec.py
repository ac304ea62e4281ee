"""A Katib `Experiment` manifest (kubeflow.org/v1beta1), read for a local run.

The search space, objective and algorithm settings are passed to the suggestion service as
they are, and that service validates them; this module checks the structure around them and the
parts only a local run uses (limits, metrics collector, trial template), with messages that name
the field as it is written in the YAML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from katib_services.algorithms import darts, enas
from katib_services.algorithms.errors import InvalidSpec, Problems

from . import fields, metrics

DEFAULT_PARALLEL_TRIALS = 3  # Katib's default parallelTrialCount
STRATEGIES = ("min", "max", "latest")
PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^}]+)\}")
# "${trialParameters.NAME}" in double quotes: Katib runs the command through `sh -c` (its metrics
# collector wraps it), whose quote removal gives the trial the bare value; so does katib-local.
QUOTED_PLACEHOLDER = re.compile(r'"\$\{trialParameters\.([^}]+)\}"')
INT32 = 2**31
# Katib's rule for experiment names (its validating webhook), within a Kubernetes label's 63 characters.
EXPERIMENT_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
TRIAL_SPEC_REFERENCES = {"${trialSpec.Name}": "name", "${trialSpec.Namespace}": "namespace"}
NAS_ASSIGNMENTS = {"darts": darts.NAMES, "enas": enas.NAMES}  # what NAS trials reference instead of parameters


@dataclass(frozen=True)
class Container:
    """The primary container of the trial Job: what runs as the trial's process."""

    command: list[str]
    args: list[str]
    env: dict[str, str]
    working_dir: str | None = None
    image: str = ""
    where: str = ""  # the container's path in the manifest


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    spec: dict[str, Any]  # the manifest's spec, for the wire (services.client.experiment_pb)
    objective_type: str
    objective_metric: str
    goal: float | None
    metric_strategies: dict[str, str]  # every metric to collect -> min, max or latest
    parallel_trials: int
    max_trials: int | None
    max_failed_trials: int | None
    early_stopping: dict[str, Any] | None
    collector: metrics.CollectorConfig
    trial_parameters: dict[str, str]  # trial parameter name -> reference
    assignment_names: tuple[str, ...]  # what each trial is assigned: the parameters, or a NAS algorithm's assignments
    container: Container
    base_dir: Path = field(default=Path("."))
    notices: tuple[str, ...] = ()  # fields Katib uses that a local run ignores

    @property
    def metric_names(self) -> list[str]:
        return list(self.metric_strategies)

    def goal_reached(self, value: float) -> bool:
        if self.goal is None:
            return False
        return value >= self.goal if self.objective_type == "maximize" else value <= self.goal

    def better(self, a: float, b: float) -> bool:
        """Whether objective value `a` beats `b`."""
        return a > b if self.objective_type == "maximize" else a < b

    def trial_name(self, number: int) -> str:
        """`<experiment>-<number>`, the number zero-padded to one width for the whole run."""
        width = max(3, len(str(self.max_trials))) if self.max_trials else 6
        return f"{self.name[: 62 - width]}-{number:0{width}d}"

    @property
    def suggestion_trial_dir(self) -> str:
        """The `suggestion_trial_dir` algorithm setting (pbt: where a trial finds its checkpoint), or ""."""
        for setting in self.spec.get("algorithm", {}).get("algorithmSettings") or []:
            if isinstance(setting, dict) and setting.get("name") == "suggestion_trial_dir":
                return str(setting.get("value", "")).strip()
        return ""

    def collector_hint(self) -> str:
        """What the metrics collector expects, for a run in which no trial reported the objective."""
        metric, c = self.objective_metric, self.collector
        if c.kind == metrics.NONE:
            return "the metrics collector is None, so no metric is collected"
        where = "their output (stdout and stderr)" if c.kind == metrics.STDOUT else f"the file {c.path} (each trial gets its own copy)"
        if c.format == metrics.JSON:
            shape = f'JSON lines with a string value, e.g. {{"{metric}": "0.93"}}'
        elif c.filters:
            shape = "lines matching " + " or ".join(c.filters)
        else:
            shape = f"lines such as {metric}=0.93 (the regex {metrics.DEFAULT_FILTER})"
        return f"trials must write {shape} to {where}; see each trial's output.log"

    def command_for(self, trial_name: str, assignment: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """The trial's argv and environment with every `${trialParameters.NAME}` substituted."""
        values = {}
        for name, reference in self.trial_parameters.items():
            if reference in TRIAL_SPEC_REFERENCES:
                values[name] = trial_name if TRIAL_SPEC_REFERENCES[reference] == "name" else "local"
            else:
                values[name] = assignment[reference]

        def fill(text: str) -> str:
            text = QUOTED_PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)
            return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)

        argv = [fill(part) for part in self.container.command + self.container.args]
        return argv, {k: fill(v) for k, v in self.container.env.items()}


def load(path: str | Path) -> ExperimentConfig:
    """Reads and checks an Experiment manifest; raises InvalidSpec naming every bad field."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InvalidSpec(f"{path}: not valid YAML: {error}") from None
    return parse(document, base_dir=path.resolve().parent)


def parse(document: Any, base_dir: Path = Path("."), trial_template: bool = True) -> ExperimentConfig:
    """Checks a manifest; `trial_template=False` allows none (trials run as functions)."""
    problems = Problems()
    if not isinstance(document, dict):
        raise InvalidSpec("the file must hold one Experiment manifest (a YAML mapping)")
    for message in fields.unknown_fields(document):
        problems.messages.append(message)
    kind = document.get("kind")
    if kind != "Experiment":
        problems.add("kind", f"is {kind!r}; expected Experiment")
    api_version = str(document.get("apiVersion", ""))
    if not api_version.startswith("kubeflow.org/"):
        problems.add("apiVersion", f"is {api_version!r}; expected kubeflow.org/v1beta1")
    name = _mapping(document, "metadata", "metadata", problems).get("name", "")
    if not isinstance(name, str) or not name:
        problems.add("metadata.name", "is missing; name the experiment")
    elif not EXPERIMENT_NAME.fullmatch(name):
        problems.add(
            "metadata.name",
            f"{name!r} is not an experiment name: lowercase letters, digits and '-', starting with a letter, "
            "at most 63 characters (Katib's rule)",
        )
    spec = _mapping(document, "spec", "spec", problems)

    objective = _mapping(spec, "objective", "spec.objective", problems)
    objective_type = objective.get("type", "")
    if objective_type not in ("minimize", "maximize"):
        problems.add("spec.objective.type", f"is {objective_type!r}; use minimize or maximize")
    objective_metric = objective.get("objectiveMetricName", "")
    if not objective_metric:
        problems.add("spec.objective.objectiveMetricName", "is missing; name the metric to optimize")
    goal = _number(objective, "goal", "spec.objective.goal", problems)
    additional = _list(objective, "additionalMetricNames", "spec.objective.additionalMetricNames", problems)
    strategies = _metric_strategies(objective, objective_type, [objective_metric, *additional], problems)

    parameters = _list(spec, "parameters", "spec.parameters", problems)
    nas = spec.get("nasConfig")
    if nas is not None and parameters:
        problems.add("spec.nasConfig", "and spec.parameters are both set; an experiment declares one of them")
    elif nas is not None:
        _check_nas_config(nas, problems)
    elif not parameters:
        problems.add("spec.parameters", "is missing or empty; declare the parameters to tune (or spec.nasConfig to search architectures)")
    algorithm = _mapping(spec, "algorithm", "spec.algorithm", problems)
    if not algorithm.get("algorithmName"):
        problems.add("spec.algorithm.algorithmName", "is missing; name a search algorithm, e.g. random")
    early_stopping = spec.get("earlyStopping")
    if early_stopping is not None and not (isinstance(early_stopping, dict) and early_stopping.get("algorithmName")):
        problems.add("spec.earlyStopping.algorithmName", "is missing; name an early-stopping algorithm, e.g. medianstop")

    parallel = _count(spec, "parallelTrialCount", problems, minimum=1) or DEFAULT_PARALLEL_TRIALS
    max_trials = _count(spec, "maxTrialCount", problems, minimum=1)
    max_failed = _count(spec, "maxFailedTrialCount", problems, minimum=0)

    collector = None
    try:
        collector = metrics.collector_config(spec.get("metricsCollectorSpec"))
        if objective_metric:  # the parser checks the filter regexes
            metrics.MetricParser(list(strategies), collector.filters, collector.format)
    except ValueError as error:
        problems.messages.append(str(error))  # the message already names its field
    parameters, container = _trial_template(spec, problems) if trial_template else ({}, Container([], [], {}))
    problems.raise_if_any()
    notices = fields.ignored_fields(document)
    if container.image:
        notices.append(f"{container.where}.image (katib-local runs the container's command on this machine; {container.image} is not used)")
    return ExperimentConfig(
        name=name,
        spec=spec,
        objective_type=objective_type,
        objective_metric=objective_metric,
        goal=goal,
        metric_strategies=strategies,
        parallel_trials=parallel,
        max_trials=max_trials,
        max_failed_trials=max_failed,
        early_stopping=early_stopping,
        collector=collector,
        trial_parameters=parameters,
        assignment_names=_assignment_names(spec)[0],
        container=container,
        base_dir=base_dir,
        notices=tuple(notices),
    )


def _mapping(parent: Mapping, key: str, where: str, problems: Problems) -> dict:
    value = parent.get(key) if isinstance(parent, Mapping) else None
    if value is None:
        problems.add(where, "is missing")
        return {}
    if not isinstance(value, dict):
        problems.add(where, f"must be a mapping, not {type(value).__name__}")
        return {}
    return value


def _list(parent: Mapping, key: str, where: str, problems: Problems) -> list:
    value = parent.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(where, f"must be a list, not {type(value).__name__}")
        return []
    return value


def _number(parent: Mapping, key: str, where: str, problems: Problems) -> float | None:
    value = parent.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        problems.add(where, f"{value!r} is not a number")
        return None


def _count(spec: Mapping, key: str, problems: Problems, minimum: int) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if not _is_int32(value) or value < minimum:  # the CRD's fields are int32
        problems.add(f"spec.{key}", f"{value!r} must be an integer from {minimum} to {INT32 - 1}")
        return None
    return value


def _check_nas_config(nas: Any, problems: Problems) -> None:
    """The shape of spec.nasConfig (the suggestion service validates its values)."""
    if not isinstance(nas, dict):
        problems.add("spec.nasConfig", f"must be a mapping, not {type(nas).__name__}")
        return
    graph = _mapping(nas, "graphConfig", "spec.nasConfig.graphConfig", problems)
    where = "spec.nasConfig.graphConfig"
    if "numLayers" in graph and not _is_int32(graph["numLayers"]):
        problems.add(f"{where}.numLayers", f"{graph['numLayers']!r} is not an integer")
    for key in ("inputSizes", "outputSizes"):
        for i, value in enumerate(_list(graph, key, f"{where}.{key}", problems)):
            if not _is_int32(value):
                problems.add(f"{where}.{key}[{i}]", f"{value!r} is not an integer")
    for i, op in enumerate(_list(nas, "operations", "spec.nasConfig.operations", problems)):
        if not isinstance(op, dict):
            problems.add(f"spec.nasConfig.operations[{i}]", f"must be a mapping, not {type(op).__name__}")
            continue
        for j, parameter in enumerate(_list(op, "parameters", f"spec.nasConfig.operations[{i}].parameters", problems)):
            if not isinstance(parameter, dict):
                problems.add(f"spec.nasConfig.operations[{i}].parameters[{j}]", f"must be a mapping, not {type(parameter).__name__}")


def _is_int32(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -INT32 <= value < INT32


def _metric_strategies(objective: Mapping, objective_type: str, names: list, problems: Problems) -> dict[str, str]:
    """Katib's defaulting: a metric without a strategy takes min or max by the objective type."""
    default = "max" if objective_type == "maximize" else "min"
    strategies = {name: default for name in names if isinstance(name, str) and name}
    for i, entry in enumerate(_list(objective, "metricStrategies", "spec.objective.metricStrategies", problems)):
        where = f"spec.objective.metricStrategies[{i}]"
        if not isinstance(entry, dict) or entry.get("name") not in strategies:
            problems.add(f"{where}.name", f"must name the objective or an additional metric ({', '.join(strategies)})")
        elif entry.get("value") not in STRATEGIES:
            problems.add(f"{where}.value", f"is {entry.get('value')!r}; use min, max or latest")
        else:
            strategies[entry["name"]] = entry["value"]
    return strategies


def _assignment_names(spec: Mapping) -> tuple[tuple[str, ...], str]:
    """The names a trial is assigned values for, and what they are in words: the parameters, or for
    a NAS experiment the assignments of its algorithm (any NAS algorithm's when it is not one)."""
    if spec.get("nasConfig") is None:
        parameters = spec.get("parameters")
        names = [p.get("name") for p in parameters if isinstance(p, dict)] if isinstance(parameters, list) else []
        return tuple(n for n in names if isinstance(n, str)), "a parameter in spec.parameters"
    algorithm = spec.get("algorithm")
    name = algorithm.get("algorithmName") if isinstance(algorithm, dict) else None
    names = NAS_ASSIGNMENTS.get(name) or tuple(n for assignments in NAS_ASSIGNMENTS.values() for n in assignments)
    return names, f"an assignment of neural architecture search ({', '.join(names)})"


def _trial_template(spec: Mapping, problems: Problems) -> tuple[dict[str, str], Container]:
    empty = Container([], [], {})
    template = _mapping(spec, "trialTemplate", "spec.trialTemplate", problems)
    if not template:
        return {}, empty
    if "configMap" in template:
        problems.add("spec.trialTemplate.configMap", "is not supported locally; put the Job in trialTemplate.trialSpec")
    parameters: dict[str, str] = {}
    names, declared = _assignment_names(spec)
    for i, entry in enumerate(_list(template, "trialParameters", "spec.trialTemplate.trialParameters", problems)):
        where = f"spec.trialTemplate.trialParameters[{i}]"
        if not isinstance(entry, dict) or not entry.get("name"):
            problems.add(f"{where}.name", "is missing")
            continue
        reference = entry.get("reference") or entry["name"]
        if reference not in names and reference not in TRIAL_SPEC_REFERENCES:
            problems.add(f"{where}.reference", f"{reference!r} is not {declared}")
        parameters[entry["name"]] = reference
    trial_spec = _mapping(template, "trialSpec", "spec.trialTemplate.trialSpec", problems)
    if trial_spec and trial_spec.get("kind") != "Job":
        problems.add("spec.trialTemplate.trialSpec.kind", f"is {trial_spec.get('kind')!r}; locally only a batch Job runs")
    pod = trial_spec.get("spec", {}).get("template", {}).get("spec", {}) if trial_spec else {}
    containers = pod.get("containers") if isinstance(pod, dict) else None
    where = "spec.trialTemplate.trialSpec.spec.template.spec.containers"
    if not isinstance(containers, list) or not containers:
        if trial_spec:
            problems.add(where, "is missing; the Job needs a container with a command")
        return parameters, empty
    wanted = template.get("primaryContainerName")
    chosen = [c for c in containers if isinstance(c, dict) and (wanted is None or c.get("name") == wanted)]
    if not chosen:
        problems.add("spec.trialTemplate.primaryContainerName", f"{wanted!r} names no container of the trial Job")
        return parameters, empty
    container = chosen[0]
    argv = [str(x) for x in (container.get("command") or []) + (container.get("args") or [])]
    if not argv:
        problems.add(f"{where}[{containers.index(container)}].command", "is missing; give the command to run")
    for text in argv + [str(e.get("value", "")) for e in container.get("env") or [] if isinstance(e, dict)]:
        for placeholder in PLACEHOLDER.findall(text):
            if placeholder not in parameters:
                problems.add(where, f"${{trialParameters.{placeholder}}} is used but not declared in trialParameters")
    env = {str(e["name"]): str(e.get("value", "")) for e in container.get("env") or [] if isinstance(e, dict) and "name" in e}
    return parameters, Container(
        [str(x) for x in container.get("command") or []],
        [str(x) for x in container.get("args") or []],
        env,
        container.get("workingDir"),
        str(container.get("image") or ""),
        f"{where}[{containers.index(container)}]",
    )
