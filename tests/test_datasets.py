"""Tests for chatbci.bci.datasets and chatbci.bci.simulated."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from moabb.datasets import BNCI2014_001, BNCI2014_002, PhysionetMI
from moabb.datasets.base import is_abbrev, is_camel_kebab_case
from moabb.paradigms import FilterBankLeftRightImagery, LeftRightImagery, MotorImagery
from pyriemann.estimation import Covariances
from pyriemann.spatialfilters import CSP
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from chatbci.bci import datasets
from chatbci.bci.datasets import (
    DataNotAvailableError,
    SimulatedMI,
    catalog,
    check_data_available,
    dataset_info,
    get_dataset,
    load_epochs_array,
    prepare_dataset,
)
from chatbci.bci.simulated import CHANNELS

EEGBCI = Path("MNE-eegbci-data", "files", "eegmmidb", "1.0.0")


@pytest.fixture
def no_network(monkeypatch):
    """Refuse every connection attempt at once, and record the attempts."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access is disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture
def small_sim():
    return SimulatedMI(n_subjects=2, n_sessions=1, n_runs=1, n_trials=5)


def _csp_lda_auc(X, y):
    clf = make_pipeline(
        Covariances("oas"), CSP(nfilter=6), LinearDiscriminantAnalysis()
    )
    return cross_val_score(clf, X, y, cv=5, scoring="roc_auc").mean()


# --------------------------------------------------------------------------
# Catalog and lookup
# --------------------------------------------------------------------------


def test_catalog_describes_datasets_offline(no_network):
    datasets._catalog_rows.cache_clear()  # really rebuild it without network
    datasets._instantiate.cache_clear()
    table = catalog()
    assert no_network == []
    assert list(table.columns) == list(datasets.CATALOG_COLUMNS)
    assert table["name"].is_unique
    rows = table.set_index("name")

    physionet = rows.loc["PhysionetMI"]
    assert physionet["code"] == "PhysionetMotorImagery"
    assert physionet["n_subjects"] == 109
    assert physionet["subjects"] == list(range(1, 110))
    assert physionet["n_channels"] == 64
    assert physionet["sfreq"] == 160.0
    assert {"left_hand", "right_hand"} <= set(physionet["classes"])
    assert physionet["doi"] == "10.1109/TBME.2004.827072"
    assert "Schalk" in physionet["reference"]

    bnci = rows.loc["BNCI2014_001"]
    assert (bnci["n_subjects"], bnci["n_sessions"], bnci["n_channels"]) == (9, 2, 22)
    assert bnci["sfreq"] == 250.0
    assert bnci["classes"] == ["left_hand", "right_hand", "feet", "tongue"]

    sim = rows.loc["SimulatedMI"]
    assert sim["code"] == SimulatedMI().code
    assert (sim["n_subjects"], sim["n_channels"], sim["sfreq"]) == (10, 24, 128.0)
    assert sim["interval"] == [0.0, 4.0]

    # Only motor-imagery datasets, no test fakes.
    assert "FakeDataset" not in rows.index
    assert "EPFLP300" not in rows.index
    assert len(table) > 40


def test_catalog_returns_independent_copies():
    table = catalog()
    table.loc[0, "name"] = "changed"
    table.loc[0, "classes"].append("changed")
    fresh = catalog()
    assert "changed" not in set(fresh["name"])
    assert "changed" not in fresh.loc[0, "classes"]


def test_dataset_info_is_json_serialisable():
    info = dataset_info("bnci2014-001")
    assert json.loads(json.dumps(info)) == info
    assert info["name"] == "BNCI2014_001"
    assert info["n_trials_per_class"] == 144
    # An instance is described with its own configuration.
    custom = dataset_info(SimulatedMI(n_subjects=3, n_trials=7, n_runs=1, n_sessions=1))
    assert custom["subjects"] == [1, 2, 3]
    assert custom["n_trials_per_class"] == 7
    assert json.loads(json.dumps(custom)) == custom


@pytest.mark.parametrize(
    "name, expected",
    [
        ("PhysionetMI", PhysionetMI),
        ("physionetmi", PhysionetMI),
        ("PHYSIONETMOTORIMAGERY", PhysionetMI),  # MOABB code
        ("BNCI2014_001", BNCI2014_001),
        ("bnci2014-001", BNCI2014_001),  # MOABB code
        ("SimulatedMI", SimulatedMI),
        ("simulatedmi", SimulatedMI),
    ],
)
def test_get_dataset_by_name_or_code(name, expected):
    assert type(get_dataset(name)) is expected


def test_get_dataset_passes_kwargs():
    assert get_dataset("SimulatedMI", n_subjects=3).subject_list == [1, 2, 3]
    assert get_dataset("PhysionetMI", subjects=[2, 5]).subject_list == [2, 5]


def test_get_dataset_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="Did you mean 'PhysionetMI'") as info:
        get_dataset("physionet")
    message = str(info.value)
    assert "Unknown motor-imagery dataset 'physionet'" in message
    for name in ("BNCI2014_001", "PhysionetMI", "SimulatedMI"):
        assert name in message
    with pytest.raises(ValueError, match="Did you mean 'BNCI2014_001'"):
        get_dataset("BNCI2014_01")


# --------------------------------------------------------------------------
# SimulatedMI
# --------------------------------------------------------------------------


def _all_data(dataset, subject):
    runs = dataset.get_data([subject])[subject]
    return {
        (session, run): raw.get_data()
        for session, session_runs in runs.items()
        for run, raw in session_runs.items()
    }


def test_simulated_is_deterministic_and_order_independent():
    kwargs = dict(n_subjects=3, n_sessions=2, n_runs=2, n_trials=4)
    first = SimulatedMI(**kwargs)
    other_order = SimulatedMI(**kwargs)
    other_order.get_data([3])  # generating another subject first changes nothing
    a, b = _all_data(first, 2), _all_data(other_order, 2)
    assert a.keys() == b.keys() == {("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")}
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    # Runs, sessions and subjects are distinct recordings.
    assert not np.allclose(a["0", "0"][:5, :1000], a["0", "1"][:5, :1000])
    assert not np.allclose(a["0", "0"][:5, :1000], a["1", "0"][:5, :1000])

    reseeded = SimulatedMI(seed=7, **kwargs)
    assert reseeded.code != first.code
    c = _all_data(reseeded, 2)
    assert not np.allclose(a["0", "0"][:5, :1000], c["0", "0"][:5, :1000])


@pytest.mark.parametrize(
    "change",
    [
        dict(n_subjects=11),
        dict(n_sessions=3),
        dict(n_runs=1),
        dict(n_trials=21),
        dict(sfreq=256.0),
        dict(seed=43),
        dict(strengths=[0.5] * 10),
    ],
)
def test_simulated_code_reflects_every_parameter(change, caplog):
    default = SimulatedMI()
    changed = SimulatedMI(**change)
    assert changed.code != default.code
    assert changed.code == SimulatedMI(**change).code  # stable
    for code in (default.code, changed.code):
        assert code.startswith("SimulatedMI-")
        assert is_camel_kebab_case(code) and is_abbrev("SimulatedMI", code)
    assert "must be an abbreviation" not in caplog.text


def test_simulated_subject_selection_keeps_code():
    assert SimulatedMI(subjects=[2]).code == SimulatedMI().code
    assert SimulatedMI(subjects=[2]).subject_list == [2]


def test_simulated_raw_layout(small_sim):
    raw = small_sim.get_data([1])[1]["0"]["0"]
    eeg = raw.copy().pick("eeg")
    assert eeg.ch_names == list(CHANNELS)
    assert len(CHANNELS) >= 24
    assert {"Fz", "FC3", "C3", "Cz", "C4", "CP4", "Pz", "O1", "Oz", "T8"} <= set(
        eeg.ch_names
    )
    assert raw.info["sfreq"] == 128.0
    positions = eeg.get_montage().get_positions()["ch_pos"]
    assert np.isfinite(np.array([positions[ch] for ch in ("C3", "Cz", "C4")])).all()
    assert positions["C3"][0] < positions["Cz"][0] < positions["C4"][0]  # left->right
    # Volts, at EEG scale.
    assert 5e-6 < np.std(eeg.get_data()) < 50e-6
    # One cue per trial on the stim channel, balanced classes.
    stim = raw.get_data(picks="STI")[0]
    codes, counts = np.unique(stim[stim > 0], return_counts=True)
    assert codes.tolist() == [1, 2] and counts.tolist() == [5, 5]
    assert small_sim.data_path(1) == []


def test_simulated_generation_is_fast():
    dataset = SimulatedMI()  # defaults: 2 sessions x 2 runs x 40 trials
    start = time.perf_counter()
    dataset.get_data([1])
    # ~0.2 s on one core; loose bound for busy shared machines.
    assert time.perf_counter() - start < 3.0


def test_simulated_strengths():
    dataset = SimulatedMI()
    strengths = [dataset.subject_strength(s) for s in dataset.subject_list]
    assert strengths[3] == strengths[7] == 0.0  # subjects 4 and 8: null
    others = [s for i, s in enumerate(strengths, 1) if i % 4]
    assert all(0.25 <= s < 0.8 for s in others)
    assert len(set(others)) == len(others)
    # A subject keeps its parameters when the cohort grows.
    assert SimulatedMI(n_subjects=20).subject_strength(3) == strengths[2]
    explicit = SimulatedMI(n_subjects=2, strengths=[0.6, 0.0])
    assert explicit.subject_strength(1) == 0.6

    with pytest.raises(ValueError, match="one value per subject"):
        SimulatedMI(n_subjects=2, strengths=[0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        SimulatedMI(n_subjects=1, strengths=[1.2])
    with pytest.raises(ValueError, match="subjects 1..10"):
        dataset.subject_strength(11)


@pytest.mark.parametrize(
    "paradigm, extra_dims",
    [
        (LeftRightImagery(), ()),
        (MotorImagery(n_classes=2), ()),
        (FilterBankLeftRightImagery(), (6,)),
    ],
)
def test_simulated_works_with_moabb_paradigms(small_sim, paradigm, extra_dims):
    X, y, meta = paradigm.get_data(small_sim, subjects=[2])
    assert X.shape == (10, len(CHANNELS), 4 * 128 + 1, *extra_dims)
    assert sorted(set(y)) == ["left_hand", "right_hand"]
    assert set(meta["subject"]) == {2}
    assert np.isfinite(X).all()


def test_simulated_csp_lda_separates_strong_not_null_subjects():
    dataset = SimulatedMI()
    paradigm = LeftRightImagery()
    strong = next(s for s in dataset.subject_list if dataset.subject_strength(s) >= 0.5)
    aucs = {}
    for subject in (strong, 4, 8):
        X, y, _ = paradigm.get_data(dataset, subjects=[subject])
        assert X.shape == (160, len(CHANNELS), 513)
        aucs[subject] = _csp_lda_auc(X, y)
    assert 0.8 <= aucs[strong] < 0.99, aucs  # clearly decodable, not trivial
    assert abs(aucs[4] - 0.5) <= 0.15, aucs
    assert abs(aucs[8] - 0.5) <= 0.15, aucs


def test_load_epochs_array_simulated(small_sim):
    X, y, meta = load_epochs_array(small_sim, LeftRightImagery(), 1, download=False)
    assert X.shape[0] == len(y) == len(meta) == 10


# --------------------------------------------------------------------------
# Real data: run selection and missing data
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "paradigm, hand_runs, feet_runs",
    [
        (LeftRightImagery(), [4, 8, 12], []),
        (MotorImagery(events=["left_hand", "right_hand"], n_classes=2), [4, 8, 12], []),
        (MotorImagery(events=["hands", "feet"], n_classes=2), [], [6, 10, 14]),
        (MotorImagery(), [4, 8, 12], [6, 10, 14]),  # all events, incl. rest
    ],
)
def test_prepare_dataset_physionet_runs(paradigm, hand_runs, feet_runs):
    original = PhysionetMI(imagined=True)
    n_classes = getattr(paradigm, "n_classes", None)
    prepared = prepare_dataset(original, paradigm)
    assert prepared is not original
    assert (prepared.hand_runs, prepared.feet_runs) == (hand_runs, feet_runs)
    assert original.feet_runs == [6, 10, 14]  # unchanged
    # The paradigm is not modified either (MotorImagery.used_events sets
    # n_classes when it is None).
    assert getattr(paradigm, "n_classes", None) == n_classes


def test_prepare_dataset_leaves_other_datasets(small_sim):
    prepared = prepare_dataset(small_sim, LeftRightImagery())
    assert prepared is not small_sim and prepared.code == small_sim.code


@pytest.mark.timeout(120)
def test_physionet_left_right_loads_hand_runs_only(
    physionet_data, no_network, monkeypatch
):
    loaded = []
    load_one_run = PhysionetMI._load_one_run

    def spy(self, subject, run, preload=True):
        loaded.append((subject, run))
        return load_one_run(self, subject, run, preload)

    monkeypatch.setattr(PhysionetMI, "_load_one_run", spy)
    X, y, meta = load_epochs_array(PhysionetMI(), LeftRightImagery(), 2)
    assert loaded == [(2, 4), (2, 8), (2, 12)]
    assert no_network == []
    assert X.shape == (45, 64, 3 * 160 + 1)
    assert sorted(set(meta["run"])) == ["0", "1", "2"]
    assert sorted(set(y)) == ["left_hand", "right_hand"]


@pytest.mark.timeout(60)
def test_physionet_missing_subject_is_clear_without_network(
    physionet_data, no_network, monkeypatch
):
    monkeypatch.delenv("MNE_DATASETS_EEGBCI_PATH", raising=False)
    subject_dir = physionet_data / EEGBCI / "S030"
    assert not subject_dir.exists()  # the staged data stop at subject 23
    with pytest.raises(DataNotAvailableError) as info:
        load_epochs_array(PhysionetMI(), LeftRightImagery(), 30)
    message = str(info.value)
    assert "PhysionetMI" in message and "subject 30" in message
    assert str(subject_dir / "S030R04.edf") in message
    assert "S030R06.edf" not in message  # feet runs are not needed
    assert "MNE_DATA" in message and "download=True" in message
    assert no_network == []
    assert not subject_dir.exists()  # nothing created in the data folder


@pytest.mark.timeout(60)
def test_missing_data_in_empty_folder(tmp_path, no_network, monkeypatch):
    monkeypatch.setenv("MNE_DATA", str(tmp_path))
    monkeypatch.delenv("MNE_DATASETS_EEGBCI_PATH", raising=False)
    with pytest.raises(DataNotAvailableError, match="subject 1 .*not on disk") as info:
        check_data_available(prepare_dataset(PhysionetMI(), LeftRightImagery()), [1])
    assert str(tmp_path / EEGBCI / "S001" / "S001R04.edf") in str(info.value)
    assert no_network == []
    # Nothing configured and download allowed: no pre-check, MOABB may fetch.
    check_data_available(PhysionetMI(), [1], download=True)


@pytest.mark.timeout(60)
def test_failed_download_becomes_data_not_available(tmp_path, no_network, monkeypatch):
    monkeypatch.setenv("MNE_DATA", str(tmp_path))
    monkeypatch.delenv("MNE_DATASETS_EEGBCI_PATH", raising=False)
    with pytest.raises(
        DataNotAvailableError, match="subject 1 could not be loaded"
    ) as info:
        load_epochs_array(PhysionetMI(), LeftRightImagery(), 1, download=True)
    assert no_network  # MOABB did try, and failed fast
    assert isinstance(info.value.__cause__, OSError)
    assert str(tmp_path) in str(info.value) and "MNE_DATA" in str(info.value)


def test_invalid_subject_and_incompatible_paradigm():
    with pytest.raises(ValueError, match="no subject 200; valid subjects are 1..109"):
        check_data_available(PhysionetMI(), [200])
    with pytest.raises(ValueError, match="cannot be used with LeftRightImagery"):
        load_epochs_array(BNCI2014_002(), LeftRightImagery(), 1)


# --------------------------------------------------------------------------
# Listing: motor-imagery datasets only, unless asked for all
# --------------------------------------------------------------------------


def test_catalog_lists_motor_imagery_datasets_by_default():
    listed = set(catalog()["name"])
    everything = set(catalog(include_other_tasks=True)["name"])
    # MOABB files visual, imagined-speech and arithmetic datasets under "imagery".
    others = everything - listed
    assert {"Kaneshiro2015", "Nguyen2017_V", "Pressel2016", "Shin2017B"} <= others
    assert {"PhysionetMI", "BNCI2014_001", "Cho2017", "SimulatedMI", "Zuo2025",
            "Ofner2017"} <= listed
    assert all(datasets.is_motor_task(get_dataset(name)) for name in ("Zhang2017", "Liu2025"))
    assert not datasets.is_motor_task(get_dataset("Kaneshiro2015"))
    # Every dataset stays reachable by name.
    assert type(get_dataset("Kaneshiro2015")).__name__ == "Kaneshiro2015"


def test_cli_datasets_lists_motor_imagery_and_says_how_to_see_all(capsys):
    from chatbci.cli import main

    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "PhysionetMI" in out and "Kaneshiro2015" not in out and "--all" in out
    assert main(["datasets", "--all"]) == 0
    assert "Kaneshiro2015" in capsys.readouterr().out
