"""Does enas learn? A synthetic reward known as a function of the architecture, and the cost of a call.

    python bench/nas.py [--seeds 5] [--trials 60] [--batch 3] [--latency-trials 200 1000] [--setting NAME=VALUE ...]

The search space (`NAS_CONFIG`): 6 layers, 8 operation choices (conv with 3 filter sizes and 2
widths, pool max or avg), a skip bit from each layer to each earlier one: 8^6 x 2^15 architectures.
The reward of an architecture, for seed s (`SyntheticReward`):

    mean over layers of value[op]  +  0.5 * mean over skip pairs of weight[i][j] * bit[i][j]  +  noise

with value[op] uniform in [0, 1] and weight[i][j] one of -1, 0, +1, drawn from s; noise is normal
with sigma 0.1. enas is driven over real gRPC against a `katib-suggestion` child process: each
request asks for `--batch` architectures, which are scored (with noise) and sent back as Succeeded
trials with their labels. Random architectures (uniform operations, skip bits 1 with probability
1/2) are the baseline. The table gives, per seed, the mean noiseless reward of trials 31-60 (the
last half) of each, and the median over seeds.

Then the cost of a call at `--latency-trials` trials (a history driven from the service's own
proposals, batch 3): the first call of a new server with that history (a new pod replays the
controller's training), the steady state of a warm server (each call with one more finished
trial: one learning event, then the proposal), and a repeated identical request. Peak RSS is the
server's VmHWM after all of it, next to its RSS when idle after start-up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from katib_services.services.client import ServerProcess, experiment_pb, trial_pb  # noqa: E402
from katib_services.services.pb import api_pb2, api_pb2_grpc  # noqa: E402

LAYERS = 6
NAS_CONFIG = {
    "graphConfig": {"numLayers": LAYERS, "inputSizes": [32, 32, 3], "outputSizes": [10]},
    "operations": [
        {
            "operationType": "conv",
            "parameters": [
                {"name": "filter_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3", "5", "7"]}},
                {"name": "channels", "parameterType": "categorical", "feasibleSpace": {"list": ["16", "32"]}},
            ],
        },
        {"operationType": "pool", "parameters": [{"name": "kind", "parameterType": "categorical", "feasibleSpace": {"list": ["max", "avg"]}}]},
    ],
}
CHOICES = 8
NOISE = 0.1
METRIC = "reward"


class SyntheticReward:
    def __init__(self, seed: int, layers: int = LAYERS, choices: int = CHOICES):
        rng = np.random.default_rng(1000 + seed)
        self.layers = layers
        self.value = rng.uniform(0.0, 1.0, choices)
        self.weight = [rng.choice([-1.0, 0.0, 1.0], size=i) for i in range(layers)]
        self.pairs = layers * (layers - 1) / 2
        self.noise = np.random.default_rng(seed)

    def exact(self, architecture: list[list[int]]) -> float:
        ops = sum(self.value[row[0]] for row in architecture) / self.layers
        skips = sum(float(np.dot(self.weight[i], architecture[i][1:])) for i in range(1, self.layers)) / self.pairs
        return float(ops + 0.5 * skips)

    def observed(self, architecture: list[list[int]]) -> float:
        return self.exact(architecture) + float(self.noise.normal(0.0, NOISE))

    def random_architecture(self, rng: np.random.Generator) -> list[list[int]]:
        return [[int(rng.integers(len(self.value))), *(int(b) for b in rng.integers(0, 2, i))] for i in range(self.layers)]


def architecture_of(assignment: dict[str, str]) -> list[list[int]]:
    """The architecture as Katib's ENAS trial reads it."""
    return json.loads(assignment["architecture"].replace("'", '"'))


def experiment(name: str, seed: int, settings: dict[str, str] | None = None) -> api_pb2.Experiment:
    values = {"random_state": str(seed), **(settings or {})}
    return experiment_pb(
        name,
        {
            "objective": {"type": "maximize", "objectiveMetricName": METRIC},
            "algorithm": {"algorithmName": "enas", "algorithmSettings": [{"name": k, "value": v} for k, v in values.items()]},
            "nasConfig": NAS_CONFIG,
        },
    )


def drive(stub, exp: api_pb2.Experiment, reward: SyntheticReward, count: int, batch: int, trials=None) -> tuple[list, list[float]]:
    """Asks for `batch` architectures at a time until `count` trials exist; each is scored and sent
    back Succeeded with its labels. Returns the trials and the noiseless rewards in creation order."""
    trials = list(trials or [])
    exact = []
    while len(trials) < count:
        n = min(batch, count - len(trials))
        request = api_pb2.GetSuggestionsRequest(experiment=exp, trials=trials, current_request_number=n, total_request_number=len(trials) + n)
        for item in stub.GetSuggestions(request, timeout=60).parameter_assignments:
            assignment = {a.name: a.value for a in item.assignments}
            architecture = architecture_of(assignment)
            exact.append(reward.exact(architecture))
            metrics = {METRIC: reward.observed(architecture)}
            trials.append(trial_pb(f"t{len(trials):05d}", assignment, "Succeeded", metrics, dict(item.labels)))
    return trials, exact


def random_baseline(reward: SyntheticReward, count: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed + 99)
    return [reward.exact(reward.random_architecture(rng)) for _ in range(count)]


def late_mean(values: list[float], trials: int) -> float:
    return statistics.fmean(values[trials // 2 : trials])


def learning(seeds: int, trials: int, batch: int, settings: dict[str, str]) -> None:
    print(f"\nMean noiseless reward of trials {trials // 2 + 1}-{trials} (batch {batch})\n")
    print("| seed | random architectures | enas | enas best |\n| --- | --- | --- | --- |")
    rows = []
    with ServerProcess(["katib_services.services.suggestion", "--algorithm", "enas", "--log-level", "ERROR"]) as server:
        stub = api_pb2_grpc.SuggestionStub(server.channel)
        for seed in range(seeds):
            reward = SyntheticReward(seed)
            _, enas = drive(stub, experiment(f"bench-nas-{seed}", seed, settings), reward, trials, batch)
            rows.append((late_mean(random_baseline(reward, trials, seed), trials), late_mean(enas, trials)))
            print(f"| {seed} | {rows[-1][0]:.3f} | {rows[-1][1]:.3f} | {max(enas):.3f} |")
    medians = [statistics.median(column) for column in zip(*rows)]
    print(f"| median | {medians[0]:.3f} | {medians[1]:.3f} | |")


def rss_mib(pid: int, field: str) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def latency(counts: list[int], settings: dict[str, str]) -> None:
    print("\nGetSuggestions (1 architecture) with a history of the service's own proposals, batch 3\n")
    print("| trials | new server, first call ms | warm, one more trial per call: p50 ms | p95 ms | repeated request ms |")
    print("| --- | --- | --- | --- | --- |")
    memory = []
    for count in counts:
        reward = SyntheticReward(0)
        exp = experiment(f"bench-nas-latency-{count}", 0, settings)
        with ServerProcess(["katib_services.services.suggestion", "--algorithm", "enas", "--log-level", "ERROR"]) as warm:
            stub = api_pb2_grpc.SuggestionStub(warm.channel)
            trials, _ = drive(stub, exp, reward, count, 3)
            steps = []
            for _ in range(20):  # one more finished trial each time: a learning event, then the proposal
                start = time.perf_counter()
                trials, _ = drive(stub, exp, reward, len(trials) + 1, 1, trials)
                steps.append((time.perf_counter() - start) * 1000)
            request = api_pb2.GetSuggestionsRequest(experiment=exp, trials=trials, current_request_number=1, total_request_number=len(trials) + 1)
            repeated = statistics.median(timed(lambda: stub.GetSuggestions(request, timeout=60)) for _ in range(5))
            warm_peak = rss_mib(warm.process.pid, "VmHWM")
        with ServerProcess(["katib_services.services.suggestion", "--algorithm", "enas", "--log-level", "ERROR"]) as fresh:
            idle = rss_mib(fresh.process.pid, "VmRSS")
            first = timed(lambda: api_pb2_grpc.SuggestionStub(fresh.channel).GetSuggestions(request, timeout=60))
            memory.append((len(trials), idle, max(warm_peak, rss_mib(fresh.process.pid, "VmHWM"))))
        p50, p95 = statistics.median(steps), sorted(steps)[math.ceil(0.95 * len(steps)) - 1]
        print(f"| {len(trials)} | {first:.0f} | {p50:.1f} | {p95:.1f} | {repeated:.1f} |")
    print("\nPeak RSS (VmHWM) of the warm server and of the new one, and a new server's RSS once ready\n")
    print("| trials | idle RSS after start MiB | peak RSS MiB | above idle MiB |\n| --- | --- | --- | --- |")
    for count, idle, peak in memory:
        print(f"| {count} | {idle:.1f} | {peak:.1f} | {peak - idle:.1f} |")


def worst_case() -> None:
    """The largest learning work a request can ask for: 32 layers, 1,000 operation ids, hidden size
    128, 100 steps per reward; the controller then learns from the first `learnable` trials."""
    from katib_services.algorithms.enas import learnable
    from katib_services.algorithms.enas_controller import Config

    config = {
        "graphConfig": {"numLayers": 32, "inputSizes": [1], "outputSizes": [1]},
        "operations": [{"operationType": "op", "parameters": [{"name": "i", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "1000"}}]}],
    }
    settings = [{"name": "controller_hidden_size", "value": "128"}, {"name": "controller_train_steps", "value": "100"}]
    spec = {"objective": {"type": "maximize", "objectiveMetricName": METRIC}, "nasConfig": config,
            "algorithm": {"algorithmName": "enas", "algorithmSettings": settings}}  # fmt: skip
    exp = experiment_pb("bench-nas-worst", spec)
    count = learnable(Config(layers=32, operations=1000, hidden=128), 100) + 2
    with ServerProcess(["katib_services.services.suggestion", "--algorithm", "enas", "--log-level", "ERROR"]) as server:
        stub = api_pb2_grpc.SuggestionStub(server.channel)
        # The untrained controller's proposals, then all of them rewarded.
        one = stub.GetSuggestions(api_pb2.GetSuggestionsRequest(experiment=exp, current_request_number=count, total_request_number=count), timeout=60)
        pbs = [
            trial_pb(f"w{i:03d}", {a.name: a.value for a in item.assignments}, "Succeeded", {METRIC: i % 7}, dict(item.labels))
            for i, item in enumerate(one.parameter_assignments)
        ]
        request = api_pb2.GetSuggestionsRequest(experiment=exp, trials=pbs, current_request_number=1, total_request_number=count + 1)
        first = timed(lambda: stub.GetSuggestions(request, timeout=60))
        request.current_request_number = request.total_request_number = 1000  # the most one call may ask for
        thousand = timed(lambda: stub.GetSuggestions(request, timeout=60))
        peak = rss_mib(server.process.pid, "VmHWM")
    print("\nThe largest learning work (32 layers, 1,000 operation ids, controller_hidden_size 128, controller_train_steps 100)\n")
    print("| trials | learned from | new server, first call ms | then 1,000 architectures in one call ms | peak RSS MiB |")
    print(f"| --- | --- | --- | --- | --- |\n| {count} | {count - 2} | {first:.0f} | {thousand:.0f} | {peak:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--latency-trials", type=int, nargs="*", default=[200, 1000])
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE", help="an enas setting (repeatable)")
    parser.add_argument("--worst", action="store_true", help="also time the largest learning work a request can ask for")
    args = parser.parse_args()
    settings = dict(s.split("=", 1) for s in args.setting)
    print(f"nproc {len(os.sched_getaffinity(0))}, Python {platform.python_version()}, grpcio {grpc.__version__}")
    if args.seeds:
        learning(args.seeds, args.trials, args.batch, settings)
    if args.latency_trials:
        latency(args.latency_trials, settings)
    if args.worst:
        worst_case()
    return 0


if __name__ == "__main__":
    sys.exit(main())
