#!/usr/bin/env bash
# Fresh machine → a live demo: installs, starts the stack on embedded defaults, streams a meeting.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/convoscope demo "$@"
