"""The wire contract: our api.proto is Katib's, and the committed stubs are current.

Katib's descriptor is proto/katib-v1beta1.desc, extracted from Katib's published SDK wheel
(kubeflow-katib 0.19.0, checked by SHA-256) by proto/katib_descriptor.py.
"""

import hashlib
from pathlib import Path

from google.protobuf import descriptor_pb2

from katib_services.services.pb import api_pb2

ROOT = Path(__file__).resolve().parent.parent
KATIB_DESCRIPTOR = ROOT / "proto" / "katib-v1beta1.desc"
KATIB_DESCRIPTOR_SHA256 = "e97c661194fd9993442f33ca0b3b914db2f4fb289a0ea4b08f0ea1b118d380a5"


def normalized(descriptor: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """Clears what does not travel on the wire: json names, source info and file options."""
    descriptor.ClearField("source_code_info")
    descriptor.ClearField("options")

    def clear_messages(messages):
        for message in messages:
            for field in message.field:
                field.ClearField("json_name")
            clear_messages(message.nested_type)

    clear_messages(descriptor.message_type)
    return descriptor


def test_descriptor_equals_katib():
    data = KATIB_DESCRIPTOR.read_bytes()
    assert hashlib.sha256(data).hexdigest() == KATIB_DESCRIPTOR_SHA256, "proto/katib-v1beta1.desc was changed"
    katib = normalized(descriptor_pb2.FileDescriptorProto.FromString(data))
    ours = descriptor_pb2.FileDescriptorProto()
    api_pb2.DESCRIPTOR.CopyToProto(ours)
    ours = normalized(ours)
    assert ours.package == "api.v1.beta1"
    assert [s.name for s in ours.service] == ["DBManager", "Suggestion", "EarlyStopping"]
    assert ours == katib, "proto/api.proto differs from Katib's v1beta1 descriptor"


def test_committed_stubs_are_current(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for fresh in generate.generate(tmp_path):
        committed = ROOT / "services" / "pb" / fresh.name
        assert committed.read_text() == fresh.read_text(), f"{committed} is stale: run python proto/generate.py"


def test_stubs_live_in_a_package():
    from katib_services.services.pb import api_pb2_grpc

    assert api_pb2.__name__ == "katib_services.services.pb.api_pb2"
    assert api_pb2_grpc.api__pb2 is api_pb2
    source = (ROOT / "services" / "pb" / "api_pb2_grpc.py").read_text()
    assert "\nimport api_pb2" not in source
