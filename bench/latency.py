"""Suggestion service latency: cold start, GetSuggestions round trips and peak memory.

    python bench/latency.py [--repeats N] [--algorithms random grid] [--trials 0 100 1000 5000 10000]
                            [--setting NAME=VALUE ...] [--batch N] [--calls N] [--labelled]
                            [--address HOST:PORT [--command "CMD ..."]]
    python bench/latency.py --footprint [--algorithms ...] [--trials 1000] [--repeats N]

Everything goes over real gRPC. The server is this project's `services.suggestion`, run as a child
process, unless `--address` names any service that speaks Katib's v1beta1 `api.v1.beta1.Suggestion`
API (Katib's own services, for one); `--command` starts that service, so that its cold start and
memory are measured too.

1. Cold start: the server is started `--repeats` times per algorithm; the time from process
   start to ready (health SERVING, or a ValidateAlgorithmSettings that succeeds where there is no
   health service) is reported (median and max).
2. Latency: per algorithm and trial count, one realistic request (4 parameters, distinct trial
   points in a mix of conditions) is sent repeatedly. The first call, which parses every trial,
   is reported apart from the p50 and p95 of the calls after it. Every reply must hold
   `--batch` assignments that no trial has, or the script exits non-zero. With `--labelled`
   the trials are instead the service's own proposals (it is driven ask, evaluate, tell up to the
   trial count), and the first call of a new server with that history is reported too.
3. Peak memory: VmHWM of the server's process tree once all its requests are served.

`--footprint` prints one row per algorithm instead: cold start (median and max of `--repeats`),
idle RSS (VmRSS once SERVING and one ValidateAlgorithmSettings answered, so the algorithm's
module is loaded, before any GetSuggestions) and peak RSS (VmHWM) after `--calls` (default 5)
GetSuggestions at each of `--trials` (default 1000), each on a fresh server.

Results are printed as markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import random
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from katib_services.algorithms import registry  # noqa: E402
from katib_services.services.client import ServerProcess, assignments, experiment_pb, trial_pb  # noqa: E402
from katib_services.services.pb import api_pb2, api_pb2_grpc  # noqa: E402

OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad")
CONDITION_WEIGHTS = {"Succeeded": 85, "Running": 6, "Failed": 6, "MetricsUnavailable": 3}
CALL_TIMEOUT_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 120.0
MANY_TRIALS = 1000  # above this many trials, fewer calls are timed
CALLS_FEW_TRIALS, CALLS_MANY_TRIALS = 50, 20
SEED = 20240601
KATIB_HEALTH_NAME = "manager.v1beta1.Suggestion"  # the only name Katib's own services report SERVING for
# Poll a starting server every few ms: gRPC's default reconnect backoff (1 s and up) would inflate cold starts.
PROBE_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 10),
    ("grpc.min_reconnect_backoff_ms", 10),
    ("grpc.max_reconnect_backoff_ms", 50),
    ("grpc.use_local_subchannel_pool", 1),
]


@dataclass(frozen=True)
class Latency:
    algorithm: str
    trials: int
    first_ms: float
    p50_ms: float
    p95_ms: float
    new_pod: str | None = None  # --labelled: first call of a new server with the same history (ms, or the error)


@dataclass(frozen=True)
class Target:
    """Where requests go: this project's server (no address), or the service at `address`, which
    `command` starts (or which is already running, when there is no command)."""

    address: str | None = None
    command: tuple[str, ...] = ()

    @property
    def startable(self) -> bool:
        return self.address is None or bool(self.command)


@dataclass(frozen=True)
class Server:
    stub: api_pb2_grpc.SuggestionStub
    pid: int | None  # None: a service this script did not start
    ready_seconds: float | None


# -- the request ------------------------------------------------------------------------------


def parameters(algorithm: str) -> list[dict]:
    """The search space in Katib YAML shape; grid needs a step on every double."""
    lr = (
        {"min": "0.001", "max": "0.1", "step": "0.001"}
        if algorithm == "grid"
        else {"min": "0.0001", "max": "0.1", "distribution": "logUniform"}
    )
    return [
        {"name": "lr", "parameterType": "double", "feasibleSpace": lr},
        {"name": "layers", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "8"}},
        {"name": "dropout", "parameterType": "double", "feasibleSpace": {"min": "0.0", "max": "0.5", "step": "0.05"}},
        {"name": "optimizer", "parameterType": "categorical", "feasibleSpace": {"list": list(OPTIMIZERS)}},
    ]


def axis_values(parameter: Mapping) -> list[str]:
    """Every value of a finite parameter, formatted as the server formats them."""
    space = parameter["feasibleSpace"]
    if "list" in space:
        return list(space["list"])
    low, high, step = Decimal(space["min"]), Decimal(space["max"]), Decimal(space.get("step", "1"))
    return [str(low + step * k) for k in range(int((high - low) // step) + 1)]


GRID_SIZE = math.prod(len(axis_values(p)) for p in parameters("grid"))


def sampler(parameter: Mapping) -> Callable[[random.Random], str]:
    """Draws one value of a parameter: log-uniform if continuous, else a uniform pick of its values."""
    space = parameter["feasibleSpace"]
    if space.get("distribution") == "logUniform":
        low, high = math.log(float(space["min"])), math.log(float(space["max"]))
        return lambda rng: repr(math.exp(rng.uniform(low, high)))
    values = axis_values(parameter)
    return lambda rng: rng.choice(values)


def canonical(assignment: Mapping[str, str]) -> frozenset:
    """An assignment with numbers compared by value, so "0.10" equals "0.1"."""

    def value(text: str) -> object:
        try:
            return Decimal(text).normalize()
        except InvalidOperation:
            return text

    return frozenset((name, value(text)) for name, text in assignment.items())


def distinct_points(space: Sequence[Mapping], count: int, rng: random.Random) -> list[dict[str, str]]:
    """`count` different random points of the space."""
    draws = {p["name"]: sampler(p) for p in space}
    seen: set[frozenset] = set()
    points = []
    while len(points) < count:
        point = {name: draw(rng) for name, draw in draws.items()}
        key = canonical(point)
        if key not in seen:
            seen.add(key)
            points.append(point)
    return points


def outcome(rng: random.Random) -> tuple[str, dict[str, str]]:
    """A trial's condition and its `accuracy`, "unavailable" unless it reported one."""
    condition = rng.choices(list(CONDITION_WEIGHTS), weights=list(CONDITION_WEIGHTS.values()))[0]
    reported = condition in ("Succeeded", "Running")
    return condition, {"accuracy": f"{rng.uniform(0.5, 0.99):.4f}" if reported else "unavailable"}


def toy_accuracy(assignment: Mapping[str, str]) -> float:
    """A cheap smooth objective for --labelled (best at lr 0.01, 4 layers, dropout 0.2, sgd)."""
    return (
        0.95
        - 0.02 * (math.log10(float(assignment["lr"])) + 2) ** 2
        - 0.002 * (float(assignment["layers"]) - 4) ** 2
        - 0.2 * (float(assignment["dropout"]) - 0.2) ** 2
        - 0.01 * OPTIMIZERS.index(assignment["optimizer"])
    )


def experiment(algorithm: str, trial_count: int, settings: Mapping[str, str]) -> api_pb2.Experiment:
    """Named per case, so that a server's trial cache starts cold for each."""
    spec = {
        "parameters": parameters(algorithm),
        "objective": {"type": "maximize", "goal": 0.99, "objectiveMetricName": "accuracy"},
        "algorithm": {"algorithmName": algorithm, "algorithmSettings": [{"name": k, "value": v} for k, v in settings.items()]},
        "maxTrialCount": GRID_SIZE if algorithm == "grid" else 0,  # 0: no limit
    }
    return experiment_pb(f"bench-{algorithm}-{trial_count}", spec)


def trial(exp: api_pb2.Experiment, index: int, *args) -> api_pb2.Trial:
    """A trial_pb with the experiment's objective in its spec, as Katib's controller sends it (Katib's
    own services read the metric name there)."""
    out = trial_pb(f"bench-{index:05d}", *args)
    out.spec.objective.CopyFrom(exp.spec.objective)
    return out


def random_trials(exp: api_pb2.Experiment, algorithm: str, trial_count: int, variant: str = "") -> list[api_pb2.Trial]:
    """Distinct random trials; a `variant` draws a different set."""
    rng = random.Random(f"{SEED}-{algorithm}-{trial_count}{variant}")
    points = distinct_points(parameters(algorithm), trial_count, rng)
    return [trial(exp, i, point, *outcome(rng)) for i, point in enumerate(points)]


def suggestion_request(exp: api_pb2.Experiment, trials: Sequence[api_pb2.Trial], batch: int) -> api_pb2.GetSuggestionsRequest:
    return api_pb2.GetSuggestionsRequest(
        experiment=exp, trials=trials, current_request_number=batch, total_request_number=len(trials) + batch
    )


# -- the server -------------------------------------------------------------------------------


def server_argv(algorithm: str) -> list[str]:
    return ["katib_services.services.suggestion", "--algorithm", algorithm, "--log-level", "WARNING"]


def is_ready(channel: grpc.Channel, exp: api_pb2.Experiment) -> bool:
    """Health SERVING (for "" or Katib's service name); with no health service, a successful
    ValidateAlgorithmSettings."""
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", KATIB_HEALTH_NAME):
        try:
            return health.Check(health_pb2.HealthCheckRequest(service=name), timeout=1.0).status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                break
            if error.code() != grpc.StatusCode.NOT_FOUND:
                return False
    with contextlib.suppress(grpc.RpcError):
        api_pb2_grpc.SuggestionStub(channel).ValidateAlgorithmSettings(
            api_pb2.ValidateAlgorithmSettingsRequest(experiment=exp), timeout=CALL_TIMEOUT_SECONDS
        )
        return True
    return False


def wait_ready(channel: grpc.Channel, exp: api_pb2.Experiment, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not is_ready(channel, exp):
        if process is not None and process.poll() is not None:
            sys.exit(f"FAIL the command exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            sys.exit(f"FAIL the service was not ready after {READY_TIMEOUT_SECONDS:.0f}s")
        time.sleep(0.005)


def stop_group(process: subprocess.Popen) -> None:
    """Ends the command's whole process group: SIGTERM, then SIGKILL for whatever is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)


@contextlib.contextmanager
def serve(target: Target, algorithm: str, exp: api_pb2.Experiment) -> Iterator[Server]:
    """A ready server for `algorithm`: started here unless `target` is a service already running."""
    if target.address is None:
        with ServerProcess(server_argv(algorithm)) as own:
            yield Server(api_pb2_grpc.SuggestionStub(own.channel), own.process.pid, own.ready_seconds)
        return
    with grpc.insecure_channel(target.address, options=PROBE_CHANNEL_OPTIONS) as channel:
        if not target.command:
            wait_ready(channel, exp)
            yield Server(api_pb2_grpc.SuggestionStub(channel), None, None)
            return
        if is_ready(channel, exp):
            sys.exit(f"FAIL {target.address} already answers: stop that service first")
        start = time.perf_counter()
        process = subprocess.Popen(target.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_ready(channel, exp, process)
            yield Server(api_pb2_grpc.SuggestionStub(channel), process.pid, time.perf_counter() - start)
        finally:
            stop_group(process)


def process_tree(root: int) -> list[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree = [root]
    for pid in tree:  # grows while it is walked
        tree += [child for child, parent in parents.items() if parent == pid]
    return tree


def peak_rss_mib(root: int, field: str = "VmHWM") -> float:
    """The peak resident set size (VmHWM; or another /proc status `field`, as VmRSS) of a process
    and its descendants, summed, in MiB."""
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1])
    return total / 1024


# -- measuring --------------------------------------------------------------------------------


def check_reply(reply: api_pb2.GetSuggestionsReply, taken: set[frozenset], batch: int, case: str) -> None:
    proposed = assignments(reply)
    if len(proposed) != batch:
        sys.exit(f"FAIL {case}: {len(proposed)} assignments instead of {batch}")
    for assignment in proposed:
        if canonical(assignment) in taken:
            sys.exit(f"FAIL {case}: proposed {assignment}, which a trial already has")


def trial_points(request: api_pb2.GetSuggestionsRequest) -> set[frozenset]:
    return {canonical({a.name: a.value for a in t.spec.parameter_assignments.assignments}) for t in request.trials}


def round_trip(stub: api_pb2_grpc.SuggestionStub, request: api_pb2.GetSuggestionsRequest) -> tuple[float, api_pb2.GetSuggestionsReply]:
    start = time.perf_counter()
    reply = stub.GetSuggestions(request, timeout=CALL_TIMEOUT_SECONDS)
    return (time.perf_counter() - start) * 1000, reply


def timed_calls(
    stub: api_pb2_grpc.SuggestionStub, request: api_pb2.GetSuggestionsRequest, taken: set[frozenset], calls: int, case: str
) -> tuple[list[float], api_pb2.GetSuggestionsReply]:
    """Round-trip milliseconds of `calls` identical calls, each reply checked against `taken`; and the last reply."""
    times = []
    for _ in range(calls):
        try:
            milliseconds, reply = round_trip(stub, request)
        except grpc.RpcError as error:
            sys.exit(f"FAIL {case}: {error.code().name}: {error.details()}")
        times.append(milliseconds)
        check_reply(reply, taken, request.current_request_number, case)
    return times, reply


def drive(stub: api_pb2_grpc.SuggestionStub, exp: api_pb2.Experiment, trial_count: int, batch: int, case: str) -> list[api_pb2.Trial]:
    """A history of the service's own proposals: ask, evaluate `toy_accuracy`, send back as Succeeded
    with the labels the reply gave, until there are `trial_count` trials."""
    trials: list[api_pb2.Trial] = []
    taken: set[frozenset] = set()
    while len(trials) < trial_count:
        reply = timed_calls(stub, suggestion_request(exp, trials, batch), taken, 1, f"{case} (building the history)")[1]
        for item in reply.parameter_assignments[: trial_count - len(trials)]:
            point = {a.name: a.value for a in item.assignments}
            taken.add(canonical(point))
            trials.append(trial(exp, len(trials), point, "Succeeded", {"accuracy": f"{toy_accuracy(point):.6f}"}, dict(item.labels)))
    return trials


def measure(target: Target, algorithm: str, trial_counts: Sequence[int], args: argparse.Namespace) -> tuple[list[Latency], float | None]:
    """Latencies of the trial counts against one server, and its peak RSS after them (None if not ours)."""
    results, requests = [], []
    with serve(target, algorithm, experiment(algorithm, 0, args.settings)) as server:
        for trial_count in trial_counts:
            case = f"{algorithm} with {trial_count} trials"
            exp = experiment(algorithm, trial_count, args.settings)
            trials = drive(server.stub, exp, trial_count, args.batch, case) if args.labelled else random_trials(exp, algorithm, trial_count)
            request = suggestion_request(exp, trials, args.batch)
            taken = trial_points(request)
            first = timed_calls(server.stub, request, taken, 1, case)[0][0]
            calls = args.calls or (CALLS_FEW_TRIALS if trial_count <= MANY_TRIALS else CALLS_MANY_TRIALS)
            times = timed_calls(server.stub, request, taken, calls, case)[0]
            p95 = statistics.quantiles(times, n=100, method="inclusive")[94]
            results.append(Latency(algorithm, trial_count, first, statistics.median(times), p95))
            requests.append(request)
        rss = peak_rss_mib(server.pid) if server.pid else None
    if args.labelled and target.startable:  # after the warm server stopped: a command's port is fixed
        results = [replace(r, new_pod=new_pod(target, algorithm, q)) for r, q in zip(results, requests)]
    return results, rss


def new_pod(target: Target, algorithm: str, request: api_pb2.GetSuggestionsRequest) -> str:
    """Milliseconds of the first GetSuggestions of a freshly started server with the request's whole
    history (a new pod's full replay), after a ValidateAlgorithmSettings; or the error, as a service
    that keeps its history in memory may fail."""
    with serve(target, algorithm, request.experiment) as fresh:
        try:
            # As Katib would before its first call: this also waits for the algorithm's module, which
            # this project's server loads in the background after answering SERVING (see --footprint).
            fresh.stub.ValidateAlgorithmSettings(
                api_pb2.ValidateAlgorithmSettingsRequest(experiment=request.experiment), timeout=CALL_TIMEOUT_SECONDS
            )
            milliseconds, reply = round_trip(fresh.stub, request)
        except grpc.RpcError as error:
            return f"fails: {error.code().name}"
    check_reply(reply, trial_points(request), request.current_request_number, f"{algorithm} with {len(request.trials)} trials (new server)")
    return f"{milliseconds:.1f}"


# -- reporting --------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [headers, ["---"] * len(headers), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def machine(target: Target) -> str:
    service = f"service: {target.address}" + (f" started as `{shlex.join(target.command)}`" if target.command else " (already running)")
    return (
        f"machine: nproc={len(os.sched_getaffinity(0))}, Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}, {platform.system()} {platform.machine()}"
        + ("" if target.address is None else f"\n{service}")
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="cold starts per algorithm (default 5)")
    parser.add_argument("--algorithms", nargs="+", default=["random", "grid"], choices=registry.names())
    parser.add_argument("--trials", nargs="+", type=int, default=[0, 100, 1000, 5000, 10000], help="trial counts to time")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE", help="an algorithm setting (repeatable)")
    parser.add_argument("--batch", type=int, default=1, help="assignments asked per call: current_request_number (default 1)")
    parser.add_argument("--calls", type=int, help=f"timed calls after the first (default {CALLS_FEW_TRIALS}, {CALLS_MANY_TRIALS} above {MANY_TRIALS} trials)")
    parser.add_argument("--labelled", action="store_true", help="trials are the service's own proposals, with their labels (cmaes replay)")
    parser.add_argument("--address", metavar="HOST:PORT", help="measure the Suggestion service at this address instead of this project's")
    parser.add_argument("--command", help="with --address: the command that starts that service (cold start and RSS are then measured)")
    parser.add_argument("--footprint", action="store_true", help="per algorithm: cold start, idle RSS and peak RSS at each --trials (default 1000)")
    args = parser.parse_args(argv)
    if args.footprint:
        if args.address:
            parser.error("--footprint measures this project's server: it takes no --address")
        if args.trials == parser.get_default("trials"):
            args.trials = [1000]
    if args.repeats < 1 or args.batch < 1 or (args.calls is not None and args.calls < 2):
        parser.error("--repeats and --batch must be at least 1, --calls at least 2")
    if min(args.trials) < 0 or max(args.trials) + args.batch > GRID_SIZE:
        parser.error(f"--trials must be between 0 and {GRID_SIZE - args.batch} (the grid has {GRID_SIZE} points)")
    if args.command and not args.address:
        parser.error("--command needs --address: the address the command's service listens on")
    if any("=" not in s for s in args.setting):
        parser.error("--setting takes NAME=VALUE")
    args.settings = dict(s.split("=", 1) for s in args.setting)
    return args


def cold_start_table(target: Target, args: argparse.Namespace) -> str:
    rows = []
    for algorithm in args.algorithms:
        seconds = []
        for _ in range(args.repeats):
            with serve(target, algorithm, experiment(algorithm, 0, args.settings)) as server:
                seconds.append(server.ready_seconds)
        rows.append([algorithm, args.repeats, f"{statistics.median(seconds):.3f}", f"{max(seconds):.3f}"])
    return markdown_table(["algorithm", "starts", "median s", "max s"], rows)


def footprint_table(target: Target, args: argparse.Namespace) -> str:
    """Per algorithm: cold start, idle RSS and peak RSS after `args.calls` calls at each trial count."""
    rows = []
    for algorithm in args.algorithms:
        seconds, idle, peak = [], [], []
        for _ in range(args.repeats):
            exp = experiment(algorithm, 0, args.settings)
            with serve(target, algorithm, exp) as server:
                seconds.append(server.ready_seconds)
                server.stub.ValidateAlgorithmSettings(api_pb2.ValidateAlgorithmSettingsRequest(experiment=exp), timeout=CALL_TIMEOUT_SECONDS)
                idle.append(peak_rss_mib(server.pid, "VmRSS"))
        for trial_count in args.trials:
            exp = experiment(algorithm, trial_count, args.settings)
            with serve(target, algorithm, exp) as server:
                request = suggestion_request(exp, random_trials(exp, algorithm, trial_count), args.batch)
                timed_calls(server.stub, request, trial_points(request), args.calls or 5, f"{algorithm} with {trial_count} trials")
                peak.append(f"{peak_rss_mib(server.pid):.1f}")
        rows.append([algorithm, f"{statistics.median(seconds):.3f}", f"{max(seconds):.3f}", f"{statistics.median(idle):.1f}", *peak])
    headers = ["algorithm", "cold start median s", "cold start max s", "idle RSS MiB"] + [f"peak RSS MiB, {n} trials" for n in args.trials]
    return markdown_table(headers, rows)


def latency_and_rss_tables(target: Target, args: argparse.Namespace) -> tuple[str, str | None]:
    # Katib's own services keep the first experiment they see and every trial told to them, so a
    # started command (and --labelled) gets one server per case: one pod per experiment.
    per_case = args.labelled or bool(target.command)
    groups = [[n] for n in args.trials] if per_case else [args.trials]
    latency_rows, rss_rows = [], []
    for algorithm in args.algorithms:
        for trial_counts in groups:
            latencies, rss = measure(target, algorithm, trial_counts, args)
            latency_rows += [
                [r.algorithm, r.trials, f"{r.first_ms:.1f}", f"{r.p50_ms:.1f}", f"{r.p95_ms:.1f}"]
                + ([r.new_pod] if r.new_pod is not None else [])
                for r in latencies
            ]
            if rss is not None:
                rss_rows.append([algorithm, ", ".join(map(str, trial_counts)), f"{rss:.1f}"])
    headers = ["algorithm", "trials", "first call ms", "p50 ms", "p95 ms"]
    if args.labelled and target.startable:
        headers.append("new server first call ms")
    return (
        markdown_table(headers, latency_rows),
        markdown_table(["algorithm", "trial counts served", "peak RSS MiB"], rss_rows) if rss_rows else None,
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    target = Target(args.address, tuple(shlex.split(args.command or "")))
    os.chdir(ROOT)  # this project's server child is started with `python -m katib_services.services.suggestion`
    print(machine(target), end="\n\n")
    if args.footprint:
        print(f"Cold start, idle RSS (after one ValidateAlgorithmSettings) and peak RSS after {args.calls or 5} GetSuggestions, {args.repeats} starts\n")
        print(footprint_table(target, args))
        return
    if target.startable:
        print("Cold start (process start -> ready: health SERVING)\n")
        print(cold_start_table(target, args), end="\n\n")
    latency, rss = latency_and_rss_tables(target, args)
    history = "the service's own proposals (--labelled)" if args.labelled else "random trials"
    print(f"GetSuggestions round trip, {args.batch} assignment(s) per call, {history} (first call = cold trial cache)\n")
    print(latency)
    if rss:
        print("\nServer peak RSS (VmHWM of its process tree) after all its requests\n")
        print(rss)


if __name__ == "__main__":
    main()
