#!/usr/bin/env bash
# Quick start: installs the dependencies (Debian packages), builds demixd and
# the demix command line, and starts the server with the shipped model when
# both exist (the CPU engine when there is no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
echo
echo "built: build/tools/demix"
build/tools/demix --version
if [ -x build/server/demixd ]; then
  exec build/server/demixd "$@"
fi
cat <<'TXT'

The WebSocket server (demixd) and a trained model are not in this version
yet. Meanwhile:
  build/tools/demix bench --streams 1,8        # speed of the full-size network
  build/tools/demix separate --model tests/data/tiny.safetensors SONG.wav
                                               # pipeline check (random weights)
TXT
