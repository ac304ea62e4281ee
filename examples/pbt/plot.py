"""Each generation's hyperparameters of a pbt run: the learned schedule.

    python examples/pbt/plot.py WORKDIR [--out PATH]      (default WORKDIR/generations.png)

Reads WORKDIR/experiment.json, which `katib-local run` leaves, and draws one panel per numeric
parameter and one for the objective, each against the generation (the trial label
`pbt.suggestion.katib.kubeflow.org/generation`): every member as a dot coloured by its objective,
and the lineage of the best trial (followed back through the `.../parent` labels) as a line: the
schedule that population-based training found. Needs matplotlib (katib-local's [local] extra).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from katib_services.numbers import parse_float

GENERATION = "pbt.suggestion.katib.kubeflow.org/generation"
PARENT = "pbt.suggestion.katib.kubeflow.org/parent"


def _number(text) -> float:
    """A metric or parameter value as a finite float, NaN when it is none."""
    value = parse_float(str(text)) if text is not None else None
    return math.nan if value is None else value


def lineage(trials: list[dict], metric: str, maximize: bool = True) -> list[dict]:
    """The best trial and its ancestors, oldest first."""
    by_name = {t["name"]: t for t in trials}
    scored = [t for t in trials if not math.isnan(_number(t.get("observation", {}).get(metric)))]
    if not scored:
        return []
    pick = max if maximize else min
    trial = pick(scored, key=lambda t: _number(t["observation"][metric]))
    chain = [trial]
    while PARENT in chain[-1].get("labels", {}) and chain[-1]["labels"][PARENT] in by_name and len(chain) <= len(trials):
        chain.append(by_name[chain[-1]["labels"][PARENT]])
    return chain[::-1]


def plot_generations(trials: list[dict], parameters: list[dict], metric: str, path: Path, title: str = "", maximize: bool = True) -> None:
    """Writes the figure for `trials` (experiment.json's shape: name, labels, assignment, observation)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    members = [t for t in trials if GENERATION in t.get("labels", {})]
    numeric = [p for p in parameters if p.get("parameterType") in ("double", "int")]
    panels = [(p["name"], p.get("feasibleSpace", {}).get("distribution") in ("logUniform", "logNormal")) for p in numeric]
    panels.append((metric, False))
    fig = Figure(figsize=(4.2 * len(panels), 4), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels))
    best = lineage(members, metric, maximize)
    values = [_number(t.get("observation", {}).get(metric)) for t in members]
    finite = [v for v in values if not math.isnan(v)] or [0.0, 1.0]
    low, high = min(finite), max(finite)
    for ax, (name, log) in zip(axes, panels):
        def value(t, name=name):
            return _number(t["observation"].get(metric)) if name == metric else _number(t["assignment"].get(name))

        xs = [int(t["labels"][GENERATION]) for t in members]
        scatter = ax.scatter(xs, [value(t) for t in members], c=values, cmap="viridis", vmin=low, vmax=high, s=22, zorder=2)
        if best:
            ax.plot([int(t["labels"][GENERATION]) for t in best], [value(t) for t in best], color="crimson", lw=2, marker="o", ms=4, zorder=3, label="lineage of the best trial")
        ax.set_xlabel("generation")
        ax.set_title(name)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    fig.colorbar(scatter, ax=list(axes), pad=0.01, fraction=0.02).set_label(metric)
    fig.suptitle(title or f"pbt: each generation's members ({len(members)} trials)")
    fig.savefig(path, format="png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, help="a katib-local work directory of a pbt experiment")
    parser.add_argument("--out", type=Path, help="the PNG to write (default WORKDIR/generations.png)")
    args = parser.parse_args()
    data = json.loads((args.workdir / "experiment.json").read_text())
    spec = data["spec"]
    out = args.out or args.workdir / "generations.png"
    metric = spec["objective"]["objectiveMetricName"]
    plot_generations(data["trials"], spec["parameters"], metric, out, maximize=spec["objective"]["type"] == "maximize")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
