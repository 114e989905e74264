#!/usr/bin/env bash
# One prepared run on a lent GPU machine (the `device` tool; see /work/.library/device/README.md),
# in under 8 minutes: synthesize Llama 3.2 1B / 3B and Llama 3 8B Q4_K_M, then for each run
# `llama-webgpu bench` (which also measures the GPU's buffer-copy bandwidth) and print decode /
# prefill tokens/s, weight bytes per token and % of the copy-bandwidth roofline.
#
# Prepared here, run there (the machine is x86-64 and bare; nothing is built on it):
#   cargo build --release --bin llama-webgpu && mkdir -p .devbin && cp target/release/llama-webgpu .devbin/
#   echo /.devbin/ >> .git/info/exclude; echo /.gl/ >> .git/info/exclude
#   (Vulkan loader .debs into .gl/ as the device README says)
#   device run: command "bash bench/device.sh", carry [".gl", ".devbin"], timeout_s 540
# Results: $OUT/device.json (one JSON line per model) and the table on stdout.
#
# environment: BIN (.devbin/llama-webgpu), WORK (/tmp/llw), SHAPES ("llama3.2-1b llama3.2-3b llama3-8b"),
#   PROMPT_TOKENS (256), GEN_TOKENS (64), DRY_RUN=1 (check the steps with tiny settings, no GPU needed
#   beyond whatever adapter wgpu finds)
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
BIN="${BIN:-$root/.devbin/llama-webgpu}"
WORK="${WORK:-/tmp/llw}"
SHAPES="${SHAPES:-llama3.2-1b llama3.2-3b llama3-8b}"
PROMPT_TOKENS="${PROMPT_TOKENS:-256}"
GEN_TOKENS="${GEN_TOKENS:-64}"
OUT="${OUT:-$WORK/out}"
mkdir -p "$WORK" "$OUT"
start=$(date +%s)
log() { echo "[$(( $(date +%s) - start ))s] $*" >&2; }

# --- Vulkan loader (carried as .debs; the NVIDIA driver's ICD is on the machine) -------------
if ls .gl/*.deb >/dev/null 2>&1 && [ "${DRY_RUN:-0}" != 1 ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -w "${XDG_RUNTIME_DIR}" ]; then
    XDG_RUNTIME_DIR="$(mktemp -d)"; chmod 700 "$XDG_RUNTIME_DIR"; export XDG_RUNTIME_DIR
fi
[ -x "$BIN" ] || { echo "no binary at $BIN (build it here and carry .devbin)" >&2; exit 1; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.mem --format=csv,noheader >&2

: > "$OUT/device.json"
for shape in $SHAPES; do
    f="$WORK/$shape-q4_k_m.gguf"
    log "synth $shape"
    "$BIN" synth --shape "$shape" --type q4_k_m --out "$f" >/dev/null 2>"$OUT/synth-$shape.log" || { log "synth $shape failed"; continue; }
    log "info $shape"
    "$BIN" info --model "$f" 2>&1 | grep -E "weights|dispatches|adapter" >&2
    log "bench $shape"
    if timeout 150 "$BIN" bench --model "$f" --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" --json \
        2>"$OUT/bench-$shape.log" | tail -n 1 > "$WORK/b.json"; then
        python3 - "$shape" "$(stat -c %s "$f")" < "$WORK/b.json" >> "$OUT/device.json" <<'PY'
import json, sys
r = json.loads(sys.stdin.read()); r["shape"] = sys.argv[1]; r["file_bytes"] = int(sys.argv[2])
print(json.dumps(r))
PY
    else
        log "bench $shape failed or timed out (see bench-$shape.log)"
    fi
    rm -f "$f"
done

python3 - "$OUT/device.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| model | adapter | prefill tok/s | decode tok/s | MB/token | copy GB/s | roofline tok/s | % of roofline | dispatches |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    roof = r["copy_roofline_tokens_per_s"]
    print(f'| {r["shape"]} Q4_K_M | {r["adapter"]} | {r["prefill_tokens_per_s"]:.1f} | {r["decode_tokens_per_s"]:.1f} | '
          f'{r["weight_bytes_per_token"] / 1e6:.0f} | {r["copy_bytes_per_s"] / 1e9:.0f} | {roof:.0f} | '
          f'{100 * r["decode_tokens_per_s"] / roof:.1f}% | {r["dispatches_per_token"]} |')
PY
log "done"
