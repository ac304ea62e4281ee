"""A PNG summary of an experiment's trials, like the two views of Katib's UI.

Left: parallel coordinates, one vertical axis per parameter and a last one for the objective, one
polyline per trial with an objective, coloured so that brighter is better (early-stopped trials
dashed). Right: the objective of each trial in order, with the best-so-far as a step line; each
condition has its own marker: Succeeded a filled circle, EarlyStopped a hollow triangle at the
value it had when stopped, Failed a red cross and other trials without a result a grey cross, both
at the bottom. Only Succeeded and EarlyStopped trials are given an objective by the caller.

matplotlib is imported inside `plot_results`, so importing this module costs nothing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

NUMERIC = ("int", "double")
LOG_DISTRIBUTIONS = ("logUniform", "logNormal")
OUTSIDE = 0.04  # how far beyond an axis end a value outside [min, max] is drawn (axis length is 1)
NO_OBJECTIVE_TEXT = "no trials with an objective yet"


def _float(value: Any) -> float:
    """`value` as a finite float, or NaN."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class _Axis:
    """Maps one parameter's values to positions in [0, 1] and describes the axis labels."""

    def __init__(self, parameter: dict, values: list[Any]):
        self.name = str(parameter.get("name", "?"))
        kind = str(parameter.get("parameterType", "")).lower()
        space = parameter.get("feasibleSpace") or {}
        self.categories: list[str] | None = None
        self.log = False
        if kind in NUMERIC and not space.get("list"):
            self._numeric(space, values)
        else:
            self._categorical(kind, space.get("list") or [], values)

    # Numeric axes: [min, max] from the feasible space (or from the values if it has none).
    def _numeric(self, space: dict, values: list[Any]) -> None:
        lo, hi = _float(space.get("min")), _float(space.get("max"))
        seen = [v for v in map(_float, values) if not math.isnan(v)]
        if math.isnan(lo):
            lo = min(seen, default=0.0)
        if math.isnan(hi):
            hi = max(seen, default=1.0)
        self.lo, self.hi = lo, hi
        self.log = space.get("distribution") in LOG_DISTRIBUTIONS and lo > 0 and hi > 0
        self.labels = [(0.0, _fmt(lo)), (1.0, _fmt(hi))]

    def _scale(self, value: float) -> float:
        if self.log:
            return math.log(value) if value > 0 else -math.inf
        return value

    # Categorical and discrete axes: evenly spaced positions in the listed order; values that are
    # not listed get extra positions after the listed ones, labelled with a "?".
    def _categorical(self, kind: str, listed: list[Any], values: list[Any]) -> None:
        self.discrete = kind == "discrete"
        self.categories = [str(v) for v in listed]
        labels = list(self.categories)
        for value in values:
            if value is not None and self._index(value) is None:
                self.categories.append(str(value))
                labels.append(f"{value} (?)")
        count = len(self.categories)
        self.positions = [i / (count - 1) if count > 1 else 0.5 for i in range(count)]
        self.labels = list(zip(self.positions, labels))

    def _index(self, value: Any) -> int | None:
        assert self.categories is not None
        text = str(value)
        if text in self.categories:
            return self.categories.index(text)
        if self.discrete:  # "16" matches a listed 16.0
            number = _float(value)
            for i, listed in enumerate(self.categories):
                if not math.isnan(number) and _float(listed) == number:
                    return i
        return None

    def position(self, value: Any) -> float:
        """Where `value` sits on the axis: NaN if missing or unreadable, which breaks the polyline."""
        if value is None:
            return math.nan
        if self.categories is not None:
            index = self._index(value)
            return math.nan if index is None else self.positions[index]
        number = _float(value)
        if math.isnan(number):
            return math.nan
        lo, hi = self._scale(self.lo), self._scale(self.hi)
        if hi == lo:
            return 0.5
        where = (self._scale(number) - lo) / (hi - lo)
        return min(max(where, -OUTSIDE), 1 + OUTSIDE)


def plot_results(
    path: Path, parameters: list[dict], trials: list[dict], objective_metric: str, objective_type: str
) -> None:
    """Writes a PNG at `path`: parallel coordinates of the trials and the objective by trial number.

    `parameters` is the Experiment's `spec.parameters` (YAML shape); each trial is a dict with
    "name", "condition", "assignment" ({parameter: value}) and "objective" (float or None).
    Better objective values are brighter, for "minimize" as for "maximize".
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    maximize = objective_type != "minimize"
    cmap = "viridis" if maximize else "viridis_r"
    numbered = [(i + 1, t, _float(t.get("objective"))) for i, t in enumerate(trials)]
    scored = [(n, t, y) for n, t, y in numbered if not math.isnan(y)]
    missing = [(n, t.get("condition", "")) for n, t, y in numbered if math.isnan(y)]

    fig = Figure(figsize=(12, 5), dpi=110)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2, width_ratios=[3, 2])
    left, right = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    fig.suptitle(f"{objective_metric} ({objective_type})", fontweight="bold")

    if scored:
        values = [y for _, _, y in scored]
        vmin, vmax = min(values), max(values)
        spread = (vmax - vmin) or (abs(vmin) * 0.1 or 1.0) * 2  # one value: a band around it
        norm = Normalize(vmin, vmax) if vmax > vmin else Normalize(vmin - spread / 2, vmax + spread / 2)
        _parallel(left, parameters, scored, objective_metric, norm, cmap, maximize)
        colorbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=left, pad=0.02, fraction=0.04)
        colorbar.set_label(objective_metric)
    else:
        left.set_axis_off()
        left.text(0.5, 0.5, NO_OBJECTIVE_TEXT, ha="center", va="center", fontsize=14, color="0.4",
                  transform=left.transAxes)

    _history(right, scored, missing, objective_metric, maximize, norm if scored else None, cmap)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=110, format="png")


def _parallel(ax, parameters, scored, metric, norm, cmap, maximize) -> None:
    """Parallel coordinates: one axis per parameter, then the objective; worst drawn first."""
    from matplotlib import colormaps

    axes = [_Axis(p, [t.get("assignment", {}).get(p.get("name")) for _, t, _ in scored]) for p in parameters]
    lo, hi = norm.vmin, norm.vmax
    colors = colormaps[cmap]
    best = max(scored, key=lambda s: s[2] if maximize else -s[2])
    xs = list(range(len(axes) + 1))
    for number, trial, y in sorted(scored, key=lambda s: s[2] if maximize else -s[2]):
        assignment = trial.get("assignment") or {}
        ys = [axis.position(assignment.get(axis.name)) for axis in axes]
        ys.append((y - lo) / (hi - lo))
        top = trial is best[1]
        early = trial.get("condition") == "EarlyStopped"
        ax.plot(xs, ys, color=colors(norm(y)), linewidth=2.6 if top else 1.3, alpha=1.0 if top else 0.8,
                zorder=3 if top else 2, marker="v" if early else "o", markersize=3, linestyle="--" if early else "-")

    box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.75}
    for x, axis in zip(xs, axes + [None]):
        ax.plot([x, x], [0, 1], color="0.25", linewidth=1.2, zorder=1)
        if axis is None:
            labels = [(0.0, _fmt(lo)), (1.0, _fmt(hi))]
        else:
            labels = axis.labels
        if axis is None or axis.categories is None:  # min below the axis, max above it
            (_, bottom), (_, top_label) = labels
            ax.text(x, -0.06, bottom, ha="center", va="top", fontsize=8, zorder=4, bbox=box)
            ax.text(x, 1.06, top_label, ha="center", va="bottom", fontsize=8, zorder=4, bbox=box)
        else:  # category names beside the axis at their positions
            for position, label in labels:
                ax.text(x + 0.04, position, label, ha="left", va="center", fontsize=8, zorder=4, bbox=box)
    names = [axis.name + (" (log)" if axis.log else "") for axis in axes] + [metric]
    ax.set_xticks(xs, names, fontsize=9)
    for tick in ax.get_xticklabels()[-1:]:
        tick.set_fontweight("bold")
    ax.set_xlim(-0.3, len(axes) + 0.6)
    ax.set_ylim(-0.2, 1.2)
    ax.set_yticks([])
    for side in ("left", "right", "top", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="x", length=0)
    ax.set_title(f"parallel coordinates ({len(scored)} trials with {metric})", fontsize=10)


def plt_color(cmap: str, norm, value: float):
    from matplotlib import colormaps

    return colormaps[cmap](norm(value))


def _history(ax, scored, missing, metric, maximize, norm, cmap) -> None:
    """The objective against trial number, the best so far, and trials without an objective."""
    direction = "maximize: higher is better" if maximize else "minimize: lower is better"
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"{metric} ({direction})")
    ax.set_title("objective by trial", fontsize=10)
    ax.grid(True, color="0.9")
    if scored:
        numbers = [n for n, _, _ in scored]
        values = [y for _, _, y in scored]
        best, running = [], None
        for y in values:
            running = y if running is None else (max(running, y) if maximize else min(running, y))
            best.append(running)
        last = len(scored) + len(missing) + 0.5  # the best so far holds until the last trial
        ax.step(numbers + [last], best + best[-1:], where="post", color="tab:orange", linewidth=2, label="best so far", zorder=2)
        done = [(n, y) for n, t, y in scored if t.get("condition") != "EarlyStopped"]
        early = [(n, y) for n, t, y in scored if t.get("condition") == "EarlyStopped"]
        if done:
            ax.scatter(*zip(*done), c=[y for _, y in done], cmap=cmap, norm=norm, edgecolors="0.2", linewidths=0.5,
                       s=36, label=f"{metric} (succeeded)", zorder=3)
        if early:
            ax.scatter(*zip(*early), facecolors="none", edgecolors=[plt_color(cmap, norm, y) for _, y in early],
                       linewidths=1.5, marker="v", s=46, label="early stopped (value when stopped)", zorder=3)
    for label, color, wanted in (("failed", "tab:red", True), ("no result", "0.55", False)):
        numbers = [n for n, condition in missing if (condition == "Failed") == wanted]
        if numbers:
            # x in data coordinates, y at the bottom of the axes whatever the objective's range
            ax.scatter(numbers, [0.04] * len(numbers), transform=ax.get_xaxis_transform(), marker="x",
                       color=color, s=40, label=label, zorder=3, clip_on=False)
    if not scored:
        ax.text(0.5, 0.5, NO_OBJECTIVE_TEXT, ha="center", va="center", fontsize=11, color="0.4",
                transform=ax.transAxes)
        ax.set_yticks([])
    if scored or missing:
        ax.legend(loc="best", fontsize=8)
    total = len(scored) + len(missing)
    ax.set_xlim(0.5, max(total, 1) + 0.5)
    if total <= 20:
        ax.set_xticks(range(1, total + 1))
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
