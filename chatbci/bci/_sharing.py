"""Fit many pipelines on one fold while doing shared work only once.

MOABB evaluates each pipeline independently: with CSP+LDA, TS+LR, TS+SVM and
MDM, the per-epoch covariance matrices are estimated twenty times per subject
(4 pipelines x 5 folds) and the tangent space of TS+LR and TS+SVM is fitted
twice per fold. Both are wasted work:

- a *stateless* step (its transform of one epoch does not depend on training
  data, e.g. :class:`pyriemann.estimation.Covariances`) gives the same output
  whether it sees one fold or the whole subject, so it is applied once per
  subject (:class:`StatelessCache`);
- a *fitted prefix* (the same transformers with the same parameters, fitted
  on the same training fold) gives the same output for every pipeline that
  starts with it, so it is fitted once per fold (:class:`FoldRunner`).

Given a :class:`~chatbci.bci.store.Store` and the identity of the data, both
also persist what they computed (``head`` and ``prefix`` entries), so the next
benchmark of the same subjects (a new pipeline of a design session) reads
them instead of computing them again.

Both keep the numbers of the unshared computation: the same estimators see
the same inputs, only fewer times, and every step is called the way
scikit-learn's :class:`~sklearn.pipeline.Pipeline` calls it
(:func:`fit_transform_step`), so a transformer whose ``fit`` requires ``y``
(MOABB's ``LogVariance``, ``AugmentedDataset``) runs here as it runs in MOABB.
"""

from __future__ import annotations

import hashlib
from time import perf_counter

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from . import _fgmdm
from .pipelines import is_stateless


def step_key(estimator) -> str:
    """Identity of an unfitted estimator: its class and all its parameters."""
    return joblib.hash((type(estimator).__module__, type(estimator).__qualname__,
                        clone(estimator).get_params(deep=True)))


_IDENTITIES: dict = {}


def step_identity(estimator) -> str:
    """:func:`step_key` plus the estimator's code identity: the key of stored outputs.

    A user's transformer edited in place (same class name and parameters,
    other code) must not be served the stored outputs of its old code, so
    the key holds :func:`~chatbci.bci.pipelines.code_identity` (package
    versions, hashes of user code). That costs milliseconds, so it is
    computed once per class object and parameters in a process (reloading
    an edited module makes a new class object).
    """
    key = step_key(estimator)
    memo = (type(estimator), key)
    hit = _IDENTITIES.get(memo)
    if hit is None:
        from .pipelines import code_identity

        hit = _IDENTITIES[memo] = key + joblib.hash(code_identity(estimator))[:16]
    return hit


def fit_transform_step(estimator, X, y):
    """Fit a transformer and transform its training data, as Pipeline does.

    Mirrors scikit-learn's ``Pipeline.fit`` for an intermediate step: its own
    ``fit_transform`` when it has one (it may differ from ``fit`` then
    ``transform``), else ``fit(X, y).transform(X)``; ``y`` is always passed,
    positionally, so ``fit(self, X, y)`` signatures without a default work.

    Parameters
    ----------
    estimator : transformer
        An unfitted (cloned) step; fitted in place.
    X : array-like
        Training data of the step.
    y : array-like | None
        Training labels.

    Returns
    -------
    Xt : array-like
        The transformed training data.
    """
    if hasattr(estimator, "fit_transform"):
        return estimator.fit_transform(X, y)
    return estimator.fit(X, y).transform(X)


def _grid_steps(param_grid) -> set[str]:
    """Names of the steps a parameter grid touches (``svc__C`` -> ``svc``)."""
    grids = param_grid if isinstance(param_grid, list) else [param_grid or {}]
    return {key.split("__", 1)[0] for grid in grids for key in grid}


def split_pipeline(pipeline, param_grid=None):
    """Split a pipeline into its stateless head and the rest.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline | estimator
        The pipeline to split.
    param_grid : dict | list of dict | None
        A grid searched by this pipeline. A step the grid tunes is never
        precomputed, since its output depends on the searched value.

    Returns
    -------
    head : list of (name, estimator)
        Leading stateless steps (applied once per subject).
    tail : list of (name, estimator)
        The remaining steps, fitted per fold (at least the final estimator).
    """
    steps = list(pipeline.steps) if isinstance(pipeline, Pipeline) else [
        (type(pipeline).__name__.lower(), pipeline)
    ]
    tuned = _grid_steps(param_grid)
    n_head = 0
    # The final estimator is always fitted per fold, even if it were stateless.
    for name, est in steps[:-1]:
        if name in tuned or not is_stateless(est):
            break
        n_head += 1
    return steps[:n_head], steps[n_head:]


class StatelessCache:
    """Outputs of stateless step chains on all epochs of one subject.

    Two pipelines whose heads are the same chain share one array.

    Parameters
    ----------
    X : array-like
        All epochs of the subject (or of all subjects, cross-subject).
    y : array-like
        Their labels, passed to each step's ``fit`` as a Pipeline would. A
        stateless step (see :func:`~chatbci.bci.pipelines.is_stateless`)
        learns nothing in ``fit``, so the labels of test epochs cannot leak
        into its output.
    store : chatbci.bci.store.Store | None
        Where head outputs persist between runs.
    data_key : str | None
        Identity of ``X`` and ``y`` (e.g. the store key of a subject's
        epochs); a head output is stored under it and the chain's step keys.
        Nothing is stored without it.
    """

    def __init__(self, X, y, store=None, data_key=None):
        self._y = y
        self._arrays = {(): X}
        self._store = store if data_key is not None else None
        self._data_key = data_key

    def transform(self, head):
        """Apply the chain ``head`` to all epochs (once per distinct chain).

        Returns
        -------
        key : tuple
            Identity of the chain (equal chains share it).
        Xh : array-like | None
            The chain's output; None when a step changed the number of
            epochs, which cannot be shared: per-fold indices would no longer
            point at the right rows, so the caller fits the whole pipeline
            per fold instead.
        """
        key = ()
        X = self._arrays[()]
        for _, est in head:
            parent, key = key, key + (step_identity(est),)
            if key not in self._arrays:
                self._arrays[key] = self._compute(parent, key, est)
            X = self._arrays[key]
        return key, X

    def _compute(self, parent, key, est):
        Xp = self._arrays[parent]
        if Xp is None:
            return None
        skey = None
        if self._store is not None:
            skey = self._store.key("head", f"{self._data_key}|{'/'.join(key)}")
            hit = self._store.get("head", skey)
            if hit is not None:
                return hit["X"] if hit["X"].shape != (0,) else None
        Xt = fit_transform_step(clone(est), Xp, self._y)
        if len(Xt) != len(Xp):
            Xt = None
        if skey is not None and (Xt is None or isinstance(Xt, np.ndarray)):
            # An unshareable head is remembered as an empty array.
            stored = self._store.put("head", skey, {"X": np.empty(0) if Xt is None else Xt},
                                     description={"chain": list(key)})
            Xt = None if Xt is None else stored["X"]
        return Xt


def fold_key(train, tests) -> str:
    """Identity of one fold: its training indices and its test index sets."""
    digest = hashlib.sha256(np.asarray(train, dtype=np.int64).tobytes())
    for idx in tests:
        digest.update(b"|" + np.asarray(idx, dtype=np.int64).tobytes())
    return digest.hexdigest()[:32]


class FoldRunner:
    """Fit pipeline tails on one training fold, sharing fitted prefixes.

    One runner serves all pipelines with the same stateless head.

    Parameters
    ----------
    X_train, y_train : array-like
        Training data of the fold, already through the stateless head.
    X_tests : list of array-like
        Test sets to transform with every fitted prefix (one per scored
        session).
    store : chatbci.bci.store.Store | None
        Where the outputs of fitted prefixes persist between runs.
    data_key : str | None
        Identity of this fold's inputs (data, head and :func:`fold_key`);
        nothing is stored without it.
    """

    def __init__(self, X_train, y_train, X_tests, store=None, data_key=None):
        self.y_train = y_train
        # prefix key -> (train features, [test features], seconds spent fitting)
        self._cache = {(): (X_train, list(X_tests), 0.0)}
        # prefix key -> the fitted last step of that prefix, where one is at hand
        # (fitted here, or a TangentSpace rebuilt from its stored reference)
        self._fitted = {}
        self._store = store if data_key is not None else None
        self._data_key = data_key

    def _prefix(self, steps):
        """Features after fitting the transformers ``steps``, fitting each once."""
        key = ()
        for _, est in steps:
            parent, key = key, key + (step_identity(est),)
            if key not in self._cache:
                self._cache[key] = self._fit_step(parent, key, est)
        return key

    def _fit_step(self, parent, key, est):
        """(train features, test features, fit seconds) of one more prefix step."""
        skey = None
        if self._store is not None:
            skey = self._store.key("prefix", f"{self._data_key}|{'/'.join(key)}")
            hit = self._store.get("prefix", skey)
            if hit is not None:
                n = int(hit["n_tests"][0])
                if "reference" in hit and _is_tangent_space(est):
                    self._fitted[key] = _fgmdm.fitted_tangent_space(est, hit["reference"])
                return (hit["train"], [hit[f"test{i}"] for i in range(n)],
                        float(hit["seconds"][0]))
        Xtr, Xtes, _ = self._cache[parent]
        fitted = clone(est)
        t0 = perf_counter()
        Xtr_new = fit_transform_step(fitted, Xtr, self.y_train)
        elapsed = perf_counter() - t0
        Xtes_new = [fitted.transform(X) for X in Xtes]
        self._fitted[key] = fitted
        if skey is not None and all(isinstance(a, np.ndarray) for a in [Xtr_new, *Xtes_new]):
            values = {"train": Xtr_new, "n_tests": np.array([len(Xtes_new)]),
                      "seconds": np.array([elapsed])}
            values.update({f"test{i}": X for i, X in enumerate(Xtes_new)})
            if _is_tangent_space(est):
                # What FgMDM needs of this fold's tangent space (see _fit_fgmdm).
                values["reference"] = np.asarray(fitted.reference_)
            self._store.put("prefix", skey, values, description={"chain": list(key)})
        return Xtr_new, Xtes_new, elapsed

    def fit(self, tail, param_grid=None, scoring=None, random_state=None):
        """Fit the tail of one pipeline.

        Without a grid, the transformers of the tail are shared with other
        pipelines of this fold and only the final estimator is fitted here.
        With a grid, the whole tail is searched by
        :class:`~sklearn.model_selection.GridSearchCV` exactly as MOABB does
        (inner 3-fold stratified CV with the evaluation's random state, refit).

        Returns
        -------
        estimator : fitted estimator
            Scores the returned test features.
        X_tests : list of array-like
            The test sets as the estimator expects them.
        seconds : float
            Time to fit this pipeline's tail, shared steps included.
        """
        if param_grid:
            Xtr, Xtes, _ = self._cache[()]
            inner_cv = StratifiedKFold(3, shuffle=True, random_state=random_state)
            search = GridSearchCV(Pipeline([(n, clone(e)) for n, e in tail]),
                                  param_grid, refit=True, cv=inner_cv, n_jobs=1,
                                  scoring=scoring, return_train_score=True)
            t0 = perf_counter()
            search.fit(Xtr, self.y_train)
            return search, Xtes, perf_counter() - t0
        if len(tail) == 1 and _fgmdm.applies(tail[0][1]):
            fitted = self._fit_fgmdm(tail[0][1])
            if fitted is not None:
                return fitted
        key = self._prefix(tail[:-1])
        seconds = sum(self._cache[key[:i + 1]][2] for i in range(len(key)))
        Xtr, Xtes, _ = self._cache[key]
        final = clone(tail[-1][1])
        t0 = perf_counter()
        final.fit(Xtr, self.y_train)
        return final, Xtes, seconds + perf_counter() - t0

    def _fit_fgmdm(self, estimator):
        """Fit pyRiemann's FgMDM on this fold's shared tangent space (see ``_fgmdm``).

        Its FGDA fits the same TangentSpace as TS+LR (shared, or read from
        the store) and an LDA solved in sample space. None where the LDA must
        be left to scikit-learn; the caller then fits FgMDM as it is.
        """
        n_channels = np.shape(self._cache[()][0])[-1]
        if len(self.y_train) >= n_channels * (n_channels + 1) // 2:
            return None  # more epochs than tangent features: nothing to gain
        step = _fgmdm.tangent_space_step(estimator)
        key = self._prefix([("tangentspace", step)])
        ts_train, _, seconds = self._cache[key]
        t0 = perf_counter()
        tangent_space = self._fitted.get(key)
        if tangent_space is None:
            # A stored prefix without its reference (written by an older
            # chatbci): fit the reference matrix again.
            tangent_space = clone(step).fit(self._cache[()][0], self.y_train)
        fgmdm = _fgmdm.fit_fgmdm(estimator, tangent_space, np.asarray(ts_train),
                                 self.y_train)
        if fgmdm is None:
            return None
        return fgmdm, self._cache[()][1], seconds + perf_counter() - t0


def _is_tangent_space(estimator):
    from pyriemann.tangentspace import TangentSpace

    return type(estimator) is TangentSpace
