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

import base64
import html
import json
import re
import secrets
import threading
import time

import ipywidgets as widgets

from chatbci.sanitize import terminal_text

#: The offline backend's model name (``ai:offline-rules`` in the journal).
OFFLINE_MODEL = "offline-rules"

#: Rows of a table shown inline before it is cut (the CSV keeps them all).
MAX_TABLE_ROWS = 200

CSS = """
.chatbci-panel { --cb-accent: var(--jp-brand-color1, #1976d2);
  --cb-ok: var(--jp-success-color1, #388e3c); --cb-warn: var(--jp-warn-color1, #f57c00);
  --cb-bad: var(--jp-error-color1, #d32f2f); --cb-info: var(--jp-info-color1, #0097a7);
  --cb-border: var(--jp-border-color2, #e0e0e0); --cb-muted: var(--jp-ui-font-color2, #757575);
  --cb-text: var(--jp-ui-font-color1, rgba(0,0,0,.87));
  --cb-strong: var(--jp-ui-font-color0, rgba(0,0,0,1));
  --cb-bg: var(--jp-layout-color1, #ffffff); --cb-bg2: var(--jp-layout-color2, #eeeeee);
  --cb-bg0: var(--jp-layout-color0, #ffffff);
  font-family: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif);
  font-size: 13px; color: var(--cb-text); background: var(--cb-bg);
  border: 1px solid var(--cb-border); border-radius: 10px; overflow: hidden;
  max-width: 1000px; min-width: 0; box-sizing: border-box; }
.chatbci-panel *, .chatbci-panel *::before, .chatbci-panel *::after { box-sizing: border-box; }
/* ipywidgets boxes scroll on overflow and give every child a 2px side margin: inside the
   panel nothing may be wider than its column, so no box shows a horizontal scrollbar. */
.chatbci-panel .widget-box, .chatbci-panel .widget-html, .chatbci-panel .widget-html-content {
  overflow-x: hidden; min-width: 0; max-width: 100%; }
.chatbci-panel .widget-html, .chatbci-panel .widget-box { margin-left: 0; margin-right: 0; }
.chatbci-panel .widget-html-content { line-height: 1.5; font-size: 13px; color: var(--cb-text);
  white-space: normal; }
.chatbci-panel .widget-html > .widget-label:empty { display: none; }
.chatbci-log > *, .chatbci-card > *, .chatbci-scroll > *, .chatbci-footer > *,
.chatbci-panel > * { flex-shrink: 0; }
.chatbci-log .widget-html-content, .chatbci-card .widget-html-content { width: 100%; }
.chatbci-header { background: var(--cb-bg2); color: var(--cb-strong);
  border-top: 3px solid var(--cb-accent); padding: 8px 14px 7px 14px; }
.chatbci-header .cb-title { font-size: 15px; font-weight: 600; color: var(--cb-strong); }
.chatbci-header .cb-goal { color: var(--cb-text); margin-top: 1px; }
.chatbci-header .cb-meta { margin-top: 5px; display: flex; gap: 6px; flex-wrap: wrap; }
.cb-chip { display: inline-block; border-radius: 999px; padding: 0 9px; font-size: 11.5px;
  line-height: 20px; background: var(--cb-bg); color: var(--cb-text);
  border: 1px solid var(--cb-border); max-width: 100%; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.cb-chip.cb-llm { border-color: var(--cb-ok); color: var(--cb-ok); }
.cb-chip.cb-offline { border-color: var(--cb-warn); color: var(--cb-warn); }
.chatbci-toolbar { padding: 6px 12px; gap: 8px; align-items: center; flex-wrap: wrap;
  border-bottom: 1px solid var(--cb-border); background: var(--cb-bg2); }
.chatbci-toolbar > * { flex-shrink: 0; }
.chatbci-toolbar > .chatbci-autonomy-help { flex: 1 1 160px; }
.chatbci-toolbar .widget-label { color: var(--cb-muted); width: auto; min-width: 0;
  font-size: 12px; margin-right: 0; }
.chatbci-toolbar .widget-toggle-buttons { margin: 0; }
.chatbci-autonomy .widget-toggle-button { font-size: 12px; height: 26px; width: auto;
  padding: 0 12px; margin: 0; border-radius: 0; border: 1px solid var(--cb-border);
  box-shadow: none; background: var(--cb-bg); color: var(--cb-text); }
.chatbci-autonomy .widget-toggle-button:first-child { border-radius: 6px 0 0 6px; }
.chatbci-autonomy .widget-toggle-button:last-child { border-radius: 0 6px 6px 0; }
.chatbci-autonomy .widget-toggle-button + .widget-toggle-button { margin-left: -1px; }
.chatbci-autonomy .widget-toggle-button.mod-active { background: var(--cb-accent);
  color: var(--jp-ui-inverse-font-color0, #fff); border-color: var(--cb-accent); }
.chatbci-autonomy-help { min-width: 0; overflow: hidden; }
.chatbci-autonomy-help .widget-html-content { font-size: 11.5px; color: var(--cb-muted);
  line-height: 1.3; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.chatbci-export select { height: 26px; border-radius: 6px; font-size: 12px;
  background: var(--cb-bg); color: var(--cb-text); }
.chatbci-scroll { padding: 4px 0; overflow-x: hidden; }
.chatbci-log, .chatbci-mirror { padding: 8px 12px 12px 12px; gap: 2px; }
.cb-row { display: flex; margin: 5px 0; min-width: 0; }
.cb-row.cb-right { justify-content: flex-end; }
.cb-bubble { max-width: 86%; min-width: 0; border-radius: 12px; padding: 7px 12px 8px 12px;
  overflow-wrap: anywhere; color: var(--cb-text); }
.cb-bubble.cb-human { background: color-mix(in srgb, var(--cb-accent) 16%, var(--cb-bg));
  border: 1px solid color-mix(in srgb, var(--cb-accent) 35%, var(--cb-bg));
  border-bottom-right-radius: 4px; }
.cb-bubble.cb-human .cb-text { white-space: pre-wrap; }
.cb-bubble.cb-ai { background: var(--cb-bg2); border: 1px solid var(--cb-border);
  border-left: 3px solid var(--cb-ok); border-bottom-left-radius: 4px; }
.cb-bubble.cb-ai.cb-offline { border-left-color: var(--cb-warn); }
.cb-bubble.cb-failed { border-left-color: var(--cb-bad);
  background: color-mix(in srgb, var(--cb-bad) 10%, var(--cb-bg)); }
.cb-who { font-size: 11px; font-weight: 600; color: var(--cb-muted); margin-bottom: 2px; }
.cb-human .cb-who { text-align: right; }
.cb-who .cb-when { font-weight: 400; margin-left: 6px; opacity: .8; }
.cb-who .cb-tag { font-weight: 500; font-size: 10.5px; border-radius: 6px; padding: 0 5px;
  margin-left: 5px; background: color-mix(in srgb, var(--cb-warn) 15%, transparent);
  color: var(--cb-warn); }
.cb-text p { margin: 0 0 6px 0; } .cb-text p:last-child { margin-bottom: 0; }
.cb-text ul, .cb-text ol { margin: 2px 0 6px 0; padding-left: 20px; }
.cb-text code { background: color-mix(in srgb, var(--cb-muted) 16%, transparent);
  border-radius: 4px; padding: 0 4px; font-size: 12px; }
.cb-text pre { background: color-mix(in srgb, var(--cb-muted) 12%, transparent);
  padding: 6px 8px; border-radius: 6px; overflow-x: auto; white-space: pre-wrap; }
.cb-text .cb-align-left { text-align: left; } .cb-text .cb-align-center { text-align: center; }
.cb-text .cb-align-right { text-align: right; }
.cb-text a { color: var(--jp-content-link-color, var(--cb-accent)); }
.cb-cite { display: inline-block; font-size: 10.5px; line-height: 16px; padding: 0 6px;
  border-radius: 8px; background: color-mix(in srgb, var(--cb-accent) 14%, transparent);
  color: var(--cb-accent); font-family: var(--jp-code-font-family, monospace); }
label.cb-cite { cursor: pointer; text-decoration: underline dotted; }
label.cb-cite:hover { background: color-mix(in srgb, var(--cb-accent) 26%, transparent); }
.cb-cite-toggle { display: none; }
.cb-cite-detail { display: none; margin-top: 6px; padding: 6px 9px; border-radius: 8px;
  border: 1px solid var(--cb-border); border-left: 3px solid var(--cb-accent);
  background: var(--cb-bg); font-size: 12px; overflow-x: auto; }
.cb-cite-detail .cb-cite-head { font-weight: 600; color: var(--cb-strong); margin-bottom: 3px; }
.cb-cite-detail img { max-width: 31%; max-height: 180px; margin: 4px 4px 0 0;
  border: 1px solid var(--cb-border); border-radius: 6px; background: #fff; }
.cb-cite-detail dl { margin: 2px 0; display: grid; grid-template-columns: max-content 1fr;
  gap: 0 10px; } .cb-cite-detail dt { color: var(--cb-muted); } .cb-cite-detail dd { margin: 0; }
.cb-c0:checked ~ .cb-d0, .cb-c1:checked ~ .cb-d1, .cb-c2:checked ~ .cb-d2, .cb-c3:checked ~ .cb-d3, .cb-c4:checked ~ .cb-d4, .cb-c5:checked ~ .cb-d5, .cb-c6:checked ~ .cb-d6, .cb-c7:checked ~ .cb-d7, .cb-c8:checked ~ .cb-d8, .cb-c9:checked ~ .cb-d9, .cb-c10:checked ~ .cb-d10, .cb-c11:checked ~ .cb-d11
  { display: block; }
.cb-cursor { display: inline-block; width: 7px; height: 14px; background: var(--cb-ok);
  vertical-align: text-bottom; margin-left: 2px; animation: cb-blink 1s step-end infinite; }
@keyframes cb-blink { 50% { opacity: 0; } }
.cb-tool { display: flex; flex-wrap: wrap; align-items: baseline; gap: 2px 7px;
  margin: 3px 0 3px 8px; font-size: 12px; color: var(--cb-muted); min-width: 0; }
.cb-tool .cb-name { font-family: var(--jp-code-font-family, monospace); color: var(--cb-text);
  font-weight: 600; }
.cb-tool .cb-args { font-family: var(--jp-code-font-family, monospace); font-size: 11.5px;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; max-width: 55%;
  min-width: 0; }
.cb-tool .cb-status { overflow-wrap: anywhere; }
.cb-tool .cb-icon { width: 12px; text-align: center; }
.cb-tool.cb-ok .cb-icon { color: var(--cb-ok); font-weight: 700; }
.cb-tool.cb-fail { padding: 4px 8px; border-radius: 8px; color: var(--cb-text);
  background: color-mix(in srgb, var(--cb-bad) 10%, transparent);
  border: 1px solid color-mix(in srgb, var(--cb-bad) 45%, transparent); }
.cb-tool.cb-fail .cb-icon, .cb-tool.cb-fail .cb-state { color: var(--cb-bad); font-weight: 700; }
.cb-tool.cb-stopped .cb-icon, .cb-tool.cb-stopped .cb-state { color: var(--cb-warn);
  font-weight: 700; }
.cb-tool details.cb-detail summary { cursor: pointer; color: var(--cb-muted); }
.cb-tool .cb-detail { flex-basis: 100%; margin-left: 19px; color: var(--cb-text);
  overflow-wrap: anywhere; }
.cb-tool.cb-running .cb-icon { display: inline-block; animation: cb-spin 1.2s linear infinite; }
@keyframes cb-spin { to { transform: rotate(360deg); } }
.cb-by { font-size: 10.5px; border-radius: 6px; padding: 0 5px; white-space: nowrap;
  background: color-mix(in srgb, var(--cb-muted) 14%, transparent); }
.cb-system { text-align: center; color: var(--cb-muted); font-size: 11.5px; margin: 6px 0; }
.cb-system b { color: var(--cb-strong); font-weight: 600; }
.cb-divider { display: flex; align-items: center; gap: 10px; color: var(--cb-muted);
  font-size: 11.5px; margin: 10px 0 4px 0; }
.cb-divider:before, .cb-divider:after { content: ""; flex: 1;
  border-top: 1px dashed var(--cb-border); }
.cb-error { margin: 4px 0 4px 8px; padding: 5px 10px; border-radius: 8px; font-size: 12px;
  color: var(--cb-text); background: color-mix(in srgb, var(--cb-bad) 10%, transparent);
  border: 1px solid color-mix(in srgb, var(--cb-bad) 45%, transparent);
  overflow-wrap: anywhere; }
.cb-error .cb-icon { color: var(--cb-bad); font-weight: 700; }
.cb-result { margin: 2px 0 8px 8px; overflow-x: auto; }
.cb-result .cb-caption { font-size: 12px; color: var(--cb-muted); margin: 2px 0 4px 0; }
.cb-result .cb-caption b { color: var(--cb-strong); }
table.chatbci-table { border-collapse: collapse; font-size: 12.5px; margin: 2px 0 4px 0;
  font-variant-numeric: tabular-nums; background: var(--cb-bg); color: var(--cb-text); }
table.chatbci-table th { text-align: left; font-weight: 600; padding: 4px 10px;
  border-bottom: 2px solid var(--cb-border); background: var(--cb-bg2); }
table.chatbci-table td { padding: 3px 10px; border-bottom: 1px solid var(--cb-border);
  white-space: nowrap; }
table.chatbci-table th { white-space: nowrap; }
table.chatbci-table tr:hover td { background: color-mix(in srgb, var(--cb-accent) 7%,
  transparent); }
table.chatbci-table caption { caption-side: top; text-align: left; color: var(--cb-muted);
  font-size: 12px; padding-bottom: 4px; }
.cb-result details { margin-top: 4px; font-size: 12px; }
.cb-result details summary { cursor: pointer; color: var(--cb-accent); }
.chatbci-figures { flex-wrap: wrap; gap: 8px; margin: 2px 0 8px 8px; }
/* Figures are matplotlib PNGs on white: a white mat keeps their axes readable. */
.chatbci-figure { border: 1px solid var(--cb-border); border-radius: 8px; background: #fff;
  padding: 4px; object-fit: contain; cursor: zoom-in; min-width: 0; }
.chatbci-card { border: 1px solid var(--cb-warn);
  background: color-mix(in srgb, var(--cb-warn) 9%, var(--cb-bg)); border-radius: 10px;
  padding: 8px 12px 10px 12px; margin: 6px 0 6px 8px; max-width: calc(100% - 8px);
  gap: 4px; color: var(--cb-text); }
.chatbci-card.cb-decided-accept { border-color: var(--cb-ok);
  background: color-mix(in srgb, var(--cb-ok) 8%, var(--cb-bg)); }
.chatbci-card.cb-decided-modify { border-color: var(--cb-accent);
  background: color-mix(in srgb, var(--cb-accent) 8%, var(--cb-bg)); }
.chatbci-card.cb-decided-reject { border-color: var(--cb-border); background: var(--cb-bg2); }
.chatbci-card .cb-card-head { display: flex; flex-wrap: wrap; justify-content: space-between;
  align-items: center; gap: 4px 8px; }
.chatbci-card .cb-card-title { font-weight: 600; font-size: 13px; color: var(--cb-strong); }
.chatbci-card .cb-card-title .cb-from { font-weight: 400; color: var(--cb-muted); }
.chatbci-card .cb-badge { font-size: 11px; border-radius: 999px; padding: 1px 9px;
  font-weight: 600; white-space: nowrap; border: 1px solid currentColor; }
.cb-badge.cb-pending { color: var(--cb-warn); }
.cb-badge.cb-queued { color: var(--cb-info); }
.cb-badge.cb-accept { color: var(--cb-ok); }
.cb-badge.cb-modify { color: var(--cb-accent); }
.cb-badge.cb-reject { color: var(--cb-muted); }
.chatbci-card .cb-action { font-family: var(--jp-code-font-family, monospace); font-size: 12px;
  background: var(--cb-bg); color: var(--cb-text); border: 1px solid var(--cb-border);
  border-radius: 8px; padding: 5px 9px; margin: 5px 0; overflow-wrap: anywhere; }
.chatbci-card .cb-action .cb-tool-name { font-weight: 700; color: var(--cb-accent); }
.chatbci-card .cb-action table { border-collapse: collapse; margin-top: 2px; }
.chatbci-card .cb-action td { padding: 0 10px 0 0; vertical-align: top; }
.chatbci-card .cb-action td.cb-k { color: var(--cb-muted); }
.chatbci-card .cb-why { font-size: 12.5px; } .chatbci-card .cb-why b { font-weight: 600; }
.chatbci-card .cb-reason, .chatbci-card .cb-cost { font-size: 11.5px; color: var(--cb-muted);
  margin-top: 2px; }
.chatbci-card .cb-verdict { font-size: 12px; margin-top: 3px; }
.chatbci-card .cb-hint { font-size: 12px; color: var(--cb-warn); }
.chatbci-card .cb-hint.cb-bad { color: var(--cb-bad); }
.chatbci-card .widget-button { border-radius: 6px; font-weight: 600; margin: 0; }
.chatbci-card-controls { flex-wrap: wrap; gap: 6px; }
.chatbci-card-controls > .widget-button { flex: 0 0 auto; width: auto; }
.chatbci-card-controls > .chatbci-rationale { flex: 1 1 200px; width: auto; margin: 0; }
.chatbci-card input, .chatbci-card textarea, .chatbci-input textarea {
  background: var(--jp-input-background, var(--cb-bg)); color: var(--cb-text);
  border: 1px solid var(--jp-input-border-color, var(--cb-border)); }
.chatbci-editor { border-top: 1px dashed var(--cb-border); padding-top: 6px; margin-top: 2px;
  gap: 2px; }
.chatbci-editor .widget-label { font-family: var(--jp-code-font-family, monospace);
  font-size: 12px; color: var(--cb-text); }
.chatbci-footer { padding: 8px 12px 10px 12px; border-top: 1px solid var(--cb-border);
  background: var(--cb-bg2); gap: 6px; }
.chatbci-entry { gap: 8px; align-items: stretch; }
.chatbci-input { flex: 1 1 auto; min-width: 0; width: auto; margin: 0; }
.chatbci-input textarea { display: block; width: 100%; min-height: 56px; border-radius: 8px;
  font-size: 13px; padding: 6px 9px; resize: vertical; outline: none;
  font-family: var(--jp-ui-font-family, system-ui, sans-serif); }
.chatbci-input textarea:focus { border-color: var(--cb-accent); }
.chatbci-input textarea::placeholder { color: var(--cb-muted); }
.chatbci-buttons { gap: 6px; flex: 0 0 auto; }
.chatbci-buttons .widget-button { border-radius: 6px; font-weight: 600; margin: 0; }
.chatbci-quick { gap: 5px; flex-wrap: wrap; }
.chatbci-quick .widget-button { height: 24px; line-height: 22px; font-size: 11.5px;
  border-radius: 999px; padding: 0 11px; width: auto; margin: 0; background: var(--cb-bg);
  border: 1px solid var(--cb-border); color: var(--cb-muted); box-shadow: none; }
.chatbci-quick .widget-button:hover:enabled { color: var(--cb-accent);
  border-color: var(--cb-accent); }
.chatbci-progress { align-items: center; gap: 4px 8px; padding: 2px 12px; flex-wrap: wrap; }
.chatbci-progress .widget-hprogress { flex: 1 1 200px; margin: 0; }
.chatbci-progress .widget-html { flex: 1 1 260px; }
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
                 streaming=False, failed=False, cite=None):
        super().__init__(layout=widgets.Layout(width="100%"))
        self.add_class("chatbci-message")
        self.add_class(f"chatbci-message-{role}")
        self.role, self.label, self.when = role, label, when
        self.offline, self.failed = offline, failed
        self.event_id = event_id
        self.text = text
        self.streaming = streaming
        self.cite = cite
        self.cited: list[int] = []
        self._uid = f"cb-{secrets.token_hex(5)}"  # unique on the page: toggles are ids
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
            toggles = details = ""
        else:
            text_html, self.cited, toggles, details = cited_html(markdown_html(shown),
                                                                 self.cite, self._uid)
            body = f'<div class="cb-text">{text_html}</div>'
        cls = "cb-bubble cb-ai" + (" cb-offline" if self.offline else "") + \
            (" cb-failed" if self.failed else "")
        self.value = (f'<div class="cb-row"><div class="{cls}">{toggles}{who}{body}{details}'
                      "</div></div>")

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


def message_widget(ev, me, cite=None) -> MessageBubble:
    """A journaled ``message`` as a bubble; ``cite(event_id)`` gives a citation's detail."""
    text = ev.payload.get("text", "")
    if ev.actor.startswith("human:"):
        return MessageBubble("human", human_label(ev.actor, me), text, when=_when(ev),
                             event_id=ev.id)
    label, offline = ai_label(ev.actor)
    return MessageBubble("ai", label, text, when=_when(ev),
                         offline=offline, event_id=ev.id, cite=cite)


# -- citations ------------------------------------------------------------------------

#: The sanitiser's chip for ``[tool #id]`` (chatbci.sanitize._chip, after nh3).
_CHIP = re.compile(r'<span class="cb-cite" title="journal event #(\d+)">([^<]*)</span>')

#: Citations per message that open in place (the CSS has a rule for each).
MAX_CITATIONS = 12


def cited_html(body, cite, uid):
    """Turn citation chips into toggles that show the cited event in place.

    Parameters
    ----------
    body : str
        Sanitised HTML from :func:`markdown_html`.
    cite : callable | None
        ``cite(event_id) -> html | None``: the cited event's detail (its
        summary, figure or table); None leaves the chips as they are.
    uid : str
        A prefix unique on the page, for the toggles' ids.

    Returns
    -------
    body, cited, toggles, details : str, list of int, str, str
        A click on a chip (a ``<label>``) checks a hidden checkbox (in
        ``toggles``), and CSS shows the matching block of ``details``: no
        script runs, so this works wherever the HTML is shown.
    """
    if cite is None:
        return body, [], "", ""
    order: list[int] = []
    shown: dict[int, str | None] = {}

    def chip(m):
        event_id = int(m.group(1))
        if event_id not in shown:
            try:
                shown[event_id] = (cite(event_id) if len(order) < MAX_CITATIONS else None)
            except Exception:  # noqa: BLE001 - a chip stays a chip if its event can't be read
                shown[event_id] = None
            if shown[event_id] is not None:
                order.append(event_id)
        if shown[event_id] is None:
            return m.group(0)
        i = order.index(event_id)
        return (f'<label class="cb-cite" for="{uid}-{i}" title="show journal event #{event_id}"'
                f">{m.group(2)}</label>")

    body = _CHIP.sub(chip, body)
    toggles = "".join(f'<input type="checkbox" class="cb-cite-toggle cb-c{i}" id="{uid}-{i}">'
                      for i in range(len(order)))
    details = "".join(f'<div class="cb-cite-detail cb-d{i}" data-event="{e}">{shown[e]}</div>'
                      for i, e in enumerate(order))
    return body, order, toggles, details


def _png_data_uri(path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def citation_detail(ev, root, result_of=None) -> str:
    """What a citation chip shows in place: the cited event's summary, figures or table.

    Parameters
    ----------
    ev : chatbci.workspace.Event
        The cited event (usually a ``tool_result``).
    root : pathlib.Path
        The workspace folder (figures and tables are files there).
    result_of : callable | None
        ``result_of(tool_call_event) -> tool_result event | None``, so that a
        cited call shows its result.
    """
    if ev.kind == "tool_call" and result_of is not None:
        found = result_of(ev)
        if found is not None:
            ev = found
    p = ev.payload
    when = _when(ev)
    if ev.kind != "tool_result":
        text = p.get("text") or p.get("rationale") or p.get("message") or \
            args_inline(p.get("args") or {}) or p.get("verdict") or ""
        return (f'<div class="cb-cite-head">{esc(ev.kind)} #{ev.id} · {esc(ev.actor)} · '
                f"{esc(when)}</div><div>{esc(short_value(text, 400))}</div>")
    tool = p.get("tool", "?")
    ok = bool(p.get("ok", True))
    summary = p.get("summary")
    head = (f'<div class="cb-cite-head">{esc(tool)} · result #{ev.id} · {esc(when)}</div>'
            f"<div>{esc(_result_text(tool, ok, summary))}</div>")
    parts = [head]
    if ok and tool == "run_benchmark" and isinstance(summary, dict) and summary.get("scores"):
        parts.append("".join(w.value for w in benchmark_widgets(summary, [], root)))
    elif isinstance(summary, dict):
        rows = [(k, v) for k, v in summary.items() if k not in ("error",)][:8]
        if rows:
            parts.append("<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(short_value(v, 120))}</dd>"
                                          for k, v in rows) + "</dl>")
    images = []
    for rel in p.get("artifacts") or []:
        path = root / rel
        if rel.endswith(".png") and path.is_file() and len(images) < 4:
            images.append(f'<img src="{_png_data_uri(path)}" alt="{esc(path.name)}">')
    parts.extend(images)
    return "".join(parts)


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
    """The one place an error is shown (tool failures show on their tool line instead)."""
    w = widgets.HTML(f'<div class="cb-error"><span class="cb-icon">⚠</span> {esc(message)}</div>',
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


_STOPPED = re.compile(r"\b(stopped|interrupted) by the human\b")


def is_stop_message(text) -> bool:
    """Whether a tool's error says the human stopped it (a stop is not a failure)."""
    return bool(_STOPPED.search(str(text or "")))


def decided_by(verdict, actor, me) -> str:
    """``"approved by you"``, ``"modified by ada"``...: who let a tool call run, and how."""
    who = "you" if actor == me else actor.split(":", 1)[-1]
    how = {"accept": "approved", "modify": "modified", "reject": "rejected"}.get(verdict, "run")
    return f"{how} by {who}"


class ToolCallView(widgets.HTML):
    """One compact line per tool call: name, arguments, and its status.

    A failure is shown here, once, with the tool's message (which names the
    fix); a stop is shown as stopped, not as a failure.

    Parameters
    ----------
    ev : chatbci.workspace.Event
        The ``tool_call`` event.
    me : str
        This panel's human actor.
    by : str | None
        Who let it run (``"modified by you"``); None: said from the actor.
    """

    def __init__(self, ev, me, by=None):
        super().__init__(layout=widgets.Layout(width="100%"))
        self.add_class("chatbci-toolcall")
        p = ev.payload
        self.event_id = ev.id
        self.tool = p.get("tool", "?")
        self.args = p.get("args") or {}
        self.started = ev.ts
        self.actor = ev.actor
        if by is not None:
            self.by = by
        elif ev.actor.startswith("human:"):
            self.by = decided_by("accept", ev.actor, me)
        else:
            self.by = ""
        self.status = "running"
        self.ok = None
        self.detail = ""
        self._render("running…")

    def _render(self, status_text, state=""):
        icon = {"running": "⚙", "ok": "✓", "fail": "✗", "stopped": "■",
                "unknown": "?"}[self.status]
        by = f'<span class="cb-by">{esc(self.by)}</span>' if self.by else ""
        args = args_inline(self.args)
        state = f'<span class="cb-state">{esc(state)}</span>' if state else ""
        detail = ""
        if self.detail and self.actor.startswith("ai:") and self.status == "fail":
            # The assistant's answer, next, tells the human what went wrong: the tool's
            # own words stay one click away instead of being said twice.
            detail = (f'<details class="cb-detail"><summary>the tool\'s message</summary>'
                      f"{esc(self.detail)}</details>")
        elif self.detail:
            detail = f'<div class="cb-detail">{esc(self.detail)}</div>'
        self.value = (f'<div class="cb-tool cb-{self.status}"><span class="cb-icon">{icon}</span>'
                      f'<span class="cb-name">{esc(self.tool)}</span>'
                      f'<span class="cb-args" title="{esc(args)}">{esc(args)}</span>{state}'
                      f'<span class="cb-status">{esc(status_text)}</span>{by}{detail}</div>')

    def done(self, result_ev):
        p = result_ev.payload
        self.ok = bool(p.get("ok", True))
        try:
            secs = (result_ev.ts - self.started).total_seconds()
            took = f"{secs:.1f} s" if secs >= 0.05 else ""
        except (TypeError, AttributeError):
            took = ""
        summary = p.get("summary")
        if self.ok:
            self.status = "ok"
            self._render(_result_text(self.tool, True, summary) + (f" · {took}" if took else ""))
            return
        error = summary.get("error") if isinstance(summary, dict) else summary
        self.detail = str(error or "no reason recorded")
        if is_stop_message(error):
            self.status = "stopped"
            self._render(took, state="stopped")
        else:
            self.status = "fail"
            self._render(took, state="failed")

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
                lambda row: ["font-weight:600;background:color-mix(in srgb, "
                              "var(--jp-success-color1, #388e3c) 16%, transparent)"
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


def kept_results_widgets(df):
    """After a stop: the scores of the (subject, pipeline) results kept, per pipeline.

    ``df`` holds MOABB's columns (``BenchmarkStopped.results``): what the
    stopped run finished and what was cached before it.
    """
    if df is None or not len(df):
        return []
    per = (df.groupby(["pipeline", "subject"])["score"].mean().reset_index()
           .groupby("pipeline")["score"].agg(["mean", "std", "count"]).reset_index()
           .rename(columns={"std": "sd", "count": "subjects"})
           .sort_values("mean", ascending=False))
    subjects = sorted(int(s) for s in df["subject"].unique())
    caption = (f'<div class="cb-caption"><b>Kept before the stop</b> (from the results cache; '
               f"subjects {esc(', '.join(map(str, subjects)))}) · mean ± sd over the subjects "
               "each pipeline finished; running it again computes the rest</div>")
    w = _result_html(caption + styled_table(per))
    w.add_class("chatbci-kept")
    return [w]


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
                         "vs": pair.get("worse"), "p": pair.get("p"),
                         "min p": pair.get("min_p", c.get("min_p")), "SMD": pair.get("smd"),
                         "test": c.get("test"), "n": c.get("n_subjects"),
                         "subjects": c.get("subjects")})
    if not rows:
        return []
    caption = ('<div class="cb-caption">Paired tests of the best pipeline against each of '
               "the others on the subjects they share (MOABB; min p: the smallest p that n "
               "allows; SMD: standardised mean difference)</div>")
    apart = [f"{a.get('pipeline')} (n = {a.get('n_subjects')}, subjects {a.get('subjects')})"
             for c in summary.get("comparisons") or [] for a in c.get("not_ranked") or []]
    notes = [c["caution"] for c in summary.get("comparisons") or [] if c.get("caution")]
    extra = "".join(f'<div class="cb-caption">{esc(t)}</div>' for t in (
        ["Not ranked (scored on other subjects): " + "; ".join(apart)] if apart else [])
        + [f"Caution: {n}." for n in notes])
    return [_result_html(caption + styled_table(pd.DataFrame(rows)) + extra)]


def _best_row(df):
    """``("pipeline", name)`` of the row to mark best in a results table, or None.

    A ``show_results`` table (``ranked`` column) is ranked like for like
    (:func:`chatbci.bci.statistics.like_for_like`): only a pipeline ranked on
    the subjects it shares with the others can be best, never one scored on
    fewer subjects, and only when the table holds one dataset/evaluation/seed.
    """
    if "ranked" not in df.columns:
        return ("pipeline", df.sort_values("mean", ascending=False)["pipeline"].iloc[0])
    ranked = df[df["ranked"].astype(str).str.lower() == "true"]
    keys = [k for k in ("dataset", "evaluation", "seed") if k in df.columns]
    if len(ranked) < 2 or len(ranked.drop_duplicates(keys)) != 1:
        return None
    return ("pipeline", ranked["pipeline"].iloc[0])


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
                best = _best_row(df)
            out.append(_result_html(styled_table(df, highlight=best)))
        else:
            out.append(_result_html(f'<div class="cb-caption">file {esc(rel)}</div>'))
    if figures:
        box = widgets.HBox(figures, layout=widgets.Layout(width="100%"))
        box.add_class("chatbci-figures")
        out.append(box)
    return out
