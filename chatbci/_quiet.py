"""Library chatter: log lines of MOABB and MNE that are not meant for the user.

MOABB and MNE log what helps their own developers ("Dataset names are too
similar, turning off name shortening", "Not setting metadata"...). Where
chatbci calls them for a user who reads chatbci's own words (the demo, the
terminal chat), :func:`library_chatter_silenced` keeps those lines off the
screen for the duration of the call only; chatbci's own messages, warnings
and errors are untouched.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

#: Loggers of the libraries whose chatter is not for chatbci's users.
CHATTY_LOGGERS = ("moabb", "mne")


@contextmanager
def library_chatter_silenced(level=logging.ERROR, loggers=CHATTY_LOGGERS):
    """Raise the level of ``loggers`` to ``level`` inside the block, then restore it.

    Parameters
    ----------
    level : int
        Records below it (by default warnings, infos, debug lines) are dropped;
        errors still show.
    loggers : sequence of str
        Logger names (their children follow them).

    Notes
    -----
    Logger levels are process-wide: other threads' records from these
    libraries are quiet too while the block runs. Nothing outlives it.
    """
    saved = []
    for name in loggers:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        if logger.getEffectiveLevel() < level:
            logger.setLevel(level)
    try:
        yield
    finally:
        for logger, previous in reversed(saved):
            logger.setLevel(previous)
