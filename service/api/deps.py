"""Dependencies shared by the routers: the service state and the access checks."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.errors import EngineUnavailable, Forbidden, Unauthorized
from service.state import ServiceState

# One bearer scheme per access level, so the OpenAPI document can say which operations need which key, and
# drop the levels no key is configured for (service/api/openapi.py).
ADMIN_SCHEME, API_SCHEME, READ_SCHEME = "AdminKey", "ApiKey", "ReadKey"
_admin_bearer = HTTPBearer(auto_error=False, scheme_name=ADMIN_SCHEME, description="DELTASERVE_ADMIN_KEY")
_api_bearer = HTTPBearer(auto_error=False, scheme_name=API_SCHEME, description="one of DELTASERVE_API_KEYS")
_read_bearer = HTTPBearer(
    auto_error=False,
    scheme_name=READ_SCHEME,
    description="one of DELTASERVE_API_KEYS or the admin key (none with DELTASERVE_PUBLIC_METADATA)",
)


def get_state(request: Request) -> ServiceState:
    state = getattr(request.app.state, "deltaserve", None)
    if state is None:
        raise EngineUnavailable("the service is still starting")
    return state


State = Annotated[ServiceState, Depends(get_state)]
AdminCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)]
ApiCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_api_bearer)]
ReadCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_read_bearer)]


def _check(credentials: HTTPAuthorizationCredentials | None, accepted: list[str], what: str) -> None:
    if not accepted:
        return
    if credentials is None:
        raise Unauthorized(f"this endpoint needs {what} as a bearer token (Authorization: Bearer <key>)")
    if not any(secrets.compare_digest(credentials.credentials, key) for key in accepted):
        raise Forbidden(f"the bearer token is not {what}")


def require_admin(state: State, credentials: AdminCredentials) -> None:
    _check(credentials, [state.settings.admin_key] if state.settings.admin_key else [], "the admin key")


def require_api_key(state: State, credentials: ApiCredentials) -> None:
    _check(credentials, state.settings.api_keys, "an API key")


def require_reader(state: State, credentials: ReadCredentials) -> None:
    """Listing adapters and pipelines and reading /stats: an API key (or the admin key) unless
    DELTASERVE_PUBLIC_METADATA opens them."""
    if state.settings.public_metadata:
        return
    admin = [state.settings.admin_key] if state.settings.admin_key else []
    _check(credentials, [*state.settings.api_keys, *admin] if state.settings.api_keys else [], "an API key")


AdminAccess = Depends(require_admin)
InferenceAccess = Depends(require_api_key)
ReadAccess = Depends(require_reader)
