"""FgMDM on a shared tangent space gives pyRiemann's FgMDM (chatbci.bci._fgmdm)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pyriemann.classification import FgMDM
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from chatbci.bci import _fgmdm, _sharing
from chatbci.bci.benchmark import run_benchmark
from chatbci.bci.pipelines import get_pipeline


def sklearn_coef(X, y):
    return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X, y).coef_


@pytest.mark.parametrize("n_classes", [2, 3, 4])
def test_lda_coefficients_equal_scikit_learns(n_classes):
    rng = np.random.default_rng(n_classes)
    n, p = 40, 600
    X = rng.standard_normal((n, p)) * rng.uniform(0.01, 5.0, p)  # uneven feature scales
    y = np.repeat(np.arange(n_classes), n // n_classes + 1)[:n]
    rng.shuffle(y)
    X[y == 1, :20] += 1.5
    X[:, 7] = 3.0  # a constant feature (StandardScaler keeps its scale at 1)
    got = _fgmdm.lda_lsqr_auto_coef(X, y)
    ref = sklearn_coef(X, y)
    assert got.shape == ref.shape == ((1, p) if n_classes == 2 else (n_classes, p))
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_lda_reformulation_declines_what_it_cannot_reproduce():
    rng = np.random.default_rng(0)
    y = np.arange(30) % 2
    assert _fgmdm.lda_lsqr_auto_coef(rng.standard_normal((30, 20)), y) is None  # n >= p
    y_one = np.r_[np.zeros(29), 1]  # a class with one epoch
    assert _fgmdm.lda_lsqr_auto_coef(rng.standard_normal((30, 200)), y_one) is None
    assert _fgmdm.lda_lsqr_auto_coef(rng.standard_normal((30, 200)), np.zeros(30)) is None


def test_applies_only_to_plain_fgmdm():
    class MyFgMDM(FgMDM):
        pass

    assert _fgmdm.applies(FgMDM(metric="riemann"))
    assert not _fgmdm.applies(MyFgMDM(metric="riemann"))  # its fit may differ
    assert not _fgmdm.applies(FgMDM(metric="riemann", tsupdate=True))
    assert not _fgmdm.applies(FgMDM(metric={"mean": "riemann", "dist": "riemann",
                                            "map": "riemann"}))
    assert not _fgmdm.applies(LinearDiscriminantAnalysis())


@pytest.fixture
def subject_covariances(physionet_data):
    """OAS covariances of PhysioNet subject 1 (64 channels), left vs right hand."""
    from moabb.paradigms import LeftRightImagery
    from pyriemann.estimation import Covariances

    from chatbci.bci.datasets import get_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X, labels, _ = LeftRightImagery().get_data(get_dataset("PhysionetMI"), [1])
    y = (labels == labels[0]).astype(int)
    return Covariances(estimator="oas").fit_transform(X), y


def test_fitted_fgmdm_predicts_as_pyriemanns_on_real_folds(subject_covariances):
    from sklearn.model_selection import StratifiedKFold

    covs, y = subject_covariances
    folds = StratifiedKFold(5, shuffle=True, random_state=42).split(covs, y)
    for train, test in folds:
        ref = FgMDM(metric="riemann").fit(covs[train], y[train])
        ts = _fgmdm.tangent_space_step(FgMDM())
        ts_train = ts.fit_transform(covs[train])
        fast = _fgmdm.fit_fgmdm(FgMDM(metric="riemann"), ts, ts_train, y[train])
        assert type(fast) is FgMDM
        np.testing.assert_allclose(fast._fgda._W, ref._fgda._W, atol=1e-9)
        np.testing.assert_allclose(fast.predict_proba(covs[test]),
                                   ref.predict_proba(covs[test]), rtol=0, atol=1e-9)
        assert (fast.predict(covs[test]) == ref.predict(covs[test])).all()


@pytest.fixture
def fgmdm_calls(monkeypatch):
    """Counts fits by the shared-tangent-space path (it still runs, unchanged)."""
    calls = {"fit": 0, "rebuilt": 0}
    fit, rebuild = _fgmdm.fit_fgmdm, _fgmdm.fitted_tangent_space

    def counting_fit(*args):
        calls["fit"] += 1
        return fit(*args)

    def counting_rebuild(*args):
        calls["rebuilt"] += 1
        return rebuild(*args)

    monkeypatch.setattr(_fgmdm, "fit_fgmdm", counting_fit)
    monkeypatch.setattr(_fgmdm, "fitted_tangent_space", counting_rebuild)
    return calls


def test_benchmark_fgmdm_matches_moabb_and_reuses_the_stored_tangent_space(
        physionet_data, tmp_path, fgmdm_calls):
    from moabb.evaluations import WithinSessionEvaluation
    from moabb.paradigms import LeftRightImagery

    from chatbci.bci.datasets import get_dataset

    from test_benchmark import assert_same_scores, moabb_results

    cache = tmp_path / "cache"
    # As a design session adds them: TS+LR first, then FgMDM in a new call.
    run_benchmark("TS+LR", dataset="PhysionetMI", subjects="1-2", cache_dir=cache,
                  progress=False)
    ours = run_benchmark("FgMDM", dataset="PhysionetMI", subjects="1-2", cache_dir=cache,
                         progress=False)
    assert fgmdm_calls == {"fit": 10, "rebuilt": 10}  # 2 subjects x 5 folds, from the store
    ds = get_dataset("PhysionetMI")
    ds.feet_runs = []
    theirs = moabb_results(WithinSessionEvaluation, LeftRightImagery(), ds,
                           {"FgMDM": get_pipeline("FgMDM").build()}, tmp_path / "moabb",
                           subjects=[1, 2])
    assert_same_scores(ours, theirs)


def test_stored_prefix_without_reference_still_gives_fgmdm(physionet_data, tmp_path,
                                                             fgmdm_calls, monkeypatch):
    """A cache written before references were stored: the reference is fitted again."""
    is_tangent_space = _sharing._is_tangent_space
    # Store TS+LR's prefixes as older versions did: arrays without the reference.
    monkeypatch.setattr(_sharing, "_is_tangent_space", lambda est: False)
    cache = tmp_path / "cache"
    run_benchmark("TS+LR", dataset="PhysionetMI", subjects="1", cache_dir=cache,
                  progress=False)
    monkeypatch.setattr(_sharing, "_is_tangent_space", is_tangent_space)
    old = run_benchmark("FgMDM", dataset="PhysionetMI", subjects="1", cache_dir=cache,
                        progress=False)
    assert fgmdm_calls == {"fit": 5, "rebuilt": 0}
    fresh = run_benchmark("FgMDM", dataset="PhysionetMI", subjects="1", progress=False)
    np.testing.assert_allclose(old["score"], fresh["score"], atol=1e-12)


def test_few_channels_fit_fgmdm_as_pyriemann_does(fgmdm_calls):
    """More epochs than tangent features: the LDA gains nothing, FgMDM is fitted as is."""
    from pyriemann.datasets import make_matrices

    covs = make_matrices(60, 4, "spd", np.random.RandomState(3))  # 4 channels: 10 tangent features
    y = np.arange(60) % 2
    runner = _sharing.FoldRunner(covs[:40], y[:40], [covs[40:]])
    est, X_tests, _ = runner.fit([("fgmdm", FgMDM(metric="riemann"))])
    ref = FgMDM(metric="riemann").fit(covs[:40], y[:40])
    np.testing.assert_array_equal(est.predict_proba(X_tests[0]), ref.predict_proba(covs[40:]))
    assert fgmdm_calls["fit"] == 0 and list(runner._cache) == [()]  # no tangent space fitted
