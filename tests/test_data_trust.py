"""Missing or damaged data (issue 10, section 7).

Every entry point that loads data (exploration, benchmark, their tools) gives
one clear error naming the dataset, the subject, the files and the fix, and
creates nothing on disk; a damaged EDF file is named with what is wrong with
it; a subject yielding fewer trials than its dataset has is reported.

The tests work on a private copy of PhysioNet subject 1 (``MNE_DATA`` points
at ``tmp_path``), so the shared data are never touched.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from chatbci.bci.datasets import (
    DataDamagedError,
    DataNotAvailableError,
    check_edf_file,
    get_dataset,
)
from conftest import physionet_files_present

EEGBCI = Path("MNE-eegbci-data", "files", "eegmmidb", "1.0.0")
HAND_RUNS = (4, 8, 12)

pytestmark = pytest.mark.skipif(
    not physionet_files_present(1), reason="PhysioNet EEGMMIDB subject 1 not under MNE_DATA")


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """A private MNE_DATA holding subject 1's hand-imagery runs only."""
    import os

    shared = Path(os.environ["MNE_DATA"]) / EEGBCI / "S001"
    root = tmp_path / "mne_data"
    (root / EEGBCI / "S001").mkdir(parents=True)
    for run in HAND_RUNS:
        shutil.copy(shared / f"S001R{run:02d}.edf", root / EEGBCI / "S001")
    monkeypatch.setenv("MNE_DATA", str(root))
    # MNE prefers the dataset-specific folder when one is configured.
    monkeypatch.setenv("MNE_DATASETS_EEGBCI_PATH", str(root))
    return root


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def edf(root, run=4):
    return root / EEGBCI / "S001" / f"S001R{run:02d}.edf"


def test_absent_subject_everywhere_one_clear_error_and_nothing_created(data_root, tmp_path):
    from chatbci.assistant.tools import TOOLS, ToolContext, ToolError
    from chatbci.bci.benchmark import run_benchmark
    from chatbci.bci.explore import explore_subject, load_subject_epochs
    from chatbci.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws", title="t", goal="g")
    ctx = ToolContext(ws, n_jobs=1)
    before = tree(data_root)

    def check(message):
        assert "PhysionetMI" in message and "subject 50" in message
        assert "S050R04.edf" in message and "To fix" in message and "MNE_DATA" in message
        assert "requests" not in message and "NameResolution" not in message

    for call in (lambda: explore_subject(get_dataset("PhysionetMI"), 50),
                 lambda: load_subject_epochs(get_dataset("PhysionetMI"), 50),
                 lambda: run_benchmark("CSP+LDA", dataset="PhysionetMI", subjects=[50],
                                       progress=False)):
        t0 = time.perf_counter()
        with pytest.raises(DataNotAvailableError) as err:
            call()
        check(str(err.value))
        assert time.perf_counter() - t0 < 5  # no download attempt, no timeout
    for tool, args in (("explore_subject", {"dataset": "PhysionetMI", "subject": 50}),
                       ("run_benchmark", {"dataset": "PhysionetMI", "subjects": "50",
                                          "pipelines": ["CSP+LDA"]})):
        with pytest.raises(ToolError) as err:
            TOOLS[tool].run(ctx, args)
        check(str(err.value))
    # Describing a dataset reads no data at all.
    assert TOOLS["describe_dataset"].run(ctx, {"name": "PhysionetMI"}).summary["n_subjects"]
    assert tree(data_root) == before  # no empty S050/ folder


@pytest.mark.parametrize("damage, message", [
    ("truncate", r"S001R04\.edf is damaged: it is truncated: the header says 125 data "
                 r"records of 20640 bytes \(2596896 bytes in all\), the file holds 865632 "
                 r"bytes, 41 complete records"),
    ("empty", r"S001R04\.edf is damaged: it is empty \(0 bytes\)"),
    ("garbage", r"S001R04\.edf is damaged: its header is not an EDF header"),
])
def test_damaged_edf_is_named_with_what_is_wrong(data_root, damage, message):
    from chatbci.bci.benchmark import run_benchmark
    from chatbci.bci.explore import load_subject_epochs

    path = edf(data_root)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 3], "empty": b"",
                      "garbage": b"not an edf file " * 64}[damage])
    with pytest.raises(DataDamagedError, match=message) as err:
        run_benchmark("CSP+LDA", dataset="PhysionetMI", subjects=[1], progress=False)
    assert "PhysionetMI (code 'PhysionetMotorImagery') subject 1" in str(err.value)
    assert "To fix" in str(err.value)
    with pytest.raises(DataDamagedError, match=message):
        load_subject_epochs(get_dataset("PhysionetMI"), 1)


def test_intact_files_pass_the_header_check(data_root):
    for run in HAND_RUNS:
        check_edf_file(edf(data_root, run))


def test_subject_with_fewer_trials_is_reported(data_root):
    """A consistent but short recording (header rewritten to 80 of 125 records)."""
    from chatbci.bci.benchmark import DataWarning, run_benchmark

    path = edf(data_root)
    data = bytearray(path.read_bytes())
    header, record = 16896, 20640
    data[236:244] = b"80      "
    path.write_bytes(bytes(data[: header + 80 * record]))
    check_edf_file(path)  # intact as far as its header goes
    with pytest.warns(DataWarning, match="subject 1 yielded") as caught:
        df = run_benchmark("CSP+LDA", dataset="PhysionetMI", subjects=[1], progress=False)
    n = int(df["samples"].sum())
    assert n < 45
    (note,) = df.attrs["chatbci"]["warnings"]
    assert f"yielded {n} trials, fewer than the 45 expected (3 runs x 15 trials)" in note
    assert [str(w.message) for w in caught if w.category is DataWarning] == [note]


def test_full_subject_gives_no_trial_warning():
    import warnings

    from chatbci.bci.benchmark import run_benchmark
    from chatbci.bci.datasets import SimulatedMI

    ds = SimulatedMI(n_subjects=2, n_sessions=1, n_runs=1, n_trials=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = run_benchmark("CSP+LDA", dataset=ds, progress=False)
    assert df.attrs["chatbci"]["warnings"] == []
