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
- work runs in parallel worker processes, in units small enough that
  finished results come back while slow ones run (per subject: the quick
  pipelines together, each grid search on its own, split over its outer
  folds), so memory stays bounded by ``n_jobs`` subjects; a user who
  outgrows one machine sets ``joblib.parallel_config(backend="dask")`` and
  the same call spreads over a cluster;
- a stop (a ``threading.Event``, or Ctrl-C / Kernel->Interrupt) ends the
  work within about a second, killing worker processes mid-fit if need be,
  and says which results were kept;
- BLAS runs single-threaded inside each task (threadpoolctl): on the small
  matrices of EEG decoding, BLAS threads only spin and slow things down;
- every (subject, pipeline) result is written to the cache directory as soon
  as it is complete, keyed by everything that changes a score, so a re-run is
  served from the cache, a changed pipeline recomputes only itself, and a run
  killed half-way resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, wait
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from time import perf_counter

import joblib
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator
from sklearn.metrics import check_scoring
from sklearn.preprocessing import LabelEncoder
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from . import _sharing, request_index, workers
from . import deep as _deep  # optional networks; imports torch only to fit
from .datasets import (
    check_data_available,
    display_name,
    get_dataset,
    load_epochs_array,
    physionet_files,
    prepare_dataset,
    trial_count_warning,
)
# RESULT_COLUMNS and the warnings are part of this module's API too.
from .results import RESULT_COLUMNS, DataWarning, UnseededWarning, results_frame  # noqa: F401

logger = logging.getLogger(__name__)

#: Bump when a change of this module could change a cached score.
#: 2: cache keys hold the code identity of pipelines and data files' stats.
ENGINE_VERSION = 2

EVALUATIONS = ("within-session", "cross-session", "cross-subject")

PARADIGMS = ("left_right", "multiclass")


class BenchmarkError(ValueError):
    """A benchmark request that cannot run as given."""


class BenchmarkStopped(RuntimeError):
    """A benchmark ended early on request: Stop, or Ctrl-C / Kernel->Interrupt.

    Running work is ended within about a second (worker processes are
    killed; nothing waits for a fit to finish). Every (subject, pipeline)
    result that was complete before the stop is kept: written to the cache
    (when there is one), so running the same benchmark again resumes.

    Attributes
    ----------
    kept : list of (int, str)
        ``(subject, pipeline)`` results computed by this run before it
        stopped (in the cache when ``cached``).
    from_cache : list of (int, str)
        Results this run found in the cache.
    missing : list of (int, str)
        Results not computed.
    results : pandas.DataFrame | None
        Every available result (from the cache and kept), MOABB's columns.
    reason : str
        ``"stop requested"`` or ``"interrupted"`` (KeyboardInterrupt).
    cached : bool
        Whether kept results were written to a cache directory.
    seconds : float | None
        From the stop request until all work had ended.
    """

    def __init__(self, message, *, kept=(), from_cache=(), missing=(), results=None,
                 reason="stop requested", cached=True, seconds=None):
        super().__init__(message)
        self.kept = list(kept)
        self.from_cache = list(from_cache)
        self.missing = list(missing)
        self.results = results
        self.reason = reason
        self.cached = cached
        self.seconds = seconds

    @property
    def kept_text(self) -> str:
        """What was kept, compactly: ``"CSP+LDA: subjects 1-10; MDM: subject 3"``."""
        return pairs_text(self.kept) or "nothing"


def pairs_text(pairs) -> str:
    """``[(1, "A"), (2, "A"), (3, "B")]`` -> ``"A: subjects 1-2; B: subject 3"``."""
    by_pipeline: dict[str, list[int]] = {}
    for subject, pipeline in pairs:
        by_pipeline.setdefault(pipeline, []).append(int(subject))
    parts = []
    for pipeline, subjects in by_pipeline.items():
        subjects = sorted(set(subjects))
        ranges, start = [], subjects[0]
        for prev, cur in zip(subjects, subjects[1:] + [None]):
            if cur is None or cur != prev + 1:
                ranges.append(str(start) if start == prev else f"{start}-{prev}")
                start = cur
        word = "subject" if len(subjects) == 1 else "subjects"
        parts.append(f"{pipeline}: {word} {','.join(ranges)}")
    return "; ".join(parts)


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
        from .pipelines import code_identity

        grid = _to_json(self.param_grid, fallback=repr, sort_keys=True)
        # The code too: a user's transformer edited in place (same class name
        # and parameters) must not be served the scores of its old code.
        code = _to_json(code_identity(self.estimator), sort_keys=True)
        # Deep networks: torch/braindecode versions, device and seed change scores
        # (empty, so no change of key, for pipelines without a network).
        deep = _to_json(_deep.deep_identity(self.estimator), sort_keys=True)
        deep = "" if deep == "{}" else deep
        self.key = _sha(_sharing.step_key(self.estimator) + grid + code + deep)[:16]


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


def _to_json(value, *, fallback=None, **kwargs) -> str:
    """The one JSON encoder of the result cache and its keys.

    NumPy scalars and arrays (a subject number taken from MOABB's metadata
    is a ``numpy.int64``) become plain numbers and lists; anything else that
    JSON cannot hold goes through ``fallback`` (e.g. ``repr`` for keys) or
    raises ``TypeError``.
    """

    def default(obj):
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if fallback is not None:
            return fallback(obj)
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    return json.dumps(value, default=default, **kwargs)


def _public_state(obj):
    """JSON-able public attributes of a dataset or paradigm (its configuration)."""
    state = {"class": f"{type(obj).__module__}.{type(obj).__qualname__}"}
    for key, value in sorted(vars(obj).items()):
        if key.startswith("_") or key in ("subject_list",):
            continue
        try:
            value = json.loads(_to_json(value))
        except (TypeError, ValueError):
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
    configuration, software versions; cross-subject, the data stamps of all
    subjects), ``pipeline`` hashes the estimator's full parameters, grid and
    code identity (:func:`~chatbci.bci.pipelines.code_identity`), and
    ``unit`` names the subject and, where chatbci knows the subject's data
    files, their sizes and modification times (:func:`_data_stamps`), so a
    replaced file is recomputed. Writes are atomic and the files follow the
    umask, like every file of a workspace
    (:func:`chatbci.workspace.files.write_inside`).

    Parameters
    ----------
    cache_dir : path-like | None
        No caching when None.
    context : dict
        JSON-able description of the context (see :func:`_cache_context`).
    units : dict | None
        Subject -> unit name; ``"subject-<n>"`` for subjects not listed.
    """

    def __init__(self, cache_dir, context: dict, units=None):
        self.context = context
        self.context_key = _sha(_to_json(context, fallback=repr, sort_keys=True))[:16]
        self.units = dict(units or {})
        self.root = None
        if cache_dir is not None:
            from chatbci.workspace.files import make_folder, write_inside

            self._write = write_inside
            cache_dir = Path(cache_dir)
            cache_dir.mkdir(parents=True, exist_ok=True)
            self.root = make_folder(cache_dir, self.context_key, what="cache folder")
            info = self.root / "context.json"
            if not info.exists():
                write_inside(self.root, "context.json",
                             _to_json(context, fallback=repr, indent=1))

    def unit(self, subject):
        """The file name (without ``.json``) of ``subject``'s result."""
        return self.units.get(subject, f"subject-{subject}")

    def _path(self, entry, subject):
        return Path(entry.key) / f"{self.unit(subject)}.json"

    def get(self, entry, subject):
        """The cached rows of ``(subject, pipeline)``, or None."""
        if self.root is None:
            return None
        path = self.root / self._path(entry, subject)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            logger.warning("Ignoring unreadable cache file %s; recomputing.", path)
            return None

    def put(self, entry, subject, rows):
        """Store the rows of ``(subject, pipeline)`` (atomically)."""
        if self.root is None:
            return
        self._write(self.root, self._path(entry, subject), _to_json(rows),
                    what="cache file")


def _data_files(dataset, paradigm, subjects):
    """Subject -> the data files the paradigm loads, where chatbci knows them.

    Known for :class:`~moabb.datasets.PhysionetMI` (its EDF files); other
    datasets give ``{}`` (SimulatedMI's data follow from its parameters;
    other MOABB datasets rely on their dataset class and MOABB version).
    """
    from moabb.datasets import PhysionetMI

    if not isinstance(dataset, PhysionetMI):
        return {}
    prepared = prepare_dataset(dataset, paradigm)
    return {subject: physionet_files(prepared, subject) for subject in subjects}


def _data_stamps(dataset, paradigm, subjects):
    """Subject -> short hash of its data files' names, sizes and mtimes.

    ``stat`` only, never reading the files: cheap for gigabytes. Only for
    datasets whose files chatbci knows (:func:`_data_files`).
    """
    stamps = {}
    for subject, paths in _data_files(dataset, paradigm, subjects).items():
        stats = []
        for path in paths:
            try:
                st = path.stat()
                stats.append([path.name, st.st_size, st.st_mtime_ns])
            except OSError:  # missing: reported before any work starts
                stats.append([path.name, None, None])
        stamps[subject] = _sha(_to_json(stats))[:12]
    return stamps


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


def _plan(X, y, entries, store=None, data_key=None):
    """Apply each pipeline's stateless head once; keep the per-fold tails.

    Returns a dict name -> (head key, tail steps, head output, param grid).
    Pipelines with the same head share one output array. A head that cannot
    be shared (it changed the number of epochs) is fitted per fold with the
    rest of its pipeline. With a ``store`` and the data's ``data_key``, head
    outputs persist between runs.
    """
    cache = _sharing.StatelessCache(X, y, store=store, data_key=data_key)
    plans = {}
    for entry in entries:
        head, tail = _sharing.split_pipeline(entry.estimator, entry.param_grid)
        head_key, Xh = cache.transform(head)
        if Xh is None:
            (head_key, Xh), tail = cache.transform([]), head + tail
        plans[entry.name] = (head_key, tail, Xh, entry.param_grid)
    return plans


def _score_folds(plans, y, metadata, folds, scoring, random_state, score_per_session,
                 check=None, on_fit=None, store=None, data_key=None):
    """Score all planned pipelines on the given folds.

    ``folds`` holds ``(fold index, (train, test))``; ``check``, when given,
    is called before each fit and stops the work (:class:`_Stop`) when it
    returns True; ``on_fit(pipeline name, fold index)``, when given, after
    each fit. With a ``store`` and the data's ``data_key``, the outputs of
    fitted prefixes persist per fold. Returns per-fold records: (fold index, pipeline name, test
    session, score, fit seconds, n_train, n_test, n_classes).
    """
    sessions = metadata["session"].to_numpy()
    records = []
    for fold, (train, test) in folds:
        # MOABB fits the label encoder on the training labels of each fold.
        le = LabelEncoder().fit(y[train])
        y_train, y_test = le.transform(y[train]), le.transform(y[test])
        if score_per_session:
            groups = [(s, test[sessions[test] == s], y_test[sessions[test] == s])
                      for s in np.unique(sessions[test])]
        else:
            groups = [(sessions[test][0], test, y_test)]
        runners = {}
        fold_id = None if data_key is None else _sharing.fold_key(
            train, [idx for _, idx, _ in groups])
        for name, (head_key, tail, Xh, grid) in plans.items():
            if check is not None and check():
                raise _Stop("stop requested")
            runner = runners.get(head_key)
            if runner is None:
                runner = runners[head_key] = _sharing.FoldRunner(
                    Xh[train], y_train, [Xh[idx] for _, idx, _ in groups], store=store,
                    data_key=(None if fold_id is None else
                              f"{data_key}|{'/'.join(head_key)}|{fold_id}"),
                )
            est, X_tests, seconds = runner.fit(tail, grid, scoring, random_state)
            scorer = check_scoring(est, scoring=scoring)
            for (session, idx, yt), Xt in zip(groups, X_tests):
                records.append((fold, name, session, float(scorer(est, Xt, yt)), seconds,
                                len(train), len(idx), len(np.unique(yt))))
            if on_fit is not None:
                on_fit(name, fold)
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


# ----------------------------------------------------------------------------
# Running work: killable worker processes, or joblib's configured backend
#
# The unit of work is small enough that finished results come back (and are
# cached) while slow ones still run: per subject, the pipelines without a
# parameter grid together (they share loading, stateless heads and fitted
# prefixes, and are quick), and each grid-searched pipeline on its own, split
# into parts over its outer folds. Units run in chatbci's own loky process
# pool, which a stop kills outright: a fit in C code (libsvm, LAPACK) cannot
# be interrupted any other way.


class _Stop(Exception):
    """Internal: end the run now (stop requested, or KeyboardInterrupt)."""

    def __init__(self, reason, t_request=None):
        super().__init__(reason)
        self.reason = reason
        self.t_request = perf_counter() if t_request is None else t_request


#: Environment read while loading (MNE_DATA, MNE_DATASETS_*_PATH, MOABB's
#: download provider, MNE's config home): sent with every task, because a warm
#: worker keeps the environment it was started with.
#: CHATBCI_DEEP_PROGRESS_FILE: where deep networks report each training epoch.
_ENV_PREFIXES = ("MNE_", "MOABB_", "_MNE_", "CHATBCI_DEEP_")
#: Subjects' epochs kept by a worker while one run lasts (consecutive parts
#: of a subject's grid search then load it once per worker).
_MEMO_SIZE = 2

_POOL = None
_POOL_LOCK = threading.Lock()
#: What a worker that died (segfault, out of memory) raises in the parent.
_WORKER_DIED = (BrokenExecutor,)
_LOADED: OrderedDict = OrderedDict()


def _data_env():
    return {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}


def _apply_env(env):
    if env is None:
        return
    for key in [k for k in os.environ if k.startswith(_ENV_PREFIXES) and k not in env]:
        del os.environ[key]
    os.environ.update(env)


def _usable(pool):
    flags = getattr(pool, "_flags", None)
    return pool is not None and not (flags is not None and (flags.broken or flags.shutdown))


def _own_pool_applies():
    """Whether joblib's default backend is in effect (then chatbci's pool runs the work).

    With another backend configured (``joblib.parallel_config(backend="dask")``,
    ``"threading"``...), the work goes through joblib so it reaches that backend.
    """
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    return type(backend).__name__ == "LokyBackend" and not getattr(backend, "nesting_level", 0)


def _run_in_pool(calls, n_workers, is_stopped, poll_s=0.05, max_workers=None):
    """Run ``calls`` (key, function, task) in killable processes; yield results.

    Yields ``(key, result)`` as tasks finish. When ``is_stopped()`` turns true
    (polled every ``poll_s``) or a KeyboardInterrupt arrives, pending tasks
    are cancelled, the workers killed, results that finished meanwhile
    yielded, and :class:`_Stop` raised. Any other exit (a task's error, the
    consumer giving up) also kills the workers still busy.

    A warm pool with more workers than ``n_workers`` is kept when it has at
    most ``max_workers`` (the run's ``n_jobs``: fewer tasks than that asked
    for fewer workers, not for a new pool).
    """
    global _POOL
    shared = _POOL_LOCK.acquire(blocking=False)  # else another run uses it
    if shared:
        keep = range(n_workers, max(n_workers, max_workers or n_workers) + 1)
        if _usable(_POOL) and _POOL._max_workers not in keep:
            _POOL.shutdown(wait=True)  # idle: ends at once
            _POOL = None
        if not _usable(_POOL):
            # Workers started ahead by chatbci bench (workers.prestart), if they fit.
            _POOL = workers.take_prestarted(keep) or workers.new_pool(n_workers)
        pool = _POOL
    else:
        pool = workers.new_pool(n_workers)
    futures, pending, clean = {}, set(), False
    try:
        for key, fn, task in calls:
            futures[pool.submit(fn, task)] = key
        pending = set(futures)
        reason = None
        while pending:
            try:
                done, pending = wait(pending, timeout=poll_s, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                reason = "interrupted"
                break
            done = list(done)
            while done:
                fut = done.pop()
                try:
                    result = fut.result()
                except _WORKER_DIED:
                    # A stop that reached the workers before this loop saw it
                    # (a signal to the whole process group) is still a stop;
                    # what finished beside it is kept below.
                    if not is_stopped():
                        raise
                    reason = "stop requested"
                    pending |= set(done)
                    break
                yield futures[fut], result
            if reason is None and pending and is_stopped():
                reason = "stop requested"
            if reason is not None:
                break
        if reason is not None:
            t_request = perf_counter()
            workers.kill(pool)
            for fut in list(pending):
                if fut.done() and not fut.cancelled() and fut.exception(timeout=0) is None:
                    pending.discard(fut)
                    yield futures[fut], fut.result()
            raise _Stop(reason, t_request)
        clean = True
    finally:
        if not clean:
            if any(not f.done() for f in pending):
                workers.kill(pool)
            if shared:
                _POOL = None if not _usable(pool) else _POOL
        if not shared:
            pool.shutdown(wait=True, kill_workers=not clean)
        if shared:
            _POOL_LOCK.release()


def shutdown_workers():
    """End chatbci's worker pool now, if it is idle.

    The pool stays alive between benchmarks (for ``workers.IDLE_TIMEOUT_S``), so the
    next question of a session starts no process and imports nothing; a
    :class:`~chatbci.assistant.session.Session` calls this when it closes.
    A pool in use by a running benchmark is left to it (that run's stop ends
    it).

    Returns
    -------
    ended : bool
        Whether a pool was shut down.
    """
    global _POOL
    ended = workers.discard_prestarted()
    if not _POOL_LOCK.acquire(blocking=False):
        return ended
    try:
        pool, _POOL = _POOL, None
        if pool is None:
            return ended
        pool.shutdown(wait=True)
        return True
    finally:
        _POOL_LOCK.release()


def _warm_pool_waiting():
    """Whether chatbci's worker pool is alive and idle (its workers start nothing)."""
    if not _POOL_LOCK.acquire(blocking=False):
        return False
    try:
        return ((_usable(_POOL) and bool(getattr(_POOL, "_processes", None)))
                or workers.prestarted())
    finally:
        _POOL_LOCK.release()


def _run_inline(calls, is_stopped):
    """Run ``calls`` here, one after the other, checking ``is_stopped`` before each fit."""
    try:
        for key, fn, task in calls:
            if is_stopped():
                raise _Stop("stop requested")
            yield key, fn(task, check=is_stopped)
    except KeyboardInterrupt:
        raise _Stop("interrupted") from None


def _run_with_joblib(calls, n_jobs, is_stopped):
    """Run ``calls`` through joblib's configured backend (dask, ray, threads...).

    With ``n_jobs=1`` the tasks run here (:func:`_run_inline`); otherwise
    ``is_stopped`` is checked after each task (a remote backend cannot kill
    a fit) and tasks not yet started are cancelled.
    """
    if n_jobs == 1:
        yield from _run_inline(calls, is_stopped)
        return
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(_keyed)(key, fn, task) for key, fn, task in calls)
    try:
        for key, result in results:
            yield key, result
            if is_stopped():
                raise _Stop("stop requested")
    except KeyboardInterrupt:
        raise _Stop("interrupted") from None
    finally:
        results.close()  # cancels tasks not yet started


def _keyed(key, fn, task):
    return key, fn(task)


def _task_store(task):
    """The task's :class:`~chatbci.bci.store.Store`, or None."""
    if task.store_root is None or task.data_key is None:
        return None
    from .store import Store

    return Store(task.store_root)


def _load_epochs(task):
    """A subject's epochs: from the store (memory-mapped) or loaded and stored."""
    store = _task_store(task)
    if store is not None:
        key = store.key("epochs", task.data_key)
        hit = store.get("epochs", key)
        if hit is not None:
            return hit["X"], hit["y"], hit["metadata"]
        X, y, metadata = load_epochs_array(task.dataset, task.paradigm, task.subject)
        metadata = metadata.reset_index(drop=True)
        hit = store.put("epochs", key, {"X": np.asarray(X), "y": np.asarray(y),
                                        "metadata": metadata},
                        description={"subject": task.subject})
        return hit["X"], hit["y"], hit["metadata"]
    X, y, metadata = load_epochs_array(task.dataset, task.paradigm, task.subject)
    return X, y, metadata.reset_index(drop=True)


def _load_memo(task):
    """The task's subject epochs, loaded once per worker while a run lasts."""
    if _LOADED and next(iter(_LOADED))[0] != task.run_id:
        _LOADED.clear()  # a new run: its data may differ (files fixed, env changed)
    key = (task.run_id, task.paradigm_key, task.subject)
    hit = _LOADED.get(key)
    if hit is None:
        hit = _LOADED[key] = _load_epochs(task)
        while len(_LOADED) > _MEMO_SIZE:
            _LOADED.popitem(last=False)
    else:
        _LOADED.move_to_end(key)
    return hit


@dataclass
class _Task:
    """One unit of work, sent to a worker (everything it needs, picklable)."""

    kind: str  # "subject" (folds of one subject), "load" or "fold" (cross-subject)
    subject: int
    dataset: object
    paradigm: object
    paradigm_key: str
    entries: list
    evaluation: str
    random_state: object
    blas_threads: int
    log_level: object
    env: dict | None
    run_id: str
    part: tuple = (0, 1)  # (i, k): outer folds i, i + k, i + 2k...
    fold: tuple | None = None  # cross-subject: (train, test)
    shared: object = None  # cross-subject: plans, y, metadata (or a file of them)
    n_channels: int | None = None
    # Per-fit progress (run_benchmark's on_fold): a callable when the task runs here,
    # else a file the worker appends "pipeline<TAB>fold<TAB>n folds" lines to.
    on_fit: object = None
    fits_file: str | None = None
    # The intermediate store (chatbci.bci.store) and the identity of this
    # subject's epochs in it (see _epochs_identity); no store when None.
    store_root: str | None = None
    data_key: str | None = None


def _fit_reporter(task, n_folds):
    """``on_fit(name, fold)`` for a subject task: to ``task.on_fit`` or its file."""
    if task.on_fit is not None:
        return lambda name, fold: task.on_fit(name, fold, n_folds)
    if task.fits_file is None:
        return None

    def write(name, fold):
        with open(task.fits_file, "a", encoding="utf-8") as f:
            f.write(f"{name}\t{fold}\t{n_folds}\n")
    return write


def _run_task(task, check=None):
    """Execute one :class:`_Task` (in a worker, or here when ``check`` is given)."""
    _quiet_worker(task.log_level)
    _apply_env(task.env)
    with threadpool_limits(limits=task.blas_threads):
        if task.kind == "load":
            return _load_memo(task)
        if task.kind == "fold":
            shared = _shared_data(task.shared)
            plans = {e.name: shared["plans"][e.name] for e in task.entries}
            records = _score_folds(plans, shared["y"], shared["metadata"], [(0, task.fold)],
                                   task.paradigm.scoring, task.random_state,
                                   score_per_session=True, check=check)
            return {"records": records, "n_channels": task.n_channels}
        X, y, metadata = _load_memo(task)
        folds = list(_splitter(task.evaluation, task.random_state).split(y, metadata))
        i, k = task.part
        chosen = [(f, folds[f]) for f in range(i, len(folds), k)]
        records = []
        if chosen:
            # Deep networks never go through the store (their fits are the
            # network's, which are not shared anyway).
            store = None if any(_deep.deep_steps(e.estimator) for e in task.entries) \
                else _task_store(task)
            data_key = None if store is None else store.key("epochs", task.data_key)
            records = _score_folds(_plan(X, y, task.entries, store, data_key), y, metadata,
                                   chosen, task.paradigm.scoring, task.random_state,
                                   score_per_session=False, check=check,
                                   on_fit=_fit_reporter(task, len(folds)),
                                   store=store, data_key=data_key)
        return {"records": records, "n_channels": X.shape[1], "n_folds": len(folds),
                "per_session_n": metadata["session"].value_counts().to_dict()}


_SHARED: dict = {}


def _shared_data(shared):
    """Cross-subject arrays: given inline, or a file memory-mapped once per worker."""
    if not isinstance(shared, str):
        return shared
    if shared not in _SHARED:
        _SHARED.clear()
        _SHARED[shared] = joblib.load(shared, mmap_mode="r")
    return _SHARED[shared]


def _rows_of(evaluation, records, subject, n_channels, per_session_n=None):
    records = sorted(records, key=lambda r: r[0])  # MOABB's fold order, for its means
    if evaluation == "within-session":
        return _rows_within_session(records, subject, n_channels, per_session_n)
    return _rows_per_fold(records, lambda f: subject, n_channels)


def _stop_check(stop, should_stop):
    def is_stopped():
        if stop is not None and stop.is_set():
            return True
        return bool(should_stop is not None and should_stop())
    return is_stopped


def _units(work, groups, grid_parts):
    """Split the missing (subject, pipeline) results into units of work.

    Quick units first (the pipelines without a grid, per subject), then the
    grid searches, subject by subject, each in ``grid_parts`` parts.
    """
    quick, slow = [], []
    for s, items in work.items():
        for par, _ in groups:
            mine = [e for p, e in items if p is par]
            plain = [e for e in mine if not e.param_grid]
            if plain:
                quick.append((s, par, plain, (0, 1)))
            for e in mine:
                if e.param_grid:
                    slow.extend((s, par, [e], (i, grid_parts)) for i in range(grid_parts))
    return quick + slow


def run_benchmark(pipelines, dataset="SimulatedMI", subjects=None, paradigm="left_right",
                  evaluation="within-session", random_state=42, cache_dir=None,
                  n_jobs=1, param_grid=None, progress=True, blas_threads=1,
                  on_progress=None, should_stop=None, verbose=None, stop=None, on_fold=None,
                  max_store_bytes=None):
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
        Worker processes (``-1``: all cores). With joblib's default backend
        the work runs in chatbci's own process pool, so that a stop can end
        it at once; with another backend configured
        (``joblib.parallel_config(backend="dask")``) it goes through joblib
        to that backend (there, with ``n_jobs=1``, in this process).
    param_grid : dict | None
        MOABB-style grids keyed by pipeline name, for estimators given as a
        dict.
    progress : bool
        Show a progress bar.
    blas_threads : int
        BLAS threads per task. 1 is fastest for EEG-sized matrices.
    on_progress : callable | None
        ``on_progress(done, total, text)`` after each unit of work, for UIs:
        ``done`` and ``total`` count steps (a (subject, pipeline) result is
        one step, or one per part of a grid search).
    on_fold : callable | None
        ``on_fold(subject, pipeline, fold, n_folds)`` after each fit of a
        pipeline on one outer fold (``fold`` counts from 1), within- and
        cross-session, for UIs that show progress inside a subject. Fits in
        worker processes are reported within about 0.05 s, read from a file
        each worker appends to.
    should_stop : callable | None
        Polled while work runs; when it returns True the run stops as
        ``stop`` does.
    verbose : bool | str | int | None
        MNE log level during loading.
    stop : threading.Event | None
        Set it (from any thread) to stop: running work is ended within about
        a second (worker processes are killed, mid-fit if need be), every
        finished (subject, pipeline) result stays cached, and
        :class:`BenchmarkStopped` is raised saying what was kept. A
        KeyboardInterrupt (Ctrl-C, Kernel->Interrupt) stops the same way.
    max_store_bytes : int | None
        Size bound of the intermediate store under ``<cache_dir>/store``
        (epochs, covariances, fitted shared prefixes; see
        :mod:`chatbci.bci.store`), applied after the run by removing the
        least recently used entries: None for the default (2 GB), ``0`` for
        no store. Without ``cache_dir`` nothing is stored.

    Returns
    -------
    results : pandas.DataFrame
        MOABB's columns (score, time, samples, samples_test, n_classes,
        subject, session, channels, n_sessions, dataset, pipeline) with
        MOABB's dtypes. ``results.attrs["chatbci"]`` tells how many
        (subject, pipeline) results came from the cache and lists
        ``warnings`` (e.g. a subject with fewer trials than expected).

    Raises
    ------
    BenchmarkError
        A request that cannot run as given (unknown pipeline, subject...).
    BenchmarkStopped
        Stopped on request or interrupted; carries what was kept.
    chatbci.bci.datasets.DataNotAvailableError
        A subject's files are missing (and not downloadable) or damaged,
        checked before any work starts; nothing is created on disk.
    """
    import mne

    if evaluation not in EVALUATIONS:
        raise BenchmarkError(
            f"Unknown evaluation {evaluation!r}; use one of {list(EVALUATIONS)}."
        )
    ds = get_dataset(dataset) if isinstance(dataset, str) else dataset
    subjects_asked = subjects
    subjects = parse_subjects(subjects, ds.subject_list)
    entries = resolve_pipelines(pipelines, param_grid)
    # Deep networks left unseeded train with the evaluation's random state.
    entries = [e if (est := _deep.seed_deep_steps(e.estimator, random_state)) is e.estimator
               else PipelineEntry(e.name, est, e.param_grid, e.filterbank) for e in entries]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise BenchmarkError(f"Pipeline names must be unique; got {names}.")
    if evaluation == "cross-session" and ds.n_sessions < 2:
        raise BenchmarkError(
            f"{display_name(ds)} has {ds.n_sessions} session per subject; cross-session "
            "evaluation needs at least 2. Use evaluation='within-session'."
        )
    if evaluation == "cross-subject" and len(subjects) < 2:
        raise BenchmarkError("Cross-subject evaluation needs at least 2 subjects.")
    is_stopped = _stop_check(stop, should_stop)

    groups = _paradigm_groups(paradigm, entries)
    t_start = perf_counter()
    log_level = verbose if verbose is not None else "WARNING"
    caches = {id(par): _result_cache(cache_dir, ds, par, evaluation, random_state, subjects)
              for par, _ in groups}

    # What is already cached.
    rows, from_cache, work = [], [], {}
    for par, members in groups:
        cache = caches[id(par)]
        for s in subjects:
            for entry in members:
                hit = cache.get(entry, s)
                if hit is not None:
                    rows.extend(hit)
                    from_cache.append((s, entry.name))
                else:
                    work.setdefault(s, []).append((par, entry))
    todo = [(s, e.name) for s, items in work.items() for _, e in items]

    run = _Run(ds, evaluation, random_state, caches, blas_threads, log_level, n_jobs,
               is_stopped, on_progress, progress, todo)
    run.on_fold = on_fold
    if cache_dir is not None and max_store_bytes != 0:
        run.store_root = str(Path(cache_dir) / STORE_FOLDER)
    with mne.utils.use_log_level(log_level):
        # Missing or damaged files: one clear error now, before any work.
        for par, _ in groups:
            need = subjects if evaluation == "cross-subject" else [
                s for s, items in work.items() if any(p is par for p, _ in items)]
            if need:
                check_data_available(prepare_dataset(ds, par), need)
        try:
            if is_stopped() and work:
                raise _Stop("stop requested")
            if work and evaluation == "cross-subject":
                for par, _ in groups:
                    par_work = {s: [e for p, e in items if p is par]
                                for s, items in work.items()}
                    par_work = {s: v for s, v in par_work.items() if v}
                    if par_work:
                        run.cross_subject(subjects, par, par_work)
            elif work:
                run.per_subject(work, groups)
        except (_Stop, KeyboardInterrupt) as err:
            # KeyboardInterrupt here was raised outside the pool's wait (e.g.
            # in a progress callback); the pool was killed as the loop closed.
            stopped = err if isinstance(err, _Stop) else _Stop("interrupted")
            run.close()
            raise _stopped_error(stopped, run, todo, from_cache, rows, ds, names, subjects,
                                 cache_dir, t_start) from None
        except _WORKER_DIED as err:
            run.close()
            kept = run.kept
            raise BenchmarkError(
                f"A benchmark worker process died ({err}), most likely out of memory or "
                f"a crash in compiled code. Kept: {pairs_text(kept) or 'nothing'}"
                + (" (cached, so running again resumes)" if cache_dir is not None else "")
                + ". To fix: run again with fewer parallel jobs (n_jobs) or subjects."
            ) from err
        finally:
            run.close()
            if run.store_root is not None and run.kept:
                _prune_store(run.store_root, max_store_bytes)

    df = _to_dataframe(rows + run.rows, ds, names, subjects)
    notes = _trial_warnings(df, ds, groups, evaluation)
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    methods_notes = engine_notes(groups, random_state)
    for note in methods_notes:
        if note["kind"] == "unseeded":
            warnings.warn(f"{note['text']} {note['fix']}", UnseededWarning, stacklevel=2)
    df.attrs["chatbci"] = dict(n_cached=len(from_cache), n_computed=len(run.kept),
                               seconds=round(perf_counter() - t_start, 3),
                               evaluation=evaluation, random_state=random_state,
                               cache_keys=sorted({c.context_key for c in caches.values()}),
                               warnings=notes,
                               engine_notes=[{k: n[k] for k in ("kind", "pipeline", "text")}
                                             for n in methods_notes])
    deep = {e.name: _deep.deep_identity(e.estimator) for _, es in groups for e in es}
    if any(deep.values()):  # the networks' seed, device and torch/braindecode versions
        df.attrs["chatbci"]["deep"] = {k: v for k, v in deep.items() if v}
    elif cache_dir is not None and param_grid is None:
        _index_request(cache_dir, (pipelines, dataset, subjects_asked, paradigm, evaluation,
                                   random_state), ds, groups, caches, subjects, names, df,
                       [f"{n['text']} {n['fix']}" for n in methods_notes
                        if n["kind"] == "unseeded"])
    return df


def _index_request(cache_dir, request, ds, groups, caches, subjects, names, df, unseeded):
    """Let ``chatbci bench`` answer this request again without importing the engine.

    See :mod:`chatbci.bci.request_index`. Deep networks are left out (their
    answer depends on the device found at run time), as are requests given
    as objects rather than names.
    """
    key = request_index.request_key(*request)
    if key is None:
        return
    result_files = [caches[id(par)].root / caches[id(par)]._path(entry, s)
                    for par, members in groups for entry in members for s in subjects]
    if not all(path.is_file() for path in result_files):
        return
    data_files = [path for par, _ in groups
                  for paths in _data_files(ds, par, subjects).values() for path in paths]
    attrs = {k: v for k, v in df.attrs["chatbci"].items()
             if k not in ("n_cached", "n_computed", "seconds")}
    table = dict(n_sessions=int(ds.n_sessions), dataset=display_name(ds), pipelines=names,
                 subjects=[int(s) for s in subjects], attrs=dict(attrs, unseeded=unseeded))
    try:
        request_index.record(cache_dir, key, result_files=result_files,
                             data_files=data_files, table=table)
    except (OSError, ValueError) as err:  # the answer stands; only the shortcut is lost
        logger.warning("Could not write the request index entry: %s", err)


def _stopped_error(stopped, run, todo, from_cache, rows, ds, names, subjects, cache_dir,
                   t_start):
    """The :class:`BenchmarkStopped` of a stopped run: what was kept, what was not."""
    ended = perf_counter()
    kept = run.kept
    done = set(kept)
    missing = [pair for pair in todo if pair not in done]
    where = (f"written to the cache ({cache_dir}), so running it again resumes"
             if cache_dir is not None else
             "held in memory only (no cache_dir): they are in this error's .results; "
             "a re-run recomputes them")
    message = (
        f"Benchmark stopped ({stopped.reason}) after {ended - t_start:.1f} s. Kept "
        f"{len(kept)} of {len(todo)} (subject, pipeline) results computed in this run "
        f"({pairs_text(kept) or 'none'}), {where}. Not computed: "
        f"{pairs_text(missing) or 'none'}."
        + (f" {len(from_cache)} results came from the cache." if from_cache else "")
    )
    return BenchmarkStopped(
        message, kept=kept, from_cache=from_cache, missing=missing,
        results=_to_dataframe(rows + run.rows, ds, names, subjects), reason=stopped.reason,
        cached=cache_dir is not None, seconds=round(ended - stopped.t_request, 3))


def engine_notes(groups, random_state):
    """What a methods section must say about how the engine ran these pipelines.

    Parameters
    ----------
    groups : list of (paradigm, list of PipelineEntry)
        The run's pipelines with the paradigm that loads their data.
    random_state : int | None
        The evaluation's seed; unseeded pipelines are reported only when it
        is set (without it nothing in the run is reproducible anyway).

    Returns
    -------
    notes : list of dict
        ``{"kind", "pipeline", "text", "fix"}``: ``kind`` is ``"unseeded"``
        (random numbers drawn without a seed, see
        :func:`~chatbci.bci.pipelines.unseeded_randomness`; the results are
        still cached, as the one draw that was made, and carry this note
        whether computed or served from the cache) or ``"filter_bank"``
        (chatbci gives filter-bank pipelines every band, MOABB 1.7.2 only
        the first); ``text`` is one sentence fit for a methods section;
        ``fix`` says how to change it (empty when there is nothing to fix).
    """
    from .pipelines import unseeded_randomness

    notes = []
    for par, entries in groups:
        for entry in entries:
            found = unseeded_randomness(entry.estimator, entry.param_grid)
            if found and random_state is not None:
                parts = ", ".join(f"{f['what']}" + (f" in {f['path']}" if f["path"] else "")
                                  for f in found)
                in_yaml = "; ".join(f"`{f['how']}` on {f['step']}" for f in found
                                    if f["how"])
                fix = (
                    "To make it reproducible, seed it: "
                    + (f"in its YAML set {in_yaml}, or "
                       if all(f["how"] for f in found) else "")
                    + "build it with chatbci.bci.pipelines.seed_pipeline(pipeline, 42). "
                    "Until then its scores are cached as this one draw, marked with this note."
                )
                notes.append(dict(
                    kind="unseeded", pipeline=entry.name, fix=fix,
                    text=(f"{entry.name} draws random numbers without a seed ({parts}), so "
                          "its scores are a single draw that varies between runs on the "
                          "same cross-validation folds."),
                ))
            if entry.filterbank:
                bands = ", ".join(f"{lo:g}-{hi:g}" for lo, hi in par.filters)
                notes.append(dict(
                    kind="filter_bank", pipeline=entry.name, fix="",
                    text=(f"{entry.name} was evaluated on all {len(par.filters)} bands of "
                          f"the filter bank ({bands} Hz), as filter-bank CSP is defined; "
                          "MOABB 1.7.2's evaluations load only the first band of a "
                          "filter-bank paradigm (make_process_pipelines(...)[0]), so MOABB "
                          "reports this pipeline on "
                          f"{par.filters[0][0]:g}-{par.filters[0][1]:g} Hz alone and its "
                          "scores can differ from those given here."),
                ))
    return notes


def _paradigm_groups(paradigm, entries):
    """(paradigm, entries) pairs: one data load per paradigm (plain, filter bank)."""
    base = make_paradigm(paradigm)
    groups = []
    for fb in (False, True):
        members = [e for e in entries if e.filterbank == fb]
        if members:
            groups.append((make_paradigm(base, filterbank=fb), members))
    return groups


def _cache_context(ds, par, evaluation, random_state, subjects, stamps=None):
    context = dict(
        engine=ENGINE_VERSION, evaluation=evaluation, random_state=random_state,
        n_folds=5 if evaluation == "within-session" else None,
        dataset=_public_state(ds), paradigm=_public_state(par),
        scoring=str(par.scoring), versions=_versions(),
    )
    if evaluation == "cross-subject":
        context["subjects"] = subjects
        if stamps:  # every fold is trained on every other subject's files
            context["data"] = [stamps[s] for s in subjects]
    return context


def _result_cache(cache_dir, ds, par, evaluation, random_state, subjects):
    """The :class:`ResultCache` of one paradigm group of a run."""
    stamps = _data_stamps(ds, par, subjects) if cache_dir is not None else {}
    units = {} if evaluation == "cross-subject" else {
        s: f"subject-{s}-data-{stamp}" for s, stamp in stamps.items()}
    cache = ResultCache(cache_dir, _cache_context(ds, par, evaluation, random_state,
                                                  subjects, stamps), units)
    cache.stamps = stamps
    return cache


def _epochs_identity(ds, par, subject, stamp, versions):
    """Canonical text of everything that changes a subject's epochs (a store key).

    The dataset and paradigm configuration, the subject, its data files'
    names, sizes and modification times (``stamp``, see :func:`_data_stamps`)
    and the versions of the libraries that load and filter them.
    """
    return _to_json(dict(dataset=_public_state(ds), paradigm=_public_state(par),
                         subject=subject, data=stamp, versions=versions,
                         engine=ENGINE_VERSION), fallback=repr, sort_keys=True)


def _trial_warnings(df, ds, groups, evaluation):
    """Warnings for subjects that yielded fewer trials than the dataset should."""
    if df.empty:
        return []
    column = "samples" if evaluation == "within-session" else "samples_test"
    notes = []
    for par, members in groups:
        mine = df[df["pipeline"] == members[0].name]
        if mine.empty:
            continue
        prepared = prepare_dataset(ds, par)
        for subject, n in mine.groupby("subject", sort=False)[column].sum().items():
            note = trial_count_warning(prepared, par, subject, int(round(float(n))))
            if note and note not in notes:
                notes.append(note)
    return notes


class _Run:
    """The computing part of one :func:`run_benchmark` call: units, results, progress."""

    def __init__(self, ds, evaluation, random_state, caches, blas_threads, log_level,
                 n_jobs, is_stopped, on_progress, progress, todo):
        self.ds, self.evaluation, self.random_state = ds, evaluation, random_state
        self.caches, self.blas_threads, self.log_level = caches, blas_threads, log_level
        self.n_jobs, self.is_stopped, self.on_progress = n_jobs, is_stopped, on_progress
        self.own_pool = _own_pool_applies()
        self.env = _data_env() if self.own_pool else None
        self.run_id = f"{os.getpid()}-{time.time_ns()}"
        self.rows, self.kept = [], []
        self.n_todo = len(todo)
        self.done = self.total = 0
        self.bar = None
        self.progress = progress
        self._tmp = None
        self.on_fold = None
        self.store_root = None  # the intermediate store (str), set by run_benchmark
        self.small = False  # one quick unit: run here (see _inline)
        self.versions = _versions()
        self._fits = {}  # fits file -> [subject, bytes read] (on_fold, worker processes)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        _LOADED.clear()  # the in-process memo: free the epochs
        _SHARED.clear()

    def _task(self, kind, subject, par, entries, **kw):
        if self.store_root is not None and kind == "subject":
            kw.setdefault("store_root", self.store_root)
            kw.setdefault("data_key", _epochs_identity(
                self.ds, par, subject, getattr(self.caches[id(par)], "stamps", {}).get(subject),
                self.versions))
        return _Task(kind=kind, subject=subject, dataset=self.ds, paradigm=par,
                     paradigm_key=_sha(json.dumps(_public_state(par), default=repr))[:16],
                     entries=entries, evaluation=self.evaluation,
                     random_state=self.random_state, blas_threads=self.blas_threads,
                     log_level=self.log_level, env=self.env, run_id=self.run_id, **kw)

    def _inline(self, task):
        """Whether a task runs in this process rather than in a worker.

        With ``n_jobs=1``, units without a grid search run here, as MOABB
        runs them: they take a second or so, ``stop`` is checked before each
        fit, and no worker has to start (seconds of imports). Grid searches
        run in a worker even then, so that a stop can kill a fit that takes
        minutes. So do deep networks (their training takes minutes too).

        A small job (one unit without a grid search, e.g. one subject) runs
        here whatever ``n_jobs`` is, unless a warm worker pool is waiting:
        starting workers costs seconds of imports, more than its fits.
        """
        if not self.own_pool:
            return self.n_jobs == 1
        return (self.n_jobs == 1 or self.small) and (task.kind == "load" or not any(
            e.param_grid or _deep.deep_steps(e.estimator) for e in task.entries))

    def _execute(self, calls):
        """Yield ``(key, result)`` of ``calls`` as they finish, wherever they run."""
        here = [c for c in calls if self._inline(c[2])]
        there = [c for c in calls if not self._inline(c[2])]
        if here:
            yield from _run_inline(here, self.is_stopped)
        if not there:
            return
        if self.own_pool:
            n_max = max(1, joblib.effective_n_jobs(self.n_jobs))
            yield from _run_in_pool(there, min(n_max, len(there)), self._polled_stop,
                                    max_workers=n_max)
        else:
            yield from _run_with_joblib(there, self.n_jobs, self._polled_stop)

    def _polled_stop(self):
        # Polled while workers run: the moment to pass on the fits they reported.
        if self._fits:
            self._read_fits()
        return self.is_stopped()

    def _watch_fits(self, calls):
        """Have each subject task report its fits to ``on_fold`` (here or from a worker)."""
        if self.on_fold is None:
            return
        for _, _, task in calls:
            if self._inline(task):
                task.on_fit = (lambda name, fold, n, s=task.subject:
                               self.on_fold(s, name, fold + 1, n))
            else:
                if self._tmp is None:
                    self._tmp = tempfile.mkdtemp(prefix="chatbci-run-")
                task.fits_file = os.path.join(self._tmp, f"fits-{len(self._fits)}.txt")
                self._fits[task.fits_file] = [task.subject, 0]

    def _read_fits(self):
        for path, seen in self._fits.items():
            try:
                with open(path, "rb") as f:
                    f.seek(seen[1])
                    data = f.read()
            except FileNotFoundError:
                continue
            complete = data[:data.rfind(b"\n") + 1]  # a line being written waits
            seen[1] += len(complete)
            for line in complete.decode("utf-8").splitlines():
                name, fold, n = line.split("\t")
                self.on_fold(seen[0], name, int(fold) + 1, int(n))

    def _start_bar(self, total, desc):
        self.total += total
        if self.bar is None:
            self.bar = tqdm(total=self.total, disable=not self.progress, unit="step",
                            desc=desc)
        else:
            self.bar.total = self.total
            self.bar.refresh()

    def _step(self, n, text):
        self.done += n
        self.bar.update(n)
        self.bar.set_postfix_str(text)
        if self.on_progress is not None:
            self.on_progress(self.done, self.total,
                             f"{text} ({len(self.kept)} of {self.n_todo} results)")

    def _finish(self, par, entry, subject, rows):
        self.caches[id(par)].put(entry, subject, rows)
        self.rows.extend(rows)
        self.kept.append((subject, entry.name))

    def per_subject(self, work, groups):
        """Within- and cross-session: units per subject (see :func:`_units`)."""
        grid_parts = 5 if self.evaluation == "within-session" else max(1, self.ds.n_sessions)
        units = _units(work, groups, grid_parts)
        quick = [u for u in units if not any(e.param_grid for e in u[2])]
        self.small = len(quick) == 1 and not _warm_pool_waiting()
        calls = [(i, _run_task, self._task("subject", s, par, unit_entries, part=part))
                 for i, (s, par, unit_entries, part) in enumerate(units)]
        self._watch_fits(calls)
        self._start_bar(sum(len(u[2]) for u in units),
                        f"{display_name(self.ds)} {self.evaluation} ({len(work)} subjects)")
        slots = {}  # (par, subject, name) -> [records, parts received]
        gen = self._execute(calls)
        try:
            for i, result in gen:
                if self._fits:
                    self._read_fits()  # this unit's last fits before its result
                s, par, unit_entries, (_, k) = units[i]
                for entry in unit_entries:
                    slot = slots.setdefault((id(par), s, entry.name), [[], 0])
                    slot[0].extend(r for r in result["records"] if r[1] == entry.name)
                    slot[1] += 1
                    if slot[1] == k:
                        self._finish(par, entry, s, _rows_of(
                            self.evaluation, slot[0], s, result["n_channels"],
                            result["per_session_n"]))
                label = "+".join(e.name for e in unit_entries)
                self._step(len(unit_entries), f"subject {s} {label}"
                           + (f" part {units[i][3][0] + 1}/{k}" if k > 1 else ""))
        finally:
            gen.close()

    def cross_subject(self, subjects, par, work):
        """Leave-one-subject-out, scored per test subject and session, as MOABB does.

        ``work`` maps a test subject to the pipelines still missing for it;
        other folds are skipped (their results are cached).
        """
        entries = list({id(e): e for v in work.values() for e in v}.values())
        n_fold_units = sum(len([e for e in v if e.param_grid]) + any(not e.param_grid
                                                                      for e in v)
                           for v in work.values())
        self._start_bar(len(subjects) + n_fold_units,
                        f"{display_name(self.ds)} cross-subject")
        loaded = {}
        gen = self._execute([(s, _run_task, self._task("load", s, par, []))
                             for s in subjects])
        try:
            for s, data in gen:
                loaded[s] = data
                self._step(1, f"loaded subject {s}")
        finally:
            gen.close()
        X = np.concatenate([loaded[s][0] for s in subjects])
        y = np.concatenate([loaded[s][1] for s in subjects])
        metadata = pd.concat([loaded[s][2] for s in subjects], ignore_index=True)
        del loaded
        subj = metadata["subject"].to_numpy()
        folds = [f for f in _splitter("cross-subject", self.random_state).split(y, metadata)
                 if subj[f[-1]][0] in work]
        # Stateless heads (covariances) once for all subjects; the folds get
        # these small arrays instead of the raw epochs, from one file that
        # each worker memory-maps (a remote backend gets them inline).
        plans = _plan(X, y, entries)
        n_channels = X.shape[1]
        del X
        inline = {"plans": plans, "y": y, "metadata": metadata}
        path = None
        calls, owners = [], []
        for fold in folds:
            test_subject = subj[fold[-1]][0]
            mine = work[test_subject]
            batches = [[e for e in mine if not e.param_grid]] + [[e] for e in mine
                                                                   if e.param_grid]
            for batch in (b for b in batches if b):
                task = self._task("fold", test_subject, par, batch, fold=fold,
                                  shared=inline, n_channels=n_channels)
                if self.own_pool and not self._inline(task):
                    if path is None:
                        self._tmp = tempfile.mkdtemp(prefix="chatbci-cross-subject-")
                        path = os.path.join(self._tmp, "shared.pkl")
                        joblib.dump(inline, path)
                    task.shared = path
                owners.append((test_subject, batch))
                calls.append((len(calls), _run_task, task))
        gen = self._execute(calls)
        try:
            for i, result in gen:
                test_subject, batch = owners[i]
                rows = _rows_per_fold(result["records"], lambda f: test_subject,
                                      result["n_channels"])
                for entry in batch:
                    self._finish(par, entry, test_subject,
                                 [r for r in rows if r["pipeline"] == entry.name])
                self._step(1, f"test subject {test_subject} "
                              f"{'+'.join(e.name for e in batch)}")
        finally:
            gen.close()


#: The intermediate store's folder inside a cache directory.
STORE_FOLDER = "store"


def store_of(cache_dir, max_bytes=None):
    """The intermediate :class:`~chatbci.bci.store.Store` of a cache directory."""
    from .store import DEFAULT_MAX_BYTES, Store

    return Store(Path(cache_dir) / STORE_FOLDER,
                 DEFAULT_MAX_BYTES if max_bytes is None else max_bytes)


def _prune_store(root, max_bytes):
    with contextlib.suppress(OSError):
        store_of(Path(root).parent, max_bytes).prune()


def _to_dataframe(rows, dataset, pipeline_order, subject_order):
    return results_frame(rows, dataset.n_sessions, display_name(dataset), pipeline_order,
                         subject_order)
