//! Dot products of an f32 vector with one weight row, read straight from its GGUF blocks, in
//! f32 with the values of [`crate::quant`]'s decode (`d·(q−8)`, `d·q + m`, `scale·q − min`, ...).
//!
//! The SIMD kernels factor each block's scale out of its sum: `Σ (d·q + m)·x` is computed as
//! `d·Σ(q − c)·x + (c·d + m)·Σx`, with integer `q − c` centred on the middle quant (so both
//! terms stay about as small as the weights; `Σx` per 32 values is computed once per call).
//! That is one FMA per weight after the integer-to-float convert, not a multiply, a subtract
//! and an FMA, and it differs from dequantize-then-dot only in f32 rounding (the tests bound
//! it by `1e-5 · Σ|w·x|`; against transformers it stays within the prefill path's error).
//!
//! The implementations: portable scalar (the fallback, also the check for the others:
//! reference decode, then dot); x86 AVX2+FMA+F16C, and AVX-512F for the hottest formats
//! (picked at run time); and 4-lane kernels written once ([`lanes4`]) for wasm `simd128` and
//! aarch64 NEON.

use crate::gguf::GgmlType;
use crate::quant::blocks::{f16_at, scale_min_k4};

/// Formats with a fused dot product here.
pub fn supported(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4K | Q5K | Q6K)
}

/// Which instruction set runs the kernels (decided once per process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simd {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F on top of AVX2: 16-lane kernels for the formats that have one
    /// (`avx512::has`), AVX2 for the rest.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "wasm32")]
    Simd128,
    /// aarch64's NEON, with the simd128 kernels' source ([`lanes4`]).
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Simd {
    /// The best the machine has (natively, `LLAMA_WEBGPU_CPU_SIMD=scalar|avx2` caps it, to
    /// measure what each level buys).
    pub fn detect() -> Simd {
        #[cfg(not(target_arch = "wasm32"))]
        let cap = std::env::var("LLAMA_WEBGPU_CPU_SIMD").unwrap_or_default();
        #[cfg(not(target_arch = "wasm32"))]
        if cap == "scalar" {
            return Simd::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            if cap != "avx2" && is_x86_feature_detected!("avx512f") {
                return Simd::Avx512;
            }
            return Simd::Avx2;
        }
        #[cfg(target_arch = "wasm32")]
        return Simd::Simd128;
        // NEON is part of every aarch64 target Rust builds for
        #[cfg(target_arch = "aarch64")]
        return Simd::Neon;
        #[allow(unreachable_code)]
        Simd::Scalar
    }

    /// Every level this machine can run, scalar first (the tests check each).
    pub fn available() -> Vec<Simd> {
        let mut v = vec![Simd::Scalar];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            v.push(Simd::Avx2);
            if is_x86_feature_detected!("avx512f") {
                v.push(Simd::Avx512);
            }
        }
        #[cfg(target_arch = "wasm32")]
        v.push(Simd::Simd128);
        #[cfg(target_arch = "aarch64")]
        v.push(Simd::Neon);
        v
    }

    pub fn name(self) -> &'static str {
        match self {
            Simd::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => "avx512",
            #[cfg(target_arch = "wasm32")]
            Simd::Simd128 => "simd128",
            #[cfg(target_arch = "aarch64")]
            Simd::Neon => "neon",
        }
    }
}

/// `out[r] = row_r · x` for consecutive rows of `w` (`row_bytes` each) of type `ty`.
/// `x.len()` is the row length (a whole number of blocks). Rows or vectors of the wrong size
/// give 0 rather than reading out of bounds.
pub fn rows_dot(simd: Simd, ty: GgmlType, w: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
    let ok = supported(ty)
        && row_bytes > 0
        && w.len() >= out.len() * row_bytes
        && ty.bytes_for(x.len() as u64) == Some(row_bytes as u64);
    if !ok {
        out.fill(0.0);
        return;
    }
    match simd {
        Simd::Scalar => scalar::rows(ty, w, row_bytes, x, out),
        // SAFETY: detect() saw the features; sizes checked above.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2::rows(ty, w, row_bytes, x, out) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 if avx512::has(ty) => unsafe { avx512::rows(ty, w, row_bytes, x, out) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { avx2::rows(ty, w, row_bytes, x, out) },
        #[cfg(target_arch = "wasm32")]
        Simd::Simd128 => unsafe { lanes4::rows(ty, w, row_bytes, x, out) },
        #[cfg(target_arch = "aarch64")]
        Simd::Neon => unsafe { lanes4::rows(ty, w, row_bytes, x, out) },
    }
}

/// `Σ a_i b_i` in f32 (attention scores), SIMD where available.
pub fn dot_f32(simd: Simd, a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: features detected; the kernel reads n values of each.
        Simd::Avx2 | Simd::Avx512 => unsafe { avx2::f32_dot(a.as_ptr(), b.as_ptr(), n) },
        #[cfg(target_arch = "wasm32")]
        Simd::Simd128 => unsafe { lanes4::f32_dot(a.as_ptr(), b.as_ptr(), n) },
        #[cfg(target_arch = "aarch64")]
        Simd::Neon => unsafe { lanes4::f32_dot(a.as_ptr(), b.as_ptr(), n) },
        _ => scalar::f32_dot(a, b),
    }
}

/// `out[i·n + t] = w_i · x_t` for every row `w_i` of `w` and token `x_t` of `x` (both
/// `cols` wide, `n = x.len() / cols`): prefill's products of decoded rows with a chunk of
/// tokens. Tiles of 4 rows × 3 tokens share their loads (7 loads for 12 FMAs, where one dot at
/// a time needs 2 per FMA), the rest goes one dot at a time.
pub fn dots(simd: Simd, w: &[f32], x: &[f32], cols: usize, out: &mut [f32]) {
    if cols == 0 {
        out.fill(0.0);
        return;
    }
    let (rows, n) = (w.len() / cols, x.len() / cols);
    let m = (rows * n).min(out.len());
    let out = &mut out[..m];
    let one = |i: usize, t: usize| dot_f32(simd, &w[i * cols..][..cols], &x[t * cols..][..cols]);
    let (mut i, mut done) = (0, 0);
    while i + 4 <= rows && out.len() >= (i + 4) * n {
        let mut t = 0;
        while t + 3 <= n {
            let wr = [0, 1, 2, 3].map(|k| &w[(i + k) * cols..][..cols]);
            let xt = [0, 1, 2].map(|k| &x[(t + k) * cols..][..cols]);
            let r = tile(simd, wr, xt);
            for (k, rk) in r.iter().enumerate() {
                out[(i + k) * n + t..][..3].copy_from_slice(rk);
            }
            t += 3;
        }
        for k in 0..4 {
            for tt in t..n {
                out[(i + k) * n + tt] = one(i + k, tt);
            }
        }
        i += 4;
        done = i;
    }
    for i in done..rows {
        for t in 0..n {
            if let Some(o) = out.get_mut(i * n + t) {
                *o = one(i, t);
            }
        }
    }
}

/// 4 rows × 3 tokens of dot products (all slices of one length).
fn tile(simd: Simd, w: [&[f32]; 4], x: [&[f32]; 3]) -> [[f32; 3]; 4] {
    let n = w.iter().map(|r| r.len()).chain(x.iter().map(|r| r.len())).min().unwrap_or(0);
    match simd {
        // SAFETY: features detected; every slice holds at least n values.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 | Simd::Avx512 => unsafe { avx2::tile(w.map(|r| r.as_ptr()), x.map(|r| r.as_ptr()), n) },
        #[cfg(target_arch = "wasm32")]
        Simd::Simd128 => unsafe { lanes4::tile(w.map(|r| r.as_ptr()), x.map(|r| r.as_ptr()), n) },
        #[cfg(target_arch = "aarch64")]
        Simd::Neon => unsafe { lanes4::tile(w.map(|r| r.as_ptr()), x.map(|r| r.as_ptr()), n) },
        _ => w.map(|wr| x.map(|xr| scalar::f32_dot(&wr[..n], &xr[..n]))),
    }
}

/// Scales and mins of the 8 sub-blocks of a Q4_K/Q5_K super-block (`d·sc`, `dmin·m`).
fn k4_scales(b: &[u8]) -> ([f32; 8], [f32; 8]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let mut sc = [0f32; 8];
    let mut mn = [0f32; 8];
    for j in 0..8 {
        let (c, m) = scale_min_k4(j, &b[4..16]);
        sc[j] = d * c as f32;
        mn[j] = dmin * m as f32;
    }
    (sc, mn)
}

/// Decodes one row of `ty` into `out` with the formats' one CPU decode
/// ([`crate::quant::dequantize_row`]); a row of the wrong size decodes to zeros.
pub fn decode_row(ty: GgmlType, row: &[u8], out: &mut [f32]) {
    if crate::quant::dequantize_row(ty, row, out).is_err() {
        out.fill(0.0);
    }
}

mod scalar {
    use super::*;

    pub fn f32_dot(a: &[f32], b: &[f32]) -> f32 {
        // 8 partial sums: the same association as the SIMD kernels, and it vectorizes
        let mut acc = [0f32; 8];
        let mut ca = a.chunks_exact(8);
        let mut cb = b.chunks_exact(8);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..8 {
                acc[k] += x[k] * y[k];
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
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::GgmlType;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn half(p: *const u8) -> f32 {
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

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn half_dot(bf: bool, w: *const u8, x: *const f32, n: usize) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut i = 0;
        unsafe {
            let load = |p: *const u8| if bf { load8_bf16(p) } else { load8_f16(p) };
            while i + 16 <= n {
                acc[0] = _mm256_fmadd_ps(load(w.add(2 * i)), _mm256_loadu_ps(x.add(i)), acc[0]);
                acc[1] = _mm256_fmadd_ps(load(w.add(2 * i + 16)), _mm256_loadu_ps(x.add(i + 8)), acc[1]);
                i += 16;
            }
            let mut s = hsum(_mm256_add_ps(acc[0], acc[1]));
            while i < n {
                let b = [*w.add(2 * i), *w.add(2 * i + 1)];
                let v = if bf { half::bf16::from_le_bytes(b).to_f32() } else { half::f16::from_le_bytes(b).to_f32() };
                s += v * *x.add(i);
                i += 1;
            }
            s
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

    /// `Σ_b (d_b · s_b + c_b · xs_b)` over `nb` blocks, where `blk(b) = (d_b, s_b, c_b)` and
    /// `s_b` is the block's `Σ q·x` (8 lanes); `c_b` only with `MIN`. Two running sums of each,
    /// so their dependency chains overlap.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn blocks<const MIN: bool>(nb: usize, xs: &[f32], blk: impl Fn(usize) -> (f32, __m256, f32)) -> f32 {
        let mut t = [_mm256_setzero_ps(); 2];
        let mut c = [0f32; 2];
        let one = |b: usize, t: &mut __m256, c: &mut f32| {
            let (d, s, cb) = blk(b);
            *t = _mm256_fmadd_ps(_mm256_set1_ps(d), s, *t);
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
        hsum(_mm256_add_ps(t[0], t[1])) + (c[0] + c[1])
    }

    /// Q8_0: `d · Σ q x`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_0(w: *const u8, x: *const f32, nb: usize) -> f32 {
        unsafe {
            blocks::<false>(nb, &[], |b| {
                let (p, xb) = (w.add(34 * b), x.add(32 * b));
                let q = p.add(2);
                let s = dot32(
                    [i8x8(q), i8x8(q.add(8)), i8x8(q.add(16)), i8x8(q.add(24))],
                    [xb, xb.add(8), xb.add(16), xb.add(24)],
                );
                (half(p), s, 0.0)
            })
        }
    }

    /// Q4_0 `d·(q − 8)`, and Q4_1 `d·q + m` as `d·Σ(q − 8)x + (8d + m)·Σx`: centred quants
    /// keep the two terms small (`8d + m` is about the block's middle weight), so factoring
    /// out the min costs no accuracy. Byte `j` holds value `j` (low nibble) and `j + 16` (high).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4<const Q41: bool>(w: *const u8, x: *const f32, nb: usize, xs: &[f32]) -> f32 {
        let (ts, qoff) = if Q41 { (20, 4) } else { (18, 2) };
        let m4 = _mm256_set1_epi32(0xF);
        let eight = _mm256_set1_epi32(8);
        unsafe {
            blocks::<Q41>(nb, xs, |b| {
                let (p, xb) = (w.add(ts * b), x.add(32 * b));
                let (v0, v1) = (u8x8(p.add(qoff)), u8x8(p.add(qoff + 8)));
                let lo = |v| f(_mm256_sub_epi32(_mm256_and_si256(v, m4), eight));
                let hi = |v| f(_mm256_sub_epi32(_mm256_srli_epi32::<4>(v), eight));
                let s = dot32([lo(v0), lo(v1), hi(v0), hi(v1)], [xb, xb.add(8), xb.add(16), xb.add(24)]);
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
            blocks::<Q51>(nb, xs, |b| {
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
                (d, s, if Q51 { 16.0 * d + half(p.add(2)) } else { 0.0 })
            })
        }
    }

    /// Q4_K (`Q5 = false`) and Q5_K super-blocks: per 32-value sub-block `s` of scale
    /// `a = d·sc_s` and min `m = dmin·m_s`, `a·Σ(q − c)x + (c·a − m)·Σx` with `c` the middle
    /// quant (8, Q5_K: 16), centred as Q4_1. Bytes `32j..32j+32` of the quants hold sub-block `2j`
    /// (low nibbles) and `2j + 1` (high); Q5_K's fifth bit of value `l` of sub-block `s` is
    /// bit `s` of `qh[l]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q45_k<const Q5: bool>(w: &[u8], x: *const f32, nb: usize, xs: &[f32]) -> f32 {
        let (ts, qoff) = if Q5 { (176, 48) } else { (144, 16) };
        let m4 = _mm256_set1_epi32(0xF);
        let one = _mm256_set1_epi32(1);
        let c = if Q5 { 16 } else { 8 };
        let mid = _mm256_set1_epi32(c);
        let mut t = [_mm256_setzero_ps(); 2];
        let mut mins = _mm256_setzero_ps();
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
                    let xl = x.add(256 * b + 64 * j);
                    let xh = xl.add(32);
                    let centred = |v| f(_mm256_sub_epi32(v, mid));
                    let sl = dot32(lo.map(centred), [xl, xl.add(8), xl.add(16), xl.add(24)]);
                    let sh = dot32(hi.map(centred), [xh, xh.add(8), xh.add(16), xh.add(24)]);
                    t[0] = _mm256_fmadd_ps(_mm256_set1_ps(sc[2 * j]), sl, t[0]);
                    t[1] = _mm256_fmadd_ps(_mm256_set1_ps(sc[2 * j + 1]), sh, t[1]);
                }
                if let Some(xsb) = xs.get(8 * b..8 * b + 8) {
                    // c·a − m, as the 8 sub-blocks' offsets
                    let off = _mm256_fmsub_ps(
                        _mm256_set1_ps(c as f32),
                        _mm256_loadu_ps(sc.as_ptr()),
                        _mm256_loadu_ps(mn.as_ptr()),
                    );
                    mins = _mm256_fmadd_ps(off, _mm256_loadu_ps(xsb.as_ptr()), mins);
                }
            }
            hsum(_mm256_add_ps(t[0], t[1])) + hsum(mins)
        }
    }

    /// Q6_K: `d·sc_g · Σ(q − 32)x` per 16-value group `g`. Per half `h` of the super-block,
    /// byte `l` of `ql` holds values `l` (low nibble) and `l + 64` (high), byte `l + 32` values
    /// `l + 32` and `l + 96`; the two high bits of those four are `qh[l]`'s bit pairs.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q6_k(w: *const u8, x: *const f32, nb: usize) -> f32 {
        let m4 = _mm256_set1_epi32(0xF);
        let m30 = _mm256_set1_epi32(0x30);
        let m32 = _mm256_set1_epi32(32);
        let mut t = [_mm256_setzero_ps(); 4];
        unsafe {
            for b in 0..nb {
                let p = w.add(210 * b);
                let d = _mm256_set1_ps(half(p.add(208)));
                let mut scale = [0f32; 16];
                _mm256_storeu_ps(scale.as_mut_ptr(), _mm256_mul_ps(d, i8x8(p.add(192))));
                _mm256_storeu_ps(scale.as_mut_ptr().add(8), _mm256_mul_ps(d, i8x8(p.add(200))));
                for h in 0..2 {
                    let (ql, qh) = (p.add(64 * h), p.add(128 + 32 * h));
                    let xh = x.add(256 * b + 128 * h);
                    for i in 0..2 {
                        // values l = 16i..16i+16 of each quarter k: two groups of 8
                        let q = [0, 1].map(|u| {
                            let l = 16 * i + 8 * u;
                            let (a, c, hb) = (u8x8(ql.add(l)), u8x8(ql.add(l + 32)), u8x8(qh.add(l)));
                            [
                                _mm256_or_si256(
                                    _mm256_and_si256(a, m4),
                                    _mm256_and_si256(_mm256_slli_epi32::<4>(hb), m30),
                                ),
                                _mm256_or_si256(
                                    _mm256_and_si256(c, m4),
                                    _mm256_and_si256(_mm256_slli_epi32::<2>(hb), m30),
                                ),
                                _mm256_or_si256(_mm256_srli_epi32::<4>(a), _mm256_and_si256(hb, m30)),
                                _mm256_or_si256(
                                    _mm256_srli_epi32::<4>(c),
                                    _mm256_and_si256(_mm256_srli_epi32::<2>(hb), m30),
                                ),
                            ]
                            .map(|v| f(_mm256_sub_epi32(v, m32)))
                        });
                        for k in 0..4 {
                            let xk = xh.add(32 * k + 16 * i);
                            let s = _mm256_fmadd_ps(q[1][k], ld(xk.add(8)), _mm256_mul_ps(q[0][k], ld(xk)));
                            t[k] = _mm256_fmadd_ps(_mm256_set1_ps(scale[8 * h + 2 * k + i]), s, t[k]);
                        }
                    }
                }
            }
            hsum(_mm256_add_ps(_mm256_add_ps(t[0], t[1]), _mm256_add_ps(t[2], t[3])))
        }
    }

    /// SAFETY: the caller checked `w` holds `out.len()` rows of `rb` bytes of whole blocks
    /// covering `x`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows(ty: GgmlType, w: &[u8], rb: usize, x: &[f32], out: &mut [f32]) {
        use GgmlType::*;
        let (xp, n) = (x.as_ptr(), x.len());
        let nb = n / ty.block_size() as usize;
        // Σx per 32 values, for the formats with a min
        let xs = if matches!(ty, Q4_1 | Q5_1 | Q4K | Q5K) { unsafe { sums32(x) } } else { Vec::new() };
        for (r, o) in out.iter_mut().enumerate() {
            let row = unsafe { w.get_unchecked(r * rb..(r + 1) * rb) };
            let p = row.as_ptr();
            *o = unsafe {
                match ty {
                    F32 => f32_dot(p as *const f32, xp, n),
                    F16 => half_dot(false, p, xp, n),
                    BF16 => half_dot(true, p, xp, n),
                    Q8_0 => q8_0(p, xp, nb),
                    Q4_0 => q4::<false>(p, xp, nb, &xs),
                    Q4_1 => q4::<true>(p, xp, nb, &xs),
                    Q5_0 => q5::<false>(p, xp, nb, &xs),
                    Q5_1 => q5::<true>(p, xp, nb, &xs),
                    Q4K => q45_k::<false>(row, xp, nb, &xs),
                    Q5K => q45_k::<true>(row, xp, nb, &xs),
                    Q6K => q6_k(p, xp, nb),
                    _ => 0.0,
                }
            };
        }
    }
}

/// 16-lane versions of the hottest kernels (SmolLM2's Q4_1/Q8_0, Llama 3's Q4_K/Q6_K),
/// the same factored arithmetic as [`avx2`]: a 16-byte load widens to 16 quants at once, so a
/// block of 32 takes half the instructions (the decode loop is instruction-bound).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::avx2::{half, halves2, hsum};
    use super::GgmlType;
    use std::arch::x86_64::*;

    pub fn has(ty: GgmlType) -> bool {
        matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4K | GgmlType::Q6K)
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
                    let off = _mm256_fmsub_ps(
                        _mm256_set1_ps(8.0),
                        _mm256_loadu_ps(sc.as_ptr()),
                        _mm256_loadu_ps(mn.as_ptr()),
                    );
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
                            _mm512_or_si512(
                                _mm512_srli_epi32::<4>(c),
                                _mm512_and_si512(_mm512_srli_epi32::<2>(hb), m30),
                            ),
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

    /// SAFETY: as for `avx2::rows`, and `has(ty)`.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub unsafe fn rows(ty: GgmlType, w: &[u8], rb: usize, x: &[f32], out: &mut [f32]) {
        let (xp, n) = (x.as_ptr(), x.len());
        let nb = n / ty.block_size() as usize;
        let xs =
            if matches!(ty, GgmlType::Q4_1 | GgmlType::Q4K) { unsafe { super::avx2::sums32(x) } } else { Vec::new() };
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
                    _ => 0.0,
                }
            };
        }
    }
}

/// The 4-lane kernels, one source for wasm `simd128` and aarch64 NEON: written in simd128's
/// operations, which [`neon`] provides on aarch64 (so both give the same bits).
#[cfg(any(target_arch = "wasm32", target_arch = "aarch64"))]
mod lanes4 {
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
        f32x4_extract_lane::<0>(v)
            + f32x4_extract_lane::<1>(v)
            + f32x4_extract_lane::<2>(v)
            + f32x4_extract_lane::<3>(v)
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
        let mut acc = [[f32x4_splat(0.0); 3]; 4];
        let mut i = 0;
        unsafe {
            while i + 4 <= n {
                let xv = x.map(|p| ld(p.add(i)));
                for r in 0..4 {
                    let wv = ld(w[r].add(i));
                    for t in 0..3 {
                        acc[r][t] = madd(acc[r][t], wv, xv[t]);
                    }
                }
                i += 4;
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

    /// `Σ_k q_k · x_k` over four groups of 8 quants (i16 lanes) and their x (two chains;
    /// simd128 has no fused multiply-add).
    #[inline]
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
    unsafe fn dot32(q: [v128; 4], x: [*const f32; 4]) -> v128 {
        let (mut a, mut b) = (f32x4_splat(0.0), f32x4_splat(0.0));
        for k in 0..4 {
            let [lo, hi] = f8(q[k]);
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

    /// As the AVX2 `blocks`: `Σ_b (d_b · s_b + c_b · xs_b)`, two running sums of each.
    #[inline]
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
    fn blocks<const MIN: bool>(nb: usize, xs: &[f32], blk: impl Fn(usize) -> (f32, v128, f32)) -> f32 {
        let mut t = [f32x4_splat(0.0); 2];
        let mut c = [0f32; 2];
        for b in 0..nb {
            let (d, s, cb) = blk(b);
            t[b & 1] = madd(t[b & 1], f32x4_splat(d), s);
            if MIN {
                c[b & 1] += cb * xs.get(b).copied().unwrap_or(0.0);
            }
        }
        hsum(f32x4_add(t[0], t[1])) + (c[0] + c[1])
    }

    #[inline]
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
    unsafe fn q8_0(w: *const u8, x: *const f32, nb: usize) -> f32 {
        blocks::<false>(nb, &[], |b| unsafe {
            let (p, xb) = (w.add(34 * b), x.add(32 * b));
            let q = p.add(2);
            let s = dot32(
                [0, 1, 2, 3].map(|k| i16x8_load_extend_i8x8(q.add(8 * k) as *const i8)),
                [xb, xb.add(8), xb.add(16), xb.add(24)],
            );
            (half(p), s, 0.0)
        })
    }

    /// Q4_0 and Q4_1, centred and factored as the AVX2 kernel.
    #[inline]
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
    unsafe fn q4<const Q41: bool>(w: *const u8, x: *const f32, nb: usize, xs: &[f32]) -> f32 {
        let (ts, qoff) = if Q41 { (20, 4) } else { (18, 2) };
        let m4 = u16x8_splat(0xF);
        let eight = i16x8_splat(8);
        blocks::<Q41>(nb, xs, |b| unsafe {
            let (p, xb) = (w.add(ts * b), x.add(32 * b));
            let (v0, v1) = (u8x8(p.add(qoff)), u8x8(p.add(qoff + 8)));
            let lo = |v| i16x8_sub(v128_and(v, m4), eight);
            let hi = |v| i16x8_sub(u16x8_shr(v, 4), eight);
            let s = dot32([lo(v0), lo(v1), hi(v0), hi(v1)], [xb, xb.add(8), xb.add(16), xb.add(24)]);
            let d = half(p);
            (d, s, if Q41 { 8.0 * d + half(p.add(2)) } else { 0.0 })
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
        blocks::<Q51>(nb, xs, |b| unsafe {
            let (p, xb) = (w.add(ts * b), x.add(32 * b));
            let qh = (p.add(qh_at) as *const u32).read_unaligned();
            // values 8k..8k+8 take their fifth bits from byte k of qh
            let fifth = |k: u32| {
                let set = i16x8_ne(v128_and(u16x8_splat(((qh >> (8 * k)) & 0xFF) as u16), bits), zero);
                v128_and(set, sixteen)
            };
            let (v0, v1) = (u8x8(p.add(qs_at)), u8x8(p.add(qs_at + 8)));
            let q = [v128_and(v0, m4), v128_and(v1, m4), u16x8_shr(v0, 4), u16x8_shr(v1, 4)];
            let q = [0, 1, 2, 3].map(|k| i16x8_sub(v128_or(q[k], fifth(k as u32)), sixteen));
            let s = dot32(q, [xb, xb.add(8), xb.add(16), xb.add(24)]);
            let d = half(p);
            (d, s, if Q51 { 16.0 * d + half(p.add(2)) } else { 0.0 })
        })
    }

    /// Q4_K and Q5_K, centred and factored as the AVX2 kernel.
    #[inline]
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
    unsafe fn q45_k<const Q5: bool>(w: &[u8], x: *const f32, nb: usize, xs: &[f32]) -> f32 {
        let (ts, qoff) = if Q5 { (176, 48) } else { (144, 16) };
        let m4 = u16x8_splat(0xF);
        let one = u16x8_splat(1);
        let c = if Q5 { 16 } else { 8 };
        let mid = i16x8_splat(c);
        let mut t = [f32x4_splat(0.0); 2];
        let mut mins = f32x4_splat(0.0);
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
                    let xl = x.add(256 * b + 64 * j);
                    let xh = xl.add(32);
                    let centred = |v| i16x8_sub(v, mid);
                    let sl = dot32(lo.map(centred), [xl, xl.add(8), xl.add(16), xl.add(24)]);
                    let sh = dot32(hi.map(centred), [xh, xh.add(8), xh.add(16), xh.add(24)]);
                    t[0] = madd(t[0], f32x4_splat(sc[2 * j]), sl);
                    t[1] = madd(t[1], f32x4_splat(sc[2 * j + 1]), sh);
                }
                if let Some(xsb) = xs.get(8 * b..8 * b + 8) {
                    for half_ in 0..2 {
                        let at = 4 * half_;
                        let off = f32x4_sub(
                            f32x4_mul(f32x4_splat(c as f32), v128_load(sc.as_ptr().add(at) as *const v128)),
                            v128_load(mn.as_ptr().add(at) as *const v128),
                        );
                        mins = madd(mins, off, ld(xsb.as_ptr().add(at)));
                    }
                }
            }
        }
        hsum(f32x4_add(t[0], t[1])) + hsum(mins)
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
    unsafe fn q6_k(w: *const u8, x: *const f32, nb: usize) -> f32 {
        let m4 = u16x8_splat(0xF);
        let m30 = u16x8_splat(0x30);
        let m32 = i16x8_splat(32);
        let mut t = [f32x4_splat(0.0); 4];
        unsafe {
            for b in 0..nb {
                let p = w.add(210 * b);
                let d = half(p.add(208));
                let sc = p.add(192) as *const i8;
                for h in 0..2 {
                    let (ql, qh) = (p.add(64 * h), p.add(128 + 32 * h));
                    let xh = x.add(256 * b + 128 * h);
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
                            let xk = xh.add(32 * k + 16 * i);
                            let mut s = f32x4_splat(0.0);
                            for u in 0..2 {
                                for e in 0..2 {
                                    s = madd(s, q[u][k][e], ld(xk.add(8 * u + 4 * e)));
                                }
                            }
                            let scale = d * *sc.add(8 * h + 2 * k + i) as f32;
                            t[k] = madd(t[k], f32x4_splat(scale), s);
                        }
                    }
                }
            }
        }
        hsum(f32x4_add(f32x4_add(t[0], t[1]), f32x4_add(t[2], t[3])))
    }

    /// SAFETY: as for the AVX2 version.
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon"))]
    pub unsafe fn rows(ty: GgmlType, w: &[u8], rb: usize, x: &[f32], out: &mut [f32]) {
        use GgmlType::*;
        let (xp, n) = (x.as_ptr(), x.len());
        let nb = n / ty.block_size() as usize;
        let xs = if matches!(ty, Q4_1 | Q5_1 | Q4K | Q5K) { unsafe { sums32(x) } } else { Vec::new() };
        for (r, o) in out.iter_mut().enumerate() {
            let row = unsafe { w.get_unchecked(r * rb..(r + 1) * rb) };
            let p = row.as_ptr();
            *o = unsafe {
                match ty {
                    // halves: no f16 lanes in simd128; the scalar path widens them
                    F32 => f32_dot(p as *const f32, xp, n),
                    F16 | BF16 => {
                        super::scalar::rows(ty, row, rb, x, std::slice::from_mut(o));
                        *o
                    }
                    Q8_0 => q8_0(p, xp, nb),
                    Q4_0 => q4::<false>(p, xp, nb, &xs),
                    Q4_1 => q4::<true>(p, xp, nb, &xs),
                    Q5_0 => q5::<false>(p, xp, nb, &xs),
                    Q5_1 => q5::<true>(p, xp, nb, &xs),
                    Q4K => q45_k::<false>(row, xp, nb, &xs),
                    Q5K => q45_k::<true>(row, xp, nb, &xs),
                    Q6K => q6_k(p, xp, nb),
                    _ => 0.0,
                }
            };
        }
    }
}

/// The simd128 operations [`lanes4`] uses, on NEON: a `v128` is 16 bytes that each operation
/// views as its lanes (the reinterprets are free). Where NEON has a fused multiply-add, `madd`
/// uses it.
#[cfg(target_arch = "aarch64")]
#[allow(non_camel_case_types)]
mod neon {
    use std::arch::aarch64::*;

    pub type v128 = uint8x16_t;

    #[inline]
    #[target_feature(enable = "neon")]
    fn f(v: v128) -> float32x4_t {
        vreinterpretq_f32_u8(v)
    }
    #[inline]
    #[target_feature(enable = "neon")]
    fn s16(v: v128) -> int16x8_t {
        vreinterpretq_s16_u8(v)
    }
    #[inline]
    #[target_feature(enable = "neon")]
    fn u16(v: v128) -> uint16x8_t {
        vreinterpretq_u16_u8(v)
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn madd(acc: v128, a: v128, b: v128) -> v128 {
        vreinterpretq_u8_f32(vfmaq_f32(f(acc), f(a), f(b)))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn f32x4_splat(x: f32) -> v128 {
        vreinterpretq_u8_f32(vdupq_n_f32(x))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn f32x4_add(a: v128, b: v128) -> v128 {
        vreinterpretq_u8_f32(vaddq_f32(f(a), f(b)))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn f32x4_mul(a: v128, b: v128) -> v128 {
        vreinterpretq_u8_f32(vmulq_f32(f(a), f(b)))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn f32x4_sub(a: v128, b: v128) -> v128 {
        vreinterpretq_u8_f32(vsubq_f32(f(a), f(b)))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn f32x4_extract_lane<const N: i32>(v: v128) -> f32 {
        vgetq_lane_f32::<N>(f(v))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn f32x4_convert_i32x4(v: v128) -> v128 {
        vreinterpretq_u8_f32(vcvtq_f32_s32(vreinterpretq_s32_u8(v)))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn i32x4_extend_low_i16x8(v: v128) -> v128 {
        vreinterpretq_u8_s32(vmovl_s16(vget_low_s16(s16(v))))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn i32x4_extend_high_i16x8(v: v128) -> v128 {
        vreinterpretq_u8_s32(vmovl_high_s16(s16(v)))
    }
    /// # Safety
    /// `p` points at 8 readable bytes.
    #[inline]
    #[target_feature(enable = "neon")]
    pub unsafe fn u16x8_load_extend_u8x8(p: *const u8) -> v128 {
        unsafe { vreinterpretq_u8_u16(vmovl_u8(vld1_u8(p))) }
    }
    /// # Safety
    /// `p` points at 8 readable bytes.
    #[inline]
    #[target_feature(enable = "neon")]
    pub unsafe fn i16x8_load_extend_i8x8(p: *const i8) -> v128 {
        unsafe { vreinterpretq_u8_s16(vmovl_s8(vld1_s8(p))) }
    }
    /// # Safety
    /// `p` points at 16 readable bytes.
    #[inline]
    #[target_feature(enable = "neon")]
    pub unsafe fn v128_load(p: *const v128) -> v128 {
        unsafe { vld1q_u8(p as *const u8) }
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn v128_and(a: v128, b: v128) -> v128 {
        vandq_u8(a, b)
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn v128_or(a: v128, b: v128) -> v128 {
        vorrq_u8(a, b)
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn u16x8_shr(v: v128, n: u32) -> v128 {
        vreinterpretq_u8_u16(vshlq_u16(u16(v), vdupq_n_s16(-((n & 15) as i16))))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn i16x8_shl(v: v128, n: u32) -> v128 {
        vreinterpretq_u8_s16(vshlq_s16(s16(v), vdupq_n_s16((n & 15) as i16)))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn i16x8_sub(a: v128, b: v128) -> v128 {
        vreinterpretq_u8_s16(vsubq_s16(s16(a), s16(b)))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn i16x8_splat(x: i16) -> v128 {
        vreinterpretq_u8_s16(vdupq_n_s16(x))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn u16x8_splat(x: u16) -> v128 {
        vreinterpretq_u8_u16(vdupq_n_u16(x))
    }
    #[inline]
    #[target_feature(enable = "neon")]
    #[allow(clippy::too_many_arguments)]
    pub fn u16x8(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16) -> v128 {
        let v = [a, b, c, d, e, f, g, h];
        // SAFETY: 8 u16 values.
        unsafe { vreinterpretq_u8_u16(vld1q_u16(v.as_ptr())) }
    }
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn i16x8_ne(a: v128, b: v128) -> v128 {
        vreinterpretq_u8_u16(vmvnq_u16(vceqq_u16(u16(a), u16(b))))
    }
}

/// Checks every format's kernel at `simd` against the reference decode on random blocks:
/// returns, per format, the worst `|got − want| / Σ|w·x|` over a few rows (`want` in f64).
/// The unit tests run it natively; the browser tests run it in wasm (`simd128`), through
/// `checkCpuKernels`.
pub fn check_kernels(simd: Simd) -> Vec<(GgmlType, f64)> {
    fn lcg(seed: &mut u64) -> u32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 33) as u32
    }
    let mut seed = 7u64;
    let cols = 512;
    let x: Vec<f32> = (0..cols).map(|_| lcg(&mut seed) as f32 / u32::MAX as f32 * 2.0 - 1.0).collect();
    let mut worst = Vec::new();
    for ty in GgmlType::ALL.into_iter().filter(|t| supported(*t)) {
        let Some(rb) = ty.bytes_for(cols as u64).map(|b| b as usize) else { continue };
        // random bytes are valid blocks, except scales that decode to inf/NaN: keep the
        // f16/bf16 exponents small
        let mut w: Vec<u8> = (0..rb * 3).map(|_| lcg(&mut seed) as u8).collect();
        let fix = |b: &mut u8| *b &= 0x3B;
        match ty {
            GgmlType::F32 => w.chunks_mut(4).for_each(|c| fix(&mut c[3])),
            GgmlType::F16 | GgmlType::BF16 => w.chunks_mut(2).for_each(|c| fix(&mut c[1])),
            GgmlType::Q6K => w.chunks_mut(210).for_each(|c| fix(&mut c[209])),
            _ => w.chunks_mut(ty.type_size() as usize).for_each(|c| {
                fix(&mut c[1]);
                fix(&mut c[3]);
            }),
        }
        let mut out = [0f32; 3];
        rows_dot(simd, ty, &w, rb, &x, &mut out);
        let mut err = 0f64;
        for (r, &got) in out.iter().enumerate() {
            let wr = crate::quant::dequantize(ty, &w[r * rb..][..rb]).unwrap_or_default();
            let want: f64 = wr.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            let scale: f64 = wr.iter().zip(&x).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
            // a failed decode (empty `wr`) or a NaN result counts as the worst error
            let e =
                if wr.len() == cols { (got as f64 - want).abs() / scale.max(f64::MIN_POSITIVE) } else { f64::INFINITY };
            err = err.max(if e.is_nan() { f64::INFINITY } else { e });
        }
        worst.push((ty, err));
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_and_simd_level_matches_the_reference_decode() {
        for simd in Simd::available() {
            let worst = check_kernels(simd);
            assert_eq!(worst.len(), GgmlType::ALL.into_iter().filter(|t| supported(*t)).count());
            for (ty, err) in worst {
                assert!(err <= 1e-5, "{} {}: error {err:e} of Σ|w x|", ty.name(), simd.name());
            }
        }
        // decode_row gives the reference values exactly
        let row: Vec<u8> = (0..34 * 4).map(|i| if i % 34 == 1 { 0x30 } else { (i * 37) as u8 }).collect();
        let mut dec = vec![0f32; 128];
        decode_row(GgmlType::Q8_0, &row, &mut dec);
        assert_eq!(dec, crate::quant::dequantize(GgmlType::Q8_0, &row).unwrap());
    }

    #[test]
    fn wrong_sizes_give_zeros_not_a_panic() {
        let x = vec![1f32; 32];
        let mut out = [5f32; 2];
        rows_dot(Simd::detect(), GgmlType::Q8_0, &[0u8; 34], 34, &x, &mut out);
        assert_eq!(out, [0.0, 0.0]);
        rows_dot(Simd::detect(), GgmlType::Q8_0, &[0u8; 68], 34, &x[..16], &mut out);
        assert_eq!(out, [0.0, 0.0]);
    }

    #[test]
    fn dots_cover_every_row_and_token_with_tiles_and_edges() {
        // rows and tokens that are and are not multiples of the 4 × 3 tile, odd widths
        for (rows, n, cols) in [(4, 3, 8), (9, 7, 37), (3, 2, 64), (13, 1, 576), (8, 6, 5)] {
            let w: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect();
            let x: Vec<f32> = (0..n * cols).map(|i| (i as f32 * 0.11).cos()).collect();
            for simd in Simd::available() {
                let mut out = vec![f32::NAN; rows * n];
                dots(simd, &w, &x, cols, &mut out);
                for i in 0..rows {
                    for t in 0..n {
                        let want: f64 = (0..cols).map(|k| w[i * cols + k] as f64 * x[t * cols + k] as f64).sum();
                        let got = out[i * n + t];
                        assert!(
                            (got as f64 - want).abs() < 1e-4,
                            "{} {rows}×{n}×{cols}: [{i},{t}] {got} vs {want}",
                            simd.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn f32_dot_matches_for_every_length() {
        for n in 0..70 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let got = dot_f32(Simd::detect(), &a, &b);
            assert!((got as f64 - want).abs() < 1e-5, "n={n}: {got} vs {want}");
        }
    }
}
