"""The ``chatbci`` command.

Each sub-command is a thin layer over the Python API, so what the CLI does a
notebook can do too. Errors the user can fix are printed as one clear line
(exit code 2), never as a traceback; set ``CHATBCI_DEBUG=1`` to see it.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from .sanitize import TerminalStream, prefix_lines, terminal_json, terminal_text


def _cmd_datasets(args):
    from .bci.datasets import catalog

    table = catalog(include_other_tasks=args.all)
    if args.json:
        print(table.to_json(orient="records", indent=1))
        return 0
    cols = ["name", "n_subjects", "n_sessions", "n_channels", "sfreq", "classes", "doi"]
    view = table[cols].copy()
    view["classes"] = view["classes"].map(_short_list)
    view["doi"] = view["doi"].fillna("-")
    with _pandas_wide():
        print(view.to_string(index=False))
    if args.all:
        print(f"{len(view)} datasets of MOABB's imagery paradigm, other tasks included; "
              "details: `chatbci datasets --all --json`.")
    else:
        others = len(catalog(include_other_tasks=True)) - len(view)
        print(f"{len(view)} motor-imagery (and movement) datasets; {others} more of other "
              "tasks (visual, imagined speech, arithmetic) with --all; details: "
              "`chatbci datasets --json`.")
    return 0


def _short_list(items, width=38):
    text = ",".join(items) if isinstance(items, (list, tuple)) else str(items)
    return text if len(text) <= width else text[: width - 1] + "…"


def _cmd_bench(args):
    from .bci import request_index

    # Checked before the (long) benchmark runs, not when its results are written.
    _folder_option(args.cache_dir, "--cache-dir")
    for option, value in (("--output", args.output), ("--plot", args.plot)):
        if value:
            _folder_option(os.path.dirname(os.path.abspath(value)), f"the folder of {option}")
    request = dict(pipelines=args.pipelines, dataset=args.dataset, subjects=args.subjects,
                   paradigm=args.paradigm, evaluation=args.evaluation,
                   random_state=args.random_state)
    # A request answered before comes from the cache without importing MNE or MOABB
    # (nor the statistics, when its summary was printed before).
    t0 = time.perf_counter()
    key = request_index.request_key(**request) if args.cache_dir is not None else None
    answer = request_index.lookup(args.cache_dir, key)
    if answer is None:
        from .bci import workers

        if _several_subjects(args.subjects):
            # Workers import the engine while this process does (chatbci.bci.workers).
            workers.prestart(args.n_jobs)
        try:
            from .bci.benchmark import run_benchmark

            results = run_benchmark(**request, cache_dir=args.cache_dir, n_jobs=args.n_jobs,
                                    progress=not args.quiet)
        finally:
            # Not adopted (the engine's cache answered, or the job ran in this
            # process): end them now, not when this process ends, since a caller
            # of main() (a notebook, a test) may live on.
            workers.discard_prestarted()
        info = results.attrs.get("chatbci", {})
    else:
        results = answer.frame() if (args.output or args.plot or not answer.summary) else None
        info = dict(n_cached=answer.n_results, n_computed=0, seconds=time.perf_counter() - t0)
    if answer is not None and answer.summary:
        summary = answer.summary
    else:
        from .bci.statistics import format_summary, summary_table

        summary = format_summary(summary_table(results))
        if key is not None:
            request_index.remember_summary(args.cache_dir, key, summary)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        results.to_csv(args.output, index=False)
    print(summary)
    print(f"{info.get('n_computed', 0)} subject x pipeline results computed, "
          f"{info.get('n_cached', 0)} from cache, in {info.get('seconds', 0):.1f} s"
          + (f"; scores written to {args.output}" if args.output else ""))
    if args.plot:
        import matplotlib

        from .bci.statistics import score_plot

        matplotlib.use("Agg")
        score_plot(results).savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"score plot: {args.plot}")
    return 0


def _several_subjects(subjects):
    """Whether a --subjects text (None: all) names more than one subject.

    Only decides whether to start worker processes early; the engine parses
    and checks the text itself.
    """
    if subjects is None:
        return True
    parts = [p for p in str(subjects).replace(" ", "").split(",") if p]
    return len(parts) > 1 or any("-" in p.lstrip("-") for p in parts)


def _cache_store(path):
    """The intermediate store of a cache folder, or of a workspace's results/cache."""
    from .bci.store import Store

    folder = Path(path)
    if (folder / "workspace.toml").is_file():
        from .workspace import Workspace

        with Workspace.open(folder) as ws:
            folder = ws.path_for("results", "cache")
    if not folder.is_dir():
        raise FileNotFoundError(f"No cache folder at {path}: give the --cache-dir of "
                                "`chatbci bench` or a workspace folder.")
    # Only the store module: showing or pruning never imports MNE or MOABB.
    return Store(folder / "store")


def _cmd_cache(args):
    import datetime as dt

    from .bci.store import KINDS, format_size, parse_size

    store = _cache_store(args.path)
    if args.clear or args.prune is not None:
        bound = 0 if args.clear else parse_size(args.prune)
        removed = store.prune(bound)
        print(f"removed {len(removed)} entries "
              f"({format_size(sum(e['bytes'] for e in removed))}); "
              f"{format_size(store.size())} left in {store.root}")
        return 0
    entries = store.entries()
    print(f"intermediate store {store.root}: {len(entries)} entries, "
          f"{format_size(sum(e['bytes'] for e in entries))} "
          f"(bounded to {format_size(store.max_bytes)} after each benchmark)")
    print(f"{'kind':<8} {'entries':>8} {'size':>10}  last used (UTC)")
    for kind in KINDS:
        mine = [e for e in entries if e["kind"] == kind]
        last = (dt.datetime.fromtimestamp(max(e["last_used"] for e in mine), dt.timezone.utc)
                .strftime("%Y-%m-%d %H:%M") if mine else "-")
        print(f"{kind:<8} {len(mine):>8} {format_size(sum(e['bytes'] for e in mine)):>10}"
              f"  {last}")
    if args.entries:
        for e in entries:
            used = dt.datetime.fromtimestamp(e["last_used"], dt.timezone.utc)
            print(f"  {e['kind']:<7} {e['key'][:16]}  {format_size(e['bytes']):>10}  "
                  f"{used:%Y-%m-%d %H:%M:%S}")
    return 0


# -- workspace commands (chatbci.workspace) ---------------------------------------


def _default_human():
    import getpass

    try:
        return f"human:{getpass.getuser()}"
    except (KeyError, OSError):
        raise ValueError("cannot tell who you are; pass --author / --by human:<name>") from None


def _cmd_init(args):
    from .workspace import Workspace

    settings = {}
    if args.dataset:
        settings["datasets"] = args.dataset
    for key in ("subjects", "evaluation", "autonomy", "random_state"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    llm = {k: v for k, v in (("model", args.model), ("base_url", args.base_url)) if v}
    if llm:
        settings["llm"] = llm
    with Workspace.create(args.path, title=args.title, goal=args.goal, **settings) as ws:
        print(f"created workspace {ws.config.title!r} in {ws.path}")
    return 0


def _cmd_log(args):
    from .workspace import Workspace

    with Workspace.open(args.path) as ws:
        events = ws.journal.events(kind=args.kind, actor=args.actor, session=args.session,
                                   limit=args.limit)
    if args.json:
        # Exact (a program reading it loses nothing) yet safe to print.
        print(terminal_json([e.to_dict() for e in events], indent=1))
        return 0
    actor_width = max((len(e.actor) for e in events), default=0)
    for e in events:
        print(_log_line(e, args.width, actor_width))
    return 0


def _log_line(event, width, actor_width=20):
    """One journal event on one line; the actor whole, however long."""
    parent = f"<{event.parent_id}" if event.parent_id else ""
    # Actors and summaries hold model-written text: no escape sequence
    # may reach the terminal.
    return terminal_text(f"{event.id:>6} {event.ts:%Y-%m-%d %H:%M:%S} "
                         f"{event.actor:<{actor_width}} {event.kind:<13} {parent:<6} "
                         f"{event.summary(width)}")


def _cmd_verify(args):
    from .workspace import Workspace

    with Workspace.open(args.path) as ws:
        report = ws.journal.verify()
    if not report.ok:
        print(f"chatbci verify: {ws.journal.path}: {report}", file=sys.stderr)
        return 1
    print(f"{report} ({report.seconds:.2f} s)")
    return 0


def _cmd_note(args):
    from .workspace import Workspace

    with Workspace.open(args.path) as ws:
        kb = ws.knowledge
        if args.note_command == "add":
            if args.body_file is not None:
                body = (sys.stdin.read() if args.body_file == "-"
                        else open(args.body_file, encoding="utf-8").read())
            else:
                body = args.body or ""
            note = kb.add(args.title, body, author=args.author or _default_human(),
                          sources=args.source or ())
            state = "verified" if note.verified else "unverified"
            print(terminal_text(f"added note {note.id} ({state}): {note.path}"))
        elif args.note_command == "verify":
            note = kb.verify(args.note_id, by=args.by or _default_human())
            print(terminal_text(f"note {note.id} verified by {note.verified_by}"))
        else:
            notes = (kb.search(args.text) if args.note_command == "search"
                     else kb.list(verified=False if args.unverified else None))
            if args.json:
                print(terminal_json([{"id": n.id, "title": n.title, "author": n.author,
                                      "verified": n.verified, "sources": list(n.sources),
                                      "path": n.path} for n in notes], indent=1))
            for n in [] if args.json else notes:
                mark = "verified  " if n.verified else "UNVERIFIED"
                # Notes may be the AI's: titles are shown, never interpreted.
                print(terminal_text(f"{n.id:<40} {mark} {n.author:<24} {n.title}"))
    return 0


def _add_workspace_commands(sub):
    p = sub.add_parser("init", help="create a workspace folder",
                       description="Create a collaborative workspace: workspace.toml, the "
                                   "journal and the knowledge/, pipelines/, results/ and "
                                   "exports/ folders.")
    p.add_argument("path", help="workspace folder (created if needed)")
    p.add_argument("--title", required=True, help="title of the study")
    p.add_argument("--goal", required=True, help="the research goal, in a sentence or two")
    p.add_argument("--dataset", action="append", help="dataset in scope (repeatable)")
    p.add_argument("--subjects", default=None, help="subjects in scope, e.g. 1-10")
    p.add_argument("--evaluation", default=None,
                   choices=["within-session", "cross-session", "cross-subject"])
    p.add_argument("--autonomy", default=None, choices=["suggest", "assist", "auto"],
                   help="what the AI may run without asking (default: assist)")
    p.add_argument("--random-state", type=int, default=None)
    p.add_argument("--model", default=None, help="LLM model name")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server URL")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("log", help="show a workspace's journal")
    p.add_argument("path", help="workspace folder")
    p.add_argument("--kind", action="append",
                   help="only events of this kind (repeatable), e.g. suggestion")
    p.add_argument("--actor", default=None, help="human, ai, system or an exact actor")
    p.add_argument("--session", default=None, help="only this session id")
    p.add_argument("--limit", type=int, default=None, help="only the last N events")
    p.add_argument("--width", type=int, default=100, help="summary width (default: 100)")
    p.add_argument("--json", action="store_true", help="print the events as JSON")
    p.set_defaults(func=_cmd_log)

    p = sub.add_parser("verify", help="check the journal's hash chain",
                       description="Walk the journal's hash chain. Exit code 1, naming the "
                                   "first bad event, if an event was edited, deleted or "
                                   "reordered.")
    p.add_argument("path", help="workspace folder")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("note", help="add, list, search or verify knowledge notes")
    notes = p.add_subparsers(dest="note_command", metavar="ACTION", required=True)
    q = notes.add_parser("add", help="add a note")
    q.add_argument("path", help="workspace folder")
    q.add_argument("--title", required=True)
    q.add_argument("--body", default=None, help="note text (Markdown)")
    q.add_argument("--body-file", default=None, help="read the text from a file, - for stdin")
    q.add_argument("--source", action="append", help="a reference (repeatable)")
    q.add_argument("--author", default=None, help="human:<name> or ai:<model> "
                                                  "(default: human:<your login>)")
    q = notes.add_parser("list", help="list notes")
    q.add_argument("path", help="workspace folder")
    q.add_argument("--unverified", action="store_true", help="only unverified notes")
    q.add_argument("--json", action="store_true")
    q = notes.add_parser("search", help="search notes (title, body, sources)")
    q.add_argument("path", help="workspace folder")
    q.add_argument("text")
    q.add_argument("--json", action="store_true")
    q = notes.add_parser("verify", help="mark a note verified (recorded in the journal)")
    q.add_argument("path", help="workspace folder")
    q.add_argument("note_id")
    q.add_argument("--by", default=None, help="human:<name> (default: human:<your login>)")
    p.set_defaults(func=_cmd_note)

# -- end of workspace commands ----------------------------------------------------


# -- chatbci eval (chatbci.assistant.evaluation) ------------------------------------


def _cmd_eval(args):
    import re
    import tempfile
    import time

    from .assistant.evaluation import planned_backend, run_eval

    # Checked before anything runs, not when the scores are written.
    _folder_option(args.cache_dir, "--cache-dir")
    _folder_option(args.keep, "--keep")
    if args.json:
        _folder_option(os.path.dirname(os.path.abspath(args.json)), "the folder of --json")
    overrides = {k: v for k, v in (("model", args.model), ("base_url", args.base_url)) if v}
    # The flags win over the environment, which otherwise overrides [llm] as in a chat.
    env_vars = {"model": "CHATBCI_MODEL", "base_url": "OPENAI_BASE_URL"}
    saved = {env_vars[k]: os.environ.get(env_vars[k]) for k in overrides}
    try:
        for key, value in overrides.items():
            os.environ[env_vars[key]] = value
        plan = planned_backend(args.path, offline=args.offline, llm=overrides)
        if plan["is_llm"]:
            print(terminal_text(f"chatbci eval: language model {plan['model']} at "
                                f"{plan['base_url']}"))
        else:
            why = ("--offline" if args.offline else
                   "no language model configured (set OPENAI_API_KEY, or --base-url / "
                   "OPENAI_BASE_URL for a local server)")
            print(f"chatbci eval: {why}: evaluating the offline assistant (rule-based, "
                  "not an LLM)")
        tasks = args.tasks.split(",") if args.tasks else None

        def progress(score):
            mark = f"; error: {terminal_text(score.error)[:200]}" if score.error else ""
            label = f"{score.name} (bare model)" if score.mode == "bare" else score.name
            print(f"  {label}: {score.seconds:.1f} s{mark}", file=sys.stderr, flush=True)

        report = run_eval(args.path, offline=args.offline, tasks=tasks, llm=overrides,
                          bare=args.bare, cache_dir=args.cache_dir, workdir=args.keep,
                          n_jobs=args.n_jobs, on_task=progress)
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
    print(report.table())
    if report.bare_note:
        print(f"chatbci eval: {report.bare_note}")
    out = args.json
    if out is None:
        model = re.sub(r"[^\w.-]+", "_", str(report.backend.get("model", "model")))[:60]
        out = Path(tempfile.gettempdir()) / "chatbci-eval" / (
            f"eval-{model}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    path = report.write_json(out)
    print(f"scores written to {path}" + (f"; workspaces kept in {report.workdir}"
                                          if report.workdir else ""))
    return 0


def _add_eval_command(sub):
    from .assistant.evaluation import task_names

    p = sub.add_parser("eval", help="score a model on fixed research tasks before trusting it",
                       description="Run a fixed set of research tasks (SimulatedMI, a few "
                                   "subjects) against the configured model, or the offline "
                                   "assistant, each in a throwaway workspace, and score tool "
                                   "use, answers, claims backed by citations, invented "
                                   "numbers, compute attempted without approval and injected "
                                   "instructions obeyed. Prints a table, writes JSON.")
    p.add_argument("path", nargs="?", default=None,
                   help="a workspace whose [llm] settings to evaluate (default: the "
                        "environment's); nothing is written to it")
    p.add_argument("--offline", action="store_true",
                   help="evaluate the offline rule-based assistant")
    p.add_argument("--tasks", default=None,
                   help=f"comma-separated tasks (default: all): {', '.join(task_names())}")
    p.add_argument("--json", default=None, metavar="OUT",
                   help="write the scores here (default: a file in the temp folder)")
    p.add_argument("--model", default=None, help="LLM model name (wins over the environment)")
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible server URL (wins over the environment)")
    p.add_argument("--bare", action="store_true",
                   help="also ask the same model with no tools and no chatbci prompt, the "
                        "data pasted, to compare")
    p.add_argument("--cache-dir", default=None,
                   help="keep the engine's result cache here, so the next evaluation "
                        "reuses its benchmarks (default: one evaluation's only)")
    p.add_argument("--keep", default=None, metavar="DIR",
                   help="make the throwaway workspaces in DIR and keep them, to read their "
                        "journals")
    p.add_argument("--n-jobs", type=int, default=1, help="benchmark jobs (default: 1)")
    p.set_defaults(func=_cmd_eval)

# -- end of chatbci eval ----------------------------------------------------------


def _cmd_export(args):
    from .export import export

    formats = args.format.split(",") if args.format != "all" else "all"
    # Every file written, companions included (methods, references.bib...), one per line.
    files = export(args.path, formats if len(formats) > 1 or formats == "all" else formats[0],
                   curated=args.curated, out=args.out, anonymize=args.anonymize,
                   all_files=True)
    for f in files:
        print(f)
    return 0


def _cmd_demo(args):
    from .demo import run_demo

    run_demo(args.dir, args.dataset, n_jobs=args.n_jobs, overwrite=args.overwrite)
    return 0


def _cmd_chat(args):
    from ._quiet import library_chatter_silenced
    from .assistant.offline import OfflineBackend
    from .assistant.session import Session

    backend = OfflineBackend() if args.offline else None
    session = Session(args.path, backend=backend, human=args.human)
    kind = ("language model " + session.backend.model if session.backend.is_llm
            else "offline assistant (rule-based, not an LLM)")
    ws = session.workspace
    print(terminal_text(f"chatbci chat: {ws.config.title} -- {ws.config.goal}"))
    print(terminal_text(f"assistant: {kind}; autonomy: {session.autonomy}. ")
          + "Type /help for commands, /quit to leave; Ctrl-C stops running work.")
    chat = _Chat(session, warm_up=_warm_up())
    try:
        # Only chatbci's words and the assistant's reach the screen.
        with library_chatter_silenced():
            chat.loop()
    finally:
        # Never close under a turn that is still writing (a second Ctrl-C that
        # could not wait): its end is journaled when it ends, or not at all.
        session.close("left with Ctrl-C" if chat.left_by_interrupt else "closed")
    print(f"journal: {ws.path / 'journal.sqlite'} ({ws.journal.head()[0]} events)")
    return 0


def _warm_up():
    """Build the dataset catalog in the background while the human types.

    The first turn would otherwise spend its first seconds (16 s on a busy
    2-core machine) instantiating MOABB's dataset classes behind "thinking".
    Returns the thread; turns wait for it (:meth:`_Chat.run`) rather than
    build the catalog a second time beside it.
    """
    def build():
        try:
            from .bci.datasets import catalog

            catalog(include_other_tasks=True)
        except Exception:  # noqa: BLE001 - a turn that needs it says what is wrong
            pass

    thread = threading.Thread(target=build, name="chatbci-warm-up", daemon=True)
    thread.start()
    return thread


#: Seconds a second Ctrl-C still waits for stopped work to end before leaving.
_LEAVE_WAIT_S = 15.0

_LEAVE_HINT = "Ctrl-C again or /quit to leave"


class _Leave(Exception):
    """The human asked to leave the chat (Ctrl-C twice)."""


class _AnswerStopped(BaseException):
    """Raised in ``on_delta`` to end an answer the human stopped while it streamed.

    A BaseException: the session passes it on instead of journaling it as a
    failure of the model (it was no failure).
    """


class _Chat:
    """The terminal chat's loop: the prompt, the turns, Ctrl-C.

    Ctrl-C while the assistant or a tool works stops that work (the session's
    stop event: a benchmark ends within about a second and keeps what it had
    finished), journals what was stopped and returns to the prompt. Ctrl-C
    again -- at the prompt or while the work is stopping -- leaves, as does
    ``/quit``.
    """

    def __init__(self, session, warm_up=None):
        self.session = session
        self.warm_up = warm_up  # a thread the first work waits for (_warm_up)
        self.armed = False  # the last key was a Ctrl-C: another one leaves
        self.stopped = False  # work was stopped since the last prompt
        self.left_by_interrupt = False

    def loop(self):
        try:
            while True:
                if self.stopped:
                    self.stopped = False
                    print(f"  stopped; back at the prompt ({_LEAVE_HINT}).")
                try:
                    text = _ask("you> ")
                except KeyboardInterrupt:
                    if self.armed:
                        raise _Leave from None
                    self.armed = True
                    print(f"\n  ({_LEAVE_HINT})")
                    continue
                if text is None or text.strip() in ("/quit", "/exit"):
                    return
                text = text.strip()
                if not text:
                    continue
                self.armed = False
                try:
                    if text.startswith("/"):
                        self.command(text)
                        continue
                    turn = self.run(f"the assistant's turn on {text[:60]!r}",
                                    lambda activity: _send(self.session, text, activity))
                    if turn is None:
                        continue
                    _show_artifacts(self.session, turn)
                    for sugg in turn.suggestions:
                        if not _decide_interactively(self, sugg):
                            break
                except KeyboardInterrupt:
                    # At a decision's question (running work is stopped in run()):
                    # the suggestion stays pending (/pending), as with "skip".
                    if self.armed:
                        raise _Leave from None
                    self.armed = True
                    print(f"\n  cancelled; pending suggestions stay in /pending ({_LEAVE_HINT})")
        except _Leave:
            self.left_by_interrupt = True
            print("\n  leaving")

    def command(self, text):
        """A /command; its failure is one line, and the chat goes on."""
        try:
            _chat_command(self, text)
        except Exception as err:  # noqa: BLE001 - the chat goes on
            if os.environ.get("CHATBCI_DEBUG"):
                raise
            print(f"  {terminal_text(text.split()[0])} failed: {type(err).__name__}: "
                  f"{terminal_text(err)}")

    def run(self, what, work):
        """Run ``work(activity)`` in a thread; Ctrl-C stops it.

        Returns what ``work`` returned, or None when it was stopped (the
        stop is journaled). Raises :class:`_Leave` after a second Ctrl-C.
        """
        session = self.session
        session.stop.clear()  # a stop belongs to the work it was pressed during
        activity = _Activity()
        box = {}
        # Waited on instead of Thread.join: a join interrupted by Ctrl-C can leave
        # is_alive() False while the thread still runs (CPython 3.11).
        done = threading.Event()

        warm_up = self.warm_up

        def target():
            try:
                if warm_up is not None and warm_up.is_alive():
                    activity.working("loading the dataset catalog")
                    warm_up.join()
                    activity.working("thinking")
                box["result"] = work(activity)
            except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
                box["error"] = err
            finally:
                done.set()

        worker = threading.Thread(target=target, name="chatbci-chat-turn", daemon=True)
        activity.start()
        worker.start()
        stopped_at = None
        leave = False
        try:
            while not done.is_set():
                try:
                    done.wait(0.1)
                    if leave and time.monotonic() - stopped_at > _LEAVE_WAIT_S:
                        break
                except KeyboardInterrupt:
                    if stopped_at is None:
                        stopped_at = time.monotonic()
                        session.stop.set()
                        activity.say("stopping (Ctrl-C again to leave once it has "
                                     "stopped)", label="stopping")
                    else:
                        leave = True
                        activity.say("leaving as soon as the work has stopped",
                                     label="stopping")
        finally:
            activity.stop()
        if not done.is_set():  # it did not stop in time; the human insisted
            raise _Leave
        cut = isinstance(box.get("error"), _AnswerStopped)
        if "error" in box and not cut:
            raise box["error"]
        result = box.get("result")
        if cut:
            print("\n  chatbci: the answer was stopped; what streamed is not journaled.")
        if stopped_at is not None:
            _journal_stop(session, what, result, answer_cut=cut)
            self.armed = self.stopped = True  # said once the result is on screen
            if leave:
                raise _Leave
        return result


def _journal_stop(session, what, turn, answer_cut=False):
    """Record in the journal that the human stopped ``what`` with Ctrl-C, and its effect."""
    stopped = []
    first = None
    if answer_cut:  # no turn came back: the answer was to the human's last message
        asked = session.workspace.journal.events(kind="message", actor=session.human,
                                                 limit=1)
        first = asked[-1].id if asked else None
        stopped.append("the assistant's answer, cut off while it streamed (not journaled)")
    for ev in getattr(turn, "events", None) or []:
        first = first if first is not None else ev.id
        if ev.kind == "tool_result" and not ev.payload.get("ok", True):
            error = str((ev.payload.get("summary") or {}).get("error", ""))
            stopped.append(f"{ev.payload.get('tool')} (journal #{ev.id}): {error}")
    effect = ("; ".join(stopped) if stopped else
              "Nothing was cut short: the work that was running finished.")
    session.workspace.journal.append(
        "note", session.human,
        {"text": f"Stopped {what} with Ctrl-C in the terminal chat. {effect}", "op": "stop"},
        parent_id=first)


class _Activity:
    """What the terminal shows while a turn or a decision works.

    A "thinking" line counting seconds until the answer streams, the tool
    that is running, and a progress bar (tqdm) for benchmarks. The status
    line is drawn only on a terminal, and erased before anything else is
    printed (:meth:`clear`), so it never mixes with the answer.
    """

    def __init__(self):
        self.out = sys.stdout
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.lock = threading.RLock()
        self.label = "thinking"
        self.t0 = time.monotonic()
        self.shown = False  # a status line is on screen
        self.paused = False  # the answer is streaming
        self.bar = None
        self._done = threading.Event()
        self._thread = None

    def start(self):
        if self.tty:
            self._thread = threading.Thread(target=self._spin, name="chatbci-activity",
                                            daemon=True)
            self._thread.start()

    def _spin(self):
        frames = "|/-\\"
        i = 0
        while not self._done.wait(0.25):
            with self.lock:
                if self.paused or self.bar is not None:
                    continue
                seconds = time.monotonic() - self.t0
                self.out.write(f"\r\x1b[2K  {frames[i % 4]} {self.label}... {seconds:.0f} s")
                self.out.flush()
                self.shown = True
            i += 1

    def clear(self):
        """Erase the status line (call before printing anything else)."""
        with self.lock:
            if self.shown:
                self.out.write("\r\x1b[2K")
                self.out.flush()
                self.shown = False

    def pause(self):
        """The answer streams now: no status line until :meth:`working`."""
        with self.lock:
            self.clear()
            self.paused = True

    def working(self, label):
        """Show ``label`` (e.g. ``running run_benchmark``) with a fresh clock."""
        with self.lock:
            self.close_bar()
            self.label, self.t0, self.paused = label, time.monotonic(), False
            if not self.tty and label.startswith("running"):
                print(f"  ... {label}", flush=True)

    def say(self, text, label=None):
        """Print a line of chatbci's (e.g. after Ctrl-C) and go on showing ``label``."""
        with self.lock:
            self.clear()
            if self.bar is not None:
                self.bar.clear()
            print(f"\n  chatbci: {text}", flush=True)
            if label:
                self.label, self.paused = label, False

    def progress(self, done, total, text):
        """``Session.progress``: a benchmark's steps, as a progress bar."""
        from tqdm.auto import tqdm

        with self.lock:
            if self.bar is None:
                self.clear()
                self.bar = tqdm(total=total, unit="step", desc="  benchmark", leave=False,
                                file=sys.stderr, dynamic_ncols=True, disable=None)
            self.bar.total = total
            self.bar.n = done
            self.bar.set_postfix_str(terminal_text(text)[:60], refresh=False)
            self.bar.refresh()

    def close_bar(self):
        with self.lock:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    def stop(self):
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        self.close_bar()
        self.clear()


def _send(session, text, activity=None):
    """One turn on screen: the answer streamed through the terminal filter.

    Every line the model wrote is marked (``ai> ``, then ``ai| ``), so no line
    of it can pass for one chatbci printed; what did not stream (an answer
    given whole, a failed turn, tool errors) is printed after it. While the
    turn works, ``activity`` shows what it is doing.
    """
    from .assistant.claims import ClaimsReport, mark_claims

    activity = activity or _Activity()
    stream = TerminalStream(continuation="ai| ")
    shown = []
    checked = set()  # answers already printed with their claims check
    line = {"open": False, "reprefix": False}  # the streamed answer's cursor

    def on_delta(fragment):
        if session.stop.is_set():  # Ctrl-C: end the stream (llm.py lets it through)
            raise _AnswerStopped
        out = stream.feed(fragment)
        if out:
            with activity.lock:
                activity.pause()
                if not shown:
                    print("ai> ", end="")
                elif line["reprefix"]:
                    # The model's line was broken by a status line: mark the rest too.
                    print("ai| ", end="")
                line["reprefix"] = False
                shown.append(out)
                print(out, end="", flush=True)
                line["open"] = not out.endswith("\n")

    def on_event(ev):
        # An answer with unsupported / contradicted claims: its marks, printed before
        # the assistant answers again (the claims check sends them back once).
        nonlocal stream
        if previous is not None:
            previous(ev)
        if ev.kind == "tool_call":
            with activity.lock:
                if line["open"]:
                    print()
                    line["open"], line["reprefix"] = False, True
                activity.working(f"running {terminal_text(ev.payload.get('tool', '?'))}")
        elif ev.kind == "tool_result":
            activity.working("thinking")
        report = ClaimsReport.from_events([ev])
        if report is None or report.ok:
            return
        activity.pause()
        if shown:
            print(stream.flush())
            stream = TerminalStream(continuation="ai| ")
            shown.clear()
            line["open"] = False
        else:
            marked = mark_claims(str(ev.payload.get("text", "")), report, legend=False)
            print(prefix_lines(terminal_text(marked).strip(), "ai> ", "ai| "))
        checked.add(ev.id)
        for note in report.notes():
            print(f"chatbci: {terminal_text(note)}")

    previous = session.on_event
    previous_progress = session.progress
    session.on_event = on_event
    session.progress = activity.progress
    try:
        turn = session.send(text, on_delta=on_delta)
    finally:
        session.on_event = previous
        session.progress = previous_progress
        activity.stop()
    rest = stream.flush()
    if shown:
        print(rest)
    for notice in turn.notices:  # e.g. a secret typed by the human was redacted
        print(f"chatbci: {terminal_text(notice)}")
    answers = [e for e in turn.events if e.kind == "message" and e.actor.startswith("ai:")]
    answered = bool(answers)
    text_shown = terminal_text(turn.text).strip()
    if not shown and text_shown and not (answers and answers[-1].id in checked):
        # An answer that was not streamed is the model's; a turn that ended
        # without one (the LLM unreachable...) is chatbci's account of why.
        print(prefix_lines(text_shown, "ai> ", "ai| ") if answered
              else prefix_lines(text_shown, "chatbci: ", "         "))
    for err in turn.errors:
        message = str(err.payload.get("message", ""))
        if message and message not in turn.text:
            print(f"  error (journal #{err.id}): {terminal_text(message)}")
    return turn


def _ask(prompt):
    try:
        return input(prompt)
    except EOFError:
        return None


def _show_artifacts(session, turn):
    """Where the turn's figures and tables are, as paths one can open."""
    root = session.workspace.path
    for path in turn.artifacts:
        print(f"     [{terminal_text(root / path)}]")


def _ask_reason(prompt, verdict):
    """The human's reason for a rejection or a modification, never invented.

    The journal requires one, and it is read as the human's rationale: an
    empty answer asks again; a second empty answer gives up (None).
    """
    for _ in range(2):
        why = (_ask(prompt) or "").strip()
        if why:
            return why
        print(f"  a reason is needed to {verdict} (it is recorded as yours); "
              "type it, or press Enter again to go back")
    return None


def _decide_interactively(chat, sugg):
    """Ask the human to decide ``sugg``; run the decision (Ctrl-C stops it).

    Returns False when the work was stopped (the remaining suggestions of
    the turn stay pending), else True.
    """
    import json

    session = chat.session
    # What "y" runs is the suggestion in the journal: re-read it, and show its
    # action as chatbci renders it, last before the prompt, so nothing the
    # model wrote stands between the action and the question.
    sugg = session.workspace.journal.get(sugg.id)
    action = sugg.payload["action"]
    tool = terminal_text(action.get("tool", "?"))
    why = terminal_text(sugg.payload.get("rationale", "")).strip() or "(no reason given)"
    print(f"  suggestion #{sugg.id}, the assistant's reasons (its words):")
    print(prefix_lines(why, "  | "))
    print(f"  suggestion #{sugg.id}, the exact action (from the journal):")
    estimate = sugg.payload.get("estimate")
    if isinstance(estimate, dict) and estimate.get("fits"):
        seconds = estimate.get("seconds")
        epochs = estimate.get("epochs")  # deep networks: fits x max_epochs
        print(f"  estimated cost: {int(estimate['fits']):,} fits, "
              + (f"up to {int(epochs):,} training epochs, " if epochs else "")
              + (f"about {float(seconds):.0f} s" if seconds is not None
                 else "duration unknown"))
    print(f"    {tool} {terminal_json(action.get('args', {}))}")
    prompt = f"  #{sugg.id} {tool}: approve? [y]es / [n]o / [m]odify / [s]kip: "
    while True:
        answer = (_ask(prompt) or "s").strip().lower()
        if answer in ("y", "yes"):
            why = (_ask("  rationale (optional): ") or "").strip()
            work = lambda activity: _decision(session, activity, session.approve, sugg.id, why)  # noqa: E731
        elif answer in ("n", "no"):
            why = _ask_reason("  why not? ", "reject")
            if why is None:
                continue
            work = lambda activity: _decision(session, activity, session.reject, sugg.id, why)  # noqa: E731
        elif answer in ("m", "modify"):
            raw = _ask("  changed arguments as JSON, e.g. {\"subjects\": \"1-2\"}: ") or "{}"
            try:
                changes = json.loads(raw)
            except ValueError as err:
                print(f"  not JSON ({err}); try again")
                continue
            if not isinstance(changes, dict):
                print(f"  the changed arguments must be a JSON object, e.g. "
                      f"{{\"subjects\": \"1-2\"}}, not a {type(changes).__name__}; try again")
                continue
            why = _ask_reason("  why? ", "modify")
            if why is None:
                continue
            work = lambda activity: _decision(session, activity, session.modify, sugg.id,  # noqa: E731
                                              changes, why)
        elif answer in ("s", "skip"):
            print(f"  left pending (#{sugg.id})")
            return True
        else:
            continue
        try:
            turn = chat.run(f"suggestion #{sugg.id} ({tool})", work)
        except ValueError as err:  # e.g. a modification the tool refuses: ask again
            print(f"  {terminal_text(err)}")
            continue
        if turn is None:
            return False
        for notice in turn.notices:
            print(f"  chatbci: {terminal_text(notice)}")
        print(f"  {terminal_text(turn.text)}")
        _print_scores(turn)
        _show_artifacts(session, turn)
        return not session.stop.is_set()


def _decision(session, activity, decide, *args):
    """Run a decision with ``activity`` showing progress."""
    previous_progress, previous = session.progress, session.on_event

    def on_event(ev):
        if previous is not None:
            previous(ev)
        if ev.kind == "tool_call":
            activity.working(f"running {terminal_text(ev.payload.get('tool', '?'))}")

    session.progress, session.on_event = activity.progress, on_event
    try:
        return decide(*args)
    finally:
        session.progress, session.on_event = previous_progress, previous
        activity.stop()


def _print_scores(turn):
    for res in turn.tool_results:
        summary = res.payload.get("summary", {})
        if isinstance(summary, dict) and "scores" in summary:
            for name, sc in summary["scores"].items():
                print(f"     {terminal_text(name):<14}{sc['mean']:.3f} ± {sc['sd']:.3f} "
                      f"(n={sc['n_subjects']})")


#: The terminal chat's commands: name, arguments, what it does.
CHAT_COMMANDS = (
    ("/help", "", "this list"),
    ("/pending", "", "decide the suggestions awaiting you"),
    ("/results", "", "the results so far (from the journal)"),
    ("/log", "[N]", "the last N journal events (default 15)"),
    ("/note", "<title>: <text>", "add a knowledge note, as yours"),
    ("/verify", "", "check the journal's hash chain"),
    ("/export", "[md,html,tex,json,ipynb|all]", "export the session for a paper"),
    ("/autonomy", "suggest|assist|auto", "what the assistant may run without asking"),
    ("/quit", "", "leave (or Ctrl-C twice); Ctrl-C once stops running work"),
)


def _chat_help():
    width = max(len(f"{n} {a}".strip()) for n, a, _ in CHAT_COMMANDS)
    return "\n".join(f"  {(n + ' ' + a).strip():<{width}}  {d}" for n, a, d in CHAT_COMMANDS)


def _chat_command(chat, text):
    session = chat.session
    ws = session.workspace
    cmd, _, rest = text.partition(" ")
    rest = rest.strip()
    if cmd == "/pending":
        pending = ws.journal.pending_suggestions()
        if not pending:
            print("  no pending suggestions")
        for sugg in pending:
            if not _decide_interactively(chat, sugg):
                break
    elif cmd == "/autonomy":
        try:
            session.set_autonomy(rest)
            print(f"  autonomy: {session.autonomy}")
        except ValueError as err:
            print(f"  {err}")
    elif cmd == "/log":
        try:
            limit = int(rest) if rest else 15
        except ValueError:
            print(f"  /log takes a number of events, e.g. /log 30, not {terminal_text(rest)!r}")
            return
        events = ws.journal.events(limit=max(1, limit))
        actor_width = max((len(e.actor) for e in events), default=0)
        for ev in events:
            print("  " + _log_line(ev, 90, actor_width))
    elif cmd == "/results":
        from .export.results import results_table

        print(terminal_text(results_table(ws, "md")))
    elif cmd == "/verify":
        report = ws.journal.verify()
        print(f"  {report}")
    elif cmd == "/note":
        title, sep, body = rest.partition(":")
        if not (sep and title.strip() and body.strip()):
            print("  write it as /note <title>: <text>")
            return
        note = ws.knowledge.add(title.strip(), body.strip(), author=session.human)
        print(terminal_text(f"  added note {note.id} ({note.path})"))
    elif cmd == "/export":
        from .export import export

        formats = [f.strip() for f in (rest or "md").split(",") if f.strip()]
        fmt = "all" if formats == ["all"] else formats if len(formats) > 1 else formats[0]
        try:
            files = export(ws, fmt)
        except ValueError as err:
            print(f"  {terminal_text(err)}")
            return
        for f in files if isinstance(files, list) else [files]:
            print(f"  {terminal_text(f)}")
    else:
        if cmd != "/help":
            print(f"  unknown command {terminal_text(cmd)!r}; the commands are:")
        print(_chat_help())


def build_parser():
    parser = argparse.ArgumentParser(
        prog="chatbci",
        description="Human-AI collaborative design of motor-imagery EEG decoders.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("export", help="export a session for a paper",
                       description="Transcript, methods section, results table, BibTeX, "
                                   "AI-use disclosure and provenance, all from the journal.")
    p.add_argument("path", help="workspace folder")
    p.add_argument("--format", default="md",
                   help="md, html, tex, json, ipynb, a comma-separated list, or all")
    p.add_argument("--curated", action="store_true",
                   help="keep decisions, their suggestions and results; drop chatter")
    p.add_argument("--out", default=None, help="output folder (default: <workspace>/exports)")
    p.add_argument("--anonymize", action="store_true", help="replace human names")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("demo", help="play a scripted collaborative session, offline",
                       description="Creates a workspace and plays a scripted session with the "
                                   "offline assistant: exploration, proposals, decisions, a "
                                   "benchmark, statistics and a paper export.")
    p.add_argument("--dir", default="chatbci-demo", help="where to create the demo workspace")
    p.add_argument("--dataset", default="SimulatedMI", choices=["SimulatedMI", "PhysionetMI"])
    p.add_argument("--n-jobs", type=int, default=-1)
    p.add_argument("--overwrite", action="store_true", help="replace a previous demo in --dir")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("chat", help="chat with the assistant in the terminal",
                       description="A terminal chat on a workspace: the answer streams, "
                                   "suggestions are decided with y / n / m.")
    p.add_argument("path", help="workspace folder")
    p.add_argument("--human", default=os.environ.get("USER") or "researcher",
                   help="your name in the journal")
    p.add_argument("--offline", action="store_true",
                   help="use the offline rule-based assistant even if a model is configured")
    p.set_defaults(func=_cmd_chat)

    p = sub.add_parser("datasets", help="list MOABB's motor-imagery datasets (offline)")
    p.add_argument("--json", action="store_true", help="print JSON records")
    p.add_argument("--all", action="store_true",
                   help="also the datasets of other tasks MOABB files under imagery "
                        "(visual, imagined speech, mental arithmetic)")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser(
        "bench", help="run a MOABB benchmark (cached, resumable)",
        description="Evaluate decoding pipelines with MOABB's evaluations and print "
                    "mean ± sd per pipeline with paired statistics.",
    )
    p.add_argument("--dataset", default="SimulatedMI",
                   help="dataset name, see `chatbci datasets` (default: SimulatedMI)")
    p.add_argument("--subjects", default=None,
                   help="e.g. 1-6 or 1,3,5-7 (default: all subjects)")
    p.add_argument("--pipelines", default="CSP+LDA,TS+LR,MDM",
                   help="comma-separated canonical pipelines: CSP+LDA, TS+LR, TS+SVM, "
                        "MDM, FgMDM, FBCSP+SVM, ACM+TS+SVM (default: %(default)s)")
    p.add_argument("--paradigm", default="left_right", choices=["left_right", "multiclass"])
    p.add_argument("--evaluation", default="within-session",
                   choices=["within-session", "cross-session", "cross-subject"])
    p.add_argument("--random-state", type=int, default=42)
    p.add_argument("--cache-dir", default=None,
                   help="cache results here; a re-run or resumed run reuses them")
    p.add_argument("--output", default=None, help="write MOABB's results table as CSV")
    p.add_argument("--plot", default=None, help="save MOABB's score plot (PNG/PDF)")
    p.add_argument("--n-jobs", type=int, default=-1,
                   help="subjects in parallel (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "cache", help="show or prune the store of intermediate results",
        description="The content-addressed store under <cache-dir>/store (a workspace's "
                    "results/cache/store): epochs, covariances and fitted tangent spaces "
                    "that later benchmarks reuse. Shows entries by kind, size and last "
                    "use; --prune removes the least recently used down to a size.",
    )
    p.add_argument("path", help="a --cache-dir of `chatbci bench`, or a workspace folder")
    p.add_argument("--prune", default=None, metavar="SIZE",
                   help="remove least recently used entries down to SIZE (e.g. 500MB)")
    p.add_argument("--clear", action="store_true", help="remove every entry")
    p.add_argument("--entries", action="store_true", help="list every entry")
    p.set_defaults(func=_cmd_cache)

    _add_workspace_commands(sub)
    _add_eval_command(sub)
    return parser


def _version():
    from . import __version__

    return f"chatbci {__version__}"


class _pandas_wide:
    def __enter__(self):
        import pandas as pd

        self._ctx = pd.option_context("display.width", 200, "display.max_colwidth", 40,
                                      "display.max_rows", 200)
        self._ctx.__enter__()

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


#: Exceptions whose message tells the user what to fix: (module, class name).
#: Checked only among modules already imported, so classifying an error never
#: imports MNE/MOABB (a user error in `chatbci log` stays instant).
_USER_ERRORS = (
    ("chatbci.bci.benchmark", "BenchmarkError"),
    ("chatbci.bci.benchmark", "BenchmarkStopped"),
    ("chatbci.bci.datasets", "DataNotAvailableError"),
    ("chatbci.bci.pipelines", "PipelineError"),
    ("chatbci.bci.statistics", "StatisticsError"),
    ("chatbci.workspace.errors", "WorkspaceError"),
    ("builtins", "FileExistsError"),
    ("builtins", "NotADirectoryError"),
    ("builtins", "IsADirectoryError"),
    ("builtins", "PermissionError"),
    ("chatbci.assistant.llm", "LLMError"),
    ("chatbci.assistant.llm", "LLMConfigError"),
    ("chatbci.assistant.tools", "ToolError"),
    ("chatbci.export", "ExportError"),
)


def _folder_option(value, option):
    """Refuse a folder option that cannot be a folder (a file is in the way).

    Raises
    ------
    ValueError
        Naming the option, the file in the way and the fix.
    """
    if value is None:
        return
    path = Path(value).expanduser().absolute()
    # The nearest part of the path that exists must be a folder.
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.is_dir():
        return
    where = "is a file" if probe == path else f"cannot be made: {probe} is a file"
    raise ValueError(f"{option} {value} {where}, not a folder; give a folder (it is made "
                     "if missing).")


@contextmanager
def _warnings_as_lines(command):
    """Print chatbci's own warnings (a skipped note...) as one line each on stderr."""
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if not category.__module__.startswith("chatbci."):
                return shown(message, category, filename, lineno, file, line)
            # One line, printable: a warning may quote a hand-edited file.
            text = " ".join("".join(c if c.isprintable() else " " for c in str(message)).split())
            print(f"chatbci {command}: warning: {text}", file=sys.stderr)

        warnings.showwarning = show
        yield


def _is_user_error(err) -> bool:
    for module, name in _USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(err, cls):
            return True
    return isinstance(err, (ValueError, FileNotFoundError))


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        with _warnings_as_lines(args.command):
            return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; cached results are kept, re-run to resume", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - classified just below
        if not _is_user_error(err) or os.environ.get("CHATBCI_DEBUG"):
            raise
        print(f"chatbci {args.command}: error: {terminal_text(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
