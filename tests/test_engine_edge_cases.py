"""Engine edge cases found by running MOABB's own pipelines and evaluations."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
from moabb.datasets import BNCI2014_001, PhysionetMI
from sklearn.base import BaseEstimator, TransformerMixin

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
