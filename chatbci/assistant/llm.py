"""The LLM client: OpenAI Chat Completions through the official ``openai`` SDK.

The assistant talks to a *backend* (:class:`Backend`): something that takes
a conversation and the tool schemas and returns a :class:`Completion` --
the assistant's text and the tool calls it wants to make. Two backends
exist: :class:`OpenAIChat` here, for any OpenAI-compatible server, and the
offline rule-based backend (``is_llm = False``), used when no credentials
are configured so that the demo and the tests run anywhere.

Settings
--------
:class:`LLMSettings` says which model to use and where. The model, base URL
and limits come from ``workspace.toml``'s ``[llm]`` table, overridden by
the environment; the API key comes *only* from ``OPENAI_API_KEY``, because
a workspace is meant to be shared. Any server speaking the Chat Completions
API works through ``base_url``:

==================  ===================================================  ===========
Provider            ``base_url``                                         Key needed
==================  ===================================================  ===========
OpenAI              (unset)                                              yes
Azure OpenAI        ``https://<resource>.openai.azure.com/openai/v1/``   yes
Ollama              ``http://localhost:11434/v1``                        no
vLLM                ``http://localhost:8000/v1``                         no
LM Studio           ``http://localhost:1234/v1``                         no
==================  ===================================================  ===========

For Azure, use the v1-compatible endpoint shown (no ``api-version`` query),
set ``model`` to the *deployment* name and put the Azure key in
``OPENAI_API_KEY``. Local servers ignore the key;
the SDK insists on one, so a placeholder is sent when none is set.

Limits and what the answer says about them
------------------------------------------
Every request carries an answer cap (``[llm] max_tokens``, 1024 by
default), sent as ``max_completion_tokens`` to OpenAI and Azure OpenAI
(their newer models reject ``max_tokens``) and as ``max_tokens`` to every
other server (llama.cpp, llama-cpp-python, vLLM, Ollama, LM Studio all
read that name). A server that answers HTTP 400 naming the parameter as
unsupported gets the other name, once; the client remembers it. An answer
cut by the cap has ``finish_reason == "length"`` and
:attr:`Completion.truncated` set. A conversation that no longer fits the
model's context window raises :class:`LLMError` with
``reason="context_length"`` and the token counts the server gave
(:attr:`LLMError.prompt_tokens`, :attr:`LLMError.context_tokens`), at
once: the same request would fail again. :meth:`OpenAIChat.context_tokens`
says how large the window is, from ``[llm] context_tokens`` or from the
server (llama.cpp's ``/props``, vLLM's ``/v1/models``).

Tool calls written as text
--------------------------
Small local models often write a tool call into their answer instead of
sending a structured one. With ``[llm] tool_calls = "auto"`` (the default)
or ``"text"``, the common written forms that name a *declared* tool
(``<tool_call>`` tags, fenced JSON, ``functions.NAME:``; see
:mod:`chatbci.assistant.textcalls`) become :class:`ToolCall` objects with
``source="text"``, taken out of the answer text; ``"native"`` never looks
at the text, ``"text"`` does not send the tool schemas at all.

Failures
--------
:meth:`OpenAIChat.complete` retries what a retry can fix -- HTTP 429 (after
the server's ``Retry-After``, capped), 408/409/5xx, timeouts, dropped
connections and streams cut before their end -- with exponential backoff,
and raises :class:`LLMError` for everything else and once the retries are
spent. Its message says what failed, after how many attempts, the HTTP
status, and what to check. The SDK's own retries are switched off so the
policy is the same for every failure, including those in the middle of a
stream, which the SDK would not retry.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import math
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlparse

import openai
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from .textcalls import find_text_calls

__all__ = [
    "DEFAULT_MODEL",
    "OPENAI_BASE_URL",
    "Backend",
    "Completion",
    "LLMConfigError",
    "LLMError",
    "LLMSettings",
    "OpenAIChat",
    "ToolArgumentsError",
    "ToolCall",
]

#: The model used when neither ``CHATBCI_MODEL`` nor ``[llm] model`` says otherwise.
DEFAULT_MODEL = "gpt-4o-mini"
#: Where requests go when no ``base_url`` is configured.
OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Sent as the key to servers that need none (the SDK refuses an empty key).
NO_KEY_PLACEHOLDER = "chatbci-no-key"

#: The answer cap sent with every request unless ``[llm] max_tokens`` says otherwise.
DEFAULT_MAX_TOKENS = 1024

#: The keys ``[llm]`` may hold, and the environment variable overriding each.
_ENV_VARS = {
    "model": "CHATBCI_MODEL",
    "base_url": "OPENAI_BASE_URL",
    "timeout": "CHATBCI_LLM_TIMEOUT",
    "max_retries": "CHATBCI_LLM_MAX_RETRIES",
    "max_tokens": "CHATBCI_LLM_MAX_TOKENS",
    "context_tokens": "CHATBCI_LLM_CONTEXT_TOKENS",
    "temperature": "CHATBCI_LLM_TEMPERATURE",
    "seed": "CHATBCI_LLM_SEED",
    "stream": "CHATBCI_LLM_STREAM",
    "tool_calls": "CHATBCI_LLM_TOOL_CALLS",
    "guide_tools": "CHATBCI_LLM_GUIDE_TOOLS",
}
_CONFIG_KEYS = tuple(_ENV_VARS)
#: Key names that can only mean a credential ("max_tokens" is fine, "token" is not).
_SECRET_KEYS = {"api_key", "apikey", "api-key", "key", "token", "secret", "password",
                "openai_api_key", "access_token"}

#: Appended to messages of errors the user may be able to fix by going offline.
_OFFLINE = "or work offline with the rule-based backend (unset OPENAI_API_KEY and OPENAI_BASE_URL)"


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

class LLMError(RuntimeError):
    """An LLM request failed for good (not retryable, or retries exhausted).

    Attributes
    ----------
    reason : str
        ``"rate_limit"``, ``"quota"``, ``"server_error"``, ``"timeout"``,
        ``"connection"``, ``"truncated"``, ``"invalid_response"``,
        ``"auth"``, ``"permission"``, ``"not_found"``, ``"bad_request"``,
        ``"context_length"`` (never retried: shorten the conversation)...
    status_code : int | None
        The HTTP status of the last attempt, if the server answered.
    attempts : int
        How many requests were made.
    prompt_tokens, context_tokens : int | None
        For ``reason == "context_length"`` (the conversation does not fit
        the model's context window): the size of the request and of the
        window in tokens, where the server said; None otherwise.
    """

    def __init__(self, message: str, *, reason: str = "error", status_code: int | None = None,
                 attempts: int = 1, prompt_tokens: int | None = None,
                 context_tokens: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.status_code = status_code
        self.attempts = attempts
        self.prompt_tokens = prompt_tokens
        self.context_tokens = context_tokens


class LLMConfigError(ValueError):
    """The LLM settings (``[llm]`` table or environment) are invalid."""


class ToolArgumentsError(ValueError):
    """A tool call's arguments are not a JSON object.

    The session sends the message back to the model as the tool's error
    result, so it is written for the model as much as for the human.

    Attributes
    ----------
    tool_name, call_id, raw : str
        The tool called, the call's id and the argument text received.
    """

    def __init__(self, message: str, *, tool_name: str, call_id: str, raw: str):
        super().__init__(message)
        self.tool_name = tool_name
        self.call_id = call_id
        self.raw = raw


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class ToolCall:
    """A tool call requested by the model.

    Attributes
    ----------
    id : str
        Echoed in the tool result message (``tool_call_id``).
    name : str
        As sent by the model -- possibly a tool that does not exist; the
        session validates names against its registry.
    arguments : str
        The raw JSON text, as sent (possibly invalid: see
        :meth:`parse_arguments`).
    source : {"native", "text"}
        ``"native"``: sent in the API's ``tool_calls`` field. ``"text"``:
        written by the model in its answer text and recognised by
        :func:`chatbci.assistant.textcalls.find_text_calls` (only ever a
        declared tool's name); the journal should say so.
    """

    id: str
    name: str
    arguments: str
    source: str = "native"

    def parse_arguments(self) -> dict[str, Any]:
        """The arguments as a dict.

        An empty string counts as ``{}``: some local servers send it for
        tools without parameters.

        Raises
        ------
        ToolArgumentsError
            The text is not valid JSON, or is JSON but not an object.
        """
        raw = self.arguments
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except ValueError as err:
            raise ToolArgumentsError(
                f"The arguments of the call to tool {self.name!r} are not valid JSON "
                f"({err}): {_clip(raw, 200)!r}. Send a JSON object matching the tool's "
                "parameter schema.",
                tool_name=self.name, call_id=self.id, raw=raw) from None
        if not isinstance(value, dict):
            raise ToolArgumentsError(
                f"The arguments of the call to tool {self.name!r} must be a JSON object, "
                f"not {type(value).__name__} ({_clip(raw, 200)!r}).",
                tool_name=self.name, call_id=self.id, raw=raw)
        return value

    def as_dict(self) -> dict[str, Any]:
        """The call in the Chat Completions format (``message.tool_calls[i]``)."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Completion:
    """One assistant turn, as returned by a :class:`Backend`.

    Attributes
    ----------
    text : str
        The assistant's text ("" when it only calls tools).
    tool_calls : list of ToolCall
        In the order the model sent them. Look here rather than at
        ``finish_reason``: some local servers say ``"stop"`` even when they
        call tools.
    finish_reason : str | None
        ``"stop"``, ``"tool_calls"``, ``"length"`` (cut by the token limit),
        ``"content_filter"``...
    usage : dict | None
        ``prompt_tokens``, ``completion_tokens``, ``total_tokens``, when the
        server reports them.
    model : str
        The model that answered, as reported by the server.
    latency_s : float
        Wall time of the whole call, retries and waits included.
    attempts : int
        Requests made (1 if the first succeeded).
    request_params : dict
        What was asked for, for the journal (papers report sampling
        settings): ``temperature`` and ``seed`` (None: not sent, the
        server's default), ``max_tokens`` (the answer cap sent, None if
        none) and ``max_tokens_param`` (the name it was sent under),
        ``stream``, ``tool_calls`` (the mode: ``"native"``, ``"text"``,
        ``"auto"``) and ``tool_choice`` (None when no tool schemas were
        sent).
    raw_text : str | None
        The answer text as the model wrote it, when tool calls written as
        text were taken out of it (``text`` is then what remains); None
        otherwise.
    system_fingerprint : str | None
        The server's configuration fingerprint (OpenAI; with ``seed`` it
        tells whether two answers can be compared), if sent.

    Notes
    -----
    ``usage`` is None when the server did not report it (some servers
    ignore ``stream_options``): unknown, not zero.
    """

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = "stop"
    usage: dict[str, int] | None = None
    model: str = ""
    latency_s: float = 0.0
    attempts: int = 1
    request_params: dict[str, Any] = field(default_factory=dict)
    raw_text: str | None = None
    system_fingerprint: str | None = None

    @property
    def truncated(self) -> bool:
        """Whether the answer was cut by the answer cap (``finish_reason == "length"``).

        The text (and any tool call being written) is then incomplete.
        """
        return self.finish_reason == "length"

    @property
    def text_tool_calls(self) -> bool:
        """Whether any of the tool calls was written as text (``source == "text"``)."""
        return any(call.source == "text" for call in self.tool_calls)

    def as_message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation.

        In the Chat Completions format, so that the tool results that follow
        (``{"role": "tool", "tool_call_id": ...}``) refer to its calls.
        """
        message: dict[str, Any] = {"role": "assistant",
                                   # The API wants null content beside tool calls, not "".
                                   "content": self.text if self.text or not self.tool_calls else None}
        if self.tool_calls:
            message["tool_calls"] = [call.as_dict() for call in self.tool_calls]
        return message


# --------------------------------------------------------------------------
# The backend interface
# --------------------------------------------------------------------------

#: Receives each piece of the assistant's text as it arrives.
DeltaCallback = Callable[[str], None]


@runtime_checkable
class Backend(Protocol):
    """What the session needs from a model: one completion at a time.

    Attributes
    ----------
    name : str
        Short label of the backend kind (``"openai"``, ``"offline"``).
    model : str
        The model name recorded in the journal (``ai:<model>``).
    is_llm : bool
        False for the rule-based offline backend, which must never be
        presented as an LLM.
    """

    name: str
    model: str
    is_llm: bool

    def complete(self, messages: Sequence[Mapping[str, Any]],
                 tools: Sequence[Mapping[str, Any]] | None = None,
                 on_delta: DeltaCallback | None = None,
                 tool_choice: Any = "auto", *,
                 on_reset: Callable[[], None] | None = None) -> Completion:
        """Answer the conversation ``messages`` (Chat Completions format).

        Parameters
        ----------
        messages : list of dict
        tools : list of dict | None
            Tool schemas in the Chat Completions format
            (``{"type": "function", "function": {...}}``).
        on_delta : callable | None
            Called with each piece of text as it is produced.
        tool_choice : {"auto", "none", "required"} | dict
        on_reset : callable | None
            Called when text already passed to ``on_delta`` is void (the
            attempt that produced it failed and is being retried): a UI
            should clear the partial answer.

        Raises
        ------
        LLMError
            The backend could not produce an answer.
        """
        ...


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

def _env_value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "")
    return value.strip() or None


class LLMSettings(BaseModel):
    """Which OpenAI-compatible model to use, where, and with which limits.

    Build it with :meth:`resolve` (workspace config + environment). A plain
    ``LLMSettings()`` takes model, base URL and key from the environment and
    the rest from the defaults.

    Attributes
    ----------
    model : str
        ``CHATBCI_MODEL``, else ``[llm] model``, else ``"gpt-4o-mini"``.
    base_url : str | None
        ``OPENAI_BASE_URL``, else ``[llm] base_url``, else None (OpenAI).
        See the module docstring for Azure, Ollama, vLLM and LM Studio.
    api_key : SecretStr
        ``OPENAI_API_KEY`` only; never read from a file. Masked in
        ``repr``, ``str`` and ``model_dump``; "" if unset.
    timeout : float
        Seconds to wait for the connection and for each piece of the
        answer (a long answer that keeps streaming never times out).
        With ``stream=False`` the whole answer must arrive within it.
    max_retries : int
        Retries after the first attempt for failures a retry can fix.
    temperature : float | None
        Sampling temperature; None to leave it out of the request (some
        reasoning models reject any value).
    max_tokens : int | None
        The answer cap, 1024 by default (a small model can otherwise loop
        until the context is full). Sent as ``max_completion_tokens`` to
        OpenAI and Azure OpenAI, as ``max_tokens`` elsewhere; None sends
        none. Reasoning models count their reasoning in it: raise it for
        them.
    context_tokens : int | None
        The model's context window in tokens; None to ask the server
        (:meth:`OpenAIChat.context_tokens`).
    seed : int | None
        Sampling seed, sent when set (OpenAI, llama.cpp, vLLM and Ollama
        accept it; determinism is best effort).
    stream : bool
        Stream the answer (default). Several local servers parse tool
        calls only without streaming: set False for them.
    tool_calls : {"auto", "native", "text"}
        ``"native"``: send the tool schemas and take only the API's tool
        calls. ``"auto"`` (default): the same, and also accept tool calls
        the model wrote as text when they name a declared tool.
        ``"text"``: do not send the schemas (the prompt describes the
        tools) and take tool calls from the text only.
    guide_tools : bool
        For small local models (default False): when the human's message
        plainly asks for one tool ("explore subject 1", "benchmark CSP+LDA on
        subjects 1-3", "which pipeline is best?", as the offline rules read
        it), the turn's first request names that tool in ``tool_choice``, so
        a server with constrained decoding (llama.cpp, vLLM) makes the call;
        the model still writes the arguments, which are checked like any
        others, and the journal records the guided tool.

    Each has an environment override, which wins over ``[llm]``:
    ``CHATBCI_LLM_TIMEOUT``, ``CHATBCI_LLM_MAX_RETRIES``,
    ``CHATBCI_LLM_MAX_TOKENS``, ``CHATBCI_LLM_CONTEXT_TOKENS``,
    ``CHATBCI_LLM_TEMPERATURE``, ``CHATBCI_LLM_SEED``,
    ``CHATBCI_LLM_STREAM`` (``true``/``false``), ``CHATBCI_LLM_TOOL_CALLS``
    and ``CHATBCI_LLM_GUIDE_TOOLS`` (``true``/``false``) (read by :meth:`resolve`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    model: str = Field(default_factory=lambda: _env_value(os.environ, "CHATBCI_MODEL")
                       or DEFAULT_MODEL)
    base_url: str | None = Field(default_factory=lambda: _env_value(os.environ, "OPENAI_BASE_URL"))
    api_key: SecretStr = Field(default_factory=lambda: SecretStr(
        _env_value(os.environ, "OPENAI_API_KEY") or ""))
    timeout: float = Field(60.0, gt=0, allow_inf_nan=False)
    max_retries: int = Field(3, ge=0, le=20)
    temperature: float | None = Field(0.2, ge=0, le=2)
    max_tokens: int | None = Field(DEFAULT_MAX_TOKENS, ge=1)
    context_tokens: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=-(2 ** 63), le=2 ** 63 - 1)
    stream: bool = True
    tool_calls: Literal["auto", "native", "text"] = "auto"
    guide_tools: bool = False

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must name a model, e.g. 'gpt-4o-mini'")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("must be an http(s) URL such as 'http://localhost:11434/v1'")
        return value

    @classmethod
    def resolve(cls, config: Mapping[str, Any] | Any | None = None,
                env: Mapping[str, str] | None = None) -> LLMSettings:
        """Settings from ``workspace.toml``'s ``[llm]`` table and the environment.

        Parameters
        ----------
        config : dict | pydantic model | None
            The ``[llm]`` table: ``model``, ``base_url``, ``timeout``,
            ``max_retries``, ``max_tokens``, ``context_tokens``,
            ``temperature``, ``seed``, ``stream``, ``tool_calls`` (None
            values are ignored). A model (e.g. the workspace's validated
            ``[llm]`` section) is read through ``model_dump()``.
        env : mapping | None
            Defaults to :data:`os.environ`. ``CHATBCI_MODEL``,
            ``OPENAI_BASE_URL`` and the ``CHATBCI_LLM_*`` variables (see the
            class docstring) override the table; blank ones are ignored.
            ``OPENAI_API_KEY`` is the only source of the key.

        Raises
        ------
        LLMConfigError
            The table holds a key (``api_key``...), an unknown setting, or
            an invalid value; the message names it and where it came from.
        """
        env = os.environ if env is None else env
        table = _as_table(config)

        secret = sorted(k for k in table if str(k).lower() in _SECRET_KEYS)
        if secret:
            # Never echo the value: it may be a real key.
            raise LLMConfigError(
                f"[llm] {', '.join(secret)} in workspace.toml: a workspace never stores the API "
                "key because it is meant to be shared. Remove it and set the OPENAI_API_KEY "
                "environment variable instead.")
        unknown = sorted(str(k) for k in table if k not in _CONFIG_KEYS)
        if unknown:
            raise LLMConfigError(
                f"[llm] has unknown setting(s) {', '.join(unknown)}; allowed: "
                f"{', '.join(_CONFIG_KEYS)}.")

        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for key, value in table.items():
            values[key] = value
            sources[key] = f"[llm] {key} in workspace.toml"
        for key, var in _ENV_VARS.items():
            value = _env_value(env, var)
            if value is not None:
                values[key] = value
                sources[key] = f"the {var} environment variable"
        values.setdefault("model", DEFAULT_MODEL)
        values.setdefault("base_url", None)
        values["api_key"] = SecretStr(_env_value(env, "OPENAI_API_KEY") or "")
        try:
            return cls(**values)
        except ValidationError as err:
            problems = []
            for error in err.errors():
                key = str(error["loc"][0]) if error["loc"] else "?"
                where = sources.get(key, key)
                shown = "" if key == "api_key" else f" = {values.get(key)!r}"
                msg = error["msg"].removeprefix("Value error, ")
                problems.append(f"{where}{shown}: {msg}")
            raise LLMConfigError("Invalid LLM setting: " + "; ".join(problems) + ".") from None

    @property
    def effective_base_url(self) -> str:
        """Where requests go: ``base_url``, or OpenAI's API if unset."""
        return self.base_url or OPENAI_BASE_URL

    @property
    def uses_openai(self) -> bool:
        """Whether requests go to OpenAI's own API (which needs a key)."""
        return (urlparse(self.effective_base_url).hostname
                == urlparse(OPENAI_BASE_URL).hostname)

    @property
    def has_credentials(self) -> bool:
        """Whether an LLM can be used: a key is set, or a non-OpenAI server is configured.

        Local servers (Ollama, vLLM, LM Studio) need no key; OpenAI does.
        When False, the session uses the offline rule-based backend.
        """
        return bool(self.api_key.get_secret_value()) or not self.uses_openai

    def public_dict(self) -> dict[str, Any]:
        """The settings for provenance and display: everything but the key."""
        return {"model": self.model, "base_url": self.effective_base_url,
                "timeout": self.timeout, "max_retries": self.max_retries,
                "temperature": self.temperature, "max_tokens": self.max_tokens,
                "context_tokens": self.context_tokens, "seed": self.seed,
                "stream": self.stream, "tool_calls": self.tool_calls,
                "guide_tools": self.guide_tools, "api_key_set": bool(self.api_key.get_secret_value())}

    @property
    def uses_azure(self) -> bool:
        """Whether requests go to an Azure OpenAI resource."""
        host = urlparse(self.effective_base_url).hostname or ""
        return host.endswith((".openai.azure.com", ".cognitiveservices.azure.com"))


def _as_table(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if hasattr(config, "llm") and not isinstance(config, Mapping):
        config = config.llm  # a whole workspace config object
    if hasattr(config, "model_dump"):
        config = config.model_dump()
    if not isinstance(config, Mapping):
        raise LLMConfigError(f"[llm] must be a table of settings, not {type(config).__name__}.")
    return {k: v for k, v in config.items() if v is not None}


# --------------------------------------------------------------------------
# The OpenAI backend
# --------------------------------------------------------------------------

class _AttemptFailed(Exception):
    """One attempt failed; the retry loop decides what happens next."""

    def __init__(self, reason: str, detail: str, *, retryable: bool,
                 status_code: int | None = None, retry_after: float | None = None,
                 param: str | None = None, message: str = "",
                 prompt_tokens: int | None = None, context_tokens: int | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after
        #: The request parameter the server's error names (``error.param``).
        self.param = param
        #: The server's own error message (unclipped, for matching).
        self.message = message
        self.prompt_tokens = prompt_tokens
        self.context_tokens = context_tokens


#: Below this many free tokens, shrinking the answer cap to fit is pointless.
_MIN_ANSWER_ROOM = 256


class OpenAIChat:
    """A :class:`Backend` for any OpenAI-compatible Chat Completions server.

    Parameters
    ----------
    settings : LLMSettings | None
        Defaults to ``LLMSettings.resolve()`` (environment only).
    backoff : float
        Delay before the first retry, in seconds; doubled at each retry
        (minus up to 25 % jitter, so that clients do not retry in step).
    max_backoff : float
        Upper bound of that delay.
    max_retry_after : float
        Upper bound of a wait asked for by the server's ``Retry-After``:
        a long one (an exhausted daily quota) is not worth blocking the
        notebook for; the last attempt then reports the 429.
    sleep : callable
        ``sleep(seconds)``; tests may record the waits instead.
    discovery_timeout : float
        Seconds allowed to each request of :meth:`context_tokens`.

    Examples
    --------
    >>> chat = OpenAIChat(LLMSettings.resolve())                 # doctest: +SKIP
    >>> reply = chat.complete([{"role": "user", "content": "Hi"}],
    ...                       on_delta=lambda s: print(s, end=""))
    """

    name = "openai"
    is_llm = True

    def __init__(self, settings: LLMSettings | None = None, *, backoff: float = 0.5,
                 max_backoff: float = 8.0, max_retry_after: float = 20.0,
                 sleep: Callable[[float], None] = time.sleep,
                 discovery_timeout: float = 3.0):
        self.settings = settings if settings is not None else LLMSettings.resolve()
        if backoff < 0 or max_backoff < 0 or max_retry_after < 0:
            raise ValueError("backoff, max_backoff and max_retry_after must be >= 0")
        if not discovery_timeout > 0:
            raise ValueError("discovery_timeout must be > 0")
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.discovery_timeout = discovery_timeout
        self._sleep = sleep
        self._random = random.Random()
        # OpenAI and Azure OpenAI: their newer models reject max_tokens, and
        # every current chat model there takes max_completion_tokens. Other
        # servers know max_tokens (some ignore the newer name silently).
        self._cap_param = ("max_completion_tokens"
                           if self.settings.uses_openai or self.settings.uses_azure
                           else "max_tokens")
        self._context_lock = threading.Lock()
        self._context: int | None = None
        self._context_asked = False
        key = self.settings.api_key.get_secret_value()
        self._client = openai.OpenAI(
            api_key=key or NO_KEY_PLACEHOLDER,
            # Explicit, so the SDK does not read OPENAI_BASE_URL behind the
            # settings' back (resolve() may have been given another env).
            base_url=self.settings.effective_base_url,
            timeout=self.settings.timeout,
            # Retries are ours: the SDK cannot retry a stream cut halfway.
            max_retries=0,
        )

    @property
    def model(self) -> str:
        return self.settings.model

    @property
    def max_tokens_param(self) -> str:
        """The name the answer cap is sent under: ``"max_completion_tokens"`` or ``"max_tokens"``.

        ``max_completion_tokens`` for OpenAI and Azure OpenAI, ``max_tokens``
        elsewhere; switched for good if a server rejects the one sent.
        """
        return self._cap_param

    def __repr__(self) -> str:
        return f"OpenAIChat(model={self.model!r}, base_url={self.settings.effective_base_url!r})"

    def close(self):
        """Release the HTTP connections."""
        self._client.close()

    def __enter__(self) -> OpenAIChat:
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- the context window -------------------------------------------------

    def context_tokens(self, *, refresh: bool = False) -> int | None:
        """The model's context window in tokens, or None if unknown.

        ``[llm] context_tokens`` if set; else what the server says, asked
        once and cached: vLLM's ``max_model_len`` (and similar fields) in
        ``GET /v1/models``, then llama.cpp's ``GET /props``
        (``default_generation_settings.n_ctx``, the context of one slot)
        and ``GET /slots``; else the window named by the last
        context-size error. OpenAI and Azure publish no such field, and
        neither Ollama's nor llama-cpp-python's OpenAI API does: None.

        Never raises; each request gets :attr:`discovery_timeout` seconds.

        Parameters
        ----------
        refresh : bool
            Ask the server again instead of using the cached answer.
        """
        if self.settings.context_tokens is not None:
            return self.settings.context_tokens
        with self._context_lock:
            if self._context_asked and not refresh:
                return self._context
        try:
            found = self._discover_context()
        except Exception:  # noqa: BLE001 - discovery must never fail the session
            found = None
        with self._context_lock:
            self._context_asked = True
            if found is not None:
                self._context = found
            return self._context

    def _discover_context(self) -> int | None:
        if self.settings.uses_openai or self.settings.uses_azure:
            return None
        client = self._client.with_options(timeout=self.discovery_timeout, max_retries=0)
        try:
            listing = client.get("/models", cast_to=object)
        except (openai.OpenAIError, ValueError, TypeError):
            listing = None
        found = _context_from_models(listing, self.model)
        if found is not None:
            return found
        root = re.sub(r"/v1/?$", "", self.settings.effective_base_url.rstrip("/"))
        for path, read in (("/props", _context_from_props), ("/slots", _context_from_slots)):
            try:
                data = client.get(root + path, cast_to=object)
            except (openai.OpenAIError, ValueError, TypeError):
                continue
            found = read(data)
            if found is not None:
                return found
        return None

    # -- the call -----------------------------------------------------------

    def complete(self, messages: Sequence[Mapping[str, Any]],
                 tools: Sequence[Mapping[str, Any]] | None = None,
                 on_delta: DeltaCallback | None = None,
                 tool_choice: Any = "auto", *,
                 on_reset: Callable[[], None] | None = None) -> Completion:
        """Ask the model for the next assistant message.

        Streamed by default (``[llm] stream``), so ``on_delta`` sees the
        text as it is written, with the token usage requested in the
        stream; tool calls are assembled from their fragments. Without
        streaming, ``on_delta`` is called once with the whole text.

        Parameters
        ----------
        messages : list of dict
            The conversation, in the Chat Completions format.
        tools : list of dict | None
            Tool schemas. Sent unless ``[llm] tool_calls = "text"``;
            ``tool_choice`` is sent only with them, since the API rejects
            it alone. Their names are the only ones a tool call written as
            text may use.
        on_delta : callable | None
            Called with each piece of text as it arrives. Exceptions it
            raises are not caught (raise one to stop the stream).
        tool_choice : {"auto", "none", "required"} | dict
            ``"none"`` also turns off the reading of tool calls in the text.
        on_reset : callable | None
            Called when text already passed to ``on_delta`` is void: before
            a retry, if the failed attempt had streamed text (the retry
            streams the answer again from its start), and when tool calls
            written as text are taken out of a streamed answer (the rest of
            the text, if any, then follows through ``on_delta``). Nothing is
            buffered, so without ``on_reset`` a live display may show a
            partial answer followed by the full one.

        Returns
        -------
        Completion
            ``truncated`` is set when the answer cap cut it.

        Raises
        ------
        LLMError
            A failure no retry can fix (401, 404, a conversation too long
            for the context window...: raised at once), or retryable
            failures on every one of ``1 + max_retries`` attempts. Text
            already passed to ``on_delta`` is then an incomplete answer.
        """
        settings = self.settings
        mode = settings.tool_calls
        send_tools = bool(tools) and mode != "text"
        names = [_tool_name(t) for t in tools or ()]
        read_text = bool(tools) and mode != "native" and tool_choice != "none"
        request: dict[str, Any] = {"model": self.model,
                                   "messages": [_wire_message(m) for m in messages],
                                   "stream": settings.stream}
        if settings.stream:
            request["stream_options"] = {"include_usage": True}
        if settings.temperature is not None:
            request["temperature"] = settings.temperature
        if settings.seed is not None:
            request["seed"] = settings.seed
        if settings.max_tokens is not None:
            request[self._cap_param] = settings.max_tokens
        if send_tools:
            request["tools"] = list(tools)
            request["tool_choice"] = tool_choice

        started = time.monotonic()
        attempt = 0
        fixes: set[str] = set()  # how the request was changed after a 400 that said how
        while True:
            attempt += 1
            assembly = _Assembly()
            try:
                if settings.stream:
                    self._attempt(request, assembly, on_delta)
                else:
                    self._attempt_plain(request, assembly)
            except _AttemptFailed as failure:
                if failure.reason == "context_length" and failure.context_tokens:
                    with self._context_lock:
                        self._context = failure.context_tokens
                if self._fix_request(request, failure, fixes):
                    if assembly.emitted and on_reset is not None:
                        on_reset()
                    continue
                if not failure.retryable or attempt > settings.max_retries + len(fixes):
                    raise self._error(failure, attempt, request) from failure.__cause__
                if assembly.emitted and on_reset is not None:
                    on_reset()
                self._sleep(self._delay(attempt, failure.retry_after))
                continue
            break

        cap_param = next((p for p in ("max_tokens", "max_completion_tokens") if p in request),
                         None)
        params = {"temperature": request.get("temperature"), "seed": request.get("seed"),
                  "max_tokens": request.get(cap_param) if cap_param else None,
                  "max_tokens_param": cap_param, "stream": settings.stream,
                  "tool_calls": mode, "tool_choice": tool_choice if send_tools else None}
        completion = assembly.completion(default_model=self.model,
                                         latency_s=time.monotonic() - started,
                                         attempts=attempt, request_params=params)
        if read_text and not completion.tool_calls and completion.text:
            found = find_text_calls(completion.text, names)
            if found:
                calls = [ToolCall(id=c.id or f"call_{uuid.uuid4().hex[:24]}", name=c.name,
                                  arguments=c.arguments, source="text")
                         for c in found.calls]
                completion = dataclasses.replace(completion, text=found.text, tool_calls=calls,
                                                 raw_text=completion.text)
                if assembly.emitted and on_reset is not None:
                    on_reset()
                    if found.text and on_delta is not None:
                        on_delta(found.text)
        if not settings.stream and completion.text and on_delta is not None:
            on_delta(completion.text)
        return completion

    def _fix_request(self, request: dict, failure: _AttemptFailed, done: set[str]) -> bool:
        """Change ``request`` where the server's 400 said how, once per kind of change.

        Returns True if ``request`` was changed (and the kind added to ``done``).
        """
        cap = next((p for p in ("max_tokens", "max_completion_tokens") if p in request), None)
        if cap is None:
            return False
        if failure.reason == "bad_request" and "cap_name" not in done \
                and _names_unsupported(failure, cap):
            other = "max_completion_tokens" if cap == "max_tokens" else "max_tokens"
            request[other] = request.pop(cap)
            self._cap_param = other  # remembered for the next calls
            done.add("cap_name")
            return True
        if failure.reason == "context_length" and "cap_size" not in done \
                and failure.prompt_tokens and failure.context_tokens:
            # vLLM refuses a request whose prompt fits but whose prompt plus
            # cap does not: the answer gets the room that is left, if any.
            room = failure.context_tokens - failure.prompt_tokens
            if _MIN_ANSWER_ROOM <= room < request[cap]:
                request[cap] = room
                done.add("cap_size")
                return True
        return False

    def _attempt(self, request: dict, assembly: _Assembly, on_delta: DeltaCallback | None):
        try:
            stream = self._client.chat.completions.create(**request)
        except openai.OpenAIError as err:
            raise self._classify(err) from err
        with stream:  # closes the connection even if on_delta raises
            iterator = iter(stream)
            while True:
                # Only the SDK's reading and parsing is guarded: exceptions
                # from on_delta are the caller's and must pass through.
                try:
                    chunk = next(iterator)
                except StopIteration:
                    break
                except (openai.OpenAIError, ValueError, TypeError) as err:
                    # ValueError/TypeError: an event that is not valid JSON
                    # or not shaped like a chunk.
                    raise self._classify(err) from err
                fragment = assembly.absorb(chunk)
                if fragment and on_delta is not None:
                    assembly.emitted = True
                    on_delta(fragment)
        if assembly.finish_reason is None:
            raise _AttemptFailed(
                "truncated", "the answer stream ended before the answer was complete "
                "(no finish_reason)", retryable=True)

    def _attempt_plain(self, request: dict, assembly: _Assembly):
        try:
            response = self._client.chat.completions.create(**request)
        except (openai.OpenAIError, ValueError, TypeError) as err:
            raise self._classify(err) from err
        assembly.absorb_response(response)

    # -- failures -----------------------------------------------------------

    def _classify(self, err: Exception) -> _AttemptFailed:
        timeout = self.settings.timeout
        if isinstance(err, openai.APITimeoutError):
            return _AttemptFailed("timeout", f"no answer within the {timeout:g} s timeout",
                                  retryable=True)
        if isinstance(err, openai.APIConnectionError):
            cause = err.__cause__ or err.__context__
            why = f": {cause}" if cause is not None and str(cause) else ""
            return _AttemptFailed("connection", f"the connection failed{why}", retryable=True)
        if isinstance(err, openai.APIStatusError):
            status = err.status_code
            message, code = _server_message(err)
            detail = f"HTTP {status}" + (f": {message}" if message else "")
            body = err.body if isinstance(err.body, Mapping) else {}
            full = str(body.get("message") or err.message or "")
            param = body.get("param")
            param = str(param) if isinstance(param, str) and param else None
            context = _context_error(body, full, code)
            if context is not None:
                return _AttemptFailed("context_length", detail, retryable=False,
                                      status_code=status, message=full,
                                      prompt_tokens=context[0], context_tokens=context[1])
            if status == 429:
                if code == "insufficient_quota":
                    return _AttemptFailed("quota", detail, retryable=False, status_code=status)
                return _AttemptFailed("rate_limit", detail, retryable=True, status_code=status,
                                      retry_after=_retry_after(err.response.headers))
            if status >= 500 or status in (408, 409):
                return _AttemptFailed("server_error", detail, retryable=True, status_code=status,
                                      retry_after=_retry_after(err.response.headers))
            reason = {400: "bad_request", 401: "auth", 403: "permission",
                      404: "not_found", 422: "bad_request"}.get(status, "http_error")
            return _AttemptFailed(reason, detail, retryable=False, status_code=status,
                                  param=param, message=full)
        if isinstance(err, openai.APIError):
            # An {"error": ...} event in the middle of a stream: the server
            # gave up on this answer, another attempt may well succeed --
            # unless it says the conversation does not fit.
            body = err.body if isinstance(err.body, Mapping) else {}
            context = _context_error(body, str(body.get("message") or err.message or ""),
                                     body.get("code") if isinstance(body.get("code"), str)
                                     else None)
            if context is not None:
                return _AttemptFailed("context_length", f"the server reported in the stream: "
                                      f"{_clip(str(err), 300)}", retryable=False,
                                      prompt_tokens=context[0], context_tokens=context[1])
            return _AttemptFailed("server_error", f"the server reported an error in the "
                                  f"stream ({_clip(str(err), 300)})", retryable=True)
        if isinstance(err, (ValueError, TypeError)):
            return _AttemptFailed("invalid_response", "the server sent a response that is "
                                  f"not a valid chat completion ({_clip(str(err), 200)})",
                                  retryable=True)
        return _AttemptFailed("error", f"{type(err).__name__}: {_clip(str(err), 300)}",
                              retryable=False)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return delay * (1 - 0.25 * self._random.random())

    def _error(self, failure: _AttemptFailed, attempts: int,
               request: Mapping[str, Any] | None = None) -> LLMError:
        where = self.settings.effective_base_url
        model = self.model
        key_set = bool(self.settings.api_key.get_secret_value())
        detail = failure.detail
        status = failure.status_code
        request = request or {}
        cap = request.get("max_tokens", request.get("max_completion_tokens"))
        if failure.reason == "auth":
            hint = ("Check OPENAI_API_KEY: " + ("it is not set." if not key_set else
                    "the server did not accept it (expired, revoked, or for another "
                    "provider?)."))
            text = f"The LLM server at {where} rejected the API key ({detail}). {hint}"
        elif failure.reason == "not_found":
            text = (f"Model {model!r} not found at {where} ({detail}). Check the model name "
                    "(CHATBCI_MODEL or [llm] model; for Azure, the deployment name) and that "
                    "base_url is the API root, usually ending in /v1.")
        elif failure.reason == "permission":
            text = (f"The LLM server at {where} refused access to model {model!r} ({detail}). "
                    f"Check that OPENAI_API_KEY may use this model, {_OFFLINE}.")
        elif failure.reason == "quota":
            text = (f"The account behind OPENAI_API_KEY has no quota left at {where} "
                    f"({detail}). Check the plan and billing, {_OFFLINE}.")
        elif failure.reason == "context_length":
            prompt, window = failure.prompt_tokens, failure.context_tokens
            if prompt and window and prompt < window and cap:
                size = (f"the conversation takes {prompt:,} tokens and the answer may take up "
                        f"to {cap:,} more, but the context window holds {window:,}")
            elif prompt and window:
                size = (f"the request takes {prompt:,} tokens but the context window holds "
                        f"{window:,}")
            elif window:
                size = f"the context window holds {window:,} tokens"
            else:
                size = "the server gave no token counts"
            # A smaller answer cap helps only where the prompt itself fits.
            lower = (f" or lower [llm] max_tokens (now {cap:,})"
                     if cap and not (prompt and window and prompt >= window) else "")
            text = (f"The conversation no longer fits the context window of model {model!r} "
                    f"at {where}: {size} ({detail}). Start a new session or shorten the "
                    "conversation, or give the model a larger context (llama-server -c, "
                    f"vLLM --max-model-len, Ollama num_ctx){lower}.")
        elif failure.reason == "bad_request":
            if any(p in (failure.message or detail) for p in ("max_tokens",
                                                               "max_completion_tokens")):
                hint = ("It objects to the answer cap: lower [llm] max_tokens "
                        f"(now {cap}), or check the model.") if cap else "Check the model."
            else:
                hint = ("If the server or model does not support tool calling or streaming, "
                        'set [llm] tool_calls = "text" or stream = false, or try another '
                        f"model, {_OFFLINE}.")
            text = (f"The LLM server at {where} rejected the request for model {model!r} "
                    f"({detail}). {hint}")
        elif not failure.retryable:
            text = (f"LLM request to model {model!r} at {where} failed ({detail}). Check "
                    f"base_url, the model and OPENAI_API_KEY, {_OFFLINE}.")
        else:
            tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
            if failure.reason == "timeout":
                whole = ("; without streaming ([llm] stream = false) the whole answer must "
                         "arrive within it" if not self.settings.stream else "")
                hint = (f"The server may be overloaded or the model still loading; raise "
                        f"[llm] timeout (now {self.settings.timeout:g} s{whole}), check "
                        f"base_url, {_OFFLINE}.")
            elif failure.reason == "connection":
                hint = f"Is the server running and is base_url right? Check it, {_OFFLINE}."
            elif failure.reason == "rate_limit":
                hint = (f"The provider is limiting requests or tokens; wait a minute and try again, "
                        f"{_OFFLINE}.")
            else:
                hint = f"Check base_url, the model and OPENAI_API_KEY, {_OFFLINE}."
            text = (f"LLM request to model {model!r} at {where} failed after {tries}: "
                    f"{detail}. {hint}")
        return LLMError(self._scrub(text), reason=failure.reason, status_code=status,
                        attempts=attempts, prompt_tokens=failure.prompt_tokens,
                        context_tokens=failure.context_tokens)

    def _scrub(self, text: str) -> str:
        # Servers sometimes quote the key they rejected; never pass it on.
        key = self.settings.api_key.get_secret_value()
        return text.replace(key, "[REDACTED]") if len(key) >= 4 else text


def _tool_name(tool: Any) -> str:
    """The name of a tool schema (``{"type": "function", "function": {"name": ...}}``)."""
    if isinstance(tool, Mapping):
        function = tool.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return function["name"]
        if isinstance(tool.get("name"), str):
            return tool["name"]
    return ""


def _names_unsupported(failure: _AttemptFailed, param: str) -> bool:
    """Whether a 400 says that the request parameter ``param`` is not accepted."""
    message = failure.message.lower()
    if failure.param == param and ("unsupported" in message or "not supported" in message
                                   or "unrecognized" in message or "unknown" in message):
        return True
    return (f"'{param}'" in message or f'"{param}"' in message or f"`{param}`" in message) \
        and any(w in message for w in ("unsupported parameter", "not supported",
                                       "unrecognized", "extra inputs are not permitted",
                                       "unknown parameter"))


# Where servers say that the conversation does not fit the context window.
_CONTEXT_CODES = {"context_length_exceeded", "exceed_context_size_error",
                  "context_window_exceeded", "string_above_max_length"}
_CONTEXT_WORDS = re.compile(
    r"context (?:length|window|size)|prompt is too long|input is too long|"
    r"maximum context|too many tokens|`inputs` tokens \+ `max_new_tokens`", re.IGNORECASE)
_CONTEXT_SAYS_TOO_BIG = re.compile(
    r"exceed|too long|too large|maximum|greater than|overflow|more than|too many|must be <=",
    re.IGNORECASE)
#: (pattern, prompt group, context group); the first match of each kind wins.
_CONTEXT_NUMBERS = [
    # llama.cpp: "request (8210 tokens) exceeds the available context size (8192 tokens)"
    (re.compile(r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens"),
     1, 2),
    # llama-cpp-python's own: "Requested tokens (9000) exceed context window of 8192"
    (re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)"), 1, 2),
    # Anthropic-style gateways: "prompt is too long: 210000 tokens > 200000 maximum"
    (re.compile(r"prompt is too long: (\d+) tokens > (\d+)"), 1, 2),
    # TGI: "`inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens"
    (re.compile(r"must be <= (\d+)\. Given: (\d+) `inputs` tokens"), 2, 1),
    # OpenAI, vLLM, llama-cpp-python: "maximum context length is 8192 tokens. However, ..."
    (re.compile(r"\((\d+) in the messages"), 1, None),
    (re.compile(r"your request has (\d+) input tokens"), 1, None),
    (re.compile(r"your messages resulted in (\d+) tokens"), 1, None),
    (re.compile(r"maximum context length is (\d+)"), None, 1),
    (re.compile(r"context (?:window|length) of (\d+)"), None, 1),
]


def _context_error(body: Mapping[str, Any], message: str,
                   code: str | None) -> tuple[int | None, int | None] | None:
    """``(prompt_tokens, context_tokens)`` if the error says the request does not fit."""
    kinds = {str(v) for v in (code, body.get("type"), body.get("code")) if v}
    words = bool(_CONTEXT_WORDS.search(message)) and bool(_CONTEXT_SAYS_TOO_BIG.search(message))
    if not (kinds & _CONTEXT_CODES) and not words:
        return None
    prompt = _positive_int(body.get("n_prompt_tokens"))
    window = _positive_int(body.get("n_ctx"))
    for pattern, p_group, c_group in _CONTEXT_NUMBERS:
        match = pattern.search(message)
        if match is None:
            continue
        if prompt is None and p_group is not None:
            prompt = int(match.group(p_group))
        if window is None and c_group is not None:
            window = int(match.group(c_group))
    return prompt, window


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    return None


#: Fields of a ``/v1/models`` entry that give the context window (vLLM, LM Studio, gateways).
_MODEL_CONTEXT_FIELDS = ("max_model_len", "context_length", "max_context_length",
                         "loaded_context_length", "context_window", "n_ctx")


def _context_from_models(listing: Any, model: str) -> int | None:
    if not isinstance(listing, Mapping) or not isinstance(listing.get("data"), list):
        return None
    entries = [e for e in listing["data"] if isinstance(e, Mapping)]
    chosen = [e for e in entries if e.get("id") == model] or (entries if len(entries) == 1
                                                              else [])
    for entry in chosen:
        for key in _MODEL_CONTEXT_FIELDS:
            found = _positive_int(entry.get(key))
            if found:
                return found
        meta = entry.get("meta")
        # llama.cpp's meta has n_ctx_train, the length the model was trained
        # for, not the server's context: only an explicit n_ctx counts.
        if isinstance(meta, Mapping) and _positive_int(meta.get("n_ctx")):
            return _positive_int(meta.get("n_ctx"))
    return None


def _context_from_props(props: Any) -> int | None:
    if not isinstance(props, Mapping):
        return None
    settings = props.get("default_generation_settings")
    if isinstance(settings, Mapping):
        found = _positive_int(settings.get("n_ctx"))
        if found:
            return found
    return _positive_int(props.get("n_ctx"))


def _context_from_slots(slots: Any) -> int | None:
    if isinstance(slots, list) and slots and isinstance(slots[0], Mapping):
        return _positive_int(slots[0].get("n_ctx"))
    return None


def _server_message(err: openai.APIStatusError) -> tuple[str, str | None]:
    """The error message and code of an OpenAI-style error body."""
    body = err.body
    if isinstance(body, Mapping):
        message = body.get("message")
        code = body.get("code")
        return _clip(str(message or err.message), 300), (str(code) if code else None)
    return _clip(str(err.message), 300), None


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or a date)."""
    if not headers:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            if name == "retry-after":
                parsed = email.utils.parsedate_tz(value)
                if parsed is not None:
                    seconds = email.utils.mktime_tz(parsed) - time.time()
                else:
                    continue
            else:
                continue
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def _wire_message(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """A message as sent: no ``"content": null`` beside an assistant's tool calls.

    The API takes the key left out as well as null; llama-cpp-python's server
    (0.3.x), whose schema types ``content`` as a string, answers null with
    HTTP 500 (seen with tests/test_real_llm.py).
    """
    if (message.get("role") == "assistant" and message.get("tool_calls")
            and "content" in message and message["content"] is None):
        return {k: v for k, v in message.items() if k != "content"}
    return message


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


class _Assembly:
    """Builds a :class:`Completion` from stream chunks (or one whole response).

    The chunks come from ``model_construct`` (the SDK does not validate
    them), so every field is read defensively: a server that leaves one out
    must not crash the client.
    """

    def __init__(self):
        self.text: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self._by_index: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, int] | None = None
        self.model: str | None = None
        self.system_fingerprint: str | None = None
        #: Whether on_delta received text of this attempt.
        self.emitted = False

    def absorb(self, chunk: Any) -> str:
        """Take one chunk in; return its text ("" if none)."""
        model = getattr(chunk, "model", None)
        if isinstance(model, str) and model and not self.model:
            self.model = model
        fingerprint = getattr(chunk, "system_fingerprint", None)
        if isinstance(fingerprint, str) and fingerprint:
            self.system_fingerprint = fingerprint
        usage = _usage_dict(getattr(chunk, "usage", None))
        if usage is not None:
            self.usage = usage
        pieces = []
        for choice in getattr(chunk, "choices", None) or ():
            # We never ask for n > 1; a server sending other choices is ignored.
            if getattr(choice, "index", 0) not in (0, None):
                continue
            delta = getattr(choice, "delta", None)
            if delta is not None:
                for name in ("content", "refusal"):  # a refusal is text for the human too
                    piece = getattr(delta, name, None)
                    if piece is None:
                        continue
                    if not isinstance(piece, str):
                        raise _AttemptFailed("invalid_response", f"a chunk's delta.{name} is "
                                             f"{type(piece).__name__}, not text", retryable=True)
                    pieces.append(piece)
                for call in getattr(delta, "tool_calls", None) or ():
                    self._absorb_call(call)
            reason = getattr(choice, "finish_reason", None)
            if reason:
                self.finish_reason = str(reason)
        text = "".join(pieces)
        if text:
            self.text.append(text)
        return text

    def _absorb_call(self, call: Any):
        index = getattr(call, "index", None)
        call_id = getattr(call, "id", None) or None
        function = getattr(call, "function", None)
        name = getattr(function, "name", None) if function is not None else None
        arguments = getattr(function, "arguments", None) if function is not None else None

        slot = self._by_index.get(index) if isinstance(index, int) else None
        # Some servers number every call 0 but give each its own id: a new
        # id at a known index starts a new call.
        if slot is not None and call_id and slot["id"] and call_id != slot["id"]:
            slot = None
        if slot is None and call_id:
            slot = next((c for c in self.calls if c["id"] == call_id), None)
        if slot is None and index is None and call_id is None and self.calls:
            slot = self.calls[-1]  # an unnumbered continuation
        if slot is None:
            slot = {"id": call_id or "", "name": "", "arguments": []}
            self.calls.append(slot)
        if isinstance(index, int):
            self._by_index[index] = slot
        if call_id and not slot["id"]:
            slot["id"] = call_id
        if isinstance(name, str) and name and name != slot["name"]:
            # OpenAI sends the name once; a server splitting it is joined up.
            slot["name"] += name
        if isinstance(arguments, str) and arguments:
            slot["arguments"].append(arguments)

    def absorb_response(self, response: Any):
        """Take a whole (non-streamed) ``chat.completion`` in."""
        model = getattr(response, "model", None)
        if isinstance(model, str) and model:
            self.model = model
        fingerprint = getattr(response, "system_fingerprint", None)
        if isinstance(fingerprint, str) and fingerprint:
            self.system_fingerprint = fingerprint
        self.usage = _usage_dict(getattr(response, "usage", None))
        choices = [c for c in getattr(response, "choices", None) or ()
                   if getattr(c, "index", 0) in (0, None)]
        if not choices:
            raise _AttemptFailed("invalid_response", "the server's answer has no choices",
                                 retryable=True)
        choice = choices[0]
        message = getattr(choice, "message", None)
        if message is None:
            raise _AttemptFailed("invalid_response", "the server's answer has no message",
                                 retryable=True)
        for name in ("content", "refusal"):
            piece = getattr(message, name, None)
            if piece is None:
                continue
            if not isinstance(piece, str):
                raise _AttemptFailed("invalid_response", f"the answer's message.{name} is "
                                     f"{type(piece).__name__}, not text", retryable=True)
            if piece:
                self.text.append(piece)
        for call in getattr(message, "tool_calls", None) or ():
            function = getattr(call, "function", None)
            name = getattr(function, "name", None) if function is not None else None
            arguments = getattr(function, "arguments", None) if function is not None else None
            self.calls.append({"id": getattr(call, "id", None) or "",
                               "name": name if isinstance(name, str) else "",
                               "arguments": [arguments] if isinstance(arguments, str) else []})
        reason = getattr(choice, "finish_reason", None)
        # A whole body is complete even if a server leaves finish_reason out.
        self.finish_reason = str(reason) if reason else None

    def completion(self, *, default_model: str, latency_s: float, attempts: int,
                   request_params: dict[str, Any] | None = None) -> Completion:
        calls = [ToolCall(id=c["id"] or f"call_{uuid.uuid4().hex[:24]}", name=c["name"],
                          arguments="".join(c["arguments"]))
                 for c in self.calls]
        return Completion(text="".join(self.text), tool_calls=calls,
                          finish_reason=self.finish_reason, usage=self.usage,
                          model=self.model or default_model, latency_s=latency_s,
                          attempts=attempts, request_params=dict(request_params or {}),
                          system_fingerprint=self.system_fingerprint)


def _usage_dict(usage: Any) -> dict[str, int] | None:
    """The token counts of a usage object; None when unknown.

    None when the server sent no usage, and when it sent only zeros: a
    request always has prompt tokens, so all-zero counts are a placeholder
    (some servers send one), not a measurement.
    """
    if usage is None:
        return None
    out = {}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = getattr(usage, name, None)
        if value is None and isinstance(usage, Mapping):
            value = usage.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            out[name] = value
    if not out or not any(out.values()):
        return None
    return out
