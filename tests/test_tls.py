"""TLS and mutual TLS on every server and on the clients of the early-stopping service and
katib-local, with certificates made here. Plaintext stays the default."""

import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from katib_services.services import dbmanager, earlystopping, suggestion, tls
from katib_services.services.client import ServerProcess, experiment_pb, trial_pb
from katib_services.services.pb import api_pb2, api_pb2_grpc

from .certs import Authority
from .conftest import double, experiment
from .test_local import manifest, result, run

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def ca(tmp_path):
    return Authority(tmp_path / "ca")


@pytest.fixture
def servers():
    started = []
    yield started
    for server in started:
        server.shutdown(grace=0)


def health(channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=60).status


def suggest(channel) -> int:
    request = api_pb2.GetSuggestionsRequest(experiment=experiment([double("x", 0, 1)]), current_request_number=2, total_request_number=2)
    return len(api_pb2_grpc.SuggestionStub(channel).GetSuggestions(request, timeout=60).parameter_assignments)


def refused(channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        health(channel)
    return caught.value.code()


def test_tls_server_answers_tls_clients_only(ca, servers):
    server = suggestion.start("random", "127.0.0.1:0", tls=ca.server_tls())
    servers.append(server)
    with tls.channel(server.address, ca.client_tls()) as secure:
        assert health(secure) == SERVING  # health shares the port and its credentials
        assert suggest(secure) == 2
    with grpc.insecure_channel(server.address) as plain:
        assert refused(plain) == grpc.StatusCode.UNAVAILABLE
    stranger = Authority(ca.directory.parent / "other", "other-ca")
    with tls.channel(server.address, stranger.client_tls()) as untrusting:  # does not trust the server's CA
        assert refused(untrusting) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate_from_the_ca(ca, servers):
    server = suggestion.start("random", "127.0.0.1:0", tls=ca.server_tls(mutual=True))
    servers.append(server)
    with tls.channel(server.address, ca.client_tls(with_certificate=True)) as trusted:
        assert suggest(trusted) == 2
    with tls.channel(server.address, ca.client_tls()) as anonymous:
        assert refused(anonymous) == grpc.StatusCode.UNAVAILABLE
    stranger = Authority(ca.directory.parent / "other", "other-ca")
    with tls.channel(server.address, stranger.client_tls(with_certificate=True, trust=ca.ca)) as foreign:
        assert refused(foreign) == grpc.StatusCode.UNAVAILABLE


def test_plaintext_is_the_default():
    with ServerProcess(["katib_services.services.suggestion", "--algorithm", "random"]) as server:
        assert suggest(server.channel) == 2


@pytest.mark.parametrize(
    "module", [["katib_services.services.suggestion", "--algorithm", "random"], ["katib_services.services.earlystopping", "--algorithm", "medianstop"], ["katib_services.services.dbmanager"]]
)
def test_every_server_cli_serves_mutual_tls(ca, tmp_path, module):
    cert, key = ca.issue("server", server=True)
    extra = ["--db", str(tmp_path / "db.sqlite")] if module[0].endswith("dbmanager") else []
    argv = [*module, *extra, "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca.ca]
    with ServerProcess(argv, tls=ca.client_tls(with_certificate=True)) as server:  # waits for SERVING over mTLS
        assert health(server.channel) == SERVING
        with tls.channel(server.address, ca.client_tls()) as anonymous:
            assert refused(anonymous) == grpc.StatusCode.UNAVAILABLE


SUGGESTION = ["katib_services.services.suggestion", "--algorithm", "random"]
EARLY_STOPPING = ["katib_services.services.earlystopping", "--algorithm", "medianstop"]


@pytest.mark.parametrize(
    "server, flags, message",
    [
        (SUGGESTION, ["--tls-cert", "a.pem"], "--tls-cert and --tls-key go together"),
        (SUGGESTION, ["--tls-client-ca", "ca.pem"], "--tls-client-ca needs --tls-cert and --tls-key"),
        (SUGGESTION, ["--tls-cert", "/no/such.pem", "--tls-key", "/no/such.key"], "--tls-key /no/such.key"),
        (SUGGESTION, ["--tls-cert", __file__, "--tls-key", __file__], "not a PEM certificate chain and its key"),
        # The client side: the DB manager's CA is read at start, not at the first GetEarlyStoppingRules.
        (EARLY_STOPPING, ["--dbmanager-tls-ca", "/no/such.pem"], "--dbmanager-tls-ca /no/such.pem"),
        (EARLY_STOPPING, ["--dbmanager-tls-cert", "/no/such.pem"], "--dbmanager-tls-cert and --dbmanager-tls-key go together"),
        (SUGGESTION, ["--metrics-port", "70000"], "70000 is not a port"),
    ],
)
def test_bad_tls_flags_are_usage_errors(server, flags, message):
    done = subprocess.run(
        [sys.executable, "-m", *server, "--address", "127.0.0.1:0", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and message in done.stderr


def report_logs(channel, trials: int) -> None:
    stub = api_pb2_grpc.DBManagerStub(channel)
    for i in range(trials):
        logs = [api_pb2.MetricLog(time_stamp=f"2024-01-01T00:00:0{step}Z", metric=api_pb2.Metric(name="loss", value=str(i + step))) for step in range(4)]
        stub.ReportObservationLog(
            api_pb2.ReportObservationLogRequest(trial_name=f"t{i}", observation_log=api_pb2.ObservationLog(metric_logs=logs)), timeout=10
        )


def rules_request(db_address: str, trials: int) -> api_pb2.GetEarlyStoppingRulesRequest:
    """medianstop over the trials `report_logs` reported."""
    spec = {"objective": {"type": "minimize", "objectiveMetricName": "loss"}, "earlyStopping": {"algorithmName": "medianstop"}}
    return api_pb2.GetEarlyStoppingRulesRequest(
        experiment=experiment_pb("exp", spec),
        trials=[trial_pb(f"t{i}", {}, "Succeeded") for i in range(trials)],
        db_manager_address=db_address,
    )


def test_early_stopping_reads_a_mutual_tls_db_manager(ca, servers, tmp_path):
    db = dbmanager.start(str(tmp_path / "db.sqlite"), "127.0.0.1:0", tls=ca.server_tls(mutual=True))
    servers.append(db)
    with tls.channel(db.address, ca.client_tls(with_certificate=True)) as channel:
        report_logs(channel, 5)
    request = rules_request(db.address, 5)
    for client, expected in ((ca.client_tls(with_certificate=True, flag="--dbmanager-tls"), "rule"), (None, "UNAVAILABLE")):
        es = earlystopping.start("medianstop", "127.0.0.1:0", dbmanager_tls=client)
        servers.append(es)
        with grpc.insecure_channel(es.address) as channel:
            stub = api_pb2_grpc.EarlyStoppingStub(channel)
            if expected == "rule":
                (rule,) = stub.GetEarlyStoppingRules(request, timeout=60).early_stopping_rules
                assert float(rule.value) == 3.5  # the median of the trials' means (1.5 .. 5.5)
            else:
                with pytest.raises(grpc.RpcError) as caught:
                    stub.GetEarlyStoppingRules(request, timeout=60)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_katib_local_over_mutual_tls(ca, servers, tmp_path):
    server_tls = ca.server_tls(mutual=True)
    db = dbmanager.start(str(tmp_path / "db.sqlite"), "127.0.0.1:0", tls=server_tls)
    sg = suggestion.start("random", "127.0.0.1:0", tls=server_tls)
    servers.extend([db, sg])
    client = ca.client_tls(with_certificate=True)
    options = []
    for name, server in (("suggestion", sg), ("dbmanager", db)):
        options += [f"--{name}-address", server.address, f"--{name}-tls-ca", client.ca, f"--{name}-tls-cert", client.cert, f"--{name}-tls-key", client.key]
    code, workdir = run(tmp_path, manifest(maxTrialCount=2), *options)
    status, trials = result(workdir)
    assert code == 0 and len(trials) == 2 and all(t["condition"] == "Succeeded" for t in trials)
    (tmp_path / "plain").mkdir()
    code, _ = run(tmp_path / "plain", manifest(maxTrialCount=2), "--suggestion-address", sg.address, "--dbmanager-address", db.address)
    assert code != 0  # plaintext cannot reach TLS servers


def test_katib_local_tls_flags_need_an_address(tmp_path, capsys, ca):
    with pytest.raises(SystemExit) as exited:
        from katib_services.runner import cli

        cli.main(["run", str(tmp_path / "x.yaml"), "--dbmanager-tls-ca", ca.ca])
    assert exited.value.code == 2
    assert "--dbmanager-tls-* need --dbmanager-address" in capsys.readouterr().err
