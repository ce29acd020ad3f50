"""The results table: pipelines ranked like for like, with the statistics.

Scores come from the per-subject tables of the journal's ``run`` events (the
content-addressed CSV each run's ``tool_result`` recorded). They go through
:func:`chatbci.bci.statistics.like_for_like`, the one mechanism behind every
ranking chatbci shows: per dataset, evaluation, paradigm and seed, the
pipelines are ranked, and tested against the best (MOABB's one-sided paired
test, standardised mean difference), only on the subjects they all share;
pipelines scored on other subjects follow, unranked, with their own n and
subjects. Every p-value carries its n and the smallest p that n allows. The
statistics are recomputed here, so a comparison journaled before newer runs
is never reported; the caption names those superseded comparisons. Every row
names the run events its scores come from.
"""

from __future__ import annotations

from ._text import escape_latex, fmt_num, fmt_score, latex_colspec, md_cell
from .record import load_record

__all__ = ["results_comparisons", "results_rows", "results_table"]


def _run_inputs(record):
    """One dict per ``run`` event for :func:`~chatbci.bci.statistics.results_from_runs`."""
    from chatbci.bci.statistics import read_run_table

    out = []
    for it in record.runs:
        parent = record.parent(it)
        out.append({"run": it.id, "time": it.ts, "config": it.payload["config"],
                    "protocol": it.payload.get("protocol"),
                    "table": read_run_table(record.path, it.payload,
                                            parent.payload if parent is not None else None)})
    return out


def results_comparisons(record):
    """The like-for-like comparisons of a record's runs, and what they rest on.

    Parameters
    ----------
    record : SessionRecord

    Returns
    -------
    comparisons : list of chatbci.bci.statistics.Comparison
    results : pandas.DataFrame
        The per-subject scores (with ``run`` and ``time``).
    missing : list of Item
        Runs whose per-subject table is gone (listed apart, from their means).
    """
    from chatbci.bci.statistics import like_for_like, results_from_runs

    inputs = _run_inputs(record)
    df = results_from_runs(inputs)
    missing = [record.by_id[r["run"]] for r in inputs if r["table"] is None]
    return (like_for_like(df) if len(df) else []), df, missing


def _metric(record, code, evaluation):
    for it in reversed(record.runs):
        cfg = it.payload["config"]
        if cfg.get("dataset") == code and cfg.get("evaluation") == evaluation:
            return ((it.payload.get("protocol") or {}).get("evaluation") or {}).get("metric")
    return None


def _names(record):
    return {ds.get("code"): ds.get("name") for ds in record.datasets_used}


def _above_chance(df):
    """(dataset, evaluation, seed, pipeline) -> {subject: beats chance at p < 0.05}."""
    from chatbci.bci.statistics import above_chance

    return above_chance(df)


def results_rows(record) -> list:
    """One dict per (group, pipeline): ranked pipelines first (best first), then the rest.

    Parameters
    ----------
    record : SessionRecord

    Returns
    -------
    rows : list of dict
        ``dataset`` (name), ``dataset_code``, ``evaluation``, ``seed``,
        ``metric``, ``pipeline``, ``ranked`` (False: scored on other subjects
        than the ranking, not comparable), ``mean``, ``sd``, ``n_subjects``
        and ``subjects`` (what the row's numbers rest on: the shared subjects
        for ranked rows), ``is_best``, ``best``, ``p_vs_best``,
        ``smd_vs_best``, ``test``, ``min_p`` (smallest attainable p with
        that n), ``caution``, ``above_chance`` ("k/n" subjects beating
        chance), ``runs`` and ``run_event`` (the newest of them),
        ``compare_n_subjects``.
    """
    from chatbci.bci.statistics import subject_ranges

    comparisons, df, missing = results_comparisons(record)
    names = _names(record)
    chance = _above_chance(df)
    rows = []
    for c in comparisons:
        code, evaluation = c.key["dataset"], c.key["evaluation"]
        base = {"dataset": names.get(code) or code, "dataset_code": code,
                "evaluation": evaluation, "seed": c.key.get("seed") or None,
                "metric": _metric(record, code, evaluation), "best": c.best,
                "test": c.test if c.best else None, "min_p": c.min_p if c.best else None,
                "caution": c.caution if c.best else None,
                "compare_n_subjects": c.n_subjects if c.best else None}
        part = df
        for k in ("dataset", "evaluation", "seed"):
            part = part[part[k].astype(str) == str(c.key.get(k, ""))]
        for ranked, table in ((True, c.ranking), (False, c.apart)):
            for r in table.itertuples():
                mine = part[part["pipeline"] == r.pipeline]
                subjects = list(c.subjects) if ranked else sorted(set(mine["subject"]))
                runs = sorted({int(x) for x in mine[mine["subject"].isin(subjects)]["run"]})
                hit = chance.get((code, evaluation, c.key.get("seed", ""), r.pipeline)) or {}
                above = [hit[s] for s in subjects if s in hit]
                rows.append({**base, "pipeline": r.pipeline, "ranked": ranked,
                             "mean": float(r.mean), "sd": float(r.sd),
                             "n_subjects": int(r.n_subjects),
                             "subjects": subject_ranges(subjects),
                             "is_best": ranked and r.pipeline == c.best,
                             "p_vs_best": _num(r.p_vs_best) if ranked else None,
                             "smd_vs_best": _num(r.smd_vs_best) if ranked else None,
                             "above_chance": f"{sum(above)}/{len(above)}" if above else None,
                             "runs": runs, "run_event": runs[-1] if runs else None})
    for it in missing:  # no per-subject scores left: the run's own means, unranked
        cfg = it.payload["config"]
        for pipe, s in (it.payload.get("scores") or {}).items():
            if not isinstance(s, dict):
                continue
            rows.append({"dataset": names.get(cfg.get("dataset")) or cfg.get("dataset"),
                         "dataset_code": cfg.get("dataset"),
                         "evaluation": cfg.get("evaluation"),
                         "seed": cfg.get("random_state"),
                         "metric": _metric(record, cfg.get("dataset"), cfg.get("evaluation")),
                         "best": None, "test": None, "min_p": None, "caution": None,
                         "compare_n_subjects": None, "pipeline": pipe, "ranked": False,
                         "mean": s.get("mean"), "sd": s.get("sd"),
                         "n_subjects": s.get("n_subjects"),
                         "subjects": subject_ranges(cfg.get("subjects") or []),
                         "is_best": False, "p_vs_best": None, "smd_vs_best": None,
                         "above_chance": None, "runs": [it.id], "run_event": it.id})
    return rows


def _num(value):
    return None if value is None or value != value else float(value)


def _superseded(record):
    """Journaled comparisons made before newer runs on the same data (not reported)."""
    from chatbci.bci.statistics import stale_comparisons

    runs = [{"id": it.id, "dataset": it.payload["config"].get("dataset"),
             "evaluation": it.payload["config"].get("evaluation"),
             "seed": it.payload["config"].get("random_state")} for it in record.runs]
    compares = [{"id": res.id, "dataset": c.get("dataset_code", c.get("dataset")),
                 "evaluation": c.get("evaluation"),
                 "seed": c.get("seed")}
                for res in record.tool_results("compare_pipelines")
                for c in (res.payload.get("summary") or {}).get("comparisons", [])]
    return stale_comparisons(compares, runs)


def _meta_sentence(record) -> str:
    """MOABB's meta-analysis of pairs compared in several groups (datasets, seeds)."""
    from chatbci.bci.statistics import meta_analysis

    comparisons, _, _ = results_comparisons(record)
    meta = meta_analysis([c for c in comparisons if c.best is not None])
    meta = meta[meta["smd"] > 0] if len(meta) else meta
    if not len(meta):
        return ""
    parts = []
    for m in meta.itertuples():
        i2 = "n/a" if m.I2 != m.I2 else f"{100 * m.I2:.0f} %"
        parts.append(f"{m.pipe1} vs {m.pipe2} over {m.n_groups} groups "
                     f"({', '.join(m.groups)}; n = {', '.join(map(str, m.n_subjects))}): "
                     f"combined p = {m.p:.4g}, SMD = {m.smd:.2f}, I\u00b2 = {i2}")
    return ("Meta-analysis over datasets and seeds (MOABB: Stouffer's method weighted by "
            "sqrt(n) on each group's shared subjects; I\u00b2: Higgins & Thompson 2002): "
            + "; ".join(parts) + ".")


def _group_label(r):
    label = f"{r['dataset']}, {r['evaluation']}"
    return label + (f", seed {r['seed']}" if r.get("seed") not in (None, "") else "")


def _caption(rows, record=None) -> str:
    metrics = sorted({r["metric"] for r in rows if r["metric"]})
    runs = sorted({run for r in rows for run in r["runs"]})
    text = (f"Decoding scores ({', '.join(metrics) or 'score'}), mean \u00b1 sd over subjects "
            "(sessions averaged), per dataset, evaluation and seed. Pipelines are ranked, and "
            "the best marked, only on the subjects every ranked pipeline was scored on; the "
            "Subjects column gives what each row rests on. Pipelines scored on other subjects "
            "follow, marked 'not ranked', with their own n: they are not comparable with the "
            "ranking.")
    groups = {}
    for r in rows:
        if r["test"]:
            groups.setdefault(_group_label(r), r)
    if groups:
        text += (" p: one-sided paired test (MOABB) that the best pipeline scores higher, on "
                 "the shared subjects; n (min p): subjects tested and the smallest p that n "
                 "allows; SMD: standardised mean difference, best minus pipeline ("
                 + "; ".join(f"{label}: {r['test']} test, {r['compare_n_subjects']} subjects, "
                             f"min p = {r['min_p']:.4g}"
                             + (" \u2013 no test can reach p < 0.05" if r["caution"] else "")
                             for label, r in groups.items()) + ").")
    if any(r["above_chance"] for r in rows):
        text += (" Above chance: subjects whose score beats chance at p < 0.05 for their "
                 "trial count (accuracy: binomial, Combrisson & Jerbi 2015; ROC AUC: exact "
                 "Mann-Whitney null of the fold-averaged AUC, balanced classes assumed).")
    text += f" Journal events: runs {', '.join(f'#{r}' for r in runs)}"
    meta = _meta_sentence(record) if record is not None else ""
    if meta:
        text += " " + meta
    stale = _superseded(record) if record is not None else {}
    if stale:
        text += ("; comparisons made before newer runs, superseded by these statistics: "
                 + ", ".join(f"#{cid} (runs {', '.join(f'#{x}' for x in later)} came after)"
                             for cid, later in stale.items()))
    return text + "."


def _p_cells(r):
    p = fmt_num(r["p_vs_best"], 4) if r["p_vs_best"] is not None else ""
    n_min = (f"{r['compare_n_subjects']} ({r['min_p']:.4g})"
             if r["p_vs_best"] is not None else "")
    smd = fmt_num(r["smd_vs_best"], 2) if r["smd_vs_best"] is not None else ""
    return p, n_min, smd


def _subjects_cell(r):
    return f"{r['subjects']} (n = {r['n_subjects']})" if r["subjects"] else str(r["n_subjects"])


def _markdown(rows, record=None) -> str:
    if not rows:
        return "_No benchmark results in this workspace's journal._\n"
    lines = [("| Dataset | Evaluation | Pipeline | Score (mean \u00b1 sd) | Subjects | "
              "p vs best | n (min p) | SMD | Above chance | Runs |"),
             "|---|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        score = fmt_score(r["mean"], r["sd"])
        pipe = md_cell(r["pipeline"])
        if r["is_best"]:
            pipe, score = f"**{pipe}** (best)", f"**{score}**"
        elif not r["ranked"]:
            pipe = f"{pipe} (not ranked)"
        p, n_min, smd = _p_cells(r)
        evaluation = r["evaluation"] + (f", seed {r['seed']}" if r.get("seed") not in
                                        (None, "") else "")
        runs = ", ".join(f"#{x}" for x in r["runs"])
        lines.append(f"| {md_cell(r['dataset'])} | {md_cell(evaluation)} | {pipe} | "
                     f"{score} | {_subjects_cell(r)} | {p} | {n_min} | {smd} | "
                     f"{r['above_chance'] or ''} | {runs} |")
    return "\n".join(lines) + "\n\n" + md_cell(_caption(rows, record)) + "\n"


#: Relative widths and alignment of the LaTeX results table's columns: they
#: wrap within the text width (nine columns do not fit it at their natural width).
_LATEX_WIDTHS = (1.35, 1.1, 1.25, 1.55, 1.3, 0.75, 0.85, 0.7, 0.8)
_LATEX_ALIGN = "lllllrrrr"


def _latex(rows, record=None, label="tab:chatbci-results", placement="htbp") -> str:
    if not rows:
        return "% No benchmark results in this workspace's journal.\n"
    spec = latex_colspec(_LATEX_WIDTHS, _LATEX_ALIGN)
    out = [rf"\begin{{table}}[{placement}]", r"\centering", r"\small",
           r"\setlength{\tabcolsep}{4pt}",  # (inside the float: this table only)
           rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
           (r"Dataset & Evaluation & Pipeline & Score (mean $\pm$ sd) & Subjects & "
            r"$p$ vs best & $n$ (min $p$) & SMD & Above chance \\"),
           r"\midrule"]
    previous = None
    for r in rows:
        group = (r["dataset_code"], r["evaluation"], r.get("seed"))
        if previous is not None and group != previous:
            out.append(r"\addlinespace")
        first = group != previous
        previous = group
        score = fmt_score(r["mean"], r["sd"], pm=r"$\pm$")
        pipe = escape_latex(r["pipeline"])
        if r["is_best"]:
            pipe, score = rf"\textbf{{{pipe}}}", rf"\textbf{{{score}}}"
        elif not r["ranked"]:
            pipe = rf"{pipe} (not ranked)"
        p, n_min, smd = _p_cells(r)
        evaluation = r["evaluation"] + (f", seed {r['seed']}" if r.get("seed") not in
                                        (None, "") else "")
        out.append(" & ".join([escape_latex(r["dataset"]) if first else "",
                               escape_latex(evaluation) if first else "",
                               pipe, score, escape_latex(_subjects_cell(r)), p,
                               escape_latex(n_min), smd,
                               escape_latex(r["above_chance"] or "")]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}",
            rf"\caption{{{escape_latex(_caption(rows, record))}}}", rf"\label{{{label}}}",
            r"\end{table}"]
    return "\n".join(out) + "\n"


def _html(rows, record=None) -> str:
    from .formats import render_template

    return render_template("results.html.j2", rows=rows,
                           caption=_caption(rows, record) if rows else "",
                           fmt_num=fmt_num, fmt_score=fmt_score, p_cells=_p_cells,
                           subjects_cell=_subjects_cell)


def results_table(workspace_or_record, fmt="md", *, placement="htbp") -> str:
    """The results table of a workspace.

    Parameters
    ----------
    workspace_or_record : Workspace | path-like | SessionRecord
    fmt : {"md", "tex", "html"}
        A Markdown table with its caption, a LaTeX ``table`` (booktabs), or
        an HTML ``<table>``.
    placement : str
        Placement of the LaTeX ``table`` float: ``"htbp"`` for a paper that
        inputs it, ``"H"`` (``float`` package) to keep it under its
        heading.

    Returns
    -------
    table : str
    """
    record = load_record(workspace_or_record)
    rows = results_rows(record)
    if fmt == "md":
        return _markdown(rows, record)
    if fmt == "tex":
        return _latex(rows, record, placement=placement)
    if fmt == "html":
        return _html(rows, record)
    from .record import ExportError

    raise ExportError(f"results_table: unknown fmt {fmt!r}; use 'md', 'tex' or 'html'.")
