"""Prometheus metrics (--metrics-port) and JSON logs (--log-format json), from servers run as
processes, read the way Prometheus and a log shipper read them."""

import json
import re
import signal
import time
import urllib.request
from datetime import datetime

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from katib_services.services import metrics
from katib_services.services.client import ServerProcess, trial_pb
from katib_services.services.pb import api_pb2_grpc

from .conftest import Client, double, experiment
from .test_tls import report_logs, rules_request


def started(argv, tmp_path, name):
    """A server process logging to a file; (server, log path)."""
    path = tmp_path / f"{name}.log"
    with open(path, "w") as log:
        return ServerProcess(argv, stderr=log), path


def metrics_port(log_path) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"metrics on :(\d+)/metrics", log_path.read_text())
        if found:
            return int(found.group(1))
        time.sleep(0.05)
    raise AssertionError("the server did not log its metrics port")


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample of the server's /metrics: (name, labels) -> value; and (family, None) -> 0
    for every metric family announced."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        samples[(family.name, None)] = 0
        samples.update(((s.name, frozenset(s.labels.items())), s.value) for s in family.samples)
    return samples


def value(samples, name, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_suggestion_metrics(tmp_path):
    argv = ["katib_services.services.suggestion", "--algorithm", "random", "--metrics-port", "0"]
    server, log = started(argv, tmp_path, "suggestion")
    with server:
        client = Client(server.address)
        trials = [trial_pb(f"t{i}", {"x": str(i / 10)}, "Succeeded", {"accuracy": i}) for i in range(3)]
        for _ in range(2):
            client.suggest(experiment([double("x", 0, 1)]), trials)
        client.validate(experiment([double("x", 0, 1)]))
        with pytest.raises(grpc.RpcError):
            client.suggest(experiment([double("x", 0, 1)], algorithm="no-such-algorithm"))
        samples = scrape(metrics_port(log))
    calls = {"service": "Suggestion", "rpc": "GetSuggestions", "algorithm": "random"}
    assert value(samples, "katib_rpc_calls_total", **calls, code="OK") == 2
    assert value(samples, "katib_rpc_calls_total", service="Suggestion", rpc="ValidateAlgorithmSettings", algorithm="random", code="OK") == 1
    unknown = {"service": "Suggestion", "rpc": "GetSuggestions", "algorithm": "", "code": "INVALID_ARGUMENT"}
    assert value(samples, "katib_rpc_errors_total", **unknown) == 1  # the request's name is not a label value
    assert ("katib_rpc_errors_total", frozenset({**calls, "code": "OK"}.items())) not in samples
    assert value(samples, "katib_rpc_duration_seconds_count", **calls) == 2
    assert value(samples, "katib_suggestion_trials_sum", algorithm="random") == 6
    assert value(samples, "katib_suggestion_trials_count", algorithm="random") == 2
    assert value(samples, "katib_state_store_entries") >= 1 and value(samples, "katib_state_store_bytes") > 0
    assert value(samples, "katib_rpc_in_flight") == 0
    for name, *_ in metrics.METRICS:
        assert (name.removesuffix("_total"), None) in samples, name  # every documented metric is served


def test_early_stopping_db_manager_latency(tmp_path):
    db, _ = started(["katib_services.services.dbmanager", "--db", str(tmp_path / "db.sqlite")], tmp_path, "db")
    es, log = started(["katib_services.services.earlystopping", "--algorithm", "medianstop", "--metrics-port", "0"], tmp_path, "es")
    with db, es:
        report_logs(db.channel, 4)
        api_pb2_grpc.EarlyStoppingStub(es.channel).GetEarlyStoppingRules(rules_request(db.address, 4), timeout=60)
        samples = scrape(metrics_port(log))
    assert value(samples, "katib_dbmanager_call_duration_seconds_count", code="OK") == 4
    assert value(samples, "katib_rpc_calls_total", service="EarlyStopping", rpc="GetEarlyStoppingRules", algorithm="medianstop", code="OK") == 1


def test_json_logs_one_object_per_line(tmp_path):
    argv = ["katib_services.services.suggestion", "--algorithm", "random", "--log-format", "json"]
    server, log = started(argv, tmp_path, "json")
    client = Client(server.address)
    client.suggest(experiment([double("x", 0, 1)], name="my-experiment"))
    with pytest.raises(grpc.RpcError):
        client.suggest(experiment([double("x", 1, 0)], name="bad-experiment"))
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(10) == 0
    server.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # every line is one JSON object
    for entry in lines:
        assert {"time", "level", "experiment", "rpc", "code", "duration_ms", "message"} <= entry.keys()
        datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    (ok,) = [e for e in lines if e["experiment"] == "my-experiment"]
    assert ok["rpc"] == "GetSuggestions" and ok["code"] == "OK" and ok["level"] == "INFO"
    assert ok["duration_ms"] > 0 and "random: 1 assignment(s) for 0 trial(s)" in ok["message"]
    (bad,) = [e for e in lines if e["experiment"] == "bad-experiment"]
    assert bad["code"] == "INVALID_ARGUMENT" and bad["level"] == "WARNING" and "min" in bad["message"]
    assert any("SIGTERM received" in e["message"] and e["rpc"] is None for e in lines)


def test_an_experiment_name_cannot_forge_a_text_log_line(tmp_path):
    server, log = started(["katib_services.services.suggestion", "--algorithm", "random"], tmp_path, "text")
    forged = "x\n2026-12-01 00:00:00 INFO forged"
    with pytest.raises(grpc.RpcError):  # not a Kubernetes name, but the call's log line names it first
        Client(server.address).suggest(experiment([double("x", 1, 0)], name=forged))
    server.stop()
    text = log.read_text()
    assert "INFO forged" in text and not any(line.startswith("2026-12-01 00:00:00 INFO forged") for line in text.splitlines())
    assert "x\\x0a2026-12-01" in text, text


def test_calls_refused_while_draining_are_counted(tmp_path):
    """After SIGTERM a new call is refused UNAVAILABLE, and the refusal is in the metrics."""
    from .test_shutdown import SlowCall

    argv = ["tests.plugins", "--algorithm", "random", "--grace", "20", "--metrics-port", "0"]
    server, log = started(argv, tmp_path, "draining")
    with server:
        slow = SlowCall(server, tmp_path, seconds=2.0)
        port = metrics_port(log)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        with pytest.raises(grpc.RpcError) as refused:
            Client(server.address).suggest(experiment([double("x", 0, 1)]))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        samples = scrape(port)
        slow.thread.join(30)
    refusal = {"service": "Suggestion", "rpc": "GetSuggestions", "algorithm": "", "code": "UNAVAILABLE"}
    assert value(samples, "katib_rpc_calls_total", **refusal) == 1
    assert value(samples, "katib_rpc_errors_total", **refusal) == 1
