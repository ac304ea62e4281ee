"""Early means of trials' metric logs, read through a DB-manager reader, cached per experiment.

A finished trial's log never changes, so the early mean of each SUCCEEDED trial is computed once
per experiment and kept; a restarted service recomputes it. The reader (the gRPC client of
Katib's DB manager, in services/earlystopping.py) is called for several trials at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from katib_services.obslog import time_ns

from .rules import early_mean

CONCURRENT_READS = 8

# reader(trial_name, metric_name) -> [(time_stamp, value), ...] in report order; raises DBUnavailable
Reader = Callable[[str, str], list[tuple[str, str]]]


class DBUnavailable(RuntimeError):
    """The DB manager could not be reached or did not answer in time."""


def check_address(address: str) -> str | None:
    """Why `address` is not a HOST:PORT, or None when it is one."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f'"{address}" is not HOST:PORT'
    return None


def in_time_order(logs: list[tuple[str, str]]) -> list[str]:
    """Values in time order; report order where a time stamp cannot be read (ties keep it too)."""
    try:
        keyed = [(time_ns(stamp, "time_stamp"), i, value) for i, (stamp, value) in enumerate(logs)]
    except ValueError:
        return [value for _, value in logs]
    return [value for _, _, value in sorted(keyed)]


class EarlyMeans:
    """Early means of trials, cached per key (experiment, metric, start_step)."""

    def __init__(self, experiments: int = 8):
        self._cache: OrderedDict[tuple, dict[str, float | None]] = OrderedDict()
        self._experiments = experiments
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(CONCURRENT_READS, thread_name_prefix="dbmanager")

    def means(self, key: tuple, reader: Reader, trial_names: Sequence[str], metric: str, start_step: int) -> list[float]:
        """The early means of the trials that have one; reads only trials not seen before."""
        with self._lock:
            known = self._cache.pop(key, {})
            self._cache[key] = known
            while len(self._cache) > self._experiments:
                self._cache.popitem(last=False)
        missing = [name for name in trial_names if name not in known]
        logs = self._pool.map(lambda name: reader(name, metric), missing)
        for name, log in zip(missing, logs):
            known[name] = early_mean(in_time_order(log), start_step)
        return [known[name] for name in trial_names if known[name] is not None]
