"""The transcript: the journal as a chronological, readable conversation.

:func:`transcript_entries` turns journal events into format-neutral entries
(actor label and role, heading, text, the exact action, a one-line summary of
tool results, result tables, figures, full details); the Markdown, HTML and
LaTeX templates only lay them out. A curated transcript keeps the AI's
suggestions, the human's decisions and the results, and drops the chatter
(see :func:`select_items`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ._text import compact_json, fmt_num, fmt_score, ranges, truncate

__all__ = ["CLAIM_MARKS", "CURATED_TOOLS", "FIGURE_SUFFIXES", "Entry", "action_line",
           "claims_marked", "dataset_names", "figure_captions", "results_figures", "select_items",
           "summarise_result", "transcript_entries"]

#: Tools whose calls and results a curated transcript keeps (they produce findings
#: or change what is compared); other tool calls stay only if a human decided them.
CURATED_TOOLS = frozenset({"run_benchmark", "compare_pipelines", "show_results",
                           "define_pipeline", "explore_subject"})

#: Artifacts shown as figures.
FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")

_VERDICT = {"accept": "accepted", "reject": "rejected", "modify": "modified"}


def select_items(record, curated=False) -> list:
    """The events a transcript shows.

    Parameters
    ----------
    record : SessionRecord
    curated : bool
        If False, every event. If True: every suggestion and decision; tool
        calls a human decided or whose tool is in :data:`CURATED_TOOLS`, with
        their results; benchmark runs. Messages, session boundaries, notes,
        errors and read-only look-ups (listing datasets, searching notes...)
        are dropped.

    Returns
    -------
    items : list of Item
    """
    if not curated:
        return list(record.items)
    keep = set()
    for it in record.items:
        if it.kind in ("suggestion", "decision", "run"):
            keep.add(it.id)
        elif it.kind == "tool_call":
            parent = record.parent(it)
            if it.payload.get("tool") in CURATED_TOOLS or (
                    parent is not None and parent.kind == "decision"):
                keep.add(it.id)
        elif it.kind == "tool_result" and it.parent_id in keep:
            keep.add(it.id)
    return [it for it in record.items if it.id in keep]


def action_line(action, width=400) -> str:
    """``tool(arg=value, ...)`` for an action or tool call payload."""
    if not isinstance(action, dict):
        return truncate(str(action), width)
    args = action.get("args") or {}
    parts = []
    for key, value in args.items():
        text = value if isinstance(value, str) else json.dumps(
            value, ensure_ascii=False, separators=(", ", ": "), default=str)
        parts.append(f"{key}={text}")
    return truncate(f"{action.get('tool', '?')}({', '.join(parts)})", width)


def _changed_args(before, after) -> list:
    """Argument names whose value differs between two actions."""
    a = (before or {}).get("args", {}) if isinstance(before, dict) else {}
    b = (after or {}).get("args", {}) if isinstance(after, dict) else {}
    keys = list(dict.fromkeys([*a, *b]))
    changed = [k for k in keys if a.get(k) != b.get(k)]
    if isinstance(before, dict) and isinstance(after, dict) and \
            before.get("tool") != after.get("tool"):
        changed.insert(0, "tool")
    return changed


# ---------------------------------------------------------------------------
# Tool results: one line and small tables


def _scores_table(scores, metric=None):
    rows = sorted(((name, s) for name, s in (scores or {}).items() if isinstance(s, dict)),
                  key=lambda kv: -(kv[1].get("mean") or 0))
    if not rows:
        return None
    return {"title": f"Scores ({metric})" if metric else "Scores",
            "columns": ["Pipeline", "Score (mean \u00b1 sd)", "Subjects"],
            "rows": [[name, fmt_score(s.get("mean"), s.get("sd")), str(s.get("n_subjects", ""))]
                     for name, s in rows]}


def summarise_result(tool, summary, ok=True):
    """One sentence and a list of tables for a tool result summary.

    Parameters
    ----------
    tool : str
    summary : dict | object
        The ``summary`` of a ``tool_result`` payload.
    ok : bool

    Returns
    -------
    text : str
    tables : list of dict
        Each ``{"title", "columns", "rows"}`` with string cells.
    """
    if not ok:
        err = summary.get("error") if isinstance(summary, dict) else summary
        return f"FAILED: {truncate(err, 300)}", []
    if not isinstance(summary, dict):
        return truncate(compact_json(summary), 300), []
    s = summary
    try:
        if tool == "run_benchmark":
            subjects = s.get("subjects") or []
            table = _scores_table(s.get("scores"), s.get("metric"))
            best = (s.get("scores") or {}).get(s.get("best"), {})
            text = (f"{s.get('dataset')}, {s.get('evaluation')}, subjects "
                    f"{ranges(subjects) if isinstance(subjects, list) else subjects}: best "
                    f"{s.get('best')} {fmt_score(best.get('mean'), best.get('sd'))} "
                    f"({s.get('metric')}); config {str(s.get('config_hash', ''))[:12]}")
            return text, [table] if table else []
        if tool == "compare_pipelines":
            texts, tables = [], []
            for c in s.get("comparisons", []):
                texts.append(f"{c.get('dataset')} ({c.get('evaluation')}, "
                             f"{c.get('n_subjects')} subjects, {c.get('test')} test): best "
                             f"{c.get('best')} ({fmt_num(c.get('best_mean'))})")
                tables.append({
                    "title": f"{c.get('dataset')}: {c.get('best')} vs the others",
                    "columns": ["Best", "Other", "p (one-sided)", "SMD"],
                    "rows": [[v.get("better", ""), v.get("worse", ""), fmt_num(v.get("p"), 4),
                              fmt_num(v.get("smd"))] for v in c.get("vs_best", [])]})
            return "; ".join(texts) or "no comparison", tables
        if tool == "show_results":
            rows = s.get("results", [])
            table = {"title": "Results", "columns": ["Dataset", "Evaluation", "Pipeline",
                                                     "Score (mean \u00b1 sd)", "Subjects"],
                     "rows": [[r.get("dataset", ""), r.get("evaluation", ""),
                               r.get("pipeline", ""), fmt_score(r.get("mean"), r.get("sd")),
                               str(r.get("n_subjects", ""))] for r in rows]}
            return f"{len(rows)} pipeline results", [table] if rows else []
        if tool == "explore_subject":
            best = (s.get("band_power") or {}).get("best") or {}
            text = f"{s.get('dataset')} subject {s.get('subject')}"
            if best:
                text += (f": classes differ most at {best.get('channel')} in the "
                         f"{best.get('band')} band (effect size {fmt_num(best.get('effect_size'))},"
                         f" AUC {fmt_num(best.get('auc'))})")
            return text, []
        if tool == "define_pipeline":
            steps = " \u2192 ".join(s.get("steps", []))
            return (f"pipeline {s.get('name')} ({steps}) saved to {s.get('path')}, digest "
                    f"{s.get('digest')}"), []
        if tool == "list_datasets":
            names = [d.get("name") for d in s.get("datasets", [])]
            n = s.get("n_datasets", len(names))
            return f"{n} datasets: {truncate(', '.join(names), 300)}", []
        if tool == "describe_dataset":
            return (f"{s.get('name')}: {s.get('n_subjects')} subjects, "
                    f"{s.get('n_sessions')} session(s), {s.get('n_channels')} channels, "
                    f"{fmt_num(s.get('sfreq'), 0)} Hz, classes "
                    f"{', '.join(s.get('classes') or [])}"), []
        if tool == "list_components":
            return (f"{len(s.get('components', []))} components; canonical pipelines: "
                    f"{', '.join(s.get('canonical_pipelines', []))}"), []
        if tool == "add_note":
            return f"note {s.get('note_id')} added (verified: {s.get('verified')})", []
        if tool == "search_knowledge":
            titles = [n.get("title", "") for n in s.get("notes", [])]
            return (f"{len(titles)} notes for {s.get('query')!r}"
                    + (f": {truncate('; '.join(titles), 200)}" if titles else "")), []
    except (AttributeError, TypeError, ValueError):
        pass  # an unexpected shape: fall back to the raw summary
    return truncate(compact_json(s), 300), []


# ---------------------------------------------------------------------------
# Figure captions

#: What the figures of each tool show, in the order the tool stores them
#: (chatbci.assistant.tools); a caption is built from the result's summary.
_EXPLORE_FIGURES = ("erd_ers", "band_power", "psd")


def _listed(values) -> str:
    return ", ".join(str(v) for v in values or [])


def _explore_captions(s, name):
    where = f"{name(s.get('dataset'))} subject {s.get('subject')}"
    erd = s.get("erd_ers") or {}
    bp = s.get("band_power") or {}
    spectra = s.get("psd") or {}
    base = erd.get("baseline") or []
    window = erd.get("task_window") or []
    out = {}
    text = (f"ERD/ERS maps of {where}: power change from the pre-cue baseline "
            f"({fmt_num(base[0], 1)} to {fmt_num(base[1], 1)} s) per class "
            f"({_listed(erd.get('classes'))}) and channel ({_listed(erd.get('channels'))}), "
            "Morlet wavelets; blue is a decrease (ERD), red an increase (ERS); dashed line: "
            "the cue" if len(base) == 2 else f"ERD/ERS maps of {where}")
    if len(window) == 2:
        text += f"; dotted lines: the task window ({fmt_num(window[0], 1)} to " \
                f"{fmt_num(window[1], 1)} s)"
    out["erd_ers"] = text + "."
    contrast = bp.get("contrast") or []
    best = bp.get("best") or {}
    text = f"Class difference in band power, {where}"
    if len(contrast) == 2:
        text += f": Hedges' g of {contrast[0]} minus {contrast[1]} per channel and band"
    if best:
        text += (f"; largest at {best.get('channel')} in the {best.get('band')} band "
                 f"(g = {fmt_num(best.get('effect_size'), 2)}, AUC {fmt_num(best.get('auc'))})")
    out["band_power"] = text + "."
    peak = (spectra.get("mu_peak") or {}).get("frequency_hz")
    channels = list(spectra.get("channels") or {})
    if channels and set(channels) == set(erd.get("channels") or []):
        channels = erd["channels"]  # the plotted order (the journal's JSON sorts keys)
    text = (f"Power spectra of {where} in the task window, per class "
            f"({_listed(spectra.get('classes'))}) and channel "
            f"({_listed(channels)}); shaded: mu and beta bands")
    if peak is not None:
        text += f"; dotted line: the mu peak at {fmt_num(peak, 1)} Hz"
    out["psd"] = text + "."
    return [out[k] for k in _EXPLORE_FIGURES]


def _compare_captions(s, name):
    captions = []
    for c in s.get("comparisons", []):
        ranking = [r.get("pipeline") for r in c.get("ranking") or [] if isinstance(r, dict)]
        second = ranking[1] if len(ranking) > 1 else next(
            (v.get("worse") for v in c.get("vs_best") or []), "the runner-up")
        captions.append(
            f"{c.get('best')} (x) against {second} (y) on {name(c.get('dataset'))} "
            f"({c.get('evaluation')}), one point per subject ({c.get('n_subjects')} "
            f"subjects scored by both); points below the diagonal are subjects "
            f"{c.get('best')} decodes better; dashed lines: chance.")
    for m in (s.get("meta_analysis") or [])[:2]:
        captions.append(
            f"Forest plot of {m.get('better')} minus {m.get('worse')}: standardised mean "
            "difference with its 95 % interval in each group (dataset, evaluation, seed) "
            "and combined over groups (diamond).")
    return captions


def figure_captions(tool, summary, n_figures, source="", names=None) -> list:
    """A caption for each figure of a tool result: what it shows and where from.

    Parameters
    ----------
    tool : str
        The tool that made the figures.
    summary : dict
        The result's summary (what the captions describe).
    n_figures : int
        How many figures the result holds.
    source : str
        Appended to every caption, e.g. ``"explore_subject, journal events #4-#5"``.
    names : dict | None
        Dataset code -> the name the rest of the export uses (``"SimulatedMI"``
        for ``"SimulatedMI-6b48168cb2"``), see :func:`dataset_names`.

    Returns
    -------
    captions : list of str
        ``n_figures`` captions; a figure the tool's known layout does not
        account for is described by the tool and event alone.
    """
    s = summary if isinstance(summary, dict) else {}
    names = names or {}

    def name(code):
        return names.get(code, code)

    known = []
    try:
        if tool == "explore_subject":
            known = _explore_captions(s, name)
        elif tool == "compare_pipelines":
            known = _compare_captions(s, name)
        elif tool == "show_results":
            datasets = sorted({str(name(r.get("dataset"))) for r in s.get("results", [])
                               if isinstance(r, dict)})
            known = [f"Decoding score of every subject (points) and mean \u00b1 sd (black) "
                     f"per pipeline{' on ' + ', '.join(datasets) if datasets else ''}; "
                     "dashed line: chance level."]
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        known = []  # an unexpected summary shape: fall back to the generic caption
    if len(known) != n_figures:
        known = []
    out = []
    for i in range(n_figures):
        text = known[i] if known else (f"Figure {i + 1} of {n_figures} made by {tool}."
                                       if n_figures > 1 else f"Figure made by {tool}.")
        out.append(f"{text} From {source}." if source else text)
    return out


def dataset_names(record) -> dict:
    """Dataset code -> the name its benchmark runs recorded (the results table's).

    The export reads the journal only, so it takes the names the engine
    wrote into each run's protocol rather than asking the engine.
    """
    names = {}
    for it in record.runs:
        code = (it.payload.get("config") or {}).get("dataset")
        name = ((it.payload.get("protocol") or {}).get("dataset") or {}).get("name")
        if code and name:
            names[code] = name
    return names


def results_figures(entries) -> list:
    """The figures for a Results section: the latest comparison's, else the latest scores'.

    Parameters
    ----------
    entries : list of Entry

    Returns
    -------
    figures : list of (path, caption, entry id)
    """
    for tool in ("compare_pipelines", "show_results"):
        for e in reversed(entries):
            if e.kind == "tool_result" and e.ok and e.tool == tool and e.figures:
                return list(zip(e.figures, e.captions, [e.id] * len(e.figures)))
    return []


# ---------------------------------------------------------------------------
# Claims check marks

#: The marks of :mod:`chatbci.assistant.claims` (the export reads the journal only, so it
#: does not import the assistant; a test keeps the two equal).
CLAIM_MARKS = {"unsupported": "[?]", "contradicted": "[!]"}


def claims_marked(text, claims) -> str:
    """A message's text with the verdicts of its claims check, for a transcript.

    ``[?]`` follows each unsupported claim and ``[!]`` each contradicted one
    (found by offset, else by its text nearest to it); a note listing them
    with the reason follows the text. ``claims`` is the message payload's
    ``claims`` (see :meth:`chatbci.assistant.claims.ClaimsReport.as_payload`);
    text without flagged claims is returned unchanged.
    """
    items = claims.get("claims") if isinstance(claims, dict) else None
    flagged = [c for c in items or [] if isinstance(c, dict)
               and c.get("verdict") in CLAIM_MARKS and isinstance(c.get("text"), str)]
    if not flagged:
        return text
    inserts = set()
    for c in flagged:
        claim, start = c["text"], c.get("start")
        if isinstance(start, int) and text[start:start + len(claim)] == claim and claim:
            inserts.add((start + len(claim), CLAIM_MARKS[c["verdict"]]))
        elif claim and claim in text:
            near = start if isinstance(start, int) else 0
            at = min((m.start() for m in re.finditer(re.escape(claim), text)),
                     key=lambda i: abs(i - near))
            inserts.add((at + len(claim), CLAIM_MARKS[c["verdict"]]))
    for end, mark in sorted(inserts, reverse=True):
        text = text[:end] + mark + text[end:]
    counts = {v: sum(1 for c in items if isinstance(c, dict) and c.get("verdict") == v)
              for v in ("supported", "unsupported", "contradicted")}
    lines = [f"Claims check (chatbci): {counts['supported']} supported, "
             f"{counts['unsupported']} unsupported [?], {counts['contradicted']} "
             "contradicted [!] against the journaled tool results."]
    lines += [f"- {CLAIM_MARKS[c['verdict']]} {truncate(c['text'], 80)}: "
              f"{truncate(str(c.get('reason', '')), 240)}" for c in flagged[:20]]
    if len(flagged) > 20:
        lines.append(f"- ... and {len(flagged) - 20} more")
    return text.rstrip() + "\n\n" + "\n".join(lines)


# ---------------------------------------------------------------------------
# Entries


def _pretty(value) -> str:
    """JSON with one top-level key per line (nested values compact).

    Fully indented JSON goes through the pure-Python encoder and dominated
    the export time of large journals; this uses the C encoder only.
    """
    if not isinstance(value, dict) or not value:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    lines = [f"  {json.dumps(str(k), ensure_ascii=False)}: "
             + json.dumps(v, ensure_ascii=False, sort_keys=True, default=str,
                          separators=(", ", ": "))
             for k, v in sorted(value.items())]
    return "{\n" + ",\n".join(lines) + "\n}"


@dataclass(slots=True)
class Entry:
    """One transcript entry (see :func:`transcript_entries`).

    A slotted object rather than a dict: templates read its attributes tens
    of thousands of times for a large journal, and attribute access is what
    Jinja2 tries first. Item access (``entry["kind"]``) works too.
    """

    id: int
    ts: str
    kind: str
    actor: str
    label: str
    role: str
    parent_id: int | None
    heading: str = ""
    text: str = ""
    action: str = ""
    summary: str = ""
    details: str | None = None
    figures: list = field(default_factory=list)
    captions: list = field(default_factory=list)
    files: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    ok: bool = True
    status: str = ""
    verdict: str | None = None
    hash_note: str = ""
    tool: str = ""

    def __getitem__(self, key):
        return getattr(self, key)

    def __setitem__(self, key, value):
        setattr(self, key, value)

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


def _entry(record, it, names=None) -> Entry:
    p = it.payload
    e = Entry(it.id, it.ts[:19].replace("T", " ") + " UTC", it.kind, it.actor,
              record.label(it.actor), record.role(it.actor), it.parent_id)
    kind = it.kind
    if kind == "message":
        e["text"] = claims_marked(p.get("text", ""), p.get("claims"))
    elif kind == "suggestion":
        e["heading"] = f"Suggestion #{it.id}"
        e["action"] = action_line(p.get("action"))
        e["text"] = p.get("rationale", "")
        if p.get("reason"):
            e["summary"] = f"Why it needs a decision: {p['reason']}"
        decision = record.decision_of.get(it.id)
        e["status"] = (f"{_VERDICT.get(decision.payload.get('verdict'), 'decided')} in "
                       f"#{decision.id}") if decision is not None else "no decision recorded"
    elif kind == "decision":
        verdict = p.get("verdict")
        e["heading"] = f"Decision on suggestion #{it.parent_id}: {_VERDICT.get(verdict, verdict)}"
        e["text"] = p.get("rationale", "")
        e["verdict"] = verdict
        if verdict == "modify" and p.get("action") is not None:
            sugg = record.parent(it)
            changed = _changed_args(sugg.payload.get("action") if sugg else None, p["action"])
            e["action"] = action_line(p["action"])
            if changed:
                e["summary"] = f"Changed: {', '.join(changed)}"
    elif kind == "tool_call":
        origin = record.origin(it)
        e["heading"] = "Tool call"
        e["action"] = action_line(p)
        if origin["by"] == "ai":
            e["summary"] = "Run by the assistant on its own (allowed by the autonomy level)."
        elif origin["by"] == "human-decision":
            e["summary"] = (f"Run after decision #{origin['decision_id']} "
                            f"({_VERDICT.get(origin['verdict'], origin['verdict'])} suggestion "
                            f"#{origin['suggestion_id']}).")
        e["details"] = _pretty(p.get("args", {}))
    elif kind == "tool_result":
        tool = p.get("tool", "?")
        e["ok"] = bool(p.get("ok", True))
        e["heading"] = f"Result of {tool} (#{it.parent_id})"
        e["summary"], e["tables"] = summarise_result(tool, p.get("summary"), e["ok"])
        e["tool"] = tool
        for path in p.get("artifacts") or []:
            (e["figures"] if path.lower().endswith(FIGURE_SUFFIXES) else e["files"]).append(path)
        e["captions"] = figure_captions(tool, p.get("summary"), len(e["figures"]),
                                        f"{tool}, journal events #{it.parent_id}\u2013#{it.id}",
                                        names)
        e["details"] = _pretty(p.get("summary"))
        if p.get("result_hash"):
            e["hash_note"] = f"result hash {p['result_hash'][:16]}"
    elif kind == "run":
        cfg = p.get("config") or {}
        e["heading"] = "Benchmark run"
        subjects = cfg.get("subjects")
        e["summary"] = (f"config {str(p.get('config_hash', ''))[:12]}: "
                        f"{', '.join(cfg.get('pipelines') or {})} on {cfg.get('dataset')} "
                        f"({cfg.get('evaluation')}, subjects "
                        f"{ranges(subjects) if isinstance(subjects, list) else subjects}, "
                        f"random_state {cfg.get('random_state')})")
        if p.get("results_path"):
            e["files"].append(p["results_path"])
        e["details"] = _pretty({k: p[k] for k in ("config", "protocol", "scores") if k in p})
    elif kind == "note":
        e["heading"] = "Note"
        e["text"] = p.get("text", "")
    elif kind == "error":
        e["heading"] = "Error"
        e["ok"] = False
        e["text"] = (f"{p['type']}: " if p.get("type") else "") + str(p.get("message", ""))
    elif kind == "session_start":
        prov = p.get("provenance") or {}
        pkgs = prov.get("packages") or {}
        if p.get("model"):
            who = (record.describe_ai(f"ai:{p['model']}") if p.get("is_llm") is not False
                   else "the offline rule-based assistant (no LLM)")
        else:
            who = "no assistant"
        e["heading"] = "Session started"
        e["summary"] = (f"{who}; Python {prov.get('python')}, chatbci {pkgs.get('chatbci')}, "
                        f"MNE {pkgs.get('mne')}, MOABB {pkgs.get('moabb')}; "
                        f"{prov.get('platform')}")
    elif kind == "session_end":
        e["heading"] = "Session ended"
        e["summary"] = f"{p.get('reason')} ({p.get('n_events')} events)"
    return e


def transcript_entries(record, curated=False) -> list:
    """Format-neutral transcript entries, in journal order.

    Parameters
    ----------
    record : SessionRecord
    curated : bool
        See :func:`select_items`.

    Returns
    -------
    entries : list of Entry
        Attributes (also readable as ``entry["id"]``): ``id``, ``ts`` (UTC
        text), ``kind``, ``actor``, ``label``
        (``Human (ada)``...), ``role`` (human/ai/offline/system),
        ``parent_id``, ``heading``, ``text`` (prose), ``action`` (the exact
        tool call), ``summary`` (one line), ``details`` (full JSON text or
        None), ``figures`` and ``files`` (workspace-relative paths),
        ``captions`` (one per figure: what it shows, which tool and events
        made it), ``tool`` (for tool results), ``tables`` (``{"title", "columns", "rows"}``), ``ok``; for
        suggestions ``status`` (decided or not), for decisions ``verdict``.
    """
    names = dataset_names(record)
    return [_entry(record, it, names) for it in select_items(record, curated)]
