"""Checks against JSON Schemas: the schemas a client sends, and what models answer with them.

One idea: tell a valid tool call or structured answer from an invalid one, with a short
reason. The gateway checks the schemas of a request (``schema_error``); an ensemble drops
candidates whose tool calls (``tool_call_error``) or JSON answers (``output_error``) do not
validate, and checks its fused answer the same way. Validation uses ``jsonschema``, with the
draft the schema names (``$schema``), Draft 2020-12 otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import exceptions, validators


def schema_error(schema: Mapping[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON Schema, or None."""
    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        return _where(exc.path, exc.message)
    return None


def instance_error(instance: Any, schema: Mapping[str, Any]) -> str | None:
    """Why ``instance`` does not validate against ``schema`` (the most relevant error), or None."""
    validator = validators.validator_for(schema)(schema)
    error = exceptions.best_match(validator.iter_errors(instance))
    return None if error is None else _where(error.absolute_path, error.message)


def output_error(text: str, response_format: Mapping[str, Any] | None) -> str | None:
    """Why ``text`` does not satisfy ``response_format`` (json_object / json_schema), or None."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc.msg} at character {exc.pos}"
    if kind == "json_object":
        return None if isinstance(value, dict) else "not a JSON object"
    schema = (response_format or {}).get("json_schema", {}).get("schema")
    return None if schema is None else instance_error(value, schema)


def tool_call_error(
    calls: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
    tool_choice: str | Mapping[str, Any] | None,
) -> str | None:
    """Why these tool calls are not acceptable answers to a request, or None.

    Each call must name a tool of the request (the named one when ``tool_choice`` names one),
    and its ``arguments`` must be JSON that validates against that tool's ``parameters``.
    """
    schemas = {t["function"]["name"]: t["function"].get("parameters") for t in tools}
    wanted = tool_choice["function"]["name"] if isinstance(tool_choice, Mapping) else None
    for call in calls:
        function = call.get("function") or {}
        name = function.get("name")
        if name not in schemas:
            return f"called an unknown tool {name!r}"
        if wanted is not None and name != wanted:
            return f"called {name!r}, but tool_choice asks for {wanted!r}"
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except json.JSONDecodeError as exc:
            return f"{name}: arguments are not JSON: {exc.msg}"
        if not isinstance(arguments, dict):
            return f"{name}: arguments are not a JSON object"
        schema = schemas[name]
        if schema and (reason := instance_error(arguments, schema)):
            return f"{name}: {reason}"
    return None


def _where(path: Sequence[Any], message: str) -> str:
    location = "/".join(str(p) for p in path)
    return f"{location}: {message}" if location else message
