"""Writers for each export format, and :func:`export`.

Files written (into ``<workspace>/exports/`` unless ``out`` is given;
``<slug>`` is the workspace title as a file name; a curated export adds
``-curated`` to the transcript's name; an anonymised one defaults to
``exports/anonymized/``):

========  =====================================================================
format    files
========  =====================================================================
md        ``<slug>-transcript.md`` (figures linked by relative path),
          ``methods.md``, ``results.md``, ``ai-disclosure.md``,
          ``references.bib``, ``provenance.json``
html      ``<slug>-transcript.html``: one self-contained page (transcript,
          methods, results, disclosure, references, provenance; figures as
          data URIs, no external resource), plus ``references.bib`` and
          ``provenance.json``
tex       ``<slug>.tex``: a complete article (methods, results, disclosure,
          provenance, transcript appendix, bibliography) that compiles with
          pdflatex; ``methods.tex`` and ``results.tex`` to ``\\input`` in a
          paper; ``references.bib``, ``provenance.json``
json      ``<slug>-export.json``, valid against ``schema/export.schema.json``
ipynb     ``<slug>.ipynb``: an nbformat 4 notebook re-running each tool call
          through the Python API, outputs omitted
========  =====================================================================

When a language model was prompted, md, html and tex also write
``ai-prompt-templates.md``: the full text of the prompt templates named in
the AI-use disclosure (supplementary material).

Every text goes through the secret scrubber before it is written, and
files are replaced atomically. What the model wrote is rendered in the HTML
page by the same sanitising Markdown renderer as the Jupyter panel
(:func:`chatbci.sanitize.markdown_html`: no remote image, frame, style or
script, links only to ``http(s)``/``mailto``); the Markdown and notebook
exports show model images as links (:func:`~chatbci.export._text.escape_md`).
Only the human chooses where an export goes (``out``); no assistant tool
exports.
"""

from __future__ import annotations

import base64
import json
import os
from functools import cache, cached_property
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from ..sanitize import markdown_html

from ..workspace.files import write_inside
from ._blocks import plain_text
from ._text import (
    breakable_latex,
    escape_latex,
    escape_md,
    latex_cell,
    latex_colspec,
    latex_paragraphs,
    latex_table,
    md_cell,
    md_code,
    slugify,
)
from .bibtex import bib_entries, bibliography_items, format_bibtex, format_references
from .disclosure import PROMPTS_FILE, disclosure, disclosure_blocks, prompts_supplement
from .methods import methods_blocks, methods_facts
from .provenance import SCHEMA_VERSION, provenance
from .record import ExportError, load_record, open_workspace, scrub_output
from .results import results_rows, results_table
from .transcript import results_figures, transcript_entries

__all__ = ["FORMATS", "export", "export_document", "render_blocks", "render_template"]

#: Export formats, in the order ``"all"`` writes them.
FORMATS = ("md", "html", "tex", "json", "ipynb")

TEMPLATES = Path(__file__).parent / "templates"
SCHEMA = Path(__file__).parent / "schema" / "export.schema.json"

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
         ".gif": "image/gif", ".svg": "image/svg+xml"}


# ---------------------------------------------------------------------------
# Templates


@cache
def _env(kind) -> Environment:
    loader = FileSystemLoader(str(TEMPLATES))
    common = {"loader": loader, "trim_blocks": True, "lstrip_blocks": True,
              "keep_trailing_newline": True, "undefined": StrictUndefined}
    if kind == "tex":
        env = Environment(block_start_string="<%", block_end_string="%>",
                          variable_start_string="<<", variable_end_string=">>",
                          comment_start_string="<#", comment_end_string="#>",
                          autoescape=False, **common)
    else:
        env = Environment(autoescape=(kind == "html"), **common)
    env.filters.update(texcell=latex_cell, texcolspec=latex_colspec)
    env.filters.update(tex=escape_latex, texbreak=breakable_latex, texpar=latex_paragraphs,
                       md=escape_md, mdcode=md_code, cell=md_cell, model_html=_model_html)
    return env


def _event_link(tool, event_id) -> str:
    return f'<a class="cb-cite" href="#event-{int(event_id)}">{escape(tool)} #{int(event_id)}</a>'


def _model_html(text) -> Markup:
    """Model-written Markdown as HTML, through the panel's sanitising renderer.

    ``[tool #id]`` citations link to the journal event on the same page.
    """
    return Markup(markdown_html(str(text or ""), cite=_event_link))


def render_template(name, **context) -> str:
    """Render ``templates/<name>`` (``*.md.j2``, ``*.html.j2`` or ``*.tex.j2``)."""
    kind = name.rsplit(".", 2)[-2]
    return _env(kind).get_template(name).render(**context)


def render_blocks(blocks, fmt, *, cites=None) -> str:
    """Lay out document blocks (see :mod:`chatbci.export._blocks`) as md, tex or html.

    ``cites`` maps citation keys to the labels an HTML page shows (``"1"``
    for ``[1]``, the reference's number in the page's list); keys without a
    label are shown as they are.
    """
    if fmt not in ("md", "tex", "html"):
        raise ExportError(f"unknown text format {fmt!r}; use 'md', 'tex', 'html' or 'txt'.")
    return render_template(f"blocks.{fmt}.j2", blocks=blocks, cites=dict(cites or {}))


# ---------------------------------------------------------------------------
# Helpers


def _write(path, text) -> Path:
    """Scrub ``text`` and write it to ``path`` atomically (UTF-8, ``\\n``)."""
    path = Path(path)
    # The workspace's one writer: whole files, the umask's modes (exports are
    # meant to be shared, unless the umask says otherwise), and never through
    # a link leading out of the export folder.
    write_inside(path.parent, path.name, scrub_output(text), what="export file")
    return path


def _hjson(value, depth=2, indent=0) -> str:
    """JSON indented down to ``depth`` levels, compact below.

    ``json.dumps(indent=...)`` runs the pure-Python encoder; a large journal's
    export spent most of its time there. Indenting only the outer levels
    keeps the files readable (one event or cell per line) with the C encoder.
    """
    if depth <= 0 or not isinstance(value, (dict, list)) or not value:
        return json.dumps(value, ensure_ascii=False, default=str)
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(str(k), ensure_ascii=False)}: "
                 f"{_hjson(v, depth - 1, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + _hjson(v, depth - 1, indent + 2) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def _json(value, depth=4) -> str:
    return _hjson(value, depth) + "\n"


class _Context:
    """Everything one export call computes once and every format reuses.

    Attributes are computed on first use, so an export in one format does not
    pay for the others.
    """

    def __init__(self, record, out_dir, curated):
        self.record = record
        self.out = out_dir
        self.curated = curated
        self.slug = slugify(record.title)
        self._rel, self._exists, self._uri = {}, {}, {}
        self.written = []  # every companion file written, in order

    @cached_property
    def entries(self):
        return transcript_entries(self.record, self.curated)

    @cached_property
    def figure_numbers(self):
        """Figure number of each figure path, in order of first appearance."""
        numbers = {}
        for e in self.entries:
            for fig in e["figures"]:
                numbers.setdefault(fig, len(numbers) + 1)
        return numbers

    @cached_property
    def disclosure(self):
        return disclosure(self.record)

    @cached_property
    def provenance(self):
        return provenance(self.record)

    @cached_property
    def bib(self):
        return bib_entries(self.record)

    @cached_property
    def methods(self):
        return methods_blocks(self.record)

    def name(self, base, ext):
        suffix = "-curated" if self.curated else ""
        return f"{self.slug}{base}{suffix}.{ext}"

    def rel(self, workspace_path) -> str:
        """A workspace-relative path, relative to the output folder (POSIX)."""
        if workspace_path not in self._rel:
            target = self.record.path / workspace_path
            try:
                self._rel[workspace_path] = Path(os.path.relpath(target, self.out)).as_posix()
            except ValueError:  # another drive on Windows
                self._rel[workspace_path] = target.as_posix()
        return self._rel[workspace_path]

    def exists(self, workspace_path) -> bool:
        if workspace_path not in self._exists:
            self._exists[workspace_path] = (self.record.path / workspace_path).is_file()
        return self._exists[workspace_path]

    def data_uri(self, workspace_path):
        """The figure as a ``data:`` URI (None if missing or not an image)."""
        if workspace_path not in self._uri:
            path = self.record.path / workspace_path
            mime = _MIME.get(path.suffix.lower())
            self._uri[workspace_path] = None if mime is None or not path.is_file() else (
                f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}")
        return self._uri[workspace_path]

    def companions(self, *names):
        """Write the shared companion files (bib, provenance, methods...)."""
        written = []
        for name in names:
            if name == "references.bib":
                text = format_bibtex(self.bib)
            elif name == "provenance.json":
                text = _json(self.provenance)
            elif name == "methods.md":
                text = render_blocks(self.methods, "md")
            elif name == "methods.tex":
                text = render_blocks(self.methods, "tex")
            elif name == "results.md":
                text = "# Results\n\n" + results_table(self.record, "md")
            elif name == "results.tex":
                text = results_table(self.record, "tex")
            elif name == "ai-disclosure.md":
                text = render_blocks(disclosure_blocks(self.record, self.disclosure), "md")
            elif name == PROMPTS_FILE:
                text = prompts_supplement(self.disclosure)
            else:  # pragma: no cover - internal
                raise ValueError(name)
            written.append(_write(self.out / name, text))
        self.written += [p for p in written if p not in self.written]
        return written

    @property
    def supplements(self) -> tuple:
        """Supplementary files of the disclosure: the prompt templates' full text,
        when a language model was prompted."""
        return (PROMPTS_FILE,) if self.disclosure["prompts"] else ()


# ---------------------------------------------------------------------------
# Formats


def _common(ctx):
    rec = ctx.record
    return {"title": rec.title, "goal": rec.goal, "curated": ctx.curated,
            "entries": ctx.entries, "head_id": rec.head_id, "head_hash": rec.head_hash,
            "verified": rec.verified, "anonymized": rec.anonymized,
            "statement": ctx.disclosure["statement"], "slug": ctx.slug}


def _write_md(ctx) -> Path:
    main = _write(ctx.out / ctx.name("-transcript", "md"), render_template(
        "transcript.md.j2", **_common(ctx), rel=ctx.rel, exists=ctx.exists,
        figure_number=ctx.figure_numbers))
    ctx.companions("methods.md", "results.md", "ai-disclosure.md", "references.bib",
                   "provenance.json", *ctx.supplements)
    return main


def _write_html(ctx) -> Path:
    refs = [{"key": key, "label": label, "html": Markup(text)}  # pybtex escapes field text
            for key, label, text in format_references(ctx.bib, "html")]
    cites = {r["key"]: r["label"] for r in refs}
    # Each figure is embedded once, where it first appears; later results that
    # produced the same (content-addressed) figure link to it.
    # The comparison's figures are embedded in the Results section, beside the
    # table they illustrate, and the transcript links there.
    first_figure = {}
    for e in ctx.entries:
        for fig in e["figures"]:
            first_figure.setdefault(fig, e["id"])
    shown = results_figures(ctx.entries)
    main = _write(ctx.out / ctx.name("-transcript", "html"), render_template(
        "transcript.html.j2", **_common(ctx), data_uri=ctx.data_uri,
        first_figure=first_figure, figure_id=_figure_id, figure_number=ctx.figure_numbers,
        results_figures=shown, in_results={f for f, _, _ in shown},
        provenance_html=render_template("provenance.html.j2", prov=ctx.provenance),
        methods_html=render_blocks(ctx.methods, "html", cites=cites),
        results_html=results_table(ctx.record, "html"),
        disclosure_html=render_blocks(disclosure_blocks(ctx.record, ctx.disclosure, level=1),
                                      "html", cites=cites),
        references=refs))
    ctx.companions("references.bib", "provenance.json", *ctx.supplements)
    return main


def _figure_id(path) -> str:
    """HTML id of an embedded figure (its content hash, from the file name)."""
    return "fig-" + "".join(ch for ch in Path(path).stem if ch.isalnum())[:64]


def _plain_reference(entry, backend="text") -> str:
    """One reference formatted for a reader by pybtex (see :func:`format_references`)."""
    return format_references([entry], backend)[0][2]


def _figure_width(path, default=r"0.8\linewidth") -> str:
    """The width a figure was drawn at, for ``\\includegraphics``, at most the line.

    Figures are drawn at a journal column's width (see
    :mod:`chatbci.bci.figures`); printed at that size their 8 pt fonts stay
    8 pt. The size comes from the PNG's pixels and resolution (``pHYs``).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return default
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return default
    width_px = int.from_bytes(head[16:20], "big")
    at = head.find(b"pHYs")
    if at < 0:
        return default
    per_metre = int.from_bytes(head[at + 4:at + 8], "big")
    unit = head[at + 12] if len(head) > at + 12 else 0
    if unit != 1 or per_metre <= 0:  # 1: pixels per metre
        return default
    inches = width_px / (per_metre * 0.0254)
    return rf"{min(inches, 6.2):.2f}in" if inches < 6.2 else r"\linewidth"


def _tex_figure(ctx, fig):
    """Path (relative to the document) and width of an includable figure, or None."""
    if not (fig.lower().endswith((".png", ".jpg", ".jpeg")) and ctx.exists(fig)):
        return None
    return {"path": ctx.rel(fig), "width": _figure_width(ctx.record.path / fig)}


def _write_tex(ctx) -> Path:
    figures = {}
    for e in ctx.entries:
        for fig in e["figures"]:
            if fig not in figures:
                figures[fig] = _tex_figure(ctx, fig)
    shown = []
    for fig, caption, _ in results_figures(ctx.entries):
        found = figures.get(fig) or _tex_figure(ctx, fig)
        if found:
            shown.append({**found, "caption": caption})
    main = _write(ctx.out / ctx.name("", "tex"), render_template(
        "document.tex.j2", **_common(ctx), figures=figures, results_figures=shown,
        table=latex_table,
        methods_tex=render_blocks(ctx.methods, "tex"),
        results_tex=results_table(ctx.record, "tex", placement="H"),
        disclosure_tex=render_blocks(disclosure_blocks(ctx.record, ctx.disclosure), "tex"),
        bibliography=bibliography_items(ctx.bib), provenance=ctx.provenance))
    ctx.companions("methods.tex", "results.tex", "references.bib", "provenance.json",
                   *ctx.supplements)
    return main


def export_document(record, *, curated=False) -> dict:
    """The JSON export document of a record (see ``schema/export.schema.json``)."""
    record = load_record(record)
    items = record.items
    if curated:
        from .transcript import select_items

        items = select_items(record, True)
    blocks = methods_blocks(record)
    prov = provenance(record)
    entries = bib_entries(record)
    return {
        "schema_version": SCHEMA_VERSION,
        "generator": {"name": "chatbci.export", "version": prov["export"]["chatbci"]},
        "workspace": {"title": record.title, "goal": record.goal},
        "curated": bool(curated),
        "anonymized": record.anonymized,
        "provenance": prov,
        "events": [it.to_dict(record.label(it.actor)) for it in items],
        "methods": {"markdown": render_blocks(blocks, "md"), "text": plain_text(blocks),
                    "facts": methods_facts(record)},
        "results": {"rows": results_rows(record), "markdown": results_table(record, "md"),
                    "latex": results_table(record, "tex")},
        "disclosure": disclosure(record),
        "bibtex_keys": [e.key for e in entries],
        "bibtex": format_bibtex(entries),
    }


def _write_json(ctx) -> Path:
    doc = export_document(ctx.record, curated=ctx.curated)
    # Sections indented; events, results rows and decisions one per line.
    return _write(ctx.out / ctx.name("-export", "json"), _json(doc, depth=2))


# -- notebook -------------------------------------------------------------------

_SIDE_EFFECTS = {"add_note": "it would add a note to the workspace's knowledge base and "
                             "journal",
                 "propose": "a proposal only records a suggestion"}


def _py(value) -> str:
    """A Python literal of JSON-like ``value``: one line, or one key per line if long.

    (``repr`` of JSON data is valid Python; :mod:`pprint` is ten times slower.)
    """
    text = repr(value)
    if len(text) <= 76 or not isinstance(value, dict):
        return text
    return "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in value.items()) + "}"


def _cell(kind, source, event_id=None, meta=None) -> dict:
    """An nbformat 4.5 cell as a plain dict (nbformat's constructors validate each
    cell with jsonschema, which dominated the export of large journals)."""
    cell = {"cell_type": kind, "id": f"event-{event_id}" if event_id else "setup",
            "metadata": meta or {}, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _notebook(ctx) -> dict:
    """The replay notebook of a session (nbformat 4.5, outputs omitted)."""
    rec = ctx.record
    humans = [f"human:{h}" for h in rec.humans]
    actor = humans[0] if humans else "human:researcher"
    try:
        ws_rel = Path(os.path.relpath(rec.path, ctx.out)).as_posix()
    except ValueError:  # another drive on Windows
        ws_rel = rec.path.as_posix()
    md = escape_md
    cells = [
        {**_cell("markdown", (
            f"# {md(rec.title)}\n\n**Goal:** {md(rec.goal)}\n\n"
            "This notebook replays a ChatBCI session from its journal "
            f"({rec.head_id} events, head hash `{rec.head_hash}`): messages, AI suggestions "
            "and human decisions as text, and every tool call that ran as code using "
            "chatbci's tool registry. Outputs are omitted; run it on a **copy** of the "
            "workspace (tools write figures, tables and pipeline files into it, but nothing "
            f"into its journal).\n\n{md(ctx.disclosure['statement'])}")), "id": "intro"},
        _cell("code", (
            "from pathlib import Path\n\n"
            "from chatbci.assistant.tools import TOOLS, ToolContext\n"
            "from chatbci.workspace import Workspace\n\n"
            f"WORKSPACE = Path({ws_rel!r})  # the workspace folder, relative to this notebook\n"
            "ws = Workspace.open(WORKSPACE)\n"
            f"ctx = ToolContext(ws, actor={actor!r}, n_jobs=-1)")),
    ]
    runs = {}
    for it in rec.runs:
        res = rec.parent(it)
        if res is not None and res.parent_id is not None:
            runs[res.parent_id] = it
    for e in ctx.entries:
        kind, eid = e["kind"], e["id"]
        meta = {"chatbci": {"event_id": eid, "actor": e["label"], "kind": kind}}
        head = f"**{md(e['label'])}** \u00b7 #{eid} \u00b7 {e['ts']}"
        if kind == "message":
            quoted = "\n".join("> " + line for line in md(e["text"]).splitlines())
            cells.append(_cell("markdown", f"{head}\n\n{quoted}", eid, meta))
        elif kind == "suggestion":
            cells.append(_cell("markdown", (
                f"{head} \u00b7 **Suggestion #{eid}** ({md(e['status'])})\n\n"
                f"{md_code(e['action'])}\n\n{md(e['text'])}"), eid, meta))
        elif kind == "decision":
            body = f"{head} \u00b7 **{md(e['heading'])}**"
            if e["text"]:
                body += f"\n\n{md(e['text'])}"
            if e["action"]:
                body += f"\n\nModified action: {md_code(e['action'])}"
            cells.append(_cell("markdown", body, eid, meta))
        elif kind == "tool_call":
            cells.append(_replay_cell(ctx, e, head, runs, meta))
        elif kind == "tool_result" and e["summary"]:
            cells.append(_cell("markdown", f"*Recorded result (#{eid}):* {md(e['summary'])}",
                               eid, meta))
        elif kind in ("note", "error") and e["text"]:
            cells.append(_cell("markdown", f"{head} \u00b7 *{kind}*: {md(e['text'])}", eid,
                               meta))
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "chatbci": {"journal_head_id": rec.head_id, "journal_head_hash": rec.head_hash,
                    "curated": ctx.curated, "anonymized": rec.anonymized}}}


def _replay_cell(ctx, e, head, runs, meta) -> dict:
    """The code cell re-running one tool call (or a note saying why it is not)."""
    rec = ctx.record
    item = rec.by_id[e["id"]]
    tool = item.payload.get("tool", "?")
    args = dict(item.payload.get("args") or {})
    result = rec.child(item, "tool_result")
    if result is None or not result.payload.get("ok", True):
        return _cell("markdown", f"{head} \u00b7 {md_code(e['action'])} did not complete in the "
                                 "session; not replayed.", e["id"], meta)
    comment = f"# Event #{e['id']} \u00b7 {e['label']}"
    if e["summary"]:
        comment += f" \u00b7 {e['summary']}"
    if tool in _SIDE_EFFECTS:
        code = (f"{comment}\n# Not replayed: {_SIDE_EFFECTS[tool]}.\n"
                f"# TOOLS[{tool!r}].run(ctx, {_py(args)})")
        return _cell("code", code, e["id"], meta)
    check = ""
    run = runs.get(item.id)
    if run is not None:
        # The defaults the session filled in (workspace protocol and seed), made explicit.
        cfg = run.payload["config"]
        for key in ("evaluation", "random_state"):
            if args.get(key) is None and cfg.get(key) is not None:
                args[key] = cfg[key]
        check = (f"\nprint('same configuration as journal event #{run.id}:', "
                 f"result.run['config_hash'] == {run.payload['config_hash']!r})")
    code = f"{comment}\nresult = TOOLS[{tool!r}].run(ctx, {_py(args)})\nprint(result.text){check}"
    return _cell("code", code, e["id"], meta)


def _write_ipynb(ctx) -> Path:
    text = _json(_notebook(ctx), depth=2)  # one cell per line
    return _write(ctx.out / ctx.name("", "ipynb"), text)


_WRITERS = {"md": _write_md, "html": _write_html, "tex": _write_tex, "json": _write_json,
            "ipynb": _write_ipynb}


def _formats(format) -> list:
    if isinstance(format, str):
        requested = list(FORMATS) if format == "all" else [format]
    else:
        requested = list(format)
    if not requested:
        raise ExportError(f"no export format given; use one or more of {', '.join(FORMATS)} "
                          "or 'all'.")
    unknown = [f for f in requested if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format(s) {unknown}; use one or more of "
                          f"{', '.join(FORMATS)} or 'all'.")
    return list(dict.fromkeys(requested))


def export(workspace_or_path, format="md", *, curated=False, out=None, anonymize=False,
           all_files=False):
    """Export a workspace's session for a paper.

    Everything is generated from the journal and the workspace's files: no
    language model is needed, and the same journal always gives the same
    files.

    Parameters
    ----------
    workspace_or_path : Workspace | str | os.PathLike
        An open workspace or its folder.
    format : str | list of str
        ``"md"``, ``"html"``, ``"tex"``, ``"json"``, ``"ipynb"``, a list of
        them, or ``"all"``. See the module docstring for the files each
        writes.
    curated : bool
        Transcript of the decisions, their suggestions and the results only
        (no chatter).
    out : str | os.PathLike | None
        Output folder. Default: ``<workspace>/exports/`` (or
        ``<workspace>/exports/anonymized/`` with ``anonymize``).
    anonymize : bool
        Replace human names by ``Human 1``, ``Human 2``... in every file.
    all_files : bool
        Return every file written (main files in the order given, then the
        companion files: methods, references, provenance...), as a list.

    Returns
    -------
    path : pathlib.Path | list of pathlib.Path
        The main file written (transcript, document, JSON or notebook): one
        path for one format, a list (in the order given) for several; with
        ``all_files``, the list of every file written.

    Raises
    ------
    ExportError
        Unknown format.
    chatbci.workspace.WorkspaceNotFoundError
        Not a workspace.
    """
    formats = _formats(format)
    with open_workspace(workspace_or_path) as ws:
        record = load_record(ws, anonymize=anonymize)
        if out is not None:
            out_dir = Path(out).expanduser().resolve()
        else:
            out_dir = ws.path_for("exports", "anonymized" if anonymize else ".")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ExportError(f"export folder {out_dir} is not a folder (a file is in the "
                              "way); give a folder, which is made if missing.") from None
    ctx = _Context(record, out_dir, bool(curated))
    paths = [_WRITERS[f](ctx) for f in formats]
    if all_files:
        return paths + [p for p in ctx.written if p not in paths]
    single = isinstance(format, str) and format != "all"
    return paths[0] if single else paths
