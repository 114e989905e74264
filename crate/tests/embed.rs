//! Embeddings against transformers: the final-norm hidden states (`last_hidden_state`) of the
//! same GGUF's dequantized weights, pooled by mean and by last token
//! (`tests/make_embed_refs.py`), on both backends, in f32; inputs of a batch must not see each
//! other through the KV cache; the CLI's `embed` prints the same vector.

use llama_webgpu::backend::Forward;
use llama_webgpu::cpu::{CpuDot, CpuModel, CpuOptions};
use llama_webgpu::embed::{self, Pooling};
use llama_webgpu::gguf::{FileSource, GgufFile, Value};
use llama_webgpu::gpu::model::{LlamaModel, LoadOptions};
use llama_webgpu::gpu::{GpuOptions, Precision};
use llama_webgpu::kv::KvType;
use std::path::{Path, PathBuf};

mod common;
use common::read_npy;

/// Max |ours − ref| as a fraction of the reference's std (f32 on both sides).
const TOL: f32 = 1e-4;
/// With the CPU backend's default f16 KV cache (measured 8.5e-4 on the tiny f32 fixture).
const F16_KV_TOL: f32 = 2e-3;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn refs() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("embed.json")).unwrap()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect())
        .collect()
}

use common::err_vs_std as err;

fn cpu(path: &Path) -> CpuModel {
    let src = FileSource::open(path).unwrap();
    let file = GgufFile::read(&src).unwrap();
    // f32 KV: the reference is transformers in f32, at 1e-4 of std
    let kv_type = Some(KvType::F32);
    let opts =
        CpuOptions { context: Some(64), prefill_chunk: 10, dot: Some(CpuDot::Exact), kv_type, ..Default::default() };
    CpuModel::load_blocking(&src, &file, &opts, |_| {}).unwrap()
}

fn gpu(path: &Path) -> LlamaModel {
    let src = FileSource::open(path).unwrap();
    let file = GgufFile::read(&src).unwrap();
    let gpu = GpuOptions { precision: Precision::F32, ..Default::default() };
    let opts = LoadOptions { gpu, context: Some(64), prefill_chunk: 10, ..Default::default() };
    LlamaModel::load_blocking(&src, &file, &opts, |_| {}).unwrap()
}

/// Every input, both poolings, in one batch on one model (longest first, so a shorter input
/// would see the longer one's cache if a pass could), against the reference `[inputs, 2, dim]`.
fn check<M: Forward>(label: &str, m: &mut M, inputs: &[Vec<u32>], reference: &[f32]) -> f32 {
    let dim = m.config().n_embd;
    assert_eq!(reference.len(), inputs.len() * 2 * dim, "{label}: reference shape");
    let mut worst = 0f32;
    for (i, ids) in inputs.iter().enumerate() {
        for (j, pooling) in [Pooling::Mean, Pooling::Last].into_iter().enumerate() {
            let got = pollster::block_on(embed::embed(m, ids, pooling, false)).unwrap();
            let want = &reference[(i * 2 + j) * dim..][..dim];
            let e = err(&got, want);
            assert!(e <= TOL, "{label}: input {i} {pooling:?}: max |ours − ref| = {e:e} × std > {TOL:e}");
            worst = worst.max(e);
        }
    }
    eprintln!("{label}: worst {worst:.2e} × std");
    worst
}

#[test]
fn tiny_fixtures_match_transformers_on_both_backends() {
    let r = refs();
    let inputs = ids(&r["tiny"]["inputs"]);
    assert!(inputs[0].len() > 10, "the first input must span several prefill chunks");
    for (name, t) in r["tiny"]["types"].as_object().unwrap() {
        let path = fixtures().join(t["gguf"].as_str().unwrap());
        let (_, reference) = read_npy(&fixtures().join(t["file"].as_str().unwrap()));
        check(&format!("{name} cpu"), &mut cpu(&path), &inputs, &reference);
        check(&format!("{name} gpu"), &mut gpu(&path), &inputs, &reference);
    }
}

#[test]
fn smollm2_matches_transformers_on_both_backends() {
    let r = refs();
    let s = &r["smollm2"];
    let inputs = ids(&s["inputs"]);
    let (shape, reference) = read_npy(&fixtures().join(s["file"].as_str().unwrap()));
    assert_eq!(shape[0], inputs.len());
    let path = common::smollm2_gguf();
    check("smollm2 cpu", &mut cpu(&path), &inputs, &reference);
    check("smollm2 gpu", &mut gpu(&path), &inputs, &reference);
}

/// An input embeds the same alone and after other inputs (bit for bit on the CPU, which is
/// deterministic): nothing of an earlier pass leaks into a later one.
#[test]
fn batched_inputs_do_not_interfere() {
    let inputs = ids(&refs()["tiny"]["inputs"]);
    let path = fixtures().join("tiny-f32.gguf");
    let alone: Vec<Vec<f32>> = inputs
        .iter()
        .map(|ids| pollster::block_on(embed::embed(&mut cpu(&path), ids, Pooling::Mean, false)).unwrap())
        .collect();
    let mut m = cpu(&path);
    for ids in inputs.iter().rev().chain(&inputs) {
        pollster::block_on(embed::embed(&mut m, ids, Pooling::Mean, false)).unwrap();
    }
    for (ids, want) in inputs.iter().zip(&alone).rev() {
        assert_eq!(&pollster::block_on(embed::embed(&mut m, ids, Pooling::Mean, false)).unwrap(), want);
    }
}

/// A copy of `src` with `extra` metadata added (tensor data copied as it is).
fn with_metadata(src: &Path, dst: &Path, extra: Vec<(String, Value)>) {
    use llama_webgpu::gguf::{ByteSource, GgufWriter};
    let s = FileSource::open(src).unwrap();
    let f = GgufFile::read(&s).unwrap();
    let mut meta = f.metadata.clone();
    meta.extend(extra);
    let tensors = f.tensors.iter().map(|t| (t.name.clone(), t.dims.clone(), t.ty)).collect();
    let mut w = GgufWriter::new(meta, tensors, f.alignment).unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(dst).unwrap());
    w.write_header(&mut out).unwrap();
    for t in &f.tensors {
        let mut buf = vec![0u8; t.n_bytes as usize];
        s.read_at(t.offset, &mut buf).unwrap();
        w.write_tensor_data(&mut out, &buf).unwrap();
    }
    w.finish().unwrap();
}

fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_llama-webgpu")).args(args).output().unwrap()
}

fn json_embedding(out: &std::process::Output) -> (Vec<f32>, usize) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().to_string();
    let j: serde_json::Value = serde_json::from_str(&last).unwrap();
    let v = j["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    (v, j["tokens"].as_u64().unwrap() as usize)
}

#[test]
fn cli_embed_prints_the_reference_and_follows_pooling_type() {
    let r = refs();
    let inputs = ids(&r["tiny"]["inputs"]);
    let (_, reference) = read_npy(&fixtures().join("tiny-f32.embed.npy"));
    let dim = reference.len() / inputs.len() / 2;
    let toks: Vec<String> = inputs[0].iter().map(u32::to_string).collect();
    let toks = toks.join(",");
    let model = fixtures().join("tiny-f32.gguf");
    let model = model.to_str().unwrap();
    // f32 KV, as the reference (the default f16 KV is checked at its own bound below)
    let base = ["embed", "--backend", "cpu", "--kv-type", "f32", "--model", model, "--tokens", &toks, "--json"];

    // no pooling_type: mean, the vector as it is
    let (v, n) = json_embedding(&cli(&base));
    assert_eq!(n, inputs[0].len());
    assert!(err(&v, &reference[..dim]) <= TOL);
    // the CPU backend's default KV type (f16) rounds keys and values: a bound of its own
    let f16_kv: Vec<&str> = base.iter().copied().filter(|a| !matches!(*a, "--kv-type" | "f32")).collect();
    let (v, _) = json_embedding(&cli(&f16_kv));
    let e = err(&v, &reference[..dim]);
    eprintln!("default (f16) KV: embedding error {e:e} of std");
    assert!(e <= F16_KV_TOL, "default KV: {e:e} > {F16_KV_TOL:e} of std");
    // --pooling last
    let (v, _) = json_embedding(&cli(&[&base[..], &["--pooling", "last"]].concat()));
    assert!(err(&v, &reference[dim..2 * dim]) <= TOL);
    // --normalize: the same direction, unit length
    let (u, _) = json_embedding(&cli(&[&base[..], &["--normalize"]].concat()));
    let norm = u.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    let mean = &reference[..dim];
    let len = mean.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let unit: Vec<f32> = mean.iter().map(|x| (*x as f64 / len) as f32).collect();
    assert!(err(&u, &unit) <= TOL);

    // a GGUF whose pooling_type is 3 (last) pools by the last token without --pooling
    let dir = std::env::temp_dir().join(format!("embed-pooling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let last = dir.join("tiny-last.gguf");
    with_metadata(Path::new(model), &last, vec![("llama.pooling_type".into(), Value::U32(3))]);
    let a = [
        "embed",
        "--backend",
        "cpu",
        "--kv-type",
        "f32",
        "--model",
        last.to_str().unwrap(),
        "--tokens",
        &toks,
        "--json",
    ];
    let (v, _) = json_embedding(&cli(&a));
    assert!(err(&v, &reference[dim..2 * dim]) <= TOL);
    // an unknown pooling type is a typed error, not a panic or a guess
    let bad = dir.join("tiny-bad.gguf");
    with_metadata(Path::new(model), &bad, vec![("llama.pooling_type".into(), Value::U32(9))]);
    let out = cli(&["embed", "--backend", "cpu", "--model", bad.to_str().unwrap(), "--tokens", &toks]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pooling_type"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).unwrap();

    // without --json: one value a line, the same vector
    let out = cli(&base[..base.len() - 1]);
    let lines: Vec<f32> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(lines, json_embedding(&cli(&base)).0);
    // neither input, or both
    assert!(!cli(&["embed", "--model", model]).status.success());
    assert!(!cli(&["embed", "--model", model, "--tokens", "1", "--text", "a"]).status.success());
}
