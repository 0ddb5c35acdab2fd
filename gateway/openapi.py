"""Request bodies in ``/openapi.json`` for routes that parse their body themselves.

Those routes read the body in a dependency (size limit, OpenAI-shaped errors), so FastAPI
cannot see its model; ``document_bodies`` adds each model's JSON Schema to the generated
document, with its nested models under ``components.schemas``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

REF = "#/components/schemas/{model}"


def document_bodies(app: FastAPI, bodies: Mapping[str, type[BaseModel]]) -> None:
    """Document ``bodies`` (POST path -> request model) in ``app.openapi()``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                                 routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for path, model in bodies.items():
                operation = schema.get("paths", {}).get(path, {}).get("post")
                if operation is None or "requestBody" in operation:
                    continue
                body = model.model_json_schema(by_alias=True, ref_template=REF)
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
                operation["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
