"""Versioned prompt templates (Jinja2), hashed so every LLM call records them.

Each template is a Markdown file with front matter (``name``, ``version``);
:func:`load` returns a :class:`Prompt` whose ``sha256`` covers the whole
file, so any edit changes the hash recorded in the journal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import jinja2
import yaml

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                          keep_trailing_newline=False)


@dataclass(frozen=True)
class Prompt:
    """A prompt template: name, version, text and hash."""

    name: str
    version: int
    template: str
    sha256: str

    @property
    def ref(self) -> str:
        """Short reference for the journal: ``name@vN:hash12``."""
        return f"{self.name}@v{self.version}:{self.sha256[:12]}"

    def render(self, **values) -> str:
        return _ENV.from_string(self.template).render(**values).strip()


@lru_cache(maxsize=None)
def load(name: str) -> Prompt:
    """Load the prompt template ``name`` shipped with chatbci."""
    files = resources.files(__name__)
    try:
        raw = (files / f"{name}.md").read_text(encoding="utf-8")
    except FileNotFoundError:
        names = sorted(p.name[:-3] for p in files.iterdir() if p.name.endswith(".md"))
        raise ValueError(f"No prompt template {name!r}; available: {names}.") from None
    _, front, body = raw.split("---", 2)
    meta = yaml.safe_load(front)
    return Prompt(meta["name"], int(meta["version"]), body.strip(),
                  hashlib.sha256(raw.encode()).hexdigest())


def load_all() -> list[Prompt]:
    """Every prompt template shipped with chatbci, by name."""
    files = resources.files(__name__)
    return [load(p.name[:-3]) for p in sorted(files.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".md")]
