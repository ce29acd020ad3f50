"""Like-for-like comparisons: no ranking, best, p-value or sentence mixes subject sets.

Issue 12: pipelines that ran on different subjects, at different times, were
ranked against each other, and a p-value from an earlier comparison sat next
to a score from a later run. These tests build such results (and workspaces)
and check that every consumer goes through one mechanism,
:func:`chatbci.bci.statistics.like_for_like`.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, combine_pvalues, mannwhitneyu

from chatbci.bci.statistics import (
    chance_level,
    chance_p_value,
    format_comparisons,
    heterogeneity,
    like_for_like,
    meta_analysis,
    min_p_value,
    stale_comparisons,
    subject_significance,
    summary_table,
)


def _rows(pipeline, subjects, base, *, run="1", time="2026-01-01T00:00:01",
          dataset="PhysionetMI", evaluation="within-session", seed="42", spread=0.02,
          rng_seed=0, digest=None):
    rng = np.random.default_rng(rng_seed + sum(map(ord, pipeline)))
    return [dict(dataset=dataset, evaluation=evaluation, paradigm="LeftRightImagery",
                 seed=seed, pipeline=pipeline, subject=str(s), session="0",
                 score=base + spread * rng.standard_normal(), run=run, time=time,
                 pipeline_digest=digest, samples=45.0, samples_test=9.0, n_classes=2.0)
            for s in subjects]


@pytest.fixture
def issue_results():
    """The issue's workspace: TS+SVM on 1-6, TS+LR on 1-4 (higher mean), CSP+LDA
    on 1-4 first and on 5-12 later."""
    return pd.DataFrame(
        _rows("CSP+LDA", range(1, 5), 0.62, run="3", time="2026-01-01T10:00:00")
        + _rows("TS+SVM", range(1, 7), 0.74, run="3", time="2026-01-01T10:00:00")
        + _rows("TS+LR", range(1, 5), 0.81, run="5", time="2026-01-01T11:00:00")
        + _rows("CSP+LDA", range(5, 13), 0.595, run="9", time="2026-01-01T12:00:00"))


def test_ranking_best_and_tests_only_on_shared_subjects(issue_results):
    from moabb.analysis.meta_analysis import compute_dataset_statistics

    (c,) = like_for_like(issue_results)
    ranked = list(c.ranking["pipeline"])
    # Most paired scores: CSP+LDA and TS+SVM share 6 subjects (12 scores); with
    # TS+LR the three share 4 (12): the tie goes to more subjects.
    assert c.subjects == ["1", "2", "3", "4", "5", "6"] and c.n_subjects == 6
    assert set(ranked) == {"CSP+LDA", "TS+SVM"} and c.best == ranked[0]
    apart = c.apart.set_index("pipeline")
    assert list(apart.index) == ["TS+LR"]
    assert apart.loc["TS+LR", "n_subjects"] == 4 and apart.loc["TS+LR", "subjects"] == "1-4"
    # Every ranked number rests on the shared subjects only.
    shared = issue_results[issue_results.subject.isin(c.subjects)
                           & issue_results.pipeline.isin(ranked)]
    for row in c.ranking.itertuples():
        mine = shared[shared.pipeline == row.pipeline]["score"]
        assert row.n_subjects == 6 and np.isclose(row.mean, mine.mean())
    # CSP+LDA ran on 12 subjects in all; the ranking uses its 6 shared ones.
    csp = c.ranking.set_index("pipeline").loc["CSP+LDA"]
    assert csp.n_subjects_all == 12 and csp.n_subjects == 6
    expected = compute_dataset_statistics(shared.assign(session="0"))
    hit = expected[(expected.pipe1 == c.best) & (expected.pipe2 != c.best)].iloc[0]
    worse = c.ranking.set_index("pipeline").loc[hit.pipe2]
    assert np.isclose(worse.p_vs_best, hit.p) and np.isclose(worse.smd_vs_best, hit.smd)
    # Runs the ranked scores come from: CSP+LDA 1-4 and TS+SVM (#3), CSP+LDA 5-6 (#9).
    assert c.runs == ["3", "9"]


def test_fewer_subjects_never_ranked_above(issue_results):
    table = summary_table(issue_results)
    assert list(table["compared"]) == sorted(table["compared"], reverse=True)
    lr = table.set_index("pipeline").loc["TS+LR"]
    assert not lr.compared and np.isnan(lr.vs_best_p) and lr["mean"] > table.iloc[0]["mean"]
    text = format_comparisons(table.attrs["comparisons"])
    assert text.index("TS+LR") > text.index("not ranked")
    assert "n = 4 (subjects 1-4)" in text and "ranked on subjects 1-6 (n = 6)" in text


def test_groups_never_mix_datasets_evaluations_seeds_or_cohorts():
    df = pd.DataFrame(
        _rows("A", range(1, 6), 0.7) + _rows("B", range(1, 6), 0.6)
        + _rows("C", range(1, 6), 0.9, seed="7")  # another seed: not comparable
        + _rows("D", range(1, 6), 0.95, evaluation="cross-session")
        + _rows("E", range(1, 4), 0.8, evaluation="cross-subject", run="11")
        + _rows("F", range(1, 4), 0.7, evaluation="cross-subject", run="11")
        + _rows("E", range(1, 6), 0.5, evaluation="cross-subject", run="12"))
    comps = like_for_like(df)
    by = {(c.key["evaluation"], c.key["seed"], c.key.get("cohort")): c for c in comps}
    assert set(by[("within-session", "42", None)].ranking["pipeline"]) == {"A", "B"}
    assert by[("within-session", "7", None)].best is None  # alone: listed, not ranked
    assert by[("cross-session", "42", None)].best is None
    # Cross-subject scores depend on the training cohort: each run is its own group.
    assert set(by[("cross-subject", "42", "1-3")].ranking["pipeline"]) == {"E", "F"}
    assert list(by[("cross-subject", "42", "1-5")].ranking["pipeline"]) == ["E"]


def test_latest_rerun_wins_and_a_redefined_pipeline_is_a_new_one():
    df = pd.DataFrame(
        _rows("A", range(1, 6), 0.6, run="1", time="2026-01-01T01:00:00", digest="a1")
        + _rows("B", range(1, 6), 0.7, run="1", time="2026-01-01T01:00:00", digest="b1")
        + _rows("A", range(1, 6), 0.9, run="2", time="2026-01-01T02:00:00", digest="a2",
                rng_seed=5))
    (c,) = like_for_like(df)
    a = c.ranking.set_index("pipeline").loc["A"]
    new = df[(df.run == "2")]["score"].mean()
    assert np.isclose(a["mean"], new) and c.best == "A" and c.runs == ["1", "2"]


def test_every_p_carries_n_and_the_smallest_attainable_p():
    df = pd.DataFrame(_rows("A", range(1, 4), 0.9) + _rows("B", range(1, 4), 0.6))
    (c,) = like_for_like(df)
    p = c.ranking.set_index("pipeline").loc["B", "p_vs_best"]
    # With 3 subjects every paired permutation p is at least 1/8.
    assert c.min_p == 0.125 and np.isclose(p, 0.125)
    assert "no test can reach p < 0.05" in c.caution and "n = 3" in c.caution
    text = format_comparisons([c])
    assert "p = 0.125 (n = 3, min p = 0.125)" in text and "caution:" in text
    d = c.to_dict()
    assert d["min_p"] == 0.125 and "caution" in d and d["n_subjects"] == 3
    assert min_p_value(5) == 1 / 32 and min_p_value(16) == 1e-4 and min_p_value(25) == 2**-25
    (c5,) = like_for_like(pd.DataFrame(_rows("A", range(1, 6), 0.9)
                                       + _rows("B", range(1, 6), 0.6)))
    assert c5.caution is None and c5.min_p == 1 / 32


def test_chance_levels_for_accuracy_and_roc_auc():
    # Combrisson & Jerbi (2015): 40 trials, 2 classes, p < 0.05 -> 62.5 %.
    assert chance_level(40, 2, metric="accuracy") == binom.ppf(0.95, 40, 0.5) / 40 == 0.625
    assert np.isclose(chance_p_value(0.625, 40, metric="accuracy"), binom.sf(24, 40, 0.5))
    # ROC AUC of one test set: the exact Mann-Whitney null.
    x, y = np.arange(1, 6) + 0.5, np.array([0, 1, 2.2, 3, 3.1, 7])
    u = mannwhitneyu(x, y, alternative="greater", method="exact")
    assert np.isclose(chance_p_value(u.statistic / 30, 11, metric="roc_auc"), u.pvalue)
    # More trials, lower chance level; 5 folds of 9 trials vs one test set of 45.
    assert chance_level(45, metric="roc_auc") < chance_level(20, metric="roc_auc") < 1
    df = pd.DataFrame(_rows("A", [1], 0.9, spread=0) + _rows("A", [2], 0.55, spread=0))
    sig = subject_significance(df).set_index("subject")
    assert sig.loc["1", "above_chance"] and not sig.loc["2", "above_chance"]
    assert sig.loc["1", "n_trials"] == 45 and 0.6 < sig.loc["1", "chance_level"] < 0.7
    assert np.isclose(sig.loc["2", "p_chance"], chance_p_value(0.55, 45, n_folds=5))


def test_meta_analysis_is_moabbs_stouffer_with_i2():
    rows = []
    for ds, gain in (("A", 0.05), ("B", 0.05), ("C", 0.05)):
        rows += _rows("X", range(1, 9), 0.7 + gain, dataset=ds, spread=0.03, rng_seed=1)
        rows += _rows("Y", range(1, 9), 0.7, dataset=ds, spread=0.03, rng_seed=2)
    comps = like_for_like(pd.DataFrame(rows))
    meta = meta_analysis(comps).set_index(["pipe1", "pipe2"]).loc[("X", "Y")]
    ps = [c.stats.set_index(["pipe1", "pipe2"]).loc[("X", "Y"), "p"] for c in comps]
    expected = combine_pvalues(ps, method="stouffer", weights=np.sqrt([8, 8, 8]))[1]
    assert meta.n_groups == 3 and np.isclose(meta.p, expected)
    # Identical data in each group: no heterogeneity.
    assert meta.I2 == 0.0
    q, i2 = heterogeneity([0.2, 3.0, 0.1], [10, 10, 10])
    assert q > 2 and 0.5 < i2 < 1


def test_forest_plot_leaves_matplotlib_state_alone():
    from chatbci.bci.figures import forest_plot

    rows = []
    for ds, gain in (("A", 0.02), ("B", 0.08)):
        rows += _rows("X", range(1, 7), 0.7 + gain, dataset=ds, rng_seed=1)
        rows += _rows("Y", range(1, 7), 0.7, dataset=ds, rng_seed=2)
    before = dict(plt.rcParams)
    fig = forest_plot(like_for_like(pd.DataFrame(rows)), "X", "Y")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert any("n = 6" in t for t in labels) and any("I\u00b2" in t for t in labels)
    assert dict(plt.rcParams) == before
    plt.close(fig)


def test_stale_comparisons_are_those_newer_runs_overtook():
    runs = [{"id": 3, "dataset": "D", "evaluation": "within-session", "seed": 42},
            {"id": 9, "dataset": "D", "evaluation": "within-session", "seed": 42},
            {"id": 12, "dataset": "D", "evaluation": "cross-session", "seed": 42}]
    comps = [{"id": 5, "dataset": "D", "evaluation": "within-session"},
             {"id": 10, "dataset": "D", "evaluation": "within-session", "seed": 42}]
    assert stale_comparisons(comps, runs) == {5: [9]}
