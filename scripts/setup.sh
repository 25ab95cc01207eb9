#!/usr/bin/env bash
# Installs what convoscope needs on a fresh Debian machine: system tools (when run as root) and a
# virtual environment in .venv with the package. `scripts/setup.sh test` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test="${1:-}"
apt_packages=(espeak-ng sox)
if [[ "$want_test" == "test" ]]; then
  # portaudio19-dev: the official `symbl` SDK (used in tests) builds PyAudio; sip-tester: SIPp;
  # chromium: the conversation page's browser tests (Playwright drives it through executablePath).
  apt_packages+=(portaudio19-dev sip-tester chromium)
fi

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "please install these Debian packages first: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
if [[ "$want_test" == "test" ]]; then
  .venv/bin/python -m pip install -q -e '.[test,base-model,semantic]' 2>&1 | grep -v "is ignored" || true
  # The Python SDK is its own distribution (sdk/); tests/sdk and tests/e2e/test_sdk_client.py import it.
  .venv/bin/python -m pip install -q -e ./sdk 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import convoscope_sdk"
else
  .venv/bin/python -m pip install -q -e . 2>&1 | grep -v "is ignored" || true
fi
.venv/bin/python -c "import convoscope" # fails loudly if the install did not work
