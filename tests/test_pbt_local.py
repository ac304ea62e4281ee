"""pbt under katib-local: Katib's simple-pbt.yaml with a local trial script, over real processes.

katib-local starts the suggestion service with --data-dir WORKDIR/pbt and replaces the
experiment's suggestion_trial_dir in the trial's command with WORKDIR/pbt/<experiment>/<trial>,
so Katib's trial command works unchanged.
"""

import json
from pathlib import Path

import pytest
import yaml

from katib_services.algorithms.pbt import GENERATION, PARENT

from .test_local import result
from .test_local import run as run_local

DATA = Path(__file__).resolve().parent / "data"


def simple_pbt(**spec):
    document = yaml.safe_load((DATA / "simple-pbt.yaml").read_text())
    document["spec"].update(spec)
    return document


def run(tmp_path, document):
    """katib-local on the manifest, with the trial script beside it: (exit code, work dir, trials)."""
    (tmp_path / "pbt_trial.py").write_text((DATA / "pbt_trial.py").read_text())
    code, workdir = run_local(tmp_path, document)
    return code, workdir, result(workdir)[1]


def checkpoint(workdir, trial):
    return json.loads((workdir / "pbt" / "simple-pbt" / trial["name"] / "training.ckpt").read_text())


def test_katibs_simple_pbt_runs_unchanged(tmp_path, capsys):
    code, workdir, trials = run(tmp_path, simple_pbt())  # Katib's manifest as it is
    out = capsys.readouterr().out
    assert code == 0, out
    assert "resumePolicy" in out  # noticed as a field a local run ignores
    assert len(trials) == 2 and all(t["condition"] == "Succeeded" for t in trials)
    for trial in trials:
        assert trial["labels"] == {GENERATION: "0"} and trial["name"].startswith("simple-pbt-g0m")
        state = checkpoint(workdir, trial)  # the trial wrote its checkpoint where katib-local mounted it
        assert state["epochs"] == 20 and len(state["lineage"]) == 1
        assert float(trial["observation"]["Validation-accuracy"]) == pytest.approx(state["accuracy"], abs=1e-4)


def test_children_start_from_their_parents_checkpoints(tmp_path):
    code, workdir, trials = run(tmp_path, simple_pbt(maxTrialCount=15, parallelTrialCount=5, algorithm={
        "algorithmName": "pbt",
        "algorithmSettings": [
            {"name": "suggestion_trial_dir", "value": "/var/log/katib/checkpoints/"},
            {"name": "n_population", "value": "5"},
            {"name": "truncation_threshold", "value": "0.2"},
        ],
    }))
    assert code == 0 and len(trials) == 15
    by_name = {t["name"]: t for t in trials}
    generations = sorted(int(t["labels"][GENERATION]) for t in trials)
    assert generations[:5] == [0] * 5 and max(generations) >= 2
    for trial in trials:
        state = checkpoint(workdir, trial)
        generation = int(trial["labels"][GENERATION])
        assert state["epochs"] == 20 * (generation + 1)
        if generation:
            parent = by_name[trial["labels"][PARENT]]
            assert int(parent["labels"][GENERATION]) == generation - 1
            assert state["lineage"][:-1] == checkpoint(workdir, parent)["lineage"], "a copy of the parent's checkpoint"


def test_the_trial_dir_is_substituted_in_args_and_env_as_a_path(tmp_path):
    document = simple_pbt(maxTrialCount=1, parallelTrialCount=1)
    document["spec"]["algorithm"]["algorithmSettings"][0]["value"] = "/ckpt"
    container = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    script = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['CKPT']])); print('Validation-accuracy=0.5')"
    container["command"] = [
        "python3", "-c", script, "/ckpt", "--b=/ckpt/training.ckpt", "--c=/ckptx", "/ckpt/", "--e=/ckpt.d", "--f=/data/ckpt/x", "/mnt/ckpt",
    ]  # fmt: skip
    container["env"] = [{"name": "CKPT", "value": "/ckpt"}]
    code, workdir, trials = run(tmp_path, document)
    assert code == 0
    mounted = str(workdir / "pbt" / "simple-pbt" / trials[0]["name"])
    log = (workdir / "trials" / trials[0]["name"] / "output.log").read_text().splitlines()
    expected = [mounted, f"--b={mounted}/training.ckpt", "--c=/ckptx", f"{mounted}/", "--e=/ckpt.d", "--f=/data/ckpt/x", "/mnt/ckpt"]
    assert json.loads(log[0]) == [expected, mounted]
