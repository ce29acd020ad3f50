"""Journal events as widgets: message bubbles, tool calls, figures and tables.

Everything the panel shows is built here from journal events (live or
reloaded), so a panel opened again on a workspace looks like the one that
wrote it. Human text is escaped; AI text is Markdown rendered by
:func:`chatbci.sanitize.markdown_html` (model output is untrusted: raw HTML
escaped, no remote image, style or frame, only http(s)/mailto links); names
in tables are escaped too. Figures are chatbci's own files, shown by
:func:`figure_widget`.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time

import ipywidgets as widgets

from chatbci.sanitize import terminal_text

#: The offline backend's model name (``ai:offline-rules`` in the journal).
OFFLINE_MODEL = "offline-rules"

#: Rows of a table shown inline before it is cut (the CSV keeps them all).
MAX_TABLE_ROWS = 200

CSS = """
.chatbci-panel { --cb-accent: #2f6fb3; --cb-accent-dark: #1f3b73; --cb-ai: #1a7f37;
  --cb-offline: #9a6700; --cb-border: var(--jp-border-color2, #e1e4e8);
  --cb-muted: var(--jp-ui-font-color2, #6a737d); --cb-text: var(--jp-ui-font-color0, #1f2328);
  --cb-bg: var(--jp-layout-color1, #ffffff); --cb-bg2: var(--jp-layout-color2, #f6f8fa);
  font-family: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  font-size: 13px; color: var(--cb-text); background: var(--cb-bg);
  border: 1px solid var(--cb-border); border-radius: 12px; overflow: hidden;
  max-width: 1000px; box-shadow: 0 1px 3px rgba(27,31,36,.08); }
.chatbci-panel .widget-html-content { line-height: 1.5; font-size: 13px; }
.chatbci-panel .widget-html > .widget-label:empty { display: none; }
.chatbci-log > *, .chatbci-card > *, .chatbci-scroll > *, .chatbci-footer > *,
.chatbci-panel > * { flex-shrink: 0; }
.chatbci-log .widget-html-content, .chatbci-card .widget-html-content { width: 100%; }
.chatbci-header { background: linear-gradient(100deg, var(--cb-accent-dark), var(--cb-accent));
  color: #fff; padding: 10px 16px 8px 16px; }
.chatbci-header .cb-title { font-size: 16px; font-weight: 600; letter-spacing: .2px; }
.chatbci-header .cb-goal { opacity: .92; margin-top: 1px; }
.chatbci-header .cb-meta { margin-top: 6px; display: flex; gap: 6px; flex-wrap: wrap; }
.cb-chip { display: inline-block; border-radius: 999px; padding: 0 9px; font-size: 11.5px;
  line-height: 20px; background: rgba(255,255,255,.18); color: #fff; white-space: nowrap; }
.cb-chip.cb-llm { background: rgba(46,160,67,.85); }
.cb-chip.cb-offline { background: rgba(191,135,0,.9); }
.chatbci-toolbar { padding: 6px 12px; gap: 8px; align-items: center;
  border-bottom: 1px solid var(--cb-border); background: var(--cb-bg2); }
.chatbci-toolbar > * { flex-shrink: 0; }
.chatbci-toolbar > .chatbci-autonomy-help { flex-shrink: 1; }
.chatbci-toolbar .widget-label { color: var(--cb-muted); width: auto; min-width: 0;
  font-size: 12px; margin-right: 0; }
.chatbci-toolbar .widget-toggle-buttons { margin: 0; }
.chatbci-autonomy .widget-toggle-button { font-size: 12px; height: 26px; width: auto;
  padding: 0 14px; margin: 0 0 0 0; border-radius: 0; border: 1px solid var(--cb-border);
  box-shadow: none; background: var(--cb-bg); color: var(--cb-text); }
.chatbci-autonomy .widget-toggle-button:first-child { border-radius: 6px 0 0 6px; }
.chatbci-autonomy .widget-toggle-button:last-child { border-radius: 0 6px 6px 0; }
.chatbci-autonomy .widget-toggle-button + .widget-toggle-button { margin-left: -1px; }
.chatbci-autonomy .widget-toggle-button.mod-active { background: var(--cb-accent);
  color: #fff; border-color: var(--cb-accent); }
.chatbci-autonomy-help { min-width: 0; overflow: hidden; }
.chatbci-autonomy-help .widget-html-content { font-size: 11.5px; color: var(--cb-muted);
  line-height: 1.3; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.chatbci-export select { height: 26px; border-radius: 6px; font-size: 12px; }
.chatbci-scroll { padding: 4px 0; }
.chatbci-log, .chatbci-mirror { padding: 8px 14px 12px 14px; gap: 2px; }
.cb-row { display: flex; margin: 5px 0; }
.cb-row.cb-right { justify-content: flex-end; }
.cb-bubble { max-width: 82%; border-radius: 14px; padding: 7px 12px 8px 12px;
  box-shadow: 0 1px 1px rgba(27,31,36,.06); overflow-wrap: anywhere; }
.cb-bubble.cb-human { background: #dbeafe; color: #0b1f3a; border-bottom-right-radius: 4px; }
.cb-bubble.cb-human .cb-text { white-space: pre-wrap; }
.cb-bubble.cb-ai { background: var(--cb-bg2); border: 1px solid var(--cb-border);
  border-left: 3px solid var(--cb-ai); border-bottom-left-radius: 4px; }
.cb-bubble.cb-ai.cb-offline { border-left-color: var(--cb-offline); }
.cb-bubble.cb-failed { border-left-color: #cf222e; background: #fff5f5; color: #4a0d12; }
.cb-who { font-size: 11px; font-weight: 600; color: var(--cb-muted); margin-bottom: 2px; }
.cb-human .cb-who { color: #1e4e8c; text-align: right; }
.cb-who .cb-when { font-weight: 400; margin-left: 6px; opacity: .8; }
.cb-who .cb-tag { font-weight: 500; font-size: 10.5px; border-radius: 6px; padding: 0 5px;
  margin-left: 5px; background: rgba(154,103,0,.12); color: var(--cb-offline); }
.cb-text p { margin: 0 0 6px 0; } .cb-text p:last-child { margin-bottom: 0; }
.cb-text ul, .cb-text ol { margin: 2px 0 6px 0; padding-left: 20px; }
.cb-text code { background: rgba(127,127,127,.14); border-radius: 4px; padding: 0 4px;
  font-size: 12px; }
.cb-text pre { background: rgba(127,127,127,.1); padding: 6px 8px; border-radius: 6px;
  overflow-x: auto; }
.cb-text .cb-align-left { text-align: left; } .cb-text .cb-align-center { text-align: center; }
.cb-text .cb-align-right { text-align: right; }
.cb-cite { display: inline-block; font-size: 10.5px; line-height: 16px; padding: 0 6px;
  border-radius: 8px; background: rgba(47,111,179,.12); color: var(--cb-accent);
  font-family: var(--jp-code-font-family, monospace); }
.cb-cursor { display: inline-block; width: 7px; height: 14px; background: var(--cb-ai);
  vertical-align: text-bottom; margin-left: 2px; animation: cb-blink 1s step-end infinite; }
@keyframes cb-blink { 50% { opacity: 0; } }
.cb-tool { display: flex; align-items: baseline; gap: 7px; margin: 3px 0 3px 8px;
  font-size: 12px; color: var(--cb-muted); }
.cb-tool .cb-name { font-family: var(--jp-code-font-family, monospace); color: var(--cb-text);
  font-weight: 600; }
.cb-tool .cb-args { font-family: var(--jp-code-font-family, monospace); font-size: 11.5px;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; max-width: 55%; }
.cb-tool .cb-status { white-space: nowrap; }
.cb-tool .cb-icon { width: 12px; text-align: center; }
.cb-tool.cb-ok .cb-icon { color: var(--cb-ai); font-weight: 700; }
.cb-tool.cb-fail .cb-icon { color: #cf222e; font-weight: 700; }
.cb-tool.cb-fail .cb-status { color: #cf222e; }
.cb-tool.cb-running .cb-icon { display: inline-block; animation: cb-spin 1.2s linear infinite; }
@keyframes cb-spin { to { transform: rotate(360deg); } }
.cb-by { font-size: 10.5px; border-radius: 6px; padding: 0 5px; white-space: nowrap;
  background: rgba(127,127,127,.12); }
.cb-system { text-align: center; color: var(--cb-muted); font-size: 11.5px; margin: 6px 0; }
.cb-system b { color: var(--cb-text); font-weight: 600; }
.cb-divider { display: flex; align-items: center; gap: 10px; color: var(--cb-muted);
  font-size: 11.5px; margin: 10px 0 4px 0; }
.cb-divider:before, .cb-divider:after { content: ""; flex: 1;
  border-top: 1px dashed var(--cb-border); }
.cb-error { margin: 4px 0 4px 8px; padding: 5px 10px; border-radius: 8px; font-size: 12px;
  background: #fff1f0; border: 1px solid #ffccc7; color: #82071e; }
.cb-result { margin: 2px 0 8px 8px; }
.cb-result .cb-caption { font-size: 12px; color: var(--cb-muted); margin: 2px 0 4px 0; }
.cb-result .cb-caption b { color: var(--cb-text); }
table.chatbci-table { border-collapse: collapse; font-size: 12.5px; margin: 2px 0 4px 0;
  font-variant-numeric: tabular-nums; background: var(--cb-bg); }
table.chatbci-table th { text-align: left; font-weight: 600; padding: 4px 12px;
  border-bottom: 2px solid var(--cb-border); background: var(--cb-bg2); }
table.chatbci-table td { padding: 3px 12px; border-bottom: 1px solid var(--cb-border);
  white-space: nowrap; }
table.chatbci-table th { white-space: nowrap; }
table.chatbci-table tr:hover td { background: rgba(47,111,179,.06); }
table.chatbci-table caption { caption-side: top; text-align: left; color: var(--cb-muted);
  font-size: 12px; padding-bottom: 4px; }
.cb-result details { margin-top: 4px; font-size: 12px; }
.cb-result details summary { cursor: pointer; color: var(--cb-accent); }
.chatbci-figures { flex-wrap: wrap; gap: 8px; margin: 2px 0 8px 8px; }
.chatbci-figure { border: 1px solid var(--cb-border); border-radius: 8px; background: #fff;
  padding: 4px; object-fit: contain; cursor: zoom-in; }
.chatbci-figure:hover { box-shadow: 0 2px 8px rgba(27,31,36,.15); }
.chatbci-card { border: 1px solid #e3b341; background: #fffbeb; border-radius: 12px;
  padding: 8px 12px 10px 12px; margin: 6px 0 6px 8px; max-width: 88%; gap: 4px; color: #1f2328; }
.chatbci-card.cb-decided-accept { border-color: #4ac26b; background: #f0fff4; }
.chatbci-card.cb-decided-modify { border-color: #54aeff; background: #f0f7ff; }
.chatbci-card.cb-decided-reject { border-color: #d0d7de; background: #f6f8fa; opacity: .85; }
.chatbci-card .cb-card-head { display: flex; justify-content: space-between; align-items: center;
  gap: 8px; }
.chatbci-card .cb-card-title { font-weight: 600; font-size: 13px; }
.chatbci-card .cb-badge { font-size: 11px; border-radius: 999px; padding: 1px 9px;
  font-weight: 600; white-space: nowrap; }
.cb-badge.cb-pending { background: #fff0b3; color: #7d4e00; }
.cb-badge.cb-queued { background: #ddf4ff; color: #0550ae; }
.cb-badge.cb-accept { background: #dafbe1; color: #116329; }
.cb-badge.cb-modify { background: #ddf4ff; color: #0550ae; }
.cb-badge.cb-reject { background: #ffebe9; color: #82071e; }
.chatbci-card .cb-action { font-family: var(--jp-code-font-family, monospace); font-size: 12px;
  background: rgba(255,255,255,.7); border: 1px solid rgba(0,0,0,.06); border-radius: 8px;
  padding: 5px 9px; margin: 5px 0; }
.chatbci-card .cb-action .cb-tool-name { font-weight: 700; color: #0550ae; }
.chatbci-card .cb-action table { border-collapse: collapse; margin-top: 2px; }
.chatbci-card .cb-action td { padding: 0 10px 0 0; vertical-align: top; }
.chatbci-card .cb-action td.cb-k { color: #57606a; }
.chatbci-card .cb-why { font-size: 12.5px; } .chatbci-card .cb-why b { font-weight: 600; }
.chatbci-card .cb-reason { font-size: 11.5px; color: #57606a; margin-top: 2px; }
.chatbci-card .cb-verdict { font-size: 12px; margin-top: 3px; }
.chatbci-card .cb-hint { font-size: 12px; color: #9a6700; }
.chatbci-card .cb-hint.cb-bad { color: #cf222e; }
.chatbci-card .widget-button { border-radius: 6px; font-weight: 600; }
.chatbci-editor { border-top: 1px dashed #d0d7de; padding-top: 6px; margin-top: 2px; gap: 2px; }
.chatbci-editor .widget-label { font-family: var(--jp-code-font-family, monospace);
  font-size: 12px; }
.chatbci-footer { padding: 8px 12px 10px 12px; border-top: 1px solid var(--cb-border);
  background: var(--cb-bg2); gap: 6px; }
.chatbci-input textarea { border-radius: 8px !important; font-size: 13px !important;
  padding: 6px 9px !important; resize: vertical;
  font-family: var(--jp-ui-font-family, system-ui, sans-serif) !important; }
.chatbci-buttons { gap: 6px; }
.chatbci-buttons .widget-button { border-radius: 6px; font-weight: 600; }
.chatbci-quick { gap: 5px; flex-wrap: wrap; }
.chatbci-quick .widget-button { height: 24px; line-height: 22px; font-size: 11.5px;
  border-radius: 999px; padding: 0 11px; width: auto; margin: 0; background: var(--cb-bg);
  border: 1px solid var(--cb-border); color: var(--cb-muted); box-shadow: none; }
.chatbci-quick .widget-button:hover:enabled { color: var(--cb-accent);
  border-color: var(--cb-accent); }
.chatbci-progress { align-items: center; gap: 8px; padding: 0 12px; }
.chatbci-progress .widget-html-content { font-size: 12px; color: var(--cb-muted); }
.chatbci-status .widget-html-content { font-size: 11.5px; color: var(--cb-muted); }
.cb-spinner { display: inline-block; width: 9px; height: 9px; border-radius: 50%;
  border: 2px solid var(--cb-accent); border-right-color: transparent;
  animation: cb-spin .8s linear infinite; vertical-align: -1px; margin-right: 5px; }
"""


# -- text ------------------------------------------------------------------------


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def markdown_html(text: str) -> str:
    """Model Markdown as HTML that loads and runs nothing, ``[tool #id]`` citations as chips.

    The one sanitising renderer (:func:`chatbci.sanitize.markdown_html`),
    shared with the HTML export: raw HTML escaped, images shown as links,
    links only to ``http(s)``/``mailto``, an allow-list pass last.
    """
    from chatbci.sanitize import markdown_html as safe_markdown_html

    return safe_markdown_html(text)


def _when(ev) -> str:
    try:
        return ev.ts.astimezone().strftime("%H:%M")
    except (AttributeError, ValueError, OSError):
        return ""


def ai_label(actor: str) -> tuple[str, bool]:
    """``("Offline assistant", True)`` or ``("AI (gpt-4o)", False)`` for an ``ai:`` actor."""
    model = actor.split(":", 1)[1] if ":" in actor else actor
    if model == OFFLINE_MODEL:
        return "Offline assistant", True
    return f"AI ({model})", False


def strip_label(text: str) -> str:
    """The offline assistant's text without its label (the bubble's header says it)."""
    from chatbci.assistant.offline import LABEL

    if text.startswith(LABEL):
        text = text[len(LABEL):].lstrip(":").lstrip()
    return text


def human_label(actor: str, me: str) -> str:
    return "You" if actor == me else actor.split(":", 1)[-1]


def short_value(value, width=60) -> str:
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def args_inline(args: dict) -> str:
    return " · ".join(f"{k} {short_value(v, 40)}" for k, v in (args or {}).items())


# -- bubbles -----------------------------------------------------------------------


class MessageBubble(widgets.HTML):
    """A chat message: the human's (right, blue) or the AI's (left, Markdown).

    Attributes
    ----------
    role : {"human", "ai", "system"}
    text : str
        The message text (as journaled; for a streaming bubble, so far).
    event_id : int | None
        The journal event, once written.
    """

    def __init__(self, role, label, text="", *, when="", offline=False, event_id=None,
                 streaming=False, failed=False):
        super().__init__(layout=widgets.Layout(width="100%"))
        self.add_class("chatbci-message")
        self.add_class(f"chatbci-message-{role}")
        self.role, self.label, self.when = role, label, when
        self.offline, self.failed = offline, failed
        self.event_id = event_id
        self.text = text
        self.streaming = streaming
        self._last = 0.0
        self._lock = threading.Lock()
        self._render()

    def _render(self):
        tag = ('<span class="cb-tag">rule-based, not an LLM</span>'
               if self.role == "ai" and self.offline else "")
        who = (f'<div class="cb-who">{esc(self.label)}{tag}'
               f'<span class="cb-when">{esc(self.when)}</span></div>')
        if self.role == "human":
            body = f'<div class="cb-text">{esc(self.text)}</div>'
            self.value = (f'<div class="cb-row cb-right"><div class="cb-bubble cb-human">'
                          f"{who}{body}</div></div>")
            return
        shown = strip_label(self.text) if self.offline else self.text
        if self.streaming:
            body = (f'<div class="cb-text"><p style="white-space:pre-wrap">'
                    f'{esc(terminal_text(shown))}'
                    '<span class="cb-cursor"></span></p></div>')
        else:
            body = f'<div class="cb-text">{markdown_html(shown)}</div>'
        cls = "cb-bubble cb-ai" + (" cb-offline" if self.offline else "") + \
            (" cb-failed" if self.failed else "")
        self.value = f'<div class="cb-row"><div class="{cls}">{who}{body}</div></div>'

    def append(self, fragment, min_interval=0.06):
        """Add streamed text (re-rendered at most every ``min_interval`` s)."""
        with self._lock:
            self.text += fragment
            now = time.monotonic()
            if now - self._last >= min_interval:
                self._last = now
                self._render()

    def finish(self, text=None, event=None, label=None):
        """End streaming: render the final text as Markdown."""
        with self._lock:
            if text is not None:
                self.text = text
            if event is not None:
                self.event_id = event.id
                self.when = _when(event) or self.when
            if label is not None:
                self.label = label
            self.streaming = False
            self._render()


def message_widget(ev, me) -> MessageBubble:
    text = ev.payload.get("text", "")
    if ev.actor.startswith("human:"):
        return MessageBubble("human", human_label(ev.actor, me), text, when=_when(ev),
                             event_id=ev.id)
    label, offline = ai_label(ev.actor)
    return MessageBubble("ai", label, text, when=_when(ev),
                         offline=offline, event_id=ev.id)


def system_line(html_text: str) -> widgets.HTML:
    w = widgets.HTML(f'<div class="cb-system">{html_text}</div>',
                     layout=widgets.Layout(width="100%"))
    w.add_class("chatbci-system")
    return w


def divider(text: str) -> widgets.HTML:
    w = widgets.HTML(f'<div class="cb-divider">{esc(text)}</div>',
                     layout=widgets.Layout(width="100%"))
    w.add_class("chatbci-divider")
    return w


def error_widget(message: str) -> widgets.HTML:
    w = widgets.HTML(f'<div class="cb-error">⚠ {esc(message)}</div>',
                     layout=widgets.Layout(width="100%"))
    w.add_class("chatbci-error")
    w.message = message
    return w


def note_widget(ev, me):
    """Settings changes worth seeing in the conversation (autonomy), else None."""
    p = ev.payload
    if p.get("op") != "configure":
        return None
    change = (p.get("changes") or {}).get("autonomy")
    if not change:
        return None
    who = "you" if ev.actor == me else esc(ev.actor.split(":", 1)[-1])
    return system_line(f"Autonomy changed from <b>{esc(change.get('from'))}</b> to "
                       f"<b>{esc(change.get('to'))}</b> by {who} · {esc(_when(ev))}")


# -- tool calls ---------------------------------------------------------------------


def _result_text(tool, ok, summary) -> str:
    if not ok:
        err = summary.get("error") if isinstance(summary, dict) else summary
        return f"failed: {short_value(err, 160)}"
    if not isinstance(summary, dict):
        return "done"
    if tool == "run_benchmark" and summary.get("scores"):
        best = summary.get("best")
        score = summary["scores"].get(best, {}).get("mean")
        cached = summary.get("from_cache") or 0
        extra = f" · {cached} from cache" if cached else ""
        return f"best {best} {score:.3f}{extra}" if score is not None else "done"
    if tool == "list_datasets":
        return f"{summary.get('n_datasets')} datasets"
    if tool == "show_results":
        return f"{len(summary.get('results') or [])} results"
    if tool == "compare_pipelines":
        return "; ".join(f"best {c.get('best')}" for c in summary.get("comparisons") or [])
    if tool == "explore_subject":
        return f"subject {summary.get('subject')} explored"
    if tool == "search_knowledge":
        return f"{len(summary.get('notes') or [])} notes"
    if tool == "add_note":
        return f"note {summary.get('note_id')} added"
    if tool == "define_pipeline":
        return f"pipeline {summary.get('name')} saved"
    return "done"


class ToolCallView(widgets.HTML):
    """One compact line per tool call: name, arguments, and its status."""

    def __init__(self, ev, me):
        super().__init__(layout=widgets.Layout(width="100%"))
        self.add_class("chatbci-toolcall")
        p = ev.payload
        self.event_id = ev.id
        self.tool = p.get("tool", "?")
        self.args = p.get("args") or {}
        self.started = ev.ts
        self.actor = ev.actor
        if ev.actor.startswith("human:"):
            self.by = "approved by you" if ev.actor == me else \
                f"approved by {ev.actor.split(':', 1)[-1]}"
        else:
            self.by = ""
        self.status = "running"
        self.ok = None
        self._render("running…")

    def _render(self, status_text):
        icon = {"running": "⚙", "ok": "✓", "fail": "✗", "unknown": "?"}[self.status]
        by = f'<span class="cb-by">{esc(self.by)}</span>' if self.by else ""
        args = args_inline(self.args)
        self.value = (f'<div class="cb-tool cb-{self.status}"><span class="cb-icon">{icon}</span>'
                      f'<span class="cb-name">{esc(self.tool)}</span>'
                      f'<span class="cb-args" title="{esc(args)}">{esc(args)}</span>'
                      f'<span class="cb-status">{esc(status_text)}</span>{by}</div>')

    def done(self, result_ev):
        p = result_ev.payload
        self.ok = bool(p.get("ok", True))
        self.status = "ok" if self.ok else "fail"
        try:
            secs = (result_ev.ts - self.started).total_seconds()
            took = f" · {secs:.1f} s" if secs >= 0.05 else ""
        except (TypeError, AttributeError):
            took = ""
        self._render(_result_text(self.tool, self.ok, p.get("summary")) + took)

    def interrupted(self):
        self.status = "unknown"
        self._render("no result recorded")


# -- results ------------------------------------------------------------------------


def short_dataset(name) -> str:
    """SimulatedMI's code carries a hash of its parameters: not for reading."""
    return re.sub(r"^(SimulatedMI)-[0-9a-f]{6,}$", r"\1", str(name))


def styled_table(df, caption=None, highlight=None, precision=3) -> str:
    """A pandas table as HTML through Styler (numbers to ``precision`` digits)."""
    shown = df.head(MAX_TABLE_ROWS)
    if "dataset" in shown.columns:
        shown = shown.assign(dataset=shown["dataset"].map(short_dataset))
    # Cells and headers can hold names the model chose (pipelines): escaped,
    # as Styler does not escape by default.
    styler = (shown.style.format(precision=precision, na_rep="–", escape="html")
              .format_index(escape="html", axis=1).hide(axis="index"))
    styler = styler.set_table_attributes('class="chatbci-table"')
    if highlight is not None:
        column, value = highlight
        if column in shown.columns:
            styler = styler.apply(
                lambda row: ["font-weight:600;background:rgba(46,160,67,.12)"
                             if row[column] == value else "" for _ in row], axis=1)
    if caption:
        styler = styler.set_caption(caption)
    out = styler.to_html()
    if len(df) > MAX_TABLE_ROWS:
        out += (f'<div class="cb-caption">first {MAX_TABLE_ROWS} of {len(df)} rows '
                "(the CSV has them all)</div>")
    return out


def _read_csv(path):
    import pandas as pd

    return pd.read_csv(path)


def _result_html(html_text) -> widgets.HTML:
    w = widgets.HTML(f'<div class="cb-result">{html_text}</div>',
                     layout=widgets.Layout(width="100%"))
    w.add_class("chatbci-result")
    return w


def benchmark_widgets(summary, artifacts, root):
    """Scores table of a benchmark (+ per-subject scores folded away)."""
    import pandas as pd

    scores = summary.get("scores") or {}
    rows = [{"pipeline": name, "mean": s.get("mean"), "sd": s.get("sd"),
             "subjects": s.get("n_subjects")} for name, s in scores.items()]
    df = pd.DataFrame(rows).sort_values("mean", ascending=False)
    subjects = summary.get("subjects") or []
    subj = (f"{subjects[0]}–{subjects[-1]}" if len(subjects) > 2 and
            list(subjects) == list(range(subjects[0], subjects[-1] + 1))
            else ", ".join(map(str, subjects)))
    dataset = short_dataset(summary.get("dataset", ""))
    caption = (f"<b>{esc(summary.get('evaluation', ''))}</b> on <b>{esc(dataset)}</b>, "
               f"subjects {esc(subj)} · {esc(summary.get('metric', 'score'))} "
               f"(mean ± sd over subjects)")
    body = f'<div class="cb-caption">{caption}</div>' + styled_table(
        df.rename(columns={"mean": f"mean {summary.get('metric', '')}".strip()}),
        highlight=("pipeline", summary.get("best")))
    for rel in artifacts:
        if rel.endswith(".csv") and (root / rel).is_file():
            try:
                full = _read_csv(root / rel)
                per = full.pivot_table(index=["subject", "session"], columns="pipeline",
                                       values="score").reset_index()
                per.columns.name = None
                body += ("<details><summary>Scores per subject and session</summary>"
                         + styled_table(per) + "</details>")
            except Exception:  # noqa: BLE001 - the summary table is already there
                pass
    return [_result_html(body)]


def figure_widget(path) -> widgets.Image:
    img = widgets.Image(value=path.read_bytes(), format="png",
                        layout=widgets.Layout(max_width="100%", max_height="340px",
                                              width="auto", height="auto"))
    img.add_class("chatbci-figure")
    img.path = str(path)
    return img


def list_datasets_widgets(summary):
    import pandas as pd

    rows = summary.get("datasets") or []
    if not rows:
        return []
    df = pd.DataFrame(rows)
    if "classes" in df:
        df["classes"] = df["classes"].map(lambda c: ", ".join(c) if isinstance(c, list) else c)
    body = (f'<div class="cb-caption"><b>{len(df)}</b> motor-imagery datasets</div>'
            "<details><summary>Show the table</summary>"
            + styled_table(df, precision=1) + "</details>")
    return [_result_html(body)]


def comparison_widgets(summary):
    """Paired tests against the best pipeline, one row per comparison."""
    import pandas as pd

    rows = []
    for c in summary.get("comparisons") or []:
        for pair in c.get("vs_best") or []:
            rows.append({"dataset": c.get("dataset"), "evaluation": c.get("evaluation"),
                         "best": c.get("best"), "best mean": c.get("best_mean"),
                         "vs": pair.get("worse"), "p": pair.get("p"), "SMD": pair.get("smd"),
                         "test": c.get("test"), "subjects": c.get("n_subjects")})
    if not rows:
        return []
    caption = ('<div class="cb-caption">Paired tests of the best pipeline against each of '
               "the others (MOABB; SMD: standardised mean difference)</div>")
    return [_result_html(caption + styled_table(pd.DataFrame(rows)))]


def result_widgets(ev, root):
    """Widgets for a tool result: tables (pandas, styled) and figures."""
    p = ev.payload
    if not p.get("ok", True):
        return []
    tool = p.get("tool")
    summary = p.get("summary") or {}
    artifacts = [a for a in p.get("artifacts") or []]
    out = []
    if tool == "run_benchmark" and isinstance(summary, dict) and summary.get("scores"):
        return benchmark_widgets(summary, artifacts, root)
    if tool == "list_datasets" and isinstance(summary, dict):
        return list_datasets_widgets(summary)
    if tool == "compare_pipelines" and isinstance(summary, dict):
        out.extend(comparison_widgets(summary))
    figures = []
    for rel in artifacts:
        path = root / rel
        if not path.is_file():
            out.append(_result_html(f'<div class="cb-caption">missing file {esc(rel)}</div>'))
        elif rel.endswith(".png"):
            figures.append(figure_widget(path))
        elif rel.endswith(".csv"):
            try:
                df = _read_csv(path)
            except Exception as err:  # noqa: BLE001
                out.append(_result_html(f'<div class="cb-caption">cannot read {esc(rel)}: '
                                        f"{esc(err)}</div>"))
                continue
            best = None
            if {"pipeline", "mean"} <= set(df.columns) and len(df):
                best = ("pipeline", df.sort_values("mean", ascending=False)["pipeline"].iloc[0])
            out.append(_result_html(styled_table(df, highlight=best)))
        else:
            out.append(_result_html(f'<div class="cb-caption">file {esc(rel)}</div>'))
    if figures:
        box = widgets.HBox(figures, layout=widgets.Layout(width="100%"))
        box.add_class("chatbci-figures")
        out.append(box)
    return out
