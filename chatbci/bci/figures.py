"""The project's one figure style, and the benchmark figures drawn in it.

Every figure chatbci makes (benchmark plots, exploration maps, spectra) is
drawn inside :func:`figure_style`, a :func:`matplotlib.rc_context`: sizes,
fonts and colour maps fit for a journal column, and matplotlib's global state
(``rcParams``, the active style) is left exactly as the user had it.

Sizes follow the common two-column journal layout: a single column is
3.5 in wide, a double column 7.0 in. Fonts are 8 pt (9 pt titles), which
stay legible when a figure is printed at its natural width. Colours come
from the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies); maps are perceptually uniform (``viridis``) for magnitudes
and diverging around zero (``RdBu_r``) for signed changes such as ERD/ERS,
where blue is a power decrease (desynchronisation) and red an increase.
"""

from __future__ import annotations

import contextlib

import matplotlib as mpl
import numpy as np
import pandas as pd

#: Width of a single journal column, inches.
SINGLE_COLUMN = 3.5
#: Width of a double (full-page) journal column, inches.
DOUBLE_COLUMN = 7.0
#: Largest height a figure should take on a page, inches.
MAX_HEIGHT = 8.0
#: Resolution figures are saved at, dots per inch.
SAVE_DPI = 200

#: Okabe & Ito (2008) colour-blind-safe qualitative palette (black left out:
#: it is kept for reference lines such as chance level).
PALETTE = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#F0E442",  # yellow
)
#: Colour map for signed changes around zero (ERD/ERS %, effect sizes).
DIVERGING_CMAP = "RdBu_r"
#: Colour map for magnitudes (power, counts).
SEQUENTIAL_CMAP = "viridis"

#: Label and axis range of each metric, as the results tables write it.
METRICS = {
    "roc_auc": ("ROC AUC", (0.0, 1.0)),
    "accuracy": ("Accuracy", (0.0, 1.0)),
    "balanced_accuracy": ("Balanced accuracy", (0.0, 1.0)),
}

_FONT_SIZE = 8
_RC = {
    "figure.figsize": (SINGLE_COLUMN, 2.6),
    "figure.dpi": 100,
    "figure.constrained_layout.use": False,
    "savefig.dpi": SAVE_DPI,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica", "Liberation Sans"],
    "font.size": _FONT_SIZE,
    "axes.titlesize": _FONT_SIZE + 1,
    "axes.labelsize": _FONT_SIZE,
    "xtick.labelsize": _FONT_SIZE - 1,
    "ytick.labelsize": _FONT_SIZE - 1,
    "legend.fontsize": _FONT_SIZE - 1,
    "legend.title_fontsize": _FONT_SIZE,
    "legend.frameon": False,
    "figure.titlesize": _FONT_SIZE + 1,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "axes.titlepad": 4.0,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.0,
    "lines.markersize": 4.0,
    "image.cmap": SEQUENTIAL_CMAP,
    "pdf.fonttype": 42,  # embed TrueType, so journals' checks accept the fonts
    "ps.fonttype": 42,
}


def style_rc():
    """The project's matplotlib settings, as a new dict of ``rcParams``.

    Returns
    -------
    rc : dict
        Settings :func:`figure_style` applies (a copy; changing it changes
        nothing else).
    """
    rc = dict(_RC)
    rc["axes.prop_cycle"] = mpl.cycler(color=list(PALETTE))
    return rc


@contextlib.contextmanager
def figure_style(**overrides):
    """Draw figures in the project's style without touching global state.

    A :func:`matplotlib.rc_context`: on exit ``rcParams`` are restored
    exactly, so a user's own plots keep their style.

    Parameters
    ----------
    **overrides
        ``rcParams`` to set on top of the project style, written with
        underscores for dots (``font_size=9`` sets ``font.size``).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> with figure_style():
    ...     fig, ax = plt.subplots(figsize=figure_size())
    """
    rc = style_rc()
    rc.update({key.replace("_", ".", 1): value for key, value in overrides.items()})
    with mpl.rc_context(rc):
        yield


def figure_size(width="single", aspect=0.75, n_rows=1, max_height=MAX_HEIGHT):
    """A figure size fit for a journal column.

    Parameters
    ----------
    width : {"single", "double"} | float
        Single column (3.5 in), double column (7 in), or a width in inches.
    aspect : float
        Height of one row of panels over the figure's width.
    n_rows : int
        Rows of panels; the height grows with them, up to ``max_height``.
    max_height : float
        Largest height in inches.

    Returns
    -------
    size : tuple of float
        ``(width, height)`` in inches, for ``plt.subplots(figsize=...)``.
    """
    if isinstance(width, str):
        widths = {"single": SINGLE_COLUMN, "double": DOUBLE_COLUMN}
        if width not in widths:
            raise ValueError(f"width must be 'single', 'double' or inches; got {width!r}.")
        width = widths[width]
    height = min(float(width) * float(aspect) * max(int(n_rows), 1), float(max_height))
    return (float(width), round(height, 2))


def metric_label(metric):
    """Axis label and range of a score metric, as the results tables name it.

    Parameters
    ----------
    metric : str | None
        A scikit-learn scorer name (``"roc_auc"``, ``"accuracy"``...).

    Returns
    -------
    label : str
    limits : tuple of float | None
        The metric's full range, or None when unknown.
    """
    if metric is None:
        return "Score", None
    key = str(metric).lower()
    if key in METRICS:
        return METRICS[key]
    return key.replace("_", " ").capitalize(), None


# ---------------------------------------------------------------------------
# Benchmark figures
# ---------------------------------------------------------------------------
