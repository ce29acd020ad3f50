"""Provenance of an export: what produced the session, and which journal it covers.

A reader checks an export against its workspace by running ``chatbci verify``
on the journal and comparing the head (last event id and hash) with the one
recorded here. Exports are deterministic -- the same journal always gives
the same files -- so no export time is recorded.
"""

from __future__ import annotations

from importlib import metadata

from .record import load_record

__all__ = ["SCHEMA_VERSION", "provenance"]

#: Version of the export's JSON document (``export.schema.json``).
SCHEMA_VERSION = "1.0"


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def provenance(workspace_or_record) -> dict:
    """Versions, platform and the journal head of a workspace.

    Parameters
    ----------
    workspace_or_record : Workspace | path-like | SessionRecord

    Returns
    -------
    provenance : dict
        ``journal`` (``n_events``, ``head_id``, ``head_hash``, ``verified``,
        ``verify_report``, ``verify_command``), ``sessions`` (each session's
        start and end, backend, model, whether it is an LLM, Python,
        platform, package versions and seeds), ``software`` (versions of the
        session the methods report), ``workspace`` (settings), ``export``
        (exporter version and schema version; ``anonymized``).
    """
    record = load_record(workspace_or_record)
    sessions = []
    for s in record.sessions:
        prov = s["provenance"] or {}
        end = s["end"]
        sessions.append({
            "session_id": s["session_id"], "started": s["start"].ts,
            "ended": end.ts if end is not None else None,
            "n_events": end.payload.get("n_events") if end is not None else None,
            "backend": s["backend"], "model": s["model"], "is_llm": s["is_llm"],
            "python": prov.get("python"), "implementation": prov.get("implementation"),
            "platform": prov.get("platform"), "packages": prov.get("packages") or {},
            "seeds": prov.get("seeds") or {},
        })
    sess = record.software_session
    cfg = record.config
    return {
        "journal": {
            "file": "journal.sqlite", "n_events": record.head_id, "head_id": record.head_id,
            "head_hash": record.head_hash, "verified": record.verified,
            "verify_report": record.verify_message,
            "verify_command": "chatbci verify <workspace>",
        },
        "software": {"python": sess["provenance"].get("python") if sess else None,
                     "platform": sess["provenance"].get("platform") if sess else None,
                     "packages": record.software_versions},
        "sessions": sessions,
        "workspace": {
            "title": record.title, "goal": record.goal,
            "datasets": cfg.get("datasets", []), "subjects": cfg.get("subjects"),
            "evaluation": cfg.get("evaluation"), "random_state": cfg.get("random_state"),
            "autonomy": cfg.get("autonomy"),
            "llm": {"model": (cfg.get("llm") or {}).get("model"),
                    "base_url": (cfg.get("llm") or {}).get("base_url")},
        },
        "export": {"generator": "chatbci.export", "chatbci": _version("chatbci"),
                   "schema_version": SCHEMA_VERSION, "anonymized": record.anonymized,
                   "note": "Generated from the journal alone; no LLM is used to export."},
    }
