"""Download-free simulated motor-imagery EEG: :class:`SimulatedMI`.

The toolbox needs a dataset that works anywhere (CI, laptops without
internet, teaching) and behaves like a real left/right-hand imagery cohort
through MOABB's paradigms. :class:`SimulatedMI` generates such data on the
fly from a small, documented generative model of sensorimotor rhythms.
"""

from __future__ import annotations

import functools
import hashlib
import json

import numpy as np
from mne import create_info
from mne.channels import get_builtin_montages, make_standard_montage
from mne.io import RawArray
from moabb.datasets.base import BaseDataset
from scipy.fft import irfft, next_fast_len, rfft, rfftfreq

#: EEG channels of the simulated cap (10-20 / 10-10 names, MNE spelling).
CHANNELS = (
    "Fz", "F3", "F4", "FC3", "FCz", "FC4", "T7", "C5", "C3", "C1", "Cz", "C2",
    "C4", "C6", "T8", "CP3", "CPz", "CP4", "P3", "Pz", "P4", "O1", "Oz", "O2",
)  # fmt: skip

# MNE 1.13 renamed the standard 10-20 template to "colin27_1020" (same
# positions) and deprecated the old name; older MNE only has the old one.
_MONTAGE = (
    "colin27_1020" if "colin27_1020" in get_builtin_montages() else "standard_1020"
)

# Trial timing (seconds).
_IMAGERY_S = 4.0  # cue-locked imagery period, the dataset ``interval``
_REST_S = (2.0, 3.0)  # random inter-trial rest before each cue
_LEAD_OUT_S = 2.0  # recording after the last trial, so its ERD can recover
_ERD_LAG_S = 0.5  # mean ERD onset after the cue (jittered per trial)
_ERD_RAMP_S = 1.0  # raised-cosine build-up of the desynchronisation
_ERD_RECOVERY_S = 1.0  # raised-cosine recovery after the imagery period

# Amplitudes in µV (standard deviation at the channel nearest the source).
_BACKGROUND_UV = 12.0  # spatially smooth pink (1/f) background activity
_MU_UV = 6.0  # sensorimotor mu rhythm, one source per hemisphere
_BETA_UV = 2.5  # sensorimotor beta rhythm, same sources
_ALPHA_UV = 8.0  # occipital alpha: task-unrelated distractor in the mu band
_SENSOR_UV = 2.0  # white sensor / amplifier noise

# Spatial spread (m) of the Gaussian falloff from a source to the electrodes;
# the 10-20 head has a radius of ~9.5 cm and C3-Cz is ~6.5 cm apart.
_SIGMA_MOTOR_M = 0.045
_SIGMA_ALPHA_M = 0.06
_SIGMA_BACKGROUND_M = 0.05

_IPSILATERAL_ERD = 0.3  # fraction of the contralateral ERD seen ipsilaterally
_ERD_VARIABILITY = 0.3  # trial-to-trial coefficient of variation of ERD depth

# Slow (< ~0.3 Hz) log-normal amplitude fluctuations: standard deviation of
# the log-amplitude, and the share of the mu fluctuation common to both
# hemispheres.
_MU_FLUCTUATION = 0.2
_MU_SHARED = 0.5
_ALPHA_FLUCTUATION = 0.6
_NULL_EVERY = 4  # every 4th subject is BCI-inefficient (strength 0)
_DEFAULT_STRENGTH = (0.25, 0.8)  # range of the default per-subject ERD strength


class SimulatedMI(BaseDataset):
    """Simulated left/right-hand motor-imagery EEG, generated without download.

    A deterministic, MOABB-compatible dataset for developing and testing
    decoders anywhere. It works with :class:`moabb.paradigms.LeftRightImagery`,
    :class:`moabb.paradigms.MotorImagery` and the filter-bank paradigms like
    any real MOABB dataset, and generates a subject in well under a second.

    **What is simulated.** Each run is a continuous recording of
    ``2 * n_trials`` cued trials (``left_hand`` and ``right_hand`` in random
    order), each a random 2-3 s rest followed by a 4 s imagery period starting
    at the cue; the dataset ``interval`` is ``[0, 4]`` s after the cue. The
    24 EEG channels (:data:`CHANNELS`, standard 10-20 positions) record the sum
    of

    * spatially smooth pink (1/f) background activity (~12 µV);
    * a mu rhythm (subject-specific peak in 9-12 Hz) and a beta rhythm
      (subject-specific peak in 18-24 Hz) from two sensorimotor sources under
      C3 and C4, projected to the electrodes with a Gaussian falloff of their
      3-D distance, with slow random amplitude fluctuations (waxing/waning);
    * an occipital alpha source under Oz (8.5-11 Hz, overlapping the mu band)
      with strong random amplitude fluctuations, a task-unrelated distractor;
    * white sensor noise.

    Motor imagery of one hand causes an event-related desynchronisation
    (ERD) over the opposite hemisphere: during left-hand imagery the mu and
    beta amplitude of the C4 source drops by ``strength`` (and that of C3 by
    30 % of it), and vice versa for the right hand. The ERD builds up smoothly
    from ~0.5 s after the cue, recovers within 1 s after the imagery period,
    and varies from trial to trial in depth and latency.

    The ERD strength is subject specific (see :meth:`subject_strength`). By
    default it is drawn from ``seed`` in [0.25, 0.8), except that every 4th
    subject (4, 8, ...) has strength 0: like the "BCI-inefficient" users of
    real cohorts, these null subjects have sensorimotor rhythms but no
    class-dependent modulation, so no decoder can beat chance on them.

    Data are in Volts; the stimulus channel ``STI`` carries the cue events
    (1 = left_hand, 2 = right_hand). The same ``(seed, subject, session,
    run)`` always yields identical data, whatever the order of generation.

    Parameters
    ----------
    n_subjects : int
        Number of subjects, numbered from 1.
    n_sessions : int
        Sessions per subject, named ``"0"``, ``"1"``, ...
    n_runs : int
        Runs per session, named ``"0"``, ``"1"``, ...
    n_trials : int
        Trials per class per run.
    sfreq : float
        Sampling frequency in Hz. Must be above 80 Hz so the beta band
        (up to ~30 Hz) and MOABB's default 8-32 Hz filter fit comfortably.
    seed : int
        Seed of all randomness (subject parameters and signals).
    strengths : sequence of float | None
        Explicit ERD strength of each subject, in [0, 1), of length
        ``n_subjects``. ``None`` draws them from ``seed`` as described above.
    subjects : list of int | None
        Subset of subjects to expose, as in every MOABB dataset.
    sessions : list of int | str | None
        Subset of sessions to expose, as in every MOABB dataset.

    Attributes
    ----------
    code : str
        ``"SimulatedMI-"`` followed by a hash of all generation parameters,
        so MOABB caches never mix data of different configurations.
    channels : tuple of str
        The EEG channel names.
    METADATA : moabb.datasets.metadata.DatasetMetadata
        Structured description, like MOABB's real datasets.

    Examples
    --------
    >>> from moabb.paradigms import LeftRightImagery
    >>> X, y, meta = LeftRightImagery().get_data(SimulatedMI(), subjects=[1])
    >>> X.shape  # 2 sessions x 2 runs x 40 trials, 24 channels, 4 s at 128 Hz
    (160, 24, 513)
    """

    def __init__(
        self,
        n_subjects=10,
        n_sessions=2,
        n_runs=2,
        n_trials=20,
        sfreq=128.0,
        seed=42,
        strengths=None,
        *,
        subjects=None,
        sessions=None,
    ):
        for name, value in (
            ("n_subjects", n_subjects),
            ("n_sessions", n_sessions),
            ("n_runs", n_runs),
            ("n_trials", n_trials),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if sfreq < 80:
            raise ValueError(
                f"sfreq must be at least 80 Hz to represent the beta band, "
                f"got {sfreq!r}; use e.g. sfreq=128."
            )
        if strengths is not None:
            strengths = [float(s) for s in strengths]
            if len(strengths) != n_subjects:
                raise ValueError(
                    f"strengths must give one value per subject: got "
                    f"{len(strengths)} values for n_subjects={n_subjects}."
                )
            if not all(0 <= s < 1 for s in strengths):
                raise ValueError(
                    f"strengths must lie in [0, 1) (0 = no ERD, values near 1 = "
                    f"rhythm almost abolished), got {strengths}."
                )
        self.n_subjects = int(n_subjects)
        self.n_runs = int(n_runs)
        self.n_trials = int(n_trials)
        self.sfreq = float(sfreq)
        self.seed = int(seed)
        self.strengths = strengths
        self.channels = CHANNELS
        super().__init__(
            subjects=list(range(1, self.n_subjects + 1)),
            sessions_per_subject=int(n_sessions),  # sets self.n_sessions
            events={"left_hand": 1, "right_hand": 2},
            code=f"SimulatedMI-{self._params_hash(n_sessions)}",
            interval=[0, _IMAGERY_S],
            paradigm="imagery",
            doi=None,
            selected_subjects=subjects,
            selected_sessions=sessions,
        )
        self.METADATA = self._make_metadata()

    @property
    def metadata(self):
        """Structured description (:attr:`METADATA`), as for MOABB's datasets."""
        return self.METADATA

    def _params_hash(self, n_sessions):
        """Short, stable hash of every parameter that changes the data."""
        params = dict(
            n_subjects=self.n_subjects,
            n_sessions=int(n_sessions),
            n_runs=self.n_runs,
            n_trials=self.n_trials,
            sfreq=self.sfreq,
            seed=self.seed,
            strengths=self.strengths,
        )
        text = json.dumps(params, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    def subject_strength(self, subject):
        """ERD strength of ``subject``: the relative mu/beta amplitude drop.

        Parameters
        ----------
        subject : int
            Subject number, from 1 to ``n_subjects``.

        Returns
        -------
        strength : float
            In [0, 1); 0 for null ("BCI-inefficient") subjects.
        """
        return self._subject_params(subject)["strength"]

    def _subject_params(self, subject):
        if subject not in self.all_subjects:
            raise ValueError(
                f"Invalid subject {subject!r}: SimulatedMI has subjects "
                f"1..{self.n_subjects} (set n_subjects to simulate more)."
            )
        # Subject-level randomness depends on (seed, subject) only, so a
        # subject does not change when n_subjects or other subjects change.
        # Draw everything in a fixed order, whether or not it is used.
        rng = np.random.default_rng([self.seed, subject])
        strength = rng.uniform(*_DEFAULT_STRENGTH)
        if subject % _NULL_EVERY == 0:
            strength = 0.0
        if self.strengths is not None:
            strength = self.strengths[subject - 1]
        return dict(
            strength=float(strength),
            mu_freq=rng.uniform(9.0, 12.0),
            beta_freq=rng.uniform(18.0, 24.0),
            alpha_freq=rng.uniform(8.5, 11.0),
        )

    def _get_single_subject_data(self, subject):
        """Return ``{session: {run: raw}}`` for one subject."""
        params = self._subject_params(subject)
        return {
            str(session): {
                str(run): self._generate_run(subject, session, run, params)
                for run in range(self.n_runs)
            }
            for session in range(self.n_sessions)
        }

    def _generate_run(self, subject, session, run, params):
        """Simulate one continuous run as an :class:`mne.io.RawArray`."""
        rng = np.random.default_rng([self.seed, subject, session, run])
        sfreq = self.sfreq

        # Trial sequence: balanced classes in random order, random rest
        # before each cue; cue k comes after k imagery periods and k+1 rests.
        labels = rng.permutation(np.repeat([1, 2], self.n_trials))
        cues = np.cumsum(rng.uniform(*_REST_S, labels.size))
        cues += _IMAGERY_S * np.arange(labels.size)
        n_times = int(np.ceil((cues[-1] + _IMAGERY_S + _LEAD_OUT_S) * sfreq))

        n_ch = len(CHANNELS)
        noise = _colored_noise(
            rng,
            n_times,
            sfreq,
            [_pink] * n_ch  # background sources, one under each electrode
            + [_peak(params["mu_freq"], 1.0)] * 2  # mu, C3 and C4
            + [_peak(params["beta_freq"], 2.0)] * 2  # beta, C3 and C4
            + [_peak(params["alpha_freq"], 0.8)]  # occipital alpha
            + [_peak(0.0, 0.15)] * 4,  # slow envelopes: mu shared/C3/C4, alpha
        )
        background, mu, beta, alpha, envelopes = np.split(
            noise, np.cumsum([n_ch, 2, 2, 1])
        )
        # Log-normal waxing and waning of the rhythms. The two mu sources
        # share part of it (vigilance affects both hemispheres).
        shared, own, alpha_env = envelopes[:1], envelopes[1:3], envelopes[3:]
        mu_env = np.exp(
            _MU_FLUCTUATION
            * (np.sqrt(_MU_SHARED) * shared + np.sqrt(1 - _MU_SHARED) * own)
        )
        alpha_env = np.exp(_ALPHA_FLUCTUATION * alpha_env)

        gain = self._erd_gain(rng, labels, cues, n_times, params["strength"])
        sources = {
            "mu": _MU_UV * mu_env * gain * mu,
            "beta": _BETA_UV * gain * beta,
            "alpha": _ALPHA_UV * alpha_env * alpha,
        }
        mixing, motor, occipital = _spatial_patterns()
        eeg_uv = (
            _BACKGROUND_UV * (mixing @ background)
            + motor @ (sources["mu"] + sources["beta"])
            + occipital @ sources["alpha"]
            + _SENSOR_UV * rng.standard_normal((n_ch, n_times))
        )
        stim = np.zeros((1, n_times))
        stim[0, np.round(cues * sfreq).astype(int)] = labels

        info = create_info(
            list(CHANNELS) + ["STI"], sfreq, ["eeg"] * n_ch + ["stim"], verbose=False
        )
        raw = RawArray(np.vstack([eeg_uv * 1e-6, stim]), info, verbose=False)
        raw.set_montage(make_standard_montage(_MONTAGE), verbose=False)
        return raw

    def _erd_gain(self, rng, labels, cues, n_times, strength):
        """Amplitude gain of the (C3, C4) sources over time, shape (2, n_times).

        1 at rest; during imagery the contralateral source drops by about
        ``strength`` and the ipsilateral one by a fraction of it.
        """
        # Trial-to-trial variability: depth and onset latency of the ERD.
        depth = strength * rng.normal(1.0, _ERD_VARIABILITY, labels.size)
        depth = np.clip(depth, 0.0, 0.95)
        lag = np.clip(rng.normal(_ERD_LAG_S, 0.15, labels.size), 0.1, None)
        # ERD time courses of all trials at once, (n_trials, n_window), over
        # the samples from each cue to the end of its recovery.
        n_window = int(np.ceil((_IMAGERY_S + _ERD_RECOVERY_S) * self.sfreq))
        tau = np.arange(n_window) / self.sfreq
        rise = np.clip((tau - lag[:, None]) / _ERD_RAMP_S, 0.0, 1.0)
        fall = np.clip((tau - _IMAGERY_S) / _ERD_RECOVERY_S, 0.0, 1.0)
        profile = _raised_cosine(rise) * (1.0 - _raised_cosine(fall))
        # Left-hand imagery (1) desynchronises the right hemisphere (C4).
        is_left = (labels == 1)[:, None]
        weights = np.where(np.hstack([is_left, ~is_left]), _IPSILATERAL_ERD, 1.0)
        weights *= depth[:, None]  # (n_trials, 2): ERD depth on (C3, C4)
        gain = np.ones((2, n_times))
        # Trials never overlap (rest > recovery), so no index repeats.
        samples = np.round(cues * self.sfreq).astype(int)[:, None] + np.arange(n_window)
        gain[:, samples] -= weights.T[:, :, None] * profile
        return gain

    def _make_metadata(self):
        from moabb.datasets.metadata.schema import (
            AcquisitionMetadata,
            DatasetMetadata,
            DocumentationMetadata,
            ExperimentMetadata,
            ParticipantMetadata,
        )

        return DatasetMetadata(
            acquisition=AcquisitionMetadata(
                sampling_rate=self.sfreq,
                channel_types={"eeg": len(CHANNELS)},
                sensors=list(CHANNELS),
                montage=_MONTAGE,
                hardware="simulated",
            ),
            participants=ParticipantMetadata(n_subjects=self.n_subjects),
            experiment=ExperimentMetadata(
                paradigm="imagery",
                events=dict(self.event_id),
                n_classes=2,
                class_labels=list(self.event_id),
                trials_per_class={
                    ev: self.n_trials * self.n_runs * self.n_sessions
                    for ev in self.event_id
                },
                trial_duration=_IMAGERY_S,
                mode="simulated",
                stimulus_type="cue-based",
            ),
            documentation=DocumentationMetadata(
                description=(
                    "Simulated left/right-hand motor imagery: contralateral "
                    "mu/beta ERD from sources under C3/C4 in pink background "
                    "noise, with an occipital alpha distractor."
                ),
            ),
            sessions_per_subject=self.n_sessions,
            runs_per_session=self.n_runs,
        )

    def data_path(
        self, subject, path=None, force_update=False, update_path=None, verbose=None
    ):
        """Return ``[]``: the data are generated, nothing is downloaded."""
        return []


def _pink(freqs):
    # 1/f power above 1 Hz, flat below (no runaway drift) and no DC offset.
    return np.where(freqs > 0, 1.0 / np.sqrt(np.maximum(freqs, 1.0)), 0.0)


def _peak(center, width):
    def shape(freqs):
        return np.exp(-0.5 * ((freqs - center) / width) ** 2) * (freqs > 0)

    return shape


def _colored_noise(rng, n_times, sfreq, shapes):
    """Unit-variance noise rows whose amplitude spectra follow ``shapes``."""
    n_fft = next_fast_len(n_times, real=True)
    freqs = rfftfreq(n_fft, 1.0 / sfreq)
    spectra = rfft(rng.standard_normal((len(shapes), n_fft)), axis=-1)
    spectra *= np.array([shape(freqs) for shape in shapes])
    noise = irfft(spectra, n_fft, axis=-1)[:, :n_times]
    noise -= noise.mean(axis=1, keepdims=True)
    return noise / noise.std(axis=1, keepdims=True)


def _raised_cosine(x):
    """Smooth 0 -> 1 step for ``x`` in [0, 1]."""
    return 0.5 * (1.0 - np.cos(np.pi * x))


def _falloff(pos, sources, sigma):
    """Gaussian falloff of the 3-D distance, shape (n_channels, n_sources)."""
    dist2 = ((pos[:, None, :] - sources[None, :, :]) ** 2).sum(-1)
    return np.exp(-dist2 / (2.0 * sigma**2))


@functools.lru_cache(maxsize=1)
def _spatial_patterns():
    """Projections to the channels of the background, motor and alpha sources.

    Returns the (n_channels, n_channels) background mixing matrix, with
    unit-norm rows so every channel gets the same background level, and the
    (n_channels, 2) and (n_channels, 1) patterns of the sources under
    (C3, C4) and Oz. Read-only: they are cached and shared between runs.
    """
    ch_pos = make_standard_montage(_MONTAGE).get_positions()["ch_pos"]
    pos = np.array([ch_pos[ch] for ch in CHANNELS])
    mixing = _falloff(pos, pos, _SIGMA_BACKGROUND_M)
    mixing /= np.linalg.norm(mixing, axis=1, keepdims=True)
    c3_c4 = pos[[CHANNELS.index("C3"), CHANNELS.index("C4")]]
    motor = _falloff(pos, c3_c4, _SIGMA_MOTOR_M)
    occipital = _falloff(pos, pos[[CHANNELS.index("Oz")]], _SIGMA_ALPHA_M)
    for pattern in (mixing, motor, occipital):
        pattern.flags.writeable = False
    return mixing, motor, occipital
