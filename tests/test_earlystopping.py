"""The early-stopping service over real gRPC, reading a real SQLite DB manager."""

import statistics

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from katib_services.services import dbmanager, earlystopping
from katib_services.services.client import experiment_pb, trial_pb
from katib_services.services.pb import api_pb2, api_pb2_grpc


class Service:
    def __init__(self, server):
        self.server = server
        self.channel = grpc.insecure_channel(server.address)
        self.stub = api_pb2_grpc.EarlyStoppingStub(self.channel)


@pytest.fixture
def db(tmp_path):
    server = dbmanager.start(str(tmp_path / "obs.db"), "127.0.0.1:0")
    yield server
    server.shutdown(grace=1)


@pytest.fixture
def es():
    servers = []

    def start(algorithm="medianstop"):
        server = earlystopping.start(algorithm, "127.0.0.1:0")
        servers.append(server)
        return Service(server)

    yield start
    for server in servers:
        server.shutdown(grace=1)


def report(db, trial, values, metric="accuracy", seconds=None):
    """Reports one value per second; `seconds` may reorder the time stamps."""
    stub = api_pb2_grpc.DBManagerStub(grpc.insecure_channel(db.address))
    request = api_pb2.ReportObservationLogRequest(trial_name=trial)
    for i, value in enumerate(values):
        second = seconds[i] if seconds else i
        request.observation_log.metric_logs.add(
            time_stamp=f"2026-11-28T10:00:{second:02d}Z", metric=api_pb2.Metric(name=metric, value=str(value))
        )
    stub.ReportObservationLog(request, timeout=60)


def spec(algorithm="medianstop", objective="maximize", **settings):
    return {
        "parameters": [{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.1"}}],
        "objective": {"type": objective, "objectiveMetricName": "accuracy"},
        "algorithm": {"algorithmName": "random"},
        "earlyStopping": {
            "algorithmName": algorithm,
            "algorithmSettings": [{"name": k, "value": str(v)} for k, v in settings.items()],
        },
    }


def rules(service, db_address, trial_names, name="exp", conditions=None, timeout=60, **kwargs):
    trials = [
        trial_pb(t, {"lr": "0.05"}, (conditions or {}).get(t, "Succeeded"), {"accuracy": "0.5"}) for t in trial_names
    ]
    request = api_pb2.GetEarlyStoppingRulesRequest(
        experiment=experiment_pb(name, spec(**kwargs)), trials=trials, db_manager_address=db_address
    )
    return list(service.stub.GetEarlyStoppingRules(request, timeout=timeout).early_stopping_rules)


def test_median_of_early_means_not_their_mean(db, es):
    service = es()
    report(db, "t1", [0.1, 0.2, 0.3, 0.4, 0.9, 0.9])  # first 4: mean 0.25 (later values ignored)
    report(db, "t2", [0.5, 0.5, 0.5, 0.5])  # 0.5
    report(db, "t3", [0.9, 0.95, 0.97, 0.98])  # 0.95
    (rule,) = rules(service, db.address, ["t1", "t2", "t3"])
    assert (rule.name, rule.comparison, rule.start_step) == ("accuracy", api_pb2.LESS, 4)
    assert float(rule.value) == pytest.approx(0.5)  # the median; Katib's mean would say 0.5667


def test_even_count_ties_missing_and_bad_values(db, es):
    service = es()
    report(db, "a", [0.2, 0.4])  # fewer than start_step values: mean of what there is, 0.3
    report(db, "b", [0.6, "nan", "unavailable", 0.8, 0.7])  # bad values skipped: 0.6, 0.8, 0.7 -> 0.7
    report(db, "c", [0.7, 0.7, 0.7, 0.7])  # a tie with b
    report(db, "d", [0.1, 0.9, 0.5, 0.5], seconds=[3, 0, 1, 2])  # time order: 0.9, 0.5, 0.5, 0.1 -> 0.5
    # "e" has no log at all: it contributes nothing (Katib divides by zero here).
    (rule,) = rules(service, db.address, ["a", "b", "c", "d", "e"], start_step=3)
    means = [0.3, 0.7, 0.7, (0.9 + 0.5 + 0.5) / 3]
    assert float(rule.value) == pytest.approx(statistics.median(means))  # even count: mean of the middle two
    assert rule.start_step == 3


def test_minimize_compares_greater(db, es):
    service = es()
    for name, values in {"x": [3, 2, 1, 1], "y": [5, 5, 5, 5], "z": [1, 1, 1, 1]}.items():
        report(db, name, values, metric="accuracy")
    (rule,) = rules(service, db.address, ["x", "y", "z"], objective="minimize")
    assert rule.comparison == api_pb2.GREATER and float(rule.value) == pytest.approx(1.75)


def test_min_trials_required_gates_the_rule(db, es):
    service = es()
    for name in ("p", "q", "r"):
        report(db, name, [0.5, 0.6])
    assert rules(service, db.address, ["p", "q"], min_trials_required=3) == []
    assert rules(service, db.address, ["p", "q", "r", "running"], conditions={"running": "Running"}, min_trials_required=3)
    # trials that are not SUCCEEDED never count, even with logs
    report(db, "killed", [0.9])
    assert rules(service, db.address, ["p", "killed"], conditions={"killed": "Killed"}, min_trials_required=2) == []


def test_cache_across_calls_and_restart(db, es, tmp_path):
    service = es()
    for name, values in {"t1": [0.1], "t2": [0.2], "t3": [0.3]}.items():
        report(db, name, values)
    first = rules(service, db.address, ["t1", "t2", "t3"])
    db.shutdown(grace=1)  # the DB manager is gone: cached means still answer
    assert rules(service, db.address, ["t1", "t2", "t3"]) == first
    with pytest.raises(grpc.RpcError) as caught:
        rules(service, db.address, ["t1", "t2", "t3", "t4"])  # a new trial needs the DB manager
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "t4" in caught.value.details()
    restarted_db = dbmanager.start(str(tmp_path / "obs.db"), "127.0.0.1:0")
    try:
        again = es()  # a restarted service recomputes the same rule from the DB
        assert rules(again, restarted_db.address, ["t1", "t2", "t3"]) == first
    finally:
        restarted_db.shutdown(grace=1)


def test_unreachable_and_malformed_db_manager_address(es):
    service = es()
    with pytest.raises(grpc.RpcError) as caught:
        rules(service, "127.0.0.1:1", ["t1"])
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    for bad in ("", "nohost", "host:port", "host:70000"):
        with pytest.raises(grpc.RpcError) as caught:
            rules(service, bad, ["t1"])
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "db_manager_address" in caught.value.details()


def test_percentile_rule(db, es):
    service = es("percentilestop")
    for i, name in enumerate(["a", "b", "c", "d", "e"]):
        report(db, name, [0.1 * (i + 1)] * 4)  # means 0.1 .. 0.5
    (keep_best_quarter,) = rules(service, db.address, list("abcde"), algorithm="percentilestop", percentile=25)
    assert float(keep_best_quarter.value) == pytest.approx(0.4)  # maximize: a quarter of the way from the best
    (gentle,) = rules(service, db.address, list("abcde"), algorithm="percentilestop", percentile=75, name="other")
    assert float(gentle.value) == pytest.approx(0.2)
    (minimizing,) = rules(service, db.address, list("abcde"), algorithm="percentilestop", percentile=25, objective="minimize", name="m")
    assert float(minimizing.value) == pytest.approx(0.2) and minimizing.comparison == api_pb2.GREATER
    (median,) = rules(service, db.address, list("abcde"), algorithm="percentilestop", percentile=50, name="n")
    assert float(median.value) == pytest.approx(0.3)


@pytest.mark.parametrize(
    "early_stopping,expected",
    [
        ({"algorithmName": "nope"}, 'spec.earlyStopping.algorithmName: unknown early-stopping algorithm "nope"'),
        ({}, "spec.earlyStopping.algorithmName: is empty"),
        ({"algorithmName": "medianstop", "algorithmSettings": [{"name": "foo", "value": "1"}]}, 'unknown setting "foo" for algorithm medianstop'),
        (
            {"algorithmName": "medianstop", "algorithmSettings": [{"name": "min_trials_required", "value": "0"}]},
            'spec.earlyStopping.algorithmSettings["min_trials_required"]: 0 is out of range; it must be in [1, 100,000]',
        ),
        (
            {"algorithmName": "medianstop", "algorithmSettings": [{"name": "start_step", "value": "2.5"}]},
            'spec.earlyStopping.algorithmSettings["start_step"]: "2.5" is not an integer',
        ),
        (
            {"algorithmName": "percentilestop", "algorithmSettings": [{"name": "percentile", "value": "100"}]},
            'spec.earlyStopping.algorithmSettings["percentile"]: 100 is out of range; it must be in (0, 100)',
        ),
    ],
)
def test_validation(es, early_stopping, expected):
    service = es()
    request = api_pb2.ValidateEarlyStoppingSettingsRequest(early_stopping=experiment_pb("e", {"earlyStopping": early_stopping or {"algorithmName": ""}}).spec.early_stopping)
    with pytest.raises(grpc.RpcError) as caught:
        service.stub.ValidateEarlyStoppingSettings(request, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in caught.value.details()
    good = experiment_pb("e", {"earlyStopping": {"algorithmName": "medianstop", "algorithmSettings": [{"name": "start_step", "value": "2"}]}})
    service.stub.ValidateEarlyStoppingSettings(api_pb2.ValidateEarlyStoppingSettingsRequest(early_stopping=good.spec.early_stopping))


def test_set_trial_status_without_kubernetes_succeeds(es, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    service = es()
    service.stub.SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name="t1"), timeout=30)
    with pytest.raises(grpc.RpcError) as caught:
        service.stub.SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name=""), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_and_cli_default_port(es):
    service = es()
    stub = health_pb2_grpc.HealthStub(service.channel)
    for name in ("", "api.v1.beta1.EarlyStopping", "manager.v1beta1.Suggestion"):
        assert stub.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING
    assert earlystopping.DEFAULT_ADDRESS == "0.0.0.0:6788"


# -- hostile and unlucky requests ---------------------------------------------------------------------


def test_a_trial_with_200000_logs_is_read_past_the_default_4_mib(db, es):
    service = es()
    stub = api_pb2_grpc.DBManagerStub(grpc.insecure_channel(db.address))
    request = api_pb2.ReportObservationLogRequest(trial_name="long")
    for i in range(200_000):
        request.observation_log.metric_logs.add(time_stamp=f"2026-11-28T10:00:00.{i:06d}Z", metric=api_pb2.Metric(name="accuracy", value="0.5"))
    assert request.ByteSize() > 4 << 20
    stub.ReportObservationLog(request, timeout=60)
    report(db, "short", [0.7] * 4)
    (rule,) = rules(service, db.address, ["long", "short"], min_trials_required=2, timeout=60)  # a slow read, on a loaded machine
    assert float(rule.value) == pytest.approx(0.6)


@pytest.mark.parametrize("address", ["127.0.0.1:٣٣", "\x00:1", "host:+80", "[::1]:0", "a b:80", "-host:80", "host:6789\n"])
def test_addresses_must_be_ascii_host_and_port(es, address):
    with pytest.raises(grpc.RpcError) as caught:
        rules(es(), address, ["t1"])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "db_manager_address" in caught.value.details()


def test_a_succeeded_trial_without_a_name_is_invalid_argument(db, es):
    with pytest.raises(grpc.RpcError) as caught:
        rules(es(), db.address, ["t1", ""])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "trials[1].name: is empty" in caught.value.details()


def test_non_ascii_and_non_finite_metric_values_are_not_numbers(db, es):
    service = es()
    report(db, "a", ["٣", "٣", "0.2", "0.2"])  # Arabic-Indic digits are not a value
    report(db, "b", ["1e999", "0.4", "0x10", "0.4"])
    report(db, "c", ["0.6", "1_0", "0.6", "inf"])
    (rule,) = rules(service, db.address, ["a", "b", "c"], start_step=2)
    assert float(rule.value) == pytest.approx(0.4)  # the median of 0.2, 0.4, 0.6


@pytest.mark.parametrize(
    "settings,field",
    [({"start_step": 2**31}, "start_step"), ({"min_trials_required": "9" * 401}, "min_trials_required"), ({"start_step": "٤"}, "start_step")],
)
def test_rules_refuse_out_of_range_settings(db, es, settings, field):
    with pytest.raises(grpc.RpcError) as caught:
        rules(es(), db.address, ["t1"], **settings)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f'spec.earlyStopping.algorithmSettings["{field}"]' in caught.value.details()


def test_db_manager_channels_are_bounded(db):
    from katib_services.services.server import Server

    servicer = earlystopping.EarlyStoppingServicer()
    server = Server("127.0.0.1:0", [(servicer, "EarlyStopping")])
    try:
        service = Service(server)
        report(db, "t1", [0.5])
        for port in range(1, 9):  # nothing listens there: UNAVAILABLE, and one channel each
            with pytest.raises(grpc.RpcError):
                rules(service, f"127.0.0.1:{port}", ["t1"], name=f"e{port}")
        assert len(servicer.channels) == earlystopping.DB_CHANNELS
        assert rules(service, db.address, ["t1"], min_trials_required=1)
    finally:
        server.shutdown(grace=1)


def test_set_trial_status_in_a_pod_without_credentials_is_unavailable(es, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    service = es()
    for _ in range(2):  # and again: the failure is not cached as "no cluster"
        with pytest.raises(grpc.RpcError) as caught:
            service.stub.SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name="t1"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no usable Kubernetes credentials" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        service.stub.SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name="../etc/passwd"), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_means_read_before_a_failed_read_are_kept():
    """The cache of early means keeps what a call read even when a later read fails (or the call is
    cancelled), so that a retry reads only the rest."""
    from katib_services.earlystopping.logs import EarlyMeans, DBUnavailable
    from katib_services.statestore import StateStore

    means = EarlyMeans(StateStore().view("early-means"))
    reads, failed = [], []

    def reader(name, metric):
        reads.append(name)
        if name == "t3" and not failed:
            failed.append(name)
            raise DBUnavailable("the DB manager is gone")
        return [("2026-11-28T10:00:00Z", "0.5")] * 4

    names = [f"t{i}" for i in range(6)]
    with pytest.raises(DBUnavailable):
        means.means("key", reader, names, "accuracy", 4)
    reads.clear()
    assert means.means("key", reader, names, "accuracy", 4) == [0.5] * 6
    assert sorted(reads) == ["t3", "t4", "t5"], "the means before the failed read were kept"
