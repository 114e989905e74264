//! Synthetic models (`llama_webgpu::synth`): well-formed GGUF, llama.cpp's Q4_K_M type mix,
//! sane block values, determinism, and a forward pass through the engine.

use llama_webgpu::gguf::{ByteSource, FileSource, GgmlType, GgufFile, LlamaConfig, TensorInfo};
use llama_webgpu::gpu::model::{LlamaModel, LoadOptions};
use llama_webgpu::graph::Logits;
use llama_webgpu::quant::dequantize;
use llama_webgpu::synth::{self, SynthDims, SynthShape, FTYPES};

fn custom(n_layer: usize, n_vocab: usize, tied: bool) -> SynthShape {
    SynthShape::Custom(SynthDims {
        n_layer,
        n_embd: 256,
        n_ff: 512,
        n_head: 4,
        n_head_kv: 2,
        n_vocab,
        context_length: 2048,
        rope_base: 500000.0,
        tied,
    })
}

fn gen_vec(shape: &SynthShape, ftype: &str, seed: u64) -> Vec<u8> {
    let mut v = Vec::new();
    let n = synth::synth(shape, ftype, seed, &mut v, |_, _| {}).unwrap();
    assert_eq!(n, v.len() as u64);
    v
}

fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// llama.cpp's choice for each tensor, written out independently of synth.rs.
fn expected_type(ftype: &str, name: &str, n_layer: usize, tied: bool, gqa: usize) -> GgmlType {
    use GgmlType::*;
    if name.contains("norm") || name == "rope_freqs.weight" {
        return F32;
    }
    let is_output = name == "output.weight" || (tied && name == "token_embd.weight");
    let layer: Option<usize> = name.strip_prefix("blk.").map(|r| r.split('.').next().unwrap().parse().unwrap());
    match ftype {
        "f16" => F16,
        "q8_0" => Q8_0,
        "q6_k" => Q6K,
        "q4_0" => {
            if is_output {
                Q6K
            } else {
                Q4_0
            }
        }
        "q4_k_m" => {
            let more = (name.ends_with("attn_v.weight") || name.ends_with("ffn_down.weight"))
                && use_more_bits(layer.unwrap(), n_layer);
            if is_output || more {
                Q6K
            } else {
                Q4K
            }
        }
        // llama.cpp's llama_tensor_get_type for these mixes (Llama: no experts, not 70B)
        _ if is_output => Q6K,
        "q3_k_m" => match name.rsplit('.').nth(1).unwrap() {
            "attn_v" if layer.unwrap() < 2 => Q5K,
            "ffn_down" if layer.unwrap() < n_layer / 16 => Q5K,
            "attn_v" | "ffn_down" | "attn_output" => Q4K,
            _ => Q3K,
        },
        "q2_k" => match name.rsplit('.').nth(1).unwrap() {
            "attn_v" if gqa >= 4 => Q4K,
            "attn_v" | "ffn_down" | "attn_output" => Q3K,
            _ => Q2K,
        },
        "iq4_xs" => match name.rsplit('.').nth(1).unwrap() {
            "attn_v" if gqa >= 4 => Q5K,
            "ffn_down" if layer.unwrap() < n_layer / 8 => Q5K,
            _ => IQ4XS,
        },
        _ => unreachable!(),
    }
}

fn expected_names(n_layer: usize, tied: bool) -> Vec<String> {
    let mut v = vec!["token_embd.weight".to_string(), "rope_freqs.weight".to_string()];
    for i in 0..n_layer {
        for s in
            ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]
        {
            v.push(format!("blk.{i}.{s}.weight"));
        }
    }
    v.push("output_norm.weight".into());
    if !tied {
        v.push("output.weight".into());
    }
    v
}

fn read_rows(src: &dyn ByteSource, t: &TensorInfo, row: u64, n: u64) -> Vec<f32> {
    let mut raw = vec![0u8; (t.row_bytes() * n) as usize];
    src.read_at(t.offset + row * t.row_bytes(), &mut raw).unwrap();
    dequantize(t.ty, &raw).unwrap()
}

fn rms(v: &[f32]) -> f32 {
    (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt() as f32
}

/// Every matrix: sampled rows (first, middle, last) decode to finite values with zero mean and
/// RMS ≈ 1/sqrt(n_in); norms ≈ 1; rope_freqs the llama3 factors.
fn check_values(src: &dyn ByteSource, f: &GgufFile, cfg: &LlamaConfig) {
    for t in &f.tensors {
        if t.dims.len() == 1 {
            let v = read_rows(src, t, 0, 1);
            assert!(v.iter().all(|x| x.is_finite()), "{}", t.name);
            if t.name == "rope_freqs.weight" {
                assert_eq!(v, synth::llama3_rope_factors(cfg.head_dim, cfg.rope_base));
            } else {
                assert!(v.iter().all(|x| (0.85..=1.15).contains(x)), "{}: norm weights {v:?}", t.name);
            }
            continue;
        }
        let rows = t.rows();
        let want = 1.0 / (t.cols() as f32).sqrt();
        for r in [0, rows / 2, rows - 4] {
            let v = read_rows(src, t, r, 4);
            assert!(v.iter().all(|x| x.is_finite()), "{} rows {r}..: non-finite", t.name);
            let got = rms(&v);
            assert!(
                (0.8 * want..1.25 * want).contains(&got),
                "{} ({}) rows {r}..: RMS {got}, want ≈ {want}",
                t.name,
                t.ty.name()
            );
            let mean = v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64;
            assert!(
                mean.abs() < 0.15 * want as f64,
                "{} ({}) rows {r}..: mean {mean}, RMS {want}",
                t.name,
                t.ty.name()
            );
        }
    }
}

#[test]
fn every_ftype_is_well_formed() {
    let dir = std::env::temp_dir();
    for (ftype, tied) in FTYPES.iter().map(|f| (*f, false)).chain([("q4_k_m", true)]) {
        let (n_layer, n_vocab) = (2, 128256);
        let shape = custom(n_layer, n_vocab, tied);
        let path = dir.join(format!("llama-webgpu-synth-{}-{ftype}-{tied}.gguf", std::process::id()));
        let mut calls = 0u64;
        let mut last = (0, 0);
        let written = {
            let mut out = std::fs::File::create(&path).unwrap();
            synth::synth(&shape, ftype, 42, &mut out, |a, b| {
                assert!(a >= last.0 && a <= b);
                last = (a, b);
                calls += 1;
            })
            .unwrap()
        };
        let src = FileSource::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap(); // the open handle keeps the data
        assert_eq!(written, src.len(), "{ftype}");
        assert_eq!(written, synth::file_len(&shape, ftype).unwrap(), "{ftype}");
        assert_eq!(last, (written, written));
        assert!(calls > 2);

        let f = GgufFile::read(&src).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.file_len, written);
        let file_type = f.get_u32("general.file_type").unwrap();
        assert_eq!(
            file_type,
            match ftype {
                "f16" => 1,
                "q4_0" => 2,
                "q8_0" => 7,
                "q4_k_m" => 15,
                "q2_k" => 10,
                "q3_k_m" => 12,
                "iq4_xs" => 30,
                _ => 18,
            }
        );
        assert_eq!(f.get_u32("llama.vocab_size").unwrap(), n_vocab as u32);
        let cfg = LlamaConfig::from_gguf(&f).unwrap();
        let want = LlamaConfig {
            architecture: "llama".into(),
            name: Some(shape.display_name()),
            n_layer,
            n_embd: 256,
            n_ff: 512,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 64,
            n_vocab,
            context_length: 2048,
            rms_eps: 1e-5,
            rope_base: 500000.0,
            has_rope_freqs: true,
            tied_embeddings: tied,
        };
        assert_eq!(cfg, want, "{ftype}");

        let names: Vec<_> = f.tensors.iter().map(|t| t.name.clone()).collect();
        assert_eq!(names, expected_names(n_layer, tied));
        for t in &f.tensors {
            assert_eq!(t.ty, expected_type(ftype, &t.name, n_layer, tied, 2), "{ftype} {}", t.name);
            assert!(t.offset + t.n_bytes <= f.file_len && t.offset % f.alignment == 0);
        }
        // tensors are contiguous up to alignment padding, and the file ends with the last
        let mut end = f.data_offset;
        for t in &f.tensors {
            assert_eq!(t.offset, end.next_multiple_of(f.alignment), "{}", t.name);
            end = t.offset + t.n_bytes;
        }
        assert_eq!(end.next_multiple_of(f.alignment), f.file_len);

        check_values(&src, &f, &cfg);
    }
}

#[test]
fn q4_k_m_type_mix_follows_llama_cpp() {
    // 8 layers: use_more_bits is true for layers 0, 3, 6, 7
    let shape = custom(8, 512, false);
    let plan = synth::tensor_plan(&shape, "q4_k_m").unwrap();
    let q6: Vec<_> = plan.iter().filter(|(_, _, ty)| *ty == GgmlType::Q6K).map(|(n, _, _)| n.as_str()).collect();
    let mut want = vec![];
    for i in [0, 3, 6, 7] {
        want.push(format!("blk.{i}.attn_v.weight"));
        want.push(format!("blk.{i}.ffn_down.weight"));
    }
    want.push("output.weight".into());
    assert_eq!(q6, want);

    // the real shapes, planned without writing anything
    for (shape, n_layer, tied, gqa) in [
        (SynthShape::Llama3_8B, 32, false, 4),
        (SynthShape::Llama3_2_1B, 16, true, 4),
        (SynthShape::Llama3_2_3B, 28, true, 3),
    ] {
        for ftype in FTYPES {
            let plan = synth::tensor_plan(&shape, ftype).unwrap();
            assert_eq!(plan.len(), 2 + 9 * n_layer + 1 + usize::from(!tied));
            for (name, _, ty) in &plan {
                assert_eq!(*ty, expected_type(ftype, name, n_layer, tied, gqa), "{shape:?} {ftype} {name}");
            }
        }
    }
}

#[test]
fn shapes_and_names() {
    use std::str::FromStr;
    for (s, shape) in [
        ("llama3-8b", SynthShape::Llama3_8B),
        ("llama3.2-1b", SynthShape::Llama3_2_1B),
        ("llama3.2-3b", SynthShape::Llama3_2_3B),
    ] {
        assert_eq!(SynthShape::from_str(s).unwrap(), shape);
    }
    assert!(SynthShape::from_str("llama2-7b").is_err());
    let d = synth::dims(&SynthShape::Llama3_8B);
    assert_eq!(
        (d.n_layer, d.n_embd, d.n_ff, d.n_head, d.n_head_kv, d.n_vocab, d.context_length, d.rope_base, d.tied),
        (32, 4096, 14336, 32, 8, 128256, 8192, 500000.0, false)
    );
    let d = synth::dims(&SynthShape::Llama3_2_1B);
    assert_eq!(
        (d.n_layer, d.n_embd, d.n_ff, d.n_head, d.n_head_kv, d.n_vocab, d.context_length, d.tied),
        (16, 2048, 8192, 32, 8, 128256, 131072, true)
    );
    let d = synth::dims(&SynthShape::Llama3_2_3B);
    assert_eq!(
        (d.n_layer, d.n_embd, d.n_ff, d.n_head, d.n_head_kv, d.n_vocab, d.context_length, d.tied),
        (28, 3072, 8192, 24, 8, 128256, 131072, true)
    );
    assert!(synth::synth(&custom(1, 256, false), "q5_k_m", 0, &mut Vec::new(), |_, _| {}).is_err());
    assert!(synth::synth(&custom(1, 0, false), "q8_0", 0, &mut Vec::new(), |_, _| {}).is_err());
    // llama.cpp's sizes for the real files are within a few percent of ours
    let gb = |s: &SynthShape, f: &str| synth::file_len(s, f).unwrap() as f64 / 1e9;
    assert!((4.8..5.0).contains(&gb(&SynthShape::Llama3_8B, "q4_k_m")), "{}", gb(&SynthShape::Llama3_8B, "q4_k_m"));
    assert!(
        (0.78..0.83).contains(&gb(&SynthShape::Llama3_2_1B, "q4_k_m")),
        "{}",
        gb(&SynthShape::Llama3_2_1B, "q4_k_m")
    );
}

#[test]
fn deterministic_per_seed() {
    for ftype in FTYPES {
        let shape = custom(2, 1000, true);
        let a = gen_vec(&shape, ftype, 1);
        assert_eq!(a, gen_vec(&shape, ftype, 1), "{ftype}");
        let b = gen_vec(&shape, ftype, 2);
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b, "{ftype}");
        let f = GgufFile::read(&a).unwrap();
        // the header is seed-independent, every matrix differs
        assert_eq!(a[..f.data_offset as usize], b[..f.data_offset as usize]);
        for t in f.tensors.iter().filter(|t| t.dims.len() == 2) {
            let r = t.offset as usize..(t.offset + t.n_bytes) as usize;
            assert_ne!(a[r.clone()], b[r], "{ftype} {}", t.name);
        }
    }
}

#[test]
fn engine_runs_a_synthetic_model() {
    for (ftype, tied) in [("q4_k_m", false), ("q8_0", true), ("f16", false)] {
        let shape = custom(2, 1000, tied);
        let bytes = gen_vec(&shape, ftype, 7);
        let file = GgufFile::read(&bytes).unwrap();
        let opts = LoadOptions { context: Some(32), ..Default::default() };
        let mut m = LlamaModel::load_blocking(&bytes, &file, &opts, |_| {}).unwrap();
        let logits = m.forward_blocking(&[1, 2, 3], 0, Logits::All).unwrap();
        assert_eq!(logits.len(), 3 * 1000);
        assert!(logits.iter().all(|x| x.is_finite()), "{ftype}: non-finite logits");
        let r = rms(&logits);
        eprintln!("{ftype} tied={tied}: logits RMS {r}");
        assert!(r > 0.05 && r < 100.0, "{ftype}: logits RMS {r}");
        // positions see different tokens, so their logits differ
        assert_ne!(logits[..1000], logits[1000..2000]);
    }
}

/// `cargo test --release --test synth -- --ignored --nocapture`: times the 8B Q4_K_M file.
#[test]
#[ignore]
fn time_llama3_8b_q4_k_m() {
    let t = std::time::Instant::now();
    let n = synth::synth(&SynthShape::Llama3_8B, "q4_k_m", 0, &mut std::io::sink(), |_, _| {}).unwrap();
    eprintln!("8B Q4_K_M generated into io::sink: {n} bytes in {:.1} s", t.elapsed().as_secs_f64());
    let path = std::env::var_os("SYNTH_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("synth-llama3-8b-q4_k_m.gguf"));
    let t = std::time::Instant::now();
    let n = {
        let mut out = std::fs::File::create(&path).unwrap();
        let n = synth::synth(&SynthShape::Llama3_8B, "q4_k_m", 0, &mut out, |_, _| {}).unwrap();
        out.sync_all().unwrap();
        n
    };
    let secs = t.elapsed().as_secs_f64();
    let src = FileSource::open(&path).unwrap();
    let f = GgufFile::read(&src).unwrap();
    let cfg = LlamaConfig::from_gguf(&f).unwrap();
    let q6 = f.tensors.iter().filter(|t| t.ty == GgmlType::Q6K).count();
    eprintln!(
        "8B Q4_K_M: {n} bytes ({:.2} GB) in {secs:.1} s ({:.0} MB/s); {} tensors ({q6} Q6_K); {cfg:?}",
        n as f64 / 1e9,
        n as f64 / 1e6 / secs,
        f.tensors.len()
    );
    check_values(&src, &f, &cfg);
    std::fs::remove_file(&path).unwrap();
}

/// `synth --tokenizer`: the GGUF carries the tokenizer.json's vocabulary, merges and special
/// ids, so our GGUF tokenizer encodes like HF `tokenizers` on the json itself.
#[test]
fn tokenizer_metadata_round_trips() {
    use llama_webgpu::tokenizer::Tokenizer;
    let json = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-tokenizer.json")).unwrap();
    let n_vocab = 320;
    let md = synth::tokenizer_metadata(&json, n_vocab).unwrap();
    let mut v = Vec::new();
    synth::synth_with_metadata(&custom(1, n_vocab, true), "q8_0", 1, md, &mut v, |_, _| {}).unwrap();
    let f = GgufFile::read(&v).unwrap();
    assert!(f.get("tokenizer.ggml.bos_token_id").is_some());
    let (ours, hf) = (Tokenizer::from_gguf(&f).unwrap(), Tokenizer::from_json(&json).unwrap());
    for text in ["Hello world", "the quick brown fox, 123!", "<|eot_id|> tail"] {
        assert_eq!(ours.encode(text).unwrap(), hf.encode(text).unwrap(), "{text}");
    }
    assert!(synth::tokenizer_metadata(&json, 10).is_err(), "ids beyond n_vocab are an error");
}
