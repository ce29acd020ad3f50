"""Writing files in a workspace: inside it, whole, and readable by collaborators.

Every file chatbci writes into a workspace -- notes, pipelines, figures and
tables, ``workspace.toml``, exports -- goes through :func:`write_inside`:

* **Inside.** The target is resolved with symbolic links followed
  (:func:`~chatbci.workspace.paths.resolve_inside`) and refused if its real
  path leaves the root folder, so a ``pipelines/`` or ``knowledge/`` folder
  replaced by a link to somewhere else cannot carry the AI's writes out.
* **Whole.** The content goes to a temporary file in the target's own
  folder, which is then renamed (or hard-linked) into place: a reader sees
  the old file or the new one, never a half-written one.
* **Shared.** The file is created with mode ``0o666`` and the process umask
  applied (``0o644`` under the usual ``0o022``), like any file ``open()``
  creates, not the private ``0o600`` of :func:`tempfile.mkstemp`: a
  workspace is meant to be read by collaborators, and none of these files
  holds a secret. Folders are made with ``0o777`` minus the umask.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from .paths import resolve_inside

__all__ = ["make_folder", "write_inside"]

# Errors of os.link that mean "this file system has no hard links", not "no".
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV,
                  errno.EMLINK}


def make_folder(root, path, *, what="folder") -> Path:
    """Make folder ``path`` (and its parents) inside ``root``; return its real path.

    Parameters
    ----------
    root : str | os.PathLike
        The folder everything must stay in (usually the workspace).
    path : str | os.PathLike
        Relative to ``root``, or absolute inside it.
    what : str
        How to call the path in error messages.

    Raises
    ------
    UnsafePathError
        The folder's real path would be outside ``root``.
    NotADirectoryError, FileExistsError
        Something that is not a folder is in the way.
    """
    folder = resolve_inside(root, path, what=what)
    # mkdir's default mode is 0o777 minus the umask, which is what we want.
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _temp_beside(target: Path):
    """A new, empty file next to ``target``: (fd, path). Mode 0o666 minus the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        # A leading dot and a .tmp suffix: no reader of *.md or *.yml picks it up.
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    # 100 random names all taken: practically never.
    raise FileExistsError(f"could not create a temporary file next to {target}.")


def write_inside(root, path, data, *, exclusive=False, durable=False, what="file") -> Path:
    """Write ``data`` to ``path`` inside ``root``, atomically; return the real path.

    Parameters
    ----------
    root : str | os.PathLike
        The folder the file must stay in (the workspace, or an export folder).
    path : str | os.PathLike
        Relative to ``root``, or absolute inside it. Missing folders are made.
    data : str | bytes | iterable of bytes
        The content; text is written as UTF-8, line endings untouched.
    exclusive : bool
        Refuse to replace an existing file (``FileExistsError``), like
        ``open(path, "x")``, but the file appears with its whole content.
    durable : bool
        ``fsync`` the file before it is put in place (survives a power loss).
    what : str
        How to call the path in error messages.

    Returns
    -------
    path : pathlib.Path
        Absolute, symbolic links resolved: where the content is.

    Raises
    ------
    UnsafePathError
        The real path of ``path`` is outside ``root`` (``..``, an absolute
        path elsewhere, or a symbolic link leading out).
    FileExistsError
        ``exclusive`` and the file already exists.
    """
    target = resolve_inside(root, path, what=what)
    make_folder(root, target.parent, what=f"folder of {what}")
    fd, tmp = _temp_beside(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, str):
                fh.write(data.encode("utf-8"))
            elif isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                for chunk in data:
                    fh.write(chunk)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        if not exclusive:
            os.replace(tmp, target)
            return target
        try:
            # link() fails if the name exists: the name is claimed and filled
            # in one step, so no reader ever meets an empty note.
            os.link(tmp, target, follow_symlinks=False)
        except FileExistsError:
            raise
        except OSError as err:
            if err.errno not in _NO_HARD_LINKS:
                raise
            # No hard links here (some network or FAT file systems): claim the
            # name, then rename the content over it. A reader may briefly see
            # an empty file, never a partial one.
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            os.replace(tmp, target)
        return target
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
