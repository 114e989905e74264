//! wasm integer dots: simd128 (`i16x8_extmul_*_i8x16`), or, in a build with
//! `-C target-feature=+relaxed-simd`, `i16x8_relaxed_dot_i8x16_i7x16` (byte products summed in
//! pairs into i16 lanes; Chrome 114+). The block or sub-block scale then applies in one
//! `i32x4_dot_i16x8`, as ggml's AVX2 kernels do with `maddubs` + `madd`. On x64 this is two
//! instructions where the i32 relaxed dot is three without AVX-VNNI (V8 emits `vpdpbusd` only
//! with it), plus a `pmulld` for the scale: 2–4× the speed on a Zen 4 (`bench/q8-wasm.mjs`).
//! The relaxed dot is exact when its second operand is 7-bit: the weights' unsigned quants
//! (≤ 63) are, Q8_0's signed ones are not, so Q8_0 keeps the simd128 products. Centred formats
//! dot the unsigned quants and subtract `c·Σq_x` through the activations' block sums (Q6_K's 32
//! per 16-value group).

use super::Q8Row;
use crate::gguf::GgmlType;
use std::arch::wasm32::*;
use std::sync::atomic::{AtomicU8, Ordering};

/// `acc + Σ y·q` over 16 signed bytes each.
#[inline]
#[target_feature(enable = "simd128")]
fn dot16_signed(acc: v128, y: v128, q: v128) -> v128 {
    let lo = i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(y, q));
    let hi = i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(y, q));
    i32x4_add(acc, i32x4_add(lo, hi))
}

#[inline]
#[target_feature(enable = "simd128")]
fn hsum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v)
        .wrapping_add(i32x4_extract_lane::<1>(v))
        .wrapping_add(i32x4_extract_lane::<2>(v))
        .wrapping_add(i32x4_extract_lane::<3>(v))
}

#[inline]
#[target_feature(enable = "simd128")]
fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
}

#[inline]
#[target_feature(enable = "simd128")]
unsafe fn ld(p: *const u8) -> v128 {
    unsafe { v128_load(p as *const v128) }
}

/// The little-endian f16 at `p` as f32, without a branch ([`crate::quant::f16_bits_to_f32`]:
/// the 32-value formats convert one or two scales per 32 weights).
#[inline]
unsafe fn f16(p: *const u8) -> f32 {
    crate::quant::f16_bits_to_f32(unsafe { (p as *const u16).read_unaligned() })
}

/// 16 bits of `qh` from bit `first` as 16 bytes of 0x10 (set) or 0.
#[inline]
#[target_feature(enable = "simd128")]
fn bits16(qh: u32, first: u32) -> v128 {
    let v = u32x4_splat(qh >> first);
    let bytes = i8x16_swizzle(v, i8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    let m = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    v128_and(i8x16_eq(v128_and(bytes, m), m), u8x16_splat(0x10))
}

/// The 32-value formats, as the AVX2 kernel: `blk(b, y0, y1) = (d_w, Σqy i32 lanes, c_w, k)`;
/// `k·Σq_y` is subtracted from the integer sum (the centre of Q4_0 and Q5_0), `c_w·d_y·Σq_y`
/// added in f32 (the min of Q4_1 and Q5_1).
#[inline]
#[target_feature(enable = "simd128")]
unsafe fn b32(nb: usize, a: Q8Row, blk: impl Fn(usize, v128, v128) -> (f32, v128, f32, i32)) -> f32 {
    let mut acc = f32x4_splat(0.0);
    let mut corr = 0f32;
    for b in 0..nb {
        unsafe {
            let y = a.qs.as_ptr().add(32 * b) as *const u8;
            let (dw, s, c, k) = blk(b, ld(y), ld(y.add(16)));
            let dy = *a.d.get_unchecked(b);
            let sy = *a.sums.get_unchecked(b) as i32;
            let s = i32x4_sub(s, i32x4_replace_lane::<0>(i32x4_splat(0), k * sy));
            acc = f32x4_add(acc, f32x4_mul(f32x4_splat(dw * dy), f32x4_convert_i32x4(s)));
            corr += c * (dy * sy as f32);
        }
    }
    hsum(acc) + corr
}

/// `Σ y·q` (i32 lanes) of a Q5_0 / Q5_1 block's 32 five-bit values: `qh` (4 bytes) at `p`, the
/// nibbles after it.
#[inline]
#[target_feature(enable = "simd128")]
unsafe fn dot5<const I32: bool>(p: *const u8, y0: v128, y1: v128) -> v128 {
    let qh = unsafe { (p as *const u32).read_unaligned() };
    let v = unsafe { ld(p.add(4)) };
    let lo = v128_or(nibbles::<false>(v), bits16(qh, 0));
    let hi = v128_or(nibbles::<true>(v), bits16(qh, 16));
    dot32::<I32>(y0, lo, y1, hi)
}

#[target_feature(enable = "simd128")]
unsafe fn block32<const I32: bool>(ty: GgmlType, p: *const u8, nb: usize, a: Q8Row) -> f32 {
    use GgmlType::*;
    let zero = i32x4_splat(0);
    let half = |p: *const u8| unsafe { f16(p) };
    unsafe {
        match ty {
            Q8_0 => b32(nb, a, |b, y0, y1| {
                let q = p.add(34 * b);
                let s = dot16_signed(dot16_signed(zero, y0, ld(q.add(2))), y1, ld(q.add(18)));
                (half(q), s, 0.0, 0)
            }),
            // one arm per format, so that each loop is free of the others' branches
            Q4_0 => b32(nb, a, |b, y0, y1| {
                let q = p.add(18 * b);
                let v = ld(q.add(2));
                (half(q), dot32::<I32>(y0, nibbles::<false>(v), y1, nibbles::<true>(v)), 0.0, 8)
            }),
            Q4_1 => b32(nb, a, |b, y0, y1| {
                let q = p.add(20 * b);
                let v = ld(q.add(4));
                (half(q), dot32::<I32>(y0, nibbles::<false>(v), y1, nibbles::<true>(v)), half(q.add(2)), 0)
            }),
            Q5_0 => b32(nb, a, |b, y0, y1| {
                let q = p.add(22 * b);
                (half(q), dot5::<I32>(q.add(2), y0, y1), 0.0, 16)
            }),
            Q5_1 => b32(nb, a, |b, y0, y1| {
                let q = p.add(24 * b);
                (half(q), dot5::<I32>(q.add(4), y0, y1), half(q.add(2)), 0)
            }),
            _ => 0.0,
        }
    }
}

/// The 8 six-bit scales and 8 mins of a Q4_K/Q5_K block from their 12 bytes at `p` (ggml's
/// `kmask` shuffle, as `scale_min_k4` one at a time): `(scales, mins)`, 8 bytes each.
#[inline(always)]
unsafe fn scales_mins(p: *const u8) -> (u64, u64) {
    const K1: u32 = 0x3f3f_3f3f;
    const K2: u32 = 0x0f0f_0f0f;
    const K3: u32 = 0x0303_0303;
    let u = p as *const u32;
    let (u0, u1, u2) = unsafe { (u.read_unaligned(), u.add(1).read_unaligned(), u.add(2).read_unaligned()) };
    let sc = (u0 & K1) as u64 | (((u2 & K2) | (((u0 >> 6) & K3) << 4)) as u64) << 32;
    let m = (u1 & K1) as u64 | ((((u2 >> 4) & K2) | (((u1 >> 6) & K3) << 4)) as u64) << 32;
    (sc, m)
}

/// `Σ_k a_k·b_k` over 8 i16 lanes each.
#[inline]
#[target_feature(enable = "simd128")]
fn dot8_i16(a: v128, b: v128) -> i32 {
    hsum_i32(i32x4_dot_i16x8(a, b))
}

/// `Σ y·q` over 16 bytes as 8 i16 lanes of partial sums (`y` signed, `q` in `0..64`), for the
/// K-quants, whose scale then applies in one `i32x4_dot_i16x8` per sub-block (as ggml's AVX2
/// `maddubs` + `madd`): the relaxed i16 dot is a single `pmaddubsw` on x64 where the i32 one
/// is three without AVX-VNNI, and a scale on i32 lanes would be a `pmulld` more. A lane holds
/// at most 2·63·128, so two such results add without overflow.
#[inline]
#[target_feature(enable = "simd128")]
fn dot16_i16(y: v128, q: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        i16x8_relaxed_dot_i8x16_i7x16(y, q)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        i16x8_add(i16x8_extmul_low_i8x16(y, q), i16x8_extmul_high_i8x16(y, q))
    }
}

/// `Σ y·q` over 32 bytes (`y0`, `y1`) as i32 lanes, `q` in `0..64`: by the i32 relaxed dot
/// (`I32` in the relaxed build) or through i16 lanes.
#[inline]
#[target_feature(enable = "simd128")]
fn dot32<const I32: bool>(y0: v128, q0: v128, y1: v128, q1: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    if I32 {
        return i32x4_relaxed_dot_i8x16_i7x16_add(y1, q1, i32x4_relaxed_dot_i8x16_i7x16_add(y0, q0, i32x4_splat(0)));
    }
    i32x4_dot_i16x8(dot32_i16(y0, q0, y1, q1), i16x8_splat(1))
}

/// `Σ y·q` over 32 bytes in i16 lanes (each at most 4·63·128 = 32256: no overflow).
#[inline]
#[target_feature(enable = "simd128")]
fn dot32_i16(y0: v128, q0: v128, y1: v128, q1: v128) -> v128 {
    i16x8_add(dot16_i16(y0, q0), dot16_i16(y1, q1))
}

/// `acc + sc · Σ y·q` over 32 bytes in i32 lanes: one K-quant sub-block times its scale.
#[inline]
#[target_feature(enable = "simd128")]
fn sub32<const I32: bool>(acc: v128, y0: v128, q0: v128, y1: v128, q1: v128, sc: i16) -> v128 {
    if I32 {
        i32x4_add(acc, i32x4_mul(dot32::<true>(y0, q0, y1, q1), i32x4_splat(sc as i32)))
    } else {
        i32x4_add(acc, i32x4_dot_i16x8(dot32_i16(y0, q0, y1, q1), i16x8_splat(sc)))
    }
}

/// `acc + sc · Σ y·q` over 16 bytes in i32 lanes (a Q6_K group).
#[inline]
#[target_feature(enable = "simd128")]
fn sub16<const I32: bool>(acc: v128, y: v128, q: v128, sc: i16) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    if I32 {
        return i32x4_add(
            acc,
            i32x4_mul(i32x4_relaxed_dot_i8x16_i7x16_add(y, q, i32x4_splat(0)), i32x4_splat(sc as i32)),
        );
    }
    i32x4_add(acc, i32x4_dot_i16x8(dot16_i16(y, q), i16x8_splat(sc)))
}

/// The low (`HIGH = false`) or high nibbles of 16 bytes. A 16-bit shift and the mask: wasm's
/// 8-bit shift has no x64 instruction and costs a mask of its own.
#[inline]
#[target_feature(enable = "simd128")]
fn nibbles<const HIGH: bool>(v: v128) -> v128 {
    let m4 = u8x16_splat(0xF);
    if HIGH {
        v128_and(u16x8_shr(v, 4), m4)
    } else {
        v128_and(v, m4)
    }
}

/// Q4_K / Q5_K, one row: per 64 values, the sub-blocks `2j` (low nibbles) and `2j + 1` (high)
/// each as i16 partial sums times their scale; the mins through the block sums, as one i16 dot
/// per block. One row at a time, unlike the native kernels: x64 has 16 vector registers, and
/// V8 spills the second row's (2 rows: 0.4×, 4 rows: 0.6× the speed of one, `bench/q8-wasm.mjs`).
#[inline]
#[target_feature(enable = "simd128")]
unsafe fn q45_k<const Q5: bool, const I32: bool>(w: *const u8, nb: usize, a: Q8Row) -> f32 {
    let (ts, qoff) = if Q5 { (176, 48) } else { (144, 16) };
    let m16 = u8x16_splat(0x10);
    let mut sumf = 0f32;
    for i in 0..nb {
        unsafe {
            let y = a.qs.as_ptr().add(256 * i) as *const u8;
            let bs = a.sums.as_ptr().add(16 * i) as *const u8;
            let p = w.add(ts * i);
            let (sc, mins) = scales_mins(p.add(4));
            let h = if Q5 { [ld(p.add(16)), ld(p.add(32))] } else { [m16; 2] };
            let mut sumi = i32x4_splat(0);
            // unrolled (LLVM hoists the loads, and V8 spills some): in Chrome 156 that measured
            // 6% faster than a loop kept rolled (an opaque trip count), under node's V8 the same
            for j in 0..4 {
                let c = p.add(qoff + 32 * j);
                let (v0, v1) = (ld(c), ld(c.add(16)));
                let mut q = [nibbles::<false>(v0), nibbles::<false>(v1), nibbles::<true>(v0), nibbles::<true>(v1)];
                if Q5 {
                    // the fifth bit of value l of sub-block s is bit s of qh byte l
                    for (t, q) in q.iter_mut().enumerate() {
                        let bit = u8x16_splat(1 << (2 * j + t / 2));
                        *q = v128_or(*q, v128_and(i8x16_eq(v128_and(h[t % 2], bit), bit), m16));
                    }
                }
                let yj = y.add(64 * j);
                let s = sc >> (16 * j);
                sumi = sub32::<I32>(sumi, ld(yj), q[0], ld(yj.add(16)), q[1], s as u8 as i16);
                sumi = sub32::<I32>(sumi, ld(yj.add(32)), q[2], ld(yj.add(48)), q[3], (s >> 8) as u8 as i16);
            }
            // Σy per 32 values (the sub-blocks), 8 i16 lanes: two 16-value sums each
            let bsum =
                i16x8_narrow_i32x4(i32x4_extadd_pairwise_i16x8(ld(bs)), i32x4_extadd_pairwise_i16x8(ld(bs.add(16))));
            let mins = dot8_i16(u16x8_extend_low_u8x16(u64x2_splat(mins)), bsum);
            let dy = *a.d.get_unchecked(i);
            sumf += (f16(p) * dy) * hsum_i32(sumi) as f32 - (f16(p.add(2)) * dy) * mins as f32;
        }
    }
    sumf
}

/// Q6_K, one row (as [`q45_k`]): the unsigned 6-bit quants per 16-value group, `− 32·Σ sc·Σy`
/// through the block sums (two i16 dots per block).
#[inline]
#[target_feature(enable = "simd128")]
unsafe fn q6_k<const I32: bool>(w: *const u8, nb: usize, a: Q8Row) -> f32 {
    let m30 = u8x16_splat(0x30);
    let mut sumf = 0f32;
    for i in 0..nb {
        unsafe {
            let y = a.qs.as_ptr().add(256 * i) as *const u8;
            let bs = a.sums.as_ptr().add(16 * i) as *const u8;
            let p = w.add(210 * i);
            let mut sumi = i32x4_splat(0);
            for h in 0..2 {
                for l0 in [0, 16] {
                    // one load of the high bits serves the four groups k
                    let hb = ld(p.add(128 + 32 * h + l0));
                    for k in 0..4 {
                        let g = (128 * h + 32 * k + l0) / 16;
                        let lq = ld(p.add(64 * h + 32 * (k % 2) + l0));
                        let lo = if k < 2 { nibbles::<false>(lq) } else { nibbles::<true>(lq) };
                        // bits 2k, 2k+1 of each high byte to bits 4, 5: 16-bit shifts, since
                        // what crosses from the neighbouring byte falls outside the mask
                        let hk = match k {
                            0 => i16x8_shl(hb, 4),
                            1 => i16x8_shl(hb, 2),
                            2 => hb,
                            _ => u16x8_shr(hb, 2),
                        };
                        let q = v128_or(lo, v128_and(hk, m30));
                        sumi = sub16::<I32>(sumi, ld(y.add(16 * g)), q, *p.add(192 + g) as i8 as i16);
                    }
                }
            }
            let sc = ld(p.add(192));
            let corr =
                dot8_i16(i16x8_extend_low_i8x16(sc), ld(bs)) + dot8_i16(i16x8_extend_high_i8x16(sc), ld(bs.add(16)));
            let dy = *a.d.get_unchecked(i);
            sumf += (f16(p.add(208)) * dy) * (hsum_i32(sumi) - 32 * corr) as f32;
        }
    }
    sumf
}

/// SAFETY: the caller checked `w` holds `out.len()` rows of `rb` bytes of whole blocks
/// covering `a`.
#[target_feature(enable = "simd128")]
pub unsafe fn rows(ty: GgmlType, w: &[u8], rb: usize, a: Q8Row, out: &mut [f32]) {
    unsafe {
        if i32_dot() {
            rows_with::<true>(ty, w, rb, a, out)
        } else {
            rows_with::<false>(ty, w, rb, a, out)
        }
    }
}

#[inline]
#[target_feature(enable = "simd128")]
unsafe fn rows_with<const I32: bool>(ty: GgmlType, w: &[u8], rb: usize, a: Q8Row, out: &mut [f32]) {
    use GgmlType::*;
    let nb = a.qs.len() / ty.block_size() as usize;
    unsafe {
        match ty {
            Q4K => each(w, rb, out, |p| q45_k::<false, I32>(p, nb, a)),
            Q5K => each(w, rb, out, |p| q45_k::<true, I32>(p, nb, a)),
            Q6K => each(w, rb, out, |p| q6_k::<I32>(p, nb, a)),
            _ => each(w, rb, out, |p| block32::<I32>(ty, p, nb, a)),
        }
    }
}

/// Two ways to a sub-block's scaled sum, the same integers either way: i32 lanes (in the
/// relaxed build the i32 relaxed dot, 4 products a lane; in the simd128 one the i16 products
/// widened) then an i32 multiply by the scale, or i16 lanes (2 products a lane) then
/// `i32x4_dot_i16x8` with the scale. Which is faster depends on the CPU: on x64 without
/// AVX-VNNI V8 emits the i32 relaxed dot as three instructions, and i16 lanes are 1.3–1.8×
/// faster (a Zen 4); where it is one instruction (arm64's `sdot`, AVX-VNNI) i32 lanes can win.
/// So each wasm instance times both once, on its first integer matmul (a few ms). Both builds
/// hold both kernels: the one JS glue loads either build only while their functions are the
/// same. 0: not measured yet, 1: i16, 2: i32.
static DOT: AtomicU8 = AtomicU8::new(0);

/// Whether this instance takes the i32 relaxed dot (measured on the first call).
pub fn i32_dot() -> bool {
    match DOT.load(Ordering::Relaxed) {
        0 => {
            let i32 = measure_i32_faster();
            DOT.store(if i32 { 2 } else { 1 }, Ordering::Relaxed);
            i32
        }
        d => d == 2,
    }
}

/// Fixes the dot (`Some(true)`: i32) or, with `None`, has the next call measure again: for the
/// kernel checks, which run both.
pub fn set_i32_dot(i32: Option<bool>) {
    DOT.store(i32.map_or(0, |i| if i { 2 } else { 1 }), Ordering::Relaxed);
}

/// Times both dots on 64 rows of 2048 Q4_K values (74 KB, in cache), alternating, 5 times,
/// and compares each one's fastest: 32 passes a sample (~0.3–1 ms), above the 0.1 ms a timer
/// rounds to in a page that is not cross-origin isolated.
fn measure_i32_faster() -> bool {
    let (rows, cols) = (64, 2048);
    let ty = GgmlType::Q4K;
    let Some(rb) = ty.bytes_for(cols as u64).map(|b| b as usize) else { return false };
    let mut seed = 5u64;
    let mut next = || crate::cpu::dot::lcg(&mut seed);
    let w = super::random_blocks(ty, rb * rows, &mut next);
    let x: Vec<f32> = (0..cols).map(|_| next() as f32 / u32::MAX as f32 - 0.5).collect();
    let Some(a) = super::Q8Act::quantize(super::Kind::K, &x, 1, cols) else { return false };
    let mut out = vec![0f32; rows];
    let mut best = [f64::INFINITY; 2];
    for _ in 0..5 {
        for (k, b) in best.iter_mut().enumerate() {
            let t = web_time::Instant::now();
            for _ in 0..32 {
                // SAFETY: `w` holds `rows` rows of `rb` bytes covering `a`
                unsafe {
                    if k == 1 {
                        rows_with::<true>(ty, &w, rb, a.row(0), &mut out)
                    } else {
                        rows_with::<false>(ty, &w, rb, a.row(0), &mut out)
                    }
                }
            }
            *b = b.min(t.elapsed().as_secs_f64());
        }
    }
    best[1] < best[0]
}

/// `out[r] = k(row r)` over rows of `rb` bytes. SAFETY: as [`rows`].
#[inline]
unsafe fn each(w: &[u8], rb: usize, out: &mut [f32], k: impl Fn(*const u8) -> f32) {
    for (r, o) in out.iter_mut().enumerate() {
        *o = k(unsafe { w.as_ptr().add(r * rb) });
    }
}
