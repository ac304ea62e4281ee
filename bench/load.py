"""Many clients at once: errors, latency, throughput and memory of one server under load.

    python bench/load.py [--clients 32] [--calls 200] [--trials 100] [--algorithms random tpe medianstop]
                         [--modes own shared] [--processes 4] [--server-arg ARG ...]

Each algorithm gets a fresh server (for `medianstop`: `katib-earlystopping` reading a SQLite
`katib-dbmanager` that holds every trial's log), run as a child process on loopback. `--clients`
clients, spread over `--processes` client processes (so the clients' own Python does not
serialize them), each send `--calls` calls one after the other, all starting together:

- `own`: every client has its own experiment (its own name and `--trials` trials of its own);
- `shared`: every client sends the same experiment (one name, the same trials).

A call is GetSuggestions for one assignment (the trials: distinct points, mostly Succeeded, as in
bench/latency.py), or GetEarlyStoppingRules over `--trials` succeeded trials with 20 logged
values each. Requests are serialized once, up front. Reported per algorithm and mode: calls,
errors (any status but OK), p50 and p99 round trip, throughput (OK calls per second of wall time)
and the peak RSS of the server process(es). The ratio of p50s, own / shared, is what the issue's
concurrency target bounds. Exits non-zero if any call failed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency  # noqa: E402  (bench/latency.py: the request, RSS and tables)

import grpc  # noqa: E402

from katib_services.services.client import ServerProcess, experiment_pb, trial_pb  # noqa: E402
from katib_services.services.pb import api_pb2, api_pb2_grpc  # noqa: E402

EARLY_STOPPING = "medianstop"
LOG_VALUES = 20
METHODS = {"suggestion": "/api.v1.beta1.Suggestion/GetSuggestions", "earlystopping": "/api.v1.beta1.EarlyStopping/GetEarlyStoppingRules"}


# -- requests -----------------------------------------------------------------------------------


def suggestion_request(algorithm: str, name: str, trials: int) -> bytes:
    exp = latency.experiment(algorithm, trials, {})
    exp.name = name
    request = latency.suggestion_request(exp, latency.random_trials(exp, algorithm, trials, name), 1)
    return request.SerializeToString()


def early_stopping_request(name: str, trials: int, db_address: str) -> bytes:
    spec = {
        "parameters": latency.parameters("random"),
        "objective": {"type": "maximize", "objectiveMetricName": "accuracy"},
        "algorithm": {"algorithmName": "random"},
        "earlyStopping": {"algorithmName": EARLY_STOPPING},
    }
    request = api_pb2.GetEarlyStoppingRulesRequest(
        experiment=experiment_pb(name, spec),
        trials=[trial_pb(f"{name}-{i:05d}", {}, "Succeeded", {"accuracy": "0.9"}) for i in range(trials)],
        db_manager_address=db_address,
    )
    return request.SerializeToString()


def report_logs(channel: grpc.Channel, name: str, trials: int) -> None:
    stub = api_pb2_grpc.DBManagerStub(channel)
    for i in range(trials):
        request = api_pb2.ReportObservationLogRequest(trial_name=f"{name}-{i:05d}")
        for step in range(LOG_VALUES):
            value = (i % 97) / 100 * (1 - 0.5 / (step + 1))
            request.observation_log.metric_logs.add(time_stamp=f"2026-01-01T00:00:{step:02d}Z", metric=api_pb2.Metric(name="accuracy", value=repr(value)))
        stub.ReportObservationLog(request, timeout=30)


# -- clients ------------------------------------------------------------------------------------


def client_process(address: str, method: str, requests: list[bytes], calls: int, start_at: float, out) -> None:
    """Runs one thread per request: `calls` calls each, from `start_at` (time.time()) on."""
    channel = grpc.insecure_channel(address)
    call = channel.unary_unary(method)  # bytes in, bytes out: no client-side (de)serialization
    results: list[tuple[list[float], Counter, float, float]] = []

    def client(request: bytes) -> None:
        times, errors = [], Counter()
        while time.time() < start_at:
            time.sleep(0.001)
        began = time.time()
        for _ in range(calls):
            start = time.perf_counter()
            try:
                call(request, timeout=60)
                times.append((time.perf_counter() - start) * 1000)
            except grpc.RpcError as error:
                errors[error.code().name] += 1
        results.append((times, errors, began, time.time()))

    threads = [threading.Thread(target=client, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    channel.close()
    out.send(results)


def run_clients(address: str, method: str, requests: list[bytes], calls: int, processes: int):
    """All clients' (times, errors, began, ended), the clients spread over `processes` processes."""
    context = multiprocessing.get_context("spawn")  # no gRPC state inherited through fork
    start_at = time.time() + 2.0 + 0.3 * processes  # every process is up and every thread waiting
    pipes, workers = [], []
    for p in range(processes):
        receive, send = context.Pipe(duplex=False)
        worker = context.Process(target=client_process, args=(address, method, requests[p::processes], calls, start_at, send))
        worker.start()
        pipes.append(receive)
        workers.append(worker)
    results = [r for pipe in pipes for r in pipe.recv()]
    for worker in workers:
        worker.join()
    return results


# -- one case -----------------------------------------------------------------------------------


def measure(algorithm: str, mode: str, args: argparse.Namespace) -> list:
    names = [f"load-{mode}-{i:02d}" if mode == "own" else f"load-{mode}" for i in range(args.clients)]
    with ExitStack() as stack:
        if algorithm == EARLY_STOPPING:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            db = stack.enter_context(ServerProcess(["katib_services.services.dbmanager", "--db", f"{tmp}/obs.db", "--log-level", "WARNING"]))
            for name in sorted(set(names)):
                report_logs(db.channel, name, args.trials)
            server = stack.enter_context(ServerProcess(["katib_services.services.earlystopping", "--algorithm", algorithm, "--log-level", "WARNING", *args.server_arg]))
            by_name = {name: early_stopping_request(name, args.trials, db.address) for name in set(names)}
            method, pids = METHODS["earlystopping"], [server.process.pid, db.process.pid]
        else:
            server = stack.enter_context(ServerProcess([*latency.server_argv(algorithm), *args.server_arg]))
            by_name = {name: suggestion_request(algorithm, name, args.trials) for name in set(names)}
            method, pids = METHODS["suggestion"], [server.process.pid]
        results = run_clients(server.address, method, [by_name[n] for n in names], args.calls, args.processes)
        rss = sum(latency.peak_rss_mib(pid) for pid in pids)
    times = sorted(t for r in results for t in r[0])
    errors = sum((r[1] for r in results), Counter())
    wall = max(r[3] for r in results) - min(r[2] for r in results)
    p99 = statistics.quantiles(times, n=100, method="inclusive")[98] if len(times) > 1 else float("nan")
    return [
        algorithm,
        mode,
        args.clients * args.calls,
        sum(errors.values()) and ", ".join(f"{n} {c}" for c, n in errors.items()) or 0,
        f"{statistics.median(times):.1f}" if times else "-",
        f"{p99:.1f}",
        f"{len(times) / wall:.0f}",
        f"{rss:.1f}",
    ], statistics.median(times) if times else float("nan"), sum(errors.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--calls", type=int, default=200, help="calls per client")
    parser.add_argument("--trials", type=int, default=100, help="trials in each request")
    parser.add_argument("--algorithms", nargs="+", default=["random", "tpe", EARLY_STOPPING])
    parser.add_argument("--modes", nargs="+", choices=["own", "shared"], default=["own", "shared"])
    parser.add_argument("--processes", type=int, default=4, help="client processes the clients are spread over")
    parser.add_argument("--server-arg", action="append", default=[], help="an extra server flag (repeatable), e.g. --server-arg=--state-mb=96")
    args = parser.parse_args()
    print(latency.machine(latency.Target()))
    print(f"{args.clients} clients x {args.calls} calls, {args.trials} trials per request, {args.processes} client processes\n")
    rows, failed = [], 0
    for algorithm in args.algorithms:
        p50 = {}
        for mode in args.modes:
            row, p50[mode], errors = measure(algorithm, mode, args)
            rows.append(row)
            failed += errors
        if len(p50) == 2:
            rows[-1].append(f"{p50['own'] / p50['shared']:.2f}")
            rows[-2].append("")
    headers = ["algorithm", "experiments", "calls", "errors", "p50 ms", "p99 ms", "calls/s", "peak RSS MiB"]
    print(latency.markdown_table(headers + (["p50 own / shared"] if len(args.modes) == 2 else []), rows))
    if failed:
        sys.exit(f"FAIL {failed} call(s) did not answer OK")


if __name__ == "__main__":
    main()
