"""BibTeX for a session: the software, the datasets, the methods and the language models used.

Always cited: MNE-Python (Gramfort et al. 2013), MOABB (the software on Zenodo,
Jayaram & Barachant 2018, Chevallier et al. 2024), pyRiemann, scikit-learn and
chatbci. Each dataset benchmarked in the journal is cited from MOABB's dataset
metadata recorded with the run (PhysioNet EEGMMIDB: Schalk et al. 2004 and
Goldberger et al. 2000); simulated data cite chatbci. Each method reference of
a benchmarked pipeline (its ``citations``, DOIs or URLs) becomes an entry: the
shipped pipelines' references with their full metadata, any other DOI or URL as
a ``@misc`` entry naming it. Each *language model* that took part gets an entry
naming the model, its provider and the versions the API reported; the offline
rule-based assistant is not a model and gets none.

Entries hold plain-text fields (:class:`BibEntry`). :func:`format_bibtex`
writes them with pybtex as a ``.bib`` that plain BibTeX and biblatex/biber
both read: only entry types and fields of BibTeX's standard styles (software
is ``@misc`` with ``howpublished`` and a ``note`` naming the version; ``doi``
and ``url`` are extra fields biblatex prints and BibTeX ignores), text escaped
for LaTeX, non-ASCII letters as accent commands. :func:`format_references`
formats the same ``.bib`` for a reader with pybtex's ``unsrt`` style (as text,
HTML with linked DOIs, LaTeX or Markdown), so no reference is formatted by
hand.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from functools import lru_cache

from ._text import escape_latex
from .deep import deep_bib_entries
from .record import load_record

__all__ = ["CORE_KEYS", "BibEntry", "bib_entries", "bibliography_items", "bibtex",
           "citation_key", "dataset_keys", "format_bibtex", "format_references", "llm_key",
           "release_year", "software_year"]

#: Keys of the entries every export cites.
CORE_KEYS = ("gramfort2013mne", "jayaram2018moabb", "aristimunha2023moabb",
             "chevallier2024moabb", "barachant_pyriemann", "pedregosa2011scikit", "chatbci")

PHYSIONET_KEYS = ("schalk2004bci2000", "goldberger2000physiobank")

#: Fields written verbatim (biblatex reads them as verbatim; BibTeX ignores them).
_VERBATIM = ("doi", "url")


@dataclass
class BibEntry:
    """One bibliography entry with plain-text fields.

    Attributes
    ----------
    type : str
        A standard BibTeX type: ``article``, ``inproceedings``, ``misc``.
    key : str
    fields : dict of str to str
        In output order, plain text (escaped when written). ``author`` is a
        list of ``(last, first)`` pairs, or one name for an organisation
        (see ``corporate``).
    corporate : bool
        The author is an organisation, kept as one name (``{OpenAI}``).
    """

    type: str
    key: str
    fields: dict = field(default_factory=dict)
    corporate: bool = False

    def to_bibtex(self) -> str:
        """This entry as BibTeX text."""
        return _write_bibtex([self])


# ---------------------------------------------------------------------------
# Writing: plain text -> BibTeX fields (pybtex data)


def _latex_letter(match) -> str:
    # {\"a}: a braced accent command is one letter to BibTeX (sorting,
    # abbreviating first names) and is decoded back to UTF-8 by biber.
    import latexcodec  # noqa: F401  (pybtex's dependency; registers the codec)

    return "{" + codecs.encode(match.group(), "ulatex+ascii") + "}"


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _bib_text(text) -> str:
    """Plain text as the value of a BibTeX field (pure ASCII, balanced braces)."""
    # Braces are replaced, not escaped: BibTeX counts escaped braces too.
    text = " ".join(str(text).replace("{", "(").replace("}", ")").split())
    text = escape_latex(text).replace(r"\allowbreak{}", "")
    return _NON_ASCII.sub(_latex_letter, text)


def _bib_name(last, first="") -> str:
    last = _bib_text(last)
    if " " in last:  # "Abdul Hussain", "Wagner vom Berg": one surname, not von + last
        last = "{" + last + "}"
    return f"{last}, {_bib_text(first)}" if first else last


def _bib_fields(entry) -> dict:
    out = {}
    for name, value in entry.fields.items():
        if value is None or value == "" or value == []:
            continue
        if name == "author":
            if entry.corporate:
                out[name] = "{" + _bib_text(value) + "}"
            else:
                out[name] = " and ".join(_bib_name(*pair) for pair in value)
        elif name in _VERBATIM:
            out[name] = str(value).replace("{", "%7B").replace("}", "%7D").replace(" ", "%20")
        elif name == "title":
            out[name] = "{" + _bib_text(value) + "}"  # keep the capitalisation as written
        else:
            out[name] = _bib_text(value)
    if "author" not in out and out.get("title"):
        # BibTeX's styles sort and label by author, else by ``key``: without
        # either they warn "to sort, need author or key".
        out["key"] = _bib_text(entry.fields["title"])
    return out


def _writer():
    from pybtex.database.output.bibtex import Writer

    class _BraceWriter(Writer):
        """pybtex's writer with every value in braces (BibTeX, biber and simple
        parsers all read braces) and values written as given (already LaTeX)."""

        def quote(self, s):
            self.check_braces(s)
            return "{" + s + "}"

        def _encode(self, text):
            return text

    return _BraceWriter()


def _bibliography_data(entries):
    from pybtex.database import BibliographyData, Entry

    data = BibliographyData()
    for e in entries:
        # The author is one field, not pybtex persons, so names are written
        # exactly as given (braced multi-word surnames, organisations).
        data.entries[e.key] = Entry(e.type, fields=_bib_fields(e))
    return data


def _write_bibtex(entries) -> str:
    return _writer().to_string(_bibliography_data(entries))


# ---------------------------------------------------------------------------
# Release years: a software citation carries the year of the version used


#: Release year of each minor version, from the projects' release tags and
#: PyPI upload dates. A version missing here gets no year rather than a guess.
_RELEASE_YEARS = {
    "moabb": {"0.5": "2023", "1.0": "2023", "1.1": "2024", "1.2": "2025", "1.3": "2025",
              "1.4": "2025", "1.7": "2026"},
    "pyriemann": {"0.5": "2023", "0.6": "2024", "0.7": "2024", "0.8": "2025", "0.9": "2025",
                  "0.10": "2026", "0.11": "2026", "0.12": "2026"},
}


def release_year(package, version) -> str:
    """The year ``package`` released ``version`` (``""`` when not known).

    Parameters
    ----------
    package : str
        ``"moabb"`` or ``"pyriemann"``.
    version : str | None
        As recorded in the session's provenance, e.g. ``"1.7.2"``.
    """
    match = re.match(r"v?(\d+)\.(\d+)", str(version or ""))
    if not match:
        return ""
    return _RELEASE_YEARS.get(package, {}).get(f"{int(match[1])}.{int(match[2])}", "")


def software_year(record) -> str:
    """The year the software was used: that of the journal's first event.

    chatbci cites itself with this year: its version is a development version
    without a release date.
    """
    return record.items[0].ts[:4] if record.items else ""


def _chatbci_url() -> str:
    """The project URL in chatbci's package metadata (``""`` if none is declared)."""
    from importlib import metadata

    try:
        urls = metadata.metadata("chatbci").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return ""
    found = dict(u.split(",", 1) for u in urls if "," in u)
    for label in ("Homepage", "Source", "Repository", "Documentation"):
        if label in found:
            return found[label].strip()
    return ""


# ---------------------------------------------------------------------------
# Fixed entries


def _names(text):
    """``"Last, First; Last, First"`` -> ``[(last, first), ...]``."""
    return [tuple(p.strip() for p in name.split(",", 1)) for name in text.split(";")]


# MOABB's Zenodo record as MOABB 1.7 asks to cite it (its README), in that
# order; its CITATION.cff swaps Grégoire Cattan's names, corrected here.
_MOABB_AUTHORS = _names(
    "Aristimunha, Bruno; Carrara, Igor; Guetschel, Pierre; Sedlar, Sara; Rodrigues, Pedro; "
    "Sosulski, Jan; Narayanan, Divyesh; Bjareholt, Erik; Barthelemy, Quentin; "
    "Schirrmeister, Robin Tibor; Kobler, Reinmar; Kalunga, Emmanuel; Darmet, Ludovic; "
    "Cattan, Gr\u00e9goire; Abdul Hussain, Ali; Gatti, Ramiro; Goncharenko, Vladislav; "
    "Andreev, Anton; Tates, Alberto; Kojima, Simon; Thielen, Jordy; Hajhassani, Davoud; "
    "Graignic, Paul-Adrien; Begany, Katelyn; Leto, Benedetto; Davis, Ethan; Munro, Zachary; "
    "Romani, Michele; Talar, Baris; Schrag, Emily; Kowshik, Bhargav; Badang, Ralph Angelo; "
    "Xu, Grace; Polychroniadou, Danae; Lefundes da Silva, Henrique; Bano, Azra; "
    "Singh, Aditya; Sokolova, Anna; Rahimipour, Meysam; Moreau, Thomas; Roy, Yannick; "
    "Jayaram, Vinay; Barachant, Alexandre; Chevallier, Sylvain")
# pyRiemann's CITATION.cff, in its order.
_PYRIEMANN_AUTHORS = _names(
    "Barachant, Alexandre; Barth\u00e9lemy, Quentin; King, Jean-R\u00e9mi; "
    "Gramfort, Alexandre; Chevallier, Sylvain; Rodrigues, Pedro L. C.; Olivetti, Emanuele; "
    "Goncharenko, Vladislav; Wagner vom Berg, Gabriel; Reguig, Ghiles; "
    "Lebeurrier, Arthur; Bj\u00e4reholt, Erik; Yamamoto, Maria Sayu; Clisson, Pierre; "
    "Corsi, Marie-Constance; Carrara, Igor; Mellot, Apolline; Junqueira Lopes, Bruna; "
    "Gaisford, Brent; Mian, Ammar; Andreev, Anton; Cattan, Gregoire; Aristimunha, Bruno")


def _version_note(version) -> str:
    return f"Version {version}" if version else ""


def _fixed_entries(versions, year):
    moabb, pyriemann, chatbci = (versions.get(k) for k in ("moabb", "pyriemann", "chatbci"))
    chatbci_url = _chatbci_url()
    return [
        BibEntry("article", "gramfort2013mne", {
            "author": _names(
                "Gramfort, Alexandre; Luessi, Martin; Larson, Eric; Engemann, Denis A.; "
                "Strohmeier, Daniel; Brodbeck, Christian; Goj, Roman; Jas, Mainak; "
                "Brooks, Teon; Parkkonen, Lauri; H\u00e4m\u00e4l\u00e4inen, Matti S."),
            "title": "MEG and EEG Data Analysis with MNE-Python",
            "journal": "Frontiers in Neuroscience", "volume": "7", "number": "267",
            "pages": "1--13", "year": "2013", "doi": "10.3389/fnins.2013.00267"}),
        BibEntry("article", "jayaram2018moabb", {
            "author": _names("Jayaram, Vinay; Barachant, Alexandre"),
            "title": "MOABB: trustworthy algorithm benchmarking for BCIs",
            "journal": "Journal of Neural Engineering", "volume": "15", "number": "6",
            "pages": "066011", "year": "2018", "doi": "10.1088/1741-2552/aadea0"}),
        BibEntry("misc", "aristimunha2023moabb", {
            "author": _MOABB_AUTHORS,
            "title": "Mother of all BCI Benchmarks (MOABB)",
            "howpublished": "Zenodo", "note": _version_note(moabb),
            "year": release_year("moabb", moabb), "doi": "10.5281/zenodo.10034223",
            "url": "https://github.com/NeuroTechX/moabb"}),
        BibEntry("misc", "chevallier2024moabb", {
            "author": _names(
                "Chevallier, Sylvain; Carrara, Igor; Aristimunha, Bruno; Guetschel, Pierre; "
                "Sedlar, Sara; Junqueira Lopes, Bruna; Velut, S\u00e9bastien; Khazem, Salim; "
                "Moreau, Thomas"),
            "title": "The largest EEG-based BCI reproducibility study for open science: "
                     "the MOABB benchmark",
            "howpublished": "arXiv preprint arXiv:2404.15319",
            "year": "2024", "doi": "10.48550/arXiv.2404.15319"}),
        BibEntry("misc", "barachant_pyriemann", {
            "author": _PYRIEMANN_AUTHORS, "title": "pyRiemann",
            "howpublished": "Zenodo", "note": _version_note(pyriemann),
            "year": release_year("pyriemann", pyriemann), "doi": "10.5281/zenodo.593816",
            "url": "https://github.com/pyRiemann/pyRiemann"}),
        BibEntry("article", "pedregosa2011scikit", {
            "author": _names(
                "Pedregosa, Fabian; Varoquaux, Ga\u00ebl; Gramfort, Alexandre; "
                "Michel, Vincent; Thirion, Bertrand; Grisel, Olivier; Blondel, Mathieu; "
                "Prettenhofer, Peter; Weiss, Ron; Dubourg, Vincent; Vanderplas, Jake; "
                "Passos, Alexandre; Cournapeau, David; Brucher, Matthieu; Perrot, Matthieu; "
                "Duchesnay, \u00c9douard"),
            "title": "Scikit-learn: Machine Learning in Python",
            "journal": "Journal of Machine Learning Research", "volume": "12",
            "pages": "2825--2830", "year": "2011"}),
        BibEntry("misc", "chatbci", {
            "author": "chatbci developers",
            "title": "ChatBCI: human-AI collaborative design of motor-imagery EEG decoders",
            "howpublished": "Python package chatbci",
            "note": _version_note(chatbci), "year": year, "url": chatbci_url},
            corporate=True),
    ]


def _physionet_entries():
    return [
        BibEntry("article", "schalk2004bci2000", {
            "author": _names("Schalk, Gerwin; McFarland, Dennis J.; Hinterberger, Thilo; "
                             "Birbaumer, Niels; Wolpaw, Jonathan R."),
            "title": "BCI2000: a general-purpose brain-computer interface (BCI) system",
            "journal": "IEEE Transactions on Biomedical Engineering", "volume": "51",
            "number": "6", "pages": "1034--1043", "year": "2004",
            "doi": "10.1109/TBME.2004.827072"}),
        BibEntry("article", "goldberger2000physiobank", {
            "author": _names("Goldberger, Ary L.; Amaral, Luis A. N.; Glass, Leon; "
                             "Hausdorff, Jeffrey M.; Ivanov, Plamen Ch.; Mark, Roger G.; "
                             "Mietus, Joseph E.; Moody, George B.; Peng, Chung-Kang; "
                             "Stanley, H. Eugene"),
            "title": "PhysioBank, PhysioToolkit, and PhysioNet: components of a new research "
                     "resource for complex physiologic signals",
            "journal": "Circulation", "volume": "101", "number": "23",
            "pages": "e215--e220", "year": "2000", "doi": "10.1161/01.CIR.101.23.e215"}),
    ]


# ---------------------------------------------------------------------------
# Method references of the pipelines (their ``citations``)

_BARACHANT = "Barachant, Alexandre; Bonnet, St\u00e9phane; Congedo, Marco; Jutten, Christian"

#: The references of chatbci's shipped pipelines, by DOI or arXiv URL.
_METHOD_ENTRIES = {
    "10.1007/bf01129656": BibEntry("article", "koles1990spatial", {
        "author": _names("Koles, Zoltan J.; Lazar, Michael S.; Zhou, Steven Z."),
        "title": "Spatial patterns underlying population differences in the background EEG",
        "journal": "Brain Topography", "volume": "2", "number": "4", "pages": "275--284",
        "year": "1990", "doi": "10.1007/BF01129656"}),
    "10.1109/msp.2008.4408441": BibEntry("article", "blankertz2008optimizing", {
        "author": _names("Blankertz, Benjamin; Tomioka, Ryota; Lemm, Steven; "
                         "Kawanabe, Motoaki; M\u00fcller, Klaus-Robert"),
        "title": "Optimizing spatial filters for robust EEG single-trial analysis",
        "journal": "IEEE Signal Processing Magazine", "volume": "25", "number": "1",
        "pages": "41--56", "year": "2008", "doi": "10.1109/MSP.2008.4408441"}),
    "10.1109/ijcnn.2008.4634130": BibEntry("inproceedings", "ang2008filter", {
        "author": _names("Ang, Kai Keng; Chin, Zheng Yang; Zhang, Haihong; Guan, Cuntai"),
        "title": "Filter bank common spatial pattern (FBCSP) in brain-computer interface",
        "booktitle": "2008 IEEE International Joint Conference on Neural Networks "
                     "(IEEE World Congress on Computational Intelligence)",
        "pages": "2390--2397", "year": "2008", "doi": "10.1109/IJCNN.2008.4634130"}),
    "10.1007/978-3-642-15995-4_78": BibEntry("inproceedings", "barachant2010riemannian", {
        "author": _names(_BARACHANT),
        "title": "Riemannian geometry applied to BCI classification",
        "booktitle": "Latent Variable Analysis and Signal Separation (LVA/ICA 2010)",
        "series": "Lecture Notes in Computer Science", "volume": "6365",
        "pages": "629--636", "publisher": "Springer", "year": "2010",
        "doi": "10.1007/978-3-642-15995-4_78"}),
    "10.1109/tbme.2011.2172210": BibEntry("article", "barachant2012multiclass", {
        "author": _names(_BARACHANT),
        "title": "Multiclass brain-computer interface classification by Riemannian geometry",
        "journal": "IEEE Transactions on Biomedical Engineering", "volume": "59",
        "number": "4", "pages": "920--928", "year": "2012",
        "doi": "10.1109/TBME.2011.2172210"}),
    "10.1016/j.neucom.2012.12.039": BibEntry("article", "barachant2013classification", {
        "author": _names(_BARACHANT),
        "title": "Classification of covariance matrices using a Riemannian-based kernel for "
                 "BCI applications",
        "journal": "Neurocomputing", "volume": "112", "pages": "172--178", "year": "2013",
        "doi": "10.1016/j.neucom.2012.12.039"}),
    "arxiv:2302.04508": BibEntry("misc", "carrara2023classification", {
        "author": _names("Carrara, Igor; Papadopoulo, Th\u00e9odore"),
        "title": "Classification of BCI-EEG based on augmented covariance matrix",
        "howpublished": "arXiv preprint arXiv:2302.04508", "year": "2023",
        "doi": "10.48550/arXiv.2302.04508"}),
}

#: braindecode and the papers of its networks (chatbci.bci.deep), by DOI.
_DEEP_ENTRIES = {
    "10.1002/hbm.23730": BibEntry("article", "schirrmeister2017deep", {
        "author": _names("Schirrmeister, Robin Tibor; Springenberg, Jost Tobias; Fiederer, "
                         "Lukas Dominique Josef; Glasstetter, Martin; Eggensperger, Katharina; "
                         "Tangermann, Michael; Hutter, Frank; Burgard, Wolfram; Ball, Tonio"),
        "title": "Deep learning with convolutional neural networks for EEG decoding and "
                 "visualization",
        "journal": "Human Brain Mapping", "volume": "38", "number": "11",
        "pages": "5391--5420", "year": "2017", "doi": "10.1002/hbm.23730"}),
    "10.1088/1741-2552/aace8c": BibEntry("article", "lawhern2018eegnet", {
        "author": _names("Lawhern, Vernon J.; Solon, Amelia J.; Waytowich, Nicholas R.; "
                         "Gordon, Stephen M.; Hung, Chou P.; Lance, Brent J."),
        "title": "EEGNet: a compact convolutional neural network for EEG-based "
                 "brain-computer interfaces",
        "journal": "Journal of Neural Engineering", "volume": "15", "number": "5",
        "pages": "056013", "year": "2018", "doi": "10.1088/1741-2552/aace8c"}),
    "10.1109/tnsre.2022.3230250": BibEntry("article", "song2023eeg", {
        "author": _names("Song, Yonghao; Zheng, Qingqing; Liu, Bingchuan; Gao, Xiaorong"),
        "title": "EEG Conformer: convolutional transformer for EEG decoding and "
                 "visualization",
        "journal": "IEEE Transactions on Neural Systems and Rehabilitation Engineering",
        "volume": "31", "pages": "710--719", "year": "2023",
        "doi": "10.1109/TNSRE.2022.3230250"}),
    "10.1109/tii.2022.3197419": BibEntry("article", "altaheri2023physics", {
        "author": _names("Altaheri, Hamdi; Muhammad, Ghulam; Alsulaiman, Mansour"),
        "title": "Physics-informed attention temporal convolutional network for EEG-based "
                 "motor imagery classification",
        "journal": "IEEE Transactions on Industrial Informatics", "volume": "19",
        "number": "2", "pages": "2249--2258", "year": "2023",
        "doi": "10.1109/TII.2022.3197419"}),
}
_METHOD_ENTRIES.update(_DEEP_ENTRIES)


def deep_model_entries() -> dict:
    """BibTeX key -> entry of braindecode and its networks' papers."""
    return {e.key: e for e in _DEEP_ENTRIES.values()}


_DOI = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)?(10\.\d{4,9}/\S+)$", re.I)
_ARXIV = re.compile(r"^(?:https?://arxiv\.org/(?:abs|pdf)/|arxiv:\s*)(\d{4}\.\d{4,5})(?:v\d+)?"
                    r"(?:\.pdf)?$", re.I)


def _reference_id(citation):
    """``("doi", "10.x/y")``, ``("arxiv", "2302.04508")`` or ``("url", text)``."""
    text = str(citation).strip()
    match = _DOI.match(text)
    if match:
        return "doi", match.group(1)
    match = _ARXIV.match(text)
    if match:
        return "arxiv", match.group(1)
    return "url", text


def citation_key(citation) -> str:
    """The BibTeX key of a pipeline's method reference (a DOI, arXiv id or URL).

    The shipped pipelines' references have readable keys
    (``barachant2012multiclass``); any other gets ``ref_<slug>``.
    """
    kind, ident = _reference_id(citation)
    known = _METHOD_ENTRIES.get(f"{kind}:{ident}".lower() if kind == "arxiv"
                                else ident.lower())
    if known is not None:
        return known.key
    return "ref_" + _slug(ident)[:48]


def _method_entry(citation, pipelines):
    kind, ident = _reference_id(citation)
    known = _METHOD_ENTRIES.get(f"{kind}:{ident}".lower() if kind == "arxiv"
                                else ident.lower())
    if known is not None:
        return known
    label = {"doi": f"doi:{ident}", "arxiv": f"arXiv:{ident}", "url": ident}[kind]
    fields = {"title": f"Method reference {label}",
              "note": "Cited by the pipeline definition of " + ", ".join(pipelines)
                      + "; no further bibliographic data was recorded"}
    if kind == "doi":
        fields["doi"] = ident
    elif kind == "arxiv":
        fields["doi"] = f"10.48550/arXiv.{ident}"
    elif re.match(r"https?://", ident):
        fields["url"] = ident
    return BibEntry("misc", citation_key(citation), fields)


def _pipeline_citations(record) -> dict:
    """Citation -> names of the benchmarked pipelines citing it, first seen first."""
    out = {}
    for run in record.runs:
        for name, spec in (run.payload.get("pipelines") or {}).items():
            for citation in (spec or {}).get("citations") or []:
                names = out.setdefault(str(citation).strip(), [])
                if name not in names:
                    names.append(name)
    return out


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
    """Best-effort ``(authors, year, title)`` of a MOABB ``Authors, YEAR. Title. ...`` text.

    ``authors`` is a list of ``(last, first)`` pairs (None if none was found).
    """
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
            authors = [(last.strip(), first.strip()) for last, first in found
                       if len(last.strip()) < 60] or None
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
    surname = _slug(authors[0][0]) if authors else "dataset"
    return [f"{surname}{year or ''}_{_slug(ds.get('name') or ds.get('code'))}"]


def _slug(text) -> str:
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", ascii_text.lower()) or "x"


def _dataset_entry(ds):
    key = dataset_keys(ds)[0]
    authors, year, title = _parse_reference(ds.get("reference"))
    name, code = ds.get("name") or ds.get("code"), ds.get("code")
    howpublished = f"EEG dataset {name}" + (f" (MOABB code {code})" if code and code != name
                                            else "")
    note = (f"Reference: {' '.join(str(ds['reference']).split())}"
            if ds.get("reference") else "")
    return BibEntry("misc", key, {
        "author": authors or [], "title": title or f"{name} dataset",
        "howpublished": howpublished, "note": note, "year": year or "",
        "doi": ds.get("doi") or ""})


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
        "howpublished": f"Large language model served by {provider['name']}",
        "note": (f"Model version reported by the API: {', '.join(versions)}; accessed "
                 f"{when} through an OpenAI-compatible API as the ChatBCI assistant"),
        "year": first[:4],
    }
    if not provider.get("local"):
        fields["url"] = provider["url"]
    return BibEntry("misc", llm_key(info["model"]), fields, corporate=True)


def bib_entries(record) -> list:
    """All entries of a session, in a stable order (software, datasets, methods, models).

    Parameters
    ----------
    record : SessionRecord
    """
    entries = _fixed_entries(record.software_versions, software_year(record))
    keys = {e.key for e in entries}

    def add(new):
        for entry in new:
            if entry.key not in keys:
                entries.append(entry)
                keys.add(entry.key)

    for ds in record.datasets_used:
        if _is_physionet(ds):
            add(_physionet_entries())
        elif not _is_simulated(ds):
            add([_dataset_entry(ds)])
    for citation, pipelines in _pipeline_citations(record).items():
        add([_method_entry(citation, pipelines)])
    add(deep_bib_entries(record))  # braindecode and the networks' papers
    for info in record.ai_actors.values():
        if info["is_llm"]:
            add([_llm_entry(record, info)])
    return entries


def format_bibtex(entries) -> str:
    """The ``.bib`` text of ``entries`` (BibTeX and biblatex/biber read it)."""
    header = ("% References for a ChatBCI session, generated from its journal by "
              "chatbci.export.\n% Standard BibTeX entry types: use it with plain BibTeX "
              "(\\bibliographystyle) or biblatex (backend=biber).\n\n")
    return header + _write_bibtex(entries)


def bibtex(workspace_or_record) -> str:
    """The BibTeX of a workspace: software, datasets, methods and language models used.

    Parameters
    ----------
    workspace_or_record : Workspace | path-like | SessionRecord

    Returns
    -------
    bib : str
        BibTeX that plain BibTeX and biber read. Keys: :data:`CORE_KEYS`,
        each dataset's (see :func:`dataset_keys`), each benchmarked
        pipeline's method references (see :func:`citation_key`) and
        ``llm_<model>`` per language model (none when only the offline
        rule-based assistant was used).
    """
    return format_bibtex(bib_entries(load_record(workspace_or_record)))


# ---------------------------------------------------------------------------
# Formatted references (pybtex styles)


@lru_cache(maxsize=1)
def _style():
    from pybtex.style.formatting.unsrt import Style
    from pybtex.style.template import field, sentence

    class _AsWritten(Style):
        """pybtex's ``unsrt`` with titles as written: names such as MOABB,
        EEG or pyRiemann are not lower-cased."""

        def format_title(self, e, which_field, as_sentence=True):
            title = field(which_field)
            return sentence[title] if as_sentence else title

    return _AsWritten()


_BACKENDS = {"text": "text", "html": "html", "latex": "latex", "tex": "latex",
             "md": "markdown", "markdown": "markdown"}


def format_references(entries, backend="text") -> list:
    """The entries formatted for a reader by pybtex (``unsrt`` style, numbered in order).

    Parameters
    ----------
    entries : list of BibEntry
    backend : {"text", "html", "latex", "markdown"}
        ``html`` links DOIs (``<a href="https://doi.org/...">``) and URLs;
        ``latex`` uses ``\\href``/``\\url`` (hyperref) and ``\\newblock``.

    Returns
    -------
    references : list of (key, label, text)
        ``label`` is the entry's number (``"1"``...), ``text`` the formatted
        reference in the backend's markup.
    """
    from pybtex.database import parse_string
    from pybtex.plugin import find_plugin

    try:
        name = _BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown reference format {backend!r}; use one of "
                         f"{sorted(set(_BACKENDS))}.") from None
    if not entries:
        return []
    # Formatted from the .bib text itself, so the list says what the file says.
    data = parse_string(_write_bibtex(entries), "bibtex")
    renderer = find_plugin("pybtex.backends", name)()
    out = []
    for item in _style().format_bibliography(data):
        text = item.text.render(renderer)
        if name == "html":
            # pybtex marks brace-protected text; the page needs no such markup.
            # (Field text is HTML-escaped, so every tag here is pybtex's own.)
            text = text.replace('<span class="bibtex-protected">', "").replace("</span>", "")
        out.append((item.key, item.label, " ".join(text.split())))
    return out


def bibliography_items(entries) -> list:
    """``(key, LaTeX text)`` per entry, for a ``thebibliography`` environment."""
    return [(key, text) for key, _, text in format_references(entries, "latex")]
