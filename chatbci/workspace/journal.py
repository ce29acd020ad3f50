"""The journal: an append-only, hash-chained event log in SQLite.

Everything that happens in a workspace -- messages, AI suggestions, human
decisions, tool calls and results, benchmark runs -- is appended here, and
exports and reproductions are built from it alone. Hence three guarantees:

**Nothing is lost.** The database runs in WAL mode with
``synchronous=NORMAL`` (default): a commit is written to the write-ahead log
before :meth:`Journal.append` returns, so it survives the process being
killed at any moment; SQLite guarantees the file is never left half-written.
What NORMAL gives up, compared with FULL, is the fsync at each commit: after
an *operating-system* crash or power loss the last few commits may be rolled
back (the file is never corrupted). FULL costs one fsync per event (measured
~2,800 appends/s against ~6,500 with NORMAL on the development machine, and
far fewer on network disks); set ``durability = "full"`` in
``workspace.toml`` when power-loss durability matters more than speed.

**Writers never race.** Each append runs in one ``BEGIN IMMEDIATE``
transaction (read the head, check the parent, insert, move the head), so
concurrent processes and threads serialise; a waiting writer retries for
``busy_timeout`` seconds.

**Tampering is detected.** Events are numbered 1, 2, 3... and each stores
``hash = sha256(canonical JSON of {id, session_id, ts, actor, kind,
parent_id, payload, prev_hash})`` with ``prev_hash`` the previous event's
hash (64 zeros for event 1). Binding the id makes reordering detectable, and
a ``head`` row (last id and hash, updated in the same transaction) makes
deleting the *last* events detectable too. :meth:`Journal.verify` walks the
chain and reports the first bad event. This protects against accidental and
naive edits; someone able to rewrite the whole file can rebuild the chain,
so publish :meth:`Journal.head` (e.g. in a paper) to anchor it.

The schema is versioned with ``PRAGMA user_version`` and upgraded in place by
the table of :data:`MIGRATIONS` when an older workspace is opened.
"""

from __future__ import annotations

import hashlib
import json
from json.encoder import encode_basestring
import os
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ._validation import short_repr
from .errors import (DecisionError, EventValidationError, JournalCorruptError, JournalError,
                     JournalMissingError, JournalVersionError)
from .events import KINDS, Event, check_actor, format_ts, validate_payload
from .provenance import collect_provenance
from .secrets import configured_secrets, scrub_text, with_json_forms

__all__ = ["GENESIS_HASH", "MIGRATIONS", "SCHEMA_VERSION", "Journal", "Thread",
           "VerifyReport", "chain_hash"]

#: ``prev_hash`` of the first event.
GENESIS_HASH = "0" * 64

#: ``MIGRATIONS[v]`` upgrades a journal from schema version ``v`` to ``v + 1``.
#: Append new steps; never edit a released one.
MIGRATIONS: list[tuple[str, ...]] = [
    # v0 -> v1: the event log.
    (
        """CREATE TABLE events (
            id         INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL,
            ts         TEXT NOT NULL,
            actor      TEXT NOT NULL,
            kind       TEXT NOT NULL,
            parent_id  INTEGER REFERENCES events(id),
            payload    TEXT NOT NULL,
            prev_hash  TEXT NOT NULL,
            hash       TEXT NOT NULL
        )""",
    ),
    # v1 -> v2: the parent index behind thread(); "a suggestion is decided at
    # most once" enforced by SQLite itself; suggestions indexed for
    # pending_suggestions() (asked every turn); the head row, so that verify()
    # detects deleted last events. Deliberately no index on kind/actor/session:
    # each index costs a page write per append, and filtered scans of 100,000
    # events take milliseconds.
    (
        "CREATE INDEX events_parent ON events(parent_id) WHERE parent_id IS NOT NULL",
        "CREATE UNIQUE INDEX events_one_decision ON events(parent_id) WHERE kind = 'decision'",
        "CREATE INDEX events_suggestions ON events(id) WHERE kind = 'suggestion'",
        """CREATE TABLE head (
            one       INTEGER PRIMARY KEY CHECK (one = 1),
            last_id   INTEGER NOT NULL,
            last_hash TEXT NOT NULL
        )""",
        f"""INSERT INTO head (one, last_id, last_hash) VALUES (1,
            COALESCE((SELECT MAX(id) FROM events), 0),
            COALESCE((SELECT hash FROM events ORDER BY id DESC LIMIT 1), '{GENESIS_HASH}'))""",
    ),
    # v2 -> v3: the assistant reads the latest runs and decisions every turn;
    # partial indexes keep those reads flat as the journal grows, at no cost to
    # appends of other kinds (messages, tool calls), which are most events.
    (
        "CREATE INDEX events_runs ON events(id) WHERE kind = 'run'",
        "CREATE INDEX events_decisions ON events(id) WHERE kind = 'decision'",
    ),
]

#: The schema version this chatbci writes.
SCHEMA_VERSION = len(MIGRATIONS)

# Connections inherited through fork(), kept open (never used) on purpose.
_FORK_ORPHANS: list = []

_COLUMNS = "id, session_id, ts, actor, kind, parent_id, payload, prev_hash, hash"
_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}
_PAGE_SIZE = 1024
# One schema version per release at most: a larger number is a damaged header.
_MAX_PLAUSIBLE_VERSION = 1000

# What SQLite says when the file itself is damaged (as opposed to a full disk,
# a read-only folder or a lock held by another writer).
_DAMAGE = ("malformed", "not a database", "no such table", "no such column", "corrupt",
           "could not decode", "unsupported file format", "disk image", "no such index",
           "unrecognized token", "syntax error")
_RECOVER = ("It was left untouched. Restore journal.sqlite from a backup or from version "
            "control; `chatbci verify WORKSPACE` then checks the copy and names the first "
            "event where the hash chain breaks.")


def _one_line(text, limit=200):
    """SQLite's text on one printable line: damaged bytes must not reach a terminal raw."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in str(text)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tolerant_text(data: bytes) -> str:
    # Invalid UTF-8 kept as surrogates, so a damaged row can still be read.
    return data.decode("utf-8", "surrogateescape")


def _undecodable(row) -> bool:
    for value in row:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


# The C string encoder json.dumps(..., ensure_ascii=False) uses, minus the
# per-call encoder set-up: chain_hash runs once per event in verify().
_dumps = encode_basestring


def chain_hash(id, session_id, ts, actor, kind, parent_id, payload_json, prev_hash):
    """The hash of an event: sha256 of the canonical JSON of its fields.

    The text hashed is ``{"actor":...,"id":...,"kind":...,"parent_id":...,
    "payload":...,"prev_hash":...,"session_id":...,"ts":...}`` -- sorted keys,
    no spaces, UTF-8 -- i.e. :func:`~chatbci.workspace.events.canonical_json`
    of those fields. It is assembled from the stored (already canonical)
    payload text rather than re-encoded, which keeps :meth:`Journal.verify`
    fast and makes any byte change in a stored payload count as an edit.
    """
    text = (
        '{"actor":' + _dumps(actor)
        + ',"id":' + str(int(id))
        + ',"kind":' + _dumps(kind)
        + ',"parent_id":' + ("null" if parent_id is None else str(int(parent_id)))
        + ',"payload":' + payload_json
        + ',"prev_hash":' + _dumps(prev_hash)
        + ',"session_id":' + _dumps(session_id)
        + ',"ts":' + _dumps(ts)
        + "}"
    )
    # surrogateescape: verify() reads damaged rows with their invalid bytes
    # kept as surrogates; encoding them back gives the stored bytes, whose hash
    # then fails to match. Valid text encodes exactly as plain UTF-8.
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _event(row) -> Event:
    id_, session_id, ts, actor, kind, parent_id, payload, prev_hash, hash_ = row
    return Event(id_, session_id, datetime.fromisoformat(ts), actor, kind, parent_id,
                 payload, prev_hash, hash_)


@dataclass(frozen=True)
class VerifyReport:
    """Result of :meth:`Journal.verify`. True in a boolean context when ``ok``.

    Attributes
    ----------
    ok : bool
        The chain is complete and every event matches its hash.
    n_events : int
        Events checked.
    first_bad_id : int | None
        The first event that is edited, missing or out of place.
    problem : str | None
        What is wrong with it.
    head_hash : str | None
        Hash of the last event (the value to publish to anchor the journal).
    seconds : float
        Time taken.
    """

    ok: bool
    n_events: int
    first_bad_id: int | None = None
    problem: str | None = None
    head_hash: str | None = None
    seconds: float = 0.0

    def __bool__(self):
        return self.ok

    def __str__(self):
        if self.ok:
            head = f", head {self.head_hash}" if self.head_hash else ""
            return f"journal OK: {self.n_events} events, hash chain intact{head}"
        return f"journal BROKEN at event {self.first_bad_id}: {self.problem}"


@dataclass(frozen=True)
class Thread:
    """A suggestion with what followed it: decision, tool calls and results.

    ``events`` starts with the root (the suggestion, or the top-most
    ancestor when there is none) and holds all its descendants, in journal
    order.
    """

    events: tuple[Event, ...]

    @property
    def root(self) -> Event:
        return self.events[0]

    @property
    def suggestion(self) -> Event | None:
        return self.root if self.root.kind == "suggestion" else None

    @property
    def decision(self) -> Event | None:
        return next((e for e in self.events
                     if e.kind == "decision" and e.parent_id == self.root.id), None)

    @property
    def tool_calls(self) -> tuple[Event, ...]:
        return tuple(e for e in self.events if e.kind == "tool_call")

    @property
    def tool_results(self) -> tuple[Event, ...]:
        return tuple(e for e in self.events if e.kind == "tool_result")

    def __iter__(self):
        return iter(self.events)

    def __len__(self):
        return len(self.events)


class Journal:
    """The hash-chained event log of a workspace (``journal.sqlite``).

    Usually reached as ``ws.journal``. Safe to use from several threads and
    processes at once. Each ``Journal`` has its own ``session_id``; the
    ``session_start`` event (with provenance) is written by
    :meth:`start_session`, or automatically before the first append, so
    read-only use (``chatbci log``, ``verify``) writes nothing.

    Parameters
    ----------
    path : str | os.PathLike
        The SQLite file.
    create : bool
        Create and initialise the file if it does not exist. Without it a
        missing file raises :class:`JournalMissingError` -- a journal is
        never silently recreated.
    durability : {"normal", "full"}
        SQLite ``synchronous`` level in WAL mode; see the module docstring.
    busy_timeout : float
        Seconds a writer waits for another one before giving up.
    default_seeds : dict | None
        Seeds recorded in an automatically started session.

    Raises
    ------
    JournalMissingError, JournalCorruptError, JournalVersionError
    """

    def __init__(self, path, *, create=False, durability="normal", busy_timeout=30.0,
                 default_seeds=None):
        if durability not in _SYNCHRONOUS:
            raise ValueError(f"durability={durability!r} is not valid; use 'normal' or 'full'.")
        self.path = Path(path)
        self.durability = durability
        self.busy_timeout = float(busy_timeout)
        self.default_seeds = dict(default_seeds or {})
        self.session_id = uuid.uuid4().hex
        self._session_start_id = None
        self._lock = threading.RLock()
        self._con = None
        self._pid = None
        if not create and not self.path.is_file():
            raise JournalMissingError(
                f"{self.path} does not exist. The journal is the record of the study and is "
                "never recreated silently: restore it from a backup (or from version "
                "control). To start over deliberately, create a new workspace with "
                "`chatbci init`."
            )
        self._connect(create)

    @classmethod
    def create(cls, path, **kwargs):
        """Create a new journal at ``path`` (which must not exist yet)."""
        path = Path(path)
        if path.exists():
            raise JournalError(f"{path} already exists; open it with Journal.open().")
        return cls(path, create=True, **kwargs)

    @classmethod
    def open(cls, path, **kwargs):
        """Open an existing journal (upgrading an older schema in place)."""
        return cls(path, create=False, **kwargs)

    # -- connection ---------------------------------------------------------

    def _connect(self, create):
        uri = self.path.absolute().as_uri() + ("?mode=rwc" if create else "?mode=rw")
        try:
            con = sqlite3.connect(uri, uri=True, isolation_level=None,
                                  timeout=self.busy_timeout, check_same_thread=False)
        except sqlite3.Error as err:
            raise JournalError(f"cannot open {self.path}: {err}") from None
        self._con, self._pid = con, os.getpid()
        try:
            self._initialise(create)
        except BaseException:
            con.close()
            self._con = None
            raise

    def _initialise(self, create):
        con = self._con
        with self._guard():
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and not create:
                tables = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                what = ("is an empty file" if tables == 0 and self.path.stat().st_size == 0
                        else "is an SQLite file but not a chatbci journal")
                raise JournalCorruptError(
                    f"{self.path} {what}; it was left untouched. Restore journal.sqlite from "
                    "a backup; to start over deliberately, create a new workspace with "
                    "`chatbci init`."
                )
            if version < 0 or version > _MAX_PLAUSIBLE_VERSION:
                # No chatbci writes such a number: the file's header is damaged
                # (and migrating from it would write into a damaged file).
                raise JournalCorruptError(
                    f"{self.path} is damaged: its header holds schema version {version}, "
                    f"which no chatbci writes. {_RECOVER}"
                )
            if version > SCHEMA_VERSION:
                raise JournalVersionError(
                    f"{self.path} has journal schema version {version}, but this chatbci "
                    f"only knows versions up to {SCHEMA_VERSION}. Upgrade chatbci "
                    "(pip install -U chatbci) to open it."
                )
            if version == 0:
                # Small pages: an event is a few hundred bytes, and every append
                # writes its table, index and head pages to the WAL, so 1 KiB
                # pages write a quarter of the bytes of 4 KiB ones (raw inserts
                # ran ~1.4x faster). Only possible before the first table exists.
                con.execute(f"PRAGMA page_size={_PAGE_SIZE}")
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA synchronous={_SYNCHRONOUS[self.durability]}")
            con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            if version < SCHEMA_VERSION:
                self._migrate()
            self._check_schema()

    def _check_schema(self):
        """Refuse, at open, a journal whose tables lost a column or the head row.

        Checked once here rather than met as ``no such column`` in the middle
        of a command, so every command says the same clear thing.
        """
        con = self._con
        columns = {row[1] for row in con.execute("PRAGMA table_info(events)")}
        missing = [c for c in _COLUMNS.split(", ") if c not in columns]
        problem = None
        if not columns:
            problem = "it has no events table"
        elif missing:
            problem = f"its events table has no column {', '.join(missing)}"
        elif not {"last_id", "last_hash"} <= {r[1] for r in
                                               con.execute("PRAGMA table_info(head)")}:
            problem = ("its head table (the record of the last event, which lets `chatbci "
                       "verify` detect deleted events) is missing or lacks a column")
        else:
            rows = con.execute("SELECT count(*) FROM head").fetchone()[0]
            if rows != 1:
                problem = f"its head table holds {rows} rows instead of 1"
        if problem:
            raise JournalCorruptError(f"{self.path} is damaged: {problem}. {_RECOVER}")

    def _migrate(self):
        con = self._con
        with self._write():
            # Re-read inside the lock: another process may have migrated already.
            version = con.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    con.execute(statement)
                con.execute(f"PRAGMA user_version={step + 1}")
        tables = con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'events'")
        if tables.fetchone()[0] != 1:
            raise JournalCorruptError(f"{self.path} has no events table; it is not a chatbci "
                                      "journal. Restore it from a backup.")

    @property
    def _db(self):
        if self._con is None:
            raise JournalError(f"the journal {self.path} is closed.")
        if self._pid != os.getpid():
            # A forked child must not use its parent's SQLite connection
            # (SQLite forbids it); open its own, and keep the inherited one
            # referenced so that it is not closed from the child either.
            _FORK_ORPHANS.append(self._con)
            self._connect(create=False)
        return self._con

    @contextmanager
    def _guard(self):
        """Translate SQLite's errors into journal errors naming the file and the fix.

        Every read and write of the database runs inside this guard, so a
        damaged file surfaces as one :class:`JournalCorruptError` (the CLI
        prints it as one line), never as a raw ``sqlite3`` error.
        """
        try:
            yield
        except UnicodeDecodeError as err:
            # sqlite3 could not even decode SQLite's message: it quotes text
            # from a damaged schema.
            raise self._corrupt(f"unreadable bytes in the schema ({err.reason})") from None
        except sqlite3.DatabaseError as err:
            msg = str(err)
            low = msg.lower()
            if isinstance(err, (sqlite3.ProgrammingError, sqlite3.InterfaceError)):
                raise  # misuse of the connection: a bug, not the file
            if isinstance(err, sqlite3.OperationalError) and ("locked" in low or "busy" in low):
                raise JournalError(
                    f"{self.path} stayed locked by another writer for more than "
                    f"{self.busy_timeout:g} s; retry, or find the process holding it."
                ) from None
            if isinstance(err, sqlite3.OperationalError) and not any(d in low for d in _DAMAGE):
                # A full disk, a read-only folder, an I/O error: the file is fine.
                raise JournalError(
                    f"{self.path} could not be read or written (SQLite: {_one_line(msg)}); "
                    "check that the disk is not full and that you may write to the "
                    "workspace folder, then retry."
                ) from None
            # SQLITE_NOTADB and SQLITE_CORRUPT arrive as the base DatabaseError;
            # a lost table or column, or undecodable text, is damage too.
            raise self._corrupt(msg) from None

    def _corrupt(self, err):
        return JournalCorruptError(
            f"{self.path} is damaged: it is not a readable chatbci journal (SQLite: "
            f"{_one_line(err)}). {_RECOVER}"
        )

    def _damaged_event(self, event_id, what):
        return JournalCorruptError(
            f"{self.path} is damaged: event {event_id} {what}. It was left untouched. Run "
            "`chatbci verify WORKSPACE` to see where the hash chain breaks, and restore "
            "journal.sqlite from a backup or from version control."
        )

    def _head(self, con):
        row = con.execute("SELECT last_id, last_hash FROM head").fetchone()
        if row is None:
            raise JournalCorruptError(f"{self.path} is damaged: its head row is missing. "
                                      f"{_RECOVER}")
        return row

    @contextmanager
    def _write(self):
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, rolled back on error."""
        con = self._db
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            # Also after a failed COMMIT (disk full...), so that the connection
            # is not left inside a transaction.
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._con is None

    def close(self):
        """Close the connection (further use raises :class:`JournalError`)."""
        with self._lock:
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            self._con = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Journal({str(self.path)!r}, session_id={self.session_id!r})"

    # -- writing ------------------------------------------------------------

    def append(self, kind, actor, payload, parent_id=None) -> Event:
        """Validate, scrub and append one event; return it.

        Parameters
        ----------
        kind : str
            One of :data:`~chatbci.workspace.events.KINDS` (``session_start``
            and ``session_end`` are written by :meth:`start_session` and
            :meth:`end_session`).
        actor : str
            ``human:<name>``, ``ai:<model>`` or ``system``. Decisions must come
            from a human.
        payload : dict
            Validated for ``kind``; API keys are redacted before writing.
        parent_id : int | None
            The event this one answers. A ``decision`` needs its (undecided)
            ``suggestion``, a ``tool_result`` its ``tool_call``.

        Returns
        -------
        event : Event

        Raises
        ------
        EventValidationError, DecisionError
            Nothing is written.
        """
        if kind in ("session_start", "session_end"):
            raise EventValidationError(
                f"{kind} events are written by journal.start_session() / end_session(), "
                "not append()."
            )
        with self._lock:
            if self._session_start_id is None:
                self.start_session()
            return self._append(kind, actor, payload, parent_id)

    def start_session(self, seeds=None, **info) -> Event:
        """Start a new session: new ``session_id`` and a ``session_start`` event.

        Parameters
        ----------
        seeds : dict of str to int | None
            Random seeds of the session (default: the journal's
            ``default_seeds``, e.g. the workspace's ``random_state``).
        **info
            Extra JSON fields for the payload (e.g. ``interface="jupyter"``).

        Returns
        -------
        event : Event
            The ``session_start`` event. A session still open in this journal
            is ended first.
        """
        with self._lock:
            if self._session_start_id is not None:
                self.end_session(reason="new session started")
            self.session_id = uuid.uuid4().hex
            seeds = self.default_seeds if seeds is None else seeds
            payload = {**info, "provenance": collect_provenance(seeds)}
            event = self._append("session_start", "system", payload, None)
            self._session_start_id = event.id
            return event

    def end_session(self, reason="closed") -> Event | None:
        """Write ``session_end`` for the current session, if one was started.

        The next append starts a new session. Returns the event, or None when
        no session was open.
        """
        with self._lock:
            if self._session_start_id is None:
                return None
            with self._guard():
                n = self._db.execute("SELECT count(*) FROM events WHERE session_id = ?",
                                     (self.session_id,)).fetchone()[0]
            event = self._append("session_end", "system",
                                 {"reason": reason, "n_events": n + 1},
                                 self._session_start_id)
            self._session_start_id = None
            return event

    def _append(self, kind, actor, payload, parent_id):
        secrets = configured_secrets()
        actor = check_actor(scrub_text(actor, secrets) if isinstance(actor, str) else actor)
        # Scrub the JSON text: a secret with characters JSON escapes appears
        # escaped there, so look for that form too.
        in_json = with_json_forms(secrets)
        payload_json = validate_payload(kind, payload,
                                        redact=lambda text: scrub_text(text, in_json))
        if parent_id is not None and (isinstance(parent_id, bool)
                                      or not isinstance(parent_id, int)):
            raise EventValidationError(f"parent_id must be an event id (int) or None, "
                                       f"not {short_repr(parent_id)}.")
        if kind == "decision":
            if parent_id is None:
                raise DecisionError("a decision needs parent_id = the id of the suggestion "
                                    "it decides.")
            if not actor.startswith("human:"):
                raise DecisionError(f"decisions are made by humans: actor {actor!r} must be "
                                    "'human:<name>'. An AI proposes with a suggestion.")
        if kind == "tool_result" and parent_id is None:
            raise EventValidationError("a tool_result needs parent_id = the id of its "
                                       "tool_call.")
        with self._lock, self._guard():
            try:
                with self._write() as con:
                    last_id, last_hash = self._head(con)
                    if parent_id is not None:
                        self._check_parent(con, kind, parent_id, last_id)
                    # Time is taken inside the lock, so ts follows id order.
                    now = datetime.now(timezone.utc)
                    ts = now.isoformat(timespec="microseconds")[:-6] + "Z"  # = format_ts(now)
                    new_id = last_id + 1
                    hash_ = chain_hash(new_id, self.session_id, ts, actor, kind, parent_id,
                                       payload_json, last_hash)
                    con.execute(_INSERT,
                                (new_id, self.session_id, ts, actor, kind, parent_id,
                                 payload_json, last_hash, hash_))
                    con.execute("UPDATE head SET last_id = ?, last_hash = ?", (new_id, hash_))
            except sqlite3.IntegrityError as err:
                if "events_one_decision" in str(err) or "parent_id" in str(err):
                    raise DecisionError(f"suggestion {parent_id} has already been decided; "
                                        "a suggestion is decided at most once.") from None
                raise
        return Event(new_id, self.session_id, now, actor, kind, parent_id, payload_json,
                     last_hash, hash_)

    def _check_parent(self, con, kind, parent_id, last_id):
        row = con.execute("SELECT kind FROM events WHERE id = ?", (parent_id,)).fetchone()
        if row is None and 1 <= parent_id <= last_id:
            # The head counts it, the table has lost it: damage, not a bad id.
            raise self._damaged_event(parent_id, f"is missing, though the journal's head "
                                                 f"records {last_id} events")
        if row is None:
            raise EventValidationError(
                f"parent_id {parent_id} is not an event of this journal (ids run from 1 "
                f"to {last_id})."
            )
        parent_kind = row[0]
        if kind == "decision":
            if parent_kind != "suggestion":
                raise DecisionError(
                    f"a decision's parent must be a suggestion, but event {parent_id} is a "
                    f"{parent_kind}. Pass the id of the suggestion being decided."
                )
            done = con.execute(
                "SELECT id, actor, payload FROM events WHERE kind = 'decision' AND parent_id = ?",
                (parent_id,)).fetchone()
            if done is not None:
                verdict = json.loads(done[2]).get("verdict")
                raise DecisionError(
                    f"suggestion {parent_id} was already decided (event {done[0]}: {verdict} "
                    f"by {done[1]}); a suggestion is decided at most once. To change course, "
                    "record a new suggestion."
                )
        if kind == "tool_result" and parent_kind != "tool_call":
            raise EventValidationError(
                f"a tool_result's parent must be a tool_call, but event {parent_id} is a "
                f"{parent_kind}."
            )

    # -- reading ------------------------------------------------------------

    def _query(self, sql, params=()):
        with self._lock, self._guard():
            try:
                rows = self._db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as err:
                if "could not decode" not in str(err).lower():
                    raise
                raise self._undecodable_event(sql, params) from None
        events = []
        for row in rows:
            try:
                events.append(_event(row))
            except (TypeError, ValueError):  # a timestamp or id that is no longer one
                raise self._damaged_event(row[0], "holds fields that cannot be read "
                                                  "(its timestamp or ids are garbled)") from None
        return events

    def _undecodable_event(self, sql, params):
        """The error naming the first event of a query whose text is not UTF-8."""
        con = self._db
        con.text_factory = _tolerant_text
        try:
            bad = next((row[0] for row in con.execute(sql, params) if _undecodable(row)), "?")
        finally:
            con.text_factory = str
        return self._damaged_event(bad, "holds text that is not valid UTF-8, so it cannot "
                                        "be read")

    def get(self, event_id) -> Event:
        """The event with id ``event_id`` (``KeyError`` if there is none)."""
        found = self._query(f"SELECT {_COLUMNS} FROM events WHERE id = ?", (int(event_id),))
        if not found:
            raise KeyError(f"no event {event_id} in {self.path} (it has {len(self)} events)")
        return found[0]

    def __len__(self):
        with self._lock, self._guard():
            return self._db.execute("SELECT count(*) FROM events").fetchone()[0]

    def head(self) -> tuple[int, str]:
        """``(last_id, last_hash)``: the journal's length and the hash anchoring it."""
        with self._lock, self._guard():
            return tuple(self._head(self._db))

    def events(self, kind=None, actor=None, session=None, since=None, *, limit=None):
        """Events matching all the given filters, in journal order.

        Parameters
        ----------
        kind : str | iterable of str | None
            One kind or several.
        actor : str | None
            An exact actor (``"human:ada"``) or a type: ``"human"``, ``"ai"``,
            ``"system"``.
        session : str | None
            A ``session_id``.
        since : datetime.datetime | int | None
            A timezone-aware datetime (events at or after it), or an event id
            (events *after* it -- handy for polling).
        limit : int | None
            Return only the last ``limit`` matches.

        Returns
        -------
        events : list of Event
        """
        where, params = [], []
        if kind is not None:
            kinds = [kind] if isinstance(kind, str) else list(kind)
            unknown = [k for k in kinds if k not in KINDS]
            if unknown:
                raise ValueError(f"unknown event kind(s) {unknown}; valid kinds: "
                                 f"{', '.join(KINDS)}.")
            # Validated names inlined as literals (not parameters), so that SQLite
            # can use the partial per-kind indexes for "kind = 'run'".
            literals = [repr(str(k)) for k in kinds]
            where.append(f"kind = {literals[0]}" if len(literals) == 1
                         else f"kind IN ({','.join(literals)})")
        if actor is not None:
            if actor in ("human", "ai"):
                where.append("actor GLOB ?")
                params.append(actor + ":*")
            else:
                where.append("actor = ?")
                params.append(actor)
        if session is not None:
            where.append("session_id = ?")
            params.append(session)
        if since is not None:
            if isinstance(since, datetime):
                if since.tzinfo is None:
                    raise ValueError(f"since={since!r} has no timezone; pass an aware "
                                     "datetime such as datetime.now(timezone.utc).")
                where.append("ts >= ?")
                params.append(format_ts(since))
            elif isinstance(since, int) and not isinstance(since, bool):
                where.append("id > ?")
                params.append(since)
            else:
                raise ValueError(f"since must be an aware datetime or an event id, not "
                                 f"{short_repr(since)}.")
        sql = f"SELECT {_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT ?) ORDER BY id"
            params.append(int(limit))
        else:
            sql += " ORDER BY id"
        return self._query(sql, params)

    def pending_suggestions(self, *, limit=None) -> list[Event]:
        """Suggestions that no decision answers yet, oldest first.

        ``limit`` keeps only the newest ``limit`` of them (read through the
        suggestions index newest first, so the cost does not grow with the
        journal).
        """
        sql = (f"SELECT {_COLUMNS} FROM events s WHERE kind = 'suggestion' AND NOT EXISTS "
               "(SELECT 1 FROM events d WHERE d.kind = 'decision' AND d.parent_id = s.id)")
        if limit is None:
            return self._query(sql + " ORDER BY id")
        return self._query(f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT ?) ORDER BY id",
                           (int(limit),))

    def thread(self, event_id) -> Thread:
        """The thread an event belongs to: its suggestion and everything that followed.

        ``event_id`` may be any event of the thread (the suggestion, the
        decision, a tool call or result). The root is the nearest
        ``suggestion`` among the event and its ancestors, else the top-most
        ancestor; the thread is the root and all its descendants.
        """
        root = self.get(event_id)
        while root.kind != "suggestion" and root.parent_id is not None:
            parent = self.get(root.parent_id)
            root = parent
        events = self._query(
            "WITH RECURSIVE t(id) AS (SELECT ? UNION "
            "SELECT e.id FROM events e JOIN t ON e.parent_id = t.id) "
            f"SELECT {_COLUMNS} FROM events WHERE id IN (SELECT id FROM t) ORDER BY id",
            (root.id,),
        )
        return Thread(tuple(events))

    # -- integrity ----------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Walk the hash chain and report the first event that is not intact.

        Detects an edited event (its content no longer matches its hash), a
        deleted one (a gap in the ids, or fewer events than the head records),
        reordered ones (the id is part of the hash) and a broken link
        (``prev_hash`` differs from the previous event's hash).

        Returns
        -------
        report : VerifyReport
        """
        start = time.perf_counter()
        with self._lock, self._guard():
            con = self._db
            con.execute("BEGIN")  # one consistent snapshot, even with writers running
            try:
                try:
                    n, bad, problem, prev = self._walk(con)
                except sqlite3.OperationalError as err:
                    if "could not decode" not in str(err).lower():
                        raise
                    # A row whose text is not UTF-8 (damaged bytes): walk again
                    # keeping those bytes, so that the report names that event.
                    con.text_factory = _tolerant_text
                    try:
                        n, bad, problem, prev = self._walk(con)
                    finally:
                        con.text_factory = str
            finally:
                con.execute("COMMIT")
        return VerifyReport(ok=bad is None, n_events=n, first_bad_id=bad, problem=problem,
                            head_hash=prev if bad is None and n else None,
                            seconds=time.perf_counter() - start)

    def _walk(self, con):
        """The chain walk of :meth:`verify`: ``(n_ok, first_bad_id, problem, last_hash)``."""
        n, prev = 0, GENESIS_HASH
        cursor = con.execute(f"SELECT {_COLUMNS} FROM events ORDER BY id")
        for id_, sid, ts, actor, kind, parent_id, payload, prev_hash, hash_ in cursor:
            expected = n + 1
            if id_ != expected:
                if not isinstance(id_, int):
                    return n, expected, ("its id is no longer a number: the row's bytes are "
                                         "damaged"), prev
                return n, expected, (f"event {expected} is missing (the chain jumps from "
                                     f"event {expected - 1} to {id_}): it was deleted"), prev
            try:
                intact = chain_hash(id_, sid, ts, actor, kind, parent_id, payload,
                                    prev_hash) == hash_
            except (TypeError, ValueError):  # a field of the wrong type: damaged bytes
                intact = False
            if not intact:
                return n, id_, ("its stored content does not match its hash: the row was "
                                "edited, swapped with another one or damaged"), prev
            if prev_hash != prev:
                return n, id_, (f"its prev_hash does not match the hash of event {id_ - 1}: "
                                "an earlier event was changed, removed or reordered"), prev
            if parent_id is not None and not 1 <= parent_id < id_:
                return n, id_, f"its parent_id {parent_id} is not an earlier event", prev
            n, prev = id_, hash_
        last_id, last_hash = self._head(con)
        if last_id > n:
            return n, n + 1, (f"events {n + 1} to {last_id} are missing: the journal's head "
                              f"records {last_id} events but the chain ends at event {n}"), prev
        if last_id != n or last_hash != prev:
            return n, n, (f"the journal's head (event {last_id}) does not match the last "
                          f"event ({n}): the head or the last event was altered"), prev
        return n, None, None, prev

