"""A gateway serving TLS itself (CONVOSCOPE_TLS_CERTFILE/KEYFILE), for deployments without a TLS-terminating
ingress: REST over https and streaming over wss work for a client that trusts the certificate, and plain http on
that port gets nowhere."""

from __future__ import annotations

import json
import ssl
import uuid
from pathlib import Path

import httpx
import pytest
import websockets

from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_https_and_wss_with_a_trusted_certificate(sqlite_stack: RunningStack,
                                                        self_signed_cert: tuple[Path, Path]) -> None:
    cert, _ = self_signed_cert
    async with sqlite_stack.extra_gateway(tls=self_signed_cert) as url:
        assert url.startswith("https://")
        trusting = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(base_url=url, verify=trusting) as client:
            token = await client.post("/oauth2/token:generate", json={
                "type": "application", "appId": sqlite_stack.app_id, "appSecret": sqlite_stack.app_secret})
            assert token.status_code == 200
            listed = await client.get("/v1/conversations", headers={"x-api-key": token.json()["accessToken"]})
            assert listed.status_code == 200
        async with httpx.AsyncClient(base_url=url) as untrusting:  # the system CAs do not know this certificate
            with pytest.raises(httpx.ConnectError):
                await untrusting.get("/healthz")
        async with httpx.AsyncClient(base_url=url.replace("https", "http", 1)) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get("/healthz")

        wss = url.replace("https", "wss", 1) + f"/v1/streaming/{uuid.uuid4()}"
        async with websockets.connect(wss, ssl=trusting, additional_headers={"x-api-key": sqlite_stack.token}) as ws:
            await ws.send(json.dumps({"type": "start_request", "speaker": {"name": "Tess"}, "config": {
                "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}}}))
            first = json.loads(await ws.recv())
            assert first["type"] == "message"
            assert first["message"]["type"] in ("started_listening", "recognition_started")
            await ws.send(json.dumps({"type": "stop_request"}))
