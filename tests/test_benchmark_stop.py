"""Stop means stop, and finished work is kept (issue 10, section 5).

A benchmark with a quick pipeline and a deliberately slow one (MOABB's
augmented-covariance grid, 600 points): once the quick results are in, a stop
must end the grid search mid-fit within seconds, keep (cache) every finished
(subject, pipeline) result, say so, and leave no worker process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import alive, worker_pids

from chatbci.bci.benchmark import BenchmarkStopped, pairs_text, run_benchmark
from chatbci.bci.datasets import SimulatedMI

QUICK = ["CSP+LDA", "MDM"]
SLOW = "ACM+TS+SVM"  # 600 grid points x 3 inner folds per outer fold: minutes
#: Generous bound on 2 busy cores; measured ~0.2 s.
STOP_WITHIN_S = 10.0


def tiny(n_subjects=3):
    return SimulatedMI(n_subjects=n_subjects, n_sessions=1, n_runs=1, n_trials=12, seed=7)


def gone(pids):
    return not alive(pids)


def stop_after_quick(n_quick_steps, delay_s, stop, seen):
    """on_progress that sets ``stop`` ``delay_s`` after the quick results are in."""

    def set_later():
        time.sleep(delay_s)
        seen["workers"] = worker_pids()  # busy in the grid search now
        seen["t_set"] = time.perf_counter()
        stop.set()

    def on_progress(done, total, text):
        if done >= n_quick_steps and "timer" not in seen:
            seen["timer"] = threading.Thread(target=set_later, daemon=True)
            seen["timer"].start()

    return on_progress


@pytest.mark.parametrize("n_jobs", [2, 1])
def test_stop_ends_grid_search_in_seconds_and_keeps_quick_results(tmp_path, n_jobs):
    ds = tiny()
    stop, seen = threading.Event(), {}
    with pytest.raises(BenchmarkStopped) as info:
        run_benchmark(QUICK + [SLOW], dataset=ds, cache_dir=tmp_path, n_jobs=n_jobs,
                      progress=False, stop=stop,
                      on_progress=stop_after_quick(3 * len(QUICK), 1.0, stop, seen))
    latency = time.perf_counter() - seen["t_set"]
    err = info.value
    assert latency < STOP_WITHIN_S, latency
    assert err.reason == "stop requested" and err.seconds < STOP_WITHIN_S
    # The grid search was running in workers, and they are all gone.
    assert seen["workers"], "the slow pipeline was not running when stop was set"
    assert gone(seen["workers"])
    assert not worker_pids()

    quick_pairs = [(s, p) for s in (1, 2, 3) for p in QUICK]
    assert sorted(err.kept) == sorted(quick_pairs)
    assert sorted(err.missing) == [(s, SLOW) for s in (1, 2, 3)]
    assert "Kept 6 of 9" in str(err) and "resumes" in str(err)
    assert f"Not computed: {SLOW}: subjects 1-3" in str(err)
    assert set(err.results["pipeline"]) == set(QUICK)

    # Each (subject, pipeline) was cached on its own: a re-run reuses them all.
    again = run_benchmark(QUICK, dataset=ds, cache_dir=tmp_path, progress=False)
    assert again.attrs["chatbci"]["n_cached"] == 6
    assert again.attrs["chatbci"]["n_computed"] == 0
    assert again["score"].tolist() == err.results["score"].tolist()


def test_stop_between_fits_in_process(tmp_path):
    """n_jobs=1 quick pipelines run here; stop is seen before the next fit."""
    ds = tiny(n_subjects=6)
    stop = threading.Event()
    calls = []

    def on_progress(done, total, text):
        calls.append(done)
        stop.set()  # as the Stop button would, from the UI

    t0 = time.perf_counter()
    with pytest.raises(BenchmarkStopped) as info:
        run_benchmark(QUICK, dataset=ds, cache_dir=tmp_path, progress=False, stop=stop,
                      on_progress=on_progress)
    assert time.perf_counter() - t0 < 30
    assert calls == [2] and len(info.value.kept) == 2 and len(info.value.missing) == 10


def test_stop_before_start_computes_nothing(tmp_path):
    stop = threading.Event()
    stop.set()
    with pytest.raises(BenchmarkStopped) as info:
        run_benchmark(QUICK, dataset=tiny(), cache_dir=tmp_path, progress=False, stop=stop)
    assert info.value.kept == [] and len(info.value.missing) == 6
    assert not list(tmp_path.glob("*/*/subject-*.json"))


def test_pairs_text():
    assert pairs_text([(1, "A"), (2, "A"), (3, "A"), (5, "A"), (3, "B")]) == \
        "A: subjects 1-3,5; B: subject 3"
    assert pairs_text([]) == ""


@pytest.mark.slow
def test_keyboard_interrupt_stops_cleanly_and_keeps_results(tmp_path):
    """Ctrl-C / Kernel->Interrupt (SIGINT) mid grid search: same as Stop."""
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import json, sys, time
        import psutil
        from chatbci.bci.benchmark import BenchmarkStopped, run_benchmark
        from chatbci.bci.datasets import SimulatedMI

        ds = SimulatedMI(n_subjects=2, n_sessions=1, n_runs=1, n_trials=12, seed=7)
        seen = {{}}

        def on_progress(done, total, text):
            if done >= 4 and "quick" not in seen:
                seen["quick"] = True
                print("QUICK DONE", flush=True)

        try:
            run_benchmark({QUICK + [SLOW]!r}, dataset=ds, cache_dir={str(cache)!r},
                          n_jobs=2, progress=False, on_progress=on_progress)
        except BenchmarkStopped as err:
            print(json.dumps({{"reason": err.reason, "kept": err.kept,
                              "t": time.perf_counter()}}), flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            text=True, env=os.environ.copy())
    try:
        assert proc.stdout.readline().strip() == "QUICK DONE"
        time.sleep(1.0)  # the grid search is now mid-fit
        workers = worker_pids(proc.pid)
        assert workers
        t_sent = time.perf_counter()
        os.kill(proc.pid, signal.SIGINT)
        out = json.loads(proc.stdout.readline())
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.perf_counter() - t_sent < STOP_WITHIN_S + 5  # includes exiting
    assert out["reason"] == "interrupted"
    assert sorted(map(tuple, out["kept"])) == [(s, p) for s in (1, 2) for p in QUICK]
    assert gone(workers)
    resumed = run_benchmark(QUICK, dataset=tiny(2), cache_dir=cache, progress=False)
    assert resumed.attrs["chatbci"]["n_cached"] == 4


def test_run_benchmark_tool_says_stopped_by_the_human_and_what_was_kept(tmp_path):
    from chatbci.assistant.tools import TOOLS, StopRequested, ToolContext
    from chatbci.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws", title="t", goal="g")
    stop, seen = threading.Event(), {}
    ctx = ToolContext(ws, stop=stop, n_jobs=1,
                      progress=stop_after_quick(2 * len(QUICK), 0.5, stop, seen))
    with pytest.raises(StopRequested) as info:
        TOOLS["run_benchmark"].run(ctx, {"pipelines": QUICK + [SLOW], "subjects": "1-2"})
    msg = str(info.value)
    assert "stopped by the human" in msg
    assert "Kept (cached, a re-run resumes): CSP+LDA: subjects 1-2; MDM: subjects 1-2" in msg
    assert f"Not computed: {SLOW}: subjects 1-2" in msg
    assert time.perf_counter() - seen["t_set"] < STOP_WITHIN_S


def test_ctrl_c_reaching_the_workers_is_left_to_the_benchmark(tmp_path):
    """A terminal's Ctrl-C signals the whole process group, workers included.

    The workers must not die of it (the run would be reported as a crash,
    "a worker process died ... out of memory"): the benchmark process handles
    the stop and keeps what finished.
    """
    ds = tiny(n_subjects=2)
    stop, seen = threading.Event(), {}

    def ctrl_c_then_stop():
        time.sleep(1.0)  # the grid search is running in the workers
        seen["workers"] = worker_pids()
        for pid in seen["workers"]:
            os.kill(pid, signal.SIGINT)
        time.sleep(1.0)  # the chat sets its stop a moment later
        seen["alive"] = alive(seen["workers"])
        stop.set()

    def on_progress(done, total, text):
        if done >= 2 * len(QUICK) and "timer" not in seen:
            seen["timer"] = threading.Thread(target=ctrl_c_then_stop, daemon=True)
            seen["timer"].start()

    with pytest.raises(BenchmarkStopped) as info:
        run_benchmark(QUICK + [SLOW], dataset=ds, cache_dir=tmp_path, n_jobs=2,
                      progress=False, stop=stop, on_progress=on_progress)
    assert seen["workers"] and seen["alive"] == seen["workers"]
    assert info.value.reason == "stop requested"
    assert sorted(info.value.kept) == [(s, p) for s in (1, 2) for p in QUICK]
    assert gone(seen["workers"])


class _StopReadLate:
    """A stop whose flag is read only after the stop's signal has killed the workers.

    Its first ``is_set()`` once the grid search runs kills every worker
    (SIGKILL) and waits until the pool knows, then answers False; from then on
    it answers True -- the order in which a Ctrl-C that reached the workers
    first is seen.
    """

    def __init__(self):
        self.armed = False
        self.fired = False

    def is_set(self):
        if self.fired:
            return True
        if self.armed:
            from chatbci.bci import benchmark

            pool = benchmark._POOL
            pids = worker_pids()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while not pool._flags.broken and time.monotonic() < deadline:
                time.sleep(0.05)
            self.fired = True
        return False


def test_workers_that_died_of_the_stop_are_reported_as_a_stop(tmp_path):
    stop = _StopReadLate()

    def on_progress(done, total, text):
        if done >= 2 * len(QUICK):
            time.sleep(0.5)  # the grid search is running in the workers
            stop.armed = True

    with pytest.raises(BenchmarkStopped) as info:
        run_benchmark(QUICK + [SLOW], dataset=tiny(n_subjects=2), cache_dir=tmp_path,
                      n_jobs=2, progress=False, stop=stop, on_progress=on_progress)
    assert stop.fired
    assert info.value.reason == "stop requested"
    assert sorted(info.value.kept) == [(s, p) for s in (1, 2) for p in QUICK]
    assert "worker process died" not in str(info.value)
