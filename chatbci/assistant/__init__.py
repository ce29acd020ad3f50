"""The assistant: LLM client, offline backend, prompts, tools, autonomy policy, session.

``Session`` lives in :mod:`chatbci.assistant.session` (also ``chatbci.Session``).

See DESIGN.md ("One turn", "Offline and real"). :mod:`chatbci.assistant.testing`
holds a scripted OpenAI-compatible server for tests; it is not imported here.
"""

from .llm import (Backend, Completion, LLMConfigError, LLMError, LLMSettings, OpenAIChat,
                  ToolArgumentsError, ToolCall)

__all__ = [
    "Backend",
    "Completion",
    "LLMConfigError",
    "LLMError",
    "LLMSettings",
    "OpenAIChat",
    "ToolArgumentsError",
    "ToolCall",
]
