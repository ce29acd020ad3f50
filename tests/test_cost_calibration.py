"""Timing a pipeline before it runs: a measured, cached calibration (issue 10, §5).

:func:`chatbci.bci.cost.estimate_cost` times pipelines by earlier results;
:func:`chatbci.bci.cost.calibrate_fold_seconds` times a pipeline that never ran
by a sample of its own fits on real data, so a 600-point grid on a fresh
workspace shows hours, not "unknown" or the seconds of a quick pipeline.
"""

from __future__ import annotations

import time

import pytest

from chatbci.bci.benchmark import run_benchmark
from chatbci.bci.cost import calibrate_fold_seconds, estimate_cost
from chatbci.bci.datasets import SimulatedMI
from chatbci.bci.pipelines import get_pipeline


def tiny():
    return SimulatedMI(n_subjects=4, n_sessions=1, n_runs=1, n_trials=12, seed=7)


def test_calibration_is_measured_once_and_kept(tmp_path):
    first = calibrate_fold_seconds("TS+SVM-grid", tiny(), cache_dir=tmp_path)
    assert first["from_cache"] is False and first["seconds"] > 0
    assert first["points"] == 6 and first["probed"] == 3  # distinct diagonal points
    assert "grid points" in first["basis"] and "subject 1" in first["basis"]
    t0 = time.perf_counter()
    again = calibrate_fold_seconds("TS+SVM-grid", tiny(), cache_dir=tmp_path)
    assert time.perf_counter() - t0 < 0.5
    assert again["from_cache"] is True and again["seconds"] == first["seconds"]
    assert [p.parent.name for p in tmp_path.rglob("*.json")] == ["calibration"]
    # Cross-subject trains on the other subjects: scaled to that size.
    cross = calibrate_fold_seconds("TS+SVM-grid", tiny(), cache_dir=tmp_path,
                                   evaluation="cross-subject", n_subjects=4)
    assert cross["seconds"] > 3 * first["seconds"] and "scaled" in cross["basis"]


def test_a_huge_grid_gets_a_timed_estimate_within_the_calibration_budget():
    t0 = time.perf_counter()
    cal = calibrate_fold_seconds("ACM+TS+SVM", tiny(), max_seconds=0.0)
    assert time.perf_counter() - t0 < 30
    assert cal["probed"] == 1 and cal["points"] == 600
    spec = get_pipeline("ACM+TS+SVM")
    est = estimate_cost([spec], evaluation="within-session", n_subjects=10,
                        measured={spec.name: cal["seconds"]})
    assert est.fits == 50 * 1801
    assert est.seconds == pytest.approx(50 * cal["seconds"])
    assert "calibration" in est.basis and "about" in est.text()


@pytest.mark.slow
def test_calibrated_estimate_is_close_to_the_real_run():
    """Estimate vs real wall time of a small grid search (measured: 0.9-1.2x)."""
    ds = tiny()
    spec = get_pipeline("TS+SVM-grid")
    cal = calibrate_fold_seconds(spec, ds)
    est = estimate_cost([spec], evaluation="within-session", n_subjects=2,
                        measured={spec.name: cal["seconds"]})
    t0 = time.perf_counter()
    run_benchmark([spec], dataset=ds, subjects=[2, 3], progress=False)
    wall = time.perf_counter() - t0
    assert wall / 4 < est.seconds < wall * 4, (est.seconds, wall)
