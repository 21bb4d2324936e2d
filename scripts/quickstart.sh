#!/usr/bin/env bash
# Quick start: installs the dependencies (Debian packages), builds demixd and
# the demix command line, and starts the server on http://127.0.0.1:8080/
# (the CUDA engine when a GPU opens, else the CPU engine). Arguments go to
# demixd (demixd --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
model_args=()
if [ -z "${DEMIX_MODEL:-}" ] && [ ! -e models/default.safetensors ]; then
  # A checkout without the shipped model (e.g. a shallow or LFS-less copy):
  # still start, on the tiny random-weight test model, and say so.
  echo "quickstart: models/default.safetensors is missing; using the" \
       "random-weight test model tests/data/tiny.safetensors (stems are not" \
       "meaningful)" >&2
  model_args=(--model tests/data/tiny.safetensors)
fi
exec build/server/demixd "${model_args[@]}" "$@"
