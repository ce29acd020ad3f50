"""`chatbci demo` end to end in a fresh directory, and the tutorial notebooks."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatbci.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end_offline(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CHATBCI_MODEL")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "chatbci", "demo", "--dir",
                           str(tmp_path / "demo")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "offline assistant (rule-based, no LLM)" in out
    assert "Everything is in" in out and "exports/" in out
    print(f"demo wall time: {seconds:.1f} s")
    # What was suggested, the scores a decision produced, and where the figures are.
    flat = " ".join(out.split())  # the demo wraps its lines
    assert re.search(r"suggestion #\d+: benchmark CSP\+LDA, TS\+LR and MDM on SimulatedMI "
                     r"subjects 1-6", flat)
    assert re.search(r"\[modify suggestion #\d+: benchmark TS\+SVM on SimulatedMI subjects 1-6, "
                     r"to: benchmark TS\+SVM on SimulatedMI subjects 1-3\]", flat)
    assert re.search(r"scores \(journal #\d+\): (TS\+LR|CSP\+LDA|MDM) 0\.\d{3} ± 0\.\d{3}", flat)
    files = [line.split("file: ", 1)[1].strip() for line in out.splitlines() if "| file: " in line]
    assert any(f.endswith(".png") for f in files) and all(Path(f).is_file() for f in files)
    # Only chatbci's words: no library log lines.
    assert "too similar" not in out + proc.stderr and "WARNING" not in out + proc.stderr

    ws = Workspace.open(tmp_path / "demo")
    j = ws.journal
    assert j.verify().ok
    verdicts = sorted(d.payload["verdict"] for d in j.events(kind="decision"))
    assert verdicts == ["accept", "modify", "reject"]
    assert all(d.payload["rationale"] for d in j.events(kind="decision"))
    runs = j.events(kind="run")
    assert len(runs) == 2 and runs[1].payload["config"]["subjects"] == [1, 2, 3]
    explore = [e for e in j.events(kind="tool_result") if e.payload["tool"] == "explore_subject"]
    assert explore and len(explore[0].payload["artifacts"]) == 3
    compare = [e for e in j.events(kind="tool_result") if e.payload["tool"] == "compare_pipelines"]
    assert compare and compare[0].payload["summary"]["comparisons"]

    exports = {p.suffix for p in (tmp_path / "demo" / "exports").iterdir()}
    assert {".md", ".html", ".tex", ".json", ".ipynb", ".bib"} <= exports
    methods = next((tmp_path / "demo" / "exports").glob("*methods*.md")).read_text()
    assert "SimulatedMI" in methods and "within-session" in methods.lower()
    assert "TS+LR" in methods and "CSP+LDA" in methods
    ws.close()


def test_library_chatter_is_silenced_only_inside_the_block(caplog, capfd):
    import mne

    from chatbci._quiet import library_chatter_silenced

    moabb_log = logging.getLogger("moabb.analysis.plotting")
    mne_level = mne.utils.logger.level
    with caplog.at_level(logging.INFO):
        with library_chatter_silenced():
            moabb_log.warning("Dataset names are too similar, turning off name shortening")
            mne.utils.logger.info("Not setting metadata")
            logging.getLogger("chatbci.demo").warning("chatbci's own warning")
            moabb_log.error("a real MOABB error")
        moabb_log.warning("after the block")
    said = [r.getMessage() for r in caplog.records]
    assert "Dataset names are too similar, turning off name shortening" not in said
    assert {"chatbci's own warning", "a real MOABB error", "after the block"} <= set(said)
    assert "Not setting metadata" not in capfd.readouterr().out
    assert mne.utils.logger.level == mne_level


def test_demo_refuses_to_overwrite_and_explains(tmp_path, capsys):
    from chatbci.cli import main

    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "notes.txt").write_text("mine")
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err
    assert (tmp_path / "demo" / "notes.txt").read_text() == "mine"


NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def clear_outputs(nb):
    """Execute a notebook as committed: without the outputs of an earlier run."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_notebook_executes(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("CHATBCI_TUTORIAL_DIR", str(tmp_path / "work"))
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CHATBCI_MODEL"):
        monkeypatch.delenv(var, raising=False)
    for var, sub in (("JUPYTER_RUNTIME_DIR", "rt"), ("IPYTHONDIR", "ipy"),
                     ("JUPYTER_DATA_DIR", "data"), ("JUPYTER_CONFIG_DIR", "cfg")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    nb = nbformat.read(path, as_version=4)
    # Outputs a user's JupyterLab autosaved are no failure here; commits strip them
    # (.pre-commit-config.yaml, nbstripout; tests/test_jupyter_notebook.py checks HEAD).
    clear_outputs(nb)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    # Library log lines meant for MOABB's developers are not the reader's.
    streams = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs if o.output_type == "stream")
    assert "too similar" not in streams, streams[-2000:]


def test_demo_on_physionet(physionet_data, tmp_path):
    from chatbci.demo import run_demo

    path, files = run_demo(tmp_path / "demo", "PhysionetMI", quiet=True, n_jobs=1)
    ws = Workspace.open(path)
    run = ws.journal.events(kind="run")[0].payload
    assert run["protocol"]["dataset"]["name"] == "PhysionetMI"
    assert run["protocol"]["paradigm"]["fmin"] == 8 and run["protocol"]["paradigm"]["fmax"] == 32
    bib = next(f for f in (path / "exports").iterdir() if f.suffix == ".bib").read_text()
    assert "schalk2004bci2000" in bib and "goldberger2000physiobank" in bib
    assert ws.journal.verify().ok
    ws.close()
