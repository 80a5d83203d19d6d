#!/usr/bin/env bash
# Create .venv and install instruct-curator with every extra (teacher, gate, train) and the test tools.
# CPU by default (constraints/cpu.txt pins the local CPU torch); INSTRUCT_CURATOR_TORCH=cuda installs the CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
constraint=(-c constraints/cpu.txt)
if [ "${INSTRUCT_CURATOR_TORCH:-cpu}" = "cuda" ]; then constraint=(); fi
# torch first, alone, so the resolver never reaches for a CUDA build on a CPU machine
python -m pip install -q "${constraint[@]}" "torch>=2.4"
# llama-cpp-python builds from source (~15 min on 2 cores the first time; pip caches the wheel)
python -m pip install -q "${constraint[@]}" -e ".[all,dev]"
python -c "import curator, trainer, llama_cpp, torch; print('instruct-curator ready: torch', torch.__version__)"
