"""Runs a module as __main__ and reports, one line each in REPORT, every file it opens for
writing, creates, renames or removes outside the ALLOWED directories (Python's audit hooks):

    python -m tests.audit_writes REPORT ALLOWED[:ALLOWED...] MODULE ARGS...

What a read-only root filesystem would refuse, as far as Python code and the modules it opens
files with can tell (tests/test_readonly.py)."""

import os
import runpy
import sys

report_path, allowed, module, *args = sys.argv[1:]
report = open(report_path, "a", buffering=1)  # opened before the hook: its writes are not reported
roots = tuple(os.path.realpath(a) for a in allowed.split(os.pathsep))
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
CHANGES = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.symlink", "os.link", "os.truncate", "os.chmod", "shutil.rmtree"}


def outside(path) -> bool:
    if isinstance(path, int):  # a file descriptor already open
        return False
    real = os.path.realpath(os.fsdecode(path))
    return not any(real == root or real.startswith(root + os.sep) for root in roots)


def hook(event: str, arguments: tuple) -> None:
    if event == "open":
        path, mode, flags = arguments
        writing = bool(mode and any(c in mode for c in "wax+")) or bool((flags or 0) & WRITING)
    elif event in CHANGES:
        path, writing = arguments[0], True
    elif event == "sqlite3.connect":  # SQLite opens (and creates) its database and journal files in C
        path = arguments[0]
        writing = os.fsdecode(path) not in ("", ":memory:") if not isinstance(path, int) else False
    else:
        return
    if writing and path is not None and outside(path):
        report.write(f"{event} {path!r}\n")


sys.addaudithook(hook)
sys.argv = [module, *args]
runpy.run_module(module, run_name="__main__", alter_sys=True)
