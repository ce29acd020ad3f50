"""The terminal chat (`chatbci chat`): commands, decisions, and Ctrl-C driven by tmux."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from chatbci.workspace import Workspace


def _env():
    """The test's environment without any model configured (the offline assistant)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CHATBCI_MODEL")}


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "study"
    Workspace.create(path, title="LR decoders", goal="Find the best left vs right decoder",
                     datasets=["SimulatedMI"], subjects="1-3").close()
    return path


def _chat(path, script, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "chatbci", "chat", str(path), "--human",
                           "ada"], input="\n".join(script) + "\n", capture_output=True,
                          text=True, env=_env(), timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_chat_commands_are_listed_and_work(study):
    out = _chat(study, ["/help", "/note Mu rhythm: ERD at C3 and C4 during imagery",
                        "/log 3", "/verify", "/results", "/export md", "/nonsense", "/quit"])
    # Piped input is not echoed: the text after the n-th prompt answers the n-th line.
    listing = out.split("you> ")[1]
    for command in ("/pending", "/results", "/log", "/note", "/verify", "/export",
                    "/autonomy", "/quit"):
        assert command in listing, listing
    assert "added note" in out
    # /log prints the journal's events, the note's among them, actors whole.
    assert "human:ada" in out and "added knowledge note 'Mu rhythm'" in out
    assert "hash chain" in out.lower() or "ok" in out.lower()
    assert "unknown command '/nonsense'" in out
    exports = list((study / "exports").glob("*.md"))
    assert exports and any(str(p) in out for p in exports)
    ws = Workspace.open(study)
    notes = ws.knowledge.list()
    assert [n.title for n in notes] == ["Mu rhythm"] and notes[0].author == "human:ada"
    ws.close()


def test_an_empty_rejection_reason_is_asked_again_never_invented(study):
    out = _chat(study, [
        "define pipeline Mine: Covariances(estimator=oas) + MDM",
        "n", "", "",          # no reason twice: back to the question, nothing recorded
        "n", "", "not needed yet",
        "/quit",
    ])
    assert "a reason is needed to reject" in out
    ws = Workspace.open(study)
    decisions = ws.journal.events(kind="decision")
    assert [(d.payload["verdict"], d.payload["rationale"]) for d in decisions] == [
        ("reject", "not needed yet")]
    assert "rejected in the terminal" not in ws.journal.path.read_bytes().decode("latin-1")
    ws.close()


def test_chat_prints_figure_paths_that_exist(study):
    out = _chat(study, ["explore subject 1", "/quit"])
    shown = [line.strip()[1:-1] for line in out.splitlines()
             if line.strip().startswith("[") and line.strip().endswith(".png]")]
    assert shown and all(os.path.isfile(p) for p in shown)


def test_log_prints_actors_whole(tmp_path, capsys):
    from chatbci.cli import main

    ws = Workspace.create(tmp_path / "s", title="t", goal="g")
    ws.journal.append("message", "human:demo-researcher", {"text": "hello"})
    ws.journal.append("message", "ai:a-rather-long-model-name-7b-instruct", {"text": "hi"})
    ws.close()
    assert main(["log", str(tmp_path / "s")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("human:demo-researcher " in line and line.endswith("hello") for line in lines)
    assert any("ai:a-rather-long-model-name-7b-instruct " in line for line in lines)
    # One column for the kind, whatever the actor's length.
    starts = {line.index(" message ") for line in lines if " message " in line}
    assert len(starts) == 1


def test_ctrl_c_cuts_a_streaming_answer_and_journals_the_stop(tmp_path, fake_llm, capsys):
    import _thread
    import threading

    from conftest import llm_session

    from chatbci.assistant.testing import Reply
    from chatbci.cli import _Chat, _send

    ws = Workspace.create(tmp_path / "s", title="t", goal="g")
    # About 16 s of streamed words: Ctrl-C after 1.5 s must end it at once.
    fake_llm.script([Reply.text("word " * 800, chunk_size=5, delay=0.02)])
    session = llm_session(ws, fake_llm)
    timer = threading.Timer(1.5, _thread.interrupt_main)  # Ctrl-C, as the terminal sends it
    timer.start()
    t0 = time.monotonic()
    result = _Chat(session).run("the assistant's turn",
                                lambda activity: _send(session, "hello", activity))
    seconds = time.monotonic() - t0
    timer.cancel()
    assert result is None and seconds < 8
    out = capsys.readouterr().out
    assert out.startswith("ai> word") and "the answer was stopped" in out
    (stop,) = [e for e in ws.journal.events(kind="note") if e.payload.get("op") == "stop"]
    (asked,) = ws.journal.events(kind="message", actor="human")
    assert stop.parent_id == asked.id and "cut off while it streamed" in stop.payload["text"]
    assert not ws.journal.events(kind="message", actor="ai")
    assert not ws.journal.events(kind="error")  # a stop is no failure of the model
    session.close()
    ws.close()


# -- tmux: the chat in a real terminal, Ctrl-C included ----------------------------------


class _Tmux:
    """One chat in a private tmux server (its own socket: no other session is touched)."""

    def __init__(self, tmp_path, command):
        self.socket = f"chatbci-test-{uuid.uuid4().hex[:10]}"
        script = tmp_path / "run-chat.sh"
        exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in _env().items()
                            if k.isidentifier())
        script.write_text(f"{exports}\nunset OPENAI_API_KEY OPENAI_BASE_URL\n{command}\n"
                          "echo CHAT-EXITED rc=$?\nsleep 600\n")
        self._tmux("new-session", "-d", "-s", "chat", "-x", "200", "-y", "60",
                   f"bash {shlex.quote(str(script))}")

    def _tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout

    def keys(self, *keys):
        self._tmux("send-keys", "-t", "chat", *keys)

    def screen(self):
        return self._tmux("capture-pane", "-p", "-J", "-S", "-2000", "-t", "chat")

    def wait_for(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{self.screen()}")

    def close(self):
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=30)


def _prompts(text):
    return sum(1 for line in text.splitlines() if line.startswith("you>"))


@pytest.mark.skipif(shutil.which("tmux") is None,
                    reason="tmux is not installed (apt-get install tmux; .ci/run installs it)")
def test_ctrl_c_stops_a_benchmark_and_returns_to_the_prompt(tmp_path):
    path = tmp_path / "study"
    Workspace.create(path, title="Stop test", goal="Find a decoder",
                     datasets=["SimulatedMI"]).close()
    tmux = _Tmux(tmp_path, f"{shlex.quote(sys.executable)} -m chatbci chat "
                           f"{shlex.quote(str(path))} --human ada")
    try:
        tmux.wait_for(lambda s: _prompts(s) >= 1, 120, "the first prompt")
        tmux.keys("/help", "Enter")
        screen = tmux.wait_for(lambda s: _prompts(s) >= 2, 30, "the prompt after /help")
        for command in ("/pending", "/results", "/log", "/note", "/verify", "/export",
                        "/autonomy", "/quit"):
            assert command in screen
        assert "Ctrl-C" in screen

        # Grid-searched pipelines on 10 subjects: minutes of work, stopped after a few s.
        tmux.keys("benchmark TS+SVM, FBCSP+SVM and ACM+TS+SVM on SimulatedMI subjects 1-10",
                  "Enter")
        tmux.wait_for(lambda s: "approve?" in s, 120, "the suggestion to decide")
        tmux.keys("y", "Enter")
        tmux.wait_for(lambda s: "rationale (optional)" in s, 30, "the rationale question")
        tmux.keys("Enter")
        tmux.wait_for(lambda s: "running run_benchmark" in s, 120, "the benchmark to start")
        time.sleep(3)
        tmux.keys("C-c")
        t0 = time.monotonic()
        screen = tmux.wait_for(lambda s: "back at the prompt" in s and _prompts(s) >= 3, 60,
                               "the prompt after Ctrl-C")
        assert time.monotonic() - t0 < 30
        assert "CHAT-EXITED" not in screen
        assert "stopped by the human" in screen or "interrupted by the human" in screen, screen

        # Still chatting. Ctrl-C at a decision's question leaves it pending; a
        # second Ctrl-C leaves the chat.
        tmux.keys("benchmark MDM on SimulatedMI subjects 1", "Enter")
        tmux.wait_for(lambda s: s.count("approve?") >= 2, 60, "the second suggestion")
        tmux.keys("C-c")
        tmux.wait_for(lambda s: "cancelled; pending suggestions stay" in s, 30,
                      "the decision to be cancelled")
        assert "CHAT-EXITED" not in tmux.screen()
        tmux.keys("C-c")
        screen = tmux.wait_for(lambda s: "CHAT-EXITED" in s, 60, "the chat to exit")
        assert "CHAT-EXITED rc=0" in screen
    finally:
        tmux.close()

    ws = Workspace.open(path)
    j = ws.journal
    assert j.verify().ok
    calls = j.events(kind="tool_call")
    results = {e.parent_id: e for e in j.events(kind="tool_result")}
    assert calls and all(c.id in results for c in calls), "a tool call without its result"
    bench = [c for c in calls if c.payload["tool"] == "run_benchmark"]
    assert len(bench) == 1 and not results[bench[0].id].payload["ok"]
    stops = [e for e in j.events(kind="note") if e.payload.get("op") == "stop"]
    assert len(stops) == 1 and stops[0].actor == "human:ada"
    assert "Ctrl-C" in stops[0].payload["text"] and "run_benchmark" in stops[0].payload["text"]
    ends = j.events(kind="session_end")
    assert ends and ends[-1].payload["reason"] == "left with Ctrl-C"
    (pending,) = j.pending_suggestions()
    assert pending.payload["action"]["args"]["pipelines"] == ["MDM"]
    ws.close()
