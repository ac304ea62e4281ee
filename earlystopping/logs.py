"""Reading trials' metric logs from Katib's DB manager (a gRPC client), with a per-experiment cache.

A finished trial's log never changes, so the early mean of each SUCCEEDED trial is computed once
per experiment and kept; a restarted service recomputes it from the DB manager. Calls are made
concurrently, each bounded by a deadline.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc

from runner.obslog import time_ns
from services.pb import api_pb2, api_pb2_grpc

from .rules import early_mean

DEADLINE_SECONDS = 5.0
CONCURRENT_CALLS = 8


class DBUnavailable(RuntimeError):
    """The DB manager could not be reached or did not answer in time."""


def check_address(address: str) -> str | None:
    """Why `address` is not a HOST:PORT, or None when it is one."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f'"{address}" is not HOST:PORT'
    return None


def _in_time_order(logs) -> list[str]:
    """Values in time order; report order where a time stamp cannot be read (ties keep it too)."""
    try:
        keyed = [(time_ns(log.time_stamp, "time_stamp"), i, log.metric.value) for i, log in enumerate(logs)]
    except ValueError:
        return [log.metric.value for log in logs]
    return [value for _, _, value in sorted(keyed)]


class EarlyMeans:
    """Early means of trials, read from DB managers and cached per (experiment, metric, start_step)."""

    def __init__(self, experiments: int = 8):
        self._cache: OrderedDict[tuple, dict[str, float | None]] = OrderedDict()
        self._experiments = experiments
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(CONCURRENT_CALLS, thread_name_prefix="dbmanager")

    def means(self, key: tuple, address: str, trial_names: Sequence[str], metric: str, start_step: int) -> list[float]:
        """The early means of the trials that have one; reads only trials not seen before."""
        with self._lock:
            known = self._cache.pop(key, {})
            self._cache[key] = known
            while len(self._cache) > self._experiments:
                self._cache.popitem(last=False)
        missing = [name for name in trial_names if name not in known]
        if missing:
            stub = api_pb2_grpc.DBManagerStub(self._channel(address))
            for name, mean in zip(missing, self._pool.map(lambda n: self._read(stub, n, metric, start_step), missing)):
                known[name] = mean
        return [known[name] for name in trial_names if known[name] is not None]

    def _channel(self, address: str) -> grpc.Channel:
        with self._lock:
            if address not in self._channels:
                self._channels[address] = grpc.insecure_channel(address)
            return self._channels[address]

    @staticmethod
    def _read(stub, trial_name: str, metric: str, start_step: int) -> float | None:
        request = api_pb2.GetObservationLogRequest(trial_name=trial_name, metric_name=metric)
        try:
            reply = stub.GetObservationLog(request, timeout=DEADLINE_SECONDS)
        except grpc.RpcError as error:
            raise DBUnavailable(
                f"the DB manager did not return the log of trial {trial_name}: {error.code().name}: {error.details()}"
            ) from None
        return early_mean(_in_time_order(reply.observation_log.metric_logs), start_step)
