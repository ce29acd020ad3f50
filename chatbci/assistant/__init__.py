"""The assistant: LLM client, offline backend, prompts, tools, autonomy policy, session.

``Session`` lives in :mod:`chatbci.assistant.session` (also ``chatbci.Session``).

See DESIGN.md ("One turn", "Offline and real"). :mod:`chatbci.assistant.testing`
holds a scripted OpenAI-compatible server for tests; it is not imported here.
"""

from . import llm
from .llm import (Backend, Completion, LLMConfigError, LLMError, LLMSettings, OpenAIChat,
                  ToolArgumentsError, ToolCall)

# The client's public names are the package's; llm.py lists them once.
__all__ = [name for name in llm.__all__ if name not in ("DEFAULT_MODEL", "OPENAI_BASE_URL")]
