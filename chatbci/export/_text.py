"""Small text helpers shared by the export formats: escaping, numbers, ranges.

Everything here is pure string work with no state, so that every format
(Markdown, HTML, LaTeX, JSON, notebooks) says the same thing in the same way.
"""

from __future__ import annotations

import json
import re
import unicodedata

__all__ = ["breakable_latex", "compact_json", "escape_latex", "escape_md", "fmt_num", "fmt_score",
           "latex_cell", "latex_colspec", "latex_paragraphs", "latex_table", "md_cell", "md_code",
           "ranges", "slugify", "truncate"]

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


# Where a long table cell may break: after separators of code-like text
# (``run_benchmark(dataset=X, pipelines=[...])``, paths, dotted names; not
# inside numbers such as 0.834) and before an opening bracket.
_CELL_BREAK = re.compile(r"(?<=[,=/_:;+|])(?=\S)|(?<=[A-Za-z]\.)(?=[A-Za-z])"
                         r"|(?<=\S)(?=[(\[{])")


def latex_cell(text) -> str:
    """Escaped text for a table cell that may wrap inside code-like tokens.

    Cells of ``p{}`` / ``X`` columns wrap at spaces only; a tool call or a
    path has few, and ran into the next column. Break points are allowed
    after ``, = / _ : ; + |``, between dotted names and before ``( [ {``.
    """
    parts = _CELL_BREAK.split(str(text))
    return r"\allowbreak{}".join(escape_latex(part) for part in parts)


def latex_colspec(widths, align=None, total=1.0) -> str:
    """A ``tabular`` column spec of wrapping columns that fills ``total`` of the line.

    Parameters
    ----------
    widths : sequence of float
        Relative column widths (normalised here).
    align : sequence of str | None
        ``"l"`` (ragged right, the default), ``"r"`` or ``"c"`` per column.
    total : float
        Fraction of ``\linewidth`` the table takes.

    Returns
    -------
    spec : str
        ``p{}`` columns whose widths, padding included, add up to ``total``
        of the line, so the table never runs into the margin; each cell may
        hyphenate its first word (``\hspace{0pt}``), which TeX otherwise
        never does, so a long header breaks instead of overflowing.
    """
    widths = [float(w) for w in widths]
    if not widths or min(widths) <= 0:
        raise ValueError(f"column widths must be positive; got {widths}.")
    align = list(align or ["l"] * len(widths))
    if len(align) != len(widths):
        raise ValueError(f"{len(align)} alignments for {len(widths)} columns.")
    flush = {"l": r"\raggedright", "r": r"\raggedleft", "c": r"\centering"}
    norm = sum(widths)
    cols = []
    for w, a in zip(widths, align):
        if a not in flush:
            raise ValueError(f"column alignment must be 'l', 'r' or 'c'; got {a!r}.")
        cols.append(rf">{{{flush[a]}\arraybackslash\hspace{{0pt}}}}"
                    # Rounded down, so the columns never add up to more than the line.
                    rf"p{{\dimexpr {int(total * w / norm * 1000) / 1000:.3f}\linewidth"
                    rf"-2\tabcolsep\relax}}")
    return "".join(cols)


def _natural_widths(columns, rows, cap=None):
    """Characters of the longest text of each column (capped at ``cap``, so
    one long cell does not starve the others)."""
    widths = []
    for i, head in enumerate(columns):
        longest = max([len(str(head))] + [len(str(r[i])) for r in rows if i < len(r)])
        widths.append(float(max(longest, 4) if cap is None else min(max(longest, 4), cap)))
    return widths


# A generous estimate of a \small character's width over the text width of an
# 11 pt article with 2.5 cm margins (about 5.2 pt of 455 pt), and the padding
# of a column in characters: a table estimated to fit is set at its natural
# width, anything longer wraps.
_CHAR_FRACTION = 1 / 88.0
_PAD_CHARS = 2.5


def latex_table(columns, rows, *, widths=None, align=None, caption="", label="",
                placement="H", size=r"\small", escaped=False) -> str:
    """A booktabs table that fits the text width, kept where it is written.

    Parameters
    ----------
    columns : sequence of str
        Column headers (plain text).
    rows : sequence of sequence
        Cells (plain text, or LaTeX when ``escaped``).
    widths : sequence of float | None
        Relative column widths; from the cells' lengths when None. When the
        cells fit their natural width the table is set at that width, else
        it wraps within ``\linewidth``.
    align : sequence of str | None
        ``"l"``, ``"r"`` or ``"c"`` per column.
    caption, label : str
        Plain-text caption and LaTeX label (a ``table`` float is used only
        when there is a caption).
    placement : str
        Float placement; ``"H"`` (the ``float`` package) keeps the table
        under its heading instead of letting it float to the next page.
    size : str
        Font size command for the table body.
    escaped : bool
        Whether ``columns`` and ``rows`` are LaTeX already.

    Returns
    -------
    tex : str
    """
    columns = list(columns)
    rows = [list(r) for r in rows]
    align = list(align or ["l"] * len(columns))
    cell = (lambda x: str(x)) if escaped else latex_cell
    natural = _natural_widths(columns, rows)
    if (sum(natural) + _PAD_CHARS * len(columns)) * _CHAR_FRACTION <= 0.9:
        spec = "".join(align)  # fits as it is
    else:
        spec = latex_colspec(widths or _natural_widths(columns, rows, cap=40), align)
    body = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
            " & ".join(cell(c) for c in columns) + r" \\", r"\midrule"]
    body += [" & ".join(cell(c) for c in r) + r" \\" for r in rows]
    body += [r"\bottomrule", r"\end{tabular}"]
    if not caption:
        return "\n".join([r"\begin{center}" + size, *body, r"\end{center}"]) + "\n"
    out = [rf"\begin{{table}}[{placement}]", r"\centering", size, *body,
           rf"\caption{{{escape_latex(caption)}}}"]
    if label:
        out.append(rf"\label{{{label}}}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


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


_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_word(n) -> str | None:
    """English words for 0-99 (``21`` -> ``"twenty-one"``), None beyond."""
    n = int(n)
    if 0 <= n < 20:
        return _ONES[n]
    if 20 <= n < 100:
        return _TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else "")
    return None


def count_phrase(n, noun, plural=None, *, start=False) -> str:
    """``"4 pipelines"``; at a sentence's start ``"Four pipelines"``.

    Style guides (APA, Nature, COBIDAS reports) never open a sentence with a
    numeral: with ``start`` the count is spelled out, or, beyond 99, the
    sentence opens with "A total of".
    """
    noun = noun if n == 1 else (plural or noun + "s")
    if not start:
        return f"{n} {noun}"
    word = number_word(n)
    return f"{word.capitalize()} {noun}" if word else f"A total of {n} {noun}"
