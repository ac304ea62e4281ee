"""Checkpoint directories on the data volume (`--data-dir`), prepared before a reply is sent.

Katib mounts a shared volume at /opt/katib/data in the suggestion pod, and in each trial pod the
sub-path `<experiment name>/<trial name>` at the experiment's `suggestion_trial_dir`. An algorithm
only decides what each new trial starts from (`Proposal.checkpoint`); this module carries it out:
`<data dir>/<experiment>/<trial>/` is created empty, or as a copy of the directory of the trial the
checkpoint names (its parent), before the reply that names the trial leaves the service.

* Idempotent: a trial directory that exists is never touched, so a retried request, a restarted
  pod or a second replica makes each directory at most once and never clobbers one a running trial
  writes. Trial names are new for every request (algorithms/pbt.py), so an existing directory is
  always this trial's own.
* Atomic: a copy is made in a hidden temporary directory next to its target (`.<trial>.*`, on the
  same file system) and renamed into place, so no trial ever sees half a copy; an empty directory
  is made by mkdir, which never replaces anything. Symbolic links are copied as links (never
  followed), and special files (pipes, sockets, devices) are left out. A copy is not abandoned when
  the caller's deadline passes, so the retried request finds it done.
* Confined: the experiment name and every trial name must be single path components (not `.` or
  `..`, without `/` or NUL), and every path is resolved and must stay inside the data directory;
  otherwise the request gets INVALID_ARGUMENT naming the field.
* Writable by the trials: trial containers may run as another user than the service (uid 65532 in
  the image), so the directories it makes are mode 0777 and copied files gain read and write for
  everyone (the volume belongs to one experiment).

A file-system error (volume missing, full or read-only) gives UNAVAILABLE naming `--data-dir`.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

import grpc

from katib_services.algorithms.base import Proposal, check_path_component
from katib_services.algorithms.errors import InvalidSpec
from katib_services.numbers import quote

from .server import RpcFailure

log = logging.getLogger("katib.checkpoints")

DEFAULT_DATA_DIR = "/opt/katib/data"  # where Katib mounts the volume in the suggestion pod


class CheckpointDirectories:
    def __init__(self, root: str | os.PathLike = DEFAULT_DATA_DIR):
        self.root = Path(root)

    def prepare(self, experiment: str, proposals: Sequence[Proposal]) -> None:
        """Creates the directory of every proposal that carries a checkpoint."""
        planned = [p for p in proposals if p.checkpoint is not None]
        if not planned:
            return
        # Defence in depth: pbt refuses such names already; whatever an algorithm proposes is checked before it is a path.
        check_path_component(experiment, "metadata.name")
        for i, proposal in enumerate(proposals):
            if proposal.checkpoint is not None:
                check_path_component(proposal.trial_name, f"parameter_assignments[{i}].trial_name")
                if proposal.checkpoint.source:
                    check_path_component(proposal.checkpoint.source, f"the parent of trial {quote(proposal.trial_name)}")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            root = self.root.resolve(strict=True)
            (root / experiment).mkdir(exist_ok=True)
            directory = _inside(root, root / experiment, "metadata.name")
            for proposal in planned:
                source = proposal.checkpoint.source
                _create(directory / proposal.trial_name, _inside(root, directory / source, "parent") if source else None)
        except OSError as error:
            raise RpcFailure(
                grpc.StatusCode.UNAVAILABLE,
                f"cannot prepare the checkpoint directories of experiment {quote(experiment)} in the data directory "
                f"{quote(str(self.root), 200)} (--data-dir): {error}",
            ) from None


def _inside(root: Path, path: Path, field: str) -> Path:
    """The real path of `path`, which must lie inside `root` (a symbolic link may not lead out)."""
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(root) or real == root:
        raise InvalidSpec(f"{field}: {quote(path.name)} leads outside the data directory (--data-dir) to {quote(str(real), 200)}")
    return real


def _create(target: Path, source: Path | None) -> None:
    """`target` as an empty directory or a copy of `source`, unless it exists."""
    if os.path.lexists(target):
        return  # made by an earlier call, another replica, or the running trial: never touched
    if source is not None and not source.is_dir():
        log.warning("the checkpoint directory %s of the parent is missing: %s starts empty", source, target.name)
        source = None
    if source is not None:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            copy = staging / "copy"
            shutil.copytree(source, copy, symlinks=True, ignore=_special_files)
            _open_to_all(copy)
            if any(copy.iterdir()):  # (an empty copy is made by mkdir below: rename could replace an empty target)
                try:
                    os.rename(copy, target)  # fails when a non-empty target appeared meanwhile
                except OSError:
                    if not os.path.lexists(target):
                        raise
                return
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    try:
        os.mkdir(target)  # an empty directory: mkdir never replaces an existing one
    except FileExistsError:
        return
    os.chmod(target, 0o777)


def _special_files(directory: str, names: list[str]) -> list[str]:
    """Entries copytree must skip: anything but directories, regular files and symbolic links."""
    skipped = []
    for name in names:
        mode = os.lstat(os.path.join(directory, name)).st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            skipped.append(name)
    return skipped


def _open_to_all(top: Path) -> None:
    """Directories 0777, files readable and writable by everyone; links untouched."""
    os.chmod(top, 0o777)
    for folder, directories, files in os.walk(top):  # never descends into links
        for name in directories + files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                os.chmod(path, 0o777)
            elif stat.S_ISREG(mode):
                os.chmod(path, stat.S_IMODE(mode) | 0o666)
