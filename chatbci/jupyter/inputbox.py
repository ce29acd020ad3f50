"""The panel's text box: Enter sends, Shift+Enter starts a new line (as in Jupyter AI's chat).

ipywidgets' ``Textarea`` reports no keys, so the box is a small anywidget:
a ``<textarea>`` whose Enter sends the text to the kernel as a ``submit``
message. The text stays in the box until the panel accepts it (and clears
``value``), so nothing typed is lost while the assistant is busy.
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
  model.on("change:value", sync);
  box.addEventListener("input", () => {
    model.set("value", box.value);
    model.save_changes();
  });
  box.addEventListener("keydown", (event) => {
    event.stopPropagation();
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.altKey) return;
    event.preventDefault();  // Enter (or Ctrl/Cmd+Enter) sends; Shift+Enter is a new line
    if (!box.value.trim()) return;
    model.set("value", box.value);
    model.save_changes();
    model.send({ event: "submit", text: box.value });
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
    """

    _esm = _ESM
    value = traitlets.Unicode("").tag(sync=True)
    placeholder = traitlets.Unicode("").tag(sync=True)
    disabled = traitlets.Bool(False).tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._submit_handlers = []
        self.on_msg(self._on_message)

    def on_submit(self, callback):
        """Call ``callback(text)`` when the human presses Enter in the box."""
        self._submit_handlers.append(callback)

    def _on_message(self, _widget, content, _buffers):
        if isinstance(content, dict) and content.get("event") == "submit":
            text = content.get("text")
            if isinstance(text, str):
                self.submit(text)

    def submit(self, text=None):
        """Send ``text`` (default: the box's text) as if Enter was pressed."""
        if text is not None:
            self.value = text
        for callback in self._submit_handlers:
            callback(self.value)
