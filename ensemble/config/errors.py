"""Turn a pydantic ``ValidationError`` into messages a person can act on.

Each error becomes ``(key, message)``:

- ``key`` is the dotted path of the key *as written in the file* (``models.0.fuser.checkpoint``):
  location parts that pydantic adds and the file does not have (the tag of a tagged union such as
  ``openai``, ``function-after[...]``, ``tagged-union[...]``) are dropped.
- ``message`` has no ``Value error,`` prefix; an unknown key names the closest valid key of that
  section (``did you mean 'checkpoint'?``), and so does an unknown ``kind``/``type`` tag.

Unknown keys are reported first: a misspelt required key also shows up as a missing one, and the
misspelling is the useful half.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any, Union

from pydantic import BaseModel, Tag, ValidationError
from pydantic_core import ErrorDetails

_PREFIXES = ("Value error, ", "Assertion failed, ")


def readable_errors(exc: ValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    """``(key, message)`` per error, unknown keys first (see module docstring)."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    return [(_key(e, root), _message(e, root)) for e in errors]


def _key(error: ErrorDetails, root: type[BaseModel]) -> str:
    """The dotted key path of the error, without pydantic's own location parts: walking the
    schema alongside tells a union's tag (``openai``, ``chunks``) from a key of the file."""
    kept: list[str] = []
    current: Any = root
    for part in error["loc"]:
        member = _tagged(current, part)
        if member is not None:
            current = member
            continue
        if isinstance(part, str) and "[" in part:  # a validator's name: function-after[...]
            continue
        kept.append(str(part))
        current = None if current is None else _step(current, part)
    return ".".join(kept)


def _message(error: ErrorDetails, root: type[BaseModel]) -> str:
    kind, msg, ctx = error["type"], error["msg"], error.get("ctx") or {}
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        msg = str(ctx["error"])
    for prefix in _PREFIXES:
        msg = msg.removeprefix(prefix)
    if kind == "extra_forbidden":
        name = str(error["loc"][-1])
        section = _model_at(root, error["loc"][:-1])
        valid = sorted(section.model_fields) if section is not None else []
        hint = _suggestion(name, valid) or (f"; valid keys: {', '.join(valid)}" if valid else "")
        return f"unknown key {name!r}{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        expected = [t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(",")]
        tag = str(ctx.get("tag", ""))
        return (f"{str(ctx.get('discriminator', 'tag')).strip(chr(39))} {tag!r} is not one of "
                f"{', '.join(repr(t) for t in expected)}" + _suggestion(tag, expected))
    if kind.startswith("url_"):
        return (f"{msg} (got {error.get('input')!r}; expected an absolute http(s) URL such as "
                f"http://host:8000/v1)")
    return msg


def _suggestion(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# ----------------------------------------------------------------------------- schema walk


def _model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The pydantic model that validates the section at ``loc`` (tags included), if any."""
    current: Any = root
    for part in loc:
        member = _tagged(current, part)
        current = member if member is not None else _step(current, part)
        if current is None:
            return None
    current = _unwrap(current)
    if typing.get_origin(current) in (Union, types.UnionType):  # ``X | None``
        members = [m for m in typing.get_args(current) if m is not type(None)]
        current = _unwrap(members[0]) if len(members) == 1 else None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _tagged(tp: Any, part: int | str) -> Any:
    """The member of union ``tp`` that the tag ``part`` names, or None (not a union, or not
    one of its tags)."""
    tp = _unwrap(tp)
    if typing.get_origin(tp) not in (Union, types.UnionType):
        return None
    members = [m for m in typing.get_args(tp) if m is not type(None)]
    for member in members:
        if part in _tags(member):
            return member
    return _tagged(members[0], part) if len(members) == 1 else None


def _step(tp: Any, part: int | str) -> Any:
    """The type of ``tp``'s item ``part`` (a field, a dict value, a list item), or None."""
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):  # ``X | None``: step into X
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        return _step(members[0], part) if len(members) == 1 else None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(str(part))
        return None if field is None else field.annotation
    if origin is dict:
        return typing.get_args(tp)[1]
    if origin is list:
        return typing.get_args(tp)[0]
    return None


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _tags(member: Any) -> tuple[Any, ...]:
    """A union member's possible tags: its pydantic ``Tag`` or the Literal values of its
    ``kind``/``type`` field."""
    if typing.get_origin(member) is typing.Annotated:
        marks = [m.tag for m in typing.get_args(member)[1:] if isinstance(m, Tag)]
        if marks:
            return tuple(marks)
    member = _unwrap(member)
    if not (isinstance(member, type) and issubclass(member, BaseModel)):
        return ()
    tags: list[Any] = []
    for name in ("kind", "type"):
        field = member.model_fields.get(name)
        if field is not None and typing.get_origin(field.annotation) is typing.Literal:
            tags.extend(typing.get_args(field.annotation))
    return tuple(tags)
