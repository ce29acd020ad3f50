"""Tool calls written as text: the forms real small models write, and what must stay text.

The fixture tests read the answers that Qwen2.5-Coder-0.5B really wrote through
llama.cpp and llama-cpp-python (``../shared/fixtures/llm-traffic``); they are
skipped, with the reason, where that folder is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatbci.assistant.llm import ToolArgumentsError, ToolCall
from chatbci.assistant.textcalls import find_text_calls

NAMES = ["list_datasets", "explore_subject", "run_benchmark", "compare_pipelines",
         "list_components"]
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "llm-traffic"


def calls(text, names=NAMES):
    found = find_text_calls(text, names)
    return [(c.name, json.loads(c.arguments) if c.arguments else None, c.form)
            for c in found.calls], found.text


# --------------------------------------------------------------------------
# The forms that are recognised
# --------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected, rest", [
    ('<tool_call>\n{"name": "list_datasets", "arguments": {}}\n</tool_call>',
     [("list_datasets", {}, "tool_call_tag")], ""),
    ('Let me look.\n<tool_call>\n{"name": "explore_subject", "arguments": '
     '{"dataset": "SimulatedMI", "subject": 1}}\n</tool_call>',
     [("explore_subject", {"dataset": "SimulatedMI", "subject": 1}, "tool_call_tag")],
     "Let me look."),
    # Generation stopped before the closing tag.
    ('<tool_call>\n{"name": "list_datasets", "arguments": {}}',
     [("list_datasets", {}, "tool_call_tag")], ""),
    ('<tool_call>{"name": "list_datasets", "arguments": {}}</tool_call>\n'
     '<tool_call>{"name": "list_components", "arguments": {}}</tool_call>',
     [("list_datasets", {}, "tool_call_tag"), ("list_components", {}, "tool_call_tag")], ""),
    ('```json\n{"name": "list_datasets", "arguments": {}}\n```',
     [("list_datasets", {}, "fenced_json")], ""),
    ('I will run it.\n\n```\n{"name": "run_benchmark", "parameters": {"pipelines": ["CSP+LDA"]}}'
     '\n```\n\nThen compare.',
     [("run_benchmark", {"pipelines": ["CSP+LDA"]}, "fenced_json")],
     "I will run it.\n\nThen compare."),
    ('```json\n[{"name": "list_datasets", "arguments": {}}, '
     '{"name": "list_components", "arguments": {}}]\n```',
     [("list_datasets", {}, "fenced_json"), ("list_components", {}, "fenced_json")], ""),
    # OpenAI's own format, arguments as a JSON string.
    ('```json\n{"type": "function", "function": {"name": "explore_subject", '
     '"arguments": "{\\"subject\\": 2}"}}\n```',
     [("explore_subject", {"subject": 2}, "fenced_json")], ""),
    ('  {"name": "list_datasets", "arguments": {}}  ',
     [("list_datasets", {}, "bare_json")], ""),
    ('[TOOL_CALLS][{"name": "list_datasets", "arguments": {}}]',
     [("list_datasets", {}, "mistral")], ""),
    ("functions.list_datasets:", [("list_datasets", None, "functions_prefix")], ""),
    ('functions.explore_subject:\n{"dataset": "SimulatedMI", "subject": 3}',
     [("explore_subject", {"dataset": "SimulatedMI", "subject": 3}, "functions_prefix")], ""),
    ('functions.list_datasets:\nfunctions.explore_subject: {"subject": 1}',
     [("list_datasets", None, "functions_prefix"),
      ("explore_subject", {"subject": 1}, "functions_prefix")], ""),
], ids=["tag", "tag-after-text", "tag-unclosed", "two-tags", "fenced", "fenced-no-lang",
        "fenced-list", "openai-format", "bare", "mistral", "functions-empty",
        "functions-json", "functions-two"])
def test_recognised_forms(text, expected, rest):
    assert calls(text) == (expected, rest)


def test_calls_keep_their_id_and_spans_point_at_the_text():
    text = 'Checking.\n```json\n{"id": "call_7", "name": "list_datasets"}\n```'
    found = find_text_calls(text, NAMES)
    (call,) = found.calls
    assert call.id == "call_7" and call.arguments == ""
    assert text[slice(*call.span)].startswith("```json") and found.text == "Checking."


def test_broken_json_in_a_tag_is_still_a_call_whose_arguments_fail_to_parse():
    text = '<tool_call>\n{"name": "explore_subject", "arguments": {"subject": 1,}}\n</tool_call>'
    (call,) = find_text_calls(text, NAMES).calls
    assert call.name == "explore_subject"
    with pytest.raises(ToolArgumentsError, match="not valid JSON"):
        ToolCall("call_1", call.name, call.arguments, source="text").parse_arguments()


# --------------------------------------------------------------------------
# What must stay text
# --------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    # Not a declared tool.
    '<tool_call>\n{"name": "rm_rf", "arguments": {"path": "/"}}\n</tool_call>',
    '```json\n{"name": "delete_results", "arguments": {}}\n```',
    "functions.rm_rf:",
    # Python, not a call format.
    "```python\ndatasets = list_datasets()\nexplore_subject(1, datasets)\n```",
    "Use `list_datasets()` to see them.",
    # A JSON block in another language, or in prose.
    '```python\n{"name": "list_datasets", "arguments": {}}\n```',
    'The call would be {"name": "list_datasets", "arguments": {}} if you want it.',
    # Describing a tool is not calling it; results are not calls.
    '```json\n{"name": "list_datasets", "description": "List the datasets.", '
    '"parameters": {"type": "object", "properties": {}}}\n```',
    '```json\n{"name": "SimulatedMI", "subjects": 10}\n```',
    '```json\n[{"name": "list_datasets", "arguments": {}}, {"name": "rm_rf"}]\n```',
    '```json\n{"name": "list_datasets", "arguments": {}, "parameters": {}}\n```',
    "functions.list_datasets: lists the available datasets.",
    "See functions.list_datasets: it lists them.",
    '{"name": "list_datasets", "arguments": {}} and then more text',
    "",
], ids=["undeclared-tag", "undeclared-fence", "undeclared-functions", "python-block",
        "inline-code", "python-fence-json", "json-in-prose", "tool-description",
        "result-json", "mixed-list", "both-argument-keys", "functions-prose",
        "functions-mid-line", "bare-json-then-text", "empty"])
def test_not_calls(text):
    found = find_text_calls(text, NAMES)
    assert found.calls == [] and found.text == text and not found


def test_no_declared_tools_means_no_calls():
    assert find_text_calls('{"name": "list_datasets", "arguments": {}}', []).calls == []


# --------------------------------------------------------------------------
# What real models wrote (recorded traffic)
# --------------------------------------------------------------------------

def _answers(name):
    """(exchange id, declared tool names, answer text) of each answer in a recording."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"recorded LLM traffic not found at {FIXTURES} (the shared fixtures "
                    "folder beside the repository)")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    tools = {r["id"]: [t["function"]["name"] for t in r["body"].get("tools", [])]
             for r in records if r["dir"] == "request"}
    out = []
    for r in records:
        if r["dir"] != "response_body" or r["status"] != 200 or not r["body"]:
            continue
        body = r["body"]
        if body.lstrip().startswith("{"):
            text = json.loads(body)["choices"][0]["message"]["content"] or ""
        else:
            text = "".join(
                (choice.get("delta") or {}).get("content") or ""
                for line in body.splitlines() if line.startswith("data: {")
                for choice in json.loads(line[6:]).get("choices", []))
        out.append((r["id"], tools[r["id"]], text))
    return out


def test_fenced_json_written_by_qwen_on_llama_server():
    answers = _answers("ls-explicit.jsonl")
    assert len(answers) == 4
    wanted = ["list_datasets", "explore_subject", "run_benchmark", "compare_pipelines"]
    for (_, names, text), name in zip(answers, wanted):
        found = find_text_calls(text, names)
        assert [(c.name, c.form) for c in found.calls] == [(name, "fenced_json")]
        assert found.text == ""
        # The arguments are the model's (a schema echo here): the tool's schema
        # check, not the parser, judges them.
        assert isinstance(json.loads(found.calls[0].arguments), dict)


def test_functions_prefix_written_through_llama_cpp_python():
    answers = _answers("probe-lcp.jsonl")
    seen = {}
    for exchange, names, text in answers:
        found = find_text_calls(text, names)
        if text:
            assert text.startswith("functions.")
            assert [c.form for c in found.calls] == ["functions_prefix"]
            assert found.calls[0].arguments == "" and found.text == ""
            seen[exchange] = found.calls[0].name
        else:
            assert found.calls == []  # the exchange with native tool calls
    assert seen == {5: "list_datasets", 6: "list_datasets", 7: "list_datasets",
                    8: "list_datasets", 11: "list_datasets", 12: "explore_subject",
                    13: "run_benchmark", 14: "list_components"}


@pytest.mark.parametrize("name", ["lcp-jinja.jsonl", "ls-required.jsonl", "ls-default.jsonl"])
def test_prose_and_python_looking_calls_stay_text(name):
    answers = _answers(name)
    assert answers
    for _, names, text in answers:
        found = find_text_calls(text, names)
        assert found.calls == [] and found.text == text
    if name == "lcp-jinja.jsonl":
        # These answers do name the tools, in prose and Python -- still not calls.
        assert any("list_datasets()" in text for _, _, text in answers)
