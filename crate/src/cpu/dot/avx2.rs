//! x86 AVX2+FMA+F16C kernels: 8 lanes, every format.

use super::GgmlType;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn half(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes(unsafe { [*p, *p.add(1)] });
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// The two adjacent halves at `p` as f32, in one load and one convert.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn halves2(p: *const u8) -> (f32, f32) {
    let v = unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned())) };
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load16(p: *const u8) -> __m128i {
    unsafe { _mm_loadu_si128(p as *const __m128i) }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn f32_dot(a: *const f32, b: *const f32, n: usize) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    unsafe {
        while i + 32 <= n {
            for (k, a_k) in acc.iter_mut().enumerate() {
                *a_k = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(i + 8 * k)), _mm256_loadu_ps(b.add(i + 8 * k)), *a_k);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(i)), _mm256_loadu_ps(b.add(i)), acc[0]);
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
        while i < n {
            s += *a.add(i) * *b.add(i);
            i += 1;
        }
        s
    }
}

/// See `super::tile`: 12 accumulators, the 3 tokens' x in registers, each row's 8 values
/// loaded once for 3 FMAs.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn tile(w: [*const f32; 4], x: [*const f32; 3], n: usize) -> [[f32; 3]; 4] {
    let mut acc = [[_mm256_setzero_ps(); 3]; 4];
    let mut i = 0;
    unsafe {
        while i + 8 <= n {
            let xv = x.map(|p| _mm256_loadu_ps(p.add(i)));
            for r in 0..4 {
                let wv = _mm256_loadu_ps(w[r].add(i));
                for t in 0..3 {
                    acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
                }
            }
            i += 8;
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

/// Σ over 8 lanes of halves / bfloats widened to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8_f16(p: *const u8) -> __m256 {
    unsafe { _mm256_cvtph_ps(load16(p)) }
}
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8_bf16(p: *const u8) -> __m256 {
    unsafe { _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load16(p)), 16)) }
}

/// F16/BF16 rows with `T` tokens (the weights loaded once for all of them; each token's sum
/// is the same sequence of operations as with `T = 1`, so the results are identical).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn half_dot<const T: usize>(bf: bool, w: *const u8, x: [*const f32; T], n: usize) -> [f32; T] {
    let mut acc = [[_mm256_setzero_ps(); 2]; T];
    let mut i = 0;
    unsafe {
        let load = |p: *const u8| if bf { load8_bf16(p) } else { load8_f16(p) };
        while i + 16 <= n {
            let (w0, w1) = (load(w.add(2 * i)), load(w.add(2 * i + 16)));
            for t in 0..T {
                acc[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t].add(i)), acc[t][0]);
                acc[t][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[t].add(i + 8)), acc[t][1]);
            }
            i += 16;
        }
        let mut out = [0f32; T];
        for t in 0..T {
            let mut s = hsum(_mm256_add_ps(acc[t][0], acc[t][1]));
            for k in i..n {
                let b = [*w.add(2 * k), *w.add(2 * k + 1)];
                let v = if bf { half::bf16::from_le_bytes(b).to_f32() } else { half::f16::from_le_bytes(b).to_f32() };
                s += v * *x[t].add(k);
            }
            out[t] = s;
        }
        out
    }
}

/// 8 signed bytes at `p` as f32 (one sign-extending load, one convert).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn i8x8(p: *const u8) -> __m256 {
    unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i))) }
}

/// 8 bytes at `p`, zero-extended to u32 lanes (nibbles and high bits are then one
/// mask or shift away from their value).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn u8x8(p: *const u8) -> __m256i {
    unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i)) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn ld(x: *const f32) -> __m256 {
    unsafe { _mm256_loadu_ps(x) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f(v: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(v)
}

/// `Σ_k q_k · x_k` over four groups of 8 (two chains, so the adds overlap).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot32(q: [__m256; 4], x: [*const f32; 4]) -> __m256 {
    unsafe {
        let a = _mm256_fmadd_ps(q[2], ld(x[2]), _mm256_mul_ps(q[0], ld(x[0])));
        let b = _mm256_fmadd_ps(q[3], ld(x[3]), _mm256_mul_ps(q[1], ld(x[1])));
        _mm256_add_ps(a, b)
    }
}

/// Σ of each 32 consecutive values of `x` (the `Σx` of `d·Σqx + m·Σx`).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn sums32(x: &[f32]) -> Vec<f32> {
    x.chunks_exact(32)
        .map(|c| unsafe {
            let p = c.as_ptr();
            hsum(_mm256_add_ps(_mm256_add_ps(ld(p), ld(p.add(8))), _mm256_add_ps(ld(p.add(16)), ld(p.add(24)))))
        })
        .collect()
}

/// Σ of each 16 consecutive values of `x` (Q2_K's mins are per 16 values).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn sums16(x: &[f32]) -> Vec<f32> {
    x.chunks_exact(16)
        .map(|c| unsafe {
            let p = c.as_ptr();
            hsum(_mm256_add_ps(ld(p), ld(p.add(8))))
        })
        .collect()
}

/// `Σ_b (d_b · s_b + c_b · xs_b)` over `nb` blocks for each of `T` tokens, where
/// `blk(b) = (d_b, s_b, c_b)` and `s_b[t]` is the block's `Σ q·x_t` (8 lanes); `c_b` only with
/// `MIN`. Two running sums of each, so their dependency chains overlap.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn blocks<const MIN: bool, const T: usize>(
    nb: usize,
    xs: [&[f32]; T],
    blk: impl Fn(usize) -> (f32, [__m256; T], f32),
) -> [f32; T] {
    let mut acc = [[_mm256_setzero_ps(); 2]; T];
    let mut c = [[0f32; 2]; T];
    let mut one = |b: usize, k: usize| {
        let (d, s, cb) = blk(b);
        let dv = _mm256_set1_ps(d);
        for t in 0..T {
            acc[t][k] = _mm256_fmadd_ps(dv, s[t], acc[t][k]);
            if MIN {
                c[t][k] = cb.mul_add(xs[t].get(b).copied().unwrap_or(0.0), c[t][k]);
            }
        }
    };
    let mut b = 0;
    while b + 1 < nb {
        one(b, 0);
        one(b + 1, 1);
        b += 2;
    }
    if b < nb {
        one(b, 0);
    }
    std::array::from_fn(|t| hsum(_mm256_add_ps(acc[t][0], acc[t][1])) + (c[t][0] + c[t][1]))
}

/// Q8_0: `d · Σ q x`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0<const T: usize>(w: *const u8, x: [*const f32; T], nb: usize) -> [f32; T] {
    unsafe {
        blocks::<false, T>(nb, [&[]; T], |b| {
            let p = w.add(34 * b);
            let q = p.add(2);
            let q = [i8x8(q), i8x8(q.add(8)), i8x8(q.add(16)), i8x8(q.add(24))];
            let s = x.map(|x| {
                let xb = x.add(32 * b);
                dot32(q, [xb, xb.add(8), xb.add(16), xb.add(24)])
            });
            (half(p), s, 0.0)
        })
    }
}

/// Q4_0 `d·(q − 8)`, and Q4_1 `d·q + m` as `d·Σ(q − 8)x + (8d + m)·Σx`: centred quants
/// keep the two terms small (`8d + m` is about the block's middle weight), so factoring
/// out the min costs no accuracy. Byte `j` holds value `j` (low nibble) and `j + 16` (high).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4<const Q41: bool, const T: usize>(
    w: *const u8,
    x: [*const f32; T],
    nb: usize,
    xs: [&[f32]; T],
) -> [f32; T] {
    let (ts, qoff) = if Q41 { (20, 4) } else { (18, 2) };
    let m4 = _mm256_set1_epi32(0xF);
    let eight = _mm256_set1_epi32(8);
    unsafe {
        blocks::<Q41, T>(nb, xs, |b| {
            let p = w.add(ts * b);
            let (v0, v1) = (u8x8(p.add(qoff)), u8x8(p.add(qoff + 8)));
            let lo = |v| f(_mm256_sub_epi32(_mm256_and_si256(v, m4), eight));
            let hi = |v| f(_mm256_sub_epi32(_mm256_srli_epi32::<4>(v), eight));
            let q = [lo(v0), lo(v1), hi(v0), hi(v1)];
            let s = x.map(|x| {
                let xb = x.add(32 * b);
                dot32(q, [xb, xb.add(8), xb.add(16), xb.add(24)])
            });
            if Q41 {
                // d and m are adjacent halves: one load, one convert
                let (d, m) = halves2(p);
                (d, s, 8.0f32.mul_add(d, m))
            } else {
                (half(p), s, 0.0)
            }
        })
    }
}

/// Q5_0 `d·(q − 16)` and Q5_1 `d·q + m`, centred and factored as Q4's. The fifth bit of value `j` is
/// bit `j` of the u32 `qh`: shifted down per lane, masked, moved to bit 4.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5<const Q51: bool>(w: *const u8, x: *const f32, nb: usize, xs: &[f32]) -> f32 {
    let (ts, qh_at, qs_at) = if Q51 { (24, 4, 8) } else { (22, 2, 6) };
    let m4 = _mm256_set1_epi32(0xF);
    let one = _mm256_set1_epi32(1);
    let sixteen = _mm256_set1_epi32(16);
    let lanes = |j0: i32| _mm256_setr_epi32(j0, j0 + 1, j0 + 2, j0 + 3, j0 + 4, j0 + 5, j0 + 6, j0 + 7);
    let sh = [lanes(0), lanes(8), lanes(16), lanes(24)];
    unsafe {
        blocks::<Q51, 1>(nb, [xs], |b| {
            let (p, xb) = (w.add(ts * b), x.add(32 * b));
            let qh = _mm256_set1_epi32((p.add(qh_at) as *const i32).read_unaligned());
            let fifth = |k: usize| _mm256_slli_epi32::<4>(_mm256_and_si256(_mm256_srlv_epi32(qh, sh[k]), one));
            let (v0, v1) = (u8x8(p.add(qs_at)), u8x8(p.add(qs_at + 8)));
            let q = [
                _mm256_and_si256(v0, m4),
                _mm256_and_si256(v1, m4),
                _mm256_srli_epi32::<4>(v0),
                _mm256_srli_epi32::<4>(v1),
            ];
            let q = [0, 1, 2, 3].map(|k| f(_mm256_sub_epi32(_mm256_or_si256(q[k], fifth(k)), sixteen)));
            let s = dot32(q, [xb, xb.add(8), xb.add(16), xb.add(24)]);
            let d = half(p);
            (d, [s], if Q51 { 16.0 * d + half(p.add(2)) } else { 0.0 })
        })[0]
    }
}

/// Q4_K (`Q5 = false`) and Q5_K super-blocks: per 32-value sub-block `s` of scale
/// `a = d·sc_s` and min `m = dmin·m_s`, `a·Σ(q − c)x + (c·a − m)·Σx` with `c` the middle
/// quant (8, Q5_K: 16), centred as Q4_1. Bytes `32j..32j+32` of the quants hold sub-block `2j`
/// (low nibbles) and `2j + 1` (high); Q5_K's fifth bit of value `l` of sub-block `s` is
/// bit `s` of `qh[l]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q45_k<const Q5: bool, const T: usize>(w: &[u8], x: [*const f32; T], nb: usize, xs: [&[f32]; T]) -> [f32; T] {
    let (ts, qoff) = if Q5 { (176, 48) } else { (144, 16) };
    let m4 = _mm256_set1_epi32(0xF);
    let one = _mm256_set1_epi32(1);
    let c = if Q5 { 16 } else { 8 };
    let mid = _mm256_set1_epi32(c);
    let mut acc = [[_mm256_setzero_ps(); 2]; T];
    let mut mins = [_mm256_setzero_ps(); T];
    unsafe {
        for b in 0..nb {
            let blk = w.get_unchecked(ts * b..ts * (b + 1));
            let (sc, mn) = super::k4_scales(blk);
            let p = blk.as_ptr();
            let h = if Q5 { [0, 1, 2, 3].map(|k| u8x8(p.add(16 + 8 * k))) } else { [_mm256_setzero_si256(); 4] };
            for j in 0..4 {
                let q = p.add(qoff + 32 * j);
                let v = [0, 1, 2, 3].map(|k| u8x8(q.add(8 * k)));
                let mut lo = v.map(|v| _mm256_and_si256(v, m4));
                let mut hi = v.map(|v| _mm256_srli_epi32::<4>(v));
                if Q5 {
                    let bit = |h: __m256i, s: i32| {
                        let down = _mm256_srl_epi32(h, _mm_cvtsi32_si128(s));
                        _mm256_slli_epi32::<4>(_mm256_and_si256(down, one))
                    };
                    for k in 0..4 {
                        lo[k] = _mm256_or_si256(lo[k], bit(h[k], 2 * j as i32));
                        hi[k] = _mm256_or_si256(hi[k], bit(h[k], 2 * j as i32 + 1));
                    }
                }
                let centred = |v| f(_mm256_sub_epi32(v, mid));
                let (lo, hi) = (lo.map(centred), hi.map(centred));
                let (al, ah) = (_mm256_set1_ps(sc[2 * j]), _mm256_set1_ps(sc[2 * j + 1]));
                for t in 0..T {
                    let xl = x[t].add(256 * b + 64 * j);
                    let xh = xl.add(32);
                    let sl = dot32(lo, [xl, xl.add(8), xl.add(16), xl.add(24)]);
                    let sh = dot32(hi, [xh, xh.add(8), xh.add(16), xh.add(24)]);
                    acc[t][0] = _mm256_fmadd_ps(al, sl, acc[t][0]);
                    acc[t][1] = _mm256_fmadd_ps(ah, sh, acc[t][1]);
                }
            }
            // c·a − m, as the 8 sub-blocks' offsets
            let off =
                _mm256_fmsub_ps(_mm256_set1_ps(c as f32), _mm256_loadu_ps(sc.as_ptr()), _mm256_loadu_ps(mn.as_ptr()));
            for t in 0..T {
                if let Some(xsb) = xs[t].get(8 * b..8 * b + 8) {
                    mins[t] = _mm256_fmadd_ps(off, _mm256_loadu_ps(xsb.as_ptr()), mins[t]);
                }
            }
        }
        std::array::from_fn(|t| hsum(_mm256_add_ps(acc[t][0], acc[t][1])) + hsum(mins[t]))
    }
}

/// Q6_K: `d·sc_g · Σ(q − 32)x` per 16-value group `g`. Per half `h` of the super-block,
/// byte `l` of `ql` holds values `l` (low nibble) and `l + 64` (high), byte `l + 32` values
/// `l + 32` and `l + 96`; the two high bits of those four are `qh[l]`'s bit pairs.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k<const T: usize>(w: *const u8, x: [*const f32; T], nb: usize) -> [f32; T] {
    let m4 = _mm256_set1_epi32(0xF);
    let m30 = _mm256_set1_epi32(0x30);
    let m32 = _mm256_set1_epi32(32);
    let mut acc = [[_mm256_setzero_ps(); 4]; T];
    unsafe {
        for b in 0..nb {
            let p = w.add(210 * b);
            let d = _mm256_set1_ps(half(p.add(208)));
            let mut scale = [0f32; 16];
            _mm256_storeu_ps(scale.as_mut_ptr(), _mm256_mul_ps(d, i8x8(p.add(192))));
            _mm256_storeu_ps(scale.as_mut_ptr().add(8), _mm256_mul_ps(d, i8x8(p.add(200))));
            for h in 0..2 {
                let (ql, qh) = (p.add(64 * h), p.add(128 + 32 * h));
                for i in 0..2 {
                    // values l = 16i..16i+16 of each quarter k: two groups of 8
                    let q = [0, 1].map(|u| {
                        let l = 16 * i + 8 * u;
                        let (a, c, hb) = (u8x8(ql.add(l)), u8x8(ql.add(l + 32)), u8x8(qh.add(l)));
                        [
                            _mm256_or_si256(_mm256_and_si256(a, m4), _mm256_and_si256(_mm256_slli_epi32::<4>(hb), m30)),
                            _mm256_or_si256(_mm256_and_si256(c, m4), _mm256_and_si256(_mm256_slli_epi32::<2>(hb), m30)),
                            _mm256_or_si256(_mm256_srli_epi32::<4>(a), _mm256_and_si256(hb, m30)),
                            _mm256_or_si256(
                                _mm256_srli_epi32::<4>(c),
                                _mm256_and_si256(_mm256_srli_epi32::<2>(hb), m30),
                            ),
                        ]
                        .map(|v| f(_mm256_sub_epi32(v, m32)))
                    });
                    for k in 0..4 {
                        let a = _mm256_set1_ps(scale[8 * h + 2 * k + i]);
                        for t in 0..T {
                            let xk = x[t].add(256 * b + 128 * h + 32 * k + 16 * i);
                            let s = _mm256_fmadd_ps(q[1][k], ld(xk.add(8)), _mm256_mul_ps(q[0][k], ld(xk)));
                            acc[t][k] = _mm256_fmadd_ps(a, s, acc[t][k]);
                        }
                    }
                }
            }
        }
        std::array::from_fn(|t| {
            let a = &acc[t];
            hsum(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])))
        })
    }
}

/// Q2_K (`Q3 = false`) and Q3_K: 16 groups of 16 values per super-block. Value
/// `128h + 32j + l` is bits `2j` of `qs[32h + l]` (group `g = (128h + 32j + l) / 16`, so group
/// `g`'s values and x are contiguous); Q3_K subtracts 4 where bit `4h + j` of `hmask[l]` is
/// clear. Q2_K's `a·q − m` is centred as Q4_1: `a·Σ(q − 2)x + (2a − m)·Σx` (`xs`: Σx per 16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q23_k<const Q3: bool>(w: &[u8], x: *const f32, nb: usize, xs: &[f32]) -> f32 {
    use crate::quant::blocks::{q2_k, q3_k, scale_q3_k};
    let (ts, qoff) = if Q3 { (q3_k::BYTES, q3_k::QS) } else { (q2_k::BYTES, q2_k::QS) };
    let three = _mm256_set1_epi32(3);
    let one = _mm256_set1_epi32(1);
    let mid = _mm256_set1_epi32(if Q3 { 4 } else { 2 });
    let mut t = [_mm256_setzero_ps(); 2];
    let mut mins = 0f32;
    unsafe {
        for b in 0..nb {
            let blk = w.get_unchecked(ts * b..ts * (b + 1));
            let p = blk.as_ptr();
            let d = half(p.add(if Q3 { q3_k::D } else { q2_k::D }));
            let dmin = if Q3 { 0.0 } else { half(p.add(q2_k::DMIN)) };
            for g in 0..16 {
                let (h, j, u) = (g / 8, (g % 8) / 2, g % 2);
                let shift = _mm_cvtsi32_si128(2 * j as i32);
                let q = p.add(qoff + 32 * h + 16 * u);
                let mut v = [0, 1].map(|k| _mm256_and_si256(_mm256_srl_epi32(u8x8(q.add(8 * k)), shift), three));
                let a = if Q3 {
                    // q + 4·bit − 4: the hmask bit set keeps q, clear subtracts 4
                    let hs = _mm_cvtsi32_si128((4 * h + j) as i32);
                    let hm = p.add(q3_k::HMASK + 16 * u);
                    for (k, v) in v.iter_mut().enumerate() {
                        let bit = _mm256_and_si256(_mm256_srl_epi32(u8x8(hm.add(8 * k)), hs), one);
                        *v = _mm256_add_epi32(*v, _mm256_slli_epi32::<2>(bit));
                    }
                    d * (scale_q3_k(g, &blk[q3_k::SCALES..]) as i32 - 32) as f32
                } else {
                    let sc = blk[q2_k::SCALES + g];
                    let a = d * (sc & 0xF) as f32;
                    mins += (2.0 * a - dmin * (sc >> 4) as f32) * xs.get(16 * b + g).copied().unwrap_or(0.0);
                    a
                };
                let xg = x.add(256 * b + 16 * g);
                let [q0, q1] = v.map(|v| f(_mm256_sub_epi32(v, mid)));
                let s = _mm256_fmadd_ps(q1, ld(xg.add(8)), _mm256_mul_ps(q0, ld(xg)));
                t[u] = _mm256_fmadd_ps(_mm256_set1_ps(a), s, t[u]);
            }
        }
        hsum(_mm256_add_ps(t[0], t[1])) + mins
    }
}

/// `Σ q·x` over one 32-value IQ4 block (16 bytes at `q`: value `j` low nibble, `j + 16` high),
/// its levels looked up in `kvalues_iq4nl` with one byte shuffle per 16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4_32(q: *const u8, x: *const f32) -> __m256 {
    unsafe {
        let table = _mm_loadu_si128(crate::quant::blocks::KVALUES_IQ4NL.as_ptr() as *const __m128i);
        let m4 = _mm_set1_epi8(0xF);
        let v = load16(q);
        let lo = _mm_shuffle_epi8(table, _mm_and_si128(v, m4));
        let hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16::<4>(v), m4));
        let w = |v: __m128i| f(_mm256_cvtepi8_epi32(v));
        dot32(
            [w(lo), w(_mm_srli_si128::<8>(lo)), w(hi), w(_mm_srli_si128::<8>(hi))],
            [x, x.add(8), x.add(16), x.add(24)],
        )
    }
}

/// IQ4_NL: `d · Σ kvalues[q]·x` per 32-value block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4_nl(w: *const u8, x: *const f32, nb: usize) -> f32 {
    unsafe {
        blocks::<false, 1>(nb, [&[]], |b| (half(w.add(18 * b)), [iq4_32(w.add(18 * b + 2), x.add(32 * b))], 0.0))[0]
    }
}

/// IQ4_XS: IQ4_NL's 32-value blocks under one f16 `d` and 6-bit scales `d·(ls − 32)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4_xs(w: &[u8], x: *const f32, nb: usize) -> f32 {
    use crate::quant::blocks::{iq4_xs, scale_iq4_xs};
    unsafe {
        blocks::<false, 1>(nb * 8, [&[]], |i| {
            let (b, ib) = (i / 8, i % 8);
            let blk = w.get_unchecked(iq4_xs::BYTES * b..iq4_xs::BYTES * (b + 1));
            let d = half(blk.as_ptr()) * (scale_iq4_xs(ib, blk) as i32 - 32) as f32;
            (d, [iq4_32(blk.as_ptr().add(iq4_xs::QS + 16 * ib), x.add(32 * i))], 0.0)
        })[0]
    }
}

/// `T` tokens' dot products with one row of `ty` (`n` values; `xs[t]`: token `t`'s sums for
/// the formats with a min). The formats with a `T`-token kernel load each block once for all
/// tokens; the others run one token at a time. Either way each token's result is the one
/// `T = 1` gives, bit for bit.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn row_dots<const T: usize>(
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
            F16 => half_dot::<T>(false, p, x, n),
            BF16 => half_dot::<T>(true, p, x, n),
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
pub(super) fn sums(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    use GgmlType::*;
    // SAFETY: only called where `Simd::Avx2` (or better) was detected.
    match ty {
        Q4_1 | Q5_1 | Q4K | Q5K => unsafe { sums32(x) },
        Q2K => unsafe { sums16(x) },
        _ => Vec::new(),
    }
}

/// SAFETY: the caller checked `w` holds `out.len()` rows of `rb` bytes of whole blocks
/// covering `x`.
#[target_feature(enable = "avx2,fma,f16c")]
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
