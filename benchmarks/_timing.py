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


def json_child(cmd, what):
    """Run a benchmark's child process ``cmd``; return the JSON of its last stdout line.

    Each side of a comparison runs in a fresh process (its own imports, its own
    memory); a child that fails ends the benchmark, saying ``what`` failed.
    """
    import json
    import subprocess
    import sys

    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{what} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])
