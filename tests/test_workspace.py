"""Tests of the workspace: creation, settings, safe paths, artifacts, knowledge
base, secrets, bad files and the workspace CLI commands."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import tomllib

import pytest
import yaml
from pydantic import ValidationError

import chatbci
from chatbci.cli import main
from chatbci.workspace import (ConfigError, JournalCorruptError,
                               JournalMissingError, KnowledgeError, KnowledgeWarning,
                               UnsafePathError, Workspace,
                               WorkspaceConfig, WorkspaceExistsError, WorkspaceNotFoundError)
from chatbci.workspace.config import dump_toml
from chatbci.workspace.secrets import REDACTED, scrub


@pytest.fixture
def ws(tmp_path):
    w = Workspace.create(tmp_path / "study", title="Left vs right", goal="Beat CSP+LDA",
                         datasets=["BNCI2014_001"], subjects="1-3")
    yield w
    w.close()


# ---------------------------------------------------------------------------
# Creating and opening


def test_create_and_open(tmp_path):
    root = tmp_path / "a" / "study"
    ws = Workspace.create(root, title="MI study", goal="Compare decoders",
                          datasets=["BNCI2014_001", "PhysionetMI"], subjects=[1, 2],
                          evaluation="cross-session", random_state=7, autonomy="suggest",
                          llm={"model": "gpt-4o-mini", "base_url": "http://127.0.0.1:8000/v1"},
                          budgets={"seconds_per_turn": 60})
    assert chatbci.Workspace is Workspace
    assert ws.path == root.resolve()
    for folder in ("knowledge", "pipelines", "results/figures", "results/tables", "exports"):
        assert (root / folder).is_dir()
    on_disk = tomllib.loads((root / "workspace.toml").read_text())
    assert on_disk["title"] == "MI study" and on_disk["subjects"] == [1, 2]
    assert on_disk["llm"] == {"model": "gpt-4o-mini", "base_url": "http://127.0.0.1:8000/v1"}
    assert on_disk["budgets"]["seconds_per_turn"] == 60
    created = ws.journal.events(kind="note")[0]
    assert created.payload["op"] == "create_workspace"
    assert created.payload["config"]["goal"] == "Compare decoders"
    start = ws.journal.events(kind="session_start")[0]
    assert start.payload["provenance"]["seeds"] == {"random_state": 7}
    ws.close()

    with Workspace.open(root) as again:
        assert again.config == ws.config
        assert again.config.evaluation == "cross-session"
        assert again.config.budgets.seconds_per_session == 4 * 3600  # default kept
        assert again.journal.verify().ok
    # close() ended the session that create() started.
    with Workspace.open(root) as again:
        assert [e.kind for e in again.journal.events()] == ["session_start", "note",
                                                            "session_end"]


def test_create_refuses_an_existing_workspace(ws):
    with pytest.raises(WorkspaceExistsError, match="already a chatbci workspace"):
        Workspace.create(ws.path, title="Other", goal="g")
    with Workspace.create(ws.path, title="Other", goal="g", exist_ok=True) as same:
        assert same.config.title == "Left vs right"


def test_create_refuses_to_overwrite_an_orphan_journal(tmp_path):
    (tmp_path / "journal.sqlite").write_bytes(b"precious")
    with pytest.raises(WorkspaceExistsError, match="refusing to replace"):
        Workspace.create(tmp_path, title="t", goal="g")
    assert (tmp_path / "journal.sqlite").read_bytes() == b"precious"


def test_invalid_settings_write_nothing(tmp_path):
    with pytest.raises(ConfigError, match="autonomy"):
        Workspace.create(tmp_path / "w", title="t", goal="g", autonomy="yolo")
    assert not (tmp_path / "w").exists()


# ---------------------------------------------------------------------------
# Settings


@pytest.mark.parametrize("settings, fragments", [
    ({"autonomy": "yolo"}, ["`autonomy` = 'yolo'", "'suggest', 'assist' or 'auto'"]),
    ({"evaluation": "loo"}, ["`evaluation` = 'loo'", "'within-session'"]),
    ({"subjects": "1-x"}, ["`subjects`", "'1-x'", "'1,3,5-7'"]),
    ({"subjects": "5-2"}, ["`subjects`", "empty"]),
    ({"subjects": [1, 1]}, ["`subjects`", "more than once"]),
    ({"random_state": "42"}, ["`random_state` = '42'", "valid integer"]),
    ({"datasets": "BNCI2014_001"}, ["`datasets` = 'BNCI2014_001'", "valid list"]),
    ({"budgets": {"seconds_per_turn": -1}}, ["`budgets.seconds_per_turn` = -1",
                                             "greater than 0"]),
    ({"budgets": {"gpu_hours": 2}}, ["`budgets.gpu_hours` is not a known setting",
                                     "seconds_per_turn"]),
    ({"llm": {"base_url": "ftp://x"}}, ["`llm.base_url` = 'ftp://x'", "http(s) URL"]),
    ({"colour": "blue"}, ["`colour` is not a known setting", "allowed keys:", "autonomy"]),
    ({"title": "  "}, ["`title`"]),
])
def test_config_errors_name_key_value_and_fix(tmp_path, settings, fragments):
    with pytest.raises(ConfigError) as info:
        Workspace.create(tmp_path / "w", **{"title": "t", "goal": "g", **settings})
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("key", ["api_key", "openai_api_key", "token", "secret", "apiKey"])
def test_config_refuses_credentials(tmp_path, key):
    with pytest.raises(ConfigError, match=f"`llm.{key}` looks like a credential.*"
                                          "OPENAI_API_KEY"):
        Workspace.create(tmp_path / "w", title="t", goal="g", llm={key: "sk-abc"})


def test_hand_edited_toml_is_validated(ws):
    path = ws.path / "workspace.toml"
    ws.close()
    path.write_text(path.read_text().replace('autonomy = "assist"', 'autonomy = "always"'))
    with pytest.raises(ConfigError) as info:
        Workspace.open(ws.path)
    assert str(path) in str(info.value) and "'always'" in str(info.value)
    path.write_text('title = "unterminated\n')
    with pytest.raises(ConfigError, match=r"not valid TOML .*line 1"):
        Workspace.open(ws.path)
    path.write_text('title = "t"\ngoal = "g"\n[llm]\napi_key = "sk-x"\n')
    with pytest.raises(ConfigError, match="llm.api_key` looks like a credential"):
        Workspace.open(ws.path)


def test_minimal_hand_written_toml_gets_defaults(tmp_path):
    Workspace.create(tmp_path, title="t", goal="g").close()
    (tmp_path / "workspace.toml").write_text('title = "Mine"\ngoal = "Mine too"\n')
    with Workspace.open(tmp_path) as ws:
        assert ws.config.autonomy == "assist" and ws.config.llm.model is None


def test_toml_writer_round_trips():
    data = {
        "s": 'quote " backslash \\ newline \n tab \t bell \x07 unicode é✓ \U0001F9E0',
        "i": -3, "f": 0.1, "big": 1e300, "whole": 2.0, "b": False, "empty": [],
        "list": ["a", "b\"c"], "nums": [1, 2], "none": None,
        "weird key": 1,
        "table": {"x": 1, "inner": {"y": "z"}}, "other": {"k": True},
    }
    text = dump_toml(data)
    expected = {k: v for k, v in data.items() if v is not None}
    assert tomllib.loads(text) == expected


def test_configure_records_and_persists(ws):
    ws.configure(actor="human:ada", autonomy="auto", budgets={"seconds_per_turn": 30})
    assert ws.config.autonomy == "auto" and ws.config.budgets.seconds_per_turn == 30
    assert ws.config.budgets.seconds_per_session == 4 * 3600
    change = ws.journal.events(kind="note")[-1]
    assert change.actor == "human:ada" and change.payload["op"] == "configure"
    assert change.payload["changes"]["autonomy"] == {"from": "assist", "to": "auto"}
    with pytest.raises(ConfigError, match="autonomy"):
        ws.configure(actor="human:ada", autonomy="sometimes")
    assert ws.config.autonomy == "auto"
    ws.close()
    with Workspace.open(ws.path) as again:
        assert again.config.autonomy == "auto"


# ---------------------------------------------------------------------------
# Paths and artifacts


def test_paths_inside_are_accepted(ws):
    assert ws.resolve("results/figures/a.png") == ws.path / "results/figures/a.png"
    assert ws.resolve(ws.path / "pipelines" / "x.yml") == ws.path / "pipelines" / "x.yml"
    assert ws.path_for("figures", "psd.png") == ws.path / "results" / "figures" / "psd.png"
    assert ws.path_for("pipelines", "sub/csp.yml") == ws.path / "pipelines" / "sub" / "csp.yml"
    for kind in ("knowledge", "results", "tables", "exports"):
        assert ws.path_for(kind, "f").parent.is_dir()


@pytest.mark.parametrize("bad, fragment", [
    ("../outside.txt", "contains '..'"),
    ("results/../../x", "contains '..'"),
    ("a/..", "contains '..'"),
    ("..\\x", "contains '..'"),
    ("/etc/passwd", "'/etc/passwd' is absolute and outside the workspace folder"),
    ("", "empty or not a valid path"),
    ("a\x00b", "empty or not a valid path"),
])
def test_escaping_paths_are_refused(ws, bad, fragment):
    with pytest.raises(UnsafePathError, match=re.escape(fragment)):
        ws.resolve(bad)


def test_symlink_escapes_are_refused(ws, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    (ws.path / "results" / "link").symlink_to(outside)
    (ws.path / "exports" / "file-link").symlink_to(outside / "secret.txt")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        ws.resolve("results/link/secret.txt")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        ws.path_for("exports", "file-link")
    # A link that stays inside is fine.
    (ws.path / "results" / "inner").symlink_to(ws.path / "pipelines")
    assert ws.resolve("results/inner/x.yml") == ws.path / "pipelines" / "x.yml"


def test_path_for_checks_kind_and_name(ws):
    with pytest.raises(ValueError, match="unknown path kind 'models'.*figures"):
        ws.path_for("models", "x")
    with pytest.raises(UnsafePathError, match="must be relative"):
        ws.path_for("figures", "/tmp/x.png")
    with pytest.raises(UnsafePathError, match="'..'"):
        ws.path_for("figures", "../journal.sqlite")


def test_artifacts_are_stored_by_content_hash(ws, tmp_path):
    png = b"\x89PNG fake figure"
    rel = ws.artifacts.put_bytes(png, ".png")
    assert rel == f"results/figures/{hashlib.sha256(png).hexdigest()}.png"
    assert (ws.path / rel).read_bytes() == png
    assert ws.artifacts.put_bytes(png, ".png") == rel  # stored once
    assert len(list((ws.path / "results" / "figures").iterdir())) == 1
    src = tmp_path / "scores.csv"
    src.write_text("pipeline,score\nCSP+LDA,0.7\n")
    table = ws.artifacts.put_file(src)
    assert table == f"results/tables/{hashlib.sha256(src.read_bytes()).hexdigest()}.csv"
    assert ws.artifacts.check(rel) and ws.artifacts.check(table)
    (ws.path / rel).write_bytes(b"changed")
    assert not ws.artifacts.check(rel)
    assert not ws.artifacts.check("results/figures/" + "0" * 64 + ".png")
    with pytest.raises(UnsafePathError):
        ws.artifacts.check("../journal.sqlite")
    with pytest.raises(ValueError, match="not a file extension"):
        ws.artifacts.put_bytes(b"x", "/../../x")
    # The journal references artifacts by their relative path.
    call = ws.journal.append("tool_call", "ai:m", {"tool": "plot_psd"})
    result = ws.journal.append("tool_result", "system",
                               {"tool": "plot_psd", "summary": {"n": 1}, "artifacts": [table]},
                               parent_id=call.id)
    assert ws.artifacts.check(result.payload["artifacts"][0])


# ---------------------------------------------------------------------------
# Knowledge base


def test_knowledge_notes(ws):
    ai = ws.knowledge.add("Mu rhythm ERD", "Mu (8-12 Hz) power drops contralaterally.",
                          author="ai:gpt-4o-mini", sources=["doi:10.1016/S1388-2457(99)00141-8"])
    assert ai.id == "mu-rhythm-erd" and ai.path == "knowledge/mu-rhythm-erd.md"
    assert not ai.verified and ai.verified_by is None
    text = (ws.path / ai.path).read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert "\nverified: no\n" in text
    assert front["author"] == "ai:gpt-4o-mini" and front["verified"] is False
    assert front["sources"] == ["doi:10.1016/S1388-2457(99)00141-8"]
    assert ws.knowledge.get(ai.id) == ai

    human = ws.knowledge.add("Mu rhythm ERD", "Same title, second note.", author="human:ada")
    assert human.id == "mu-rhythm-erd-2" and human.verified
    assert human.verified_by == "human:ada"
    added = ws.journal.events(kind="note")[-2:]
    assert [(e.actor, e.payload["op"], e.payload["note_id"]) for e in added] == [
        ("ai:gpt-4o-mini", "add", ai.id), ("human:ada", "add", human.id)]

    assert [n.id for n in ws.knowledge.list()] == [ai.id, human.id]
    assert [n.id for n in ws.knowledge.list(verified=False)] == [ai.id]
    assert [n.id for n in ws.knowledge.list(author="human")] == [human.id]
    with pytest.raises(KnowledgeError, match="starts unverified"):
        ws.knowledge.add("t", "b", author="ai:m", verified=True)
    with pytest.raises(KnowledgeError, match="human:<name>"):
        ws.knowledge.add("t", "b", author="bob")


def test_knowledge_verification_is_a_journal_event(ws):
    note = ws.knowledge.add("Beta rebound", "Beta power rebounds after movement.",
                            author="ai:gpt-4o-mini")
    with pytest.raises(KnowledgeError, match="human:<name>"):
        ws.knowledge.verify(note.id, by="ai:gpt-4o-mini")
    assert not ws.knowledge.get(note.id).verified
    done = ws.knowledge.verify(note.id, by="human:ada")
    assert done.verified and done.verified_by == "human:ada"
    assert ws.knowledge.get(note.id) == done
    event = ws.journal.events(kind="note")[-1]
    assert event.actor == "human:ada" and event.payload["op"] == "verify"
    assert event.payload["note_id"] == note.id
    assert event.payload["content_sha256"] == note.content_hash == done.content_hash
    n = len(ws.journal)
    ws.knowledge.verify(note.id, by="human:bob")  # already verified: no new event
    assert len(ws.journal) == n
    assert ws.journal.verify().ok


def test_knowledge_search(ws):
    ws.knowledge.add("Mu rhythm", "ERD of the mu rhythm over C3/C4.", author="human:ada")
    ws.knowledge.add("Riemannian geometry", "Tangent space of covariance matrices; "
                     "works well for motor imagery.", author="ai:m", sources=["Barachant 2012"])
    ws.knowledge.add("CSP", "Common spatial patterns for motor imagery; "
                     "see also the mu rhythm.", author="ai:m")
    assert [n.title for n in ws.knowledge.search("MU")] == ["Mu rhythm", "CSP"]
    assert [n.title for n in ws.knowledge.search("barachant")] == ["Riemannian geometry"]
    assert [n.title for n in ws.knowledge.search("motor mu")][0] == "CSP"  # both words
    assert ws.knowledge.search("gamma") == []
    with pytest.raises(KnowledgeError, match="empty"):
        ws.knowledge.search("  ")


def test_knowledge_files_are_checked(ws):
    with pytest.raises(KnowledgeError, match="not a note id"):
        ws.knowledge.get("../journal")
    with pytest.raises(KnowledgeError, match="no note 'nope'"):
        ws.knowledge.get("nope")
    folder = ws.path / "knowledge"
    (folder / "by-hand.md").write_text("---\ntitle: By hand\nauthor: human:bob\nverified: yes\n"
                                       "created: 2025-01-31\n---\nWritten in an editor.\n")
    note = ws.knowledge.get("by-hand")
    # Typed "verified: yes" is a claim, not a verification: no journal event backs it.
    assert not note.verified and note.body == "Written in an editor.\n"
    assert ws.knowledge.verify("by-hand", by="human:bob").verified
    assert note.created.tzinfo is not None
    (folder / "quoted.md").write_text('---\ntitle: Q\nauthor: ai:m\nverified: "No"\n'
                                      "created: 2025-01-31T10:00:00Z\n---\n")
    assert ws.knowledge.get("quoted").verified is False
    (folder / "quoted.md").write_text("---\ntitle: Q\nauthor: ai:m\nverified: maybe\n"
                                      "created: 2025-01-31T10:00:00Z\n---\n")
    with pytest.raises(KnowledgeError, match="`verified` = 'maybe'; use yes or no"):
        ws.knowledge.get("quoted")
    (folder / "quoted.md").unlink()
    (folder / "broken.md").write_text("no front matter here\n")
    # Listing skips a broken note with a warning; asking for it raises.
    with pytest.warns(KnowledgeWarning, match="broken.md has no front matter"):
        assert "broken" not in [n.id for n in ws.knowledge.list()]
    with pytest.raises(KnowledgeError, match="broken.md has no front matter"):
        ws.knowledge.get("broken")
    (folder / "broken.md").write_text("---\ntitle: x\n---\nbody\n")
    with pytest.raises(KnowledgeError, match="lacks author, verified, created"):
        ws.knowledge.get("broken")


# ---------------------------------------------------------------------------
# Secrets


def test_api_key_appears_in_no_workspace_file(tmp_path, monkeypatch):
    key = "sk-test-" + hashlib.sha256(b"fake").hexdigest()[:40]
    azure = "azure-" + hashlib.sha256(b"azure").hexdigest()[:32]  # not sk-shaped
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", azure)
    ws = Workspace.create(tmp_path / "w", title="t", goal=f"goal mentioning {key}")
    j = ws.journal
    e = j.append("message", "human:ada", {"text": f"my key is {key}",
                                          "nested": [{key: azure}, ("x", f"Bearer {azure}")]})
    j.append("tool_call", "ai:m", {"tool": "t", "args": {"headers": {"auth": key},
                                                         "other": "sk-" + "A" * 30}})
    j.append("error", "system", {"message": f"401 for key {azure[:-1]}x... {key}"})
    ws.knowledge.add(f"About {key}", f"body {azure}", author="ai:m", sources=[key])
    ws.artifacts.put_bytes(b"figure bytes", ".png")
    # Read back: redacted, with the rest intact.
    assert e.payload == {"text": f"my key is {REDACTED}",
                         "nested": [{REDACTED: REDACTED}, ["x", f"Bearer {REDACTED}"]]}
    assert j.events(kind="tool_call")[0].payload["args"]["other"] == REDACTED
    assert j.verify().ok

    def scan(expect_wal):
        files = [p for p in (tmp_path / "w").rglob("*") if p.is_file()]
        assert any(p.name == "journal.sqlite-wal" for p in files) == expect_wal
        for path in files:
            data = path.read_bytes()
            assert key.encode() not in data, path
            assert azure.encode() not in data, path
        return files

    # Every file, while the journal is open (with its -wal file) and after.
    assert len(scan(expect_wal=True)) >= 5
    ws.close()
    scan(expect_wal=False)


def test_scrub_keeps_short_placeholders(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")  # a placeholder, not a key
    assert scrub({"text": "max xylophone"}) == {"text": "max xylophone"}
    assert scrub(["sk-short", "sk-" + "a" * 16]) == ["sk-short", REDACTED]


# ---------------------------------------------------------------------------
# Missing and corrupt files


def test_open_a_folder_that_is_not_a_workspace(tmp_path):
    with pytest.raises(WorkspaceNotFoundError, match="no such folder.*chatbci init"):
        Workspace.open(tmp_path / "nope")
    with pytest.raises(WorkspaceNotFoundError, match="no workspace.toml.*chatbci init"):
        Workspace.open(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_journal_is_an_error_not_a_new_workspace(ws):
    ws.close()
    (ws.path / "journal.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (ws.path / f"journal.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.raises(JournalMissingError, match="never recreated silently"):
        Workspace.open(ws.path)
    assert not (ws.path / "journal.sqlite").exists()


def test_corrupt_journal_is_an_error_and_left_alone(ws):
    ws.close()
    path = ws.path / "journal.sqlite"
    garbage = os.urandom(50_000)
    path.write_bytes(garbage)
    with pytest.raises(JournalCorruptError) as info:
        Workspace.open(ws.path)
    assert str(path) in str(info.value) and "backup" in str(info.value)
    assert path.read_bytes() == garbage


def test_missing_toml_with_a_journal_says_how_to_recover(ws):
    ws.close()
    (ws.path / "workspace.toml").unlink()
    with pytest.raises(WorkspaceNotFoundError, match="workspace.toml is missing.*backup"):
        Workspace.open(ws.path)
    with pytest.raises(WorkspaceExistsError, match="refusing to replace"):
        Workspace.create(ws.path, title="t", goal="g")


# ---------------------------------------------------------------------------
# CLI


def test_cli_workflow(tmp_path, capsys):
    path = str(tmp_path / "cli")
    assert main(["init", path, "--title", "CLI study", "--goal", "Try the CLI",
                 "--dataset", "BNCI2014_001", "--subjects", "1-2", "--autonomy", "suggest",
                 "--model", "gpt-4o-mini"]) == 0
    assert "created workspace 'CLI study'" in capsys.readouterr().out
    with Workspace.open(path) as ws:
        assert ws.config.autonomy == "suggest" and ws.config.datasets == ["BNCI2014_001"]
        s = ws.journal.append("suggestion", "ai:gpt-4o-mini",
                              {"action": {"tool": "run_benchmark", "args": {"subjects": [1]}},
                               "rationale": "baseline first"})
        ws.journal.append("decision", "human:ada", {"verdict": "accept"}, parent_id=s.id)

    assert main(["note", "add", path, "--title", "Mu ERD", "--body", "mu desync",
                 "--author", "ai:gpt-4o-mini", "--source", "doi:10/x"]) == 0
    assert "added note mu-erd (unverified)" in capsys.readouterr().out
    assert main(["note", "list", path, "--unverified"]) == 0
    assert "mu-erd" in capsys.readouterr().out
    assert main(["note", "verify", path, "mu-erd", "--by", "human:ada"]) == 0
    assert "verified by human:ada" in capsys.readouterr().out
    assert main(["note", "list", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["verified"] is True
    assert main(["note", "search", path, "desync"]) == 0
    assert "mu-erd" in capsys.readouterr().out

    assert main(["log", path]) == 0
    out = capsys.readouterr().out
    assert "run_benchmark(" in out and "accept #" in out and "verified knowledge note" in out
    assert main(["log", path, "--kind", "decision", "--json"]) == 0
    decisions = json.loads(capsys.readouterr().out)
    assert [d["payload"]["verdict"] for d in decisions] == ["accept"]
    assert main(["log", path, "--actor", "human", "--limit", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1

    n = len(Workspace.open(path).journal)
    assert main(["verify", path]) == 0
    assert f"journal OK: {n} events" in capsys.readouterr().out
    assert len(Workspace.open(path).journal) == n  # log and verify wrote nothing


def test_cli_verify_names_the_tampered_event(ws, capsys):
    for i in range(5):
        ws.journal.append("message", "human:ada", {"text": f"m{i}"})
    ws.close()
    with sqlite3.connect(ws.path / "journal.sqlite") as con:
        con.execute("""UPDATE events SET payload = '{"text":"rewritten"}' WHERE id = 6""")
    con.close()
    assert main(["verify", str(ws.path)]) == 1
    err = capsys.readouterr().err
    assert "BROKEN at event 6" in err and "edited" in err


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    assert main(["log", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chatbci log: error:") and "chatbci init" in err
    assert len(err.strip().splitlines()) == 1
    Workspace.create(tmp_path, title="t", goal="g").close()
    assert main(["init", str(tmp_path), "--title", "t", "--goal", "g"]) == 2
    assert "already a chatbci workspace" in capsys.readouterr().err
    assert main(["note", "verify", str(tmp_path), "nope", "--by", "human:ada"]) == 2
    assert "no note 'nope'" in capsys.readouterr().err
    assert main(["log", str(tmp_path), "--kind", "suggestions"]) == 2
    assert "unknown event kind" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "x"), "--title", "t", "--goal", "g",
                 "--subjects", "one"]) == 2
    assert "`subjects` = 'one'" in capsys.readouterr().err


def test_importing_chatbci_stays_light():
    code = ("import sys, chatbci; "
            "print(sorted(m for m in ('chatbci.workspace', 'pydantic', 'sqlite3', 'mne') "
            "if m in sys.modules)); print(chatbci.Workspace.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["[]", "Workspace"]


def test_durability_setting_reaches_the_journal(tmp_path):
    with Workspace.create(tmp_path, title="t", goal="g", durability="full") as ws:
        assert ws.journal.durability == "full"
    with Workspace.open(tmp_path) as ws:
        assert ws.journal.durability == "full"


def test_config_is_immutable(ws):
    with pytest.raises(ValidationError, match="frozen"):
        ws.config.autonomy = "auto"
    assert isinstance(ws.config, WorkspaceConfig) and ws.config.autonomy == "assist"
