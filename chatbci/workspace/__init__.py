"""The collaborative workspace: settings, journal, knowledge base, artifacts.

A researcher and the AI share one folder (see :class:`Workspace`). Its
journal (:class:`Journal`) is an append-only, hash-chained SQLite log of
every message, suggestion, decision, tool call and result: the source of
truth for exports and for reproducing a study.

This package knows nothing about EEG or LLMs; :mod:`chatbci.bci` and
:mod:`chatbci.assistant` build on it.
"""

from .artifacts import ArtifactStore
from .config import Budgets, LLMSettings, WorkspaceConfig
from .errors import (ConfigError, DecisionError, EventValidationError, JournalCorruptError,
                     JournalError, JournalMissingError, JournalVersionError, KnowledgeError,
                     KnowledgeWarning, UnsafePathError, WorkspaceError, WorkspaceExistsError,
                     WorkspaceNotFoundError)
from .events import KINDS, Event
from .journal import Journal, Thread, VerifyReport
from .knowledge import KnowledgeBase, Note
from .provenance import collect_provenance
from .secrets import scrub
from .workspace import Workspace

__all__ = [
    "KINDS",
    "ArtifactStore",
    "Budgets",
    "ConfigError",
    "DecisionError",
    "Event",
    "EventValidationError",
    "Journal",
    "JournalCorruptError",
    "JournalError",
    "JournalMissingError",
    "JournalVersionError",
    "KnowledgeBase",
    "KnowledgeError",
    "KnowledgeWarning",
    "LLMSettings",
    "Note",
    "Thread",
    "UnsafePathError",
    "VerifyReport",
    "Workspace",
    "WorkspaceConfig",
    "WorkspaceError",
    "WorkspaceExistsError",
    "WorkspaceNotFoundError",
    "collect_provenance",
    "scrub",
]
