"""Tests of the journal: events, validation, decisions, queries, hash chain,
migrations, and reliability with real concurrent and killed processes."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from chatbci.workspace import (KINDS, DecisionError, Event, EventValidationError, Journal,
                               JournalCorruptError, JournalMissingError, JournalVersionError)
from chatbci.workspace.journal import GENESIS_HASH, SCHEMA_VERSION
from chatbci.workspace.provenance import PROVENANCE_PACKAGES

REPO = Path(__file__).resolve().parents[1]

SUGGESTION = {"action": {"tool": "run_benchmark", "args": {"pipelines": ["CSP+LDA"]}},
              "rationale": "CSP+LDA is the usual baseline"}

#: One valid payload per kind that append() accepts.
VALID = {
    "message": {"text": "Which pipeline first?"},
    "suggestion": SUGGESTION,
    "tool_call": {"tool": "run_benchmark", "args": {"subjects": [1, 2]}},
    "run": {"config_hash": "ab12", "scores": {"CSP+LDA": 0.71}},
    "note": {"text": "baseline looks low"},
    "error": {"message": "subject 3 missing", "type": "DataNotAvailableError"},
}


def expected_hash(e: Event) -> str:
    """The documented hash, computed independently of chatbci's fast path."""
    record = {"id": e.id, "session_id": e.session_id,
              "ts": e.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "actor": e.actor,
              "kind": e.kind, "parent_id": e.parent_id, "payload": e.payload,
              "prev_hash": e.prev_hash}
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture
def journal(tmp_path):
    j = Journal.create(tmp_path / "journal.sqlite")
    yield j
    j.close()


def db(path):
    """A raw connection, as someone tampering with the file would use."""
    return sqlite3.connect(path, isolation_level=None)


# ---------------------------------------------------------------------------
# Events


def test_append_returns_chained_immutable_events(journal):
    before = datetime.now(timezone.utc)
    a = journal.append("message", "human:ada", {"text": "héllo ✓", "extra": [1, 2]})
    b = journal.append("message", "ai:gpt-4o-mini", {"text": "hi"})
    # An automatic session_start precedes the first event.
    assert [e.kind for e in journal.events()] == ["session_start", "message", "message"]
    assert (a.id, b.id) == (2, 3)
    assert a.session_id == b.session_id == journal.session_id
    assert a.ts.tzinfo is not None and a.ts.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= a.ts <= b.ts <= datetime.now(timezone.utc)
    assert journal.get(1).prev_hash == GENESIS_HASH
    assert a.prev_hash == journal.get(1).hash and b.prev_hash == a.hash
    for e in journal.events():
        assert e.hash == expected_hash(e)
    assert journal.get(2) == a
    assert a.payload == {"text": "héllo ✓", "extra": [1, 2]}

    with pytest.raises(dataclasses.FrozenInstanceError):
        a.kind = "note"
    copy = a.payload
    copy["text"] = "changed"
    copy["extra"].append(3)
    assert a.payload == {"text": "héllo ✓", "extra": [1, 2]}
    assert journal.get(a.id).payload == a.payload
    assert a.to_dict()["payload"] == a.payload and a.to_dict()["ts"].endswith("Z")


@pytest.mark.parametrize("kind", sorted(VALID))
def test_every_kind_accepts_its_payload(journal, kind):
    event = journal.append(kind, "ai:gpt-4o", VALID[kind])
    assert event.kind == kind
    assert VALID[kind].items() <= event.payload.items()


def test_defaults_are_filled_in_and_extras_kept(journal):
    e = journal.append("tool_call", "ai:m", {"tool": "list_datasets", "why": "look"})
    assert e.payload == {"tool": "list_datasets", "args": {}, "why": "look"}


@pytest.mark.parametrize("kind, payload, fragment", [
    ("message", {}, "`payload.text` is required"),
    ("message", {"text": "   "}, "payload.text"),
    ("message", {"text": 3}, "`payload.text` = 3"),
    ("suggestion", {"action": {"tool": "x"}}, "`payload.rationale` is required"),
    ("suggestion", {"action": {}, "rationale": "r"}, "payload.action"),
    ("tool_call", {"tool": "x", "args": [1]}, "`payload.args` = [1]"),
    ("tool_result", {"tool": "x"}, "`payload.summary` is required"),
    ("run", {"config_hash": "h", "scores": "0.7"}, "payload.scores"),
    ("error", {"type": "E"}, "`payload.message` is required"),
    ("note", {"text": "x", "op": 1}, "payload.op"),
])
def test_invalid_payloads_name_the_field(journal, kind, payload, fragment):
    with pytest.raises(EventValidationError, match="invalid " + kind) as info:
        journal.append(kind, "ai:m", payload)
    assert fragment in str(info.value)
    assert journal.events(kind=kind) == []


def test_payloads_are_strict_and_json_only(journal):
    # "3" is not silently turned into True/3 in a permanent record.
    call = journal.append("tool_call", "ai:m", {"tool": "t"})
    with pytest.raises(EventValidationError, match="payload.ok"):
        journal.append("tool_result", "ai:m", {"tool": "t", "summary": {}, "ok": "yes"},
                       parent_id=call.id)
    with pytest.raises(EventValidationError, match="NaN or infinity"):
        journal.append("run", "ai:m", {"config_hash": "h", "scores": {"a": float("nan")}})
    with pytest.raises(EventValidationError, match="not JSON serialisable"):
        journal.append("message", "ai:m", {"text": "x", "obj": object()})
    with pytest.raises(EventValidationError, match="must be a dict"):
        journal.append("message", "ai:m", ["text"])
    # NumPy values, tuples and paths are stored as plain JSON.
    e = journal.append("run", "ai:m", {"config_hash": "h", "scores": {
        "acc": np.float64(0.75), "folds": np.array([1, 2]), "pair": (1, 2),
        "file": Path("results") / "x.csv"}})
    assert e.payload["scores"] == {"acc": 0.75, "folds": [1, 2], "pair": [1, 2],
                                   "file": "results/x.csv"}


def test_unknown_kind_lists_the_valid_ones(journal):
    with pytest.raises(EventValidationError) as info:
        journal.append("thought", "ai:m", {"text": "x"})
    message = str(info.value)
    assert "'thought'" in message
    assert all(kind in message for kind in KINDS)


@pytest.mark.parametrize("actor", ["human:ada", "human:Ada Lovelace", "ai:gpt-4o-mini",
                                   "ai:offline-rules/v1", "system"])
def test_valid_actors(journal, actor):
    assert journal.append("message", actor, {"text": "x"}).actor == actor


@pytest.mark.parametrize("actor", ["ada", "human:", "human: ada", "ai:", "ai:gpt 4",
                                   "robot:x", "System", "", None, "human:a\nb"])
def test_invalid_actors_are_rejected(journal, actor):
    with pytest.raises(EventValidationError, match="human:<name>"):
        journal.append("message", actor, {"text": "x"})


def test_artifact_paths_must_be_relative(journal):
    call = journal.append("tool_call", "ai:m", {"tool": "plot"})
    for bad in ["/etc/passwd", "../outside.png", "results/../../x", "C:/x.png"]:
        with pytest.raises(EventValidationError, match="relative to the workspace"):
            journal.append("tool_result", "system",
                           {"tool": "plot", "summary": {}, "artifacts": [bad]}, call.id)
    ok = journal.append("tool_result", "system", {"tool": "plot", "summary": {},
                                                  "artifacts": ["results/figures/a.png"]},
                        call.id)
    assert ok.payload["artifacts"] == ["results/figures/a.png"]


# ---------------------------------------------------------------------------
# Sessions


def test_sessions_record_provenance_and_end(journal):
    start = journal.start_session(seeds={"random_state": 7}, interface="test")
    prov = start.payload["provenance"]
    assert start.actor == "system" and start.payload["interface"] == "test"
    assert set(PROVENANCE_PACKAGES) <= set(prov["packages"])
    assert prov["packages"]["numpy"] == np.__version__
    assert prov["python"] == ".".join(map(str, sys.version_info[:3]))
    assert prov["seeds"] == {"random_state": 7} and prov["platform"]
    first = journal.session_id
    journal.append("message", "human:ada", {"text": "x"})
    end = journal.end_session()
    assert end.kind == "session_end" and end.parent_id == start.id
    assert end.payload == {"reason": "closed", "n_events": 3}
    assert journal.end_session() is None  # nothing open any more
    later = journal.append("message", "human:ada", {"text": "y"})
    assert later.session_id != first
    assert [e.kind for e in journal.events(session=later.session_id)] == [
        "session_start", "message"]
    for kind in ("session_start", "session_end"):
        with pytest.raises(EventValidationError, match="start_session"):
            journal.append(kind, "system", {})


def test_durability_levels(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal.create(path, durability="full") as j:
        assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with Journal.open(path) as j:
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with pytest.raises(ValueError, match="durability='fast' is not valid; use 'normal'"):
        Journal.open(path, durability="fast")


def test_summaries_never_fail(journal):
    s = journal.append("suggestion", "ai:m", SUGGESTION)
    d = journal.append("decision", "human:ada", {"verdict": "reject", "rationale": "too slow"},
                       parent_id=s.id)
    assert s.summary() == ('run_benchmark("pipelines":["CSP+LDA"]) -- CSP+LDA is the usual '
                           'baseline')
    assert d.summary() == f"reject #{s.id}: too slow"
    assert len(journal.get(1).summary(width=40)) == 40
    odd = dataclasses.replace(d, payload_json='{"something":"else"}')
    assert odd.summary() == '{"something":"else"}'


def test_read_only_use_writes_nothing(tmp_path):
    Journal.create(tmp_path / "j.sqlite").close()
    with Journal.open(tmp_path / "j.sqlite") as j:
        j.events()
        j.verify()
        j.pending_suggestions()
        assert len(j) == 0


# ---------------------------------------------------------------------------
# Decisions


def test_decision_rules(journal):
    s = journal.append("suggestion", "ai:m", SUGGESTION)
    msg = journal.append("message", "ai:m", {"text": "x"})
    with pytest.raises(DecisionError, match="needs parent_id"):
        journal.append("decision", "human:ada", {"verdict": "accept"})
    with pytest.raises(DecisionError, match=f"event {msg.id} is a message"):
        journal.append("decision", "human:ada", {"verdict": "accept"}, parent_id=msg.id)
    with pytest.raises(EventValidationError, match="parent_id 999 is not an event"):
        journal.append("decision", "human:ada", {"verdict": "accept"}, parent_id=999)
    with pytest.raises(DecisionError, match="decisions are made by humans"):
        journal.append("decision", "ai:m", {"verdict": "accept"}, parent_id=s.id)
    with pytest.raises(EventValidationError, match="needs a non-empty rationale"):
        journal.append("decision", "human:ada", {"verdict": "reject"}, parent_id=s.id)
    with pytest.raises(EventValidationError, match="modified `action`"):
        journal.append("decision", "human:ada", {"verdict": "modify", "rationale": "r"},
                       parent_id=s.id)
    with pytest.raises(EventValidationError, match="payload.verdict"):
        journal.append("decision", "human:ada", {"verdict": "maybe"}, parent_id=s.id)

    d = journal.append("decision", "human:ada",
                       {"verdict": "modify", "rationale": "use 3 subjects",
                        "action": {"tool": "run_benchmark", "args": {"subjects": [1, 2, 3]}}},
                       parent_id=s.id)
    with pytest.raises(DecisionError, match=f"already decided \\(event {d.id}: modify"):
        journal.append("decision", "human:bob", {"verdict": "accept"}, parent_id=s.id)
    assert [e.id for e in journal.events(kind="decision")] == [d.id]


def test_tool_result_needs_its_tool_call(journal):
    msg = journal.append("message", "ai:m", {"text": "x"})
    with pytest.raises(EventValidationError, match="needs parent_id"):
        journal.append("tool_result", "system", {"tool": "t", "summary": 1})
    with pytest.raises(EventValidationError, match="must be a tool_call"):
        journal.append("tool_result", "system", {"tool": "t", "summary": 1}, parent_id=msg.id)


def test_the_database_itself_refuses_a_second_decision(journal):
    # Belt and braces: even bypassing Journal.append, SQLite's unique index holds.
    s = journal.append("suggestion", "ai:m", SUGGESTION)
    journal.append("decision", "human:ada", {"verdict": "accept"}, parent_id=s.id)
    with db(journal.path) as con, pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        con.execute("INSERT INTO events VALUES (99, 's', 't', 'human:x', 'decision', ?, "
                    "'{}', 'p', 'h99')", (s.id,))


def test_a_suggestion_is_decided_once_under_concurrency(tmp_path):
    """Two connections race to decide each suggestion; exactly one wins each time."""
    path = tmp_path / "j.sqlite"
    setup = Journal.create(path)
    ids = [setup.append("suggestion", "ai:m", SUGGESTION).id for _ in range(25)]
    setup.close()
    journals = [Journal.open(path), Journal.open(path)]  # separate SQLite connections
    barrier = threading.Barrier(2)
    outcomes = [[], []]

    def decide(k):
        for sid in ids:
            try:
                barrier.wait(timeout=30)  # a broken implementation fails, never hangs
                journals[k].append("decision", f"human:p{k}", {"verdict": "accept"}, sid)
                outcomes[k].append("won")
            except DecisionError:
                outcomes[k].append("lost")
            except Exception as err:  # reported by the assertion below
                outcomes[k].append(repr(err))
                barrier.abort()
                return

    threads = [threading.Thread(target=decide, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes[0]) == len(outcomes[1]) == len(ids), outcomes
    for pair in zip(*outcomes, strict=True):
        assert sorted(pair) == ["lost", "won"]
    decisions = journals[0].events(kind="decision")
    assert sorted(e.parent_id for e in decisions) == ids
    assert journals[0].pending_suggestions() == []
    assert journals[0].verify().ok
    for j in journals:
        j.close()


# ---------------------------------------------------------------------------
# Queries


@pytest.fixture
def study(journal):
    """Two suggestions (one decided and run, one pending) amid other events."""
    ev = {}
    ev["msg"] = journal.append("message", "human:ada", {"text": "compare pipelines"})
    ev["s1"] = journal.append("suggestion", "ai:gpt", SUGGESTION)
    ev["s2"] = journal.append("suggestion", "ai:gpt", {"action": "plot PSD",
                                                      "rationale": "check data"})
    ev["d1"] = journal.append("decision", "human:ada", {"verdict": "accept"}, ev["s1"].id)
    ev["noise"] = journal.append("message", "ai:gpt", {"text": "running"})
    ev["c1"] = journal.append("tool_call", "ai:gpt", SUGGESTION["action"], ev["d1"].id)
    ev["r1"] = journal.append("tool_result", "system",
                              {"tool": "run_benchmark", "summary": {"CSP+LDA": 0.7}},
                              ev["c1"].id)
    ev["run"] = journal.append("run", "system", {"config_hash": "c", "scores": {"a": 0.7}},
                               ev["r1"].id)
    ev["s3"] = journal.append("suggestion", "ai:gpt", {"action": "x", "rationale": "y"})
    ev["d3"] = journal.append("decision", "human:bob", {"verdict": "reject",
                                                        "rationale": "no"}, ev["s3"].id)
    return journal, ev


def ids(events):
    return [e.id for e in events]


def test_event_queries(study):
    journal, ev = study
    assert ids(journal.events(kind="suggestion")) == [ev["s1"].id, ev["s2"].id, ev["s3"].id]
    assert ids(journal.events(kind=["decision", "run"])) == [ev["d1"].id, ev["run"].id,
                                                            ev["d3"].id]
    assert ids(journal.events(actor="human:bob")) == [ev["d3"].id]
    assert ids(journal.events(actor="human")) == [ev["msg"].id, ev["d1"].id, ev["d3"].id]
    assert {e.actor for e in journal.events(actor="ai")} == {"ai:gpt"}
    assert ids(journal.events(kind="message", actor="ai")) == [ev["noise"].id]
    assert len(journal.events(session=journal.session_id)) == len(journal)
    assert journal.events(session="nope") == []
    assert ids(journal.events(since=ev["r1"].id)) == [ev["run"].id, ev["s3"].id, ev["d3"].id]
    assert ids(journal.events(since=ev["d1"].ts, kind="decision")) == [ev["d1"].id,
                                                                       ev["d3"].id]
    assert journal.events(since=datetime.now(timezone.utc) + timedelta(hours=1)) == []
    assert ids(journal.events(limit=2)) == [ev["s3"].id, ev["d3"].id]
    assert ids(journal.events(kind="suggestion", limit=1)) == [ev["s3"].id]
    with pytest.raises(ValueError, match="unknown event kind"):
        journal.events(kind="suggestions")
    with pytest.raises(ValueError, match="no timezone"):
        journal.events(since=datetime(2020, 1, 1))
    with pytest.raises(KeyError, match="no event 999"):
        journal.get(999)


def test_pending_suggestions(study):
    journal, ev = study
    assert ids(journal.pending_suggestions()) == [ev["s2"].id]
    journal.append("decision", "human:ada", {"verdict": "accept"}, ev["s2"].id)
    assert journal.pending_suggestions() == []


@pytest.mark.parametrize("member", ["s1", "d1", "c1", "r1", "run"])
def test_thread_from_any_member(study, member):
    journal, ev = study
    thread = journal.thread(ev[member].id)
    assert ids(thread) == [ev[k].id for k in ("s1", "d1", "c1", "r1", "run")]
    assert thread.suggestion == ev["s1"] and thread.decision == ev["d1"]
    assert thread.tool_calls == (ev["c1"],) and thread.tool_results == (ev["r1"],)


def test_thread_of_undecided_and_parentless_events(study):
    journal, ev = study
    pending = journal.thread(ev["s2"].id)
    assert ids(pending) == [ev["s2"].id] and pending.decision is None
    lone = journal.thread(ev["noise"].id)
    assert ids(lone) == [ev["noise"].id] and lone.suggestion is None


# ---------------------------------------------------------------------------
# Verification


@pytest.fixture
def chain(tmp_path):
    """A closed journal of 1 session_start + 8 messages, for tampering."""
    path = tmp_path / "journal.sqlite"
    with Journal.create(path) as j:
        for i in range(8):
            j.append("message", "human:ada", {"text": f"event {i}"})
    return path


def verify(path):
    with Journal.open(path) as j:
        return j.verify()


def test_intact_chain_verifies(chain):
    report = verify(chain)
    assert report.ok and bool(report) and report.first_bad_id is None
    assert report.n_events == 9
    with Journal.open(chain) as j:
        assert report.head_hash == j.get(9).hash == j.head()[1]
    assert "9 events" in str(report)


def test_verify_finds_an_edited_payload(chain):
    with db(chain) as con:
        con.execute("""UPDATE events SET payload = '{"text":"event 9"}' WHERE id = 5""")
    report = verify(chain)
    assert not report.ok and report.first_bad_id == 5 and "edited" in report.problem
    assert "event 5" in str(report)


def test_verify_finds_an_edit_with_a_recomputed_hash(chain):
    # A careful forger recomputes the row's hash; the next event's link breaks.
    with Journal.open(chain) as j:
        e = j.get(5)
    payload = '{"text":"forged"}'
    forged = hashlib.sha256(json.dumps(
        {"id": 5, "session_id": e.session_id, "ts": e.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
         "actor": e.actor, "kind": e.kind, "parent_id": None, "payload": {"text": "forged"},
         "prev_hash": e.prev_hash}, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    with db(chain) as con:
        con.execute("UPDATE events SET payload = ?, hash = ? WHERE id = 5", (payload, forged))
    report = verify(chain)
    assert report.first_bad_id == 6 and "event 5" in report.problem


def test_verify_finds_a_deleted_row(chain):
    with db(chain) as con:
        con.execute("DELETE FROM events WHERE id = 4")
    report = verify(chain)
    assert report.first_bad_id == 4 and "missing" in report.problem


def test_verify_finds_deleted_last_rows(chain):
    with db(chain) as con:
        con.execute("DELETE FROM events WHERE id >= 8")
    report = verify(chain)
    assert report.first_bad_id == 8 and "8 to 9 are missing" in report.problem


def test_verify_finds_swapped_rows(chain):
    with db(chain) as con:
        con.execute("UPDATE events SET id = -1 WHERE id = 3")
        con.execute("UPDATE events SET id = 3 WHERE id = 6")
        con.execute("UPDATE events SET id = 6 WHERE id = -1")
    report = verify(chain)
    assert not report.ok and report.first_bad_id == 3


def test_verify_finds_a_reordered_timestamp(chain):
    with db(chain) as con:
        con.execute("UPDATE events SET ts = '2001-01-01T00:00:00.000000Z' WHERE id = 7")
    assert verify(chain).first_bad_id == 7


def test_appending_after_tampering_does_not_hide_it(chain):
    with db(chain) as con:
        con.execute("DELETE FROM events WHERE id = 9")
    with Journal.open(chain) as j:
        j.append("message", "human:ada", {"text": "after"})
        assert j.verify().first_bad_id == 9


# ---------------------------------------------------------------------------
# Schema, migrations, bad files

V1_SCHEMA = """CREATE TABLE events (
    id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, ts TEXT NOT NULL,
    actor TEXT NOT NULL, kind TEXT NOT NULL, parent_id INTEGER REFERENCES events(id),
    payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"""


def test_a_version_1_journal_is_migrated(tmp_path):
    """A journal written by the first schema, made by hand, opens and keeps working."""
    path = tmp_path / "old.sqlite"
    con = db(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(V1_SCHEMA)
    prev = "0" * 64
    rows = [("message", None, {"text": "old"}), ("suggestion", None, SUGGESTION)]
    for i, (kind, parent, payload) in enumerate(rows, start=1):
        record = {"id": i, "session_id": "old", "ts": f"2024-01-0{i}T00:00:00.000000Z",
                  "actor": "ai:old", "kind": kind, "parent_id": parent, "payload": payload,
                  "prev_hash": prev}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        h = hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":"))
                           .encode()).hexdigest()
        con.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)",
                    (i, "old", record["ts"], "ai:old", kind, parent, text, prev, h))
        prev = h
    con.execute("PRAGMA user_version = 1")
    con.close()

    with Journal.open(path) as j:
        assert j.verify().ok and j.head() == (2, prev)
        assert ids(j.pending_suggestions()) == [2]
        d = j.append("decision", "human:ada", {"verdict": "accept"}, parent_id=2)
        assert j.get(d.id - 1).kind == "session_start" and j.get(3).prev_hash == prev
        with pytest.raises(DecisionError):
            j.append("decision", "human:ada", {"verdict": "accept"}, parent_id=2)
        assert j.verify().ok
    with db(path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    assert {"head", "events_one_decision", "events_parent", "events_runs",
            "events_decisions"} <= names


def test_a_newer_journal_is_refused(chain):
    with db(chain) as con:
        con.execute("PRAGMA user_version = 99")
    with pytest.raises(JournalVersionError, match="version 99.*Upgrade chatbci"):
        Journal.open(chain)


@pytest.mark.parametrize("content, fragment", [
    (os.urandom(8192), "not a readable chatbci journal"),
    (b"", "is an empty file"),
    (b"SQLite format 3\x00" + os.urandom(4000), "not a readable chatbci journal"),
])
def test_corrupt_journals_are_never_replaced(tmp_path, content, fragment):
    path = tmp_path / "journal.sqlite"
    path.write_bytes(content)
    with pytest.raises(JournalCorruptError, match=fragment) as info:
        Journal.open(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == content


def test_another_sqlite_database_is_not_taken_for_a_journal(tmp_path):
    path = tmp_path / "other.sqlite"
    with db(path) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(JournalCorruptError, match="not a chatbci journal"):
        Journal.open(path)


def test_a_missing_journal_is_not_created(tmp_path):
    with pytest.raises(JournalMissingError, match="never recreated silently"):
        Journal.open(tmp_path / "journal.sqlite")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# Reliability with real processes

WRITER = textwrap.dedent("""
    import sys
    from chatbci.workspace import Journal

    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    journal = Journal.open(path, busy_timeout=60)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    i = 0
    while count < 0 or i < count:
        event = journal.append("message", "ai:" + name, {"text": "x", "i": i})
        print(event.id, i, flush=True)  # after the commit: this event is durable
        i += 1
""")


def start_writer(path, name, count):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(count)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_two_processes_append_concurrently(tmp_path):
    path = tmp_path / "journal.sqlite"
    Journal.create(path).close()
    writers = [start_writer(path, name, 2000) for name in ("a", "b")]
    try:
        for w in writers:
            w.stdin.write("go\n")
            w.stdin.flush()
        outputs = [w.communicate(timeout=120)[0] for w in writers]
    finally:
        for w in writers:
            w.kill()
    assert [w.returncode for w in writers] == [0, 0]

    with Journal.open(path) as j:
        report = j.verify()
        assert report.ok, str(report)
        messages = j.events(kind="message")
        assert len(messages) == 4000 and len(j) == 4002  # + one session_start each
        for name, out in zip("ab", outputs, strict=True):
            mine = [e for e in messages if e.actor == "ai:" + name]
            assert [e.payload["i"] for e in mine] == list(range(2000))
            assert [e.id for e in mine] == [int(line.split()[0]) for line in out.splitlines()]
        # The writers really interleaved (they ran at the same time).
        actors = [e.actor for e in messages]
        switches = sum(a != b for a, b in itertools.pairwise(actors))
        assert switches > 10


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_writer_loses_no_committed_event(tmp_path):
    path = tmp_path / "journal.sqlite"
    Journal.create(path).close()
    writer = start_writer(path, "k", -1)  # appends until killed
    try:
        writer.stdin.write("go\n")
        writer.stdin.flush()
        committed = []
        while len(committed) < 500:
            line = writer.stdout.readline()
            assert line, "writer died early"
            committed.append(tuple(map(int, line.split())))
    finally:
        os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    # Lines written before the kill but not yet read are committed too.
    committed += [tuple(map(int, line.split())) for line in writer.stdout.read().splitlines()
                  if len(line.split()) == 2]
    writer.stdout.close()
    writer.stdin.close()

    with Journal.open(path) as j:
        report = j.verify()
        assert report.ok, str(report)
        for event_id, i in committed:
            assert j.get(event_id).payload["i"] == i
        # At most the one append in flight at the kill may be there unreported.
        assert len(committed) <= len(j) - 1 <= len(committed) + 1
        j.append("message", "human:ada", {"text": "still writable"})
        assert j.verify().ok


def test_threads_share_a_journal(journal):
    def work(k):
        for i in range(100):
            journal.append("message", f"ai:t{k}", {"text": "x", "i": i})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(journal.events(kind="message")) == 400
    assert len(journal.events(kind="session_start")) == 1
    assert journal.verify().ok


def test_forked_child_uses_its_own_connection(journal):
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    journal.append("message", "human:ada", {"text": "parent"})
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            journal.append("message", "human:ada", {"text": "child"})
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    journal.append("message", "human:ada", {"text": "parent again"})
    assert [e.payload["text"] for e in journal.events(kind="message")] == [
        "parent", "child", "parent again"]
    assert journal.verify().ok


def test_journal_benchmark_runs(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_journal.py"),
                          "--appends", "300", "--events", "2000", "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode in (0, 1), out.stderr
    assert "appends/s" in out.stdout and "verify()" in out.stdout
