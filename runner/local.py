"""Trials as local processes: the primary container of the trial Job, run as a subprocess.

* The command and args of the container, with `${trialParameters.NAME}` substituted, run in the
  directory of the Experiment file (or the container's `workingDir`, relative to it), with the
  container's `env` added to this process's environment. A leading `python` or `python3` runs
  with this interpreter, so trials see the same installed packages.
* Each trial runs in its own process group; stopping a trial (early stopping, Ctrl-C, or the end
  of the experiment) sends SIGTERM to the group, then SIGKILL after a grace period.
* Output goes to `WORKDIR/trials/NAME/output.log`. With the StdOut collector every line is parsed
  as it appears. With the File collector, every occurrence of the collector's `path` in the
  command, args and env is replaced by `WORKDIR/trials/NAME/` plus its file name, so parallel
  trials write separate files, and that file is followed as it grows.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .collector import TrialCollector
from .controller import Finished
from .spec import ExperimentConfig
from .state import TrialRecord

STOP_GRACE_SECONDS = 5.0
FILE_POLL_SECONDS = 0.1


class ProcessExecutor:
    def __init__(self, config: ExperimentConfig, workdir: Path):
        self.config = config
        self.workdir = workdir
        self.finished: queue.Queue[Finished] = queue.Queue()
        self.processes: dict[str, subprocess.Popen] = {}
        self.stopping: dict[str, str] = {}  # trial -> why it is being stopped: "early" or "killed"
        self.lock = threading.Lock()

    def trial_dir(self, name: str) -> Path:
        return self.workdir / "trials" / name

    def start(self, trial: TrialRecord, collector: TrialCollector) -> None:
        directory = self.trial_dir(trial.name)
        directory.mkdir(parents=True, exist_ok=True)
        argv, env = self.config.command_for(trial.name, trial.assignment)
        metrics_file = None
        if self.config.collector.kind == "File":
            source = self.config.collector.path
            metrics_file = directory / Path(source).name
            metrics_file.unlink(missing_ok=True)
            argv = [part.replace(source, str(metrics_file)) for part in argv]
            env = {k: v.replace(source, str(metrics_file)) for k, v in env.items()}
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        cwd = self.config.base_dir / (self.config.container.working_dir or ".")
        log = open(directory / "output.log", "w")
        try:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except OSError as error:
            log.close()
            self.finished.put(Finished(trial.name, exit_code=None, message=f"cannot start {argv[0]}: {error}"))
            return
        with self.lock:
            self.processes[trial.name] = process
        threading.Thread(
            target=self._watch, args=(trial.name, process, log, collector, metrics_file), daemon=True
        ).start()

    def _watch(self, name, process, log, collector: TrialCollector, metrics_file: Path | None) -> None:
        """Copies output to the log, feeds the collector, and reports the end of the trial."""
        follower = None
        if metrics_file is not None:
            follower = threading.Thread(target=self._follow, args=(name, process, metrics_file, collector), daemon=True)
            follower.start()
        with log:
            for line in process.stdout:
                log.write(line)
                log.flush()
                if metrics_file is None and self.config.collector.kind != "None":
                    self._feed(name, collector, line)
        code = process.wait()
        if follower is not None:
            follower.join()
        with self.lock:
            self.processes.pop(name, None)
            why = self.stopping.pop(name, "")
        self.finished.put(
            Finished(name, exit_code=code, early_stopped=why == "early", killed=why == "killed", message=_exit_text(code))
        )

    def _follow(self, name, process, path: Path, collector: TrialCollector) -> None:
        """Tails the File collector's file until the process has ended and the file is read."""
        offset, pending = 0, ""
        while True:
            running = process.poll() is None
            if path.exists():
                with open(path, errors="replace") as f:
                    f.seek(offset)
                    chunk = f.read()
                    offset = f.tell()
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    self._feed(name, collector, line)
            if not running:
                if pending:
                    self._feed(name, collector, pending)
                return
            time.sleep(FILE_POLL_SECONDS)

    def _feed(self, name: str, collector: TrialCollector, line: str) -> None:
        if collector.feed_text(line) and name not in self.stopping:
            self._stop(name, "early")

    def _stop(self, name: str, why: str) -> None:
        with self.lock:
            process = self.processes.get(name)
            if process is None or name in self.stopping:
                return
            self.stopping[name] = why
        threading.Thread(target=_terminate, args=(process,), daemon=True).start()

    def wait(self, timeout: float) -> list[Finished]:
        try:
            done = [self.finished.get(timeout=timeout)]
        except queue.Empty:
            return []
        while not self.finished.empty():
            done.append(self.finished.get_nowait())
        return done

    def stop_all(self) -> None:
        with self.lock:
            names = list(self.processes)
        for name in names:
            self._stop(name, "killed")


def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM to the trial's process group, SIGKILL if it is still there after the grace period."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _exit_text(code: int) -> str:
    if code < 0:
        return f"terminated by {signal.Signals(-code).name}"
    return "" if code == 0 else f"exit code {code}"
