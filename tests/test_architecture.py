"""The layering the design asks for: the cores know nothing of gRPC or the wire messages."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["algorithms", "earlystopping"])
def test_core_packages_do_not_import_grpc(package):
    for path in sorted((ROOT / package).glob("*.py")):
        wire = {m for m in imported_modules(path) if m.split(".")[0] in ("grpc", "grpc_health", "grpc_reflection") or m.startswith("services")}
        assert not wire, f"{path.relative_to(ROOT)} imports {sorted(wire)}"
