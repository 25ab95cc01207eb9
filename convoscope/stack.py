"""`convoscope up`: the whole stack as child processes, plus the embedded broker when none is configured.

Each component runs as the same process ops would run on Kubernetes (`convoscope gateway`,
`convoscope worker transcribe`, `convoscope worker insights`, `convoscope worker store`); a child that dies is
restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from convoscope.auth import create_app as create_api_app
from convoscope.auth import list_apps
from convoscope.db import create_engine, migrate, session_factory
from convoscope.embedded_broker import EmbeddedBroker, free_port
from convoscope.kafka import ensure_topics
from convoscope.settings import Settings
from producers.sip.environment import sip_environment
from schemas.topics import ALL_TOPICS

__all__ = ["Stack", "load_local_credentials"]

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "credentials.json"
RESTART_DELAY_S = 2.0


def load_local_credentials(settings: Settings) -> dict[str, str] | None:
    path = settings.state_dir / CREDENTIALS_FILE
    if path.exists():
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    return None


def _append(path: Path) -> IO[bytes]:
    return path.open("ab")


@dataclass
class Child:
    name: str
    args: list[str]
    health_port: int | None = None
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)


class Stack:
    def __init__(self, settings: Settings, *, quiet_children: bool = False) -> None:
        self.settings = settings
        self.quiet = quiet_children
        self.broker: EmbeddedBroker | None = None
        self.children: list[Child] = []
        self._stopping = False
        self.new_credentials: dict[str, str] | None = None

    async def __aenter__(self) -> Stack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object | TracebackType) -> None:
        await self.stop()

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.broker:
            env["KAFKA_BOOTSTRAP"] = self.broker.bootstrap
        env["DATABASE_URL"] = self.settings.database_url
        env["CONVOSCOPE_HOST"] = self.settings.host
        env["CONVOSCOPE_PORT"] = str(self.settings.port)
        env.update(sip_environment(self.settings))
        if self.settings.smtp_url is not None:  # set on Settings (not only in our environment): the email worker's
            env["SMTP_URL"] = self.settings.smtp_url.get_secret_value()
        return env

    async def start(self) -> None:
        settings = self.settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        if not settings.kafka_bootstrap:
            self.broker = EmbeddedBroker(log_path=settings.state_dir / "broker.log")
            self.broker.start()
            settings = self.settings = settings.model_copy(update={"kafka_bootstrap": self.broker.bootstrap})
            log.info("embedded broker on %s (in memory)", self.broker.bootstrap)
        await migrate(settings)
        await ensure_topics(settings, ALL_TOPICS)
        await self._ensure_app()
        python = sys.executable
        self.children = [
            Child("transcribe", [python, "-m", "convoscope", "worker", "transcribe"], free_port()),
            Child("insights", [python, "-m", "convoscope", "worker", "insights"], free_port()),
            Child("store", [python, "-m", "convoscope", "worker", "store"], free_port()),
            Child("analytics", [python, "-m", "convoscope", "worker", "analytics"], free_port()),
            Child("email", [python, "-m", "convoscope", "worker", "email"], free_port()),
            Child("webhooks", [python, "-m", "convoscope", "worker", "webhooks"], free_port()),
            Child("gateway", [python, "-m", "convoscope", "gateway"]),
        ]
        if settings.sip_enabled:
            self.children.append(Child("sip", [python, "-m", "convoscope", "gateway", "sip"], free_port()))
        for child in self.children:
            await self._spawn(child)
            child.watcher = asyncio.create_task(self._watch(child))
        try:
            await self.wait_ready()
        except BaseException:
            await self.stop()  # a stack that never came up must not leave its children running
            raise

    async def _ensure_app(self) -> None:
        engine = create_engine(self.settings)
        try:
            sessions = session_factory(engine)
            if not await list_apps(sessions):
                credentials = await create_api_app(sessions, "default")
                self.new_credentials = {"appId": credentials.app_id, "appSecret": credentials.app_secret}
                path = self.settings.state_dir / CREDENTIALS_FILE
                path.write_text(json.dumps(self.new_credentials, indent=2) + "\n")
                path.chmod(0o600)
        finally:
            await engine.dispose()

    async def app_credentials(self, name: str) -> tuple[str, str]:
        """(appId, appSecret) to use against this stack: the app created on start, the one saved in the state
        directory, or, when the database already has apps whose secrets we do not know, a new one."""
        credentials = self.new_credentials or load_local_credentials(self.settings)
        if credentials is None:
            engine = create_engine(self.settings)
            try:
                created = await create_api_app(session_factory(engine), name)
            finally:
                await engine.dispose()
            credentials = {"appId": created.app_id, "appSecret": created.app_secret}
        return credentials["appId"], credentials["appSecret"]

    async def _spawn(self, child: Child) -> None:
        env = self.env
        if child.health_port:
            env["CONVOSCOPE_HEALTH_PORT"] = str(child.health_port)
        # Quiet: each child appends to its own log in the state directory; otherwise it shares our terminal.
        log = _append(self.settings.state_dir / f"{child.name}.log") if self.quiet else None
        try:
            child.process = await asyncio.create_subprocess_exec(*child.args, env=env, stdout=log, stderr=log)
        finally:
            if log is not None:
                log.close()  # the child holds its own descriptor

    async def _watch(self, child: Child) -> None:
        while not self._stopping:
            assert child.process is not None
            code = await child.process.wait()
            if self._stopping:
                return
            child.restarts += 1
            log.error("%s exited with %s; restarting (restart #%d)", child.name, code, child.restarts)
            await asyncio.sleep(RESTART_DELAY_S)
            if not self._stopping:
                await self._spawn(child)

    async def wait_ready(self, timeout_s: float = 600.0) -> None:
        """Until the gateway answers health checks and the workers have joined their groups."""
        deadline = time.monotonic() + timeout_s
        urls = [f"http://{self.settings.host}:{self.settings.port}/healthz"] + [
            f"http://127.0.0.1:{child.health_port}/readyz" for child in self.children if child.health_port
        ]
        async with httpx.AsyncClient(timeout=2) as client:
            for url in urls:
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(url)).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"not ready at {url} within {timeout_s} s")
                    await asyncio.sleep(0.3)

    async def stop(self) -> None:
        self._stopping = True
        for child in self.children:
            if child.process and child.process.returncode is None:
                child.process.terminate()
        for child in self.children:
            if child.process:
                try:
                    await asyncio.wait_for(child.process.wait(), 15)
                except TimeoutError:
                    child.process.kill()
                    await child.process.wait()
            if child.watcher:
                child.watcher.cancel()
        if self.broker:
            self.broker.stop()

