"""Claims check: the AI's factual claims, checked against the tool results it cites.

After each answer of the assistant, :func:`check_claims` finds its claims about
data and results and checks each against the journal events it cites as
``[tool_name #id]`` (the prompt asks for exactly that citation):

- **numbers**: scores, p-values, effect sizes, standard deviations, counts
  (``n = 6``, ``6 subjects``, ``64 channels``), percentages, frequencies;
- **rankings**: ``X is best``, ``best: X``, ``X outperforms Y``, ``X > Y``,
  ``Y is worse than X``;
- **significance**: ``significant(ly)``, ``not significant``, ``p < 0.05``.

Each claim gets a verdict:

``supported``
    A cited ``tool_result`` (or ``run``) holds it. A number is supported by a
    value that rounds to it at the precision it is written with (``0.78``
    and ``0.782`` both stand for ``0.7815``); ``78.2 %`` and ``0.782`` are
    the same value; a number said to be "about" something gets one unit of
    its last digit of slack; a difference (``0.04 higher``) may be the
    difference of two cited values.
``unsupported``
    Nothing cited shows it: no citation in the claim's sentence or, failing
    that, its paragraph; a citation of an event that is not a tool result or
    run (a suggestion, a message) or of a failed tool result; or a cited
    result without such a value or test.
``contradicted``
    The cited result says otherwise: it gives the named pipeline (or the
    named statistic) another value, another pipeline is best or better, the
    p-values are on the other side of the threshold. A citation of an event
    id that is not in the journal (an invented source) also contradicts.
    An uncited ranking or significance statement is contradicted when the
    tool results of this turn, or a benchmark run that scored both pipelines
    on the same subjects, say otherwise.

Not claims, never flagged (numbers the text did not assert about data):
citation ids and ``#12`` references; list ordinals; identifiers with digits
(``C3``, ``BNCI2014_001``, ``TS+LR-C0.1``, hashes); versions, URLs, DOIs,
paths and inline code; parameter assignments (``C=0.1``, ``alpha = 0.05``);
subject ids (``subject 3``, ``subjects 1, 2``); integer ranges and ranges
with a unit (``subjects 1-6``, ``8-13 Hz``, ``0.5 to 4 s``); Hz/seconds in
a clause about the protocol (band-pass, window, baseline); chance level
(0.5 / 50 %); integers that are not counts of data (``3 pipelines``,
``step 2``, years) -- an integer is a claim only with a statistic label
(``n = 6``), a data noun (``6 subjects``, ``160 epochs``, ``24 channels``,
``128 Hz``) or a percent sign; and numbers that echo what the human wrote
in this turn or a tool argument of this turn (``explore subject 4``), unless
they carry a statistic label (``n = 6``, ``AUC 0.8``). Hedged significance
("marginally significant", "would be significant") and negated rankings are
not checked.

The verdicts travel with the message: :meth:`ClaimsReport.as_payload` goes
into the ``message`` payload as ``claims``; :meth:`ClaimsReport.feedback` is
the note the session sends back to the model once; :func:`mark_claims` and
:meth:`ClaimsReport.notes` show them to the human.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "LEGEND", "MARKS", "VERDICTS", "Claim", "ClaimsReport", "Evidence",
           "check_claims", "mark_claims"]

VERDICTS = ("supported", "unsupported", "contradicted")
KINDS = ("number", "ranking", "significance")
#: Plain-text marks after a flagged claim (terminal, transcript, panel).
MARKS = {"unsupported": "[?]", "contradicted": "[!]"}
LEGEND = ("[?] not supported by a cited tool result; [!] contradicted by the journal "
          "(chatbci claims check)")
#: Version of the ``claims`` payload.
PAYLOAD_VERSION = 1
#: Significance level when a claim states none.
ALPHA = 0.05

_MAX_TEXT = 20000
_MAX_CLAIMS = 200
_MAX_LEAVES = 5000

# ---------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Evidence:
    """Where in the journal a verdict comes from.

    Attributes
    ----------
    event_id : int
    path : str
        The value's place in the event payload, e.g.
        ``summary.scores.TS+LR.mean`` or ``summary.comparisons[0].best``.
    value : Any
        The value found there (a number, a pipeline name, a p-value).
    """

    event_id: int
    path: str
    value: Any

    def as_dict(self) -> dict:
        return {"event_id": self.event_id, "path": self.path, "value": self.value}


@dataclass(frozen=True)
class Claim:
    """One factual claim of a message and its verdict.

    Attributes
    ----------
    text : str
        The claim as written (``0.81``, ``78.5 %``, ``p = 0.03``,
        ``TS+LR outperforms MDM``, ``not significant``).
    start, end : int
        Its offsets in the message text (``text == message[start:end]``).
    kind : {"number", "ranking", "significance"}
    value : float | dict
        A number as written (``78.5`` for ``78.5 %``); a ranking
        ``{"best": X}`` or ``{"better": X, "worse": Y}``; significance
        ``{"significant": bool, "alpha": float}``.
    cited : tuple of int
        The event ids it rests on (its sentence's citations, else its
        paragraph's).
    verdict : {"supported", "unsupported", "contradicted"}
    reason : str
        Why, in a sentence (what the cited event says).
    evidence : Evidence | None
        The value that supports or contradicts it.
    quantity : str | None
        What the number is read as (``score``, ``p``, ``n``, ``sd``,
        ``effect``, ``hz``...), when the text says.
    context : str
        The clause around the claim (for feedback and reports).
    """

    text: str
    start: int
    end: int
    kind: str
    value: Any
    cited: tuple = ()
    verdict: str = "unsupported"
    reason: str = ""
    evidence: Evidence | None = None
    quantity: str | None = None
    context: str = ""

    @property
    def mark(self) -> str:
        """``[?]`` (unsupported), ``[!]`` (contradicted) or ``""``."""
        return MARKS.get(self.verdict, "")

    def as_dict(self) -> dict:
        return {"text": self.text, "start": self.start, "end": self.end, "kind": self.kind,
                "value": self.value, "cited": list(self.cited), "verdict": self.verdict,
                "reason": self.reason,
                "evidence": self.evidence.as_dict() if self.evidence else None,
                "quantity": self.quantity, "context": self.context}

    @classmethod
    def from_dict(cls, d) -> Claim:
        ev = d.get("evidence")
        return cls(text=str(d.get("text", "")), start=int(d.get("start", 0)),
                   end=int(d.get("end", 0)), kind=str(d.get("kind", "number")),
                   value=d.get("value"), cited=tuple(d.get("cited") or ()),
                   verdict=str(d.get("verdict", "unsupported")), reason=str(d.get("reason", "")),
                   evidence=Evidence(ev["event_id"], ev["path"], ev.get("value"))
                   if isinstance(ev, dict) else None,
                   quantity=d.get("quantity"), context=str(d.get("context", "")))


@dataclass(frozen=True)
class ClaimsReport:
    """The claims of one message and their verdicts (see the module docstring).

    Attributes
    ----------
    claims : tuple of Claim
        In text order.
    """

    claims: tuple = ()

    @property
    def counts(self) -> dict:
        """``{"supported": n, "unsupported": n, "contradicted": n}``."""
        out = {v: 0 for v in VERDICTS}
        for c in self.claims:
            out[c.verdict] = out.get(c.verdict, 0) + 1
        return out

    @property
    def flagged(self) -> list:
        """The unsupported and contradicted claims."""
        return [c for c in self.claims if c.verdict != "supported"]

    @property
    def ok(self) -> bool:
        """True when no claim is unsupported or contradicted."""
        return not self.flagged

    def as_payload(self) -> dict:
        """JSON for the ``message`` payload's ``claims`` field.

        ``{"version": 1, "counts": {verdict: n}, "claims": [claim, ...]}``,
        each claim as in :meth:`Claim.as_dict` (``text``, ``start``, ``end``,
        ``kind``, ``value``, ``cited``, ``verdict``, ``reason``, ``evidence``
        ``{event_id, path, value}`` or null, ``quantity``, ``context``).
        """
        return {"version": PAYLOAD_VERSION, "counts": self.counts,
                "claims": [c.as_dict() for c in self.claims]}

    @classmethod
    def from_payload(cls, payload) -> ClaimsReport | None:
        """The report journaled with a message (``payload["claims"]``), or None.

        Accepts the ``claims`` dict itself or a whole ``message`` payload.
        """
        if not isinstance(payload, dict):
            return None
        if "claims" in payload and not isinstance(payload.get("claims"), list):
            payload = payload["claims"]
        if not isinstance(payload, dict) or not isinstance(payload.get("claims"), list):
            return None
        return cls(tuple(Claim.from_dict(c) for c in payload["claims"] if isinstance(c, dict)))

    @classmethod
    def from_events(cls, events) -> ClaimsReport | None:
        """The report of the last AI message among ``events`` (a turn's), or None."""
        for ev in reversed(list(events)):
            if ev.kind == "message" and str(ev.actor).startswith("ai:"):
                return cls.from_payload(ev.payload)
        return None

    def feedback(self, max_items=8) -> str | None:
        """The note for the model about its flagged claims, or None if there are none.

        One line per claim (``your claim '0.81' is not supported by
        show_results #37: ...``), then what to do. Sent to the model once,
        as data from chatbci, not as the human's words.
        """
        flagged = self.flagged
        if not flagged:
            return None
        lines = [f"[chatbci claims check of your last answer: {len(flagged)} of "
                 f"{len(self.claims)} claims are not backed by the tool results you cite.]"]
        for c in flagged[:max_items]:
            where = f" (in \"{c.context}\")" if c.context and c.context != c.text else ""
            verb = "is contradicted" if c.verdict == "contradicted" else "is not supported"
            by = (" by " + ", ".join(f"#{i}" for i in c.cited)) if c.cited else ""
            lines.append(f"- your claim '{c.text}'{where} {verb}{by}: {c.reason}")
        if len(flagged) > max_items:
            lines.append(f"- ... and {len(flagged) - max_items} more.")
        lines.append("Answer the human again, in full: correct or remove these claims, or "
                     "run a tool to check them, and cite each claim's tool result as "
                     "[tool_name #event_id].")
        return "\n".join(lines)

    def notes(self) -> list:
        """Plain-text lines for a terminal: a count, one line per flagged claim, the legend.

        Empty when there are no claims. Control characters are removed.
        """
        if not self.claims:
            return []
        c = self.counts
        head = f"claims check: {c['supported']} supported"
        if self.ok:
            return [_plain(head + " (every claim is backed by a cited tool result)")]
        head += f", {c['unsupported']} unsupported, {c['contradicted']} contradicted"
        lines = [head]
        for cl in self.flagged:
            lines.append(f"{cl.mark} {cl.text}: {cl.reason}")
        lines.append(LEGEND)
        return [_plain(line) for line in lines]


def _plain(text) -> str:
    return re.sub(r"[\x00-\x1f\x7f-\x9f]+", " ", str(text))


def mark_claims(text, report, *, legend=True) -> str:
    """``text`` with ``[?]`` after unsupported and ``[!]`` after contradicted claims.

    Parameters
    ----------
    text : str
        The message text the report was made from (as journaled).
    report : ClaimsReport | dict | None
        A report, or a ``message`` payload / ``claims`` payload holding one.
    legend : bool
        Add a one-line legend at the end when anything was marked.

    Returns
    -------
    str
        Unchanged when nothing is flagged. A claim whose offsets no longer
        match the text (an edited or anonymised copy) is found by its text
        nearest to where it was; if it is not found it is not marked.
    """
    if not isinstance(report, ClaimsReport):
        report = ClaimsReport.from_payload(report)
    if report is None or not report.flagged:
        return text
    inserts = []
    for c in report.flagged:
        end = _locate(text, c)
        if end is not None:
            inserts.append((end, c.mark))
    if not inserts:
        return text
    out = text
    for end, mark in sorted(set(inserts), reverse=True):
        out = out[:end] + mark + out[end:]
    if legend:
        out = out.rstrip() + "\n\n" + LEGEND
    return out


def _locate(text, claim):
    if 0 <= claim.start <= claim.end <= len(text) and text[claim.start:claim.end] == claim.text:
        return claim.end
    if not claim.text:
        return None
    hits = [m.start() for m in re.finditer(re.escape(claim.text), text)]
    if not hits:
        return None
    best = min(hits, key=lambda h: abs(h - claim.start))
    return best + len(claim.text)


# ---------------------------------------------------------------------------
# The cited events, flattened


@dataclass(frozen=True)
class _Leaf:
    path: str
    keys: tuple  # lower-case dict keys on the way (list items: "<key>[]")
    value: Any
    labels: frozenset  # lower-case path keys and sibling strings (pipeline, dataset...)


@dataclass
class _Source:
    event_id: int
    name: str  # "show_results #37", "run #19"
    payload: Any
    leaves: list = field(default_factory=list)

    @property
    def numbers(self):
        return [lf for lf in self.leaves if _is_num(lf.value)]


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _flatten(obj, path, keys, out):
    if len(out) >= _MAX_LEAVES:
        return
    if isinstance(obj, dict):
        siblings = frozenset(str(v).lower() for v in obj.values() if isinstance(v, str))
        for k, v in obj.items():
            sub = f"{path}.{k}" if path else str(k)
            kk = keys + (str(k).lower(),)
            if isinstance(v, (dict, list)):
                _flatten(v, sub, kk, out)
            else:
                out.append(_Leaf(sub, kk, v, frozenset(kk) | siblings))
            if isinstance(v, list):
                out.append(_Leaf(f"len({sub})", kk[:-1] + (f"len({k})".lower(),), len(v),
                                 frozenset(kk)))
    elif isinstance(obj, list):
        item_keys = keys[:-1] + (f"{keys[-1]}[]",) if keys else ("[]",)
        for i, v in enumerate(obj):
            sub = f"{path}[{i}]"
            if isinstance(v, (dict, list)):
                _flatten(v, sub, keys, out)
            else:
                out.append(_Leaf(sub, item_keys, v, frozenset(keys)))


def _source(ev) -> _Source:
    p = ev.payload
    if ev.kind == "run":
        body = {k: v for k, v in p.items() if k != "pipelines"}
        dataset = (p.get("config") or {}).get("dataset")
        src = _Source(ev.id, f"run #{ev.id}" + (f" ({dataset})" if dataset else ""), body)
        _flatten(body, "", (), src.leaves)
    else:
        src = _Source(ev.id, f"{p.get('tool', 'tool')} #{ev.id}", p.get("summary"))
        _flatten(p.get("summary"), "summary", ("summary",), src.leaves)
    return src


def _groups(payload, path="summary"):
    """Score groups in a payload: ``{"path", "means": {name: (mean, path)}, "best",
    "pairs": [(better, worse, path, p)]}`` (benchmark scores, result rows, comparisons)."""
    out = []

    def walk(obj, where):
        if isinstance(obj, dict):
            scores = obj.get("scores")
            if isinstance(scores, dict) and any(isinstance(s, dict) and _is_num(s.get("mean"))
                                                for s in scores.values()):
                g = {"path": where, "means": {}, "best": None, "pairs": []}
                for name, s in scores.items():
                    if isinstance(s, dict) and _is_num(s.get("mean")):
                        g["means"][str(name)] = (s["mean"], f"{where}.scores.{name}.mean")
                if isinstance(obj.get("best"), str):
                    g["best"] = (obj["best"], f"{where}.best")
                out.append(g)
            vs = obj.get("vs_best")
            if isinstance(obj.get("best"), str) and isinstance(vs, list):
                g = {"path": where, "means": {}, "best": (obj["best"], f"{where}.best"),
                     "pairs": []}
                if _is_num(obj.get("best_mean")):
                    g["means"][obj["best"]] = (obj["best_mean"], f"{where}.best_mean")
                for i, pair in enumerate(vs):
                    if isinstance(pair, dict) and pair.get("better") and pair.get("worse"):
                        g["pairs"].append((str(pair["better"]), str(pair["worse"]),
                                           f"{where}.vs_best[{i}]", pair.get("p")))
                out.append(g)
            for k, v in obj.items():
                if k != "scores" and isinstance(v, (dict, list)):
                    walk(v, f"{where}.{k}")
        elif isinstance(obj, list):
            rows = {}
            for i, row in enumerate(obj):
                if isinstance(row, dict) and isinstance(row.get("pipeline"), str) \
                        and _is_num(row.get("mean")):
                    key = (row.get("dataset"), row.get("evaluation"))
                    g = rows.setdefault(key, {"path": where, "means": {}, "best": None,
                                              "pairs": []})
                    g["means"][row["pipeline"]] = (row["mean"], f"{where}[{i}].mean")
                elif isinstance(row, (dict, list)):
                    walk(row, f"{where}[{i}]")
            out.extend(rows.values())

    walk(payload, path)
    return out


# ---------------------------------------------------------------------------
# Reading the text

_CITE = re.compile(r"\[([^\[\]\n]{0,200}?#\d+[^\[\]\n]{0,200}?)\]"
                   r"|\(\s*(?:see\s+)?([a-z_]+\s+#\d+(?:\s*[,;]\s*(?:[a-z_]+\s+)?#\d+)*)\s*\)")
_CITE_ID = re.compile(r"(?:\b([A-Za-z_]\w*)\s*)?#(\d+)")
_MASKS = [
    re.compile(r"```.*?(?:```|$)", re.S),  # code blocks
    re.compile(r"`[^`\n]*`"),  # inline code
    re.compile(r"\]\([^)\s]*\)"),  # markdown link targets
    re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+|\b[\w.-]+:\d{2,5}\b"),
    re.compile(r"\b10\.\d{4,9}/\S+"),  # DOIs
    re.compile(r"\b[\w.-]+@[\w.-]+\.\w+"),  # e-mail
    re.compile(r"(?<![\w.])v?\d+(?:\.\d+){2,}(?![\w.]*\d)"),  # versions 1.7.2
    re.compile(r"#\d+"),  # event / suggestion ids
    re.compile(r"(?m)^[ \t]*(?:[-*+][ \t]+)?\d+[.)](?=[ \t])"),  # list ordinals
    re.compile(r"\b[\w-]*(?:/[\w.-]+)+"),  # paths
]
_NUM = re.compile(
    r"(?<![\w.#/\\^])(?P<sign>[-\u2212]?)"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE](?P<exp>[-+]?\d+))?"
    r"(?P<pct>\s?(?:%|percent\b|per\s?cent\b))?")
_UNIT_AFTER = re.compile(r"(?:Hz|dB|ms|s|pp|x)\b")
_RANGE_SEP = re.compile(r"^\s*(?:-|\u2013|\u2014|to)\s*$")
_UNIT_RANGE = re.compile(r"^\s*(?:Hz|ms|s|sec|seconds?|dB)\b")
_SUBJECT_IDS = re.compile(r"\b(?:subjects?|participants?|patients?)"
                          r"(?:\s+(?:#|no\.?|number|id)?\s*\d+\s*(?:,|and|&|or)?)*"
                          r"\s*(?:#|no\.?)?\s*$", re.I)
_PARAM = re.compile(r"\b([A-Za-z_][\w]*)\s*=\s*$")
_STAT_NAMES = {"p", "n", "g", "d", "t", "r", "f", "w", "z", "u", "sd", "se", "sem", "smd",
               "auc", "acc", "accuracy", "mean", "score", "kappa", "ci", "std", "roc_auc"}
_SOFTWARE = re.compile(r"\b(?:version|v|python|moabb|mne|pyriemann|scikit-learn|sklearn|numpy|"
                       r"scipy|chatbci|braindecode|torch|pandas)\s*$", re.I)
_PROTOCOL = re.compile(r"band-?pass|filter|window|interval|baseline|tmin|tmax|resampl|"
                       r"epoch(?:s|ed)? (?:from|of)|cut-?off", re.I)
_LIST_OR_TABLE = re.compile(r"^(?:[ \t]*(?:\||[-*+][ \t]|\d+[.)][ \t])[^\n]*(?:\n|$))+$")
_CHANCE = re.compile(r"\bchance\b", re.I)
_APPROX = re.compile(r"(?:\babout|\baround|\broughly|\bapproximately|\bapprox\.?|\bnearly|"
                     r"\balmost|\bclose to|~|\u2248|\u223c)\s*$", re.I)
_DIFF_WORDS = re.compile(r"\b(?:higher|lower|more|less|better|worse|above|below|difference|"
                         r"differs?|gap|margin|ahead|behind|improv\w*|gain\w*|drop\w*|"
                         r"points?|pp|increase\w*|decrease\w*|outperform\w*|beat\w*|"
                         r"exceed\w*|surpass\w*)\b", re.I)

_LABELS = [  # (quantity, regex on the text just before the number); the first match wins
    # "min p = 0.0625", "the smallest attainable p-value is 0.125": what n allows, not a result
    ("min_p", re.compile(r"\b(?:min(?:imum)?|smallest|lowest)\s+(?:(?:attainable|possible|"
                         r"achievable|reachable)\s+)?p(?:[- ]?val(?:ue)?s?)?\s*"
                         r"(?:=|:|of|was|is|equals?)?\s*$", re.I)),
    ("p", re.compile(r"\bp(?:[- ]?val(?:ue)?s?)?\s*(?:=|:|of|was|is|equals?)?\s*$", re.I)),
    ("n", re.compile(r"\bn\s*(?:=|:)\s*$", re.I)),
    ("sd", re.compile(r"(?:\u00b1|\+/-|\+-|\bsds?\b|\bs\.d\.|\bstd\b|standard deviation)"
                      r"\s*(?:=|:|of|was|is)?\s*$", re.I)),
    ("effect", re.compile(r"(?:\bsmd\b|effect size|hedges'?\s*g|cohen'?s\s*d|\bg\b|\bd\b)"
                          r"\s*(?:=|:|of|was|is)?\s*$", re.I)),
    ("score", re.compile(r"(?:\bauc\b|roc[_ -]?auc|accuracy|\bacc\b|\bscored?\b|\bscores\b|"
                         r"\bmeans?\b|\bkappa\b|\baverag\w*)\s*(?:\w+\s+)?"
                         r"(?:=|:|of|was|is|at|reached|reaches)?\s*"
                         r"(?:about|around|roughly|approximately|~|\u2248)?\s*$", re.I)),
]
# Up to two words between a count and its noun ("64 EEG channels"), not a preposition
# or another noun ("3 pipelines on 6 subjects": 3 counts pipelines).
_W = r"(?:(?!(?:on|of|in|for|from|with|at|by|and|or|to|per|pipelines?|decoders?|models?|" \
     r"runs?|steps?|tools?)\b)[\w-]+\s+)"
_NOUNS = [  # (quantity, regex on the text just after the number)
    ("n", re.compile(rf"^\s*{_W}{{0,2}}?(?:subjects?|participants?|patients?)\b", re.I)),
    ("epochs", re.compile(rf"^\s*{_W}{{0,2}}?(?:epochs?|trials?)\b", re.I)),
    ("channels", re.compile(rf"^\s*{_W}{{0,2}}?(?:channels?|electrodes?)\b", re.I)),
    ("sessions", re.compile(rf"^\s*{_W}?sessions?\b", re.I)),
    ("datasets", re.compile(rf"^\s*{_W}{{0,2}}?datasets?\b", re.I)),
    ("classes", re.compile(rf"^\s*{_W}?classes\b", re.I)),
    ("folds", re.compile(rf"^\s*{_W}?folds\b", re.I)),
    ("hz", re.compile(r"^\s*Hz\b")),
    ("points", re.compile(r"^\s*(?:percentage[ -])?(?:points?|pp)\b", re.I)),
]
_QUANTITY_KEYS = {
    "p": re.compile(r"^(?:p|p_?val(?:ue)?|pvalue|vs_best_p|p_adj\w*|p_corr\w*)$"),
    "min_p": re.compile(r"^(?:min_p|min_p_value|smallest_p)$"),
    "n": re.compile(r"^(?:n|n_subjects|n_participants|subjects|len\(subjects\))$"),
    "sd": re.compile(r"^(?:sd|std|vs_best_sd)$"),
    "effect": re.compile(r"^(?:smd|vs_best_smd|effect_size|hedges_g|g|cohen_d|d)$"),
    "score": re.compile(r"^(?:mean|best_mean|auc|score|accuracy|roc_auc)$"),
    "epochs": re.compile(r"^(?:n_epochs|n_trials|epochs|trials)$"),
    "channels": re.compile(r"^(?:n_channels|channels|len\(channels\))$"),
    "sessions": re.compile(r"^(?:n_sessions|sessions)$"),
    "datasets": re.compile(r"^(?:n_datasets|len\(datasets\))$"),
    "classes": re.compile(r"^(?:n_classes|len\(classes\))$"),
    "folds": re.compile(r"^(?:n_folds|folds)$"),
    "hz": re.compile(r"^(?:sfreq|frequency_hz|\w*_hz|fmin|fmax|hz)$"),
}
_ANY_KEY = {"score", "epochs"}  # matched on any key of the path (auc.C3.mu, n_epochs.left)
_QUANTITY_WORDS = {"p": "p-value", "min_p": "smallest attainable p-value",
                   "n": "number of subjects", "sd": "sd", "effect": "effect size",
                   "score": "score", "epochs": "number of epochs", "channels": "channels",
                   "sessions": "sessions", "datasets": "datasets", "classes": "classes",
                   "folds": "folds", "hz": "frequency"}

_NEGATION = re.compile(r"\b(?:not|no|none|neither|nor|never|without|cannot|lacks?|lacked|"
                       r"fail(?:s|ed)?\s+to)\b|n't\b", re.I)
_UNIVERSAL_NEG = re.compile(r"\b(?:no|none|neither|nor|never)\b|\bnot\s+(?:any|one)\b", re.I)
_SIG = re.compile(r"\b(?:statistically\s+)?(?P<neg>non-?|in)?significan(?:t|tly|ce)\b", re.I)
_SIG_NOT_CLAIM = re.compile(r"^\s*(?:level|threshold|tests?|testing|criterion|cut-?off)\b",
                            re.I)
_SIG_HEDGE = re.compile(r"(?:\b(?:marginal(?:ly)?|approach\w*|trend\w*|borderline|would|"
                        r"could|might|may|whether|if|to\s+be|to\s+become|for\s+a|reach\s+a)"
                        r"\s+(?:\w+\s+){0,2})$", re.I)
_P_THRESHOLD = re.compile(r"\bp\s*(?P<op><=|>=|<|>|\u2264|\u2265)\s*"
                          r"(?P<t>0?\.\d+|\d(?:\.\d+)?[eE]-?\d+|1(?:\.0+)?)", re.I)

_BETTER = (r"(?:outperform(?:s|ed)?|beat(?:s)?|exceed(?:s|ed)?|surpass(?:es|ed)?|"
           r"(?:edges?|edged)\s+out|"
           r"(?:is|was|are|were|did|does|do|performs?|performed|scored?|scores|ranks?|ranked|"
           r"came\s+out|comes\s+out)\s+(?:\w+\s+){0,2}?(?:better|higher)\s+than|"
           r"(?:better|higher)\s+than|(?:is|was)\s+ahead\s+of|>|\u226b)")
_WORSE = (r"(?:underperform(?:s|ed)?|trail(?:s|ed)?|(?:falls?|fell|lags?|lagged)\s+behind|"
          r"(?:is|was|are|were|did|does|do|performs?|performed|scored?|scores|ranks?|ranked)"
          r"\s+(?:\w+\s+){0,2}?(?:worse|lower)\s+than|(?:worse|lower)\s+than|<|\u226a|"
          r"(?:is|was)\s+behind)")
_PASSIVE = r"(?:is|was|are|were)\s+(?:\w+\s+)?(?:outperformed|beaten|surpassed|exceeded)\s+by"
_ADVS = r"(?:\s*(?:clearly|slightly|significantly|consistently|also|still|marginally|" \
        r"substantially|statistically|narrowly|far|much|considerably|again|easily|only),?)*"
_BETWEEN_BETTER = re.compile(rf"^\s*(?:\([^()]{{0,80}}\))?\s*,?{_ADVS}\s*{_BETTER}"
                             rf"\s+(?:the\s+|both\s+|all\s+)?$", re.I)
_BETWEEN_WORSE = re.compile(rf"^\s*(?:\([^()]{{0,80}}\))?\s*,?{_ADVS}\s*{_WORSE}"
                            rf"\s+(?:the\s+)?$", re.I)
_BETWEEN_PASSIVE = re.compile(rf"^\s*(?:\([^()]{{0,80}}\))?\s*,?{_ADVS}\s*{_PASSIVE}"
                              rf"\s+(?:the\s+)?$", re.I)
_BEST_AFTER = re.compile(
    r"^\s*(?:\([^()]{0,80}\))?\s*,?\s*(?:(?:is|was|remains|remained|stays|stayed|came\s+out\s+as|"
    r"comes\s+out\s+as|emerged\s+as|emerges\s+as|looks\s+like)\s+(?:clearly\s+|still\s+|again\s+)?"
    r"(?:the\s+)?(?:best|top|strongest|winner|winning|highest[- ]scoring)\b|"
    r"(?:performs?|performed|did|does|scored?|scores|works?|worked|ranks?|ranked|comes?|came)\s+"
    r"(?:the\s+)?(?:best|highest|first)\b|"
    r"(?:had|has|got|gets|achieved|achieves|reached|reaches|obtained|obtains)\s+the\s+"
    r"(?:best|highest|top)\b|"
    r"(?:(?:comes?|came)\s+out|is|was|ends?\s+up|ended\s+up|stays?|stayed)\s+on\s+top\b|"
    r"(?:wins|won|tops|topped)\b(?!['\u2019]))", re.I)
_BEST_BEFORE = re.compile(
    r"(?:^|[^\w-])(?P<w>best|top|winning|strongest|highest[- ]scoring)"
    # "the best pipeline is X", also with qualifiers: "the best left vs right hand
    # motor-imagery decoder is X" (a real 0.5B model's final answer).
    r"(?:\s+(?:[\w/+-]+\s+){0,6}?(?:pipeline|decoder|model|method|classifier|performer|"
    r"result|one|score|approach|option|choice)s?)?"
    r"(?:\s+(?:overall|so\s+far|here|was|is))?\s*(?::|=|-|\u2013|\u2014|,)?\s*(?:is\s+|was\s+)?"
    r"(?:the\s+)?$", re.I)
_NOT_FIRST = re.compile(r"\b(?:second|third|next|runner|not|n't|never)\b[\s-]*(?:the\s+)?$", re.I)


def _spans(pattern, text):
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


def _inside(pos, spans):
    return any(s <= pos < e for s, e in spans)


def _segments(text):
    """Paragraph and sentence spans: ``[(p_start, p_end, [(s_start, s_end), ...])]``."""
    out, paras, start = [], [], 0
    for m in re.finditer(r"\n[ \t]*(?:\n[ \t]*)+", text):
        paras.append((start, m.start()))
        start = m.end()
    paras.append((start, len(text)))
    for ps, pe in paras:
        if not text[ps:pe].strip():
            continue
        sents = []
        start = ps
        # Sentence ends: . ! ? followed by space and not an abbreviation; line breaks.
        for m in re.finditer(r"(?<=[.!?])\s+|\n", text[ps:pe]):
            end = ps + m.start()
            before = text[max(ps, end - 6):end].lower()
            if m.group() != "\n" and re.search(r"(?:\be\.g|\bi\.e|\bvs|\bcf|\bapprox|\bfig|"
                                               r"\bet al|\bno|\bresp)\.$", before):
                continue
            sents.append((start, end))
            start = ps + m.end()
        sents.append((start, pe))
        merged = []
        for s, e in sents:
            chunk = text[s:e]
            # A sentence of only citations / punctuation belongs to the one before.
            if merged and not re.sub(_CITE.pattern, "", chunk).strip(" .,;:!?\t"):
                merged[-1] = (merged[-1][0], e)
            elif chunk.strip():
                merged.append((s, e))
        out.append((ps, pe, merged))
    return out


def _clauses(text, s, e):
    """Clause spans of a sentence: split at ; and , outside parentheses, and at 'but'."""
    out, depth, start = [], 0, s
    i = s
    while i < e:
        ch = text[i]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif depth == 0 and (ch == ";" or (ch == "," and not text[i + 1:i + 2].isdigit())):
            out.append((start, i))
            start = i + 1
        elif depth == 0 and re.match(r"\s(?:but|whereas|while|although|though)\s",
                                     text[i:i + 11], re.I):
            out.append((start, i))
            start = i + 1
        i += 1
    out.append((start, e))
    return [(a, b) for a, b in out if text[a:b].strip()]


# ---------------------------------------------------------------------------
# Numbers


@dataclass
class _Num:
    value: float  # as written (78.5 for 78.5 %), sign kept
    decimals: int
    percent: bool
    signed: bool
    approx: bool


def _parse(m) -> _Num:
    raw = m.group("num").replace(",", "")
    decimals = len(raw.split(".")[1]) if "." in raw else 0
    value = float(raw)
    if m.group("exp"):
        exp = int(m.group("exp")[:6])
        value = float(f"{raw}e{exp}")  # inf when out of range: then not a claim
        decimals = max(0, decimals - exp)
    signed = bool(m.group("sign"))
    if signed:
        value = -value
    return _Num(value, decimals, bool(m.group("pct")), signed, False)


def _close(num: _Num, v) -> bool:
    if not _is_num(v):
        return False
    tol = (1.0 if num.approx else 0.5) * 10 ** -num.decimals + 1e-9 * max(1.0, abs(num.value))
    cands = [v]
    if num.percent and abs(v) <= 1:
        cands.append(v * 100)
    for c in cands:
        c = c if num.signed else abs(c)
        if abs(c - num.value) <= tol:
            return True
    return False


def _numbers_in(value, out):
    if _is_num(value):
        out.add(round(float(value), 9))
    elif isinstance(value, str):
        for m in re.finditer(r"\d+(?:\.\d+)?", value):
            out.add(round(float(m.group()), 9))
    elif isinstance(value, dict):
        for v in value.values():
            _numbers_in(v, out)
    elif isinstance(value, list):
        for v in value:
            _numbers_in(v, out)
    return out


# ---------------------------------------------------------------------------
# The checker


class _Checker:
    def __init__(self, text, journal, turn_events, alpha):
        self.text = text
        self.journal = journal
        self.alpha = alpha
        self._words, self._words_at = set(), None
        self._names = set()
        self.head = journal.head()[0]
        self._events = {}
        if turn_events is None:
            humans = journal.events(kind="message", actor="human", limit=1)
            turn_events = journal.events(since=humans[-1].id - 1) if humans else []
        self.turn_events = list(turn_events)
        self.echoes = set()
        for ev in self.turn_events:
            p = ev.payload
            if ev.kind == "message" and str(ev.actor).startswith("human:"):
                _numbers_in(p.get("text", ""), self.echoes)
            elif ev.kind == "tool_call":
                _numbers_in(p.get("args", {}), self.echoes)
            elif ev.kind in ("suggestion", "decision") and isinstance(p.get("action"), dict):
                _numbers_in(p["action"].get("args", {}), self.echoes)
        self.turn_sources = [self._resolve(ev.id)[0] for ev in self.turn_events
                             if ev.kind == "tool_result" and ev.payload.get("ok", True)]
        self.turn_sources = [s for s in self.turn_sources if s is not None]
        names = set()
        try:
            from .offline import CANONICAL
            names.update(CANONICAL)
        except ImportError:  # pragma: no cover
            pass
        self._runs = journal.events(kind="run", limit=50)
        for ev in self._runs:
            scores = ev.payload.get("scores")
            if isinstance(scores, dict):
                names.update(map(str, scores))
        for src in self.turn_sources:
            names.update(self._names_of(src))
        for m in _CITE.finditer(text):
            for cm in _CITE_ID.finditer(m.group(1) or m.group(2)):
                src, _ = self._resolve(int(cm.group(2)))
                if src is not None:
                    names.update(self._names_of(src))
        self.names = sorted((n for n in names if n and len(n) <= 60), key=len, reverse=True)

    # -- journal -----------------------------------------------------------------------

    def _resolve(self, event_id):
        """``(source, problem)``: a usable cited event, or why not (verdict, reason)."""
        if event_id in self._events:
            return self._events[event_id]
        try:
            ev = self.journal.get(event_id) if 0 < event_id <= self.head else None
        except KeyError:
            ev = None
        if ev is None:
            out = (None, ("contradicted", f"#{event_id} is not in the journal (it has "
                                          f"{self.head} events): the citation points nowhere"))
        elif ev.kind not in ("tool_result", "run"):
            what = {"message": "a message", "suggestion": "a suggestion (a proposal, not a "
                    "result)", "decision": "a human decision", "tool_call": "a tool call "
                    "(cite its result)", "note": "a note", "error": "an error"}.get(
                ev.kind, f"a {ev.kind} event")
            out = (None, ("unsupported", f"#{event_id} is {what}, not a tool result"))
        elif ev.kind == "tool_result" and not ev.payload.get("ok", True):
            out = (None, ("unsupported", f"#{event_id} is a failed "
                                         f"{ev.payload.get('tool', 'tool')} call"))
        else:
            out = (_source(ev), None)
        self._events[event_id] = out
        return out

    @staticmethod
    def _names_of(src):
        names = set()
        for lf in src.leaves:
            if isinstance(lf.value, str) and lf.keys and lf.keys[-1] in (
                    "pipeline", "best", "better", "worse"):
                names.add(lf.value)
        for g in _groups(src.payload):
            names.update(g["means"])
        return names

    # -- the text ------------------------------------------------------------------------

    def run(self) -> ClaimsReport:
        text = self.text
        masks = [sp for pat in _MASKS for sp in _spans(pat, text)]
        cites = []  # (start, end, [ids])
        for m in _CITE.finditer(text):
            ids = [int(c.group(2)) for c in _CITE_ID.finditer(m.group(1) or m.group(2))]
            cites.append((m.start(), m.end(), ids))
            masks.append((m.start(), m.end()))
        name_re = (re.compile(r"(?<![\w+\-.])(?:" + "|".join(map(re.escape, self.names))
                              + r")(?![\w+\-]|\.\d)", re.I) if self.names else None)
        claims = []
        prev_ids = []
        for ps, pe, sentences in _segments(text):
            para_ids = [i for s, e, ids in cites if ps <= s < pe for i in ids]
            if not para_ids and _LIST_OR_TABLE.match(text[ps:pe]):
                para_ids = prev_ids  # "Results [show_results #37]:" then a list or table
            prev_ids = para_ids
            for ss, se in sentences:
                ids = [i for s, e, ids_ in cites if ss <= s < se for i in ids_]
                cited = tuple(dict.fromkeys(ids or para_ids))
                for cs, ce in _clauses(text, ss, se):
                    mentions = ([(m.start(), m.end(), self._canon(m.group()))
                                 for m in name_re.finditer(text, cs, ce)
                                 if not _inside(m.start(), masks)] if name_re else [])
                    taken = []
                    self._names = {m[2].lower() for m in mentions}
                    claims += self._significance(cs, ce, mentions, masks, cited, taken)
                    claims += self._rankings(cs, ce, mentions, masks, cited)
                    claims += self._numbers(cs, ce, mentions, masks + taken, cited,
                                            _MAX_CLAIMS - len(claims))
                if len(claims) >= _MAX_CLAIMS:
                    break
        claims.sort(key=lambda c: (c.start, c.end))
        return ClaimsReport(tuple(claims[:_MAX_CLAIMS]))

    def _canon(self, name):
        low = name.lower()
        return next((n for n in self.names if n.lower() == low), name)

    def _context(self, cs, ce, s, e):
        """The clause of a claim at ``s:e``, without citations; at most ~140 characters
        around the claim."""
        a, b = (cs, ce) if ce - cs <= 160 else (max(cs, s - 70), min(ce, e + 70))
        ctx = " ".join(_CITE.sub("", self.text[a:b]).split()).strip(" ,;")
        return ("\u2026" if a > cs else "") + ctx + ("\u2026" if b < ce else "")

    def _clause_words(self, cs, ce):
        if self._words_at != (cs, ce):
            self._words_at = (cs, ce)
            self._words = {w.lower() for w in re.findall(r"[A-Za-z]\w*", self.text[cs:ce])} \
                - {"the", "a", "an", "of", "at", "in", "is", "was", "and", "for", "with", "on"}
        return self._words

    def _sources(self, cited):
        """Usable sources of the cited ids, and the problems of the others."""
        sources, problems = [], []
        for i in cited:
            src, problem = self._resolve(i)
            if src is not None:
                sources.append(src)
            else:
                problems.append(problem)
        return sources, problems

    def _claim(self, s, e, kind, value, cited, verdict, reason, evidence=None, quantity=None,
               context=""):
        return Claim(self.text[s:e], s, e, kind, value, tuple(cited), verdict, reason,
                     evidence, quantity, context)

    def _no_sources(self, cited, problems):
        if not cited:
            return "unsupported", "no citation in its sentence or paragraph"
        if any(v == "contradicted" for v, _ in problems):
            return "contradicted", "; ".join(r for _, r in problems)
        return "unsupported", "; ".join(r for _, r in problems)

    # -- numbers --------------------------------------------------------------------------

    def _numbers(self, cs, ce, mentions, masks, cited, budget):
        text = self.text
        out = []
        found = [m for m in _NUM.finditer(text, cs, ce) if not _inside(m.start("num"), masks)]
        skip = set()
        for a, b in zip(found, found[1:]):
            between = text[a.end():b.start()]
            if _RANGE_SEP.match(between) and not a.group("pct"):
                both_int = "." not in a.group("num") and "." not in b.group("num")
                if both_int or _UNIT_RANGE.match(text[b.end():]):
                    skip.update({a.start(), b.start()})
        clause = text[cs:ce]
        flags = {"protocol": bool(_PROTOCOL.search(clause)),
                 "chance": bool(_CHANCE.search(clause)), "diff": bool(_DIFF_WORDS.search(clause))}
        for m in found:
            if len(out) >= budget:
                break
            if m.start() in skip:
                continue
            num = self._number(m, cs, ce, flags)
            if num is None:
                continue
            value, quantity = num
            s, e = m.start(), m.end()
            if text[e - 1:e].isspace():
                e -= 1
            entity = self._entity(s, mentions)
            out.append(self._check_number(s, e, value, quantity, entity, cited, cs, ce,
                                          flags["diff"]))
        return out

    def _number(self, m, cs, ce, flags):
        """``(_Num, quantity)`` for a number that is a claim, else None."""
        text = self.text
        s, e = m.start(), m.end()
        after = text[e:min(ce + 40, e + 40)]
        if re.match(r"[A-Za-z_]", after) and not _UNIT_AFTER.match(after):
            return None  # part of an identifier: 6b48168cb2, 2x
        if re.match(r"\.\d", after):
            return None
        num = _parse(m)
        if not math.isfinite(num.value) or num.decimals > 12:
            return None
        before = text[max(cs, s - 40):s]
        quantity = next((q for q, rx in _LABELS if rx.search(before)), None)
        labelled = quantity is not None
        param = _PARAM.search(before)
        if param and param.group(1).lower() not in _STAT_NAMES:
            return None  # C=0.1, alpha = 0.05
        if _SOFTWARE.search(before):
            return None
        if not labelled and _SUBJECT_IDS.search(before):
            return None  # subject 3, subjects 1, 2 and
        noun = next((q for q, rx in _NOUNS if rx.match(text[e:e + 40])), None)
        if quantity is None:
            quantity = noun
        if noun == "hz" and flags["protocol"]:
            return None
        if re.match(r"\s*(?:s|ms|sec|seconds?)\b", after) and flags["protocol"]:
            return None
        is_int = "." not in m.group("num") and not m.group("exp")
        if is_int and not (labelled or noun or num.percent):
            return None  # 3 pipelines, step 2, 2018
        if flags["chance"] and (abs(num.value) == 0.5 and not num.percent
                                       or num.percent and abs(num.value) == 50):
            return None
        if not labelled and round(abs(num.value), 9) in self.echoes:
            return None
        num.approx = bool(_APPROX.search(before))
        return num, quantity

    def _entity(self, pos, mentions):
        """The pipeline a number at ``pos`` is about: the nearest mention before it in the
        clause, else the first after it."""
        before = [m for m in mentions if m[1] <= pos]
        if before:
            return before[-1]
        after = [m for m in mentions if m[0] >= pos]
        return after[0] if after else None

    def _check_number(self, s, e, num, quantity, entity, cited, cs, ce, diff_words):
        text = self.text
        ent_name = entity[2] if entity else None
        if quantity is None and entity is not None and not num.percent \
                and abs(num.value) <= 1:
            gap = text[entity[1]:s] if entity[1] <= s else ""
            if len(gap) <= 24 and not re.search(r"\d|\bby\b", gap):
                quantity = "score"  # TS+LR 0.78, TS+LR (0.78), TS+LR reached 0.78
        ctx = self._context(cs, ce, s, e)
        self._clause_words(cs, ce)
        mk = lambda verdict, reason, ev=None: self._claim(  # noqa: E731
            s, e, "number", num.value, cited, verdict, reason, ev, quantity, ctx)
        sources, problems = self._sources(cited)
        if not sources:
            verdict, reason = self._no_sources(cited, problems)
            hint = self._find_number(num, quantity, ent_name, self.turn_sources)
            if hint is not None and not cited:
                src, lf = hint
                reason += f" ({src.name} has {lf.path} = {lf.value}: cite [{src.name}])"
            return mk(verdict, reason)
        hit = (None if quantity == "points"  # percentage points: a difference
               else self._find_number(num, quantity, ent_name, sources, strict=True))
        if hit is not None and hit[1] is not None:
            src, lf, _ = hit
            return mk("supported", f"{src.name}: {lf.path} = {lf.value}",
                      Evidence(src.event_id, lf.path, lf.value))
        names = " and ".join(src.name for src in sources)
        diff = self._difference(num, quantity, sources) if diff_words else None
        if diff is not None:
            src, path, value = diff
            return mk("supported", f"{src.name}: {path} = {value}",
                      Evidence(src.event_id, path, value))
        counterpart = hit[2] if hit is not None else None
        if counterpart:
            near = sorted(counterpart, key=lambda sl: abs(abs(sl[1].value) - abs(num.value)))
            src, lf = self._most_relevant(near)
            elsewhere = self._find_number(num, None, None, sources)
            what = _QUANTITY_WORDS.get(quantity, quantity)
            reason = (f"{src.name} gives {what} {lf.value}"
                      + (f" for {ent_name}" if ent_name else "") + f" ({lf.path})")
            if elsewhere is not None:
                reason += f"; {_show(num)} there is {elsewhere[1].path}"
            return mk("contradicted", reason, Evidence(src.event_id, lf.path, lf.value))
        reason = f"no value in {names} rounds to {_show(num)}"
        if ent_name and not any(ent_name.lower() in lf.labels
                                for src in sources for lf in src.numbers):
            reason = f"{names} has no result for {ent_name}"
        return mk("unsupported", reason)

    def _find_number(self, num, quantity, entity, sources, strict=False):
        """A matching leaf ``(source, leaf)``; with ``strict``, ``(source, leaf|None,
        counterparts)`` where counterparts are the leaves the claim should have matched."""
        pairs = [(src, lf) for src in sources for lf in src.numbers]
        pool, ent_used, q_used = pairs, False, False
        if entity:
            el = [(s, lf) for s, lf in pool if entity.lower() in lf.labels]
            if el:
                pool, ent_used = el, True
        if quantity:
            ql = [(s, lf) for s, lf in pool if _quantity_match(quantity, lf)]
            if ql:
                pool, q_used = ql, True
        hits = [(src, lf) for src, lf in pool if _close(num, lf.value)]
        if hits:
            src, lf = self._most_relevant(hits)
            return (src, lf, None) if strict else (src, lf)
        if not strict:
            return None
        # A specific counterpart: the named statistic (of the named pipeline, if any).
        if q_used and (ent_used or not entity):
            return (None, None, pool)
        hits = [(src, lf) for src, lf in pairs if _close(num, lf.value)]
        if hits:
            return (*self._most_relevant(hits), None)
        return None

    def _most_relevant(self, pairs):
        """The leaf whose keys and labels share the most words with the clause."""
        words = self._words
        if not words or len(pairs) == 1:
            return pairs[0]

        def score(pair):
            lf = pair[1]
            tokens = {t for k in lf.labels for t in re.split(r"[_\W]+", k) if t}
            return len(words & tokens)

        return max(pairs, key=score)  # the first of the best

    def _difference(self, num, quantity, sources):
        found = []
        for src in sources:
            q = "score" if quantity in (None, "points") else quantity
            leaves = [lf for lf in src.numbers if _quantity_match(q, lf)][:200]
            for i, a in enumerate(leaves):
                for b in leaves[i + 1:]:
                    if a.keys[-1] != b.keys[-1]:
                        continue
                    d = abs(a.value - b.value)
                    for cand in (d, d * 100):
                        if _close(_Num(abs(num.value), num.decimals, False, False, num.approx),
                                  cand):
                            scale = "" if cand == d else " (x100)"
                            hi, lo = (a, b) if a.value >= b.value else (b, a)
                            rel = len(self._names & (a.labels | b.labels))
                            found.append((rel, src, f"{hi.path} - {lo.path}{scale}",
                                          round(cand, 6)))
        if not found:
            return None
        best = max(found, key=lambda f: f[0])  # the first of the most relevant
        return best[1:]

    # -- rankings ------------------------------------------------------------------------

    def _rankings(self, cs, ce, mentions, masks, cited):
        text = self.text
        found = []
        for a, b in zip(mentions, mentions[1:]):
            between = text[a[1]:b[0]]
            if _NEGATION.search(between) or len(between) > 120:
                continue
            if _BETWEEN_BETTER.match(between):
                found.append((a[0], b[1], {"better": a[2], "worse": b[2]}))
            elif _BETWEEN_WORSE.match(between) or _BETWEEN_PASSIVE.match(between):
                found.append((a[0], b[1], {"better": b[2], "worse": a[2]}))
        for m in mentions:
            after = _BEST_AFTER.match(text[m[1]:ce])
            if after and not _NEGATION.search(after.group()):
                found.append((m[0], m[1] + after.end(), {"best": m[2]}))
                continue
            window = text[max(cs, m[0] - 110):m[0]]
            before = _BEST_BEFORE.search(window)
            if before:
                lead = window[:before.start("w")]
                if not _NOT_FIRST.search(lead) and not _NEGATION.search(before.group()):
                    start = m[0] - len(window) + before.start("w")
                    found.append((start, m[1], {"best": m[2]}))
        out = []
        seen = set()
        for s, e, value in found:
            key = tuple(sorted(value.items()))
            if key in seen:
                continue
            seen.add(key)
            out.append(self._check_ranking(s, e, value, cited, cs, ce))
        return out

    def _check_ranking(self, s, e, value, cited, cs, ce):
        ctx = self._context(cs, ce, s, e)
        sources, problems = self._sources(cited)
        mk = lambda verdict, reason, ev=None: self._claim(  # noqa: E731
            s, e, "ranking", value, cited, verdict, reason, ev, None, ctx)
        if not sources:
            verdict, reason = self._no_sources(cited, problems)
            if not cited:
                # Uncited: the journal may still say otherwise.
                runs = [_source(ev) for ev in self._runs]
                res = self._rank(value, self.turn_sources + runs)
                if res[0] == "contradicted":
                    return mk("contradicted", f"no citation, and {res[1]}", res[2])
                if res[0] == "supported":
                    reason += f" ({res[1]}: cite it)"
            return mk(verdict, reason)
        verdict, reason, ev = self._rank(value, sources)
        return mk(verdict, reason, ev)

    def _rank(self, value, sources):
        support, contra = [], []
        for src in sources:
            for g in _groups(src.payload, "" if src.name.startswith("run") else "summary"):
                res = _judge(value, g)
                if res is None:
                    continue
                ok, why, path, val = res
                (support if ok else contra).append(
                    (f"{src.name}: {why}", Evidence(src.event_id, path.lstrip("."), val)))
        if support and not contra:
            return "supported", support[0][0], support[0][1]
        if contra and not support:
            return "contradicted", contra[0][0], contra[0][1]
        if support and contra:
            return ("unsupported", f"the cited results disagree ({support[0][0]}; "
                    f"{contra[0][0]})", contra[0][1])
        names = " and ".join(src.name for src in sources)
        who = value.get("best") or f"{value['better']} and {value['worse']}"
        return "unsupported", f"{names} has no scores of {who} to rank", None

    # -- significance --------------------------------------------------------------------

    def _significance(self, cs, ce, mentions, masks, cited, taken):
        text = self.text
        found = []
        for m in _P_THRESHOLD.finditer(text, cs, ce):
            if _inside(m.start(), masks):
                continue
            op, t = m.group("op"), float(m.group("t"))
            taken.append((m.start(), m.end()))
            lead = text[max(cs, m.start() - 60):m.start()]
            if _SIG_HEDGE.search(lead):
                continue
            below = (op in ("<", "<=", "\u2264")) != bool(_NEGATION.search(lead))
            found.append((m.start(), m.end(), below, t))
        for m in _SIG.finditer(text, cs, ce):
            if _inside(m.start(), masks) or _SIG_NOT_CLAIM.match(text[m.end():ce]):
                continue
            lead = text[max(cs, m.start() - 60):m.start()]
            if _SIG_HEDGE.search(lead):
                continue
            neg = _NEGATION.search(lead)
            negative = bool(m.group("neg")) or bool(neg)
            start = m.start() if not neg or m.group("neg") else max(cs, m.start() - len(lead)
                                                                     + neg.start())
            found.append((start, m.end(), not negative, None))
        if not found:
            return []
        # One claim per clause: the words, with the threshold a "p < 0.01" gives.
        alpha = next((t for *_, t in found if t is not None), self.alpha)
        words = [f for f in found if f[3] is None]
        s, e, significant, _ = (words or found)[0]
        universal = bool(_UNIVERSAL_NEG.search(text[cs:e]))
        value = {"significant": significant, "alpha": alpha}
        names = list(dict.fromkeys(m[2] for m in mentions))
        return [self._check_significance(s, e, value, names, universal, cited, cs, ce)]

    def _check_significance(self, s, e, value, names, universal, cited, cs, ce):
        ctx = self._context(cs, ce, s, e)
        mk = lambda verdict, reason, ev=None: self._claim(  # noqa: E731
            s, e, "significance", value, cited, verdict, reason, ev, "p", ctx)
        sources, problems = self._sources(cited)
        if not sources:
            verdict, reason = self._no_sources(cited, problems)
            if not cited:
                res = self._significant(value, names, universal, self.turn_sources)
                if res[0] == "contradicted":
                    return mk("contradicted", f"no citation, and {res[1]}", res[2])
                if res[0] == "supported":
                    reason += f" ({res[1]}: cite it)"
            return mk(verdict, reason)
        return mk(*self._significant(value, names, universal, sources))

    def _significant(self, value, names, universal, sources):
        alpha = value["alpha"]
        tests = []  # (source, leaf) for p-values
        for src in sources:
            for lf in src.numbers:
                if _quantity_match("p", lf):
                    tests.append((src, lf))
        srcs = " and ".join(src.name for src in sources)
        if not tests:
            return ("unsupported", f"{srcs} holds no statistical test (compare_pipelines "
                                   "gives p-values)", None)
        low = [n.lower() for n in names]
        if len(low) >= 2:
            rel = [t for t in tests if sum(n in t[1].labels for n in low) >= 2]
        elif low:
            rel = [t for t in tests if low[0] in t[1].labels]
        else:
            rel = tests
        if not rel:
            return ("unsupported", f"{srcs} has no test of {' vs '.join(names)}", None)
        sig = [t for t in rel if t[1].value < alpha]
        non = [t for t in rel if t[1].value >= alpha]

        def ev(t):
            return Evidence(t[0].event_id, t[1].path, t[1].value)

        def say(t, op):
            return f"{t[0].name}: {t[1].path} = {t[1].value} {op} {alpha:g}"

        if value["significant"]:
            if not non:
                return "supported", say(sig[0], "<"), ev(sig[0])
            if not sig:
                t = min(non, key=lambda t: t[1].value)
                return "contradicted", say(t, ">="), ev(t)
            return ("unsupported", f"only some of the tests are significant ({say(sig[0], '<')}"
                                   f"; {say(non[0], '>=')})", ev(non[0]))
        if not sig:
            t = min(non, key=lambda t: t[1].value)
            return "supported", say(t, ">="), ev(t)
        if not non or universal:
            return "contradicted", say(sig[0], "<"), ev(sig[0])
        return ("unsupported", f"some of the tests are significant ({say(sig[0], '<')})",
                ev(sig[0]))


def _quantity_match(quantity, leaf) -> bool:
    rx = _QUANTITY_KEYS.get(quantity)
    if rx is None:
        return False
    if quantity in _ANY_KEY:
        return any(rx.match(k) for k in leaf.keys)
    return bool(leaf.keys) and bool(rx.match(leaf.keys[-1]))


def _show(num: _Num) -> str:
    text = f"{num.value:.{num.decimals}f}"
    return text + (" %" if num.percent else "")


def _judge(value, g):
    """``(holds, why, path, value)`` for a ranking claim on one score group, or None."""
    means = {k.lower(): (k, v, p) for k, (v, p) in g["means"].items()}
    best = g["best"]
    members = set(means) | ({best[0].lower()} if best else set()) | \
        {x.lower() for b, w, *_ in g["pairs"] for x in (b, w)}
    if "best" in value:
        x = value["best"].lower()
        if x not in members:
            return None
        if best:
            name, path = best
        elif means:
            name, _, path = max(means.values(), key=lambda t: t[1])
        else:
            return None
        score = means.get(name.lower())
        shown = f" ({score[1]})" if score else ""
        return (name.lower() == x, f"best is {name}{shown}", path, name)
    x, y = value["better"].lower(), value["worse"].lower()
    if not {x, y} <= members:
        return None
    for b, w, path, p in g["pairs"]:
        if (b.lower(), w.lower()) == (x, y):
            return True, f"{b} better than {w}", path, {"better": b, "worse": w}
        if (b.lower(), w.lower()) == (y, x):
            return False, f"{b} better than {w}", path, {"better": b, "worse": w}
    if x in means and y in means:
        (nx, vx, px), (ny, vy, _) = means[x], means[y]
        rel = ">" if vx > vy else "=" if vx == vy else "<"
        return vx > vy, f"{nx} {vx} {rel} {ny} {vy}", px, vx
    if best and best[0].lower() in (x, y):
        return best[0].lower() == x, f"best is {best[0]}", best[1], best[0]
    return None


def check_claims(text, journal, *, turn_events=None, alpha=ALPHA) -> ClaimsReport:
    """Find the factual claims of an AI message and check them against the journal.

    Parameters
    ----------
    text : str
        The assistant's answer, before or after it is journaled.
    journal : chatbci.workspace.Journal
        Where the cited events are looked up. Only ``tool_result`` and
        ``run`` events up to the journal's head count as sources.
    turn_events : list of Event | None
        The events of this turn (the human's message, tool calls, results,
        suggestions), e.g. ``Turn.events``: numbers the human wrote or a
        tool argument echoes are not claims, and their results hint what an
        uncited claim should cite. ``None``: the events since the journal's
        last human message.
    alpha : float
        Significance level of "significant" when the text states none.

    Returns
    -------
    ClaimsReport
        The claims in text order with verdicts (see the module docstring).
        Never raises on odd text or payloads: at worst it finds fewer claims.
    """
    text = str(text or "")[:_MAX_TEXT]
    if not text.strip():
        return ClaimsReport()
    return _Checker(text, journal, turn_events, alpha).run()
