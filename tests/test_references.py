"""References, methods reporting and the AI-use disclosure of an export (issue 12, part D).

A hand-written journal (no computation, so each test takes seconds): a
PhysioNet benchmark run whose pipelines cite their methods (shipped DOIs, an
unknown DOI and a URL), language-model calls with journaled sampling
parameters and prompt-template references (one current, one stale), and a
dataset reference full of LaTeX specials. The exported ``references.bib`` is
compiled with plain BibTeX and with biblatex + biber.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from chatbci.export import bib_entries, disclosure, export, load_record, methods_section
from chatbci.export._text import count_phrase
from chatbci.export.bibtex import citation_key, format_references, release_year
from chatbci.assistant.session import assistant_manifest
from chatbci.workspace import Workspace

CITATIONS = ["https://doi.org/10.1007/BF01129656", "https://doi.org/10.1109/MSP.2008.4408441"]
OWN_CITATIONS = ["https://example.org/methods/a_b%20c#x", "doi:10.1234/Own_Method.2020"]
PARAMS = {"temperature": 0.2, "seed": 7, "max_tokens": 800, "max_tokens_param": "max_tokens",
          "stream": True, "tool_calls": "native", "tool_choice": "auto"}


def _prompt_refs():
    from chatbci.assistant import prompts

    return {"system": prompts.load("system").ref, "state": "state@v0:0123456789ab"}


def _llm(request, ts_model="gpt-4o-mini-2024-07-18"):
    return {"request": request, "model": ts_model, "backend": "openai",
            "prompts": _prompt_refs(),
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            "params": PARAMS}


def _run_payload(pipelines):
    return {
        "config_hash": "e" * 64,
        "scores": {name: {"mean": 0.7, "sd": 0.1, "n_subjects": 2} for name in pipelines},
        "config": {"dataset": "PhysionetMotorImagery", "subjects": [1, 2],
                   "evaluation": "within-session", "random_state": 42,
                   "pipelines": {name: "0" * 64 for name in pipelines}},
        "protocol": {
            "dataset": {"name": "PhysionetMI", "code": "PhysionetMotorImagery",
                        "doi": "10.1109/TBME.2004.827072",
                        "reference": "Schalk, G. & 50% {x}_y, 2004. BCI2000.",
                        "n_channels": 64, "sfreq": 160.0, "n_sessions": 1,
                        "subjects": [1, 2]},
            "paradigm": {"name": "LeftRightImagery", "classes": ["left_hand", "right_hand"],
                         "fmin": 8, "fmax": 32, "filters": [[8, 32]], "tmin": 0.0,
                         "tmax": None, "interval": [0, 3], "resample": None},
            "evaluation": {"type": "within-session", "random_state": 42,
                           "folds": "5-fold stratified CV per session", "metric": "roc_auc"}},
        "pipelines": pipelines,
    }


@pytest.fixture
def study(tmp_path):
    """An LLM-assisted PhysioNet study, written event by event."""
    ws = Workspace.create(tmp_path / "study", title="Refs study", goal="Cite it right",
                          datasets=["PhysionetMI"])
    j = ws.journal
    # As a Session does: the prompt templates and tool catalog, stored and named.
    j.start_session(backend="openai", model="gpt-4o-mini", is_llm=True,
                    assistant_manifest=assistant_manifest(ws))
    m = j.append("message", "human:ada", {"text": "Benchmark CSP+LDA and mine"})
    # One model call (request r1) produced two events: its metadata is counted once.
    j.append("message", "ai:gpt-4o-mini", {"text": "Planning.", "llm": _llm("r1")}, m.id)
    call = j.append("tool_call", "ai:gpt-4o-mini",
                    {"tool": "list_datasets", "args": {}, "llm": _llm("r1")}, m.id)
    j.append("tool_result", "system", {"tool": "list_datasets", "ok": True,
                                       "summary": {"n": 1}}, call.id)
    call = j.append("tool_call", "human:ada", {"tool": "run_benchmark", "args": {
        "pipelines": ["CSP+LDA", "Mine"], "dataset": "PhysionetMI", "subjects": "1-2"}}, m.id)
    res = j.append("tool_result", "system", {"tool": "run_benchmark", "ok": True,
                                             "summary": {"best": "CSP+LDA"}}, call.id)
    step = {"name": "CSP", "from": "pyriemann.spatialfilters", "parameters": {"nfilter": 6}}
    j.append("run", "system", _run_payload({
        "CSP+LDA": {"name": "CSP+LDA", "citations": CITATIONS, "pipeline": [step]},
        "Mine": {"name": "Mine", "citations": OWN_CITATIONS, "pipeline": [step]}}), res.id)
    j.append("message", "ai:gpt-4o-mini", {"text": "Done.", "llm": _llm("r2")}, m.id)
    j.end_session()
    yield ws
    ws.close()


# ---------------------------------------------------------------------------
# The .bib compiles with plain BibTeX and with biblatex + biber

needs_bibtex = pytest.mark.skipif(
    shutil.which("pdflatex") is None or shutil.which("bibtex") is None,
    reason="pdflatex/bibtex not installed (apt-get install texlive-latex-base "
           "texlive-latex-recommended lmodern)")
needs_biber = pytest.mark.skipif(
    shutil.which("pdflatex") is None or shutil.which("biber") is None,
    reason="biber/biblatex not installed (apt-get install biber texlive-bibtex-extra)")

_PREAMBLE = "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{lmodern}\n"


def _run(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300,
                          check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _exported_bib(ws, tmp_path):
    export(ws, "md", out=tmp_path / "out")
    bib = (tmp_path / "out" / "references.bib").read_text()
    keys = re.findall(r"^@\w+\{([^,]+),", bib, flags=re.M)
    assert len(keys) == len(set(keys)) > 10
    return bib, keys


def _latex(doc, folder, backend):
    """pdflatex, the bibliography backend, pdflatex twice; the last log and the backend's."""
    rc, out = _run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], folder)
    assert rc == 0, out[-3000:]
    rc, out = _run([backend, "doc"], folder)
    blg = (folder / "doc.blg").read_text(errors="replace")
    assert rc == 0, out[-3000:] + blg[-3000:]
    for _ in range(2):
        rc, out = _run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                       folder)
        assert rc == 0, out[-3000:]
    return (folder / "doc.log").read_text(errors="replace"), blg


@needs_bibtex
def test_exported_bib_compiles_with_plain_bibtex(study, tmp_path):
    bib, keys = _exported_bib(study, tmp_path)
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "refs.bib").write_text(bib)
    (folder / "doc.tex").write_text(
        _PREAMBLE + "\\usepackage{url}\n\\begin{document}\nCited: \\cite{" + ",".join(keys)
        + "}.\n\\nocite{*}\n\\bibliographystyle{plain}\n\\bibliography{refs}\n\\end{document}\n")
    log, blg = _latex((folder / "doc.tex").read_text(), folder, "bibtex")
    assert "Warning--" not in blg and "error message" not in blg, blg
    assert "undefined" not in log.lower(), log[-2000:]
    bbl = (folder / "doc.bbl").read_text()
    assert bbl.count("\\bibitem") == len(keys)
    assert "Version 1.7" in bbl or "Version" in bbl  # software versions reach the reader


@needs_biber
def test_exported_bib_compiles_with_biblatex_and_biber(study, tmp_path):
    bib, keys = _exported_bib(study, tmp_path)
    folder = tmp_path / "biber"
    folder.mkdir()
    (folder / "refs.bib").write_text(bib)
    (folder / "doc.tex").write_text(
        _PREAMBLE + "\\usepackage[backend=biber]{biblatex}\n\\addbibresource{refs.bib}\n"
        "\\begin{document}\nCited: \\cite{" + ",".join(keys) + "}.\n\\nocite{*}\n"
        "\\printbibliography\n\\end{document}\n")
    log, blg = _latex((folder / "doc.tex").read_text(), folder, "biber")
    assert not re.search(r"\b(WARN|ERROR)\b", blg), blg
    assert "undefined" not in log.lower() and "Please rerun" not in log, log[-2000:]
    bbl = (folder / "doc.bbl").read_text()
    assert bbl.count("\\entry{") == len(keys)
    # biber decodes the .bib's accent commands: names reach biblatex as UTF-8.
    assert "Grégoire" in bbl and "Hämäläinen" in bbl


# ---------------------------------------------------------------------------
# Metadata and formatting


def _fields(bib, key):
    body = re.search(r"@(\w+)\{" + re.escape(key) + r",(.*?)\n\}", bib, flags=re.S)
    assert body, key
    return body.group(1), dict(re.findall(r"^\s*(\w+) = \{(.*)\},?$", body.group(2), flags=re.M))


def test_software_entries_have_the_release_metadata(study, tmp_path):
    bib, keys = _exported_bib(study, tmp_path)
    with Workspace.open(study.path) as ws:
        pk = ws.journal.events(kind="session_start")[-1].payload["provenance"]["packages"]
    etype, moabb = _fields(bib, "aristimunha2023moabb")
    # Zenodo's author list as MOABB asks to cite it, Cattan's names in the right order.
    assert etype == "misc" and "Cattan, Gr{\\'e}goire" in moabb["author"]
    assert "Gregoire, Cattan" not in bib
    assert moabb["author"].startswith("Aristimunha, Bruno and Carrara, Igor")
    assert moabb["author"].endswith("Barachant, Alexandre and Chevallier, Sylvain")
    # The year of the version used, not the year of the export.
    assert moabb["year"] == release_year("moabb", pk["moabb"]) != ""
    assert moabb["note"] == f"Version {pk['moabb']}"
    _, pyr = _fields(bib, "barachant_pyriemann")
    assert pyr["year"] == release_year("pyriemann", pk["pyriemann"]) != ""
    assert "{Junqueira Lopes}, Bruna" in pyr["author"]
    _, own = _fields(bib, "chatbci")
    assert own["howpublished"] == "Python package chatbci"
    # Only entry types plain BibTeX knows.
    assert set(re.findall(r"^@(\w+)\{", bib, flags=re.M)) <= {"article", "inproceedings",
                                                             "misc"}
    # LaTeX specials of a cited URL are escaped in text, verbatim in ``url``.
    assert "Method reference https://example.org/methods/a\\_b\\%20c\\#x" in bib
    assert "url = {https://example.org/methods/a_b%20c#x}" in bib


def test_release_year_comes_from_the_release_not_the_clock():
    assert release_year("moabb", "1.0.0") == "2023"
    assert release_year("moabb", "1.7.2") == "2026"
    assert release_year("pyriemann", "0.9") == "2025"
    assert release_year("pyriemann", "v0.12") == "2026"
    assert release_year("pyriemann", "9.9") == "" and release_year("moabb", None) == ""


def test_method_references_become_entries_and_citations(study):
    record = load_record(study)
    keys = [e.key for e in bib_entries(record)]
    assert {"koles1990spatial", "blankertz2008optimizing"} <= set(keys)
    own = [citation_key(c) for c in OWN_CITATIONS]
    assert set(own) <= set(keys) and len(set(own)) == 2
    assert citation_key("https://doi.org/10.1016/j.neucom.2012.12.039") \
        == citation_key("10.1016/J.NEUCOM.2012.12.039") == "barachant2013classification"
    md = methods_section(record, "md")
    assert "https://" not in md and "Method references" not in md
    assert "[@koles1990spatial; @blankertz2008optimizing]" in md
    tex = methods_section(record, "tex")
    assert "\\cite{koles1990spatial,blankertz2008optimizing}" in tex


def test_text_references_are_formatted_by_pybtex(study):
    refs = format_references(bib_entries(load_record(study)), "text")
    assert [label for _, label, _ in refs] == [str(i) for i in range(1, len(refs) + 1)]
    text = dict((k, t) for k, _, t in refs)
    assert text["gramfort2013mne"].startswith("Alexandre Gramfort, Martin Luessi, ")
    assert "Matti S. Hämäläinen. MEG and EEG Data Analysis with MNE-Python." \
        in text["gramfort2013mne"]
    for key, _, t in refs:
        assert ".." not in t.replace("...", ""), (key, t)
        assert not re.search(r"\w+, [A-Z][\w.]* and \w+, [A-Z]", t), (key, t)  # BibTeX names


def test_html_references_are_linked_and_readable(study, tmp_path):
    html = export(study, "html", out=tmp_path / "html").read_text()
    refs = html.split('<section id="references">')[1].split("</section>")[0]
    assert '<a href="https://doi.org/10.3389/fnins.2013.00267">' in refs
    assert '<a href="https://doi.org/10.1007/BF01129656">' in refs
    assert "Alexandre Gramfort, Martin Luessi, Eric Larson" in refs
    assert "Gramfort, Alexandre and" not in refs and "<code>gramfort2013mne" not in refs
    assert "bibtex-protected" not in refs
    # The methods cite by the number of the reference in the list.
    methods = html.split('<section id="methods">')[1].split("</section>")[0]
    keys = re.findall(r'<li id="ref-([^"]+)">', refs)
    n = keys.index("gramfort2013mne") + 1
    assert f'<a href="#ref-gramfort2013mne">{n}</a>' in methods
    assert "https://" not in methods


def test_latex_document_bibliography_is_formatted_by_pybtex(study, tmp_path):
    tex = export(study, "tex", out=tmp_path / "tex").read_text()
    bib = tex.split("\\begin{thebibliography}")[1]
    assert "\\newblock" in bib and "\\href{https://doi.org/10.3389/fnins.2013.00267}" in bib
    assert "et al.." not in bib


# ---------------------------------------------------------------------------
# Methods: COBIDAS-MEEG facts


def test_methods_report_preprocessing_evaluation_and_software(study):
    from chatbci.export import methods_facts

    record = load_record(study)
    text = methods_section(record, "txt")
    # Filter as MOABB calls MNE: IIR Butterworth, order 4, forward-backward.
    assert "band-pass filtered from 8 to 32 Hz before epoching" in text
    assert "IIR Butterworth filter of order 4" in text and "effective order of 8" in text
    assert "mne.io.Raw.filter(method='iir')" in text
    assert "All EEG channels of each dataset were used" in text and "64 for PhysionetMI" in text
    assert "No re-referencing was applied" in text
    assert "No baseline correction was applied" in text
    assert "No amplitude-based rejection" in text
    assert "0 to 3 s after the cue for PhysionetMI" in text
    assert "Signals were not resampled" in text
    assert "5-fold stratified CV per session" in text and "roc_auc" in text
    assert "random_state = 42" in text
    assert re.search(r"MOABB \d+\.\d+", text) and "MNE-Python" in text
    # No sentence opens with a numeral.
    assert not re.search(r"(?:^|[.!?]\s+)\d", text, flags=re.M), text
    assert "Two pipelines were benchmarked" in text
    facts = methods_facts(record)["paradigms"][0]["preprocessing"]
    assert facts["filter"]["order"] == 4 and facts["filter"]["method"] == "iir"
    assert facts["band"] == [8, 32] and facts["channels"] == "all EEG"


def test_moabb_filters_as_the_methods_say():
    """The filter the methods describe is the one MOABB and MNE really apply."""
    import inspect

    import mne
    from moabb.datasets import preprocessing

    from chatbci.export.methods import MOABB_FILTER

    source = inspect.getsource(preprocessing.get_filter_pipeline)
    assert '"filter", l_freq=fmin, h_freq=fmax, method="iir"' in " ".join(source.split())
    params = mne.filter.create_filter(None, 160.0, 8.0, 32.0, method="iir", verbose=False)
    assert params["order"] == MOABB_FILTER["order"] and params["ftype"] == "butter"
    assert params["output"] == MOABB_FILTER["output"]
    signature = inspect.signature(mne.io.BaseRaw.filter)
    assert signature.parameters["phase"].default == "zero"


def test_count_phrase_spells_out_sentence_starts():
    assert count_phrase(4, "pipeline", start=True) == "Four pipelines"
    assert count_phrase(1, "run", start=True) == "One run"
    assert count_phrase(42, "subject", start=True) == "Forty-two subjects"
    assert count_phrase(120, "event", start=True) == "A total of 120 events"
    assert count_phrase(3, "analysis", "analyses") == "3 analyses"


# ---------------------------------------------------------------------------
# AI-use disclosure


def test_disclosure_reports_model_access_sampling_prompts_and_tools(study, tmp_path):
    from chatbci.assistant import prompts
    from chatbci.assistant.tools import TOOLS

    d = disclosure(study)
    (a,) = d["assistants"]
    assert a["versions"] == ["gpt-4o-mini-2024-07-18"]
    with Workspace.open(study.path) as ws:
        calls = [e for e in ws.journal.events() if "llm" in e.payload]
    iso = [c.ts.isoformat().replace("+00:00", "Z") for c in (calls[0], calls[-1])]
    assert a["access"] == {"first": iso[0], "last": iso[1]}
    assert a["sampling"] == [PARAMS]
    system = prompts.load("system")
    by_ref = {t["ref"]: t for t in d["prompts"]}
    current, stale = by_ref[system.ref], by_ref["state@v0:0123456789ab"]
    assert current["ref"] == system.ref and current["text"] == system.template
    assert current["sha256"] == system.sha256
    assert stale["text"] is None and "not recorded" in stale["source"]
    assert [t["name"] for t in d["tools"]] == TOOLS.names()
    assert {t["cost"] for t in d["tools"]} == {"read-only", "compute", "writes"}
    assert d["declaration"].startswith("During the preparation of this work the author(s) used")
    assert "gpt-4o-mini" in d["declaration"] and "take(s) full responsibility" in d["declaration"]
    assert d["placement"]["methods"].startswith("Methods:")
    assert d["placement"]["acknowledgements"].startswith("Acknowledgements:")

    paths = export(study, "md", out=tmp_path / "md", all_files=True)
    names = {p.name for p in paths}
    assert "ai-prompt-templates.md" in names
    supplement = (tmp_path / "md" / "ai-prompt-templates.md").read_text()
    assert system.template in supplement and system.sha256 in supplement
    md = (tmp_path / "md" / "ai-disclosure.md").read_text()
    assert "temperature 0.2, seed 7, max_tokens 800" in md
    assert "Tool catalog" in md and "run_benchmark" in md and "ai-prompt-templates.md" in md
    assert "Declaration of generative AI" in md
    # The draft statement opens no sentence with a numeral ("1 benchmark run was...").
    assert "One benchmark run was executed" in d["statement"]
    assert not re.search(r"(?:^|[.!?]\s+)\d", d["statement"]), d["statement"]


def test_disclosure_reads_the_journaled_manifest_not_the_installed_assistant(study):
    """The export never imports the assistant (dependencies point one way); the
    template texts come from the file the session stored, checked by its hash."""
    import subprocess
    import sys

    code = ("import sys, json; from chatbci.export.disclosure import disclosure; "
            f"d = disclosure({str(study.path)!r}); "
            "assert not [m for m in sys.modules if m.startswith('chatbci.assistant')], "
            "sorted(m for m in sys.modules if m.startswith('chatbci.assistant')); "
            "print(json.dumps([{t['name']: bool(t['text']) for t in d['prompts']}, "
            "len(d['tools'])]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    texts, n_tools = json.loads(out.stdout.strip().splitlines()[-1])
    assert texts["system"] is True and n_tools > 5
    # A manifest edited after the fact no longer matches its name: no text, no catalog.
    (start,) = [e for e in study.journal.events(kind="session_start")
                if "assistant_manifest" in e.payload]
    path = study.path / start.payload["assistant_manifest"]
    path.write_text(path.read_text().replace("You are", "You were"))
    d = disclosure(study)
    assert all(t["text"] is None for t in d["prompts"]) and d["tools"] == []


def test_offline_disclosure_names_no_generative_ai(tmp_path):
    ws = Workspace.create(tmp_path / "off", title="Off", goal="g", datasets=["SimulatedMI"])
    j = ws.journal
    j.start_session(backend="offline", model="offline-rules", is_llm=False,
                    assistant_manifest=assistant_manifest(ws))
    m = j.append("message", "human:ada", {"text": "hello"})
    j.append("message", "ai:offline-rules", {"text": "hi"}, m.id)
    j.end_session()
    d = disclosure(ws)
    ws.close()
    assert not d["llm_used"] and d["prompts"] == []
    assert "no generative AI" in d["declaration"] and "rule-based" in d["declaration"]
    assert "not a language model" in d["declaration"]
    assert d["tools"]  # the rule-based assistant acts through the same tools


# ---------------------------------------------------------------------------
# CLI


def test_cli_export_lists_every_file_it_wrote(study, tmp_path, capsys):
    from chatbci.cli import main

    out = tmp_path / "all"
    assert main(["export", str(study.path), "--format", "all", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    on_disk = sorted(str(p) for p in out.rglob("*") if p.is_file())
    assert sorted(printed) == on_disk and len(printed) == len(set(printed))
    assert len(on_disk) >= 12 and all(Path(p).is_file() for p in printed)
