"""The REST API as a Starlette app on a migrated database (SQLite file or PostgreSQL), driven through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from convoscope.api import api_exception_handlers, api_routes
from convoscope.api.insights import insight_routes
from convoscope.auth import AppCredentials, TokenIssuer, create_app, load_token_issuer
from convoscope.settings import Settings


def build_app(settings: Settings, sessions: async_sessionmaker[AsyncSession], tokens: TokenIssuer) -> Starlette:
    app = Starlette(routes=[*api_routes(), *insight_routes()], exception_handlers=api_exception_handlers())
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.tokens = tokens
    return app


@dataclass
class Api:
    client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    tokens: TokenIssuer
    app: AppCredentials
    token: str

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


@pytest_asyncio.fixture
async def api(database_url: str, db_sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Api]:
    settings = Settings(database_url=database_url, jwt_secret=None)
    tokens = await load_token_issuer(settings, db_sessions)
    credentials = await create_app(db_sessions, "test app")
    token, _ = tokens.issue(credentials.app_id)
    transport = httpx.ASGITransport(app=build_app(settings, db_sessions, tokens))
    async with httpx.AsyncClient(transport=transport, base_url="http://convoscope.test") as client:
        yield Api(client, db_sessions, tokens, credentials, token)
