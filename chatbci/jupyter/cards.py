"""Suggestion cards: the AI's proposed action and why, with Approve / Reject / Modify.

A card only collects the human's decision; the panel runs it (off the
kernel's main thread) through :class:`chatbci.assistant.session.Session`,
and the card shows the verdict when the ``decision`` event is journaled.
"""

from __future__ import annotations

import json
import re
import types
import typing

import ipywidgets as widgets

from .render import _when, ai_label, esc, human_label, markdown_html, short_value

VERDICT_TEXT = {"accept": "✓ Approved", "reject": "✗ Rejected", "modify": "✎ Modified"}

#: The placeholder the session journals when the model proposed a call without saying
#: why; it is no reason, so a card shows the request it answers instead.
_NO_RATIONALE = re.compile(r"^\s*The assistant asked to run [\w.]+\.\s*$")


def has_rationale(text) -> bool:
    """Whether a suggestion's rationale says why (not the session's placeholder)."""
    return bool(text and str(text).strip()) and not _NO_RATIONALE.match(str(text))


def _field_kind(field) -> str:
    """How an argument is edited as text: list_str, int, float, str, str_or_json, json."""
    ann = _bare(field.annotation)
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        options = [_bare(a) for a in typing.get_args(ann) if a is not type(None)]
    else:
        options = [ann]
    if len(options) == 1:
        a = options[0]
        if typing.get_origin(a) is list:
            inner = [_bare(t) for t in typing.get_args(a)]
            return "list_str" if inner and inner[0] is str else "json"
        return {int: "int", float: "float", str: "str"}.get(a, "json")
    return "str_or_json" if str in options else "json"


def _cost_html(estimate) -> str:
    """The estimated cost of a suggested benchmark, from the suggestion event."""
    if not isinstance(estimate, dict) or not estimate.get("fits"):
        return ""
    from chatbci.bci.cost import Cost

    try:
        text = Cost(**{k: estimate[k] for k in
                       ("fits", "outer_folds", "seconds", "basis", "per_pipeline")},
                    epochs=estimate.get("epochs")).text()  # deep networks' epochs
    except (KeyError, TypeError):
        return ""
    return f'<div class="cb-cost">Estimated cost: {esc(text)}</div>'


def _bare(ann):
    """``Annotated[X, limits...]`` -> ``X`` (tool arguments carry their bounds so)."""
    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    return ann


def format_arg(value, kind) -> str:
    if value is None:
        return ""
    if kind == "list_str" and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if kind in ("int", "float", "str") or (kind == "str_or_json" and isinstance(value, str)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def parse_arg(text, kind):
    """Text typed by the human -> argument value (``ValueError`` with a readable message)."""
    text = text.strip()
    if kind == "list_str":
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "str":
        return text
    if kind == "str_or_json":
        return json.loads(text) if text[:1] in "[{" else text
    return json.loads(text)


class SuggestionCard(widgets.VBox):
    """A suggestion awaiting the human's decision.

    Parameters
    ----------
    event : chatbci.workspace.Event
        The ``suggestion`` event.
    on_decide : callable
        ``on_decide(card, verdict, rationale, action)``; ``action`` is the
        full modified action for ``"modify"``, else None.
    me : str
        This panel's human actor (``human:<name>``), to say "you".
    request : str | None
        The human's message this suggestion answers; shown as the reason
        when the assistant gave none ("You asked: …").

    Attributes
    ----------
    id : int
        The suggestion's event id.
    state : {"pending", "queued", "accept", "reject", "modify"}
    """

    def __init__(self, event, on_decide, me="human:researcher", request=None):
        super().__init__(layout=widgets.Layout(width="auto"))
        self.add_class("chatbci-card")
        self.event = event
        self.id = event.id
        self.me = me
        self._on_decide = on_decide
        payload = event.payload
        self.action = payload.get("action")
        self.rationale_text = payload.get("rationale", "")
        self.reason = payload.get("reason")
        self.request = request
        self.state = "pending"
        self.decision = None

        self.head = widgets.HTML(layout=widgets.Layout(width="100%"))
        self.body = widgets.HTML(self._body_html(), layout=widgets.Layout(width="100%"))
        self.rationale = widgets.Text(
            placeholder="Your reason — optional to approve, needed to reject or modify",
            layout=widgets.Layout(width="auto"))
        self.rationale.add_class("chatbci-rationale")
        self.approve_button = self._button("✓ Approve", "success", "chatbci-approve",
                                           "Run exactly this action",
                                           lambda _: self._submit("accept"))
        self.reject_button = self._button("✗ Reject", "danger", "chatbci-reject",
                                          "Do not run it (say why: the assistant will see it)",
                                          lambda _: self._submit("reject"))
        self.modify_button = self._button("✎ Modify…", "", "chatbci-modify",
                                          "Edit the arguments, then run the modified action",
                                          lambda _: self.toggle_editor())
        # The controls wrap in a narrow column: every button stays whole.
        self.controls = widgets.HBox(
            [self.rationale, self.approve_button, self.reject_button, self.modify_button],
            layout=widgets.Layout(width="100%", align_items="center", flex_flow="row wrap"))
        self.controls.add_class("chatbci-card-controls")

        self.fields = self._make_fields()
        self.apply_button = self._button("▶ Run modified", "primary", "chatbci-apply",
                                         "Run the action with these arguments",
                                         lambda _: self._submit("modify"))
        self.cancel_button = self._button("Cancel", "", "chatbci-cancel", "Close the editor",
                                          lambda _: self.toggle_editor(False))
        self.editor = widgets.VBox(
            [*self.fields.values(),
             widgets.HBox([self.apply_button, self.cancel_button],
                          layout=widgets.Layout(grid_gap="6px"))],
            layout=widgets.Layout(display="none", width="100%"))
        self.editor.add_class("chatbci-editor")
        self.hint = widgets.HTML(layout=widgets.Layout(width="100%"))
        self.children = [self.head, self.body, self.controls, self.editor, self.hint]
        self._render_head()

    # -- building -----------------------------------------------------------------

    def _button(self, text, style, cls, tooltip, handler):
        b = widgets.Button(description=text, button_style=style, tooltip=tooltip,
                           layout=widgets.Layout(width="auto", min_width="max-content"))
        b.add_class(cls)
        b.on_click(handler)
        return b

    @property
    def tool(self):
        return self.action.get("tool") if isinstance(self.action, dict) else None

    @property
    def args(self) -> dict:
        return dict(self.action.get("args") or {}) if isinstance(self.action, dict) else {}

    def _arg_model(self):
        from chatbci.assistant.tools import TOOLS

        if self.tool in TOOLS:
            return TOOLS[self.tool].args
        return None

    def _make_fields(self):
        model = self._arg_model()
        fields = {}
        style = {"description_width": "110px"}
        if model is None:
            w = widgets.Textarea(value=json.dumps(self.args, indent=1), description="args (JSON)",
                                 style=style, layout=widgets.Layout(width="98%"))
            w.kind = "json"
            fields["*"] = w
            return fields
        for name, field in model.model_fields.items():
            kind = _field_kind(field)
            hint = field.description or ""
            if field.is_required():
                hint = ("required. " + hint).strip()
            w = widgets.Text(value=format_arg(self.args.get(name), kind), description=name,
                             placeholder=hint[:90], tooltip=hint, style=style,
                             layout=widgets.Layout(width="98%"))
            w.kind = kind
            w.add_class(f"chatbci-arg-{name}")
            fields[name] = w
        return fields

    def _body_html(self):
        if isinstance(self.action, dict):
            rows = "".join(f'<tr><td class="cb-k">{esc(k)}</td><td>{esc(short_value(v, 90))}'
                           "</td></tr>" for k, v in self.args.items())
            action = (f'<div class="cb-action"><span class="cb-tool-name">{esc(self.tool)}</span>'
                      f"<table>{rows}</table></div>")
        else:
            action = f'<div class="cb-action">{esc(self.action)}</div>'
        if has_rationale(self.rationale_text):
            why = (f'<div class="cb-why cb-text"><b>Why:</b> '
                   f"{markdown_html(self.rationale_text)}</div>")
        elif self.request:
            why = (f'<div class="cb-why cb-text"><b>You asked:</b> “{esc(self.request)}”'
                   "</div>")
        else:
            why = ""
        reason = (f'<div class="cb-reason">Needs your decision: {esc(self.reason)}</div>'
                  if self.reason else "")
        return action + why + _cost_html(self.event.payload.get("estimate")) + reason

    def _render_head(self):
        label, _ = ai_label(self.event.actor)
        title = (f'<span class="cb-card-title">Suggestion #{self.id} '
                 f'<span class="cb-from">from {esc(label)} · '
                 f"{esc(_when(self.event))}</span></span>")
        badge = {"pending": ("cb-pending", "awaiting your decision"),
                 "queued": ("cb-queued", "running…"),
                 "accept": ("cb-accept", "approved"),
                 "reject": ("cb-reject", "rejected"),
                 "modify": ("cb-modify", "modified")}[self.state]
        self.head.value = (f'<div class="cb-card-head">{title}'
                           f'<span class="cb-badge {badge[0]}">{badge[1]}</span></div>')

    # -- the human's decision -----------------------------------------------------------

    def toggle_editor(self, show=None):
        """Show or hide the argument editor (Modify)."""
        if show is None:
            show = self.editor.layout.display == "none"
        self.editor.layout.display = "flex" if show else "none"

    def _say(self, text, bad=False):
        cls = "cb-hint cb-bad" if bad else "cb-hint"
        self.hint.value = f'<div class="{cls}">{esc(text)}</div>' if text else ""

    def modified_action(self) -> dict:
        """The action with the editor's arguments (``ValueError`` if one is unreadable)."""
        if "*" in self.fields:
            try:
                args = json.loads(self.fields["*"].value or "{}")
            except ValueError as err:
                raise ValueError(f"arguments are not valid JSON: {err}") from None
            return {"tool": self.tool, "args": args}
        args = {}
        for name, w in self.fields.items():
            if not w.value.strip():
                continue
            try:
                args[name] = parse_arg(w.value, w.kind)
            except ValueError:
                raise ValueError(f"cannot read {name} = {w.value!r}") from None
        return {"tool": self.tool, "args": args}

    def _submit(self, verdict):
        if self.state != "pending":
            return
        rationale = self.rationale.value.strip()
        action = None
        if verdict in ("reject", "modify") and not rationale:
            self._say("Please give a reason first (the assistant and the journal keep it).",
                      bad=True)
            return
        if verdict == "modify":
            try:
                action = self.modified_action()
            except ValueError as err:
                self._say(str(err), bad=True)
                return
        self._say("")
        self.set_state("queued")
        self._on_decide(self, verdict, rationale, action)

    def set_state(self, state):
        self.state = state
        live = state == "pending"
        for b in (self.approve_button, self.reject_button, self.modify_button,
                  self.apply_button, self.cancel_button):
            b.disabled = not live
        self.rationale.disabled = not live
        for w in self.fields.values():
            w.disabled = not live
        self._render_head()

    def fail(self, message):
        """The decision could not be recorded or run: say why; the card is live again."""
        self.set_state("pending")
        self._say(message, bad=True)

    def mark_decided(self, decision):
        """Show a journaled ``decision`` event's verdict; the card is closed."""
        p = decision.payload
        verdict = p.get("verdict", "accept")
        self.decision = decision
        self.set_state(verdict if verdict in VERDICT_TEXT else "accept")
        self.controls.layout.display = "none"
        self.editor.layout.display = "none"
        for cls in ("accept", "reject", "modify"):
            self.remove_class(f"cb-decided-{cls}")
        self.add_class(f"cb-decided-{self.state}")
        who = human_label(decision.actor, self.me)
        who = "you" if who == "You" else who
        line = f"<b>{VERDICT_TEXT[self.state]}</b> by {esc(who)} · {esc(_when(decision))}"
        if p.get("rationale"):
            line += f" — “{esc(p['rationale'])}”"
        action = p.get("action")
        if isinstance(action, dict):
            line += (f'<div class="cb-reason">ran <code>{esc(action.get("tool"))}</code> with '
                     + esc(", ".join(f"{k}={short_value(v, 50)}"
                                     for k, v in (action.get("args") or {}).items()))
                     + "</div>")
        self.hint.value = f'<div class="cb-verdict">{line}</div>'

    # -- hooks for tests and scripts ---------------------------------------------------

    def approve(self, rationale=""):
        """Approve (as if clicked), with an optional rationale."""
        self.rationale.value = rationale
        self.approve_button.click()

    def reject(self, rationale):
        """Reject (as if clicked); the rationale is required."""
        self.rationale.value = rationale
        self.reject_button.click()

    def modify(self, args, rationale):
        """Change some arguments in the editor and run the modified action (as if clicked)."""
        self.toggle_editor(True)
        for name, value in (args or {}).items():
            if name not in self.fields:
                if "*" in self.fields:
                    current = json.loads(self.fields["*"].value or "{}")
                    current[name] = value
                    self.fields["*"].value = json.dumps(current)
                    continue
                raise KeyError(f"{self.tool} has no argument {name!r}; it has "
                               f"{', '.join(self.fields)}.")
            w = self.fields[name]
            w.value = format_arg(value, w.kind)
        self.rationale.value = rationale
        self.apply_button.click()
