"""Peak memory against the number of subjects, chatbci against plain MOABB.

SimulatedMI (left vs right hand imagery, 2 sessions of 2 runs of 20 trials,
8 channels at 128 Hz), CSP+LDA and TS+LR, within-session,
``random_state=42``, ``n_jobs=2``, with 23 and with 109 subjects, each run
in a fresh process:

- plain MOABB ``WithinSessionEvaluation.process``;
- chatbci :func:`~chatbci.bci.benchmark.run_benchmark` (cache directory
  empty at the start, so the intermediate store is written too);
- chatbci through a dask ``LocalCluster`` (2 worker processes) with
  ``joblib.parallel_config(backend="dask")``, 109 subjects: its scores must
  equal the local run's.

Peak memory is the RSS summed over the process and all its descendants
(workers included), sampled every 50 ms with psutil.

    python benchmarks/bench_memory.py [--sizes 23,109]
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
from _timing import json_child  # noqa: E402 - the benchmarks' shared helpers


def run_variant(variant, n_subjects, folder, out_csv):
    import warnings

    warnings.filterwarnings("ignore")
    from bench_engine import PeakMemory

    from chatbci.bci.datasets import SimulatedMI

    ds = SimulatedMI(n_subjects=n_subjects)
    names = ["CSP+LDA", "TS+LR"]
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        if variant == "moabb":
            from moabb.evaluations import WithinSessionEvaluation
            from moabb.paradigms import LeftRightImagery

            from chatbci.bci.pipelines import get_pipeline

            df = WithinSessionEvaluation(
                paradigm=LeftRightImagery(), datasets=[ds], random_state=42, n_jobs=2,
                overwrite=True, hdf5_path=folder,
            ).process({n: get_pipeline(n).build() for n in names})
        elif variant == "dask":
            import distributed
            import joblib

            from chatbci.bci.benchmark import run_benchmark

            with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                          processes=True, dashboard_address=None) as cl, \
                    distributed.Client(cl), joblib.parallel_config(backend="dask"):
                df = run_benchmark(names, ds, n_jobs=2, cache_dir=folder, progress=False)
        else:
            from chatbci.bci.benchmark import run_benchmark

            df = run_benchmark(names, ds, n_jobs=2, cache_dir=folder, progress=False)
        seconds = time.perf_counter() - t0
    df.to_csv(out_csv, index=False)
    return {"seconds": seconds, "peak_mb": mem.peak / 2**20}


def _spawn(variant, n_subjects, tmp):
    folder = Path(tmp) / f"{variant}-{n_subjects}"
    folder.mkdir()
    out_csv = folder / "scores.csv"
    stats = json_child([sys.executable, str(HERE), "--_variant", variant, "--_n",
                        str(n_subjects), "--_dir", str(folder), "--_out", str(out_csv)], variant)
    stats["csv"] = out_csv
    return stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="23,109")
    parser.add_argument("--_variant", help=argparse.SUPPRESS)
    parser.add_argument("--_n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_dir", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._variant:
        print(json.dumps(run_variant(args._variant, args._n, args._dir, args._out)))
        return

    import pandas as pd

    sizes = [int(v) for v in args.sizes.split(",")]
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="chatbci-memory-") as tmp:
        for n in sizes:
            moabb = _spawn("moabb", n, tmp)
            ours = _spawn("chatbci", n, tmp)
            rows.append((n, "plain MOABB", moabb, moabb))
            rows.append((n, "chatbci", ours, moabb))
        dask = _spawn("dask", sizes[-1], tmp)
        rows.append((sizes[-1], "chatbci on dask LocalCluster", dask, rows[-1][2]))
        keys = ["subject", "session", "pipeline"]
        print(f"\nMemory: SimulatedMI, CSP+LDA and TS+LR, within-session, n_jobs=2, "
              f"{os.cpu_count()} cores; load average {load_before[0]:.1f} before, "
              f"{os.getloadavg()[0]:.1f} after\n")
        head = (f"{'subjects':>8}  {'run':<30}{'wall s':>8}{'peak MB':>9}"
                f"{'speed-up':>10}{'max |dscore| vs ref':>21}")
        print(head)
        print("-" * len(head))
        for n, label, st, ref in rows:
            a, b = pd.read_csv(ref["csv"]), pd.read_csv(st["csv"])
            merged = a.merge(b, on=keys)
            diff = ((merged["score_x"] - merged["score_y"]).abs().max()
                    if len(merged) == len(a) == len(b) else float("nan"))
            print(f"{n:>8}  {label:<30}{st['seconds']:>8.1f}{st['peak_mb']:>9.0f}"
                  f"{ref['seconds'] / st['seconds']:>9.1f}x{diff:>21.2e}")
        print("\nspeed-up against the reference of its row: plain MOABB for chatbci, the "
              "local chatbci run for the dask run (its scores must equal them).")


if __name__ == "__main__":
    main()
