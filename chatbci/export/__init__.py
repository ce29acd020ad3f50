"""Export a ChatBCI session for a paper.

Everything comes from the workspace's journal (and the files it points to):
no language model is needed, the same journal always gives the same files,
and every export names the journal head it covers so a reader can check it
with ``chatbci verify``.

:func:`export` writes a transcript and paper material in one or more formats
(``md``, ``html``, ``tex``, ``json``, ``ipynb``; see
:mod:`chatbci.export.formats` for the files of each). The building blocks are
public too:

- :func:`methods_section` -- datasets, paradigm, evaluation, pipelines,
  statistics and software versions, as prose;
- :func:`results_table` -- mean ± sd per pipeline and dataset with the
  statistical comparison (Markdown, LaTeX booktabs, HTML);
- :func:`bibtex` -- MNE-Python, MOABB, pyRiemann, scikit-learn, chatbci,
  the datasets and the language models used;
- :func:`disclosure` -- the AI-use disclosure (models, counts of suggestions
  and decisions, who did what) with a draft statement;
- :func:`provenance` -- versions, platform and the journal head;
- :func:`transcript_entries` -- the transcript as format-neutral entries.

Each takes an open :class:`~chatbci.workspace.Workspace`, a workspace folder,
or a :class:`SessionRecord` from :func:`load_record` (read the journal once,
use it many times).

This package imports :mod:`chatbci.workspace`, the statistics of
:mod:`chatbci.bci.statistics` (pure pandas: the one like-for-like ranking
that tables, methods and the assistant share), the standard library,
Jinja2, pybtex (references, when formatted) and (for notebooks) nbformat;
never :mod:`chatbci.assistant`. The AI-use disclosure reads the prompt
templates' text and the tool catalog from the manifest each session stored
in the workspace and named in its ``session_start`` event, checked against
the hashes journaled with every model call.
"""

from .bibtex import BibEntry, bib_entries, bibtex
from .disclosure import disclosure
from .formats import FORMATS, SCHEMA, export, export_document
from .methods import methods_facts, methods_section
from .provenance import SCHEMA_VERSION, provenance
from .record import ExportError, SessionRecord, load_record
from .results import results_rows, results_table
from .transcript import transcript_entries

__all__ = [
    "FORMATS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "BibEntry",
    "ExportError",
    "SessionRecord",
    "bib_entries",
    "bibtex",
    "disclosure",
    "export",
    "export_document",
    "load_record",
    "methods_facts",
    "methods_section",
    "provenance",
    "results_rows",
    "results_table",
    "transcript_entries",
]
