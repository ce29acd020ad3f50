"""The knowledge base: Markdown notes with front matter in ``knowledge/``.

Each note is ``knowledge/<id>.md``::

    ---
    title: Mu rhythm desynchronises over the contralateral motor cortex
    author: ai:gpt-4o-mini
    verified: no
    sources:
    - https://doi.org/10.1016/S1388-2457(99)00141-8
    created: '2025-01-31T10:00:00.000000Z'
    verified_by: null
    verified_at: null
    ---
    The body, in Markdown.

Notes are plain files so they can be read, diffed and edited by hand. An
AI-written note starts unverified; a human verifies it with
:meth:`KnowledgeBase.verify`, which is itself a journal event (``note``,
``op="verify"``) recording who verified which content (its SHA-256).
A human's own note is verified by its author at creation unless
``verified=False`` is passed.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import warnings
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from pathlib import Path

import yaml

from .errors import EventValidationError, KnowledgeError, KnowledgeWarning, UnsafePathError
from .events import check_actor, format_ts
from .files import write_inside
from .paths import resolve_inside
from .secrets import scrub

__all__ = ["KnowledgeBase", "Note"]

_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


@dataclass(frozen=True)
class Note:
    """One knowledge-base note (immutable; change it through :class:`KnowledgeBase`).

    Attributes
    ----------
    id : str
        File stem, a slug of the title (``knowledge/<id>.md``).
    title, body : str
    author : str
        ``human:<name>`` or ``ai:<model>``.
    verified : bool
    sources : tuple of str
        References (DOIs, URLs, journal event ids...).
    created : datetime.datetime
        UTC.
    verified_by : str | None
    verified_at : datetime.datetime | None
    path : str
        Relative to the workspace.
    """

    id: str
    title: str
    author: str
    verified: bool
    sources: tuple[str, ...]
    created: datetime
    body: str
    verified_by: str | None = None
    verified_at: datetime | None = None
    path: str = ""

    @property
    def content_hash(self) -> str:
        """SHA-256 of what a verification vouches for: title, body and sources."""
        text = json.dumps([self.title, self.body, list(self.sources)], ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_markdown(self) -> str:
        """The file content: YAML front matter, then the body."""
        def dump(fields):
            return yaml.safe_dump(fields, sort_keys=False, allow_unicode=True, width=10_000)

        # "verified: yes/no" reads better than true/false and YAML 1.1 parsers
        # (PyYAML) read it as a boolean; parse_note also accepts the strings.
        head = (
            dump({"title": self.title, "author": self.author})
            + f"verified: {'yes' if self.verified else 'no'}\n"
            + dump({"sources": list(self.sources), "created": format_ts(self.created),
                    "verified_by": self.verified_by,
                    "verified_at": format_ts(self.verified_at) if self.verified_at else None})
        )
        body = self.body if self.body.endswith("\n") or not self.body else self.body + "\n"
        return f"---\n{head}---\n{body}"


def _slug(title):
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].strip("-")
    return slug or "note"


def _when(value, field, path):
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    raise KnowledgeError(f"{path}: `{field}` = {value!r} is not a date such as "
                         "'2025-01-31T10:00:00Z'.")


def _check_author(author, allow=("human", "ai"), what="author"):
    try:
        return check_actor(author, allow=allow)
    except EventValidationError as err:
        raise KnowledgeError(f"{what}: {err}") from None


def _yaml_problem(err):
    """PyYAML's multi-line message as one line, with the line number in the file."""
    problem = getattr(err, "problem", None)
    if not problem:
        return " ".join(str(err).split())
    mark = getattr(err, "problem_mark", None)
    # The front matter starts on the file's second line, after '---'.
    where = f"line {mark.line + 2}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(err, "context", None)
    return where + problem + (f", {context}" if context else "")


def parse_note(text, path, note_id) -> Note:
    """Parse a note file's ``text`` (``path`` is only used in error messages)."""
    match = _FRONT.match(text)
    if not match:
        raise KnowledgeError(
            f"{path} has no front matter; a note starts with a '---' line, YAML fields "
            "(title, author, verified, sources, created) and another '---' line."
        )
    try:
        front = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as err:
        raise KnowledgeError(f"{path}: the front matter is not valid YAML "
                             f"({_yaml_problem(err)}); fix that line.") from None
    if not isinstance(front, dict):
        raise KnowledgeError(f"{path}: the front matter must be YAML fields (key: value).")
    missing = [k for k in ("title", "author", "verified", "created") if k not in front]
    if missing:
        raise KnowledgeError(f"{path}: the front matter lacks {', '.join(missing)}.")
    verified = front["verified"]
    if isinstance(verified, str):  # a YAML 1.2 writer may have quoted it
        verified = {"yes": True, "true": True, "no": False, "false": False}.get(
            verified.strip().lower(), verified)
    if not isinstance(verified, bool):
        raise KnowledgeError(f"{path}: `verified` = {front['verified']!r}; use yes or no.")
    sources = front.get("sources") or []
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list):
        raise KnowledgeError(f"{path}: `sources` must be a list of references.")
    return Note(
        id=note_id,
        title=str(front["title"]),
        author=_check_author(str(front["author"]), what=f"{path}: author"),
        verified=verified,
        sources=tuple(str(s) for s in sources),
        created=_when(front["created"], "created", path),
        body=text[match.end():],
        verified_by=front.get("verified_by"),
        verified_at=(_when(front["verified_at"], "verified_at", path)
                     if front.get("verified_at") else None),
        path=f"knowledge/{note_id}.md",
    )


class KnowledgeBase:
    """The notes of a workspace (``ws.knowledge``).

    A note file that cannot be read (broken by hand, not UTF-8...) does not
    stop the others: :meth:`list` and :meth:`search` skip it, warn once per
    version of the file (:class:`~chatbci.workspace.errors.KnowledgeWarning`,
    naming the file and what is wrong) and keep it in :attr:`problems`;
    :meth:`get` of that note raises the problem as a :class:`KnowledgeError`.

    Parameters
    ----------
    folder : str | os.PathLike
        The ``knowledge/`` folder.
    journal : Journal
        Where additions and verifications are recorded.
    root : str | os.PathLike | None
        The workspace folder; notes are never written where their real path
        leaves it (default: the parent of ``folder``).

    Attributes
    ----------
    problems : dict of str to str
        The note files the last :meth:`list` skipped, and why.
    """

    def __init__(self, folder, journal, *, root=None):
        self.folder = Path(folder)
        self.journal = journal
        self.root = (Path(root) if root is not None else self.folder.absolute().parent).resolve()
        self.problems = {}
        # path -> ((mtime_ns, size), Note | KnowledgeError): parse each file
        # once, re-read it when it changes. A broken file is remembered too,
        # so that it is warned about once per version, not at every turn.
        self._parsed = {}

    def _load(self, path):
        """The note in ``path``, or the KnowledgeError saying why it cannot be read."""
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        hit = self._parsed.get(path)
        if hit is None or hit[0] != stamp:
            try:
                note = parse_note(path.read_text(encoding="utf-8"), path, path.stem)
            except UnicodeDecodeError as err:
                note = KnowledgeError(f"{path} is not UTF-8 text (byte {err.start} cannot "
                                      "be read); save it as UTF-8.")
            except KnowledgeError as err:
                note = err
            else:
                note = self._vouched(note, path, stamp)
            hit = (stamp, note)
            self._parsed[path] = hit
            if isinstance(note, KnowledgeError):
                warnings.warn(f"{note} The note is skipped until the file is fixed.",
                              KnowledgeWarning, stacklevel=4)
        return hit[1]

    def _vouched(self, note, path, stamp=None) -> Note:
        """``note`` as the journal backs it: verified only for verified content.

        The file's ``verified: yes`` is a claim; the journal is the record. A
        note counts as verified only if a human's journal event (adding their
        own note, or ``verify``) holds the SHA-256 of exactly this title, body
        and sources. Otherwise -- the text was edited after verification, or
        ``verified: yes`` was typed into an AI's note -- the verification is
        cleared: journaled once (``op="unverify"``) and written back to the
        file, so every reader sees the same truth.
        """
        if not note.verified:
            return note
        digest = note.content_hash
        for ev in self.journal.events(kind="note"):
            p = ev.payload
            if (p.get("note_id") == note.id and p.get("content_sha256") == digest
                    and str(ev.actor).startswith("human:")
                    and (p.get("op") == "verify" or (p.get("op") == "add"
                                                      and p.get("verified")))):
                return note
        cleared = replace(note, verified=False, verified_by=None, verified_at=None)
        self.journal.append("note", "system", {
            "text": f"verification of knowledge note {note.title!r} cleared: its content "
                    "is not the content a human verified",
            "op": "unverify", "note_id": note.id, "author": note.author,
            "content_sha256": digest,
        })
        # Rewrite the front matter only if nobody changed the file meanwhile.
        try:
            st = path.stat()
            if stamp is None or (st.st_mtime_ns, st.st_size) == stamp:
                write_inside(self.root, path, cleared.to_markdown(), what="knowledge note")
        except (OSError, UnsafePathError):  # the journal says it; the file is rewritten next time
            pass
        return cleared

    def _file(self, note_id):
        if not isinstance(note_id, str) or not _ID.fullmatch(note_id):
            raise KnowledgeError(f"{note_id!r} is not a note id (lower-case letters, digits "
                                 "and '-'); `chatbci note list` shows the ids.")
        return self.folder / f"{note_id}.md"

    def add(self, title, body, *, author, sources=(), verified=None) -> Note:
        """Write a new note and record it in the journal.

        Parameters
        ----------
        title : str
        body : str
            Markdown.
        author : str
            ``human:<name>`` or ``ai:<model>``.
        sources : iterable of str
            References backing the note.
        verified : bool | None
            Default: True for a human author (who vouches for their own
            note), False for an AI, which cannot verify its own notes.

        Returns
        -------
        note : Note
        """
        author = _check_author(scrub(author))
        is_ai = author.startswith("ai:")
        if verified is None:
            verified = not is_ai
        if verified and is_ai:
            raise KnowledgeError(
                "an AI-written note starts unverified; a human verifies it with "
                "ws.knowledge.verify(note_id, by='human:<name>') or `chatbci note verify`."
            )
        if not isinstance(title, str) or not title.strip():
            raise KnowledgeError(f"a note needs a non-empty title, got {title!r}.")
        if not isinstance(body, str):
            raise KnowledgeError(f"a note's body must be text, not {type(body).__name__}.")
        if isinstance(sources, str):
            sources = [sources]
        title, body, sources = scrub([title.strip(), body, [str(s) for s in sources]])
        if body and not body.endswith("\n"):
            body += "\n"  # as stored, so the returned note equals the one read back
        now = datetime.now(timezone.utc)
        note = Note(id="", title=title, author=author, verified=bool(verified),
                    sources=tuple(sources), created=now, body=body,
                    verified_by=author if verified else None,
                    verified_at=now if verified else None)
        base = _slug(title)
        for n in range(1, 10_000):
            note_id = base if n == 1 else f"{base}-{n}"
            note = replace(note, id=note_id, path=f"knowledge/{note_id}.md")
            try:
                # Exclusive, as open(..., "x") was: the name is claimed
                # atomically, even against another process, but with the whole
                # note in it from the first moment -- a session listing notes
                # meanwhile never meets an empty file.
                write_inside(self.root, self._file(note_id), note.to_markdown(),
                             exclusive=True, what="knowledge note")
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - 10,000 notes with the same title
            raise KnowledgeError(f"too many notes titled {title!r}.")
        try:
            self.journal.append("note", author, {
                "text": f"added knowledge note {note.title!r}", "op": "add",
                "note_id": note.id, "title": note.title, "path": note.path,
                "verified": note.verified, "sources": list(note.sources),
                "content_sha256": note.content_hash,
            })
        except BaseException:
            # The journal is the record: a note it does not know must not exist.
            self._file(note.id).unlink(missing_ok=True)
            raise
        return note

    def get(self, note_id) -> Note:
        """The note ``note_id`` (``KnowledgeError`` if there is none)."""
        path = self._file(note_id)
        try:
            with warnings.catch_warnings():
                # The problem is raised here, not warned about.
                warnings.simplefilter("ignore", KnowledgeWarning)
                note = self._load(path)
        except FileNotFoundError:
            raise KnowledgeError(f"no note {note_id!r} in {self.folder}; `chatbci note "
                                 "list` shows the notes.") from None
        if isinstance(note, KnowledgeError):
            raise KnowledgeError(str(note))
        return note

    def list(self, *, verified=None, author=None) -> list[Note]:
        """All notes, oldest first; optionally only (un)verified ones or one author.

        ``author`` is an exact author or a type (``"human"``, ``"ai"``).
        A note file that cannot be read is skipped with a
        :class:`~chatbci.workspace.errors.KnowledgeWarning` (see the class).
        """
        notes, problems, seen = [], {}, set()
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.md")):
                if not _ID.fullmatch(path.stem):
                    continue
                seen.add(path)
                try:
                    note = self._load(path)
                except FileNotFoundError:
                    continue  # removed since the folder was listed
                except OSError as err:  # unreadable: permissions, a folder named x.md...
                    note = KnowledgeError(f"{path} cannot be read ({err.strerror or err}).")
                    if str(path) not in self.problems:
                        warnings.warn(f"{note} The note is skipped until the file is fixed.",
                                      KnowledgeWarning, stacklevel=2)
                if isinstance(note, KnowledgeError):
                    problems[str(path)] = str(note)
                else:
                    notes.append(note)
        self.problems = problems
        # Forget removed files, so that the cache does not grow without bound.
        for gone in [p for p in self._parsed if p not in seen]:
            self._parsed.pop(gone, None)
        if verified is not None:
            notes = [n for n in notes if n.verified == verified]
        if author is not None:
            notes = [n for n in notes if n.author == author
                     or (author in ("human", "ai") and n.author.startswith(author + ":"))]
        return sorted(notes, key=lambda n: (n.created, n.id))

    def search(self, text, *, limit=None) -> list[Note]:
        """Notes containing any word of ``text`` (case-insensitive), best first.

        Ranked by the number of distinct words found, then by a score
        counting occurrences: 3 per hit in the title, 2 in the sources, 1 in
        the body.
        """
        terms = sorted(set(str(text).lower().split()))
        if not terms:
            raise KnowledgeError("search text is empty; give one or more words.")
        ranked = []
        for note in self.list():
            title, body = note.title.lower(), note.body.lower()
            sources = " ".join(note.sources).lower()
            found = [t for t in terms if t in title or t in body or t in sources]
            if found:
                score = sum(3 * title.count(t) + 2 * sources.count(t) + body.count(t)
                            for t in found)
                ranked.append((-len(found), -score, note.created, note))
        ranked.sort(key=lambda r: r[:3])
        notes = [r[3] for r in ranked]
        return notes[:limit] if limit is not None else notes

    def verify(self, note_id, *, by) -> Note:
        """Mark a note verified by a human, recording it in the journal.

        The journal event (``note``, ``op="verify"``, actor ``by``) holds the
        SHA-256 of the verified title, body and sources. Verifying a note that
        is already verified changes nothing and writes no event.

        Parameters
        ----------
        note_id : str
        by : str
            ``human:<name>``; an AI cannot verify notes.

        Returns
        -------
        note : Note
        """
        by = _check_author(by, allow=("human",), what="verified by")
        note = self.get(note_id)
        if note.verified:
            return note
        done = replace(note, verified=True, verified_by=by,
                       verified_at=datetime.now(timezone.utc))
        path = self._file(note_id)
        # Refused before the journal records a verification that could not be
        # written (a note linked out of the workspace).
        resolve_inside(self.root, path, what="knowledge note")
        # Journal first, then swap the file in: a file saying "verified" is
        # always backed by its journal event.
        self.journal.append("note", by, {
            "text": f"verified knowledge note {note.title!r}", "op": "verify",
            "note_id": note_id, "author": note.author,
            "content_sha256": note.content_hash,
        })
        write_inside(self.root, path, done.to_markdown(), what="knowledge note")
        return done
