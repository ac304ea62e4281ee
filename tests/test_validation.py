"""Bad input gets INVALID_ARGUMENT naming the field, from both RPCs, and the server stays healthy."""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from katib_services.services.client import experiment_pb

from .conftest import categorical, discrete, double, integer, spec

GOOD = [double("lr", "0.01", "0.1"), integer("layers", 1, 4)]

# (case id, experiment spec, text the message must contain)
CASES = [
    ("unknown algorithm", spec(GOOD, algorithm="nope"), 'spec.algorithm.algorithmName: unknown algorithm "nope"'),
    (
        "unknown setting",
        spec(GOOD, settings={"seed": 1}),
        'spec.algorithm.algorithmSettings: unknown setting "seed" for algorithm random',
    ),
    (
        "setting of the wrong type",
        spec(GOOD, settings={"random_state": "abc"}),
        'spec.algorithm.algorithmSettings["random_state"]: "abc" is not an integer',
    ),
    (
        "setting out of range",
        spec(GOOD, settings={"random_state": -1}),
        'spec.algorithm.algorithmSettings["random_state"]: -1 is out of range; it must be in [0, 2^63 - 1]',
    ),
    ("min above max", spec([integer("n", 5, 2)]), 'spec.parameters[0] ("n").feasibleSpace.min: (5) must not be greater than'),
    (
        "log distribution with min 0",
        spec([double("lr", 0, 1, distribution="logUniform")]),
        'spec.parameters[0] ("lr").feasibleSpace.min: (0) must be greater than 0 for the logUniform distribution',
    ),
    (
        "log-normal with negative min",
        spec([double("lr", -1, 1, distribution="logNormal")]),
        'spec.parameters[0] ("lr").feasibleSpace.min: (-1) must be greater than 0 for the logNormal distribution',
    ),
    ("empty categorical list", spec([categorical("opt")]), 'spec.parameters[0] ("opt").feasibleSpace.list: is empty'),
    ("empty discrete list", spec([discrete("k")]), 'spec.parameters[0] ("k").feasibleSpace.list: is empty'),
    ("no parameters", spec([]), "spec.parameters: is empty"),
    (
        "duplicate parameter names",
        spec([double("lr", 0, 1), integer("lr", 1, 3)]),
        'spec.parameters[1] ("lr").name: "lr" is also the name of spec.parameters[0]',
    ),
    ("step zero", spec([double("lr", 0, 1, step=0)]), 'spec.parameters[0] ("lr").feasibleSpace.step: "0" must be greater than 0'),
    ("negative step", spec([integer("n", 0, 9, step=-2)]), 'spec.parameters[0] ("n").feasibleSpace.step: "-2" must be greater than 0'),
    ("non-numeric min", spec([double("lr", "low", 1)]), 'spec.parameters[0] ("lr").feasibleSpace.min: "low" is not a number'),
    ("non-numeric max", spec([integer("n", 1, "ten")]), 'spec.parameters[0] ("n").feasibleSpace.max: "ten" is not a number'),
    ("fractional int bound", spec([integer("n", "1.5", 4)]), 'spec.parameters[0] ("n").feasibleSpace.min: "1.5" is not an integer'),
    ("non-numeric discrete value", spec([discrete("k", 1, "two")]), 'spec.parameters[0] ("k").feasibleSpace.list[1]: "two" is not a number'),
    (
        "discrete value that rounds to 0",
        spec([discrete("k", 0, "1e-400")]),
        'spec.parameters[0] ("k").feasibleSpace.list[1]: "1e-400" is beyond the range of a double (about 1e-323 to 1.8e308 in magnitude)',
    ),
    ("repeated list value", spec([categorical("opt", "a", "a")]), 'spec.parameters[0] ("opt").feasibleSpace.list[1]: "a" repeats list[0]'),
    (
        "UNKNOWN parameter type",
        spec([{"name": "x", "parameterType": "float", "feasibleSpace": {"min": "0", "max": "1"}}]),
        'spec.parameters[0] ("x").parameterType: is unknown (0)',
    ),
    (
        "unknown distribution",
        spec([double("x", 0, 1, distribution="cauchy")]),
        'spec.parameters[0] ("x").feasibleSpace.distribution: is unknown',
    ),
    ("empty objective metric", spec(GOOD, metric=""), "spec.objective.objectiveMetricName: is empty"),
    ("unknown objective type", spec(GOOD, objective="best"), "spec.objective.type: is unknown (0)"),
    ("nameless parameter", spec([double("", 0, 1)]), "spec.parameters[0].name: is empty"),
    ("grid double without step", spec([double("lr", 0, 1)], algorithm="grid"), 'spec.parameters[0] ("lr").feasibleSpace.step: is missing'),
]


@pytest.fixture(scope="module")
def client():
    from katib_services.services import suggestion

    from .conftest import Client

    server = suggestion.start("random", "127.0.0.1:0")
    yield Client(server.address)
    server.shutdown(grace=1)


@pytest.mark.parametrize("rpc", ["ValidateAlgorithmSettings", "GetSuggestions"])
@pytest.mark.parametrize("case,experiment_spec,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_invalid_argument(client, rpc, case, experiment_spec, expected):
    experiment = experiment_pb("bad", experiment_spec)
    call = client.validate if rpc == "ValidateAlgorithmSettings" else client.suggest
    with pytest.raises(grpc.RpcError) as caught:
        call(experiment)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in caught.value.details()
    health = health_pb2_grpc.HealthStub(client.channel)
    assert health.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.SERVING


def test_every_problem_is_reported_at_once(client):
    experiment = experiment_pb("bad", spec([double("a", 2, 1), double("a", 0, 1, step=0)], metric="", settings={"x": 1}))
    with pytest.raises(grpc.RpcError) as caught:
        client.validate(experiment)
    details = caught.value.details()
    for expected in (
        'spec.parameters[0] ("a").feasibleSpace.min',
        'spec.parameters[1] ("a").name',
        'spec.parameters[1] ("a").feasibleSpace.step',
        "spec.objective.objectiveMetricName",
        'unknown setting "x"',
    ):
        assert expected in details


def test_valid_experiment_passes(client):
    client.validate(experiment_pb("good", spec(GOOD, settings={"random_state": 7})))
    client.validate(experiment_pb("good", spec([double("lr", "0.1", "0.5", step="0.1")], algorithm="grid")))


def test_negative_request_number_is_invalid(client):
    with pytest.raises(grpc.RpcError) as caught:
        client.suggest(experiment_pb("good", spec(GOOD)), count=-1)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "current_request_number" in caught.value.details()
