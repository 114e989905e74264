#!/usr/bin/env bash
# The native CLI: sets up, builds, and chats once with the real default model (SmolLM2-135M-Instruct).
# Usage: scripts/cli-demo.sh ["your question"]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked --bin llama-webgpu
./target/release/llama-webgpu info --model "$SMOLLM2_GGUF"
./target/release/llama-webgpu generate --model "$SMOLLM2_GGUF" --chat --json \
  --prompt "${1:-What is the capital of France?}"
