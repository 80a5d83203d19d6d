#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, real llama.cpp server and real models included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GX_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
python -m pytest -q -p no:cacheprovider "$@"
