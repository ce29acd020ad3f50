"""Small jobs: the fixed overhead of a benchmark, chatbci against plain MOABB.

Two jobs on PhysionetMI left vs right hand imagery, within-session,
``random_state=42``: 1 subject x CSP+LDA, and subjects 1-3 x CSP+LDA, TS+LR.
Each is timed

- plain MOABB, a fresh process (``python -c`` with its imports and
  ``WithinSessionEvaluation.process``), ``n_jobs=2``;
- ``chatbci bench``, a fresh process, cold (empty cache directory);
- ``chatbci bench`` again, warm: served from the cache (the whole process,
  imports included: target <= 1 s);
- inside a running Session: one process whose imports are done and whose
  worker pool is warm (a benchmark of other subjects ran before), each job
  with an empty cache directory.

Wall times of whole processes are measured from outside. Prints the table
with ratios against plain MOABB, and the machine load.

    python benchmarks/bench_small_jobs.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
os.environ.setdefault("MOABB_DOWNLOAD_PROVIDER", "upstream")
_shared = HERE.parents[2] / "shared" / "data" / "mne_data"
if "MNE_DATA" not in os.environ and _shared.is_dir():
    os.environ["MNE_DATA"] = str(_shared)

JOBS = [("1 subject x 1 pipeline", "1", ["CSP+LDA"]),
        ("3 subjects x 2 pipelines", "1-3", ["CSP+LDA", "TS+LR"])]

MOABB = """
import warnings; warnings.filterwarnings("ignore")
import mne; mne.set_log_level("ERROR")
from moabb.evaluations import WithinSessionEvaluation
from moabb.paradigms import LeftRightImagery
from chatbci.bci.benchmark import parse_subjects
from chatbci.bci.datasets import get_dataset
from chatbci.bci.pipelines import get_pipeline
ds = get_dataset("PhysionetMI"); ds.subject_list = parse_subjects({subjects!r})
ds.feet_runs = []
WithinSessionEvaluation(paradigm=LeftRightImagery(), datasets=[ds], random_state=42,
    n_jobs=2, overwrite=True, hdf5_path={folder!r}).process(
    {{n: get_pipeline(n).build() for n in {names!r}}})
"""

SESSION = """
import json, sys, tempfile, time, warnings; warnings.filterwarnings("ignore")
import mne; mne.set_log_level("ERROR")
from chatbci.bci.benchmark import run_benchmark
jobs = json.loads(sys.argv[1])
# The session's earlier work: imports done, worker pool warm.
run_benchmark("CSP+LDA,TS+LR", "PhysionetMI", "20-22", n_jobs=2, progress=False,
              cache_dir=tempfile.mkdtemp())
out = []
for subjects, names in jobs:
    t0 = time.perf_counter()
    run_benchmark(",".join(names), "PhysionetMI", subjects, n_jobs=2, progress=False,
                  cache_dir=tempfile.mkdtemp())
    out.append(time.perf_counter() - t0)
print(json.dumps(out))
"""


def _wall(cmd):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"failed: {cmd[:3]}")
    return wall, proc.stdout


def main():
    chatbci = [sys.executable, "-c", "import sys; from chatbci.cli import main; sys.exit(main())"]
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="chatbci-small-") as tmp:
        for i, (label, subjects, names) in enumerate(JOBS):
            folder = Path(tmp) / f"moabb-{i}"
            folder.mkdir()
            moabb, _ = _wall([sys.executable, "-c", MOABB.format(
                subjects=subjects, names=names, folder=str(folder))])
            cache = Path(tmp) / f"cache-{i}"
            bench = chatbci + ["bench", "--dataset", "PhysionetMI", "--subjects", subjects,
                               "--pipelines", ",".join(names), "--n-jobs", "2", "--quiet",
                               "--cache-dir", str(cache)]
            cold, _ = _wall(bench)
            warm, _ = _wall(bench)
            rows.append([label, moabb, cold, warm])
        _, out = _wall([sys.executable, "-c", SESSION,
                        json.dumps([[s, n] for _, s, n in JOBS])])
        for row, seconds in zip(rows, json.loads(out.strip().splitlines()[-1])):
            row.append(seconds)
    load_after = os.getloadavg()
    print(f"\nSmall jobs: PhysionetMI left/right imagery, within-session, n_jobs=2, "
          f"{os.cpu_count()} cores; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after\n")
    head = (f"{'job':<26}{'MOABB process':>14}{'CLI cold':>10}{'CLI warm':>10}"
            f"{'in Session':>12}{'Session vs MOABB':>18}")
    print(head)
    print("-" * len(head))
    for label, moabb, cold, warm, session in rows:
        print(f"{label:<26}{moabb:>13.1f}s{cold:>9.1f}s{warm:>9.2f}s{session:>11.2f}s"
              f"{moabb / session:>17.1f}x")
    print("\nMOABB, CLI cold and CLI warm are whole processes (imports included); "
          "'in Session' is run_benchmark in a process that already ran one benchmark "
          "(imports done, worker pool warm), with an empty cache.")


if __name__ == "__main__":
    main()
