"""Client side: build wire messages from Katib's Experiment YAML shape, and run servers as processes.

Used by the local runner, the benchmarks and the tests; the spec dictionaries use the camelCase field
names of a Katib `Experiment` manifest (`spec.parameters`, `feasibleSpace`, ...).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .pb import api_pb2
from .tls import ClientTls, channel

PARAMETER_TYPES = {"double": api_pb2.DOUBLE, "int": api_pb2.INT, "discrete": api_pb2.DISCRETE, "categorical": api_pb2.CATEGORICAL}
DISTRIBUTIONS = {
    "": api_pb2.DISTRIBUTION_UNSPECIFIED,
    "uniform": api_pb2.UNIFORM,
    "logUniform": api_pb2.LOG_UNIFORM,
    "normal": api_pb2.NORMAL,
    "logNormal": api_pb2.LOG_NORMAL,
}
_UNKNOWN_ENUM = 99  # an enum number no Katib version defines; the server rejects it by field
OBJECTIVE_TYPES = {"minimize": api_pb2.MINIMIZE, "maximize": api_pb2.MAXIMIZE}
CONDITIONS = {
    "Created": api_pb2.TrialStatus.CREATED,
    "Running": api_pb2.TrialStatus.RUNNING,
    "Succeeded": api_pb2.TrialStatus.SUCCEEDED,
    "Killed": api_pb2.TrialStatus.KILLED,
    "Failed": api_pb2.TrialStatus.FAILED,
    "MetricsUnavailable": api_pb2.TrialStatus.METRICSUNAVAILABLE,
    "EarlyStopped": api_pb2.TrialStatus.EARLYSTOPPED,
}


def experiment_pb(name: str, spec: Mapping[str, Any]) -> api_pb2.Experiment:
    """An Experiment message from the `spec` of a Katib Experiment manifest (`parameters` or
    `nasConfig`, whose numbers must be integers).

    Unknown enum words become the wire's UNKNOWN value, so that the server reports them.
    """
    out = api_pb2.Experiment(name=name)
    s = out.spec
    s.parameter_specs.parameters.extend(_parameter_pb(p) for p in spec.get("parameters", ()))
    nas = spec.get("nasConfig")
    if nas is not None:
        s.nas_config.SetInParent()
        graph = nas.get("graphConfig") or {}
        s.nas_config.graph_config.num_layers = int(graph.get("numLayers", 0))
        s.nas_config.graph_config.input_sizes.extend(int(x) for x in graph.get("inputSizes") or ())
        s.nas_config.graph_config.output_sizes.extend(int(x) for x in graph.get("outputSizes") or ())
        for op in nas.get("operations") or ():
            added = s.nas_config.operations.operation.add(operation_type=op.get("operationType", ""))
            added.parameter_specs.parameters.extend(_parameter_pb(p) for p in op.get("parameters") or ())
    objective = spec.get("objective", {})
    s.objective.type = OBJECTIVE_TYPES.get(objective.get("type", ""), api_pb2.UNKNOWN)
    s.objective.goal = float(objective.get("goal", 0) or 0)
    s.objective.objective_metric_name = objective.get("objectiveMetricName", "")
    s.objective.additional_metric_names.extend(objective.get("additionalMetricNames", ()))
    algorithm = spec.get("algorithm", {})
    s.algorithm.algorithm_name = algorithm.get("algorithmName", "")
    for setting in algorithm.get("algorithmSettings", ()):
        s.algorithm.algorithm_settings.add(name=setting["name"], value=str(setting.get("value", "")))
    early = spec.get("earlyStopping")
    if early:
        s.early_stopping.algorithm_name = early.get("algorithmName", "")
        for setting in early.get("algorithmSettings", ()):
            s.early_stopping.algorithm_settings.add(name=setting["name"], value=str(setting.get("value", "")))
    s.max_trial_count = int(spec.get("maxTrialCount", 0))
    s.parallel_trial_count = int(spec.get("parallelTrialCount", 0))
    return out


def _parameter_pb(p: Mapping[str, Any]) -> api_pb2.ParameterSpec:
    fs = p.get("feasibleSpace", {})
    return api_pb2.ParameterSpec(
        name=p.get("name", ""),
        parameter_type=PARAMETER_TYPES.get(p.get("parameterType", ""), api_pb2.UNKNOWN_TYPE),
        feasible_space=api_pb2.FeasibleSpace(
            min=str(fs.get("min", "")),
            max=str(fs.get("max", "")),
            step=str(fs.get("step", "")),
            list=[str(v) for v in fs.get("list", ())],
            distribution=DISTRIBUTIONS.get(fs.get("distribution", ""), _UNKNOWN_ENUM),
        ),
    )


def trial_pb(
    name: str,
    assignment: Mapping[str, str],
    condition: str = "Succeeded",
    metrics: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> api_pb2.Trial:
    """A Trial message; `metrics` values are sent as strings, as Katib sends them."""
    trial = api_pb2.Trial(name=name)
    trial.spec.parameter_assignments.assignments.extend(
        api_pb2.ParameterAssignment(name=k, value=str(v)) for k, v in assignment.items()
    )
    trial.spec.labels.update(labels or {})
    trial.status.condition = CONDITIONS[condition]
    trial.status.observation.metrics.extend(api_pb2.Metric(name=k, value=str(v)) for k, v in (metrics or {}).items())
    return trial


def assignments(reply: api_pb2.GetSuggestionsReply) -> list[dict[str, str]]:
    return [{a.name: a.value for a in item.assignments} for item in reply.parameter_assignments]


def wait_serving(channel: grpc.Channel, service: str = "", timeout: float = 10.0) -> None:
    """Blocks until the server's health check answers SERVING for `service`."""
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"server not SERVING after {timeout}s")
        time.sleep(0.01)


class ServerProcess:
    """A service CLI run as a child process on an ephemeral loopback port.

    `argv` is the module and its arguments, e.g. ["katib_services.services.suggestion", "--algorithm", "random"].
    The child prints "... on HOST:PORT" on its first stdout line once it listens. A server started
    with TLS flags is reached with `tls`.
    """

    def __init__(
        self, argv: Sequence[str], host: str = "127.0.0.1", timeout: float = 20.0, stderr=subprocess.DEVNULL, tls: ClientTls | None = None
    ):
        self.started = time.perf_counter()
        self.channel = None
        self.process = subprocess.Popen(
            [sys.executable, "-m", *argv, "--address", f"{host}:0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,  # a Ctrl-C meant for the parent must not stop the server first
        )
        try:
            line = self.process.stdout.readline()
            if " on " not in line:
                raise RuntimeError(f"{' '.join(argv)} did not start (exit code {self.process.wait()})")
            self.address = line.rsplit(" on ", 1)[1].strip()
            self.channel = channel(self.address, tls)
            wait_serving(self.channel, timeout=timeout)
        except BaseException:  # a failed start, or a signal while waiting: no server is left behind
            self.stop(timeout=5)
            raise
        self.ready_seconds = time.perf_counter() - self.started

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM to the server's process group, SIGKILL after `timeout` seconds; the exit status."""
        if self.channel is not None:
            self.channel.close()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, sig)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                continue
        return self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
