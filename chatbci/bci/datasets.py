"""Motor-imagery datasets: catalog, lookup and robust offline loading.

Everything here builds on MOABB's dataset classes. :func:`catalog` describes
them without downloading anything, :func:`get_dataset` finds one by a
forgiving name, and :func:`load_epochs_array` loads a subject while turning
"the files are not on disk and cannot be downloaded" into one clear
:class:`DataNotAvailableError` instead of a network traceback.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import inspect
import logging
import re
import warnings
from pathlib import Path

import mne
import moabb.datasets
import numpy as np
import pandas as pd
from moabb.datasets import PhysionetMI
from moabb.datasets.base import BaseDataset, get_summary_table

from .simulated import SimulatedMI

__all__ = [
    "DataDamagedError",
    "DataNotAvailableError",
    "SimulatedMI",
    "catalog",
    "catch_missing_data",
    "check_data_available",
    "check_edf_file",
    "dataset_info",
    "display_name",
    "expected_trials",
    "get_dataset",
    "is_motor_task",
    "load_epochs_array",
    "prepare_dataset",
    "trial_count_warning",
]

logger = logging.getLogger(__name__)

CATALOG_COLUMNS = (
    "name",
    "code",
    "n_subjects",
    "subjects",
    "n_sessions",
    "n_channels",
    "sfreq",
    "classes",
    "n_trials_per_class",
    "interval",
    "doi",
    "reference",
)

# Every EEGMMIDB task run (imagery or execution) holds 15 cued trials.
_PHYSIONET_TRIALS_PER_RUN = 15

# Where MNE's EEGBCI fetcher (used by MOABB's PhysionetMI) keeps the files,
# relative to MNE_DATA (or MNE_DATASETS_EEGBCI_PATH).
_EEGBCI_DIR = Path("MNE-eegbci-data", "files", "eegmmidb", "1.0.0")

# Errors that, while loading, mean "the files are missing and could not be
# fetched": OSError covers missing files and folders as well as requests'
# connection and HTTP errors; NEMAR and httpx have their own.
_MISSING_DATA_ERRORS: tuple[type[BaseException], ...] = (OSError,)
with contextlib.suppress(ImportError):
    from moabb.datasets.download import NemarDownloadError

    _MISSING_DATA_ERRORS += (NemarDownloadError,)
with contextlib.suppress(ImportError):
    from httpx import TransportError

    _MISSING_DATA_ERRORS += (TransportError,)


class DataNotAvailableError(RuntimeError):
    """A subject's data are neither on disk nor downloadable.

    The message names the dataset, the subject, where the files are expected
    on disk, and how to make them available.
    """


class DataDamagedError(DataNotAvailableError):
    """A data file is on disk but unusable (empty, truncated, bad header).

    The message names the file, what is wrong with it, and how to replace it.
    A subclass of :class:`DataNotAvailableError`: for the caller, the data
    are not available either way.
    """


# --------------------------------------------------------------------------
# Catalog and lookup
# --------------------------------------------------------------------------


def catalog(paradigm="imagery", *, include_other_tasks=False):
    """Describe the available datasets of a paradigm, offline.

    One row per MOABB dataset of ``paradigm`` (plus :class:`SimulatedMI` for
    ``"imagery"``), built from the dataset classes, their ``METADATA`` and
    MOABB's shipped summary table. Nothing is downloaded and the network is
    never used; the result is computed once per session.

    Parameters
    ----------
    paradigm : str
        MOABB paradigm: ``"imagery"`` (motor imagery), ``"p300"``,
        ``"ssvep"``, ...
    include_other_tasks : bool
        MOABB files some datasets of other tasks under ``"imagery"``:
        visual object recognition (Kaneshiro2015), imagined speech
        (Nguyen2017, Pressel2016, Nieto2022), visual imagery, mental
        arithmetic. By default only datasets of movement imagery (or
        executed/attempted movements) are listed; ``True`` lists them all
        (:func:`get_dataset` finds every one either way). See
        :func:`is_motor_task`.

    Returns
    -------
    table : pandas.DataFrame
        Columns ``name`` (class name, e.g. ``"BNCI2014_001"``), ``code``
        (MOABB code), ``n_subjects``, ``subjects`` (list), ``n_sessions``,
        ``n_channels`` (EEG channels), ``sfreq`` (Hz), ``classes`` (list of
        event names), ``n_trials_per_class`` (as reported by MOABB, None
        when unknown or varying), ``interval`` (trial window in s after the
        cue), ``doi`` and ``reference`` (citation from the documentation).
        Sorted by ``name``; a fresh copy on every call.
    """
    rows = _catalog_rows(paradigm)
    if paradigm == "imagery" and not include_other_tasks:
        rows = [row for row in rows if row["name"] in _motor_task_names()]
    table = pd.DataFrame(copy.deepcopy(list(rows)), columns=list(CATALOG_COLUMNS))
    # Nullable integers: missing counts show as <NA> instead of turning floats.
    counts = ["n_subjects", "n_sessions", "n_channels", "n_trials_per_class"]
    return table.astype({column: "Int64" for column in counts})


#: Class names that are movements (imagined, attempted or executed) ...
_MOTOR_CLASS = re.compile(
    r"hand|feet|foot|tongue|leg|elbow|arm|wrist|shoulder|finger|grasp|reach|gait|"
    r"supination|pronation|flexion|extension|twist|sit_to_stand|stand_to_sit",
    re.I,
)
#: ... and descriptions that say the task is one.
_MOTOR_TEXT = re.compile(
    r"motor imagery|movement imagery|\bMI\b|\bME\b|kinesthetic|"
    r"(?:imagin|attempt|execut)\w* (?:\w+ )?movements?|handwrit|finger|grasp|reach|tapping",
    re.I,
)


def is_motor_task(dataset):
    """Whether a dataset's task is movement: imagined, attempted or executed.

    True when a class names a body part or a movement (``left_hand``,
    ``feet``, ``elbow_flexion``, ``gait_imagery``...), or the dataset's
    MOABB metadata (study design, tasks, instructions) describes motor
    imagery or movements. MOABB's ``"imagery"`` paradigm also holds visual,
    imagined-speech and mental-arithmetic datasets, for which it is False.

    Parameters
    ----------
    dataset : moabb.datasets.base.BaseDataset

    Returns
    -------
    bool
    """
    meta = getattr(dataset, "METADATA", None)
    exp = getattr(meta, "experiment", None)
    classes = [*getattr(dataset, "event_id", {}), *(getattr(exp, "class_labels", None) or []),
               *(getattr(exp, "tasks", None) or [])]
    if any(_MOTOR_CLASS.search(str(c)) for c in classes):
        return True
    text = " ".join(str(getattr(exp, key, None) or "")
                    for key in ("study_design", "instructions"))
    return bool(_MOTOR_TEXT.search(text))


@functools.lru_cache(maxsize=None)
def _motor_task_names():
    names = {cls.__name__ for cls in _dataset_classes()
             if (ds := _instantiate(cls)) is not None and is_motor_task(ds)}
    return frozenset(names | {SimulatedMI.__name__})


def get_dataset(name, **kwargs):
    """Instantiate a dataset by class name or MOABB code, case-insensitively.

    Parameters
    ----------
    name : str
        Class name (``"PhysionetMI"``, ``"BNCI2014_001"``, ``"SimulatedMI"``)
        or MOABB code (``"PhysionetMotorImagery"``, ``"BNCI2014-001"``), in
        any case; ``-`` and ``_`` are interchangeable.
    **kwargs
        Passed to the dataset constructor, e.g. ``subjects=[1, 2]`` or, for
        :class:`SimulatedMI`, ``n_subjects=5``.

    Returns
    -------
    dataset : moabb.datasets.base.BaseDataset
        A new instance (instantiation downloads nothing).

    Raises
    ------
    ValueError
        If no motor-imagery dataset has that name; the message lists the
        valid names and suggests the closest ones.
    """
    return _dataset_class(name)(**kwargs)


def dataset_info(dataset):
    """Describe one dataset as a JSON-serialisable dict.

    Parameters
    ----------
    dataset : str | moabb.datasets.base.BaseDataset
        A name accepted by :func:`get_dataset`, or a dataset instance (then
        its own configuration is described, e.g. a custom
        :class:`SimulatedMI`).

    Returns
    -------
    info : dict
        The :func:`catalog` row: keys as the catalog columns, plain Python
        values (lists, ints, floats, str, None).
    """
    if isinstance(dataset, BaseDataset):
        return _describe(dataset, _summary_table(dataset.paradigm))
    cls = _dataset_class(dataset)
    row = next(r for r in _catalog_rows("imagery") if r["name"] == cls.__name__)
    return copy.deepcopy(row)


@functools.lru_cache(maxsize=None)
def _catalog_rows(paradigm):
    summary = _summary_table(paradigm)
    rows = []
    for cls in _dataset_classes():
        dataset = _instantiate(cls)
        if dataset is not None and dataset.paradigm == paradigm:
            rows.append(_describe(dataset, summary))
    if paradigm == "imagery":
        rows.append(_describe(SimulatedMI(), summary))
    if not rows:
        instances = (_instantiate(cls) for cls in _dataset_classes())
        known = sorted({d.paradigm for d in instances if d is not None})
        raise ValueError(f"No dataset has paradigm {paradigm!r}; use one of {known}.")
    return tuple(sorted(rows, key=lambda row: row["name"].lower()))


@functools.lru_cache(maxsize=None)
def _dataset_classes():
    """MOABB's concrete dataset classes, without fakes and deprecated aliases."""
    from moabb.utils import aliases_list  # (old name, new name, version)

    deprecated = {alias[0] for alias in aliases_list}
    return tuple(
        cls
        for name, cls in inspect.getmembers(moabb.datasets, inspect.isclass)
        if issubclass(cls, BaseDataset)
        and not inspect.isabstract(cls)
        and name not in deprecated
        # FakeDataset's constructor creates folders and sets env variables.
        and not cls.__module__.startswith("moabb.datasets.fake")
    )


@functools.lru_cache(maxsize=None)
def _instantiate(cls):
    """Default instance of ``cls``, or None if it needs arguments or fails."""
    try:
        # Only reading attributes: constructors' deprecation chatter is noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls()
    except Exception as err:  # any third-party constructor failure: skip it
        logger.debug("Skipping dataset %s: %r", cls.__name__, err)
        return None


@functools.lru_cache(maxsize=None)
def _summary_table(paradigm):
    try:
        return get_summary_table(paradigm)
    except (OSError, ValueError):  # no summary shipped for this paradigm
        return pd.DataFrame()


def _describe(dataset, summary):
    """Catalog row of ``dataset``, with plain Python values only."""
    cls = type(dataset)
    name = cls.__name__
    meta = getattr(dataset, "METADATA", None)
    acq = getattr(meta, "acquisition", None)
    row_csv = summary.loc[name] if name in summary.index else {}

    n_channels = None
    if acq is not None:  # EEG channels only: what decoders see
        n_channels = acq.channel_types.get("eeg", acq.n_channels)
    sfreq = getattr(acq, "sampling_rate", None)
    trials = _as_int(row_csv.get("#Trials / class"))
    if trials is None and meta is not None and meta.experiment.trials_per_class:
        counts = set(meta.experiment.trials_per_class.values())
        trials = _as_int(counts.pop()) if len(counts) == 1 else None
    subjects = [_plain(s) for s in dataset.all_subjects]
    doi = dataset.doi or getattr(getattr(meta, "documentation", None), "doi", None)
    return {
        "name": name,
        "code": dataset.code,
        "n_subjects": len(subjects),
        "subjects": subjects,
        "n_sessions": _as_int(dataset.n_sessions),
        "n_channels": _as_int(n_channels) or _as_int(row_csv.get("#Chan")),
        "sfreq": _as_float(sfreq) or _as_float(row_csv.get("Freq (Hz)")),
        "classes": list(dataset.event_id),
        "n_trials_per_class": trials,
        "interval": [float(t) for t in dataset.interval],
        "doi": doi,
        "reference": _reference(cls, meta),
    }


def _reference(cls, meta):
    """First bibliography entry of the class docstring, else authors + year."""
    lines = (inspect.getdoc(cls) or "").splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"\s*\.\. \[\w+\]\s*(.*)", line)
        if match:
            parts = [match.group(1)]
            for following in lines[i + 1 :]:
                if not following.strip() or following.lstrip().startswith(".. "):
                    break
                parts.append(following)
            return " ".join(" ".join(parts).split()) or None
    doc = getattr(meta, "documentation", None)
    if doc is not None and doc.investigators:
        authors = doc.investigators[0]
        if len(doc.investigators) > 1:
            authors += " et al."
        year = f" ({doc.publication_year})" if doc.publication_year else ""
        return f"{authors}{year}" + (f", doi:{doc.doi}" if doc.doi else "")
    return None


#: SimulatedMI's MOABB code: the class name and a hash of its parameters.
_SIMULATED_CODE = re.compile(r"^SimulatedMI-([0-9a-f]{6,})$")


def display_name(dataset_or_name, *, distinguish=False):
    """The one name a dataset is shown by: its catalog name.

    Tables, figures, exports, the chat and the ``dataset`` column of
    benchmark results all name a dataset by this function, so that one
    dataset never appears under two names (MOABB's class name
    ``"PhysionetMI"`` beside its code ``"PhysionetMotorImagery"``).

    Parameters
    ----------
    dataset_or_name : str | moabb.datasets.base.BaseDataset | type
        A dataset instance or class, or any name it went by: catalog (class)
        name, MOABB code (``"PhysionetMotorImagery"``, as in journals written
        before this name was unified), or SimulatedMI's code with its
        parameter hash (``"SimulatedMI-6b48168cb2"``). A name that is no
        known dataset (e.g. a user's own dataset class) is returned as given.
    distinguish : bool
        Keep what tells two differently-parameterised :class:`SimulatedMI`
        datasets apart: ``"SimulatedMI (parameters 6b48168cb2)"``, which
        says what the suffix is. Use it only where such datasets are shown
        side by side; every other dataset's name is the same either way.

    Returns
    -------
    name : str
        E.g. ``"PhysionetMI"``, ``"BNCI2014_001"``, ``"SimulatedMI"``.
    """
    if isinstance(dataset_or_name, BaseDataset):
        name, code = type(dataset_or_name).__name__, dataset_or_name.code
    elif isinstance(dataset_or_name, type):
        return dataset_or_name.__name__
    else:
        name = code = str(dataset_or_name)
    simulated = _SIMULATED_CODE.match(code)
    if simulated:
        return (f"SimulatedMI (parameters {simulated.group(1)})" if distinguish
                else "SimulatedMI")
    if isinstance(dataset_or_name, BaseDataset):
        return name
    try:
        return _dataset_class(name).__name__
    except ValueError:  # not a catalogued dataset: its own name is all we have
        return name


def _dataset_class(name):
    if not isinstance(name, str):
        raise TypeError(f"Dataset name must be a str, got {type(name).__name__}.")
    classes = {cls.__name__: cls for cls in (*_dataset_classes(), SimulatedMI)}
    index = {}
    for row in _catalog_rows("imagery"):
        cls = classes[row["name"]]
        index.setdefault(_key(row["name"]), cls)
        index.setdefault(_key(row["code"]), cls)
    if _key(name) in index:
        return index[_key(name)]
    names = [row["name"] for row in _catalog_rows("imagery")]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    if not close:  # case-insensitive retry, e.g. "physionet" -> PhysionetMI
        lowered = {n.lower(): n for n in names}
        matches = difflib.get_close_matches(
            name.lower(), list(lowered), n=3, cutoff=0.5
        )
        close = [lowered[match] for match in matches]
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"Unknown motor-imagery dataset {name!r}.{hint} Valid names (class "
        f"names or MOABB codes, any case): {', '.join(names)}."
    )


def _key(name):
    # "BNCI2014_001", "BNCI2014-001" and "bnci2014001" all name one dataset.
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _as_int(value):
    try:
        number = float(value)
    except (TypeError, ValueError):  # None, "varies", "7 or 11"
        return None
    return int(number) if np.isfinite(number) and number == int(number) else None


def _as_float(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def prepare_dataset(dataset, paradigm):
    """Copy of ``dataset`` that loads only the recordings ``paradigm`` uses.

    MOABB's :class:`~moabb.datasets.PhysionetMI` reads both the left/right
    hand runs (4, 8, 12 for imagery) and the hands/feet runs (6, 10, 14) of
    every subject, although a left/right paradigm only uses the former. The
    copy skips runs whose events the paradigm does not use, which halves
    loading time and the files that must be on disk. Other datasets are
    copied unchanged.

    Parameters
    ----------
    dataset : moabb.datasets.base.BaseDataset
        The dataset; it is not modified.
    paradigm : moabb.paradigms.base.BaseParadigm
        The paradigm that will load it, e.g.
        :class:`~moabb.paradigms.LeftRightImagery`.

    Returns
    -------
    dataset : moabb.datasets.base.BaseDataset
        A deep copy, possibly with fewer runs.
    """
    dataset = copy.deepcopy(dataset)
    if isinstance(dataset, PhysionetMI) and paradigm.is_valid(dataset):
        # ``used_events`` may set attributes on the paradigm: ask a copy.
        used = set(copy.deepcopy(paradigm).used_events(dataset))
        # Hand runs hold rest/left_hand/right_hand, feet runs rest/hands/feet.
        if not used & {"rest", "hands", "feet"}:
            dataset.feet_runs = []
        if not used & {"rest", "left_hand", "right_hand"}:
            dataset.hand_runs = []
    return dataset


def check_data_available(dataset, subjects, download=None):
    """Raise early if a subject's files are known missing or damaged.

    A cheap on-disk check, without network: for
    :class:`~moabb.datasets.PhysionetMI` every needed EDF file is looked up
    where MNE/MOABB store them,
    ``$MNE_DATA/MNE-eegbci-data/files/eegmmidb/1.0.0/S{subject:03d}/
    S{subject:03d}R{run:02d}.edf``, and the header of each file on disk is
    checked against its size (:func:`check_edf_file`), so an empty or
    truncated file is named instead of being read silently short.
    :class:`SimulatedMI` is always available; other datasets are not
    pre-checked (see :func:`catch_missing_data`). Nothing is created on disk.

    Parameters
    ----------
    dataset : moabb.datasets.base.BaseDataset
        The dataset, configured as it will be loaded (see
        :func:`prepare_dataset`).
    subjects : list of int
        Subjects to check; each must belong to the dataset.
    download : bool | None
        Whether missing files may be downloaded by MOABB. ``None`` (default)
        treats a missing file as an error when a data folder is configured
        (``MNE_DATA`` or ``MNE_DATASETS_EEGBCI_PATH``): a folder the user
        manages holds the data, so a missing file is an error rather than a
        download. ``True`` leaves MOABB to download missing files; ``False``
        never lets the network be needed. Files on disk are checked for
        damage in every case.

    Raises
    ------
    ValueError
        If a subject does not belong to the dataset.
    DataNotAvailableError
        If a needed file is missing and ``download`` does not allow fetching.
    DataDamagedError
        If a needed file is on disk but empty, truncated or not EDF.
    """
    for subject in subjects:
        if subject not in dataset.subject_list:
            raise ValueError(
                f"{type(dataset).__name__} has no subject {subject!r}; valid "
                f"subjects are {_span(dataset.subject_list)}."
            )
    if not isinstance(dataset, PhysionetMI):
        return
    configured = _eegbci_root()
    root = configured or _default_data_root()
    may_download = download or (download is None and configured is None)
    for subject in subjects:
        expected = physionet_files(dataset, subject, root)
        missing = [path for path in expected if not path.is_file()]
        for path in expected:
            if path.is_file():
                check_edf_file(path, dataset=dataset, subject=subject)
        if missing and not may_download:
            raise DataNotAvailableError(
                f"{_dataset_label(dataset)} data for subject {subject} are not "
                f"on disk: {len(missing)} of {len(expected)} files missing, "
                f"expected at\n  " + "\n  ".join(map(str, missing)) + "\n"
                f"To fix: set MNE_DATA to a folder that holds "
                f"{_EEGBCI_DIR}/S{subject:03d}/ (currently {root}), or connect "
                f"to the internet and load with download=True so MOABB "
                f"downloads the files there."
            )


def physionet_files(dataset, subject, root=None):
    """The EDF files MOABB reads for one PhysionetMI subject, as configured.

    Parameters
    ----------
    dataset : moabb.datasets.PhysionetMI
        The dataset; its ``hand_runs`` and ``feet_runs`` decide the runs.
    subject : int
        The subject.
    root : path-like | None
        The data folder (``MNE_DATA``); the configured one when None.

    Returns
    -------
    paths : list of pathlib.Path
        One path per run, whether or not the file exists.
    """
    root = Path(root) if root is not None else (_eegbci_root() or _default_data_root())
    return [
        root / _EEGBCI_DIR / f"S{subject:03d}" / f"S{subject:03d}R{run:02d}.edf"
        for run in sorted(dataset.hand_runs + dataset.feet_runs)
    ]


def check_edf_file(path, *, dataset=None, subject=None):
    """Check that an EDF/BDF file is complete, from its header, cheaply.

    Reads only the header (256 bytes plus 256 per signal) and compares the
    size it implies, ``header bytes + records x bytes per record``, with the
    file's size: MNE reads a truncated file without complaint (the missing
    records, and the trials in them, are silently dropped) and an empty one
    fails with "Bad EDF file provided." without naming it.

    Parameters
    ----------
    path : path-like
        The ``.edf`` (16-bit samples) or ``.bdf`` (24-bit) file.
    dataset : moabb.datasets.base.BaseDataset | None
        For the message only.
    subject : int | None
        For the message only.

    Raises
    ------
    DataDamagedError
        Naming the file and what is wrong: empty, shorter than its header,
        an unreadable header field, or truncated ("header says N records of
        B bytes, the file holds M"). Extra bytes after the last record are
        tolerated (readers ignore them).
    """
    path = Path(path)
    size = path.stat().st_size
    who = ""
    if dataset is not None:
        who = f"{_dataset_label(dataset)}" + (f" subject {subject}" if subject else "") + ": "
    fix = (
        f"To fix: delete {path.name} and let MOABB download it again (load with "
        f"download=True, online), or copy an intact copy to {path}."
    )

    def damaged(problem):
        return DataDamagedError(f"{who}data file {path} is damaged: {problem}.\n{fix}")

    if size == 0:
        raise damaged("it is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(256)
        if len(head) < 256:
            raise damaged(f"it holds {size} bytes, less than the 256-byte EDF header")
        try:
            header_bytes = int(head[184:192].decode("ascii").strip())
            n_records = int(head[236:244].decode("ascii").strip())
            n_signals = int(head[252:256].decode("ascii").strip())
        except ValueError:
            raise damaged("its header is not an EDF header (unreadable sizes)") from None
        if n_signals < 1 or header_bytes != 256 * (n_signals + 1):
            raise damaged(
                f"its header announces {n_signals} signals and {header_bytes} header "
                "bytes, which do not agree"
            )
        if size < header_bytes:
            raise damaged(
                f"it holds {size} bytes, less than its own {header_bytes}-byte header"
            )
        # "nr of samples in each data record": the 8th per-signal field, after
        # 216 bytes of per-signal fields (label, transducer, ...) per signal.
        fh.seek(256 + 216 * n_signals)
        field = fh.read(8 * n_signals)
    try:
        samples = [int(field[8 * i:8 * i + 8].decode("ascii").strip())
                   for i in range(n_signals)]
    except ValueError:
        raise damaged("its header's samples-per-record fields are unreadable") from None
    bytes_per_sample = 3 if head[:1] == b"\xff" else 2  # BDF: 24-bit samples
    record_bytes = sum(samples) * bytes_per_sample
    if record_bytes <= 0:
        raise damaged("its header announces empty data records")
    held = (size - header_bytes) // record_bytes
    if n_records == -1:  # allowed while recording: the size decides
        if (size - header_bytes) % record_bytes:
            raise damaged(
                f"its last data record is incomplete ({(size - header_bytes) % record_bytes}"
                f" of {record_bytes} bytes)"
            )
        return
    if held < n_records:
        raise damaged(
            f"it is truncated: the header says {n_records} data records of "
            f"{record_bytes} bytes ({header_bytes + n_records * record_bytes} bytes in "
            f"all), the file holds {size} bytes, {held} complete records"
        )


def expected_trials(dataset, paradigm):
    """How many trials one subject should yield under ``paradigm``.

    Parameters
    ----------
    dataset : moabb.datasets.base.BaseDataset
        The dataset, as it will be loaded (see :func:`prepare_dataset`).
    paradigm : moabb.paradigms.base.BaseParadigm
        The paradigm.

    Returns
    -------
    expected : tuple of (int, bool, str) | None
        ``(count, exact, source)``: the count, whether it is exact (every
        subject has exactly that many: :class:`SimulatedMI`, PhysioNet's 15
        trials per run) or the approximate figure MOABB reports, and where it
        comes from, for messages. None when unknown.
    """
    used = set(copy.deepcopy(paradigm).used_events(dataset))
    if isinstance(dataset, PhysionetMI):
        if "rest" in used:  # rest periods are not cued trials: no fixed count
            return None
        runs = (len(dataset.hand_runs) if used & {"left_hand", "right_hand"} else 0) + (
            len(dataset.feet_runs) if used & {"hands", "feet"} else 0)
        return (runs * _PHYSIONET_TRIALS_PER_RUN, True,
                f"{runs} runs x {_PHYSIONET_TRIALS_PER_RUN} trials")
    if isinstance(dataset, SimulatedMI):
        per_class = dataset.n_trials * dataset.n_runs * dataset.n_sessions
        return (per_class * len(used), True,
                f"{len(used)} classes x {per_class} trials")
    try:
        per_class = dataset_info(dataset).get("n_trials_per_class")
    except Exception:  # a custom dataset without metadata: unknown
        return None
    if not per_class:
        return None
    return (int(per_class) * len(used), False,
            f"MOABB's summary: about {per_class} trials per class x {len(used)} classes")


def trial_count_warning(dataset, paradigm, subject, n_trials):
    """A warning when a subject yields fewer trials than expected, else None.

    Parameters
    ----------
    dataset, paradigm
        As loaded (see :func:`expected_trials`).
    subject : int
        The subject, for the message.
    n_trials : int
        Trials the subject yielded.

    Returns
    -------
    warning : str | None
        One sentence naming the dataset, subject, counts and a likely cause.
        For approximate expectations only a shortfall of more than 10 %
        warns.
    """
    expected = expected_trials(dataset, paradigm)
    if expected is None:
        return None
    count, exact, source = expected
    if n_trials >= (count if exact else 0.9 * count):
        return None
    return (
        f"{_dataset_label(dataset)} subject {subject} yielded {n_trials} trials, "
        f"fewer than the {count} expected ({source}): a data file may be truncated "
        "or runs missing; its scores rest on less data."
    )


@contextlib.contextmanager
def catch_missing_data(dataset, subjects):
    """Turn download and missing-file failures into :class:`DataNotAvailableError`.

    Use around any MOABB loading call. Without network, MOABB (through
    pooch/requests) fails on a missing file with a connection error; this
    re-raises it, chained, as one error that says what is missing and how
    to fix it.

    Parameters
    ----------
    dataset : moabb.datasets.base.BaseDataset
        The dataset being loaded.
    subjects : list of int
        The subjects being loaded, for the message.

    Examples
    --------
    >>> with catch_missing_data(dataset, [1]):  # doctest: +SKIP
    ...     X, y, meta = paradigm.get_data(dataset, subjects=[1])
    """
    created = _absent_subject_dirs(dataset, subjects)
    try:
        yield
    except _MISSING_DATA_ERRORS as err:
        _remove_if_empty(created)
        which = "subject" if len(subjects) == 1 else "subjects"
        root = _eegbci_root() if isinstance(dataset, PhysionetMI) else None
        root = root or _data_root() or _default_data_root()
        raise DataNotAvailableError(
            f"{_dataset_label(dataset)} data for {which} "
            f"{', '.join(map(str, subjects))} could not be loaded: not on disk "
            f"under {root} and not downloadable ({type(err).__name__}: {err}).\n"
            f"To fix: set MNE_DATA to a folder holding the files in MOABB's "
            f"layout, or connect to the internet so MOABB downloads them."
        ) from err


def _absent_subject_dirs(dataset, subjects):
    """PhysionetMI subject folders not on disk yet (a failed fetch may create them)."""
    if not isinstance(dataset, PhysionetMI):
        return []
    root = (_eegbci_root() or _default_data_root()) / _EEGBCI_DIR
    # The fetcher creates the whole chain, so remember absent parents too.
    chain = [root, *root.parents][: len(_EEGBCI_DIR.parts)]
    dirs = [root / f"S{s:03d}" for s in subjects]
    return [d for d in dirs + chain if not d.exists()]


def _remove_if_empty(dirs):
    # Children before parents, so an emptied parent can go too.
    for folder in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty, or already gone
            folder.rmdir()


def load_epochs_array(dataset, paradigm, subject, download=None):
    """Load one subject's epochs as arrays, with clear errors on missing data.

    Combines :func:`prepare_dataset`, :func:`check_data_available` and
    ``paradigm.get_data`` inside :func:`catch_missing_data`.

    Parameters
    ----------
    dataset : moabb.datasets.base.BaseDataset
        The dataset (not modified).
    paradigm : moabb.paradigms.base.BaseParadigm
        E.g. :class:`~moabb.paradigms.LeftRightImagery`.
    subject : int
        The subject to load.
    download : bool | None
        Whether MOABB may download missing files; see
        :func:`check_data_available`.

    Returns
    -------
    X : ndarray, shape (n_trials, n_channels, n_times)
        Epochs, in µV for MOABB datasets (or with a trailing filter-bank
        axis for filter-bank paradigms).
    y : ndarray, shape (n_trials,)
        Class labels (event names).
    metadata : pandas.DataFrame
        One row per trial with ``subject``, ``session`` and ``run``.

    Raises
    ------
    ValueError
        If the paradigm cannot be applied to the dataset or the subject does
        not exist.
    DataNotAvailableError
        If the data are not on disk and cannot be downloaded.
    """
    if not paradigm.is_valid(dataset):
        raise ValueError(
            f"{_dataset_label(dataset)} cannot be used with "
            f"{type(paradigm).__name__}: the dataset has events "
            f"{sorted(dataset.event_id)} and paradigm {dataset.paradigm!r}, the "
            f"paradigm needs {getattr(paradigm, 'events', None) or 'other events'}. "
            f"Pick a dataset from catalog() whose classes match."
        )
    dataset = prepare_dataset(dataset, paradigm)
    check_data_available(dataset, [subject], download=download)
    with catch_missing_data(dataset, [subject]):
        return paradigm.get_data(dataset, subjects=[subject])


def _dataset_label(dataset):
    name = type(dataset).__name__
    return name if dataset.code == name else f"{name} (code {dataset.code!r})"


def _data_root():
    root = mne.get_config("MNE_DATA")
    return Path(root).expanduser() if root else None


def _eegbci_root():
    # MNE and MOABB prefer the dataset-specific folder over MNE_DATA.
    root = mne.get_config("MNE_DATASETS_EEGBCI_PATH")
    return Path(root).expanduser() if root else _data_root()


def _default_data_root():
    return Path("~/mne_data").expanduser()  # where MNE/MOABB download by default


def _span(subjects):
    subjects = list(subjects)
    if all(isinstance(s, int) for s in subjects) and subjects == list(
        range(subjects[0], subjects[0] + len(subjects))
    ):
        return f"{subjects[0]}..{subjects[-1]}"
    return str(subjects)
