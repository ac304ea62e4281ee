"""The DBManager service over real gRPC and real SQLite files: storage, filters, errors, concurrency, durability."""

import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from katib_services.obslog import time_ns
from katib_services.services import dbmanager
from katib_services.services.client import ServerProcess
from katib_services.services.pb import api_pb2, api_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING


class DBClient:
    """A DBManager stub with shortcuts that take and return logs as (time_stamp, metric_name, value)."""

    def __init__(self, address: str):
        self.channel = grpc.insecure_channel(address)
        self.stub = api_pb2_grpc.DBManagerStub(self.channel)

    def report(self, trial, logs):
        metric_logs = [api_pb2.MetricLog(time_stamp=t, metric=api_pb2.Metric(name=n, value=v)) for t, n, v in logs]
        request = api_pb2.ReportObservationLogRequest(
            trial_name=trial, observation_log=api_pb2.ObservationLog(metric_logs=metric_logs)
        )
        self.stub.ReportObservationLog(request, timeout=60)

    def get(self, trial, metric="", start="", end=""):
        request = api_pb2.GetObservationLogRequest(trial_name=trial, metric_name=metric, start_time=start, end_time=end)
        reply = self.stub.GetObservationLog(request, timeout=60)
        return [(m.time_stamp, m.metric.name, m.metric.value) for m in reply.observation_log.metric_logs]

    def delete(self, trial):
        self.stub.DeleteObservationLog(api_pb2.DeleteObservationLogRequest(trial_name=trial), timeout=60)

    def health(self, service):
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(self.channel).Check(request, timeout=60).status


@pytest.fixture
def db(tmp_path):
    """An in-process DBManager on a fresh SQLite file."""
    server = dbmanager.start(str(tmp_path / "katib.db"), "127.0.0.1:0", workers=8)
    client = DBClient(server.address)
    yield client
    client.channel.close()
    server.shutdown(grace=1)


@pytest.mark.parametrize("path", [":memory:", ""])
def test_an_in_memory_database_reads_what_was_written(path):
    """Reads of other threads see the writer's data (a connection of their own would open another,
    empty, in-memory database)."""
    with ServerProcess(["katib_services.services.dbmanager", "--db", path]) as server:
        client = DBClient(server.address)
        client.report("t1", [("2026-11-28T10:00:00Z", "loss", "0.5")])
        assert client.get("t1") == [("2026-11-28T10:00:00Z", "loss", "0.5")]
        client.channel.close()


def invalid_argument(call) -> str:
    """Runs `call`, which must fail with INVALID_ARGUMENT; returns the details."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return caught.value.details()


# Logs timed around 2026-11-28T08:00:00Z, written with different offsets, fractions and letter cases.
BEFORE = ("2026-11-28T07:59:59.999999999Z", "loss", "0.9")  # 1 ns before START
START = ("2026-11-28T09:00:00+01:00", "accuracy", "0.1")  # 08:00:00Z
JUST_AFTER = ("2026-11-28T10:00:00.000000001+02:00", "loss", "0.5")  # 08:00:00.000000001Z
END = ("2026-11-28T03:30:00.5-04:30", "accuracy", "0.7")  # 08:00:00.5Z
AFTER = ("2026-11-28t08:00:00.500000001z", "accuracy", "0.8")  # 1 ns after END
ZERO = ("0001-01-01T00:00:00Z", "accuracy", "unavailable")  # Katib's zero time for unavailable metrics
LOGS = [END, BEFORE, AFTER, START, ZERO, JUST_AFTER]  # not in time order


def test_get_returns_logs_in_report_order_with_time_stamps_as_given(db):
    db.report("trial-1", LOGS[:4])
    db.report("trial-1", LOGS[4:])
    db.report("trial-2", [START])
    assert db.get("trial-1") == LOGS
    assert db.get("trial-2") == [START]


def test_get_filters_by_metric_name(db):
    db.report("trial-1", LOGS)
    assert db.get("trial-1", metric="loss") == [BEFORE, JUST_AFTER]
    assert db.get("trial-1", metric="accuracy") == [END, AFTER, START, ZERO]
    assert db.get("trial-1", metric="nope") == []


def test_get_filters_by_time_with_inclusive_bounds_to_the_nanosecond(db):
    db.report("trial-1", LOGS)
    start, end = "2026-11-28T08:00:00Z", "2026-11-28T09:00:00.5+01:00"
    assert db.get("trial-1", start=start, end=end) == [END, START, JUST_AFTER]
    assert db.get("trial-1", start=start) == [END, AFTER, START, JUST_AFTER]
    assert db.get("trial-1", end=end) == [END, BEFORE, START, ZERO, JUST_AFTER]
    assert db.get("trial-1", start="2026-11-28T08:00:00.000000001Z", end=end) == [END, JUST_AFTER]
    assert db.get("trial-1", start="2026-11-28T03:00:00.5000000009-05:00") == [END, AFTER]  # sub-ns digits dropped
    assert db.get("trial-1", metric="accuracy", start=start, end=end) == [END, START]
    assert db.get("trial-1", start=end, end=start) == []


def test_get_of_an_unknown_trial_is_empty(db):
    db.report("trial-1", LOGS)
    assert db.get("trial-2") == []


def test_delete_removes_only_that_trial(db):
    db.report("trial-1", LOGS)
    db.report("trial-2", [START, END])
    db.delete("trial-1")
    assert db.get("trial-1") == []
    assert db.get("trial-2") == [START, END]
    db.delete("trial-1")  # deleting nothing is fine
    db.report("trial-1", [AFTER])
    assert db.get("trial-1") == [AFTER]


def test_an_empty_time_stamp_is_stored_as_the_current_utc_time(db):
    before = time.time_ns()
    db.report("trial-1", [("", "loss", "0.3")])
    after = time.time_ns()
    ((stamp, name, value),) = db.get("trial-1")
    assert (name, value) == ("loss", "0.3")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", stamp), stamp
    assert before <= time_ns(stamp, "stamp") <= after


@pytest.mark.parametrize(
    "stamp",
    ["yesterday", "2026-11-28T08:00:00", "2026-11-28 08:00:00Z", "2026-13-01T00:00:00Z", "2026-11-28T08:00:00+24:00"],
)
def test_a_bad_time_stamp_rejects_the_whole_report(db, stamp):
    details = invalid_argument(lambda: db.report("trial-1", [START, END, (stamp, "loss", "1"), AFTER]))
    assert f'observation_log.metric_logs[2].time_stamp: "{stamp}" is not an RFC 3339 time' in details
    assert db.get("trial-1") == []
    assert db.health("") == SERVING


def test_a_bad_time_bound_is_invalid_argument(db):
    db.report("trial-1", LOGS)
    details = invalid_argument(lambda: db.get("trial-1", start="last week"))
    assert 'start_time: "last week" is not an RFC 3339 time' in details
    details = invalid_argument(lambda: db.get("trial-1", start=START[0], end="2026-11-28T25:00:00Z"))
    assert 'end_time: "2026-11-28T25:00:00Z" is not an RFC 3339 time' in details
    assert db.get("trial-1", start=START[0]) == [END, AFTER, START, JUST_AFTER]


def test_an_empty_trial_name_is_invalid_argument(db):
    for call in (lambda: db.report("", [START]), lambda: db.get(""), lambda: db.delete("")):
        assert "trial_name: is empty" in invalid_argument(call)
    assert db.health("") == SERVING
    assert db.get("trial-1") == []


def test_concurrent_writers_lose_and_duplicate_nothing(db):
    threads, reports, per_report = 16, 50, 3
    trial_of = [f"trial-{i % 12}" for i in range(threads)]  # threads 12-15 share a trial with threads 0-3
    errors = []

    def write(i):
        try:
            for r in range(reports):
                db.report(trial_of[i], [(START[0], "m", f"{i}/{r}/{k}") for k in range(per_report)])
        except Exception as error:  # a failed thread must fail the test, not vanish
            errors.append(error)

    workers = [threading.Thread(target=write, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert not errors
    for trial in sorted(set(trial_of)):
        values = [value for _, _, value in db.get(trial)]
        writers = [i for i in range(threads) if trial_of[i] == trial]
        expected = {f"{i}/{r}/{k}" for i in writers for r in range(reports) for k in range(per_report)}
        assert len(values) == len(expected) and set(values) == expected, trial
        for i in writers:  # each thread's logs in the order it reported them
            own = [v for v in values if v.startswith(f"{i}/")]
            assert own == [f"{i}/{r}/{k}" for r in range(reports) for k in range(per_report)]
        for start in range(0, len(values), per_report):  # each report's logs stored together
            assert len({v.rsplit("/", 1)[0] for v in values[start : start + per_report]}) == 1


def test_acknowledged_reports_survive_sigkill(tmp_path):
    path = str(tmp_path / "katib.db")
    server = ServerProcess(["katib_services.services.dbmanager", "--db", path])
    client = DBClient(server.address)
    expected = []
    for r in range(40):
        logs = [(f"2026-11-28T08:00:{r:02d}.{k}Z", "loss", str(r * 10 + k)) for k in range(5)]
        client.report(f"trial-{r % 3}", logs)
        expected.append((f"trial-{r % 3}", logs))
    server.process.send_signal(signal.SIGKILL)
    assert server.process.wait(10) == -signal.SIGKILL
    server.stop()
    with ServerProcess(["katib_services.services.dbmanager", "--db", path]) as restarted:
        client = DBClient(restarted.address)
        for trial in ("trial-0", "trial-1", "trial-2"):
            assert client.get(trial) == [log for t, logs in expected if t == trial for log in logs]


def test_health_answers_serving_for_katib_names(db):
    for name in ("", "api.v1.beta1.DBManager"):
        assert db.health(name) == SERVING, name


def test_cli_rejects_an_unusable_db_and_installs_the_console_script(tmp_path):
    bad = subprocess.run(
        [sys.executable, "-m", "katib_services.services.dbmanager", "--db", str(tmp_path / "no" / "such" / "dir.db")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--db" in bad.stderr and "unable to open database file" in bad.stderr
    script = shutil.which("katib-dbmanager")
    assert script, "katib-dbmanager is not installed: run pip install ."
    usage = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert usage.returncode == 0, usage.stderr
    assert "--db" in usage.stdout and "katib.db" in usage.stdout and "0.0.0.0:6789" in usage.stdout
