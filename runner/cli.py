"""katib-local: run a Katib Experiment manifest on this machine.

    katib-local run EXPERIMENT.yaml [--workdir DIR] [--resume]
                    [--suggestion-address HOST:PORT] [--earlystopping-address HOST:PORT]
                    [--dbmanager-address HOST:PORT]
                    [--{suggestion,earlystopping,dbmanager}-tls-{ca,cert,key} PEM]

The suggestion service, the DB manager (SQLite in the work directory) and, when the experiment
sets `earlyStopping`, the early-stopping service start as child processes on loopback ports;
an address option connects to a running server instead, over TLS with that server's
`--NAME-tls-ca` (mutual TLS with `--NAME-tls-cert` and `--NAME-tls-key`). Trials run as local
processes.

Exit status: 0 when the experiment Succeeded, 1 when it Failed, 2 for a bad manifest or
command line, 130 after Ctrl-C (SIGINT), 143 after SIGTERM, 129 after SIGHUP. Whatever the ending,
the trials and the services it started are stopped (their process groups) before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

EXIT_CODES = {"Succeeded": 0, "Failed": 1}
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXTRAS = "python -m pip install 'katib-services[local]'"
SERVICES = {"suggestion": "suggestion service", "earlystopping": "early-stopping service", "dbmanager": "DB manager"}


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
    from katib_services.services.tls import add_client_tls_arguments, client_tls

    for name, what in SERVICES.items():
        add_client_tls_arguments(run, name, f"the running {what} (with --{name}-address)")
    args = parser.parse_args(argv)
    if args.command == "run":
        args.tls = {name: client_tls(run, args, name) for name in SERVICES}
        for name, tls in args.tls.items():
            if tls and not getattr(args, f"{name}_address"):
                run.error(f"--{name}-tls-* need --{name}-address: the services katib-local starts itself listen on loopback in plaintext")
    missing = _missing_extras()
    if missing:
        print(f"katib-local: needs {' and '.join(missing)}, which `pip install katib-services` leaves out: {EXTRAS}", file=sys.stderr)
        sys.exit(2)
    sys.exit(run_experiment(args))


def _missing_extras() -> list[str]:
    """The packages of the [local] extra that cannot be imported (checked before any trial)."""
    missing = []
    for module, package in (("yaml", "PyYAML"), ("matplotlib", "matplotlib")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    return missing


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: stop the trials and services, keep the state for --resume."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_interrupt():
    """The first SIGINT, SIGTERM or SIGHUP raises Interrupted; later ones wait for the clean-up."""
    received: list[int] = []

    def handler(signum, _frame):
        if not received:
            received.append(signum)
            raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_experiment(args: argparse.Namespace) -> int:
    from katib_services.algorithms.errors import InvalidSpec

    from . import report, spec
    from .controller import Controller, ExperimentError
    from .local import ProcessExecutor
    from .state import State

    try:
        config = spec.load(args.experiment)
    except (InvalidSpec, OSError) as error:
        print(f"katib-local: {args.experiment}: {error}", file=sys.stderr)
        return 2
    workdir = (args.workdir or Path("runs") / config.name).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    state = State(workdir / "experiment.db")
    executor = ProcessExecutor(config, workdir)
    with _signals_interrupt() as received, contextlib.ExitStack() as servers:
        try:
            problem = _check_workdir(state, config, args.resume, workdir)
            if problem:
                print(f"katib-local: {problem}", file=sys.stderr)
                return 2
            state.put("manifest", config.spec | {"name": config.name})
            try:
                endpoints = _endpoints(config, args, workdir, servers, executor.data_dir)
            except ExperimentError as error:
                print(f"katib-local: {error}", file=sys.stderr)
                return 2
            print(f"experiment {config.name}: {config.spec['algorithm']['algorithmName']}, work directory {workdir}")
            if config.notices:
                print("notice: katib-local ignores these fields, which Katib uses: " + "; ".join(config.notices))
            controller = Controller(
                config, endpoints, executor, state, on_change=lambda c, t: print(report.progress_line(c, t), flush=True)
            )
            outcome = controller.run()
            report.show(config, outcome, workdir)
            if received:
                return 128 + received[0]
            return EXIT_CODES[outcome.status]
        except Interrupted as interrupted:  # between the controller's own handling and here
            print(f"\nkatib-local: stopped by {signal.Signals(interrupted.signum).name}", file=sys.stderr)
            return 128 + interrupted.signum
        finally:
            executor.kill_all()
            state.close()


def _check_workdir(state, config, resume: bool, workdir: Path) -> str | None:
    previous = state.get("manifest")
    if resume and previous is None:
        return f"--resume: {workdir} holds no run to resume"
    if not resume and previous is not None:
        return f"{workdir} already holds a run of {previous['name']}; add --resume to continue it, or choose --workdir"
    if resume and previous != config.spec | {"name": config.name}:
        return f"--resume: the Experiment file differs from the one {workdir} was started with"
    return None


def _endpoints(config, args, workdir: Path, servers: contextlib.ExitStack, data_dir: Path):
    import grpc

    from katib_services.algorithms import registry
    from katib_services.services import tls
    from katib_services.services.client import ServerProcess

    from .controller import Endpoints, ExperimentError

    def connect(address: str | None, argv: list[str], name: str) -> tuple[grpc.Channel, str]:
        if address:
            try:
                channel = tls.channel(address, args.tls[name])
            except ValueError as error:  # a certificate file that cannot be read
                raise ExperimentError(str(error)) from None
            servers.callback(channel.close)
            return channel, address
        try:
            server = servers.enter_context(ServerProcess(argv))
        except (RuntimeError, TimeoutError) as error:
            raise ExperimentError(f"cannot start {argv[0]}: {error}") from None
        return server.channel, server.address

    dbmanager, dbmanager_address = connect(
        args.dbmanager_address, ["katib_services.services.dbmanager", "--db", str(workdir / "observations.db")], "dbmanager"
    )
    algorithm = config.spec["algorithm"]["algorithmName"]
    if algorithm not in registry.names():
        algorithm = registry.names()[0]  # the server's validation then names the unknown algorithm
    suggestion, _ = connect(
        args.suggestion_address,
        ["katib_services.services.suggestion", "--algorithm", algorithm, "--data-dir", str(data_dir)],
        "suggestion",
    )
    earlystopping = None
    if config.early_stopping:
        from katib_services.earlystopping.rules import RULES

        name = config.early_stopping["algorithmName"]
        if name not in RULES:
            name = "medianstop"  # the server's validation then names the unknown rule
        # An early-stopping service started here reads the DB manager as katib-local does.
        argv = ["katib_services.services.earlystopping", "--algorithm", name]
        argv += args.tls["dbmanager"].argv() if args.tls["dbmanager"] else []
        earlystopping, _ = connect(args.earlystopping_address, argv, "earlystopping")
    return Endpoints(suggestion, dbmanager, dbmanager_address, earlystopping)


if __name__ == "__main__":
    main()
