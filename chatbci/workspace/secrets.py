"""Keep API keys and other credentials out of the workspace.

A workspace is meant to be shared (committed, attached to a paper), so no
secret may ever reach one of its files. Everything written by
:mod:`chatbci.workspace` -- journal payloads, knowledge notes, the config --
and every export goes through :func:`scrub` / :func:`scrub_text` first,
which replaces by :data:`REDACTED`

- the value of each API-key environment variable in :data:`KEY_ENV_VARS`
  (read at call time, so a key set after import is still caught), and
- every string a secret detector recognises (see :func:`find_secrets`):
  the regex plugins of the maintained ``detect-secrets`` library (AWS access
  key ids and secret keys, GitHub ``ghp_``/``gho_``/... tokens, GitLab, Slack,
  Stripe, Twilio, SendGrid, npm, PyPI, Discord, Telegram, Mailchimp, Square,
  Artifactory, IBM, SoftLayer, Cloudant keys, Azure storage account keys,
  JSON web tokens, private keys, the password of ``scheme://user:pass@host``
  and the value after a secret-sounding name such as ``password:`` or
  ``aws_secret_access_key=``), plus the shapes that library does not know:
  OpenAI-style ``sk-...`` keys (:data:`KEY_PATTERN`), fine-grained GitHub
  ``github_pat_...`` tokens, ``Bearer``/``Basic`` credentials, secret query
  parameters in URLs (``?api-key=``, ``&key=``, ``&token=``, ``&sig=``...),
  whole PEM private-key blocks, and a 32-hex-digit key (Azure's shape) next
  to a word such as *key*, *token* or *secret*.

Dicts (keys and values), lists and tuples are scrubbed recursively.
Scrubbing happens *before* writing, so a key never reaches the SQLite file,
its write-ahead log or freed pages.

What is not caught: a secret with no recognisable shape and no
secret-sounding name next to it (a bare 32-hex or random string), and
generic high-entropy strings -- detect-secrets' entropy plugins are left out
on purpose, since every content hash, session id and embedded figure in a
workspace would match them. Bare 64-hex strings (the journal's sha256
hashes, artifact names) and bare 32-hex session ids are kept.

The text scrubbed is often JSON (the journal redacts the canonical JSON of a
payload; exports re-scrub it), so redaction never splits an escape sequence
or removes a quote: the result of scrubbing valid JSON is valid JSON.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import string
import threading
from typing import Any

__all__ = ["KEY_ENV_VARS", "KEY_PATTERN", "MIN_SECRET_LENGTH", "REDACTED",
           "configured_secrets", "find_secrets", "scrub", "scrub_text",
           "scrub_text_counted", "with_json_forms"]

#: Environment variables that may hold the LLM API key.
KEY_ENV_VARS = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "CHATBCI_API_KEY")

#: Strings shaped like an API key (OpenAI's ``sk-...``, ``sk-proj-...``).
#: detect-secrets' OpenAIDetector only knows the legacy ``...T3BlbkFJ...``
#: form, so this stays. Not after a letter or digit, so that words such as
#: ``task-related-...`` are not taken for keys.
KEY_PATTERN = re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{16,}")

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


# ---------------------------------------------------------------------------
# Detection

class _Lower(tuple):
    """Trigger strings to look for in the lowercased text."""


class _Near(tuple):
    """Trigger of a pattern that needs a secret-sounding name before the
    secret (``password: ...``, ``aws_secret_access_key=...``).

    The tuple holds strings of the lowercased text: every name the pattern
    looks for contains one of them. The pattern runs only in windows around
    them (see :func:`_windows`) or, when ``max_prefix`` is given (the match
    begins with the name, at most that many characters before the string),
    only from those starting points. ``requires``: strings one of which the
    text must also contain.
    """

    def __new__(cls, stems, max_prefix=None, requires=()):
        near = super().__new__(cls, stems)
        near.max_prefix, near.requires = max_prefix, requires
        return near


#: The names of detect-secrets' KeywordDetector (api_key, auth_key, ...,
#: db_pass, password, passwd, pwd, secret, contraseña). Its patterns begin
#: with the name, at most 9 characters ("database_") before the stem; the
#: one for ``"value" == password`` begins at the value's quote.
_KEYWORD_STEMS = ("key", "pass", "pwd", "secret", "contrase")
_KEYWORD_NAMES = _Near(_KEYWORD_STEMS, max_prefix=9)
_KEYWORD_COMPARED = _Near(_KEYWORD_STEMS, requires=("==", "!="))
#: key, pwd, pw, password, pass, token: IBM Cloud IAM, SoftLayer, Cloudant.
_KEY_OR_PASS = _Near(("key", "pw", "pass", "token"))

#: Shapes detect-secrets 1.5 does not know (see the module docstring). Each
#: is ``(pattern, group, trigger)``: the group holds the secret; the
#: trigger is as in :data:`_TRIGGERS`.
_EXTRA_PATTERNS = (
    (KEY_PATTERN, 0, ("sk-",)),
    # Fine-grained GitHub tokens (detect-secrets only has ghp_/gho_/...).
    (re.compile(r"github_pat_[A-Za-z0-9_]{22,}"), 0, ("github_pat_",)),
    # RFC 6750 bearer / RFC 7617 basic credentials. At least 16 characters
    # and a digit, so prose ("bearer tokens are ...") is left alone.
    (re.compile(r"(?i)\b(?:bearer|basic)\s+((?=[A-Za-z0-9\-._~+/]*\d)"
                r"[A-Za-z0-9\-._~+/]{16,}=*)"), 1, _Lower(("bearer", "basic"))),
    # Secret query parameters: ?api-key=..., &key=..., &access_token=...,
    # &sig=... (Azure SAS), ...
    (re.compile(r"(?i)[?&;](?:[\w.-]*[_-])?(?:api[_-]?key|apikey|key|token|secret|"
                r"password|passwd|pwd|sig|signature|auth|credentials?)"
                r"=([^&#\s\"'`\\<>]+)"), 1, ("=",)),
    # A 32-hex-digit key (Azure OpenAI / Cognitive Services) named as such:
    # "my azure key is 0123...", "api_key=0123...", '"token": "0123..."'.
    # Not part of a longer hex run, so sha256 hashes (64 hex) never match,
    # and not without a secret-sounding word, so session ids (uuid hex) stay.
    (re.compile(r"(?i)(?:key|token|secret|passw(?:or)?d|pwd|auth)\w*"
                r"[\s\"'`:=]{0,6}(?:(?:is|was|are|=|:)[\s\"'`:=]{1,6})?"
                r"(?<![0-9a-f])([0-9a-f]{32})(?![0-9a-f])"), 1,
     _Near(("key", "token", "secret", "pass", "pwd", "auth"))),
)

#: A whole PEM/OpenSSH private key block (detect-secrets flags its header
#: line only); without an END line, as far as the key's characters go.
_PEM_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:"
    r"[A-Za-z0-9+/=\s:,.-]*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"|[A-Za-z0-9+/=\s:,.-]*)")

#: detect-secrets plugins left out: public IP addresses are not secrets,
#: and the entropy plugins would flag every hash and embedded figure.
_SKIPPED_PLUGINS = {"IPPublicDetector", "Base64HighEntropyString", "HexHighEntropyString"}

#: A cheap test that must pass before a plugin's patterns are run: a tuple
#: of strings (one must occur in the text; in the lowercased text for a
#: :class:`_Lower` tuple, used for case-insensitive patterns) or a pattern
#: (it must be found in the text). Running every plugin's regex on a few KB
#: of JSON costs tens of milliseconds, mostly on text that holds no secret;
#: the triggers are supersets of what the patterns match, so they only skip
#: patterns that cannot match. A plugin not listed (a new one in a later
#: detect-secrets) always runs.
_TRIGGERS = {
    "ArtifactoryDetector": re.compile(r"AKC|AP[\dA-F]"),
    "AWSKeyDetector": re.compile(r"A(?:KIA|SIA|BIA|CCA|3T)"),
    "AzureStorageKeyDetector": ("AccountKey=",),
    "BasicAuthDetector": ("://",),
    "CloudantDetector": _Lower(("cloudant",)),
    "DiscordBotTokenDetector": re.compile(r"\.[a-zA-Z\d_-]{6}\."),
    "GitHubTokenDetector": re.compile(r"gh[pousr]_"),
    "GitLabTokenDetector": ("gl", "GR1348941"),
    "JwtTokenDetector": ("eyJ",),
    "MailchimpDetector": ("-us",),
    "NpmDetector": ("_authToken",),
    "OpenAIDetector": ("T3BlbkFJ",),
    "PrivateKeyDetector": ("PRIVATE KEY", "PuTTY-User-Key-File-2"),
    "PypiTokenDetector": ("pypi-",),
    "SendGridDetector": ("SG.",),
    "SlackDetector": _Lower(("xox", "hooks.slack.com")),
    "SoftlayerDetector": _Lower(("softlayer",)),
    "SquareOAuthDetector": ("sq0csp-",),
    "StripeDetector": ("k_live_",),
    "TelegramBotTokenDetector": re.compile(r":[0-9A-Za-z_-]{35}"),
}

#: Patterns (plugin, index in its ``denylist``) that look for a value
#: assigned to a secret-sounding name; they run near such names only.
_NEAR_NAME_PATTERNS = {("AWSKeyDetector", 1): _Near(("aws",)),
                       ("CloudantDetector", 0): _KEY_OR_PASS,
                       ("CloudantDetector", 1): _KEY_OR_PASS,
                       ("IbmCloudIamDetector", 0): _KEY_OR_PASS,
                       ("IbmCosHmacDetector", 0): _Near(("secret",)),
                       ("SoftlayerDetector", 0): _KEY_OR_PASS}
#: A window reaches this far before a name (a quoted value compared with it,
#: ``"value" == password``; ``aws`` ... ``key``) and after it (the value).
#: A match that reaches the window's end is looked for again with up to
#: _LONG_VALUE characters: most values are short, and the patterns' cost
#: grows with the window.
_BEFORE, _AFTER, _LONG_VALUE = 64, 96, 512

_detectors = None
_detectors_lock = threading.Lock()


def _load_detectors():
    """``(trigger, ((pattern, groups, is_jwt), ...))`` for every trigger, built once.

    detect-secrets is imported on first use: it takes a few tenths of a
    second, which ``import chatbci`` should not pay. Its plugins' regexes
    are used directly, with ``finditer``, rather than through
    ``analyze_line``: that API returns values without positions (a secret
    found next to a keyword must be redacted there, not wherever the same
    word occurs), yields only the first keyword match of a line, and may try
    to verify a key over the network.
    """
    global _detectors
    with _detectors_lock:
        if _detectors is not None:
            return _detectors
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.plugins import keyword
        from detect_secrets.plugins.base import RegexBasedDetector
        from detect_secrets.plugins.jwt import JwtTokenDetector

        found = []
        classes = sorted(get_mapping_from_secret_type_to_class().values(),
                         key=lambda c: c.__name__)
        for cls in classes:
            name = cls.__name__
            if name in _SKIPPED_PLUGINS or not issubclass(cls, RegexBasedDetector):
                continue
            for i, pattern in enumerate(cls.denylist):
                groups = tuple(range(1, pattern.groups + 1)) or (0,)
                trigger = _NEAR_NAME_PATTERNS.get((name, i), _TRIGGERS.get(name))
                found.append((pattern, groups, trigger, cls is JwtTokenDetector))
        # KeywordDetector: the value after a secret-sounding name, in the
        # forms it looks for in config files (key: value, key = value,
        # "value" == key, key "value";) and in code (quotes required).
        # These tables are module constants, not API: should a later release
        # rename them, scrubbing goes on without them (and tests/test_secrets
        # fails) instead of every journal write raising.
        table = {**getattr(keyword, "CONFIG_DENYLIST_REGEX_TO_GROUP", {}),
                 **getattr(keyword, "QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP", {})}
        compared = getattr(keyword, "PRECEDED_BY_EQUAL_COMPARISON_SIGNS_QUOTES_REQUIRED_REGEX",
                           None)
        for pattern, group in table.items():
            trigger = _KEYWORD_COMPARED if pattern is compared else _KEYWORD_NAMES
            found.append((pattern, (group,), trigger, False))
        for pattern, group, trigger in _EXTRA_PATTERNS:
            found.append((pattern, (group,), trigger, False))
        # Grouped by trigger, so that each is tested once per text.
        # (A _Near and a plain tuple of the same strings are different triggers.)
        groups_of = {}
        for pattern, groups, trigger, is_jwt in found:
            entry = groups_of.setdefault((type(trigger), trigger), (trigger, []))
            entry[1].append((pattern, groups, is_jwt))
        _detectors = (tuple((t, tuple(p)) for t, p in groups_of.values()),
                      JwtTokenDetector.is_formally_valid)
        return _detectors


def _near_name_matches(pattern, view, windows):
    """The matches of ``pattern`` in ``view`` that start in one of ``windows``."""
    for start, end in windows:
        for match in pattern.finditer(view, start, end):
            if match.end() >= end and end < len(view):
                match = pattern.search(view, match.start(),
                                       match.start() + _LONG_VALUE) or match
            yield match


def _name_matches(pattern, view, near, found):
    """The matches of ``pattern`` that begin up to ``near.max_prefix``
    characters before one of the stems (positions cached in ``found``)."""
    starts = found.get(id(near))
    if starts is None:
        starts = found[id(near)] = sorted({max(at - back, 0) for stem in near
                                       for at in found[stem]
                                       for back in range(near.max_prefix + 1)})
    for pos in starts:
        match = pattern.match(view, pos, pos + _LONG_VALUE)
        if match is not None:
            yield match


def _windows(lower, stems, found):
    """Merged ``(start, end)`` windows of ``lower`` around each of ``stems``.

    ``found`` caches each stem's positions, shared by the triggers of one text.
    """
    hits = []
    for stem in stems:
        at = found.get(stem)
        if at is None:
            at = found[stem] = []
            i = lower.find(stem)
            while i >= 0:
                at.append(i)
                i = lower.find(stem, i + 1)
        hits += at
    hits.sort()
    windows = []
    for at in hits:
        start, end = max(at - _BEFORE, 0), at + _AFTER
        if windows and start <= windows[-1][1]:
            windows[-1][1] = end
        else:
            windows.append([start, end])
    return windows


#: One JSON/TOML escape sequence.
_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.S)

#: Where a secret value ends: whitespace, a quote, a backslash, a further
#: query parameter. Passwords with spaces are thereby cut short, but a
#: redaction never runs on into the following text or across a JSON string.
_VALUE_END = re.compile(r"[\s\"'`\\]|&(?=[\w.-]+=)")
_LEADING = " \t\r\n\"'`=:"
_TRAILING = ".,;:!?)]}>"
_TOKEN_CHAR = re.compile(r"[A-Za-z0-9_\-]*")
_JWT_CHAR = re.compile(r"[A-Za-z0-9_\-.+/=]*")
_MAX_PASSES = 4
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_JSON_LITERAL = re.compile(r"(?:true|false|null|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\Z")


def _view(text):
    """``text`` with each escape sequence blanked, and the escapes' spans.

    The view has the same length as ``text``, so a span found in it is a
    span of ``text``. ``\\"`` becomes ``' "'`` and ``\\n`` becomes ``' \\n'``,
    so the keyword patterns see the quotes and line ends a human typed inside
    a JSON string; every other escape becomes spaces.
    """
    if "\\" not in text:
        return text, []
    spans = []

    def blank(match):
        spans.append(match.span())
        seq = match.group(0)
        last = {'"': '"', "n": "\n", "'": "'"}.get(seq[1], " ")
        return " " * (len(seq) - 1) + last

    return _ESCAPE.sub(blank, text), spans


def _tidy(view, start, end, is_jwt):
    """Cut a detected span down to the secret itself, then to its whole token."""
    while start < end and view[start] in _LEADING:
        start += 1
    cut = _VALUE_END.search(view, start, end)
    if cut is not None:
        end = cut.start()
    while end > start and view[end - 1] in _TRAILING:
        end -= 1
    if end > start:
        # Some plugins capture a prefix only (GitHub's ``(ghp|gho|...)_``)
        # or a minimal match (the JWT pattern's lazy signature): take the
        # rest of the token that follows.
        end = (_JWT_CHAR if is_jwt else _TOKEN_CHAR).match(view, end).end()
    return start, end


def _spans(view):
    """Merged, sorted ``(start, end)`` spans of the secrets in ``view``."""
    detectors, jwt_valid = _load_detectors()
    lower = view.lower()
    if len(lower) != len(view):  # "İ" lowercases to two characters: keep positions
        lower = view.translate(_ASCII_LOWER)
    spans = [m.span() for m in _PEM_BLOCK.finditer(view)] if "PRIVATE KEY" in view else []
    stems = {}
    for trigger, patterns in detectors:
        if isinstance(trigger, _Near):
            if trigger.requires and not any(t in view for t in trigger.requires):
                continue
            windows = _windows(lower, trigger, stems)
            if not windows:
                continue
        elif trigger is None:
            pass
        elif isinstance(trigger, _Lower):
            if not any(t in lower for t in trigger):
                continue
        elif isinstance(trigger, tuple):
            if not any(t in view for t in trigger):
                continue
        elif trigger.search(view) is None:
            continue
        for pattern, groups, is_jwt in patterns:
            if not isinstance(trigger, _Near):
                matches = pattern.finditer(view)
            elif trigger.max_prefix is None:
                matches = _near_name_matches(pattern, view, windows)
            else:
                matches = _name_matches(pattern, view, trigger, stems)
            _collect(spans, view, groups, is_jwt, jwt_valid, matches)
    spans.sort()
    merged = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _collect(spans, view, groups, is_jwt, jwt_valid, matches):
    """Add to ``spans`` the secret in each of ``matches``."""
    for match in matches:
        for group in groups:
            start, end = match.span(group)
            if start < 0:
                continue
            start, end = _tidy(view, start, end, is_jwt)
            value = view[start:end]
            if not value or view.startswith(REDACTED, start):
                continue
            if is_jwt and not jwt_valid(value.rstrip(".")):
                continue
            # A bare JSON value after '"key":' -- redacting it would leave an
            # unquoted word and break the JSON.
            if view[max(start - 2, 0):start] == '":' and _JSON_LITERAL.match(value):
                continue
            spans.append((start, end))


def _widen(spans, escapes):
    """Grow each span to whole escape sequences, so none is cut in two."""
    if not escapes:
        return spans
    starts = [s for s, _ in escapes]
    out = []
    for start, end in spans:
        for pos in (start, end - 1):
            i = bisect.bisect_right(starts, pos) - 1
            if i >= 0 and escapes[i][0] <= pos < escapes[i][1]:
                start, end = min(start, escapes[i][0]), max(end, escapes[i][1])
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def find_secrets(text):
    """The secrets detected in ``text`` (not counting configured keys).

    Parameters
    ----------
    text : str
        Free text, or JSON/TOML text: detection looks through escape
        sequences (``\\"``, ``\\n``) as a human would read the string.

    Returns
    -------
    secrets : list of str
        Each detected secret as it appears in ``text``, in order.
    """
    view, escapes = _view(text)
    return [text[s:e] for s, e in _widen(_spans(view), escapes)]


def scrub_text_counted(text, secrets=None):
    """Redact ``text`` and count what was redacted.

    Parameters
    ----------
    text : str
    secrets : iterable of str | None
        Exact values to redact; defaults to :func:`configured_secrets`.

    Returns
    -------
    text : str
        ``text`` with each secret replaced by :data:`REDACTED`.
    count : int
        How many places were redacted (configured values and detected
        secrets); 0 when ``text`` is returned unchanged.
    """
    if secrets is None:
        secrets = configured_secrets()
    count = 0
    for secret in secrets:
        if secret in text:
            count += text.count(secret)
            text = text.replace(secret, REDACTED)
    # A redaction can bring a secret's name next to another secret
    # ("password: <jwt> <hex>"), so look again until nothing is found; text
    # without secrets takes one pass.
    for _ in range(_MAX_PASSES):
        view, escapes = _view(text)
        spans = _widen(_spans(view), escapes)
        if not spans:
            break
        parts, last = [], 0
        for start, end in spans:
            parts += [text[last:start], REDACTED]
            last = end
        parts.append(text[last:])
        text = "".join(parts)
        count += len(spans)
    return text, count


def scrub_text(text, secrets=None):
    """Return ``text`` with secrets and key-shaped strings redacted.

    Parameters
    ----------
    text : str
    secrets : iterable of str | None
        Exact values to redact; defaults to :func:`configured_secrets`.
        Detected secrets (see :func:`find_secrets`) are redacted as well.
    """
    return scrub_text_counted(text, secrets)[0]


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
