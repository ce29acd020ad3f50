"""The chat panel in a real kernel: tests/notebooks/panel_offline.ipynb executed by nbclient.

The notebook opens the panel on the offline backend, sends "suggest pipelines",
approves the suggestion and asserts (in a cell) that the journal holds the
accept decision and the run; then it uses the magics. The test checks the
journal again from outside, and that the panel was displayed as a widget.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

from chatbci.workspace import Workspace

NOTEBOOK = Path(__file__).parent / "notebooks" / "panel_offline.ipynb"
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
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook without outputs"
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
