"""One server bootstrap for every service: health, reflection, size limits, TLS, logging (text or
JSON), Prometheus metrics, a shutdown that keeps its word, and one way of turning a call into a
status code.

Every RPC of the API (`register`) receives its request as the bytes that arrived and decodes them
itself, so that bytes that do not decode get INVALID_ARGUMENT (gRPC's own decoding would answer
INTERNAL). Errors map to status codes in one place (`_status_of`), and every status message is cut
to `MAX_MESSAGE_BYTES`, so that it always fits gRPC's metadata limit.

Each call ends with one log line (its experiment, RPC, status code and duration) and, with
`--metrics-port`, its metrics (services.metrics). Servicers add what they know to the current
call (`current_call()`): the algorithm, the trials, a summary for the log line.

Shutdown (SIGTERM or SIGINT): health answers NOT_SERVING and new calls get UNAVAILABLE at once;
calls in flight have up to `--grace` seconds, then they are cancelled (their computation stops
at its next `caller_check`) and the process exits 0 without waiting for them. A second signal
exits at once (status 128 + the signal number).
"""

from __future__ import annotations

import argparse
import contextvars
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from katib_services.algorithms.errors import MAX_MESSAGE_BYTES, Cancelled, Exhausted, InvalidSpec, TooLarge, fit
from katib_services.numbers import shorten
from katib_services.statestore import DEFAULT_ENTRIES, DEFAULT_MEGABYTES, StateStore

from .pb import api_pb2
from .tls import ServerTls, add_server_tls_arguments, server_tls

log = logging.getLogger("katib")

DEFAULT_MAX_MESSAGE_MB = 64
DEFAULT_GRACE_SECONDS = 30.0
DEFAULT_WORKERS = 8
CANCEL_WAIT_SECONDS = 0.5  # after the grace: how long cancelled calls get to return before the exit
LEGACY_HEALTH_NAME = "manager.v1beta1.Suggestion"  # the name Katib's kubelet probe checks
LOG_FORMATS = ("text", "json")


@dataclass
class Call:
    """What is known about the call being served; the servicer fills in what it learns."""

    service: str = ""
    rpc: str = ""
    experiment: str = ""
    algorithm: str = ""  # a registered name only (it becomes a metric label)
    trials: int | None = None  # GetSuggestions: the trials of the request
    summary: str = ""  # what the call did, for its log line
    db_calls: list[tuple[str, float]] = field(default_factory=list)  # (status code, seconds) of DB-manager reads


_call: contextvars.ContextVar[Call | None] = contextvars.ContextVar("call", default=None)


def current_call() -> Call:
    """The call being served by this thread (a throwaway record outside a call)."""
    return _call.get() or Call()


class RpcFailure(Exception):
    """Ends a call with a chosen status code (UNAVAILABLE, NOT_FOUND, ...) and message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def set_log_experiment(name: str) -> None:
    """Names the experiment in the log lines of the rest of the current call (escaped: a name from the
    wire cannot start a log line of its own)."""
    current_call().experiment = shorten(name, 253)


# -- logging ----------------------------------------------------------------------------------


class _CallFilter(logging.Filter):
    """Gives every record the experiment and RPC of the call it belongs to."""

    def filter(self, record: logging.LogRecord) -> bool:
        call = _call.get()
        record.experiment = getattr(record, "experiment", None) or (call.experiment if call else "") or "-"
        if not hasattr(record, "rpc"):
            record.rpc = call.rpc if call else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, experiment, rpc, code, duration_ms, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "experiment": None if record.experiment == "-" else record.experiment,
            "rpc": record.rpc,
            "code": getattr(record, "code", None),
            "duration_ms": getattr(record, "duration_ms", None),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Logs to stderr, as text (the default) or one JSON object per line; every line carries the
    experiment of the call being served."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_CallFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
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
    """The status of a call that raised `error`; an unexpected error's traceback is logged."""
    if isinstance(error, RpcFailure):
        return error.code, str(error)
    for kind, code in _STATUS.items():
        if isinstance(error, kind):
            return code, str(error)
    log.error("%s failed", method, exc_info=error)
    return (
        grpc.StatusCode.INTERNAL,
        f"internal error in {method}: {type(error).__name__}: {error} (the service log has the traceback)",
    )


# -- calls --------------------------------------------------------------------------------------


class _Calls:
    """Counts the calls in flight and closes the door on shutdown."""

    def __init__(self):
        self._active = 0
        self.closed = False
        self._changed = threading.Condition()

    def enter(self) -> bool:
        with self._changed:
            if self.closed:
                return False
            self._active += 1
            return True

    def leave(self) -> None:
        with self._changed:
            self._active -= 1
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self.closed = True

    def wait_idle(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._active == 0, timeout)

    def __len__(self) -> int:
        return self._active


class _Handlers:
    """Makes the handler of each unary RPC: gate, decode, call, map errors, log, measure."""

    def __init__(self, calls: _Calls, metrics: Any | None):
        self.calls = calls
        self.metrics = metrics  # the services.metrics module, or None

    def unary(self, method: Callable, service: str, name: str, request_type: Any, gated: bool = True) -> Callable:
        """`request_type` None passes the bytes; an ungated RPC (health) is served while draining."""
        quiet = not gated  # health checks come every few seconds: their lines are DEBUG

        def handle(data: bytes, context: grpc.ServicerContext):
            if gated and not self.calls.enter():
                if self.metrics is not None:
                    self.metrics.record_call(service, name, "", "UNAVAILABLE", 0.0, None, ())
                context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; call again (another replica answers)")
            call = Call(service, name)
            token = _call.set(call)
            start = time.perf_counter()
            code, message = grpc.StatusCode.OK, ""
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
                self._finish(call, code, message, time.perf_counter() - start, quiet)
                _call.reset(token)
                if gated:
                    self.calls.leave()

        return handle

    def _finish(self, call: Call, code: grpc.StatusCode, message: str, seconds: float, quiet: bool) -> None:
        level = logging.INFO if code is grpc.StatusCode.OK else logging.WARNING
        if quiet and level == logging.INFO:
            level = logging.DEBUG
        if log.isEnabledFor(level):
            text = call.summary if code is grpc.StatusCode.OK else fit(message, 1000)
            log.log(
                level,
                "%s %s in %.1f ms%s",
                call.rpc,
                code.name,
                seconds * 1000,
                f": {text}" if text else "",
                extra={"code": code.name, "duration_ms": round(seconds * 1000, 3)},
            )
        if self.metrics is not None:
            self.metrics.record_call(call.service, call.rpc, call.algorithm, code.name, seconds, call.trials, call.db_calls)


def register(grpc_server: grpc.Server, servicer: object, service: str, raw: Iterable[str] = (), handlers: _Handlers | None = None) -> str:
    """Registers every RPC of `service` ("Suggestion", "EarlyStopping" or "DBManager") served by
    `servicer`'s methods of the same names; the methods in `raw` receive the request bytes.
    Returns the service's full name."""
    handlers = handlers or _Handlers(_Calls(), None)
    descriptor = api_pb2.DESCRIPTOR.services_by_name[service]
    methods = {}
    for m in descriptor.methods:
        request_type = None if m.name in raw else getattr(api_pb2, m.input_type.name)
        methods[m.name] = grpc.unary_unary_rpc_method_handler(
            handlers.unary(getattr(servicer, m.name), service, m.name, request_type),
            response_serializer=getattr(api_pb2, m.output_type.name).SerializeToString,
        )
    grpc_server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, methods),))
    return descriptor.full_name


def _register_health(grpc_server: grpc.Server, servicer: health.HealthServicer, handlers: _Handlers) -> None:
    """grpc.health.v1.Health, decoding its own requests (a bad Check request is INVALID_ARGUMENT).
    It answers while the server drains (NOT_SERVING then)."""

    def watch(data: bytes, context: grpc.ServicerContext):
        try:
            request = health_pb2.HealthCheckRequest.FromString(data)
        except DecodeError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid HealthCheckRequest ({error})")
        yield from servicer.Watch(request, context)

    methods = {
        "Check": grpc.unary_unary_rpc_method_handler(
            handlers.unary(servicer.Check, "Health", "Check", health_pb2.HealthCheckRequest, gated=False),
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        ),
        "Watch": grpc.unary_stream_rpc_method_handler(
            watch, response_serializer=health_pb2.HealthCheckResponse.SerializeToString
        ),
    }
    grpc_server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(health.SERVICE_NAME, methods),))


class Server:
    """A started gRPC server with health and reflection; `shutdown` drains it.

    `services` are (servicer, service) pairs, `service` being a service name of the API; a
    servicer may name the methods that take raw bytes in its `raw_methods` attribute, and its
    warm-state store in `store` (reported by the metrics). `tls` serves TLS (mutual TLS with a
    client CA); `metrics_port` serves Prometheus metrics over HTTP on that port (0: any free one,
    then in `self.metrics_port`).
    """

    def __init__(
        self,
        address: str,
        services: Sequence[tuple[object, str]],
        *,
        health_names: Sequence[str] = (),
        max_message_mb: int = DEFAULT_MAX_MESSAGE_MB,
        workers: int = DEFAULT_WORKERS,
        tls: ServerTls | None = None,
        metrics_port: int | None = None,
    ):
        limit = max_message_mb * 1024 * 1024
        self._servicers = [servicer for servicer, _ in services]
        self._calls = _Calls()
        self._metrics_http = None
        self.metrics_port = None
        metrics = None
        if metrics_port is not None:
            from . import metrics

            metrics.watch(self)
            self._metrics_http = metrics.serve(metrics_port)
            self.metrics_port = self._metrics_http.server_port
        handlers = _Handlers(self._calls, metrics)
        self.grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers),
            options=message_options(limit),
        )
        self.health = health.HealthServicer()
        _register_health(self.grpc, self.health, handlers)
        full_names = [
            register(self.grpc, servicer, service, getattr(servicer, "raw_methods", ()), handlers) for servicer, service in services
        ]
        reflection.enable_server_reflection([*full_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.grpc)
        try:
            self.port = self.grpc.add_insecure_port(address) if tls is None else self.grpc.add_secure_port(address, tls.credentials)
        except RuntimeError:  # gRPC's "failed to bind": the port is taken, or the certificate or key was refused
            self.port = 0
        if self.port == 0:
            refused = "" if tls is None else " (or --tls-cert and --tls-key are not a PEM certificate chain and its key)"
            raise OSError(f"cannot listen on {address}{refused}")
        self.address = f"{address.rpartition(':')[0]}:{self.port}"
        self.grpc.start()
        for name in ("", *health_names, *full_names):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._stopped = threading.Event()
        self._shutting_down = threading.Lock()

    def in_flight(self) -> int:
        return len(self._calls)

    def stores(self) -> list[StateStore]:
        return [s for s in (getattr(servicer, "store", None) for servicer in self._servicers) if isinstance(s, StateStore)]

    def shutdown(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Reports NOT_SERVING and refuses new calls (UNAVAILABLE) at once; waits up to `grace` s
        for the calls in flight, then cancels the rest. Returns within about half a second after
        the grace even if a cancelled call is still computing (its thread is left to finish)."""
        if not self._shutting_down.acquire(blocking=False):
            self._stopped.wait()
            return
        self.health.enter_graceful_shutdown()
        self._calls.close()
        if not self._calls.wait_idle(max(grace, 0)):
            log.warning("grace of %gs over: cancelling %d call(s) in flight", grace, len(self._calls))
        done = self.grpc.stop(0)  # cancels what is left, health watchers included
        done.wait(CANCEL_WAIT_SECONDS)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the server has stopped; waits at most `timeout` seconds."""
        return self._stopped.wait(timeout)


def add_server_arguments(parser: argparse.ArgumentParser, default_address: str) -> None:
    """The flags every server has: address, limits, shutdown, logging, metrics and TLS."""
    parser.add_argument("--address", default=default_address, help=f"HOST:PORT to listen on (default {default_address})")
    parser.add_argument("--max-message-mb", type=int, default=DEFAULT_MAX_MESSAGE_MB, help=f"largest request or reply in MiB (default {DEFAULT_MAX_MESSAGE_MB})")
    parser.add_argument(
        "--grace", type=float, default=DEFAULT_GRACE_SECONDS,
        help=f"seconds calls in flight get to finish after SIGTERM; then they are cancelled (default {DEFAULT_GRACE_SECONDS:g})",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text", help="text lines, or one JSON object per line (default text)")
    parser.add_argument("--metrics-port", type=port, metavar="PORT", help="serve Prometheus metrics over HTTP at :PORT/metrics (default: off)")
    add_server_tls_arguments(parser)


def server_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """Configures logging; the options of `Server` that the flags of `add_server_arguments` set."""
    configure_logging(args.log_level, args.log_format)
    return {"max_message_mb": args.max_message_mb, "tls": server_tls(parser, args), "metrics_port": args.metrics_port}


def add_state_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-entries", type=int, default=DEFAULT_ENTRIES, help=f"warm per-experiment state entries kept (default {DEFAULT_ENTRIES}; 0 keeps none)")
    parser.add_argument("--state-mb", type=int, default=DEFAULT_MEGABYTES, help=f"MiB of warm per-experiment state kept (default {DEFAULT_MEGABYTES})")


def state_store(args: argparse.Namespace) -> StateStore:
    return StateStore(max(args.state_entries, 0), max(args.state_mb, 0) << 20)


def message_options(limit: int) -> list[tuple[str, int]]:
    """gRPC options for messages of up to `limit` bytes both ways (a server's, and its clients')."""
    return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]


def positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0 to 65535)")
    return value


def _exit(status: int) -> None:
    """Ends the process now: threads still computing for cancelled calls are not waited for."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def serve_until_signal(server: Server, grace: float, banner: str) -> None:
    """Prints the banner, then serves until SIGTERM or SIGINT; drains (`Server.shutdown`) and
    exits 0. A second signal exits at once with 128 + its number."""
    received = []

    def on_signal(signum, _frame):
        name = signal.Signals(signum).name
        if received:
            log.warning("second signal (%s): exiting now, calls in flight are dropped", name)
            _exit(128 + signum)
        received.append(signum)
        log.info("%s received: NOT_SERVING, new calls refused, calls in flight get up to %gs", name, grace)
        threading.Thread(target=server.shutdown, args=(grace,), daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(banner, flush=True)
    log.info(banner + (f"; metrics on :{server.metrics_port}/metrics" if server.metrics_port is not None else ""))
    while not server.wait(0.5):  # short waits keep the main thread responsive to signals
        pass
    log.info("stopped")
    _exit(0)


def start_or_exit(parser: argparse.ArgumentParser, start: Callable[[], Server]) -> Server:
    """`start()`, with a port that cannot be bound (gRPC or metrics) as a usage error."""
    try:
        return start()
    except OSError as error:
        parser.error(str(error))


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
    server_kwargs = server_options(parser, args)
    server = start_or_exit(
        parser, lambda: start(args.algorithm, args.address, store=state_store(args), **server_kwargs, **options(args))
    )
    serve_until_signal(server, args.grace, f"{prog} serving {args.algorithm} on {server.address}")
