"""Figures and tables stored under ``results/`` by content hash.

An artifact is saved as ``results/<category>/<sha256><suffix>``, so its name
*is* its checksum: the journal references it by that relative path, two
identical figures are stored once, and :meth:`ArtifactStore.check` proves a
file is still the one a ``tool_result`` pointed to.

Unlike journal payloads, artifact bytes are not scrubbed for secrets (they
may be binary images); tools must not put credentials in figures or tables.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .errors import UnsafePathError
from .files import write_inside
from .paths import resolve_inside

__all__ = ["CATEGORIES", "ArtifactStore"]

#: Sub-folders of ``results/`` that hold artifacts.
CATEGORIES = ("figures", "tables", "files")

_FIGURE_SUFFIXES = {".png", ".svg", ".pdf", ".jpg", ".jpeg", ".gif", ".webp", ".eps"}
_TABLE_SUFFIXES = {".csv", ".tsv", ".json", ".parquet", ".xlsx", ".html", ".tex", ".md",
                   ".txt", ".h5", ".hdf5"}
_SUFFIX = re.compile(r"(?:\.[A-Za-z0-9]{1,12}){0,2}")
_CHUNK = 1 << 20


class ArtifactStore:
    """Content-addressed files under ``<workspace>/results``.

    Parameters
    ----------
    root : str | os.PathLike
        The workspace folder.
    """

    def __init__(self, root):
        self.root = Path(root).resolve()

    def _target(self, digest, suffix, category):
        if not isinstance(suffix, str) or not _SUFFIX.fullmatch(suffix):
            raise ValueError(f"suffix {suffix!r} is not a file extension such as '.png' or "
                             "'.csv.gz'.")
        suffix = suffix.lower()
        if category is None:
            category = ("figures" if suffix in _FIGURE_SUFFIXES
                        else "tables" if suffix in _TABLE_SUFFIXES else "files")
        if category not in CATEGORIES:
            raise ValueError(f"artifact category {category!r} is not one of {CATEGORIES}.")
        rel = f"results/{category}/{digest}{suffix}"
        # Resolved now, so that results/figures linked elsewhere is refused
        # before anything is read or written there.
        return rel, resolve_inside(self.root, rel, what="artifact path")

    def put_bytes(self, data, suffix, *, category=None) -> str:
        """Store ``data`` and return its path relative to the workspace.

        Parameters
        ----------
        data : bytes
        suffix : str
            File extension, e.g. ``".png"``.
        category : {"figures", "tables", "files"} | None
            Sub-folder of ``results/``; by default guessed from ``suffix``.

        Returns
        -------
        relpath : str
            POSIX path such as ``"results/figures/<sha256>.png"``, the form
            to put in a ``tool_result``'s ``artifacts``.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, not {type(data).__name__}; use put_file() "
                            "for a file on disk.")
        data = bytes(data)
        rel, target = self._target(hashlib.sha256(data).hexdigest(), suffix, category)
        if not (target.is_file() and target.stat().st_size == len(data)):
            self._write_atomic(target, [data])
        return rel

    def put_file(self, path, *, category=None, suffix=None) -> str:
        """Store a copy of the file at ``path``; see :meth:`put_bytes`.

        ``path`` is trusted (it comes from Python code such as a tool that
        just saved a figure). A path chosen by the AI must be checked with
        :meth:`Workspace.resolve` first.
        """
        path = Path(path)
        suffix = path.suffix if suffix is None else suffix
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
        rel, target = self._target(digest.hexdigest(), suffix, category)
        if not (target.is_file() and target.stat().st_size == path.stat().st_size):
            with open(path, "rb") as fh:
                self._write_atomic(target, iter(lambda: fh.read(_CHUNK), b""))
        return rel

    def path(self, relpath) -> Path:
        """Absolute path of an artifact (checked to stay inside the workspace)."""
        resolved = resolve_inside(self.root, relpath, what="artifact path")
        if not resolved.is_relative_to(self.root / "results"):
            raise UnsafePathError(f"artifact path {relpath!r} is not under results/.")
        return resolved

    def check(self, relpath) -> bool:
        """Whether the artifact exists and its content still matches its name."""
        path = self.path(relpath)
        if not path.is_file():
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
        return path.name.startswith(digest.hexdigest())

    def _write_atomic(self, target, chunks):
        # Write aside and rename, so a reader never sees half a file under a
        # name that claims to be its hash.
        write_inside(self.root, target, chunks, what="artifact")
