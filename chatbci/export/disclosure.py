"""The AI-use disclosure: which AI took part, what it proposed, what the human decided.

Counted from the journal, never estimated: every ``suggestion`` is an AI
proposal; every ``decision`` a human's accept / reject / modify of one;
a ``tool_call`` by ``ai:<model>`` ran on the AI's own initiative (as the
autonomy level allowed), one by ``human:<name>`` whose parent is a decision
ran because a human decided it. Pipelines and benchmark runs are attributed
the same way. The claims check journaled with each AI message (its claims'
verdicts against the cited tool results) is summed by verdict. The statement drafted from these facts follows the common
ground of journals' AI-use policies: name the tool and model (and version),
say what it was used for, state that the authors reviewed the output and
take responsibility, and that the AI is not an author.
"""

from __future__ import annotations

import json

from ._blocks import TABLE, UL, H, P, code
from ._text import count_phrase
from .record import load_record
from .transcript import action_line

__all__ = ["PROMPTS_FILE", "disclosure", "disclosure_blocks", "prompt_templates",
           "prompts_supplement", "tool_catalog"]

_VERDICTS = ("accept", "reject", "modify")


def _n(count, word, plural=None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def _origin_name(origin) -> str:
    if origin["by"] == "ai":
        return "ai"
    if origin["by"] == "human-decision":
        suggested_ai = str(origin.get("suggested_by") or "").startswith("ai:")
        prefix = "ai-suggested" if suggested_ai else "human-decided"
        verdict = {"accept": "accepted", "modify": "modified"}.get(origin["verdict"],
                                                                   origin["verdict"])
        return f"{prefix}-{verdict}"
    return origin["by"]


def _counts(record) -> dict:
    suggestions = record.of_kind("suggestion")
    by_ai = [s for s in suggestions if s.actor.startswith("ai:")]
    verdicts = {v: 0 for v in _VERDICTS}
    for s in by_ai:
        d = record.decision_of.get(s.id)
        if d is not None and d.payload.get("verdict") in verdicts:
            verdicts[d.payload["verdict"]] += 1
    calls = record.of_kind("tool_call")
    origins = [record.origin(c) for c in calls]
    ai_calls = [c for c, o in zip(calls, origins) if o["by"] == "ai"]
    tools = {}
    for c in ai_calls:
        tools[c.payload.get("tool")] = tools.get(c.payload.get("tool"), 0) + 1
    runs = {"total": 0, "by_ai": 0, "after_human_decision": 0, "by_human": 0}
    for run in record.runs:
        runs["total"] += 1
        call = _call_of_run(record, run)
        by = record.origin(call)["by"] if call is not None else "system"
        key = {"ai": "by_ai", "human-decision": "after_human_decision",
               "human": "by_human"}.get(by)
        if key:
            runs[key] += 1
    notes = {"by_ai": 0, "by_human": 0, "ai_notes_verified_by_human": 0}
    for it in record.of_kind("note"):
        op = it.payload.get("op")
        if op == "add":
            notes["by_ai" if it.actor.startswith("ai:") else "by_human"] += 1
        elif op == "verify" and str(it.payload.get("author", "")).startswith("ai:"):
            notes["ai_notes_verified_by_human"] += 1
    messages = {"human": 0, "ai": 0}
    for it in record.of_kind("message"):
        role = record.role(it.actor)
        if role == "human":
            messages["human"] += 1
        elif role in ("ai", "offline"):
            messages["ai"] += 1
    return {
        "suggestions": len(by_ai),
        "decisions": {**verdicts, "total": sum(verdicts.values())},
        "undecided": len(by_ai) - sum(verdicts.values()),
        "tool_calls": {"by_ai": len(ai_calls),
                       "after_human_decision": sum(o["by"] == "human-decision" for o in origins),
                       "by_human": sum(o["by"] == "human" for o in origins),
                       "by_ai_per_tool": dict(sorted(tools.items()))},
        "benchmark_runs": runs,
        "messages": messages,
        "claims": _claims(record),
        "knowledge_notes": notes,
        "errors": len(record.of_kind("error")),
        "events": record.head_id,
    }


def _claims(record) -> dict:
    """The claims check of the assistant's messages (``message`` payloads' ``claims``).

    ``messages_checked``: AI messages that carry a check; ``claims`` and the
    verdicts ``supported`` / ``unsupported`` / ``contradicted`` summed over
    them; ``by_kind``: the same per kind (number, ranking, significance);
    ``revised``: answers the assistant gave again after the check's feedback
    (``revision_of`` in their payload).
    """
    verdicts = ("supported", "unsupported", "contradicted")
    out = {"messages_checked": 0, "claims": 0, **{v: 0 for v in verdicts}, "by_kind": {},
           "revised": 0}
    for it in record.of_kind("message"):
        if record.role(it.actor) not in ("ai", "offline"):
            continue
        if it.payload.get("revision_of") is not None:
            out["revised"] += 1
        check = it.payload.get("claims")
        items = check.get("claims") if isinstance(check, dict) else None
        if not isinstance(items, list):
            continue
        out["messages_checked"] += 1
        for c in items:
            verdict = c.get("verdict") if isinstance(c, dict) else None
            if verdict not in verdicts:
                continue
            out["claims"] += 1
            out[verdict] += 1
            kind = out["by_kind"].setdefault(str(c.get("kind")), {v: 0 for v in verdicts})
            kind[verdict] += 1
    out["by_kind"] = dict(sorted(out["by_kind"].items()))
    return out


def _call_of_run(record, run):
    result = record.parent(run)
    call = record.parent(result) if result is not None else None
    return call if call is not None and call.kind == "tool_call" else None


def _decisions(record) -> list:
    out = []
    for s in record.of_kind("suggestion"):
        d = record.decision_of.get(s.id)
        action = s.payload.get("action")
        entry = {"suggestion_id": s.id, "suggested_by": record.label(s.actor),
                 "tool": action.get("tool") if isinstance(action, dict) else None,
                 "action": action_line(action, 300), "rationale": s.payload.get("rationale"),
                 "verdict": None, "decision_id": None, "decided_by": None,
                 "decision_rationale": None, "changed": []}
        if d is not None:
            entry.update({"verdict": d.payload.get("verdict"), "decision_id": d.id,
                          "decided_by": record.label(d.actor),
                          "decision_rationale": d.payload.get("rationale")})
            if d.payload.get("verdict") == "modify" and isinstance(d.payload.get("action"), dict):
                from .transcript import _changed_args

                entry["changed"] = _changed_args(action, d.payload["action"])
                entry["modified_action"] = action_line(d.payload["action"], 300)
        out.append(entry)
    return out


def _pipelines(record) -> list:
    out = []
    for res in record.tool_results("define_pipeline"):
        call = record.parent(res)
        if call is None:
            continue
        origin = record.origin(call)
        out.append({"name": (res.payload.get("summary") or {}).get("name")
                    or call.payload.get("args", {}).get("name"),
                    "origin": _origin_name(origin), "event_id": call.id,
                    "run_by": record.label(call.actor),
                    "suggestion_id": origin.get("suggestion_id"),
                    "suggested_by": record.label(origin["suggested_by"])
                    if origin.get("suggested_by") else None})
    return out


def _runs(record) -> list:
    out = []
    for run in record.runs:
        call = _call_of_run(record, run)
        origin = record.origin(call) if call is not None else {"by": "system"}
        cfg = run.payload["config"]
        out.append({"event_id": run.id, "config_hash": run.payload.get("config_hash"),
                    # The name the dataset is shown by (its code is in the config).
                    "dataset": ((run.payload.get("protocol") or {}).get("dataset") or {})
                    .get("name") or cfg.get("dataset"),
                    "evaluation": cfg.get("evaluation"),
                    "subjects": cfg.get("subjects"),
                    "pipelines": list(cfg.get("pipelines") or {}),
                    "origin": _origin_name(origin),
                    "run_by": record.label(call.actor) if call is not None else "System",
                    "suggestion_id": origin.get("suggestion_id")})
    return out


def _assistants(record) -> list:
    out = []
    provider = record.llm_provider
    calls = _model_calls(record)
    for a in record.ai_actors.values():
        made = calls.get(a["actor"]) if a["is_llm"] else None
        out.append({
            "actor": a["actor"], "label": record.label(a["actor"]), "model": a["model"],
            "is_llm": a["is_llm"], "backend": a["backend"],
            "description": record.describe_ai(a["actor"]),
            "provider": provider["name"] if a["is_llm"] else None,
            "versions": a["versions"] if a["is_llm"] else [],
            "messages": a["n_messages"], "suggestions": a["n_suggestions"],
            "tool_calls": a["n_tool_calls"], "tokens": a["tokens"] if a["is_llm"] else None,
            "model_calls": a.get("n_calls", 0), "usage_unknown": a.get("n_usage_unknown", 0),
            "first_used": a["first_ts"], "last_used": a["last_ts"],
            "prompt_templates": a["prompts"],
            # Access dates are those of the first and last model call; the
            # sampling parameters those each call sent (distinct sets).
            "access": ({"first": made["first_call"], "last": made["last_call"]} if made
                       else {"first": a["first_ts"], "last": a["last_ts"]}),
            "sampling": made["params"] if made else []})
    return out


def _statement(record, d) -> str:
    c = d["counts"]
    llms = [a for a in d["assistants"] if a["is_llm"]]
    offline = [a for a in d["assistants"] if not a["is_llm"]]
    version = record.software_versions.get("chatbci")
    tool = f"ChatBCI{f' {version}' if version else ''}, an open-source tool for human\u2013AI " \
           "collaborative design of EEG decoders"
    humans = "the human researcher" + ("s" if len(record.humans) > 1 else "")
    parts = []
    if llms:
        models = []
        for a in llms:
            when = a["first_used"][:10]
            if a["last_used"][:10] != when:
                when += f" to {a['last_used'][:10]}"
            versions = ", ".join(a["versions"]) or a["model"]
            models.append(f"the large language model {a['model']} (served by "
                          f"{a['provider']}; model version reported by the API: {versions}; "
                          f"used {when})")
        parts.append(f"This study used {tool}. Its assistant was driven by "
                     + "; and ".join(models) + ".")
        if d["prompt_templates"]:
            parts.append("The assistant's prompts came from versioned templates ("
                         + ", ".join(d["prompt_templates"]) + ").")
        if offline:
            parts.append("Part of the session used ChatBCI's offline rule-based assistant, "
                         "which is not a language model.")
    elif offline:
        parts.append(f"This study used {tool}. No large language model (LLM) was used: the "
                     "assistant was ChatBCI's offline rule-based assistant (no LLM), which maps "
                     "requests to analysis tools with fixed rules.")
    else:
        parts.append(f"This study used {tool}. No AI assistant took part in the recorded "
                     "session: no large language model (LLM) was used.")
    if d["assistants"]:
        dec = c["decisions"]
        parts.append(
            f"The assistant made {_n(c['suggestions'], 'suggestion')}; {humans} accepted "
            f"{dec['accept']}, modified {dec['modify']} and rejected {dec['reject']} of them"
            + (f" ({c['undecided']} left undecided)" if c["undecided"] else "") + ".")
        tc = c["tool_calls"]
        if tc["by_ai"]:
            per_tool = ", ".join(f"{n} {t}" for t, n in tc["by_ai_per_tool"].items())
            parts.append(f"The assistant also ran {_n(tc['by_ai'], 'tool call')} on its own, "
                         f"as the autonomy level allowed ({per_tool}).")
    claims = c["claims"]
    if claims["messages_checked"]:
        parts.append(
            f"ChatBCI checked the factual claims (numbers, pipeline rankings, significance "
            f"statements) in {_n(claims['messages_checked'], 'assistant message')} against "
            f"the journaled tool results they cite: of {_n(claims['claims'], 'claim')}, "
            f"{claims['supported']} {'was' if claims['supported'] == 1 else 'were'} supported, "
            f"{claims['unsupported']} unsupported and {claims['contradicted']} contradicted"
            + (f"; {_n(claims['revised'], 'answer')} {'was' if claims['revised'] == 1 else 'were'}"
               " revised by the assistant after this check was fed back to it"
               if claims["revised"] else "") + ".")
    runs = c["benchmark_runs"]
    if runs["total"]:
        bits = []
        if runs["after_human_decision"]:
            bits.append(f"{runs['after_human_decision']} after a human decision")
        if runs["by_human"]:
            bits.append(f"{runs['by_human']} started by a human directly")
        if runs["by_ai"]:
            bits.append(f"{runs['by_ai']} started by the assistant on its own")
        parts.append(f"{count_phrase(runs['total'], 'benchmark run', start=True)} "
                     f"{'was' if runs['total'] == 1 else 'were'} executed ("
                     + ", ".join(bits) + ").")
    if d["pipelines"]:
        by_ai = [p["name"] for p in d["pipelines"] if p["origin"] == "ai"]
        suggested = [f"{p['name']} ({p['origin'].rsplit('-', 1)[-1]})" for p in d["pipelines"]
                     if p["origin"].startswith("ai-suggested")]
        human = [p["name"] for p in d["pipelines"]
                 if not p["origin"].startswith("ai")]
        bits = []
        if suggested:
            bits.append("proposed by the assistant and accepted or modified by a human: "
                        + ", ".join(suggested))
        if by_ai:
            bits.append("defined by the assistant on its own: " + ", ".join(by_ai))
        if human:
            bits.append("defined by a human: " + ", ".join(human))
        parts.append("Custom pipelines " + "; ".join(bits) + ".")
    parts.append("The authors reviewed all AI output, made the final decisions and take full "
                 "responsibility for the content of this work; the AI is not an author.")
    parts.append(f"The complete interaction is recorded in a hash-chained journal "
                 f"({c['events']} events, head hash {record.head_hash}), verifiable with "
                 "the chatbci verify command.")
    return " ".join(parts)


def disclosure(workspace_or_record) -> dict:
    """The AI-use disclosure of a workspace, with a draft statement.

    Parameters
    ----------
    workspace_or_record : Workspace | path-like | SessionRecord

    Returns
    -------
    disclosure : dict
        ``llm_used`` (bool), ``assistants`` (model, whether it is an LLM,
        provider, versions reported by the API, usage), ``humans``,
        ``counts`` (suggestions; decisions accept/reject/modify; undecided;
        tool calls by the AI, after a human decision, by a human; benchmark
        runs by origin; messages; ``claims``, the claims check of the AI's
        messages by verdict and kind; knowledge notes; errors), ``decisions``
        (every suggestion and its verdict), ``pipelines`` (custom pipelines
        and who defined them), ``runs`` (who started each benchmark),
        ``prompt_templates`` (references) and ``prompts`` (name, version,
        SHA-256 and full text, see :func:`prompt_templates`), ``tools`` (the
        assistant's tool catalog), ``statement`` (a draft for a journal's
        AI-use policy), ``declaration`` (Elsevier's "Declaration of
        generative AI" wording) and ``placement`` (what goes in the Methods,
        what in the Acknowledgements, after ICMJE).
    """
    record = load_record(workspace_or_record)
    assistants = _assistants(record)
    prompts = []
    for a in assistants:
        for ref in a["prompt_templates"]:
            if ref not in prompts:
                prompts.append(ref)
    d = {"llm_used": any(a["is_llm"] for a in assistants),
         "assistants": assistants,
         "humans": [record.label(f"human:{h}") for h in record.humans],
         "counts": _counts(record), "decisions": _decisions(record),
         "pipelines": _pipelines(record), "runs": _runs(record),
         "prompt_templates": prompts,
         # Only a language model was prompted: the rule-based assistant's
         # requests name templates it never sends to a model.
         "prompts": prompt_templates(list(dict.fromkeys(
             ref for a in assistants if a["is_llm"] for ref in a["prompt_templates"])), record),
         "tools": tool_catalog(record) if assistants else []}
    d["statement"] = _statement(record, d)
    d["declaration"] = _declaration(record, d)
    d["placement"] = _placement(record, d)
    return d


# ---------------------------------------------------------------------------
# Reporting guidance: model and access, sampling, prompts, tools, placement
#
# What ICMJE (AI used for analysis goes in the Methods, for writing in the
# Acknowledgements), Elsevier's "Declaration of generative AI and AI-assisted
# technologies" and the LLM reporting checklists ask of a study: the exact
# model and version, when it was accessed, its sampling parameters, the
# prompts (by version and hash, full text as supplementary material) and the
# tools it could call.

#: The supplementary file with the full text of the prompt templates.
PROMPTS_FILE = "ai-prompt-templates.md"

_PARAM_KEYS = ("temperature", "seed", "max_tokens", "max_tokens_param", "stream", "tool_calls",
               "tool_choice")


def _model_calls(record) -> dict:
    """``ai:<model>`` -> its model calls as journaled: first/last call, sampling parameters.

    One model call's metadata rides on every event it produced; each call
    (its request id) is counted once.
    """
    out = {}
    seen = set()
    for it in record.items:
        llm = it.payload.get("llm") if it.actor.startswith("ai:") else None
        if not isinstance(llm, dict):
            continue
        request = llm.get("request")
        if request is not None and (it.actor, request) in seen:
            continue
        seen.add((it.actor, request))
        info = out.setdefault(it.actor, {"first_call": it.ts, "last_call": it.ts,
                                         "n_calls": 0, "params": []})
        info["last_call"] = it.ts
        info["n_calls"] += 1
        params = llm.get("params")
        if isinstance(params, dict):
            params = {k: params.get(k) for k in _PARAM_KEYS if k in params}
            if params not in info["params"]:
                info["params"].append(params)
    return out


def _param_text(params) -> str:
    """``temperature 0.2, seed 42, max_tokens 800`` (unset values say so)."""
    if not params:
        return "not journaled"
    bits = []
    for key in ("temperature", "seed", "max_tokens"):
        value = params.get(key)
        shown = "not set (server default)" if value is None else value
        name = params.get("max_tokens_param") or key if key == "max_tokens" else key
        bits.append(f"{name} {shown}")
    return ", ".join(bits)


def _parse_ref(ref):
    """``system@v2:0123456789ab`` -> ``("system", 2, "0123456789ab")`` (None if malformed)."""
    name, _, rest = str(ref).partition("@v")
    version, _, digest = rest.partition(":")
    if not (name and version.isdigit() and digest):
        return None
    return name, int(version), digest


def _manifests(record) -> list:
    """The assistant manifests the record's sessions journaled, oldest first.

    Each ``session_start`` names the file where the session stored its prompt
    templates and tool catalog (:func:`chatbci.assistant.session.assistant_manifest`);
    a file whose content no longer matches its content-addressed name is
    ignored, like a missing one.
    """
    from chatbci.workspace import ArtifactStore

    store = ArtifactStore(record.path)
    out, seen = [], set()
    for it in record.items:
        rel = it.payload.get("assistant_manifest") if it.kind == "session_start" else None
        if not isinstance(rel, str) or rel in seen:
            continue
        seen.add(rel)
        try:
            if store.check(rel):
                out.append(json.loads(store.path(rel).read_text(encoding="utf-8")))
        except (OSError, ValueError):  # unsafe path, unreadable or not JSON: not evidence
            continue
    return out


def prompt_templates(refs, record=None) -> list:
    """The prompt templates the journal names, with their full text where it is known.

    Parameters
    ----------
    refs : list of str
        ``name@vN:hash12`` references, as journaled with each model call.
    record : SessionRecord | None
        Where to find the texts: the assistant manifests its sessions stored.

    Returns
    -------
    templates : list of dict
        ``ref``, ``name``, ``version``, ``sha256`` (the journaled prefix, or
        the full hash when the text is known), ``text`` (or None) and
        ``source``: a text is given only when a manifest journaled by a
        session holds the template with this version and a SHA-256 starting
        with the journaled hash.
    """
    if not refs:
        return []
    known = {}
    for manifest in (_manifests(record) if record is not None else []):
        for p in manifest.get("prompts") or []:
            if isinstance(p, dict) and isinstance(p.get("sha256"), str):
                known[(p.get("name"), p.get("version"), p["sha256"])] = p
    out = []
    for ref in refs:
        parsed = _parse_ref(ref)
        entry = {"ref": ref, "name": None, "version": None, "sha256": None, "text": None,
                 "source": "malformed reference"}
        if parsed:
            name, version, digest = parsed
            entry.update(name=name, version=version, sha256=digest,
                         source="text not recorded in this workspace")
            for (n, v, sha), p in known.items():
                if n == name and v == version and sha.startswith(digest):
                    entry.update(sha256=sha, text=p.get("text"),
                                 source="recorded by the session (hash verified)")
                    break
        out.append(entry)
    return out


def tool_catalog(record=None) -> list:
    """The assistant's tools: ``name``, ``cost`` class and a one-line ``description``,
    as the newest session of ``record`` recorded them."""
    manifests = _manifests(record) if record is not None else []
    tools = manifests[-1].get("tools") if manifests else None
    return [{"name": t.get("name"), "cost": t.get("cost"), "description": t.get("description")}
            for t in tools or [] if isinstance(t, dict)]


def _tool_version(record) -> str:
    version = record.software_versions.get("chatbci")
    return f"ChatBCI {version}" if version else "ChatBCI"


def _declaration(record, d) -> str:
    """The declaration in Elsevier's wording (None used: says so)."""
    llms = [a for a in d["assistants"] if a["is_llm"]]
    tool = _tool_version(record)
    if not llms:
        return ("During the preparation of this work the author(s) used no generative AI: "
                f"the analyses were run with {tool}, whose assistant in this study was a "
                "rule-based program (fixed rules, not a language model).")
    models = "; ".join(
        f"{a['model']} ({a['provider']}; model version reported by the API: "
        f"{', '.join(a['versions']) or a['model']}; accessed {a['access']['first'][:10]}"
        + (f" to {a['access']['last'][:10]}" if a['access']['last'][:10]
           != a['access']['first'][:10] else "") + ")" for a in llms)
    return (f"During the preparation of this work the author(s) used {tool} with the large "
            f"language model {models} in order to propose, run and explain analyses of the "
            "EEG data (data exploration, decoding-pipeline design and benchmarking), each "
            "analysis decision being accepted, modified or rejected by a human. After using "
            "this tool/service, the author(s) reviewed and edited the content as needed and "
            "take(s) full responsibility for the content of the publication.")


def _placement(record, d) -> dict:
    """Where each use is reported (ICMJE): analysis in the Methods, writing in the
    Acknowledgements. The journal records analysis only."""
    llms = [a for a in d["assistants"] if a["is_llm"]]
    names = ", ".join(a["model"] for a in llms)
    if llms:
        methods = (f"Methods: the large language model {names}, through {_tool_version(record)}, "
                   "proposed and ran analyses (see the methods section generated with this "
                   "export); its model version, access dates, sampling parameters, prompt "
                   f"templates (full text in {PROMPTS_FILE}) and tools are listed here.")
        writing = ("Acknowledgements: the journal records no use of AI for writing. If a "
                   f"language model helped write or edit the manuscript, state it there, e.g. "
                   f"\u201cWe used [model, version] to [edit the text]; the authors reviewed "
                   "the result and take full responsibility for it.\u201d")
    else:
        methods = ("Methods: no large language model took part; the assistant was ChatBCI's "
                   "rule-based program.")
        writing = ("Acknowledgements: the journal records no use of AI for writing; state "
                   "any such use there.")
    return {"methods": methods, "acknowledgements": writing}


def prompts_supplement(d) -> str | None:
    """Markdown of the supplementary file with the prompt templates' full text.

    None when the session made no language-model call (no template was used).
    """
    if not d.get("prompts"):
        return None
    lines = ["# Prompt templates (supplementary material)", "",
             "The versioned templates from which ChatBCI built every request to the language "
             "model, as named in the journal (`name@vversion:sha256-prefix`). A template's "
             "text is given only when the installed chatbci ships the same version with a "
             "SHA-256 that starts with the journaled hash.", ""]
    for t in d["prompts"]:
        lines += [f"## {t['ref']}", "",
                  f"- Name: {t['name']}; version: {t['version']}",
                  f"- SHA-256: `{t['sha256']}`", f"- Text from: {t['source']}", ""]
        if t["text"] is not None:
            fence = "`" * max(3, max((len(r) for r in _backtick_runs(t["text"])), default=0) + 1)
            lines += [fence + "text", t["text"], fence, ""]
    return "\n".join(lines)


def _backtick_runs(text):
    import re

    return re.findall(r"`+", text)


def _claims_line(claims) -> str:
    if not claims["messages_checked"]:
        return "Claims check: no assistant message was checked"
    kinds = "; ".join(f"{k}: {v['supported']} supported, {v['unsupported']} unsupported, "
                      f"{v['contradicted']} contradicted" for k, v in claims["by_kind"].items())
    return (f"Claims check of {claims['messages_checked']} assistant messages: "
            f"{claims['claims']} claims, {claims['supported']} supported by the cited tool "
            f"results, {claims['unsupported']} unsupported, {claims['contradicted']} "
            f"contradicted" + (f" ({kinds})" if kinds else "")
            + (f"; {claims['revised']} answers revised after feedback" if claims["revised"]
               else ""))


def disclosure_blocks(record, d=None, *, level=1) -> list:
    """The disclosure as blocks: statement, models, counts and the decision table."""
    d = d if d is not None else disclosure(record)
    c = d["counts"]
    blocks = [H(level, "AI-use disclosure"), H(level + 1, "Draft statement"),
              P(d["statement"]),
              H(level + 1, "Declaration of generative AI and AI-assisted technologies"),
              P(d["declaration"]), H(level + 1, "Where to report each use"),
              UL([d["placement"]["methods"], d["placement"]["acknowledgements"]]),
              H(level + 1, "Assistants")]
    if d["assistants"]:
        items = []
        for a in d["assistants"]:
            if a["is_llm"]:
                tokens = a["tokens"] or {}
                unknown = a.get("usage_unknown", 0)
                if unknown and unknown == a.get("model_calls"):
                    used = "token usage unknown (the server reported none)"
                elif unknown:
                    used = (f"at least {tokens.get('total_tokens', 0)} tokens (usage unknown "
                            f"for {unknown} of {a['model_calls']} model calls)")
                else:
                    used = f"{tokens.get('total_tokens', 0)} tokens"
                items.append([code(a["actor"]), (
                    f": large language model {a['model']} ({a['provider']}); versions "
                    f"reported by the API: {', '.join(a['versions']) or 'none recorded'}; "
                    f"{a['messages']} messages, {a['suggestions']} suggestions, "
                    f"{a['tool_calls']} tool calls; {used}; "
                    f"accessed {a['access']['first'][:19]}Z to {a['access']['last'][:19]}Z "
                    f"(first and last model call); sampling parameters: "
                    f"{'; '.join(_param_text(p) for p in a['sampling']) or 'not journaled'}; "
                    f"prompt templates: {', '.join(a['prompt_templates']) or 'none'}.")])
            else:
                items.append([code(a["actor"]), (
                    f": {a['description']}; {a['messages']} messages, {a['suggestions']} "
                    f"suggestions, {a['tool_calls']} tool calls.")])
        blocks.append(UL(items))
    else:
        blocks.append(P("No AI assistant appears in the journal."))
    if d["prompts"]:
        blocks += [H(level + 2, "Prompt templates"),
                   P(f"Full text as supplementary material: {PROMPTS_FILE}."),
                   UL([[code(t["ref"]), f": {t['name']}, version {t['version']}, SHA-256 ",
                        code(t["sha256"] or "?"), f" (text: {t['source']})."]
                       for t in d["prompts"]])]
    if d["tools"]:
        blocks += [H(level + 2, "Tool catalog"),
                   P("The assistant acts only through these tools; the autonomy level decides "
                     "which cost classes run without a human decision."),
                   TABLE(["Tool", "Cost class", "What it does"],
                         [[t["name"], t["cost"], t["description"]] for t in d["tools"]],
                         widths=[1.2, 0.8, 4.0])]
    dec = c["decisions"]
    tc = c["tool_calls"]
    runs = c["benchmark_runs"]
    notes = c["knowledge_notes"]
    blocks += [H(level + 1, "Counts from the journal"), UL([
        (f"AI suggestions: {c['suggestions']} (accepted {dec['accept']}, modified "
         f"{dec['modify']}, rejected {dec['reject']}, undecided {c['undecided']})"),
        (f"Tool calls: {tc['by_ai']} run by the AI on its own, {tc['after_human_decision']} "
         f"after a human decision, {tc['by_human']} by a human directly"),
        (f"Benchmark runs: {runs['total']} ({runs['after_human_decision']} after a human "
         f"decision, {runs['by_ai']} by the AI on its own, {runs['by_human']} by a human "
         "directly)"),
        (f"Messages: {c['messages']['human']} from humans, {c['messages']['ai']} from the "
         "assistant"),
        _claims_line(c["claims"]),
        (f"Knowledge notes: {notes['by_ai']} written by the AI "
         f"({notes['ai_notes_verified_by_human']} verified by a human), "
         f"{notes['by_human']} by humans"),
        f"Humans: {', '.join(d['humans']) or 'none'}",
    ])]
    if d["decisions"]:
        rows = []
        for x in d["decisions"]:
            verdict = x["verdict"] or "undecided"
            if x["changed"]:
                verdict += f" ({', '.join(x['changed'])})"
            rows.append([f"#{x['suggestion_id']}", x["suggested_by"], x["action"], verdict,
                         x["decided_by"] or "", x["decision_rationale"] or ""])
        blocks += [H(level + 1, "Suggestions and decisions"),
                   TABLE(["Suggestion", "By", "Action", "Verdict", "Decided by", "Rationale"],
                         rows, widths=[0.9, 1.3, 3.2, 1.1, 1.1, 1.8])]
    if d["pipelines"] or d["runs"]:
        items = [f"Pipeline {p['name']}: {p['origin']} (event #{p['event_id']}, run by "
                 f"{p['run_by']})" for p in d["pipelines"]]
        items += [f"Benchmark run #{r['event_id']} ({', '.join(r['pipelines'])} on "
                  f"{r['dataset']}): {r['origin']}, run by {r['run_by']}"
                  + (f" after suggestion #{r['suggestion_id']}" if r["suggestion_id"] else "")
                  for r in d["runs"]]
        blocks += [H(level + 1, "Pipelines and benchmark runs"), UL(items)]
    return blocks
