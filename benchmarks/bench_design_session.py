"""A design session: pipelines added one at a time, chatbci against plain MOABB.

The assistant proposes pipelines one after another and each answer waits on
a benchmark of the new pipeline on the same subjects. This script makes
those calls in order, on PhysionetMI left vs right hand imagery,
within-session, ``random_state=42``:

    CSP+LDA, TS+LR, TS+SVM, MDM, FgMDM, TS+LDA, CSP+SVM, TS+LR (C=0.1)

- plain MOABB: one ``WithinSessionEvaluation(...).process({name: pipeline})``
  per added pipeline (``n_jobs`` as given), in one process (its imports are
  paid once, to MOABB's advantage);
- chatbci: one :func:`~chatbci.bci.benchmark.run_benchmark` call per added
  pipeline, in one process (as a Session makes them), with a cache directory
  that starts empty: each call finds the epochs, covariances and tangent
  spaces that earlier calls stored.

Prints a table with each call's wall time, the ratio, and the largest score
difference, and the machine load. Needs the EEGMMIDB files under ``MNE_DATA``.

    python benchmarks/bench_design_session.py [--subjects 1-23] [--n-jobs 2]
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

os.environ.setdefault("MOABB_DOWNLOAD_PROVIDER", "upstream")
_shared = HERE.parents[2] / "shared" / "data" / "mne_data"
if "MNE_DATA" not in os.environ and _shared.is_dir():
    os.environ["MNE_DATA"] = str(_shared)

ORDER = ["CSP+LDA", "TS+LR", "TS+SVM", "MDM", "FgMDM", "TS+LDA", "CSP+SVM", "TS+LR C=0.1"]


def session_pipelines():
    """The eight pipelines, built from the canonical ones (same steps, same parameters)."""
    from sklearn.base import clone
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.pipeline import Pipeline
    from sklearn.svm import SVC

    from chatbci.bci.pipelines import get_pipeline

    out = {n: get_pipeline(n).build() for n in ORDER[:5]}

    def with_final(pipe, final):
        steps = [(n, clone(e)) for n, e in pipe.steps[:-1]]
        return Pipeline(steps + [(type(final).__name__.lower(), final)])

    out["TS+LDA"] = with_final(out["TS+LR"], LinearDiscriminantAnalysis())
    out["CSP+SVM"] = with_final(out["CSP+LDA"], SVC(kernel="linear"))
    low_c = clone(out["TS+LR"])
    low_c.steps[-1][1].set_params(C=0.1)
    out["TS+LR C=0.1"] = low_c
    return out


def run_variant(variant, subjects, n_jobs, cache_dir, out_csv):
    import warnings

    warnings.filterwarnings("ignore")
    import mne
    import pandas as pd

    mne.set_log_level("ERROR")
    from chatbci.bci.benchmark import parse_subjects, run_benchmark
    from chatbci.bci.datasets import get_dataset

    subjects = parse_subjects(subjects)
    pipes = session_pipelines()
    times, frames = {}, []
    for name in ORDER:
        t0 = time.perf_counter()
        if variant == "moabb":
            from moabb.evaluations import WithinSessionEvaluation
            from moabb.paradigms import LeftRightImagery

            ds = get_dataset("PhysionetMI")
            ds.subject_list = subjects
            ds.feet_runs = []  # the hand runs only, as chatbci loads them
            evaluation = WithinSessionEvaluation(
                paradigm=LeftRightImagery(), datasets=[ds], random_state=42,
                n_jobs=n_jobs, overwrite=True, hdf5_path=cache_dir)
            df = evaluation.process({name: pipes[name]})
        else:
            df = run_benchmark({name: pipes[name]}, dataset="PhysionetMI",
                               subjects=subjects, random_state=42, cache_dir=cache_dir,
                               n_jobs=n_jobs, progress=False)
        times[name] = time.perf_counter() - t0
        frames.append(df[["subject", "session", "pipeline", "score"]])
    pd.concat(frames).to_csv(out_csv, index=False)
    return times


def _spawn(variant, subjects, n_jobs, folder):
    out_csv = Path(folder) / f"{variant}.csv"
    cmd = [sys.executable, str(HERE), "--_variant", variant, "--subjects", subjects,
           "--n-jobs", str(n_jobs), "--_cache", str(folder), "--_out", str(out_csv)]
    t0 = time.perf_counter()
    stats = json_child(cmd, f"variant {variant}")
    return stats, out_csv, time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", default="1-23")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--_variant", help=argparse.SUPPRESS)
    parser.add_argument("--_cache", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._variant:
        print(json.dumps(run_variant(args._variant, args.subjects, args.n_jobs,
                                     args._cache, args._out)))
        return

    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="chatbci-design-") as tmp:
        load_before = os.getloadavg()
        results = {}
        for variant in ("moabb", "chatbci"):
            folder = Path(tmp) / variant
            folder.mkdir()
            results[variant] = _spawn(variant, args.subjects, args.n_jobs, folder)
        load_after = os.getloadavg()
        ref = pd.read_csv(results["moabb"][1])
        ours = pd.read_csv(results["chatbci"][1])
    keys = ["subject", "session", "pipeline"]
    merged = ref.merge(ours, on=keys, suffixes=("_moabb", "_chatbci"))
    assert len(merged) == len(ref) == len(ours), "the two runs scored different results"
    diff = (merged["score_moabb"] - merged["score_chatbci"]).abs()
    merged["diff"] = diff
    t_moabb, t_ours = results["moabb"][0], results["chatbci"][0]
    print(f"\nDesign session: PhysionetMI left/right imagery, subjects {args.subjects} "
          f"({ref['subject'].nunique()}), within-session, random_state=42, n_jobs="
          f"{args.n_jobs}, {os.cpu_count()} cores; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    head = (f"{'added pipeline':<16}{'MOABB s':>9}{'chatbci s':>11}{'speed-up':>10}"
            f"{'max |dscore|':>14}")
    print(head)
    print("-" * len(head))
    for name in ORDER:
        d = merged.loc[merged["pipeline"] == name, "diff"].max()
        print(f"{name:<16}{t_moabb[name]:>9.1f}{t_ours[name]:>11.2f}"
              f"{t_moabb[name] / t_ours[name]:>9.1f}x{d:>14.2e}")
    total_m, total_c = sum(t_moabb.values()), sum(t_ours.values())
    print("-" * len(head))
    print(f"{'total':<16}{total_m:>9.1f}{total_c:>11.2f}{total_m / total_c:>9.1f}x"
          f"{diff.max():>14.2e}")
    print(f"\nwhole processes (imports included): MOABB {results['moabb'][2]:.1f} s, "
          f"chatbci {results['chatbci'][2]:.1f} s")


if __name__ == "__main__":
    main()
