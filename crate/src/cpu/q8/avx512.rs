//! x86 AVX-512 integer dots (F + BW + VNNI), 64 weights per instruction: at the `Avx512` level
//! where the CPU has VNNI and BW ([`super::vnni`]), else [`super::avx2`] runs.
//!
//! - The 32-value formats take two blocks per 512-bit register: `vpdpbusd` sums 4 products of
//!   unsigned weight quants and signed activation bytes into each i32 lane (exact), lanes 0..8
//!   of one block, 8..16 of the next. Centred formats (Q4_0's 8, Q5_0's 16, Q8_0's 128 after
//!   flipping its sign bit) dot their unsigned quants and take `−c·d_w·d_x·Σq_x` in f32, as the
//!   formats with a min take `m·d_x·Σq_x`, both from the activations' `[d, d·Σq]` pairs.
//! - The K-quants keep their sub-block scales in integers: `vpmaddubsw` (pairs to i16, which
//!   cannot overflow: quants ≤ 63, |q_x| ≤ 128) then `vpdpwssd` by the scales (pairs to i32,
//!   accumulated), one f32 convert and FMA per 256 values. Q6_K's centre 32 comes off through
//!   the 16-value activation sums, in integers; Q4_K/Q5_K's mins in f32, by the activations'
//!   `d·Σq` per 32 values.
//!
//! So every integer sum is the scalar kernel's; only the f32 scaling's rounding differs.

use super::{prefetch, Q8Row};
use crate::cpu::dot::avx2::{half, hsum};
use crate::gguf::GgmlType;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn load512(p: *const u8) -> __m512i {
    unsafe { _mm512_loadu_si512(p as *const __m512i) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn load256(p: *const u8) -> __m256i {
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn u16_at(p: *const u8) -> i32 {
    unsafe { (p as *const u16).read_unaligned() as i32 }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn u32_at(p: *const u8) -> i32 {
    unsafe { (p as *const i32).read_unaligned() }
}

/// Blocks `b0` and `b1` (when `two`) of a 32-value format as [`b32`] takes them.
struct Pair {
    /// The unsigned quants, block `b0` in the low 256 bits (zeros above when not `two`).
    q: __m512i,
    /// `[d_w, c_w]` of each block, f32 lanes `[d0, c0, d1, c1]`: the scale, and the min or the
    /// centre's `−c·d_w`.
    dc: __m128,
}

/// The 16 bytes of nibbles at `p0` (and `p1` when `two`) as 32 unsigned quants each: the
/// low nibbles (values 0..16) then the high (16..32).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn nibbles2(p0: *const u8, p1: *const u8, two: bool) -> __m512i {
    unsafe {
        let lo = _mm_loadu_si128(p0 as *const __m128i);
        let hi = if two { _mm_loadu_si128(p1 as *const __m128i) } else { _mm_setzero_si128() };
        let v = _mm256_set_m128i(hi, lo);
        // 128-bit lanes [b0, b1, b0 >> 4, b1 >> 4], reordered to [b0, b0 >> 4, b1, b1 >> 4]
        let z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(v), _mm256_srli_epi16::<4>(v));
        _mm512_and_si512(_mm512_shuffle_i64x2::<0xD8>(z, z), _mm512_set1_epi8(0xF))
    }
}

/// `[d0, c·d0, d1, c·d1]` from the f16 scales at `p0` and `p1` (0 for the second unless `two`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn centred(p0: *const u8, p1: *const u8, two: bool, c: f32) -> __m128 {
    unsafe {
        let (h0, h1) = (u16_at(p0), if two { u16_at(p1) } else { 0 });
        let d = _mm_cvtph_ps(_mm_set_epi32(0, 0, h1 | (h1 << 16), h0 | (h0 << 16)));
        _mm_mul_ps(d, _mm_set_ps(c, 1.0, c, 1.0))
    }
}

/// `[d0, m0, d1, m1]` from the f16 pairs `(d, m)` at `p0` and `p1` (0 for the second unless `two`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn with_min(p0: *const u8, p1: *const u8, two: bool) -> __m128 {
    unsafe { _mm_cvtph_ps(_mm_set_epi32(0, 0, if two { u32_at(p1) } else { 0 }, u32_at(p0))) }
}

/// The 32-value formats, `T` tokens at once (the weights are unpacked once per pair of blocks
/// for all of them): per pair, `Σ_lanes (d_w·d_x)·s + Σ c_w·(d_x·Σq_x)`, two vector chains per
/// token (the same operations per token whatever `T`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn b32<const T: usize>(nb: usize, a: &[Q8Row; T], pair: impl Fn(usize, bool) -> Pair) -> [f32; T] {
    let mut acc = [[_mm512_setzero_ps(); 2]; T];
    let mut corr = [_mm_setzero_ps(); T];
    // lane 0 of the products to the first block's 8 lanes, lane 2 to the second's
    let spread = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    // blocks b, b + 1 (or b alone) into chain k (a constant once inlined: the accumulators
    // stay in registers)
    let mut step = |b: usize, two: bool, k: usize| {
        let Pair { q, dc } = pair(b, two);
        for t in 0..T {
            unsafe {
                let yp = a[t].qs.as_ptr().add(32 * b) as *const u8;
                let dp = a[t].dds.as_ptr().add(2 * b);
                let (y, yd) = if two {
                    (load512(yp), _mm_loadu_ps(dp))
                } else {
                    (_mm512_castsi256_si512(load256(yp)), _mm_castpd_ps(_mm_load_sd(dp as *const f64)))
                };
                // a lone block: the upper half of `y` is undefined, `q`'s is zero
                let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, y);
                let p = _mm_mul_ps(dc, yd);
                corr[t] = _mm_add_ps(corr[t], p);
                let sc = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(p));
                acc[t][k] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(s), acc[t][k]);
            }
        }
    };
    let mut b = 0;
    while b + 4 <= nb {
        step(b, true, 0);
        step(b + 2, true, 1);
        b += 4;
    }
    if b + 2 <= nb {
        step(b, true, 0);
        b += 2;
    }
    if b < nb {
        step(b, false, 1);
    }
    let mut out = [0f32; T];
    for t in 0..T {
        let mut c = [0f32; 4];
        unsafe { _mm_storeu_ps(c.as_mut_ptr(), corr[t]) };
        out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[t][0], acc[t][1])) + (c[1] + c[3]);
    }
    out
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q8_0<const T: usize>(w: *const u8, nb: usize, a: &[Q8Row; T]) -> [f32; T] {
    unsafe {
        b32(nb, a, |b, two| {
            let (p0, p1) = (w.add(34 * b), w.add(34 * b + 34));
            prefetch(p0, 68);
            let hi = if two { load256(p1.add(2)) } else { _mm256_set1_epi8(-128) };
            let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(load256(p0.add(2))), hi);
            // q + 128, unsigned (a lone block's zero half stays zero)
            let q = _mm512_xor_si512(q, _mm512_set1_epi8(-128));
            Pair { q, dc: centred(p0, p1, two, -128.0) }
        })
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q4<const Q41: bool, const T: usize>(w: *const u8, nb: usize, a: &[Q8Row; T]) -> [f32; T] {
    let (ts, qoff) = if Q41 { (20, 4) } else { (18, 2) };
    unsafe {
        b32(nb, a, |b, two| {
            let (p0, p1) = (w.add(ts * b), w.add(ts * b + ts));
            prefetch(p0, 2 * ts);
            let q = nibbles2(p0.add(qoff), p1.add(qoff), two);
            Pair { q, dc: if Q41 { with_min(p0, p1, two) } else { centred(p0, p1, two, -8.0) } }
        })
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q5<const Q51: bool, const T: usize>(w: *const u8, nb: usize, a: &[Q8Row; T]) -> [f32; T] {
    let (ts, qh_at, qs_at) = if Q51 { (24, 4, 8) } else { (22, 2, 6) };
    unsafe {
        b32(nb, a, |b, two| {
            let (p0, p1) = (w.add(ts * b), w.add(ts * b + ts));
            prefetch(p0, 2 * ts);
            let q = nibbles2(p0.add(qs_at), p1.add(qs_at), two);
            // bit v of a block's qh is the fifth bit of its value v, which is byte v here
            let h1 = if two { u32_at(p1.add(qh_at)) as u32 as u64 } else { 0 };
            let qh = u32_at(p0.add(qh_at)) as u32 as u64 | (h1 << 32);
            let q = _mm512_mask_add_epi8(q, qh, q, _mm512_set1_epi8(0x10));
            Pair { q, dc: if Q51 { with_min(p0, p1, two) } else { centred(p0, p1, two, -16.0) } }
        })
    }
}

/// i16 lane `j` of a 32-lane vector picks lane `a` for `j < 16`, `b` above: a sub-block scale
/// per 32 quants.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
fn halves16(a: i16, b: i16) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_set1_epi16(a)), _mm256_set1_epi16(b))
}

/// Q4_K / Q5_K, `R` rows with `T` tokens at once: per 128 values, the low nibbles of 64
/// bytes hold sub-blocks `4j` and `4j + 2`, the high `4j + 1` and `4j + 3`. Q4_K's meet the
/// activations in that order (`qs_k4`); Q5_K's are reordered to two registers of consecutive
/// sub-blocks (its fifth bits are per sub-block) and meet them as they are. The mins
/// come off in f32, `dmin·m` times the activations' `d·Σq` per 32 values (one FMA per block
/// and token, where the integer `Σ m·Σq` took eight operations). Every (row, token) pair goes
/// through the same operations whatever `R` and `T`: several rows share the activations'
/// loads and overlap their chains (decode), several tokens the unpacked weights (prefill).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q45_k<const Q5: bool, const R: usize, const T: usize>(
    w: [*const u8; R],
    nb: usize,
    a: &[Q8Row; T],
) -> [[f32; T]; R] {
    let (ts, qoff) = if Q5 { (176, 48) } else { (144, 16) };
    let m4 = _mm512_set1_epi8(0xF);
    let m16 = _mm512_set1_epi8(0x10);
    // Q4_K: byte shuffles that broadcast one i16 scale per 32 lanes within 128-bit lanes
    // (Q4_K 1B shapes ~8% faster than the word permute); Q5_K keeps the permute, which was
    // faster there
    let pick = |a: i16, b: i16| halves16((2 * a) | ((2 * a + 1) << 8), (2 * b) | ((2 * b + 1) << 8));
    // Q4_K meets the activations in its nibble order (`qs_k4`): the low nibbles are
    // sub-blocks (4j, 4j + 2), the high (4j + 1, 4j + 3)
    let idx = if Q5 {
        [halves16(0, 1), halves16(2, 3), halves16(4, 5), halves16(6, 7)]
    } else {
        [pick(0, 2), pick(1, 3), pick(4, 6), pick(5, 7)]
    };
    let bit = |s: u32| {
        let (a, b) = ((1u8 << s) as i8, (1u8 << (s + 1)) as i8);
        _mm512_inserti64x4::<1>(_mm512_set1_epi8(a), _mm256_set1_epi8(b))
    };
    let hmask = [bit(0), bit(2), bit(4), bit(6)];
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    let mut acc_m = [[_mm256_setzero_ps(); T]; R];
    unsafe {
        for i in 0..nb {
            let mut scales = [_mm512_setzero_si512(); R];
            let mut hbits = [_mm512_setzero_si512(); R];
            let mut dws = [0f32; R];
            for r in 0..R {
                let p = w[r].add(ts * i);
                prefetch(p, ts);
                let (dw, dmin) = (half(p), half(p.add(2)));
                dws[r] = dw;
                let sm = _mm256_cvtepu8_epi16(super::avx2::scales_mins_k4(p.add(4)));
                // dmin·m per 32 values, times each token's d·Σq over them (exact integer sums)
                let mins = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(_mm256_extracti128_si256::<1>(sm)));
                let mins = _mm256_mul_ps(_mm256_set1_ps(dmin), mins);
                for t in 0..T {
                    let ds = _mm256_loadu_ps(a[t].dsums.as_ptr().add(8 * i));
                    acc_m[r][t] = _mm256_fnmadd_ps(mins, ds, acc_m[r][t]);
                }
                if Q5 {
                    scales[r] = _mm512_castsi256_si512(sm);
                    hbits[r] = _mm512_broadcast_i64x4(load256(p.add(16)));
                } else {
                    scales[r] = _mm512_broadcast_i32x4(_mm256_castsi256_si128(sm));
                }
            }
            let mut sumi = [[_mm512_setzero_si512(); T]; R];
            for j in 0..2 {
                for r in 0..R {
                    let bits = load512(w[r].add(ts * i + qoff + 64 * j));
                    let lo = _mm512_and_si512(bits, m4);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(bits), m4);
                    // Q5_K: sub-blocks (4j, 4j + 1) and (4j + 2, 4j + 3), bit s of each qh
                    // byte the fifth bit of sub-block s; Q4_K: as they are
                    let (wa, wb) = if Q5 {
                        let (wa, wb) = (_mm512_shuffle_i64x2::<0x44>(lo, hi), _mm512_shuffle_i64x2::<0xEE>(lo, hi));
                        (
                            _mm512_mask_add_epi8(wa, _mm512_test_epi8_mask(hbits[r], hmask[2 * j]), wa, m16),
                            _mm512_mask_add_epi8(wb, _mm512_test_epi8_mask(hbits[r], hmask[2 * j + 1]), wb, m16),
                        )
                    } else {
                        (lo, hi)
                    };
                    let scale = |k: usize| {
                        if Q5 {
                            _mm512_permutexvar_epi16(idx[k], scales[r])
                        } else {
                            _mm512_shuffle_epi8(scales[r], idx[k])
                        }
                    };
                    let (sa, sb) = (scale(2 * j), scale(2 * j + 1));
                    for t in 0..T {
                        let qs = if Q5 { a[t].qs } else { a[t].qs_k4 };
                        let y = (qs.as_ptr() as *const u8).add(256 * i + 128 * j);
                        sumi[r][t] = dot128(sumi[r][t], (wa, sa), (wb, sb), y);
                    }
                }
            }
            scale_block(&mut acc, &sumi, &dws, a, i);
        }
    }
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = _mm512_reduce_add_ps(acc[r][t]) + unsafe { hsum(acc_m[r][t]) };
        }
    }
    out
}

/// Q6_K's values `128h..128h + 64` and `128h + 64..128h + 128` of the block at `p`, unsigned
/// (0..64): low nibbles with bits 0..2 / 2..4 of qh, then the high nibbles with bits 4..6 /
/// 6..8 (the scalar kernel's order).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn q6_values(p: *const u8, h: usize) -> (__m512i, __m512i) {
    let (m4, m3) = (_mm512_set1_epi8(0xF), _mm512_set1_epi8(3));
    unsafe {
        let ql = load512(p.add(64 * h));
        let qh = load256(p.add(128 + 32 * h));
        let qh = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qh), _mm256_srli_epi16::<2>(qh));
        let q01 = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16::<4>(_mm512_and_si512(qh, m3)));
        let q23 = _mm512_or_si512(
            _mm512_and_si512(_mm512_srli_epi16::<4>(ql), m4),
            _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srli_epi16::<4>(qh), m3)),
        );
        (q01, q23)
    }
}

/// `s` plus 128 unsigned quants (`wa`, then `wb`) dotted with the 128 activations at `y`, each
/// pair of products scaled by its i16 lane of `sa` / `sb`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn dot128(s: __m512i, (wa, sa): (__m512i, __m512i), (wb, sb): (__m512i, __m512i), y: *const u8) -> __m512i {
    unsafe {
        let s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(wa, load512(y)), sa);
        _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(wb, load512(y.add(64))), sb)
    }
}

/// Block `i`'s integer sums into the f32 accumulators: `acc += d_x·d_w · sumi`.
///
/// SAFETY: every token has a scale for block `i`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn scale_block<const R: usize, const T: usize>(
    acc: &mut [[__m512; T]; R],
    sumi: &[[__m512i; T]; R],
    dws: &[f32; R],
    a: &[Q8Row; T],
    i: usize,
) {
    for r in 0..R {
        for t in 0..T {
            let d = unsafe { *a[t].d.as_ptr().add(i) } * dws[r];
            acc[r][t] = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi[r][t]), acc[r][t]);
        }
    }
}

/// i16 lane `j` picks `first + j / 8`: the 16-value group scales of 64 quants.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
fn groups16(first: i16) -> __m512i {
    let lo = _mm256_set_m128i(_mm_set1_epi16(first + 1), _mm_set1_epi16(first));
    let hi = _mm256_set_m128i(_mm_set1_epi16(first + 3), _mm_set1_epi16(first + 2));
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// Q6_K, `R` rows with `T` tokens at once (as [`q45_k`]): per 128 values, 64 bytes of low
/// nibbles and 32 of 2-bit highs give values 0..64 (low nibbles, bits 0..2 and 2..4) and
/// 64..128 (high nibbles, bits 4..6 and 6..8); the centre, `32·Σ_g sc_g·Σ_g q_x`, comes off in
/// integers through the activations' 16-value sums.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q6_k<const R: usize, const T: usize>(w: [*const u8; R], nb: usize, a: &[Q8Row; T]) -> [[f32; T]; R] {
    let idx = [groups16(0), groups16(4), groups16(8), groups16(12)];
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    unsafe {
        for i in 0..nb {
            let mut sumi = [[_mm512_setzero_si512(); T]; R];
            let mut scales = [_mm512_setzero_si512(); R];
            let mut dws = [0f32; R];
            for r in 0..R {
                let p = w[r].add(210 * i);
                prefetch(p, 210);
                dws[r] = half(p.add(208));
                let sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(192) as *const __m128i));
                for t in 0..T {
                    let bsums = _mm256_loadu_si256(a[t].sums.as_ptr().add(16 * i) as *const __m256i);
                    let c = _mm256_slli_epi32::<5>(_mm256_madd_epi16(sc, bsums));
                    sumi[r][t] = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), c));
                }
                scales[r] = _mm512_castsi256_si512(sc);
            }
            for h in 0..2 {
                for r in 0..R {
                    let (q01, q23) = q6_values(w[r].add(210 * i), h);
                    let s01 = _mm512_permutexvar_epi16(idx[2 * h], scales[r]);
                    let s23 = _mm512_permutexvar_epi16(idx[2 * h + 1], scales[r]);
                    for t in 0..T {
                        let y = (a[t].qs.as_ptr() as *const u8).add(256 * i + 128 * h);
                        sumi[r][t] = dot128(sumi[r][t], (q01, s01), (q23, s23), y);
                    }
                }
            }
            scale_block(&mut acc, &sumi, &dws, a, i);
        }
    }
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = _mm512_reduce_add_ps(acc[r][t]);
        }
    }
    out
}

/// One row of `ty` dotted with `T` tokens.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn row<const T: usize>(ty: GgmlType, p: *const u8, nb: usize, a: &[Q8Row; T]) -> [f32; T] {
    use GgmlType::*;
    unsafe {
        match ty {
            Q8_0 => q8_0(p, nb, a),
            Q4_0 => q4::<false, T>(p, nb, a),
            Q4_1 => q4::<true, T>(p, nb, a),
            Q5_0 => q5::<false, T>(p, nb, a),
            Q5_1 => q5::<true, T>(p, nb, a),
            Q4K => q45_k::<false, 1, T>([p], nb, a)[0],
            Q5K => q45_k::<true, 1, T>([p], nb, a)[0],
            Q6K => q6_k::<1, T>([p], nb, a)[0],
            _ => [0.0; T],
        }
    }
}

/// `out[t] = row · a[t]` for 1 to 4 tokens, or 8 (more are left as they are: 5 to 7 take 4).
///
/// SAFETY: AVX-512 F/BW/VNNI, AVX2, FMA and F16C are present; `p` holds one row of whole blocks
/// covering each token (all of one size, with their `dds` for the 32-value formats).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub unsafe fn tile(ty: GgmlType, p: *const u8, a: &[Q8Row], out: &mut [f32]) {
    let Some(first) = a.first() else { return };
    let nb = first.qs.len() / ty.block_size() as usize;
    unsafe {
        match *a {
            [a0] => out[..1].copy_from_slice(&row(ty, p, nb, &[a0])),
            [a0, a1] => out[..2].copy_from_slice(&row(ty, p, nb, &[a0, a1])),
            [a0, a1, a2] => out[..3].copy_from_slice(&row(ty, p, nb, &[a0, a1, a2])),
            [a0, a1, a2, a3, a4, a5, a6, a7, ..] => {
                out[..8].copy_from_slice(&row(ty, p, nb, &[a0, a1, a2, a3, a4, a5, a6, a7]))
            }
            [a0, a1, a2, a3, ..] => out[..4].copy_from_slice(&row(ty, p, nb, &[a0, a1, a2, a3])),
            [] => {}
        }
    }
}

/// SAFETY: as [`tile`]; the caller checked `w` holds `out.len()` rows of `rb` bytes of whole
/// blocks covering `a`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub unsafe fn rows(ty: GgmlType, w: &[u8], rb: usize, a: Q8Row, out: &mut [f32]) {
    use GgmlType::*;
    let nb = a.qs.len() / ty.block_size() as usize;
    let at = |r: usize| unsafe { w.as_ptr().add(r * rb) };
    // The K-quants `ROWS` rows at a time, each from its own stretch of the rows: every row's
    // bytes are read in order (rows side by side in one stretch halved the bandwidth from
    // memory: the hardware prefetchers lost the stream). Same results as one row at a time.
    let part = if matches!(ty, Q4K | Q5K | Q6K) { out.len() / ROWS } else { 0 };
    for k in 0..part {
        let p = std::array::from_fn(|q| at(q * part + k));
        let y = unsafe {
            match ty {
                Q4K => q45_k::<false, ROWS, 1>(p, nb, &[a]),
                Q5K => q45_k::<true, ROWS, 1>(p, nb, &[a]),
                _ => q6_k::<ROWS, 1>(p, nb, &[a]),
            }
        };
        for (q, y) in y.iter().enumerate() {
            out[q * part + k] = y[0];
        }
    }
    for (k, o) in out.iter_mut().enumerate().skip(ROWS * part) {
        *o = unsafe { row(ty, at(k), nb, &[a])[0] };
    }
}

/// Rows per call of the K-quants' single-token kernels.
const ROWS: usize = 2;
