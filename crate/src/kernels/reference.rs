//! Plain CPU versions of every kernel and of the GGUF block formats (as ggml defines
//! them). The GPU kernels are tested against these; they are written for clarity, not speed.

use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use half::{bf16, f16};

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `raw` (whole blocks of `ty`) to f32.
pub fn dequantize(ty: GgmlType, raw: &[u8]) -> Result<Vec<f32>> {
    let bs = ty.type_size() as usize;
    if !raw.len().is_multiple_of(bs) {
        return Err(Error::Corrupt(format!("{} data of {} bytes is not whole blocks", ty.name(), raw.len())));
    }
    let mut out = Vec::with_capacity(raw.len() / bs * ty.block_size() as usize);
    for b in raw.chunks_exact(bs) {
        match ty {
            GgmlType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            GgmlType::F16 => out.push(f16_at(b, 0)),
            GgmlType::BF16 => out.push(bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            GgmlType::Q8_0 => {
                let d = f16_at(b, 0);
                out.extend(b[2..34].iter().map(|&q| d * q as i8 as f32));
            }
            GgmlType::Q4_0 | GgmlType::Q4_1 => {
                let (d, m, qs) = match ty {
                    GgmlType::Q4_0 => (f16_at(b, 0), None, &b[2..18]),
                    _ => (f16_at(b, 0), Some(f16_at(b, 2)), &b[4..20]),
                };
                let val = |q: u8| match m {
                    None => d * (q as f32 - 8.0),
                    Some(m) => d * q as f32 + m,
                };
                out.extend(qs.iter().map(|&q| val(q & 15)));
                out.extend(qs.iter().map(|&q| val(q >> 4)));
            }
            GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => {
                for sb in super::kquant::sub_blocks(ty, b).into_iter().flatten() {
                    out.extend(super::kquant::values(&sb));
                }
            }
            _ => return Err(Error::UnsupportedType { tensor: "?".into(), ty: ty.id(), name: ty.name().into() }),
        }
    }
    Ok(out)
}

/// Quantizes `x` (length a multiple of the block size) like ggml's reference quantizers.
pub fn quantize(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>> {
    let n = ty.block_size() as usize;
    if !x.len().is_multiple_of(n) {
        return Err(Error::InvalidArgument(format!("{} values are not whole {} blocks", x.len(), ty.name())));
    }
    let mut out = Vec::new();
    for blk in x.chunks_exact(n) {
        match ty {
            GgmlType::F32 => out.extend(blk[0].to_le_bytes()),
            GgmlType::F16 => out.extend(f16::from_f32(blk[0]).to_le_bytes()),
            GgmlType::BF16 => out.extend(bf16::from_f32(blk[0]).to_le_bytes()),
            GgmlType::Q8_0 => {
                let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(f16::from_f32(d).to_le_bytes());
                out.extend(blk.iter().map(|v| (v * id).round() as i8 as u8));
            }
            GgmlType::Q4_0 => {
                // the signed value of largest magnitude maps to -8
                let max = blk.iter().fold(0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(f16::from_f32(d).to_le_bytes());
                let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
                out.extend((0..16).map(|j| q(blk[j]) | q(blk[j + 16]) << 4));
            }
            GgmlType::Q4_1 => {
                let min = blk.iter().fold(f32::INFINITY, |a, &v| a.min(v));
                let max = blk.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(f16::from_f32(d).to_le_bytes());
                out.extend(f16::from_f32(min).to_le_bytes());
                let q = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
                out.extend((0..16).map(|j| q(blk[j]) | q(blk[j + 16]) << 4));
            }
            _ => return Err(Error::UnsupportedType { tensor: "?".into(), ty: ty.id(), name: ty.name().into() }),
        }
    }
    Ok(out)
}

/// `y[t, r] = Σ_k w[r, k] x[t, k]` with `w` [rows, cols], `x` [n, cols].
pub fn matmul(w: &[f32], rows: usize, cols: usize, x: &[f32], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; n * rows];
    for t in 0..n {
        for r in 0..rows {
            let wr = &w[r * cols..(r + 1) * cols];
            let xt = &x[t * cols..(t + 1) * cols];
            y[t * rows + r] = wr.iter().zip(xt).map(|(a, b)| (*a as f64) * (*b as f64)).sum::<f64>() as f32;
        }
    }
    y
}

pub fn rmsnorm(x: &[f32], g: &[f32], eps: f32) -> Vec<f32> {
    let dim = g.len();
    x.chunks(dim)
        .flat_map(|row| {
            let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / dim as f64;
            let s = 1.0 / (ms + eps as f64).sqrt();
            row.iter().zip(g).map(move |(v, w)| (*v as f64 * s * *w as f64) as f32)
        })
        .collect()
}

/// inv_freq[j] = base^(−2j/d) / rope_freqs[j] (rope_freqs: Llama 3.1 scaling factors).
pub fn rope_inv_freq(head_dim: usize, base: f32, rope_freqs: Option<&[f32]>) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|j| {
            let f = 1.0 / (base as f64).powf(2.0 * j as f64 / head_dim as f64);
            let s = rope_freqs.and_then(|r| r.get(j)).copied().unwrap_or(1.0) as f64;
            (f / s) as f32
        })
        .collect()
}

/// Rotates adjacent pairs of each head of `x` [n, heads, head_dim] at positions pos0 + t.
pub fn rope(x: &mut [f32], heads: usize, head_dim: usize, pos0: usize, inv_freq: &[f32]) {
    for (t, tok) in x.chunks_mut(heads * head_dim).enumerate() {
        for head in tok.chunks_mut(head_dim) {
            for j in 0..head_dim / 2 {
                let a = (pos0 + t) as f64 * inv_freq[j] as f64;
                let (s, c) = a.sin_cos();
                let (x0, x1) = (head[2 * j] as f64, head[2 * j + 1] as f64);
                head[2 * j] = (x0 * c - x1 * s) as f32;
                head[2 * j + 1] = (x0 * s + x1 * c) as f32;
            }
        }
    }
}

/// Causal GQA attention: q [n, n_head, hd] at positions pos0.., k/v [pos0 + n, n_kv, hd].
pub fn attention(q: &[f32], k: &[f32], v: &[f32], n_head: usize, n_kv: usize, hd: usize, pos0: usize) -> Vec<f32> {
    let n = q.len() / (n_head * hd);
    let mut o = vec![0f32; q.len()];
    let scale = 1.0 / (hd as f64).sqrt();
    for t in 0..n {
        for h in 0..n_head {
            let kvh = h / (n_head / n_kv);
            let qv = &q[(t * n_head + h) * hd..][..hd];
            let keys = pos0 + t + 1;
            let s: Vec<f64> = (0..keys)
                .map(|j| {
                    qv.iter().zip(&k[(j * n_kv + kvh) * hd..][..hd]).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
                        * scale
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            for d in 0..hd {
                let acc: f64 = (0..keys).map(|j| e[j] * v[(j * n_kv + kvh) * hd + d] as f64).sum();
                o[(t * n_head + h) * hd + d] = (acc / sum) as f32;
            }
        }
    }
    o
}

pub fn swiglu(g: &[f32], u: &[f32]) -> Vec<f32> {
    g.iter().zip(u).map(|(a, b)| a / (1.0 + (-a).exp()) * b).collect()
}
