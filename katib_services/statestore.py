"""One bounded store of warm per-experiment state, shared by every algorithm and service.

A server keeps state between calls only to answer faster: parsed trials, a CMA-ES replay
checkpoint, early-stopping means. All of it lives here, in one least-recently-used map bounded
by the number of entries and by their (estimated) bytes. The store is only an optimisation: every
user must give the same answer when its entry is missing, so an entry may be dropped at any time.

Values are shared between concurrent calls and must be treated as immutable: a user that wants
to change an entry builds a new value and `put`s it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

DEFAULT_ENTRIES = 64
DEFAULT_MEGABYTES = 48


class StateStore:
    def __init__(self, max_entries: int = DEFAULT_ENTRIES, max_bytes: int = DEFAULT_MEGABYTES << 20):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Stores `value` (about `nbytes` bytes) under `key`, evicting the least recently used."""
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if self.max_entries <= 0 or nbytes > self.max_bytes:
                return
            self._entries[key] = (value, nbytes)
            self._bytes += nbytes
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, size) = self._entries.popitem(last=False)
                self._bytes -= size

    def stats(self) -> tuple[int, int]:
        """(entries, bytes) held now."""
        with self._lock:
            return len(self._entries), self._bytes

    def view(self, namespace: str) -> StoreView:
        return StoreView(self, namespace)


class StoreView:
    """The store as one user sees it: its keys live in their own namespace."""

    def __init__(self, store: StateStore | None, namespace: str):
        self._store = store
        self._namespace = namespace

    def get(self, key: Hashable) -> Any | None:
        return None if self._store is None else self._store.get((self._namespace, key))

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        if self._store is not None:
            self._store.put((self._namespace, key), value, nbytes)


NO_STORE = StoreView(None, "")  # keeps nothing: every call computes from scratch
