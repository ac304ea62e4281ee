"""Early means of trials' metric logs, read through a DB-manager reader, cached per experiment.

A finished trial's log never changes, so the early mean of each SUCCEEDED trial is computed once
and kept in the server's state store (`katib_services.statestore`), one entry per experiment
holding the means of the trials of its latest request; a restarted service, or one whose entry
was dropped, reads the logs again and gets the same means. The reader (the gRPC client of Katib's
DB manager, in services/earlystopping.py) is called for several trials at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor

from katib_services.numbers import quote
from katib_services.obslog import time_ns
from katib_services.statestore import StoreView

from .rules import early_mean

CONCURRENT_READS = 8
_MEAN_BYTES = 160  # an entry of the cache: a trial name and its mean

# reader(trial_name, metric_name) -> [(time_stamp, value), ...] in report order; raises DBUnavailable
Reader = Callable[[str, str], list[tuple[str, str]]]

# HOST:PORT, HOST a DNS name or IPv4 address, or an IPv6 address in brackets; ASCII only.
_ADDRESS = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\]):([0-9]{1,5})", re.ASCII)


class DBUnavailable(RuntimeError):
    """The DB manager could not be reached or did not answer in time."""


def check_address(address: str) -> str | None:
    """Why `address` is not a HOST:PORT a DB manager can listen on, or None when it is one."""
    match = _ADDRESS.fullmatch(address)
    if not match or not 0 < int(match.group(1)) < 65536:
        return f"{quote(address)} is not HOST:PORT (an ASCII host name or IP address, and a port from 1 to 65535)"
    return None


def in_time_order(logs: list[tuple[str, str]]) -> list[str]:
    """Values in time order; report order where a time stamp cannot be read (ties keep it too)."""
    try:
        keyed = [(time_ns(stamp, "time_stamp"), i, value) for i, (stamp, value) in enumerate(logs)]
    except ValueError:
        return [value for _, value in logs]
    return [value for _, _, value in sorted(keyed)]


class EarlyMeans:
    """Early means of trials, cached in a state-store view per key (experiment, DB, metric, start_step)."""

    def __init__(self, store: StoreView):
        self._store = store
        self._pool = ThreadPoolExecutor(CONCURRENT_READS, thread_name_prefix="dbmanager")

    def means(
        self,
        key: Hashable,
        reader: Reader,
        trial_names: Sequence[str],
        metric: str,
        start_step: int,
        check: Callable[[], None] = lambda: None,
    ) -> list[float]:
        """The early means of the trials that have one; reads only trials not seen before."""
        names = list(dict.fromkeys(trial_names))  # a trial's log is read once, whatever the repeats
        known: dict[str, float | None] = self._store.get(key) or {}
        missing = [name for name in names if name not in known]
        current = {name: known[name] for name in names if name in known}
        try:
            reads = self._pool.map(lambda name: reader(name, metric), missing)
            for name, log in zip(missing, reads):
                check()
                current[name] = early_mean(in_time_order(log), start_step)
        finally:  # what was read is kept even when the call is cancelled or a read fails
            if missing or len(current) != len(known):  # else the entry holds just these trials already
                self._store.put(key, current, sum(_MEAN_BYTES + len(name) for name in current))
        return [current[name] for name in names if current[name] is not None]
