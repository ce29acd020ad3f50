"""The panel's text box: Enter sends, Shift+Enter starts a new line (as in Jupyter AI's chat).

ipywidgets' ``Textarea`` reports no keys, so the box is a small anywidget:
a ``<textarea>`` whose Enter sends the text to the kernel as a ``submit``
message. While the panel is busy (``locked``) Enter keeps the text in the box, so
nothing typed is lost; once sent, the box clears itself (a kernel-side
reset could be dropped by ipywidgets as a stale echo while the human types).
"""

from __future__ import annotations

import anywidget
import traitlets

_ESM = r"""
function render({ model, el }) {
  const box = document.createElement("textarea");
  box.rows = 2;
  box.spellcheck = true;
  box.setAttribute("aria-label", "Message to the assistant");
  // JupyterLab's own shortcuts (Shift+Enter runs the cell, A/B/D D edit cells...) must not
  // fire while the human types here.
  el.setAttribute("data-lm-suppress-shortcuts", "true");
  const sync = () => {
    box.placeholder = model.get("placeholder");
    box.disabled = model.get("disabled");
    if (box.value !== model.get("value")) box.value = model.get("value");
  };
  sync();
  model.on("change:placeholder", sync);
  model.on("change:disabled", sync);
  model.on("change:locked", () => { box.title = model.get("locked") ?
      "The assistant is working: Enter sends when it is done (or press Stop)" : ""; });
  model.on("change:value", sync);
  box.addEventListener("input", () => {
    model.set("value", box.value);
    model.save_changes();
  });
  box.addEventListener("keydown", (event) => {
    event.stopPropagation();
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.altKey) return;
    event.preventDefault();  // Enter (or Ctrl/Cmd+Enter) sends; Shift+Enter is a new line
    if (!box.value.trim() || model.get("locked") || model.get("disabled")) return;
    const text = box.value;
    model.send({ event: "submit", text });
    box.value = "";
    model.set("value", "");
    model.save_changes();
  });
  el.classList.add("chatbci-input");
  el.appendChild(box);
}
export default { render };
"""


class ChatInput(anywidget.AnyWidget):
    """A multi-line text box that sends on Enter.

    Attributes
    ----------
    value : str
        The text in the box (synced as the human types).
    placeholder : str
    disabled : bool
    locked : bool
        Enter does not send (the panel is busy); the text stays.
    """

    _esm = _ESM
    value = traitlets.Unicode("").tag(sync=True)
    placeholder = traitlets.Unicode("").tag(sync=True)
    disabled = traitlets.Bool(False).tag(sync=True)
    locked = traitlets.Bool(False).tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._submit_handlers = []
        self.on_msg(self._on_message)

    def on_submit(self, callback):
        """Call ``callback(text)`` when the human presses Enter in the box (text sent)."""
        self._submit_handlers.append(callback)

    def _on_message(self, _widget, content, _buffers):
        if isinstance(content, dict) and content.get("event") == "submit":
            text = content.get("text")
            if isinstance(text, str) and text.strip():
                # Sent by the front end, which checked the lock when Enter was pressed.
                self.value = ""
                for callback in self._submit_handlers:
                    callback(text)

    def submit(self, text=None):
        """Send ``text`` (default: the box's text) as if Enter was pressed."""
        text = self.value if text is None else text
        if self.locked or not text.strip():
            return
        self.value = ""
        for callback in self._submit_handlers:
            callback(text)
