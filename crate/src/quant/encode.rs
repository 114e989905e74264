//! Encoders for every format we run: K-quants (Q4_K, Q5_K, Q6_K) after ggml's reference
//! quantizers (`quantize_row_q{4,5,6}_K_ref` without an importance matrix, which is what
//! `llama-quantize` runs without `--imatrix`): per 32-value sub-block a weighted
//! least-squares scale/min search (`make_qkx2_quants`, Q4_K/Q5_K) or a signed scale search
//! (`make_qx_quants`, per 16 values, Q6_K); sub-block scales (and mins) are then quantized to
//! 6 (Q6_K: 8) bits relative to the super-block's f16 `d`/`dmin`, and the values requantized
//! with those *quantized* scales, in ggml's float order (tests/make_fixtures.py found the
//! bytes identical to llama.cpp's `llama_model_quantize`). The 32-value formats (Q8_0, Q4_0,
//! Q4_1, Q5_0, Q5_1) follow `quantize_row_*_ref`, which the `gguf` Python package mirrors.
//!
//! Unlike ggml, every K-quant input is accepted: NaN is encoded as 0 and magnitudes are
//! clamped to ±[`CLAMP`]; scales that would overflow f16 saturate at f16::MAX. Output is
//! always finite. All-zero blocks encode as all-zero bytes.

use half::{bf16, f16};

use super::blocks::{pack_scale_min_k4, scale_min_k4, QK, QK_K};
use crate::error::{Error, Result};
use crate::gguf::GgmlType;
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
pub fn quantize(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>> {
    let enc: fn(&[f32; QK_K], &mut Vec<u8>) = match ty {
        GgmlType::Q4K => |b, o| quantize_block_q45k(b, 15, o),
        GgmlType::Q5K => |b, o| quantize_block_q45k(b, 31, o),
        GgmlType::Q6K => quantize_block_q6k,
        _ => return quantize_simple(ty, x),
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
    let ls: [u8; 8] = std::array::from_fn(|j| nearest_int(inv_scale * scales[j]).clamp(0, 63) as u8);
    let lm: [u8; 8] = std::array::from_fn(|j| nearest_int(inv_min * mins[j]).clamp(0, 63) as u8);
    let mut sc = [0u8; 12];
    pack_scale_min_k4(&ls, &lm, &mut sc);
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

/// F32/F16/BF16 and the 32-value formats, like ggml's `quantize_row_*_ref`.
fn quantize_simple(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(x.len() / ty.block_size().max(1) as usize * ty.type_size() as usize);
    quantize_simple_into(ty, x, &mut out)?;
    Ok(out)
}

/// [`quantize`] for F32/F16/BF16 and the 32-value formats, appended to `out` (a KV cache
/// quantizes every token it writes: no allocation per call).
pub fn quantize_simple_into(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) -> Result<()> {
    let n = ty.block_size() as usize;
    if !super::supported(ty) || n > QK {
        return Err(Error::UnsupportedType { tensor: "?".into(), ty: ty.id(), name: ty.name().into() });
    }
    if !x.len().is_multiple_of(n) {
        return Err(Error::InvalidArgument(format!("{} values are not whole {} blocks", x.len(), ty.name())));
    }
    let inv = |d: f32| if d != 0.0 { 1.0 / d } else { 0.0 };
    for blk in x.chunks_exact(n) {
        match ty {
            GgmlType::F32 => out.extend(blk[0].to_le_bytes()),
            GgmlType::F16 => out.extend(f16::from_f32(blk[0]).to_le_bytes()),
            GgmlType::BF16 => out.extend(bf16::from_f32(blk[0]).to_le_bytes()),
            GgmlType::Q8_0 => {
                let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let id = inv(d);
                out.extend(f16::from_f32(d).to_le_bytes());
                out.extend(blk.iter().map(|v| (v * id).round() as i8 as u8));
            }
            GgmlType::Q4_0 | GgmlType::Q5_0 => {
                // the signed value of largest magnitude maps to the lowest level
                let max = blk.iter().fold(0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
                let (levels, half) = if ty == GgmlType::Q4_0 { (15, 8.5) } else { (31, 16.5) };
                let d = max / -(half - 0.5);
                let id = inv(d);
                out.extend(f16::from_f32(d).to_le_bytes());
                // ggml: MIN(levels, (int8_t)(v·id + half)), the cast truncating toward zero
                let q: [u8; QK] = std::array::from_fn(|j| ((blk[j] * id + half) as i8).min(levels) as u8);
                push_nibbles(ty == GgmlType::Q5_0, &q, out);
            }
            GgmlType::Q4_1 | GgmlType::Q5_1 => {
                let min = blk.iter().fold(f32::INFINITY, |a, &v| a.min(v));
                let max = blk.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
                let levels = if ty == GgmlType::Q4_1 { 15 } else { 31 };
                let d = (max - min) / levels as f32;
                let id = inv(d);
                out.extend(f16::from_f32(d).to_le_bytes());
                out.extend(f16::from_f32(min).to_le_bytes());
                // ggml: MIN(levels, (int8_t)/(uint8_t)((v − min)·id + 0.5))
                let q: [u8; QK] = std::array::from_fn(|j| (((blk[j] - min) * id + 0.5) as u8).min(levels));
                push_nibbles(ty == GgmlType::Q5_1, &q, out);
            }
            _ => unreachable!("checked by supported()"),
        }
    }
    Ok(())
}

/// Levels of a 32-value block: Q5's fifth bits (qh, bit j = value j) then the nibbles
/// (byte j: value j low, value j + 16 high).
fn push_nibbles(five: bool, q: &[u8; QK], out: &mut Vec<u8>) {
    if five {
        let qh = (0..QK).fold(0u32, |h, j| h | (((q[j] >> 4) & 1) as u32) << j);
        out.extend(qh.to_le_bytes());
    }
    out.extend((0..16).map(|j| (q[j] & 15) | (q[j + 16] & 15) << 4));
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
}
