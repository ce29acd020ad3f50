"""The Jupyter chat panel at widget level: send, stream, approve, reject, modify, stop,
reload, autonomy, magics. Offline backend, SimulatedMI; no browser, no kernel."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import ipywidgets as widgets
import pytest

from chatbci.assistant.offline import OfflineBackend
from chatbci.jupyter import ChatPanel, chat
from chatbci.jupyter.cards import format_arg, parse_arg
from chatbci.jupyter.render import MessageBubble, markdown_html
from chatbci.workspace import Workspace

WAIT = 240  # seconds; generous for 2 shared cores


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "study"
    Workspace.create(path, title="Left vs right", goal="Find the best left/right decoder",
                     datasets=["SimulatedMI"], subjects="1-3").close()
    return path


@pytest.fixture
def panels():
    opened = []

    def open_panel(path, **kw):
        kw.setdefault("backend", OfflineBackend())
        kw.setdefault("n_jobs", 1)
        panel = ChatPanel(path, **kw)
        opened.append(panel)
        return panel

    yield open_panel
    for p in opened:
        p.close()


def pending_card(panel):
    cards = [c for c in panel.cards.values() if c.state == "pending"]
    assert cards, f"no pending card; errors: {[e.message for e in panel.errors]}"
    return cards[-1]


def decide(panel, action, *args):
    getattr(pending_card(panel), action)(*args)
    assert panel.wait_idle(WAIT)


def _tool_lines(panel):
    return [w for w in panel.conversation.children if "chatbci-toolcall" in w._dom_classes]


def test_send_streams_markdown_and_keeps_the_kernel_free(study, panels):
    panel = panels(study, backend=OfflineBackend(delay=0.01))
    assert panel.session.backend.is_llm is False
    assert "offline assistant" in panel.header.value and "Left vs right" in panel.header.value

    panel.send("list datasets <b>now</b>", wait=False)
    assert panel.busy and panel.send_button.disabled and not panel.stop_button.disabled
    seen_streaming = False
    deadline = time.monotonic() + WAIT
    while panel.busy and time.monotonic() < deadline:  # the main thread stays free
        ai = [m for m in panel.messages if m.role == "ai"]
        if ai and ai[-1].streaming and "cb-cursor" in ai[-1].value and ai[-1].text:
            seen_streaming = True
        time.sleep(0.005)
    assert panel.wait_idle(WAIT)
    assert seen_streaming, "the answer was not shown while it streamed"
    assert not panel.busy and not panel.send_button.disabled and panel.stop_button.disabled

    human, ai = panel.messages
    assert human.role == "human" and human.label == "You"
    assert "&lt;b&gt;now&lt;/b&gt;" in human.value and "<b>now</b>" not in human.value
    assert "cb-right" in human.value and "cb-human" in human.value
    assert ai.role == "ai" and ai.label == "Offline assistant" and not ai.streaming
    assert "rule-based, not an LLM" in ai.value and "cb-cursor" not in ai.value
    # Citations become chips; the journaled text is the full answer.
    assert 'class="cb-cite"' in ai.value
    journal_ai = panel.workspace.journal.events(kind="message", actor="ai")[-1]
    assert ai.event_id == journal_ai.id and ai.text == journal_ai.payload["text"]
    assert len(panel.last_turn.deltas) > 10  # it really arrived in pieces
    calls = [w for w in panel.conversation.children if "chatbci-toolcall" in w._dom_classes]
    assert len(calls) == 1 and "list_datasets" in calls[0].value and "cb-ok" in calls[0].value


def test_markdown_is_rendered_and_html_escaped():
    out = markdown_html("**best** TS+LR\n\n- a\n- b\n\n<script>alert(1)</script> "
                        "[run_benchmark #12]")
    assert "<strong>best</strong>" in out and "<li>a</li>" in out
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert '<span class="cb-cite" title="journal event #12">run_benchmark #12</span>' in out


def test_approve_runs_the_benchmark_and_shows_the_table(study, panels):
    panel = panels(study, human="ada")
    turn = panel.send("benchmark CSP+LDA and MDM on SimulatedMI subjects 1-2", wait=True,
                      timeout=WAIT)
    assert [s.id for s in turn.suggestions] == list(panel.cards)
    card = pending_card(panel)
    assert card.tool == "run_benchmark" and card.args["subjects"] == "1-2"
    assert "run_benchmark" in card.body.value and "Needs your decision" in card.body.value

    card.approve("two subjects first")
    assert card.state in ("queued", "accept")
    assert panel.wait_idle(WAIT)
    assert card.state == "accept" and "Approved" in card.hint.value and \
        "two subjects first" in card.hint.value
    assert card.approve_button.disabled and card.controls.layout.display == "none"

    ws = panel.workspace
    (decision,) = ws.journal.events(kind="decision")
    assert decision.payload["verdict"] == "accept"
    assert decision.payload["rationale"] == "two subjects first"
    assert decision.actor == "human:ada" and decision.parent_id == card.id
    assert len(ws.journal.events(kind="run")) == 1
    tables = [w for w in panel.results if "chatbci-table" in getattr(w, "value", "")]
    assert tables and "CSP+LDA" in tables[0].value and "MDM" in tables[0].value
    assert "Scores per subject and session" in tables[0].value
    assert panel.progress.value == panel.progress.max == 4  # 2 subjects x 2 pipelines
    assert panel.progress.bar_style == "success"
    calls = [w for w in panel.conversation.children if "chatbci-toolcall" in w._dom_classes]
    assert calls and "cb-ok" in calls[-1].value and "approved by you" in calls[-1].value


def test_reject_needs_a_reason_and_is_journaled(study, panels):
    panel = panels(study)
    panel.send("benchmark MDM on SimulatedMI subjects 1", wait=True, timeout=WAIT)
    card = pending_card(panel)
    card.reject("")  # no reason: nothing recorded, the card says why
    assert card.state == "pending" and "reason" in card.hint.value
    assert panel.workspace.journal.events(kind="decision") == []

    card.reject("not before exploring the data")
    assert panel.wait_idle(WAIT)
    (decision,) = panel.workspace.journal.events(kind="decision")
    assert decision.payload["verdict"] == "reject"
    assert decision.payload["rationale"] == "not before exploring the data"
    assert card.state == "reject" and "Rejected" in card.hint.value
    assert "cb-decided-reject" in card._dom_classes
    assert panel.workspace.journal.events(kind="tool_call") == []


def test_modify_runs_the_modified_action(study, panels):
    panel = panels(study)
    panel.send("benchmark CSP+LDA and TS+LR on SimulatedMI subjects 1-3", wait=True,
               timeout=WAIT)
    card = pending_card(panel)
    assert card.fields["pipelines"].value == "CSP+LDA, TS+LR"
    assert card.fields["subjects"].value == "1-3"

    card.modify({"subjects": "9999"}, "")  # no reason: refused in the card
    assert card.state == "pending" and "reason" in card.hint.value
    card.modify({"dataset": "NoSuchDataset", "subjects": "1-3"}, "try another dataset")
    assert panel.wait_idle(WAIT)
    assert card.state == "pending" and "NoSuchDataset" in card.hint.value
    assert panel.workspace.journal.events(kind="decision") == []

    card.modify({"dataset": "SimulatedMI", "subjects": "1", "pipelines": ["MDM"]},
                "one subject is enough to check the pipeline")
    assert panel.wait_idle(WAIT)
    (decision,) = panel.workspace.journal.events(kind="decision")
    assert decision.payload["verdict"] == "modify"
    assert decision.payload["action"] == {
        "tool": "run_benchmark",
        "args": {"pipelines": ["MDM"], "dataset": "SimulatedMI", "subjects": "1"}}
    (call,) = panel.workspace.journal.events(kind="tool_call")
    assert call.payload["args"]["pipelines"] == ["MDM"] and call.payload["args"]["subjects"] == "1"
    assert card.state == "modify" and "Modified" in card.hint.value
    # The run line says what happened: the human modified the suggestion, not approved it.
    line = _tool_lines(panel)[-1]
    assert "modified by you" in line.value and "approved" not in line.value
    tables = [w for w in panel.results if "chatbci-table" in getattr(w, "value", "")]
    assert tables and "MDM" in tables[-1].value and "TS+LR" not in tables[-1].value


def test_stop_ends_a_running_benchmark(study, panels):
    panel = panels(study)
    panel.send("benchmark CSP+LDA on SimulatedMI subjects 1-10", wait=True, timeout=WAIT)
    pending_card(panel).approve()
    deadline = time.monotonic() + WAIT
    while panel.progress.value == 0 and panel.busy and time.monotonic() < deadline:
        time.sleep(0.02)
    assert panel.busy and 0 < panel.progress.value < panel.progress.max == 10
    assert not panel.stop_button.disabled
    panel.stop_button.click()
    assert panel.wait_idle(WAIT)

    errors = panel.workspace.journal.events(kind="error")
    assert errors and "stopped" in errors[-1].payload["message"].lower()
    # A deliberate stop is not a failure: the tool line says stopped (amber) and what was
    # kept, once; no red error box.
    assert not panel.errors
    line = _tool_lines(panel)[-1]
    assert "cb-stopped" in line.value and "cb-fail" not in line.value
    assert "stopped" in line.value and "Kept" in line.value
    assert panel.progress.value < panel.progress.max
    assert panel.progress.bar_style == "warning" and "stopped" in panel.progress_label.value
    assert panel.stop_button.disabled and panel.stop_button.description == "Stop"
    # The results it kept are shown, read back from the cache.
    kept = [w for w in panel.conversation.children if "chatbci-kept" in w._dom_classes]
    assert len(kept) == 1 and "Kept before the stop" in kept[0].value
    assert "CSP+LDA" in kept[0].value and "chatbci-table" in kept[0].value
    result = panel.workspace.journal.events(kind="tool_result")[-1]
    assert result.payload["ok"] is False
    assert panel.workspace.journal.events(kind="run") == []
    # The panel works on: a new request after a stop is not stopped.
    panel.send("show results", wait=True, timeout=WAIT)
    assert panel.messages[-1].role == "ai" and not panel.busy


def test_reopened_panel_reloads_history_and_live_cards(study, panels):
    first = panels(study)
    first.send("benchmark MDM on SimulatedMI subjects 1", wait=True, timeout=WAIT)
    decide(first, "approve", "quick check")
    first.send("explore subject 1", wait=True, timeout=WAIT)
    first.send("benchmark CSP+LDA on SimulatedMI subjects 1", wait=True, timeout=WAIT)
    texts = [m.text for m in first.messages]
    n_figures = sum(isinstance(w, widgets.HBox) for w in first.results)
    first.close()

    again = panels(study)
    assert [m.text for m in again.messages] == texts
    assert [m.role for m in again.messages] == ["human", "ai"] * 3
    states = [c.state for c in again.cards.values()]
    assert states == ["accept", "pending"]
    decided = list(again.cards.values())[0]
    assert "quick check" in decided.hint.value and decided.approve_button.disabled
    figures = [w for w in again.results if isinstance(w, widgets.HBox)]
    assert len(figures) == n_figures == 1
    images = figures[0].children
    assert len(images) == 3 and all(isinstance(i, widgets.Image) and i.value[:4] == b"\x89PNG"
                                    for i in images)
    assert any("chatbci-table" in getattr(w, "value", "") for w in again.results)
    assert any("history reloaded" in getattr(w, "value", "")
               for w in again.conversation.children)

    # The pending card is live in the new panel.
    decide(again, "approve", "")
    assert list(again.cards.values())[1].state == "accept"
    assert len(again.workspace.journal.events(kind="run")) == 2


def test_autonomy_selector_is_journaled(study, panels):
    panel = panels(study)
    assert panel.autonomy.value == "assist"
    panel.autonomy.value = "auto"
    assert panel.session.autonomy == "auto"
    assert Workspace.open(study).config.autonomy == "auto"
    note = panel.workspace.journal.events(kind="note")[-1]
    assert note.payload["op"] == "configure"
    assert note.payload["changes"]["autonomy"] == {"from": "assist", "to": "auto"}
    assert "Autonomy changed" in panel.conversation.children[-1].value
    assert "compute budget" in panel.autonomy_help.value
    # In auto mode a small benchmark runs without a card.
    panel.send("benchmark MDM on SimulatedMI subjects 1", wait=True, timeout=WAIT)
    assert not panel.cards and len(panel.workspace.journal.events(kind="run")) == 1


class _Unreachable:
    name, model, is_llm = "openai", "gpt-test", True

    def complete(self, messages, tools=None, on_delta=None, tool_choice="auto", *,
                 on_reset=None):
        from chatbci.assistant.llm import LLMError

        raise LLMError("connection refused (test)")


def test_model_failure_is_shown_not_raised(study, panels):
    panel = panels(study, backend=_Unreachable())
    assert "AI model: gpt-test" in panel.header.value
    panel.send("hello", wait=True, timeout=WAIT)
    bubble = panel.messages[-1]
    assert bubble.role == "ai" and bubble.label == "AI (gpt-test)" and bubble.failed
    assert "could not reach the language model" in bubble.text
    assert "connection refused" in bubble.text and "try again" in bubble.text
    # Said once: the bubble has the error and the fix, no second red box repeats it.
    shown = [w for w in panel.conversation.children if "connection refused" in
             getattr(w, "value", "")]
    assert shown == [bubble] and not panel.errors
    assert not panel.busy


def test_card_arguments_round_trip():
    assert parse_arg("CSP+LDA, TS+LR", "list_str") == ["CSP+LDA", "TS+LR"]
    assert parse_arg('["MDM"]', "list_str") == ["MDM"]
    assert parse_arg("1-5", "str_or_json") == "1-5"
    assert parse_arg("[1, 2]", "str_or_json") == [1, 2]
    assert parse_arg("7", "int") == 7
    with pytest.raises(ValueError):
        parse_arg("seven", "int")
    assert format_arg(["a", "b"], "list_str") == "a, b"
    assert format_arg([1, 2], "str_or_json") == "[1, 2]"
    assert format_arg(None, "str") == ""


def test_streaming_bubble_throttles_and_finishes():
    bubble = MessageBubble("ai", "AI (m)", "", streaming=True)
    for word in ["Hello ", "**world**"]:
        bubble.append(word, min_interval=0)
    assert "cb-cursor" in bubble.value and "**world**" in bubble.value
    bubble.finish()
    assert "<strong>world</strong>" in bubble.value and "cb-cursor" not in bubble.value


def test_chat_displays_once_and_magics(study, tmp_path, monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance(history_load_length=0)
    shell.history_manager.enabled = False
    try:
        shell.run_line_magic("load_ext", "chatbci")
        shell.run_line_magic("chatbci", f"open {study} --offline --n-jobs 1 --human ada")
        from chatbci.jupyter import current_panel

        panel = current_panel()
        assert panel is not None and panel.me == "human:ada"
        # Shown by chat(); as a cell's Out[] it is only text, not a second view.
        bundle = panel._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" not in bundle
        assert "shown above" in bundle["text/plain"]

        # A %%chat cell waits for the answer by default ("Run All" runs cells in order).
        shell.run_cell_magic("chat", "", "list datasets\n")
        assert not panel.busy
        assert [m.role for m in panel.messages] == ["human", "ai"]
        assert panel.messages[0].text == "list datasets"
        shell.run_cell_magic("chat", "--no-wait", "show results\n")  # like the text box
        assert panel.wait_idle(WAIT)
        assert [m.role for m in panel.messages] == ["human", "ai"] * 2

        shell.run_line_magic("chatbci", "autonomy suggest")
        assert panel.session.autonomy == "suggest"
        with pytest.raises(UsageError):
            shell.run_line_magic("chatbci", "autonomy sometimes")
        with pytest.raises(UsageError):
            shell.run_line_magic("chatbci", "frobnicate")
        with pytest.raises(UsageError, match="--create"):
            shell.run_line_magic("chatbci", f"open {tmp_path / 'nowhere'} --offline")
        assert not (tmp_path / "nowhere").exists()

        try:
            import chatbci.export  # noqa: F401
        except ImportError:
            with pytest.raises(UsageError, match="not available"):
                shell.run_line_magic("chatbci", "export md")
        else:
            shell.run_line_magic("chatbci", "export md")
            assert panel.last_export and all(p.is_file() for p in panel.last_export)
            assert "Exported" in panel.conversation.children[-1].value
        panel.close()
        with pytest.raises(UsageError, match="no chat panel"):
            shell.run_cell_magic("chat", "", "hello")
    finally:
        InteractiveShell.clear_instance()


def test_chat_function_and_lazy_import(study, monkeypatch):
    import chatbci

    panel = chatbci.chat(study, backend="offline", n_jobs=1, display=False)
    try:
        assert isinstance(panel, ChatPanel) and chatbci.chat is chat
    finally:
        panel.close()
    code = ("import sys, chatbci; assert 'ipywidgets' not in sys.modules; "
            "assert 'chatbci.jupyter' not in sys.modules; "
            "assert callable(chatbci.load_ipython_extension); "
            "chatbci.chat; assert 'chatbci.jupyter' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_enter_sends_and_shift_enter_is_a_newline(study, panels):
    from chatbci.jupyter.inputbox import ChatInput

    panel = panels(study)
    assert isinstance(panel.input, ChatInput)
    assert "Enter to send" in panel.input.placeholder
    assert "Shift+Enter for a new line" in panel.input.placeholder
    # The front end sends Enter as a "submit" message; Shift+Enter never leaves the box.
    esm = panel.input._esm
    assert "event.shiftKey" in esm and 'event: "submit"' in esm
    panel.input.value = "list datasets"
    panel.input._on_message(panel.input, {"event": "submit", "text": "list datasets"}, [])
    # While the assistant works the box is locked: Enter keeps the text in it.
    assert panel.busy and panel.input.locked
    panel.input.value = "suggest pipelines\nfor subjects 1-2"
    panel.input.submit()
    assert panel.input.value == "suggest pipelines\nfor subjects 1-2"
    assert panel.wait_idle(WAIT)
    assert not panel.input.locked
    assert [m.text for m in panel.messages if m.role == "human"] == ["list datasets"]
    panel.input.submit()  # now it goes, newline and all
    assert panel.input.value == ""
    assert panel.wait_idle(WAIT)
    assert [m.text for m in panel.messages if m.role == "human"] == [
        "list datasets", "suggest pipelines\nfor subjects 1-2"]


def test_card_follows_the_bubble_that_announces_it(study, panels):
    panel = panels(study)
    text = "benchmark CSP+LDA and MDM on SimulatedMI subjects 1-2"
    panel.send(text, wait=True, timeout=WAIT)
    card = pending_card(panel)
    children = list(panel.conversation.children)
    bubble = panel.messages[-1]
    assert bubble.role == "ai" and f"#{card.id}" in bubble.text
    assert children.index(bubble) < children.index(card)
    # The human typed the request: the card says so, not an invented rationale.
    assert "The assistant asked to run" not in card.body.value
    assert "You asked:" in card.body.value and "subjects 1-2" in card.body.value
    # A reopened panel shows the same order.
    panel.close()
    again = panels(study)
    children = list(again.conversation.children)
    card = again.cards[card.id]
    assert children.index(again.messages[-1]) < children.index(card)


def test_tool_error_is_shown_once_with_the_fix(study, panels):
    panel = panels(study)
    panel.send("explore subject 99", wait=True, timeout=WAIT)
    line = _tool_lines(panel)[-1]
    assert "cb-fail" in line.value and "failed" in line.value
    assert not panel.errors  # no separate red box
    # The answer says what went wrong and the valid range; the tool's words are folded.
    assert "subjects 1-10" in panel.messages[-1].text
    assert "<details" in line.value
    red = [w for w in panel.conversation.children
           if "cb-error" in getattr(w, "value", "") or "cb-failed" in getattr(w, "value", "")]
    assert red == []

    # A modified action that cannot run: the card that asked says why (with the valid
    # choices), and nothing else repeats it.
    panel.send("benchmark CSP+LDA on SimulatedMI subjects 1", wait=True, timeout=WAIT)
    card = pending_card(panel)
    card.modify({"pipelines": ["NoSuchPipeline"]}, "try a pipeline that does not exist")
    assert panel.wait_idle(WAIT)
    assert card.hint.value.count("NoSuchPipeline") == 1 and "CSP+LDA" in card.hint.value
    assert not panel.errors
    assert not [w for w in panel.conversation.children
                if "NoSuchPipeline" in getattr(w, "value", "")]


def test_citation_chip_shows_the_cited_event_in_place(study, panels):
    panel = panels(study)
    panel.send("explore subject 1", wait=True, timeout=WAIT)
    bubble = panel.messages[-1]
    assert bubble.cited, bubble.value
    (event_id,) = bubble.cited
    assert panel.workspace.journal.get(event_id).kind == "tool_result"
    label = re.search(r'<label class="cb-cite" for="([^"]+)"[^>]*>explore_subject #(\d+)</label>',
                      bubble.value)
    assert label and int(label.group(2)) == event_id
    toggle = f'<input type="checkbox" class="cb-cite-toggle cb-c0" id="{label.group(1)}">'
    assert toggle in bubble.value
    detail = bubble.value.split('class="cb-cite-detail cb-d0"', 1)[1]
    assert "explore_subject" in detail and "subject 1 explored" in detail
    assert detail.count('<img src="data:image/png;base64,') == 3
    # The toggles come before the details, as CSS's "~" needs.
    assert bubble.value.index(toggle) < bubble.value.index("cb-cite-detail")


def test_progress_reports_steps_elapsed_and_eta(study, panels):
    panel = panels(study)
    labels = []
    panel.progress_label.observe(lambda ch: labels.append(ch["new"]), names="value")
    panel.send("benchmark CSP+LDA on SimulatedMI subjects 1-3", wait=True, timeout=WAIT)
    decide(panel, "approve", "")
    steps = [x for x in labels if "step " in x and " of 3" in x]
    assert steps and any("elapsed" in x for x in steps)
    # Inside a subject, each pipeline's folds are reported as they finish.
    folds = [x for x in labels if re.search(r"subject [1-3] · CSP\+LDA fold \d+ of 10", x)]
    assert any("subject 1 · CSP+LDA fold 1 of 10" in x for x in folds), labels[:5]
    assert len({re.search(r"subject \d · CSP\+LDA fold \d+", x).group() for x in folds}) > 3
    assert any(re.search(r"about \d+ (s|min)", x) and "left" in x for x in steps), steps
    assert "finished" in panel.progress_label.value and panel.progress.bar_style == "success"
    assert panel.stop_button.disabled and not panel.busy


def test_chat_creates_a_missing_workspace_and_says_so(tmp_path):
    import chatbci
    from chatbci.workspace.errors import WorkspaceNotFoundError

    target = tmp_path / "my-study"
    panel = chatbci.chat(target, backend="offline", n_jobs=1, display=False)
    try:
        assert panel.created and (target / "workspace.toml").is_file()
        assert panel.workspace.config.title == "my-study"
        said = panel.conversation.children[-1].value
        assert "Created a new workspace" in said and str(target.resolve()) in said
    finally:
        panel.close()
    again = chatbci.chat(target, backend="offline", n_jobs=1, display=False)
    assert not again.created
    again.close()

    with pytest.raises(WorkspaceNotFoundError, match="create=True"):
        chatbci.chat(tmp_path / "other", backend="offline", display=False, create=False)
    assert not (tmp_path / "other").exists()
    busy = tmp_path / "papers"
    busy.mkdir()
    (busy / "draft.tex").write_text("mine")
    with pytest.raises(WorkspaceNotFoundError, match="not empty"):
        chatbci.chat(busy, backend="offline", display=False)
    assert sorted(p.name for p in busy.iterdir()) == ["draft.tex"]
