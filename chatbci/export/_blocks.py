"""A tiny document model: headings, paragraphs, lists and spans.

Prose (the methods section, the AI-use disclosure) is built once as blocks
and laid out by one Jinja2 macro file per format (``templates/blocks.*.j2``),
so Markdown, HTML and LaTeX say exactly the same thing and each format does
its own escaping.

A block is a dict with ``block`` in ``{"h", "p", "ul", "table"}``; a span is
``{"t": text}``, ``{"code": text}``, ``{"b": text}``, ``{"em": text}`` or
``{"cite": [keys]}``.
"""

from __future__ import annotations

__all__ = ["TABLE", "UL", "H", "P", "bold", "cite", "code", "em", "plain_text"]


def _spans(parts):
    out = []
    for part in parts:
        if part is None or part == "":
            continue
        if isinstance(part, str):
            out.append({"t": part})
        elif isinstance(part, dict):
            out.append(part)
        else:  # a list of spans
            out.extend(_spans(part))
    return out


def H(level, text) -> dict:
    """A heading; level 1 is the section (``#``, ``<h2>``, ``\\section``)."""
    return {"block": "h", "level": int(level), "text": str(text)}


def P(*parts) -> dict:
    """A paragraph of strings and spans."""
    return {"block": "p", "spans": _spans(parts)}


def UL(items) -> dict:
    """A bulleted list; each item is a list of strings and spans."""
    return {"block": "ul", "items": [_spans(item if isinstance(item, (list, tuple))
                                            else [item]) for item in items]}


def TABLE(columns, rows, caption="", widths=None) -> dict:
    """A small table of plain-text cells.

    ``widths`` are relative column widths (used by LaTeX; equal by default).
    """
    widths = list(widths) if widths else [1.0] * len(columns)
    total = float(sum(widths))
    return {"block": "table", "columns": [str(c) for c in columns],
            "rows": [["" if c is None else str(c) for c in row] for row in rows],
            "caption": str(caption), "widths": [w / total for w in widths]}


def code(text) -> dict:
    return {"code": str(text)}


def bold(text) -> dict:
    return {"b": str(text)}


def em(text) -> dict:
    return {"em": str(text)}


def cite(*keys) -> dict:
    return {"cite": [k for k in keys if k]}


def plain_text(blocks) -> str:
    """Blocks as plain text (citations as ``[key]``), e.g. for JSON or a notebook."""
    def spans(items):
        out = []
        for s in items:
            if "cite" in s:
                out.append(" [" + "; ".join(s["cite"]) + "]" if s["cite"] else "")
            else:
                out.append(next(iter(s.values())))
        return "".join(out)

    lines = []
    for b in blocks:
        if b["block"] == "h":
            lines.append(("#" * b["level"]) + " " + b["text"])
        elif b["block"] == "p":
            lines.append(spans(b["spans"]))
        elif b["block"] == "table":
            rows = [b["columns"], *b["rows"]]
            lines.append("\n".join(" | ".join(r) for r in rows)
                         + (f"\n{b['caption']}" if b["caption"] else ""))
        else:
            lines.append("\n".join("- " + spans(item) for item in b["items"]))
    return "\n\n".join(lines) + "\n"
