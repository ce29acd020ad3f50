"""Prompt tokens per request: the tool schemas before and after compaction.

With a small local model the tool schemas were most of every request (2,100
of 2,749 prompt tokens in the recorded llama.cpp traffic). This script counts
the tokens of one request's fixed part -- the system prompt with the workspace
state, and the tool declarations -- for the pydantic schemas as generated
(before) and for the compact schemas chatbci sends (after), in one run.

Tokens are counted with the Qwen2.5 tokenizer when the ``tokenizers`` package
and a local ``tokenizer.json`` are available (``CHATBCI_TOKENIZER=path``), else
estimated at 4 characters per token (the estimate chatbci budgets with).

    python benchmarks/bench_prompt_tokens.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from chatbci.assistant.context import estimate_tokens
from chatbci.assistant.offline import OfflineBackend
from chatbci.assistant.session import Session
from chatbci.assistant.tools import TOOLS
from chatbci.workspace import Workspace


def _counter():
    path = os.environ.get("CHATBCI_TOKENIZER")
    if path:
        try:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(path)
            return "tokenizer", lambda text: len(tok.encode(text).ids)
        except Exception as err:  # noqa: BLE001 - fall back to the estimate
            print(f"(tokenizer unavailable: {err}; using the 4-chars estimate)")
    return "estimate (chars/4)", estimate_tokens


def raw_schemas():
    """The declarations as pydantic generates them (what chatbci sent before)."""
    out = []
    for tool in TOOLS:
        params = tool.args.model_json_schema()
        params.pop("title", None)
        for prop in params.get("properties", {}).values():
            prop.pop("title", None)
        out.append({"type": "function", "function": {
            "name": tool.name, "description": tool.description, "parameters": params}})
    return out


def main():
    how, count = _counter()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.create(Path(tmp) / "ws", title="LR", goal="Find a decoder",
                              datasets=["SimulatedMI"], subjects="1-3")
        session = Session(ws, backend=OfflineBackend(), human="bench", n_jobs=1)
        msgs, _ = session._messages("explore subject 1")
        system = count(msgs[0]["content"])
        ws.close()
    before = count(json.dumps(raw_schemas()))
    after = count(json.dumps(TOOLS.schemas()))
    rows = [("system prompt + state", system, system),
            (f"tool schemas ({len(TOOLS.names())} tools)", before, after),
            ("fixed part of a request", system + before, system + after)]
    print(f"Prompt tokens per request, counted by {how}")
    print(f"{'part':<32}{'before':>8}{'after':>8}{'ratio':>8}")
    for name, b, a in rows:
        print(f"{name:<32}{b:>8}{a:>8}{a / b:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
