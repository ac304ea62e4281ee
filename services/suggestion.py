"""The generic Suggestion service and its CLI.

    katib-suggestion --algorithm NAME [--address HOST:PORT] [--data-dir DIR]     (default 0.0.0.0:6789, /opt/katib/data)
    python -m katib_services.services.suggestion --algorithm NAME ...

The server loads `--algorithm` right after it answers SERVING. A request is served by the algorithm its experiment
names (`spec.algorithm.algorithmName`), so one image answers for every registered name; an empty
name falls back to `--algorithm`.
"""

from __future__ import annotations

import argparse
import dataclasses
import threading

from google.protobuf.message import DecodeError

from katib_services.algorithms import registry
from katib_services.algorithms.base import Algorithm, Reply, Request
from katib_services.algorithms.errors import Exhausted, InvalidSpec, Problems, TooLarge
from katib_services.algorithms.experiment import Experiment
from katib_services.algorithms.history import History
from katib_services.algorithms.limits import DEFAULT, Limits
from katib_services.numbers import quote
from katib_services.statestore import StateStore

from . import convert, wire
from .checkpoints import DEFAULT_DATA_DIR, CheckpointDirectories
from .pb import api_pb2
from .server import LEGACY_HEALTH_NAME, Server, algorithm_cli, caller_check, current_call, positive, set_log_experiment

SERVICE = "Suggestion"
TRIALS_FIELD = api_pb2.GetSuggestionsRequest.DESCRIPTOR.fields_by_name["trials"].number
DEFAULT_ADDRESS = "0.0.0.0:6789"


class SuggestionServicer:
    raw_methods = ("GetSuggestions",)  # trials are sliced out of the bytes for the trial cache

    def __init__(
        self, default_algorithm: str, limits: Limits = DEFAULT, store: StateStore | None = None, data_dir: str = DEFAULT_DATA_DIR
    ):
        self.default_algorithm = default_algorithm
        self.limits = limits
        self.store = store if store is not None else StateStore()
        self.trial_cache = convert.TrialCache(self.store.view("trials"))
        self.checkpoints = CheckpointDirectories(data_dir)

    def ValidateAlgorithmSettings(self, request, context):
        prepare(request.experiment, self.default_algorithm, self.limits)
        return api_pb2.ValidateAlgorithmSettingsReply()

    def GetSuggestions(self, data: bytes, context):
        """Takes the serialized request: trials are sliced out as bytes for the trial cache."""
        try:
            rest, trial_blobs = wire.split_field(data, TRIALS_FIELD)
            request = api_pb2.GetSuggestionsRequest.FromString(rest)
        except (wire.WireError, DecodeError) as error:
            raise InvalidSpec(f"request: not a valid GetSuggestionsRequest ({error})") from None
        set_log_experiment(request.experiment.name)
        current_call().trials = len(trial_blobs)
        count = request.current_request_number
        if count < 0:
            raise InvalidSpec(f"current_request_number: ({count}) must not be negative")
        if count > self.limits.request_number:
            raise TooLarge(
                f"current_request_number: ({count}) is more than this service proposes in one call "
                f"({self.limits.request_number}, --max-request-number)"
            )
        if len(trial_blobs) > self.limits.trials:
            raise TooLarge(
                f"trials: the request has {len(trial_blobs)} trials, more than this service reads "
                f"({self.limits.trials}, --max-trials)"
            )
        algorithm, experiment, settings = prepare(request.experiment, self.default_algorithm, self.limits)
        if count > experiment.space.count:
            raise Exhausted(
                f"current_request_number: {count} different assignments were asked for, and the search space "
                f"has only {experiment.space.count}; lower parallelTrialCount or widen the space"
            )
        try:
            trials = self.trial_cache.trials(experiment, request.experiment, trial_blobs)
        except DecodeError as error:
            raise InvalidSpec(f"trials: a trial is not a valid Trial message ({error})") from None
        history = History(experiment, trials)
        reply = algorithm.suggest(
            Request(
                experiment,
                settings,
                history,
                count,
                request.total_request_number,
                store=self.store.view(algorithm.name),
                check=caller_check(context),
            )
        )
        _verify(reply, experiment, count, algorithm.name)
        self.checkpoints.prepare(experiment.name, reply.proposals)  # before any trial of the reply can start
        current_call().summary = f"{algorithm.name}: {count} assignment(s) for {len(trials)} trial(s)"
        return convert.suggestions_reply(reply, algorithm.name)


def prepare(pb: api_pb2.Experiment, default_algorithm: str, limits: Limits) -> tuple[Algorithm, Experiment, dict]:
    """Validates the experiment against the algorithm it names (`default_algorithm` when it names
    none); raises InvalidSpec. Returns the algorithm, the experiment with the algorithm's space
    (`Algorithm.space`), and the parsed settings."""
    problems = Problems()
    name = pb.spec.algorithm.algorithm_name or default_algorithm
    algorithm = registry.get(name)
    if algorithm is None:
        problems.add(
            "spec.algorithm.algorithmName",
            f"unknown algorithm {quote(name)}; this service offers: {', '.join(registry.names())}",
        )
    experiment = convert.experiment(pb, problems, limits, architecture_search=algorithm is not None and algorithm.architecture_search)
    if experiment.parallel_trial_count > limits.request_number:
        problems.add(
            "spec.parallelTrialCount",
            f"({experiment.parallel_trial_count}) is more than this service proposes in one call "
            f"({limits.request_number}, --max-request-number)",
        )
    settings: dict = {}
    if algorithm is not None:
        current_call().algorithm = algorithm.name
        settings = algorithm.schema.parse(name, experiment.settings, problems)
        if not problems.messages:
            algorithm.check(experiment, settings, problems, limits)
    problems.raise_if_any()
    space = algorithm.space(experiment, settings)  # type: ignore[union-attr]
    if space is not experiment.space:  # the algorithm sets a parameter itself (hyperband's resource)
        experiment = dataclasses.replace(experiment, space=space)
    return algorithm, experiment, settings  # type: ignore[return-value]


def _verify(reply: Reply, experiment: Experiment, count: int, name: str) -> None:
    """What every reply must be: exactly `count` assignments, each a point of the space (the
    algorithm's, `Algorithm.space`), all different. Anything else is a bug of the algorithm
    (INTERNAL), never sent to Katib."""
    if len(reply.proposals) != count:
        raise RuntimeError(f"{name} produced {len(reply.proposals)} assignments instead of {count}")
    space = experiment.space
    points = set()
    for proposal in reply.proposals:
        point = space.key_of(proposal.assignment)
        if point is None or len(proposal.assignment) != len(space):
            raise RuntimeError(f"{name} produced an assignment outside the search space: {proposal.assignment}")
        points.add(point)
    if len(points) != count:
        raise RuntimeError(f"{name} produced {count - len(points)} repeated assignment(s) in one batch")


def start(
    algorithm: str,
    address: str = DEFAULT_ADDRESS,
    *,
    limits: Limits = DEFAULT,
    store: StateStore | None = None,
    data_dir: str = DEFAULT_DATA_DIR,
    **options,
) -> Server:
    """Starts a Suggestion server for `algorithm` (which must be registered); pbt keeps its
    checkpoint directories in `data_dir`.

    The server answers SERVING before the algorithm's module (Optuna, scipy, ...) is loaded: a
    background thread loads it then, and a call that comes first waits for it.
    """
    if algorithm not in registry.names():
        raise ValueError(f'unknown algorithm "{algorithm}"; choose one of: {", ".join(registry.names())}')
    servicer = SuggestionServicer(algorithm, limits, store, str(data_dir))
    server = Server(address, [(servicer, SERVICE)], health_names=[LEGACY_HEALTH_NAME], **options)
    threading.Thread(target=registry.get, args=(algorithm,), name=f"load-{algorithm}", daemon=True).start()
    return server


def _arguments(parser: argparse.ArgumentParser):
    flags = {
        "request_number": ("--max-request-number", "assignments one GetSuggestions may ask for"),
        "trials": ("--max-trials", "trials one request may carry"),
        "parameters": ("--max-parameters", "parameters of an experiment"),
        "list_values": ("--max-list-values", "values of one discrete or categorical parameter"),
        "grid_points": ("--max-grid-points", "points of a grid run without maxTrialCount"),
    }
    for field, (flag, meaning) in flags.items():
        default = getattr(DEFAULT, field)
        parser.add_argument(flag, dest=field, type=positive, default=default, help=f"largest number of {meaning} (default {default:,})")
    parser.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help=f"the volume where pbt keeps each trial's checkpoint directory (default {DEFAULT_DATA_DIR}, where Katib mounts it)",
    )
    return lambda args: {"limits": Limits(**{field: getattr(args, field) for field in flags}), "data_dir": args.data_dir}


def main(argv: list[str] | None = None) -> None:
    algorithm_cli(
        "katib-suggestion",
        "Serve one Katib search algorithm over gRPC.",
        registry.names(),
        DEFAULT_ADDRESS,
        start,
        argv,
        extra=_arguments,
    )


if __name__ == "__main__":
    main()
