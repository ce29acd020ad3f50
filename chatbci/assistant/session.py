"""One collaborative session: the human, the model, the tools and the journal.

A turn (:meth:`Session.send`)::

    human text -> journal(message)
      -> system prompt (Janusian, versioned) + compact workspace state
      -> model (streamed) -> tool calls
      -> validate (schema) -> autonomy policy: run now, or journal(suggestion)
      -> tool -> engine -> journal(tool_call, tool_result[, run])
      -> model ... -> answer -> journal(message)

Everything the model says or asks for is untrusted input: unknown tools,
malformed or invalid arguments and tool failures become tool errors the
model sees, ``error`` events in the journal, and the session goes on. LLM
failures (after retries) end the turn with a readable message; the session
never raises them to the user.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import prompts
from .autonomy import AutonomyPolicy, Spend
from .context import TokenGauge, data_block, estimate_tokens, render_state, workspace_state
from .tools import MAX_ARGUMENTS_CHARS, TOOLS, Cost, ToolContext, ToolError, clip_text
from ..workspace.secrets import scrub_text, scrub_text_counted

#: Conversation messages kept in memory between turns (the workspace state and
#: the journal carry the rest); what is *sent* is further bounded in tokens.
HISTORY_MESSAGES = 200

#: Tokens of conversation history sent when the model's context size is not
#: known (neither configured nor reported by the server).
HISTORY_TOKENS = 6000

#: Tokens kept free for the answer when the answer cap is not known.
ANSWER_RESERVE = 1024

#: Characters of a tool result kept in history once it is not the latest;
#: the full result stays in the journal under its event id.
OLD_TOOL_RESULT_CHARS = 600

AUTONOMY_HELP = {
    "suggest": "Every action needs the human's approval: propose, do not act.",
    "assist": "Read-only tools (listing, describing, exploring, showing results, searching "
              "notes) run at once; benchmarks and anything that writes to the workspace need "
              "the human's approval.",
    "auto": "You may run tools within the workspace's compute budget; past it, propose.",
}


@dataclass
class Turn:
    """What one turn (or one decision) produced.

    Attributes
    ----------
    text : str
        The assistant's answer (or a short account of a decision's action).
    events : list of Event
        Journal events written during the turn, in order.
    deltas : list of str
        The streamed text fragments, in order.
    notices : list of str
        What chatbci did to the human's input, for the human to read (e.g.
        that a secret was redacted before it reached the journal or model).
    """

    text: str = ""
    events: list = field(default_factory=list)
    deltas: list = field(default_factory=list)
    notices: list = field(default_factory=list)

    def _of(self, kind):
        return [e for e in self.events if e.kind == kind]

    @property
    def suggestions(self):
        """Suggestions created this turn (awaiting a human decision)."""
        return self._of("suggestion")

    @property
    def tool_results(self):
        return self._of("tool_result")

    @property
    def errors(self):
        return self._of("error")

    @property
    def artifacts(self):
        """Workspace-relative paths of figures and tables produced this turn."""
        return [p for e in self.tool_results for p in e.payload.get("artifacts", [])]


def default_backend(workspace):
    """The OpenAI-compatible model when credentials are configured, else offline."""
    from .llm import LLMSettings, OpenAIChat
    from .offline import OfflineBackend

    llm = workspace.config.llm
    # Every [llm] setting (unset ones are None and left to the defaults).
    settings = LLMSettings.resolve(llm.model_dump())
    if settings.has_credentials:
        return OpenAIChat(settings)
    return OfflineBackend()


class Session:
    """A human-AI working session on a workspace.

    Parameters
    ----------
    workspace : Workspace | path-like
        An open workspace, or the folder of one.
    backend : Backend | None
        The model. ``None``: an OpenAI-compatible model if an API key or a
        local ``base_url`` is configured, else the offline rule-based
        assistant.
    human : str
        The human's name, as in ``human:<name>`` in the journal.
    n_jobs : int
        Parallel jobs for benchmarks.
    context_budget : int
        Token budget of the workspace state sent to the model each turn.
    on_event : callable | None
        Called with each journal event as it is written (for UIs).
    """

    def __init__(self, workspace, backend=None, *, human="researcher", n_jobs=-1,
                 context_budget=3000, on_event=None):
        from chatbci.workspace import Workspace

        self.workspace = (workspace if isinstance(workspace, Workspace)
                          else Workspace.open(Path(workspace)))
        self.backend = backend if backend is not None else default_backend(self.workspace)
        self.human = f"human:{human}" if not human.startswith("human:") else human
        self.context_budget = context_budget
        self.on_event = on_event
        self.spend = Spend()
        self.stop = threading.Event()
        self.progress = None  # progress(done, total, text), set by UIs
        self.n_jobs = n_jobs
        self._history: list[dict] = []
        self._turn_start = 0  # index in _history of this turn's first message
        self._prompt_refs = {}
        self._notices: list[str] = []
        # Learns the server's tokenizer from reported usage (context budgeting).
        self.tokens = TokenGauge()
        self._sent_estimate = None  # raw token estimate of the last request sent
        self._lock = threading.RLock()
        cfg = self.workspace.config
        self._session_event = self.workspace.journal.start_session(
            seeds={"random_state": cfg.random_state}, backend=self.backend.name,
            model=self.backend.model, is_llm=bool(self.backend.is_llm),
            assistant_manifest=assistant_manifest(self.workspace))

    # -- properties -----------------------------------------------------------

    @property
    def ai(self) -> str:
        """The assistant's actor name in the journal."""
        return f"ai:{self.backend.model}"

    @property
    def autonomy(self) -> str:
        """The autonomy level now in force (``workspace.toml``)."""
        return self.workspace.config.autonomy

    def set_autonomy(self, level: str):
        """Change the autonomy level (persisted in workspace.toml and journaled)."""
        from .autonomy import LEVELS

        if level not in LEVELS:
            raise ValueError(f"autonomy level {level!r} is not one of {LEVELS}.")
        self.workspace.configure(actor=self.human, autonomy=level)

    def close(self, reason="closed"):
        self.workspace.journal.end_session(reason)
        # The engine keeps its worker pool warm between this session's
        # benchmarks; end it with the session (only if the engine was used:
        # importing it here would import MNE).
        engine = sys.modules.get("chatbci.bci.benchmark")
        if engine is not None:
            engine.shutdown_workers()

    # -- journal ----------------------------------------------------------------

    def _append(self, turn, kind, actor, payload, parent_id=None):
        ev = self.workspace.journal.append(kind, actor, payload, parent_id=parent_id)
        turn.events.append(ev)
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:  # noqa: BLE001 - a UI callback must not break the journal
                pass
        return ev

    def _error(self, turn, message, exc=None, parent_id=None):
        payload = {"message": message}
        if exc is not None:
            payload["type"] = type(exc).__name__
        return self._append(turn, "error", "system", payload, parent_id)

    # -- prompts ---------------------------------------------------------------

    def _messages(self, text):
        system = prompts.load("system")
        state = prompts.load("state")
        level = self.autonomy
        sys_text = system.render(autonomy=level, autonomy_help=AUTONOMY_HELP[level])
        state_text = state.render(state=render_state(
            workspace_state(self.workspace, query=text), self.context_budget))
        refs = {"system": system.ref, "state": state.ref}
        if self._tool_mode() == "text":
            # No tool declarations are sent: describe the tools and the call format.
            listing = prompts.load("tools_text")
            sys_text += "\n\n" + listing.render(tools=_tool_signatures())
            refs["tools_text"] = listing.ref
        msgs = [{"role": "system", "content": sys_text + "\n\n" + state_text}]
        return msgs, refs

    def _tool_mode(self) -> str:
        """``native``, ``text`` or ``auto`` (the backend's [llm] tool_calls setting)."""
        return getattr(getattr(self.backend, "settings", None), "tool_calls", "native")

    def _request(self, text, tools, *, shrink=1):
        """System prompt, state and the history that fits the model's context.

        Sizes are raw character estimates scaled by :attr:`tokens`, the gauge
        that learns the server's tokenizer. ``shrink`` > 1 divides the history
        budget (used once after the server said the request was too long).
        """
        msgs, refs = self._messages(text)
        fixed = estimate_tokens(msgs[0]["content"])
        if self._tool_mode() != "text":  # text mode describes the tools in the prompt instead
            fixed += estimate_tokens(json.dumps(tools))
        budget = self.tokens.raw(self._history_budget(self.tokens.tokens(fixed))) // shrink
        history = _fit(self._history, budget, keep_from=self._turn_start)
        messages = msgs + history
        self._sent_estimate = fixed + sum(map(_message_tokens, history))
        return messages, refs

    def _remember(self, *messages):
        self._history.extend(messages)
        # Bound memory: drop whole exchanges (from one user message to the next),
        # never the current turn's, so no tool reply loses its tool call.
        self._history = _trimmed(self._history, keep_from=self._turn_start,
                                 max_messages=HISTORY_MESSAGES)

    def _history_budget(self, fixed_tokens):
        """Server tokens of history that fit beside ``fixed_tokens`` (system + tools)."""
        context = None
        get = getattr(self.backend, "context_tokens", None)
        if callable(get):
            try:
                context = get()
            except Exception:  # noqa: BLE001 - discovery must never fail a turn
                context = None
        if not context:
            return HISTORY_TOKENS
        reserve = getattr(getattr(self.backend, "settings", None), "max_tokens", None)
        reserve = reserve or ANSWER_RESERVE
        return max(256, int(context) - fixed_tokens - reserve - 128)

    # -- a turn ------------------------------------------------------------------

    def send(self, text: str, on_delta=None) -> Turn:
        """Send the human's message; run the model and its tools; return the turn.

        Parameters
        ----------
        text : str
            The human's message.
        on_delta : callable | None
            Called with each streamed text fragment of the answer.
        """
        from .llm import LLMError

        if not isinstance(text, str) or not text.strip():
            raise ValueError("send() needs a non-empty message.")
        with self._lock:
            turn = Turn()
            self.stop.clear()
            self.spend.turn = 0.0
            # The model gets the message as journaled: with secrets redacted.
            text, redacted = _redact_typed(turn, text)
            human_ev = self._append(turn, "message", self.human,
                                    {"text": text, **({"redacted": redacted} if redacted else {})})
            self._turn_start = len(self._history)
            if self._notices:
                # What happened since the last turn (decisions and their results), as
                # its own message: the human's words stay exactly what they typed.
                self._remember({"role": "user", "content": "\n".join(self._notices)})
                self._notices.clear()
            self._remember({"role": "user", "content": text})

            def delta(fragment):
                turn.deltas.append(fragment)
                if on_delta is not None:
                    on_delta(fragment)

            budgets = self.workspace.config.budgets
            max_calls = budgets.max_tool_calls_per_turn
            max_rounds = budgets.max_rounds_per_turn
            n_calls = 0
            revision_of = None  # the answer the claims check sent back, once per turn
            tools = TOOLS.schemas()
            for _round in range(max_rounds):
                completion = self._complete(turn, human_ev, text, tools, delta,
                                            guide=_round == 0 and revision_of is None)
                if completion is None:
                    return turn
                llm_meta = {"request": uuid.uuid4().hex[:12],  # one id per model call
                            "model": completion.model or self.backend.model,
                            "backend": self.backend.name, "prompts": self._prompt_refs,
                            "usage": completion.usage,
                            "latency_s": round(completion.latency_s or 0.0, 3),
                            "attempts": getattr(completion, "attempts", 1)}
                params = getattr(completion, "request_params", None)
                if params:
                    llm_meta["params"] = params
                if getattr(completion, "raw_text", None):
                    # Calls were written as text; keep what the model really wrote.
                    llm_meta["raw_text"] = clip_text(completion.raw_text, 4000)
                if not completion.tool_calls:
                    ev, note = self._answer(turn, human_ev, completion, llm_meta, revision_of)
                    if note is None or revision_of is not None or _round + 1 >= max_rounds:
                        return turn
                    # Claims check: unsupported or contradicted claims go back to the
                    # model once, as chatbci's data; it answers again (both journaled).
                    revision_of = ev.id
                    self._remember({"role": "user", "content": note})
                    continue
                self._remember(_bounded_message(completion.as_message()))
                for call in completion.tool_calls:
                    n_calls += 1
                    if n_calls > max_calls:
                        reply = {"error": f"tool call limit for one turn ({max_calls}) "
                                          "reached; answer the human now."}
                    else:
                        try:
                            reply = self._handle_call(turn, call, llm_meta, human_ev.id)
                        except Exception as err:  # noqa: BLE001 - a reply is owed
                            # Every tool call gets its reply, or the next request is
                            # invalid (an assistant tool_call without its tool message).
                            msg = clip_text(f"{getattr(call, 'name', '?')} failed: "
                                            f"{type(err).__name__}: {err}")
                            self._error(turn, msg, err, human_ev.id)
                            reply = {"error": msg}
                    self._remember({"role": "tool", "tool_call_id": call.id,
                                    "content": clip_text(
                                        reply if isinstance(reply, str) else json.dumps(reply),
                                        MAX_ARGUMENTS_CHARS)})
            # The model kept calling tools: end the turn instead of looping.
            msg = (f"The assistant made {max_rounds} model requests this turn without "
                   "answering, so chatbci ended the turn ([budgets] max_rounds_per_turn = "
                   f"{max_rounds}). Its tool calls and results are in the journal; ask "
                   "again, more specifically, or raise the limit in workspace.toml.")
            self._error(turn, msg, None, human_ev.id)
            self._remember({"role": "assistant", "content": "(Turn ended: round limit.)"})
            turn.text = msg
            return turn

    def _complete(self, turn, human_ev, text, tools, delta, guide=False):
        """One model request; on a context-size error, trim harder and retry once.

        ``guide``: name the tool the human's message plainly asks for, if the
        backend's ``[llm] guide_tools`` is on (see :meth:`_tool_choice`).
        Returns the completion, or None when the turn must end (the error is
        journaled and ``turn.text`` says what happened and what to do).
        """
        from .llm import LLMError

        for shrink in (1, 4):
            messages, self._prompt_refs = self._request(text, tools, shrink=shrink)
            choice = self._tool_choice(text, messages) if guide else "auto"
            try:
                completion = self.backend.complete(messages, tools=tools, on_delta=delta,
                                                   on_reset=lambda: turn.deltas.clear(),
                                                   tool_choice=choice)
                self.tokens.observe(self._sent_estimate,
                                    (getattr(completion, "usage", None) or {}).get("prompt_tokens"))
                return completion
            except LLMError as err:
                # The server's count of a request that did not fit teaches the gauge too.
                self.tokens.observe(self._sent_estimate, getattr(err, "prompt_tokens", None))
                if getattr(err, "reason", None) == "context_length" and shrink == 1:
                    self._error(turn, clip_text(f"{err} Retrying once with a shorter "
                                                "history."), err, human_ev.id)
                    continue
                self._error(turn, clip_text(str(err)), err, human_ev.id)
                if getattr(err, "reason", None) == "context_length":
                    turn.text = (f"The request does not fit the model's context even with "
                                 f"the history trimmed: {err} Your message is saved in the "
                                 "journal. Set [llm] context_tokens to the server's real "
                                 "context size, start the server with a larger context, or "
                                 "start a new session.")
                else:
                    turn.text = (f"I could not reach the language model: {err} "
                                 "Your message is saved in the journal; try again, or work "
                                 "offline (unset OPENAI_API_KEY).")
                return None
            except Exception as err:  # noqa: BLE001 - never raise to the user
                self._error(turn, clip_text(f"model backend failed: {err}"), err, human_ev.id)
                turn.text = f"The assistant backend failed unexpectedly ({clip_text(err, 300)})."
                return None
        return None  # pragma: no cover - the loop always returns

    def _tool_choice(self, text, messages):
        """``tool_choice`` for a turn's first request: ``"auto"``, or, with ``[llm]
        guide_tools`` on a language model, the tool the human's message plainly asks
        for by the offline rules (:func:`.offline.intended_tool`). A small model then
        makes the call instead of describing it; it still writes the arguments, which
        are validated like any others, and the request's ``tool_choice`` is journaled
        with the call."""
        settings = getattr(self.backend, "settings", None)
        if not (self.backend.is_llm and getattr(settings, "guide_tools", False)
                and self._tool_mode() != "text"):
            return "auto"
        from .offline import intended_tool

        name = intended_tool(text, messages)
        if name is None or name not in TOOLS:
            return "auto"
        return {"type": "function", "function": {"name": name}}

    def _answer(self, turn, human_ev, completion, llm_meta, revision_of=None):
        """Journal the model's final answer for this turn and keep it in history.

        The answer's claims check goes into its payload (``claims``; ``revision_of``
        for an answer given again after the check). Returns ``(event, note)``: the
        check's feedback for a language model, or None when every claim is backed.
        """
        answer = completion.text or ""
        if not answer.strip():
            answer = "(The assistant returned an empty answer.)"
        payload = {"text": answer, "llm": llm_meta}
        remembered = answer
        if getattr(completion, "truncated", False):
            cap = getattr(getattr(self.backend, "settings", None), "max_tokens", None)
            payload["truncated"] = True
            answer += (f"\n\n[The answer was cut off at the answer cap"
                       f"{f' of {cap} tokens' if cap else ''} ([llm] max_tokens).]")
            payload["text"] = answer
            # A runaway answer must not fill the next requests' context.
            remembered = clip_text(remembered, 1500) + " [answer truncated]"
        report = _check_claims(answer, self.workspace.journal, turn.events)
        if report is not None:
            payload["claims"] = report.as_payload()
        if revision_of is not None:
            payload["revision_of"] = revision_of
        ev = self._append(turn, "message", self.ai, payload, human_ev.id)
        self._remember({"role": "assistant", "content": remembered})
        turn.text = answer
        note = report.feedback() if report is not None and self.backend.is_llm else None
        return ev, note

    def stream(self, text):
        """Iterate over a turn as it happens.

        Yields ``("delta", str)`` for streamed text, ``("event", Event)`` for
        journal events, and finally ``("turn", Turn)``.
        """
        q: queue.Queue = queue.Queue()
        previous = self.on_event

        def on_event(ev):
            q.put(("event", ev))
            if previous is not None:
                previous(ev)

        def work():
            self.on_event = on_event
            try:
                q.put(("turn", self.send(text, on_delta=lambda d: q.put(("delta", d)))))
            except BaseException as err:  # noqa: BLE001 - surfaced to the iterator
                q.put(("raise", err))
            finally:
                self.on_event = previous

        threading.Thread(target=work, daemon=True).start()
        while True:
            kind, item = q.get()
            if kind == "raise":
                raise item
            yield kind, item
            if kind == "turn":
                return

    # -- tool calls from the model -------------------------------------------------

    def _handle_call(self, turn, call, llm_meta, parent_id):
        """Validate one tool call of the model, then run, suggest or refuse it."""
        from .llm import ToolArgumentsError

        if call.name not in TOOLS:
            msg = (f"Unknown tool {call.name!r}. Available tools: "
                   f"{', '.join(TOOLS.names())}.")
            self._error(turn, msg, None, parent_id)
            return {"error": msg}
        tool = TOOLS[call.name]
        try:
            raw = call.parse_arguments()
            args = tool.validate(raw)
        except (ToolArgumentsError, ToolError) as err:
            self._error(turn, str(err), err, parent_id)
            return {"error": str(err)}

        if tool.name == "propose":
            try:
                tool.run(self._ctx(), args)
                # The proposed action's plan (validated by propose), for its cost.
                _, plan = TOOLS[args.action.tool].check(self.workspace, args.action.args)
            except ToolError as err:
                self._error(turn, str(err), err, parent_id)
                return {"error": str(err)}
            payload = {"action": {"tool": args.action.tool, "args": args.action.args},
                       "rationale": args.rationale, "llm": llm_meta}
            if plan.get("estimate"):
                payload["estimate"] = plan["estimate"]
            sugg = self._append(turn, "suggestion", self.ai, payload, parent_id)
            return {"status": "suggestion recorded, awaiting the human's decision",
                    "suggestion_id": sugg.id}

        try:
            _, plan = tool.check(self.workspace, args)
        except ToolError as err:
            self._error(turn, str(err), err, parent_id)
            return {"error": str(err)}
        policy = AutonomyPolicy(self.autonomy, self.workspace.config.budgets)
        verdict = policy.decide(tool, args, self.spend, plan.get("n_subjects"),
                                plan.get("estimate"))
        if not verdict.run:
            payload = {
                "action": {"tool": tool.name, "args": args.model_dump(mode="json", exclude_unset=True)},
                "rationale": (turn_text_so_far(turn) or
                              f"The assistant asked to run {tool.name}."),
                "reason": verdict.reason, "llm": llm_meta}
            if plan.get("estimate"):
                payload["estimate"] = plan["estimate"]
            sugg = self._append(turn, "suggestion", self.ai, payload, parent_id)
            return {"status": "not run: awaiting the human's decision",
                    "reason": verdict.reason, "suggestion_id": sugg.id,
                    "next": "Tell the human what you propose and why; they will accept, "
                            "reject or modify it."}
        return self._run(turn, tool, args, actor=self.ai, parent_id=parent_id,
                         extra={"llm": llm_meta, "call_id": call.id,
                                "call_source": getattr(call, "source", "native")})

    def _ctx(self):
        return ToolContext(self.workspace, actor=self.ai, progress=self.progress,
                           stop=self.stop, n_jobs=self.n_jobs)

    def _run(self, turn, tool, args, *, actor, parent_id, extra=None, author=None):
        """Run a validated tool call; journal call, result (and run); return the reply.

        ``actor`` asked for the run (the AI, or the human deciding a
        suggestion); ``author`` wrote the content of the arguments (the AI
        whose suggestion a human approved), e.g. the author of a note.
        """
        from chatbci.bci.benchmark import BenchmarkStopped

        payload = {"tool": tool.name, "args": args.model_dump(mode="json", exclude_unset=True)}
        payload.update(extra or {})
        call_ev = self._append(turn, "tool_call", actor, payload, parent_id)
        t0 = time.perf_counter()
        ctx = self._ctx()
        ctx.actor = actor
        ctx.author = author or actor
        try:
            result = tool.run(ctx, args)
        except (ToolError, BenchmarkStopped) as err:
            self._error(turn, str(err), err, call_ev.id)
            self._append(turn, "tool_result", "system",
                         {"tool": tool.name, "ok": False, "summary": {"error": str(err)}},
                         call_ev.id)
            return {"error": str(err), "event_id": call_ev.id}
        except Exception as err:  # noqa: BLE001 - a tool bug must not end the session
            detail = "".join(traceback.format_exception_only(type(err), err)).strip()
            self._error(turn, f"{tool.name} failed: {detail}", err, call_ev.id)
            self._append(turn, "tool_result", "system",
                         {"tool": tool.name, "ok": False,
                          "summary": {"error": f"internal error: {detail}"}}, call_ev.id)
            return {"error": f"{tool.name} failed with an internal error: {detail}"}
        finally:
            if tool.cost is Cost.COMPUTE:
                elapsed = time.perf_counter() - t0
                self.spend.turn += elapsed
                self.spend.session += elapsed
        res_ev = self._append(turn, "tool_result", "system",
                              {"tool": tool.name, "ok": True, "summary": result.summary,
                               "artifacts": result.artifacts,
                               "result_hash": result.result_hash}, call_ev.id)
        if result.run is not None:
            self._append(turn, "run", "system", result.run, res_ev.id)
        return data_block(f'source="tool_result" tool="{tool.name}" event="#{res_ev.id}"',
                          result.for_model)

    # -- the human's decisions -------------------------------------------------------

    def _suggestion(self, suggestion_id):
        ev = self.workspace.journal.get(int(suggestion_id))
        if ev.kind != "suggestion":
            raise ValueError(f"event #{suggestion_id} is a {ev.kind}, not a suggestion.")
        return ev

    def approve(self, suggestion_id, rationale="") -> Turn:
        """Accept a suggestion and run exactly the suggested action."""
        return self._decide(suggestion_id, "accept", rationale)

    def reject(self, suggestion_id, rationale) -> Turn:
        """Reject a suggestion (with the reason, which the assistant will see)."""
        return self._decide(suggestion_id, "reject", rationale)

    def modify(self, suggestion_id, args=None, rationale="", *, action=None) -> Turn:
        """Run a modified version of a suggestion.

        Parameters
        ----------
        args : dict | None
            Replacement arguments (merged over the suggested ones).
        action : dict | None
            A whole replacement action ``{"tool": ..., "args": {...}}``.
        rationale : str
            Why (required).
        """
        if args is not None and not isinstance(args, dict):
            # e.g. [1, 2] or "1-2" typed at a prompt: say so, instead of a TypeError.
            raise ValueError(f"modified arguments must be a mapping of argument names to "
                             f"values, e.g. {{\"subjects\": \"1-2\"}}, not a "
                             f"{type(args).__name__}.")
        sugg = self._suggestion(suggestion_id)
        if action is None:
            original = sugg.payload["action"]
            action = {"tool": original["tool"], "args": {**original.get("args", {}),
                                                         **(args or {})}}
        return self._decide(suggestion_id, "modify", rationale, action)

    def _decide(self, suggestion_id, verdict, rationale, action=None) -> Turn:
        with self._lock:
            turn = Turn()
            if isinstance(rationale, str):
                rationale, _ = _redact_typed(turn, rationale)  # it goes to the model too
            sugg = self._suggestion(suggestion_id)
            if action is not None:
                # Validate before recording: a modification must be runnable.
                try:
                    TOOLS[action.get("tool")].check(self.workspace, action.get("args", {}))
                except ToolError as err:
                    raise ValueError(f"modified action is invalid: {err}") from None
            payload = {"verdict": verdict, "rationale": rationale}
            if action is not None:
                payload["action"] = action
            decision = self._append(turn, "decision", self.human, payload, sugg.id)
            if verdict == "reject":
                turn.text = f"Suggestion #{sugg.id} rejected."
                self._notices.append(scrub_text(f"[The human rejected suggestion #{sugg.id}: "
                                                f"{rationale or 'no reason given'}]"))
                return turn
            act = action or sugg.payload["action"]
            tool = TOOLS[act["tool"]]
            args = tool.validate(act.get("args", {}))
            # The human ran it; the text of its arguments is still the AI's.
            reply = self._run(turn, tool, args, actor=self.human, parent_id=decision.id,
                              author=sugg.actor)
            results = turn.tool_results
            turn.text = _decision_text(tool.name, verdict, results[-1] if results else None)
            self._notices.append(scrub_text(
                f"[The human {'accepted' if verdict == 'accept' else 'modified'} suggestion "
                f"#{sugg.id}{': ' + rationale if rationale else ''}. Result of {tool.name}: "
                f"{reply if isinstance(reply, str) else json.dumps(reply)}]"))
            return turn


def _decision_text(tool_name, verdict, result) -> str:
    """What running an approved (or modified) suggestion did, in one line for the human:
    the scores of a benchmark, the error of a failure, what a stop kept."""
    how = "as suggested" if verdict == "accept" else "as you modified it"
    summary = (result.payload.get("summary") or {}) if result is not None else {}
    cite = f" [{tool_name} #{result.id}]" if result is not None else ""
    if result is None or not result.payload.get("ok"):
        error = clip_text(summary.get("error") or "no result", 600)
        if error.startswith(f"{tool_name}: stopped") or "stopped by the human" in error:
            return f"Stopped {tool_name} ({how}): {error}{cite}"
        return f"{tool_name} ({how}) failed: {error}{cite}"
    scores = summary.get("scores")
    if isinstance(scores, dict) and scores:
        from chatbci.bci.statistics import subject_ranges

        subjects = summary.get("subjects")
        subjects = subject_ranges(subjects) if isinstance(subjects, list) else subjects
        parts = [f"{name} {sc['mean']:.3f} (n = {sc.get('n_subjects', '?')})"
                 for name, sc in scores.items()
                 if isinstance(sc, dict) and isinstance(sc.get("mean"), (int, float))]
        return (f"Ran {tool_name} ({how}) on {summary.get('dataset', '?')} subjects "
                f"{subjects or '?'}: " + "; ".join(parts) + f".{cite}")
    return f"Ran {tool_name} ({how}): done.{cite}"


def assistant_manifest(workspace) -> str:
    """Store what the assistant was given -- its prompt templates in full and its
    tool catalog -- in the workspace; return the artifact's path.

    The session's ``session_start`` event names the file, so an export can print
    the templates (each checked against the hash journaled with every model
    call) and the catalog as supplementary material without importing the
    assistant (dependencies point one way). Content-addressed: sessions with
    the same chatbci share one file.
    """
    manifest = {
        "prompts": [{"name": p.name, "version": p.version, "sha256": p.sha256,
                     "text": p.template} for p in prompts.load_all()],
        "tools": [{"name": t.name, "cost": t.cost.value,
                   "description": t.description.split(". ")[0].rstrip(".") + "."}
                  for t in TOOLS],
    }
    blob = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False).encode()
    return workspace.artifacts.put_bytes(blob, ".json", category="files")


def _redact_typed(turn, text):
    """``text`` with its secrets redacted, and how many; the human is told in ``turn``."""
    text, n = scrub_text_counted(text)
    if n:
        turn.notices.append(f"{n} secret{'s were' if n > 1 else ' was'} redacted from what "
                            "you typed before it was journaled or sent to the model.")
    return text, n


def _tool_signatures():
    """Each tool as ``name(arg: type, ...)`` with its description, for text mode."""
    out = []
    for tool in TOOLS:
        props = tool.schema()["function"]["parameters"].get("properties", {})
        required = set(tool.args.model_json_schema().get("required", []))
        parts = []
        for name, prop in props.items():
            kind = prop.get("type") or "/".join(a.get("type", "?") for a in prop.get("anyOf", []))
            parts.append(f"{name}{'' if name in required else '?'}: {kind or 'object'}")
        out.append({"name": tool.name, "signature": ", ".join(parts),
                    "description": tool.description})
    return out


def _message_tokens(message) -> int:
    return estimate_tokens(json.dumps(message, ensure_ascii=False, default=str))


def _exchanges(history, keep_from):
    """Split ``history[:keep_from]`` at user messages: whole exchanges, oldest first.

    An exchange runs from one user message to the next, so an assistant
    message with tool calls always travels with its tool replies.
    """
    starts = [i for i, m in enumerate(history[:keep_from]) if m.get("role") == "user"]
    if not starts or starts[0] != 0:
        starts = [0] + starts
    bounds = starts + [keep_from]
    return [history[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def _trimmed(history, *, keep_from, max_messages):
    """Drop the oldest whole exchanges until at most ``max_messages`` remain.

    The current turn (``history[keep_from:]``) is always kept.
    """
    if len(history) <= max_messages:
        return history
    old, current = _exchanges(history, keep_from), history[keep_from:]
    while old and sum(map(len, old)) + len(current) > max_messages:
        old.pop(0)
    return [m for ex in old for m in ex] + current


def _fit(history, budget_tokens, *, keep_from):
    """The history to send: whole recent exchanges within ``budget_tokens``.

    The current turn -- the human's message, and this turn's tool calls with
    their replies -- is always sent; if it alone is over budget, its older
    tool results are shortened (the full results stay in the journal, cited
    by event id). Never returns a tool message without its tool call.
    """
    current = [dict(m) for m in history[keep_from:]]
    used = sum(map(_message_tokens, current))
    if used > budget_tokens:
        tool_idx = [i for i, m in enumerate(current) if m.get("role") == "tool"]
        for i in tool_idx[:-1]:  # the latest result stays whole
            if used <= budget_tokens:
                break
            before = _message_tokens(current[i])
            current[i]["content"] = clip_text(current[i]["content"], OLD_TOOL_RESULT_CHARS)
            used -= before - _message_tokens(current[i])
    kept = []
    for exchange in reversed(_exchanges(history, keep_from)):
        cost = sum(map(_message_tokens, exchange))
        if used + cost > budget_tokens:
            break
        kept[:0] = exchange
        used += cost
    return kept + current


def _bounded_message(message):
    """An assistant message for the history, its tool-call arguments bounded.

    Arguments over :data:`MAX_ARGUMENTS_CHARS` were refused; echoing them in
    every later request would only fill the context.
    """
    calls = message.get("tool_calls")
    if not calls:
        return message
    out = dict(message, tool_calls=[])
    for call in calls:
        fn = dict(call.get("function", {}))
        args = fn.get("arguments") or ""
        if isinstance(args, str) and len(args) > MAX_ARGUMENTS_CHARS:
            fn["arguments"] = json.dumps({"_refused": f"{len(args):,} characters of "
                                                      "arguments, over the limit"})
        out["tool_calls"].append(dict(call, function=fn))
    return out


def _check_claims(answer, journal, events):
    """The claims check of an answer (:mod:`.claims`); None if the checker fails, which
    must never end a turn."""
    from .claims import check_claims

    try:
        return check_claims(answer, journal, turn_events=events)
    except Exception:  # noqa: BLE001 - a checker bug must not lose the answer
        return None


def turn_text_so_far(turn):
    """The assistant's streamed words this turn, as the rationale of a suggestion."""
    return "".join(turn.deltas).strip()[:2000]
