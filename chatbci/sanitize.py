"""The trust boundary: model-written text made safe for a terminal or a browser.

Everything a language model writes (answers, rationales, tool arguments) and
everything derived from it (tool summaries, error messages, note titles) is
*data* until chatbci renders it. This module is the one place that renders
it, so the CLI, the Jupyter panel and the exports apply the same rules:

- **Terminal** (:func:`terminal_text`, :class:`TerminalStream`,
  :func:`terminal_json`): escape sequences (CSI, OSC, DCS, SOS, PM, APC, in
  their 7-bit and 8-bit forms), C0/C1 control characters other than newline
  and tab (so no ``\\r`` overwrite or backspace tricks), bidirectional
  overrides and isolates (U+202A-U+202E, U+2066-U+2069, ...) and other
  invisible formatting characters are removed. A model can then neither
  clear and redraw the screen nor reorder what a person reads, e.g. to make
  an approval prompt look like it is about a different action.
- **Browser** (:func:`markdown_html`): Markdown is rendered with raw HTML
  escaped, images turned into links (nothing is fetched unless the human
  clicks), links restricted to ``http``, ``https`` and ``mailto`` (marked
  ``rel="noopener noreferrer nofollow"``), and the result passed through an
  allow-list sanitiser (`nh3`_): no ``<img>``, ``<iframe>``, ``<style>``,
  ``<link>``, ``<svg>``, ``style=`` attribute or ``url(`` survives. Images
  chatbci itself made (figures in the workspace) are shown by chatbci's own
  code, never through model Markdown.

.. _nh3: https://pypi.org/project/nh3/
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache

__all__ = ["LINK_SCHEMES", "TerminalStream", "markdown_html", "prefix_lines", "terminal_json",
           "terminal_text"]

# ---------------------------------------------------------------------------
# Terminal

#: Complete escape sequences, 7-bit (ESC ...) and 8-bit (C1 introducers).
_SEQUENCE = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]                 # CSI: cursor moves, erase, colours
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])             # OSC, DCS, SOS, PM, APC ...
      (?:[^\x07\x9c\x1b]|\x1b(?!\\))* (?:\x07|\x9c|\x1b\\) #   ... up to BEL or ST
    | \x1b [ -/]* [0-~]                                   # other ESC sequences (ESC c, ESC 7)
    """,
    re.VERBOSE | re.DOTALL,
)

#: The start of a sequence that the next stream fragment may complete.
_PARTIAL = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]*
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]) (?:[^\x07\x9c\x1b]|\x1b(?!\\))* \x1b?
    | \x1b [ -/]*
    """ r"\Z",
    re.VERBOSE | re.DOTALL,
)

#: Line and paragraph separators are shown as what they mean.
_NEWLINES = {"\r\n": "\n", "\x85": "\n", "\u2028": "\n", "\u2029": "\n"}
_NEWLINE_RE = re.compile("|".join(map(re.escape, _NEWLINES)))

#: Format characters that are kept: joiners shape emoji and several scripts
#: and cannot reorder text.
_KEEP_FORMAT = frozenset("\u200c\u200d")

_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _unsafe(ch: str) -> bool:
    """Whether ``ch`` may not reach a terminal (a control or invisible formatting)."""
    if ch in "\n\t":
        return False
    category = unicodedata.category(ch)
    # Cc: C0/C1 controls; Cf: format characters (bidi embeddings, overrides and
    # isolates, marks, zero-width spaces, BOM, Unicode tags); Cs: lone surrogates.
    return category in ("Cc", "Cs") or (category == "Cf" and ch not in _KEEP_FORMAT)


def terminal_text(text) -> str:
    """``text`` (any object, as ``str``) safe to print to a terminal.

    Escape sequences are removed whole; then every control character but
    ``\\n`` and ``\\t``, and every invisible formatting character (bidi
    controls, zero-width spaces, Unicode tags...) is removed. ``\\r\\n``,
    NEL and the Unicode line/paragraph separators become ``\\n``.

    Parameters
    ----------
    text : object
        Model- or tool-derived text (converted with ``str``).

    Returns
    -------
    str
        The visible text, in the order it is stored.

    Examples
    --------
    >>> terminal_text("ok\\x1b[2J\\x1b]0;pwned\\x07 \\u202eevil")
    'ok evil'
    """
    text = text if isinstance(text, str) else str(text)
    text = _SEQUENCE.sub("", text)
    text = _NEWLINE_RE.sub(lambda m: _NEWLINES[m.group()], text)
    if text.isascii():
        return _ASCII_CONTROLS.sub("", text)
    return "".join(ch for ch in text if not _unsafe(ch))


def prefix_lines(text: str, first: str, rest: str | None = None) -> str:
    """``text`` with ``first`` before its first line and ``rest`` before the others.

    Used to mark every line a model wrote (``ai> ``, ``ai| ``), so a line
    the model wrote cannot pass for one chatbci printed.
    """
    rest = first if rest is None else rest
    lines = text.split("\n")
    return "\n".join([first + lines[0], *(rest + line for line in lines[1:])])


class TerminalStream:
    """Sanitise streamed text fragment by fragment (see :func:`terminal_text`).

    A model's answer arrives in small deltas and an escape sequence may be
    split across two of them (``"\\x1b["`` then ``"2J"``), which sanitising
    each delta alone would let through. The start of a possible sequence at
    the end of a fragment is held back until the next fragment completes it
    (or :meth:`flush` drops it), up to ``max_pending`` characters.

    Parameters
    ----------
    continuation : str
        Printed at the start of every line after the first (e.g. ``"ai| "``),
        so every line of the answer is marked as the model's.
    max_pending : int
        The most characters held back waiting for a sequence to end; past it
        the introducer is dropped and the rest shown as text.

    Examples
    --------
    >>> s = TerminalStream()
    >>> s.feed("a\\x1b[") + s.feed("2Jb") + s.flush()
    'ab'
    """

    def __init__(self, continuation: str = "", max_pending: int = 1024):
        self.continuation = continuation
        self.max_pending = int(max_pending)
        self._pending = ""
        self._line_start = False

    def feed(self, fragment) -> str:
        """Take the next fragment; return what may be printed now."""
        buf = self._pending + (fragment if isinstance(fragment, str) else str(fragment))
        self._pending = ""
        m = _PARTIAL.search(buf)
        if m is not None and len(buf) - m.start() <= self.max_pending:
            self._pending, buf = buf[m.start():], buf[:m.start()]
        return self._mark(terminal_text(buf))

    def flush(self) -> str:
        """The end of the stream: return what is left (an unfinished sequence is dropped)."""
        rest, self._pending = self._pending, ""
        return self._mark(terminal_text(rest))

    def _mark(self, text: str) -> str:
        if not self.continuation or not text:
            return text
        out = []
        for piece in re.split(r"(\n)", text):
            if piece == "\n":
                out.append(piece)
                self._line_start = True
            elif piece:
                if self._line_start:
                    out.append(self.continuation)
                    self._line_start = False
                out.append(piece)
        return "".join(out)


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code > 0xFFFF:  # JSON spells astral characters as a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def terminal_json(value, **kwargs) -> str:
    """``json.dumps(value)`` that is safe to print and still exact.

    Unicode is kept readable (``ensure_ascii=False``), but every character
    :func:`terminal_text` would remove is written as a ``\\uXXXX`` escape, so
    the JSON still holds the exact value (a program reading it loses nothing)
    while a terminal shows only visible text.

    Parameters
    ----------
    value : object
    **kwargs
        Passed to :func:`json.dumps` (``indent``, ``sort_keys``...).

    Examples
    --------
    >>> terminal_json({"t": "a\\u202eb"})
    '{"t": "a\\\\u202eb"}'
    """
    kwargs.setdefault("ensure_ascii", False)
    text = json.dumps(value, **kwargs)
    # json.dumps escapes C0 controls itself; what is left (DEL, C1, format
    # characters, lone surrogates) only occurs inside strings, where a \\u
    # escape is valid JSON for the same character.
    if text.isascii():
        return text.replace("\x7f", "\\u007f")
    return "".join(_json_escape(ch) if _unsafe(ch) else ch for ch in text)


# ---------------------------------------------------------------------------
# Browser

#: URL schemes a link in model text may have; anything else is shown as text.
LINK_SCHEMES = frozenset({"http", "https", "mailto"})

_SCHEME = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.\-]*):")

#: Tags that may come out of :func:`markdown_html` (what Markdown produces).
_TAGS = {"p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "blockquote", "ul", "ol",
         "li", "a", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th",
         "td", "span"}
_ATTRIBUTES = {"a": {"href", "class", "target"}, "span": {"class", "title"}, "ol": {"start"},
               "th": {"class"}, "td": {"class"}}
#: Classes chatbci's own markup uses (citations, table alignment, image links).
_CLASSES = re.compile(r"^(cb-cite|cb-image|cb-align-(left|center|right))$")
_LINK_REL = "noopener noreferrer nofollow"
#: Elements removed with their content (the rest are unwrapped, text kept).
_DROP_CONTENT = {"script", "style", "iframe", "object", "embed", "svg", "math", "template",
                 "noscript", "title", "textarea", "xmp", "noembed", "noframes"}
_CITATION = re.compile(r"\[([a-z_]+) #(\d+)\]")
_ALIGN = re.compile(r"text-align:\s*(left|center|right)")


def _allowed_link(url) -> bool:
    """Whether a link target from model text may be a link (http, https, mailto)."""
    if not isinstance(url, str) or not url.strip():
        return False
    m = _SCHEME.match(url)
    return m is not None and m.group(1).lower() in LINK_SCHEMES


def _attribute_filter(tag, attr, value):
    # The final allow-list: whatever the Markdown stage let through, only
    # chatbci's classes, http(s)/mailto links and in-page anchors survive
    # (and none of the sanitiser's default generic attributes).
    if attr not in _ATTRIBUTES.get(tag, ()):
        # rel is the sanitiser's own (link_rel).
        return value if tag == "a" and attr == "rel" else None
    if attr == "target":  # only ever a new tab
        return value if value == "_blank" else None
    if attr == "class":
        kept = [c for c in value.split() if _CLASSES.match(c)]
        return " ".join(kept) or None
    if tag == "a" and attr == "href":
        if _allowed_link(value) or re.fullmatch(r"#[A-Za-z][\w\-]*", value):
            return value
        return None
    return value


def _render_image(self, tokens, idx, options, env):
    # A model's image becomes a link the human may follow: nothing is fetched
    # when the page is shown (no tracking pixel, no remote content).
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env).strip()
    label = html.escape(f"image: {alt}" if alt else "image", quote=True)
    src = token.attrGet("src")
    if _allowed_link(src):
        return (f'<a class="cb-image" href="{html.escape(src, quote=True)}" target="_blank">'
                f"[{label}]</a>")
    return f"[{label}]"


def _render_link_open(self, tokens, idx, options, env):
    # A followed link opens beside the notebook or export, not instead of it.
    tokens[idx].attrSet("target", "_blank")
    return self.renderToken(tokens, idx, options, env)


def _align_cells(state):
    # Table alignment as a class: no style attribute reaches the page.
    for token in state.tokens:
        if token.type in ("th_open", "td_open"):
            style = token.attrGet("style")
            if style:
                token.attrs.pop("style", None)
                m = _ALIGN.search(str(style))
                if m:
                    token.attrSet("class", f"cb-align-{m.group(1)}")
        elif token.type == "fence" or token.type == "code_block":
            token.info = ""  # no language-* class


def _citations(state):
    # ``[tool #id]`` in text (not in code) becomes chatbci's own markup.
    cite = state.env.get("cite") if isinstance(state.env, dict) else None
    if cite is None:
        return
    from markdown_it.token import Token

    for token in state.tokens:
        if token.type != "inline" or not token.children:
            continue
        children = []
        for child in token.children:
            if child.type != "text" or not _CITATION.search(child.content):
                children.append(child)
                continue
            pos = 0
            for m in _CITATION.finditer(child.content):
                if m.start() > pos:
                    text = Token("text", "", 0)
                    text.content = child.content[pos:m.start()]
                    children.append(text)
                raw = Token("html_inline", "", 0)
                raw.content = cite(m.group(1), int(m.group(2)))
                children.append(raw)
                pos = m.end()
            if pos < len(child.content):
                text = Token("text", "", 0)
                text.content = child.content[pos:]
                children.append(text)
        token.children = children


@lru_cache(maxsize=1)
def _markdown():
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # pragma: no cover - markdown-it-py is a dependency
        return None
    # Raw HTML off: what a model writes is shown, never interpreted as HTML.
    md = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table")
    # Links (and autolinks) to other schemes stay text: javascript:, data:,
    # vbscript:, file:, relative paths... (entities are decoded before this check).
    md.validateLink = _allowed_link
    md.add_render_rule("image", _render_image)
    md.add_render_rule("link_open", _render_link_open)
    md.core.ruler.push("chatbci_align", _align_cells)
    md.core.ruler.push("chatbci_citations", _citations)
    return md


def _chip(tool: str, event_id: int) -> str:
    return (f'<span class="cb-cite" title="journal event #{event_id}">'
            f"{html.escape(tool)} #{event_id}</span>")


def markdown_html(text, *, cite: Callable[[str, int], str] | None = _chip) -> str:
    """Model-written Markdown as HTML that loads nothing and runs nothing.

    Parameters
    ----------
    text : str
        Markdown written by a model (or anyone untrusted).
    cite : callable | None
        ``cite(tool, event_id) -> html`` for ``[tool #id]`` citations in the
        text (chatbci's markup, e.g. a chip or a link to ``#event-<id>``);
        the default is a ``<span class="cb-cite">`` chip, ``None`` leaves
        them as text.

    Returns
    -------
    str
        HTML with only text-level and block elements (paragraphs, lists,
        emphasis, code, tables, links to ``http(s)``/``mailto`` with
        ``rel="noopener noreferrer nofollow"``). Raw HTML is escaped; images
        become links; no element that fetches a resource, no ``style`` and no
        event handler can come out.
    """
    import nh3

    text = terminal_text(text)  # controls and bidi overrides mislead readers here too
    md = _markdown()
    if md is None:  # pragma: no cover
        out = "<p>" + html.escape(text).replace("\n", "<br>") + "</p>"
    else:
        out = md.render(text, {"cite": cite} if cite is not None else {})
    return nh3.clean(out, tags=_TAGS, attributes=_ATTRIBUTES, attribute_filter=_attribute_filter,
                     url_schemes=set(LINK_SCHEMES), link_rel=_LINK_REL,
                     clean_content_tags=_DROP_CONTENT, strip_comments=True)
