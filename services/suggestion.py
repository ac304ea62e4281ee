"""The generic Suggestion service and its CLI.

    katib-suggestion --algorithm NAME [--address HOST:PORT]      (default 0.0.0.0:6789)
    python -m katib_services.services.suggestion --algorithm NAME ...

The server loads `--algorithm` at start-up. A request is served by the algorithm its experiment
names (`spec.algorithm.algorithmName`), so one image answers for every registered name; an empty
name falls back to `--algorithm`.
"""

from __future__ import annotations

import logging
import time

import grpc
from google.protobuf.message import DecodeError

from katib_services.algorithms import registry
from katib_services.algorithms.base import Algorithm, Request
from katib_services.algorithms.errors import InvalidSpec, Problems
from katib_services.algorithms.experiment import Experiment
from katib_services.algorithms.history import History

from . import convert, wire
from .pb import api_pb2
from .server import LEGACY_HEALTH_NAME, Server, algorithm_cli, rpc_method, set_log_experiment

log = logging.getLogger("katib.suggestion")

SERVICE_NAME = "api.v1.beta1.Suggestion"
TRIALS_FIELD = api_pb2.GetSuggestionsRequest.DESCRIPTOR.fields_by_name["trials"].number
DEFAULT_ADDRESS = "0.0.0.0:6789"


class SuggestionServicer:
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
    def GetSuggestions(self, data: bytes, context):
        """Takes the serialized request: trials are sliced out as bytes for the trial cache."""
        start = time.perf_counter()
        try:
            rest, trial_blobs = wire.split_field(data, TRIALS_FIELD)
            request = api_pb2.GetSuggestionsRequest.FromString(rest)
        except (wire.WireError, DecodeError) as error:
            raise InvalidSpec(f"request: not a valid GetSuggestionsRequest ({error})") from None
        set_log_experiment(request.experiment.name)
        algorithm, experiment, settings = self._prepare(request.experiment)
        count = request.current_request_number
        if count < 0:
            raise InvalidSpec(f"current_request_number: ({count}) must not be negative")
        try:
            trials = self.trial_cache.trials(experiment, request.experiment, trial_blobs)
        except DecodeError as error:
            raise InvalidSpec(f"trials: a trial is not a valid Trial message ({error})") from None
        history = History(experiment, trials)
        reply = algorithm.suggest(Request(experiment, settings, history, count, request.total_request_number))
        if len(reply.proposals) != count:
            raise RuntimeError(f"{algorithm.name} produced {len(reply.proposals)} assignments instead of {count}")
        log.info(
            "%s: %d assignment(s) for %d trial(s) in %.1f ms",
            algorithm.name,
            count,
            len(trials),
            (time.perf_counter() - start) * 1000,
        )
        return convert.suggestions_reply(reply, algorithm.name)


def add_to_server(servicer: SuggestionServicer, server: grpc.Server) -> None:
    """Registers the Suggestion service; GetSuggestions receives its request as bytes."""
    handlers = {
        "GetSuggestions": grpc.unary_unary_rpc_method_handler(
            servicer.GetSuggestions,
            request_deserializer=bytes,
            response_serializer=api_pb2.GetSuggestionsReply.SerializeToString,
        ),
        "ValidateAlgorithmSettings": grpc.unary_unary_rpc_method_handler(
            servicer.ValidateAlgorithmSettings,
            request_deserializer=api_pb2.ValidateAlgorithmSettingsRequest.FromString,
            response_serializer=api_pb2.ValidateAlgorithmSettingsReply.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))


def start(algorithm: str, address: str = DEFAULT_ADDRESS, **options) -> Server:
    """Starts a Suggestion server for `algorithm` (which must be registered)."""
    if registry.get(algorithm) is None:
        raise ValueError(f'unknown algorithm "{algorithm}"; choose one of: {", ".join(registry.names())}')
    return Server(
        address,
        [(add_to_server, SuggestionServicer(algorithm), SERVICE_NAME)],
        health_names=[LEGACY_HEALTH_NAME],
        **options,
    )


def main(argv: list[str] | None = None) -> None:
    algorithm_cli("katib-suggestion", "Serve one Katib search algorithm over gRPC.", registry.names(), DEFAULT_ADDRESS, start, argv)

if __name__ == "__main__":
    main()
