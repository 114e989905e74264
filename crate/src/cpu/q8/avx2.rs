//! x86 AVX2 integer dots, ggml's AVX2 `vec_dot_*_q8_*` arithmetic: unsigned weight quants times
//! signed activation bytes in `_mm256_maddubs_epi16` (pairs summed to i16, which cannot
//! overflow: |q_w| ≤ 63, |q_x| ≤ 128), then `_mm256_madd_epi16` to i32 (by 1, or by the
//! K-quants' sub-block scales), one f32 convert and FMA per block. The formats centred on a
//! middle quant (Q4_0's 8, Q5_0's 16, Q6_K's 32) subtract `maddubs(c, y)` in i16, so every
//! integer sum is the scalar kernel's; the formats with a min add `m·d_x·Σq_x` in f32.

use super::{prefetch, Q8Row};
use crate::cpu::dot::avx2::{half, hsum};
use crate::gguf::GgmlType;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load(p: *const u8) -> __m256i {
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_i8(p: *const i8) -> __m256i {
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// 16 bytes of nibbles as 32 bytes: low nibbles (values 0..16), then high (16..32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    let lo = unsafe { _mm_loadu_si128(p as *const __m128i) };
    let hi = _mm_srli_epi16::<4>(lo);
    _mm256_and_si256(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(0xF))
}

/// The u32 at `p` as 32 bytes, byte `j` 0xFF where bit `j` is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bits32(p: *const u8) -> __m256i {
    let x = unsafe { (p as *const i32).read_unaligned() };
    let shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// Σ of u8 × i8 products, 4 per i32 lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u8i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// Σ of `(u − C)` × i8 products, 4 per i32 lane: `maddubs(u, s) − maddubs(C, s)` in i16 (at
/// most 31·128·2 + C·128·2 = 12032: no overflow).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_centred<const C: i8>(u: __m256i, s: __m256i) -> __m256i {
    let p = _mm256_sub_epi16(_mm256_maddubs_epi16(u, s), _mm256_maddubs_epi16(_mm256_set1_epi8(C), s));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// The 32-value formats, for `T` tokens at once (prefill: the weights are unpacked once per
/// block for all of them): `blk(b) = (d_w, quants, c_w)`, `dot(quants, y)` the i32 lanes of
/// `Σ q·y`; accumulates `d_w·d_y·Σqy + c_w·d_y·Σq_y` per token (two vector chains each, the same
/// operations per token whatever `T`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn b32<const T: usize>(
    nb: usize,
    a: &[Q8Row; T],
    blk: impl Fn(usize) -> (f32, __m256i, f32),
    dot: impl Fn(__m256i, __m256i) -> __m256i,
) -> [f32; T] {
    let mut acc = [[_mm256_setzero_ps(); 2]; T];
    let mut corr = [0f32; T];
    for b in 0..nb {
        let (dw, q, c) = blk(b);
        for t in 0..T {
            unsafe {
                let y = load_i8(a[t].qs.as_ptr().add(32 * b));
                let s = dot(q, y);
                let dy = *a[t].d.get_unchecked(b);
                acc[t][b & 1] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dy), _mm256_cvtepi32_ps(s), acc[t][b & 1]);
                corr[t] = c.mul_add(dy * *a[t].sums.get_unchecked(b) as f32, corr[t]);
            }
        }
    }
    let mut out = [0f32; T];
    for t in 0..T {
        out[t] = unsafe { hsum(_mm256_add_ps(acc[t][0], acc[t][1])) } + corr[t];
    }
    out
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0<const T: usize>(w: *const u8, nb: usize, a: &[Q8Row; T]) -> [f32; T] {
    unsafe {
        b32(
            nb,
            a,
            |b| {
                let p = w.add(34 * b);
                prefetch(p, 34);
                (half(p), load(p.add(2)), 0.0)
            },
            // |x| unsigned, y with x's sign: the same products
            |x, y| dot_u8i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x)),
        )
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4<const Q41: bool, const T: usize>(w: *const u8, nb: usize, a: &[Q8Row; T]) -> [f32; T] {
    let (ts, qoff) = if Q41 { (20, 4) } else { (18, 2) };
    unsafe {
        b32(
            nb,
            a,
            |b| {
                let p = w.add(ts * b);
                prefetch(p, ts);
                (half(p), nibbles32(p.add(qoff)), if Q41 { half(p.add(2)) } else { 0.0 })
            },
            |q, y| if Q41 { dot_u8i8(q, y) } else { dot_centred::<8>(q, y) },
        )
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5<const Q51: bool, const T: usize>(w: *const u8, nb: usize, a: &[Q8Row; T]) -> [f32; T] {
    let (ts, qh_at, qs_at) = if Q51 { (24, 4, 8) } else { (22, 2, 6) };
    let m16 = _mm256_set1_epi8(0x10);
    unsafe {
        b32(
            nb,
            a,
            |b| {
                let p = w.add(ts * b);
                prefetch(p, ts);
                let q = _mm256_or_si256(nibbles32(p.add(qs_at)), _mm256_and_si256(bits32(p.add(qh_at)), m16));
                (half(p), q, if Q51 { half(p.add(2)) } else { 0.0 })
            },
            |q, y| if Q51 { dot_u8i8(q, y) } else { dot_centred::<16>(q, y) },
        )
    }
}

/// The 8 six-bit scales (bytes 0..8) and mins (8..16) of a Q4_K/Q5_K block, as ggml unpacks them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn scales_mins_k4(p: *const u8) -> __m128i {
    const KMASK1: u32 = 0x3f3f3f3f;
    const KMASK2: u32 = 0x0f0f0f0f;
    const KMASK3: u32 = 0x03030303;
    let u = |i: usize| unsafe { (p.add(4 * i) as *const u32).read_unaligned() };
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let m_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    let m_lo = u1 & KMASK1;
    let s_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let s_lo = u0 & KMASK1;
    _mm_set_epi32(m_hi as i32, m_lo as i32, s_hi as i32, s_lo as i32)
}

/// Byte pairs `(2i, 2i + 1)` in every 16-bit lane: a shuffle that broadcasts i16 lane `i`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lane16(i: i16) -> __m256i {
    _mm256_set1_epi16((2 * i) | ((2 * i + 1) << 8))
}

/// Q4_K / Q5_K (ggml's AVX2 kernels), `T` tokens at once: per 64 values, the low nibbles
/// (sub-block 2j) and high (2j + 1) times 32 activations each, weighted by their scales in
/// `madd`; the mins by the activations' 16-value sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q45_k<const Q5: bool, const T: usize>(w: *const u8, nb: usize, a: &[Q8Row; T]) -> [f32; T] {
    let (ts, qoff) = if Q5 { (176, 48) } else { (144, 16) };
    let m4 = _mm256_set1_epi8(0xF);
    let m16 = _mm256_set1_epi8(0x10);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut acc_m = [_mm_setzero_ps(); T];
    unsafe {
        for i in 0..nb {
            let p = w.add(ts * i);
            prefetch(p, ts);
            let (dw, dmin) = (half(p), half(p.add(2)));
            let sm = _mm256_cvtepu8_epi16(scales_mins_k4(p.add(4)));
            let mins = _mm256_extracti128_si256::<1>(sm);
            for t in 0..T {
                let bsums = _mm256_loadu_si256(a[t].sums.as_ptr().add(16 * i) as *const __m256i);
                let s32 = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256::<1>(bsums));
                let prod = _mm_madd_epi16(mins, s32);
                let dmin_t = -*a[t].d.as_ptr().add(i) * dmin;
                acc_m[t] = _mm_fmadd_ps(_mm_set1_ps(dmin_t), _mm_cvtepi32_ps(prod), acc_m[t]);
            }
            let sc128 = _mm256_castsi256_si128(sm);
            let scales = _mm256_set_m128i(sc128, sc128);
            let hbits = if Q5 { load(p.add(16)) } else { _mm256_setzero_si256() };
            let mut sumi = [_mm256_setzero_si256(); T];
            for j in 0..4 {
                let sl = _mm256_shuffle_epi8(scales, lane16(2 * j as i16));
                let sh = _mm256_shuffle_epi8(scales, lane16(2 * j as i16 + 1));
                let bits = load(p.add(qoff + 32 * j));
                let mut ql = _mm256_and_si256(bits, m4);
                let mut qh = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
                if Q5 {
                    // bit s of each qh byte is the fifth bit of sub-block s
                    let hm = |s: usize| {
                        let m = _mm256_set1_epi8(1 << s);
                        _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, m), m), m16)
                    };
                    ql = _mm256_or_si256(ql, hm(2 * j));
                    qh = _mm256_or_si256(qh, hm(2 * j + 1));
                }
                for t in 0..T {
                    let q8 = a[t].qs.as_ptr().add(256 * i + 64 * j);
                    let pl = _mm256_madd_epi16(sl, _mm256_maddubs_epi16(ql, load_i8(q8)));
                    let ph = _mm256_madd_epi16(sh, _mm256_maddubs_epi16(qh, load_i8(q8.add(32))));
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(pl, ph));
                }
            }
            for t in 0..T {
                let d = *a[t].d.as_ptr().add(i) * dw;
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
            }
        }
    }
    let mut out = [0f32; T];
    for t in 0..T {
        let m = _mm_add_ps(acc_m[t], _mm_movehl_ps(acc_m[t], acc_m[t]));
        let m = _mm_add_ss(m, _mm_movehdup_ps(m));
        out[t] = unsafe { hsum(acc[t]) } + _mm_cvtss_f32(m);
    }
    out
}

/// Q6_K (ggml's AVX2 kernel), `T` tokens at once: per 128 values, four groups of 32 unsigned
/// 6-bit quants times their activations, less `32·y` (`maddubs(32, y)`), weighted by the
/// 16-value scales.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k<const T: usize>(w: *const u8, nb: usize, a: &[Q8Row; T]) -> [f32; T] {
    let m4 = _mm256_set1_epi8(0xF);
    let m2 = _mm256_set1_epi8(3);
    let m32 = _mm256_set1_epi8(32);
    let mut acc = [_mm256_setzero_ps(); T];
    // scale bytes (2i ×8, 2i+1 ×8): the two 16-value scales of 32 values
    let shuf = |i: i64| _mm_set_epi64x((2 * i + 1) * 0x0101010101010101, 2 * i * 0x0101010101010101);
    unsafe {
        for i in 0..nb {
            let p = w.add(210 * i);
            prefetch(p, 210);
            let dw = half(p.add(208));
            let scales = _mm_loadu_si128(p.add(192) as *const __m128i);
            let mut sumi = [_mm256_setzero_si256(); T];
            for j in 0..2 {
                let ql = p.add(64 * j);
                let qh = load(p.add(128 + 32 * j));
                let (b1, b2) = (load(ql), load(ql.add(32)));
                let h =
                    |k: i32| _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(k)), m2));
                let q = [
                    _mm256_or_si256(_mm256_and_si256(b1, m4), h(0)),
                    _mm256_or_si256(_mm256_and_si256(b2, m4), h(2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(b1), m4), h(4)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(b2), m4), h(6)),
                ];
                for (k, qk) in q.into_iter().enumerate() {
                    let sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuf((4 * j + k) as i64)));
                    for t in 0..T {
                        let y = load_i8(a[t].qs.as_ptr().add(256 * i + 128 * j + 32 * k));
                        let p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(qk, y), _mm256_maddubs_epi16(m32, y));
                        sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(sc, p16));
                    }
                }
            }
            for t in 0..T {
                let d = *a[t].d.as_ptr().add(i) * dw;
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
            }
        }
    }
    let mut out = [0f32; T];
    for t in 0..T {
        out[t] = unsafe { hsum(acc[t]) };
    }
    out
}

/// One row of `ty` dotted with `T` tokens.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row<const T: usize>(ty: GgmlType, p: *const u8, nb: usize, a: &[Q8Row; T]) -> [f32; T] {
    use GgmlType::*;
    unsafe {
        match ty {
            Q8_0 => q8_0(p, nb, a),
            Q4_0 => q4::<false, T>(p, nb, a),
            Q4_1 => q4::<true, T>(p, nb, a),
            Q5_0 => q5::<false, T>(p, nb, a),
            Q5_1 => q5::<true, T>(p, nb, a),
            Q4K => q45_k::<false, T>(p, nb, a),
            Q5K => q45_k::<true, T>(p, nb, a),
            Q6K => q6_k(p, nb, a),
            _ => [0.0; T],
        }
    }
}

/// `out[t] = row · a[t]` for 1 to 4 tokens (more are left as they are).
///
/// SAFETY: AVX2+FMA+F16C are present; `p` holds one row of whole blocks covering each token
/// (all of one size).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn tile(ty: GgmlType, p: *const u8, a: &[Q8Row], out: &mut [f32]) {
    let Some(first) = a.first() else { return };
    let nb = first.qs.len() / ty.block_size() as usize;
    unsafe {
        match *a {
            [a0] => out[..1].copy_from_slice(&row(ty, p, nb, &[a0])),
            [a0, a1] => out[..2].copy_from_slice(&row(ty, p, nb, &[a0, a1])),
            [a0, a1, a2] => out[..3].copy_from_slice(&row(ty, p, nb, &[a0, a1, a2])),
            [a0, a1, a2, a3, ..] => out[..4].copy_from_slice(&row(ty, p, nb, &[a0, a1, a2, a3])),
            [] => {}
        }
    }
}

/// SAFETY: AVX2+FMA+F16C are present; the caller checked `w` holds `out.len()` rows of `rb`
/// bytes of whole blocks covering `a`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn rows(ty: GgmlType, w: &[u8], rb: usize, a: Q8Row, out: &mut [f32]) {
    let nb = a.qs.len() / ty.block_size() as usize;
    for (r, o) in out.iter_mut().enumerate() {
        let p = unsafe { w.as_ptr().add(r * rb) };
        *o = unsafe { row(ty, p, nb, &[a])[0] };
    }
}
