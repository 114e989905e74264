//! The GGUF quantizer (`llama_webgpu::quantize`): K-quant round trips with error bounds
//! derived from the formats, the bytes checked against llama.cpp's `gguf` Python package,
//! hostile values, llama.cpp's per-tensor type rules and whole-file quantization.

use llama_webgpu::gguf::{FileSource, GgmlType, GgufFile, GgufWriter, TensorInfo, Value};
use llama_webgpu::quant::{self, quantize as quantize_row};
use llama_webgpu::quantize::{quantize_file, tensor_types, FileType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::process::Command;

mod common;

const K_TYPES: [GgmlType; 3] = [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K];

fn fixtures() -> PathBuf {
    std::env::var_os("FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures"))
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llama-webgpu-quantize-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Standard normal samples (Box–Muller), deterministic.
fn gaussian(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f64 = rng.random_range(f64::EPSILON..1.0);
            let u2: f64 = rng.random();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect()
}

fn rms(v: &[f32]) -> f64 {
    (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

/// RMS(dequantized − x) / RMS(x).
fn rel_rmse(x: &[f32], y: &[f32]) -> f64 {
    assert_eq!(x.len(), y.len());
    let e: Vec<f32> = x.iter().zip(y).map(|(a, b)| a - b).collect();
    rms(&e) / rms(x)
}

/// Relative RMSE bound for Gaussian data, from the formats. A uniform quantizer of step Δ
/// has RMS error Δ/√12. Per group, Δ = range / levels:
/// * Q6_K: 16 values, symmetric, 64 levels (−32..31) over [−max|x|, max|x|]: the expected
///   max |x| of 16 standard normals is ≈ 2.0, so Δ ≈ 2·2.0/63 → 0.018.
/// * Q5_K: 32 values, asymmetric (scale + min), 32 levels over [min, max]: expected range
///   of 32 standard normals ≈ 4.1, so Δ ≈ 4.1/31 → 0.038.
/// * Q4_K: the same with 16 levels: Δ ≈ 4.1/15 → 0.079.
///
/// ggml's least-squares scale search beats the plain max-based step (it trades clipping of
/// outliers for a finer step), while the 6-bit (Q6_K: 8-bit) coding of the sub-block
/// scales/mins relative to the super-block's f16 d/dmin adds a little. The bounds are the
/// estimates above plus 10 % margin; measured values are printed by the test.
fn bound(ty: GgmlType) -> f64 {
    let est = match ty {
        GgmlType::Q6K => 2.0 * 2.0 / 63.0,
        GgmlType::Q5K => 4.1 / 31.0,
        GgmlType::Q4K => 4.1 / 15.0,
        _ => unreachable!(),
    } / 12f64.sqrt();
    est * 1.1
}

fn roundtrip(ty: GgmlType, x: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let q = quantize_row(ty, x).unwrap();
    assert_eq!(q.len() as u64, ty.bytes_for(x.len() as u64).unwrap(), "{ty:?}: byte count");
    let y = quant::dequantize(ty, &q).unwrap();
    assert_eq!(y.len(), x.len());
    (q, y)
}

#[test]
fn kquant_roundtrip_error_within_format_bounds() {
    let mut rng = StdRng::seed_from_u64(1);
    // 24 rows of 1280 values (5 super-blocks each): 120 super-blocks per type
    let x = gaussian(&mut rng, 24 * 1280);
    let mut prev = f64::INFINITY;
    for ty in K_TYPES {
        let (_, y) = roundtrip(ty, &x);
        let e = rel_rmse(&x, &y);
        println!("{}: relative RMSE {e:.5} (bound {:.5})", ty.name(), bound(ty));
        assert!(e < bound(ty), "{}: relative RMSE {e} >= {}", ty.name(), bound(ty));
        // and better than half the estimate would be suspicious of a broken test
        assert!(e > 0.3 * bound(ty), "{}: implausibly small error {e}", ty.name());
        assert!(e < prev, "more bits must not be worse");
        prev = e;
    }
    // Scaled data: the relative error does not depend on the scale while the f16 super-block
    // scale d stays a normal f16 (down to typical weight scales, std 0.02). At std 1e-3, Q6_K's
    // d ≈ 2·2e-3/63/128 ≈ 5e-7 is an f16 subnormal (steps of 6e-8): a limit of the format
    // (ggml's quantizer has it too), so only a looser bound there.
    for (scale, slack) in [(0.02f32, 1.0), (30.0, 1.0), (1e-3, 1.5)] {
        let xs: Vec<f32> = x.iter().map(|v| v * scale).collect();
        for ty in K_TYPES {
            let (_, y) = roundtrip(ty, &xs);
            let e = rel_rmse(&xs, &y);
            assert!(e < bound(ty) * slack, "{} at scale {scale}: {e}", ty.name());
        }
    }
    // The same with a per-row offset and heavy-tailed values (Q4_K/Q5_K use their mins).
    let xo: Vec<f32> = x.iter().enumerate().map(|(i, v)| v + if (i / 1280) % 2 == 0 { 0.7 } else { -0.4 }).collect();
    for ty in K_TYPES {
        let (_, y) = roundtrip(ty, &xo);
        let err: Vec<f32> = xo.iter().zip(&y).map(|(a, b)| a - b).collect();
        let e = rms(&err) / rms(&x);
        assert!(e < bound(ty) * 1.6, "{} with offsets: {e}", ty.name());
    }
}

/// The scale search must beat naive max-based quantization with the same format: the
/// encoder uses the *quantized* sub-block scales when it picks the levels.
#[test]
fn kquant_levels_use_quantized_scales() {
    let mut rng = StdRng::seed_from_u64(2);
    let x = gaussian(&mut rng, 4096);
    for ty in K_TYPES {
        let (q, y) = roundtrip(ty, &x);
        // requantizing the dequantized values must reproduce them exactly-ish: the values lie
        // on the grid of the stored scales
        let (_, y2) = roundtrip(ty, &y);
        let e = rel_rmse(&y, &y2);
        assert!(e < bound(ty) * 0.5, "{}: second round trip moved values by {e}", ty.name());
        // every stored value is within half a step (plus clipping) of the input: check the
        // mean absolute error against the per-sub-block step
        let bs = ty.type_size() as usize;
        for (bi, b) in q.chunks_exact(bs).enumerate() {
            let k = quant::blocks::kblock(ty, b).unwrap();
            for l in 0..256 {
                let i = bi * 256 + l;
                let step = k.scale[l / 16].abs();
                let d = (x[i] - y[i]).abs();
                let lo_hi = match ty {
                    GgmlType::Q6K => (-32i32, 31i32),
                    GgmlType::Q5K => (0, 31),
                    _ => (0, 15),
                };
                let q = k.q[l] as i32;
                // not clipped: rounding error ≤ half a step (+ float slack)
                if q > lo_hi.0 && q < lo_hi.1 {
                    assert!(d <= 0.5 * step * 1.001 + 1e-6, "{}: value {i} err {d} step {step}", ty.name());
                }
            }
        }
    }
}

#[test]
fn kquant_edge_cases_are_finite() {
    let n = 512;
    let all_finite = |ty: GgmlType, x: &[f32]| -> Vec<f32> {
        let (q, y) = roundtrip(ty, x);
        // the scales must be finite f16s too
        assert!(y.iter().all(|v| v.is_finite()), "{}: non-finite output for {:?}…", ty.name(), &x[..4]);
        let _ = q;
        y
    };
    for ty in K_TYPES {
        // zeros → all-zero bytes → zeros
        let (q, y) = roundtrip(ty, &vec![0.0; n]);
        assert!(q.iter().all(|&b| b == 0), "{}: zeros must encode as zero bytes", ty.name());
        assert!(y.iter().all(|&v| v == 0.0));
        let (q, _) = roundtrip(ty, &vec![-0.0; n]);
        assert!(q.iter().all(|&b| b == 0), "{}: -0.0", ty.name());

        // constant rows are represented (almost) exactly
        for c in [1.0f32, -2.5, 0.013, 1000.0] {
            let y = all_finite(ty, &vec![c; n]);
            let worst = y.iter().map(|v| (v - c).abs()).fold(0f32, f32::max);
            assert!(worst <= c.abs() * 0.02, "{}: constant {c} → max err {worst}", ty.name());
        }
        // one zero block next to a normal one
        let mut x = vec![0f32; n];
        for (i, v) in x[256..].iter_mut().enumerate() {
            *v = (i as f32 * 0.37).sin();
        }
        let y = all_finite(ty, &x);
        assert!(y[..256].iter().all(|&v| v == 0.0), "{}: zero block", ty.name());

        // huge / tiny / non-finite magnitudes: no panic, finite output
        for v in [
            1e30f32,
            -1e30,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e-30,
            1e-40,
            -1e-45,
            7e4,
            1e8,
        ] {
            all_finite(ty, &vec![v; n]);
            let mixed: Vec<f32> = (0..n).map(|i| if i % 7 == 3 { v } else { (i as f32 * 0.11).cos() }).collect();
            let y = all_finite(ty, &mixed);
            if v.is_nan() {
                // NaNs are encoded as 0; the other values survive
                let ok: Vec<(f32, f32)> =
                    mixed.iter().zip(&y).filter(|(a, _)| a.is_finite()).map(|(a, b)| (*a, *b)).collect();
                let e = (ok.iter().map(|(a, b)| (a - b).powi(2)).sum::<f32>() / ok.len() as f32).sqrt();
                assert!(e < 0.1, "{}: NaN spoils the block: {e}", ty.name());
            }
        }
        // huge values saturate in the right direction
        let y = all_finite(ty, &vec![f32::MAX; n]);
        assert!(y.iter().all(|&v| v > 1e6), "{}: +huge saturates high", ty.name());
        let y = all_finite(ty, &vec![f32::MIN; n]);
        assert!(y.iter().all(|&v| v < -1e6), "{}: -huge saturates low", ty.name());
        // one outlier among small values
        let mut x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.3).sin() * 1e-3).collect();
        x[100] = 1e6;
        all_finite(ty, &x);
        // random bit patterns (NaN payloads, subnormals, infinities)
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..20 {
            let x: Vec<f32> = (0..n).map(|_| f32::from_bits(rng.random())).collect();
            all_finite(ty, &x);
        }
        // wrong lengths are errors, not panics
        assert!(quantize_row(ty, &[1.0; 255]).is_err());
        assert!(quantize_row(ty, &[]).unwrap().is_empty());
    }
}

#[test]
fn file_type_names_and_numbers() {
    for (s, f, id) in [
        ("q4_k_m", FileType::Q4KM, 15),
        ("Q5_K_M", FileType::Q5KM, 17),
        ("q6_k", FileType::Q6K, 18),
        ("q8_0", FileType::Q8_0, 7),
        ("q4_0", FileType::Q4_0, 2),
    ] {
        assert_eq!(s.parse::<FileType>().unwrap(), f);
        assert_eq!(id.to_string().parse::<FileType>().unwrap(), f);
        assert_eq!(f.id(), id);
        assert_eq!(f.to_string().parse::<FileType>().unwrap(), f);
    }
    for (s, f, id) in [
        ("Q4_1", FileType::Q4_1, 3),
        ("q5_0", FileType::Q5_0, 8),
        ("q5_1", FileType::Q5_1, 9),
        ("f16", FileType::F16, 1),
    ] {
        assert_eq!(s.parse::<FileType>().unwrap(), f);
        assert_eq!(f.id(), id);
    }
    for bad in ["", "q4_k", "q4_k_s", "14", "bf16"] {
        assert!(bad.parse::<FileType>().is_err(), "{bad}");
    }
}

fn info(name: &str, dims: &[u64], ty: GgmlType) -> TensorInfo {
    let n: u64 = dims.iter().product();
    TensorInfo { name: name.into(), dims: dims.to_vec(), ty, offset: 0, n_bytes: ty.bytes_for(n).unwrap_or(0) }
}

/// A header-only Llama layout with `n_layer` layers, rows of `embd` / `ff` values.
fn layout(n_layer: usize, embd: u64, ff: u64, tied: bool) -> GgufFile {
    let f32 = GgmlType::F32;
    let mut t = vec![info("token_embd.weight", &[embd, 320], f32)];
    for i in 0..n_layer {
        t.push(info(&format!("blk.{i}.attn_norm.weight"), &[embd], f32));
        for n in ["attn_q", "attn_k", "attn_v", "attn_output"] {
            t.push(info(&format!("blk.{i}.{n}.weight"), &[embd, embd], f32));
        }
        t.push(info(&format!("blk.{i}.ffn_norm.weight"), &[embd], f32));
        t.push(info(&format!("blk.{i}.ffn_gate.weight"), &[embd, ff], f32));
        t.push(info(&format!("blk.{i}.ffn_up.weight"), &[embd, ff], f32));
        t.push(info(&format!("blk.{i}.ffn_down.weight"), &[ff, embd], f32));
    }
    t.push(info("output_norm.weight", &[embd], f32));
    if !tied {
        t.push(info("output.weight", &[embd, 320], f32));
    }
    t.push(info("rope_freqs.weight", &[16], f32));
    GgufFile { version: 3, tensors: t, alignment: 32, ..Default::default() }
}

fn types_by_name(f: &GgufFile, ft: FileType) -> std::collections::HashMap<String, GgmlType> {
    f.tensors.iter().zip(tensor_types(f, ft)).map(|(t, ty)| (t.name.clone(), ty)).collect()
}

#[test]
fn tensor_type_rules_follow_llama_cpp() {
    use GgmlType::*;
    // 32 layers (Llama 3 8B): use_more_bits(i, 32) = i < 4 || i >= 28 || (i - 4) % 3 == 2
    let more = |i: usize| !(4..28).contains(&i) || (i as i64 - 4).rem_euclid(3) == 2;
    let f = layout(32, 4096, 14336, false);
    for (ft, base, hi) in [(FileType::Q4KM, Q4K, Q6K), (FileType::Q5KM, Q5K, Q6K)] {
        let t = types_by_name(&f, ft);
        assert_eq!(t["token_embd.weight"], base);
        assert_eq!(t["output.weight"], Q6K);
        assert_eq!(t["output_norm.weight"], F32);
        assert_eq!(t["rope_freqs.weight"], F32);
        let mut n_hi = 0;
        for i in 0..32 {
            let want = if more(i) { hi } else { base };
            n_hi += more(i) as usize;
            assert_eq!(t[&format!("blk.{i}.attn_v.weight")], want, "{ft} layer {i} attn_v");
            assert_eq!(t[&format!("blk.{i}.ffn_down.weight")], want, "{ft} layer {i} ffn_down");
            for n in ["attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"] {
                assert_eq!(t[&format!("blk.{i}.{n}.weight")], base);
            }
            assert_eq!(t[&format!("blk.{i}.attn_norm.weight")], F32);
        }
        assert_eq!(n_hi, 16); // 0..4, 28..32 and 6, 9, …, 27
    }
    let t = types_by_name(&f, FileType::Q6K);
    assert!(f.tensors.iter().all(|x| t[&x.name] == if x.dims.len() == 1 { F32 } else { Q6K }));
    let t = types_by_name(&f, FileType::Q8_0);
    assert!(f.tensors.iter().all(|x| t[&x.name] == if x.dims.len() == 1 { F32 } else { Q8_0 }));
    let t = types_by_name(&f, FileType::Q4_0);
    assert_eq!(t["output.weight"], Q6K); // llama.cpp: the output layer of Q4_0 files is Q6_K
    assert_eq!(t["token_embd.weight"], Q4_0);
    assert_eq!(t["blk.5.attn_v.weight"], Q4_0);

    // tied embeddings (SmolLM2: 30 layers, 576 = 2.25 × 256): token_embd is the output layer
    // → Q8_0 since 576 % 256 != 0; every K-quant tensor with 576-long rows falls back to Q8_0,
    // ffn_down rows (1536 = 6 × 256) keep K-quants.
    let f = layout(30, 576, 1536, true);
    let t = types_by_name(&f, FileType::Q4KM);
    assert_eq!(t["token_embd.weight"], Q8_0);
    assert_eq!(t["blk.0.attn_q.weight"], Q8_0);
    assert_eq!(t["blk.0.ffn_down.weight"], Q6K); // 0 < 30/8
    assert_eq!(t["blk.4.ffn_down.weight"], Q4K);
    assert_eq!(t["blk.5.ffn_down.weight"], Q6K); // (5 - 3) % 3 == 2
    let f = layout(2, 256, 512, true);
    assert_eq!(types_by_name(&f, FileType::Q4KM)["token_embd.weight"], Q6K);
    assert_eq!(types_by_name(&f, FileType::Q8_0)["token_embd.weight"], Q8_0);
    assert_eq!(types_by_name(&f, FileType::Q4_0)["token_embd.weight"], Q6K);

    // rows that fit no block of 32 → F16; 1-D tensors keep their type whatever it is
    let mut f = layout(1, 80, 160, false);
    f.tensors[1].ty = F16;
    for ft in FileType::ALL {
        let t = types_by_name(&f, ft);
        assert_eq!(t["blk.0.attn_q.weight"], F16, "{ft}");
        assert_eq!(t["output.weight"], F16, "{ft}");
        assert_eq!(t["blk.0.attn_norm.weight"], F16, "{ft}");
    }
}

/// tiny-f32.gguf: hidden 128, ffn 384, 2 layers — no row is a multiple of 256, so every
/// K-quant choice falls back to Q8_0; the norms and rope_freqs stay F32.
#[test]
fn tiny_f32_file_quantizes_with_fallbacks() {
    use GgmlType::*;
    let path = fixtures().join("tiny-f32.gguf");
    let src = FileSource::open(&path).unwrap();
    let file = GgufFile::read(&src).unwrap();
    let original: Vec<Vec<f32>> = file
        .tensors
        .iter()
        .map(|t| {
            let mut b = vec![0u8; t.n_bytes as usize];
            llama_webgpu::gguf::ByteSource::read_at(&src, t.offset, &mut b).unwrap();
            quant::dequantize(t.ty, &b).unwrap()
        })
        .collect();
    for ft in FileType::ALL {
        let mut out = Vec::new();
        let mut calls = vec![];
        quantize_file(&src, &file, ft, &mut out, |d, t| calls.push((d, t))).unwrap();
        let total: u64 = file.tensors.iter().map(|t| t.n_bytes).sum();
        assert_eq!(calls.last(), Some(&(total, total)));
        assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));

        let q = GgufFile::read(&out).unwrap();
        let wanted = llama_webgpu::quantize::wanted_types(&file, ft);
        assert_eq!(q.get("general.file_type").and_then(Value::as_u64), Some(ft.id() as u64));
        assert_eq!(q.get("general.quantization_version").and_then(Value::as_u64), Some(2));
        // every other key is copied, in order
        let keys = |f: &GgufFile| {
            f.metadata
                .iter()
                .map(|(k, _)| k.clone())
                .filter(|k| k != "general.quantization_version")
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&q), keys(&file));
        assert_eq!(q.get("tokenizer.ggml.tokens"), file.get("tokenizer.ggml.tokens"));
        assert_eq!(q.tensors.len(), file.tensors.len());
        for (i, (a, b)) in file.tensors.iter().zip(&q.tensors).enumerate() {
            assert_eq!((&a.name, &a.dims), (&b.name, &b.dims));
            let want = match (a.dims.len(), ft.base_type()) {
                (1, _) => F32,
                (_, F16) => F16, // unquantized file types keep every matrix F16
                // 32-value formats fit rows of 128; the output's Q6_K does not (128 % 256) → Q8_0
                (_, Q4_0 | Q4_1 | Q5_0 | Q5_1) if a.name == "output.weight" => Q8_0,
                (_, ty @ (Q4_0 | Q4_1 | Q5_0 | Q5_1)) => ty,
                // the low-bit mixes: llama.cpp's own fallbacks for 128-wide rows (its
                // tensor_type_fallback), applied to what the rules chose (tested against
                // llama-quantize in tensor_type_rules_follow_llama_cpp)
                (_, Q2K | Q3K | IQ4NL | IQ4XS) => match wanted[i] {
                    Q2K | Q3K => Q4_0,
                    IQ4XS | IQ4NL => IQ4NL,
                    _ => Q8_0,
                },
                _ => Q8_0,
            };
            assert_eq!(b.ty, want, "{ft}: {}", a.name);
            let mut raw = vec![0u8; b.n_bytes as usize];
            llama_webgpu::gguf::ByteSource::read_at(&out, b.offset, &mut raw).unwrap();
            let y = quant::dequantize(b.ty, &raw).unwrap();
            if b.ty == F32 {
                assert_eq!(y, original[i], "{}: copied", a.name);
            } else {
                let e = rel_rmse(&original[i], &y);
                // 4 / 5 bits per value vs 8 (Q8_0) and 16 (F16)
                let lim = match b.ty {
                    Q4_0 | Q4_1 | IQ4NL => 0.15, // 4 bits (IQ4_NL: 16 non-uniform levels)
                    Q5_0 | Q5_1 => 0.07,
                    _ => 0.01,
                };
                assert!(e < lim, "{ft}: {} ({}) relative RMSE {e}", a.name, b.ty.name());
            }
        }
        // the result reads as a model
        llama_webgpu::gguf::LlamaConfig::from_gguf(&q).unwrap();
    }
    // quantizing a file to its own types copies the bytes
    let mut a = Vec::new();
    quantize_file(&src, &file, FileType::Q8_0, &mut a, |_, _| {}).unwrap();
    let qa = GgufFile::read(&a).unwrap();
    let mut b = Vec::new();
    quantize_file(&a, &qa, FileType::Q8_0, &mut b, |_, _| {}).unwrap();
    assert_eq!(a, b);
}

/// Writes a GGUF with our K-quant bytes; llama.cpp's `gguf` package (GGUFReader +
/// gguf.quants.dequantize) must read exactly the values our dequantizer reads, and those
/// values must meet the error bounds.
#[test]
fn kquant_bytes_match_gguf_python_package() {
    let dir = tmp_dir("gguf-py");
    let mut rng = StdRng::seed_from_u64(4);
    let (cols, rows) = (1024u64, 12u64);
    let mut xs = vec![];
    let mut tensors = vec![];
    let mut data = vec![];
    for ty in K_TYPES {
        let x = gaussian(&mut rng, (cols * rows) as usize);
        data.push(quantize_row(ty, &x).unwrap());
        tensors.push((format!("w_{}", ty.name()), vec![cols, rows], ty));
        xs.push(x);
    }
    // one tensor of constant and zero rows, one of mixed magnitudes
    let mut edge = vec![0f32; 4 * cols as usize];
    edge[..cols as usize].fill(0.75);
    edge[cols as usize..2 * cols as usize].iter_mut().enumerate().for_each(|(i, v)| *v = (i as f32).sin() * 1e4);
    edge[3 * cols as usize..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = if i % 3 == 0 { f32::NAN } else { (i as f32).cos() * 1e-5 });
    for ty in K_TYPES {
        data.push(quantize_row(ty, &edge).unwrap());
        tensors.push((format!("edge_{}", ty.name()), vec![cols, 4], ty));
    }
    let names: Vec<String> = tensors.iter().map(|t| t.0.clone()).collect();
    let path = dir.join("kquants.gguf");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let md = vec![("general.architecture".to_string(), Value::String("test".into()))];
        let mut w = GgufWriter::new(md, tensors.clone(), 32).unwrap();
        w.write_header(&mut f).unwrap();
        for d in &data {
            w.write_tensor_data(&mut f, d).unwrap();
        }
        w.finish().unwrap();
    }
    let script = r#"
import sys, numpy as np, gguf
from pathlib import Path
path, out = Path(sys.argv[1]), Path(sys.argv[2])
r = gguf.GGUFReader(str(path))
for t in r.tensors:
    v = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
    (out / (t.name + ".f32")).write_bytes(v.tobytes())
    print(t.name, t.tensor_type.name, list(map(int, t.shape)), v.size)
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .arg(&dir)
        .output()
        .expect("python3 (with `pip install gguf numpy`) is needed for this test");
    assert!(o.status.success(), "gguf python failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let listing = String::from_utf8_lossy(&o.stdout);
    for (i, name) in names.iter().enumerate() {
        let (_, dims, ty) = &tensors[i];
        assert!(listing.contains(&format!("{name} {} [{}, {}]", ty.name(), dims[0], dims[1])), "{listing}");
        let theirs: Vec<f32> = std::fs::read(dir.join(format!("{name}.f32")))
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let ours = quant::dequantize(*ty, &data[i]).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name}");
        let same = ours.iter().zip(&theirs).all(|(a, b)| a.to_bits() == b.to_bits() || (*a == 0.0 && *b == 0.0));
        assert!(same, "{name}: our dequantization differs from gguf.quants.dequantize");
        assert!(theirs.iter().all(|v| v.is_finite()), "{name}");
        if i < 3 {
            let e = rel_rmse(&xs[i], &theirs);
            println!("{name}: relative RMSE on gguf's values {e:.5} (bound {:.5})", bound(*ty));
            assert!(e < bound(*ty), "{name}: {e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Prototype of the fixture step of tests/make_fixtures.py (used when the CLI has no
/// `quantize` command): TINY256_F32 (default tests/fixtures/tiny256-f32.gguf) →
/// KQUANT_OUT/tiny-{q4_k_m,q5_k_m,q6_k}.gguf (default tests/fixtures).
#[test]
#[ignore]
fn make_kquant_fixtures() {
    let input =
        std::env::var_os("TINY256_F32").map(PathBuf::from).unwrap_or_else(|| fixtures().join("tiny256-f32.gguf"));
    let out_dir = std::env::var_os("KQUANT_OUT").map(PathBuf::from).unwrap_or_else(fixtures);
    let src = FileSource::open(&input).unwrap();
    let file = GgufFile::read(&src).unwrap();
    for ft in [FileType::Q4KM, FileType::Q5KM, FileType::Q6K] {
        let path = out_dir.join(format!("tiny-{ft}.gguf"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        quantize_file(&src, &file, ft, &mut f, |_, _| {}).unwrap();
        std::io::Write::flush(&mut f).unwrap();
        println!("wrote {}", path.display());
    }
}

/// Bit-exact with llama.cpp: tests/make_fixtures.py quantized tiny256 with llama.cpp's own
/// `llama_model_quantize` (llama-cpp-python 0.3.36) and found every block of the K-quant
/// fixtures identical to ours (recorded in tiny.json). Here: requantizing the float source of
/// blk.0.attn_k.weight must give exactly the bytes those files hold (Q4_K / Q5_K / Q6_K).
#[test]
fn kquant_bytes_equal_llama_cpp_fixtures() {
    let (shape, x) = common::read_npy(&fixtures().join("tiny256-attn_k.npy"));
    assert_eq!(shape, vec![128, 256]);
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(fixtures().join("tiny.json")).unwrap()).unwrap();
    for (name, ty) in [("q4_k_m", GgmlType::Q4K), ("q5_k_m", GgmlType::Q5K), ("q6_k", GgmlType::Q6K)] {
        let entry = &j["types"][name];
        let cmp = &entry["llama_cpp_quantize_comparison"];
        if cmp.is_object() {
            assert_eq!(cmp["identical_blocks"], cmp["blocks"], "{name}: fixture differs from llama.cpp's quantizer");
        }
        assert_eq!(entry["tensor_types"]["blk.0.attn_k.weight"], ty.name());
        let src = FileSource::open(fixtures().join(format!("tiny-{name}.gguf"))).unwrap();
        let file = GgufFile::read(&src).unwrap();
        let t = file.tensor("blk.0.attn_k.weight").unwrap();
        assert_eq!(t.ty, ty);
        let mut want = vec![0u8; t.n_bytes as usize];
        llama_webgpu::gguf::ByteSource::read_at(&src, t.offset, &mut want).unwrap();
        let ours = quantize_row(ty, &x).unwrap();
        assert!(ours == want, "{name}: our {} bytes differ from the fixture's (llama.cpp's)", ty.name());
        // and the whole file's type mix is llama.cpp's
        let want_types = tensor_types(&file, name.parse().unwrap());
        for (t, w) in file.tensors.iter().zip(want_types) {
            assert_eq!(t.ty, w, "{name}: {}", t.name);
            assert_eq!(entry["tensor_types"][&t.name], t.ty.name());
        }
    }
}

/// The fixtures llama.cpp's own `llama-quantize` made (tests/make_quant_fixtures.py, no
/// importance matrix): requantizing blk.0.attn_k.weight's float source gives exactly their
/// Q2_K / Q3_K / IQ4_NL / IQ4_XS bytes, and every tensor's type is the one our rules pick.
#[test]
fn low_bit_bytes_equal_llama_quantize_fixtures() {
    let (shape, x) = common::read_npy(&fixtures().join("tiny256-attn_k.npy"));
    assert_eq!(shape, vec![128, 256]);
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(fixtures().join("tiny.json")).unwrap()).unwrap();
    for (name, ty) in [
        ("q2_k", GgmlType::Q2K),
        ("q3_k_s", GgmlType::Q3K),
        ("q3_k_m", GgmlType::Q3K),
        ("iq4_nl", GgmlType::IQ4NL),
        ("iq4_xs", GgmlType::IQ4XS),
    ] {
        let entry = &j["llama_quantize_types"][name];
        assert_eq!(entry["tensor_types"]["blk.0.attn_k.weight"], ty.name());
        let src = FileSource::open(fixtures().join(format!("tiny-{name}.gguf"))).unwrap();
        let file = GgufFile::read(&src).unwrap();
        let t = file.tensor("blk.0.attn_k.weight").unwrap();
        assert_eq!(t.ty, ty);
        let mut want = vec![0u8; t.n_bytes as usize];
        llama_webgpu::gguf::ByteSource::read_at(&src, t.offset, &mut want).unwrap();
        let ours = quantize_row(ty, &x).unwrap();
        let bs = ty.type_size() as usize;
        let same = ours.chunks(bs).zip(want.chunks(bs)).filter(|(a, b)| a == b).count();
        assert!(ours == want, "{name}: {same} of {} {} blocks equal llama-quantize's", want.len() / bs, ty.name());
        let want_types = tensor_types(&file, name.parse().unwrap());
        for (t, w) in file.tensors.iter().zip(want_types) {
            assert_eq!(t.ty, w, "{name}: {}", t.name);
            assert_eq!(entry["tensor_types"][&t.name], t.ty.name());
        }
    }
}

/// Speed (run with --release): `cargo test --release --test quantize -- --ignored bench --nocapture`.
#[test]
#[ignore]
fn bench_quantize_speed() {
    let mut rng = StdRng::seed_from_u64(9);
    let x = gaussian(&mut rng, 1 << 22);
    for ty in K_TYPES {
        let t = std::time::Instant::now();
        let q = quantize_row(ty, &x).unwrap();
        let s = t.elapsed().as_secs_f64();
        println!("{}: {:.1} M values/s on one thread ({} bytes)", ty.name(), x.len() as f64 / s / 1e6, q.len());
    }
}

/// Requantizing K-quant input (tiny-q6_k.gguf → q4_k_m, q8_0) goes through dequantize; the
/// result is close to the input's values and has llama.cpp's type mix. Tensors of a type we
/// cannot decode are an error naming the tensor (unless they are copied as they are).
#[test]
fn requantize_kquant_input_and_reject_undecodable() {
    use GgmlType::*;
    let src = FileSource::open(fixtures().join("tiny-q6_k.gguf")).unwrap();
    let file = GgufFile::read(&src).unwrap();
    for (ft, lim) in [(FileType::Q4KM, 0.08), (FileType::Q8_0, 0.01)] {
        let mut out = Vec::new();
        quantize_file(&src, &file, ft, &mut out, |_, _| {}).unwrap();
        let q = GgufFile::read(&out).unwrap();
        for (a, b) in file.tensors.iter().zip(&q.tensors) {
            let read = |s: &dyn llama_webgpu::gguf::ByteSource, t: &TensorInfo| {
                let mut raw = vec![0u8; t.n_bytes as usize];
                s.read_at(t.offset, &mut raw).unwrap();
                quant::dequantize(t.ty, &raw).unwrap()
            };
            let (x, y) = (read(&src, a), read(&out, b));
            if a.ty == b.ty {
                assert_eq!(x, y, "{}: same type is copied", a.name);
            } else {
                assert!(rel_rmse(&x, &y) < lim, "{ft} {}: {}", a.name, rel_rmse(&x, &y));
            }
        }
        let t = |n: &str| q.tensor(n).unwrap().ty;
        if ft == FileType::Q4KM {
            assert_eq!((t("blk.0.attn_v.weight"), t("blk.1.attn_v.weight"), t("output.weight")), (Q4K, Q6K, Q6K));
        }
    }

    // a Q8_1 weight (no decoder here) that must be converted → UnsupportedType naming it
    let md = vec![("general.architecture".to_string(), Value::String("test".into()))];
    let tensors =
        vec![("blk.0.attn_q.weight".to_string(), vec![32u64, 2], Q8_1), ("n.weight".to_string(), vec![32u64], Q8_1)];
    let mut w = GgufWriter::new(md, tensors, 32).unwrap();
    let mut buf = Vec::new();
    w.write_header(&mut buf).unwrap();
    w.write_tensor_data(&mut buf, &[0u8; 72]).unwrap();
    w.write_tensor_data(&mut buf, &[0u8; 36]).unwrap();
    let f = GgufFile::read(&buf).unwrap();
    let err = quantize_file(&buf, &f, FileType::Q8_0, &mut Vec::new(), |_, _| {}).unwrap_err();
    assert!(
        matches!(&err, llama_webgpu::Error::UnsupportedType { tensor, .. } if tensor == "blk.0.attn_q.weight"),
        "{err}"
    );
}

/// The 32-value formats and the float types against llama.cpp's `gguf` package, which
/// quantizes them like ggml's `quantize_row_*_ref`: our bytes must equal its bytes, and our
/// decode of them must equal its `dequantize` bit for bit.
#[test]
fn simple_formats_match_gguf_python_package() {
    let dir = tmp_dir("gguf-py-simple");
    let mut rng = StdRng::seed_from_u64(9);
    let mut x = gaussian(&mut rng, 32 * 64);
    x[..32].fill(0.0); // an all-zero block
    x[32..64].fill(0.25); // a constant block
    std::fs::write(dir.join("x.f32"), bytemuck::cast_slice(&x)).unwrap();
    let types = [
        ("Q4_0", GgmlType::Q4_0),
        ("Q4_1", GgmlType::Q4_1),
        ("Q5_0", GgmlType::Q5_0),
        ("Q5_1", GgmlType::Q5_1),
        ("Q8_0", GgmlType::Q8_0),
        ("BF16", GgmlType::BF16),
        ("F16", GgmlType::F16),
    ];
    let script = r#"
import sys, numpy as np, gguf
from pathlib import Path
d = Path(sys.argv[1])
x = np.fromfile(d / "x.f32", dtype=np.float32).reshape(-1, 32)
for name in sys.argv[2:]:
    qt = gguf.GGMLQuantizationType[name]
    q = gguf.quants.quantize(x, qt)
    (d / (name + ".q")).write_bytes(q.tobytes())
    ours = np.fromfile(d / (name + ".ours"), dtype=np.uint8).reshape(x.shape[0], -1)
    v = gguf.quants.dequantize(ours, qt).astype(np.float32).reshape(-1)
    (d / (name + ".deq")).write_bytes(v.tobytes())
"#;
    for (name, ty) in types {
        std::fs::write(dir.join(format!("{name}.ours")), quantize_row(ty, &x).unwrap()).unwrap();
    }
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&dir)
        .args(types.iter().map(|t| t.0))
        .output()
        .expect("python3 (with `pip install gguf numpy`) is needed for this test");
    assert!(o.status.success(), "gguf python failed:\n{}", String::from_utf8_lossy(&o.stderr));
    for (name, ty) in types {
        let ours = std::fs::read(dir.join(format!("{name}.ours"))).unwrap();
        let theirs = std::fs::read(dir.join(format!("{name}.q"))).unwrap();
        assert_eq!(ours, theirs, "{name}: our encoder differs from gguf.quants.quantize");
        let deq: Vec<f32> = std::fs::read(dir.join(format!("{name}.deq")))
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mine = quant::dequantize(ty, &ours).unwrap();
        assert_eq!(mine.len(), deq.len(), "{name}");
        assert!(mine.iter().zip(&deq).all(|(a, b)| a.to_bits() == b.to_bits()), "{name}: decode differs from gguf");
        let e = rel_rmse(&x, &mine);
        assert!(e < 0.2, "{name}: relative RMSE {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
