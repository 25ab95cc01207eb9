"""The gateway process's ASGI app: streaming WebSocket + REST API + live push, one lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from convoscope.api import api_exception_handlers, api_routes
from convoscope.api.body_limit import BodySizeLimit, is_recording_upload
from convoscope.api.emails import email_routes
from convoscope.api.insights import insight_routes
from convoscope.api.page import page_routes
from convoscope.auth import load_token_issuer
from convoscope.db import create_engine, migrate, session_factory
from convoscope.health import metrics_response
from convoscope.kafka import create_producer, ensure_topics
from convoscope.services import Services
from convoscope.settings import Settings
from producers.recorded.service import RecordedAudio
from producers.sip.api import telephony_routes
from producers.stream_seats import SeatKeeper
from producers.websocket import streaming_routes
from producers.websocket.limits import ByteBudget
from schemas.topics import ALL_TOPICS
from sinks.live import ResultsHub

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, run_migrations: bool = True) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if run_migrations:
            await migrate(settings)
        engine = create_engine(settings)
        sessions = session_factory(engine)
        tokens = await load_token_issuer(settings, sessions)
        await ensure_topics(settings, ALL_TOPICS)
        producer = create_producer(settings)
        await producer.start()
        hub = ResultsHub(settings)
        await hub.start()
        seats = SeatKeeper(settings, sessions, producer)
        await seats.start()
        services = Services(settings=settings, sessions=sessions, tokens=tokens, producer=producer, hub=hub,
                            seats=seats, audio_budget=ByteBudget(settings.gateway_buffer_bytes))
        app.state.services = services
        # The REST handlers read these three directly.
        app.state.settings = settings
        app.state.sessions = sessions
        app.state.tokens = tokens
        # The Async API: accepts recordings, and its job monitor follows their transcription.
        app.state.recorded = recorded = RecordedAudio(services)
        await recorded.start()
        log.info("gateway ready on %s", settings.base_url())
        try:
            yield
        finally:
            await recorded.stop()
            await seats.stop()
            await hub.stop()
            await producer.stop()
            await engine.dispose()

    return Starlette(
        routes=[*api_routes(), *insight_routes(), *email_routes(), *page_routes(), *streaming_routes(),
                *telephony_routes(), Route("/metrics", metrics_response)],
        exception_handlers=api_exception_handlers(),
        middleware=[Middleware(BodySizeLimit, limit_bytes=settings.max_request_body_bytes,
                               exempt=is_recording_upload)],
        lifespan=lifespan,
    )
