"""The `convoscope` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from convoscope.settings import Settings

__all__ = ["main"]

log = logging.getLogger("convoscope")


def _configure_logging(verbose: bool = False) -> None:
    from convoscope.logs import configure_logging

    # Only the log format is read here; a bad value fails loudly before anything starts.
    log_format = Settings().log_format
    configure_logging(logging.DEBUG if verbose else logging.INFO, log_format)


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    return Settings(**overrides)


async def _until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(stop)


# -- commands ------------------------------------------------------------------------------------


def cmd_gateway(args: argparse.Namespace) -> int:
    if args.kind == "sip":
        from producers.sip.gateway import serve

        return serve(Settings())

    import uvicorn

    from convoscope.server import create_app

    settings = _settings(args)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        ws_max_size=1024 * 1024,
        ws_per_message_deflate=settings.ws_compression,
        log_level="warning",
        log_config=None,  # uvicorn's records go through our root handler (text or JSON)
        timeout_graceful_shutdown=settings.stop_timeout_s,
        # Set both to serve https/wss here; unset, TLS ends at the ingress in front (docs/operations.md).
        ssl_certfile=settings.tls_certfile,
        ssl_keyfile=settings.tls_keyfile,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from convoscope.health import Health, health_server

    settings = _settings(args)
    health = Health(f"worker-{args.kind}")

    async def run(stop: asyncio.Event) -> None:
        async with health_server(health, settings.health_host, settings.health_port):
            if args.kind == "transcribe":
                from processors.transcription.worker import run_transcription_worker

                await run_transcription_worker(settings, stop, health=health)
            elif args.kind == "analytics":
                from processors.analytics.worker import run_analytics_worker

                await run_analytics_worker(settings, stop, health=health)
            elif args.kind == "insights":
                from processors.insights.worker import run_text_processors

                await run_text_processors(settings, stop, args.processor or None, health=health)
            elif args.kind == "email":
                from sinks.email.worker import run_email_worker

                await run_email_worker(settings, stop, health=health)
            elif args.kind == "webhooks":
                from sinks.webhooks.worker import run_webhook_worker

                await run_webhook_worker(settings, stop, health=health)
            else:
                from sinks.store.worker import run_store_worker

                await run_store_worker(settings, stop, health=health)

    asyncio.run(_until_signalled(run))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from convoscope.stack import Stack

    settings = _settings(args)

    async def run(stop: asyncio.Event) -> None:
        async with Stack(settings) as stack:
            if stack.new_credentials:
                print("Created an app (saved to .convoscope/credentials.json):", flush=True)
                print(json.dumps(stack.new_credentials), flush=True)
            print(f"convoscope is up at {stack.settings.base_url()}  (Ctrl-C stops it)", flush=True)
            await stop.wait()

    asyncio.run(_until_signalled(run))
    return 0


def cmd_apps(args: argparse.Namespace) -> int:
    from convoscope.auth import create_app, list_apps
    from convoscope.db import create_engine, migrate, session_factory

    settings = Settings()

    async def run() -> None:
        await migrate(settings)
        engine = create_engine(settings)
        try:
            sessions = session_factory(engine)
            if args.action == "create":
                credentials = await create_app(sessions, args.name)
                print(json.dumps({"appId": credentials.app_id, "appSecret": credentials.app_secret}))
            else:
                from convoscope.timestamps import iso_ms

                for app in await list_apps(sessions):
                    print(json.dumps({"appId": app.app_id, "name": app.name, "createdAt": iso_ms(app.created_at_ms)}))
        finally:
            await engine.dispose()

    asyncio.run(run())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from convoscope.db import migrate

    asyncio.run(migrate(Settings()))
    print("database is at the latest schema")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from schemas.topics import ALL_TOPICS

    if args.action == "markdown":
        from schemas.catalogue import render_catalogue

        print(render_catalogue(), end="")
        return 0
    if args.action == "create":
        from convoscope.kafka import ensure_topics

        asyncio.run(ensure_topics(Settings(), ALL_TOPICS))
    for topic in ALL_TOPICS:
        print(f"{topic.name}\tpartitions={topic.partitions}\t{json.dumps(topic.config())}\t{topic.doc}")
    return 0


async def _credentials_token(base_url: str, args: argparse.Namespace, settings: Settings) -> str:
    from convoscope.stack import load_local_credentials
    from producers.replay import fetch_token

    app_id, app_secret = args.app_id, args.app_secret
    if not (app_id and app_secret):
        local = load_local_credentials(settings)
        if local is None:
            raise SystemExit(
                "no credentials: pass --app-id/--app-secret (or CONVOSCOPE_APP_ID/CONVOSCOPE_APP_SECRET), "
                "or run `convoscope up` here first, which saves .convoscope/credentials.json"
            )
        app_id, app_secret = local["appId"], local["appSecret"]
    return await fetch_token(base_url, app_id, app_secret)


def cmd_stream(args: argparse.Namespace) -> int:
    from convoscope.console import LiveTranscriptPrinter
    from producers.replay import load_audio_file, stream_pcm
    from producers.replay.client import StreamError
    from producers.replay.files import AudioFileError

    settings = Settings()
    base_url = args.url.rstrip("/")
    try:
        samples = load_audio_file(args.file)
    except AudioFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        token = await _credentials_token(base_url, args, settings)
        connection_id = args.connection_id or str(uuid.uuid4())
        ws_url = base_url.replace("http", "ws", 1) + f"/v1/streaming/{connection_id}"
        printer = LiveTranscriptPrinter()
        print(f"streaming {args.file} ({len(samples) / 16000:.1f} s) as {args.speaker or 'Speaker'} …", flush=True)
        result = await stream_pcm(
            ws_url, token, samples.tobytes(),
            speaker={"name": args.speaker or "Speaker", "userId": args.user_id or ""},
            start_request={"config": {"meetingTitle": args.title or Path(args.file).name,
                                      "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}}},
            realtime=not args.fast, on_message=printer,
        )
        printer.close()
        print(f"\nconversation {result.conversation_id}: {base_url}/v1/conversations/{result.conversation_id}/messages")

    try:
        asyncio.run(run())
    except (StreamError, httpx.HTTPError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_with_server(args: argparse.Namespace, command: str) -> int:
    """`replay` and `reprocess`: talk to a running server with the credentials `stream` uses."""
    from convoscope import replay_command

    settings = Settings()
    base_url = args.url.rstrip("/")
    run = replay_command.run_replay if command == "replay" else replay_command.run_reprocess
    try:
        return asyncio.run(run(args, base_url, lambda: _credentials_token(base_url, args, settings)))
    except (httpx.HTTPError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_replay(args: argparse.Namespace) -> int:
    return _run_with_server(args, "replay")


def cmd_reprocess(args: argparse.Namespace) -> int:
    return _run_with_server(args, "reprocess")


def cmd_demo(args: argparse.Namespace) -> int:
    from convoscope.demo import run_demo

    return asyncio.run(run_demo(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convoscope", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the whole stack as a server (embedded broker unless KAFKA_BOOTSTRAP)")
    up.add_argument("--host")
    up.add_argument("--port", type=int)
    up.set_defaults(handler=cmd_up)

    demo = commands.add_parser("demo", help="start the stack, stream a synthesized meeting, show the transcript")
    demo.add_argument("--port", type=int, default=None, help="default: a free port")
    demo.set_defaults(handler=cmd_demo)

    stream = commands.add_parser("stream", help="stream an audio file in real time through the WebSocket API")
    stream.add_argument("file")
    stream.add_argument("--speaker")
    stream.add_argument("--user-id")
    stream.add_argument("--title")
    stream.add_argument("--url", default="http://127.0.0.1:8080")
    stream.add_argument("--connection-id")
    stream.add_argument("--app-id", default=None)
    stream.add_argument("--app-secret", default=None)
    stream.add_argument("--fast", action="store_true", help="send as fast as possible instead of in real time")
    stream.set_defaults(handler=cmd_stream)

    replay = commands.add_parser("replay", help="transcribe recordings (files or folders) through the Async API")
    replay.add_argument("paths", nargs="+", metavar="PATH")
    replay.add_argument("--concurrency", type=int, default=4, help="recordings in flight at once (default 4)")
    replay.add_argument("--realtime", action="store_true",
                        help="stream over the WebSocket API at real-time pace instead (simulates live calls)")
    replay.add_argument("--webhook-url", help="passed to the Async API: called on each job status change")
    replay.set_defaults(handler=cmd_replay)

    reprocess = commands.add_parser("reprocess", help="re-transcribe stored conversations with the current model")
    which = reprocess.add_mutually_exclusive_group(required=True)
    which.add_argument("--conversation", action="append", metavar="ID", help="a conversation id (repeatable)")
    which.add_argument("--since", metavar="TIME", help="conversations started since: ISO-8601, or 2h, 30m, 1d ago")
    reprocess.add_argument("--no-wait", action="store_true", help="queue the jobs and exit")
    reprocess.set_defaults(handler=cmd_reprocess)

    for server_command in (replay, reprocess):
        server_command.add_argument("--url", default="http://127.0.0.1:8080")
        server_command.add_argument("--app-id", default=None)
        server_command.add_argument("--app-secret", default=None)

    apps = commands.add_parser("apps", help="manage apps (API credentials)")
    apps_actions = apps.add_subparsers(dest="action", required=True)
    create = apps_actions.add_parser("create")
    create.add_argument("--name", required=True)
    apps_actions.add_parser("list")
    apps.set_defaults(handler=cmd_apps)

    gateway = commands.add_parser("gateway", help="the WebSocket gateway and REST API process")
    gateway.add_argument("kind", nargs="?", choices=["api", "sip"], default="api",
                         help="sip: the SIP gateway (calls into conversations; see docs/telephony.md)")
    gateway.add_argument("--host")
    gateway.add_argument("--port", type=int)
    gateway.set_defaults(handler=cmd_gateway)

    worker = commands.add_parser("worker", help="a stream-processing worker process")
    worker.add_argument("kind", choices=["transcribe", "insights", "analytics", "store", "email", "webhooks"])
    worker.add_argument(
        "--processor", action="append", choices=["insights", "topics", "trackers", "entities"],
        help="insights only: run just this text processor (repeatable; default: all four)",
    )
    worker.set_defaults(handler=cmd_worker)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.set_defaults(handler=cmd_migrate)

    topics = commands.add_parser("topics", help="list (or create) the Kafka topics")
    topics.add_argument("action", choices=["list", "create", "markdown"], nargs="?", default="list")
    topics.set_defaults(handler=cmd_topics)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    if args.command == "gateway" or (args.command == "worker" and args.kind != "transcribe"):
        from convoscope.allocator import tune_allocator

        # Before the long-lived objects are made. Not in the transcription worker: with a fixed mmap threshold
        # every decoder tensor is mapped and faulted in afresh, and Whisper decodes half as fast
        # (bench/decode_lanes.py: 14.1x -> 6.8x real time on 2 lanes).
        tune_allocator()
    if args.command in ("stream", "replay", "reprocess"):
        import os

        args.app_id = args.app_id or os.environ.get("CONVOSCOPE_APP_ID")
        args.app_secret = args.app_secret or os.environ.get("CONVOSCOPE_APP_SECRET")
    with contextlib.suppress(KeyboardInterrupt):
        return int(args.handler(args))
    return 130

