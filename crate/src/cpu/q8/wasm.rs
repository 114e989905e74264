//! wasm integer dots: simd128 (`i16x8_extmul_*_i8x16`, then pairwise adds to i32), or, in a
//! build with `-C target-feature=+relaxed-simd`, `i32x4_relaxed_dot_i8x16_i7x16_add` (4 byte
//! products summed into each i32 lane in one instruction; Chrome 114+). The relaxed dot is exact
//! when its second operand is 7-bit: the weights' unsigned quants (≤ 63) are, Q8_0's signed
//! ones are not, so Q8_0 keeps the simd128 products. Centred formats dot the unsigned quants and
//! subtract `c·Σq_x` through the activations' block sums (Q6_K's 32 per 16-value group).

use super::Q8Row;
use crate::gguf::GgmlType;
use crate::quant::blocks::f16_at;
use std::arch::wasm32::*;

/// `acc + Σ y·q` over 16 bytes (i32 lanes), `y` signed, `q` in `0..128`.
#[inline]
#[target_feature(enable = "simd128")]
fn dot16(acc: v128, y: v128, q: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        i32x4_relaxed_dot_i8x16_i7x16_add(y, q, acc)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        dot16_signed(acc, y, q)
    }
}

/// `acc + Σ y·q` over 16 signed bytes each.
#[inline]
#[target_feature(enable = "simd128")]
fn dot16_signed(acc: v128, y: v128, q: v128) -> v128 {
    let lo = i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(y, q));
    let hi = i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(y, q));
    i32x4_add(acc, i32x4_add(lo, hi))
}

#[inline]
#[target_feature(enable = "simd128")]
fn hsum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v)
        .wrapping_add(i32x4_extract_lane::<1>(v))
        .wrapping_add(i32x4_extract_lane::<2>(v))
        .wrapping_add(i32x4_extract_lane::<3>(v))
}

#[inline]
#[target_feature(enable = "simd128")]
fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
}

#[inline]
#[target_feature(enable = "simd128")]
unsafe fn ld(p: *const u8) -> v128 {
    unsafe { v128_load(p as *const v128) }
}

/// 16 bits of `qh` from bit `first` as 16 bytes of 0x10 (set) or 0.
#[inline]
#[target_feature(enable = "simd128")]
fn bits16(qh: u32, first: u32) -> v128 {
    let v = u32x4_splat(qh >> first);
    let bytes = i8x16_swizzle(v, i8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    let m = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    v128_and(i8x16_eq(v128_and(bytes, m), m), u8x16_splat(0x10))
}

/// The 32-value formats, as the AVX2 kernel: `blk(b, y0, y1) = (d_w, Σqy i32 lanes, c_w, k)`;
/// `k·Σq_y` is subtracted from the integer sum (the centre of Q4_0 and Q5_0), `c_w·d_y·Σq_y`
/// added in f32 (the min of Q4_1 and Q5_1).
#[inline]
#[target_feature(enable = "simd128")]
unsafe fn b32(nb: usize, a: Q8Row, blk: impl Fn(usize, v128, v128) -> (f32, v128, f32, i32)) -> f32 {
    let mut acc = [f32x4_splat(0.0); 2];
    let mut corr = 0f32;
    for b in 0..nb {
        unsafe {
            let y = a.qs.as_ptr().add(32 * b) as *const u8;
            let (dw, s, c, k) = blk(b, ld(y), ld(y.add(16)));
            let dy = *a.d.get_unchecked(b);
            let sy = *a.sums.get_unchecked(b) as i32;
            let s = i32x4_sub(s, i32x4_replace_lane::<0>(i32x4_splat(0), k * sy));
            acc[b & 1] = f32x4_add(acc[b & 1], f32x4_mul(f32x4_splat(dw * dy), f32x4_convert_i32x4(s)));
            corr += c * (dy * sy as f32);
        }
    }
    hsum(f32x4_add(acc[0], acc[1])) + corr
}

#[target_feature(enable = "simd128")]
unsafe fn block32(ty: GgmlType, p: *const u8, nb: usize, a: Q8Row) -> f32 {
    use GgmlType::*;
    let zero = i32x4_splat(0);
    let m4 = u8x16_splat(0xF);
    let half = |p: *const u8| half::f16::from_le_bytes(unsafe { [*p, *p.add(1)] }).to_f32();
    unsafe {
        match ty {
            Q8_0 => b32(nb, a, |b, y0, y1| {
                let q = p.add(34 * b);
                let s = dot16_signed(dot16_signed(zero, y0, ld(q.add(2))), y1, ld(q.add(18)));
                (half(q), s, 0.0, 0)
            }),
            Q4_0 | Q4_1 => {
                let (ts, qs, min) = if ty == Q4_0 { (18, 2, false) } else { (20, 4, true) };
                b32(nb, a, |b, y0, y1| {
                    let q = p.add(ts * b);
                    let v = ld(q.add(qs));
                    let s = dot16(dot16(zero, y0, v128_and(v, m4)), y1, u8x16_shr(v, 4));
                    if min {
                        (half(q), s, half(q.add(2)), 0)
                    } else {
                        (half(q), s, 0.0, 8)
                    }
                })
            }
            Q5_0 | Q5_1 => {
                let (ts, qh_at, qs, min) = if ty == Q5_0 { (22, 2, 6, false) } else { (24, 4, 8, true) };
                b32(nb, a, |b, y0, y1| {
                    let q = p.add(ts * b);
                    let qh = (q.add(qh_at) as *const u32).read_unaligned();
                    let v = ld(q.add(qs));
                    let lo = v128_or(v128_and(v, m4), bits16(qh, 0));
                    let hi = v128_or(u8x16_shr(v, 4), bits16(qh, 16));
                    let s = dot16(dot16(zero, y0, lo), y1, hi);
                    if min {
                        (half(q), s, half(q.add(2)), 0)
                    } else {
                        (half(q), s, 0.0, 16)
                    }
                })
            }
            _ => 0.0,
        }
    }
}

/// The 8 six-bit scales and 8 mins of a Q4_K/Q5_K block from their 12 bytes at `p` (ggml's
/// `kmask` shuffle, as `scale_min_k4` one at a time): `(scales, mins)`, 8 bytes each.
#[inline(always)]
unsafe fn scales_mins(p: *const u8) -> (u64, u64) {
    const K1: u32 = 0x3f3f_3f3f;
    const K2: u32 = 0x0f0f_0f0f;
    const K3: u32 = 0x0303_0303;
    let u = p as *const u32;
    let (u0, u1, u2) = unsafe { (u.read_unaligned(), u.add(1).read_unaligned(), u.add(2).read_unaligned()) };
    let sc = (u0 & K1) as u64 | (((u2 & K2) | (((u0 >> 6) & K3) << 4)) as u64) << 32;
    let m = (u1 & K1) as u64 | ((((u2 >> 4) & K2) | (((u1 >> 6) & K3) << 4)) as u64) << 32;
    (sc, m)
}

/// `Σ_k a_k·b_k` over 8 i16 lanes each.
#[inline]
#[target_feature(enable = "simd128")]
fn dot8_i16(a: v128, b: v128) -> i32 {
    hsum_i32(i32x4_dot_i16x8(a, b))
}

/// Q4_K / Q5_K, `R` rows at once (each activation load serves them all): per sub-block `s`,
/// `sc_s · Σ q·y` in i32 lanes; the mins through the block sums, as one i16 dot per block.
#[inline]
#[target_feature(enable = "simd128")]
unsafe fn q45_k<const R: usize>(q5: bool, w: [*const u8; R], nb: usize, a: Q8Row) -> [f32; R] {
    let (ts, qoff) = if q5 { (176, 48) } else { (144, 16) };
    let m4 = u8x16_splat(0xF);
    let m16 = u8x16_splat(0x10);
    let zero = i32x4_splat(0);
    let mut sumf = [0f32; R];
    for i in 0..nb {
        unsafe {
            let y = a.qs.as_ptr().add(256 * i) as *const u8;
            let bs = a.sums.as_ptr().add(16 * i) as *const u8;
            // Σy per 32 values (the sub-blocks), 8 i16 lanes: two 16-value sums each
            let bsum =
                i16x8_narrow_i32x4(i32x4_extadd_pairwise_i16x8(ld(bs)), i32x4_extadd_pairwise_i16x8(ld(bs.add(16))));
            let mut p = w;
            let mut sm = [(0, 0); R];
            let mut h = [[zero; 2]; R];
            for r in 0..R {
                p[r] = w[r].add(ts * i);
                sm[r] = scales_mins(p[r].add(4));
                if q5 {
                    h[r] = [ld(p[r].add(16)), ld(p[r].add(32))];
                }
            }
            let mut sumi = [zero; R];
            for s in 0..8 {
                let y0 = ld(y.add(32 * s));
                let y1 = ld(y.add(32 * s + 16));
                for r in 0..R {
                    let c = p[r].add(qoff + 32 * (s / 2));
                    let (v0, v1) = (ld(c), ld(c.add(16)));
                    let (mut q0, mut q1) = if s % 2 == 0 {
                        (v128_and(v0, m4), v128_and(v1, m4))
                    } else {
                        (u8x16_shr(v0, 4), u8x16_shr(v1, 4))
                    };
                    if q5 {
                        let bit = u8x16_splat(1 << s);
                        q0 = v128_or(q0, v128_and(i8x16_eq(v128_and(h[r][0], bit), bit), m16));
                        q1 = v128_or(q1, v128_and(i8x16_eq(v128_and(h[r][1], bit), bit), m16));
                    }
                    let acc = dot16(dot16(zero, y0, q0), y1, q1);
                    let sc = (sm[r].0 >> (8 * s)) as u8 as i32;
                    sumi[r] = i32x4_add(sumi[r], i32x4_mul(acc, i32x4_splat(sc)));
                }
            }
            let dy = *a.d.get_unchecked(i);
            for r in 0..R {
                let mins = dot8_i16(u16x8_extend_low_u8x16(u64x2_splat(sm[r].1)), bsum);
                let b = std::slice::from_raw_parts(p[r], 4);
                sumf[r] += (f16_at(b, 0) * dy) * hsum_i32(sumi[r]) as f32 - (f16_at(b, 2) * dy) * mins as f32;
            }
        }
    }
    sumf
}

/// Q6_K, `R` rows at once: the unsigned 6-bit quants per 16-value group, `− 32·Σ sc·Σy` through
/// the block sums (two i16 dots per block).
#[inline]
#[target_feature(enable = "simd128")]
unsafe fn q6_k<const R: usize>(w: [*const u8; R], nb: usize, a: Q8Row) -> [f32; R] {
    let m4 = u8x16_splat(0xF);
    let m3 = u8x16_splat(3);
    let zero = i32x4_splat(0);
    let mut sumf = [0f32; R];
    for i in 0..nb {
        unsafe {
            let y = a.qs.as_ptr().add(256 * i) as *const u8;
            let bs = a.sums.as_ptr().add(16 * i) as *const u8;
            let mut p = w;
            for r in 0..R {
                p[r] = w[r].add(210 * i);
            }
            let mut sumi = [zero; R];
            for h in 0..2 {
                for l0 in [0, 16] {
                    // one load of the high bits serves the four groups k
                    let mut hb = [zero; R];
                    for r in 0..R {
                        hb[r] = ld(p[r].add(128 + 32 * h + l0));
                    }
                    for k in 0..4 {
                        let g = (128 * h + 32 * k + l0) / 16;
                        let yv = ld(y.add(16 * g));
                        for r in 0..R {
                            let lq = ld(p[r].add(64 * h + 32 * (k % 2) + l0));
                            let lo = if k < 2 { v128_and(lq, m4) } else { u8x16_shr(lq, 4) };
                            let q = v128_or(lo, i8x16_shl(v128_and(u8x16_shr(hb[r], 2 * k as u32), m3), 4));
                            let sc = *p[r].add(192 + g) as i8 as i32;
                            sumi[r] = i32x4_add(sumi[r], i32x4_mul(dot16(zero, yv, q), i32x4_splat(sc)));
                        }
                    }
                }
            }
            let (b0, b1) = (ld(bs), ld(bs.add(16)));
            let dy = *a.d.get_unchecked(i);
            for r in 0..R {
                let sc = ld(p[r].add(192));
                let corr = dot8_i16(i16x8_extend_low_i8x16(sc), b0) + dot8_i16(i16x8_extend_high_i8x16(sc), b1);
                let b = std::slice::from_raw_parts(p[r].add(208), 2);
                sumf[r] += (f16_at(b, 0) * dy) * (hsum_i32(sumi[r]) - 32 * corr) as f32;
            }
        }
    }
    sumf
}

/// Rows in fours (a K-quant kernel `k4` over 4 row pointers), then one at a time (`k1`).
#[inline]
#[target_feature(enable = "simd128")]
unsafe fn by_fours(
    w: &[u8],
    rb: usize,
    out: &mut [f32],
    k4: impl Fn([*const u8; 4]) -> [f32; 4],
    k1: impl Fn([*const u8; 1]) -> [f32; 1],
) {
    let p = w.as_ptr();
    let mut r = 0;
    while r + 4 <= out.len() {
        let rows = unsafe { [p.add(r * rb), p.add((r + 1) * rb), p.add((r + 2) * rb), p.add((r + 3) * rb)] };
        out[r..r + 4].copy_from_slice(&k4(rows));
        r += 4;
    }
    while r < out.len() {
        out[r] = k1([unsafe { p.add(r * rb) }])[0];
        r += 1;
    }
}

/// SAFETY: the caller checked `w` holds `out.len()` rows of `rb` bytes of whole blocks
/// covering `a`.
#[target_feature(enable = "simd128")]
pub unsafe fn rows(ty: GgmlType, w: &[u8], rb: usize, a: Q8Row, out: &mut [f32]) {
    use GgmlType::*;
    let nb = a.qs.len() / ty.block_size() as usize;
    unsafe {
        match ty {
            Q4K | Q5K => {
                let q5 = ty == Q5K;
                by_fours(w, rb, out, |p| q45_k(q5, p, nb, a), |p| q45_k(q5, p, nb, a))
            }
            Q6K => by_fours(w, rb, out, |p| q6_k(p, nb, a), |p| q6_k(p, nb, a)),
            _ => {
                for (r, o) in out.iter_mut().enumerate() {
                    *o = block32(ty, w.as_ptr().add(r * rb), nb, a);
                }
            }
        }
    }
}
