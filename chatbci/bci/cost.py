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

__all__ = ["Cost", "estimate_cost", "fits_per_fold"]


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

    def as_dict(self) -> dict:
        out = asdict(self)
        if self.seconds is not None:
            out["seconds"] = round(self.seconds, 1)
        return out

    def text(self) -> str:
        """One line, e.g. ``"450 fits, about 12 s (measured ...)"``."""
        if self.seconds is None:
            return f"{self.fits:,} fits; duration unknown ({self.basis})"
        return f"{self.fits:,} fits, about {_seconds(self.seconds)} ({self.basis})"


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
                  history=None) -> Cost:
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
        Only history rows of this dataset are used.
    history : pandas.DataFrame | None
        Earlier results (MOABB columns ``pipeline``, ``time``, ``dataset``,
        ``evaluation``); ``time`` is the seconds to fit one outer fold.

    Returns
    -------
    cost : Cost
    """
    folds = outer_folds(evaluation, n_subjects, n_sessions)
    per_fold_time, per_fit_time = {}, None
    if history is not None and len(history) and "time" in history:
        rows = history
        if dataset_code is not None and "dataset" in rows:
            rows = rows[rows["dataset"] == dataset_code]
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
    for spec in specs:
        fits = folds * fits_per_fold(spec)
        total_fits += fits
        if spec.name in per_fold_time:
            seconds = folds * float(per_fold_time[spec.name])
            measured += 1
        elif per_fit_time is not None:
            seconds = fits * float(per_fit_time)
            borrowed += 1
        else:
            seconds = None
        per_pipeline[spec.name] = {"fits": fits, "seconds": seconds}
        total_s = None if seconds is None or total_s is None else total_s + seconds
    if total_s is None:
        basis = "no earlier fit of these pipelines on this dataset to time it by"
    elif borrowed == 0:
        basis = "from this workspace's earlier fits of the same pipelines"
    else:
        basis = (f"{measured} pipeline(s) timed from earlier fits, {borrowed} from the "
                 "time of one fit of the pipelines run before")
    return Cost(total_fits, folds, total_s, basis, per_pipeline)


def _grid_name(name, specs):
    """Whether the history's pipeline ``name`` is one of ``specs`` with a grid."""
    return any(s.name == name and getattr(s, "param_grid", None) for s in specs)
