"""No fixed overhead for small jobs; one warm worker pool across a session's benchmarks."""

import numpy as np

from chatbci.bci import benchmark as bm
from chatbci.bci.benchmark import run_benchmark, shutdown_workers
from chatbci.bci.datasets import SimulatedMI


def _ds():
    return SimulatedMI(n_subjects=3, n_sessions=1)


def _worker_pids():
    pool = bm._POOL
    return set() if pool is None else {p.pid for p in getattr(pool, "_processes", {}).values()}


def test_small_job_runs_in_process_without_starting_workers():
    shutdown_workers()
    one = run_benchmark("CSP+LDA,TS+LR", _ds(), [1], n_jobs=2, progress=False)
    assert _worker_pids() == set()  # one quick unit: no process started
    ref = run_benchmark("CSP+LDA,TS+LR", _ds(), [1], n_jobs=1, progress=False)
    np.testing.assert_array_equal(one["score"], ref["score"])


def test_worker_pool_stays_warm_between_benchmarks_and_ends_on_request(tmp_path):
    shutdown_workers()
    run_benchmark("CSP+LDA", _ds(), [1, 2], n_jobs=2, progress=False)
    first = _worker_pids()
    assert len(first) == 2
    # The next question (another pipeline) reuses the same processes...
    run_benchmark("MDM", _ds(), [1, 2], n_jobs=2, progress=False)
    assert _worker_pids() == first
    # ...and, with a warm pool waiting, even a one-subject job goes to it.
    run_benchmark("TS+LR", _ds(), [3], n_jobs=2, progress=False)
    assert _worker_pids() == first
    assert shutdown_workers() is True
    assert bm._POOL is None and shutdown_workers() is False


def test_session_close_ends_the_warm_pool(tmp_path):
    from chatbci.assistant.session import Session
    from chatbci.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws", title="t", goal="g")
    session = Session(ws, n_jobs=2)
    run_benchmark("CSP+LDA", _ds(), [1, 2], n_jobs=2, progress=False)
    assert _worker_pids()
    session.close()
    assert bm._POOL is None
    ws.close()


def test_prestarted_workers_are_adopted_by_the_next_benchmark():
    from chatbci.bci import workers

    shutdown_workers()
    assert workers.prestart(1) is False  # one job runs here: nothing to start
    assert workers.prestart(2) is True and workers.prestarted()
    pool = workers._PRESTARTED
    two = run_benchmark("CSP+LDA", _ds(), [1, 2], n_jobs=2, progress=False)
    assert bm._POOL is pool and not workers.prestarted()  # adopted, not a new pool
    ref = run_benchmark("CSP+LDA", _ds(), [1, 2], n_jobs=1, progress=False)
    np.testing.assert_array_equal(two["score"], ref["score"])
    assert shutdown_workers() is True


def test_unadopted_prestarted_workers_end_with_shutdown_workers():
    from chatbci.bci import workers

    shutdown_workers()
    assert workers.prestart(2)
    assert shutdown_workers() is True
    assert not workers.prestarted() and shutdown_workers() is False


def test_cli_prestarts_workers_only_for_several_subjects():
    from chatbci.cli import _several_subjects

    assert _several_subjects(None) and _several_subjects("1-3") and _several_subjects("1,2")
    assert not _several_subjects("1") and not _several_subjects("7")


def test_cli_ends_prestarted_workers_it_did_not_use(tmp_path, capsys):
    """`chatbci bench` called in a living process (a notebook, a test) leaves no idle workers."""
    import shutil

    from conftest import alive, worker_pids

    from chatbci.bci import workers
    from chatbci.cli import main

    args = ["bench", "--subjects", "1-2", "--pipelines", "CSP+LDA", "--n-jobs", "2",
            "--quiet", "--cache-dir", str(tmp_path)]
    shutdown_workers()
    assert main(args) == 0
    shutdown_workers()
    # The engine's result cache answers this time (the request index is gone),
    # so the workers started ahead of the import have nothing to do.
    shutil.rmtree(tmp_path / "requests")
    assert main(args) == 0
    assert not workers.prestarted()
    assert not alive(worker_pids())
