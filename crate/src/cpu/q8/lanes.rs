//! Prefill's K-quant matmul with the tokens in the lanes (x86 AVX-512 F/BW/VNNI): the
//! activations of 16 tokens are interleaved once per matmul ([`Lanes`]: for each 4 columns,
//! 4 bytes of each token, 64 bytes a line), and a weight row's block, unpacked to 256 bytes in
//! L1, is broadcast 4 bytes at a time against them. One `vpdpbusd` then adds 4 products for
//! each of 16 tokens, and each lane ends holding one (row, token) sum: the sub-block scales,
//! the mins, Q6_K's centre and the f32 scaling apply to 16 tokens per instruction, where the
//! one-row-per-register tiles ([`super::avx512`]) pay ~5 such operations per (block, row,
//! token) beside their 8 multiply-adds, then a horizontal sum per (row, token).
//!
//! llama.cpp gets the same effect the other way round, with rows in lanes: it repacks the
//! weights at load into blocks of 8 interleaved rows (`block_q4_Kx8`). Tokens in lanes need no
//! second layout of the weights: the row-major blocks every other path reads (decode, the exact
//! path, the shards) are read here too, and memory stays one copy.
//!
//! Every integer sum is the scalar kernel's (`Σ sc·Σ q·y`, `Σ m·Σ y`, Q6_K's `−32·Σ y`, all in
//! i32), so only the f32 scaling's rounding differs; the results are not the single-token
//! kernels' bits.

// the register tiles are indexed by row and sub-block together, clearer as ranges
#![allow(clippy::needless_range_loop)]

use super::{prefetch, Q8Act};
use crate::cpu::dot::avx2::half;
use crate::gguf::GgmlType;
use std::arch::x86_64::*;

/// Tokens per group: one per i32 lane of a 512-bit register.
pub const TOKENS: usize = 16;

/// Rows dotted at once: each activation line loaded serves this many rows.
const R: usize = 4;

/// 64 bytes on a cache line: every load below is of one whole line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub struct Line([u8; 64]);

const ZERO: Line = Line([0; 64]);

/// The first `groups · 16` tokens of a Q8_K [`Q8Act`], tokens in lanes: per group `g` and
/// block `i` (`gi = g · nb + i`), 64 lines of quants (line `gi · 64 + k`: columns `4k..4k + 4`
/// of each token), a line of the 16 tokens' `d`, 4 of the 32-value sums as i16 pairs (line
/// `gi · 4 + p`: sub-blocks `2p`, `2p + 1`), and 16 of Q6_K's centre `−32·Σq` per 16 values
/// as i32.
#[derive(Debug, Clone)]
pub struct Lanes {
    pub groups: usize,
    nb: usize,
    qs: Vec<Line>,
    d: Vec<Line>,
    bs32: Vec<Line>,
    c6: Vec<Line>,
    /// The 16-value sums as i16 pairs (line `gi · 8 + p`: groups `2p`, `2p + 1`), for the AVX2
    /// kernel's Q6_K centre ([`avx2`]).
    bs16: Vec<Line>,
}

impl Lanes {
    /// From `a`'s whole groups of 16 tokens (`a` is Q8_K, at least 16 tokens).
    pub fn new(a: &Q8Act) -> Lanes {
        let (groups, nb) = (a.n / TOKENS, a.cols / 256);
        let mut l = Lanes {
            groups,
            nb,
            qs: vec![ZERO; groups * nb * 64],
            d: vec![ZERO; groups * nb],
            bs32: vec![ZERO; groups * nb * 4],
            c6: vec![ZERO; groups * nb * 16],
            bs16: vec![ZERO; groups * nb * 8],
        };
        for g in 0..groups {
            for j in 0..TOKENS {
                let t = a.row(g * TOKENS + j);
                for i in 0..nb {
                    let gi = g * nb + i;
                    let q = &t.qs[256 * i..][..256];
                    for k in 0..64 {
                        for (o, &v) in l.qs[gi * 64 + k].0[4 * j..][..4].iter_mut().zip(&q[4 * k..][..4]) {
                            *o = v as u8;
                        }
                    }
                    l.d[gi].0[4 * j..][..4].copy_from_slice(&t.d[i].to_le_bytes());
                    let s = &t.sums[16 * i..][..16];
                    for p in 0..4 {
                        for e in 0..2 {
                            let v = s[4 * p + 2 * e] + s[4 * p + 2 * e + 1];
                            l.bs32[gi * 4 + p].0[4 * j + 2 * e..][..2].copy_from_slice(&v.to_le_bytes());
                        }
                    }
                    for (grp, &v) in s.iter().enumerate() {
                        l.c6[gi * 16 + grp].0[4 * j..][..4].copy_from_slice(&(-32 * v as i32).to_le_bytes());
                        l.bs16[gi * 8 + grp / 2].0[4 * j + 2 * (grp % 2)..][..2].copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
        l
    }

    pub fn blocks(&self) -> usize {
        self.nb
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn line(l: &[Line], i: usize) -> __m512i {
    unsafe { _mm512_load_si512(l.as_ptr().add(i) as *const __m512i) }
}

/// The 4 weight bytes at `4k` of an unpacked block, in every lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn quad(buf: &[Line; 4], k: usize) -> __m512i {
    unsafe { _mm512_set1_epi32((buf.as_ptr() as *const u8).add(4 * k).cast::<i32>().read()) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn store(buf: &mut Line, v: __m512i) {
    unsafe { _mm512_store_si512(buf as *mut Line as *mut __m512i, v) }
}

/// Q4_K / Q5_K, rows `p` (block `i` at `p[r] + ts·i`) with group `g`: per sub-block of 32
/// values, 8 `vpdpbusd` per row, then its scale (`vpmulld`); the mins by `vpdpwssd` of the
/// 6-bit mins with the 32-value sums; `(d_w·d_y)·isum − (dmin·d_y)·mins` in f32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q45_k<const Q5: bool>(p: [*const u8; R], l: &Lanes, g: usize, pf: bool) -> [__m512; R] {
    let (ts, qoff) = if Q5 { (176, 48) } else { (144, 16) };
    let m4 = _mm512_set1_epi8(0xF);
    let m16 = _mm512_set1_epi8(0x10);
    let bit = |s: u32| {
        let (a, b) = ((1u8 << s) as i8, (1u8 << (s + 1)) as i8);
        _mm512_inserti64x4::<1>(_mm512_set1_epi8(a), _mm256_set1_epi8(b))
    };
    let hmask = [bit(0), bit(2), bit(4), bit(6)];
    let mut total = [_mm512_setzero_ps(); R];
    let mut buf = [[ZERO; 4]; R];
    for i in 0..l.nb {
        let gi = g * l.nb + i;
        // per row: scales (bytes 0..8) and mins (8..16), d and dmin
        let mut sm = [[0u8; 16]; R];
        let mut dd = [(0f32, 0f32); R];
        for r in 0..R {
            unsafe {
                let b = p[r].add(ts * i);
                if pf {
                    prefetch(b, ts);
                }
                dd[r] = (half(b), half(b.add(2)));
                _mm_storeu_si128(sm[r].as_mut_ptr() as *mut __m128i, super::avx2::scales_mins_k4(b.add(4)));
                let hbits =
                    if Q5 { _mm512_broadcast_i64x4(_mm256_loadu_si256(b.add(16) as *const __m256i)) } else { m4 };
                for j in 0..2 {
                    let bits = _mm512_loadu_si512(b.add(qoff + 64 * j) as *const __m512i);
                    let lo = _mm512_and_si512(bits, m4);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(bits), m4);
                    // values 128j.. in order: sub-blocks (4j, 4j + 1), then (4j + 2, 4j + 3)
                    let mut wa = _mm512_shuffle_i64x2::<0x44>(lo, hi);
                    let mut wb = _mm512_shuffle_i64x2::<0xEE>(lo, hi);
                    if Q5 {
                        // bit s of each qh byte is the fifth bit of sub-block s
                        wa = _mm512_mask_add_epi8(wa, _mm512_test_epi8_mask(hbits, hmask[2 * j]), wa, m16);
                        wb = _mm512_mask_add_epi8(wb, _mm512_test_epi8_mask(hbits, hmask[2 * j + 1]), wb, m16);
                    }
                    store(&mut buf[r][2 * j], wa);
                    store(&mut buf[r][2 * j + 1], wb);
                }
            }
        }
        let mut isum = [_mm512_setzero_si512(); R];
        for s in 0..8 {
            let mut acc = [_mm512_setzero_si512(); R];
            for k in 8 * s..8 * s + 8 {
                let y = unsafe { line(&l.qs, gi * 64 + k) };
                for r in 0..R {
                    acc[r] = _mm512_dpbusd_epi32(acc[r], unsafe { quad(&buf[r], k) }, y);
                }
            }
            for r in 0..R {
                isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(acc[r], _mm512_set1_epi32(sm[r][s] as i32)));
            }
        }
        let dy = unsafe { _mm512_load_ps(l.d.as_ptr().add(gi) as *const f32) };
        let bs: [__m512i; 4] = std::array::from_fn(|q| unsafe { line(&l.bs32, gi * 4 + q) });
        for r in 0..R {
            let mut mins = _mm512_setzero_si512();
            for (q, bs) in bs.iter().enumerate() {
                let m = sm[r][8 + 2 * q] as i32 | (sm[r][9 + 2 * q] as i32) << 16;
                mins = _mm512_dpwssd_epi32(mins, *bs, _mm512_set1_epi32(m));
            }
            let (dw, dmin) = dd[r];
            total[r] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(dw), dy), _mm512_cvtepi32_ps(isum[r]), total[r]);
            total[r] = _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_set1_ps(dmin), dy), _mm512_cvtepi32_ps(mins), total[r]);
        }
    }
    total
}

/// Q6_K, as [`q45_k`]: per 16-value group, 4 `vpdpbusd` per row from the centre `−32·Σq`,
/// then its signed scale.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn q6_k(p: [*const u8; R], l: &Lanes, g: usize, pf: bool) -> [__m512; R] {
    let mut total = [_mm512_setzero_ps(); R];
    let mut buf = [[ZERO; 4]; R];
    for i in 0..l.nb {
        let gi = g * l.nb + i;
        let mut sc = [[0i8; 16]; R];
        let mut dw = [0f32; R];
        for r in 0..R {
            unsafe {
                let b = p[r].add(210 * i);
                if pf {
                    prefetch(b, 210);
                }
                dw[r] = half(b.add(208));
                std::ptr::copy_nonoverlapping(b.add(192) as *const i8, sc[r].as_mut_ptr(), 16);
                // values 128h..: low nibbles with bits 0..2 / 2..4 of qh, then the high nibbles
                // with bits 4..6 / 6..8 (as the scalar kernel's order)
                for h in 0..2 {
                    let (q01, q23) = super::avx512::q6_values(b, h);
                    store(&mut buf[r][2 * h], q01);
                    store(&mut buf[r][2 * h + 1], q23);
                }
            }
        }
        let mut isum = [_mm512_setzero_si512(); R];
        for grp in 0..16 {
            let c = unsafe { line(&l.c6, gi * 16 + grp) };
            let mut acc = [c; R];
            for k in 4 * grp..4 * grp + 4 {
                let y = unsafe { line(&l.qs, gi * 64 + k) };
                for r in 0..R {
                    acc[r] = _mm512_dpbusd_epi32(acc[r], unsafe { quad(&buf[r], k) }, y);
                }
            }
            for r in 0..R {
                isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(acc[r], _mm512_set1_epi32(sc[r][grp] as i32)));
            }
        }
        let dy = unsafe { _mm512_load_ps(l.d.as_ptr().add(gi) as *const f32) };
        for r in 0..R {
            total[r] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(dw[r]), dy), _mm512_cvtepi32_ps(isum[r]), total[r]);
        }
    }
    total
}

/// Whether [`rows`] takes `ty`.
pub fn takes(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K)
}

/// `out[r · n + t] = row_r · token_t` for the `rows` rows of `w` (`rb` bytes each) and the
/// tokens `t < 16 · l.groups`.
///
/// SAFETY: AVX-512 F/BW/VNNI, AVX2, FMA and F16C are present; `ty` is one [`takes`]; `w` holds
/// `rows` rows of `l.blocks()` whole blocks of `ty` (`rb` bytes); `out` holds `rows · n`
/// values and `n ≥ 16 · l.groups`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub unsafe fn rows(ty: GgmlType, w: &[u8], rb: usize, rows: usize, l: &Lanes, n: usize, out: &mut [f32]) {
    let mut r0 = 0;
    while r0 < rows {
        let k = (rows - r0).min(R);
        // past the last row, its pointer again (results dropped)
        let p: [*const u8; R] = std::array::from_fn(|j| unsafe { w.as_ptr().add((r0 + j.min(k - 1)) * rb) });
        for g in 0..l.groups {
            // the weights come from memory on the first group, from cache after
            let tot = unsafe {
                match ty {
                    GgmlType::Q4K => q45_k::<false>(p, l, g, g == 0),
                    GgmlType::Q5K => q45_k::<true>(p, l, g, g == 0),
                    _ => q6_k(p, l, g, g == 0),
                }
            };
            for (j, t) in tot.iter().enumerate().take(k) {
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add((r0 + j) * n + TOKENS * g), *t) };
            }
        }
        r0 += k;
    }
}

/// The same layout with AVX2 alone (no VNNI, 256-bit registers): each 64-byte line is two
/// halves of 8 tokens, and a half is dotted with [`avx2::R`] rows at once. A weight quad is
/// broadcast against a half in `maddubs` (unsigned weights, signed activations: 2 products per
/// i16 lane, the token's 4 products in its i32 lane's two halves), and the i16 sums of a
/// sub-block are added in i16 before one `madd` with the sub-block's scale: the bounds below
/// keep every i16 sum exact, so every integer sum is still the scalar kernel's.
///
/// - Q4_K: |w·y + w·y| ≤ 2·15·128 = 3840, 8 quads (a 32-value sub-block) ≤ 30720.
/// - Q5_K: ≤ 2·31·128 = 7936, 4 quads ≤ 31744 (two `madd` per sub-block).
/// - Q6_K: ≤ 2·63·128 = 16128, 2 quads ≤ 32256 (two `madd` per 16-value group); its centre
///   `−32·Σ sc·Σy` is one `madd` per two groups of the 16-value sums (`bs16`).
///
/// Against the one-row-per-register tiles this drops the per-(block, row, token) mins, scale
/// and f32 work and the horizontal sums, as the AVX-512 kernel does, and the i16 accumulation
/// halves the `madd`s: AVX2 has no `vpdpbusd`. A set of rows is unpacked once (bytes, scales,
/// `d`) for all the token groups: unpacking per group and pass cost as much as the dots
/// (Q4_K at 64 tokens, q8_bench), its stores read back at once by the broadcasts.
pub mod avx2 {
    use super::{prefetch, Lanes, Line, ZERO};
    use crate::cpu::dot::avx2::half;
    use crate::gguf::GgmlType;
    use std::arch::x86_64::*;

    /// Rows dotted at once: each activation half loaded serves this many rows (16 registers:
    /// R i16 sums, R i32 sums, the activations and the broadcast weights).
    pub const R: usize = 4;

    /// Tokens per half.
    const H: usize = 8;

    /// [`R`] rows' blocks unpacked: per block `i` and row `r` (entry `i · R + r`) its 256 quants
    /// as bytes in value order, its scales (Q4_K/Q5_K: 8 scales then 8 mins; Q6_K: 16 signed)
    /// and `d` (and `dmin`).
    struct Unpacked {
        q: Vec<[Line; 4]>,
        sc: Vec<[u8; 16]>,
        d: Vec<(f32, f32)>,
    }

    /// Half `h` of line `i`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn half_line(l: &[Line], i: usize, h: usize) -> __m256i {
        unsafe { _mm256_load_si256((l.as_ptr().add(i) as *const u8).add(32 * h) as *const __m256i) }
    }

    /// The 4 weight bytes at `4k` of an unpacked block, in every lane.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn quad(buf: &[Line; 4], k: usize) -> __m256i {
        unsafe { _mm256_set1_epi32((buf.as_ptr() as *const u8).add(4 * k).cast::<i32>().read()) }
    }

    /// The 16 weight bytes at `4k` of an unpacked block, in both 128-bit lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn quads(buf: &[Line; 4], k: usize) -> __m256i {
        unsafe { _mm256_broadcastsi128_si256(_mm_load_si128((buf.as_ptr() as *const u8).add(4 * k) as *const __m128i)) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn store(buf: &mut [Line; 4], at: usize, v: __m256i) {
        unsafe { _mm256_store_si256((buf.as_mut_ptr() as *mut u8).add(at) as *mut __m256i, v) }
    }

    /// Unpacks Q4_K / Q5_K rows `p` (block `i` at `p[r] + ts·i`) into `u`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack_q45<const Q5: bool>(p: [*const u8; R], nb: usize, u: &mut Unpacked) {
        let (ts, qoff) = if Q5 { (176, 48) } else { (144, 16) };
        let m4 = _mm256_set1_epi8(0xF);
        let m16 = _mm256_set1_epi8(0x10);
        for i in 0..nb {
            for r in 0..R {
                let e = i * R + r;
                unsafe {
                    let b = p[r].add(ts * i);
                    prefetch(b, ts);
                    u.d[e] = (half(b), half(b.add(2)));
                    _mm_storeu_si128(
                        u.sc[e].as_mut_ptr() as *mut __m128i,
                        crate::cpu::q8::avx2::scales_mins_k4(b.add(4)),
                    );
                    let hbits = if Q5 { _mm256_loadu_si256(b.add(16) as *const __m256i) } else { m4 };
                    for j in 0..4 {
                        // values 64j..: the low nibbles (sub-block 2j), then the high (2j + 1)
                        let bits = _mm256_loadu_si256(b.add(qoff + 32 * j) as *const __m256i);
                        let mut lo = _mm256_and_si256(bits, m4);
                        let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
                        if Q5 {
                            // bit s of each qh byte is the fifth bit of sub-block s
                            let hm = |s: usize| {
                                let m = _mm256_set1_epi8(1 << s);
                                _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, m), m), m16)
                            };
                            lo = _mm256_or_si256(lo, hm(2 * j));
                            hi = _mm256_or_si256(hi, hm(2 * j + 1));
                        }
                        store(&mut u.q[e], 64 * j, lo);
                        store(&mut u.q[e], 64 * j + 32, hi);
                    }
                }
            }
        }
    }

    /// Unpacks Q6_K rows `p` into `u`: values 128j + 32k (the scalar kernel's order), the low
    /// nibbles with bits 0..2 / 2..4 of qh, then the high nibbles with bits 4..6 / 6..8.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack_q6(p: [*const u8; R], nb: usize, u: &mut Unpacked) {
        let m4 = _mm256_set1_epi8(0xF);
        let m3 = _mm256_set1_epi8(3);
        for i in 0..nb {
            for r in 0..R {
                let e = i * R + r;
                unsafe {
                    let b = p[r].add(210 * i);
                    prefetch(b, 210);
                    u.d[e] = (half(b.add(208)), 0.0);
                    std::ptr::copy_nonoverlapping(b.add(192), u.sc[e].as_mut_ptr(), 16);
                    for j in 0..2 {
                        let (b1, b2) = (
                            _mm256_loadu_si256(b.add(64 * j) as *const __m256i),
                            _mm256_loadu_si256(b.add(64 * j + 32) as *const __m256i),
                        );
                        let qh = _mm256_loadu_si256(b.add(128 + 32 * j) as *const __m256i);
                        let hb = |k: i32| {
                            _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(k)), m3))
                        };
                        let q = [
                            _mm256_or_si256(_mm256_and_si256(b1, m4), hb(0)),
                            _mm256_or_si256(_mm256_and_si256(b2, m4), hb(2)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(b1), m4), hb(4)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(b2), m4), hb(6)),
                        ];
                        for (k, qk) in q.into_iter().enumerate() {
                            store(&mut u.q[e], 128 * j + 32 * k, qk);
                        }
                    }
                }
            }
        }
    }

    /// Q4_K / Q5_K, the unpacked rows `u` with half `h` of group `g`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q45_k<const Q5: bool>(u: &Unpacked, l: &Lanes, g: usize, h: usize) -> [__m256; R] {
        // quads summed in i16 before a madd (see the bounds above)
        let run = if Q5 { 4 } else { 8 };
        let mut total = [_mm256_setzero_ps(); R];
        for i in 0..l.nb {
            let gi = g * l.nb + i;
            let (buf, sm, dd) = (&u.q[i * R..][..R], &u.sc[i * R..][..R], &u.d[i * R..][..R]);
            let mut isum = [_mm256_setzero_si256(); R];
            for s in 0..8 {
                let sc: [__m256i; R] = std::array::from_fn(|r| _mm256_set1_epi16(sm[r][s] as i16));
                for k0 in (8 * s..8 * s + 8).step_by(run) {
                    let mut acc = [_mm256_setzero_si256(); R];
                    for k in (k0..k0 + run).step_by(4) {
                        let y: [__m256i; 4] = std::array::from_fn(|q| unsafe { half_line(&l.qs, gi * 64 + k + q, h) });
                        for r in 0..R {
                            let w = unsafe { quads(&buf[r], k) };
                            let p0 = _mm256_maddubs_epi16(_mm256_shuffle_epi32::<0x00>(w), y[0]);
                            let p1 = _mm256_maddubs_epi16(_mm256_shuffle_epi32::<0x55>(w), y[1]);
                            let p2 = _mm256_maddubs_epi16(_mm256_shuffle_epi32::<0xAA>(w), y[2]);
                            let p3 = _mm256_maddubs_epi16(_mm256_shuffle_epi32::<0xFF>(w), y[3]);
                            acc[r] = _mm256_add_epi16(
                                acc[r],
                                _mm256_add_epi16(_mm256_add_epi16(p0, p1), _mm256_add_epi16(p2, p3)),
                            );
                        }
                    }
                    for r in 0..R {
                        isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(acc[r], sc[r]));
                    }
                }
            }
            let dy = unsafe { _mm256_load_ps((l.d.as_ptr().add(gi) as *const f32).add(H * h)) };
            let bs: [__m256i; 4] = std::array::from_fn(|q| unsafe { half_line(&l.bs32, gi * 4 + q, h) });
            for r in 0..R {
                let mut mins = _mm256_setzero_si256();
                for (q, bs) in bs.iter().enumerate() {
                    let m = sm[r][8 + 2 * q] as i32 | (sm[r][9 + 2 * q] as i32) << 16;
                    mins = _mm256_add_epi32(mins, _mm256_madd_epi16(*bs, _mm256_set1_epi32(m)));
                }
                let (dw, dmin) = dd[r];
                total[r] =
                    _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(dw), dy), _mm256_cvtepi32_ps(isum[r]), total[r]);
                total[r] =
                    _mm256_fnmadd_ps(_mm256_mul_ps(_mm256_set1_ps(dmin), dy), _mm256_cvtepi32_ps(mins), total[r]);
            }
        }
        total
    }

    /// Q6_K, as [`q45_k`]: per 16-value group, two i16 sums of 2 quads, each `madd` by the
    /// group's signed scale; the centre from the 16-value sums once per block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q6_k(u: &Unpacked, l: &Lanes, g: usize, h: usize) -> [__m256; R] {
        let mut total = [_mm256_setzero_ps(); R];
        for i in 0..l.nb {
            let gi = g * l.nb + i;
            let (buf, sc, dd) = (&u.q[i * R..][..R], &u.sc[i * R..][..R], &u.d[i * R..][..R]);
            let mut isum = [_mm256_setzero_si256(); R];
            for grp in 0..16 {
                let s: [__m256i; R] = std::array::from_fn(|r| _mm256_set1_epi16(sc[r][grp] as i8 as i16));
                for k0 in [4 * grp, 4 * grp + 2] {
                    let y0 = unsafe { half_line(&l.qs, gi * 64 + k0, h) };
                    let y1 = unsafe { half_line(&l.qs, gi * 64 + k0 + 1, h) };
                    for r in 0..R {
                        let a = unsafe {
                            _mm256_add_epi16(
                                _mm256_maddubs_epi16(quad(&buf[r], k0), y0),
                                _mm256_maddubs_epi16(quad(&buf[r], k0 + 1), y1),
                            )
                        };
                        isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(a, s[r]));
                    }
                }
            }
            // the centre: −32·Σ_groups sc·Σy
            let bs: [__m256i; 8] = std::array::from_fn(|q| unsafe { half_line(&l.bs16, gi * 8 + q, h) });
            let dy = unsafe { _mm256_load_ps((l.d.as_ptr().add(gi) as *const f32).add(H * h)) };
            for r in 0..R {
                let mut c = _mm256_setzero_si256();
                for (q, bs) in bs.iter().enumerate() {
                    let pair = |v: u8| v as i8 as i16 as u16 as i32;
                    let m = pair(sc[r][2 * q]) | (pair(sc[r][2 * q + 1]) << 16);
                    c = _mm256_add_epi32(c, _mm256_madd_epi16(*bs, _mm256_set1_epi32(m)));
                }
                let v = _mm256_sub_epi32(isum[r], _mm256_slli_epi32::<5>(c));
                total[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(dd[r].0), dy), _mm256_cvtepi32_ps(v), total[r]);
            }
        }
        total
    }

    /// [`super::rows`] with AVX2 alone.
    ///
    /// SAFETY: AVX2, FMA and F16C are present; as [`super::rows`] otherwise.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows(ty: GgmlType, w: &[u8], rb: usize, rows: usize, l: &Lanes, n: usize, out: &mut [f32]) {
        let e = R * l.nb;
        let mut u = Unpacked { q: vec![[ZERO; 4]; e], sc: vec![[0; 16]; e], d: vec![(0.0, 0.0); e] };
        let mut r0 = 0;
        while r0 < rows {
            let k = (rows - r0).min(R);
            // past the last row, its pointer again (results dropped)
            let p: [*const u8; R] = std::array::from_fn(|j| unsafe { w.as_ptr().add((r0 + j.min(k - 1)) * rb) });
            unsafe {
                match ty {
                    GgmlType::Q4K => unpack_q45::<false>(p, l.nb, &mut u),
                    GgmlType::Q5K => unpack_q45::<true>(p, l.nb, &mut u),
                    _ => unpack_q6(p, l.nb, &mut u),
                }
            }
            for g in 0..l.groups {
                for h in 0..2 {
                    let tot = unsafe {
                        match ty {
                            GgmlType::Q4K => q45_k::<false>(&u, l, g, h),
                            GgmlType::Q5K => q45_k::<true>(&u, l, g, h),
                            _ => q6_k(&u, l, g, h),
                        }
                    };
                    for (j, t) in tot.iter().enumerate().take(k) {
                        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add((r0 + j) * n + super::TOKENS * g + H * h), *t) };
                    }
                }
            }
            r0 += k;
        }
    }
}
