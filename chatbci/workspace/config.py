"""``workspace.toml``: what the study is about and how the AI may act in it.

Read with :mod:`tomllib` and validated by :class:`WorkspaceConfig`; an
invalid value raises :class:`ConfigError` naming the key, the value and
what is allowed. The file is written by a small TOML writer
(:func:`dump_toml`) covering what the config needs -- strings, numbers,
booleans, arrays of those and nested tables -- so no extra dependency is
required. Secrets are refused: an ``api_key``/``token``/``secret`` key is an
error telling the user to set ``OPENAI_API_KEY`` instead, because a
workspace is meant to be shared.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationError,
                      field_validator)

from ._validation import describe
from .errors import ConfigError
from .files import write_inside
from .secrets import scrub

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib
    except ModuleNotFoundError as err:
        raise ImportError("chatbci.workspace needs Python >= 3.11 (tomllib) or the "
                          "'tomli' package on Python 3.10: pip install tomli") from err

__all__ = ["AUTONOMY_LEVELS", "EVALUATIONS", "Budgets", "LLMSettings", "WorkspaceConfig",
           "dump_toml", "load_config", "validate_settings", "write_config"]

#: Autonomy levels (see DESIGN.md): what the AI may run without asking.
AUTONOMY_LEVELS = ("suggest", "assist", "auto")
#: MOABB evaluation protocols.
EVALUATIONS = ("within-session", "cross-session", "cross-subject")

NonBlank = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]
PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]

# Key names that can only mean a credential. "max_tokens" is fine, "token" is not.
_SECRET_KEY = re.compile(r"(?:.*[_-])?(?:api[_-]?key|key|token|secret|password|passwd)",
                         re.IGNORECASE)
_SUBJECTS = re.compile(r"\s*\d+(?:\s*-\s*\d+)?(?:\s*,\s*\d+(?:\s*-\s*\d+)?)*\s*")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LLMSettings(_Section):
    """``[llm]``: which OpenAI-compatible model to use, and how. Never the API key.

    Every setting is optional; left out, the assistant's default applies
    (see :class:`chatbci.assistant.llm.LLMSettings`, which also reads the
    environment overrides such as ``CHATBCI_LLM_MAX_TOKENS``).

    Attributes
    ----------
    model, base_url : str | None
        The model (for Azure, the deployment) and the server's API root.
    timeout : float | None
        Seconds to wait for the connection and for each piece of the answer
        (default 60); without streaming, for the whole answer.
    max_retries : int | None
        Retries of failures a retry can fix (default 3).
    max_tokens : int | None
        The answer cap (default 1024).
    context_tokens : int | None
        The model's context window in tokens; unset: asked from the server.
    temperature : float | None
        Sampling temperature, 0 to 2 (default 0.2).
    seed : int | None
        Sampling seed; unset: none is sent.
    stream : bool | None
        Stream answers (default true); false for servers that parse tool
        calls only without streaming.
    tool_calls : {"auto", "native", "text"} | None
        How the model calls tools (default ``"auto"``): ``"native"`` through
        the API only, ``"text"`` by writing them (no tool schemas sent),
        ``"auto"`` both.
    guide_tools : bool | None
        Name the tool a plainly phrased request asks for in the turn's first
        request (default false; for small local models with constrained
        decoding).
    """

    model: NonBlank | None = None
    base_url: NonBlank | None = None
    timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    max_retries: Annotated[int, Field(ge=0, le=20)] | None = None
    max_tokens: PositiveInt | None = None
    context_tokens: PositiveInt | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    seed: Annotated[int, Field(ge=-(2 ** 63), le=2 ** 63 - 1)] | None = None
    stream: bool | None = None
    tool_calls: Literal["auto", "native", "text"] | None = None
    guide_tools: bool | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, url):
        if url is not None and not re.match(r"https?://[^\s/]+", url):
            raise ValueError("must be an http(s) URL such as 'http://127.0.0.1:8000/v1'")
        return url


class Budgets(_Section):
    """``[budgets]``: compute the assistant may spend without asking."""

    seconds_per_turn: PositiveFloat = 300.0
    seconds_per_session: PositiveFloat = 4 * 3600.0
    max_benchmark_subjects: PositiveInt | None = None
    max_tool_calls_per_turn: PositiveInt = 8
    #: Model requests in one turn (each tool round is one); a model that calls a
    #: tool in every reply is stopped here instead of looping.
    max_rounds_per_turn: PositiveInt = Field(6, le=50)


class WorkspaceConfig(_Section):
    """The validated content of ``workspace.toml``. Immutable.

    Attributes
    ----------
    title, goal : str
        The study and its research goal.
    datasets : list of str
        Dataset names in scope (not checked here: the workspace knows no EEG).
    subjects : str | int | list of int | None
        Subjects in scope, e.g. ``"1-10"`` or ``"1,3,5-7"`` or ``[1, 2]``;
        None for all.
    evaluation : {"within-session", "cross-session", "cross-subject"}
    random_state : int
        Seed recorded in every session's provenance.
    autonomy : {"suggest", "assist", "auto"}
        ``assist`` (default): read-only tools run at once, compute and write
        tools need a human decision.
    durability : {"normal", "full"}
        Journal durability: ``normal`` survives a killed process, ``full``
        also a power loss, at one fsync per event.
    llm : LLMSettings
    budgets : Budgets
    """

    title: NonBlank
    goal: NonBlank
    datasets: list[NonBlank] = Field(default_factory=list)
    subjects: str | PositiveInt | list[PositiveInt] | None = None
    evaluation: Literal["within-session", "cross-session", "cross-subject"] = "within-session"
    random_state: int = 42
    autonomy: Literal["suggest", "assist", "auto"] = "assist"
    durability: Literal["normal", "full"] = "normal"
    llm: LLMSettings = Field(default_factory=LLMSettings)
    budgets: Budgets = Field(default_factory=Budgets)

    @field_validator("subjects")
    @classmethod
    def _subjects(cls, value):
        if isinstance(value, str):
            if not _SUBJECTS.fullmatch(value):
                raise ValueError("use a list of subject numbers or a string such as "
                                 "'1-10' or '1,3,5-7'")
            for part in value.split(","):
                lo, _, hi = part.partition("-")
                if hi and int(hi) < int(lo) or int(lo) < 1:
                    raise ValueError(f"range {part.strip()!r} is empty or starts below 1")
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError("subjects are listed more than once")
        return value

    def to_toml(self) -> str:
        """The TOML text of this config (as written to ``workspace.toml``)."""
        return dump_toml(self.model_dump(mode="json"), header=_HEADER)


_HEADER = (
    "# chatbci workspace settings. Edit freely: chatbci validates this file whenever\n"
    "# it opens the workspace. Never put an API key here (the workspace is meant to be\n"
    "# shared); set the OPENAI_API_KEY environment variable instead.\n"
)


def _find_secret_keys(data, prefix=""):
    found = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if _SECRET_KEY.fullmatch(str(key)):
            found.append(name)
        if isinstance(value, dict):
            found += _find_secret_keys(value, name + ".")
    return found


def validate_settings(data, source="workspace.toml") -> WorkspaceConfig:
    """Validate a settings dict (as read from TOML or given to ``Workspace.create``).

    Raises
    ------
    ConfigError
        Naming ``source``, each bad key, its value and what is allowed.
    """
    secret_keys = _find_secret_keys(data)
    if secret_keys:
        raise ConfigError(
            f"{source}: `{'`, `'.join(secret_keys)}` looks like a credential; a workspace "
            "never stores one because it is meant to be shared. Remove it and set the "
            "OPENAI_API_KEY environment variable instead."
        )
    try:
        return WorkspaceConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {describe(err, WorkspaceConfig)}.") from None


def load_config(path) -> WorkspaceConfig:
    """Read and validate ``workspace.toml``.

    Raises
    ------
    ConfigError
        The file is not valid TOML (with tomllib's line and column) or holds
        an invalid setting.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML ({err}); fix the line it names.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; is it really workspace.toml?") from None
    return validate_settings(data, source=str(path))


def write_config(config: WorkspaceConfig, path, *, root=None):
    """Write ``config`` to ``path`` atomically (a crash leaves the old file intact).

    Parameters
    ----------
    config : WorkspaceConfig
    path : str | os.PathLike
        ``workspace.toml``.
    root : str | os.PathLike | None
        The workspace folder the file's real path must stay in (default: the
        file's folder); a ``workspace.toml`` that links elsewhere is refused.
    """
    path = Path(path)
    write_inside(path.parent if root is None else root, path, scrub(config.to_toml()),
                 durable=True, what="workspace settings file")


# ---------------------------------------------------------------------------
# A minimal TOML writer

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def _key(key):
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text):
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(value, where):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # always has '.' or 'e', so TOML reads a float back
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v, where) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} value at `{where}` to TOML")


def dump_toml(data: dict, header="") -> str:
    """TOML text of ``data`` (nested dicts become tables; None values are left out).

    Arrays of tables are not supported (the config has none).
    """
    lines = []

    def emit(table, path):
        scalars = [(k, v) for k, v in table.items() if v is not None and not isinstance(v, dict)]
        if path and (scalars or not any(isinstance(v, dict) for v in table.values())):
            lines.append(("\n" if lines else "") + "[" + ".".join(_key(p) for p in path) + "]")
        for k, v in scalars:
            lines.append(f"{_key(k)} = {_value(v, '.'.join([*path, k]))}")
        for k, v in table.items():
            if isinstance(v, dict):
                emit(v, [*path, k])

    emit(data, [])
    return header + "\n".join(lines) + "\n"
