"""The experiment's state in SQLite, written as it changes, so an interrupted run can resume."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PENDING = ("Created", "Running")
FINISHED = ("Succeeded", "Failed", "Killed", "MetricsUnavailable", "EarlyStopped")
RESULTS = ("Succeeded", "EarlyStopped")  # the conditions whose observation is a result
INTERRUPTED = "interrupted"  # the message of a trial killed by Ctrl-C: a resumed run starts it again


@dataclass
class TrialRecord:
    name: str
    assignment: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    condition: str = "Created"
    observation: dict[str, str] = field(default_factory=dict)  # metric -> value by its strategy
    message: str = ""
    start_time: str = ""
    completion_time: str = ""

    @property
    def finished(self) -> bool:
        return self.condition in FINISHED

    def objective(self, metric: str) -> float | None:
        try:
            return float(self.observation[metric])
        except (KeyError, ValueError):
            return None


class State:
    """One SQLite file: the manifest, the run's bookkeeping, and every trial."""

    def __init__(self, path: Path):
        self.path = path
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS trials (seq INTEGER PRIMARY KEY, name TEXT UNIQUE, record TEXT)")
        self.lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def save(self, trial: TrialRecord) -> None:
        record = json.dumps(dataclasses.asdict(trial))
        with self.lock:
            self.db.execute(
                "INSERT INTO trials (name, record) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET record = excluded.record",
                (trial.name, record),
            )

    def trials(self) -> list[TrialRecord]:
        rows = self.db.execute("SELECT record FROM trials ORDER BY seq").fetchall()
        return [TrialRecord(**json.loads(row[0])) for row in rows]

    def close(self) -> None:
        self.db.close()
