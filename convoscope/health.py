"""Liveness, readiness and Prometheus metrics over HTTP for worker processes (the gateway serves its own)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["Health", "health_server", "metrics_response"]


class Health:
    """Readiness flips true once the process can do its job (model loaded, consumer group joined)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ready = asyncio.Event()
        self.detail = "starting"

    def set_ready(self, detail: str = "ready") -> None:
        self.detail = detail
        self.ready.set()

    def set_not_ready(self, detail: str) -> None:
        self.detail = detail
        self.ready.clear()


def metrics_response(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _app(health: Health) -> Starlette:
    async def live(_: Request) -> Response:
        return JSONResponse({"status": "alive", "process": health.name})

    async def ready(_: Request) -> Response:
        status = 200 if health.ready.is_set() else 503
        return JSONResponse({"ready": health.ready.is_set(), "detail": health.detail}, status_code=status)

    return Starlette(routes=[
        Route("/healthz", live), Route("/readyz", ready), Route("/metrics", metrics_response),
    ])


@contextlib.asynccontextmanager
async def health_server(health: Health, host: str, port: int | None) -> AsyncIterator[None]:
    """Serves /healthz, /readyz and /metrics while the block runs; ``port=None`` serves nothing."""
    if port is None:
        yield
        return
    server = uvicorn.Server(uvicorn.Config(
        _app(health), host=host, port=port, log_level="warning", log_config=None, lifespan="off"
    ))
    task = asyncio.create_task(server.serve())
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
