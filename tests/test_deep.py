"""Deep-learning decoders (braindecode networks) as first-class pipelines (issue 15).

Tests that train a network skip, with the reason, when the optional ``deep``
extra (torch, braindecode, skorch) is not installed; CI installs it. They use
one simulated subject, a few channels' worth of filters and 2-4 epochs.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

from chatbci.bci import deep
from chatbci.bci.benchmark import BenchmarkStopped, run_benchmark
from chatbci.bci.datasets import SimulatedMI
from chatbci.bci.pipelines import (
    COMPONENTS,
    PipelineError,
    PipelineSpec,
    get_pipeline,
    list_components,
)

needs_deep = pytest.mark.skipif(
    not deep.deep_available(),
    reason="the deep extra is not installed (torch, braindecode, skorch): "
           "pip install torch==2.13.0 -e '.[deep]'",
)

#: A small ShallowFBCSPNet: seconds per fit on one CPU core.
TINY = """
name: TinyShallow
pipeline:
  - name: ShallowFBCSPNet
    parameters:
      n_filters_time: 4
      n_filters_spat: 4
      filter_time_length: 9
      pool_time_length: 25
      pool_time_stride: 10
      max_epochs: {epochs}
      patience: 2
      batch_size: 8
"""


def tiny(epochs=3, **params):
    spec = PipelineSpec.from_yaml(TINY.format(epochs=epochs))
    spec.steps[0].parameters.update(params)
    return PipelineSpec.model_validate(spec.to_dict())


def tiny_dataset():
    return SimulatedMI(n_subjects=1, n_sessions=1, n_runs=1, n_trials=12, seed=3)


# -- allow-list, validation, canonical pipelines (no extra needed) -------------------


def test_networks_are_allow_listed_with_their_parameters():
    listed = {c["name"]: c for c in list_components()}
    for name in ("ShallowFBCSPNet", "EEGNetv4", "Deep4Net", "EEGConformer", "ATCNet"):
        assert listed[name]["role"] == "classifier"
        assert listed[name]["from"] == "chatbci.bci.deep"
        params = listed[name]["parameters"]
        for training in ("max_epochs", "lr", "batch_size", "optimizer", "patience",
                         "valid_fraction", "device", "random_state"):
            assert training in params, (name, training)
    assert listed["EEGNetv4"]["parameters"]["F1"] == 8
    assert listed["ShallowFBCSPNet"]["parameters"]["n_filters_time"] == 40
    json.dumps(list_components())  # what the assistant's tool sends the model


@pytest.mark.parametrize("params, message", [
    ({"max_epochs": 0}, "max_epochs"),
    ({"optimizer": "Adagrad"}, "optimizer"),
    ({"device": "tpu"}, "device"),
    ({"drop_prob": 1.5}, "drop_prob"),
    ({"n_layers": 3}, "Unknown parameter"),
])
def test_network_parameters_are_validated_on_load(params, message):
    text = "name: bad\npipeline:\n  - name: EEGNet\n    parameters: " + json.dumps(params)
    with pytest.raises(PipelineError, match=message):
        PipelineSpec.from_yaml(text)


def test_canonical_deep_pipelines_carry_moabb_settings():
    for name, model in [("ShallowConvNet", "ShallowFBCSPNet"), ("EEGNet_8_2", "EEGNetv4"),
                        ("DeepConvNet", "Deep4Net"), ("EEGConformer", "EEGConformer"),
                        ("ATCNet", "ATCNet")]:
        spec = get_pipeline(name)
        assert [s.name for s in spec.steps] == [model]
        net = spec.build().steps[-1][1]
        assert (net.lr, net.batch_size, net.optimizer, net.max_epochs, net.patience,
                net.valid_fraction, net.device) == (1e-4, 64, "Adam", 1000, 300, 0.2, "cpu")
        assert spec.citations


def test_without_the_extra_fitting_says_how_to_install(tmp_path):
    """A machine without torch: components load; fitting names the fix."""
    code = (
        # As if torch were not installed: any import of it fails as a missing module.
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import numpy as np\n"
        "from chatbci.bci.pipelines import get_pipeline\n"
        "from chatbci.bci.deep import DeepUnavailableError, deep_available\n"
        "assert not deep_available()\n"
        "clf = get_pipeline('ShallowConvNet').build()\n"
        "try:\n"
        "    clf.fit(np.zeros((4, 3, 200)), [0, 1, 0, 1])\n"
        "except DeepUnavailableError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert 'pip install "chatbci[deep]"' in out.stdout
    assert "torch" in out.stdout


def test_receptive_field_and_description():
    rf = deep.receptive_field("ShallowFBCSPNet", sfreq=250.0)
    assert rf["samples"] == 25 + 75 - 1 and rf["seconds"] == pytest.approx(99 / 250, abs=1e-3)
    desc = deep.describe_network("EEGNet", {"F1": 4}, sfreq=128)
    assert desc["name"] == "EEGNetv4" and desc["architecture"]["F1"] == 4
    assert "Lawhern" in desc["reference"]


# -- with the extra: training, MOABB equality, determinism, stop ---------------------


@needs_deep
def test_defaults_are_braindecodes():
    """Declared defaults follow braindecode's, except the documented window-free ones."""
    overrides = {("ShallowFBCSPNet", "final_conv_length"), ("EEGConformer", "final_fc_length")}
    for name, info in deep.MODELS.items():
        sig = inspect.signature(info.model_class().__init__).parameters
        for param, default in info.architecture.items():
            assert param in sig, (name, param)
            if (name, param) not in overrides:
                assert sig[param].default == default, (name, param)


@needs_deep
def test_deep_pipeline_scores_as_plain_moabb(tmp_path):
    """Same folds, same seed: chatbci and MOABB's evaluation score a network alike."""
    from moabb.evaluations import WithinSessionEvaluation
    from moabb.paradigms import LeftRightImagery

    ds = tiny_dataset()
    spec = tiny(epochs=3)
    ours = run_benchmark([spec], dataset=ds, subjects=[1], random_state=42, progress=False)
    seeded = deep.seed_deep_steps(spec.build(), 42)  # what chatbci ran
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = WithinSessionEvaluation(paradigm=LeftRightImagery(), datasets=[ds],
                                             random_state=42, n_jobs=1, overwrite=True,
                                             hdf5_path=str(tmp_path))
        theirs = evaluation.process({spec.name: seeded})
    assert len(ours) == len(theirs) == 1
    diff = abs(float(ours["score"].iloc[0]) - float(theirs["score"].iloc[0]))
    assert diff < 1e-6, (ours["score"].tolist(), theirs["score"].tolist())


@needs_deep
def test_training_is_deterministic_and_recorded(tmp_path):
    ds = tiny_dataset()
    runs = [run_benchmark([tiny(epochs=2)], dataset=ds, subjects=[1], random_state=7,
                          progress=False) for _ in range(2)]
    assert runs[0]["score"].tolist() == runs[1]["score"].tolist()
    info = runs[0].attrs["chatbci"]["deep"]["TinyShallow"]
    net = info["networks"]["shallowfbcsp net".replace(" ", "")]
    assert net == {"model": "ShallowFBCSPNet", "device": "cpu", "seed": 7, "n_threads": 1}
    assert info["versions"]["torch"] and info["versions"]["braindecode"]
    # Another seed trains another network: the seed is part of the cache key.
    other = run_benchmark([tiny(epochs=2)], dataset=ds, subjects=[1], random_state=8,
                          progress=False, cache_dir=tmp_path)
    again = run_benchmark([tiny(epochs=2)], dataset=ds, subjects=[1], random_state=8,
                          progress=False, cache_dir=tmp_path)
    assert again.attrs["chatbci"]["n_cached"] == 1
    assert again["score"].tolist() == other["score"].tolist()


@needs_deep
def test_fitted_network_reports_epochs_and_patterns():
    from chatbci.bci.datasets import load_epochs_array

    ds = tiny_dataset()
    from chatbci.bci.benchmark import make_paradigm

    X, y, _ = load_epochs_array(ds, make_paradigm("left_right"), 1)
    seen = []
    clf = tiny(epochs=3, random_state=0, patience=None).build()
    with deep.epoch_listener(seen.append):
        clf.fit(X, y)
    assert [e["epoch"] for e in seen] == [1, 2, 3]
    assert all(e["model"] == "ShallowFBCSPNet" and e["max_epochs"] == 3 for e in seen)
    net = clf.steps[-1][1]
    assert net.n_epochs_ == 3 and net.seed_ == 0 and net.device_ == "cpu"
    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), 2) and np.allclose(proba.sum(axis=1), 1)
    result = deep.spatial_patterns(clf, X, n_show=3)
    assert result["patterns"].shape == (3, X.shape[1])
    assert np.all(np.diff(result["variance"]) <= 0)
    import mne

    from chatbci.bci.simulated import CHANNELS

    info = mne.create_info(list(CHANNELS), 128.0, "eeg")
    info.set_montage("standard_1020")
    fig = deep.plot_patterns(result, info)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 3  # one topomap per unit


@needs_deep
def test_stop_ends_training_within_seconds(tmp_path, monkeypatch):
    """Stop while a network trains: the run ends in seconds, not after its epochs."""
    progress = tmp_path / "epochs.jsonl"
    monkeypatch.setenv(deep.PROGRESS_FILE_ENV, str(progress))
    ds = tiny_dataset()
    stop = threading.Event()
    outcome = {}

    def run():
        try:
            run_benchmark([tiny(epochs=100000, patience=None)], dataset=ds, subjects=[1],
                          random_state=1, progress=False, stop=stop,
                          cache_dir=tmp_path / "cache")
        except BenchmarkStopped as err:
            outcome["stopped"] = err
        outcome["t_end"] = time.perf_counter()

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (
            progress.exists() and len(progress.read_text().splitlines()) >= 2):
        time.sleep(0.1)
    epochs = [json.loads(line) for line in progress.read_text().splitlines()]
    assert len(epochs) >= 2, "training never started"
    t_stop = time.perf_counter()
    stop.set()
    worker.join(60)
    assert not worker.is_alive()
    assert "stopped" in outcome
    assert outcome["t_end"] - t_stop < 5
    assert max(e["epoch"] for e in epochs) < 100000


# -- the assistant and the export ----------------------------------------------------


def test_offline_assistant_proposes_deep_pipelines():
    from chatbci.assistant.offline import _deep_suggestion

    plain = _deep_suggestion("suggest a deep pipeline", {}, [])
    assert plain["action"]["args"]["pipelines"] == ["ShallowConvNet", "TS+LR"]
    assert "little data" in plain["rationale"]
    named = _deep_suggestion("try EEGNet on subjects 1-2", {}, [])
    assert named["action"]["args"]["pipelines"] == ["EEGNet_8_2", "TS+LR"]
    assert named["action"]["args"]["subjects"] == "1-2"


def test_cost_counts_training_epochs():
    from chatbci.bci.cost import estimate_cost

    cost = estimate_cost([get_pipeline("ShallowConvNet"), get_pipeline("TS+LR")],
                         evaluation="within-session", n_subjects=2, n_sessions=1)
    assert cost.per_pipeline["ShallowConvNet"]["epochs"] == 10 * 1000
    assert "up to 10,000 training epochs" in cost.text()


@needs_deep
def test_chat_proposes_deep_pipeline_human_approves_export_describes_it(tmp_path):
    """A session: the assistant proposes a network, the human approves, the export says it."""
    from chatbci.assistant.offline import OfflineBackend
    from chatbci.assistant.session import Session
    from chatbci.export import bibtex, methods_section
    from chatbci.workspace import Workspace

    ws = Workspace.create(tmp_path / "study", title="Deep study", goal="Left vs right",
                          datasets=["SimulatedMI"], subjects="1")
    session = Session(ws, backend=OfflineBackend(), human="ada", n_jobs=1)
    shown = []  # what the panel's / terminal's progress bar shows
    session.progress = lambda done, total, text: shown.append(text)
    turn = session.send("define pipeline TinyNet: ShallowFBCSPNet(max_epochs=2, "
                        "n_filters_time=4, n_filters_spat=4, filter_time_length=9, "
                        "pool_time_length=25, pool_time_stride=10, batch_size=16)")
    session.approve(turn.suggestions[0].id, "small enough for a first look")
    turn = session.send("suggest a deep pipeline: try TinyNet on subject 1")
    (sugg,) = turn.suggestions
    assert sugg.payload["action"]["args"]["pipelines"] == ["TinyNet", "TS+LR"]
    assert sugg.payload["estimate"]["epochs"] == 10 * 2  # 2 sessions x 5 folds x 2
    done = session.approve(sugg.id, "go")
    assert done.tool_results, done.text
    assert "ShallowFBCSPNet epoch 2/2" in " ".join(shown)  # per-epoch progress
    run = ws.journal.events(kind="run")[-1].payload
    net = run["deep"]["TinyNet"]
    assert net["networks"]["shallowfbcspnet"]["seed"] == run["config"]["random_state"]
    assert net["versions"]["braindecode"]
    session.close()

    text = methods_section(ws, "md")
    assert "Deep-learning decoders" in text
    assert "Shallow ConvNet" in text and "at most 2 epochs" in text
    assert "early after 300 epochs" in text and "20 % of each training fold" in text
    assert f"seeded with {run['config']['random_state']}" in text
    assert f"braindecode {net['versions']['braindecode']}" in text
    assert "[@schirrmeister2017deep]" in text
    bib = bibtex(ws)
    assert "@article{schirrmeister2017deep," in bib and "Human Brain Mapping" in bib
    ws.close()
