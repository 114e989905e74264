//! The portable fallback: the reference decode, then a dot product (also the check for the
//! SIMD kernels).

use super::*;

pub fn f32_dot(a: &[f32], b: &[f32]) -> f32 {
    // 8 partial sums (it vectorizes), each a chain per 64 values, then the chains' sums added
    // up: two levels, as the 4-lane tile (`lanes4::tile`) and for the same reason
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    loop {
        let mut blk = [0f32; 8];
        let mut steps = 0;
        for (x, y) in (&mut ca).zip(&mut cb).take(8) {
            for k in 0..8 {
                blk[k] += x[k] * y[k];
            }
            steps += 1;
        }
        for k in 0..8 {
            acc[k] += blk[k];
        }
        if steps < 8 {
            break;
        }
    }
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Decodes one block at a time (the reference values) and dots it with its part of `x`.
pub fn rows(ty: GgmlType, w: &[u8], rb: usize, x: &[f32], out: &mut [f32]) {
    let (bs, ts) = (ty.block_size() as usize, ty.type_size() as usize);
    // F32/F16/BF16 blocks are one value: decode 256 at a time
    let per = if bs == 1 { 256 } else { 1 };
    let mut buf = [0f32; 256];
    for (o, row) in out.iter_mut().zip(w.chunks_exact(rb)) {
        let mut acc = 0f32;
        for (blk, xb) in row.chunks(ts * per).zip(x.chunks(bs * per)) {
            let n = xb.len();
            decode_row(ty, blk, &mut buf[..n]);
            acc += f32_dot(&buf[..n], xb);
        }
        *o = acc;
    }
}
