"""Live transcription: VAD endpointing + Whisper over the audio topic (``convoscope worker transcribe``).

Pure parts (no Kafka): ``vad``, ``endpointing``, ``stream_state``, ``policy``, ``asr``, ``ids``.
The Kafka adapter is ``worker.run_transcription_worker``.
"""
