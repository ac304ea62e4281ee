"""katib_services.runner.plot: the results PNG is written, is a real PNG of the expected size, and edge cases do not raise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from katib_services.runner.plot import plot_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WIDTH, HEIGHT = 1320, 550  # 12 x 5 inches at 110 dpi

PARAMETERS = [
    {"name": "lr", "parameterType": "double",
     "feasibleSpace": {"min": "0.0001", "max": "1", "distribution": "logUniform"}},
    {"name": "batch_size", "parameterType": "int", "feasibleSpace": {"min": "16", "max": "256"}},
    {"name": "optimizer", "parameterType": "categorical", "feasibleSpace": {"list": ["sgd", "adam", "rmsprop"]}},
]


def trials_12() -> list[dict]:
    rows = [
        ("0.001", "32", "sgd", 0.71), ("0.05", "64", "adam", 0.93), ("0.3", "128", "rmsprop", 0.88),
        ("0.0002", "16", "sgd", 0.55), ("0.01", "256", "adam", 0.90), ("0.9", "64", "sgd", None),
        ("0.02", "32", "rmsprop", 0.91), ("0.005", "128", "adam", 0.84), ("0.1", "16", "sgd", 0.95),
        ("0.0005", "256", "rmsprop", None), ("0.07", "64", "adam", 0.94), ("0.002", "200", "sgd", 0.77),
    ]
    conditions = {5: "Failed", 7: "EarlyStopped", 9: "MetricsUnavailable"}
    return [
        {"name": f"exp-{i:03d}", "condition": conditions.get(i, "Succeeded"),
         "assignment": {"lr": lr, "batch_size": bs, "optimizer": opt}, "objective": y}
        for i, (lr, bs, opt, y) in enumerate(rows)
    ]


def check_png(path) -> None:
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert abs(width - WIDTH) <= 10 and abs(height - HEIGHT) <= 10, image.shape
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    # Not a blank canvas: a drawn figure has many distinct colours.
    assert len({tuple(px) for px in image[::7, ::7, :3].reshape(-1, 3).tolist()}) > 20


def test_realistic_experiment_writes_png(tmp_path):
    path = tmp_path / "results.png"
    plot_results(path, PARAMETERS, trials_12(), "accuracy", "maximize")
    check_png(path)


def test_minimize_is_also_drawn(tmp_path):
    trials = trials_12()
    for t in trials:
        if t["objective"] is not None:
            t["objective"] = 1 - t["objective"]
    path = tmp_path / "loss.png"
    plot_results(path, PARAMETERS, trials, "loss", "minimize")
    check_png(path)


def test_better_is_brighter_whatever_the_direction(tmp_path):
    """The best polyline is drawn on top in the brightest colour for both directions."""
    from matplotlib.colors import to_rgb

    from katib_services.runner import plot

    seen = {}

    original = plot._parallel

    def spy(ax, *args):
        original(ax, *args)
        seen["lines"] = [line for line in ax.get_lines() if len(line.get_xdata()) == len(PARAMETERS) + 1]

    def luminance(line):
        r, g, b = to_rgb(line.get_color())
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    for direction, sign in (("maximize", 1), ("minimize", -1)):
        trials = [{"name": f"t{i}", "condition": "Succeeded",
                   "assignment": {"lr": "0.01", "batch_size": "64", "optimizer": "sgd"}, "objective": sign * v}
                  for i, v in enumerate([0.1, 0.9, 0.5])]
        plot._parallel = spy
        try:
            plot_results(tmp_path / f"{direction}.png", PARAMETERS, trials, "m", direction)
        finally:
            plot._parallel = original
        lines = seen["lines"]
        assert len(lines) == 3
        # drawn worst first, best last; the best end of the objective axis is the brightest
        assert luminance(lines[-1]) > luminance(lines[0]), direction
        assert lines[-1].get_linewidth() > lines[0].get_linewidth()


def test_log_scale_and_category_positions(tmp_path):
    from katib_services.runner.plot import _Axis

    lr = _Axis(PARAMETERS[0], ["0.01"])
    assert lr.position("0.01") == pytest.approx(0.5)  # halfway between 1e-4 and 1 in log space
    assert lr.position("0.0001") == pytest.approx(0.0) and lr.position("1") == pytest.approx(1.0)
    batch = _Axis(PARAMETERS[1], ["136"])
    assert batch.position("136") == pytest.approx(0.5)
    optimizer = _Axis(PARAMETERS[2], ["adam"])
    assert [optimizer.position(v) for v in ("sgd", "adam", "rmsprop")] == [0.0, 0.5, 1.0]
    assert [label for _, label in optimizer.labels] == ["sgd", "adam", "rmsprop"]
    # a value that is not listed gets its own position, labelled with a question mark
    odd = _Axis(PARAMETERS[2], ["sgd", "nadam"])
    assert odd.position("nadam") == pytest.approx(1.0) and odd.position("rmsprop") == pytest.approx(2 / 3)
    assert odd.labels[-1][1] == "nadam (?)"
    # discrete: "16" matches a listed 16.0
    discrete = _Axis({"name": "n", "parameterType": "discrete", "feasibleSpace": {"list": [8, 16.0, 32]}}, ["16"])
    assert discrete.position("16") == pytest.approx(0.5) and len(discrete.categories) == 3


def figure_texts(monkeypatch) -> list[str]:
    """Collects every text drawn in the figures saved from now on (title, labels, annotations)."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    texts: list[str] = []
    save = Figure.savefig

    def spy(self, *args, **kwargs):
        texts.extend(t.get_text() for t in self.findobj(Text))
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return texts


def test_titles_and_labels(tmp_path, monkeypatch):
    texts = figure_texts(monkeypatch)
    plot_results(tmp_path / "r.png", PARAMETERS, trials_12(), "accuracy", "maximize")
    for expected in ("accuracy (maximize)", "lr (log)", "batch_size", "optimizer", "sgd", "adam", "rmsprop",
                     "0.0001", "256", "16", "failed", "no result", "early stopped (value when stopped)",
                     "accuracy (succeeded)", "best so far"):
        assert expected in texts, expected
    assert any("accuracy" in t and "higher is better" in t for t in texts)


def test_no_trials(tmp_path, monkeypatch):
    texts = figure_texts(monkeypatch)
    path = tmp_path / "empty.png"
    plot_results(path, PARAMETERS, [], "accuracy", "maximize")
    check_png(path)
    assert "no trials with an objective yet" in texts


def test_only_trials_without_objective(tmp_path):
    trials = [t | {"objective": None} for t in trials_12()[:3]]
    path = tmp_path / "none.png"
    plot_results(path, PARAMETERS, trials, "accuracy", "maximize")
    check_png(path)


def test_one_trial(tmp_path):
    path = tmp_path / "one.png"
    plot_results(path, PARAMETERS, trials_12()[:1], "accuracy", "maximize")
    check_png(path)


def test_values_outside_range_and_unknown_category(tmp_path):
    trials = trials_12()
    trials[0]["assignment"] = {"lr": "50", "batch_size": "-3", "optimizer": "nadam"}
    trials[1]["assignment"] = {"lr": "0", "batch_size": "not-a-number"}  # optimizer missing
    trials[2]["objective"] = float("nan")
    path = tmp_path / "odd.png"
    plot_results(path, PARAMETERS, trials, "accuracy", "maximize")
    check_png(path)


def test_importing_runner_plot_does_not_import_matplotlib():
    code = "import sys, runner.plot; sys.exit('matplotlib' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
