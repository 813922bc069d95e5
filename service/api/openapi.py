"""The OpenAPI document describes the server as configured: which operations need which key (one bearer
scheme per access level, service/api/deps.py), and nothing about keys where none is set (a loopback server
without keys is open, and its document says so)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import FastAPI, Path
from fastapi.openapi.utils import get_openapi

from service.api.deps import ADMIN_SCHEME, API_SCHEME, READ_SCHEME
from service.config import Settings
from service.store.names import NAME_PATTERN, NAME_RULE

# A name in a path: documented with its rule; the routes check it themselves (422 invalid_name).
Name = Annotated[str, Path(description=NAME_RULE, json_schema_extra={"pattern": f"^{NAME_PATTERN.pattern}$"})]


def _enforced_schemes(settings: Settings) -> set[str]:
    enforced = set()
    if settings.admin_key:
        enforced.add(ADMIN_SCHEME)
    if settings.api_keys:
        enforced.add(API_SCHEME)
        if not settings.public_metadata:
            enforced.add(READ_SCHEME)
    return enforced


def _describe_access(schema: dict[str, Any], enforced: set[str]) -> None:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            needed = [r for r in operation.get("security", []) if set(r) & enforced]
            if needed:
                operation["security"] = needed
                continue
            operation.pop("security", None)
            for status in ("401", "403"):  # an open operation never answers these
                operation.get("responses", {}).pop(status, None)
    schemes = schema.get("components", {}).get("securitySchemes", {})
    for name in [name for name in schemes if name not in enforced]:
        del schemes[name]
    if not schemes:
        schema.get("components", {}).pop("securitySchemes", None)


def install_openapi(app: FastAPI, settings: Settings) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _describe_access(schema, _enforced_schemes(settings))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the document lists for the path template `path` matches (for a 405's Allow header)."""
    methods: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)
