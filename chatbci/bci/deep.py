"""Deep-learning decoders: braindecode networks as chatbci pipeline components.

Each network of :data:`MODELS` (ShallowFBCSPNet, EEGNetv4, Deep4Net,
EEGConformer, ATCNet) is a scikit-learn classifier here, registered in the
pipeline allow-list (:data:`chatbci.bci.pipelines.COMPONENTS`) like CSP or
LDA, so it is written in MOABB's YAML pipeline format, validated, cached and
run by MOABB's evaluations unchanged. Its parameters are the network's
architecture parameters (braindecode's names and defaults) and the training
parameters of :data:`TRAINING_DEFAULTS` (MOABB's published braindecode
settings: Adam, learning rate 1e-4, batch size 64, at most 1000 epochs,
early stopping on the validation loss after 300 epochs without improvement,
on an inner stratified 20 % validation split).

Training goes through braindecode's :class:`~braindecode.EEGClassifier`
(skorch). It is deterministic: the network's initial weights, the batch
order, dropout and the inner validation split all derive from
``random_state`` (the benchmark sets it from the evaluation's random state
when the pipeline leaves it unset), torch runs its deterministic algorithms
with a fixed number of threads, so a re-run gives the same scores and the
result cache stays truthful.

torch, braindecode and skorch are an optional extra (``pip install
"chatbci[deep]"``). This module imports them only when a network is fitted:
without them everything else in chatbci works, the components are still
listed and validated, and fitting one raises :class:`DeepUnavailableError`
saying how to install the extra.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils._param_validation import Interval, StrOptions

__all__ = [
    "DEVICES",
    "MODELS",
    "OPTIMIZERS",
    "TRAINING_DEFAULTS",
    "DeepUnavailableError",
    "ModelInfo",
    "deep_available",
    "deep_identity",
    "deep_steps",
    "deep_versions",
    "describe_network",
    "epoch_listener",
    "epoch_text",
    "follow_epochs",
    "max_epochs_of",
    "receptive_field",
    "require_deep",
    "resolve_device",
    "seed_deep_steps",
    "plot_patterns",
    "spatial_patterns",
]

#: The command that installs the optional dependencies. torch first, pinned:
#: an unpinned ``pip install torch`` on Linux pulls a several-GB CUDA build.
INSTALL_HINT = (
    'pip install torch --index-url https://download.pytorch.org/whl/cpu && '
    'pip install "chatbci[deep]"'
)


class DeepUnavailableError(ImportError):
    """torch, braindecode or skorch (the ``deep`` extra) is not installed."""


def _import_braindecode():
    """Import braindecode, bridging MOABB's renamed datasets for braindecode < 1.0.

    braindecode 0.8 (the last release that runs without torchaudio, which
    has no build for recent CPU-only torch) imports ``BNCI2014001`` from
    ``moabb.datasets``, a name MOABB 1.x spells ``BNCI2014_001``. The alias
    is added only when missing and points at the same class.
    """
    import moabb.datasets as mdatasets

    if not hasattr(mdatasets, "BNCI2014001") and hasattr(mdatasets, "BNCI2014_001"):
        mdatasets.BNCI2014001 = mdatasets.BNCI2014_001
    import braindecode

    return braindecode


def require_deep() -> dict[str, Any]:
    """Import torch, braindecode and skorch, or say how to install them.

    Returns
    -------
    modules : dict
        ``{"torch": module, "braindecode": module, "skorch": module}``.

    Raises
    ------
    DeepUnavailableError
        Naming the missing package and the install command.
    """
    modules = {}
    for name in ("torch", "skorch", "braindecode"):
        try:
            modules[name] = (_import_braindecode() if name == "braindecode"
                             else __import__(name))
        except ImportError as err:
            raise DeepUnavailableError(
                f"Deep-learning decoders need {name}, which could not be imported "
                f"({err}). Install the optional extra: {INSTALL_HINT} (a CPU build of "
                "torch; on a machine with a GPU install torch's CUDA build instead)."
            ) from None
    return modules


def deep_available() -> bool:
    """Whether torch, braindecode and skorch can be imported."""
    try:
        require_deep()
    except DeepUnavailableError:
        return False
    return True


def deep_versions() -> dict[str, str | None]:
    """Installed versions of torch, braindecode and skorch (None when absent)."""
    out = {}
    for pkg in ("torch", "braindecode", "skorch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


#: Accepted values of the ``device`` parameter.
DEVICES = ("cpu", "cuda", "auto")


def resolve_device(device: str) -> str:
    """The torch device a network trains on.

    Parameters
    ----------
    device : {"cpu", "cuda", "auto"}
        ``"auto"`` is ``"cuda"`` when torch sees a GPU, else ``"cpu"``.

    Returns
    -------
    device : str
        ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    ValueError
        ``"cuda"`` asked for without a usable GPU, or an unknown device.
    """
    if device not in DEVICES:
        raise ValueError(f"device={device!r} is not one of {', '.join(DEVICES)}.")
    if device == "cpu":
        return "cpu"
    try:
        import torch
    except ImportError:
        if device == "auto":
            return "cpu"
        raise
    has_gpu = torch.cuda.is_available()
    if device == "cuda" and not has_gpu:
        raise ValueError(
            "device='cuda' was asked for but torch sees no GPU (torch "
            f"{torch.__version__}). Use device: cpu, or device: auto to take a GPU "
            "only where one is present."
        )
    return "cuda" if has_gpu else "cpu"


# ---------------------------------------------------------------------------
# The networks
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """What chatbci knows about one braindecode network.

    Parameters
    ----------
    name : str
        Component name (braindecode's class name in braindecode 0.8).
    braindecode_names : tuple of str
        Class names to look up in ``braindecode.models``, first found wins
        (braindecode 1.x renamed ``EEGNetv4`` to ``EEGNet``).
    description : str
        One line for humans and LLMs.
    architecture : mapping
        Architecture parameters exposed to pipelines, with their defaults
        (braindecode's, except where ``notes`` says otherwise).
    citation : str
        Key of the model paper in :mod:`chatbci.export.bibtex`.
    reference : str
        The model paper in one line (authors, year, venue, DOI).
    first_layers : tuple of str
        Attribute path of the temporal and of the spatial convolution, for
        :func:`spatial_patterns` (empty when the first layers are not a
        temporal / spatial pair).
    notes : str
        Why and when to use it, for the assistant's explanations.
    signal_args : tuple of str
        Signal parameters the network takes from the data.
    """

    name: str
    braindecode_names: tuple[str, ...]
    description: str
    architecture: Mapping[str, Any]
    citation: str
    reference: str
    first_layers: tuple[str, ...] = ()
    notes: str = ""
    signal_args: tuple[str, ...] = ("n_chans", "n_outputs", "n_times")

    def model_class(self):
        """The braindecode network class (imports braindecode)."""
        models = require_deep()["braindecode"].models
        for name in self.braindecode_names:
            if hasattr(models, name):
                return getattr(models, name)
        raise DeepUnavailableError(  # pragma: no cover - a future braindecode
            f"The installed braindecode ({deep_versions()['braindecode']}) has none of "
            f"{', '.join(self.braindecode_names)}. Install a braindecode that has it: "
            f"{INSTALL_HINT}."
        )


_SCHIRRMEISTER = ("Schirrmeister et al. 2017, Deep learning with convolutional neural "
                  "networks for EEG decoding and visualization, Human Brain Mapping 38(11), "
                  "doi:10.1002/hbm.23730")

MODELS: Mapping[str, ModelInfo] = MappingProxyType({m.name: m for m in (
    ModelInfo(
        "ShallowFBCSPNet", ("ShallowFBCSPNet",),
        "Shallow ConvNet: temporal then spatial convolution, squaring, mean pooling and "
        "log (a learnt filter-bank CSP); about 40k weights.",
        {"n_filters_time": 40, "filter_time_length": 25, "n_filters_spat": 40,
         "pool_time_length": 75, "pool_time_stride": 15, "final_conv_length": "auto",
         "pool_mode": "mean", "split_first_layer": True, "batch_norm": True,
         "drop_prob": 0.5},
        "schirrmeister2017", _SCHIRRMEISTER,
        first_layers=("conv_time_spat.conv_time", "conv_time_spat.conv_spat"),
        notes="Mimics FBCSP (band-pass, spatial filter, log-variance), so it needs little "
              "data: the deep net of choice for small motor-imagery datasets. "
              "final_conv_length 'auto' (MOABB's setting) fits any window length.",
    ),
    ModelInfo(
        "EEGNetv4", ("EEGNetv4", "EEGNet"),
        "EEGNet-8,2: temporal convolution, depthwise spatial convolution (D filters per "
        "temporal filter), separable convolution; about 2-3k weights.",
        {"F1": 8, "D": 2, "F2": 16, "kernel_length": 64, "drop_prob": 0.25,
         "pool_mode": "mean", "final_conv_length": "auto"},
        "lawhern2018", "Lawhern et al. 2018, EEGNet: a compact convolutional neural network "
        "for EEG-based brain-computer interfaces, Journal of Neural Engineering 15(5), "
        "doi:10.1088/1741-2552/aace8c",
        first_layers=("conv_temporal", "conv_spatial"),
        notes="Very few weights, designed to train on small datasets. kernel_length is in "
              "samples: 64 is half a second at 128 Hz (the paper's rate).",
    ),
    ModelInfo(
        "Deep4Net", ("Deep4Net",),
        "Deep ConvNet: four convolution-max-pooling blocks (25-50-100-200 filters); "
        "about 280k weights.",
        {"n_filters_time": 25, "n_filters_spat": 25, "filter_time_length": 10,
         "pool_time_length": 3, "pool_time_stride": 3, "n_filters_2": 50,
         "filter_length_2": 10, "n_filters_3": 100, "filter_length_3": 10,
         "n_filters_4": 200, "filter_length_4": 10, "final_conv_length": "auto",
         "split_first_layer": True, "batch_norm": True, "drop_prob": 0.5},
        "schirrmeister2017", _SCHIRRMEISTER,
        first_layers=("conv_time_spat.conv_time", "conv_time_spat.conv_spat"),
        notes="Needs more trials than the shallow net (many weights); in MOABB's benchmark "
              "it scored below ShallowConvNet on small left/right datasets. Windows "
              "shorter than about 1 s at 250 Hz are too short for its four poolings.",
    ),
    ModelInfo(
        "EEGConformer", ("EEGConformer",),
        "Convolution (shallow-net style) followed by a transformer encoder over the "
        "pooled time steps.",
        {"n_filters_time": 40, "filter_time_length": 25, "pool_time_length": 75,
         "pool_time_stride": 15, "drop_prob": 0.5, "att_depth": 6, "att_heads": 10,
         "att_drop_prob": 0.5, "final_fc_length": "auto"},
        "song2023", "Song et al. 2023, EEG Conformer: convolutional transformer for EEG "
        "decoding and visualization, IEEE TNSRE 31, doi:10.1109/TNSRE.2022.3230250",
        notes="Attention layers add many weights: expect it to need more data than "
              "ShallowFBCSPNet. final_fc_length 'auto' fits any window length.",
    ),
    ModelInfo(
        "ATCNet", ("ATCNet",),
        "EEGNet-style convolution block, multi-head self-attention over sliding windows "
        "and temporal convolutional networks.",
        {"conv_block_n_filters": 16, "conv_block_kernel_length_1": 64,
         "conv_block_kernel_length_2": 16, "conv_block_pool_size_1": 8,
         "conv_block_pool_size_2": 7, "conv_block_depth_mult": 2,
         "conv_block_dropout": 0.3, "n_windows": 5, "att_head_dim": 8,
         "att_num_heads": 2, "att_dropout": 0.5, "tcn_depth": 2, "tcn_kernel_size": 4,
         "tcn_n_filters": 32, "tcn_dropout": 0.3, "concat": False,
         "max_norm_const": 0.25, "sfreq": 250.0},
        "altaheri2023", "Altaheri et al. 2023, Physics-informed attention temporal "
        "convolutional network for EEG-based motor imagery classification, IEEE TII 19(2), "
        "doi:10.1109/TII.2022.3197419",
        notes="Designed for BCI IV 2a at 250 Hz with 4.5 s windows: set sfreq to the "
              "data's sampling rate (it converts the window length to seconds). Needs "
              "windows long enough for its two poolings (8 x 7 samples) and n_windows.",
        signal_args=("n_chans", "n_outputs", "input_window_seconds", "sfreq"),
    ),
)})

_ALIASES = MappingProxyType({"EEGNet": "EEGNetv4", "ShallowConvNet": "ShallowFBCSPNet",
                             "DeepConvNet": "Deep4Net"})

#: Accepted values of the ``optimizer`` parameter (classes of ``torch.optim``).
OPTIMIZERS = ("Adam", "AdamW", "SGD")

#: Training parameters shared by every network, with their defaults: MOABB's
#: braindecode pipelines (examples/pipelines_braindecode in MOABB).
TRAINING_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "max_epochs": 1000,
    "lr": 1e-4,
    "batch_size": 64,
    "optimizer": "Adam",
    "weight_decay": 0.0,
    "patience": 300,
    "valid_fraction": 0.2,
    "input_scale": 1e6,
    "device": "cpu",
    "n_threads": 1,
    "random_state": None,
})

_TRAINING_DOC = """\
max_epochs : int
    Most passes over the training data.
lr : float
    Learning rate of the optimizer.
batch_size : int
    Trials per gradient step.
optimizer : {"Adam", "AdamW", "SGD"}
    Optimizer from ``torch.optim``.
weight_decay : float
    The optimizer's weight decay.
patience : int | None
    Early stopping: training ends after ``patience`` epochs without a lower
    loss on the inner validation split (skorch's ``EarlyStopping`` on
    ``valid_loss``, as in MOABB; the weights of the last epoch are kept).
    None trains for ``max_epochs`` (and with ``valid_fraction`` 0, no split).
valid_fraction : float
    Share of the training trials held out, stratified, as the inner
    validation split watched by early stopping (0: none).
input_scale : float
    Factor applied to the signals before the network (1e6: volts, MNE's
    unit, to microvolts, the range the networks' defaults were tuned on).
device : {"cpu", "cuda", "auto"}
    Where torch trains; ``"auto"`` takes a GPU when torch sees one.
n_threads : int
    CPU threads torch uses while fitting and predicting. Fixed, so that
    scores do not depend on the machine's core count (chatbci parallelises
    over subjects instead).
random_state : int | None
    Seed of the initial weights, batch order, dropout and validation split.
    None: the benchmark sets the evaluation's random state; fitted directly,
    a fresh seed is drawn (recorded in ``seed_``)."""


def _constraints(info: ModelInfo) -> dict[str, list]:
    """scikit-learn parameter constraints, so specs are checked on load."""
    out: dict[str, list] = {
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left"), None],
        "valid_fraction": [Interval(Real, 0, 1, closed="left")],
        "input_scale": [Interval(Real, 0, None, closed="neither")],
        "device": [StrOptions(set(DEVICES))],
        "n_threads": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }
    for param, default in info.architecture.items():
        if isinstance(default, bool):
            out[param] = ["boolean"]
        elif param in ("final_conv_length", "final_fc_length"):
            out[param] = [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")]
        elif param == "pool_mode":
            out[param] = [StrOptions({"mean", "max"})]
        elif "drop" in param:
            out[param] = [Interval(Real, 0, 1, closed="left")]
        elif isinstance(default, Integral):
            out[param] = [Interval(Integral, 1, None, closed="left")]
        elif isinstance(default, Real):
            out[param] = [Interval(Real, 0, None, closed="neither")]
    return out


class _DeepClassifier(ClassifierMixin, BaseEstimator):
    """Shared behaviour of the network components (see :func:`_component`)."""

    _info: ModelInfo

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags

    # -- data ---------------------------------------------------------------

    def _as_input(self, X) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 3:
            raise ValueError(
                f"{self._info.name} takes epochs shaped (trials, channels, times); got an "
                f"array of shape {X.shape}. Put it first in the pipeline, on the "
                "paradigm's epochs (no Covariances or feature step before it)."
            )
        return (X * self.input_scale).astype(np.float32)

    def _seed(self) -> int:
        if self.random_state is None:
            return int(np.random.SeedSequence().entropy % (2**31 - 1))
        if isinstance(self.random_state, Integral):
            return int(self.random_state)
        return int(np.random.RandomState(self.random_state).randint(2**31 - 1))

    # -- the skorch net ------------------------------------------------------

    def _module_params(self, n_chans, n_times, n_outputs) -> dict[str, Any]:
        info = self._info
        params = {p: getattr(self, p) for p in info.architecture}
        signal = {"n_chans": n_chans, "n_outputs": n_outputs, "n_times": n_times}
        if "input_window_seconds" in info.signal_args:
            signal["input_window_seconds"] = n_times / float(params["sfreq"])
        for arg in info.signal_args:
            if arg in signal:
                params[arg] = signal[arg]
        cls = info.model_class()
        import inspect

        accepted = inspect.signature(cls.__init__).parameters
        if "add_log_softmax" in accepted:
            # The loss applies log-softmax itself (CrossEntropyLoss).
            params["add_log_softmax"] = False
        return {k: v for k, v in params.items() if k in accepted}

    def _make_net(self, n_chans, n_times, n_outputs, seed, device):
        mods = require_deep()
        torch, skorch = mods["torch"], mods["skorch"]
        from skorch.callbacks import EarlyStopping
        from skorch.dataset import ValidSplit

        callbacks = [("chatbci_progress", _progress_callback(self._info.name,
                                                            self.max_epochs))]
        split = None
        if self.valid_fraction > 0:
            split = ValidSplit(self.valid_fraction, stratified=True, random_state=seed)
            if self.patience is not None:
                callbacks.append(("early_stopping",
                                  EarlyStopping(monitor="valid_loss",
                                                patience=self.patience)))
        module_params = self._module_params(n_chans, n_times, n_outputs)
        kwargs = {f"module__{k}": v for k, v in module_params.items()}
        return mods["braindecode"].EEGClassifier(
            module=self._info.model_class(),
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=getattr(torch.optim, self.optimizer),
            optimizer__lr=self.lr,
            optimizer__weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            train_split=split,
            iterator_train__shuffle=True,
            callbacks=callbacks,
            device=device,
            verbose=0,
            **kwargs,
        ), skorch

    # -- scikit-learn API ----------------------------------------------------

    def fit(self, X, y):
        """Train the network on epochs ``X`` (trials, channels, times) and labels ``y``.

        Parameters
        ----------
        X : array, shape (n_trials, n_channels, n_times)
            Epochs, as a MOABB paradigm returns them (volts).
        y : array, shape (n_trials,)
            Class labels.

        Returns
        -------
        self : object
            With ``classes_``, ``net_`` (the fitted braindecode
            ``EEGClassifier``), ``seed_``, ``device_``, ``n_epochs_`` (epochs
            trained) and ``stopped_early_``.
        """
        self._validate_params()
        mods = require_deep()  # before any work: the fix, not a deep traceback
        Xf = self._as_input(X)
        self.classes_, y_enc = np.unique(np.asarray(y), return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{self._info.name} needs at least 2 classes; got "
                             f"{list(self.classes_)}.")
        self.device_ = resolve_device(self.device)
        self.seed_ = self._seed()
        with deterministic_torch(self.seed_, self.n_threads, self.device_):
            net, _ = self._make_net(Xf.shape[1], Xf.shape[2], len(self.classes_),
                                    self.seed_, self.device_)
            try:
                net.fit(Xf, y_enc.astype(np.int64))
            except RuntimeError as err:
                raise ValueError(_explain_training_error(self._info, Xf.shape, err)) \
                    from err
        self.net_ = net
        self.n_epochs_ = len(net.history)
        self.stopped_early_ = self.n_epochs_ < self.max_epochs
        self.versions_ = {k: v for k, v in deep_versions().items()}
        del mods
        return self

    def predict_proba(self, X):
        """Class probabilities of epochs ``X`` (trials, channels, times)."""
        Xf = self._as_input(X)
        with deterministic_torch(self.seed_, self.n_threads, self.device_):
            return self.net_.predict_proba(Xf).astype(np.float64)

    def predict(self, X):
        """Predicted class labels of epochs ``X`` (trials, channels, times)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_is_fitted__(self):
        return hasattr(self, "net_")


def _explain_training_error(info: ModelInfo, shape, err) -> str:
    text = str(err)
    if "size" in text.lower() or "kernel" in text.lower() or "output" in text.lower():
        return (
            f"{info.name} could not run on epochs of {shape[1]} channels x {shape[2]} "
            f"samples: {text.splitlines()[0]}. The window is probably too short for its "
            "kernels and poolings: use a longer window (paradigm tmin/tmax), a higher "
            "sampling rate, or smaller filter_time_length / pool lengths / kernel_length."
        )
    return f"{info.name} training failed: {text.splitlines()[0]}"


def _component(info: ModelInfo) -> type:
    """A scikit-learn classifier class for one network.

    scikit-learn finds an estimator's parameters in the signature of its
    ``__init__``; the signature is generated from :attr:`ModelInfo.architecture`
    and :data:`TRAINING_DEFAULTS`, so the allow-list shows, validates and
    hashes exactly the parameters a pipeline can set.
    """
    import inspect

    defaults = {**info.architecture, **TRAINING_DEFAULTS}
    sig = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
           for k, v in defaults.items()]
    )

    def __init__(self, **params):
        unknown = set(params) - set(defaults)
        if unknown:
            raise TypeError(f"{info.name} got unknown parameter(s) {sorted(unknown)}; "
                            f"valid: {', '.join(defaults)}.")
        for key, default in defaults.items():
            setattr(self, key, params.get(key, default))

    __init__.__signature__ = sig
    __init__.__qualname__ = f"{info.name}.__init__"
    arch_doc = "\n".join(f"{k} : {type(v).__name__}\n    braindecode's ``{k}`` "
                         f"(default {v!r})." for k, v in info.architecture.items())
    doc = (f"{info.description}\n\nbraindecode's ``{info.braindecode_names[0]}`` trained "
           f"through ``EEGClassifier``. {info.notes}\n\nParameters\n----------\n"
           f"{arch_doc}\n{_TRAINING_DOC}\n\nReferences\n----------\n{info.reference}\n")
    return type(info.name, (_DeepClassifier,), {
        "__init__": __init__, "__doc__": doc, "__module__": __name__, "_info": info,
        "_parameter_constraints": _constraints(info),
    })


ShallowFBCSPNet = _component(MODELS["ShallowFBCSPNet"])
EEGNetv4 = _component(MODELS["EEGNetv4"])
Deep4Net = _component(MODELS["Deep4Net"])
EEGConformer = _component(MODELS["EEGConformer"])
ATCNet = _component(MODELS["ATCNet"])


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def deterministic_torch(seed: int, n_threads: int = 1, device: str = "cpu") -> Iterator[None]:
    """Seed torch and switch it to deterministic algorithms while the block runs.

    Parameters
    ----------
    seed : int
        Seed of torch's generators (CPU and every GPU).
    n_threads : int
        torch's intra-op threads.
    device : str
        ``"cuda"`` also makes cuDNN deterministic (and cuBLAS, through
        ``CUBLAS_WORKSPACE_CONFIG``).

    Notes
    -----
    The previous settings are restored afterwards, so other torch code in the
    process is not affected. Operations without a deterministic
    implementation warn instead of failing (``warn_only``).
    """
    import torch

    previous = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(n_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1], warn_only=previous[2])
        torch.backends.cudnn.deterministic = previous[3]
        torch.backends.cudnn.benchmark = previous[4]


# ---------------------------------------------------------------------------
# Pipelines that contain networks: seeding and cache identity
# ---------------------------------------------------------------------------


def deep_steps(estimator: Any) -> list[tuple[str, _DeepClassifier]]:
    """``(path, network)`` for every network component inside ``estimator``."""
    from .pipelines import _named_parts

    return [(path, part) for path, part in _named_parts(estimator)
            if isinstance(part, _DeepClassifier)]


def seed_deep_steps(estimator: Any, random_state: int | None) -> Any:
    """Give every network left without a seed the evaluation's random state.

    Parameters
    ----------
    estimator : estimator instance
        A pipeline; not modified.
    random_state : int | None
        The evaluation's random state; None changes nothing.

    Returns
    -------
    estimator : estimator instance
        ``estimator`` itself when nothing needed a seed, else an unfitted
        clone with ``random_state`` set on its unseeded networks.
    """
    if random_state is None:
        return estimator
    unseeded = [path for path, net in deep_steps(estimator) if net.random_state is None]
    if not unseeded:
        return estimator
    seeded = clone(estimator)
    seeded.set_params(**{(f"{p}__random_state" if p else "random_state"): random_state
                         for p in unseeded})
    return seeded


def deep_identity(estimator: Any) -> dict[str, Any]:
    """What, besides its parameters, decides a deep pipeline's scores.

    Parameters
    ----------
    estimator : estimator instance
        A pipeline.

    Returns
    -------
    identity : dict
        Empty for a pipeline without networks; else the torch, braindecode
        and skorch versions and, per network, its resolved device and seed.
        It goes into the result cache key (a GPU or another torch computes
        other numbers), the journal and the methods section.
    """
    nets = deep_steps(estimator)
    if not nets:
        return {}
    networks = {}
    for path, net in nets:
        try:
            device = resolve_device(net.device)
        except (ValueError, ImportError) as err:
            device = f"unavailable ({err})"
        networks[path or net._info.name] = {
            "model": net._info.name, "device": device, "seed": net.random_state,
            "n_threads": net.n_threads,
        }
    return {"versions": deep_versions(), "networks": networks}


def max_epochs_of(spec) -> int:
    """Training epochs one fit of a pipeline spec runs at most (0 without a network).

    Parameters
    ----------
    spec : PipelineSpec
        A pipeline specification (steps with ``name``, ``from_`` and
        ``parameters``).
    """
    return sum(int(step.parameters.get("max_epochs", TRAINING_DEFAULTS["max_epochs"]))
               for step in getattr(spec, "steps", []) if step.from_ == __name__)


# ---------------------------------------------------------------------------
# Progress per training epoch
# ---------------------------------------------------------------------------

_LISTENERS: list[Callable[[dict], None]] = []


@contextlib.contextmanager
def epoch_listener(callback: Callable[[dict], None]) -> Iterator[None]:
    """Call ``callback(info)`` after every training epoch of every network in this process.

    Parameters
    ----------
    callback : callable
        Receives ``{"model", "epoch", "max_epochs", "train_loss",
        "valid_loss", "valid_acc"}`` (losses None when not computed). An
        exception it raises ends the training and propagates (a UI's Stop).
    """
    _LISTENERS.append(callback)
    try:
        yield
    finally:
        _LISTENERS.remove(callback)


#: Environment variable naming a file that every network appends one JSON line
#: per epoch to (worker processes report their progress through it).
PROGRESS_FILE_ENV = "CHATBCI_DEEP_PROGRESS_FILE"


def epoch_text(info: Mapping[str, Any]) -> str:
    """One line for a progress bar, e.g. ``"ShallowFBCSPNet epoch 12/1000, valid loss 0.61"``."""
    text = f"{info['model']} epoch {info['epoch']}/{info['max_epochs']}"
    if info.get("valid_loss") is not None:
        text += f", valid loss {info['valid_loss']:.3g}"
    elif info.get("train_loss") is not None:
        text += f", train loss {info['train_loss']:.3g}"
    return text


@contextlib.contextmanager
def follow_epochs(callback: Callable[[dict], None], poll_s: float = 0.2) -> Iterator[None]:
    """Call ``callback(info)`` for every epoch trained, here or in worker processes.

    Networks append one JSON line per epoch to the file named by
    :data:`PROGRESS_FILE_ENV`; the benchmark forwards that variable to its
    workers. This sets it to a temporary file while the block runs and
    follows the file from a thread.

    Parameters
    ----------
    callback : callable
        Receives what :func:`epoch_listener` callbacks receive, plus ``pid``.
        Errors it raises are ignored (progress must not end the work).
    poll_s : float
        Seconds between reads of the file.
    """
    import json
    import tempfile
    import threading

    fd, path = tempfile.mkstemp(prefix="chatbci-epochs-", suffix=".jsonl")
    os.close(fd)
    previous = os.environ.get(PROGRESS_FILE_ENV)
    os.environ[PROGRESS_FILE_ENV] = path
    done = threading.Event()

    def follow():
        offset = 0
        while True:
            finished = done.is_set()
            try:
                with open(path) as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except OSError:
                chunk = ""
            complete = chunk[:chunk.rfind("\n") + 1]  # a line being written waits
            offset += len(complete.encode())
            for line in complete.splitlines():
                with contextlib.suppress(Exception):
                    callback(json.loads(line))
            if finished:
                return
            done.wait(poll_s)

    thread = threading.Thread(target=follow, name="chatbci-epochs", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(5)
        if previous is None:
            os.environ.pop(PROGRESS_FILE_ENV, None)
        else:
            os.environ[PROGRESS_FILE_ENV] = previous
        with contextlib.suppress(OSError):
            os.unlink(path)


def _progress_callback(model: str, max_epochs: int):
    from skorch.callbacks import Callback
    from tqdm.auto import tqdm

    class _EpochProgress(Callback):
        """Reports each epoch: tqdm (terminal), listeners (UIs), the progress file."""

        def on_train_begin(self, net, X=None, y=None, **kwargs):
            self.bar = tqdm(total=max_epochs, desc=f"{model} epochs", unit="epoch",
                            leave=False, disable=None)

        def on_epoch_end(self, net, **kwargs):
            row = net.history[-1]
            info = {"model": model, "epoch": int(row["epoch"]), "max_epochs": max_epochs,
                    "train_loss": _num(row.get("train_loss")),
                    "valid_loss": _num(row.get("valid_loss")),
                    "valid_acc": _num(row.get("valid_acc"))}
            self.bar.update(1)
            path = os.environ.get(PROGRESS_FILE_ENV)
            if path:
                import json

                with contextlib.suppress(OSError), open(path, "a") as fh:
                    fh.write(json.dumps({**info, "pid": os.getpid()}) + "\n")
            for listener in list(_LISTENERS):
                listener(info)

        def on_train_end(self, net, X=None, y=None, **kwargs):
            self.bar.close()

    return _EpochProgress()


def _num(value):
    try:
        return None if value is None else round(float(value), 5)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------
# Explaining networks: parameters, receptive field, first-layer patterns
# ---------------------------------------------------------------------------


def receptive_field(model: str, params: Mapping[str, Any] | None = None,
                    sfreq: float | None = None) -> dict[str, Any]:
    """Temporal receptive field of the first convolution and pooling stage.

    Parameters
    ----------
    model : str
        Component name (or alias, e.g. ``"EEGNet"``).
    params : mapping | None
        Architecture parameters overriding the defaults.
    sfreq : float | None
        Sampling rate of the data, to convert samples to seconds.

    Returns
    -------
    field : dict
        ``{"samples": int, "seconds": float | None, "what": str}``.
    """
    info = _info(model)
    p = {**info.architecture, **(params or {})}
    if info.name in ("ShallowFBCSPNet", "EEGConformer"):
        n = p["filter_time_length"] + p["pool_time_length"] - 1
        what = "temporal filter then mean pooling (one pooled feature)"
    elif info.name == "Deep4Net":
        n, stride = p["filter_time_length"], 1
        n += (p["pool_time_length"] - 1)
        stride = p["pool_time_stride"]
        for k in (2, 3, 4):
            n += (p[f"filter_length_{k}"] - 1) * stride
            n += (p["pool_time_length"] - 1) * stride
            stride *= p["pool_time_stride"]
        what = "all four convolution-pooling blocks (one final feature)"
    elif info.name == "EEGNetv4":
        n = p["kernel_length"] + (4 - 1)  # temporal kernel, then average pooling by 4
        n += (16 - 1) * 4 + (8 - 1) * 4  # separable conv (16) and pooling (8)
        what = "temporal, depthwise and separable convolutions with their poolings"
    else:  # ATCNet
        n = p["conv_block_kernel_length_1"] + p["conv_block_pool_size_1"] - 1
        n += (p["conv_block_kernel_length_2"] - 1) * p["conv_block_pool_size_1"]
        what = "the convolution block (before attention and TCN)"
    return {"samples": int(n), "seconds": None if not sfreq else round(n / sfreq, 3),
            "what": what}


def _info(model: str) -> ModelInfo:
    name = _ALIASES.get(model, model)
    if name not in MODELS:
        raise ValueError(f"Unknown network {model!r}; known: {', '.join(MODELS)} "
                         f"(aliases {', '.join(_ALIASES)}).")
    return MODELS[name]


def describe_network(model: str, params: Mapping[str, Any] | None = None,
                     sfreq: float | None = None) -> dict[str, Any]:
    """Everything the assistant says about a network, as JSON-able data.

    Parameters
    ----------
    model : str
        Component name or alias.
    params : mapping | None
        Parameters of the component (architecture and training) overriding
        the defaults.
    sfreq : float | None
        Sampling rate, for the receptive field in seconds.

    Returns
    -------
    description : dict
        ``name, description, notes, reference, architecture, training,
        receptive_field, available`` (whether the extra is installed) and
        ``install`` (the command, when it is not).
    """
    info = _info(model)
    params = dict(params or {})
    arch = {k: params.get(k, v) for k, v in info.architecture.items()}
    training = {k: params.get(k, v) for k, v in TRAINING_DEFAULTS.items()}
    available = deep_available()
    out = {"name": info.name, "description": info.description, "notes": info.notes,
           "reference": info.reference, "architecture": arch, "training": training,
           "receptive_field": receptive_field(info.name, arch, sfreq),
           "available": available}
    if not available:
        out["install"] = INSTALL_HINT
    return out


def _first_conv_filters(net_module, info: ModelInfo):
    """(temporal kernels (F, T), spatial weights (S, F or 1, C)) of the first two layers."""
    tname, sname = info.first_layers
    temporal = net_module.get_submodule(tname).weight.detach().cpu().numpy()
    spatial = net_module.get_submodule(sname).weight.detach().cpu().numpy()
    # ShallowFBCSPNet / Deep4Net: conv_time (F, 1, T, 1), conv_spat (S, F, 1, C);
    # EEGNet: conv_temporal (F1, 1, 1, T), conv_spatial (F1*D, 1, C, 1).
    temporal = temporal.reshape(temporal.shape[0], -1)
    if info.name == "EEGNetv4":
        spatial = spatial.reshape(spatial.shape[0], 1, -1)
    else:
        spatial = spatial.reshape(spatial.shape[0], spatial.shape[1], -1)
    return temporal, spatial


def spatial_patterns(estimator, X, *, n_show: int = 6) -> dict[str, Any]:
    """Spatial activation patterns of the units of a fitted network's first layers.

    The first two layers of ShallowFBCSPNet, Deep4Net (temporal then spatial
    convolution) and EEGNet (temporal then depthwise spatial convolution) are
    linear, so each spatial unit's output ``z`` is an exact linear function
    of the epochs. Weights of such filters are hard to read; their
    activation patterns are not (Haufe et al. 2014): ``a = Cov(x, z) /
    Var(z)``, the scalp map of what the unit picks up, drawn as topomaps.

    Parameters
    ----------
    estimator : fitted network component or Pipeline ending in one
        The trained decoder.
    X : array, shape (n_trials, n_channels, n_times)
        Epochs (volts), e.g. the training data.
    n_show : int
        Patterns returned, units of largest output variance first.

    Returns
    -------
    result : dict
        ``model``, ``patterns`` (n_show, n_channels), ``variance`` (output
        variance of each unit, the ranking) and ``units`` (their indices).
    """
    net = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if not isinstance(net, _DeepClassifier) or not hasattr(net, "net_"):
        raise ValueError("spatial_patterns needs a fitted network component "
                         "(ShallowFBCSPNet, EEGNetv4 or Deep4Net), alone or last in a "
                         "fitted Pipeline.")
    info = net._info
    if not info.first_layers:
        raise ValueError(f"{info.name} has no temporal/spatial first-layer pair to show; "
                         "ShallowFBCSPNet, EEGNetv4 and Deep4Net have.")
    from scipy.signal import lfilter

    temporal, spatial = _first_conv_filters(net.net_.module_, info)
    Xs = net._as_input(X).astype(np.float64)
    Xs = Xs - Xs.mean(axis=-1, keepdims=True)
    # Each temporal filter applied once (torch convolutions are correlations).
    filtered = [lfilter(k[::-1], [1.0], Xs, axis=-1) for k in temporal]
    per_temporal = spatial.shape[0] // temporal.shape[0]
    x_flat = Xs.transpose(1, 0, 2).reshape(Xs.shape[1], -1)
    patterns, variances = [], []
    for s in range(spatial.shape[0]):
        if spatial.shape[1] == 1:  # EEGNet: depthwise unit s follows temporal filter s // D
            z = np.einsum("c,nct->nt", spatial[s, 0], filtered[s // per_temporal])
        else:
            z = sum(np.einsum("c,nct->nt", spatial[s, f], filtered[f])
                    for f in range(spatial.shape[1]))
        z = z.reshape(-1) - z.mean()
        var = float(z @ z) / z.size
        patterns.append((x_flat @ z) / z.size / max(var, 1e-30))
        variances.append(var)
    order = np.argsort(variances)[::-1][:n_show]
    return {"model": info.name, "patterns": np.array(patterns)[order],
            "variance": np.array(variances)[order], "units": order.tolist()}


def plot_patterns(result: Mapping[str, Any], info) -> Any:
    """Topomaps of :func:`spatial_patterns` on the data's montage.

    Parameters
    ----------
    result : dict
        The output of :func:`spatial_patterns`.
    info : mne.Info
        Channel names and positions of the epochs.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    import mne

    from .figures import figure_style, new_figure

    patterns = result["patterns"]
    with figure_style():
        fig, axes = new_figure(1, len(patterns), figsize=(1.6 * len(patterns), 1.9),
                               squeeze=False)
        for ax, pattern, unit in zip(axes[0], patterns, result["units"]):
            mne.viz.plot_topomap(pattern, info, axes=ax, show=False, cmap="RdBu_r",
                                 contours=0)
            ax.set_title(f"unit {unit}", fontsize=8)
        fig.suptitle(f"{result['model']}: spatial patterns of the first layers",
                     fontsize=9)
    return fig

