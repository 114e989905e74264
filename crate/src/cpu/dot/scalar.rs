//! The portable fallback: the reference decode, then a dot product (also the check for the
//! SIMD kernels).

use super::*;

pub fn f32_dot(a: &[f32], b: &[f32]) -> f32 {
    // in f64 (products of f32 are exact there): the portable path is the reference the SIMD
    // kernels are checked against, and in f32 its single chains put Q2_K's and Q3_K_S's
    // prefill at 1.3e-5 and 1.004e-5 of std from transformers; 4 partial sums vectorize
    let mut acc = [0f64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..4 {
            acc[k] += x[k] as f64 * y[k] as f64;
        }
    }
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| *x as f64 * *y as f64).sum();
    ((acc[0] + acc[1]) + (acc[2] + acc[3]) + tail) as f32
}

/// Decodes one block at a time (the reference values) and dots it with its part of `x`.
pub fn rows(ty: GgmlType, w: &[u8], rb: usize, x: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(rb)) {
        *o = row_dots(ty, row, [x])[0];
    }
}

/// One row's dot products with `T` tokens (all as long as the row): each block decoded once
/// for all of them, each token's sum the one `T = 1` gives (the 4-lane levels' F16/BF16).
pub fn row_dots<const T: usize>(ty: GgmlType, row: &[u8], x: [&[f32]; T]) -> [f32; T] {
    let (bs, ts) = (ty.block_size() as usize, ty.type_size() as usize);
    // F32/F16/BF16 blocks are one value: decode 256 at a time
    let per = if bs == 1 { 256 } else { 1 };
    let mut buf = [0f32; 256];
    let mut acc = [0f32; T];
    for (i, blk) in row.chunks(ts * per).enumerate() {
        let xb = x.map(|x| x.get(i * bs * per..).unwrap_or(&[]));
        let n = xb.iter().map(|x| x.len()).min().unwrap_or(0).min(bs * per);
        if n == 0 {
            break;
        }
        decode_row(ty, blk, &mut buf[..n]);
        for (a, xb) in acc.iter_mut().zip(xb) {
            *a += f32_dot(&buf[..n], &xb[..n]);
        }
    }
    acc
}
