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
from ._text import compact_json, count_phrase, fmt_num, ranges
from .bibtex import citation_key, dataset_keys, llm_key
from .deep import deep_methods_blocks
from .record import load_record

__all__ = ["MOABB_FILTER", "methods_blocks", "methods_facts", "methods_section",
           "preprocessing_facts"]

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


def _subjects_per_pipeline(record) -> dict:
    """Dataset code -> pipeline -> subjects it was benchmarked on (over every run)."""
    out = {}
    for it in record.runs:
        cfg = it.payload["config"]
        subjects = [s for s in cfg.get("subjects") or [] if isinstance(s, int)]
        for name in (cfg.get("pipelines") or it.payload.get("scores") or {}):
            out.setdefault(cfg.get("dataset"), {}).setdefault(name, set()).update(subjects)
    return out


def engine_notes(record) -> list:
    """Distinct ``engine_notes`` of the benchmark runs, first seen first.

    Each run's journaled result may carry ``engine_notes``: ``[{"kind": ...,
    "pipeline": ..., "text": "one sentence for a methods section"}]`` (for
    example an unseeded component, or a filter bank). A note's ``text`` is
    reported once however many runs or pipelines carry it.
    """
    notes = []
    for it in record.runs:
        parent = record.parent(it)
        summary = (parent.payload.get("summary") or {}) if parent is not None else {}
        for source in (it.payload, summary):
            for note in source.get("engine_notes") or []:
                if not isinstance(note, dict) or not isinstance(note.get("text"), str):
                    continue
                if note["text"].strip() and note["text"] not in [n["text"] for n in notes]:
                    notes.append({"kind": note.get("kind"), "pipeline": note.get("pipeline"),
                                  "text": note["text"].strip()})
    return notes


def _statistics_facts(record) -> dict:
    """The statistics as reported: like-for-like comparisons recomputed from the runs.

    One entry per dataset, evaluation and seed where at least two pipelines
    share subjects: the subjects every ranked number rests on, the test, its
    n and smallest attainable p, and the pipelines left out of the ranking
    with their own subjects. ``superseded``: journaled comparisons made
    before newer runs on the same data (recomputed, not reported).
    """
    from chatbci.bci.statistics import meta_analysis, subject_ranges

    from .results import _superseded, results_comparisons

    comparisons, df, _ = results_comparisons(record)
    names = {ds.get("code"): ds.get("name") for ds in record.datasets_used}
    out = []
    for c in comparisons:
        if c.best is None:
            continue
        out.append({
            "dataset": names.get(c.key["dataset"]) or c.key["dataset"],
            "dataset_code": c.key["dataset"], "evaluation": c.key["evaluation"],
            "seed": c.key.get("seed") or None, "test": c.test,
            "n_subjects": c.n_subjects, "subjects": subject_ranges(c.subjects),
            "pipelines": list(c.ranking["pipeline"]), "best": c.best,
            "min_p": c.min_p, "caution": c.caution, "runs": [int(r) for r in c.runs],
            "not_ranked": [{"pipeline": r.pipeline, "n_subjects": int(r.n_subjects),
                            "subjects": r.subjects} for r in c.apart.itertuples()]})
    meta = meta_analysis(comparisons) if len(out) > 1 else None
    chance = bool(len(df)) and {"samples", "samples_test", "n_classes"} <= set(df.columns)
    return {"tests": _unique(c["test"] for c in out if c["test"]), "comparisons": out,
            "n_comparisons": len(out),
            "meta_analysis": ([] if meta is None else
                              [{"pipe1": m.pipe1, "pipe2": m.pipe2, "groups": m.groups,
                                "p": float(m.p), "smd": float(m.smd),
                                "I2": None if m.I2 != m.I2 else float(m.I2)}
                               for m in meta.itertuples() if m.smd > 0]),
            "chance_levels": chance,
            "superseded": {int(k): v for k, v in _superseded(record).items()}}


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
    per_pipeline = _subjects_per_pipeline(record)
    datasets = []
    for ds in record.datasets_used:
        mine = per_pipeline.get(ds.get("code"), {})
        everyone = set(ds.get("subjects", []))
        datasets.append({
            "name": ds.get("name"), "code": ds.get("code"), "doi": ds.get("doi"),
            "reference": ds.get("reference"), "n_channels": ds.get("n_channels"),
            "sfreq": ds.get("sfreq"), "n_sessions": ds.get("n_sessions"),
            "subjects": ds.get("subjects", []), "n_subjects": len(ds.get("subjects", [])),
            "cite": dataset_keys(ds),
            "simulated": str(ds.get("name") or "").startswith("SimulatedMI"),
            # Which subjects each pipeline ran on: the union above is only stated as
            # "n = ..." when some pipeline really ran on all of it.
            "pipeline_subjects": {name: sorted(subs) for name, subs in mine.items()},
            "all_by_one_pipeline": any(set(subs) >= everyone for subs in mine.values()),
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
        par["preprocessing"] = preprocessing_facts(par, datasets, record.software_versions)

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
            code = it.payload["config"].get("dataset")
            subs = per_pipeline.get(code, {}).get(name)
            if subs:
                entry.setdefault("subjects", {})[ds] = sorted(subs)
    for name, entry in pipelines.items():
        origin = origins.get(name)
        entry["origin"] = origin["by"] if origin else "canonical"
        entry["origin_text"] = _origin_text(record, origin)

    statistics = _statistics_facts(record)
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
        "statistics": statistics,
        "engine_notes": engine_notes(record),
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
    if ds["subjects"] and not ds.get("all_by_one_pipeline", True):
        # No pipeline ran on the whole union: never state it as one cohort.
        each = "; ".join(f"{name} on subjects {ranges(subs)} (n = {len(subs)})"
                         for name, subs in ds["pipeline_subjects"].items())
        subjects = (f"subjects {ranges(ds['subjects'])} across runs, though no pipeline ran "
                    f"on all {ds['n_subjects']} ({each})")
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


# ---------------------------------------------------------------------------
# Preprocessing as COBIDAS-MEEG asks it reported: what was done to the data


#: What MOABB's paradigms do to the data, read from MOABB's source (1.x:
#: ``moabb.datasets.preprocessing.get_filter_pipeline`` and ``RawToEpochs``)
#: and MNE-Python's defaults it relies on. A run that records its own
#: ``filter`` facts in ``protocol.paradigm`` overrides these.
MOABB_FILTER = {
    "applied_to": "the continuous recording, before epoching",
    "function": "mne.io.Raw.filter", "method": "iir", "picks": "data",
    # iir_params=None: MNE's default IIR design (mne.filter._check_method).
    "design": "Butterworth", "order": 4, "output": "sos",
    # Raw.filter's phase="zero": the IIR filter runs forward and backward.
    "phase": "zero (forward-backward)", "effective_order": 8,
    "cutoff_attenuation_db": 6,
}


def preprocessing_facts(paradigm, datasets, packages) -> dict:
    """The preprocessing of one recorded paradigm, fact by fact.

    Parameters
    ----------
    paradigm : dict
        A ``protocol.paradigm`` of a run (as in :func:`methods_facts`).
    datasets : list of dict
        The datasets of :func:`methods_facts` (for their channel counts).
    packages : dict
        Package versions of the session (``moabb``, ``mne``).

    Returns
    -------
    facts : dict
        ``band`` (Hz pair or None), ``filter_bank``, ``filter`` (method,
        design, order, phase; see :data:`MOABB_FILTER`), ``channels``
        (``"all EEG"`` or the recorded list) and ``n_channels`` per dataset,
        ``reference``, ``baseline``, ``rejection``, ``resample``, and the
        epoch ``windows`` per dataset (seconds from the cue).
    """
    band = None
    if paradigm.get("fmin") is not None and paradigm.get("fmax") is not None:
        band = [paradigm["fmin"], paradigm["fmax"]]
    elif isinstance(paradigm.get("filters"), list) and len(paradigm["filters"]) == 1:
        band = list(paradigm["filters"][0])
    recorded = paradigm.get("filter") if isinstance(paradigm.get("filter"), dict) else {}
    windows = {}
    for name, (a, b) in (paradigm.get("intervals") or {}).items():
        start = a + (paradigm.get("tmin") or 0.0)
        end = a + paradigm["tmax"] if paradigm.get("tmax") is not None else b
        windows[name] = {"tmin": start, "tmax": end, "interval": [a, b]}
    channels = paradigm.get("channels")
    return {
        "band": band, "filter_bank": paradigm.get("filter_bank"),
        "filter": {**MOABB_FILTER, **recorded,
                   "moabb": packages.get("moabb"), "mne": packages.get("mne")},
        "channels": list(channels) if channels else "all EEG",
        "n_channels": {d["name"]: (len(channels) if channels else d.get("n_channels"))
                       for d in datasets},
        "reference": paradigm.get("reference") or "as recorded (no re-referencing)",
        "baseline": paradigm.get("baseline"),
        "rejection": ("none by amplitude; epochs overlapping segments annotated as bad "
                      "are dropped (MOABB's reject_by_annotation)"),
        "resample": paradigm.get("resample"),
        "windows": windows,
    }


def _preprocessing_paragraph(par, facts) -> list:
    """Prose of :func:`preprocessing_facts`: channels, reference, filter, epochs,
    baseline, rejection and resampling, each stated even when nothing was done."""
    flt = facts["filter"]
    classes = " vs. ".join(c.replace("_", " ") for c in par.get("classes") or [])
    parts = [f"Trials of {classes} motor imagery were extracted with MOABB's ",
             code(par.get("name") or "paradigm"), " paradigm",
             cite("aristimunha2023moabb"), ". "]
    counts = [f"{n} for {name}" for name, n in facts["n_channels"].items() if n]
    if facts["channels"] == "all EEG":
        parts.append("All EEG channels of each dataset were used (MOABB's default selection"
                     + (f": {'; '.join(counts)}" if counts else "")
                     + "); no channel was interpolated. ")
    else:
        parts.append(f"{count_phrase(len(facts['channels']), 'channel', start=True)} were "
                     f"used: {', '.join(facts['channels'])}. ")
    parts.append("No re-referencing was applied: the EEG kept the reference of the "
                 "recording. " if facts["reference"].startswith("as recorded")
                 else f"The EEG was re-referenced to {facts['reference']}. ")
    how = (f"with an IIR {flt['design']} filter of order {flt['order']} (MNE-Python's default "
           f"IIR design, second-order sections) applied forward and backward, i.e. zero "
           f"phase with an effective order of {flt['effective_order']} and "
           f"\u2212{flt['cutoff_attenuation_db']} dB at the cut-offs, through ")
    who = [code(f"{flt['function']}(method='{flt['method']}')"),
           f" as called by MOABB {flt['moabb']}" if flt.get("moabb") else " as called by MOABB",
           f" (MNE-Python {flt['mne']})" if flt.get("mne") else "",
           cite("gramfort2013mne")]
    if facts["band"]:
        lo, hi = facts["band"]
        parts += [f"The continuous recording was band-pass filtered from {_sec(lo)} to "
                  f"{_sec(hi)} Hz before epoching, " + how, *who, ". "]
    else:
        parts += ["The continuous recording was band-pass filtered before epoching with the "
                  "paradigm's default band (its cut-off frequencies were not recorded in the "
                  "journal), " + how, *who, ". "]
    if facts["filter_bank"]:
        bands = ", ".join(f"{_sec(lo)}\u2013{_sec(hi)}" for lo, hi in facts["filter_bank"])
        parts.append(f"Filter-bank pipelines used the same filter in each of "
                     f"{count_phrase(len(facts['filter_bank']), 'band')} ({bands} Hz). ")
    windows = [f"{_sec(w['tmin'])} to {_sec(w['tmax'])} s after the cue for {name} (the "
               f"dataset's trial interval is {_sec(w['interval'][0])}\u2013"
               f"{_sec(w['interval'][1])} s)" for name, w in facts["windows"].items()]
    if windows:
        parts.append("Epochs spanned " + "; ".join(windows) + ". ")
    baseline = facts["baseline"]
    parts.append(f"Baseline correction used {_sec(baseline[0])} to {_sec(baseline[1])} s. "
                 if baseline else "No baseline correction was applied. ")
    parts.append("No amplitude-based rejection, ICA or other artefact correction was applied; "
                 "MOABB drops only epochs overlapping segments annotated as bad in the "
                 "recording. ")
    resample = facts["resample"]
    parts.append(f"Signals were resampled to {fmt_num(resample, 0)} Hz." if resample
                 else "Signals were not resampled (native sampling rates).")
    return parts


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
            blocks.append(P(*_preprocessing_paragraph(par, par["preprocessing"])))

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
        blocks.append(P(f"{count_phrase(n, 'pipeline', start=True)} "
                        f"{'were' if n != 1 else 'was'} benchmarked, each a "
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
            where = [f"{d} subjects {ranges(p['subjects'][d])} (n = {len(p['subjects'][d])})"
                     if p.get("subjects", {}).get(d) else str(d) for d in p["datasets"]]
            item.append(f". {p['origin_text'][0].upper()}{p['origin_text'][1:]}; "
                        f"benchmarked on {', '.join(where)}")
            if p["citations"]:
                keys = _unique(citation_key(c) for c in p["citations"])
                item += [". The method follows", cite(*keys)]
            item.append(".")
            items.append(item)
        blocks.append(UL(items))
        if f["engine_notes"]:
            blocks.append(P(" ".join(n["text"] for n in f["engine_notes"])))
        blocks += deep_methods_blocks(record, sub)  # networks: architecture, training

    stats = f["statistics"]
    if stats["comparisons"]:
        blocks.append(H(sub, "Statistics"))
        blocks += _statistics_blocks(stats)

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


_TEST_NAMES = {"permutation": "one-sided paired permutation tests",
               "wilcoxon": "one-sided Wilcoxon signed-rank tests"}


def _statistics_blocks(stats) -> list:
    """Paragraphs stating which subjects each reported comparison rests on."""
    used = " and ".join(_TEST_NAMES.get(t, t) for t in stats["tests"]) or "paired tests"
    blocks = [P(
        "Pipelines were compared with MOABB's paired statistics", cite("jayaram2018moabb"),
        ", separately for each dataset, evaluation and random seed, and only on the "
        "subjects every compared pipeline was scored on: the pipelines sharing the most "
        "paired scores (pipelines \u00d7 shared subjects) were ranked on those subjects, "
        f"and the best was tested against each other one with {used} (MOABB uses "
        "permutation tests below 20 subjects and Wilcoxon signed-rank tests above), with "
        "the standardised mean difference (SMD) as effect size. Pipelines benchmarked on "
        "other subjects are reported with their own subjects and are not ranked. With n "
        "subjects, an exact paired permutation test cannot give p below 1/2^n (0.0625 for "
        "n = 4), so fewer than 5 subjects cannot reach p below 0.05.")]
    items = []
    for c in stats["comparisons"]:
        where = f"{c['dataset']}, {c['evaluation']}"
        if c.get("seed") not in (None, ""):
            where += f", random_state = {c['seed']}"
        text = (f"{where}: {', '.join(c['pipelines'])} compared on subjects {c['subjects']} "
                f"(n = {c['n_subjects']}; {c['test']} test; smallest attainable p = "
                f"{c['min_p']:.4g}")
        text += (", so no comparison could reach p below 0.05)" if c.get("caution") else ")")
        if c["not_ranked"]:
            text += "; not ranked, benchmarked on other subjects: " + ", ".join(
                f"{a['pipeline']} (subjects {a['subjects']}, n = {a['n_subjects']})"
                for a in c["not_ranked"])
        items.append([text + "."])
    blocks.append(UL(items))
    if stats.get("chance_levels"):
        blocks.append(P(
            "Each subject's score was tested against chance for its number of trials: for "
            "accuracy with the binomial chance level of Combrisson and Jerbi (2015); for ROC "
            "AUC with the exact Mann\u2013Whitney null distribution of the AUC averaged over "
            "the cross-validation test folds (classes taken as balanced), at \u03b1 = 0.05."))
    if stats.get("meta_analysis"):
        pairs = "; ".join(f"{m['pipe1']} vs {m['pipe2']} over {len(m['groups'])} groups"
                          for m in stats["meta_analysis"][:6])
        blocks.append(P(
            "Comparisons repeated over datasets or seeds were combined with MOABB's "
            "meta-analysis (Stouffer's method, weighted by the square root of the number of "
            "subjects)", cite("jayaram2018moabb"), ", with Cochran's Q and the I\u00b2 "
            f"heterogeneity of Higgins and Thompson (2002) ({pairs})."))
    if stats.get("superseded"):
        ids = ", ".join(f"#{k}" for k in stats["superseded"])
        blocks.append(P(
            f"Comparisons recorded in the journal before later benchmark runs ({ids}) are "
            "not reported; all statistics above were recomputed on the final per-subject "
            "scores."))
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
