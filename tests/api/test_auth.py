"""Apps, token generation and every channel a Symbl client uses to send its token."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time

import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.auth import (
    InvalidToken,
    TokenIssuer,
    create_app,
    key_id,
    list_apps,
    load_token_issuer,
    subprotocol_token,
    token_from_request,
    verify_app,
)
from convoscope.registry import join_conversation
from convoscope.settings import Settings
from tests.api.conftest import Api

TOKEN_INVALID = {"message": "Token validation failed for provided token."}


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def test_create_and_verify_app(db_sessions: async_sessionmaker[AsyncSession]) -> None:
    credentials = await create_app(db_sessions, "sdk")
    assert re.fullmatch(r"[0-9a-f]{64}", credentials.app_id)
    assert re.fullmatch(r"[0-9a-f]{128}", credentials.app_secret)
    assert await verify_app(db_sessions, credentials.app_id, credentials.app_secret)
    assert not await verify_app(db_sessions, credentials.app_id, credentials.app_secret[:-1] + "x")
    assert not await verify_app(db_sessions, "f" * 64, credentials.app_secret)
    apps = {app.app_id: app for app in await list_apps(db_sessions)}
    assert apps[credentials.app_id].name == "sdk"


async def test_secret_is_stored_hashed(db_sessions: async_sessionmaker[AsyncSession]) -> None:
    from sqlalchemy import select

    from convoscope.db import App

    credentials = await create_app(db_sessions, "hashed")
    async with db_sessions() as session:
        stored = await session.scalar(select(App.secret_hash).where(App.id == credentials.app_id))
    assert stored is not None and credentials.app_secret not in stored and stored.startswith("scrypt$")


async def test_generate_token(api: Api) -> None:
    body = {"type": "application", "appId": api.app.app_id, "appSecret": api.app.app_secret}
    response = await api.client.post("/oauth2/token:generate", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["expiresIn"] == 86_400
    claims = _claims(data["accessToken"])
    assert claims["sub"] == api.app.app_id
    assert isinstance(claims["exp"], int) and claims["exp"] > time.time() + 86_000
    assert api.tokens.verify(data["accessToken"]) == api.app.app_id


@pytest.mark.parametrize(
    "body",
    [
        {"type": "application", "appId": "WRONG", "appSecret": "WRONG"},
        {"type": "application", "appId": "0" * 64, "appSecret": "0" * 128},
    ],
    ids=["unknown-app", "unknown-app-right-lengths"],
)
async def test_generate_token_unknown_app(api: Api, body: dict[str, str]) -> None:
    response = await api.client.post("/oauth2/token:generate", json=body)
    assert response.status_code == 401
    assert response.json() == {"message": "Combination of appId and appSecret is not valid."}


async def test_generate_token_wrong_secret(api: Api) -> None:
    body = {"type": "application", "appId": api.app.app_id, "appSecret": "a" * 128}
    response = await api.client.post("/oauth2/token:generate", json=body)
    assert response.status_code == 401
    assert "appSecret" in response.json()["message"]


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[1, 2]", b'{"type": "application"}', b'{"appId": 1, "appSecret": 2}', b'{"type": "password"}'],
)
async def test_generate_token_malformed(api: Api, content: bytes) -> None:
    response = await api.client.post(
        "/oauth2/token:generate", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["message"]


async def _conversation(api: Api) -> str:
    joined = await join_conversation(api.sessions, api.app.app_id, "channels", "Channels", int(time.time() * 1000))
    return joined.conversation_id


@pytest.mark.parametrize("channel", ["x-api-key", "bearer", "access_token", "accessToken", "subprotocol"])
async def test_token_channels(api: Api, channel: str) -> None:
    conversation_id = await _conversation(api)
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    if channel == "x-api-key":
        headers["X-API-KEY"] = api.token
    elif channel == "bearer":
        headers["Authorization"] = f"Bearer {api.token}"
    elif channel == "subprotocol":
        headers["Sec-WebSocket-Protocol"] = api.token
    else:
        params[channel] = api.token
    response = await api.client.get(f"/v1/conversations/{conversation_id}", headers=headers, params=params)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == conversation_id


async def test_missing_and_bad_tokens(api: Api) -> None:
    conversation_id = await _conversation(api)
    path = f"/v1/conversations/{conversation_id}"
    foreign = TokenIssuer(b"another-key-of-enough-length-0123").issue(api.app.app_id)[0]
    ours_expired = jwt.encode(
        {"sub": api.app.app_id, "iat": 1, "exp": 2, "iss": "convoscope"}, api.tokens._key, algorithm="HS256"
    )
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"x-api-key": "garbage"},
        {"x-api-key": foreign},
        {"x-api-key": ours_expired},
    ):
        response = await api.client.get(path, headers=headers)
        assert response.status_code == 401, headers
        assert response.json() == TOKEN_INVALID
    response = await api.client.get(f"{path}/messages", params={"access_token": "a.b.c"})
    assert response.status_code == 401 and response.json() == TOKEN_INVALID


def test_token_from_request_precedence_and_case() -> None:
    assert token_from_request({"X-Api-Key": "k"}, {"access_token": "q"}) == "k"
    assert token_from_request({"authorization": "bearer  b "}, {}) == "b"
    assert token_from_request({}, {"accessToken": "c"}) == "c"
    assert token_from_request({}, {"access_token": "", "accessToken": "d"}) == "d"
    assert token_from_request({"Authorization": "Basic x"}, {}) is None
    assert token_from_request({}, {}) is None


def test_subprotocol_token_echo() -> None:
    token = TokenIssuer(b"k" * 32).issue("app")[0]
    assert subprotocol_token({"Sec-WebSocket-Protocol": token}) == (token, token)
    assert subprotocol_token({"sec-websocket-protocol": f"chat, {token}"}) == (token, token)
    assert subprotocol_token({"sec-websocket-protocol": "chat, superchat"}) == (None, None)
    assert token_from_request({"Sec-WebSocket-Protocol": f"chat, {token}"}, {}) == token


def test_token_issuer_roundtrip_and_rejects() -> None:
    issuer = TokenIssuer(b"s" * 32, ttl_s=120)
    token, expires_in = issuer.issue("app-1")
    assert expires_in == 120 and issuer.verify(token) == "app-1"
    with pytest.raises(InvalidToken):
        issuer.verify(token[:-2] + "AA")
    with pytest.raises(InvalidToken):
        issuer.verify(issuer.issue("app-1", now_s=int(time.time()) - 1000)[0])
    no_exp = jwt.encode({"sub": "app-1", "iat": 1, "iss": "convoscope"}, b"s" * 32, algorithm="HS256")
    with pytest.raises(InvalidToken):
        issuer.verify(no_exp)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenIssuer(b"short")


async def test_signing_key_generated_once(database_url: str, db_sessions: async_sessionmaker[AsyncSession]) -> None:
    settings = Settings(database_url=database_url, jwt_secret=None)
    issuers = await asyncio.gather(*(load_token_issuer(settings, db_sessions) for _ in range(4)))
    token, _ = issuers[0].issue("app-x")
    assert all(issuer.verify(token) == "app-x" for issuer in issuers)
    again = await load_token_issuer(settings, db_sessions)
    assert again.verify(token) == "app-x"


async def test_configured_secret_wins(database_url: str, db_sessions: async_sessionmaker[AsyncSession]) -> None:
    settings = Settings(database_url=database_url, jwt_secret="configured-secret-0123456789abcdefghij", token_ttl_s=600)
    issuer = await load_token_issuer(settings, db_sessions)
    token, expires_in = issuer.issue("app-y")
    assert expires_in == 600
    assert (
        jwt.decode(token, "configured-secret-0123456789abcdefghij", algorithms=["HS256"], issuer="convoscope")["sub"]
        == "app-y"
    )


async def test_rotated_key_keeps_old_tokens_and_links_working_until_dropped(
    database_url: str, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    old_key, new_key = "o" * 32, "n" * 32
    before = await load_token_issuer(Settings(database_url=database_url, jwt_secret=old_key), db_sessions)
    token, _ = before.issue("app-1")
    link = before.issue_view_token("app-1", "42", 3600)

    # Rotation: the new key signs, the old one still verifies.
    rotated = await load_token_issuer(
        Settings(database_url=database_url, jwt_secret=new_key, jwt_previous_secrets=f" {old_key} "), db_sessions)
    assert rotated.verify(token) == "app-1"
    assert rotated.verify_view_token(link, "42") == "app-1"
    fresh, _ = rotated.issue("app-2")
    assert jwt.get_unverified_header(fresh)["kid"] == key_id(new_key.encode()) != key_id(old_key.encode())
    assert rotated.verify(fresh) == "app-2"
    with pytest.raises(InvalidToken):
        before.verify(fresh)  # a process still on the old key alone cannot read new tokens: roll them all

    # The old key dropped: what it signed is refused, even though it has not expired.
    after = await load_token_issuer(Settings(database_url=database_url, jwt_secret=new_key), db_sessions)
    with pytest.raises(InvalidToken):
        after.verify(token)
    with pytest.raises(InvalidToken):
        after.verify_view_token(link, "42")
    assert after.verify(fresh) == "app-2"
