#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, real llama.cpp server and real models included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the release report is tested as a person sees it: rendered in Debian's headless Chromium
if ! command -v chromium >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the report rendering test will be skipped" >&2
fi
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GX_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
python -m pytest -q -p no:cacheprovider "$@"
