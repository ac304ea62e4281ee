"""The interface every search algorithm implements.

An algorithm is stateless with respect to the experiment: `suggest` receives the whole request
(the experiment, every trial with its labels, and the settings returned by earlier replies) and
must derive its answer from that alone. A retried request must give the same answer, so any
randomness comes from `Request.seed`, which is a function of the request.

Two services come with the request:

* `store`: the server's bounded state store (`katib_services.statestore`), for warm state that
  makes a call cheaper (a replay checkpoint). It is only an optimisation: an algorithm must give
  the same reply when its entry is missing, and must never change a value it got from the store.
* `check`: raises `Cancelled` once the caller is gone (deadline passed, call cancelled). Long
  computations call it between steps, so abandoned work stops within about a second.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from katib_services.numbers import quote
from katib_services.statestore import NO_STORE, StoreView

from .errors import InvalidSpec, Problems
from .experiment import Experiment
from .history import History
from .limits import Limits
from .settings import Schema
from .space import SearchSpace


def _never_cancelled() -> None:
    pass


@dataclass(frozen=True)
class Request:
    experiment: Experiment
    settings: dict[str, Any]
    history: History
    count: int  # current_request_number: exactly this many proposals are due
    total: int  # total_request_number: requested so far, this batch included
    store: StoreView = NO_STORE
    check: Callable[[], None] = _never_cancelled

    @property
    def seed(self) -> int:
        """A seed that changes from batch to batch but not when the same request is retried."""
        return derive_seed(self.experiment.name, self.settings.get("random_state"), self.total, len(self.history.trials))


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint directory to prepare before a proposal is returned: `<data dir>/<experiment>/
    <trial name>/`, a copy of the directory of the trial named `source`, or empty when `source` is
    "". Algorithms only decide this; the service performs it (services/checkpoints.py)."""

    source: str = ""


def check_path_component(name: str, field: str) -> None:
    """Refuses (InvalidSpec under `field`) a name that cannot be one directory of the data
    directory's `<experiment>/<trial>/`: empty, `.`, `..`, or with `/` or NUL."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise InvalidSpec(
            f"{field}: {quote(name)} cannot name a directory under the data directory (--data-dir); "
            "a name must not be empty, . or .., or contain / or NUL"
        )


@dataclass(frozen=True)
class Proposal:
    assignment: dict[str, str]
    trial_name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    checkpoint: Checkpoint | None = None  # set by algorithms whose trials resume from checkpoints (pbt)


@dataclass(frozen=True)
class Reply:
    proposals: list[Proposal]
    settings: dict[str, str] = field(default_factory=dict)  # merged into later requests by Katib


class Algorithm:
    """Base class: set `name`, `summary` and `schema`; implement `suggest`; extend `check` (and
    `space`, for an algorithm that sets a parameter itself)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    schema: ClassVar[Schema] = Schema()
    architecture_search: ClassVar[bool] = False  # its experiments declare spec.nasConfig, not spec.parameters

    def check(self, experiment: Experiment, settings: dict[str, Any], problems: Problems, limits: Limits) -> None:
        """Algorithm-specific validation beyond the space and the settings schema."""

    def space(self, experiment: Experiment, settings: dict[str, Any]) -> SearchSpace:
        """The space that trials and proposals are points of, for a valid experiment: its own.

        An algorithm that sets a parameter itself may replace that parameter: hyperband's and
        asha's resource takes the values of their schedule, whatever its feasibleSpace says. The
        service parses the trials, and verifies every reply, against this space."""
        return experiment.space

    def suggest(self, request: Request) -> Reply:
        raise NotImplementedError


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
