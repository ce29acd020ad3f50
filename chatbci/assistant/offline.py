"""The offline assistant: deterministic rules, no LLM, same tools.

Without an API key, chatbci still works: this backend reads the human's
message with a handful of patterns (list/describe datasets, explore subject
N, benchmark pipelines X on dataset Y subjects A-B, compare, show results,
define a pipeline, add or search notes, suggest pipelines) and answers with
the same tool calls an LLM would make, through the same session, autonomy
policy and journal. It always says what it is, never poses as a language
model, and explains how to connect one when it does not understand.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import time

from .llm import Completion, ToolCall

LABEL = "Offline assistant (rule-based, not an LLM)"

CANONICAL = ("CSP+LDA", "TS+LR", "TS+SVM", "MDM", "FgMDM", "FBCSP+SVM", "ACM+TS+SVM")

HELP = f"""{LABEL}: I did not understand that. I can:
- list datasets / describe PhysionetMI
- explore subject 1 [of SimulatedMI]
- benchmark CSP+LDA, TS+LR and MDM on SimulatedMI subjects 1-5 [cross-session]
- suggest pipelines
- define pipeline MyTS: Covariances(estimator=oas) + TangentSpace + LogisticRegression(C=0.5)
- compare pipelines / show results / which pipeline is best? / what are the scores?
- note: <title>: <text>   /   search notes for <words>
- list components
To work with a language model instead, set OPENAI_API_KEY (OpenAI), or OPENAI_BASE_URL for
Azure OpenAI, Ollama (http://localhost:11434/v1), vLLM or LM Studio, and restart the session."""


def _words(text):
    return " ".join(text.split())


def _state(messages):
    """The workspace state JSON the session put in the system message."""
    for m in messages:
        if m.get("role") == "system":
            match = re.search(r'<data source="workspace-state">\s*(\{.*\})\s*</data>',
                              m.get("content") or "", re.S)
            if match:
                try:
                    return json.loads(match.group(1))
                except ValueError:
                    return {}
    return {}


def _human_text(message):
    """The human's words (the session sends its notices as separate messages)."""
    return (message.get("content") or "").strip()


def _dataset_in(text, default):
    from chatbci.bci.datasets import catalog

    # Any dataset MOABB has, not only the listed motor-imagery ones: the human
    # may name one on purpose.
    table = catalog(include_other_tasks=True)
    names = sorted(table["name"], key=len, reverse=True)
    for name in names:
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.I):
            return name
    # Its MOABB code, or its name spelt with other punctuation ("bnci2014-001").
    keys = {}
    for name, code in zip(table["name"], table["code"]):
        keys.setdefault(_key(name), name)
        keys.setdefault(_key(code), name)
    for token in re.findall(r"[A-Za-z][\w\-.]*\w", text):
        if len(_key(token)) >= 5 and _key(token) in keys:
            return keys[_key(token)]
    return default


def _subjects_in(text):
    m = re.search(r"subjects?\s+((?:\d+\s*(?:-|to|–)\s*\d+|\d+)(?:\s*(?:,|and)\s*"
                  r"(?:\d+\s*(?:-|to|–)\s*\d+|\d+))*)", text, re.I)
    if not m:
        return None
    spec = re.sub(r"\s*(?:to|–)\s*", "-", m.group(1))
    spec = re.sub(r"\s*(?:,|and)\s*", ",", spec)
    return re.sub(r"\s+", "", spec)


def _pipelines_in(text, known=()):
    found = []
    for name in list(known) + list(CANONICAL):
        pattern = rf"(?<![\w+-]){re.escape(name)}(?![\w+-])"
        if re.search(pattern, text, re.I) and name not in found:
            # "TS+SVM" also contains "SVM"; canonical names are matched whole.
            found.append(name)
    return found


def _evaluation_in(text):
    for ev in ("cross-session", "cross-subject", "within-session"):
        if re.search(ev.replace("-", r"[\s-]?"), text, re.I):
            return ev
    return None


def _value(text):
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text.strip("'\"")


def _parse_steps(spec):
    """``Covariances(estimator=oas) + TangentSpace + LogisticRegression(C=0.5)``."""
    steps = []
    for part in re.split(r"\s*(?:\+|->|→|,\s*then)\s*", spec.strip()):
        m = re.fullmatch(r"([A-Za-z_]\w*)\s*(?:\((.*)\))?", part.strip())
        if not m:
            raise ValueError(part)
        params = {}
        if m.group(2):
            for kv in filter(None, (p.strip() for p in m.group(2).split(","))):
                key, _, val = kv.partition("=")
                params[key.strip()] = _value(val)
        steps.append({"name": m.group(1), "parameters": params})
    return steps


class OfflineBackend:
    """A deterministic, rule-based stand-in for an LLM (see module docstring)."""

    name = "offline"
    model = "offline-rules"
    is_llm = False

    def __init__(self, delay: float = 0.0):
        self.delay = delay  # per streamed word, to demo streaming
        self._ids = itertools.count(1)
        self._history = []

    # -- Backend protocol ---------------------------------------------------------

    def complete(self, messages, tools=None, on_delta=None, tool_choice="auto", *,
                 on_reset=None) -> Completion:
        t0 = time.perf_counter()
        last = messages[-1] if messages else {}
        self._history = messages
        if last.get("role") == "tool":
            text = self._summarise(messages)
            calls = []
        else:
            user = next((m for m in reversed(messages) if m.get("role") == "user"
                         and not (m.get("content") or "").startswith("[The human ")), {})
            text, calls = self._interpret(_human_text(user), _state(messages))
        if text and on_delta is not None:
            for piece in re.findall(r"\S+\s*|\s+", text):
                on_delta(piece)
                if self.delay:
                    time.sleep(self.delay)
        return Completion(text=text, tool_calls=calls,
                          finish_reason="tool_calls" if calls else "stop", usage=None,
                          model=self.model, latency_s=time.perf_counter() - t0)

    # -- the rules ----------------------------------------------------------------

    def _call(self, name, args):
        return ToolCall(id=f"offline-{next(self._ids)}", name=name,
                        arguments=json.dumps(args))

    def _interpret(self, text, state):
        t = _words(text)
        low = t.lower()
        scope = state.get("scope") or {}
        default_ds = (scope.get("datasets") or ["SimulatedMI"])[0]
        known = state.get("pipelines") or []

        m = re.match(r"(?:please\s+)?(?:add\s+(?:a\s+)?)?note\s*:\s*(.+?)\s*:\s*(.+)", t, re.I | re.S)
        if m:
            return "", [self._call("add_note", {"title": m.group(1), "body": m.group(2)})]
        m = re.search(r"(?:search|find)\s+(?:the\s+)?(?:notes|knowledge)(?:\s+base)?\s+"
                      r"(?:for|about)\s+(.+)|what do we know about\s+(.+)", t, re.I)
        if m:
            query = (m.group(1) or m.group(2)).strip(" ?.")
            return "", [self._call("search_knowledge", {"query": query})]
        m = re.search(r"define\s+(?:a\s+)?pipeline\s+([\w+.\-]+)\s*[:=]\s*(.+)", t, re.I)
        if m:
            try:
                steps = _parse_steps(m.group(2))
            except ValueError as err:
                return (f"{LABEL}: I could not read the step {str(err)!r}. Write steps as "
                        "Name(param=value) joined by '+'."), []
            return "", [self._call("define_pipeline", {"name": m.group(1), "steps": steps})]
        typo = _did_you_mean(t, known)
        if typo:
            return typo, []
        question = _results_question(t, low, state, known)
        if question is not None:
            answer, call = question
            return answer, [self._call(*call)] if call else []
        if re.search(r"\bexplore\b|\berd\b|\bers\b|band power|\bpsd\b", low):
            m = re.search(r"subject\s+(\d+)", low)
            if not m:
                return f"{LABEL}: which subject? e.g. 'explore subject 1'.", []
            return "", [self._call("explore_subject", {
                "dataset": _dataset_in(t, default_ds), "subject": int(m.group(1))})]
        if _DEEP_WORDS.search(low) and re.search(r"\b(suggest|propose|recommend|try)\b", low):
            return "", [self._call("propose", _deep_suggestion(t, state, self._history))]
        if re.search(r"\b(benchmark|evaluate|run)\b", low) and (
                _pipelines_in(t, known) or "pipeline" in low):
            pipes = _pipelines_in(t, known) or ["CSP+LDA", "TS+LR", "MDM"]
            args = {"pipelines": pipes, "dataset": _dataset_in(t, default_ds),
                    "subjects": _subjects_in(t) or scope.get("subjects") or "1-5"}
            if isinstance(args["subjects"], list):
                args["subjects"] = ",".join(map(str, args["subjects"]))
            ev = _evaluation_in(t)
            if ev:
                args["evaluation"] = ev
            return "", [self._call("run_benchmark", args)]
        if re.search(r"\b(suggest|propose|recommend)\b.*\bpipelines?\b|what should (i|we) try",
                     low):
            return "", [self._call("propose", _suggestion(t, state, self._history))]
        if re.search(r"\bcompare\b|\bstatistic|\bsignifican", low):
            args = {}
            pipes = _pipelines_in(t, known)
            if len(pipes) >= 2:
                args["pipelines"] = pipes
            return "", [self._call("compare_pipelines", args)]
        if re.search(r"\b(show|list|see)\b.*\bresults?\b|^results?\b", low):
            return "", [self._call("show_results", {})]
        if re.search(r"\bcomponents?\b", low):
            return "", [self._call("list_components", {})]
        if re.search(r"\b(describe|tell me about|info(?:rmation)? (?:on|about))\b", low):
            ds = _dataset_in(t, None)
            if ds:
                return "", [self._call("describe_dataset", {"name": ds})]
        if re.search(r"\bdatasets?\b", low):
            args = {}
            if re.search(r"left.*right|right.*left|hand", low):
                args["classes"] = ["left_hand", "right_hand"]
            return "", [self._call("list_datasets", args)]
        if re.search(r"\bexport\b", low):
            return (f"{LABEL}: to export this session for a paper, run "
                    "`chatbci export <workspace> --format md` (or html, tex, json, ipynb)."), []
        if re.fullmatch(r"(hi|hello|hey|help|\?)[!. ]*", low):
            return HELP.replace("I did not understand that. ", ""), []
        return _misspelt_words(t) or HELP, []

    def _summarise(self, messages):
        """Describe the results of the tool calls of the last assistant message."""
        tail = []
        for m in reversed(messages):
            if m.get("role") != "tool":
                break
            tail.append(m)
        tail.reverse()
        calls = _calls_before(messages, len(messages) - len(tail))
        parts = [_summary_line(m.get("content") or "", calls.get(m.get("tool_call_id")))
                 for m in tail]
        return f"{LABEL}: " + " ".join(p for p in parts if p)


def intended_tool(text, messages=()) -> str | None:
    """The one tool a plainly phrased request asks for, as the offline rules read it.

    ``"explore subject 1"`` -> ``explore_subject``, ``"benchmark CSP+LDA and
    TS+LR on subjects 1-3"`` -> ``run_benchmark``, ``"which pipeline is
    best?"`` -> ``compare_pipelines`` (when there are results). None when the
    rules would answer in words: a question they cannot map, a misspelt name,
    small talk. Used to guide small language models (``[llm] guide_tools``):
    the tool is named, the model still writes its arguments.

    Parameters
    ----------
    text : str
        The human's message.
    messages : list of dict
        The request being sent (its system prompt carries the workspace state).
    """
    rules = OfflineBackend()
    rules._history = list(messages)
    try:
        _, calls = rules._interpret(_words(text), _state(list(messages)))
    except Exception:  # noqa: BLE001 - guidance is optional: never fail a turn over it
        return None
    return calls[0].name if len(calls) == 1 else None


def _payload(content):
    m = re.search(r'<data source="tool_result" tool="([\w]+)" event="#(\d+)">\s*(.*?)\s*</data>',
                  content, re.S)
    if m:
        return m.group(1), int(m.group(2)), json.loads(m.group(3))
    try:
        return None, None, json.loads(content)
    except ValueError:
        return None, None, {"text": content}


def _summary_line(content, call=None):
    tool, event, data = _payload(content)
    cite = f" [{tool} #{event}]" if event else ""
    if not isinstance(data, dict):
        return f"The tool returned {str(data)[:200]}{cite}."
    if "error" in data:
        return f"The tool reported a problem: {data['error']}"
    if data.get("suggestion_id"):
        reason = data.get("reason")
        why = f" ({reason})" if reason else ""
        what = f": {describe_action(_suggested_action(call))}" if call else ""
        return (f"I have recorded suggestion #{data['suggestion_id']}{what}{why}. Please "
                "approve, reject or modify it.")
    if tool == "list_datasets":
        names = ", ".join(d["name"] for d in data["datasets"][:12])
        more = "" if data["n_datasets"] <= 12 else f" and {data['n_datasets'] - 12} more"
        return f"{data['n_datasets']} motor-imagery datasets: {names}{more}{cite}."
    if tool == "describe_dataset":
        return (f"{data.get('name')}: {data.get('n_subjects')} subjects, "
                f"{data.get('n_sessions')} session(s), {data.get('n_channels')} EEG channels at "
                f"{data.get('sfreq')} Hz, classes {', '.join(data.get('classes') or [])}; "
                f"DOI {data.get('doi') or 'n/a'}{cite}.")
    if tool == "explore_subject":
        bp = (data.get("band_power") or {}).get("best") or {}
        erd = (data.get("erd_ers") or {}).get("strongest_erd") or {}
        line = f"Subject {data.get('subject')} of {data.get('dataset')}: "
        if bp:
            line += (f"the classes differ most at {bp.get('channel')} in the {bp.get('band')} "
                     f"band (Hedges' g {bp.get('effect_size')}, AUC {bp.get('auc')})")
        if erd:
            line += (f"; strongest ERD {erd.get('value')}% for {erd.get('class')} at "
                     f"{erd.get('channel')} ({erd.get('band')})")
        # Where the figures appear depends on the view (the panel, an export); say
        # what they are and that they belong to the cited result, not "below".
        return line + (f"{cite}. Its figures (ERD/ERS maps, band-power differences, power "
                       "spectra) are attached to that result.")
    if tool == "run_benchmark":
        scores = "; ".join(f"{p} {s['mean']:.3f} ± {s['sd']:.3f}"
                           for p, s in data["scores"].items())
        return (f"{data['evaluation']} on {data['dataset']}, subjects "
                f"{_subjects_text(data['subjects'])} "
                f"({data['metric']}): {scores}. Best: {data['best']}{cite}.")
    if tool == "compare_pipelines":
        return _comparison_text(data) + f"{cite}."
    if tool == "show_results":
        return _results_text(data) + f"{cite}."
    if tool == "define_pipeline":
        return (f"Pipeline {data['name']} ({' → '.join(data['steps'])}) saved to "
                f"{data['path']}{cite}.")
    if tool == "add_note":
        status = "verified" if data.get("verified") else "unverified until a human verifies it"
        return f"Note {data['note_id']} added ({status}){cite}."
    if tool == "search_knowledge":
        notes = data.get("notes") or []
        if not notes:
            return f"No notes match '{data.get('query')}'{cite}."
        titles = "; ".join(f"{n['title']} ({'verified' if n['verified'] else 'unverified'})"
                           for n in notes)
        return f"Notes about '{data.get('query')}': {titles}{cite}."
    if tool == "list_components":
        return (f"{len(data['components'])} components are allowed; canonical pipelines: "
                f"{', '.join(data['canonical_pipelines'])}{cite}.")
    return f"Done{cite}."


# -- what a suggestion is, said in words ------------------------------------------


def _calls_before(messages, index):
    """Tool calls of the assistant message just before ``messages[index]``, by id."""
    for m in reversed(messages[:index]):
        if m.get("role") == "assistant":
            calls = {}
            for c in m.get("tool_calls") or []:
                fn = c.get("function") or {}
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except ValueError:
                    args = {}
                calls[c.get("id")] = (fn.get("name"), args if isinstance(args, dict) else {})
            return calls
    return {}


def _suggested_action(call):
    """The action a call asks for: ``propose``'s action, else the call itself."""
    name, args = call
    if name == "propose" and isinstance(args.get("action"), dict):
        return args["action"]
    return {"tool": name, "args": args}


def _and(items):
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe_action(action):
    """An action (``{"tool": ..., "args": {...}}``) in a few plain words.

    E.g. ``benchmark CSP+LDA, TS+LR and MDM on PhysionetMI subjects 1-5
    (within-session)``; tools without a phrasing show their arguments.
    """
    if not isinstance(action, dict):
        return str(action)
    tool, args = action.get("tool", "?"), action.get("args") or {}
    if tool == "run_benchmark":
        pipes = args.get("pipelines") or []
        subjects = args.get("subjects")
        if isinstance(subjects, list):
            subjects = _subjects_text(subjects)
        text = (f"benchmark {_and(pipes) if pipes else 'pipelines'} on "
                f"{args.get('dataset', 'SimulatedMI')}"
                + (f" subjects {subjects}" if subjects else ""))
        return text + (f" ({args['evaluation']})" if args.get("evaluation") else "")
    if tool == "define_pipeline":
        steps = [st.get("name", "?") if isinstance(st, dict) else str(st)
                 for st in args.get("steps") or []]
        return f"define pipeline {args.get('name', '?')} as {' + '.join(steps)}"
    if tool == "explore_subject":
        return f"explore subject {args.get('subject')} of {args.get('dataset', 'SimulatedMI')}"
    if tool == "add_note":
        return f"add the note {args.get('title', '')!r}"
    shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items())
    return f"{tool}({shown})"


# -- typos: "did you mean" ----------------------------------------------------------

#: Words that start a request, for "did you mean" on a misspelt one.
_COMMAND_WORDS = ("benchmark", "explore", "compare", "suggest", "results", "datasets",
                  "describe", "define", "pipelines", "components", "search", "notes")


def _key(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _did_you_mean(text, known=()):
    """A "did you mean ...?" answer when the text names something almost known.

    Pipeline names that differ from a known one only in punctuation or case
    (``CSP-LDA``, ``ts_lr``), and pipeline or dataset names one typo away
    (``TS+LDR``, ``PhysionetMl``). Datasets are matched forgivingly anyway
    (``bnci2014-001``, :func:`_dataset_in`). Nothing is run on a guess: the human
    confirms by asking again with the right name. None when nothing is
    misspelt.
    """
    import difflib

    from chatbci.bci.datasets import catalog

    pipelines = list(dict.fromkeys([*known, *CANONICAL]))
    datasets = list(catalog(include_other_tasks=True)["name"])
    named = set(_pipelines_in(text, known))
    tokens = re.findall(r"[A-Za-z][\w+\-.]*[\w+]|[A-Za-z]", text)
    hints = []
    for token in tokens:
        key = _key(token)
        if len(key) < 3 or token in named:
            continue
        if any(re.fullmatch(re.escape(n), token, re.I) for n in pipelines + datasets):
            continue  # already a right name
        by_key = {_key(n): n for n in pipelines + datasets}
        if key in {_key(n) for n in datasets}:
            continue  # a dataset's name or code, spelt another way: understood
        if key in by_key and by_key[key] not in named:
            hints.append((token, [by_key[key]]))
            continue
        # Name-like (CamelCase, digits, + - _) is held to a looser match than a word.
        looks_like_name = bool(re.search(r"[+\-_]|\d|.[A-Z]", token))
        if looks_like_name or len(key) >= 6:
            close = difflib.get_close_matches(key, list(by_key), n=2,
                                              cutoff=0.75 if looks_like_name else 0.85)
            if close:
                hints.append((token, [by_key[c] for c in close]))
                continue
    if not hints:
        return None
    return _hint_text(hints, "name")


def _hint_text(hints, what):
    parts = [f"'{token}' -- did you mean {' or '.join(names)}?" for token, names in hints]
    return (f"{LABEL}: I do not know " + "; ".join(parts) + f" Ask again with the {what} "
            "written that way (nothing was run).")


def _misspelt_words(text):
    """A "did you mean" for a misspelt request word (``benchmrak``), else None.

    Only for a message no rule understood: a word near a command word in a
    message that was understood is left alone.
    """
    import difflib

    hints = []
    for token in re.findall(r"[A-Za-z]+", text):
        word = token.lower()
        if len(word) < 5 or word in _COMMAND_WORDS:
            continue
        close = difflib.get_close_matches(word, _COMMAND_WORDS, n=1, cutoff=0.8)
        if close:
            hints.append((token, close))
    return _hint_text(hints, "word") if hints else None


# -- questions about results ---------------------------------------------------------

_BEST = re.compile(r"\b(which|what)\b[^?]*\b(best|better|winner|wins|top|highest|ranks?|"
                   r"ranking)\b|\bbest (pipeline|decoder|method|classifier)\b|"
                   r"\brank(ing)? (the )?pipelines\b", re.I)
_SCORES = re.compile(r"\bhow (did|well)\b|\b(scores?|accuracy|auc|performance)\b"
                     r"(?! .*\bbenchmark\b)|\bwhat (have|did) (we|i) (run|get|found)\b", re.I)


def _results_question(text, low, state, known):
    """Common questions about results, answered from the journal's results.

    "Which pipeline is best?" goes to ``compare_pipelines`` (paired
    statistics, like for like), "how did TS+LR do?" / "what are the
    scores?" to ``show_results``. Before any benchmark, the answer says so
    and how to get one. None when the text is no such question.
    """
    best = _BEST.search(text)
    scores = _SCORES.search(text) and not re.search(r"\b(benchmark|explore|run)\b", low)
    if not (best or scores):
        return None
    if not state.get("results"):
        return (f"{LABEL}: there are no results in this workspace yet, so no pipeline can "
                "be called best. Say 'suggest pipelines' for a first benchmark to approve, "
                "or 'benchmark CSP+LDA, TS+LR and MDM on <dataset> subjects 1-5'."), None
    pipes = _pipelines_in(text, known)
    if best:
        args = {"pipelines": pipes} if len(pipes) >= 2 else {}
        return "", ("compare_pipelines", args)
    args = {"pipelines": pipes} if pipes else {}
    return "", ("show_results", args)


# -- suggestions that follow the human's data and goal ------------------------------

#: Pipeline families the goal can ask for (goal words -> pipelines, why).
_GOAL_PIPELINES = (
    (r"riemann|tangent|covarianc", ["TS+LR", "TS+SVM", "MDM", "FgMDM"],
     "Riemannian pipelines, as the goal mentions covariance / Riemannian methods"),
    (r"filter[- ]bank|frequenc|band", ["FBCSP+SVM", "CSP+LDA", "TS+LR"],
     "a filter-bank pipeline beside CSP and tangent space, as the goal is about "
     "frequency bands"),
    (r"real[- ]time|online|fast|lightweight|latency|embedded|cheap",
     ["CSP+LDA", "MDM", "TS+LR"],
     "fast pipelines (CSP+LDA, MDM) and tangent space, as the goal asks for speed"),
)


def _suggestion(text, state, messages):
    """The ``propose`` arguments for "suggest pipelines": data, protocol, pipelines.

    The dataset is the one named in the text, else the one the human worked
    on most recently in this conversation (explored, described,
    benchmarked), else the workspace's results or scope. The subjects follow
    the text or the scope (when it is that dataset), within the dataset's
    subjects. The evaluation and the pipelines follow the goal's words;
    pipelines already benchmarked on the dataset give way to untried ones.
    The rationale says where each choice came from.
    """
    scope = state.get("scope") or {}
    goal = str(state.get("goal") or "")
    why = []
    dataset = _dataset_in(text, None)
    if dataset:
        why.append(f"{dataset}, as you asked")
    else:
        used = _datasets_used(messages)
        if used:
            dataset = used[0]
            why.append(f"{dataset}, the dataset you worked on in this conversation")
        else:
            ran = _datasets_with_results(state)
            if ran:
                dataset = ran[-1]
                why.append(f"{dataset}, the dataset of this workspace's results")
            else:
                dataset = (scope.get("datasets") or ["SimulatedMI"])[0]
                why.append(f"{dataset}, the workspace's dataset")
    subjects = _subjects_in(text)
    in_scope = dataset in (scope.get("datasets") or [])
    if not subjects and in_scope and scope.get("subjects"):
        subjects = scope["subjects"]
        if isinstance(subjects, list):
            subjects = ",".join(map(str, subjects))
    if not subjects:
        n = _n_subjects(dataset)
        subjects = f"1-{min(5, n)}" if n and n > 1 else "1"
        why.append(f"subjects {subjects} first, before scaling up")

    pipelines = ["CSP+LDA", "TS+LR", "MDM"]
    family = ("the three canonical MOABB families for motor imagery: spatial filtering "
              "(CSP+LDA), Riemannian tangent space (TS+LR) and minimum distance (MDM)")
    for pattern, pipes, reason in _GOAL_PIPELINES:
        if re.search(pattern, goal, re.I):
            pipelines, family = list(pipes), reason
            break
    tried = _pipelines_with_results(state, dataset)
    untried = [p for p in pipelines if p not in tried]
    if tried and len(untried) < len(pipelines):
        more = [p for p in CANONICAL if p not in tried and p not in untried]
        pipelines = (untried + more)[:3] or pipelines
        family += (f"; {_and(sorted(tried))} already ran on {dataset}, so untried "
                   "ones instead")
    args = {"pipelines": pipelines, "dataset": dataset, "subjects": subjects}
    evaluation = _evaluation_in(goal)
    if re.search(r"transfer|calibration[- ]free|across subjects|new users?", goal, re.I):
        evaluation = evaluation or "cross-subject"
    if evaluation == "cross-session" and (_catalog_row(dataset).get("n_sessions") or 1) < 2:
        why.append(f"within-session evaluation: the goal asks for cross-session, but "
                   f"{dataset} has one session per subject")
        evaluation = None
    if evaluation and evaluation != scope.get("evaluation"):
        args["evaluation"] = evaluation
        why.append(f"{evaluation} evaluation, as the goal asks")
    rationale = (f"Benchmark {_and(pipelines)}: {family}. Data: " + "; ".join(why) + ".")
    return {"action": {"tool": "run_benchmark", "args": args}, "rationale": rationale}


#: Words that ask for a deep-learning decoder.
_DEEP_WORDS = re.compile(r"\b(deep|neural|conv ?nets?|cnns?|eegnet\w*|shallow\w*|deep4\w*|"
                         r"conformer|atcnet|braindecode|network)\b", re.I)
#: Shipped deep pipelines (chatbci/bci/pipeline_files/deep_*.yml) and the words naming them.
_DEEP_PIPELINES = (("EEGNet_8_2", r"eegnet"), ("DeepConvNet", r"deep ?conv|deep4"),
                   ("EEGConformer", r"conformer"), ("ATCNet", r"atcnet"),
                   ("ShallowConvNet", r"shallow"))


def _deep_suggestion(text, state, messages):
    """The ``propose`` arguments for "suggest a deep pipeline" / "try EEGNet".

    The networks named in the text (shipped deep pipelines, or the
    workspace's own pipelines named there), else ShallowConvNet, the deep
    net that suits small motor-imagery datasets; TS+LR runs beside them as
    the reference. Data and protocol as :func:`_suggestion` chooses them.
    """
    base = _suggestion(text, state, messages)
    known = [p for p in state.get("pipelines") or []
             if re.search(rf"(?<![\w+-]){re.escape(p)}(?![\w+-])", text, re.I)]
    named = [name for name, pattern in _DEEP_PIPELINES if re.search(pattern, text, re.I)]
    nets = known or named or ["ShallowConvNet"]
    why = ("the networks you named" if known or named else
           "it mimics filter-bank CSP and needs little data, which suits "
           "small motor-imagery datasets (MOABB's benchmark: 78.0 % vs 81.5 % for TS+LR "
           "over 10 left/right datasets)")
    args = dict(base["action"]["args"], pipelines=nets + ["TS+LR"])
    data = base["rationale"].split("Data: ", 1)[-1]
    rationale = (f"Benchmark {_and(nets)} against TS+LR: {why}. Training follows MOABB's "
                 "braindecode settings (Adam, early stopping on an inner validation split), "
                 "seeded by the evaluation's random state; each fit trains up to "
                 f"max_epochs epochs on CPU, see the cost estimate. Data: {data}")
    return {"action": {"tool": "run_benchmark", "args": args}, "rationale": rationale}


def _datasets_used(messages):
    """Datasets of this conversation's tool calls, most recent first."""
    from chatbci.bci.datasets import catalog

    names = set(catalog(include_other_tasks=True)["name"])
    seen = []
    for m in reversed(messages or []):
        for c in reversed(m.get("tool_calls") or []) if m.get("role") == "assistant" else []:
            try:
                args = json.loads((c.get("function") or {}).get("arguments") or "{}")
            except ValueError:
                continue
            if not isinstance(args, dict):
                continue
            if isinstance(args.get("action"), dict):  # a proposal's action
                args = args["action"].get("args") or {}
            for key in ("dataset", "name"):
                value = args.get(key)
                if isinstance(value, str) and value in names and value not in seen:
                    seen.append(value)
    return seen


def _results_keys(state):
    """``(dataset name, pipelines)`` of the workspace's results, oldest first."""
    from chatbci.bci.datasets import display_name

    out = []
    for key, pipes in (state.get("results") or {}).items():
        code = str(key).split(" / ")[0]
        out.append((display_name(code), set(pipes or {})))
    return out


def _datasets_with_results(state):
    return list(dict.fromkeys(name for name, _ in _results_keys(state)))


def _pipelines_with_results(state, dataset):
    return set().union(*[pipes for name, pipes in _results_keys(state) if name == dataset])


def _catalog_row(dataset):
    """The catalog row of ``dataset`` as a dict ({} for an unknown name)."""
    from chatbci.bci.datasets import catalog

    table = catalog(include_other_tasks=True)
    rows = table[table["name"] == dataset].to_dict("records")
    return rows[0] if rows else {}


def _n_subjects(dataset):
    n = _catalog_row(dataset).get("n_subjects")
    return int(n) if n is not None else None


def _subjects_text(subjects):
    """Subjects as ranges (``1-6, 9``), never a long list."""
    from chatbci.bci.statistics import subject_ranges

    return subject_ranges(subjects) if isinstance(subjects, (list, tuple)) else str(subjects)


# -- results, like for like ----------------------------------------------------------


def _comparison_text(data):
    """A ``compare_pipelines`` result in words: the best on the shared subjects, each p
    with its n and smallest attainable p, and the pipelines left apart."""
    out = []
    for c in data.get("comparisons") or []:
        # "lowest attainable", not "min p": the claims check reads "p = x" as a p-value.
        pairs = ", ".join(f"vs {p['worse']}: p={p['p']} (n = {c['n_subjects']}, lowest "
                          f"attainable {p.get('min_p')}), smd={p['smd']}"
                          for p in c.get("vs_best") or [])
        text = (f"{c['dataset']} ({c['evaluation']}, seed {c.get('seed', '?')}): on the "
                f"{c['n_subjects']} subjects they share ({c.get('subjects', '?')}), best "
                f"{c['best']} ({c['best_mean']:.3f}); {pairs} ({c['test']} test)")
        if c.get("caution"):
            text += f"; caution: {c['caution']}"
        apart = c.get("not_ranked") or []
        if apart:
            text += ("; not ranked, as they ran on other subjects: "
                     + ", ".join(f"{a['pipeline']} {a['mean']:.3f} (n = {a['n_subjects']}, "
                                 f"subjects {a['subjects']})" for a in apart))
        out.append(text)
    for g in data.get("not_compared") or []:
        names = ", ".join(f"{p['pipeline']} (n = {p['n_subjects']})" for p in g["pipelines"])
        out.append(f"{g['dataset']} ({g.get('evaluation')}): not compared, {g['reason']}: "
                   f"{names}")
    for m in (data.get("meta_analysis") or [])[:3]:
        i2 = "n/a" if m.get("I2") is None else f"{100 * m['I2']:.0f}%"
        out.append(f"over {len(m['groups'])} datasets/runs, {m['better']} vs {m['worse']}: "
                   f"Stouffer p = {m['p']}, smd = {m['smd']}, I\u00b2 = {i2}")
    return "; ".join(out)


def _results_text(data):
    """A ``show_results`` result in words: ranked pipelines first (on shared
    subjects), then those on other subjects with their own n."""
    out = []
    rows = data.get("results") or []
    for g in data.get("groups") or [{}]:
        mine = [r for r in rows if all(r.get(k) == g.get(k) for k in
                                       ("dataset", "evaluation", "seed") if k in g)]
        ranked = [r for r in mine if r.get("ranked", True)]
        apart = [r for r in mine if not r.get("ranked", True)]
        text = ""
        if ranked:
            where = (f"{ranked[0]['dataset']}, {ranked[0]['evaluation']}"
                     + (f", ranked on subjects {g['ranked_on_subjects']} "
                        f"(n = {g['n_subjects']})" if g else ""))
            text = f"{where}: " + "; ".join(
                f"{r['pipeline']} {r['mean']:.3f} ± {r['sd']:.3f}"
                + (f" ({r['subjects_above_chance']} subjects above chance)"
                   if r.get("subjects_above_chance") else "") for r in ranked)
        if apart:
            text += ("; not ranked (other subjects, not comparable): " + "; ".join(
                f"{r['pipeline']} {r['mean']:.3f} ± {r['sd']:.3f} (n = {r['n_subjects']}, "
                f"subjects {r.get('subjects')})" for r in apart))
        out.append(text)
    return "Results so far: " + " | ".join(t for t in out if t)
