"""A conversation fits the model's context even when its tokenizer is dense.

Real small models count more tokens than chatbci's 4-characters estimate (Qwen2.5
on llama.cpp: about 3.4 characters per token on chatbci's requests, so one request
overflowed 8,192 tokens). The session learns the server's counts (usage, or the
count in a context-size error) and budgets the history with them; large tool
results reach the model as a brief, with the full result in the journal.
"""

from __future__ import annotations

import json

import pytest

from chatbci.assistant.context import TokenGauge
from chatbci.assistant.testing import FakeLLMServer, Reply
from chatbci.workspace import Workspace


@pytest.fixture
def ws(tmp_path):
    return Workspace.create(tmp_path / "study", title="Context", goal="Budget tokens")


def _session(ws, server, **settings):
    from chatbci.assistant.llm import LLMSettings, OpenAIChat
    from chatbci.assistant.session import Session

    cfg = {"model": "fake-model", "base_url": server.base_url, "timeout": 10,
           "max_retries": 0, **settings}
    resolved = LLMSettings.resolve(cfg, env={"OPENAI_API_KEY": "test-key-" + "x" * 24})
    return Session(ws, backend=OpenAIChat(resolved, backoff=0.01), human="ada", n_jobs=1)


def _errors(ws):
    return [e.payload["message"] for e in ws.journal.events(kind="error")]


def test_gauge_learns_up_at_once_and_down_slowly():
    gauge = TokenGauge()
    assert gauge.tokens(1000) == 1200  # conservative before any report
    gauge.observe(1000, 1300)
    assert gauge.ratio == pytest.approx(1.3 * 1.05)
    gauge.observe(1000, 2000)  # a denser request: up at once
    assert gauge.ratio == pytest.approx(2.0 * 1.05)
    gauge.observe(1000, 1000)  # lighter: halfway down only
    assert gauge.ratio == pytest.approx((2.1 + 1.05) / 2)
    before = gauge.ratio
    for bad in [(None, 10), (10, None), (0, 5), (5, 0)]:
        gauge.observe(*bad)
    assert gauge.ratio == before and gauge.observed == 3
    assert gauge.raw(gauge.tokens(4000)) in range(3999, 4002)


def test_dense_tokenizer_never_overflows_the_context(ws):
    """Regression: 4 characters per token let the history overflow a small model's context."""
    n_ctx = 6000
    with FakeLLMServer(n_ctx=n_ctx, chars_per_token=3.4, enforce_context=True) as server:
        session = _session(ws, server, max_tokens=256)
        server.script([Reply.text(f"answer {i}: " + "many words here " * 120)
                       for i in range(8)])
        for i in range(8):
            turn = session.send(f"question {i}: " + "tell me more " * 40)
            assert turn.text.startswith(f"answer {i}"), turn.text
        counted = [server.prompt_tokens(body) for body in server.requests]
    assert max(counted) <= n_ctx
    assert not [m for m in _errors(ws) if "context" in m]
    # The history really was trimmed to fit, and the gauge learnt the tokenizer.
    assert max(counted) > n_ctx * 0.6
    assert session.tokens.observed == 8 and session.tokens.ratio > 1.15


def test_context_error_count_teaches_the_gauge(ws):
    """The count in an exceed_context_size_error corrects the estimate for the retry."""
    from chatbci.assistant.testing import Fault

    with FakeLLMServer(n_ctx=8192) as server:
        session = _session(ws, server)
        server.script([Reply.text("first", usage=False)])
        session.send("hello")
        assert session.tokens.observed == 0  # no usage reported: nothing learnt
        estimate = session._sent_estimate
        server.script([Fault.context_exceeded(2 * estimate, 8192), Reply.text("fits now")])
        assert session.send("again").text == "fits now"
    # Learnt from the error (2x) and then, halfway down, from the retry's usage.
    assert session.tokens.observed == 2 and session.tokens.ratio > 1.5


def test_large_explore_result_reaches_the_model_as_a_brief(ws):
    """The model gets the asked channels and the strongest; the journal keeps all of them."""
    with FakeLLMServer() as server:
        session = _session(ws, server)
        server.script([
            Reply.tool_calls([("explore_subject", {"dataset": "SimulatedMI", "subject": 1,
                                                   "channels": ["C3", "C4"]})]),
            Reply.text("done"),
        ])
        session.send("explore subject 1")
        tool_msg = [m for m in server.requests[-1]["messages"] if m["role"] == "tool"][-1]
    (result,) = ws.journal.events(kind="tool_result")
    full = result.payload["summary"]["band_power"]
    assert len(full["effect_size"]) == 24  # every channel of SimulatedMI
    sent = tool_msg["content"]
    data = json.loads(sent[sent.index("\n") + 1: sent.index("\n</data>")])
    brief = data["band_power"]
    assert {"C3", "C4"} <= set(brief["effect_size"]) and len(brief["effect_size"]) <= 6
    assert brief["best"]["channel"] in brief["effect_size"]
    assert "journaled result" in brief["channels_shown"]
    # Every number the model sees is in the journaled result it would cite.
    for ch, row in brief["effect_size"].items():
        assert full["effect_size"][ch] == row
    assert len(json.dumps(brief)) < 0.5 * len(json.dumps(full))
    assert len(sent) < 4000  # about 1,000 tokens, whatever the number of channels
