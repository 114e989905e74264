//! Constrained decoding (crate/src/grammar.rs): JSON schema, regex, Lark and GBNF masks on the
//! real vocabularies, outputs checked by references outside our code (Python `jsonschema`,
//! Python `re`), and the real SmolLM2-135M-Instruct sampling at temperature 1.0 under schemas.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use llama_webgpu::chat::{ChatFormat, ChatOptions, Message};
use llama_webgpu::gguf::{FileSource, GgufFile};
use llama_webgpu::grammar::{Grammar, GrammarCompiler};
use llama_webgpu::model::{LlamaModel, LoadOptions};
use llama_webgpu::sampler::{Sampler, SamplerConfig};
use llama_webgpu::session::{GenerateOptions, Session, StopReason};
use llama_webgpu::tokenizer::Tokenizer;
use llama_webgpu::Error;
use serde_json::{json, Value};

mod common;

/// Schemas with nested objects, enums, arrays, integer ranges and required fields; strings and
/// arrays are bounded so a sampled output always fits the token budget.
fn schemas() -> Vec<Value> {
    vec![
        json!({"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 120}},
            "required": ["name", "age"], "additionalProperties": false}),
        json!({"type": "object", "properties": {
            "color": {"enum": ["red", "green", "blue"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "minItems": 1, "maxItems": 3}},
            "required": ["color", "tags"], "additionalProperties": false}),
        json!({"type": "object", "properties": {
            "city": {"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 10},
                "population": {"type": "integer", "minimum": 1000, "maximum": 99999}},
                "required": ["name", "population"], "additionalProperties": false},
            "capital": {"type": "boolean"}},
            "required": ["city", "capital"], "additionalProperties": false}),
        json!({"type": "array", "items": {"type": "integer", "minimum": -5, "maximum": 5}, "minItems": 2, "maxItems": 4}),
    ]
}

/// Validates each `(schema, text)` with Python `jsonschema` (the .venv that scripts/setup.sh
/// puts first on PATH); returns the failures it reports.
fn python_validate(cases: &[(Value, String)]) -> Vec<String> {
    let input: Vec<Value> = cases.iter().map(|(s, t)| json!({"schema": s, "text": t})).collect();
    let path = std::env::temp_dir().join(format!("lw-structured-{}-{}.json", std::process::id(), cases.len()));
    std::fs::write(&path, serde_json::to_vec(&input).unwrap()).unwrap();
    let script = "import json, sys, jsonschema\n\
        bad = []\n\
        for c in json.load(open(sys.argv[1])):\n\
        \x20   try:\n\
        \x20       jsonschema.validate(json.loads(c['text']), c['schema'])\n\
        \x20   except Exception as e:\n\
        \x20       bad.append(repr(c['text']) + ': ' + str(e).splitlines()[0])\n\
        print(json.dumps(bad))\n";
    let out = Command::new("python3").args(["-c", script]).arg(&path).output().expect("python3");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "python jsonschema: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("python output")
}

fn llama3() -> Tokenizer {
    Tokenizer::from_json(&std::fs::read(common::llama3_tokenizer_json()).expect("read")).expect("tokenizer")
}

/// Drives a constraint with random logits over the whole vocabulary (a "model" that likes
/// anything) until it completes; returns the tokens.
fn random_walk(c: &mut llama_webgpu::grammar::Constraint, vocab: usize, stop: &[u32], seed: u64) -> Vec<u32> {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = Sampler::new(SamplerConfig { temperature: 1.0, seed, ..Default::default() }).unwrap();
    let mut out = Vec::new();
    for _ in 0..400 {
        if c.is_complete() {
            break;
        }
        let mut logits: Vec<f32> = (0..vocab)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % 1000) as f32 / 250.0
            })
            .collect();
        c.mask_logits(&mut logits).unwrap();
        let t = s.sample(&logits, &out).unwrap();
        c.consume(t).unwrap();
        if stop.contains(&t) {
            break;
        }
        out.push(t);
    }
    out
}

#[test]
fn json_schema_masks_on_the_llama3_vocabulary_give_valid_json() {
    let tok = llama3();
    assert_eq!(tok.vocab_size(), 128_256);
    let compiler = GrammarCompiler::new(&tok).unwrap();
    let mut cases = Vec::new();
    let mut multi = 0;
    for (k, schema) in schemas().into_iter().enumerate() {
        for seed in 0..6u64 {
            let mut c = compiler.compile(&Grammar::JsonSchema(schema.clone())).unwrap();
            let ids = random_walk(&mut c, tok.vocab_size(), &tok.stop_ids(), seed * 31 + k as u64);
            assert!(c.is_accepting(), "schema {k} seed {seed}: incomplete after {} tokens", ids.len());
            // Tokens that span a grammar boundary (`":`, `",`, `"}` …) are allowed too.
            multi += ids
                .iter()
                .filter(|&&t| {
                    let b = tok.token_bytes(t).unwrap();
                    b.len() > 1
                        && b.iter().any(|c| b"{}[],:\"".contains(c))
                        && b.iter().any(|c| !b"{}[],:\"".contains(c))
                })
                .count();
            cases.push((schema.clone(), tok.decode(&ids).unwrap()));
        }
    }
    let bad = python_validate(&cases);
    assert!(bad.is_empty(), "{} of {} invalid: {bad:#?}", bad.len(), cases.len());
    assert!(multi > 0, "no boundary-spanning token was ever allowed");
}

#[test]
fn regex_lark_and_gbnf_outputs_match() {
    let tok = llama3();
    let compiler = GrammarCompiler::new(&tok).unwrap();
    let gbnf = "root ::= \"(\" expr \")\"\nexpr ::= num (\"+\" num){0,3}\nnum ::= [1-9] [0-9]?\n";
    let lark = "start: \"<\" WORD (\",\" WORD){1,2} \">\"\nWORD: /[a-z]{2,5}/\n";
    // The same languages as Python regexes, checked by Python `re.fullmatch`.
    let cases = [
        (Grammar::Regex("[0-9]{3}-[a-z]{2,4}".into()), r"[0-9]{3}-[a-z]{2,4}"),
        (Grammar::Gbnf(gbnf.into()), r"\([1-9][0-9]?(\+[1-9][0-9]?){0,3}\)"),
        (Grammar::Lark(lark.into()), r"<[a-z]{2,5}(,[a-z]{2,5}){1,2}>"),
    ];
    let mut texts = Vec::new();
    for (g, py) in &cases {
        for seed in 0..5 {
            let mut c = compiler.compile(g).unwrap();
            let ids = random_walk(&mut c, tok.vocab_size(), &tok.stop_ids(), seed);
            texts.push(json!({"re": py, "text": tok.decode(&ids).unwrap()}));
        }
    }
    let script = "import json, re, sys\n\
        print(json.dumps([c['text'] for c in json.loads(sys.argv[1]) if not re.fullmatch(c['re'], c['text'])]))";
    let out = Command::new("python3").args(["-c", script, &Value::Array(texts.clone()).to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bad: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(bad.is_empty(), "{bad:?} (all: {texts:?})");
}

#[test]
fn invalid_schema_and_grammar_are_invalid_argument() {
    let tok = llama3();
    let compiler = GrammarCompiler::new(&tok).unwrap();
    let bad = [
        (Grammar::JsonSchema(json!({"type": "nonsense"})), "JSON schema"),
        (Grammar::JsonSchema(json!([1, 2])), "JSON schema"),
        (Grammar::Regex("(unclosed".into()), "regex"),
        (Grammar::Lark("start: undefined_rule".into()), "Lark"),
        (Grammar::Gbnf("root ::= \"a".into()), "GBNF"),
    ];
    for (g, what) in bad {
        match compiler.compile(&g) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains(what), "{g:?}: {m}"),
            Err(e) => panic!("{g:?}: wrong error {e}"),
            Ok(_) => panic!("{g:?} accepted"),
        }
    }
    assert!(
        matches!(llama_webgpu::grammar::parse_schema("{not json"), Err(Error::InvalidArgument(m)) if m.contains("not valid JSON"))
    );
}

fn smollm2() -> (LlamaModel, Tokenizer, FileSource) {
    let src = FileSource::open(common::smollm2_gguf()).unwrap();
    let file = GgufFile::read(&src).unwrap();
    let opts = LoadOptions { context: Some(256), ..Default::default() };
    let model = LlamaModel::load_blocking(&src, &file, &opts, |_| {}).unwrap();
    (model, Tokenizer::from_gguf(&file).unwrap(), src)
}

fn prompt(tok: &Tokenizer, schema: &Value) -> Vec<u32> {
    let msgs = [
        Message::new("system", "Reply with JSON only."),
        Message::new("user", format!("Give an example of JSON matching this schema: {schema}")),
    ];
    let opts = ChatOptions { add_generation_prompt: true, ..Default::default() };
    ChatFormat::for_tokenizer(tok).encode(tok, &msgs, &opts).unwrap()
}

/// The acceptance test: SmolLM2 at temperature 1.0, 24 seeds over four schemas, every output
/// parses and validates (Python jsonschema), and ends by itself when the JSON is complete.
#[test]
fn smollm2_json_schema_outputs_validate() {
    let (mut model, tok, _src) = smollm2();
    let compiler = GrammarCompiler::new(&tok).unwrap();
    let mut session = Session::new();
    let mut cases = Vec::new();
    for (k, schema) in schemas().into_iter().enumerate() {
        let p = prompt(&tok, &schema);
        for s in 0..6u64 {
            let seed = 1 + 6 * k as u64 + s;
            let opts = GenerateOptions {
                max_tokens: 64,
                sampler: SamplerConfig { temperature: 1.0, seed, ..Default::default() },
                ..Default::default()
            };
            let c = compiler.compile(&Grammar::JsonSchema(schema.clone())).unwrap();
            let g = pollster::block_on(session.generate_constrained(&mut model, &tok, &p, &opts, Some(c), |_, _| true))
                .unwrap();
            assert_eq!(g.stop_reason, StopReason::Eos, "seed {seed}: {:?} did not complete", g.text);
            cases.push((schema.clone(), g.text));
        }
    }
    let bad = python_validate(&cases);
    assert!(bad.is_empty(), "{} of {} invalid: {bad:#?}", bad.len(), cases.len());
}

/// Cut off by max tokens → "length", and the grammar never lets it ramble past the budget.
#[test]
fn smollm2_truncated_output_is_length() {
    let (mut model, tok, _src) = smollm2();
    let compiler = GrammarCompiler::new(&tok).unwrap();
    let schema =
        json!({"type": "object", "properties": {"story": {"type": "string", "minLength": 200}}, "required": ["story"]});
    let opts = GenerateOptions {
        max_tokens: 6,
        sampler: SamplerConfig { temperature: 1.0, seed: 3, ..Default::default() },
        ..Default::default()
    };
    let c = compiler.compile(&Grammar::JsonSchema(schema.clone())).unwrap();
    let mut session = Session::new();
    let g = pollster::block_on(session.generate_constrained(
        &mut model,
        &tok,
        &prompt(&tok, &schema),
        &opts,
        Some(c),
        |_, _| true,
    ))
    .unwrap();
    assert_eq!(g.stop_reason, StopReason::Length);
    assert_eq!(g.tokens.len(), 6);
    assert!(g.text.starts_with("{\"story\": \""), "{:?}", g.text);
}

/// `generate --json-schema S.json --temperature 1 --seed N --json`: the last line's "text" is a
/// valid instance of S.
#[test]
fn cli_json_schema_last_line_text_validates() {
    let schema = schemas().remove(0);
    let path: PathBuf = std::env::temp_dir().join(format!("lw-schema-{}.json", std::process::id()));
    std::fs::File::create(&path).unwrap().write_all(schema.to_string().as_bytes()).unwrap();
    let mut cases = Vec::new();
    for seed in ["5", "6"] {
        let out = Command::new(env!("CARGO_BIN_EXE_llama-webgpu"))
            .args(["generate", "--model", common::smollm2_gguf().to_str().unwrap(), "--chat", "--prompt"])
            .arg("Describe a person as JSON.")
            .args(["--json-schema", path.to_str().unwrap(), "--temperature", "1", "--seed", seed])
            .args(["--max-tokens", "48", "--context", "256", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(last["stop_reason"], "eos", "{stdout}");
        cases.push((schema.clone(), last["text"].as_str().unwrap().to_string()));
    }
    // A bad schema file is a clear error naming the problem.
    std::fs::write(&path, "{\"type\": \"nonsense\"}").unwrap();
    let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-q8_0.gguf");
    let out = Command::new(env!("CARGO_BIN_EXE_llama-webgpu"))
        .args(["generate", "--model", tiny.to_str().unwrap(), "--prompt", "x"])
        .args(["--json-schema", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid JSON schema"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&path);
    let bad = python_validate(&cases);
    assert!(bad.is_empty(), "{bad:?}");
}
