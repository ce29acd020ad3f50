"""Whole benchmark requests answered from the cache without importing MNE or MOABB.

A cached :func:`~chatbci.bci.benchmark.run_benchmark` request is fast once
the engine is imported (hundredths of a second), but importing MOABB, MNE,
pyRiemann and scikit-learn takes seconds: too long for ``chatbci bench`` asked
again from the command line. After every complete run whose request is plain
data (dataset, pipelines and paradigm by name), the engine writes an *index
entry* ``<cache_dir>/requests/<key>.json``:

- ``key`` hashes the request as given (dataset, subjects, pipelines in order,
  paradigm, evaluation, random state) and everything else its answer depends
  on, all read without importing the libraries: their installed versions
  (package metadata), the bytes of chatbci's engine source, the MNE/MOABB
  environment variables and MNE's configuration file;
- the entry lists the result-cache files holding the answer (one per subject
  and pipeline) and the data files it was computed from, with their sizes and
  modification times.

:func:`lookup` answers only when every data file is unchanged and every result
file is still there; the scores come from those result files, which stay the
one source of scores. Anything else (an edited file, a pruned cache, another
library version) is a miss, and the engine runs as usual.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: Folder of index entries, inside a benchmark's cache directory.
INDEX_FOLDER = "requests"
#: Bump when the entry layout or the meaning of a key changes.
INDEX_VERSION = 1
#: Distributions whose code computes or formats an answer.
_PACKAGES = ("chatbci", "moabb", "mne", "pyriemann", "scikit-learn", "numpy", "scipy",
             "pandas", "joblib")
#: Environment that decides where data are read from and how (as the engine's workers).
_ENV_PREFIXES = ("MNE_", "MOABB_", "_MNE_")
_ENGINE_DIR = Path(__file__).resolve().parent


def _versions():
    out = {}
    for pkg in _PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _engine_source_digest():
    """Hash of chatbci's engine source and its pipeline files (the canonical
    pipelines named in requests): an edited pipeline or loader is another answer."""
    digest = hashlib.sha256()
    paths = [*_ENGINE_DIR.glob("*.py"), *_ENGINE_DIR.glob("pipeline_files/*.y*ml")]
    for path in sorted(paths):
        name = path.relative_to(_ENGINE_DIR).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _mne_config():
    """The text of MNE's configuration file (dataset folders may be set there)."""
    home = os.environ.get("_MNE_FAKE_HOME_DIR") or os.path.expanduser("~")
    try:
        return (Path(home) / ".mne" / "mne-python.json").read_text()
    except OSError:
        return None


def request_key(pipelines, dataset, subjects, paradigm, evaluation, random_state):
    """Key of a benchmark request in the index, or None when it cannot be indexed.

    Only requests made of plain data are indexed: a dataset, paradigm and
    pipelines given by name (estimator objects have no identity that is
    cheaper to compute than importing their libraries).

    Parameters
    ----------
    pipelines, dataset, subjects, paradigm, evaluation, random_state
        As given to :func:`~chatbci.bci.benchmark.run_benchmark`.

    Returns
    -------
    key : str | None
        A SHA-256 hex digest.
    """
    if isinstance(pipelines, str):
        pipelines = [p.strip() for p in pipelines.split(",") if p.strip()]
    plain = (isinstance(dataset, str) and isinstance(paradigm, str)
             and isinstance(pipelines, (list, tuple)) and pipelines
             and all(isinstance(p, str) for p in pipelines)
             and (subjects is None or isinstance(subjects, (str, int))
                  or (isinstance(subjects, (list, tuple))
                      and all(isinstance(s, int) for s in subjects)))
             and (random_state is None or isinstance(random_state, int)))
    if not plain:
        return None
    request = dict(
        index=INDEX_VERSION, pipelines=list(pipelines), dataset=dataset,
        subjects=list(subjects) if isinstance(subjects, (list, tuple)) else subjects,
        paradigm=paradigm, evaluation=evaluation, random_state=random_state,
        versions=_versions(), engine=_engine_source_digest(),
        env=sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)),
        mne_config=_mne_config(),
    )
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def _stat(path):
    try:
        st = os.stat(path)
    except OSError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]


def record(cache_dir, key, *, result_files, data_files, table):
    """Write the index entry of a complete run (atomically).

    Parameters
    ----------
    cache_dir : path-like
        The benchmark's cache directory.
    key : str
        :func:`request_key` of the request.
    result_files : list of path-like
        The result-cache files holding the answer, in the order their rows
        were read (under ``cache_dir``).
    data_files : list of path-like
        The data files the answer was computed from.
    table : dict
        What builds the table besides the rows: ``n_sessions``, ``dataset``
        (display name), ``pipelines`` and ``subjects`` (the table's order)
        and ``attrs`` (the ``results.attrs["chatbci"]`` of the run, whose
        per-run counts are set again at lookup).
    """
    from chatbci.workspace.files import write_inside

    root = Path(cache_dir)
    relative = [Path(p).resolve().relative_to(root.resolve()).as_posix() for p in result_files]
    entry = dict(index=INDEX_VERSION, key=key, results=relative,
                 data=[_stat(p) for p in data_files], table=table)
    (root / INDEX_FOLDER).mkdir(parents=True, exist_ok=True)
    write_inside(root / INDEX_FOLDER, f"{key}.json", json.dumps(entry, indent=1),
                 what="request index entry")


class Answer:
    """A request's answer found in the index.

    Attributes
    ----------
    summary : str | None
        The summary table printed for this request before (see
        :func:`remember_summary`), so printing it again needs no statistics.
    n_results : int
        (subject, pipeline) results in the answer.
    """

    def __init__(self, rows, table, n_results, summary):
        self._rows, self._table = rows, table
        self.n_results, self.summary = n_results, summary

    def frame(self):
        """The results table, as :func:`~chatbci.bci.benchmark.run_benchmark` returns it.

        Its ``attrs["chatbci"]`` says every result came from the cache.
        """
        import time

        from .results import results_frame

        t0 = time.perf_counter()
        table = self._table
        df = results_frame(self._rows, table["n_sessions"], table["dataset"],
                           table["pipelines"], table["subjects"])
        attrs = {k: v for k, v in table["attrs"].items() if k != "unseeded"}
        attrs.update(n_cached=self.n_results, n_computed=0,
                     seconds=round(time.perf_counter() - t0, 3), from_index=True)
        df.attrs["chatbci"] = attrs
        return df


def lookup(cache_dir, key):
    """The cached answer of a request, or None when the index cannot give it.

    The warnings of the run that computed it are issued again, as the
    engine does for a cached answer.

    Parameters
    ----------
    cache_dir : path-like
        The benchmark's cache directory.
    key : str | None
        :func:`request_key` of the request.

    Returns
    -------
    answer : Answer | None
    """
    if cache_dir is None or key is None:
        return None
    root = Path(cache_dir).resolve()
    try:
        entry = json.loads((root / INDEX_FOLDER / f"{key}.json").read_text())
        if entry.get("index") != INDEX_VERSION or entry.get("key") != key:
            return None
        if any(_stat(path) != [path, size, mtime] for path, size, mtime in entry["data"]):
            return None  # a data file changed: its answer may too
        rows = []
        for name in entry["results"]:
            path = (root / name).resolve()
            if root not in path.parents:  # an entry from elsewhere points outside
                return None
            rows.extend(json.loads(path.read_text()))
        table = entry["table"]
        attrs = table["attrs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no entry, a pruned result file, an unreadable entry: run as usual
    import warnings

    from .results import DataWarning, UnseededWarning

    for note in attrs.get("warnings", []):
        warnings.warn(note, DataWarning, stacklevel=2)
    for note in attrs.get("unseeded", []):
        warnings.warn(note, UnseededWarning, stacklevel=2)
    summary = entry.get("summary")
    return Answer(rows, table, len(entry["results"]), summary if isinstance(summary, str)
                  else None)


def remember_summary(cache_dir, key, text):
    """Keep the summary printed for a request with its index entry.

    The summary is a function of the answer and of code and versions the
    key covers, so it is valid as long as the entry is. Nothing happens
    when the request has no entry.
    """
    from chatbci.workspace.files import write_inside

    folder = Path(cache_dir) / INDEX_FOLDER
    try:
        entry = json.loads((folder / f"{key}.json").read_text())
    except (OSError, ValueError, TypeError):
        return
    entry["summary"] = text
    write_inside(folder, f"{key}.json", json.dumps(entry, indent=1),
                 what="request index entry")
