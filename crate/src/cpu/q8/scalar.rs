//! The reference integer dots, as ggml's generic `ggml_vec_dot_*_q8_*`: per block an exact
//! integer `Σ q_w · q_x` (K-quants: weighted by the 6-bit / 8-bit sub-block scales), then
//! `d_w · d_x ·` that sum in f32, and the mins through the activations' block sums.

use super::Q8Row;
use crate::gguf::GgmlType;
use crate::quant::blocks::{f16_at, scale_min_k4};

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// One row's dot (`row` holds whole blocks covering `a`; the caller checked the sizes).
pub fn dot(ty: GgmlType, row: &[u8], a: Q8Row) -> f32 {
    use GgmlType::*;
    match ty {
        Q8_0 => b32(row, 34, a, |b, y| {
            let s = b[2..34].iter().zip(y).map(|(&q, &y)| q as i8 as i32 * y as i32).sum();
            (f16_at(b, 0), s, 0.0)
        }),
        Q4_0 | Q4_1 => {
            let (ts, qs, min) = if ty == Q4_0 { (18, 2, false) } else { (20, 4, true) };
            b32(row, ts, a, |b, y| {
                let c = if min { 0 } else { 8 };
                let mut s = 0i32;
                for j in 0..16 {
                    let q = b[qs + j];
                    s += ((q & 0xF) as i32 - c) * y[j] as i32 + ((q >> 4) as i32 - c) * y[j + 16] as i32;
                }
                (f16_at(b, 0), s, if min { f16_at(b, 2) } else { 0.0 })
            })
        }
        Q5_0 | Q5_1 => {
            let (ts, qh_at, qs, min) = if ty == Q5_0 { (22, 2, 6, false) } else { (24, 4, 8, true) };
            b32(row, ts, a, |b, y| {
                let c = if min { 0 } else { 16 };
                let qh = u32_at(b, qh_at);
                let mut s = 0i32;
                for j in 0..16 {
                    let q = b[qs + j];
                    let h0 = ((qh >> j) << 4) & 0x10;
                    let h1 = (qh >> (j + 12)) & 0x10;
                    let x0 = ((q & 0xF) as u32 | h0) as i32 - c;
                    let x1 = ((q >> 4) as u32 | h1) as i32 - c;
                    s += x0 * y[j] as i32 + x1 * y[j + 16] as i32;
                }
                (f16_at(b, 0), s, if min { f16_at(b, 2) } else { 0.0 })
            })
        }
        Q4K | Q5K => q45_k(ty == Q5K, row, a),
        Q6K => q6_k(row, a),
        _ => 0.0,
    }
}

/// The 32-value formats: `blk(block, y) = (d_w, Σ q·y, m_w)`; `Σ d_w·d_y·Σqy + m_w·d_y·Σy`.
fn b32(row: &[u8], ts: usize, a: Q8Row, blk: impl Fn(&[u8], &[i8]) -> (f32, i32, f32)) -> f32 {
    let mut sumf = 0f32;
    for (i, b) in row.chunks_exact(ts).enumerate() {
        let (dw, s, m) = blk(b, &a.qs[32 * i..][..32]);
        let dy = a.d[i];
        sumf += s as f32 * (dw * dy) + m * (dy * a.sums[i] as f32);
    }
    sumf
}

/// Q4_K / Q5_K: `d·d_y·Σ_s sc_s·Σ q·y − dmin·d_y·Σ_s m_s·Σ_{32s..} y`.
fn q45_k(q5: bool, row: &[u8], a: Q8Row) -> f32 {
    let (ts, qs_at) = if q5 { (176, 48) } else { (144, 16) };
    let mut sumf = 0f32;
    for (i, b) in row.chunks_exact(ts).enumerate() {
        let y = &a.qs[256 * i..][..256];
        let bsums = &a.sums[16 * i..][..16];
        let (mut isum, mut mins) = (0i32, 0i32);
        for s in 0..8 {
            let (sc, m) = scale_min_k4(s, &b[4..16]);
            let chunk = &b[qs_at + 32 * (s / 2)..][..32];
            let mut t = 0i32;
            for l in 0..32 {
                let mut q = if s % 2 == 0 { chunk[l] & 0xF } else { chunk[l] >> 4 } as i32;
                if q5 && b[16 + l] & (1 << s) != 0 {
                    q += 16;
                }
                t += q * y[32 * s + l] as i32;
            }
            isum += sc as i32 * t;
            mins += m as i32 * (bsums[2 * s] as i32 + bsums[2 * s + 1] as i32);
        }
        let dy = a.d[i];
        sumf += (f16_at(b, 0) * dy) * isum as f32 - (f16_at(b, 2) * dy) * mins as f32;
    }
    sumf
}

/// Q6_K: `d·d_y·Σ_g sc_g·Σ (q − 32)·y` per 16-value group `g`.
fn q6_k(row: &[u8], a: Q8Row) -> f32 {
    let mut sumf = 0f32;
    for (i, b) in row.chunks_exact(210).enumerate() {
        let y = &a.qs[256 * i..][..256];
        let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
        let mut isum = 0i32;
        let mut g = [0i32; 16];
        // value 128h + 32k + l: low 4 bits from ql[64h + l (+32 for odd k)] (low nibble for
        // k < 2, else high), high 2 bits from bits 2k.. of qh[32h + l]
        for h in 0..2 {
            for k in 0..4 {
                for l in 0..32 {
                    let lq = ql[64 * h + l + 32 * (k % 2)];
                    let lo = if k < 2 { lq & 0xF } else { lq >> 4 };
                    let hi = (qh[32 * h + l] >> (2 * k)) & 3;
                    let v = 128 * h + 32 * k + l;
                    g[v / 16] += ((lo | hi << 4) as i32 - 32) * y[v] as i32;
                }
            }
        }
        for (s, gs) in sc.iter().zip(g) {
            isum += *s as i8 as i32 * gs;
        }
        sumf += (f16_at(b, 208) * a.d[i]) * isum as f32;
    }
    sumf
}

/// `out[r] = row_r · a` (sizes checked by the caller).
pub fn rows(ty: GgmlType, w: &[u8], rb: usize, a: Q8Row, out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(rb)) {
        *o = dot(ty, row, a);
    }
}
