"""The chat panel in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium via Playwright.

Opens a notebook, runs the cell that shows the panel, types a request, clicks
Approve on the suggestion card and waits for the result table. A screenshot is
saved as a test artifact (``tests/artifacts/jupyter-panel.png``; the folder
can be changed with ``CHATBCI_TEST_ARTIFACTS``).

Skipped, with the reason, when ``/usr/bin/chromium`` or the ``playwright``
package is missing (``.ci/run`` installs both). Playwright never downloads a
browser here: it drives the system Chromium.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from chatbci.workspace import Workspace

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("CHATBCI_TEST_ARTIFACTS",
                                Path(__file__).resolve().parent / "artifacts"))

pytestmark = pytest.mark.slow


def _requirements():
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not found (apt-get install chromium; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; .ci/run does)"
    return None


def _skip_or_fail(reason):
    # CI installs both: there a missing browser is a failure, not a silent skip.
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jupyter_env(tmp_path):
    """Jupyter, IPython and the browser write under tmp_path, never to ~."""
    home = tmp_path / "home"
    dirs = {"HOME": home, "JUPYTER_CONFIG_DIR": home / "jupyter-config",
            "JUPYTER_DATA_DIR": home / "jupyter-data",
            "JUPYTER_RUNTIME_DIR": home / "jupyter-runtime", "IPYTHONDIR": home / "ipython",
            "XDG_CONFIG_HOME": home / ".config", "XDG_CACHE_HOME": home / ".cache"}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **{k: str(v) for k, v in dirs.items()})
    env.update(MPLBACKEND="Agg", PYTHONUNBUFFERED="1", JUPYTER_PLATFORM_DIRS="1")
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    # This interpreter as the python3 kernel, whatever `python` is on PATH.
    spec = dirs["JUPYTER_DATA_DIR"] / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    # No news or update prompts over the notebook.
    settings = dirs["JUPYTER_CONFIG_DIR"] / "lab" / "user-settings" / "@jupyterlab"
    (settings / "apputils-extension").mkdir(parents=True, exist_ok=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return env


def _start_lab(root, env, port, token, log):
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("jupyter lab did not answer /api/status within 60 s")


def _stop(proc):
    if proc is None or proc.poll() is not None:
        return
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def _run_first_cell(page):
    """Run the notebook's first cell once the kernel is connected and idle."""
    editor = page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first
    editor.wait_for(timeout=60_000)
    # The status bar says "<kernel> | Idle" once the kernel is connected (the toolbar's
    # execution indicator reads "idle" before that).
    page.locator(".jp-StatusBar-Item", has_text="ipykernel) | Idle").first.wait_for(
        timeout=60_000)
    for _ in range(3):
        editor.click()
        page.keyboard.press("Shift+Enter")
        try:
            page.locator(".chatbci-panel").first.wait_for(timeout=40_000)
            return
        except Exception:  # noqa: BLE001 - not run (yet): run it again if still "[ ]"
            prompt = page.locator(".jp-NotebookPanel .jp-Cell .jp-InputPrompt").first
            if "*" in prompt.inner_text():
                page.locator(".chatbci-panel").first.wait_for(timeout=60_000)
                return
    raise AssertionError("the notebook's first cell did not show the panel")


def test_panel_in_jupyterlab_with_chromium(tmp_path):
    reason = _requirements()
    if reason:
        _skip_or_fail(reason)
    from playwright.sync_api import sync_playwright

    root = tmp_path / "lab"
    root.mkdir()
    ws = Workspace.create(root / "study", title="Left vs right hand imagery",
                          goal="Find the best motor-imagery decoder for left vs right hand",
                          datasets=["SimulatedMI"], subjects="1-3")
    ws.close()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(
        "import chatbci\n"
        "panel = chatbci.chat('study', backend='offline', human='ada', n_jobs=1)")]
    nbformat.write(nb, root / "panel.ipynb")

    env = _jupyter_env(tmp_path)
    port, token = _free_port(), secrets.token_urlsafe(24)
    log_path = tmp_path / "jupyter-lab.log"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # git-ignored (tests/artifacts/)
    shot = ARTIFACTS / "jupyter-panel.png"
    proc = None
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            proc = _start_lab(root, env, port, token, log)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             env=env, headless=True)
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 1500},
                                            device_scale_factor=1)
                    page.goto(f"http://127.0.0.1:{port}/lab/tree/panel.ipynb?token={token}",
                              wait_until="domcontentloaded", timeout=60_000)
                    _run_first_cell(page)
                    panel = page.locator(".chatbci-panel").first
                    box = panel.locator(".chatbci-input textarea")
                    box.wait_for(timeout=90_000)
                    box.fill("suggest pipelines")
                    panel.locator(".chatbci-send").click()

                    approve = panel.locator(".chatbci-card .chatbci-approve").first
                    approve.wait_for(timeout=60_000)
                    panel.locator(".chatbci-card .chatbci-rationale input").first.fill(
                        "three canonical families first")
                    approve.click()

                    table = panel.locator("table.chatbci-table", has_text="CSP+LDA").first
                    table.wait_for(state="visible", timeout=90_000)
                    page.locator(".chatbci-card .cb-badge.cb-accept").first.wait_for(
                        timeout=10_000)
                    # Let the last widget updates land, then keep a picture.
                    page.wait_for_timeout(500)
                    page.locator(".jp-NotebookPanel .jp-Cell").first.scroll_into_view_if_needed()
                    panel.screenshot(path=str(tmp_path / "panel.png"))
                    page.screenshot(path=str(tmp_path / "page.png"))
                    assert table.is_visible()
                    text = table.inner_text()
                    assert "TS+LR" in text and "MDM" in text
                    bubbles = panel.locator(".cb-bubble.cb-human", has_text="suggest pipelines")
                    assert bubbles.count() == 1

                    # Stop works while a benchmark runs: the kernel is not blocked.
                    box.fill("benchmark CSP+LDA on SimulatedMI subjects 1-10")
                    panel.locator(".chatbci-send").click()
                    approve = panel.locator(".chatbci-card .chatbci-approve:not([disabled])")
                    approve.first.wait_for(timeout=60_000)
                    approve.first.click()
                    panel.locator(".chatbci-progress", has_text=re.compile(
                        r"\d+ of \d+ results")).wait_for(timeout=60_000)
                    panel.locator(".chatbci-stop:not([disabled])").click()
                    panel.locator(".cb-error", has_text="Stopped").first.wait_for(
                        timeout=60_000)
                    assert "stopped at" in panel.locator(".chatbci-progress").inner_text()
                except BaseException:
                    # Keep what the browser showed, for whoever reads the failure.
                    try:
                        page.screenshot(path=str(ARTIFACTS / "jupyter-failure.png"))
                        print(f"failure screenshot: {ARTIFACTS / 'jupyter-failure.png'}")
                    except Exception:  # noqa: BLE001
                        pass
                    raise
                finally:
                    browser.close()
        except BaseException:
            log.flush()
            print("---- jupyter lab log (tail) ----")
            print(log_path.read_text(errors="replace")[-4000:])
            raise
        finally:
            _stop(proc)
    shutil.copyfile(tmp_path / "panel.png", shot)
    shutil.copyfile(tmp_path / "page.png", ARTIFACTS / "jupyter-page.png")
    print(f"screenshot: {shot}  ({time.monotonic() - t0:.0f} s)")

    # What the browser did is in the journal: a human decision, then the run.
    with Workspace.open(root / "study") as ws:
        decisions = ws.journal.events(kind="decision")
        assert [d.payload["verdict"] for d in decisions] == ["accept", "accept"]
        assert decisions[0].actor == "human:ada"
        assert decisions[0].payload["rationale"] == "three canonical families first"
        assert len(ws.journal.events(kind="run")) == 1  # the stopped one has no run
        assert "stopped" in ws.journal.events(kind="error")[-1].payload["message"].lower()
