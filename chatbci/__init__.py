"""chatbci: human-AI collaborative design of motor-imagery EEG decoders.

The engine (:mod:`chatbci.bci`) runs real MNE / MOABB / pyRiemann /
scikit-learn work; the workspace, assistant, Jupyter and export layers build
on it.
"""

__version__ = "0.1.0.dev0"
