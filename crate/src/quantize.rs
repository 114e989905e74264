//! GGUF quantizer: K-quant encoders (Q4_K, Q5_K, Q6_K) and llama.cpp-style file types
//! (`q4_k_m`, `q5_k_m`, `q6_k`, `q8_0`, `q4_0`).
//!
//! The K-quant encoders follow ggml's reference quantizers (`quantize_row_q{4,5,6}_K_ref`
//! without an importance matrix, which is what `llama-quantize` runs without `--imatrix`):
//! per 32-value sub-block a weighted least-squares scale/min search (`make_qkx2_quants`, for
//! Q4_K/Q5_K) or a signed scale search (`make_qx_quants`, per 16 values for Q6_K); the
//! sub-block scales (and mins) are then quantized to 6 (Q6_K: 8) bits relative to the
//! super-block's f16 `d`/`dmin`, and the values are requantized with those *quantized* scales.
//! The float operations are done in ggml's order, so for ordinary inputs the bytes are those
//! of ggml's reference quantizer: tests/make_fixtures.py found the K-quant fixtures (files
//! quantized by this module) identical, block for block and in every tensor type, to what
//! llama.cpp's own `llama_model_quantize` (llama-cpp-python 0.3.36) writes for the same input.
//!
//! Unlike ggml, every input is accepted: NaN is encoded as 0 and magnitudes are clamped to
//! ±[`CLAMP`] before encoding; scales that would overflow f16 saturate at f16::MAX (so
//! huge values saturate). Output is always finite. All-zero blocks encode as all-zero bytes.
//!
//! [`quantize_file`] streams a GGUF file tensor by tensor (memory: one tensor's output plus
//! a bounded input chunk), choosing each tensor's type like llama.cpp's
//! `llama_tensor_get_type` (see [`tensor_types`]).

use std::fmt;
use std::str::FromStr;

use half::f16;

use crate::error::{Error, Result};
use crate::gguf::{ByteSource, GgmlType, GgufFile, GgufWriter, TensorInfo, Value};
use crate::kernels::reference;

const QK_K: usize = 256;

/// Inputs are clamped to ±CLAMP (NaN → 0) before K-quant encoding. Far beyond what the
/// formats can represent (Q4_K: d·63·15 ≤ 65504·945 ≈ 6.2e7), small enough that no
/// intermediate sum of squares overflows f32.
pub const CLAMP: f32 = 1e9;

/// ggml's `GROUP_MAX_EPS`.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int` (round half to even, by its float trick: branch-free, no libm call
/// on baseline x86-64 where `round_ties_even` is one); saturates at ±4194303 (every caller
/// clamps to a far smaller level range), NaN → 0.
#[inline]
fn nearest_int(x: f32) -> i32 {
    let x = x.clamp(-4194303.0, 4194303.0);
    ((x + 12582912.0).to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

#[inline]
fn sanitize(x: f32) -> f32 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-CLAMP, CLAMP)
    }
}

/// f32 → f16 bytes, saturating at ±f16::MAX instead of overflowing to infinity.
#[inline]
fn f16_sat(x: f32) -> f16 {
    let m = f16::MAX.to_f32();
    f16::from_f32(if x.is_nan() { 0.0 } else { x.clamp(-m, m) })
}

/// Quantizes `x` (a whole number of blocks of `ty`: one or more rows) to `ty`'s block bytes.
/// Q4_K/Q5_K/Q6_K are encoded here; other types go to [`reference::quantize`]
/// (F32, F16, BF16, Q8_0, Q4_0, Q4_1).
pub fn quantize_row(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>> {
    let enc: fn(&[f32; QK_K], &mut Vec<u8>) = match ty {
        GgmlType::Q4K => |b, o| quantize_block_q45k(b, 15, o),
        GgmlType::Q5K => |b, o| quantize_block_q45k(b, 31, o),
        GgmlType::Q6K => quantize_block_q6k,
        _ => return reference::quantize(ty, x),
    };
    if !x.len().is_multiple_of(QK_K) {
        return Err(Error::InvalidArgument(format!("{} values are not whole {} blocks of {QK_K}", x.len(), ty.name())));
    }
    let mut out = Vec::with_capacity(x.len() / QK_K * ty.type_size() as usize);
    let mut blk = [0f32; QK_K];
    for chunk in x.chunks_exact(QK_K) {
        for (d, s) in blk.iter_mut().zip(chunk) {
            *d = sanitize(*s);
        }
        enc(&blk, &mut out);
    }
    Ok(out)
}

/// ggml's `make_qkx2_quants` (use_mad = false): levels `l[i]` in 0..=nmax and
/// `(scale, -min)` minimizing Σ w (scale·l + min − x)², min ≤ 0.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32; 32],
    weights: &[f32; 32],
    l: &mut [u8; 32],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = 32;
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = min.min(x[i]);
        max = max.max(x[i]);
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.iter_mut().for_each(|v| *v = 0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_mad = 0f32;
    for i in 0..n {
        let li = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = li as u8;
        let diff = scale * li as f32 + min - x[i];
        best_mad += weights[i] * (diff * diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; 32];
    // x − min; ggml's search continues from an improved (lower) min, so this is refreshed
    let mut xm: [f32; 32] = std::array::from_fn(|i| x[i] - min);
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let li = nearest_int(iscale * xm[i]).clamp(0, nmax);
            laux[i] = li as u8;
            let w = weights[i];
            let lf = li as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut mad = 0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                mad += weights[i] * (diff * diff);
            }
            if mad < best_mad {
                *l = laux;
                best_mad = mad;
                scale = this_scale;
                min = this_min;
                xm = std::array::from_fn(|i| x[i] - min);
            }
        }
    }
    (scale, -min)
}

/// Q4_K (nmax 15) or Q5_K (nmax 31) super-block, appended to `out`.
fn quantize_block_q45k(x: &[f32; QK_K], nmax: i32, out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    let (rmin, nstep) = if nmax == 15 { (-1.0, 20) } else { (-0.5, 15) };
    for j in 0..8 {
        let xs: &[f32; 32] = x[32 * j..32 * j + 32].try_into().unwrap_or(&[0.0; 32]);
        let sum_x2 = xs.iter().fold(0f32, |a, v| a + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let lj: &mut [u8; 32] = (&mut l[32 * j..32 * j + 32]).try_into().unwrap_or_else(|_| unreachable!());
        let (s, m) = make_qkx2_quants(nmax, xs, &weights, lj, rmin, 0.1, nstep);
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    // ggml: inv = 63 / max; d = max / 63. If d overflows f16, it saturates and the 6-bit
    // scales are taken relative to the saturated d instead.
    let scale_code = |max: f32| -> (f16, f32) {
        let d = max / 63.0;
        if d > f16::MAX.to_f32() {
            (f16::MAX, 1.0 / f16::MAX.to_f32())
        } else {
            (f16::from_f32(d), if max > 0.0 { 63.0 / max } else { 0.0 })
        }
    };
    let (d16, inv_scale) = scale_code(max_scale);
    let (dmin16, inv_min) = scale_code(max_min);
    let mut sc = [0u8; 12];
    for j in 0..8 {
        let ls = nearest_int(inv_scale * scales[j]).clamp(0, 63) as u8;
        let lm = nearest_int(inv_min * mins[j]).clamp(0, 63) as u8;
        if j < 4 {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    let (d, dmin) = (d16.to_f32(), dmin16.to_f32());
    for j in 0..8 {
        let (s, m) = scale_min_k4(j, &sc);
        let dj = d * s as f32;
        if dj == 0.0 {
            continue; // ggml keeps the levels from the search; they dequantize to −dmin·m
        }
        let dm = dmin * m as f32;
        for i in 0..32 {
            l[32 * j + i] = nearest_int((x[32 * j + i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    out.extend_from_slice(&d16.to_le_bytes());
    out.extend_from_slice(&dmin16.to_le_bytes());
    out.extend_from_slice(&sc);
    if nmax == 31 {
        // qh[i]: bit 2k / 2k+1 = fifth bit of value i of sub-block 2k / 2k+1
        let mut qh = [0u8; 32];
        let mut qs = [0u8; 128];
        for (k, n) in (0..QK_K).step_by(64).enumerate() {
            for i in 0..32 {
                let (mut l1, mut l2) = (l[n + i], l[n + i + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    qh[i] |= 1 << (2 * k);
                }
                if l2 > 15 {
                    l2 -= 16;
                    qh[i] |= 2 << (2 * k);
                }
                qs[32 * k + i] = l1 | (l2 << 4);
            }
        }
        out.extend_from_slice(&qh);
        out.extend_from_slice(&qs);
    } else {
        for n in (0..QK_K).step_by(64) {
            out.extend((0..32).map(|i| l[n + i] | (l[n + i + 32] << 4)));
        }
    }
}

/// ggml's `get_scale_min_k4`.
fn scale_min_k4(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// ggml's `make_qx_quants` with rmse_type 1 (weights x²): signed levels `l[i] + nmax`
/// in 0..2·nmax, returns the scale (negative when the largest |x| is positive).
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [u8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.iter_mut().for_each(|v| *v = 0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let li = level(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * li;
            suml2 += w * li * li;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (d, &v) in l.iter_mut().zip(x) {
        *d = (level(iscale, v) + nmax) as u8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (d, &v) in l.iter_mut().zip(x) {
                *d = (level(iscale, v) + nmax) as u8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q6_K super-block (ql[128], qh[64], scales[16] i8, d f16), appended to `out`.
fn quantize_block_q6k(x: &[f32; QK_K], out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for ib in 0..16 {
        let s = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
        scales[ib] = s;
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = s;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        out.extend_from_slice(&[0u8; 210]);
        return;
    }
    let mut iscale = -128.0 / max_scale;
    let mut d16 = f16::from_f32(1.0 / iscale);
    if !d16.is_finite() {
        // |d| beyond f16: saturate d and take the int8 scales relative to it
        d16 = f16_sat(1.0 / iscale);
        iscale = 1.0 / d16.to_f32();
    }
    let sc: [i8; 16] = std::array::from_fn(|ib| nearest_int(iscale * scales[ib]).clamp(-128, 127) as i8);
    let d = d16.to_f32();
    for j in 0..16 {
        let dj = d * sc[j] as f32;
        if dj == 0.0 {
            continue;
        }
        for i in 0..16 {
            l[16 * j + i] = (nearest_int(x[16 * j + i] / dj).clamp(-32, 31) + 32) as u8;
        }
    }
    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    for h in 0..2 {
        let (j, ql, qh) = (128 * h, &mut ql[64 * h..64 * h + 64], &mut qh[32 * h..32 * h + 32]);
        for i in 0..32 {
            let (q1, q2, q3, q4) = (l[j + i], l[j + i + 32], l[j + i + 64], l[j + i + 96]);
            ql[i] = (q1 & 0xF) | ((q3 & 0xF) << 4);
            ql[i + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4);
            qh[i] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
        }
    }
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
    out.extend(sc.iter().map(|&s| s as u8));
    out.extend_from_slice(&d16.to_le_bytes());
}

// ------------------------------------------------------------------------------------------
// File types and per-tensor type choice
// ------------------------------------------------------------------------------------------

/// Target file type (llama.cpp's `LLAMA_FTYPE_MOSTLY_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    Q4KM,
    Q5KM,
    Q6K,
    Q8_0,
    Q4_0,
}

impl FileType {
    pub const ALL: [FileType; 5] = [Self::Q4KM, Self::Q5KM, Self::Q6K, Self::Q8_0, Self::Q4_0];

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn id(self) -> u32 {
        match self {
            Self::Q4_0 => 2,
            Self::Q8_0 => 7,
            Self::Q4KM => 15,
            Self::Q5KM => 17,
            Self::Q6K => 18,
        }
    }

    /// Lower-case name as accepted by `from_str` ("q4_k_m", …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Q4KM => "q4_k_m",
            Self::Q5KM => "q5_k_m",
            Self::Q6K => "q6_k",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
        }
    }

    /// The type of ordinary 2-D weights.
    pub fn base_type(self) -> GgmlType {
        match self {
            Self::Q4KM => GgmlType::Q4K,
            Self::Q5KM => GgmlType::Q5K,
            Self::Q6K => GgmlType::Q6K,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q4_0 => GgmlType::Q4_0,
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FileType {
    type Err = Error;
    /// Names (case-insensitive: "q4_k_m", "Q4_K_M", "q4_k_m") or the `general.file_type`
    /// number ("15").
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|f| f.name() == t || t.parse::<u32>().ok() == Some(f.id())).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unknown quantization type '{s}' (expected q4_k_m, q5_k_m, q6_k, q8_0, q4_0 \
                     or the general.file_type numbers 15, 17, 18, 7, 2)"
            ))
        })
    }
}

/// ggml's number of dimensions (trailing 1s do not count).
fn n_dims(dims: &[u64]) -> usize {
    dims.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1)
}

/// Whether llama.cpp would quantize this tensor: a `*weight` of ≥ 2 dimensions that is not a
/// norm (nor a few small special tensors).
pub fn is_quantizable(t: &TensorInfo) -> bool {
    t.name.ends_with("weight")
        && n_dims(&t.dims) >= 2
        && !t.name.contains("_norm.weight")
        && !["ffn_gate_inp.weight", "pos_embd", "token_types"].iter().any(|s| t.name.contains(s))
}

/// llama.cpp's `use_more_bits`.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64).rem_euclid(3) == 2
}

/// A type whose block fits rows of `cols` values: `ty` itself, else (like llama.cpp's
/// "fallback quantization") K-quants → Q8_0 when cols % 32 == 0 (llama.cpp uses Q5_0 / Q5_1 /
/// Q8_0 for Q4_K / Q5_K / Q6_K; this engine has no Q5_0/Q5_1 kernels, so Q8_0 for all three),
/// otherwise F16 (llama.cpp: F16, or an error for Q4_0/Q8_0).
fn fit(ty: GgmlType, cols: u64) -> GgmlType {
    if cols.is_multiple_of(ty.block_size()) {
        ty
    } else if cols.is_multiple_of(32) && matches!(ty, GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K) {
        GgmlType::Q8_0
    } else {
        GgmlType::F16
    }
}

/// Target type of every tensor of `file` (in file order), following llama.cpp's
/// `llama_tensor_get_type` for these file types:
/// * tensors that are not quantizable (1-D: norms, `rope_freqs`) keep their type and bytes;
/// * the output layer (`output.weight`, or `token_embd.weight` when there is no
///   `output.weight`, i.e. tied embeddings) → Q6_K, except Q8_0 for `q8_0` and when its rows
///   are not a multiple of the base type's block (llama.cpp's rule; F16 if not of 32 either);
/// * `q4_k_m` / `q5_k_m`: the i-th of n `attn_v` and of n `ffn_down` tensors (file order) →
///   Q6_K when `use_more_bits(i, n)`; fused `attn_qkv` → Q5_K / Q6_K; else Q4_K / Q5_K;
/// * everything else (incl. an untied `token_embd`) → the base type;
/// * then a type whose block does not divide the row length falls back (see `fit`):
///   K-quant → Q8_0 if rows % 32 == 0, otherwise F16.
pub fn tensor_types(file: &GgufFile, ftype: FileType) -> Vec<GgmlType> {
    // A type read from the file already fits its rows (the reader checks), so `fit` only
    // changes the types chosen here.
    wanted_types(file, ftype).into_iter().zip(&file.tensors).map(|(ty, t)| fit(ty, t.cols())).collect()
}

/// [`tensor_types`] before the fallback for rows its blocks do not divide: where the two
/// differ, llama.cpp's fallback applied (what `quantize` reports).
pub fn wanted_types(file: &GgufFile, ftype: FileType) -> Vec<GgmlType> {
    let base = ftype.base_type();
    let has_output = file.tensor("output.weight").is_some();
    let count = |s: &str| file.tensors.iter().filter(|t| t.name.contains(s)).count();
    let (n_attn_v, n_ffn_down) = (count("attn_v.weight"), count("ffn_down"));
    let (mut i_attn_v, mut i_ffn_down) = (0, 0);
    let mixed = matches!(ftype, FileType::Q4KM | FileType::Q5KM);
    file.tensors
        .iter()
        .map(|t| {
            if !is_quantizable(t) {
                return t.ty;
            }
            let name = t.name.as_str();
            if name == "output.weight" || (!has_output && name == "token_embd.weight") {
                if t.cols() % base.block_size() != 0 || base == GgmlType::Q8_0 {
                    GgmlType::Q8_0
                } else {
                    GgmlType::Q6K
                }
            } else if name.contains("attn_v.weight") {
                i_attn_v += 1;
                if mixed && use_more_bits(i_attn_v - 1, n_attn_v) {
                    GgmlType::Q6K
                } else {
                    base
                }
            } else if name.contains("ffn_down") {
                i_ffn_down += 1;
                if mixed && use_more_bits(i_ffn_down - 1, n_ffn_down) {
                    GgmlType::Q6K
                } else {
                    base
                }
            } else if name.contains("attn_qkv.weight") && mixed {
                if ftype == FileType::Q4KM {
                    GgmlType::Q5K
                } else {
                    GgmlType::Q6K
                }
            } else {
                base
            }
        })
        .collect()
}

/// Input bytes converted per step (a whole number of rows, at least one row).
const CHUNK_BYTES: u64 = 16 << 20;

/// Quantizes the GGUF `file` (read from `src`) to `ftype`, writing a GGUF v3 file to `out`.
///
/// Metadata is copied in order, with `general.file_type` set to `ftype.id()` and
/// `general.quantization_version` = 2 (both u32; added if missing). Tensor types come from
/// [`tensor_types`]; a tensor already of its target type is copied byte for byte, any other
/// is dequantized (any type [`reference::dequantize`] reads: F32, F16, BF16, Q8_0, Q4_0,
/// Q4_1, Q4_K, Q5_K, Q6_K) and requantized, streaming: one tensor's output plus ≤16 MiB
/// of input at a time. `progress(done, total)` reports tensor-data bytes of the input.
pub fn quantize_file(
    src: &dyn ByteSource,
    file: &GgufFile,
    ftype: FileType,
    out: &mut impl std::io::Write,
    mut progress: impl FnMut(u64, u64),
) -> Result<()> {
    let types = tensor_types(file, ftype);
    let mut metadata = file.metadata.clone();
    set_u32(&mut metadata, "general.file_type", ftype.id());
    set_u32(&mut metadata, "general.quantization_version", 2);
    let plan = file.tensors.iter().zip(&types).map(|(t, &ty)| (t.name.clone(), t.dims.clone(), ty)).collect();
    let mut w = GgufWriter::new(metadata, plan, file.alignment)?;
    w.write_header(out)?;

    let total: u64 = file.tensors.iter().map(|t| t.n_bytes).sum();
    let mut done = 0u64;
    progress(0, total);
    for (t, &ty) in file.tensors.iter().zip(&types) {
        let data = convert_tensor(src, t, ty, |n| progress(done + n, total))?;
        w.write_tensor_data(out, &data)?;
        done += t.n_bytes;
        progress(done, total);
    }
    w.finish()
}

fn set_u32(metadata: &mut Vec<(String, Value)>, key: &str, v: u32) {
    match metadata.iter_mut().find(|(k, _)| k == key) {
        Some((_, old)) => *old = Value::U32(v),
        None => metadata.push((key.to_owned(), Value::U32(v))),
    }
}

fn usize_of(v: u64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::InvalidArgument(format!("{what} {v} too large")))
}

/// The bytes of tensor `t` converted to `ty`; `progress(n)` with input bytes done.
fn convert_tensor(
    src: &dyn ByteSource,
    t: &TensorInfo,
    ty: GgmlType,
    mut progress: impl FnMut(u64),
) -> Result<Vec<u8>> {
    if ty == t.ty {
        let mut buf = vec![0u8; usize_of(t.n_bytes, "tensor size")?];
        src.read_at(t.offset, &mut buf)?;
        return Ok(buf);
    }
    let (rows, cols) = (t.rows(), t.cols());
    let out_bytes = ty.bytes_for(t.n_elements()).filter(|_| cols % ty.block_size() == 0).ok_or_else(|| {
        Error::InvalidArgument(format!("tensor '{}': {cols} columns do not fit {}", t.name, ty.name()))
    })?;
    let row_bytes = t.row_bytes();
    let mut out = Vec::with_capacity(usize_of(out_bytes, "tensor size")?);
    if rows == 0 || row_bytes == 0 {
        return Ok(out);
    }
    let rows_per_chunk = (CHUNK_BYTES / row_bytes).clamp(1, rows);
    let mut buf = Vec::new();
    let mut r = 0u64;
    while r < rows {
        let n = rows_per_chunk.min(rows - r);
        buf.resize(usize_of(n * row_bytes, "chunk size")?, 0);
        src.read_at(t.offset + r * row_bytes, &mut buf)?;
        let x = reference::dequantize(t.ty, &buf).map_err(|e| match e {
            Error::UnsupportedType { ty, name, .. } => Error::UnsupportedType { tensor: t.name.clone(), ty, name },
            e => e,
        })?;
        out.extend(quantize_rows(ty, &x, usize_of(cols, "row length")?)?);
        r += n;
        progress(r * row_bytes);
    }
    Ok(out)
}

/// `quantize_row` over whole rows of `cols` values, split across threads when available.
fn quantize_rows(ty: GgmlType, x: &[f32], cols: usize) -> Result<Vec<u8>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
        let rows = x.len() / cols.max(1);
        if threads > 1 && rows > 1 && x.len() >= 1 << 16 {
            let per = rows.div_ceil(threads) * cols;
            let parts: Vec<Result<Vec<u8>>> = std::thread::scope(|s| {
                let hs: Vec<_> = x.chunks(per).map(|c| s.spawn(move || quantize_row(ty, c))).collect();
                hs.into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| Err(Error::InvalidArgument("quantizer thread panicked".into())))
                    })
                    .collect()
            });
            let mut out = Vec::new();
            for p in parts {
                out.extend(p?);
            }
            return Ok(out);
        }
    }
    let _ = cols;
    quantize_row(ty, x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_is_ggmls() {
        for (x, want) in [
            (0.5f32, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (-2.5, -2),
            (0.49999997, 0),
            (3.7, 4),
            (-3.7, -4),
            (4194303.0, 4194303),
            (-4194303.0, -4194303),
            (1e9, 4194303),
            (-1e9, -4194303),
            (f32::NAN, 0),
            (f32::INFINITY, 4194303),
            (f32::NEG_INFINITY, -4194303),
        ] {
            assert_eq!(nearest_int(x), want, "{x}");
        }
        for i in -100_000..100_000 {
            let x = i as f32 * 0.013;
            assert_eq!(nearest_int(x), x.round_ties_even() as i32, "{x}");
        }
    }

    #[test]
    fn use_more_bits_matches_llama_cpp() {
        let hi: Vec<usize> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(hi, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
        assert_eq!((0..2).map(|i| use_more_bits(i, 2)).collect::<Vec<_>>(), [false, true]);
    }
}
