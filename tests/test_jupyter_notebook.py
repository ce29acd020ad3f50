"""The chat panel in a real kernel: tests/notebooks/panel_offline.ipynb executed by nbclient.

The notebook opens the panel on the offline backend, sends "suggest pipelines",
approves the suggestion and asserts (in a cell) that the journal holds the
accept decision and the run; then it uses the magics. The test checks the
journal again from outside, and that the panel was displayed as a widget.

Notebooks are committed without outputs: a pre-commit hook strips them
(``.pre-commit-config.yaml``), and the check here reads the committed
versions, so a user who ran the tutorials (JupyterLab autosaves outputs)
does not make the tests fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from chatbci.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = Path(__file__).parent / "notebooks" / "panel_offline.ipynb"
QUICKSTART = REPO / "notebooks" / "01-quickstart.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

pytestmark = pytest.mark.slow


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """Kernels started here write under tmp_path and run this interpreter."""
    home = tmp_path / "jupyter"
    for name, sub in {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data",
                      "JUPYTER_RUNTIME_DIR": "runtime", "IPYTHONDIR": "ipython"}.items():
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(home / sub))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    spec = home / "data" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    return home


def test_notebook_opens_panel_and_approves(tmp_path, kernel_env, monkeypatch):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # As JupyterLab autosaves a notebook someone ran: old outputs do not matter here.
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="old run\n")]
    study = tmp_path / "study"
    monkeypatch.setenv("CHATBCI_NB_WORKSPACE", str(study))
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    code = [c for c in nb.cells if c.cell_type == "code"]
    shown = [o for o in code[1].outputs if o.output_type == "display_data"]
    assert shown and WIDGET_VIEW in shown[0].data, "chatbci.chat() did not display the panel"
    assert code[2].outputs[-1].data["text/plain"] == "'accept'"
    assert "decision" in "".join(o.get("text", "") for o in code[3].outputs)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert not any("old run" in o.get("text", "") for c in code for o in c.outputs)

    with Workspace.open(study) as ws:
        (decision,) = ws.journal.events(kind="decision")
        assert decision.payload["verdict"] == "accept"
        assert decision.payload["rationale"] == "Three canonical families on two subjects first"
        suggestion = ws.journal.get(decision.parent_id)
        assert suggestion.kind == "suggestion"
        assert suggestion.payload["action"]["tool"] == "run_benchmark"
        (run,) = ws.journal.events(kind="run")
        assert run.payload["config"]["subjects"] == [1, 2]
        humans = [e.payload["text"] for e in ws.journal.events(kind="message", actor="human")]
        assert humans == ["suggest pipelines", "show results"]
        assert ws.journal.verify()


def _committed(path):
    """The notebook as committed at HEAD (None outside a git checkout)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return None
    rel = path.relative_to(REPO).as_posix()
    proc = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    return nbformat.reads(proc.stdout, as_version=4) if proc.returncode == 0 else None


NOTEBOOKS = sorted([*(REPO / "notebooks").glob("*.ipynb"), NOTEBOOK])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebooks_have_no_outputs(path):
    """Checked on what was committed, not on the working copy a user may have run."""
    nb = _committed(path)
    if nb is None:
        pytest.skip(f"{path.name} is not committed in a git checkout here")
    with_outputs = [i for i, c in enumerate(nb.cells)
                    if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not with_outputs, (
        f"{path.name} was committed with outputs in cells {with_outputs}: run "
        "`pip install pre-commit && pre-commit install` once (nbstripout strips them at "
        "each commit), or `pre-commit run nbstripout --all-files` now.")


def test_pre_commit_strips_every_notebook():
    import yaml

    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = [h for repo in config["repos"] for h in repo["hooks"] if h["id"] == "nbstripout"]
    assert len(hooks) == 1
    pattern = re.compile(hooks[0]["files"])
    for path in NOTEBOOKS:
        assert pattern.search(path.relative_to(REPO).as_posix()), path


def test_quickstart_run_twice_approves_each_runs_own_card(tmp_path, kernel_env, monkeypatch):
    """Run All again in the same folder: the new card is approved, not the old one."""
    from nbclient import NotebookClient

    work = tmp_path / "work"
    monkeypatch.setenv("CHATBCI_TUTORIAL_DIR", str(work))
    for run in (1, 2):
        nb = nbformat.read(QUICKSTART, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                  if o.output_type == "error"]
        assert not errors, errors
    with Workspace.open(work / "quickstart") as ws:
        suggestions = ws.journal.events(kind="suggestion")
        decisions = ws.journal.events(kind="decision")
        assert len(suggestions) == 2
        assert sorted(d.parent_id for d in decisions) == [s.id for s in suggestions]
        assert ws.journal.pending_suggestions() == []
