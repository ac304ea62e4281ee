"""The server bootstrap: health, reflection, error mapping, size limits, logging, SIGTERM drain, CLI."""

import gc
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from katib_services.algorithms import registry
from katib_services.services import convert
from katib_services.services.client import ServerProcess, trial_pb
from katib_services.services.pb import api_pb2, api_pb2_grpc
from katib_services.statestore import StateStore

from . import plugins
from .conftest import MIXED, Client, double, experiment, integer

SERVING = health_pb2.HealthCheckResponse.SERVING


def health_status(channel, service):
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=60).status


@pytest.fixture
def test_algorithms():
    registry.register("test-blocking", "tests.plugins:Blocking")
    registry.register("test-crashing", "tests.plugins:Crashing")
    yield
    for name in ("test-blocking", "test-crashing"):
        registry._LOCATIONS.pop(name)
        registry._loaded.pop(name, None)


def test_health_answers_serving_for_katib_names(serve):
    client = serve("random")
    for name in ("", "manager.v1beta1.Suggestion", "api.v1.beta1.Suggestion"):
        assert health_status(client.channel, name) == SERVING, name
    with pytest.raises(grpc.RpcError) as caught:
        health_status(client.channel, "no.such.Service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(serve):
    client = serve("random")
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"api.v1.beta1.Suggestion", "grpc.health.v1.Health"} <= names
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="api.v1.beta1.Suggestion")
    (response,) = stub.ServerReflectionInfo(iter([request]))
    assert response.file_descriptor_response.file_descriptor_proto  # grpcurl can describe the API


def test_unexpected_error_is_internal_and_server_stays_up(serve, test_algorithms):
    client = serve("random")
    exp = experiment([double("x", 0, 1)], algorithm="test-crashing")
    with pytest.raises(grpc.RpcError) as caught:
        client.suggest(exp)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "ZeroDivisionError" in caught.value.details()
    assert health_status(client.channel, "") == SERVING
    assert len(client.suggest(experiment([double("x", 0, 1)]), count=2).parameter_assignments) == 2


def test_empty_algorithm_name_uses_the_served_algorithm(serve):
    client = serve("grid")
    exp = experiment([integer("a", 1, 3)], algorithm="", maxTrialCount=3)
    values = sorted(item.assignments[0].value for item in client.suggest(exp, count=3).parameter_assignments)
    assert values == ["1", "2", "3"]
    with pytest.raises(grpc.RpcError):
        client.suggest(exp, count=4)  # grid semantics: only 3 points


def test_shutdown_drains_calls_in_flight(serve, test_algorithms):
    client = serve("random")
    server = serve.servers[0]
    plugins.release.clear()
    plugins.entered.clear()
    result = {}

    def call():
        result["reply"] = client.suggest(experiment([double("x", 0, 1)], algorithm="test-blocking"), count=2)

    caller = threading.Thread(target=call)
    caller.start()
    assert plugins.entered.wait(5)
    stopper = threading.Thread(target=server.shutdown, args=(10,))
    stopper.start()
    time.sleep(0.3)
    assert server.health._server_status[""] == health_pb2.HealthCheckResponse.NOT_SERVING
    assert caller.is_alive() and stopper.is_alive(), "the call in flight must be waited for"
    plugins.release.set()
    caller.join(5)
    stopper.join(5)
    assert len(result["reply"].parameter_assignments) == 2
    with pytest.raises(grpc.RpcError) as caught:
        client.suggest(experiment([double("x", 0, 1)]))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def big_request_trials(n):
    """n trials of about 700 bytes each: 10,000 of them exceed gRPC's default 4 MiB limit."""
    return [trial_pb(f"trial-{i:05d}", {"x": str(i / n), "pad": "p" * 600}, "Succeeded", {"accuracy": i}) for i in range(n)]


def test_ten_thousand_trials_fit_the_default_limit(serve):
    client = serve("random")
    trials = big_request_trials(10_000)
    assert api_pb2.GetSuggestionsRequest(trials=trials).ByteSize() > 4 * 1024 * 1024
    reply = client.suggest(experiment([double("x", 0, 1)]), trials, count=3)
    assert len(reply.parameter_assignments) == 3


WIDE = [double(f"x{j}", 0, 1) for j in range(30)]


@pytest.mark.parametrize(
    "space, assignment",
    [
        ([double("x", 0, 1)], lambda i: {"x": f"0.{i:05d}"}),
        (MIXED, lambda i: {"lr": f"0.{i:05d}", "layers": str(1 + i % 8), "dropout": "0.25", "optimizer": "adam", "batch": "32"}),
        (WIDE, lambda i: {f"x{j}": f"0.{(31 * i + j) % 100_000:05d}" for j in range(30)}),
    ],
    ids=["1 parameter", "5 of every type", "30 parameters"],
)
def test_the_trial_cache_estimate_matches_its_memory(space, assignment):
    """TrialCache counts TRIAL_OVERHEAD + PARAMETER_OVERHEAD per parameter + 3 x wire size per
    trial: within a factor 1.5 of what the cache keeps, as traced, from 1 to 30 parameters."""
    pb = experiment(space)
    exp = convert.experiment(pb)
    store = StateStore()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        blobs = [
            trial_pb(
                f"exp-{i:05d}",
                assignment(i),
                "Succeeded",
                {"accuracy": f"0.{i:04d}"},
                {"label": "value"},
            ).SerializeToString()
            for i in range(1, 1001)
        ]
        convert.TrialCache(store.view("trials")).trials(exp, pb, blobs)
        del blobs
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    estimated = store.stats()[1]
    assert kept / 1.5 <= estimated <= kept * 1.5, (estimated, kept)


def test_receive_limit_is_configurable(serve):
    client = serve("random", max_message_mb=1)
    with pytest.raises(grpc.RpcError) as caught:
        client.suggest(experiment([double("x", 0, 1)]), big_request_trials(10_000))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_sigterm_sets_not_serving_drains_and_exits(tmp_path):
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        server = ServerProcess(["katib_services.services.suggestion", "--algorithm", "random"], stderr=log)
    client = Client(server.address)
    client.suggest(experiment([double("x", 0, 1)], name="my-experiment"))
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(10) == 0
    text = log_path.read_text()
    assert "[my-experiment]" in text and "random: 1 assignment(s) for 0 trial(s)" in text
    assert "SIGTERM received" in text


def test_module_entry_point_and_console_script():
    with ServerProcess(["katib_services.services.suggestion", "--algorithm", "grid"]) as server:
        assert health_status(server.channel, "manager.v1beta1.Suggestion") == SERVING
    unknown = subprocess.run(
        [sys.executable, "-m", "katib_services.services.suggestion", "--algorithm", "nope"], capture_output=True, text=True
    )
    assert unknown.returncode == 2 and "invalid choice: 'nope'" in unknown.stderr
    script = shutil.which("katib-suggestion")
    assert script, "katib-suggestion is not installed: run pip install ."
    usage = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "--algorithm" in usage.stdout and "0.0.0.0:6789" in usage.stdout


@pytest.mark.parametrize("payload", [b"\x12\x05abc", b"\x0a\xff", b"\x12\x03\x0a\x01"])
def test_malformed_request_bytes_are_invalid_argument(serve, payload):
    client = serve("random")
    call = client.channel.unary_unary("/api.v1.beta1.Suggestion/GetSuggestions")
    with pytest.raises(grpc.RpcError) as caught:
        call(payload, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid" in caught.value.details()
    assert health_status(client.channel, "") == SERVING


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("algorithm", ["tpe", "multivariate-tpe", "bayesianoptimization"])
def test_work_stops_when_the_caller_is_gone(algorithm):
    """Calls that would compute for many seconds stop within about a second of their deadline."""
    space = [double(f"x{i}", 0, 1) for i in range(6)]
    rng = random.Random(0)
    trials = [
        trial_pb(f"t{i:04d}", {f"x{j}": repr(rng.random()) for j in range(6)}, "Succeeded", {"accuracy": rng.random()})
        for i in range(1000)
    ]
    with ServerProcess(["katib_services.services.suggestion", "--algorithm", algorithm]) as server:
        stub = api_pb2_grpc.SuggestionStub(server.channel)
        # The algorithm's module loads in the background after SERVING; validation waits for it.
        stub.ValidateAlgorithmSettings(api_pb2.ValidateAlgorithmSettingsRequest(experiment=experiment(space, algorithm=algorithm)), timeout=60)
        # Six experiments' calls of 1000 suggestions at 1000 trials: uncancelled, they compute for
        # 20 s or more of CPU on two cores (bayesianoptimization about 3 s each, the tpes 20 s or more).
        calls = [
            stub.GetSuggestions.future(
                api_pb2.GetSuggestionsRequest(experiment=experiment(space, algorithm=algorithm, name=f"e{k}"), trials=trials, current_request_number=1000),
                timeout=1.0,
            )
            for k in range(6)
        ]
        for call in calls:
            # The client's own deadline, or the server's CANCELLED when it notices the deadline first.
            assert call.exception(timeout=30).code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
        # The server must go quiet (a second with under 0.2 s of CPU) within 6 s; the loop gives a
        # loaded machine slack without timing anything.
        for _ in range(6):
            before = cpu_seconds(server.process.pid)
            time.sleep(1.0)
            if cpu_seconds(server.process.pid) - before < 0.2:
                break
        else:
            pytest.fail("the server kept computing after its callers left")
        assert health_status(server.channel, "") == SERVING


def test_a_call_in_progress_does_not_hold_up_other_experiments(serve, test_algorithms):
    """Requests of different experiments share no lock: while one experiment's call is held inside
    its algorithm, other experiments (of the same and of other algorithms) are answered."""
    client = serve("random")
    plugins.release.clear()
    plugins.entered.clear()
    held = threading.Thread(target=client.suggest, args=(experiment([double("x", 0, 1)], name="held", algorithm="test-blocking"),))
    held.start()
    try:
        assert plugins.entered.wait(5)
        for name, algorithm in (("other", "random"), ("third", "grid"), ("fourth", "test-crashing")):
            exp = experiment([integer("a", 1, 9)], name=name, algorithm=algorithm, maxTrialCount=9)
            try:
                assert len(client.suggest(exp, count=2).parameter_assignments) == 2
            except grpc.RpcError as error:
                assert algorithm == "test-crashing" and error.code() == grpc.StatusCode.INTERNAL
        assert held.is_alive(), "the held call must still be in progress"
    finally:
        plugins.release.set()
        held.join(10)
