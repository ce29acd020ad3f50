"""The :class:`Workspace`: one folder shared by a researcher and the AI.

::

    my-study/
      workspace.toml   settings (see chatbci.workspace.config)
      journal.sqlite   the hash-chained journal, the record of what happened
      knowledge/       Markdown notes
      pipelines/       decoder definitions
      results/         results; figures/ and tables/ stored by content hash
      exports/         transcripts and paper material

A workspace is opened, never conjured: :meth:`Workspace.open` on a folder
without ``workspace.toml`` or ``journal.sqlite``, or with a corrupt one,
raises an error saying what is wrong and how to fix it, and never creates
an empty replacement.
"""

from __future__ import annotations

import os
from pathlib import Path

from .artifacts import ArtifactStore
from .config import WorkspaceConfig, load_config, validate_settings, write_config
from .errors import (ConfigError, UnsafePathError, WorkspaceExistsError,
                     WorkspaceNotFoundError)
from .events import check_actor
from .files import write_inside
from .journal import Journal
from .knowledge import KnowledgeBase
from .paths import PATH_KINDS, folder_for, resolve_inside

__all__ = ["Workspace"]

_INIT_HINT = "Create one with `chatbci init PATH --title ... --goal ...` or " \
             "chatbci.Workspace.create(PATH, title=..., goal=...)."


class Workspace:
    """A collaborative workspace on disk.

    Use :meth:`create` or :meth:`open`; close it with :meth:`close` or a
    ``with`` block (which also ends the journal session, if one was started).

    Attributes
    ----------
    path : pathlib.Path
        The workspace folder (absolute).
    config : WorkspaceConfig
        The settings, as read when the workspace was opened.
    journal : Journal
    knowledge : KnowledgeBase
    artifacts : ArtifactStore
    """

    CONFIG_FILE = "workspace.toml"
    JOURNAL_FILE = "journal.sqlite"

    def __init__(self, path, config, journal):
        self.path = Path(path).resolve()
        self._config = config
        self.journal = journal
        self.knowledge = KnowledgeBase(self.path / "knowledge", journal, root=self.path)
        self.artifacts = ArtifactStore(self.path)

    # -- creating and opening -----------------------------------------------

    @classmethod
    def create(cls, path, *, title, goal, exist_ok=False, **settings) -> Workspace:
        """Create a workspace in folder ``path`` (made if needed).

        Parameters
        ----------
        path : str | os.PathLike
        title, goal : str
            The study and its research goal.
        exist_ok : bool
            If ``path`` is already a workspace, open it (its settings are kept,
            the ones given here ignored) instead of raising.
        **settings
            Any other :class:`WorkspaceConfig` field: ``datasets``,
            ``subjects``, ``evaluation``, ``random_state``, ``autonomy``,
            ``durability``, ``llm={"model": ..., "base_url": ...}``,
            ``budgets={...}``.

        Returns
        -------
        workspace : Workspace

        Raises
        ------
        ConfigError
            A setting is invalid (nothing is written).
        WorkspaceExistsError
            ``path`` is already a workspace (and not ``exist_ok``), or holds a
            journal without ``workspace.toml``.
        """
        root = Path(path)
        config = validate_settings({"title": title, "goal": goal, **settings},
                                   source="Workspace.create()")
        if (root / cls.CONFIG_FILE).exists():
            if exist_ok:
                return cls.open(root)
            raise WorkspaceExistsError(
                f"{root} is already a chatbci workspace; open it with "
                "chatbci.Workspace.open(), or pass exist_ok=True."
            )
        if (root / cls.JOURNAL_FILE).exists():
            raise WorkspaceExistsError(
                f"{root} holds a journal.sqlite but no workspace.toml; refusing to replace "
                "that journal. Restore workspace.toml from a backup (the journal's first "
                "events record the settings the workspace was created with)."
            )
        if root.exists() and not root.is_dir():
            raise WorkspaceExistsError(f"{root} exists and is not a folder.")
        root.mkdir(parents=True, exist_ok=True)
        for folder in dict.fromkeys(PATH_KINDS.values()):
            (root / folder).mkdir(parents=True, exist_ok=True)
        journal = Journal.create(root / cls.JOURNAL_FILE, durability=config.durability,
                                 default_seeds={"random_state": config.random_state})
        try:
            journal.append("note", "system", {
                "text": f"created workspace {config.title!r}", "op": "create_workspace",
                "config": config.model_dump(mode="json"),
            })
            # workspace.toml last: it is what makes the folder a workspace.
            write_config(config, root / cls.CONFIG_FILE)
        except BaseException:
            journal.close()
            raise
        return cls(root, config, journal)

    @classmethod
    def open(cls, path) -> Workspace:
        """Open the workspace in folder ``path``.

        Raises
        ------
        WorkspaceNotFoundError
            ``path`` is not a folder or has no ``workspace.toml``.
        ConfigError
            ``workspace.toml`` is not valid TOML or holds an invalid setting.
        JournalMissingError, JournalCorruptError, JournalVersionError
            ``journal.sqlite`` is missing, unreadable or too new.
        """
        root = Path(path)
        if not root.is_dir():
            raise WorkspaceNotFoundError(
                f"{root} is not a chatbci workspace: "
                + ("it is a file, not a folder. " if root.exists() else "no such folder. ")
                + _INIT_HINT
            )
        if not (root / cls.CONFIG_FILE).is_file():
            if (root / cls.JOURNAL_FILE).exists():
                raise WorkspaceNotFoundError(
                    f"{root} has a journal.sqlite but its workspace.toml is missing. Restore "
                    "workspace.toml from a backup (the journal's first events record the "
                    "settings the workspace was created with)."
                )
            raise WorkspaceNotFoundError(
                f"{root} is not a chatbci workspace: it has no workspace.toml. {_INIT_HINT}"
            )
        config = load_config(root / cls.CONFIG_FILE)
        journal = Journal.open(root / cls.JOURNAL_FILE, durability=config.durability,
                               default_seeds={"random_state": config.random_state})
        return cls(root, config, journal)

    def close(self):
        """End the journal session (if one was started) and close the journal."""
        if not self.journal.closed:
            try:
                self.journal.end_session()
            finally:
                self.journal.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Workspace({str(self.path)!r}, title={self._config.title!r})"

    # -- settings -----------------------------------------------------------

    @property
    def config(self) -> WorkspaceConfig:
        """The validated settings (immutable; change them with :meth:`configure`)."""
        return self._config

    def configure(self, *, actor, **changes) -> WorkspaceConfig:
        """Change settings, record the change in the journal, rewrite ``workspace.toml``.

        Nested tables are merged: ``configure(actor=..., budgets={"seconds_per_turn":
        60})`` keeps the other budgets. Comments in ``workspace.toml`` are
        not preserved.

        Parameters
        ----------
        actor : str
            Who changes them (``human:<name>``...).
        **changes
            :class:`WorkspaceConfig` fields.
        """
        actor = check_actor(actor)
        if not changes:
            raise ConfigError("configure() needs at least one setting to change.")
        data = self._config.model_dump(mode="json")
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        config = validate_settings(data, source="Workspace.configure()")
        before = self._config.model_dump(mode="json")
        after = config.model_dump(mode="json")
        changed = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}
        if changed:
            # Refuse a workspace.toml that links out before the journal records
            # a change that could not be written.
            resolve_inside(self.path, self.CONFIG_FILE, what="workspace settings file")
            self.journal.append("note", actor, {
                "text": f"changed settings: {', '.join(changed)}", "op": "configure",
                "changes": changed,
            })
            write_config(config, self.path / self.CONFIG_FILE, root=self.path)
            self._config = config
        return config

    # -- paths --------------------------------------------------------------

    def resolve(self, path):
        """Resolve a user- or AI-supplied path, refusing anything outside the workspace.

        Raises
        ------
        UnsafePathError
            The path contains ``..``, is absolute elsewhere, or escapes
            through a symbolic link.
        """
        return resolve_inside(self.path, path)

    def path_for(self, kind, name) -> Path:
        """Absolute path of file ``name`` in the folder for ``kind``.

        Parameters
        ----------
        kind : {"knowledge", "pipelines", "results", "figures", "tables", "exports"}
            ``figures`` and ``tables`` live under ``results/``.
        name : str
            A file name, or a relative path inside that folder.

        Raises
        ------
        ValueError
            Unknown ``kind``.
        UnsafePathError
            ``name`` would leave the folder, or its real path (symbolic
            links followed, the folder itself included) is outside the
            workspace.
        """
        folder = folder_for(kind)
        if isinstance(name, (str, os.PathLike)) and Path(name).is_absolute():
            raise UnsafePathError(f"{kind} file name {str(name)!r} must be relative to "
                                  f"{folder}/, e.g. 'scores.csv'.")
        # Checked against the workspace, not the folder: a folder replaced by
        # a link to elsewhere must not take the files with it.
        return resolve_inside(self.path, name, what=f"{kind} file name", base=folder)

    def write_file(self, kind, name, data, *, exclusive=False) -> Path:
        """Write file ``name`` in the folder for ``kind``, atomically; return its path.

        The file appears whole (written aside, then renamed into place), with
        the umask's permissions, and only if its real path is inside the
        workspace (see :func:`chatbci.workspace.files.write_inside`).

        Parameters
        ----------
        kind, name
            As for :meth:`path_for`.
        data : str | bytes
            The content (text is written as UTF-8).
        exclusive : bool
            Refuse to replace an existing file (``FileExistsError``).

        Returns
        -------
        path : pathlib.Path
            Absolute, symbolic links resolved.
        """
        return write_inside(self.path, self.path_for(kind, name), data,
                            exclusive=exclusive, what=f"{kind} file")
