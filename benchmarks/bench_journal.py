"""Speed of the workspace journal: appends, verify() and queries.

Measures, on a fresh journal in a temporary folder:

1. durable appends per second from one process, one event per transaction
   (each ``append`` has returned only once its event is committed), with the
   default ``durability="normal"`` (WAL, survives a killed process) and, for
   reference, ``durability="full"`` (fsync per event, survives power loss);
2. the time of ``verify()`` on a journal of ``--events`` events (default
   100,000) of realistic kinds and sizes;
3. the time of ``events()`` (all, and filtered by kind or actor) and of
   ``pending_suggestions()`` and ``thread()`` on that journal.

Targets (issue "the collaborative workspace"): at least 5,000 appends/s and
``verify()`` under 2 s for 100,000 events. Exit code 1 if one is missed.

    python benchmarks/bench_journal.py [--appends 10000] [--events 100000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from chatbci.workspace import Journal

from _timing import timed  # benchmarks/_timing.py

TARGET_APPENDS = 5000.0
TARGET_VERIFY = 2.0


def one_turn(journal, k):
    """Append one realistic turn: six events, one of each common kind."""
    journal.append("message", "human:ada", {
        "text": f"Can you compare CSP+LDA and TS+LR on subjects 1-{k % 9 + 1}?"})
    s = journal.append("suggestion", "ai:gpt-4o-mini", {
        "action": {"tool": "run_benchmark", "args": {
            "dataset": "BNCI2014_001", "pipelines": ["CSP+LDA", "TS+LR"],
            "subjects": list(range(1, k % 9 + 2)), "evaluation": "within-session"}},
        "rationale": "Both are standard MOABB baselines; within-session is the usual "
                     "protocol for this dataset."})
    d = journal.append("decision", "human:ada", {"verdict": "accept", "rationale": "ok"},
                       parent_id=s.id)
    c = journal.append("tool_call", "ai:gpt-4o-mini", {"tool": "run_benchmark",
                                                      "args": {"subjects": [1, 2]}},
                       parent_id=d.id)
    journal.append("tool_result", "system", {
        "tool": "run_benchmark", "ok": True,
        "summary": {"CSP+LDA": {"mean": 0.712, "sd": 0.11}, "TS+LR": {"mean": 0.748,
                                                                     "sd": 0.09}},
        "artifacts": [f"results/figures/{k:064x}.png"], "result_hash": f"{k:064x}"},
        parent_id=c.id)
    journal.append("message", "ai:gpt-4o-mini", {
        "text": "TS+LR scored 0.75 ± 0.09 against 0.71 ± 0.11 for CSP+LDA (tool result "
                "above); the difference is small with two subjects."})


def appends_per_second(folder, n, durability, repeat=3):
    """Median over ``repeat`` fresh journals of ``n`` appends (shared machines are noisy)."""
    rates = []
    for r in range(repeat):
        journal = Journal.create(Path(folder) / f"appends-{durability}-{r}.sqlite",
                                 durability=durability)
        journal.start_session()
        start = time.perf_counter()
        for k in range(n // 6):
            one_turn(journal, k)
        rates.append((n // 6) * 6 / (time.perf_counter() - start))
        journal.close()
    return statistics.median(rates), min(rates), max(rates)



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=10_000,
                        help="events appended for the throughput measurement")
    parser.add_argument("--events", type=int, default=100_000,
                        help="size of the journal for verify() and queries")
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        rows = []
        rate, low, high = appends_per_second(folder, args.appends, "normal")
        rows.append((f"durable appends/s, durability=normal (median of 3; {low:,.0f}-"
                     f"{high:,.0f})", f"{rate:,.0f} /s", f">= {TARGET_APPENDS:,.0f}",
                     rate >= TARGET_APPENDS))
        full, low, high = appends_per_second(folder, max(args.appends // 4, 6), "full")
        rows.append((f"appends/s, durability=full: fsync each (median; {low:,.0f}-"
                     f"{high:,.0f})", f"{full:,.0f} /s", "reference", None))

        path = Path(folder) / "big.sqlite"
        journal = Journal.create(path)
        start = time.perf_counter()
        for k in range(-(-args.events // 6)):
            one_turn(journal, k)
        build = time.perf_counter() - start
        journal.close()
        journal = Journal.open(path)
        n = len(journal)
        rows.append((f"building: {n:,} events appended", f"{build:.1f} s",
                     f"({n / build:,.0f} /s)", None))

        seconds, report = timed(journal.verify)
        assert report.ok, str(report)
        target_ok = seconds < TARGET_VERIFY * n / 100_000
        rows.append((f"verify() on {n:,} events", f"{seconds:.2f} s",
                     f"< {TARGET_VERIFY * n / 100_000:.3g} s", target_ok))
        seconds, found = timed(journal.events)
        rows.append((f"events(): all {len(found):,}", f"{seconds:.2f} s", "", None))
        seconds, found = timed(lambda: journal.events(kind="suggestion"))
        rows.append((f"events(kind='suggestion'): {len(found):,}", f"{seconds:.3f} s", "",
                     None))
        seconds, found = timed(lambda: journal.events(actor="human", kind="decision",
                                                      limit=100))
        rows.append(("events(actor='human', kind='decision', limit=100)",
                     f"{seconds * 1000:.1f} ms", "", None))
        seconds, found = timed(journal.pending_suggestions)
        rows.append((f"pending_suggestions(): {len(found)}", f"{seconds * 1000:.1f} ms", "",
                     None))
        middle = journal.events(kind="suggestion")[len(journal.events(kind="suggestion")) // 2]
        seconds, found = timed(lambda: journal.thread(middle.id))
        rows.append((f"thread(): {len(found)} events", f"{seconds * 1000:.2f} ms", "", None))
        journal.close()

    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>12}  {'target':<10}  result")
    print("-" * (width + 36))
    for name, value, target, ok in rows:
        verdict = "" if ok is None else "PASS" if ok else "FAIL"
        print(f"{name:<{width}}  {value:>12}  {target:<10}  {verdict}")
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
