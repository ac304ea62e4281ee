"""The servers write nothing outside their data directory (the images run with a read-only root
filesystem): every server, run as its image runs it (no bytecode writing), serves every
algorithm (pbt's checkpoint directories go to --data-dir), rule, metrics and logs under an audit
hook that reports any other write."""

import signal
import urllib.request

import grpc
import pytest

from katib_services.algorithms import registry
from katib_services.services.client import ServerProcess, trial_pb
from katib_services.services.pb import api_pb2, api_pb2_grpc

from .conftest import MIXED, NAS, Client, experiment, nas_experiment, operation
from .test_observability import metrics_port
from .test_tls import report_logs, rules_request


SETTINGS = {
    "bayesianoptimization": {"base_estimator": "RF"},  # scikit-learn too
    "hyperband": {"resource_name": "layers", "r_l": 9, "sampler": "tpe"},
    "asha": {"resource_name": "layers", "max_resource": 9, "sampler": "tpe"},
    "pbt": {"suggestion_trial_dir": "/var/log/katib/checkpoints/", "n_population": 5, "truncation_threshold": 0.2},  # writes checkpoint directories in --data-dir
}


def audited(tmp_path, name, argv):
    log = tmp_path / f"{name}.log"
    with open(log, "w") as stderr:
        server = ServerProcess(["tests.audit_writes", str(tmp_path / "writes.txt"), str(tmp_path / "data"), *argv], stderr=stderr)
    return server, log


def test_servers_write_nothing_outside_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # as the images set it: their bytecode is compiled at build time
    monkeypatch.setenv("HOME", str(tmp_path / "no-home"))
    (tmp_path / "data").mkdir()
    common = ["--metrics-port", "0", "--log-format", "json"]
    suggestion, suggestion_log = audited(
        tmp_path, "suggestion", ["katib_services.services.suggestion", "--algorithm", "random", "--data-dir", str(tmp_path / "data"), *common]
    )
    db, _ = audited(tmp_path, "db", ["katib_services.services.dbmanager", "--db", str(tmp_path / "data" / "obs.db"), *common])
    es, _ = audited(tmp_path, "es", ["katib_services.services.earlystopping", "--algorithm", "medianstop", *common])
    servers = [suggestion, db, es]
    try:
        client = Client(suggestion.address)
        trials = [trial_pb(f"t{i}", {"layers": str(i % 8 + 1), "dropout": "0.1", "optimizer": "adam", "batch": "32"}, "Succeeded", {"accuracy": i / 20}) for i in range(20)]
        for algorithm in registry.names():
            settings = SETTINGS.get(algorithm)
            if algorithm in NAS:
                darts = [operation("separable_convolution", filter_size=["3", "5"]), {"operationType": "skip_connection"}]
                exp, used = nas_experiment(algorithm, settings=settings, operations=darts if algorithm == "darts" else None), []
            else:
                exp, used = experiment(MIXED[1:], algorithm=algorithm, settings=settings, maxTrialCount=100), trials
            reply = client.suggest(exp, used, count=1 if algorithm == "darts" else 2)
            assert len(reply.parameter_assignments) == (1 if algorithm == "darts" else 2), algorithm
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port(suggestion_log)}/metrics", timeout=60).read()
        report_logs(db.channel, 4)
        stub = api_pb2_grpc.EarlyStoppingStub(es.channel)
        assert stub.GetEarlyStoppingRules(rules_request(db.address, 4), timeout=30).early_stopping_rules
        stub.SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name="t0"), timeout=30)
        with pytest.raises(grpc.RpcError):
            client.suggest(experiment(MIXED[1:], algorithm="no-such-algorithm"))
        for server in servers:
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(30) == 0
    finally:
        for server in servers:
            server.stop(timeout=5)
    writes = (tmp_path / "writes.txt").read_text() if (tmp_path / "writes.txt").exists() else ""
    assert writes == "", f"written outside the data directory:\n{writes}"
