"""``chatbci demo``: a whole collaborative session, offline, in about a minute.

A scripted human works with the offline assistant (rule-based, no LLM, no
API key) on a fresh workspace: lists datasets, explores a subject's ERD/ERS,
gets pipelines proposed, decides (one suggestion accepted, one modified, one
rejected, each with a rationale), benchmarks, compares with statistics, and
exports the session for a paper. Everything lands in the journal; the demo
prints where it all is.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
import time
from pathlib import Path

DATASETS = {"SimulatedMI": "1-6", "PhysionetMI": "1-6"}


def _say(who, text, width=96):
    lead = f"{who:>6} | "
    body = textwrap.fill(" ".join(str(text).split()), width=width - len(lead),
                         subsequent_indent=" " * len(lead))
    print(lead + body, flush=True)


def run_demo(directory="chatbci-demo", dataset="SimulatedMI", *, n_jobs=-1, quiet=False,
             overwrite=False):
    """Play the scripted session; return the workspace path and the exported files.

    Parameters
    ----------
    directory : path-like
        Where the demo workspace is created.
    dataset : {"SimulatedMI", "PhysionetMI"}
        PhysionetMI needs the EEGMMIDB files (``MNE_DATA``) or a connection
        for MOABB to download them.
    n_jobs : int
        Parallel jobs for the benchmark.
    quiet : bool
        Print nothing.
    overwrite : bool
        Replace an existing demo workspace in ``directory``.

    Returns
    -------
    path : pathlib.Path
        The demo workspace.
    files : list of pathlib.Path
        The exported files.
    """
    from ._quiet import library_chatter_silenced

    # The demo speaks in chatbci's words; MOABB's and MNE's log lines are not
    # for its reader (errors still show).
    with library_chatter_silenced():
        return _play(directory, dataset, n_jobs=n_jobs, quiet=quiet, overwrite=overwrite)


def _play(directory, dataset, *, n_jobs, quiet, overwrite):
    from .assistant.offline import OfflineBackend, describe_action
    from .assistant.session import Session
    from .workspace import Workspace

    if dataset not in DATASETS:
        raise ValueError(f"The demo runs on {sorted(DATASETS)}, not {dataset!r}.")
    say = (lambda *a: None) if quiet else _say
    path = Path(directory)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{path} already exists and is not empty; choose another --dir or pass "
                "--overwrite to replace the previous demo.")
        if not (path / "workspace.toml").is_file():
            raise FileExistsError(f"{path} is not a chatbci workspace; refusing to delete it.")
        shutil.rmtree(path)
    if dataset == "PhysionetMI":
        from moabb.paradigms import LeftRightImagery

        from .bci.datasets import check_data_available, get_dataset, prepare_dataset

        # Fail in a second, with the fix, rather than minutes into the session.
        ds = prepare_dataset(get_dataset("PhysionetMI"), LeftRightImagery())
        check_data_available(ds, [1, 2, 3, 4, 5, 6])

    t0 = time.perf_counter()
    subjects = DATASETS[dataset]
    ws = Workspace.create(
        path, title=f"Demo: left vs right hand imagery on {dataset}",
        goal="Find a robust left vs right hand motor-imagery decoder and document how it "
             "was chosen.",
        datasets=[dataset], subjects=subjects, evaluation="within-session", random_state=42)
    session = Session(ws, backend=OfflineBackend(), human="demo-researcher", n_jobs=n_jobs)

    def show(turn):
        """What the turn produced beside its text: scores and files."""
        for res in turn.tool_results:
            scores = _scores_line(res.payload.get("summary"))
            if scores:
                say("system", f"scores (journal #{res.id}): {scores}")
        for artifact in turn.artifacts:
            print(f"{'':>6} | file: {path.resolve() / artifact}", flush=True)

    def ask(text):
        say("human", text)
        turn = session.send(text)
        say("ai", turn.text)
        show(turn)
        return turn

    def decide(how, suggestion, rationale, changes=None):
        action = suggestion.payload["action"]
        what = describe_action(action)
        if changes:
            changed = {**action, "args": {**action.get("args", {}), **changes}}
            what += f", to: {describe_action(changed)}"
        say("human", f"[{how} suggestion #{suggestion.id}: {what}] {rationale}")
        if how == "accept":
            turn = session.approve(suggestion.id, rationale)
        elif how == "modify":
            turn = session.modify(suggestion.id, changes, rationale)
        else:
            turn = session.reject(suggestion.id, rationale)
        say("system", turn.text)
        show(turn)
        return turn

    if not quiet:
        print(f"chatbci demo: a scripted session with the offline assistant "
              f"(rule-based, no LLM) on {dataset}\n", flush=True)
    ask("Which datasets have left and right hand imagery?")
    ask(f"Explore subject 1 of {dataset}")
    proposal = ask("Suggest pipelines to start with")
    decide("accept", proposal.suggestions[0],
           "Good coverage of the three families (CSP, tangent space, MDM) on a few subjects.")
    extra = ask(f"Benchmark TS+SVM on {dataset} subjects {subjects}")
    decide("modify", extra.suggestions[0],
           "Check TS+SVM on the first three subjects before spending time on all of them.",
           {"subjects": "1-3"})
    tuned = ask("Define pipeline TS+LR-C0.1: Covariances(estimator=oas) + TangentSpace + "
                "LogisticRegression(C=0.1)")
    decide("reject", tuned.suggestions[0],
           "Tuning C by hand on the evaluation folds would bias the comparison; keep MOABB's "
           "defaults for now.")
    ask("Compare the pipelines")
    ask("Show the results so far")
    session.close()
    ws.close()

    from .export import export

    files = export(path, "all")
    files = files if isinstance(files, list) else [files]
    seconds = time.perf_counter() - t0
    if not quiet:
        print(f"\nDone in {seconds:.0f} s. Everything is in {path.resolve()}:")
        print("  workspace.toml     the study's settings")
        print("  journal.sqlite     the shared journal (chatbci log / chatbci verify)")
        print("  results/           benchmark results, figures and tables")
        print("  exports/           the paper material:")
        for f in sorted(files, key=str):
            print(f"    {Path(f).relative_to(path.resolve()) if Path(f).is_absolute() else f}")
        print(f"\nNext: chatbci chat {path}   (or in Jupyter: chatbci.chat({str(path)!r}))")
    return path, files


def _scores_line(summary):
    """``CSP+LDA 0.737 ± 0.150, ... (roc_auc, 6 subjects)`` of a benchmark result."""
    if not isinstance(summary, dict) or not isinstance(summary.get("scores"), dict):
        return None
    scores = summary["scores"]
    ranked = sorted(scores.items(), key=lambda kv: -kv[1]["mean"])
    n = max((int(sc.get("n_subjects") or 0) for sc in scores.values()), default=0)
    text = ", ".join(f"{name} {sc['mean']:.3f} ± {sc['sd']:.3f}" for name, sc in ranked)
    return text + f" ({summary.get('metric', 'score')}, {n} subjects)"


def main(argv=None):  # pragma: no cover - exercised through the CLI
    from .cli import main as cli_main

    return cli_main(["demo", *(argv or sys.argv[1:])])
