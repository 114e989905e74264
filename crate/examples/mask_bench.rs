//! Per-token mask cost and schema compile time of constrained decoding on a real vocabulary.
//!
//!     cargo run --release --example mask_bench -- TOKENIZER.json [SCHEMA.json ...]
//!
//! Without schemas it measures the built-in set (the structured-output test schemas and a
//! tool call). Prints one JSON line per grammar.

use llama_webgpu::grammar::{bench_masks, Grammar, GrammarCompiler};
use llama_webgpu::tokenizer::Tokenizer;
use serde_json::json;
use std::time::Instant;

fn main() -> llama_webgpu::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or_else(|| {
        llama_webgpu::Error::InvalidArgument("usage: mask_bench TOKENIZER.json [SCHEMA.json ...]".into())
    })?;
    let tok = Tokenizer::from_json(&std::fs::read(path)?)?;
    let t = Instant::now();
    let compiler = GrammarCompiler::new(&tok)?;
    println!("{}", json!({"vocab": tok.vocab_size(), "trie_and_factory_ms": t.elapsed().as_secs_f64() * 1e3}));
    let mut grammars: Vec<(String, Grammar)> = Vec::new();
    for f in &args[1..] {
        grammars
            .push((f.clone(), Grammar::JsonSchema(llama_webgpu::grammar::parse_schema(&std::fs::read_to_string(f)?)?)));
    }
    if grammars.is_empty() {
        grammars = builtin();
    }
    for (name, g) in grammars {
        let r = bench_masks(&compiler, &g, 400, tok.vocab_size())?;
        println!("{}", json!({"grammar": name, "result": r}));
    }
    Ok(())
}

fn builtin() -> Vec<(String, Grammar)> {
    let person = json!({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120}},
        "required": ["name", "age"], "additionalProperties": false});
    let nested = json!({"type": "object", "properties": {
        "city": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 10},
            "population": {"type": "integer", "minimum": 1000, "maximum": 99999}},
            "required": ["name", "population"]},
        "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "maxItems": 3}},
        "required": ["city", "tags"]});
    vec![
        ("person".into(), Grammar::JsonSchema(person)),
        ("nested".into(), Grammar::JsonSchema(nested)),
        ("json_object".into(), Grammar::JsonObject),
    ]
}
