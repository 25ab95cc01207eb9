"""SIPp as the other party of a call, and the audio it plays (synthesized speech as G.711 WAV or an RTP pcap)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convoscope.embedded_broker import free_port

SCENARIOS = Path(__file__).resolve().parent / "sipp"
SIPP = "sipp"  # Debian package sip-tester


@dataclass
class SippPeer:
    name: str
    process: asyncio.subprocess.Process
    port: int
    workdir: Path

    @property
    def uri_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def finished(self, timeout_s: float = 30.0) -> int:
        """SIPp's exit code: 0 when the scenario ran to its end."""
        try:
            return await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            self.kill()
            raise AssertionError(f"sipp {self.name} did not finish:\n{self.log()}") from None

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def log(self) -> str:
        parts = []
        for suffix in ("err", "msg"):
            path = self.workdir / f"{self.name}.{suffix}"
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)


async def start_sipp(workdir: Path, scenario: str, *, remote: str | None = None, service: str = "convoscope",
                     timeout_s: int = 40, **params: object) -> SippPeer:
    """Runs ``sipp/<scenario>.xml`` (placeholders filled from ``params``) for one call, as callee (no ``remote``)
    or calling ``remote``. Audio files named in ``params`` are read relative to ``workdir``."""
    port = free_port()
    name = f"{scenario}-{port}"
    (workdir / f"{name}.xml").write_text((SCENARIOS / f"{scenario}.xml").read_text().format(**params))
    args = [SIPP, "-sf", f"{name}.xml", "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
            "-mp", str(free_port()), "-m", "1", "-nostdin", "-timeout", f"{timeout_s}s", "-timeout_error",
            "-trace_msg", "-message_file", f"{name}.msg", "-trace_err", "-error_file", f"{name}.err"]
    if remote is not None:
        args += [remote, "-s", service]
    process = await asyncio.create_subprocess_exec(*args, cwd=workdir, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return SippPeer(name, process, port, workdir)


def write_g711_wav(path: Path, samples_16k: np.ndarray, law: str = "u-law") -> None:
    """8 kHz G.711 WAV for SIPp's rtp_stream, the way a phone line carries speech."""
    subprocess.run(
        ["sox", "-t", "raw", "-r", "16000", "-e", "signed", "-b", "16", "-c", "1", "-", "-r", "8000", "-e", law,
         "-t", "wav", str(path)],
        input=samples_16k.astype("<i2").tobytes(), check=True, capture_output=True,
    )


def write_rtp_pcap(path: Path, packets: list[bytes], spacing_s: float = 0.02) -> None:
    """RTP packets in a pcap (Ethernet/IPv4/UDP) for SIPp's play_pcap_audio, which sends each UDP payload to the
    negotiated media port at the pcap's pace."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i, payload in enumerate(packets):
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
        frame = b"\x00" * 12 + b"\x08\x00" + ip
        at = i * spacing_s
        out += struct.pack("<IIII", int(at), round((at % 1) * 1e6), len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))
