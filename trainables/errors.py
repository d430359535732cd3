"""User-facing errors: the CLI prints their message as one line and exits with status 2 (no traceback)."""
from __future__ import annotations

import difflib

from pydantic import BaseModel, ValidationError


class ArxError(Exception):
    """A mistake the user can fix (bad config, missing dataset, ...). Printed without a traceback."""


class ConfigError(ArxError):
    pass


class DatasetError(ArxError):
    pass


class CheckpointError(ArxError):
    """A checkpoint that arx refuses to load (code inside it) or cannot read."""


def _allowed_fields(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """Walk a pydantic model class along ``loc`` (minus the last item) and list its field names."""
    cls = model
    for part in loc[:-1]:
        if cls is None or not isinstance(part, str):
            return []
        field = cls.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        cls = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return sorted(cls.model_fields) if cls is not None else []


def format_validation_error(exc: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``field.path: what is wrong (allowed: ...)``."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        field = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(loc)) or "<root>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = _allowed_fields(model, loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")
            if allowed:
                msg += f"; allowed: {', '.join(allowed)}"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], (dict, list)):
            msg += f" (got {err['input']!r})"
        lines.append(f"{field}: {msg}")
    return "; ".join(lines)
