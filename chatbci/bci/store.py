"""A content-addressed store of intermediate results, bounded on disk.

The result cache (:class:`~chatbci.bci.benchmark.ResultCache`) remembers
scores; this store remembers the work behind them, so that the next pipeline
of a design session costs only its own fits:

- ``epochs``: a subject's filtered, epoched data for one paradigm
  configuration (``X``, ``y``, metadata), so a new pipeline never re-reads
  the EDF files;
- ``head``: the output of a stateless head (per-epoch covariances of one
  estimator configuration) on all epochs of a subject;
- ``prefix``: the output of a fitted shared prefix on one fold (e.g. the
  tangent-space features of the fold's training and test epochs).

An entry is a folder named by the SHA-256 of a canonical description of
everything that changes its numbers (built by the caller: dataset and
paradigm configuration, the data files' sizes and modification times,
library versions, estimator parameters, fold indices). Arrays are ``.npy``
files opened memory-mapped (read-only), other values joblib pickles. An
entry is written to a temporary folder and renamed into place, so readers
(other worker processes) see it whole or not at all. The store is bounded:
:meth:`Store.prune` removes the least recently used entries until it fits
in ``max_bytes``.

This module knows nothing about EEG; it stores named arrays.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import joblib
import numpy as np

#: Default size bound of a store (bytes).
DEFAULT_MAX_BYTES = 2 * 1024**3

#: The kinds of entry (one subfolder each).
KINDS = ("epochs", "head", "prefix")

#: Bump when the layout or the meaning of a key changes.
STORE_VERSION = 1

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2,
          "g": 1024**3, "gb": 1024**3, "t": 1024**4, "tb": 1024**4}


def parse_size(text) -> int:
    """``"500MB"``, ``"2G"``, ``"0"`` or a number of bytes -> bytes.

    Raises
    ------
    ValueError
        Naming the text and the accepted forms.
    """
    if isinstance(text, (int, np.integer)):
        if text < 0:
            raise ValueError(f"A size cannot be negative; got {text}.")
        return int(text)
    raw = str(text).strip().lower().replace(" ", "")
    num = raw.rstrip("bkmgt")
    unit = raw[len(num):]
    try:
        value = float(num)
    except ValueError:
        value = None
    if value is None or unit not in _UNITS or value < 0:
        raise ValueError(f"Cannot read the size {text!r}: use a number of bytes or e.g. "
                         "'500MB', '2GB'.")
    return int(value * _UNITS[unit])


def format_size(n: int) -> str:
    """Bytes as a short human text (``"1.5 MB"``)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


class Store:
    """Intermediate results on disk, content-addressed and size-bounded.

    Parameters
    ----------
    root : path-like
        Folder of the store (created when missing), e.g.
        ``<cache_dir>/store``.
    max_bytes : int
        Size bound applied by :meth:`prune` (default 2 GB).
    """

    def __init__(self, root, max_bytes=DEFAULT_MAX_BYTES):
        self.root = Path(root)
        self.max_bytes = int(max_bytes)

    @staticmethod
    def key(kind, description: str) -> str:
        """SHA-256 of ``kind`` and a canonical description (text, e.g. sorted JSON)."""
        if kind not in KINDS:
            raise ValueError(f"Unknown store kind {kind!r}; use one of {list(KINDS)}.")
        text = f"{STORE_VERSION}\n{kind}\n{description}"
        return hashlib.sha256(text.encode()).hexdigest()

    def _dir(self, kind, key) -> Path:
        return self.root / kind / key[:2] / key

    def get(self, kind, key):
        """The values of an entry (arrays memory-mapped read-only), or None.

        A hit marks the entry as just used (for :meth:`prune`). An unreadable
        entry (a disk error, a file removed by hand) counts as a miss.
        """
        folder = self._dir(kind, key)
        try:
            names = json.loads((folder / "meta.json").read_text())["values"]
            out = {}
            for name, how in names.items():
                if how == "npy":
                    out[name] = np.load(folder / f"{name}.npy", mmap_mode="r",
                                        allow_pickle=False)
                else:
                    out[name] = joblib.load(folder / f"{name}.pkl")
        except (OSError, ValueError, KeyError, EOFError):
            return None
        with contextlib.suppress(OSError):  # last use, for the LRU bound
            os.utime(folder)
        return out

    def put(self, kind, key, values: dict, description=None):
        """Store ``values`` (name -> array or picklable object) under ``key``.

        Numeric arrays become ``.npy`` files (read back memory-mapped), the
        rest joblib pickles. The entry appears atomically; when another
        process stored the same key meanwhile, that copy is kept (same key,
        same numbers).

        Returns
        -------
        values : dict
            The stored values as :meth:`get` returns them (arrays
            memory-mapped), or ``values`` itself if the disk refused the write.
        """
        final = self._dir(kind, key)
        if final.exists():
            hit = self.get(kind, key)
            if hit is not None:
                return hit
        # Folders and files are created with the umask's modes, like every
        # file of a workspace (no mkdtemp: it would make the entry 0o700).
        tmp = self.root / ".tmp" / f"{key[:16]}-{uuid.uuid4().hex}"
        try:
            tmp.mkdir(parents=True)
            kinds = {}
            for name, value in values.items():
                if isinstance(value, np.ndarray) and value.dtype.kind in "biufcU":
                    np.save(tmp / f"{name}.npy", np.ascontiguousarray(value),
                            allow_pickle=False)
                    kinds[name] = "npy"
                else:
                    joblib.dump(value, tmp / f"{name}.pkl")
                    kinds[name] = "pkl"
            meta = {"kind": kind, "key": key, "values": kinds, "created": time.time(),
                    "description": description}
            (tmp / "meta.json").write_text(json.dumps(meta, default=repr))
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:  # stored by another process meanwhile: keep theirs
                pass
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return values
        shutil.rmtree(tmp, ignore_errors=True)
        hit = self.get(kind, key)
        return values if hit is None else hit

    def entries(self):
        """Every entry: dicts with ``kind``, ``key``, ``bytes``, ``last_used`` (epoch s).

        Sorted from most to least recently used.
        """
        out = []
        for kind in KINDS:
            base = self.root / kind
            if not base.is_dir():
                continue
            for folder in base.glob("*/*"):
                try:
                    size = sum(f.stat().st_size for f in folder.iterdir())
                    used = folder.stat().st_mtime
                except OSError:
                    continue
                out.append({"kind": kind, "key": folder.name, "bytes": size,
                            "last_used": used, "path": folder})
        out.sort(key=lambda e: e["last_used"], reverse=True)
        return out

    def size(self) -> int:
        """Bytes held by all entries."""
        return sum(e["bytes"] for e in self.entries())

    def prune(self, max_bytes=None):
        """Remove least recently used entries until the store holds at most ``max_bytes``.

        Parameters
        ----------
        max_bytes : int | None
            The bound; ``self.max_bytes`` when None, ``0`` empties the store.

        Returns
        -------
        removed : list of dict
            The removed entries (as :meth:`entries` lists them).
        """
        bound = self.max_bytes if max_bytes is None else int(max_bytes)
        entries = self.entries()
        total = sum(e["bytes"] for e in entries)
        removed = []
        for entry in reversed(entries):  # least recently used first
            if total <= bound:
                break
            shutil.rmtree(entry["path"], ignore_errors=True)
            total -= entry["bytes"]
            removed.append(entry)
        if bound == 0:
            shutil.rmtree(self.root / ".tmp", ignore_errors=True)
        return removed

    def clear(self):
        """Remove every entry; returns how many were removed."""
        return len(self.prune(0))
