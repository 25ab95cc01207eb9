#!/usr/bin/env bash
# Fresh machine → the whole test suite on real parts (Kafka-protocol broker, SQLite, PostgreSQL, Whisper).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
scripts/postgres.sh
.venv/bin/ruff check .
set +e
.venv/bin/pytest -ra "$@"
status=$?
set -e
# pytest exits 5 when no test ran: that is a failure here, not a pass.
exit $status
