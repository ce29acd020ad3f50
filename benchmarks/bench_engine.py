"""Plain MOABB against chatbci on the same within-session benchmark.

Runs, each in a fresh Python process so that imports, worker start-up and
memory are counted the same way for everyone:

1. plain MOABB: ``WithinSessionEvaluation(...).process(pipelines)`` at the
   given ``n_jobs`` values (its best is taken as the reference);
2. chatbci cold: ``chatbci bench`` (its own code path: the request index,
   worker processes started before the engine import) with an empty cache
   directory;
3. chatbci warm: the same call again (served from the cache);
4. the lower bound of the job: the work no engine can avoid, timed alone in
   one process (one load per subject, each stateless head once per subject,
   each distinct fitted step once per fold, the scoring), divided by the
   cores used,

and prints wall time (from before each process's first import of MNE or
MOABB: both sides pay their imports), peak memory (RSS summed over the
process tree, sampled every 50 ms), the ratios against plain MOABB at its best ``n_jobs``, and the
largest absolute score difference.

Default job (issue #2): PhysionetMI subjects 1-23, left vs right hand imagery,
CSP+LDA, TS+LR, TS+SVM (linear SVC, C=1, no grid), MDM, random_state=42.
Needs the EEGMMIDB files under ``MNE_DATA``.

    python benchmarks/bench_engine.py [--subjects 1-23] [--moabb-n-jobs 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
os.environ.setdefault("MOABB_DOWNLOAD_PROVIDER", "upstream")
_shared = HERE.parents[2] / "shared" / "data" / "mne_data"
if "MNE_DATA" not in os.environ and _shared.is_dir():
    os.environ["MNE_DATA"] = str(_shared)


class PeakMemory:
    """Peak RSS of this process and all its descendants, sampled."""

    def __init__(self, interval=0.05):
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        total = 0
        procs = [self._proc]
        try:
            procs += self._proc.children(recursive=True)
        except Exception:  # noqa: BLE001 - a child may vanish while we look
            pass
        for p in procs:
            try:
                total += p.memory_info().rss
            except Exception:  # noqa: BLE001
                pass
        self.peak = max(self.peak, total)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def _dataset(subjects):
    from chatbci.bci.datasets import get_dataset

    ds = get_dataset("PhysionetMI")
    ds.subject_list = subjects
    return ds


def run_variant(variant, subjects, n_jobs, cache_dir, out_csv):
    """Run one variant in this process; return timing and memory.

    Timed from before the first import of MNE, MOABB or chatbci's engine:
    both sides pay their imports, as a researcher's fresh process does.
    chatbci runs as ``chatbci bench`` (the CLI's own code path: the request
    index first, then worker processes started before the engine import).
    """
    import contextlib
    import io
    import warnings

    warnings.filterwarnings("ignore")
    names = ["CSP+LDA", "TS+LR", "TS+SVM", "MDM"]
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        if variant == "moabb":
            import mne
            from moabb.evaluations import WithinSessionEvaluation
            from moabb.paradigms import LeftRightImagery

            from chatbci.bci.benchmark import parse_subjects
            from chatbci.bci.pipelines import get_pipeline

            mne.set_log_level("ERROR")
            ds = _dataset(parse_subjects(subjects))
            ds.feet_runs = []  # the hand runs only, as chatbci loads them
            pipelines = {n: get_pipeline(n).build() for n in names}
            evaluation = WithinSessionEvaluation(
                paradigm=LeftRightImagery(), datasets=[ds], random_state=42,
                n_jobs=n_jobs, overwrite=True, hdf5_path=cache_dir,
            )
            evaluation.process(pipelines).to_csv(out_csv, index=False)
        else:
            from chatbci.cli import main as chatbci_cli

            with contextlib.redirect_stdout(io.StringIO()):
                status = chatbci_cli([
                    "bench", "--dataset", "PhysionetMI", "--subjects", subjects,
                    "--pipelines", ",".join(names), "--evaluation", "within-session",
                    "--random-state", "42", "--cache-dir", str(cache_dir),
                    "--n-jobs", str(n_jobs), "--output", str(out_csv), "--quiet",
                ])
            if status != 0:
                raise SystemExit(f"chatbci bench exited with {status}")
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mb": mem.peak / 2**20}


def lower_bound(subjects, n_cores):
    """Seconds of the unavoidable work of the job, run serially here, / ``n_cores``.

    Uses the engine's own pieces without its machinery (no pool, no cache,
    no store): per subject one load, the stateless heads once, and per fold
    each distinct fitted step once (shared prefixes fitted once), then the
    scores.
    """
    import warnings

    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    import mne
    from threadpoolctl import threadpool_limits

    from chatbci.bci import benchmark as bm

    import_s = time.perf_counter() - t0
    mne.set_log_level("ERROR")
    from chatbci.bci.datasets import get_dataset, load_epochs_array

    entries = bm.resolve_pipelines(["CSP+LDA", "TS+LR", "TS+SVM", "MDM"])
    ds, par = get_dataset("PhysionetMI"), bm.make_paradigm("left_right")
    total = 0.0
    with threadpool_limits(1):
        for subject in bm.parse_subjects(subjects):
            t0 = time.perf_counter()
            X, y, metadata = load_epochs_array(ds, par, subject)
            metadata = metadata.reset_index(drop=True)
            folds = list(bm._splitter("within-session", 42).split(y, metadata))
            bm._score_folds(bm._plan(X, y, entries), y, metadata, list(enumerate(folds)),
                            par.scoring, 42, score_per_session=False)
            total += time.perf_counter() - t0
    return total / n_cores, import_s


def _spawn(variant, subjects, n_jobs, cache_dir, env_extra=None):
    out_csv = Path(cache_dir) / f"{variant}-{n_jobs}-{time.time_ns()}.csv"
    env = dict(os.environ, **(env_extra or {}))
    cmd = [sys.executable, str(HERE), "--_variant", variant, "--subjects", subjects,
           "--_n-jobs", str(n_jobs), "--_cache", str(cache_dir), "--_out", str(out_csv)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"variant {variant} failed")
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    stats["csv"] = out_csv if variant != "bound" else None
    return stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", default="1-23")
    parser.add_argument("--moabb-n-jobs", default="2",
                        help="comma-separated n_jobs values for plain MOABB; its best is "
                             "the reference (default: 2, its best on 2 cores)")
    parser.add_argument("--n-jobs", type=int, default=2, help="chatbci n_jobs")
    parser.add_argument("--_variant", help=argparse.SUPPRESS)
    parser.add_argument("--_n-jobs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_cache", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._variant == "bound":
        seconds, import_s = lower_bound(args.subjects, args._n_jobs)
        print(json.dumps({"seconds": seconds, "import_s": import_s, "peak_mb": float("nan")}))
        return
    if args._variant:
        print(json.dumps(run_variant(args._variant, args.subjects, args._n_jobs,
                                     args._cache, args._out)))
        return

    import pandas as pd

    rows = []
    with tempfile.TemporaryDirectory(prefix="chatbci-bench-") as tmp:
        moabb_runs = []
        for nj in [int(v) for v in args.moabb_n_jobs.split(",")]:
            mdir = Path(tmp) / f"moabb-{nj}"
            mdir.mkdir()
            st = _spawn("moabb", args.subjects, nj, mdir)
            moabb_runs.append((nj, st))
            rows.append((f"plain MOABB, n_jobs={nj}", st))
        best_nj, best = min(moabb_runs, key=lambda r: r[1]["seconds"])
        cdir = Path(tmp) / "chatbci"
        cdir.mkdir()
        cold = _spawn("chatbci", args.subjects, args.n_jobs, cdir)
        rows.append((f"chatbci cold, n_jobs={args.n_jobs}", cold))
        warm = _spawn("chatbci", args.subjects, args.n_jobs, cdir)
        rows.append((f"chatbci warm (cache), n_jobs={args.n_jobs}", warm))
        bdir = Path(tmp) / "bound"
        bdir.mkdir()
        bound = _spawn("bound", args.subjects, args.n_jobs, bdir)

        ref = pd.read_csv(best["csv"])
        keys = ["subject", "session", "pipeline"]

        def max_diff(stats):
            if stats["csv"] is None:
                return float("nan")
            df = pd.read_csv(stats["csv"])
            merged = ref.merge(df, on=keys, suffixes=("_moabb", "_chatbci"))
            if len(merged) != len(ref):
                return float("nan")
            return float((merged["score_moabb"] - merged["score_chatbci"]).abs().max())

        n_subjects = ref["subject"].nunique()
        print(f"\nWithin-session, PhysionetMI left/right imagery, {n_subjects} subjects, "
              f"{ref['pipeline'].nunique()} pipelines ({', '.join(sorted(ref['pipeline'].unique()))}), "
              f"random_state=42, {os.cpu_count()} cores\n")
        head = f"{'run':<36}{'wall s':>9}{'peak MB':>10}{'speed-up':>10}{'max |dscore|':>15}"
        print(head)
        print("-" * len(head))
        for label, st in rows:
            ratio = best["seconds"] / st["seconds"]
            diff = max_diff(st)
            print(f"{label:<36}{st['seconds']:>9.1f}{st['peak_mb']:>10.0f}{ratio:>9.2f}x"
                  f"{diff:>15.2e}")
        n_cores = min(args.n_jobs, os.cpu_count() or 1)
        print(f"{'lower bound (work alone / ' + str(n_cores) + ' cores)':<36}"
              f"{bound['seconds']:>9.1f}{'':>10}{best['seconds'] / bound['seconds']:>9.2f}x")
        floor = bound["seconds"] + bound["import_s"]
        print(f"{'lower bound + one engine import':<36}"
              f"{floor:>9.1f}{'':>10}{best['seconds'] / floor:>9.2f}x")
        print(f"\nchatbci cold / lower bound = {cold['seconds'] / bound['seconds']:.2f} "
              f"(target <= 1.15); / (lower bound + one import of "
              f"{bound['import_s']:.1f} s) = {cold['seconds'] / floor:.2f}; "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"\nspeed-up = plain MOABB at its best n_jobs ({best_nj}) / run; "
              "max |dscore| against that MOABB run (MOABB keeps float32 scores).")


if __name__ == "__main__":
    main()
