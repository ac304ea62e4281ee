"""What a run shows and leaves behind: progress lines, the trials table, and the work-directory files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .controller import Controller, Outcome
from katib_services.obslog import time_ns
from .spec import ExperimentConfig
from .state import PENDING, RESULTS, TrialRecord


def progress_line(controller: Controller, trial: TrialRecord) -> str:
    """One line per trial event: the trial, then running/done counts and the best so far."""
    config = controller.config
    metric = config.objective_metric
    params = " ".join(f"{k}={v}" for k, v in trial.assignment.items())
    if trial.condition == "Running":
        event = f"{trial.name} started    {params}"
    else:
        value = trial.observation.get(metric, "-")
        event = f"{trial.name} {trial.condition:<18} {metric}={value}" + (f" ({trial.message})" if trial.message else "")
    running = controller.count(*PENDING)
    done = controller.completed()
    limit = f"/{config.max_trials}" if config.max_trials else ""
    best = controller.best()
    best_text = f"best {metric}={best.observation[metric]} ({best.name})" if best else "no result yet"
    return f"[{done}{limit} done, {running} running, {best_text}] {event}"


def trial_seconds(trials: list[TrialRecord]) -> float:
    """The summed run time of the trials that started and finished."""
    total = 0
    for t in trials:
        if t.start_time and t.completion_time:
            total += time_ns(t.completion_time, "completion_time") - time_ns(t.start_time, "start_time")
    return total / 1e9


def summary_line(trials: list[TrialRecord]) -> str:
    stopped = sum(t.condition == "EarlyStopped" for t in trials)
    return f"{len(trials)} trials, {stopped} early stopped; trial time {trial_seconds(trials):.1f} s in all"


TABLE_CELL = 60  # characters of an assignment shown in the table (a NAS nn_config is longer; trials.csv has it all)


def trials_table(config: ExperimentConfig, trials: list[TrialRecord]) -> str:
    """A text table like Katib's UI: name, condition, each parameter (or NAS assignment), the objective."""
    names = config.assignment_names
    header = ["trial", "condition", *names, config.objective_metric]
    rows = [
        [t.name, t.condition, *(_cell(t.assignment.get(n, "")) for n in names), t.observation.get(config.objective_metric, "")]
        for t in trials
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: str) -> str:
    return value if len(value) <= TABLE_CELL else value[: TABLE_CELL - 3] + "..."


def show(config: ExperimentConfig, outcome: Outcome, workdir: Path) -> None:
    """The end of a run: its status, the trials table, the best trial, and the files written."""
    print(f"\nexperiment {config.name} {outcome.status}: {outcome.message}")
    if outcome.trials:
        print("\n" + trials_table(config, outcome.trials))
        print("\n" + summary_line(outcome.trials))
    if outcome.best:
        best = outcome.best
        params = ", ".join(f"{k}={v}" for k, v in best.assignment.items())
        print(f"\nbest trial {best.name}: {config.objective_metric}={best.observation[config.objective_metric]} ({params})")
    written = write(workdir, config, outcome)
    print("wrote " + ", ".join(str(p) for p in written))


def write(workdir: Path, config: ExperimentConfig, outcome: Outcome) -> list[Path]:
    """experiment.json in the work directory, and trials.csv and results.png once a trial ran."""
    json_path = _write_json(workdir, config, outcome)
    if not outcome.trials:
        return [json_path]
    names = config.assignment_names
    metrics = config.metric_names
    csv_path = workdir / "trials.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "condition", *names, *metrics, "start_time", "completion_time", "message", "labels"])
        for t in outcome.trials:
            writer.writerow(
                [t.name, t.condition, *(t.assignment.get(n, "") for n in names), *(t.observation.get(m, "") for m in metrics)]
                + [t.start_time, t.completion_time, t.message, json.dumps(t.labels, sort_keys=True) if t.labels else ""]
            )
    png_path = workdir / "results.png"
    from .plot import plot_results

    plot_results(
        png_path,
        config.spec.get("parameters") or [],  # a NAS experiment's architectures get no axes
        [
            {
                "name": t.name,
                "condition": t.condition,
                "assignment": t.assignment,
                # a result is what a Succeeded or EarlyStopped trial reported; a Failed trial's partial value is not
                "objective": t.objective(config.objective_metric) if t.condition in RESULTS else None,
            }
            for t in outcome.trials
        ],
        config.objective_metric,
        config.objective_type,
    )
    return [csv_path, json_path, png_path]


def _write_json(workdir: Path, config: ExperimentConfig, outcome: Outcome) -> Path:
    json_path = workdir / "experiment.json"
    best = outcome.best
    json_path.write_text(
        json.dumps(
            {
                "name": config.name,
                "status": {"condition": outcome.status, "reason": outcome.reason, "message": outcome.message},
                "currentOptimalTrial": None
                if best is None
                else {"bestTrialName": best.name, "parameterAssignments": best.assignment, "observation": best.observation},
                "counts": {c: sum(t.condition == c for t in outcome.trials) for c in sorted({t.condition for t in outcome.trials})},
                "trialSeconds": round(trial_seconds(outcome.trials), 3),
                "spec": config.spec,
                "trials": [vars(t) for t in outcome.trials],
            },
            indent=2,
        )
    )
    return json_path
