//! 8-bit activations and integer dot products, as ggml's CPU backend computes its quantized
//! matmuls: the input vector is quantized once per matmul to 8-bit blocks ([`Q8Act`]), and each
//! weight row is dotted with it in integers, the block scales applied once per block
//! (`vec_dot_*_q8_0`, `vec_dot_*_q8_1`, `vec_dot_*_q8_K`).
//!
//! - The 32-value formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) take Q8_0/Q8_1-style blocks: 32 values
//!   `q = round(x / d)`, `d = max|x| / 127` (an f32 here, where ggml rounds it to f16), and the
//!   block's `Σq` (Q8_1's `s = d·Σq`, for the formats with a min).
//! - The K-quants (Q4_K, Q5_K, Q6_K) take Q8_K blocks: 256 values, `d = −max / 127` (ggml's
//!   `quantize_row_q8_K_ref`, round half to even) and the `Σq` of each 16 (`bsums`, for the mins).
//!
//! Every integer sum is exact, so the kernels ([`scalar`], the reference, as ggml's generic C;
//! [`avx2`]; [`wasm`]; `neon`) differ only in the rounding of the f32 scaling. Against the exact
//! f32 path the difference is the activations' rounding: each value moves by at most `|d|/2`, so
//! a dot product moves by at most `Σ_blocks |d|/2 · Σ|w|` over the block ([`error_bound`]).
//!
//! F32, F16 and BF16 weights have no integer path: they keep the exact f32 dot ([`kind`] is `None`).

use super::dot::Simd;
use crate::gguf::GgmlType;

/// The activation blocks a weight type is dotted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 32 values a block (Q8_0 / Q8_1), `sums` per 32.
    B32,
    /// 256 values a block (Q8_K), `sums` per 16.
    K,
}

impl Kind {
    /// Values per block.
    pub fn block(self) -> usize {
        match self {
            Kind::B32 => 32,
            Kind::K => 256,
        }
    }
    /// Values per entry of `sums`.
    pub fn sum_len(self) -> usize {
        match self {
            Kind::B32 => 32,
            Kind::K => 16,
        }
    }
}

/// The activation blocks `ty` takes, `None` for the float types (exact f32 only).
pub fn kind(ty: GgmlType) -> Option<Kind> {
    use GgmlType::*;
    match ty {
        Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 => Some(Kind::B32),
        Q4K | Q5K | Q6K => Some(Kind::K),
        _ => None,
    }
}

/// `n` tokens of `cols` activations, quantized to 8-bit blocks of one [`Kind`].
#[derive(Debug, Clone)]
pub struct Q8Act {
    pub kind: Kind,
    pub cols: usize,
    pub n: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    sums: Vec<i16>,
    /// The 32-value kinds' `[d, d·Σq]` per block (Q8_1's `d` and `s`), for kernels that scale
    /// two blocks at once; empty for Q8_K.
    dds: Vec<f32>,
    /// Q8_K's `d·Σq` per 32 values (8 per block), for the mins of Q4_K/Q5_K in kernels that
    /// apply them in f32 (one multiply-add per block and token); empty for the 32-value kinds.
    dsums: Vec<f32>,
    /// Q8_K's first whole groups of 16 tokens with the tokens in lanes, for prefill's AVX-512
    /// and AVX2 kernels ([`lanes`]); `None` for fewer tokens or without AVX2.
    #[cfg(target_arch = "x86_64")]
    lanes: Option<lanes::Lanes>,
    /// Q8_K's quants with the middle two 32-value pieces of every 128 swapped, where the
    /// AVX-512 kernels run: a Q4_K byte's low nibbles are values 0..32 and 64..96 of its 128,
    /// the high 32..64 and 96..128, and meet them in this order without a shuffle. Empty
    /// elsewhere.
    qs_k4: Vec<i8>,
}

/// One token of a [`Q8Act`]: `cols` quants, a scale per block and a `Σq` per `sum_len`.
#[derive(Debug, Clone, Copy)]
pub struct Q8Row<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub sums: &'a [i16],
    /// `[d, d·Σq]` per block for the 32-value kinds, empty for Q8_K.
    pub dds: &'a [f32],
    /// Q8_K's `d·Σq` per 32 values, empty for the 32-value kinds.
    pub dsums: &'a [f32],
    /// Q8_K's quants in Q4_K's nibble order (see [`Q8Act`]), where the AVX-512 kernels run.
    pub qs_k4: &'a [i8],
}

impl Q8Act {
    /// Quantizes `x` (`n` tokens of `cols`, row-major); `None` when `cols` is not a whole
    /// number of blocks or `x` is too short.
    pub fn quantize(kind: Kind, x: &[f32], n: usize, cols: usize) -> Option<Q8Act> {
        let (bs, ss) = (kind.block(), kind.sum_len());
        if cols == 0 || !cols.is_multiple_of(bs) || x.len() < n.checked_mul(cols)? {
            return None;
        }
        let dds = if kind == Kind::B32 { 2 * n * cols / bs } else { 0 };
        let mut a = Q8Act {
            kind,
            cols,
            n,
            qs: vec![0; n * cols],
            d: vec![0.0; n * cols / bs],
            sums: vec![0; n * cols / ss],
            dds: vec![0.0; dds],
            dsums: vec![0.0; if kind == Kind::K { n * cols / 32 } else { 0 }],
            #[cfg(target_arch = "x86_64")]
            lanes: None,
            qs_k4: Vec::new(),
        };
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the features are there.
            unsafe { fill_avx2(&mut a, &x[..n * cols]) };
            // past SMALL_BATCH only: speculative verification (at most that many tokens)
            // keeps each token's single-token bits, which the lanes' rounding does not
            if kind == Kind::K && n >= lanes::TOKENS && n > super::dot::SMALL_BATCH {
                a.lanes = Some(lanes::Lanes::new(&a));
            }
            if kind == Kind::K && vnni() {
                a.qs_k4 =
                    a.qs.chunks_exact(128)
                        .flat_map(|c| [&c[..32], &c[64..96], &c[32..64], &c[96..]])
                        .flatten()
                        .copied()
                        .collect();
            }
            return Some(a);
        }
        fill(&mut a, &x[..n * cols]);
        Some(a)
    }

    /// Token `t` (`t < n`).
    pub fn row(&self, t: usize) -> Q8Row<'_> {
        let (bs, ss, c) = (self.kind.block(), self.kind.sum_len(), self.cols);
        Q8Row {
            qs: &self.qs[t * c..(t + 1) * c],
            d: &self.d[t * c / bs..(t + 1) * c / bs],
            sums: &self.sums[t * c / ss..(t + 1) * c / ss],
            dds: if self.dds.is_empty() { &[] } else { &self.dds[2 * t * c / bs..2 * (t + 1) * c / bs] },
            dsums: if self.dsums.is_empty() { &[] } else { &self.dsums[t * c / 32..(t + 1) * c / 32] },
            qs_k4: if self.qs_k4.is_empty() { &[] } else { &self.qs_k4[t * c..(t + 1) * c] },
        }
    }

    /// The values the quants stand for (`q·d`), token-major: what the integer dots multiply.
    pub fn dequantize(&self) -> Vec<f32> {
        let bs = self.kind.block();
        self.qs.chunks_exact(bs).zip(&self.d).flat_map(|(q, &d)| q.iter().map(move |&v| v as f32 * d)).collect()
    }
}

/// Quantizes `x` into `a`'s blocks (written once, compiled twice: plain and with AVX2, where
/// the rounding is one instruction; the results are the same bits).
#[inline(always)]
fn fill(a: &mut Q8Act, x: &[f32]) {
    let (bs, ss) = (a.kind.block(), a.kind.sum_len());
    let blocks = a.qs.chunks_exact_mut(bs).zip(a.d.iter_mut()).zip(a.sums.chunks_exact_mut(bs / ss));
    for (xb, ((q, d), s)) in x.chunks_exact(bs).zip(blocks) {
        *d = match a.kind {
            Kind::B32 => quantize_32(xb, q),
            Kind::K => quantize_k(xb, q),
        };
        for (s, qs) in s.iter_mut().zip(q.chunks_exact(ss)) {
            *s = qs.iter().map(|&v| v as i16).sum();
        }
    }
    // one sum per block for the 32-value kinds (ss = bs)
    for ((dds, d), s) in a.dds.chunks_exact_mut(2).zip(&a.d).zip(&a.sums) {
        dds[0] = *d;
        dds[1] = *d * *s as f32;
    }
    // Q8_K: 8 per block, from its 16 sums per block
    for (i, (ds, s)) in a.dsums.chunks_exact_mut(8).zip(a.sums.chunks_exact(16)).enumerate() {
        for (j, v) in ds.iter_mut().enumerate() {
            *v = a.d[i] * (s[2 * j] as i32 + s[2 * j + 1] as i32) as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn fill_avx2(a: &mut Q8Act, x: &[f32]) {
    fill(a, x)
}

/// ggml's Q8_0 quantization with an f32 scale: `d = max|x| / 127`, `q = nearest(x / d)` (half
/// to even, as its x86 code; the generic C rounds half away from zero).
#[inline(always)]
fn quantize_32(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in q.iter_mut().zip(x) {
        // |v·id| ≤ 127 (+ rounding); NaN becomes 0 (the logits check names it later)
        *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    d
}

/// ggml's `quantize_row_q8_K_ref`: the first value of largest magnitude, `max`, gives
/// `d = −max / 127` (its sign folded into d), `q = min(127, nearest(x / d))` (half to even).
#[inline(always)]
fn quantize_k(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
    if amax == 0.0 || max == 0.0 {
        q.fill(0);
        return 0.0;
    }
    let iscale = -127.0 / max;
    for (q, &v) in q.iter_mut().zip(x) {
        // NaN becomes 0 (the logits check names it later)
        *q = (iscale * v).round_ties_even().clamp(-128.0, 127.0) as i8;
    }
    1.0 / iscale
}

/// Whether `a` fits rows of `ty` of `row_bytes` bytes.
fn fits(ty: GgmlType, row_bytes: usize, a: &Q8Row) -> bool {
    let Some(k) = kind(ty) else { return false };
    let cols = a.qs.len();
    row_bytes > 0
        && ty.bytes_for(cols as u64) == Some(row_bytes as u64)
        && a.d.len() * k.block() == cols
        && a.sums.len() * k.sum_len() == cols
        && (k == Kind::K || a.dds.len() == 2 * a.d.len())
        && (k == Kind::B32 || a.dsums.len() == 8 * a.d.len())
        && (k == Kind::B32 || !avx512_kernels() || a.qs_k4.len() == cols)
}

/// Whether the AVX-512 kernels can run (they read Q8_K's `qs_k4`).
fn avx512_kernels() -> bool {
    #[cfg(target_arch = "x86_64")]
    return vnni();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// How far ahead of the block being dotted the x86 kernels prefetch the weights. Decode streams
/// every matrix from memory once, and one core's hardware prefetchers alone leave the kernels
/// waiting on each block's first load (`perf annotate`): 1B shapes from memory, one thread,
/// Q4_K 1.9 → 3.4 GB/s, Q6_K 2.8 → 3.4 GB/s (q8_bench, under load).
#[cfg(target_arch = "x86_64")]
const PREFETCH: usize = 2048;

/// Prefetches the cache lines of `len` bytes [`PREFETCH`] bytes past `p` (a prefetch never
/// faults: past the end of the weights it is dropped).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch(p: *const u8, len: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let mut o = 0;
    while o < len {
        // SAFETY: SSE is baseline on x86_64; the address is only a hint.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH + o) as *const i8) };
        o += 64;
    }
}

/// Whether the `Avx512` level's integer kernels ([`avx512`]) run: they need VNNI and BW on
/// top of AVX-512F (else that level runs the AVX2 ones).
#[cfg(target_arch = "x86_64")]
fn vnni() -> bool {
    is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512bw")
}

/// `out[r] = row_r · a` for consecutive rows of `w` (`row_bytes` each) of type `ty`, in
/// integers. Rows or activations of the wrong size (or a type without an integer dot) give 0
/// rather than reading out of bounds.
pub fn rows_dot(simd: Simd, ty: GgmlType, w: &[u8], row_bytes: usize, a: Q8Row, out: &mut [f32]) {
    if !fits(ty, row_bytes, &a) || w.len() < out.len() * row_bytes {
        out.fill(0.0);
        return;
    }
    match simd {
        // SAFETY: detect() saw AVX-512F (and AVX2+FMA+F16C), vnni() the rest; sizes checked above.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 if vnni() => unsafe { avx512::rows(ty, w, row_bytes, a, out) },
        // SAFETY: detect() saw AVX2+FMA+F16C; sizes checked above.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 | Simd::Avx512 => unsafe { avx2::rows(ty, w, row_bytes, a, out) },
        #[cfg(target_arch = "wasm32")]
        Simd::Simd128 => unsafe { wasm::rows(ty, w, row_bytes, a, out) },
        // SAFETY: NEON is baseline on aarch64 (`sdot` is checked inside); sizes checked above.
        #[cfg(target_arch = "aarch64")]
        Simd::Neon => unsafe { neon::rows(true, ty, w, row_bytes, a, out) },
        _ => scalar::rows(ty, w, row_bytes, a, out),
    }
}

/// `out[r · n + t] = row_r · token_t` for the consecutive rows of `w` and the `n` tokens of `a`
/// (prefill, speculative verification): tiles of up to 4 or 8 tokens where a kernel takes several
/// (it unpacks the weights once for them; each token's result is the same bits as alone). The
/// rows go in groups that stay in L1 with a tile's activations, each tile dotted with every
/// row of the group: the activations of many tokens exceed L1 (64 tokens of 2048: 128 KiB),
/// and re-read from L2 for every row they bounded prefill.
///
/// Past [`SMALL_BATCH`](super::dot::SMALL_BATCH) tokens at the `Avx2` and `Avx512` levels, the
/// K-quants take their whole groups of 16 tokens in [`lanes`]' kernels (AVX-512 VNNI or AVX2;
/// their results then differ from a token's alone in the f32 rounding).
pub fn rows_dots(simd: Simd, ty: GgmlType, w: &[u8], row_bytes: usize, a: &Q8Act, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(l) = a.lanes.as_ref() {
        let x86 = matches!(simd, Simd::Avx2 | Simd::Avx512);
        if x86 && lanes::takes(ty) && fits(ty, row_bytes, &a.row(0)) && l.blocks() * 256 == a.cols {
            let n = a.n;
            let rows = (out.len() / n).min(w.len() / row_bytes);
            let (wl, wr) = w.split_at(rows * row_bytes);
            let (ol, or) = out.split_at_mut(rows * n);
            // SAFETY: the Avx2 and Avx512 levels have AVX2, FMA and F16C, vnni() the rest of
            // the AVX-512 kernel's; `wl` holds `rows` rows of whole blocks covering `a`
            // (`fits`), `ol` their outputs.
            unsafe {
                if simd == Simd::Avx512 && vnni() {
                    lanes::rows(ty, wl, row_bytes, rows, l, n, ol)
                } else {
                    lanes::avx2::rows(ty, wl, row_bytes, rows, l, n, ol)
                }
            };
            rows_dots_from(simd, ty, wl, row_bytes, a, ol, l.groups * lanes::TOKENS);
            rows_dots_from(simd, ty, wr, row_bytes, a, or, 0);
            return;
        }
    }
    rows_dots_from(simd, ty, w, row_bytes, a, out, 0)
}

/// [`rows_dots`]' tiles and single-token kernels, for the tokens from `t0`.
fn rows_dots_from(simd: Simd, ty: GgmlType, w: &[u8], row_bytes: usize, a: &Q8Act, out: &mut [f32], t0: usize) {
    let n = a.n.max(1);
    let tokens: Vec<Q8Row> = (0..a.n).map(|t| a.row(t)).collect();
    #[cfg(target_arch = "x86_64")]
    let tiles = matches!(simd, Simd::Avx2 | Simd::Avx512) && a.n > 0 && fits(ty, row_bytes, &a.row(0));
    #[cfg(not(target_arch = "x86_64"))]
    let tiles = false;
    let (len, rows) = (out.len(), out.len().div_ceil(n));
    // rows whose bytes leave half of a 48 KiB L1 to a tile's activations
    let group = if tiles { (16 * 1024 / row_bytes.max(1)).clamp(1, 16) } else { 1 };
    let mut r0 = 0;
    while r0 < rows {
        let g = group.min(rows - r0);
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut t = t0;
        #[cfg(target_arch = "x86_64")]
        if tiles {
            // the last row's outputs may be fewer than n
            let m = n.min(tokens.len()).min(len - (r0 + g - 1) * n);
            let avx512 = simd == Simd::Avx512 && vnni();
            // AVX-512's 32 registers hold 8 tokens' K-quant accumulators (the unpacking shared
            // by twice the tokens: Q5_K ~10% faster at 64 tokens, Q4_K/Q6_K even; the 32-value
            // kernels spill at 8 and lose ~20%)
            let wide = if avx512 && kind(ty) == Some(Kind::K) { 8 } else { 4 };
            while t < m {
                let k = if m - t >= wide { wide } else { (m - t).min(4) };
                for r in r0..r0 + g {
                    let Some(row) = w.get(r * row_bytes..(r + 1) * row_bytes) else { continue };
                    let (a, o) = (&tokens[t..t + k], &mut out[r * n + t..][..k]);
                    // SAFETY: the Simd level's features (and vnni()); the row holds whole blocks
                    // covering each token (`fits`, and every token of `a` is as wide as token 0).
                    unsafe {
                        if avx512 {
                            avx512::tile(ty, row.as_ptr(), a, o)
                        } else {
                            avx2::tile(ty, row.as_ptr(), a, o)
                        }
                    }
                }
                t += k;
            }
        }
        for r in r0..r0 + g {
            let row = w.get(r * row_bytes..(r + 1) * row_bytes).unwrap_or(&[]);
            // tokens the tiles did not take (all of them without tiles, or for a short row)
            let done = if tiles && row.len() == row_bytes { t } else { t0 };
            for (t, v) in out[r * n..len.min((r + 1) * n)].iter_mut().enumerate().skip(done) {
                match tokens.get(t) {
                    Some(a) => rows_dot(simd, ty, row, row_bytes, *a, std::slice::from_mut(v)),
                    None => *v = 0.0,
                }
            }
        }
        r0 += g;
    }
}

/// The most `row · a` can differ from the same row's f32 decode dotted with the unquantized
/// activations `x`, apart from f32 rounding: `Σ_blocks |d|/2 · Σ_block |w|` (Q8_K's clamp at
/// 127 can move a value by `|d|`, so its blocks count `|d|`).
pub fn error_bound(ty: GgmlType, row: &[u8], a: Q8Row) -> f64 {
    let Some(k) = kind(ty) else { return 0.0 };
    let w = crate::quant::dequantize(ty, row).unwrap_or_default();
    let f = if k == Kind::K { 1.0 } else { 0.5 };
    w.chunks(k.block())
        .zip(a.d)
        .map(|(wb, d)| f * (*d as f64).abs() * wb.iter().map(|v| (*v as f64).abs()).sum::<f64>())
        .sum()
}

pub mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(target_arch = "x86_64")]
mod lanes;

#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
pub use wasm::{i32_dot, set_i32_dot};

#[cfg(target_arch = "aarch64")]
mod neon;

/// `bytes` of random blocks of `ty` (whole rows, `next` drawn once per byte): random bytes are
/// valid blocks except scales that decode to inf/NaN, so the f16 scale exponents are kept small.
/// For the kernel checks and benchmarks.
pub fn random_blocks(ty: GgmlType, bytes: usize, next: &mut impl FnMut() -> u32) -> Vec<u8> {
    let mut w: Vec<u8> = (0..bytes).map(|_| next() as u8).collect();
    let fix = |b: &mut u8| *b &= 0x3B;
    match ty {
        GgmlType::Q6K => w.chunks_mut(210).for_each(|c| fix(&mut c[209])),
        _ => w.chunks_mut(ty.type_size() as usize).for_each(|c| {
            fix(&mut c[1]);
            fix(&mut c[3]);
        }),
    }
    w
}

/// Checks the integer kernels at `simd` against the scalar ones and against the formats'
/// reference decode, on random blocks of every format with an integer dot. Returns per format
/// `(vs scalar, vs decode)`: the worst `|got − scalar| / Σ|ŵ·x̂|` and the worst
/// `|got − decode·x| / (bound + 1e-6·Σ|w·x|)` ([`error_bound`]; ≤ 1 is within it).
/// The unit tests run it natively; the browser tests in wasm.
pub fn check_kernels(simd: Simd) -> Vec<(GgmlType, f64, f64)> {
    use super::dot::lcg;
    let mut seed = 11u64;
    let rows = 5;
    let mut worst = Vec::new();
    for ty in GgmlType::ALL.into_iter().filter(|t| kind(*t).is_some()) {
        let Some(k) = kind(ty) else { continue };
        // an odd number of 32-value blocks: the kernels that take two at once end on one
        let cols = if k == Kind::B32 { 544 } else { 512 };
        let Some(rb) = ty.bytes_for(cols as u64).map(|b| b as usize) else { continue };
        let w = random_blocks(ty, rb * rows, &mut || lcg(&mut seed));
        let (mut e_scalar, mut e_decode) = (0f64, 0f64);
        // activations of several magnitudes, with outliers, zeros and a block of zeros
        for trial in 0..3 {
            let x: Vec<f32> = (0..cols)
                .map(|i| {
                    let u = lcg(&mut seed) as f32 / u32::MAX as f32 * 2.0 - 1.0;
                    match (trial, i) {
                        (1, i) if i % 97 == 0 => u * 40.0,
                        (2, i) if i < 256 => 0.0,
                        _ => u * [1.0, 0.3, 3.0][trial],
                    }
                })
                .collect();
            let Some(a) = Q8Act::quantize(k, &x, 1, cols) else { continue };
            let xq = a.dequantize();
            let mut got = [0f32; 5];
            let mut want = [0f32; 5];
            rows_dot(simd, ty, &w, rb, a.row(0), &mut got);
            scalar::rows(ty, &w, rb, a.row(0), &mut want);
            for r in 0..rows {
                let row = &w[r * rb..][..rb];
                let wr = crate::quant::dequantize(ty, row).unwrap_or_default();
                if wr.len() != cols {
                    e_scalar = f64::INFINITY;
                    continue;
                }
                let mag: f64 = wr.iter().zip(&xq).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
                let es = (got[r] as f64 - want[r] as f64).abs() / mag.max(f64::MIN_POSITIVE);
                let exact: f64 = wr.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                let mag_x: f64 = wr.iter().zip(&x).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
                let bound = error_bound(ty, row, a.row(0)) + 1e-6 * mag_x;
                let ed = (got[r] as f64 - exact).abs() / bound.max(f64::MIN_POSITIVE);
                e_scalar = e_scalar.max(if es.is_nan() { f64::INFINITY } else { es });
                e_decode = e_decode.max(if ed.is_nan() { f64::INFINITY } else { ed });
            }
        }
        worst.push((ty, e_scalar, e_decode));
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_integer_kernel_matches_scalar_and_stays_within_the_bound() {
        for simd in Simd::available() {
            let worst = check_kernels(simd);
            assert_eq!(worst.len(), 8, "Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K");
            for (ty, es, ed) in worst {
                eprintln!("{} {}: vs scalar {es:.1e}, vs decode {ed:.2} of the bound", ty.name(), simd.name());
                // integer sums are exact: only the f32 scaling's rounding differs
                assert!(es <= 1e-6, "{} {}: {es:e} of Σ|w x| from the scalar kernel", ty.name(), simd.name());
                assert!(ed <= 1.0, "{} {}: {ed} × the activation-rounding bound", ty.name(), simd.name());
            }
        }
    }

    /// The scalar kernel is exactly the dot of the decoded row with the dequantized
    /// activations, up to f32 rounding (here checked in f64, to 1e-6 of Σ|w·x̂|).
    #[test]
    fn scalar_kernel_is_the_decode_times_the_dequantized_activations() {
        let mut seed = 3u64;
        let mut next = || crate::cpu::dot::lcg(&mut seed);
        for ty in GgmlType::ALL.into_iter().filter(|t| kind(*t).is_some()) {
            let k = kind(ty).unwrap();
            let cols = 768;
            let rb = ty.bytes_for(cols as u64).unwrap() as usize;
            let w = random_blocks(ty, rb, &mut next);
            let x: Vec<f32> = (0..cols).map(|_| next() as f32 / u32::MAX as f32 - 0.5).collect();
            let a = Q8Act::quantize(k, &x, 1, cols).unwrap();
            let xq = a.dequantize();
            let wr = crate::quant::dequantize(ty, &w).unwrap();
            let want: f64 = wr.iter().zip(&xq).map(|(a, b)| *a as f64 * *b as f64).sum();
            let mag: f64 = wr.iter().zip(&xq).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
            let mut got = [0f32];
            scalar::rows(ty, &w, rb, a.row(0), &mut got);
            assert!((got[0] as f64 - want).abs() <= 1e-6 * mag, "{}: {} vs {want}", ty.name(), got[0]);
        }
    }

    /// Prefill's several-token kernels (tiles of 8, 4, 3, 2 and 1 tokens, 13 = 8 + 4 + 1 and
    /// 4 + 4 + 4 + 1; up to SMALL_BATCH = 16, the most a speculative round verifies, below
    /// [`lanes`]' threshold) give every token the bits it gets alone, and so does decoding
    /// several rows at once (the AVX-512 K-quant kernels take two).
    #[test]
    fn several_tokens_at_once_give_each_token_its_own_bits() {
        let mut seed = 5u64;
        let mut next = || crate::cpu::dot::lcg(&mut seed);
        let rows = 5;
        for (ty, n) in GgmlType::ALL
            .into_iter()
            .filter(|t| kind(*t).is_some())
            .flat_map(|t| [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 15, 16].map(|n| (t, n)))
        {
            // 17 blocks of 32: the two-block kernels end on one
            let cols = if kind(ty) == Some(Kind::B32) { 544 } else { 512 };
            let rb = ty.bytes_for(cols as u64).unwrap() as usize;
            let w = random_blocks(ty, rb * rows, &mut next);
            let x: Vec<f32> = (0..n * cols).map(|_| next() as f32 / u32::MAX as f32 - 0.5).collect();
            let a = Q8Act::quantize(kind(ty).unwrap(), &x, n, cols).unwrap();
            for simd in Simd::available() {
                let mut all = vec![f32::NAN; rows * n];
                rows_dots(simd, ty, &w, rb, &a, &mut all);
                for r in 0..rows {
                    for t in 0..n {
                        let mut one = [0f32];
                        rows_dot(simd, ty, &w[r * rb..][..rb], rb, a.row(t), &mut one);
                        let mut whole = vec![f32::NAN; rows];
                        rows_dot(simd, ty, &w, rb, a.row(t), &mut whole);
                        assert_eq!(
                            whole[r].to_bits(),
                            one[0].to_bits(),
                            "{} {}: row {r} of {rows}",
                            ty.name(),
                            simd.name()
                        );
                        assert_eq!(
                            all[r * n + t].to_bits(),
                            one[0].to_bits(),
                            "{} {}: row {r} token {t}",
                            ty.name(),
                            simd.name()
                        );
                    }
                }
            }
        }
    }

    /// Prefill of more than SMALL_BATCH tokens: the K-quants' tokens-in-lanes kernels (AVX-512 VNNI, AVX2)
    /// gives every (row, token) the scalar kernel's integer sums, so the scalar result up to
    /// f32 rounding (1e-6 of Σ|ŵ·x̂|), for ragged row counts (not a multiple of its 4 rows) and
    /// tokens past the last whole group of 16 (the tiles, bit for bit a token alone).
    #[test]
    fn tokens_in_lanes_match_the_scalar_kernel() {
        let mut seed = 9u64;
        let mut next = || crate::cpu::dot::lcg(&mut seed);
        let cols = 768;
        for ty in [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
            let rb = ty.bytes_for(cols as u64).unwrap() as usize;
            for (rows, n) in [(1, 16), (3, 17), (5, 16), (7, 33), (9, 31), (13, 48)] {
                let w = random_blocks(ty, rb * rows, &mut next);
                // outliers, and a block of zeros for token 3
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| {
                        let u = next() as f32 / u32::MAX as f32 - 0.5;
                        match (i / cols, i % cols) {
                            (3, c) if c < 256 => 0.0,
                            (_, c) if c % 89 == 0 => 30.0 * u,
                            _ => u,
                        }
                    })
                    .collect();
                let a = Q8Act::quantize(Kind::K, &x, n, cols).unwrap();
                #[cfg(target_arch = "x86_64")]
                let lanes_on = is_x86_feature_detected!("avx2") && n > crate::cpu::dot::SMALL_BATCH;
                #[cfg(target_arch = "x86_64")]
                assert_eq!(
                    a.lanes.is_some(),
                    lanes_on,
                    "more than SMALL_BATCH tokens take the lanes wherever the kernel runs"
                );
                for simd in Simd::available() {
                    // the lanes kernels (AVX-512 VNNI, AVX2) give whole groups of 16 tokens other bits
                    #[cfg(target_arch = "x86_64")]
                    let in_lanes = matches!(simd, Simd::Avx2 | Simd::Avx512) && lanes_on;
                    #[cfg(not(target_arch = "x86_64"))]
                    let in_lanes = false;
                    let mut all = vec![f32::NAN; rows * n];
                    rows_dots(simd, ty, &w, rb, &a, &mut all);
                    for r in 0..rows {
                        let row = &w[r * rb..][..rb];
                        let wr = crate::quant::dequantize(ty, row).unwrap();
                        for t in 0..n {
                            let (mut want, mut one) = ([0f32], [0f32]);
                            scalar::rows(ty, row, rb, a.row(t), &mut want);
                            rows_dot(simd, ty, row, rb, a.row(t), &mut one);
                            let got = all[r * n + t];
                            let xq = &a.dequantize()[t * cols..][..cols];
                            let mag: f64 = wr.iter().zip(xq).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
                            let e = (got as f64 - want[0] as f64).abs();
                            let what =
                                format!("{} {} {rows} rows {n} tokens: row {r} token {t}", ty.name(), simd.name());
                            assert!(e <= 1e-6 * mag, "{what}: {got} vs scalar {}", want[0]);
                            if !in_lanes || t >= n / 16 * 16 {
                                assert_eq!(got.to_bits(), one[0].to_bits(), "{what}: the single-token bits");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn quantization_follows_ggml() {
        // Q8_0: d = max|x| / 127, round half to even
        let x: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) * 0.25).collect();
        let a = Q8Act::quantize(Kind::B32, &x, 1, 32).unwrap();
        let r = a.row(0);
        assert_eq!(r.d[0], 3.875 / 127.0);
        assert_eq!(r.qs[0], -127);
        assert_eq!(r.qs[31], 127);
        assert_eq!(r.sums[0], r.qs.iter().map(|&q| q as i16).sum::<i16>());
        // Q8_K: the largest magnitude is negative here, so d > 0 and it maps to −127
        let mut x = vec![0.5f32; 256];
        x[7] = -2.0;
        let a = Q8Act::quantize(Kind::K, &x, 1, 256).unwrap();
        let r = a.row(0);
        assert_eq!(r.qs[7], -127);
        assert!((r.d[0] - 2.0 / 127.0).abs() < 1e-9);
        // 0.5 · 63.5 = 31.75 → 32
        assert_eq!(r.qs[0], 32);
        assert_eq!(r.sums.len(), 16);
        assert_eq!(r.sums[0], 32 * 15 - 127);
        // zeros quantize to zeros with d = 0; wrong widths are refused
        let a = Q8Act::quantize(Kind::K, &[0.0; 512], 2, 256).unwrap();
        assert!(a.row(1).qs.iter().all(|&q| q == 0) && a.row(1).d == [0.0]);
        assert!(Q8Act::quantize(Kind::K, &[0.0; 300], 1, 300).is_none());
        assert!(Q8Act::quantize(Kind::B32, &[0.0; 32], 2, 32).is_none());
    }

    #[test]
    fn wrong_sizes_and_float_types_give_zeros() {
        let a = Q8Act::quantize(Kind::B32, &[1.0; 64], 1, 64).unwrap();
        let mut out = [5f32; 2];
        rows_dot(Simd::detect(), GgmlType::Q8_0, &[0u8; 68], 68, a.row(0), &mut out);
        assert_eq!(out[0], 0.0);
        let mut out = [5f32; 2];
        rows_dot(Simd::detect(), GgmlType::Q8_0, &[0u8; 68], 34, a.row(0), &mut out);
        assert_eq!(out, [0.0, 0.0], "rows of one block for two blocks of activations");
        let mut out = [5f32; 1];
        rows_dot(Simd::detect(), GgmlType::F32, &[0u8; 256], 256, a.row(0), &mut out);
        assert_eq!(out, [0.0]);
        let k = Q8Act::quantize(Kind::K, &[1.0; 256], 1, 256).unwrap();
        let mut out = [5f32; 1];
        rows_dot(Simd::detect(), GgmlType::Q4_0, &[0u8; 144], 144, k.row(0), &mut out);
        assert_eq!(out, [0.0], "Q8_K blocks for a 32-value format");
    }
}
