"""The README stays true: its generated settings table, its two commands, and the CI script."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from katib_services.services.docs import END, START, settings_table
from katib_services.runner import spec

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def command_after(heading_text: str) -> str:
    """The first fenced command after the paragraph that contains `heading_text`."""
    tail = README[README.index(heading_text) :]
    return re.search(r"```\n(.+?)\n```", tail, re.S).group(1).strip()


def test_settings_table_is_current():
    block = README[README.index(START) : README.index(END) + len(END)]
    assert block == settings_table(), "README settings table is stale: run python -m katib_services.services.docs"


def test_metrics_table_is_current():
    from katib_services.services.docs import METRICS_END, METRICS_START, metrics_table

    block = README[README.index(METRICS_START) : README.index(METRICS_END) + len(METRICS_END)]
    assert block == metrics_table(), "README metrics table is stale: run python -m katib_services.services.docs"


@pytest.mark.parametrize(
    "command, pattern",
    [
        (["katib_services.services.suggestion"], r"--[a-z][a-z0-9-]+"),
        (["katib_services.services.earlystopping"], r"--[a-z][a-z0-9-]+"),
        (["katib_services.services.dbmanager"], r"--[a-z][a-z0-9-]+"),
        (["katib_services.runner.cli", "run"], r"--[a-z]+-tls-[a-z]+"),  # katib-local: its TLS flags
    ],
)
def test_operations_section_names_every_flag(command, pattern):
    """Every flag of every server CLI, and katib-local's TLS flags, are in the README's Operations section."""
    done = subprocess.run([sys.executable, "-m", *command, "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    flags = set(re.findall(pattern, done.stdout)) - {"--help"}
    assert flags, done.stdout + done.stderr
    operations = README[README.index("## Operations") :]
    operations = operations[: operations.index("\n## ", 1)]
    missing = sorted(flag for flag in flags if f"`{flag}" not in operations)
    assert not missing, f"README Operations does not name {missing}"


def test_ci_runs_the_readme_test_command():
    test_command = command_after("Run the tests")
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci, f".ci/run must run the README's test command: {test_command}"


def test_main_command_runs_the_realistic_example():
    command = command_after("Run an experiment")
    assert command == "python -m pip install '.[local]' && katib-local run examples/anomaly/experiment.yaml"


def test_examples_are_valid_experiments():
    for path in (ROOT / "examples").glob("*/experiment.yaml"):
        config = spec.load(path)
        assert config.max_trials and config.container.command, path


def test_toy_example_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "katib_services.runner.cli", "run", str(ROOT / "examples" / "toy" / "experiment.yaml"), "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    conditions = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("toy-")]  # the table
    assert "Succeeded" in conditions and set(conditions) <= {"Succeeded", "Killed"}  # Killed: the goal ended it
    assert "best trial toy-" in done.stdout
