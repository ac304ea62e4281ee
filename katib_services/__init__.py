"""katib-services: drop-in Kubeflow Katib v1beta1 suggestion and early-stopping services.

The installed distribution has this one import package, so generic names never collide with a
user's own packages:

    katib_services.algorithms     the search algorithms (pure Python, no gRPC)
    katib_services.earlystopping  the early-stopping rules and their DB-manager reader (no gRPC)
    katib_services.services       the gRPC side: servers, conversion, CLIs
    katib_services.runner         katib-local, the local controller

Modules directly in this package (`numbers`, `obslog`, `statestore`) are shared by every layer.
In the repository the four subpackages keep the design card's top-level layout (`algorithms/`,
`services/`, ...); the wheel maps them under this package (pyproject.toml). In a source checkout
the repository root is added to this package's search path, so that `katib_services.algorithms`
is the `algorithms/` directory there and tests run against the source.
"""

from pathlib import Path as _Path

_ROOT = _Path(__file__).resolve().parent.parent
if (_ROOT / "pyproject.toml").is_file() and (_ROOT / "algorithms" / "__init__.py").is_file():
    __path__.append(str(_ROOT))  # noqa: F821 (the package's own __path__)
