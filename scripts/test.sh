#!/usr/bin/env bash
# Runs every test: kernels vs CPU references, GGUF reader and bad inputs, tokenizer parity
# with HF tokenizers, the engine vs transformers on the fixtures, and the real SmolLM2.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
echo "== adapter: $(vulkaninfo --summary 2>/dev/null | grep -m1 deviceName | sed 's/.*= //' || echo unknown)"
cargo test --workspace --locked 2>&1
