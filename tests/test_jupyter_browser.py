"""The chat panel in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium via Playwright.

Walks the tutorial flow in the panel (explore, a citation opened in place, an
error, suggest, approve, progress, stop, compare, export) three times: light
theme, dark theme, and a 1000 px window with the file browser open. Each walk
checks what a person sees: no horizontal scrollbar in the panel, every card
button whole, readable text on cards (contrast measured), the card after the
message that announces it, Enter sends and Shift+Enter adds a line, an error
shown once, a stop shown as a stop with its kept results.

Screenshots are saved as test artifacts (``tests/artifacts/jupyter-panel*.png``;
the folder can be changed with ``CHATBCI_TEST_ARTIFACTS``); the README's
images are these, copied to ``docs/panel.png``, ``docs/panel-dark.png`` and
``docs/panel-narrow.png`` when they change.

Skipped, with the reason, when ``/usr/bin/chromium`` or the ``playwright``
package is missing (``.ci/run`` installs both). Playwright never downloads a
browser here: it drives the system Chromium.
"""

from __future__ import annotations

import json
import os
import re
import secrets
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


#: The three walks: (name, JupyterLab theme, viewport width, file browser open).
LOOKS = [("light", "JupyterLab Light", 1280, False),
         ("dark", "JupyterLab Dark", 1280, False),
         ("narrow", "JupyterLab Light", 1000, True)]

# What a person would call a defect, measured in the page (see _layout_defects).
_DEFECTS_JS = """
(panel) => {
  const out = [];
  const name = (el) => el.className && typeof el.className === 'string'
      ? el.tagName.toLowerCase() + '.' + el.className.split(' ').filter(Boolean).join('.')
      : el.tagName.toLowerCase();
  for (const el of [panel, ...panel.querySelectorAll('*')]) {
    const st = getComputedStyle(el);
    if (st.display === 'none' || !el.offsetParent && el !== panel) continue;
    // A wide table may scroll inside its own box; nothing else in the panel may.
    if (el.closest('.cb-result, .cb-cite-detail, pre')) continue;
    if ((st.overflowX === 'auto' || st.overflowX === 'scroll')
        && el.scrollWidth > el.clientWidth + 1) {
      out.push('horizontal scrollbar: ' + name(el) + ' ' + el.scrollWidth + '>' + el.clientWidth);
    }
  }
  const box = panel.getBoundingClientRect();
  for (const b of panel.querySelectorAll('.chatbci-card button, .chatbci-footer button')) {
    if (!b.offsetParent) continue;
    const r = b.getBoundingClientRect();
    if (b.scrollWidth > b.clientWidth + 1) out.push('button text cut: ' + b.innerText);
    if (r.right > box.right + 1 || r.left < box.left - 1) out.push('button outside: ' + b.innerText);
  }
  return out;
}
"""

_CONTRAST_JS = """
(el) => {
  const parse = (c) => {
    let m = c.match(/rgba?\\(([^)]+)\\)/);
    if (m) { const v = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
             return [v[0] / 255, v[1] / 255, v[2] / 255, v.length > 3 ? v[3] : 1]; }
    m = c.match(/color\\(srgb ([^)]+)\\)/);
    if (m) { const v = m[1].split(/[ \\/]+/).filter(Boolean).map(Number);
             return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1]; }
    return null;
  };
  const lum = ([r, g, b]) => {
    const f = (x) => x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4);
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  // The background behind the text: the first opaque one up the tree.
  let bg = null, node = el;
  while (node && node.nodeType === 1) {
    const c = parse(getComputedStyle(node).backgroundColor);
    if (c && c[3] > 0.5) { bg = c; break; }
    node = node.parentElement;
  }
  const fg = parse(getComputedStyle(el).color);
  if (!bg || !fg) return null;
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}
"""


def _set_theme(env, theme):
    settings = (Path(env["JUPYTER_CONFIG_DIR"]) / "lab" / "user-settings" / "@jupyterlab" /
                "apputils-extension")
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "themes.jupyterlab-settings").write_text(json.dumps({"theme": theme}))


def _notebook(root, name, study):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(
        "import chatbci\n"
        f"panel = chatbci.chat({study!r}, backend='offline', human='ada', n_jobs=1)")]
    nbformat.write(nb, root / name)


def _send(page, panel, text):
    box = panel.locator(".chatbci-input textarea")
    box.click()
    box.fill(text)
    page.keyboard.press("Enter")


def _answer(panel, n):
    """Wait for the n-th answer of the assistant in the panel."""
    panel.locator(".chatbci-log .cb-bubble.cb-ai:not(:has(.cb-cursor))").nth(n - 1).wait_for(
        timeout=90_000)


def _check_looks(page, panel, where):
    defects = panel.evaluate(_DEFECTS_JS)
    assert not defects, f"{where}: {defects}"
    for sel in (".chatbci-card .cb-card-title", ".chatbci-card .cb-why",
                ".chatbci-card .cb-action", ".cb-bubble.cb-ai .cb-text",
                ".chatbci-header .cb-title", ".cb-tool .cb-name"):
        for el in panel.locator(sel).all()[:3]:
            ratio = el.evaluate(_CONTRAST_JS)
            assert ratio is None or ratio >= 4.5, f"{where}: {sel} contrast {ratio:.2f}"


def _walk(page, panel, look):
    """The tutorial flow in the panel, checking what is shown at each step."""
    box = panel.locator(".chatbci-input textarea")
    box.wait_for(timeout=90_000)
    placeholder = box.get_attribute("placeholder")
    assert "Enter to send" in placeholder and "Shift+Enter" in placeholder

    # Shift+Enter is a new line, Enter sends.
    box.click()
    box.type("explore subject 1")
    page.keyboard.press("Shift+Enter")
    box.type("of SimulatedMI")
    assert box.input_value() == "explore subject 1\nof SimulatedMI"
    assert panel.locator(".cb-bubble.cb-human").count() == 0
    page.keyboard.press("Enter")
    _answer(panel, 1)
    assert box.input_value() == ""
    panel.locator(".chatbci-figures img").first.wait_for(timeout=60_000)

    # A citation chip opens the cited result in place.
    chip = panel.locator("label.cb-cite", has_text="explore_subject").first
    chip.click()
    detail = panel.locator(".cb-cite-detail", has_text="explore_subject").first
    detail.wait_for(state="visible", timeout=10_000)
    assert detail.locator("img").count() == 3
    chip.click()
    detail.wait_for(state="hidden", timeout=10_000)

    # An error is shown once, with what to do.
    _send(page, panel, "explore subject 99")
    _answer(panel, 2)
    assert panel.locator(".cb-tool.cb-fail").count() == 1
    assert panel.locator(".cb-error").count() == 0
    assert "subjects 1-10" in panel.locator(".cb-bubble.cb-ai").nth(1).inner_text()

    # Suggest, then approve: the card comes after the message that announces it.
    _send(page, panel, "suggest pipelines")
    approve = panel.locator(".chatbci-card .chatbci-approve:not([disabled])").first
    approve.wait_for(timeout=60_000)
    order = panel.evaluate("""(p) => {
        const all = [...p.querySelectorAll('.chatbci-log .cb-bubble.cb-ai, .chatbci-log .chatbci-card')];
        return all.map(e => e.classList.contains('chatbci-card') ? 'card' : 'ai');
    }""")
    assert order[-2:] == ["ai", "card"], order
    _check_looks(page, panel, f"{look}: pending card")
    panel.locator(".chatbci-card .chatbci-rationale input").first.fill(
        "three canonical families first")
    approve.scroll_into_view_if_needed()
    panel.locator(".chatbci-card .chatbci-modify").first.wait_for(state="visible")
    page.wait_for_timeout(300)
    panel.screenshot(path=str(ARTIFACTS / f"jupyter-panel-card-{look}.png"))
    approve.click()
    table = panel.locator("table.chatbci-table", has_text="CSP+LDA").first
    table.wait_for(state="visible", timeout=120_000)
    page.locator(".chatbci-card .cb-badge.cb-accept").first.wait_for(timeout=10_000)
    text = table.inner_text()
    assert "TS+LR" in text and "MDM" in text
    assert "approved by you" in panel.locator(".cb-tool", has_text="run_benchmark").first.inner_text()

    # A long benchmark: progress per step with an ETA, then Stop.
    # (Subjects 1-3 are cached: 21 results to compute, a minute on a busy machine.)
    _send(page, panel, "benchmark CSP+LDA, TS+LR and MDM on SimulatedMI subjects 1-10")
    approve = panel.locator(".chatbci-card .chatbci-approve:not([disabled])").first
    approve.wait_for(timeout=60_000)
    approve.click()
    progress = panel.locator(".chatbci-progress")
    progress.filter(has_text=re.compile(r"step \d+ of \d+ .*left")).wait_for(timeout=90_000)
    panel.locator(".chatbci-stop:not([disabled])").click()
    bar = progress.locator(".widget-hprogress").first.bounding_box()
    assert bar and bar["width"] > 100 and bar["height"] > 4, bar  # the bar itself is seen
    panel.locator(".cb-tool.cb-stopped").first.wait_for(timeout=60_000)
    page.wait_for_timeout(300)
    panel.screenshot(path=str(ARTIFACTS / f"jupyter-panel-stopped-{look}.png"))
    assert "stopped at" in progress.inner_text()
    assert panel.locator(".cb-error").count() == 0
    assert panel.locator(".cb-tool.cb-stopped").first.inner_text().count("Kept") == 1
    panel.locator(".chatbci-stop[disabled]").wait_for(timeout=30_000)

    # Compare, then export.
    _send(page, panel, "compare pipelines")
    panel.locator(".cb-result", has_text="Paired tests").first.wait_for(timeout=90_000)
    panel.locator(".chatbci-export select").select_option(label="Markdown")
    panel.locator(".cb-system", has_text="Exported").first.wait_for(timeout=120_000)
    _check_looks(page, panel, f"{look}: end of the flow")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = _requirements()
    if reason:
        _skip_or_fail(reason)
    tmp_path = tmp_path_factory.mktemp("lab")
    root = tmp_path / "lab"
    root.mkdir()
    env = _jupyter_env(tmp_path)
    port, token = _free_port(), secrets.token_urlsafe(24)
    log_path = tmp_path / "jupyter-lab.log"
    with open(log_path, "wb") as log:
        proc = _start_lab(root, env, port, token, log)
        try:
            yield {"root": root, "env": env, "port": port, "token": token, "log": log_path}
        finally:
            _stop(proc)


@pytest.mark.parametrize("look,theme,width,sidebar", LOOKS, ids=[x[0] for x in LOOKS])
def test_tutorial_flow_in_jupyterlab(lab, look, theme, width, sidebar):
    from playwright.sync_api import sync_playwright

    root, env = lab["root"], lab["env"]
    study = f"study-{look}"
    Workspace.create(root / study, title="Left vs right hand imagery",
                     goal="Find the best motor-imagery decoder for left vs right hand",
                     datasets=["SimulatedMI"], subjects="1-3").close()
    _notebook(root, f"panel-{look}.ipynb", study)
    _set_theme(env, theme)  # read by JupyterLab when the page loads
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # git-ignored (tests/artifacts/)
    shot = ARTIFACTS / f"jupyter-panel-{look}.png"
    t0 = time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, env=env,
                                     headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": 1400},
                                    device_scale_factor=1)
            # A JupyterLab workspace per walk: no tab of an earlier walk is restored.
            page.goto(f"http://127.0.0.1:{lab['port']}/lab/workspaces/{look}/tree/"
                      f"panel-{look}.ipynb?token={lab['token']}",
                      wait_until="domcontentloaded", timeout=60_000)
            dark = theme.endswith("Dark")
            page.locator(f"body[data-jp-theme-light='{'false' if dark else 'true'}']").wait_for(
                state="attached", timeout=60_000)
            left = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab")
            current = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
            if sidebar and current.count() == 0:
                left.first.click()
            elif not sidebar and current.count():
                current.first.click()
            _run_first_cell(page)
            panel = page.locator(".chatbci-panel").first
            _walk(page, panel, look)
            page.wait_for_timeout(500)  # the last widget updates land
            panel.screenshot(path=str(shot))
            page.screenshot(path=str(ARTIFACTS / f"jupyter-page-{look}.png"))
        except BaseException:
            try:  # keep what the browser showed, for whoever reads the failure
                page.screenshot(path=str(ARTIFACTS / f"jupyter-failure-{look}.png"))
                print(f"failure screenshot: {ARTIFACTS / f'jupyter-failure-{look}.png'}")
            except Exception:  # noqa: BLE001
                pass
            print("---- jupyter lab log (tail) ----")
            print(lab["log"].read_text(errors="replace")[-4000:])
            raise
        finally:
            browser.close()
    print(f"screenshot: {shot}  ({time.monotonic() - t0:.0f} s)")

    # What the browser did is in the journal: the human's decisions, then the runs.
    with Workspace.open(root / study) as ws:
        decisions = ws.journal.events(kind="decision")
        assert [d.payload["verdict"] for d in decisions] == ["accept", "accept"]
        assert decisions[0].actor == "human:ada"
        assert decisions[0].payload["rationale"] == "three canonical families first"
        assert len(ws.journal.events(kind="run")) == 1  # the stopped one has no run
        assert "stopped" in ws.journal.events(kind="error")[-1].payload["message"].lower()
