"""Dependencies shared by the routers: the service state and the access checks."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.errors import EngineUnavailable, Forbidden, Unauthorized
from service.state import ServiceState

_bearer = HTTPBearer(auto_error=False)


def get_state(request: Request) -> ServiceState:
    state = getattr(request.app.state, "deltaserve", None)
    if state is None:
        raise EngineUnavailable("the service is still starting")
    return state


State = Annotated[ServiceState, Depends(get_state)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _check(credentials: HTTPAuthorizationCredentials | None, accepted: list[str], what: str) -> None:
    if not accepted:
        return
    if credentials is None:
        raise Unauthorized(f"this endpoint needs {what} as a bearer token (Authorization: Bearer <key>)")
    if not any(secrets.compare_digest(credentials.credentials, key) for key in accepted):
        raise Forbidden(f"the bearer token is not {what}")


def require_admin(state: State, credentials: Credentials) -> None:
    _check(credentials, [state.settings.admin_key] if state.settings.admin_key else [], "the admin key")


def require_api_key(state: State, credentials: Credentials) -> None:
    _check(credentials, state.settings.api_keys, "an API key")


def require_reader(state: State, credentials: Credentials) -> None:
    """Listing adapters and pipelines and reading /stats: an API key (or the admin key) unless
    DELTASERVE_PUBLIC_METADATA opens them."""
    if state.settings.public_metadata:
        return
    admin = [state.settings.admin_key] if state.settings.admin_key else []
    _check(credentials, [*state.settings.api_keys, *admin] if state.settings.api_keys else [], "an API key")


AdminAccess = Depends(require_admin)
InferenceAccess = Depends(require_api_key)
ReadAccess = Depends(require_reader)
