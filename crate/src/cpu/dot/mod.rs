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
    crate::quant::format(ty).cpu_dot
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

/// Most tokens [`rows_dots`] is meant for (speculative verification's drafts plus one): above
/// that, prefill's decode-then-tile path ([`dots`]) reuses each decoded row more. 16 so that
/// verifying up to 15 drafts stays on the exact path (prefill's rounding differs, which could
/// break greedy identity) and costs one weight read per row: a 16-token F16 pass is about 2
/// decode steps here, the tile path's about 5.
pub const SMALL_BATCH: usize = 16;

/// Whether [`rows_dots`] reads `ty`'s blocks once for several tokens at `simd` (otherwise it
/// runs [`rows_dot`] once per token, and prefill's path is the faster one). Every SIMD level
/// (AVX2/AVX-512, simd128, NEON) has such kernels for the same formats.
pub fn fused_small_batch(simd: Simd, ty: GgmlType) -> bool {
    use GgmlType::*;
    simd != Simd::Scalar && matches!(ty, F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q4K | Q5K | Q6K)
}

/// One SIMD level's dot products of one weight row with `T` tokens at once (their `xs` the
/// per-block sums of `sums`).
// only the SIMD levels have such kernels
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "wasm32", target_arch = "aarch64")), allow(dead_code))]
trait RowDots {
    /// SAFETY: the level's features are present; `row` is whole blocks of `ty` covering `n`
    /// values, every `x[t]` points at `n` values, every `xs[t]` is `sums` of that token.
    unsafe fn dots<const T: usize>(ty: GgmlType, row: &[u8], x: [*const f32; T], xs: [&[f32]; T], n: usize)
        -> [f32; T];
    /// Whether the level has a two-row kernel for `ty` ([`RowDots::dots2`]).
    fn pairs(_ty: GgmlType) -> bool {
        false
    }
    /// [`RowDots::dots`] of two rows, each row's results exactly `dots`': where [`RowDots::pairs`]
    /// holds, one kernel that shares the token loads between the rows.
    /// SAFETY: as for `dots`, for both rows.
    unsafe fn dots2<const T: usize>(
        ty: GgmlType,
        rows: [&[u8]; 2],
        x: [*const f32; T],
        xs: [&[f32]; T],
        n: usize,
    ) -> [[f32; T]; 2] {
        // SAFETY: passed on from the caller
        rows.map(|row| unsafe { Self::dots::<T>(ty, row, x, xs, n) })
    }
    fn sums(ty: GgmlType, x: &[f32]) -> Vec<f32>;
}

/// `out[r·n + t] = row_r · x_t` for the `out.len() / n` rows of `w` (`row_bytes` each) and the
/// `n = x.len() / cols` tokens of `x`: [`rows_dot`] for several tokens, each result exactly
/// the one `rows_dot` gives for that token alone (same operations in the same order). Where
/// [`fused_small_batch`] holds, each row is read once per 4 tokens (from L1 after the
/// first); elsewhere it is `rows_dot` per token. Greedy speculative decoding gives plain
/// decoding's tokens only if the target's verification pass (several tokens) and its decode
/// steps (one) agree; this exact agreement is what makes the matmuls do.
pub fn rows_dots(simd: Simd, ty: GgmlType, w: &[u8], row_bytes: usize, x: &[f32], cols: usize, out: &mut [f32]) {
    let n = x.len().checked_div(cols).unwrap_or(0);
    let rows = out.len().checked_div(n).unwrap_or(0);
    let ok = supported(ty)
        && row_bytes > 0
        && n > 0
        && w.len() >= rows * row_bytes
        && ty.bytes_for(cols as u64) == Some(row_bytes as u64);
    if !ok {
        out.fill(0.0);
        return;
    }
    let x = &x[..n * cols];
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 if avx512::has(ty) => fused::<avx512::Kernels>(ty, w, row_bytes, x, cols, n, out),
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 | Simd::Avx512 => fused::<avx2::Kernels>(ty, w, row_bytes, x, cols, n, out),
        #[cfg(target_arch = "wasm32")]
        Simd::Simd128 => fused::<lanes4::Kernels>(ty, w, row_bytes, x, cols, n, out),
        #[cfg(target_arch = "aarch64")]
        Simd::Neon => fused::<lanes4::Kernels>(ty, w, row_bytes, x, cols, n, out),
        _ => {
            let mut one = vec![0f32; rows];
            for (t, xt) in x.chunks_exact(cols).enumerate() {
                rows_dot(simd, ty, w, row_bytes, xt, &mut one);
                for (r, v) in one.iter().enumerate() {
                    out[r * n + t] = *v;
                }
            }
        }
    }
}

/// [`rows_dots`] with a level's `T`-token kernels, 4 tokens at a time: more would spill the
/// accumulators out of AVX2's 16 registers, and AVX-512's groups of 8 (F16, 16 of the 32
/// registers) measured no faster (the FMAs and their token loads bound the time, not the
/// row's conversion that a group shares).
#[cfg(any(target_arch = "x86_64", target_arch = "wasm32", target_arch = "aarch64"))]
fn fused<K: RowDots>(ty: GgmlType, w: &[u8], rb: usize, x: &[f32], cols: usize, n: usize, out: &mut [f32]) {
    let xs: Vec<Vec<f32>> = x.chunks_exact(cols).map(|xt| K::sums(ty, xt)).collect();
    let xp: Vec<*const f32> = x.chunks_exact(cols).map(|xt| xt.as_ptr()).collect();
    let groups = |o: &mut [f32], row: &[u8], mut pair: Option<(&mut [f32], &[u8])>| {
        let mut t = 0;
        while t < n {
            let g = (n - t).min(4);
            let (p, s, o) = (&xp[t..t + g], &xs[t..t + g], &mut o[t..t + g]);
            // SAFETY: rows_dots detected the level (the caller's `simd`) and checked the sizes
            unsafe {
                match (&mut pair, g) {
                    (None, 1) => group_dots::<K, 1>(ty, row, p, s, cols, o),
                    (None, 2) => group_dots::<K, 2>(ty, row, p, s, cols, o),
                    (None, 3) => group_dots::<K, 3>(ty, row, p, s, cols, o),
                    (None, _) => group_dots::<K, 4>(ty, row, p, s, cols, o),
                    (Some((o1, row1)), g) => {
                        let o = [o, &mut o1[t..t + g]];
                        match g {
                            1 => pair_dots::<K, 1>(ty, [row, row1], p, s, cols, o),
                            2 => pair_dots::<K, 2>(ty, [row, row1], p, s, cols, o),
                            3 => pair_dots::<K, 3>(ty, [row, row1], p, s, cols, o),
                            _ => pair_dots::<K, 4>(ty, [row, row1], p, s, cols, o),
                        }
                    }
                }
            }
            t += g;
        }
    };
    // Rows in pairs where the level has a two-row kernel (it shares the token loads), else one
    // at a time; the bits are the same either way. A pair is row i of the first half and row i
    // of the second, so each of the kernel's two weight loads walks one contiguous stream:
    // adjacent rows in pairs measured 1.6x slower than one row at a time (the prefetchers
    // lost the streams at every pair).
    let half = if n > 1 && K::pairs(ty) { out.len() / n / 2 } else { 0 };
    let (lo, hi) = out.split_at_mut(half * n);
    let (wl, wh) = w.split_at(half * rb);
    let mut his = hi.chunks_exact_mut(n).zip(wh.chunks_exact(rb));
    for (o, row) in lo.chunks_exact_mut(n).zip(wl.chunks_exact(rb)) {
        groups(o, row, his.next());
    }
    for (o, row) in his {
        groups(o, row, None);
    }
}

/// `o[r][t] = rows[r] · x_t` for the `T` tokens of `p` and `s` ([`RowDots::dots2`]).
/// SAFETY: as for [`RowDots::dots2`]; `p`, `s` and each `o[r]` hold `T` entries.
#[cfg(any(target_arch = "x86_64", target_arch = "wasm32", target_arch = "aarch64"))]
#[inline(always)]
unsafe fn pair_dots<K: RowDots, const T: usize>(
    ty: GgmlType,
    rows: [&[u8]; 2],
    p: &[*const f32],
    s: &[Vec<f32>],
    cols: usize,
    o: [&mut [f32]; 2],
) {
    let x: [*const f32; T] = std::array::from_fn(|i| p[i]);
    let xs: [&[f32]; T] = std::array::from_fn(|i| s[i].as_slice());
    // SAFETY: passed on from the caller
    let d = unsafe { K::dots2::<T>(ty, rows, x, xs, cols) };
    for (o, d) in o.into_iter().zip(d) {
        o.copy_from_slice(&d);
    }
}

/// `o[t] = row · x_t` for the `T` tokens of `p` (pointers) and `s` (their sums).
/// SAFETY: as for [`RowDots::dots`]; `p`, `s` and `o` hold `T` entries.
#[cfg(any(target_arch = "x86_64", target_arch = "wasm32", target_arch = "aarch64"))]
#[inline(always)]
unsafe fn group_dots<K: RowDots, const T: usize>(
    ty: GgmlType,
    row: &[u8],
    p: &[*const f32],
    s: &[Vec<f32>],
    cols: usize,
    o: &mut [f32],
) {
    let x: [*const f32; T] = std::array::from_fn(|i| p[i]);
    let xs: [&[f32]; T] = std::array::from_fn(|i| s[i].as_slice());
    // SAFETY: passed on from the caller
    o.copy_from_slice(&unsafe { K::dots::<T>(ty, row, x, xs, cols) });
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

mod scalar;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;

#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(any(target_arch = "wasm32", target_arch = "aarch64"))]
mod lanes4;

#[cfg(target_arch = "aarch64")]
#[allow(non_camel_case_types)]
mod neon;

/// A 64-bit LCG's high 32 bits: the random blocks and activations of the kernels' checks,
/// benches and the wasm dot's measurement (reproducible from the seed, on every target).
pub fn lcg(seed: &mut u64) -> u32 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (*seed >> 33) as u32
}

/// `rows` random rows of `ty` (`cols` values each) and `n` random tokens in [-1, 1).
fn random_rows(ty: GgmlType, cols: usize, rows: usize, n: usize, seed: &mut u64) -> (Vec<u8>, Vec<f32>) {
    let rb = ty.bytes_for(cols as u64).unwrap_or(0) as usize;
    let x: Vec<f32> = (0..cols * n).map(|_| lcg(seed) as f32 / u32::MAX as f32 * 2.0 - 1.0).collect();
    // random bytes are valid blocks, except scales that decode to inf/NaN: keep the
    // f16/bf16 exponents small
    let mut w: Vec<u8> = (0..rb * rows).map(|_| lcg(seed) as u8).collect();
    let fix = |b: &mut u8| *b &= 0x3B;
    match ty {
        GgmlType::F32 => w.chunks_mut(4).for_each(|c| fix(&mut c[3])),
        GgmlType::F16 | GgmlType::BF16 => w.chunks_mut(2).for_each(|c| fix(&mut c[1])),
        GgmlType::Q6K => w.chunks_mut(210).for_each(|c| fix(&mut c[209])),
        GgmlType::Q3K => w.chunks_mut(110).for_each(|c| fix(&mut c[109])),
        GgmlType::Q2K => w.chunks_mut(84).for_each(|c| {
            fix(&mut c[81]);
            fix(&mut c[83]);
        }),
        _ => w.chunks_mut(ty.type_size() as usize).for_each(|c| {
            fix(&mut c[1]);
            fix(&mut c[3]);
        }),
    }
    (w, x)
}

/// Checks every format's kernel at `simd` against the reference decode on random blocks:
/// returns, per format, the worst `|got − want| / Σ|w·x|` over a few rows (`want` in f64),
/// infinite where [`rows_dots`] (several tokens) differs in any bit from [`rows_dot`] (one).
/// The unit tests run it natively; the browser tests run it in wasm (`simd128`), through
/// `checkCpuKernels`.
pub fn check_kernels(simd: Simd) -> Vec<(GgmlType, f64)> {
    let mut seed = 7u64;
    let mut worst = Vec::new();
    for ty in GgmlType::ALL.into_iter().filter(|t| supported(*t)) {
        let mut err = if several_tokens_exact(simd, ty) { 0f64 } else { f64::INFINITY };
        // rows of 1 and 41 blocks of 32, of 1, 2 and 3 super-blocks: odd block counts run
        // the kernels' unpaired tails
        for cols in [32usize, 256, 512, 768, 1312] {
            let Some(rb) = ty.bytes_for(cols as u64).map(|b| b as usize) else { continue };
            let (w, x) = random_rows(ty, cols, 3, 1, &mut seed);
            let mut out = [0f32; 3];
            rows_dot(simd, ty, &w, rb, &x, &mut out);
            for (r, &got) in out.iter().enumerate() {
                let wr = crate::quant::dequantize(ty, &w[r * rb..][..rb]).unwrap_or_default();
                let want: f64 = wr.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                let scale: f64 = wr.iter().zip(&x).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
                // a failed decode (empty `wr`) or a NaN result counts as the worst error
                let e = if wr.len() == cols {
                    (got as f64 - want).abs() / scale.max(f64::MIN_POSITIVE)
                } else {
                    f64::INFINITY
                };
                err = err.max(if e.is_nan() { f64::INFINITY } else { e });
            }
        }
        worst.push((ty, err));
    }
    worst
}

/// Whether [`rows_dots`] gives, bit for bit, each token's [`rows_dot`] for `ty` at `simd`, for
/// 1–17 tokens (groups of 4 and their remainders, past [`SMALL_BATCH`]) and rows of odd
/// block counts (greedy speculative decoding's verification must agree with decoding).
fn several_tokens_exact(simd: Simd, ty: GgmlType) -> bool {
    let mut seed = 11u64;
    for cols in [32usize, 40, 96, 256, 768] {
        let Some(rb) = ty.bytes_for(cols as u64).map(|b| b as usize) else { continue };
        let rows = 5;
        for n in 1..=SMALL_BATCH + 1 {
            let (w, x) = random_rows(ty, cols, rows, n, &mut seed);
            let mut got = vec![f32::NAN; rows * n];
            rows_dots(simd, ty, &w, rb, &x, cols, &mut got);
            let mut one = vec![f32::NAN; rows];
            for (t, xt) in x.chunks_exact(cols).enumerate() {
                rows_dot(simd, ty, &w, rb, xt, &mut one);
                if (0..rows).any(|r| got[r * n + t].to_bits() != one[r].to_bits()) {
                    return false;
                }
            }
        }
    }
    true
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

    /// Several tokens at once give, bit for bit, what each token gives alone (greedy
    /// speculative decoding's verification pass must agree with plain decoding's steps;
    /// crate/tests/speculative.rs checks the tokens end to end), at every level and format
    /// (x86's AVX2/AVX-512 natively, NEON under qemu in scripts/test-aarch64.sh, simd128 in
    /// the browser through `check_kernels`), for 1..=17 tokens and rows of odd block counts;
    /// the formats the matmul sends here really are fused at every SIMD level.
    #[test]
    fn several_tokens_at_once_equal_one_token_at_a_time() {
        for simd in Simd::available() {
            for ty in GgmlType::ALL.into_iter().filter(|t| supported(*t)) {
                assert!(
                    several_tokens_exact(simd, ty),
                    "{} {}: rows_dots differs from rows_dot",
                    ty.name(),
                    simd.name()
                );
                if simd != Simd::Scalar && matches!(ty, GgmlType::F16 | GgmlType::Q8_0 | GgmlType::Q4K | GgmlType::Q6K)
                {
                    assert!(fused_small_batch(simd, ty), "{} {}", ty.name(), simd.name());
                }
            }
        }
        // wrong sizes give zeros, not a panic
        let mut out = [5f32; 4];
        rows_dots(Simd::detect(), GgmlType::Q8_0, &[0u8; 34], 34, &[1.0; 64], 32, &mut out);
        assert_eq!(out, [0.0; 4]);
        rows_dots(Simd::detect(), GgmlType::Q8_0, &[0u8; 68], 34, &[1.0; 64], 16, &mut out);
        assert_eq!(out, [0.0; 4]);
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
