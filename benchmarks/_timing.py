"""Shared by the benchmark scripts (run as ``python benchmarks/<script>.py``)."""

import time


def timed(fn, repeat=3):
    """Best wall time of ``repeat`` calls of ``fn`` and its last value."""
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value
