"""Secrets of every common shape stay out of the workspace, its exports and the model.

Each key below is built at run time (none is a real credential, and none is
spelled out in this file, so secret scanners have nothing to flag). Every
one is put in through the real code paths -- journal, knowledge notes,
``Workspace.configure``, ``export`` and the ``chatbci export`` CLI, a
:class:`~chatbci.assistant.session.Session` talking to the local
OpenAI-compatible test server -- and the files written (the SQLite database
and its write-ahead log included) and the request bodies the server
received are searched for it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from pathlib import Path

import pytest

from chatbci.assistant.llm import LLMSettings, OpenAIChat
from chatbci.assistant.session import Session
from chatbci.assistant.testing import FakeLLMServer, Reply
from chatbci.cli import main
from chatbci.export import FORMATS, export
from chatbci.workspace import Workspace
from chatbci.workspace.events import canonical_json
from chatbci.workspace.secrets import REDACTED, find_secrets, scrub, scrub_text, scrub_text_counted

_RNG = random.Random(20240601)
_ALNUM = string.ascii_letters + string.digits


def _chars(n, alphabet=_ALNUM):
    return "".join(_RNG.choice(alphabet) for _ in range(n))


def _b64url(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


HEX32 = hashlib.md5(b"azure").hexdigest()  # the shape of an Azure OpenAI key
JWT = ".".join([_b64url({"alg": "HS256", "typ": "JWT"}),
                _b64url({"sub": "1234567890", "name": "Ada", "iat": 1516239022}),
                _chars(43, _ALNUM + "-_")])
AWS_KEY_ID = "AKIA" + _chars(16, string.ascii_uppercase + string.digits)
AWS_SECRET = _chars(40, _ALNUM + "/+")
GITHUB_CLASSIC = "ghp" + "_" + _chars(36)
GITHUB_FINE = "github" + "_pat_" + _chars(22) + "_" + _chars(59)
QUERY_KEY = _chars(32)
QUERY_KEY2 = _chars(28)
URL_PASSWORD = "pw" + _chars(14)
TYPED_PASSWORD = "Tr0ub4dor" + _chars(6)
PEM_BODY = _chars(64, _ALNUM + "+/")
PEM = ("-----BEGIN RSA PRIVATE KEY-----\n" + PEM_BODY + "\n" + _chars(40, _ALNUM + "+/")
       + "\n-----END RSA PRIVATE KEY-----")
SK_KEY = "sk-proj-" + _chars(40)

#: (name, text a human or a tool might write, the secret in it). All but the
#: last two were written verbatim by chatbci before detect-secrets was used.
CASES = [
    ("azure 32-hex key in prose", f"my azure key is {HEX32}", HEX32),
    ("32-hex key assigned", f"AZURE_OPENAI_KEY={HEX32.upper()}", HEX32.upper()),
    ("Authorization: Bearer <JWT>", f"curl -H 'Authorization: Bearer {JWT}' ...", JWT),
    ("bare JWT", f"the session token {JWT} expired", JWT),
    ("AWS access key id", f"use {AWS_KEY_ID} for the bucket", AWS_KEY_ID),
    ("AWS secret access key", f"aws_secret_access_key={AWS_SECRET}", AWS_SECRET),
    ("GitHub classic token", f"push with {GITHUB_CLASSIC} please", GITHUB_CLASSIC),
    ("GitHub fine-grained token", f"push with {GITHUB_FINE} please", GITHUB_FINE),
    ("?api-key= in a URL", f"base_url http://127.0.0.1:8000/v1?api-key={QUERY_KEY}", QUERY_KEY),
    ("&key= in a URL", f"https://x.openai.azure.com/openai?api-version=2024-02-01&key={QUERY_KEY2}",
     QUERY_KEY2),
    ("password in a URL", f"clone https://ada:{URL_PASSWORD}@example.org/data.git", URL_PASSWORD),
    ("typed password", f'the server password = "{TYPED_PASSWORD}", do not share', TYPED_PASSWORD),
    ("PEM private key", f"here is the key:\n{PEM}\nthanks", PEM_BODY),
    ("OpenAI sk- key", f"OPENAI_API_KEY={SK_KEY}", SK_KEY),
]
SECRETS = [secret for _, _, secret in CASES]


def _leaks(data: bytes):
    """The secrets (of :data:`SECRETS`) found in ``data``."""
    return [s for s in SECRETS if s.encode() in data]


# ---------------------------------------------------------------------------
# The detector


@pytest.mark.parametrize("name, text, secret", CASES, ids=[c[0] for c in CASES])
def test_each_key_shape_is_redacted(name, text, secret):
    out, n = scrub_text_counted(text, ())
    assert secret not in out and REDACTED in out and n >= 1
    # What precedes the secret is kept (a private key goes with its BEGIN line).
    before = text[:text.index(secret)]
    assert out.startswith(before.split("-----BEGIN")[0])
    # Inside JSON (the journal scrubs the JSON text of a payload), quoted and
    # across escaped newlines, the secret is found as a human reads it, and
    # the result is still valid JSON.
    for typed in (text, f'he wrote "{text}"\nand\tmore'):
        doc = canonical_json({"text": typed, "n": 1})
        scrubbed = scrub_text(doc, ())
        assert secret not in scrubbed
        assert json.loads(scrubbed)["n"] == 1


def test_what_is_kept_around_a_redaction():
    assert scrub_text(CASES[9][1], ()) == (
        f"https://x.openai.azure.com/openai?api-version=2024-02-01&key={REDACTED}")
    assert scrub_text(f"http://h/v1?api-key={QUERY_KEY}&api-version=1", ()) == (
        f"http://h/v1?api-key={REDACTED}&api-version=1")
    assert scrub_text(f"https://ada:{URL_PASSWORD}@example.org", ()) == (
        f"https://ada:{REDACTED}@example.org")
    assert scrub_text(f"password: {TYPED_PASSWORD} and more", ()) == (
        f"password: {REDACTED} and more")
    assert scrub_text(f"Authorization: Bearer {JWT}", ()) == f"Authorization: Bearer {REDACTED}"
    assert scrub_text(f"a\n{PEM}\nb", ()) == f"a\n{REDACTED}\nb"
    # "İ" is two characters once lowercased: positions still hold.
    assert scrub_text(f"İİ password: {TYPED_PASSWORD} İ key {HEX32}", ()) == (
        f"İİ password: {REDACTED} İ key {REDACTED}")


def test_chatbci_own_hashes_and_ordinary_text_are_kept():
    sha = hashlib.sha256(b"x").hexdigest()
    session = uuid.uuid4().hex  # 32 hex, but not named as a key
    kept = [
        canonical_json({"hash": sha, "prev_hash": sha, "result_hash": sha,
                        "config_hash": sha, "session_id": session,
                        "artifacts": [f"figures/{sha}.png"], "key": sha}),
        f"sha256 key {sha} of the run",
        "task-related-desynchronisation-pipelines and the key point: mu ERD",
        "Bearer tokens are used for authentication in REST APIs",
        canonical_json({"usage": {"prompt_tokens": 1234, "completion_tokens": 56,
                                  "total_tokens": 1290}, "password": None, "secret": True}),
        "accuracy 0.83 ± 0.05 at 8-32 Hz, seeds 0123456789",
    ]
    for text in kept:
        assert scrub_text(text, ()) == text and not find_secrets(text)


def test_scrubbing_json_never_breaks_it():
    pieces = ["password: ", "secret=", '"', "\\", "\n", "key ", HEX32, JWT, AWS_KEY_ID,
              "?api-key=", "&", "https://u:p@h", "Bearer ", "é", "'", "true", "1", "}",
              REDACTED, "-----BEGIN PRIVATE KEY-----", GITHUB_CLASSIC, "\u2028"]
    rng = random.Random(3)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 10)))
        field = rng.choice(["text", "password", "api_key", "secret_x"])
        for doc in (canonical_json({field: text, "n": rng.choice([1, True, None])}),
                    json.dumps({field: text}, ensure_ascii=True)):
            once = scrub_text(doc, ())
            json.loads(once)
            assert scrub_text(once, ()) == once  # nothing is left to find


def test_counts_and_scrub_recurse():
    text = f"{GITHUB_CLASSIC} and {AWS_KEY_ID}"
    assert scrub_text_counted(text, ()) == (f"{REDACTED} and {REDACTED}", 2)
    assert scrub_text_counted("nothing here", ()) == ("nothing here", 0)
    assert scrub({JWT: [HEX32 + " is the key", (f"key {HEX32}",)]}, ()) == {
        REDACTED: [HEX32 + " is the key", (f"key {REDACTED}",)]}


# ---------------------------------------------------------------------------
# Every workspace file and every export


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "CHATBCI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


def _scan(root: Path):
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files
    return {str(p.relative_to(root)): _leaks(p.read_bytes()) for p in files
            if _leaks(p.read_bytes())}


def test_no_key_shape_reaches_a_workspace_file_or_export(tmp_path, clean_env, monkeypatch):
    env_key = "env-only-" + _chars(24)  # no shape at all: only the env var knows it
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", env_key)
    everything = "\n".join(text for _, text, _ in CASES) + f"\nand {env_key}"
    ws = Workspace.create(tmp_path / "w", title="Secrets", goal=f"goal with {JWT}")
    j = ws.journal
    j.append("message", "human:ada", {"text": everything})
    j.append("message", "human:ada", {"text": f'he said "{everything}"'})  # JSON-escaped
    call = j.append("tool_call", "ai:m", {"tool": "t", "args": {
        "headers": {"Authorization": f"Bearer {JWT}", GITHUB_FINE: "x"},
        "aws_secret_access_key": AWS_SECRET,
        "url": f"http://127.0.0.1:8000/v1?api-key={QUERY_KEY}"}})
    j.append("tool_result", "system", {"tool": "t", "ok": False,
                                       "summary": {"stderr": everything}}, call.id)
    j.append("error", "system", {"message": f"401 Unauthorized (key {HEX32})"})
    ws.knowledge.add(f"Access to {GITHUB_CLASSIC}", everything, author="human:ada",
                     sources=[f"https://ada:{URL_PASSWORD}@example.org/paper.pdf"])
    ws.configure(actor="human:ada", llm={
        "base_url": f"https://x.openai.azure.com/openai?api-version=2024-02-01&key={QUERY_KEY2}"})
    assert j.verify().ok
    wal = tmp_path / "w" / "journal.sqlite-wal"
    assert wal.is_file()
    assert _scan(tmp_path / "w") == {}  # with the write-ahead log
    assert f"api-version=2024-02-01&key={REDACTED}" in (tmp_path / "w" / "workspace.toml"
                                                          ).read_text()
    assert j.events(kind="message")[0].payload["text"].startswith(
        f"my azure key is {REDACTED}\nAZURE_OPENAI_KEY={REDACTED}\n")
    ws.close()
    assert _scan(tmp_path / "w") == {}

    # Every export format, plain and anonymised, through the API and the CLI.
    with Workspace.open(tmp_path / "w") as ws:
        paths = export(ws, "all")
        assert len(paths) == len(FORMATS)
        export(ws, "all", anonymize=True)
    assert main(["export", str(tmp_path / "w"), "--format", "all", "--anonymize",
                 "--out", str(tmp_path / "cli-out")]) == 0
    assert _scan(tmp_path / "w" / "exports") == {}
    assert any((tmp_path / "w" / "exports" / "anonymized").iterdir())
    assert _scan(tmp_path / "cli-out") == {}
    assert env_key.encode() not in b"".join(
        p.read_bytes() for p in (tmp_path / "w").rglob("*") if p.is_file())


def test_exports_redact_keys_typed_into_workspace_toml_by_hand(tmp_path, clean_env):
    """The second line of defence: a key that never went through the journal."""
    ws = Workspace.create(tmp_path / "w", title="T", goal="GOAL")
    ws.journal.append("message", "human:ada", {"text": "hello"})
    ws.close()
    toml = tmp_path / "w" / "workspace.toml"
    toml.write_text(toml.read_text().replace(
        "GOAL", f"decode; token {JWT}, key {HEX32}, {GITHUB_CLASSIC}, {AWS_KEY_ID}"))
    with Workspace.open(tmp_path / "w") as ws:
        assert GITHUB_CLASSIC in ws.config.goal
        export(ws, "all")
        export(ws, "all", anonymize=True)
    assert _scan(tmp_path / "w" / "exports") == {}


# ---------------------------------------------------------------------------
# What the human types reaches the model redacted


KEY = "test-key-" + "a1b2c3d4" * 3


@pytest.fixture
def server():
    with FakeLLMServer(model="fake-model", api_key=KEY) as srv:
        yield srv


def test_typed_secrets_are_redacted_before_the_model_sees_them(tmp_path, clean_env, server):
    action = {"tool": "run_benchmark", "args": {"pipelines": ["CSP+LDA"],
                                                "dataset": "SimulatedMI", "subjects": "1-2"}}
    server.script([
        Reply.text("I will not repeat it."),
        Reply.tool_calls([("propose", {"action": action, "rationale": "A first baseline."})]),
        Reply.text("I propose a baseline."),
        Reply.text("Understood."),
    ])
    ws = Workspace.create(tmp_path / "w", title="T", goal="g", datasets=["SimulatedMI"],
                          subjects="1-3")
    settings = LLMSettings.resolve({"model": "fake-model", "base_url": server.base_url},
                                   env={"OPENAI_API_KEY": KEY})
    session = Session(ws, backend=OpenAIChat(settings, backoff=0.01), human="ada", n_jobs=1)

    typed = (f"my azure key is {HEX32}, the GitHub token {GITHUB_CLASSIC} and "
             f"Authorization: Bearer {JWT}")
    turn = session.send(typed)
    assert turn.notices == ["3 secrets were redacted from what you typed before it was "
                            "journaled or sent to the model."]
    message = turn.events[0]
    assert message.payload == {"text": (f"my azure key is {REDACTED}, the GitHub token "
                                        f"{REDACTED} and Authorization: Bearer {REDACTED}"),
                               "redacted": 3}
    assert session.send("Plain words, nothing secret").notices == []

    # A rationale typed for a decision goes to the model with the next turn.
    sugg = ws.journal.pending_suggestions()[0]
    rejected = session.reject(sugg.id, f"no: first rotate {AWS_KEY_ID}")
    assert rejected.notices == ["1 secret was redacted from what you typed before it was "
                                "journaled or sent to the model."]
    session.send("What next?")
    session.close()

    bodies = json.dumps(server.requests)
    assert len(server.requests) == 4
    assert _leaks(bodies.encode()) == []
    assert f"my azure key is {REDACTED}" in bodies
    assert f"rejected suggestion #{sugg.id}: no: first rotate {REDACTED}" in bodies
    assert _scan(tmp_path / "w") == {}
    ws.close()


# ---------------------------------------------------------------------------
# The detect-secrets plugins in use


def _plugin_samples():
    """A string each regex plugin of detect-secrets flags (built at run time)."""
    lower_hex, low = "0123456789abcdef", string.ascii_lowercase + string.digits
    return {
        "ArtifactoryDetector": [f" AKC{_chars(12)} "],
        "AWSKeyDetector": [AWS_KEY_ID, f'aws_secret_key = "{_chars(40)}"'],
        "AzureStorageKeyDetector": ["AccountKey=" + _chars(86) + "=="],
        "BasicAuthDetector": [f"https://ada:{URL_PASSWORD}@example.org"],
        "CloudantDetector": [f'cloudant_password = "{_chars(64, lower_hex)}"',
                             f"https://acct:{_chars(64, lower_hex)}@acct.cloudant.com"],
        "DiscordBotTokenDetector": [f"M{_chars(23)}.{_chars(6)}.{_chars(27)}"],
        "GitHubTokenDetector": [GITHUB_CLASSIC],
        "GitLabTokenDetector": ["glpat-" + _chars(20)],
        "IbmCloudIamDetector": [f'ibm_cloud_iam_api_key = "{_chars(44)}"'],
        "IbmCosHmacDetector": [f'ibm_cos_hmac_secret_access_key = "{_chars(48, lower_hex)}"'],
        "JwtTokenDetector": [JWT],
        "MailchimpDetector": [_chars(32, low) + "-us12"],
        "NpmDetector": ["//registry.npmjs.org/:_authToken=npm_" + _chars(36)],
        "OpenAIDetector": ["sk-" + _chars(20) + "T3Blb" + "kFJ" + _chars(20)],
        "PrivateKeyDetector": [PEM],
        "PypiTokenDetector": ["pypi-AgEIcHlwaS5vcmc" + _chars(70)],
        "SendGridDetector": [f"SG.{_chars(22)}.{_chars(43)}"],
        "SlackDetector": ["xoxb-1234-5678-" + _chars(20, low),
                          "https://hooks.slack.com/services/"
                          f"T{_chars(8)}/B{_chars(8)}/{_chars(24)}"],
        "SoftlayerDetector": [f'softlayer_api_key = "{_chars(64, low)}"',
                              f"https://api.softlayer.com/soap/v3/{_chars(64, low)}"],
        "SquareOAuthDetector": ["sq0csp-" + _chars(43)],
        "StripeDetector": ["sk_" + "live_" + _chars(24)],
        "TelegramBotTokenDetector": [f"123456789:{_chars(35)}"],
        "TwilioKeyDetector": ["AC" + _chars(32, low), "SK" + _chars(32, low)],
    }


def test_every_regex_plugin_of_detect_secrets_is_used():
    """Each plugin's own detection implies ours, in any letter case, also in JSON.

    The triggers that let most patterns skip most texts are tuned to the
    installed detect-secrets; a plugin that is new, or whose patterns changed
    so that a trigger would hide them, fails here.
    """
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector

    samples = _plugin_samples()
    skipped = {"IPPublicDetector"}  # an address is not a secret
    plugins = {c.__name__: c for c in get_mapping_from_secret_type_to_class().values()
               if issubclass(c, RegexBasedDetector) and c.__name__ not in skipped}
    assert sorted(plugins) == sorted(samples)
    for name, texts in samples.items():
        plugin = plugins[name]()
        for text in texts:
            assert list(plugin.analyze_string(text)), (name, text)  # a valid sample
            for form in (text, text.upper(), text.lower()):
                if not list(plugin.analyze_string(form)):
                    continue  # the plugin itself does not flag this form
                line = f"see {form} here"
                assert find_secrets(line), (name, form)
                assert REDACTED in scrub_text(canonical_json({"text": line}), ()), (name, form)


def test_the_notebook_panel_tells_the_human_a_secret_was_redacted(tmp_path, clean_env):
    from chatbci.assistant.offline import OfflineBackend
    from chatbci.jupyter import ChatPanel

    path = tmp_path / "study"
    Workspace.create(path, title="T", goal="g", datasets=["SimulatedMI"], subjects="1-3").close()
    panel = ChatPanel(path, backend=OfflineBackend(), n_jobs=1)
    try:
        panel.send(f"benchmark MDM on SimulatedMI subjects 1, my key is {HEX32}", wait=True,
                   timeout=240)
        assert panel.last_turn.notices
        lines = [w.value for w in panel.conversation.children
                 if "chatbci-system" in w._dom_classes]
        assert any("1 secret was redacted" in v for v in lines)
        card = next(c for c in panel.cards.values() if c.state == "pending")
        card.reject(f"not now, rotate {GITHUB_CLASSIC} first")
        assert panel.wait_idle(240)
        assert sum("1 secret was redacted" in w.value for w in panel.conversation.children
                   if "chatbci-system" in w._dom_classes) == 2
        assert HEX32 not in str([w.value for w in panel.conversation.children
                                 if hasattr(w, "value")])
    finally:
        panel.close()
    assert _scan(path) == {}


def test_chatbci_chat_tells_the_human_a_secret_was_redacted(tmp_path, clean_env, capsys,
                                                            monkeypatch):
    path = tmp_path / "study"
    Workspace.create(path, title="T", goal="g", datasets=["SimulatedMI"], subjects="1-3").close()
    typed = iter([f"benchmark MDM on SimulatedMI subjects 1, my key is {HEX32}",
                  "n", f"rotate {GITHUB_CLASSIC} first", "/quit"])

    def fake_input(prompt=""):
        print(prompt, end="")
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    assert main(["chat", str(path), "--offline", "--human", "ada"]) == 0
    out = capsys.readouterr().out
    notice = ("chatbci: 1 secret was redacted from what you typed before it was journaled "
              "or sent to the model.")
    assert out.count(notice) == 2, out
    assert _leaks(out.encode()) == [] and _scan(path) == {}
