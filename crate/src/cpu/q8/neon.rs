//! aarch64 integer dots: `sdot` (ARMv8.2 dotprod: 4 byte products summed into each i32 lane in
//! one instruction, as llama.cpp's `vdotq_s32` path) where the CPU has it, else `smull` pairs
//! widened into i32 lanes (`vpadalq_s16`). Both are exact, so the two differ from [`super::scalar`]
//! only in the order of the f32 scaling. The kernels are the simd128 ones ([`super::wasm`]) on
//! NEON registers: the centred formats dot the unsigned quants and subtract `c·Σq_x` through the
//! activations' block sums (Q6_K's per 16-value group). `sdot` is signed × signed, so Q8_0 takes
//! it too. Rust's `vdotq_s32` is unstable: `sdot` is one line of inline assembly.

use super::Q8Row;
use crate::gguf::GgmlType;
use crate::quant::blocks::{f16_at, scale_min_k4};
use std::arch::aarch64::*;

/// Whether the CPU has `sdot` (checked once per matmul; `std` caches the answer).
pub fn dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// `acc + Σ y·q` over 16 signed bytes each, 4 products per i32 lane.
#[inline(always)]
unsafe fn dot16<const SDOT: bool>(acc: int32x4_t, y: int8x16_t, q: int8x16_t) -> int32x4_t {
    unsafe {
        if SDOT {
            let mut acc = acc;
            // SAFETY: only reached from `rows::<true>`, which runs where `dotprod()` said so.
            std::arch::asm!("sdot {a:v}.4s, {y:v}.16b, {q:v}.16b", a = inout(vreg) acc, y = in(vreg) y, q = in(vreg) q,
                options(pure, nomem, nostack));
            acc
        } else {
            let lo = vmull_s8(vget_low_s8(y), vget_low_s8(q));
            vpadalq_s16(vpadalq_s16(acc, lo), vmull_high_s8(y, q))
        }
    }
}

#[inline(always)]
unsafe fn ld(p: *const u8) -> uint8x16_t {
    unsafe { vld1q_u8(p) }
}

#[inline(always)]
unsafe fn ldy(p: *const i8) -> int8x16_t {
    unsafe { vld1q_s8(p) }
}

#[inline(always)]
fn s8(v: uint8x16_t) -> int8x16_t {
    unsafe { vreinterpretq_s8_u8(v) }
}

/// 16 bits of `qh` from bit `first` as 16 bytes of 0x10 (set) or 0.
#[inline(always)]
unsafe fn bits16(qh: u32, first: u32) -> uint8x16_t {
    unsafe {
        let v = vreinterpretq_u8_u32(vdupq_n_u32(qh >> first));
        let idx: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
        let bytes = vqtbl1q_u8(v, vld1q_u8(idx.as_ptr()));
        let m: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
        vandq_u8(vtstq_u8(bytes, vld1q_u8(m.as_ptr())), vdupq_n_u8(0x10))
    }
}

/// The 32-value formats: `blk(b, y0, y1) = (d_w, Σqy i32 lanes, c_w, k)`; `k·Σq_y` is subtracted
/// from the integer sum (the centre of Q4_0 and Q5_0), `c_w·d_y·Σq_y` added in f32 (the min of
/// Q4_1 and Q5_1).
#[inline(always)]
unsafe fn b32(nb: usize, a: Q8Row, blk: impl Fn(usize, int8x16_t, int8x16_t) -> (f32, int32x4_t, f32, i32)) -> f32 {
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); 2];
        let mut corr = 0f32;
        for b in 0..nb {
            let y = a.qs.as_ptr().add(32 * b);
            let (dw, s, c, k) = blk(b, ldy(y), ldy(y.add(16)));
            let dy = *a.d.get_unchecked(b);
            let sy = *a.sums.get_unchecked(b) as i32;
            let s = vsubq_s32(s, vsetq_lane_s32::<0>(k * sy, vdupq_n_s32(0)));
            acc[b & 1] = vfmaq_n_f32(acc[b & 1], vcvtq_f32_s32(s), dw * dy);
            corr += c * (dy * sy as f32);
        }
        vaddvq_f32(vaddq_f32(acc[0], acc[1])) + corr
    }
}

#[inline(always)]
unsafe fn block32<const SDOT: bool>(ty: GgmlType, p: *const u8, nb: usize, a: Q8Row) -> f32 {
    use GgmlType::*;
    unsafe {
        let zero = vdupq_n_s32(0);
        let m4 = vdupq_n_u8(0xF);
        let half = |p: *const u8| half::f16::from_le_bytes([*p, *p.add(1)]).to_f32();
        match ty {
            Q8_0 => b32(nb, a, |b, y0, y1| {
                let q = p.add(34 * b);
                let s = dot16::<SDOT>(dot16::<SDOT>(zero, y0, s8(ld(q.add(2)))), y1, s8(ld(q.add(18))));
                (half(q), s, 0.0, 0)
            }),
            Q4_0 | Q4_1 => {
                let (ts, qs, min) = if ty == Q4_0 { (18, 2, false) } else { (20, 4, true) };
                b32(nb, a, |b, y0, y1| {
                    let q = p.add(ts * b);
                    let v = ld(q.add(qs));
                    let s = dot16::<SDOT>(dot16::<SDOT>(zero, y0, s8(vandq_u8(v, m4))), y1, s8(vshrq_n_u8::<4>(v)));
                    if min {
                        (half(q), s, half(q.add(2)), 0)
                    } else {
                        (half(q), s, 0.0, 8)
                    }
                })
            }
            Q5_0 | Q5_1 => {
                let (ts, qh_at, qs, min) = if ty == Q5_0 { (22, 2, 6, false) } else { (24, 4, 8, true) };
                b32(nb, a, |b, y0, y1| {
                    let q = p.add(ts * b);
                    let qh = (q.add(qh_at) as *const u32).read_unaligned();
                    let v = ld(q.add(qs));
                    let lo = vorrq_u8(vandq_u8(v, m4), bits16(qh, 0));
                    let hi = vorrq_u8(vshrq_n_u8::<4>(v), bits16(qh, 16));
                    let s = dot16::<SDOT>(dot16::<SDOT>(zero, y0, s8(lo)), y1, s8(hi));
                    if min {
                        (half(q), s, half(q.add(2)), 0)
                    } else {
                        (half(q), s, 0.0, 16)
                    }
                })
            }
            _ => 0.0,
        }
    }
}

/// Q4_K / Q5_K: per sub-block `s`, `sc_s · Σ q·y` in i32 lanes; the mins through the block sums.
#[inline(always)]
unsafe fn q45_k<const SDOT: bool>(q5: bool, w: *const u8, nb: usize, a: Q8Row) -> f32 {
    let (ts, qoff) = if q5 { (176, 48) } else { (144, 16) };
    let mut sumf = 0f32;
    unsafe {
        let m4 = vdupq_n_u8(0xF);
        let m16 = vdupq_n_u8(0x10);
        let zero = vdupq_n_s32(0);
        for i in 0..nb {
            let p = w.add(ts * i);
            let b = std::slice::from_raw_parts(p, ts);
            let y = a.qs.as_ptr().add(256 * i);
            let bsums = a.sums.get_unchecked(16 * i..16 * i + 16);
            let h = [ld(p.add(16)), ld(p.add(32))];
            let mut sumi = zero;
            let mut mins = 0i32;
            for s in 0..8 {
                let (sc, m) = scale_min_k4(s, &b[4..16]);
                mins += m as i32 * (bsums[2 * s] as i32 + bsums[2 * s + 1] as i32);
                let c = p.add(qoff + 32 * (s / 2));
                let mut acc = zero;
                for (k, &hk) in h.iter().enumerate() {
                    let v = ld(c.add(16 * k));
                    let mut q = if s % 2 == 0 { vandq_u8(v, m4) } else { vshrq_n_u8::<4>(v) };
                    if q5 {
                        q = vorrq_u8(q, vandq_u8(vtstq_u8(hk, vdupq_n_u8(1 << s)), m16));
                    }
                    acc = dot16::<SDOT>(acc, ldy(y.add(32 * s + 16 * k)), s8(q));
                }
                sumi = vmlaq_n_s32(sumi, acc, sc as i32);
            }
            let dy = *a.d.get_unchecked(i);
            sumf += (f16_at(b, 0) * dy) * vaddvq_s32(sumi) as f32 - (f16_at(b, 2) * dy) * mins as f32;
        }
    }
    sumf
}

/// Q6_K: the unsigned 6-bit quants per 16-value group, `− 32·Σy` through the block sums.
#[inline(always)]
unsafe fn q6_k<const SDOT: bool>(w: *const u8, nb: usize, a: Q8Row) -> f32 {
    let mut sumf = 0f32;
    unsafe {
        let m4 = vdupq_n_u8(0xF);
        let m3 = vdupq_n_u8(3);
        let zero = vdupq_n_s32(0);
        for i in 0..nb {
            let p = w.add(210 * i);
            let b = std::slice::from_raw_parts(p, 210);
            let y = a.qs.as_ptr().add(256 * i);
            let bsums = a.sums.get_unchecked(16 * i..16 * i + 16);
            let mut sumi = zero;
            let mut corr = 0i32;
            for h in 0..2 {
                for k in 0..4 {
                    for l0 in [0, 16] {
                        let lq = ld(p.add(64 * h + 32 * (k % 2) + l0));
                        let lo = if k < 2 { vandq_u8(lq, m4) } else { vshrq_n_u8::<4>(lq) };
                        // a right shift by 2k: NEON's variable shift takes a negative count
                        let hb = vandq_u8(vshlq_u8(ld(p.add(128 + 32 * h + l0)), vdupq_n_s8(-2 * k as i8)), m3);
                        let q = vorrq_u8(lo, vshlq_n_u8::<4>(hb));
                        let g = (128 * h + 32 * k + l0) / 16;
                        let sc = b[192 + g] as i8 as i32;
                        corr += sc * bsums[g] as i32;
                        let acc = dot16::<SDOT>(zero, ldy(y.add(128 * h + 32 * k + l0)), s8(q));
                        sumi = vmlaq_n_s32(sumi, acc, sc);
                    }
                }
            }
            sumf += (f16_at(b, 208) * *a.d.get_unchecked(i)) * (vaddvq_s32(sumi) - 32 * corr) as f32;
        }
    }
    sumf
}

#[inline(always)]
unsafe fn rows_body<const SDOT: bool>(ty: GgmlType, w: &[u8], rb: usize, a: Q8Row, out: &mut [f32]) {
    use GgmlType::*;
    let nb = a.qs.len() / ty.block_size() as usize;
    for (r, o) in out.iter_mut().enumerate() {
        unsafe {
            let p = w.as_ptr().add(r * rb);
            *o = match ty {
                Q4K => q45_k::<SDOT>(false, p, nb, a),
                Q5K => q45_k::<SDOT>(true, p, nb, a),
                Q6K => q6_k::<SDOT>(p, nb, a),
                _ => block32::<SDOT>(ty, p, nb, a),
            };
        }
    }
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn rows_sdot(ty: GgmlType, w: &[u8], rb: usize, a: Q8Row, out: &mut [f32]) {
    unsafe { rows_body::<true>(ty, w, rb, a, out) }
}

#[target_feature(enable = "neon")]
unsafe fn rows_smull(ty: GgmlType, w: &[u8], rb: usize, a: Q8Row, out: &mut [f32]) {
    unsafe { rows_body::<false>(ty, w, rb, a, out) }
}

/// `sdot` where the CPU has it ([`dotprod`]) and `sdot` is true, else the `smull` pairs.
///
/// SAFETY: the caller checked `w` holds `out.len()` rows of `rb` bytes of whole blocks
/// covering `a`.
pub unsafe fn rows(sdot: bool, ty: GgmlType, w: &[u8], rb: usize, a: Q8Row, out: &mut [f32]) {
    unsafe {
        if sdot && dotprod() {
            rows_sdot(ty, w, rb, a, out)
        } else {
            rows_smull(ty, w, rb, a, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::q8::{random_blocks, Q8Act};

    /// Both instruction paths give the scalar kernel's value, up to the f32 scaling's order
    /// (the integer sums are exact on both), on every integer type. qemu's `max` CPU (the
    /// tests' runner here) has dotprod; a CPU without it checks the `smull` path alone.
    #[test]
    fn sdot_and_smull_match_the_scalar_kernel() {
        let paths: &[bool] = if dotprod() { &[true, false] } else { &[false] };
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed
        };
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q4K,
            GgmlType::Q5K,
            GgmlType::Q6K,
        ] {
            let cols = 512;
            let n_rows = 3;
            let rb = ty.bytes_for(cols as u64).unwrap() as usize;
            let w = random_blocks(ty, n_rows * rb, &mut next);
            let x: Vec<f32> = (0..cols).map(|_| (next() >> 8) as f32 / (1 << 23) as f32 - 1.0).collect();
            let a = Q8Act::quantize(crate::cpu::q8::kind(ty).unwrap(), &x, 1, cols).unwrap();
            for &sdot in paths {
                let mut out = vec![0f32; n_rows];
                unsafe { rows(sdot, ty, &w, rb, a.row(0), &mut out) };
                for (r, &got) in out.iter().enumerate() {
                    let want = crate::cpu::q8::scalar::dot(ty, &w[r * rb..(r + 1) * rb], a.row(0));
                    assert!(
                        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "{ty:?} sdot={sdot} row {r}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
