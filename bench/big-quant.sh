#!/usr/bin/env bash
# Issue 23's acceptance check for the new formats at full size: a Llama-3-8B-shaped file from
# `synth` (Q3_K_M by default, ~4 GB) loads and greedy-decodes 2 tokens natively on the CPU
# backend and on the GPU backend (lavapipe here), and in chromium through the package with
# backend "webgpu" (SwiftShader here). Too slow for CI on software GPUs (tens of minutes);
# the measured outcome is in BENCHMARKS.md ("Wave 3, session of 2026-12-06 evening", #23).
#   source scripts/setup.sh && cargo build --release --bin llama-webgpu && bash scripts/build-pkg.sh --test
#   bash bench/big-quant.sh [TYPE] [STEPS]     # TYPE q3_k_m (default) | q2_k | iq4_xs; STEPS "cpu gpu browser"
# The file is written under tests/.cache/ (the tests' server serves it with Range reads) and
# removed at the end. Each step prints one JSON line (tokens, seconds) and its peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
TYPE="${1:-q3_k_m}"
STEPS="${2:-cpu gpu browser}"
BIN=target/release/llama-webgpu
F="tests/.cache/8b-$TYPE.gguf"
PROMPT="128000,9906,1917,11,856,836,374"   # <|begin_of_text|>Hello world, my name is
mkdir -p tests/.cache
trap 'rm -f "$F"' EXIT
rss() { grep -E "Maximum resident|Elapsed" "$1" | sed 's/^\s*/  /' >&2; }

echo "== synth --shape llama3-8b --type $TYPE" >&2
/usr/bin/time -v "$BIN" synth --shape llama3-8b --type "$TYPE" --tokenizer "$LLAMA3_TOKENIZER_JSON" \
  --out "$F" --force 2>/tmp/big-quant-time >/dev/null
rss /tmp/big-quant-time
echo "  $(stat -c %s "$F") bytes" >&2
for step in $STEPS; do
  echo "== $step" >&2
  case "$step" in
    cpu | gpu)
      /usr/bin/time -v "$BIN" generate --model "$F" --backend "$step" --context 64 --tokens "$PROMPT" \
        --max-tokens 2 --json 2>/tmp/big-quant-time | tail -n 1
      rss /tmp/big-quant-time ;;
    browser)
      /usr/bin/time -v node bench/big-quant-browser.mjs --model "/$F" --tokens "$PROMPT" --gen 2 2>/tmp/big-quant-time
      rss /tmp/big-quant-time ;;
  esac
done
