"""chatbci: human-AI collaborative design of motor-imagery EEG decoders.

The engine (:mod:`chatbci.bci`) runs real MNE / MOABB / pyRiemann /
scikit-learn work; the workspace, assistant, Jupyter and export layers build
on it.
"""

__version__ = "0.1.0.dev0"

# Public names loaded on first use, so that ``import chatbci`` stays light
# (no SQLite, pydantic or MNE until they are needed).
_LAZY = {
    "Workspace": "chatbci.workspace",
    "Session": "chatbci.assistant.session",
    # -- chat panel (chatbci.jupyter) --
    "chat": "chatbci.jupyter",
    # -- end chat panel --
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # cache: __getattr__ runs once per name
        return value
    raise AttributeError(f"module 'chatbci' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


# -- chat panel (chatbci.jupyter): ``%load_ext chatbci`` ------------------------------
def load_ipython_extension(ipython):
    """Register the ``%chatbci`` and ``%%chat`` magics (imports the panel lazily)."""
    from .jupyter.magics import load_ipython_extension as _load

    _load(ipython)
# -- end chat panel --
