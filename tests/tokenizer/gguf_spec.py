#!/usr/bin/env python3
"""Print a GGUF file's tokenizer metadata as the JSON form of `GgufTokenizerSpec`.

Used by crate/tests/tokenizer_parity.rs to check the tokenizer construction independently of our
Rust GGUF reader (llama.cpp's own `gguf` package reads the file). Usage: gguf_spec.py FILE.gguf
"""

import json
import sys

import gguf


def main(path):
    r = gguf.GGUFReader(path)

    def get(key):
        f = r.fields.get(key)
        return None if f is None else f.contents()

    spec = {
        "model": get("tokenizer.ggml.model"),
        "pre": get("tokenizer.ggml.pre"),
        "tokens": get("tokenizer.ggml.tokens"),
        "merges": get("tokenizer.ggml.merges") or [],
        "token_types": get("tokenizer.ggml.token_type") or [],
        "bos": get("tokenizer.ggml.bos_token_id"),
        "eos": get("tokenizer.ggml.eos_token_id"),
        "eot": get("tokenizer.ggml.eot_token_id"),
        "add_bos": get("tokenizer.ggml.add_bos_token"),
        "chat_template": get("tokenizer.chat_template"),
    }
    json.dump(spec, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main(sys.argv[1])
