"""Guided tool choice for small local models ([llm] guide_tools).

A real 0.5B model, asked "benchmark CSP+LDA and TS+LR on subjects 1-3", sometimes
answered in words instead of calling run_benchmark. With guide_tools, the turn's
first request names the tool the message plainly asks for (the offline rules read
it); the model still writes the arguments, validated as always.
"""

from __future__ import annotations

import pytest

from chatbci.assistant.llm import LLMSettings
from chatbci.assistant.testing import FakeLLMServer, Reply
from chatbci.workspace import Workspace


@pytest.fixture
def ws(tmp_path):
    w = Workspace.create(tmp_path / "study", title="Guided", goal="g",
                         datasets=["SimulatedMI"], subjects="1-3")
    yield w
    w.close()


def _session(ws, server, **settings):
    from chatbci.assistant.llm import OpenAIChat
    from chatbci.assistant.session import Session

    cfg = {"model": "fake-model", "base_url": server.base_url, "timeout": 10,
           "max_retries": 0, **settings}
    resolved = LLMSettings.resolve(cfg, env={"OPENAI_API_KEY": "test-key-" + "x" * 24})
    return Session(ws, backend=OpenAIChat(resolved, backoff=0.01), human="ada", n_jobs=1)


def _named(body):
    choice = body.get("tool_choice")
    return choice["function"]["name"] if isinstance(choice, dict) else choice


def test_first_request_names_the_tool_the_human_asked_for(ws):
    with FakeLLMServer() as server:
        session = _session(ws, server, guide_tools=True)
        server.script([
            Reply.tool_calls([("run_benchmark", {"pipelines": ["CSP+LDA", "TS+LR"],
                                                 "dataset": "SimulatedMI",
                                                 "subjects": "1-3"})]),
            Reply.text("I proposed the benchmark."),
            Reply.text("Hello."),
        ])
        session.send("benchmark CSP+LDA and TS+LR on SimulatedMI subjects 1-3")
        session.send("hello there")
        first, second, third = server.requests
    assert _named(first) == "run_benchmark"
    assert _named(second) == "auto"  # after the tool result the model answers freely
    assert _named(third) == "auto"  # small talk names no tool
    (call,) = [e for e in ws.journal.events(kind="suggestion")]
    assert call.payload["llm"]["params"]["tool_choice"] == first["tool_choice"]


def test_off_by_default_and_for_questions_the_rules_cannot_map(ws):
    with FakeLLMServer() as server:
        session = _session(ws, server)
        server.script([Reply.text("ok"), Reply.text("ok")])
        session.send("explore subject 1 of SimulatedMI")
        guided = _session(ws, server, guide_tools=True)
        guided.send("what is the meaning of mu rhythm desynchronisation?")
        assert [_named(b) for b in server.requests] == ["auto", "auto"]


def test_setting_from_workspace_and_environment(ws):
    from chatbci.workspace.config import LLMSettings as WorkspaceLLM

    assert WorkspaceLLM(guide_tools=True).guide_tools is True
    on = LLMSettings.resolve({"guide_tools": False}, env={"CHATBCI_LLM_GUIDE_TOOLS": "true"})
    assert on.guide_tools is True and on.public_dict()["guide_tools"] is True
    assert LLMSettings.resolve({}, env={}).guide_tools is False
