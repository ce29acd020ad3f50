"""Pipeline comparison statistics and plots on real benchmark results."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from chatbci.bci.benchmark import run_benchmark
from chatbci.bci.datasets import SimulatedMI
from chatbci.bci.statistics import (
    StatisticsError,
    compare_pipelines,
    format_summary,
    paired_plot,
    score_plot,
    summary_table,
)


@pytest.fixture(scope="module")
def results():
    ds = SimulatedMI(n_subjects=8, n_sessions=1, n_runs=1, n_trials=12, seed=3)
    return run_benchmark("CSP+LDA,TS+LR,MDM", dataset=ds, n_jobs=1, progress=False)


def test_compare_pipelines_is_moabbs_paired_statistics(results):
    stats = compare_pipelines(results)
    assert set(stats.columns) >= {"dataset", "pipe1", "pipe2", "p", "smd", "nsub"}
    assert len(stats) == 3 * 2  # ordered pairs of 3 pipelines
    assert (stats["nsub"] == 8).all()
    assert stats["p"].between(0, 1).all()
    # The standardised mean difference is antisymmetric and has the sign of
    # the mean paired difference.
    wide = results.pivot_table(index="subject", columns="pipeline", values="score")
    for row in stats.itertuples():
        mirror = stats[(stats.pipe1 == row.pipe2) & (stats.pipe2 == row.pipe1)]
        assert np.isclose(mirror["smd"].iloc[0], -row.smd)
        diff = (wide[row.pipe1] - wide[row.pipe2]).mean()
        assert np.sign(row.smd) == np.sign(diff) or abs(diff) < 1e-9


def test_summary_table_mean_sd_and_comparison_to_best(results):
    table = summary_table(results)
    assert list(table["pipeline"])[0] == table.loc[table["mean"].idxmax(), "pipeline"]
    for row in table.itertuples():
        scores = results[results.pipeline == row.pipeline]["score"].astype(float)
        assert np.isclose(row.mean, scores.mean(), atol=1e-6)
        assert np.isclose(row.sd, scores.std(), atol=1e-6)
        assert row.n_subjects == 8
    best = table.iloc[0]
    assert np.isnan(best.vs_best_p)
    assert table.iloc[1:]["vs_best_p"].between(0, 1).all()
    text = format_summary(table)
    assert "±" in text and best.pipeline in text and "p = " in text and "min p = " in text


def test_plots_are_moabbs(results):
    fig = score_plot(results)
    assert isinstance(fig, plt.Figure) and fig.axes
    fig2 = paired_plot(results, "TS+LR", "CSP+LDA")
    assert isinstance(fig2, plt.Figure)
    plt.close("all")


def test_clear_errors(results):
    with pytest.raises(StatisticsError, match="at least 2 pipelines"):
        compare_pipelines(results[results.pipeline == "MDM"])
    with pytest.raises(StatisticsError, match="columns"):
        summary_table(pd.DataFrame({"x": [1]}))
    with pytest.raises(StatisticsError, match="No pipeline 'FOO'"):
        paired_plot(results, "FOO", "MDM")


def test_pairs_only_subjects_scored_by_every_pipeline(results):
    # Drop one subject of one pipeline: the tests use the 7 complete subjects.
    partial = results[~((results.pipeline == "MDM") & (results.subject == "1"))]
    stats = compare_pipelines(partial)
    assert (stats["nsub"] == 7).all()
    table = summary_table(partial)
    assert table.set_index("pipeline").loc["MDM", "n_subjects"] == 7
    assert table["vs_best_p"].notna().sum() == 2
    few = results[results.subject.isin(["1"]) | (results.pipeline == "TS+LR")]
    with pytest.raises(StatisticsError, match="same subjects"):
        compare_pipelines(few)
    assert summary_table(few)["vs_best_p"].isna().all()  # means only, no test
