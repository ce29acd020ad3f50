"""The journal as read by the exports: :class:`SessionRecord`.

An export states only what the workspace's journal (and the files it points
to) records. :func:`load_record` reads the journal once -- a consistent
snapshot up to its head -- decodes every payload once, removes secrets and,
if asked, replaces human names by ``Human 1``, ``Human 2``... The building
blocks (methods, results, disclosure, BibTeX, provenance, transcript) all
work from this one record, so the formats of one export agree exactly.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

from chatbci.workspace import Workspace
from chatbci.workspace.secrets import (
    configured_secrets,
    scrub,
    scrub_text,
    with_json_forms,
)

__all__ = ["OFFLINE_LABEL", "ExportError", "Item", "SessionRecord", "load_record",
           "open_workspace", "scrub_output"]

#: How the offline rule-based backend is described in prose: it is not an LLM.
OFFLINE_LABEL = "offline rule-based assistant (no LLM)"
#: Models known to be the offline backend even when no session_start says so.
_OFFLINE_MODELS = {"offline-rules"}


class ExportError(ValueError):
    """An export that cannot be made as asked (bad format, nothing to export...)."""


@dataclass(frozen=True, slots=True)
class Item:
    """One journal event, decoded once for the exports.

    Attributes mirror :class:`chatbci.workspace.Event`; ``ts`` is the stored
    ISO text (UTC, ``Z``) and ``payload`` a plain dict (secrets removed,
    names anonymised when asked). Treat it as read-only.
    """

    id: int
    session_id: str
    ts: str
    actor: str
    kind: str
    parent_id: int | None
    payload: dict
    hash: str
    prev_hash: str

    def to_dict(self, label=None) -> dict:
        out = {"id": self.id, "session_id": self.session_id, "ts": self.ts,
               "actor": self.actor, "kind": self.kind, "parent_id": self.parent_id,
               "payload": self.payload, "prev_hash": self.prev_hash, "hash": self.hash}
        if label is not None:
            out["actor_label"] = label
        return out


def scrub_output(text, secrets=None) -> str:
    """Remove API keys from exported text: the second line of defence.

    The journal already scrubs what it stores; this catches secrets that
    reached a workspace file by hand or were configured after the fact.
    Both the raw and the JSON-escaped forms of each configured key are
    replaced, as well as anything shaped like an OpenAI key.
    """
    if secrets is None:
        secrets = with_json_forms(configured_secrets())
    return scrub_text(text, secrets)


@contextlib.contextmanager
def open_workspace(workspace_or_path):
    """Yield an open :class:`Workspace`; close it afterwards only if opened here."""
    if isinstance(workspace_or_path, Workspace):
        yield workspace_or_path
        return
    ws = Workspace.open(Path(workspace_or_path))
    try:
        yield ws
    finally:
        ws.close()


@dataclass
class SessionRecord:
    """A snapshot of a workspace's journal, ready to export.

    Build it with :func:`load_record`; pass it to any building block instead
    of a workspace to read the journal only once.

    Attributes
    ----------
    path : pathlib.Path
        The workspace folder.
    title, goal : str
    config : dict
        ``workspace.toml`` as JSON (secrets removed).
    items : list of Item
        Every event up to the head, in journal order.
    head_id, head_hash : int, str
        The journal head the export covers (``chatbci verify`` prints it).
    verified : bool
        Whether the hash chain verified when the record was read.
    verify_message : str
    anonymized : bool
    """

    path: Path
    title: str
    goal: str
    config: dict
    items: list
    head_id: int
    head_hash: str
    verified: bool
    verify_message: str
    anonymized: bool = False

    # -- lookups ----------------------------------------------------------------

    @cached_property
    def by_id(self) -> dict:
        return {it.id: it for it in self.items}

    @cached_property
    def children(self) -> dict:
        """parent id -> list of child items, in journal order."""
        out: dict[int, list] = {}
        for it in self.items:
            if it.parent_id is not None:
                out.setdefault(it.parent_id, []).append(it)
        return out

    def of_kind(self, *kinds) -> list:
        return [it for it in self.items if it.kind in kinds]

    def parent(self, item):
        return self.by_id.get(item.parent_id) if item.parent_id is not None else None

    def child(self, item, kind):
        """The first child of ``item`` of ``kind`` (or None)."""
        return next((c for c in self.children.get(item.id, ()) if c.kind == kind), None)

    @cached_property
    def decision_of(self) -> dict:
        """suggestion id -> its decision item."""
        return {it.parent_id: it for it in self.items if it.kind == "decision"}

    # -- sessions and actors ------------------------------------------------------

    @cached_property
    def sessions(self) -> list:
        """One dict per session: ``session_id``, start/end items, backend and model."""
        out = {}
        for it in self.items:
            if it.kind == "session_start":
                p = it.payload
                out[it.session_id] = {"session_id": it.session_id, "start": it, "end": None,
                                      "backend": p.get("backend"), "model": p.get("model"),
                                      "is_llm": p.get("is_llm"),
                                      "provenance": p.get("provenance", {})}
            elif it.kind == "session_end" and it.session_id in out:
                out[it.session_id]["end"] = it
        return list(out.values())

    @cached_property
    def session_of(self) -> dict:
        return {s["session_id"]: s for s in self.sessions}

    @cached_property
    def ai_actors(self) -> dict:
        """``ai:<model>`` actor -> facts: model, is_llm, backend, versions, usage."""
        declared = {}
        for s in self.sessions:
            if s["model"]:
                declared.setdefault(f"ai:{s['model']}", s)
        out = {}
        seen_requests = set()
        for it in self.items:
            if not it.actor.startswith("ai:"):
                continue
            info = out.get(it.actor)
            if info is None:
                model = it.actor[3:]
                sess = declared.get(it.actor)
                is_llm = sess["is_llm"] if sess and sess["is_llm"] is not None else (
                    model not in _OFFLINE_MODELS)
                backend = sess["backend"] if sess else None
                if backend == "offline":
                    is_llm = False
                info = out[it.actor] = {
                    "actor": it.actor, "model": model, "is_llm": bool(is_llm),
                    "backend": backend or ("offline" if not is_llm else None),
                    "versions": [], "n_events": 0, "n_messages": 0, "n_suggestions": 0,
                    "n_tool_calls": 0, "first_ts": it.ts, "last_ts": it.ts,
                    "tokens": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                    # Model calls whose server reported no usage: their tokens are
                    # unknown, not zero, and the totals say so.
                    "n_calls": 0, "n_usage_unknown": 0,
                    "prompts": [],
                }
            info["n_events"] += 1
            info["last_ts"] = it.ts
            key = {"message": "n_messages", "suggestion": "n_suggestions",
                   "tool_call": "n_tool_calls"}.get(it.kind)
            if key:
                info[key] += 1
            llm = it.payload.get("llm")
            if isinstance(llm, dict):
                version = llm.get("model")
                if version and version not in info["versions"]:
                    info["versions"].append(version)
                if not info["backend"] and llm.get("backend"):
                    info["backend"] = llm["backend"]
                usage = llm.get("usage")
                # One model call's metadata rides on every event it produced (each
                # tool call of a round): count it, and its usage, once.
                request = llm.get("request")
                counted = request is not None and request in seen_requests
                if request is not None:
                    seen_requests.add(request)
                if not counted:
                    info["n_calls"] += 1
                    if isinstance(usage, dict) and any(isinstance(usage.get(k), int)
                                                       for k in info["tokens"]):
                        for k in info["tokens"]:
                            if isinstance(usage.get(k), int):
                                info["tokens"][k] += usage[k]
                    else:
                        info["n_usage_unknown"] += 1
                prompts = llm.get("prompts")
                if isinstance(prompts, dict):
                    for ref in prompts.values():
                        if isinstance(ref, str) and ref not in info["prompts"]:
                            info["prompts"].append(ref)
        return out

    def is_offline(self, actor) -> bool:
        info = self.ai_actors.get(actor)
        return (not info["is_llm"]) if info else actor[3:] in _OFFLINE_MODELS

    def role(self, actor) -> str:
        """``"human"``, ``"ai"``, ``"offline"`` (the rule-based assistant) or ``"system"``."""
        if actor.startswith("human:"):
            return "human"
        if actor.startswith("ai:"):
            return "offline" if self.is_offline(actor) else "ai"
        return "system"

    def label(self, actor) -> str:
        """The displayed actor: ``Human (ada)``, ``AI (gpt-4o-mini)``,
        ``Offline assistant (rule-based)`` or ``System``."""
        role = self.role(actor)
        if role == "human":
            name = actor[6:]
            return name if self.anonymized else f"Human ({name})"
        if role == "offline":
            return "Offline assistant (rule-based)"
        if role == "ai":
            return f"AI ({actor[3:]})"
        return "System"

    def describe_ai(self, actor) -> str:
        """Prose name of an AI actor: the model, or the offline assistant (no LLM)."""
        if self.is_offline(actor):
            return OFFLINE_LABEL
        return f"the language model {actor[3:]}"

    @cached_property
    def humans(self) -> list:
        """Displayed names of the humans in the journal, in order of appearance."""
        seen = []
        for it in self.items:
            if it.actor.startswith("human:") and it.actor[6:] not in seen:
                seen.append(it.actor[6:])
        return seen

    @cached_property
    def llm_provider(self) -> dict:
        """Provider of the configured LLM endpoint: ``name`` and ``url`` (from base_url)."""
        base_url = (self.config.get("llm") or {}).get("base_url")
        host = urlparse(base_url).hostname if base_url else None
        if host is None or host.endswith("openai.com"):
            return {"name": "OpenAI", "url": base_url or "https://openai.com"}
        if host.endswith(".openai.azure.com"):
            return {"name": "Microsoft Azure OpenAI", "url": base_url}
        if host in ("localhost", "127.0.0.1", "::1") or host.startswith("127."):
            return {"name": f"local OpenAI-compatible server at {host}", "url": base_url,
                    "local": True}
        return {"name": host, "url": base_url}

    # -- benchmark facts ------------------------------------------------------------

    @cached_property
    def runs(self) -> list:
        """``run`` items that carry a benchmark configuration."""
        return [it for it in self.items
                if it.kind == "run" and isinstance(it.payload.get("config"), dict)]

    @cached_property
    def software_session(self):
        """The session whose provenance the methods report: the latest that ran a
        benchmark, else the latest one (None for a journal without sessions)."""
        run_sessions = {it.session_id for it in self.runs}
        chosen = [s for s in self.sessions if s["session_id"] in run_sessions] or self.sessions
        return chosen[-1] if chosen else None

    @cached_property
    def software_versions(self) -> dict:
        """Package versions (``chatbci``, ``mne``, ``moabb``...) of :attr:`software_session`."""
        sess = self.software_session
        return dict((sess["provenance"].get("packages") or {}) if sess else {})

    @cached_property
    def datasets_used(self) -> list:
        """``protocol.dataset`` dicts of the benchmarked datasets (first run first),
        with ``subjects`` merged over every run."""
        out = {}
        for it in self.runs:
            cfg = it.payload["config"]
            ds = (it.payload.get("protocol") or {}).get("dataset") or {
                "code": cfg.get("dataset"), "name": cfg.get("dataset")}
            key = ds.get("code") or ds.get("name")
            subjects = cfg.get("subjects") or ds.get("subjects") or []
            entry = out.setdefault(key, {**ds, "subjects": []})
            merged = set(entry["subjects"]) | {s for s in subjects if isinstance(s, int)}
            entry["subjects"] = sorted(merged)
        return list(out.values())

    def tool_results(self, tool, ok=True) -> list:
        return [it for it in self.items if it.kind == "tool_result"
                and it.payload.get("tool") == tool and (ok is None or it.payload.get("ok"))]

    def origin(self, call) -> dict:
        """Who caused a ``tool_call``: the AI alone, a human after a decision, or a human.

        Returns
        -------
        origin : dict
            ``by`` (``"ai"``, ``"human-decision"`` or ``"human"``), ``actor``,
            and for decisions ``verdict``, ``decision_id``, ``suggestion_id``
            and ``suggested_by``.
        """
        if call.actor.startswith("ai:"):
            return {"by": "ai", "actor": call.actor}
        parent = self.parent(call)
        if parent is not None and parent.kind == "decision":
            sugg = self.parent(parent)
            return {"by": "human-decision", "actor": call.actor,
                    "verdict": parent.payload.get("verdict"), "decision_id": parent.id,
                    "suggestion_id": parent.parent_id,
                    "suggested_by": sugg.actor if sugg is not None else None}
        return {"by": "human" if call.actor.startswith("human:") else "system",
                "actor": call.actor}


# ---------------------------------------------------------------------------
# Loading


def _anonymizer(names):
    """A function rewriting JSON text with each name replaced by ``Human <i>``."""
    mapping = {name: f"Human {i}" for i, name in enumerate(names, 1)}
    if not mapping:
        return None
    alternatives = "|".join(re.escape(json.dumps(n, ensure_ascii=False)[1:-1])
                            for n in sorted(mapping, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w])(human:)?({alternatives})(?![\w])")
    escaped = {json.dumps(n, ensure_ascii=False)[1:-1]: v for n, v in mapping.items()}

    def rewrite(text):
        return pattern.sub(lambda m: (m.group(1) or "") + escaped[m.group(2)], text)

    return rewrite


def load_record(workspace_or_path, *, anonymize=False) -> SessionRecord:
    """Read a workspace's journal into a :class:`SessionRecord`.

    Parameters
    ----------
    workspace_or_path : Workspace | str | os.PathLike
        An open workspace, or its folder (opened read-only and closed again).
    anonymize : bool
        Replace each human's name by ``Human 1``, ``Human 2``... (in order of
        first appearance) in actors, labels and every payload text.

    Returns
    -------
    record : SessionRecord

    Raises
    ------
    chatbci.workspace.WorkspaceNotFoundError
        The path is not a workspace.
    """
    if isinstance(workspace_or_path, SessionRecord):
        return workspace_or_path
    with open_workspace(workspace_or_path) as ws:
        journal = ws.journal
        head_id, head_hash = journal.head()
        report = journal.verify()
        events = [e for e in journal.events() if e.id <= head_id]
        config = ws.config.model_dump(mode="json")
        path = ws.path

    secrets = with_json_forms(configured_secrets())
    config = scrub(config, secrets)
    # The journal scrubbed at write time; scrub again with today's secrets.
    names = []
    for e in events:
        if e.actor.startswith("human:") and e.actor[6:] not in names:
            names.append(e.actor[6:])
    rewrite = _anonymizer(names) if anonymize else None

    items = []
    for e in events:
        text = scrub_output(e.payload_json, secrets)
        actor = e.actor
        if rewrite is not None:
            text = rewrite(text)
            actor = rewrite(actor)
        ts = e.ts.isoformat(timespec="microseconds")[:-6] + "Z"
        items.append(Item(e.id, e.session_id, ts, actor, e.kind, e.parent_id,
                          json.loads(text), e.hash, e.prev_hash))
    if rewrite is not None:
        config = json.loads(rewrite(json.dumps(config, ensure_ascii=False)))

    return SessionRecord(
        path=path, title=config["title"], goal=config["goal"], config=config, items=items,
        head_id=head_id, head_hash=head_hash, verified=bool(report.ok),
        verify_message=str(report), anonymized=bool(anonymize),
    )
