"""BibTeX for a session: the software, the datasets and the language model used.

Always cited: MNE-Python (Gramfort et al. 2013), MOABB (the software on Zenodo,
Jayaram & Barachant 2018, Chevallier et al. 2024), pyRiemann, scikit-learn and
chatbci. Each dataset benchmarked in the journal is cited from MOABB's dataset
metadata recorded with the run (PhysioNet EEGMMIDB: Schalk et al. 2004 and
Goldberger et al. 2000); simulated data cite chatbci. Each *language model*
that took part gets a ``@software`` entry naming the model, its provider and
the versions the API reported; the offline rule-based assistant is not a
model and gets none.

Entries hold plain-text fields; :func:`format_bibtex` escapes them for
BibTeX, :func:`bibliography_items` for a LaTeX ``thebibliography``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._text import escape_latex
from .record import load_record

__all__ = ["CORE_KEYS", "BibEntry", "bib_entries", "bibliography_items", "bibtex",
           "dataset_keys", "format_bibtex", "llm_key", "software_year"]

#: Keys of the entries every export cites.
CORE_KEYS = ("gramfort2013mne", "jayaram2018moabb", "aristimunha2023moabb",
             "chevallier2024moabb", "barachant_pyriemann", "pedregosa2011scikit", "chatbci")

PHYSIONET_KEYS = ("schalk2004bci2000", "goldberger2000physiobank")

_VERBATIM = {"doi", "url", "eprint"}


@dataclass
class BibEntry:
    """One bibliography entry with plain-text fields.

    Attributes
    ----------
    type : str
        ``article``, ``misc``, ``software``...
    key : str
    fields : dict of str to str
        In output order. ``author`` uses BibTeX's ``Last, First and ...``.
    corporate : bool
        The author is an organisation (kept as one name, e.g. ``{OpenAI}``).
    """

    type: str
    key: str
    fields: dict = field(default_factory=dict)
    corporate: bool = False

    def to_bibtex(self) -> str:
        lines = [f"@{self.type}{{{self.key},"]
        width = max(len(k) for k in self.fields) if self.fields else 0
        for name, value in self.fields.items():
            if value is None or value == "":
                continue
            text = str(value)
            if name in _VERBATIM:
                text = text.replace("{", "%7B").replace("}", "%7D")
            else:
                text = _bib_escape(text)
            if name == "title":
                text = "{" + text + "}"  # keep the capitalisation as written
            elif name == "author" and self.corporate:
                text = "{" + text + "}"
            lines.append(f"  {name.ljust(width)} = {{{text}}},")
        lines.append("}")
        return "\n".join(lines)


_BIB_TABLE = str.maketrans({"\\": r"\textbackslash ", "&": r"\&", "%": r"\%", "$": r"\$",
                            "#": r"\#", "_": r"\_", "^": r"\^{}", "{": "(", "}": ")",
                            "\n": " ", "\r": " ", "\t": " "})


def _bib_escape(text) -> str:
    # Braces are replaced, not escaped: BibTeX counts escaped braces too.
    return str(text).translate(_BIB_TABLE)


# ---------------------------------------------------------------------------
# Fixed entries

_MOABB_AUTHORS = (
    "Aristimunha, Bruno and Carrara, Igor and Guetschel, Pierre and Sedlar, Sara and "
    "Rodrigues, Pedro and Sosulski, Jan and Narayanan, Divyesh and Bjareholt, Erik and "
    "Barthelemy, Quentin and Schirrmeister, Robin Tibor and Kobler, Reinmar and "
    "Kalunga, Emmanuel and Darmet, Ludovic and Gregoire, Cattan and Abdul Hussain, Ali and "
    "Gatti, Ramiro and Goncharenko, Vladislav and Andreev, Anton and Tates, Alberto and "
    "Kojima, Simon and Thielen, Jordy and Moreau, Thomas and Roy, Yannick and "
    "Jayaram, Vinay and Barachant, Alexandre and Chevallier, Sylvain and others"
)
_PYRIEMANN_AUTHORS = (
    "Barachant, Alexandre and Barth\u00e9lemy, Quentin and King, Jean-R\u00e9mi and "
    "Gramfort, Alexandre and Chevallier, Sylvain and Rodrigues, Pedro L. C. and "
    "Olivetti, Emanuele and Goncharenko, Vladislav and Wagner vom Berg, Gabriel and "
    "Reguig, Ghiles and Lebeurrier, Arthur and Bj\u00e4reholt, Erik and "
    "Yamamoto, Maria Sayu and Clisson, Pierre and Corsi, Marie-Constance and "
    "Carrara, Igor and Mellot, Apolline and Lopes, Bruna Junqueira and Gaisford, Brent and "
    "Mian, Ammar and Andreev, Anton and Cattan, Gregoire"
)


def _fixed_entries(versions, year):
    return [
        BibEntry("article", "gramfort2013mne", {
            "author": "Gramfort, Alexandre and Luessi, Martin and Larson, Eric and "
                      "Engemann, Denis A. and Strohmeier, Daniel and Brodbeck, Christian and "
                      "Goj, Roman and Jas, Mainak and Brooks, Teon and Parkkonen, Lauri and "
                      "H\u00e4m\u00e4l\u00e4inen, Matti S.",
            "title": "MEG and EEG Data Analysis with MNE-Python",
            "journal": "Frontiers in Neuroscience", "volume": "7", "number": "267",
            "pages": "1--13", "year": "2013", "doi": "10.3389/fnins.2013.00267"}),
        BibEntry("article", "jayaram2018moabb", {
            "author": "Jayaram, Vinay and Barachant, Alexandre",
            "title": "MOABB: trustworthy algorithm benchmarking for BCIs",
            "journal": "Journal of Neural Engineering", "volume": "15", "number": "6",
            "pages": "066011", "year": "2018", "doi": "10.1088/1741-2552/aadea0"}),
        BibEntry("misc", "aristimunha2023moabb", {
            "author": _MOABB_AUTHORS,
            "title": "Mother of all BCI Benchmarks (MOABB)",
            "publisher": "Zenodo", "version": versions.get("moabb") or "",
            "year": "2023", "doi": "10.5281/zenodo.10034223",
            "url": "https://github.com/NeuroTechX/moabb",
            "note": "Software" + (f", version {versions['moabb']}" if versions.get("moabb")
                                  else "")}),
        BibEntry("misc", "chevallier2024moabb", {
            "author": "Chevallier, Sylvain and Carrara, Igor and Aristimunha, Bruno and "
                      "Guetschel, Pierre and Sedlar, Sara and Lopes, Bruna Junqueira and "
                      "Velut, S\u00e9bastien and Khazem, Salim and Moreau, Thomas",
            "title": "The largest EEG-based BCI reproducibility study for open science: "
                     "the MOABB benchmark",
            "year": "2024", "eprint": "2404.15319", "archiveprefix": "arXiv",
            "doi": "10.48550/arXiv.2404.15319", "note": "arXiv:2404.15319"}),
        BibEntry("software", "barachant_pyriemann", {
            "author": _PYRIEMANN_AUTHORS, "title": "pyRiemann",
            "publisher": "Zenodo", "version": versions.get("pyriemann") or "",
            "year": year, "doi": "10.5281/zenodo.593816",
            "url": "https://github.com/pyRiemann/pyRiemann",
            "note": "Software" + (f", version {versions['pyriemann']}"
                                  if versions.get("pyriemann") else "")}),
        BibEntry("article", "pedregosa2011scikit", {
            "author": "Pedregosa, Fabian and Varoquaux, Ga\u00ebl and Gramfort, Alexandre and "
                      "Michel, Vincent and Thirion, Bertrand and Grisel, Olivier and "
                      "Blondel, Mathieu and Prettenhofer, Peter and Weiss, Ron and "
                      "Dubourg, Vincent and Vanderplas, Jake and Passos, Alexandre and "
                      "Cournapeau, David and Brucher, Matthieu and Perrot, Matthieu and "
                      "Duchesnay, \u00c9douard",
            "title": "Scikit-learn: Machine Learning in Python",
            "journal": "Journal of Machine Learning Research", "volume": "12",
            "pages": "2825--2830", "year": "2011"}),
        BibEntry("software", "chatbci", {
            "author": "chatbci developers",
            "title": "ChatBCI: human-AI collaborative design of motor-imagery EEG decoders",
            "version": versions.get("chatbci") or "", "year": year,
            "note": "Software" + (f", version {versions['chatbci']}"
                                  if versions.get("chatbci") else "")}, corporate=True),
    ]


def _physionet_entries():
    return [
        BibEntry("article", "schalk2004bci2000", {
            "author": "Schalk, Gerwin and McFarland, Dennis J. and Hinterberger, Thilo and "
                      "Birbaumer, Niels and Wolpaw, Jonathan R.",
            "title": "BCI2000: a general-purpose brain-computer interface (BCI) system",
            "journal": "IEEE Transactions on Biomedical Engineering", "volume": "51",
            "number": "6", "pages": "1034--1043", "year": "2004",
            "doi": "10.1109/TBME.2004.827072"}),
        BibEntry("article", "goldberger2000physiobank", {
            "author": "Goldberger, Ary L. and Amaral, Luis A. N. and Glass, Leon and "
                      "Hausdorff, Jeffrey M. and Ivanov, Plamen Ch. and Mark, Roger G. and "
                      "Mietus, Joseph E. and Moody, George B. and Peng, Chung-Kang and "
                      "Stanley, H. Eugene",
            "title": "PhysioBank, PhysioToolkit, and PhysioNet: components of a new research "
                     "resource for complex physiologic signals",
            "journal": "Circulation", "volume": "101", "number": "23",
            "pages": "e215--e220", "year": "2000", "doi": "10.1161/01.CIR.101.23.e215"}),
    ]


# ---------------------------------------------------------------------------
# Datasets and models


def _is_physionet(ds) -> bool:
    return (ds.get("name") == "PhysionetMI" or ds.get("code") == "PhysionetMotorImagery"
            or str(ds.get("doi") or "").lower() == "10.1109/tbme.2004.827072")


def _is_simulated(ds) -> bool:
    return str(ds.get("name") or ds.get("code") or "").startswith("SimulatedMI")


_YEAR = re.compile(r"\b(19[5-9]\d|20\d\d)\b")
_AUTHOR = re.compile(r"(?:^|,\s*|\band\s+)([^,]+?),\s*((?:[A-Z\u00c0-\u017f][a-z]?\.\s*-?)+)")


def _parse_reference(reference):
    """Best-effort ``(authors, year, title)`` of a MOABB ``Authors, YEAR. Title. ...`` text."""
    if not reference:
        return None, None, None
    text = " ".join(str(reference).split())
    match = _YEAR.search(text)
    year = match.group(1) if match else None
    authors = title = None
    if match:
        head = text[: match.start()].rstrip(" ,(")
        found = _AUTHOR.findall(head + ",")
        if found:
            names = [f"{last.strip()}, {first.strip()}" for last, first in found
                     if len(last.strip()) < 60]
            authors = " and ".join(names) or None
        rest = text[match.end():].lstrip(").,: ")
        title = rest.split(". ")[0].strip() or None
    return authors, year, title


def dataset_keys(ds) -> list:
    """BibTeX keys citing a dataset (the ``protocol.dataset`` dict of a ``run``)."""
    if _is_physionet(ds):
        return list(PHYSIONET_KEYS)
    if _is_simulated(ds):
        return ["chatbci"]
    if not (ds.get("doi") or ds.get("reference")):
        return [f"dataset_{_slug(ds.get('name') or ds.get('code'))}"]
    authors, year, _ = _parse_reference(ds.get("reference"))
    surname = _slug(authors.split(",")[0]) if authors else "dataset"
    return [f"{surname}{year or ''}_{_slug(ds.get('name') or ds.get('code'))}"]


def _slug(text) -> str:
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", ascii_text.lower()) or "x"


def _dataset_entry(ds):
    key = dataset_keys(ds)[0]
    authors, year, title = _parse_reference(ds.get("reference"))
    name, code = ds.get("name") or ds.get("code"), ds.get("code")
    note = f"EEG dataset {name}" + (f" (MOABB code {code})" if code and code != name else "")
    if ds.get("reference"):
        note += f". Reference: {' '.join(str(ds['reference']).split())}"
    return BibEntry("misc", key, {
        "author": authors or "", "title": title or f"{name} dataset",
        "year": year or "", "doi": ds.get("doi") or "", "note": note})


def llm_key(model) -> str:
    """``llm_<model>`` with non-alphanumerics as underscores: ``llm_gpt_4o_mini``."""
    return "llm_" + (re.sub(r"[^a-z0-9]+", "_", str(model).lower()).strip("_") or "model")


def _llm_entry(record, info):
    provider = record.llm_provider
    versions = info["versions"] or [info["model"]]
    first, last = info["first_ts"][:10], info["last_ts"][:10]
    when = first if first == last else f"{first} to {last}"
    fields = {
        "author": provider["name"] if not provider.get("local") else "",
        "title": info["model"],
        "publisher": provider["name"],
        "version": ", ".join(versions),
        "year": first[:4],
        "note": (f"Large language model, accessed {when} through an OpenAI-compatible API "
                 f"as the ChatBCI assistant; model versions reported by the API: "
                 f"{', '.join(versions)}"),
    }
    if not provider.get("local"):
        fields["url"] = provider["url"]
    return BibEntry("software", llm_key(info["model"]), fields, corporate=True)


def software_year(record) -> str:
    """The year the software was used: that of the journal's first event."""
    return record.items[0].ts[:4] if record.items else ""


def bib_entries(record) -> list:
    """All entries of a session, in a stable order (software, datasets, models).

    Parameters
    ----------
    record : SessionRecord
    """
    entries = _fixed_entries(record.software_versions, software_year(record))
    keys = {e.key for e in entries}
    for ds in record.datasets_used:
        if _is_physionet(ds):
            new = _physionet_entries()
        elif _is_simulated(ds):
            new = []
        else:
            new = [_dataset_entry(ds)]
        for entry in new:
            if entry.key not in keys:
                entries.append(entry)
                keys.add(entry.key)
    for info in record.ai_actors.values():
        if info["is_llm"]:
            entry = _llm_entry(record, info)
            if entry.key not in keys:
                entries.append(entry)
                keys.add(entry.key)
    return entries


def format_bibtex(entries) -> str:
    """The ``.bib`` text of ``entries``."""
    header = ("% References for a ChatBCI session, generated from its journal by "
              "chatbci.export.\n% Cite the software versions listed in the methods.\n\n")
    return header + "\n\n".join(e.to_bibtex() for e in entries) + "\n"


def bibtex(workspace_or_record) -> str:
    """The BibTeX of a workspace: software, datasets and language models used.

    Parameters
    ----------
    workspace_or_record : Workspace | path-like | SessionRecord

    Returns
    -------
    bib : str
        Parseable BibTeX. Keys: :data:`CORE_KEYS`, each dataset's (see
        :func:`dataset_keys`) and ``llm_<model>`` per language model (none
        when only the offline rule-based assistant was used).
    """
    return format_bibtex(bib_entries(load_record(workspace_or_record)))


def _authors_short(author, corporate):
    if not author:
        return ""
    if corporate:
        return author
    names = [a.strip() for a in author.split(" and ") if a.strip() and a.strip() != "others"]
    lasts = [n.split(",")[0].strip() for n in names]
    if len(lasts) > 3 or "others" in author:
        return f"{lasts[0]} et al."
    return " and ".join(lasts)


def bibliography_items(entries) -> list:
    """``(key, LaTeX text)`` per entry, for a ``thebibliography`` environment."""
    items = []
    for e in entries:
        f = e.fields
        title = escape_latex(f.get("title", ""))
        parts = [_authors_short(f.get("author"), e.corporate), f"\\emph{{{title}}}"]
        venue = f.get("journal") or f.get("publisher") or ""
        if venue:
            vol = f" {f['volume']}" if f.get("volume") else ""
            num = f"({f['number']})" if f.get("number") else ""
            pages = f":{f['pages']}" if f.get("pages") else ""
            parts.append(escape_latex(venue + vol + num + pages))
        if f.get("version"):
            parts.append(f"version {escape_latex(f['version'])}")
        if f.get("year"):
            parts.append(escape_latex(f["year"]))
        if f.get("doi"):
            parts.append(f"doi:{escape_latex(f['doi'])}")
        elif f.get("eprint"):
            parts.append(f"arXiv:{escape_latex(f['eprint'])}")
        text = ". ".join(escape_latex(p) if i == 0 else p for i, p in enumerate(parts) if p)
        items.append((e.key, text + "."))
    return items
