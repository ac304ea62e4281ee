"""The README stays true: its generated settings table, its two commands, and the CI script."""

import re
import subprocess
import sys
from pathlib import Path

from algorithms.docs import END, START, settings_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def command_after(heading_text: str) -> str:
    """The first fenced command after the paragraph that contains `heading_text`."""
    tail = README[README.index(heading_text) :]
    return re.search(r"```\n(.+?)\n```", tail, re.S).group(1).strip()


def test_settings_table_is_current():
    block = README[README.index(START) : README.index(END) + len(END)]
    assert block == settings_table(), "README settings table is stale: run python -m algorithms.docs"


def test_ci_runs_the_readme_test_command():
    test_command = command_after("Run the tests")
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci, f".ci/run must run the README's test command: {test_command}"


def test_main_command_is_the_demo():
    assert command_after("Run an experiment") == "python -m pip install . && katib-demo"


def test_demo_runs_twenty_trials_and_prints_the_best():
    done = subprocess.run(
        [sys.executable, "-m", "services.demo"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    trials = [line for line in lines if line.startswith("demo-random-")]
    assert len(trials) == 20
    assert len({line.split("accuracy=")[0].split(None, 1)[1] for line in trials}) == 20, "repeated assignment"
    best = max(float(line.rsplit("accuracy=", 1)[1]) for line in trials)
    assert lines[-1].startswith("best of 20 trials:") and lines[-1].endswith(f"accuracy={best}")
