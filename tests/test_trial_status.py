"""The Trial-status updater against a stub Kubernetes API server on 127.0.0.1.

The stub serves the real Trial status-subresource paths, applies JSON merge patches, keeps a
resourceVersion that every write bumps, answers 409 to a stale resourceVersion, 404 to unknown
Trials and 403 in a locked namespace, and records every request. The official ``kubernetes`` client
reaches it through a kubeconfig written to tmp_path, exactly as it would reach a cluster.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from katib_services.earlystopping import trial_status
from katib_services.earlystopping.trial_status import (
    ALREADY_EARLY_STOPPED,
    UPDATED,
    Forbidden,
    KubernetesError,
    TrialNotFound,
    TrialStatusUpdater,
)

NS = "kubeflow-user"
TOKEN = "stub-token"
PATH = re.compile(r"^/apis/kubeflow\.org/v1beta1/namespaces/([^/]+)/trials/([^/]+)/status$")
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

CREATED = {
    "type": "Created",
    "status": "True",
    "reason": "TrialCreated",
    "message": "Trial is created",
    "lastUpdateTime": "2026-11-28T08:00:00Z",
    "lastTransitionTime": "2026-11-28T08:00:00Z",
}
RUNNING = {
    "type": "Running",
    "status": "True",
    "reason": "TrialRunning",
    "message": "Trial is running",
    "lastUpdateTime": "2026-11-28T08:00:05Z",
    "lastTransitionTime": "2026-11-28T08:00:05Z",
}


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: object


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def status_object(code, reason, message):
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class StubApiServer:
    """Trials kept in memory under (namespace, name); requests recorded in order."""

    def __init__(self):
        self.trials = {}
        self.requests = []
        self.version = 100
        self.locked_namespaces = {"locked"}
        self.broken = set()  # trial names whose every request gets a 500
        self.after_get = None  # called (under the lock) with the stored Trial after each GET is answered
        self.before_reply = None  # called (outside the lock) with the method, just before a reply is sent
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def add_trial(self, name, conditions=None, namespace=NS, with_status=True):
        trial = {
            "apiVersion": "kubeflow.org/v1beta1",
            "kind": "Trial",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": self._next_version()},
            "spec": {"primaryContainerName": "training-container"},
        }
        if with_status:
            trial["status"] = {"startTime": "2026-11-28T08:00:00Z", "conditions": copy.deepcopy(conditions or [])}
        self.trials[(namespace, name)] = trial
        return trial

    def bump(self, trial, **status_changes):
        """A concurrent writer (Katib's trial controller, say) updates the Trial's status."""
        trial.setdefault("status", {}).update(status_changes)
        trial["metadata"]["resourceVersion"] = self._next_version()

    def _next_version(self):
        self.version += 1
        return str(self.version)

    def of(self, method):
        return [r for r in self.requests if r.method == method]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._serve("GET")

            def do_PATCH(self):
                self._serve("PATCH")

            def _serve(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                with stub.lock:
                    headers = {key.lower(): value for key, value in self.headers.items()}  # names are case-insensitive
                    stub.requests.append(Request(method, self.path, headers, body))
                    code, answer = stub._answer(method, self.path, self.headers, body)
                if stub.before_reply:
                    stub.before_reply(method)
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _answer(self, method, path, headers, body):
        match = PATH.match(path)
        if not match:
            return 404, status_object(404, "NotFound", "the server could not find the requested resource")
        namespace, name = match.groups()
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, status_object(401, "Unauthorized", "Unauthorized")
        if namespace in self.locked_namespaces:
            return 403, status_object(
                403,
                "Forbidden",
                f'trials.kubeflow.org "{name}" is forbidden: User "system:serviceaccount:{namespace}:default" '
                f'cannot {method.lower()} resource "trials/status" in API group "kubeflow.org" in the namespace '
                f'"{namespace}"',
            )
        if name in self.broken:
            return 500, status_object(500, "InternalError", "etcdserver: request timed out")
        trial = self.trials.get((namespace, name))
        if trial is None:
            return 404, status_object(404, "NotFound", f'trials.kubeflow.org "{name}" not found')
        if method == "GET":
            answer = copy.deepcopy(trial)
            if self.after_get:
                self.after_get(trial)
            return 200, answer
        if headers.get("Content-Type") != "application/merge-patch+json":
            return 415, status_object(415, "UnsupportedMediaType", "the body of the request was in an unknown format")
        wanted = ((body or {}).get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != trial["metadata"]["resourceVersion"]:
            return 409, status_object(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on trials.kubeflow.org "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
            )
        # The status subresource takes only status changes from a patch.
        trial["status"] = merge_patch(trial.get("status"), (body or {}).get("status", {}))
        trial["metadata"]["resourceVersion"] = self._next_version()
        return 200, copy.deepcopy(trial)


@pytest.fixture
def api():
    server = StubApiServer()
    yield server
    server.close()


def write_kubeconfig(tmp_path, server_url, context_namespace="from-context"):
    """A kubeconfig (JSON is YAML) pointing at ``server_url`` over plain HTTP."""
    context = {"cluster": "stub", "user": "stub"}
    if context_namespace:
        context["namespace"] = context_namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stub", "cluster": {"server": server_url}}],
        "users": [{"name": "stub", "user": {"token": TOKEN}}],
        "contexts": [{"name": "stub", "context": context}],
        "current-context": "stub",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def environment(tmp_path, monkeypatch, api):
    """Outside a pod (no in-cluster env), KUBECONFIG naming the stub, the namespace file in tmp_path."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path, api.url)))
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text(NS + "\n")

    def build(namespace=NS, **options):
        namespace_file.write_text(namespace + "\n")
        updater = TrialStatusUpdater.from_environment(namespace_file=str(namespace_file), **options)
        assert updater is not None
        return updater

    return build


def trial_path(name, namespace=NS):
    return f"/apis/kubeflow.org/v1beta1/namespaces/{namespace}/trials/{name}/status"


def assert_condition_stamped_between(condition, before, after):
    assert RFC3339_UTC.match(condition["lastUpdateTime"]), condition
    assert condition["lastUpdateTime"] == condition["lastTransitionTime"]
    stamp = datetime.strptime(condition["lastUpdateTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before.replace(microsecond=0) <= stamp <= after


def without_times(condition):
    return {k: v for k, v in condition.items() if k not in ("lastUpdateTime", "lastTransitionTime")}


NEW_CONDITION = {
    "type": "EarlyStopped",
    "status": "True",
    "reason": "TrialEarlyStopped",
    "message": "Trial is early stopped",
}


def test_patch_is_the_exact_merge_patch_katib_expects(api, environment):
    api.add_trial("trial-a", [CREATED, RUNNING])
    version = api.trials[(NS, "trial-a")]["metadata"]["resourceVersion"]
    updater = environment()

    before = datetime.now(UTC)
    assert updater.mark_early_stopped("trial-a") == UPDATED
    after = datetime.now(UTC)

    assert [(r.method, r.path) for r in api.requests] == [
        ("GET", trial_path("trial-a")),
        ("PATCH", trial_path("trial-a")),
    ]
    patch = api.requests[1]
    assert patch.headers["content-type"] == "application/merge-patch+json"
    assert patch.headers["authorization"] == f"Bearer {TOKEN}"
    assert set(patch.body) == {"metadata", "status"}
    assert patch.body["metadata"] == {"resourceVersion": version}
    assert set(patch.body["status"]) == {"conditions"}
    conditions = patch.body["status"]["conditions"]
    assert conditions[:2] == [CREATED, RUNNING]
    assert len(conditions) == 3
    new = conditions[2]
    assert set(new) == {"type", "status", "reason", "message", "lastUpdateTime", "lastTransitionTime"}
    assert without_times(new) == NEW_CONDITION
    assert_condition_stamped_between(new, before, after)

    stored = api.trials[(NS, "trial-a")]
    assert stored["status"]["conditions"] == conditions
    assert stored["status"]["startTime"] == "2026-11-28T08:00:00Z"  # the merge patch kept the rest of the status
    assert stored["metadata"]["resourceVersion"] != version


def test_condition_times_are_utc_whatever_the_clock_zone(api, environment):
    api.add_trial("trial-a", [CREATED])
    ten_in_paris = datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    updater = environment(clock=lambda: ten_in_paris)
    updater.mark_early_stopped("trial-a")
    assert api.of("PATCH")[0].body["status"]["conditions"][-1] == {
        **NEW_CONDITION,
        "lastUpdateTime": "2026-11-28T09:00:00Z",
        "lastTransitionTime": "2026-11-28T09:00:00Z",
    }


def test_second_call_adds_nothing_and_sends_no_patch(api, environment):
    api.add_trial("trial-a", [CREATED, RUNNING])
    updater = environment()
    assert updater.mark_early_stopped("trial-a") == UPDATED
    conditions = copy.deepcopy(api.trials[(NS, "trial-a")]["status"]["conditions"])
    version = api.trials[(NS, "trial-a")]["metadata"]["resourceVersion"]

    assert updater.mark_early_stopped("trial-a") == ALREADY_EARLY_STOPPED
    assert [r.method for r in api.requests] == ["GET", "PATCH", "GET"]
    assert api.trials[(NS, "trial-a")]["status"]["conditions"] == conditions
    assert [c["type"] for c in conditions].count("EarlyStopped") == 1
    assert api.trials[(NS, "trial-a")]["metadata"]["resourceVersion"] == version


def test_a_false_early_stopped_condition_is_replaced_and_the_new_one_goes_last(api, environment):
    stale = {
        **NEW_CONDITION,
        "status": "False",
        "lastUpdateTime": "2026-11-28T08:00:01Z",
        "lastTransitionTime": "2026-11-28T08:00:01Z",
    }
    api.add_trial("trial-a", [CREATED, stale, RUNNING])
    assert environment().mark_early_stopped("trial-a") == UPDATED
    conditions = api.of("PATCH")[0].body["status"]["conditions"]
    assert [c["type"] for c in conditions] == ["Created", "Running", "EarlyStopped"]
    assert conditions[-1]["status"] == "True"


def test_a_trial_without_status_gets_a_conditions_list(api, environment):
    api.add_trial("fresh", with_status=False)
    assert environment().mark_early_stopped("fresh") == UPDATED
    conditions = api.of("PATCH")[0].body["status"]["conditions"]
    assert [without_times(c) for c in conditions] == [NEW_CONDITION]
    assert api.trials[(NS, "fresh")]["status"]["conditions"] == conditions


def test_conflict_rereads_and_retries_with_the_new_version(api, environment):
    trial = api.add_trial("trial-a", [CREATED])
    first_version = trial["metadata"]["resourceVersion"]
    writes = []

    def controller_writes_once(stored):
        if not writes:
            api.bump(stored, conditions=stored["status"]["conditions"] + [RUNNING])
            writes.append(stored["metadata"]["resourceVersion"])

    api.after_get = controller_writes_once
    assert environment().mark_early_stopped("trial-a") == UPDATED

    assert [r.method for r in api.requests] == ["GET", "PATCH", "GET", "PATCH"]
    first, second = api.of("PATCH")
    assert first.body["metadata"]["resourceVersion"] == first_version
    assert second.body["metadata"]["resourceVersion"] == writes[0]
    # The retry is rebuilt from the re-read Trial: the controller's concurrent write survives.
    assert [c["type"] for c in second.body["status"]["conditions"]] == ["Created", "Running", "EarlyStopped"]
    assert [c["type"] for c in api.trials[(NS, "trial-a")]["status"]["conditions"]] == [
        "Created",
        "Running",
        "EarlyStopped",
    ]


def test_conflict_on_every_attempt_gives_up_with_kubernetes_error(api, environment):
    api.add_trial("trial-a", [CREATED])
    api.after_get = lambda stored: api.bump(stored)
    with pytest.raises(KubernetesError, match="3 attempts ended in 409 Conflict"):
        environment(max_attempts=3, backoff_seconds=0).mark_early_stopped("trial-a")
    assert [r.method for r in api.requests] == ["GET", "PATCH"] * 3
    assert all(c["type"] != "EarlyStopped" for c in api.trials[(NS, "trial-a")]["status"]["conditions"])


def test_two_concurrent_calls_write_one_condition(api, environment):
    api.add_trial("trial-a", [CREATED, RUNNING])
    both_read = threading.Barrier(2, timeout=60)
    gets = []

    def hold_gets(method):  # the first two GETs are answered together, so both callers read the same version
        if method == "GET":
            with api.lock:
                gets.append(method)
                first_two = len(gets) <= 2
            if first_two:
                both_read.wait()

    api.before_reply = hold_gets
    updater = environment()
    results = []
    threads = [threading.Thread(target=lambda: results.append(updater.mark_early_stopped("trial-a"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(results) == [ALREADY_EARLY_STOPPED, UPDATED]
    assert [c["type"] for c in api.trials[(NS, "trial-a")]["status"]["conditions"]] == [
        "Created",
        "Running",
        "EarlyStopped",
    ]
    # The loser's PATCH carried the version both had read and was refused; its re-read found the condition.
    assert len(api.of("PATCH")) == 2 and len(api.of("GET")) == 3


def test_unknown_trial_is_trial_not_found(api, environment):
    api.add_trial("trial-a", [CREATED])
    with pytest.raises(TrialNotFound, match=f"{NS}/ghost"):
        environment().mark_early_stopped("ghost")
    assert [(r.method, r.path) for r in api.requests] == [("GET", trial_path("ghost"))]


@pytest.mark.parametrize("name", ["", "Trial-A", "a/b", "../x", "x" * 254])
def test_a_name_no_trial_can_have_is_not_found_without_a_request(api, environment, name):
    with pytest.raises(TrialNotFound):
        environment().mark_early_stopped(name)
    assert api.requests == []


def test_forbidden_namespace_is_forbidden(api, environment):
    api.add_trial("trial-a", [CREATED], namespace="locked")
    with pytest.raises(Forbidden, match="trials/status") as raised:
        environment(namespace="locked").mark_early_stopped("trial-a")
    assert not isinstance(raised.value, (TrialNotFound, KubernetesError))
    assert api.requests[0].path == trial_path("trial-a", "locked")


def test_server_error_is_kubernetes_error(api, environment):
    api.add_trial("trial-a", [CREATED])
    api.broken.add("trial-a")
    with pytest.raises(KubernetesError, match="HTTP 500: etcdserver: request timed out"):
        environment().mark_early_stopped("trial-a")


def test_unreachable_api_server_is_kubernetes_error(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path, f"http://127.0.0.1:{port}")))
    updater = TrialStatusUpdater.from_environment(namespace_file=str(tmp_path / "none"), request_timeout=60)
    assert updater is not None
    with pytest.raises(KubernetesError, match="could not read the status of Trial"):
        updater.mark_early_stopped("trial-a")


def test_namespace_comes_from_the_file_else_the_kubeconfig_context_else_default(api, tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("from-file\n")
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path, api.url)))
    assert TrialStatusUpdater.from_environment(namespace_file=str(namespace_file)).namespace == "from-file"
    missing = str(tmp_path / "missing")
    updater = TrialStatusUpdater.from_environment(namespace_file=missing)
    assert updater.namespace == "from-context"
    with pytest.raises(TrialNotFound):
        updater.mark_early_stopped("trial-a")
    assert api.requests[-1].path == trial_path("trial-a", "from-context")
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path, api.url, context_namespace=None)))
    assert TrialStatusUpdater.from_environment(namespace_file=missing).namespace == "default"


def test_explicit_kubeconfig_argument_wins_over_the_environment(api, tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "does-not-exist"))
    path = write_kubeconfig(tmp_path, api.url)
    updater = TrialStatusUpdater.from_environment(namespace_file=str(tmp_path / "none"), kubeconfig=str(path))
    assert updater is not None and updater.namespace == "from-context"


def test_no_cluster_configuration_gives_none(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text(NS)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "does-not-exist"))
    assert TrialStatusUpdater.from_environment(namespace_file=str(namespace_file)) is None
    monkeypatch.delenv("KUBECONFIG")
    assert TrialStatusUpdater.from_environment(namespace_file=str(namespace_file)) is None


def test_importing_the_module_does_not_import_kubernetes():
    code = "import sys, earlystopping.trial_status; print('kubernetes' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_rfc3339_utc_refuses_naive_times():
    assert trial_status.rfc3339_utc(datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)) == "2026-11-28T09:00:00Z"
    with pytest.raises(ValueError):
        trial_status.rfc3339_utc(datetime(2026, 11, 28, 9, 0, 0))


def test_set_trial_status_over_grpc_maps_outcomes_to_status_codes(api, environment):
    import grpc

    from katib_services.services import earlystopping
    from katib_services.services.pb import api_pb2, api_pb2_grpc

    api.add_trial("trial-g", [CREATED, RUNNING])
    server = earlystopping.start("medianstop", "127.0.0.1:0", trial_status=environment())
    try:
        stub = api_pb2_grpc.EarlyStoppingStub(grpc.insecure_channel(server.address))
        stub.SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name="trial-g"), timeout=30)
        stub.SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name="trial-g"), timeout=30)  # idempotent
        assert [r.method for r in api.requests] == ["GET", "PATCH", "GET"]
        assert without_times(api.requests[1].body["status"]["conditions"][-1]) == NEW_CONDITION
        with pytest.raises(grpc.RpcError) as caught:
            stub.SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name="no-such-trial"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        server.shutdown(grace=1)
