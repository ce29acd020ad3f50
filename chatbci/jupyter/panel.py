"""The chat panel: an ipywidgets front end to :class:`chatbci.assistant.session.Session`.

``chatbci.chat("my-study")`` shows a :class:`ChatPanel`: a header (study,
goal, model, autonomy), the conversation (human and AI messages, tool calls
with their status, figures and tables, suggestion cards to approve, reject or
modify), a progress bar with a Stop button, and an input box.

All work (sending a message, running an approved action, exporting) runs in
one worker thread per panel, in order, so the kernel stays free: other cells
run, and the Stop button is heard while a benchmark runs. Widgets are updated
from that thread; everything shown is rendered from journal events, so a
panel opened again on the workspace shows the same history.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from datetime import datetime
from pathlib import Path

import ipywidgets as widgets

from chatbci.assistant.claims import mark_claims

from . import render
from .cards import SuggestionCard
from .inputbox import ChatInput
from .render import MessageBubble, ToolCallView, ai_label, decided_by, esc

#: Journal events a reopened panel shows (the newest ones).
HISTORY_EVENTS = 400

_HISTORY_KINDS = ("message", "suggestion", "decision", "tool_call", "tool_result", "error",
                  "note")

#: The text box's hint: what to ask, and which key sends.
PLACEHOLDER = ("Ask the assistant, e.g. “explore subject 1” or “benchmark CSP+LDA and TS+LR "
               "on subjects 1-5” · Enter to send, Shift+Enter for a new line")

QUICK = ("list datasets", "explore subject 1", "suggest pipelines", "show results",
         "compare pipelines")

AUTONOMY_TIPS = ("Every action needs your approval",
                 "Read-only tools run at once; benchmarks and writes need your approval",
                 "Everything runs within the compute budget; you can stop it")

_current = None  # the panel %%chat and %chatbci talk to


def current_panel():
    """The panel opened last in this kernel (None if none is open)."""
    return _current if _current is not None and not _current.closed else None


def _duration(seconds) -> str:
    """``"8 s"``, ``"2 min 05 s"``: a short duration for the progress line."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


def _backend(backend):
    if isinstance(backend, str):
        if backend.lower() in ("offline", "rules", "offline-rules"):
            from chatbci.assistant.offline import OfflineBackend

            return OfflineBackend()
        raise ValueError(f"backend {backend!r}: pass 'offline', None (configured model or "
                         "offline) or a backend object.")
    return backend


class _Job:
    __slots__ = ("fn", "on_error", "on_cancel", "mirror", "label")

    def __init__(self, fn, on_error=None, on_cancel=None, mirror=None, label=""):
        self.fn, self.on_error, self.on_cancel = fn, on_error, on_cancel
        self.mirror, self.label = mirror, label


class ChatPanel(widgets.VBox):
    """Chat with the assistant about a workspace, inside Jupyter.

    Parameters
    ----------
    workspace : Workspace | path-like
        An open workspace or its folder.
    backend : Backend | "offline" | None
        The model; None: the configured OpenAI-compatible model if any, else
        the offline rule-based assistant.
    human : str
        Your name in the journal (``human:<name>``).
    n_jobs : int
        Parallel jobs for benchmarks.
    history : int
        How many of the journal's newest events to show when the panel opens.

    Attributes
    ----------
    session : chatbci.assistant.session.Session
    messages : list of MessageBubble
        The human and AI messages shown, in order.
    conversation : ipywidgets.VBox
        Everything shown in the conversation, in order.
    cards : dict
        Suggestion cards by suggestion id.
    errors : list of ipywidgets.HTML
        Error lines shown (``.message`` holds the text).
    progress : ipywidgets.IntProgress
        The benchmark progress bar (steps done / total: a step is a fit of
        one pipeline on one fold of one subject where the engine reports
        folds, else a (subject, pipeline) result).
    stop_button, send_button : ipywidgets.Button
    input : ChatInput
        The text box: Enter sends, Shift+Enter starts a new line.
    autonomy : ipywidgets.ToggleButtons
    last_turn : Turn | None
        What the last send / decision produced.
    """

    def __init__(self, workspace, backend=None, *, human="researcher", n_jobs=-1,
                 history=HISTORY_EVENTS):
        from chatbci.assistant.session import Session
        from chatbci.workspace import Workspace

        owns = not isinstance(workspace, Workspace)
        ws = Workspace.open(Path(workspace)) if owns else workspace
        try:
            earlier = ws.journal.events(kind=_HISTORY_KINDS, limit=history) if history else []
            pending = ws.journal.pending_suggestions()
            session = Session(ws, backend=_backend(backend), human=human, n_jobs=n_jobs)
        except BaseException:
            if owns:
                ws.close()
            raise
        super().__init__(layout=widgets.Layout(width="100%"))
        self.add_class("chatbci-panel")
        self._owns_workspace = owns
        self.session = session
        self.workspace = ws
        self.me = self.session.human
        self.messages: list[MessageBubble] = []
        self.cards: dict[int, SuggestionCard] = {}
        self.errors: list[widgets.HTML] = []
        self.results: list[widgets.Widget] = []
        self.last_turn = None
        self.created = False  # chat() made the workspace for this panel
        self.busy = False
        self.closed = False
        self._calls: dict[int, ToolCallView] = {}
        self._call_ids: set[int] = set()  # tool calls shown: their errors show on their line
        self._progress_t0 = None
        self._progress_ticker = None
        self._progress_state = (0, 1, "")
        self._stream: MessageBubble | None = None
        self._held: list = []
        self._mirror = None
        self._log_lock = threading.RLock()
        self._queue: queue.Queue = queue.Queue()
        self._cond = threading.Condition()
        self._pending = 0
        self._worker = None
        self._shown = False
        self._show_again = False
        self._syncing = False

        self._build()
        self._load_history(earlier, pending)
        self.session.on_event = self._on_event
        self.session.progress = self._on_progress
        global _current
        _current = self

    # -- layout ------------------------------------------------------------------------

    def _build(self):
        cfg = self.workspace.config
        backend = self.session.backend
        if backend.is_llm:
            model_chip = f'<span class="cb-chip cb-llm">AI model: {esc(backend.model)}</span>'
        else:
            model_chip = ('<span class="cb-chip cb-offline">offline assistant · rule-based, '
                          "not an LLM</span>")
        scope = ", ".join(cfg.datasets) or "no datasets"
        if cfg.subjects:
            subjects = cfg.subjects
            if isinstance(subjects, list):
                subjects = ", ".join(map(str, subjects))
            scope += f" · subjects {subjects}"
        self.header = widgets.HTML(
            f"<style>{render.CSS}</style>"
            f'<div class="cb-title">{esc(cfg.title)}</div>'
            f'<div class="cb-goal">{esc(cfg.goal)}</div>'
            f'<div class="cb-meta">{model_chip}<span class="cb-chip">{esc(scope)}</span>'
            f'<span class="cb-chip">{esc(cfg.evaluation)}</span>'
            f'<span class="cb-chip" title="{esc(self.workspace.path)}">workspace '
            f"{esc(self.workspace.path.name)}</span></div>",
            layout=widgets.Layout(width="100%"))
        self.header.add_class("chatbci-header")

        self.autonomy = widgets.ToggleButtons(
            options=["suggest", "assist", "auto"], value=self.session.autonomy,
            tooltips=list(AUTONOMY_TIPS), style={"button_width": "auto"})
        self.autonomy.add_class("chatbci-autonomy")
        self.autonomy.observe(self._on_autonomy, names="value")
        self.export_menu = widgets.Dropdown(
            options=[("Export for a paper…", ""), ("Markdown", "md"), ("HTML", "html"),
                     ("LaTeX", "tex"), ("JSON", "json"), ("Notebook", "ipynb")],
            value="", layout=widgets.Layout(width="170px"))
        self.export_menu.add_class("chatbci-export")
        self.export_menu.observe(self._on_export_menu, names="value")
        self.autonomy_help = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", width="auto"))
        self.autonomy_help.add_class("chatbci-autonomy-help")
        self._autonomy_help()
        toolbar = widgets.HBox(
            [widgets.Label("Autonomy"), self.autonomy, self.autonomy_help, self.export_menu],
            layout=widgets.Layout(width="100%"))
        toolbar.add_class("chatbci-toolbar")

        self.conversation = widgets.VBox(layout=widgets.Layout(width="100%"))
        self.conversation.add_class("chatbci-log")
        # column-reverse: the view stays pinned to the newest message as it grows.
        self.scroller = widgets.Box(
            [self.conversation], layout=widgets.Layout(display="flex", flex_flow="column-reverse",
                                              overflow_y="auto", max_height="640px",
                                              width="100%"))
        self.scroller.add_class("chatbci-scroll")

        self.progress = widgets.IntProgress(value=0, min=0, max=1, bar_style="info",
                                            layout=widgets.Layout(width="45%", flex="1 1 45%",
                                                                  min_width="120px"))
        self.progress.add_class("chatbci-progressbar")
        self.progress_label = widgets.HTML(layout=widgets.Layout(width="auto"))
        self.progress_row = widgets.HBox(
            [self.progress, self.progress_label],
            layout=widgets.Layout(display="none", width="100%"))
        self.progress_row.add_class("chatbci-progress")

        self.input = ChatInput(placeholder=PLACEHOLDER,
                               layout=widgets.Layout(flex="1 1 auto", width="auto"))
        self.input.add_class("chatbci-input")
        self.input.on_submit(self._on_submit)
        self.send_button = widgets.Button(description="Send", button_style="primary",
                                          icon="paper-plane", tooltip="Send to the assistant",
                                          layout=widgets.Layout(width="92px"))
        self.send_button.add_class("chatbci-send")
        self.send_button.on_click(self._on_send_click)
        self.stop_button = widgets.Button(description="Stop", button_style="danger",
                                          icon="stop", disabled=True,
                                          tooltip="Stop the running work now (finished "
                                                  "benchmark results are kept)",
                                          layout=widgets.Layout(width="92px"))
        self.stop_button.add_class("chatbci-stop")
        self.stop_button.on_click(self._on_stop)
        buttons = widgets.VBox([self.send_button, self.stop_button])
        buttons.add_class("chatbci-buttons")
        self.quick = []
        for text in QUICK:
            b = widgets.Button(description=text, tooltip=f"Send “{text}”",
                               layout=widgets.Layout(width="auto"))
            b.add_class("chatbci-quick-button")
            b.on_click(lambda _, t=text: self._send_job(t))
            self.quick.append(b)
        quick = widgets.HBox(self.quick, layout=widgets.Layout(width="100%"))
        quick.add_class("chatbci-quick")
        self.status = widgets.HTML(layout=widgets.Layout(width="100%"))
        self.status.add_class("chatbci-status")
        entry = widgets.HBox([self.input, buttons], layout=widgets.Layout(width="100%"))
        entry.add_class("chatbci-entry")
        footer = widgets.VBox([quick, entry, self.status], layout=widgets.Layout(width="100%"))
        footer.add_class("chatbci-footer")
        self.children = [self.header, toolbar, self.scroller, self.progress_row, footer]

    def _append(self, widget):
        with self._log_lock:
            self.conversation.children = (*self.conversation.children, widget)
            mirror = self._mirror
            if mirror is not None:
                mirror.children = (*mirror.children, widget)

    def _remove(self, widget):
        with self._log_lock:
            self.conversation.children = tuple(w for w in self.conversation.children
                                               if w is not widget)
            mirror = self._mirror
            if mirror is not None:
                mirror.children = tuple(w for w in mirror.children if w is not widget)
        if widget in self.errors:
            self.errors.remove(widget)

    # -- history ------------------------------------------------------------------------

    def _load_history(self, earlier, pending):
        for ev in earlier:
            try:
                self._render_event(ev, live=False)
            except Exception as err:  # noqa: BLE001 - one odd event must not hide the rest
                self._show_error(f"could not show journal event #{ev.id}: {err}")
        self._flush_results()
        for view in self._calls.values():
            view.interrupted()
        self._calls.clear()
        older = [s for s in pending if s.id not in self.cards]
        if older:
            self._append(render.divider("earlier suggestions still awaiting your decision"))
            for sugg in older:
                self._render_event(sugg, live=False)
        if len(self.conversation.children):
            when = datetime.now().strftime("%d %b %Y, %H:%M")
            self._append(render.divider(f"history reloaded from the journal · new session "
                                        f"{when}"))
        else:
            how = ("" if self.session.backend.is_llm else
                   " The offline assistant understands common requests; set OPENAI_API_KEY "
                   "(or OPENAI_BASE_URL for a local model) to chat with an LLM.")
            self._append(render.system_line(
                "Ask for datasets, explore a subject, get pipeline suggestions, benchmark "
                "and compare decoders. Actions that cost compute come as suggestions for you "
                f"to approve.{esc(how)}"))

    # -- events -> widgets -----------------------------------------------------------------

    def _on_event(self, ev):
        try:
            self._render_event(ev, live=True)
        except Exception as err:  # noqa: BLE001 - the session swallows callback errors
            detail = "".join(traceback.format_exception_only(type(err), err)).strip()
            self._show_error(f"the panel could not show event #{ev.id} ({ev.kind}): {detail}")

    def _close_stream(self):
        if self._stream is not None:
            self._stream.finish()
            self._stream = None

    def _flush_results(self):
        """Show the figures and tables held back for the assistant's answer."""
        held, self._held = self._held, []
        for w in held:
            self._append(w)

    def _cite(self, event_id):
        """A citation chip's detail: the cited event, from the journal."""
        journal = self.workspace.journal
        return render.citation_detail(journal.get(event_id), self.workspace.path,
                                      result_of=self._result_of)

    def _result_of(self, call):
        for ev in self.workspace.journal.events(kind="tool_result", limit=HISTORY_EVENTS):
            if ev.parent_id == call.id:
                return ev
        return None

    def _request_text(self, sugg):
        """The human message a suggestion answers (its parent), if a human wrote it."""
        try:
            parent = self.workspace.journal.get(sugg.parent_id) if sugg.parent_id else None
        except KeyError:
            return None
        if parent is not None and parent.kind == "message" and parent.actor.startswith("human:"):
            return parent.payload.get("text")
        return None

    def _call_by(self, ev):
        """Who let a human-side tool call run: approved or modified, by whom."""
        if not ev.actor.startswith("human:"):
            return ""
        try:
            decision = self.workspace.journal.get(ev.parent_id) if ev.parent_id else None
        except KeyError:
            decision = None
        if decision is not None and decision.kind == "decision":
            return decided_by(decision.payload.get("verdict"), decision.actor, self.me)
        return decided_by("run", ev.actor, self.me)

    def _render_event(self, ev, live):
        kind = ev.kind
        if kind not in ("tool_result", "decision", "note", "run", "message"):
            self._flush_results()
        if kind == "message":
            if ev.actor.startswith("ai:") and self._stream is not None:
                label, _ = ai_label(ev.actor)
                # Unsupported / contradicted claims carry [?] / [!] (claims check).
                self._stream.finish(mark_claims(ev.payload.get("text", ""), ev.payload), ev,
                                    label=label)
                self._stream = None
            else:
                if not ev.actor.startswith("ai:"):
                    self._flush_results()
                self._close_stream()
                bubble = render.message_widget(ev, self.me, cite=self._cite)
                if ev.actor.startswith("ai:") and ev.payload.get("claims"):
                    bubble.finish(mark_claims(bubble.text, ev.payload))
                self.messages.append(bubble)
                self._append(bubble)
            # The answer presents the results and announces its suggestions: they follow it.
            self._flush_results()
        elif kind == "suggestion":
            self._close_stream()
            card = SuggestionCard(ev, self._decide, self.me, request=self._request_text(ev))
            self.cards[ev.id] = card
            # The assistant's answer announces its card: the card waits for it (as results
            # do), so the conversation reads in the order things were said.
            if ev.actor.startswith("ai:"):
                self._held.append(card)
            else:
                self._append(card)
        elif kind == "decision":
            card = self.cards.get(ev.parent_id)
            if card is not None:
                card.mark_decided(ev)
        elif kind == "tool_call":
            self._close_stream()
            view = ToolCallView(ev, self.me, by=self._call_by(ev))
            self._calls[ev.id] = view
            self._call_ids.add(ev.id)
            self._append(view)
            if live and view.tool == "run_benchmark":
                self._progress_start()
        elif kind == "tool_result":
            view = self._calls.pop(ev.parent_id, None)
            if view is not None:
                view.done(ev)
            # Results of the assistant's own calls wait for its answer (which
            # describes them); those of an approved action show at once.
            hold = view is not None and view.actor.startswith("ai:")
            for w in render.result_widgets(ev, self.workspace.path):
                self.results.append(w)
                if hold:
                    self._held.append(w)
                else:
                    self._append(w)
            if live and ev.payload.get("tool") == "run_benchmark":
                summary = ev.payload.get("summary")
                error = summary.get("error") if isinstance(summary, dict) else None
                self._progress_end(bool(ev.payload.get("ok", True)), error)
                if view is not None and render.is_stop_message(error):
                    for w in self._kept_results(view.args):
                        self.results.append(w)
                        self._append(w)
        elif kind == "error":
            self._close_stream()
            # A tool's error shows on its tool line (with its result); only errors
            # outside a tool call get a box of their own: each error is shown once.
            if ev.parent_id not in self._call_ids:
                self._show_error(ev.payload.get("message", "error"))
        elif kind == "note":
            w = render.note_widget(ev, self.me)
            if w is not None:
                self._append(w)

    def _kept_results(self, args):
        """The results a stopped benchmark kept, read back from the workspace's cache.

        The engine's stop keeps every finished (subject, pipeline) result in
        the cache; a run that is stopped before it starts computes nothing and
        returns them (``BenchmarkStopped.results``), so the human sees them.
        """
        from chatbci.assistant.tools import TOOLS, benchmark_plan
        from chatbci.bci.benchmark import BenchmarkStopped, run_benchmark

        stop = threading.Event()
        stop.set()
        try:
            plan = benchmark_plan(self.workspace, TOOLS["run_benchmark"].validate(args))
            try:
                df = run_benchmark(plan["specs"], dataset=plan["dataset"],
                                   subjects=plan["subjects"], evaluation=plan["evaluation"],
                                   random_state=plan["random_state"],
                                   cache_dir=self.workspace.path_for("results", "cache"),
                                   n_jobs=1, progress=False, stop=stop)
            except BenchmarkStopped as err:
                df = err.results
        except Exception as err:  # noqa: BLE001 - the stop line already says what was kept
            return [render.system_line(f"(the kept results could not be read back: "
                                       f"{esc(err)})")]
        return render.kept_results_widgets(df)

    def _show_error(self, message):
        w = render.error_widget(message)
        self.errors.append(w)
        self._append(w)

    def _on_delta(self, fragment):
        if self._stream is None:
            label, offline = ai_label(self.session.ai)
            self._stream = MessageBubble("ai", label, "", offline=offline, streaming=True,
                                         when=datetime.now().strftime("%H:%M"),
                                         cite=self._cite)
            self.messages.append(self._stream)
            self._append(self._stream)
        self._stream.append(fragment)

    # -- progress ------------------------------------------------------------------------

    def _progress_start(self):
        self._progress_t0 = time.monotonic()
        self._progress_state = (0, 1, "")
        self.progress.value = 0
        self.progress.max = 1
        self.progress.bar_style = "info"
        self.progress_label.value = '<span class="cb-spinner"></span>benchmark starting…'
        self.progress_row.layout.display = "flex"
        self._start_ticker()

    def _start_ticker(self):
        # The label's elapsed time moves between the engine's reports (a subject's
        # folds can take a while), so a running benchmark never looks frozen.
        def tick():
            while self._progress_t0 is not None and not self.closed:
                time.sleep(1.0)
                if self._progress_t0 is not None:
                    self._progress_label()

        if self._progress_ticker is None or not self._progress_ticker.is_alive():
            self._progress_ticker = threading.Thread(target=tick, name="chatbci-progress",
                                                     daemon=True)
            self._progress_ticker.start()

    def _on_progress(self, done, total, text):
        total = max(int(total), 1)
        done = min(int(done), total)
        if self.progress.max != total:
            self.progress.value = min(self.progress.value, total)
            self.progress.max = total
        self.progress.value = done
        self._progress_state = (done, total, str(text))
        if self._progress_t0 is None:  # progress from a call the panel did not see start
            self._progress_t0 = time.monotonic()
            self.progress_row.layout.display = "flex"
            self._start_ticker()
        self._progress_label()

    def _progress_label(self):
        done, total, text = self._progress_state
        t0 = self._progress_t0
        elapsed = time.monotonic() - t0 if t0 is not None else 0.0
        eta = ""
        if 0 < done < total:
            # Remaining steps at the pace of those done so far.
            eta = f" · about {_duration(elapsed / done * (total - done))} left"
        now = f"{esc(text)} · " if text else ""
        stopping = self.session.stop.is_set()
        spinner = "" if stopping else '<span class="cb-spinner"></span>'
        what = "stopping… " if stopping else ""
        self.progress_label.value = (f"{spinner}{what}{now}step {done} of {total} · "
                                     f"{_duration(elapsed)} elapsed{'' if stopping else eta}")

    def _progress_end(self, ok, error=None):
        self._progress_t0 = None
        done, total = self.progress.value, self.progress.max
        if ok:
            self.progress.value = self.progress.max
            self.progress.bar_style = "success"
            self.progress_label.value = f"benchmark finished ({self.progress.max} steps)"
        elif render.is_stop_message(error) or self.session.stop.is_set():
            self.progress.bar_style = "warning"
            self.progress_label.value = (f"stopped at step {done} of {total} · finished "
                                         "results are kept; running it again resumes")
        else:
            self.progress.bar_style = "danger"
            self.progress_label.value = (f"failed at step {done} of {total} "
                                         "(the reason is on the run_benchmark line above)")

    # -- the worker ------------------------------------------------------------------------

    def _submit(self, fn, **kw):
        if self.closed:
            raise RuntimeError("this chat panel is closed; open a new one with chatbci.chat().")
        job = _Job(fn, **kw)
        with self._cond:
            self._pending += 1
            self._set_busy(True)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="chatbci-panel",
                                                daemon=True)
                self._worker.start()
            self._queue.put(job)
        return job

    def _work(self):
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._mirror = job.mirror
            self.session.stop.clear()
            self.stop_button.description = "Stop"
            self.stop_button.disabled = False
            try:
                job.fn()
            except Exception as err:  # noqa: BLE001 - shown in the panel, never raised
                detail = "".join(traceback.format_exception_only(type(err), err)).strip()
                shown = job.on_error(err) if job.on_error is not None else False
                if not shown:  # else the card that asked for the work says it
                    self._show_error(detail)
            finally:
                self._close_stream()
                self._flush_results()
                self._mirror = None
                with self._cond:
                    self._pending -= 1
                    if self._pending == 0:
                        self._set_busy(False)
                    self._cond.notify_all()

    def _set_busy(self, busy):
        self.busy = busy
        self.input.locked = busy
        self.send_button.disabled = busy
        for b in self.quick:
            b.disabled = busy
        self.stop_button.disabled = not busy
        if busy:
            self.status.value = ('<span class="cb-spinner"></span>working… the notebook stays '
                                 "usable meanwhile")
        else:
            self.stop_button.description = "Stop"
            self.status.value = ""

    def wait_idle(self, timeout=None) -> bool:
        """Wait until all queued work is done; False if ``timeout`` s passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    # -- actions ------------------------------------------------------------------------

    def _on_send_click(self, _=None):
        text = self.input.value.strip()
        if not text:
            return
        self.input.value = ""
        self._send_job(text)

    def _on_submit(self, text):
        # Enter in the box. The box does not send while the panel is busy (locked);
        # one that raced the lock is queued behind the work, as a Send would be.
        if text.strip():
            self._send_job(text.strip())

    def _send_job(self, text, mirror=None):
        def job():
            self.progress_row.layout.display = "none"
            turn = self.session.send(text, on_delta=self._on_delta)
            self.last_turn = turn
            self._show_notices(turn)
            said = any(e.kind == "message" and e.actor.startswith("ai:") for e in turn.events)
            if turn.text and not said:  # the model could not be reached: say so
                self._close_stream()
                # The bubble says the error and what to do: its box would say it twice.
                for box in [e for e in self.errors if e.message and e.message in turn.text]:
                    self._remove(box)
                label, offline = ai_label(self.session.ai)
                bubble = MessageBubble("ai", label, turn.text, offline=offline, failed=True,
                                       when=datetime.now().strftime("%H:%M"))
                self.messages.append(bubble)
                self._append(bubble)

        return self._submit(job, mirror=mirror, label=text)

    def send(self, text, wait=True, timeout=None, *, mirror=None):
        """Send a message, as if typed and sent; with ``wait``, return the Turn.

        Parameters
        ----------
        text : str
        wait : bool
            Block until the assistant (and anything queued before) is done.
        timeout : float | None
            With ``wait``: give up waiting after this many seconds
            (``TimeoutError``); the work goes on.
        mirror : ipywidgets.Box | None
            Also show this turn's widgets there (``%%chat`` shows them under its
            cell).
        """
        if isinstance(text, dict):  # ipywidgets' own Widget.send (custom messages)
            return super().send(text, wait if isinstance(wait, list) else None)
        if not isinstance(text, str) or not text.strip():
            raise ValueError("send() needs a non-empty message.")
        self._send_job(text.strip(), mirror=mirror)
        if wait:
            if not self.wait_idle(timeout):
                raise TimeoutError(f"the assistant is still working after {timeout} s.")
            return self.last_turn
        return None

    def _decide(self, card, verdict, rationale, action):
        session = self.session

        def job():
            self.progress_row.layout.display = "none"
            if verdict == "accept":
                turn = session.approve(card.id, rationale)
            elif verdict == "reject":
                turn = session.reject(card.id, rationale)
            else:
                turn = session.modify(card.id, rationale=rationale, action=action)
            self.last_turn = turn
            self._show_notices(turn)

        def failed(err):
            card.fail(str(err))
            return True

        def cancelled():
            card.fail("Cancelled by Stop before it ran.")

        self._submit(job, on_error=failed, on_cancel=cancelled, label=f"{verdict} #{card.id}")

    def _show_notices(self, turn):
        """Tell the human what chatbci did to their input (e.g. a secret redacted)."""
        for notice in turn.notices:
            self._append(render.system_line(esc(notice)))

    def _on_stop(self, _=None):
        self.session.stop.set()
        self.stop_button.description = "Stopping…"
        self.stop_button.disabled = True
        # Work queued behind the running job is dropped.
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            if job.on_cancel is not None:
                job.on_cancel()
            with self._cond:
                self._pending -= 1
                if self._pending == 0:
                    self._set_busy(False)
                self._cond.notify_all()
        self.status.value = ('<span class="cb-spinner"></span>stopping… finished benchmark '
                             "results are kept")
        if self._progress_t0 is not None:
            self._progress_label()

    def stop(self):
        """Press Stop: end the running work now; finished benchmark results are kept."""
        self._on_stop()

    def _on_autonomy(self, change):
        if self._syncing or change["new"] == self.session.autonomy:
            return
        try:
            self.session.set_autonomy(change["new"])
        except Exception as err:  # noqa: BLE001
            self._syncing = True
            self.autonomy.value = change["old"]
            self._syncing = False
            self._show_error(f"could not change autonomy: {err}")
            return
        self._autonomy_help()
        notes = self.workspace.journal.events(kind="note", limit=1)
        w = render.note_widget(notes[-1], self.me) if notes else None
        if w is not None:
            self._append(w)

    def _autonomy_help(self):
        tip = AUTONOMY_TIPS[("suggest", "assist", "auto").index(self.session.autonomy)]
        self.autonomy_help.value = esc(tip)

    def set_autonomy(self, level):
        """Change the autonomy level (as if selected; journaled)."""
        self.autonomy.value = level

    def _on_export_menu(self, change):
        fmt = change["new"]
        if not fmt:
            return
        self.export(fmt, wait=False)
        self.export_menu.value = ""

    def export(self, format="md", wait=True, **kwargs):
        """Export the session for a paper (``chatbci.export``); the files are listed here.

        With ``wait``, returns the path(s) written and raises ``RuntimeError``
        if the export failed (the panel shows the error either way).
        """
        failure = []
        self.last_export = None

        def job():
            try:
                from chatbci.export import export
            except ImportError as err:
                raise RuntimeError(
                    f"exports are not available in this installation ({err}).") from err
            out = export(self.workspace, format, **kwargs)
            paths = out if isinstance(out, list) else [out]
            shown = []
            for p in paths:
                p = Path(p)
                try:
                    p = p.relative_to(self.workspace.path)
                except ValueError:
                    pass
                shown.append(f"<code>{esc(p)}</code>")
            self._append(render.system_line(f"Exported <b>{esc(format)}</b>: "
                                            + ", ".join(shown)))
            self.last_export = paths

        self._submit(job, on_error=failure.append, label=f"export {format}")
        if wait:
            self.wait_idle()
            if failure:
                raise RuntimeError(f"export failed: {failure[0]}")
            return self.last_export
        return None

    # -- display & lifetime ------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        # chat() displays the panel; don't show a second copy as the cell's Out[].
        if self._shown and not self._show_again:
            title = self.workspace.config.title
            return {"text/plain": f"<ChatPanel on {title!r}: shown above; panel.show() "
                                  "shows it again>"}
        self._shown, self._show_again = True, False
        return super()._repr_mimebundle_(**kwargs)

    def show(self):
        """Display the panel (again) in the current cell's output."""
        from IPython.display import display

        self._show_again = True
        display(self)

    def close(self):
        """Stop work, end the journal session and close the widgets."""
        if getattr(self, "closed", True):  # closed, or never fully built
            return
        self.closed = True
        self.session.stop.set()
        self._queue.put(None)
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=60)
        try:
            self.session.close()
        finally:
            if self._owns_workspace:
                self.workspace.close()
            global _current
            if _current is self:
                _current = None
            super().close()

    def __repr__(self):
        return (f"ChatPanel({str(self.workspace.path)!r}, model={self.session.backend.model!r}, "
                f"autonomy={self.session.autonomy!r})")


#: The goal a workspace made by :func:`chat` starts with (the human sets the real one).
NEW_GOAL = "Not set yet (edit goal in workspace.toml)"


def _open_or_create(path, create):
    """The workspace at ``path``; with ``create``, a new one where there is none yet.

    Returns ``(workspace, created)``. An existing folder that is not a
    workspace is never turned into one unless it is empty, so a typo cannot
    scatter a journal into an unrelated folder.
    """
    from chatbci.workspace import Workspace
    from chatbci.workspace.errors import WorkspaceNotFoundError

    path = Path(path).expanduser()
    try:
        return Workspace.open(path), False
    except WorkspaceNotFoundError as err:
        if not create:
            raise WorkspaceNotFoundError(
                f"{err} Pass create=True to chatbci.chat() (or --create to %chatbci open) "
                "to start a new workspace there, or check the path.") from None
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise WorkspaceNotFoundError(
                f"{path} exists and is not a chatbci workspace, so no workspace was created "
                "in it (it is not empty). Give the path of a workspace, or a new folder name "
                "to create one.") from None
    title = path.resolve().name or "chatbci study"
    return Workspace.create(path, title=title, goal=NEW_GOAL), True


def chat(path_or_workspace, backend=None, *, human="researcher", n_jobs=-1,
         history=HISTORY_EVENTS, display=True, create=True) -> ChatPanel:
    """Open a chat panel on a workspace and show it.

    Parameters
    ----------
    path_or_workspace : str | os.PathLike | Workspace
        A workspace, its folder, or (with ``create``) a new folder name.
    backend : Backend | "offline" | None
        None: the OpenAI-compatible model configured (OPENAI_API_KEY /
        OPENAI_BASE_URL / workspace.toml), else the offline assistant.
    human : str
        Your name in the journal.
    n_jobs : int
        Parallel jobs for benchmarks.
    history : int
        Newest journal events shown when the panel opens.
    display : bool
        Show the panel in the cell's output (default).
    create : bool
        When ``path_or_workspace`` is a folder that does not exist yet (or an
        empty one), create a workspace there, titled after the folder; the
        panel says so and where. False: raise ``WorkspaceNotFoundError``.

    Returns
    -------
    panel : ChatPanel

    Raises
    ------
    chatbci.workspace.errors.WorkspaceNotFoundError
        No workspace there, and ``create`` is False or the folder holds other
        files.
    """
    from chatbci.workspace import Workspace

    created = False
    target = path_or_workspace
    if not isinstance(path_or_workspace, Workspace):
        target, created = _open_or_create(path_or_workspace, create)
    try:
        panel = ChatPanel(target, backend, human=human, n_jobs=n_jobs, history=history)
    except BaseException:
        if target is not path_or_workspace:
            target.close()
        raise
    if target is not path_or_workspace:
        panel._owns_workspace = True  # opened here: the panel closes it
    if created:
        panel.created = True
        panel._append(render.system_line(
            f"Created a new workspace <b>{esc(target.config.title)}</b> in "
            f"<code>{esc(target.path.resolve())}</code> (there was none). Set its research goal "
            "and datasets in <code>workspace.toml</code> there; the assistant reads them."))
    if display:
        from IPython.display import display as _display

        _display(panel)
    return panel
