"""Run MOABB evaluations fast, cached and resumable, with MOABB's scores.

:func:`run_benchmark` returns the same results DataFrame as MOABB's
``WithinSessionEvaluation`` / ``CrossSessionEvaluation`` /
``CrossSubjectEvaluation`` ``.process()`` for the same pipelines, subjects and
``random_state`` (MOABB's own splitters produce the folds and MOABB's scorer
the scores), while doing each piece of work once:

- data are loaded, filtered and epoched once per subject for all pipelines
  (once per paradigm: filter-bank pipelines need the filter-bank epochs);
- stateless steps (per-epoch covariance estimation) run once per subject, not
  once per pipeline and fold; identical fitted prefixes (e.g. the tangent
  space of TS+LR and TS+SVM) are fitted once per fold (see ``_sharing``);
- subjects run in parallel through :mod:`joblib`, one subject per worker, so
  memory stays bounded by ``n_jobs`` subjects; a user who outgrows one
  machine sets ``joblib.parallel_config(backend="dask")`` and the same call
  spreads over a cluster;
- BLAS runs single-threaded inside each task (threadpoolctl): on the small
  matrices of EEG decoding, BLAS threads only spin and slow things down;
- every (subject, pipeline) result is written to the cache directory as soon
  as it is computed, keyed by everything that changes a score, so a re-run is
  served from the cache, a changed pipeline recomputes only itself, and a run
  killed half-way resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from time import perf_counter

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import check_scoring
from sklearn.preprocessing import LabelEncoder
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from . import _sharing
from .datasets import get_dataset, load_epochs_array

logger = logging.getLogger(__name__)

#: Bump when a change of this module could change a cached score.
ENGINE_VERSION = 1

EVALUATIONS = ("within-session", "cross-session", "cross-subject")

#: MOABB's column order and dtypes (``Results.to_dataframe``).
RESULT_COLUMNS = {
    "score": "float32",
    "time": "float32",
    "samples": "float32",
    "samples_test": "float32",
    "n_classes": "float32",
    "subject": "str",
    "session": "str",
    "channels": "int64",
    "n_sessions": "int64",
    "dataset": "str",
    "pipeline": "str",
}

PARADIGMS = ("left_right", "multiclass")


class BenchmarkError(ValueError):
    """A benchmark request that cannot run as given."""


class BenchmarkStopped(RuntimeError):
    """The caller asked to stop; what finished before is in the cache."""


# ----------------------------------------------------------------------------
# Inputs: paradigm, pipelines, subjects


def make_paradigm(paradigm="left_right", filterbank=False):
    """Build the MOABB motor-imagery paradigm of a benchmark.

    Parameters
    ----------
    paradigm : str | moabb.paradigms.base.BaseParadigm
        ``"left_right"`` (left vs right hand imagery, MOABB's
        ``LeftRightImagery``), ``"multiclass"`` (all imagery classes of the
        dataset, ``MotorImagery``), or a MOABB paradigm instance.
    filterbank : bool
        Return the filter-bank counterpart (for FBCSP-like pipelines), with
        MOABB's default filters.

    Returns
    -------
    paradigm : moabb.paradigms.base.BaseParadigm
    """
    from moabb import paradigms as mp

    if isinstance(paradigm, str):
        key = paradigm.lower().replace("-", "_").replace(" ", "_")
        if key in ("left_right", "leftright", "leftrightimagery", "lr"):
            return mp.FilterBankLeftRightImagery() if filterbank else mp.LeftRightImagery()
        if key in ("multiclass", "motorimagery", "mi"):
            return mp.FilterBankMotorImagery() if filterbank else mp.MotorImagery()
        raise BenchmarkError(
            f"Unknown paradigm {paradigm!r}. Use one of {list(PARADIGMS)} or pass a "
            "MOABB paradigm instance."
        )
    if not filterbank or "FilterBank" in type(paradigm).__name__:
        return paradigm
    # Filter-bank counterpart of a configured paradigm: same events, MOABB's filters.
    if isinstance(paradigm, mp.LeftRightImagery):
        return mp.FilterBankLeftRightImagery(
            tmin=paradigm.tmin, tmax=paradigm.tmax, resample=paradigm.resample,
            channels=paradigm.channels,
        )
    events = getattr(paradigm, "events", None)
    return mp.FilterBankMotorImagery(
        n_classes=getattr(paradigm, "n_classes", None), events=events,
        tmin=paradigm.tmin, tmax=paradigm.tmax, resample=paradigm.resample,
        channels=paradigm.channels,
    )


@dataclass
class PipelineEntry:
    """One pipeline to evaluate: its estimator and optional parameter grid."""

    name: str
    estimator: BaseEstimator
    param_grid: dict | list | None = None
    filterbank: bool = False
    key: str = field(init=False)

    def __post_init__(self):
        grid = json.dumps(self.param_grid, sort_keys=True, default=repr)
        self.key = _sha(_sharing.step_key(self.estimator) + grid)[:16]


def resolve_pipelines(pipelines, param_grid=None):
    """Normalise the ways a user names pipelines into :class:`PipelineEntry`.

    Parameters
    ----------
    pipelines : str | list | dict
        Canonical names (``"CSP+LDA,TS+LR"`` or a list), a
        :class:`~chatbci.bci.pipelines.PipelineSpec` or a list of them, or a
        dict of name -> scikit-learn estimator or ``PipelineSpec`` (MOABB's
        convention).
    param_grid : dict | None
        MOABB-style grids keyed by pipeline name (for estimators given
        directly; a ``PipelineSpec`` carries its own).
    """
    from . import pipelines as reg

    if isinstance(pipelines, str):
        pipelines = [p.strip() for p in pipelines.split(",") if p.strip()]
    if isinstance(pipelines, reg.PipelineSpec):
        pipelines = [pipelines]
    if isinstance(pipelines, (list, tuple)):
        named = {}
        for item in pipelines:
            spec = reg.get_pipeline(item) if isinstance(item, str) else item
            named[spec.name if isinstance(spec, reg.PipelineSpec) else str(item)] = spec
        pipelines = named
    if not isinstance(pipelines, dict) or not pipelines:
        raise BenchmarkError(
            "pipelines must be canonical names (e.g. 'CSP+LDA,TS+LR'), PipelineSpecs "
            f"or a dict of name -> estimator; got {pipelines!r}. Canonical names: "
            f"{sorted(reg.CANONICAL)}."
        )
    entries = []
    for name, item in pipelines.items():
        if isinstance(item, reg.PipelineSpec):
            entries.append(PipelineEntry(name, item.build(), item.param_grid or None,
                                         item.paradigm_kind == "filterbank"))
        elif isinstance(item, BaseEstimator):
            grid = (param_grid or {}).get(name)
            entries.append(PipelineEntry(name, item, grid, reg.needs_filterbank(item)))
        else:
            raise BenchmarkError(
                f"Pipeline {name!r} is a {type(item).__name__}; expected a scikit-learn "
                "estimator or a chatbci PipelineSpec."
            )
    return entries


#: The most subjects one benchmark request may select (MOABB's largest MI
#: dataset has 109; SimulatedMI can make more, for scaling tests).
MAX_SUBJECTS = 10_000


def _span_text(lo, hi):
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _clip_repr(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def parse_subjects(subjects, available=None, *, max_subjects=MAX_SUBJECTS):
    """Parse ``"1-6"``, ``"1,3,5-7"``, an int or a list into a list of subjects.

    Ranges are checked against ``available`` (and ``max_subjects``) *before*
    they are expanded, so ``"1-100000000"`` costs nothing and the error stays
    one short line whatever was asked.

    Raises a :class:`BenchmarkError` naming the valid subjects when one is not
    in ``available``.
    """
    if subjects is None:
        return list(available)
    avail = None if available is None else list(available)
    span = None
    if avail is not None:
        span = (f"{min(avail)}-{max(avail)}" if len(avail) > 3 else str(avail))

    def out_of_range(lo, hi):
        return BenchmarkError(
            f"Subjects {_span_text(lo, hi)} are not all in the dataset; valid subjects: "
            f"{span}.")

    if isinstance(subjects, (int, np.integer)):
        parts = [(int(subjects), int(subjects))]
    elif isinstance(subjects, str):
        if len(subjects) > 1000:
            raise BenchmarkError(f"Subjects text is {len(subjects)} characters; give a "
                                 "range such as '1-6' or a short list such as '1,3,5-7'.")
        parts = []
        for part in subjects.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if "-" in part:
                    lo, hi = (int(v) for v in part.split("-", 1))
                else:
                    lo = hi = int(part)
            except ValueError:
                raise BenchmarkError(
                    f"Cannot read subjects {_clip_repr(subjects)}: use e.g. '1-6' or "
                    "'1,3,5-7'.") from None
            if hi < lo:
                raise BenchmarkError(f"Subject range {lo}-{hi} is reversed; write "
                                     f"{hi}-{lo}.")
            parts.append((lo, hi))
    else:
        try:
            items = list(subjects)
        except TypeError:
            raise BenchmarkError(f"Cannot read subjects {_clip_repr(subjects)}: use e.g. "
                                 "'1-6', '1,3,5-7' or a list of numbers.") from None
        if len(items) > max_subjects:
            raise BenchmarkError(f"{len(items)} subjects given; at most {max_subjects} "
                                 "can be selected at once.")
        try:
            parts = [(int(s), int(s)) for s in items]
        except (TypeError, ValueError):
            raise BenchmarkError(f"Cannot read subjects {_clip_repr(subjects)}: subjects "
                                 "are whole numbers.") from None
    # Bounds first, on the ends of each range: nothing is expanded yet.
    total = sum(hi - lo + 1 for lo, hi in parts)
    if avail is not None:
        lo_a, hi_a = min(avail), max(avail)
        for lo, hi in parts:
            if lo < lo_a or hi > hi_a:
                raise out_of_range(lo, hi)
    if total > max_subjects:
        raise BenchmarkError(f"{total} subjects selected; at most {max_subjects} can be "
                             "selected at once.")
    out = list(dict.fromkeys(s for lo, hi in parts for s in range(lo, hi + 1)))
    if avail is not None:
        known = set(avail)
        missing = [s for s in out if s not in known]
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
            raise BenchmarkError(
                f"Subjects [{shown}] are not in the dataset; valid subjects: {span}."
            )
    if not out:
        raise BenchmarkError("No subjects selected.")
    return out


# ----------------------------------------------------------------------------
# Cache


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _public_state(obj):
    """JSON-able public attributes of a dataset or paradigm (its configuration)."""
    state = {"class": f"{type(obj).__module__}.{type(obj).__qualname__}"}
    for key, value in sorted(vars(obj).items()):
        if key.startswith("_") or key in ("subject_list",):
            continue
        try:
            json.dumps(value)
        except TypeError:
            value = repr(value) if not callable(value) else getattr(value, "__name__", "?")
        state[key] = value
    return state


def _versions():
    out = {}
    for pkg in ("moabb", "mne", "pyriemann", "scikit-learn", "numpy", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover - all are dependencies
            out[pkg] = None
    return out


class ResultCache:
    """Per-(subject, pipeline) results on disk, one small JSON file each.

    Layout: ``<cache_dir>/<context>/<pipeline>/<unit>.json`` where
    ``context`` hashes everything but the pipeline that changes a score
    (engine version, evaluation and its random state, dataset and paradigm
    configuration, software versions) and ``pipeline`` hashes the estimator's
    full parameters and grid. Writes are atomic (temporary file + rename), so
    a killed run never leaves a half-written result.
    """

    def __init__(self, cache_dir, context: dict):
        self.context = context
        self.context_key = _sha(json.dumps(context, sort_keys=True, default=repr))[:16]
        self.root = None
        if cache_dir is not None:
            self.root = Path(cache_dir) / self.context_key
            self.root.mkdir(parents=True, exist_ok=True)
            info = self.root / "context.json"
            if not info.exists():
                _atomic_write(info, json.dumps(context, indent=1, default=repr))

    def _path(self, entry, unit):
        return self.root / entry.key / f"{unit}.json"

    def get(self, entry, unit):
        if self.root is None:
            return None
        path = self._path(entry, unit)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            logger.warning("Ignoring unreadable cache file %s; recomputing.", path)
            return None

    def put(self, entry, unit, rows):
        if self.root is None:
            return
        path = self._path(entry, unit)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, json.dumps(rows))


def _atomic_write(path: Path, text: str):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------
# Evaluation


def _splitter(evaluation, random_state):
    """MOABB's own splitter, configured as MOABB's evaluations configure it."""
    from moabb.evaluations.splitters import (
        CrossSessionSplitter,
        CrossSubjectSplitter,
        WithinSessionSplitter,
    )
    from sklearn.model_selection import LeaveOneGroupOut

    if evaluation == "within-session":
        return WithinSessionSplitter(n_folds=5, shuffle=True, random_state=random_state)
    if evaluation == "cross-session":
        return CrossSessionSplitter(cv_class=LeaveOneGroupOut, shuffle=False,
                                    random_state=random_state)
    return CrossSubjectSplitter(cv_class=LeaveOneGroupOut, random_state=random_state,
                                calibration_size=0.0, calibration_labeled=False)


def _plan(X, entries):
    """Apply each pipeline's stateless head once; keep the per-fold tails.

    Returns a dict name -> (head key, tail steps, head output, param grid).
    Pipelines with the same head share one output array.
    """
    cache = _sharing.StatelessCache(X)
    plans = {}
    for entry in entries:
        head, tail = _sharing.split_pipeline(entry.estimator, entry.param_grid)
        head_key, Xh = cache.transform(head)
        plans[entry.name] = (head_key, tail, Xh, entry.param_grid)
    return plans


def _score_folds(plans, y, metadata, folds, scoring, random_state, score_per_session):
    """Score all planned pipelines on the given folds.

    Returns per-fold records: (fold index, pipeline name, test session, score,
    fit seconds, n_train, n_test, n_classes).
    """
    sessions = metadata["session"].to_numpy()
    records = []
    for fold, (train, test) in enumerate(folds):
        # MOABB fits the label encoder on the training labels of each fold.
        le = LabelEncoder().fit(y[train])
        y_train, y_test = le.transform(y[train]), le.transform(y[test])
        if score_per_session:
            groups = [(s, test[sessions[test] == s], y_test[sessions[test] == s])
                      for s in np.unique(sessions[test])]
        else:
            groups = [(sessions[test][0], test, y_test)]
        runners = {}
        for name, (head_key, tail, Xh, grid) in plans.items():
            runner = runners.get(head_key)
            if runner is None:
                runner = runners[head_key] = _sharing.FoldRunner(
                    Xh[train], y_train, [Xh[idx] for _, idx, _ in groups]
                )
            est, X_tests, seconds = runner.fit(tail, grid, scoring, random_state)
            scorer = check_scoring(est, scoring=scoring)
            for (session, idx, yt), Xt in zip(groups, X_tests):
                records.append((fold, name, session, float(scorer(est, Xt, yt)), seconds,
                                len(train), len(idx), len(np.unique(yt))))
    return records


def _rows_within_session(records, subject, n_channels, per_session_n):
    """Average folds per (session, pipeline), as MOABB aggregates them."""
    df = pd.DataFrame(records, columns=["fold", "pipeline", "session", "score", "time",
                                        "n_train", "n_test", "n_classes"])
    rows = []
    for (pipeline, session), g in df.groupby(["pipeline", "session"], sort=False):
        rows.append(dict(
            pipeline=pipeline, subject=subject, session=str(session),
            score=float(np.mean(g["score"])), time=float(np.mean(g["time"])),
            samples=int(per_session_n[session]), samples_test=int(np.mean(g["n_test"])),
            n_classes=int(g["n_classes"].max()), channels=n_channels,
        ))
    return rows


def _rows_per_fold(records, subject_of_fold, n_channels):
    return [
        dict(pipeline=name, subject=subject_of_fold(fold), session=str(session),
             score=score, time=seconds, samples=n_train, samples_test=n_test,
             n_classes=n_classes, channels=n_channels)
        for fold, name, session, score, seconds, n_train, n_test, n_classes in records
    ]


def _quiet_worker(log_level):
    """MNE's log level and MOABB's deprecation noise, inside a worker process."""
    import warnings

    import mne

    # MOABB 1.7 still asks MNE for the deprecated "standard_1005" montage name.
    warnings.filterwarnings("ignore", message="Montage name", category=FutureWarning)
    mne.set_log_level(log_level)


def _subject_task(dataset, subject, groups, evaluation, random_state, blas_threads,
                  log_level="WARNING"):
    """Evaluate the pipelines still missing for one subject (runs in a worker).

    ``groups`` holds ``(paradigm, entries, cache)``: one data load per
    paradigm, every pipeline's rows written to the cache as soon as known.
    """
    _quiet_worker(log_level)
    out = []
    with threadpool_limits(limits=blas_threads):
        for paradigm, entries, cache in groups:
            X, y, metadata = load_epochs_array(dataset, paradigm, subject)
            metadata = metadata.reset_index(drop=True)
            folds = list(_splitter(evaluation, random_state).split(y, metadata))
            records = _score_folds(_plan(X, entries), y, metadata, folds,
                                   paradigm.scoring, random_state, score_per_session=False)
            if evaluation == "within-session":
                per_session_n = metadata["session"].value_counts().to_dict()
                rows = _rows_within_session(records, subject, X.shape[1], per_session_n)
            else:
                rows = _rows_per_fold(records, lambda f: subject, X.shape[1])
            for entry in entries:
                mine = [r for r in rows if r["pipeline"] == entry.name]
                cache.put(entry, f"subject-{subject}", mine)
                out.extend(mine)
    return subject, out


def _cross_subject(dataset, subjects, paradigm, work, random_state, cache, n_jobs,
                   blas_threads, progress):
    """Leave-one-subject-out, scored per test subject and session, as MOABB does.

    ``work`` maps a test subject to the pipelines still missing for it; other
    folds are skipped (their results are cached).
    """
    loaded = Parallel(n_jobs=n_jobs)(
        delayed(_load_quietly)(dataset, paradigm, s) for s in subjects
    )
    X = np.concatenate([item[0] for item in loaded])
    y = np.concatenate([item[1] for item in loaded])
    metadata = pd.concat([item[2] for item in loaded], ignore_index=True)
    del loaded
    subj = metadata["subject"].to_numpy()
    folds = [f for f in _splitter("cross-subject", random_state).split(y, metadata)
             if subj[f[-1]][0] in work]
    entries = list({id(e): e for v in work.values() for e in v}.values())
    # Stateless heads (covariances) once for all subjects; the folds get these
    # small arrays (joblib memory-maps them) instead of the raw epochs.
    plans = _plan(X, entries)
    n_channels = X.shape[1]
    del X
    out = []
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(_cross_subject_fold)(
            {e.name: plans[e.name] for e in work[subj[f[-1]][0]]}, y, metadata, f,
            subj[f[-1]][0], n_channels, paradigm.scoring, random_state, blas_threads)
        for f in folds
    )
    with tqdm(total=sum(len(v) for v in work.values()), disable=not progress,
              unit="pipeline", desc=f"{dataset.code} cross-subject") as bar:
        for test_subject, rows in results:
            for entry in work[test_subject]:
                cache.put(entry, f"subject-{test_subject}",
                          [r for r in rows if r["pipeline"] == entry.name])
            out.extend(rows)
            bar.update(len(work[test_subject]))
    return out


def _load_quietly(dataset, paradigm, subject, log_level="WARNING"):
    _quiet_worker(log_level)
    return load_epochs_array(dataset, paradigm, subject)


def _cross_subject_fold(plans, y, metadata, fold, test_subject, n_channels, scoring,
                        random_state, blas_threads):
    with threadpool_limits(limits=blas_threads):
        records = _score_folds(plans, y, metadata, [fold], scoring, random_state,
                               score_per_session=True)
    return test_subject, _rows_per_fold(records, lambda f: test_subject, n_channels)


def run_benchmark(pipelines, dataset="SimulatedMI", subjects=None, paradigm="left_right",
                  evaluation="within-session", random_state=42, cache_dir=None,
                  n_jobs=1, param_grid=None, progress=True, blas_threads=1,
                  on_progress=None, should_stop=None, verbose=None):
    """Evaluate decoding pipelines on a motor-imagery dataset, as MOABB does.

    Parameters
    ----------
    pipelines : str | list | dict
        Canonical pipeline names (``"CSP+LDA,TS+LR"``), ``PipelineSpec``
        objects, or a dict of name -> scikit-learn estimator (MOABB style).
    dataset : str | moabb.datasets.base.BaseDataset
        Dataset name from :func:`chatbci.bci.datasets.catalog` or an instance.
    subjects : str | list of int | None
        ``"1-6"``, ``[1, 2]``...; all subjects of the dataset when None.
    paradigm : str | moabb.paradigms.base.BaseParadigm
        ``"left_right"`` or ``"multiclass"`` or a MOABB paradigm. Filter-bank
        pipelines automatically get the filter-bank counterpart.
    evaluation : str
        ``"within-session"`` (5-fold CV per session), ``"cross-session"``
        (leave one session out) or ``"cross-subject"`` (leave one subject out).
    random_state : int | None
        Seed of MOABB's splits (and of the inner grid-search CV).
    cache_dir : path-like | None
        Where results are cached and resumed from; no caching when None.
    n_jobs : int
        Subjects evaluated in parallel through joblib (``-1``: all cores). The
        backend is joblib's current one, so ``joblib.parallel_config`` can
        send the work to dask or ray.
    param_grid : dict | None
        MOABB-style grids keyed by pipeline name, for estimators given as a
        dict.
    progress : bool
        Show a progress bar over subjects and pipelines.
    blas_threads : int
        BLAS threads per task. 1 is fastest for EEG-sized matrices.
    on_progress : callable | None
        ``on_progress(done, total, text)`` after each subject, for UIs.
    should_stop : callable | None
        Checked after each subject; when it returns True, the run stops and
        raises :class:`BenchmarkStopped` (finished subjects stay cached, so a
        re-run resumes).
    verbose : bool | str | int | None
        MNE log level during loading.

    Returns
    -------
    results : pandas.DataFrame
        MOABB's columns (score, time, samples, samples_test, n_classes,
        subject, session, channels, n_sessions, dataset, pipeline) with
        MOABB's dtypes. ``results.attrs["chatbci"]`` tells how many
        (subject, pipeline) results came from the cache.
    """
    import mne

    if evaluation not in EVALUATIONS:
        raise BenchmarkError(
            f"Unknown evaluation {evaluation!r}; use one of {list(EVALUATIONS)}."
        )
    ds = get_dataset(dataset) if isinstance(dataset, str) else dataset
    subjects = parse_subjects(subjects, ds.subject_list)
    entries = resolve_pipelines(pipelines, param_grid)
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise BenchmarkError(f"Pipeline names must be unique; got {names}.")
    if evaluation == "cross-session" and ds.n_sessions < 2:
        raise BenchmarkError(
            f"{ds.code} has {ds.n_sessions} session per subject; cross-session "
            "evaluation needs at least 2. Use evaluation='within-session'."
        )
    if evaluation == "cross-subject" and len(subjects) < 2:
        raise BenchmarkError("Cross-subject evaluation needs at least 2 subjects.")

    base = make_paradigm(paradigm)
    groups = []  # (paradigm, entries), one data load per paradigm
    for fb in (False, True):
        members = [e for e in entries if e.filterbank == fb]
        if members:
            groups.append((make_paradigm(base, filterbank=fb), members))

    t_start = perf_counter()
    rows, n_cached, n_computed = [], 0, 0
    log_level = verbose if verbose is not None else "WARNING"
    with mne.utils.use_log_level(log_level):
        caches = {}
        for par, members in groups:
            context = dict(
                engine=ENGINE_VERSION, evaluation=evaluation, random_state=random_state,
                n_folds=5 if evaluation == "within-session" else None,
                dataset=_public_state(ds), paradigm=_public_state(par),
                scoring=str(par.scoring), versions=_versions(),
            )
            if evaluation == "cross-subject":
                context["subjects"] = subjects
            caches[id(par)] = ResultCache(cache_dir, context)

        # What is already cached, per subject.
        work = {}
        for par, members in groups:
            cache = caches[id(par)]
            for s in subjects:
                for entry in members:
                    hit = cache.get(entry, f"subject-{s}")
                    if hit is not None:
                        rows.extend(hit)
                        n_cached += 1
                    else:
                        work.setdefault(s, []).append((par, entry))

        if work and evaluation == "cross-subject":
            for par, _ in groups:
                par_work = {}
                for subject, items in work.items():
                    mine = [e for p, e in items if p is par]
                    if mine:
                        par_work[subject] = mine
                if par_work:
                    rows.extend(_cross_subject(ds, subjects, par, par_work, random_state,
                                               caches[id(par)], n_jobs, blas_threads,
                                               progress))
                    n_computed += sum(len(v) for v in par_work.values())
        elif work:
            total = sum(len(v) for v in work.values())
            bar = tqdm(total=total, disable=not progress, unit="pipeline",
                       desc=f"{ds.code} {evaluation} ({len(work)} subjects)")
            tasks = []
            for s, items in work.items():
                task_groups = [(par, [e for p, e in items if p is par], caches[id(par)])
                               for par, _ in groups]
                task_groups = [g for g in task_groups if g[1]]
                tasks.append(delayed(_subject_task)(ds, s, task_groups, evaluation,
                                                    random_state, blas_threads, log_level))
            results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks)
            try:
                for subject, subject_rows in results:
                    rows.extend(subject_rows)
                    done = len(work[subject])
                    n_computed += done
                    bar.update(done)
                    bar.set_postfix_str(f"subject {subject} done")
                    if on_progress is not None:
                        on_progress(n_computed, total, f"subject {subject} done")
                    if should_stop is not None and should_stop() and n_computed < total:
                        raise BenchmarkStopped(
                            f"Stopped after {n_computed} of {total} subject x pipeline "
                            "results; they are cached, so running again resumes.")
            finally:
                if hasattr(results, "close"):
                    results.close()  # cancels subjects not yet started
                bar.close()

    df = _to_dataframe(rows, ds, names, subjects)
    df.attrs["chatbci"] = dict(n_cached=n_cached, n_computed=n_computed,
                               seconds=round(perf_counter() - t_start, 3),
                               evaluation=evaluation, random_state=random_state,
                               cache_keys=sorted({c.context_key for c in caches.values()}))
    return df


def _to_dataframe(rows, dataset, pipeline_order, subject_order):
    df = pd.DataFrame(rows, columns=[c for c in RESULT_COLUMNS if c not in
                                     ("n_sessions", "dataset")])
    df["n_sessions"] = dataset.n_sessions
    df["dataset"] = dataset.code
    df = df[df["pipeline"].isin(pipeline_order)]
    # Deterministic order: pipelines as given, subjects as in the dataset.
    df["_p"] = df["pipeline"].map({n: i for i, n in enumerate(pipeline_order)})
    df["_s"] = df["subject"].map({s: i for i, s in enumerate(subject_order)})
    df = df.sort_values(["_p", "_s", "session"]).drop(columns=["_p", "_s"])
    df["subject"] = df["subject"].astype(str)
    df = df.astype(RESULT_COLUMNS)[list(RESULT_COLUMNS)]
    return df.reset_index(drop=True)
