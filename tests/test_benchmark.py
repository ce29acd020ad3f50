"""The benchmark engine gives MOABB's scores, caches, resumes and scales out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chatbci.bci.benchmark import (
    RESULT_COLUMNS,
    BenchmarkError,
    parse_subjects,
    run_benchmark,
)
from chatbci.bci.datasets import SimulatedMI
from chatbci.bci.pipelines import get_pipeline

KEYS = ["subject", "session", "pipeline"]


def small_dataset(**kw):
    params = dict(n_subjects=4, n_sessions=2, n_runs=1, n_trials=12, seed=7)
    params.update(kw)
    return SimulatedMI(**params)


def moabb_results(evaluation_cls, paradigm, dataset, pipelines, tmp_path, subjects=None,
                  param_grid=None):
    """Plain MOABB on the same job, results in tmp_path."""
    import copy

    ds = copy.deepcopy(dataset)
    if subjects is not None:
        ds.subject_list = list(subjects)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = evaluation_cls(paradigm=paradigm, datasets=[ds], random_state=42,
                                    n_jobs=1, overwrite=True, hdf5_path=str(tmp_path))
        return evaluation.process(pipelines, param_grid=param_grid)


def assert_same_scores(ours, theirs):
    theirs = theirs.copy()
    theirs["subject"] = theirs["subject"].astype(str)
    theirs["session"] = theirs["session"].astype(str)
    merged = theirs.merge(ours, on=KEYS, suffixes=("_moabb", "_chatbci"))
    assert len(merged) == len(theirs) == len(ours), (len(merged), len(theirs), len(ours))
    diff = (merged["score_moabb"].astype(float) - merged["score_chatbci"].astype(float)).abs()
    assert diff.max() < 1e-6, merged.loc[diff.idxmax()]
    for col in ("samples", "samples_test", "n_classes", "channels", "n_sessions"):
        assert (merged[f"{col}_moabb"] == merged[f"{col}_chatbci"]).all(), col
    return diff.max()


@pytest.fixture(scope="module")
def four_pipelines():
    return {n: get_pipeline(n).build() for n in ["CSP+LDA", "TS+LR", "TS+SVM", "MDM"]}


def test_within_session_matches_moabb(tmp_path, four_pipelines):
    from moabb.evaluations import WithinSessionEvaluation
    from moabb.paradigms import LeftRightImagery

    ds = small_dataset()
    ours = run_benchmark(four_pipelines, dataset=ds, subjects=[1, 2],
                         evaluation="within-session", random_state=42, progress=False)
    assert list(ours.columns) == list(RESULT_COLUMNS)
    for col, dtype in RESULT_COLUMNS.items():
        if dtype != "str":
            assert ours[col].dtype == np.dtype(dtype), col
    theirs = moabb_results(WithinSessionEvaluation, LeftRightImagery(), ds, four_pipelines,
                           tmp_path, subjects=[1, 2])
    assert len(ours) == 2 * 2 * 4  # subjects x sessions x pipelines
    assert_same_scores(ours, theirs)
    # The strong subject decodes well, so this compares real, varied scores.
    assert ours["score"].max() > 0.8


def test_cross_session_matches_moabb(tmp_path, four_pipelines):
    from moabb.evaluations import CrossSessionEvaluation
    from moabb.paradigms import LeftRightImagery

    ds = small_dataset()
    pipes = {k: four_pipelines[k] for k in ("CSP+LDA", "MDM")}
    ours = run_benchmark(pipes, dataset=ds, subjects=[1, 3], evaluation="cross-session",
                         progress=False)
    theirs = moabb_results(CrossSessionEvaluation, LeftRightImagery(), ds, pipes, tmp_path,
                           subjects=[1, 3])
    assert_same_scores(ours, theirs)


def test_cross_subject_matches_moabb(tmp_path, four_pipelines):
    from moabb.evaluations import CrossSubjectEvaluation
    from moabb.paradigms import LeftRightImagery

    ds = small_dataset(n_sessions=1)
    pipes = {k: four_pipelines[k] for k in ("TS+LR", "MDM")}
    ours = run_benchmark(pipes, dataset=ds, subjects=[1, 2, 3], evaluation="cross-subject",
                         progress=False)
    theirs = moabb_results(CrossSubjectEvaluation, LeftRightImagery(), ds, pipes, tmp_path,
                           subjects=[1, 2, 3])
    assert_same_scores(ours, theirs)


def test_grid_search_matches_moabb(tmp_path):
    """A param_grid is searched by nested CV exactly as MOABB does it."""
    from moabb.evaluations import WithinSessionEvaluation
    from moabb.paradigms import LeftRightImagery

    ds = small_dataset(n_sessions=1)
    spec = get_pipeline("TS+SVM-grid")
    ours = run_benchmark([spec], dataset=ds, subjects=[1, 2], progress=False)
    theirs = moabb_results(WithinSessionEvaluation, LeftRightImagery(), ds,
                           {spec.name: spec.build()}, tmp_path, subjects=[1, 2],
                           param_grid={spec.name: spec.param_grid})
    assert_same_scores(ours, theirs)


def test_filterbank_pipeline_uses_every_band():
    """FBCSP sees all filter bands and scores as scikit-learn CV on MOABB's folds.

    Not compared with MOABB's evaluation: MOABB 1.7.2 loads only the first band
    of a filter-bank paradigm there (``make_process_pipelines(...)[0]``), so
    its FBCSP runs on 8-12 Hz alone.
    """
    from moabb.evaluations.splitters import WithinSessionSplitter
    from moabb.paradigms import FilterBankLeftRightImagery
    from sklearn.base import clone
    from sklearn.metrics import check_scoring
    from sklearn.preprocessing import LabelEncoder

    ds = small_dataset(n_sessions=1)
    spec = get_pipeline("FBCSP+SVM")
    ours = run_benchmark([spec], dataset=ds, subjects=[1], progress=False)

    paradigm = FilterBankLeftRightImagery()
    X, y, meta = paradigm.get_data(ds, subjects=[1])
    assert X.shape[-1] == len(paradigm.filters) == 6
    y = LabelEncoder().fit_transform(y)
    scores = []
    folds = WithinSessionSplitter(n_folds=5, shuffle=True, random_state=42).split(
        y, meta.reset_index(drop=True))
    for train, test in folds:
        clf = clone(spec.build()).fit(X[train], y[train])
        scores.append(check_scoring(clf, scoring="roc_auc")(clf, X[test], y[test]))
    assert abs(float(ours["score"].iloc[0]) - np.float32(np.mean(scores))) < 1e-6


def test_physionet_matches_moabb(physionet_data, tmp_path, four_pipelines):
    from moabb.evaluations import WithinSessionEvaluation
    from moabb.paradigms import LeftRightImagery

    from chatbci.bci.datasets import get_dataset

    ours = run_benchmark(four_pipelines, dataset="PhysionetMI", subjects="1-2",
                         progress=False)
    ds = get_dataset("PhysionetMI")
    ds.feet_runs = []
    theirs = moabb_results(WithinSessionEvaluation, LeftRightImagery(), ds, four_pipelines,
                           tmp_path, subjects=[1, 2])
    assert_same_scores(ours, theirs)
    # One name per dataset: the catalog name, not MOABB's code "PhysionetMotorImagery".
    assert set(ours["dataset"]) == {"PhysionetMI"}
    assert (ours["samples"] == 45).all()


def test_cache_serves_reruns_and_recomputes_only_changed_pipeline(tmp_path):
    ds = small_dataset(n_sessions=1)
    cache = tmp_path / "cache"
    first = run_benchmark("CSP+LDA,TS+LR,MDM", dataset=ds, subjects=[1, 2], cache_dir=cache,
                          progress=False)
    assert first.attrs["chatbci"]["n_computed"] == 6
    again = run_benchmark("CSP+LDA,TS+LR,MDM", dataset=ds, subjects=[1, 2],
                          cache_dir=cache, progress=False)
    assert again.attrs["chatbci"] == {**again.attrs["chatbci"], "n_cached": 6, "n_computed": 0}
    pd.testing.assert_frame_equal(first, again)

    # Change one pipeline's parameter: only it is recomputed.
    from sklearn.linear_model import LogisticRegression

    pipes = {n: get_pipeline(n).build() for n in ("CSP+LDA", "TS+LR", "MDM")}
    pipes["TS+LR"].set_params(logisticregression=LogisticRegression(C=0.1))
    changed = run_benchmark(pipes, dataset=ds, subjects=[1, 2], cache_dir=cache,
                            progress=False)
    assert changed.attrs["chatbci"]["n_computed"] == 2  # TS+LR on 2 subjects
    assert changed.attrs["chatbci"]["n_cached"] == 4
    same = changed[changed.pipeline != "TS+LR"].reset_index(drop=True)
    pd.testing.assert_frame_equal(same, first[first.pipeline != "TS+LR"].reset_index(drop=True))

    # A different random_state or dataset configuration never hits the cache.
    other = run_benchmark("CSP+LDA", dataset=ds, subjects=[1], cache_dir=cache,
                          random_state=0, progress=False)
    assert other.attrs["chatbci"]["n_cached"] == 0
    other = run_benchmark("CSP+LDA", dataset=small_dataset(n_sessions=1, seed=8),
                          subjects=[1], cache_dir=cache, progress=False)
    assert other.attrs["chatbci"]["n_cached"] == 0


def test_killed_run_resumes_where_it_stopped(tmp_path):
    """SIGKILL a benchmark half-way; the re-run keeps what was done."""
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        from chatbci.bci.benchmark import run_benchmark
        from chatbci.bci.datasets import SimulatedMI
        ds = SimulatedMI(n_subjects=8, n_sessions=1, n_runs=1, n_trials=12, seed=7)
        run_benchmark("CSP+LDA,TS+LR,MDM", dataset=ds, cache_dir={str(cache)!r},
                      n_jobs=1, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy())
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            done = list(cache.glob("*/*/subject-*.json"))
            if len(done) >= 3 or proc.poll() is not None:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = {p.name for p in cache.glob("*/*/subject-*.json")}
    assert done, "the killed run wrote no result before it was killed"

    ds = SimulatedMI(n_subjects=8, n_sessions=1, n_runs=1, n_trials=12, seed=7)
    resumed = run_benchmark("CSP+LDA,TS+LR,MDM", dataset=ds, cache_dir=cache,
                            progress=False)
    info = resumed.attrs["chatbci"]
    assert info["n_cached"] >= 3 and info["n_cached"] + info["n_computed"] == 24
    assert info["n_computed"] > 0, "the run was killed after finishing; make it slower"
    fresh = run_benchmark("CSP+LDA,TS+LR,MDM", dataset=ds, progress=False)
    pd.testing.assert_frame_equal(resumed.drop(columns="time"), fresh.drop(columns="time"))


def test_dask_cluster_gives_same_scores(tmp_path):
    distributed = pytest.importorskip("distributed")
    import joblib

    ds = small_dataset(n_sessions=1)
    local = run_benchmark("CSP+LDA,MDM", dataset=ds, subjects=[1, 2, 3], progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        with joblib.parallel_config(backend="dask"):
            remote = run_benchmark("CSP+LDA,MDM", dataset=ds, subjects=[1, 2, 3],
                                   n_jobs=-1, progress=False)
        # The work really ran on the cluster's workers.
        assert sum(client.run(lambda: 1).values()) == 2
    pd.testing.assert_frame_equal(local.drop(columns="time"), remote.drop(columns="time"))


def test_parallel_subjects_match_sequential():
    ds = small_dataset(n_sessions=1)
    seq = run_benchmark("CSP+LDA,TS+LR", dataset=ds, subjects=[1, 2, 3], n_jobs=1,
                        progress=False)
    par = run_benchmark("CSP+LDA,TS+LR", dataset=ds, subjects=[1, 2, 3], n_jobs=2,
                        progress=False)
    pd.testing.assert_frame_equal(seq.drop(columns="time"), par.drop(columns="time"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(evaluation="leave-one-out"), "within-session"),
    (dict(subjects="1-99"), "valid subjects"),
    (dict(subjects="one"), "1-6"),
    (dict(pipelines="CSP+LDA,NotAPipeline"), r"NotAPipeline.*CSP\+LDA"),
    (dict(paradigm="p300"), "left_right"),
])
def test_bad_requests_get_clear_errors(kwargs, message):
    args = dict(pipelines="CSP+LDA", dataset=small_dataset(), progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        run_benchmark(**args)


def test_cross_session_needs_two_sessions():
    with pytest.raises(BenchmarkError, match="at least 2"):
        run_benchmark("CSP+LDA", dataset=small_dataset(n_sessions=1),
                      evaluation="cross-session", progress=False)


def test_parse_subjects():
    assert parse_subjects("1-3,5", range(1, 10)) == [1, 2, 3, 5]
    assert parse_subjects(4, range(1, 10)) == [4]
    assert parse_subjects(None, [1, 2]) == [1, 2]


def test_cli_bench_writes_moabb_columns_and_prints_statistics(tmp_path, capsys):
    from chatbci.cli import main

    out = tmp_path / "results.csv"
    code = main(["bench", "--subjects", "1-3", "--pipelines", "CSP+LDA,MDM",
                 "--cache-dir", str(tmp_path / "cache"), "--output", str(out),
                 "--n-jobs", "1", "--quiet"])
    assert code == 0
    df = pd.read_csv(out)
    for col in ["score", "time", "samples", "subject", "session", "channels",
                "n_sessions", "dataset", "pipeline"]:
        assert col in df.columns
    assert set(df["pipeline"]) == {"CSP+LDA", "MDM"}
    text = capsys.readouterr().out
    assert "±" in text and "p = " in text and "min p" in text and "CSP+LDA" in text


def test_cli_errors_are_one_clear_line(capsys):
    from chatbci.cli import main

    code = main(["bench", "--pipelines", "CSP+LDA,Foo", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Foo" in err and "CSP+LDA" in err and "Traceback" not in err


def test_cli_datasets_lists_the_catalog(capsys):
    import json

    from chatbci.cli import main

    assert main(["datasets"]) == 0
    text = capsys.readouterr().out
    assert "PhysionetMI" in text and "SimulatedMI" in text and "BNCI2014_001" in text
    assert main(["datasets", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    physionet = next(r for r in records if r["name"] == "PhysionetMI")
    assert physionet["n_subjects"] == 109 and physionet["n_channels"] == 64


def test_progress_callback_and_stop_keep_finished_subjects(tmp_path):
    from chatbci.bci.benchmark import BenchmarkStopped

    ds = small_dataset(n_sessions=1)
    seen = []
    with pytest.raises(BenchmarkStopped, match="resumes"):
        run_benchmark("CSP+LDA,MDM", dataset=ds, cache_dir=tmp_path, progress=False,
                      on_progress=lambda done, total, text: seen.append((done, total)),
                      should_stop=lambda: len(seen) >= 2)
    assert seen[:2] == [(2, 8), (4, 8)]
    resumed = run_benchmark("CSP+LDA,MDM", dataset=ds, cache_dir=tmp_path, progress=False)
    assert resumed.attrs["chatbci"]["n_cached"] == 4
    assert resumed.attrs["chatbci"]["n_computed"] == 4
