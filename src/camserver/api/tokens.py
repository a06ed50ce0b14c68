"""``/api/tokens``: managed access tokens (``camserver.tokens``), for the admin token only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from camserver.api.deps import GrantDep, RuntimeDep
from camserver.errors import NotPermitted, TokenNotFound
from camserver.schema import TokenCreate, TokenCreated, TokenOut
from camserver.tokens import Grant, ManagedToken

router = APIRouter(prefix="/api/tokens", tags=["tokens"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "Only an unscoped admin token manages tokens"},
}


def _admin_only(grant: Grant) -> None:
    if not grant.admin or grant.scoped:
        raise NotPermitted("only an admin token for every stream manages tokens")


@router.post("", status_code=status.HTTP_201_CREATED, responses=_RESPONSES)
async def create_token(body: TokenCreate, runtime: RuntimeDep, grant: GrantDep) -> TokenCreated:
    """A new token (shown once: only its hash is kept), optionally limited to some streams
    and to a lifetime. Needs ``CAMSERVER_API_TOKEN`` to be set: without it the server is
    open and a token would protect nothing."""
    _admin_only(grant)
    if not runtime.checker.enabled:
        raise NotPermitted(
            "the server is open (no CAMSERVER_API_TOKEN): set one before handing out tokens"
        )
    record, token = ManagedToken.create(body)
    await runtime.store.add_token(record)
    runtime.checker.managed[record.hash] = record
    return TokenCreated(**record.out().model_dump(), token=token)


@router.get("", responses=_RESPONSES)
async def list_tokens(runtime: RuntimeDep, grant: GrantDep) -> list[TokenOut]:
    """Every managed token, without its secret."""
    _admin_only(grant)
    return sorted((t.out() for t in runtime.checker.managed.values()), key=lambda t: t.created_at)


@router.delete(
    "/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_RESPONSES, 404: {"description": "No such token"}},
)
async def revoke_token(token_id: str, runtime: RuntimeDep, grant: GrantDep) -> Response:
    """Revoke at once: the next request with it gets 401."""
    _admin_only(grant)
    if not await runtime.store.delete_token(token_id):
        raise TokenNotFound(f"no token with id {token_id!r}")
    runtime.checker.managed = {h: t for h, t in runtime.checker.managed.items() if t.id != token_id}
    return Response(status_code=status.HTTP_204_NO_CONTENT)
