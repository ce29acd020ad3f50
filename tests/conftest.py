"""Shared test set-up.

Tests never write to ``~``: MNE's config, matplotlib's cache and MOABB's
results go to a per-session temporary home. Real-data tests use the PhysioNet
EEGMMIDB files staged under ``MNE_DATA`` (CI points it at
``../shared/data/mne_data``) and skip with a reason when they are absent.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]
_SHARED_DATA = _REPO.parent / "shared" / "data" / "mne_data"

# Set before MNE / MOABB / matplotlib are imported by any test module.
_FAKE_HOME = Path(tempfile.mkdtemp(prefix="chatbci-test-home-"))
os.environ["_MNE_FAKE_HOME_DIR"] = str(_FAKE_HOME)  # MNE's own test hook for ~/.mne
os.environ.setdefault("MPLCONFIGDIR", str(_FAKE_HOME / "mpl"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MOABB_DOWNLOAD_PROVIDER", "upstream")
if "MNE_DATA" not in os.environ and _SHARED_DATA.is_dir():
    os.environ["MNE_DATA"] = str(_SHARED_DATA)


def physionet_files_present(subject: int = 1, runs=(4, 8, 12)) -> bool:
    """Whether the EEGMMIDB hand-imagery runs of ``subject`` are on disk."""
    root = os.environ.get("MNE_DATA")
    if not root:
        return False
    base = Path(root) / "MNE-eegbci-data" / "files" / "eegmmidb" / "1.0.0"
    return all(
        (base / f"S{subject:03d}" / f"S{subject:03d}R{run:02d}.edf").is_file()
        for run in runs
    )


@pytest.fixture
def physionet_data():
    """Skip unless the PhysioNet EEGMMIDB imagery files are available."""
    if not physionet_files_present(1):
        pytest.skip(
            "PhysioNet EEGMMIDB files not found under MNE_DATA "
            "(set MNE_DATA to ../shared/data/mne_data, as CI does)"
        )
    return Path(os.environ["MNE_DATA"])


# -- a real local LLM server (tests/llm_server.py, tests/test_real_llm.py) ---------------

@pytest.fixture(scope="session")
def real_llm_server(request, tmp_path_factory):
    """A real llama.cpp server with a real small model on 127.0.0.1, for the session.

    Skipped, with the install command in the reason, when llama-cpp-python's
    server or the model packages are missing -- unless CHATBCI_REQUIRE_REAL_LLM=1
    (CI sets it after installing them), where a missing piece is a failure.
    The GGUF is assembled once into pytest's cache folder (CHATBCI_TEST_GGUF
    names a ready one instead). A server that is installed but fails to start
    fails the test, with the end of its log.
    """
    import llm_server

    if os.environ.get("CHATBCI_REAL_LLM", "").strip() not in ("1", "true", "yes"):
        # The trial session with a real 0.5B model takes minutes on 2 CPU cores.
        pytest.skip("the real-model trial runs only with CHATBCI_REAL_LLM=1, as .ci/run sets "
                    "(about 8 min on 2 CPU cores; see tests/llm_server.py for the server "
                    "and model)")
    reason = llm_server.unavailable_reason()
    if reason is not None:
        if os.environ.get("CHATBCI_REQUIRE_REAL_LLM", "").strip() in ("1", "true", "yes"):
            pytest.fail(f"CHATBCI_REQUIRE_REAL_LLM is set but {reason}", pytrace=False)
        pytest.skip(f"no real LLM server: {reason}")
    cache = getattr(request.config, "cache", None)
    folder = (cache.mkdir("chatbci-gguf") if cache is not None
              else tmp_path_factory.mktemp("gguf"))
    model = llm_server.assemble_model(folder)
    server = llm_server.LlamaServer(model, log_path=tmp_path_factory.mktemp("llm") / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- a Session talking to the project's local OpenAI-compatible test server -------------------

@pytest.fixture
def fake_llm():
    """The scripted local server (:class:`chatbci.assistant.testing.FakeLLMServer`)."""
    from chatbci.assistant.testing import FakeLLMServer

    with FakeLLMServer(model="fake-model") as srv:
        yield srv


def llm_session(ws, server, **kw):
    """A Session on ``ws`` whose model is ``server``, through the real openai SDK."""
    from chatbci.assistant.llm import LLMSettings, OpenAIChat
    from chatbci.assistant.session import Session

    settings = LLMSettings.resolve({"model": "fake-model", "base_url": server.base_url,
                                    "timeout": 10, "max_retries": 0},
                                   env={"OPENAI_API_KEY": "test-key-" + "x" * 24})
    return Session(ws, backend=OpenAIChat(settings, backoff=0.01), human="ada", n_jobs=1, **kw)


def worker_pids(pid=None):
    """Benchmark pool worker processes (not the resource trackers) under ``pid``."""
    import psutil

    proc = psutil.Process(pid)
    return [p.pid for p in proc.children(recursive=True)
            if "popen_loky_posix" in " ".join(p.cmdline())]


def alive(pids):
    """Those of ``pids`` still running (a zombie waiting to be reaped is gone)."""
    import psutil

    running = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.NoSuchProcess:
            pass
    return running
