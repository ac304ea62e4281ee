"""Shared fixtures: real gRPC servers on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, settings

# The fuzz suite (tests/test_fuzz.py): "ci" runs the same few hundred cases per RPC every time;
# "deep" (pytest --hypothesis-profile=deep, or bench/fuzz.py) runs fresh random ones, 10,000+ in all.
# KATIB_FUZZ_EXAMPLES=N (bench/fuzz.py --examples N) makes "deep" run N cases per test.
_FUZZ = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))
settings.register_profile("ci", max_examples=150, derandomize=True, **_FUZZ)
settings.register_profile("deep", max_examples=int(os.environ.get("KATIB_FUZZ_EXAMPLES", "1500")), **_FUZZ)
settings.load_profile("ci")

from katib_services.algorithms import registry
from katib_services.services import suggestion
from katib_services.statestore import DEFAULT_ENTRIES, StateStore
from katib_services.services.client import ServerProcess, experiment_pb
from katib_services.services.pb import api_pb2, api_pb2_grpc


class Client:
    """A Suggestion stub plus shortcuts for the two RPCs."""

    def __init__(self, address: str):
        self.address = address
        self.channel = grpc.insecure_channel(address)
        self.stub = api_pb2_grpc.SuggestionStub(self.channel)

    def validate(self, experiment: api_pb2.Experiment) -> None:
        self.stub.ValidateAlgorithmSettings(api_pb2.ValidateAlgorithmSettingsRequest(experiment=experiment), timeout=60)

    def suggest(self, experiment, trials=(), count=1, total=None) -> api_pb2.GetSuggestionsReply:
        total = len(trials) + count if total is None else total
        request = api_pb2.GetSuggestionsRequest(
            experiment=experiment, trials=list(trials), current_request_number=count, total_request_number=total
        )
        return self.stub.GetSuggestions(request, timeout=60)


@pytest.fixture
def serve(tmp_path):
    """Starts in-process Suggestion servers: serve(algorithm) -> Client. All stop after the test.

    The servers of a test share one data directory (`serve.data_dir`, a temporary directory, as
    replicas share Katib's volume) unless a test passes its own `data_dir`. `serve.process(algorithm)`
    starts one as its own process instead: a restarted pod, which shares no memory (not even the
    algorithm's instance) with the servers before it."""
    servers, processes = [], []

    def start(algorithm: str = "random", state_entries: int = DEFAULT_ENTRIES, **options) -> Client:
        store = StateStore(state_entries)
        options.setdefault("data_dir", start.data_dir)
        server = suggestion.start(algorithm, "127.0.0.1:0", store=store, **options)
        servers.append(server)
        client = Client(server.address)
        client.store = store
        client.data_dir = Path(options["data_dir"])
        return client

    def process(algorithm: str, data_dir: Path | None = None) -> Client:
        data_dir = Path(data_dir or start.data_dir)
        server = ServerProcess(["katib_services.services.suggestion", "--algorithm", algorithm, "--data-dir", str(data_dir)])
        processes.append(server)
        client = Client(server.address)
        client.data_dir = data_dir
        return client

    start.servers = servers
    start.process = process
    start.processes = processes
    start.data_dir = tmp_path / "data"
    yield start
    for server in servers:
        server.shutdown(grace=1)
    for server in processes:
        server.stop()


def spec(parameters, algorithm="random", settings=None, objective="maximize", metric="accuracy", **extra):
    """A Katib Experiment spec dict (YAML shape)."""
    out = {
        "parameters": parameters,
        "objective": {"type": objective, "objectiveMetricName": metric},
        "algorithm": {
            "algorithmName": algorithm,
            "algorithmSettings": [{"name": k, "value": str(v)} for k, v in (settings or {}).items()],
        },
    }
    out.update(extra)
    return out


def experiment(parameters, name="exp", **kwargs) -> api_pb2.Experiment:
    return experiment_pb(name, spec(parameters, **kwargs))


def double(name, lo, hi, step=None, distribution=None):
    fs = {"min": str(lo), "max": str(hi)}
    if step is not None:
        fs["step"] = str(step)
    if distribution:
        fs["distribution"] = distribution
    return {"name": name, "parameterType": "double", "feasibleSpace": fs}


def integer(name, lo, hi, step=None, distribution=None):
    p = double(name, lo, hi, step, distribution)
    p["parameterType"] = "int"
    return p


def categorical(name, *values):
    return {"name": name, "parameterType": "categorical", "feasibleSpace": {"list": list(values)}}


def discrete(name, *values):
    return {"name": name, "parameterType": "discrete", "feasibleSpace": {"list": [str(v) for v in values]}}


# hyperband and asha set a resource parameter themselves (its feasibleSpace is not sampled): the
# shared suites give them one, RESOURCE, from 1 to 1 as in Katib's hyperband example.
RESOURCE = "budget"
MULTI_FIDELITY = {"hyperband": {"resource_name": RESOURCE, "r_l": 9}, "asha": {"resource_name": RESOURCE, "max_resource": 9}}


def with_resource(algorithm, parameters, settings=None):
    """The parameters and settings an algorithm runs with: hyperband and asha get the resource."""
    if algorithm not in MULTI_FIDELITY:
        return parameters, settings or {}
    return [*parameters, integer(RESOURCE, 1, 1)], {**MULTI_FIDELITY[algorithm], **(settings or {})}


# A space with every type, as a training job declares it.
MIXED = [
    double("lr", "0.0001", "0.1", distribution="logUniform"),
    integer("layers", 1, 8),
    double("dropout", "0.0", "0.5", step="0.05"),
    categorical("optimizer", "sgd", "adam", "rmsprop"),
    discrete("batch", 16, 32, 64),
]


def status_of(call) -> tuple:
    """(status code, details) of a call that must fail."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()
# Neural architecture search: experiments declare spec.nasConfig instead of parameters (tests/test_nas.py).
NAS = ("darts", "enas")
SPACE_ALGORITHMS = [name for name in registry.names() if name not in NAS]  # the algorithms of spec.parameters


def operation(kind, **parameters):
    """A nasConfig operation; each keyword is a categorical parameter and its values."""
    return {"operationType": kind, "parameters": [categorical(name, *values) for name, values in parameters.items()]}


def nas_config(layers=3, operations=None, input_sizes=(16,), output_sizes=(2,)):
    operations = operations or [operation("dense", units=["8", "16"]), operation("conv1d", filter_size=["3", "5"], stride=["1", "2"])]
    return {
        "graphConfig": {"numLayers": layers, "inputSizes": list(input_sizes), "outputSizes": list(output_sizes)},
        "operations": operations,
    }


def nas_experiment(algorithm="enas", name="nas", settings=None, objective="maximize", metric="accuracy", **config):
    """A NAS experiment message (config: nas_config's arguments, or nasConfig=... itself)."""
    extra = {key: config.pop(key) for key in ("maxTrialCount", "parallelTrialCount") if key in config}
    nas = config.pop("nasConfig", None) or nas_config(**config)
    return experiment([], name=name, algorithm=algorithm, settings=settings, objective=objective, metric=metric, nasConfig=nas, **extra)


def points(reply) -> list[tuple]:
    """The assignments of a reply as hashable tuples of (name, value) pairs."""
    return [tuple(sorted((a.name, a.value) for a in item.assignments)) for item in reply.parameter_assignments]
