"""The benchmark results table: MOABB's columns and dtypes, and its warnings.

A small module on purpose: it imports neither MNE, MOABB nor scikit-learn, so
that a request answered from the cache (:mod:`chatbci.bci.request_index`)
builds the same table as :func:`~chatbci.bci.benchmark.run_benchmark`
without paying for those imports.
"""

from __future__ import annotations

#: MOABB's column order and dtypes (``Results.to_dataframe``).
RESULT_COLUMNS = {
    "score": "float32",
    "time": "float32",
    "samples": "float32",
    "samples_test": "float32",
    "n_classes": "float32",
    "subject": "str",
    "session": "str",
    "channels": "int64",
    "n_sessions": "int64",
    "dataset": "str",
    "pipeline": "str",
}


class DataWarning(UserWarning):
    """The data of a subject look incomplete (e.g. fewer trials than expected)."""


class UnseededWarning(UserWarning):
    """A pipeline draws random numbers without a seed: its scores are one draw."""


def results_frame(rows, n_sessions, dataset_name, pipeline_order, subject_order):
    """The results table of ``rows`` (one dict per subject, session and pipeline).

    Parameters
    ----------
    rows : list of dict
        Result rows without the ``n_sessions`` and ``dataset`` columns.
    n_sessions : int
        Sessions per subject of the dataset.
    dataset_name : str
        The dataset's display name (:func:`~chatbci.bci.datasets.display_name`).
    pipeline_order, subject_order : list
        The pipelines as requested and the subjects in dataset order: the
        table's row order, so equal requests give equal tables.

    Returns
    -------
    results : pandas.DataFrame
        MOABB's columns with MOABB's dtypes.
    """
    import pandas as pd

    df = pd.DataFrame(rows, columns=[c for c in RESULT_COLUMNS if c not in
                                     ("n_sessions", "dataset")])
    df["n_sessions"] = n_sessions
    df["dataset"] = dataset_name
    df = df[df["pipeline"].isin(pipeline_order)]
    # Deterministic order: pipelines as given, subjects as in the dataset.
    df["_p"] = df["pipeline"].map({n: i for i, n in enumerate(pipeline_order)})
    df["_s"] = df["subject"].map({s: i for i, s in enumerate(subject_order)})
    df = df.sort_values(["_p", "_s", "session"]).drop(columns=["_p", "_s"])
    df["subject"] = df["subject"].astype(str)
    df = df.astype(RESULT_COLUMNS)[list(RESULT_COLUMNS)]
    return df.reset_index(drop=True)
