"""Compare pipelines on benchmark results with MOABB's statistics and plots.

Thin, documented wrappers around :mod:`moabb.analysis`: per-dataset paired
tests between pipelines (permutation test below 20 subjects, Wilcoxon above,
as MOABB decides), standardised mean differences as effect sizes, combined
over datasets with Stouffer's method. The score and paired plots live in
:mod:`chatbci.bci.figures` (re-exported here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class StatisticsError(ValueError):
    """Results that cannot be compared as asked."""


def _check_results(results, min_pipelines=1):
    required = {"score", "subject", "session", "dataset", "pipeline"}
    if not isinstance(results, pd.DataFrame) or not required <= set(results.columns):
        raise StatisticsError(
            "Expected a benchmark results DataFrame with columns "
            f"{sorted(required)} (from chatbci.bci.benchmark.run_benchmark or MOABB)."
        )
    n = results["pipeline"].nunique()
    if n < min_pipelines:
        raise StatisticsError(
            f"Comparing pipelines needs at least {min_pipelines} pipelines; the results "
            f"hold {n}: {sorted(results['pipeline'].unique())}."
        )


def compare_pipelines(results, perm_cutoff=20):
    """Paired statistics between every pair of pipelines, per dataset.

    Parameters
    ----------
    results : pandas.DataFrame
        Benchmark results (one row per subject, session and pipeline).
    perm_cutoff : int
        Below this number of subjects MOABB uses an exact/random permutation
        test, above it a Wilcoxon signed-rank test.

    Returns
    -------
    stats : pandas.DataFrame
        One row per (dataset, pipe1, pipe2) with ``p`` (one-sided: pipe1 >
        pipe2), ``smd`` (standardised mean difference of pipe1 - pipe2) and
        ``nsub``, as :func:`moabb.analysis.meta_analysis.compute_dataset_statistics`.
    """
    from moabb.analysis.meta_analysis import compute_dataset_statistics

    _check_results(results, min_pipelines=2)
    df = paired_subset(results)
    stats = compute_dataset_statistics(df, perm_cutoff=perm_cutoff)
    stats = stats[stats["pipe1"] != stats["pipe2"]].drop(columns=["index"])
    stats["p"] = stats["p"].astype(float)
    stats["smd"] = stats["smd"].astype(float)
    return stats.reset_index(drop=True)


def paired_subset(results):
    """Keep, per dataset, the subjects scored by every pipeline (paired tests).

    Raises
    ------
    StatisticsError
        Fewer than 2 subjects are common to all pipelines of a dataset.
    """
    df = results.copy()
    df["score"] = df["score"].astype(float)
    df["subject"] = df["subject"].astype(str)
    keep = []
    for dataset, part in df.groupby("dataset"):
        n_pipes = part["pipeline"].nunique()
        per_subject = part.groupby("subject")["pipeline"].nunique()
        common = per_subject.index[per_subject == n_pipes]
        if len(common) < 2:
            raise StatisticsError(
                f"Paired comparison on {dataset} needs at least 2 subjects scored by every "
                f"pipeline; {len(common)} are. Benchmark the pipelines on the same subjects."
            )
        keep.append(part[part["subject"].isin(common)])
    return pd.concat(keep, ignore_index=True)


def combined_differences(stats):
    """Combine per-dataset statistics over datasets (Stouffer), as MOABB.

    Returns
    -------
    p_values, effects : pandas.DataFrame
        Square tables (pipe1 x pipe2).
    """
    from moabb.analysis.meta_analysis import find_significant_differences

    return find_significant_differences(stats)


def summary_table(results, stats=None, alpha=0.05):
    """Mean ± sd per pipeline and dataset, with the comparison to the best.

    Parameters
    ----------
    results : pandas.DataFrame
        Benchmark results.
    stats : pandas.DataFrame | None
        Output of :func:`compare_pipelines`; computed when None and there are
        at least two pipelines.
    alpha : float
        Significance threshold for the ``significant`` column.

    Returns
    -------
    table : pandas.DataFrame
        Columns: dataset, pipeline, mean, sd, n_subjects, and, against the
        best pipeline of the dataset: vs_best_p (one-sided p that the best is
        better), vs_best_smd, significant. Sorted by dataset then mean score.
    """
    _check_results(results)
    df = results.copy()
    df["score"] = df["score"].astype(float)
    # One score per subject: average sessions first, as MOABB's statistics do.
    per_subject = df.groupby(["dataset", "pipeline", "subject"], observed=True)["score"].mean()
    table = per_subject.groupby(["dataset", "pipeline"], observed=True).agg(
        mean="mean", sd="std", n_subjects="count"
    ).reset_index()
    table["sd"] = table["sd"].fillna(0.0)
    if stats is None and df["pipeline"].nunique() > 1:
        try:
            stats = compare_pipelines(results)
        except StatisticsError:
            stats = None  # no common subjects: means and sds only
    table["vs_best_p"] = np.nan
    table["vs_best_smd"] = np.nan
    for dataset, group in table.groupby("dataset"):
        best = group.loc[group["mean"].idxmax(), "pipeline"]
        if stats is None:
            continue
        s = stats[(stats["dataset"] == dataset) & (stats["pipe1"] == best)]
        for idx, row in group.iterrows():
            hit = s[s["pipe2"] == row["pipeline"]]
            if len(hit):
                table.loc[idx, "vs_best_p"] = float(hit["p"].iloc[0])
                table.loc[idx, "vs_best_smd"] = float(hit["smd"].iloc[0])
    table["significant"] = table["vs_best_p"] < alpha
    table = table.sort_values(["dataset", "mean"], ascending=[True, False])
    return table.reset_index(drop=True)


def format_summary(table, digits=3):
    """Render :func:`summary_table` as plain text for a terminal."""
    lines = []
    for dataset, group in table.groupby("dataset", sort=False):
        n = int(group["n_subjects"].max())
        lines.append(f"{dataset} ({n} subjects)")
        width = max(len(p) for p in group["pipeline"]) + 2
        lines.append(f"  {'pipeline':<{width}}{'score (mean ± sd)':<22}vs best")
        for i, row in enumerate(group.itertuples()):
            score = f"{row.mean:.{digits}f} ± {row.sd:.{digits}f}"
            if i == 0:
                cmp = "best"
            elif np.isnan(row.vs_best_p):
                cmp = "-"
            else:
                star = " *" if row.significant else ""
                cmp = f"p={row.vs_best_p:.3g}, smd={row.vs_best_smd:.2f}{star}"
            lines.append(f"  {row.pipeline:<{width}}{score:<22}{cmp}")
    lines.append("p: one-sided paired test that the best pipeline scores higher "
                 "(permutation < 20 subjects, Wilcoxon otherwise); * p < 0.05.")
    return "\n".join(lines)


def score_plot(results, pipelines=None, chance_level=None, **kwargs):
    """Every subject's score per pipeline; see :func:`chatbci.bci.figures.score_plot`.

    Kept here so ``from chatbci.bci.statistics import score_plot`` works;
    errors are :class:`StatisticsError`, as for the rest of this module.
    """
    from .figures import FigureError
    from .figures import score_plot as _score_plot

    try:
        return _score_plot(results, pipelines=pipelines, chance_level=chance_level, **kwargs)
    except FigureError as err:
        raise StatisticsError(str(err)) from None


def paired_plot(results, pipeline_a, pipeline_b, **kwargs):
    """One pipeline against another per subject; see :func:`chatbci.bci.figures.paired_plot`.

    Kept here so ``from chatbci.bci.statistics import paired_plot`` works;
    errors are :class:`StatisticsError`, as for the rest of this module.
    """
    from .figures import FigureError
    from .figures import paired_plot as _paired_plot

    try:
        return _paired_plot(results, pipeline_a, pipeline_b, **kwargs)
    except FigureError as err:
        raise StatisticsError(str(err)) from None
