"""Tests of chatbci.bci.explore against known ground truth.

:class:`~chatbci.bci.simulated.SimulatedMI` injects a contralateral mu/beta
ERD of known strength (left hand -> C4, right hand -> C3; every 4th subject
none), so the explorations must recover it; PhysioNet EEGMMIDB checks that
they behave on real data.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from chatbci.bci.explore import (  # noqa: E402
    Exploration,
    band_power,
    erd_ers,
    explore_subject,
    load_subject_epochs,
    psd,
)
from chatbci.bci.simulated import SimulatedMI  # noqa: E402

STRONG, NULL = 1, 4
# Channels over the left / right sensorimotor hand areas.
LEFT_MOTOR = {"C3", "C1", "C5", "FC3", "CP3"}
RIGHT_MOTOR = {"C4", "C2", "C6", "FC4", "CP4"}


def _json_roundtrip(summary):
    """The summary is strict JSON (no NaN) and survives a round trip."""
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text) == summary
    return text


def _simulated_mu_freq(dataset, subject):
    """The simulator's mu peak of ``subject``, if it exposes it."""
    for name in ("subject_params", "_subject_params"):
        getter = getattr(dataset, name, None)
        if callable(getter):
            freq = getter(subject).get("mu_freq")
            if freq is not None:
                return float(freq)
    return None


@pytest.fixture(scope="module")
def sim():
    return SimulatedMI()


@pytest.fixture(scope="module")
def strong_epochs(sim):
    assert sim.subject_strength(STRONG) > 0.5  # a clearly modulated subject
    return load_subject_epochs(sim, STRONG, verbose="error")


@pytest.fixture(scope="module")
def null_epochs(sim):
    assert sim.subject_strength(NULL) == 0.0
    return load_subject_epochs(sim, NULL, verbose="error")


@pytest.fixture(scope="module")
def strong(strong_epochs):
    results = {
        "erd_ers": erd_ers(strong_epochs, verbose="error"),
        "band_power": band_power(strong_epochs, verbose="error"),
        "psd": psd(strong_epochs, verbose="error"),
    }
    yield results
    for res in results.values():
        plt.close(res.figure)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def test_load_subject_epochs_simulated(sim, strong_epochs):
    ep = strong_epochs
    # 2 sessions x 2 runs x 20 trials per class, cue-locked from -1.5 s to
    # the end of the 4 s imagery interval.
    assert dict(ep.event_id) == {"left_hand": 1, "right_hand": 2}
    assert len(ep["left_hand"]) == len(ep["right_hand"]) == 80
    assert ep.tmin == pytest.approx(-1.5)
    assert ep.tmax == pytest.approx(4.0)
    assert ep.get_channel_types(unique=True) == ["eeg"]
    assert set(ep.ch_names) == set(sim.channels)
    assert ep.get_montage() is not None
    assert ep.info["highpass"] == pytest.approx(1.0)
    assert ep.info["lowpass"] == pytest.approx(40.0)

    small = load_subject_epochs(
        sim, STRONG, classes=["right_hand"], tmin=-1.0, tmax=2.0, resample=64.0,
        verbose="error",
    )
    assert list(small.event_id) == ["right_hand"]
    assert len(small) == 80
    assert small.info["sfreq"] == 64.0
    assert small.tmax == pytest.approx(2.0)


def test_load_unknown_class_lists_available(sim):
    with pytest.raises(ValueError, match=r"feet.*left_hand.*right_hand"):
        load_subject_epochs(sim, STRONG, classes=("left_hand", "feet"))


# --------------------------------------------------------------------------
# Ground truth: strong simulated subject
# --------------------------------------------------------------------------


def test_erd_ers_recovers_contralateral_mu_erd(strong):
    res = strong["erd_ers"]
    assert isinstance(res, Exploration)
    s = res.summary
    _json_roundtrip(s)
    erd = s["erd"]
    # Left-hand imagery desynchronises the right hemisphere (C4) and
    # right-hand imagery the left (C3), much more than ipsilaterally.
    assert erd["left_hand"]["C4"]["mu"] < -25
    assert erd["right_hand"]["C3"]["mu"] < -25
    assert erd["left_hand"]["C4"]["mu"] < erd["left_hand"]["C3"]["mu"] - 15
    assert erd["right_hand"]["C3"]["mu"] < erd["right_hand"]["C4"]["mu"] - 15
    lat = s["lateralisation"]["mu"]
    assert lat["contralateral"] is True
    assert lat["contralateral_by_class"] == {"left_hand": True, "right_hand": True}
    assert lat["contra_minus_ipsi"]["left_hand"] < -15
    assert lat["contra_minus_ipsi"]["right_hand"] < -15
    strongest = s["strongest_erd"]
    assert strongest["band"] == "mu"
    assert (strongest["class"], strongest["channel"]) in {
        ("left_hand", "C4"),
        ("right_hand", "C3"),
    }
    assert strongest["value"] == min(
        v
        for per_ch in erd.values()
        for per_b in per_ch.values()
        for v in per_b.values()
    )
    # Task window ends before the wavelet edge of the 4 s epochs.
    assert s["task_window"][0] == 0.5 and 3.5 < s["task_window"][1] < 4.0
    # Grid of 2 classes x 3 channels, plus the shared colour bar.
    assert len(res.figure.axes) == 2 * 3 + 1


def test_band_power_finds_contralateral_mu(strong):
    res = strong["band_power"]
    s = res.summary
    _json_roundtrip(s)
    best = s["best"]
    assert best["channel"] in LEFT_MOTOR | RIGHT_MOTOR
    # The simulator's mu rhythm is larger than its beta rhythm (same
    # relative ERD), so mu is the more discriminative band.
    assert best["band"] == "mu"
    assert abs(best["effect_size"]) > 1.0
    assert abs(best["auc"] - 0.5) > 0.3
    assert best == s["top"][0]
    assert len(s["top"]) == 5
    assert [abs(t["effect_size"]) for t in s["top"]] == sorted(
        (abs(t["effect_size"]) for t in s["top"]), reverse=True
    )
    # Documented sign: left_hand minus right_hand. The right-hand ERD at C3
    # leaves more power in left-hand trials there (g > 0, AUC > 0.5); the
    # left-hand ERD at C4 gives the opposite.
    g, auc = s["effect_size"], s["auc"]
    assert g["C3"]["mu"] > 0.8 and auc["C3"]["mu"] > 0.75
    assert g["C4"]["mu"] < -0.8 and auc["C4"]["mu"] < 0.25
    mean = s["mean_power"]
    assert mean["left_hand"]["C3"]["mu"] > mean["right_hand"]["C3"]["mu"]
    # One topomap per band and a colour bar.
    assert len(res.figure.axes) == 2 + 1


def test_band_power_class_order_flips_sign(strong_epochs, strong):
    flipped = band_power(
        strong_epochs, classes=["right_hand", "left_hand"], channels=["C3", "C4"],
        verbose="error",
    ).summary
    ref = strong["band_power"].summary
    for ch in ("C3", "C4"):
        for band in ("mu", "beta"):
            assert flipped["effect_size"][ch][band] == pytest.approx(
                -ref["effect_size"][ch][band], abs=1e-3
            )
            assert flipped["auc"][ch][band] == pytest.approx(
                1 - ref["auc"][ch][band], abs=1e-3
            )
    assert flipped["contrast"] == ["right_hand", "left_hand"]


def test_band_power_bar_chart_for_few_channels(strong_epochs):
    res = band_power(strong_epochs, channels=["C3", "C4"], top_k=2, verbose="error")
    assert len(res.figure.axes) == 1  # no topography from 2 channels
    assert len(res.summary["top"]) == 2
    assert set(res.summary["effect_size"]) == {"C3", "C4"}


def test_psd_mu_peak_and_class_difference(sim, strong):
    s = strong["psd"].summary
    _json_roundtrip(s)
    peak = s["mu_peak"]["frequency_hz"]
    true_peak = _simulated_mu_freq(sim, STRONG)
    if true_peak is not None:
        assert abs(peak - true_peak) <= 1.5
    assert 7.0 <= peak <= 14.0
    assert s["mu_peak"]["is_peak"] is True
    # The largest class difference sits in the mu band, with the documented
    # sign (left minus right): positive at C3, negative at C4.
    c3 = s["channels"]["C3"]["max_difference"]
    c4 = s["channels"]["C4"]["max_difference"]
    assert 8.0 <= c3["frequency_hz"] <= 13.0 and c3["difference_db"] > 1.5
    assert 8.0 <= c4["frequency_hz"] <= 13.0 and c4["difference_db"] < -1.5
    assert len(strong["psd"].figure.axes) == 3


# --------------------------------------------------------------------------
# Ground truth: null simulated subject
# --------------------------------------------------------------------------


def test_null_subject_has_no_effect(null_epochs, strong):
    s = band_power(null_epochs, verbose="error").summary
    best_null = s["best"]
    best_strong = strong["band_power"].summary["best"]
    assert abs(best_null["effect_size"]) < 0.5
    assert abs(best_null["effect_size"]) < 0.4 * abs(best_strong["effect_size"])
    assert abs(best_null["auc"] - 0.5) < 0.15
    lat = erd_ers(null_epochs, verbose="error").summary["lateralisation"]["mu"]
    strong_lat = strong["erd_ers"].summary["lateralisation"]["mu"]
    for cls in ("left_hand", "right_hand"):
        assert abs(lat["contra_minus_ipsi"][cls]) < 0.5 * abs(
            strong_lat["contra_minus_ipsi"][cls]
        )
    # Chance differences stay below the threshold: no lateralisation claimed.
    assert lat["contralateral"] is False


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def test_unknown_channel_lists_available(strong_epochs):
    for func in (erd_ers, band_power, psd):
        with pytest.raises(ValueError, match=r"\['C7'\] not found.*Available.*C3"):
            func(strong_epochs, channels=["C3", "C7"])


def test_bad_bands_and_windows(strong_epochs):
    with pytest.raises(ValueError, match="fmin < fmax"):
        band_power(strong_epochs, bands={"mu": (13, 8)})
    with pytest.raises(ValueError, match="fmin < fmax"):
        erd_ers(strong_epochs, bands={"mu": (10, 10)})
    with pytest.raises(ValueError, match="fmin.*smaller than fmax"):
        psd(strong_epochs, fmin=30.0, fmax=10.0)
    with pytest.raises(ValueError, match="baseline"):
        erd_ers(strong_epochs, baseline=(-3.0, 0.0))
    with pytest.raises(ValueError, match="window"):
        band_power(strong_epochs, tmin=0.5, tmax=9.0)


# --------------------------------------------------------------------------
# Real data: PhysioNet EEGMMIDB subject 1
# --------------------------------------------------------------------------


def test_explore_subject_physionet(physionet_data):
    from moabb.datasets import PhysionetMI

    dataset = PhysionetMI(imagined=True)
    feet_runs = list(dataset.feet_runs)
    results = explore_subject(dataset, 1, verbose="error")
    assert dataset.feet_runs == feet_runs  # the caller's dataset is untouched
    assert set(results) == {"erd_ers", "band_power", "psd"}
    for res in results.values():
        assert isinstance(res, Exploration)
        _json_roundtrip(res.summary)

    erd = results["erd_ers"].summary
    assert erd["n_epochs"] == {"left_hand": 23, "right_hand": 22}
    values = [
        v for per_ch in erd["erd"].values() for per_b in per_ch.values()
        for v in per_b.values()
    ]
    assert all(v is not None and np.isfinite(v) for v in values)
    # Motor imagery desynchronises the mu rhythm over both motor cortices.
    mu_c3_c4 = [
        erd["erd"][cls][ch]["mu"] for cls in erd["classes"] for ch in ("C3", "C4")
    ]
    assert np.mean(mu_c3_c4) < -5
    assert erd["strongest_erd"]["value"] < -10
    assert len(results["erd_ers"].figure.axes) == 2 * 3 + 1

    bp = results["band_power"].summary
    assert len(bp["effect_size"]) == 64
    assert 0.0 <= bp["best"]["auc"] <= 1.0
    assert abs(bp["best"]["effect_size"]) > 0.3
    assert len(results["band_power"].figure.axes) == 2 + 1  # 2 topomaps + colour bar

    spec = results["psd"].summary
    assert 7.0 <= spec["mu_peak"]["frequency_hz"] <= 14.0
    assert set(spec["channels"]) == {"C3", "Cz", "C4"}
    assert len(results["psd"].figure.axes) == 3

