"""Paths inside a workspace, and nowhere else.

Paths into a workspace handed in by a user or by the AI (a figure to show,
a pipeline file to load or write, the default ``exports/`` folder) go through
:func:`resolve_inside`, which refuses ``..`` components, absolute paths
outside the workspace and symbolic links that lead out of it. Checking the
*resolved* path (symlinks followed) is what catches the link escapes;
rejecting ``..`` outright, even when it would stay inside, keeps the rule
simple to state and to audit.

Export targets chosen by a human are the one exception, on purpose:
``chatbci export --out``, ``%chatbci export --out`` and
``chatbci.export.export(out=...)`` may name a folder anywhere (a paper's
repository, say). No assistant tool exports or takes a free path, so the AI
never chooses where anything is written outside the workspace.

The check is always against the workspace folder itself, never against one
of its sub-folders: ``pipelines/`` replaced by a link to a folder elsewhere
resolves outside the workspace and is refused, while a link from one
workspace folder to another stays allowed. Writers go through
:func:`chatbci.workspace.files.write_inside`, which uses this check.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from .errors import UnsafePathError

__all__ = ["PATH_KINDS", "folder_for", "resolve_inside"]

#: ``kind`` of :meth:`Workspace.path_for` -> folder, relative to the workspace.
PATH_KINDS = {
    "knowledge": "knowledge",
    "pipelines": "pipelines",
    "results": "results",
    "figures": "results/figures",
    "tables": "results/tables",
    "exports": "exports",
}


def resolve_inside(root, path, *, what="path", base=None) -> Path:
    """Resolve ``path`` (relative to ``root``, or absolute) and check it stays inside.

    Parameters
    ----------
    root : str | os.PathLike
        The folder the path's real location must stay in (the workspace).
    path : str | os.PathLike
        What the user or the AI handed in.
    what : str
        How to call the path in error messages.
    base : str | os.PathLike | None
        Folder, relative to ``root``, that a relative ``path`` starts from
        (e.g. ``"pipelines"``). The real path is still checked against
        ``root``, so a ``base`` that is a link leading out is refused too.

    Returns
    -------
    resolved : pathlib.Path
        Absolute, with symbolic links resolved. It need not exist.

    Raises
    ------
    UnsafePathError
        Naming the path, why it is refused and where it must be.
    """
    root = Path(root).resolve()
    if not isinstance(path, (str, os.PathLike)):
        raise UnsafePathError(f"{what} must be a string or path, not {type(path).__name__}.")
    text = os.fspath(path)
    if isinstance(text, bytes) or not text.strip() or "\x00" in text:
        raise UnsafePathError(f"{what} {text!r} is empty or not a valid path.")
    given = Path(text)
    # Also split on backslashes: on POSIX "a\..\b" is one odd file name, but a
    # path written on Windows and read elsewhere must not smuggle a "..".
    if ".." in given.parts or ".." in PurePath(text.replace("\\", "/")).parts:
        raise UnsafePathError(
            f"{what} {text!r} contains '..'; give a path inside {root} without '..', "
            "e.g. 'results/figures/scores.png'."
        )
    start = root if base is None else root / base
    resolved = (given if given.is_absolute() else start / given).resolve()
    if not resolved.is_relative_to(root):
        if given.is_absolute() and not Path(os.path.abspath(given)).is_relative_to(root):
            why, fix = "is absolute and outside", "copy the file into it first"
        else:
            why = f"leads through a symbolic link to {resolved}, outside"
            fix = ("copy the file into it, or replace the link (e.g. a linked pipelines/) "
                   "by a real folder inside the workspace")
        raise UnsafePathError(
            f"{what} {text!r} {why} the workspace folder {root}. Only files inside the "
            f"workspace can be used: {fix}."
        )
    return resolved


def folder_for(kind) -> str:
    """The workspace folder (relative, POSIX) for a path ``kind`` of :data:`PATH_KINDS`."""
    try:
        return PATH_KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown path kind {kind!r}; use one of {', '.join(PATH_KINDS)}."
        ) from None
