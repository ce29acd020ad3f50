"""Speed of the session export on a large journal.

Synthesises a workspace whose journal holds ``--events`` events (default
10,000) in a realistic mix -- human and AI messages, AI suggestions with
their rationale, human decisions (accept / modify / reject), tool calls by
the AI and after decisions, tool results with summaries and figures,
benchmark ``run`` events with their full protocol and pipelines, knowledge
notes, errors, several sessions -- and a few real PNG figures, then times
:func:`chatbci.export.export`:

1. each format on its own (``md``, ``html``, ``tex``, ``json``, ``ipynb``;
   every call reads and verifies the journal again, as the CLI would);
2. ``format="all"`` in one call (the journal read once), the target.

Target (issue "export a session for a paper"): all formats in under 3 s.
Exit code 1 if it is missed.

    python benchmarks/bench_export.py [--events 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from chatbci.export import FORMATS, export
from chatbci.workspace import Workspace

from _timing import timed  # benchmarks/_timing.py

TARGET_SECONDS = 3.0

LLM = {"model": "gpt-4o-mini-2024-07-18", "backend": "openai",
       "prompts": {"system": "system@v1:5fecc7aa9553", "state": "state@v1:fde6059d23eb"},
       "usage": {"prompt_tokens": 2400, "completion_tokens": 180, "total_tokens": 2580},
       "latency_s": 1.2, "attempts": 1}
PIPELINES = ["CSP+LDA", "TS+LR", "TS+SVM", "MDM"]
CHANNELS = ["C3", "C4", "Cz", "C1", "C2", "C5", "C6", "FC3", "FC4", "CP3", "CP4", "CPz"]


def _figures(ws, n=4):
    """A few real PNG figures (matplotlib), stored like tool artifacts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.imshow(rng.standard_normal((40, 200)), aspect="auto", cmap="RdBu_r")
        ax.set_title(f"ERD/ERS map {i}")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        paths.append(ws.artifacts.put_bytes(buf.getvalue(), ".png"))
    return paths


def _protocol(subjects):
    return {
        "dataset": {"name": "PhysionetMI", "code": "PhysionetMotorImagery",
                    "doi": "10.1109/TBME.2004.827072",
                    "reference": "Schalk, G., McFarland, D.J., Hinterberger, T., Birbaumer, N. "
                                 "and Wolpaw, J.R., 2004. BCI2000: a general-purpose "
                                 "brain-computer interface (BCI) system.",
                    "n_channels": 64, "sfreq": 160.0, "n_sessions": 1, "subjects": subjects},
        "paradigm": {"name": "LeftRightImagery", "classes": ["left_hand", "right_hand"],
                     "fmin": 8, "fmax": 32, "tmin": 0.0, "tmax": None, "interval": [0.0, 3.0],
                     "resample": None},
        "evaluation": {"type": "within-session", "random_state": 42,
                       "folds": "5-fold stratified CV per session", "metric": "roc_auc"},
        "software": "MOABB evaluations via chatbci",
    }


def _spec(name):
    return {"name": name, "paradigms": ["LeftRightImagery"],
            "citations": ["https://doi.org/10.1016/j.neucom.2012.12.039"],
            "pipeline": [{"name": "Covariances", "from": "pyriemann.estimation",
                          "parameters": {"estimator": "oas"}},
                         {"name": "TangentSpace", "from": "pyriemann.tangentspace",
                          "parameters": {"metric": "riemann"}},
                         {"name": "LogisticRegression", "from": "sklearn.linear_model",
                          "parameters": {"C": 1.0}}]}


def synthesise(folder, n_events):
    """A workspace whose journal has ``n_events`` events; returns its path."""
    ws = Workspace.create(Path(folder) / "big", title="Large study",
                          goal="Find the best left vs right hand decoder on PhysioNet",
                          datasets=["PhysionetMI"], subjects="1-20",
                          llm={"model": "gpt-4o-mini"})
    j = ws.journal
    figures = _figures(ws)
    k = 0
    verdicts = ["accept", "modify", "reject", "accept"]
    j.start_session(backend="openai", model="gpt-4o-mini", is_llm=True)
    while len(j) < n_events - 2:
        k += 1
        if k % 60 == 0:
            j.start_session(backend="openai", model="gpt-4o-mini", is_llm=True)
        subjects = list(range(1, k % 19 + 3))
        pipes = PIPELINES[: 2 + k % 3]
        m = j.append("message", "human:ada", {
            "text": f"Can we compare {', '.join(pipes)} on subjects 1-{subjects[-1]}? "
                    "Keep the usual protocol."})
        # The assistant explores on its own (read-only), with figures.
        if k % 3 == 0:
            call = j.append("tool_call", "ai:gpt-4o-mini", {
                "tool": "explore_subject", "args": {"dataset": "PhysionetMI",
                                                    "subject": k % 20 + 1}, "llm": LLM}, m.id)
            j.append("tool_result", "system", {
                "tool": "explore_subject", "ok": True, "summary": {
                    "dataset": "PhysionetMI", "subject": k % 20 + 1,
                    "band_power": {"auc": {c: {"mu": 0.5 + i / 40, "beta": 0.5 - i / 50}
                                           for i, c in enumerate(CHANNELS)},
                                   "best": {"channel": "C4", "band": "mu", "auc": 0.21,
                                            "effect_size": -1.3}}},
                "artifacts": figures[k % 2: k % 2 + 2], "result_hash": f"{k:064x}"}, call.id)
        sugg = j.append("suggestion", "ai:gpt-4o-mini", {
            "action": {"tool": "run_benchmark", "args": {
                "pipelines": pipes, "dataset": "PhysionetMI",
                "subjects": f"1-{subjects[-1]}"}},
            "rationale": "These pipelines cover spatial filtering and Riemannian geometry; "
                         "the ERD at C3/C4 in the mu band suggests both should work.",
            "llm": LLM}, m.id)
        j.append("message", "ai:gpt-4o-mini", {
            "text": f"I propose benchmarking {', '.join(pipes)} (suggestion #{sugg.id}).",
            "llm": LLM}, m.id)
        verdict = verdicts[k % 4]
        if verdict == "reject":
            j.append("decision", "human:ada", {"verdict": "reject",
                                               "rationale": "not now"}, sugg.id)
            j.append("note", "human:ada", {"text": "Try a larger cohort first."})
            continue
        args = {"pipelines": pipes, "dataset": "PhysionetMI", "subjects": f"1-{subjects[-1]}"}
        payload = {"verdict": verdict, "rationale": "fine" if verdict == "accept" else
                   "fewer subjects"}
        if verdict == "modify":
            subjects = subjects[: max(2, len(subjects) // 2)]
            args = {**args, "subjects": subjects}
            payload["action"] = {"tool": "run_benchmark", "args": args}
        dec = j.append("decision", "human:ada", payload, sugg.id)
        call = j.append("tool_call", "human:ada", {"tool": "run_benchmark", "args": args},
                        dec.id)
        scores = {p: {"mean": round(0.7 + 0.03 * i + (k % 7) / 100, 4),
                      "sd": round(0.08 + i / 100, 4), "n_subjects": len(subjects)}
                  for i, p in enumerate(pipes)}
        config_hash = f"{k:064x}"
        res = j.append("tool_result", "system", {
            "tool": "run_benchmark", "ok": True, "summary": {
                "dataset": "PhysionetMotorImagery", "evaluation": "within-session",
                "subjects": subjects, "scores": scores, "metric": "roc_auc",
                "best": pipes[-1], "config_hash": config_hash[:16]},
            "artifacts": [f"results/tables/{k:064x}.csv"], "result_hash": config_hash}, call.id)
        j.append("run", "system", {
            "config_hash": config_hash, "scores": scores,
            "config": {"dataset": "PhysionetMotorImagery", "subjects": subjects,
                       "evaluation": "within-session", "random_state": 42,
                       "pipelines": {p: f"{i:064x}" for i, p in enumerate(pipes)}},
            "results_path": f"results/runs/{config_hash[:16]}.csv",
            "protocol": _protocol(subjects), "pipelines": {p: _spec(p) for p in pipes}},
            res.id)
        if k % 2 == 0:
            call = j.append("tool_call", "ai:gpt-4o-mini", {"tool": "compare_pipelines",
                                                            "args": {}, "llm": LLM}, m.id)
            j.append("tool_result", "system", {
                "tool": "compare_pipelines", "ok": True, "summary": {"comparisons": [{
                    "dataset": "PhysionetMotorImagery", "evaluation": "within-session",
                    "best": pipes[-1], "best_mean": scores[pipes[-1]]["mean"],
                    "n_subjects": len(subjects), "test": "permutation",
                    "vs_best": [{"better": pipes[-1], "worse": p, "p": 0.04, "smd": 0.6}
                                for p in pipes[:-1]]}]},
                "artifacts": [figures[3]], "result_hash": f"{k + 1:064x}"}, call.id)
        j.append("message", "ai:gpt-4o-mini", {
            "text": f"{pipes[-1]} scored {scores[pipes[-1]]['mean']:.3f} ± "
                    f"{scores[pipes[-1]]['sd']:.3f} (ROC AUC) [run_benchmark #{res.id}].",
            "llm": LLM}, m.id)
        if k % 25 == 0:
            j.append("error", "system", {"message": "subject 7 failed to load: timeout",
                                         "type": "TimeoutError"})
    j.end_session()
    n = len(j)
    path = ws.path
    ws.close()
    return path, n



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per measurement; the best is reported")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="chatbci-bench-export-") as tmp:
        start = time.perf_counter()
        path, n = synthesise(tmp, args.events)
        print(f"synthesised a journal of {n:,} events in {time.perf_counter() - start:.1f} s "
              f"({path})\n")
        export(path, "md", out=Path(tmp) / "warmup")  # imports, template compilation

        print(f"{'format':<8} {'seconds':>8} {'files':>6} {'MB':>8}")
        total = 0.0
        for fmt in FORMATS:
            out = Path(tmp) / f"out-{fmt}"
            seconds, _ = timed(lambda fmt=fmt, out=out: export(path, fmt, out=out),
                               args.repeat)
            files = [p for p in out.iterdir() if p.is_file()]
            size = sum(p.stat().st_size for p in files) / 1e6
            total += seconds
            print(f"{fmt:<8} {seconds:>8.3f} {len(files):>6} {size:>8.2f}")
        print(f"{'sum':<8} {total:>8.3f}   (each format a separate call)")
        out = Path(tmp) / "out-all"
        seconds, _ = timed(lambda: export(path, "all", out=out), args.repeat)
        files = [p for p in out.iterdir() if p.is_file()]
        print(f"{'all':<8} {seconds:>8.3f} {len(files):>6} "
              f"{sum(p.stat().st_size for p in files) / 1e6:>8.2f}   (one call)")
        ok = seconds < TARGET_SECONDS
        print(f"\nall formats, {n:,} events: {seconds:.2f} s "
              f"(target < {TARGET_SECONDS:.0f} s): {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
