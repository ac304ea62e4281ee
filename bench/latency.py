"""Suggestion service latency: cold start, GetSuggestions round trips and peak memory.

    python bench/latency.py [--repeats N] [--algorithms random grid] [--trials 0 100 1000 5000 10000]

Everything goes over real gRPC to `services.suggestion` run as a child process:

1. Cold start: the server is started `--repeats` times per algorithm; the time from process
   start to health SERVING is reported (median and max).
2. Latency: per algorithm and trial count, one realistic request (4 parameters, distinct trial
   points in a mix of conditions) is sent repeatedly. The first call, which parses every trial,
   is reported apart from the p50 and p95 of the calls after it, which hit the server's trial
   cache. Every reply must hold one assignment that no trial has, or the script exits non-zero.
3. Peak memory: VmHWM of each algorithm's server process once all its requests are served.

Results are printed as markdown tables.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from katib_services.algorithms import registry  # noqa: E402
from katib_services.services.client import ServerProcess, assignments, experiment_pb, trial_pb  # noqa: E402
from katib_services.services.pb import api_pb2, api_pb2_grpc  # noqa: E402

OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad")
CONDITION_WEIGHTS = {"Succeeded": 85, "Running": 6, "Failed": 6, "MetricsUnavailable": 3}
CALL_TIMEOUT_SECONDS = 60.0
MANY_TRIALS = 1000  # above this many trials, fewer calls are timed
CALLS_FEW_TRIALS, CALLS_MANY_TRIALS = 50, 20
SEED = 20240601


@dataclass(frozen=True)
class Latency:
    algorithm: str
    trials: int
    first_ms: float
    p50_ms: float
    p95_ms: float


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


def suggestion_request(algorithm: str, trial_count: int) -> api_pb2.GetSuggestionsRequest:
    """One request for one new assignment after `trial_count` trials; named per case so the
    server's trial cache starts cold for each."""
    rng = random.Random(f"{SEED}-{algorithm}-{trial_count}")
    space = parameters(algorithm)
    spec = {
        "parameters": space,
        "objective": {"type": "maximize", "goal": 0.99, "objectiveMetricName": "accuracy"},
        "algorithm": {"algorithmName": algorithm},
        "maxTrialCount": GRID_SIZE if algorithm == "grid" else 0,  # 0: no limit
    }
    trials = [
        trial_pb(f"bench-{i:05d}", point, *outcome(rng))
        for i, point in enumerate(distinct_points(space, trial_count, rng))
    ]
    return api_pb2.GetSuggestionsRequest(
        experiment=experiment_pb(f"bench-{algorithm}-{trial_count}", spec),
        trials=trials,
        current_request_number=1,
        total_request_number=len(trials) + 1,
    )


# -- measuring --------------------------------------------------------------------------------


def server_argv(algorithm: str) -> list[str]:
    return ["katib_services.services.suggestion", "--algorithm", algorithm, "--log-level", "WARNING"]


def cold_start_seconds(algorithm: str) -> float:
    with ServerProcess(server_argv(algorithm)) as server:
        return server.ready_seconds


def check_reply(reply: api_pb2.GetSuggestionsReply, taken: set[frozenset], case: str) -> None:
    proposed = assignments(reply)
    if len(proposed) != 1:
        sys.exit(f"FAIL {case}: {len(proposed)} assignments instead of 1")
    if canonical(proposed[0]) in taken:
        sys.exit(f"FAIL {case}: proposed {proposed[0]}, which a trial already has")


def trial_points(request: api_pb2.GetSuggestionsRequest) -> set[frozenset]:
    return {canonical({a.name: a.value for a in t.spec.parameter_assignments.assignments}) for t in request.trials}


def timed_calls(
    stub: api_pb2_grpc.SuggestionStub,
    request: api_pb2.GetSuggestionsRequest,
    taken: set[frozenset],
    calls: int,
    case: str,
) -> list[float]:
    """Round-trip milliseconds of `calls` identical calls, each reply checked against `taken`."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        try:
            reply = stub.GetSuggestions(request, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            sys.exit(f"FAIL {case}: {error.code().name}: {error.details()}")
        times.append((time.perf_counter() - start) * 1000)
        check_reply(reply, taken, case)
    return times


def measure(stub: api_pb2_grpc.SuggestionStub, algorithm: str, trial_count: int) -> Latency:
    request = suggestion_request(algorithm, trial_count)
    taken = trial_points(request)
    case = f"{algorithm} with {trial_count} trials"
    first = timed_calls(stub, request, taken, 1, case)[0]
    calls = CALLS_FEW_TRIALS if trial_count <= MANY_TRIALS else CALLS_MANY_TRIALS
    times = timed_calls(stub, request, taken, calls, case)
    p95 = statistics.quantiles(times, n=100, method="inclusive")[94]
    return Latency(algorithm, trial_count, first, statistics.median(times), p95)


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def serve_and_measure(algorithm: str, trial_counts: Sequence[int]) -> tuple[list[Latency], float]:
    """Latencies of every trial count against one server, and that server's peak RSS after them."""
    with ServerProcess(server_argv(algorithm)) as server:
        stub = api_pb2_grpc.SuggestionStub(server.channel)
        latencies = [measure(stub, algorithm, n) for n in trial_counts]
        return latencies, peak_rss_mib(server.process.pid)


# -- reporting --------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [headers, ["---"] * len(headers), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def machine() -> str:
    return (
        f"machine: nproc={len(os.sched_getaffinity(0))}, Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}, {platform.system()} {platform.machine()}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="cold starts per algorithm (default 5)")
    parser.add_argument("--algorithms", nargs="+", default=["random", "grid"], choices=registry.names())
    parser.add_argument("--trials", nargs="+", type=int, default=[0, 100, 1000, 5000, 10000], help="trial counts to time")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if min(args.trials) < 0 or max(args.trials) >= GRID_SIZE:
        parser.error(f"--trials must be between 0 and {GRID_SIZE - 1} (the grid has {GRID_SIZE} points)")
    return args


def cold_start_table(algorithms: Sequence[str], repeats: int) -> str:
    rows = []
    for algorithm in algorithms:
        seconds = [cold_start_seconds(algorithm) for _ in range(repeats)]
        rows.append([algorithm, repeats, f"{statistics.median(seconds):.3f}", f"{max(seconds):.3f}"])
    return markdown_table(["algorithm", "starts", "median s", "max s"], rows)


def latency_and_rss_tables(algorithms: Sequence[str], trial_counts: Sequence[int]) -> tuple[str, str]:
    latency_rows, rss_rows = [], []
    for algorithm in algorithms:
        latencies, rss = serve_and_measure(algorithm, trial_counts)
        latency_rows += [
            [r.algorithm, r.trials, f"{r.first_ms:.1f}", f"{r.p50_ms:.1f}", f"{r.p95_ms:.1f}"] for r in latencies
        ]
        rss_rows.append([algorithm, ", ".join(map(str, trial_counts)), f"{rss:.1f}"])
    return (
        markdown_table(["algorithm", "trials", "first call ms", "p50 ms", "p95 ms"], latency_rows),
        markdown_table(["algorithm", "trial counts served", "peak RSS MiB"], rss_rows),
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    os.chdir(ROOT)  # the server child is started with `python -m katib_services.services.suggestion`
    print(machine(), end="\n\n")
    print("Cold start (process start -> health SERVING)\n")
    print(cold_start_table(args.algorithms, args.repeats), end="\n\n")
    latency, rss = latency_and_rss_tables(args.algorithms, args.trials)
    print("GetSuggestions round trip, 1 assignment per call (first call = cold trial cache)\n")
    print(latency, end="\n\n")
    print("Server peak RSS (VmHWM) after all its requests\n")
    print(rss)


if __name__ == "__main__":
    main()
