"""Extract Katib's own v1beta1 API descriptor from its published SDK wheel.

    python proto/katib_descriptor.py [OUTPUT]     (default proto/katib-v1beta1.desc)

Katib's Python SDK `kubeflow-katib==0.19.0` ships the generated `kubeflow/katib/katib_api_pb2.py`,
whose `AddSerializedFile(b"...")` literal is the serialized FileDescriptorProto of Katib's
api.proto. The SDK cannot be installed beside this project (it requires protobuf < 5), so this
script downloads the wheel with `pip download --no-deps`, checks its SHA-256, and writes the
descriptor bytes without importing anything from the SDK. The output is committed;
tests/test_proto.py compares proto/api.proto with it.
"""

from __future__ import annotations

import ast
import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "kubeflow_katib-0.19.0-py3-none-any.whl"
WHEEL_SHA256 = "6c95ff208a10238061c9b4bb0b0754bf901d0e66532cf58abc9eb5f5dd946a8f"
MEMBER = "kubeflow/katib/katib_api_pb2.py"
DEFAULT_OUT = Path(__file__).resolve().parent / "katib-v1beta1.desc"


def descriptor_from_wheel(wheel: Path) -> bytes:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel.name}: SHA-256 {digest}, expected {WHEEL_SHA256}")
    source = zipfile.ZipFile(wheel).read(MEMBER).decode()
    match = re.search(r"AddSerializedFile\((b'.*?')\)\n", source, re.S)
    if not match:
        raise SystemExit(f"{MEMBER}: no AddSerializedFile literal")
    return ast.literal_eval(match.group(1))


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, "kubeflow-katib==0.19.0"],
            check=True,
        )
        data = descriptor_from_wheel(Path(tmp) / WHEEL)
    out.write_bytes(data)
    print(f"{out}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
