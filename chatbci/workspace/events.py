"""Journal events: the immutable :class:`Event` record and payload validation.

Every event has a ``kind`` from :data:`KINDS`, an ``actor`` (``human:<name>``,
``ai:<model>`` or ``system``) and a JSON payload whose required fields depend
on the kind (the pydantic models below). Payloads may carry extra fields --
the journal is a log, not a schema registry -- but the fields that exports and
the assistant rely on must be present and well typed. An unknown kind, a
malformed actor or a bad payload raises :class:`EventValidationError` naming
the field, the value and what is allowed, before anything is written.

Rules that need the rest of the journal (a decision's parent must be an
undecided suggestion...) are enforced by :class:`~chatbci.workspace.Journal`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import PurePath, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationError,
                      field_validator, model_validator)

from ._validation import describe, short_repr
from .errors import EventValidationError, JournalCorruptError
from .provenance import PROVENANCE_PACKAGES

__all__ = ["ACTOR_PATTERN", "KINDS", "PAYLOAD_MODELS", "Event", "canonical_json",
           "check_actor", "validate_payload"]

# ---------------------------------------------------------------------------
# Actors

#: ``human:<name>`` (a person, spaces allowed), ``ai:<model>`` (no spaces) or ``system``.
ACTOR_PATTERN = re.compile(
    r"human:(?P<human>[^\s:\x00-\x1f][^\x00-\x1f]{0,99})"
    r"|ai:(?P<ai>[^\s\x00-\x1f]{1,200})"
    r"|system"
)


def check_actor(actor, *, allow=("human", "ai", "system")):
    """Return ``actor`` if it is well formed (and of a type in ``allow``), else raise.

    Raises
    ------
    EventValidationError
        Naming the value and the accepted forms.
    """
    match = ACTOR_PATTERN.fullmatch(actor) if isinstance(actor, str) else None
    kind = None
    if match:
        kind = "human" if match["human"] else "ai" if match["ai"] else "system"
        if kind == "human" and match["human"] != match["human"].strip():
            match = None
    if not match or kind not in allow:
        forms = {"human": "'human:<name>' (e.g. 'human:ada')",
                 "ai": "'ai:<model>' (e.g. 'ai:gpt-4o-mini')", "system": "'system'"}
        raise EventValidationError(
            f"actor {short_repr(actor)} is not valid here; use "
            + " or ".join(forms[a] for a in allow) + "."
        )
    return actor


# ---------------------------------------------------------------------------
# Canonical JSON


def _json_default(obj):
    # Duck-typed so the workspace layer needs no numpy: arrays and numpy
    # scalars both have .tolist().
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return PurePath(obj).as_posix()
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    raise TypeError(f"{type(obj).__name__} value {short_repr(obj)} is not JSON serialisable")


def canonical_json(obj) -> str:
    """The canonical JSON text of ``obj``: sorted keys, no spaces, UTF-8, no NaN.

    This is the exact text that is stored and hashed, so two equal payloads
    always give the same hash. NumPy arrays and scalars, paths and datetimes
    are converted to lists, strings and ISO strings.

    Raises
    ------
    EventValidationError
        If ``obj`` holds NaN/infinity, dict keys of mixed types, or objects
        JSON cannot represent. (Number keys become strings, as in any JSON.)
    """
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False, default=_json_default)
    except ValueError as err:  # NaN / inf
        raise EventValidationError(
            f"payload holds a value JSON cannot store ({err}); record NaN or infinity as "
            "null or as a string such as 'nan'."
        ) from None
    except TypeError as err:
        raise EventValidationError(
            f"payload is not JSON serialisable: {err}. Use dicts with string keys, "
            "lists, strings, numbers, booleans and None."
        ) from None


# ---------------------------------------------------------------------------
# Payload models

NonBlank = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]


class _Payload(BaseModel):
    # extra="allow": kinds have required fields, not a closed schema.
    # strict=True: "3" is not silently turned into 3 in a permanent record.
    model_config = ConfigDict(extra="allow", strict=True)


Action = NonBlank | Annotated[dict[str, Any], Field(min_length=1)]


class MessagePayload(_Payload):
    """``message``: something a human or the AI said."""

    text: NonBlank


class SuggestionPayload(_Payload):
    """``suggestion``: an AI proposal awaiting a human decision.

    ``action`` is the exact action to run (by convention
    ``{"tool": name, "args": {...}}``), ``rationale`` why.
    """

    action: Action
    rationale: NonBlank


class DecisionPayload(_Payload):
    """``decision``: a human's verdict on a suggestion (its parent).

    ``reject`` and ``modify`` need a rationale; ``modify`` also needs the
    modified ``action``.
    """

    verdict: Literal["accept", "reject", "modify"]
    rationale: str = ""
    action: Action | None = None

    @model_validator(mode="after")
    def _rules(self):
        if self.verdict in ("reject", "modify") and not self.rationale.strip():
            raise ValueError(f"a '{self.verdict}' decision needs a non-empty rationale")
        if self.verdict == "modify" and self.action is None:
            raise ValueError("a 'modify' decision needs the modified `action`")
        if self.verdict != "modify" and self.action is not None:
            raise ValueError(f"`action` is only allowed with verdict 'modify', "
                             f"not {self.verdict!r}")
        return self


class ToolCallPayload(_Payload):
    """``tool_call``: a tool invoked with arguments."""

    tool: NonBlank
    args: dict[str, Any] = Field(default_factory=dict)


class ToolResultPayload(_Payload):
    """``tool_result``: what a tool call (its parent) returned.

    ``summary`` is the small JSON result, ``artifacts`` relative paths of
    files in the workspace (figures, tables), ``result_hash`` a hash of the
    full result.
    """

    tool: NonBlank
    summary: Any
    ok: bool = True
    artifacts: list[str] = Field(default_factory=list)
    result_hash: str | None = None

    @field_validator("artifacts")
    @classmethod
    def _relative(cls, paths):
        for p in paths:
            parts = PurePosixPath(p.replace("\\", "/")).parts
            if not p or p.startswith(("/", "\\")) or ".." in parts or re.match(r"[A-Za-z]:", p):
                raise ValueError(f"artifact path {p!r} must be relative to the workspace "
                                 "(e.g. 'results/figures/<sha256>.png'), without '..'")
        return paths


class RunPayload(_Payload):
    """``run``: a benchmark run, identified by the hash of its configuration."""

    config_hash: NonBlank
    scores: dict[str, Any] | list[Any]


class NotePayload(_Payload):
    """``note``: a remark, or a change to the knowledge base / workspace (``op``)."""

    text: NonBlank
    note_id: str | None = None
    op: str | None = None


class ErrorPayload(_Payload):
    """``error``: something that failed, with the exception type if any."""

    message: NonBlank
    type: str | None = None


class Provenance(_Payload):
    """Software and seeds of a session (see :func:`collect_provenance`)."""

    python: NonBlank
    platform: NonBlank
    packages: dict[str, str | None]
    seeds: dict[str, int | None]

    @field_validator("packages")
    @classmethod
    def _all_packages(cls, packages):
        missing = [p for p in PROVENANCE_PACKAGES if p not in packages]
        if missing:
            raise ValueError(f"versions of {missing} are missing (None if not installed)")
        return packages


class SessionStartPayload(_Payload):
    """``session_start``: opens a session, with its provenance."""

    provenance: Provenance


class SessionEndPayload(_Payload):
    """``session_end``: closes a session (parent: its ``session_start``)."""

    reason: NonBlank = "closed"
    n_events: Annotated[int, Field(ge=0)] | None = None


#: Kind -> payload model. The keys are the valid event kinds.
PAYLOAD_MODELS: dict[str, type[_Payload]] = {
    "message": MessagePayload,
    "suggestion": SuggestionPayload,
    "decision": DecisionPayload,
    "tool_call": ToolCallPayload,
    "tool_result": ToolResultPayload,
    "run": RunPayload,
    "note": NotePayload,
    "error": ErrorPayload,
    "session_start": SessionStartPayload,
    "session_end": SessionEndPayload,
}

#: The valid event kinds.
KINDS = tuple(PAYLOAD_MODELS)


def validate_payload(kind, payload, *, redact=None) -> str:
    """Validate ``payload`` for ``kind`` and return its canonical JSON text.

    Parameters
    ----------
    kind : str
    payload : dict
    redact : callable | None
        Applied to the canonical JSON text before validation (the journal
        passes its secret scrubber). Working on the text covers dict keys and
        values in one pass.

    Returns
    -------
    text : str
        The canonical JSON to store. Fields the caller left out get their
        documented default, so readers can rely on every field being present;
        given values are stored exactly as given.

    Raises
    ------
    EventValidationError
        Unknown kind (listing the valid ones), a payload that is not a dict,
        not JSON-serialisable, or misses / mistypes a required field.
    """
    model = PAYLOAD_MODELS.get(kind)
    if model is None:
        raise EventValidationError(
            f"unknown event kind {short_repr(kind)}; valid kinds: {', '.join(KINDS)}."
        )
    if not isinstance(payload, dict):
        raise EventValidationError(
            f"a {kind} payload must be a dict, not {type(payload).__name__} "
            f"({short_repr(payload)})."
        )
    # Round-trip through JSON first: tuples become lists, numpy values plain
    # numbers, and what is validated is exactly what will be stored.
    text = canonical_json(payload)
    if redact is not None:
        text = redact(text)
    plain = json.loads(text)
    try:
        checked = model.model_validate(plain)
    except ValidationError as err:
        raise EventValidationError(
            f"invalid {kind} payload: {describe(err, model, 'payload.')}."
        ) from None
    missing = model.model_fields.keys() - plain.keys()
    if not missing:
        return text
    plain.update(checked.model_dump(mode="json", include=missing))
    return canonical_json(plain)


# ---------------------------------------------------------------------------
# The record

#: Timestamps are stored in this fixed-width UTC form, so text order is time order.
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_ts(when: datetime) -> str:
    """UTC text of an aware datetime, as stored in the journal (:data:`TS_FORMAT`)."""
    # isoformat is several times faster than strftime, and this runs per append.
    return when.astimezone(timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"


@dataclass(frozen=True, slots=True)
class Event:
    """One journal record. Immutable.

    Attributes
    ----------
    id : int
        Position in the journal, 1, 2, 3... without gaps.
    session_id : str
        The session that wrote it.
    ts : datetime.datetime
        When it was written (timezone-aware, UTC).
    actor : str
        ``human:<name>``, ``ai:<model>`` or ``system``.
    kind : str
        One of :data:`KINDS`.
    parent_id : int | None
        The event this one answers (a decision's suggestion, a result's call).
    payload : dict
        The validated payload. Each access returns a **new** dict decoded from
        the stored JSON, so changing it never changes the event or the journal.
    prev_hash, hash : str
        SHA-256 hex digests chaining this event to the previous one (see
        :meth:`chatbci.workspace.Journal.verify`).
    """

    id: int
    session_id: str
    ts: datetime
    actor: str
    kind: str
    parent_id: int | None
    payload_json: str = field(repr=False)
    prev_hash: str = field(repr=False)
    hash: str

    @property
    def payload(self) -> dict:
        """A fresh copy of the payload (see the class docstring).

        Raises
        ------
        JournalCorruptError
            The stored JSON is damaged (``chatbci verify`` names the event).
        """
        try:
            return json.loads(self.payload_json)
        except ValueError:
            raise JournalCorruptError(
                f"the journal is damaged: event {self.id}'s payload is not valid JSON. Run "
                "`chatbci verify WORKSPACE` to see where the hash chain breaks, and restore "
                "journal.sqlite from a backup or from version control."
            ) from None

    def to_dict(self) -> dict:
        """Plain JSON-ready dict of every attribute (``ts`` as ISO text)."""
        return {
            "id": self.id, "session_id": self.session_id, "ts": format_ts(self.ts),
            "actor": self.actor, "kind": self.kind, "parent_id": self.parent_id,
            "payload": self.payload, "prev_hash": self.prev_hash, "hash": self.hash,
        }

    def summary(self, width=100) -> str:
        """One line saying what happened, for logs and UIs (cut to ``width``).

        Never fails: an event whose payload lacks the usual fields (an old or
        hand-made journal) is shown as its JSON.
        """
        try:
            text = self._summary()
        except (KeyError, TypeError, AttributeError, JournalCorruptError):
            text = self.payload_json
        text = " ".join(str(text).split())
        return text if len(text) <= width else text[: width - 3] + "..."

    def _summary(self):
        p = self.payload
        k = self.kind

        def action(a):
            if isinstance(a, dict) and "tool" in a:
                return f"{a['tool']}({canonical_json(a.get('args', {}))[1:-1]})"
            return a if isinstance(a, str) else canonical_json(a)

        if k == "suggestion":
            text = f"{action(p['action'])} -- {p['rationale']}"
        elif k == "decision":
            text = f"{p['verdict']} #{self.parent_id}" + (f": {p['rationale']}"
                                                         if p["rationale"] else "")
        elif k == "tool_call":
            text = action(p)
        elif k == "tool_result":
            text = (f"{p['tool']} {'ok' if p['ok'] else 'FAILED'}: "
                    f"{canonical_json(p['summary'])}")
        elif k == "run":
            text = f"config {p['config_hash'][:12]} scores {canonical_json(p['scores'])}"
        elif k == "error":
            text = f"{p['type']}: {p['message']}" if p.get("type") else p["message"]
        elif k == "session_start":
            prov = p["provenance"]
            text = (f"Python {prov['python']}, chatbci {prov['packages'].get('chatbci')}, "
                    f"{prov['platform']}, seeds {canonical_json(prov['seeds'])}")
        elif k == "session_end":
            text = f"{p['reason']} ({p.get('n_events')} events)"
        else:  # message, note
            text = p["text"]
        return text

    def __repr__(self):
        return (f"Event(id={self.id}, kind={self.kind!r}, actor={self.actor!r}, "
                f"parent_id={self.parent_id}, ts={format_ts(self.ts)!r}, "
                f"payload={short_repr(self.payload, 120)}, hash={self.hash[:12]!r}...)")
