#!/usr/bin/env python3
"""Greedy agreement with llama.cpp under the same KV cache type.

For each KV type (f32 f16 q8_0 q4_0) and each prompt, the greedy continuation of our CPU backend
(`generate --backend cpu --kv-type T`) against llama.cpp's own `llama-completion -fa on -ctk T
-ctv T --temp 0` (built natively by bench/llama-cpp.sh), the same model and prompt: how many
tokens agree before the first divergence. llama.cpp prints text, so its continuation is turned
back into ids with our tokenizer (HF-exact, `crate/tests/tokenizer_parity.rs`) as the tail of
prompt + text, and the character prefix the two texts share is reported too. Both also run
against our own f32 KV (the KV type's own effect on our greedy tokens). Ours runs both dot paths:
exact (the default) and int8 (8-bit activations with integer dots, as llama.cpp's CPU backend).

usage: python3 bench/kv-fidelity.py [MODEL.gguf]
  MODEL  default: $SMOLLM2_GGUF (SmolLM2-135M-Instruct Q4_1)
environment: KV_TYPES ("f32 f16 q8_0 q4_0"), TOKENS (24), THREADS (2),
             CARGO_TARGET_DIR (./target)
Prints a markdown table (bench/KV.md).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
kv_types = os.environ.get("KV_TYPES", "f32 f16 q8_0 q4_0").split()
n = int(os.environ.get("TOKENS", "24"))
threads = os.environ.get("THREADS", "2")
ours_bin = Path(os.environ.get("CARGO_TARGET_DIR", root / "target")) / "release" / "llama-webgpu"
model = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SMOLLM2_GGUF", "")
if not model or not Path(model).is_file():
    sys.exit(f"model not found: {model!r} (pass it, or source scripts/setup.sh)")
if not ours_bin.is_file():
    subprocess.run(["cargo", "build", "--release", "--bin", "llama-webgpu"], cwd=root, check=True)
peer_dir = Path(subprocess.run(["bash", root / "bench/llama-cpp.sh"], check=True, capture_output=True, text=True).stdout.strip())

ref = json.loads((root / "tests/fixtures/smollm2.json").read_text())
# the transformers fixture's prompt, and ~1000 tokens of prose (this repository's README: a
# document whose continuation is not a pattern) so the quantized keys span a real context
prompts = {
    "fixture prompt (5 tokens)": ref["prompt"],
    "README.md head (~1K tokens)": (root / "README.md").read_text()[:4000],
}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def tokenize(text):
    return json.loads(run([ours_bin, "tokenize", "--model", model, "--text-file", "-"], input=text).stdout)


def ours(prompt, kv, dot="exact"):
    out = run(
        [ours_bin, "generate", "--backend", "cpu", "--threads", threads, "--model", model, "--kv-type", kv, "--cpu-dot", dot,
         "--context", "2048", "--prompt-file", "-", "--max-tokens", str(n), "--temperature", "0", "--json"],
        input=prompt,
    ).stdout
    j = json.loads(out.strip().splitlines()[-1])
    return j["tokens"], j["text"]


def peer(prompt, kv):
    p = Path(os.environ.get("TMPDIR", "/tmp")) / "kv-fidelity-prompt.txt"
    p.write_text(prompt)
    r = run(
        [peer_dir / "llama-completion", "-m", model, "-f", p, "-n", str(n), "--temp", "0", "-t", threads,
         "-fa", "on", "-ctk", kv, "-ctv", kv, "-c", "2048", "-no-cnv", "--no-display-prompt", "--no-warmup",
         "--simple-io", "-s", "0"],
        stdin=subprocess.DEVNULL,
    )
    text = r.stdout
    # llama-completion ends its output with the end-of-text marker when generation stops early
    text = text.removesuffix("\n").removesuffix(" [end of text]")
    prompt_ids = tokenize(prompt)
    all_ids = tokenize(prompt + text)
    if all_ids[: len(prompt_ids)] != prompt_ids:
        return None, text
    return all_ids[len(prompt_ids):][:n], text


def agree(a, b):
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


print(f"Model {Path(model).name}, CPU, {threads} threads, greedy {n} tokens; llama.cpp: llama-completion -fa on -ctk T -ctv T --temp 0")
print()
print("Tokens equal before the first divergence, of the shorter sequence; text: shared prefix in characters.")
print()
print("| prompt | KV type | ours (exact) = llama.cpp | ours (int8) = llama.cpp | text, exact / int8 vs llama.cpp | ours exact: this KV vs f32 KV |")
print("|---|---|---:|---:|---:|---:|")


def vs(o, p):
    return "n/a (prompt retokenizes differently)" if p is None else f"{agree(o, p)} / {min(len(o), len(p))}"


for name, prompt in prompts.items():
    base, _ = ours(prompt, "f32")
    for kv in kv_types:
        o, ot = ours(prompt, kv)
        i, it = ours(prompt, kv, "int8")
        p, pt = peer(prompt, kv)
        text = f"{agree(ot, pt)} / {agree(it, pt)} of {len(pt)}"
        print(f"| {name} | {kv} | {vs(o, p)} | {vs(i, p)} | {text} | {agree(o, base)} / {len(base)} |", flush=True)
