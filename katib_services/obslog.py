"""A SQLite store of trial observation logs: what Katib's DB manager keeps (pure Python, no gRPC).

Each log is (time_stamp, metric_name, value), all strings, reported for one trial. The store keeps
the time stamp exactly as given and, beside it, the instant it names in nanoseconds since the Unix
epoch, which the time filters of `get` compare. Logs come back in the order they were reported.

Durability: the database runs in WAL mode with `synchronous=NORMAL`. A report is committed before
`report` returns, so it survives the server process being killed (even with SIGKILL): the commit is
in the WAL file, which the next open replays. It is not fsynced at every commit, so an OS crash or
power loss may lose the last reports.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from .numbers import quote

Log = tuple[str, str, str]  # (time_stamp, metric_name, value)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS observation_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trial_name TEXT NOT NULL,
    metric_name TEXT NOT NULL,
    time_stamp TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS observation_logs_by_trial ON observation_logs (trial_name, metric_name, id);
"""

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1)
_NS = 1_000_000_000
_INT64 = (-(2**63), 2**63 - 1)


def time_ns(text: str, field: str) -> int:
    """Nanoseconds since the Unix epoch of the RFC 3339 time `text`, e.g. "2026-11-28T08:00:00.5+02:00".

    Fractional digits beyond nanoseconds are truncated. Instants outside what 64 bits of
    nanoseconds hold (1677-09-21 to 2262-04-11), such as Katib's zero time "0001-01-01T00:00:00Z",
    are clamped to that range: they sort before (or after) every other time, but not among
    themselves. Raises ValueError naming `field` if `text` is not an RFC 3339 time.
    """
    try:
        nanos = _parse_rfc3339(text)
    except ValueError:
        raise ValueError(f'{field}: {quote(text)} is not an RFC 3339 time such as "2026-11-28T08:00:00.5+02:00"') from None
    return min(max(nanos, _INT64[0]), _INT64[1])


def _parse_rfc3339(text: str) -> int:
    """Unclamped nanoseconds since the epoch; ValueError if `text` is not RFC 3339."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(text)
    year, month, day, hour, minute, second = (int(group) for group in match.group(1, 2, 3, 4, 5, 6))
    fraction, sign, offset_hours, offset_minutes = match.group(7, 8, 9, 10)
    offset = 0
    if sign:
        if int(offset_hours) > 23 or int(offset_minutes) > 59:
            raise ValueError(text)
        offset = (int(offset_hours) * 3600 + int(offset_minutes) * 60) * (1 if sign == "+" else -1)
    local = datetime(year, month, day, hour, minute, second)  # raises ValueError for a day or hour out of range
    seconds = (local - _EPOCH) // timedelta(seconds=1) - offset
    return seconds * _NS + int((fraction or "")[:9].ljust(9, "0"))


def format_ns(nanos: int) -> str:
    """RFC 3339 in UTC with up to nanosecond digits, trailing zeros dropped (Go's RFC3339Nano)."""
    seconds, fraction = divmod(nanos, _NS)
    whole = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    return whole + f".{fraction:09d}".rstrip("0").rstrip(".") + "Z"


def now_rfc3339() -> str:
    """The current UTC time in RFC 3339 with up to nanosecond digits."""
    return format_ns(time.time_ns())


def _check_trial(trial_name: str) -> None:
    if not trial_name:
        raise ValueError("trial_name: is empty")


class ObservationStore:
    """Observation logs in the SQLite file at `path` (created if missing).

    Writes go through one connection behind a lock; each call is one transaction. Reads use a
    connection of their thread's own, without the lock: in WAL mode readers run beside each
    other and beside the writer, so reads of different trials never wait for each other. An
    in-memory database (`:memory:` or "") exists only in its one connection, so there reads take
    the writer's, behind the lock.
    """

    def __init__(self, path: str):
        self._path = path
        self._in_memory = path in ("", ":memory:")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._readers = threading.local()

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._readers, "db", None)
        if db is None:
            db = self._readers.db = sqlite3.connect(self._path)
        return db

    def report(self, trial_name: str, logs: Iterable[Log]) -> None:
        """Appends `logs` of the trial in one transaction, committed before returning.

        An empty time stamp is replaced by the current UTC time (Katib's own DB manager silently
        drops such a log; its metrics collectors always send one). A malformed time stamp rejects
        the whole report with ValueError and stores nothing.
        """
        _check_trial(trial_name)
        rows = []
        for index, (time_stamp, metric_name, value) in enumerate(logs):
            time_stamp = time_stamp or now_rfc3339()
            nanos = time_ns(time_stamp, f"observation_log.metric_logs[{index}].time_stamp")
            rows.append((trial_name, metric_name, time_stamp, nanos, value))
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO observation_logs (trial_name, metric_name, time_stamp, time_ns, value) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def get(self, trial_name: str, metric_name: str = "", start: str = "", end: str = "") -> list[Log]:
        """The trial's logs in report order: all metrics when `metric_name` is empty, and only
        those timed within [start, end], both bounds inclusive, when they are given (RFC 3339)."""
        _check_trial(trial_name)
        conditions = [("trial_name = ?", trial_name)]
        if metric_name:
            conditions.append(("metric_name = ?", metric_name))
        if start:
            conditions.append(("time_ns >= ?", time_ns(start, "start_time")))
        if end:
            conditions.append(("time_ns <= ?", time_ns(end, "end_time")))
        where = " AND ".join(clause for clause, _ in conditions)
        sql = f"SELECT time_stamp, metric_name, value FROM observation_logs WHERE {where} ORDER BY id"
        params = [value for _, value in conditions]
        if self._in_memory:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        return self._reader().execute(sql, params).fetchall()

    def delete(self, trial_name: str) -> int:
        """Deletes every log of the trial; returns how many there were."""
        _check_trial(trial_name)
        with self._lock, self._db:
            return self._db.execute("DELETE FROM observation_logs WHERE trial_name = ?", (trial_name,)).rowcount
