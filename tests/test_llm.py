"""The LLM client against a local scripted server, through the real ``openai`` SDK.

Nothing here patches or mocks the SDK: every request goes over HTTP to
:class:`~chatbci.assistant.testing.FakeLLMServer` on 127.0.0.1, so these
tests exercise the code that talks to OpenAI, Azure, Ollama or vLLM.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel, SecretStr

from chatbci.assistant.llm import (
    OPENAI_BASE_URL,
    DEFAULT_MODEL,
    NO_KEY_PLACEHOLDER,
    Backend,
    Completion,
    LLMConfigError,
    LLMError,
    LLMSettings,
    OpenAIChat,
    ToolArgumentsError,
    ToolCall,
)
from chatbci.assistant.testing import FakeLLMServer, Fault, Reply

KEY = "test-key-123"
MESSAGES = [{"role": "system", "content": "You help design motor-imagery decoders."},
            {"role": "user", "content": "Which datasets can I use?"}]
TOOLS = [
    {"type": "function", "function": {
        "name": "list_datasets", "description": "List the available MI datasets.",
        "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {
        "name": "explore_subject", "description": "ERD/ERS and band power of one subject.",
        "parameters": {"type": "object", "properties": {
            "dataset": {"type": "string"}, "subject": {"type": "integer"}},
            "required": ["dataset", "subject"]}}},
]
LONG_TEXT = ("SimulatedMI has 10 subjects with left- and right-hand imagery; "
             "BNCI2014_001 has 9 subjects and four classes.")


@pytest.fixture
def server():
    with FakeLLMServer() as srv:
        yield srv
        # A clean run leaves no server-side errors behind.
        assert srv.errors == []


class Waits(list):
    """A ``sleep`` that records the waits (and really sleeps them, briefly)."""

    def __call__(self, seconds):
        self.append(seconds)
        time.sleep(min(seconds, 0.05))


def make_chat(server, *, key=KEY, model="fake-model", timeout=2.0, max_retries=3,
              backoff=0.001, max_retry_after=0.05, sleep=None, **settings):
    settings = LLMSettings(model=model, base_url=server.base_url, api_key=SecretStr(key),
                           timeout=timeout, max_retries=max_retries, **settings)
    return OpenAIChat(settings, backoff=backoff, max_retry_after=max_retry_after,
                      sleep=sleep if sleep is not None else Waits())


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raw_sse(server, body):
    """The ``data:`` payloads of a raw streamed response (httpx, no SDK)."""
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=5) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


# --------------------------------------------------------------------------
# The server speaks the API the SDK expects
# --------------------------------------------------------------------------

def test_raw_stream_chunks_validate_against_sdk_models(server):
    server.script([Reply.text(LONG_TEXT),
                   Reply.tool_calls([("list_datasets", {}),
                                     ("explore_subject", {"dataset": "SimulatedMI", "subject": 1})])])
    body = {"model": "fake-model", "messages": MESSAGES, "stream": True,
            "stream_options": {"include_usage": True}}

    events = raw_sse(server, body)
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(e)) for e in events[:-1]]
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == LONG_TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == (
        chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens)

    chunks = [ChatCompletionChunk.model_validate(json.loads(e))
              for e in raw_sse(server, body)[:-1]]
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    # Like OpenAI: id and name in the first delta of each call, then argument fragments.
    assert [d.function.name for d in deltas if d.id] == ["list_datasets", "explore_subject"]
    assert sum(1 for d in deltas if d.index == 1 and not d.id) > 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_non_stream_response_is_a_complete_chat_completion(server):
    server.script([Reply.text("Two datasets."),
                   Reply.tool_calls([("explore_subject", {"dataset": "SimulatedMI", "subject": 1})])])
    client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    try:
        first = client.chat.completions.create(model="fake-model", messages=MESSAGES)
        raw = httpx.post(f"{server.base_url}/chat/completions", timeout=5,
                         json={"model": "fake-model", "messages": MESSAGES}).json()
        models = client.models.list()
    finally:
        client.close()

    assert first.object == "chat.completion" and first.model == "fake-model"
    assert first.choices[0].message.content == "Two datasets."
    assert first.choices[0].finish_reason == "stop"
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens > 0
    second = ChatCompletion.model_validate(raw)  # validated, not just constructed
    call = second.choices[0].message.tool_calls[0]
    assert second.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "explore_subject", {"dataset": "SimulatedMI", "subject": 1})
    assert [m.id for m in models.data] == ["fake-model"]


# --------------------------------------------------------------------------
# Happy paths
# --------------------------------------------------------------------------

def test_streaming_text_arrives_in_order(server):
    server.script([Reply.text(LONG_TEXT)])
    deltas = []
    with make_chat(server) as chat:
        reply = chat.complete(MESSAGES, on_delta=deltas.append)

    assert len(deltas) >= 10 and "".join(deltas) == LONG_TEXT
    assert reply.text == LONG_TEXT and reply.tool_calls == []
    assert reply.finish_reason == "stop" and reply.model == "fake-model"
    assert reply.attempts == 1 and reply.latency_s > 0
    assert set(reply.usage) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert reply.as_message() == {"role": "assistant", "content": LONG_TEXT}
    sent = server.requests[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["temperature"] == 0.2


def test_several_tool_calls_in_one_reply(server):
    server.script([Reply.tool_calls(
        [("list_datasets", {}),
         ("explore_subject", {"dataset": "SimulatedMI", "subject": 1}),
         ("explore_subject", {"dataset": "BNCI2014_001", "subject": 3, "bands": [8, 30]})],
        text="Let me look.", chunk_size=3)])
    deltas = []
    with make_chat(server) as chat:
        reply = chat.complete(MESSAGES, tools=TOOLS, on_delta=deltas.append)

    assert "".join(deltas) == reply.text == "Let me look."
    assert reply.finish_reason == "tool_calls"
    assert [c.name for c in reply.tool_calls] == ["list_datasets", "explore_subject",
                                                  "explore_subject"]
    assert [c.parse_arguments() for c in reply.tool_calls] == [
        {}, {"dataset": "SimulatedMI", "subject": 1},
        {"dataset": "BNCI2014_001", "subject": 3, "bands": [8, 30]}]
    ids = [c.id for c in reply.tool_calls]
    assert len(set(ids)) == 3 and all(i.startswith("call_") for i in ids)
    message = reply.as_message()
    assert message["role"] == "assistant" and message["content"] == "Let me look."
    assert message["tool_calls"][1] == {
        "id": ids[1], "type": "function",
        "function": {"name": "explore_subject",
                     "arguments": json.dumps({"dataset": "SimulatedMI", "subject": 1})}}


def test_tool_calls_without_text_have_null_content(server):
    server.script([Reply.tool_calls([("list_datasets", {})])])
    deltas = []
    with make_chat(server) as chat:
        reply = chat.complete(MESSAGES, tools=TOOLS, on_delta=deltas.append)
    assert deltas == [] and reply.text == ""
    assert reply.as_message()["content"] is None


def test_key_tools_and_messages_are_forwarded(server):
    server.api_key = KEY  # the server now rejects any other key
    server.script([Reply.text("a"), Reply.text("b")])
    with make_chat(server, temperature=None) as chat:
        chat.complete(MESSAGES, tools=TOOLS, tool_choice="required")
        chat.complete(MESSAGES)

    assert [h["authorization"] for h in server.headers] == [f"Bearer {KEY}"] * 2
    with_tools, without = server.requests
    assert with_tools["model"] == "fake-model" and with_tools["messages"] == MESSAGES
    assert with_tools["tools"] == TOOLS and with_tools["tool_choice"] == "required"
    # tool_choice alone is a 400 at OpenAI; temperature None is left out.
    assert "tools" not in without and "tool_choice" not in without
    assert "temperature" not in without


def test_no_key_sends_a_placeholder_to_local_servers(server):
    server.script([Reply.text("hi")])
    with make_chat(server, key="") as chat:
        assert chat.complete(MESSAGES).text == "hi"
    assert server.headers[0]["authorization"] == f"Bearer {NO_KEY_PLACEHOLDER}"


def test_openai_chat_is_a_backend(server):
    with make_chat(server) as chat:
        assert isinstance(chat, Backend)
        assert chat.is_llm is True and chat.name == "openai" and chat.model == "fake-model"
        assert KEY not in repr(chat)


# --------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------

def test_rate_limit_then_success_honours_retry_after(server):
    server.script([Fault.status(429, retry_after=0.3), Reply.text("ok")])
    waits = Waits()
    with make_chat(server, sleep=waits, max_retry_after=1.0) as chat:
        reply = chat.complete(MESSAGES)
    assert reply.text == "ok" and reply.attempts == 2 and len(server.requests) == 2
    assert waits == [pytest.approx(0.3)]  # from retry-after-ms, not the backoff


def test_long_retry_after_is_capped(server):
    server.script([Fault.status(429, retry_after=30), Reply.text("ok")])
    waits = Waits()
    started = time.monotonic()
    with make_chat(server, sleep=waits, max_retry_after=0.05) as chat:
        assert chat.complete(MESSAGES).attempts == 2
    assert waits == [0.05] and time.monotonic() - started < 2


def test_server_errors_exhaust_retries(server):
    server.script([Fault.status(500)] * 3)
    waits = Waits()
    with make_chat(server, max_retries=2, backoff=0.01, sleep=waits) as chat:
        with pytest.raises(LLMError) as info:
            chat.complete(MESSAGES)
    err = info.value
    assert "500" in str(err) and "after 3 attempts" in str(err)
    assert "base_url" in str(err) and "offline" in str(err)
    assert (err.status_code, err.attempts, err.reason) == (500, 3, "server_error")
    assert len(server.requests) == 3
    # Exponential backoff with at most 25 % jitter.
    assert 0.0075 <= waits[0] <= 0.01 and 0.015 <= waits[1] <= 0.02


def test_hang_past_timeout_is_retried_then_fails(server):
    server.script([Fault.hang(2), Fault.hang(2)])
    started = time.monotonic()
    with make_chat(server, timeout=0.5, max_retries=1) as chat:
        with pytest.raises(LLMError) as info:
            chat.complete(MESSAGES)
    assert time.monotonic() - started < 1.9
    assert "timeout" in str(info.value) and "after 2 attempts" in str(info.value)
    assert info.value.reason == "timeout" and info.value.status_code is None


def test_hang_then_success(server):
    server.script([Fault.hang(2), Reply.text("late but fine")])
    with make_chat(server, timeout=0.3) as chat:
        reply = chat.complete(MESSAGES)
    assert reply.text == "late but fine" and reply.attempts == 2


@pytest.mark.parametrize("fault", [
    Fault.truncated_stream("The first words of", mode="close"),
    Fault.truncated_stream("The first words of", mode="end"),
    Fault.hang(2, partial_text="The first words of"),  # stalls mid-stream
    Fault.corrupt_stream("The first words of"),
    Fault.stream_error(partial_text="The first words of"),
], ids=["cut", "no-finish-reason", "stall", "corrupt-event", "error-event"])
def test_failed_stream_then_success_resets_partial_text(server, fault):
    server.script([fault, Reply.text(LONG_TEXT)])
    shown, resets = [], []

    def reset():
        resets.append("".join(shown))
        shown.clear()

    with make_chat(server, timeout=0.5) as chat:
        reply = chat.complete(MESSAGES, on_delta=shown.append, on_reset=reset)
    assert resets == ["The first words of"]
    assert "".join(shown) == reply.text == LONG_TEXT and reply.attempts == 2


def test_persistently_truncated_stream_fails(server):
    server.script([Fault.truncated_stream(mode="end")] * 2)
    with make_chat(server, max_retries=1) as chat:
        with pytest.raises(LLMError) as info:
            chat.complete(MESSAGES)
    assert info.value.reason == "truncated" and "after 2 attempts" in str(info.value)
    assert "ended before the answer was complete" in str(info.value)


def test_connection_refused(server):
    settings = LLMSettings(model="m", base_url=f"http://127.0.0.1:{free_port()}/v1",
                           api_key=SecretStr(KEY), max_retries=1)
    with OpenAIChat(settings, backoff=0.001) as chat:
        with pytest.raises(LLMError) as info:
            chat.complete(MESSAGES)
    assert info.value.reason == "connection" and info.value.attempts == 2
    assert "Is the server running" in str(info.value)


def test_on_delta_exceptions_pass_through_without_retry(server):
    class Stop(Exception):
        pass

    def stop(_):
        raise Stop

    server.script([Reply.text(LONG_TEXT), Reply.text("next")])
    with make_chat(server) as chat:
        with pytest.raises(Stop):
            chat.complete(MESSAGES, on_delta=stop)
        assert chat.complete(MESSAGES).text == "next"  # the client is still usable
    assert len(server.requests) == 2


# --------------------------------------------------------------------------
# Failures that no retry fixes
# --------------------------------------------------------------------------

def test_wrong_key_fails_at_once_with_a_hint(server):
    server.api_key = "another-key-456"
    with make_chat(server) as chat:
        with pytest.raises(LLMError) as info:
            chat.complete(MESSAGES)
    err = info.value
    assert (err.status_code, err.attempts, err.reason) == (401, 1, "auth")
    assert "OPENAI_API_KEY" in str(err) and KEY not in str(err)
    assert len(server.requests) == 1


def test_unknown_model_fails_at_once(server):
    server.models = ["fake-model"]
    with make_chat(server, model="gpt-nonexistent") as chat:
        with pytest.raises(LLMError) as info:
            chat.complete(MESSAGES)
    assert info.value.status_code == 404 and len(server.requests) == 1
    assert "'gpt-nonexistent' not found at " + server.base_url in str(info.value)


@pytest.mark.parametrize("fault, reason, words", [
    (Fault.status(400, "tools are not supported"), "bad_request", "tools are not supported"),
    (Fault.status(403), "permission", "OPENAI_API_KEY"),
    (Fault.status(429, error_code="insufficient_quota", retry_after=0), "quota", "billing"),
])
def test_other_non_retryable_errors(server, fault, reason, words):
    server.script([fault])
    with make_chat(server) as chat:
        with pytest.raises(LLMError) as info:
            chat.complete(MESSAGES)
    assert info.value.reason == reason and info.value.attempts == 1
    assert words in str(info.value) and len(server.requests) == 1


# --------------------------------------------------------------------------
# Tool call arguments
# --------------------------------------------------------------------------

def test_malformed_arguments_are_returned_raw_and_fail_to_parse(server):
    server.script([Fault.malformed_arguments("explore_subject", '{"subject": 1,')])
    with make_chat(server) as chat:
        call = chat.complete(MESSAGES, tools=TOOLS).tool_calls[0]
    assert (call.name, call.arguments) == ("explore_subject", '{"subject": 1,')
    with pytest.raises(ToolArgumentsError) as info:
        call.parse_arguments()
    message = str(info.value)
    assert "'explore_subject'" in message and "not valid JSON" in message
    assert "Expecting property name enclosed in double quotes" in message
    assert (info.value.tool_name, info.value.call_id, info.value.raw) == (
        "explore_subject", call.id, '{"subject": 1,')


@pytest.mark.parametrize("raw, expected", [("", {}), ("  ", {}), ('{"a": [1]}', {"a": [1]})])
def test_parse_arguments_accepts_objects_and_empty(raw, expected):
    assert ToolCall("call_1", "t", raw).parse_arguments() == expected


@pytest.mark.parametrize("raw", ["[1, 2]", "3", '"text"', "null"])
def test_parse_arguments_rejects_non_objects(raw):
    with pytest.raises(ToolArgumentsError, match="must be a JSON object"):
        ToolCall("call_1", "list_datasets", raw).parse_arguments()


def test_unknown_tool_is_returned_for_the_session_to_reject(server):
    server.script([Fault.unknown_tool("rm_rf", {"path": "/"})])
    with make_chat(server) as chat:
        reply = chat.complete(MESSAGES, tools=TOOLS)
    assert [(c.name, c.parse_arguments()) for c in reply.tool_calls] == [("rm_rf", {"path": "/"})]


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

def test_settings_defaults_and_environment():
    settings = LLMSettings.resolve(env={})
    assert (settings.model, settings.base_url, settings.timeout, settings.max_retries,
            settings.temperature) == (DEFAULT_MODEL, None, 60.0, 3, 0.2)
    assert settings.api_key.get_secret_value() == "" and not settings.has_credentials

    toml = {"model": "gpt-4o", "base_url": "http://127.0.0.1:9/v1", "timeout": 5,
            "max_retries": 1, "temperature": 0.0}
    from_toml = LLMSettings.resolve(toml, env={})
    assert (from_toml.model, from_toml.base_url, from_toml.timeout) == (
        "gpt-4o", "http://127.0.0.1:9/v1", 5.0)
    env = {"CHATBCI_MODEL": "llama3.1", "OPENAI_BASE_URL": "http://localhost:11434/v1",
           "OPENAI_API_KEY": KEY}
    both = LLMSettings.resolve(toml, env=env)
    assert (both.model, both.base_url, both.timeout, both.max_retries) == (
        "llama3.1", "http://localhost:11434/v1", 5.0, 1)
    assert both.api_key.get_secret_value() == KEY
    # Blank variables count as unset; None values in the table are ignored.
    blank = LLMSettings.resolve({"model": None}, env={"CHATBCI_MODEL": " ", "OPENAI_API_KEY": ""})
    assert blank.model == DEFAULT_MODEL and not blank.has_credentials


def test_settings_accept_a_pydantic_section():
    class Section(BaseModel):
        model: str | None = "gpt-4.1-mini"
        base_url: str | None = None

    assert LLMSettings.resolve(Section(), env={}).model == "gpt-4.1-mini"


def test_plain_settings_read_the_process_environment(monkeypatch):
    monkeypatch.setenv("CHATBCI_MODEL", "qwen2.5")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    settings = LLMSettings()
    assert (settings.model, settings.base_url) == ("qwen2.5", "http://localhost:8000/v1")
    assert settings.api_key.get_secret_value() == KEY
    assert LLMSettings.resolve().model == "qwen2.5"


@pytest.mark.parametrize("key", ["api_key", "token", "API_KEY"])
def test_api_key_in_the_workspace_is_rejected(key):
    with pytest.raises(LLMConfigError) as info:
        LLMSettings.resolve({"model": "gpt-4o", key: "not-a-real-key-789"}, env={})
    assert "OPENAI_API_KEY" in str(info.value) and "not-a-real-key-789" not in str(info.value)


@pytest.mark.parametrize("table, words", [
    ({"modle": "gpt-4o"}, "unknown setting(s) modle"),
    ({"timeout": -1}, "[llm] timeout in workspace.toml = -1"),
    ({"max_retries": "many"}, "[llm] max_retries"),
    ({"temperature": 3}, "less than or equal to 2"),
    ({"base_url": "localhost:11434"}, "http(s) URL"),
    ({"model": "  "}, "must name a model"),
])
def test_invalid_settings_name_the_key(table, words):
    with pytest.raises(LLMConfigError) as info:
        LLMSettings.resolve(table, env={})
    assert words in str(info.value)


def test_invalid_environment_value_names_the_variable():
    with pytest.raises(LLMConfigError, match="OPENAI_BASE_URL"):
        LLMSettings.resolve(env={"OPENAI_BASE_URL": "ollama"})


def test_api_key_is_never_revealed():
    settings = LLMSettings.resolve(env={"OPENAI_API_KEY": KEY})
    for text in (repr(settings), str(settings), settings.model_dump_json(),
                 str(settings.model_dump()), json.dumps(settings.public_dict())):
        assert KEY not in text
    assert settings.public_dict()["api_key_set"] is True


@pytest.mark.parametrize("env, expected", [
    ({}, False),
    ({"OPENAI_API_KEY": KEY}, True),
    ({"OPENAI_BASE_URL": "http://localhost:11434/v1"}, True),  # Ollama needs no key
    ({"OPENAI_BASE_URL": OPENAI_BASE_URL}, False),  # OpenAI itself needs a key
    ({"OPENAI_BASE_URL": "https://myres.openai.azure.com/openai/v1/"}, True),
])
def test_has_credentials(env, expected):
    assert LLMSettings.resolve(env=env).has_credentials is expected


# --------------------------------------------------------------------------
# The server itself
# --------------------------------------------------------------------------

def test_servers_run_in_parallel_and_survive_disconnects():
    servers = [FakeLLMServer(default=Reply.text(f"server {i}")).start() for i in range(3)]
    try:
        assert len({s.port for s in servers}) == 3
        results = {}

        def ask(i):
            with make_chat(servers[i]) as chat:
                results[i] = chat.complete(MESSAGES).text

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == {i: f"server {i}" for i in range(3)}

        # A client that times out mid-stream leaves the server serving.
        servers[0].script([Fault.hang(5, partial_text="partial")])
        with make_chat(servers[0], timeout=0.2, max_retries=0) as chat:
            with pytest.raises(LLMError):
                chat.complete(MESSAGES)
            assert chat.complete(MESSAGES).text == "server 0"
        assert all(s.errors == [] for s in servers)
    finally:
        started = time.monotonic()
        for s in servers:
            s.close()
        assert time.monotonic() - started < 3  # close() interrupts the hang


def test_responder_failures_become_500s():
    def broken(request):
        raise RuntimeError("boom")

    with FakeLLMServer(responder=broken) as server:
        with make_chat(server, max_retries=0) as chat:
            with pytest.raises(LLMError, match="500"):
                chat.complete(MESSAGES)
        assert server.errors == ["responder failed: RuntimeError: boom"]


def test_script_rejects_other_objects(server):
    with pytest.raises(TypeError, match="Reply or Fault"):
        server.script(["hello"])


# --------------------------------------------------------------------------
# Randomised faults
# --------------------------------------------------------------------------

def test_random_faults_give_a_completion_or_an_llm_error():
    rng = random.Random(20240611)
    lock = threading.Lock()
    choices = [
        (8, lambda: Reply.text(" ".join(rng.choice(["alpha", "mu", "beta", "CSP", "LDA"])
                                        for _ in range(rng.randint(0, 30))),
                               chunk_size=rng.randint(1, 8))),
        (4, lambda: Reply.tool_calls(
            [(rng.choice(["list_datasets", "explore_subject"]),
              {"subject": rng.randint(1, 9)}) for _ in range(rng.randint(1, 3))],
            text=rng.choice(["", "Checking."]), chunk_size=rng.randint(1, 6))),
        (1, lambda: Reply.text("cut", finish_reason="length")),
        (2, lambda: Fault.status(rng.choice([429, 500, 502, 503]), retry_after=0)),
        (1, lambda: Fault.status(rng.choice([400, 401, 404]))),
        (1, lambda: Fault.hang(0.4, partial_text=rng.choice(["", "half"]))),
        (1, lambda: Fault.hang(0)),
        (1, lambda: Fault.malformed_arguments("explore_subject", '{"subject": ')),
        (1, lambda: Fault.unknown_tool("rm_rf", {})),
        (2, lambda: Fault.truncated_stream(mode=rng.choice(["close", "end"]))),
        (1, lambda: Fault.corrupt_stream()),
        (1, lambda: Fault.stream_error()),
    ]
    weights = [w for w, _ in choices]

    def responder(request):
        with lock:
            return rng.choices(choices, weights)[0][1]()

    outcomes = {"completion": 0, "error": 0}
    started = time.monotonic()
    with FakeLLMServer(responder=responder) as server:
        with make_chat(server, timeout=0.2, max_retries=2, max_retry_after=0.01) as chat:
            for _ in range(100):
                shown = []
                try:
                    reply = chat.complete(MESSAGES, tools=TOOLS, on_delta=shown.append,
                                          on_reset=shown.clear)
                except LLMError as err:
                    outcomes["error"] += 1
                    assert 1 <= err.attempts <= 3 and str(err)
                    continue
                outcomes["completion"] += 1
                assert isinstance(reply, Completion) and 1 <= reply.attempts <= 3
                assert reply.finish_reason in ("stop", "tool_calls", "length")
                assert "".join(shown) == reply.text
                answer = server.answers[-1]
                assert reply.text == answer.content
                assert [(c.name, c.arguments) for c in reply.tool_calls] == [
                    (name, args) for name, args, _ in answer.calls]
                for call in reply.tool_calls:
                    try:
                        assert isinstance(call.parse_arguments(), dict)
                    except ToolArgumentsError:
                        pass
        assert server.errors == []
    assert outcomes["completion"] > 50 and outcomes["error"] > 0
    assert time.monotonic() - started < 30


# --------------------------------------------------------------------------
# The answer cap, sampling settings and what is journaled of them
# --------------------------------------------------------------------------

def test_answer_cap_seed_and_temperature_are_sent_and_reported(server):
    server.script([Reply.text("ok"), Reply.text("ok")])
    with make_chat(server, max_tokens=300, seed=7, temperature=0.0) as chat:
        assert chat.max_tokens_param == "max_tokens"  # a local server
        reply = chat.complete(MESSAGES, tools=TOOLS)
    sent = server.requests[0]
    assert (sent["max_tokens"], sent["seed"], sent["temperature"]) == (300, 7, 0.0)
    assert "max_completion_tokens" not in sent
    assert reply.request_params == {
        "temperature": 0.0, "seed": 7, "max_tokens": 300, "max_tokens_param": "max_tokens",
        "stream": True, "tool_calls": "auto", "tool_choice": "auto"}
    with make_chat(server, max_tokens=None, temperature=None) as chat:
        reply = chat.complete(MESSAGES)
    sent = server.requests[1]
    assert not {"max_tokens", "max_completion_tokens", "seed", "temperature"} & set(sent)
    assert reply.request_params["max_tokens"] is None
    assert reply.request_params["tool_choice"] is None  # no tools were sent


@pytest.mark.parametrize("base_url, param", [
    (None, "max_completion_tokens"),
    ("https://myres.openai.azure.com/openai/v1/", "max_completion_tokens"),
    ("https://myres.cognitiveservices.azure.com/openai/v1/", "max_completion_tokens"),
    ("http://localhost:11434/v1", "max_tokens"),
    ("http://localhost:8000/v1", "max_tokens"),
])
def test_cap_parameter_name_per_provider(base_url, param):
    settings = LLMSettings(model="m", base_url=base_url, api_key=SecretStr(KEY))
    with OpenAIChat(settings) as chat:
        assert chat.max_tokens_param == param


@pytest.mark.parametrize("rejected, accepted", [
    ("max_tokens", "max_completion_tokens"), ("max_completion_tokens", "max_tokens")])
def test_server_rejecting_the_cap_name_gets_the_other_one(server, rejected, accepted):
    message = (f"Unsupported parameter: '{rejected}' is not supported with this model. "
               f"Use '{accepted}' instead.")
    server.script([Fault.status(400, message, error_code="unsupported_parameter",
                                param=rejected), Reply.text("ok"), Reply.text("again")])
    with make_chat(server, max_retries=0, max_tokens=256) as chat:
        chat._cap_param = rejected  # as chosen for this provider
        assert chat.complete(MESSAGES).text == "ok"
        assert chat.max_tokens_param == accepted
        reply = chat.complete(MESSAGES)
    first, second, third = server.requests
    assert first[rejected] == 256 and rejected not in second and second[accepted] == 256
    assert third[accepted] == 256 and rejected not in third
    assert reply.request_params["max_tokens_param"] == accepted


def test_length_finish_is_truncated(server):
    server.script([Reply.text("A long answer that was", finish_reason="length"),
                   Reply.text("Short.")])
    with make_chat(server) as chat:
        cut = chat.complete(MESSAGES)
        whole = chat.complete(MESSAGES)
    assert cut.truncated and cut.finish_reason == "length" and cut.text == "A long answer that was"
    assert not whole.truncated
    # A constructed Completion says so too (the offline backend builds them).
    assert Completion("x", finish_reason="length").truncated
    assert not Completion("x").truncated and Completion("x").request_params == {}


def test_usage_not_reported_is_unknown(server):
    server.script([Reply.text("no usage", usage=False),
                   Reply.recorded({"status": 200, "body": (
                       'data: {"id": "c1", "object": "chat.completion.chunk", "created": 1, '
                       '"model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}, '
                       '"finish_reason": "stop"}], "usage": {"prompt_tokens": 0, '
                       '"completion_tokens": 0, "total_tokens": 0}}\n\ndata: [DONE]\n\n')})])
    with make_chat(server) as chat:
        missing = chat.complete(MESSAGES)
        zeros = chat.complete(MESSAGES)
    assert server.requests[0]["stream_options"] == {"include_usage": True}
    assert missing.text == "no usage" and missing.usage is None
    assert zeros.text == "hi" and zeros.usage is None  # a placeholder, not a count


# --------------------------------------------------------------------------
# Without streaming
# --------------------------------------------------------------------------

def test_non_streaming_text_and_tool_calls(server):
    server.script([Reply.text(LONG_TEXT),
                   Reply.tool_calls([("explore_subject", {"dataset": "SimulatedMI",
                                                          "subject": 1})], text="Looking."),
                   Reply.text("cut", finish_reason="length")])
    deltas = []
    with make_chat(server, stream=False) as chat:
        text = chat.complete(MESSAGES, on_delta=deltas.append)
        calls = chat.complete(MESSAGES, tools=TOOLS, on_delta=deltas.append)
        cut = chat.complete(MESSAGES)
    assert deltas == [LONG_TEXT, "Looking."]  # once per answer, the whole text
    assert text.text == LONG_TEXT and text.usage["total_tokens"] > 0
    assert text.finish_reason == "stop" and text.request_params["stream"] is False
    assert [(c.name, c.parse_arguments(), c.source) for c in calls.tool_calls] == [
        ("explore_subject", {"dataset": "SimulatedMI", "subject": 1}, "native")]
    assert calls.finish_reason == "tool_calls" and calls.text == "Looking."
    assert cut.truncated
    assert all(r["stream"] is False and "stream_options" not in r for r in server.requests)


def test_non_streaming_retries_and_timeout_hint(server):
    server.script([Fault.status(503), Fault.truncated_stream(), Reply.text("fine")])
    with make_chat(server, stream=False) as chat:
        reply = chat.complete(MESSAGES)
    assert reply.text == "fine" and reply.attempts == 3
    server.script([Fault.hang(2), Fault.hang(2)])
    with make_chat(server, stream=False, timeout=0.3, max_retries=1) as chat:
        with pytest.raises(LLMError) as info:
            chat.complete(MESSAGES)
    assert info.value.reason == "timeout"
    assert "raise [llm] timeout (now 0.3 s" in str(info.value)
    assert "whole answer must arrive within it" in str(info.value)


# --------------------------------------------------------------------------
# Tool-call modes
# --------------------------------------------------------------------------

TAGGED = ('Let me check.\n<tool_call>\n{"name": "explore_subject", "arguments": '
          '{"dataset": "SimulatedMI", "subject": 2}}\n</tool_call>')


def test_text_mode_sends_no_schemas_and_reads_written_calls(server):
    server.script([Reply.text(TAGGED)])
    shown, resets = [], []

    def reset():
        resets.append("".join(shown))
        shown.clear()

    with make_chat(server, tool_calls="text") as chat:
        reply = chat.complete(MESSAGES, tools=TOOLS, on_delta=shown.append, on_reset=reset)
    sent = server.requests[0]
    assert "tools" not in sent and "tool_choice" not in sent
    assert [(c.name, c.parse_arguments(), c.source) for c in reply.tool_calls] == [
        ("explore_subject", {"dataset": "SimulatedMI", "subject": 2}, "text")]
    assert reply.text == "Let me check." and reply.raw_text == TAGGED
    assert resets == [TAGGED] and "".join(shown) == "Let me check."
    assert reply.request_params["tool_calls"] == "text"
    assert reply.request_params["tool_choice"] is None
    message = reply.as_message()
    assert message["content"] == "Let me check."
    assert message["tool_calls"][0]["function"]["name"] == "explore_subject"


def test_auto_mode_reads_written_calls_only_for_declared_tools(server):
    server.script([Reply.text(TAGGED),
                   Reply.text(TAGGED.replace("explore_subject", "rm_rf")),
                   Reply.text(TAGGED)])
    with make_chat(server) as chat:
        written = chat.complete(MESSAGES, tools=TOOLS)
        undeclared = chat.complete(MESSAGES, tools=TOOLS)
        no_tools = chat.complete(MESSAGES)
    assert server.requests[0]["tools"] == TOOLS  # auto still sends the schemas
    assert [c.source for c in written.tool_calls] == ["text"]
    assert undeclared.tool_calls == [] and "rm_rf" in undeclared.text
    assert no_tools.tool_calls == [] and no_tools.text == TAGGED


def test_native_calls_win_and_tool_choice_none_reads_no_text(server):
    server.script([Reply.tool_calls([("list_datasets", {})], text=TAGGED),
                   Reply.text(TAGGED)])
    with make_chat(server) as chat:
        native = chat.complete(MESSAGES, tools=TOOLS)
        none = chat.complete(MESSAGES, tools=TOOLS, tool_choice="none")
    assert [(c.name, c.source) for c in native.tool_calls] == [("list_datasets", "native")]
    assert native.text == TAGGED and native.raw_text is None
    assert none.tool_calls == [] and none.text == TAGGED


# --------------------------------------------------------------------------
# Context-size errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("style, prompt, window", [
    ("llama.cpp", 8210, 8192), ("openai", 130000, 128000), ("vllm", 5000, 4096)])
def test_context_errors_of_each_server_are_classified(server, style, prompt, window):
    server.script([Fault.context_exceeded(prompt, window, style=style)])
    with make_chat(server, max_retries=3) as chat:
        with pytest.raises(LLMError) as info:
            chat.complete(MESSAGES)
    err = info.value
    assert (err.reason, err.attempts, err.prompt_tokens, err.context_tokens) == (
        "context_length", 1, prompt, window)
    assert len(server.requests) == 1 and f"{window:,}" in str(err)
    assert "tool calling" not in str(err)


@pytest.mark.parametrize("message", [
    "Requested tokens (9000) exceed context window of 8192",
    "prompt is too long: 210000 tokens > 200000 maximum",
    "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: "
    "3900 `inputs` tokens and 1024 `max_new_tokens`",
    "The number of tokens to keep from the initial prompt is greater than the context length",
])
def test_other_context_messages_are_recognised(server, message):
    server.script([Fault.status(400, message)])
    with make_chat(server) as chat:
        with pytest.raises(LLMError) as info:
            chat.complete(MESSAGES)
    assert info.value.reason == "context_length" and info.value.attempts == 1


def test_answer_cap_shrinks_to_the_room_the_prompt_leaves(server):
    # vLLM refuses a prompt that fits when prompt + max_tokens does not.
    server.script([Fault.context_exceeded(1500, 2048, style="vllm", max_tokens=1024),
                   Reply.text("fits")])
    with make_chat(server, max_retries=0, max_tokens=1024) as chat:
        reply = chat.complete(MESSAGES)
    assert reply.text == "fits" and reply.attempts == 2
    assert [r["max_tokens"] for r in server.requests] == [1024, 548]
    assert reply.request_params["max_tokens"] == 548
    # Too little room left: the error stands, and says what to change.
    server.script([Fault.context_exceeded(2000, 2048, style="vllm", max_tokens=1024)])
    with make_chat(server, max_tokens=1024) as chat:
        with pytest.raises(LLMError) as info:
            chat.complete(MESSAGES)
    assert "answer may take up to 1,024" in str(info.value)
    assert "lower [llm] max_tokens (now 1,024)" in str(info.value)


def test_generic_bad_request_points_at_the_new_settings(server):
    server.script([Fault.status(400, "tools param requires --jinja flag")])
    with make_chat(server) as chat:
        with pytest.raises(LLMError) as info:
            chat.complete(MESSAGES, tools=TOOLS)
    assert info.value.reason == "bad_request"
    assert 'tool_calls = "text"' in str(info.value) and "stream = false" in str(info.value)


# --------------------------------------------------------------------------
# The context window
# --------------------------------------------------------------------------

def test_context_window_from_llama_cpp_props():
    with FakeLLMServer(n_ctx=8192) as server:
        with make_chat(server) as chat:
            assert chat.context_tokens() == 8192
            asked = len(server.received)
            assert chat.context_tokens() == 8192 and len(server.received) == asked  # cached
            assert chat.context_tokens(refresh=True) == 8192 and len(server.received) > asked
        paths = [r.path for r in server.received]
    assert paths[:2] == ["/v1/models", "/props"]


def test_context_window_from_vllm_models_listing():
    with FakeLLMServer(model_info={"max_model_len": 32768}) as server:
        with make_chat(server) as chat:
            assert chat.context_tokens() == 32768
        assert [r.path for r in server.received] == ["/v1/models"]


def test_configured_context_window_wins_and_unknown_is_none(server):
    with make_chat(server, context_tokens=4096) as chat:
        assert chat.context_tokens() == 4096
    assert server.received == []
    with make_chat(server) as chat:
        assert chat.context_tokens() is None
        asked = len(server.received)
        assert chat.context_tokens() is None and len(server.received) == asked
    settings = LLMSettings(model="m", base_url=f"http://127.0.0.1:{free_port()}/v1",
                           api_key=SecretStr(KEY))
    started = time.monotonic()
    with OpenAIChat(settings, discovery_timeout=0.5) as chat:
        assert chat.context_tokens() is None  # no server: None, no exception
    assert time.monotonic() - started < 3


# --------------------------------------------------------------------------
# Settings from workspace.toml and the environment
# --------------------------------------------------------------------------

def test_new_settings_defaults_toml_and_environment():
    settings = LLMSettings.resolve(env={})
    assert (settings.max_tokens, settings.context_tokens, settings.seed, settings.stream,
            settings.tool_calls) == (1024, None, None, True, "auto")
    toml = {"timeout": 300, "max_tokens": 512, "context_tokens": 8192, "temperature": 0.0,
            "seed": 42, "stream": False, "tool_calls": "text", "max_retries": 0}
    from_toml = LLMSettings.resolve(toml, env={})
    assert (from_toml.timeout, from_toml.max_tokens, from_toml.context_tokens,
            from_toml.temperature, from_toml.seed, from_toml.stream, from_toml.tool_calls,
            from_toml.max_retries) == (300.0, 512, 8192, 0.0, 42, False, "text", 0)
    env = {"CHATBCI_LLM_TIMEOUT": "120", "CHATBCI_LLM_MAX_TOKENS": "2048",
           "CHATBCI_LLM_CONTEXT_TOKENS": "16384", "CHATBCI_LLM_TEMPERATURE": "0.7",
           "CHATBCI_LLM_SEED": "1", "CHATBCI_LLM_STREAM": "true",
           "CHATBCI_LLM_TOOL_CALLS": "native", "CHATBCI_LLM_MAX_RETRIES": "5",
           "CHATBCI_LLM_SEEDLING": "ignored"}
    both = LLMSettings.resolve(toml, env=env)
    assert (both.timeout, both.max_tokens, both.context_tokens, both.temperature, both.seed,
            both.stream, both.tool_calls, both.max_retries) == (
        120.0, 2048, 16384, 0.7, 1, True, "native", 5)
    assert LLMSettings.resolve(toml, env={"CHATBCI_LLM_MAX_TOKENS": " "}).max_tokens == 512
    public = both.public_dict()
    assert (public["max_tokens"], public["seed"], public["stream"], public["tool_calls"]) == (
        2048, 1, True, "native")


@pytest.mark.parametrize("table, env, words", [
    ({"max_tokens": 0}, {}, "[llm] max_tokens in workspace.toml = 0"),
    ({"context_tokens": -5}, {}, "[llm] context_tokens"),
    ({"tool_calls": "json"}, {}, "'auto', 'native' or 'text'"),
    ({"stream": "sometimes"}, {}, "[llm] stream"),
    ({"seed": 1.5}, {}, "[llm] seed"),
    ({}, {"CHATBCI_LLM_MAX_TOKENS": "lots"}, "the CHATBCI_LLM_MAX_TOKENS environment variable"),
    ({}, {"CHATBCI_LLM_TIMEOUT": "0"}, "CHATBCI_LLM_TIMEOUT environment variable = '0'"),
    ({}, {"CHATBCI_LLM_TOOL_CALLS": "xml"}, "CHATBCI_LLM_TOOL_CALLS"),
    ({"max_token": 5}, {}, "allowed: model, base_url, timeout, max_retries, max_tokens"),
])
def test_invalid_new_settings_name_the_key_or_variable(table, env, words):
    with pytest.raises(LLMConfigError) as info:
        LLMSettings.resolve(table, env=env)
    assert words in str(info.value)


def test_workspace_llm_table_accepts_and_checks_the_new_settings():
    from chatbci.workspace.config import dump_toml, validate_settings
    from chatbci.workspace.errors import ConfigError

    base = {"title": "MI study", "goal": "Compare decoders"}
    llm = {"model": "qwen2.5-7b-instruct", "base_url": "http://127.0.0.1:8080/v1",
           "timeout": 300, "max_retries": 1, "max_tokens": 768, "context_tokens": 8192,
           "temperature": 0.0, "seed": 42, "stream": False, "tool_calls": "text"}
    config = validate_settings({**base, "llm": llm})
    # What the session builds its client from: every [llm] setting.
    settings = LLMSettings.resolve(config.llm.model_dump(), env={})
    assert (settings.timeout, settings.max_tokens, settings.seed, settings.stream,
            settings.tool_calls, settings.context_tokens) == (300.0, 768, 42, False, "text", 8192)
    # Unset settings are left out of workspace.toml and to the defaults.
    minimal = validate_settings({**base, "llm": {"model": "m"}})
    assert "max_tokens" not in dump_toml(minimal.model_dump(mode="json"))
    assert LLMSettings.resolve(minimal.llm.model_dump(), env={}).max_tokens == 1024
    for bad, words in [({"timeout": 0}, "`llm.timeout` = 0"),
                       ({"max_tokens": "1024"}, "`llm.max_tokens`"),
                       ({"tool_calls": "json"}, "'auto', 'native' or 'text'"),
                       ({"stream": "no"}, "`llm.stream`"),
                       ({"max_tokenz": 1}, "allowed keys: base_url, context_tokens")]:
        with pytest.raises(ConfigError) as info:
            validate_settings({**base, "llm": bad})
        assert words in str(info.value)
