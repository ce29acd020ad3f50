"""The example workspaces shipped in the repository open, verify and carry sourced notes."""

from __future__ import annotations

import shutil
from pathlib import Path

from chatbci.workspace import Workspace

EXAMPLES = Path(__file__).resolve().parents[1] / "workspaces"


def test_physionet_lr_example(tmp_path):
    path = tmp_path / "physionet-lr"
    shutil.copytree(EXAMPLES / "physionet-lr", path)
    ws = Workspace.open(path)
    assert ws.journal.verify().ok
    assert ws.config.datasets == ["PhysionetMI"]
    notes = ws.knowledge.list()
    assert len(notes) >= 5
    assert all(n.verified and n.sources and n.author.startswith("human:") for n in notes)
    text = " ".join(n.title + n.body for n in notes)
    for fact in ("C3", "C4", "mu", "beta", "ERD", "runs 4, 8, 12", "160 Hz"):
        assert fact in text, fact
    assert ws.knowledge.search("contralateral ERD")[0].id.startswith("contralateral")
    ws.close()
