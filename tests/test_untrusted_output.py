"""The trust boundary (issue 10): what a model writes is data until chatbci renders it.

- Terminal: ``chatbci chat`` (the real chat loop, driven through
  ``chatbci.cli.main`` against the local OpenAI-compatible server, with
  ``input`` as the only patched boundary), ``chatbci log`` and
  ``chatbci note list`` print no escape sequence, control or bidi character,
  and the approval prompt shows the journaled action, rendered by chatbci.
- Browser: the Jupyter panel's renderer and the HTML export load no remote
  resource from model Markdown; the Markdown and notebook exports show no
  model image either.
- Honest gaps: a dead LLM server is reported on screen; export targets are
  anywhere for a human, inside the workspace for anything the AI reaches.
"""

from __future__ import annotations

import builtins
import json
import re
import socket
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from chatbci.assistant.testing import FakeLLMServer, Reply
from chatbci.workspace import Workspace

KEY = "test-key-" + "e5f6a7b8" * 3

#: What may not reach a terminal: ESC and other C0 controls but \t and \n, DEL,
#: C1 controls (8-bit CSI, OSC...), bidi embeddings/overrides/isolates/marks,
#: zero-width and other invisible format characters, Unicode tags.
TERMINAL_BAD = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b\u200e\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\U000e0000-\U000e007f]")

#: A model answer that tries to clear the screen and redraw a harmless-looking
#: suggestion, set the window title, overwrite a line with \r, hide text with
#: bidi overrides and smuggle 8-bit and DCS/APC sequences.
SPOOF = ("Let me just look at the data.\x1b[2J\x1b[H\x1b]0;chatbci chat\x07"
         "  suggestion #3: describe_dataset {\"dataset\": \"SimulatedMI\"}\n"
         "  why: a quick look, nothing runs\x9b2K\x9b1A"
         "\rall good \u202egnissecorp\u202c \u2066isolated\u2069 \u200bzero\u200b"
         "\x1bP+q544e\x1b\\\x1b_apc\x1b\\\x1b7\x1b8\x1b(B\x08\x08\x7f\x9d8;;http://e\x9c"
         "\U000e0041\U000e0042 end")


def assert_terminal_safe(text):
    bad = sorted({f"U+{ord(c):04X}" for c in TERMINAL_BAD.findall(text)})
    assert not bad, f"unsafe characters reached the terminal: {bad}"


# ---------------------------------------------------------------------------
# The terminal sanitiser itself


def test_terminal_text_strips_sequences_controls_and_bidi():
    from chatbci.sanitize import terminal_text

    out = terminal_text(SPOOF)
    assert_terminal_safe(out)
    # Sequences go whole (no "[2J" or "0;chatbci chat" left as litter) ...
    assert "[2J" not in out and "chatbci chat" not in out and "544e" not in out
    assert "apc" not in out and "http://e" not in out
    # ... and the visible text stays, in stored order.
    assert out.startswith("Let me just look at the data.  suggestion #3: describe_dataset")
    assert "nothing runsall good gnissecorp isolated zero end" in out
    assert terminal_text("a\r\nb\tc\u2028d") == "a\nb\tc\nd"
    assert terminal_text(12) == "12"
    assert terminal_text("naïve café 😀 👩\u200d🔬 µV ±") == "naïve café 😀 👩\u200d🔬 µV ±"


def test_stream_filter_catches_sequences_split_across_deltas():
    from chatbci.sanitize import TerminalStream, terminal_text

    whole = terminal_text(SPOOF)
    for size in (1, 2, 3, 5, 7):
        stream = TerminalStream()
        out = "".join(stream.feed(SPOOF[i:i + size]) for i in range(0, len(SPOOF), size))
        out += stream.flush()
        assert out == whole, size
    # Every two-way split, so every sequence is cut at every position once.
    for cut in range(len(SPOOF) + 1):
        stream = TerminalStream()
        assert stream.feed(SPOOF[:cut]) + stream.feed(SPOOF[cut:]) + stream.flush() == whole
    # An unterminated OSC is held back only so long, then shown as text.
    stream = TerminalStream(max_pending=16)
    out = stream.feed("\x1b]0;" + "x" * 40) + stream.flush()
    assert_terminal_safe(out) and out.endswith("x" * 40)
    # Continuation lines are marked as the model's.
    stream = TerminalStream(continuation="ai| ")
    assert stream.feed("one\ntw") + stream.feed("o\n") + stream.feed("three") == \
        "one\nai| two\nai| three"


def test_terminal_json_is_exact_and_printable():
    from chatbci.sanitize import terminal_json

    value = {"text": SPOOF, "lone": "\ud800", "tag": "\U000e0041"}
    out = terminal_json(value, indent=1)
    assert_terminal_safe(out)
    assert json.loads(out) == value
    assert "café" in terminal_json("café")  # readable, not \u-escaped


# ---------------------------------------------------------------------------
# chatbci chat, through the real loop


@pytest.fixture
def server():
    with FakeLLMServer(model="fake-model") as srv:
        yield srv
        assert srv.errors == []


def chat_workspace(tmp_path, base_url):
    path = tmp_path / "study"
    Workspace.create(path, title="Spoof test", goal="Approve only what you see",
                     datasets=["SimulatedMI"], subjects="1-3",
                     llm={"model": "fake-model", "base_url": base_url}).close()
    return path


def scripted_input(monkeypatch, answers):
    """``input`` as a terminal would behave: the prompt is printed, a line is read."""
    answers = iter(answers)

    def fake_input(prompt=""):
        sys.stdout.write(prompt)
        try:
            line = next(answers)
        except StopIteration:
            raise EOFError from None
        sys.stdout.write(line + "\n")
        return line

    monkeypatch.setattr(builtins, "input", fake_input)


def test_chat_cannot_spoof_the_approval_prompt(tmp_path, server, monkeypatch, capsys):
    from chatbci.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("CHATBCI_MODEL", raising=False)
    big = {"pipelines": ["CSP+LDA", "TS+LR", "TS+SVM", "MDM", "FgMDM", "FBCSP+SVM",
                         "ACM+TS+SVM"], "dataset": "SimulatedMI", "subjects": "1-3"}
    # The text before the call is the suggestion's rationale; the answer after
    # it is streamed in 3-character deltas, so sequences are cut across them.
    server.script([Reply.tool_calls([("run_benchmark", big)], text=SPOOF, chunk_size=3),
                   Reply.text("Answer: " + SPOOF, chunk_size=3)])
    path = chat_workspace(tmp_path, server.base_url)
    scripted_input(monkeypatch, ["benchmark everything", "n", "not this one", "/quit"])

    assert main(["chat", str(path), "--human", "ada"]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert "Answer: Let me just look at the data." in out  # the answer was shown...
    assert "describe_dataset" in out  # ... as inert text

    with Workspace.open(path) as ws:
        (sugg,) = ws.journal.events(kind="suggestion")
        (decision,) = ws.journal.events(kind="decision")
    action = sugg.payload["action"]
    assert action["tool"] == "run_benchmark" and decision.payload["verdict"] == "reject"
    lines = out.splitlines()
    prompt = next(i for i, line in enumerate(lines) if "approve" in line and "[y]es" in line)
    # The prompt names the journaled action, and the line right above it is that
    # action as chatbci renders it (not text the model wrote).
    assert f"#{sugg.id}" in lines[prompt] and "run_benchmark" in lines[prompt]
    assert "describe_dataset" not in lines[prompt]
    shown = lines[prompt - 1].strip()
    tool, _, args = shown.partition(" ")
    assert {"tool": tool, "args": json.loads(args)} == action
    # Every line the model wrote is marked as the model's.
    model_lines = [line for line in lines if "why: a quick look" in line]
    assert model_lines and all(line.lstrip().startswith(("ai|", "|", "ai>"))
                               for line in model_lines)


def test_chat_prints_why_the_llm_could_not_be_reached(tmp_path, monkeypatch, capsys):
    from chatbci.cli import main

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    path = chat_workspace(tmp_path, f"http://127.0.0.1:{port}/v1")
    scripted_input(monkeypatch, ["hello", "/quit"])

    assert main(["chat", str(path), "--human", "ada"]) == 0
    out = capsys.readouterr().out
    with Workspace.open(path) as ws:
        (error,) = ws.journal.events(kind="error")
    message = error.payload["message"]
    assert message and message in out
    assert not re.search(r"^ai> *$", out, re.M), "an empty ai> line instead of the error"


# ---------------------------------------------------------------------------
# chatbci log and chatbci note list


def test_log_and_note_list_are_terminal_safe(tmp_path, capsys):
    from chatbci.cli import main

    path = tmp_path / "study"
    with Workspace.create(path, title="Log test", goal="Read the journal safely") as ws:
        ws.journal.append("message", "ai:fake", {"text": SPOOF})
        ws.journal.append("error", "system", {"message": "failed: " + SPOOF})
        ws.knowledge.add("Mu \x1b]0;x\x07rhythm \u202eevil", SPOOF, author="ai:fake")
    assert main(["log", str(path), "--width", "400"]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert "Let me just look at the data." in out
    assert main(["log", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    texts = [e["payload"].get("text") for e in json.loads(out)]
    assert SPOOF in texts  # exact, only spelled with \u escapes
    assert main(["note", "list", str(path)]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out) and "Mu rhythm evil" in out
    assert main(["note", "list", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert_terminal_safe(out)
    assert json.loads(out)[0]["title"] == "Mu \x1b]0;x\x07rhythm \u202eevil"


# ---------------------------------------------------------------------------
# Browser: the panel renderer and the HTML export

#: Hostile Markdown a model may write: (name, text).
HOSTILE_MD = [
    ("img", "![chart](http://evil.example/pixel.png)"),
    ("img-title", '![c](https://evil.example/p.png "t")'),
    ("img-reference", "![x][1]\n\n[1]: http://evil.example/ref.png"),
    ("img-in-link", "[![x](http://evil.example/i.png)](http://evil.example/)"),
    ("img-protocol-relative", "![x](//evil.example/p.png)"),
    ("autolink", "<http://evil.example/auto>"),
    ("raw-img", '<img src="http://evil.example/raw.png" onerror="alert(1)">'),
    ("iframe", '<iframe src="http://evil.example/frame"></iframe>'),
    ("style", "<style>body { background: url(http://evil.example/bg.png) }</style>"),
    ("link", '<link rel="stylesheet" href="http://evil.example/x.css">'),
    ("svg", '<svg onload="alert(1)"><image href="http://evil.example/s.png"/></svg>'),
    ("video", '<video src="http://evil.example/v.mp4" poster="http://evil.example/p.png">'),
    ("audio", '<audio><source src="http://evil.example/a.mp3"></audio>'),
    ("object", '<object data="http://evil.example/o.swf"></object><embed src="http://e.x/e">'),
    ("javascript", "[click](javascript:alert(1))"),
    ("javascript-case", "[click](JaVaScRiPt:alert(1))"),
    ("javascript-entity", "[click](&#106;avascript:alert(1))"),
    ("javascript-hex-entity", "[click](&#x6A;&#x61;vascript:alert(1))"),
    ("javascript-reference", "[click][j]\n\n[j]: javascript:alert(1)"),
    ("javascript-autolink", "<javascript:alert(1)>"),
    ("vbscript", "[click](vbscript:msgbox(1))"),
    ("data-link", "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)"),
    ("data-img", "![x](data:image/svg+xml;base64,PHN2Zy8+)"),
    ("css-url", '<span style="background:url(http://evil.example/u.png)">x</span>'),
    ("html-block", "<div>\n<img src=http://evil.example/b.png>\n</div>"),
    ("table-style", "| a | b |\n|:--|--:|\n| ![x](http://evil.example/t.png) | 2 |"),
    ("bidi", "safe \u202e)1(trela:tpircsavaj"),
    ("markdown-ok", "**bold** and [docs](https://moabb.neurotechx.com) and `code`"),
]

#: Elements that fetch what their URL attributes name.
FETCHING = {"img", "iframe", "frame", "link", "style", "svg", "image", "video", "audio",
            "source", "track", "object", "embed", "script", "input", "picture", "use",
            "base", "applet", "bgsound", "portal"}
URL_ATTRS = {"src", "href", "data", "poster", "srcset", "background", "action", "formaction",
             "xlink:href", "codebase"}


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements = []
        self.css = []  # text of <style> elements
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.css.append(data)


def remote_fetches(page, *, chatbci_images=False):
    """What in ``page`` would load a resource or run code (empty if nothing)."""
    found = []
    parser = _Elements()
    parser.feed(page)
    # CSS fetches with url() (and @import); as text in a paragraph it is inert.
    if any(re.search(r"url\s*\(|@import", css, re.I) for css in parser.css):
        found.append("url( in <style>")
    for tag, attrs in parser.elements:
        for name, value in attrs.items():
            value = value or ""
            if name.startswith("on"):
                found.append(f"<{tag} {name}>")
            if name == "style":
                found.append(f"<{tag} style=>")
            if tag == "a" and name == "href" and not re.match(r"(https?:|mailto:|#)", value):
                found.append(f"<a href={value!r}>")
            if tag in FETCHING and name in URL_ATTRS:
                local = value.startswith("#") or (
                    chatbci_images and tag == "img" and value.startswith("data:image/png;"))
                if not local:
                    found.append(f"<{tag} {name}={value!r}>")
        if tag == "meta" and "http-equiv" in attrs:  # refresh to a URL
            found.append("<meta http-equiv>")
        if tag in FETCHING - {"style"} and not (chatbci_images and tag == "img"):
            found.append(f"<{tag}>")
    return found


@pytest.mark.parametrize("name,text", HOSTILE_MD, ids=[n for n, _ in HOSTILE_MD])
def test_panel_renderer_loads_nothing_from_model_markdown(name, text):
    from chatbci.jupyter.render import MessageBubble, markdown_html

    out = markdown_html(text)
    assert remote_fetches(out) == [], out
    assert "<style" not in out and "<img" not in out and "<iframe" not in out
    bubble = MessageBubble("ai", "AI (fake)", text)
    assert remote_fetches(bubble.value) == [], bubble.value
    assert_terminal_safe(out.replace("\n", ""))  # no bidi override in the page either


def test_panel_renderer_keeps_markdown_and_shows_images_as_links():
    from chatbci.jupyter.render import markdown_html

    out = markdown_html("**bold** [docs](https://moabb.neurotechx.com) "
                        "![scores](http://evil.example/p.png) [run_benchmark #4]")
    assert "<strong>bold</strong>" in out
    assert re.search(r'<a [^>]*href="https://moabb.neurotechx.com"', out)
    assert 'rel="noopener noreferrer nofollow"' in out
    assert "image: scores" in out and "<img" not in out
    assert 'class="cb-cite"' in out
    assert "<a" not in markdown_html("[click](javascript:alert(1))")


def test_panel_cards_and_tables_escape_model_names(tmp_path):
    from chatbci.jupyter.render import styled_table
    import pandas as pd

    df = pd.DataFrame({"pipeline": ['<img src="http://evil.example/n.png">'],
                       '<img src="http://evil.example/c.png">': [0.5]})
    out = styled_table(df, highlight=("pipeline", df["pipeline"][0]))
    assert "<img" not in out and "&lt;img" in out


@pytest.fixture
def hostile_ws(tmp_path):
    """A journal in which the model wrote every hostile Markdown case."""
    ws = Workspace.create(tmp_path / "hostile", title="Hostile", goal="Render model text")
    j = ws.journal
    j.start_session(backend="openai", model="fake-model", is_llm=True)
    m = j.append("message", "human:ada", {"text": "Show me: " + HOSTILE_MD[0][1]})
    for name, text in HOSTILE_MD:
        j.append("message", "ai:fake-model", {"text": f"{name}: {text}"}, m.id)
    action = {"tool": "run_benchmark", "args": {"pipelines": ["MDM"]}}
    j.append("suggestion", "ai:fake-model",
             {"action": action, "rationale": "\n\n".join(t for _, t in HOSTILE_MD)}, m.id)
    j.append("note", "ai:fake-model", {"text": HOSTILE_MD[0][1]})
    j.append("error", "system", {"message": HOSTILE_MD[6][1]})
    j.end_session()
    yield ws
    ws.close()


def test_html_export_loads_nothing_from_model_markdown(hostile_ws, tmp_path):
    from chatbci.export import export

    page = export(hostile_ws, "html", out=tmp_path / "out").read_text()
    assert remote_fetches(page, chatbci_images=True) == []
    assert "evil.example/pixel.png" in page  # shown as a link the human may follow
    # Model Markdown is rendered by the same renderer as the panel.
    assert "<strong>bold</strong>" in page
    assert re.search(r'<a [^>]*href="https://moabb.neurotechx.com"', page)


def test_markdown_and_notebook_exports_show_no_model_image(hostile_ws, tmp_path):
    from markdown_it import MarkdownIt

    from chatbci.export import export

    md_path, nb_path = export(hostile_ws, ["md", "ipynb"], out=tmp_path / "out")
    renderer = MarkdownIt("commonmark", {"html": True})  # as a Markdown viewer would
    html_md = renderer.render(md_path.read_text())
    assert "<img" not in html_md and "<iframe" not in html_md
    cells = json.loads(nb_path.read_text())["cells"]
    html_nb = renderer.render("\n\n".join("".join(c["source"]) for c in cells
                                          if c["cell_type"] == "markdown"))
    assert "<img" not in html_nb and "<iframe" not in html_nb


# ---------------------------------------------------------------------------
# Export targets: a human may export anywhere, the AI never chooses a path


def test_a_human_may_export_outside_the_workspace(hostile_ws, tmp_path, capsys):
    from chatbci.cli import main

    elsewhere = tmp_path / "elsewhere" / "paper"
    assert main(["export", str(hostile_ws.path), "--format", "md", "--out",
                 str(elsewhere)]) == 0
    printed = [Path(p) for p in capsys.readouterr().out.split()]  # every file written
    assert printed and any(p.suffix == ".md" for p in printed)
    for path in printed:
        assert path.is_file() and path.resolve().is_relative_to(elsewhere.resolve())


def test_no_ai_tool_chooses_a_path_outside_the_workspace(tmp_path):
    from chatbci.assistant.tools import TOOLS, ToolError
    from chatbci.workspace.paths import __doc__ as paths_doc

    # No tool exports, and no tool takes a free-form path or output folder.
    assert not [n for n in TOOLS.names() if "export" in n]
    for schema in TOOLS.schemas():
        fn = schema["function"]
        props = json.dumps(fn["parameters"]).lower()
        for word in ('"out"', '"output"', '"path"', '"dir"', '"folder"', '"file"'):
            assert word not in props, (fn["name"], word)
    # The one file name the AI picks (a pipeline's) stays inside the workspace.
    with Workspace.create(tmp_path / "w", title="t", goal="g") as ws:
        for name in ("../../outside", "/tmp/outside", "a/../../b"):
            with pytest.raises((ToolError, ValueError)):
                TOOLS["define_pipeline"].check(ws, {"name": name, "steps": [
                    {"name": "Covariances"}, {"name": "MDM"}]})
        assert not (tmp_path / "outside.yml").exists()
    # The docs say what the code does: a human's --out may be anywhere.
    assert "--out" in paths_doc and "anywhere" in paths_doc
