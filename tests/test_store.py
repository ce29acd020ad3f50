"""The content-addressed store of intermediate results (epochs, heads, fitted prefixes)."""

import os
import shutil

import numpy as np
import pandas as pd
import pytest
from pyriemann.classification import MDM
from pyriemann.estimation import Covariances
from pyriemann.tangentspace import TangentSpace
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from chatbci.bci.benchmark import run_benchmark, store_of
from chatbci.bci.datasets import SimulatedMI
from chatbci.bci.store import Store, parse_size


def _kinds(cache_dir):
    out = {"epochs": 0, "head": 0, "prefix": 0}
    for entry in store_of(cache_dir).entries():
        out[entry["kind"]] += 1
    return out


def _pipes(C=1.0):
    return {
        "TS+LR": make_pipeline(Covariances("oas"), TangentSpace(metric="riemann"),
                               LogisticRegression(C=C, max_iter=1000)),
        "TS+SVM": make_pipeline(Covariances("oas"), TangentSpace(metric="riemann"),
                                SVC(kernel="linear")),
        "MDM": make_pipeline(Covariances("oas"), MDM(metric="riemann")),
    }


def _ds(**kw):
    # One session of 5 folds per subject: 5 fitted tangent spaces per subject.
    return SimulatedMI(n_subjects=2, n_sessions=1, **kw)


def test_store_roundtrip_memmap_and_lru_bound(tmp_path):
    store = Store(tmp_path / "store", max_bytes=10**9)
    X = np.random.default_rng(0).normal(size=(20, 4, 4))
    k1 = store.key("head", "a")
    assert store.get("head", k1) is None
    got = store.put("head", k1, {"X": X, "meta": {"note": "x"}})
    assert isinstance(got["X"], np.memmap) and not got["X"].flags.writeable
    np.testing.assert_array_equal(got["X"], X)
    assert got["meta"] == {"note": "x"}
    assert store.get("head", k1)["meta"] == {"note": "x"}
    # Keys differ by kind and description.
    assert len({k1, store.key("head", "b"), store.key("prefix", "a")}) == 3
    k2 = store.put("prefix", store.key("prefix", "b"), {"X": X}) and store.key("prefix", "b")
    # Mark k2 as used later than k1: pruning to one entry keeps k2.
    os.utime(store._dir("head", k1), (1, 1))
    size = store.size()
    assert size > 2 * X.nbytes
    removed = store.prune(size - 1)
    assert [e["key"] for e in removed] == [k1]
    assert store.get("head", k1) is None and store.get("prefix", k2) is not None
    assert store.clear() == 1 and store.entries() == []
    assert parse_size("2GB") == 2 * 1024**3 and parse_size("500m") == 500 * 1024**2
    assert parse_size("0") == 0
    with pytest.raises(ValueError, match="Cannot read the size 'lots'"):
        parse_size("lots")


def test_next_pipeline_reuses_epochs_heads_and_prefixes_with_identical_scores(tmp_path):
    """A design session: each new pipeline computes only its own fits, same scores."""
    cache = tmp_path / "cache"
    ds = _ds()
    pipes = _pipes()
    plain = run_benchmark(pipes, ds, "1-2", progress=False)  # no cache, no store
    first = run_benchmark({"TS+LR": pipes["TS+LR"]}, ds, "1-2", cache_dir=cache,
                          progress=False)
    after_first = _kinds(cache)
    # Two subjects: their epochs, one covariance head each, one tangent space per fold.
    assert after_first == {"epochs": 2, "head": 2, "prefix": 10}
    second = run_benchmark({"TS+SVM": pipes["TS+SVM"]}, ds, "1-2", cache_dir=cache,
                           progress=False)
    assert second.attrs["chatbci"]["n_computed"] == 2
    assert _kinds(cache) == after_first  # epochs, covariances, tangent spaces reused
    third = run_benchmark({"MDM": pipes["MDM"]}, ds, "1-2", cache_dir=cache, progress=False)
    assert _kinds(cache) == after_first  # MDM has no prefix to store
    stored = pd.concat([first, second, third], ignore_index=True)
    np.testing.assert_allclose(stored["score"].to_numpy(), plain["score"].to_numpy(),
                               rtol=0, atol=1e-12)
    # A fresh computation from the store alone (result cache removed) is exact too.
    for folder in cache.iterdir():
        if folder.name != "store":
            shutil.rmtree(folder)
    again = run_benchmark(pipes, ds, "1-2", cache_dir=cache, progress=False)
    assert again.attrs["chatbci"]["n_computed"] == 6
    np.testing.assert_allclose(again["score"].to_numpy(), plain["score"].to_numpy(),
                               rtol=0, atol=1e-12)


def test_changed_parameters_miss(tmp_path):
    cache = tmp_path / "cache"
    pipes = _pipes()
    run_benchmark({"TS+LR": pipes["TS+LR"]}, _ds(), "1", cache_dir=cache, progress=False)
    base = _kinds(cache)
    # Another dataset parameter: new epochs (and everything after them).
    run_benchmark({"TS+LR": pipes["TS+LR"]}, _ds(seed=7), "1", cache_dir=cache,
                  progress=False)
    changed = _kinds(cache)
    assert changed == {k: 2 * v for k, v in base.items()}
    # Another covariance estimator: same epochs, a new head and new prefixes.
    other = make_pipeline(Covariances("scm"), TangentSpace(metric="riemann"),
                          LogisticRegression(max_iter=1000))
    run_benchmark({"TS+LR scm": other}, _ds(), "1", cache_dir=cache, progress=False)
    after = _kinds(cache)
    assert after["epochs"] == changed["epochs"]
    assert after["head"] == changed["head"] + 1 and after["prefix"] == changed["prefix"] + 5
    # A changed tangent-space parameter: same head, new prefixes only.
    ts = make_pipeline(Covariances("scm"), TangentSpace(metric="logeuclid"),
                       LogisticRegression())
    run_benchmark({"TS-le": ts}, _ds(), "1", cache_dir=cache, progress=False)
    last = _kinds(cache)
    assert last["head"] == after["head"] and last["prefix"] == after["prefix"] + 5


def test_changed_data_file_misses(tmp_path, monkeypatch):
    """PhysionetMI epochs are keyed by their EDF files' sizes and mtimes."""
    from chatbci.bci.datasets import get_dataset, physionet_files

    real = physionet_files(get_dataset("PhysionetMI"), 1)
    if not all(p.exists() for p in real):
        pytest.skip("PhysionetMI subject 1 is not in MNE_DATA")
    monkeypatch.setenv("MNE_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("MNE_DATASETS_EEGBCI_PATH", raising=False)
    mine = physionet_files(get_dataset("PhysionetMI"), 1)
    for src, dst in zip(real, mine):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    cache = tmp_path / "cache"
    csp = "CSP+LDA"
    first = run_benchmark(csp, "PhysionetMI", "1", cache_dir=cache, progress=False)
    assert _kinds(cache)["epochs"] == 1
    run_benchmark("MDM", "PhysionetMI", "1", cache_dir=cache, progress=False)
    assert _kinds(cache)["epochs"] == 1  # same files: epochs read from the store
    path = mine[0]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    again = run_benchmark(csp, "PhysionetMI", "1", cache_dir=cache, progress=False)
    assert again.attrs["chatbci"]["n_computed"] == 1
    assert _kinds(cache)["epochs"] == 2  # reloaded from the touched files
    assert again["score"].tolist() == first["score"].tolist()


def test_store_is_bounded_and_can_be_disabled(tmp_path):
    cache = tmp_path / "cache"
    pipes = _pipes()
    run_benchmark({"TS+LR": pipes["TS+LR"]}, _ds(), "1-2", cache_dir=cache, progress=False,
                  max_store_bytes=0)
    assert not (cache / "store").exists()
    run_benchmark({"TS+SVM": pipes["TS+SVM"]}, _ds(), "1-2", cache_dir=cache,
                  progress=False, max_store_bytes=200_000)
    assert 0 < store_of(cache).size() <= 200_000


def test_cache_command_shows_prunes_and_clears_without_importing_mne(tmp_path):
    import subprocess
    import sys

    cache = tmp_path / "cache"
    run_benchmark({"TS+LR": _pipes()["TS+LR"]}, _ds(), "1-2", cache_dir=cache,
                  progress=False)
    total = store_of(cache).size()
    code = ("import sys; from chatbci.cli import main; rc = main(sys.argv[1:]); "
            "heavy = [m for m in ('mne', 'moabb', 'pyriemann') if m in sys.modules]; "
            "print('heavy:', heavy); sys.exit(rc)")

    def cache_cmd(*args):
        return subprocess.run([sys.executable, "-c", code, "cache", str(cache), *args],
                              capture_output=True, text=True, timeout=120)

    shown = cache_cmd()
    assert shown.returncode == 0, shown.stderr
    assert "heavy: []" in shown.stdout
    lines = {line.split()[0]: line.split()[1] for line in shown.stdout.splitlines()
             if line.split() and line.split()[0] in ("epochs", "head", "prefix")}
    assert lines == {"epochs": "2", "head": "2", "prefix": "10"}
    pruned = cache_cmd("--prune", f"{total // 2}")
    assert pruned.returncode == 0 and "removed" in pruned.stdout
    assert 0 < store_of(cache).size() <= total // 2
    bad = cache_cmd("--prune", "lots")
    assert bad.returncode == 2 and "Cannot read the size 'lots'" in bad.stderr
    assert "Traceback" not in bad.stderr
    cleared = cache_cmd("--clear")
    assert cleared.returncode == 0 and store_of(cache).entries() == []
    # The results themselves stay: a re-run is served from the result cache.
    again = run_benchmark({"TS+LR": _pipes()["TS+LR"]}, _ds(), "1-2", cache_dir=cache,
                          progress=False)
    assert again.attrs["chatbci"]["n_cached"] == 2
