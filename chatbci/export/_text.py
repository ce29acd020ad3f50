"""Small text helpers shared by the export formats: escaping, numbers, ranges.

Everything here is pure string work with no state, so that every format
(Markdown, HTML, LaTeX, JSON, notebooks) says the same thing in the same way.
"""

from __future__ import annotations

import json
import re
import unicodedata

__all__ = ["breakable_latex", "compact_json", "escape_latex", "escape_md", "fmt_num", "fmt_score",
           "latex_paragraphs", "md_cell", "md_code", "ranges", "slugify", "truncate"]

# ---------------------------------------------------------------------------
# LaTeX

_LATEX_CHARS = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&",
    "#": r"\#", "^": r"\textasciicircum{}", "_": r"\_", "~": r"\textasciitilde{}",
    "%": r"\%", "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
    '"': r"\textquotedbl{}",
    # Typography and symbols pdflatex does not take as UTF-8 input.
    "\u00b1": r"$\pm$", "\u00b5": r"$\mu$", "\u03bc": r"$\mu$", "\u00d7": r"$\times$",
    "\u00f7": r"$\div$", "\u2264": r"$\leq$", "\u2265": r"$\geq$", "\u2260": r"$\neq$",
    "\u2248": r"$\approx$", "\u221e": r"$\infty$", "\u2212": r"$-$", "\u2192": r"$\rightarrow$",
    "\u2190": r"$\leftarrow$", "\u2194": r"$\leftrightarrow$", "\u21d2": r"$\Rightarrow$",
    "\u2013": "--", "\u2014": "---", "\u2026": r"\ldots{}", "\u2018": "`", "\u2019": "'",
    "\u201c": "``", "\u201d": "''", "\u2022": r"\textbullet{}", "\u00b7": r"\textperiodcentered{}",
    "\u00b0": r"\textdegree{}", "\u00b2": r"\textsuperscript{2}", "\u00b3": r"\textsuperscript{3}",
    "\u00a0": "~", "\u2009": r"\,", "\u202f": r"\,", "\u00a7": r"\S{}", "\u00a9": r"\copyright{}",
    "\u2122": r"\texttrademark{}", "\u20ac": "EUR", "\u2713": "[x]", "\u2714": "[x]",
    "\u2717": "[ ]", "\u2718": "[ ]", "\u00ab": r"\guillemotleft{}", "\u00bb": r"\guillemotright{}",
    "\ufeff": "", "\u200b": "",
}
_GREEK = {
    "alpha": "\u03b1", "beta": "\u03b2", "gamma": "\u03b3", "delta": "\u03b4",
    "epsilon": "\u03b5", "zeta": "\u03b6", "eta": "\u03b7", "theta": "\u03b8", "kappa": "\u03ba",
    "lambda": "\u03bb", "nu": "\u03bd", "xi": "\u03be", "pi": "\u03c0", "rho": "\u03c1",
    "sigma": "\u03c3", "tau": "\u03c4", "phi": "\u03c6", "chi": "\u03c7", "psi": "\u03c8",
    "omega": "\u03c9", "Gamma": "\u0393", "Delta": "\u0394", "Theta": "\u0398",
    "Lambda": "\u039b", "Sigma": "\u03a3", "Phi": "\u03a6", "Psi": "\u03a8", "Omega": "\u03a9",
}
_LATEX_CHARS.update({ch: f"${chr(92)}{name}$" for name, ch in _GREEK.items()})
_LATEX_TABLE = {ord(k): v for k, v in _LATEX_CHARS.items()}
# Control characters (other than tab and newline) cannot be typeset.
_LATEX_TABLE.update({c: None for c in range(32) if c not in (9, 10)})
_LATEX_TABLE[9] = " "
_LATEX_TABLE[0x7F] = None
# What is left outside Latin-1 / Latin Extended-A after translation is
# beyond pdflatex's default UTF-8 support: spell it out instead of failing.
_LATEX_UNSUPPORTED = re.compile(r"[^\x00-\u017f]")
_LONG_HEX = re.compile(r"[0-9a-f]{32,}")


def _unsupported(match):
    ch = match.group()
    decomposed = unicodedata.normalize("NFKD", ch)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    if base and base != ch and all(ord(c) < 0x180 for c in base):
        return escape_latex(base)
    return f"[U+{ord(ch):04X}]"


def escape_latex(text) -> str:
    """Escape ``text`` for LaTeX (pdflatex with ``[utf8]{inputenc}``, T1 fonts).

    The ten special characters (``\\ { } $ & # ^ _ ~ %``) and ``< > | "`` are
    escaped; common Unicode symbols become LaTeX (``±`` -> ``$\\pm$``, ``µ``
    -> ``$\\mu$``, Greek letters, dashes, quotes...); accented Latin letters
    are kept (pdflatex reads them as UTF-8); anything else that pdflatex
    cannot typeset is written as ``[U+XXXX]``, so user and AI text can never
    break compilation.
    """
    text = str(text).translate(_LATEX_TABLE)
    if _LATEX_UNSUPPORTED.search(text):
        text = _LATEX_UNSUPPORTED.sub(_unsupported, text)
    if _LONG_HEX.search(text):  # hashes: let them break across lines
        text = _LONG_HEX.sub(lambda m: r"\allowbreak{}".join(
            m.group()[i:i + 16] for i in range(0, len(m.group()), 16)), text)
    return text


def breakable_latex(text, every=16) -> str:
    """Escaped ``text`` (a hash, a path) that may break across lines every few characters."""
    text = str(text)
    return r"\allowbreak{}".join(escape_latex(text[i:i + every])
                                 for i in range(0, len(text), every))


def latex_paragraphs(text) -> str:
    """Escaped multi-line text: blank lines start paragraphs, newlines break lines."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", str(text).strip()):
        lines = [escape_latex(line.strip()) for line in block.splitlines() if line.strip()]
        if lines:
            paragraphs.append(" \\newline\n".join(lines))
    return "\n\n".join(paragraphs)


# ---------------------------------------------------------------------------
# Markdown

def escape_md(text) -> str:
    """Text safe to put in Markdown prose: raw HTML and images are neutralised.

    Markdown formatting in messages (lists, emphasis, code) is kept as
    written; ``<`` and ``>``-opened tags are escaped so a message can never
    open an HTML element (or close the ``<details>`` blocks of the export),
    and ``![`` becomes ``!\\[``, so an image a model wrote (inline or by
    reference) is shown as a link: whoever views the export (a Markdown
    viewer, Jupyter for the notebook) fetches nothing from the model's URLs.
    """
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace("![", "!\\[")


def md_code(text) -> str:
    """An inline Markdown code span of ``text``, whatever backticks it holds."""
    text = " ".join(str(text).split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest or text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_cell(text) -> str:
    """Text for one Markdown table cell (no pipes or newlines)."""
    return escape_md(" ".join(str(text).split())).replace("|", "\\|")


# ---------------------------------------------------------------------------
# Numbers, ranges, names

def fmt_num(value, digits=3) -> str:
    """A number for prose: ``0.8339`` -> ``"0.834"``, ints unchanged, None -> ``"n/a"``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def fmt_score(mean, sd, digits=3, pm="\u00b1") -> str:
    """``"0.834 ± 0.079"`` (``pm`` lets LaTeX pass ``$\\pm$``)."""
    return f"{fmt_num(mean, digits)} {pm} {fmt_num(sd, digits)}"


def ranges(numbers) -> str:
    """Compact ranges of integers: ``[1, 2, 3, 5]`` -> ``"1-3, 5"``."""
    values = sorted({int(n) for n in numbers})
    if not values:
        return ""
    parts, start, prev = [], values[0], values[0]
    for n in values[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def slugify(text, default="chatbci") -> str:
    """A file-name-safe slug: ``"LR decoders (v2)"`` -> ``"lr-decoders-v2"``."""
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:60].rstrip("-") or default


def truncate(text, width) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when cut."""
    text = str(text)
    return text if len(text) <= width else text[: max(width - 1, 0)] + "\u2026"


def compact_json(value) -> str:
    """Short, stable JSON of a value (sorted keys, no spaces, Unicode kept)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
