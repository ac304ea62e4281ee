"""The generic EarlyStopping service and its CLI.

    katib-earlystopping --algorithm NAME [--address HOST:PORT]      (default 0.0.0.0:6788)
    python -m katib_services.services.earlystopping --algorithm NAME ...

Status codes: INVALID_ARGUMENT for a bad spec, settings or `db_manager_address`; UNAVAILABLE when
the DB manager or the Kubernetes API cannot be reached; NOT_FOUND and PERMISSION_DENIED from the
Kubernetes API for SetTrialStatus; INTERNAL for anything unexpected.

SetTrialStatus outside Kubernetes (KUBERNETES_SERVICE_HOST unset, and no kubeconfig, as under
katib-local): the call succeeds and the trial is only logged as early stopped, because the
caller (katib-local) records the condition itself. Inside a pod whose Kubernetes credentials do
not work, the call answers UNAVAILABLE with the reason.

The DB manager is read with the same message limit as this server's own (--max-message-mb),
over TLS with --dbmanager-tls-ca (and a client certificate with --dbmanager-tls-cert and
--dbmanager-tls-key); channels are kept for the few most recent DB-manager addresses and closed
when dropped.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections import OrderedDict

import grpc

from katib_services.algorithms.errors import InvalidSpec, Problems, TooLarge
from katib_services.algorithms.limits import DEFAULT
from katib_services.earlystopping.logs import DBUnavailable, EarlyMeans, check_address
from katib_services.earlystopping.rules import RULES, StoppingRule
from katib_services.numbers import is_object_name, quote
from katib_services.statestore import StateStore

from .pb import api_pb2, api_pb2_grpc
from .server import (
    DEFAULT_MAX_MESSAGE_MB,
    LEGACY_HEALTH_NAME,
    RpcFailure,
    Server,
    algorithm_cli,
    caller_check,
    current_call,
    message_options,
    positive,
)
from .tls import ClientTls, add_client_tls_arguments, channel, client_tls

log = logging.getLogger("katib.earlystopping")

SERVICE = "EarlyStopping"
DEFAULT_ADDRESS = "0.0.0.0:6788"
FIELD = "spec.earlyStopping"
DB_DEADLINE_SECONDS = 20.0  # per trial log read: room for a log of 200,000 values on a loaded machine
DB_CHANNELS = 4  # DB-manager addresses with an open channel (one per Katib installation in practice)
_COMPARISONS = {"LESS": api_pb2.LESS, "GREATER": api_pb2.GREATER}


def prepare(spec: api_pb2.EarlyStoppingSpec, problems: Problems) -> tuple[StoppingRule | None, dict]:
    """The rule an early-stopping spec names and its parsed settings; problems recorded."""
    name = spec.algorithm_name
    rule = RULES.get(name)
    if not name:
        problems.add(f"{FIELD}.algorithmName", f"is empty; name an early-stopping algorithm: {', '.join(RULES)}")
        return None, {}
    if rule is None:
        problems.add(f"{FIELD}.algorithmName", f"unknown early-stopping algorithm {quote(name)}; this service offers: {', '.join(RULES)}")
        return None, {}
    settings = rule.schema.parse(
        name, [(s.name, s.value) for s in spec.algorithm_settings], problems, field=f"{FIELD}.algorithmSettings"
    )
    return rule, settings


class _Channels:
    """gRPC channels to the most recent DB-manager addresses; a dropped one is closed."""

    def __init__(self, max_message_bytes: int, tls: ClientTls | None = None):
        self.options = message_options(max_message_bytes)
        self.tls = tls
        self._channels: OrderedDict[str, grpc.Channel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, address: str) -> grpc.Channel:
        with self._lock:
            opened = self._channels.pop(address, None) or channel(address, self.tls, self.options)
            self._channels[address] = opened
            while len(self._channels) > DB_CHANNELS:
                _, dropped = self._channels.popitem(last=False)
                dropped.close()
            return opened

    def __len__(self) -> int:
        return len(self._channels)


class EarlyStoppingServicer:
    def __init__(
        self,
        trial_status=None,
        store: StateStore | None = None,
        max_message_mb: int = DEFAULT_MAX_MESSAGE_MB,
        max_trials: int = DEFAULT.trials,
        dbmanager_tls: ClientTls | None = None,
    ):
        self.store = store if store is not None else StateStore()
        self.means = EarlyMeans(self.store.view("early-means"))
        self.channels = _Channels(max_message_mb << 20, tls=dbmanager_tls)
        self.max_trials = max_trials
        self._trial_status = trial_status  # a TrialStatusUpdater, made on first use
        self._lock = threading.Lock()

    def ValidateEarlyStoppingSettings(self, request, context):
        problems = Problems()
        rule, _ = prepare(request.early_stopping, problems)
        if rule is not None:
            current_call().algorithm = rule.name
        problems.raise_if_any()
        return api_pb2.ValidateEarlyStoppingSettingsReply()

    def GetEarlyStoppingRules(self, request, context):
        if len(request.trials) > self.max_trials:
            raise TooLarge(f"trials: the request has {len(request.trials)} trials, more than this service reads ({self.max_trials}, --max-trials)")
        problems = Problems()
        spec = request.experiment.spec
        rule, settings = prepare(spec.early_stopping, problems)
        if rule is not None:
            current_call().algorithm = rule.name
        metric = spec.objective.objective_metric_name
        if not metric:
            problems.add("spec.objective.objectiveMetricName", "is empty; name the metric to optimize")
        if spec.objective.type not in (api_pb2.MINIMIZE, api_pb2.MAXIMIZE):
            problems.add("spec.objective.type", f"is unknown ({spec.objective.type}); use minimize or maximize")
        address_problem = check_address(request.db_manager_address)
        if address_problem:
            problems.add("db_manager_address", address_problem)
        succeeded = []
        for i, trial in enumerate(request.trials):
            if trial.status.condition == api_pb2.TrialStatus.SUCCEEDED:
                if not trial.name:
                    problems.add(f"trials[{i}].name", "is empty; a succeeded trial's log is read by its name")
                succeeded.append(trial.name)
        problems.raise_if_any()
        address = request.db_manager_address
        key = (request.experiment.name, address, metric, settings["start_step"])
        try:
            means = self.means.means(key, self._reader(address), succeeded, metric, settings["start_step"], caller_check(context))
        except DBUnavailable as error:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, str(error)) from None
        found = rule.rule(metric, spec.objective.type == api_pb2.MAXIMIZE, means, settings)
        current_call().summary = "%s: %s from %d of %d succeeded trials" % (
            rule.name,
            f"{found.name} {found.comparison} {found.value:g} from step {found.start_step}" if found else "no rule yet",
            len(means),
            len(succeeded),
        )
        reply = api_pb2.GetEarlyStoppingRulesReply()
        if found:
            reply.early_stopping_rules.add(
                name=found.name, value=repr(found.value), comparison=_COMPARISONS[found.comparison], start_step=found.start_step
            )
        return reply

    def _reader(self, address: str):
        """Reads one trial's log of one metric from the DB manager at `address`."""
        stub = api_pb2_grpc.DBManagerStub(self.channels.get(address))
        timings = current_call().db_calls  # appended to from the reading threads

        def read(trial_name: str, metric: str) -> list[tuple[str, str]]:
            request = api_pb2.GetObservationLogRequest(trial_name=trial_name, metric_name=metric)
            start = time.perf_counter()
            try:
                reply = stub.GetObservationLog(request, timeout=DB_DEADLINE_SECONDS)
                timings.append(("OK", time.perf_counter() - start))
            except grpc.RpcError as error:
                timings.append((error.code().name, time.perf_counter() - start))
                raise DBUnavailable(
                    f"the DB manager at {address} did not return the log of trial {quote(trial_name)}: "
                    f"{error.code().name}: {error.details()}"
                ) from None
            return [(log.time_stamp, log.metric.value) for log in reply.observation_log.metric_logs]

        return read

    def SetTrialStatus(self, request, context):
        from katib_services.earlystopping.trial_status import Forbidden, KubernetesError, TrialNotFound

        name = request.trial_name
        if not name:
            raise InvalidSpec("trial_name: is empty")
        if not is_object_name(name):
            raise InvalidSpec(f"trial_name: {quote(name)} is not a Trial name (a lowercase DNS-1123 subdomain of at most 253 characters)")
        try:
            updater = self._updater()
            if updater is None:
                current_call().summary = f"trial {name} early stopped (not in a Kubernetes pod and no kubeconfig: nothing to update)"
                return api_pb2.SetTrialStatusReply()
            outcome = updater.mark_early_stopped(name)
        except TrialNotFound as error:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND, str(error)) from None
        except Forbidden as error:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, str(error)) from None
        except KubernetesError as error:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, str(error)) from None
        current_call().summary = f"trial {name}: {outcome}"
        return api_pb2.SetTrialStatusReply()

    def _updater(self):
        """The Trial-status updater; None outside Kubernetes. Raises KubernetesError in a pod whose
        credentials do not work (tried again at the next call)."""
        with self._lock:
            if self._trial_status is None:
                from katib_services.earlystopping.trial_status import TrialStatusUpdater

                self._trial_status = TrialStatusUpdater.from_environment(in_pod="KUBERNETES_SERVICE_HOST" in os.environ) or False
            return self._trial_status or None


def start(
    algorithm: str,
    address: str = DEFAULT_ADDRESS,
    trial_status=None,
    *,
    store: StateStore | None = None,
    max_trials: int = DEFAULT.trials,
    dbmanager_tls: ClientTls | None = None,
    **options,
) -> Server:
    """Starts an EarlyStopping server; `algorithm` (a name in earlystopping.rules.RULES) is what it is
    deployed for, while each request is served by the rule its spec names."""
    if algorithm not in RULES:
        raise ValueError(f'unknown early-stopping algorithm "{algorithm}"; choose one of: {", ".join(RULES)}')
    servicer = EarlyStoppingServicer(trial_status, store, options.get("max_message_mb", DEFAULT_MAX_MESSAGE_MB), max_trials, dbmanager_tls)
    return Server(address, [(servicer, SERVICE)], health_names=[LEGACY_HEALTH_NAME], **options)


def _arguments(parser: argparse.ArgumentParser):
    parser.add_argument(
        "--max-trials", type=positive, default=DEFAULT.trials, help=f"largest number of trials one request may carry (default {DEFAULT.trials:,})"
    )
    add_client_tls_arguments(parser, "dbmanager", "the DB manager")
    return lambda args: {"max_trials": args.max_trials, "dbmanager_tls": client_tls(parser, args, "dbmanager")}


def main(argv: list[str] | None = None) -> None:
    algorithm_cli(
        "katib-earlystopping", "Serve Katib early-stopping rules over gRPC.", sorted(RULES), DEFAULT_ADDRESS, start, argv, extra=_arguments
    )


if __name__ == "__main__":
    main()
