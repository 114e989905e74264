//! The 4-lane kernels, one source for wasm `simd128` and aarch64 NEON: written in simd128's
//! operations, which [`neon`](super::neon) provides on aarch64 (so both give the same bits).
//! As the AVX2 ones, the hottest formats' kernels take `T` tokens at once (speculative
//! verification): each block is decoded once for all of them, and each token's sum is the
//! same sequence of operations as with `T = 1`, so every result is the single-token one.

#[cfg(target_arch = "aarch64")]
use super::neon::*;
use super::GgmlType;
#[cfg(target_arch = "wasm32")]
use std::arch::wasm32::*;

/// `acc + a·b` (NEON fuses it; simd128 has no FMA).
#[cfg(target_arch = "wasm32")]
#[inline]
#[target_feature(enable = "simd128")]
fn madd(acc: v128, a: v128, b: v128) -> v128 {
    f32x4_add(acc, f32x4_mul(a, b))
}

#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
}

#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn ld(p: *const f32) -> v128 {
    unsafe { v128_load(p as *const v128) }
}

#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn half(p: *const u8) -> f32 {
    half::f16::from_le_bytes(unsafe { [*p, *p.add(1)] }).to_f32()
}

#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
pub unsafe fn f32_dot(a: *const f32, b: *const f32, n: usize) -> f32 {
    let mut acc = [f32x4_splat(0.0); 4];
    let mut i = 0;
    unsafe {
        while i + 16 <= n {
            for (k, a_k) in acc.iter_mut().enumerate() {
                *a_k = madd(*a_k, ld(a.add(i + 4 * k)), ld(b.add(i + 4 * k)));
            }
            i += 16;
        }
        let mut s = hsum(f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3])));
        while i < n {
            s += *a.add(i) * *b.add(i);
            i += 1;
        }
        s
    }
}

/// See `super::tile`.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
pub unsafe fn tile(w: [*const f32; 4], x: [*const f32; 3], n: usize) -> [[f32; 3]; 4] {
    // two levels: a chain of FMAs per BLOCK columns, then the block sums added up (one chain of
    // n/4 roundings of an ever larger sum lands Q2_K's and IQ4_XS's prefill at 1.3e-5 and
    // 1.005e-5 of std from transformers on aarch64 and wasm; blocked, both hold 1e-5)
    const BLOCK: usize = 32;
    let mut acc = [[f32x4_splat(0.0); 3]; 4];
    let mut i = 0;
    unsafe {
        while i + 4 <= n {
            let end = (i + BLOCK).min(n - n % 4);
            let mut blk = [[f32x4_splat(0.0); 3]; 4];
            while i < end {
                let xv = x.map(|p| ld(p.add(i)));
                for r in 0..4 {
                    let wv = ld(w[r].add(i));
                    for t in 0..3 {
                        blk[r][t] = madd(blk[r][t], wv, xv[t]);
                    }
                }
                i += 4;
            }
            for r in 0..4 {
                for t in 0..3 {
                    acc[r][t] = f32x4_add(acc[r][t], blk[r][t]);
                }
            }
        }
        let mut out = [[0f32; 3]; 4];
        for r in 0..4 {
            for t in 0..3 {
                let mut s = hsum(acc[r][t]);
                for k in i..n {
                    s += *w[r].add(k) * *x[t].add(k);
                }
                out[r][t] = s;
            }
        }
        out
    }
}

/// 8 i16 lanes as two f32x4.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
fn f8(v: v128) -> [v128; 2] {
    [f32x4_convert_i32x4(i32x4_extend_low_i16x8(v)), f32x4_convert_i32x4(i32x4_extend_high_i16x8(v))]
}

/// 8 bytes at `p` zero-extended to u16 lanes.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn u8x8(p: *const u8) -> v128 {
    unsafe { u16x8_load_extend_u8x8(p) }
}

/// Four groups of 8 quants (i16 lanes) as f32, converted once for every token's [`dot32`].
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
fn f32q(q: [v128; 4]) -> [[v128; 2]; 4] {
    [f8(q[0]), f8(q[1]), f8(q[2]), f8(q[3])]
}

/// `Σ_k q_k · x_k` over four groups of 8 quants (as [`f32q`]) and their x (two chains;
/// simd128 has no fused multiply-add).
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn dot32(q: &[[v128; 2]; 4], x: [*const f32; 4]) -> v128 {
    let (mut a, mut b) = (f32x4_splat(0.0), f32x4_splat(0.0));
    for k in 0..4 {
        let [lo, hi] = q[k];
        unsafe {
            a = madd(a, lo, ld(x[k]));
            b = madd(b, hi, ld(x[k].add(4)));
        }
    }
    f32x4_add(a, b)
}

/// Σ of each 32 consecutive values of `x`.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
pub unsafe fn sums32(x: &[f32]) -> Vec<f32> {
    x.chunks_exact(32)
        .map(|c| unsafe {
            let p = c.as_ptr();
            let a = f32x4_add(f32x4_add(ld(p), ld(p.add(4))), f32x4_add(ld(p.add(8)), ld(p.add(12))));
            let b = f32x4_add(f32x4_add(ld(p.add(16)), ld(p.add(20))), f32x4_add(ld(p.add(24)), ld(p.add(28))));
            hsum(f32x4_add(a, b))
        })
        .collect()
}

/// As the AVX2 `blocks`: `Σ_b (d_b · s_b + c_b · xs_b)` for each of `T` tokens (`s_b[t]`
/// the block's `Σ q·x_t`), two running sums of each.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
fn blocks<const MIN: bool, const T: usize>(
    nb: usize,
    xs: [&[f32]; T],
    blk: impl Fn(usize) -> (f32, [v128; T], f32),
) -> [f32; T] {
    let mut acc = [[f32x4_splat(0.0); 2]; T];
    let mut c = [[0f32; 2]; T];
    for b in 0..nb {
        let (d, s, cb) = blk(b);
        let dv = f32x4_splat(d);
        for t in 0..T {
            acc[t][b & 1] = madd(acc[t][b & 1], dv, s[t]);
            if MIN {
                c[t][b & 1] += cb * xs[t].get(b).copied().unwrap_or(0.0);
            }
        }
    }
    std::array::from_fn(|t| hsum(f32x4_add(acc[t][0], acc[t][1])) + (c[t][0] + c[t][1]))
}

/// `Σ q·x_t` over the 32 values at `x[t] + 32b`, for each token.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn dot32_each<const T: usize>(q: &[[v128; 2]; 4], x: [*const f32; T], b: usize) -> [v128; T] {
    x.map(|x| unsafe {
        let xb = x.add(32 * b);
        dot32(q, [xb, xb.add(8), xb.add(16), xb.add(24)])
    })
}

#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn q8_0<const T: usize>(w: *const u8, x: [*const f32; T], nb: usize) -> [f32; T] {
    blocks::<false, T>(nb, [&[]; T], |b| unsafe {
        let p = w.add(34 * b);
        let q = p.add(2);
        let q = f32q([0, 1, 2, 3].map(|k| i16x8_load_extend_i8x8(q.add(8 * k) as *const i8)));
        (half(p), dot32_each(&q, x, b), 0.0)
    })
}

/// Q4_0 and Q4_1, centred and factored as the AVX2 kernel.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn q4<const Q41: bool, const T: usize>(
    w: *const u8,
    x: [*const f32; T],
    nb: usize,
    xs: [&[f32]; T],
) -> [f32; T] {
    let (ts, qoff) = if Q41 { (20, 4) } else { (18, 2) };
    let m4 = u16x8_splat(0xF);
    let eight = i16x8_splat(8);
    blocks::<Q41, T>(nb, xs, |b| unsafe {
        let p = w.add(ts * b);
        let (v0, v1) = (u8x8(p.add(qoff)), u8x8(p.add(qoff + 8)));
        let lo = |v| i16x8_sub(v128_and(v, m4), eight);
        let hi = |v| i16x8_sub(u16x8_shr(v, 4), eight);
        let q = f32q([lo(v0), lo(v1), hi(v0), hi(v1)]);
        let d = half(p);
        (d, dot32_each(&q, x, b), if Q41 { 8.0 * d + half(p.add(2)) } else { 0.0 })
    })
}

/// Q5_0 and Q5_1: the fifth bit of value `j` is bit `j` of the u32 `qh`.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn q5<const Q51: bool>(w: *const u8, x: *const f32, nb: usize, xs: &[f32]) -> f32 {
    let (ts, qh_at, qs_at) = if Q51 { (24, 4, 8) } else { (22, 2, 6) };
    let m4 = u16x8_splat(0xF);
    let sixteen = i16x8_splat(16);
    let bits = u16x8(1, 2, 4, 8, 16, 32, 64, 128);
    let zero = u16x8_splat(0);
    blocks::<Q51, 1>(nb, [xs], |b| unsafe {
        let p = w.add(ts * b);
        let qh = (p.add(qh_at) as *const u32).read_unaligned();
        // values 8k..8k+8 take their fifth bits from byte k of qh
        let fifth = |k: u32| {
            let set = i16x8_ne(v128_and(u16x8_splat(((qh >> (8 * k)) & 0xFF) as u16), bits), zero);
            v128_and(set, sixteen)
        };
        let (v0, v1) = (u8x8(p.add(qs_at)), u8x8(p.add(qs_at + 8)));
        let q = [v128_and(v0, m4), v128_and(v1, m4), u16x8_shr(v0, 4), u16x8_shr(v1, 4)];
        let q = f32q([0, 1, 2, 3].map(|k| i16x8_sub(v128_or(q[k], fifth(k as u32)), sixteen)));
        let d = half(p);
        (d, dot32_each(&q, [x], b), if Q51 { 16.0 * d + half(p.add(2)) } else { 0.0 })
    })[0]
}

/// Q4_K and Q5_K, centred and factored as the AVX2 kernel.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn q45_k<const Q5: bool, const T: usize>(w: &[u8], x: [*const f32; T], nb: usize, xs: [&[f32]; T]) -> [f32; T] {
    let (ts, qoff) = if Q5 { (176, 48) } else { (144, 16) };
    let m4 = u16x8_splat(0xF);
    let one = u16x8_splat(1);
    let c = if Q5 { 16 } else { 8 };
    let mid = i16x8_splat(c);
    let mut acc = [[f32x4_splat(0.0); 2]; T];
    let mut mins = [f32x4_splat(0.0); T];
    unsafe {
        for b in 0..nb {
            let blk = w.get_unchecked(ts * b..ts * (b + 1));
            let (sc, mn) = super::k4_scales(blk);
            let p = blk.as_ptr();
            let h = if Q5 { [0, 1, 2, 3].map(|k| u8x8(p.add(16 + 8 * k))) } else { [zero_v(); 4] };
            for j in 0..4 {
                let q = p.add(qoff + 32 * j);
                let v = [0, 1, 2, 3].map(|k| u8x8(q.add(8 * k)));
                let mut lo = v.map(|v| v128_and(v, m4));
                let mut hi = v.map(|v| u16x8_shr(v, 4));
                if Q5 {
                    let bit = |h: v128, s: u32| i16x8_shl(v128_and(u16x8_shr(h, s), one), 4);
                    for k in 0..4 {
                        lo[k] = v128_or(lo[k], bit(h[k], 2 * j as u32));
                        hi[k] = v128_or(hi[k], bit(h[k], 2 * j as u32 + 1));
                    }
                }
                let centred = |v| i16x8_sub(v, mid);
                let (lo, hi) = (f32q(lo.map(centred)), f32q(hi.map(centred)));
                let (al, ah) = (f32x4_splat(sc[2 * j]), f32x4_splat(sc[2 * j + 1]));
                for t in 0..T {
                    let xl = x[t].add(256 * b + 64 * j);
                    let xh = xl.add(32);
                    let sl = dot32(&lo, [xl, xl.add(8), xl.add(16), xl.add(24)]);
                    let sh = dot32(&hi, [xh, xh.add(8), xh.add(16), xh.add(24)]);
                    acc[t][0] = madd(acc[t][0], al, sl);
                    acc[t][1] = madd(acc[t][1], ah, sh);
                }
            }
            // c·a − m, as the 8 sub-blocks' offsets (two vectors of 4)
            let off = [0, 4].map(|at| {
                f32x4_sub(
                    f32x4_mul(f32x4_splat(c as f32), v128_load(sc.as_ptr().add(at) as *const v128)),
                    v128_load(mn.as_ptr().add(at) as *const v128),
                )
            });
            for t in 0..T {
                if let Some(xsb) = xs[t].get(8 * b..8 * b + 8) {
                    for (h, off) in off.iter().enumerate() {
                        mins[t] = madd(mins[t], *off, ld(xsb.as_ptr().add(4 * h)));
                    }
                }
            }
        }
    }
    std::array::from_fn(|t| hsum(f32x4_add(acc[t][0], acc[t][1])) + hsum(mins[t]))
}

#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
fn zero_v() -> v128 {
    u16x8_splat(0)
}

/// Q6_K: `d·sc_g · Σ(q − 32)x` per 16-value group, laid out as in the AVX2 kernel.
#[inline]
#[allow(clippy::needless_range_loop)] // the indices pick lanes and x offsets together
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn q6_k<const T: usize>(w: *const u8, x: [*const f32; T], nb: usize) -> [f32; T] {
    let m4 = u16x8_splat(0xF);
    let m30 = u16x8_splat(0x30);
    let m32 = i16x8_splat(32);
    let mut acc = [[f32x4_splat(0.0); 4]; T];
    unsafe {
        for b in 0..nb {
            let p = w.add(210 * b);
            let d = half(p.add(208));
            let sc = p.add(192) as *const i8;
            for h in 0..2 {
                let (ql, qh) = (p.add(64 * h), p.add(128 + 32 * h));
                for i in 0..2 {
                    let q = [0, 1].map(|u| {
                        let l = 16 * i + 8 * u;
                        let (a, c, hb) = (u8x8(ql.add(l)), u8x8(ql.add(l + 32)), u8x8(qh.add(l)));
                        [
                            v128_or(v128_and(a, m4), v128_and(i16x8_shl(hb, 4), m30)),
                            v128_or(v128_and(c, m4), v128_and(i16x8_shl(hb, 2), m30)),
                            v128_or(u16x8_shr(a, 4), v128_and(hb, m30)),
                            v128_or(u16x8_shr(c, 4), v128_and(u16x8_shr(hb, 2), m30)),
                        ]
                        .map(|v| f8(i16x8_sub(v, m32)))
                    });
                    for k in 0..4 {
                        let scale = f32x4_splat(d * *sc.add(8 * h + 2 * k + i) as f32);
                        for t in 0..T {
                            let xk = x[t].add(256 * b + 128 * h + 32 * k + 16 * i);
                            let mut s = f32x4_splat(0.0);
                            for u in 0..2 {
                                for e in 0..2 {
                                    s = madd(s, q[u][k][e], ld(xk.add(8 * u + 4 * e)));
                                }
                            }
                            acc[t][k] = madd(acc[t][k], scale, s);
                        }
                    }
                }
            }
        }
    }
    std::array::from_fn(|t| {
        let a = &acc[t];
        hsum(f32x4_add(f32x4_add(a[0], a[1]), f32x4_add(a[2], a[3])))
    })
}

/// Σ of each 16 consecutive values of `x`.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
pub unsafe fn sums16(x: &[f32]) -> Vec<f32> {
    x.chunks_exact(16)
        .map(|c| unsafe {
            let p = c.as_ptr();
            hsum(f32x4_add(f32x4_add(ld(p), ld(p.add(4))), f32x4_add(ld(p.add(8)), ld(p.add(12)))))
        })
        .collect()
}

/// Q2_K and Q3_K per 16-value group, laid out and centred as in the AVX2 kernel.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn q23_k<const Q3: bool>(w: &[u8], x: *const f32, nb: usize, xs: &[f32]) -> f32 {
    use crate::quant::blocks::{q2_k, q3_k, scale_q3_k};
    let (ts, qoff) = if Q3 { (q3_k::BYTES, q3_k::QS) } else { (q2_k::BYTES, q2_k::QS) };
    let three = u16x8_splat(3);
    let one = u16x8_splat(1);
    let mid = i16x8_splat(if Q3 { 4 } else { 2 });
    let mut t = [f32x4_splat(0.0); 2];
    let mut mins = 0f32;
    unsafe {
        for b in 0..nb {
            let blk = w.get_unchecked(ts * b..ts * (b + 1));
            let p = blk.as_ptr();
            let d = half(p.add(if Q3 { q3_k::D } else { q2_k::D }));
            let dmin = if Q3 { 0.0 } else { half(p.add(q2_k::DMIN)) };
            for g in 0..16 {
                let (h, j, u) = (g / 8, (g % 8) / 2, g % 2);
                let q = p.add(qoff + 32 * h + 16 * u);
                let mut v = [0, 1].map(|k| v128_and(u16x8_shr(u8x8(q.add(8 * k)), 2 * j as u32), three));
                let a = if Q3 {
                    let hm = p.add(q3_k::HMASK + 16 * u);
                    for (k, v) in v.iter_mut().enumerate() {
                        let bit = v128_and(u16x8_shr(u8x8(hm.add(8 * k)), (4 * h + j) as u32), one);
                        *v = i16x8_add(*v, i16x8_shl(bit, 2));
                    }
                    d * (scale_q3_k(g, &blk[q3_k::SCALES..]) as i32 - 32) as f32
                } else {
                    let sc = blk[q2_k::SCALES + g];
                    let a = d * (sc & 0xF) as f32;
                    mins += (2.0 * a - dmin * (sc >> 4) as f32) * xs.get(16 * b + g).copied().unwrap_or(0.0);
                    a
                };
                let xg = x.add(256 * b + 16 * g);
                let mut s = f32x4_splat(0.0);
                for (k, v) in v.iter().enumerate() {
                    let [lo, hi] = f8(i16x8_sub(*v, mid));
                    s = madd(madd(s, lo, ld(xg.add(8 * k))), hi, ld(xg.add(8 * k + 4)));
                }
                t[u] = madd(t[u], f32x4_splat(a), s);
            }
        }
    }
    hsum(f32x4_add(t[0], t[1])) + mins
}

/// `Σ q·x` over one 32-value IQ4 block, the levels looked up with one byte swizzle per 16.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn iq4_32(q: *const u8, x: *const f32) -> v128 {
    unsafe {
        let table = v128_load(crate::quant::blocks::KVALUES_IQ4NL.as_ptr() as *const v128);
        let v = v128_load(q as *const v128);
        let m4 = u8x16_splat(0xF);
        let lo = i8x16_swizzle(table, v128_and(v, m4));
        let hi = i8x16_swizzle(table, u8x16_shr(v, 4));
        dot32(
            &f32q([
                i16x8_extend_low_i8x16(lo),
                i16x8_extend_high_i8x16(lo),
                i16x8_extend_low_i8x16(hi),
                i16x8_extend_high_i8x16(hi),
            ]),
            [x, x.add(8), x.add(16), x.add(24)],
        )
    }
}

#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn iq4_nl(w: *const u8, x: *const f32, nb: usize) -> f32 {
    blocks::<false, 1>(nb, [&[]], |b| unsafe { (half(w.add(18 * b)), [iq4_32(w.add(18 * b + 2), x.add(32 * b))], 0.0) })
        [0]
}

#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn iq4_xs(w: &[u8], x: *const f32, nb: usize) -> f32 {
    use crate::quant::blocks::{iq4_xs, scale_iq4_xs};
    blocks::<false, 1>(nb * 8, [&[]], |i| unsafe {
        let (b, ib) = (i / 8, i % 8);
        let blk = w.get_unchecked(iq4_xs::BYTES * b..iq4_xs::BYTES * (b + 1));
        let d = half(blk.as_ptr()) * (scale_iq4_xs(ib, blk) as i32 - 32) as f32;
        (d, [iq4_32(blk.as_ptr().add(iq4_xs::QS + 16 * ib), x.add(32 * i))], 0.0)
    })[0]
}

/// `T` tokens' dot products with one row of `ty` (`n` values; `xs[t]`: token `t`'s [`sums`]).
/// The formats with a `T`-token kernel read each block once for all tokens, the others run
/// one token at a time; either way each token's result is the one `T = 1` gives, bit for bit.
/// SAFETY: `row` is whole blocks of `ty` covering `n` values, every `x[t]` points at `n`.
#[inline]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
unsafe fn row_dots<const T: usize>(
    ty: GgmlType,
    row: &[u8],
    x: [*const f32; T],
    xs: [&[f32]; T],
    n: usize,
) -> [f32; T] {
    use GgmlType::*;
    let p = row.as_ptr();
    let nb = n / ty.block_size() as usize;
    unsafe {
        match ty {
            // halves: no f16 lanes in simd128; the scalar path widens them
            F16 | BF16 => super::scalar::row_dots(ty, row, x.map(|x| std::slice::from_raw_parts(x, n))),
            Q8_0 => q8_0::<T>(p, x, nb),
            Q4_0 => q4::<false, T>(p, x, nb, xs),
            Q4_1 => q4::<true, T>(p, x, nb, xs),
            Q4K => q45_k::<false, T>(row, x, nb, xs),
            Q5K => q45_k::<true, T>(row, x, nb, xs),
            Q6K => q6_k::<T>(p, x, nb),
            _ => std::array::from_fn(|t| {
                let (x, xs) = (x[t], xs[t]);
                match ty {
                    F32 => f32_dot(p as *const f32, x, n),
                    Q5_0 => q5::<false>(p, x, nb, xs),
                    Q5_1 => q5::<true>(p, x, nb, xs),
                    Q2K => q23_k::<false>(row, x, nb, xs),
                    Q3K => q23_k::<true>(row, x, nb, xs),
                    IQ4NL => iq4_nl(p, x, nb),
                    IQ4XS => iq4_xs(row, x, nb),
                    _ => 0.0,
                }
            }),
        }
    }
}

/// The per-block sums of `x` the formats with a min need (Σx per 32 values, Q2_K's per 16).
fn sums(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    use GgmlType::*;
    // SAFETY: simd128 / NEON is part of the targets these kernels build for
    match ty {
        Q4_1 | Q5_1 | Q4K | Q5K => unsafe { sums32(x) },
        Q2K => unsafe { sums16(x) },
        _ => Vec::new(),
    }
}

/// SAFETY: as for the AVX2 version.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
#[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
pub unsafe fn rows(ty: GgmlType, w: &[u8], rb: usize, x: &[f32], out: &mut [f32]) {
    let xs = sums(ty, x);
    for (r, o) in out.iter_mut().enumerate() {
        let row = unsafe { w.get_unchecked(r * rb..(r + 1) * rb) };
        *o = unsafe { row_dots::<1>(ty, row, [x.as_ptr()], [&xs], x.len())[0] };
    }
}

/// [`row_dots`] for `super::rows_dots`.
pub(super) struct Kernels;

impl super::RowDots for Kernels {
    unsafe fn dots<const T: usize>(
        ty: GgmlType,
        row: &[u8],
        x: [*const f32; T],
        xs: [&[f32]; T],
        n: usize,
    ) -> [f32; T] {
        // SAFETY: passed on from the caller
        unsafe { row_dots::<T>(ty, row, x, xs, n) }
    }
    fn sums(ty: GgmlType, x: &[f32]) -> Vec<f32> {
        sums(ty, x)
    }
}
