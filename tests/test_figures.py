"""The project's figure style and the benchmark figures drawn in it.

Checks what a reader of the figure relies on: every subject is drawn inside
the axes, the metric is named and scaled as in the tables, datasets carry one
name, and drawing a figure leaves the user's matplotlib settings alone.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from chatbci.bci import figures  # noqa: E402
from chatbci.bci.figures import (  # noqa: E402
    DOUBLE_COLUMN,
    SINGLE_COLUMN,
    figure_size,
    figure_style,
    paired_plot,
    score_plot,
)
from chatbci.bci.statistics import StatisticsError  # noqa: E402
from chatbci.bci.statistics import paired_plot as stats_paired_plot  # noqa: E402


def _results(scores, dataset="PhysionetMotorImagery", n_classes=2, sessions=("0",)):
    """MOABB-shaped results from {pipeline: [score per subject]}."""
    rows = []
    for pipe, values in scores.items():
        for subject, value in enumerate(values, start=1):
            for session in sessions:
                rows.append({"score": value, "subject": str(subject), "session": session,
                             "dataset": dataset, "pipeline": pipe, "n_classes": n_classes,
                             "time": 0.1, "samples": 40.0, "channels": 3,
                             "n_sessions": len(sessions)})
    return pd.DataFrame(rows)


# Six subjects, three of them below chance: the paired plot of notebook 03
# used to show 4 of them (axes fixed at 0.5-1).
LOW_SUBJECTS = {"TS+LR": [0.21, 0.38, 0.47, 0.66, 0.81, 0.93],
                "CSP+LDA": [0.26, 0.33, 0.49, 0.61, 0.84, 0.90],
                "MDM": [0.30, 0.41, 0.52, 0.58, 0.77, 0.88]}


def _subject_points(fig):
    """(x, y) of every subject marker, from the collections tagged 'subjects'."""
    points = [c.get_offsets() for ax in fig.axes for c in ax.collections
              if c.get_gid() == "subjects"]
    return np.concatenate(points) if points else np.empty((0, 2))


def _texts(fig):
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_paired_plot_draws_every_subject_inside_the_axes():
    results = _results(LOW_SUBJECTS)
    fig = paired_plot(results, "TS+LR", "CSP+LDA")
    ax = fig.axes[0]
    points = _subject_points(fig)
    expected = np.column_stack([LOW_SUBJECTS["TS+LR"], LOW_SUBJECTS["CSP+LDA"]])
    assert len(points) == 6
    np.testing.assert_allclose(np.sort(points, axis=0), np.sort(expected, axis=0))
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert (points[:, 0] > x0).all() and (points[:, 0] < x1).all()
    assert (points[:, 1] > y0).all() and (points[:, 1] < y1).all()
    # Fitted to the data, not the metric's whole range; chance (0.5) shown.
    assert x0 > 0.0 and x1 < 1.0 and x0 < 0.21 and x1 > 0.93
    # Who wins how often is written on the figure, counted from the data.
    a, b = np.array(LOW_SUBJECTS["TS+LR"]), np.array(LOW_SUBJECTS["CSP+LDA"])
    assert f"CSP+LDA higher: {(b > a).sum()}" in _texts(fig)
    assert f"TS+LR higher: {(a > b).sum()}" in _texts(fig)


def test_score_plot_draws_every_subject_of_every_pipeline():
    results = _results(LOW_SUBJECTS, sessions=("0", "1"))
    fig = score_plot(results)
    points = _subject_points(fig)
    # Sessions averaged: one point per subject and pipeline.
    assert len(points) == 6 * 3
    x0, x1 = fig.axes[0].get_xlim()
    assert (points[:, 0] > x0).all() and (points[:, 0] < x1).all()
    assert sorted(t.get_text() for t in fig.axes[0].get_yticklabels()) == sorted(LOW_SUBJECTS)


def test_metric_named_and_scaled_as_in_the_tables():
    fig = paired_plot(_results(LOW_SUBJECTS), "TS+LR", "MDM")
    ax = fig.axes[0]
    assert "ROC AUC" in ax.get_xlabel() and "ROC AUC" in ax.get_ylabel()
    assert "%" not in ax.get_xlabel()
    assert -0.05 <= ax.get_xlim()[0] and ax.get_xlim()[1] <= 1.05
    chance = [line for line in ax.lines if np.allclose(line.get_xdata(), 0.5)]
    assert chance, "a chance-level line at 0.5 for ROC AUC"

    four_class = _results({"A": [0.2, 0.3, 0.5], "B": [0.3, 0.45, 0.6]}, n_classes=4)
    fig = score_plot(four_class)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Accuracy"
    assert any(np.allclose(line.get_xdata(), 0.25) for line in ax.lines)
    assert ax.get_xlim()[0] < 0.2


def test_datasets_carry_their_display_name_and_no_watermark():
    results = pd.concat([_results(LOW_SUBJECTS),
                         _results(LOW_SUBJECTS, dataset="SimulatedMI-6b48168cb2")])
    for fig in (score_plot(results), paired_plot(results, "TS+LR", "MDM")):
        text = " ".join(_texts(fig))
        assert "PhysionetMI" in text and "SimulatedMI" in text
        assert "PhysionetMotorImagery" not in text and "6b48168cb2" not in text
        assert "MOABB" not in text
        # Both datasets, every subject.
        assert len(_subject_points(fig)) in (2 * 6 * 3, 2 * 6)


def test_plots_leave_global_matplotlib_state_as_found():
    # rc_context restores the suite's settings after this test's own change.
    with matplotlib.rc_context({"font.family": "serif"}):  # the user's own choice
        before = {k: v for k, v in plt.rcParams.items()}
        score_plot(_results(LOW_SUBJECTS))
        paired_plot(_results(LOW_SUBJECTS), "TS+LR", "CSP+LDA")
        with figure_style():
            assert plt.rcParams["font.size"] <= 9
        after = {k: v for k, v in plt.rcParams.items()}
        assert after == before
        # A user's next plot uses the user's settings, not the project's.
        fig, ax = plt.subplots()
        line, = ax.plot([0, 1])
        assert line.get_color() == before["axes.prop_cycle"].by_key()["color"][0]
        assert ax.xaxis.label.get_fontfamily() == ["serif"]


def test_benchmark_figures_fit_a_journal_column():
    for fig in (score_plot(_results(LOW_SUBJECTS)),
                paired_plot(_results(LOW_SUBJECTS), "TS+LR", "MDM")):
        width, height = fig.get_size_inches()
        assert width == pytest.approx(SINGLE_COLUMN)
        assert height <= figures.MAX_HEIGHT
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text()]
        assert max(sizes) <= 9 and min(sizes) >= 6


def test_figure_size_and_clear_errors():
    assert figure_size("double", aspect=0.5) == (DOUBLE_COLUMN, 3.5)
    assert figure_size("single", aspect=1.0, n_rows=10)[1] == figures.MAX_HEIGHT
    with pytest.raises(ValueError, match="single"):
        figure_size("wide")
    with pytest.raises(figures.FigureError, match="No pipeline 'FOO'"):
        paired_plot(_results(LOW_SUBJECTS), "FOO", "MDM")
    # statistics re-exports the plots with its own error type.
    with pytest.raises(StatisticsError, match="No pipeline 'FOO'"):
        stats_paired_plot(_results(LOW_SUBJECTS), "FOO", "MDM")
    disjoint = pd.concat([_results({"A": [0.6, 0.7]}),
                          _results({"B": [0.6, 0.7]}).assign(subject=lambda d: d.subject + "0")])
    with pytest.raises(figures.FigureError, match="same subjects"):
        paired_plot(disjoint, "A", "B")


def test_two_simulated_datasets_stay_apart():
    # Same display name, different parameters: drawn as two datasets.
    results = pd.concat([_results(LOW_SUBJECTS, dataset="SimulatedMI-6b48168cb2"),
                         _results(LOW_SUBJECTS, dataset="SimulatedMI-0123456789")])
    fig = paired_plot(results, "TS+LR", "MDM")
    assert len(_subject_points(fig)) == 2 * 6
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(legend) == 2 and len(set(legend)) == 2


def test_figures_are_not_left_in_pyplot():
    # Jupyter's inline backend shows every open pyplot figure at the end of a
    # cell, and a returned figure once more: project figures stay out of pyplot.
    plt.close("all")
    score_plot(_results(LOW_SUBJECTS))
    paired_plot(_results(LOW_SUBJECTS), "TS+LR", "MDM")
    assert plt.get_fignums() == []


@pytest.mark.slow
def test_a_notebook_cell_shows_each_figure_once(tmp_path, monkeypatch):
    import json
    import sys

    import nbformat
    from nbclient import NotebookClient

    home = tmp_path / "jupyter"
    for name, sub in {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data",
                      "JUPYTER_RUNTIME_DIR": "runtime", "IPYTHONDIR": "ipython"}.items():
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(home / sub))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # Jupyter's own inline backend
    spec = home / "data" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    # Jupyter's defaults (no %matplotlib magic): nothing but chatbci imports pyplot.
    setup = ("import pandas as pd\n"
             "from chatbci.bci.statistics import paired_plot, score_plot\n"
             f"results = pd.DataFrame({_results(LOW_SUBJECTS).to_dict('list')!r})")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(setup),
        nbformat.v4.new_code_cell("score_plot(results)"),
        nbformat.v4.new_code_cell("paired_plot(results, 'TS+LR', 'CSP+LDA')"),
        # Once the user's own pyplot use has loaded the inline backend too.
        nbformat.v4.new_code_cell("%matplotlib inline\nscore_plot(results)"),
    ])
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell in nb.cells[1:]:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, cell.outputs


def test_tutorial_notebooks_are_committed_without_outputs():
    from pathlib import Path

    import nbformat

    for path in sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        dirty = [i for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))]
        assert not dirty, f"{path.name}: clear the outputs of cells {dirty} before committing"


def test_forest_plot_keeps_room_for_its_intervals():
    # Group labels name dataset, evaluation, paradigm and seed; in a single
    # column they squeezed the axes to nothing ("axes sizes collapsed to zero").
    from chatbci.bci.figures import forest_plot
    from chatbci.bci.statistics import like_for_like

    rng = np.random.default_rng(0)
    rows = [dict(dataset="PhysionetMI", evaluation="within-session",
                 paradigm="LeftRightImagery", seed=seed, pipeline=pipe, subject=str(s),
                 session="0", score=base + 0.02 * rng.standard_normal(), run="1",
                 time="2026-01-01T00:00:01", pipeline_digest=None, samples=45.0,
                 samples_test=9.0, n_classes=2.0)
            for seed in ("42", "7") for pipe, base in (("X", 0.75), ("Y", 0.7))
            for s in range(1, 7)]
    fig = forest_plot(like_for_like(pd.DataFrame(rows)), "X", "Y")
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # what savefig draws with
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied ..."
        canvas.draw()
    # Labels and intervals inside the figure, none pushed out past its edge.
    shown = fig.get_tightbbox(canvas.get_renderer())
    width, height = fig.get_size_inches()
    assert shown.x0 >= -0.01 and shown.x1 <= width + 0.01, (shown, width)
    assert fig.get_size_inches()[0] <= DOUBLE_COLUMN
