"""GetEarlyStoppingRules latency: 1,000 succeeded trials with 100 log values each, cold and warm.

    python bench/earlystopping.py [--trials 1000] [--values 100] [--repeats 20]

A `katib-dbmanager` (SQLite) and a `katib-earlystopping` server run as child processes on
loopback. The logs are reported first; then the first GetEarlyStoppingRules call (cold: every
trial's log is read from the DB manager) and the calls after it (warm: the early means are
cached) are timed over gRPC.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from katib_services.services.client import ServerProcess, experiment_pb, trial_pb  # noqa: E402
from katib_services.services.pb import api_pb2, api_pb2_grpc  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--values", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(0)
    names = [f"bench-{i:05d}" for i in range(args.trials)]
    experiment = experiment_pb(
        "es-bench",
        {
            "parameters": [{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.1"}}],
            "objective": {"type": "maximize", "objectiveMetricName": "accuracy"},
            "algorithm": {"algorithmName": "random"},
            "earlyStopping": {"algorithmName": "medianstop"},
        },
    )
    trials = [trial_pb(name, {"lr": "0.05"}, "Succeeded", {"accuracy": "0.9"}) for name in names]
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(["katib_services.services.dbmanager", "--db", f"{tmp}/obs.db"]) as db:
        stub = api_pb2_grpc.DBManagerStub(db.channel)
        start = time.perf_counter()
        for name in names:
            request = api_pb2.ReportObservationLogRequest(trial_name=name)
            level = rng.random()
            for step in range(args.values):
                request.observation_log.metric_logs.add(
                    time_stamp=f"2026-11-28T10:{step // 60:02d}:{step % 60:02d}Z",
                    metric=api_pb2.Metric(name="accuracy", value=repr(level * (1 - 0.5 / (step + 1)))),
                )
            stub.ReportObservationLog(request, timeout=30)
        loaded = time.perf_counter() - start
        request = api_pb2.GetEarlyStoppingRulesRequest(experiment=experiment, trials=trials, db_manager_address=db.address)
        with ServerProcess(["katib_services.services.earlystopping", "--algorithm", "medianstop"]) as es:
            es_stub = api_pb2_grpc.EarlyStoppingStub(es.channel)
            timings = []
            for _ in range(args.repeats + 1):
                start = time.perf_counter()
                reply = es_stub.GetEarlyStoppingRules(request, timeout=60)
                timings.append((time.perf_counter() - start) * 1000)
    rule = reply.early_stopping_rules[0]
    warm = sorted(timings[1:])
    print(f"{args.trials} succeeded trials x {args.values} values reported in {loaded:.1f} s")
    print(f"rule: {rule.name} {api_pb2.ComparisonType.Name(rule.comparison)} {float(rule.value):.4f} from step {rule.start_step}\n")
    print("| call | ms |")
    print("|---|---|")
    print(f"| cold (first call, every log read) | {timings[0]:.1f} |")
    print(f"| warm p50 ({args.repeats} calls) | {statistics.median(warm):.1f} |")
    print(f"| warm p95 | {warm[int(0.95 * (len(warm) - 1))]:.1f} |")


if __name__ == "__main__":
    main()
