"""The results table: mean ± sd per pipeline and dataset, with the statistics.

Scores come from the ``run`` events: for each dataset and evaluation, every
pipeline's *latest* run (mean ± sd over subjects, as that run reported it).
The comparison columns come from the latest ``compare_pipelines`` result
for the same dataset and evaluation: the one-sided p-value that the best
pipeline scores higher than this one, and the standardised mean difference
(best - this one). Every row names the run event it comes from, so a reader
can check it in the journal.
"""

from __future__ import annotations

from ._text import escape_latex, fmt_num, fmt_score, md_cell
from .record import load_record

__all__ = ["results_rows", "results_table"]


def results_rows(record) -> list:
    """One dict per (dataset, evaluation, pipeline), best first within a group.

    Parameters
    ----------
    record : SessionRecord

    Returns
    -------
    rows : list of dict
        ``dataset`` (name), ``dataset_code``, ``evaluation``, ``metric``,
        ``pipeline``, ``mean``, ``sd``, ``n_subjects``, ``run_event``,
        ``config_hash``, ``is_best``, ``best``, ``p_vs_best``,
        ``smd_vs_best``, ``test``, ``compare_event``, ``compare_n_subjects``.
    """
    groups = {}
    for it in record.runs:
        p = it.payload
        cfg = p["config"]
        proto = p.get("protocol") or {}
        code = cfg.get("dataset")
        name = (proto.get("dataset") or {}).get("name") or code
        evaluation = cfg.get("evaluation")
        metric = (proto.get("evaluation") or {}).get("metric")
        group = groups.setdefault((code, evaluation), {"dataset": name, "metric": metric,
                                                       "pipelines": {}})
        group["metric"] = metric or group["metric"]
        scores = p.get("scores") or {}
        if isinstance(scores, dict):
            for pipe, s in scores.items():
                if isinstance(s, dict):
                    group["pipelines"][pipe] = {"mean": s.get("mean"), "sd": s.get("sd"),
                                                "n_subjects": s.get("n_subjects"),
                                                "run_event": it.id,
                                                "config_hash": p.get("config_hash")}
    compares = {}
    for res in record.tool_results("compare_pipelines"):
        for c in (res.payload.get("summary") or {}).get("comparisons", []):
            compares[(c.get("dataset"), c.get("evaluation"))] = {**c, "event": res.id}

    rows = []
    for (code, evaluation), group in groups.items():
        comp = compares.get((code, evaluation))
        pipes = group["pipelines"]
        best = comp["best"] if comp and comp.get("best") in pipes else max(
            pipes, key=lambda k: pipes[k]["mean"] if pipes[k]["mean"] is not None else -1e9)
        vs = {v.get("worse"): v for v in (comp or {}).get("vs_best", [])}
        order = sorted(pipes, key=lambda k: (k != best, -(pipes[k]["mean"] or 0), k))
        for pipe in order:
            s = pipes[pipe]
            v = vs.get(pipe, {})
            rows.append({"dataset": group["dataset"], "dataset_code": code,
                         "evaluation": evaluation, "metric": group["metric"], "pipeline": pipe,
                         **s, "is_best": pipe == best, "best": best,
                         "p_vs_best": v.get("p"), "smd_vs_best": v.get("smd"),
                         "test": comp.get("test") if comp else None,
                         "compare_event": comp.get("event") if comp else None,
                         "compare_n_subjects": comp.get("n_subjects") if comp else None})
    return rows


def _caption(rows) -> str:
    metrics = sorted({r["metric"] for r in rows if r["metric"]})
    runs = sorted({r["run_event"] for r in rows})
    compares = sorted({r["compare_event"] for r in rows if r["compare_event"]})
    text = (f"Decoding scores ({', '.join(metrics) or 'score'}), mean \u00b1 sd over subjects, "
            "per pipeline, dataset and evaluation (each pipeline's latest benchmark run).")
    tests = sorted({(r["dataset"], r["best"], r["test"], r["compare_n_subjects"])
                    for r in rows if r["test"]}, key=str)
    if tests:
        text += (" Marked: the best pipeline as ranked by the statistical comparison. "
                 "p: one-sided paired test that it scores higher than the pipeline; "
                 "SMD: standardised mean difference, best minus pipeline ("
                 + "; ".join(f"{d}: {t} test, {n} subjects" for d, _, t, n in tests) + ").")
    text += f" Journal events: runs {', '.join(f'#{r}' for r in runs)}"
    if compares:
        text += f"; comparisons {', '.join(f'#{c}' for c in compares)}"
    return text + "."


def _markdown(rows) -> str:
    if not rows:
        return "_No benchmark results in this workspace's journal._\n"
    lines = [("| Dataset | Evaluation | Pipeline | Score (mean \u00b1 sd) | Subjects | "
              "p vs best | SMD | Run |"), "|---|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        score = fmt_score(r["mean"], r["sd"])
        pipe = md_cell(r["pipeline"])
        if r["is_best"]:
            pipe, score = f"**{pipe}** (best)", f"**{score}**"
        p = fmt_num(r["p_vs_best"], 4) if r["p_vs_best"] is not None else ""
        smd = fmt_num(r["smd_vs_best"], 2) if r["smd_vs_best"] is not None else ""
        lines.append(f"| {md_cell(r['dataset'])} | {md_cell(r['evaluation'])} | {pipe} | "
                     f"{score} | {r['n_subjects']} | {p} | {smd} | #{r['run_event']} |")
    return "\n".join(lines) + "\n\n" + md_cell(_caption(rows)) + "\n"


def _latex(rows, label="tab:chatbci-results") -> str:
    if not rows:
        return "% No benchmark results in this workspace's journal.\n"
    out = [r"\begin{table}[htbp]", r"\centering", r"\small",
           r"\begin{tabular}{lllcrrr}", r"\toprule",
           r"Dataset & Evaluation & Pipeline & Score (mean $\pm$ sd) & $n$ & $p$ vs best & SMD \\",
           r"\midrule"]
    previous = None
    for r in rows:
        group = (r["dataset_code"], r["evaluation"])
        if previous is not None and group != previous:
            out.append(r"\addlinespace")
        first = group != previous
        previous = group
        score = fmt_score(r["mean"], r["sd"], pm=r"$\pm$")
        pipe = escape_latex(r["pipeline"])
        if r["is_best"]:
            pipe, score = rf"\textbf{{{pipe}}}", rf"\textbf{{{score}}}"
        p = fmt_num(r["p_vs_best"], 4) if r["p_vs_best"] is not None else ""
        smd = fmt_num(r["smd_vs_best"], 2) if r["smd_vs_best"] is not None else ""
        out.append(" & ".join([escape_latex(r["dataset"]) if first else "",
                               escape_latex(r["evaluation"]) if first else "",
                               pipe, score, str(r["n_subjects"]), p, smd]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}",
            rf"\caption{{{escape_latex(_caption(rows))}}}", rf"\label{{{label}}}",
            r"\end{table}"]
    return "\n".join(out) + "\n"


def _html(rows) -> str:
    from .formats import render_template

    return render_template("results.html.j2", rows=rows, caption=_caption(rows) if rows else "",
                           fmt_num=fmt_num, fmt_score=fmt_score)


def results_table(workspace_or_record, fmt="md") -> str:
    """The results table of a workspace.

    Parameters
    ----------
    workspace_or_record : Workspace | path-like | SessionRecord
    fmt : {"md", "tex", "html"}
        A Markdown table with its caption, a LaTeX ``table`` (booktabs), or
        an HTML ``<table>``.

    Returns
    -------
    table : str
    """
    rows = results_rows(load_record(workspace_or_record))
    if fmt == "md":
        return _markdown(rows)
    if fmt == "tex":
        return _latex(rows)
    if fmt == "html":
        return _html(rows)
    from .record import ExportError

    raise ExportError(f"results_table: unknown fmt {fmt!r}; use 'md', 'tex' or 'html'.")
