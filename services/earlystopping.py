"""The generic EarlyStopping service and its CLI.

    katib-earlystopping --algorithm NAME [--address HOST:PORT]      (default 0.0.0.0:6788)
    python -m katib_services.services.earlystopping --algorithm NAME ...

Status codes: INVALID_ARGUMENT for a bad spec, settings or `db_manager_address`; UNAVAILABLE when
the DB manager or the Kubernetes API cannot be reached; NOT_FOUND and PERMISSION_DENIED from the
Kubernetes API for SetTrialStatus; INTERNAL for anything unexpected.

SetTrialStatus without a Kubernetes API (no in-cluster config and no kubeconfig, as under
katib-local): the call succeeds and the trial is only logged as early stopped, because the
caller (katib-local) records the condition itself.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc

from katib_services.algorithms.errors import InvalidSpec, Problems
from katib_services.earlystopping.logs import DBUnavailable, EarlyMeans, check_address
from katib_services.earlystopping.rules import RULES, StoppingRule

from .pb import api_pb2, api_pb2_grpc
from .server import LEGACY_HEALTH_NAME, RpcFailure, Server, algorithm_cli, rpc_method

log = logging.getLogger("katib.earlystopping")

SERVICE_NAME = "api.v1.beta1.EarlyStopping"
DEFAULT_ADDRESS = "0.0.0.0:6788"
FIELD = "spec.earlyStopping"
DB_DEADLINE_SECONDS = 5.0
_COMPARISONS = {"LESS": api_pb2.LESS, "GREATER": api_pb2.GREATER}


def prepare(spec: api_pb2.EarlyStoppingSpec, problems: Problems) -> tuple[StoppingRule | None, dict]:
    """The rule an early-stopping spec names and its parsed settings; problems recorded."""
    name = spec.algorithm_name
    rule = RULES.get(name)
    if not name:
        problems.add(f"{FIELD}.algorithmName", f"is empty; name an early-stopping algorithm: {', '.join(RULES)}")
        return None, {}
    if rule is None:
        problems.add(f"{FIELD}.algorithmName", f'unknown early-stopping algorithm "{name}"; this service offers: {", ".join(RULES)}')
        return None, {}
    settings = rule.schema.parse(
        name, [(s.name, s.value) for s in spec.algorithm_settings], problems, field=f"{FIELD}.algorithmSettings"
    )
    return rule, settings


class EarlyStoppingServicer(api_pb2_grpc.EarlyStoppingServicer):
    def __init__(self, trial_status=None):
        self.means = EarlyMeans()
        self._channels: dict[str, grpc.Channel] = {}
        self._trial_status = trial_status  # a TrialStatusUpdater, made on first use
        self._lock = threading.Lock()

    @rpc_method
    def ValidateEarlyStoppingSettings(self, request, context):
        problems = Problems()
        prepare(request.early_stopping, problems)
        problems.raise_if_any()
        return api_pb2.ValidateEarlyStoppingSettingsReply()

    @rpc_method
    def GetEarlyStoppingRules(self, request, context):
        start = time.perf_counter()
        problems = Problems()
        spec = request.experiment.spec
        rule, settings = prepare(spec.early_stopping, problems)
        metric = spec.objective.objective_metric_name
        if not metric:
            problems.add("spec.objective.objectiveMetricName", "is empty; name the metric to optimize")
        if spec.objective.type not in (api_pb2.MINIMIZE, api_pb2.MAXIMIZE):
            problems.add("spec.objective.type", f"is unknown ({spec.objective.type}); use minimize or maximize")
        address_problem = check_address(request.db_manager_address)
        if address_problem:
            problems.add("db_manager_address", address_problem)
        problems.raise_if_any()
        succeeded = [t.name for t in request.trials if t.status.condition == api_pb2.TrialStatus.SUCCEEDED]
        key = (request.experiment.name, metric, settings["start_step"])
        try:
            means = self.means.means(key, self._reader(request.db_manager_address), succeeded, metric, settings["start_step"])
        except DBUnavailable as error:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, str(error)) from None
        found = rule.rule(metric, spec.objective.type == api_pb2.MAXIMIZE, means, settings)
        log.info(
            "%s: %s from %d of %d succeeded trials in %.1f ms",
            rule.name,
            f"{found.name} {found.comparison} {found.value:g} from step {found.start_step}" if found else "no rule yet",
            len(means),
            len(succeeded),
            (time.perf_counter() - start) * 1000,
        )
        reply = api_pb2.GetEarlyStoppingRulesReply()
        if found:
            reply.early_stopping_rules.add(
                name=found.name, value=repr(found.value), comparison=_COMPARISONS[found.comparison], start_step=found.start_step
            )
        return reply

    def _reader(self, address: str):
        """Reads one trial's log of one metric from the DB manager at `address`."""
        with self._lock:
            channel = self._channels.get(address) or self._channels.setdefault(address, grpc.insecure_channel(address))
        stub = api_pb2_grpc.DBManagerStub(channel)

        def read(trial_name: str, metric: str) -> list[tuple[str, str]]:
            request = api_pb2.GetObservationLogRequest(trial_name=trial_name, metric_name=metric)
            try:
                reply = stub.GetObservationLog(request, timeout=DB_DEADLINE_SECONDS)
            except grpc.RpcError as error:
                raise DBUnavailable(
                    f"the DB manager at {address} did not return the log of trial {trial_name}: "
                    f"{error.code().name}: {error.details()}"
                ) from None
            return [(log.time_stamp, log.metric.value) for log in reply.observation_log.metric_logs]

        return read

    @rpc_method
    def SetTrialStatus(self, request, context):
        from katib_services.earlystopping.trial_status import Forbidden, KubernetesError, TrialNotFound

        if not request.trial_name:
            raise InvalidSpec("trial_name: is empty")
        updater = self._updater()
        if updater is None:
            log.info("trial %s early stopped (no Kubernetes API configured: nothing to update)", request.trial_name)
            return api_pb2.SetTrialStatusReply()
        try:
            outcome = updater.mark_early_stopped(request.trial_name)
        except TrialNotFound as error:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND, str(error)) from None
        except Forbidden as error:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, str(error)) from None
        except KubernetesError as error:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, str(error)) from None
        log.info("trial %s: %s", request.trial_name, outcome)
        return api_pb2.SetTrialStatusReply()

    def _updater(self):
        with self._lock:
            if self._trial_status is None:
                from katib_services.earlystopping.trial_status import TrialStatusUpdater

                self._trial_status = TrialStatusUpdater.from_environment() or False
            return self._trial_status or None


def start(algorithm: str, address: str = DEFAULT_ADDRESS, trial_status=None, **options) -> Server:
    """Starts an EarlyStopping server; `algorithm` (a name in earlystopping.rules.RULES) is what it is
    deployed for, while each request is served by the rule its spec names."""
    if algorithm not in RULES:
        raise ValueError(f'unknown early-stopping algorithm "{algorithm}"; choose one of: {", ".join(RULES)}')
    return Server(
        address,
        [(api_pb2_grpc.add_EarlyStoppingServicer_to_server, EarlyStoppingServicer(trial_status), SERVICE_NAME)],
        health_names=[LEGACY_HEALTH_NAME],
        **options,
    )


def main(argv: list[str] | None = None) -> None:
    algorithm_cli("katib-earlystopping", "Serve Katib early-stopping rules over gRPC.", sorted(RULES), DEFAULT_ADDRESS, start, argv)

if __name__ == "__main__":
    main()
