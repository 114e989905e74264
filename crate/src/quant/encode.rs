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
/// The value of largest magnitude in `x` (the first of equals) and that magnitude; (0, 0)
/// when empty or all zero (ggml's loops, which keep `max` at 0 then).
fn abs_max(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

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
        GgmlType::Q2K => quantize_block_q2k,
        GgmlType::Q3K => quantize_block_q3k,
        GgmlType::IQ4XS => |b, o| quantize_iq4(b, o),
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

/// The parameters of ggml's `make_qkx2_quants` search: levels 0..=`nmax`, inverse scales
/// `(rmin + rdelta · is + nmax) / (max − min)` tried for `is` in 0..=`nstep`, and the error
/// it minimizes (`use_mad`: absolute, Q2_K's; else squared).
struct Qkx2 {
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
}

/// ggml's `make_qkx2_quants`: levels `l[i]` in 0..=nmax and `(scale, -min)` minimizing
/// Σ w (scale·l + min − x)² (`use_mad`: Σ w |scale·l + min − x|, Q2_K's), min ≤ 0.
fn make_qkx2_quants<const N: usize>(p: &Qkx2, x: &[f32; N], weights: &[f32; N], l: &mut [u8; N]) -> (f32, f32) {
    let &Qkx2 { nmax, rmin, rdelta, nstep, use_mad } = p;
    let n = N;
    let err = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
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
        best_mad += weights[i] * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; N];
    // x − min; ggml's search continues from an improved (lower) min, so this is refreshed
    let mut xm: [f32; N] = std::array::from_fn(|i| x[i] - min);
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
                mad += weights[i] * err(diff);
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
    let search = Qkx2 { nmax, rmin, rdelta: 0.1, nstep, use_mad: false };
    for j in 0..8 {
        let xs: &[f32; 32] = x[32 * j..32 * j + 32].try_into().unwrap_or(&[0.0; 32]);
        let sum_x2 = xs.iter().fold(0f32, |a, v| a + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let lj: &mut [u8; 32] = (&mut l[32 * j..32 * j + 32]).try_into().unwrap_or_else(|_| unreachable!());
        let (s, m) = make_qkx2_quants(&search, xs, &weights, lj);
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
    let (max, amax) = abs_max(x);
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

/// Q2_K super-block (ggml's `quantize_row_q2_K_ref`): per 16 values a 2-bit least-|error|
/// scale/min search, the 16 scales and mins quantized to 4 bits under f16 `d` / `dmin`, the
/// values requantized with those.
fn quantize_block_q2k(x: &[f32; QK_K], out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    let search = Qkx2 { nmax: 3, rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: true };
    for (j, lj) in l.chunks_exact_mut(16).enumerate() {
        let xs: &[f32; 16] = x[16 * j..16 * j + 16].try_into().unwrap_or(&[0.0; 16]);
        let weights: [f32; 16] = std::array::from_fn(|i| xs[i].abs());
        let lj: &mut [u8; 16] = lj.try_into().unwrap_or_else(|_| unreachable!());
        let (s, m) = make_qkx2_quants(&search, xs, &weights, lj);
        scales[j] = s;
        mins[j] = m;
        max_scale = if s > max_scale { s } else { max_scale };
        max_min = if m > max_min { m } else { max_min };
    }
    // ggml stores the level in a byte: `as u8` wraps as its uint8_t assignment does
    let mut sc = [0u8; 16];
    let mut d16 = f16::ZERO;
    if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for j in 0..16 {
            sc[j] = nearest_int(iscale * scales[j]) as u8;
        }
        d16 = f16_sat(max_scale / 15.0);
    }
    let mut dmin16 = f16::ZERO;
    if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for j in 0..16 {
            sc[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
        }
        dmin16 = f16_sat(max_min / 15.0);
    }
    for j in 0..16 {
        let d = d16.to_f32() * (sc[j] & 0xF) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin16.to_f32() * (sc[j] >> 4) as f32;
        for i in 0..16 {
            l[16 * j + i] = nearest_int((x[16 * j + i] + dm) / d).clamp(0, 3) as u8;
        }
    }
    out.extend_from_slice(&sc);
    push_2bit(&l, out);
    out.extend_from_slice(&d16.to_le_bytes());
    out.extend_from_slice(&dmin16.to_le_bytes());
}

/// The 2 low bits of 256 levels: byte `32h + l` holds values `128h + l + 32j` at bits `2j`.
fn push_2bit(l: &[u8; QK_K], out: &mut Vec<u8>) {
    for j in (0..QK_K).step_by(128) {
        out.extend(
            (0..32).map(|i| (l[j + i] & 3) | (l[j + i + 32] & 3) << 2 | (l[j + i + 64] & 3) << 4 | l[j + i + 96] << 6),
        );
    }
}

/// ggml's `make_q3_quants` with `do_rmse`: signed levels in −nmax..nmax−1 refined by
/// weighted (x²) coordinate descent, stored as `l + nmax`; returns the scale.
fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (max, amax) = abs_max(x);
    if amax < GROUP_MAX_EPS {
        l.iter_mut().for_each(|v| *v = 0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (li, &v) in l.iter_mut().zip(x) {
        let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *li = q as i8;
        let w = v * v;
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (li, &v) in l.iter_mut().zip(x) {
            let w = v * v;
            let cur = *li as f32;
            let mut slx = sumlx - w * v * cur;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * cur * cur;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *li as i32 {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *li = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    l.iter_mut().for_each(|v| *v += nmax as i8);
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Q3_K super-block (ggml's `quantize_row_q3_K_ref`): per 16 values a signed 3-bit scale
/// search, the scales quantized to 6 bits under an f16 `d`, the values requantized; the
/// third bit of each level goes to `hmask`.
fn quantize_block_q3k(x: &[f32; QK_K], out: &mut Vec<u8>) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut amax) = (0f32, 0f32);
    for j in 0..16 {
        scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
        if scales[j].abs() > amax {
            amax = scales[j].abs();
            max_scale = scales[j];
        }
    }
    let mut sc = [0u8; 12];
    let mut d16 = f16::ZERO;
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for j in 0..16 {
            let q = (nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32;
            if j < 8 {
                sc[j] = (q & 0xF) as u8;
            } else {
                sc[j - 8] |= ((q & 0xF) << 4) as u8;
            }
            sc[j % 4 + 8] |= ((q >> 4) << (2 * (j / 4))) as u8;
        }
        d16 = f16_sat(1.0 / iscale);
    }
    for j in 0..16 {
        let d = d16.to_f32() * (super::blocks::scale_q3_k(j, &sc) as i8 - 32) as f32;
        if d == 0.0 {
            continue;
        }
        for i in 0..16 {
            l[16 * j + i] = nearest_int(x[16 * j + i] / d).clamp(-4, 3) as i8 + 4;
        }
    }
    // bit j / 32 of hmask[j % 32]: the level's third bit
    let mut hmask = [0u8; 32];
    let mut low = [0u8; QK_K];
    for (j, (&q, lo)) in l.iter().zip(low.iter_mut()).enumerate() {
        let q = q as u8;
        if q > 3 {
            hmask[j % 32] |= 1 << (j / 32);
        }
        *lo = q & 3;
    }
    out.extend_from_slice(&hmask);
    push_2bit(&low, out);
    out.extend_from_slice(&sc);
    out.extend_from_slice(&d16.to_le_bytes());
}

/// ggml's `best_index_int8`: the index of the `KVALUES_IQ4NL` level nearest `x`.
fn best_index_iq4(x: f32) -> u8 {
    let v = &super::blocks::KVALUES_IQ4NL;
    if x <= v[0] as f32 {
        return 0;
    }
    if x >= v[15] as f32 {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < v[mav] as f32 {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - (v[mu - 1] as f32) < v[mu] as f32 - x {
        (mu - 1) as u8
    } else {
        mu as u8
    }
}

/// IQ4_NL (32 values) or IQ4_XS (256) block, as ggml's `quantize_row_iq4_nl_impl` without an
/// importance matrix (weights x², `ntry` 7, what `llama-quantize` runs): per 32 values the
/// scale of the `kvalues_iq4nl` levels from 15 trial scales; IQ4_XS then quantizes the 8
/// scales to 6 bits under an f16 `d` and requantizes the values.
fn quantize_iq4(x: &[f32], out: &mut Vec<u8>) {
    const NTRY: i32 = 7;
    let kv = |i: u8| super::blocks::KVALUES_IQ4NL[i as usize] as f32;
    let nb = x.len() / QK;
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 8];
    let (mut max_scale, mut amax_scale) = (0f32, 0f32);
    for ib in 0..nb {
        let xb = &x[QK * ib..QK * ib + QK];
        let (max, amax) = abs_max(xb);
        if amax < GROUP_MAX_EPS {
            scales[ib] = 0.0;
            continue;
        }
        let sums = |id: f32, lb: Option<&mut [u8]>| {
            let (mut sumqx, mut sumq2) = (0f32, 0f32);
            let mut lb = lb;
            for (j, &v) in xb.iter().enumerate() {
                let li = best_index_iq4(id * v);
                if let Some(lb) = lb.as_deref_mut() {
                    lb[j] = li;
                }
                let (q, w) = (kv(li), v * v);
                sumqx += w * q * v;
                sumq2 += w * q * q;
            }
            (sumqx, sumq2)
        };
        let d0 = -max / kv(0);
        let (sumqx, sumq2) = sums(1.0 / d0, Some(&mut l[QK * ib..QK * ib + QK]));
        let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        let mut best = d * sumqx;
        for itry in -NTRY..=NTRY {
            let (sumqx, sumq2) = sums((itry + kv(0) as i32) as f32 / max, None);
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if d.abs() > amax_scale {
            amax_scale = d.abs();
            max_scale = d;
        }
    }
    let mut head = Vec::with_capacity(8);
    if nb > 1 {
        let (mut scales_h, mut scales_l) = (0u16, [0u8; 4]);
        let d = -max_scale / 32.0;
        head.extend_from_slice(&f16_sat(d).to_le_bytes());
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for ib in 0..nb {
            let q = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * q as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for j in 0..QK {
                l[QK * ib + j] = best_index_iq4(idl * x[QK * ib + j]);
            }
            let q = (q + 32) as u8;
            scales_l[ib / 2] |= (q & 0xF) << (4 * (ib % 2));
            scales_h |= ((q >> 4) as u16) << (2 * ib);
        }
        head.extend_from_slice(&scales_h.to_le_bytes());
        head.extend_from_slice(&scales_l);
    } else {
        head.extend_from_slice(&f16_sat(scales[0]).to_le_bytes());
        let id = if scales[0] != 0.0 { 1.0 / scales[0] } else { 0.0 };
        for j in 0..QK {
            l[j] = best_index_iq4(id * x[j]);
        }
    }
    out.extend_from_slice(&head);
    for ib in 0..nb {
        out.extend((0..16).map(|j| l[QK * ib + j] | l[QK * ib + 16 + j] << 4));
    }
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
            GgmlType::IQ4NL => quantize_iq4(blk, out),
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
