"""Compare pipelines like for like, with MOABB's statistics.

One mechanism, :func:`like_for_like`, decides every ranking, "best",
p-value and effect size chatbci reports (tables, tool results, the model's
context, terminal text, exports): scores are compared only within one
(dataset, evaluation, paradigm, seed), only on the subjects every ranked
pipeline shares, and pipelines scored on other subjects are listed apart
with their own n, never ranked above. The paired tests are MOABB's
(permutation test below 20 subjects, Wilcoxon above), with standardised mean
differences as effect sizes; every p travels with its n and the smallest p
that n allows (:func:`min_p_value`). Also: per-subject significance against
chance (:func:`subject_significance`), the meta-analysis over datasets or
separate runs (MOABB's Stouffer combination, Cochran's Q and I^2:
:func:`meta_analysis`; forest plot in :func:`chatbci.bci.figures.forest_plot`),
and which journaled comparisons newer runs made stale
(:func:`stale_comparisons`). The score and paired plots live in
:mod:`chatbci.bci.figures` (re-exported here).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

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
    """Mean ± sd per pipeline, ranked like for like (see :func:`like_for_like`).

    Parameters
    ----------
    results : pandas.DataFrame
        Benchmark results.
    stats : None
        Deprecated and ignored: statistics are always computed on the
        subjects the ranked pipelines share.
    alpha : float
        Significance threshold for the ``significant`` column.

    Returns
    -------
    table : pandas.DataFrame
        Per group (dataset, evaluation, paradigm, seed): first the ranked
        pipelines, best first (``compared`` True; ``mean``, ``sd`` and
        ``n_subjects`` over the shared subjects; ``vs_best_p``,
        ``vs_best_smd``, ``significant``, ``min_p``), then the pipelines
        scored on other subjects (``compared`` False; their own mean, sd,
        n; never above a ranked one). ``subjects`` names the subjects each
        row rests on. ``table.attrs["comparisons"]`` holds the
        :class:`Comparison` objects.
    """
    comparisons = like_for_like(results, alpha=alpha)
    rows = []
    for c in comparisons:
        key = {k: c.key.get(k, "") for k in COMPARISON_KEYS}
        for r in c.ranking.itertuples():
            rows.append({**key, "pipeline": r.pipeline, "mean": r.mean, "sd": r.sd,
                         "n_subjects": int(r.n_subjects), "compared": True,
                         "rank": int(r.rank), "subjects": subject_ranges(c.subjects),
                         "vs_best_p": r.p_vs_best, "vs_best_smd": r.smd_vs_best,
                         "min_p": c.min_p if c.best else np.nan, "test": c.test})
        for r in c.apart.itertuples():
            rows.append({**key, "pipeline": r.pipeline, "mean": r.mean, "sd": r.sd,
                         "n_subjects": int(r.n_subjects), "compared": False,
                         "rank": np.nan, "subjects": r.subjects, "vs_best_p": np.nan,
                         "vs_best_smd": np.nan, "min_p": np.nan, "test": None})
    table = pd.DataFrame(rows)
    table["significant"] = table["vs_best_p"] < alpha
    table.attrs["comparisons"] = comparisons
    return table


def format_summary(table, digits=3):
    """Render :func:`summary_table` as plain text for a terminal."""
    comparisons = table.attrs.get("comparisons")
    if comparisons is None:
        raise StatisticsError("format_summary expects the table summary_table returns.")
    return format_comparisons(comparisons, digits=digits)

# ---------------------------------------------------------------------------
# Like-for-like comparisons: one mechanism for every ranking, best and test
#
# A ranking, a "best", a p-value or an effect size means something only when
# every pipeline it involves was scored on the same subjects under the same
# dataset, evaluation, paradigm and seed. Every table, tool result, terminal
# summary and methods sentence of chatbci goes through :func:`like_for_like`.

#: Columns that must agree for scores to be compared at all.
COMPARISON_KEYS = ("dataset", "evaluation", "paradigm", "seed")

#: Fewest shared subjects a ranking or a paired test is computed on.
MIN_SHARED_SUBJECTS = 2

#: MOABB's number of random sign flips between 14 and ``perm_cutoff`` subjects.
_MOABB_RANDOM_PERMUTATIONS = 10_000
#: MOABB enumerates all 2^n sign flips up to this many subjects.
_MOABB_EXACT_MAX = 13


def subject_ranges(subjects) -> str:
    """Subjects written compactly: ``["1", "2", "3", "7"]`` -> ``"1-3, 7"``.

    Non-numeric subject labels are listed as they are, sorted.
    """
    labels = sorted({str(s) for s in subjects}, key=_subject_key)
    numbers = [int(s) for s in labels if s.isdigit()]
    others = [s for s in labels if not s.isdigit()]
    parts, start, prev = [], None, None
    for n in numbers + [None]:
        if n is not None and prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    return ", ".join(parts + others)


def _subject_key(s):
    s = str(s)
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def test_name(n_subjects, perm_cutoff=20) -> str:
    """The paired test MOABB uses for ``n_subjects``: ``"permutation"`` or ``"wilcoxon"``."""
    return "permutation" if n_subjects < perm_cutoff else "wilcoxon"


def min_p_value(n_subjects, test=None, perm_cutoff=20) -> float:
    """The smallest one-sided p-value MOABB's paired test can give with ``n_subjects``.

    Parameters
    ----------
    n_subjects : int
        Subjects the test pairs.
    test : {"permutation", "wilcoxon"} | None
        Default: the one MOABB picks (:func:`test_name`).
    perm_cutoff : int
        MOABB's switch from permutation to Wilcoxon tests.

    Returns
    -------
    p_min : float
        Exact sign-flip permutation test (n <= 13): 1 / 2^n, the identity
        flip always counts. Random permutations (14 <= n < ``perm_cutoff``):
        1 / 10,000, MOABB's number of flips. Wilcoxon signed-rank, one-sided
        (all differences positive): 1 / 2^n exactly.
    """
    n = int(n_subjects)
    if n < 1:
        return 1.0
    test = test or test_name(n, perm_cutoff)
    if test == "permutation" and n > _MOABB_EXACT_MAX:
        return 1.0 / _MOABB_RANDOM_PERMUTATIONS
    return 0.5 ** n


def test_caution(n_subjects, alpha=0.05, test=None, perm_cutoff=20) -> str | None:
    """A sentence when no outcome of the test could reach ``p < alpha``, else None."""
    p_min = min_p_value(n_subjects, test, perm_cutoff)
    if p_min < alpha:
        return None
    return (f"with n = {int(n_subjects)} subjects the smallest p this test can give is "
            f"{p_min:.4g}: no test can reach p < {alpha:g}; benchmark more subjects")


def p_text(p, n_subjects, test=None, perm_cutoff=20) -> str:
    """``"p = 0.125 (n = 3, min p = 0.125)"``: a p-value never travels without its n."""
    p_min = min_p_value(n_subjects, test, perm_cutoff)
    return f"p = {float(p):.4g} (n = {int(n_subjects)}, min p = {p_min:.4g})"


def _results_frame(results) -> pd.DataFrame:
    """Copy of ``results`` with the comparison keys and provenance columns filled."""
    _check_results(results)
    df = results.copy()
    df["score"] = df["score"].astype(float)
    df["subject"] = df["subject"].astype(str)
    df["session"] = df["session"].astype(str)
    for key in ("evaluation", "paradigm", "seed"):
        if key not in df.columns:
            df[key] = ""
        # groupby drops NaN keys: an unrecorded value is a value of its own.
        df[key] = df[key].astype(object).where(df[key].notna(), "").astype(str)
    if "run" not in df.columns:
        df["run"] = ""
    df["run"] = df["run"].astype(object).where(df["run"].notna(), "").astype(str)
    if "time" not in df.columns:
        df["time"] = ""
    df["time"] = df["time"].astype(object).where(df["time"].notna(), "").astype(str)
    df["_order"] = np.arange(len(df))
    # A pipeline name redefined later is a new pipeline: its earlier scores go.
    if "pipeline_digest" in df.columns:
        latest = (df.sort_values(["time", "_order"])
                  .groupby(list(COMPARISON_KEYS) + ["pipeline"])["pipeline_digest"].last())
        current = df.set_index(list(COMPARISON_KEYS) + ["pipeline"]).index.map(latest)
        df = df[(df["pipeline_digest"].astype(str) == np.asarray(current, dtype=str))
                | df["pipeline_digest"].isna()]
    # Cross-subject scores depend on the training cohort: one run, one cohort.
    df["cohort"] = ""
    cross = df["evaluation"] == "cross-subject"
    if cross.any():
        cohorts = df[cross].groupby("run")["subject"].agg(lambda s: subject_ranges(s))
        df.loc[cross, "cohort"] = df.loc[cross, "run"].map(cohorts)
    # The latest score of a (pipeline, subject, session) wins (a re-run).
    keys = list(COMPARISON_KEYS) + ["cohort", "pipeline", "subject", "session"]
    df = df.sort_values(["time", "_order"]).drop_duplicates(keys, keep="last")
    return df.sort_values("_order").drop(columns="_order")


def results_from_runs(runs) -> pd.DataFrame:
    """Per-subject scores of several benchmark runs, labelled for :func:`like_for_like`.

    Parameters
    ----------
    runs : iterable of dict
        One per run: ``run`` (its id), ``time`` (ISO text), ``config``
        (``dataset``, ``evaluation``, ``random_state``, ``pipelines``: name
        -> digest), ``protocol`` (optional; ``paradigm.name``) and ``table``
        (the run's per-subject results, MOABB's columns; None when missing).

    Returns
    -------
    results : pandas.DataFrame
        The tables stacked, with ``evaluation``, ``paradigm``, ``seed``,
        ``run``, ``time`` and ``pipeline_digest`` columns. Empty when no run
        has a table.
    """
    frames = []
    for r in runs:
        table = r.get("table")
        if table is None or len(table) == 0:
            continue
        cfg = r.get("config") or {}
        proto = r.get("protocol") or {}
        digests = cfg.get("pipelines") if isinstance(cfg.get("pipelines"), dict) else {}
        df = table.copy()
        df["dataset"] = cfg.get("dataset") or df.get("dataset")
        df["evaluation"] = cfg.get("evaluation") or (df["evaluation"] if "evaluation" in df
                                                     else "")
        df["paradigm"] = ((proto.get("paradigm") or {}).get("name") or cfg.get("paradigm")
                          or "")
        seed = cfg.get("random_state")
        df["seed"] = "" if seed is None else str(seed)
        df["run"] = str(r.get("run", ""))
        df["time"] = str(r.get("time", ""))
        df["pipeline_digest"] = df["pipeline"].map(lambda p: digests.get(p))
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["dataset", "evaluation", "paradigm", "seed", "pipeline",
                                     "subject", "session", "score", "run", "time"])
    out = pd.concat(frames, ignore_index=True)
    out["subject"] = out["subject"].astype(str)
    out["session"] = out["session"].astype(str)
    return out


def read_run_table(root, run, result=None):
    """The per-subject results table of one journaled benchmark run.

    Parameters
    ----------
    root : path-like
        The folder the run's paths are relative to (its workspace).
    run : dict
        The ``run`` payload (``results_path``).
    result : dict | None
        Its ``tool_result`` payload: a CSV among its ``artifacts`` is named
        by its sha256 and used first, if its bytes still match the name.

    Returns
    -------
    table : pandas.DataFrame | None
        None when no readable, unchanged table is left.
    """
    import hashlib
    import io
    from pathlib import Path

    root = Path(root).resolve()
    stored = [a for a in ((result or {}).get("artifacts") or [])
              if isinstance(a, str) and a.endswith(".csv")]
    candidates = stored + ([run["results_path"]] if run.get("results_path") else [])
    for rel in candidates:
        path = (root / str(rel)).resolve()
        if not path.is_relative_to(root):  # a path out of the workspace is not read
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if rel in stored and hashlib.sha256(data).hexdigest() != path.name.split(".")[0]:
            continue  # changed since the journal recorded it
        table = pd.read_csv(io.BytesIO(data), dtype={"subject": str, "session": str})
        if {"pipeline", "subject", "score"} <= set(table.columns):
            return table
    return None


def _choose_compared(subject_sets, min_subjects):
    """The pipelines to rank together, and the subjects they share.

    Among all sets of at least two pipelines sharing at least ``min_subjects``
    subjects, the one with the most paired scores (pipelines x shared
    subjects) wins; ties go to more shared subjects (power), then to more
    pipelines, then to names in order. Pipelines outside it are listed apart.
    """
    names = sorted(subject_sets)
    best, best_score = (), None
    if len(names) <= 12:
        candidates = itertools.chain.from_iterable(
            itertools.combinations(names, k) for k in range(2, len(names) + 1))
    else:  # too many subsets: grow greedily from the pipelines with most subjects
        order = sorted(names, key=lambda p: (-len(subject_sets[p]), p))
        candidates = (tuple(order[:k]) for k in range(2, len(order) + 1))
    for combo in candidates:
        shared = set.intersection(*(subject_sets[p] for p in combo))
        if len(shared) < min_subjects:
            continue
        score = (len(combo) * len(shared), len(shared), len(combo))
        if best_score is None or score > best_score:
            best, best_score = combo, score
    if not best:
        return [], set()
    return list(best), set.intersection(*(subject_sets[p] for p in best))


@dataclass
class Comparison:
    """Pipelines compared like for like within one (dataset, evaluation, paradigm, seed).

    Attributes
    ----------
    key : dict
        ``dataset``, ``evaluation``, ``paradigm``, ``seed`` (and ``cohort``
        for cross-subject runs: the subjects of the run).
    subjects : list of str
        The shared subjects every ranked number rests on.
    ranking : pandas.DataFrame
        The compared pipelines, best first: ``pipeline``, ``mean``, ``sd``
        (over the shared subjects, sessions averaged first), ``n_subjects``,
        ``rank``, ``p_vs_best`` (one-sided paired test that the best scores
        higher), ``smd_vs_best`` (best minus this one), ``significant``,
        ``n_subjects_all`` and ``mean_all`` (all of the pipeline's subjects).
    apart : pandas.DataFrame
        Pipelines not ranked (on fewer or other subjects): ``pipeline``,
        ``mean``, ``sd``, ``n_subjects``, ``subjects`` (text), ``reason``.
    stats : pandas.DataFrame | None
        MOABB's pairwise statistics on the shared subjects (``pipe1``,
        ``pipe2``, ``p``, ``smd``, ``nsub``).
    test : str | None
        ``"permutation"`` or ``"wilcoxon"``; None when nothing was tested.
    min_p : float | None
        Smallest p the test can give with these subjects.
    caution : str | None
        Set when ``min_p >= alpha``: no outcome could be significant.
    runs : list of str
        Runs the ranked scores come from.
    time : str
        Time of the newest score used.
    alpha : float
    """

    key: dict
    subjects: list
    ranking: pd.DataFrame
    apart: pd.DataFrame
    stats: pd.DataFrame | None = None
    test: str | None = None
    min_p: float | None = None
    caution: str | None = None
    runs: list = field(default_factory=list)
    time: str = ""
    alpha: float = 0.05

    @property
    def best(self) -> str | None:
        """The top pipeline of a ranking of at least two, else None."""
        if len(self.ranking) < 2:
            return None
        return str(self.ranking.iloc[0]["pipeline"])

    @property
    def n_subjects(self) -> int:
        return len(self.subjects)

    @property
    def label(self) -> str:
        """``"SimulatedMI, within-session, seed 42"``: the group in words."""
        parts = [str(self.key.get("dataset"))]
        for k in ("evaluation", "paradigm"):
            if self.key.get(k):
                parts.append(str(self.key[k]))
        if self.key.get("seed") not in (None, ""):
            parts.append(f"seed {self.key['seed']}")
        if self.key.get("cohort"):
            parts.append(f"cohort {self.key['cohort']}")
        return ", ".join(parts)

    def to_dict(self, digits=4) -> dict:
        """JSON-ready summary (tool results, journal, the model's context)."""
        def num(v, d=digits):
            return None if v is None or pd.isna(v) else round(float(v), d)

        out = {**{k: v for k, v in self.key.items() if v not in (None, "")},
               "subjects": subject_ranges(self.subjects), "n_subjects": self.n_subjects,
               "best": self.best,
               "ranking": [{"pipeline": r.pipeline, "mean": num(r.mean), "sd": num(r.sd),
                            "n_subjects": int(r.n_subjects),
                            "p_vs_best": num(r.p_vs_best), "smd_vs_best": num(r.smd_vs_best, 3)}
                           for r in self.ranking.itertuples()],
               "apart": [{"pipeline": r.pipeline, "mean": num(r.mean), "sd": num(r.sd),
                          "n_subjects": int(r.n_subjects), "subjects": r.subjects,
                          "reason": r.reason} for r in self.apart.itertuples()],
               "runs": list(self.runs)}
        if self.test:
            out["test"] = self.test
            out["min_p"] = num(self.min_p, 6)
            if self.caution:
                out["caution"] = self.caution
        return out


def like_for_like(results, *, alpha=0.05, perm_cutoff=20,
                  min_subjects=MIN_SHARED_SUBJECTS, tests=True) -> list:
    """Rank pipelines and test them only on the subjects they share.

    Rows are grouped by (dataset, evaluation, paradigm, seed); scores from
    different groups are never compared. Within a group, sessions are
    averaged per subject (as MOABB does), a pipeline's latest score for a
    subject wins, and the pipelines to rank are the largest set sharing at
    least ``min_subjects`` subjects (most pipelines x shared subjects; ties:
    more subjects). Ranking, best, p-values (MOABB's
    :func:`~moabb.analysis.meta_analysis.compute_dataset_statistics`) and
    effect sizes are computed on those shared subjects only; every other
    pipeline is listed apart with its own n and subjects, never ranked.

    Parameters
    ----------
    results : pandas.DataFrame
        Per-subject scores: ``dataset``, ``pipeline``, ``subject``,
        ``session``, ``score``; optionally ``evaluation``, ``paradigm``,
        ``seed``, ``run`` (which run a score came from), ``time`` (when; ISO
        text, orders re-runs) and ``pipeline_digest`` (a renamed definition
        is a different pipeline: only the latest definition's scores count).
    alpha : float
        Significance threshold for ``significant`` and the caution.
    perm_cutoff : int
        MOABB's switch from permutation to Wilcoxon tests.
    min_subjects : int
        Fewest shared subjects for a ranking.
    tests : bool
        Compute p-values and effect sizes (MOABB); False ranks only (fast,
        no MOABB import), leaving ``p_vs_best`` and ``smd_vs_best`` empty.

    Returns
    -------
    comparisons : list of Comparison
        One per group, in order of first appearance.
    """
    df = _results_frame(results)
    keys = list(COMPARISON_KEYS) + ["cohort"]
    out = []
    for values, part in df.groupby(keys, sort=False):
        key = dict(zip(keys, values))
        if not key["cohort"]:
            key.pop("cohort")
        per_subject = (part.groupby(["pipeline", "subject"], sort=False)
                       .agg(score=("score", "mean"), run=("run", "last"),
                            time=("time", "max")).reset_index())
        subject_sets = {p: set(g["subject"]) for p, g in per_subject.groupby("pipeline")}
        compared, shared = _choose_compared(subject_sets, min_subjects)
        if len(subject_sets) == 1:  # one pipeline: listed, nothing to rank against
            compared, shared = list(subject_sets), set(next(iter(subject_sets.values())))
        shared_sorted = sorted(shared, key=_subject_key)
        on_shared = per_subject[per_subject["pipeline"].isin(compared)
                                & per_subject["subject"].isin(shared)]
        ranking = (on_shared.groupby("pipeline")["score"]
                   .agg(mean="mean", sd="std", n_subjects="count").reset_index())
        ranking["sd"] = ranking["sd"].fillna(0.0)
        everything = per_subject.groupby("pipeline")["score"].agg(
            mean_all="mean", sd_all="std", n_subjects_all="count")
        ranking = ranking.join(everything[["mean_all", "n_subjects_all"]], on="pipeline")
        ranking = ranking.sort_values(["mean", "pipeline"], ascending=[False, True])
        ranking = ranking.reset_index(drop=True)
        ranking["rank"] = np.arange(1, len(ranking) + 1)
        ranking["p_vs_best"] = np.nan
        ranking["smd_vs_best"] = np.nan
        stats = test = p_min = caution = None
        if len(ranking) >= 2 and tests:
            from moabb.analysis.meta_analysis import compute_dataset_statistics

            tested = on_shared.assign(dataset="_", session="0")
            # MOABB draws its random sign flips (14-19 subjects) from NumPy's
            # global generator: seed it for reproducible p-values, then restore it.
            state = np.random.get_state()
            np.random.seed(0)
            try:
                stats = compute_dataset_statistics(tested, perm_cutoff=perm_cutoff)
            finally:
                np.random.set_state(state)
            stats = stats[stats["pipe1"] != stats["pipe2"]].drop(columns=["index", "dataset"])
            stats = stats.astype({"p": float, "smd": float}).reset_index(drop=True)
            best = ranking.loc[0, "pipeline"]
            vs = stats[stats["pipe1"] == best].set_index("pipe2")
            ranking["p_vs_best"] = ranking["pipeline"].map(vs["p"])
            ranking["smd_vs_best"] = ranking["pipeline"].map(vs["smd"])
            test = test_name(len(shared), perm_cutoff)
            p_min = min_p_value(len(shared), test, perm_cutoff)
            caution = test_caution(len(shared), alpha, test, perm_cutoff)
        ranking["significant"] = ranking["p_vs_best"] < alpha
        rest = [p for p in subject_sets if p not in compared]
        apart = everything.loc[rest].reset_index() if rest else pd.DataFrame(
            columns=["pipeline", "mean_all", "sd_all", "n_subjects_all"])
        apart = apart.rename(columns={"mean_all": "mean", "sd_all": "sd",
                                      "n_subjects_all": "n_subjects"})
        apart["sd"] = apart["sd"].fillna(0.0)
        apart["subjects"] = [subject_ranges(subject_sets[p]) for p in apart["pipeline"]]
        apart["reason"] = [
            (f"not scored on all {len(shared)} shared subjects "
             f"({subject_ranges(shared)})" if shared else
             "no other pipeline shares 2 of its subjects")
            for _ in apart["pipeline"]]
        apart = apart.sort_values(["n_subjects", "mean"], ascending=False).reset_index(drop=True)
        runs = [r for r in _unique(on_shared.sort_values("time")["run"]) if r]
        out.append(Comparison(key=key, subjects=shared_sorted, ranking=ranking,
                              apart=apart[["pipeline", "mean", "sd", "n_subjects", "subjects",
                                           "reason"]],
                              stats=stats, test=test, min_p=p_min, caution=caution,
                              runs=runs, time=str(part["time"].max()), alpha=alpha))
    return out


def _unique(values):
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def format_comparisons(comparisons, digits=3, metric=None) -> str:
    """Like-for-like comparisons as plain text for a terminal.

    Each group states the subjects its ranking rests on; every p comes with
    its n and smallest attainable p; pipelines on other subjects follow
    under "not ranked" with their own n and subjects.
    """
    lines = []
    for c in comparisons:
        lines.append(f"{c.label}: ranked on subjects {subject_ranges(c.subjects)} "
                     f"(n = {c.n_subjects})" + (f", {metric}" if metric else ""))
        width = max([len(str(p)) for p in c.ranking["pipeline"]]
                    + [len(str(p)) for p in c.apart["pipeline"]] + [8]) + 2
        lines.append(f"  {'pipeline':<{width}}{'score (mean ± sd)':<22}vs best")
        for i, row in enumerate(c.ranking.itertuples()):
            score = f"{row.mean:.{digits}f} ± {row.sd:.{digits}f}"
            if c.best is None:
                cmp = "-"
            elif i == 0:
                cmp = "best"
            elif np.isnan(row.p_vs_best):
                cmp = "-"
            else:
                star = " *" if row.significant else ""
                cmp = (f"{p_text(row.p_vs_best, c.n_subjects, c.test)}, "
                       f"smd = {row.smd_vs_best:.2f}{star}")
            lines.append(f"  {row.pipeline:<{width}}{score:<22}{cmp}")
        if c.caution:
            lines.append(f"  caution: {c.caution}.")
        if len(c.apart):
            lines.append("  not ranked (other subjects; not comparable with the ranking):")
            for row in c.apart.itertuples():
                score = f"{row.mean:.{digits}f} ± {row.sd:.{digits}f}"
                lines.append(f"  {row.pipeline:<{width}}{score:<22}"
                             f"n = {row.n_subjects} (subjects {row.subjects})")
    if any(c.test for c in comparisons):
        alpha = comparisons[0].alpha
        lines.append("p: one-sided paired test that the best pipeline scores higher "
                     "(MOABB: permutation < 20 subjects, Wilcoxon otherwise), on the ranked "
                     f"subjects only; min p: the smallest p that n allows; * p < {alpha:g}.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Per-subject significance against chance
#
# Accuracy: Combrisson & Jerbi (2015), the chance level is the binomial
# inverse CDF at 1 - alpha for the number of trials and classes (trials are
# scored once each across the folds of a cross-validation).
# ROC AUC: under the null hypothesis (scores unrelated to labels) the AUC of
# n1 x n2 test trials is U / (n1 n2) with U the Mann-Whitney statistic, whose
# exact distribution is known (Mann & Whitney 1947; AUC = U / n1 n2: Hanley &
# McNeil 1982). A cross-validated score is the mean over folds (and
# sessions) of such AUCs on disjoint test sets: its null distribution is the
# convolution of the folds' U distributions. Results rows record trial counts
# but not class counts, so classes are taken as balanced (left/right hand
# imagery datasets are balanced by design).

#: Beyond this many (n1 x n2 summed over folds), the normal approximation of
#: the summed U is used instead of the exact convolution.
_EXACT_U_LIMIT = 20_000


def _mwu_null(n1, n2):
    """Exact null distribution of the Mann-Whitney U for n1, n2 (no ties).

    Returns probabilities of U = 0 .. n1 * n2 (recursion of Mann & Whitney 1947:
    p(u; m, n) = m/(m+n) p(u - n; m - 1, n) + n/(m+n) p(u; m, n - 1)).
    """
    n1, n2 = int(n1), int(n2)
    if n1 == 0 or n2 == 0:
        return np.ones(1)
    # prev[j] holds the distribution for (i - 1, j); built row by row.
    prev = [np.ones(1) for _ in range(n2 + 1)]  # i = 0: U = 0 surely
    for i in range(1, n1 + 1):
        row = [np.ones(1)]  # j = 0: U = 0 surely
        for j in range(1, n2 + 1):
            size = i * j + 1
            dist = np.zeros(size)
            a = prev[j]  # (i - 1, j), shifted by j
            dist[j:j + len(a)] += i / (i + j) * a
            b = row[j - 1]  # (i, j - 1)
            dist[:len(b)] += j / (i + j) * b
            row.append(dist)
        prev = row
    return prev[n2]


def _auc_null_sf(score, folds):
    """P(mean AUC >= score) under the null, for test folds [(n1, n2), ...]."""
    folds = [(int(a), int(b)) for a, b in folds if a > 0 and b > 0]
    if not folds:
        return np.nan
    k = len(folds)
    if sum(a * b for a, b in folds) <= _EXACT_U_LIMIT:
        # Distribution of sum over folds of AUC_f = U_f / (n1 n2), on a grid:
        # equal fold sizes give an exact lattice; otherwise bin each U_f/(n1 n2).
        if len({a * b for a, b in folds}) == 1:
            dist = np.ones(1)
            for a, b in folds:
                dist = np.convolve(dist, _mwu_null(a, b))
            total = np.arange(len(dist)) / (folds[0][0] * folds[0][1])  # sum of AUCs
            return float(dist[total >= k * score - 1e-9].sum())
    var = sum((a + b + 1) / (12.0 * a * b) for a, b in folds) / k ** 2
    from scipy.stats import norm

    # Continuity is negligible at these sizes.
    return float(norm.sf((score - 0.5) / np.sqrt(var)))


def _folds_of(n_trials, n_folds):
    """Balanced (n1, n2) per test fold for ``n_trials`` trials split in ``n_folds``."""
    n_trials, n_folds = int(n_trials), max(1, int(n_folds))
    sizes = [n_trials // n_folds + (1 if i < n_trials % n_folds else 0)
             for i in range(n_folds)]
    return [(s // 2, s - s // 2) for s in sizes]


def chance_p_value(score, n_trials, n_classes=2, *, metric="roc_auc", n_folds=1):
    """Probability that a decoder unrelated to the labels scores ``score`` or more.

    Parameters
    ----------
    score : float
        The cross-validated score (mean over folds).
    n_trials : int
        Trials scored (each once, across the folds).
    n_classes : int
    metric : {"roc_auc", "accuracy", "balanced_accuracy"}
    n_folds : int
        Test folds the score averages (disjoint test sets).

    Returns
    -------
    p : float
        Accuracy: binomial tail at chance 1 / n_classes (Combrisson & Jerbi
        2015). ROC AUC: the exact Mann-Whitney null of the mean fold AUC
        (balanced classes), normal approximation for large folds.
    """
    from scipy.stats import binom

    n_trials = int(n_trials)
    if n_trials < 1 or pd.isna(score):
        return np.nan
    if metric in ("accuracy", "balanced_accuracy"):
        correct = int(np.ceil(float(score) * n_trials - 1e-9))
        return float(binom.sf(correct - 1, n_trials, 1.0 / n_classes))
    if metric != "roc_auc":
        raise StatisticsError(f"chance level: unknown metric {metric!r}; use 'roc_auc', "
                              "'accuracy' or 'balanced_accuracy'.")
    if n_classes != 2:
        raise StatisticsError("chance level for ROC AUC needs 2 classes; score multi-class "
                              "results by accuracy.")
    return _auc_null_sf(float(score), _folds_of(n_trials, n_folds))


def chance_level(n_trials, n_classes=2, *, metric="roc_auc", alpha=0.05, n_folds=1):
    """The smallest score that beats chance at ``alpha`` for ``n_trials`` trials.

    Accuracy: ``binom.ppf(1 - alpha, n, 1 / n_classes) / n`` (Combrisson &
    Jerbi 2015, "Exceeding chance level by chance", J Neurosci Methods 250:
    126-136, doi:10.1016/j.jneumeth.2015.01.010). ROC AUC: the 1 - alpha
    quantile of the mean fold AUC under the Mann-Whitney null (see
    :func:`chance_p_value`).
    """
    from scipy.stats import binom

    n_trials = int(n_trials)
    if metric in ("accuracy", "balanced_accuracy"):
        return float(binom.ppf(1 - alpha, n_trials, 1.0 / n_classes) / n_trials)
    grid = np.linspace(0.5, 1.0, 2001)
    for s in grid:
        if chance_p_value(s, n_trials, n_classes, metric=metric, n_folds=n_folds) < alpha:
            return float(s)
    return 1.0


def subject_significance(results, *, metric=None, alpha=0.05) -> pd.DataFrame:
    """Is each subject's score above chance? One row per pipeline and subject.

    Parameters
    ----------
    results : pandas.DataFrame
        Per-session scores with MOABB's ``samples``, ``samples_test`` and
        ``n_classes`` columns (chatbci and MOABB results have them).
    metric : str | None
        Default: ``roc_auc`` for two classes (MOABB's motor-imagery
        scoring), ``accuracy`` otherwise.
    alpha : float

    Returns
    -------
    table : pandas.DataFrame
        ``dataset``, ``evaluation``, ``paradigm``, ``seed``, ``pipeline``,
        ``subject``, ``metric``, ``score`` (sessions averaged), ``n_trials``, ``chance_level`` (score needed
        for p < alpha), ``p_chance``, ``above_chance``. Within-session
        scores average 5 folds over a session's trials; other evaluations
        score a whole test session (or subject) once.
    """
    need = {"samples", "samples_test", "n_classes"}
    if not need <= set(results.columns):
        raise StatisticsError(f"Per-subject chance levels need MOABB's columns "
                              f"{sorted(need)} (trial counts); these results lack "
                              f"{sorted(need - set(results.columns))}.")
    df = _results_frame(results)
    rows = []
    group = ["dataset", "evaluation", "paradigm", "seed", "pipeline", "subject"]
    for values, part in df.groupby(group, sort=False):
        key = dict(zip(group, values))
        n_classes = int(part["n_classes"].max())
        m = metric or ("roc_auc" if n_classes == 2 else "accuracy")
        folds, n_trials = [], 0
        for s in part.itertuples():
            if key["evaluation"] == "within-session":
                n = int(round(float(s.samples)))
                k = max(1, int(round(float(s.samples) / float(s.samples_test))))
            else:
                n, k = int(round(float(s.samples_test))), 1
            folds += _folds_of(n, k)
            n_trials += n
        score = float(part["score"].mean())
        if m == "roc_auc":
            p = _auc_null_sf(score, folds)
            lo, hi = 0.5, 1.0
            for _ in range(40):  # bisection: the score where p crosses alpha
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if _auc_null_sf(mid, folds) >= alpha else (lo, mid)
            level = hi
        else:
            p = chance_p_value(score, n_trials, n_classes, metric=m)
            level = chance_level(n_trials, n_classes, metric=m, alpha=alpha)
        rows.append({**key,
                     "metric": m, "score": score, "n_trials": n_trials,
                     "chance_level": level, "p_chance": p, "above_chance": p < alpha})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# Meta-analysis over datasets and separate runs


def meta_analysis(comparisons, pipelines=None) -> pd.DataFrame:
    """Combine paired comparisons over groups (datasets, seeds, runs), as MOABB.

    Parameters
    ----------
    comparisons : list of Comparison
        From :func:`like_for_like`; each group's own shared subjects.
    pipelines : list of str | None
        Pairs among these only (default: every pair tested in two groups).

    Returns
    -------
    table : pandas.DataFrame
        One row per ordered pair (pipe1, pipe2) tested in at least two
        groups: ``n_groups``, ``groups`` (labels), ``n_subjects`` (per group),
        ``p`` (Stouffer's combination weighted by sqrt(n), MOABB's
        :func:`~moabb.analysis.meta_analysis.combine_pvalues`), ``smd``
        (MOABB's :func:`~moabb.analysis.meta_analysis.combine_effects`),
        ``Q`` (Cochran's), ``I2`` (Higgins & Thompson 2002: share of the
        variation between groups due to heterogeneity rather than chance,
        inverse-variance weights with var(d) = 1/n + d^2 / 2n), and per
        group ``smds`` and ``ps``.
    """
    from moabb.analysis.meta_analysis import combine_effects, combine_pvalues

    per_pair = {}
    for c in comparisons:
        if c.stats is None:
            continue
        for s in c.stats.itertuples():
            if pipelines and not {s.pipe1, s.pipe2} <= set(pipelines):
                continue
            per_pair.setdefault((s.pipe1, s.pipe2), []).append(
                (c.label, int(s.nsub), float(s.p), float(s.smd)))
    rows = []
    for (a, b), entries in per_pair.items():
        if len(entries) < 2:
            continue
        labels, n, p, d = (list(x) for x in zip(*entries))
        n_arr, d_arr = np.array(n, float), np.array(d, float)
        p_comb = float(combine_pvalues(pd.Series(p), n_arr))
        d_comb = float(combine_effects(pd.Series(d), n_arr))
        q, i2 = heterogeneity(d_arr, n_arr)
        rows.append({"pipe1": a, "pipe2": b, "n_groups": len(entries), "groups": labels,
                     "n_subjects": n, "ps": p, "smds": d, "p": p_comb, "smd": d_comb,
                     "Q": q, "I2": i2})
    return pd.DataFrame(rows, columns=["pipe1", "pipe2", "n_groups", "groups", "n_subjects",
                                       "ps", "smds", "p", "smd", "Q", "I2"])


def smd_variance(smd, n_subjects):
    """Sampling variance of a paired standardised mean difference d = mean / sd.

    ``1 / n + d^2 / (2 n)`` (Borenstein et al. 2009, Introduction to
    Meta-Analysis, eq. 4.28 for d of paired differences).
    """
    smd, n = np.asarray(smd, float), np.asarray(n_subjects, float)
    return 1.0 / n + smd ** 2 / (2.0 * n)


def heterogeneity(smds, n_subjects):
    """Cochran's Q and I^2 (Higgins & Thompson 2002) of per-group effects.

    Returns
    -------
    Q : float
    I2 : float
        ``max(0, (Q - df) / Q)`` with df = groups - 1; 0 when Q is 0.
    """
    d = np.asarray(smds, float)
    if len(d) < 2 or not np.isfinite(d).all():
        return np.nan, np.nan
    w = 1.0 / smd_variance(d, n_subjects)
    mean = (w * d).sum() / w.sum()
    q = float((w * (d - mean) ** 2).sum())
    dof = len(d) - 1
    return q, (max(0.0, (q - dof) / q) if q > 0 else 0.0)


# ---------------------------------------------------------------------------
# Stale comparisons


def stale_comparisons(comparisons, runs) -> dict:
    """Journaled comparisons that newer runs have overtaken.

    Parameters
    ----------
    comparisons : list of dict
        ``id`` (e.g. the journal event), ``dataset``, ``evaluation`` and,
        when recorded, ``seed``, ``paradigm``.
    runs : list of dict
        ``id`` (comparable with comparison ids: later is larger), ``dataset``,
        ``evaluation``, ``seed``, ``paradigm``.

    Returns
    -------
    stale : dict
        Comparison id -> ids of the later runs on the same dataset and
        evaluation (and seed and paradigm where both record them).
    """
    out = {}
    for c in comparisons:
        newer = []
        for r in runs:
            if r["id"] <= c["id"]:
                continue
            same = all(str(c.get(k)) == str(r.get(k)) for k in ("dataset", "evaluation"))
            for k in ("seed", "paradigm"):
                if c.get(k) not in (None, "") and r.get(k) not in (None, ""):
                    same = same and str(c[k]) == str(r[k])
            if same:
                newer.append(r["id"])
        if newer:
            out[c["id"]] = newer
    return out


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


def above_chance(results, *, alpha=0.05) -> dict:
    """Which subjects beat chance, by group: ``(dataset, evaluation, seed, pipeline) ->
    {subject: bool}`` from :func:`subject_significance`; empty when the results carry
    no trial counts."""
    if results is None or len(results) == 0:
        return {}
    try:
        sig = subject_significance(results, alpha=alpha)
    except StatisticsError:  # results without trial counts
        return {}
    out = {}
    for r in sig.itertuples():
        out.setdefault((r.dataset, r.evaluation, r.seed, r.pipeline), {})[r.subject] = bool(
            r.above_chance)
    return out
