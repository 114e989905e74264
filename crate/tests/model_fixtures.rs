//! The whole engine against transformers: tiny random Llama-3-shaped models (GQA, llama3
//! rope scaling, tied and untied) in every supported GGUF type, whose reference logits
//! `tests/make_fixtures.py` computed with HF transformers on the weights dequantized from the
//! same files. Checked for a full prefill and for token-by-token decoding through the KV cache.

use llama_webgpu::gguf::{FileSource, GgufFile};
use llama_webgpu::gpu::model::{LlamaModel, LoadOptions};
use llama_webgpu::gpu::{GpuOptions, Precision};
use llama_webgpu::graph::Logits;
use std::path::PathBuf;

mod common;
use common::read_npy;

fn fixtures() -> PathBuf {
    std::env::var_os("FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures"))
}

fn std_dev(v: &[f32]) -> f32 {
    let m = v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (*x as f64 - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt() as f32
}

fn tokens() -> Vec<u32> {
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(fixtures().join("tiny.json")).unwrap()).unwrap();
    j["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

fn load(name: &str, precision: Precision) -> Option<LlamaModel> {
    let src = FileSource::open(fixtures().join(format!("tiny-{name}.gguf"))).unwrap();
    let file = GgufFile::read(&src).unwrap();
    let opts = LoadOptions {
        gpu: GpuOptions { precision, max_binding_size: None, ..Default::default() },
        context: Some(64),
        prefill_chunk: 10,
        ..Default::default()
    };
    match LlamaModel::load_blocking(&src, &file, &opts, |_| {}) {
        Ok(m) => Some(m),
        // f16 is optional: only an adapter without shader-f16 may refuse it
        Err(llama_webgpu::Error::InvalidArgument(e)) if precision == Precision::F16 && e.contains("shader-f16") => None,
        Err(e) => panic!("loading {name}: {e}"),
    }
}

/// Max |ours − ref| over each position, as a fraction of the reference logits' std.
fn check(label: &str, ours: &[f32], reference: &[f32], vocab: usize, tol: f32) -> f32 {
    assert_eq!(ours.len(), reference.len(), "{label}: length");
    let sd = std_dev(reference);
    let mut worst = 0f32;
    for (t, (a, b)) in ours.chunks(vocab).zip(reference.chunks(vocab)).enumerate() {
        let err =
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, |m, e| if e.is_nan() { f32::INFINITY } else { m.max(e) });
        assert!(err <= tol * sd, "{label}: position {t}: max |ours − ref| = {err} > {tol} × std {sd}");
        worst = worst.max(err / sd);
    }
    worst
}

fn run_type(name: &str) {
    let toks = tokens();
    let (shape, reference) = read_npy(&fixtures().join(format!("tiny-{name}.logits.npy")));
    assert_eq!(shape, vec![toks.len(), reference.len() / toks.len()]);
    let vocab = shape[1];
    for (precision, tol) in [(Precision::F32, 0.01), (Precision::F16, 0.03)] {
        let Some(mut m) = load(name, precision) else { continue };
        assert!(m.chunk < toks.len(), "prefill must span several chunks to test chunking");
        // one prefill (in chunks of 10) with logits at every position
        let all = m.forward_blocking(&toks, 0, Logits::All).unwrap();
        let e1 = check(&format!("{name} {precision:?} prefill"), &all, &reference, vocab, tol);
        // token by token through the KV cache
        let mut seq = Vec::new();
        for (i, &t) in toks.iter().enumerate() {
            seq.extend(m.forward_blocking(&[t], i, Logits::Last).unwrap());
        }
        let e2 = check(&format!("{name} {precision:?} decode"), &seq, &reference, vocab, tol);
        eprintln!("{name} {precision:?}: max error / std: prefill {e1:.5}, decode {e2:.5}");
    }
}

#[test]
fn f32_matches_transformers() {
    run_type("f32");
}
#[test]
fn f16_matches_transformers() {
    run_type("f16");
}
#[test]
fn bf16_matches_transformers() {
    run_type("bf16");
}
#[test]
fn q8_0_matches_transformers() {
    run_type("q8_0");
}
#[test]
fn q4_0_matches_transformers() {
    run_type("q4_0");
}
#[test]
fn q4_1_tied_matches_transformers() {
    run_type("q4_1");
}
#[test]
fn q4_k_m_matches_transformers() {
    run_type("q4_k_m");
}
#[test]
fn q5_k_m_matches_transformers() {
    run_type("q5_k_m");
}
#[test]
fn q6_k_matches_transformers() {
    run_type("q6_k");
}

// made by llama.cpp's own llama-quantize (tests/make_quant_fixtures.py)
#[test]
fn q2_k_matches_transformers() {
    run_type("q2_k");
}
#[test]
fn q3_k_s_matches_transformers() {
    run_type("q3_k_s");
}
#[test]
fn q3_k_m_matches_transformers() {
    run_type("q3_k_m");
}
#[test]
fn iq4_nl_matches_transformers() {
    run_type("iq4_nl");
}
#[test]
fn iq4_xs_matches_transformers() {
    run_type("iq4_xs");
}

#[test]
fn greedy_matches_transformers_generate() {
    // transformers' greedy continuation, replayed through prefill + cached decode
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(fixtures().join("tiny.json")).unwrap()).unwrap();
    let prompt: Vec<u32> = j["greedy_prompt"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    for name in ["f32", "q8_0", "q4_1"] {
        let want: Vec<u32> =
            j["types"][name]["greedy"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let mut m = load(name, Precision::F32).unwrap();
        let mut logits = m.forward_blocking(&prompt, 0, Logits::Last).unwrap();
        let mut got = Vec::new();
        for i in 0..want.len() {
            let next =
                logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
                    as u32;
            got.push(next);
            logits = m.forward_blocking(&[next], prompt.len() + i, Logits::Last).unwrap();
        }
        assert_eq!(got, want, "{name}: greedy tokens differ from transformers");
    }
}

#[test]
fn bad_input_is_a_typed_error_and_engine_stays_usable() {
    let mut m = load("q8_0", Precision::F32).unwrap();
    let vocab = m.cfg.n_vocab as u32;
    assert!(
        matches!(m.forward_blocking(&[1, vocab], 0, Logits::Last), Err(llama_webgpu::Error::TokenOutOfVocab { id, .. }) if id == vocab)
    );
    assert!(matches!(
        m.forward_blocking(&[1; 65], 0, Logits::Last),
        Err(llama_webgpu::Error::ContextOverflow { needed: 65, capacity: 64 })
    ));
    assert!(matches!(m.forward_blocking(&[1], 64, Logits::Last), Err(llama_webgpu::Error::ContextOverflow { .. })));
    // still works afterwards
    let toks = tokens();
    let (_, reference) = read_npy(&fixtures().join("tiny-q8_0.logits.npy"));
    let all = m.forward_blocking(&toks, 0, Logits::All).unwrap();
    check("after errors", &all, &reference, m.cfg.n_vocab, 0.01);
}
