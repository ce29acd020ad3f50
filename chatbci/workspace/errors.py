"""Errors of the workspace layer.

Every error a user (or the AI acting for them) can cause is a
:class:`WorkspaceError`, so the CLI and the notebook UI can show its message
as one clear line. The messages name the problem, the offending value and
how to fix it. Several classes also derive from the matching built-in
(``ValueError``, ``FileNotFoundError``...) so generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DecisionError",
    "EventValidationError",
    "JournalCorruptError",
    "JournalError",
    "JournalMissingError",
    "JournalVersionError",
    "KnowledgeError",
    "KnowledgeWarning",
    "UnsafePathError",
    "WorkspaceError",
    "WorkspaceExistsError",
    "WorkspaceNotFoundError",
]


class WorkspaceError(Exception):
    """Base class of all errors raised by :mod:`chatbci.workspace`."""


class WorkspaceNotFoundError(WorkspaceError, FileNotFoundError):
    """The folder is not a chatbci workspace (no ``workspace.toml``)."""


class WorkspaceExistsError(WorkspaceError, FileExistsError):
    """A workspace already exists where a new one was to be created."""


class ConfigError(WorkspaceError, ValueError):
    """``workspace.toml`` (or a setting passed in Python) is invalid."""


class UnsafePathError(WorkspaceError, ValueError):
    """A path handed in would resolve outside the workspace."""


class JournalError(WorkspaceError):
    """Base class of journal errors."""


class JournalMissingError(JournalError, FileNotFoundError):
    """``journal.sqlite`` is missing from an existing workspace."""


class JournalCorruptError(JournalError):
    """``journal.sqlite`` is not a readable chatbci journal.

    The file is left untouched: the journal is the record of the study and
    is never replaced by a new, empty one behind the user's back.
    """


class JournalVersionError(JournalError):
    """The journal was written by a newer chatbci than this one."""


class EventValidationError(JournalError, ValueError):
    """An event (kind, actor, payload or parent) is invalid; nothing was written."""


class DecisionError(EventValidationError):
    """A decision breaks the rules: its parent must be a pending suggestion."""


class KnowledgeError(WorkspaceError, ValueError):
    """A knowledge-base note is invalid, missing or cannot be read."""


class KnowledgeWarning(UserWarning):
    """A note file was skipped because it cannot be read; the message names it.

    A warning, not an error: one note broken by hand must not stop the
    session, the search or an export that read the other notes.
    """
