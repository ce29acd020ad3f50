"""Cost before compute (issue 10, §4/§5): budgets are checked on an estimate, not after."""

from __future__ import annotations

import pytest

from chatbci.assistant.autonomy import MAX_UNTIMED_FITS
from chatbci.assistant.testing import Reply
from chatbci.assistant.tools import TOOLS, ToolContext
from chatbci.bci.cost import estimate_cost, fits_per_fold
from chatbci.bci.pipelines import get_pipeline
from chatbci.jupyter.cards import _cost_html
from chatbci.workspace import Workspace
from conftest import llm_session


@pytest.fixture
def ws(tmp_path):
    w = Workspace.create(tmp_path / "study", title="LR", goal="Find a decoder",
                         datasets=["SimulatedMI"], subjects="1-3")
    w.configure(actor="human:ada", autonomy="auto")
    yield w
    w.close()


@pytest.fixture
def server(fake_llm):
    return fake_llm


def session_for(ws, server, **kw):
    return llm_session(ws, server, **kw)


def test_fits_are_counted_from_the_grid_and_the_evaluation():
    acm, csp = get_pipeline("ACM+TS+SVM"), get_pipeline("CSP+LDA")
    assert fits_per_fold(csp) == 1
    assert fits_per_fold(acm) == 10 * 10 * 3 * 2 * 3 + 1  # 600 points x 3 inner folds + refit
    cost = estimate_cost([acm, csp], evaluation="within-session", n_subjects=10, n_sessions=1)
    assert cost.outer_folds == 50 and cost.fits == 50 * (1801 + 1)
    assert cost.seconds is None  # nothing measured: unknown, not guessed
    assert estimate_cost([csp], evaluation="cross-subject", n_subjects=6).fits == 6


def test_estimate_uses_the_workspace_measured_fit_times(ws):
    ctx = ToolContext(ws, actor="human:ada", n_jobs=1)
    TOOLS["run_benchmark"].run(ctx, {"pipelines": ["CSP+LDA"], "subjects": "1"})
    _, plan = TOOLS["run_benchmark"].check(ws, {"pipelines": ["CSP+LDA", "TS+LR"],
                                                "subjects": "1-3"})
    est = plan["estimate"]
    assert est["fits"] == 2 * 3 * 2 * 5  # pipelines x subjects x sessions x folds
    assert est["seconds"] is not None and est["seconds"] > 0
    assert est["per_pipeline"]["CSP+LDA"]["seconds"] is not None
    assert "earlier" in est["basis"]


def test_auto_proposes_what_would_overrun_the_turn_budget(ws, server):
    """A benchmark ran under a budget it was bound to exceed: now it is proposed."""
    ctx = ToolContext(ws, actor="human:ada", n_jobs=1)
    TOOLS["run_benchmark"].run(ctx, {"pipelines": ["CSP+LDA"], "subjects": "1"})
    ws.configure(actor="human:ada", budgets={"seconds_per_turn": 0.001})
    server.script([Reply.tool_calls([("run_benchmark", {"pipelines": ["CSP+LDA", "TS+LR"],
                                                        "subjects": "1-3"})]),
                   Reply.text("I proposed it.")])
    turn = session_for(ws, server).send("benchmark both")
    assert not [e for e in turn.events if e.kind == "run"]
    (sugg,) = turn.suggestions
    assert "exceeds" in sugg.payload["reason"] and "estimated" in sugg.payload["reason"]
    assert sugg.payload["estimate"]["fits"] == 60
    html = _cost_html(sugg.payload["estimate"])
    assert "Estimated cost: 60 fits, about" in html


def test_auto_proposes_a_huge_untimed_grid_but_runs_a_small_first_job(ws, server):
    server.script([Reply.tool_calls([("run_benchmark", {"pipelines": ["ACM+TS+SVM"],
                                                        "subjects": "1-3"})]),
                   Reply.text("Proposed."),
                   Reply.tool_calls([("run_benchmark", {"pipelines": ["CSP+LDA"],
                                                        "subjects": "1"})]),
                   Reply.text("Ran it.")])
    session = session_for(ws, server)
    turn = session.send("try the big grid")
    (sugg,) = turn.suggestions
    assert sugg.payload["estimate"]["fits"] > MAX_UNTIMED_FITS
    assert "not timed" in sugg.payload["reason"]
    assert "duration unknown" in _cost_html(sugg.payload["estimate"])
    turn = session.send("then a small one")
    assert [e for e in turn.events if e.kind == "run"] and not turn.suggestions


def test_proposals_carry_their_estimate_too(ws, server):
    ws.configure(actor="human:ada", autonomy="assist")
    action = {"tool": "run_benchmark", "args": {"pipelines": ["CSP+LDA"], "subjects": "1-2"}}
    server.script([Reply.tool_calls([("propose", {"action": action,
                                                  "rationale": "A first look."})]),
                   Reply.text("Proposed.")])
    (sugg,) = session_for(ws, server).send("what next?").suggestions
    assert sugg.payload["estimate"]["fits"] == 20
