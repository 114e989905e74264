//! 16-lane versions of the hottest kernels (SmolLM2's Q4_1/Q8_0, Llama 3's Q4_K/Q6_K, F16/BF16
//! (speculative verification of an F16 target is FMA-bound, where 16 lanes halve the work), and the
//! low-bit formats that fit an 8 GB device: Q2_K, Q3_K, IQ4_NL; IQ4_XS keeps the AVX2 kernel,
//! whose 8-lane sums stayed within the 1e-5 · std fidelity bound where 16 lanes did not),
//! the same factored arithmetic as [`avx2`](super::avx2): a 16-byte load widens to 16 quants at once, so a
//! block of 32 takes half the instructions (the decode loop is instruction-bound).

use super::avx2::{half, halves2, hsum};
use super::GgmlType;
use std::arch::x86_64::*;

pub fn has(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q4K | Q6K | Q2K | Q3K | IQ4NL)
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

/// One F16/BF16 row's 16 weights from `p`, widened to f32.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn half16(bf: bool, p: *const u8) -> __m512 {
    unsafe {
        let h = _mm256_loadu_si256(p as *const __m256i);
        if bf {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        } else {
            _mm512_cvtph_ps(h)
        }
    }
}

/// A [`half_dot`] row's sum from its two accumulators, then the values past the last 32.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn half_sum(bf: bool, acc: [__m512; 2], w: *const u8, x: *const f32, from: usize, n: usize) -> f32 {
    let mut s = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
    for k in from..n {
        // SAFETY: the caller's row and token hold `n` values
        let (b, x) = unsafe { ([*w.add(2 * k), *w.add(2 * k + 1)], *x.add(k)) };
        let v = if bf { half::bf16::from_le_bytes(b).to_f32() } else { half::f16::from_le_bytes(b).to_f32() };
        s += v * x;
    }
    s
}

/// F16/BF16 rows with `T` tokens, as `avx2::half_dot`: 16 weights widened per load, so with
/// several tokens (where the FMAs, not the weight reads, bound the time) half the instructions.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn half_dot<const T: usize>(bf: bool, w: *const u8, x: [*const f32; T], n: usize) -> [f32; T] {
    let mut acc = [[_mm512_setzero_ps(); 2]; T];
    let mut i = 0;
    unsafe {
        while i + 32 <= n {
            let (w0, w1) = (half16(bf, w.add(2 * i)), half16(bf, w.add(2 * i + 32)));
            for t in 0..T {
                acc[t][0] = _mm512_fmadd_ps(w0, ld(x[t].add(i)), acc[t][0]);
                acc[t][1] = _mm512_fmadd_ps(w1, ld(x[t].add(i + 16)), acc[t][1]);
            }
            i += 32;
        }
        // a loop, not a closure over `acc`: that kept the accumulators in memory
        let mut out = [0f32; T];
        for t in 0..T {
            out[t] = half_sum(bf, acc[t], w, x[t], i, n);
        }
        out
    }
}

/// Two rows of [`half_dot`] at once, each row's sums exactly its own (the same FMAs in the same
/// order): both rows share each token load, so 4 tokens' 16 FMAs per 32 weights take 8 loads
/// of the tokens, where one row at a time takes 8 for 8 FMAs (the verification of an F16
/// target, bound by those loads and the FMAs). 16 accumulators, 4 weights and 2 tokens fit
/// the 32 registers.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn half_dot2<const T: usize>(bf: bool, w: [*const u8; 2], x: [*const f32; T], n: usize) -> [[f32; T]; 2] {
    let mut acc = [[[_mm512_setzero_ps(); 2]; T]; 2];
    let mut i = 0;
    unsafe {
        while i + 32 <= n {
            let a = [half16(bf, w[0].add(2 * i)), half16(bf, w[0].add(2 * i + 32))];
            let b = [half16(bf, w[1].add(2 * i)), half16(bf, w[1].add(2 * i + 32))];
            for t in 0..T {
                let (x0, x1) = (ld(x[t].add(i)), ld(x[t].add(i + 16)));
                acc[0][t][0] = _mm512_fmadd_ps(a[0], x0, acc[0][t][0]);
                acc[0][t][1] = _mm512_fmadd_ps(a[1], x1, acc[0][t][1]);
                acc[1][t][0] = _mm512_fmadd_ps(b[0], x0, acc[1][t][0]);
                acc[1][t][1] = _mm512_fmadd_ps(b[1], x1, acc[1][t][1]);
            }
            i += 32;
        }
        let mut out = [[0f32; T]; 2];
        for r in 0..2 {
            for t in 0..T {
                out[r][t] = half_sum(bf, acc[r][t], w[r], x[t], i, n);
            }
        }
        out
    }
}

/// As `avx2::blocks`, 16 lanes.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn blocks<const MIN: bool, const T: usize>(
    nb: usize,
    xs: [&[f32]; T],
    blk: impl Fn(usize) -> (f32, [__m512; T], f32),
) -> [f32; T] {
    let mut acc = [[_mm512_setzero_ps(); 2]; T];
    let mut c = [[0f32; 2]; T];
    let mut one = |b: usize, k: usize| {
        let (d, s, cb) = blk(b);
        let dv = _mm512_set1_ps(d);
        for t in 0..T {
            acc[t][k] = _mm512_fmadd_ps(dv, s[t], acc[t][k]);
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
    std::array::from_fn(|t| _mm512_reduce_add_ps(_mm512_add_ps(acc[t][0], acc[t][1])) + (c[t][0] + c[t][1]))
}

#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn q8_0<const T: usize>(w: *const u8, x: [*const f32; T], nb: usize) -> [f32; T] {
    unsafe {
        blocks::<false, T>(nb, [&[]; T], |b| {
            let p = w.add(34 * b);
            let (q0, q1) = (i8x16(p.add(2)), i8x16(p.add(18)));
            let s = x.map(|x| {
                let xb = x.add(32 * b);
                _mm512_fmadd_ps(q1, ld(xb.add(16)), _mm512_mul_ps(q0, ld(xb)))
            });
            (half(p), s, 0.0)
        })
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn q4<const Q41: bool, const T: usize>(
    w: *const u8,
    x: [*const f32; T],
    nb: usize,
    xs: [&[f32]; T],
) -> [f32; T] {
    let (ts, qoff) = if Q41 { (20, 4) } else { (18, 2) };
    let m4 = _mm512_set1_epi32(0xF);
    let eight = _mm512_set1_epi32(8);
    unsafe {
        blocks::<Q41, T>(nb, xs, |b| {
            let p = w.add(ts * b);
            let v = u8x16(p.add(qoff));
            let lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, m4), eight));
            let hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32::<4>(v), eight));
            let s = x.map(|x| {
                let xb = x.add(32 * b);
                _mm512_fmadd_ps(hi, ld(xb.add(16)), _mm512_mul_ps(lo, ld(xb)))
            });
            let (d, m) = halves2(p);
            (d, s, if Q41 { 8.0f32.mul_add(d, m) } else { 0.0 })
        })
    }
}

/// Q4_K as `avx2::q45_k` (a 16-byte load is 16 quants of sub-block `2j` and 16 of `2j + 1`).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn q4_k<const T: usize>(w: &[u8], x: [*const f32; T], nb: usize, xs: [&[f32]; T]) -> [f32; T] {
    let m4 = _mm512_set1_epi32(0xF);
    let mid = _mm512_set1_epi32(8);
    let mut acc = [[_mm512_setzero_ps(); 2]; T];
    let mut mins = [_mm256_setzero_ps(); T];
    unsafe {
        for b in 0..nb {
            let blk = w.get_unchecked(144 * b..144 * (b + 1));
            let (sc, mn) = super::k4_scales(blk);
            let q = blk.as_ptr().add(16);
            for j in 0..4 {
                let (v0, v1) = (u8x16(q.add(32 * j)), u8x16(q.add(32 * j + 16)));
                let lo = |v| _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, m4), mid));
                let hi = |v| _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32::<4>(v), mid));
                let (l0, l1, h0, h1) = (lo(v0), lo(v1), hi(v0), hi(v1));
                let (al, ah) = (_mm512_set1_ps(sc[2 * j]), _mm512_set1_ps(sc[2 * j + 1]));
                for t in 0..T {
                    let xl = x[t].add(256 * b + 64 * j);
                    let xh = xl.add(32);
                    let sl = _mm512_fmadd_ps(l1, ld(xl.add(16)), _mm512_mul_ps(l0, ld(xl)));
                    let sh = _mm512_fmadd_ps(h1, ld(xh.add(16)), _mm512_mul_ps(h0, ld(xh)));
                    acc[t][0] = _mm512_fmadd_ps(al, sl, acc[t][0]);
                    acc[t][1] = _mm512_fmadd_ps(ah, sh, acc[t][1]);
                }
            }
            let off = _mm256_fmsub_ps(_mm256_set1_ps(8.0), _mm256_loadu_ps(sc.as_ptr()), _mm256_loadu_ps(mn.as_ptr()));
            for t in 0..T {
                if let Some(xsb) = xs[t].get(8 * b..8 * b + 8) {
                    mins[t] = _mm256_fmadd_ps(off, _mm256_loadu_ps(xsb.as_ptr()), mins[t]);
                }
            }
        }
        std::array::from_fn(|t| _mm512_reduce_add_ps(_mm512_add_ps(acc[t][0], acc[t][1])) + hsum(mins[t]))
    }
}

/// Q6_K as `avx2::q6_k`: 16 values of a quarter share one scale.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn q6_k<const T: usize>(w: *const u8, x: [*const f32; T], nb: usize) -> [f32; T] {
    let m4 = _mm512_set1_epi32(0xF);
    let m30 = _mm512_set1_epi32(0x30);
    let m32 = _mm512_set1_epi32(32);
    let mut acc = [[_mm512_setzero_ps(); 4]; T];
    unsafe {
        for b in 0..nb {
            let p = w.add(210 * b);
            let d = _mm512_set1_ps(half(p.add(208)));
            let mut scale = [0f32; 16];
            _mm512_storeu_ps(scale.as_mut_ptr(), _mm512_mul_ps(d, i8x16(p.add(192))));
            for h in 0..2 {
                let (ql, qh) = (p.add(64 * h), p.add(128 + 32 * h));
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
                        let a = _mm512_set1_ps(scale[8 * h + 2 * k + i]);
                        for t in 0..T {
                            let s = _mm512_mul_ps(qf, ld(x[t].add(256 * b + 128 * h + 32 * k + 16 * i)));
                            acc[t][k] = _mm512_fmadd_ps(a, s, acc[t][k]);
                        }
                    }
                }
            }
        }
        std::array::from_fn(|t| {
            let a = &acc[t];
            _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])))
        })
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
    unsafe {
        blocks::<false, 1>(nb, [&[]], |b| (half(w.add(18 * b)), [iq4_32(w.add(18 * b + 2), x.add(32 * b))], 0.0))[0]
    }
}

/// `T` tokens' dot products with one row, as `avx2::row_dots` (the formats of [`has`]).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
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
            F16 => half_dot::<T>(false, p, x, n),
            BF16 => half_dot::<T>(true, p, x, n),
            Q8_0 => q8_0::<T>(p, x, nb),
            Q4_0 => q4::<false, T>(p, x, nb, xs),
            Q4_1 => q4::<true, T>(p, x, nb, xs),
            Q4K => q4_k::<T>(row, x, nb, xs),
            Q6K => q6_k::<T>(p, x, nb),
            _ => std::array::from_fn(|t| match ty {
                Q2K => q23_k::<false>(row, x[t], nb, xs[t]),
                Q3K => q23_k::<true>(row, x[t], nb, xs[t]),
                IQ4NL => iq4_nl(p, x[t], nb),
                _ => 0.0,
            }),
        }
    }
}

/// SAFETY: as for `avx2::rows`, and `has(ty)`.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub unsafe fn rows(ty: GgmlType, w: &[u8], rb: usize, x: &[f32], out: &mut [f32]) {
    let xs = super::avx2::sums(ty, x);
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
    fn pairs(ty: GgmlType) -> bool {
        matches!(ty, GgmlType::F16 | GgmlType::BF16)
    }
    unsafe fn dots2<const T: usize>(
        ty: GgmlType,
        rows: [&[u8]; 2],
        x: [*const f32; T],
        xs: [&[f32]; T],
        n: usize,
    ) -> [[f32; T]; 2] {
        let w = rows.map(<[u8]>::as_ptr);
        // SAFETY: passed on from the caller
        unsafe {
            match ty {
                GgmlType::F16 => half_dot2::<T>(false, w, x, n),
                GgmlType::BF16 => half_dot2::<T>(true, w, x, n),
                _ => rows.map(|row| row_dots::<T>(ty, row, x, xs, n)),
            }
        }
    }
    fn sums(ty: GgmlType, x: &[f32]) -> Vec<f32> {
        super::avx2::sums(ty, x)
    }
}
