"""Shared dependencies: settings, database session, the model, and role checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from model.artifact import LoadedModel
from service.database import ApiKey
from service.keys import verify_key
from service.settings import Settings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    yield from request.app.state.database.session()


def get_model(request: Request) -> LoadedModel:
    loaded = request.app.state.models.current
    if loaded is None:
        raise HTTPException(503, "no model is loaded")
    return loaded


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]


def require_role(*roles: str) -> Callable[..., ApiKey]:
    allowed = (*roles, "admin")

    def check(session: SessionDep, key: Annotated[str | None, Security(api_key_header)]) -> ApiKey:
        if not key:
            raise HTTPException(401, "missing API key: send it in the X-API-Key header")
        row = verify_key(session, key)
        if row is None:
            raise HTTPException(401, "unknown or revoked API key")
        if row.role not in allowed:
            raise HTTPException(403, f"this endpoint needs the role {' or '.join(allowed)}; your key has {row.role!r}")
        return row

    return check


def actor_of(key: ApiKey) -> str:
    return f"key:{key.prefix}({key.role})"
