"""Paths inside a workspace, and nowhere else.

Paths handed in by a user or by the AI (a figure to show, a pipeline file to
load, an export target) go through :func:`resolve_inside`, which refuses
``..`` components, absolute paths outside the workspace and symbolic links
that lead out of it. Checking the *resolved* path (symlinks followed) is
what catches the link escapes; rejecting ``..`` outright, even when it would
stay inside, keeps the rule simple to state and to audit.
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


def resolve_inside(root, path, *, what="path") -> Path:
    """Resolve ``path`` (relative to ``root``, or absolute) and check it stays inside.

    Parameters
    ----------
    root : str | os.PathLike
        The folder the path must stay in (the workspace, or one of its folders).
    path : str | os.PathLike
        What the user or the AI handed in.
    what : str
        How to call the path in error messages.

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
    resolved = (given if given.is_absolute() else root / given).resolve()
    if not resolved.is_relative_to(root):
        why = ("is absolute and outside" if given.is_absolute()
               else f"leads through a symbolic link to {resolved}, outside")
        raise UnsafePathError(
            f"{what} {text!r} {why} the workspace folder {root}. Only files inside the "
            "workspace can be used; copy the file into it first."
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
