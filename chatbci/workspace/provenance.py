"""What a session ran on: Python, platform, package versions and seeds.

Recorded in every ``session_start`` event so that a study can be re-run on
the same software. Versions come from package metadata
(:mod:`importlib.metadata`): nothing heavy (MNE, MOABB...) is imported just
to ask its version, and a package that is not installed is recorded as
``None`` rather than failing the session.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from importlib import metadata

__all__ = ["PROVENANCE_PACKAGES", "collect_provenance", "package_versions"]

#: Distributions whose versions decide what a chatbci study computes.
PROVENANCE_PACKAGES = ("chatbci", "mne", "moabb", "pyriemann", "scikit-learn", "numpy",
                       "openai")


@functools.cache
def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def package_versions(names=PROVENANCE_PACKAGES):
    """Installed version of each distribution in ``names`` (``None`` if missing)."""
    return {name: _version(name) for name in names}


def collect_provenance(seeds=None):
    """The provenance record of a ``session_start`` event.

    Parameters
    ----------
    seeds : dict of str to int | None
        Random seeds in effect for the session (e.g. ``{"random_state": 42}``).

    Returns
    -------
    provenance : dict
        ``python`` (version), ``python_build`` (``sys.version``),
        ``implementation``, ``platform``, ``packages`` (name -> version or
        None), ``seeds`` and ``pid``.
    """
    return {
        "python": platform.python_version(),
        "python_build": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "seeds": dict(seeds or {}),
        "pid": os.getpid(),
    }
