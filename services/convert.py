"""Conversion between the wire messages and the algorithm core."""

from __future__ import annotations

from collections.abc import Iterable

from katib_services.algorithms.base import Reply
from katib_services.algorithms.errors import Problems
from katib_services.algorithms.experiment import Experiment
from katib_services.algorithms.history import Trial, parse_trial
from katib_services.algorithms.limits import DEFAULT, Limits
from katib_services.algorithms.nas import RawNasConfig, RawOperation
from katib_services.algorithms.space import RawParameter
from katib_services.statestore import StoreView

from .pb import api_pb2


def experiment(
    pb: api_pb2.Experiment, problems: Problems | None = None, limits: Limits = DEFAULT, architecture_search: bool = False
) -> Experiment:
    """The core's experiment; `architecture_search`: the algorithm reads spec.nasConfig instead of
    spec.parameters (a NAS algorithm, `Algorithm.architecture_search`)."""
    spec = pb.spec
    objective = spec.objective
    return Experiment.parse(
        name=pb.name,
        parameters=[_parameter(p) for p in spec.parameter_specs.parameters],
        objective_type=objective.type,
        objective_metric=objective.objective_metric_name,
        goal=objective.goal,
        additional_metrics=objective.additional_metric_names,
        algorithm=spec.algorithm.algorithm_name,
        settings=[(s.name, s.value) for s in spec.algorithm.algorithm_settings],
        max_trial_count=spec.max_trial_count,
        parallel_trial_count=spec.parallel_trial_count,
        nas_config=_nas_config(spec.nas_config) if spec.HasField("nas_config") else None,
        architecture_search=architecture_search,
        problems=problems,
        limits=limits,
    )


def _parameter(p: api_pb2.ParameterSpec) -> RawParameter:
    fs = p.feasible_space
    return RawParameter(p.name, p.parameter_type, fs.min, fs.max, fs.list, fs.step, fs.distribution)


def _nas_config(pb: api_pb2.NasConfig) -> RawNasConfig:
    graph = pb.graph_config
    return RawNasConfig(
        graph.num_layers,
        list(graph.input_sizes),
        list(graph.output_sizes),
        [RawOperation(op.operation_type, [_parameter(p) for p in op.parameter_specs.parameters]) for op in pb.operations.operation],
    )


def trial_fields(t: api_pb2.Trial) -> tuple:
    """(name, condition, assignment, labels, metrics) of a trial, as parse_trial takes them."""
    return (
        t.name,
        t.status.condition,
        {a.name: a.value for a in t.spec.parameter_assignments.assignments},
        dict(t.spec.labels),
        {m.name: m.value for m in t.status.observation.metrics},
    )


class TrialCache:
    """Parsed trials of recent requests, keyed by each trial's wire bytes, in the state store.

    Katib sends every trial on every request, and nearly all of them are unchanged since the
    previous request. The bytes hold everything a trial is, so a trial whose bytes were seen in
    the previous request of the same experiment is reused as parsed; any change (a new
    condition, a new metric) gives new bytes and is parsed afresh. Each experiment's entry holds
    the trials of its latest request only, so repeated requests never grow it. (A client that
    writes map entries in a random order, as Go does for labels, only makes such trials miss the
    cache.)
    """

    def __init__(self, store: StoreView):
        self._store = store

    def trials(self, experiment: Experiment, pb: api_pb2.Experiment, blobs: Iterable[bytes]) -> list[Trial]:
        """The parsed trials of serialized `Trial` messages."""
        # Parsing depends on the parameters, the objective and, for an algorithm that sets a
        # parameter itself (Algorithm.space: hyperband's resource), on the algorithm's settings;
        # for a NAS algorithm, on spec.nasConfig, whose architectures are the points.
        key = pb.name.encode() + b"\0" + pb.spec.parameter_specs.SerializeToString(deterministic=True)
        key += pb.spec.objective.SerializeToString(deterministic=True)
        key += pb.spec.algorithm.SerializeToString(deterministic=True)
        key += pb.spec.nas_config.SerializeToString(deterministic=True)
        previous = self._store.get(key) or {}
        current: dict[bytes, Trial] = {}
        out = []
        size = len(key)
        for blob in blobs:
            trial = previous.get(blob) or current.get(blob)
            if trial is None:
                trial = parse_trial(experiment, *trial_fields(api_pb2.Trial.FromString(blob)))
            if blob not in current:
                current[blob] = trial
                size += TRIAL_OVERHEAD + PARAMETER_OVERHEAD * len(trial.assignment) + 3 * len(blob)
            out.append(trial)
        self._store.put(key, current, size)
        return out


# Bytes a parsed trial keeps beyond three times its wire size: a base, and a part per assigned
# parameter (its parsed value, point and encoding). Measured: tests/test_server.py.
TRIAL_OVERHEAD = 900
PARAMETER_OVERHEAD = 230


def suggestions_reply(reply: Reply, algorithm: str) -> api_pb2.GetSuggestionsReply:
    out = api_pb2.GetSuggestionsReply()
    for proposal in reply.proposals:
        item = out.parameter_assignments.add(trial_name=proposal.trial_name)
        item.assignments.extend(api_pb2.ParameterAssignment(name=k, value=v) for k, v in proposal.assignment.items())
        item.labels.update(proposal.labels)
    if reply.settings:
        out.algorithm.algorithm_name = algorithm
        out.algorithm.algorithm_settings.extend(
            api_pb2.AlgorithmSetting(name=k, value=v) for k, v in reply.settings.items()
        )
    return out
