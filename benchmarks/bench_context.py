"""Context size and build time against journal length.

The model sees a compact workspace state each turn (goal, scope, best results,
pending suggestions, recent decisions, relevant notes) under a token budget.
This script fills workspaces with 10, 1,000 and 10,000 journal events (a
realistic mix: messages, tool calls and results, benchmark runs, suggestions
and decisions, knowledge notes) and measures the rendered context's tokens and
the time to build it. Both must stay flat as the journal grows.

    python benchmarks/bench_context.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from chatbci.assistant.context import estimate_tokens, render_state, workspace_state
from chatbci.workspace import Workspace

SIZES = (10, 1_000, 10_000)
BUDGET = 3000


def fill(ws, n_events):
    """Append ``n_events`` events in the proportions of a real session."""
    j = ws.journal
    i = 0
    while i < n_events:
        m = j.append("message", "human:ada", {"text": f"Please benchmark pipelines, step {i}"})
        i += 1
        if i % 10 == 0:
            s = j.append("suggestion", "ai:model", {
                "action": {"tool": "run_benchmark", "args": {"pipelines": ["TS+LR"],
                                                             "subjects": "1-5"}},
                "rationale": "Tangent space is strong on motor imagery " * 3}, m.id)
            i += 1
            if i % 20 == 0:
                j.append("decision", "human:ada", {"verdict": "accept",
                                                   "rationale": "go ahead"}, s.id)
                i += 1
        c = j.append("tool_call", "ai:model", {"tool": "show_results", "args": {}}, m.id)
        r = j.append("tool_result", "system", {"tool": "show_results", "ok": True,
                                               "summary": {"rows": list(range(20))}}, c.id)
        i += 2
        if i % 7 == 0:
            j.append("run", "system", {
                "config_hash": f"h{i}", "config": {"dataset": f"D{i % 5}",
                                                  "evaluation": "within-session"},
                "scores": {f"P{k}": {"mean": 0.6 + k / 100, "sd": 0.1, "n_subjects": 10}
                           for k in range(8)}}, r.id)
            i += 1
        if i % 50 == 0:
            ws.knowledge.add(f"Note {i}", "Contralateral mu ERD over C3/C4. " * 30,
                             author="human:ada", sources=["doi:10.1016/S1388-2457(99)00141-8"])
            i += 2  # the note and its journal event


def measure(n_events, repeats=20):
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.create(Path(tmp) / "ws", title="Bench", goal="Context scaling",
                              datasets=["PhysionetMI"])
        fill(ws, n_events)
        n = ws.journal.head()[0]
        times, tokens = [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            text = render_state(workspace_state(ws, query="mu ERD C3"), BUDGET)
            times.append(time.perf_counter() - t0)
            tokens = estimate_tokens(text)
        ws.close()
    return n, tokens, statistics.median(times) * 1000


def main():
    rows = [measure(n) for n in SIZES]
    print(f"Context of one turn (token budget {BUDGET}; ~4 characters per token)\n")
    print(f"{'journal events':>15}{'context tokens':>16}{'build ms (median)':>20}")
    for n, tokens, ms in rows:
        print(f"{n:>15,}{tokens:>16,}{ms:>20.1f}")
    # A 10-event workspace is nearly empty; growth is judged from 1,000 events,
    # where every section of the state has content, to 10,000.
    (n1, t1, ms1), (n2, t2, ms2) = rows[-2], rows[-1]
    flat = t2 <= BUDGET and t2 <= 1.1 * t1 and ms2 < 3 * ms1
    print(f"\nfrom {n1:,} to {n2:,} events (x{n2 / n1:.0f}): tokens x{t2 / t1:.2f}, "
          f"time x{ms2 / ms1:.2f} -> {'flat' if flat else 'GROWING'}")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
