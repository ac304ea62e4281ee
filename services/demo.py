"""A 20-trial experiment on a toy objective, driven over gRPC against a real suggestion server.

    katib-demo [--algorithm random|grid] [--trials 20] [--parallel 3]

It starts `katib-suggestion` as a child process, validates the experiment, then asks for batches
of up to `--parallel` assignments the way Katib's controller does (every trial in the request,
with its condition and observation), evaluates each on a toy function and prints the trials and
the best one.
"""

from __future__ import annotations

import argparse
import math

import grpc

from .client import ServerProcess, assignments, experiment_pb, trial_pb
from .pb import api_pb2, api_pb2_grpc

SPEC = {
    "objective": {"type": "maximize", "objectiveMetricName": "accuracy"},
    "parameters": [
        {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.1", "step": "0.01"}},
        {"name": "num_layers", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "5"}},
        {"name": "optimizer", "parameterType": "categorical", "feasibleSpace": {"list": ["sgd", "adam", "ftrl"]}},
    ],
}


def toy_accuracy(a: dict[str, str]) -> float:
    """A smooth toy objective: best near lr 0.03, 3 layers and adam."""
    lr, layers = float(a["lr"]), int(a["num_layers"])
    score = 0.95 - 0.15 * math.log10(lr / 0.03) ** 2 - 0.02 * (layers - 3) ** 2
    return round(score + {"adam": 0.03, "sgd": 0.0, "ftrl": -0.02}[a["optimizer"]], 4)


def run(algorithm: str, max_trials: int, parallel: int) -> list[tuple[str, dict, float]]:
    spec = dict(SPEC, algorithm={"algorithmName": algorithm}, maxTrialCount=max_trials, parallelTrialCount=parallel)
    experiment = experiment_pb(f"demo-{algorithm}", spec)
    results: list[tuple[str, dict, float]] = []
    with ServerProcess(["services.suggestion", "--algorithm", algorithm]) as server:
        print(f"katib-suggestion ({algorithm}) SERVING on {server.address} after {server.ready_seconds:.2f}s")
        stub = api_pb2_grpc.SuggestionStub(server.channel)
        stub.ValidateAlgorithmSettings(api_pb2.ValidateAlgorithmSettingsRequest(experiment=experiment), timeout=10)
        trials: list[api_pb2.Trial] = []
        while len(trials) < max_trials:
            count = min(parallel, max_trials - len(trials))
            request = api_pb2.GetSuggestionsRequest(
                experiment=experiment, trials=trials, current_request_number=count, total_request_number=len(trials) + count
            )
            for assignment in assignments(stub.GetSuggestions(request, timeout=60)):
                name = f"demo-{algorithm}-{len(trials) + 1:03d}"
                accuracy = toy_accuracy(assignment)
                trials.append(trial_pb(name, assignment, "Succeeded", {"accuracy": accuracy}))
                results.append((name, assignment, accuracy))
                print(f"{name}  {'  '.join(f'{k}={v}' for k, v in assignment.items()):<45} accuracy={accuracy}")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="katib-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", default="random", help="random or grid (default random)")
    parser.add_argument("--trials", type=int, default=20, help="maxTrialCount (default 20)")
    parser.add_argument("--parallel", type=int, default=3, help="parallelTrialCount (default 3)")
    args = parser.parse_args(argv)
    try:
        results = run(args.algorithm, args.trials, args.parallel)
    except grpc.RpcError as error:
        raise SystemExit(f"suggestion service answered {error.code().name}: {error.details()}")
    name, assignment, accuracy = max(results, key=lambda r: r[2])
    print(f"\nbest of {len(results)} trials: {name}  {assignment}  accuracy={accuracy}")


if __name__ == "__main__":
    main()
