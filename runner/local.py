"""Trials as local processes: the primary container of the trial Job, run as a subprocess.

* The command and args of the container, with `${trialParameters.NAME}` substituted, run in the
  directory of the Experiment file (or the container's `workingDir`, relative to it), with the
  container's `env` added to this process's environment. A leading `python` or `python3` runs
  with this interpreter, so trials see the same installed packages.
* Each trial runs in its own process group; stopping a trial (early stopping, a signal, or the
  end of the experiment) sends SIGTERM to the group, then SIGKILL after a grace period.
* Output (stdout and stderr, as Katib's StdOut collector reads them) goes to
  `WORKDIR/trials/NAME/output.log`; the last lines of stderr are kept for the trial's message.
  With the StdOut collector every line is parsed as it appears. With the File collector, every
  occurrence of the collector's `path` in the command, args and env is replaced by the absolute
  path `WORKDIR/trials/NAME/` plus its file name, so parallel trials write separate files, and
  that file is followed as it grows.
* Checkpoints (pbt): the suggestion service keeps each trial's checkpoint directory under
  `WORKDIR/pbt/` (its `--data-dir`, as Katib's volume), and every occurrence of the experiment's
  `suggestion_trial_dir` setting in the command, args and env (the path itself, or a path below
  it) is replaced by `WORKDIR/pbt/<experiment>/<trial>`, where Katib would mount that directory.
* Whatever happens (the DB manager gone, a full disk, a signal the enum does not name), each
  trial's end is reported exactly once, with a message, and its output is read to the end.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .collector import TrialCollector
from .controller import Finished
from .metrics import FILE, NONE
from .spec import ExperimentConfig
from .state import TrialRecord

STOP_GRACE_SECONDS = 5.0
FILE_POLL_SECONDS = 0.1
STDERR_LINES = 5  # the last lines of stderr a failed trial's message shows
READ_SECONDS = 10.0  # after a trial's end, how long its output may still take to read
CHECKPOINTS = "pbt"  # WORKDIR/pbt: the suggestion service's --data-dir


class ProcessExecutor:
    def __init__(self, config: ExperimentConfig, workdir: Path):
        self.config = config
        self.workdir = workdir.resolve()
        self.data_dir = self.workdir / CHECKPOINTS  # the volume of the checkpoint directories
        self.finished: queue.Queue[Finished] = queue.Queue()
        self.processes: dict[str, subprocess.Popen] = {}
        self.stopping: dict[str, str] = {}  # trial -> why it is being stopped: "early" or "killed"
        self.lock = threading.Lock()

    def trial_dir(self, name: str) -> Path:
        return self.workdir / "trials" / name

    def start(self, trial: TrialRecord, collector: TrialCollector) -> None:
        directory = self.trial_dir(trial.name)
        log_path = directory / "output.log"
        argv, env = self.config.command_for(trial.name, trial.assignment)
        metrics_file = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if self.config.collector.kind == FILE:
                source = self.config.collector.path
                metrics_file = directory / Path(source).name
                metrics_file.unlink(missing_ok=True)
                argv, env = _replace(argv, env, lambda text: text.replace(source, str(metrics_file)))
            mount = self.config.suggestion_trial_dir.rstrip("/")
            if mount:  # a path Katib mounts the trial's checkpoint directory at
                checkpoint = str(self.data_dir / self.config.name / trial.name)
                pattern = re.compile(r"(?<![\w./~-])" + re.escape(mount) + r"(?=/|$|[^\w.-])")  # whole path components
                argv, env = _replace(argv, env, lambda text: pattern.sub(lambda _: checkpoint, text))
            if argv and argv[0] in ("python", "python3"):
                argv[0] = sys.executable
            cwd = (self.config.base_dir / (self.config.container.working_dir or ".")).resolve()
            log = open(log_path, "w")
        except OSError as error:
            self.finished.put(Finished(trial.name, exit_code=None, error=True, message=f"cannot prepare the trial: {error}"))
            return
        try:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except OSError as error:
            log.close()
            message = f"cannot start {argv[0] if argv else 'the command'}: {error}"
            self.finished.put(Finished(trial.name, exit_code=None, error=True, message=message + self._not_local(argv, cwd)))
            return
        with self.lock:
            self.processes[trial.name] = process
        watch = _Watch(self, trial.name, process, log, log_path, collector, metrics_file, argv, cwd)
        threading.Thread(target=watch.run, name=f"trial-{trial.name}", daemon=True).start()

    def _not_local(self, argv: list[str], cwd: Path) -> str:
        """A hint when the command names a program or file that does not exist on this machine."""
        missing = [part for part in argv if part.startswith("/") and not Path(part).exists()]
        if argv and not argv[0].startswith("/") and shutil.which(argv[0]) is None and not (cwd / argv[0]).exists():
            missing.insert(0, argv[0])
        if not missing:
            return ""
        image = f" (the image {self.config.container.image} is not used)" if self.config.container.image else ""
        return (
            f"; {missing[0]} does not exist here: katib-local runs the container's command on this machine{image}, "
            "so point command and args at local files"
        )

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

    def kill_all(self) -> None:
        """SIGKILL to the process group of every trial still running: the last resort at exit."""
        with self.lock:
            processes = list(self.processes.values())
        for process in processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)


class _Watch:
    """Reads one trial's output to the end, feeds its collector, and reports its end once."""

    def __init__(self, executor, name, process, log, log_path, collector, metrics_file, argv, cwd):
        self.executor = executor
        self.name = name
        self.process = process
        self.log = log
        self.log_path = log_path
        self.collector = collector
        self.metrics_file = metrics_file
        self.argv = argv
        self.cwd = cwd
        self.stderr = collections.deque(maxlen=STDERR_LINES)
        self.write_lock = threading.Lock()
        self.problem = ""  # why metrics could not be collected, if they could not

    def run(self) -> None:
        code = None
        try:
            readers = [
                threading.Thread(target=self._read, args=(self.process.stdout, False), daemon=True),
                threading.Thread(target=self._read, args=(self.process.stderr, True), daemon=True),
            ]
            if self.metrics_file is not None:
                readers.append(threading.Thread(target=self._follow, daemon=True))
            for reader in readers:
                reader.start()
            code = self.process.wait()
            # The trial ends with its main process, as a Job's container does: what it left running
            # in its process group is killed, which also closes the pipes those processes hold.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            for reader in readers:
                reader.join(READ_SECONDS)
        except BaseException as error:  # noqa: BLE001 - the trial's end must be reported whatever happened
            self.problem = self.problem or f"the trial's output could not be read: {type(error).__name__}: {error}"
            _terminate(self.process)
            code = self.process.poll()
        finally:
            with self.write_lock:
                self.log.close()
            self._report(code)

    def _read(self, stream, is_stderr: bool) -> None:
        """Copies a stream to the log and the collector; keeps reading after any failure."""
        for line in stream:
            try:
                with self.write_lock:
                    if self.log.closed:
                        return
                    self.log.write(line)
                    self.log.flush()
                if is_stderr:
                    self.stderr.append(line.rstrip("\n"))
                if self.metrics_file is None and self.executor.config.collector.kind != NONE:
                    self._feed(line)
            except Exception as error:  # noqa: BLE001 - keep draining the pipe so the trial never blocks
                self._fail(f"{type(error).__name__}: {error}")

    def _follow(self) -> None:
        """Tails the File collector's file until the process has ended and the file is read."""
        offset, pending = 0, ""
        path = self.metrics_file
        while True:
            running = self.process.poll() is None
            try:
                if path.exists():
                    with open(path, errors="replace") as f:
                        f.seek(offset)
                        chunk = f.read()
                        offset = f.tell()
                    pending += chunk
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        self._feed(line)
                if not running:
                    if pending:
                        self._feed(pending)
                    return
            except Exception as error:  # noqa: BLE001
                self._fail(f"{type(error).__name__}: {error}")
                return
            time.sleep(FILE_POLL_SECONDS)

    def _feed(self, line: str) -> None:
        if self.problem:
            return  # collection already failed: the output is still read to the end
        try:
            stop = self.collector.feed_text(line)
        except Exception as error:  # noqa: BLE001 - a gRPC error reporting the metrics, most often
            self._fail(f"reporting metrics failed: {_error_text(error)}")
            return
        if stop:  # _stop does nothing for a trial already being stopped
            self.executor._stop(self.name, "early")

    def _fail(self, problem: str) -> None:
        """Metrics can no longer be collected: the trial is stopped and will be Failed with `problem`."""
        if not self.problem:
            self.problem = problem
            self.executor._stop(self.name, "failed")

    def _report(self, code: int | None) -> None:
        executor = self.executor
        with executor.lock:
            executor.processes.pop(self.name, None)
            why = executor.stopping.pop(self.name, "")
        message = self.problem or _exit_text(code)
        failed = bool(self.problem) or (code not in (0, None) and why not in ("early", "killed"))
        if failed:
            message = f"{message}; log {self.log_path}"
            if self.stderr:
                message += "; last lines of stderr:\n    " + "\n    ".join(self.stderr)
            message += executor._not_local(self.argv, self.cwd)
        executor.finished.put(
            Finished(
                self.name,
                exit_code=code,
                early_stopped=why == "early" and not self.problem,
                killed=why == "killed",
                error=bool(self.problem),
                message=message,
            )
        )


def _replace(argv: list[str], env: dict[str, str], change) -> tuple[list[str], dict[str, str]]:
    """The command and environment with `change` applied to every argument and value."""
    return [change(part) for part in argv], {k: change(v) for k, v in env.items()}


def _error_text(error: Exception) -> str:
    code, details = getattr(error, "code", None), getattr(error, "details", None)
    if callable(code) and callable(details):
        return f"{code().name}: {details()}"
    return f"{type(error).__name__}: {error}"


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


def _exit_text(code: int | None) -> str:
    if code is None or code == 0:
        return ""
    if code < 0:
        try:
            return f"terminated by {signal.Signals(-code).name}"
        except ValueError:
            return f"terminated by signal {-code}"
    return f"exit code {code}"
