"""Turn pydantic validation errors into messages a researcher can act on."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

_MAX_REPR = 80


def short_repr(value, limit=_MAX_REPR):
    """``repr(value)`` cut to ``limit`` characters (payloads can be large)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _allowed_keys(model: type[BaseModel], loc) -> list[str] | None:
    """Field names allowed at ``loc`` (its parent path) in ``model``, if known."""
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        sub = getattr(field, "annotation", None) if field else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return None
        model = sub
    return sorted(model.model_fields)


def describe(err: ValidationError, model: type[BaseModel], prefix="") -> str:
    """One line per problem: the key, the value given and what is allowed.

    Parameters
    ----------
    err : pydantic.ValidationError
    model : type of pydantic.BaseModel
        The model that raised, to list the allowed keys of unknown ones.
    prefix : str
        Prepended to each key, e.g. ``"payload."``.
    """
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = prefix + ".".join(str(p) for p in loc) if loc else prefix.rstrip(".") or "value"
        kind = e["type"]
        if kind == "missing":
            lines.append(f"`{key}` is required but missing")
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc)
            hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
            lines.append(f"`{key}` is not a known setting{hint}")
        else:
            msg = e["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            lines.append(f"`{key}` = {short_repr(e.get('input'))}: {msg}")
    return "; ".join(lines)
