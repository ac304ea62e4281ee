"""The layering the design asks for, and the one import package the wheel installs.

Layers point down only: runner -> services -> cores (algorithms, earlystopping) -> the shared
modules at the root of katib_services. The cores know nothing of gRPC or the wire messages.
"""

import ast
import importlib.metadata
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "katib_services"
# What each layer must not import (besides itself and the layers below it).
FORBIDDEN = {
    "algorithms": ("grpc", "grpc_health", "grpc_reflection", f"{PACKAGE}.services", f"{PACKAGE}.runner", f"{PACKAGE}.earlystopping"),
    "earlystopping": ("grpc", "grpc_health", "grpc_reflection", f"{PACKAGE}.services", f"{PACKAGE}.runner"),
    "services": (f"{PACKAGE}.runner",),
    "katib_services": (f"{PACKAGE}.services", f"{PACKAGE}.runner", f"{PACKAGE}.algorithms", f"{PACKAGE}.earlystopping", "grpc"),
}
TOP_LEVEL = ("algorithms", "services", "runner", "earlystopping")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_point_down(layer):
    paths = sorted((ROOT / layer).glob("*.py"))
    assert paths
    for path in paths:
        bad = {m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN[layer])}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("directory", ["algorithms", "services", "runner", "earlystopping", "katib_services", "tests", "bench"])
def test_no_generic_top_level_imports(directory):
    """Code imports the project as katib_services.*, never as a generic top-level name."""
    for path in sorted((ROOT / directory).rglob("*.py")):
        bad = {m for m in imported_modules(path) if m.split(".")[0] in TOP_LEVEL}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_installed_distribution_has_one_import_package():
    """pip install puts katib_services (and the console scripts) into site-packages, nothing else."""
    # The installed distribution, not the katib_services.egg-info an in-tree build leaves here.
    installed_dirs = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    found = list(importlib.metadata.distributions(name="katib-services", path=installed_dirs))
    files = found[0].files if found else None
    if files is None or not any(str(f).startswith(f"{PACKAGE}/") for f in files):
        pytest.skip("katib-services is not installed from a wheel here (an editable or no install)")
    tops = {str(f).split("/")[0] for f in files if not str(f).startswith("..")}
    tops = {t for t in tops if not t.endswith(".dist-info")}
    assert tops == {PACKAGE}
    installed = {str(f) for f in files}
    for sub in TOP_LEVEL:
        assert f"{PACKAGE}/{sub}/__init__.py" in installed
    assert f"{PACKAGE}/services/pb/api_pb2.py" in installed
