"""Tool calls that a model wrote as text instead of sending them as tool calls.

Small local models often *write* a tool call in their answer rather than
returning it in the structured ``tool_calls`` field -- because the server's
chat template or parser does not turn their output into calls, or because
the model never learnt the server's format. Recorded traffic with
Qwen2.5-Coder-0.5B on llama.cpp and llama-cpp-python shows the common
forms:

``<tool_call>`` tags (Hermes, Qwen)::

    <tool_call>
    {"name": "list_datasets", "arguments": {}}
    </tool_call>

a fenced JSON block (language ``json`` or none)::

    ```json
    {"name": "explore_subject", "arguments": {"dataset": "SimulatedMI", "subject": 1}}
    ```

the whole answer as bare JSON, Mistral's ``[TOOL_CALLS]`` prefix, and
llama-cpp-python's ``chatml-function-calling`` format, a line
``functions.NAME:`` followed by the JSON arguments (or by nothing, for a
call without arguments).

:func:`find_text_calls` recognises these forms -- and only these. A JSON
object counts as a call when it has a ``name`` (or a ``function`` object
with one) that is one of the *declared* tool names, plus optionally
``arguments`` or ``parameters`` and an ``id``/``type``; anything else (a
tool's description, a result, arbitrary JSON, Python code such as
``list_datasets()``) stays text. The arguments are returned as JSON text,
unvalidated: the caller checks them exactly as it checks native calls
(:meth:`chatbci.assistant.llm.ToolCall.parse_arguments` and the tool's
schema).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["TextCall", "TextCalls", "find_text_calls"]

#: Keys a call object may hold besides its name and arguments.
_CALL_KEYS = {"name", "arguments", "parameters", "id", "type"}

_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*(json|tool_call|tool_code)?[ \t]*\n(.*?)\n?[ \t]*```",
                    re.DOTALL | re.IGNORECASE)
_MISTRAL = re.compile(r"\[TOOL_CALLS\]\s*")
_FUNCTIONS = re.compile(r"^[ \t]*functions\.([A-Za-z_][\w.\-]*?)[ \t]*:", re.MULTILINE)
_NAME_IN_TAG = re.compile(r'"name"\s*:\s*"([^"\\]+)"')
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


@dataclass(frozen=True)
class TextCall:
    """One tool call found in a model's text.

    Attributes
    ----------
    name : str
        A declared tool name.
    arguments : str
        The arguments as JSON text ("" when the call gave none); not
        validated against the tool's schema, and possibly not an object.
    form : str
        How it was written: ``"tool_call_tag"``, ``"fenced_json"``,
        ``"bare_json"``, ``"mistral"`` or ``"functions_prefix"``.
    span : tuple of int
        ``(start, end)`` of the text the call was taken from.
    id : str | None
        The call's id, if the model wrote one.
    """

    name: str
    arguments: str
    form: str
    span: tuple[int, int]
    id: str | None = None


@dataclass(frozen=True)
class TextCalls:
    """What :func:`find_text_calls` found.

    Attributes
    ----------
    calls : list of TextCall
        In the order they appear in the text.
    text : str
        The text without the calls (surrounding whitespace trimmed); the
        original text when no call was found.
    """

    calls: list[TextCall]
    text: str

    def __bool__(self) -> bool:
        return bool(self.calls)


def find_text_calls(text: str, tool_names: Iterable[str]) -> TextCalls:
    """Find the tool calls written as text in ``text``.

    Parameters
    ----------
    text : str
        The model's answer.
    tool_names : iterable of str
        The names of the tools declared to the model. A call naming any
        other tool is not recognised (the text is left as it is).

    Returns
    -------
    TextCalls
        The calls and the text without them.

    Examples
    --------
    >>> found = find_text_calls('Checking.\\n<tool_call>\\n{"name": "list_datasets", '
    ...                         '"arguments": {}}\\n</tool_call>', ["list_datasets"])
    >>> [(c.name, c.arguments) for c in found.calls], found.text
    ([('list_datasets', '{}')], 'Checking.')
    >>> find_text_calls("datasets = list_datasets()", ["list_datasets"]).calls
    []
    """
    names = {n for n in tool_names if isinstance(n, str) and n}
    if not text or not names:
        return TextCalls([], text)
    calls: list[TextCall] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in taken)

    def take(found: list[TextCall], start: int, end: int):
        calls.extend(found)
        taken.append((start, end))

    # 1. <tool_call> tags: explicit intent, so a declared name is enough even
    #    if the JSON is broken (the argument check then tells the model).
    for match in _TAG.finditer(text):
        body = match.group(1)
        fenced = _FENCE.fullmatch(body.strip())
        if fenced:
            body = fenced.group(2)
        found = _calls_in_json(body, names, "tool_call_tag", match.span())
        if found is None:
            name = _NAME_IN_TAG.search(body)
            if name is None or name.group(1) not in names:
                continue
            found = [TextCall(name.group(1), body, "tool_call_tag", match.span())]
        take(found, *match.span())

    # 2. Mistral's [TOOL_CALLS] prefix followed by a JSON list or object.
    for match in _MISTRAL.finditer(text):
        if not free(*match.span()):
            continue
        value, end = _json_at(text, match.end())
        if value is _NOTHING:
            continue
        found = _calls_in_value(value, names, "mistral", (match.start(), end))
        if found:
            take(found, match.start(), end)

    # 3. Fenced blocks whose whole content is a call (or a list of calls).
    for match in _FENCE.finditer(text):
        if not free(*match.span()):
            continue
        found = _calls_in_json(match.group(2), names, "fenced_json", match.span())
        if found:
            take(found, *match.span())

    # 4. llama-cpp-python: "functions.NAME:" at a line start, then JSON or nothing.
    for match in _FUNCTIONS.finditer(text):
        name = match.group(1)
        if name not in names or not free(*match.span()):
            continue
        rest = match.end()
        value, end = _json_at(text, rest)
        if value is _NOTHING:
            # Nothing but whitespace up to the next call line or the end.
            following = _FUNCTIONS.search(text, rest)
            stop = following.start() if following else len(text)
            if text[rest:stop].strip():
                continue
            arguments, end = "", stop
        elif isinstance(value, dict):
            arguments = json.dumps(value, ensure_ascii=False)
        else:
            continue
        span = (match.start(), end)
        take([TextCall(name, arguments, "functions_prefix", span)], *span)

    # 5. The whole answer is a bare call object or list of calls.
    if not calls:
        stripped = text.strip()
        if stripped[:1] in ("{", "["):
            start = text.index(stripped[0])
            found = _calls_in_json(stripped, names, "bare_json", (start, start + len(stripped)))
            if found:
                take(found, start, start + len(stripped))

    if not calls:
        return TextCalls([], text)
    calls.sort(key=lambda c: c.span)
    taken.sort()
    pieces, position = [], 0
    for start, end in taken:
        pieces.append(text[position:start])
        position = end
    pieces.append(text[position:])
    remaining = _BLANK_LINES.sub("\n\n", "".join(pieces)).strip()
    return TextCalls(calls, remaining)


# --------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------

_NOTHING = object()
_DECODER = json.JSONDecoder()


def _json_at(text: str, index: int):
    """The JSON value starting at ``text[index:]`` (after whitespace) and its end."""
    while index < len(text) and text[index].isspace():
        index += 1
    if index >= len(text) or text[index] not in "{[":
        return _NOTHING, index
    try:
        value, end = _DECODER.raw_decode(text, index)
    except ValueError:
        return _NOTHING, index
    return value, end


def _calls_in_json(body: str, names: set[str], form: str,
                   span: tuple[int, int]) -> list[TextCall] | None:
    """Calls in ``body`` if it is exactly one JSON call object or a list of them."""
    body = body.strip()
    if body[:1] not in ("{", "["):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return _calls_in_value(value, names, form, span)


def _calls_in_value(value, names: set[str], form: str,
                    span: tuple[int, int]) -> list[TextCall] | None:
    items = value if isinstance(value, list) else [value]
    if not items:
        return None
    calls = []
    for item in items:
        call = _call_in_object(item, names, form, span)
        if call is None:
            return None  # all or nothing: a list with anything else is data
        calls.append(call)
    return calls


def _call_in_object(item, names: set[str], form: str,
                    span: tuple[int, int]) -> TextCall | None:
    if not isinstance(item, dict):
        return None
    call_id = item.get("id")
    function = item.get("function")
    if isinstance(function, dict) and "name" not in item:
        # OpenAI's own format: {"type": "function", "function": {...}}
        if set(item) - {"function", "id", "type"} or set(function) - _CALL_KEYS:
            return None
        item = function
    elif set(item) - _CALL_KEYS:
        return None
    if item.get("type") not in (None, "function"):
        return None
    name = item.get("name")
    if not isinstance(name, str) or name not in names:
        return None
    if "arguments" in item and "parameters" in item:
        return None
    arguments = item.get("arguments", item.get("parameters"))
    if arguments is None:
        text = ""
    elif isinstance(arguments, str):
        text = arguments  # OpenAI sends the arguments as a JSON string
    else:
        text = json.dumps(arguments, ensure_ascii=False)
    return TextCall(name, text, form, span, call_id if isinstance(call_id, str) and call_id
                    else None)
