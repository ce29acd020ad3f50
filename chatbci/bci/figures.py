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
from matplotlib.figure import Figure

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
    >>> with figure_style():
    ...     fig, ax = new_figure(figsize=figure_size())
    """
    rc = style_rc()
    rc.update({key.replace("_", ".", 1): value for key, value in overrides.items()})
    with mpl.rc_context(rc):
        yield


class _DisplayedFigure(Figure):
    """A Figure that Jupyter can show without pyplot.

    Jupyter's inline backend registers how figures are displayed only once
    pyplot has loaded it; a kernel in which nothing but chatbci drew would
    show ``<Figure size ...>``. ``_repr_png_`` is what IPython asks any object
    for, so the figure is shown (once) either way.
    """

    def _repr_png_(self):
        import io

        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def new_figure(nrows=1, ncols=1, *, figsize=None, layout="constrained", **subplot_kw):
    """A figure and its axes, like :func:`matplotlib.pyplot.subplots`, outside pyplot.

    The figure is not registered with pyplot: Jupyter's inline backend shows
    every pyplot figure at the end of a cell, so a pyplot figure that a cell
    also returns is shown twice. Returned (or passed to ``display``), this
    one is shown once, and it is freed with its last reference instead of
    accumulating until ``plt.close``.

    Parameters
    ----------
    nrows, ncols : int
        Grid of axes.
    figsize : tuple of float | None
        Size in inches, e.g. from :func:`figure_size`; the style's default
        (a single column) when None.
    layout : str | None
        Matplotlib layout engine; ``"constrained"`` keeps labels inside the
        figure.
    **subplot_kw
        Passed to :meth:`matplotlib.figure.Figure.subplots` (``sharex``,
        ``squeeze``...).

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : matplotlib.axes.Axes | numpy.ndarray of Axes
    """
    fig = _DisplayedFigure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **subplot_kw)


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
        ``(width, height)`` in inches, for ``new_figure(figsize=...)``.
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

class FigureError(ValueError):
    """Results that cannot be drawn as asked."""


def dataset_labels(codes):
    """The display name of each dataset code, as tables and exports show it.

    :func:`chatbci.bci.datasets.display_name` (``"PhysionetMotorImagery"``
    -> ``"PhysionetMI"``); only where two codes would share a name (two
    differently-parameterised simulated datasets) is the difference kept.

    Parameters
    ----------
    codes : iterable of str

    Returns
    -------
    labels : dict of str to str
    """
    from chatbci.bci.datasets import display_name

    codes = list(dict.fromkeys(map(str, codes)))
    plain = {code: display_name(code) for code in codes}
    shared = {name for name in plain.values() if list(plain.values()).count(name) > 1}
    return {code: display_name(code, distinguish=True) if name in shared else name
            for code, name in plain.items()}


def _check_results(results, min_pipelines=1):
    required = {"score", "subject", "dataset", "pipeline"}
    if not isinstance(results, pd.DataFrame) or not required <= set(results.columns):
        raise FigureError(
            "Expected a benchmark results DataFrame with columns "
            f"{sorted(required)} (from chatbci.bci.benchmark.run_benchmark or MOABB)."
        )
    if results.empty:
        raise FigureError("The results are empty; run a benchmark first.")
    n = results["pipeline"].nunique()
    if n < min_pipelines:
        raise FigureError(
            f"This plot needs at least {min_pipelines} pipelines; the results hold {n}: "
            f"{sorted(map(str, results['pipeline'].unique()))}."
        )


def _per_subject(results):
    """One score per (dataset, pipeline, subject): sessions averaged, as the tables do."""
    df = results.copy()
    df["score"] = df["score"].astype(float)
    df["subject"] = df["subject"].astype(str)
    df["dataset"] = df["dataset"].astype(str)
    df["dataset"] = df["dataset"].map(dataset_labels(df["dataset"]))
    df["pipeline"] = df["pipeline"].astype(str)
    return df.groupby(["dataset", "pipeline", "subject"], observed=True, sort=False)[
        "score"].mean().reset_index()


def _infer_metric(results, metric):
    if metric is not None:
        return metric
    info = results.attrs.get("chatbci") if hasattr(results, "attrs") else None
    if isinstance(info, dict) and info.get("scoring"):
        return info["scoring"]
    if "n_classes" in results.columns and results["n_classes"].nunique() == 1:
        # MOABB scores two-class imagery by ROC AUC and more classes by accuracy.
        return "roc_auc" if int(results["n_classes"].iloc[0]) == 2 else "accuracy"
    return None


def _infer_chance(results, metric, chance_level):
    if chance_level is not None:
        return float(chance_level)
    if metric == "roc_auc":
        return 0.5
    if metric in ("accuracy", "balanced_accuracy") and "n_classes" in results.columns:
        n = results["n_classes"].dropna()
        if n.nunique() == 1:
            return 1.0 / float(n.iloc[0])
    return None


def _limits(values, chance, full_range, pad_fraction=0.06):
    """Axis limits that show every value and the chance line, within the metric's range."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    lo, hi = float(values.min()), float(values.max())
    if chance is not None:
        lo, hi = min(lo, chance), max(hi, chance)
    pad = max((hi - lo) * pad_fraction, 0.02)
    lo, hi = lo - pad, hi + pad
    if full_range is not None:
        # Never beyond the metric's own range, but keep markers on the edge visible.
        edge = 0.02 * (full_range[1] - full_range[0])
        lo = max(lo, full_range[0] - edge)
        hi = min(hi, full_range[1] + edge)
    return lo, hi


def score_plot(results, pipelines=None, chance_level=None, metric=None, ax=None):
    """Scores of each pipeline: every subject a point, with the mean ± sd.

    Parameters
    ----------
    results : pandas.DataFrame
        Benchmark results (MOABB's columns: ``score``, ``subject``,
        ``dataset``, ``pipeline``...). Sessions are averaged per subject, as
        in the results tables.
    pipelines : list of str | None
        Pipelines to draw, in this order; all (best mean first) when None.
    chance_level : float | None
        Where to draw the chance line; inferred from the metric when None
        (0.5 for ROC AUC, 1 / n_classes for accuracy).
    metric : str | None
        The scorer the scores come from (``"roc_auc"``...), for the axis
        label and range; inferred from ``n_classes`` as MOABB chooses it
        when None.
    ax : matplotlib.axes.Axes | None
        Draw into these axes instead of a new figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Not registered with pyplot (see :func:`new_figure`): a notebook
        cell returning it shows it once.
    """
    _check_results(results)
    df = _per_subject(results)
    if pipelines is not None:
        pipelines = [str(p) for p in pipelines]
        unknown = sorted(set(pipelines) - set(df["pipeline"]))
        if unknown:
            raise FigureError(f"No pipeline {unknown} in the results; have "
                              f"{sorted(set(df['pipeline']))}.")
        df = df[df["pipeline"].isin(pipelines)]
    else:
        pipelines = list(df.groupby("pipeline")["score"].mean().sort_values(
            ascending=False).index)
    metric = _infer_metric(results, metric)
    label, full_range = metric_label(metric)
    chance = _infer_chance(results, metric, chance_level)
    datasets = list(dict.fromkeys(df["dataset"]))

    with figure_style():
        if ax is None:
            height = min(0.9 + 0.32 * len(pipelines) * max(1, len(datasets) ** 0.5), MAX_HEIGHT)
            fig, ax = new_figure(figsize=(SINGLE_COLUMN, height))
        else:
            fig = ax.figure
        rng = np.random.default_rng(0)  # fixed jitter: the same figure every time
        n_sets = len(datasets)
        for d, dataset in enumerate(datasets):
            colour = PALETTE[d % len(PALETTE)]
            # Datasets side by side within a pipeline's row.
            offset = (d - (n_sets - 1) / 2) * (0.7 / max(n_sets, 1)) if n_sets > 1 else 0.0
            for i, pipe in enumerate(pipelines):
                s = df[(df["pipeline"] == pipe) & (df["dataset"] == dataset)]["score"].to_numpy()
                if not len(s):
                    continue
                y = i + offset + rng.uniform(-0.12, 0.12, len(s)) / max(n_sets, 1)
                ax.scatter(s, y, s=14, facecolor=colour, edgecolor="white", linewidth=0.4,
                           alpha=0.85, zorder=3, gid="subjects",
                           label=dataset if i == 0 else None)
                mean, sd = float(np.mean(s)), float(np.std(s, ddof=1)) if len(s) > 1 else 0.0
                ax.errorbar(mean, i + offset, xerr=sd, fmt="D", color="black",
                            markersize=3.5, elinewidth=0.9, capsize=2, zorder=4)
        if chance is not None:
            ax.axvline(chance, color="0.35", linestyle="--", linewidth=0.8, zorder=1)
            ax.annotate("chance", (chance, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(2, -2), textcoords="offset points", ha="left", va="top",
                        fontsize=6.5, color="0.35")
        ax.set_xlim(*_limits(df["score"], chance, full_range))
        ax.set_yticks(range(len(pipelines)), pipelines)
        ax.set_ylim(len(pipelines) - 0.5, -0.5)
        ax.set_xlabel(label)
        n_sub = df.groupby("dataset")["subject"].nunique()
        if n_sets > 1:
            ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=min(n_sets, 3),
                      handletextpad=0.2, columnspacing=0.8, borderaxespad=0.2)
        else:
            ax.set_title(f"{datasets[0]}, {int(n_sub.iloc[0])} subjects", loc="left")
    return fig


def paired_plot(results, pipeline_a, pipeline_b, chance_level=None, metric=None, ax=None):
    """One pipeline against another, subject by subject.

    Each point is a subject (sessions averaged): its score with
    ``pipeline_a`` on x and ``pipeline_b`` on y. Points above the diagonal
    are subjects ``pipeline_b`` decodes better. Both axes share the same
    limits, fitted to the data and the chance level.

    Parameters
    ----------
    results : pandas.DataFrame
        Benchmark results holding both pipelines.
    pipeline_a, pipeline_b : str
        Pipelines on the x and y axes.
    chance_level : float | None
        Chance level lines; inferred from the metric when None.
    metric : str | None
        The scorer (``"roc_auc"``...); inferred as MOABB chooses it when None.
    ax : matplotlib.axes.Axes | None
        Draw into these axes instead of a new figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Not registered with pyplot (see :func:`new_figure`).

    Raises
    ------
    FigureError
        A pipeline is not in the results, or no subject has scores for both.
    """
    _check_results(results, min_pipelines=2)
    pipeline_a, pipeline_b = str(pipeline_a), str(pipeline_b)
    df = _per_subject(results)
    known = set(df["pipeline"])
    for name in (pipeline_a, pipeline_b):
        if name not in known:
            raise FigureError(f"No pipeline {name!r} in the results; have {sorted(known)}.")
    wide = df.pivot_table(index=["dataset", "subject"], columns="pipeline", values="score")
    wide = wide[[pipeline_a, pipeline_b]].dropna()
    if wide.empty:
        raise FigureError(f"No subject has scores for both {pipeline_a} and {pipeline_b}; "
                          "benchmark them on the same subjects.")
    metric = _infer_metric(results, metric)
    label, full_range = metric_label(metric)
    chance = _infer_chance(results, metric, chance_level)
    lo, hi = _limits(wide.to_numpy().ravel(), chance, full_range)
    datasets = list(dict.fromkeys(wide.index.get_level_values("dataset")))

    with figure_style():
        if ax is None:
            fig, ax = new_figure(figsize=(SINGLE_COLUMN, SINGLE_COLUMN))
        else:
            fig = ax.figure
        ax.plot([lo, hi], [lo, hi], color="0.35", linewidth=0.8, zorder=1)
        if chance is not None:
            ax.axvline(chance, color="0.6", linestyle="--", linewidth=0.7, zorder=1)
            ax.axhline(chance, color="0.6", linestyle="--", linewidth=0.7, zorder=1)
        for d, dataset in enumerate(datasets):
            part = wide.xs(dataset, level="dataset")
            # Open markers: subjects with equal scores stay visible as one thicker ring.
            ax.scatter(part[pipeline_a], part[pipeline_b], s=22, marker="o",
                       facecolor="none", edgecolor=PALETTE[d % len(PALETTE)], linewidth=1.0,
                       zorder=3, gid="subjects",
                       label=f"{dataset} ({len(part)} subjects)")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(f"{pipeline_a}: {label}")
        ax.set_ylabel(f"{pipeline_b}: {label}")
        above = int((wide[pipeline_b] > wide[pipeline_a]).sum())
        below = int((wide[pipeline_b] < wide[pipeline_a]).sum())
        # On a white ground: the chance lines may pass behind the corners.
        box = dict(facecolor="white", edgecolor="none", pad=1.0)
        ax.text(0.03, 0.97, f"{pipeline_b} higher: {above}", transform=ax.transAxes,
                ha="left", va="top", fontsize=7, bbox=box, zorder=5)
        ax.text(0.97, 0.03, f"{pipeline_a} higher: {below}", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=7, bbox=box, zorder=5)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), borderaxespad=0.2,
                  handletextpad=0.3)
    return fig


def forest_plot(comparisons, pipe1, pipe2, ax=None):
    """Forest plot of one pipeline pair over datasets, seeds or separate runs.

    Each group (a :class:`chatbci.bci.statistics.Comparison`, tested on its
    own shared subjects) is a row: the standardised mean difference
    ``pipe1 - pipe2`` with its 95 % interval (``d ± 1.96 sqrt(1/n + d^2/2n)``)
    and its n; the last row is the combination (MOABB's sqrt(n)-weighted
    effect and Stouffer p), drawn as a diamond, with Cochran's Q and I^2.

    Parameters
    ----------
    comparisons : list of Comparison
        From :func:`chatbci.bci.statistics.like_for_like`.
    pipe1, pipe2 : str
        The pair: positive effects favour ``pipe1``.
    ax : matplotlib.axes.Axes | None

    Returns
    -------
    fig : matplotlib.figure.Figure
        Not registered with pyplot (see :func:`new_figure`).
    """
    from .statistics import StatisticsError, meta_analysis, smd_variance

    groups = []
    for c in comparisons:
        if c.stats is None:
            continue
        hit = c.stats[(c.stats["pipe1"] == pipe1) & (c.stats["pipe2"] == pipe2)]
        if len(hit):
            groups.append((c.label, float(hit["smd"].iloc[0]), int(hit["nsub"].iloc[0]),
                           float(hit["p"].iloc[0])))
    if not groups:
        raise StatisticsError(f"No comparison tests {pipe1} against {pipe2} on shared "
                              "subjects; benchmark both on the same subjects first.")
    meta = meta_analysis(comparisons, [pipe1, pipe2])
    meta = meta[(meta["pipe1"] == pipe1) & (meta["pipe2"] == pipe2)]
    n_rows = len(groups) + (1 if len(meta) else 0)
    with figure_style():
        if ax is None:
            # Group labels name dataset, evaluation, paradigm and seed: a page
            # width keeps room for the intervals beside long ones.
            wide = max(len(g[0]) for g in groups) > 28
            fig, ax = new_figure(figsize=(DOUBLE_COLUMN if wide else SINGLE_COLUMN,
                                          round(SINGLE_COLUMN * (0.16 + 0.09 * n_rows), 2)))
        else:
            fig = ax.figure
        labels = []
        finite = []
        for i, (label, d, n, p) in enumerate(groups):
            y = n_rows - 1 - i
            half = 1.96 * float(np.sqrt(smd_variance(d, n)))
            if np.isfinite(d):
                ax.errorbar(d, y, xerr=half, fmt="s", color=PALETTE[0], markersize=3.5,
                            elinewidth=0.9, capsize=2, gid="groups")
                finite += [d - half, d + half]
            labels.append(f"{label} (n = {n})")
        if len(meta):
            m = meta.iloc[0]
            q = float(m["smd"])
            half = 1.96 * float(np.sqrt(1.0 / np.sum(1.0 / smd_variance(
                np.array(m["smds"]), np.array(m["n_subjects"])))))
            ax.fill([q - half, q, q + half, q], [0, 0.25, 0, -0.25], color=PALETTE[5],
                    gid="combined")
            finite += [q - half, q + half]
            i2 = "n/a" if pd.isna(m["I2"]) else f"{100 * m['I2']:.0f} %"
            labels.append(f"Combined: p = {m['p']:.3g}, I\u00b2 = {i2}")
        ax.axvline(0, color="0.35", linewidth=0.8, zorder=0)
        ax.set_yticks(range(n_rows - 1, -1, -1), labels)
        ax.set_ylim(-0.7, n_rows - 0.3)
        if finite:
            lo, hi = min(finite + [0.0]), max(finite + [0.0])
            pad = 0.08 * (hi - lo or 1.0)
            ax.set_xlim(lo - pad, hi + pad)
        ax.set_xlabel(f"SMD, {pipe1} \u2212 {pipe2}\n(95 % CI; > 0 favours {pipe1})")
    return fig
