"""The fuzz suite: hostile but well-formed messages and raw byte mutations, over every RPC of the
three servers (suggestion, early stopping, DB manager), each run as its own process.

Every answer: no UNKNOWN, no INTERNAL, no call still running at 30 s (a hang); every OK
GetSuggestions reply holds exactly current_request_number valid, different assignments; at the end
every server is healthy with a bounded peak RSS. CI runs the `ci` hypothesis profile (a few hundred cases per RPC, the same ones
every run); `python bench/fuzz.py` runs the `deep` profile (more than 10,000 cases) and also fails
on any call of 10 s or more (each call's time is recorded here; a timing is not a test assertion).
"""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_services.algorithms import registry
from katib_services.algorithms.limits import DEFAULT
from katib_services.services.client import ServerProcess, wait_serving
from katib_services.services.pb import api_pb2, api_pb2_grpc

from . import fuzzing
from .fuzzing import RECORDER, experiment, mutations, number_text, suggestion_request, trials

PEAK_RSS_MIB = {"suggestion": 700, "earlystopping": 300, "dbmanager": 300}
PER_ALGORITHM = max(10, settings.default.max_examples // 4)
PEAK_RSS: dict[str, float] = {}  # measured by the last test


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    db_path = tmp_path_factory.mktemp("fuzz") / "observations.db"
    data_dir = tmp_path_factory.mktemp("fuzz-data")  # pbt's checkpoint directories
    started = {
        "suggestion": ServerProcess(["katib_services.services.suggestion", "--algorithm", "random", "--data-dir", str(data_dir), "--log-level", "ERROR"]),
        "earlystopping": ServerProcess(["katib_services.services.earlystopping", "--algorithm", "medianstop", "--log-level", "ERROR"]),
        "dbmanager": ServerProcess(["katib_services.services.dbmanager", "--db", str(db_path), "--log-level", "ERROR"]),
    }
    db = api_pb2_grpc.DBManagerStub(started["dbmanager"].channel)
    for i in range(40):  # logs for the early-stopping cases to read
        request = api_pb2.ReportObservationLogRequest(trial_name=f"t{i:03d}")
        for step in range(5):
            request.observation_log.metric_logs.add(
                time_stamp=f"2026-11-28T10:00:0{step}Z", metric=api_pb2.Metric(name="loss", value=str((i % 7) / (step + 1)))
            )
        db.ReportObservationLog(request, timeout=60)
    yield started
    for server in started.values():
        server.stop()
    if fuzzing.REPORT:
        RECORDER.save(fuzzing.REPORT, {"peak_rss_mib": PEAK_RSS, "max_examples": settings.default.max_examples})


def stubs(servers):
    return (
        api_pb2_grpc.SuggestionStub(servers["suggestion"].channel),
        api_pb2_grpc.EarlyStoppingStub(servers["earlystopping"].channel),
        api_pb2_grpc.DBManagerStub(servers["dbmanager"].channel),
    )


def suggest(servers, request):
    suggestion, _, _ = stubs(servers)
    reply, code, details = RECORDER.call("GetSuggestions", suggestion.GetSuggestions, request, timeout=30)
    if code == grpc.StatusCode.OK:
        fuzzing.check_suggestions(request, reply, DEFAULT)
    return code


# -- Suggestion -----------------------------------------------------------------------------------------


@given(request=suggestion_request())
def test_get_suggestions(servers, request):
    suggest(servers, request)


@pytest.mark.parametrize("algorithm", registry.names())
@settings(max_examples=PER_ALGORITHM)
@given(data=st.data())
def test_get_suggestions_of_each_algorithm(servers, algorithm, data):
    suggest(servers, data.draw(suggestion_request(algorithm)))


@given(e=experiment(hostile=0.1))
def test_validate_algorithm_settings(servers, e):
    suggestion, _, _ = stubs(servers)
    _, code, _ = RECORDER.call(
        "ValidateAlgorithmSettings", suggestion.ValidateAlgorithmSettings, api_pb2.ValidateAlgorithmSettingsRequest(experiment=e), timeout=30
    )
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)


# -- EarlyStopping ----------------------------------------------------------------------------------------


@given(e=experiment(early_stopping=True), data=st.data())
def test_get_early_stopping_rules(servers, e, data):
    _, es, _ = stubs(servers)
    address = data.draw(st.sampled_from([servers["dbmanager"].address] * 4 + ["127.0.0.1:1", "", "127.0.0.1:٣٣", "\x00:1", "[::1]:0", "h" * 300 + ":1"]))
    request = api_pb2.GetEarlyStoppingRulesRequest(experiment=e, trials=data.draw(trials(e, 40)), db_manager_address=address)
    reply, code, _ = RECORDER.call("GetEarlyStoppingRules", es.GetEarlyStoppingRules, request, timeout=30)
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
    if code == grpc.StatusCode.OK:
        for rule in reply.early_stopping_rules:
            assert rule.comparison in (api_pb2.LESS, api_pb2.GREATER) and rule.start_step >= 1


@given(e=experiment(early_stopping=True, hostile=0.2))
def test_validate_early_stopping_settings(servers, e):
    _, es, _ = stubs(servers)
    request = api_pb2.ValidateEarlyStoppingSettingsRequest(early_stopping=e.spec.early_stopping)
    _, code, _ = RECORDER.call("ValidateEarlyStoppingSettings", es.ValidateEarlyStoppingSettings, request, timeout=30)
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)


@given(name=st.one_of(st.sampled_from(["t1", "", "a" * 300, "../x", "T1", "t.1", "-t"]), st.text(max_size=40)))
def test_set_trial_status(servers, name):
    _, es, _ = stubs(servers)
    _, code, _ = RECORDER.call("SetTrialStatus", es.SetTrialStatus, api_pb2.SetTrialStatusRequest(trial_name=name), timeout=30)
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)


# -- DBManager ----------------------------------------------------------------------------------------------

TIMES = st.one_of(
    st.sampled_from(["", "2026-11-28T10:00:00Z", "2026-11-28T10:00:00.123456789123+02:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "yesterday", "2026-13-45T99:99:99Z"]),
    st.text(max_size=30),
)


@given(name=st.text(max_size=20), metric=st.text(max_size=10), logs=st.lists(st.tuples(TIMES, number_text()), max_size=20), data=st.data())
def test_db_manager(servers, name, metric, logs, data):
    _, _, db = stubs(servers)
    request = api_pb2.ReportObservationLogRequest(trial_name=name)
    for stamp, value in logs:
        request.observation_log.metric_logs.add(time_stamp=stamp, metric=api_pb2.Metric(name=metric, value=value))
    _, code, _ = RECORDER.call("ReportObservationLog", db.ReportObservationLog, request, timeout=30)
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)
    get = api_pb2.GetObservationLogRequest(trial_name=name, metric_name=metric, start_time=data.draw(TIMES), end_time=data.draw(TIMES))
    reply, code, _ = RECORDER.call("GetObservationLog", db.GetObservationLog, get, timeout=30)
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)
    if data.draw(st.booleans()):
        _, code, _ = RECORDER.call("DeleteObservationLog", db.DeleteObservationLog, api_pb2.DeleteObservationLogRequest(trial_name=name), timeout=30)
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)


# -- raw bytes ----------------------------------------------------------------------------------------------

METHODS = {
    "Suggestion": {"GetSuggestions": suggestion_request().map(lambda r: r.SerializeToString()), "ValidateAlgorithmSettings": experiment().map(lambda e: api_pb2.ValidateAlgorithmSettingsRequest(experiment=e).SerializeToString())},
    "EarlyStopping": {
        "GetEarlyStoppingRules": experiment().map(lambda e: api_pb2.GetEarlyStoppingRulesRequest(experiment=e).SerializeToString()),
        "SetTrialStatus": st.just(api_pb2.SetTrialStatusRequest(trial_name="t1").SerializeToString()),
        "ValidateEarlyStoppingSettings": experiment().map(lambda e: api_pb2.ValidateEarlyStoppingSettingsRequest(early_stopping=e.spec.early_stopping).SerializeToString()),
    },
    "DBManager": {
        "ReportObservationLog": st.just(
            api_pb2.ReportObservationLogRequest(
                trial_name="t", observation_log=api_pb2.ObservationLog(metric_logs=[api_pb2.MetricLog(time_stamp="2026-11-28T10:00:00Z", metric=api_pb2.Metric(name="m", value="1"))])
            ).SerializeToString()
        ),
        "GetObservationLog": st.just(api_pb2.GetObservationLogRequest(trial_name="t", metric_name="m").SerializeToString()),
        "DeleteObservationLog": st.just(api_pb2.DeleteObservationLogRequest(trial_name="zz").SerializeToString()),
    },
}
SERVER_OF = {"Suggestion": "suggestion", "EarlyStopping": "earlystopping", "DBManager": "dbmanager"}


@given(data=st.data())
def test_mutated_bytes(servers, data):
    service = data.draw(st.sampled_from(sorted(METHODS)))
    method = data.draw(st.sampled_from(sorted(METHODS[service])))
    payload = data.draw(mutations(METHODS[service][method]))
    call = servers[SERVER_OF[service]].channel.unary_unary(f"/api.v1.beta1.{service}/{method}")
    RECORDER.call(f"{method} (mutated bytes)", call, payload, timeout=30)


# -- at the end ---------------------------------------------------------------------------------------------


def test_servers_are_healthy_and_their_memory_bounded(servers):
    for name, server in servers.items():
        wait_serving(server.channel, timeout=60)
        PEAK_RSS[name] = peak_rss_mib(server.process.pid)
        assert PEAK_RSS[name] < PEAK_RSS_MIB[name], f"{name}: peak RSS {PEAK_RSS[name]:.0f} MiB"


def peak_rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")
