"""A recorded call through the Async API (POST /v1/process/audio, then GET /v1/job/{id} until completed).

    .venv/bin/python examples/sdk_recorded_file.py call.wav
"""

from __future__ import annotations

import os
import sys
import tempfile
import wave

import convoscope_sdk as symbl
from _speech import load_speech

if len(sys.argv) > 1:
    path = sys.argv[1]
else:  # synthesize a recording
    audio, rate = load_speech()
    handle, path = tempfile.mkstemp(suffix=".wav")
    os.close(handle)
    with wave.open(path, "wb") as recording:
        recording.setnchannels(1)
        recording.setsampwidth(2)
        recording.setframerate(rate)
        recording.writeframes(audio)

try:
    conversation = symbl.Audio.process_file(path, parameters={"name": "Recorded call"})  # waits for the job
except symbl.ApiError as exc:
    raise SystemExit(f"the server refused the recording: HTTP {exc.status} {exc.message}") from exc
print("conversation", conversation.get_conversation_id(), "job", conversation.get_job_id(),
      conversation.get_job_status())
for message in conversation.get_messages().messages:
    print(f"  {message.start_time} {message.text}")
