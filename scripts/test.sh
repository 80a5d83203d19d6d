#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, real llama.cpp server and real models included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the release report and the review app are tested as a person sees them: in Debian's headless Chromium,
# the review app driven through Selenium with Debian's chromium-driver
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "warning: could not install chromium and chromium-driver; the browser tests will be skipped" >&2
fi
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GX_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
python -m pytest -q -p no:cacheprovider "$@"
