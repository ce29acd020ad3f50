"""The assistant: LLM client, offline backend, prompts, tools, autonomy policy, session.

``Session`` lives in :mod:`chatbci.assistant.session` (also ``chatbci.Session``).

See DESIGN.md ("One turn", "Offline and real"). :mod:`chatbci.assistant.testing`
holds a scripted OpenAI-compatible server for tests; it is not imported here.
"""

# The client's public names are the package's; llm.py lists them once. Imported on
# first use (PEP 562): the OpenAI client takes half a second to import, which commands
# that never talk to a model (`chatbci bench` answered from the cache) should not pay.
_NOT_EXPORTED = ("DEFAULT_MODEL", "OPENAI_BASE_URL")


def __getattr__(name):
    import importlib

    if name == "llm" or name.startswith("__") and name != "__all__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    llm = importlib.import_module(f"{__name__}.llm")
    if name == "__all__":
        return [n for n in llm.__all__ if n not in _NOT_EXPORTED]
    if name in llm.__all__ and name not in _NOT_EXPORTED:
        return getattr(llm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
