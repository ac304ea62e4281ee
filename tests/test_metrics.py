"""Metric-line parsing as Katib's StdOut/File collectors do it (runner/metrics.py)."""

import time
from datetime import datetime, timedelta, timezone

import pytest

from katib_services.runner.metrics import (
    DEFAULT_FILTER,
    CollectorConfig,
    MetricLog,
    MetricParser,
    collector_config,
)

NOW = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
NOW_STAMP = "2030-01-02T03:04:05.678Z"
# Katib's published custom filter (examples/v1beta1/metrics-collector/file-metrics-collector.yaml).
KATIB_CUSTOM_FILTER = r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}"


def parser(names=("accuracy", "loss"), filters=None, format="TEXT"):
    return MetricParser(list(names), filters, format, now=lambda: NOW)


def pairs(logs):
    return [(log.name, log.value) for log in logs]


# -- TEXT, default filter ---------------------------------------------------------------------------


def test_default_name_value_line_without_timestamp_uses_now():
    assert parser().parse_line("accuracy=0.91") == [MetricLog(NOW_STAMP, "accuracy", "0.91")]


def test_leading_rfc3339_timestamp_is_the_metric_time():
    logs = parser().parse_line("2026-11-28T08:00:00Z accuracy=0.91")
    assert logs == [MetricLog("2026-11-28T08:00:00Z", "accuracy", "0.91")]


@pytest.mark.parametrize(
    "stamp, expected",
    [
        ("2026-11-28T08:00:00.123456789+02:00", "2026-11-28T06:00:00.123456789Z"),
        ("2026-11-28T01:30:00-05:30", "2026-11-28T07:00:00Z"),
        ("2026-11-28T01:00:00+02:00", "2026-11-27T23:00:00Z"),
        ("2026-11-28T08:00:00.500Z", "2026-11-28T08:00:00.5Z"),
        ("2026-11-28T08:00:00.000Z", "2026-11-28T08:00:00Z"),
    ],
)
def test_timestamps_are_normalized_to_utc(stamp, expected):
    assert parser().parse_line(f"{stamp} accuracy=0.91") == [MetricLog(expected, "accuracy", "0.91")]


@pytest.mark.parametrize(
    "line",
    [
        "2026-11-28T08:00:00 accuracy=0.91",  # no offset: not RFC 3339
        "2026-13-01T00:00:00Z accuracy=0.91",  # no such month
        "2026-11-28T08:00:00Z\taccuracy=0.91",  # Katib splits at a space only
        "INFO 2026-11-28T08:00:00Z accuracy=0.91",  # not the first token
        " 2026-11-28T08:00:00Z accuracy=0.91",
        "2026-11-28 08:00:00Z accuracy=0.91",
    ],
)
def test_lines_without_a_leading_rfc3339_timestamp_use_now(line):
    assert parser().parse_line(line) == [MetricLog(NOW_STAMP, "accuracy", "0.91")]


def test_several_metrics_on_one_line_share_its_timestamp():
    logs = parser().parse_line("2026-11-28T08:00:00Z epoch 3: loss=0.2, accuracy=0.9")
    assert logs == [
        MetricLog("2026-11-28T08:00:00Z", "loss", "0.2"),
        MetricLog("2026-11-28T08:00:00Z", "accuracy", "0.9"),
    ]


@pytest.mark.parametrize(
    "line, value",
    [
        ("loss=-1.5e-3", "-1.5e-3"),
        ("loss=3.0e-02", "3.0e-02"),
        ("loss=.4", ".4"),
        ("loss=1E0", "1E0"),
        ("loss=1.23E10", "1.23E10"),
        ("loss = +2", "+2"),
        ("loss=-7.53e+05;", "-7.53e+05"),
        ("Epoch[5] loss=0.5 s", "0.5"),
    ],
)
def test_signed_and_exponent_values_are_kept_as_written(line, value):
    assert pairs(parser().parse_line(line)) == [("loss", value)]


def test_names_with_dashes_and_katib_stdout_example():
    p = parser(["Validation-accuracy", "Train-accuracy"])
    text = (
        "2022-01-23T05:19:53Z INFO Epoch[5] Train-accuracy=0.932769\n"
        "2022-01-23T05:19:54Z INFO Epoch[5] Validation-accuracy=0.924463\n"
    )
    assert p.parse_text(text) == [
        MetricLog("2022-01-23T05:19:53Z", "Train-accuracy", "0.932769"),
        MetricLog("2022-01-23T05:19:54Z", "Validation-accuracy", "0.924463"),
    ]


def test_unwanted_metric_names_are_ignored():
    logs = parser(["accuracy"]).parse_line("recall=0.5 val_accuracy=0.3 accuracy-top5=0.99 accuracy=0.9")
    assert pairs(logs) == [("accuracy", "0.9")]


def test_katib_doc_example_file():
    text = "epoch 1:\nloss=3.0e-02\nrecall=0.5\nprecision=.4\n\nepoch 2:\nloss=1.3e-02\nrecall=0.55\nprecision=.5\n"
    logs = parser(["loss", "recall", "precision"]).parse_text(text)
    assert pairs(logs) == [
        ("loss", "3.0e-02"), ("recall", "0.5"), ("precision", ".4"),
        ("loss", "1.3e-02"), ("recall", "0.55"), ("precision", ".5"),
    ]  # fmt: skip


# -- garbage never raises -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "accuracy=",
        "accuracy=abc",
        "accuracy=-",
        "accuracy=.",
        "accuracy=e5",
        "accuracy",
        "=0.9",
        "",
        "\x00\x01\xff\ufffd accuracy\x00=\x00",
        b"\xff\xfe\x00accuracy=\x80\x81",
        "accuracy=" + "\x1b[31m",
        None,
        12345,
    ],
)
def test_garbage_lines_give_nothing(line):
    assert parser().parse_line(line) == []


def test_binary_junk_around_a_metric_still_finds_it():
    assert pairs(parser().parse_line(b"\xff\xfe\x00 accuracy=0.5 \x80")) == [("accuracy", "0.5")]


@pytest.mark.parametrize(
    "line",
    ["accuracy: nan", "accuracy: inf", "accuracy: -Infinity", "accuracy: 1e999", "accuracy: 1_000",
     "accuracy: \u0663", "accuracy: 0x1p-2", "accuracy: 1,5", "accuracy: 1e0000001", "accuracy: " + "1" * 120],
)  # fmt: skip
def test_non_numeric_values_from_custom_filters_are_dropped(line):
    p = parser(filters=[r"(\w+):\s*(\S+)"])
    assert p.parse_line(line) == []
    assert pairs(p.parse_line("accuracy: 0.5")) == [("accuracy", "0.5")]  # the filter itself works


def test_very_long_lines_are_parsed_in_linear_time():
    p = parser()
    junk = "accuracy " + "a" * 1_000_000 + " " + "x|-_" * 250_000
    started = time.perf_counter()
    assert p.parse_line(junk) == []
    assert pairs(p.parse_line(junk + " accuracy=0.7")) == [("accuracy", "0.7")]
    assert time.perf_counter() - started < 60  # tells linear (well under a second) from quadratic backtracking (hours)


def test_default_filter_given_explicitly_finds_the_same_matches_as_re():
    import re

    line = "a=1b=2 loss=-c=3 x|y-z = 4e5 loss=0.1,loss==2 -loss=5 loss=1.5e loss=.e3"
    expected = [(m.group(1), m.group(2)) for m in re.finditer(DEFAULT_FILTER, line, re.ASCII)]
    names = sorted({name for name, _ in expected})
    got = pairs(MetricParser(names, [DEFAULT_FILTER], now=lambda: NOW).parse_line(line))
    numeric = [(n, v) for n, v in expected if v and v not in ("+", "-") and v[-1].isdigit()]
    assert got == numeric
    assert ("b", "2") in got and ("x|y-z", "4e5") in got


def test_parse_text_splits_on_newline_only_and_ignores_a_trailing_newline():
    p = parser(["loss"], filters=[r"(\w+)=([0-9.]+)\Z"])  # \Z: the end of the line, as Go's \z
    assert pairs(p.parse_line("loss=0.5\n")) == [("loss", "0.5")]
    text = "\rEpoch 1 loss=0.9\rEpoch 2 loss=0.4\nloss=0.3"  # tqdm-style "\r" stays inside a line
    assert pairs(p.parse_text(text)) == [("loss", "0.4"), ("loss", "0.3")]


def test_now_is_read_once_per_line_and_only_when_needed():
    calls = []

    def now():
        calls.append(1)
        return datetime(2030, 1, 1, 0, 0, 0)  # naive: taken as UTC

    p = MetricParser(["accuracy", "loss"], now=now)
    assert p.parse_line("nothing here") == []
    assert p.parse_line("2026-11-28T08:00:00Z loss=1") != []
    assert calls == []
    logs = p.parse_line("loss=1 accuracy=2")
    assert calls == [1] and {log.time_stamp for log in logs} == {"2030-01-01T00:00:00Z"}


def test_default_now_is_current_utc_time():
    (log,) = MetricParser(["loss"]).parse_line("loss=1")
    stamp = datetime.fromisoformat(log.time_stamp.replace("Z", "+00:00"))
    assert log.time_stamp.endswith("Z")
    assert abs(datetime.now(timezone.utc) - stamp) < timedelta(minutes=1)


# -- TEXT, custom filters -----------------------------------------------------------------------------


def test_katib_published_custom_filter():
    p = parser(filters=[KATIB_CUSTOM_FILTER])
    text = (
        "2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: 0.8078};{metricName: loss, metricValue: 0.5183}\n"
        "2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: -0.4759}\n"
        "{metricName: loss, metricValue: 100}\n"
        "accuracy=0.99\n"  # the default filter is not used when filters are given
        "{metricName: accuracy, metricValue: .333}\n"  # these three do not match Katib's regex
        "{metricName: accuracy, metricValue: 888.}\n"
        "{metricName: accuracy, metricValue: - 345.333}\n"
    )
    assert p.parse_text(text) == [
        MetricLog("2024-03-04T17:55:08Z", "accuracy", "0.8078"),  # group 2 is the whole value
        MetricLog("2024-03-04T17:55:08Z", "loss", "0.5183"),
        MetricLog("2024-03-04T17:55:08Z", "accuracy", "-0.4759"),
        MetricLog(NOW_STAMP, "loss", "100"),
    ]


def test_several_filters_apply_in_order_and_names_are_trimmed():
    p = parser(filters=[r"acc:\s*(\s\w+\s)\s*\|\s*([0-9.]+)", r"(\w+)=(\S+)"])
    logs = p.parse_line("loss=0.25 acc: accuracy | 0.5")
    assert pairs(logs) == [("accuracy", "0.5"), ("loss", "0.25")]


def test_group_2_is_the_value_even_when_later_groups_match():
    p = parser(filters=[r"(\w+)=([0-9.]+)(\s*%)?"])
    assert pairs(p.parse_line("accuracy=91.5 % loss=0.2")) == [("accuracy", "91.5"), ("loss", "0.2")]


def test_non_capturing_and_optional_groups():
    p = parser(filters=[r"(?:val_)?(\w+)(?: is)? ([0-9.]+)?"])
    assert pairs(p.parse_line("val_accuracy is 0.5, loss 0.2, accuracy")) == [("accuracy", "0.5"), ("loss", "0.2")]


# -- JSON ---------------------------------------------------------------------------------------------


def test_json_lines_with_string_and_epoch_timestamps():
    p = parser(["acc", "loss"], format="JSON")
    text = (
        '{"checkpoint_path": "", "global_step": "0", "loss": "0.22082142531871796", "timestamp": 1638422847.28721}\n'
        '{"acc": "0.9349666833877563", "timestamp": 1638422847}\n'
        '{"loss": "0.1414974331855774", "timestamp": "2021-12-02T14:27:50.000035161Z"}\n'
        '{"loss": "0.1", "acc": "0.9", "timestamp": "2021-12-02T14:27:50.000035161+09:00"}\n'
        '{"loss": "0.10683439671993256"}\n'
    )
    assert p.parse_text(text) == [
        MetricLog("2021-12-02T05:27:27.28721Z", "loss", "0.22082142531871796"),
        MetricLog("2021-12-02T05:27:27Z", "acc", "0.9349666833877563"),
        MetricLog("2021-12-02T14:27:50.000035161Z", "loss", "0.1414974331855774"),
        MetricLog("2021-12-02T05:27:50.000035161Z", "acc", "0.9"),  # metric-name order, not key order
        MetricLog("2021-12-02T05:27:50.000035161Z", "loss", "0.1"),
        MetricLog(NOW_STAMP, "loss", "0.10683439671993256"),
    ]


@pytest.mark.parametrize(
    "stamp",
    ['"invalid"', '""', '"2021-12-02T14:27:51"', "true", "null", "[1]", "{}", "1e400", "-1e300", "1e20"],
)
def test_json_unusable_timestamps_fall_back_to_now(stamp):
    line = f'{{"accuracy": "0.5", "timestamp": {stamp}}}'
    assert parser(format="JSON").parse_line(line) == [MetricLog(NOW_STAMP, "accuracy", "0.5")]


def test_json_negative_and_fractional_epochs():
    p = parser(format="JSON")
    assert p.parse_line('{"loss": "1", "timestamp": -1.5}')[0].time_stamp == "1969-12-31T23:59:58.5Z"
    assert p.parse_line('{"loss": "1", "timestamp": 0.000000001}')[0].time_stamp == "1970-01-01T00:00:00.000000001Z"


def test_json_values_must_be_numeric_strings():
    p = parser(["accuracy", "loss", "f1", "auc", "ok"], format="JSON")
    line = '{"accuracy": 0.9, "loss": " 0.25 ", "f1": "abc", "auc": true, "ok": ["1"], "other": "1"}'
    assert pairs(p.parse_line(line)) == [("loss", "0.25")]


@pytest.mark.parametrize(
    "line",
    [
        '{"accuracy": "0.9"',
        '"accuracy": "0.9"',
        '["accuracy", "0.9"]',
        '"accuracy"',
        "accuracy=0.9",
        "",
        "   ",
        '{"accuracy": "0.9", "timestamp": NaN}',
        '{"accuracy": "0.9", "x": Infinity}',
        "[" * 100_000,
        b'{"accuracy": "\xff0.9"}',
    ],
)
def test_malformed_json_lines_give_nothing(line):
    assert parser(format="JSON").parse_line(line) == []


def test_malformed_json_line_does_not_spoil_the_rest():
    text = '{"accuracy": "0.1"}\n{broken\n{"accuracy": "0.2"}'
    assert pairs(parser(format="JSON").parse_text(text)) == [("accuracy", "0.1"), ("accuracy", "0.2")]


# -- construction errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filters, field, words",
    [
        (["(unclosed"], "metricsFormat[0]", "invalid regular expression"),
        ([KATIB_CUSTOM_FILTER, "([a-z]+=(\\d+)"], "metricsFormat[1]", "invalid regular expression"),
        ([r"(\w+)=\d+"], "metricsFormat[0]", "1 capturing group"),
        ([r"(?:\w+)=(?:\d+)"], "metricsFormat[0]", "0 capturing group"),
        ([r"\(\w+\)=\(\d+\)"], "metricsFormat[0]", "0 capturing group"),
        ([r"(\w+)=(\d+);"], "metricsFormat[0]", "';'"),
        ([3], "metricsFormat[0]", "must be a string"),
        (r"(\w+)=(\d+)", "metricsFormat:", "must be a list"),
    ],
)
def test_invalid_filters_are_rejected_naming_the_field(filters, field, words):
    with pytest.raises(ValueError) as info:
        MetricParser(["accuracy"], filters)
    assert f"spec.metricsCollectorSpec.source.filter.{field}" in str(info.value)
    assert words in str(info.value)


def test_invalid_format_and_json_with_filters_are_rejected():
    with pytest.raises(ValueError, match=r"spec\.metricsCollectorSpec\.source\.fileSystemPath\.format: .*'YAML'"):
        MetricParser(["a"], None, "YAML")
    with pytest.raises(ValueError, match=r"spec\.metricsCollectorSpec\.source\.filter: must be omitted"):
        MetricParser(["a"], [KATIB_CUSTOM_FILTER], "JSON")


@pytest.mark.parametrize("names", [[], [""], ["accuracy", None]])
def test_metric_names_are_required(names):
    with pytest.raises(ValueError, match="spec.objective.objectiveMetricName"):
        MetricParser(names)


def test_parser_defaults():
    p = MetricParser("accuracy", None, None)  # one name; an unset format means TEXT, as in Katib
    assert p.metric_names == ("accuracy",) and p.format == "TEXT"
    assert pairs(p.parse_line("accuracy=1 accuracy=2")) == [("accuracy", "1"), ("accuracy", "2")]
    assert pairs(MetricParser(["a", "a"], []).parse_line("a=1")) == [("a", "1")]  # [] means the default


# -- collector_config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [None, {}, {"source": None}, {"collector": {"kind": "StdOut"}}])
def test_stdout_is_the_default(spec):
    assert collector_config(spec) == CollectorConfig("StdOut", None, "TEXT", None)


def test_stdout_with_filters_and_always_text():
    config = collector_config(
        {
            "collector": {"kind": "StdOut"},
            "source": {"filter": {"metricsFormat": [KATIB_CUSTOM_FILTER]}, "fileSystemPath": {"format": "JSON"}},
        }
    )
    assert config == CollectorConfig("StdOut", None, "TEXT", [KATIB_CUSTOM_FILTER])
    assert config.kind == "StdOut" and config.filters == [KATIB_CUSTOM_FILTER]
    assert collector_config({"source": {"filter": {"metricsFormat": []}}}).filters is None


def test_file_collector_from_katib_examples():
    text = collector_config(
        {
            "source": {
                "filter": {"metricsFormat": [KATIB_CUSTOM_FILTER]},
                "fileSystemPath": {"path": "/katib/mnist.log", "kind": "File"},
            },
            "collector": {"kind": "File"},
        }
    )
    assert text == CollectorConfig("File", "/katib/mnist.log", "TEXT", [KATIB_CUSTOM_FILTER])
    json_ = collector_config(
        {
            "source": {"fileSystemPath": {"path": "/katib/mnist.json", "kind": "File", "format": "JSON"}},
            "collector": {"kind": "File"},
        }
    )
    assert json_ == CollectorConfig("File", "/katib/mnist.json", "JSON", None)
    relative = collector_config({"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "m.log"}}})
    assert relative == CollectorConfig("File", "m.log", "TEXT", None)


def test_none_collector_is_explicit():
    config = collector_config({"collector": {"kind": "None"}, "source": {"filter": {"metricsFormat": ["bad"]}}})
    assert config == CollectorConfig("None", None, None, None)


@pytest.mark.parametrize("kind", ["TensorFlowEvent", "PrometheusMetric", "Custom"])
def test_cluster_only_kinds_are_rejected(kind):
    with pytest.raises(ValueError) as info:
        collector_config({"collector": {"kind": kind}})
    message = str(info.value)
    assert message.startswith("spec.metricsCollectorSpec.collector.kind: ")
    assert kind in message and "not supported" in message and "StdOut" in message and "File" in message


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"collector": {"kind": "stdout"}}, "collector.kind: must be one of"),
        ({"collector": {}}, "collector.kind: must be one of"),
        ({"collector": {"kind": "File"}}, "source.fileSystemPath.path: is required"),
        ({"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": ""}}}, "fileSystemPath.path:"),
        ({"collector": {"kind": "File"}, "source": {"fileSystemPath": {"kind": "File"}}}, "fileSystemPath.path:"),
        (
            {"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "/m", "kind": "Directory"}}},
            "source.fileSystemPath.kind: must be File",
        ),
        (
            {"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "/m", "format": "text"}}},
            "source.fileSystemPath.format: must be TEXT or JSON",
        ),
        (
            {
                "collector": {"kind": "File"},
                "source": {"fileSystemPath": {"path": "/m", "format": "JSON"}, "filter": {}},
            },
            "source.filter: must be omitted",
        ),
        ({"source": {"filter": {"metricsFormat": ["(x)"]}}}, "source.filter.metricsFormat[0]: "),
        ({"source": {"filter": {"metricsFormat": "(a)=(b)"}}}, "source.filter.metricsFormat: must be a list"),
        ({"source": {"filter": "(a)=(b)"}}, "source.filter: must be a mapping"),
        ({"collector": "StdOut"}, "collector: must be a mapping"),
    ],
)
def test_collector_config_errors_name_the_field(spec, field):
    with pytest.raises(ValueError) as info:
        collector_config(spec)
    assert str(info.value).startswith("spec.metricsCollectorSpec.")
    assert field in str(info.value)


def test_collector_config_rejects_a_non_mapping():
    with pytest.raises(ValueError, match=r"^spec\.metricsCollectorSpec: must be a mapping"):
        collector_config(["StdOut"])
