"""katib-local outside the happy path, each case over real processes: no hang, nothing left
running, no path outside the work directory, Katib's semantics, and failures that say why."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from katib_services.runner import spec as runner_spec
from katib_services.services.client import ServerProcess

from .test_local import ROOT, ScriptedSuggestion, manifest, result, run, serve_stub, write

KATIB_LOCAL = [sys.executable, "-m", "katib_services.runner.cli", "run"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")  # a zombie has ended


def descendants(pid: int) -> set[int]:
    """Every process below `pid` now (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def start_katib_local(tmp_path, document, *options, cwd=ROOT):
    path = write(tmp_path, document)
    workdir = tmp_path / "work"
    process = subprocess.Popen(
        [*KATIB_LOCAL, str(path), "--workdir", str(workdir), *options], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return process, workdir


def wait_for_line(process, text: str, timeout: float = 60) -> list[str]:
    seen = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        seen.append(line)
        if text in line:
            return seen
        assert time.monotonic() < deadline, "".join(seen)
    raise AssertionError("".join(seen))


# -- hangs -------------------------------------------------------------------------------------------------


def test_db_manager_gone_ends_the_run_with_a_message_and_a_chatty_trial_never_blocks(tmp_path):
    db = ServerProcess(["katib_services.services.dbmanager", "--db", str(tmp_path / "db.sqlite")])
    document = manifest(args=["--steps=40", "--sleep=0.05", "--chatty=200"], maxTrialCount=2, parallelTrialCount=1)
    process, workdir = start_katib_local(tmp_path, document, "--dbmanager-address", db.address)
    try:
        wait_for_line(process, " started ")
        time.sleep(0.3)
        db.stop()  # the DB manager is gone while the trial reports its metrics
        out, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        db.stop()
    assert process.returncode == 1, out
    status, trials = result(workdir)
    assert status["condition"] == "Failed" and "GetObservationLog failed: UNAVAILABLE" in status["message"]
    assert trials[0]["condition"] == "Failed" and trials[0]["message"].startswith("reporting metrics failed: ")
    log = (workdir / "trials" / trials[0]["name"] / "output.log").read_text()
    assert log.count("chatter") > 200  # the output kept being read after the collector failed


def test_a_trial_killed_by_an_unnamed_signal_is_failed_and_the_run_goes_on(tmp_path):
    code, workdir = run(tmp_path, manifest(args=["--signal=35"], maxTrialCount=2, parallelTrialCount=1))
    status, trials = result(workdir)
    assert code == 0 and status["reason"] == "MaxTrialsReached"
    assert [t["condition"] for t in trials] == ["Failed", "Failed"]
    assert all(t["message"].startswith("terminated by signal 35; log ") for t in trials)


@pytest.mark.parametrize(
    "names,expected",
    [
        (["same", "same"], "is already the name of a trial of this experiment"),
        (["../escape", "ok"], "is not a Kubernetes object name"),
        (["/tmp/absolute", "ok"], "is not a Kubernetes object name"),
        (["UPPER", "ok"], "is not a Kubernetes object name"),
        (["a" * 64, "ok"], "is not a Kubernetes object name"),
    ],
)
def test_bad_or_repeated_trial_names_end_the_run_naming_the_reply(tmp_path, names, expected):
    class Naming(ScriptedSuggestion):
        def GetSuggestions(self, request, context):
            reply = super().GetSuggestions(request, context)
            for item, name in zip(reply.parameter_assignments, names):
                item.trial_name = name
            return reply

    server = serve_stub(Naming(), "Suggestion")
    try:
        code, workdir = run(tmp_path, manifest(maxTrialCount=4, parallelTrialCount=2), "--suggestion-address", server.address)
    finally:
        server.shutdown(grace=1)
    status, trials = result(workdir)
    assert code == 1 and trials == []
    assert "the suggestion service's reply, parameter_assignments[" in status["message"] and expected in status["message"]
    assert not (tmp_path / "escape").exists() and not Path("/tmp/absolute").exists()
    assert not any(p.name == "escape" for p in tmp_path.rglob("*"))


def test_resume_with_the_db_manager_unreachable_ends_with_a_message(tmp_path):
    process, workdir = start_katib_local(tmp_path, manifest(args=["--steps=50", "--sleep=0.1"], maxTrialCount=2, parallelTrialCount=1))
    try:
        wait_for_line(process, " started ")
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{unused.getsockname()[1]}"
    resumed = subprocess.run([*KATIB_LOCAL, str(tmp_path / "experiment.yaml"), "--workdir", str(workdir), "--resume",
                              "--dbmanager-address", closed], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 1 and "Traceback" not in resumed.stderr, resumed.stdout + resumed.stderr
    status, trials = result(workdir)
    assert status["condition"] == "Failed" and status["message"].startswith("DeleteObservationLog failed: UNAVAILABLE: ")
    assert status["message"] in resumed.stdout
    assert [t["condition"] for t in trials] == ["Killed"]  # still interrupted: a later --resume runs it again


# -- nothing left running --------------------------------------------------------------------------------


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_a_signal_stops_trials_and_services_and_keeps_the_state(tmp_path, sig, code):
    pids = tmp_path / "pids.txt"
    document = manifest(args=["--steps=50", "--sleep=0.1", f"--pids={pids}"], maxTrialCount=4, parallelTrialCount=2)
    document["spec"]["earlyStopping"] = {"algorithmName": "medianstop"}  # a third service
    process, workdir = start_katib_local(tmp_path, document)
    try:
        seen = wait_for_line(process, " started ")
        deadline = time.monotonic() + 20
        while len(pids.read_text().split()) < 4 if pids.exists() else True:  # both trials and their children are up
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = descendants(process.pid)
        assert len(started) >= 7  # three services, two trials, two grandchildren
        process.send_signal(sig)
        out, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == code, "".join(seen) + out
    left = [pid for pid in started | {int(p) for p in pids.read_text().split()} if alive(pid)]
    assert not left, f"still running after katib-local ended: {left}"
    status, trials = result(workdir)
    assert status["condition"] == "Interrupted" and signal.Signals(sig).name in status["message"]
    assert {t["condition"] for t in trials} == {"Killed"}
    resumed = subprocess.run([*KATIB_LOCAL, str(tmp_path / "experiment.yaml"), "--workdir", str(workdir), "--resume"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


def test_nothing_is_left_running_after_a_normal_end(tmp_path):
    pids = tmp_path / "pids.txt"
    process, workdir = start_katib_local(tmp_path, manifest(args=["--steps=2", f"--pids={pids}"], maxTrialCount=2, parallelTrialCount=2))
    try:
        seen = wait_for_line(process, " started ")
        started = descendants(process.pid)
        assert len(started) >= 3  # two services and a trial
        out, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, "".join(seen) + out
    trial_pids = {int(p) for p in pids.read_text().split()}
    assert len(trial_pids) == 4  # two trials, each with a `sleep 120` child
    left = [pid for pid in started | trial_pids if alive(pid)]
    assert not left, f"still running after katib-local ended: {left}"


# -- paths -------------------------------------------------------------------------------------------------


def test_file_collector_from_another_directory_with_the_default_work_directory(tmp_path):
    elsewhere = tmp_path / "x"
    elsewhere.mkdir()
    collector = {"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "/var/log/katib/metrics.log", "kind": "File"}}}
    document = manifest(args=["--format=text", "--file=/var/log/katib/metrics.log"], maxTrialCount=2, metricsCollectorSpec=collector)
    path = write(elsewhere, document, "file-metrics-collector.yaml")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = subprocess.run([*KATIB_LOCAL, os.path.relpath(path, cwd)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout + done.stderr
    status, trials = result(cwd / "runs" / "exp")
    assert [t["condition"] for t in trials] == ["Succeeded", "Succeeded"]
    for trial in trials:  # each trial was given the absolute path of its own file
        directory = cwd / "runs" / "exp" / "trials" / trial["name"]
        assert f"metrics file {directory / 'metrics.log'}\n" in (directory / "output.log").read_text()
        assert (directory / "metrics.log").exists()


# -- the manifest --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,expected",
    [
        (lambda s: s.update(maxTrialCont=4), "spec.maxTrialCont: unknown field; did you mean maxTrialCount?"),
        (lambda s: s.update(parallelTrailCount=2), "spec.parallelTrailCount: unknown field; did you mean parallelTrialCount?"),
        (lambda s: s["objective"].update(objectiveMetric="loss"), "spec.objective.objectiveMetric: unknown field; did you mean objectiveMetricName?"),
        (lambda s: s["parameters"][0]["feasibleSpace"].update(stepp="1"), "spec.parameters[0].feasibleSpace.stepp: unknown field; did you mean step?"),
        (lambda s: s["trialTemplate"]["trialParameters"][0].update(ref="x"), "spec.trialTemplate.trialParameters[0].ref: unknown field; did you mean reference?"),
    ],
)
def test_unknown_fields_are_refused_before_any_trial(tmp_path, capsys, change, expected):
    document = manifest()
    change(document["spec"])
    code, workdir = run(tmp_path, document)
    assert code == 2 and expected in capsys.readouterr().err
    assert not (workdir / "trials").exists()


def test_fields_katib_uses_and_katib_local_ignores_are_a_notice(tmp_path, capsys):
    document = manifest(maxTrialCount=1, resumePolicy="LongRunning")
    code, _ = run(tmp_path, document)
    out = capsys.readouterr().out
    assert code == 0 and out.count("notice: katib-local ignores") == 1
    assert "spec.resumePolicy" in out and ".image (katib-local runs the container's command on this machine; python:3.11 is not used)" in out


def test_max_failed_trial_count_zero_allows_no_failure_but_needs_one(tmp_path):
    code, workdir = run(tmp_path, manifest(args=["--fail-on=sgd"], maxTrialCount=30, parallelTrialCount=1, maxFailedTrialCount=0))
    status, trials = result(workdir)
    assert code == 1 and status["reason"] == "MaxFailedTrialsReached"
    assert [t["condition"] for t in trials].count("Failed") == 1 and trials[-1]["condition"] == "Failed"


# -- diagnosis ---------------------------------------------------------------------------------------------


def test_missing_extras_refuse_before_any_trial_with_the_install_command(tmp_path):
    path = write(tmp_path, manifest())
    code = (
        "import sys; sys.modules['matplotlib'] = None; "
        f"from katib_services.runner import cli; cli.main(['run', {str(path)!r}, '--workdir', {str(tmp_path / 'work')!r}])"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "needs matplotlib" in done.stderr and "python -m pip install 'katib-services[local]'" in done.stderr
    assert not (tmp_path / "work").exists()


def test_a_program_that_exists_only_in_the_image_is_explained(tmp_path):
    document = manifest(maxTrialCount=1)
    container = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python3", "/opt/pytorch-mnist/mnist.py"]
    container["image"] = "docker.io/kubeflowkatib/pytorch-mnist-cpu:latest"
    code, workdir = run(tmp_path, document, )
    _, trials = result(workdir)
    message = trials[0]["message"]
    assert trials[0]["condition"] == "Failed" and message.startswith("exit code 2; log ")
    assert "can't open file" in message  # python's own complaint, from the last lines of stderr
    assert "/opt/pytorch-mnist/mnist.py does not exist here: katib-local runs the container's command on this machine" in message
    assert "docker.io/kubeflowkatib/pytorch-mnist-cpu:latest is not used" in message


def test_a_program_that_does_not_exist_fails_the_trial_saying_why(tmp_path):
    document = manifest(maxTrialCount=1)
    document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"] = ["no-such-program-xyz"]
    code, workdir = run(tmp_path, document)
    status, trials = result(workdir)
    assert code == 0 and status["reason"] == "MaxTrialsReached" and [t["condition"] for t in trials] == ["Failed"]
    message = trials[0]["message"]
    assert message.startswith("cannot start no-such-program-xyz: [Errno 2] No such file or directory")
    assert message.endswith(
        "; no-such-program-xyz does not exist here: katib-local runs the container's command on this machine "
        "(the image python:3.11 is not used), so point command and args at local files"
    )


def test_no_trial_reporting_the_objective_says_what_the_collector_expects(tmp_path, capsys):
    document = manifest(maxTrialCount=2)
    document["spec"]["objective"]["objectiveMetricName"] = "accuracy"  # the trial prints loss=...
    code, workdir = run(tmp_path, document)
    out = capsys.readouterr().out
    assert "no trial reported accuracy: trials must write lines such as accuracy=0.93" in out
    status, _ = result(workdir)
    assert "no trial reported accuracy" in status["message"]


def test_a_failed_trials_partial_value_is_never_plotted_as_a_result(tmp_path, monkeypatch):
    from katib_services.runner import plot

    drawn = {}
    monkeypatch.setattr(plot, "plot_results", lambda path, parameters, trials, *rest: drawn.setdefault("trials", trials))
    code, workdir = run(tmp_path, manifest(args=["--steps=3", "--fail-at-step=2"], maxTrialCount=2, parallelTrialCount=1))
    _, trials = result(workdir)
    assert [t["condition"] for t in trials] == ["Failed", "Failed"] and all(t["observation"].get("loss") for t in trials)
    assert [t["objective"] for t in drawn["trials"]] == [None, None]  # reported, but not a result
    assert [t["condition"] for t in drawn["trials"]] == ["Failed", "Failed"]


def test_validation_failure_writes_no_trials_csv_or_png(tmp_path):
    document = manifest(algorithm="grid", settings={})
    document["spec"]["parameters"][0]["feasibleSpace"] = {"min": "0", "max": "1"}  # grid needs a step
    code, workdir = run(tmp_path, document)
    assert code == 1
    assert (workdir / "experiment.json").exists()
    assert not (workdir / "trials.csv").exists() and not (workdir / "results.png").exists()


def test_trial_names_keep_one_width():
    config = runner_spec.parse(manifest(maxTrialCount=1000), trial_template=False)
    assert [config.trial_name(n) for n in (1, 999, 1000)] == ["exp-0001", "exp-0999", "exp-1000"]
    unbounded = runner_spec.parse(manifest(), trial_template=False)
    unbounded = unbounded.__class__(**{**vars(unbounded), "max_trials": None})
    assert len({len(unbounded.trial_name(n)) for n in (1, 999, 1000, 99999)}) == 1
    long_name = runner_spec.parse(manifest(name="e" * 63, maxTrialCount=5), trial_template=False)
    assert len(long_name.trial_name(5)) <= 63
