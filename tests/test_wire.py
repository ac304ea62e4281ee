"""services/wire.py slices trials out of a request exactly as protobuf would read them."""

import pytest

from katib_services.services import wire
from katib_services.services.client import trial_pb
from katib_services.services.pb import api_pb2

from .conftest import double, experiment


@pytest.mark.parametrize("pad", [0, 100, 200, 20_000, 3_000_000])  # one-, two- and three-byte lengths
def test_split_field_gives_each_trial_and_the_rest(pad):
    trials = [trial_pb(f"t{i}", {"x": str(i / 10), "pad": "p" * (pad + i)}, "Succeeded", {"accuracy": i}) for i in range(3)]
    request = api_pb2.GetSuggestionsRequest(experiment=experiment([double("x", 0, 1)]), trials=trials, current_request_number=2)
    rest, blobs = wire.split_field(request.SerializeToString(), 2)
    assert [api_pb2.Trial.FromString(b) for b in blobs] == trials
    without = api_pb2.GetSuggestionsRequest.FromString(rest)
    assert without.experiment == request.experiment and not without.trials and without.current_request_number == 2


@pytest.mark.parametrize("data", [b"\x12", b"\x12\x05ab", b"\x12\xff", b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x0f"])
def test_malformed_bytes_raise_wire_error(data):
    with pytest.raises(wire.WireError):
        wire.split_field(data, 2)
