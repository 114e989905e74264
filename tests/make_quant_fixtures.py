"""Q2_K, Q3_K_S, Q3_K_M, IQ4_NL and IQ4_XS fixtures made by llama.cpp's own `llama-quantize`
(no importance matrix) from the tiny256 float model of tests/make_fixtures.py (dims that are
multiples of 256, so every K-quant applies), with their reference logits: HF transformers on
the weights the `gguf` package dequantizes from each file.

Writes tests/fixtures/tiny-<t>.gguf and tiny-<t>.logits.npy, and the summary of each under
"llama_quantize_types" in tests/fixtures/tiny.json.

usage: python tests/make_quant_fixtures.py   (needs `bash bench/llama-cpp.sh` built)
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402

# name -> (llama-quantize type, general.file_type, ggml type of most 2-D weights)
QUANT_TYPES = {
    "q2_k": ("Q2_K", 10, "Q2_K"),
    "q3_k_s": ("Q3_K_S", 11, "Q3_K"),
    "q3_k_m": ("Q3_K_M", 12, "Q3_K"),
    "iq4_nl": ("IQ4_NL", 25, "IQ4_NL"),
    "iq4_xs": ("IQ4_XS", 30, "IQ4_XS"),
}


def llama_quantize() -> Path:
    bin_dir = subprocess.run(["bash", str(mf.ROOT / "bench" / "llama-cpp.sh")], check=True, capture_output=True,
                             text=True).stdout.strip()
    return Path(bin_dir) / "llama-quantize"


def main():
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    info = json.loads((mf.OUT / "tiny.json").read_text())
    ids = info["tokens"]
    tok = Tokenizer.from_file(str(mf.OUT / "tiny-tokenizer.json"))
    bos_id, eot_id = tok.token_to_id(mf.BOS), tok.token_to_id(mf.EOS)
    tok_tables = mf.tokenizer_tables(tok)
    tool = llama_quantize()
    mf.CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    with mf.model_shape(**mf.TINY256):
        # the same float model as build_kquant (same seed), written as F32
        sd = mf.random_state_dict(np.random.default_rng(mf.SEED + 256))
        cfg = mf.make_config(False, bos_id, eot_id)
        float_lg = mf.logits_of(mf.load_into(cfg, sd), ids)
        src = mf.CACHE / "tiny256-f32.gguf"
        mf.write_gguf(src, "f32", sd, tok_tables, bos_id, eot_id)
        for name, (qname, ftype, main_type) in QUANT_TYPES.items():
            path = mf.OUT / f"tiny-{name}.gguf"
            subprocess.run([str(tool), str(src), str(path), qname, "2"], check=True, capture_output=True)
            r, tensors, ttypes = mf.read_gguf(path)
            assert mf.kv(r, "general.file_type") == ftype, mf.kv(r, "general.file_type")
            assert main_type in ttypes.values(), (name, ttypes)
            lg = mf.logits_of(mf.load_into(cfg, mf.gguf_to_hf(tensors)), ids)
            np.save(mf.OUT / f"tiny-{name}.logits.npy", lg.astype(np.float32))
            out[name] = {
                "file": path.name,
                "model": "tiny256",
                "quantized_by": f"llama-quantize {qname} (llama.cpp {tool.parent.parent.parent.name}, no imatrix)",
                "file_type": ftype,
                "tensor_types": ttypes,
                "bytes": path.stat().st_size,
                "sha256": mf.sha256(path),
                "logit_std": float(lg.std()),
                "max_abs_diff_vs_float": float(np.abs(lg - float_lg).max()),
                "argmax_agreement_vs_float": float((lg.argmax(-1) == float_lg.argmax(-1)).mean()),
            }
            mf.log(f"tiny-{name}.gguf {path.stat().st_size:>8} B  types {sorted(set(ttypes.values()))}  "
                   f"logit std {lg.std():.4f}  max|diff| vs float {out[name]['max_abs_diff_vs_float']:.3e}")
    info["llama_quantize_types"] = out
    (mf.OUT / "tiny.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
