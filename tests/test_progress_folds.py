"""Progress inside a subject: run_benchmark's on_fold reports each (pipeline, fold) fit,
in this process and from worker processes, without changing on_progress's steps."""

from __future__ import annotations

import pytest

from chatbci.bci.benchmark import run_benchmark
from chatbci.bci.datasets import SimulatedMI


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_on_fold_reports_every_fit_before_its_step(n_jobs):
    ds = SimulatedMI(n_subjects=2, n_sessions=1, n_runs=1, n_trials=12, seed=7)
    events = []
    run_benchmark("CSP+LDA,MDM", dataset=ds, progress=False, n_jobs=n_jobs,
                  on_progress=lambda done, total, text: events.append(
                      ("step", done, total, int(text.split()[1]))),
                  on_fold=lambda *fit: events.append(("fit", *fit)))
    steps = [e for e in events if e[0] == "step"]
    fits = [e[1:] for e in events if e[0] == "fit"]
    # on_progress is as before: one call per (subject, pipelines) unit.
    assert [e[1:3] for e in steps] == [(2, 4), (4, 4)]
    # Every pipeline on every one of the 5 folds of each subject, fold counted from 1.
    assert sorted(fits) == sorted((s, p, f, 5) for s in (1, 2) for p in ("CSP+LDA", "MDM")
                                  for f in range(1, 6))
    # A subject's fits arrive before the step that completes it (not all at the end).
    for step in steps:
        before = events[:events.index(step)]
        assert len([e for e in before if e[0] == "fit" and e[1] == step[3]]) == 10
