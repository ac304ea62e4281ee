"""Shutdown keeps its word, over real processes and signals: on SIGTERM the server answers
NOT_SERVING and refuses new calls at once, calls in flight get up to --grace seconds, then they
are cancelled and the process exits 0 within about a second; a second SIGTERM exits at once."""

import signal
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from katib_services.services.client import ServerProcess

from .conftest import Client, double, experiment

MARGIN = 8.0  # seconds on top of what the issue promises: the bounds tell the behaviours apart (20, 30 and 60 s), they do not measure speed


def sleeping_server(grace: float) -> ServerProcess:
    return ServerProcess(["tests.plugins", "--algorithm", "random", "--grace", str(grace), "--log-level", "WARNING"])


class SlowCall:
    """A GetSuggestions that sleeps `seconds` on the server, in a thread; started once the server
    has entered it."""

    def __init__(self, server: ServerProcess, tmp_path, seconds: float, stubborn: bool = False):
        entered = tmp_path / "entered"
        settings = {"seconds": seconds, "stubborn": str(stubborn).lower(), "entered": str(entered)}
        self.client = Client(server.address)
        self.request = experiment([double("x", 0, 1)], algorithm="test-sleeping", settings=settings)
        self.outcome = None
        self.thread = threading.Thread(target=self._call, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not entered.exists():
            assert time.monotonic() < deadline and self.thread.is_alive(), "the slow call never started"
            time.sleep(0.01)

    def _call(self):
        try:
            self.outcome = len(self.client.suggest(self.request, count=2).parameter_assignments)
        except grpc.RpcError as error:
            self.outcome = error.code()


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service="manager.v1beta1.Suggestion")
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=60).status


def exit_seconds(server: ServerProcess, since: float, timeout: float = 60) -> tuple[int, float]:
    code = server.process.wait(timeout)
    return code, time.monotonic() - since


def test_sigterm_refuses_new_calls_and_lets_the_call_in_flight_finish(tmp_path):
    server = sleeping_server(grace=20)
    try:
        slow = SlowCall(server, tmp_path, seconds=2.0)
        server.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        time.sleep(0.2)
        assert health(server.address) == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as refused:
            Client(server.address).suggest(experiment([double("x", 0, 1)]))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in refused.value.details()
        code, seconds = exit_seconds(server, sent)
        slow.thread.join(5)
        assert slow.outcome == 2, "the call in flight must finish with its reply"
        assert code == 0
        assert seconds < 2.0 + MARGIN, "the server must exit once its calls are done, not at the end of the grace"
    finally:
        server.stop(timeout=5)


@pytest.mark.parametrize("stubborn", [False, True], ids=["checks", "ignores-cancellation"])
def test_after_the_grace_calls_are_cancelled_and_the_process_exits_0(tmp_path, stubborn):
    """Also when the computation does not notice its cancellation (the thread is not waited for)."""
    grace = 1.0
    server = sleeping_server(grace)
    try:
        slow = SlowCall(server, tmp_path, seconds=30, stubborn=stubborn)
        server.process.send_signal(signal.SIGTERM)
        code, seconds = exit_seconds(server, time.monotonic())
        slow.thread.join(5)
        assert code == 0
        assert grace <= seconds < grace + 1.0 + MARGIN
        assert slow.outcome in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    finally:
        server.stop(timeout=5)


def test_a_second_sigterm_exits_at_once(tmp_path):
    server = sleeping_server(grace=60)
    try:
        SlowCall(server, tmp_path, seconds=60, stubborn=True)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert server.process.poll() is None, "the first SIGTERM must wait for the call in flight"
        server.process.send_signal(signal.SIGTERM)
        code, seconds = exit_seconds(server, time.monotonic())
        assert code == 128 + signal.SIGTERM
        assert seconds < MARGIN
    finally:
        server.stop(timeout=5)
