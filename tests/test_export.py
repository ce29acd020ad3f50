"""Exporting a session for a paper: every format, checked for content.

Real sessions are produced once per module: one with the offline rule-based
assistant (no LLM) and one with the real openai SDK against the local fake
server (model ``gpt-4o-mini``). A hand-written journal covers what sessions
rarely produce: two humans, LaTeX-hostile text, secrets, a MOABB dataset
with a reference, knowledge notes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chatbci.export import (
    FORMATS,
    SCHEMA,
    ExportError,
    bibtex,
    disclosure,
    export,
    load_record,
    methods_section,
    provenance,
    results_table,
)
from chatbci.export._text import escape_latex, latex_paragraphs
from chatbci.workspace import Workspace, WorkspaceNotFoundError

KEY = "test-key-" + "a1b2c3d4" * 3
CORE_KEYS = {"gramfort2013mne", "jayaram2018moabb", "aristimunha2023moabb",
             "chevallier2024moabb", "barachant_pyriemann", "pedregosa2011scikit", "chatbci"}
COMPANIONS = {
    "md": {"lr-transcript.md", "methods.md", "results.md", "ai-disclosure.md",
           "references.bib", "provenance.json"},
    "html": {"lr-transcript.html", "references.bib", "provenance.json"},
    "tex": {"lr.tex", "methods.tex", "results.tex", "references.bib", "provenance.json"},
    "json": {"lr-export.json"},
    "ipynb": {"lr.ipynb"},
}


# ---------------------------------------------------------------------------
# Helpers


def parse_bibtex(text):
    """A small, strict BibTeX parser: ``{key: (type, {field: value})}``.

    Fails on unbalanced braces, a missing comma after the key, a field
    without ``=`` or a duplicate key.
    """
    entries = {}
    pos = 0
    while True:
        at = text.find("@", pos)
        if at < 0:
            return entries
        head = re.compile(r"@(\w+)\s*\{\s*([^,\s{}]+)\s*,").match(text, at)
        assert head, f"bad entry header near {text[at:at + 60]!r}"
        etype, key = head.group(1).lower(), head.group(2)
        assert key not in entries, f"duplicate key {key}"
        depth, i = 1, head.end()
        while depth:
            assert i < len(text), f"unbalanced braces in {key}"
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        body, fields = text[head.end(): i - 1], {}
        j = 0
        while True:
            m = re.compile(r"\s*(\w+)\s*=\s*").match(body, j)
            if not m:
                assert not body[j:].strip(" ,\n"), f"junk in {key}: {body[j:]!r}"
                break
            j = m.end()
            if body[j] == "{":
                depth, k = 1, j + 1
                while depth:
                    depth += {"{": 1, "}": -1}.get(body[k], 0)
                    k += 1
                value, j = body[j + 1: k - 1], k
            else:
                n = re.compile(r"[\w.-]+").match(body, j)
                assert n, f"bad value in {key}"
                value, j = n.group(), n.end()
            fields[m.group(1).lower()] = value
            j = body.find(",", j) + 1 if "," in body[j:] else len(body)
        entries[key] = (etype, fields)
        pos = i


def method_keys(path):
    """BibTeX keys of the method references of the pipelines the journal's runs benchmarked."""
    from chatbci.export.bibtex import citation_key

    with Workspace.open(path) as ws:
        runs = ws.journal.events(kind="run")
    keys = {citation_key(c) for r in runs for spec in (r.payload.get("pipelines") or {}).values()
            for c in spec.get("citations") or []}
    assert keys, "the sessions benchmark shipped pipelines, which cite their methods"
    return keys


def all_text(folder):
    return {p.name: p.read_text(encoding="utf-8") for p in Path(folder).rglob("*")
            if p.is_file()}


def journal_counts(path):
    """Disclosure counts computed independently, straight from the journal."""
    with Workspace.open(path) as ws:
        events = ws.journal.events()
    by_id = {e.id: e for e in events}
    sugg = [e for e in events if e.kind == "suggestion" and e.actor.startswith("ai:")]
    verdicts = {"accept": 0, "reject": 0, "modify": 0}
    for d in (e for e in events if e.kind == "decision"):
        if d.parent_id in {s.id for s in sugg}:
            verdicts[d.payload["verdict"]] += 1
    calls = [e for e in events if e.kind == "tool_call"]
    ai_calls = [c for c in calls if c.actor.startswith("ai:")]
    after = [c for c in calls if c.parent_id and by_id[c.parent_id].kind == "decision"]
    runs = [e for e in events if e.kind == "run"]
    runs_after = [r for r in runs
                  if by_id[by_id[by_id[r.parent_id].parent_id].parent_id].kind == "decision"]
    return {"suggestions": len(sugg), **verdicts, "ai_calls": len(ai_calls),
            "after_decision": len(after), "runs": len(runs), "runs_after": len(runs_after)}


def compile_latex(tex_path, tmp_path, runs=2):
    """pdflatex ``tex_path`` (from its folder, so relative figures resolve)."""
    outdir = tmp_path / f"latex-{tex_path.stem}"
    outdir.mkdir()
    for _ in range(runs):
        proc = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
             f"-output-directory={outdir}", tex_path.name],
            cwd=tex_path.parent, capture_output=True, text=True, timeout=180, check=False)
        log = (outdir / f"{tex_path.stem}.log").read_text(errors="replace")
        assert proc.returncode == 0, log[-3000:]
    return outdir / f"{tex_path.stem}.pdf", log


needs_pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None,
    reason="pdflatex not installed (apt-get install texlive-latex-base "
           "texlive-latex-recommended texlive-fonts-recommended lmodern)")


# ---------------------------------------------------------------------------
# Sessions


@pytest.fixture(scope="module")
def offline_ws(tmp_path_factory):
    """A real session with the offline rule-based assistant: accept, modify, reject."""
    from chatbci.assistant.session import Session

    path = tmp_path_factory.mktemp("offline") / "s"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CHATBCI_MODEL"):
            mp.delenv(var, raising=False)
        ws = Workspace.create(path, title="LR", goal="Best left/right decoder",
                              datasets=["SimulatedMI"], subjects="1-3")
        s = Session(ws, human="ada", n_jobs=1)
        assert not s.backend.is_llm
        s.send("explore subject 1")
        t = s.send("suggest pipelines")
        s.approve(t.suggestions[0].id, "good")
        t = s.send("benchmark TS+SVM on SimulatedMI subjects 1-3")
        s.modify(t.suggestions[0].id, {"subjects": "1-2"}, "fewer first")
        t = s.send("define pipeline X: Covariances(estimator=oas) + MDM")
        s.reject(t.suggestions[0].id, "not needed")
        s.send("compare pipelines")
        s.close()
        ws.close()
    return path


@pytest.fixture(scope="module")
def llm_ws(tmp_path_factory):
    """A real session through the openai SDK against the local fake server."""
    from chatbci.assistant.llm import LLMSettings, OpenAIChat
    from chatbci.assistant.session import Session
    from chatbci.assistant.testing import FakeLLMServer, Reply

    path = tmp_path_factory.mktemp("llm") / "study"
    bench = {"tool": "run_benchmark", "args": {"pipelines": ["CSP+LDA", "TS+LR"],
                                               "dataset": "SimulatedMI", "subjects": "1-2"}}
    define = {"tool": "define_pipeline", "args": {"name": "MDM-scm", "steps": [
        {"name": "Covariances", "parameters": {"estimator": "scm"}}, {"name": "MDM"}]}}
    later = {"tool": "run_benchmark", "args": {"pipelines": ["MDM-lwf"], "subjects": "1-2"}}
    with FakeLLMServer(model="gpt-4o-mini") as srv:
        srv.script([
            Reply.tool_calls([("list_datasets", {"classes": ["left_hand", "right_hand"]})]),
            Reply.text("Several datasets have left and right hand imagery [list_datasets]."),
            Reply.tool_calls([("propose", {"action": bench, "rationale":
                                           "Compare CSP and tangent space first."})]),
            Reply.text("I propose a first benchmark of CSP+LDA and TS+LR."),
            Reply.tool_calls([("propose", {"action": define, "rationale":
                                           "An MDM variant with the sample covariance."})]),
            Reply.text("I propose an MDM variant."),
            Reply.tool_calls([("propose", {"action": later, "rationale": "Benchmark it."})]),
            Reply.text("Shall I benchmark it?"),
            Reply.tool_calls([("compare_pipelines", {})]),
            Reply.text("TS+LR and CSP+LDA compared [compare_pipelines]."),
        ])
        ws = Workspace.create(path, title="LLM study", goal="Best left/right decoder",
                              datasets=["SimulatedMI"], subjects="1-2",
                              llm={"model": "gpt-4o-mini", "base_url": srv.base_url})
        settings = LLMSettings.resolve({"model": "gpt-4o-mini", "base_url": srv.base_url},
                                       env={"OPENAI_API_KEY": KEY})
        s = Session(ws, backend=OpenAIChat(settings, backoff=0.01), human="grace", n_jobs=1)
        s.send("Which datasets have left and right hand imagery?")
        t = s.send("Propose a first benchmark")
        s.approve(t.suggestions[0].id, "ok")
        t = s.send("Define an MDM variant")
        s.modify(t.suggestions[0].id, {"name": "MDM-lwf", "steps": [
            {"name": "Covariances", "parameters": {"estimator": "lwf"}}, {"name": "MDM"}]},
            "lwf is more stable")
        t = s.send("Benchmark it")
        s.reject(t.suggestions[0].id, "later")
        s.send("Compare")
        s.close()
        ws.close()
        assert not srv.errors
    return path


NASTY = "Costs 5% & 3$ in #1 {x}_y ~z ^w \\path; ±0.05 µV, α→β, ≥ 2 — “ok” 😀 \x07"


@pytest.fixture
def hand_ws(tmp_path):
    """A hand-written journal: two humans, an LLM, nasty text, a MOABB dataset."""
    ws = Workspace.create(tmp_path / "hand", title="Hand_made & 50% study",
                          goal="Test {escaping} of $pecial text", datasets=["BNCI2014_001"])
    j = ws.journal
    j.start_session(backend="openai", model="gpt-4o-mini", is_llm=True)
    llm = {"model": "gpt-4o-mini-2024-07-18", "backend": "openai",
           "prompts": {"system": "system@v1:aaaaaaaaaaaa", "state": "state@v1:bbbbbbbbbbbb"},
           "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
           "latency_s": 0.5, "attempts": 1}
    m = j.append("message", "human:Grace Hopper", {"text": NASTY})
    j.append("message", "ai:gpt-4o-mini", {"text": "Reply to Grace Hopper: " + NASTY,
                                           "llm": llm}, m.id)
    action = {"tool": "define_pipeline", "args": {"name": "TS_LR%2", "steps": [
        {"name": "Covariances", "parameters": {"estimator": "oas"}},
        {"name": "TangentSpace"}, {"name": "LogisticRegression", "parameters": {"C": 0.1}}]}}
    sugg = j.append("suggestion", "ai:gpt-4o-mini",
                    {"action": action, "rationale": "Tangent space & LR_{0.1}", "llm": llm}, m.id)
    dec = j.append("decision", "human:ada", {"verdict": "accept", "rationale": "ada agrees"},
                   sugg.id)
    call = j.append("tool_call", "human:ada", {"tool": "define_pipeline",
                                               "args": action["args"]}, dec.id)
    j.append("tool_result", "system", {"tool": "define_pipeline", "ok": True, "summary": {
        "name": "TS_LR%2", "path": "pipelines/TS_LR%2.yml", "digest": "0123456789ab",
        "steps": ["Covariances", "TangentSpace", "LogisticRegression"]}}, call.id)
    call2 = j.append("tool_call", "ai:gpt-4o-mini",
                     {"tool": "run_benchmark", "args": {"pipelines": ["TS_LR%2"]}, "llm": llm})
    res2 = j.append("tool_result", "system", {"tool": "run_benchmark", "ok": True, "summary": {
        "dataset": "BNCI2014-001", "evaluation": "cross-session", "subjects": [1, 2],
        "scores": {"TS_LR%2": {"mean": 0.81, "sd": 0.05, "n_subjects": 2}},
        "metric": "roc_auc", "best": "TS_LR%2", "config_hash": "f" * 16}}, call2.id)
    j.append("run", "system", {
        "config_hash": "f" * 64, "scores": {"TS_LR%2": {"mean": 0.81, "sd": 0.05,
                                                        "n_subjects": 2}},
        "config": {"dataset": "BNCI2014-001", "subjects": [1, 2], "evaluation": "cross-session",
                   "random_state": 7, "pipelines": {"TS_LR%2": "0" * 64}},
        "protocol": {
            "dataset": {"name": "BNCI2014_001", "code": "BNCI2014-001",
                        "doi": "10.3389/fnins.2012.00055",
                        "reference": "Tangermann, M., Muller, K.R., Aertsen, A., Birbaumer, N., "
                                     "2012. Review of the BCI competition IV. Frontiers in "
                                     "neuroscience, 6, p.55.",
                        "n_channels": 22, "sfreq": 250.0, "n_sessions": 2, "subjects": [1, 2]},
            "paradigm": {"name": "LeftRightImagery", "classes": ["left_hand", "right_hand"],
                         "fmin": 8, "fmax": 32, "tmin": 0.5, "tmax": 2.5, "interval": [2, 6],
                         "resample": 128},
            "evaluation": {"type": "cross-session", "random_state": 7,
                           "folds": "leave one session out", "metric": "roc_auc"}},
        "pipelines": {"TS_LR%2": {"name": "TS_LR%2", "pipeline": [
            {"name": "Covariances", "from": "pyriemann.estimation",
             "parameters": {"estimator": "oas"}},
            {"name": "LogisticRegression", "from": "sklearn.linear_model",
             "parameters": {"C": 0.1}}]}}}, res2.id)
    note = ws.knowledge.add("Mu rhythm", "ERD in 8-13 Hz", author="ai:gpt-4o-mini",
                            sources=["10.1016/x"])
    ws.knowledge.verify(note.id, by="human:Grace Hopper")
    j.append("error", "system", {"message": "disk {full} 100%", "type": "OSError"})
    j.end_session()
    yield ws
    ws.close()


# ---------------------------------------------------------------------------
# All formats of a real offline session


def test_every_format_writes_the_documented_files(offline_ws):
    paths = export(offline_ws, "all")
    out = offline_ws / "exports"
    assert [p.name for p in paths] == ["lr-transcript.md", "lr-transcript.html", "lr.tex",
                                       "lr-export.json", "lr.ipynb"]
    assert {p.name for p in out.iterdir()} == set().union(*COMPANIONS.values())
    # One format returns one path; files are shared and re-written identically.
    before = all_text(out)
    assert export(offline_ws, "md") == out / "lr-transcript.md"
    assert all_text(out) == before  # deterministic: same journal, same bytes


def test_methods_name_datasets_evaluation_pipelines_and_software(offline_ws):
    text = methods_section(offline_ws, "md")
    with Workspace.open(offline_ws) as ws:
        runs = ws.journal.events(kind="run")
        start = ws.journal.events(kind="session_start")[-1].payload["provenance"]
    proto = runs[-1].payload["protocol"]
    assert "SimulatedMI" in text and proto["dataset"]["code"] in text
    assert "subjects 1-3 (n = 3)" in text  # union over both runs
    assert "128 Hz" in text and "24 EEG channels" in text
    assert "within-session evaluation (5-fold stratified CV per session)" in text
    assert "`roc_auc`" in text and "random_state = 42" in text
    assert "`LeftRightImagery`" in text and "left hand vs. right hand" in text
    assert "0 to 4 s after the cue" in text and "not resampled" in text
    for name, spec in runs[-1].payload["pipelines"].items():
        assert f"**{name}**" in text
        for step in spec["pipeline"]:
            assert f"`{step['name']}` ({step['from']}" in text
    assert "estimator = oas" in text and "C = 1.0" in text and "kernel = linear" in text
    assert "permutation" in text and "standardised mean difference" in text
    pk = start["packages"]
    for label, dist in [("MNE-Python", "mne"), ("MOABB", "moabb"), ("pyRiemann", "pyriemann"),
                        ("scikit-learn", "scikit-learn"), ("chatbci", "chatbci")]:
        assert f"{label} {pk[dist]}" in text
    assert "offline rule-based assistant" in text and "not a language model" in text
    assert "[@gramfort2013mne]" in text and "[@chatbci]" in text
    tex = methods_section(offline_ws, "tex")
    assert r"\section{Methods}" in tex and r"\cite{jayaram2018moabb,aristimunha2023moabb}" in tex
    assert r"\texttt{roc\_auc}" in tex
    assert "<h2>Methods</h2>" in methods_section(offline_ws, "html")


def test_disclosure_counts_match_the_journal(offline_ws):
    expected = journal_counts(offline_ws)
    assert expected == {"suggestions": 3, "accept": 1, "reject": 1, "modify": 1,
                        "ai_calls": 2, "after_decision": 2, "runs": 2, "runs_after": 2}
    d = disclosure(offline_ws)
    c = d["counts"]
    assert c["suggestions"] == expected["suggestions"]
    assert {k: c["decisions"][k] for k in ("accept", "reject", "modify")} == {
        k: expected[k] for k in ("accept", "reject", "modify")}
    assert c["undecided"] == 0 and c["decisions"]["total"] == 3
    assert c["tool_calls"]["by_ai"] == expected["ai_calls"]
    assert c["tool_calls"]["after_human_decision"] == expected["after_decision"]
    assert c["benchmark_runs"] == {"total": 2, "by_ai": 0, "after_human_decision": 2,
                                   "by_human": 0}
    assert [r["origin"] for r in d["runs"]] == ["ai-suggested-accepted",
                                                "ai-suggested-modified"]
    assert [x["verdict"] for x in d["decisions"]] == ["accept", "modify", "reject"]
    assert d["decisions"][1]["changed"] == ["subjects"]
    # Only the offline assistant: the disclosure says no LLM was used.
    assert d["llm_used"] is False
    assert [a["model"] for a in d["assistants"]] == ["offline-rules"]
    assert "No large language model (LLM) was used" in d["statement"]
    assert "accepted 1, modified 1 and rejected 1" in d["statement"]
    md = (offline_ws / "exports" / "ai-disclosure.md")
    export(offline_ws, "md")
    text = md.read_text()
    assert "AI suggestions: 3 (accepted 1, modified 1, rejected 1, undecided 0)" in text
    assert "| #10 | Offline assistant (rule-based) |" in text


def test_bibtex_parses_and_holds_the_expected_keys(offline_ws):
    entries = parse_bibtex(bibtex(offline_ws))
    # SimulatedMI cites chatbci; no LLM entry offline; each benchmarked pipeline's methods.
    assert set(entries) == CORE_KEYS | method_keys(offline_ws)
    assert entries["gramfort2013mne"][1]["doi"] == "10.3389/fnins.2013.00267"
    assert entries["jayaram2018moabb"][1]["doi"] == "10.1088/1741-2552/aadea0"
    assert entries["aristimunha2023moabb"][1]["doi"] == "10.5281/zenodo.10034223"
    assert entries["barachant_pyriemann"][1]["doi"] == "10.5281/zenodo.593816"
    assert entries["pedregosa2011scikit"][1]["pages"] == "2825--2830"
    with Workspace.open(offline_ws) as ws:
        pk = ws.journal.events(kind="session_start")[-1].payload["provenance"]["packages"]
    assert entries["aristimunha2023moabb"][1]["note"] == f"Version {pk['moabb']}"
    assert all("title" in fields and "year" in fields for _, fields in entries.values())


def test_results_table_markdown_and_booktabs(offline_ws):
    with Workspace.open(offline_ws) as ws:
        run = ws.journal.events(kind="run")[-1]
        comp = ws.journal.events(kind="tool_result")[-1].payload["summary"]["comparisons"][0]
    md = results_table(offline_ws, "md")
    for name, s in run.payload["scores"].items():
        assert f"{s['mean']:.3f} ± {s['sd']:.3f}" in md
        assert name in md
    best = comp["best"]
    assert f"**{best}** (best)" in md
    for v in comp["vs_best"]:
        assert re.search(rf"\| {re.escape(v['worse'])} \|[^\n]*\| {v['p']:.4f} \|", md)
    assert re.search(rf"runs (#\d+, )*#{run.id}\b", md)
    # Tested on the subjects the ranked pipelines share (like for like), with the test's n.
    assert f"permutation test, {comp['n_subjects']} subjects" in md
    tex = results_table(offline_ws, "tex")
    assert tex.count(r"\toprule") == 1 and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"$\pm$" in tex and "±" not in tex and rf"\textbf{{{escape_latex(best)}}}" in tex
    with pytest.raises(ExportError, match="use 'md', 'tex' or 'html'"):
        results_table(offline_ws, "docx")


def test_transcript_labels_actors_and_curated_drops_chatter(offline_ws):
    export(offline_ws, ["md", "html"])
    md = (offline_ws / "exports" / "lr-transcript.md").read_text()
    assert "#### #5 · Human (ada)" in md and "explore subject 1" in md
    assert "Offline assistant (rule-based)" in md and "· System ·" in md
    assert "> Offline assistant (rule-based, not an LLM):" in md  # AI turns are quoted
    assert "AI (" not in md  # the offline backend is never presented as an LLM
    assert "tool call `run_benchmark(dataset=SimulatedMI" in md
    assert "| TS+LR | 0.834 ± 0.079 | 3 |" in md  # result table of run_benchmark
    assert "](../results/figures/" in md  # figures by relative path
    figure = re.search(r"\]\((\.\./results/figures/\w+\.png)\)", md).group(1)
    assert (offline_ws / "exports" / figure).resolve().is_file()

    curated = export(offline_ws, "md", curated=True)
    assert curated.name == "lr-transcript-curated.md"
    text = curated.read_text()
    assert "explore subject 1" not in text and "suggest pipelines" not in text
    for sid in (10, 17, 24):
        assert f"**Suggestion #{sid}**" in text
    assert "Decision on suggestion #17: modified" in text and "fewer first" in text
    assert "Result of run_benchmark" in text and "Result of compare_pipelines" in text
    assert "Session started" not in text


def test_html_is_self_contained_and_distinguishes_actors(offline_ws):
    path = export(offline_ws, "html")
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>")
    # The reference list links DOIs and URLs for the reader (links, never resources).
    refs = html.split('<section id="references">')[1].split("</section>")[0]
    assert all(u.startswith("https://") for u in re.findall(r'href="([^"#]*)"', refs))
    page = html.replace(refs, "")
    for bad in ("<script", "<link", "@import", "url(", 'src="http', "href=\"http",
                "src='http"):
        assert bad not in page
    links = re.findall(r'\s(?:src|href)="([^"]*)"', page)
    assert [u for u in links if not u.startswith(("#", "data:image/png;base64,"))] == []
    with Workspace.open(offline_ws) as ws:
        figures = [p for e in ws.journal.events(kind="tool_result")
                   for p in e.payload["artifacts"] if p.endswith(".png")]
    assert html.count('src="data:image/png;base64,') == len(figures) == 4
    assert 'class="entry role-human kind-message"' in html
    assert 'class="entry role-offline kind-suggestion"' in html
    assert 'class="entry role-system kind-tool_result"' in html
    assert "<details><summary><span class=\"action\">run_benchmark(" in html
    assert 'id="methods"' in html and 'id="ref-schalk2004bci2000"' not in html
    assert 'id="ref-chatbci"' in html and "<table class=\"data results\">" in html


def test_json_export_validates_against_the_published_schema(offline_ws):
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    full = json.loads(export(offline_ws, "json").read_text())
    jsonschema.validate(full, schema, cls=jsonschema.Draft202012Validator)
    with Workspace.open(offline_ws) as ws:
        head_id, head_hash = ws.journal.head()
    assert len(full["events"]) == head_id and full["events"][-1]["hash"] == head_hash
    assert full["provenance"]["journal"]["head_hash"] == head_hash
    assert full["workspace"] == {"title": "LR", "goal": "Best left/right decoder"}
    assert set(full["bibtex_keys"]) == set(parse_bibtex(full["bibtex"])) == (
        CORE_KEYS | method_keys(offline_ws))
    assert full["disclosure"]["counts"]["suggestions"] == 3
    assert {e["actor_label"] for e in full["events"]} == {
        "System", "Human (ada)", "Offline assistant (rule-based)"}
    curated = json.loads(export(offline_ws, "json", curated=True).read_text())
    jsonschema.validate(curated, schema, cls=jsonschema.Draft202012Validator)
    assert curated["curated"] and 0 < len(curated["events"]) < len(full["events"])
    assert {e["kind"] for e in curated["events"]} <= {"suggestion", "decision", "tool_call",
                                                      "tool_result", "run"}
    bad = dict(full, events=[dict(full["events"][0], kind="gossip")])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema, cls=jsonschema.Draft202012Validator)


def test_notebook_is_valid_nbformat_and_replays_tool_calls(offline_ws):
    import nbformat

    nb = nbformat.read(str(export(offline_ws, "ipynb")), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.execution_count is None for c in code)
    assert "Workspace.open(WORKSPACE)" in code[0].source
    with Workspace.open(offline_ws) as ws:
        calls = ws.journal.events(kind="tool_call")
        runs = ws.journal.events(kind="run")
    assert len(code) == 1 + len(calls)
    replay = "\n".join(c.source for c in code[1:])
    for call in calls:
        assert f"TOOLS[{call.payload['tool']!r}].run(ctx," in replay
    for run in runs:
        assert run.payload["config_hash"] in replay
    assert "'random_state': 42" in replay and "'subjects': '1-2'" in replay
    assert any("**Suggestion #17**" in c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.slow
def test_notebook_runs_and_reproduces_the_journal_configs(offline_ws, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    copy = tmp_path / "copy"
    shutil.copytree(offline_ws, copy)
    path = export(copy, "ipynb")
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                  for o in c.get("outputs", []))
    assert out.count("same configuration as journal event") == 2
    assert "False" not in out


@needs_pdflatex
def test_latex_document_compiles_with_pdflatex(offline_ws, tmp_path):
    tex = export(offline_ws, "tex")
    text = tex.read_text()
    assert text.startswith("\\documentclass") and "\\usepackage{booktabs}" in text
    assert "\\includegraphics" in text and "\\begin{thebibliography}" in text
    pdf, log = compile_latex(tex, tmp_path)
    assert pdf.stat().st_size > 10_000
    assert not re.search(r"Citation `[^']+' on page \d+ undefined", log)


# ---------------------------------------------------------------------------
# A session driven by a language model


def test_llm_session_names_the_model_everywhere(llm_ws):
    d = disclosure(llm_ws)
    assert d["llm_used"] is True
    (a,) = d["assistants"]
    assert a["model"] == "gpt-4o-mini" and a["is_llm"] and a["versions"] == ["gpt-4o-mini"]
    assert a["provider"].startswith("local OpenAI-compatible server at 127.0.0.1")
    assert all(re.fullmatch(r"(system|state)@v\d+:[0-9a-f]{12}", p)
               for p in d["prompt_templates"]) and len(d["prompt_templates"]) == 2
    assert "large language model gpt-4o-mini" in d["statement"]
    assert "No large language model" not in d["statement"]
    expected = journal_counts(llm_ws)
    assert expected == {"suggestions": 3, "accept": 1, "reject": 1, "modify": 1,
                        "ai_calls": 2, "after_decision": 2, "runs": 1, "runs_after": 1}
    assert d["counts"]["tool_calls"]["by_ai_per_tool"] == {"compare_pipelines": 1,
                                                           "list_datasets": 1}
    assert d["pipelines"] == [{"name": "MDM-lwf", "origin": "ai-suggested-modified",
                               "event_id": 20, "run_by": "Human (grace)",
                               "suggestion_id": 17, "suggested_by": "AI (gpt-4o-mini)"}]

    entries = parse_bibtex(bibtex(llm_ws))
    assert set(entries) == CORE_KEYS | method_keys(llm_ws) | {"llm_gpt_4o_mini"}
    etype, fields = entries["llm_gpt_4o_mini"]
    assert etype == "misc" and fields["title"] == "{gpt-4o-mini}"  # plain BibTeX reads it
    assert "127.0.0.1" in fields["howpublished"]
    assert fields["note"].startswith("Model version reported by the API: gpt-4o-mini;")

    methods = methods_section(llm_ws)
    assert "large language model gpt-4o-mini [@llm_gpt_4o_mini]" in methods
    paths = export(llm_ws, ["md", "html"])
    md, html = (p.read_text() for p in paths)
    assert "#### #8 · AI (gpt-4o-mini)" in md and "Human (grace)" in md
    assert 'class="entry role-ai kind-suggestion"' in html and "role-offline" not in html.split(
        "<section id=\"transcript\">")[1].split("</p>")[1]


# ---------------------------------------------------------------------------
# Hand-written journals: escaping, anonymisation, secrets


def test_escape_latex_covers_specials_and_unicode():
    assert escape_latex("_ % & # $ { } ~ ^ \\") == (
        r"\_ \% \& \# \$ \{ \} \textasciitilde{} \textasciicircum{} \textbackslash{}")
    assert escape_latex("0.8 ± 0.1 µV") == r"0.8 $\pm$ 0.1 $\mu$V"
    assert escape_latex("α→β") == r"$\alpha$$\rightarrow$$\beta$"
    assert escape_latex("café naïve") == "café naïve"  # pdflatex reads Latin-1 letters
    assert escape_latex("😀 ok\x07") == "[U+1F600] ok"
    assert latex_paragraphs("a\nb\n\nc") == "a \\newline\nb\n\nc"


def test_md_code_spans_survive_backticks():
    from chatbci.export._text import md_code

    assert md_code("f(x=1)") == "`f(x=1)`"
    assert md_code("a `b` c") == "`` a `b` c ``"


# A 1x1 PNG.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4"
                    "890000000d4944415478da63f8cfc0f01f0005000201a2dd2b3f0000000049454e"
                    "44ae426082")


def test_html_embeds_each_figure_once(hand_ws):
    fig = hand_ws.artifacts.put_bytes(PNG, ".png")
    ids = []
    for subject in (1, 2):
        call = hand_ws.journal.append("tool_call", "ai:gpt-4o-mini", {
            "tool": "explore_subject", "args": {"subject": subject}})
        ids.append(hand_ws.journal.append("tool_result", "system", {
            "tool": "explore_subject", "ok": True, "artifacts": [fig],
            "summary": {"dataset": "SimulatedMI", "subject": subject}}, call.id).id)
    html = export(hand_ws, "html").read_text()
    assert html.count("data:image/png;base64,") == 1
    assert f'the same figure as in <a href="#fig-{Path(fig).stem}">event #{ids[0]}</a>' in html


@needs_pdflatex
def test_hostile_text_compiles_and_is_escaped(hand_ws, tmp_path):
    tex = export(hand_ws, "tex", out=tmp_path / "out")
    text = tex.read_text()
    assert tex.name == "hand-made-50-study.tex"
    assert r"Costs 5\% \& 3\$ in \#1 \{x\}\_y" in text and r"$\pm$0.05 $\mu$V" in text
    assert r"\title{Hand\_made \& 50\% study}" in text
    compile_latex(tex, tmp_path)


def test_generic_dataset_citation_and_methods_facts(hand_ws):
    entries = parse_bibtex(bibtex(hand_ws))
    assert "tangermann2012_bnci2014001" in entries
    _, fields = entries["tangermann2012_bnci2014001"]
    assert fields["doi"] == "10.3389/fnins.2012.00055" and fields["year"] == "2012"
    assert fields["title"] == "{Review of the BCI competition IV}"
    assert fields["author"].startswith("Tangermann, M. and Muller, K.R.")
    assert "llm_gpt_4o_mini" in entries
    assert "gpt-4o-mini-2024-07-18" in entries["llm_gpt_4o_mini"][1]["note"]
    assert entries["llm_gpt_4o_mini"][1]["author"] == "{OpenAI}"
    assert entries["llm_gpt_4o_mini"][1]["howpublished"].endswith("served by OpenAI")
    text = methods_section(hand_ws)
    assert "band-pass filtered from 8 to 32 Hz" in text
    assert ("2.5 to 4.5 s after the cue for BNCI2014_001 (the dataset's trial interval is "
            "2–6 s)") in text
    assert "resampled to 128 Hz" in text and "cross-session evaluation" in text
    assert "[@tangermann2012_bnci2014001]" in text and "random_state = 7" in text
    assert "proposed by AI (gpt-4o-mini) and accepted by Human (ada)" not in text  # not run
    d = disclosure(hand_ws)
    assert d["counts"]["knowledge_notes"] == {"by_ai": 1, "by_human": 0,
                                              "ai_notes_verified_by_human": 1}
    assert d["counts"]["benchmark_runs"]["by_ai"] == 1
    assert d["assistants"][0]["tokens"]["total_tokens"] == 360
    assert d["humans"] == ["Human (Grace Hopper)", "Human (ada)"]


def test_anonymize_replaces_human_names_in_every_format(hand_ws):
    paths = export(hand_ws, "all", anonymize=True)
    assert all(p.parent == hand_ws.path / "exports" / "anonymized" for p in paths)
    files = all_text(hand_ws.path / "exports" / "anonymized")
    # The LLM was prompted: the prompt templates are supplementary material.
    assert "ai-prompt-templates.md" in files
    assert len(files) == len(set().union(*COMPANIONS.values())) + 1
    for name, text in files.items():
        # (Grace Xu is one of MOABB's authors, cited by name.)
        text = re.sub(r"Grace Xu|Xu, Grace", "", text)
        assert "Grace" not in text and "Hopper" not in text, name
        assert not re.search(r"\bada\b", text), name
    md = files["hand-made-50-study-transcript.md"]
    assert "#### #5 · Human 1" in md and "Reply to Human 1:" in md
    assert "· Human 2 ·" in md and "Human 2 agrees" in md
    doc = json.loads(files["hand-made-50-study-export.json"])
    assert doc["anonymized"] and doc["disclosure"]["humans"] == ["Human 1", "Human 2"]
    verify = next(e for e in doc["events"] if e["payload"].get("op") == "verify")
    assert verify["actor"] == "human:Human 1" and verify["actor_label"] == "Human 1"
    # The original export is untouched.
    assert "Grace Hopper" in export(hand_ws, "md").read_text()


def test_no_secret_reaches_an_export(hand_ws, monkeypatch):
    secret_env = "env-secret-" + "Qx7" * 8  # not key-shaped: only the env var knows it
    key_shaped = "sk-" + "Zq9" * 12
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    hand_ws.journal.append("message", "human:ada", {"text": f"my token is {secret_env}"})
    # A key typed into workspace.toml by hand (the workspace itself never writes one).
    toml = hand_ws.path / "workspace.toml"
    toml.write_text(toml.read_text().replace("Test {escaping}", f"Test {key_shaped}"))
    monkeypatch.setenv("OPENAI_API_KEY", secret_env)
    with Workspace.open(hand_ws.path) as ws:
        assert key_shaped in ws.config.goal
        paths = export(ws, "all")
    assert len(paths) == len(FORMATS)
    for path in (hand_ws.path / "exports").rglob("*"):
        data = path.read_bytes()
        assert secret_env.encode() not in data and key_shaped.encode() not in data, path
    assert "[REDACTED]" in (hand_ws.path / "exports" / "provenance.json").read_text()


# ---------------------------------------------------------------------------
# API, errors, provenance, dependencies


def test_provenance_matches_journal_verify(offline_ws):
    prov = provenance(offline_ws)
    with Workspace.open(offline_ws) as ws:
        report = ws.journal.verify()
        starts = ws.journal.events(kind="session_start")
    assert report.ok and prov["journal"]["verified"] is True
    assert prov["journal"]["head_hash"] == report.head_hash
    assert prov["journal"]["n_events"] == report.n_events
    assert prov["software"]["packages"] == starts[-1].payload["provenance"]["packages"]
    assert [s["session_id"] for s in prov["sessions"]] == [s.session_id for s in starts]
    assert prov["sessions"][-1]["is_llm"] is False
    assert prov["workspace"]["random_state"] == 42 and prov["export"]["anonymized"] is False


def test_a_tampered_journal_is_exported_but_flagged(hand_ws):
    import sqlite3

    path = hand_ws.path
    hand_ws.close()
    con = sqlite3.connect(path / "journal.sqlite")
    con.execute("""UPDATE events SET payload = '{"text":"edited"}' WHERE id = 5""")
    con.commit()
    con.close()
    prov = provenance(path)
    assert prov["journal"]["verified"] is False
    assert "BROKEN at event 5" in prov["journal"]["verify_report"]
    html = export(path, "html").read_text()
    assert "hash chain NOT verified" in html


def test_clear_errors(offline_ws, tmp_path):
    with pytest.raises(ExportError, match=r"unknown export format\(s\) \['docx'\]; use one or "
                                          r"more of md, html, tex, json, ipynb or 'all'"):
        export(offline_ws, "docx")
    with pytest.raises(ExportError, match="no export format"):
        export(offline_ws, [])
    with pytest.raises(WorkspaceNotFoundError, match="not a chatbci workspace"):
        export(tmp_path / "nowhere", "md")
    with pytest.raises(ExportError, match="unknown text format"):
        methods_section(offline_ws, "rtf")


def test_record_is_read_once_and_reused(offline_ws, tmp_path):
    record = load_record(offline_ws)
    assert methods_section(record) == methods_section(offline_ws)
    assert bibtex(record) == bibtex(offline_ws)
    path = export(offline_ws, "json", out=tmp_path / "elsewhere")
    assert path == (tmp_path / "elsewhere" / "lr-export.json").resolve()
    with Workspace.open(offline_ws) as ws:
        n = len(ws.journal)
        export(ws, "md", out=tmp_path / "again")  # exporting never writes to the journal
        assert len(ws.journal) == n and ws.journal.verify().ok


def test_export_imports_only_the_workspace_layer():
    code = ("import sys, chatbci.export as e; e.FORMATS; "
            "bad = sorted(m for m in sys.modules if m.startswith(('chatbci.bci', "
            "'chatbci.assistant', 'mne', 'moabb', 'sklearn', 'pyriemann', 'openai'))); "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------
# Real data


@pytest.mark.realdata
@pytest.mark.slow
def test_physionet_session_export_cites_physionet(physionet_data, tmp_path, monkeypatch):
    from chatbci.assistant.session import Session

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ws = Workspace.create(tmp_path / "physio", title="PhysioNet LR",
                          goal="Left vs right on PhysioNet", datasets=["PhysionetMI"],
                          subjects="1-2")
    s = Session(ws, human="ada", n_jobs=1)
    t = s.send("benchmark CSP+LDA and TS+LR on PhysionetMI subjects 1-2")
    assert t.suggestions, t.text
    s.approve(t.suggestions[0].id, "go")
    s.close()
    entries = parse_bibtex(bibtex(ws))
    assert {"schalk2004bci2000", "goldberger2000physiobank"} <= set(entries)
    assert entries["schalk2004bci2000"][1]["doi"] == "10.1109/TBME.2004.827072"
    text = methods_section(ws)
    assert "PhysioNet EEG Motor Movement/Imagery dataset" in text
    assert "64 EEG channels" in text and "160 Hz" in text and "subjects 1-2 (n = 2)" in text
    assert "[@schalk2004bci2000; @goldberger2000physiobank]" in text
    paths = export(ws, "all")
    assert len(paths) == 5
    ws.close()


def test_cli_export_writes_the_requested_formats(offline_ws, tmp_path, capsys):
    from chatbci.cli import main

    assert main(["export", str(offline_ws), "--format", "md,json", "--out",
                 str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.split()
    # Every file written is listed: the transcript, the JSON and the md companions.
    assert sorted(printed) == sorted(str(p) for p in (tmp_path / "out").iterdir())
    assert {Path(p).name for p in printed} == COMPANIONS["md"] | COMPANIONS["json"]
    assert main(["export", str(offline_ws), "--format", "docx"]) == 2
    assert "docx" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Layout: tables that fit, figures with captions where the text puts them

HASH_NAME = re.compile(r"[0-9a-f]{32,}\.png|results/figures/")


def _section(text, start, end):
    return text.split(start, 1)[1].split(end, 1)[0]


@needs_pdflatex
def test_pdf_tables_fit_and_figures_are_captioned_in_place(offline_ws, tmp_path):
    tex_path = export(offline_ws, "tex", out=tmp_path / "out")
    tex = tex_path.read_text()
    pdf, log = compile_latex(tex_path, tmp_path)
    # No table or figure wider than the text: the suggestions table's columns
    # used to run into each other, the results table past the margin.
    assert not re.findall(r"Overfull \\hbox \([\d.]+pt too wide\)", log), \
        re.findall(r"Overfull \\hbox.*\n.*", log)
    # Every included figure is a numbered figure with a caption saying what it
    # shows (not a hash file name).
    figures = re.findall(r"\\begin\{figure\}\[H\](.*?)\\end\{figure\}", tex, re.S)
    assert len(figures) == tex.count(r"\includegraphics") >= 4
    for body in figures:
        caption = re.search(r"\\caption\{(.*)\}", body).group(1)
        assert len(caption) > 60 and not HASH_NAME.search(caption), caption
        assert "journal events" in caption
    # The Results section holds its table and the comparison figure, and stays
    # with them on one page (the table used to float to the next one).
    results = _section(tex, r"\section{Results}", r"\section{")
    assert r"\begin{table}[H]" in results and r"\includegraphics" in results
    assert "against" in results  # the paired plot of the comparison
    aux = (pdf.parent / f"{tex_path.stem}.aux").read_text()
    page = dict(re.findall(r"\\newlabel\{(sec:results|tab:chatbci-results)\}\{\{[^}]*\}\{(\d+)\}",
                           aux))
    assert page["sec:results"] == page["tab:chatbci-results"]


def test_html_figures_captioned_and_provenance_for_a_reader(offline_ws):
    html = export(offline_ws, "html").read_text()
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html, re.S)
    assert len(captions) >= 4
    for caption in captions:
        assert re.match(r"<strong>Figure \d+", caption)
        assert not HASH_NAME.search(caption) and "journal events" in caption
    # The ERD/ERS maps say what they show, from the explore_subject result.
    assert any("ERD/ERS maps of SimulatedMI subject 1" in c for c in captions)
    results = _section(html, '<section id="results">', "</section>")
    assert "<figure id=" in results and "data:image/png;base64," in results
    assert "Shown in <a href=\"#fig-" in html  # the transcript links to it, not a copy
    prov = _section(html, '<section id="provenance">', "</section>")
    assert "<pre>" not in prov and '{"' not in prov and '"head_hash"' not in prov
    with Workspace.open(offline_ws) as ws:
        head = ws.journal.events()[-1]
    assert f"<dt>Head hash</dt><dd><code>{head.hash}</code></dd>" in prov
    assert re.search(r"<tr><td>moabb</td><td>[\d.]+</td></tr>", prov)
    assert "offline-rules (rule-based, not an LLM)" in prov


def test_markdown_figures_have_captions(offline_ws, tmp_path):
    md = export(offline_ws, "md", out=tmp_path / "out").read_text()
    images = re.findall(r"!\[(.*?)\]\((.*?)\)\n\n\*(Figure \d+\. .*?)\*\n", md)
    assert len(images) >= 4
    for alt, path, caption in images:
        assert (tmp_path / "out" / path).resolve().is_file()
        assert not HASH_NAME.search(caption) and not HASH_NAME.search(alt)


def test_ai_text_does_not_place_figures_it_cannot_see(offline_ws):
    # The offline assistant said "Figures are shown below" while every view
    # shows them with the tool result, above its message.
    with Workspace.open(offline_ws) as ws:
        texts = [e.payload.get("text", "") for e in ws.journal.events(kind="message")
                 if e.actor.startswith("ai:")]
    assert any("explore_subject" in t for t in texts)
    assert not [t for t in texts if re.search(r"\b(shown|see) (below|above)\b", t, re.I)]


def test_latex_cells_wrap_code_and_tables_fit():
    from chatbci.export._text import latex_cell, latex_colspec, latex_table

    cell = latex_cell('run_benchmark(dataset=SimulatedMI, pipelines=["CSP+LDA"]) 0.834')
    assert r"\allowbreak{}" in cell and "0.834" in cell  # numbers are never split
    assert cell.replace(r"\allowbreak{}", "") == escape_latex(
        'run_benchmark(dataset=SimulatedMI, pipelines=["CSP+LDA"]) 0.834')
    spec = latex_colspec([3, 1, 1], "lrr")
    fractions = [float(f) for f in re.findall(r"\\dimexpr ([\d.]+)\\linewidth", spec)]
    assert sum(fractions) <= 1.0 and fractions[0] > fractions[1]
    assert spec.count(r"\hspace{0pt}") == 3  # first words may hyphenate
    short = latex_table(["A", "B"], [["1", "2"]], caption="Two columns")
    assert r"\begin{tabular}{ll}" in short and r"\begin{table}[H]" in short
    wide = latex_table(["Action", "Verdict"], [["x" * 120, "ok"]])
    assert r"p{\dimexpr" in wide and r"\begin{table}" not in wide
    with pytest.raises(ValueError, match="alignment"):
        latex_colspec([1], "x")
