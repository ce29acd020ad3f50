"""What a methods section and a bibliography say about deep-learning decoders.

Written from the journal alone (``export`` knows nothing about EEG): each
``run`` event carries its pipelines as MOABB YAML data and, for pipelines
with a braindecode network, the networks' seed, device and the torch,
braindecode and skorch versions (``payload["deep"]``, from
:func:`chatbci.bci.deep.deep_identity`). A network is a step whose ``from``
is :data:`DEEP_MODULE`.
"""

from __future__ import annotations

from ._blocks import UL, H, P, bold, cite, code

__all__ = ["DEEP_MODULE", "deep_bib_entries", "deep_methods_blocks", "deep_pipelines"]

#: The module chatbci's network components come from (the YAML ``from``).
DEEP_MODULE = "chatbci.bci.deep"

#: Architecture descriptions and BibTeX keys of the model papers.
_MODELS = {
    "ShallowFBCSPNet": ("the Shallow ConvNet (temporal convolution, spatial convolution, "
                        "squaring, mean pooling and logarithm)", "schirrmeister2017deep"),
    "EEGNetv4": ("EEGNet (temporal convolution, depthwise spatial convolution and separable "
                 "convolution)", "lawhern2018eegnet"),
    "Deep4Net": ("the Deep ConvNet (four convolution and max-pooling blocks)",
                 "schirrmeister2017deep"),
    "EEGConformer": ("the EEG Conformer (convolution followed by a transformer encoder)",
                     "song2023eeg"),
    "ATCNet": ("ATCNet (convolution block, multi-head self-attention over sliding windows "
               "and temporal convolutional networks)", "altaheri2023physics"),
}

_TRAINING = ("max_epochs", "lr", "batch_size", "optimizer", "weight_decay", "patience",
             "valid_fraction", "input_scale", "device", "n_threads", "random_state")
# Defaults of chatbci.bci.deep.TRAINING_DEFAULTS, for steps that leave them out.
_DEFAULTS = {"max_epochs": 1000, "lr": 1e-4, "batch_size": 64, "optimizer": "Adam",
             "weight_decay": 0.0, "patience": 300, "valid_fraction": 0.2,
             "input_scale": 1e6, "device": "cpu", "n_threads": 1, "random_state": None}


def deep_pipelines(record) -> list[dict]:
    """Benchmarked pipelines with a network, with what the runs recorded about them.

    Returns
    -------
    pipelines : list of dict
        ``{"name", "model", "architecture", "training", "seeds", "devices",
        "versions"}`` in order of first run; ``seeds`` and ``devices`` over
        every run of the pipeline.
    """
    out: dict[str, dict] = {}
    for run in record.runs:
        identity = run.payload.get("deep") or {}
        for name, spec in (run.payload.get("pipelines") or {}).items():
            steps = (spec or {}).get("pipeline") or []
            nets = [s for s in steps if s.get("from") == DEEP_MODULE]
            if not nets:
                continue
            step = nets[-1]
            params = dict(step.get("parameters") or {})
            entry = out.setdefault(name, {
                "name": name, "model": step.get("name"),
                "architecture": {k: v for k, v in params.items() if k not in _TRAINING},
                "training": {k: params.get(k, _DEFAULTS[k]) for k in _TRAINING},
                "seeds": [], "devices": [], "versions": {}})
            for net in ((identity.get(name) or {}).get("networks") or {}).values():
                if net.get("seed") not in entry["seeds"]:
                    entry["seeds"].append(net.get("seed"))
                if net.get("device") not in entry["devices"]:
                    entry["devices"].append(net.get("device"))
            entry["versions"].update((identity.get(name) or {}).get("versions") or {})
    return list(out.values())


def _num(value) -> str:
    """``1e-4`` -> ``"0.0001"``, ``1e6`` -> ``"1e+06"``: learning rates need all digits."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else str(value)


def _params_text(params) -> str:
    return ", ".join(f"{k} = {_num(v)}" for k, v in params.items())


def deep_methods_blocks(record, level: int) -> list:
    """The "Deep-learning decoders" subsection, or nothing without networks.

    Parameters
    ----------
    record : SessionRecord
    level : int
        Heading level of the subsection.
    """
    pipelines = deep_pipelines(record)
    if not pipelines:
        return []
    items = []
    for p in pipelines:
        what, key = _MODELS.get(p["model"], (p["model"], None))
        t = p["training"]
        item = [bold(p["name"]), ": ", what, cite(key), ", braindecode's ", code(p["model"])]
        if p["architecture"]:
            item.append(f" ({_params_text(p['architecture'])})")
        item.append(
            f", trained on the epochs scaled by {_num(t['input_scale'])} (volts to "
            f"microvolts) with the {t['optimizer']} optimizer (learning rate "
            f"{_num(t['lr'])}, weight decay {_num(t['weight_decay'])}), batches of "
            f"{t['batch_size']} trials and the cross-entropy loss for at most "
            f"{t['max_epochs']} epochs")
        if t["valid_fraction"] and t["patience"]:
            item.append(
                f"; training stopped early after {t['patience']} epochs without a lower loss "
                f"on a stratified inner validation split of {_num(100 * t['valid_fraction'])} "
                "% of each training fold (the test fold was never used), keeping the weights "
                "of the last epoch")
        seeds = ", ".join(str(s) for s in p["seeds"]) or str(t["random_state"])
        devices = ", ".join(p["devices"]) or t["device"]
        item.append(
            f". Initial weights, batch order, dropout and the validation split were seeded "
            f"with {seeds} (the evaluation's random state unless set), with torch's "
            f"deterministic algorithms and {t['n_threads']} CPU thread(s), on {devices}")
        v = p["versions"]
        if v:
            item.append(f"; torch {v.get('torch')}, braindecode {v.get('braindecode')}, "
                        f"skorch {v.get('skorch')}")
        item.append(".")
        items.append(item)
    return [H(level, "Deep-learning decoders"),
            P("Deep networks were trained with braindecode", cite("schirrmeister2017deep"),
              " through its scikit-learn classifier (skorch), as MOABB's benchmark runs them",
              cite("chevallier2024moabb"), ", inside the same evaluation folds as the other "
              "pipelines:"),
            UL(items)]


def deep_bib_entries(record) -> list:
    """BibTeX entries of braindecode and of the model papers of the networks used."""
    from .bibtex import deep_model_entries

    used = {(_MODELS.get(p["model"]) or (None, None))[1] for p in deep_pipelines(record)}
    if not used - {None}:
        return []
    entries = deep_model_entries()
    return [entries["schirrmeister2017deep"]] + [
        entries[k] for k in sorted(used - {None, "schirrmeister2017deep"})]
