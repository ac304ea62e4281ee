"""One server bootstrap for every service: health, reflection, size limits, logging, SIGTERM drain,
and one way of turning a call into a status code.

Every RPC of the API (`register`) receives its request as the bytes that arrived and decodes them
itself, so that bytes that do not decode get INVALID_ARGUMENT (gRPC's own decoding would answer
INTERNAL). Errors map to status codes in one place (`_status_of`), and every status message is cut
to `MAX_MESSAGE_BYTES`, so that it always fits gRPC's metadata limit.
"""

from __future__ import annotations

import argparse
import contextvars
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from katib_services.algorithms.errors import MAX_MESSAGE_BYTES, Cancelled, Exhausted, InvalidSpec, TooLarge, fit
from katib_services.statestore import DEFAULT_ENTRIES, DEFAULT_MEGABYTES, StateStore

from .pb import api_pb2

log = logging.getLogger("katib")

DEFAULT_MAX_MESSAGE_MB = 64
DEFAULT_GRACE_SECONDS = 30.0
LEGACY_HEALTH_NAME = "manager.v1beta1.Suggestion"  # the name Katib's kubelet probe checks

_experiment: contextvars.ContextVar[str] = contextvars.ContextVar("experiment", default="-")


class _ExperimentFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.experiment = _experiment.get()
        return True


class RpcFailure(Exception):
    """Ends a call with a chosen status code (UNAVAILABLE, NOT_FOUND, ...) and message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def set_log_experiment(name: str) -> None:
    """Names the experiment in the log lines of the rest of the current call."""
    _experiment.set(fit(name, 253) or "-")


def configure_logging(level: str = "INFO") -> None:
    """Logs to stderr; every line carries the experiment of the call being served."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ExperimentFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(experiment)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def caller_check(context: grpc.ServicerContext) -> Callable[[], None]:
    """A check that raises Cancelled once the call's client is gone or its deadline has passed."""

    def check() -> None:
        remaining = context.time_remaining()
        if not context.is_active() or (remaining is not None and remaining <= 0):
            raise Cancelled("the caller is gone: the call was cancelled or its deadline passed")

    return check


_STATUS = {
    InvalidSpec: grpc.StatusCode.INVALID_ARGUMENT,
    Exhausted: grpc.StatusCode.FAILED_PRECONDITION,
    TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Cancelled: grpc.StatusCode.CANCELLED,
}


def _status_of(error: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    if isinstance(error, RpcFailure):
        log.warning("%s failed: %s: %s", method, error.code.name, fit(str(error), 1000))
        return error.code, str(error)
    for kind, code in _STATUS.items():
        if isinstance(error, kind):
            log.warning("%s: %s: %s", method, code.name, fit(str(error), 1000))
            return code, str(error)
    log.error("%s failed", method, exc_info=error)
    return (
        grpc.StatusCode.INTERNAL,
        f"internal error in {method}: {type(error).__name__}: {error} (the service log has the traceback)",
    )


def _unary(method: Callable, name: str, request_type: Any) -> Callable:
    """The handler of one unary RPC: decode, call, map errors. `request_type` None passes the bytes."""

    def handle(data: bytes, context: grpc.ServicerContext):
        token = _experiment.set("-")
        try:
            request = data
            if request_type is not None:
                try:
                    request = request_type.FromString(data)
                except DecodeError as error:
                    raise InvalidSpec(f"request: not a valid {request_type.DESCRIPTOR.name} ({error})") from None
                experiment = getattr(request, "experiment", None)
                if experiment is not None:
                    set_log_experiment(experiment.name)
            return method(request, context)
        except Exception as error:  # noqa: BLE001 - every error becomes a status, never UNKNOWN
            code, message = _status_of(error, name)
            context.abort(code, fit(message, MAX_MESSAGE_BYTES))
        finally:
            _experiment.reset(token)

    return handle


def register(grpc_server: grpc.Server, servicer: object, service: str, raw: Iterable[str] = ()) -> str:
    """Registers every RPC of `service` ("Suggestion", "EarlyStopping" or "DBManager") served by
    `servicer`'s methods of the same names; the methods in `raw` receive the request bytes.
    Returns the service's full name."""
    descriptor = api_pb2.DESCRIPTOR.services_by_name[service]
    handlers = {}
    for m in descriptor.methods:
        request_type = None if m.name in raw else getattr(api_pb2, m.input_type.name)
        handlers[m.name] = grpc.unary_unary_rpc_method_handler(
            _unary(getattr(servicer, m.name), m.name, request_type),
            response_serializer=getattr(api_pb2, m.output_type.name).SerializeToString,
        )
    grpc_server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, handlers),))
    return descriptor.full_name


def _register_health(grpc_server: grpc.Server, servicer: health.HealthServicer) -> None:
    """grpc.health.v1.Health, decoding its own requests (a bad Check request is INVALID_ARGUMENT)."""

    def watch(data: bytes, context: grpc.ServicerContext):
        try:
            request = health_pb2.HealthCheckRequest.FromString(data)
        except DecodeError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid HealthCheckRequest ({error})")
        yield from servicer.Watch(request, context)

    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(
            _unary(servicer.Check, "Check", health_pb2.HealthCheckRequest),
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        ),
        "Watch": grpc.unary_stream_rpc_method_handler(
            watch, response_serializer=health_pb2.HealthCheckResponse.SerializeToString
        ),
    }
    grpc_server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(health.SERVICE_NAME, handlers),))


class Server:
    """A started gRPC server with health and reflection; `shutdown` drains it.

    `services` are (servicer, service) pairs, `service` being a service name of the API; a
    servicer may name the methods that take raw bytes in its `raw_methods` attribute.
    """

    def __init__(
        self,
        address: str,
        services: Sequence[tuple[object, str]],
        *,
        health_names: Sequence[str] = (),
        max_message_mb: int = DEFAULT_MAX_MESSAGE_MB,
        workers: int = 4,
    ):
        limit = max_message_mb * 1024 * 1024
        self.grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers),
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
        )
        self.health = health.HealthServicer()
        _register_health(self.grpc, self.health)
        full_names = [
            register(self.grpc, servicer, service, getattr(servicer, "raw_methods", ())) for servicer, service in services
        ]
        reflection.enable_server_reflection([*full_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.grpc)
        self.port = self.grpc.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        self.address = f"{address.rpartition(':')[0]}:{self.port}"
        self.grpc.start()
        for name in ("", *health_names, *full_names):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._stopped = threading.Event()

    def shutdown(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Reports NOT_SERVING, refuses new calls, and waits up to `grace` s for calls in flight."""
        self.health.enter_graceful_shutdown()
        self.grpc.stop(grace).wait()
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the server has stopped; waits at most `timeout` seconds."""
        return self._stopped.wait(timeout)


def add_server_arguments(parser: argparse.ArgumentParser, default_address: str) -> None:
    parser.add_argument("--address", default=default_address, help=f"HOST:PORT to listen on (default {default_address})")
    for flag, kind, default, meaning in (
        ("--max-message-mb", int, DEFAULT_MAX_MESSAGE_MB, "largest request or reply in MiB"),
        ("--grace", float, DEFAULT_GRACE_SECONDS, "seconds to finish calls in flight after SIGTERM"),
        ("--log-level", str, "INFO", "DEBUG, INFO, WARNING or ERROR"),
    ):
        parser.add_argument(flag, type=kind, default=default, help=f"{meaning} (default {default:g})" if kind is float else f"{meaning} (default {default})")


def add_state_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-entries", type=int, default=DEFAULT_ENTRIES, help=f"warm per-experiment state entries kept (default {DEFAULT_ENTRIES}; 0 keeps none)")
    parser.add_argument("--state-mb", type=int, default=DEFAULT_MEGABYTES, help=f"MiB of warm per-experiment state kept (default {DEFAULT_MEGABYTES})")


def state_store(args: argparse.Namespace) -> StateStore:
    return StateStore(max(args.state_entries, 0), max(args.state_mb, 0) << 20)


def positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def serve_until_signal(server: Server, grace: float, banner: str) -> None:
    """Prints the banner, then serves until SIGTERM or SIGINT, and drains before returning."""

    def on_signal(signum, _frame):
        log.info("%s received: NOT_SERVING, draining calls in flight (up to %gs)", signal.Signals(signum).name, grace)
        threading.Thread(target=server.shutdown, args=(grace,), daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(banner, flush=True)
    log.info(banner)
    while not server.wait(0.5):  # short waits keep the main thread responsive to signals
        pass
    log.info("stopped")


def algorithm_cli(
    prog: str,
    description: str,
    choices: list[str],
    default_address: str,
    start: Callable[..., Server],
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], dict]] | None = None,
) -> None:
    """The CLI of a one-algorithm server: `PROG --algorithm NAME [--address HOST:PORT] ...`.

    `extra(parser)` may add arguments and returns how to turn them into options of `start`.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--algorithm", required=True, choices=choices, help="the algorithm to serve")
    add_server_arguments(parser, default_address)
    add_state_arguments(parser)
    options = extra(parser) if extra else (lambda args: {})
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    server = start(args.algorithm, args.address, max_message_mb=args.max_message_mb, store=state_store(args), **options(args))
    serve_until_signal(server, args.grace, f"{prog} serving {args.algorithm} on {server.address}")
