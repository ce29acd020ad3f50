"""Trust: bad files and concurrent writers.

A note added by another process while a session reads the knowledge base, a
hand-broken note, a damaged journal.sqlite, a folder replaced by a symbolic
link out of the workspace, a bad CLI argument, and the file modes a shared
workspace needs. Each test reproduces a failure seen on the way here.
"""

from __future__ import annotations

import builtins
import os
import random
import sqlite3
import stat
import subprocess
import sys
import threading
import warnings

import pytest

from chatbci import cli
from chatbci.assistant.context import workspace_state
from chatbci.assistant.offline import OfflineBackend
from chatbci.assistant.session import Session
from chatbci.assistant.tools import (TOOLS, ToolContext, ToolError,
                                     resolve_workspace_pipelines)
from chatbci.workspace import (JournalCorruptError, KnowledgeError, UnsafePathError,
                               Workspace)
from chatbci.workspace.errors import KnowledgeWarning

BROKEN_NOTE = "---\ntitle: [unclosed\nauthor: human:bob\nverified: yes\n" \
              "created: 2025-01-31\n---\nA note broken by hand.\n"


@pytest.fixture
def ws(tmp_path):
    w = Workspace.create(tmp_path / "study", title="LR decoders",
                         goal="Find the best left vs right hand decoder",
                         datasets=["SimulatedMI"], subjects="1-3")
    yield w
    w.close()


def run_cli(capsys, *argv):
    """``chatbci ARGV`` in this process: (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def feed_input(monkeypatch, lines):
    """Type ``lines`` at the terminal (``input()``), then end of input."""
    queue = list(lines)

    def fake_input(prompt=""):
        print(prompt, end="")
        if not queue:
            raise EOFError
        return queue.pop(0)

    monkeypatch.setattr(builtins, "input", fake_input)


# ---------------------------------------------------------------------------
# Concurrent writers: a reader never sees half a note


_ADD_NOTES = """
import sys
from chatbci.workspace import Workspace

body = "Mu and beta desynchronise over the contralateral motor cortex.\\n" * 20_000
with Workspace.open(sys.argv[1]) as ws:
    for i in range(int(sys.argv[2])):
        ws.knowledge.add(f"Note {i}", body, author="human:ada")
"""


def test_a_note_being_added_is_never_seen_half_written(ws):
    """Another process adds notes (`chatbci note add` during a session): never half seen."""
    problems = []
    writer = subprocess.Popen([sys.executable, "-c", _ADD_NOTES, str(ws.path), "30"])
    try:
        while writer.poll() is None:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                try:
                    ws.knowledge.list()
                except KnowledgeError as err:  # how the old code failed
                    problems.append(str(err))
            problems.extend(str(w.message) for w in seen)
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert problems == []
    assert len(ws.knowledge.list()) == 30


def test_adding_a_note_never_overwrites_one(ws):
    """The name is claimed without clobbering: a hand-written file keeps its content."""
    folder = ws.path / "knowledge"
    (folder / "mu-rhythm.md").write_text("---\ntitle: Mine\nauthor: human:bob\n"
                                         "verified: yes\ncreated: 2025-01-31\n---\nKeep me.\n")
    ids = []

    def add(i):
        ids.append(ws.knowledge.add("Mu rhythm", f"copy {i}", author="human:ada").id)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ws.knowledge.get("mu-rhythm").body == "Keep me.\n"
    assert sorted(ids) == sorted(f"mu-rhythm-{n}" for n in range(2, 10))
    assert sorted(n.body for n in ws.knowledge.list() if n.id != "mu-rhythm") == \
        sorted(f"copy {i}\n" for i in range(8))
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------------------
# A broken note is reported and skipped


def test_a_broken_note_is_reported_and_skipped(ws):
    ws.knowledge.add("Mu rhythm", "Mu ERD over C3 and C4.", author="human:ada")
    (ws.path / "knowledge" / "broken.md").write_text(BROKEN_NOTE)
    with pytest.warns(KnowledgeWarning, match=r"broken\.md.*not valid YAML.*skipped"):
        notes = ws.knowledge.list()
    assert [n.id for n in notes] == ["mu-rhythm"]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert [n.id for n in ws.knowledge.search("mu")] == ["mu-rhythm"]
        state = workspace_state(ws, query="mu rhythm")
    assert [n["id"] for n in state["knowledge"]] == ["mu-rhythm"]
    assert "broken.md" in str(ws.knowledge.problems)
    # Asked for by name, the note's problem is the error.
    with pytest.raises(KnowledgeError, match="not valid YAML"):
        ws.knowledge.get("broken")


def test_a_broken_note_is_warned_about_once_until_it_changes(ws):
    path = ws.path / "knowledge" / "broken.md"
    path.write_text(BROKEN_NOTE)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ws.knowledge.list()
        ws.knowledge.list()
        path.write_text("not a note at all, and longer than before\n")
        ws.knowledge.list()
        path.unlink()
        assert ws.knowledge.list() == [] and ws.knowledge.problems == {}
    messages = [str(w.message) for w in seen]
    assert len(messages) == 2, messages
    assert "not valid YAML" in messages[0] and "no front matter" in messages[1]


def test_a_note_that_is_not_utf8_is_reported_and_skipped(ws):
    (ws.path / "knowledge" / "latin1.md").write_bytes(
        "---\ntitle: Caf\xe9\n---\n".encode("latin-1"))
    with pytest.warns(KnowledgeWarning, match=r"latin1\.md.*UTF-8"):
        assert ws.knowledge.list() == []


def test_chat_session_and_cli_go_on_with_a_broken_note(ws, capsys, monkeypatch):
    ws.knowledge.add("Mu rhythm", "Mu ERD over C3 and C4.", author="human:ada")
    (ws.path / "knowledge" / "broken.md").write_text(BROKEN_NOTE)
    path = ws.path
    ws.close()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        session = Session(path, backend=OfflineBackend(), human="ada")
        try:
            turn = session.send("what do we know about mu rhythm")
            assert "mu-rhythm" in str(turn.tool_results[0].payload)
        finally:
            session.close()
    assert any("broken.md" in str(w.message) for w in seen)

    code, out, err = run_cli(capsys, "note", "list", path)
    assert code == 0 and "mu-rhythm" in out
    assert err.count("\n") == 1 and "warning" in err and "broken.md" in err
    assert "not valid YAML" in err
    code, out, err = run_cli(capsys, "note", "search", path, "mu")
    assert code == 0 and "mu-rhythm" in out

    feed_input(monkeypatch, ["what do we know about mu", "/quit"])
    code, out, err = run_cli(capsys, "chat", path, "--offline", "--human", "ada")
    assert code == 0, err
    assert "broken.md" in err and "Traceback" not in err

    code, out, err = run_cli(capsys, "export", path, "--format", "md")
    assert code == 0, err
    assert (path / "exports").is_dir()


# ---------------------------------------------------------------------------
# A damaged journal: one clear line from every command


def _journal_commands(path, tmp_path):
    return [
        ("verify", path),
        ("log", path),
        ("log", path, "--json"),
        ("export", path, "--out", tmp_path / "out"),
        ("note", "list", path),
        ("note", "add", path, "--title", "A new note", "--body", "text",
         "--author", "human:ada"),
        ("chat", path, "--offline", "--human", "ada"),
    ]


@pytest.fixture
def study(tmp_path):
    """A closed workspace with a few dozen events of several kinds."""
    w = Workspace.create(tmp_path / "study", title="LR decoders", goal="Left vs right")
    session = Session(w, backend=OfflineBackend(), human="ada")
    for text in ("list datasets with left and right hand", "hello", "suggest pipelines"):
        session.send(text)
    w.knowledge.add("Mu rhythm", "Mu ERD over C3 and C4.", author="human:ada")
    session.close()
    w.close()
    for suffix in ("-wal", "-shm"):
        assert not (w.path / f"journal.sqlite{suffix}").exists()
    return w.path


def _assert_one_clear_line(code, err, argv):
    assert code in (1, 2), (argv, code, err)
    assert err.count("\n") == 1 and err.endswith("\n"), (argv, err)
    assert "Traceback" not in err and "journal.sqlite" in err, (argv, err)


def _run_all(capsys, monkeypatch, path, tmp_path):
    results = []
    for argv in _journal_commands(path, tmp_path):
        feed_input(monkeypatch, ["hello", "/quit"])
        results.append((argv, *run_cli(capsys, *argv)))
    return results


def test_a_journal_with_a_damaged_schema_gives_one_line_everywhere(study, tmp_path, capsys,
                                                                   monkeypatch):
    """Flip the bytes of the ``hash`` column's name: 'no such column: hash'."""
    path = study / "journal.sqlite"
    data = bytearray(path.read_bytes())
    at = data.index(b"hash       TEXT NOT NULL")
    data[at:at + 4] = b"hasx"
    path.write_bytes(bytes(data))
    for argv, code, out, err in _run_all(capsys, monkeypatch, study, tmp_path):
        _assert_one_clear_line(code, err, argv)
        assert "backup" in err and "chatbci verify" in err, err
        assert "hash" in err, err
    assert bytes(data) == path.read_bytes()


def test_a_journal_without_its_head_table_gives_one_line_everywhere(study, tmp_path, capsys,
                                                                    monkeypatch):
    with sqlite3.connect(study / "journal.sqlite") as con:
        con.execute("DROP TABLE head")
    con.close()
    for argv, code, out, err in _run_all(capsys, monkeypatch, study, tmp_path):
        _assert_one_clear_line(code, err, argv)
        assert "head" in err and "backup" in err, err


@pytest.mark.parametrize("seed", range(24))
def test_random_flipped_bytes_never_escape_as_tracebacks(study, tmp_path, capsys, monkeypatch,
                                                         seed):
    """40 bytes flipped at seeded offsets: each command works or says one clear line."""
    path = study / "journal.sqlite"
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    for offset in rng.sample(range(len(data)), 40):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    for argv, code, out, err in _run_all(capsys, monkeypatch, study, tmp_path):
        if code == 0:
            continue
        _assert_one_clear_line(code, err, argv)
        if argv[0] == "verify" and code == 1:
            assert "BROKEN at event" in err
        else:
            assert "backup" in err, (argv, err)


def test_verify_names_the_event_whose_text_is_not_utf8(study, capsys):
    """A flipped byte that breaks a row's UTF-8 is a broken event, not a crash."""
    with Workspace.open(study) as w:
        (target,) = [e for e in w.journal.events(kind="note") if e.payload["op"] == "add"]
        needle = target.payload["content_sha256"].encode()
    path = study / "journal.sqlite"
    data = bytearray(path.read_bytes())
    at = data.index(needle) + 5
    assert data.count(needle) == 1
    data[at] = 0xFF
    path.write_bytes(bytes(data))
    code, out, err = run_cli(capsys, "verify", study)
    assert code == 1 and f"BROKEN at event {target.id}" in err, err
    code, out, err = run_cli(capsys, "log", study)
    _assert_one_clear_line(code, err, ["log"])
    assert f"event {target.id}" in err and "chatbci verify" in err


def test_the_journal_layer_raises_its_own_error(study):
    with sqlite3.connect(study / "journal.sqlite") as con:
        con.execute("DROP TABLE head")
    con.close()
    with pytest.raises(JournalCorruptError, match="head"):
        Workspace.open(study)


# ---------------------------------------------------------------------------
# Symbolic links out of the workspace


def _swap_for_link(ws, folder, outside):
    outside.mkdir()
    target = ws.path / folder
    for child in target.iterdir():
        child.unlink()
    target.rmdir()
    target.symlink_to(outside, target_is_directory=True)


def test_ai_writes_never_follow_a_linked_pipelines_folder_out(ws, tmp_path):
    outside = tmp_path / "elsewhere"
    _swap_for_link(ws, "pipelines", outside)
    steps = [{"name": "Covariances", "parameters": {"estimator": "oas"}}, {"name": "MDM"}]
    with pytest.raises(ToolError, match="symbolic link.*outside"):
        TOOLS["define_pipeline"].run(ToolContext(ws), {"name": "Mine", "steps": steps})
    assert list(outside.iterdir()) == []
    with pytest.raises(UnsafePathError, match="symbolic link"):
        ws.path_for("pipelines", "x.yml")


def test_notes_are_never_written_through_a_linked_knowledge_folder(ws, tmp_path):
    outside = tmp_path / "elsewhere"
    _swap_for_link(ws, "knowledge", outside)
    with pytest.raises(UnsafePathError, match="symbolic link.*outside"):
        ws.knowledge.add("Mu rhythm", "body", author="human:ada")
    with pytest.raises(ToolError, match="symbolic link"):
        TOOLS["add_note"].run(ToolContext(ws), {"title": "Mu rhythm", "body": "b"})
    assert list(outside.iterdir()) == []
    assert ws.journal.events(kind="note")[-1].payload["op"] == "create_workspace"


def test_artifacts_config_and_exports_never_leave_the_workspace(ws, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (ws.path / "results" / "figures").rmdir()
    (ws.path / "results" / "figures").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError):
        ws.artifacts.put_bytes(b"\x89PNG fake", ".png")
    (ws.path / "workspace.toml").rename(outside / "real.toml")
    (ws.path / "workspace.toml").symlink_to(outside / "real.toml")
    before = (outside / "real.toml").read_text()
    with pytest.raises(UnsafePathError):
        ws.configure(actor="human:ada", autonomy="suggest")
    assert (outside / "real.toml").read_text() == before
    exports = ws.path / "exports"
    exports.rmdir()
    exports.symlink_to(outside, target_is_directory=True)
    from chatbci.export import export

    with pytest.raises(UnsafePathError):
        export(ws, "md")
    assert sorted(p.name for p in outside.iterdir()) == ["real.toml"]


def test_a_link_that_stays_inside_the_workspace_is_fine(ws):
    (ws.path / "pipelines").rmdir()
    (ws.path / "results" / "my-pipelines").mkdir()
    (ws.path / "pipelines").symlink_to(ws.path / "results" / "my-pipelines")
    steps = [{"name": "Covariances", "parameters": {"estimator": "oas"}}, {"name": "MDM"}]
    TOOLS["define_pipeline"].run(ToolContext(ws), {"name": "Mine", "steps": steps})
    assert (ws.path / "results" / "my-pipelines" / "Mine.yml").is_file()
    (spec,) = resolve_workspace_pipelines(ws, ["Mine"])
    assert spec.name == "Mine"


# ---------------------------------------------------------------------------
# CLI arguments


def test_bench_cache_dir_that_is_a_file_is_one_clear_line(capsys, tmp_path):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder\n")
    for cache in ("/proc/version", a_file, a_file / "below"):
        code, out, err = run_cli(capsys, "bench", "--subjects", "1", "--pipelines", "MDM",
                                 "--cache-dir", cache, "--quiet", "--n-jobs", "1")
        assert code == 2, err
        assert err.count("\n") == 1 and "--cache-dir" in err and "not a folder" in err, err
        assert "Traceback" not in err


def test_export_out_that_is_a_file_is_one_clear_line(ws, capsys, tmp_path):
    a_file = tmp_path / "out.txt"
    a_file.write_text("x")
    code, out, err = run_cli(capsys, "export", ws.path, "--out", a_file)
    assert code == 2 and err.count("\n") == 1 and "not a folder" in err, err


@pytest.mark.parametrize("bad", ["[1, 2]", '"1-2"', "3", "null"])
def test_modify_prompt_rejects_json_that_is_not_an_object(ws, capsys, monkeypatch, bad):
    path = ws.path
    ws.close()
    feed_input(monkeypatch, ["suggest pipelines", "m", bad, "s", "/quit"])
    code, out, err = run_cli(capsys, "chat", path, "--offline", "--human", "ada")
    assert code == 0, err
    assert "must be a JSON object" in out
    assert out.count("approve? [y]es") == 2  # asked again after the bad answer
    with Workspace.open(path) as w:
        assert len(w.journal.pending_suggestions()) == 1
        assert w.journal.events(kind="decision") == []


def test_session_modify_refuses_arguments_that_are_not_a_mapping(ws):
    session = Session(ws, backend=OfflineBackend(), human="ada")
    turn = session.send("suggest pipelines")
    (sugg,) = turn.suggestions
    with pytest.raises(ValueError, match="mapping of argument names"):
        session.modify(sugg.id, [1, 2], "bad")
    assert ws.journal.events(kind="decision") == []


# ---------------------------------------------------------------------------
# File modes follow the umask


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_files_follow_the_umask(tmp_path, umask_022):
    w = Workspace.create(tmp_path / "shared", title="Shared", goal="Read by colleagues")
    try:
        assert _mode(w.path / "workspace.toml") == 0o644
        fig = w.path / w.artifacts.put_bytes(b"\x89PNG fake", ".png")
        table = w.path / w.artifacts.put_bytes(b"a,b\n1,2\n", ".csv")
        assert _mode(fig) == _mode(table) == 0o644
        assert _mode(fig.parent) == 0o755
        w.configure(actor="human:ada", autonomy="suggest")
        assert _mode(w.path / "workspace.toml") == 0o644
        note = w.knowledge.add("Mu rhythm", "body", author="ai:model")
        assert _mode(w.path / note.path) == 0o644
        w.knowledge.verify(note.id, by="human:ada")
        assert _mode(w.path / note.path) == 0o644
        steps = [{"name": "Covariances", "parameters": {"estimator": "oas"}}, {"name": "MDM"}]
        TOOLS["define_pipeline"].run(ToolContext(w), {"name": "Mine", "steps": steps})
        assert _mode(w.path / "pipelines" / "Mine.yml") == 0o644
    finally:
        w.close()
    from chatbci.export import export

    out = export(w.path, "md")
    assert _mode(out) == 0o644


def test_a_private_umask_keeps_files_private(tmp_path):
    old = os.umask(0o077)
    try:
        w = Workspace.create(tmp_path / "private", title="Private", goal="Mine only")
        fig = w.path / w.artifacts.put_bytes(b"\x89PNG fake", ".png")
        w.close()
        from chatbci.export import export

        out = export(w.path, "md")
    finally:
        os.umask(old)
    assert _mode(w.path / "workspace.toml") == _mode(fig) == _mode(out) == 0o600
