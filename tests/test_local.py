"""katib-local end to end: real gRPC servers, real SQLite, trials as real processes."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from katib_services.runner import cli
from katib_services.services.pb import api_pb2
from katib_services.services.server import Server

ROOT = Path(__file__).resolve().parent.parent
TRIAL = Path(__file__).resolve().parent / "data" / "trial.py"


def manifest(name="exp", args=(), algorithm="random", settings=None, **spec):
    """A Katib Experiment in the shape users write, running tests/data/trial.py."""
    document = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": "kubeflow"},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {
                "algorithmName": algorithm,
                "algorithmSettings": [{"name": k, "value": str(v)} for k, v in (settings or {"random_state": 1}).items()],
            },
            "parallelTrialCount": 2,
            "maxTrialCount": 4,
            "parameters": [
                {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "-1", "max": "3", "step": "0.5"}},
                {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["adam", "sgd"]}},
            ],
            "trialTemplate": {
                "primaryContainerName": "training",
                "trialParameters": [
                    {"name": "x", "reference": "x"},
                    {"name": "optimizer", "reference": "opt"},
                    {"name": "trialName", "reference": "${trialSpec.Name}"},
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "training",
                                        "image": "python:3.11",
                                        "command": ["python3", str(TRIAL)],
                                        "args": [
                                            "--x=${trialParameters.x}",
                                            "--opt=${trialParameters.optimizer}",
                                            "--trial=${trialParameters.trialName}",
                                            *args,
                                        ],
                                    }
                                ],
                                "restartPolicy": "Never",
                            }
                        }
                    },
                },
            },
        },
    }
    document["spec"].update(spec)
    return document


def write(tmp_path, document, name="experiment.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def run(tmp_path, document, *options):
    """Runs katib-local in this process; returns (exit code, work directory)."""
    workdir = tmp_path / "work"
    path = write(tmp_path, document)
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", str(path), "--workdir", str(workdir), *options])
    return exited.value.code, workdir


def result(workdir):
    data = json.loads((workdir / "experiment.json").read_text())
    return data["status"], data["trials"]


def test_toy_experiment_reaches_its_goal(tmp_path, capsys):
    document = manifest(maxTrialCount=12, parallelTrialCount=1)
    document["spec"]["objective"]["goal"] = 1.0
    code, workdir = run(tmp_path, document)
    status, trials = result(workdir)
    assert code == 0 and status["reason"] == "GoalReached"
    assert len(trials) < 12
    assert float(trials[-1]["observation"]["loss"]) <= 1.0  # the last trial reached it
    out = capsys.readouterr().out
    assert "best trial exp-" in out and "trial    condition  x" in out
    rows = list(csv.DictReader(open(workdir / "trials.csv")))
    assert [r["trial"] for r in rows] == [t["name"] for t in trials]
    png = (workdir / "results.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    for trial in trials:
        log = (workdir / "trials" / trial["name"] / "output.log").read_text()
        assert "noise line" in log and "loss=" in log


def test_observation_follows_metric_strategy(tmp_path):
    document = manifest(maxTrialCount=2)
    document["spec"]["objective"]["metricStrategies"] = [{"name": "loss", "value": "latest"}]
    document["spec"]["objective"]["additionalMetricNames"] = ["step"]
    code, workdir = run(tmp_path, document)
    _, trials = result(workdir)
    for trial in trials:
        x = float(trial["assignment"]["x"])
        final = (x - 1) ** 2 + (1.0 if trial["assignment"]["opt"] == "sgd" else 0.0)
        assert float(trial["observation"]["loss"]) == pytest.approx(final)  # latest, not the min
        assert trial["observation"]["step"] == "1.0"  # Katib's default strategy for a minimized experiment: min


def test_max_failed_trial_count_fails_the_experiment(tmp_path):
    document = manifest(args=["--fail-on=sgd"], maxTrialCount=20, parallelTrialCount=1, maxFailedTrialCount=1)
    code, workdir = run(tmp_path, document)
    status, trials = result(workdir)
    failed = [t for t in trials if t["condition"] == "Failed"]
    assert code == 1 and status["condition"] == "Failed" and status["reason"] == "MaxFailedTrialsReached"
    # Katib's controller: the experiment fails once maxFailedTrialCount trials failed, not one later
    assert len(failed) == 1 and failed[0]["assignment"]["opt"] == "sgd"
    log = workdir / "trials" / failed[0]["name"] / "output.log"
    assert failed[0]["message"].startswith(f"exit code 3; log {log}; last lines of stderr:")
    assert "something went wrong" in failed[0]["message"] and "something went wrong" in log.read_text()


class RecordingEarlyStopping:
    """A stand-in early-stopping service: one fixed rule, and a record of SetTrialStatus calls."""

    def __init__(self, rule):
        self.rule = rule
        self.stopped = []
        self.requests = []

    def ValidateEarlyStoppingSettings(self, request, context):
        return api_pb2.ValidateEarlyStoppingSettingsReply()

    def GetEarlyStoppingRules(self, request, context):
        self.requests.append(request)
        return api_pb2.GetEarlyStoppingRulesReply(early_stopping_rules=[self.rule])

    def SetTrialStatus(self, request, context):
        self.stopped.append(request.trial_name)
        return api_pb2.SetTrialStatusReply()


def serve_stub(servicer, service):
    return Server("127.0.0.1:0", [(servicer, service)])


def test_early_stopping_rules_stop_a_trial(tmp_path):
    # loss falls by 1 per step from final + 19: after 3 reports it is still far above 2.5, so stop.
    rule = api_pb2.EarlyStoppingRule(name="loss", value="2.5", comparison=api_pb2.GREATER, start_step=3)
    stub = RecordingEarlyStopping(rule)
    server = serve_stub(stub, "EarlyStopping")
    try:
        document = manifest(args=["--steps=20", "--sleep=0.05"], maxTrialCount=2)
        document["spec"]["earlyStopping"] = {"algorithmName": "medianstop"}
        code, workdir = run(tmp_path, document, "--earlystopping-address", server.address)
    finally:
        server.shutdown(grace=1)
    status, trials = result(workdir)
    assert code == 0
    assert [t["condition"] for t in trials] == ["EarlyStopped", "EarlyStopped"]
    assert sorted(stub.stopped) == sorted(t["name"] for t in trials)
    assert stub.requests[0].db_manager_address.startswith("127.0.0.1:")
    for trial in trials:
        log = (workdir / "trials" / trial["name"] / "output.log").read_text()
        assert 3 <= log.count("loss=") < 20, "stopped after the third report, long before the end"
        assert trial["observation"]["loss"]  # the partial observation is kept


class ScriptedSuggestion:
    """A stand-in suggestion service that names trials, labels them and returns settings."""

    def __init__(self, short=False):
        self.short = short
        self.requests = []

    def ValidateAlgorithmSettings(self, request, context):
        return api_pb2.ValidateAlgorithmSettingsReply()

    def GetSuggestions(self, request, context):
        self.requests.append(request)
        reply = api_pb2.GetSuggestionsReply()
        count = request.current_request_number - (1 if self.short else 0)
        for i in range(count):
            n = request.total_request_number - request.current_request_number + i
            item = reply.parameter_assignments.add(trial_name=f"custom-{n}")
            item.assignments.add(name="x", value=str(n * 0.5))
            item.assignments.add(name="opt", value="adam")
            item.labels["generation"] = str(n)
        reply.algorithm.algorithm_settings.add(name="cursor", value=str(request.total_request_number))
        return reply


def test_trial_names_labels_and_settings_round_trip(tmp_path):
    stub = ScriptedSuggestion()
    server = serve_stub(stub, "Suggestion")
    try:
        code, workdir = run(tmp_path, manifest(maxTrialCount=4, parallelTrialCount=2), "--suggestion-address", server.address)
    finally:
        server.shutdown(grace=1)
    _, trials = result(workdir)
    assert code == 0 and [t["name"] for t in trials] == ["custom-0", "custom-1", "custom-2", "custom-3"]
    assert [t["labels"] for t in trials] == [{"generation": str(n)} for n in range(4)]
    first, *later = stub.requests
    assert (first.current_request_number, first.total_request_number, len(first.trials)) == (2, 2, 0)
    for request in later:
        settings = {s.name: s.value for s in request.experiment.spec.algorithm.algorithm_settings}
        assert settings["random_state"] == "1" and int(settings["cursor"]) == request.total_request_number - request.current_request_number
        sent = {t.name: t for t in request.trials}
        assert all(sent[name].spec.labels["generation"] == name.split("-")[1] for name in sent)
        assert all(t.status.condition in (api_pb2.TrialStatus.RUNNING, api_pb2.TrialStatus.SUCCEEDED) for t in request.trials)
        assert len(request.trials) == request.total_request_number - request.current_request_number


def test_reply_of_the_wrong_size_stops_with_a_clear_error(tmp_path, capsys):
    server = serve_stub(ScriptedSuggestion(short=True), "Suggestion")
    try:
        code, workdir = run(tmp_path, manifest(), "--suggestion-address", server.address)
    finally:
        server.shutdown(grace=1)
    status, _ = result(workdir)
    assert code == 1
    assert "returned 1 assignments for a request of 2" in status["message"]
    assert "returned 1 assignments for a request of 2" in capsys.readouterr().out


def test_suggestion_error_ends_the_experiment_with_code_and_message(tmp_path):
    document = manifest(algorithm="grid", settings={}, maxTrialCount=4)
    document["spec"]["parameters"][0]["feasibleSpace"] = {"min": "0", "max": "1"}  # grid needs a step
    code, workdir = run(tmp_path, document)
    status, trials = result(workdir)
    assert code == 1 and trials == []
    assert status["message"].startswith("validation failed: INVALID_ARGUMENT: ")
    assert 'spec.parameters[0] ("x").feasibleSpace.step: is missing' in status["message"]


@pytest.mark.parametrize(
    "collector,fmt",
    [
        ({"collector": {"kind": "StdOut"}}, "stamped"),
        (
            {"collector": {"kind": "StdOut"}, "source": {"filter": {"metricsFormat": [r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}"]}}},
            "custom",
        ),
        ({"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "/var/log/katib/metrics.log", "kind": "File"}}}, "text"),
        (
            {"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "/var/log/katib/metrics.json", "kind": "File", "format": "JSON"}}},
            "json",
        ),
    ],
    ids=["stdout-timestamped", "stdout-custom-filter", "file-text", "file-json"],
)
def test_metrics_collector_kinds(tmp_path, collector, fmt):
    args = [f"--format={fmt}"]
    path = collector.get("source", {}).get("fileSystemPath", {}).get("path")
    if path:
        args.append(f"--file={path}")  # replaced by a per-trial file
    code, workdir = run(tmp_path, manifest(args=args, maxTrialCount=2, metricsCollectorSpec=collector))
    _, trials = result(workdir)
    assert code == 0
    for trial in trials:
        x = float(trial["assignment"]["x"])
        final = (x - 1) ** 2 + (1.0 if trial["assignment"]["opt"] == "sgd" else 0.0)
        assert trial["condition"] == "Succeeded"
        assert float(trial["observation"]["loss"]) == pytest.approx(final)
        if path:
            assert (workdir / "trials" / trial["name"] / Path(path).name).exists()


def test_no_objective_is_metrics_unavailable(tmp_path):
    document = manifest(maxTrialCount=2)
    document["spec"]["objective"]["objectiveMetricName"] = "accuracy"  # never printed
    code, workdir = run(tmp_path, document)
    _, trials = result(workdir)
    assert code == 0
    assert [t["condition"] for t in trials] == ["MetricsUnavailable"] * 2
    assert trials[0]["message"] == "no accuracy value was reported"


@pytest.mark.parametrize(
    "change,expected",
    [
        (lambda d: d.pop("kind"), "kind: is None; expected Experiment"),
        (lambda d: d["spec"].pop("objective"), "spec.objective: is missing"),
        (lambda d: d["spec"]["objective"].update(type="best"), "spec.objective.type: is 'best'; use minimize or maximize"),
        (lambda d: d["spec"].update(maxTrialCount="ten"), "spec.maxTrialCount: 'ten' must be an integer from 1 to 2147483647"),
        (lambda d: d["spec"].update(maxTrialCount=2**40), "spec.maxTrialCount: 1099511627776 must be an integer from 1 to 2147483647"),
        (lambda d: d["spec"].update(parallelTrialCount=2**31), "spec.parallelTrialCount: 2147483648 must be an integer from 1 to"),
        (lambda d: d["spec"].update(parameters={"x": 1}), "spec.parameters: must be a list, not dict"),
        (
            lambda d: d["spec"]["trialTemplate"].update(primaryContainerName="main"),
            "spec.trialTemplate.primaryContainerName: 'main' names no container of the trial Job",
        ),
        (
            lambda d: d["spec"]["trialTemplate"]["trialParameters"][0].update(reference="lr"),
            "spec.trialTemplate.trialParameters[0].reference: 'lr' is not a parameter in spec.parameters",
        ),
        (
            lambda d: d["spec"].update(metricsCollectorSpec={"collector": {"kind": "TensorFlowEvent"}}),
            "spec.metricsCollectorSpec.collector.kind",
        ),
        (
            lambda d: d["spec"].update(metricsCollectorSpec={"source": {"filter": {"metricsFormat": ["(unclosed"]}}}),
            "spec.metricsCollectorSpec.source.filter.metricsFormat[0]",
        ),
    ],
    ids=["kind", "objective", "objective-type", "max-trials", "max-trials-int32", "parallel-int32", "parameters", "container", "reference", "collector", "filter"],
)
def test_malformed_manifest_names_the_field(tmp_path, capsys, change, expected):
    document = manifest()
    change(document)
    code, workdir = run(tmp_path, document)
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not (workdir / "experiment.db").exists()


def test_not_yaml_at_all(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("spec: [unclosed\n")
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", str(path)])
    assert exited.value.code == 2 and "not valid YAML" in capsys.readouterr().err


def test_katib_random_example_shape(tmp_path):
    """Katib's published random.yaml, rewritten: learningRate/numberLayers/optimizer passed as flags."""
    text = (Path(__file__).resolve().parent / "data" / "katib-random.yaml").read_text().replace("TRIAL_SCRIPT", str(TRIAL.parent / "mnist_like.py"))
    path = tmp_path / "random.yaml"
    path.write_text(text)
    workdir = tmp_path / "work"
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", str(path), "--workdir", str(workdir)])
    status, trials = result(workdir)
    assert exited.value.code == 0 and status["reason"] == "MaxTrialsReached"
    assert len(trials) == 6 and all(t["condition"] == "Succeeded" for t in trials)
    for trial in trials:
        lr = float(trial["assignment"]["lr"])
        assert 0.01 <= lr <= 0.05
        assert f"lr={trial['assignment']['lr']}" in (workdir / "trials" / trial["name"] / "output.log").read_text()


def test_ctrl_c_then_resume_reruns_only_unfinished_trials(tmp_path):
    record = tmp_path / "runs.txt"
    document = manifest(args=["--steps=4", "--sleep=0.4", f"--record={record}"], maxTrialCount=6, parallelTrialCount=2)
    path = write(tmp_path, document)
    workdir = tmp_path / "work"
    command = [sys.executable, "-m", "katib_services.runner.cli", "run", str(path), "--workdir", str(workdir)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in process.stdout:  # wait until two trials finished and two more run
        seen.append(line)
        if sum(" Succeeded " in seen_line for seen_line in seen) >= 2 and " started " in line:
            break
    started = line.split("] ", 1)[1].split()[0]
    deadline = time.monotonic() + 60
    while started not in record.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)  # the trial's process is up and has recorded itself
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=30)
    assert process.returncode == 130, rest
    assert "--resume" in rest
    status, trials = result(workdir)
    finished_before = {t["name"] for t in trials if t["condition"] == "Succeeded"}
    interrupted = {t["name"] for t in trials if t["condition"] == "Killed"}
    assert len(finished_before) >= 2 and interrupted
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--resume" in again.stderr  # refuses to start over silently
    resumed = subprocess.run(command + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # The done counter counts neither interrupted trials nor goes down when they run again.
    done = [int(line.split("/", 1)[0][1:]) for line in (seen + rest.splitlines() + resumed.stdout.splitlines()) if line.startswith("[")]
    assert done == sorted(done) and done[-1] == 6, done
    status, trials = result(workdir)
    assert status["reason"] == "MaxTrialsReached" and len(trials) == 6
    assert all(t["condition"] == "Succeeded" for t in trials)
    runs = record.read_text().split()
    for name in finished_before:
        assert runs.count(name) == 1, f"{name} finished before the interrupt and must not run again"
    for name in interrupted:
        assert runs.count(name) == 2, f"{name} was interrupted and must run again"


def test_medianstop_end_to_end_with_the_real_services(tmp_path):
    """katib-local starts katib-earlystopping itself; stopped trials end early and say so."""
    document = manifest(args=["--steps=10", "--sleep=0.05"], maxTrialCount=10, parallelTrialCount=1)
    document["spec"]["earlyStopping"] = {
        "algorithmName": "medianstop",
        "algorithmSettings": [{"name": "min_trials_required", "value": "2"}, {"name": "start_step", "value": "2"}],
    }
    code, workdir = run(tmp_path, document)
    status, trials = result(workdir)
    assert code == 0 and status["reason"] == "MaxTrialsReached"
    stopped = [t for t in trials if t["condition"] == "EarlyStopped"]
    assert stopped, [t["condition"] for t in trials]
    assert all(t["condition"] == "Succeeded" for t in trials[:2]), "no rule before two trials succeeded"
    for trial in stopped:
        log = (workdir / "trials" / trial["name"] / "output.log").read_text()
        assert 2 <= log.count("loss=") < 10
