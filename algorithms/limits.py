"""Bounds on the work one request may ask for. The servers set them from flags (README, Limits)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    request_number: int = 1_000  # current_request_number (--max-request-number)
    trials: int = 50_000  # trials in one request (--max-trials)
    parameters: int = 1_000  # parameters of an experiment (--max-parameters)
    list_values: int = 10_000  # values of one discrete or categorical parameter (--max-list-values)
    grid_points: int = 10_000  # points of a grid run without maxTrialCount (--max-grid-points)


DEFAULT = Limits()
