"""Deep decoders (ShallowConvNet, EEGNet_8_2) against TS+LR, chatbci against plain MOABB.

Runs each (tool, evaluation) job in a fresh Python process, so imports,
worker start-up and memory count the same way for both:

- plain MOABB: ``WithinSessionEvaluation`` / ``CrossSubjectEvaluation`` with
  the very estimators chatbci builds from the shipped YAML pipelines (seeded
  with the evaluation's random state, as chatbci seeds them);
- chatbci: :func:`chatbci.bci.benchmark.run_benchmark` on the same job.

and prints, per evaluation and pipeline, the mean score of each, the largest
absolute per-subject score difference, the wall time and peak memory (RSS
summed over the process tree) of each job.

The networks train with MOABB's braindecode settings (Adam, lr 1e-4, batch
64, early stopping with patience on a stratified 20 % inner validation
split) except the epoch budget: ``--max-epochs`` (default 100, patience a
third of it) instead of MOABB's 1000/300, which takes hours per subject on 2
CPU cores. Needs the deep extra and the EEGMMIDB files under ``MNE_DATA``.

    python benchmarks/bench_deep.py [--subjects 1-3] [--cross-subjects 1-6]
                                    [--max-epochs 100] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from _timing import json_child  # noqa: E402
from bench_engine import PeakMemory  # noqa: E402 - the benchmarks' one memory sampler

os.environ.setdefault("MOABB_DOWNLOAD_PROVIDER", "upstream")
_shared = HERE.parents[2] / "shared" / "data" / "mne_data"
if "MNE_DATA" not in os.environ and _shared.is_dir():
    os.environ["MNE_DATA"] = str(_shared)

PIPELINES = ("ShallowConvNet", "EEGNet_8_2", "TS+LR")


def _specs(max_epochs):
    from chatbci.bci.pipelines import PipelineSpec, get_pipeline

    specs = []
    for name in PIPELINES:
        spec = get_pipeline(name)
        if spec.steps[-1].from_ == "chatbci.bci.deep":
            data = spec.to_dict()
            data["pipeline"][-1]["parameters"].update(
                max_epochs=max_epochs, patience=max(1, max_epochs // 3))
            spec = PipelineSpec.model_validate(data)
        specs.append(spec)
    return specs


def run_job(tool, evaluation, subjects, max_epochs, n_jobs, cache_dir, out_csv):
    """Run one job in this process; return timing and memory."""
    import warnings

    warnings.filterwarnings("ignore")
    import mne

    mne.set_log_level("ERROR")
    from chatbci.bci.benchmark import parse_subjects

    subjects = parse_subjects(subjects)
    specs = _specs(max_epochs)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        if tool == "moabb":
            from moabb.evaluations import CrossSubjectEvaluation, WithinSessionEvaluation
            from moabb.paradigms import LeftRightImagery

            from chatbci.bci.datasets import get_dataset
            from chatbci.bci.deep import seed_deep_steps

            ds = get_dataset("PhysionetMI")
            ds.subject_list = subjects
            ds.feet_runs = []  # the hand runs only, as chatbci loads them
            cls = (WithinSessionEvaluation if evaluation == "within-session"
                   else CrossSubjectEvaluation)
            pipelines = {s.name: seed_deep_steps(s.build(), 42) for s in specs}
            results = cls(paradigm=LeftRightImagery(), datasets=[ds], random_state=42,
                          n_jobs=n_jobs, overwrite=True,
                          hdf5_path=cache_dir).process(pipelines)
        else:
            from chatbci.bci.benchmark import run_benchmark

            results = run_benchmark(specs, dataset="PhysionetMI", subjects=subjects,
                                    evaluation=evaluation, random_state=42,
                                    cache_dir=cache_dir, n_jobs=n_jobs, progress=False)
        seconds = time.perf_counter() - t0
    results.to_csv(out_csv, index=False)
    return {"seconds": seconds, "peak_mb": mem.peak / 2**20}


def _spawn(tool, evaluation, subjects, args, tmp):
    out_csv = Path(tmp) / f"{tool}-{evaluation}.csv"
    cache = Path(tmp) / f"{tool}-{evaluation}-cache"
    cache.mkdir()
    cmd = [sys.executable, str(HERE), "--_job", tool, "--_evaluation", evaluation,
           "--subjects", subjects, "--max-epochs", str(args.max_epochs),
           "--n-jobs", str(args.n_jobs), "--_cache", str(cache), "--_out", str(out_csv)]
    stats = json_child(cmd, f"{tool} {evaluation}")
    stats["csv"] = out_csv
    return stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", default="1-3", help="within-session subjects")
    parser.add_argument("--cross-subjects", default="1-6",
                        help="cross-subject (leave one subject out) subjects; '' to skip")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--_job", help=argparse.SUPPRESS)
    parser.add_argument("--_evaluation", help=argparse.SUPPRESS)
    parser.add_argument("--_cache", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._job:
        print(json.dumps(run_job(args._job, args._evaluation, args.subjects,
                                 args.max_epochs, args.n_jobs, args._cache, args._out)))
        return

    import pandas as pd

    jobs = [("within-session", args.subjects)]
    if args.cross_subjects:
        jobs.append(("cross-subject", args.cross_subjects))
    keys = ["subject", "session", "pipeline"]
    print(f"PhysionetMI left/right hand imagery, random_state=42, {os.cpu_count()} cores, "
          f"n_jobs={args.n_jobs}; networks: at most {args.max_epochs} epochs, patience "
          f"{max(1, args.max_epochs // 3)}\n")
    head = (f"{'evaluation':<16}{'pipeline':<16}{'MOABB':>8}{'chatbci':>9}"
            f"{'max |d|':>9}")
    with tempfile.TemporaryDirectory(prefix="chatbci-bench-deep-") as tmp:
        for evaluation, subjects in jobs:
            stats = {tool: _spawn(tool, evaluation, subjects, args, tmp)
                     for tool in ("moabb", "chatbci")}
            theirs = pd.read_csv(stats["moabb"]["csv"])
            ours = pd.read_csv(stats["chatbci"]["csv"])
            for df in (theirs, ours):
                df["subject"] = df["subject"].astype(str)
                df["session"] = df["session"].astype(str)
            merged = theirs.merge(ours, on=keys, suffixes=("_moabb", "_chatbci"))
            print(f"{evaluation}, subjects {subjects}: {len(merged)} of {len(theirs)} "
                  "scores matched by (subject, session, pipeline)")
            print(head)
            print("-" * len(head))
            for name, g in merged.groupby("pipeline", sort=False):
                d = (g["score_moabb"] - g["score_chatbci"]).abs().max()
                print(f"{evaluation:<16}{name:<16}{g['score_moabb'].mean():>8.3f}"
                      f"{g['score_chatbci'].mean():>9.3f}{d:>9.2g}")
            for tool in ("moabb", "chatbci"):
                print(f"  {tool:<8} wall {stats[tool]['seconds']:8.1f} s   peak "
                      f"{stats[tool]['peak_mb']:7.0f} MB")
            fit_s = ours.groupby("pipeline")["time"].mean()
            print("  chatbci mean seconds per fold: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in fit_s.items()) + "\n")


if __name__ == "__main__":
    main()
