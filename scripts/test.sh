#!/usr/bin/env bash
# Runs every test: kernels vs CPU references, GGUF reader and bad inputs, tokenizer parity
# with HF tokenizers, the engine vs transformers on the fixtures, the real SmolLM2; then the
# npm package and the demo page in headless chromium with software WebGPU; then the CPU
# backend's aarch64 NEON kernels under qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# Hygiene first, so a formatting slip or a lint fails in a minute, not after the suite.
echo "== hygiene: cargo fmt --check, clippy -D warnings"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -q -- -D warnings
echo "== adapter: $(vulkaninfo --summary 2>/dev/null | grep -m1 deviceName | sed 's/.*= //' || echo unknown)"
cargo test --workspace --locked 2>&1

echo "== browser tests"
if ! command -v chromium >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# not `npm ci`: vite lists an optional dependency that is missing from the registry, which
# `npm install` skips and `npm ci` refuses; the lock file still pins every version
npm install --no-audit --no-fund --loglevel=error
bash scripts/build-pkg.sh
npm run -s test:browser

echo "== aarch64: the NEON kernels under qemu-user"
bash scripts/test-aarch64.sh
