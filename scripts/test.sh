#!/usr/bin/env bash
# Fresh machine → the whole test suite on real parts (Kafka-protocol broker, SQLite, PostgreSQL, Whisper).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
scripts/postgres.sh
scripts/postgres-tls.sh  # TLS on the local server: tests/store/test_postgres_tls.py connects with ?ssl=
.venv/bin/ruff check .
# Every module, whole-stack ones included: about 11 minutes on an idle 2-core machine. (pytest exits 5 when no
# test ran, which fails CI too.)
exec .venv/bin/pytest -ra --durations=30 "$@"
