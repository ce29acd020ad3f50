"""The methods section, written from the journal's facts.

:func:`methods_facts` collects what the ``run`` events recorded -- datasets
(with subjects and citations), the paradigm (classes, band-pass, epoch
window, resampling), the evaluation (type, folds, metric, random_state),
every pipeline with its components and parameters, the statistics of the
``compare_pipelines`` results and the software versions of the session's
provenance -- and :func:`methods_section` writes them as prose in Markdown
(pandoc citations ``[@key]``), LaTeX (``\\cite{key}``) or HTML.
"""

from __future__ import annotations

from ._blocks import UL, H, P, bold, cite, code, plain_text
from ._text import compact_json, fmt_num, ranges
from .bibtex import dataset_keys, llm_key
from .record import load_record

__all__ = ["methods_blocks", "methods_facts", "methods_section"]

_EVALUATION_NAMES = {"within-session": "within-session", "cross-session": "cross-session",
                     "cross-subject": "cross-subject"}
_METRICS = {"roc_auc": "the area under the ROC curve (ROC AUC)", "accuracy": "accuracy",
            "balanced_accuracy": "balanced accuracy"}


def _unique(values):
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _pipeline_origins(record) -> dict:
    """Pipeline name -> who defined it in the workspace (last definition wins)."""
    out = {}
    for res in record.tool_results("define_pipeline"):
        call = record.parent(res)
        summary = res.payload.get("summary") or {}
        name = summary.get("name") or (call.payload.get("args", {}).get("name") if call else None)
        if not name or call is None:
            continue
        out[name] = {**record.origin(call), "event_id": call.id,
                     "digest": summary.get("digest")}
    return out


def _origin_text(record, origin) -> str:
    if origin is None:
        return "canonical pipeline shipped with chatbci (MOABB pipeline format)"
    by = origin["by"]
    if by == "ai":
        return (f"defined on its own by {record.label(origin['actor'])}, without a human "
                f"decision (event #{origin['event_id']})")
    if by == "human-decision":
        verb = {"accept": "accepted", "modify": "modified"}.get(origin["verdict"], "decided")
        proposer = record.label(origin["suggested_by"]) if origin.get("suggested_by") else "AI"
        return (f"proposed by {proposer} and {verb} by {record.label(origin['actor'])} "
                f"(event #{origin['event_id']})")
    return f"defined by {record.label(origin['actor'])} (event #{origin['event_id']})"


def _sec(value) -> str:
    """Seconds or hertz without trailing zeros: 0.0 -> "0", 4.5 -> "4.5"."""
    return f"{float(value):g}"


def _band(paradigm) -> str | None:
    fmin, fmax = paradigm.get("fmin"), paradigm.get("fmax")
    if fmin is not None and fmax is not None:
        return f"{_sec(fmin)}\u2013{_sec(fmax)} Hz"
    filters = paradigm.get("filters")  # MOABB's own attribute, if a run records it
    if isinstance(filters, list) and len(filters) == 1 and len(filters[0]) == 2:
        return f"{_sec(filters[0][0])}\u2013{_sec(filters[0][1])} Hz"
    return None


def methods_facts(record) -> dict:
    """What the methods section states, as JSON-ready facts.

    Parameters
    ----------
    record : SessionRecord

    Returns
    -------
    facts : dict
        ``datasets``, ``paradigms``, ``evaluations``, ``pipelines``,
        ``statistics``, ``software``, ``assistants``, ``journal``, ``runs``
        (event ids of the benchmark runs described).
    """
    runs = record.runs
    datasets = []
    for ds in record.datasets_used:
        datasets.append({
            "name": ds.get("name"), "code": ds.get("code"), "doi": ds.get("doi"),
            "reference": ds.get("reference"), "n_channels": ds.get("n_channels"),
            "sfreq": ds.get("sfreq"), "n_sessions": ds.get("n_sessions"),
            "subjects": ds.get("subjects", []), "n_subjects": len(ds.get("subjects", [])),
            "cite": dataset_keys(ds),
            "simulated": str(ds.get("name") or "").startswith("SimulatedMI"),
        })
    paradigms, evaluations, intervals = [], [], {}
    for it in runs:
        proto = it.payload.get("protocol") or {}
        par = dict(proto.get("paradigm") or {})
        ds = proto.get("dataset") or {}
        if par:
            interval = par.pop("interval", None)
            if interval is not None:
                intervals[ds.get("name") or ds.get("code")] = interval
            par["band"] = _band(par)
            if par not in paradigms:
                paradigms.append(par)
        ev = proto.get("evaluation") or {"type": it.payload["config"].get("evaluation"),
                                         "random_state": it.payload["config"].get("random_state")}
        if ev not in evaluations:
            evaluations.append(ev)
    for par in paradigms:
        par["intervals"] = intervals

    origins = _pipeline_origins(record)
    pipelines = {}
    for it in runs:
        ds = ((it.payload.get("protocol") or {}).get("dataset") or {}).get("name") \
            or it.payload["config"].get("dataset")
        for name, spec in (it.payload.get("pipelines") or {}).items():
            entry = pipelines.setdefault(name, {"name": name, "datasets": [], "runs": []})
            entry.update({"steps": spec.get("pipeline", []),
                          "param_grid": spec.get("param_grid"),
                          "citations": spec.get("citations") or [],
                          "digest": (it.payload["config"].get("pipelines") or {}).get(name)})
            if ds not in entry["datasets"]:
                entry["datasets"].append(ds)
            entry["runs"].append(it.id)
    for name, entry in pipelines.items():
        origin = origins.get(name)
        entry["origin"] = origin["by"] if origin else "canonical"
        entry["origin_text"] = _origin_text(record, origin)

    # The latest comparison per dataset and evaluation is the one reported.
    names = {ds.get("code"): ds.get("name") for ds in record.datasets_used}
    latest, n_comparisons = {}, 0
    for res in record.tool_results("compare_pipelines"):
        for c in (res.payload.get("summary") or {}).get("comparisons", []):
            n_comparisons += 1
            latest[(c.get("dataset"), c.get("evaluation"))] = {
                "event_id": res.id, "dataset": names.get(c.get("dataset")) or c.get("dataset"),
                "dataset_code": c.get("dataset"), "evaluation": c.get("evaluation"),
                "test": c.get("test"), "n_subjects": c.get("n_subjects"), "best": c.get("best")}
    comparisons = list(latest.values())
    sess = record.software_session
    prov = sess["provenance"] if sess else {}
    assistants = [{"actor": a["actor"], "model": a["model"], "is_llm": a["is_llm"],
                   "description": record.describe_ai(a["actor"])}
                  for a in record.ai_actors.values()]
    return {
        "runs": [it.id for it in runs],
        "datasets": datasets,
        "paradigms": paradigms,
        "evaluations": evaluations,
        "pipelines": list(pipelines.values()),
        "statistics": {"tests": _unique(c["test"] for c in comparisons if c["test"]),
                       "comparisons": comparisons, "n_comparisons": n_comparisons},
        "software": {"python": prov.get("python"), "platform": prov.get("platform"),
                     "packages": record.software_versions,
                     "seeds": prov.get("seeds") or {}},
        "assistants": assistants,
        "journal": {"n_events": record.head_id, "head_hash": record.head_hash},
        "configured_datasets": list(record.config.get("datasets") or []),
    }


# ---------------------------------------------------------------------------
# Prose


def _dataset_sentence(ds):
    bits = []
    if ds["n_channels"]:
        bits.append(f"{ds['n_channels']} EEG channels")
    if ds["sfreq"]:
        bits.append(f"sampled at {fmt_num(ds['sfreq'], 0)} Hz")
    if ds["n_sessions"]:
        bits.append(f"{ds['n_sessions']} session{'s' if ds['n_sessions'] != 1 else ''} "
                    "per subject")
    detail = ", ".join(bits)
    subjects = (f"subjects {ranges(ds['subjects'])} (n = {ds['n_subjects']})"
                if ds["subjects"] else "all subjects")
    if ds["simulated"]:
        head = ["simulated motor-imagery EEG generated by chatbci's ", code(ds["name"]),
                " dataset (", code(ds["code"]), "; " + detail + ")"]
    elif ds["name"] == "PhysionetMI":
        head = ["the PhysioNet EEG Motor Movement/Imagery dataset (MOABB ", code(ds["name"]),
                "; " + detail + ")"]
    else:
        head = ["the ", ds["name"], " dataset (MOABB ", code(ds["code"] or ds["name"]),
                "; " + detail + ")"]
    return [*head, f", {subjects}", cite(*ds["cite"])]


def _params(parameters) -> str:
    if not parameters:
        return ""
    return ", ".join(f"{k} = {v if isinstance(v, (str, int, float)) else compact_json(v)}"
                     for k, v in parameters.items())


def methods_blocks(record, *, level=1) -> list:
    """The methods section as blocks (see :mod:`chatbci.export._blocks`)."""
    f = methods_facts(record)
    blocks = [H(level, "Methods")]
    sub = level + 1
    datasets = f["datasets"]
    blocks.append(H(sub, "Data"))
    if datasets:
        parts = ["We analysed "]
        for i, ds in enumerate(datasets):
            if i:
                parts.append("; and " if i == len(datasets) - 1 else "; ")
            parts += _dataset_sentence(ds)
        parts.append(".")
        blocks.append(P(*parts))
    else:
        configured = ", ".join(f["configured_datasets"]) or "none"
        blocks.append(P("No benchmark was run in this workspace, so no analysis is reported. "
                        f"Datasets in scope: {configured}."))

    if f["paradigms"]:
        blocks.append(H(sub, "Paradigm and preprocessing"))
        for par in f["paradigms"]:
            classes = " vs. ".join(c.replace("_", " ") for c in par.get("classes") or [])
            parts = [f"Trials of {classes} motor imagery were extracted with MOABB's ",
                     code(par.get("name") or "paradigm"), " paradigm. "]
            if par.get("filter_bank"):
                bands = ", ".join(f"{lo}\u2013{hi}" for lo, hi in par["filter_bank"])
                parts.append(f"Filter-bank pipelines used {len(par['filter_bank'])} band-pass "
                             f"filters ({bands} Hz); ")
            if par["band"]:
                parts.append(f"The EEG was band-pass filtered at {par['band']}. ")
            else:
                parts.append("The EEG was band-pass filtered with the paradigm's default "
                             "filter (its cut-off frequencies were not recorded in the "
                             "journal). ")
            windows = []
            for name, (a, b) in par["intervals"].items():
                start = a + (par.get("tmin") or 0.0)
                end = a + par["tmax"] if par.get("tmax") is not None else b
                windows.append(f"{_sec(start)} to {_sec(end)} s after the cue for {name} "
                               f"(trial interval {_sec(a)}\u2013{_sec(b)} s)")
            if windows:
                parts.append("Epochs spanned " + "; ".join(windows) + ". ")
            resample = par.get("resample")
            parts.append(f"Signals were resampled to {fmt_num(resample, 0)} Hz." if resample
                         else "Signals were not resampled (native sampling rates).")
            blocks.append(P(*parts))

    if f["evaluations"]:
        blocks.append(H(sub, "Evaluation"))
        for ev in f["evaluations"]:
            kind = _EVALUATION_NAMES.get(ev.get("type"), ev.get("type"))
            metric = ev.get("metric")
            parts = [f"Decoding performance was estimated with MOABB's {kind} evaluation"]
            if ev.get("folds"):
                parts.append(f" ({ev['folds']})")
            if metric:
                parts += [" and scored with ", _METRICS.get(metric, metric), " (", code(metric),
                          ")"]
            parts += [f", with random_state = {ev.get('random_state')}",
                      cite("jayaram2018moabb", "aristimunha2023moabb"), ". ",
                      ("Scores are reported as mean \u00b1 standard deviation over subjects, "
                       "after averaging each subject's sessions.")]
            blocks.append(P(*parts))

    if f["pipelines"]:
        blocks.append(H(sub, "Decoding pipelines"))
        n = len(f["pipelines"])
        blocks.append(P(f"{n} pipeline{'s were' if n != 1 else ' was'} benchmarked, each a "
                        "scikit-learn pipeline of the components below (module; parameters), "
                        "in order", cite("barachant_pyriemann", "pedregosa2011scikit"), ":"))
        items = []
        for p in f["pipelines"]:
            steps = []
            for i, step in enumerate(p["steps"]):
                if i:
                    steps.append(" \u2192 ")
                params = _params(step.get("parameters"))
                steps += [code(step.get("name", "?")), f" ({step.get('from', '')}"
                          + (f"; {params}" if params else "") + ")"]
            item = [bold(p["name"]), ": ", *steps]
            if p.get("param_grid"):
                item.append(f"; hyper-parameters tuned by grid search over "
                            f"{compact_json(p['param_grid'])}")
            item.append(f". {p['origin_text'][0].upper()}{p['origin_text'][1:]}; "
                        f"benchmarked on {', '.join(str(d) for d in p['datasets'])}")
            if p["citations"]:
                item.append(f". Method references: {', '.join(p['citations'])}")
            item.append(".")
            items.append(item)
        blocks.append(UL(items))

    stats = f["statistics"]
    if stats["comparisons"]:
        blocks.append(H(sub, "Statistics"))
        tests = stats["tests"]
        names = {"permutation": "one-sided paired permutation tests",
                 "wilcoxon": "one-sided Wilcoxon signed-rank tests"}
        used = " and ".join(names.get(t, t) for t in tests) or "paired tests"
        detail = "; ".join(f"{c['dataset']}, {c['evaluation']}: {c['test']} test, "
                           f"{c['n_subjects']} subjects" for c in stats["comparisons"])
        blocks.append(P(
            "Pipelines were compared per dataset with MOABB's paired statistics",
            cite("jayaram2018moabb"), ": the best pipeline was tested against each other one "
            f"with {used} on the subjects scored by both (MOABB uses permutation tests below "
            "20 subjects and Wilcoxon signed-rank tests above), with the standardised mean "
            f"difference (SMD) as effect size ({detail})."))

    sw = f["software"]
    pk = sw["packages"]
    if any(pk.values()) or sw["python"]:
        blocks.append(H(sub, "Software"))
        parts = [(f"Analyses ran on Python {sw['python']} ({sw['platform']}) with chatbci "
                  f"{pk.get('chatbci')}, MNE-Python {pk.get('mne')}"), cite("gramfort2013mne"),
                 f", MOABB {pk.get('moabb')}",
                 cite("jayaram2018moabb", "aristimunha2023moabb", "chevallier2024moabb"),
                 f", pyRiemann {pk.get('pyriemann')}", cite("barachant_pyriemann"),
                 f", scikit-learn {pk.get('scikit-learn')}", cite("pedregosa2011scikit"),
                 f" and NumPy {pk.get('numpy')}."]
        blocks.append(P(*parts))

    blocks.append(H(sub, "Human\u2013AI collaboration and record"))
    llms = [a for a in f["assistants"] if a["is_llm"]]
    offline = [a for a in f["assistants"] if not a["is_llm"]]
    parts = ["The study was carried out in ChatBCI", cite("chatbci"),
             (", in which a human researcher directs the work and an assistant proposes and "
              "runs analyses. ")]
    if llms:
        parts.append("The assistant was driven by ")
        for i, a in enumerate(llms):
            if i:
                parts.append(", ")
            parts += [f"the large language model {a['model']}", cite(llm_key(a["model"]))]
        parts.append(". ")
    if offline:
        parts.append(("Part of the session used" if llms else "The assistant was")
                     + " ChatBCI's offline rule-based assistant, which maps requests to the "
                     "same tools by fixed rules and is not a language model. ")
    if not f["assistants"]:
        parts.append("No assistant took part in the recorded events. ")
    parts.append("Every message, AI suggestion, human decision, tool call and result is "
                 f"recorded in a hash-chained journal ({f['journal']['n_events']} events, head "
                 f"hash {f['journal']['head_hash']}), which ")
    parts += [code("chatbci verify"), " checks; the AI-use disclosure details the AI's role."]
    blocks.append(P(*parts))
    return blocks


def methods_section(workspace_or_record, fmt="md", *, level=1) -> str:
    """The methods section of a workspace, generated from its journal.

    Parameters
    ----------
    workspace_or_record : Workspace | path-like | SessionRecord
    fmt : {"md", "tex", "html", "txt"}
        Markdown with pandoc citations (``[@key]``), a LaTeX fragment with
        ``\\cite{key}`` (keys of :func:`chatbci.export.bibtex`), an HTML
        fragment, or plain text.
    level : int
        Heading level of the section (1: ``#`` / ``\\section``).

    Returns
    -------
    text : str
        Names the datasets (subjects, citations), the paradigm, the
        evaluation, every pipeline with its components and parameters, the
        statistics, the software versions and the AI involvement.
    """
    from .formats import render_blocks

    record = load_record(workspace_or_record)
    blocks = methods_blocks(record, level=level)
    if fmt == "txt":
        return plain_text(blocks)
    return render_blocks(blocks, fmt)
