"""The client against what real servers sent: recorded traffic, replayed over HTTP.

``../shared/fixtures/llm-traffic`` holds real exchanges between chatbci and
llama.cpp's ``llama-server --jinja`` and llama-cpp-python's server running
Qwen2.5-Coder-0.5B (see its README). :meth:`Reply.recorded` makes the project's
test server send those exact bytes -- status, content type, SSE events and
keep-alive comments -- so the real ``openai`` SDK and :class:`OpenAIChat` parse
what real servers send. Skipped, with the reason, where the folder is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from chatbci.assistant.llm import LLMError, LLMSettings, OpenAIChat
from chatbci.assistant.testing import FakeLLMServer, Reply, load_recorded

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "llm-traffic"
KEY = "test-key-123"


def recording(name):
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"recorded LLM traffic not found at {FIXTURES} (the shared fixtures "
                    "folder beside the repository)")
    return {e.id: e for e in load_recorded(path)}


@pytest.fixture
def server():
    with FakeLLMServer(model="qwen2.5-coder-0.5b-instruct-q4_k_m") as srv:
        yield srv
        assert srv.errors == []


def chat_for(server, **settings):
    settings.setdefault("max_retries", 1)
    return OpenAIChat(LLMSettings(model=server.model, base_url=server.base_url,
                                  api_key=SecretStr(KEY), timeout=10, **settings),
                      backoff=0.001, sleep=lambda s: None)


def replay(server, exchange, **settings):
    """Send the recorded request again; the server answers with the recorded bytes."""
    body = exchange.request_body
    server.script([Reply.recorded(exchange)])
    shown, resets = [], []

    def reset():
        resets.append("".join(shown))
        shown.clear()

    with chat_for(server, **settings) as chat:
        reply = chat.complete(body["messages"], tools=body.get("tools"),
                              tool_choice=body.get("tool_choice", "auto"),
                              on_delta=shown.append, on_reset=reset)
    return reply, "".join(shown), resets


def recorded_text(exchange):
    """The answer text as the recorded SSE body carries it."""
    return "".join((c.get("delta") or {}).get("content") or ""
                   for line in exchange.response_text.splitlines() if line.startswith("data: {")
                   for c in json.loads(line[6:]).get("choices", []))


# --------------------------------------------------------------------------
# The replay itself
# --------------------------------------------------------------------------

def test_replay_sends_the_recorded_bytes(server):
    import httpx

    exchanges = recording("lcp-jinja.jsonl")
    first = exchanges[1]
    server.script([Reply.recorded(first), Reply.recorded(FIXTURES / "ls-default.jsonl", 2)])
    with httpx.Client(timeout=5) as client:
        streamed = client.post(f"{server.base_url}/chat/completions", json=first.request_body)
        refused = client.post(f"{server.base_url}/chat/completions", json=first.request_body)
    assert streamed.status_code == 200 and streamed.text == first.response_text
    assert streamed.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert streamed.text.startswith(": ping")  # llama-cpp-python's keep-alive comments
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "exceed_context_size_error"
    with pytest.raises(KeyError, match="no exchange 99"):
        Reply.recorded(FIXTURES / "ls-default.jsonl", 99)


# --------------------------------------------------------------------------
# llama-server without an answer cap: the runaway answer, then the full context
# --------------------------------------------------------------------------

def test_runaway_answer_is_marked_truncated_and_a_cap_is_now_sent(server):
    exchange = recording("ls-default.jsonl")[1]
    assert "max_tokens" not in exchange.request_body  # as the client was shipped
    reply, shown, _ = replay(server, exchange)
    assert reply.finish_reason == "length" and reply.truncated
    assert reply.usage == {"prompt_tokens": 2749, "completion_tokens": 5443,
                           "total_tokens": 8192}
    assert reply.text == shown == recorded_text(exchange) and len(reply.text) > 17000
    assert reply.tool_calls == []
    assert reply.system_fingerprint == "b1-0c1e570"
    # What the client sends now: a cap, under the name local servers read.
    sent = server.requests[0]
    assert sent["max_tokens"] == 1024 and "max_completion_tokens" not in sent
    assert reply.request_params == {
        "temperature": 0.2, "seed": None, "max_tokens": 1024, "max_tokens_param": "max_tokens",
        "stream": True, "tool_calls": "auto", "tool_choice": "auto"}


@pytest.mark.parametrize("exchange_id, prompt", [(2, 8210), (3, 8235), (4, 8245)])
def test_context_size_error_is_classified_not_retried(server, exchange_id, prompt):
    exchange = recording("ls-default.jsonl")[exchange_id]
    with pytest.raises(LLMError) as info:
        replay(server, exchange, max_retries=3)
    err = info.value
    assert (err.reason, err.status_code, err.attempts) == ("context_length", 400, 1)
    assert (err.prompt_tokens, err.context_tokens) == (prompt, 8192)
    assert len(server.requests) == 1  # the same request would fail again
    message = str(err)
    assert f"{prompt:,} tokens" in message and "8,192" in message
    assert "context window" in message and "new session" in message
    assert "tool calling" not in message and "streaming" not in message
    # The prompt alone is too big: a smaller answer cap would not help.
    assert "max_tokens" not in message


def test_context_size_named_by_the_error_is_remembered(server):
    exchange = recording("ls-default.jsonl")[2]
    server.script([Reply.recorded(exchange)])
    with chat_for(server) as chat:
        with pytest.raises(LLMError):
            chat.complete(exchange.request_body["messages"])
        # This fake serves no /props: the error's n_ctx is what is known.
        assert chat.context_tokens() == 8192


# --------------------------------------------------------------------------
# llama-server with a cap: tool calls written as fenced JSON
# --------------------------------------------------------------------------

@pytest.mark.parametrize("exchange_id, name", [
    (1, "list_datasets"), (2, "explore_subject"), (3, "run_benchmark"),
    (4, "compare_pipelines")])
def test_fenced_json_tool_calls_become_calls(server, exchange_id, name):
    exchange = recording("ls-explicit.jsonl")[exchange_id]
    reply, shown, resets = replay(server, exchange)
    (call,) = reply.tool_calls
    assert (call.name, call.source) == (name, "text") and call.id.startswith("call_")
    assert isinstance(call.parse_arguments(), dict)  # the same check as native calls
    assert reply.text_tool_calls and reply.text == ""
    assert reply.raw_text == recorded_text(exchange) and reply.raw_text.startswith("```json")
    # The streamed call text was taken back from the display.
    assert resets == [reply.raw_text] and shown == ""
    assert reply.finish_reason == "stop" and not reply.truncated
    assert reply.usage["completion_tokens"] > 0
    assert reply.as_message()["tool_calls"][0]["function"]["name"] == name


def test_native_mode_leaves_written_calls_as_text(server):
    exchange = recording("ls-explicit.jsonl")[1]
    reply, shown, resets = replay(server, exchange, tool_calls="native")
    assert reply.tool_calls == [] and reply.raw_text is None
    assert reply.text == shown == recorded_text(exchange) and resets == []


@pytest.mark.parametrize("exchange_id", [1, 2, 3, 4, 5])
def test_required_tool_choice_still_gave_capped_prose(server, exchange_id):
    exchange = recording("ls-required.jsonl")[exchange_id]
    reply, shown, _ = replay(server, exchange)
    assert reply.truncated and reply.usage["completion_tokens"] == 768
    assert reply.tool_calls == [] and reply.text == shown == recorded_text(exchange)


# --------------------------------------------------------------------------
# llama-cpp-python
# --------------------------------------------------------------------------

@pytest.mark.parametrize("exchange_id", [1, 2, 3, 4])
def test_missing_usage_is_unknown_and_prose_stays_text(server, exchange_id):
    exchange = recording("lcp-jinja.jsonl")[exchange_id]
    assert exchange.request_body["stream_options"] == {"include_usage": True}
    reply, shown, resets = replay(server, exchange)
    assert reply.usage is None  # not reported: unknown, not zero
    assert reply.tool_calls == [] and reply.text == shown == recorded_text(exchange)
    assert resets == [] and reply.finish_reason == "stop"


@pytest.mark.parametrize("exchange_id, name", [
    (5, "list_datasets"), (7, "list_datasets"), (11, "list_datasets"),
    (12, "explore_subject"), (13, "run_benchmark"), (14, "list_components")])
def test_functions_prefix_answers_become_calls(server, exchange_id, name):
    exchange = recording("probe-lcp.jsonl")[exchange_id]
    reply, _, _ = replay(server, exchange)
    assert [(c.name, c.source, c.parse_arguments()) for c in reply.tool_calls] == [
        (name, "text", {})]
    assert reply.text == "" and reply.raw_text == f"functions.{name}:"
    assert reply.usage is None


@pytest.mark.parametrize("exchange_id", [6, 8])
def test_non_streamed_answer(server, exchange_id):
    exchange = recording("probe-lcp.jsonl")[exchange_id]
    assert exchange.request_body["stream"] is False
    reply, shown, resets = replay(server, exchange, stream=False)
    sent = server.requests[0]
    assert sent["stream"] is False and "stream_options" not in sent
    assert [(c.name, c.source) for c in reply.tool_calls] == [("list_datasets", "text")]
    assert reply.usage["prompt_tokens"] > 2000 and reply.finish_reason == "stop"
    assert shown == "" and resets == []  # nothing left to show, nothing taken back


def test_empty_stream_is_a_truncated_answer(server):
    exchange = recording("probe-lcp.jsonl")[9]
    assert exchange.response_text == ""  # tool_choice "required" on this server
    server.script([Reply.recorded(exchange)] * 2)
    body = exchange.request_body
    with chat_for(server, max_retries=1) as chat:
        with pytest.raises(LLMError) as info:
            chat.complete(body["messages"], tools=body["tools"], tool_choice="required")
    assert info.value.reason == "truncated" and info.value.attempts == 2


def test_named_tool_choice_streams_native_calls(server):
    exchange = recording("probe-lcp.jsonl")[10]
    reply, shown, _ = replay(server, exchange)
    # Every delta repeats the id and the name; the arguments come in pieces.
    (call,) = reply.tool_calls
    assert (call.name, call.source) == ("list_datasets", "native")
    assert call.id == "call__0_list_datasets_cmpl-ddb6a86d-f447-4d50-8e18-413d52f72ea0"
    assert call.parse_arguments() == {"classes": ["left_hand", "right_hand"], "min_subjects": 1}
    assert reply.finish_reason == "tool_calls" and shown == "" and reply.usage is None
