"""The search-space core on its own: string forms, parsing, the unit-cube encoding, trial parsing."""

import pytest

from katib_services.algorithms.errors import InvalidSpec
from katib_services.algorithms.experiment import Experiment
from katib_services.algorithms.history import Condition, parse_trial
from katib_services.algorithms.space import Distribution, ParamType, RawParameter


def make(*parameters, metric="accuracy", goal=2):
    return Experiment.parse(name="e", parameters=list(parameters), objective_type=goal, objective_metric=metric)


def test_string_forms():
    space = make(
        RawParameter("i", ParamType.INT, "-5", "5"),
        RawParameter("d", ParamType.DOUBLE, "0.1", "1.0", step="0.1"),
        RawParameter("big", ParamType.DOUBLE, "0", "1000", step="250"),
        RawParameter("c", ParamType.DOUBLE, "0", "1"),
        RawParameter("k", ParamType.DISCRETE, list=["2.50", "1e1"]),
    ).space
    i, d, big, c, k = space.parameters
    assert [i.format(n) for n in (0, 8, 10)] == ["-5", "3", "5"]
    assert [d.format(n) for n in range(d.size)] == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0"]
    assert [big.format(n) for n in range(big.size)] == ["0.0", "250.0", "500.0", "750.0", "1000.0"]
    assert c.format(0.1 + 0.2) == "0.30000000000000004"  # continuous: shortest round trip of the float drawn
    assert float(c.format(1 / 3)) == 1 / 3
    assert [k.format(n) for n in range(2)] == ["2.50", "1e1"]  # as listed, ordered by value


def test_parse_recognises_points_and_rejects_foreign_values():
    i, d = make(RawParameter("i", ParamType.INT, "1", "9", step="2"), RawParameter("d", ParamType.DOUBLE, "0", "1", step="0.25")).space.parameters
    assert [i.parse(v) for v in ("1", "3", "3.0", "9", "2", "11", "x")] == [0, 1, 1, 4, None, None, None]
    assert [d.parse(v) for v in ("0", "0.25", "0.250", "1", "0.3", "-0.25")] == [0, 1, 1, 4, None, None]


@pytest.mark.parametrize("distribution", list(Distribution)[1:])
@pytest.mark.parametrize("kind,step", [(ParamType.DOUBLE, ""), (ParamType.DOUBLE, "0.5"), (ParamType.INT, "")])
def test_unit_encoding_stays_in_bounds_and_inverts(distribution, kind, step):
    (p,) = make(RawParameter("x", kind, "1", "50", step=step, distribution=distribution)).space.parameters
    keys = [p.from_unit(u / 100) for u in range(101)]
    values = [p.value(k) for k in keys]
    assert min(values) >= 1 and max(values) <= 50
    assert values == sorted(values), "the encoding is monotone"
    for key in keys:
        assert p.from_unit(p.to_unit(key)) == (key if p.finite else pytest.approx(key))


def test_truncated_normal_centre_and_bounds():
    (p,) = make(RawParameter("x", ParamType.DOUBLE, "-3", "9", distribution=Distribution.NORMAL)).space.parameters
    assert p.from_unit(0.5) == pytest.approx(3.0)
    assert p.from_unit(0.0) == pytest.approx(-3.0, abs=1e-6) and p.from_unit(1.0) == pytest.approx(9.0, abs=1e-6)
    # sigma = (max - min) / 6 = 2: mass within one sigma of the centre is about 68.3% of the truncated mass
    assert p.to_unit(5.0) - p.to_unit(1.0) == pytest.approx(0.6827 / 0.9973, abs=1e-3)


def test_trial_parsing_never_rejects():
    exp = make(RawParameter("x", ParamType.INT, "1", "3"))
    good = parse_trial(exp, "t", 2, {"x": "2"}, {}, {"accuracy": "0.75"})
    assert (good.condition, good.point, good.value) == (Condition.SUCCEEDED, (1,), -0.75)  # maximize -> negated
    for metrics in ({}, {"accuracy": "unavailable"}, {"accuracy": "nan"}, {"accuracy": "inf"}, {"loss": "1"}):
        assert parse_trial(exp, "t", 2, {"x": "2"}, {}, metrics).value is None
    odd = parse_trial(exp, "t", 42, {"y": "2"}, {}, {})
    assert odd.condition is Condition.UNKNOWN and odd.point is None
    minimized = make(RawParameter("x", ParamType.INT, "1", "3"), goal=1)
    assert parse_trial(minimized, "t", 2, {"x": "1"}, {}, {"accuracy": "0.5"}).value == 0.5


def test_invalid_spec_lists_problems():
    with pytest.raises(InvalidSpec) as caught:
        make(RawParameter("x", ParamType.DOUBLE, "1", "0"), metric="")
    assert "feasibleSpace.min" in str(caught.value) and "objectiveMetricName" in str(caught.value)
