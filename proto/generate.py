"""Generate the Python stubs for proto/api.proto into services/pb/.

    python proto/generate.py [OUTPUT_DIR]

The stubs are committed; tests/test_proto.py regenerates them into a temporary directory and fails
when the committed copy is stale. protoc writes `import api_pb2` into the gRPC stub, which would
need a generic top-level module name, so that import is rewritten to a package-relative one.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = PROTO_DIR.parent / "services" / "pb"
GENERATED = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_DIR / "api.proto"),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on proto/api.proto")
    grpc_stub = out_dir / "api_pb2_grpc.py"
    text = grpc_stub.read_text()
    grpc_stub.write_text(text.replace("import api_pb2 as api__pb2", "from . import api_pb2 as api__pb2"))
    return [out_dir / name for name in GENERATED]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for path in generate(target):
        print(path)
