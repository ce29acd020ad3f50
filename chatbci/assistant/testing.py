"""A local OpenAI-compatible server that plays a script, for tests.

Tests of the assistant exercise the real ``openai`` SDK over real HTTP, so
the client code under test is the code that runs against OpenAI, Azure,
Ollama or vLLM. What they talk to is :class:`FakeLLMServer`: a small
threaded HTTP server on ``127.0.0.1`` (a free port, so many can run in
parallel) that speaks just enough of the Chat Completions API --

- ``POST /v1/chat/completions``, as plain JSON or as a server-sent event
  (SSE) stream when the request says ``"stream": true``, with the chunk
  fields the real API sends (and a usage chunk when
  ``stream_options.include_usage`` is set);
- ``GET /v1/models`` (with extra fields per model, such as vLLM's
  ``max_model_len``, from ``model_info``), and llama.cpp's ``GET /props``
  and ``GET /slots`` when the server is given an ``n_ctx``;

-- and answers each request with the next item of a script::

    from chatbci.assistant.testing import FakeLLMServer, Fault, Reply

    with FakeLLMServer() as server:
        server.script([
            Fault.status(429),                      # rate limited, then
            Reply.tool_calls([("list_datasets", {})]),
            Reply.text("Two datasets are available."),
        ])
        client = openai.OpenAI(base_url=server.base_url, api_key="test-key-123")
        ...
        server.requests       # the JSON bodies received, in order
        server.headers        # their headers (lower-case names)

:class:`Reply` items are well-formed answers; :class:`Fault` items are the
ways a real deployment misbehaves (HTTP errors, hangs, cut or corrupt
streams, malformed tool arguments, calls to tools that do not exist,
conversations too long for the context). When the script
runs out, :attr:`FakeLLMServer.responder` (a callable, e.g. one drawing
random faults) or else :attr:`FakeLLMServer.default` answers.

Real servers, replayed
----------------------
:meth:`Reply.recorded` answers with the exact status, content type and
body bytes of a recorded exchange with a real server -- its SSE events,
keep-alive comments, missing usage and text-written tool calls included --
so that the client is tested against what llama.cpp or llama-cpp-python
really send. :func:`load_recorded` reads a recording (JSON lines of
``request``, ``response_head`` and ``response_body`` records sharing an
``id``, as in ``shared/fixtures/llm-traffic``)::

    exchanges = load_recorded("ls-default.jsonl")
    server.script([Reply.recorded(exchanges[0]), Reply.recorded(exchanges[1])])

The server never raises into the test: a client that disconnects halfway
is expected (that is what timeouts do), and an exception inside the
responder becomes an HTTP 500 and an entry of :attr:`FakeLLMServer.errors`.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["FakeLLMServer", "Fault", "RecordedExchange", "RecordedRequest", "Reply",
           "load_recorded"]

#: Status texts and OpenAI error ``type``/``code`` used for scripted HTTP errors.
_STATUS = {
    400: ("Bad Request", "invalid_request_error", None),
    401: ("Unauthorized", "invalid_request_error", "invalid_api_key"),
    403: ("Forbidden", "invalid_request_error", "unsupported_country_region_territory"),
    404: ("Not Found", "invalid_request_error", "model_not_found"),
    408: ("Request Timeout", "timeout", None),
    409: ("Conflict", "invalid_request_error", None),
    422: ("Unprocessable Entity", "invalid_request_error", None),
    429: ("Too Many Requests", "requests", "rate_limit_exceeded"),
    500: ("Internal Server Error", "server_error", None),
    502: ("Bad Gateway", "server_error", None),
    503: ("Service Unavailable", "server_error", None),
    504: ("Gateway Timeout", "server_error", None),
}


def _pieces(text: str, size: int) -> list[str]:
    """Split ``text`` into pieces of ``size`` characters (at least one piece)."""
    size = max(1, int(size))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _arguments_text(arguments: Any) -> str:
    # A str is sent verbatim, so a script can send arguments that are not
    # valid JSON; anything else is what a well-behaved model would send.
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


@dataclass(frozen=True)
class _Scripted:
    """One scripted answer. Build them with :class:`Reply` or :class:`Fault`."""

    kind: str
    content: str = ""
    #: ``(name, raw_arguments, id)`` triples of the tool calls to send.
    calls: tuple[tuple[str, str, str | None], ...] = ()
    status_code: int = 0
    message: str = ""
    code: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0
    #: For truncated streams: cut the connection ("close") or end the HTTP
    #: body cleanly but without finish_reason / [DONE] ("end").
    mode: str = "close"
    chunk_size: int = 4
    delay: float = 0.0
    finish_reason: str | None = None
    #: Whether a usage chunk follows when the request asks for one (False:
    #: a server that ignores ``stream_options``).
    usage: bool = True
    #: For recorded replies: the Content-Type to send (the body is ``content``).
    content_type: str | None = None
    #: For HTTP errors: the body's ``error.param``; extra ``error`` fields.
    param: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()


class Reply(_Scripted):
    """Well-formed answers. Use the class methods; see :class:`FakeLLMServer`."""

    @classmethod
    def text(cls, content: str, *, chunk_size: int = 4, delay: float = 0.0,
             finish_reason: str = "stop", usage: bool = True) -> Reply:
        """An assistant message, streamed in ``chunk_size``-character deltas.

        Parameters
        ----------
        content : str
        chunk_size : int
            Characters per streamed delta (real models send about a token,
            3 or 4 characters, at a time).
        delay : float
            Seconds to wait between streamed chunks.
        finish_reason : str
            E.g. ``"length"`` to mimic an answer cut by ``max_tokens``.
        usage : bool
            False: no usage, even when the request asks for it (as servers
            that ignore ``stream_options`` do); plain JSON answers then
            have none either.
        """
        return cls("text", content=content, chunk_size=chunk_size, delay=delay,
                   finish_reason=finish_reason, usage=usage)

    @classmethod
    def recorded(cls, record: Any, exchange: Any = None, *, delay: float = 0.0) -> Reply:
        """Replay a real server's answer byte for byte.

        The recorded status and Content-Type are sent, then the recorded
        body: an SSE body as one HTTP chunk per event (comments such as
        llama-cpp-python's ``: ping`` included), anything else (JSON
        answers and errors) with a Content-Length. What the request asks
        for is not looked at: the recording says what the server sent.

        Parameters
        ----------
        record : RecordedExchange | dict | str | Path
            An exchange from :func:`load_recorded`, a ``response_body``
            record (``{"dir": "response_body", "status": ..., "body": ...}``),
            or the path of a recording (then ``exchange`` is the id).
        exchange : int | str | None
            The exchange id within the recording at ``record``.
        delay : float
            Seconds to wait between SSE events.
        """
        content_type = None
        if isinstance(record, (str, os.PathLike)):
            exchanges = {e.id: e for e in load_recorded(record)}
            if exchange not in exchanges:
                raise KeyError(f"no exchange {exchange!r} in {record} "
                               f"(it has {sorted(exchanges, key=str)})")
            record = exchanges[exchange]
        if isinstance(record, RecordedExchange):
            content_type = record.content_type
            record = record.body
        if not isinstance(record, Mapping) or "body" not in record:
            raise TypeError("Reply.recorded needs a RecordedExchange, a response_body record "
                            "or the path of a recording")
        body = record["body"] if isinstance(record["body"], str) else json.dumps(record["body"])
        return cls("recorded", content=body, status_code=int(record.get("status") or 200),
                   content_type=content_type, delay=delay)

    @classmethod
    def tool_calls(cls, calls: Iterable[Sequence[Any]], *, text: str = "",
                   chunk_size: int = 5, delay: float = 0.0) -> Reply:
        """One assistant message calling one or more tools.

        Parameters
        ----------
        calls : iterable of (name, arguments) or (name, arguments, id)
            ``arguments`` is a dict (sent as JSON) or a str (sent verbatim,
            valid JSON or not). Without an id, one like ``call_...`` is made.
        text : str
            Optional content streamed before the calls, as some models do.
        chunk_size : int
            Characters per streamed argument fragment: like OpenAI, the
            first delta of each call carries its id and name, the following
            ones only pieces of the argument string.
        """
        triples = []
        for call in calls:
            name, arguments, *rest = call
            triples.append((str(name), _arguments_text(arguments), rest[0] if rest else None))
        return cls("tool_calls", content=text, calls=tuple(triples), chunk_size=chunk_size,
                   delay=delay, finish_reason="tool_calls")


class Fault(_Scripted):
    """Misbehaviour of a real deployment. Use the class methods."""

    @classmethod
    def status(cls, code: int, message: str | None = None, *, retry_after: float | None = None,
               error_code: str | None = None, param: str | None = None,
               error_type: str | None = None, **extra: Any) -> Fault:
        """An HTTP error with an OpenAI-style JSON body ``{"error": {...}}``.

        Parameters
        ----------
        code : int
            E.g. 429, 500, 401, 404.
        message : str | None
            The error message; a generic one by default.
        retry_after : float | None
            Seconds sent as ``Retry-After`` (rounded up to whole seconds, as
            HTTP requires) and, when not whole, as OpenAI's ``retry-after-ms``
            too. Defaults to 1 s for 429 and to no header otherwise.
        error_code : str | None
            The body's ``error.code``; e.g. ``"insufficient_quota"`` for a 429
            that no retry can fix.
        param : str | None
            The body's ``error.param`` (the request field at fault).
        error_type : str | None
            The body's ``error.type``, instead of the usual one for ``code``.
        **extra
            More ``error`` fields, e.g. llama.cpp's ``n_ctx``.
        """
        reason, _, default_code = _STATUS.get(code, ("Error", "server_error", None))
        if retry_after is None and code == 429:
            retry_after = 1.0
        if error_type is not None:
            extra["type"] = error_type
        return cls("status", status_code=int(code), message=message or f"Scripted HTTP {code} ({reason})",
                   code=error_code or default_code, retry_after=retry_after, param=param,
                   extra=tuple(extra.items()))

    @classmethod
    def context_exceeded(cls, prompt_tokens: int = 8210, context_tokens: int = 8192, *,
                         style: str = "llama.cpp", max_tokens: int = 1024) -> Fault:
        """HTTP 400: the conversation does not fit the model's context window.

        Parameters
        ----------
        prompt_tokens, context_tokens : int
            The sizes the error names.
        style : {"llama.cpp", "openai", "vllm"}
            Whose error body: llama.cpp's ``exceed_context_size_error``
            (with ``n_prompt_tokens`` and ``n_ctx``), OpenAI's
            ``context_length_exceeded``, or vLLM's message about the prompt
            plus ``max_tokens`` (``max_tokens`` in it).
        """
        if style == "llama.cpp":
            return cls.status(400, f"request ({prompt_tokens} tokens) exceeds the available "
                              f"context size ({context_tokens} tokens), try increasing it",
                              error_type="exceed_context_size_error", error_code="400",
                              n_prompt_tokens=prompt_tokens, n_ctx=context_tokens)
        if style == "openai":
            return cls.status(400, f"This model's maximum context length is {context_tokens} "
                              f"tokens. However, your messages resulted in {prompt_tokens} "
                              "tokens. Please reduce the length of the messages.",
                              error_code="context_length_exceeded", param="messages")
        if style == "vllm":
            return cls.status(400, f"This model's maximum context length is {context_tokens} "
                              f"tokens. However, you requested {prompt_tokens + max_tokens} "
                              f"tokens ({prompt_tokens} in the messages, {max_tokens} in the "
                              "completion). Please reduce the length of the messages or "
                              "completion.", error_type="BadRequestError", error_code="400")
        raise ValueError(f"style must be 'llama.cpp', 'openai' or 'vllm', not {style!r}")

    @classmethod
    def hang(cls, seconds: float, *, partial_text: str = "") -> Fault:
        """Send nothing for ``seconds`` (past the client's timeout), then close.

        With ``partial_text``, a stream starts normally and stalls after
        that text, to test a read timeout in the middle of a stream.
        ``hang(0)`` is a server that closes the connection without answering.
        """
        return cls("hang", seconds=float(seconds), content=partial_text)

    @classmethod
    def malformed_arguments(cls, name: str, raw_arguments: str) -> Fault:
        """A tool call whose argument string is not valid JSON (sent verbatim)."""
        return cls("tool_calls", calls=((name, raw_arguments, None),), chunk_size=5,
                   finish_reason="tool_calls")

    @classmethod
    def unknown_tool(cls, name: str, arguments: Any = None) -> Fault:
        """A well-formed call to a tool the client never declared."""
        return cls("tool_calls", calls=((name, _arguments_text(arguments or {}), None),),
                   chunk_size=5, finish_reason="tool_calls")

    @classmethod
    def corrupt_stream(cls, partial_text: str = "Some text before ") -> Fault:
        """A stream with an event whose data is not JSON, after ``partial_text``."""
        return cls("corrupt", content=partial_text)

    @classmethod
    def stream_error(cls, message: str = "The server had an error while processing your "
                     "request.", partial_text: str = "Some text before ") -> Fault:
        """A stream that reports ``{"error": ...}`` in an event after ``partial_text``,
        as OpenAI does when a generation fails midway."""
        return cls("stream_error", content=partial_text, message=message)

    @classmethod
    def truncated_stream(cls, partial_text: str = "The first words of an answer that",
                         *, mode: str = "close") -> Fault:
        """Start a stream, send ``partial_text``, stop without finish_reason or [DONE].

        Parameters
        ----------
        mode : {"close", "end"}
            ``"close"`` cuts the connection in the middle of the chunked HTTP
            body (the client's HTTP layer notices); ``"end"`` ends the body
            cleanly (as a misbehaving proxy may), so only the missing
            ``finish_reason`` tells the answer is incomplete.
        """
        if mode not in ("close", "end"):
            raise ValueError(f"mode must be 'close' or 'end', not {mode!r}")
        return cls("truncated", content=partial_text, mode=mode)


@dataclass(frozen=True)
class RecordedExchange:
    """One request and the real server's answer, from a recording.

    Attributes
    ----------
    id : int | str
        The exchange's id in the recording.
    request : dict | None
        The ``request`` record: ``method``, ``path``, ``headers``, ``body``.
    head : dict | None
        The ``response_head`` record: ``status``, ``headers``, ``ttfb_s``.
    body : dict | None
        The ``response_body`` record: ``status``, ``body`` (text),
        ``first_data_s``, ``total_s``.
    """

    id: Any
    request: dict | None = None
    head: dict | None = None
    body: dict | None = None

    @property
    def status(self) -> int | None:
        """The HTTP status the server answered with."""
        for record in (self.body, self.head):
            if record and record.get("status") is not None:
                return int(record["status"])
        return None

    @property
    def request_body(self) -> Any:
        """The JSON body the client sent (None if there was none)."""
        return (self.request or {}).get("body")

    @property
    def response_text(self) -> str:
        """The response body as recorded (SSE text or JSON text)."""
        body = (self.body or {}).get("body", "")
        return body if isinstance(body, str) else json.dumps(body)

    @property
    def content_type(self) -> str | None:
        """The response's Content-Type header, if the head was recorded."""
        headers = (self.head or {}).get("headers") or {}
        for name, value in headers.items():
            if name.lower() == "content-type":
                return str(value)
        return None

    def reply(self, *, delay: float = 0.0) -> Reply:
        """This answer as a scripted item (:meth:`Reply.recorded`)."""
        return Reply.recorded(self, delay=delay)


def load_recorded(path) -> list[RecordedExchange]:
    """The exchanges of a recording, in the order their requests were made.

    Parameters
    ----------
    path : str | Path
        A JSON-lines file of ``request``, ``response_head`` and
        ``response_body`` records sharing an ``id`` (the format of
        ``shared/fixtures/llm-traffic``).
    """
    parts: dict[Any, dict[str, dict]] = {}
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                raise ValueError(f"{path}:{number} is not a JSON record ({err})") from None
            kind = record.get("dir")
            if kind not in ("request", "response_head", "response_body"):
                raise ValueError(f"{path}:{number}: unknown record dir {kind!r}")
            parts.setdefault(record.get("id"), {})[kind] = record
    return [RecordedExchange(id=key, request=p.get("request"), head=p.get("response_head"),
                             body=p.get("response_body"))
            for key, p in parts.items()]


@dataclass
class RecordedRequest:
    """One HTTP request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    #: The scripted item that answered it (None for GET /models and errors).
    answer: _Scripted | None = None
    received_at: float = field(default_factory=time.time)


class _HTTPServer(ThreadingHTTPServer):
    # Handler threads must not keep the test process alive.
    daemon_threads = True
    # Quick restarts of a test run must not fail on a port in TIME_WAIT.
    allow_reuse_address = True

    fake: FakeLLMServer

    def handle_error(self, request, client_address):
        # The default prints a traceback to stderr; a disconnecting client is
        # normal here, anything else is kept for the test to inspect.
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError, OSError)):
            self.fake._note_error(f"{type(error).__name__}: {error}")


class _Disconnected(Exception):
    """The client went away while we were writing."""


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 with keep-alive, as the SDK's connection pool expects.
    protocol_version = "HTTP/1.1"
    server_version = "FakeLLM/1.0"
    # An idle keep-alive connection is dropped after this many seconds, so a
    # forgotten client cannot pin a handler thread for ever.
    timeout = 30

    server: _HTTPServer

    # -- plumbing ---------------------------------------------------------

    def setup(self):
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._track(self.connection, add=False)

    def log_message(self, format, *args):
        pass  # tests read server.requests instead of an access log

    def _write(self, data: bytes):
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (OSError, ValueError) as err:  # ValueError: write to a closed file
            self.close_connection = True
            raise _Disconnected() from err

    def _send_json(self, status: int, payload: Any, headers: dict | None = None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self._write(data)

    def _error(self, status: int, message: str, type_: str = "invalid_request_error",
               code: str | None = None, headers: dict | None = None, param: str | None = None,
               extra: Iterable[tuple[str, Any]] = ()):
        error = {"message": message, "type": type_, "param": param, "code": code}
        error.update(dict(extra))
        self._send_json(status, {"error": error}, headers)

    # -- routes -----------------------------------------------------------

    def do_GET(self):
        fake = self.server.fake
        record = fake._record("GET", self.path, dict(self.headers.items()))
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            if path == "/v1/models":
                if not self._authorised(record):
                    return
                models = fake.models or [fake.model]
                self._send_json(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": fake.created,
                     "owned_by": "chatbci-test", **fake.model_info}
                    for m in models]})
            elif path in ("/props", "/slots") and fake.n_ctx is not None:
                # llama.cpp's server: the context of one slot, as it reports it.
                slot = {"id": 0, "id_task": -1, "n_ctx": fake.n_ctx, "speculative": False,
                        "is_processing": False, "params": {"n_predict": -1}}
                if path == "/props":
                    self._send_json(200, {"default_generation_settings": slot,
                                          "total_slots": 1, "model_path": f"{fake.model}.gguf",
                                          "build_info": "fake"})
                else:
                    self._send_json(200, [slot])
            else:
                self._error(404, f"Unknown path {self.path}; this fake serves /v1/models and "
                                 "/v1/chat/completions.", code="unknown_url")
        except _Disconnected:
            pass

    def do_POST(self):
        fake = self.server.fake
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
        except (OSError, ValueError):
            self.close_connection = True
            return
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        record = fake._record("POST", self.path, dict(self.headers.items()), body)
        try:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._error(404, f"Unknown path {self.path}; this fake serves /v1/models and "
                                 "/v1/chat/completions.", code="unknown_url")
                return
            # Recorded before any check, so tests see rejected requests too.
            fake._requests_append(record)
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list) \
                    or not body["messages"] or not body.get("model"):
                self._error(400, "The request body must be a JSON object with 'model' and a "
                                 "non-empty 'messages' list.")
                return
            if not self._authorised(record):
                return
            if fake.models and body["model"] not in fake.models:
                self._error(404, f"The model `{body['model']}` does not exist or you do not "
                                 "have access to it.", code="model_not_found")
                return
            prompt = fake.prompt_tokens(body)
            if fake.enforce_context and fake.n_ctx and prompt > fake.n_ctx:
                answer = Fault.context_exceeded(prompt, fake.n_ctx)
            else:
                answer = fake._next_answer(body)
            record.answer = answer
            _Responder(self, body, answer).run()
        except _Disconnected:
            pass

    def _authorised(self, record: RecordedRequest) -> bool:
        expected = self.server.fake.api_key
        if expected is None:
            return True
        if record.headers.get("authorization") == f"Bearer {expected}":
            return True
        # Like OpenAI, never echo the key that was sent.
        self._error(401, "Incorrect API key provided.", code="invalid_api_key")
        return False


class _Responder:
    """Render one scripted answer as plain JSON or as an SSE stream."""

    def __init__(self, handler: _Handler, body: dict, answer: _Scripted):
        self.h = handler
        self.fake = handler.server.fake
        self.body = body
        self.answer = answer
        self.stream = bool(body.get("stream"))
        options = body.get("stream_options") or {}
        self.include_usage = self.stream and bool(options.get("include_usage"))
        self.model = str(body.get("model"))
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def run(self):
        a = self.answer
        if a.kind == "status":
            return self._status()
        if a.kind == "recorded":
            return self._recorded()
        if a.kind == "hang":
            if a.content and self.stream:
                self._start_stream()
                self._stream_text(a.content)
            self.fake._closing.wait(a.seconds)  # close() interrupts the wait
            self.h.close_connection = True
            return
        if a.kind == "truncated":
            return self._truncated()
        if a.kind in ("corrupt", "stream_error"):
            if not self.stream:
                return self.h._error(500, "This fault only exists in streams.", "server_error")
            self._start_stream()
            self._stream_text(a.content)
            if a.kind == "corrupt":
                self._event('{"id": "chatcmpl-broken", "choices": [{"delta": {"content": "x')
            else:
                self._event({"error": {"message": a.message, "type": "server_error",
                                       "param": None, "code": None}})
            self._event("[DONE]")
            self._chunk_bytes(b"")
            return
        return self._stream_reply() if self.stream else self._json_reply()

    # -- errors -----------------------------------------------------------

    def _status(self):
        a = self.answer
        _, type_, _ = _STATUS.get(a.status_code, ("Error", "server_error", None))
        headers = {}
        if a.retry_after is not None:
            headers["Retry-After"] = str(max(0, math.ceil(a.retry_after)))
            if a.retry_after != int(a.retry_after):
                headers["retry-after-ms"] = str(round(a.retry_after * 1000))
        self.h._error(a.status_code, a.message, type_, a.code, headers, a.param, a.extra)

    # -- replays ----------------------------------------------------------

    def _recorded(self):
        a = self.answer
        body = a.content
        sse = a.content_type.startswith("text/event-stream") if a.content_type else (
            re.match(r"\s*(?:data|:|event)", body) is not None or not body)
        content_type = a.content_type or ("text/event-stream" if sse else
                                          "application/json")
        self.h.send_response(a.status_code or 200)
        self.h.send_header("Content-Type", content_type)
        if not sse:
            data = body.encode()
            self.h.send_header("Content-Length", str(len(data)))
            self.h.end_headers()
            self.h._write(data)
            return
        self.h.send_header("Cache-Control", "no-cache")
        self.h.send_header("Transfer-Encoding", "chunked")
        self.h.end_headers()
        events = [e for e in re.split(r"(?<=\n\n)", body) if e]
        if a.delay:
            for event in events:
                self._chunk_bytes(event.encode())
                time.sleep(a.delay)
        else:
            # Whole events, about 8 KiB per HTTP chunk: the client parses the
            # same bytes, and a recorded 5,000-token answer replays quickly.
            batch, size = [], 0
            for event in events:
                batch.append(event)
                size += len(event)
                if size >= 8192:
                    self._chunk_bytes("".join(batch).encode())
                    batch, size = [], 0
            if batch:
                self._chunk_bytes("".join(batch).encode())
        self._chunk_bytes(b"")

    def _truncated(self):
        a = self.answer
        if not self.stream:
            # Promise more bytes than are sent, then hang up.
            self.h.send_response(200)
            self.h.send_header("Content-Type", "application/json")
            self.h.send_header("Content-Length", "4096")
            self.h.end_headers()
            self.h._write(b'{"id": "' + self.id.encode() + b'", "object": "chat.comp')
            self.h.close_connection = True
            return
        self._start_stream()
        self._stream_text(a.content)
        if a.mode == "end":
            self._chunk_bytes(b"")  # the terminating chunk: a clean end of body
        self.h.close_connection = True

    # -- usage --------------------------------------------------------------

    def _usage(self) -> dict:
        prompt = self.fake.prompt_tokens(self.body)
        produced = self.answer.content + "".join(name + args for name, args, _ in self.answer.calls)
        completion = max(1, len(produced) // 4)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def _calls(self) -> list[tuple[str, str, str]]:
        return [(name, args, call_id or f"call_{uuid.uuid4().hex[:24]}")
                for name, args, call_id in self.answer.calls]

    # -- plain JSON ---------------------------------------------------------

    def _json_reply(self):
        a = self.answer
        message: dict[str, Any] = {"role": "assistant", "content": a.content or None,
                                   "refusal": None}
        if a.calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
                for name, args, call_id in self._calls()]
        elif not a.content:
            message["content"] = ""
        self.h._send_json(200, {
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.model, "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": a.finish_reason or "stop"}],
            **({"usage": self._usage()} if a.usage else {}),
        })

    # -- SSE ----------------------------------------------------------------

    def _chunk_bytes(self, data: bytes):
        # HTTP/1.1 chunked transfer encoding, as the real API streams.
        self.h._write(b"%x\r\n%s\r\n" % (len(data), data))

    def _event(self, payload: Any):
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self._chunk_bytes(f"data: {text}\n\n".encode())
        if self.answer.delay:
            time.sleep(self.answer.delay)

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                 "model": self.model, "system_fingerprint": "fp_fake",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None,
                              "finish_reason": finish_reason}]}
        if self.include_usage and self.answer.usage:
            chunk["usage"] = None  # the real API sends null until the usage chunk
        return chunk

    def _start_stream(self):
        self.h.send_response(200)
        self.h.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.h.send_header("Cache-Control", "no-cache")
        self.h.send_header("Transfer-Encoding", "chunked")
        self.h.end_headers()
        content = "" if not self.answer.calls or self.answer.content else None
        self._event(self._chunk({"role": "assistant", "content": content, "refusal": None}))

    def _stream_text(self, text: str):
        if text:
            for piece in _pieces(text, self.answer.chunk_size):
                self._event(self._chunk({"content": piece}))

    def _stream_reply(self):
        a = self.answer
        self._start_stream()
        self._stream_text(a.content)
        for index, (name, args, call_id) in enumerate(self._calls()):
            self._event(self._chunk({"tool_calls": [{
                "index": index, "id": call_id, "type": "function",
                "function": {"name": name, "arguments": ""}}]}))
            for piece in _pieces(args, a.chunk_size):
                if piece:
                    self._event(self._chunk({"tool_calls": [{
                        "index": index, "function": {"arguments": piece}}]}))
        self._event(self._chunk({}, a.finish_reason or "stop"))
        if self.include_usage and a.usage:
            self._event({"id": self.id, "object": "chat.completion.chunk",
                         "created": self.created, "model": self.model,
                         "system_fingerprint": "fp_fake", "choices": [],
                         "usage": self._usage()})
        self._event("[DONE]")
        self._chunk_bytes(b"")


class FakeLLMServer:
    """A scripted OpenAI-compatible server on 127.0.0.1, for tests.

    Parameters
    ----------
    model : str
        Listed by ``GET /v1/models`` (responses echo the requested model).
    models : list of str | None
        If given, requests for any other model get a 404 ``model_not_found``
        like OpenAI's; by default every model name is accepted.
    api_key : str | None
        If given, requests without ``Authorization: Bearer <api_key>`` get
        a 401 like OpenAI's; by default any key is accepted.
    default : Reply | Fault
        The answer once the script is exhausted and no responder is set.
    n_ctx : int | None
        If given, the server also answers llama.cpp's ``GET /props`` and
        ``GET /slots`` with this context size (per slot); by default they
        are 404s, as on OpenAI or vLLM.
    model_info : dict | None
        Extra fields of each ``GET /v1/models`` entry, e.g.
        ``{"max_model_len": 4096}`` as vLLM sends.
    chars_per_token : float
        The density of the server's pretend tokenizer: reported
        ``prompt_tokens`` are the characters of the request's messages and
        tools divided by this (real small models' tokenizers give about 3.4
        on chatbci's requests).
    enforce_context : bool
        With ``n_ctx``, answer a request whose prompt tokens exceed it with
        llama.cpp's ``exceed_context_size_error``, as a real server does,
        instead of the scripted answer (which stays queued).

    Attributes
    ----------
    base_url : str
        ``http://127.0.0.1:<port>/v1``, for ``openai.OpenAI(base_url=...)``.
    requests : list of dict
        Bodies of the chat-completion requests received, in order.
    headers : list of dict
        Their headers (lower-case names), in the same order.
    received : list of RecordedRequest
        Every request, including rejected ones and ``GET /v1/models``.
    responder : callable | None
        ``responder(request_json) -> Reply | Fault``, asked when the script
        is empty (before ``default``). Called from handler threads.
    errors : list of str
        Unexpected server-side errors (a responder that raised, ...); a
        clean test run leaves it empty.

    Examples
    --------
    >>> with FakeLLMServer() as server:                     # doctest: +SKIP
    ...     server.script([Reply.text("Hello!")])
    ...     openai.OpenAI(base_url=server.base_url, api_key="test-key-123")...
    """

    def __init__(self, *, model: str = "fake-model", models: Sequence[str] | None = None,
                 api_key: str | None = None,
                 default: _Scripted | None = None,
                 responder: Callable[[dict], _Scripted] | None = None,
                 n_ctx: int | None = None, model_info: Mapping[str, Any] | None = None,
                 chars_per_token: float = 4.0, enforce_context: bool = False):
        self.model = model
        self.n_ctx = n_ctx
        self.chars_per_token = float(chars_per_token)
        self.enforce_context = bool(enforce_context)
        self.model_info = dict(model_info or {})
        self.models = list(models) if models else None
        self.api_key = api_key
        self.default = default if default is not None else Reply.text("(no scripted reply)")
        self.responder = responder
        self.created = int(time.time())
        self.received: list[RecordedRequest] = []
        self.errors: list[str] = []
        self._script: deque[_Scripted] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._chat: list[RecordedRequest] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._httpd is not None:
            return self
        self._closing.clear()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"FakeLLMServer:{self.port}", daemon=True)
        self._thread.start()
        return self

    def close(self):
        """Stop serving, drop open connections and join the server thread."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._closing.set()  # wakes handlers inside Fault.hang
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            # Unblocks handler threads waiting on an idle keep-alive connection.
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc_info):
        self.close()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeLLMServer is not running; use it as a context manager "
                               "or call start() first")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The URL to give the SDK: ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- script -----------------------------------------------------------

    def script(self, items: Iterable[_Scripted]) -> FakeLLMServer:
        """Queue answers, consumed one per chat-completion request."""
        items = list(items)
        for item in items:
            if not isinstance(item, _Scripted):
                raise TypeError(f"script items must be Reply or Fault objects, not {item!r}")
        with self._lock:
            self._script.extend(items)
        return self

    @property
    def pending(self) -> int:
        """How many scripted answers are still queued."""
        with self._lock:
            return len(self._script)

    # -- records ----------------------------------------------------------

    @property
    def requests(self) -> list[dict]:
        with self._lock:
            return [r.body for r in self._chat]

    @property
    def headers(self) -> list[dict[str, str]]:
        with self._lock:
            return [r.headers for r in self._chat]

    @property
    def answers(self) -> list[_Scripted | None]:
        """The scripted item that answered each chat-completion request."""
        with self._lock:
            return [r.answer for r in self._chat]

    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        """The prompt tokens this server counts for a request ``body``."""
        sent = json.dumps(body.get("messages", [])) + json.dumps(body.get("tools") or [])
        return max(1, int(len(sent) / self.chars_per_token))

    # -- used by the handler ----------------------------------------------

    def _record(self, method, path, headers, body=None) -> RecordedRequest:
        record = RecordedRequest(method, path, {k.lower(): v for k, v in headers.items()}, body)
        with self._lock:
            self.received.append(record)
        return record

    def _requests_append(self, record: RecordedRequest):
        with self._lock:
            self._chat.append(record)

    def _note_error(self, message: str):
        with self._lock:
            self.errors.append(message)

    def _track(self, conn, *, add: bool):
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    def _next_answer(self, body: dict) -> _Scripted:
        with self._lock:
            if self._script:
                return self._script.popleft()
            responder = self.responder
        if responder is None:
            return self.default
        try:
            answer = responder(body)
            if not isinstance(answer, _Scripted):
                raise TypeError(f"responder returned {answer!r}, not a Reply or Fault")
            return answer
        except Exception as err:
            self._note_error(f"responder failed: {type(err).__name__}: {err}")
            return Fault.status(500, f"FakeLLMServer responder failed: {err}")
