"""The ``chatbci`` command.

Each sub-command is a thin layer over the Python API, so what the CLI does a
notebook can do too. Errors the user can fix are printed as one clear line
(exit code 2), never as a traceback; set ``CHATBCI_DEBUG=1`` to see it.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from .sanitize import TerminalStream, prefix_lines, terminal_json, terminal_text


def _cmd_datasets(args):
    from .bci.datasets import catalog

    table = catalog()
    if args.json:
        print(table.to_json(orient="records", indent=1))
        return 0
    cols = ["name", "n_subjects", "n_sessions", "n_channels", "sfreq", "classes", "doi"]
    view = table[cols].copy()
    view["classes"] = view["classes"].map(_short_list)
    view["doi"] = view["doi"].fillna("-")
    with _pandas_wide():
        print(view.to_string(index=False))
    print(f"{len(view)} motor-imagery datasets; details: `chatbci datasets --json`.")
    return 0


def _short_list(items, width=38):
    text = ",".join(items) if isinstance(items, (list, tuple)) else str(items)
    return text if len(text) <= width else text[: width - 1] + "…"


def _cmd_bench(args):
    from .bci.benchmark import run_benchmark
    from .bci.statistics import format_summary, score_plot, summary_table

    # Checked before the (long) benchmark runs, not when its results are written.
    _folder_option(args.cache_dir, "--cache-dir")
    for option, value in (("--output", args.output), ("--plot", args.plot)):
        if value:
            _folder_option(os.path.dirname(os.path.abspath(value)), f"the folder of {option}")
    results = run_benchmark(
        pipelines=args.pipelines, dataset=args.dataset, subjects=args.subjects,
        paradigm=args.paradigm, evaluation=args.evaluation,
        random_state=args.random_state, cache_dir=args.cache_dir, n_jobs=args.n_jobs,
        progress=not args.quiet,
    )
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        results.to_csv(args.output, index=False)
    info = results.attrs.get("chatbci", {})
    print(format_summary(summary_table(results)))
    print(f"{info.get('n_computed', 0)} subject x pipeline results computed, "
          f"{info.get('n_cached', 0)} from cache, in {info.get('seconds', 0):.1f} s"
          + (f"; scores written to {args.output}" if args.output else ""))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        score_plot(results).savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"score plot: {args.plot}")
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
    for e in events:
        parent = f"<{e.parent_id}" if e.parent_id else ""
        # Actors and summaries hold model-written text: no escape sequence
        # may reach the terminal.
        print(terminal_text(f"{e.id:>6} {e.ts:%Y-%m-%d %H:%M:%S} {e.actor[:20]:<20} "
                            f"{e.kind:<13} {parent:<6} {e.summary(args.width)}"))
    return 0


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
    files = export(args.path, formats if len(formats) > 1 or formats == "all" else formats[0],
                   curated=args.curated, out=args.out, anonymize=args.anonymize)
    for f in files if isinstance(files, list) else [files]:
        print(f)
    return 0


def _cmd_demo(args):
    from .demo import run_demo

    run_demo(args.dir, args.dataset, n_jobs=args.n_jobs, overwrite=args.overwrite)
    return 0


def _cmd_chat(args):
    from .assistant.offline import OfflineBackend
    from .assistant.session import Session

    backend = OfflineBackend() if args.offline else None
    session = Session(args.path, backend=backend, human=args.human)
    kind = ("language model " + session.backend.model if session.backend.is_llm
            else "offline assistant (rule-based, not an LLM)")
    ws = session.workspace
    print(terminal_text(f"chatbci chat: {ws.config.title} -- {ws.config.goal}"))
    print(terminal_text(f"assistant: {kind}; autonomy: {session.autonomy}. ")
          + "Type /help for commands, /quit to leave.")
    try:
        while True:
            text = _ask("you> ")
            if text is None or text.strip() in ("/quit", "/exit"):
                break
            text = text.strip()
            if not text:
                continue
            if text.startswith("/"):
                _chat_command(session, text)
                continue
            turn = _send(session, text)
            _show_artifacts(turn)
            for sugg in turn.suggestions:
                _decide_interactively(session, sugg)
    finally:
        session.close()
    print(f"journal: {ws.path / 'journal.sqlite'} ({ws.journal.head()[0]} events)")
    return 0


def _send(session, text):
    """One turn on screen: the answer streamed through the terminal filter.

    Every line the model wrote is marked (``ai> ``, then ``ai| ``), so no line
    of it can pass for one chatbci printed; what did not stream (an answer
    given whole, a failed turn, tool errors) is printed after it.
    """
    from .assistant.claims import ClaimsReport, mark_claims

    stream = TerminalStream(continuation="ai| ")
    shown = []
    checked = set()  # answers already printed with their claims check

    def on_delta(fragment):
        out = stream.feed(fragment)
        if out:
            if not shown:
                print("ai> ", end="")
            shown.append(out)
            print(out, end="", flush=True)

    def on_event(ev):
        # An answer with unsupported / contradicted claims: its marks, printed before
        # the assistant answers again (the claims check sends them back once).
        nonlocal stream
        if previous is not None:
            previous(ev)
        report = ClaimsReport.from_events([ev])
        if report is None or report.ok:
            return
        if shown:
            print(stream.flush())
            stream = TerminalStream(continuation="ai| ")
            shown.clear()
        else:
            marked = mark_claims(str(ev.payload.get("text", "")), report, legend=False)
            print(prefix_lines(terminal_text(marked).strip(), "ai> ", "ai| "))
        checked.add(ev.id)
        for line in report.notes():
            print(f"chatbci: {terminal_text(line)}")

    previous = session.on_event
    session.on_event = on_event
    try:
        turn = session.send(text, on_delta=on_delta)
    finally:
        session.on_event = previous
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


def _show_artifacts(turn):
    for path in turn.artifacts:
        print(f"     [{terminal_text(path)}]")


def _decide_interactively(session, sugg):
    import json

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
        print(f"  estimated cost: {int(estimate['fits']):,} fits, "
              + (f"about {float(seconds):.0f} s" if seconds is not None
                 else "duration unknown"))
    print(f"    {tool} {terminal_json(action.get('args', {}))}")
    prompt = f"  #{sugg.id} {tool}: approve? [y]es / [n]o / [m]odify / [s]kip: "
    while True:
        answer = (_ask(prompt) or "s").strip().lower()
        if answer in ("y", "yes"):
            turn = session.approve(sugg.id, (_ask("  rationale (optional): ") or "").strip())
        elif answer in ("n", "no"):
            why = (_ask("  why not? ") or "").strip() or "rejected in the terminal"
            turn = session.reject(sugg.id, why)
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
            why = (_ask("  why? ") or "").strip() or "modified in the terminal"
            try:
                turn = session.modify(sugg.id, changes, why)
            except ValueError as err:
                print(f"  {err}")
                continue
        elif answer in ("s", "skip"):
            print(f"  left pending (#{sugg.id})")
            return
        else:
            continue
        for notice in turn.notices:
            print(f"  chatbci: {terminal_text(notice)}")
        print(f"  {terminal_text(turn.text)}")
        for res in turn.tool_results:
            summary = res.payload.get("summary", {})
            if "scores" in summary:
                for name, sc in summary["scores"].items():
                    print(f"     {terminal_text(name):<14}{sc['mean']:.3f} ± {sc['sd']:.3f} "
                          f"(n={sc['n_subjects']})")
        _show_artifacts(turn)
        return


def _chat_command(session, text):
    cmd, _, rest = text.partition(" ")
    if cmd == "/pending":
        pending = session.workspace.journal.pending_suggestions()
        if not pending:
            print("  no pending suggestions")
        for sugg in pending:
            _decide_interactively(session, sugg)
    elif cmd == "/autonomy":
        try:
            session.set_autonomy(rest.strip())
            print(f"  autonomy: {session.autonomy}")
        except ValueError as err:
            print(f"  {err}")
    else:
        print("  /pending  decide pending suggestions\n  /autonomy suggest|assist|auto\n"
              "  /quit")


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
