"""Claims check: AI claims checked against real tool results in a real journal.

One module-scoped workspace is built by a real session with the offline
assistant (real tools: explore, a SimulatedMI benchmark, show_results,
compare_pipelines, a failed call and a suggestion); the claims are written
from the values the tools really returned, so the checker is tested on the
payload shapes the tools produce.
"""

from __future__ import annotations

import pytest

from chatbci.assistant.claims import (LEGEND, MARKS, ClaimsReport, check_claims,
                                      mark_claims)
from chatbci.workspace import Workspace


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from chatbci.assistant.offline import OfflineBackend
    from chatbci.assistant.session import Session

    ws = Workspace.create(tmp_path_factory.mktemp("claims") / "study", title="Claims",
                          goal="Check what the assistant says", datasets=["SimulatedMI"],
                          subjects="1-2", random_state=42)
    ws.configure(actor="human:ada", autonomy="auto")
    s = Session(ws, backend=OfflineBackend(), human="ada", n_jobs=1)
    turns = {
        "explore": s.send("explore subject 1 of SimulatedMI"),
        "failed": s.send("explore subject 999 of SimulatedMI"),
        "bench": s.send("benchmark CSP+LDA, TS+LR and MDM on SimulatedMI subjects 1-2"),
        "compare": s.send("compare the pipelines"),
        "show": s.send("show the results"),
        "suggest": s.send("suggest pipelines"),
    }
    ids = {}
    for name, turn in turns.items():
        results = turn.tool_results
        if results:
            ids[name] = results[-1].id
            ids[name + "_payload"] = results[-1].payload
    ids["suggestion"] = turns["suggest"].suggestions[0].id
    ids["run"] = next(e.id for e in turns["bench"].events if e.kind == "run")
    yield ws, s, turns, ids
    s.close()
    ws.close()


def check(study, text, turn="show"):
    ws, _, turns, _ = study
    return check_claims(text, ws.journal, turn_events=turns[turn].events)


def only(report, kind=None):
    claims = [c for c in report.claims if kind is None or c.kind == kind]
    assert len(claims) == 1, [(c.text, c.kind, c.verdict, c.reason) for c in report.claims]
    return claims[0]


def rows(ids):
    """show_results rows by pipeline."""
    return {r["pipeline"]: r for r in ids["show_payload"]["summary"]["results"]}


def test_offline_answers_are_fully_supported(study):
    """Every claim the offline assistant makes from real tool results is supported."""
    ws, _, turns, _ = study
    n = 0
    for name in ("explore", "bench", "compare", "show"):
        msg = [e for e in turns[name].events if e.kind == "message" and e.actor.startswith("ai:")]
        report = check_claims(msg[-1].payload["text"], ws.journal, turn_events=turns[name].events)
        assert report.ok, (name, [(c.text, c.reason) for c in report.flagged])
        n += len(report.claims)
    assert n >= 15  # scores, sd, n, p-values, effect sizes, AUC, ERD, a ranking


def test_supported_number_with_rounding(study):
    _, _, _, ids = study
    sid = ids["show"]
    mean = rows(ids)["TS+LR"]["mean"]  # four decimals, e.g. 0.7815
    for shown in (f"{mean:.2f}", f"{mean:.3f}", f"{mean:.4f}"):
        c = only(check(study, f"TS+LR reached a mean AUC of {shown} [show_results #{sid}]."))
        assert c.verdict == "supported", c.reason
        assert c.kind == "number" and c.quantity == "score" and c.cited == (sid,)
        assert c.evidence.event_id == sid and c.evidence.value == mean
        assert c.evidence.path.startswith("summary.results[") and c.evidence.path.endswith("mean")


def test_percent_and_fraction_are_the_same_value(study):
    _, _, _, ids = study
    sid = ids["show"]
    mean = rows(ids)["TS+LR"]["mean"]
    c = only(check(study, f"TS+LR scored {mean * 100:.1f} % [show_results #{sid}]."))
    assert c.verdict == "supported" and c.value == round(mean * 100, 1)
    c = only(check(study, f"TS+LR scored {mean * 100:.0f}% [show_results #{sid}]."))
    assert c.verdict == "supported"
    wrong = only(check(study, f"TS+LR scored {mean * 100 + 9:.1f} % [show_results #{sid}]."))
    assert wrong.verdict == "contradicted"


def test_uncited_claim_is_unsupported_with_a_hint(study):
    _, _, _, ids = study
    mean = rows(ids)["MDM"]["mean"]
    c = only(check(study, f"MDM reached {mean:.3f} on average."))
    assert c.verdict == "unsupported" and c.cited == ()
    assert "no citation" in c.reason and f"show_results #{ids['show']}" in c.reason
    # The paragraph's citation covers its other sentences.
    text = f"Here are the results [show_results #{ids['show']}].\nMDM reached {mean:.3f}."
    assert only(check(study, text)).verdict == "supported"
    # A list right after a citing line inherits its citation.
    text = f"Results [show_results #{ids['show']}]:\n\n- MDM: {mean:.3f}\n"
    assert only(check(study, text)).verdict == "supported"


def test_contradicted_value_names_the_cited_value(study):
    _, _, _, ids = study
    sid = ids["show"]
    r = rows(ids)
    wrong = r["TS+LR"]["mean"] + 0.07
    c = only(check(study, f"TS+LR scored {wrong:.2f} [show_results #{sid}]."))
    assert c.verdict == "contradicted"
    assert c.evidence.event_id == sid and c.evidence.value == r["TS+LR"]["mean"]
    assert "TS+LR" in c.reason
    # Another pipeline's score attributed to TS+LR is contradicted too.
    c = only(check(study, f"TS+LR's AUC is {r['MDM']['mean']:.4f} [show_results #{sid}]."))
    assert c.verdict == "contradicted" and c.evidence.value == r["TS+LR"]["mean"]
    # A wrong count of subjects.
    n = r["TS+LR"]["n_subjects"]
    c = only(check(study, f"TS+LR was scored on n = {n + 3} subjects [show_results #{sid}]."))
    assert c.verdict == "contradicted" and c.quantity == "n" and c.evidence.value == n


def test_rankings(study):
    _, _, _, ids = study
    comp = ids["compare_payload"]["summary"]["comparisons"][0]
    best = comp["best"]
    other = comp["vs_best"][0]["worse"]
    cid = ids["compare"]
    c = only(check(study, f"{best} is the best pipeline [compare_pipelines #{cid}]."), "ranking")
    assert c.verdict == "supported" and c.value == {"best": best}
    assert c.evidence.path.endswith(".best") and c.evidence.value == best
    c = only(check(study, f"The best pipeline is {other} [compare_pipelines #{cid}]."),
             "ranking")
    assert c.verdict == "contradicted" and best in c.reason
    c = only(check(study, f"{best} outperforms {other} [compare_pipelines #{cid}]."), "ranking")
    assert c.verdict == "supported" and c.value == {"better": best, "worse": other}
    c = only(check(study, f"{other} outperforms {best} [compare_pipelines #{cid}]."), "ranking")
    assert c.verdict == "contradicted"
    c = only(check(study, f"{other} is worse than {best} [compare_pipelines #{cid}]."), "ranking")
    assert c.verdict == "supported"
    # Against show_results means, and the benchmark run itself.
    r = rows(ids)
    hi, lo = sorted(r, key=lambda p: -r[p]["mean"])[:2]
    c = only(check(study, f"{lo} > {hi} [show_results #{ids['show']}]."), "ranking")
    assert c.verdict == "contradicted" and c.evidence.value == r[lo]["mean"]
    c = only(check(study, f"{hi} beat {lo} [run #{ids['run']}]."), "ranking")
    assert c.verdict == "supported" and c.evidence.event_id == ids["run"]
    # Uncited, and the journal's run says otherwise.
    c = only(check(study, f"{lo} outperforms {hi}."), "ranking")
    assert c.verdict == "contradicted" and "no citation" in c.reason


def test_best_with_qualifiers_is_a_ranking(study):
    """Regression: a real 0.5B model's final answer, "The best left vs right hand
    motor-imagery decoder is the CSP+LDA pipeline.", was no claim at all."""
    _, _, _, ids = study
    r = rows(ids)
    hi, lo = sorted(r, key=lambda p: -r[p]["mean"])[:2]
    text = f"The best left vs right hand motor-imagery decoder is the {lo} pipeline."
    c = only(check(study, text), "ranking")
    assert c.value == {"best": lo} and c.verdict in ("unsupported", "contradicted")
    c = only(check(study, f"The best left vs right decoder is {hi} [show_results "
                          f"#{ids['show']}]."), "ranking")
    assert c.verdict == "supported"
    for text in (f"The second best decoder is {lo}.",
                 f"For the best results, try {hi} and {lo}.",
                 f"We want the best of both worlds from {hi}."):
        assert not check(study, text).claims, text


def test_smallest_attainable_p_is_its_own_quantity(tmp_path):
    """Regression: "min p = 0.0625" was read as the test's p-value and contradicted."""
    ws = Workspace.create(tmp_path / "minp", title="Min p", goal="g")
    j = ws.journal
    call = j.append("tool_call", "ai:m", {"tool": "compare_pipelines", "args": {}})
    res = j.append("tool_result", "system", {"tool": "compare_pipelines", "ok": True, "summary": {
        "comparisons": [{"best": "TS+LR", "best_mean": 0.81, "n_subjects": 4, "min_p": 0.0625,
                         "vs_best": [{"better": "TS+LR", "worse": "CSP+LDA", "p": 0.3125,
                                      "smd": 0.4, "n_subjects": 4, "min_p": 0.0625}]}]}},
        call.id)
    cite = f"[compare_pipelines #{res.id}]"
    c = only(check_claims(f"The min p = 0.0625 here {cite}.", j), "number")
    assert c.verdict == "supported" and c.evidence.path.endswith("min_p")
    c = only(check_claims(f"The smallest attainable p-value is 0.03 {cite}.", j), "number")
    assert c.verdict == "contradicted" and c.quantity == "min_p"
    c = only(check_claims(f"TS+LR vs CSP+LDA: p = 0.3125 {cite}.", j), "number")
    assert c.verdict == "supported" and c.quantity == "p"
    ws.close()


def test_significance(study):
    _, _, _, ids = study
    comp = ids["compare_payload"]["summary"]["comparisons"][0]
    best, pair = comp["best"], comp["vs_best"][0]
    cid = ids["compare"]
    significant = pair["p"] < 0.05
    text = (f"{best} is significantly better than {pair['worse']} "
            f"[compare_pipelines #{cid}].")
    c = only(check(study, text), "significance")
    assert c.verdict == ("supported" if significant else "contradicted")
    assert c.evidence.value == pair["p"]
    c = only(check(study, f"The difference between {best} and {pair['worse']} is not "
                          f"significant [compare_pipelines #{cid}]."), "significance")
    assert c.verdict == ("contradicted" if significant else "supported")
    assert c.value == {"significant": False, "alpha": 0.05}
    c = only(check(study, f"{best} vs {pair['worse']}: p < 0.001 [compare_pipelines #{cid}]."),
             "significance")
    assert c.value["alpha"] == 0.001
    assert c.verdict == ("supported" if pair["p"] < 0.001 else "contradicted")
    # A p-value as a number.
    c = only(check(study, f"{best} vs {pair['worse']}: p = {pair['p']} "
                          f"[compare_pipelines #{cid}]."), "number")
    assert c.verdict == "supported" and c.quantity == "p"
    # show_results has no statistics to back a significance statement.
    c = only(check(study, f"{best} is significantly better [show_results #{ids['show']}]."),
             "significance")
    assert c.verdict == "unsupported" and "no statistical test" in c.reason


def test_bad_citations(study):
    ws, _, _, ids = study
    head = ws.journal.head()[0]
    mean = rows(ids)["TS+LR"]["mean"]
    c = only(check(study, f"TS+LR scored {mean:.2f} [show_results #{head + 50}]."))
    assert c.verdict == "contradicted" and "not in the journal" in c.reason
    c = only(check(study, f"TS+LR scored {mean:.2f} [run_benchmark #{ids['suggestion']}]."))
    assert c.verdict == "unsupported" and "suggestion" in c.reason
    failed = ids["failed"]
    assert ws.journal.get(failed).payload["ok"] is False
    c = only(check(study, f"Subject 999 shows an AUC of 0.91 [explore_subject #{failed}]."))
    assert c.verdict == "unsupported" and "failed" in c.reason
    # A valid citation alongside an invented one still counts.
    c = only(check(study, f"TS+LR scored {mean:.2f} [show_results #{ids['show']}, "
                          f"#{head + 50}]."))
    assert c.verdict == "supported"


def test_non_claims_are_not_flagged(study):
    ws, _, turns, ids = study
    text = (
        f"As you asked, I ran subjects 1-2 (subject 2 included) [run_benchmark #{ids['bench']}]; "
        f"see suggestion #{ids['suggestion']} and event #{ids['show']}.\n"
        "1. First, 3 pipelines were defined in 2024 with C=0.1 and alpha = 0.05.\n"
        "2. The mu band is 8-13 Hz, the window 0.5 to 4 s, with a band-pass of 8 Hz.\n"
        "3. MOABB 1.7.2 and Python 3.11 ran on BNCI2014_001-like data; config 61c0e2daa75; "
        "channels C3, C4 and FC4; pipeline TS+LR-C0.1.\n"
        "Details: `cv=5, tol=0.001`, https://doi.org/10.1016/j.neucom.2012.12.039, "
        "results/runs/0bdded5a.csv. Accuracy must be above chance (0.5).")
    report = check_claims(text, ws.journal, turn_events=turns["bench"].events)
    assert report.claims == (), [(c.text, c.reason) for c in report.claims]
    # Numbers from the human's own message of the turn are theirs, not claims.
    human = [e for e in turns["explore"].events if e.kind == "message"][0]
    assert "1" in human.payload["text"]
    report = check_claims("Subject 1 of SimulatedMI: 1 session explored.", ws.journal,
                          turn_events=turns["explore"].events)
    assert report.claims == ()


def test_payload_travels_with_the_message(study):
    ws, _, _, ids = study
    sid = ids["show"]
    mean = rows(ids)["TS+LR"]["mean"]
    text = (f"TS+LR scored {mean:.2f} [show_results #{sid}], MDM scored 0.99 "
            f"[show_results #{sid}].\n\nCSP+LDA reached 0.42.")
    report = check(study, text)
    assert report.counts == {"supported": 1, "unsupported": 1, "contradicted": 1}
    payload = report.as_payload()
    assert payload["version"] == 1 and payload["counts"] == report.counts
    for c in payload["claims"]:
        assert text[c["start"]:c["end"]] == c["text"]
        assert set(c) >= {"kind", "value", "cited", "verdict", "reason", "evidence"}
    ev = ws.journal.append("message", "ai:test-model", {"text": text, "claims": payload})
    back = ClaimsReport.from_payload(ws.journal.get(ev.id).payload)
    assert back == report
    assert ClaimsReport.from_events([ws.journal.get(ev.id)]) == report
    assert ClaimsReport.from_payload({"text": "no claims field"}) is None


def test_feedback_marks_and_notes(study):
    _, _, _, ids = study
    sid = ids["show"]
    mean = rows(ids)["TS+LR"]["mean"]
    good = check(study, f"TS+LR scored {mean:.2f} [show_results #{sid}].")
    assert good.ok and good.feedback() is None
    assert mark_claims(f"TS+LR scored {mean:.2f}", good) == f"TS+LR scored {mean:.2f}"
    assert good.notes() == ["claims check: 1 supported (every claim is backed by a cited "
                            "tool result)"]

    text = f"TS+LR scored 0.99 [show_results #{sid}].\n\nMDM scored 0.42."
    bad = check(study, text)
    assert [c.verdict for c in bad.claims] == ["contradicted", "unsupported"]
    fb = bad.feedback()
    assert "your claim '0.99'" in fb and f"#{sid}" in fb and "your claim '0.42'" in fb
    assert "[tool_name #event_id]" in fb
    marked = mark_claims(text, bad)
    assert f"0.99{MARKS['contradicted']}" in marked and f"0.42{MARKS['unsupported']}" in marked
    assert marked.endswith(LEGEND)
    # Offsets off (an edited copy): the claim is found by its text.
    assert "0.99[!]" in mark_claims("Note: " + text, bad.as_payload(), legend=False)
    notes = bad.notes()
    assert notes[0] == "claims check: 0 supported, 1 unsupported, 1 contradicted"
    assert notes[1].startswith("[!] 0.99") and notes[-1] == LEGEND
    # Control characters in the model's text never reach a terminal through the notes.
    sneaky = check(study, "MDM scored 0.42\x1b[2J here.")
    assert all("\x1b" not in line for line in sneaky.notes())


def test_check_survives_odd_input(study):
    ws, _, _, _ = study
    assert check_claims("", ws.journal).claims == ()
    assert check_claims("   \n ", ws.journal).claims == ()
    odd = "[#] [x #] #0 [show_results #0] 1e400 0.5e-3 % ,,, " + "9" * 400 + " (((" * 50
    check_claims(odd, ws.journal)  # no exception
    check_claims("0.5 " * 5000, ws.journal)  # bounded


# -- the session: verdicts journaled, feedback sent back once -------------------------------

def _ts_lr_mean(ws, result_id):
    rows_ = ws.journal.get(result_id).payload["summary"]["results"]
    return next(r["mean"] for r in rows_ if r["pipeline"] == "TS+LR")


def _llm_backend(server):
    from chatbci.assistant.llm import LLMSettings, OpenAIChat

    settings = LLMSettings.resolve({"model": "fake-model", "base_url": server.base_url},
                                   env={"OPENAI_API_KEY": "test-key-claims"})
    return OpenAIChat(settings, backoff=0.01)


def _responder(ws, fix):
    """A scripted model: after show_results it overstates TS+LR's score; told so by the
    claims check, it corrects itself if ``fix``, else repeats the error."""
    import re

    from chatbci.assistant.testing import Reply

    def respond(body):
        msgs = body["messages"]
        if msgs[-1]["role"] == "user" and "claims check" not in msgs[-1]["content"]:
            return Reply.tool_calls([("show_results", {})])
        tool = [m for m in msgs if m["role"] == "tool"][-1]["content"]
        rid = int(re.search(r'event="#(\d+)"', tool).group(1))
        mean = _ts_lr_mean(ws, rid)
        if "claims check" in msgs[-1]["content"] and fix:
            return Reply.text(f"Correction: TS+LR scored {mean:.3f} [show_results #{rid}].")
        return Reply.text(f"TS+LR scored {mean + 0.1:.3f} [show_results #{rid}].")

    return respond


@pytest.fixture(scope="module")
def llm_turns(study):
    """Two LLM turns on the study: one corrected after feedback, one not."""
    from chatbci.assistant.session import Session
    from chatbci.assistant.testing import FakeLLMServer

    ws = study[0]
    out = {}
    for fix in (True, False):
        with FakeLLMServer(model="fake-model", responder=_responder(ws, fix)) as srv:
            s = Session(ws, backend=_llm_backend(srv), human="ada", n_jobs=1)
            out[fix] = (s.send("How does TS+LR do?"), list(srv.requests))
            s.close()
            assert not srv.errors
    return out


def test_session_sends_flagged_claims_back_once(study, llm_turns):
    ws = study[0]
    turn, requests = llm_turns[True]
    answers = [e for e in turn.events if e.kind == "message" and e.actor.startswith("ai:")]
    assert len(answers) == 2 and len(requests) == 3  # tool call, answer, revised answer
    first, second = (ClaimsReport.from_payload(a.payload) for a in answers)
    assert first.counts["contradicted"] == 1 and "revision_of" not in answers[0].payload
    assert second.ok and second.counts["supported"] == 1
    assert answers[1].payload["revision_of"] == answers[0].id
    assert turn.text == answers[1].payload["text"] and turn.text.startswith("Correction")
    feedback = requests[2]["messages"][-1]
    assert feedback["role"] == "user" and "your claim" in feedback["content"]
    assert f"#{turn.tool_results[0].id}" in feedback["content"]
    assert ws.journal.verify().ok

    # A model that repeats the error gets the feedback once only.
    turn, requests = llm_turns[False]
    answers = [e for e in turn.events if e.kind == "message" and e.actor.startswith("ai:")]
    assert len(answers) == 2 and len(requests) == 3
    assert all(ClaimsReport.from_payload(a.payload).counts["contradicted"] == 1
               for a in answers)


def test_offline_answers_carry_a_check_but_get_no_feedback(study):
    _, _, turns, _ = study
    for turn in turns.values():
        for e in turn.events:
            if e.kind == "message" and e.actor.startswith("ai:"):
                assert "claims" in e.payload and "revision_of" not in e.payload


# -- where the human sees it -----------------------------------------------------------------

def test_export_marks_claims_and_counts_them(study, llm_turns, tmp_path):
    from chatbci.export import export
    from chatbci.export.disclosure import disclosure
    from chatbci.export.transcript import CLAIM_MARKS, transcript_entries
    from chatbci.export.record import load_record

    assert CLAIM_MARKS == MARKS
    ws = study[0]
    d = disclosure(ws)
    c = d["counts"]["claims"]
    assert c["messages_checked"] >= 8 and c["contradicted"] >= 3 and c["revised"] == 2
    assert c["claims"] == c["supported"] + c["unsupported"] + c["contradicted"]
    assert c["by_kind"]["number"]["contradicted"] >= 3
    assert "claims" in d["statement"] and "contradicted" in d["statement"]
    wrong = llm_turns[False][0].text
    entries = [e for e in transcript_entries(load_record(ws)) if e.kind == "message"]
    marked = [e for e in entries if e.text.startswith(wrong.split(" [")[0])]
    assert marked and all("[!]" in e.text and "Claims check (chatbci)" in e.text
                          for e in marked)
    path = export(ws, "md", out=tmp_path)
    files = path if isinstance(path, list) else [path]
    text = "\n".join(f.read_text() for f in files if str(f).endswith(".md"))
    assert "[!]" in text and "Claims check" in text


def test_panel_marks_flagged_claims(tmp_path):
    from chatbci.assistant.offline import OfflineBackend
    from chatbci.assistant.session import Session
    from chatbci.jupyter.panel import ChatPanel

    path = tmp_path / "panel"
    ws = Workspace.create(path, title="Panel", goal="g", datasets=["SimulatedMI"],
                          subjects="1")
    s = Session(ws, backend=OfflineBackend(), human="ada", n_jobs=1)
    turn = s.send("list datasets")
    rid = turn.tool_results[0].id
    n = turn.tool_results[0].payload["summary"]["n_datasets"]
    text = f"There are {n + 8} motor-imagery datasets [list_datasets #{rid}]."
    report = check_claims(text, ws.journal, turn_events=turn.events)
    assert only(report).verdict == "contradicted"
    ws.journal.append("message", "ai:fake-model", {"text": text, "claims": report.as_payload()},
                      turn.events[0].id)
    s.close()
    ws.close()
    panel = ChatPanel(path, backend=OfflineBackend(), n_jobs=1)
    try:
        bubbles = [m for m in panel.messages if m.role == "ai"]
        assert f"{n + 8}[!]" in bubbles[-1].text and LEGEND in bubbles[-1].text
        assert "[!]" not in bubbles[0].text  # the offline answer is fully supported
    finally:
        panel.close()


def test_terminal_prints_the_check_before_the_revised_answer(study, capsys):
    from chatbci.assistant.session import Session
    from chatbci.assistant.testing import FakeLLMServer
    from chatbci.cli import _send

    ws = study[0]
    with FakeLLMServer(model="fake-model", responder=_responder(ws, True)) as srv:
        s = Session(ws, backend=_llm_backend(srv), human="ada", n_jobs=1)
        turn = _send(s, "How does TS+LR do?")
        s.close()
    out = capsys.readouterr().out.splitlines()
    first = next(i for i, line in enumerate(out) if line.startswith("ai> TS+LR scored"))
    check = out.index("chatbci: claims check: 0 supported, 0 unsupported, 1 contradicted")
    revised = next(i for i, line in enumerate(out) if line.startswith("ai> Correction"))
    assert first < check < revised
    assert out[check + 1].startswith("chatbci: [!] ") and LEGEND in out[check + 2]
    assert turn.text.startswith("Correction") and sum("Correction" in line for line in out) == 1
