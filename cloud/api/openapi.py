"""The OpenAPI 3.1 document of every registered operation (served at ``/openapi.json``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from cloud.api.router import Operation, Router

_PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_GENERIC_ERRORS = (400, 401, 403, 404, 409, 413, 415)


def build_openapi(routers: Sequence[Router], *, base_url: str) -> dict[str, Any]:
    components: dict[str, Any] = {"Fault": {"type": "object"}}
    paths: dict[str, dict[str, Any]] = {}
    for router in routers:
        for op in router.operations:
            path = _PATH_PARAM.sub(r"{\1}", op.full_path or "/")
            paths.setdefault(path, {})[op.method.lower()] = _operation(op, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "aiostack", "version": "1"},
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
            },
        },
    }


def _operation(op: Operation, components: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(op.full_path)
    ]
    parameters += [
        {"name": q.name, "in": "query", "required": False, "schema": q.schema}
        | ({"description": q.description} if q.description else {})
        for q in op.query
    ]
    responses: dict[str, Any] = {str(op.status): {"description": "Success"}}
    fault = {"application/json": {"schema": {"$ref": "#/components/schemas/Fault"}}}
    for status in sorted({*_GENERIC_ERRORS, *op.errors}):
        if status == 401 and not op.auth:
            continue
        responses[str(status)] = {"description": "Error", "content": fault}
    spec: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.router.service],
        "parameters": parameters,
        "responses": responses,
    }
    if op.auth:
        spec["security"] = [{"token": []}]
    if op.body is not None:
        schema = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[op.body.__name__] = schema
        spec["requestBody"] = {
            "required": True,
            "content": {
                ctype: {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}
                for ctype in op.content_types
            },
        }
    return spec
