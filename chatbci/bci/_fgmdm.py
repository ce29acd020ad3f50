"""FgMDM fitted on a shared tangent space, with its LDA solved in sample space.

pyRiemann's :class:`~pyriemann.classification.FgMDM` is FGDA followed by MDM.
FGDA maps the training covariances to the tangent space (the same
:class:`~pyriemann.tangentspace.TangentSpace` as TS+LR's first fitted step),
fits scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr",
shrinkage="auto")`` there, and projects onto the span of its coefficients.
With 64 channels the tangent space has 2080 features for some 40 training
epochs, and the LDA dominates the fit (1.2 of 1.45 s per fold here): it builds
two 2080 x 2080 Ledoit-Wolf covariances and solves the pooled one by SVD.

That pooled covariance is a diagonal matrix plus a matrix of rank at most
``n_samples`` (each class's shrunk covariance is ``(1 - d) S + d mu D^2``
with ``S`` its empirical covariance, ``D`` its feature scales), so the same
coefficients follow from the Woodbury identity with ``n_samples x
n_samples`` algebra, and the Ledoit-Wolf shrinkage from the Gram matrix of the
standardised epochs instead of the feature covariance. This is the same
estimator computed another way: the coefficients agree with scikit-learn's to
rounding (relative 1e-9 is checked), not bit for bit, so the fitted FgMDM's
probabilities agree to rounding too.

:func:`fit_fgmdm` returns a genuine fitted pyRiemann ``FgMDM`` (its ``_fgda``
and ``_mdm`` built as ``FgMDM.fit`` builds them, from the shared fitted
tangent space), so prediction runs pyRiemann's own code. It is used only
where :func:`applies` holds: the exact class, options and library versions
whose internals it rebuilds, and a one-time check in each process that the
coefficients match scikit-learn's on synthetic data. Anything else is fitted
the ordinary way.
"""

from __future__ import annotations

import numpy as np

#: Relative agreement with scikit-learn's coefficients checked before first use.
_CHECK_RTOL = 1e-9
#: Beyond this condition number of the pooled covariance the least-squares
#: solution of scikit-learn (SVD cut-off at machine precision) and the exact
#: inverse may differ visibly: such a fold is left to scikit-learn.
_MAX_CONDITION = 1e8

_SELF_CHECK = None  # None: not run yet in this process; then True or False


def _standard_scale(X):
    """Centred data and scales exactly as StandardScaler computes them."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X)
    return scaler.transform(X), scaler.scale_


def _ledoit_wolf_gram(Z):
    """Ledoit-Wolf shrinkage and ``mu`` of standardised data, from its Gram matrix.

    The formulas are scikit-learn's ``ledoit_wolf_shrinkage`` with the
    feature-space sums written over samples: ``sum((Z.T @ Z) ** 2)`` is
    ``sum((Z @ Z.T) ** 2)`` and ``sum(Z2.T @ Z2)`` is the squared norm of the
    row sums of ``Z2``.
    """
    n_samples, n_features = Z.shape
    Z = Z - Z.mean(0)  # LedoitWolf centres again (assume_centered=False)
    Z2 = Z ** 2
    trace = Z2.sum() / n_samples
    mu = trace / n_features
    beta_ = np.sum(Z2.sum(1) ** 2)
    delta_ = np.sum((Z @ Z.T) ** 2) / n_samples ** 2
    beta = 1.0 / (n_features * n_samples) * (beta_ / n_samples - delta_)
    delta = (delta_ - 2.0 * mu * trace + n_features * mu ** 2) / n_features
    beta = min(beta, delta)
    shrinkage = 0 if beta == 0 else beta / delta
    return Z, shrinkage, mu


def lda_lsqr_auto_coef(X, y):
    """``coef_`` of ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")``.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_features)
        Training features (float64).
    y : ndarray, shape (n_samples,)
        Their labels.

    Returns
    -------
    coef : ndarray, shape (1, n_features) or (n_classes, n_features) | None
        The coefficients scikit-learn would fit, or None where this
        reformulation does not apply (as many samples as features, a class
        with one sample, no shrinkage, an ill-conditioned pooled covariance):
        the caller then fits scikit-learn's LDA.
    """
    X = np.asarray(X, dtype=np.float64)
    n_samples, n_features = X.shape
    classes, y_index, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < 2 or n_samples >= n_features or counts.min() < 2:
        return None
    priors = counts / float(n_samples)
    means = np.empty((len(classes), n_features))
    diag = np.zeros(n_features)
    rows = []
    for k in range(len(classes)):
        Xk = X[y_index == k]
        means[k] = Xk.mean(0)
        Z, scale = _standard_scale(Xk)
        Z, shrinkage, mu = _ledoit_wolf_gram(Z)
        if not 0 < shrinkage <= 1:
            return None
        # (1 - d) * scale S scale: the empirical covariance of Z * scale.
        rows.append(np.sqrt(priors[k] * (1 - shrinkage) / len(Xk)) * (Z * scale))
        diag += priors[k] * shrinkage * mu * scale ** 2
    U = np.vstack(rows)
    if diag.min() <= 0:
        return None
    gram = (U / diag) @ U.T
    inner = np.eye(len(U)) + gram
    # Eigenvalues of diag + U.T U lie in [min(diag), max(diag) + ||U||^2].
    if (diag.max() + np.linalg.eigvalsh(U @ U.T)[-1]) / diag.min() > _MAX_CONDITION:
        return None
    B = means.T / diag[:, None]  # A^-1 M.T
    # Woodbury: (A + U.T U)^-1 = A^-1 - A^-1 U.T (I + U A^-1 U.T)^-1 U A^-1
    solution = B - (U.T / diag[:, None]) @ np.linalg.solve(inner, U @ B)
    coef = solution.T
    if len(classes) == 2:
        coef = np.array(coef[1, :] - coef[0, :], ndmin=2, dtype=X.dtype)
    return coef


def _matches_scikit_learn():
    """Whether :func:`lda_lsqr_auto_coef` reproduces this scikit-learn, once per process."""
    global _SELF_CHECK
    if _SELF_CHECK is None:
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        rng = np.random.default_rng(0)
        ok = True
        for n_classes in (2, 3):
            X = rng.standard_normal((30, 120)) * rng.uniform(0.1, 3.0, 120)
            y = np.arange(30) % n_classes
            X[y == 1, :10] += 1.0
            ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X, y).coef_
            got = lda_lsqr_auto_coef(X, y)
            ok = ok and got is not None and np.allclose(got, ref, rtol=_CHECK_RTOL,
                                                        atol=_CHECK_RTOL * np.abs(ref).max())
        _SELF_CHECK = bool(ok)
    return _SELF_CHECK


def applies(estimator):
    """Whether :func:`fit_fgmdm` can fit this estimator.

    Exactly pyRiemann 0.12's ``FgMDM`` (not a subclass, whose ``fit`` may
    differ), without tangent-space update, with a metric given by name, and
    a scikit-learn whose LDA the reformulation reproduces.
    """
    try:
        import pyriemann
        from pyriemann.classification import FgMDM
    except ImportError:  # pragma: no cover - pyRiemann is a dependency
        return False
    return (type(estimator) is FgMDM
            and pyriemann.__version__.split(".")[:2] == ["0", "12"]
            and estimator.tsupdate is False
            and isinstance(estimator.metric, str)
            and _matches_scikit_learn())


def tangent_space_step(estimator):
    """The unfitted TangentSpace that ``estimator``'s FGDA fits first.

    Equal (same class and parameters) to TS+LR's, so a fold's fitted tangent
    space is shared between them.
    """
    from pyriemann.tangentspace import TangentSpace

    return TangentSpace(metric=estimator.metric, tsupdate=estimator.tsupdate)


def fitted_tangent_space(estimator, reference):
    """A TangentSpace as ``fit`` leaves it, from its fitted reference matrix."""
    from pyriemann.utils._check import check_metric

    ts = tangent_space_step(estimator)
    ts._metric_mean, ts._metric_map = check_metric(ts.metric, ["mean", "map"])
    ts.reference_ = reference
    return ts


def fit_fgmdm(estimator, tangent_space, ts_train, y):
    """Fit a clone of ``estimator`` as ``FgMDM.fit`` would, on a fitted tangent space.

    Parameters
    ----------
    estimator : pyriemann.classification.FgMDM
        Unfitted; :func:`applies` must hold.
    tangent_space : pyriemann.tangentspace.TangentSpace
        Fitted on this fold's training covariances (:func:`tangent_space_step`).
    ts_train : ndarray, shape (n_samples, n_features)
        Its transform of those covariances.
    y : ndarray, shape (n_samples,)
        Training labels.

    Returns
    -------
    fgmdm : pyriemann.classification.FgMDM | None
        The fitted estimator, or None where the LDA must be fitted by
        scikit-learn (see :func:`lda_lsqr_auto_coef`).
    """
    from pyriemann.classification import MDM
    from pyriemann.tangentspace import FGDA
    from sklearn.base import clone

    W = lda_lsqr_auto_coef(ts_train, y)
    if W is None:
        return None
    fgmdm = clone(estimator)
    fgmdm._mdm = MDM(metric=fgmdm.metric, n_jobs=fgmdm.n_jobs)
    fgda = fgmdm._fgda = FGDA(metric=fgmdm.metric, tsupdate=fgmdm.tsupdate)
    fgda.classes_ = np.unique(y)
    fgda._ts = tangent_space
    # As FGDA._fit_lda and _retro_project compute them.
    fgda._W = W.T @ np.linalg.pinv(W @ W.T) @ W
    filtered = fgda._retro_project(ts_train)
    fgmdm._mdm.fit(filtered, y)
    fgmdm.classes_ = fgmdm._mdm.classes_
    return fgmdm
