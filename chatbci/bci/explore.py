"""Exploration of motor-imagery EEG, one subject at a time.

Each analysis returns an :class:`Exploration`: a JSON-serialisable numeric
``summary`` (for a human reading a report, or an LLM calling a tool) and a
matplotlib ``figure``. The heavy lifting is MNE's: Morlet time-frequency
power comes from :meth:`mne.Epochs.compute_tfr`, spectra from
:meth:`mne.Epochs.compute_psd`, topographies from
:func:`mne.viz.plot_topomap`.

Conventions
-----------
* Time 0 of every epoch is the onset of the dataset's imagery interval
  (``dataset.interval[0]`` after the trial event, the cue in most MOABB
  datasets); negative times are the pre-cue rest used as a baseline.
* ERD/ERS are percent changes of power from the baseline (Pfurtscheller &
  Lopes da Silva, 1999): negative values are event-related
  desynchronisation (ERD, power decrease), positive values event-related
  synchronisation (ERS, power increase).
* Two-class contrasts (effect sizes, AUC, PSD differences) are computed
  between the *first* and the *second* class of ``classes`` (by default the
  first two classes of ``epochs.event_id``, e.g. ``left_hand`` vs
  ``right_hand``); further classes are shown in figures and per-class means
  but do not enter the contrast. A positive contrast means *more* power in
  the first class.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import mne
import numpy as np
from matplotlib.figure import Figure
from mne.utils import logger, verbose as _verbose, warn
from sklearn.metrics import roc_auc_score

from .figures import (
    DIVERGING_CMAP,
    DOUBLE_COLUMN,
    MAX_HEIGHT,
    figure_size,
    new_figure,
    figure_style,
)

__all__ = [
    "Exploration",
    "load_subject_epochs",
    "erd_ers",
    "band_power",
    "psd",
    "explore_subject",
    "DEFAULT_BANDS",
]

#: Sensorimotor frequency bands (Hz) used throughout: the mu (alpha) rhythm
#: and the beta rhythm over the motor cortex.
DEFAULT_BANDS: dict[str, tuple[float, float]] = {
    "mu": (8.0, 13.0),
    "beta": (13.0, 30.0),
}

# Contralateral / ipsilateral primary-motor electrodes of the hand classes:
# the left hand is represented in the right hemisphere (C4) and vice versa.
_HAND_SIDES = {
    "left_hand": {"contralateral": "C4", "ipsilateral": "C3"},
    "right_hand": {"contralateral": "C3", "ipsilateral": "C4"},
}

# Search range of the individual mu (alpha) peak frequency.
_MU_PEAK_RANGE = (7.0, 14.0)


# ---------------------------------------------------------------------------
# Result type and JSON helpers
# ---------------------------------------------------------------------------


@dataclass
class Exploration:
    """Result of an exploration: a numeric summary and a figure.

    Attributes
    ----------
    summary : dict
        JSON-serialisable summary (only ``dict``, ``list``, ``str``,
        ``int``, ``float``, ``bool`` and ``None``), floats rounded.
    figure : matplotlib.figure.Figure
        The figure illustrating the summary, in the project's figure style
        (:mod:`chatbci.bci.figures`). It is not registered with pyplot, so
        a notebook shows it once and it is freed with its last reference.
    """

    summary: dict
    figure: Figure

    def to_json(self, **kwargs) -> str:
        """Serialise :attr:`summary` to a JSON string.

        Parameters
        ----------
        **kwargs
            Passed to :func:`json.dumps` (e.g. ``indent=2``).

        Returns
        -------
        text : str
            The JSON text.
        """
        return json.dumps(self.summary, allow_nan=False, **kwargs)


def _round(value, decimals: int = 3):
    """Round a number to a plain python float (``None`` if not finite)."""
    value = float(value)
    if not np.isfinite(value):
        return None
    return round(value, decimals)


def _jsonable(obj: Any) -> Any:
    """Recursively convert numpy containers/scalars to plain python types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _round(obj, 4)
    return obj


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


def _check_channels(epochs: mne.BaseEpochs, channels) -> list[str]:
    """Return ``channels`` as a list, all present in ``epochs``."""
    available = list(epochs.ch_names)
    if channels is None:
        eeg = mne.pick_types(epochs.info, eeg=True, exclude=())
        if len(eeg) == 0:
            raise ValueError(
                f"The epochs have no EEG channel; pass channels explicitly. "
                f"Available channels: {', '.join(available)}"
            )
        return [available[i] for i in eeg]
    if isinstance(channels, str):
        channels = [channels]
    channels = list(channels)
    if len(channels) == 0:
        raise ValueError("channels must contain at least one channel name.")
    missing = [ch for ch in channels if ch not in available]
    if missing:
        raise ValueError(
            f"Channel(s) {missing} not found in the data. Available channels "
            f"({len(available)}): {', '.join(available)}"
        )
    return channels


def _check_bands(bands, fmin: float | None = None, fmax: float | None = None):
    """Validate ``{name: (fmin, fmax)}`` and return it with float edges."""
    if bands is None:
        bands = DEFAULT_BANDS
    if not isinstance(bands, dict) or len(bands) == 0:
        raise ValueError(
            f"bands must be a non-empty dict {{name: (fmin, fmax)}}, got {bands!r}"
        )
    out = {}
    for name, edges in bands.items():
        try:
            lo, hi = (float(e) for e in edges)
        except (TypeError, ValueError):
            raise ValueError(
                f"Band {name!r} must be a pair (fmin, fmax) in Hz, got {edges!r}"
            ) from None
        if not (0 <= lo < hi):
            raise ValueError(
                f"Band {name!r} must satisfy 0 <= fmin < fmax, got "
                f"fmin={lo:g}, fmax={hi:g} Hz"
            )
        if fmin is not None and fmax is not None and (hi < fmin or lo > fmax):
            raise ValueError(
                f"Band {name!r} ({lo:g}-{hi:g} Hz) lies outside the analysed "
                f"frequency range {fmin:g}-{fmax:g} Hz"
            )
        out[str(name)] = (lo, hi)
    return out


def _check_classes(epochs: mne.BaseEpochs, classes, n_min: int = 1) -> list[str]:
    """Classes to analyse, in order, each with at least one epoch."""
    available = list(epochs.event_id)
    if classes is None:
        classes = available
    classes = [classes] if isinstance(classes, str) else list(classes)
    unknown = [c for c in classes if c not in available]
    if unknown:
        raise ValueError(
            f"Class(es) {unknown} not found in the epochs; available: {available}"
        )
    empty = [c for c in classes if len(epochs[c]) == 0]
    if empty:
        raise ValueError(f"Class(es) {empty} have no epochs.")
    if len(classes) < n_min:
        raise ValueError(
            f"At least {n_min} classes are needed, got {classes} "
            f"(epochs have {available})"
        )
    return classes


def _task_window(epochs: mne.BaseEpochs, tmin, tmax) -> tuple[float, float]:
    """Resolve and validate a (tmin, tmax) window inside the epochs."""
    tmin = float(epochs.tmin if tmin is None else tmin)
    tmax = float(epochs.tmax if tmax is None else tmax)
    # Allow half a sample of slack: epochs.tmax is sample-aligned.
    tol = 0.5 / epochs.info["sfreq"]
    if tmin >= tmax or tmin < epochs.tmin - tol or tmax > epochs.tmax + tol:
        raise ValueError(
            f"The window ({tmin:g}, {tmax:g}) s must be increasing and lie "
            f"within the epochs ({epochs.tmin:g}, {epochs.tmax:g}) s"
        )
    return tmin, min(tmax, float(epochs.tmax))


def _welch_psd(epochs, fmin, fmax, tmin, tmax, channels, verbose):
    """Welch PSD per epoch over the task window: (freqs, µV²/Hz array)."""
    spectrum = epochs.compute_psd(
        method="welch", fmin=fmin, fmax=fmax, tmin=tmin, tmax=tmax, picks=channels,
        verbose=verbose, **_welch_kwargs(epochs, tmin, tmax),
    )
    return spectrum.freqs, spectrum.get_data(picks=channels) * 1e12  # V²/Hz -> µV²/Hz


def _welch_kwargs(epochs: mne.BaseEpochs, tmin: float, tmax: float) -> dict:
    """Welch parameters for a task window of a few seconds.

    1-s Hann segments with 50 % overlap give several segments per epoch
    (a smoother estimate than one long segment) at 1 Hz resolution,
    zero-padded to 2 s so that spectra are sampled every 0.5 Hz.
    """
    sfreq = epochs.info["sfreq"]
    n_times = int(round((tmax - tmin) * sfreq)) + 1
    n_per_seg = int(min(n_times, round(sfreq)))
    n_fft = int(max(n_per_seg, round(2.0 * sfreq)))
    return dict(n_fft=n_fft, n_per_seg=n_per_seg, n_overlap=n_per_seg // 2)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _prepare_dataset(dataset, classes):
    """Copy of ``dataset`` restricted to the runs that contain ``classes``.

    PhysioNet EEGMMIDB stores the left/right-hand classes and the
    hands/feet classes in different runs; loading the feet runs for a
    left/right analysis would only cost time. The project-wide
    :func:`chatbci.bci.datasets.prepare_dataset` knows these rules; the
    fallback (for an installation without it) does the same for PhysionetMI.
    """
    from moabb.paradigms import MotorImagery

    try:
        from chatbci.bci.datasets import prepare_dataset
    except ImportError:
        prepare_dataset = None
    if prepare_dataset is not None:
        paradigm = MotorImagery(events=list(classes), n_classes=len(classes))
        return prepare_dataset(dataset, paradigm)
    if hasattr(dataset, "feet_runs") and not {"feet", "hands", "rest"} & set(classes):
        # Copy so that the caller's dataset object is left untouched.
        dataset = copy.copy(dataset)
        dataset.feet_runs = []
    return dataset


def _find_cue_events(raw, event_id: dict, interval, verbose=None) -> np.ndarray:
    """Events whose sample is the onset of the imagery interval.

    Follows MOABB's own convention (``RawToEvents``): the stim channel, if
    any, marks the trial start and the imagery starts ``interval[0]`` later;
    annotations already mark the start of the imagery interval.
    """
    stim = mne.pick_types(raw.info, stim=True, exclude=())
    if len(stim):
        events = mne.find_events(raw, shortest_event=0, verbose=verbose)
        events[:, 0] += int(round(interval[0] * raw.info["sfreq"]))
    else:
        try:
            events, _ = mne.events_from_annotations(
                raw, event_id=event_id, verbose=verbose
            )
        except ValueError:  # none of the wanted annotations in this run
            events = np.zeros((0, 3), int)
    return events[np.isin(events[:, 2], list(event_id.values()))]


@_verbose
def load_subject_epochs(
    dataset,
    subject: int,
    classes=("left_hand", "right_hand"),
    tmin: float = -1.5,
    tmax: float | None = None,
    l_freq: float | None = 1.0,
    h_freq: float | None = 40.0,
    resample: float | None = None,
    *,
    verbose=None,
) -> mne.Epochs:
    """Load one subject of a MOABB dataset as band-passed EEG epochs.

    All runs of all sessions are read with ``dataset.get_data``, filtered
    run by run (so no filter transient straddles a run boundary), epoched
    and concatenated.

    Parameters
    ----------
    dataset : moabb.datasets.base.BaseDataset
        A MOABB motor-imagery dataset (e.g. ``PhysionetMI(imagined=True)``).
        It is not modified.
    subject : int
        Subject number (see ``dataset.subject_list``).
    classes : sequence of str
        Class names, keys of ``dataset.event_id``. Their order is kept in
        ``epochs.event_id`` and defines the contrast of :func:`band_power`
        and :func:`psd` (first vs second class).
    tmin : float
        Start of the epochs in seconds relative to the imagery onset
        (``dataset.interval[0]``). Negative values include pre-cue rest, the
        baseline of :func:`erd_ers`.
    tmax : float | None
        End of the epochs relative to the imagery onset. ``None`` uses the
        end of the dataset's imagery interval,
        ``dataset.interval[1] - dataset.interval[0]``.
    l_freq, h_freq : float | None
        Band-pass edges in Hz passed to :meth:`mne.io.Raw.filter`; ``None``
        disables that side.
    resample : float | None
        New sampling frequency in Hz, or ``None`` to keep the original.
    verbose : bool | str | int | None
        Control verbosity of the logging output (see :func:`mne.verbose`).

    Returns
    -------
    epochs : mne.Epochs
        EEG-only epochs (with the dataset's montage, if it has one), with
        ``event_id`` restricted to ``classes``. A warning is emitted when the
        subject yields fewer trials than the dataset should have
        (:func:`chatbci.bci.datasets.trial_count_warning`).

    Raises
    ------
    chatbci.bci.datasets.DataNotAvailableError
        If the subject's files are not on disk and cannot be downloaded
        (nothing is created on disk), or are damaged
        (:class:`~chatbci.bci.datasets.DataDamagedError`, naming the file).
    """
    classes = [classes] if isinstance(classes, str) else list(classes)
    if len(classes) == 0:
        raise ValueError("classes must contain at least one class name.")
    available = dict(dataset.event_id)
    unknown = [c for c in classes if c not in available]
    if unknown:
        raise ValueError(
            f"Class(es) {unknown} not in the events of {dataset.code}; "
            f"available classes: {sorted(available)}"
        )
    event_id = {c: int(available[c]) for c in classes}
    interval = dataset.interval
    if tmax is None:
        tmax = float(interval[1] - interval[0])
    if tmin >= tmax:
        raise ValueError(f"tmin ({tmin:g} s) must be smaller than tmax ({tmax:g} s)")

    dataset = _prepare_dataset(dataset, classes)
    # Files missing or damaged: one clear error naming them, before MOABB
    # tries (and fails) to download and leaves empty folders behind.
    from chatbci.bci.datasets import catch_missing_data, check_data_available

    check_data_available(dataset, [subject])
    with catch_missing_data(dataset, [subject]):
        data = dataset.get_data(subjects=[subject])[subject]

    all_epochs = []
    for session, runs in data.items():
        for run, raw in runs.items():
            events = _find_cue_events(raw, event_id, interval, verbose=verbose)
            if len(events) == 0:
                logger.info(f"Session {session} run {run}: no {classes} events")
                continue
            # EEG only: the copy also protects a dataset's in-memory cache.
            raw = raw.copy().pick("eeg", exclude=())
            if raw.get_montage() is None:
                _set_standard_montage(raw, verbose=verbose)
            if l_freq is not None or h_freq is not None:
                raw.filter(l_freq, h_freq, picks="eeg", verbose=verbose)
            if resample is not None:
                raw, events = raw.resample(resample, events=events, verbose=verbose)
            epochs = mne.Epochs(
                raw,
                events,
                event_id=event_id,
                tmin=tmin,
                tmax=tmax,
                baseline=None,
                preload=True,
                on_missing="ignore",
                reject_by_annotation=True,
                verbose=verbose,
            )
            if len(epochs):
                all_epochs.append(epochs)
    if not all_epochs:
        raise ValueError(
            f"No epochs of classes {classes} found for subject {subject} of "
            f"{dataset.code}."
        )
    epochs = (
        mne.concatenate_epochs(all_epochs, add_offset=True, verbose=verbose)
        if len(all_epochs) > 1
        else all_epochs[0]
    )
    counts = {c: len(epochs[c]) for c in classes}
    logger.info(f"Subject {subject}: {counts} epochs")
    from moabb.paradigms import MotorImagery

    from chatbci.bci.datasets import trial_count_warning

    short = trial_count_warning(
        dataset, MotorImagery(events=list(classes), n_classes=len(classes)), subject,
        len(epochs))
    if short:
        warn(short)
    return epochs


def _set_standard_montage(raw, verbose=None):
    """Give 10-05 positions to channels named like the 10-05 system."""
    # MNE 1.13 renamed "standard_1005" (same positions) and deprecated it.
    name = (
        "colin27_1005"
        if "colin27_1005" in mne.channels.get_builtin_montages()
        else "standard_1005"
    )
    montage = mne.channels.make_standard_montage(name)
    lower = {name.lower(): name for name in montage.ch_names}
    if any(ch.lower() in lower for ch in raw.ch_names):
        raw.set_montage(
            montage, match_case=False, on_missing="ignore", verbose=verbose
        )


# ---------------------------------------------------------------------------
# ERD / ERS
# ---------------------------------------------------------------------------


def _band_mask(freqs, band):
    mask = (freqs >= band[0]) & (freqs <= band[1])
    return mask


@_verbose
def erd_ers(
    epochs: mne.BaseEpochs,
    channels=("C3", "Cz", "C4"),
    freqs=None,
    baseline=(-1.0, 0.0),
    n_cycles=None,
    decim: int = 2,
    *,
    bands=None,
    task_window=(0.5, None),
    classes=None,
    lateralisation_threshold: float = 5.0,
    verbose=None,
) -> Exploration:
    """Event-related (de)synchronisation per class in a time-frequency map.

    Morlet power is averaged over the epochs of each class
    (:meth:`mne.Epochs.compute_tfr` with ``average=True``, i.e. total power,
    evoked and induced) and expressed as percent change from the pre-cue
    baseline: ``100 * (P - B) / B``. ERD (power decrease during imagery) is
    negative, ERS positive.

    Parameters
    ----------
    epochs : mne.Epochs
        Epochs with pre-cue rest (``epochs.tmin <= baseline[0]``), e.g. from
        :func:`load_subject_epochs`.
    channels : sequence of str
        Channels to analyse.
    freqs : array-like | None
        Frequencies in Hz; ``None`` uses ``np.arange(6, 35, 1)``.
    baseline : tuple of float
        Baseline (start, end) in seconds relative to the cue.
    n_cycles : float | array-like | None
        Wavelet cycles; ``None`` uses ``freqs / 2`` (a constant ~80 ms
        temporal standard deviation at every frequency).
    decim : int
        Decimation of the time axis of the TFR.
    bands : dict | None
        ``{name: (fmin, fmax)}`` bands summarised; ``None`` uses
        :data:`DEFAULT_BANDS` (mu 8-13 Hz, beta 13-30 Hz).
    task_window : tuple of float | None
        Window (start, end) in seconds over which ERD is averaged. An end of
        ``None`` stops two wavelet standard deviations before the end of the
        epochs, where zero-padding of the convolution would otherwise fake
        an ERD.
    classes : sequence of str | None
        Classes to show; ``None`` uses all classes of ``epochs.event_id``.
    lateralisation_threshold : float
        Minimum contralateral-minus-ipsilateral difference, in percentage
        points of ERD, for a hand class to count as contralateral: class
        averages of a few dozen trials differ by a few points by chance
        alone (e.g. in subjects without any modulation).
    verbose : bool | str | int | None
        Control verbosity of the logging output (see :func:`mne.verbose`).

    Returns
    -------
    exploration : Exploration
        ``summary`` has keys ``erd`` (``{class: {channel: {band: percent}}}``,
        mean percent change over ``task_window``), ``strongest_erd``
        (``class``, ``channel``, ``band``, ``value``: the most negative
        entry of ``erd``, ``None`` if none is negative), ``lateralisation``
        (per band: ``contra_minus_ipsi``, the contralateral minus
        ipsilateral ERD of each hand class -- C4 - C3 for ``left_hand``,
        C3 - C4 for ``right_hand`` -- negative when the ERD is stronger
        contralaterally; ``contralateral_by_class``, whether it is below
        ``-lateralisation_threshold``; and ``contralateral``, whether that
        holds for every hand class; ``None`` without C3 and C4 or without
        hand classes),
        plus the parameters used. ``figure`` is a grid of classes x channels
        TF maps with a diverging colormap centred on 0 and the cue at t=0.
    """
    channels = _check_channels(epochs, channels)
    classes = _check_classes(epochs, classes)
    freqs = np.arange(6.0, 35.0, 1.0) if freqs is None else np.asarray(freqs, float)
    if freqs.ndim != 1 or len(freqs) == 0 or np.any(freqs <= 0):
        raise ValueError("freqs must be a 1D array of positive frequencies in Hz")
    nyquist = epochs.info["sfreq"] / 2.0
    if freqs.max() >= nyquist:
        raise ValueError(
            f"freqs must stay below the Nyquist frequency ({nyquist:g} Hz), "
            f"got a maximum of {freqs.max():g} Hz"
        )
    n_cycles = freqs / 2.0 if n_cycles is None else n_cycles
    bands = _check_bands(bands, freqs.min(), freqs.max())
    for name, band in bands.items():
        if not _band_mask(freqs, band).any():
            raise ValueError(
                f"No frequency of freqs falls in band {name!r} {band} Hz"
            )

    # Temporal standard deviation of each Morlet wavelet (MNE's definition).
    sigma_t = np.broadcast_to(np.asarray(n_cycles, float), freqs.shape) / (
        2.0 * np.pi * freqs
    )
    edge = 2.0 * float(sigma_t.max())
    b0, b1 = baseline
    if not (epochs.tmin <= b0 < b1 <= epochs.tmax):
        raise ValueError(
            f"baseline {baseline} s must be increasing and lie within the "
            f"epochs ({epochs.tmin:g}, {epochs.tmax:g}) s; load epochs with a "
            f"pre-cue tmin (e.g. load_subject_epochs(..., tmin={b0 - 0.5:g}))"
        )
    if b0 - epochs.tmin < edge:
        warn(
            f"The baseline starts {b0 - epochs.tmin:.2f} s after the start of "
            f"the epochs, within the wavelet edge ({edge:.2f} s): the baseline "
            "power is underestimated; load epochs with an earlier tmin."
        )
    t0, t1 = task_window if task_window is not None else (0.5, None)
    t1 = epochs.tmax - edge if t1 is None else t1
    t0, t1 = _task_window(epochs, t0, t1)

    # One AverageTFR per class; "percent" gives (P - B) / B, scaled to %.
    maps = {}
    times = None
    for cls in classes:
        tfr = epochs[cls].compute_tfr(
            method="morlet",
            freqs=freqs,
            n_cycles=n_cycles,
            picks=channels,
            decim=decim,
            average=True,
            return_itc=False,
            verbose=verbose,
        )
        tfr.apply_baseline(baseline, mode="percent", verbose=verbose)
        maps[cls] = 100.0 * tfr.get_data(picks=channels)  # (n_ch, n_freqs, n_t)
        times = tfr.times

    tmask = (times >= t0) & (times <= t1)
    erd = {
        cls: {
            ch: {
                name: _round(maps[cls][ci][_band_mask(freqs, band)][:, tmask].mean(), 2)
                for name, band in bands.items()
            }
            for ci, ch in enumerate(channels)
        }
        for cls in classes
    }
    strongest = min(
        (
            (value, cls, ch, name)
            for cls, per_ch in erd.items()
            for ch, per_band in per_ch.items()
            for name, value in per_band.items()
            # Only decreases of power are ERD; all-ERS maps have no entry.
            if value is not None and value < 0
        ),
        default=None,
    )
    strongest_erd = (
        None
        if strongest is None
        else dict(
            zip(("value", "class", "channel", "band"), strongest),
        )
    )
    summary = {
        "analysis": "erd_ers",
        "units": "% power change from baseline (negative = ERD, positive = ERS)",
        "method": "Morlet wavelets, power averaged over epochs per class",
        "channels": channels,
        "classes": classes,
        "n_epochs": {cls: len(epochs[cls]) for cls in classes},
        "bands": {k: list(v) for k, v in bands.items()},
        "baseline": [float(b0), float(b1)],
        "task_window": [_round(t0, 3), _round(t1, 3)],
        "erd": erd,
        "strongest_erd": strongest_erd,
        "lateralisation": _lateralisation(erd, bands, lateralisation_threshold),
    }
    fig = _plot_tfr_grid(maps, times, freqs, classes, channels, (t0, t1), baseline)
    return Exploration(summary=_jsonable(summary), figure=fig)


def _lateralisation(erd: dict, bands: dict, threshold: float) -> dict | None:
    """Contralateral-minus-ipsilateral ERD of the hand classes per band."""
    hands = [c for c in _HAND_SIDES if c in erd]
    if not hands or any(
        side not in erd[c] for c in hands for side in _HAND_SIDES[c].values()
    ):
        return None
    out = {}
    for name in bands:
        contrast = {}
        for cls in hands:
            contra = erd[cls][_HAND_SIDES[cls]["contralateral"]][name]
            ipsi = erd[cls][_HAND_SIDES[cls]["ipsilateral"]][name]
            contrast[cls] = (
                None if contra is None or ipsi is None else _round(contra - ipsi, 2)
            )
        by_class = {
            cls: value is not None and value <= -threshold
            for cls, value in contrast.items()
        }
        out[name] = {
            "contra_minus_ipsi": contrast,
            "contralateral_by_class": by_class,
            "contralateral": all(by_class.values()),
        }
    return out


def _plot_tfr_grid(maps, times, freqs, classes, channels, window, baseline):
    with figure_style():
        return _draw_tfr_grid(maps, times, freqs, classes, channels, window, baseline)


def _draw_tfr_grid(maps, times, freqs, classes, channels, window, baseline):
    n_rows, n_cols = len(classes), len(channels)
    # Full page width whatever the channel count; each row about as tall as
    # a panel is wide, so maps keep their proportions.
    panel = min(DOUBLE_COLUMN / max(n_cols, 1), 2.2)
    fig, axes = new_figure(
        n_rows,
        n_cols,
        figsize=(DOUBLE_COLUMN, min(0.75 * panel * n_rows + 0.5, MAX_HEIGHT)),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    # Shared symmetric colour scale (robust to a few extreme pixels) so that
    # white is "no change" in every panel.
    values = np.concatenate([m.ravel() for m in maps.values()])
    vmax = float(np.nanpercentile(np.abs(values), 98)) or 1.0
    mesh = None
    for ri, cls in enumerate(classes):
        for ci, ch in enumerate(channels):
            ax = axes[ri, ci]
            mesh = ax.pcolormesh(
                times,
                freqs,
                maps[cls][ci],
                cmap=DIVERGING_CMAP,
                vmin=-vmax,
                vmax=vmax,
                shading="nearest",
                rasterized=True,
            )
            ax.axvline(0.0, color="k", lw=0.9, ls="--")
            ax.axvspan(*baseline, color="0.5", alpha=0.12, lw=0)
            for t in window:
                ax.axvline(t, color="0.3", lw=0.6, ls=":")
            ax.set_title(f"{cls} · {ch}")
            if ri == n_rows - 1:
                ax.set_xlabel("Time from cue (s)")
            if ci == 0:
                ax.set_ylabel("Frequency (Hz)")
    fig.colorbar(mesh, ax=axes, label="Power change from baseline (%)", shrink=0.9,
                 aspect=30)
    fig.suptitle("ERD (blue) / ERS (red); dashed line: cue; grey: baseline")
    return fig


# ---------------------------------------------------------------------------
# Band power and class effect sizes
# ---------------------------------------------------------------------------


def _hedges_g(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hedges' g of ``a - b`` along axis 0 (bias-corrected Cohen's d)."""
    n1, n2 = len(a), len(b)
    pooled = np.sqrt(
        ((n1 - 1) * a.var(axis=0, ddof=1) + (n2 - 1) * b.var(axis=0, ddof=1))
        / (n1 + n2 - 2)
    )
    d = (a.mean(axis=0) - b.mean(axis=0)) / pooled
    correction = 1.0 - 3.0 / (4.0 * (n1 + n2) - 9.0)
    return d * correction


@_verbose
def band_power(
    epochs: mne.BaseEpochs,
    bands=None,
    tmin: float | None = 0.5,
    tmax: float | None = None,
    channels=None,
    *,
    classes=None,
    top_k: int = 5,
    verbose=None,
) -> Exploration:
    """Log band power per epoch and its class effect size per channel.

    Welch PSDs (:meth:`mne.Epochs.compute_psd`) of the task window are
    averaged within each band and converted to dB (``10 log10`` of
    µV²/Hz). For each channel and band the two classes are compared with
    Hedges' g and with the ROC AUC of band power as a one-feature
    classifier.

    Parameters
    ----------
    epochs : mne.Epochs
        The epochs, e.g. from :func:`load_subject_epochs`.
    bands : dict | None
        ``{name: (fmin, fmax)}`` in Hz; ``None`` uses :data:`DEFAULT_BANDS`.
    tmin, tmax : float | None
        Task window in seconds; ``None`` means the start / end of the
        epochs. The default starts 0.5 s after the cue, once the ERD has
        developed.
    channels : sequence of str | None
        Channels to analyse; ``None`` uses all EEG channels.
    classes : sequence of str | None
        The two classes to contrast, first minus second; ``None`` uses the
        first two classes of ``epochs.event_id``. Further classes only get
        per-class means (see the module notes).
    top_k : int
        Number of (channel, band) pairs listed in ``summary["top"]``.
    verbose : bool | str | int | None
        Control verbosity of the logging output (see :func:`mne.verbose`).

    Returns
    -------
    exploration : Exploration
        ``summary`` has ``mean_power`` (``{class: {channel: {band: dB}}}``),
        ``effect_size`` (``{channel: {band: g}}``), ``auc``
        (``{channel: {band: AUC}}``), ``top`` (the ``top_k`` pairs by
        ``|g|``) and ``best`` (``channel``, ``band``, ``effect_size``,
        ``auc`` of the largest ``|g|``). Sign convention: g > 0 and AUC > 0.5
        mean higher band power in the first class than in the second; with
        ``left_hand`` vs ``right_hand`` a contralateral ERD gives g < 0 over
        the right hemisphere (C4) and g > 0 over the left (C3). ``figure``
        shows topomaps of g per band (bars when the channels have no
        positions).
    """
    channels = _check_channels(epochs, channels)
    classes_all = _check_classes(epochs, classes)
    if len(classes_all) < 2:
        raise ValueError(
            f"band_power contrasts two classes; got {classes_all} "
            f"(epochs have {list(epochs.event_id)})"
        )
    cls_a, cls_b = classes_all[:2]
    tmin, tmax = _task_window(epochs, tmin, tmax)
    nyquist = epochs.info["sfreq"] / 2.0
    bands = _check_bands(bands, 0.0, nyquist)
    if top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k}")

    fmin = min(lo for lo, _ in bands.values())
    fmax = max(hi for _, hi in bands.values())
    freqs, psds = _welch_psd(epochs, fmin, fmax, tmin, tmax, channels, verbose)
    power = {}  # band -> (n_epochs, n_channels) in dB
    for name, band in bands.items():
        mask = _band_mask(freqs, band)
        if not mask.any():
            raise ValueError(
                f"Band {name!r} {band} Hz contains no frequency bin of the "
                f"Welch PSD (resolution {freqs[1] - freqs[0]:.2g} Hz); widen it."
            )
        power[name] = 10.0 * np.log10(psds[:, :, mask].mean(axis=-1))

    labels = np.array(
        [_label_of(code, epochs.event_id) for code in epochs.events[:, 2]]
    )
    in_a, in_b = labels == cls_a, labels == cls_b
    if in_a.sum() < 2 or in_b.sum() < 2:
        raise ValueError(
            f"Effect sizes need at least 2 epochs per class, got "
            f"{cls_a}: {in_a.sum()}, {cls_b}: {in_b.sum()}"
        )
    y = in_a[in_a | in_b]
    g = {name: _hedges_g(p[in_a], p[in_b]) for name, p in power.items()}
    auc = {
        name: np.array(
            [roc_auc_score(y, p[in_a | in_b][:, ci]) for ci in range(len(channels))]
        )
        for name, p in power.items()
    }

    pairs = sorted(
        (
            (abs(g[name][ci]), ch, name, g[name][ci], auc[name][ci])
            for name in bands
            for ci, ch in enumerate(channels)
            if np.isfinite(g[name][ci])
        ),
        reverse=True,
    )
    top = [
        {
            "channel": ch,
            "band": name,
            "effect_size": _round(gv, 3),
            "auc": _round(av, 3),
        }
        for _, ch, name, gv, av in pairs[:top_k]
    ]
    summary = {
        "analysis": "band_power",
        "units": "dB re 1 µV²/Hz (10 log10 of the mean Welch PSD in the band)",
        "window": [_round(tmin, 3), _round(tmax, 3)],
        "bands": {k: list(v) for k, v in bands.items()},
        "classes": classes_all,
        "contrast": [cls_a, cls_b],
        "sign_convention": (
            f"effect_size is Hedges' g of band power, {cls_a} minus {cls_b} "
            f"(pooled SD, small-sample corrected); g > 0 and auc > 0.5 mean "
            f"more power in {cls_a}. auc is the ROC AUC of band power alone "
            f"predicting {cls_a}."
        ),
        "n_epochs": {cls: len(epochs[cls]) for cls in classes_all},
        "mean_power": {
            cls: {
                ch: {
                    name: _round(power[name][labels == cls, ci].mean(), 2)
                    for name in bands
                }
                for ci, ch in enumerate(channels)
            }
            for cls in classes_all
        },
        "effect_size": {
            ch: {name: _round(g[name][ci], 3) for name in bands}
            for ci, ch in enumerate(channels)
        },
        "auc": {
            ch: {name: _round(auc[name][ci], 3) for name in bands}
            for ci, ch in enumerate(channels)
        },
        "top": top,
        "best": top[0] if top else None,
    }
    fig = _plot_effect_sizes(
        epochs, channels, bands, g, summary["best"], (cls_a, cls_b)
    )
    return Exploration(summary=_jsonable(summary), figure=fig)


def _label_of(code: int, event_id: dict) -> str | None:
    for name, value in event_id.items():
        if value == code:
            return name
    return None


def _has_positions(info) -> bool:
    """Whether every channel of ``info`` has a finite, non-zero position."""
    locs = np.array([ch["loc"][:3] for ch in info["chs"]])
    return bool(np.all(np.isfinite(locs)) and np.all(np.any(locs != 0, axis=1)))


def _plot_effect_sizes(epochs, channels, bands, g, best, contrast):
    with figure_style():
        return _draw_effect_sizes(epochs, channels, bands, g, best, contrast)


def _draw_effect_sizes(epochs, channels, bands, g, best, contrast):
    values = np.concatenate([g[name] for name in bands])
    vmax = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    vmax = vmax or 1.0
    info = mne.pick_info(
        epochs.info, mne.pick_channels(epochs.ch_names, channels, ordered=True)
    )
    title = f"Hedges' g of band power, {contrast[0]} − {contrast[1]}"
    # A topography needs channel positions, and a handful of channels to
    # interpolate between; otherwise show the same numbers as bars.
    if len(channels) >= 4 and _has_positions(info):
        n = len(bands)
        # One topography per band, at most ~2.4 in each, within a page width.
        width = min(DOUBLE_COLUMN, 2.4 * n + 0.8)
        fig, axes = new_figure(
            1, n, figsize=(width, min((width - 0.8) / n + 0.5, MAX_HEIGHT)),
            squeeze=False, layout="constrained",
        )
        im = None
        for ax, name in zip(axes[0], bands):
            mask = np.array(
                [best is not None and ch == best["channel"] and name == best["band"]
                 for ch in channels]
            )
            im, _ = mne.viz.plot_topomap(
                g[name],
                info,
                axes=ax,
                cmap=DIVERGING_CMAP,
                vlim=(-vmax, vmax),
                mask=mask,
                mask_params=dict(marker="o", markerfacecolor="k", markersize=4),
                contours=0,
                show=False,
            )
            lo, hi = bands[name]
            ax.set_title(f"{name} ({lo:g}–{hi:g} Hz)")
        fig.colorbar(im, ax=axes, label="Hedges' g", shrink=0.8, aspect=30)
    else:
        # A column for a few bars, the page width for many.
        wide = len(channels) * len(bands) > 8
        fig, ax = new_figure(
            figsize=figure_size("double" if wide else "single", aspect=0.35 if wide else 0.7),
            layout="constrained",
        )
        width = 0.8 / len(bands)
        x = np.arange(len(channels))
        for bi, name in enumerate(bands):
            ax.bar(x + (bi - (len(bands) - 1) / 2) * width, g[name], width, label=name)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(x, channels, rotation=90 if len(channels) > 12 else 0)
        ax.set_ylabel("Hedges' g")
        ax.legend(title="band")
    fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------
# Power spectra
# ---------------------------------------------------------------------------


def _mu_peak(freqs: np.ndarray, psd_db: np.ndarray, fit_range) -> dict:
    """Individual mu peak of a dB spectrum, above the 1/f background.

    The aperiodic background is a straight line in dB versus log-frequency;
    fitting it on ``fit_range`` and taking the maximum of the residual in
    7-14 Hz avoids picking the low edge of a falling spectrum as the "peak".
    """
    fit = (freqs >= fit_range[0]) & (freqs <= fit_range[1]) & (freqs > 0)
    coef = np.polyfit(np.log10(freqs[fit]), psd_db[fit], 1)
    residual = psd_db - np.polyval(coef, np.log10(np.maximum(freqs, 1e-3)))
    search = (freqs >= _MU_PEAK_RANGE[0]) & (freqs <= _MU_PEAK_RANGE[1])
    idx = np.flatnonzero(search)
    best = idx[np.argmax(residual[idx])]
    # A genuine peak is a local maximum strictly inside the search range.
    is_peak = (
        idx[0] < best < idx[-1]
        and residual[best] > residual[best - 1]
        and residual[best] >= residual[best + 1]
        and residual[best] > 0
    )
    return {
        "frequency_hz": _round(freqs[best], 2),
        "height_db": _round(residual[best], 2),
        "is_peak": bool(is_peak),
    }


@_verbose
def psd(
    epochs: mne.BaseEpochs,
    fmin: float = 2.0,
    fmax: float = 40.0,
    tmin: float | None = 0.5,
    tmax: float | None = None,
    channels=("C3", "Cz", "C4"),
    *,
    classes=None,
    verbose=None,
) -> Exploration:
    """Welch power spectra per class at a few channels.

    Parameters
    ----------
    epochs : mne.Epochs
        The epochs, e.g. from :func:`load_subject_epochs`.
    fmin, fmax : float
        Frequency range in Hz.
    tmin, tmax : float | None
        Task window in seconds; ``None`` means the start / end of the epochs.
    channels : sequence of str
        Channels, one axis each.
    classes : sequence of str | None
        Classes to show; ``None`` uses all classes of ``epochs.event_id``.
        The class difference is first minus second class.
    verbose : bool | str | int | None
        Control verbosity of the logging output (see :func:`mne.verbose`).

    Returns
    -------
    exploration : Exploration
        ``summary`` has, per channel, ``max_difference``: the frequency
        (Hz) where the class-mean spectra (dB re 1 µV²/Hz) differ most and
        the signed difference (first minus second class, dB); and
        ``mu_peak``: the individual mu peak frequency of the average
        spectrum over epochs and channels (maximum above a 1/f fit in
        7-14 Hz; ``is_peak`` is False when the maximum is at the edge of
        that range, i.e. no clear peak), also given per channel.
        ``figure`` has one axis per channel with the classes overlaid and
        the mu and beta bands shaded.
    """
    channels = _check_channels(epochs, channels)
    classes = _check_classes(epochs, classes)
    fmin, fmax = float(fmin), float(fmax)
    if not 0 <= fmin < fmax:
        raise ValueError(
            f"fmin must be non-negative and smaller than fmax, got fmin={fmin:g}, "
            f"fmax={fmax:g} Hz"
        )
    nyquist = epochs.info["sfreq"] / 2.0
    if fmax > nyquist:
        raise ValueError(
            f"fmax ({fmax:g} Hz) exceeds the Nyquist frequency ({nyquist:g} Hz)"
        )
    if fmin > _MU_PEAK_RANGE[0] or fmax < _MU_PEAK_RANGE[1]:
        raise ValueError(
            f"The range {fmin:g}-{fmax:g} Hz must include the mu peak search "
            f"range {_MU_PEAK_RANGE[0]:g}-{_MU_PEAK_RANGE[1]:g} Hz"
        )
    tmin, tmax = _task_window(epochs, tmin, tmax)
    freqs, data = _welch_psd(epochs, fmin, fmax, tmin, tmax, channels, verbose)
    # Average power in linear units, then convert: dB of the mean spectrum.
    labels = np.array([_label_of(c, epochs.event_id) for c in epochs.events[:, 2]])
    mean_db = {
        cls: 10.0 * np.log10(data[labels == cls].mean(axis=0)) for cls in classes
    }
    all_db = 10.0 * np.log10(data[np.isin(labels, classes)].mean(axis=0))

    per_channel = {}
    for ci, ch in enumerate(channels):
        entry = {"mu_peak": _mu_peak(freqs, all_db[ci], (fmin, fmax))}
        if len(classes) >= 2:
            diff = mean_db[classes[0]][ci] - mean_db[classes[1]][ci]
            k = int(np.argmax(np.abs(diff)))
            entry["max_difference"] = {
                "frequency_hz": _round(freqs[k], 2),
                "difference_db": _round(diff[k], 2),
            }
        per_channel[ch] = entry
    mu_peak = _mu_peak(freqs, all_db.mean(axis=0), (fmin, fmax))

    summary = {
        "analysis": "psd",
        "units": "dB re 1 µV²/Hz (Welch)",
        "window": [_round(tmin, 3), _round(tmax, 3)],
        "frequency_range": [float(fmin), float(fmax)],
        "frequency_resolution_hz": _round(freqs[1] - freqs[0], 3),
        "classes": classes,
        "difference": (
            f"{classes[0]} minus {classes[1]}" if len(classes) >= 2 else None
        ),
        "n_epochs": {cls: len(epochs[cls]) for cls in classes},
        "channels": per_channel,
        "mu_peak": mu_peak,
    }
    fig = _plot_psd(freqs, mean_db, classes, channels, mu_peak)
    return Exploration(summary=_jsonable(summary), figure=fig)


def _plot_psd(freqs, mean_db, classes, channels, mu_peak):
    with figure_style():
        return _draw_psd(freqs, mean_db, classes, channels, mu_peak)


def _draw_psd(freqs, mean_db, classes, channels, mu_peak):
    n = len(channels)
    # Up to four spectra side by side on a page width, then further rows.
    n_cols = min(n, 4)
    n_rows = -(-n // n_cols)
    fig, axes = new_figure(
        n_rows, n_cols, figsize=figure_size("double", aspect=0.3, n_rows=n_rows),
        sharey=True, squeeze=False, layout="constrained",
    )
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    # Bands in greys, so the classes alone take the palette's colours.
    band_shades = ("0.55", "0.8")
    for ci, (ax, ch) in enumerate(zip(axes.ravel(), channels)):
        for (name, (lo, hi)), shade in zip(DEFAULT_BANDS.items(), band_shades):
            ax.axvspan(lo, hi, color=shade, alpha=0.25, lw=0, label=f"{name} band")
        for cls in classes:
            ax.plot(freqs, mean_db[cls][ci], lw=1.0, label=cls)
        if mu_peak["frequency_hz"] is not None:
            ax.axvline(mu_peak["frequency_hz"], color="k", ls=":", lw=0.8)
        ax.set_title(ch)
        ax.set_xlabel("Frequency (Hz)")
    for row in axes:
        row[0].set_ylabel("PSD (dB re 1 µV²/Hz)")
    axes.ravel()[n - 1].legend()
    fig.suptitle(f"Task-window spectra; dotted: mu peak {mu_peak['frequency_hz']} Hz")
    return fig


# ---------------------------------------------------------------------------
# All at once
# ---------------------------------------------------------------------------


@_verbose
def explore_subject(
    dataset,
    subject: int,
    channels=("C3", "Cz", "C4"),
    *,
    classes=("left_hand", "right_hand"),
    verbose=None,
) -> dict[str, Exploration]:
    """Run :func:`erd_ers`, :func:`band_power` and :func:`psd` on one subject.

    The epochs are loaded once with :func:`load_subject_epochs` (default
    pre-cue ``tmin`` of -1.5 s, 1-40 Hz band-pass).

    Parameters
    ----------
    dataset : moabb.datasets.base.BaseDataset
        A MOABB motor-imagery dataset.
    subject : int
        Subject number.
    channels : sequence of str
        Channels for the ERD/ERS maps and the spectra; band power uses all
        EEG channels (for the topography).
    classes : sequence of str
        Classes to load; the first two are contrasted.
    verbose : bool | str | int | None
        Control verbosity of the logging output (see :func:`mne.verbose`).

    Returns
    -------
    explorations : dict of str to Exploration
        Keys ``"erd_ers"``, ``"band_power"`` and ``"psd"``.
    """
    epochs = load_subject_epochs(dataset, subject, classes=classes, verbose=verbose)
    return {
        "erd_ers": erd_ers(epochs, channels=channels, verbose=verbose),
        "band_power": band_power(epochs, verbose=verbose),
        "psd": psd(epochs, channels=channels, verbose=verbose),
    }
