//! 16-lane versions of the hottest kernels (SmolLM2's Q4_1/Q8_0, Llama 3's Q4_K/Q6_K, and the
//! low-bit formats that fit an 8 GB device: Q2_K, Q3_K, IQ4_NL; IQ4_XS keeps the AVX2 kernel,
//! whose 8-lane sums stayed within the 1e-5 · std fidelity bound where 16 lanes did not),
//! the same factored arithmetic as [`avx2`](super::avx2): a 16-byte load widens to 16 quants at once, so a
//! block of 32 takes half the instructions (the decode loop is instruction-bound).

use super::avx2::{half, halves2, hsum};
use super::GgmlType;
use std::arch::x86_64::*;

pub fn has(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, Q8_0 | Q4_0 | Q4_1 | Q4K | Q6K | Q2K | Q3K | IQ4NL)
}

#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn u8x16(p: *const u8) -> __m512i {
    unsafe { _mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i)) }
}

#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn i8x16(p: *const u8) -> __m512 {
    unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i))) }
}

#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn ld(x: *const f32) -> __m512 {
    unsafe { _mm512_loadu_ps(x) }
}

/// As `avx2::blocks`, 16 lanes.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn blocks<const MIN: bool>(nb: usize, xs: &[f32], blk: impl Fn(usize) -> (f32, __m512, f32)) -> f32 {
    let mut t = [_mm512_setzero_ps(); 2];
    let mut c = [0f32; 2];
    let one = |b: usize, t: &mut __m512, c: &mut f32| {
        let (d, s, cb) = blk(b);
        *t = _mm512_fmadd_ps(_mm512_set1_ps(d), s, *t);
        if MIN {
            *c = cb.mul_add(xs.get(b).copied().unwrap_or(0.0), *c);
        }
    };
    let mut b = 0;
    while b + 1 < nb {
        let ([t0, t1], [c0, c1]) = (&mut t, &mut c);
        one(b, t0, c0);
        one(b + 1, t1, c1);
        b += 2;
    }
    if b < nb {
        one(b, &mut t[0], &mut c[0]);
    }
    _mm512_reduce_add_ps(_mm512_add_ps(t[0], t[1])) + (c[0] + c[1])
}

#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn q8_0(w: *const u8, x: *const f32, nb: usize) -> f32 {
    unsafe {
        blocks::<false>(nb, &[], |b| {
            let (p, xb) = (w.add(34 * b), x.add(32 * b));
            let s = _mm512_fmadd_ps(i8x16(p.add(18)), ld(xb.add(16)), _mm512_mul_ps(i8x16(p.add(2)), ld(xb)));
            (half(p), s, 0.0)
        })
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn q4<const Q41: bool>(w: *const u8, x: *const f32, nb: usize, xs: &[f32]) -> f32 {
    let (ts, qoff) = if Q41 { (20, 4) } else { (18, 2) };
    let m4 = _mm512_set1_epi32(0xF);
    let eight = _mm512_set1_epi32(8);
    unsafe {
        blocks::<Q41>(nb, xs, |b| {
            let (p, xb) = (w.add(ts * b), x.add(32 * b));
            let v = u8x16(p.add(qoff));
            let lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, m4), eight));
            let hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32::<4>(v), eight));
            let s = _mm512_fmadd_ps(hi, ld(xb.add(16)), _mm512_mul_ps(lo, ld(xb)));
            let (d, m) = halves2(p);
            (d, s, if Q41 { 8.0f32.mul_add(d, m) } else { 0.0 })
        })
    }
}

/// Q4_K as `avx2::q45_k` (a 16-byte load is 16 quants of sub-block `2j` and 16 of `2j + 1`).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn q4_k(w: &[u8], x: *const f32, nb: usize, xs: &[f32]) -> f32 {
    let m4 = _mm512_set1_epi32(0xF);
    let mid = _mm512_set1_epi32(8);
    let mut t = [_mm512_setzero_ps(); 2];
    let mut mins = _mm256_setzero_ps();
    unsafe {
        for b in 0..nb {
            let blk = w.get_unchecked(144 * b..144 * (b + 1));
            let (sc, mn) = super::k4_scales(blk);
            let q = blk.as_ptr().add(16);
            for j in 0..4 {
                let (v0, v1) = (u8x16(q.add(32 * j)), u8x16(q.add(32 * j + 16)));
                let lo = |v| _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, m4), mid));
                let hi = |v| _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32::<4>(v), mid));
                let xl = x.add(256 * b + 64 * j);
                let xh = xl.add(32);
                let sl = _mm512_fmadd_ps(lo(v1), ld(xl.add(16)), _mm512_mul_ps(lo(v0), ld(xl)));
                let sh = _mm512_fmadd_ps(hi(v1), ld(xh.add(16)), _mm512_mul_ps(hi(v0), ld(xh)));
                t[0] = _mm512_fmadd_ps(_mm512_set1_ps(sc[2 * j]), sl, t[0]);
                t[1] = _mm512_fmadd_ps(_mm512_set1_ps(sc[2 * j + 1]), sh, t[1]);
            }
            if let Some(xsb) = xs.get(8 * b..8 * b + 8) {
                let off =
                    _mm256_fmsub_ps(_mm256_set1_ps(8.0), _mm256_loadu_ps(sc.as_ptr()), _mm256_loadu_ps(mn.as_ptr()));
                mins = _mm256_fmadd_ps(off, _mm256_loadu_ps(xsb.as_ptr()), mins);
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(t[0], t[1])) + hsum(mins)
    }
}

/// Q6_K as `avx2::q6_k`: 16 values of a quarter share one scale.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn q6_k(w: *const u8, x: *const f32, nb: usize) -> f32 {
    let m4 = _mm512_set1_epi32(0xF);
    let m30 = _mm512_set1_epi32(0x30);
    let m32 = _mm512_set1_epi32(32);
    let mut t = [_mm512_setzero_ps(); 4];
    unsafe {
        for b in 0..nb {
            let p = w.add(210 * b);
            let d = _mm512_set1_ps(half(p.add(208)));
            let mut scale = [0f32; 16];
            _mm512_storeu_ps(scale.as_mut_ptr(), _mm512_mul_ps(d, i8x16(p.add(192))));
            for h in 0..2 {
                let (ql, qh) = (p.add(64 * h), p.add(128 + 32 * h));
                let xh = x.add(256 * b + 128 * h);
                for i in 0..2 {
                    let (a, c, hb) = (u8x16(ql.add(16 * i)), u8x16(ql.add(32 + 16 * i)), u8x16(qh.add(16 * i)));
                    let q = [
                        _mm512_or_si512(_mm512_and_si512(a, m4), _mm512_and_si512(_mm512_slli_epi32::<4>(hb), m30)),
                        _mm512_or_si512(_mm512_and_si512(c, m4), _mm512_and_si512(_mm512_slli_epi32::<2>(hb), m30)),
                        _mm512_or_si512(_mm512_srli_epi32::<4>(a), _mm512_and_si512(hb, m30)),
                        _mm512_or_si512(_mm512_srli_epi32::<4>(c), _mm512_and_si512(_mm512_srli_epi32::<2>(hb), m30)),
                    ];
                    for (k, qk) in q.into_iter().enumerate() {
                        let qf = _mm512_cvtepi32_ps(_mm512_sub_epi32(qk, m32));
                        let s = _mm512_mul_ps(qf, ld(xh.add(32 * k + 16 * i)));
                        t[k] = _mm512_fmadd_ps(_mm512_set1_ps(scale[8 * h + 2 * k + i]), s, t[k]);
                    }
                }
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(t[0], t[1]), _mm512_add_ps(t[2], t[3])))
    }
}

/// Q2_K and Q3_K as `avx2::q23_k`: a 16-value group is one vector.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn q23_k<const Q3: bool>(w: &[u8], x: *const f32, nb: usize, xs: &[f32]) -> f32 {
    use crate::quant::blocks::{q2_k, q3_k, scale_q3_k};
    let (ts, qoff) = if Q3 { (q3_k::BYTES, q3_k::QS) } else { (q2_k::BYTES, q2_k::QS) };
    let three = _mm512_set1_epi32(3);
    let one = _mm512_set1_epi32(1);
    let mid = _mm512_set1_epi32(if Q3 { 4 } else { 2 });
    let mut t = [_mm512_setzero_ps(); 2];
    let mut mins = 0f32;
    unsafe {
        for b in 0..nb {
            let blk = w.get_unchecked(ts * b..ts * (b + 1));
            let p = blk.as_ptr();
            let d = half(p.add(if Q3 { q3_k::D } else { q2_k::D }));
            let dmin = if Q3 { 0.0 } else { half(p.add(q2_k::DMIN)) };
            for g in 0..16 {
                let (h, j, u) = (g / 8, (g % 8) / 2, g % 2);
                let v = u8x16(p.add(qoff + 32 * h + 16 * u));
                let mut v = _mm512_and_si512(_mm512_srl_epi32(v, _mm_cvtsi32_si128(2 * j as i32)), three);
                let a = if Q3 {
                    let hm = u8x16(p.add(q3_k::HMASK + 16 * u));
                    let bit = _mm512_and_si512(_mm512_srl_epi32(hm, _mm_cvtsi32_si128((4 * h + j) as i32)), one);
                    v = _mm512_add_epi32(v, _mm512_slli_epi32::<2>(bit));
                    d * (scale_q3_k(g, &blk[q3_k::SCALES..]) as i32 - 32) as f32
                } else {
                    let sc = blk[q2_k::SCALES + g];
                    let a = d * (sc & 0xF) as f32;
                    mins += (2.0 * a - dmin * (sc >> 4) as f32) * xs.get(16 * b + g).copied().unwrap_or(0.0);
                    a
                };
                let s = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v, mid)), ld(x.add(256 * b + 16 * g)));
                t[u] = _mm512_fmadd_ps(_mm512_set1_ps(a), s, t[u]);
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(t[0], t[1])) + mins
    }
}

/// `Σ q·x` over one 32-value IQ4 block, as `avx2::iq4_32` (16 levels a vector).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn iq4_32(q: *const u8, x: *const f32) -> __m512 {
    unsafe {
        let table = _mm_loadu_si128(crate::quant::blocks::KVALUES_IQ4NL.as_ptr() as *const __m128i);
        let m4 = _mm_set1_epi8(0xF);
        let v = _mm_loadu_si128(q as *const __m128i);
        let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_shuffle_epi8(table, _mm_and_si128(v, m4))));
        let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_shuffle_epi8(
            table,
            _mm_and_si128(_mm_srli_epi16::<4>(v), m4),
        )));
        _mm512_fmadd_ps(hi, ld(x.add(16)), _mm512_mul_ps(lo, ld(x)))
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn iq4_nl(w: *const u8, x: *const f32, nb: usize) -> f32 {
    unsafe { blocks::<false>(nb, &[], |b| (half(w.add(18 * b)), iq4_32(w.add(18 * b + 2), x.add(32 * b)), 0.0)) }
}

/// SAFETY: as for `avx2::rows`, and `has(ty)`.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub unsafe fn rows(ty: GgmlType, w: &[u8], rb: usize, x: &[f32], out: &mut [f32]) {
    let (xp, n) = (x.as_ptr(), x.len());
    let nb = n / ty.block_size() as usize;
    let xs = match ty {
        GgmlType::Q4_1 | GgmlType::Q4K => unsafe { super::avx2::sums32(x) },
        GgmlType::Q2K => unsafe { super::avx2::sums16(x) },
        _ => Vec::new(),
    };
    for (r, o) in out.iter_mut().enumerate() {
        let row = unsafe { w.get_unchecked(r * rb..(r + 1) * rb) };
        let p = row.as_ptr();
        *o = unsafe {
            match ty {
                GgmlType::Q8_0 => q8_0(p, xp, nb),
                GgmlType::Q4_0 => q4::<false>(p, xp, nb, &xs),
                GgmlType::Q4_1 => q4::<true>(p, xp, nb, &xs),
                GgmlType::Q4K => q4_k(row, xp, nb, &xs),
                GgmlType::Q6K => q6_k(p, xp, nb),
                GgmlType::Q2K => q23_k::<false>(row, xp, nb, &xs),
                GgmlType::Q3K => q23_k::<true>(row, xp, nb, &xs),
                GgmlType::IQ4NL => iq4_nl(p, xp, nb),
                _ => 0.0,
            }
        };
    }
}
