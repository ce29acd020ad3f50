"""A cached `chatbci bench` request is answered without importing MNE or MOABB.

The request index (chatbci.bci.request_index) maps a request given by name to
the result-cache files holding its answer; every test here checks that its
answer equals the engine's, and that anything that could change the answer
makes it miss.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from chatbci.bci import request_index
from chatbci.bci.benchmark import run_benchmark
from chatbci.bci.results import DataWarning

REQUEST = dict(pipelines="CSP+LDA,TS+LR", dataset="SimulatedMI", subjects="1-2",
               paradigm="left_right", evaluation="within-session", random_state=42)
HEAVY = ("mne", "moabb", "pyriemann", "sklearn", "scipy.stats", "openai", "torch")

_BENCH = ("import sys; from chatbci.cli import main; rc = main(sys.argv[1:]); "
          f"heavy = [m for m in {HEAVY!r} if m in sys.modules]; "
          "print('heavy:', heavy); sys.exit(rc)")


def _bench_cli(cache, *extra, env=None):
    args = ["bench", "--pipelines", REQUEST["pipelines"], "--dataset", REQUEST["dataset"],
            "--subjects", REQUEST["subjects"], "--cache-dir", str(cache), "--quiet", *extra]
    proc = subprocess.run([sys.executable, "-c", _BENCH, *args], capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _entries(cache):
    return sorted((Path(cache) / request_index.INDEX_FOLDER).glob("*.json"))


def test_cached_cli_request_imports_no_engine_library_and_prints_the_same(tmp_path):
    cache = tmp_path / "cache"
    first = _bench_cli(cache)
    assert "4 subject x pipeline results computed, 0 from cache" in first
    assert len(_entries(cache)) == 1
    again = _bench_cli(cache)
    assert "heavy: []" in again  # neither MNE, MOABB, scikit-learn nor the LLM client
    assert "0 subject x pipeline results computed, 4 from cache" in again
    table = [line for line in first.splitlines() if "±" in line]
    assert table and table == [line for line in again.splitlines() if "±" in line]
    # --output needs the table itself: still no engine import, and the engine's scores.
    out = tmp_path / "scores.csv"
    _bench_cli(cache, "--output", str(out))
    engine = run_benchmark(**REQUEST, cache_dir=cache, progress=False)  # its cached answer
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(
        _csv(engine, tmp_path / "engine.csv")))


def _csv(df, path):
    df.to_csv(path, index=False)
    return path


def test_indexed_answer_equals_the_engine_table(tmp_path):
    cache = tmp_path / "cache"
    computed = run_benchmark(**REQUEST, cache_dir=cache, progress=False)
    key = request_index.request_key(**REQUEST)
    answer = request_index.lookup(cache, key)
    assert answer is not None and answer.n_results == 4
    indexed = answer.frame()
    pd.testing.assert_frame_equal(indexed, computed)
    info = indexed.attrs["chatbci"]
    assert (info["n_cached"], info["n_computed"], info["from_index"]) == (4, 0, True)
    for k in ("evaluation", "random_state", "cache_keys", "warnings", "engine_notes"):
        assert info[k] == computed.attrs["chatbci"][k]
    # The engine's own cached answer is the same table too.
    cached = run_benchmark(**REQUEST, cache_dir=cache, progress=False)
    pd.testing.assert_frame_equal(indexed, cached)


def test_a_changed_request_or_context_is_another_key(tmp_path, monkeypatch):
    key = request_index.request_key(**REQUEST)
    assert key == request_index.request_key(**REQUEST)
    for change in (dict(subjects="1-3"), dict(pipelines="TS+LR,CSP+LDA"),
                   dict(random_state=0), dict(evaluation="cross-subject"),
                   dict(paradigm="multiclass"), dict(dataset="PhysionetMI")):
        assert request_index.request_key(**{**REQUEST, **change}) != key, change
    monkeypatch.setenv("MNE_DATASETS_EEGBCI_PATH", str(tmp_path))
    assert request_index.request_key(**REQUEST) != key  # data read from elsewhere
    monkeypatch.delenv("MNE_DATASETS_EEGBCI_PATH")
    real = request_index.version
    monkeypatch.setattr(request_index, "version",
                        lambda pkg: "0.0" if pkg == "pyriemann" else real(pkg))
    assert request_index.request_key(**REQUEST) != key  # another library version


def test_edited_engine_source_is_another_key(tmp_path, monkeypatch):
    key = request_index.request_key(**REQUEST)
    engine = tmp_path / "bci"
    shutil.copytree(Path(request_index.__file__).parent, engine,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(request_index, "_ENGINE_DIR", engine)
    assert request_index.request_key(**REQUEST) == key
    with open(engine / "pipelines.py", "a") as f:
        f.write("\n# an edited canonical pipeline\n")
    edited_code = request_index.request_key(**REQUEST)
    assert edited_code != key
    # The canonical pipelines' files are part of the engine too.
    with open(engine / "pipeline_files" / "ts_lr.yml", "a") as f:
        f.write("\n# C changed by hand\n")
    assert request_index.request_key(**REQUEST) not in (key, edited_code)


def test_objects_are_not_indexed():
    from chatbci.bci.datasets import SimulatedMI
    from chatbci.bci.pipelines import get_pipeline

    assert request_index.request_key(**{**REQUEST, "dataset": SimulatedMI()}) is None
    assert request_index.request_key(
        **{**REQUEST, "pipelines": {"mine": get_pipeline("CSP+LDA").build()}}) is None


def _recorded(tmp_path, data_file, warnings_=()):
    """An index entry over one result file and one data file (no engine run)."""
    cache = tmp_path / "cache"
    result = cache / "ctx" / "pipe" / "subject-1.json"
    result.parent.mkdir(parents=True)
    result.write_text(json.dumps([dict(score=0.75, time=0.1, samples=40.0, samples_test=8.0,
                                       n_classes=2.0, subject=1, session="0", channels=64,
                                       pipeline="CSP+LDA")]))
    key = request_index.request_key(**REQUEST)
    table = dict(n_sessions=1, dataset="SimulatedMI", pipelines=["CSP+LDA"], subjects=[1],
                 attrs=dict(warnings=list(warnings_), engine_notes=[], unseeded=[]))
    request_index.record(cache, key, result_files=[result], data_files=[data_file],
                         table=table)
    return cache, key, result


def test_changed_data_file_or_pruned_result_misses(tmp_path):
    data = tmp_path / "S001R04.edf"
    data.write_bytes(b"0" * 100)
    cache, key, result = _recorded(tmp_path, data)
    assert request_index.lookup(cache, key).frame()["score"].tolist() == [0.75]
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    assert request_index.lookup(cache, key) is None
    cache, key, result = _recorded(tmp_path / "again", data)
    result.unlink()  # the result cache was cleared
    assert request_index.lookup(cache, key) is None


def test_an_entry_pointing_outside_its_cache_is_ignored(tmp_path):
    data = tmp_path / "data.edf"
    data.write_bytes(b"x")
    cache, key, result = _recorded(tmp_path, data)
    path = cache / request_index.INDEX_FOLDER / f"{key}.json"
    entry = json.loads(path.read_text())
    outside = tmp_path / "outside.json"
    shutil.copy(result, outside)
    entry["results"] = ["../outside.json"]
    path.write_text(json.dumps(entry))
    assert request_index.lookup(cache, key) is None


def test_lookup_warns_again_as_the_engine_does(tmp_path):
    data = tmp_path / "data.edf"
    data.write_bytes(b"x")
    cache, key, _ = _recorded(tmp_path, data, ["Subject 1 has 8 trials; expected 45."])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert request_index.lookup(cache, key) is not None
    assert [str(w.message) for w in caught if w.category is DataWarning] == [
        "Subject 1 has 8 trials; expected 45."]
