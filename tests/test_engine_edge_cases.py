"""Engine edge cases found by running MOABB's own pipelines and evaluations."""

from __future__ import annotations

import copy
import json
import os
import stat
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from moabb.datasets import BNCI2014_001, PhysionetMI
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import make_pipeline

from chatbci.bci.benchmark import run_benchmark
from chatbci.bci.datasets import SimulatedMI, display_name
from chatbci.bci.pipelines import load_pipeline


# ----------------------------------------------------------------------------
# One name per dataset


@pytest.mark.parametrize("given, shown", [
    ("PhysionetMotorImagery", "PhysionetMI"),  # MOABB's code, in old journals
    ("PhysionetMI", "PhysionetMI"),
    ("physionetmi", "PhysionetMI"),
    ("SimulatedMI-6b48168cb2", "SimulatedMI"),  # code with the parameter hash
    ("BNCI2014-001", "BNCI2014_001"),
    ("MyLabDataset", "MyLabDataset"),  # not catalogued: kept as given
])
def test_display_name_maps_every_old_name_to_the_catalog_name(given, shown):
    assert display_name(given) == shown


def test_display_name_of_instances_and_classes():
    assert display_name(PhysionetMI()) == "PhysionetMI"
    assert display_name(BNCI2014_001) == "BNCI2014_001"
    small, default = SimulatedMI(n_subjects=3), SimulatedMI()
    assert display_name(small) == display_name(default) == "SimulatedMI"
    # Told apart only on request, and then the suffix says what it is.
    a, b = (display_name(d, distinguish=True) for d in (small, default))
    assert a != b and a.startswith("SimulatedMI (parameters ")
    assert display_name(PhysionetMI(), distinguish=True) == "PhysionetMI"


# ----------------------------------------------------------------------------
# Steps are called as scikit-learn's Pipeline calls them: MOABB's pipelines run

MOABB_PIPELINES = Path(__file__).parent / "data" / "moabb_pipelines"


def small_dataset(**kw):
    params = dict(n_subjects=3, n_sessions=1, n_runs=1, n_trials=12, seed=7)
    params.update(kw)
    return SimulatedMI(**params)


def moabb_scores(evaluation_cls, dataset, pipelines, tmp_path, subjects, param_grid=None):
    """Plain MOABB on the same job (its own folds and scorer), results in tmp_path."""
    from moabb.paradigms import LeftRightImagery

    ds = copy.deepcopy(dataset)
    ds.subject_list = list(subjects)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = evaluation_cls(paradigm=LeftRightImagery(), datasets=[ds],
                                    random_state=42, n_jobs=1, overwrite=True,
                                    hdf5_path=str(tmp_path / "moabb"))
        return evaluation.process(pipelines, param_grid=param_grid)


def assert_same_scores(ours, theirs, tol=1e-9):
    keys = ["subject", "session", "pipeline"]
    theirs = theirs.assign(subject=theirs["subject"].astype(str),
                           session=theirs["session"].astype(str))
    merged = theirs.merge(ours, on=keys, suffixes=("_moabb", "_chatbci"))
    assert len(merged) == len(theirs) == len(ours) > 0
    diff = (merged["score_moabb"].astype(float) - merged["score_chatbci"].astype(float)).abs()
    assert diff.max() <= tol, merged.loc[diff.idxmax()]
    # Real, varied scores: not all chance.
    assert merged["score_chatbci"].astype(float).std() > 0


def test_moabb_logvar_yml_scores_as_in_moabb(tmp_path):
    """MOABB's own LogVar.yml: LogVariance.fit(X, y) has no default for y."""
    from moabb.evaluations import WithinSessionEvaluation

    spec = load_pipeline(MOABB_PIPELINES / "LogVar.yml")
    ds = small_dataset()
    ours = run_benchmark([spec], dataset=ds, subjects=[1, 2], progress=False)
    theirs = moabb_scores(WithinSessionEvaluation, ds, {spec.name: spec.build()}, tmp_path,
                          [1, 2])
    assert_same_scores(ours, theirs)


def test_logvariance_lda_and_augmented_tangent_space_svc_score_as_in_moabb(tmp_path):
    """Stateless heads needing y (LogVariance, AugmentedDataset), no grid."""
    from moabb.evaluations import WithinSessionEvaluation
    from moabb.pipelines.features import AugmentedDataset, LogVariance
    from pyriemann.estimation import Covariances
    from pyriemann.tangentspace import TangentSpace
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC

    pipes = {
        "LogVar+LDA": make_pipeline(LogVariance(), LinearDiscriminantAnalysis()),
        "ACM+TS+SVC": make_pipeline(AugmentedDataset(order=3, lag=2),
                                    Covariances("oas"), TangentSpace(metric="riemann"),
                                    SVC(kernel="rbf")),
    }
    ds = small_dataset()
    ours = run_benchmark(pipes, dataset=ds, subjects=[1, 2], progress=False)
    theirs = moabb_scores(WithinSessionEvaluation, ds, pipes, tmp_path, [1, 2])
    assert_same_scores(ours, theirs)


def test_fit_transform_step_calls_steps_as_pipeline_does():
    from chatbci.bci._sharing import fit_transform_step

    calls = []

    class OnlyFit(BaseEstimator):  # no fit_transform: fit(X, y) then transform
        def fit(self, X, y):
            calls.append(("fit", y))
            return self

        def transform(self, X):
            return X + 1

    class OwnFitTransform(BaseEstimator):  # its fit_transform is used as is
        def fit(self, X, y):
            raise AssertionError("Pipeline would call fit_transform")

        def fit_transform(self, X, y):
            calls.append(("fit_transform", y))
            return X * 2

    X, y = np.ones((4, 2)), np.array([0, 1, 0, 1])
    assert (fit_transform_step(OnlyFit(), X, y) == 2).all()
    assert (fit_transform_step(OwnFitTransform(), X, y) == 2).all()
    assert [c[0] for c in calls] == ["fit", "fit_transform"]
    assert all(c[1] is y for c in calls)


def test_a_head_that_changes_the_number_of_epochs_is_not_shared():
    from chatbci.bci._sharing import StatelessCache

    class DropFirst(BaseEstimator, TransformerMixin):
        def fit(self, X, y):
            return self

        def transform(self, X):
            return X[1:]

    X, y = np.ones((4, 2)), np.array([0, 1, 0, 1])
    key, Xh = StatelessCache(X, y).transform([("dropfirst", DropFirst())])
    assert Xh is None


# ----------------------------------------------------------------------------
# Cross-subject with a cache: the subject numbers MOABB's metadata gives are
# numpy integers; the cache writes them through its one JSON encoder.


def test_cross_subject_with_cache_scores_as_moabb_and_is_served_from_cache(tmp_path):
    from moabb.evaluations import CrossSubjectEvaluation

    from chatbci.bci.pipelines import get_pipeline

    pipes = {n: get_pipeline(n).build() for n in ("CSP+LDA", "MDM")}
    ds = small_dataset()
    cache = tmp_path / "cache"
    first = run_benchmark(pipes, dataset=ds, subjects=[1, 2, 3], evaluation="cross-subject",
                          cache_dir=cache, progress=False)
    theirs = moabb_scores(CrossSubjectEvaluation, ds, pipes, tmp_path, [1, 2, 3])
    assert_same_scores(first, theirs)
    assert first.attrs["chatbci"]["n_computed"] == 6
    again = run_benchmark(pipes, dataset=ds, subjects=[1, 2, 3], evaluation="cross-subject",
                          cache_dir=cache, progress=False)
    assert (again.attrs["chatbci"]["n_cached"], again.attrs["chatbci"]["n_computed"]) == (6, 0)
    pd.testing.assert_frame_equal(first, again)


def test_cache_json_encoder_takes_numpy_values():
    from chatbci.bci.benchmark import _to_json

    rows = [{"subject": np.int64(3), "score": np.float32(0.5), "n": np.arange(2)}]
    assert json.loads(_to_json(rows)) == [{"subject": 3, "score": 0.5, "n": [0, 1]}]
    with pytest.raises(TypeError, match="object is not JSON serializable|not JSON"):
        _to_json([object()])


def test_cache_files_follow_the_umask(tmp_path):
    ds = small_dataset()
    for umask, mode in ((0o022, 0o644), (0o002, 0o664)):
        old = os.umask(umask)
        try:
            run_benchmark("MDM", dataset=ds, subjects=[1], cache_dir=tmp_path / oct(umask),
                          progress=False)
        finally:
            os.umask(old)
        files = [p for p in (tmp_path / oct(umask)).rglob("*") if p.is_file()]
        results = [p for p in files if "store" not in p.relative_to(tmp_path).parts]
        assert len(results) == 2  # context.json and the subject's result
        # The intermediate store (epochs, covariances) follows the umask too.
        assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {mode}


def test_cache_key_changes_with_a_data_files_size_or_mtime(tmp_path, monkeypatch):
    """PhysionetMI's files are stat-ed (not read) into the key of each subject."""
    from moabb.paradigms import LeftRightImagery

    from chatbci.bci.benchmark import _result_cache
    from chatbci.bci.datasets import get_dataset, physionet_files

    monkeypatch.setenv("MNE_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("MNE_DATASETS_EEGBCI_PATH", raising=False)
    ds, par = get_dataset("PhysionetMI"), LeftRightImagery()
    for subject in (1, 2):
        for path in physionet_files(ds, subject):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"0" * 100)

    def units():
        cache = _result_cache(tmp_path / "cache", ds, par, "within-session", 42, [1, 2])
        return cache.unit(1), cache.unit(2)

    before = units()
    assert before[0] != before[1]
    path = physionet_files(ds, 1)[0]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    touched = units()
    assert touched[0] != before[0] and touched[1] == before[1]  # only subject 1
    path.write_bytes(b"0" * 99)
    assert units()[0] not in (before[0], touched[0])
    # Cross-subject: every fold trains on every subject, so the context changes.
    keys = {_result_cache(tmp_path / "cache", ds, par, "cross-subject", 42, [1, 2]).context_key}
    physionet_files(ds, 2)[0].write_bytes(b"1" * 7)
    keys.add(_result_cache(tmp_path / "cache", ds, par, "cross-subject", 42, [1, 2]).context_key)
    assert len(keys) == 2


# ----------------------------------------------------------------------------
# The cache key holds the code of estimators that no library versions

TRANSFORMER = '''
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class BandLogPower(BaseEstimator, TransformerMixin):
    def __init__(self, scale=1.0):
        self.scale = scale

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return {body}
'''


def _user_module(tmp_path, monkeypatch, body):
    import importlib

    path = tmp_path / "user_code" / "my_features.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(TRANSFORMER.format(body=body))
    monkeypatch.syspath_prepend(str(path.parent))
    importlib.invalidate_caches()
    if "my_features" in sys.modules:
        return importlib.reload(sys.modules["my_features"])
    return importlib.import_module("my_features")


def test_edited_user_transformer_is_recomputed_not_served_from_cache(tmp_path, monkeypatch):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.pipeline import make_pipeline

    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no stale .pyc on reload
    ds, cache = small_dataset(), tmp_path / "cache"

    def run(module):
        pipe = make_pipeline(module.BandLogPower(), LinearDiscriminantAnalysis())
        return run_benchmark({"Mine": pipe}, dataset=ds, subjects=[1, 2], cache_dir=cache,
                             progress=False)

    module = _user_module(tmp_path, monkeypatch, "self.scale * np.log(np.var(X, -1))")
    first = run(module)
    assert first.attrs["chatbci"]["n_computed"] == 2
    assert run(module).attrs["chatbci"]["n_cached"] == 2  # unchanged code: served
    # Same class name, same parameters, other code (first half of each epoch).
    module = _user_module(tmp_path, monkeypatch,
                          "self.scale * np.log(np.var(X[..., : X.shape[-1] // 2], -1))")
    edited = run(module)
    assert edited.attrs["chatbci"]["n_computed"] == 2
    assert edited.attrs["chatbci"]["n_cached"] == 0
    assert not np.allclose(first["score"], edited["score"])
    sys.modules.pop("my_features", None)


def test_code_identity_versions_libraries_and_hashes_user_code():
    from sklearn.svm import SVC

    from chatbci.bci.pipelines import code_identity, get_pipeline

    library = code_identity(get_pipeline("FBCSP+SVM").build())
    assert library["code"] == {}
    assert {"scikit-learn", "pyriemann", "moabb"} <= set(library["packages"])

    class Scaled(BaseEstimator, TransformerMixin):
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return X * 2

    one = code_identity(make_pipeline(Scaled(), SVC()))
    assert list(one["code"]) == [f"{__name__}.{Scaled.__qualname__}"]

    class Scaled(BaseEstimator, TransformerMixin):  # noqa: F811 - redefined, as in a notebook
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return X * 3

    other = code_identity(make_pipeline(Scaled(), SVC()))
    assert list(other["code"]) == list(one["code"]) and other["code"] != one["code"]


# ----------------------------------------------------------------------------
# Unseeded randomness and filter banks: warned, noted for the methods


def test_unseeded_pipeline_warns_is_noted_and_can_be_seeded(tmp_path):
    from pyriemann.estimation import Covariances
    from pyriemann.tangentspace import TangentSpace
    from sklearn.ensemble import RandomForestClassifier

    from chatbci.bci.benchmark import UnseededWarning
    from chatbci.bci.pipelines import seed_pipeline, unseeded_randomness

    forest = make_pipeline(Covariances("oas"), TangentSpace(),
                           RandomForestClassifier(n_estimators=5))
    ds, cache = small_dataset(), tmp_path / "cache"
    with pytest.warns(UnseededWarning, match=r"random_state: 42.*seed_pipeline"):
        first = run_benchmark({"TS+RF": forest}, dataset=ds, subjects=[1, 2],
                              cache_dir=cache, progress=False)
    (note,) = first.attrs["chatbci"]["engine_notes"]
    assert note["kind"] == "unseeded" and note["pipeline"] == "TS+RF"
    assert "RandomForestClassifier" in note["text"] and note["text"].endswith(".")
    # Cached (one draw), and still marked when served from the cache.
    with pytest.warns(UnseededWarning):
        again = run_benchmark({"TS+RF": forest}, dataset=ds, subjects=[1, 2],
                              cache_dir=cache, progress=False)
    assert again.attrs["chatbci"]["n_cached"] == 2
    assert again.attrs["chatbci"]["engine_notes"] == [note]

    seeded = seed_pipeline(forest, 42)
    assert unseeded_randomness(seeded) == []
    assert forest.steps[-1][1].random_state is None  # the original is untouched
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnseededWarning)
        runs = [run_benchmark({"TS+RF": seeded}, dataset=ds, subjects=[1, 2],
                              progress=False) for _ in range(2)]
    assert runs[0].attrs["chatbci"]["engine_notes"] == []
    assert (runs[0]["score"] == runs[1]["score"]).all()  # reproducible now


def test_unseeded_randomness_finds_what_really_draws_random_numbers():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    from chatbci.bci.pipelines import (
        PipelineError,
        PipelineSpec,
        get_pipeline,
        seed_pipeline,
        unseeded_randomness,
    )

    # Canonical pipelines: nothing random except FBCSP's mutual information.
    for name in ("CSP+LDA", "TS+LR", "TS+SVM", "MDM", "TS+SVM-grid", "ACM+TS+SVM"):
        spec = get_pipeline(name)
        assert unseeded_randomness(spec.build(), spec.param_grid) == [], name
    spec = get_pipeline("FBCSP+SVM")
    (found,) = unseeded_randomness(spec.build(), spec.param_grid)
    assert found["what"] == "mutual_info_classif" and found["step"] == "SelectKBest"
    assert unseeded_randomness(seed_pipeline(spec.build())) == []
    # The seed the warning offers can be written in the YAML file itself.
    data = spec.to_dict()
    data["pipeline"][1]["parameters"]["score_func"] = yaml.safe_load(found["how"])["score_func"]
    seeded = PipelineSpec.model_validate(data)
    assert unseeded_randomness(seeded.build()) == []
    assert PipelineSpec.from_yaml(seeded.to_yaml()).digest() == seeded.digest() != spec.digest()
    with pytest.raises(PipelineError, match="seed it as"):
        data["pipeline"][1]["parameters"]["score_func"] = {"name": "mutual_info_classif",
                                                           "n_neighbors": 5}
        PipelineSpec.model_validate(data)
    # random_state is used only under some parameters, grids included.
    assert unseeded_randomness(LogisticRegression(solver="saga"))
    assert not unseeded_randomness(LogisticRegression())
    assert unseeded_randomness(SVC(), {"probability": [False, True]})
    assert not unseeded_randomness(RandomForestClassifier(), {"random_state": [0, 1]})
    assert unseeded_randomness(RandomForestClassifier(random_state=0),
                               {"random_state": [0, None]})


def test_filter_bank_pipelines_carry_the_moabb_difference_note():
    from chatbci.bci.benchmark import UnseededWarning

    ds = small_dataset()
    with pytest.warns(UnseededWarning, match="score_func: {name: mutual_info_classif"):
        df = run_benchmark("FBCSP+SVM,CSP+LDA", dataset=ds, subjects=[1], progress=False)
    notes = df.attrs["chatbci"]["engine_notes"]
    (fb,) = [n for n in notes if n["kind"] == "filter_bank"]
    assert fb["pipeline"] == "FBCSP+SVM"
    assert "all 6 bands" in fb["text"] and "MOABB 1.7.2" in fb["text"]
    assert "8-12 Hz alone" in fb["text"]
    assert not [n for n in notes if n["pipeline"] == "CSP+LDA"]


def test_filter_bank_claim_holds_for_the_installed_moabb():
    """MOABB's evaluation loads data with the first filter's process pipeline only."""
    import inspect

    from moabb.evaluations import base

    source = inspect.getsource(base.BaseEvaluation._process_parallel)
    assert "make_process_pipelines(" in source and ")[0]" in source
    assert '"process_pipelines": None if requires_epochs else [process_pipeline]' in \
        inspect.getsource(base.BaseEvaluation._load_data)


def test_benchmark_results_name_the_dataset_by_its_display_name():
    df = run_benchmark("MDM", dataset=small_dataset(), subjects=[1], progress=False)
    assert set(df["dataset"]) == {"SimulatedMI"}


# ----------------------------------------------------------------------------
# MOABB's pipeline files: which run, and refusals that name what is missing

MOABB_SOURCE = ("https://github.com/NeuroTechX/moabb at commit 1d8a6382 (copied in "
                "tests/data/moabb_pipelines)")


def test_docs_list_of_moabb_pipelines_is_current():
    from chatbci.bci.pipelines import moabb_pipelines_markdown

    page = Path(__file__).parents[1] / "docs" / "moabb-pipelines.md"
    expected = moabb_pipelines_markdown(MOABB_PIPELINES, MOABB_SOURCE)
    assert page.read_text() == expected, (
        "docs/moabb-pipelines.md is out of date: regenerate it with "
        "moabb_pipelines_markdown(tests/data/moabb_pipelines, MOABB_SOURCE)")


def test_moabb_motor_imagery_yaml_files_load_and_refusals_name_the_missing_part():
    from chatbci.bci.pipelines import PipelineError, moabb_pipeline_support

    rows = {r["file"]: r for r in moabb_pipeline_support(MOABB_PIPELINES)}
    for name, row in rows.items():
        if row["motor_imagery"] and name.endswith(".yml"):
            assert row["runs"], (name, row["reason"])
        if not row["motor_imagery"]:
            assert not row["runs"] and row["reason"].startswith("not motor imagery")
    assert "XdawnCovariances" in rows["XdawnCov_MDM.yml"]["reason"]
    with pytest.raises(PipelineError, match=r"TRCSP \(moabb\.pipelines\.csp\)"):
        load_pipeline(MOABB_PIPELINES / "WTRCSP.py")
    with pytest.raises(PipelineError, match=r"GridSearchCV.*'FBCSP\+SVM-grid'"):
        load_pipeline(MOABB_PIPELINES / "FBCSP.py")
    assert rows["FBCSP.py"]["name"] == "FBCSP + optSVM"


def test_engine_notes_reach_the_journaled_run_payload(tmp_path):
    from chatbci.assistant.tools import TOOLS, ToolContext
    from chatbci.workspace import Workspace
    from chatbci.workspace.events import RunPayload

    ws = Workspace.create(tmp_path / "ws", title="t", goal="g")
    try:
        result = TOOLS["run_benchmark"].run(ToolContext(ws, n_jobs=1),
                                            {"pipelines": ["FBCSP+SVM"], "subjects": "1"})
    finally:
        ws.close()
    kinds = sorted(n["kind"] for n in result.run["engine_notes"])
    assert kinds == ["filter_bank", "unseeded"]
    assert all(set(n) == {"kind", "pipeline", "text"} for n in result.run["engine_notes"])
    RunPayload.model_validate(result.run)  # the journal's schema for run events
    assert result.summary["engine_notes"] == result.run["engine_notes"]
    assert result.summary["dataset"] == "SimulatedMI"  # what the chat shows
