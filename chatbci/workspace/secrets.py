"""Keep API keys out of the workspace.

A workspace is meant to be shared (committed, attached to a paper), so no
secret may ever reach one of its files. Everything written by
:mod:`chatbci.workspace` -- journal payloads, knowledge notes, the config --
goes through :func:`scrub` first, which replaces

- the value of each API-key environment variable in :data:`KEY_ENV_VARS`
  (read at call time, so a key set after import is still caught), and
- any string shaped like an OpenAI-style key (:data:`KEY_PATTERN`, ``sk-``
  followed by at least 16 key characters)

by :data:`REDACTED`, recursively in dicts (keys and values), lists and
tuples. Scrubbing happens *before* writing, so a key never reaches the
SQLite file, its write-ahead log or freed pages.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

__all__ = ["KEY_ENV_VARS", "KEY_PATTERN", "MIN_SECRET_LENGTH", "REDACTED",
           "configured_secrets", "scrub", "scrub_text"]

#: Environment variables that may hold the LLM API key.
KEY_ENV_VARS = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "CHATBCI_API_KEY")

#: Strings shaped like an API key (OpenAI's ``sk-...``, ``sk-proj-...``).
KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_-]{16,}")

#: Replacement text.
REDACTED = "[REDACTED]"

#: Environment values shorter than this are not treated as secrets: a
#: placeholder such as ``OPENAI_API_KEY=x`` would otherwise redact every
#: letter "x" in the journal. Real keys are far longer.
MIN_SECRET_LENGTH = 8


def configured_secrets(environ=None):
    """The API-key values currently configured in the environment.

    Parameters
    ----------
    environ : mapping | None
        Defaults to :data:`os.environ`.

    Returns
    -------
    secrets : tuple of str
        Longest first, so that a key containing another is replaced whole.
    """
    env = os.environ if environ is None else environ
    values = {env.get(name, "").strip() for name in KEY_ENV_VARS}
    return tuple(sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH),
                        key=len, reverse=True))


def with_json_forms(secrets):
    """``secrets`` plus the form each takes inside a JSON string, longest first.

    A key containing a character JSON escapes (``"``, ``\\``, control
    characters) appears escaped in serialised payloads; scrubbing JSON text
    must look for that form too.
    """
    escaped = {json.dumps(s, ensure_ascii=False)[1:-1] for s in secrets}
    return tuple(sorted(set(secrets) | escaped, key=len, reverse=True))


def scrub_text(text, secrets=None):
    """Return ``text`` with secrets and key-shaped strings redacted.

    Parameters
    ----------
    text : str
    secrets : iterable of str | None
        Exact values to redact; defaults to :func:`configured_secrets`.
    """
    if secrets is None:
        secrets = configured_secrets()
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return KEY_PATTERN.sub(REDACTED, text)


def scrub(value: Any, secrets=None) -> Any:
    """Return a copy of ``value`` with every string scrubbed (see :func:`scrub_text`).

    Dict keys are scrubbed too. Other values (numbers, None, ...) are
    returned unchanged; tuples come back as tuples.
    """
    if secrets is None:
        secrets = configured_secrets()
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub(v, secrets) for v in value)
    return value
