"""What a benchmark will cost, before it runs.

A benchmark's work is a number of *fits*: for each outer fold of the
evaluation, one fit of each pipeline -- or, for a pipeline with a
``param_grid``, one fit per grid point and inner fold (MOABB's inner 3-fold
search) plus the refit. :func:`estimate_cost` counts them exactly from the
plan, and turns them into seconds from what this workspace has measured:
MOABB's ``time`` column (seconds to fit one outer fold) of earlier results on
the same dataset, per pipeline where it ran before, else per single fit of
the pipelines that did. Without any measurement the seconds are unknown
(``None``), never guessed; the fit count is still exact.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: MOABB's grid search: inner stratified 3-fold CV, then a refit on the fold.
INNER_FOLDS = 3

#: Outer folds per session of a within-session evaluation (MOABB's 5-fold CV).
WITHIN_SESSION_FOLDS = 5

__all__ = ["Cost", "calibrate_fold_seconds", "estimate_cost", "fits_per_fold"]


@dataclass(frozen=True)
class Cost:
    """The estimated cost of one benchmark request.

    Attributes
    ----------
    fits : int
        Estimator fits in all (outer folds x fits per fold, over pipelines).
    outer_folds : int
        Outer folds per pipeline (over all subjects).
    seconds : float | None
        Estimated fitting time on one core; ``None`` when nothing comparable
        was measured in this workspace yet.
    basis : str
        How ``seconds`` was obtained, for the human.
    per_pipeline : dict
        ``name -> {"fits": int, "seconds": float | None}``.
    """

    fits: int
    outer_folds: int
    seconds: float | None
    basis: str
    per_pipeline: dict
    #: Deep networks: training epochs at most (fits x max_epochs), else None.
    epochs: int | None = None

    def as_dict(self) -> dict:
        out = asdict(self)
        if self.seconds is not None:
            out["seconds"] = round(self.seconds, 1)
        return out

    def text(self) -> str:
        """One line, e.g. ``"450 fits, about 12 s (measured ...)"``."""
        fits = f"{self.fits:,} fits"
        if self.epochs:  # deep networks: each fit trains for up to max_epochs
            fits += f" (up to {self.epochs:,} training epochs)"
        if self.seconds is None:
            return f"{fits}; duration unknown ({self.basis})"
        return f"{fits}, about {_seconds(self.seconds)} ({self.basis})"


def _seconds(s):
    if s < 90:
        return f"{max(s, 0.1):.1f} s" if s < 10 else f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def fits_per_fold(spec) -> int:
    """Fits one outer fold of ``spec`` takes: 1, or grid points x inner folds + refit."""
    grid = getattr(spec, "param_grid", None) or {}
    points = math.prod(len(v) for v in grid.values()) if grid else 0
    return points * INNER_FOLDS + 1 if points else 1


def outer_folds(evaluation, n_subjects, n_sessions) -> int:
    """Outer folds of one pipeline over ``n_subjects`` subjects."""
    if evaluation == "within-session":
        return n_subjects * n_sessions * WITHIN_SESSION_FOLDS
    if evaluation == "cross-session":
        return n_subjects * n_sessions if n_sessions > 1 else 0
    if evaluation == "cross-subject":
        return n_subjects
    raise ValueError(f"evaluation {evaluation!r} is not within-session, cross-session or "
                     "cross-subject.")


def estimate_cost(specs, *, evaluation, n_subjects, n_sessions=1, dataset_code=None,
                  history=None, measured=None) -> Cost:
    """Estimate a benchmark's fits and seconds before running it.

    Parameters
    ----------
    specs : list of PipelineSpec
        The pipelines (their ``param_grid`` sets the fits per fold).
    evaluation : str
        ``within-session``, ``cross-session`` or ``cross-subject``.
    n_subjects, n_sessions : int
        Subjects requested, and sessions per subject in the dataset.
    dataset_code : str | None
        Only history rows of this dataset are used (any name it went by:
        compared through :func:`~chatbci.bci.datasets.display_name`).
    history : pandas.DataFrame | None
        Earlier results (MOABB columns ``pipeline``, ``time``, ``dataset``,
        ``evaluation``); ``time`` is the seconds to fit one outer fold.
    measured : dict | None
        ``name -> seconds`` to fit one outer fold, from
        :func:`calibrate_fold_seconds` (a timed sample of the pipeline's own
        fits on real data); used for pipelines the history has not timed.

    Returns
    -------
    cost : Cost
    """
    folds = outer_folds(evaluation, n_subjects, n_sessions)
    calibrated = dict(measured or {})  # ``measured`` is reused below as a count
    per_fold_time, per_fit_time = {}, None
    if history is not None and len(history) and "time" in history:
        rows = history
        if dataset_code is not None and "dataset" in rows:
            from .datasets import display_name

            # Results name a dataset by display_name (older ones by MOABB's code).
            shown = {v: display_name(v) for v in rows["dataset"].dropna().unique()}
            rows = rows[rows["dataset"].map(shown) == display_name(dataset_code)]
        if "evaluation" in rows:
            same = rows[rows["evaluation"] == evaluation]
            rows = same if len(same) else rows
        rows = rows[rows["time"] > 0]
        if len(rows):
            per_fold_time = rows.groupby("pipeline")["time"].median().to_dict()
            # A single fit's time, for pipelines not run before: the median over
            # pipelines whose folds are single fits (as far as we know).
            single = sorted(t for name, t in per_fold_time.items()
                            if not _grid_name(name, specs))
            single = single or sorted(per_fold_time.values())
            per_fit_time = single[len(single) // 2]
    per_pipeline, total_fits, total_s, measured, borrowed = {}, 0, 0.0, 0, 0
    from .deep import max_epochs_of

    total_epochs = 0
    n_calibrated = 0
    for spec in specs:
        fits = folds * fits_per_fold(spec)
        total_fits += fits
        if spec.name in per_fold_time:
            seconds = folds * float(per_fold_time[spec.name])
            measured += 1
        elif spec.name in calibrated:
            seconds = folds * float(calibrated[spec.name])
            n_calibrated += 1
        elif per_fit_time is not None and not max_epochs_of(spec):
            # Not for a network: a fit of CSP+LDA says nothing of minutes of training.
            seconds = fits * float(per_fit_time)
            borrowed += 1
        else:
            seconds = None
        per_pipeline[spec.name] = {"fits": fits, "seconds": seconds}
        if max_epochs_of(spec):
            per_pipeline[spec.name]["epochs"] = fits * max_epochs_of(spec)
            total_epochs += fits * max_epochs_of(spec)
        total_s = None if seconds is None or total_s is None else total_s + seconds
    if total_s is None:
        basis = "no earlier fit of these pipelines on this dataset to time it by"
    elif n_calibrated:
        basis = (f"{n_calibrated} pipeline(s) timed by a calibration sample of their own "
                 f"fits, {measured} from earlier fits"
                 + (f", {borrowed} from the time of one fit of other pipelines"
                    if borrowed else ""))
    elif borrowed == 0:
        basis = "from this workspace's earlier fits of the same pipelines"
    else:
        basis = (f"{measured} pipeline(s) timed from earlier fits, {borrowed} from the "
                 "time of one fit of the pipelines run before")
    return Cost(total_fits, folds, total_s, basis, per_pipeline, total_epochs or None)


def _grid_name(name, specs):
    """Whether the history's pipeline ``name`` is one of ``specs`` with a grid."""
    return any(s.name == name and getattr(s, "param_grid", None) for s in specs)


def calibrate_fold_seconds(spec, dataset, *, paradigm="left_right",
                           evaluation="within-session", n_subjects=None, subject=None,
                           random_state=42, n_probe=5, max_seconds=10.0, cache_dir=None,
                           blas_threads=1):
    """Time a sample of a pipeline's own fits on real data: seconds per outer fold.

    Loads one subject, takes the first training fold of a within-session
    split and times fitting (and scoring) the pipeline on it, with
    single-threaded BLAS as the benchmark runs it; for a pipeline with a
    ``param_grid``, up to ``n_probe`` grid points are fitted on an inner
    training split (2/3 of the fold) and their mean time stands for every
    point, plus a refit on the whole fold. The probes run along the grid's
    diagonal (every parameter at the same quantile of its values: first,
    last, middle, quartiles, in that order), because a fit's cost often
    grows steeply with one parameter (the augmented covariance's order), and
    a sample cut short by ``max_seconds`` then errs high rather than low. The
    result is scaled linearly to the training size of ``evaluation`` (an
    approximation: SVMs grow faster than linearly). Measured once and kept
    in ``cache_dir`` (keyed by pipeline, dataset and paradigm), so a
    suggestion card can show it at no cost the next time.

    Parameters
    ----------
    spec : PipelineSpec | str
        The pipeline (or a canonical name).
    dataset : moabb.datasets.base.BaseDataset | str
        The dataset (loaded as :func:`chatbci.bci.benchmark.run_benchmark` would).
    paradigm : str | moabb.paradigms.base.BaseParadigm
        As for ``run_benchmark``.
    evaluation : str
        The evaluation whose outer fold is estimated.
    n_subjects : int | None
        For ``cross-subject``: subjects in the benchmark (training size).
    subject : int | None
        Subject to calibrate on; the dataset's first by default.
    random_state : int
        Seed of the splits, as in the benchmark.
    n_probe : int
        Grid points timed (all of a smaller grid).
    max_seconds : float
        Stop probing further grid points once this much time was spent
        (at least one point is always timed).
    cache_dir : path-like | None
        Where the calibration is kept; not kept when None.
    blas_threads : int
        BLAS threads while timing, as ``run_benchmark``'s (1): unlimited
        threads on a busy machine can make a fit 100 times slower.

    Returns
    -------
    calibration : dict
        ``seconds`` (per outer fold), ``per_fit_seconds``, ``probed`` (grid
        points timed), ``points`` (in the grid), ``subject``, ``basis`` (one
        line) and ``from_cache``.

    Raises
    ------
    chatbci.bci.datasets.DataNotAvailableError
        If the calibration subject's data are not available.
    """
    import hashlib
    import json
    from pathlib import Path
    from time import perf_counter

    import numpy as np
    from sklearn.base import clone
    from sklearn.metrics import check_scoring
    from sklearn.model_selection import ParameterGrid, StratifiedKFold
    from sklearn.preprocessing import LabelEncoder
    from threadpoolctl import threadpool_limits

    from . import benchmark as bm
    from .datasets import get_dataset, load_epochs_array

    ds = get_dataset(dataset) if isinstance(dataset, str) else dataset
    (entry,) = bm.resolve_pipelines([spec])
    par = bm.make_paradigm(bm.make_paradigm(paradigm), filterbank=entry.filterbank)
    subject = ds.subject_list[0] if subject is None else subject
    key = hashlib.sha256(bm._to_json(
        [bm._public_state(ds), bm._public_state(par), entry.key, subject, random_state,
         n_probe, bm.ENGINE_VERSION, bm._versions()], sort_keys=True, fallback=repr
    ).encode()).hexdigest()[:24]
    path = Path(cache_dir, "calibration", f"{key}.json") if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            found = None
        if found:
            return _scaled(found, ds, evaluation, n_subjects) | {"from_cache": True}

    X, y, metadata = load_epochs_array(ds, par, subject)
    metadata = metadata.reset_index(drop=True)
    y = LabelEncoder().fit_transform(y)
    train, test = next(iter(bm._splitter("within-session", random_state).split(y, metadata)))
    scorer = check_scoring(entry.estimator, scoring=par.scoring)

    def timed(est, tr, te):
        t0 = perf_counter()
        try:
            scorer(est.fit(X[tr], y[tr]), X[te], y[te])
        except Exception:  # noqa: BLE001 - a failing point costs its time too
            pass
        return perf_counter() - t0

    points = len(ParameterGrid(entry.param_grid)) if entry.param_grid else 0
    n_probe = max(1, min(int(n_probe), 9))
    if not points:
        with threadpool_limits(limits=blas_threads):
            per_fit = timed(clone(entry.estimator), train, test)
        fold_s, probed = per_fit, 0
    else:
        picks = _diagonal(entry.param_grid, min(n_probe, points))
        inner_tr, inner_te = next(StratifiedKFold(3, shuffle=True, random_state=random_state)
                                  .split(X[train], y[train]))
        times, t_start = [], perf_counter()
        for params in picks:
            est = clone(entry.estimator).set_params(**params)
            with threadpool_limits(limits=blas_threads):
                times.append(timed(est, train[inner_tr], train[inner_te]))
            if perf_counter() - t_start > max_seconds:
                break
        per_fit = float(np.mean(times))
        probed = len(times)
        # Every point on 3 inner folds, then the refit on 3/2 as much data.
        fold_s = per_fit * (points * INNER_FOLDS + 1.5)
    found = {"fold_seconds": fold_s, "per_fit_seconds": per_fit, "probed": probed,
             "points": points, "subject": subject, "n_train": int(len(train)),
             "n_trials": int(len(y)),
             "n_sessions": int(metadata["session"].nunique())}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(bm._to_json(found))
    return _scaled(found, ds, evaluation, n_subjects) | {"from_cache": False}


def _diagonal(param_grid, k):
    """``k`` grid points with every parameter at the same quantile of its values."""
    grids = param_grid if isinstance(param_grid, list) else [param_grid]
    grid = grids[0]  # a list of grids: sample the first (MOABB's are single)
    out = []
    for q in (0.0, 1.0, 0.5, 0.25, 0.75, 0.125, 0.375, 0.625, 0.875)[:k]:
        point = {name: values[int(round(q * (len(values) - 1)))]
                 for name, values in grid.items()}
        if point not in out:
            out.append(point)
    return out


def _scaled(found, ds, evaluation, n_subjects):
    """A calibration on one within-session fold, scaled to ``evaluation``'s folds."""
    per_session = found["n_trials"] / max(found["n_sessions"], 1)
    n_train = {"within-session": found["n_train"],
               "cross-session": per_session * max(int(ds.n_sessions) - 1, 1),
               "cross-subject": found["n_trials"] * max((n_subjects or 2) - 1, 1)}[evaluation]
    ratio = n_train / found["n_train"]
    what = (f"{found['probed']} of {found['points']} grid points (first, last, middle"
            f"{', quartiles' if found['probed'] > 3 else ''} of each parameter)"
            if found["points"] else "one fit")
    basis = (f"timed {what} on subject {found['subject']}"
             + (f", scaled x{ratio:.1f} to the training size" if abs(ratio - 1) > 0.05 else ""))
    return {"seconds": found["fold_seconds"] * ratio,
            "per_fit_seconds": found["per_fit_seconds"] * ratio,
            "probed": found["probed"], "points": found["points"],
            "subject": found["subject"], "basis": basis}
