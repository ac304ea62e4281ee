"""One server bootstrap for every service: health, reflection, size limits, logging, SIGTERM drain."""

from __future__ import annotations

import argparse
import contextvars
import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from katib_services.algorithms.errors import Exhausted, InvalidSpec

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
    _experiment.set(name or "-")


def configure_logging(level: str = "INFO") -> None:
    """Logs to stderr; every line carries the experiment of the call being served."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ExperimentFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(experiment)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def rpc_method(method: Callable) -> Callable:
    """Wraps a servicer method: logs under the request's experiment and maps errors to status codes.

    InvalidSpec -> INVALID_ARGUMENT, Exhausted -> FAILED_PRECONDITION, RpcFailure -> its code,
    anything else -> INTERNAL with the traceback logged. A call never ends with UNKNOWN.
    """

    @functools.wraps(method)
    def wrapper(self, request, context: grpc.ServicerContext):
        token = _experiment.set(getattr(getattr(request, "experiment", None), "name", "") or "-")  # reset below
        try:
            return method(self, request, context)
        except InvalidSpec as error:
            log.warning("%s rejected: %s", method.__name__, error)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Exhausted as error:
            log.warning("%s cannot proceed: %s", method.__name__, error)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except RpcFailure as error:
            log.warning("%s failed: %s: %s", method.__name__, error.code.name, error)
            context.abort(error.code, str(error))
        except Exception as error:
            log.exception("%s failed", method.__name__)
            context.abort(
                grpc.StatusCode.INTERNAL,
                f"internal error in {method.__name__}: {type(error).__name__}: {error} (the service log has the traceback)",
            )
        finally:
            _experiment.reset(token)

    return wrapper


class Server:
    """A started gRPC server with health and reflection; `shutdown` drains it."""

    def __init__(
        self,
        address: str,
        services: Sequence[tuple[Callable, object, str]],
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
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        full_names = []
        for add, servicer, full_name in services:
            add(servicer, self.grpc)
            full_names.append(full_name)
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
    parser.add_argument(
        "--max-message-mb",
        type=int,
        default=DEFAULT_MAX_MESSAGE_MB,
        help=f"largest request or reply in MiB (default {DEFAULT_MAX_MESSAGE_MB})",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        help=f"seconds to finish calls in flight after SIGTERM (default {DEFAULT_GRACE_SECONDS:g})",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")


def algorithm_cli(prog: str, description: str, choices: list[str], default_address: str, start: Callable, argv=None) -> None:
    """The CLI of a one-algorithm server: `PROG --algorithm NAME [--address HOST:PORT] ...`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--algorithm", required=True, choices=choices, help="the algorithm to serve")
    add_server_arguments(parser, default_address)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    server = start(args.algorithm, args.address, max_message_mb=args.max_message_mb)
    serve_until_signal(server, args.grace, f"{prog} serving {args.algorithm} on {server.address}")


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
