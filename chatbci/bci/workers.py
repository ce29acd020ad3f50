"""Benchmark worker processes, started before the engine is imported.

A worker process imports MNE, MOABB, pyRiemann and scikit-learn before its
first fit: about 3 s of CPU, during which a cold benchmark computes nothing.
Started the usual way, the workers begin after the calling process has
imported the same libraries, so a cold ``chatbci bench`` paid for the imports
twice in a row. :func:`prestart` starts the workers first and has them import
the engine while the caller does the same (``chatbci bench`` calls it before
importing the engine). The benchmark then adopts those workers
(:func:`take_prestarted`).

The workers are loky processes like joblib's: they never re-import the
caller's ``__main__``, so scripts need no ``if __name__ == "__main__"`` guard.

This module imports only the standard library and joblib.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

#: Idle worker processes exit after this many seconds (as joblib's do).
IDLE_TIMEOUT_S = 300

_LOCK = threading.Lock()
_PRESTARTED = None


def _init_worker(benchmark_pid):
    """Set up a pool worker: Ctrl-C is not its to handle, and it dies with its parent.

    A terminal's Ctrl-C sends SIGINT to the whole foreground process group,
    the workers included. The benchmark process handles it (it stops the run,
    keeps what finished and kills the workers); a worker interrupted by it
    would die first, in the middle of a task, and the run would look like a
    crash instead of a stop. So workers ignore SIGINT.

    A benchmark process killed outright (SIGKILL, a crashed kernel) cannot
    kill its workers; without the watch they would finish their fits for nobody.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != benchmark_pid:
                os._exit(1)

    threading.Thread(target=watch, name="chatbci-parent-watch", daemon=True).start()


def new_pool(n_workers):
    """A loky process pool for benchmark units, whose workers die with this process
    and leave Ctrl-C to it."""
    from joblib.externals.loky import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=n_workers, timeout=IDLE_TIMEOUT_S,
                               initializer=_init_worker, initargs=(os.getpid(),))


def kill(pool):
    """End every worker of ``pool`` now (SIGKILL); return once they are gone.

    The worker processes (and any children they started) are killed first;
    the pool's manager thread then sees them gone, fails the pending
    futures and exits cleanly, which ``shutdown`` waits for (milliseconds).
    Asking loky's ``shutdown(kill_workers=True)`` instead races with that
    thread queueing the next task and crashes it.
    """
    from joblib.externals.loky.backend.utils import kill_process_tree

    for proc in list(getattr(pool, "_processes", {}).values()):
        with contextlib.suppress(Exception):  # already gone
            kill_process_tree(proc)
    with contextlib.suppress(Exception):
        pool.shutdown(wait=True)


def _import_engine(_):
    import chatbci.bci.benchmark  # noqa: F401  (the work of a warm-up task)

    return os.getpid()


def prestart(n_workers):
    """Start ``n_workers`` worker processes now; they import the engine meanwhile.

    Returns at once. The next benchmark with as many workers adopts them
    (:func:`take_prestarted`); unused, they exit after
    :data:`IDLE_TIMEOUT_S` or with this process.

    Parameters
    ----------
    n_workers : int
        Worker processes (a benchmark's ``n_jobs``; ``-1`` for all cores).
        Below 2 nothing is started: such a benchmark runs in this process.

    Returns
    -------
    started : bool
        Whether workers were started.
    """
    global _PRESTARTED
    if n_workers is not None and n_workers < 0:
        n_workers = os.cpu_count() or 1
    if not n_workers or n_workers < 2:
        return False
    with _LOCK:
        if _PRESTARTED is not None:
            return True
        pool = new_pool(n_workers)
        # One warm-up task per worker: each takes seconds (the imports), so
        # the tasks spread over the workers.
        for _ in range(n_workers):
            pool.submit(_import_engine, None)
        _PRESTARTED = pool
    return True


def prestarted():
    """Whether prestarted workers wait to be adopted."""
    return _PRESTARTED is not None


def take_prestarted(sizes):
    """The prestarted pool if its number of workers is in ``sizes`` (it is handed over).

    A pool of another size is ended and None returned.
    """
    global _PRESTARTED
    with _LOCK:
        pool, _PRESTARTED = _PRESTARTED, None
    if pool is None:
        return None
    if pool._max_workers not in sizes:
        kill(pool)  # they hold nothing but their imports
        return None
    return pool


def discard_prestarted():
    """End prestarted workers nobody adopted (at once); whether there were any."""
    global _PRESTARTED
    with _LOCK:
        pool, _PRESTARTED = _PRESTARTED, None
    if pool is None:
        return False
    kill(pool)  # they hold nothing but their imports: no need to let those finish
    return True
