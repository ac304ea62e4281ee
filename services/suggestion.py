"""The generic Suggestion service and its CLI.

    katib-suggestion --algorithm NAME [--address HOST:PORT]      (default 0.0.0.0:6789)
    python -m services.suggestion --algorithm NAME ...

The server loads `--algorithm` at start-up. A request is served by the algorithm its experiment
names (`spec.algorithm.algorithmName`), so one image answers for every registered name; an empty
name falls back to `--algorithm`.
"""

from __future__ import annotations

import argparse
import logging
import time

from algorithms import registry
from algorithms.base import Algorithm, Request
from algorithms.errors import InvalidSpec, Problems
from algorithms.experiment import Experiment
from algorithms.history import History

from . import convert
from .pb import api_pb2, api_pb2_grpc
from .server import LEGACY_HEALTH_NAME, Server, add_server_arguments, configure_logging, rpc_method, serve_until_signal

log = logging.getLogger("katib.suggestion")

SERVICE_NAME = "api.v1.beta1.Suggestion"
DEFAULT_ADDRESS = "0.0.0.0:6789"


class SuggestionServicer(api_pb2_grpc.SuggestionServicer):
    def __init__(self, default_algorithm: str):
        self.default_algorithm = default_algorithm
        self.trial_cache = convert.TrialCache()

    def _prepare(self, pb: api_pb2.Experiment) -> tuple[Algorithm, Experiment, dict]:
        """Validates the experiment against the algorithm it names; raises InvalidSpec."""
        problems = Problems()
        name = pb.spec.algorithm.algorithm_name or self.default_algorithm
        algorithm = registry.get(name)
        if algorithm is None:
            problems.add(
                "spec.algorithm.algorithmName",
                f'unknown algorithm "{name}"; this service offers: {", ".join(registry.names())}',
            )
        experiment = convert.experiment(pb, problems)
        settings: dict = {}
        if algorithm is not None:
            settings = algorithm.schema.parse(name, experiment.settings, problems)
            if not problems.messages:
                algorithm.check(experiment, settings, problems)
        problems.raise_if_any()
        return algorithm, experiment, settings  # type: ignore[return-value]

    @rpc_method
    def ValidateAlgorithmSettings(self, request, context):
        self._prepare(request.experiment)
        return api_pb2.ValidateAlgorithmSettingsReply()

    @rpc_method
    def GetSuggestions(self, request, context):
        start = time.perf_counter()
        algorithm, experiment, settings = self._prepare(request.experiment)
        count = request.current_request_number
        if count < 0:
            raise InvalidSpec(f"current_request_number: ({count}) must not be negative")
        history = History(experiment, self.trial_cache.trials(experiment, request.experiment, request.trials))
        reply = algorithm.suggest(Request(experiment, settings, history, count, request.total_request_number))
        if len(reply.proposals) != count:
            raise RuntimeError(f"{algorithm.name} produced {len(reply.proposals)} assignments instead of {count}")
        log.info(
            "%s: %d assignment(s) for %d trial(s) in %.1f ms",
            algorithm.name,
            count,
            len(history.trials),
            (time.perf_counter() - start) * 1000,
        )
        return convert.suggestions_reply(reply, algorithm.name)


def start(algorithm: str, address: str = DEFAULT_ADDRESS, **options) -> Server:
    """Starts a Suggestion server for `algorithm` (which must be registered)."""
    if registry.get(algorithm) is None:
        raise ValueError(f'unknown algorithm "{algorithm}"; choose one of: {", ".join(registry.names())}')
    return Server(
        address,
        [(api_pb2_grpc.add_SuggestionServicer_to_server, SuggestionServicer(algorithm), SERVICE_NAME)],
        health_names=[LEGACY_HEALTH_NAME],
        **options,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="katib-suggestion", description="Serve one Katib search algorithm over gRPC.")
    parser.add_argument("--algorithm", required=True, choices=registry.names(), help="algorithm to serve")
    add_server_arguments(parser, DEFAULT_ADDRESS)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    server = start(args.algorithm, args.address, max_message_mb=args.max_message_mb)
    serve_until_signal(server, args.grace, f"katib-suggestion serving {args.algorithm} on {server.address}")


if __name__ == "__main__":
    main()
