"""katib-local: run a Katib Experiment manifest on this machine.

    katib-local run EXPERIMENT.yaml [--workdir DIR] [--resume]
                    [--suggestion-address HOST:PORT] [--earlystopping-address HOST:PORT]
                    [--dbmanager-address HOST:PORT]

The suggestion service, the DB manager (SQLite in the work directory) and, when the experiment
sets `earlyStopping`, the early-stopping service start as child processes on loopback ports;
an address option connects to a running server instead. Trials run as local processes.

Exit status: 0 when the experiment Succeeded, 1 when it Failed, 2 for a bad manifest or
command line, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
from pathlib import Path

import grpc

from katib_services.algorithms import registry
from katib_services.algorithms.errors import InvalidSpec

from . import report, spec
from .controller import Controller, Endpoints, ExperimentError
from .local import ProcessExecutor
from .state import State

EXIT_CODES = {"Succeeded": 0, "Failed": 1, "Interrupted": 130}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="katib-local", description="Run Katib experiments on this machine.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run an Experiment manifest (kubeflow.org/v1beta1)")
    run.add_argument("experiment", type=Path, help="the Experiment YAML file")
    run.add_argument("--workdir", type=Path, help="where state, logs and results go (default runs/NAME)")
    run.add_argument("--resume", action="store_true", help="continue the interrupted run in --workdir")
    run.add_argument("--suggestion-address", help="use this running suggestion service")
    run.add_argument("--earlystopping-address", help="use this running early-stopping service")
    run.add_argument("--dbmanager-address", help="use this running DB manager")
    args = parser.parse_args(argv)
    sys.exit(run_experiment(args))


def run_experiment(args: argparse.Namespace) -> int:
    try:
        config = spec.load(args.experiment)
    except (InvalidSpec, OSError) as error:
        print(f"katib-local: {args.experiment}: {error}", file=sys.stderr)
        return 2
    workdir = args.workdir or Path("runs") / config.name
    workdir.mkdir(parents=True, exist_ok=True)
    state = State(workdir / "experiment.db")
    try:
        problem = _check_workdir(state, config, args.resume, workdir)
        if problem:
            print(f"katib-local: {problem}", file=sys.stderr)
            return 2
        state.put("manifest", config.spec | {"name": config.name})
        with contextlib.ExitStack() as servers:
            try:
                endpoints = _endpoints(config, args, workdir, servers)
            except ExperimentError as error:
                print(f"katib-local: {error}", file=sys.stderr)
                return 2
            print(f"experiment {config.name}: {config.spec['algorithm']['algorithmName']}, work directory {workdir}")
            controller = Controller(
                config,
                endpoints,
                ProcessExecutor(config, workdir),
                state,
                on_change=lambda c, t: print(report.progress_line(c, t), flush=True),
            )
            outcome = controller.run()
        print(f"\nexperiment {config.name} {outcome.status}: {outcome.message}")
        if outcome.trials:
            print("\n" + report.trials_table(config, outcome.trials))
            print("\n" + report.summary_line(outcome.trials))
        if outcome.best:
            best = outcome.best
            params = ", ".join(f"{k}={v}" for k, v in best.assignment.items())
            print(f"\nbest trial {best.name}: {config.objective_metric}={best.observation[config.objective_metric]} ({params})")
        written = report.write(workdir, config, outcome)
        print("wrote " + ", ".join(str(p) for p in written))
        return EXIT_CODES[outcome.status]
    finally:
        state.close()


def _check_workdir(state: State, config: spec.ExperimentConfig, resume: bool, workdir: Path) -> str | None:
    previous = state.get("manifest")
    if resume and previous is None:
        return f"--resume: {workdir} holds no run to resume"
    if not resume and previous is not None:
        return f"{workdir} already holds a run of {previous['name']}; add --resume to continue it, or choose --workdir"
    if resume and previous != config.spec | {"name": config.name}:
        return f"--resume: the Experiment file differs from the one {workdir} was started with"
    return None


def _endpoints(config: spec.ExperimentConfig, args, workdir: Path, servers: contextlib.ExitStack) -> Endpoints:
    from katib_services.services.client import ServerProcess

    def connect(address: str | None, argv: list[str]) -> tuple[grpc.Channel, str]:
        if address:
            channel = grpc.insecure_channel(address)
            servers.callback(channel.close)
            return channel, address
        try:
            server = servers.enter_context(ServerProcess(argv))
        except (RuntimeError, TimeoutError) as error:
            raise ExperimentError(f"cannot start {argv[0]}: {error}") from None
        return server.channel, server.address

    dbmanager, dbmanager_address = connect(
        args.dbmanager_address, ["katib_services.services.dbmanager", "--db", str(workdir / "observations.db")]
    )
    algorithm = config.spec["algorithm"]["algorithmName"]
    if algorithm not in registry.names():
        algorithm = registry.names()[0]  # the server's validation then names the unknown algorithm
    suggestion, _ = connect(args.suggestion_address, ["katib_services.services.suggestion", "--algorithm", algorithm])
    earlystopping = None
    if config.early_stopping:
        name = config.early_stopping["algorithmName"]
        if not args.earlystopping_address and importlib.util.find_spec("katib_services.services.earlystopping") is None:
            raise ExperimentError(
                f"spec.earlyStopping.algorithmName: no early-stopping service for {name!r} is installed; "
                "pass --earlystopping-address or remove earlyStopping"
            )
        earlystopping, _ = connect(args.earlystopping_address, ["katib_services.services.earlystopping", "--algorithm", name])
    return Endpoints(suggestion, dbmanager, dbmanager_address, earlystopping)


if __name__ == "__main__":
    main()
